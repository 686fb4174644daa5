//! Simulator tests: small runs, reproducible from the seed.

use super::*;

fn small(name: &str) -> Scenario {
    Scenario::builtin(name)
        .unwrap()
        .with_nodes(200)
        .with_jobs(6000)
}

#[test]
fn builtins_parse_and_unknown_fields_are_rejected() {
    for n in builtin_names() {
        Scenario::builtin(n).unwrap();
    }
    assert!(Scenario::builtin("nope").is_err());
    assert!(Scenario::from_toml_str("version = 1\nnodez = 5").is_err());
    assert!(Scenario::from_toml_str("version = 2").is_err());
    let s = Scenario::from_toml_str(
        "version = 1\nnodes = 50\n[[failures]]\nkind = \"lose-region\"\nat_ms = 100\nregion = 0\n",
    )
    .unwrap();
    assert_eq!(s.nodes, 50);
    assert_eq!(s.failures.len(), 1);
}

#[test]
fn same_seed_same_report() {
    let sc = small("churn");
    let a = run(&sc);
    let b = run(&sc);
    assert_eq!(a, b, "seed {}", sc.seed);
    let c = run(&sc.clone().with_seed(99));
    assert_ne!(a[0].figures, c[0].figures);
}

#[test]
fn json_line_has_exact_fields() {
    let r = run(&small("steady")).remove(0);
    let v: serde_json::Value = serde_json::to_value(&r).unwrap();
    let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "baseline",
            "mean_completion_ms",
            "msgs_per_node_per_sec",
            "msgs_per_placement",
            "nodes",
            "recovery_p95_ms",
            "scenario",
            "tasks_to_steady_state",
            "utilisation"
        ]
    );
    assert_eq!(v["baseline"].as_object().unwrap().len(), 7);
}

#[test]
fn thermal_beats_random_on_heterogeneous_swarm() {
    let r = run(&small("steady")).remove(0);
    assert_eq!(r.details.completed, r.details.jobs);
    assert!(
        r.figures.mean_completion_ms < 0.7 * r.baseline.mean_completion_ms,
        "{:?} vs {:?}",
        r.figures,
        r.baseline
    );
}

#[test]
fn crash30_completes_everything_and_havoc_recovers_faster() {
    let r = run(&small("crash30")).remove(0);
    assert_eq!(r.details.completed, r.details.jobs, "seed {}", 1);
    assert_eq!(r.baseline_details.completed, r.baseline_details.jobs);
    assert!(
        r.details.switches.iter().any(|s| s.contains("havoc")),
        "{:?}",
        r.details.switches
    );
    assert!(r.figures.recovery_p95_ms.unwrap() < r.baseline.recovery_p95_ms.unwrap());
}

#[test]
fn scale_yields_one_report_per_size_and_plots() {
    let sc = Scenario::builtin("scale")
        .unwrap()
        .with_nodes(2000)
        .with_jobs(10_000);
    let reps = run(&sc);
    assert_eq!(reps.len(), 3);
    assert_eq!(
        reps.iter().map(|r| r.figures.nodes).collect::<Vec<_>>(),
        vec![20, 200, 2000]
    );
    let svg = plot_svg(&reps);
    assert!(svg.starts_with("<svg") && svg.contains("messages per node"));
}

#[test]
fn node_type_changes_the_run() {
    let base = small("steady");
    let typed = Scenario {
        node_type: Some("thermal-exploiter-enduring".into()),
        ..base.clone()
    };
    typed.validate().unwrap();
    assert_ne!(run(&base)[0].figures, run(&typed)[0].figures);
    let bad = Scenario {
        node_type: Some("thermal-nonsense".into()),
        ..base
    };
    assert!(bad.validate().is_err());
}

#[test]
fn svg_plot_of_a_crash_shows_both_runs() {
    let reps = run(&small("crash30"));
    let svg = plot_svg(&reps);
    assert!(svg.contains("crash30") && svg.contains("baseline"));
}
