//! The simulation behind [`run_cell`](super::run_cell): one event queue,
//! many submitters, hosts shared by all of them.
//!
//! The driver does what the live submitter does and nothing more: it feeds
//! each submitter's engine (a [`Coordinator`] or a baseline) with joins,
//! tasks, results, failures, canaries it computed itself, accusations from
//! other submitters and the outputs of its own re-runs, and acts on the
//! actions it polls. Ground truth is used only to play the hosts and to
//! score the outcome.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{ByzantineConfig, CellDetails, CellReport, Policy, Strategy};
use crate::coordinator::{AcceptReason, Action, Coordinator, Event, GiveUpReason};
use crate::deception::Canary;
use crate::error::SecurityError;
use crate::ids::{AssignmentId, Digest, Millis, PeerId, Region, TaskId};
use crate::receipt::{JobSpec, ReceiptFacts, TaskSpec};
use crate::report::Accusation;
use crate::reputation::{FailureKind, PeerState};

/// A stable 64-bit mixer (splitmix64), so ground truth and honest faults are
/// pure functions of their inputs, the same for every policy.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A uniform draw in [0, 1) from a hash.
fn unit(h: u64) -> f64 {
    (h >> 11) as f64 / (1u64 << 53) as f64
}

fn low(d: &Digest) -> u64 {
    u64::from_be_bytes(d.0[..8].try_into().expect("8 bytes"))
}

const MODULE: u64 = 42;
const FUEL_LIMIT: u64 = 10_000_000;

fn truth(input: &Digest) -> Digest {
    Digest::from_u64(mix(low(input) ^ 0x7777))
}
fn shared_wrong(input: &Digest) -> Digest {
    Digest::from_u64(mix(low(input) ^ 0xBAD))
}
fn true_fuel(input: &Digest) -> u64 {
    1_000_000 + mix(low(input) ^ 0xF0E1) % 1_000_000
}
fn true_memory(input: &Digest) -> u64 {
    65_536 * (1 + mix(low(input) ^ 0x3E3) % 16)
}

/// One identity a host presents. Sybil churn gives an operator many.
pub(super) struct Host {
    pub(super) peer: PeerId,
    /// Observed network prefix (what the defender may use).
    pub(super) prefix: Region,
    speed: u64,
    pub(super) attacker: bool,
    /// Jobs run, over all submitters.
    pub(super) jobs: u32,
    online: bool,
    /// Quarantined by at least one submitter.
    quarantined: bool,
}

/// What a host does with a job.
#[derive(Clone, Copy, PartialEq, Debug)]
pub(super) enum Answer {
    /// No result: an error reported at once.
    Error,
    /// No result and no word: the submitter's deadline fires.
    Silent,
    /// A receipt.
    Receipt {
        /// The output it claims.
        output: Digest,
        /// The fuel it bills.
        fuel: u64,
    },
}

/// The hosts, the ground truth, and the attackers' shared knowledge.
pub(super) struct World {
    cfg: ByzantineConfig,
    strategy: Strategy,
    rng: ChaCha8Rng,
    pub(super) hosts: Vec<Host>,
    by_peer: HashMap<PeerId, usize>,
    attacker_prefixes: Vec<Region>,
    /// Who holds each open input (real task or canary), in dispatch order:
    /// the colluders' knowledge of each other's assignments, and the
    /// benchmark's knowledge of whether an honest host is among them.
    pub(super) holders: HashMap<u64, Vec<usize>>,
    /// Recent genuine honest receipts, the slanderers' raw material.
    honest_receipts: VecDeque<(usize, JobSpec, ReceiptFacts)>,
    next_identity: u64,
}

