//! Aggregating model updates in federated learning: plain FedAvg and a
//! robust rule, coordinate-wise median.
//!
//! FedAvg (McMahan et al., 2017) averages the clients' parameters weighted
//! by their sample counts. One client that returns well-formed but harmful
//! parameters (sign-flipped, scaled) moves that average arbitrarily far:
//! its breakdown point is 0.
//!
//! The robust rule here is the coordinate-wise median (Yin et al., 2018;
//! Flower's `FedMedian`). Chosen over its two common alternatives because:
//! - it needs no parameter: trimmed mean must be told how many clients to
//!   trim (`β ≥ f/n`), and a wrong guess is either not robust or wastes
//!   honest updates;
//! - it tolerates up to `⌊(n-1)/2⌋` arbitrary updates, 2 of 5 here, where
//!   Krum needs `n ≥ 2f + 3` and keeps a single client's update per round,
//!   which throws away most of the honest clients' work;
//! - it is exact and order-free: each coordinate's median is one of the
//!   inputs (or the mean of the middle two), so every replica of the
//!   aggregation gives the same bits whatever order updates arrive in.
//!
//! Its price: on honest, similar updates it is a noisier estimate than the
//! mean (it ignores the sample weights), so it converges a little slower.
//!
//! Pure functions, no IO; inputs are validated and a refused input returns
//! [`SecurityError::BadUpdates`] with nothing computed.

use crate::SecurityError;

/// Which rule aggregates the updates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregator {
    /// Sample-weighted mean (not robust).
    FedAvg,
    /// Coordinate-wise median (robust to fewer than half bad updates).
    Median,
}

impl Aggregator {
    /// Flower's name for the rule (`FedAvg`, `FedMedian`).
    pub fn name(self) -> &'static str {
        match self {
            Aggregator::FedAvg => "FedAvg",
            Aggregator::Median => "FedMedian",
        }
    }

    /// Aggregates `updates` (each with its sample count) with this rule.
    pub fn aggregate(self, updates: &[(&[f32], u64)]) -> Result<Vec<f32>, SecurityError> {
        match self {
            Aggregator::FedAvg => fedavg(updates),
            Aggregator::Median => {
                let u: Vec<&[f32]> = updates.iter().map(|(u, _)| *u).collect();
                median(&u)
            }
        }
    }
}

/// Most updates one aggregation takes (bounds the work per call).
pub const MAX_UPDATES: usize = 4096;

fn check(updates: &[&[f32]]) -> Result<usize, SecurityError> {
    let bad = |m: String| Err(SecurityError::BadUpdates(m));
    let Some(first) = updates.first() else {
        return bad("no updates".into());
    };
    if updates.len() > MAX_UPDATES {
        return bad(format!("{} updates, at most {MAX_UPDATES}", updates.len()));
    }
    let n = first.len();
    for (i, u) in updates.iter().enumerate() {
        if u.len() != n {
            return bad(format!(
                "update {i} has {} values, update 0 has {n}",
                u.len()
            ));
        }
        if let Some(j) = u.iter().position(|v| !v.is_finite()) {
            return bad(format!("update {i} has a non-finite value at {j}"));
        }
    }
    Ok(n)
}

/// FedAvg: `Σ wᵢ·uᵢ / Σ wᵢ` per coordinate, summed in `f64` in the given
/// order (deterministic for a given order).
pub fn fedavg(updates: &[(&[f32], u64)]) -> Result<Vec<f32>, SecurityError> {
    let u: Vec<&[f32]> = updates.iter().map(|(u, _)| *u).collect();
    let n = check(&u)?;
    let total: u128 = updates.iter().map(|(_, w)| u128::from(*w)).sum();
    if total == 0 {
        return Err(SecurityError::BadUpdates("total sample weight is 0".into()));
    }
    let total = total as f64;
    Ok((0..n)
        .map(|j| {
            let s: f64 = updates
                .iter()
                .map(|(u, w)| f64::from(u[j]) * *w as f64)
                .sum();
            (s / total) as f32
        })
        .collect())
}

