//! `BiologicalBehavior`: the design's trait, kept by name and made pure.
//!
//! Every role is a value implementing the trait. Messages come in with an
//! explicit `now` and the sender; replies come out as [`NodeMessage`]s for the
//! driver to send; timer-driven decisions come out of `update(now)` as
//! [`BiologicalAction`]s. No IO, no clock, seeded randomness: the host and the
//! simulator drive the same code.

use std::collections::VecDeque;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::election::{Candidate, Elected, Election, ElectionConfig, ElectionEvent};
use crate::havoc::{CrisisDetector, CrisisEvent, HavocAction, HavocConfig};
use crate::hierarchy::{GroupSummary, Level};
use crate::id::{Millis, NodeId};
use crate::memory::{HostHistory, MemorySnapshot, SNAPSHOT_VERSION};
use crate::pheromone::{PheromoneTable, ThermalConfig};
use crate::role::BiologicalRole;
use crate::switching::{NetworkState, RoleSwitch, RoleSwitcher, SwitchConfig};
use crate::threshold::{CasteConfig, ResponseThresholds, TaskClass};
use crate::trust::{TrustScores, TrustSource};
use crate::young::{ElderInfo, YoungConfig, merge_snapshots, select_elders};

#[cfg(test)]
mod tests;

/// Identifier of a job, chosen by the submitter.
pub type JobId = u64;

/// Messages between nodes. The host encodes them on its wire protocol; the
/// simulator delivers them with simulated latency.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum NodeMessage {
    /// Ask a placer to place a job among candidates `(host, heuristic)`.
    PlaceRequest {
        /// The job.
        job: JobId,
        /// Its class.
        class: TaskClass,
        /// Candidate hosts and their advertised heuristic.
        candidates: Vec<(NodeId, f64)>,
    },
    /// Send a job to a host.
    Dispatch {
        /// The job.
        job: JobId,
        /// The chosen host.
        host: NodeId,
        /// Its class.
        class: TaskClass,
    },
    /// Offer a job to a worker, with the class's stimulus (queued demand).
    Offer {
        /// The job.
        job: JobId,
        /// Its class.
        class: TaskClass,
        /// Demand for that class, normalised.
        stimulus: f64,
    },
    /// A worker takes an offered job.
    Accept {
        /// The job.
        job: JobId,
    },
    /// A worker declines an offered job (threshold not reached).
    Decline {
        /// The job.
        job: JobId,
    },
    /// A verified job result.
    Completed {
        /// The job.
        job: JobId,
        /// Host that ran it.
        host: NodeId,
        /// Its class.
        class: TaskClass,
        /// Observed speed relative to the reference speed.
        speed: f64,
    },
    /// A job failed or its result was rejected.
    Failed {
        /// The job.
        job: JobId,
        /// Host that ran it.
        host: NodeId,
    },
    /// A member left or was declared lost.
    HostLost {
        /// The lost node.
        host: NodeId,
    },
    /// A node joined (advert).
    Join {
        /// Election candidate data.
        candidate: Candidate,
        /// Its experience, for Young elder selection.
        experience: u64,
    },
    /// A child group's summary.
    Summary {
        /// The group leader that sent it.
        group: NodeId,
        /// The summary.
        summary: GroupSummary,
    },
    /// Ask for a memory snapshot (Young bootstrap).
    SnapshotRequest,
    /// A memory snapshot.
    Snapshot(MemorySnapshot),
    /// A reputation score from the security layer.
    TrustScore {
        /// The rated node.
        node: NodeId,
        /// Score in `[0, 1]`.
        score: f64,
    },
}

/// Decisions a behaviour makes on its own schedule.
#[derive(Clone, Debug, PartialEq)]
pub enum BiologicalAction {
    /// Persist this snapshot (the host writes it to disk).
    Persist(MemorySnapshot),
    /// Send a message (the driver delivers it).
    Send {
        /// Recipient.
        to: NodeId,
        /// Message.
        msg: NodeMessage,
    },
    /// Crisis mode entered or left.
    Havoc(HavocAction),
    /// Re-place the work of a lost host now (crisis) instead of after grace.
    Replace {
        /// The lost host.
        host: NodeId,
    },
    /// A leader was (re-)elected.
    Elected(Elected),
    /// Young finished bootstrapping from elders.
    Bootstrapped {
        /// Elders it learned from.
        elders: Vec<NodeId>,
        /// Trails copied.
        trails: usize,
    },
    /// A role switch, logged with its reason.
    Switched(RoleSwitch),
}

