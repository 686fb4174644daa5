//! Memory: what worked, kept across restarts (serde snapshot; the host does the disk IO).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::error::RolesError;
use crate::id::{Millis, NodeId};

/// Version of the snapshot schema; bumped on incompatible changes so an old
/// file is refused instead of misread.
pub const SNAPSHOT_VERSION: u32 = 1;

/// Performance record of one host, as observed by this node.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct HostRecord {
    /// The host.
    pub host: NodeId,
    /// Exponential moving average of observed speed (work / exec time).
    pub speed: f64,
    /// Verified completions seen.
    pub completions: u64,
    /// Failures and timeouts seen.
    pub failures: u64,
    /// Last time it was heard from.
    pub last_seen: Millis,
}

/// Bounded table of host performance history.
#[derive(Clone, Debug, Default)]
pub struct HostHistory {
    records: HashMap<NodeId, HostRecord>,
    capacity: usize,
}

impl HostHistory {
    /// A history of at most `capacity` hosts (least recently seen evicted).
    pub fn new(capacity: usize) -> Self {
        Self {
            records: HashMap::new(),
            capacity: capacity.max(1),
        }
    }

    /// Records a completion at `speed` (or a failure).
    pub fn record(&mut self, host: NodeId, speed: Option<f64>, now: Millis) {
        if !self.records.contains_key(&host)
            && self.records.len() >= self.capacity
            && let Some(old) = self
                .records
                .values()
                .min_by_key(|r| (r.last_seen, r.host))
                .map(|r| r.host)
        {
            self.records.remove(&old);
        }
        let r = self.records.entry(host).or_insert(HostRecord {
            host,
            speed: 0.0,
            completions: 0,
            failures: 0,
            last_seen: now,
        });
        r.last_seen = now;
        match speed {
            Some(s) => {
                r.speed = if r.completions == 0 {
                    s
                } else {
                    0.8 * r.speed + 0.2 * s
                };
                r.completions += 1;
            }
            None => r.failures += 1,
        }
    }

    /// Record of one host.
    pub fn get(&self, host: NodeId) -> Option<&HostRecord> {
        self.records.get(&host)
    }

    /// Completions recorded over all hosts (this node's experience).
    pub fn experience(&self) -> u64 {
        self.records.values().map(|r| r.completions).sum()
    }

    /// All records, sorted by host (deterministic order for snapshots).
    pub fn records(&self) -> Vec<HostRecord> {
        let mut v: Vec<_> = self.records.values().copied().collect();
        v.sort_by_key(|r| r.host);
        v
    }
}

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
    /// Host performance history.
    pub history: Vec<HostRecord>,
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

    /// Restores the history table from this snapshot.
    pub fn restore_history(&self, capacity: usize) -> HostHistory {
        let mut h = HostHistory::new(capacity);
        for r in &self.history {
            h.records.insert(r.host, *r);
        }
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pheromone::{PheromoneTable, ThermalConfig};

    #[test]
    fn snapshot_survives_a_restart() {
        let mut trails = PheromoneTable::new(ThermalConfig::default());
        let mut hist = HostHistory::new(16);
        for i in 0..5 {
            trails.reinforce(NodeId(i), i as f64, 100);
            hist.record(NodeId(i), Some(i as f64 + 1.0), 100);
        }
        let snap = MemorySnapshot {
            version: SNAPSHOT_VERSION,
            taken_at: 100,
            trails: trails.export(100),
            thresholds: Some([0.1, 0.5, 0.9]),
            history: hist.records(),
        };
        let json = serde_json::to_string(&snap).unwrap();
        let back: MemorySnapshot = serde_json::from_str(&json).unwrap();
        back.check().unwrap();
        let mut restored = PheromoneTable::new(ThermalConfig::default());
        restored.import(&back.trails, 100);
        for i in 0..5 {
            assert!((restored.level(NodeId(i), 100) - trails.level(NodeId(i), 100)).abs() < 1e-12);
        }
        assert_eq!(
            back.restore_history(16).get(NodeId(4)).unwrap().completions,
            1
        );
        let bad = MemorySnapshot {
            version: 99,
            ..back
        };
        assert!(bad.check().is_err());
    }

    #[test]
    fn history_is_bounded() {
        let mut h = HostHistory::new(4);
        for i in 0..10 {
            h.record(NodeId(i), Some(1.0), i as u64);
        }
        assert_eq!(h.records().len(), 4);
        assert!(h.get(NodeId(9)).is_some() && h.get(NodeId(0)).is_none());
    }
}
