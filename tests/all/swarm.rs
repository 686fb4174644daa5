//! Swarms of real `biop2p host` processes on this machine: discovery by mDNS
//! and by a bootstrap peer, adverts that evaporate, placement without
//! `--peer`, re-placement after a host dies mid-job, price ceilings, and
//! `biop2p demo` itself.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::cli::biop2p;
use crate::durability::{Killer, SLOW};
use crate::netns::{self, Lan};

/// A host process and a thread that turns its JSON event lines into a
/// channel (so a test can wait on several hosts at once).
struct Host {
    proc: Killer,
    peer_id: String,
    addr: String,
    dir: tempfile::TempDir,
    events: mpsc::Receiver<serde_json::Value>,
}

/// A unique swarm name, so concurrent tests never see each other's hosts.
fn swarm_name(test: &str) -> String {
    format!("{test}-{:x}", rand::random::<u64>())
}

fn spawn_host(swarm: &str, listen: &str, extra: &[&str]) -> Host {
    spawn_host_in(None, swarm, listen, extra)
}

/// A host in member `i` of `lan` (when given), reached at its address
/// there; otherwise on this machine, reached on loopback.
fn spawn_host_in(lan: Option<(&Lan, usize)>, swarm: &str, listen: &str, extra: &[&str]) -> Host {
    let dir = tempfile::tempdir().unwrap();
    // Adverts every second, so expiry takes three.
    std::fs::write(
        dir.path().join("biop2p.toml"),
        "[network]\nadvert_interval_secs = 1\n",
    )
    .unwrap();
    let (mut cmd, prefix) = match lan {
        Some((lan, i)) => (
            lan.command(i, env!("CARGO_BIN_EXE_biop2p")),
            format!("/ip4/{}/tcp/", lan.addr(i)),
        ),
        None => (biop2p(), "/ip4/127.0.0.1/tcp/".to_string()),
    };
    let mut child: Child = cmd
        .args(["host", "--json", "--listen", listen, "--swarm", swarm])
        .args(extra)
        .arg("--data-dir")
        .arg(dir.path())
        .env("BIOP2P_LOG", "warn,biop2p=info,libp2p_mdns=info")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.path().join("host.log")).unwrap())
        .spawn()
        .expect("start host");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).expect("listening line");
    let v: serde_json::Value = serde_json::from_str(&line).expect("JSON event");
    assert_eq!(v["event"], "listening");
    let peer_id = v["peer_id"].as_str().unwrap().to_string();
    let addr = v["addrs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .find(|a| a.starts_with(&prefix))
        .expect("a TCP address on the expected interface")
        .to_string();
    let (tx, events) = mpsc::channel();
    std::thread::spawn(move || {
        for line in out.lines() {
            let Ok(line) = line else { break };
            if let Ok(v) = serde_json::from_str(&line)
                && tx.send(v).is_err()
            {
                break;
            }
        }
    });
    Host {
        proc: Killer(child),
        peer_id,
        addr,
        dir,
        events,
    }
}

impl Host {
    /// Waits (bounded) for an event `name` whose `peer_id` is `peer`.
    fn wait_event(&self, name: &str, peer: &str, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.events.recv_timeout(left) {
                Ok(v) if v["event"] == name && v["peer_id"] == peer => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
        false
    }

    /// The host's log (for failure messages).
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("host.log")).unwrap_or_default()
    }

    /// `biop2p peers --data-dir` of this host, without itself.
    fn peers(&self) -> Vec<String> {
        let out = biop2p()
            .args(["peers", "--json", "--data-dir"])
            .arg(self.dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
        v.iter()
            .filter(|e| e["self"] == false)
            .map(|e| e["peer_id"].as_str().unwrap().to_string())
            .collect()
    }
}

const FIND: Duration = Duration::from_secs(30);