/// The design's trait. Pure: the caller passes `now`; nothing reads a clock.
pub trait BiologicalBehavior {
    /// The role this behaviour plays.
    fn role(&self) -> BiologicalRole;
    /// The biological mechanism it borrows (for `biop2p roles`).
    fn biological_inspiration(&self) -> &'static str {
        self.role().inspiration()
    }
    /// Handles one message from `from`; returns replies to send.
    fn handle_message(&mut self, msg: NodeMessage, from: NodeId, now: Millis) -> Vec<NodeMessage>;
    /// Timer-driven decisions; call at least at every `poll_timeout`.
    fn update(&mut self, now: Millis) -> Vec<BiologicalAction>;
    /// Whether the network state calls for another role (hysteresis applied).
    fn should_switch_role(&self, state: &NetworkState) -> Option<BiologicalRole>;
}

fn switch_from(
    role: BiologicalRole,
    since: Millis,
    state: &NetworkState,
) -> Option<BiologicalRole> {
    RoleSwitcher::new(SwitchConfig::default(), role, since)
        .proposal(state)
        .map(|(r, _)| r)
}

/// Thermal: places jobs by pheromone trails; learns from verified completions.
#[derive(Clone, Debug)]
pub struct ThermalBehavior {
    /// The trail table.
    pub trails: PheromoneTable,
    history: HostHistory,
    rng: ChaCha8Rng,
    since: Millis,
}

impl ThermalBehavior {
    /// A placer with a seeded RNG (the seed comes from the node's config).
    pub fn new(cfg: ThermalConfig, seed: u64) -> Self {
        Self {
            trails: PheromoneTable::new(cfg),
            history: HostHistory::new(4096),
            rng: ChaCha8Rng::seed_from_u64(seed),
            since: 0,
        }
    }
}

impl BiologicalBehavior for ThermalBehavior {
    fn role(&self) -> BiologicalRole {
        BiologicalRole::Thermal
    }
    fn handle_message(&mut self, msg: NodeMessage, _from: NodeId, now: Millis) -> Vec<NodeMessage> {
        match msg {
            NodeMessage::PlaceRequest {
                job,
                class,
                candidates,
            } => self
                .trails
                .choose(&candidates, now, &mut self.rng)
                .map(|i| {
                    vec![NodeMessage::Dispatch {
                        job,
                        host: candidates[i].0,
                        class,
                    }]
                })
                .unwrap_or_default(),
            NodeMessage::Completed { host, speed, .. } => {
                self.trails.reinforce(host, speed, now);
                self.history.record(host, Some(speed), now);
                vec![]
            }
            NodeMessage::Failed { host, .. } => {
                self.trails.punish(host, now);
                self.history.record(host, None, now);
                vec![]
            }
            NodeMessage::HostLost { host } => {
                self.trails.remove(host);
                vec![]
            }
            NodeMessage::SnapshotRequest => vec![NodeMessage::Snapshot(MemorySnapshot {
                version: SNAPSHOT_VERSION,
                taken_at: now,
                trails: self.trails.export(now),
                thresholds: None,
                history: self.history.records(),
            })],
            _ => vec![],
        }
    }
    fn update(&mut self, _now: Millis) -> Vec<BiologicalAction> {
        // Evaporation is lazy (applied on read), so no timer work is needed.
        vec![]
    }
    fn should_switch_role(&self, state: &NetworkState) -> Option<BiologicalRole> {
        switch_from(self.role(), self.since, state)
    }
}

/// Caste: a worker that accepts offers by response thresholds and specialises.
#[derive(Clone, Debug)]
pub struct CasteBehavior {
    /// Parameters.
    pub cfg: CasteConfig,
    /// The worker's thresholds.
    pub thresholds: ResponseThresholds,
    rng: ChaCha8Rng,
    since: Millis,
}

impl CasteBehavior {
    /// A generalist worker.
    pub fn new(cfg: CasteConfig, seed: u64) -> Self {
        let thresholds = ResponseThresholds::new(&cfg);
        Self {
            cfg,
            thresholds,
            rng: ChaCha8Rng::seed_from_u64(seed),
            since: 0,
        }
    }
}

