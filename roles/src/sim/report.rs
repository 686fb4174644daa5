//! `ScenarioReport`: the figures one scenario run produces.

use std::collections::BTreeMap;

use serde::Serialize;

/// The measured figures of one row (ours, a baseline or an ablation).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Figures {
    /// Hosts at the start.
    pub nodes: usize,
    /// Every message the simulator sent (heartbeats, summaries, placement
    /// hops, results and completion reports, steal requests and replies,
    /// sheds, elder samples, Young requests, election announcements), counted
    /// where it is sent, per host per second of virtual time.
    pub msgs_per_node_per_sec: f64,
    /// Messages sent on placement paths (placement hops, results, reports,
    /// steals, sheds) per placement (re-placements included).
    pub msgs_per_placement: f64,
    /// Useful slot time over live slot time while arrivals last (after a 10%
    /// warm-up); class-switch setup time is not useful.
    pub utilisation: f64,
    /// Mean submit-to-result time of completed jobs, ms (network latency
    /// included; jobs finished after their deadline included).
    pub mean_completion_ms: f64,
    /// Median completion of completed jobs, ms.
    pub p50_completion_ms: f64,
    /// 95th percentile completion of completed jobs, ms.
    pub p95_completion_ms: f64,
    /// 99th percentile completion of completed jobs, ms.
    pub p99_completion_ms: f64,
    /// 95th percentile, over jobs lost with a host, of the time from the loss
    /// to the job running again (a job that never ran again counts until it
    /// was given up), ms. `null` when no job was lost.
    pub recovery_p95_ms: Option<f64>,
    /// Placements a new leader needs to reach steady-state quality (mean over
    /// clusters); `null` when no leader was replaced.
    pub tasks_to_steady_state: Option<f64>,
    /// Jobs whose result reached the submitter by their deadline, over all
    /// jobs submitted.
    pub deadline_met_fraction: f64,
}

/// Extra figures kept out of the JSON line (for tests, plots and the log).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Details {
    /// Jobs submitted.
    pub jobs: u64,
    /// Jobs completed (on time or late).
    pub completed: u64,
    /// Jobs given up unrun because their deadline passed.
    pub failed: u64,
    /// Virtual time at the last completion, ms.
    pub sim_ms: u64,
    /// Events processed.
    pub events: u64,
    /// Crisis switches logged (enter and exit), with reasons.
    pub switches: Vec<String>,
    /// Jobs deferred by load shedding.
    pub shed: u64,
    /// Jobs moved by work stealing.
    pub steals: u64,
    /// Mean class switches per completed job (what Caste reduces).
    pub class_switch_rate: f64,
    /// Longest loss-to-running-again time, ms.
    pub recovery_max_ms: Option<f64>,
    /// Messages sent, by kind.
    pub messages: Vec<(&'static str, u64)>,
    /// Mean completion of the jobs submitted in each 500 ms bucket:
    /// (seconds, ms). A queue that grows shows as a climb.
    pub timeline: Vec<(f64, f64)>,
}

impl Details {
    /// The largest timeline bucket over the mean of the first second's
    /// buckets: queues are bounded when this stays small (the bar
    /// is 3). `None` without a first second.
    pub fn queue_growth(&self) -> Option<f64> {
        let first: Vec<f64> = self
            .timeline
            .iter()
            .filter(|(t, _)| *t < 1.0)
            .map(|p| p.1)
            .collect();
        if first.is_empty() {
            return None;
        }
        let base = first.iter().sum::<f64>() / first.len() as f64;
        let max = self.timeline.iter().map(|p| p.1).fold(0.0, f64::max);
        Some(max / base)
    }
}

/// The three fair baselines: each with the same hierarchy, work stealing,
/// failure detector and message accounting as ours, and none of our
/// mechanisms.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Baselines {
    /// Capacity-aware random placement.
    pub random: Figures,
    /// Fewest jobs per slot.
    pub least_loaded: Figures,
    /// Power of two choices.
    pub power_of_two: Figures,
}

/// One scenario run: ours, its baselines and ablations, and the details.
///
/// `serde_json::to_string(&report)` is exactly the `biop2p sim --json` line:
/// `scenario`, the [`Figures`] fields flattened, `baseline` (the row the
/// scenario's `baseline` names, for compatibility), `baselines` and
/// `ablations` (keyed by the mechanism removed: `thermal`, `caste`, `havoc`,
/// `young`, `work_stealing`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ScenarioReport {
    /// Scenario name.
    pub scenario: String,
    /// Ours: Thermal, Caste, HAVOC, Young and work stealing.
    #[serde(flatten)]
    pub figures: Figures,
    /// The row the scenario's `baseline` field names.
    pub baseline: Figures,
    /// The fair baselines.
    pub baselines: Baselines,
    /// Ours minus one mechanism, keyed by that mechanism.
    pub ablations: BTreeMap<String, Figures>,
    /// Details of ours (not serialised).
    #[serde(skip)]
    pub details: Details,
    /// Details of the `baseline` row (not serialised).
    #[serde(skip)]
    pub baseline_details: Details,
    /// Details of every other row, by name (`random`, `power_of_two`,
    /// `no_caste`, ...; not serialised).
    #[serde(skip)]
    pub row_details: BTreeMap<String, Details>,
}