impl World {
    pub(super) fn new(cfg: &ByzantineConfig, fraction: f64, strategy: Strategy) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        let attackers = (fraction * cfg.hosts as f64).round() as usize;
        let mut flags: Vec<bool> = (0..cfg.hosts).map(|i| i < attackers).collect();
        flags.shuffle(&mut rng);
        let attacker_prefixes = (0..cfg.attacker_prefixes.max(1))
            .map(|_| Region(rng.random_range(0..1 << 24)))
            .collect();
        let mut w = World {
            cfg: cfg.clone(),
            strategy,
            rng,
            hosts: Vec::with_capacity(cfg.hosts),
            by_peer: HashMap::new(),
            attacker_prefixes,
            holders: HashMap::new(),
            honest_receipts: VecDeque::new(),
            next_identity: 0,
        };
        for attacker in flags {
            let speed = w.rng.random_range(500..2000);
            w.add_host(speed, attacker);
        }
        w
    }

    fn add_host(&mut self, speed: u64, attacker: bool) -> usize {
        let peer = PeerId::from_u64(mix(self.cfg.seed ^ 0x1D).wrapping_add(self.next_identity));
        self.next_identity += 1;
        let prefix = if attacker {
            self.attacker_prefixes[self.rng.random_range(0..self.attacker_prefixes.len())]
        } else {
            Region(self.rng.random_range(0..1 << 24))
        };
        let idx = self.hosts.len();
        self.hosts.push(Host {
            peer,
            prefix,
            speed,
            attacker,
            jobs: 0,
            online: true,
            quarantined: false,
        });
        self.by_peer.insert(peer, idx);
        idx
    }

    fn hash(&self, h: usize, input: &Digest, salt: u64) -> u64 {
        mix(self.cfg.seed
            ^ mix(self.hosts[h].peer.0[..8]
                .iter()
                .fold(salt, |a, b| a.rotate_left(8) ^ u64::from(*b)))
            ^ low(input))
    }

    /// How long a job takes to come back: compute time at the host's speed
    /// plus a round trip.
    fn latency(&self, h: usize, input: &Digest) -> Millis {
        let x = self.hash(h, input, 0x1A7);
        let (lo, hi) = self.cfg.latency_ms;
        let net = lo + x % (hi.saturating_sub(lo).max(1));
        let compute = true_fuel(input) / self.hosts[h].speed.max(1);
        2 * net + compute + compute * (x >> 40) % 300 / 1000
    }

    /// Attackers hold a strict majority of the task's holders so far: what
    /// wins a plain vote, and, when they hold all of it, what no comparison
    /// can expose.
    fn attackers_win(&self, input: &Digest) -> bool {
        self.holders.get(&low(input)).is_some_and(|hs| {
            let bad = hs.iter().filter(|&&h| self.hosts[h].attacker).count();
            2 * bad > hs.len()
        })
    }

    fn alone(&self, h: usize, input: &Digest) -> bool {
        self.holders
            .get(&low(input))
            .is_some_and(|hs| hs.iter().all(|&x| x == h))
    }

    fn honest_holds(&self, input: &Digest) -> bool {
        self.holders
            .get(&low(input))
            .is_some_and(|hs| hs.iter().any(|&h| !self.hosts[h].attacker))
    }

    /// Whether host `h`'s job on `input` fails, decided at dispatch.
    fn fails(&self, h: usize, input: &Digest) -> Option<Answer> {
        if self.hosts[h].attacker {
            return None;
        }
        let u = unit(self.hash(h, input, 0xFA11));
        if u < self.cfg.honest_failure_rate / 2.0 {
            Some(Answer::Error)
        } else if u < self.cfg.honest_failure_rate {
            Some(Answer::Silent)
        } else {
            None
        }
    }

    /// What host `h` answers for `input` when its result is due. `check_rate`
    /// is its spot-check rate at the submitter (for the patient attacker)
    /// and `floor` the lowest that rate goes.
    pub(super) fn answer(
        &mut self,
        h: usize,
        input: &Digest,
        check_rate: Option<f64>,
        floor: f64,
    ) -> Answer {
        self.hosts[h].jobs += 1;
        let correct = truth(input);
        let fuel = true_fuel(input);
        if !self.hosts[h].attacker {
            if unit(self.hash(h, input, 0xFA17)) < self.cfg.honest_wrong_rate {
                return Answer::Receipt {
                    output: Digest::from_u64(self.hash(h, input, 0xDEAD)),
                    fuel,
                };
            }
            return Answer::Receipt {
                output: correct,
                fuel,
            };
        }
        let wrong = |lie: bool| if lie { shared_wrong(input) } else { correct };
        let (output, fuel) = match self.strategy {
            Strategy::AlwaysWrong => (Digest::from_u64(self.rng.random()), fuel),
            Strategy::RandomWrong => {
                if self.rng.random_bool(self.cfg.random_wrong_rate) {
                    (Digest::from_u64(self.rng.random()), fuel)
                } else {
                    (correct, fuel)
                }
            }
            Strategy::Colluding | Strategy::SybilChurn => (wrong(self.attackers_win(input)), fuel),
            Strategy::StealthColluding => (wrong(self.alone(h, input)), fuel),
            Strategy::Patient => {
                let at_floor = check_rate.is_some_and(|r| r <= floor + 1e-12);
                (wrong(at_floor && self.alone(h, input)), fuel)
            }
            Strategy::Sleeper => (
                wrong(self.hosts[h].jobs > self.cfg.sleeper_honest_tasks),
                fuel,
            ),
            Strategy::Slanderer => (correct, fuel),
            Strategy::OverBilling => (correct, (fuel as f64 * self.cfg.overbill_factor) as u64),
        };
        Answer::Receipt { output, fuel }
    }

    fn receipt(&self, h: usize, job: &JobSpec, output: Digest, fuel: u64) -> ReceiptFacts {
        let speed = self.hosts[h].speed as f64;
        let jitter = 1.0 + unit(self.hash(h, &job.input_hash, 0x3177)) * 0.1;
        ReceiptFacts {
            job_id: job.job_id,
            host: self.hosts[h].peer,
            module_hash: job.module_hash,
            input_hash: job.input_hash,
            output_hash: output,
            fuel_used: fuel,
            peak_memory_bytes: true_memory(&job.input_hash),
            wall_ms: ((fuel as f64 / speed) * jitter).max(1.0) as u64,
        }
    }
}

/// The two baselines as sans-IO state machines speaking the coordinator's
/// events and actions, so the driver treats all policies alike.
struct Baseline {
    boinc: bool,
    rng: ChaCha8Rng,
    online: Vec<PeerId>,
    index: HashMap<PeerId, usize>,
    consecutive: HashMap<PeerId, u32>,
    tasks: HashMap<TaskId, BaseTask>,
    jobs: HashMap<u64, (TaskId, PeerId)>,
    deadlines: BinaryHeap<Reverse<(Millis, u64)>>,
    actions: VecDeque<Action>,
    next_job: u64,
}

struct BaseTask {
    spec: TaskSpec,
    results: Vec<(PeerId, ReceiptFacts)>,
    holders: Vec<PeerId>,
    outstanding: u32,
    /// Results needed to agree (1 = accepted alone).
    quorum: usize,
}

