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
//! And, in a second run, the relay's limits per circuit against peers the
//! test plays itself from behind NAT B: one more circuit than
//! `relay_max_circuits_per_peer` is refused, idle circuits are closed at
//! `relay_circuit_secs`, a peer pushing bytes is cut off past
//! `relay_circuit_bytes`, and a submitter's small job still goes through.
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

/// What a greedy peer saw of the circuits it asked for.
#[derive(Debug)]
struct Circuits {
    peer: String,
    opened: usize,
    refused: Vec<String>,
    closed: usize,
}

#[derive(libp2p::swarm::NetworkBehaviour)]
struct Greedy {
    relay: libp2p::relay::client::Behaviour,
    ping: libp2p::swarm::behaviour::toggle::Toggle<libp2p::ping::Behaviour>,
}

/// A peer the test plays itself (run it with `Namespaces::spawn_in`): it
/// connects to the relay, then asks for `circuits` circuits to `target`
/// through it at once, pings over them every `ping` (never: `None`), and
/// watches them until every one has been refused or has ended, or
/// `within` has passed.
async fn greedy(
    relay_tcp: libp2p::Multiaddr,
    relay: libp2p::PeerId,
    target: libp2p::PeerId,
    circuits: usize,
    ping: Option<Duration>,
    within: Duration,
) -> Circuits {
    use futures::StreamExt;
    use libp2p::multiaddr::Protocol;
    use libp2p::swarm::SwarmEvent;
    use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};

    let ping = ping.map(|every| {
        libp2p::ping::Behaviour::new(libp2p::ping::Config::new().with_interval(every))
    });
    let mut swarm = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            libp2p::tcp::Config::default(),
            libp2p::noise::Config::new,
            libp2p::yamux::Config::default,
        )
        .unwrap()
        .with_relay_client(libp2p::noise::Config::new, libp2p::yamux::Config::default)
        .unwrap()
        .with_behaviour(|_, relay| Greedy {
            relay,
            ping: ping.into(),
        })
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(300)))
        .build();
    let mut seen = Circuits {
        peer: swarm.local_peer_id().to_string(),
        opened: 0,
        refused: Vec::new(),
        closed: 0,
    };
    let deadline = tokio::time::Instant::now() + within;
    // The relay first: the relay client asks for circuits over an
    // existing connection (several dials at once to an unconnected relay
    // would race each other).
    swarm.dial(relay_tcp.clone()).unwrap();
    loop {
        match tokio::time::timeout_at(deadline, swarm.select_next_some()).await {
            Ok(SwarmEvent::ConnectionEstablished { peer_id, .. }) if peer_id == relay => break,
            Ok(SwarmEvent::OutgoingConnectionError { error, .. }) => {
                panic!("the greedy peer cannot reach the relay: {error}")
            }
            Ok(_) => {}
            Err(_) => panic!("the greedy peer did not reach the relay within {within:?}"),
        }
    }
    let circuit = relay_tcp
        .with(Protocol::P2pCircuit)
        .with(Protocol::P2p(target));
    for _ in 0..circuits {
        swarm
            .dial(
                DialOpts::peer_id(target)
                    .addresses(vec![circuit.clone()])
                    .condition(PeerCondition::Always)
                    .build(),
            )
            .unwrap();
    }
    while seen.opened + seen.refused.len() < circuits || seen.closed < seen.opened {
        match tokio::time::timeout_at(deadline, swarm.select_next_some()).await {
            Ok(SwarmEvent::ConnectionEstablished {
                peer_id, endpoint, ..
            }) if peer_id == target => {
                assert!(endpoint.is_relayed(), "{endpoint:?}");
                seen.opened += 1;
            }
            Ok(SwarmEvent::OutgoingConnectionError {
                peer_id: Some(p),
                error,
                ..
            }) if p == target => seen.refused.push(error.to_string()),
            Ok(SwarmEvent::ConnectionClosed { peer_id, .. }) if peer_id == target => {
                seen.closed += 1;
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    seen
}

impl Host {
    /// Waits until the events seen so far, with those still to come within
    /// `within`, satisfy `pred`; whether they did.
    fn until(&mut self, within: Duration, pred: impl Fn(&[Value]) -> bool) -> bool {
        let deadline = Instant::now() + within;
        while !pred(&self.seen) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(v) => self.seen.push(v),
                Err(_) => return false,
            }
        }
        true
    }
}

/// Whether `seen` holds a `relay` event `action` about `peer` whose detail
/// contains `detail`, `n` times or more.
fn relay_said(seen: &[Value], action: &str, peer: &str, detail: &str, n: usize) -> bool {
    seen.iter()
        .filter(|v| {
            v["event"] == "relay"
                && v["action"] == action
                && v["peer"] == peer
                && v["detail"].as_str().is_some_and(|d| d.contains(detail))
        })
        .count()
        >= n
}

