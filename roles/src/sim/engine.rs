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
use crate::hierarchy::{GroupSummary, PlacementPath};
use crate::id::{Millis, NodeId};
use crate::memory::{MemorySnapshot, SNAPSHOT_VERSION};
use crate::pheromone::PheromoneTable;
use crate::taxonomy::{NodeConfig, NodeType};
use crate::threshold::{ResponseThresholds, TaskClass};
use crate::trust::TrustScores;
use crate::young::{ElderInfo, merge_snapshots, select_elders};

/// How placement is decided in one run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Placement {
    Thermal,
    Random,
    LeastLoaded,
}

/// Which roles are on in one run.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Mode {
    pub placement: Placement,
    pub caste: bool,
    pub havoc: bool,
    pub young: bool,
}

impl Mode {
    pub(crate) fn roles() -> Self {
        Mode {
            placement: Placement::Thermal,
            caste: true,
            havoc: true,
            young: true,
        }
    }

    pub(crate) fn baseline(b: Baseline) -> Self {
        match b {
            Baseline::Random => Mode {
                placement: Placement::Random,
                caste: false,
                havoc: false,
                young: false,
            },
            Baseline::LeastLoaded => Mode {
                placement: Placement::LeastLoaded,
                caste: false,
                havoc: false,
                young: false,
            },
            Baseline::ColdStart => Mode {
                young: false,
                ..Mode::roles()
            },
        }
    }
}

const NONE: u32 = u32::MAX;
/// Class work multipliers (cpu, memory, small), before normalising to mean 1.
const CLASS_WORK: [f64; 3] = [1.5, 1.0, 0.25];
/// Window of the Young quality measurement, placements.
const YOUNG_WINDOW: usize = 10;
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
    Timeout {
        job: u32,
        attempt: u32,
    },
    Grace {
        job: u32,
        attempt: u32,
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
}

#[derive(Clone, Debug)]
struct Job {
    class: u8,
    work: f32,
    submit: Millis,
    submitter_region: u32,
    attempt: u32,
    host: u32,
    state: JobState,
    lost_at: Option<Millis>,
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
    snapshot: Option<MemorySnapshot>,
    elders: Vec<u32>,
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
    // Measurements.
    msgs: u64,
    placement_msgs: u64,
    placements: u64,
    completed: u64,
    completion_sum: f64,
    recovery: Vec<f64>,
    class_switches: u64,
    switches: Vec<String>,
    shed: u64,
    events: u64,
    buckets: Vec<(f64, u64)>,
    last_done: Millis,
    handover: bool,
}

