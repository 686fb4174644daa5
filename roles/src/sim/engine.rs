//! The discrete-event engine: virtual time, a seeded RNG, and the real roles.
//!
//! Each cluster's Bravo runs a real [`PheromoneTable`] over its hosts, a real
//! [`CrisisDetector`] and a real [`Election`]; each region's Alpha and the
//! Super nodes run real pheromone tables over fixed-size [`GroupSummary`]s;
//! each host runs real [`ResponseThresholds`]; new leaders bootstrap with the
//! real [`select_elders`] / [`merge_snapshots`]. The engine only moves
//! messages (with latency), runs jobs, and measures.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::report::{Details, Figures};
use super::scenario::{Baseline, Failure, Scenario};
use crate::election::{Candidate, Election, ElectionEvent};
use crate::havoc::{CrisisDetector, CrisisEvent, HavocAction};
use crate::hierarchy::GroupSummary;
use crate::id::{Millis, NodeId};
use crate::memory::{MemorySnapshot, SNAPSHOT_VERSION};
use crate::pheromone::{PheromoneTable, ThermalConfig};
use crate::taxonomy::{NodeConfig, NodeType};
use crate::threshold::{ResponseThresholds, TaskClass};
use crate::trust::TrustScores;
use crate::young::{Bootstrap, BootstrapAction, BootstrapEvent, ElderInfo, select_elders};

/// How placement is decided in one run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Placement {
    /// Ant-colony choice over trails × heuristic at every level (ours).
    Thermal,
    /// Capacity-aware random: a level picks in proportion to free slots, a
    /// Bravo uniformly among members with a free slot (by slots when none).
    Random,
    /// The member (or group) with the fewest jobs per slot; blind to speed.
    LeastLoaded,
    /// Power of two choices: sample two uniformly, take the one with fewer
    /// jobs per slot (Mitzenmacher; what Sparrow-style schedulers do).
    PowerOfTwo,
}

/// Which mechanisms are on in one run. Every row uses the same hierarchy,
/// the same heartbeat failure detector and the same message accounting; only
/// the flags below differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Mode {
    pub placement: Placement,
    /// Thermal trails learn from completions (off: the trails stay at their
    /// initial level, so Thermal picks by its heuristic alone).
    pub learn: bool,
    /// Caste: response thresholds weigh placement and pick the class to run.
    pub caste: bool,
    /// HAVOC: crisis detection, head-of-queue re-placement, load shedding.
    pub havoc: bool,
    /// Young: a new Bravo starts from its elders' tables (off: cold).
    pub young: bool,
    /// Work stealing: an idle host asks its Bravo for queued work.
    pub steal: bool,
}

impl Mode {
    pub(crate) fn roles() -> Self {
        Mode {
            placement: Placement::Thermal,
            learn: true,
            caste: true,
            havoc: true,
            young: true,
            steal: true,
        }
    }

    /// A fair baseline: its placer, with the same work stealing and failure
    /// detection as ours, and none of our mechanisms.
    pub(crate) fn fair(placement: Placement) -> Self {
        Mode {
            placement,
            learn: false,
            caste: false,
            havoc: false,
            young: false,
            steal: true,
        }
    }

    pub(crate) fn baseline(b: Baseline) -> Self {
        match b {
            Baseline::Random => Mode::fair(Placement::Random),
            Baseline::LeastLoaded => Mode::fair(Placement::LeastLoaded),
            Baseline::PowerOfTwo => Mode::fair(Placement::PowerOfTwo),
            Baseline::ColdStart => Mode::without("young"),
        }
    }

    /// Ours minus one mechanism (a key of [`ABLATIONS`]).
    pub(crate) fn without(mechanism: &str) -> Self {
        let mut m = Mode::roles();
        match mechanism {
            "thermal" => m.learn = false,
            "caste" => m.caste = false,
            "havoc" => m.havoc = false,
            "young" => m.young = false,
            "work_stealing" => m.steal = false,
            _ => {}
        }
        m
    }
}

/// The ablation rows, keyed by the mechanism removed.
pub(crate) const ABLATIONS: [&str; 5] = ["thermal", "caste", "havoc", "young", "work_stealing"];

const NONE: u32 = u32::MAX;
/// Class work multipliers (cpu, memory, small), before normalising to mean 1.
const CLASS_WORK: [f64; 3] = [1.5, 1.0, 0.25];
/// Window of the Young quality measurement, placements (the scenario file
/// documents the same 20).
const YOUNG_WINDOW: usize = 20;
/// Completion observations a Bravo sends each elder per heartbeat: a random
/// sample, so each elder learns its own table from its own sample.
const ELDER_SAMPLE: usize = 8;
/// Recent completion observations a Bravo keeps for its elders' samples.
const RECENT_CAP: usize = 256;

/// Kinds of message the engine sends; each send is counted where it happens.
#[derive(Clone, Copy, Debug)]
enum Msg {
    /// Host → Bravo, once per tick (the failure detector).
    Heartbeat,
    /// Bravo → Alpha → Super summaries, Super ↔ Super exchange.
    Summary,
    /// Submitter → Super → Alpha → Bravo → host (request, forwards, dispatch,
    /// refusals of a dead host).
    Placement,
    /// Host → submitter result and host → Bravo completion report.
    Result,
    /// Idle host → Bravo steal request, and the reply (with or without a job).
    Steal,
    /// Bravo → submitter: deferred by load shedding.
    Shed,
    /// Bravo → elder observation samples (what elders learn their tables from).
    Memory,
    /// New Bravo ↔ elder table request and reply.
    Young,
    /// Join announcements and a new leader's announcement to its members.
    Election,
}

/// Names of [`Msg`] kinds, for [`Details::messages`].
const MSG_NAMES: [&str; 9] = [
    "heartbeat",
    "summary",
    "placement",
    "result",
    "steal",
    "shed",
    "memory",
    "young",
    "election",
];
/// Fraction of the old leader's quality that counts as steady state.
const YOUNG_LEVEL: f64 = 0.9;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    Arrival,
    Retry {
        job: u32,
    },
    Deliver {
        job: u32,
        host: u32,
        epoch: u32,
        front: bool,
    },
    Finish {
        host: u32,
        slot: u8,
        job: u32,
        epoch: u32,
    },
    Tick,
    Failure(u32),
    SurgeEnd,
    Churn,
    Rejoin(u32),
    YoungAnswer {
        cluster: u32,
        elder: u32,
        leader: u32,
    },
    YoungTimeout {
        cluster: u32,
        leader: u32,
    },
    WindowEnd,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum JobState {
    Placing,
    Queued,
    Running,
    Orphan,
    Done,
    /// Missed its deadline before it could run: dropped.
    Failed,
}

#[derive(Clone, Debug)]
struct Job {
    class: u8,
    work: f32,
    submit: Millis,
    deadline: Millis,
    submitter_region: u32,
    attempt: u32,
    host: u32,
    state: JobState,
    lost_at: Option<Millis>,
    /// Whether this job's recovery time has been recorded.
    recovered: bool,
}

#[derive(Clone, Debug)]
struct Host {
    cluster: u32,
    speed: f64,
    slots: u8,
    price: f64,
    tier: u8,
    alive: bool,
    epoch: u32,
    joined_at: Millis,
    queue: VecDeque<u32>,
    class_count: [u32; 3],
    running_jobs: Vec<u32>,
    slot_busy: u8,
    slot_class: [u8; 8],
    inflight: u32,
    thresholds: ResponseThresholds,
    /// The Bravo's EWMA of this host's observed speed (Memory); 0 = unknown.
    est_speed: f64,
    completions: u64,
    /// The Bravo's record of this host: verified results.
    ok: u32,
    /// Jobs lost with this host (it died holding them).
    lost: u32,
}

impl Host {
    fn load(&self) -> u32 {
        self.queue.len() as u32 + self.running_jobs.len() as u32 + self.inflight
    }
}

