//! `Scenario`: what to simulate, loadable from a documented TOML file.

use serde::{Deserialize, Serialize};

use crate::error::RolesError;
use crate::id::Millis;

/// Schema version of scenario files. Files must say `version = 1`.
pub const SCENARIO_VERSION: u32 = 1;

/// Which row the report's compatibility field `baseline` repeats. Every
/// report carries all fair baselines (`baselines`) and every ablation
/// (`ablations`) anyway; this only picks the one `baseline` shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Baseline {
    /// Capacity-aware random placement (`baselines.random`).
    Random,
    /// Least jobs per slot (`baselines.least_loaded`).
    LeastLoaded,
    /// Power of two choices (`baselines.power_of_two`).
    PowerOfTwo,
    /// Ours with new leaders starting cold (`ablations.young`).
    ColdStart,
}

/// A failure injected at a given time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, tag = "kind", rename_all = "kebab-case")]
pub enum Failure {
    /// Lose a random `fraction` of the live hosts at once (they do not return).
    LoseFraction {
        /// When, ms of virtual time.
        at_ms: Millis,
        /// Fraction of live hosts, 0..1.
        fraction: f64,
    },
    /// Lose every host of one region.
    LoseRegion {
        /// When.
        at_ms: Millis,
        /// Region index (taken modulo the region count).
        region: u32,
    },
    /// Multiply the arrival rate by `factor` for `duration_ms`.
    Surge {
        /// When.
        at_ms: Millis,
        /// Rate multiplier.
        factor: f64,
        /// How long.
        duration_ms: Millis,
    },
    /// Every cluster leader (Bravo) leaves at once and is re-elected: the
    /// Young measurement. The leaders come back as ordinary hosts later.
    LeadersLeave {
        /// When.
        at_ms: Millis,
    },
}

impl Failure {
    /// When the failure happens.
    pub fn at(&self) -> Millis {
        match self {
            Failure::LoseFraction { at_ms, .. }
            | Failure::LoseRegion { at_ms, .. }
            | Failure::Surge { at_ms, .. }
            | Failure::LeadersLeave { at_ms } => *at_ms,
        }
    }
}

/// A simulation scenario. Every field has a default, so a file only states
/// what differs; unknown fields are an error (a typo must not silently run
/// the default).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Scenario {
    /// Schema version; must be 1.
    pub version: u32,
    /// Name shown in reports. Default "custom".
    pub name: String,
    /// What the scenario shows.
    pub description: String,
    /// Hosts. Default 1000.
    pub nodes: usize,
    /// Jobs submitted. Default 20,000.
    pub jobs: u64,
    /// RNG seed; the same seed gives the same report. Default 1.
    pub seed: u64,
    /// Regions; 0 picks √(clusters) so both upper levels stay small. Default 0.
    pub regions: usize,
    /// Hosts per cluster (one Bravo each). Default 32.
    pub cluster_size: usize,
    /// Slowest host speed (work units per ms relative to 1). Default 1.
    pub speed_min: f64,
    /// Fastest host speed. Default 10 (the 10× spread). Speeds are log-uniform.
    pub speed_max: f64,
    /// Fewest execution slots per host. Default 1.
    pub slots_min: u8,
    /// Most execution slots per host (at most 8). Default 4.
    pub slots_max: u8,
    /// Offered load as a fraction of total capacity. Default 0.6; above 1 saturates.
    pub load: f64,
    /// Mean job work in ms on a speed-1 host (exponential). Default 1000.
    pub work_ms: f64,
    /// Job class mix `[cpu, memory, small]`, relative weights. Default [0.4, 0.3, 0.3].
    pub class_mix: [f64; 3],
    /// Cost of switching a slot to another job class (module compile, cache
    /// warm-up), ms. Default 30. This is what Caste specialisation saves.
    pub setup_ms: f64,
    /// Hosts leaving per host per second. Default 0.
    pub churn_per_node_per_sec: f64,
    /// How long a churned host stays away, ms. Default 20,000.
    pub churn_downtime_ms: Millis,
    /// Deadline of every job, ms after submission. Default 10,000. A job
    /// that misses it counts as failed: a host drops a queued job whose
    /// deadline has passed, and a job finished late is not "met".
    pub deadline_ms: Millis,
    /// Heartbeat / tick period, ms. Default 250: the Bravo notices a lost
    /// host at the first tick after it goes silent, in every row alike.
    pub tick_ms: Millis,
    /// Latency inside a cluster, ms. Default 1.
    pub latency_cluster_ms: Millis,
    /// Latency inside a region, ms. Default 5.
    pub latency_region_ms: Millis,
    /// Latency across regions, ms. Default 40.
    pub latency_global_ms: Millis,
    /// The comparison run. Default random.
    pub baseline: Baseline,
    /// Run once per size (the `scale` scenario); jobs scale with size. Default empty.
    pub sizes: Vec<usize>,
    /// A taxonomy node type whose parameters every node runs with. Default none.
    pub node_type: Option<String>,
    /// Injected failures.
    pub failures: Vec<Failure>,
}