/// Coordinate-wise median; for an even count, the mean of the middle two.
pub fn median(updates: &[&[f32]]) -> Result<Vec<f32>, SecurityError> {
    let n = check(updates)?;
    let mut col = Vec::with_capacity(updates.len());
    Ok((0..n)
        .map(|j| {
            col.clear();
            col.extend(updates.iter().map(|u| u[j]));
            // All finite (checked), so total_cmp is the numeric order.
            col.sort_unstable_by(f32::total_cmp);
            let m = col.len() / 2;
            if col.len() % 2 == 1 {
                col[m]
            } else {
                ((f64::from(col[m - 1]) + f64::from(col[m])) / 2.0) as f32
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn fedavg_weights_by_samples_and_median_ignores_an_outlier() {
        let a = [1.0f32, 2.0];
        let b = [3.0f32, 6.0];
        assert_eq!(fedavg(&[(&a, 1), (&b, 3)]).unwrap(), vec![2.5, 5.0]);
        let poison = [-1000.0f32, 1e6];
        let ups: Vec<&[f32]> = vec![&a, &b, &[2.0, 4.0], &poison, &[2.5, 3.0]];
        assert_eq!(median(&ups).unwrap(), vec![2.0, 4.0]);
        // FedAvg is dragged by the same outlier.
        let w: Vec<(&[f32], u64)> = ups.iter().map(|u| (*u, 1)).collect();
        assert!(fedavg(&w).unwrap()[1] > 1e5);
        assert_eq!(median(&[&a, &b]).unwrap(), vec![2.0, 4.0]);
        assert_eq!(Aggregator::Median.name(), "FedMedian");
    }

    #[test]
    fn bad_updates_are_refused() {
        let e = |r: Result<Vec<f32>, SecurityError>| match r {
            Err(SecurityError::BadUpdates(m)) => m,
            other => panic!("expected BadUpdates, got {other:?}"),
        };
        assert_eq!(e(median(&[])), "no updates");
        assert!(e(median(&[&[1.0], &[1.0, 2.0]])).contains("update 1 has 2 values"));
        assert!(e(median(&[&[f32::NAN]])).contains("non-finite"));
        assert!(e(fedavg(&[(&[1.0], 0)])).contains("weight is 0"));
        assert!(e(fedavg(&[(&[f32::INFINITY], 1)])).contains("non-finite"));
    }

    proptest! {
        /// With fewer than half the updates replaced by anything finite,
        /// every coordinate of the median stays within the honest
        /// updates' range; and the median does not depend on their order.
        #[test]
        fn median_is_bounded_by_honest_values_and_order_free(
            honest in prop::collection::vec(prop::collection::vec(-10.0f32..10.0, 4), 3..8),
            bad in -1e30f32..1e30,
            rot in 0usize..8,
        ) {
            let f = (honest.len() - 1) / 2;
            let poison = vec![bad; 4];
            let mut ups: Vec<&[f32]> = honest.iter().map(|v| v.as_slice()).collect();
            for _ in 0..f {
                ups.push(&poison);
            }
            let m = median(&ups).unwrap();
            for (j, v) in m.iter().enumerate() {
                let lo = honest.iter().map(|h| h[j]).fold(f32::INFINITY, f32::min);
                let hi = honest.iter().map(|h| h[j]).fold(f32::NEG_INFINITY, f32::max);
                prop_assert!(*v >= lo && *v <= hi, "coordinate {} = {} outside [{}, {}]", j, v, lo, hi);
            }
            let k = rot % ups.len();
            ups.rotate_left(k);
            prop_assert_eq!(median(&ups).unwrap(), m);
        }

        /// FedAvg of identical updates is that update.
        #[test]
        fn fedavg_of_equal_updates_is_the_update(
            u in prop::collection::vec(-1e3f32..1e3, 1..16),
            w in prop::collection::vec(1u64..1000, 1..6),
        ) {
            let ups: Vec<(&[f32], u64)> = w.iter().map(|w| (u.as_slice(), *w)).collect();
            let avg = fedavg(&ups).unwrap();
            for (a, b) in avg.iter().zip(&u) {
                prop_assert!((a - b).abs() <= 1e-3 * b.abs().max(1.0));
            }
        }
    }
}
