//! The coordinator: the five layers composed into one sans-IO state machine.
//!
//! It decides who runs each task, how many replicas it needs, when a result
//! is accepted, who gets paid for which counters, and what suspects are shown.
//!
//! # Driving it
//!
//! ```text
//! loop {
//!     coordinator.handle(now, event)?;          // or handle_timeout(now)
//!     while let Some(action) = coordinator.poll() { do_io(action) }
//!     sleep_until(coordinator.poll_timeout());
//! }
//! ```
//!
//! Actions a driver must serve besides dispatching: [`Action::NeedCanaries`]
//! (compute canaries locally, or reuse accepted quorums), [`Action::Accuse`]
//! (sign it and send it to other submitters), and [`Action::Verify`] (re-run
//! an accused job locally and answer with [`Event::Verified`]); an
//! [`Accusation`] received from another submitter goes in as
//! [`Event::Accusation`].
//!
//! Polling order: after every `handle` or `handle_timeout`, drain `poll()`
//! completely, then re-read `poll_timeout()`. Actions are in the order the
//! decisions were made. The coordinator never reads a clock or an RNG other
//! than its own, seeded from [`SecurityConfig::seed`], so the same events give
//! the same actions.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::deception::{self, Canary, CanaryPool, CanaryVerdict, DeceptionConfig};
use crate::error::SecurityError;
use crate::ids::{Digest, Millis, PeerId, Region, TaskId};
use crate::layers::{Layer, LayerSet};
use crate::monitor::{Monitor, MonitorConfig};
use crate::placement::{self, PlacementConfig};
use crate::quorum::{self, QuorumRule, Verdict, Vote};
use crate::receipt::{self, JobSpec, ReceiptFacts, TaskSpec};
use crate::report::{Accusation, TrustReport};
use crate::reputation::{
    Evidence, FailureKind, Metric, PeerState, Reputation, ReputationConfig, StateChange, Violation,
};
use crate::thermal::{self, ThermalConfig};

/// Everything the coordinator needs. Defaults are production-sane and are
/// what the Byzantine benchmark measures.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecurityConfig {
    /// Seed of the coordinator's RNG (placement, spot checks, job ids).
    pub seed: u64,
    /// Enabled defence layers.
    pub layers: LayerSet,
    /// Reputation tuning.
    pub reputation: ReputationConfig,
    /// Quorum rule.
    pub quorum: QuorumRule,
    /// Placement and adaptive replication.
    pub placement: PlacementConfig,
    /// Canaries and decoys.
    pub deception: DeceptionConfig,
    /// Behaviour monitor.
    pub monitor: MonitorConfig,
    /// Counter checks.
    pub thermal: ThermalConfig,
    /// Deadline of a dispatched job. After it the job counts as a timeout and
    /// a late result is refused (nobody knows whether it ran).
    pub assignment_timeout_ms: u64,
    /// Open tasks at most; beyond it `TaskSubmitted` is refused (back-pressure).
    pub max_open_tasks: usize,
    /// Largest fuel limit a newcomer may be given: newcomers get small tasks,
    /// so a fresh identity cannot be handed anything valuable.
    pub newcomer_max_fuel: u64,
    /// Probability that a newcomer drawn as a task's primary keeps the task
    /// while trusted peers exist (otherwise a trusted peer is drawn). Bounds
    /// what a stream of fresh identities costs; lower = newcomers earn trust
    /// more slowly.
    pub newcomer_admission: f64,
    /// Below this many online trusted peers, a newcomer drawn as primary
    /// always keeps the task: the submitter is still building its working
    /// set. Above it, `newcomer_admission` applies. Larger = more hosts earn
    /// trust here (fairer to new hosts, more bootstrap replicas). 6: the
    /// first round of `bootstrap_batch` tasks already yields about that many.
    pub min_trusted: usize,
    /// Candidates drawn when a newcomer is placed; the one with the longest
    /// record of verified results (per identity sharing its network prefix)
    /// wins. Concentrates trials on hosts that already proved something, so
    /// trust is earned in few replicated tasks, and an untried identity never
    /// ranks above a newcomer with a confirmed record. 1 = uniform draw.
    pub newcomer_candidates: usize,
    /// Hidden checks a freshly trusted peer gets as canaries before its
    /// first unreplicated real task. A peer that waited for trust to cheat
    /// alone cheats on these and is caught with no real result at stake.
    /// Each costs a canary (its local computation plus the host's run).
    pub probation_canaries: u32,
    /// Re-run an accused task before believing an accusation. Off (ablation
    /// only): accusations are taken at face value, so a slanderer can make
    /// honest hosts suspects.
    pub verify_accusations: bool,
    /// Accusations being verified at most; beyond it they are refused.
    pub max_pending_checks: usize,
    /// Vigilance: every wrong output caught from a trusted peer here (a
    /// failed canary or audit) and every verified accusation raises an alarm
    /// that decays with this half-life. Trusted peers lying is what an
    /// attack on adaptive replication looks like (sleepers turning, patient
    /// attackers starting), while honest hardware faults among trusted peers
    /// are rare, so the spot-check rate of every trusted peer rises to
    /// `alarm_gain` per alarm unit above `alarm_free`, capped at
    /// `alarm_max_rate`. Costs nothing in a quiet network; with 0.1% honest
    /// hardware faults, about 0.01 replicas per task (the odd fault caught
    /// on a trusted peer lifts the rates for a few minutes).
    pub alarm_half_life_ms: u64,
    /// Spot-check rate per alarm unit above `alarm_free`. The default, 0.03,
    /// makes one caught lie lift every trusted peer to 1.5 times the floor
    /// (0.015) until it has decayed (one half-life), so attackers waiting
    /// for the floor (patient ones) pause at once instead of after several
    /// detections; each further lie adds 0.03.
    pub alarm_gain: f64,
    /// Alarm units tolerated without reaction. Half a unit: a single caught
    /// lie already reacts (it costs little at this gain), while the decayed
    /// remains of old isolated faults do not.
    pub alarm_free: f64,
    /// The highest spot-check rate the alarm can impose.
    pub alarm_max_rate: f64,
    /// While no peer is trusted here, at most this many tasks are being
    /// placed at once; later ones wait (undispatched, still counted as open)
    /// until a peer is trusted or a placed task finishes. Without trust every
    /// task needs four newcomers; a first round of this many tasks, run on a
    /// few concentrated newcomers (at most `reputation.trust_after` jobs
    /// each), makes them trusted, and the waiting tasks then cost one or two
    /// executions instead of four. Costs the waiting tasks one round trip,
    /// once. The default, 15 tasks of four jobs, is enough for `min_trusted`
    /// newcomers to reach `reputation.trust_after` verified results in one
    /// round. 0 = no limit.
    ///
    /// The bootstrap round and concentrated newcomer trials apply only while
    /// at least this many peers are online (see `concentrating`): in a
    /// smaller swarm a few newcomers would hold every task, so colluders
    /// could hold whole quorums and the other hosts would stay untried.
    pub bootstrap_batch: usize,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        Self {
            seed: 0x5EC_0001,
            layers: LayerSet::ALL,
            reputation: ReputationConfig::default(),
            quorum: QuorumRule::default(),
            placement: PlacementConfig::default(),
            deception: DeceptionConfig::default(),
            monitor: MonitorConfig::default(),
            thermal: ThermalConfig::default(),
            assignment_timeout_ms: 60_000,
            max_open_tasks: 100_000,
            newcomer_max_fuel: 10_000_000_000,
            newcomer_admission: 0.005,
            min_trusted: 6,
            newcomer_candidates: 4,
            probation_canaries: 2,
            verify_accusations: true,
            max_pending_checks: 4096,
            alarm_half_life_ms: 600_000,
            alarm_gain: 0.03,
            alarm_free: 0.5,
            alarm_max_rate: 0.6,
            bootstrap_batch: 15,
        }
    }
}

