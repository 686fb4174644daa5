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

const FIGURE_KEYS: [&str; 11] = [
    "deadline_met_fraction",
    "mean_completion_ms",
    "msgs_per_node_per_sec",
    "msgs_per_placement",
    "nodes",
    "p50_completion_ms",
    "p95_completion_ms",
    "p99_completion_ms",
    "recovery_p95_ms",
    "tasks_to_steady_state",
    "utilisation",
];

fn keys(v: &serde_json::Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
    k.sort();
    k
}

#[test]
fn json_line_has_exact_fields() {
    let r = run(&small("steady")).remove(0);
    let v: serde_json::Value = serde_json::to_value(&r).unwrap();
    let figure: Vec<String> = FIGURE_KEYS.iter().map(|s| s.to_string()).collect();
    let mut top = figure.clone();
    top.extend(["ablations", "baseline", "baselines", "scenario"].map(String::from));
    top.sort();
    assert_eq!(keys(&v), top);
    assert_eq!(keys(&v["baseline"]), figure);
    assert_eq!(
        keys(&v["baselines"]),
        ["least_loaded", "power_of_two", "random"]
    );
    for b in ["random", "least_loaded", "power_of_two"] {
        assert_eq!(keys(&v["baselines"][b]), figure, "{b}");
    }
    assert_eq!(
        keys(&v["ablations"]),
        ["caste", "havoc", "thermal", "work_stealing", "young"]
    );
    for (k, a) in v["ablations"].as_object().unwrap() {
        assert_eq!(keys(a), figure, "{k}");
    }
    // `baseline` repeats the row the scenario names (steady: power of two).
    assert_eq!(v["baseline"], v["baselines"]["power_of_two"]);
}

#[test]
fn messages_are_counted_as_sent() {
    let r = run(&small("crash30")).remove(0);
    let m: std::collections::BTreeMap<_, _> = r.details.messages.iter().copied().collect();
    // Every kind the roles run uses was actually sent.
    for k in [
        "heartbeat",
        "summary",
        "placement",
        "result",
        "steal",
        "memory",
        "election",
    ] {
        assert!(m[k] > 0, "{k}: {m:?}");
    }
    // A result and a completion report per completed job, no more.
    assert_eq!(m["result"], 2 * r.details.completed);
    // Without stealing no steal message is sent, and the count differs.
    let no_steal = &r.row_details["no_work_stealing"];
    let m2: std::collections::BTreeMap<_, _> = no_steal.messages.iter().copied().collect();
    assert_eq!(m2["steal"], 0);
    assert_ne!(
        r.figures.msgs_per_placement,
        r.ablations["work_stealing"].msgs_per_placement
    );
}

#[test]
fn thermal_with_caste_beats_the_fair_baselines_on_a_heterogeneous_swarm() {
    let r = run(&small("steady")).remove(0);
    assert!(r.figures.deadline_met_fraction > 0.99, "{:?}", r.figures);
    for b in [
        &r.baselines.random,
        &r.baselines.least_loaded,
        &r.baselines.power_of_two,
    ] {
        assert!(
            r.figures.mean_completion_ms < b.mean_completion_ms,
            "{:?} vs {:?}",
            r.figures,
            b
        );
    }
}

#[test]
fn jobs_that_miss_their_deadline_fail_and_the_run_ends() {
    // Twice the capacity for a while: many jobs cannot make a 2 s deadline.
    let sc = Scenario {
        load: 2.0,
        deadline_ms: 2_000,
        ..small("steady")
    };
    let r = run(&sc).remove(0);
    let d = &r.details;
    assert!(d.failed > 0, "{d:?}");
    assert!(r.figures.deadline_met_fraction < 0.9, "{:?}", r.figures);
    // Every job is accounted for: completed (on time or late) or failed.
    assert_eq!(d.completed + d.failed, d.jobs);
}

#[test]
fn crash30_meets_deadlines_and_havoc_enters_a_crisis() {
    let r = run(&small("crash30")).remove(0);
    assert!(
        r.figures.deadline_met_fraction >= 0.99,
        "seed 1: {:?}",
        r.figures
    );
    assert!(
        r.details.switches.iter().any(|s| s.contains("havoc")),
        "{:?}",
        r.details.switches
    );
    // Same detector in every row: every row recovers the lost jobs.
    for (k, d) in &r.row_details {
        assert!(d.recovery_max_ms.is_some(), "{k}");
    }
    assert!(
        r.figures.recovery_p95_ms.unwrap() < 2_000.0,
        "{:?}",
        r.figures
    );
}

#[test]
fn young_needs_fewer_tasks_than_cold() {
    let r = run(&small("young")).remove(0);
    let warm = r.figures.tasks_to_steady_state.unwrap();
    let cold = r.ablations["young"].tasks_to_steady_state.unwrap();
    assert!(warm < cold, "warm {warm} vs cold {cold}");
    let m: std::collections::BTreeMap<_, _> = r.details.messages.iter().copied().collect();
    assert!(m["young"] > 0);
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
