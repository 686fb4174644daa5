//! The Byzantine benchmark: honest hosts and attackers, run through the real
//! security code, with none of the defender's luck.
//!
//! One *cell* is (attacker fraction, [`Strategy`], [`Policy`]). The world is
//! built from the config seed alone, so every policy of a cell faces the same
//! hosts, the same attackers, the same task inputs and the same honest faults
//! (a fault is a pure function of host and input).
//!
//! The world ([`sim`]) is what a live network gives the defender, no more:
//! - `submitters` submitters, each its own [`Coordinator`](crate::Coordinator)
//!   with its own reputation table, sharing only signed accusations (a trust
//!   report with evidence) that arrive `report_delay_ms` later and that the
//!   receiver re-runs before believing, paying that execution;
//! - every submitter keeps `in_flight` tasks open; results come back after the
//!   host's compute time plus network latency, so out of order;
//! - canaries are computed by the submitter itself, each costing one
//!   execution in `replicas_per_task`, or (with `reuse_canaries`) taken from
//!   earlier accepted quorums, which attackers that held them recognise;
//! - honest hosts return a wrong output at `honest_wrong_rate` (hardware
//!   faults) and fail at `honest_failure_rate` (half errors, half timeouts);
//! - hosts are seen by their observed network prefix; attackers hold
//!   `attacker_prefixes` of them, and Sybils rejoin inside those.
//!
//! Attackers get the strongest information their strategy allows: colluders
//! know every host holding the task at the moment they answer; a patient
//! attacker knows its exact spot-check rate at each submitter. Nothing
//! reaches into a coordinator on the defender's behalf: the driver only feeds
//! events and acts on actions, like the live submitter.

mod sim;

use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::coordinator::SecurityConfig;
use crate::error::SecurityError;
use crate::layers::{Layer, LayerSet};

/// The attacker fractions of the default matrix.
pub const DEFAULT_FRACTIONS: [f64; 4] = [0.0, 0.10, 0.25, 0.33];

/// How attackers behave.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Every answer wrong, each a different wrong value.
    AlwaysWrong,
    /// Wrong (a unique value) with probability `random_wrong_rate`.
    RandomWrong,
    /// One shared wrong output, but only when attackers hold a strict
    /// majority of the task's hosts (so far, when it answers), which includes
    /// every replica going to attackers; right otherwise. Attackers know
    /// each other's assignments (and, generously, the honest ones).
    Colluding,
    /// As `colluding`, and only when it holds the task alone (unreplicated).
    StealthColluding,
    /// Honest until its spot-check rate at a submitter reaches the floor,
    /// then stealth towards that submitter.
    Patient,
    /// Honest for `sleeper_honest_tasks` jobs, then always the shared wrong value.
    Sleeper,
    /// Honest work, and every `slander_every` jobs a false accusation against
    /// an honest host (with that host's genuine receipt, the only evidence it
    /// can get signed) to every submitter.
    Slanderer,
    /// Right output, fuel inflated by `overbill_factor` (wall time inflated
    /// to match, so the speed check alone cannot see it).
    OverBilling,
    /// Colluding, and once any submitter quarantines it, it drops the
    /// identity and rejoins everywhere under a fresh one, in a prefix it holds.
    SybilChurn,
}

impl Strategy {
    /// All strategies, in the order of the default matrix.
    pub const ALL: [Strategy; 9] = [
        Strategy::AlwaysWrong,
        Strategy::RandomWrong,
        Strategy::Colluding,
        Strategy::StealthColluding,
        Strategy::Patient,
        Strategy::Sleeper,
        Strategy::Slanderer,
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
            Strategy::Patient => "patient",
            Strategy::Sleeper => "sleeper",
            Strategy::Slanderer => "slanderer",
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
    /// Fixed majority of three: 3 replicas on random hosts, accept the first
    /// output 2 agree on (one more replica at a time otherwise, failures
    /// re-issued), no reputation, no counter checks.
    #[serde(rename = "majority3")]
    Majority3,
    /// BOINC's adaptive replication as its source states it: a host is
    /// trusted after 10 consecutive valid results; a trusted host's job is
    /// replicated with probability 1/consecutive_valid (quorum 2 otherwise);
    /// an invalid result or an error resets the count; no blacklisting.
    #[serde(rename = "boinc-adaptive")]
    BoincAdaptive,
}

impl Policy {
    /// All policies.
    pub const ALL: [Policy; 3] = [Policy::Biop2p, Policy::Majority3, Policy::BoincAdaptive];

