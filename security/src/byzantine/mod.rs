//! The Byzantine benchmark: honest hosts and attackers, run through the real
//! security code.
//!
//! One *cell* is (attacker fraction, [`Strategy`], [`Policy`]). The simulated
//! population is built from the config seed, so both policies of a cell face
//! the same hosts, the same attackers and the same task inputs. Time is a
//! fixed tick per task; nothing reads a clock, so a cell is deterministic for
//! a seed.
//!
//! Attackers get the strongest information the strategy definitions allow:
//! colluders know which other colluders hold the same task (all hosts the
//! task was dispatched to so far). The coordinator never tells a host about
//! replication, so a colluder alone on a task cannot tell a solo run, a run
//! that will be audited later, or a canary apart.
//!
//! The lead wires `biop2p sim byzantine` to [`run_matrix`]; one JSON line per
//! [`CellReport`].

mod sim;

use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::coordinator::SecurityConfig;
use crate::error::SecurityError;
use crate::layers::LayerSet;

/// The attacker fractions of the default matrix.
pub const DEFAULT_FRACTIONS: [f64; 5] = [0.0, 0.10, 0.25, 0.33, 0.40];

/// How attackers behave.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Every answer wrong, each a different wrong value.
    AlwaysWrong,
    /// Wrong (a unique value) with probability `random_wrong_rate`.
    RandomWrong,
    /// Every answer the same wrong value as the other colluders.
    Colluding,
    /// Right whenever an honest host also holds the task (it could be
    /// compared); the shared wrong value when only colluders hold it, which
    /// includes running it alone. The worst case for adaptive replication.
    StealthColluding,
    /// Honest for `sleeper_honest_tasks` jobs, then the shared wrong value.
    Sleeper,
    /// Right output, fuel inflated by `overbill_factor` (wall time inflated
    /// to match, so the speed check alone cannot see it).
    OverBilling,
    /// Colluding, and after each quarantine rejoins under a new identity from
    /// the same region.
    SybilChurn,
}

impl Strategy {
    /// All strategies, in the order of the default matrix.
    pub const ALL: [Strategy; 7] = [
        Strategy::AlwaysWrong,
        Strategy::RandomWrong,
        Strategy::Colluding,
        Strategy::StealthColluding,
        Strategy::Sleeper,
        Strategy::OverBilling,
        Strategy::SybilChurn,
    ];

    /// The CLI name.
    pub fn name(self) -> &'static str {
        match self {
            Strategy::AlwaysWrong => "always-wrong",
            Strategy::RandomWrong => "random-wrong",
            Strategy::Colluding => "colluding",
            Strategy::StealthColluding => "stealth-colluding",
            Strategy::Sleeper => "sleeper",
            Strategy::OverBilling => "over-billing",
            Strategy::SybilChurn => "sybil-churn",
        }
    }
}

impl FromStr for Strategy {
    type Err = SecurityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Strategy::ALL
            .into_iter()
            .find(|x| x.name() == s)
            .ok_or_else(|| SecurityError::UnknownStrategy(s.to_string()))
    }
}

/// Which validation policy runs the cell.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    /// This crate's [`Coordinator`](crate::Coordinator) with the configured layers.
    #[serde(rename = "biop2p")]
    Biop2p,
    /// The BOINC-style baseline: 3 replicas on random hosts, accept the first
    /// output 2 of them agree on, no reputation, no counter checks.
    #[serde(rename = "majority3")]
    Majority3,
}

impl Policy {
    /// Both policies.
    pub const ALL: [Policy; 2] = [Policy::Biop2p, Policy::Majority3];

    /// The CLI/JSON name.
    pub fn name(self) -> &'static str {
        match self {
            Policy::Biop2p => "biop2p",
            Policy::Majority3 => "majority3",
        }
    }
}

impl FromStr for Policy {
    type Err = SecurityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Policy::ALL
            .into_iter()
            .find(|x| x.name() == s)
            .ok_or_else(|| SecurityError::UnknownPolicy(s.to_string()))
    }
}

/// Benchmark parameters. The defaults are the reference scenario (1000 hosts,
/// 200,000 tasks, 5% honest failures, fixed seed); tests shrink `tasks`.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ByzantineConfig {
    /// Hosts at the start (attackers included).
    pub hosts: usize,
    /// Real tasks submitted.
    pub tasks: usize,
    /// Seed for the population, inputs and the coordinator.
    pub seed: u64,
    /// Probability an honest job fails (error/timeout, no result). Failures
    /// are reported, not silently wrong: that is the sandbox's job.
    pub honest_failure_rate: f64,
    /// Address regions hosts are spread over.
    pub regions: u32,
    /// If set, all attackers live in this many regions (one operator's
    /// networks); if not, they are spread like everyone else (the harder case
    /// for distinct-region placement).
    pub attacker_regions: Option<u32>,
    /// Wrong-answer probability of `random-wrong` attackers.
    pub random_wrong_rate: f64,
    /// Honest jobs a `sleeper` runs before turning.
    pub sleeper_honest_tasks: u32,
    /// Fuel multiplier of `over-billing` attackers.
    pub overbill_factor: f64,
    /// Share of tasks counted as warm-up: the "once reputations have formed"
    /// figures in [`CellDetails`] cover the tasks after it.
    pub warmup_fraction: f64,
    /// Simulated ms between task submissions.
    pub task_interval_ms: u64,
    /// Layers enabled for the biop2p policy (ablation).
    pub layers: LayerSet,
    /// Coordinator config for the biop2p policy (its `seed` and `layers` are
    /// overridden from this struct).
    pub security: SecurityConfig,
}

