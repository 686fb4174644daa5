//! The simulation behind [`run_cell`](super::run_cell).

use std::collections::HashMap;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{ByzantineConfig, CellDetails, CellReport, Policy, Strategy};
use crate::coordinator::{AcceptReason, Action, Coordinator, Event};
use crate::deception::Canary;
use crate::error::SecurityError;
use crate::ids::{Digest, PeerId, Region, TaskId};
use crate::receipt::{JobSpec, ReceiptFacts, TaskSpec};
use crate::reputation::{FailureKind, PeerState};

/// A stable 64-bit mixer (splitmix64), so ground truth is a pure function of
/// the input.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn low(d: &Digest) -> u64 {
    u64::from_be_bytes(d.0[..8].try_into().expect("8 bytes"))
}

const MODULE: u64 = 42;

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

struct Host {
    peer: PeerId,
    region: Region,
    speed: u64,
    attacker: bool,
    jobs: u32,
    bad_since: Option<u32>,
}

enum Answer {
    Fail,
    Receipt { output: Digest, fuel: u64 },
}

struct World {
    cfg: ByzantineConfig,
    strategy: Strategy,
    rng: ChaCha8Rng,
    hosts: Vec<Host>,
    by_peer: HashMap<PeerId, usize>,
    next_identity: u64,
    /// For the colluders' oracle: who was dispatched each input so far.
    holders: HashMap<u64, Vec<usize>>,
}

