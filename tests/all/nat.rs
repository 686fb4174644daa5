//! Volunteers behind real NATs. A "public" segment (a bridge) holds a
//! relay host; two private segments sit behind their own routers, each a
//! namespace that masquerades with nftables and drops unsolicited inbound
//! packets, as home routers do. Host A (and A2) sit behind NAT A, the
//! submitter behind NAT B; everything is a real `biop2p` process and no
//! packet leaves the test's namespaces (none of them has a route out).
//!
//! Shown, in one run (the namespaces are made once):
//! - the submitter, which knows only the relay, finds host A through the
//!   swarm (A's advert carries its relayed address only), and the job runs
//!   over a hole-punched direct connection (`via_relay: false`), on each of
//!   `BIOP2P_NAT_ATTEMPTS` (default 10) fresh submitters;
//! - the relay's limits hold: with one reservation allowed, A2's is refused
//!   and the relay keeps serving A;
//! - with NAT B made symmetric (`masquerade random`), hole punching cannot
//!   work: the small job runs through the relay and the submitter says so,
//!   and a large one is refused `too_large`, naming the relay.
//!
//! The figures (time from A's start to its first job accepted, hole-punch
//! successes) are printed; what is asserted is behaviour.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::durability::Killer;
use crate::netns::{Namespaces, required};

const SWITCH: usize = 0;
const RELAY: usize = 1;
const ROUTER_A: usize = 2;
const ROUTER_B: usize = 3;
const HOST_A: usize = 4;
const HOST_A2: usize = 5;
const SUBMITTER: usize = 6;

/// Addresses on the "public" segment (198.18.0.0/15 is reserved for
/// network tests, so it is nobody's real address).
const RELAY_IP: &str = "198.18.0.1";

/// The relay's operator says where it is reachable (as on a machine with a
/// public IP): it relays from the start, without waiting for an AutoNAT
/// server to dial it back.
const RELAY_PUBLIC: &str = "[network.nat]\nexternal_addrs = [\"/ip4/198.18.0.1/udp/7450/quic-v1\", \"/ip4/198.18.0.1/tcp/7450\"]\n";

/// Echoes up to 256 bytes of stdin.
const ECHO: &str = r#"
(module
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 100))
    (i32.store (i32.const 4) (i32.const 256))
    (drop (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 16)))
    (i32.store (i32.const 8) (i32.const 100))
    (i32.store (i32.const 12) (i32.load (i32.const 16)))
    (drop (call $fd_write (i32.const 1) (i32.const 8) (i32.const 1) (i32.const 20)))))"#;

/// A router's rules: masquerade out of the public interface (port
/// preserving, or `random`: a new port per destination, a symmetric NAT),
/// forward only what answers traffic from inside, and drop unsolicited
/// packets to the router itself (rather than answer them, which would
/// leave a conntrack entry in the way of a later hole punch).
fn router_rules(public_if: &str, symmetric: bool) -> String {
    let random = if symmetric { " random" } else { "" };
    format!(
        r#"table ip nat {{
  chain post {{
    type nat hook postrouting priority srcnat; policy accept;
    oifname "{public_if}" masquerade{random}
  }}
}}
table ip filter {{
  chain forward_new {{
    type filter hook forward priority filter; policy drop;
    ct state established,related accept
    iifname != "{public_if}" accept
  }}
  chain input_new {{
    type filter hook input priority filter; policy accept;
    iifname "{public_if}" ct state new drop
  }}
}}
"#
    )
}

struct Internet {
    ns: Namespaces,
    /// The public interfaces of the relay and of routers A and B.
    public_if: Vec<String>,
}

fn internet() -> Result<Internet, String> {
    let ns = Namespaces::new(7)?;
    let public_if = ns.bridge(
        SWITCH,
        &[
            (RELAY, "198.18.0.1/24"),
            (ROUTER_A, "198.18.0.2/24"),
            (ROUTER_B, "198.18.0.3/24"),
        ],
    )?;
    ns.veth("a", ROUTER_A, "10.1.1.1/24", HOST_A, "10.1.1.2/24")?;
    ns.veth("c", ROUTER_A, "10.1.2.1/24", HOST_A2, "10.1.2.2/24")?;
    ns.veth("b", ROUTER_B, "10.2.0.1/24", SUBMITTER, "10.2.0.2/24")?;
    for (m, gw) in [
        (HOST_A, "10.1.1.1"),
        (HOST_A2, "10.1.2.1"),
        (SUBMITTER, "10.2.0.1"),
    ] {
        ns.run(m, "ip", &["route", "add", "default", "via", gw])?;
    }
    for r in [ROUTER_A, ROUTER_B] {
        ns.run(r, "sh", &["-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"])?;
    }
    ns.nft(ROUTER_A, &router_rules(&public_if[1], false))?;
    ns.nft(ROUTER_B, &router_rules(&public_if[2], false))?;
    Ok(Internet { ns, public_if })
}

