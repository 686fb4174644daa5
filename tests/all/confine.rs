//! The host confines itself: real `biop2p host` processes (never the test
//! runner, which in-process hosts share) try, through the hidden
//! `--escape-probe` hook that stands in for an escaped guest, to read a file
//! outside their data dir, run `/bin/sh` and open raw sockets, from a host
//! thread and from a sandbox worker. Confined, each is denied and the host
//! goes on serving jobs; with `--no-confine` the same probe gets through, so
//! the probe itself is known to work.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{ChildStdout, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use biop2p::node::client::JobParams;
use biop2p::node::verify_response;
use libp2p::Multiaddr;
use serde_json::Value;

use crate::cli::biop2p;
use crate::durability::Killer;
use crate::guests;
use crate::network::{assert_echo_works, client, run_job};

/// Probe lines a host prints: 7 from a host thread, 6 from a worker.
const PROBE_LINES: usize = 13;

/// A host process, its TCP address and the JSON lines it printed after
/// `listening` (read by a thread, so that every wait is bounded).
struct Probed {
    proc: Killer,
    addr: Multiaddr,
    lines: mpsc::Receiver<Value>,
}

/// Starts `biop2p host --json` on loopback TCP, its log in `log`.
fn spawn(data_dir: &Path, log: &Path, extra: &[&str]) -> Probed {
    let mut child = biop2p()
        .args([
            "host",
            "--json",
            "--no-mdns",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
        ])
        .args(extra)
        .arg("--data-dir")
        .arg(data_dir)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("start host");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).expect("listening line");
    let v: Value = serde_json::from_str(&line).expect("JSON event");
    assert_eq!(v["event"], "listening");
    let addr = v["addrs"][0].as_str().unwrap().parse().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || forward(out, tx));
    Probed {
        proc: Killer(child),
        addr,
        lines,
    }
}

fn forward(out: BufReader<ChildStdout>, tx: mpsc::Sender<Value>) {
    for line in out.lines() {
        let Ok(line) = line else { break };
        if let Ok(v) = serde_json::from_str(&line)
            && tx.send(v).is_err()
        {
            break;
        }
    }
}

impl Probed {
    /// The next event named `name` (others skipped), within 30 s.
    fn next(&self, name: &str) -> Value {
        loop {
            let v = self
                .lines
                .recv_timeout(Duration::from_secs(30))
                .unwrap_or_else(|_| panic!("no {name} event within 30 s"));
            if v["event"] == name {
                return v;
            }
        }
    }