impl Default for Scenario {
    fn default() -> Self {
        Self {
            version: SCENARIO_VERSION,
            name: "custom".into(),
            description: String::new(),
            nodes: 1000,
            jobs: 20_000,
            seed: 1,
            regions: 0,
            cluster_size: 32,
            speed_min: 1.0,
            speed_max: 10.0,
            slots_min: 1,
            slots_max: 4,
            load: 0.6,
            work_ms: 1000.0,
            class_mix: [0.4, 0.3, 0.3],
            setup_ms: 30.0,
            churn_per_node_per_sec: 0.0,
            churn_downtime_ms: 20_000,
            deadline_ms: 10_000,
            tick_ms: 250,
            latency_cluster_ms: 1,
            latency_region_ms: 5,
            latency_global_ms: 40,
            baseline: Baseline::Random,
            sizes: Vec::new(),
            node_type: None,
            failures: Vec::new(),
        }
    }
}

const BUILTIN: &[(&str, &str)] = &[
    ("steady", include_str!("../../scenarios/steady.toml")),
    ("steady90", include_str!("../../scenarios/steady90.toml")),
    ("saturate", include_str!("../../scenarios/saturate.toml")),
    ("churn", include_str!("../../scenarios/churn.toml")),
    ("crash30", include_str!("../../scenarios/crash30.toml")),
    ("young", include_str!("../../scenarios/young.toml")),
    ("scale", include_str!("../../scenarios/scale.toml")),
];

/// Names of the built-in scenarios, in the order `--scenario all` runs them.
pub fn builtin_names() -> Vec<&'static str> {
    BUILTIN.iter().map(|(n, _)| *n).collect()
}

impl Scenario {
    /// A built-in scenario (its TOML is embedded in the binary).
    pub fn builtin(name: &str) -> Result<Scenario, RolesError> {
        let (_, text) = BUILTIN
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .ok_or_else(|| RolesError::UnknownScenario(name.to_string()))?;
        Scenario::from_toml_str(text)
    }

