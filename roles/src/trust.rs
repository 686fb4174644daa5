//! Trust: the bridge to the security crate's reputation, as a plain score input.

use std::collections::BTreeMap;

use crate::id::NodeId;

/// Source of trust scores in `[0, 1]`: what Young weighs elders' tables by.
/// The simulator fills a [`TrustScores`] from each Bravo's record of verified
/// results; a live submitter's Young bootstrap (`node::young` in the host)
/// passes a closure of what each elder has paid, as its carriers attest.
/// `roles` never depends on
/// `security`, so the two crates can evolve and be tested apart.
pub trait TrustSource {
    /// Trust in `node`; unknown nodes should get a neutral-low score.
    fn trust(&self, node: NodeId) -> f64;
}

/// A fixed table of scores: what the simulator and tests use, and what the
/// host can fill from reputation snapshots.
#[derive(Clone, Debug, Default)]
pub struct TrustScores {
    scores: BTreeMap<NodeId, f64>,
    /// Score of a node not in the table. Default 0.
    pub unknown: f64,
}

impl TrustScores {
    /// Sets a node's score (clamped to `[0, 1]`).
    pub fn set(&mut self, node: NodeId, score: f64) {
        self.scores.insert(
            node,
            if score.is_finite() {
                score.clamp(0.0, 1.0)
            } else {
                0.0
            },
        );
    }
}

impl TrustSource for TrustScores {
    fn trust(&self, node: NodeId) -> f64 {
        self.scores.get(&node).copied().unwrap_or(self.unknown)
    }
}

impl<F: Fn(NodeId) -> f64> TrustSource for F {
    fn trust(&self, node: NodeId) -> f64 {
        self(node).clamp(0.0, 1.0)
    }
}
