//! Per-peer reputation: evidence in, trust state out.
//!
//! A beta-reputation: agreements and disagreements with accepted results are
//! counted, weighted by recency (exponential decay with a half-life), on top
//! of a pessimistic prior so a fresh identity starts with little weight.
//! Timeouts and protocol violations add weighted disagreement. State moves
//! between [`PeerState`]s by the rules below; every move and every piece of
//! negative evidence is recorded with its [`Reason`] in a bounded list.
//!
//! The quarantine threshold is not a constant: it is recomputed on a timer
//! from the network's median error rate (see [`Reputation::handle_timeout`]),
//! so a network with flaky honest hosts does not quarantine them, and a
//! clean network quarantines sooner. The median is used because attackers
//! below half the population cannot move it.

use std::collections::{HashMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::error::SecurityError;
use crate::ids::{Millis, PeerId, Region, TaskId};
use crate::report::{TrustReport, TrustReportVerifier};

/// Where a peer stands. Only `Newcomer` and `Trusted` peers receive real work.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PeerState {
    /// Unproven: low quorum weight, always replicated, small tasks only.
    Newcomer,
    /// Proven by a run of verified results: may run work unreplicated,
    /// subject to hidden spot checks.
    Trusted,
    /// Evidence against it is accumulating: it is sent only decoys and
    /// canaries (never real work or data) and is not told.
    Suspect,
    /// Judged faulty or malicious: no work at all until an operator releases it.
    Quarantined,
}

/// How a dispatched job failed without producing a result.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailureKind {
    /// No answer before the deadline. Nobody knows whether it ran.
    Timeout,
    /// The host reported an error (trap, out of fuel, crash).
    Error,
    /// The host declined the job.
    Refused,
}

/// Which receipt field did not match the dispatched job.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BindingField {
    /// The job id quoted back is not the one dispatched.
    Job,
    /// The module hash differs.
    Module,
    /// The input hash differs.
    Input,
    /// The receipt is signed by a different host than the one dispatched to.
    Host,
}

/// A provable misbehaviour, stronger evidence than a disagreement.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
#[serde(tag = "violation", rename_all = "kebab-case")]
pub enum Violation {
    /// The receipt does not bind the job that was dispatched (layer 2).
    Binding {
        /// The mismatching field.
        field: BindingField,
    },
    /// Fuel differs from the quorum's or the canary's known fuel (layer 5).
    /// Fuel is deterministic, so this is tampering or over-billing.
    Fuel {
        /// What the receipt claimed.
        claimed: u64,
        /// What the reference says.
        reference: u64,
    },
    /// Peak memory differs from the reference (layer 5).
    Memory {
        /// What the receipt claimed.
        claimed: u64,
        /// What the reference says.
        reference: u64,
    },
    /// The claimed fuel could not be burnt in the claimed wall time at the
    /// host's advertised speed (layer 5).
    WallTime {
        /// Claimed fuel.
        fuel: u64,
        /// Claimed wall time.
        wall_ms: u64,
    },
    /// It accused `subject` of a wrong output, and re-running the task gave
    /// the very output the accused receipt shows: a false accusation, signed
    /// by its author, so it is proof (a slanderer's, or a broken reporter's).
    FalseAccusation {
        /// Whom it accused.
        subject: PeerId,
    },
    /// Any other protocol violation the host observed (malformed message,
    /// bad signature on a receipt, ...).
    Protocol {
        /// Human-readable detail from the host.
        detail: String,
    },
}

/// A behaviour metric watched by the monitor (layer 4).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Metric {
    /// Dispatch-to-result latency in ms.
    Latency,
    /// Fraction of jobs that failed (timeouts and errors).
    ErrorRate,
    /// Fraction of jobs refused.
    RefusalRate,
    /// Messages per second received from the peer.
    MessageRate,
    /// Observed speed (fuel per ms) divided by the advertised speed.
    SpeedRatio,
}

/// One piece of evidence about a peer, as the caller (usually the
/// [`Coordinator`](crate::Coordinator)) reports it.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
#[serde(tag = "evidence", rename_all = "kebab-case")]
pub enum Evidence {
    /// Its result matched the accepted result of a replicated task.
    Agreed {
        /// The task.
        task: TaskId,
    },
    /// Its result differed from the accepted result.
    Disagreed {
        /// The task.
        task: TaskId,
    },
    /// Its result differed from an accepted result that no trusted peer
    /// backed (bootstrap, newcomers only). Half a disagreement and no
    /// suspicion: being outvoted by equally unproven peers is weak evidence.
    Outvoted {
        /// The task.
        task: TaskId,
    },
    /// It passed a hidden check (canary or audit). Counts as an agreement and
    /// lowers its future spot-check rate.
    CheckPassed,
    /// It failed a canary: its answer differs from one known in advance.
    CanaryFailed,
    /// Another submitter accused it with its own signed receipt, and
    /// re-running that task here gave a different output. Weighs like a
    /// failed canary and costs a trusted peer its trust (its work is
    /// replicated again and it must pass probation anew), but does not make
    /// it a suspect: one wrong output is what a hardware fault gives too,
    /// and twenty submitters each feeding it decoys for one fault would cost
    /// more than the fault.
    ProvenWrong,
    /// A job failed without a result.
    Failed {
        /// How.
        kind: FailureKind,
    },
    /// A provable violation.
    Violation(Violation),
    /// Output right but counters differ from the quorum's reference. Weighs
    /// like a disagreement, not a violation: the reference came from a vote,
    /// which at bootstrap may be wrong, so an honest peer must not be
    /// quarantined on one such verdict.
    CountersDisputed(Violation),
    /// The monitor flagged an anomaly on this metric.
    Anomaly {
        /// Which metric.
        metric: Metric,
        /// How far out it was, in robust standard deviations.
        score: f64,
    },
}