impl BiologicalBehavior for CasteBehavior {
    fn role(&self) -> BiologicalRole {
        BiologicalRole::Caste
    }
    fn handle_message(
        &mut self,
        msg: NodeMessage,
        _from: NodeId,
        _now: Millis,
    ) -> Vec<NodeMessage> {
        use rand::Rng;
        match msg {
            NodeMessage::Offer {
                job,
                class,
                stimulus,
            } => {
                let p = self.thresholds.response(&self.cfg, class, stimulus);
                if self.rng.random::<f64>() < p {
                    vec![NodeMessage::Accept { job }]
                } else {
                    vec![NodeMessage::Decline { job }]
                }
            }
            NodeMessage::Completed { class, .. } => {
                self.thresholds.on_task_done(&self.cfg, class);
                vec![]
            }
            _ => vec![],
        }
    }
    fn update(&mut self, _now: Millis) -> Vec<BiologicalAction> {
        vec![]
    }
    fn should_switch_role(&self, state: &NetworkState) -> Option<BiologicalRole> {
        switch_from(self.role(), self.since, state)
    }
}

/// Young: collects trusted elders, asks them for snapshots, and seeds its
/// trail table from their trust-weighted mean.
#[derive(Clone, Debug)]
pub struct YoungBehavior {
    cfg: YoungConfig,
    /// Trust input (from the security layer via `TrustScore` messages).
    pub trust: TrustScores,
    neighbours: Vec<ElderInfo>,
    asked: Vec<NodeId>,
    received: Vec<(NodeId, MemorySnapshot)>,
    /// The table being bootstrapped.
    pub trails: PheromoneTable,
    done: bool,
    since: Millis,
}

impl YoungBehavior {
    /// A young node that will bootstrap `trails`.
    pub fn new(cfg: YoungConfig, thermal: ThermalConfig, now: Millis) -> Self {
        Self {
            cfg,
            trust: TrustScores::default(),
            neighbours: Vec::new(),
            asked: Vec::new(),
            received: Vec::new(),
            trails: PheromoneTable::new(thermal),
            done: false,
            since: now,
        }
    }

    /// True once the trails have been seeded.
    pub fn bootstrapped(&self) -> bool {
        self.done
    }
}

impl BiologicalBehavior for YoungBehavior {
    fn role(&self) -> BiologicalRole {
        BiologicalRole::Young
    }
    fn handle_message(&mut self, msg: NodeMessage, from: NodeId, now: Millis) -> Vec<NodeMessage> {
        match msg {
            NodeMessage::Join {
                candidate,
                experience,
            } if self.neighbours.len() < 256 => {
                self.neighbours.retain(|n| n.id != candidate.id);
                self.neighbours.push(ElderInfo {
                    id: candidate.id,
                    experience,
                });
            }
            NodeMessage::TrustScore { node, score } => self.trust.set(node, score),
            NodeMessage::Snapshot(s) if self.asked.contains(&from) && s.check().is_ok() => {
                self.received.retain(|(f, _)| *f != from);
                self.received.push((from, s));
                if self.received.len() == self.asked.len() && !self.done {
                    let w: Vec<(f64, &MemorySnapshot)> = self
                        .received
                        .iter()
                        .map(|(f, s)| (self.trust.trust(*f), s))
                        .collect();
                    let (trails, _) = merge_snapshots(&w);
                    self.trails.import(&trails, now);
                    self.done = true;
                }
            }
            _ => {}
        }
        vec![]
    }
    fn update(&mut self, _now: Millis) -> Vec<BiologicalAction> {
        if self.done {
            if !self.asked.is_empty() {
                let elders = std::mem::take(&mut self.asked);
                return vec![BiologicalAction::Bootstrapped {
                    elders,
                    trails: self.trails.len(),
                }];
            }
            return vec![];
        }
        if self.asked.is_empty() {
            self.asked = select_elders(&self.cfg, &self.neighbours, &self.trust);
            return self
                .asked
                .iter()
                .map(|e| BiologicalAction::Send {
                    to: *e,
                    msg: NodeMessage::SnapshotRequest,
                })
                .collect();
        }
        vec![]
    }
    fn should_switch_role(&self, state: &NetworkState) -> Option<BiologicalRole> {
        if !self.done {
            return None;
        }
        switch_from(self.role(), self.since, state)
    }
}

/// HAVOC: watches losses, errors and queues; in crisis, asks for immediate
/// re-placement of lost hosts' work.
#[derive(Clone, Debug)]
pub struct HavocBehavior {
    /// The detector.
    pub detector: CrisisDetector,
    members: u32,
    lost: VecDeque<NodeId>,
    since: Millis,
}

