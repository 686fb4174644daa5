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
pub use report::{Baselines, Details, Figures, ScenarioReport};
pub use scenario::{Baseline, Failure, SCENARIO_VERSION, Scenario, builtin_names};

use std::collections::BTreeMap;

use engine::{ABLATIONS, Engine, Mode, Placement};

/// Runs one scenario: ours, the three fair baselines and one ablation per
/// mechanism, all on the same hosts and jobs. `scale` (a scenario with `sizes`) yields one report per size; the
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

/// Runs only ours (no baselines, no ablations): what the scale benchmark
/// times.
pub fn run_roles_only(scenario: &Scenario) -> (Figures, Details) {
    Engine::new(scenario, Mode::roles()).run()
}

fn run_one(sc: &Scenario) -> ScenarioReport {
    let mut rows: Vec<(String, Mode)> = vec![
        ("ours".into(), Mode::roles()),
        ("random".into(), Mode::fair(Placement::Random)),
        ("least_loaded".into(), Mode::fair(Placement::LeastLoaded)),
        ("power_of_two".into(), Mode::fair(Placement::PowerOfTwo)),
    ];
    rows.extend(
        ABLATIONS
            .iter()
            .map(|m| (format!("no_{m}"), Mode::without(m))),
    );
    let baseline_mode = Mode::baseline(sc.baseline);
    // The rows are independent: two threads halve the wall time and cannot
    // change a figure (each engine owns its seeded RNGs).
    let results: Vec<(String, Mode, Figures, Details)> = std::thread::scope(|s| {
        let (a, b): (Vec<_>, Vec<_>) = rows.into_iter().enumerate().partition(|(i, _)| i % 2 == 0);
        let run_all = |part: Vec<(usize, (String, Mode))>| {
            part.into_iter()
                .map(|(i, (name, mode))| {
                    let (f, d) = Engine::new(sc, mode).run();
                    (i, name, mode, f, d)
                })
                .collect::<Vec<_>>()
        };
        let hb = s.spawn(move || run_all(b));
        let mut out = run_all(a);
        out.extend(hb.join().expect("simulator thread panicked"));
        out.sort_by_key(|r| r.0);
        out.into_iter()
            .map(|(_, n, m, f, d)| (n, m, f, d))
            .collect()
    });
    let mut figures = BTreeMap::new();
    let mut row_details = BTreeMap::new();
    let mut baseline = None;
    for (name, mode, f, d) in results {
        if mode == baseline_mode && baseline.is_none() {
            baseline = Some((f.clone(), d.clone()));
        }
        figures.insert(name.clone(), f);
        row_details.insert(name, d);
    }
    let take = |m: &mut BTreeMap<String, Figures>, k: &str| m.remove(k).expect("every row ran");
    let ours = take(&mut figures, "ours");
    let details = row_details.remove("ours").expect("ours ran");
    let baselines = Baselines {
        random: take(&mut figures, "random"),
        least_loaded: take(&mut figures, "least_loaded"),
        power_of_two: take(&mut figures, "power_of_two"),
    };
    let ablations = ABLATIONS
        .iter()
        .map(|m| (m.to_string(), take(&mut figures, &format!("no_{m}"))))
        .collect();
    let (baseline, baseline_details) = baseline.expect("the baseline is one of the rows");
    ScenarioReport {
        scenario: sc.name.clone(),
        figures: ours,
        baseline,
        baselines,
        ablations,
        details,
        baseline_details,
        row_details,
    }
}

#[cfg(test)]
mod tests;