    /// The CLI/JSON name.
    pub fn name(self) -> &'static str {
        match self {
            Policy::Biop2p => "biop2p",
            Policy::Majority3 => "majority3",
            Policy::BoincAdaptive => "boinc-adaptive",
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

/// Benchmark parameters. The defaults are the reference scenario; tests
/// shrink `tasks` and `hosts`.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ByzantineConfig {
    /// Hosts at the start (attackers included).
    pub hosts: usize,
    /// Real tasks submitted, over all submitters.
    pub tasks: usize,
    /// Submitters, each with its own coordinator and reputation.
    pub submitters: usize,
    /// Tasks each submitter keeps open at once (dispatched as a batch,
    /// refilled as they complete).
    pub in_flight: usize,
    /// Seed for the population, inputs and the coordinators.
    pub seed: u64,
    /// Probability an honest job fails without a result (half errors
    /// reported at once, half silent until the deadline).
    pub honest_failure_rate: f64,
    /// Probability an honest host returns a wrong output (hardware fault).
    pub honest_wrong_rate: f64,
    /// Network prefixes (/24 or /48) the attackers hold; honest hosts each
    /// sit in their own. Equal to the attacker count = no prefix signal.
    pub attacker_prefixes: u32,
    /// Delay of an accusation between submitters.
    pub report_delay_ms: u64,
    /// Share accusations between submitters (off: each learns alone).
    pub share_reports: bool,
    /// One-way network latency range in ms, per job.
    pub latency_ms: (u64, u64),
    /// Wrong-answer probability of `random-wrong` attackers.
    pub random_wrong_rate: f64,
    /// Honest jobs a `sleeper` runs before turning.
    pub sleeper_honest_tasks: u32,
    /// Jobs a `slanderer` runs per false accusation.
    pub slander_every: u32,
    /// Fuel multiplier of `over-billing` attackers.
    pub overbill_factor: f64,
    /// Tasks per window of `worst_window_wrong_rate`.
    pub window: usize,
    /// Serve canary requests from earlier quorum-accepted tasks first (free,
    /// but attackers that held the original recognise the re-run and answer
    /// right); off: every canary is a fresh input computed locally.
    pub reuse_canaries: bool,
    /// Layers enabled for the biop2p policy (ablation).
    pub layers: LayerSet,
    /// Coordinator config for the biop2p policy (its `seed` and `layers` are
    /// overridden per submitter from this struct).
    pub security: SecurityConfig,
}

impl Default for ByzantineConfig {
    fn default() -> Self {
        Self {
            hosts: 1000,
            tasks: 200_000,
            submitters: 20,
            in_flight: 32,
            seed: 0xB10_9229,
            honest_failure_rate: 0.05,
            honest_wrong_rate: 0.001,
            attacker_prefixes: 32,
            report_delay_ms: 2_000,
            share_reports: true,
            latency_ms: (20, 200),
            random_wrong_rate: 0.5,
            sleeper_honest_tasks: 100,
            slander_every: 10,
            overbill_factor: 1.5,
            window: 10_000,
            reuse_canaries: false,
            layers: LayerSet::ALL,
            security: SecurityConfig::default(),
        }
    }
}

/// One JSON line of the benchmark: exactly the fields the issue promises.
/// More figures are in `details` (not serialised here).
#[derive(Clone, PartialEq, Debug, Serialize)]
pub struct CellReport {
    /// `biop2p`, `majority3` or `boinc-adaptive`.
    pub policy: Policy,
    /// Attacker strategy.
    pub strategy: Strategy,
    /// Attacker fraction of the initial population.
    pub fraction: f64,
    /// Accepted wrong results / tasks submitted. An accepted result counts
    /// as wrong if its output is wrong or any paid receipt has inflated fuel.
    pub wrong_accepted_rate: f64,
    /// The highest wrong rate over consecutive windows of `window` tasks (in
    /// submission order over all submitters), so a bad start is not hidden.
    pub worst_window_wrong_rate: f64,
    /// (host executions + canaries computed locally + accusations re-run
    /// locally) / tasks submitted: canaries and checks included.
    pub replicas_per_task: f64,
    /// Honest identities quarantined by at least one submitter.
    pub honest_quarantined: u32,
    /// Attacker identities quarantined by at least one submitter.
    pub attackers_quarantined: u32,
    /// Tasks submitted.
    pub tasks: u64,
    /// Further figures, not part of the JSON line.
    #[serde(skip)]
    pub details: CellDetails,
}

impl CellReport {
    /// The header of [`CellReport::table_row`]'s table.
    pub fn table_header() -> String {
        format!(
            "{:<14} {:<18} {:>5} {:>9} {:>9} {:>7} {:>5} {:>5}",
            "policy", "strategy", "frac", "wrong%", "worst%", "repl", "honQ", "attQ"
        )
    }