struct Host {
    _proc: Killer,
    peer_id: String,
    quic: String,
    events: mpsc::Receiver<Value>,
    seen: Vec<Value>,
    dir: tempfile::TempDir,
}

impl Host {
    fn start(net: &Internet, i: usize, ip: &str, config: &str, bootstrap: Option<&str>) -> Host {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("biop2p.toml");
        std::fs::write(&cfg, config).unwrap();
        let mut c = net.ns.command(i, env!("CARGO_BIN_EXE_biop2p"));
        c.args(["host", "--json", "--no-mdns"])
            .arg("--listen")
            .arg(format!("/ip4/{ip}/udp/7450/quic-v1"))
            .arg("--listen")
            .arg(format!("/ip4/{ip}/tcp/7450"))
            .arg("--config")
            .arg(&cfg)
            .arg("--data-dir")
            .arg(dir.path());
        if let Some(b) = bootstrap {
            c.arg("--bootstrap").arg(b);
        }
        let mut child = c
            .env("BIOP2P_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.path().join("host.log")).unwrap())
            .spawn()
            .expect("start host in its namespace");
        let out = BufReader::new(child.stdout.take().unwrap());
        let (tx, events) = mpsc::channel();
        std::thread::spawn(move || {
            for line in out.lines() {
                let Ok(line) = line else { break };
                if let Ok(v) = serde_json::from_str::<Value>(&line)
                    && tx.send(v).is_err()
                {
                    break;
                }
            }
        });
        let mut h = Host {
            _proc: Killer(child),
            peer_id: String::new(),
            quic: String::new(),
            events,
            seen: Vec::new(),
            dir,
        };
        let l = h.wait(Duration::from_secs(60), |v| v["event"] == "listening");
        h.peer_id = l["peer_id"].as_str().unwrap().to_string();
        h.quic = l["addrs"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|a| a.as_str())
            .find(|a| a.contains("/quic-v1"))
            .expect("a QUIC address")
            .to_string();
        h
    }

    /// The next event (after those already seen) that `pred` accepts.
    fn wait(&mut self, within: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        self.try_wait(within, pred).unwrap_or_else(|| {
            panic!(
                "host {} did not report the awaited event within {within:?}; {}",
                self.peer_id,
                self.report()
            )
        })
    }

    /// The same, `None` when it does not come within `within`.
    fn try_wait(&mut self, within: Duration, pred: impl Fn(&Value) -> bool) -> Option<Value> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let v = self.events.recv_timeout(left).ok()?;
            self.seen.push(v.clone());
            if pred(&v) {
                return Some(v);
            }
        }
    }

    /// The events seen and the log's tail, for a failure message.
    fn report(&self) -> String {
        format!("seen: {:?}\nlog:\n{}", self.seen, self.log_tail())
    }

    /// Takes in the events reported so far.
    fn drain(&mut self) {
        while let Ok(v) = self.events.try_recv() {
            self.seen.push(v);
        }
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("host.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

/// `biop2p submit` from behind NAT B, knowing only the relay.
fn submit(net: &Internet, work: &Path, input: &Path, relay: &str, state: &Path) -> Output {
    net.ns
        .command(SUBMITTER, env!("CARGO_BIN_EXE_biop2p"))
        .args(["submit", "--json", "--no-mdns", "--replicas", "1"])
        .args(["--max-price", "10", "--max-replacements", "0"])
        .args(["--discover-secs", "30", "--deadline", "60"])
        .arg("--bootstrap")
        .arg(relay)
        .arg("--state-dir")
        .arg(state)
        .arg(work)
        .arg("--input")
        .arg(input)
        .env("BIOP2P_LOG", "info")
        .stdin(Stdio::null())
        .output()
        .expect("run submit in its namespace")
}

fn text(o: &Output) -> String {
    format!(
        "status {}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A host behind NAT A learns at once that it is private (the relay sees
/// it at router A's address, which is not its own), says so, and its
/// adverts never carry its private address.
#[test]
fn a_host_behind_nat_knows_it_is_private_and_advertises_no_private_address() {
    if !required("a_host_behind_nat_knows_it_is_private_and_advertises_no_private_address") {
        return;
    }
    let net = internet().unwrap_or_else(|e| panic!("cannot build the NATed network: {e}"));
    for m in [RELAY, ROUTER_A, ROUTER_B] {
        let routes = net.ns.run(m, "ip", &["route"]).unwrap();
        assert!(!routes.contains("default"), "{m} routes out: {routes}");
    }
    let relay = Host::start(&net, RELAY, RELAY_IP, RELAY_PUBLIC, None);
    let mut a = Host::start(&net, HOST_A, "10.1.1.2", "", Some(&relay.quic));
    let first = a.wait(Duration::from_secs(30), |v| v["event"] == "reachability");
    assert_eq!(first["reachability"], "unknown", "{first}");
    let private = a.wait(Duration::from_secs(30), |v| {
        v["event"] == "reachability" && v["reachability"] == "private"
    });
    assert!(
        private["status"].as_str().unwrap().starts_with("private ("),
        "{private}"
    );
    // Its adverts reach the relay, and carry no address of NAT A's side.
    let mut relay = relay;
    let seen = relay.wait(Duration::from_secs(30), |v| {
        v["event"] == "discovered" && v["peer_id"] == a.peer_id.as_str()
    });
    assert_eq!(seen["price_per_mfuel"], 1, "{seen}");
    a.drain();
    for v in a.seen.iter().filter(|v| v["event"] == "reachability") {
        for ad in v["advertised"].as_array().unwrap() {
            let ad = ad.as_str().unwrap();
            assert!(
                !ad.contains("/10.1."),
                "host A advertised {ad}, unreachable from outside its NAT"
            );
        }
    }
}

/// The whole path (see the module's docs). The figures are printed:
/// `cargo test --release --test all nat:: -- --nocapture`.
#[test]
fn hosts_behind_nat_are_reached_by_hole_punching_or_through_a_relay() {
    if !required("hosts_behind_nat_are_reached_by_hole_punching_or_through_a_relay") {
        return;
    }
    let attempts: usize = std::env::var("BIOP2P_NAT_ATTEMPTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let net = internet().unwrap_or_else(|e| panic!("cannot build the NATed network: {e}"));
    // Nothing routes out of the test's namespaces.
    for m in [RELAY, ROUTER_A, ROUTER_B] {
        let routes = net.ns.run(m, "ip", &["route"]).unwrap();
        assert!(!routes.contains("default"), "{m} routes out: {routes}");
    }
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("echo.wat");
    std::fs::write(&work, ECHO).unwrap();
    let small = dir.path().join("small.txt");
    std::fs::write(&small, "through two NATs").unwrap();

    // The relay: public, one reservation at most, too dear for the
    // submitter (so the job goes to the host behind NAT A).
    let mut relay = Host::start(
        &net,
        RELAY,
        RELAY_IP,
        &format!("{RELAY_PUBLIC}relay_max_reservations = 1\n[market]\nprice_per_mfuel = 50\n"),
        None,
    );
    let relay_addr = relay.quic.clone();

    // Host A starts, and a submitter behind NAT B at the same moment.
    let started = Instant::now();
    let mut a = Host::start(&net, HOST_A, "10.1.1.2", "", Some(&relay_addr));
    let first = {
        let state = dir.path().join("s0");
        let (w, s, r) = (work.clone(), small.clone(), relay_addr.clone());
        std::thread::scope(|scope| {
            let sub = scope.spawn(|| submit(&net, &w, &s, &r, &state));
            let acc = a.try_wait(Duration::from_secs(60), |v| v["event"] == "accepted");
            let elapsed = started.elapsed();
            let out = sub.join().unwrap();
            let acc = acc.unwrap_or_else(|| {
                panic!(
                    "host A accepted no job within 60 s; the submitter: {}\nhost A: {}",
                    text(&out),
                    a.report()
                )
            });
            (acc, elapsed, out)
        })
    };
    let (accepted, to_first_job, out) = first;
    assert!(out.status.success(), "first submit failed: {}", text(&out));
    assert_eq!(
        accepted["via_relay"],
        false,
        "the first job came through the relay: {}",
        text(&out)
    );
    let reach = a
        .seen
        .iter()
        .find(|v| v["event"] == "reachability" && v["reachability"] == "private")
        .cloned()
        .unwrap_or_else(|| panic!("host A never said it is private: {:?}", a.seen));
    assert!(
        a.seen.iter().any(|v| v["event"] == "reachability"
            && v["relays"]
                .as_array()
                .is_some_and(|r| r.iter().any(|p| p == relay.peer_id.as_str()))
            && v["status"]
                .as_str()
                .is_some_and(|s| s.starts_with("private (relayed via"))),
        "host A never said it is relayed via the relay: {reach}"
    );
    // Its adverts carried only the relayed address, never 10.1.1.2.
    for v in a.seen.iter().filter(|v| v["event"] == "reachability") {
        for ad in v["advertised"].as_array().unwrap() {
            let ad = ad.as_str().unwrap();
            assert!(
                ad.contains("/p2p-circuit"),
                "host A advertised {ad}, which is not reachable from outside its NAT"
            );
        }
    }
    println!(
        "nat: host A's first job from behind NAT B was accepted {:.2} s after it started (target: 10 s)",
        to_first_job.as_secs_f64()
    );

    // The relay's limits: A holds its one reservation; A2's is refused.
    let a2 = Host::start(
        &net,
        HOST_A2,
        "10.1.2.2",
        "[market]\nprice_per_mfuel = 20\n",
        Some(&relay_addr),
    );
    let denied = relay.wait(Duration::from_secs(30), |v| {
        v["event"] == "relay" && v["action"] == "reservation_denied"
    });
    assert_eq!(denied["peer"], a2.peer_id.as_str(), "{denied}");

    // Hole punching on cone NATs, fresh submitters each time; the relay,
    // past its refusal, keeps carrying their set-up.
    let mut direct = 1;
    for k in 1..attempts {
        let out = submit(
            &net,
            &work,
            &small,
            &relay_addr,
            &dir.path().join(format!("s{k}")),
        );
        assert!(out.status.success(), "submit {k} failed: {}", text(&out));
        let acc = a.wait(Duration::from_secs(60), |v| v["event"] == "accepted");
        if acc["via_relay"] == false {
            direct += 1;
        }
        assert!(
            !String::from_utf8_lossy(&out.stderr).contains("via relay"),
            "submit {k} says it went via the relay: {}",
            text(&out)
        );
    }
    println!(
        "nat: hole punching through two cone NATs: {direct}/{attempts} direct (target: 10/10)"
    );
    assert_eq!(direct, attempts);
    relay.drain();
    assert!(
        relay
            .seen
            .iter()
            .skip_while(|v| v["action"] != "reservation_denied")
            .any(|v| v["action"] == "circuit_accepted")
            || attempts == 1,
        "the relay stopped serving after a refusal: {:?}",
        relay.seen
    );

    // NAT B turns symmetric: no hole punch can work.
    net.ns
        .nft(ROUTER_B, &router_rules(&net.public_if[2], true))
        .unwrap();
    let out = submit(&net, &work, &small, &relay_addr, &dir.path().join("sym"));
    assert!(
        out.status.success(),
        "relayed submit failed: {}",
        text(&out)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("note:") && stderr.contains("via relay"),
        "no note that the job went via the relay: {}",
        text(&out)
    );
    let acc = a.wait(Duration::from_secs(60), |v| v["event"] == "accepted");
    assert_eq!(acc["via_relay"], true, "{acc}");

    // A large blob is refused through the relay, with the reason.
    let large = dir.path().join("large.bin");
    std::fs::write(&large, vec![7u8; 300 << 10]).unwrap();
    let out = submit(&net, &work, &large, &relay_addr, &dir.path().join("big"));
    assert!(
        !out.status.success(),
        "a large job went through the relay: {}",
        text(&out)
    );
    let refused = a.wait(Duration::from_secs(60), |v| v["event"] == "refused");
    assert_eq!(refused["reason"], "too_large", "{refused}");
    let msg = refused["message"].as_str().unwrap();
    assert!(msg.contains("through a relay"), "{msg}");
    let all = text(&out);
    assert!(
        all.contains("too_large") && all.contains("through a relay"),
        "the submitter does not say why: {all}"
    );
}
