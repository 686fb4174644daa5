//! Thermal: pheromone trails and ant-colony placement.

use std::collections::HashMap;

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::error::RolesError;
use crate::id::{Millis, NodeId};

/// Parameters of the Thermal behaviour (MAX–MIN ant system).
///
/// Placement picks candidate `i` with probability ∝ `trail_i^alpha · heuristic_i^beta`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ThermalConfig {
    /// Weight of learned trails. Default 1.0; higher exploits known-fast hosts
    /// harder and learns less about the others.
    pub alpha: f64,
    /// Weight of the advertised heuristic (free capacity / price). Default 2.0,
    /// so load still steers work away from a fast host with a long queue.
    pub beta: f64,
    /// Trail half-life in ms. Default 10 s: long enough to average many
    /// completions, short enough that a host that slowed down is forgotten
    /// within a minute.
    pub half_life_ms: Millis,
    /// Trail deposited per verified completion at reference speed. Default 0.1.
    pub deposit: f64,
    /// Floor of every trail (keeps exploring every host). Default 0.05.
    pub tau_min: f64,
    /// Ceiling of every trail (no host monopolises placement). Default 10.
    pub tau_max: f64,
    /// Trail of a host never seen before. Default 1.0.
    pub tau_init: f64,
    /// Most hosts tracked; the weakest trail is evicted past it. Default 4096,
    /// about 100 KiB.
    pub capacity: usize,
}

impl Default for ThermalConfig {
    fn default() -> Self {
        Self {
            alpha: 1.0,
            beta: 2.0,
            half_life_ms: 10_000,
            deposit: 0.1,
            tau_min: 0.05,
            tau_max: 10.0,
            tau_init: 1.0,
            capacity: 4096,
        }
    }
}

impl ThermalConfig {
    /// Checks ranges; call once before building tables.
    pub fn validate(&self) -> Result<(), RolesError> {
        let bad = |field: &str, value: String, reason| {
            Err(RolesError::InvalidConfig {
                field: field.into(),
                value,
                reason,
            })
        };
        if !(self.alpha >= 0.0 && self.alpha <= 10.0) {
            return bad("thermal.alpha", self.alpha.to_string(), "must be in 0..=10");
        }
        if !(self.beta >= 0.0 && self.beta <= 10.0) {
            return bad("thermal.beta", self.beta.to_string(), "must be in 0..=10");
        }
        if self.half_life_ms == 0 {
            return bad("thermal.half_life_ms", "0".into(), "must be positive");
        }
        if !(self.tau_min > 0.0 && self.tau_min <= self.tau_init && self.tau_init <= self.tau_max) {
            return bad(
                "thermal.tau_min/tau_init/tau_max",
                format!("{}/{}/{}", self.tau_min, self.tau_init, self.tau_max),
                "need 0 < tau_min <= tau_init <= tau_max",
            );
        }
        if !(self.deposit > 0.0) || self.capacity == 0 {
            return bad(
                "thermal.deposit/capacity",
                format!("{}/{}", self.deposit, self.capacity),
                "must be positive",
            );
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug)]
struct Trail {
    level: f64,
    at: Millis,
}

/// Per-host trail strengths with lazy evaporation.
///
/// Evaporation is applied when an entry is read (`level · 2^(-dt/half_life)`,
/// never below `tau_min`), so the table needs no timer and costs O(1) per
/// touch. The table is bounded by `capacity`.
#[derive(Clone, Debug)]
pub struct PheromoneTable {
    cfg: ThermalConfig,
    trails: HashMap<NodeId, Trail>,
    weights: Vec<f64>,
}

impl PheromoneTable {
    /// An empty table; every host starts at `tau_init`.
    pub fn new(cfg: ThermalConfig) -> Self {
        Self {
            cfg,
            trails: HashMap::new(),
            weights: Vec::new(),
        }
    }

    /// The configuration this table runs with.
    pub fn config(&self) -> &ThermalConfig {
        &self.cfg
    }

    /// Number of hosts tracked.
    pub fn len(&self) -> usize {
        self.trails.len()
    }

    /// True when no host has a trail yet (a cold start).
    pub fn is_empty(&self) -> bool {
        self.trails.is_empty()
    }

    fn evaporated(&self, t: Trail, now: Millis) -> f64 {
        let dt = now.saturating_sub(t.at) as f64;
        let decayed =
            t.level * (-(dt / self.cfg.half_life_ms as f64) * std::f64::consts::LN_2).exp();
        decayed.clamp(self.cfg.tau_min, self.cfg.tau_max)
    }