    /// The embedded TOML text of a built-in scenario (for `--print`-style help).
    pub fn builtin_toml(name: &str) -> Option<&'static str> {
        BUILTIN
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, t)| *t)
    }

    /// Parses and validates a scenario file.
    pub fn from_toml_str(text: &str) -> Result<Scenario, RolesError> {
        let s: Scenario = toml::from_str(text).map_err(|e| RolesError::Scenario(e.to_string()))?;
        s.validate()?;
        Ok(s)
    }

    /// Overrides the host count (for `scale`, the largest size; the others
    /// become N/100 and N/10).
    pub fn with_nodes(mut self, n: usize) -> Self {
        if self.sizes.is_empty() {
            self.nodes = n;
        } else {
            let jobs_per_node = self.jobs as f64 / self.nodes.max(1) as f64;
            self.nodes = n;
            self.jobs = (jobs_per_node * n as f64).round() as u64;
            let mut sizes: Vec<usize> = [n / 100, n / 10, n]
                .into_iter()
                .filter(|s| *s >= 10)
                .collect();
            sizes.dedup();
            self.sizes = sizes;
        }
        self
    }

    /// Overrides the job count (for `scale`, the count at the largest size).
    pub fn with_jobs(mut self, jobs: u64) -> Self {
        self.jobs = jobs;
        self
    }

    /// Overrides the seed.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Checks every field; `run` assumes a validated scenario.
    pub fn validate(&self) -> Result<(), RolesError> {
        let bad = |m: String| Err(RolesError::Scenario(m));
        if self.version != SCENARIO_VERSION {
            return bad(format!(
                "version {} is not supported (expected {SCENARIO_VERSION})",
                self.version
            ));
        }
        if self.nodes < 2 || self.nodes > 1_000_000 {
            return bad(format!("nodes = {} must be 2..=1000000", self.nodes));
        }
        if self.jobs == 0 || self.jobs > 50_000_000 {
            return bad(format!("jobs = {} must be 1..=50000000", self.jobs));
        }
        if self.cluster_size < 2 || self.cluster_size > 1000 {
            return bad(format!(
                "cluster_size = {} must be 2..=1000",
                self.cluster_size
            ));
        }
        if self.regions > 1000 {
            return bad(format!("regions = {} must be at most 1000", self.regions));
        }
        if !(self.speed_min > 0.0 && self.speed_min <= self.speed_max && self.speed_max.is_finite())
        {
            return bad(format!(
                "speeds {}..{} must satisfy 0 < min <= max",
                self.speed_min, self.speed_max
            ));
        }
        if self.slots_min == 0 || self.slots_min > self.slots_max || self.slots_max > 8 {
            return bad(format!(
                "slots {}..{} must satisfy 1 <= min <= max <= 8",
                self.slots_min, self.slots_max
            ));
        }
        if !(self.load > 0.0 && self.load <= 10.0)
            || !(self.work_ms > 0.0)
            || !(self.setup_ms >= 0.0)
        {
            return bad("load must be in (0, 10], work_ms > 0, setup_ms >= 0".into());
        }
        if self.class_mix.iter().any(|w| !(*w >= 0.0)) || self.class_mix.iter().sum::<f64>() <= 0.0
        {
            return bad(format!(
                "class_mix {:?} needs non-negative weights, not all zero",
                self.class_mix
            ));
        }
        if !(self.churn_per_node_per_sec >= 0.0 && self.churn_per_node_per_sec < 1.0) {
            return bad(format!(
                "churn_per_node_per_sec = {} must be in [0, 1)",
                self.churn_per_node_per_sec
            ));
        }
        if self.tick_ms == 0 || self.deadline_ms == 0 {
            return bad("tick_ms and deadline_ms must be positive".into());
        }
        for f in &self.failures {
            match f {
                Failure::LoseFraction { fraction, .. } if !(*fraction > 0.0 && *fraction < 1.0) => {
                    return bad(format!(
                        "lose-fraction fraction = {fraction} must be in (0, 1)"
                    ));
                }
                Failure::Surge { factor, .. } if !(*factor > 0.0 && *factor <= 100.0) => {
                    return bad(format!("surge factor = {factor} must be in (0, 100]"));
                }
                _ => {}
            }
        }
        if self.sizes.iter().any(|s| *s < 2 || *s > 1_000_000) {
            return bad(format!("sizes {:?} must each be 2..=1000000", self.sizes));
        }
        if let Some(t) = &self.node_type {
            crate::NodeType::find(t).ok_or_else(|| {
                RolesError::Scenario(format!("unknown node_type {t:?} (see `biop2p roles`)"))
            })?;
        }
        Ok(())
    }
}
