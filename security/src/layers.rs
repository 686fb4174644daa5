//! Switches for the five defence layers.
//!
//! Each layer can be turned off so a test can show that, in the same seeded
//! scenario, the attack it targets gets through without it. Production runs
//! with [`LayerSet::ALL`].

use serde::{Deserialize, Serialize};

/// One of the five defence layers of the design.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Layer {
    /// 1. Replicas on random hosts in distinct regions, adaptive replication,
    ///    trust-weighted quorum. Off: every task runs once, on one random host,
    ///    and its answer is taken as is.
    RandomizedExecution,
    /// 2. Receipt binding (CBADU): the receipt must name the job, module and
    ///    input that were dispatched. Off: receipts are taken at face value.
    Receipts,
    /// 3. Deception: canaries mixed into work, suspects see only decoys.
    ///    Off: no canaries; suspects keep receiving real work.
    Deception,
    /// 4. Behaviour monitoring: per-peer anomaly detection. Off: no anomaly
    ///    evidence.
    Monitoring,
    /// 5. Thermal detection: fuel/memory must match the quorum's, wall time
    ///    must be possible. Off: any counters are billed.
    Thermal,
}

impl Layer {
    /// All layers in design order.
    pub const ALL: [Layer; 5] = [
        Layer::RandomizedExecution,
        Layer::Receipts,
        Layer::Deception,
        Layer::Monitoring,
        Layer::Thermal,
    ];

    fn bit(self) -> u8 {
        match self {
            Layer::RandomizedExecution => 1,
            Layer::Receipts => 2,
            Layer::Deception => 4,
            Layer::Monitoring => 8,
            Layer::Thermal => 16,
        }
    }
}

/// A set of enabled layers (a tiny bit set; serialises as its bits).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub struct LayerSet(u8);

impl LayerSet {
    /// Every layer on: the production setting.
    pub const ALL: LayerSet = LayerSet(31);
    /// Every layer off: a baseline that trusts whatever a single host says.
    pub const NONE: LayerSet = LayerSet(0);

    /// Whether `layer` is enabled.
    pub fn contains(self, layer: Layer) -> bool {
        self.0 & layer.bit() != 0
    }

    /// This set with `layer` turned on.
    #[must_use]
    pub fn with(self, layer: Layer) -> Self {
        LayerSet(self.0 | layer.bit())
    }

    /// This set with `layer` turned off, for ablation tests.
    #[must_use]
    pub fn without(self, layer: Layer) -> Self {
        LayerSet(self.0 & !layer.bit())
    }
}

impl Default for LayerSet {
    fn default() -> Self {
        LayerSet::ALL
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_and_without_round_trip() {
        for l in Layer::ALL {
            assert!(LayerSet::ALL.contains(l));
            assert!(!LayerSet::NONE.contains(l));
            assert!(!LayerSet::ALL.without(l).contains(l));
            assert_eq!(LayerSet::ALL.without(l).with(l), LayerSet::ALL);
        }
    }
}
