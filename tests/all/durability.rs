//! The real binary, killed with SIGKILL while it holds an accepted job.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use crate::cli::biop2p;

/// A WASI command that counts to 3·10⁹ (a few seconds) and prints.
pub const SLOW: &str = r#"
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 100) "survived")
  (func (export "_start") (local $i i64)
    (loop $l
      (local.set $i (i64.add (local.get $i) (i64.const 1)))
      (br_if $l (i64.lt_u (local.get $i) (i64.const 3000000000))))
    (i32.store (i32.const 0) (i32.const 100))
    (i32.store (i32.const 4) (i32.const 8))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 16)))))"#;

/// Kills the host process when dropped, so a failing test leaves no orphan
/// holding the test's output pipes open.
pub struct Killer(pub Child);

impl Drop for Killer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `biop2p host --json` and returns it with its first TCP address.
pub fn start_host(
    data_dir: &std::path::Path,
    listen: &str,
) -> (Child, String, BufReader<std::process::ChildStdout>) {
    start_host_with(data_dir, listen, &[])
}

/// Same, with extra flags.
pub fn start_host_with(
    data_dir: &std::path::Path,
    listen: &str,
    extra: &[&str],
) -> (Child, String, BufReader<std::process::ChildStdout>) {
    let mut child = biop2p()
        // No mDNS: it would multicast on the machine's real interfaces.
        .args(["host", "--json", "--no-mdns", "--listen", listen])
        .args(extra)
        .arg("--data-dir")
        .arg(data_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start host");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    // Other events (`http` with `--http`, `confined`) may come first.
    let v = wait_for_event(&mut out, "listening");
    let addr = v["addrs"][0].as_str().unwrap().to_string();
    (child, addr, out)
}

fn wait_for_event(
    out: &mut BufReader<std::process::ChildStdout>,
    event: &str,
) -> serde_json::Value {
    loop {
        let mut line = String::new();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "host exited before {event}"
        );
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        if v["event"] == event {
            return v;
        }
    }
}

#[test]
fn an_accepted_job_survives_kill_9_and_a_restart() {
    let host_dir = tempfile::tempdir().unwrap();
    let state_dir = tempfile::tempdir().unwrap();
    let module = host_dir.path().join("slow.wat");
    std::fs::write(&module, SLOW).unwrap();

    let (host, addr, mut events) = start_host(host_dir.path(), "/ip4/127.0.0.1/tcp/0");
    let mut host = Killer(host);
    let out = biop2p()
        .args([
            "submit",
            "--detach",
            "--json",
            "--fuel",
            "100000000000",
            "--peer",
            &addr,
            "--state-dir",
        ])
        .arg(state_dir.path())
        .arg(&module)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let job_id = v["job_id"].as_str().unwrap().to_string();
    assert_eq!(
        wait_for_event(&mut events, "accepted")["job_id"],
        job_id.as_str()
    );

    // The job is running (it takes seconds): kill the host outright.
    host.0.kill().unwrap(); // SIGKILL
    host.0.wait().unwrap();
    let out = biop2p()
        .args(["status", &job_id, "--json", "--no-mdns", "--find-secs", "1"])
        .arg("--state-dir")
        .arg(state_dir.path())
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "the host is down, so status cannot be known"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not found"), "{err}");

    // Restart on the same data dir and address.
    let listen = addr.split("/p2p/").next().unwrap().to_string();
    let (host, _, mut events) = start_host(host_dir.path(), &listen);
    let mut host = Killer(host);
    assert_eq!(wait_for_event(&mut events, "recovered")["jobs"], 1);

    // A new submitter process (the old one is long gone) collects it.
    let out = biop2p()
        .args(["result", &job_id, "--json", "--no-mdns", "--state-dir"])
        .arg(state_dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status"], "done");
    use base64::Engine as _;
    let output = base64::engine::general_purpose::STANDARD
        .decode(v["output_base64"].as_str().unwrap())
        .unwrap();
    assert_eq!(output, b"survived");
    assert_eq!(v["receipts"].as_array().unwrap().len(), 1);
    let status = biop2p()
        .args(["status", &job_id, "--json", "--no-mdns", "--state-dir"])
        .arg(state_dir.path())
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(v["status"], "done");
    // A clean stop (SIGTERM) this time.
    let _ = Command::new("kill").arg(host.0.id().to_string()).status();
    assert!(
        host.0.wait().unwrap().success(),
        "SIGTERM stops the host cleanly"
    );
}

#[test]
fn a_job_is_collected_from_its_host_after_the_host_moved_to_another_port() {
    let seed_dir = tempfile::tempdir().unwrap();
    let host_dir = tempfile::tempdir().unwrap();
    let state_dir = tempfile::tempdir().unwrap();
    let module = host_dir.path().join("slow.wat");
    std::fs::write(&module, SLOW).unwrap();
    let swarm = format!("moved-{}", std::process::id());
    let net = ["--swarm", swarm.as_str()];

    // A seed host, and the job's host joined to the swarm through it.
    let (seed, seed_addr, _seed_events) =
        start_host_with(seed_dir.path(), "/ip4/127.0.0.1/tcp/0", &net);
    let _seed = Killer(seed);
    // Joined by the seed's name, not its address: `/dns4/localhost` is
    // resolved from /etc/hosts, so this needs no network beyond loopback.
    let seed_by_name = seed_addr.replace("/ip4/127.0.0.1/", "/dns4/localhost/");
    assert_ne!(seed_by_name, seed_addr);
    let joined = [&net[..], &["--bootstrap", seed_by_name.as_str()]].concat();
    let (host, addr, mut events) =
        start_host_with(host_dir.path(), "/ip4/127.0.0.1/tcp/0", &joined);
    let mut host = Killer(host);
    let out = biop2p()
        .args([
            "submit",
            "--detach",
            "--json",
            "--fuel",
            "100000000000",
            "--peer",
            &addr,
        ])
        .arg("--state-dir")
        .arg(state_dir.path())
        .arg(&module)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let job_id = v["job_id"].as_str().unwrap().to_string();
    wait_for_event(&mut events, "accepted");

    // The host stops and comes back on another port, same identity.
    host.0.kill().unwrap();
    host.0.wait().unwrap();
    let (moved, new_addr, _events) =
        start_host_with(host_dir.path(), "/ip4/127.0.0.1/tcp/0", &joined);
    let _moved = Killer(moved);
    assert_ne!(new_addr, addr, "the host listens elsewhere now");

    // `result` finds it through the seed (Kademlia and adverts) by its peer id.
    let out = biop2p()
        .args([
            "result",
            &job_id,
            "--json",
            "--no-mdns",
            "--find-secs",
            "30",
        ])
        .args(["--swarm", swarm.as_str(), "--bootstrap", seed_addr.as_str()])
        .arg("--state-dir")
        .arg(state_dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status"], "done");
}