impl World {
    fn new(cfg: &ByzantineConfig, fraction: f64, strategy: Strategy) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        let attackers = (fraction * cfg.hosts as f64).round() as usize;
        let mut flags: Vec<bool> = (0..cfg.hosts).map(|i| i < attackers).collect();
        flags.shuffle(&mut rng);
        let regions = cfg.regions.max(1);
        let mut w = World {
            cfg: cfg.clone(),
            strategy,
            rng,
            hosts: Vec::with_capacity(cfg.hosts),
            by_peer: HashMap::new(),
            next_identity: 0,
            holders: HashMap::new(),
        };
        for attacker in flags {
            let region = match (attacker, cfg.attacker_regions) {
                (true, Some(k)) => Region(w.rng.random_range(0..k.max(1))),
                _ => Region(w.rng.random_range(0..regions)),
            };
            let speed = w.rng.random_range(500..2000);
            w.add_host(region, speed, attacker);
        }
        w
    }

    fn add_host(&mut self, region: Region, speed: u64, attacker: bool) -> usize {
        let peer = PeerId::from_u64(mix(self.cfg.seed ^ 0x1D).wrapping_add(self.next_identity));
        self.next_identity += 1;
        let idx = self.hosts.len();
        self.hosts.push(Host {
            peer,
            region,
            speed,
            attacker,
            jobs: 0,
            bad_since: None,
        });
        self.by_peer.insert(peer, idx);
        idx
    }

    fn only_colluders_hold(&self, input: &Digest) -> bool {
        self.holders
            .get(&low(input))
            .is_some_and(|hs| hs.iter().all(|&h| self.hosts[h].attacker))
    }

    /// What host `h` answers for `job` (holders already registered).
    fn answer(&mut self, h: usize, input: &Digest) -> Answer {
        self.hosts[h].jobs += 1;
        let correct = truth(input);
        let fuel = true_fuel(input);
        if !self.hosts[h].attacker {
            if self.rng.random_bool(self.cfg.honest_failure_rate) {
                return Answer::Fail;
            }
            return Answer::Receipt {
                output: correct,
                fuel,
            };
        }
        let (output, fuel) = match self.strategy {
            Strategy::AlwaysWrong => (Digest::from_u64(self.rng.random()), fuel),
            Strategy::RandomWrong => {
                if self.rng.random_bool(self.cfg.random_wrong_rate) {
                    (Digest::from_u64(self.rng.random()), fuel)
                } else {
                    (correct, fuel)
                }
            }
            Strategy::Colluding | Strategy::SybilChurn => (shared_wrong(input), fuel),
            Strategy::StealthColluding => {
                if self.only_colluders_hold(input) {
                    (shared_wrong(input), fuel)
                } else {
                    (correct, fuel)
                }
            }
            Strategy::Sleeper => {
                if self.hosts[h].jobs > self.cfg.sleeper_honest_tasks {
                    (shared_wrong(input), fuel)
                } else {
                    (correct, fuel)
                }
            }
            Strategy::OverBilling => (correct, (fuel as f64 * self.cfg.overbill_factor) as u64),
        };
        if output != correct || fuel != true_fuel(input) {
            let jobs = self.hosts[h].jobs;
            self.hosts[h].bad_since.get_or_insert(jobs);
        }
        Answer::Receipt { output, fuel }
    }

    fn receipt(&mut self, h: usize, job: &JobSpec, output: Digest, fuel: u64) -> ReceiptFacts {
        let speed = self.hosts[h].speed as f64;
        let jitter = 1.0 + self.rng.random::<f64>() * 0.1;
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

#[derive(Default)]
struct Tally {
    details: CellDetails,
    formed_executions: u64,
    honest_quarantined: u32,
    attackers_quarantined: u32,
    to_quarantine: Vec<u32>,
}

impl Tally {
    fn accepted(&mut self, input: &Digest, output: Digest, paid: &[(PeerId, u64)], formed: bool) {
        self.details.accepted += 1;
        let wrong_output = output != truth(input);
        let overbilled = paid.iter().any(|(_, f)| *f != true_fuel(input));
        if wrong_output || overbilled {
            self.details.wrong_accepted += 1;
            if formed {
                self.details.wrong_accepted_formed += 1;
            }
            if !wrong_output {
                self.details.overbilled_accepted += 1;
            }
        }
    }

    fn finish(
        mut self,
        cfg: &ByzantineConfig,
        fraction: f64,
        strategy: Strategy,
        policy: Policy,
        world: &World,
    ) -> CellReport {
        let d = &mut self.details;
        d.tasks = cfg.tasks as u64;
        d.attackers = world
            .hosts
            .iter()
            .take(cfg.hosts)
            .filter(|h| h.attacker)
            .count() as u64;
        d.attacker_identities = world.hosts.iter().filter(|h| h.attacker).count() as u64;
        d.replicas_per_task_formed = if d.tasks_formed == 0 {
            0.0
        } else {
            self.formed_executions as f64 / d.tasks_formed as f64
        };
        self.to_quarantine.sort_unstable();
        let median = match self.to_quarantine.len() {
            0 => None,
            n if n % 2 == 1 => Some(self.to_quarantine[n / 2] as f64),
            n => Some((self.to_quarantine[n / 2 - 1] + self.to_quarantine[n / 2]) as f64 / 2.0),
        };
        let tasks = cfg.tasks.max(1) as f64;
        CellReport {
            policy,
            fraction,
            strategy,
            wrong_accepted_rate: d.wrong_accepted as f64 / tasks,
            replicas_per_task: d.executions as f64 / tasks,
            honest_quarantined: self.honest_quarantined,
            attackers_quarantined: self.attackers_quarantined,
            tasks_to_quarantine_median: median,
            details: self.details,
        }
    }
}

pub(super) fn run(
    cfg: &ByzantineConfig,
    fraction: f64,
    strategy: Strategy,
    policy: Policy,
) -> Result<CellReport, SecurityError> {
    let mut world = World::new(cfg, fraction, strategy);
    let tally = match policy {
        Policy::Biop2p => run_biop2p(cfg, &mut world)?,
        Policy::Majority3 => run_majority3(cfg, &mut world),
    };
    Ok(tally.finish(cfg, fraction, strategy, policy, &world))
}

fn task_input(cfg: &ByzantineConfig, t: usize) -> Digest {
    Digest::from_u64(mix(cfg.seed ^ 0x7A5C).wrapping_add(t as u64))
}

fn run_biop2p(cfg: &ByzantineConfig, world: &mut World) -> Result<Tally, SecurityError> {
    let mut sec = cfg.security.clone();
    sec.seed = mix(cfg.seed ^ 0xC00D);
    sec.layers = cfg.layers;
    let mut coord = Coordinator::new(sec)?;
    let mut tally = Tally::default();
    for h in 0..world.hosts.len() {
        let host = &world.hosts[h];
        coord.handle(
            0,
            Event::PeerJoined {
                peer: host.peer,
                region: host.region,
                advertised_fuel_per_ms: host.speed,
            },
        )?;
    }
    let warmup = (cfg.tasks as f64 * cfg.warmup_fraction) as usize;
    let mut canary_seq: u64 = 0;
    let mut canary_inputs: HashMap<u64, ()> = HashMap::new();
    // Over-billing receipts of the current task: (peer, on a canary, violations before).
    let mut overbills: Vec<(PeerId, bool, u64)> = Vec::new();
    for t in 0..cfg.tasks {
        let now = (t as u64 + 1) * cfg.task_interval_ms;
        while coord.poll_timeout().is_some_and(|d| d <= now) {
            coord.handle_timeout(now);
        }
        let formed = t >= warmup;
        if formed {
            tally.details.tasks_formed += 1;
        }
        let input = task_input(cfg, t);
        world.holders.clear();
        canary_inputs.clear();
        overbills.clear();
        let mut honest_receipts = 0u32;
        let mut quorum_paid: Option<Vec<(PeerId, u64)>> = None;
        let spec = TaskSpec {
            id: TaskId(t as u64),
            module_hash: Digest::from_u64(MODULE),
            input_hash: input,
            fuel_limit: 10_000_000,
        };
        coord.handle(now, Event::TaskSubmitted(spec))?;
        loop {
            let mut round: Vec<(usize, JobSpec)> = Vec::new();
            let mut feed: Vec<Event> = Vec::new();
            while let Some(action) = coord.poll() {
                match action {
                    Action::Dispatch { peer, job, .. } => {
                        let h = world.by_peer[&peer];
                        round.push((h, job));
                    }
                    Action::Accept {
                        output,
                        paid,
                        reason,
                        ..
                    } => {
                        let before = tally.details.wrong_accepted;
                        tally.accepted(&input, output, &paid, formed);
                        if tally.details.wrong_accepted > before
                            && !matches!(reason, AcceptReason::Quorum { .. })
                        {
                            tally.details.wrong_solo += 1;
                        }
                        if matches!(reason, AcceptReason::Quorum { voters, .. } if voters >= 2) {
                            quorum_paid = Some(paid);
                        }
                    }
                    Action::GiveUp { .. } => tally.details.given_up += 1,
                    Action::NeedCanaries { count } => {
                        for _ in 0..count {
                            canary_seq += 1;
                            // Canary inputs come from the same space as real
                            // inputs, so hosts cannot tell them apart.
                            let input = Digest::from_u64(mix(cfg.seed
                                ^ 0xCA9A
                                ^ canary_seq.rotate_left(17)));
                            feed.push(Event::CanaryAvailable(Canary {
                                module_hash: Digest::from_u64(MODULE),
                                input_hash: input,
                                fuel_limit: 10_000_000,
                                output_hash: truth(&input),
                                fuel: true_fuel(&input),
                                peak_memory_bytes: true_memory(&input),
                            }));
                        }
                    }
                    Action::PeerState(ch) => {
                        if ch.to == PeerState::Quarantined {
                            let h = world.by_peer[&ch.peer];
                            if world.hosts[h].attacker {
                                tally.attackers_quarantined += 1;
                                let host = &world.hosts[h];
                                tally.to_quarantine.push(
                                    host.jobs - host.bad_since.map_or(0, |b| b.saturating_sub(1)),
                                );
                                if world.strategy == Strategy::SybilChurn {
                                    let (region, speed) = (host.region, host.speed);
                                    feed.push(Event::PeerLeft { peer: ch.peer });
                                    let n = world.add_host(region, speed, true);
                                    let peer = world.hosts[n].peer;
                                    feed.push(Event::PeerJoined {
                                        peer,
                                        region,
                                        advertised_fuel_per_ms: speed,
                                    });
                                }
                            } else {
                                tally.honest_quarantined += 1;
                            }
                        }
                    }
                }
            }
            if round.is_empty() && feed.is_empty() {
                break;
            }
            for ev in feed {
                coord.handle(now, ev)?;
            }
            tally.details.executions += round.len() as u64;
            if formed {
                tally.formed_executions += round.len() as u64;
            }
            for (h, job) in &round {
                world
                    .holders
                    .entry(low(&job.input_hash))
                    .or_default()
                    .push(*h);
                if low(&job.input_hash) != low(&input) {
                    tally.details.canaries += 1;
                    canary_inputs.insert(low(&job.input_hash), ());
                }
            }
            for (h, job) in round {
                let ev = match world.answer(h, &job.input_hash) {
                    Answer::Fail => Event::JobFailed {
                        job_id: job.job_id,
                        kind: FailureKind::Error,
                    },
                    Answer::Receipt { output, fuel } => {
                        if !world.hosts[h].attacker && low(&job.input_hash) == low(&input) {
                            honest_receipts += 1;
                        }
                        if fuel != true_fuel(&job.input_hash) {
                            let peer = world.hosts[h].peer;
                            let before = coord.reputation().peer(&peer).map_or(0, |r| r.violations);
                            overbills.push((
                                peer,
                                canary_inputs.contains_key(&low(&job.input_hash)),
                                before,
                            ));
                        }
                        let receipt = world.receipt(h, &job, output, fuel);
                        Event::ResultReturned {
                            job_id: job.job_id,
                            receipt,
                        }
                    }
                };
                coord.handle(now, ev)?;
            }
        }
        // Over-billing detection: receipts that were compared with another
        // receipt (a quorum) or a canary's known fuel.
        for (peer, on_canary, before) in overbills.drain(..) {
            if on_canary {
                tally.details.overbills_with_quorum += 1;
                if coord.reputation().peer(&peer).map_or(0, |r| r.violations) > before {
                    tally.details.overbills_caught += 1;
                }
            } else if let Some(paid) = &quorum_paid {
                if honest_receipts == 0 {
                    tally.details.overbills_colluder_only += 1;
                    continue;
                }
                tally.details.overbills_with_quorum += 1;
                if !paid.iter().any(|(p, _)| *p == peer) {
                    tally.details.overbills_caught += 1;
                }
            }
        }
    }
    Ok(tally)
}

/// The BOINC-style baseline: 3 replicas, first output with 2 matching wins.
fn run_majority3(cfg: &ByzantineConfig, world: &mut World) -> Tally {
    let mut tally = Tally::default();
    let warmup = (cfg.tasks as f64 * cfg.warmup_fraction) as usize;
    let n = world.hosts.len();
    for t in 0..cfg.tasks {
        let formed = t >= warmup;
        if formed {
            tally.details.tasks_formed += 1;
        }
        let input = task_input(cfg, t);
        world.holders.clear();
        let mut used: Vec<usize> = Vec::new();
        let mut results: Vec<(usize, Digest, u64)> = Vec::new();
        let mut want = 3usize;
        let mut accepted = false;
        while !accepted && used.len() < 10 && used.len() < n {
            let mut round = Vec::new();
            while round.len() < want && used.len() < n {
                let h = world.rng.random_range(0..n);
                if !used.contains(&h) {
                    used.push(h);
                    round.push(h);
                }
            }
            tally.details.executions += round.len() as u64;
            if formed {
                tally.formed_executions += round.len() as u64;
            }
            world
                .holders
                .entry(low(&input))
                .or_default()
                .extend(round.iter().copied());
            for h in round {
                if let Answer::Receipt { output, fuel } = world.answer(h, &input) {
                    results.push((h, output, fuel));
                }
            }
            let winner = results
                .iter()
                .find(|(_, o, _)| results.iter().filter(|(_, p, _)| p == o).count() >= 2)
                .map(|(_, o, _)| *o);
            match winner {
                Some(o) => {
                    let paid: Vec<(PeerId, u64)> = results
                        .iter()
                        .filter(|(_, p, _)| *p == o)
                        .map(|(h, _, f)| (world.hosts[*h].peer, *f))
                        .collect();
                    tally.accepted(&input, o, &paid, formed);
                    accepted = true;
                }
                None => want = 1,
            }
        }
        if !accepted {
            tally.details.given_up += 1;
        }
    }
    tally
}
