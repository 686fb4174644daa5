//! Layer 5, thermal detection: counters that could not have come from a clean run.
//!
//! Fuel and peak memory are deterministic for a given module and input (the
//! engine is configured for determinism), so every honest replica reports the
//! same values. A receipt whose counters differ from the quorum's reference, or
//! from a canary's known values, is tampering or over-billing. A wall time too
//! short for the claimed fuel at the host's advertised speed is impossible and
//! means the counters (or the speed advert) are lies.

use serde::{Deserialize, Serialize};

use crate::reputation::Violation;

/// Tuning for the thermal checks.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ThermalConfig {
    /// How much faster than advertised a host may appear before its wall time
    /// is called impossible. Generous (3x) because adverts are rough and turbo
    /// clocks exist; a false alarm costs an honest host a suspicion.
    pub speed_slack: f64,
}

impl Default for ThermalConfig {
    fn default() -> Self {
        Self { speed_slack: 3.0 }
    }
}

/// The reference counters among receipts that agree on the accepted output:
/// the (fuel, memory) pair with the most trust weight behind it; ties go to the
/// lower fuel, so a billing dispute is settled in the customer's favour.
pub fn reference_counters(receipts: &[(f64, u64, u64)]) -> Option<(u64, u64)> {
    let mut tally: Vec<((u64, u64), f64)> = Vec::with_capacity(receipts.len());
    for &(w, fuel, mem) in receipts {
        match tally.iter_mut().find(|(k, _)| *k == (fuel, mem)) {
            Some(t) => t.1 += w,
            None => tally.push(((fuel, mem), w)),
        }
    }
    tally
        .into_iter()
        .max_by(|a, b| a.1.total_cmp(&b.1).then_with(|| b.0.cmp(&a.0)))
        .map(|(k, _)| k)
}

/// Compares a receipt's counters with a reference.
pub fn check_counters(fuel: u64, memory: u64, reference: (u64, u64)) -> Option<Violation> {
    if fuel != reference.0 {
        Some(Violation::Fuel {
            claimed: fuel,
            reference: reference.0,
        })
    } else if memory != reference.1 {
        Some(Violation::Memory {
            claimed: memory,
            reference: reference.1,
        })
    } else {
        None
    }
}

/// Whether `fuel` could be burnt in `wall_ms` by a host advertising
/// `advertised_fuel_per_ms`. A host advertising 0 is not checked.
pub fn check_wall_time(
    fuel: u64,
    wall_ms: u64,
    advertised_fuel_per_ms: u64,
    cfg: &ThermalConfig,
) -> Option<Violation> {
    if advertised_fuel_per_ms == 0 {
        return None;
    }
    let max_fuel = advertised_fuel_per_ms as f64 * cfg.speed_slack * wall_ms.max(1) as f64;
    (fuel as f64 > max_fuel).then_some(Violation::WallTime { fuel, wall_ms })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_is_weighted_mode_with_low_tie_break() {
        assert_eq!(
            reference_counters(&[(0.9, 100, 5), (0.25, 150, 5), (0.25, 150, 5)]),
            Some((100, 5))
        );
        assert_eq!(
            reference_counters(&[(0.5, 150, 5), (0.5, 100, 5)]),
            Some((100, 5))
        );
        assert_eq!(reference_counters(&[]), None);
    }

    #[test]
    fn over_billing_and_impossible_wall_time() {
        assert_eq!(
            check_counters(150, 5, (100, 5)),
            Some(Violation::Fuel {
                claimed: 150,
                reference: 100
            })
        );
        assert_eq!(
            check_counters(100, 6, (100, 5)),
            Some(Violation::Memory {
                claimed: 6,
                reference: 5
            })
        );
        assert_eq!(check_counters(100, 5, (100, 5)), None);
        let cfg = ThermalConfig::default();
        assert!(check_wall_time(10_000, 1, 1000, &cfg).is_some());
        assert!(check_wall_time(10_000, 10, 1000, &cfg).is_none());
    }
}