fn log_uniform(rng: &mut ChaCha8Rng, lo: f64, hi: f64) -> f64 {
    if hi <= lo {
        return lo;
    }
    (rng.random_range(lo.ln()..hi.ln())).exp()
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
                snapshot: None,
                elders: Vec::new(),
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
            msgs: 0,
            placement_msgs: 0,
            placements: 0,
            completed: 0,
            completion_sum: 0.0,
            recovery: Vec::new(),
            class_switches: 0,
            switches: Vec::new(),
            shed: 0,
            events: 0,
            buckets: Vec::new(),
            last_done: 0,
            handover: false,
        };
        e.summarise();
        e
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
            if self.completed == self.sc.jobs {
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
            Ev::Timeout { job, attempt } => {
                let j = &self.jobs[job as usize];
                if j.state == JobState::Done || j.attempt != attempt {
                    return;
                }
                if j.state == JobState::Orphan {
                    self.replace(job, false);
                } else {
                    // The host answers the status ping: still queued, wait on.
                    let t = self.now + self.sc.job_timeout_ms;
                    self.msgs += 2;
                    self.at(t, Ev::Timeout { job, attempt });
                }
            }
            Ev::Grace { job, attempt } => {
                let j = &self.jobs[job as usize];
                if j.state == JobState::Orphan && j.attempt == attempt {
                    self.replace(job, false);
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
            submitter_region,
            attempt: 0,
            host: NONE,
            state: JobState::Placing,
            lost_at: None,
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
        match self.mode.placement {
            Placement::Thermal => {
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
            Placement::Random => {
                let total: u32 = self.regions.iter().map(|r| r.alive).sum();
                if total == 0 {
                    return None;
                }
                let mut k = self.rng_place.random_range(0..total);
                for (i, r) in self.regions.iter().enumerate() {
                    if k < r.alive {
                        return Some(i as u32);
                    }
                    k -= r.alive;
                }
                None
            }
            Placement::LeastLoaded => (0..n)
                .filter(|r| self.regions[*r].alive > 0)
                .min_by(|a, b| {
                    let la = self.load_ratio(&self.region_summary[*a], self.region_dispatched[*a]);
                    let lb = self.load_ratio(&self.region_summary[*b], self.region_dispatched[*b]);
                    la.total_cmp(&lb)
                })
                .map(|r| r as u32),
        }
    }

    fn load_ratio(&self, s: &GroupSummary, extra: u32) -> f64 {
        (s.backlog + extra) as f64 / s.slots.max(1) as f64
    }

    fn choose_cluster(&mut self, r: u32) -> Option<u32> {
        let reg = &self.regions[r as usize];
        match self.mode.placement {
            Placement::Thermal => {
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
                let i =
                    self.regions[r as usize]
                        .trails
                        .choose(&cand, self.now, &mut self.rng_place);
                let pick = i.map(|i| cand[i].0.0);
                self.cand = cand;
                pick
            }
            Placement::Random => {
                let total: usize = reg
                    .clusters
                    .iter()
                    .map(|c| self.clusters[*c as usize].alive_members.len())
                    .sum();
                if total == 0 {
                    return None;
                }
                let mut k = self.rng_place.random_range(0..total);
                for c in &reg.clusters {
                    let a = self.clusters[*c as usize].alive_members.len();
                    if k < a {
                        return Some(*c);
                    }
                    k -= a;
                }
                None
            }
            Placement::LeastLoaded => reg
                .clusters
                .iter()
                .enumerate()
                .filter(|(_, c)| !self.clusters[**c as usize].alive_members.is_empty())
                .min_by(|(a, _), (b, _)| {
                    self.load_ratio(&reg.summaries[*a], reg.dispatched[*a])
                        .total_cmp(&self.load_ratio(&reg.summaries[*b], reg.dispatched[*b]))
                })
                .map(|(_, c)| *c),
        }
    }

    fn choose_host(&mut self, c: u32, class: u8) -> Option<u32> {
        let cl = &self.clusters[c as usize];
        if cl.alive_members.is_empty() {
            return None;
        }
        match self.mode.placement {
            Placement::Thermal => {
                self.cand.clear();
                for &h in &cl.alive_members {
                    let host = &self.hosts[h as usize];
                    let slots = host.slots as f64;
                    let mut eta = slots / (1.0 + host.load() as f64 / slots) / host.price;
                    if self.mode.caste {
                        eta *= host.thresholds.response(
                            &self.cfg.caste,
                            TaskClass::ALL[class as usize],
                            0.5,
                        );
                    }
                    self.cand.push((NodeId(h), eta));
                }
                let cand = std::mem::take(&mut self.cand);
                let i =
                    self.clusters[c as usize]
                        .trails
                        .choose(&cand, self.now, &mut self.rng_place);
                let pick = i.map(|i| cand[i].0.0);
                self.cand = cand;
                pick
            }
            Placement::Random => {
                let i = self.rng_place.random_range(0..cl.alive_members.len());
                Some(cl.alive_members[i])
            }
            Placement::LeastLoaded => cl.alive_members.iter().copied().min_by(|a, b| {
                let ha = &self.hosts[*a as usize];
                let hb = &self.hosts[*b as usize];
                (ha.load() as f64 / ha.slots as f64)
                    .total_cmp(&(hb.load() as f64 / hb.slots as f64))
                    .then(a.cmp(b))
            }),
        }
    }

    fn latency(&self, a: u32, b: u32) -> Millis {
        if a == b {
            self.sc.latency_region_ms
        } else {
            self.sc.latency_global_ms
        }
    }

    /// Full placement through Super → Alpha → Bravo → host.
    fn place(&mut self, job: u32, front: bool) {
        let class = self.jobs[job as usize].class;
        let sreg = self.jobs[job as usize].submitter_region;
        let Some(r) = self.choose_region() else {
            let t = self.now + self.sc.tick_ms;
            self.at(t, Ev::Retry { job });
            return;
        };
        let Some(c) = self.choose_cluster(r) else {
            let t = self.now + self.sc.tick_ms;
            self.at(t, Ev::Retry { job });
            return;
        };
        // Load shedding: a cluster in crisis defers new work when overfull.
        if self.mode.havoc && !front && self.jobs[job as usize].lost_at.is_none() {
            let cl = &self.clusters[c as usize];
            if cl.havoc.should_shed(cl.backlog, cl.slots) {
                self.shed += 1;
                self.msgs += 3;
                let t = self.now + self.sc.tick_ms;
                self.at(t, Ev::Retry { job });
                return;
            }
        }
        let Some(h) = self.choose_host(c, class) else {
            let t = self.now + self.sc.tick_ms;
            self.at(t, Ev::Retry { job });
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
        self.placement_msgs += PlacementPath::MESSAGES as u64;
        self.msgs += PlacementPath::MESSAGES as u64;
        self.dispatch(job, c, h, lat, front);
    }

    /// Emergency re-placement by the job's Bravo inside its cluster (two
    /// messages: dispatch, report), or a full placement if the cluster is empty.
    fn replace(&mut self, job: u32, front: bool) {
        let j = &mut self.jobs[job as usize];
        j.attempt += 1;
        j.state = JobState::Placing;
        let old = j.host;
        let class = j.class;
        let c = if old != NONE {
            self.hosts[old as usize].cluster
        } else {
            NONE
        };
        if c != NONE && !self.clusters[c as usize].alive_members.is_empty() {
            let pick = if front && self.mode.havoc {
                self.emergency_host(c, job)
            } else {
                self.choose_host(c, class)
            };
            if let Some(h) = pick {
                self.placement_msgs += 2;
                self.msgs += 2;
                self.dispatch(job, c, h, self.sc.latency_cluster_ms, front);
                return;
            }
        }
        self.place(job, front);
    }

    /// HAVOC's emergency re-placement: no exploration, the host expected to
    /// finish this job first (the job goes to the head of its queue), by the
    /// Bravo's learned speeds.
    fn emergency_host(&self, c: u32, job: u32) -> Option<u32> {
        let work = self.jobs[job as usize].work as f64;
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
                (wait + work / est, h)
            })
            .min_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)))
            .map(|(_, h)| h)
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
            // Connection refused: the Bravo re-places at once.
            let c = host.cluster;
            self.clusters[c as usize].backlog = self.clusters[c as usize].backlog.saturating_sub(1);
            self.jobs[job as usize].host = NONE;
            self.jobs[job as usize].lost_at.get_or_insert(self.now);
            self.place(job, front);
            return;
        }
        host.inflight -= 1;
        if self.jobs[job as usize].state == JobState::Done {
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

    /// Caste's stimulus side: a host with a free slot and nothing queued asks
    /// its Bravo for work; the Bravo moves the last queued job of the most
    /// loaded member, of the class the idle host responds to most, if the
    /// idle host would finish it sooner (by the Bravo's learned speeds).
    /// Two messages.
    fn steal(&mut self, h: u32) {
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
        let stimuli = self.hosts[v as usize].class_count.map(|n| n as f64);
        let class = self.hosts[h as usize].thresholds.choose_class(
            &self.cfg.caste,
            stimuli,
            &mut self.rng_place,
        );
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
        self.msgs += 2;
        self.placement_msgs += 2;
        let me = &mut self.hosts[h as usize];
        me.class_count[jc] += 1;
        me.queue.push_back(job);
        self.jobs[job as usize].host = h;
    }

    fn try_start(&mut self, h: u32) {
        loop {
            let host = &self.hosts[h as usize];
            if host.running_jobs.len() >= host.slots as usize {
                return;
            }
            if host.queue.is_empty() {
                if !self.mode.caste {
                    return;
                }
                self.steal(h);
                if self.hosts[h as usize].queue.is_empty() {
                    return;
                }
            }
            let host = &self.hosts[h as usize];
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
            self.jobs[job as usize].state = JobState::Running;
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
        if self.mode.placement == Placement::Thermal {
            cl.trails
                .reinforce(NodeId(h), speed / self.ref_speed, self.now);
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
        let r_host = self.clusters[c as usize].region;
        let lat = self.latency(r_host, self.jobs[job as usize].submitter_region);
        let j = &mut self.jobs[job as usize];
        if j.state != JobState::Done {
            j.state = JobState::Done;
            let done = self.now + lat;
            self.completed += 1;
            self.completion_sum += (done - j.submit) as f64;
            if let Some(l) = j.lost_at {
                self.recovery.push((done - l) as f64);
            }
            let b = (done / 500) as usize;
            if self.buckets.len() <= b {
                self.buckets.resize(b + 1, (0.0, 0));
            }
            self.buckets[b].0 += (done - j.submit) as f64;
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
        for &j in &orphans {
            let job = &mut self.jobs[j as usize];
            job.state = JobState::Orphan;
            job.lost_at.get_or_insert(self.now);
        }
        let cl = &mut self.clusters[c as usize];
        cl.alive_members.retain(|m| *m != h);
        cl.slots -= slots;
        cl.backlog = cl.backlog.saturating_sub(load);
        cl.speed_sum -= est * slots as f64;
        cl.price_sum -= price;
        cl.orphans.extend(orphans.iter().copied());
        self.regions[cl.region as usize].alive -= 1;
        self.lost_pending.push((c, h));
        if !self.mode.havoc {
            // Without HAVOC the submitter's timeout is the recovery path.
            for j in orphans {
                let attempt = self.jobs[j as usize].attempt;
                let t = self.now + self.sc.job_timeout_ms;
                self.at(t, Ev::Timeout { job: j, attempt });
            }
        }
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
        // The new Bravo's trail table: Young copies trusted elders' snapshots;
        // otherwise it starts cold.
        let mut table = PheromoneTable::new(cfg.thermal.clone());
        if self.mode.young
            && let Some(snap) = &cl.snapshot
        {
            let alive_elders: Vec<u32> = cl
                .elders
                .iter()
                .copied()
                .filter(|e| self.hosts[*e as usize].alive)
                .collect();
            let mut trust = TrustScores::default();
            for e in &alive_elders {
                let up = now.saturating_sub(self.hosts[*e as usize].joined_at) as f64;
                trust.set(NodeId(*e), (up / 30_000.0).clamp(0.5, 1.0));
            }
            let snaps: Vec<(f64, &MemorySnapshot)> = alive_elders
                .iter()
                .map(|e| (crate::trust::TrustSource::trust(&trust, NodeId(*e)), snap))
                .collect();
            self.msgs += 2 * snaps.len() as u64;
            let (trails, _) = merge_snapshots(&snaps);
            table.import(&trails, now);
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
        self.msgs += 1;
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
        // Heartbeats: every live host pings its Bravo once per tick.
        let alive: u64 = self.regions.iter().map(|r| r.alive as u64).sum();
        self.msgs += alive;
        // Lost hosts are noticed now.
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
                if !cl.orphans.is_empty() {
                    let orphans = std::mem::take(&mut cl.orphans);
                    let immediate = cl.havoc.replace_immediately()
                        || self.regions[cl.region as usize].havoc.replace_immediately();
                    for j in orphans {
                        if self.jobs[j as usize].state != JobState::Orphan {
                            continue;
                        }
                        if immediate {
                            self.replace(j, true);
                        } else {
                            let attempt = self.jobs[j as usize].attempt;
                            let t = now + self.cfg.havoc.normal_grace_ms;
                            self.at(t, Ev::Grace { job: j, attempt });
                        }
                    }
                }
            }
        } else {
            for c in touched {
                self.clusters[c as usize].orphans.clear();
            }
        }
        let per_summary = (self.cfg.memory.summary_period_ms / self.sc.tick_ms).max(1);
        if tick_no.is_multiple_of(per_summary) {
            self.summarise();
        }
        let per_snapshot = (self.cfg.memory.period_ms / self.sc.tick_ms).max(1);
        if tick_no.is_multiple_of(per_snapshot) && self.mode.placement == Placement::Thermal {
            self.replicate();
        }
        if self.completed < self.sc.jobs {
            self.at(now + self.sc.tick_ms, Ev::Tick);
        }
    }

    /// Bravo → Alpha → Super summaries, and upper-level trail reinforcement.
    fn summarise(&mut self) {
        let now = self.now;
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
                if cl.comp_n > 0 && self.mode.placement == Placement::Thermal {
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
                self.msgs += 1;
            }
            if comp_n > 0 && self.mode.placement == Placement::Thermal {
                self.super_trails.reinforce(
                    NodeId(r as u32),
                    comp_speed / comp_n as f64 / self.ref_speed,
                    now,
                );
            }
            self.region_summary[r] = rs;
            self.region_dispatched[r] = 0;
            self.msgs += self.supers as u64;
        }
        self.msgs += (self.supers as u64) * (self.supers as u64 - 1);
    }

    /// Memory: each Bravo replicates its trail snapshot to its trusted elders.
    fn replicate(&mut self) {
        let now = self.now;
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
                let up = now.saturating_sub(hm.joined_at) as f64;
                trust.set(NodeId(m), (up / 30_000.0).clamp(0.5, 1.0));
                cands.push(ElderInfo {
                    id: NodeId(m),
                    experience: hm.completions,
                });
            }
            let elders = select_elders(&self.cfg.young, &cands, &trust);
            cl.elders = elders.iter().map(|e| e.0).collect();
            cl.snapshot = Some(MemorySnapshot {
                version: SNAPSHOT_VERSION,
                taken_at: now,
                trails: cl.trails.export(now),
                thresholds: None,
                history: Vec::new(),
            });
            self.msgs += elders.len() as u64;
        }
    }

    fn finish(mut self) -> (Figures, Details) {
        self.advance_area();
        let dur_s = (self.last_done.max(1)) as f64 / 1000.0;
        let n = self.sc.nodes as f64;
        let mut rec = self.recovery.clone();
        rec.sort_by(f64::total_cmp);
        let recovery_p95_ms = if rec.is_empty() {
            None
        } else {
            Some(rec[((rec.len() as f64 * 0.95).ceil() as usize).clamp(1, rec.len()) - 1])
        };
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
        let figures = Figures {
            nodes: self.sc.nodes,
            msgs_per_node_per_sec: self.msgs as f64 / n / dur_s,
            msgs_per_placement: self.placement_msgs as f64 / self.placements.max(1) as f64,
            utilisation: if self.slot_area > 0.0 {
                self.useful / self.slot_area
            } else {
                0.0
            },
            mean_completion_ms: self.completion_sum / self.completed.max(1) as f64,
            recovery_p95_ms,
            tasks_to_steady_state,
        };
        let details = Details {
            jobs: self.sc.jobs,
            completed: self.completed,
            sim_ms: self.last_done,
            events: self.events,
            switches: std::mem::take(&mut self.switches),
            shed: self.shed,
            class_switch_rate: self.class_switches as f64 / self.completed.max(1) as f64,
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