/// The rule that moved a peer between states.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rule {
    /// Enough consecutive verified results at a good score.
    ConsecutiveValid,
    /// Negative evidence (disagreement, failed canary, violation, anomaly).
    NegativeEvidence,
    /// Its score fell below the trust level.
    ScoreFell,
    /// The lower confidence bound of its error rate exceeds the adaptive threshold.
    ErrorRateAboveThreshold,
    /// A suspect passed enough decoy checks in a row.
    ChecksPassed,
    /// An operator decision via [`Reputation::release`].
    Operator,
}

/// Why something happened to a peer: kept so a host can show it later.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "kebab-case")]
pub enum Reason {
    /// First seen.
    Joined,
    /// Evidence recorded.
    Evidence(Evidence),
    /// A trust report about it was applied.
    Report {
        /// Who reported.
        reporter: PeerId,
        /// The weight it was given.
        weight: f64,
    },
    /// It changed state.
    State {
        /// Previous state.
        from: PeerState,
        /// New state.
        to: PeerState,
        /// The rule that fired.
        rule: Rule,
        /// Error-rate lower bound at the time (for threshold decisions).
        error_lower: f64,
        /// Quarantine threshold at the time.
        threshold: f64,
    },
}

/// A reason with the time it was recorded.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct ReasonEntry {
    /// When.
    pub at: Millis,
    /// What.
    pub reason: Reason,
}

/// A state change, emitted by [`Reputation::poll`] so the caller can act
/// (stop dispatching, log, persist).
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct StateChange {
    /// The peer.
    pub peer: PeerId,
    /// Previous state.
    pub from: PeerState,
    /// New state.
    pub to: PeerState,
    /// The rule that fired.
    pub rule: Rule,
    /// When.
    pub at: Millis,
}

/// Everything known about one peer. Serialisable so the host can persist
/// and display it.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct PeerRecord {
    /// Its address region.
    pub region: Region,
    /// Advertised speed in fuel per ms, used by the thermal wall-time check.
    pub advertised_fuel_per_ms: u64,
    /// Current state.
    pub state: PeerState,
    /// When it joined.
    pub joined_at: Millis,
    /// When evidence was last applied (decay reference point).
    pub last_update: Millis,
    /// Decayed count of verified agreements.
    pub agree: f64,
    /// Decayed weighted count of disagreements, failures and violations.
    pub disagree: f64,
    /// Decayed positive evidence from trust reports.
    pub indirect_agree: f64,
    /// Decayed negative evidence from trust reports.
    pub indirect_disagree: f64,
    /// Lifetime verified agreements (not decayed).
    pub verified: u64,
    /// Lifetime disagreements and failed canaries.
    pub wrong: u64,
    /// Lifetime failures (timeouts, errors, refusals).
    pub failures: u64,
    /// Lifetime provable violations.
    pub violations: u64,
    /// Verified results since the last negative evidence.
    pub consecutive_valid: u32,
    /// Hidden checks passed while trusted; drives the spot-check rate down.
    pub checks_passed: u32,
    /// Checks passed in a row while suspect.
    pub suspect_passes: u32,
    /// Whether the peer is currently connected.
    pub online: bool,
    /// Last accepted trust-report sequence from this peer as reporter.
    pub last_report_seq: Option<u64>,
    /// The most recent reasons, oldest first, bounded by
    /// [`ReputationConfig::max_reasons`].
    pub reasons: VecDeque<ReasonEntry>,
    /// Index in the dispatch list for its state (internal bookkeeping).
    slot: Option<usize>,
    /// Whether it is counted in the online-trusted total (internal).
    counted_trusted: bool,
}

impl PeerRecord {
    /// Direct evidence mass (decayed agreements plus disagreements).
    pub fn evidence(&self) -> f64 {
        self.agree + self.disagree
    }

    /// Point estimate of the error rate from direct evidence.
    pub fn error_rate(&self) -> f64 {
        let n = self.evidence();
        if n <= 0.0 { 0.0 } else { self.disagree / n }
    }
}

/// Tuning for [`Reputation`]. Defaults are chosen for the Byzantine benchmark
/// (1000 hosts) and documented with what they cost.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReputationConfig {
    /// Beta prior pseudo-agreements. With `prior_disagree` it sets a
    /// newcomer's score: 1/(1+3) = 0.25, i.e. cautious.
    pub prior_agree: f64,
    /// Beta prior pseudo-disagreements. Larger = slower to trust.
    pub prior_disagree: f64,
    /// Half-life of evidence in ms. Shorter reacts faster to a sleeper but
    /// forgets good records sooner. Default: 6 hours.
    pub half_life_ms: u64,
    /// Disagreement weight of a timeout/error/refusal. Small, because honest
    /// hosts fail too; the monitor watches failure rates instead.
    pub failure_weight: f64,
    /// Disagreement weight of a failed canary (the answer was known).
    pub canary_weight: f64,
    /// Disagreement weight of a provable violation.
    pub violation_weight: f64,
    /// Quorum weight cap for newcomers, whatever reports say. This is the
    /// Sybil bound: a fresh identity never weighs more than this.
    pub newcomer_weight: f64,
    /// Consecutive verified results needed to become trusted (BOINC uses 10).
    pub trust_after: u32,
    /// Minimum score to be or stay trusted. Must exceed `newcomer_weight`.
    pub trust_score: f64,
    /// Checks a suspect must pass in a row to go back to newcomer.
    pub release_after: u32,
    /// Minimum direct evidence before the error-rate rule may quarantine.
    pub min_evidence: f64,
    /// Wrong outputs (disagreements, failed canaries, proven-wrong
    /// accusations) a peer must have returned before the error-rate rule may
    /// quarantine it, unless it committed a provable violation. Honest
    /// hardware faults (~0.1%) give a host 4 wrong outputs in a few hundred
    /// jobs with odds near 1e-4; an attacker lying on decoys gets there in 4.
    pub min_wrong: u64,
    /// z for the Wilson lower bound: higher = fewer false quarantines, slower.
    pub z: f64,
    /// Adaptive threshold = clamp(base + multiplier * network median error rate).
    pub threshold_base: f64,
    /// See `threshold_base`.
    pub threshold_multiplier: f64,
    /// Lower clamp of the adaptive threshold.
    pub threshold_min: f64,
    /// Upper clamp of the adaptive threshold.
    pub threshold_max: f64,
    /// How often the threshold is recomputed (a timer). Default 1 s.
    pub recalibrate_ms: u64,
    /// Reasons kept per peer.
    pub max_reasons: usize,
    /// Peers kept. When full, the least recently updated offline or
    /// quarantined peer is evicted; if none, joins are refused.
    pub max_peers: usize,
    /// Scale applied to a report's weight (reporter trust times this).
    pub report_weight: f64,
    /// Further factor when the receiver has direct evidence on the subject:
    /// first-hand evidence beats hearsay.
    pub direct_discount: f64,
    /// Evidence units one report can carry at most.
    pub max_report_evidence: f64,
    /// Cap on total indirect evidence per peer, so hearsay never dominates.
    pub max_indirect: f64,
}