impl SecurityConfig {
    /// Checks every section.
    pub fn validate(&self) -> Result<(), SecurityError> {
        self.reputation.validate()?;
        self.quorum.validate()?;
        self.placement.validate()?;
        if !(self.deception.decoys_per_task >= 0.0 && self.deception.decoys_per_task.is_finite()) {
            return Err(SecurityError::InvalidConfig {
                field: "deception.decoys_per_task",
                value: self.deception.decoys_per_task.to_string(),
                why: "must be finite and >= 0",
            });
        }
        if !(0.0..=1.0).contains(&self.deception.canary_share) {
            return Err(SecurityError::InvalidConfig {
                field: "deception.canary_share",
                value: self.deception.canary_share.to_string(),
                why: "must be in [0, 1]",
            });
        }
        if self.newcomer_candidates == 0 || self.max_pending_checks == 0 {
            return Err(SecurityError::InvalidConfig {
                field: "newcomer_candidates/max_pending_checks",
                value: self.newcomer_candidates.to_string(),
                why: "must be > 0",
            });
        }
        if self.alarm_half_life_ms == 0
            || !(0.0..=1.0).contains(&self.alarm_max_rate)
            || self.alarm_gain.is_nan()
            || self.alarm_gain < 0.0
        {
            return Err(SecurityError::InvalidConfig {
                field: "alarm_half_life_ms/alarm_gain/alarm_max_rate",
                value: self.alarm_half_life_ms.to_string(),
                why: "half-life > 0, gain >= 0, max rate in [0, 1]",
            });
        }
        if self.max_open_tasks == 0 || self.assignment_timeout_ms == 0 {
            return Err(SecurityError::InvalidConfig {
                field: "max_open_tasks/assignment_timeout_ms",
                value: self.max_open_tasks.to_string(),
                why: "must be > 0",
            });
        }
        Ok(())
    }
}

/// Inputs. Each carries its own data; `now` is passed alongside.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Event {
    /// A peer connected.
    PeerJoined {
        /// Its identity.
        peer: PeerId,
        /// Its address region.
        region: Region,
        /// Its advertised speed (fuel per ms), for the wall-time check.
        advertised_fuel_per_ms: u64,
    },
    /// A peer disconnected.
    PeerLeft {
        /// Its identity.
        peer: PeerId,
    },
    /// A customer submitted a task.
    TaskSubmitted(TaskSpec),
    /// A canary with known answers is ready (answer to [`Action::NeedCanaries`]).
    CanaryAvailable(Canary),
    /// A dispatched job returned a receipt whose signature the host verified.
    ResultReturned {
        /// The job id the host dispatched (from [`Action::Dispatch`]).
        job_id: u64,
        /// The receipt's facts.
        receipt: ReceiptFacts,
    },
    /// A dispatched job failed without a result.
    JobFailed {
        /// The job id.
        job_id: u64,
        /// How it failed.
        kind: FailureKind,
    },
    /// The host saw a protocol violation by a peer.
    ProtocolViolation {
        /// The peer.
        peer: PeerId,
        /// What happened.
        detail: String,
    },
    /// A periodic message-rate sample for a peer (layer 4).
    MessageRate {
        /// The peer.
        peer: PeerId,
        /// Messages per second.
        per_sec: f64,
    },
    /// Another submitter's accusation with evidence (signatures checked by
    /// the host). Answered by [`Action::Verify`] unless there is no need
    /// (subject already contained, reporter not believed).
    Accusation(Accusation),
    /// The output of a local re-run requested by [`Action::Verify`].
    Verified {
        /// The check id from the action.
        check: u64,
        /// The output the local run produced.
        output: Digest,
    },
    /// A trust report; the host checked its signature over
    /// [`TrustReport::signing_bytes`].
    TrustReport {
        /// The report.
        report: TrustReport,
        /// The host's verdict on the signature.
        signature_valid: bool,
    },
}

/// Why a result was accepted.
#[derive(Clone, Copy, PartialEq, Debug, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "kebab-case")]
pub enum AcceptReason {
    /// A trust-weighted quorum agreed.
    Quorum {
        /// Weight behind the output.
        support: f64,
        /// All weight cast.
        total: f64,
        /// Results compared.
        voters: u32,
    },
    /// A trusted peer ran it alone and it was not drawn for a spot check.
    TrustedSolo {
        /// The spot-check probability it faced.
        spot_check_rate: f64,
    },
    /// Layer 1 is off: the single result is taken as is.
    Unverified,
}

/// Why a task was given up.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "kebab-case")]
pub enum GiveUpReason {
    /// No eligible peer is online.
    NoEligiblePeer,
    /// The replica budget ran out without a quorum.
    NoQuorum {
        /// Jobs dispatched for it.
        dispatched: u32,
    },
}

/// Outputs, drained with [`Coordinator::poll`].
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Action {
    /// Send `job` to `peer`. Replicas, audits and canaries look the same.
    Dispatch {
        /// Where.
        peer: PeerId,
        /// What.
        job: JobSpec,
        /// When it times out (the coordinator handles that via its timer).
        deadline: Millis,
    },
    /// The task's result is `output`.
    Accept {
        /// The task.
        task: TaskId,
        /// Accepted output.
        output: Digest,
        /// Reference fuel of the accepted result.
        fuel: u64,
        /// Receipts to pay: (peer, billed fuel). Receipts with counters that
        /// disagree with the reference are left out (layer 5).
        paid: Vec<(PeerId, u64)>,
        /// Why.
        reason: AcceptReason,
    },
    /// The task could not be completed; the customer may resubmit.
    GiveUp {
        /// The task.
        task: TaskId,
        /// Why.
        reason: GiveUpReason,
    },
    /// A peer changed state (log it, persist it, stop talking to it...).
    PeerState(StateChange),
    /// Please supply `count` canaries via [`Event::CanaryAvailable`].
    NeedCanaries {
        /// How many.
        count: usize,
    },
    /// `subject` returned `receipt` for `job`, and the output is proven
    /// wrong here (a failed canary, or outvoted by a quorum a trusted peer
    /// backs). Sign it as an [`Accusation`] and send it to other submitters.
    Accuse {
        /// The host that answered wrongly.
        subject: PeerId,
        /// The job as dispatched.
        job: JobSpec,
        /// Its signed answer.
        receipt: ReceiptFacts,
    },
    /// Re-run this job locally (it costs one execution) and report the
    /// output with [`Event::Verified`]: an accusation hinges on it.
    Verify {
        /// Echo it back in [`Event::Verified`].
        check: u64,
        /// The job to re-run (its id is the accused dispatch's).
        job: JobSpec,
    },
}

/// Dispatch counters, for overhead accounting.
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct DispatchStats {
    /// Replicas of real tasks (including the first run and replacements).
    pub replicas: u64,
    /// Hidden audit replicas.
    pub audits: u64,
    /// Canaries used as spot checks of trusted peers.
    pub spot_canaries: u64,
    /// Canaries sent to suspects as decoys.
    pub decoys: u64,
    /// Accusations re-run locally before being believed.
    pub verifications: u64,
}

/// A placement rank: (trusted, record per prefix identity, less crowded).
type Rank = (bool, u64, Reverse<u32>);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Replica,
    Audit,
    Canary,
}

#[derive(Clone, Debug)]
struct Assignment {
    peer: PeerId,
    job: JobSpec,
    kind: Kind,
    task: Option<TaskId>,
    canary: Option<Canary>,
    dispatched_at: Millis,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Unverified,
    Solo { rate: f64, audit: bool },
    Replicated,
}

#[derive(Clone, Debug)]
struct OpenTask {
    spec: TaskSpec,
    mode: Mode,
    votes: Vec<(PeerId, ReceiptFacts)>,
    outstanding: u32,
    /// Every peer dispatched to (for distinct hosts and regions).
    holders: Vec<(PeerId, Region)>,
    /// Peers whose answer is still awaited.
    pending: Vec<PeerId>,
    dispatched: u32,
    audited: Option<PeerId>,
}

/// The composed security state machine. See the module docs for the driving
/// loop and polling order.
#[derive(Debug)]
pub struct Coordinator {
    config: SecurityConfig,
    reputation: Reputation,
    monitor: Monitor,
    rng: ChaCha8Rng,
    tasks: HashMap<TaskId, OpenTask>,
    assignments: HashMap<u64, Assignment>,
    deadlines: BinaryHeap<Reverse<(Millis, u64)>>,
    canaries: CanaryPool,
    actions: VecDeque<Action>,
    next_recalibration: Millis,
    stats: DispatchStats,
    /// Quarantines per region (bounded by the number of regions seen).
    region_strikes: HashMap<Region, u32>,
    /// Online identities per observed network prefix (bounded likewise).
    region_online: HashMap<Region, u32>,
    /// Accusations awaiting their local re-run, by check id (bounded by
    /// `max_pending_checks`).
    checks: HashMap<u64, Accusation>,
    /// Subjects with a check pending: one re-run per subject at a time.
    checking: HashSet<PeerId>,
    next_check: u64,
    /// Canaries in flight per peer (probation canaries or a decoy): no solo
    /// real work for a peer on probation until they are back.
    probing: HashMap<PeerId, u32>,
    /// Newcomers with a confirmed record, preferred over untried ones
    /// (pruned lazily; bounded by `reputation.max_peers`).
    recorded: Vec<PeerId>,
    in_recorded: HashSet<PeerId>,
    /// Real-work jobs outstanding per peer (bounded by `assignments`): a
    /// newcomer on trial is given more of the open work here, up to
    /// `reputation.trust_after` jobs at once, so trust is earned in one
    /// batch rather than spread thinly over every newcomer.
    open_jobs: HashMap<PeerId, u32>,
    /// Alarm level as of `alarm_at` (see `SecurityConfig::alarm_half_life_ms`).
    alarm: f64,
    alarm_at: Millis,
    /// Tasks submitted while no peer was trusted, not yet placed (see
    /// `SecurityConfig::bootstrap_batch`); each is also in `tasks`.
    waiting: VecDeque<TaskId>,
    /// The latest `now` handed in (so rates read between events, like
    /// [`Coordinator::spot_check_rate`], see the alarm decayed to it).
    now: Millis,
}

