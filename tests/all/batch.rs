//! Batches (`submit --inputs`), job spec files and `biop2p new`, with the
//! real binary: real `biop2p host` processes on loopback, a submitter
//! killed with SIGKILL mid-batch, and a workload crate built for wasm.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ChildStdout, Stdio};
use std::sync::{Arc, Mutex};

use crate::cli::biop2p;
use crate::durability::{Killer, start_host_with};

/// Hosts on loopback; each host's `finished` job ids are gathered by a
/// thread reading its events, to count what ran where.
struct Hosts {
    _kill: Vec<Killer>,
    addrs: Vec<String>,
    finished: Arc<Mutex<Vec<String>>>,
    _dirs: Vec<tempfile::TempDir>,
}

fn drain(out: BufReader<ChildStdout>, finished: Arc<Mutex<Vec<String>>>) {
    std::thread::spawn(move || {
        for line in out.lines() {
            let Ok(line) = line else { break };
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            if v["event"] == "finished" {
                let id = v["job_id"].as_str().unwrap_or_default().to_string();
                finished.lock().unwrap().push(id);
            }
        }
    });
}

fn start_hosts(faulty: &[bool]) -> Hosts {
    let finished = Arc::new(Mutex::new(Vec::new()));
    let mut h = Hosts {
        _kill: Vec::new(),
        addrs: Vec::new(),
        finished: finished.clone(),
        _dirs: Vec::new(),
    };
    for f in faulty {
        let dir = tempfile::tempdir().unwrap();
        let extra: &[&str] = if *f { &["--faulty"] } else { &[] };
        let (child, addr, out) = start_host_with(dir.path(), "/ip4/127.0.0.1/tcp/0", extra);
        drain(out, finished.clone());
        h._kill.push(Killer(child));
        h.addrs.push(addr);
        h._dirs.push(dir);
    }
    h
}

/// `n` small distinct inputs in `dir`, named `in-00000.txt`...
fn inputs(dir: &Path, n: usize) -> Vec<Vec<u8>> {
    std::fs::create_dir_all(dir).unwrap();
    (0..n)
        .map(|i| {
            let b = format!("batch input {i}\n").into_bytes();
            std::fs::write(dir.join(format!("in-{i:05}.txt")), &b).unwrap();
            b
        })
        .collect()
}

fn submit_cmd(hosts: &Hosts, state: &Path, ins: &Path, out: &Path) -> std::process::Command {
    let mut c = biop2p();
    c.args(["submit", "builtin:echo", "--json", "--inputs"])
        .arg(ins)
        .arg("-o")
        .arg(out)
        .arg("--state-dir")
        .arg(state);
    for a in &hosts.addrs {
        c.args(["--peer", a]);
    }
    c
}

fn summary(stdout: &[u8]) -> serde_json::Value {
    let text = String::from_utf8_lossy(stdout);
    let last = text.lines().last().expect("a summary line");
    let v: serde_json::Value = serde_json::from_str(last).unwrap();
    v["summary"].clone()
}