impl Default for ReputationConfig {
    fn default() -> Self {
        Self {
            prior_agree: 1.0,
            prior_disagree: 3.0,
            half_life_ms: 6 * 3600 * 1000,
            failure_weight: 0.1,
            canary_weight: 2.0,
            violation_weight: 5.0,
            newcomer_weight: 0.25,
            trust_after: 10,
            trust_score: 0.6,
            release_after: 3,
            min_evidence: 5.0,
            min_wrong: 4,
            z: 2.0,
            threshold_base: 0.1,
            threshold_multiplier: 3.0,
            threshold_min: 0.1,
            threshold_max: 0.5,
            recalibrate_ms: 1000,
            max_reasons: 16,
            max_peers: 100_000,
            report_weight: 0.5,
            direct_discount: 0.2,
            max_report_evidence: 5.0,
            max_indirect: 10.0,
        }
    }
}

impl ReputationConfig {
    /// Checks ranges; returns the first problem found.
    pub fn validate(&self) -> Result<(), SecurityError> {
        fn bad(field: &'static str, value: impl ToString, why: &'static str) -> SecurityError {
            SecurityError::InvalidConfig {
                field,
                value: value.to_string(),
                why,
            }
        }
        if self.prior_agree <= 0.0 || self.prior_disagree <= 0.0 {
            return Err(bad(
                "prior_agree/prior_disagree",
                self.prior_agree,
                "priors must be > 0",
            ));
        }
        if !(0.0..1.0).contains(&self.newcomer_weight) {
            return Err(bad(
                "newcomer_weight",
                self.newcomer_weight,
                "must be in [0, 1)",
            ));
        }
        if !(self.trust_score > self.newcomer_weight && self.trust_score < 1.0) {
            return Err(bad(
                "trust_score",
                self.trust_score,
                "must be in (newcomer_weight, 1) so a newcomer never outranks a trusted peer",
            ));
        }
        if self.half_life_ms == 0 {
            return Err(bad("half_life_ms", self.half_life_ms, "must be > 0"));
        }
        if !(self.threshold_min > 0.0
            && self.threshold_min <= self.threshold_max
            && self.threshold_max < 1.0)
        {
            return Err(bad(
                "threshold_min",
                self.threshold_min,
                "need 0 < min <= max < 1",
            ));
        }
        if self.max_reasons == 0 || self.max_peers == 0 {
            return Err(bad("max_peers/max_reasons", self.max_peers, "must be > 0"));
        }
        if self.recalibrate_ms == 0 {
            return Err(bad("recalibrate_ms", self.recalibrate_ms, "must be > 0"));
        }
        Ok(())
    }
}

/// Wilson score lower bound for `k` failures out of `n` (both may be
/// fractional after decay). Conservative: small samples give low bounds, so
/// a peer is never quarantined on one unlucky event.
pub fn wilson_lower(k: f64, n: f64, z: f64) -> f64 {
    if n <= 0.0 {
        return 0.0;
    }
    let p = (k / n).clamp(0.0, 1.0);
    let z2 = z * z;
    let denom = 1.0 + z2 / n;
    let centre = p + z2 / (2.0 * n);
    let margin = z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    ((centre - margin) / denom).max(0.0)
}

/// The reputation table: a sans-IO state machine.
///
/// Feed it with [`Reputation::join`], [`Reputation::record`],
/// [`Reputation::apply_report`] and [`Reputation::handle_timeout`] (when
/// `now >= poll_timeout()`); drain [`Reputation::poll`] for state changes
/// after each call. It never reads a clock.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Reputation {
    config: ReputationConfig,
    peers: HashMap<PeerId, PeerRecord>,
    /// Newcomer and trusted online peers: candidates for real work.
    workers: Vec<PeerId>,
    /// Suspect online peers: candidates for decoys only.
    suspects: Vec<PeerId>,
    /// Online trusted peers (kept with the lists).
    trusted: usize,
    threshold: f64,
    network_error_rate: f64,
    next_recalibration: Millis,
    #[serde(skip)]
    changes: VecDeque<StateChange>,
}

enum List {
    Workers,
    Suspects,
}

