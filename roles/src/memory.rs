//! Memory: what worked, kept across restarts (serde snapshot; the host does the disk IO).

use serde::{Deserialize, Serialize};

use crate::error::RolesError;
use crate::id::{Millis, NodeId};

/// Version of the snapshot schema; bumped on incompatible changes so an old
/// file is refused instead of misread.
pub const SNAPSHOT_VERSION: u32 = 1;

/// Everything a node needs to not start cold after a restart, or to teach a
/// Young node. Serialize it with serde (the host writes it to its store).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MemorySnapshot {
    /// Schema version, [`SNAPSHOT_VERSION`].
    pub version: u32,
    /// When it was taken (the taker's virtual time).
    pub taken_at: Millis,
    /// Pheromone trails, evaporated to `taken_at`.
    pub trails: Vec<(NodeId, f64)>,
    /// The node's own response thresholds, if it is a worker.
    pub thresholds: Option<[f64; 3]>,
}

impl MemorySnapshot {
    /// Checks the version before use.
    pub fn check(&self) -> Result<(), RolesError> {
        if self.version != SNAPSHOT_VERSION {
            return Err(RolesError::InvalidConfig {
                field: "snapshot.version".into(),
                value: self.version.to_string(),
                reason: "unsupported snapshot version",
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pheromone::{PheromoneTable, ThermalConfig};

    #[test]
    fn snapshot_survives_a_restart() {
        let mut trails = PheromoneTable::new(ThermalConfig::default());
        for i in 0..5 {
            trails.reinforce(NodeId(i), i as f64, 100);
        }
        let snap = MemorySnapshot {
            version: SNAPSHOT_VERSION,
            taken_at: 100,
            trails: trails.export(100),
            thresholds: Some([0.1, 0.5, 0.9]),
        };
        let json = serde_json::to_string(&snap).unwrap();
        let back: MemorySnapshot = serde_json::from_str(&json).unwrap();
        back.check().unwrap();
        let mut restored = PheromoneTable::new(ThermalConfig::default());
        restored.import(&back.trails, 100);
        for i in 0..5 {
            assert!((restored.level(NodeId(i), 100) - trails.level(NodeId(i), 100)).abs() < 1e-12);
        }
        let bad = MemorySnapshot {
            version: 99,
            ..back
        };
        assert!(bad.check().is_err());
    }
}
