//! Ten real hosts in namespaces of their own, a 50 ms round trip and 5%
//! packet loss between any two, and three hosts killed with SIGKILL while
//! each holds an accepted job: every job still completes, verified, and no
//! accepted job is lost. The submitter re-places what dies, as the product
//! does (`submit --replicas 1` with candidate hosts).

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::durability::Killer;
use crate::netns::{Lan, required};

const HOSTS: usize = 10;
const KILLED: [usize; 3] = [2, 5, 8];
const JOBS: usize = 30;
/// One way; the round trip is twice this.
const DELAY: Duration = Duration::from_millis(25);
const LOSS: f64 = 0.05;

/// Echoes stdin after counting to 10⁸ (a fraction of a second): long
/// enough that a host killed on its `accepted` event dies mid-job.
pub(crate) const WORK: &str = r#"
(module
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start") (local $i i64)
    (loop $l
      (local.set $i (i64.add (local.get $i) (i64.const 1)))
      (br_if $l (i64.lt_u (local.get $i) (i64.const 100000000))))
    (i32.store (i32.const 0) (i32.const 100))
    (i32.store (i32.const 4) (i32.const 256))
    (drop (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 16)))
    (i32.store (i32.const 8) (i32.const 100))
    (i32.store (i32.const 12) (i32.load (i32.const 16)))
    (drop (call $fd_write (i32.const 1) (i32.const 8) (i32.const 1) (i32.const 20)))))"#;

pub(crate) struct Host {
    pub(crate) proc: Option<Killer>,
    pub(crate) peer_id: String,
    pub(crate) addr: String,
    _dir: tempfile::TempDir,
}

pub(crate) fn spawn_host(
    lan: &Lan,
    i: usize,
    events: mpsc::Sender<(usize, serde_json::Value)>,
) -> Host {
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("/ip4/{}/tcp/7450", lan.addr(i));
    let mut child: Child = lan
        .command(i, env!("CARGO_BIN_EXE_biop2p"))
        .args(["host", "--json", "--no-mdns", "--listen", &listen])
        .arg("--data-dir")
        .arg(dir.path())
        .env("BIOP2P_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.path().join("host.log")).unwrap())
        .spawn()
        .expect("start host in its namespace");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).expect("listening line");
    let v: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("host {i} printed {line:?}: {e}"));
    assert_eq!(v["event"], "listening", "{v}");
    let addr = v["addrs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a.as_str())
        .find(|a| a.starts_with(&format!("/ip4/{}/tcp/", lan.addr(i))))
        .expect("the namespace's TCP address")
        .to_string();
    std::thread::spawn(move || {
        for line in out.lines() {
            let Ok(line) = line else { break };
            if let Ok(v) = serde_json::from_str(&line)
                && events.send((i, v)).is_err()
            {
                break;
            }
        }
    });
    Host {
        proc: Some(Killer(child)),
        peer_id: v["peer_id"].as_str().unwrap().to_string(),
        addr,
        _dir: dir,
    }
}

/// Starts `biop2p submit` for job `j` in the submitter's namespace: its
/// candidates are every host, starting at host `j % HOSTS`.
fn submit(
    lan: &Lan,
    hosts: &[Host],
    j: usize,
    work: &std::path::Path,
    dir: &std::path::Path,
) -> Child {
    let input = dir.join(format!("in{j}"));
    std::fs::write(&input, format!("job {j} under loss")).unwrap();
    let state = dir.join(format!("state{j}"));
    let mut c = lan.command(HOSTS, env!("CARGO_BIN_EXE_biop2p"));
    c.args(["submit", "--json", "--no-mdns", "--replicas", "1"])
        .args(["--fuel", "100000000000", "--deadline", "60"])
        .args(["--max-replacements", "9"])
        .arg(work)
        .arg("--input")
        .arg(&input)
        .arg("--state-dir")
        .arg(&state);
    for k in 0..HOSTS {
        c.arg("--peer").arg(&hosts[(j + k) % HOSTS].addr);
    }
    c.env("BIOP2P_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start submit")
}