impl Reputation {
    /// An empty table. Fails if the config is out of range.
    pub fn new(config: ReputationConfig) -> Result<Self, SecurityError> {
        config.validate()?;
        let threshold = config
            .threshold_base
            .clamp(config.threshold_min, config.threshold_max);
        Ok(Self {
            next_recalibration: config.recalibrate_ms,
            config,
            peers: HashMap::new(),
            workers: Vec::new(),
            suspects: Vec::new(),
            trusted: 0,
            threshold,
            network_error_rate: 0.0,
            changes: VecDeque::new(),
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> &ReputationConfig {
        &self.config
    }

    /// The current adaptive quarantine threshold on the error-rate lower bound.
    pub fn threshold(&self) -> f64 {
        self.threshold
    }

    /// The network's median error rate at the last recalibration.
    pub fn network_error_rate(&self) -> f64 {
        self.network_error_rate
    }

    /// A peer's record.
    pub fn peer(&self, peer: &PeerId) -> Option<&PeerRecord> {
        self.peers.get(peer)
    }

    /// All records (e.g. for display).
    pub fn peers(&self) -> impl Iterator<Item = (&PeerId, &PeerRecord)> {
        self.peers.iter()
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    /// Online newcomer and trusted peers, in no meaningful order; placement
    /// samples from this.
    pub fn workers(&self) -> &[PeerId] {
        &self.workers
    }

    /// Online trusted peers.
    pub fn trusted_count(&self) -> usize {
        self.trusted
    }

    /// Online suspects; the decoy stream samples from this.
    pub fn suspects(&self) -> &[PeerId] {
        &self.suspects
    }

    /// Beta-mean score in (0, 1): (agree + prior) / (all evidence + priors),
    /// including capped indirect evidence.
    pub fn score(&self, peer: &PeerId) -> f64 {
        self.peers.get(peer).map_or(0.0, |r| self.score_of(r))
    }

    fn score_of(&self, r: &PeerRecord) -> f64 {
        let c = &self.config;
        let a = r.agree + r.indirect_agree + c.prior_agree;
        let d = r.disagree + r.indirect_disagree + c.prior_disagree;
        a / (a + d)
    }

    /// Quorum weight: the score, capped at `newcomer_weight` for newcomers
    /// (so a new identity buys nothing) and zero for suspects and
    /// quarantined peers (who never vote on real work).
    pub fn weight(&self, peer: &PeerId) -> f64 {
        let Some(r) = self.peers.get(peer) else {
            return 0.0;
        };
        match r.state {
            PeerState::Newcomer => self.score_of(r).min(self.config.newcomer_weight),
            PeerState::Trusted => self.score_of(r),
            PeerState::Suspect | PeerState::Quarantined => 0.0,
        }
    }

    /// Wilson lower bound of the peer's direct error rate.
    pub fn error_lower(&self, peer: &PeerId) -> f64 {
        self.peers.get(peer).map_or(0.0, |r| {
            wilson_lower(r.disagree, r.evidence(), self.config.z)
        })
    }

    /// A peer connects (or reconnects). A new identity starts as a newcomer;
    /// a known one keeps its record, so leaving and rejoining under the same
    /// key launders nothing.
    pub fn join(
        &mut self,
        now: Millis,
        peer: PeerId,
        region: Region,
        advertised_fuel_per_ms: u64,
    ) -> Result<(), SecurityError> {
        if let Some(r) = self.peers.get_mut(&peer) {
            if r.online {
                return Err(SecurityError::DuplicatePeer(peer));
            }
            r.online = true;
            r.region = region;
            r.advertised_fuel_per_ms = advertised_fuel_per_ms;
            self.relist(&peer);
            return Ok(());
        }
        if self.peers.len() >= self.config.max_peers {
            self.evict_one()?;
        }
        let mut rec = PeerRecord {
            region,
            advertised_fuel_per_ms,
            state: PeerState::Newcomer,
            joined_at: now,
            last_update: now,
            agree: 0.0,
            disagree: 0.0,
            indirect_agree: 0.0,
            indirect_disagree: 0.0,
            verified: 0,
            wrong: 0,
            failures: 0,
            violations: 0,
            consecutive_valid: 0,
            checks_passed: 0,
            suspect_passes: 0,
            online: true,
            last_report_seq: None,
            reasons: VecDeque::new(),
            slot: None,
            counted_trusted: false,
        };
        rec.reasons.push_back(ReasonEntry {
            at: now,
            reason: Reason::Joined,
        });
        self.peers.insert(peer, rec);
        self.relist(&peer);
        Ok(())
    }

    /// A peer disconnected: it keeps its record but receives no work.
    pub fn leave(&mut self, peer: &PeerId) -> Result<(), SecurityError> {
        let r = self
            .peers
            .get_mut(peer)
            .ok_or(SecurityError::UnknownPeer(*peer))?;
        r.online = false;
        self.relist(peer);
        Ok(())
    }

    /// Operator override: lift a quarantine (or suspicion). The peer restarts
    /// as a newcomer with its evidence intact, so a repeat offender is
    /// re-quarantined quickly.
    pub fn release(&mut self, now: Millis, peer: &PeerId) -> Result<(), SecurityError> {
        let state = self
            .peers
            .get(peer)
            .ok_or(SecurityError::UnknownPeer(*peer))?
            .state;
        if matches!(state, PeerState::Quarantined | PeerState::Suspect) {
            let r = self.peers.get_mut(peer).expect("checked above");
            r.disagree = 0.0;
            r.consecutive_valid = 0;
            self.transition(now, *peer, PeerState::Newcomer, Rule::Operator);
        }
        Ok(())
    }

    fn evict_one(&mut self) -> Result<(), SecurityError> {
        let victim = self
            .peers
            .iter()
            .filter(|(_, r)| !r.online || r.state == PeerState::Quarantined)
            .min_by_key(|(id, r)| (r.last_update, **id))
            .map(|(id, _)| *id);
        match victim {
            Some(id) => {
                self.unlist(&id);
                self.peers.remove(&id);
                Ok(())
            }
            None => Err(SecurityError::TableFull {
                table: "peer",
                capacity: self.config.max_peers,
            }),
        }
    }

    fn list_for(r: &PeerRecord) -> Option<List> {
        if !r.online {
            return None;
        }
        match r.state {
            PeerState::Newcomer | PeerState::Trusted => Some(List::Workers),
            PeerState::Suspect => Some(List::Suspects),
            PeerState::Quarantined => None,
        }
    }

    fn unlist(&mut self, peer: &PeerId) {
        let Some(r) = self.peers.get_mut(peer) else {
            return;
        };
        let Some(slot) = r.slot.take() else { return };
        if r.counted_trusted {
            r.counted_trusted = false;
            self.trusted -= 1;
        }
        let list = if self.workers.get(slot) == Some(peer) {
            &mut self.workers
        } else {
            &mut self.suspects
        };
        list.swap_remove(slot);
        if let Some(moved) = list.get(slot).copied()
            && let Some(m) = self.peers.get_mut(&moved)
        {
            m.slot = Some(slot);
        }
    }

    fn relist(&mut self, peer: &PeerId) {
        self.unlist(peer);
        let Some(r) = self.peers.get_mut(peer) else {
            return;
        };
        let list = match Self::list_for(r) {
            Some(List::Workers) => &mut self.workers,
            Some(List::Suspects) => &mut self.suspects,
            None => return,
        };
        r.slot = Some(list.len());
        list.push(*peer);
        if r.state == PeerState::Trusted {
            r.counted_trusted = true;
            self.trusted += 1;
        }
    }

    fn decay(config: &ReputationConfig, r: &mut PeerRecord, now: Millis) {
        if now > r.last_update {
            let dt = (now - r.last_update) as f64;
            let f = 0.5f64.powf(dt / config.half_life_ms as f64);
            r.agree *= f;
            r.disagree *= f;
            r.indirect_agree *= f;
            r.indirect_disagree *= f;
            r.last_update = now;
        }
    }

    fn push_reason(config: &ReputationConfig, r: &mut PeerRecord, at: Millis, reason: Reason) {
        if r.reasons.len() >= config.max_reasons {
            r.reasons.pop_front();
        }
        r.reasons.push_back(ReasonEntry { at, reason });
    }

    fn transition(&mut self, now: Millis, peer: PeerId, to: PeerState, rule: Rule) {
        let threshold = self.threshold;
        let z = self.config.z;
        let Some(r) = self.peers.get_mut(&peer) else {
            return;
        };
        let from = r.state;
        if from == to {
            return;
        }
        r.state = to;
        if to == PeerState::Suspect {
            r.suspect_passes = 0;
        }
        if to == PeerState::Trusted {
            r.checks_passed = 0;
        }
        let error_lower = wilson_lower(r.disagree, r.evidence(), z);
        Self::push_reason(
            &self.config,
            r,
            now,
            Reason::State {
                from,
                to,
                rule,
                error_lower,
                threshold,
            },
        );
        self.relist(&peer);
        self.changes.push_back(StateChange {
            peer,
            from,
            to,
            rule,
            at: now,
        });
    }

    /// Records one piece of evidence and applies the state rules:
    ///
    /// - newcomer → trusted after `trust_after` consecutive verified results
    ///   with score ≥ `trust_score`;
    /// - trusted → newcomer if the score falls below `trust_score`;
    /// - newcomer/trusted → suspect on any disagreement, failed canary,
    ///   violation or anomaly (a proven peer disagreeing is exactly what a
    ///   sleeper or stealth attacker looks like);
    /// - suspect → newcomer after `release_after` passed checks in a row;
    /// - any → quarantined when the Wilson lower bound of its error rate
    ///   exceeds the adaptive threshold (with at least `min_evidence`).
    pub fn record(
        &mut self,
        now: Millis,
        peer: &PeerId,
        evidence: Evidence,
    ) -> Result<(), SecurityError> {
        let c = self.config.clone();
        let r = self
            .peers
            .get_mut(peer)
            .ok_or(SecurityError::UnknownPeer(*peer))?;
        if r.state == PeerState::Quarantined {
            return Ok(());
        }
        Self::decay(&c, r, now);
        let mut negative = false;
        let mut demote = false;
        let mut passed_check = false;
        let mut log = true;
        match &evidence {
            Evidence::Agreed { .. } => {
                r.agree += 1.0;
                r.verified += 1;
                r.consecutive_valid += 1;
                // Routine agreements are counted, not listed, so the bounded
                // list keeps the decisions worth showing.
                log = false;
            }
            Evidence::CheckPassed => {
                r.agree += 1.0;
                r.verified += 1;
                r.consecutive_valid += 1;
                passed_check = true;
            }
            Evidence::Disagreed { .. } => {
                r.disagree += 1.0;
                r.wrong += 1;
                r.consecutive_valid = 0;
                negative = true;
            }
            Evidence::Outvoted { .. } => {
                r.disagree += 0.5;
                r.wrong += 1;
                r.consecutive_valid = 0;
            }
            Evidence::CanaryFailed => {
                r.disagree += c.canary_weight;
                r.wrong += 1;
                r.consecutive_valid = 0;
                negative = true;
            }
            Evidence::ProvenWrong => {
                r.disagree += c.canary_weight;
                r.wrong += 1;
                r.consecutive_valid = 0;
                demote = true;
            }
            Evidence::Failed { .. } => {
                r.disagree += c.failure_weight;
                r.failures += 1;
            }
            Evidence::CountersDisputed(_) => {
                r.disagree += 1.0;
                r.violations += 1;
                r.consecutive_valid = 0;
                negative = true;
            }
            Evidence::Violation(_) => {
                r.disagree += c.violation_weight;
                r.violations += 1;
                r.consecutive_valid = 0;
                negative = true;
            }
            Evidence::Anomaly { .. } => {
                negative = true;
            }
        }
        if log {
            Self::push_reason(&c, r, now, Reason::Evidence(evidence));
        }
        let state = r.state;
        let lower = wilson_lower(r.disagree, r.evidence(), c.z);
        let quarantine = r.evidence() >= c.min_evidence
            && lower > self.threshold
            && (r.wrong >= c.min_wrong || r.violations > 0);
        let consecutive = r.consecutive_valid;
        if passed_check {
            match state {
                PeerState::Trusted => r.checks_passed = r.checks_passed.saturating_add(1),
                PeerState::Suspect => r.suspect_passes += 1,
                _ => {}
            }
        }
        let suspect_passes = r.suspect_passes;
        let score = self.score_of(&self.peers[peer]);
        if quarantine {
            self.transition(
                now,
                *peer,
                PeerState::Quarantined,
                Rule::ErrorRateAboveThreshold,
            );
            return Ok(());
        }
        match state {
            PeerState::Newcomer | PeerState::Trusted if negative => {
                self.transition(now, *peer, PeerState::Suspect, Rule::NegativeEvidence);
            }
            PeerState::Trusted if demote => {
                self.transition(now, *peer, PeerState::Newcomer, Rule::NegativeEvidence);
            }
            PeerState::Newcomer if consecutive >= c.trust_after && score >= c.trust_score => {
                self.transition(now, *peer, PeerState::Trusted, Rule::ConsecutiveValid);
            }
            PeerState::Trusted if score < c.trust_score => {
                self.transition(now, *peer, PeerState::Newcomer, Rule::ScoreFell);
            }
            PeerState::Suspect if suspect_passes >= c.release_after && lower <= self.threshold => {
                self.transition(now, *peer, PeerState::Newcomer, Rule::ChecksPassed);
            }
            _ => {}
        }
        Ok(())
    }

    /// Applies a signed trust report. The caller's `verifier` checks the
    /// signature over [`TrustReport::signing_bytes`]. The report's weight is
    /// the reporter's own score times `report_weight`, further multiplied by
    /// `direct_discount` when this node already has direct evidence on the
    /// subject. Reports move scores only, never states: states need direct
    /// evidence, so colluding reporters cannot vouch a Sybil into trust.
    /// Returns the weight applied.
    pub fn apply_report(
        &mut self,
        now: Millis,
        report: &TrustReport,
        signature: &[u8],
        verifier: &dyn TrustReportVerifier,
    ) -> Result<f64, SecurityError> {
        if report.reporter == report.subject {
            return Err(SecurityError::SelfReport(report.reporter));
        }
        let reporter = self
            .peers
            .get(&report.reporter)
            .ok_or(SecurityError::UnknownPeer(report.reporter))?;
        if !self.peers.contains_key(&report.subject) {
            return Err(SecurityError::UnknownPeer(report.subject));
        }
        if let Some(last) = reporter.last_report_seq
            && report.sequence <= last
        {
            return Err(SecurityError::StaleReport {
                reporter: report.reporter,
                sequence: report.sequence,
                last,
            });
        }
        if !verifier.verify(&report.reporter, &report.signing_bytes(), signature) {
            return Err(SecurityError::BadSignature(report.reporter));
        }
        let reporter_weight = match reporter.state {
            PeerState::Newcomer | PeerState::Trusted => self.score_of(reporter),
            PeerState::Suspect | PeerState::Quarantined => 0.0,
        };
        let c = self.config.clone();
        self.peers
            .get_mut(&report.reporter)
            .expect("checked")
            .last_report_seq = Some(report.sequence);
        let subject = self.peers.get_mut(&report.subject).expect("checked");
        Self::decay(&c, subject, now);
        let mut weight = reporter_weight * c.report_weight;
        if subject.evidence() > 0.0 {
            weight *= c.direct_discount;
        }
        let total = (report.agreements + report.disagreements) as f64;
        if total > 0.0 && weight > 0.0 {
            let scale = weight * (c.max_report_evidence / total).min(1.0);
            subject.indirect_agree += report.agreements as f64 * scale;
            subject.indirect_disagree += report.disagreements as f64 * scale;
            let ind = subject.indirect_agree + subject.indirect_disagree;
            if ind > c.max_indirect {
                let s = c.max_indirect / ind;
                subject.indirect_agree *= s;
                subject.indirect_disagree *= s;
            }
        }
        Self::push_reason(
            &c,
            subject,
            now,
            Reason::Report {
                reporter: report.reporter,
                weight,
            },
        );
        // A falling score may demote a trusted subject (never promote).
        if subject.state == PeerState::Trusted {
            let score = self.score_of(&self.peers[&report.subject]);
            if score < c.trust_score {
                self.transition(now, report.subject, PeerState::Newcomer, Rule::ScoreFell);
            }
        }
        Ok(weight)
    }

    /// Puts a peer under suspicion without new counted evidence (e.g. the
    /// monitor's verdict was already recorded as `Evidence::Anomaly`).
    pub fn suspect(&mut self, now: Millis, peer: &PeerId) -> Result<(), SecurityError> {
        let r = self
            .peers
            .get(peer)
            .ok_or(SecurityError::UnknownPeer(*peer))?;
        if matches!(r.state, PeerState::Newcomer | PeerState::Trusted) {
            self.transition(now, *peer, PeerState::Suspect, Rule::NegativeEvidence);
        }
        Ok(())
    }

    /// When [`Reputation::handle_timeout`] wants to run next (threshold recalibration).
    pub fn poll_timeout(&self) -> Option<Millis> {
        Some(self.next_recalibration)
    }

    /// Recomputes the adaptive threshold from the median error rate of peers
    /// with enough evidence, then re-checks suspects against it.
    pub fn handle_timeout(&mut self, now: Millis) {
        if now < self.next_recalibration {
            return;
        }
        self.next_recalibration = now + self.config.recalibrate_ms;
        let mut rates: Vec<f64> = self
            .peers
            .values()
            .filter(|r| {
                r.state != PeerState::Quarantined && r.evidence() >= self.config.min_evidence
            })
            .map(PeerRecord::error_rate)
            .collect();
        if rates.is_empty() {
            return;
        }
        let mid = rates.len() / 2;
        let (_, median, _) = rates.select_nth_unstable_by(mid, f64::total_cmp);
        self.network_error_rate = *median;
        let c = &self.config;
        self.threshold = (c.threshold_base + c.threshold_multiplier * self.network_error_rate)
            .clamp(c.threshold_min, c.threshold_max);
    }

    /// The next state change, if any. Drain after every input.
    pub fn poll(&mut self) -> Option<StateChange> {
        self.changes.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::TrustReport;
    use proptest::prelude::*;

    fn table() -> Reputation {
        Reputation::new(ReputationConfig::default()).unwrap()
    }

    fn p(n: u64) -> PeerId {
        PeerId::from_u64(n)
    }

    struct Accept;
    impl TrustReportVerifier for Accept {
        fn verify(&self, _: &PeerId, _: &[u8], sig: &[u8]) -> bool {
            sig == b"ok"
        }
    }

    #[test]
    fn newcomer_is_cautious_and_earns_trust() {
        let mut t = table();
        t.join(0, p(1), Region(1), 1000).unwrap();
        assert_eq!(t.peer(&p(1)).unwrap().state, PeerState::Newcomer);
        assert!((t.weight(&p(1)) - 0.25).abs() < 1e-9);
        for i in 0..10 {
            t.record(i, &p(1), Evidence::Agreed { task: TaskId(i) })
                .unwrap();
        }
        assert_eq!(t.peer(&p(1)).unwrap().state, PeerState::Trusted);
        let ch = t.poll().unwrap();
        assert_eq!(
            (ch.from, ch.to, ch.rule),
            (
                PeerState::Newcomer,
                PeerState::Trusted,
                Rule::ConsecutiveValid
            )
        );
        assert!(t.weight(&p(1)) > 0.6);
    }

    #[test]
    fn trusted_disagreement_makes_suspect_then_quarantine() {
        let mut t = table();
        t.join(0, p(1), Region(1), 1000).unwrap();
        for i in 0..12 {
            t.record(i, &p(1), Evidence::Agreed { task: TaskId(i) })
                .unwrap();
        }
        t.record(20, &p(1), Evidence::Disagreed { task: TaskId(99) })
            .unwrap();
        assert_eq!(t.peer(&p(1)).unwrap().state, PeerState::Suspect);
        assert_eq!(t.weight(&p(1)), 0.0);
        for _ in 0..10 {
            t.record(30, &p(1), Evidence::CanaryFailed).unwrap();
        }
        assert_eq!(t.peer(&p(1)).unwrap().state, PeerState::Quarantined);
        let reasons = &t.peer(&p(1)).unwrap().reasons;
        assert!(reasons.len() <= 16);
        assert!(matches!(
            reasons.back().unwrap().reason,
            Reason::State {
                to: PeerState::Quarantined,
                rule: Rule::ErrorRateAboveThreshold,
                ..
            }
        ));
    }

    #[test]
    fn suspect_released_after_passing_checks() {
        let mut t = table();
        t.join(0, p(1), Region(1), 1000).unwrap();
        for i in 0..20 {
            t.record(i, &p(1), Evidence::Agreed { task: TaskId(i) })
                .unwrap();
        }
        t.record(20, &p(1), Evidence::Disagreed { task: TaskId(99) })
            .unwrap();
        for _ in 0..3 {
            t.record(21, &p(1), Evidence::CheckPassed).unwrap();
        }
        assert_eq!(t.peer(&p(1)).unwrap().state, PeerState::Newcomer);
    }

    #[test]
    fn threshold_adapts_to_network_error_rate() {
        let mut t = table();
        for n in 0..9 {
            t.join(0, p(n), Region(n as u32), 1000).unwrap();
            for i in 0..20 {
                t.record(1, &p(n), Evidence::Agreed { task: TaskId(i) })
                    .unwrap();
            }
        }
        t.handle_timeout(1000);
        let clean = t.threshold();
        // Now make most of the network flaky (e.g. a bad client release).
        for n in 0..9 {
            for _ in 0..3 {
                t.record(1001, &p(n), Evidence::Disagreed { task: TaskId(0) })
                    .unwrap();
            }
        }
        t.handle_timeout(2000);
        assert!(t.threshold() > clean, "{} vs {clean}", t.threshold());
        assert!(t.network_error_rate() > 0.1);
    }

    #[test]
    fn decay_forgets_old_evidence() {
        let mut t = table();
        t.join(0, p(1), Region(1), 1000).unwrap();
        for i in 0..8 {
            t.record(0, &p(1), Evidence::Agreed { task: TaskId(i) })
                .unwrap();
        }
        let half = t.config().half_life_ms;
        t.record(
            half,
            &p(1),
            Evidence::Failed {
                kind: FailureKind::Timeout,
            },
        )
        .unwrap();
        let r = t.peer(&p(1)).unwrap();
        assert!((r.agree - 4.0).abs() < 1e-9);
    }

    #[test]
    fn reports_weighted_by_reporter_and_discounted_by_direct_evidence() {
        let mut t = table();
        for n in 1..=3 {
            t.join(0, p(n), Region(n as u32), 1000).unwrap();
        }
        for i in 0..30 {
            t.record(0, &p(1), Evidence::Agreed { task: TaskId(i) })
                .unwrap();
        }
        let rep = |seq, subject| TrustReport {
            reporter: p(1),
            subject,
            agreements: 0,
            disagreements: 5,
            issued_at: 0,
            sequence: seq,
        };
        // p(2): no direct evidence -> full weight.
        let w_fresh = t.apply_report(1, &rep(1, p(2)), b"ok", &Accept).unwrap();
        // p(3): direct evidence -> discounted.
        t.record(1, &p(3), Evidence::Agreed { task: TaskId(0) })
            .unwrap();
        let w_direct = t.apply_report(1, &rep(2, p(3)), b"ok", &Accept).unwrap();
        assert!(w_direct < w_fresh);
        assert!((w_fresh - t.score(&p(1)) * 0.5).abs() < 1e-6);
        // Replay and bad signature are refused.
        assert!(matches!(
            t.apply_report(1, &rep(2, p(3)), b"ok", &Accept),
            Err(SecurityError::StaleReport { .. })
        ));
        assert!(matches!(
            t.apply_report(1, &rep(3, p(3)), b"no", &Accept),
            Err(SecurityError::BadSignature(_))
        ));
        // A newcomer's reports weigh less than a proven peer's.
        let w_newcomer = t
            .apply_report(
                1,
                &TrustReport {
                    reporter: p(2),
                    subject: p(3),
                    agreements: 5,
                    disagreements: 0,
                    issued_at: 0,
                    sequence: 1,
                },
                b"ok",
                &Accept,
            )
            .unwrap();
        assert!(w_newcomer < w_direct / t.config().direct_discount * 0.9);
        // Reports never promote.
        assert_eq!(t.peer(&p(2)).unwrap().state, PeerState::Newcomer);
    }

    #[test]
    fn state_round_trips_through_json() {
        let mut t = table();
        t.join(0, p(1), Region(1), 1000).unwrap();
        t.record(
            1,
            &p(1),
            Evidence::Violation(Violation::Fuel {
                claimed: 10,
                reference: 5,
            }),
        )
        .unwrap();
        let json = serde_json::to_string(&t).unwrap();
        let back: Reputation = serde_json::from_str(&json).unwrap();
        assert_eq!(back.peer(&p(1)), t.peer(&p(1)));
        assert!(
            json.contains("\"state\":\"quarantined\""),
            "one provable violation quarantines a newcomer"
        );
    }

    #[test]
    fn bounded_table_evicts_offline_first() {
        let mut t = Reputation::new(ReputationConfig {
            max_peers: 2,
            ..Default::default()
        })
        .unwrap();
        t.join(0, p(1), Region(1), 1).unwrap();
        t.join(0, p(2), Region(2), 1).unwrap();
        assert!(matches!(
            t.join(0, p(3), Region(3), 1),
            Err(SecurityError::TableFull { .. })
        ));
        t.leave(&p(1)).unwrap();
        t.join(0, p(3), Region(3), 1).unwrap();
        assert!(t.peer(&p(1)).is_none());
        assert_eq!(t.len(), 2);
    }

    fn arb_evidence() -> impl Strategy<Value = Evidence> {
        prop_oneof![
            4 => (0u64..100).prop_map(|t| Evidence::Agreed { task: TaskId(t) }),
            1 => (0u64..100).prop_map(|t| Evidence::Disagreed { task: TaskId(t) }),
            1 => Just(Evidence::CheckPassed),
            1 => Just(Evidence::CanaryFailed),
            1 => Just(Evidence::Failed { kind: FailureKind::Timeout }),
            1 => Just(Evidence::Violation(Violation::Protocol { detail: "x".into() })),
        ]
    }

    proptest! {
        #[test]
        fn scores_and_weights_bounded(evs in proptest::collection::vec((0u64..10_000, arb_evidence()), 0..200)) {
            let mut t = table();
            t.join(0, p(1), Region(1), 1).unwrap();
            let mut now = 0;
            for (dt, e) in evs {
                now += dt;
                t.record(now, &p(1), e).unwrap();
                let s = t.score(&p(1));
                prop_assert!(s > 0.0 && s < 1.0);
                let w = t.weight(&p(1));
                prop_assert!((0.0..1.0).contains(&w));
                prop_assert!(t.peer(&p(1)).unwrap().reasons.len() <= 16);
                t.handle_timeout(now);
                prop_assert!(t.threshold() >= 0.1 && t.threshold() <= 0.5);
            }
        }

        #[test]
        fn newcomer_never_outranks_proven_peer(evs in proptest::collection::vec(arb_evidence(), 0..100),
                                               reports in proptest::collection::vec((0u32..50, 0u32..50), 0..20)) {
            let mut t = table();
            t.join(0, p(1), Region(1), 1).unwrap();
            t.join(0, p(2), Region(2), 1).unwrap();
            t.join(0, p(3), Region(3), 1).unwrap();
            for i in 0..40 { t.record(0, &p(3), Evidence::Agreed { task: TaskId(i) }).unwrap(); }
            for (i, e) in evs.into_iter().enumerate() {
                t.record(i as u64, &p(1), e).unwrap();
            }
            // Reporter p(3) praises newcomer p(2) as much as it likes.
            for (seq, (a, d)) in reports.into_iter().enumerate() {
                let r = TrustReport { reporter: p(3), subject: p(2), agreements: a, disagreements: d, issued_at: 0, sequence: seq as u64 };
                let _ = t.apply_report(1, &r, b"ok", &Accept);
            }
            let newcomer = t.weight(&p(2));
            for peer in [p(1), p(3)] {
                if t.peer(&peer).unwrap().state == PeerState::Trusted {
                    prop_assert!(t.weight(&peer) > newcomer);
                }
            }
        }
    }
}