    /// One line of the human-readable table (the CLI and the example print
    /// the same table).
    pub fn table_row(&self) -> String {
        format!(
            "{:<14} {:<18} {:>5.2} {:>9.4} {:>9.4} {:>7.3} {:>5} {:>5}",
            self.policy.name(),
            self.strategy.name(),
            self.fraction,
            self.wrong_accepted_rate * 100.0,
            self.worst_window_wrong_rate * 100.0,
            self.replicas_per_task,
            self.honest_quarantined,
            self.attackers_quarantined,
        )
    }
}

/// Extra figures for a cell.
#[derive(Clone, Default, PartialEq, Debug, Serialize)]
pub struct CellDetails {
    /// Tasks accepted.
    pub accepted: u64,
    /// Accepted with a wrong output or inflated paid fuel.
    pub wrong_accepted: u64,
    /// Of which: only the fuel was wrong (over-billing accepted).
    pub overbilled_accepted: u64,
    /// Tasks given up (no quorum within budget); not accepted, not wrong.
    pub given_up: u64,
    /// Jobs hosts ran (replicas, audits, canaries, decoys; failed ones included).
    pub executions: u64,
    /// Of which canaries (spot checks, probation and decoys).
    pub canary_runs: u64,
    /// Canaries the submitters computed locally (one execution each).
    pub canary_cpu: u64,
    /// Accusations the receivers re-ran locally (one execution each).
    pub verify_cpu: u64,
    /// Accusations sent (each to every other submitter).
    pub accusations: u64,
    /// Wrong outputs honest hosts returned (hardware faults).
    pub honest_faults: u64,
    /// Wrong outputs or bills attackers returned.
    pub lies: u64,
    /// Attacker lies returned while an honest host also held the task
    /// (0 for colluders: they coordinate).
    pub lies_beside_honest: u64,
    /// Attackers in the initial population.
    pub attackers: u64,
    /// Attacker identities created in total (more under Sybil churn).
    pub attacker_identities: u64,
    /// Virtual time the cell took, ms.
    pub sim_ms: u64,
}

/// One defence switched off, beside the same cell with it on.
#[derive(Clone, PartialEq, Debug, Serialize)]
pub struct AblationRow {
    /// The defence.
    pub defence: &'static str,
    /// The attack it targets.
    pub strategy: Strategy,
    /// Attacker fraction.
    pub fraction: f64,
    /// Every defence on.
    pub on: CellReport,
    /// This defence off.
    pub off: CellReport,
}

/// Switches one defence off in a config.
pub type Switch = fn(&mut ByzantineConfig);

/// The defences with an ablation row: name, the strategy it targets, and
/// how to switch it off.
pub fn defences() -> Vec<(&'static str, Strategy, Switch)> {
    fn layer(c: &mut ByzantineConfig, l: Layer) {
        c.layers = c.layers.without(l);
    }
    let rows: Vec<(&'static str, Strategy, Switch)> = vec![
        ("randomized-execution", Strategy::Colluding, |c| {
            layer(c, Layer::RandomizedExecution)
        }),
        ("deception", Strategy::StealthColluding, |c| {
            layer(c, Layer::Deception)
        }),
        ("probation-canaries", Strategy::Colluding, |c| {
            c.security.probation_canaries = 0
        }),
        ("thermal", Strategy::OverBilling, |c| {
            layer(c, Layer::Thermal)
        }),
        ("trust-reports", Strategy::Sleeper, |c| {
            c.share_reports = false
        }),
        ("accusation-check", Strategy::Slanderer, |c| {
            c.security.verify_accusations = false
        }),
        ("prefix-ranking", Strategy::SybilChurn, |c| {
            c.security.newcomer_candidates = 1
        }),
        ("newcomer-admission", Strategy::SybilChurn, |c| {
            c.security.newcomer_admission = 1.0
        }),
    ];
    rows
}

/// Runs every ablation row at `fraction`, cells spread over the cores.
pub fn run_ablation(
    config: &ByzantineConfig,
    fraction: f64,
) -> Result<Vec<AblationRow>, SecurityError> {
    let rows = defences();
    let mut jobs = Vec::new();
    for (_, s, off) in &rows {
        jobs.push((config.clone(), *s));
        let mut c = config.clone();
        off(&mut c);
        jobs.push((c, *s));
    }
    let mut results =
        parallel(&jobs, |(c, s)| run_cell(c, fraction, *s, Policy::Biop2p)).into_iter();
    let mut out = Vec::new();
    for (name, s, _) in rows {
        let on = results.next().expect("one per job")?;
        let off = results.next().expect("one per job")?;
        out.push(AblationRow {
            defence: name,
            strategy: s,
            fraction,
            on,
            off,
        });
    }
    Ok(out)
}

fn parallel<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(items.len().max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let out: std::sync::Mutex<Vec<Option<R>>> =
        std::sync::Mutex::new((0..items.len()).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(item) = items.get(i) else {
                        break;
                    };
                    let r = f(item);
                    out.lock().expect("no panics while holding the lock")[i] = Some(r);
                }
            });
        }
    });
    out.into_inner()
        .expect("no panics while holding the lock")
        .into_iter()
        .map(|r| r.expect("every item ran"))
        .collect()
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
    parallel(&cells, |&(f, s, p)| run_cell(config, f, s, p))
        .into_iter()
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
        for p in Policy::ALL {
            assert_eq!(p.name().parse::<Policy>().unwrap(), p);
            assert_eq!(serde_json_name(&p), p.name());
        }
    }

    fn serde_json_name<T: Serialize>(t: &T) -> String {
        serde_json::to_value(t)
            .unwrap()
            .as_str()
            .unwrap()
            .to_string()
    }
}
