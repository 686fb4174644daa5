//! The live trust tests' worlds without sockets: the coordinator driven the
//! way `host/src/node/submitter` drives it on loopback (tests/all/trust.rs
//! and `biop2p demo`), so a policy change that would fail them fails here
//! first, in a second instead of a 15-minute host build.
//!
//! What the live driver gives the coordinator, and so what this one does:
//! - every host joins from one observed prefix (127.0.0.0/24), and with
//!   fewer than 4 prefixes `placement.distinct_regions` is off;
//! - one submitter, `max_open` (32) tasks open at once, in `run`s of a
//!   batch each, the coordinator kept between runs;
//! - each host runs one job at a time, a few ms each, in arrival order;
//! - canaries: earlier quorums (two voters or more) first, else a local run
//!   of the latest task's input, 8 local runs at most;
//! - faulty hosts lie as `host/src/node/faulty.rs` does: `Colluding` returns
//!   the one shared wrong output on every job, a `Sleeper` after its first
//!   N jobs (canaries count: the host cannot tell them apart).
//!
//! Each test states the live test it mirrors and asserts what that one does.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use security::{
    AcceptReason, Action, Canary, Coordinator, Digest, Event, JobSpec, Millis, PeerId, PeerState,
    ReceiptFacts, Region, SecurityConfig, TaskId, TaskSpec,
};

#[derive(Clone, Copy, PartialEq, Debug)]
enum Mode {
    Honest,
    Colluding,
    Sleeper(u64),
}

struct Host {
    mode: Mode,
    answered: u64,
    /// When its one slot is free again.
    free_at: Millis,
}

const LOCAL_CANARIES: usize = 8;
const MAX_OPEN: usize = 32;
const MODULE: u64 = 7;
const FUEL_LIMIT: u64 = 5_000_000_000;
const SPEED: u64 = 10_000;

fn truth(input: &Digest) -> Digest {
    let mut d = *input;
    d.0[31] ^= 0x5A;
    d
}

fn wrong(input: &Digest) -> Digest {
    let mut d = *input;
    d.0[30] ^= 0xBD;
    d
}

fn fuel(input: &Digest) -> u64 {
    50_000 + u64::from(input.0[0]) * 100
}

/// One submitter and its hosts, all on loopback.
struct Live {
    c: Coordinator,
    hosts: Vec<Host>,
    rng: ChaCha8Rng,
    now: Millis,
    /// (due, seq, job id, host, job)
    due: BinaryHeap<Reverse<(Millis, u64, usize, u64)>>,
    index: HashMap<PeerId, usize>,
    jobs: HashMap<u64, JobSpec>,
    seq: u64,
    known: VecDeque<Canary>,
    wanted: usize,
    local_left: usize,
    latest_input: Option<Digest>,
    next_task: u64,
    /// Jobs dispatched (replicas, audits, canaries), as the live summary.
    dispatched: u64,
    accusations: u64,
}

struct Outcome {
    accepted: usize,
    wrong: usize,
}

impl Live {
    fn new(modes: &[Mode], seed: u64) -> Self {
        let mut cfg = SecurityConfig {
            seed,
            ..SecurityConfig::default()
        };
        // One prefix for all (loopback): the live submitter's fallback.
        cfg.placement.distinct_regions = false;
        let mut live = Live {
            c: Coordinator::new(cfg).unwrap(),
            hosts: modes
                .iter()
                .map(|&mode| Host {
                    mode,
                    answered: 0,
                    free_at: 0,
                })
                .collect(),
            rng: ChaCha8Rng::seed_from_u64(seed ^ 0xF00D),
            now: 1_000,
            due: BinaryHeap::new(),
            index: (0..modes.len())
                .map(|i| (PeerId::from_u64(i as u64), i))
                .collect(),
            jobs: HashMap::new(),
            seq: 0,
            known: VecDeque::new(),
            wanted: 0,
            local_left: LOCAL_CANARIES,
            latest_input: None,
            next_task: 0,
            dispatched: 0,
            accusations: 0,
        };
        for i in 0..modes.len() {
            let ev = Event::PeerJoined {
                peer: PeerId::from_u64(i as u64),
                region: Region(0x7F00_0000),
                advertised_fuel_per_ms: SPEED,
            };
            live.c.handle(live.now, ev).unwrap();
        }
        let mut decided = Vec::new();
        live.drain(&mut decided);
        live
    }

    fn state(&self, i: usize) -> PeerState {
        self.c
            .reputation()
            .peer(&PeerId::from_u64(i as u64))
            .unwrap()
            .state
    }

    fn input(t: u64) -> Digest {
        let mut d = Digest::from_u64(0x1000 + t);
        d.0[0] = (t % 200) as u8 + 1;
        d
    }

