//! Deterministic discrete-event simulator driving the real roles code.
//!
//! `biop2p sim` is a thin CLI over this module:
//!
//! ```no_run
//! let sc = roles::sim::Scenario::builtin("crash30").unwrap().with_seed(7);
//! for report in roles::sim::run(&sc) {
//!     println!("{}", serde_json::to_string(&report).unwrap());
//! }
//! ```
//!
//! Virtual time, one seeded RNG stream per concern (arrivals, placement,
//! failures): the same scenario and seed always give the same report, and the
//! roles run and its baseline see the same hosts and the same jobs.

mod engine;
mod plot;
mod report;
mod scenario;

pub use plot::plot_svg;
pub use report::{Details, Figures, ScenarioReport};
pub use scenario::{Baseline, Failure, SCENARIO_VERSION, Scenario, builtin_names};

use engine::{Engine, Mode};

/// Runs one scenario: the roles run and its baseline on the same hosts and
/// jobs. `scale` (a scenario with `sizes`) yields one report per size; the
/// others yield one report. Deterministic for a given scenario and seed.
///
/// The scenario should come from [`Scenario::builtin`] or
/// [`Scenario::from_toml_str`], which validate it.
pub fn run(scenario: &Scenario) -> Vec<ScenarioReport> {
    if scenario.sizes.is_empty() {
        return vec![run_one(scenario)];
    }
    scenario
        .sizes
        .iter()
        .map(|&n| {
            let jobs_per_node = scenario.jobs as f64 / scenario.nodes.max(1) as f64;
            let sc = Scenario {
                nodes: n,
                jobs: ((jobs_per_node * n as f64).round() as u64).max(1),
                sizes: Vec::new(),
                ..scenario.clone()
            };
            run_one(&sc)
        })
        .collect()
}

/// Runs only the roles side of a scenario (no baseline): what the scale
/// benchmark times.
pub fn run_roles_only(scenario: &Scenario) -> (Figures, Details) {
    Engine::new(scenario, Mode::roles()).run()
}

fn run_one(sc: &Scenario) -> ScenarioReport {
    let (figures, details) = Engine::new(sc, Mode::roles()).run();
    let (baseline, baseline_details) = Engine::new(sc, Mode::baseline(sc.baseline)).run();
    ScenarioReport {
        scenario: sc.name.clone(),
        figures,
        baseline,
        details,
        baseline_details,
    }
}

#[cfg(test)]
mod tests;