#[derive(Clone, Debug)]
struct Cluster {
    region: u32,
    /// Position in its region's cluster list.
    local: u32,
    alive_members: Vec<u32>,
    election: Election,
    trails: PheromoneTable,
    havoc: CrisisDetector,
    slots: u32,
    backlog: u32,
    speed_sum: f64,
    price_sum: f64,
    orphans: Vec<u32>,
    comp_speed: f64,
    comp_n: u32,
    /// Elders and the tables each learns from its own samples of this
    /// cluster's completions (Memory): they differ, and none is the leader's.
    elders: Vec<(u32, PheromoneTable)>,
    /// A new leader's Young bootstrap under way, with that leader's id.
    bootstrap: Option<(u32, Bootstrap)>,
    /// Jobs held while the bootstrap is under way, and whether each goes to
    /// the head of a queue.
    held: Vec<(u32, bool)>,
    /// Completions since the last tick, sampled for the elders.
    recent: Vec<(u32, f32)>,
    ring: VecDeque<(u32, f64)>,
    young_ref: Option<f64>,
    young_window: VecDeque<f64>,
    young_count: u64,
    young_done: Option<u64>,
}

#[derive(Clone, Debug)]
struct Region {
    clusters: Vec<u32>,
    /// The Alpha's crisis detector: a loss spread thinly over many clusters
    /// is still a crisis for the region, and the Alpha tells its Bravos.
    havoc: CrisisDetector,
    trails: PheromoneTable,
    summaries: Vec<GroupSummary>,
    dispatched: Vec<u32>,
    alive: u32,
}

pub(crate) struct Engine<'a> {
    sc: &'a Scenario,
    cfg: NodeConfig,
    mode: Mode,
    now: Millis,
    seq: u64,
    heap: BinaryHeap<Reverse<(Millis, u64, Ev)>>,
    rng_arr: ChaCha8Rng,
    rng_place: ChaCha8Rng,
    rng_fail: ChaCha8Rng,
    hosts: Vec<Host>,
    clusters: Vec<Cluster>,
    regions: Vec<Region>,
    super_trails: PheromoneTable,
    region_summary: Vec<GroupSummary>,
    region_dispatched: Vec<u32>,
    supers: u32,
    jobs: Vec<Job>,
    lambda: f64,
    arr_clock: f64,
    surge: f64,
    class_cdf: [f64; 3],
    work_norm: f64,
    ref_speed: f64,
    alive_slots: u64,
    area_t: Millis,
    slot_area: f64,
    useful: f64,
    win: (Millis, Millis),
    lost_pending: Vec<(u32, u32)>,
    crisis_clusters: Vec<u32>,
    cand: Vec<(NodeId, f64)>,
    stats: Vec<(f64, f64)>,
    rng_young: ChaCha8Rng,
    // Measurements.
    msgs: [u64; MSG_NAMES.len()],
    placements: u64,
    completed: u64,
    failed: u64,
    on_time: u64,
    completion_sum: f64,
    completions: Vec<f32>,
    recovery: Vec<f64>,
    class_switches: u64,
    switches: Vec<String>,
    shed: u64,
    events: u64,
    buckets: Vec<(f64, u64)>,
    last_done: Millis,
    steals: u64,
    handover: bool,
}

fn log_uniform(rng: &mut ChaCha8Rng, lo: f64, hi: f64) -> f64 {
    if hi <= lo {
        return lo;
    }
    (rng.random_range(lo.ln()..hi.ln())).exp()
}

/// A baseline placer's pick among `stats` = (slots, jobs) per candidate;
/// `slots == 0` marks a candidate that cannot take work. `None` when none can.
fn choose_plain(p: Placement, stats: &[(f64, f64)], rng: &mut ChaCha8Rng) -> Option<usize> {
    let ratio = |i: usize| stats[i].1 / stats[i].0;
    let alive = || (0..stats.len()).filter(|i| stats[*i].0 > 0.0);
    match p {
        Placement::Random => {
            // In proportion to free slots; by slots when every slot is taken
            // (never more than a host's slots while any host has room).
            let free: f64 = alive().map(|i| (stats[i].0 - stats[i].1).max(0.0)).sum();
            let w = |i: usize| {
                if free > 0.0 {
                    (stats[i].0 - stats[i].1).max(0.0)
                } else {
                    stats[i].0
                }
            };
            let total: f64 = alive().map(w).sum();
            if total <= 0.0 {
                return None;
            }
            let mut x = rng.random_range(0.0..total);
            let mut last = None;
            for i in alive() {
                let wi = w(i);
                if wi <= 0.0 {
                    continue;
                }
                last = Some(i);
                if x < wi {
                    return Some(i);
                }
                x -= wi;
            }
            last
        }
        Placement::LeastLoaded => alive().min_by(|a, b| ratio(*a).total_cmp(&ratio(*b))),
        Placement::PowerOfTwo => {
            let n = alive().count();
            if n == 0 {
                return None;
            }
            let a = rng.random_range(0..n);
            let b = if n > 1 {
                (a + 1 + rng.random_range(0..n - 1)) % n
            } else {
                a
            };
            let a = alive().nth(a)?;
            let b = alive().nth(b)?;
            Some(if ratio(b) < ratio(a) { b } else { a })
        }
        Placement::Thermal => None,
    }
}

/// Trust in a host from the Bravo's record of it: verified results against
/// jobs lost with it (Laplace-smoothed), not its uptime. The live host takes
/// this from the security crate's reputation instead.
fn record_trust(x: &Host) -> f64 {
    (x.ok as f64 + 1.0) / (x.ok as f64 + x.lost as f64 + 2.0)
}

fn exp_sample(rng: &mut ChaCha8Rng, mean: f64) -> f64 {
    let u: f64 = rng.random_range(f64::EPSILON..1.0);
    -u.ln() * mean
}