    fn serve_canaries(&mut self) {
        while self.wanted > 0
            && let Some(c) = self.known.pop_front()
        {
            self.wanted -= 1;
            self.c.handle(self.now, Event::CanaryAvailable(c)).unwrap();
        }
        if self.wanted > 0
            && self.local_left > 0
            && let Some(input) = self.latest_input
        {
            // A local sandbox run: honest by construction.
            self.local_left -= 1;
            self.wanted -= 1;
            let c = Canary {
                module_hash: Digest::from_u64(MODULE),
                input_hash: input,
                fuel_limit: FUEL_LIMIT,
                output_hash: truth(&input),
                fuel: fuel(&input),
                peak_memory_bytes: 65_536,
            };
            self.c.handle(self.now, Event::CanaryAvailable(c)).unwrap();
        }
    }

    /// Acts on every action; `decided` collects (task, accepted output).
    fn drain(&mut self, decided: &mut Vec<(TaskId, Option<Digest>)>) {
        loop {
            while let Some(a) = self.c.poll() {
                self.act(a, decided);
            }
            let before = (self.wanted, self.known.len(), self.local_left);
            self.serve_canaries();
            if before == (self.wanted, self.known.len(), self.local_left) {
                return;
            }
        }
    }

    fn act(&mut self, a: Action, decided: &mut Vec<(TaskId, Option<Digest>)>) {
        match a {
            Action::Dispatch { peer, job, .. } => {
                self.dispatched += 1;
                let h = self.index[&peer];
                let run = self.rng.random_range(2..12);
                let done = self.hosts[h].free_at.max(self.now + 1) + run;
                self.hosts[h].free_at = done;
                self.seq += 1;
                self.due.push(Reverse((done + 1, self.seq, h, job.job_id)));
                self.jobs.insert(job.job_id, job);
            }
            Action::Accept {
                task,
                output,
                fuel,
                reason,
                ..
            } => {
                if let AcceptReason::Quorum { voters, .. } = reason
                    && voters >= 2
                    && self.known.len() < 256
                {
                    self.known.push_back(Canary {
                        module_hash: Digest::from_u64(MODULE),
                        input_hash: Self::input(task.0),
                        fuel_limit: FUEL_LIMIT,
                        output_hash: output,
                        fuel,
                        peak_memory_bytes: 65_536,
                    });
                }
                decided.push((task, Some(output)));
            }
            Action::GiveUp { task, .. } => decided.push((task, None)),
            Action::NeedCanaries { count } => self.wanted += count,
            Action::Accuse { .. } => self.accusations += 1,
            Action::PeerState(_) | Action::Verify { .. } => {}
        }
    }

    fn canaries(&self) -> u64 {
        let s = self.c.stats();
        s.spot_canaries + s.decoys
    }

    /// Runs `n` tasks to a decision, `MAX_OPEN` open at once.
    fn run(&mut self, n: usize) -> Outcome {
        let first = self.next_task;
        let mut queue: VecDeque<u64> = (first..first + n as u64).collect();
        self.next_task += n as u64;
        let mut open: HashSet<u64> = HashSet::new();
        let mut out = Outcome {
            accepted: 0,
            wrong: 0,
        };
        let mut left = n;
        let mut decided = Vec::new();
        while left > 0 {
            while open.len() < MAX_OPEN
                && let Some(t) = queue.pop_front()
            {
                open.insert(t);
                let input = Self::input(t);
                self.latest_input = Some(input);
                let spec = TaskSpec {
                    id: TaskId(t),
                    module_hash: Digest::from_u64(MODULE),
                    input_hash: input,
                    fuel_limit: FUEL_LIMIT,
                };
                self.c.handle(self.now, Event::TaskSubmitted(spec)).unwrap();
                self.drain(&mut decided);
            }
            for (task, output) in decided.drain(..) {
                if open.remove(&task.0) {
                    left -= 1;
                    if let Some(o) = output {
                        out.accepted += 1;
                        if o != truth(&Self::input(task.0)) {
                            out.wrong += 1;
                        }
                    }
                }
            }
            if left == 0 {
                break;
            }
            // The next answer, or the coordinator's timer.
            let next_answer = self.due.peek().map(|Reverse((t, ..))| *t);
            let timer = self.c.poll_timeout();
            let at = match (next_answer, timer) {
                (Some(a), Some(t)) => a.min(t),
                (a, t) => a.or(t).expect("something pending"),
            }
            .max(self.now);
            self.now = at;
            if next_answer == Some(at) {
                let Reverse((_, _, h, job_id)) = self.due.pop().unwrap();
                let job = self.jobs.remove(&job_id).unwrap();
                self.answer(h, job);
            } else {
                self.c.handle_timeout(self.now);
            }
            self.drain(&mut decided);
        }
        out
    }

    fn answer(&mut self, h: usize, job: JobSpec) {
        let host = &mut self.hosts[h];
        host.answered += 1;
        let lies = match host.mode {
            Mode::Honest => false,
            Mode::Colluding => true,
            Mode::Sleeper(n) => host.answered > n,
        };
        let input = job.input_hash;
        let f = fuel(&input);
        let receipt = ReceiptFacts {
            job_id: job.job_id,
            host: PeerId::from_u64(h as u64),
            module_hash: job.module_hash,
            input_hash: input,
            output_hash: if lies { wrong(&input) } else { truth(&input) },
            fuel_used: f,
            peak_memory_bytes: 65_536,
            wall_ms: (f / SPEED).max(1),
        };
        self.c
            .handle(
                self.now,
                Event::ResultReturned {
                    job_id: job.job_id,
                    receipt,
                },
            )
            .unwrap();
    }
}