impl HavocBehavior {
    /// A detector for a group of `members`.
    pub fn new(cfg: HavocConfig, members: u32) -> Self {
        let mut detector = CrisisDetector::new(cfg);
        detector.handle(0, CrisisEvent::Members(members));
        Self {
            detector,
            members,
            lost: VecDeque::new(),
            since: 0,
        }
    }
}

impl BiologicalBehavior for HavocBehavior {
    fn role(&self) -> BiologicalRole {
        BiologicalRole::Havoc
    }
    fn handle_message(&mut self, msg: NodeMessage, _from: NodeId, now: Millis) -> Vec<NodeMessage> {
        match msg {
            NodeMessage::HostLost { host } => {
                self.members = self.members.saturating_sub(1);
                self.detector
                    .handle(now, CrisisEvent::Members(self.members));
                self.detector.handle(now, CrisisEvent::HostLost(host));
                if self.lost.len() < 4096 {
                    self.lost.push_back(host);
                }
            }
            NodeMessage::Join { .. } => {
                self.members += 1;
                self.detector
                    .handle(now, CrisisEvent::Members(self.members));
            }
            NodeMessage::Completed { .. } => self
                .detector
                .handle(now, CrisisEvent::JobResult { ok: true }),
            NodeMessage::Failed { .. } => self
                .detector
                .handle(now, CrisisEvent::JobResult { ok: false }),
            _ => {}
        }
        vec![]
    }
    fn update(&mut self, now: Millis) -> Vec<BiologicalAction> {
        self.detector.handle_timeout(now);
        let mut out: Vec<BiologicalAction> = std::iter::from_fn(|| self.detector.poll())
            .map(BiologicalAction::Havoc)
            .collect();
        if self.detector.replace_immediately() {
            out.extend(
                self.lost
                    .drain(..)
                    .map(|host| BiologicalAction::Replace { host }),
            );
        } else {
            // Outside a crisis the driver re-places after the grace period.
            self.lost.clear();
        }
        out
    }
    fn should_switch_role(&self, state: &NetworkState) -> Option<BiologicalRole> {
        switch_from(self.role(), self.since, state)
    }
}

/// Memory: records host performance and emits snapshots to persist.
#[derive(Clone, Debug)]
pub struct MemoryBehavior {
    /// Host performance history.
    pub history: HostHistory,
    trails: Vec<(NodeId, f64)>,
    period_ms: Millis,
    next: Millis,
    since: Millis,
}

impl MemoryBehavior {
    /// Snapshots every `period_ms` (default in the host: 60 s; each costs one
    /// small disk write).
    pub fn new(period_ms: Millis) -> Self {
        Self {
            history: HostHistory::new(4096),
            trails: Vec::new(),
            period_ms: period_ms.max(1),
            next: period_ms.max(1),
            since: 0,
        }
    }

    /// Restores from a persisted snapshot after a restart.
    pub fn restore(
        snapshot: &MemorySnapshot,
        period_ms: Millis,
    ) -> Result<Self, crate::RolesError> {
        snapshot.check()?;
        let mut m = Self::new(period_ms);
        m.history = snapshot.restore_history(4096);
        m.trails = snapshot.trails.clone();
        Ok(m)
    }

    /// When `update` must next be called.
    pub fn poll_timeout(&self) -> Millis {
        self.next
    }

    fn snapshot(&self, now: Millis) -> MemorySnapshot {
        MemorySnapshot {
            version: SNAPSHOT_VERSION,
            taken_at: now,
            trails: self.trails.clone(),
            thresholds: None,
            history: self.history.records(),
        }
    }
}

impl BiologicalBehavior for MemoryBehavior {
    fn role(&self) -> BiologicalRole {
        BiologicalRole::Memory
    }
    fn handle_message(&mut self, msg: NodeMessage, _from: NodeId, now: Millis) -> Vec<NodeMessage> {
        match msg {
            NodeMessage::Completed { host, speed, .. } => {
                self.history.record(host, Some(speed), now)
            }
            NodeMessage::Failed { host, .. } => self.history.record(host, None, now),
            NodeMessage::Snapshot(s) if s.check().is_ok() => self.trails = s.trails,
            NodeMessage::SnapshotRequest => return vec![NodeMessage::Snapshot(self.snapshot(now))],
            _ => {}
        }
        vec![]
    }
    fn update(&mut self, now: Millis) -> Vec<BiologicalAction> {
        if now < self.next {
            return vec![];
        }
        self.next = now + self.period_ms;
        vec![BiologicalAction::Persist(self.snapshot(now))]
    }
    fn should_switch_role(&self, state: &NetworkState) -> Option<BiologicalRole> {
        switch_from(self.role(), self.since, state)
    }
}

