//! Trust-weighted quorum: when do replicated results count as accepted?
//!
//! Each vote carries the voter's trust weight (see
//! [`Reputation::weight`](crate::Reputation::weight)). An output is accepted
//! only if
//! - its supporting weight is at least `accept_weight` (enough trust in total:
//!   four agreeing newcomers at the default cap of 0.25, or one trusted peer
//!   plus one more),
//! - it holds at least `dominance` of all weight cast (default 2/3, so a
//!   close split is escalated rather than decided), which implies a strict
//!   weight majority: a minority answer is never accepted,
//! - and at least `min_votes` distinct voters back it.
//!
//! Otherwise the caller adds a replica and asks again.

use serde::{Deserialize, Serialize};

use crate::error::SecurityError;
use crate::ids::{Digest, PeerId};

/// One replica's answer.
#[derive(Clone, Copy, PartialEq, Debug, Serialize, Deserialize)]
pub struct Vote {
    /// Who computed it.
    pub peer: PeerId,
    /// Digest of the output.
    pub output: Digest,
    /// The voter's trust weight in [0, 1).
    pub weight: f64,
}

/// The acceptance rule.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuorumRule {
    /// Minimum total weight behind the accepted output.
    pub accept_weight: f64,
    /// Minimum share of all cast weight, in (0.5, 1].
    pub dominance: f64,
    /// Minimum number of agreeing voters.
    pub min_votes: usize,
}

impl Default for QuorumRule {
    fn default() -> Self {
        Self {
            accept_weight: 1.0,
            dominance: 2.0 / 3.0,
            min_votes: 2,
        }
    }
}

impl QuorumRule {
    /// Checks ranges.
    pub fn validate(&self) -> Result<(), SecurityError> {
        if !(self.dominance > 0.5 && self.dominance <= 1.0) {
            return Err(SecurityError::InvalidConfig {
                field: "quorum.dominance",
                value: self.dominance.to_string(),
                why: "must be in (0.5, 1] so a minority answer can never win",
            });
        }
        if self.accept_weight <= 0.0 || self.min_votes == 0 {
            return Err(SecurityError::InvalidConfig {
                field: "quorum.accept_weight",
                value: self.accept_weight.to_string(),
                why: "accept_weight and min_votes must be > 0",
            });
        }
        Ok(())
    }
}

/// The quorum's verdict.
#[derive(Clone, Copy, PartialEq, Debug, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "kebab-case")]
pub enum Verdict {
    /// `output` is accepted.
    Accept {
        /// The accepted output.
        output: Digest,
        /// Weight behind it.
        support: f64,
        /// All weight cast.
        total: f64,
    },
    /// Not decided: add a replica.
    Undecided {
        /// The output with the most weight so far, if any vote was cast.
        leading: Option<Digest>,
        /// Weight behind the leader.
        support: f64,
        /// All weight cast.
        total: f64,
    },
}

/// Applies `rule` to `votes`. A peer voting twice counts once (its first
/// vote), so a host cannot stuff the ballot by answering twice.
pub fn decide(votes: &[Vote], rule: &QuorumRule) -> Verdict {
    // Tiny inputs (≤ a handful of replicas): a linear tally beats a map.
    let mut tally: Vec<(Digest, f64, usize)> = Vec::with_capacity(votes.len());
    let mut total = 0.0;
    for (i, v) in votes.iter().enumerate() {
        if votes[..i].iter().any(|u| u.peer == v.peer) {
            continue;
        }
        let w = if v.weight.is_finite() {
            v.weight.max(0.0)
        } else {
            0.0
        };
        total += w;
        match tally.iter_mut().find(|(o, _, _)| *o == v.output) {
            Some(t) => {
                t.1 += w;
                t.2 += 1;
            }
            None => tally.push((v.output, w, 1)),
        }
    }
    let leader = tally
        .iter()
        .copied()
        .max_by(|a, b| a.1.total_cmp(&b.1).then_with(|| b.0.cmp(&a.0)));
    match leader {
        Some((output, support, count))
            if support >= rule.accept_weight
                && count >= rule.min_votes
                && support >= rule.dominance * total
                && support > total - support =>
        {
            Verdict::Accept {
                output,
                support,
                total,
            }
        }
        Some((output, support, _)) => Verdict::Undecided {
            leading: Some(output),
            support,
            total,
        },
        None => Verdict::Undecided {
            leading: None,
            support: 0.0,
            total: 0.0,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn v(peer: u64, out: u64, w: f64) -> Vote {
        Vote {
            peer: PeerId::from_u64(peer),
            output: Digest::from_u64(out),
            weight: w,
        }
    }

    #[test]
    fn trusted_pair_accepts_newcomer_pair_does_not() {
        let r = QuorumRule::default();
        assert!(matches!(
            decide(&[v(1, 7, 0.9), v(2, 7, 0.9)], &r),
            Verdict::Accept { .. }
        ));
        assert!(matches!(
            decide(&[v(1, 7, 0.25), v(2, 7, 0.25)], &r),
            Verdict::Undecided { .. }
        ));
        // Four agreeing newcomers reach the bar.
        let four: Vec<_> = (0..4).map(|i| v(i, 7, 0.25)).collect();
        assert!(matches!(decide(&four, &r), Verdict::Accept { .. }));
    }

    #[test]
    fn close_split_escalates() {
        let r = QuorumRule::default();
        let out = decide(&[v(1, 7, 0.9), v(2, 7, 0.5), v(3, 8, 0.9)], &r);
        assert!(matches!(out, Verdict::Undecided { .. }), "{out:?}");
    }

    #[test]
    fn duplicate_voter_counts_once() {
        let r = QuorumRule::default();
        assert!(matches!(
            decide(&[v(1, 7, 0.9), v(1, 7, 0.9)], &r),
            Verdict::Undecided { .. }
        ));
    }

    proptest! {
        #[test]
        fn never_accepts_a_minority_answer(votes in proptest::collection::vec((0u64..8, 0u64..3, 0.0f64..1.0), 0..12)) {
            let votes: Vec<Vote> = votes.into_iter().map(|(p, o, w)| v(p, o, w)).collect();
            if let Verdict::Accept { output, support, total } = decide(&votes, &QuorumRule::default()) {
                // Recount independently (first vote per peer).
                let mut seen = Vec::new();
                let (mut for_w, mut all_w) = (0.0, 0.0);
                for x in &votes {
                    if seen.contains(&x.peer) { continue; }
                    seen.push(x.peer);
                    all_w += x.weight;
                    if x.output == output { for_w += x.weight; }
                }
                prop_assert!((for_w - support).abs() < 1e-9 && (all_w - total).abs() < 1e-9);
                prop_assert!(for_w > all_w - for_w, "minority accepted: {for_w} of {all_w}");
                prop_assert!(for_w >= 1.0);
            }
        }
    }
}