fn modes(honest: usize, faulty: &[Mode]) -> Vec<Mode> {
    let mut m = vec![Mode::Honest; honest];
    m.extend_from_slice(faulty);
    m
}

const SEEDS: std::ops::Range<u64> = 1..21;

/// Runs `f` for every seed (`LOOPBACK_SEEDS=N` runs seeds 1..N instead),
/// and fails naming every seed that failed.
fn each_seed(f: impl Fn(u64) + std::panic::RefUnwindSafe) {
    let n: u64 = std::env::var("LOOPBACK_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(SEEDS.end);
    let failed: Vec<u64> = (SEEDS.start..n)
        .filter(|&seed| std::panic::catch_unwind(|| f(seed)).is_err())
        .collect();
    assert!(failed.is_empty(), "failed for seeds {failed:?}");
}

/// tests/all/trust.rs `colluding_liars_are_quarantined_and_nothing_wrong_is_accepted`.
#[test]
fn loopback_colluders_are_all_quarantined_in_300_jobs() {
    each_seed(|seed| {
        let mut live = Live::new(&modes(7, &[Mode::Colluding; 3]), seed);
        let a = live.run(50);
        let after_50 = live.dispatched;
        let b = live.run(250);
        let per_job = (live.dispatched - after_50) as f64 / 250.0;
        let states: Vec<PeerState> = (0..10).map(|i| live.state(i)).collect();
        let q = states
            .iter()
            .filter(|s| **s == PeerState::Quarantined)
            .count();
        let msg = format!(
            "seed {seed}: wrong {} accepted {} per_job {per_job:.3} states {states:?} canaries {}",
            a.wrong + b.wrong,
            a.accepted + b.accepted,
            live.canaries()
        );
        assert_eq!(a.wrong + b.wrong, 0, "{msg}");
        assert_eq!(a.accepted + b.accepted, 300, "{msg}");
        assert!(
            states[7..].iter().all(|s| *s == PeerState::Quarantined),
            "{msg}"
        );
        assert_eq!(q, 3, "{msg}");
        assert!(per_job <= 1.5, "{msg}");
        assert!(live.canaries() > 0, "{msg}");
    });
}

/// tests/all/trust.rs `a_sleeper_is_caught_by_spot_checks_or_canaries`.
#[test]
fn loopback_sleeper_is_caught_within_300_jobs() {
    each_seed(|seed| {
        let mut live = Live::new(&modes(6, &[Mode::Sleeper(20)]), seed);
        let mut caught = None;
        let mut wrong = 0;
        for batch in 0..12 {
            wrong += live.run(25).wrong;
            if matches!(live.state(6), PeerState::Suspect | PeerState::Quarantined) {
                caught = Some((batch + 1) * 25);
                break;
            }
        }
        let states: Vec<PeerState> = (0..7).map(|i| live.state(i)).collect();
        let jobs = live.hosts[6].answered;
        assert!(
            caught.is_some(),
            "seed {seed}: sleeper not caught in 300 jobs (it answered {jobs}), wrong {wrong}, states {states:?}"
        );
        assert!(
            states[..6]
                .iter()
                .all(|s| matches!(s, PeerState::Newcomer | PeerState::Trusted)),
            "seed {seed}: {states:?}"
        );
    });
}

/// `biop2p demo --hosts 8 --faulty 2 --jobs 60` (tests/all/trust.rs
/// `the_demo_quarantines_its_liars_with_adaptive_replication`).
#[test]
fn loopback_demo_quarantines_both_liars_in_60_jobs() {
    each_seed(|seed| {
        let mut live = Live::new(&modes(6, &[Mode::Colluding; 2]), seed);
        let out = live.run(60);
        let states: Vec<PeerState> = (0..8).map(|i| live.state(i)).collect();
        let msg = format!("seed {seed}: wrong {} states {states:?}", out.wrong);
        assert_eq!(out.wrong, 0, "{msg}");
        assert!(
            states[6..].iter().all(|s| *s == PeerState::Quarantined),
            "{msg}"
        );
        assert!(
            states[..6]
                .iter()
                .all(|s| matches!(s, PeerState::Newcomer | PeerState::Trusted)),
            "{msg}"
        );
    });
}

/// tests/all/trust.rs `replicas_are_own_jobs_outputs_are_the_submitters_and_reports_are_rerun`
/// (its first part: 30 jobs, nothing wrong, a lie reported).
#[test]
fn loopback_thirty_jobs_with_two_liars_accept_nothing_wrong_and_report_a_lie() {
    each_seed(|seed| {
        let mut live = Live::new(&modes(4, &[Mode::Colluding; 2]), seed);
        let out = live.run(30);
        assert_eq!(out.wrong, 0, "seed {seed}");
        assert!(live.accusations > 0, "seed {seed}: no lie reported");
    });
}
