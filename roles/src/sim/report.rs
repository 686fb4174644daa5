//! `ScenarioReport`: the figures one scenario run produces.

use serde::Serialize;

/// The measured figures of one run (the roles run or its baseline).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Figures {
    /// Hosts at the start.
    pub nodes: usize,
    /// All messages (heartbeats, summaries, placements, snapshots) per host per
    /// second of virtual time.
    pub msgs_per_node_per_sec: f64,
    /// Messages on placement paths per placement (re-placements included).
    pub msgs_per_placement: f64,
    /// Useful slot time over live slot time while arrivals last (after a 10%
    /// warm-up); class-switch setup time is not useful.
    pub utilisation: f64,
    /// Mean submit-to-result time, ms (network latency included).
    pub mean_completion_ms: f64,
    /// 95th percentile, over jobs lost with a host, of loss-to-result time, ms.
    /// `null` when no job was lost.
    pub recovery_p95_ms: Option<f64>,
    /// Placements a new leader needs to reach steady-state quality (mean over
    /// clusters); `null` when no leader was replaced.
    pub tasks_to_steady_state: Option<f64>,
}

/// Extra figures kept out of the JSON line (for tests, plots and the log).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Details {
    /// Jobs submitted.
    pub jobs: u64,
    /// Jobs completed (must equal `jobs`).
    pub completed: u64,
    /// Virtual time at the last completion, ms.
    pub sim_ms: u64,
    /// Events processed.
    pub events: u64,
    /// Crisis switches logged (enter and exit), with reasons.
    pub switches: Vec<String>,
    /// Jobs deferred by load shedding.
    pub shed: u64,
    /// Mean class switches per completed job (what Caste reduces).
    pub class_switch_rate: f64,
    /// Mean completion per 500 ms bucket of finish time: (seconds, ms).
    pub timeline: Vec<(f64, f64)>,
}

/// One scenario run: the roles run, its baseline, and the details.
///
/// `serde_json::to_string(&report)` is exactly the `biop2p sim --json` line:
/// `scenario`, the [`Figures`] fields flattened, and `baseline`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ScenarioReport {
    /// Scenario name.
    pub scenario: String,
    /// The roles run.
    #[serde(flatten)]
    pub figures: Figures,
    /// The comparison run on the same hosts and jobs (random placement; for
    /// `young`, cold start).
    pub baseline: Figures,
    /// Roles-run details (not serialised).
    #[serde(skip)]
    pub details: Details,
    /// Baseline details (not serialised).
    #[serde(skip)]
    pub baseline_details: Details,
}