#[test]
fn ten_hosts_with_latency_loss_and_three_killed_lose_no_job() {
    if !required("ten_hosts_with_latency_loss_and_three_killed_lose_no_job") {
        return;
    }
    let started = Instant::now();
    let seed = rand::random::<u64>();
    eprintln!("wire seed {seed:#x}");
    // Members 0..HOSTS are hosts, member HOSTS the submitter.
    let lan = Lan::wire(HOSTS + 1, DELAY, LOSS, seed).expect("namespaces and the wire");
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work.wat");
    std::fs::write(&work, WORK).unwrap();

    let (tx, events) = mpsc::channel();
    let mut hosts: Vec<Host> = (0..HOSTS)
        .map(|i| spawn_host(&lan, i, tx.clone()))
        .collect();
    drop(tx);

    // Wave 1: ten jobs, one first offered to each host. Each host in
    // KILLED is killed the moment it says it accepted one (durably: the
    // job is its to run, and it dies running it).
    let mut running: Vec<(usize, Child)> = (0..HOSTS)
        .map(|j| (j, submit(&lan, &hosts, j, &work, dir.path())))
        .collect();
    let mut accepted: HashMap<String, usize> = HashMap::new();
    let mut to_kill: HashSet<usize> = KILLED.into_iter().collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !to_kill.is_empty() {
        let left = deadline
            .checked_duration_since(Instant::now())
            .unwrap_or_else(|| panic!("hosts {to_kill:?} never accepted a job"));
        let (i, v) = events.recv_timeout(left).expect("host events");
        if v["event"] == "accepted" {
            accepted.insert(v["job_id"].as_str().unwrap().to_string(), i);
            if to_kill.remove(&i) {
                // SIGKILL: no shutdown, no flush beyond what it did.
                drop(hosts[i].proc.take());
                eprintln!(
                    "killed host {i} ({}) holding {}",
                    hosts[i].peer_id, v["job_id"]
                );
            }
        }
    }
    let killed_at = started.elapsed();

    // Waves 2 and 3: twenty more, whose first candidates include the dead.
    for j in HOSTS..JOBS {
        running.push((j, submit(&lan, &hosts, j, &work, dir.path())));
    }

    let mut completed = HashSet::new();
    let mut replacements = 0;
    for (j, child) in running {
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "job {j} failed: {stderr}");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("job {j}: {e}: {}", String::from_utf8_lossy(&out.stdout)));
        assert_eq!(v["status"], "done", "job {j}: {v}");
        use base64::Engine;
        let output = base64::engine::general_purpose::STANDARD
            .decode(v["output_base64"].as_str().unwrap())
            .unwrap();
        assert_eq!(
            output,
            format!("job {j} under loss").into_bytes(),
            "job {j}"
        );
        let by = v["receipts"][0]["host"].as_str().unwrap();
        for k in KILLED {
            assert_ne!(
                by, hosts[k].peer_id,
                "job {j}'s result came from dead host {k}"
            );
        }
        replacements += v["replacements"].as_u64().unwrap_or(0);
        completed.insert(v["job_id"].as_str().unwrap().to_string());
    }
    // Every job a surviving host accepted was completed. A job that died
    // with its host was placed again as a job of its own (each placement
    // is its own signed job, with its own id), and every submitted job was
    // completed, as checked above.
    while let Ok((i, v)) = events.try_recv() {
        if v["event"] == "accepted" {
            accepted.insert(v["job_id"].as_str().unwrap().to_string(), i);
        }
    }
    let lost: Vec<&String> = accepted
        .iter()
        .filter(|(id, host)| !KILLED.contains(host) && !completed.contains(*id))
        .map(|(id, _)| id)
        .collect();
    assert!(lost.is_empty(), "accepted and never completed: {lost:?}");
    assert_eq!(completed.len(), JOBS);
    assert!(
        replacements >= KILLED.len() as u64,
        "only {replacements} replicas were placed again after {} hosts died mid-job",
        KILLED.len()
    );
    let (forwarded, dropped) = lan.wire_counts();
    assert!(dropped > 0, "the wire dropped nothing");
    eprintln!(
        "ten_hosts: {JOBS}/{JOBS} jobs completed, 0 of {} accepted lost, {replacements} \
         re-placed; kills done at {killed_at:?}; wire: {forwarded} packets forwarded, \
         {dropped} dropped; wall time {:?}",
        accepted.len(),
        started.elapsed()
    );
}
