//! Young: a new node learns from trusted elders instead of starting cold.
//!
//! [`Bootstrap`] is the sans-IO exchange a joining node (a new Bravo in the
//! simulator; a new host or submitter in the swarm) runs: it picks elders
//! with [`select_elders`], asks each for its tables, and merges the answers
//! by its trust in each sender with [`merge_snapshots`], with a bounded
//! wait. The simulator drives it with simulated latency; a live driver maps
//! [`BootstrapAction::Ask`] to a request on its protocol and feeds the
//! replies (or their failures) back.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::error::RolesError;
use crate::id::{Millis, NodeId};
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
    /// How long a bootstrap waits for elders' answers, ms. Default 2 s: a
    /// node places cold meanwhile, so waiting longer for a slow elder costs
    /// more than its table is worth.
    pub answer_timeout_ms: Millis,
}

impl Default for YoungConfig {
    fn default() -> Self {
        Self {
            elders: 3,
            min_trust: 0.5,
            min_experience: 20,
            young_tasks: 50,
            answer_timeout_ms: 2_000,
        }
    }
}

impl YoungConfig {
    /// Checks ranges.
    pub fn validate(&self) -> Result<(), RolesError> {
        if self.elders == 0 || !(0.0..=1.0).contains(&self.min_trust) || self.answer_timeout_ms == 0
        {
            return Err(RolesError::InvalidConfig {
                field: "young".into(),
                value: format!("{self:?}"),
                reason: "need elders > 0, min_trust in 0..=1, answer_timeout_ms > 0",
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

/// What a [`Bootstrap`] is told.
#[derive(Clone, Debug, PartialEq)]
pub enum BootstrapEvent {
    /// An elder answered with its tables.
    Answer {
        /// The elder.
        from: NodeId,
        /// Its trails (and thresholds), as it holds them now.
        snapshot: MemorySnapshot,
    },
    /// Asking an elder failed (refused, unreachable, malformed reply).
    Failed {
        /// The elder.
        from: NodeId,
    },
}

/// What a [`Bootstrap`] asks its driver to do.
#[derive(Clone, Debug, PartialEq)]
pub enum BootstrapAction {
    /// Send a table request to this elder.
    Ask(NodeId),
    /// The bootstrap is over: start from these tables (empty when no elder
    /// answered in time, i.e. a cold start).
    Done {
        /// Merged trails, sorted by host.
        trails: Vec<(NodeId, f64)>,
        /// Merged thresholds, if any answer carried them.
        thresholds: Option<[f64; 3]>,
        /// How many elders answered.
        answers: usize,
    },
}

/// One Young bootstrap: ask the chosen elders, merge what comes back by
/// trust, stop when all answered or at the answer timeout.
///
/// Polling order: after [`Bootstrap::new`], [`Bootstrap::handle`] and
/// [`Bootstrap::handle_timeout`], drain [`Bootstrap::poll`], then arm a
/// timer for [`Bootstrap::poll_timeout`]. Spurious `handle_timeout` calls
/// are harmless. `Done` is emitted exactly once.
#[derive(Clone, Debug)]
pub struct Bootstrap {
    deadline: Millis,
    /// Elders asked, their trust, and whether they are settled.
    asked: Vec<(NodeId, f64, bool)>,
    answers: Vec<(f64, MemorySnapshot)>,
    done: bool,
    out: VecDeque<BootstrapAction>,
}

impl Bootstrap {
    /// Starts at `now`: picks elders among `candidates` with
    /// [`select_elders`] and asks each. The trust given here (the joiner's
    /// own, e.g. the security crate's reputation) is also the weight of
    /// each answer. With no eligible elder it is done at once, cold.
    pub fn new(
        cfg: &YoungConfig,
        now: Millis,
        candidates: &[ElderInfo],
        trust: &dyn TrustSource,
    ) -> Self {
        let elders = select_elders(cfg, candidates, trust);
        let mut b = Bootstrap {
            deadline: now + cfg.answer_timeout_ms,
            asked: elders
                .iter()
                .map(|e| (*e, trust.trust(*e), false))
                .collect(),
            answers: Vec::new(),
            done: false,
            out: elders.into_iter().map(BootstrapAction::Ask).collect(),
        };
        b.settle_if_complete();
        b
    }

    /// Feeds an answer or a failure. An event from a node that was not
    /// asked, or a second one from the same elder, is ignored (an unasked
    /// table must not steer placement); an answer with an unsupported
    /// snapshot version counts as a failure and is returned as the error.
    pub fn handle(&mut self, now: Millis, ev: BootstrapEvent) -> Result<(), RolesError> {
        if self.done {
            return Ok(());
        }
        let from = match &ev {
            BootstrapEvent::Answer { from, .. } | BootstrapEvent::Failed { from } => *from,
        };
        let Some(i) = self.asked.iter().position(|a| a.0 == from && !a.2) else {
            return Ok(());
        };
        self.asked[i].2 = true;
        let mut res = Ok(());
        if let BootstrapEvent::Answer { snapshot, .. } = ev {
            match snapshot.check() {
                Ok(()) => self.answers.push((self.asked[i].1, snapshot)),
                Err(e) => res = Err(e),
            }
        }
        self.handle_timeout(now);
        res
    }

    /// Advances time: at the answer timeout the bootstrap finishes with the
    /// answers it has.
    pub fn handle_timeout(&mut self, now: Millis) {
        if !self.done && now >= self.deadline {
            self.finish();
        } else {
            self.settle_if_complete();
        }
    }

    /// Next action, if any.
    #[must_use]
    pub fn poll(&mut self) -> Option<BootstrapAction> {
        self.out.pop_front()
    }

    /// When [`Bootstrap::handle_timeout`] must be called next; `None` once
    /// done.
    pub fn poll_timeout(&self) -> Option<Millis> {
        (!self.done).then_some(self.deadline)
    }

    /// Whether `Done` has been emitted.
    pub fn is_done(&self) -> bool {
        self.done
    }

    fn settle_if_complete(&mut self) {
        if !self.done && self.asked.iter().all(|a| a.2) {
            self.finish();
        }
    }

    fn finish(&mut self) {
        self.done = true;
        let refs: Vec<(f64, &MemorySnapshot)> = self.answers.iter().map(|(w, s)| (*w, s)).collect();
        let (trails, thresholds) = merge_snapshots(&refs);
        self.out.push_back(BootstrapAction::Done {
            trails,
            thresholds,
            answers: self.answers.len(),
        });
        self.answers.clear();
    }
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

    fn snap(trails: Vec<(NodeId, f64)>) -> MemorySnapshot {
        MemorySnapshot {
            version: SNAPSHOT_VERSION,
            taken_at: 0,
            trails,
            thresholds: None,
        }
    }

    fn elders() -> (Vec<ElderInfo>, TrustScores) {
        let mut t = TrustScores::default();
        let mut c = Vec::new();
        for i in 1..=4 {
            t.set(NodeId(i), 0.5 + 0.1 * i as f64);
            c.push(ElderInfo {
                id: NodeId(i),
                experience: 100,
            });
        }
        (c, t)
    }

    #[test]
    fn bootstrap_asks_merges_by_trust_and_ignores_the_unasked() {
        let (c, t) = elders();
        let cfg = YoungConfig::default();
        let mut b = Bootstrap::new(&cfg, 1_000, &c, &t);
        let asks: Vec<_> = std::iter::from_fn(|| b.poll()).collect();
        assert_eq!(
            asks,
            [4, 3, 2].map(|i| BootstrapAction::Ask(NodeId(i))).to_vec()
        );
        assert_eq!(b.poll_timeout(), Some(3_000));
        // An unasked node's table is ignored.
        b.handle(
            1_001,
            BootstrapEvent::Answer {
                from: NodeId(1),
                snapshot: snap(vec![(NodeId(9), 10.0)]),
            },
        )
        .unwrap();
        b.handle(
            1_002,
            BootstrapEvent::Answer {
                from: NodeId(4),
                snapshot: snap(vec![(NodeId(7), 9.0)]),
            },
        )
        .unwrap();
        let bad = MemorySnapshot {
            version: 99,
            ..snap(vec![])
        };
        assert!(
            b.handle(
                1_003,
                BootstrapEvent::Answer {
                    from: NodeId(3),
                    snapshot: bad
                }
            )
            .is_err()
        );
        assert_eq!(b.poll(), None);
        b.handle(
            1_004,
            BootstrapEvent::Answer {
                from: NodeId(2),
                snapshot: snap(vec![(NodeId(7), 1.0)]),
            },
        )
        .unwrap();
        // Trust 0.9 and 0.7: (0.9·9 + 0.7·1) / 1.6 = 5.5.
        match b.poll() {
            Some(BootstrapAction::Done {
                trails, answers, ..
            }) => {
                assert_eq!(answers, 2);
                assert_eq!(trails.len(), 1);
                assert!((trails[0].1 - 5.5).abs() < 1e-9, "{trails:?}");
            }
            other => panic!("{other:?}"),
        }
        assert!(b.is_done() && b.poll_timeout().is_none() && b.poll().is_none());
    }

    #[test]
    fn bootstrap_finishes_at_the_timeout_and_cold_without_elders() {
        let (c, t) = elders();
        let cfg = YoungConfig::default();
        let mut b = Bootstrap::new(&cfg, 0, &c, &t);
        while b.poll().is_some() {}
        b.handle(10, BootstrapEvent::Failed { from: NodeId(4) })
            .unwrap();
        b.handle_timeout(1_999);
        assert_eq!(b.poll(), None);
        b.handle_timeout(2_000);
        assert!(matches!(
            b.poll(),
            Some(BootstrapAction::Done { answers: 0, ref trails, .. }) if trails.is_empty()
        ));
        let mut cold = Bootstrap::new(&cfg, 0, &[], &t);
        assert!(matches!(
            cold.poll(),
            Some(BootstrapAction::Done { answers: 0, .. })
        ));
    }
}
