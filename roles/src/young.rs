//! Young: a new node learns from trusted elders instead of starting cold.

use serde::{Deserialize, Serialize};

use crate::error::RolesError;
use crate::id::NodeId;
use crate::memory::MemorySnapshot;
use crate::trust::TrustSource;

/// Bootstrap parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct YoungConfig {
    /// Elders asked for their tables. Default 3: one liar is outvoted, and
    /// it costs three request/response pairs.
    pub elders: usize,
    /// Lowest trust an elder needs. Default 0.5.
    pub min_trust: f64,
    /// Least experience (completions seen) an elder needs. Default 20.
    pub min_experience: u64,
    /// Placements a node stays Young before it may switch role. Default 50.
    pub young_tasks: u64,
}

impl Default for YoungConfig {
    fn default() -> Self {
        Self {
            elders: 3,
            min_trust: 0.5,
            min_experience: 20,
            young_tasks: 50,
        }
    }
}

impl YoungConfig {
    /// Checks ranges.
    pub fn validate(&self) -> Result<(), RolesError> {
        if self.elders == 0 || !(0.0..=1.0).contains(&self.min_trust) {
            return Err(RolesError::InvalidConfig {
                field: "young".into(),
                value: format!("{self:?}"),
                reason: "need elders > 0 and min_trust in 0..=1",
            });
        }
        Ok(())
    }
}

/// A neighbour that could teach.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ElderInfo {
    /// The neighbour.
    pub id: NodeId,
    /// Its experience (completions it has seen).
    pub experience: u64,
}

/// Picks up to `cfg.elders` elders: trusted and experienced enough, best
/// `trust × ln(1 + experience)` first, ties by id (deterministic).
pub fn select_elders(
    cfg: &YoungConfig,
    candidates: &[ElderInfo],
    trust: &dyn TrustSource,
) -> Vec<NodeId> {
    let mut ok: Vec<(f64, NodeId)> = candidates
        .iter()
        .filter(|c| c.experience >= cfg.min_experience && trust.trust(c.id) >= cfg.min_trust)
        .map(|c| (trust.trust(c.id) * (1.0 + c.experience as f64).ln(), c.id))
        .collect();
    ok.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    ok.into_iter().take(cfg.elders).map(|(_, id)| id).collect()
}

/// Merges elders' snapshots into one starting point: a trust-weighted mean of
/// each host's trail (hosts only some elders know are averaged over those)
/// and of thresholds. Returns trails sorted by host.
pub fn merge_snapshots(
    snapshots: &[(f64, &MemorySnapshot)],
) -> (Vec<(NodeId, f64)>, Option<[f64; 3]>) {
    let mut acc: std::collections::BTreeMap<NodeId, (f64, f64)> = Default::default();
    let mut th = [0.0; 3];
    let mut th_w = 0.0;
    for (w, s) in snapshots {
        let w = w.max(0.0);
        for (h, l) in &s.trails {
            let e = acc.entry(*h).or_insert((0.0, 0.0));
            e.0 += w * l;
            e.1 += w;
        }
        if let Some(t) = s.thresholds {
            for i in 0..3 {
                th[i] += w * t[i];
            }
            th_w += w;
        }
    }
    let trails = acc
        .into_iter()
        .filter(|(_, (_, w))| *w > 0.0)
        .map(|(h, (s, w))| (h, s / w))
        .collect();
    let thresholds = (th_w > 0.0).then(|| th.map(|x| x / th_w));
    (trails, thresholds)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::SNAPSHOT_VERSION;
    use crate::trust::TrustScores;

    #[test]
    fn picks_trusted_experienced_elders_and_merges() {
        let mut t = TrustScores::default();
        t.set(NodeId(1), 0.9);
        t.set(NodeId(2), 0.2);
        t.set(NodeId(3), 0.8);
        t.set(NodeId(4), 0.9);
        let c = [
            ElderInfo {
                id: NodeId(1),
                experience: 100,
            },
            ElderInfo {
                id: NodeId(2),
                experience: 1000,
            },
            ElderInfo {
                id: NodeId(3),
                experience: 50,
            },
            ElderInfo {
                id: NodeId(4),
                experience: 5,
            },
        ];
        let e = select_elders(&YoungConfig::default(), &c, &t);
        assert_eq!(e, vec![NodeId(1), NodeId(3)]);
        let s1 = MemorySnapshot {
            version: SNAPSHOT_VERSION,
            taken_at: 0,
            trails: vec![(NodeId(7), 4.0)],
            thresholds: Some([0.2; 3]),
        };
        let s2 = MemorySnapshot {
            trails: vec![(NodeId(7), 2.0), (NodeId(8), 1.0)],
            thresholds: Some([0.4; 3]),
            ..s1.clone()
        };
        let (tr, th) = merge_snapshots(&[(1.0, &s1), (1.0, &s2)]);
        assert_eq!(tr, vec![(NodeId(7), 3.0), (NodeId(8), 1.0)]);
        assert!((th.unwrap()[0] - 0.3).abs() < 1e-12);
    }
}