/// The relay's limits per circuit hold against peers that go past them, and
/// the relay keeps serving others: a peer that asks for more circuits than
/// `relay_max_circuits_per_peer` is refused the extra one; circuits left
/// open are closed after `relay_circuit_secs`; a peer that pushes bytes
/// through its circuit is cut off past `relay_circuit_bytes`; and then a
/// submitter behind a symmetric NAT still gets its small job through the
/// same relay. (The reservation limit is shown in
/// `hosts_behind_nat_are_reached_by_hole_punching_or_through_a_relay`.)
#[test]
fn relay_limits_hold_against_greedy_peers_and_the_relay_keeps_serving() {
    if !required("relay_limits_hold_against_greedy_peers_and_the_relay_keeps_serving") {
        return;
    }
    let net = internet().unwrap_or_else(|e| panic!("cannot build the NATed network: {e}"));
    for m in [RELAY, ROUTER_A, ROUTER_B] {
        let routes = net.ns.run(m, "ip", &["route"]).unwrap();
        assert!(!routes.contains("default"), "{m} routes out: {routes}");
    }
    // NAT B is symmetric: whatever comes from behind it stays relayed.
    net.ns
        .nft(ROUTER_B, &router_rules(&net.public_if[2], true))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("echo.wat");
    std::fs::write(&work, ECHO).unwrap();
    let small = dir.path().join("small.txt");
    std::fs::write(&small, "past the greedy ones").unwrap();

    const PER_PEER: usize = 2;
    const CIRCUIT_SECS: u64 = 20;
    let mut relay = Host::start(
        &net,
        RELAY,
        RELAY_IP,
        &format!(
            "{RELAY_PUBLIC}relay_max_circuits_per_peer = {PER_PEER}\nrelay_circuit_secs = {CIRCUIT_SECS}\nrelay_circuit_bytes = 65536\nmax_relayed_job_bytes = 32768\n[market]\nprice_per_mfuel = 50\n"
        ),
        None,
    );
    let relay_addr = relay.quic.clone();
    let mut a = Host::start(&net, HOST_A, "10.1.1.2", "", Some(&relay_addr));
    a.wait(Duration::from_secs(30), |v| {
        v["event"] == "reachability"
            && v["status"]
                .as_str()
                .is_some_and(|s| s.starts_with("private (relayed via"))
    });

    // Two greedy peers behind NAT B, played by this test: one asks for one
    // circuit more than it may hold and leaves them idle; the other pings
    // over its circuit every millisecond.
    let relay_tcp: libp2p::Multiaddr = format!("/ip4/{RELAY_IP}/tcp/7450/p2p/{}", relay.peer_id)
        .parse()
        .unwrap();
    let relay_id: libp2p::PeerId = relay.peer_id.parse().unwrap();
    let a_id: libp2p::PeerId = a.peer_id.parse().unwrap();
    let hostile = net.ns.spawn_in(SUBMITTER, move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let within = Duration::from_secs(CIRCUIT_SECS + 40);
            tokio::join!(
                greedy(
                    relay_tcp.clone(),
                    relay_id,
                    a_id,
                    PER_PEER + 1,
                    None,
                    within
                ),
                greedy(
                    relay_tcp,
                    relay_id,
                    a_id,
                    1,
                    Some(Duration::from_millis(1)),
                    within
                ),
            )
        })
    });
    let (idle, pinger) = hostile.join().expect("the greedy peers ran");

    assert_eq!(idle.opened, PER_PEER, "{idle:?}");
    assert_eq!(idle.refused.len(), 1, "{idle:?}");
    assert_eq!(
        idle.closed, PER_PEER,
        "the idle circuits were never closed: {idle:?}"
    );
    assert_eq!((pinger.opened, pinger.closed), (1, 1), "{pinger:?}");
    let why = |seen: &[Value]| {
        relay_said(
            seen,
            "circuit_denied",
            &idle.peer,
            "ResourceLimitExceeded",
            1,
        ) && relay_said(seen, "circuit_closed", &idle.peer, "timed out", PER_PEER)
            && relay_said(seen, "circuit_closed", &pinger.peer, "Max circuit bytes", 1)
    };
    assert!(
        relay.until(Duration::from_secs(10), why),
        "the relay did not refuse and close the greedy peers' circuits for their limits ({idle:?}, {pinger:?}): {}",
        relay.report()
    );

    // And it keeps serving: a small job from behind the symmetric NAT B
    // goes to host A through it.
    let out = submit(&net, &work, &small, &relay_addr, &dir.path().join("s"));
    assert!(
        out.status.success(),
        "relayed submit failed: {}",
        text(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("via relay"),
        "no note that the job went via the relay: {}",
        text(&out)
    );
    let acc = a.wait(Duration::from_secs(60), |v| v["event"] == "accepted");
    assert_eq!(acc["via_relay"], true, "{acc}");
}