impl<'a> Engine<'a> {
    pub(crate) fn new(sc: &'a Scenario, mode: Mode) -> Self {
        let cfg = sc
            .node_type
            .as_deref()
            .and_then(NodeType::find)
            .and_then(|t| t.config().ok())
            .unwrap_or_default();
        let mut rng_host = ChaCha8Rng::seed_from_u64(sc.seed ^ 0x9e37_79b9_7f4a_7c15);
        let n = sc.nodes;
        let n_clusters = n.div_ceil(sc.cluster_size);
        let n_regions = if sc.regions == 0 {
            ((n_clusters as f64).sqrt().ceil() as usize).max(1)
        } else {
            sc.regions.min(n_clusters)
        };
        let mut hosts = Vec::with_capacity(n);
        for i in 0..n {
            let speed = log_uniform(&mut rng_host, sc.speed_min, sc.speed_max);
            let slots = rng_host.random_range(sc.slots_min..=sc.slots_max);
            let price = rng_host.random_range(0.5..1.5);
            let cap = speed * slots as f64;
            let tier = ((cap.log2().max(0.0)) as u8).min(9);
            hosts.push(Host {
                cluster: (i / sc.cluster_size) as u32,
                speed,
                slots,
                price,
                tier,
                alive: true,
                epoch: 0,
                joined_at: 0,
                queue: VecDeque::new(),
                class_count: [0; 3],
                running_jobs: Vec::new(),
                slot_busy: 0,
                slot_class: [u8::MAX; 8],
                inflight: 0,
                thresholds: ResponseThresholds::new(&cfg.caste),
                est_speed: 0.0,
                completions: 0,
                ok: 0,
                lost: 0,
            });
        }
        let ref_speed = (sc.speed_min * sc.speed_max).sqrt();
        let mut regions: Vec<Region> = (0..n_regions)
            .map(|_| Region {
                clusters: Vec::new(),
                havoc: CrisisDetector::new(cfg.havoc.clone()),
                trails: PheromoneTable::new(cfg.thermal.clone()),
                summaries: Vec::new(),
                dispatched: Vec::new(),
                alive: 0,
            })
            .collect();
        let mut clusters = Vec::with_capacity(n_clusters);
        for c in 0..n_clusters {
            let region = (c % n_regions) as u32;
            let local = regions[region as usize].clusters.len() as u32;
            regions[region as usize].clusters.push(c as u32);
            regions[region as usize]
                .summaries
                .push(GroupSummary::default());
            regions[region as usize].dispatched.push(0);
            let members: Vec<u32> = ((c * sc.cluster_size)..((c + 1) * sc.cluster_size).min(n))
                .map(|h| h as u32)
                .collect();
            let mut election = Election::new(cfg.election.clone());
            let mut slots = 0;
            let mut price_sum = 0.0;
            for &h in &members {
                let hh = &hosts[h as usize];
                election.handle(
                    0,
                    ElectionEvent::Join(Candidate {
                        id: NodeId(h),
                        capacity: hh.speed * hh.slots as f64,
                        joined_at: 0,
                        tier: hh.tier,
                    }),
                );
                slots += hh.slots as u32;
                price_sum += hh.price;
            }
            while election.poll().is_some() {}
            regions[region as usize].alive += members.len() as u32;
            let ra = regions[region as usize].alive;
            regions[region as usize]
                .havoc
                .handle(0, CrisisEvent::Members(ra));
            let mut havoc = CrisisDetector::new(cfg.havoc.clone());
            havoc.handle(0, CrisisEvent::Members(members.len() as u32));
            clusters.push(Cluster {
                region,
                local,
                alive_members: members,
                speed_sum: slots as f64 * ref_speed,
                election,
                trails: PheromoneTable::new(cfg.thermal.clone()),
                havoc,
                slots,
                backlog: 0,
                price_sum,
                orphans: Vec::new(),
                comp_speed: 0.0,
                comp_n: 0,
                elders: Vec::new(),
                bootstrap: None,
                held: Vec::new(),
                recent: Vec::new(),
                ring: VecDeque::new(),
                young_ref: None,
                young_window: VecDeque::new(),
                young_count: 0,
                young_done: None,
            });
        }
        let total_cap: f64 = hosts.iter().map(|h| h.speed * h.slots as f64).sum();
        let mix_sum: f64 = sc.class_mix.iter().sum();
        let mut class_cdf = [0.0; 3];
        let mut acc = 0.0;
        let mut work_mean = 0.0;
        for i in 0..3 {
            acc += sc.class_mix[i] / mix_sum;
            class_cdf[i] = acc;
            work_mean += sc.class_mix[i] / mix_sum * CLASS_WORK[i];
        }
        let lambda = sc.load * total_cap / sc.work_ms; // jobs per ms
        let t_arr = sc.jobs as f64 / lambda;
        let alive_slots = hosts.iter().map(|h| h.slots as u64).sum();
        let supers = ((n_regions as f64 + 1.0).log2().ceil() as u32).clamp(1, n_regions as u32);
        let mut e = Engine {
            sc,
            mode,
            now: 0,
            seq: 0,
            heap: BinaryHeap::new(),
            rng_arr: ChaCha8Rng::seed_from_u64(sc.seed),
            rng_place: ChaCha8Rng::seed_from_u64(sc.seed.wrapping_add(1)),
            rng_fail: ChaCha8Rng::seed_from_u64(sc.seed.wrapping_add(2)),
            hosts,
            clusters,
            super_trails: PheromoneTable::new(cfg.thermal.clone()),
            region_summary: vec![GroupSummary::default(); n_regions],
            region_dispatched: vec![0; n_regions],
            regions,
            supers,
            cfg,
            jobs: Vec::with_capacity(sc.jobs as usize),
            lambda,
            arr_clock: 0.0,
            surge: 1.0,
            class_cdf,
            work_norm: 1.0 / work_mean,
            ref_speed,
            alive_slots,
            area_t: 0,
            slot_area: 0.0,
            useful: 0.0,
            win: ((t_arr * 0.1) as Millis, (t_arr * 0.9) as Millis),
            lost_pending: Vec::new(),
            crisis_clusters: Vec::new(),
            cand: Vec::new(),
            stats: Vec::new(),
            rng_young: ChaCha8Rng::seed_from_u64(sc.seed.wrapping_add(3)),
            msgs: [0; MSG_NAMES.len()],
            placements: 0,
            completed: 0,
            failed: 0,
            on_time: 0,
            completion_sum: 0.0,
            completions: Vec::with_capacity(sc.jobs as usize),
            recovery: Vec::new(),
            class_switches: 0,
            switches: Vec::new(),
            shed: 0,
            events: 0,
            buckets: Vec::new(),
            last_done: 0,
            steals: 0,
            handover: false,
        };
        e.summarise();
        e
    }

    fn send(&mut self, kind: Msg, n: u64) {
        self.msgs[kind as usize] += n;
    }

    /// Every job has completed or failed.
    fn resolved(&self) -> bool {
        self.completed + self.failed >= self.sc.jobs
    }

    fn at(&mut self, t: Millis, ev: Ev) {
        self.seq += 1;
        self.heap.push(Reverse((t, self.seq, ev)));
    }

    pub(crate) fn run(mut self) -> (Figures, Details) {
        self.at(0, Ev::Arrival);
        self.at(self.sc.tick_ms, Ev::Tick);
        self.at(self.win.1, Ev::WindowEnd);
        for (i, f) in self.sc.failures.iter().enumerate() {
            self.at(f.at(), Ev::Failure(i as u32));
        }
        if self.sc.churn_per_node_per_sec > 0.0 {
            let dt = self.churn_gap();
            self.at(dt, Ev::Churn);
        }
        while let Some(Reverse((t, _, ev))) = self.heap.pop() {
            self.now = t;
            self.events += 1;
            self.handle(ev);
            if self.resolved() {
                break;
            }
        }
        self.finish()
    }

    fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::Arrival => self.arrival(),
            Ev::Retry { job } => self.place(job, false),
            Ev::Deliver {
                job,
                host,
                epoch,
                front,
            } => self.deliver(job, host, epoch, front),
            Ev::Finish {
                host,
                slot,
                job,
                epoch,
            } => self.finish_job(host, slot, job, epoch),
            Ev::Tick => self.tick(),
            Ev::Failure(i) => self.failure(i as usize),
            Ev::SurgeEnd => self.surge = 1.0,
            Ev::Churn => {
                if let Some(h) = self.random_alive_host() {
                    self.kill(h);
                    let back = self.now + self.sc.churn_downtime_ms;
                    self.at(back, Ev::Rejoin(h));
                }
                let dt = self.churn_gap();
                self.at(self.now + dt, Ev::Churn);
            }
            Ev::Rejoin(h) => self.rejoin(h),
            Ev::YoungAnswer {
                cluster,
                elder,
                leader,
            } => self.young_answer(cluster, elder, leader),
            Ev::YoungTimeout { cluster, leader } => {
                let now = self.now;
                if let Some((l, b)) = self.clusters[cluster as usize].bootstrap.as_mut()
                    && *l == leader
                {
                    b.handle_timeout(now);
                    self.drive_bootstrap(cluster);
                }
            }
            Ev::WindowEnd => self.advance_area(),
        }
    }

    fn churn_gap(&mut self) -> Millis {
        let rate = self.sc.churn_per_node_per_sec * self.sc.nodes as f64 / 1000.0;
        (exp_sample(&mut self.rng_fail, 1.0 / rate) as Millis).max(1)
    }

    fn random_alive_host(&mut self) -> Option<u32> {
        for _ in 0..64 {
            let h = self.rng_fail.random_range(0..self.hosts.len()) as u32;
            if self.hosts[h as usize].alive {
                return Some(h);
            }
        }
        None
    }

    // ----- arrivals and placement -------------------------------------------------

    fn arrival(&mut self) {
        let id = self.jobs.len() as u32;
        let u: f64 = self.rng_arr.random();
        let class = self.class_cdf.iter().position(|c| u < *c).unwrap_or(2) as u8;
        let work = exp_sample(
            &mut self.rng_arr,
            self.sc.work_ms * CLASS_WORK[class as usize] * self.work_norm,
        ) as f32;
        let submitter_region = self.rng_arr.random_range(0..self.regions.len()) as u32;
        self.jobs.push(Job {
            class,
            work,
            submit: self.now,
            deadline: self.now + self.sc.deadline_ms,
            submitter_region,
            attempt: 0,
            host: NONE,
            state: JobState::Placing,
            lost_at: None,
            recovered: false,
        });
        if (self.jobs.len() as u64) < self.sc.jobs {
            let dt = exp_sample(&mut self.rng_arr, 1.0 / (self.lambda * self.surge));
            // Gaps are often below a millisecond: keep the arrival clock in
            // f64 so they accumulate instead of rounding to zero.
            self.arr_clock += dt;
            self.at(self.arr_clock as Millis, Ev::Arrival);
        }
        self.place(id, false);
    }

    fn heuristic_summary(s: &GroupSummary, extra: u32) -> f64 {
        let mut s = *s;
        s.backlog += extra;
        s.heuristic()
    }

    fn choose_region(&mut self) -> Option<u32> {
        let n = self.regions.len();
        if self.mode.placement != Placement::Thermal {
            self.stats.clear();
            for r in 0..n {
                let s = &self.region_summary[r];
                let slots = if self.regions[r].alive == 0 {
                    0.0
                } else {
                    s.slots.max(1) as f64
                };
                self.stats
                    .push((slots, (s.backlog + self.region_dispatched[r]) as f64));
            }
            return choose_plain(self.mode.placement, &self.stats, &mut self.rng_place)
                .map(|r| r as u32);
        }
        self.cand.clear();
        for r in 0..n {
            let h = if self.regions[r].alive == 0 {
                0.0
            } else {
                Self::heuristic_summary(&self.region_summary[r], self.region_dispatched[r])
            };
            self.cand.push((NodeId(r as u32), h));
        }
        if self.cand.iter().all(|c| c.1 == 0.0) {
            return self
                .regions
                .iter()
                .position(|r| r.alive > 0)
                .map(|r| r as u32);
        }
        let cand = std::mem::take(&mut self.cand);
        let i = self
            .super_trails
            .choose(&cand, self.now, &mut self.rng_place);
        self.cand = cand;
        i.map(|i| i as u32)
    }

    fn choose_cluster(&mut self, r: u32) -> Option<u32> {
        let reg = &self.regions[r as usize];
        if self.mode.placement != Placement::Thermal {
            self.stats.clear();
            for (i, c) in reg.clusters.iter().enumerate() {
                let s = &reg.summaries[i];
                let slots = if self.clusters[*c as usize].alive_members.is_empty() {
                    0.0
                } else {
                    s.slots.max(1) as f64
                };
                self.stats
                    .push((slots, (s.backlog + reg.dispatched[i]) as f64));
            }
            let i = choose_plain(self.mode.placement, &self.stats, &mut self.rng_place)?;
            return Some(self.regions[r as usize].clusters[i]);
        }
        self.cand.clear();
        for (i, c) in reg.clusters.iter().enumerate() {
            let h = if self.clusters[*c as usize].alive_members.is_empty() {
                0.0
            } else {
                Self::heuristic_summary(&reg.summaries[i], reg.dispatched[i])
            };
            self.cand.push((NodeId(*c), h));
        }
        if self.cand.iter().all(|c| c.1 == 0.0) {
            return reg
                .clusters
                .iter()
                .copied()
                .find(|c| !self.clusters[*c as usize].alive_members.is_empty());
        }
        let cand = std::mem::take(&mut self.cand);
        let i = self.regions[r as usize]
            .trails
            .choose(&cand, self.now, &mut self.rng_place);
        let pick = i.map(|i| cand[i].0.0);
        self.cand = cand;
        pick
    }

    fn choose_host(&mut self, c: u32, class: u8) -> Option<u32> {
        let cl = &self.clusters[c as usize];
        if cl.alive_members.is_empty() {
            return None;
        }
        if self.mode.placement != Placement::Thermal {
            self.stats.clear();
            for &h in &cl.alive_members {
                let x = &self.hosts[h as usize];
                self.stats.push((x.slots as f64, x.load() as f64));
            }
            let i = choose_plain(self.mode.placement, &self.stats, &mut self.rng_place)?;
            return Some(self.clusters[c as usize].alive_members[i]);
        }
        self.cand.clear();
        for &h in &cl.alive_members {
            let host = &self.hosts[h as usize];
            let slots = host.slots as f64;
            let mut eta = slots / (1.0 + host.load() as f64 / slots) / host.price;
            if self.mode.caste {
                eta *=
                    host.thresholds
                        .response(&self.cfg.caste, TaskClass::ALL[class as usize], 0.5);
            }
            self.cand.push((NodeId(h), eta));
        }
        let cand = std::mem::take(&mut self.cand);
        let i = self.clusters[c as usize]
            .trails
            .choose(&cand, self.now, &mut self.rng_place);
        let pick = i.map(|i| cand[i].0.0);
        self.cand = cand;
        pick
    }

    fn latency(&self, a: u32, b: u32) -> Millis {
        if a == b {
            self.sc.latency_region_ms
        } else {
            self.sc.latency_global_ms
        }
    }

    /// The submitter found nowhere to place the job (or was deferred): it
    /// asks again next tick, unless the deadline has passed.
    fn retry_later(&mut self, job: u32) {
        let t = self.now + self.sc.tick_ms;
        if t >= self.jobs[job as usize].deadline {
            self.fail(job);
        } else {
            self.at(t, Ev::Retry { job });
        }
    }

    /// A job that can no longer meet its deadline: the submitter gives up.
    fn fail(&mut self, job: u32) {
        let j = &mut self.jobs[job as usize];
        if matches!(j.state, JobState::Done | JobState::Failed) {
            return;
        }
        j.state = JobState::Failed;
        self.failed += 1;
        if let (Some(l), false) = (j.lost_at, j.recovered) {
            // Never running again: its recovery lasted at least this long.
            j.recovered = true;
            self.recovery.push((self.now - l) as f64);
        }
    }

    /// Full placement through Super → Alpha → Bravo → host.
    fn place(&mut self, job: u32, front: bool) {
        if self.now >= self.jobs[job as usize].deadline {
            self.fail(job);
            return;
        }
        let class = self.jobs[job as usize].class;
        let sreg = self.jobs[job as usize].submitter_region;
        // Submitter → Super, and the Super's answer when it has no region.
        let Some(r) = self.choose_region() else {
            self.send(Msg::Placement, 2);
            self.retry_later(job);
            return;
        };
        let Some(c) = self.choose_cluster(r) else {
            self.send(Msg::Placement, 3);
            self.retry_later(job);
            return;
        };
        // Load shedding: a cluster in crisis defers new work when overfull.
        if self.mode.havoc && !front && self.jobs[job as usize].lost_at.is_none() {
            let cl = &self.clusters[c as usize];
            if cl.havoc.should_shed(cl.backlog, cl.slots) {
                self.shed += 1;
                self.send(Msg::Placement, 3);
                self.send(Msg::Shed, 1);
                self.retry_later(job);
                return;
            }
        }
        if self.clusters[c as usize].bootstrap.is_some() {
            // A new Bravo still waiting for its elders holds the job (at
            // most the answer timeout) rather than placing it cold.
            self.send(Msg::Placement, 3);
            self.clusters[c as usize].held.push((job, front));
            return;
        }
        let Some(h) = self.choose_host(c, class) else {
            self.send(Msg::Placement, 4);
            self.retry_later(job);
            return;
        };
        let super_region = sreg % self.supers;
        let lat = self.latency(sreg, super_region)
            + if super_region == r {
                0
            } else {
                self.sc.latency_global_ms
            }
            + self.sc.latency_region_ms
            + self.sc.latency_cluster_ms;
        // Request, Super → Alpha, Alpha → Bravo, Bravo → host.
        self.send(Msg::Placement, 4);
        self.dispatch(job, c, h, lat, front);
    }

    /// Re-placement by the job's Bravo inside its cluster (one dispatch), or
    /// a full placement if the cluster is empty. `front`: HAVOC's emergency
    /// re-placement (head of the queue, the host expected to finish first).
    fn replace(&mut self, job: u32, front: bool) {
        let j = &mut self.jobs[job as usize];
        j.attempt += 1;
        j.state = JobState::Placing;
        let old = j.host;
        let class = j.class;
        if self.now >= j.deadline {
            self.fail(job);
            return;
        }
        let c = if old != NONE {
            self.hosts[old as usize].cluster
        } else {
            NONE
        };
        if c != NONE && self.clusters[c as usize].bootstrap.is_some() {
            self.clusters[c as usize].held.push((job, front));
            return;
        }
        if c != NONE && !self.clusters[c as usize].alive_members.is_empty() {
            let pick = if front && self.mode.havoc {
                self.emergency_host(c)
            } else {
                self.choose_host(c, class)
            };
            if let Some(h) = pick {
                self.send(Msg::Placement, 1);
                self.dispatch(job, c, h, self.sc.latency_cluster_ms, front);
                return;
            }
        }
        self.place(job, front);
    }

    /// HAVOC's emergency re-placement: no exploration; the job goes to the
    /// head of the queue of the healthy host expected to start it soonest (a
    /// free slot first, else the shortest wait for one of its slots by the
    /// Bravo's learned speeds), the faster on a tie. The Bravo does not know
    /// the job's work, only the mean.
    fn emergency_host(&self, c: u32) -> Option<u32> {
        let mean = self.sc.work_ms;
        self.clusters[c as usize]
            .alive_members
            .iter()
            .copied()
            .map(|h| {
                let x = &self.hosts[h as usize];
                let est = if x.est_speed > 0.0 {
                    x.est_speed
                } else {
                    self.ref_speed
                };
                let busy = x.running_jobs.len() as u32 + x.inflight >= x.slots as u32;
                let wait = if busy {
                    mean / est / x.slots as f64
                } else {
                    0.0
                };
                (wait, -est, h)
            })
            .min_by(|a, b| {
                a.0.total_cmp(&b.0)
                    .then(a.1.total_cmp(&b.1))
                    .then(a.2.cmp(&b.2))
            })
            .map(|(_, _, h)| h)
    }

    fn dispatch(&mut self, job: u32, c: u32, h: u32, lat: Millis, front: bool) {
        self.placements += 1;
        let speed = self.hosts[h as usize].speed;
        let epoch = self.hosts[h as usize].epoch;
        self.hosts[h as usize].inflight += 1;
        let j = &mut self.jobs[job as usize];
        j.host = h;
        let cl = &mut self.clusters[c as usize];
        cl.backlog += 1;
        let (region, local) = (cl.region as usize, cl.local as usize);
        self.regions[region].dispatched[local] += 1;
        self.region_dispatched[region] += 1;
        if self.mode.placement == Placement::Thermal {
            self.young_sample(c, h, speed);
        }
        self.at(
            self.now + lat.max(1),
            Ev::Deliver {
                job,
                host: h,
                epoch,
                front,
            },
        );
    }

    fn young_sample(&mut self, c: u32, h: u32, speed: f64) {
        let cl = &mut self.clusters[c as usize];
        match cl.young_ref {
            None => {
                if cl.ring.len() >= 200 {
                    cl.ring.pop_front();
                }
                cl.ring.push_back((h, speed));
            }
            Some(reference) => {
                if cl.young_done.is_some() {
                    return;
                }
                cl.young_count += 1;
                if cl.young_window.len() >= YOUNG_WINDOW {
                    cl.young_window.pop_front();
                }
                cl.young_window.push_back(speed);
                if cl.young_window.len() >= YOUNG_WINDOW {
                    let m = cl.young_window.iter().sum::<f64>() / cl.young_window.len() as f64;
                    if m >= YOUNG_LEVEL * reference {
                        // Placements made before the first window at steady quality.
                        cl.young_done = Some(cl.young_count - YOUNG_WINDOW as u64);
                    }
                }
            }
        }
    }

    // ----- hosts ------------------------------------------------------------------

    fn deliver(&mut self, job: u32, h: u32, epoch: u32, front: bool) {
        let host = &mut self.hosts[h as usize];
        if host.epoch != epoch || !host.alive {
            // Connection refused: the sender hears it and places again.
            let c = host.cluster;
            self.clusters[c as usize].backlog = self.clusters[c as usize].backlog.saturating_sub(1);
            self.jobs[job as usize].host = NONE;
            self.jobs[job as usize].lost_at.get_or_insert(self.now);
            self.send(Msg::Placement, 1);
            self.place(job, front);
            return;
        }
        host.inflight -= 1;
        if matches!(
            self.jobs[job as usize].state,
            JobState::Done | JobState::Failed
        ) {
            let c = host.cluster;
            self.clusters[c as usize].backlog -= 1;
            return;
        }
        let class = self.jobs[job as usize].class;
        host.class_count[class as usize] += 1;
        if front {
            host.queue.push_front(job)
        } else {
            host.queue.push_back(job)
        }
        self.jobs[job as usize].state = JobState::Queued;
        self.try_start(h);
    }

    /// Work stealing: a host with a free slot and nothing queued asks its
    /// Bravo for work (request and reply, counted whether or not a job comes
    /// back); the Bravo moves the last queued job of the most loaded member
    /// if the idle host would finish it sooner (by the Bravo's learned
    /// speeds). With Caste the idle host takes the class it responds to
    /// most. The job travels to the thief with the cluster latency.
    fn steal(&mut self, h: u32) {
        self.send(Msg::Steal, 2);
        let c = self.hosts[h as usize].cluster;
        let est = |x: &Host, r: f64| if x.est_speed > 0.0 { x.est_speed } else { r };
        let me = &self.hosts[h as usize];
        let my_speed = est(me, self.ref_speed);
        let mut best: Option<(f64, u32)> = None;
        for &v in &self.clusters[c as usize].alive_members {
            let vh = &self.hosts[v as usize];
            if v == h || vh.queue.len() < 2 {
                continue;
            }
            // Wait the last queued job faces there, in units of one job's work.
            let wait = (vh.queue.len() as f64 / vh.slots as f64 + 1.0) / est(vh, self.ref_speed);
            if wait > 1.0 / my_speed && best.is_none_or(|(b, _)| wait > b) {
                best = Some((wait, v));
            }
        }
        let Some((_, v)) = best else { return };
        let class = if self.mode.caste {
            let stimuli = self.hosts[v as usize].class_count.map(|n| n as f64);
            self.hosts[h as usize].thresholds.choose_class(
                &self.cfg.caste,
                stimuli,
                &mut self.rng_place,
            )
        } else {
            None
        };
        let vh = &mut self.hosts[v as usize];
        let pos = class
            .and_then(|k| {
                vh.queue
                    .iter()
                    .rposition(|j| self.jobs[*j as usize].class == k as u8)
            })
            .unwrap_or(vh.queue.len() - 1);
        let Some(job) = vh.queue.remove(pos) else {
            return;
        };
        let jc = self.jobs[job as usize].class as usize;
        vh.class_count[jc] -= 1;
        self.steals += 1;
        let me = &mut self.hosts[h as usize];
        me.inflight += 1;
        let epoch = me.epoch;
        let j = &mut self.jobs[job as usize];
        j.host = h;
        j.state = JobState::Placing;
        let front = j.lost_at.is_some() && !j.recovered;
        self.at(
            self.now + self.sc.latency_cluster_ms.max(1),
            Ev::Deliver {
                job,
                host: h,
                epoch,
                front,
            },
        );
    }

    fn try_start(&mut self, h: u32) {
        loop {
            let host = &self.hosts[h as usize];
            if host.running_jobs.len() >= host.slots as usize {
                return;
            }
            if host.queue.is_empty() {
                if self.mode.steal && host.inflight == 0 {
                    self.steal(h);
                }
                return;
            }
            let front = host.queue[0];
            let idx = if !self.mode.caste || self.jobs[front as usize].lost_at.is_some() {
                0
            } else {
                let total: u32 = host.class_count.iter().sum();
                let stimuli = host.class_count.map(|c| c as f64 / total.max(1) as f64);
                match host
                    .thresholds
                    .choose_class(&self.cfg.caste, stimuli, &mut self.rng_place)
                {
                    Some(k) => host
                        .queue
                        .iter()
                        .position(|j| self.jobs[*j as usize].class == k as u8)
                        .unwrap_or(0),
                    None => 0,
                }
            };
            let host = &mut self.hosts[h as usize];
            let job = host.queue.remove(idx).unwrap_or(front);
            let class = self.jobs[job as usize].class;
            host.class_count[class as usize] -= 1;
            if self.now >= self.jobs[job as usize].deadline {
                // Expired while queued: the host drops it unrun.
                let c = host.cluster;
                self.clusters[c as usize].backlog =
                    self.clusters[c as usize].backlog.saturating_sub(1);
                self.fail(job);
                continue;
            }
            // Prefer a free slot that last ran this class.
            let free = |s: usize| host.slot_busy & (1 << s) == 0;
            let slot = (0..host.slots as usize)
                .find(|s| free(*s) && host.slot_class[*s] == class)
                .or_else(|| (0..host.slots as usize).find(|s| free(*s)))
                .unwrap_or(0);
            host.slot_busy |= 1 << slot;
            let setup = if host.slot_class[slot] == class {
                0.0
            } else {
                self.sc.setup_ms
            };
            if host.slot_class[slot] != class && host.slot_class[slot] != u8::MAX {
                self.class_switches += 1;
            }
            host.slot_class[slot] = class;
            host.running_jobs.push(job);
            let exec = setup + self.jobs[job as usize].work as f64 / host.speed;
            let epoch = host.epoch;
            let j = &mut self.jobs[job as usize];
            j.state = JobState::Running;
            if let (Some(l), false) = (j.lost_at, j.recovered) {
                // Recovery: from the loss to this job running again.
                j.recovered = true;
                self.recovery.push((self.now - l) as f64);
            }
            self.at(
                self.now + (exec.ceil() as Millis).max(1),
                Ev::Finish {
                    host: h,
                    slot: slot as u8,
                    job,
                    epoch,
                },
            );
        }
    }

    fn finish_job(&mut self, h: u32, slot: u8, job: u32, epoch: u32) {
        if self.hosts[h as usize].epoch != epoch {
            return;
        }
        let host = &mut self.hosts[h as usize];
        host.slot_busy &= !(1 << slot);
        if let Some(p) = host.running_jobs.iter().position(|j| *j == job) {
            host.running_jobs.swap_remove(p);
        }
        let c = host.cluster;
        let exec_useful = self.jobs[job as usize].work as f64 / host.speed;
        let speed = host.speed;
        host.completions += 1;
        host.ok += 1;
        let class = TaskClass::ALL[self.jobs[job as usize].class as usize];
        if self.mode.caste {
            host.thresholds.on_task_done(&self.cfg.caste, class);
        }
        // The Bravo learns from the verified result (Memory + Thermal).
        let old_est = if host.est_speed > 0.0 {
            host.est_speed
        } else {
            self.ref_speed
        };
        host.est_speed = if host.est_speed > 0.0 {
            0.7 * host.est_speed + 0.3 * speed
        } else {
            speed
        };
        let slot_delta = (host.est_speed - old_est) * host.slots as f64;
        let cl = &mut self.clusters[c as usize];
        cl.speed_sum += slot_delta;
        cl.backlog = cl.backlog.saturating_sub(1);
        cl.comp_speed += speed;
        cl.comp_n += 1;
        if self.mode.placement == Placement::Thermal && self.mode.learn {
            cl.trails
                .reinforce(NodeId(h), speed / self.ref_speed, self.now);
        }
        if self.mode.young && cl.recent.len() < RECENT_CAP {
            cl.recent.push((h, speed as f32));
        }
        if self.mode.havoc {
            cl.havoc
                .handle(self.now, CrisisEvent::JobResult { ok: true });
        }
        // Utilisation: the useful part of the run that fell in the window.
        let (w0, w1) = self.win;
        let a = (self.now as f64 - exec_useful).max(w0 as f64);
        let b = (self.now as f64).min(w1 as f64);
        if b > a {
            self.useful += b - a;
        }
        // Result to the submitter, completion report to the Bravo.
        self.send(Msg::Result, 2);
        let r_host = self.clusters[c as usize].region;
        let lat = self.latency(r_host, self.jobs[job as usize].submitter_region);
        let j = &mut self.jobs[job as usize];
        if !matches!(j.state, JobState::Done | JobState::Failed) {
            j.state = JobState::Done;
            let done = self.now + lat;
            let took = (done - j.submit) as f64;
            self.completed += 1;
            if done <= j.deadline {
                self.on_time += 1;
            }
            self.completion_sum += took;
            self.completions.push(took as f32);
            // Timeline by submission time: a queue that grows shows as a
            // climb, and the drain at the end of a run does not.
            let b = (j.submit / 500) as usize;
            if self.buckets.len() <= b {
                self.buckets.resize(b + 1, (0.0, 0));
            }
            self.buckets[b].0 += took;
            self.buckets[b].1 += 1;
            self.last_done = self.last_done.max(done);
        }
        self.try_start(h);
    }

    fn advance_area(&mut self) {
        let (w0, w1) = self.win;
        let a = self.area_t.max(w0);
        let b = self.now.min(w1);
        if b > a {
            self.slot_area += self.alive_slots as f64 * (b - a) as f64;
        }
        self.area_t = self.now;
    }

    fn kill(&mut self, h: u32) {
        if !self.hosts[h as usize].alive {
            return;
        }
        self.advance_area();
        let host = &mut self.hosts[h as usize];
        host.alive = false;
        host.epoch += 1;
        let load = host.queue.len() as u32 + host.running_jobs.len() as u32 + host.inflight;
        host.inflight = 0;
        let mut orphans: Vec<u32> = host.queue.drain(..).collect();
        orphans.append(&mut host.running_jobs);
        host.class_count = [0; 3];
        host.slot_busy = 0;
        host.slot_class = [u8::MAX; 8];
        let (slots, price, est) = (
            host.slots as u32,
            host.price,
            if host.est_speed > 0.0 {
                host.est_speed
            } else {
                self.ref_speed
            },
        );
        let c = host.cluster;
        self.alive_slots -= slots as u64;
        host.lost += orphans.len() as u32;
        for &j in &orphans {
            let job = &mut self.jobs[j as usize];
            job.state = JobState::Orphan;
            job.lost_at = Some(self.now);
            job.recovered = false;
        }
        let cl = &mut self.clusters[c as usize];
        cl.alive_members.retain(|m| *m != h);
        cl.slots -= slots;
        cl.backlog = cl.backlog.saturating_sub(load);
        cl.speed_sum -= est * slots as f64;
        cl.price_sum -= price;
        cl.orphans.extend(orphans.iter().copied());
        self.regions[cl.region as usize].alive -= 1;
        // Noticed at the next heartbeat tick, in every row.
        self.lost_pending.push((c, h));
        // Members notice a silent leader at once (they talk to it constantly)
        // and re-elect; ordinary members are noticed at the next heartbeat.
        let was_leader = self.clusters[c as usize].election.leader() == Some(NodeId(h));
        self.clusters[c as usize]
            .election
            .handle(self.now, ElectionEvent::Leave(NodeId(h)));
        if was_leader {
            self.new_leader(c, h);
        }
    }

    fn new_leader(&mut self, c: u32, departed: u32) {
        let now = self.now;
        let cfg = self.cfg.clone();
        let mut elected = Vec::new();
        while let Some(e) = self.clusters[c as usize].election.poll() {
            elected.push(e);
        }
        let cl = &mut self.clusters[c as usize];
        // The new Bravo starts cold; with Young it runs the real
        // `Bootstrap`: it asks the cluster's elders (picked by its record of
        // their verified results and by experience) for the tables each
        // learned from its own samples, and imports the trust-weighted merge
        // when the answers are in (or at the answer timeout). It places cold
        // meanwhile.
        let table = PheromoneTable::new(cfg.thermal.clone());
        cl.bootstrap = None;
        let leader = cl.election.leader();
        if self.mode.young
            && let Some(NodeId(l)) = leader
        {
            let mut trust = TrustScores::default();
            let mut cands = Vec::new();
            for (e, _) in &cl.elders {
                let x = &self.hosts[*e as usize];
                if x.alive {
                    // A new leader that was an elder trusts its own table.
                    trust.set(NodeId(*e), if *e == l { 1.0 } else { record_trust(x) });
                    cands.push(ElderInfo {
                        id: NodeId(*e),
                        experience: x.completions,
                    });
                }
            }
            let b = Bootstrap::new(&cfg.young, now, &cands, &trust);
            cl.bootstrap = Some((l, b));
        }
        cl.trails = table;
        if self.handover && cl.young_ref.is_none() {
            let v: Vec<f64> = cl
                .ring
                .iter()
                .filter(|(h, _)| *h != departed)
                .map(|(_, s)| *s)
                .collect();
            if v.len() >= 20 {
                cl.young_ref = Some(v.iter().sum::<f64>() / v.len() as f64);
            }
        }
        self.drive_bootstrap(c);
        if self.clusters[c as usize].bootstrap.is_none() {
            self.flush_held(c);
        }
        let members = self.clusters[c as usize].alive_members.len() as u64;
        self.send(Msg::Election, members);
        for e in elected {
            self.switches.push(format!(
                "t={now} cluster {c}: bravo {:?} -> {:?}: {}",
                e.previous, e.leader, e.reason
            ));
        }
        if self.switches.len() > 1000 {
            self.switches.truncate(1000);
        }
    }

    /// Carries out a new Bravo's pending bootstrap actions: each request
    /// reaches its elder and the answer comes back after the cluster latency
    /// each way; the merge is imported when the bootstrap is done.
    fn drive_bootstrap(&mut self, c: u32) {
        let now = self.now;
        let Some((leader, b)) = self.clusters[c as usize].bootstrap.as_mut() else {
            return;
        };
        let leader = *leader;
        let mut asks = Vec::new();
        let mut done = None;
        while let Some(a) = b.poll() {
            match a {
                BootstrapAction::Ask(NodeId(e)) => asks.push(e),
                BootstrapAction::Done { trails, .. } => done = Some(trails),
            }
        }
        let timeout = b.poll_timeout();
        let rtt = 2 * self.sc.latency_cluster_ms.max(1);
        for e in asks {
            // Asking itself (it was an elder) costs nothing.
            let t = if e == leader {
                now
            } else {
                self.send(Msg::Young, 1);
                now + rtt
            };
            self.at(
                t,
                Ev::YoungAnswer {
                    cluster: c,
                    elder: e,
                    leader,
                },
            );
        }
        if let Some(t) = timeout {
            self.at(t, Ev::YoungTimeout { cluster: c, leader });
        }
        if let Some(trails) = done {
            let cl = &mut self.clusters[c as usize];
            cl.trails.import(&trails, now);
            cl.bootstrap = None;
            self.flush_held(c);
        }
    }

    /// The jobs a bootstrapping Bravo held are placed now, from its table.
    fn flush_held(&mut self, c: u32) {
        let held = std::mem::take(&mut self.clusters[c as usize].held);
        for (job, front) in held {
            if self.jobs[job as usize].state != JobState::Placing {
                continue;
            }
            let class = self.jobs[job as usize].class;
            match self.choose_host(c, class) {
                Some(h) if self.now < self.jobs[job as usize].deadline => {
                    self.send(Msg::Placement, 1);
                    self.dispatch(job, c, h, self.sc.latency_cluster_ms, front);
                }
                _ => self.place(job, front),
            }
        }
    }

    /// An elder's answer (or silence, if it died) reaches the new Bravo.
    fn young_answer(&mut self, c: u32, elder: u32, leader: u32) {
        let now = self.now;
        let alive = self.hosts[elder as usize].alive;
        let cl = &mut self.clusters[c as usize];
        let Some((l, b)) = cl.bootstrap.as_mut() else {
            return;
        };
        if *l != leader {
            return;
        }
        let ev = match cl.elders.iter().find(|(e, _)| *e == elder) {
            Some((_, t)) if alive => BootstrapEvent::Answer {
                from: NodeId(elder),
                snapshot: MemorySnapshot {
                    version: SNAPSHOT_VERSION,
                    taken_at: now,
                    trails: t.export(now),
                    thresholds: None,
                },
            },
            _ => BootstrapEvent::Failed {
                from: NodeId(elder),
            },
        };
        if elder != leader && matches!(ev, BootstrapEvent::Answer { .. }) {
            self.msgs[Msg::Young as usize] += 1;
        }
        b.handle(now, ev)
            .expect("the simulator's snapshots carry the current version");
        self.drive_bootstrap(c);
    }

    fn rejoin(&mut self, h: u32) {
        if self.hosts[h as usize].alive {
            return;
        }
        self.advance_area();
        let now = self.now;
        let cfg_caste = self.cfg.caste.clone();
        let host = &mut self.hosts[h as usize];
        host.alive = true;
        host.joined_at = now;
        host.thresholds = ResponseThresholds::new(&cfg_caste);
        let (slots, price, est, cap, tier, c) = (
            host.slots as u32,
            host.price,
            if host.est_speed > 0.0 {
                host.est_speed
            } else {
                self.ref_speed
            },
            host.speed * host.slots as f64,
            host.tier,
            host.cluster,
        );
        self.alive_slots += slots as u64;
        let cl = &mut self.clusters[c as usize];
        cl.alive_members.push(h);
        cl.slots += slots;
        cl.speed_sum += est * slots as f64;
        cl.price_sum += price;
        let had_leader = cl.election.leader().is_some();
        cl.election.handle(
            now,
            ElectionEvent::Join(Candidate {
                id: NodeId(h),
                capacity: cap,
                joined_at: now,
                tier,
            }),
        );
        self.msgs[Msg::Election as usize] += 1;
        self.regions[cl.region as usize].alive += 1;
        if self.mode.havoc {
            let n = cl.alive_members.len() as u32;
            cl.havoc.handle(now, CrisisEvent::Members(n));
        }
        if !had_leader || cl.election.leader() != Some(NodeId(h)) {
            while cl.election.poll().is_some() {}
        } else {
            self.new_leader(c, NONE);
        }
    }

    fn failure(&mut self, i: usize) {
        match self.sc.failures[i].clone() {
            Failure::LoseFraction { fraction, .. } => {
                let alive: Vec<u32> = (0..self.hosts.len() as u32)
                    .filter(|h| self.hosts[*h as usize].alive)
                    .collect();
                let k = (alive.len() as f64 * fraction).round() as usize;
                let mut pool = alive;
                for n in 0..k {
                    let j = self.rng_fail.random_range(n..pool.len());
                    pool.swap(n, j);
                    self.kill(pool[n]);
                }
            }
            Failure::LoseRegion { region, .. } => {
                let r = region as usize % self.regions.len();
                let hosts: Vec<u32> = self.regions[r]
                    .clusters
                    .iter()
                    .flat_map(|c| self.clusters[*c as usize].alive_members.clone())
                    .collect();
                for h in hosts {
                    self.kill(h);
                }
            }
            Failure::Surge {
                factor,
                duration_ms,
                ..
            } => {
                self.surge = factor;
                self.at(self.now + duration_ms, Ev::SurgeEnd);
            }
            Failure::LeadersLeave { .. } => {
                self.handover = true;
                for c in 0..self.clusters.len() {
                    if let Some(NodeId(l)) = self.clusters[c].election.leader() {
                        self.kill(l);
                        let t = self.now + self.sc.churn_downtime_ms;
                        self.at(t, Ev::Rejoin(l));
                    }
                }
            }
        }
    }

    // ----- periodic work ----------------------------------------------------------

    fn tick(&mut self) {
        let now = self.now;
        let tick_no = now / self.sc.tick_ms;
        // Heartbeats: every live host pings its Bravo once per tick; a host
        // that missed this tick's is declared lost. The same detector in
        // every row.
        let alive: u64 = self.regions.iter().map(|r| r.alive as u64).sum();
        self.send(Msg::Heartbeat, alive);
        let pending = std::mem::take(&mut self.lost_pending);
        let mut touched: Vec<u32> = Vec::new();
        for (c, h) in pending {
            let cl = &mut self.clusters[c as usize];
            if self.mode.havoc {
                let n = cl.alive_members.len() as u32;
                cl.havoc.handle(now, CrisisEvent::Members(n));
                cl.havoc.handle(now, CrisisEvent::HostLost(NodeId(h)));
                let reg = &mut self.regions[cl.region as usize];
                reg.havoc.handle(now, CrisisEvent::Members(reg.alive));
                reg.havoc.handle(now, CrisisEvent::HostLost(NodeId(h)));
            }
            cl.trails.remove(NodeId(h));
            if !touched.contains(&c) {
                touched.push(c);
            }
        }
        if self.mode.havoc {
            self.havoc_tick(now);
        }
        // The detected hosts' jobs are re-placed now. With HAVOC in crisis
        // (the cluster's or its region's) they go to the head of the queue
        // of the host expected to finish them first.
        for c in touched {
            let cl = &mut self.clusters[c as usize];
            let orphans = std::mem::take(&mut cl.orphans);
            let front = self.mode.havoc
                && (cl.havoc.replace_immediately()
                    || self.regions[cl.region as usize].havoc.replace_immediately());
            for j in orphans {
                if self.jobs[j as usize].state == JobState::Orphan {
                    self.replace(j, front);
                }
            }
        }
        if self.mode.young {
            self.feed_elders(now);
        }
        let per_summary = (self.cfg.memory.summary_period_ms / self.sc.tick_ms).max(1);
        if tick_no.is_multiple_of(per_summary) {
            self.summarise();
        }
        let per_elders = (self.cfg.memory.period_ms / self.sc.tick_ms).max(1);
        if tick_no.is_multiple_of(per_elders) && self.mode.young {
            self.choose_elders();
        }
        if !self.resolved() {
            self.at(now + self.sc.tick_ms, Ev::Tick);
        }
    }

    /// HAVOC's per-tick work: the detectors see the tick, queue depths are
    /// sampled, and crises enter or exit (logged with their reasons).
    fn havoc_tick(&mut self, now: Millis) {
        for r in 0..self.regions.len() {
            self.regions[r].havoc.handle_timeout(now);
            while let Some(a) = self.regions[r].havoc.poll() {
                let text = match &a {
                    HavocAction::EnterCrisis { reason } => {
                        format!("t={now} region {r} alpha: caste -> havoc: {reason}")
                    }
                    HavocAction::ExitCrisis { reason } => {
                        format!("t={now} region {r} alpha: havoc -> caste: {reason}")
                    }
                };
                if self.switches.len() < 1000 {
                    self.switches.push(text);
                }
            }
        }
        for c in 0..self.clusters.len() {
            let cl = &mut self.clusters[c];
            let q = cl.backlog.saturating_sub(cl.slots);
            cl.havoc.handle(now, CrisisEvent::QueueDepth(q));
            while let Some(a) = cl.havoc.poll() {
                let text = match &a {
                    HavocAction::EnterCrisis { reason } => {
                        format!("t={now} cluster {c}: caste -> havoc: {reason}")
                    }
                    HavocAction::ExitCrisis { reason } => {
                        format!("t={now} cluster {c}: havoc -> caste: {reason}")
                    }
                };
                if self.switches.len() < 1000 {
                    self.switches.push(text);
                }
                if matches!(a, HavocAction::EnterCrisis { .. })
                    && !self.crisis_clusters.contains(&(c as u32))
                {
                    self.crisis_clusters.push(c as u32);
                }
            }
        }
    }

    /// Memory: each Bravo sends each of its elders, with the heartbeat
    /// reply, a random sample of the completions it saw since the last
    /// tick. Each elder reinforces its own table from its own sample
    /// (weighted by how many completions each sampled one stands for), so
    /// elders' tables are estimates that differ, not copies.
    fn feed_elders(&mut self, now: Millis) {
        let mut sent = 0u64;
        for cl in &mut self.clusters {
            if cl.recent.is_empty() {
                continue;
            }
            let n = cl.recent.len();
            let k = ELDER_SAMPLE.min(n);
            let weight = n as f64 / k as f64;
            for (e, table) in &mut cl.elders {
                if !self.hosts[*e as usize].alive {
                    continue;
                }
                sent += 1;
                for _ in 0..k {
                    let (h, speed) = cl.recent[self.rng_young.random_range(0..n)];
                    table.reinforce(NodeId(h), weight * speed as f64 / self.ref_speed, now);
                }
            }
            cl.recent.clear();
        }
        self.send(Msg::Memory, sent);
    }

    /// Bravo → Alpha → Super summaries, and upper-level trail reinforcement.
    fn summarise(&mut self) {
        let now = self.now;
        let learn = self.mode.placement == Placement::Thermal && self.mode.learn;
        let mut sent = 0u64;
        for r in 0..self.regions.len() {
            let mut rs = GroupSummary::default();
            let mut comp_speed = 0.0;
            let mut comp_n = 0u32;
            for i in 0..self.regions[r].clusters.len() {
                let c = self.regions[r].clusters[i] as usize;
                let cl = &mut self.clusters[c];
                let hosts = cl.alive_members.len() as u32;
                let s = GroupSummary {
                    hosts,
                    slots: cl.slots,
                    backlog: cl.backlog,
                    speed: cl.speed_sum.max(0.0),
                    price: if hosts > 0 {
                        cl.price_sum / hosts as f64
                    } else {
                        1.0
                    },
                };
                if cl.comp_n > 0 && learn {
                    let mean = cl.comp_speed / cl.comp_n as f64;
                    self.regions[r]
                        .trails
                        .reinforce(NodeId(c as u32), mean / self.ref_speed, now);
                }
                comp_speed += cl.comp_speed;
                comp_n += cl.comp_n;
                cl.comp_speed = 0.0;
                cl.comp_n = 0;
                rs.merge(&s);
                self.regions[r].summaries[i] = s;
                self.regions[r].dispatched[i] = 0;
                sent += 1;
            }
            if comp_n > 0 && learn {
                self.super_trails.reinforce(
                    NodeId(r as u32),
                    comp_speed / comp_n as f64 / self.ref_speed,
                    now,
                );
            }
            self.region_summary[r] = rs;
            self.region_dispatched[r] = 0;
            sent += self.supers as u64;
        }
        sent += (self.supers as u64) * (self.supers as u64 - 1);
        self.send(Msg::Summary, sent);
    }

    /// Memory: each Bravo picks its elders, trusted (by its record of them)
    /// and experienced (completions), with the real [`select_elders`]. An
    /// elder kept keeps its table; a new elder starts empty (one message
    /// tells it).
    fn choose_elders(&mut self) {
        let mut sent = 0u64;
        for c in 0..self.clusters.len() {
            let cl = &mut self.clusters[c];
            let Some(NodeId(leader)) = cl.election.leader() else {
                continue;
            };
            let mut trust = TrustScores::default();
            let mut cands = Vec::with_capacity(cl.alive_members.len());
            for &m in &cl.alive_members {
                if m == leader {
                    continue;
                }
                let hm = &self.hosts[m as usize];
                trust.set(NodeId(m), record_trust(hm));
                cands.push(ElderInfo {
                    id: NodeId(m),
                    experience: hm.completions,
                });
            }
            let chosen = select_elders(&self.cfg.young, &cands, &trust);
            let mut old = std::mem::take(&mut cl.elders);
            for NodeId(e) in chosen {
                match old.iter().position(|(o, _)| *o == e) {
                    Some(i) => cl.elders.push(old.swap_remove(i)),
                    None => {
                        sent += 1;
                        let cfg = ThermalConfig {
                            capacity: self.cfg.memory.capacity,
                            ..self.cfg.thermal.clone()
                        };
                        cl.elders.push((e, PheromoneTable::new(cfg)));
                    }
                }
            }
        }
        self.send(Msg::Memory, sent);
    }

    fn finish(mut self) -> (Figures, Details) {
        self.advance_area();
        let dur_s = (self.last_done.max(1)) as f64 / 1000.0;
        let n = self.sc.nodes as f64;
        let mut rec = self.recovery.clone();
        rec.sort_by(f64::total_cmp);
        let recovery_p95_ms = percentile(&rec, 0.95);
        let mut done = std::mem::take(&mut self.completions);
        done.sort_by(f32::total_cmp);
        let done: Vec<f64> = done.into_iter().map(f64::from).collect();
        let young: Vec<f64> = self
            .clusters
            .iter()
            .filter(|c| c.young_ref.is_some())
            .map(|c| c.young_done.unwrap_or(c.young_count) as f64)
            .collect();
        let tasks_to_steady_state = if young.is_empty() {
            None
        } else {
            Some(young.iter().sum::<f64>() / young.len() as f64)
        };
        let total: u64 = self.msgs.iter().sum();
        let path = self.msgs[Msg::Placement as usize]
            + self.msgs[Msg::Result as usize]
            + self.msgs[Msg::Steal as usize]
            + self.msgs[Msg::Shed as usize];
        let figures = Figures {
            nodes: self.sc.nodes,
            msgs_per_node_per_sec: total as f64 / n / dur_s,
            msgs_per_placement: path as f64 / self.placements.max(1) as f64,
            utilisation: if self.slot_area > 0.0 {
                self.useful / self.slot_area
            } else {
                0.0
            },
            mean_completion_ms: self.completion_sum / self.completed.max(1) as f64,
            p50_completion_ms: percentile(&done, 0.50).unwrap_or(0.0),
            p95_completion_ms: percentile(&done, 0.95).unwrap_or(0.0),
            p99_completion_ms: percentile(&done, 0.99).unwrap_or(0.0),
            deadline_met_fraction: self.on_time as f64 / self.sc.jobs.max(1) as f64,
            recovery_p95_ms,
            tasks_to_steady_state,
        };
        let details = Details {
            jobs: self.sc.jobs,
            completed: self.completed,
            failed: self.failed,
            sim_ms: self.last_done,
            events: self.events,
            switches: std::mem::take(&mut self.switches),
            shed: self.shed,
            steals: self.steals,
            class_switch_rate: self.class_switches as f64 / self.completed.max(1) as f64,
            recovery_max_ms: rec.last().copied(),
            messages: MSG_NAMES.iter().copied().zip(self.msgs).collect(),
            timeline: self
                .buckets
                .iter()
                .enumerate()
                .filter(|(_, b)| b.1 > 0)
                .map(|(i, b)| (i as f64 * 0.5, b.0 / b.1 as f64))
                .collect(),
        };
        (figures, details)
    }
}

/// The `q` quantile of sorted values (nearest rank); `None` when empty.
fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    Some(sorted[i])
}