impl Coordinator {
    /// A coordinator with an empty reputation table.
    pub fn new(config: SecurityConfig) -> Result<Self, SecurityError> {
        let reputation = Reputation::new(config.reputation.clone())?;
        Self::with_reputation(config, reputation)
    }

    /// A coordinator resuming from a persisted reputation table (open tasks
    /// are not persisted: after a restart they are resubmitted).
    pub fn with_reputation(
        config: SecurityConfig,
        reputation: Reputation,
    ) -> Result<Self, SecurityError> {
        config.validate()?;
        let mut c = Self {
            rng: ChaCha8Rng::seed_from_u64(config.seed),
            monitor: Monitor::new(config.monitor.clone()),
            next_recalibration: config.reputation.recalibrate_ms,
            config,
            reputation,
            tasks: HashMap::new(),
            assignments: HashMap::new(),
            deadlines: BinaryHeap::new(),
            canaries: CanaryPool::default(),
            actions: VecDeque::new(),
            stats: DispatchStats::default(),
            region_strikes: HashMap::new(),
            region_online: HashMap::new(),
            checks: HashMap::new(),
            checking: HashSet::new(),
            next_check: 0,
            probing: HashMap::new(),
            recorded: Vec::new(),
            in_recorded: HashSet::new(),
            open_jobs: HashMap::new(),
            alarm: 0.0,
            alarm_at: 0,
            waiting: VecDeque::new(),
            now: 0,
        };
        c.request_canaries();
        Ok(c)
    }

    /// The configuration in force.
    pub fn config(&self) -> &SecurityConfig {
        &self.config
    }

    /// The reputation table (serialise it to persist or display).
    pub fn reputation(&self) -> &Reputation {
        &self.reputation
    }

    /// The behaviour monitor.
    pub fn monitor(&self) -> &Monitor {
        &self.monitor
    }

    /// Dispatch counters so far.
    pub fn stats(&self) -> DispatchStats {
        self.stats
    }

    /// The probability that `peer`'s next unreplicated task is checked in
    /// secret, or `None` if it is not trusted (its work is replicated).
    pub fn spot_check_rate(&self, peer: &PeerId) -> Option<f64> {
        let r = self.reputation.peer(peer)?;
        if r.state != PeerState::Trusted {
            return None;
        }
        if r.checks_passed < self.config.probation_canaries {
            return Some(1.0);
        }
        Some(self.spot_rate(peer))
    }

    /// Open tasks.
    pub fn open_tasks(&self) -> usize {
        self.tasks.len()
    }