    /// Trail strength of `host` at `now`, always within `[tau_min, tau_max]`.
    pub fn level(&self, host: NodeId, now: Millis) -> f64 {
        match self.trails.get(&host) {
            Some(t) => self.evaporated(*t, now),
            None => self.cfg.tau_init,
        }
    }

    /// A verified completion on `host`: deposit `deposit · speed_weight`
    /// (speed relative to the reference speed, so faster completions leave
    /// stronger trails). Unverified results must not be reported here: trails
    /// are only as honest as their input.
    pub fn reinforce(&mut self, host: NodeId, speed_weight: f64, now: Millis) {
        let w = if speed_weight.is_finite() {
            speed_weight.clamp(0.0, 100.0)
        } else {
            0.0
        };
        let level = (self.level(host, now) + self.cfg.deposit * w)
            .clamp(self.cfg.tau_min, self.cfg.tau_max);
        self.insert(host, level, now);
    }

    /// A failed or timed-out job on `host`: halve its trail, so placement
    /// moves away from it at once rather than waiting for evaporation.
    pub fn punish(&mut self, host: NodeId, now: Millis) {
        let level = (self.level(host, now) * 0.5).max(self.cfg.tau_min);
        self.insert(host, level, now);
    }

    /// Forgets a host that left.
    pub fn remove(&mut self, host: NodeId) {
        self.trails.remove(&host);
    }

    fn insert(&mut self, host: NodeId, level: f64, now: Millis) {
        if !self.trails.contains_key(&host) && self.trails.len() >= self.cfg.capacity {
            // Evict the weakest trail (ties: highest id) to stay bounded.
            let victim = self
                .trails
                .iter()
                .map(|(id, t)| (self.evaporated(*t, now), *id))
                .min_by(|a, b| a.0.total_cmp(&b.0).then(b.1.cmp(&a.1)))
                .map(|(_, id)| id);
            if let Some(v) = victim {
                self.trails.remove(&v);
            }
        }
        self.trails.insert(host, Trail { level, at: now });
    }

    /// Selection weight `trail^alpha · heuristic^beta` of one candidate.
    pub fn weight(&self, host: NodeId, heuristic: f64, now: Millis) -> f64 {
        let eta = if heuristic.is_finite() && heuristic > 0.0 {
            heuristic
        } else {
            0.0
        };
        if eta == 0.0 {
            return 0.0;
        }
        (self.cfg.alpha * self.level(host, now).ln() + self.cfg.beta * eta.ln()).exp()
    }

    /// Placement probabilities over `candidates` (host, heuristic); they sum
    /// to one. When every weight is zero (all hosts report no capacity) the
    /// choice is uniform, so work is never refused by the placer itself.
    pub fn probabilities(&self, candidates: &[(NodeId, f64)], now: Millis) -> Vec<f64> {
        let w: Vec<f64> = candidates
            .iter()
            .map(|(h, e)| self.weight(*h, *e, now))
            .collect();
        let total: f64 = w.iter().sum();
        if total > 0.0 && total.is_finite() {
            w.into_iter().map(|x| x / total).collect()
        } else {
            vec![1.0 / candidates.len().max(1) as f64; candidates.len()]
        }
    }

    /// Picks one candidate ant-colony style; returns its index, or `None` for
    /// an empty slice.
    pub fn choose<R: Rng + ?Sized>(
        &mut self,
        candidates: &[(NodeId, f64)],
        now: Millis,
        rng: &mut R,
    ) -> Option<usize> {
        if candidates.is_empty() {
            return None;
        }
        let mut weights = std::mem::take(&mut self.weights);
        weights.clear();
        weights.extend(candidates.iter().map(|(h, e)| self.weight(*h, *e, now)));
        let pick = sample(&weights, rng);
        self.weights = weights;
        Some(pick)
    }

    /// Current trails, sorted by host, for snapshots and for Young elders.
    pub fn export(&self, now: Millis) -> Vec<(NodeId, f64)> {
        let mut v: Vec<(NodeId, f64)> = self
            .trails
            .iter()
            .map(|(h, t)| (*h, self.evaporated(*t, now)))
            .collect();
        v.sort_by_key(|(h, _)| *h);
        v
    }

