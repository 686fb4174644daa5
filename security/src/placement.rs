//! Layer 1, randomized execution: who runs a task, and how often to check.
//!
//! Replicas go to peers drawn uniformly at random among the eligible ones, in
//! distinct address regions: a colluder cannot choose its partner replicas,
//! and many identities from one region cannot fill one task. Trusted peers run
//! work alone but are spot-checked (hidden audit or canary) at a rate that
//! starts at `spot_check_initial` when they are promoted and falls
//! geometrically as they pass checks, down to `spot_check_floor`. A peer that
//! cheats as soon as it thinks it is alone meets its probation canaries first
//! (see [`SecurityConfig::probation_canaries`](crate::SecurityConfig)); one
//! that waits for the floor faces the coordinator's alarm, which lifts every
//! trusted peer's rate while trusted peers are being caught.

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::error::SecurityError;
use crate::ids::PeerId;

/// Tuning for placement and adaptive replication.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PlacementConfig {
    /// Put replicas of a task in distinct regions. Costs nothing while there
    /// are more regions than replicas.
    pub distinct_regions: bool,
    /// Most executions (replicas plus audits) one task may receive before
    /// the crate gives up on it.
    pub max_replicas: usize,
    /// Extra dispatches allowed to replace failed ones.
    pub max_retries: usize,
    /// Spot-check probability right after promotion to trusted.
    pub spot_check_initial: f64,
    /// Factor applied to the rate per passed check (geometric decay), in (0, 1].
    pub spot_check_decay: f64,
    /// Spot-check probability never goes below this. It is the long-run
    /// overhead for proven peers (1.3 executions per check at the default
    /// canary share). 1%: 0.013 replicas per task in a quiet network; an
    /// attacker that waits for the floor lies about 1/floor times before a
    /// check meets it, which is what the coordinator's alarm answers.
    pub spot_check_floor: f64,
    /// Random draws before falling back to a scan when sampling a peer.
    pub sample_tries: usize,
}

impl Default for PlacementConfig {
    fn default() -> Self {
        Self {
            distinct_regions: true,
            max_replicas: 8,
            max_retries: 8,
            spot_check_initial: 0.2,
            spot_check_decay: 0.5,
            spot_check_floor: 0.01,
            sample_tries: 64,
        }
    }
}

impl PlacementConfig {
    /// Checks ranges.
    pub fn validate(&self) -> Result<(), SecurityError> {
        let ok = (0.0..=1.0).contains(&self.spot_check_initial)
            && (0.0..=1.0).contains(&self.spot_check_floor)
            && self.spot_check_decay > 0.0
            && self.spot_check_decay <= 1.0
            && self.max_replicas >= 2
            && self.sample_tries > 0;
        if ok {
            Ok(())
        } else {
            Err(SecurityError::InvalidConfig {
                field: "placement",
                value: format!("{self:?}"),
                why: "rates in [0,1], spot_check_decay in (0, 1], max_replicas >= 2, sample_tries > 0",
            })
        }
    }
}

/// Spot-check probability for a trusted peer that has passed `checks_passed`
/// hidden checks since its promotion.
pub fn spot_check_rate(cfg: &PlacementConfig, checks_passed: u32) -> f64 {
    let r = cfg.spot_check_initial * cfg.spot_check_decay.powi(checks_passed.min(10_000) as i32);
    r.max(cfg.spot_check_floor).min(1.0)
}

/// Draws a peer uniformly among the union of `a` and `b` that satisfies
/// `eligible`: rejection sampling first (O(1) when most are eligible), then a
/// scan from a random offset so a rare eligible peer is still found. Two
/// slices so callers can sample workers and suspects together without
/// copying.
pub fn pick<R: Rng>(
    rng: &mut R,
    a: &[PeerId],
    b: &[PeerId],
    tries: usize,
    mut eligible: impl FnMut(&PeerId) -> bool,
) -> Option<PeerId> {
    let n = a.len() + b.len();
    if n == 0 {
        return None;
    }
    let at = |i: usize| if i < a.len() { a[i] } else { b[i - a.len()] };
    for _ in 0..tries {
        let c = at(rng.random_range(0..n));
        if eligible(&c) {
            return Some(c);
        }
    }
    let start = rng.random_range(0..n);
    (0..n).map(|i| at((start + i) % n)).find(|c| eligible(c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn spot_check_rate_falls_with_record_to_floor() {
        let cfg = PlacementConfig::default();
        let mut last = 2.0;
        for n in [0, 1, 4, 16, 64, 1000] {
            let r = spot_check_rate(&cfg, n);
            assert!(r <= last && r >= cfg.spot_check_floor);
            last = r;
        }
        assert_eq!(spot_check_rate(&cfg, 1_000_000), cfg.spot_check_floor);
    }

    #[test]
    fn pick_finds_rare_eligible_and_none_when_absent() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let peers: Vec<PeerId> = (0..1000).map(PeerId::from_u64).collect();
        let target = PeerId::from_u64(777);
        assert_eq!(
            pick(&mut rng, &peers[..500], &peers[500..], 4, |p| *p == target),
            Some(target)
        );
        assert_eq!(pick(&mut rng, &peers, &[], 4, |_| false), None);
    }
}