/// BOINC's trust threshold (consecutive valid results).
const BOINC_TRUST_AFTER: u32 = 10;
/// Most hosts one baseline task may use.
const BASE_MAX_HOSTS: usize = 10;
const DEADLINE_MS: Millis = 60_000;

impl Baseline {
    fn new(boinc: bool, seed: u64) -> Self {
        Self {
            boinc,
            rng: ChaCha8Rng::seed_from_u64(seed),
            online: Vec::new(),
            index: HashMap::new(),
            consecutive: HashMap::new(),
            tasks: HashMap::new(),
            jobs: HashMap::new(),
            deadlines: BinaryHeap::new(),
            actions: VecDeque::new(),
            next_job: 1,
        }
    }

    /// BOINC's replication probability for a trusted host's job.
    fn check_rate(&self, peer: &PeerId) -> Option<f64> {
        let n = self.consecutive.get(peer).copied().unwrap_or(0);
        (self.boinc && n >= BOINC_TRUST_AFTER).then(|| 1.0 / f64::from(n))
    }

    fn handle(&mut self, now: Millis, ev: Event) -> Result<(), SecurityError> {
        match ev {
            Event::PeerJoined { peer, .. } => {
                self.index.insert(peer, self.online.len());
                self.online.push(peer);
            }
            Event::PeerLeft { peer } => {
                if let Some(i) = self.index.remove(&peer) {
                    self.online.swap_remove(i);
                    if let Some(m) = self.online.get(i) {
                        self.index.insert(*m, i);
                    }
                }
            }
            Event::TaskSubmitted(spec) => {
                let mut t = BaseTask {
                    spec,
                    results: Vec::new(),
                    holders: Vec::new(),
                    outstanding: 0,
                    quorum: 2,
                };
                let first = self.pick(&t.holders);
                let Some(first) = first else {
                    self.actions.push_back(Action::GiveUp {
                        task: spec.id,
                        reason: GiveUpReason::NoEligiblePeer,
                    });
                    return Ok(());
                };
                let want = if !self.boinc {
                    3
                } else if let Some(rate) = self.check_rate(&first) {
                    if self.rng.random_bool(rate) { 2 } else { 1 }
                } else {
                    2
                };
                t.quorum = want.min(2);
                self.dispatch(now, &mut t, first);
                for _ in 1..want {
                    if let Some(p) = self.pick(&t.holders) {
                        self.dispatch(now, &mut t, p);
                    }
                }
                self.tasks.insert(spec.id, t);
            }
            Event::ResultReturned { job_id, receipt } => {
                let (task, peer) = self
                    .jobs
                    .remove(&job_id)
                    .ok_or(SecurityError::UnknownAssignment(AssignmentId(job_id)))?;
                if let Some(t) = self.tasks.get_mut(&task) {
                    t.outstanding -= 1;
                    t.results.push((peer, receipt));
                    self.evaluate(now, task);
                }
            }
            Event::JobFailed { job_id, .. } => {
                let (task, peer) = self
                    .jobs
                    .remove(&job_id)
                    .ok_or(SecurityError::UnknownAssignment(AssignmentId(job_id)))?;
                // An error resets BOINC's count.
                self.consecutive.insert(peer, 0);
                if let Some(t) = self.tasks.get_mut(&task) {
                    t.outstanding -= 1;
                    self.evaluate(now, task);
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn pick(&mut self, holders: &[PeerId]) -> Option<PeerId> {
        crate::placement::pick(&mut self.rng, &self.online, &[], 16, |p| {
            !holders.contains(p)
        })
    }

    fn dispatch(&mut self, now: Millis, t: &mut BaseTask, peer: PeerId) {
        let job_id = self.next_job;
        self.next_job += 1;
        t.holders.push(peer);
        t.outstanding += 1;
        self.jobs.insert(job_id, (t.spec.id, peer));
        self.deadlines.push(Reverse((now + DEADLINE_MS, job_id)));
        self.actions.push_back(Action::Dispatch {
            peer,
            job: JobSpec {
                job_id,
                module_hash: t.spec.module_hash,
                input_hash: t.spec.input_hash,
                fuel_limit: t.spec.fuel_limit,
            },
            deadline: now + DEADLINE_MS,
        });
    }

    /// Accept the first output `quorum` results agree on; otherwise, once
    /// nothing is outstanding, add one replica (BOINC re-issues too).
    fn evaluate(&mut self, now: Millis, id: TaskId) {
        let Some(t) = self.tasks.get(&id) else { return };
        let winner = t
            .results
            .iter()
            .find(|(_, r)| {
                t.results
                    .iter()
                    .filter(|(_, x)| x.output_hash == r.output_hash)
                    .count()
                    >= t.quorum
            })
            .map(|(_, r)| r.output_hash);
        if let Some(output) = winner {
            let t = self.tasks.remove(&id).expect("present");
            let mut paid = Vec::new();
            let mut fuel = 0;
            for (p, r) in &t.results {
                let valid = r.output_hash == output;
                let c = self.consecutive.entry(*p).or_default();
                *c = if valid { *c + 1 } else { 0 };
                if valid {
                    paid.push((*p, r.fuel_used));
                    fuel = r.fuel_used;
                }
            }
            self.actions.push_back(Action::Accept {
                task: id,
                output,
                fuel,
                paid,
                reason: if t.quorum == 1 {
                    AcceptReason::TrustedSolo {
                        spot_check_rate: 0.0,
                    }
                } else {
                    AcceptReason::Quorum {
                        support: t.quorum as f64,
                        total: t.results.len() as f64,
                        voters: t.results.len() as u32,
                    }
                },
            });
            return;
        }
        if t.outstanding > 0 {
            return;
        }
        let mut t = self.tasks.remove(&id).expect("present");
        if t.quorum == 1 && !t.results.is_empty() {
            return;
        }
        if t.holders.len() >= BASE_MAX_HOSTS {
            self.actions.push_back(Action::GiveUp {
                task: id,
                reason: GiveUpReason::NoQuorum {
                    dispatched: t.holders.len() as u32,
                },
            });
            return;
        }
        match self.pick(&t.holders) {
            Some(p) => {
                self.dispatch(now, &mut t, p);
                self.tasks.insert(id, t);
            }
            None => self.actions.push_back(Action::GiveUp {
                task: id,
                reason: GiveUpReason::NoEligiblePeer,
            }),
        }
    }

    fn poll_timeout(&self) -> Option<Millis> {
        self.deadlines.peek().map(|Reverse((t, _))| *t)
    }

    fn handle_timeout(&mut self, now: Millis) {
        while let Some(Reverse((t, job))) = self.deadlines.peek().copied() {
            if t > now {
                break;
            }
            self.deadlines.pop();
            if self.jobs.contains_key(&job) {
                let r = self.handle(
                    now,
                    Event::JobFailed {
                        job_id: job,
                        kind: FailureKind::Timeout,
                    },
                );
                debug_assert!(r.is_ok());
            }
        }
    }
}

enum Engine {
    Coordinator(Box<Coordinator>),
    Baseline(Box<Baseline>),
}

impl Engine {
    fn handle(&mut self, now: Millis, ev: Event) -> Result<(), SecurityError> {
        match self {
            Engine::Coordinator(c) => c.handle(now, ev),
            Engine::Baseline(b) => b.handle(now, ev),
        }
    }
    fn handle_timeout(&mut self, now: Millis) {
        match self {
            Engine::Coordinator(c) => c.handle_timeout(now),
            Engine::Baseline(b) => b.handle_timeout(now),
        }
    }
    fn poll_timeout(&self) -> Option<Millis> {
        match self {
            Engine::Coordinator(c) => c.poll_timeout(),
            Engine::Baseline(b) => b.poll_timeout(),
        }
    }
    fn poll(&mut self) -> Option<Action> {
        match self {
            Engine::Coordinator(c) => c.poll(),
            Engine::Baseline(b) => b.actions.pop_front(),
        }
    }
    /// The patient attacker's knowledge: its spot-check rate here, and the
    /// lowest that rate goes.
    fn check_rate(&self, peer: &PeerId) -> (Option<f64>, f64) {
        match self {
            Engine::Coordinator(c) => (
                c.spot_check_rate(peer),
                c.config().placement.spot_check_floor,
            ),
            // BOINC's rate has no floor; the patient attacker waits for
            // 1/20 (twice the trust threshold).
            Engine::Baseline(b) => (b.check_rate(peer), 1.0 / f64::from(2 * BOINC_TRUST_AFTER)),
        }
    }
}

#[derive(Clone, PartialEq, Eq, Debug)]
enum Ev {
    /// Host `host`'s result for `job` from submitter `sub` is due.
    Arrive { sub: u16, host: u32, job: JobSpec },
    /// Host reports an error.
    Fail { sub: u16, job_id: u64 },
    /// Submitter `sub`'s timer.
    Timer { sub: u16 },
    /// An accusation reaches submitter `sub`.
    Report { sub: u16, acc: Box<Accusation> },
}

struct Queued {
    at: Millis,
    seq: u64,
    ev: Ev,
}
impl PartialEq for Queued {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Queued {
    fn cmp(&self, o: &Self) -> Ordering {
        (o.at, o.seq).cmp(&(self.at, self.seq))
    }
}

struct Submitter {
    engine: Engine,
    id: PeerId,
    next_task: u64,
    quota: u64,
    open: HashMap<TaskId, (Digest, u64)>,
    timer_at: Option<Millis>,
    /// Canary inputs dispatched and not yet answered.
    canary_inputs: HashMap<u64, Digest>,
    canary_seq: u64,
    /// Earlier quorum-accepted tasks, reusable as canaries for free (the
    /// expected answer is the quorum's, right or wrong).
    reusable: VecDeque<Canary>,
    /// Reused canary inputs some attacker held the first time: the
    /// attackers recognise them as checks and answer right.
    recognised: HashSet<u64>,
}

struct Run<'a> {
    cfg: &'a ByzantineConfig,
    world: World,
    subs: Vec<Submitter>,
    queue: BinaryHeap<Queued>,
    seq: u64,
    now: Millis,
    next_global: u64,
    /// Wrong accepted per window of `cfg.window` tasks (by submission order).
    windows: Vec<u64>,
    d: CellDetails,
    done: u64,
    /// Events for the submitters' engines, fed in order by `settle`.
    inbox: VecDeque<(usize, Event)>,
    /// (output, peak memory) of the receipts returned per open input: the
    /// submitter keeps its receipts, and a reused canary needs its counters.
    receipts: HashMap<u64, Vec<(Digest, u64)>>,
}

impl Run<'_> {
    fn push(&mut self, at: Millis, ev: Ev) {
        self.seq += 1;
        self.queue.push(Queued {
            at,
            seq: self.seq,
            ev,
        });
    }

    fn submit_more(&mut self, s: usize) {
        let sub = &mut self.subs[s];
        while sub.open.len() < self.cfg.in_flight && sub.next_task < sub.quota {
            let t = sub.next_task;
            sub.next_task += 1;
            let input = Digest::from_u64(mix(self.cfg.seed ^ 0x7A5C ^ ((s as u64) << 40)) ^ t);
            let id = TaskId(t);
            sub.open.insert(id, (input, self.next_global));
            self.next_global += 1;
            self.inbox.push_back((
                s,
                Event::TaskSubmitted(TaskSpec {
                    id,
                    module_hash: Digest::from_u64(MODULE),
                    input_hash: input,
                    fuel_limit: FUEL_LIMIT,
                }),
            ));
        }
    }

    /// Feeds queued events and acts on every action until quiet.
    fn settle(&mut self) -> Result<(), SecurityError> {
        while let Some((s, ev)) = self.inbox.pop_front() {
            match self.subs[s].engine.handle(self.now, ev) {
                Ok(()) => {}
                // A late or duplicate answer, or a report on an identity
                // this submitter never saw: what a live submitter logs and drops.
                Err(
                    SecurityError::UnknownAssignment(_)
                    | SecurityError::UnknownPeer(_)
                    | SecurityError::DuplicatePeer(_),
                ) => {}
                Err(e) => return Err(e),
            }
            while let Some(a) = self.subs[s].engine.poll() {
                self.act(s, a)?;
            }
            self.arm_timer(s);
        }
        Ok(())
    }

    fn arm_timer(&mut self, s: usize) {
        if let Some(t) = self.subs[s].engine.poll_timeout() {
            let t = t.max(self.now);
            if self.subs[s].timer_at.is_none_or(|x| t < x) {
                self.subs[s].timer_at = Some(t);
                self.push(t, Ev::Timer { sub: s as u16 });
            }
        }
    }

    fn act(&mut self, s: usize, action: Action) -> Result<(), SecurityError> {
        let now = self.now;
        match action {
            Action::Dispatch { peer, job, .. } => {
                let Some(&h) = self.world.by_peer.get(&peer) else {
                    return Ok(());
                };
                self.d.executions += 1;
                if let Some(&input) = self.subs[s].canary_inputs.get(&low(&job.input_hash)) {
                    debug_assert_eq!(input, job.input_hash);
                    self.d.canary_runs += 1;
                }
                self.world
                    .holders
                    .entry(low(&job.input_hash))
                    .or_default()
                    .push(h);
                match self.world.fails(h, &job.input_hash) {
                    Some(Answer::Error) => {
                        let at = now + self.world.latency(h, &job.input_hash) / 2;
                        self.push(
                            at,
                            Ev::Fail {
                                sub: s as u16,
                                job_id: job.job_id,
                            },
                        );
                    }
                    Some(_) => {}
                    None => {
                        let at = now + self.world.latency(h, &job.input_hash);
                        self.push(
                            at,
                            Ev::Arrive {
                                sub: s as u16,
                                host: h as u32,
                                job,
                            },
                        );
                    }
                }
            }
            Action::Accept {
                task,
                output,
                paid,
                fuel,
                reason,
            } => {
                if matches!(reason, AcceptReason::Quorum { voters, .. } if voters >= 2) {
                    self.keep_for_reuse(s, task, output, fuel);
                }
                self.finish(s, task, Some((output, paid)))
            }
            Action::GiveUp { task, .. } => self.finish(s, task, None),
            Action::PeerState(ch) => {
                if ch.to == PeerState::Quarantined
                    && let Some(&h) = self.world.by_peer.get(&ch.peer)
                    && !self.world.hosts[h].quarantined
                {
                    self.world.hosts[h].quarantined = true;
                    if self.world.strategy == Strategy::SybilChurn
                        && self.world.hosts[h].attacker
                        && self.world.hosts[h].online
                    {
                        self.churn(h);
                    }
                }
            }
            Action::NeedCanaries { count } => {
                // Reuse earlier quorums first (free); else the submitter
                // computes the canary itself: one execution.
                for _ in 0..count {
                    let sub = &mut self.subs[s];
                    if let Some(c) = sub.reusable.pop_front()
                        && self.cfg.reuse_canaries
                    {
                        sub.canary_inputs.insert(low(&c.input_hash), c.input_hash);
                        self.inbox.push_back((s, Event::CanaryAvailable(c)));
                        continue;
                    }
                    sub.canary_seq += 1;
                    let input = Digest::from_u64(mix(self.cfg.seed
                        ^ 0xCA9A
                        ^ ((s as u64) << 48)
                        ^ sub.canary_seq.rotate_left(17)));
                    sub.canary_inputs.insert(low(&input), input);
                    self.d.canary_cpu += 1;
                    self.inbox.push_back((
                        s,
                        Event::CanaryAvailable(Canary {
                            module_hash: Digest::from_u64(MODULE),
                            input_hash: input,
                            fuel_limit: FUEL_LIMIT,
                            output_hash: truth(&input),
                            fuel: true_fuel(&input),
                            peak_memory_bytes: true_memory(&input),
                        }),
                    ));
                }
            }
            Action::Accuse {
                subject,
                job,
                receipt,
            } => {
                self.d.accusations += 1;
                if self.cfg.share_reports {
                    let acc = Accusation {
                        reporter: self.subs[s].id,
                        subject,
                        job,
                        receipt,
                        issued_at: now,
                    };
                    self.broadcast(Some(s), acc);
                }
            }
            Action::Verify { check, job } => {
                // The local re-run: one execution, honest by construction.
                self.d.verify_cpu += 1;
                self.inbox.push_back((
                    s,
                    Event::Verified {
                        check,
                        output: truth(&job.input_hash),
                    },
                ));
            }
        }
        Ok(())
    }

    fn broadcast(&mut self, from: Option<usize>, acc: Accusation) {
        let at = self.now + self.cfg.report_delay_ms;
        for r in 0..self.subs.len() {
            if Some(r) != from {
                self.push(
                    at,
                    Ev::Report {
                        sub: r as u16,
                        acc: Box::new(acc),
                    },
                );
            }
        }
    }

    /// Sybil churn: drop the identity everywhere, rejoin under a fresh one.
    fn churn(&mut self, h: usize) {
        self.world.hosts[h].online = false;
        let old = self.world.hosts[h].peer;
        let speed = self.world.hosts[h].speed;
        let n = self.world.add_host(speed, true);
        let (peer, prefix) = (self.world.hosts[n].peer, self.world.hosts[n].prefix);
        self.d.attacker_identities += 1;
        for s in 0..self.subs.len() {
            self.inbox.push_back((s, Event::PeerLeft { peer: old }));
            self.inbox.push_back((
                s,
                Event::PeerJoined {
                    peer,
                    region: prefix,
                    advertised_fuel_per_ms: speed,
                },
            ));
        }
    }

    /// A quorum's answer becomes a future canary, if the submitter kept a
    /// receipt with that output (for its memory counter).
    fn keep_for_reuse(&mut self, s: usize, task: TaskId, output: Digest, fuel: u64) {
        let Some(&(input, _)) = self.subs[s].open.get(&task) else {
            return;
        };
        let Some(&(_, memory)) = self
            .receipts
            .get(&low(&input))
            .and_then(|rs| rs.iter().find(|(o, _)| *o == output))
        else {
            return;
        };
        let known = self
            .world
            .holders
            .get(&low(&input))
            .is_some_and(|hs| hs.iter().any(|&h| self.world.hosts[h].attacker));
        let sub = &mut self.subs[s];
        if sub.reusable.len() >= 64 {
            return;
        }
        if known {
            sub.recognised.insert(low(&input));
        }
        sub.reusable.push_back(Canary {
            module_hash: Digest::from_u64(MODULE),
            input_hash: input,
            fuel_limit: FUEL_LIMIT,
            output_hash: output,
            fuel,
            peak_memory_bytes: memory,
        });
    }

    fn finish(&mut self, s: usize, task: TaskId, outcome: Option<(Digest, Vec<(PeerId, u64)>)>) {
        let Some((input, global)) = self.subs[s].open.remove(&task) else {
            return;
        };
        self.receipts.remove(&low(&input));
        self.world.holders.remove(&low(&input));
        self.done += 1;
        match outcome {
            Some((output, paid)) => {
                self.d.accepted += 1;
                let wrong_output = output != truth(&input);
                let overbilled = paid.iter().any(|(_, f)| *f != true_fuel(&input));
                if wrong_output || overbilled {
                    self.d.wrong_accepted += 1;
                    if !wrong_output {
                        self.d.overbilled_accepted += 1;
                    }
                    let w = (global as usize) / self.cfg.window.max(1);
                    if let Some(x) = self.windows.get_mut(w) {
                        *x += 1;
                    }
                }
            }
            None => self.d.given_up += 1,
        }
        self.submit_more(s);
    }

    fn arrive(&mut self, s: usize, h: usize, job: JobSpec) {
        let input = job.input_hash;
        let (rate, floor) = self.subs[s].engine.check_rate(&self.world.hosts[h].peer);
        let canary = self.subs[s].canary_inputs.remove(&low(&input)).is_some();
        let answer = if canary
            && self.world.hosts[h].attacker
            && self.subs[s].recognised.contains(&low(&input))
        {
            // A re-run of a task an attacker held: a known check.
            self.world.hosts[h].jobs += 1;
            Answer::Receipt {
                output: truth(&input),
                fuel: true_fuel(&input),
            }
        } else {
            self.world.answer(h, &input, rate, floor)
        };
        if let Answer::Receipt { output, fuel } = answer {
            let receipt = self.world.receipt(h, &job, output, fuel);
            if !canary {
                self.receipts
                    .entry(low(&input))
                    .or_default()
                    .push((output, receipt.peak_memory_bytes));
            }
            let lie = output != truth(&input) || fuel != true_fuel(&input);
            if self.world.hosts[h].attacker {
                if lie {
                    self.d.lies += 1;
                    if self.world.honest_holds(&input) {
                        self.d.lies_beside_honest += 1;
                    }
                }
            } else if lie {
                self.d.honest_faults += 1;
            } else if !canary {
                let rs = &mut self.world.honest_receipts;
                if rs.len() >= 64 {
                    rs.pop_front();
                }
                rs.push_back((h, job, receipt));
            }
            self.inbox.push_back((
                s,
                Event::ResultReturned {
                    job_id: job.job_id,
                    receipt,
                },
            ));
            if self.world.strategy == Strategy::Slanderer
                && self.world.hosts[h].attacker
                && self.world.hosts[h]
                    .jobs
                    .is_multiple_of(self.cfg.slander_every.max(1))
            {
                self.slander(h);
            }
        }
        if canary {
            self.world.holders.remove(&low(&input));
        }
    }

    /// A false accusation against an honest host, with that host's genuine
    /// receipt as "evidence", to every submitter.
    fn slander(&mut self, h: usize) {
        let rs = &self.world.honest_receipts;
        if rs.is_empty() {
            return;
        }
        let (_, job, receipt) = rs[self.world.rng.random_range(0..rs.len())];
        let acc = Accusation {
            reporter: self.world.hosts[h].peer,
            subject: receipt.host,
            job,
            receipt,
            issued_at: self.now,
        };
        self.broadcast(None, acc);
    }
}

fn engine(cfg: &ByzantineConfig, policy: Policy, s: usize) -> Result<Engine, SecurityError> {
    let seed = mix(cfg.seed ^ 0xC00D ^ ((s as u64) << 32));
    Ok(match policy {
        Policy::Biop2p => {
            let mut sec = cfg.security.clone();
            sec.seed = seed;
            sec.layers = cfg.layers;
            Engine::Coordinator(Box::new(Coordinator::new(sec)?))
        }
        Policy::Majority3 => Engine::Baseline(Box::new(Baseline::new(false, seed))),
        Policy::BoincAdaptive => Engine::Baseline(Box::new(Baseline::new(true, seed))),
    })
}

pub(super) fn run(
    cfg: &ByzantineConfig,
    fraction: f64,
    strategy: Strategy,
    policy: Policy,
) -> Result<CellReport, SecurityError> {
    let world = World::new(cfg, fraction, strategy);
    let m = cfg.submitters.max(1);
    let mut subs = Vec::with_capacity(m);
    for s in 0..m {
        let quota = (cfg.tasks / m + usize::from(s < cfg.tasks % m)) as u64;
        subs.push(Submitter {
            engine: engine(cfg, policy, s)?,
            id: PeerId::from_u64(0x5AB_0000_0000 + s as u64),
            next_task: 0,
            quota,
            open: HashMap::new(),
            timer_at: None,
            canary_inputs: HashMap::new(),
            canary_seq: 0,
            reusable: VecDeque::new(),
            recognised: HashSet::new(),
        });
    }
    let windows = cfg.tasks.div_ceil(cfg.window.max(1)).max(1);
    let mut run = Run {
        cfg,
        world,
        subs,
        queue: BinaryHeap::new(),
        seq: 0,
        now: 0,
        next_global: 0,
        windows: vec![0; windows],
        d: CellDetails::default(),
        done: 0,
        inbox: VecDeque::new(),
        receipts: HashMap::new(),
    };
    run.d.attackers = run.world.hosts.iter().filter(|h| h.attacker).count() as u64;
    run.d.attacker_identities = run.d.attackers;
    for s in 0..m {
        for h in &run.world.hosts {
            run.inbox.push_back((
                s,
                Event::PeerJoined {
                    peer: h.peer,
                    region: h.prefix,
                    advertised_fuel_per_ms: h.speed,
                },
            ));
        }
    }
    run.settle()?;
    // Submitters start a little apart, as live ones would.
    for s in 0..m {
        run.now = s as u64 * 7;
        run.submit_more(s);
        run.settle()?;
    }
    let total = cfg.tasks as u64;
    while run.done < total {
        let Some(q) = run.queue.pop() else { break };
        run.now = q.at;
        match q.ev {
            Ev::Arrive { sub, host, job } => run.arrive(sub as usize, host as usize, job),
            Ev::Fail { sub, job_id } => run.inbox.push_back((
                sub as usize,
                Event::JobFailed {
                    job_id,
                    kind: FailureKind::Error,
                },
            )),
            Ev::Timer { sub } => {
                let s = sub as usize;
                if run.subs[s].timer_at == Some(q.at) {
                    run.subs[s].timer_at = None;
                }
                if run.subs[s]
                    .engine
                    .poll_timeout()
                    .is_some_and(|t| t <= run.now)
                {
                    run.subs[s].engine.handle_timeout(run.now);
                    while let Some(a) = run.subs[s].engine.poll() {
                        run.act(s, a)?;
                    }
                }
                run.arm_timer(s);
            }
            Ev::Report { sub, acc } => run.inbox.push_back((sub as usize, Event::Accusation(*acc))),
        }
        run.settle()?;
    }
    let tasks = total.max(1) as f64;
    let full = cfg.tasks / cfg.window.max(1);
    let worst = if full == 0 {
        run.windows[0] as f64 / tasks
    } else {
        run.windows[..full].iter().copied().max().unwrap_or(0) as f64 / cfg.window as f64
    };
    let quarantined = |attacker: bool| {
        run.world
            .hosts
            .iter()
            .filter(|h| h.attacker == attacker && h.quarantined)
            .count() as u32
    };
    run.d.sim_ms = run.now;
    let d = run.d.clone();
    Ok(CellReport {
        policy,
        strategy,
        fraction,
        wrong_accepted_rate: d.wrong_accepted as f64 / tasks,
        worst_window_wrong_rate: worst,
        replicas_per_task: (d.executions + d.canary_cpu + d.verify_cpu) as f64 / tasks,
        honest_quarantined: quarantined(false),
        attackers_quarantined: quarantined(true),
        tasks: total,
        details: d,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn world(strategy: Strategy) -> World {
        let cfg = ByzantineConfig {
            hosts: 10,
            honest_wrong_rate: 0.0,
            ..Default::default()
        };
        World::new(&cfg, 0.5, strategy)
    }

    fn split(w: &World) -> (Vec<usize>, Vec<usize>) {
        (0..w.hosts.len()).partition(|&h| w.hosts[h].attacker)
    }

    fn out(a: Answer) -> Digest {
        match a {
            Answer::Receipt { output, .. } => output,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn colluders_coordinate_on_one_wrong_value_when_they_can_win() {
        let mut w = world(Strategy::Colluding);
        let (bad, good) = split(&w);
        let input = Digest::from_u64(1);
        w.holders.insert(low(&input), vec![bad[0], bad[1]]);
        let a = out(w.answer(bad[0], &input, None, 0.0));
        let b = out(w.answer(bad[1], &input, None, 0.0));
        assert_eq!(a, b, "one shared wrong output");
        assert_ne!(a, truth(&input));
        // Two of three can outvote the honest one: they lie together.
        let other = Digest::from_u64(2);
        w.holders.insert(low(&other), vec![bad[0], good[0], bad[1]]);
        assert_eq!(
            out(w.answer(bad[1], &other, None, 0.0)),
            shared_wrong(&other)
        );
        // Not a majority: they behave.
        let third = Digest::from_u64(3);
        w.holders.insert(low(&third), vec![bad[0], good[0]]);
        assert_eq!(out(w.answer(bad[0], &third, None, 0.0)), truth(&third));
    }

    #[test]
    fn stealth_colluders_lie_only_alone() {
        let mut w = world(Strategy::StealthColluding);
        let (bad, _) = split(&w);
        let input = Digest::from_u64(1);
        w.holders.insert(low(&input), vec![bad[0], bad[1]]);
        assert_eq!(out(w.answer(bad[0], &input, None, 0.0)), truth(&input));
        w.holders.insert(low(&input), vec![bad[0]]);
        assert_eq!(
            out(w.answer(bad[0], &input, None, 0.0)),
            shared_wrong(&input)
        );
    }

    #[test]
    fn patient_attacker_waits_for_the_floor() {
        let mut w = world(Strategy::Patient);
        let (bad, _) = split(&w);
        let input = Digest::from_u64(1);
        w.holders.insert(low(&input), vec![bad[0]]);
        for rate in [None, Some(1.0), Some(0.5), Some(0.0201)] {
            assert_eq!(out(w.answer(bad[0], &input, rate, 0.02)), truth(&input));
        }
        assert_eq!(
            out(w.answer(bad[0], &input, Some(0.02), 0.02)),
            shared_wrong(&input)
        );
    }

    #[test]
    fn sleeper_turns_after_its_honest_jobs() {
        let mut w = world(Strategy::Sleeper);
        let (bad, _) = split(&w);
        let n = w.cfg.sleeper_honest_tasks;
        let input = Digest::from_u64(1);
        for _ in 0..n {
            assert_eq!(out(w.answer(bad[0], &input, None, 0.0)), truth(&input));
        }
        assert_ne!(out(w.answer(bad[0], &input, None, 0.0)), truth(&input));
    }

    #[test]
    fn over_billers_inflate_only_the_fuel() {
        let mut w = world(Strategy::OverBilling);
        let (bad, _) = split(&w);
        let input = Digest::from_u64(1);
        match w.answer(bad[0], &input, None, 0.0) {
            Answer::Receipt { output, fuel } => {
                assert_eq!(output, truth(&input));
                assert!(fuel > true_fuel(&input));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn honest_faults_are_the_same_for_every_policy() {
        let cfg = ByzantineConfig {
            hosts: 50,
            honest_wrong_rate: 0.3,
            ..Default::default()
        };
        let mut a = World::new(&cfg, 0.0, Strategy::Colluding);
        let mut b = World::new(&cfg, 0.0, Strategy::Colluding);
        let mut faults = 0;
        for i in 0..200u64 {
            let input = Digest::from_u64(i);
            let (x, y) = (
                a.answer(7, &input, None, 0.0),
                b.answer(7, &input, None, 0.0),
            );
            assert_eq!(x, y);
            faults += usize::from(out(x) != truth(&input));
        }
        assert!((30..90).contains(&faults), "{faults}");
    }

    fn small(strategy: Strategy, policy: Policy) -> CellReport {
        let cfg = ByzantineConfig {
            hosts: 200,
            tasks: 20_000,
            submitters: 4,
            ..Default::default()
        };
        super::super::run_cell(&cfg, 0.25, strategy, policy).unwrap()
    }

    #[test]
    fn stealth_colluders_never_lie_beside_an_honest_host_and_do_lie() {
        let r = small(Strategy::StealthColluding, Policy::BoincAdaptive);
        assert!(r.details.lies > 0, "{:?}", r.details);
        assert_eq!(r.details.lies_beside_honest, 0);
    }

    #[test]
    fn slanderers_accuse_and_are_caught_not_believed() {
        let r = small(Strategy::Slanderer, Policy::Biop2p);
        assert!(r.details.verify_cpu > 0, "{:?}", r.details);
        assert_eq!(r.honest_quarantined, 0, "{r:?}");
        assert!(r.attackers_quarantined > 0, "{r:?}");
    }

    #[test]
    fn sybils_rejoin_under_fresh_identities() {
        let r = small(Strategy::SybilChurn, Policy::Biop2p);
        assert!(
            r.details.attacker_identities > r.details.attackers,
            "{:?}",
            r.details
        );
    }
}