    /// Loads trails (from a snapshot or from elders), clamped to the bounds.
    pub fn import(&mut self, trails: &[(NodeId, f64)], now: Millis) {
        for (h, level) in trails {
            if level.is_finite() {
                let l = level.clamp(self.cfg.tau_min, self.cfg.tau_max);
                self.insert(*h, l, now);
            }
        }
    }
}

/// Samples an index with probability ∝ `weights[i]`; uniform when all are zero.
pub(crate) fn sample<R: Rng + ?Sized>(weights: &[f64], rng: &mut R) -> usize {
    let total: f64 = weights.iter().sum();
    if !(total > 0.0 && total.is_finite()) {
        return rng.random_range(0..weights.len());
    }
    let mut u = rng.random::<f64>() * total;
    for (i, w) in weights.iter().enumerate() {
        if u < *w {
            return i;
        }
        u -= w;
    }
    // Rounding left u just above the last weight: take the last positive one.
    weights.iter().rposition(|w| *w > 0.0).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn reinforcement_raises_and_evaporation_halves() {
        let mut t = PheromoneTable::new(ThermalConfig::default());
        let h = NodeId(1);
        assert_eq!(t.level(h, 0), 1.0);
        t.reinforce(h, 10.0, 0);
        assert!((t.level(h, 0) - 2.0).abs() < 1e-9);
        // One half-life later the trail has halved.
        assert!((t.level(h, 10_000) - 1.0).abs() < 1e-9);
        // Long after, it rests at the floor, never below.
        assert_eq!(t.level(h, 10_000_000), 0.05);
    }

    #[test]
    fn faster_completions_leave_stronger_trails_and_win_placement() {
        let mut t = PheromoneTable::new(ThermalConfig::default());
        for i in 0..20 {
            t.reinforce(NodeId(1), 2.0, i * 100);
            t.reinforce(NodeId(2), 0.2, i * 100);
        }
        assert!(t.level(NodeId(1), 2000) > t.level(NodeId(2), 2000));
        let p = t.probabilities(&[(NodeId(1), 1.0), (NodeId(2), 1.0)], 2000);
        assert!(p[0] > 0.7, "{p:?}");
        t.punish(NodeId(1), 2000);
        let p2 = t.probabilities(&[(NodeId(1), 1.0), (NodeId(2), 1.0)], 2000);
        assert!(p2[0] < p[0]);
    }

    #[test]
    fn table_is_bounded() {
        let cfg = ThermalConfig {
            capacity: 8,
            ..Default::default()
        };
        let mut t = PheromoneTable::new(cfg);
        for i in 0..100 {
            t.reinforce(NodeId(i), 1.0, 0);
        }
        assert_eq!(t.len(), 8);
    }

    #[test]
    fn choose_is_deterministic_for_a_seed() {
        let mut t = PheromoneTable::new(ThermalConfig::default());
        let c: Vec<_> = (0..10).map(|i| (NodeId(i), 1.0 + i as f64)).collect();
        let a: Vec<_> = {
            let mut r = ChaCha8Rng::seed_from_u64(7);
            (0..50).map(|_| t.choose(&c, 0, &mut r).unwrap()).collect()
        };
        let b: Vec<_> = {
            let mut r = ChaCha8Rng::seed_from_u64(7);
            (0..50).map(|_| t.choose(&c, 0, &mut r).unwrap()).collect()
        };
        assert_eq!(a, b);
    }

    proptest! {
        #[test]
        fn trails_stay_bounded(ops in proptest::collection::vec((0u32..5, -5.0f64..50.0, 0u64..100_000), 1..200)) {
            let mut t = PheromoneTable::new(ThermalConfig::default());
            let mut now = 0;
            for (h, w, dt) in ops {
                now += dt;
                if w < 0.0 { t.punish(NodeId(h), now) } else { t.reinforce(NodeId(h), w, now) }
                for i in 0..5 {
                    let l = t.level(NodeId(i), now);
                    prop_assert!((0.05..=10.0).contains(&l), "level {}", l);
                }
            }
        }

        #[test]
        fn probabilities_sum_to_one(hs in proptest::collection::vec(0.0f64..100.0, 1..40), alpha in 0.0f64..5.0, beta in 0.0f64..5.0) {
            let mut t = PheromoneTable::new(ThermalConfig { alpha, beta, ..Default::default() });
            for i in 0..hs.len() as u32 { t.reinforce(NodeId(i), i as f64 * 0.3, 0); }
            let c: Vec<_> = hs.iter().enumerate().map(|(i, e)| (NodeId(i as u32), *e)).collect();
            let p = t.probabilities(&c, 500);
            let s: f64 = p.iter().sum();
            prop_assert!((s - 1.0).abs() < 1e-9, "sum {}", s);
            prop_assert!(p.iter().all(|x| *x >= 0.0));
        }
    }
}