/// Every output present and equal to its input (echo), every receipt file
/// naming the accepted hash.
fn check_outputs(out: &Path, ins: &[Vec<u8>]) {
    for (i, want) in ins.iter().enumerate() {
        let name = format!("in-{i:05}.txt");
        let got = std::fs::read(out.join(format!("{name}.out")))
            .unwrap_or_else(|e| panic!("{name}.out: {e}"));
        assert_eq!(&got, want, "{name}: wrong output");
        let r: serde_json::Value = serde_json::from_slice(
            &std::fs::read(out.join(format!("{name}.receipts.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(r["status"], "done");
        assert_eq!(
            r["output_hash"],
            blake3::hash(want).to_hex().as_str(),
            "{name}: receipts name another output"
        );
        assert!(
            r["receipts"]
                .as_array()
                .unwrap()
                .iter()
                .any(|x| x["agrees"] == true)
        );
    }
}

#[test]
fn a_batch_with_a_faulty_host_is_all_correct_and_counts_its_retries() {
    let hosts = start_hosts(&[false, false, true]);
    let tmp = tempfile::tempdir().unwrap();
    let ins = inputs(&tmp.path().join("in"), 200);
    let out = tmp.path().join("out");
    let o = submit_cmd(
        &hosts,
        &tmp.path().join("state"),
        &tmp.path().join("in"),
        &out,
    )
    .args(["--replicas", "2", "--max-replacements", "2"])
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    let s = summary(&o.stdout);
    assert_eq!(s["total"], 200, "{s}");
    assert_eq!(s["done"], 200, "{s}");
    assert_eq!(s["failed"], 0, "{s}");
    // Two replicas on three hosts, one of them lying: every pair with the
    // liar disagrees, and one more replica breaks the tie.
    let retried = s["retried"].as_u64().unwrap();
    assert!(retried > 0, "no retry counted: {s}");
    assert_eq!(s["retries"].as_u64().unwrap(), retried, "{s}");
    let lines = String::from_utf8_lossy(&o.stdout).lines().count();
    assert_eq!(lines, 201, "one line per input and a summary");
    check_outputs(&out, &ins);
    // Every job sent ran once on some host, no more: 2 per input plus
    // the retries.
    assert_eq!(s["jobs_sent"].as_u64().unwrap(), 400 + retried, "{s}");
    // Paid: the two agreeing answers of each input, confirmed by their
    // hosts; the liar's answers were never in a majority.
    assert_eq!(s["settled"], 400, "{s}");
    let Hosts {
        _kill,
        _dirs,
        addrs,
        ..
    } = hosts;
    drop(_kill); // sled's lock: a host's ledger is read with it stopped
    let spent = ledger(&tmp.path().join("state"));
    assert_eq!(spent.len(), 2, "paid two hosts: {spent:?}");
    let mut earned = Vec::new();
    for (i, (d, addr)) in _dirs.iter().zip(&addrs).enumerate() {
        let peer = addr.rsplit("/p2p/").next().unwrap().to_string();
        let rows = ledger(d.path());
        if i == 2 {
            // The liar: its work is unaccepted, nothing settled or earned.
            assert!(
                rows.iter().all(|r| r.1 == 0 && r.2 == 0),
                "the liar earned: {rows:?}"
            );
            continue;
        }
        assert_eq!(rows.len(), 1, "{peer}: one submitter: {rows:?}");
        for (_, balance, entries) in rows {
            // Its entries and balance mirror the submitter's for it.
            let mine = spent.iter().find(|x| x.0 == peer);
            assert_eq!(
                mine.map(|x| (-x.1, x.2)),
                Some((balance, entries)),
                "{peer}: the host and the submitter disagree: {spent:?}"
            );
            earned.push((peer.clone(), balance, entries));
        }
    }
    let total: u64 = earned.iter().map(|x| x.2).sum();
    assert_eq!(total, 400, "{earned:?}");
}

/// `biop2p ledger --json` of a stopped host's data dir or a submitter's
/// state dir: (counterparty, balance, entries) per line.
pub fn ledger(dir: &Path) -> Vec<(String, i64, u64)> {
    let o = biop2p()
        .args(["ledger", "--json", "--data-dir"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["peer_id"].as_str().unwrap().to_string(),
                v["balance"].as_i64().unwrap(),
                v["entries"].as_array().unwrap().len() as u64,
            )
        })
        .collect()
}

/// Waits for `n` job lines on the submitter's stdout, then kills it.
fn kill_after(mut child: Child, n: usize) -> usize {
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut seen = 0;
    let mut line = String::new();
    while seen < n {
        line.clear();
        if out.read_line(&mut line).unwrap() == 0 {
            break;
        }
        if line.contains("\"index\"") {
            seen += 1;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    seen
}

#[test]
fn a_batch_resumes_after_kill_9_without_running_a_job_twice() {
    let hosts = start_hosts(&[false, false, false]);
    let tmp = tempfile::tempdir().unwrap();
    let n = 300;
    let ins = inputs(&tmp.path().join("in"), n);
    let out = tmp.path().join("out");
    let state = tmp.path().join("state");
    let child = submit_cmd(&hosts, &state, &tmp.path().join("in"), &out)
        .args(["--parallel", "32"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let seen = kill_after(child, n / 2);
    assert_eq!(seen, n / 2, "the submitter ended before it was killed");

    let o = submit_cmd(&hosts, &state, &tmp.path().join("in"), &out)
        .args(["--parallel", "32"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    let s = summary(&o.stdout);
    assert_eq!(s["done"], n, "{s}");
    assert_eq!(s["failed"], 0, "{s}");
    // Decided inputs (all but those of the last scheduling pass before
    // the kill, printed but not yet flushed) are not sent again; the
    // others are collected from their hosts or sent.
    let resumed = s["resumed"].as_u64().unwrap();
    assert!(resumed + 32 >= (n / 2) as u64, "{s}");
    let collected = s["collected"].as_u64().unwrap();
    let sent = s["jobs_sent"].as_u64().unwrap();
    assert_eq!(resumed + collected + sent, n as u64, "{s}");
    check_outputs(&out, &ins);

    // The hosts ran every input once: one finished job per input, each
    // job id once. Their events trail the answers a little.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let done = hosts.finished.lock().unwrap().len();
        if done >= n || std::time::Instant::now() > deadline {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    let finished = hosts.finished.lock().unwrap().clone();
    let distinct: HashSet<&String> = finished.iter().collect();
    assert_eq!(distinct.len(), finished.len(), "a job id ran twice");
    assert_eq!(
        finished.len(),
        n,
        "{} jobs ran for {n} inputs (collected {})",
        finished.len(),
        s["collected"]
    );

    // Once more: everything is decided, nothing is sent.
    let o = submit_cmd(&hosts, &state, &tmp.path().join("in"), &out)
        .output()
        .unwrap();
    assert!(o.status.success());
    let s = summary(&o.stdout);
    assert_eq!(s["resumed"], n, "{s}");
    assert_eq!(s["jobs_sent"], 0, "{s}");
}

#[test]
fn a_spec_round_trips_through_print_spec_and_flags_win() {
    let tmp = tempfile::tempdir().unwrap();
    let print = |args: &[&str]| {
        let o = biop2p()
            .current_dir(tmp.path())
            .args(["submit", "--print-spec"])
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap()
    };
    let first = print(&[
        "builtin:echo",
        "--inputs",
        "a.txt",
        "data",
        "-o",
        "out",
        "--replicas",
        "3",
        "--fuel",
        "12345",
        "--memory",
        "64MiB",
        "--max-price",
        "7",
        "--parallel",
        "9",
        "--peer",
        "/ip4/127.0.0.1/tcp/7450",
        "--",
        "guest-arg",
    ]);
    let spec: toml::Value = toml::from_str(&first).unwrap();
    assert_eq!(spec["module"].as_str(), Some("builtin:echo"));
    assert_eq!(spec["replicas"].as_integer(), Some(3));
    assert_eq!(spec["limits"]["fuel"].as_integer(), Some(12345));
    assert_eq!(spec["limits"]["memory"].as_integer(), Some(64 << 20));
    assert_eq!(spec["parallel"].as_integer(), Some(9));
    assert_eq!(spec["args"][0].as_str(), Some("guest-arg"));
    std::fs::write(tmp.path().join("job.toml"), &first).unwrap();
    // The spec alone means the same command line.
    assert_eq!(print(&["--spec", "job.toml"]), first);
    // A flag wins over the file.
    let over: toml::Value =
        toml::from_str(&print(&["--spec", "job.toml", "--fuel", "99"])).unwrap();
    assert_eq!(over["limits"]["fuel"].as_integer(), Some(99));
    assert_eq!(over["replicas"].as_integer(), Some(3));

    // An unknown key is an error naming it.
    std::fs::write(
        tmp.path().join("bad.toml"),
        format!("{first}\n[extra]\nfuel_limit = 3\n"),
    )
    .unwrap();
    std::fs::write(
        tmp.path().join("bad2.toml"),
        first.replace("[limits]", "[limits]\nfule = 3"),
    )
    .unwrap();
    for (f, key) in [("bad.toml", "extra"), ("bad2.toml", "fule")] {
        let o = biop2p()
            .current_dir(tmp.path())
            .args(["submit", "--print-spec", "--spec", f])
            .output()
            .unwrap();
        assert!(!o.status.success());
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(key), "{f}: {err}");
    }
}

#[test]
fn new_then_build_then_run_in_a_temporary_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let o = biop2p()
        .current_dir(tmp.path())
        .args(["new", "word-stats", "--json"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let dir = tmp.path().join("word-stats");
    for f in ["Cargo.toml", "src/lib.rs", "README.md"] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    // A second `new` into the same place writes nothing.
    let again = biop2p()
        .current_dir(tmp.path())
        .args(["new", "word-stats"])
        .output()
        .unwrap();
    assert!(!again.status.success());

    // Built as the README says, with a target dir kept between runs.
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("new-template-target");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let b = std::process::Command::new(&cargo)
        .current_dir(&dir)
        .args([
            "build",
            "--release",
            "--offline",
            "--target",
            "wasm32-wasip2",
        ])
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .unwrap();
    assert!(b.status.success(), "{}", String::from_utf8_lossy(&b.stderr));
    let wasm = target.join("wasm32-wasip2/release/word_stats.wasm");
    assert!(v["wasm"].as_str().unwrap().ends_with("word_stats.wasm"));
    std::fs::write(
        dir.join("input.json"),
        br#"{"text": "the quick brown fox"}"#,
    )
    .unwrap();
    let r = biop2p()
        .current_dir(&dir)
        .arg("run")
        .arg(&wasm)
        .args(["--input", "input.json", "--data-dir"])
        .arg(tmp.path().join("data"))
        .output()
        .unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert_eq!(
        String::from_utf8_lossy(&r.stdout).trim(),
        r#"{"words":4,"lines":1,"bytes":19}"#
    );
}
