//! Layer 3, illusion: canaries and decoys.
//!
//! A canary is a job whose output and counters are known in advance (the host
//! computed it on a trusted sandbox). Canaries are dispatched under fresh
//! random job ids, exactly like real work, so a host cannot tell them apart.
//! They serve two purposes:
//! - hidden spot checks of trusted peers: a peer that cheats whenever it
//!   believes it runs unreplicated cheats on canaries too, and is caught
//!   without any real result being at stake;
//! - the decoy stream: suspects receive only canaries (never real work or
//!   real data) while evidence accumulates, and are not told.
//!
//! Each canary is used once, so colluders cannot share answers to a known set.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::error::SecurityError;
use crate::ids::Digest;
use crate::receipt::ReceiptFacts;
use crate::reputation::Violation;
use crate::thermal;

/// A job with known answers.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Canary {
    /// Module to run.
    pub module_hash: Digest,
    /// Input to feed.
    pub input_hash: Digest,
    /// Fuel budget to dispatch with.
    pub fuel_limit: u64,
    /// The known output.
    pub output_hash: Digest,
    /// The known fuel.
    pub fuel: u64,
    /// The known peak memory.
    pub peak_memory_bytes: u64,
}

/// Outcome of checking a canary result.
#[derive(Clone, PartialEq, Debug)]
pub enum CanaryVerdict {
    /// Output and counters match.
    Pass,
    /// The output is wrong.
    WrongOutput,
    /// Output right, counters wrong (over-billing or tampering).
    Counters(Violation),
}

/// Compares a receipt with the canary's known answers. Counters are only
/// compared when `check_counters` (the thermal layer) is on.
pub fn check_canary(
    canary: &Canary,
    receipt: &ReceiptFacts,
    check_counters: bool,
) -> CanaryVerdict {
    if receipt.output_hash != canary.output_hash {
        return CanaryVerdict::WrongOutput;
    }
    if check_counters
        && let Some(v) = thermal::check_counters(
            receipt.fuel_used,
            receipt.peak_memory_bytes,
            (canary.fuel, canary.peak_memory_bytes),
        )
    {
        return CanaryVerdict::Counters(v);
    }
    CanaryVerdict::Pass
}

/// Tuning for deception.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeceptionConfig {
    /// Share of hidden spot checks done with a canary instead of an audit
    /// replica. Canaries cannot be fooled by a colluding auditor; audits also
    /// protect the real result being checked (a hardware fault or a lie in
    /// it is not accepted). An audit costs one execution, a canary two (the
    /// host's run and its local computation), so 0.3 rather than 0.5: more
    /// of the checks protect results, and they cost less.
    pub canary_share: f64,
    /// Decoys sent to suspects per real task submitted, on average (while
    /// any suspect is online), at most one outstanding per suspect. Higher =
    /// suspects resolved sooner, at two executions each (the host's run and
    /// the canary's local computation). 0.03: a suspect online for a few
    /// hundred tasks still meets its `release_after` decoys.
    pub decoys_per_task: f64,
    /// Canaries held ready.
    pub pool_capacity: usize,
    /// Ask for more canaries when fewer than this are ready.
    pub low_water: usize,
}

impl Default for DeceptionConfig {
    fn default() -> Self {
        Self {
            canary_share: 0.3,
            decoys_per_task: 0.03,
            pool_capacity: 16,
            low_water: 4,
        }
    }
}

/// A bounded pool of unused canaries.
#[derive(Clone, Debug, Default)]
pub struct CanaryPool {
    pool: VecDeque<Canary>,
    requested: usize,
}

impl CanaryPool {
    /// Adds a canary; refuses beyond `capacity`.
    pub fn push(&mut self, canary: Canary, capacity: usize) -> Result<(), SecurityError> {
        self.requested = self.requested.saturating_sub(1);
        if self.pool.len() >= capacity {
            return Err(SecurityError::TableFull {
                table: "canary",
                capacity,
            });
        }
        self.pool.push_back(canary);
        Ok(())
    }

    /// Takes a canary, if any is ready.
    pub fn take(&mut self) -> Option<Canary> {
        self.pool.pop_front()
    }

    /// Ready canaries.
    pub fn len(&self) -> usize {
        self.pool.len()
    }

    /// Whether none is ready.
    pub fn is_empty(&self) -> bool {
        self.pool.is_empty()
    }

    /// How many to request now (0 if enough are ready or on the way); marks
    /// them as requested.
    pub fn refill(&mut self, cfg: &DeceptionConfig) -> usize {
        let have = self.pool.len() + self.requested;
        if have >= cfg.low_water {
            return 0;
        }
        let want = cfg.pool_capacity.saturating_sub(have);
        self.requested += want;
        want
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::PeerId;

    fn canary() -> Canary {
        Canary {
            module_hash: Digest::from_u64(1),
            input_hash: Digest::from_u64(2),
            fuel_limit: 100,
            output_hash: Digest::from_u64(3),
            fuel: 50,
            peak_memory_bytes: 64,
        }
    }

    fn receipt(out: u64, fuel: u64) -> ReceiptFacts {
        ReceiptFacts {
            job_id: 1,
            host: PeerId::from_u64(1),
            module_hash: Digest::from_u64(1),
            input_hash: Digest::from_u64(2),
            output_hash: Digest::from_u64(out),
            fuel_used: fuel,
            peak_memory_bytes: 64,
            wall_ms: 1,
        }
    }

    #[test]
    fn canary_verdicts() {
        let c = canary();
        assert_eq!(check_canary(&c, &receipt(3, 50), true), CanaryVerdict::Pass);
        assert_eq!(
            check_canary(&c, &receipt(4, 50), true),
            CanaryVerdict::WrongOutput
        );
        assert!(matches!(
            check_canary(&c, &receipt(3, 80), true),
            CanaryVerdict::Counters(_)
        ));
        assert_eq!(
            check_canary(&c, &receipt(3, 80), false),
            CanaryVerdict::Pass
        );
    }

    #[test]
    fn pool_is_bounded_and_refills_once() {
        let cfg = DeceptionConfig {
            pool_capacity: 4,
            low_water: 2,
            ..Default::default()
        };
        let mut p = CanaryPool::default();
        assert_eq!(p.refill(&cfg), 4);
        assert_eq!(p.refill(&cfg), 0, "already requested");
        for _ in 0..4 {
            p.push(canary(), cfg.pool_capacity).unwrap();
        }
        assert!(p.push(canary(), cfg.pool_capacity).is_err());
        assert!(p.take().is_some());
        assert_eq!(p.len(), 3);
    }
}