/// Polls `check` for a few seconds (a host rewrites its list each second).
fn eventually(mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

#[test]
fn hosts_find_each_other_by_mdns() {
    if !netns::required("hosts_find_each_other_by_mdns") {
        return;
    }
    let swarm = swarm_name("mdns");
    // A LAN of our own (two hosts and the submitter on a bridge in private
    // namespaces): mDNS multicast never reaches the machine's interfaces.
    let lan = Lan::bridge(3).expect("a namespaced LAN");
    // mDNS announces the listen addresses, so these hosts listen on their
    // LAN address (not only loopback).
    let on_lan = |i| format!("/ip4/{}/tcp/0", lan.addr(i));
    let a = spawn_host_in(Some((&lan, 0)), &swarm, &on_lan(0), &[]);
    let b = spawn_host_in(Some((&lan, 1)), &swarm, &on_lan(1), &[]);
    // mDNS rides on multicast, which a loaded machine may drop: allow a
    // dozen query rounds (it takes about a second when nothing is lost).
    let find_mdns = Duration::from_secs(60);
    assert!(
        a.wait_event("discovered", &b.peer_id, find_mdns),
        "host A never discovered host B by mDNS\nA's log:\n{}\nB's log:\n{}",
        a.log(),
        b.log()
    );
    assert!(
        b.wait_event("discovered", &a.peer_id, find_mdns),
        "{}",
        b.log()
    );

    // A submitter with no address at all finds them the same way.
    let state = tempfile::tempdir().unwrap();
    let input = state.path().join("in.txt");
    std::fs::write(&input, b"found on the LAN").unwrap();
    let out = lan
        .command(2, env!("CARGO_BIN_EXE_biop2p"))
        .args(["submit", "builtin:echo", "--json", "--swarm", &swarm])
        .arg("--input")
        .arg(&input)
        .arg("--state-dir")
        .arg(state.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status"], "done");
    let host = v["receipts"][0]["host"].as_str().unwrap();
    assert!(host == a.peer_id || host == b.peer_id);
    drop((a.proc, b.proc));
}

#[test]
fn bootstrap_discovery_placement_price_ceiling_and_expiry() {
    let swarm = swarm_name("boot");
    let lo = "/ip4/127.0.0.1/tcp/0";
    let a = spawn_host(&swarm, lo, &["--no-mdns"]);
    let b = spawn_host(&swarm, lo, &["--no-mdns", "--bootstrap", &a.addr]);
    let c = spawn_host(&swarm, lo, &["--no-mdns", "--bootstrap", &a.addr]);
    // B and C know only A; each learns of the other through A.
    assert!(b.wait_event("discovered", &c.peer_id, FIND));
    assert!(c.wait_event("discovered", &b.peer_id, FIND));
    assert!(a.wait_event("discovered", &c.peer_id, FIND));
    let mut want = vec![b.peer_id.clone(), c.peer_id.clone()];
    want.sort();
    assert!(eventually(|| {
        let mut listed = a.peers();
        listed.sort();
        listed == want
    }));

    // Joining briefly through A lists all three with their adverts.
    let out = biop2p()
        .args([
            "peers",
            "--json",
            "--no-mdns",
            "--wait",
            "3",
            "--swarm",
            &swarm,
        ])
        .args(["--bootstrap", &a.addr])
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v.len(), 3, "{v:?}");
    assert!(
        v.iter()
            .all(|e| e["price_per_mfuel"] == 1 && e["workers"].as_u64() > Some(0))
    );

    // A job placed without --peer, on three replicas found through A.
    let state = tempfile::tempdir().unwrap();
    let input = state.path().join("in.txt");
    std::fs::write(&input, b"placed by advert").unwrap();
    let submit = |extra: &[&str]| {
        biop2p()
            .args([
                "submit",
                "builtin:echo",
                "--json",
                "--no-mdns",
                "--swarm",
                &swarm,
            ])
            .args(["--bootstrap", &a.addr, "--input"])
            .arg(&input)
            .arg("--state-dir")
            .arg(state.path())
            .args(extra)
            .output()
            .unwrap()
    };
    let out = submit(&["--replicas", "3"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status"], "done");
    assert_eq!(v["accepted_replicas"], 3);
    let mut hosts: Vec<String> = v["receipts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["host"].as_str().unwrap().to_string())
        .collect();
    hosts.sort();
    let mut all = vec![a.peer_id.clone(), b.peer_id.clone(), c.peer_id.clone()];
    all.sort();
    assert_eq!(hosts, all);

    // A ceiling below every advertised price: refused before anything is sent.
    let out = submit(&["--max-price", "0"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("fits this job") && err.contains("over the ceiling of 0"),
        "{err}"
    );

    // C stops: its adverts stop, and A forgets it within three intervals.
    drop(c.proc);
    assert!(
        a.wait_event("forgotten", &c.peer_id, Duration::from_secs(15)),
        "host A never forgot the stopped host"
    );
    assert!(eventually(|| a.peers() == vec![b.peer_id.clone()]));
    drop((a.proc, b.proc));
}

#[test]
fn a_host_killed_mid_job_is_replaced() {
    let swarm = swarm_name("kill");
    let lo = "/ip4/127.0.0.1/tcp/0";
    let a = spawn_host(&swarm, lo, &["--no-mdns"]);
    let b = spawn_host(&swarm, lo, &["--no-mdns", "--bootstrap", &a.addr]);
    assert!(a.wait_event("discovered", &b.peer_id, FIND));
    let state = tempfile::tempdir().unwrap();
    let module = state.path().join("slow.wat");
    std::fs::write(&module, SLOW).unwrap();
    let mut submit = biop2p()
        .args(["submit", "--json", "--no-mdns", "--swarm", &swarm])
        .args(["--fuel", "100000000000", "--bootstrap", &a.addr])
        .arg(&module)
        .arg("--state-dir")
        .arg(state.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Whichever host accepts it dies with the job running.
    let deadline = Instant::now() + FIND;
    let mut victim = None;
    while victim.is_none() && Instant::now() < deadline {
        for (i, h) in [&a, &b].iter().enumerate() {
            while let Ok(v) = h.events.try_recv() {
                if v["event"] == "accepted" {
                    victim = Some(i);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let Some(victim) = victim else {
        let _ = submit.kill();
        panic!("no host accepted the job");
    };
    let (dead, alive) = if victim == 0 { (a, b) } else { (b, a) };
    let mut proc = dead.proc;
    proc.0.kill().unwrap();
    let out = submit.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status"], "done");
    assert_eq!(v["replacements"], 1);
    assert_eq!(v["receipts"][0]["host"], alive.peer_id.as_str());
    assert_eq!(v["missing"][0]["host"], dead.peer_id.as_str());
    assert!(
        stderr.contains("placing that replica on another host"),
        "{stderr}"
    );
    assert_eq!(
        v["output_base64"],
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, b"survived")
    );
    drop(alive.proc);
}

#[test]
fn demo_runs_a_swarm_and_catches_the_faulty_host() {
    let out = biop2p()
        .args([
            "demo",
            "--hosts",
            "3",
            "--faulty",
            "1",
            "--replicas",
            "3",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["verified"], true);
    assert_eq!(v["discovered"], 3);
    let faulty: Vec<&str> = v["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["faulty"] == true)
        .map(|h| h["peer_id"].as_str().unwrap())
        .collect();
    assert_eq!(faulty.len(), 1);
    let jobs = v["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 3);
    for j in jobs {
        assert_eq!(j["accepted_replicas"], 2, "{j}");
        assert_eq!(j["disagreeing"], serde_json::json!([faulty[0]]));
    }

    // Two liars out of three: no majority, and the demo says so.
    let out = biop2p()
        .args([
            "demo",
            "--hosts",
            "3",
            "--faulty",
            "2",
            "--replicas",
            "3",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["verified"], false);
}

/// A peer that gossips garbage, forged adverts and adverts of other hosts:
/// each is rejected (and costs it peer score), its own honest advert is
/// accepted, and the host keeps serving jobs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_garbled_adverts_are_rejected() {
    use biop2p::config::NodeConfig;
    use biop2p::identity::Identity;
    use biop2p::net::{NodeKind, advert_topic, build_swarm};
    use biop2p::node::{HostOptions, read_peers_file, spawn_host};
    use biop2p::proto::{Advert, SignedAdvert, VERSION};
    use futures::StreamExt;
    use libp2p::gossipsub;
    use libp2p::swarm::SwarmEvent;

    let swarm_id = swarm_name("forge");
    let mut config = NodeConfig::default();
    config.network.mdns = false;
    config.network.swarm = swarm_id.clone();
    config.network.advert_interval_secs = 1;
    let dir = tempfile::tempdir().unwrap();
    let host = spawn_host(HostOptions {
        config: config.clone(),
        data_dir: dir.path().to_path_buf(),
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        faulty: Default::default(),
    })
    .await
    .unwrap();

    let me = Identity::from_seed(rand::random());
    let other = Identity::from_seed(rand::random());
    let relay = Identity::from_seed(rand::random());
    let topic = advert_topic(&swarm_id);
    // A swarm of `id`, connected to the host and knowing it takes adverts.
    let join = async |id: &Identity| {
        let limits = biop2p::net::behaviour::job_limits(1 << 20, 1 << 20);
        let mut s = build_swarm(
            id,
            &config.network,
            limits,
            NodeKind::Host,
            &mut Default::default(),
        )
        .await
        .unwrap();
        s.behaviour_mut().gossipsub.subscribe(&topic).unwrap();
        s.dial(host.addrs[0].clone()).unwrap();
        let until = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let ev = tokio::time::timeout_at(until, s.select_next_some())
                .await
                .expect("the host subscribes to adverts");
            if let SwarmEvent::Behaviour(biop2p::net::BehaviourEvent::Gossipsub(
                gossipsub::Event::Subscribed { peer_id, .. },
            )) = ev
                && peer_id == host.peer_id
            {
                return s;
            }
        }
    };
    let publish_and_drive = async |s: &mut libp2p::Swarm<biop2p::net::Behaviour>,
                                   msgs: Vec<Vec<u8>>| {
        for m in msgs {
            s.behaviour_mut()
                .gossipsub
                .publish(topic.clone(), m)
                .unwrap();
        }
        let settle = tokio::time::Instant::now() + Duration::from_millis(1500);
        while let Ok(_ev) = tokio::time::timeout_at(settle, s.select_next_some()).await {}
    };
    let now = biop2p::store::unix_now() * 1000;
    let advert = |key: &Identity, price: u64, at: u64| Advert {
        version: VERSION,
        host_key: key.public_key(),
        addrs: vec!["/ip4/127.0.0.1/tcp/9".into()],
        free_slots: 1,
        workers: 1,
        queue_room: 1,
        fuel_per_sec: 1_000_000_000,
        price_per_mfuel: price,
        max_fuel: 1 << 40,
        max_memory_bytes: 1 << 30,
        roles: vec!["Caste".into()],
        region: "001".into(),
        thresholds: [0.5; 3],
        relay: None,
        issued_at_ms: at,
        expires_at_ms: at + 60_000,
    };
    // The forgeries are newer than the honest advert, so only validation
    // keeps them out. Each forger's first bad message is checked in full;
    // after it, peer scoring graylists the forger.
    let later = now + 1000;
    let mut forged = SignedAdvert::sign(&advert(&me, 0, later), &other.signing);
    forged.body = postcard::to_stdvec(&advert(&me, 0, later)).unwrap();
    let mut mine = join(&me).await;
    publish_and_drive(
        &mut mine,
        vec![
            SignedAdvert::sign(&advert(&me, 7, now), &me.signing).to_bytes(),
            // A lower price for us, signed by another key.
            forged.to_bytes(),
        ],
    )
    .await;
    let mut relayer = join(&relay).await;
    publish_and_drive(
        &mut relayer,
        vec![
            // Another host's genuine advert, published by a peer that is not it.
            SignedAdvert::sign(&advert(&other, 0, later), &other.signing).to_bytes(),
            b"\xffnot an advert".to_vec(),
        ],
    )
    .await;

    let known: Vec<_> = read_peers_file(dir.path())
        .unwrap()
        .into_iter()
        .filter(|e| !e.is_self)
        .collect();
    assert_eq!(known.len(), 1, "{known:?}");
    assert_eq!(known[0].peer_id, me.peer_id.to_string());
    assert_eq!(known[0].price_per_mfuel, 7);
    assert!(
        !known.iter().any(|e| e.peer_id == other.peer_id.to_string()),
        "an advert relayed by a non-author was accepted"
    );

    // Still serving.
    let mut c = crate::network::client().await;
    let peer = c.connect(&host.addrs[0]).await.unwrap();
    crate::network::assert_echo_works(&mut c, &peer).await;
    host.shutdown().await;
}

#[test]
fn a_host_that_misses_the_deadline_is_replaced_up_to_the_bound() {
    let swarm = swarm_name("late");
    let lo = "/ip4/127.0.0.1/tcp/0";
    let a = spawn_host(&swarm, lo, &["--no-mdns"]);
    let b = spawn_host(&swarm, lo, &["--no-mdns"]);
    let state = tempfile::tempdir().unwrap();
    let module = state.path().join("slower.wat");
    // Ten times SLOW (tens of seconds); each host gets one second to answer.
    std::fs::write(&module, SLOW.replace("3000000000", "30000000000")).unwrap();
    let out = biop2p()
        .args(["submit", "--json", "--fuel", "400000000000"])
        .args(["--deadline", "1", "--max-replacements", "1"])
        .args(["--peer", &a.addr, "--peer", &b.addr])
        .arg(&module)
        .arg("--state-dir")
        .arg(state.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert_eq!(stderr.matches("missed the deadline").count(), 2, "{stderr}");
    assert!(
        stderr.contains("placing that replica on another host"),
        "{stderr}"
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["replacements"], 1);
    let missing: Vec<&str> = v["missing"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["host"].as_str().unwrap())
        .collect();
    assert_eq!(missing.len(), 2);
    assert!(missing.contains(&a.peer_id.as_str()) && missing.contains(&b.peer_id.as_str()));
    drop((a.proc, b.proc));
}

/// A Caste host specialises in what it runs (its response threshold for
/// that class falls) and advertises it; a host in another role stays a
/// generalist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caste_host_specialises_in_what_it_runs() {
    use biop2p::node::client::JobParams;
    use biop2p::node::{HostOptions, read_peers_file, spawn_host};
    use biop2p::proto::JobResponse;

    let mut thresholds = Vec::new();
    for role in ["Caste", "Young"] {
        let mut config = biop2p::NodeConfig::default();
        config.network.mdns = false;
        config.network.swarm = swarm_name("caste");
        config.biological.primary_role = role.into();
        let dir = tempfile::tempdir().unwrap();
        let host = spawn_host(HostOptions {
            config,
            data_dir: dir.path().to_path_buf(),
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
            faulty: Default::default(),
        })
        .await
        .unwrap();
        let mut c = crate::network::client().await;
        let peer = c.connect(&host.addrs[0]).await.unwrap();
        // Small jobs (default limits).
        for i in 0..4u8 {
            let (_, r) = crate::network::run_job(
                &mut c,
                &peer,
                biop2p::workloads::ECHO,
                &[i],
                &JobParams::default(),
            )
            .await;
            assert!(matches!(r, JobResponse::Done { .. }), "{r:?}");
        }
        // The host's own entry in its list carries what it advertises.
        let mut own = None;
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            own = read_peers_file(dir.path())
                .ok()
                .and_then(|v| v.into_iter().find(|e| e.is_self))
                .filter(|e| role != "Caste" || e.thresholds[2] < 0.5);
            if own.is_some() {
                break;
            }
        }
        thresholds.push(own.expect("the host lists itself").thresholds);
        host.shutdown().await;
    }
    let (caste, young) = (thresholds[0], thresholds[1]);
    // cpu, memory, small: the Caste host learned "small", forgot the rest.
    assert!(
        caste[2] < 0.5 && caste[0] > 0.5 && caste[1] > 0.5,
        "{caste:?}"
    );
    assert_eq!(young, [0.5; 3]);
}

/// Waits (bounded) for the host's `RoleSwitched` event to `to`; returns its
/// `from` and reason.
/// Sends `n` detached matmul jobs (each some 10⁸ multiply-adds) at once
/// and counts the answers: (accepted, refused `shedding`). Any other
/// answer fails the test.
async fn pipeline_matmuls(
    c: &mut biop2p::node::Client,
    peer: &libp2p::PeerId,
    n: u32,
    seed: u32,
) -> (u32, u32) {
    use biop2p::proto::{InlineBlob, JobRequest, JobResponse, RefuseReason};
    let mut pending = std::collections::HashSet::new();
    for k in 0..n {
        let input: Vec<u8> = [128u32, seed + k, 40, 1]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let job = c.make_job(
            biop2p::workloads::MATMUL,
            &input,
            &biop2p::node::client::JobParams::default(),
        );
        let inline = [biop2p::workloads::MATMUL, input.as_slice()]
            .iter()
            .map(|d| InlineBlob {
                hash: *blake3::hash(d).as_bytes(),
                data: d.to_vec(),
            })
            .collect();
        pending.insert(c.send(
            peer,
            JobRequest::Submit {
                job,
                inline,
                wait: false,
            },
        ));
    }
    let (mut accepted, mut shed) = (0, 0);
    while !pending.is_empty() {
        let (rid, r) = tokio::time::timeout(Duration::from_secs(60), c.next_response())
            .await
            .expect("every job answered");
        assert!(pending.remove(&rid));
        match r {
            Ok(JobResponse::Accepted { .. }) => accepted += 1,
            Ok(JobResponse::Refused {
                reason: RefuseReason::Shedding,
                ..
            }) => shed += 1,
            other => panic!("neither accepted nor shed: {other:?}"),
        }
    }
    (accepted, shed)
}

async fn role_switch(
    events: &mut tokio::sync::mpsc::Receiver<biop2p::node::HostEvent>,
    to: &str,
    within: Duration,
) -> Option<(String, String)> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let ev = tokio::time::timeout_at(deadline, events.recv())
            .await
            .ok()??;
        if let biop2p::node::HostEvent::RoleSwitched {
            from,
            to: t,
            reason,
        } = ev
            && t == to
        {
            return Some((from, reason));
        }
    }
}

/// A host's own entry in its `peers.json` (what it advertises), once `f`
/// holds for it (bounded).
async fn own_entry(
    dir: &std::path::Path,
    f: impl Fn(&biop2p::node::PeerEntry) -> bool,
) -> Option<biop2p::node::PeerEntry> {
    for _ in 0..100 {
        if let Some(e) = biop2p::node::read_peers_file(dir)
            .ok()
            .and_then(|v| v.into_iter().find(|e| e.is_self))
            .filter(|e| f(e))
        {
            return Some(e);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// Role switching, live: a Young host advertises the generalist's
/// thresholds and learns nothing; after `young_until` tasks it switches to
/// Caste (an event says why), advertises it, and from then on specialises
/// in what it runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_young_host_becomes_caste_after_its_tasks_and_then_specialises() {
    use biop2p::node::client::JobParams;
    use biop2p::node::{HostOptions, spawn_host};
    use biop2p::proto::JobResponse;

    let mut config = biop2p::NodeConfig::default();
    config.network.mdns = false;
    config.network.swarm = swarm_name("young");
    config.biological.primary_role = "Young".into();
    config.biological.switch.young_until = 3;
    let dir = tempfile::tempdir().unwrap();
    let mut host = spawn_host(HostOptions {
        config,
        data_dir: dir.path().to_path_buf(),
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        faulty: Default::default(),
    })
    .await
    .unwrap();
    let mut c = crate::network::client().await;
    let peer = c.connect(&host.addrs[0]).await.unwrap();
    let mut run = async |i: u8| {
        let (_, r) = crate::network::run_job(
            &mut c,
            &peer,
            biop2p::workloads::ECHO,
            &[i],
            &JobParams::default(),
        )
        .await;
        assert!(matches!(r, JobResponse::Done { .. }), "{r:?}");
    };
    for i in 0..2 {
        run(i).await;
    }
    let young = own_entry(dir.path(), |e| e.roles == ["Young"])
        .await
        .expect("advertised Young");
    assert_eq!(
        young.thresholds, [0.5; 3],
        "a Young host learns nothing yet"
    );
    run(2).await;
    let (from, reason) = role_switch(&mut host.events, "Caste", Duration::from_secs(10))
        .await
        .expect("switched to Caste after three tasks");
    assert_eq!(from, "Young");
    assert!(reason.contains("3 tasks"), "{reason}");
    for i in 3..8 {
        run(i).await;
    }
    let caste = own_entry(dir.path(), |e| {
        e.roles == ["Caste"] && e.thresholds[2] < 0.5
    })
    .await
    .expect("advertised Caste, specialised in small tasks");
    assert!(
        caste.thresholds[0] > 0.5 && caste.thresholds[1] > 0.5,
        "{caste:?}"
    );
    host.shutdown().await;
}

/// HAVOC, live: when most of the swarm's hosts stop advertising (killed),
/// the survivors detect the crisis from their own observations, switch to
/// Havoc and advertise it (every threshold at the floor: they take any
/// class), and hand back once it is calm.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_losing_their_swarm_switch_to_havoc_advertise_it_and_hand_back() {
    use biop2p::node::{HostOptions, spawn_host};

    let swarm = swarm_name("havoc");
    let mut hosts = Vec::new();
    let mut dirs = Vec::new();
    for _ in 0..5 {
        let mut config = biop2p::NodeConfig::default();
        config.network.mdns = false;
        config.network.swarm = swarm.clone();
        config.network.advert_interval_secs = 1;
        config.resources.cpu_allocation = 0.1;
        // Calm for 10 s before handing back: room to see the shedding.
        config.biological.switch.havoc.calm_ms = 10_000;
        if let Some(h) = hosts.first() {
            let h: &biop2p::node::HostHandle = h;
            config.network.bootstrap = vec![h.addrs[0].to_string()];
        }
        let dir = tempfile::tempdir().unwrap();
        let h = spawn_host(HostOptions {
            config,
            data_dir: dir.path().to_path_buf(),
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
            faulty: Default::default(),
        })
        .await
        .unwrap();
        hosts.push(h);
        dirs.push(dir);
    }
    // Everyone known to hosts 0 and 1 (bounded wait).
    for d in &dirs[..2] {
        let mut ok = false;
        for _ in 0..200 {
            if biop2p::node::read_peers_file(d.path()).is_ok_and(|v| v.len() == 5) {
                ok = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(ok, "hosts 0 and 1 know all five");
    }
    // Drain what happened so far (joining is not a crisis).
    while let Ok(ev) = hosts[0].events.try_recv() {
        assert!(
            !matches!(ev, biop2p::node::HostEvent::RoleSwitched { .. }),
            "no switch while the swarm grows: {ev:?}"
        );
    }
    for h in hosts.drain(2..) {
        h.shutdown().await;
    }
    let (from, reason) = role_switch(&mut hosts[0].events, "Havoc", Duration::from_secs(20))
        .await
        .expect("host 0 enters Havoc");
    assert_eq!(from, "Young");
    assert!(reason.starts_with("crisis"), "{reason}");
    let me = hosts[0].peer_id.to_string();
    // Advertised over the wire: host 1 lists host 0 as Havoc, thresholds
    // at the floor.
    let mut seen = None;
    for _ in 0..100 {
        seen = biop2p::node::read_peers_file(dirs[1].path())
            .ok()
            .and_then(|v| v.into_iter().find(|e| e.peer_id == me))
            .filter(|e| e.roles == ["Havoc"]);
        if seen.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let seen = seen.expect("host 1 sees host 0's Havoc advert");
    let floor = roles::CasteConfig::default().min;
    assert_eq!(seen.thresholds, [floor; 3]);
    // In Havoc, host 0 sheds new work past its backlog limit (2 per slot,
    // one slot here), with the stable refusal, and keeps what it took.
    let mut c = biop2p::node::Client::new(
        biop2p::identity::Identity::from_seed(rand::random()),
        &biop2p::config::NetworkConfig::direct(),
        1 << 20,
    )
    .await
    .unwrap();
    let peer = c.connect(&hosts[0].addrs[0]).await.unwrap();
    let (accepted, shed) = pipeline_matmuls(&mut c, &peer, 12, 0).await;
    assert!(
        shed > 0 && accepted >= 3,
        "in Havoc: {accepted} accepted, {shed} shed"
    );
    let (from, _) = role_switch(&mut hosts[0].events, "Young", Duration::from_secs(40))
        .await
        .expect("host 0 hands back when calm");
    assert_eq!(from, "Havoc");
    // Handed back, the same burst is taken whole (the control).
    let (accepted, shed) = pipeline_matmuls(&mut c, &peer, 12, 100).await;
    assert_eq!((accepted, shed), (12, 0), "after the crisis");
    for h in hosts {
        h.shutdown().await;
    }
}