    /// Next action, if any.
    pub fn poll(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`Coordinator::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Millis> {
        let deadline = self.deadlines.peek().map(|Reverse((t, _))| *t);
        Some(deadline.map_or(self.next_recalibration, |d| d.min(self.next_recalibration)))
    }

    /// Expires overdue jobs (as timeouts) and runs periodic recalibration.
    pub fn handle_timeout(&mut self, now: Millis) {
        self.now = self.now.max(now);
        if now >= self.next_recalibration {
            self.reputation.handle_timeout(now);
            if self.on(Layer::Monitoring) {
                self.monitor.recalibrate();
            }
            self.next_recalibration = now + self.config.reputation.recalibrate_ms;
        }
        while let Some(Reverse((t, job))) = self.deadlines.peek().copied() {
            if t > now {
                break;
            }
            self.deadlines.pop();
            if self.assignments.contains_key(&job) {
                let _ = self.job_failed(now, job, FailureKind::Timeout);
            }
        }
        self.drain_reputation();
        self.release_waiting(now);
    }

    /// Whether a new task must wait for trust to form (see
    /// `SecurityConfig::bootstrap_batch`).
    fn must_wait(&self) -> bool {
        let batch = self.config.bootstrap_batch;
        batch > 0
            && self.concentrating()
            && self.on(Layer::RandomizedExecution)
            && self.reputation.trusted_count() == 0
            && (!self.waiting.is_empty() || self.tasks.len() - self.waiting.len() >= batch)
    }

    /// Places waiting tasks once trust exists, or the next round once the
    /// previous one is over (no trust came of it: peers failed or lied).
    fn release_waiting(&mut self, now: Millis) {
        let batch = self.config.bootstrap_batch;
        if self.waiting.is_empty()
            || (self.reputation.trusted_count() == 0
                && batch > 0
                && self.tasks.len() > self.waiting.len())
        {
            return;
        }
        let mut round = 0;
        while !self.waiting.is_empty() {
            if self.reputation.trusted_count() == 0 && batch > 0 && round >= batch {
                return;
            }
            round += 1;
            let Some(id) = self.waiting.pop_front() else {
                return;
            };
            if self.tasks.contains_key(&id) {
                self.place(now, id);
                self.drain_reputation();
            }
        }
    }

    /// Feeds one event.
    pub fn handle(&mut self, now: Millis, event: Event) -> Result<(), SecurityError> {
        self.now = self.now.max(now);
        let r = match event {
            Event::PeerJoined {
                peer,
                region,
                advertised_fuel_per_ms,
            } => {
                let r = self
                    .reputation
                    .join(now, peer, region, advertised_fuel_per_ms);
                if r.is_ok() {
                    *self.region_online.entry(region).or_default() += 1;
                }
                r
            }
            Event::PeerLeft { peer } => {
                let region = self.reputation.peer(&peer).map(|r| (r.region, r.online));
                let r = self.reputation.leave(&peer);
                if let Some((region, true)) = region
                    && let Some(n) = self.region_online.get_mut(&region)
                {
                    *n = n.saturating_sub(1);
                }
                r
            }
            Event::Accusation(acc) => self.accusation(now, acc),
            Event::Verified { check, output } => self.verified(now, check, output),
            Event::TaskSubmitted(spec) => self.submit(now, spec),
            Event::CanaryAvailable(c) => self.canaries.push(c, self.config.deception.pool_capacity),
            Event::ResultReturned { job_id, receipt } => self.result(now, job_id, receipt),
            Event::JobFailed { job_id, kind } => self.job_failed(now, job_id, kind),
            Event::ProtocolViolation { peer, detail } => self.reputation.record(
                now,
                &peer,
                Evidence::Violation(Violation::Protocol { detail }),
            ),
            Event::MessageRate { peer, per_sec } => {
                self.observe(now, peer, Metric::MessageRate, per_sec);
                Ok(())
            }
            Event::TrustReport {
                report,
                signature_valid,
            } => self
                .reputation
                .apply_report(now, &report, &[], &|_: &PeerId, _: &[u8], _: &[u8]| {
                    signature_valid
                })
                .map(|_| ()),
        };
        self.drain_reputation();
        self.release_waiting(now);
        self.request_canaries();
        r
    }

    /// Another submitter's accusation: re-run before believing it, and only
    /// when it could change something here.
    fn accusation(&mut self, now: Millis, acc: Accusation) -> Result<(), SecurityError> {
        if acc.reporter == acc.subject {
            return Err(SecurityError::SelfReport(acc.reporter));
        }
        let state = self
            .reputation
            .peer(&acc.subject)
            .ok_or(SecurityError::UnknownPeer(acc.subject))?
            .state;
        // A reporter this node already contains is not worth a re-run.
        if self
            .reputation
            .peer(&acc.reporter)
            .is_some_and(|r| matches!(r.state, PeerState::Suspect | PeerState::Quarantined))
        {
            return Ok(());
        }
        if receipt::check_binding(&acc.job, &acc.subject, &acc.receipt).is_err() {
            return self.false_accusation(now, &acc);
        }
        // Only a trusted subject runs work alone here, so only then is the
        // re-run worth its execution: a newcomer's work is replicated anyway.
        if state != PeerState::Trusted || self.checking.contains(&acc.subject) {
            return Ok(());
        }
        if !self.config.verify_accusations {
            return self
                .reputation
                .record(now, &acc.subject, Evidence::ProvenWrong);
        }
        if self.checks.len() >= self.config.max_pending_checks {
            return Err(SecurityError::TableFull {
                table: "check",
                capacity: self.config.max_pending_checks,
            });
        }
        let check = self.next_check;
        self.next_check += 1;
        self.checks.insert(check, acc);
        self.checking.insert(acc.subject);
        self.stats.verifications += 1;
        self.actions.push_back(Action::Verify {
            check,
            job: acc.job,
        });
        Ok(())
    }

    fn verified(&mut self, now: Millis, check: u64, output: Digest) -> Result<(), SecurityError> {
        let acc = self
            .checks
            .remove(&check)
            .ok_or(SecurityError::UnknownAssignment(crate::ids::AssignmentId(
                check,
            )))?;
        self.checking.remove(&acc.subject);
        if output != acc.receipt.output_hash {
            if self.reputation.peer(&acc.subject).is_some() {
                self.raise_alarm(now);
                self.reputation
                    .record(now, &acc.subject, Evidence::ProvenWrong)?;
            }
            Ok(())
        } else {
            self.false_accusation(now, &acc)
        }
    }

    /// The accusation is disproved: held against its author if we know it.
    fn false_accusation(&mut self, now: Millis, acc: &Accusation) -> Result<(), SecurityError> {
        if self.reputation.peer(&acc.reporter).is_none() {
            return Ok(());
        }
        self.reputation.record(
            now,
            &acc.reporter,
            Evidence::Violation(Violation::FalseAccusation {
                subject: acc.subject,
            }),
        )
    }

    fn accuse(&mut self, subject: PeerId, job: JobSpec, receipt: ReceiptFacts) {
        self.actions.push_back(Action::Accuse {
            subject,
            job,
            receipt,
        });
    }

    fn on(&self, layer: Layer) -> bool {
        self.config.layers.contains(layer)
    }

    fn drain_reputation(&mut self) {
        while let Some(change) = self.reputation.poll() {
            if change.to == PeerState::Quarantined {
                self.monitor.forget(&change.peer);
                if let Some(r) = self.reputation.peer(&change.peer) {
                    *self.region_strikes.entry(r.region).or_default() += 1;
                }
            }
            self.actions.push_back(Action::PeerState(change));
        }
    }

    fn request_canaries(&mut self) {
        if self.on(Layer::Deception) {
            let n = self.canaries.refill(&self.config.deception);
            if n > 0 {
                self.actions.push_back(Action::NeedCanaries { count: n });
            }
        }
    }

    fn observe(&mut self, now: Millis, peer: PeerId, metric: Metric, value: f64) {
        if !self.on(Layer::Monitoring) {
            return;
        }
        if let Some(a) = self.monitor.observe(peer, metric, value) {
            let _ = self.reputation.record(
                now,
                &peer,
                Evidence::Anomaly {
                    metric: a.metric,
                    score: a.score,
                },
            );
        }
    }

    fn fresh_job_id(&mut self) -> u64 {
        loop {
            let id = self.rng.random::<u64>();
            if !self.assignments.contains_key(&id) {
                return id;
            }
        }
    }

    fn dispatch(
        &mut self,
        now: Millis,
        peer: PeerId,
        kind: Kind,
        task: Option<&TaskSpec>,
        canary: Option<Canary>,
    ) {
        let job_id = self.fresh_job_id();
        let job = match (task, &canary) {
            (Some(t), _) => JobSpec {
                job_id,
                module_hash: t.module_hash,
                input_hash: t.input_hash,
                fuel_limit: t.fuel_limit,
            },
            (None, Some(c)) => JobSpec {
                job_id,
                module_hash: c.module_hash,
                input_hash: c.input_hash,
                fuel_limit: c.fuel_limit,
            },
            (None, None) => unreachable!("a dispatch is for a task or a canary"),
        };
        let deadline = now + self.config.assignment_timeout_ms;
        self.assignments.insert(
            job_id,
            Assignment {
                peer,
                job,
                kind,
                task: task.map(|t| t.id),
                canary,
                dispatched_at: now,
            },
        );
        self.deadlines.push(Reverse((deadline, job_id)));
        self.actions.push_back(Action::Dispatch {
            peer,
            job,
            deadline,
        });
    }

    /// Draws a peer for real work on `task`: online newcomer or trusted (plus
    /// suspects when deception is off), not already holding it, in a region
    /// it does not already occupy, and newcomers only for small tasks.
    fn pick_for(&mut self, task: &OpenTask, trusted_only: bool) -> Option<PeerId> {
        let first = self.pick_once(task, trusted_only)?;
        if trusted_only || self.config.newcomer_candidates <= 1 {
            return Some(first);
        }
        if self
            .reputation
            .peer(&first)
            .is_some_and(|r| r.state == PeerState::Trusted)
        {
            return Some(first);
        }
        if let Some(p) = self.pick_recorded(task) {
            return Some(p);
        }
        let mut best = (self.placement_rank(&first), first);
        for _ in 1..self.config.newcomer_candidates {
            if let Some(p) = self.pick_once(task, false) {
                let rank = (self.placement_rank(&p), p);
                if rank.0 > best.0 {
                    best = rank;
                }
            }
        }
        Some(best.1)
    }

    /// Trusted first, then newcomers by their run of verified results,
    /// divided by how many online identities share their network prefix
    /// (identities are free, prefixes are not); among equals (untried
    /// newcomers), the less crowded prefix.
    fn placement_rank(&self, p: &PeerId) -> Rank {
        let Some(r) = self.reputation.peer(p) else {
            return (false, 0, Reverse(u32::MAX));
        };
        let crowd = self.crowd(p);
        (
            r.state == PeerState::Trusted,
            (u64::from(r.consecutive_valid) * 1024) / u64::from(crowd),
            Reverse(crowd),
        )
    }

    /// A newcomer with a confirmed record (a run of verified results), if
    /// one is eligible: the best of a few draws from that list, which is
    /// pruned lazily of peers that left it.
    fn pick_recorded(&mut self, task: &OpenTask) -> Option<PeerId> {
        let distinct =
            self.config.placement.distinct_regions && self.on(Layer::RandomizedExecution);
        let mut best: Option<(Rank, PeerId)> = None;
        for _ in 0..self.config.newcomer_candidates * 4 {
            if self.recorded.is_empty() {
                break;
            }
            let i = self.rng.random_range(0..self.recorded.len());
            let p = self.recorded[i];
            let open = if self.concentrating() {
                self.open_jobs.get(&p).copied().unwrap_or(0)
            } else {
                0
            };
            let keep = self.reputation.peer(&p).is_some_and(|r| {
                r.online && r.state == PeerState::Newcomer && (r.consecutive_valid > 0 || open > 0)
            });
            if !keep {
                self.recorded.swap_remove(i);
                self.in_recorded.remove(&p);
                continue;
            }
            let r = self.reputation.peer(&p).expect("checked");
            let ok = task.spec.fuel_limit <= self.config.newcomer_max_fuel
                && open < self.config.reputation.trust_after.max(1)
                && !task
                    .holders
                    .iter()
                    .any(|(h, region)| *h == p || (distinct && *region == r.region));
            if ok {
                // Work already in flight here counts like results: the trial
                // is concentrated on the newcomers already being tried.
                let crowd = self.crowd(&p);
                let rank = (
                    false,
                    (u64::from(r.consecutive_valid) + u64::from(open)) * 1024 / u64::from(crowd),
                    Reverse(crowd),
                );
                if best.is_none_or(|(b, _)| rank > b) {
                    best = Some((rank, p));
                }
            }
        }
        best.map(|(_, p)| p)
    }

    /// Notes a newcomer that was just given real work here (on trial).
    fn note_trial(&mut self, p: PeerId) {
        if self.recorded.len() < self.config.reputation.max_peers
            && self
                .reputation
                .peer(&p)
                .is_some_and(|r| r.state == PeerState::Newcomer)
            && self.in_recorded.insert(p)
        {
            self.recorded.push(p);
        }
    }

    /// One real-work job of `p` is no longer outstanding.
    fn close_job(&mut self, a: &Assignment) {
        if a.task.is_some()
            && let Some(n) = self.open_jobs.get_mut(&a.peer)
        {
            *n -= 1;
            if *n == 0 {
                self.open_jobs.remove(&a.peer);
            }
        }
    }

    /// Notes a newcomer that just earned a verified result.
    fn note_record(&mut self, p: PeerId) {
        if self.recorded.len() < self.config.reputation.max_peers
            && self
                .reputation
                .peer(&p)
                .is_some_and(|r| r.state == PeerState::Newcomer && r.consecutive_valid > 0)
            && self.in_recorded.insert(p)
        {
            self.recorded.push(p);
        }
    }

    fn pick_once(&mut self, task: &OpenTask, trusted_only: bool) -> Option<PeerId> {
        let distinct =
            self.config.placement.distinct_regions && self.on(Layer::RandomizedExecution);
        let with_suspects = !self.on(Layer::Deception);
        let rep = &self.reputation;
        let max_fuel = self.config.newcomer_max_fuel;
        let suspects: &[PeerId] = if with_suspects { rep.suspects() } else { &[] };
        placement::pick(
            &mut self.rng,
            rep.workers(),
            suspects,
            self.config.placement.sample_tries,
            |p| {
                let Some(r) = rep.peer(p) else { return false };
                if trusted_only && r.state != PeerState::Trusted {
                    return false;
                }
                if r.state != PeerState::Trusted && task.spec.fuel_limit > max_fuel {
                    return false;
                }
                !task
                    .holders
                    .iter()
                    .any(|(h, region)| h == p || (distinct && *region == r.region))
            },
        )
    }

    fn submit(&mut self, now: Millis, spec: TaskSpec) -> Result<(), SecurityError> {
        if self.tasks.contains_key(&spec.id) {
            return Err(SecurityError::DuplicateTask(spec.id));
        }
        if self.tasks.len() >= self.config.max_open_tasks {
            return Err(SecurityError::TableFull {
                table: "task",
                capacity: self.config.max_open_tasks,
            });
        }
        if self.on(Layer::Deception) {
            self.send_decoys(now);
        }
        let task = OpenTask {
            spec,
            mode: Mode::Replicated,
            votes: Vec::new(),
            outstanding: 0,
            holders: Vec::new(),
            pending: Vec::new(),
            dispatched: 0,
            audited: None,
        };
        let wait = self.must_wait();
        self.tasks.insert(spec.id, task);
        if wait {
            self.waiting.push_back(spec.id);
        } else {
            self.place(now, spec.id);
        }
        Ok(())
    }

    /// Suspects get decoys (canaries) and nothing else, and are not told.
    fn send_decoys(&mut self, now: Millis) {
        let share = self.config.deception.decoys_per_task;
        let mut budget = share.floor() as u32;
        if self
            .rng
            .random_bool((share - share.floor()).clamp(0.0, 1.0))
        {
            budget += 1;
        }
        for _ in 0..budget {
            let suspects = self.reputation.suspects();
            if suspects.is_empty() || self.canaries.is_empty() {
                return;
            }
            let peer = suspects[self.rng.random_range(0..suspects.len())];
            if self.probing.contains_key(&peer) {
                continue;
            }
            self.probing.insert(peer, 1);
            let c = self.canaries.take();
            self.stats.decoys += 1;
            self.dispatch(now, peer, Kind::Canary, None, c);
        }
    }

    /// Chooses how to run a task that has no result yet.
    fn place(&mut self, now: Millis, id: TaskId) {
        let Some(task) = self.tasks.get(&id).cloned() else {
            return;
        };
        if !self.on(Layer::RandomizedExecution) {
            match self.pick_for(&task, false) {
                Some(p) => self.run_replica(now, id, p, Mode::Unverified, Kind::Replica),
                None => self.give_up(id, GiveUpReason::NoEligiblePeer),
            }
            return;
        }
        // A trusted primary may first be handed a canary instead (a hidden
        // check); the task then goes to another draw.
        let mut primary = None;
        for _ in 0..4 {
            let Some(p) = self.pick_for(&task, false) else {
                break;
            };
            let trusted = self
                .reputation
                .peer(&p)
                .is_some_and(|r| r.state == PeerState::Trusted);
            // Newcomers get a bounded share of primaries while proven peers
            // exist, so a stream of fresh identities costs the network little.
            if !trusted
                && self.reputation.trusted_count() > 0
                && !self.rng.random_bool(self.admission(&p))
                && let Some(q) = self.pick_for(&task, true)
            {
                primary = Some(q);
                if self.spot_canary(now, q) {
                    primary = None;
                    continue;
                }
                break;
            }
            if trusted && self.spot_canary(now, p) {
                continue;
            }
            primary = Some(p);
            break;
        }
        let Some(p) = primary.or_else(|| self.pick_for(&task, false)) else {
            if task.outstanding == 0 {
                self.give_up(id, GiveUpReason::NoEligiblePeer);
            }
            return;
        };
        // A trusted peer still on probation (its canaries not yet back) only
        // gets replicated work.
        let probation = self.on(Layer::Deception)
            && self
                .reputation
                .peer(&p)
                .is_some_and(|r| r.checks_passed < self.config.probation_canaries);
        if !probation
            && self
                .reputation
                .peer(&p)
                .is_some_and(|r| r.state == PeerState::Trusted)
        {
            let rate = self.spot_rate(&p);
            let audit_share = if self.on(Layer::Deception) {
                1.0 - self.config.deception.canary_share
            } else {
                1.0
            };
            let audit = self.rng.random_bool((rate * audit_share).clamp(0.0, 1.0));
            self.run_replica(now, id, p, Mode::Solo { rate, audit }, Kind::Replica);
        } else {
            self.run_replica(now, id, p, Mode::Replicated, Kind::Replica);
            self.top_up(now, id);
        }
    }

    /// Whether newcomer trials are concentrated (a first round of
    /// `bootstrap_batch` tasks, newcomers already on trial preferred). That
    /// saves replicas when the swarm has many more newcomers than the
    /// round needs (about `bootstrap_batch` × 4 / `reputation.trust_after`,
    /// 6 at the defaults). In a swarm of fewer online peers than
    /// `bootstrap_batch`, the round's four newcomers per task reach every
    /// host several times anyway, and concentrating would only make the
    /// same few newcomers hold every task (colluders among them then hold
    /// whole quorums, which more newcomers cannot outvote within the
    /// replica budget) and leave the rest untried until trust has formed,
    /// after which an untried newcomer is rarely drawn. There trials are
    /// spread and every task is placed at once, as before the round
    /// existed.
    fn concentrating(&self) -> bool {
        self.reputation.workers().len() >= self.config.bootstrap_batch.max(1)
    }

    /// Online identities sharing `p`'s observed prefix.
    fn crowd(&self, p: &PeerId) -> u32 {
        self.reputation
            .peer(p)
            .and_then(|r| self.region_online.get(&r.region).copied())
            .unwrap_or(1)
            .max(1)
    }

    /// Admission probability of a newcomer as primary: the configured share,
    /// divided by 1 + the quarantines already seen from its region. Identities
    /// are free, addresses are not: churning identities from one region
    /// quickly earns that region's newcomers almost nothing.
    fn admission(&self, p: &PeerId) -> f64 {
        let region = self
            .reputation
            .peer(p)
            .map(|r| r.region)
            .unwrap_or_default();
        let strikes = self.region_strikes.get(&region).copied().unwrap_or(0);
        let crowd = self.region_online.get(&region).copied().unwrap_or(1).max(1);
        let base = if self.reputation.trusted_count() < self.config.min_trusted {
            1.0
        } else {
            self.config.newcomer_admission
        };
        base / (1.0 + strikes as f64) / f64::from(crowd)
    }

    /// With the deception layer on, maybe hand trusted peer `p` a canary as a
    /// hidden spot check instead of the task; true if it did.
    fn spot_canary(&mut self, now: Millis, p: PeerId) -> bool {
        if !self.on(Layer::Deception) || self.canaries.is_empty() {
            return false;
        }
        let owed = self.reputation.peer(&p).map_or(0, |r| {
            self.config
                .probation_canaries
                .saturating_sub(r.checks_passed)
        });
        if owed > 0 {
            // Every probation canary still owed goes out at once (they look
            // like any other jobs), so probation takes one round trip, not
            // one per canary; none of its solo real work before they are
            // back (the caller draws another primary).
            if !self.probing.contains_key(&p) {
                let mut sent = 0;
                while sent < owed
                    && let Some(c) = self.canaries.take()
                {
                    self.stats.spot_canaries += 1;
                    self.dispatch(now, p, Kind::Canary, None, Some(c));
                    sent += 1;
                }
                self.probing.insert(p, sent);
            }
            return true;
        }
        let rate = self.spot_rate(&p);
        if !self
            .rng
            .random_bool((rate * self.config.deception.canary_share).clamp(0.0, 1.0))
        {
            return false;
        }
        let c = self.canaries.take();
        self.stats.spot_canaries += 1;
        self.dispatch(now, p, Kind::Canary, None, c);
        true
    }

    /// One canary of `peer` is back (answered or failed).
    fn canary_back(&mut self, peer: &PeerId) {
        if let Some(n) = self.probing.get_mut(peer) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.probing.remove(peer);
            }
        }
    }

    fn spot_rate(&self, peer: &PeerId) -> f64 {
        let checks = self.reputation.peer(peer).map_or(0, |r| r.checks_passed);
        let c = &self.config;
        // Decayed to the latest time seen: the alarm fades between lies.
        let alarmed =
            (c.alarm_gain * (self.alarm(self.now) - c.alarm_free)).clamp(0.0, c.alarm_max_rate);
        placement::spot_check_rate(&c.placement, checks).max(alarmed)
    }

    /// The alarm level now (decayed), for display.
    pub fn alarm(&self, now: Millis) -> f64 {
        let dt = now.saturating_sub(self.alarm_at) as f64;
        self.alarm * 0.5f64.powf(dt / self.config.alarm_half_life_ms.max(1) as f64)
    }

    fn raise_alarm(&mut self, now: Millis) {
        self.alarm = self.alarm(now) + 1.0;
        self.alarm_at = now.max(self.alarm_at);
    }

    fn is_trusted(&self, p: &PeerId) -> bool {
        self.reputation
            .peer(p)
            .is_some_and(|r| r.state == PeerState::Trusted)
    }

    fn run_replica(&mut self, now: Millis, id: TaskId, peer: PeerId, mode: Mode, kind: Kind) {
        let region = self
            .reputation
            .peer(&peer)
            .map(|r| r.region)
            .unwrap_or_default();
        let Some(task) = self.tasks.get_mut(&id) else {
            return;
        };
        task.mode = mode;
        task.holders.push((peer, region));
        task.pending.push(peer);
        task.outstanding += 1;
        task.dispatched += 1;
        let spec = task.spec;
        if kind == Kind::Audit {
            self.stats.audits += 1;
        } else {
            self.stats.replicas += 1;
        }
        *self.open_jobs.entry(peer).or_default() += 1;
        self.note_trial(peer);
        self.dispatch(now, peer, kind, Some(&spec), None);
    }

    /// Adds replicas until the expected weight of the results could reach
    /// the quorum bar (no point dispatching fewer).
    fn top_up(&mut self, now: Millis, id: TaskId) {
        loop {
            let Some(task) = self.tasks.get(&id) else {
                return;
            };
            let live = task.votes.iter().map(|(p, _)| p).chain(task.pending.iter());
            let (weight, count) =
                live.fold((0.0, 0), |(w, n), p| (w + self.reputation.weight(p), n + 1));
            let limit = self.config.placement.max_replicas as u32;
            if (weight >= self.config.quorum.accept_weight && count >= self.config.quorum.min_votes)
                || task.dispatched >= limit + self.config.placement.max_retries as u32
                || task.holders.len() as u32 >= limit
            {
                return;
            }
            // Pair unproven peers with proven ones where possible: a Sybil
            // crowd then never forms a quorum on its own.
            let task = task.clone();
            let Some(p) = self
                .pick_for(&task, true)
                .or_else(|| self.pick_for(&task, false))
            else {
                return;
            };
            self.run_replica(now, id, p, Mode::Replicated, Kind::Replica);
        }
    }

    fn give_up(&mut self, id: TaskId, reason: GiveUpReason) {
        self.tasks.remove(&id);
        self.actions.push_back(Action::GiveUp { task: id, reason });
    }

    fn result(
        &mut self,
        now: Millis,
        job_id: u64,
        receipt: ReceiptFacts,
    ) -> Result<(), SecurityError> {
        let a = self
            .assignments
            .remove(&job_id)
            .ok_or(SecurityError::UnknownAssignment(crate::ids::AssignmentId(
                job_id,
            )))?;
        self.close_job(&a);
        let peer = a.peer;
        // Layer 2: the receipt must bind the dispatched job.
        if self.on(Layer::Receipts)
            && let Err(field) = receipt::check_binding(&a.job, &peer, &receipt)
        {
            self.reputation.record(
                now,
                &peer,
                Evidence::Violation(Violation::Binding { field }),
            )?;
            return self.lost(now, &a);
        }
        // Layer 5: the counters must be physically possible.
        let advertised = self
            .reputation
            .peer(&peer)
            .map_or(0, |r| r.advertised_fuel_per_ms);
        if self.on(Layer::Thermal)
            && let Some(v) = thermal::check_wall_time(
                receipt.fuel_used,
                receipt.wall_ms,
                advertised,
                &self.config.thermal,
            )
        {
            self.reputation.record(now, &peer, Evidence::Violation(v))?;
            return self.lost(now, &a);
        }
        // Layer 4: behaviour stream.
        self.observe(
            now,
            peer,
            Metric::Latency,
            now.saturating_sub(a.dispatched_at) as f64,
        );
        self.observe(now, peer, Metric::ErrorRate, 0.0);
        if advertised > 0 {
            let speed = receipt.fuel_used as f64 / receipt.wall_ms.max(1) as f64;
            self.observe(now, peer, Metric::SpeedRatio, speed / advertised as f64);
        }
        match a.kind {
            Kind::Canary => {
                self.canary_back(&peer);
                let c = a.canary.expect("canary assignments carry their canary");
                let ev = match deception::check_canary(&c, &receipt, self.on(Layer::Thermal)) {
                    CanaryVerdict::Pass => Evidence::CheckPassed,
                    CanaryVerdict::WrongOutput => {
                        if self.is_trusted(&peer) {
                            self.raise_alarm(now);
                        }
                        self.accuse(peer, a.job, receipt);
                        Evidence::CanaryFailed
                    }
                    CanaryVerdict::Counters(v) => Evidence::Violation(v),
                };
                self.reputation.record(now, &peer, ev)?;
                Ok(())
            }
            Kind::Replica | Kind::Audit => {
                let id = a.task.expect("replicas carry their task");
                if let Some(task) = self.tasks.get_mut(&id) {
                    task.votes.push((peer, receipt));
                    task.pending.retain(|p| *p != peer);
                    task.outstanding -= 1;
                    if task.outstanding == 0 {
                        self.evaluate(now, id);
                    }
                }
                Ok(())
            }
        }
    }

    /// A real-task assignment produced nothing usable.
    fn lost(&mut self, now: Millis, a: &Assignment) -> Result<(), SecurityError> {
        if let Some(id) = a.task
            && let Some(task) = self.tasks.get_mut(&id)
        {
            task.pending.retain(|p| *p != a.peer);
            task.outstanding -= 1;
            if task.outstanding == 0 {
                self.evaluate(now, id);
            }
        }
        Ok(())
    }

    fn job_failed(
        &mut self,
        now: Millis,
        job_id: u64,
        kind: FailureKind,
    ) -> Result<(), SecurityError> {
        let a = self
            .assignments
            .remove(&job_id)
            .ok_or(SecurityError::UnknownAssignment(crate::ids::AssignmentId(
                job_id,
            )))?;
        self.close_job(&a);
        if a.kind == Kind::Canary {
            self.canary_back(&a.peer);
        }
        self.reputation
            .record(now, &a.peer, Evidence::Failed { kind })?;
        let metric = if kind == FailureKind::Refused {
            Metric::RefusalRate
        } else {
            Metric::ErrorRate
        };
        self.observe(now, a.peer, metric, 1.0);
        self.lost(now, &a)
    }

    /// All outstanding replicas of a task have answered or failed: decide.
    fn evaluate(&mut self, now: Millis, id: TaskId) {
        let Some(task) = self.tasks.get(&id) else {
            return;
        };
        let budget =
            (self.config.placement.max_replicas + self.config.placement.max_retries) as u32;
        match task.mode {
            Mode::Unverified => match task.votes.first() {
                Some((p, r)) => {
                    let (p, r) = (*p, *r);
                    self.tasks.remove(&id);
                    self.actions.push_back(Action::Accept {
                        task: id,
                        output: r.output_hash,
                        fuel: r.fuel_used,
                        paid: vec![(p, r.fuel_used)],
                        reason: AcceptReason::Unverified,
                    });
                }
                None if task.dispatched < budget => self.place(now, id),
                None => self.give_up(
                    id,
                    GiveUpReason::NoQuorum {
                        dispatched: task.dispatched,
                    },
                ),
            },
            Mode::Solo { rate, audit } => match task.votes.first() {
                Some(&(p, r)) if !audit => {
                    self.tasks.remove(&id);
                    self.actions.push_back(Action::Accept {
                        task: id,
                        output: r.output_hash,
                        fuel: r.fuel_used,
                        paid: vec![(p, r.fuel_used)],
                        reason: AcceptReason::TrustedSolo {
                            spot_check_rate: rate,
                        },
                    });
                }
                Some(&(p, _)) => {
                    // Hidden audit: decided at placement, dispatched only now,
                    // after the primary answered, so the primary could not see
                    // a partner replica while computing.
                    let task = task.clone();
                    let auditor = self
                        .pick_for(&task, true)
                        .or_else(|| self.pick_for(&task, false));
                    if let Some(t) = self.tasks.get_mut(&id) {
                        t.mode = Mode::Replicated;
                        t.audited = Some(p);
                    }
                    match auditor {
                        Some(q) => self.run_replica(now, id, q, Mode::Replicated, Kind::Audit),
                        None => self.evaluate(now, id),
                    }
                }
                None if task.dispatched < budget => self.place(now, id),
                None => self.give_up(
                    id,
                    GiveUpReason::NoQuorum {
                        dispatched: task.dispatched,
                    },
                ),
            },
            Mode::Replicated => {
                let thermal = self.on(Layer::Thermal);
                let votes: Vec<Vote> = task
                    .votes
                    .iter()
                    .map(|(p, r)| Vote {
                        peer: *p,
                        output: vote_key(r, thermal),
                        weight: self.reputation.weight(p),
                    })
                    .collect();
                match quorum::decide(&votes, &self.config.quorum) {
                    Verdict::Accept {
                        output,
                        support,
                        total,
                    } => self.finalize(now, id, output, support, total),
                    Verdict::Undecided { .. } => {
                        let limit = self.config.placement.max_replicas as u32;
                        if task.dispatched >= budget || task.holders.len() as u32 >= limit {
                            self.give_up(
                                id,
                                GiveUpReason::NoQuorum {
                                    dispatched: task.dispatched,
                                },
                            );
                            return;
                        }
                        let task = task.clone();
                        match self
                            .pick_for(&task, true)
                            .or_else(|| self.pick_for(&task, false))
                        {
                            Some(p) => {
                                self.run_replica(now, id, p, Mode::Replicated, Kind::Replica);
                                self.top_up(now, id);
                            }
                            None => self.give_up(id, GiveUpReason::NoEligiblePeer),
                        }
                    }
                }
            }
        }
    }

    /// `key` is the winning vote key: the output digest, or with the thermal
    /// layer on, the digest of (output, fuel, memory), so the quorum decides
    /// the counters too and a disputed bill escalates like a disputed output.
    fn finalize(&mut self, now: Millis, id: TaskId, key: Digest, support: f64, total: f64) {
        let Some(task) = self.tasks.remove(&id) else {
            return;
        };
        let thermal = self.on(Layer::Thermal);
        let Some(&(_, winner)) = task.votes.iter().find(|(_, r)| vote_key(r, thermal) == key)
        else {
            return;
        };
        let output = winner.output_hash;
        let reference = thermal.then_some((winner.fuel_used, winner.peak_memory_bytes));
        let backed_by_trusted = task.votes.iter().any(|(p, r)| {
            vote_key(r, thermal) == key
                && self
                    .reputation
                    .peer(p)
                    .is_some_and(|x| x.state == PeerState::Trusted)
        });
        // Fuel is deterministic, so same-output receipts with different
        // counters prove someone lies about them. If no trusted peer backs the
        // winner (bootstrap: newcomers only), settle in the customer's favour:
        // the lowest claim is the reference. Over-billing only ever inflates,
        // and under-claiming only costs the claimant.
        let reference = if thermal && !backed_by_trusted {
            task.votes
                .iter()
                .filter(|(_, r)| r.output_hash == output)
                .map(|(_, r)| (r.fuel_used, r.peak_memory_bytes))
                .min()
        } else {
            reference
        };
        let mut paid = Vec::with_capacity(task.votes.len());
        for (p, r) in &task.votes {
            let ev = if r.output_hash != output {
                if backed_by_trusted {
                    let job = JobSpec {
                        job_id: r.job_id,
                        module_hash: r.module_hash,
                        input_hash: r.input_hash,
                        fuel_limit: task.spec.fuel_limit,
                    };
                    self.accuse(*p, job, *r);
                    if self.is_trusted(p) {
                        self.raise_alarm(now);
                    }
                    Evidence::Disagreed { task: id }
                } else {
                    Evidence::Outvoted { task: id }
                }
            } else if let Some(v) = reference
                .and_then(|rf| thermal::check_counters(r.fuel_used, r.peak_memory_bytes, rf))
            {
                Evidence::CountersDisputed(v)
            } else {
                paid.push((*p, r.fuel_used));
                if task.audited == Some(*p) {
                    Evidence::CheckPassed
                } else {
                    Evidence::Agreed { task: id }
                }
            };
            let agreed = matches!(ev, Evidence::Agreed { .. } | Evidence::CheckPassed);
            let _ = self.reputation.record(now, p, ev);
            if agreed {
                self.note_record(*p);
            }
        }
        let fuel = reference.map_or(winner.fuel_used, |r| r.0);
        self.actions.push_back(Action::Accept {
            task: id,
            output,
            fuel,
            paid,
            reason: AcceptReason::Quorum {
                support,
                total,
                voters: task.votes.len() as u32,
            },
        });
    }
}

/// What a replica votes for: its output digest, or with counters folded in
/// when the thermal layer is on (fuel and memory are deterministic, so honest
/// replicas still agree exactly).
fn vote_key(r: &ReceiptFacts, thermal: bool) -> Digest {
    if !thermal {
        return r.output_hash;
    }
    let mut d = r.output_hash;
    for (i, b) in r
        .fuel_used
        .to_be_bytes()
        .iter()
        .chain(r.peak_memory_bytes.to_be_bytes().iter())
        .enumerate()
    {
        d.0[i * 2 % 32] ^= b.rotate_left(3);
        d.0[(i * 2 + 1) % 32] = d.0[(i * 2 + 1) % 32].wrapping_add(*b).wrapping_mul(31);
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    fn join_all(c: &mut Coordinator, n: u64) {
        for i in 0..n {
            c.handle(
                0,
                Event::PeerJoined {
                    peer: PeerId::from_u64(i),
                    region: Region(i as u32),
                    advertised_fuel_per_ms: 1000,
                },
            )
            .unwrap();
        }
    }

    fn spec(t: u64) -> TaskSpec {
        TaskSpec {
            id: TaskId(t),
            module_hash: Digest::from_u64(1),
            input_hash: Digest::from_u64(1_000 + t),
            fuel_limit: 1 << 20,
        }
    }

    /// Dispatches per peer (real work only) since the last drain.
    fn drain_dispatches(c: &mut Coordinator) -> HashMap<PeerId, u32> {
        let mut per = HashMap::new();
        while let Some(a) = c.poll() {
            if let Action::Dispatch { peer, .. } = a {
                *per.entry(peer).or_default() += 1;
            }
        }
        per
    }

    #[test]
    fn a_batch_at_bootstrap_is_concentrated_on_few_newcomers_each_bounded() {
        let mut c = Coordinator::new(SecurityConfig {
            layers: LayerSet::ALL.without(Layer::Deception),
            bootstrap_batch: 0,
            ..Default::default()
        })
        .unwrap();
        join_all(&mut c, 1000);
        let now = 5;
        for t in 0..32 {
            c.handle(now, Event::TaskSubmitted(spec(t))).unwrap();
        }
        let per = drain_dispatches(&mut c);
        let jobs: u32 = per.values().sum();
        // No trusted peer yet: four newcomers per task.
        assert_eq!(jobs, 32 * 4);
        let cap = c.config().reputation.trust_after;
        assert!(per.values().all(|&n| n <= cap), "{per:?}");
        // Uniform draws would use ~120 distinct newcomers; the trial set is
        // a few times the minimum of jobs / trust_after.
        assert!(per.len() <= 40, "{} newcomers tried", per.len());
    }

    fn truth(input: &Digest) -> Digest {
        let mut d = *input;
        d.0[31] ^= 0xFF;
        d
    }

    /// Answers every dispatch correctly at `now` and serves canary requests;
    /// returns (real-work dispatches, canary dispatches) per peer.
    fn answer_all(
        c: &mut Coordinator,
        now: Millis,
        canaries: &mut u64,
    ) -> (HashMap<PeerId, u32>, HashMap<PeerId, u32>) {
        answer_all_but(c, now, canaries, None)
    }

    /// As `answer_all`, and `liar` answers its canaries wrongly.
    fn answer_all_but(
        c: &mut Coordinator,
        now: Millis,
        canaries: &mut u64,
        liar: Option<PeerId>,
    ) -> (HashMap<PeerId, u32>, HashMap<PeerId, u32>) {
        let (mut real, mut canary) = (HashMap::new(), HashMap::new());
        loop {
            let mut events = Vec::new();
            while let Some(a) = c.poll() {
                match a {
                    Action::Dispatch { peer, job, .. } => {
                        let is_canary = job.input_hash.0[0] == 0xCA;
                        *if is_canary { &mut canary } else { &mut real }
                            .entry(peer)
                            .or_default() += 1;
                        events.push(Event::ResultReturned {
                            job_id: job.job_id,
                            receipt: ReceiptFacts {
                                job_id: job.job_id,
                                host: peer,
                                module_hash: job.module_hash,
                                input_hash: job.input_hash,
                                output_hash: if is_canary && Some(peer) == liar {
                                    Digest::from_u64(0xBAD)
                                } else {
                                    truth(&job.input_hash)
                                },
                                fuel_used: 5000,
                                peak_memory_bytes: 64,
                                wall_ms: 10,
                            },
                        });
                    }
                    Action::NeedCanaries { count } => {
                        for _ in 0..count {
                            *canaries += 1;
                            let mut input = Digest::from_u64(*canaries);
                            input.0[0] = 0xCA;
                            events.push(Event::CanaryAvailable(Canary {
                                module_hash: Digest::from_u64(1),
                                input_hash: input,
                                fuel_limit: 1 << 20,
                                output_hash: truth(&input),
                                fuel: 5000,
                                peak_memory_bytes: 64,
                            }));
                        }
                    }
                    _ => {}
                }
            }
            if events.is_empty() {
                return (real, canary);
            }
            for e in events {
                c.handle(now, e).unwrap();
            }
        }
    }

    #[test]
    fn without_trust_only_a_first_round_is_placed_and_the_rest_waits_for_it() {
        let mut c = Coordinator::new(SecurityConfig::default()).unwrap();
        join_all(&mut c, 1000);
        let batch = c.config().bootstrap_batch as u64;
        let mut canaries = 0;
        answer_all(&mut c, 0, &mut canaries);
        for t in 0..32 {
            c.handle(5, Event::TaskSubmitted(spec(t))).unwrap();
        }
        assert_eq!(c.open_tasks(), 32, "waiting tasks are open tasks");
        assert_eq!(
            c.stats().replicas,
            batch * 4,
            "four newcomers per placed task"
        );
        // The first round comes back: its newcomers are trusted now, and the
        // waiting tasks are placed at once, mostly on them.
        let (real, _) = answer_all(&mut c, 100, &mut canaries);
        assert!(c.reputation().trusted_count() > 0);
        assert!(
            c.open_tasks() == 0 && real.values().sum::<u32>() > 0,
            "open {} after the first round",
            c.open_tasks()
        );
    }

    #[test]
    fn without_trust_and_no_answers_waiting_tasks_move_up_as_placed_ones_finish() {
        let mut c = Coordinator::new(SecurityConfig {
            bootstrap_batch: 2,
            ..Default::default()
        })
        .unwrap();
        join_all(&mut c, 50);
        for t in 0..5 {
            c.handle(5, Event::TaskSubmitted(spec(t))).unwrap();
        }
        let first = drain_dispatches(&mut c);
        assert_eq!(first.values().sum::<u32>(), 2 * 4);
        // Every job times out: nobody becomes trusted, the budget runs out,
        // the placed tasks are given up and the waiting ones are placed.
        let mut now = 5;
        let mut given_up = 0;
        while given_up < 5 && now < 10_000_000 {
            now = c.poll_timeout().unwrap().max(now + 1);
            c.handle_timeout(now);
            while let Some(a) = c.poll() {
                given_up += usize::from(matches!(a, Action::GiveUp { .. }));
            }
        }
        assert_eq!(given_up, 5, "no task is stranded in the queue");
        assert_eq!(c.open_tasks(), 0);
    }

    #[test]
    fn probation_canaries_go_out_together() {
        let mut c = Coordinator::new(SecurityConfig {
            min_trusted: 1,
            ..Default::default()
        })
        .unwrap();
        join_all(&mut c, 1000);
        let mut canaries = 0;
        answer_all(&mut c, 0, &mut canaries);
        for t in 0..12 {
            c.handle(5, Event::TaskSubmitted(spec(t))).unwrap();
        }
        answer_all(&mut c, 10, &mut canaries);
        let trusted: Vec<PeerId> = c
            .reputation()
            .peers()
            .filter(|(_, r)| r.state == PeerState::Trusted)
            .map(|(p, _)| *p)
            .collect();
        assert!(!trusted.is_empty());
        // The next tasks draw trusted primaries: each gets its probation
        // canaries in one go, before any solo real work.
        let mut sent: HashMap<PeerId, u32> = HashMap::new();
        for t in 12..40 {
            c.handle(20, Event::TaskSubmitted(spec(t))).unwrap();
            while let Some(a) = c.poll() {
                if let Action::Dispatch { peer, job, .. } = a
                    && job.input_hash.0[0] == 0xCA
                {
                    *sent.entry(peer).or_default() += 1;
                }
            }
        }
        let owed = c.config().probation_canaries;
        assert!(!sent.is_empty());
        assert!(sent.values().all(|&n| n == owed), "{sent:?}");
    }

    #[test]
    fn trials_prefer_newcomers_from_uncrowded_prefixes() {
        let mut c = Coordinator::new(SecurityConfig {
            layers: LayerSet::ALL.without(Layer::Deception),
            ..Default::default()
        })
        .unwrap();
        // 250 identities packed into 32 prefixes, 750 each in their own.
        for i in 0..1000u64 {
            let region = if i < 250 {
                Region(i as u32 % 32)
            } else {
                Region(i as u32)
            };
            c.handle(
                0,
                Event::PeerJoined {
                    peer: PeerId::from_u64(i),
                    region,
                    advertised_fuel_per_ms: 1000,
                },
            )
            .unwrap();
        }
        for t in 0..12 {
            c.handle(5, Event::TaskSubmitted(spec(t))).unwrap();
        }
        let per = drain_dispatches(&mut c);
        let crowded: u32 = (0..250).filter_map(|i| per.get(&PeerId::from_u64(i))).sum();
        let all: u32 = per.values().sum();
        // Uniform draws would give a quarter of the jobs to the crowd.
        assert!(
            crowded * 20 < all,
            "{crowded} of {all} jobs to crowded prefixes"
        );
    }

    #[test]
    fn one_lie_caught_on_a_trusted_peer_lifts_every_trusted_rate_above_the_floor_for_a_while() {
        let cfg = SecurityConfig {
            min_trusted: 1,
            placement: PlacementConfig {
                // Straight to the floor after probation, to see the lift.
                spot_check_initial: 0.01,
                ..Default::default()
            },
            ..Default::default()
        };
        let floor = cfg.placement.spot_check_floor;
        let mut c = Coordinator::new(cfg).unwrap();
        join_all(&mut c, 200);
        let mut canaries = 0;
        answer_all(&mut c, 0, &mut canaries);
        for t in 0..15 {
            c.handle(5, Event::TaskSubmitted(spec(t))).unwrap();
        }
        answer_all(&mut c, 10, &mut canaries);
        let trusted = |c: &Coordinator| -> Vec<PeerId> {
            c.reputation()
                .peers()
                .filter(|(_, r)| r.state == PeerState::Trusted)
                .map(|(p, _)| *p)
                .collect()
        };
        let ts = trusted(&c);
        assert!(ts.len() >= 3, "{} trusted", ts.len());
        let liar = ts[0];
        // The next tasks send probation canaries; the liar fails its own.
        let mut t = 15;
        let mut now = 20;
        while c.alarm(now) == 0.0 && t < 400 {
            c.handle(now, Event::TaskSubmitted(spec(t))).unwrap();
            answer_all_but(&mut c, now, &mut canaries, Some(liar));
            t += 1;
            now += 1;
        }
        assert!(c.alarm(now) > 0.9, "alarm {}", c.alarm(now));
        assert_ne!(
            c.reputation().peer(&liar).unwrap().state,
            PeerState::Trusted
        );
        // Every trusted peer past probation now faces more than the floor...
        let honest: Vec<PeerId> = trusted(&c)
            .into_iter()
            .filter(|p| c.reputation().peer(p).unwrap().checks_passed >= 2)
            .collect();
        assert!(!honest.is_empty());
        for p in &honest {
            let r = c.spot_check_rate(p).unwrap();
            assert!(r > floor * 1.4, "{r}");
        }
        // ...and back at the floor once the alarm has decayed (no more lies).
        let later = now + 3 * c.config().alarm_half_life_ms;
        assert!(c.alarm(later) < c.config().alarm_free);
        c.handle_timeout(later);
        for p in &honest {
            assert_eq!(c.spot_check_rate(p), Some(floor));
        }
    }
}
