//! The real `biop2p` binary, as scripts use it.

use std::process::{Command, Output};

pub fn biop2p() -> Command {
    Command::new(env!("CARGO_BIN_EXE_biop2p"))
}

fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("run biop2p");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

#[test]
fn run_json_reports_output_and_counters() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    std::fs::write(&input, b"hello").unwrap();
    let out = run_ok(
        biop2p()
            .args(["run", "builtin:echo-p1", "--json", "--input"])
            .arg(&input)
            .arg("--data-dir")
            .arg(dir.path())
            .args(["--", "a", "b"]),
    );
    let v = &json_lines(&out)[0];
    assert_eq!(v["status"], "ok");
    assert_eq!(v["error_kind"], serde_json::Value::Null);
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(v["output_base64"].as_str().unwrap())
        .unwrap();
    assert_eq!(bytes, b"a b\nhello");
    assert_eq!(v["output_hash"], blake3::hash(&bytes).to_hex().as_str());
    assert_eq!(v["input_hash"], blake3::hash(b"hello").to_hex().as_str());
    for k in [
        "module_hash",
        "fuel_used",
        "peak_memory_bytes",
        "wall_ms",
        "arch",
    ] {
        assert!(!v[k].is_null(), "{k} missing");
    }
}

#[test]
fn run_help_names_every_builtin_workload() {
    let out = run_ok(biop2p().args(["run", "--help"]));
    let help = String::from_utf8(out.stdout).unwrap();
    for b in biop2p::workloads::ALL {
        assert!(
            help.contains(b.name),
            "`biop2p run --help` does not name {}: {help}",
            b.name
        );
    }
}

#[test]
fn run_raw_output_and_error_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.wasm");
    std::fs::write(&bad, b"\0asm garbage").unwrap();
    let out = biop2p()
        .arg("run")
        .arg(&bad)
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid_module"));
    let out = biop2p()
        .arg("run")
        .arg(&bad)
        .arg("--json")
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let v = &json_lines(&out)[0];
    assert_eq!(v["status"], "error");
    assert_eq!(v["error_kind"], "invalid_module");
}

#[test]
fn sim_is_reproducible_from_the_seed() {
    let args = [
        "sim",
        "--scenario",
        "steady",
        "--nodes",
        "200",
        "--jobs",
        "2000",
        "--seed",
        "9",
        "--json",
    ];
    let a = run_ok(biop2p().args(args));
    let b = run_ok(biop2p().args(args));
    assert_eq!(a.stdout, b.stdout);
    let v = &json_lines(&a)[0];
    for k in [
        "nodes",
        "msgs_per_node_per_sec",
        "msgs_per_placement",
        "utilisation",
        "mean_completion_ms",
        "recovery_p95_ms",
        "tasks_to_steady_state",
        "p50_completion_ms",
        "p95_completion_ms",
        "p99_completion_ms",
        "deadline_met_fraction",
    ] {
        assert!(v.get(k).is_some(), "{k} missing");
        assert!(v["baseline"].get(k).is_some(), "baseline {k} missing");
        for b in ["random", "least_loaded", "power_of_two"] {
            assert!(
                v["baselines"][b].get(k).is_some(),
                "baselines.{b}.{k} missing"
            );
        }
        for m in ["thermal", "caste", "havoc", "young", "work_stealing"] {
            assert!(
                v["ablations"][m].get(k).is_some(),
                "ablations.{m}.{k} missing"
            );
        }
    }
    assert_eq!(v["nodes"], 200);
}

#[test]
fn sim_byzantine_prints_a_cell_per_policy() {
    let out = run_ok(biop2p().args([
        "sim",
        "byzantine",
        "--fraction",
        "0.25",
        "--strategy",
        "colluding",
        "--tasks",
        "5000",
        "--json",
    ]));
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 3);
    let policies: Vec<_> = lines
        .iter()
        .map(|l| l["policy"].as_str().unwrap())
        .collect();
    assert_eq!(policies, ["biop2p", "majority3", "boinc-adaptive"]);
    for l in &lines {
        assert_eq!(l["strategy"], "colluding");
        assert_eq!(l["fraction"], 0.25);
        for k in [
            "wrong_accepted_rate",
            "replicas_per_task",
            "honest_quarantined",
            "attackers_quarantined",
            "worst_window_wrong_rate",
            "tasks",
        ] {
            assert!(l.get(k).is_some(), "{k} missing");
        }
    }
    // The majority-of-3 baseline lets colluders through; biop2p does not.
    assert!(lines[1]["wrong_accepted_rate"].as_f64().unwrap() > 0.05);
    assert!(lines[0]["wrong_accepted_rate"].as_f64().unwrap() < 0.01);
}

#[test]
fn roles_lists_80_plus_types() {
    let out = run_ok(biop2p().args(["roles", "--json"]));
    let lines = json_lines(&out);
    assert!(lines.len() >= 80, "{} node types", lines.len());
}