/// Trust: holds reputation scores fed by the security layer and answers
/// with trust-weighted heuristics; the only door between roles and security.
#[derive(Clone, Debug, Default)]
pub struct TrustBehavior {
    /// Scores.
    pub scores: TrustScores,
    since: Millis,
}

impl BiologicalBehavior for TrustBehavior {
    fn role(&self) -> BiologicalRole {
        BiologicalRole::Trust
    }
    fn handle_message(
        &mut self,
        msg: NodeMessage,
        _from: NodeId,
        _now: Millis,
    ) -> Vec<NodeMessage> {
        match msg {
            NodeMessage::TrustScore { node, score } => self.scores.set(node, score),
            NodeMessage::PlaceRequest {
                job,
                class,
                candidates,
            } => {
                // Re-weight candidates by trust and pass them on.
                let candidates = candidates
                    .into_iter()
                    .map(|(h, e)| (h, crate::trust::trust_weighted(e, self.scores.trust(h))))
                    .collect();
                return vec![NodeMessage::PlaceRequest {
                    job,
                    class,
                    candidates,
                }];
            }
            _ => {}
        }
        vec![]
    }
    fn update(&mut self, _now: Millis) -> Vec<BiologicalAction> {
        vec![]
    }
    fn should_switch_role(&self, state: &NetworkState) -> Option<BiologicalRole> {
        switch_from(self.role(), self.since, state)
    }
}

/// Alpha / Bravo / Super: a group leader that elects, aggregates child
/// summaries into one fixed-size summary, and reports it upward.
#[derive(Clone, Debug)]
pub struct LeaderBehavior {
    level: Level,
    /// The group's election.
    pub election: Election,
    children: Vec<(NodeId, GroupSummary)>,
    parent: Option<NodeId>,
    period_ms: Millis,
    next: Millis,
    me: NodeId,
    since: Millis,
}

impl LeaderBehavior {
    /// A leader of `level` for node `me`, reporting to `parent` every `period_ms`.
    pub fn new(
        level: Level,
        me: NodeId,
        parent: Option<NodeId>,
        cfg: ElectionConfig,
        period_ms: Millis,
    ) -> Self {
        Self {
            level,
            election: Election::new(cfg),
            children: Vec::new(),
            parent,
            period_ms: period_ms.max(1),
            next: 0,
            me,
            since: 0,
        }
    }

    /// The group's merged summary.
    pub fn summary(&self) -> GroupSummary {
        let mut s = GroupSummary::default();
        for (_, c) in &self.children {
            s.merge(c);
        }
        s
    }
}

impl BiologicalBehavior for LeaderBehavior {
    fn role(&self) -> BiologicalRole {
        match self.level {
            Level::Alpha => BiologicalRole::Alpha,
            Level::Bravo => BiologicalRole::Bravo,
            Level::Super => BiologicalRole::Super,
        }
    }
    fn handle_message(&mut self, msg: NodeMessage, from: NodeId, now: Millis) -> Vec<NodeMessage> {
        match msg {
            NodeMessage::Join { candidate, .. } => {
                self.election.handle(now, ElectionEvent::Join(candidate))
            }
            NodeMessage::HostLost { host } => {
                self.election.handle(now, ElectionEvent::Leave(host));
                self.children.retain(|(c, _)| *c != host);
            }
            NodeMessage::Summary { group, summary } => {
                let _ = from;
                if let Some(e) = self.children.iter_mut().find(|(c, _)| *c == group) {
                    e.1 = summary;
                } else if self.children.len() < 4096 {
                    self.children.push((group, summary));
                }
            }
            _ => {}
        }
        vec![]
    }
    fn update(&mut self, now: Millis) -> Vec<BiologicalAction> {
        let mut out: Vec<BiologicalAction> = std::iter::from_fn(|| self.election.poll())
            .map(BiologicalAction::Elected)
            .collect();
        if now >= self.next {
            self.next = now + self.period_ms;
            if let (Some(p), true) = (self.parent, self.election.leader() == Some(self.me)) {
                out.push(BiologicalAction::Send {
                    to: p,
                    msg: NodeMessage::Summary {
                        group: self.me,
                        summary: self.summary(),
                    },
                });
            }
        }
        out
    }
    fn should_switch_role(&self, state: &NetworkState) -> Option<BiologicalRole> {
        switch_from(self.role(), self.since, state)
    }
}