    /// The probe's verdicts: (thread, attempt) → allowed.
    fn probes(&self) -> Vec<(String, String, bool, String)> {
        (0..PROBE_LINES)
            .map(|_| {
                let v = self.next("escape_probe");
                (
                    v["thread"].as_str().unwrap().to_string(),
                    v["attempt"].as_str().unwrap().to_string(),
                    v["allowed"].as_bool().unwrap(),
                    v["error"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    }

    fn is_running(&mut self) -> bool {
        self.proc.0.try_wait().unwrap().is_none()
    }

    /// Stops the host with SIGTERM and checks that it stopped cleanly, with
    /// no thread of it panicking on the way (a denied call it needed).
    fn stop_cleanly(mut self, log: &Path) {
        let pid = rustix::process::Pid::from_raw(self.proc.0.id() as i32).unwrap();
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
        assert!(self.proc.0.wait().unwrap().success(), "SIGTERM stops it");
        let log = std::fs::read_to_string(log).unwrap();
        assert!(!log.contains("panicked"), "{log}");
    }
}

/// A secret outside the data dir (a sibling of it, in the same temp dir).
fn secret(dir: &tempfile::TempDir) -> String {
    let path = dir.path().join("secret.txt");
    std::fs::write(&path, "the volunteer's data").unwrap();
    path.to_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_escaped_guest_is_denied_and_the_host_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("host.log");
    let secret = secret(&dir);
    let mut host = spawn(&data, &log, &["--escape-probe", &secret]);

    let report = host.next("confined");
    eprintln!("confinement on this kernel: {report}");
    assert_eq!(report["seccomp"], true, "{report}");
    assert_eq!(report["no_new_privs"], true, "{report}");
    assert_eq!(report["task_threads"], true, "{report}");
    let landlock = report["landlock_abi"].as_u64().unwrap() > 0;
    if landlock {
        assert_ne!(report["landlock"], "not_enforced", "{report}");
    } else {
        eprintln!("this kernel has no Landlock: file reads are not confined here");
    }

    for (thread, attempt, allowed, error) in host.probes() {
        let want = match (thread.as_str(), attempt.as_str()) {
            // The host's own work: its sockets, its data dir, DNS.
            ("host", "tcp_socket" | "read_data_dir" | "resolve") => true,
            (_, "read_outside" | "read_data_dir") if !landlock => true,
            // What an escaped guest wants; a worker has no sockets and sees
            // nothing outside its scratch and code-cache dirs.
            _ => false,
        };
        assert_eq!(
            allowed, want,
            "{thread} thread, {attempt}: allowed={allowed} ({error})"
        );
        if !allowed {
            assert!(
                error.contains("Operation not permitted") || error.contains("Permission denied"),
                "{thread} {attempt} denied for another reason: {error}"
            );
        }
    }

    // Still serving: an echo, and two scratch tasks (the second gets the
    // first one's directory back from the spares, a rename across dirs).
    assert!(host.is_running());
    let cache = data.join("code-cache");
    let cached_before = cwasm_files(&cache);
    let mut c = client().await;
    let peer = c.connect(&host.addr).await.unwrap();
    assert_echo_works(&mut c, &peer).await;
    let p = JobParams {
        scratch: true,
        ..JobParams::default()
    };
    for i in 0..2 {
        let (job, r) = run_job(&mut c, &peer, guests::SCRATCH_FILLER.as_bytes(), &[1], &p).await;
        let v = verify_response(&r, &job.id(), &job.verify().unwrap(), &peer).expect("verified");
        assert!(v.output.is_some(), "scratch task {i}: {:?}", v.failure);
    }
    // The worker wrote the compiled code to the cache beneath the data dir.
    // (The echo workload and the scratch guest: two new artifacts.)
    let cached = cwasm_files(&cache);
    assert_eq!(cached, cached_before + 2, "compiled modules cached");
    assert!(host.is_running());
    host.stop_cleanly(&log);
}

fn cwasm_files(dir: &std::path::Path) -> usize {
    walk(dir)
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .count()
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// The control: unconfined, the same probe reads the secret and runs a
/// shell (and, as root, opens raw sockets), so the denials above are the
/// confinement's doing.
#[test]
fn without_confinement_the_probe_gets_through() {
    let dir = tempfile::tempdir().unwrap();
    let secret = secret(&dir);
    let host = spawn(
        &dir.path().join("data"),
        &dir.path().join("host.log"),
        &["--no-confine", "--escape-probe", &secret],
    );
    let root = rustix::process::geteuid().is_root();
    for (thread, attempt, allowed, error) in host.probes() {
        let want = root || !attempt.ends_with("_socket") || attempt == "tcp_socket";
        if want {
            assert!(allowed, "{thread} thread, {attempt} refused: {error}");
        }
    }
}

/// Confined, a host still reopens its state: the same identity, its sled
/// database and its stored calibration, and it runs jobs again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_confined_host_restarts_on_its_own_state() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("host.log");
    let mut peers = Vec::new();
    for _ in 0..2 {
        let host = spawn(&data, &log, &[]);
        assert_eq!(host.next("confined")["seccomp"], true);
        let mut c = client().await;
        let peer = c.connect(&host.addr).await.unwrap();
        assert_echo_works(&mut c, &peer).await;
        peers.push(peer);
        host.stop_cleanly(&log);
    }
    assert_eq!(peers[0], peers[1], "the identity was read back");
    assert!(data.join("calibration.json").exists());
}