impl Default for ByzantineConfig {
    fn default() -> Self {
        Self {
            hosts: 1000,
            tasks: 200_000,
            seed: 0xB10_9229,
            honest_failure_rate: 0.05,
            regions: 256,
            attacker_regions: None,
            random_wrong_rate: 0.5,
            sleeper_honest_tasks: 100,
            overbill_factor: 1.5,
            warmup_fraction: 0.25,
            task_interval_ms: 10,
            layers: LayerSet::ALL,
            security: SecurityConfig::default(),
        }
    }
}

/// One JSON line of the benchmark. Serialises to exactly the fields the CLI
/// promises; more figures are in `details` (not serialised here).
#[derive(Clone, PartialEq, Debug, Serialize)]
pub struct CellReport {
    /// `biop2p` or `majority3`.
    pub policy: Policy,
    /// Attacker fraction of the initial population.
    pub fraction: f64,
    /// Attacker strategy.
    pub strategy: Strategy,
    /// Accepted wrong results / tasks submitted. An accepted result counts
    /// as wrong if its output is wrong or any paid receipt has inflated fuel.
    pub wrong_accepted_rate: f64,
    /// Executions dispatched (replicas, audits, canaries, decoys; failed
    /// ones included) / tasks submitted, over the whole run.
    pub replicas_per_task: f64,
    /// Honest identities quarantined.
    pub honest_quarantined: u32,
    /// Attacker identities quarantined (Sybil churn counts each identity).
    pub attackers_quarantined: u32,
    /// Median, over quarantined attacker identities, of the jobs it received
    /// from its first misbehaviour to its quarantine; `null` if none.
    pub tasks_to_quarantine_median: Option<f64>,
    /// Further figures, not part of the JSON line.
    #[serde(skip)]
    pub details: CellDetails,
}

/// Extra figures for a cell.
#[derive(Clone, Default, PartialEq, Debug, Serialize)]
pub struct CellDetails {
    /// Tasks submitted.
    pub tasks: u64,
    /// Tasks accepted.
    pub accepted: u64,
    /// Accepted with a wrong output or inflated paid fuel.
    pub wrong_accepted: u64,
    /// Of which: only the fuel was wrong (over-billing accepted).
    pub overbilled_accepted: u64,
    /// Of which: accepted from a single unverified/solo result.
    pub wrong_solo: u64,
    /// Tasks given up (no quorum within budget); not accepted, not wrong.
    pub given_up: u64,
    /// All executions dispatched.
    pub executions: u64,
    /// Executions that were canaries (spot checks and decoys).
    pub canaries: u64,
    /// Tasks after warm-up.
    pub tasks_formed: u64,
    /// Executions per task after warm-up ("once reputations have formed").
    pub replicas_per_task_formed: f64,
    /// Wrong accepted after warm-up.
    pub wrong_accepted_formed: u64,
    /// Over-billing receipts that were compared with an honest receipt of the
    /// same task or with a canary's known fuel (a quorum existed).
    pub overbills_with_quorum: u64,
    /// Over-billing receipts in quorums made only of over-billers (nothing
    /// honest to compare with; possible only while everyone is a newcomer).
    pub overbills_colluder_only: u64,
    /// Of those, how many were caught (not paid, recorded as a violation).
    pub overbills_caught: u64,
    /// Attackers in the initial population.
    pub attackers: u64,
    /// Attacker identities created in total (more than `attackers` under Sybil churn).
    pub attacker_identities: u64,
}

/// Runs one cell.
pub fn run_cell(
    config: &ByzantineConfig,
    fraction: f64,
    strategy: Strategy,
    policy: Policy,
) -> Result<CellReport, SecurityError> {
    if !(0.0..1.0).contains(&fraction) {
        return Err(SecurityError::InvalidFraction(fraction));
    }
    sim::run(config, fraction, strategy, policy)
}

/// Runs every combination, cells spread over the available cores; results
/// come back in matrix order (fraction, then strategy, then policy). Empty
/// slices mean "all" (the default matrix).
pub fn run_matrix(
    config: &ByzantineConfig,
    fractions: &[f64],
    strategies: &[Strategy],
    policies: &[Policy],
) -> Result<Vec<CellReport>, SecurityError> {
    let fractions = if fractions.is_empty() {
        &DEFAULT_FRACTIONS[..]
    } else {
        fractions
    };
    let strategies = if strategies.is_empty() {
        &Strategy::ALL[..]
    } else {
        strategies
    };
    let policies = if policies.is_empty() {
        &Policy::ALL[..]
    } else {
        policies
    };
    let mut cells = Vec::new();
    for &f in fractions {
        if !(0.0..1.0).contains(&f) {
            return Err(SecurityError::InvalidFraction(f));
        }
        for &s in strategies {
            for &p in policies {
                cells.push((f, s, p));
            }
        }
    }
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(cells.len().max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut out: Vec<Option<Result<CellReport, SecurityError>>> = vec![None; cells.len()];
    let results = std::sync::Mutex::new(&mut out);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(&(f, s, p)) = cells.get(i) else {
                        break;
                    };
                    let r = run_cell(config, f, s, p);
                    results.lock().expect("no panics while holding the lock")[i] = Some(r);
                }
            });
        }
    });
    out.into_iter()
        .map(|r| r.expect("every cell ran"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strategy_names_round_trip() {
        for s in Strategy::ALL {
            assert_eq!(s.name().parse::<Strategy>().unwrap(), s);
            assert_eq!(serde_json_name(&s), s.name());
        }
        assert!("nope".parse::<Strategy>().is_err());
        assert_eq!("majority3".parse::<Policy>().unwrap(), Policy::Majority3);
    }

    fn serde_json_name<T: Serialize>(t: &T) -> String {
        serde_json::to_value(t)
            .unwrap()
            .as_str()
            .unwrap()
            .to_string()
    }
}
