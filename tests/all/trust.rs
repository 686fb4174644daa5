//! Trust, live: the security coordinator places and judges real jobs on a
//! real swarm of in-process hosts on loopback (real libp2p, real wasmtime,
//! real sled): colluding liars are quarantined, a sleeper is caught, each
//! replica is its own job, outputs go only to their submitter, and forged
//! or unverifiable trust reports change nothing. The `biop2p` submitter
//! process keeps its trust state through `kill -9`, and in namespaces of
//! their own (distinct /24s) replicas come from distinct observed prefixes.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use biop2p::config::NetworkConfig;
use biop2p::identity::Identity;
use biop2p::node::client::JobParams;
use biop2p::node::faulty::Faulty;
use biop2p::node::submitter::evidence::LieReport;
use biop2p::node::submitter::{ReportVerdict, Submitter, SubmitterConfig, TaskInput, TaskStatus};
use biop2p::node::{Client, Node};
use biop2p::proto::{JobRequest, JobResponse, RefuseReason};
use biop2p::store::SubmitterStore;
use biop2p::{BiologicalRole, NodeConfig, workloads};
use libp2p::PeerId;

/// One swarm test at a time: each in-process host reserves its own sandbox
/// pool, and several swarms at once exhaust the address space of one test
/// process.
pub(crate) static ONE_SWARM: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Starts `modes.len()` hosts on loopback in one swarm (the first is the
/// bootstrap of the others).
pub(crate) async fn start_hosts(
    root: &std::path::Path,
    swarm: &str,
    modes: &[Faulty],
) -> Vec<Node> {
    let mut nodes: Vec<Node> = Vec::new();
    for (i, mode) in modes.iter().enumerate() {
        let bootstrap = nodes.first().map(|n| n.addrs()[0].clone());
        nodes.push(start_host(root, swarm, i, *mode, bootstrap.as_ref()).await);
    }
    nodes
}

/// Starts host `i` (data dir `root/host{i}`, so a restart keeps its key).
async fn start_host(
    root: &std::path::Path,
    swarm: &str,
    i: usize,
    mode: Faulty,
    bootstrap: Option<&libp2p::Multiaddr>,
) -> Node {
    let mut config = NodeConfig::default();
    config.network.mdns = false;
    config.network.swarm = swarm.to_string();
    config.network.advert_interval_secs = 1;
    config.resources.cpu_allocation = 0.1;
    let mut b = Node::builder()
        .with_config(config)
        .with_initial_role(BiologicalRole::Caste)
        .with_data_dir(root.join(format!("host{i}")))
        .with_listen(["/ip4/127.0.0.1/tcp/0".parse().unwrap()])
        .faulty_mode(mode);
    if let Some(addr) = bootstrap {
        b = b.with_bootstrap(addr);
    }
    let node = b.build().await.unwrap();
    node.start().await.unwrap();
    node
}

/// A submitter connected to every host, with its store in `state`.
async fn submitter(nodes: &[Node], swarm: &str, state: &std::path::Path) -> Submitter {
    let mut net = NetworkConfig::direct();
    net.swarm = swarm.to_string();
    net.bootstrap = vec![nodes[0].addrs()[0].to_string()];
    let id = Identity::load_or_create(state).unwrap();
    let mut client = Client::new(id, &net, 16 << 20).await.unwrap();
    let found = client
        .discover(
            nodes.len(),
            |_| true,
            Duration::from_millis(300),
            Duration::from_secs(30),
        )
        .await;
    assert_eq!(found.len(), nodes.len(), "every host discovered");
    let mut hosts = Vec::new();
    for (p, ad) in &found {
        client.connect_host(*p, ad).await.unwrap();
        hosts.push((*p, ad.fuel_per_sec));
    }
    let store = Arc::new(SubmitterStore::open(&state.join("submitter")).unwrap());
    let config = SubmitterConfig {
        deadline: Duration::from_secs(60),
        sandbox_dir: Some(state.join("sandbox")),
        ..SubmitterConfig::default()
    };
    let mut s = Submitter::new(client, store, config).unwrap();
    assert_eq!(s.join(hosts).unwrap(), nodes.len());
    s
}

fn echo_tasks(from: usize, n: usize) -> Vec<TaskInput> {
    let module = Arc::new(workloads::get("echo").unwrap().bytes.to_vec());
    (from..from + n)
        .map(|i| TaskInput {
            module: module.clone(),
            input: Arc::new(format!("trust job {i}\n").into_bytes()),
            params: JobParams::default(),
        })
        .collect()
}

/// Accepted outputs that are not the honest one (echo returns its input).
fn wrong_accepted(tasks: &[TaskInput], outcomes: &[biop2p::node::submitter::TaskOutcome]) -> usize {
    outcomes
        .iter()
        .filter(|o| match &o.status {
            TaskStatus::Accepted { response, .. } => match &**response {
                JobResponse::Done { output, .. } => output[..] != tasks[o.index].input[..],
                _ => true,
            },
            TaskStatus::GaveUp(_) => false,
        })
        .count()
}

fn states(s: &Submitter) -> std::collections::HashMap<String, String> {
    s.hosts()
        .into_iter()
        .map(|h| (h.peer_id, h.state))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn colluding_liars_are_quarantined_and_nothing_wrong_is_accepted() {
    let _one = ONE_SWARM.lock().await;
    let root = tempfile::tempdir().unwrap();
    let swarm = format!("trust-{:x}", rand::random::<u64>());
    let mut modes = vec![Faulty::Honest; 7];
    modes.extend([Faulty::Colluding; 3]);
    let nodes = start_hosts(root.path(), &swarm, &modes).await;
    let liars: Vec<String> = nodes[7..].iter().map(|n| n.peer_id().to_string()).collect();
    let mut s = submitter(&nodes, &swarm, &root.path().join("submitter")).await;
    assert!(
        s.diversity_note().is_some(),
        "loopback hosts share a prefix"
    );

    let first = echo_tasks(0, 50);
    let out1 = s.run(first.clone(), |_| {}).await.unwrap();
    let after_50 = s.summary();
    let rest = echo_tasks(50, 250);
    let out2 = s.run(rest.clone(), |_| {}).await.unwrap();
    let end = s.summary();

    let wrong = wrong_accepted(&first, &out1) + wrong_accepted(&rest, &out2);
    let accepted = out1
        .iter()
        .chain(&out2)
        .filter(|o| matches!(o.status, TaskStatus::Accepted { .. }))
        .count();
    let per_job = (end.dispatched - after_50.dispatched) as f64 / 250.0;
    let st = states(&s);
    let quarantined: Vec<&String> = st
        .iter()
        .filter(|(_, v)| *v == "quarantined")
        .map(|(k, _)| k)
        .collect();
    eprintln!(
        "live: accepted {accepted}/300, wrong accepted {wrong}, replicas/job after 50 = {per_job:.3} \
         (whole run {:.3}), canaries {}, local canary runs {}, quarantined {}",
        end.dispatched as f64 / 300.0,
        end.canaries,
        end.local_canary_runs,
        quarantined.len()
    );
    assert_eq!(wrong, 0, "no wrong output accepted");
    assert_eq!(accepted, 300, "every job accepted");
    for l in &liars {
        assert_eq!(st[l], "quarantined", "liar {l} quarantined: {st:?}");
    }
    assert_eq!(quarantined.len(), 3, "no honest host quarantined: {st:?}");
    assert!(
        per_job <= 1.5,
        "replicas per job after the first 50: {per_job}"
    );
    assert!(end.canaries > 0, "canaries were sent");

    // Each replica was its own job: the accepted job ids are all distinct,
    // and distinct from every other receipt's job.
    let mut ids = std::collections::HashSet::new();
    for o in out1.iter().chain(&out2) {
        if let TaskStatus::Accepted { receipts, .. } = &o.status {
            for r in receipts {
                assert!(ids.insert(r.verify().unwrap().job_id), "a job id reused");
            }
        }
    }
    for n in &nodes {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sleeper_is_caught_by_spot_checks_or_canaries() {
    let _one = ONE_SWARM.lock().await;
    let root = tempfile::tempdir().unwrap();
    let swarm = format!("sleeper-{:x}", rand::random::<u64>());
    let mut modes = vec![Faulty::Honest; 6];
    modes.push(Faulty::Sleeper { honest_jobs: 20 });
    let nodes = start_hosts(root.path(), &swarm, &modes).await;
    let sleeper = nodes[6].peer_id().to_string();
    let mut s = submitter(&nodes, &swarm, &root.path().join("submitter")).await;
    let mut caught_after = None;
    let mut wrong = 0;
    let mut trusted_before_turning = false;
    for batch in 0..12 {
        let tasks = echo_tasks(batch * 25, 25);
        let out = s.run(tasks.clone(), |_| {}).await.unwrap();
        wrong += wrong_accepted(&tasks, &out);
        let st = states(&s);
        trusted_before_turning |= st[&sleeper] == "trusted";
        if matches!(st[&sleeper].as_str(), "suspect" | "quarantined") {
            caught_after = Some((batch + 1) * 25);
            break;
        }
    }
    eprintln!(
        "sleeper: caught after {caught_after:?} jobs, wrong accepted meanwhile {wrong}, \
         trusted before: {trusted_before_turning}, summary {:?}",
        s.summary()
    );
    let caught = caught_after.expect("the sleeper is caught within 300 jobs");
    assert!(caught <= 300);
    let honest_bad = states(&s)
        .iter()
        .filter(|(k, v)| **k != sleeper && *v != "newcomer" && *v != "trusted")
        .count();
    assert_eq!(honest_bad, 0, "no honest host suspected");
    for n in &nodes {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_are_own_jobs_outputs_are_the_submitters_and_reports_are_rerun() {
    let _one = ONE_SWARM.lock().await;
    let root = tempfile::tempdir().unwrap();
    let swarm = format!("reports-{:x}", rand::random::<u64>());
    let mut modes = vec![Faulty::Honest; 4];
    modes.extend([Faulty::Colluding; 2]);
    let nodes = start_hosts(root.path(), &swarm, &modes).await;
    let state = root.path().join("submitter");
    let mut s = submitter(&nodes, &swarm, &state).await;
    let tasks = echo_tasks(0, 30);
    let out = s.run(tasks.clone(), |_| {}).await.unwrap();
    assert_eq!(wrong_accepted(&tasks, &out), 0);

    // Replicas of one task carry distinct job ids (own nonce each).
    let replicated = out
        .iter()
        .find_map(|o| match &o.status {
            TaskStatus::Accepted { receipts, .. } if receipts.len() >= 2 => Some(receipts),
            _ => None,
        })
        .expect("a replicated task");
    let ids: std::collections::HashSet<_> = replicated
        .iter()
        .map(|r| r.verify().unwrap().job_id)
        .collect();
    assert_eq!(ids.len(), replicated.len(), "each replica its own job id");

    // Fetch: the submitter gets its result, any other peer `not_yours`.
    let TaskStatus::Accepted { job_id, host, .. } = &out[0].status else {
        panic!("first task accepted");
    };
    let mine = s
        .client()
        .request(
            host,
            JobRequest::Fetch {
                job_id: *job_id,
                wait: false,
            },
        )
        .await
        .unwrap();
    assert!(matches!(mine, JobResponse::Done { .. }), "{mine:?}");
    let mut net = NetworkConfig::direct();
    net.swarm = swarm.clone();
    let mut other = Client::new(Identity::from_seed(rand::random()), &net, 1 << 20)
        .await
        .unwrap();
    let addr = nodes.iter().find(|n| n.peer_id() == *host).unwrap().addrs()[0].clone();
    other.connect(&addr).await.unwrap();
    let theirs = other
        .request(
            host,
            JobRequest::Fetch {
                job_id: *job_id,
                wait: false,
            },
        )
        .await
        .unwrap();
    match theirs {
        JobResponse::Refused { reason, .. } => assert_eq!(reason, RefuseReason::NotYours),
        r => panic!("another peer fetched the output: {r:?}"),
    }

    // The evidence log holds signed reports of the lies seen.
    let (hosts, evidence) = s.stored_trust().unwrap();
    assert_eq!(hosts.len(), nodes.len());
    let report: LieReport = evidence
        .iter()
        .find_map(|e| e.report.as_ref())
        .map(|j| LieReport::from_text(j).unwrap())
        .expect("a lie was reported");
    let liar: PeerId = report.receipt.verify().unwrap().host_peer_id().unwrap();
    assert!(nodes[4..].iter().any(|n| n.peer_id() == liar));

    // A second submitter that knows the same hosts checks reports itself.
    let mut s2 = submitter(&nodes, &swarm, &root.path().join("second")).await;
    let snapshot = |s: &Submitter| serde_json::to_string(s.coordinator().reputation()).unwrap();
    let before = snapshot(&s2);
    let mut forged = report.clone();
    forged.correct_output[0] ^= 1;
    assert!(matches!(
        s2.check_report(&forged, 1 << 30).await.unwrap(),
        ReportVerdict::Ignored(_)
    ));
    let mut stripped = report.clone();
    stripped.module.clear();
    assert!(matches!(
        s2.check_report(&stripped, 1 << 30).await.unwrap(),
        ReportVerdict::Ignored(_)
    ));
    let v = s2.check_report(&report, 1).await.unwrap();
    assert!(matches!(v, ReportVerdict::Ignored(_)), "{v:?}");
    assert_eq!(
        before,
        snapshot(&s2),
        "forged or unverifiable: nothing changed"
    );
    // The genuine report, re-run here, shows the lie.
    match s2.check_report(&report, 1 << 30).await.unwrap() {
        ReportVerdict::Checked { lied, .. } => assert!(lied, "the re-run contradicts the receipt"),
        v => panic!("a genuine report was not checked: {v:?}"),
    }
    // A bare accusation: a genuine signed report that s2 will not re-run
    // (a budget of 1), by a reporter s2 has a record of (host 0's own key:
    // a host may submit too), against an honest host. It is weighed by the
    // reporter's record: the host's score falls, and however many there
    // are, its state never becomes suspect or quarantined (no slander).
    let slanderer = Identity::load_or_create(&root.path().join("host0")).unwrap();
    assert_eq!(slanderer.peer_id, nodes[0].peer_id(), "host 0's key");
    // Host 0 stops first: two live peers with one key would confuse the
    // hosts (answers may go to either connection).
    nodes[0].stop().await;
    let victim = nodes[1].peer_id();
    let mut net = NetworkConfig::direct();
    net.swarm = swarm.clone();
    let mut c = Client::new(slanderer.clone(), &net, 1 << 20).await.unwrap();
    c.connect(&nodes[1].addrs()[0]).await.unwrap();
    let (job, answer) = crate::network::run_job(
        &mut c,
        &victim,
        workloads::ECHO,
        b"an honest answer",
        &JobParams::default(),
    )
    .await;
    let JobResponse::Done { receipt, .. } = answer else {
        panic!("the honest host ran it: {answer:?}");
    };
    let state_before = states(&s2)[&victim.to_string()].clone();
    let score = |s: &Submitter| {
        s.hosts()
            .into_iter()
            .find(|h| h.peer_id == victim.to_string())
            .unwrap()
            .score
    };
    let score_before = score(&s2);
    for i in 0..30u64 {
        let bare = LieReport::sign(
            &slanderer.signing,
            job.clone(),
            receipt.clone(),
            [7; 32],
            1_000 + i,
            workloads::ECHO.to_vec(),
            b"an honest answer".to_vec(),
        );
        let v = s2.check_report(&bare, 1).await.unwrap();
        assert!(matches!(v, ReportVerdict::Weighed { .. }), "{v:?}");
        // The same report again is stale: weighed once only.
        assert!(matches!(
            s2.check_report(&bare, 1).await.unwrap(),
            ReportVerdict::Ignored(_)
        ));
    }
    let score_after = score(&s2);
    assert!(
        score_after < score_before,
        "weighed: {score_before} -> {score_after}"
    );
    let state_after = states(&s2)[&victim.to_string()].clone();
    assert!(
        state_after == state_before || (state_before == "trusted" && state_after == "newcomer"),
        "a bare accusation moves a score, not a state to suspect or quarantined: {state_before} -> {state_after}"
    );

    // The trust state survives the submitter: reopened, the same states.
    let st = states(&s);
    drop(s);
    drop(s2);
    let store = Arc::new(SubmitterStore::open(&state.join("submitter")).unwrap());
    let (rows, _) = biop2p::node::submitter::stored_trust(&store).unwrap();
    for r in rows {
        assert_eq!(st[&r.peer_id], r.state, "state of {} persisted", r.peer_id);
    }
    for n in &nodes {
        n.stop().await;
    }
}

fn state_of(s: &Submitter, p: &PeerId) -> String {
    states(s).get(&p.to_string()).cloned().unwrap_or_default()
}

/// Runs rounds of 20 echo tasks (at most `rounds`) until `until` holds;
/// returns the tasks run. No wrong output is accepted on the way.
async fn run_until(
    s: &mut Submitter,
    from: usize,
    rounds: usize,
    until: impl Fn(&Submitter) -> bool,
) -> usize {
    let mut n = from;
    for _ in 0..rounds {
        if until(s) {
            break;
        }
        let tasks = echo_tasks(n, 20);
        let out = s.run(tasks.clone(), |_| {}).await.unwrap();
        assert_eq!(wrong_accepted(&tasks, &out), 0);
        n += 20;
    }
    n
}

/// A host that earned one submitter's trust and then lies to another is
/// caught by the second; its report travels through the hosts' boards,
/// and the first submitter re-runs it and takes its trust away before the
/// host ever lies to it. Forged reports are refused by the boards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lie_one_submitter_catches_reaches_the_others_through_the_hosts_boards() {
    let _one = ONE_SWARM.lock().await;
    let root = tempfile::tempdir().unwrap();
    let swarm = format!("boards-{:x}", rand::random::<u64>());
    let mut nodes = start_hosts(root.path(), &swarm, &[Faulty::Honest; 6]).await;
    let turner = nodes[5].peer_id();

    // 1. The elder submitter comes to trust every host, the turner too.
    let mut elder = submitter(&nodes, &swarm, &root.path().join("elder")).await;
    run_until(&mut elder, 0, 15, |s| {
        nodes.iter().all(|n| state_of(s, &n.peer_id()) == "trusted")
    })
    .await;
    assert_eq!(state_of(&elder, &turner), "trusted", "{:?}", states(&elder));

    // 2. The turner restarts (same key) as a liar; a fresh submitter
    // replicates its work, catches it, and publishes the report.
    nodes.pop().unwrap().stop().await;
    let liar = start_host(
        root.path(),
        &swarm,
        5,
        Faulty::Colluding,
        Some(&nodes[0].addrs()[0]),
    )
    .await;
    assert_eq!(liar.peer_id(), turner);
    nodes.push(liar);
    let mut fresh = submitter(&nodes, &swarm, &root.path().join("fresh")).await;
    run_until(&mut fresh, 1_000, 10, |s| {
        matches!(state_of(s, &turner).as_str(), "suspect" | "quarantined")
    })
    .await;
    assert!(
        matches!(
            state_of(&fresh, &turner).as_str(),
            "suspect" | "quarantined"
        ),
        "the fresh submitter caught the liar: {:?}",
        states(&fresh)
    );
    // Its run ended by publishing: the honest hosts' boards hold it.
    let mut net = NetworkConfig::direct();
    net.swarm = swarm.clone();
    let mut reader = Client::new(Identity::from_seed(rand::random()), &net, 16 << 20)
        .await
        .unwrap();
    let mut boards_with_it = 0;
    for n in &nodes[..5] {
        reader.connect(&n.addrs()[0]).await.unwrap();
        let page = reader
            .request(
                &n.peer_id(),
                JobRequest::Reports {
                    after: 0,
                    max_bytes: 16 << 20,
                },
            )
            .await
            .unwrap();
        let JobResponse::Reports { items, .. } = page else {
            panic!("a board page: {page:?}");
        };
        let against_liar = items.iter().any(|i| {
            let r: LieReport = postcard::from_bytes(&i.report).unwrap();
            r.receipt.verify().unwrap().host_peer_id() == Some(turner)
        });
        boards_with_it += usize::from(against_liar);
    }
    assert_eq!(boards_with_it, 5, "published to every honest host");

    // A forged copy is refused by a board, with its reason.
    let mut forged: LieReport = {
        let JobResponse::Reports { items, .. } = reader
            .request(
                &nodes[0].peer_id(),
                JobRequest::Reports {
                    after: 0,
                    max_bytes: 16 << 20,
                },
            )
            .await
            .unwrap()
        else {
            panic!("a board page");
        };
        postcard::from_bytes(&items[0].report).unwrap()
    };
    forged.correct_output[0] ^= 1;
    let r = reader
        .request(
            &nodes[0].peer_id(),
            JobRequest::PublishReport {
                report: postcard::to_stdvec(&forged).unwrap(),
            },
        )
        .await
        .unwrap();
    match r {
        JobResponse::Refused { reason, .. } => assert_eq!(reason, RefuseReason::BadSignature),
        r => panic!("a forged report was kept: {r:?}"),
    }

    // 3. The elder never saw the lie; it still trusts the turner, until it
    // reads a board, re-runs the report itself and demotes the host.
    assert_eq!(state_of(&elder, &turner), "trusted");
    let mut notes = Vec::new();
    let shared = elder
        .share_reports(1 << 34, &mut |n: &str| notes.push(n.to_string()))
        .await
        .unwrap();
    assert!(shared.rerun >= 1 && shared.applied >= 1, "{shared:?}");
    // Proven wrong by evidence re-run here, a trusted host loses its trust
    // (its work is replicated again, so it is caught directly next).
    assert_ne!(
        state_of(&elder, &turner),
        "trusted",
        "the elder demoted the liar on evidence it re-ran: {:?}",
        states(&elder)
    );
    assert!(
        notes.iter().any(|n| n.contains(&turner.to_string())),
        "{notes:?}"
    );
    // No honest host lost the elder's trust by it.
    for n in &nodes[..5] {
        assert_eq!(state_of(&elder, &n.peer_id()), "trusted");
    }
    // Read again, the same report is not re-run.
    let again = elder
        .share_reports(1 << 34, &mut |_: &str| {})
        .await
        .unwrap();
    assert_eq!(again.rerun, 0, "{again:?}");
    for n in &nodes {
        n.stop().await;
    }
}

/// `biop2p demo --hosts 8 --faulty 2`: adaptive by default, the liars
/// quarantined, the JSON fields other tools read.
#[test]
fn the_demo_quarantines_its_liars_with_adaptive_replication() {
    let out = crate::cli::biop2p()
        .args([
            "demo", "--hosts", "8", "--faulty", "2", "--jobs", "60", "--json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["wrong_accepted"], 0, "{v}");
    let faulty: Vec<&str> = v["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["faulty"] == true)
        .map(|h| h["peer_id"].as_str().unwrap())
        .collect();
    assert_eq!(faulty.len(), 2);
    let mut q: Vec<&str> = v["quarantined"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    q.sort();
    let mut f = faulty.clone();
    f.sort();
    assert_eq!(q, f, "exactly the liars quarantined: {v}");
    for h in v["hosts"].as_array().unwrap() {
        let want = if h["faulty"] == true {
            "quarantined"
        } else {
            "trusted"
        };
        assert!(
            h["state"] == want || (want == "trusted" && h["state"] == "newcomer"),
            "{h}"
        );
    }
    assert!(v["canaries"].as_u64().is_some());
    assert!(v["replicas_per_job"].as_f64().unwrap() >= 1.0);
}

/// `biop2p trust --json` of a state directory, by peer id.
fn trust_json(state: &std::path::Path) -> HashMap<String, serde_json::Value> {
    let o = crate::cli::biop2p()
        .args(["trust", "--json", "--state-dir"])
        .arg(state)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (v["peer_id"].as_str().unwrap().to_string(), v)
        })
        .collect()
}

/// `n` input files `NAME.txt` in `root/NAME`, each with its own text.
fn write_inputs(root: &std::path::Path, name: &str, n: usize) -> std::path::PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    for i in 0..n {
        std::fs::write(dir.join(format!("{i:03}.txt")), format!("{name} {i}\n")).unwrap();
    }
    dir
}

/// `biop2p submit MODULE --inputs DIR -o OUT` (adaptive: no `--replicas`)
/// against every host in `peers`, with its state in `state`.
fn batch_cmd(
    state: &std::path::Path,
    module: &str,
    inputs: &std::path::Path,
    out: &std::path::Path,
    peers: &[String],
    swarm: &str,
    parallel: usize,
) -> std::process::Command {
    let mut c = crate::cli::biop2p();
    c.args(["submit", module, "--json", "--no-mdns", "--swarm", swarm])
        .args(["--fuel", "5000000000", "--parallel", &parallel.to_string()])
        .arg("--inputs")
        .arg(inputs)
        .arg("-o")
        .arg(out)
        .arg("--state-dir")
        .arg(state)
        .env("BIOP2P_LOG", "warn")
        .stdin(std::process::Stdio::null());
    for p in peers {
        c.arg("--peer").arg(p);
    }
    c
}

/// Takes every event the hosts emitted so far (without waiting), counting
/// each host's accepted jobs into `accepted`.
async fn drain_events(nodes: &[Node], accepted: &mut [usize]) {
    for (i, n) in nodes.iter().enumerate() {
        loop {
            // A fresh cooperative budget for each receive: an exhausted one
            // would make a queued event look like an empty queue.
            tokio::task::yield_now().await;
            match tokio::time::timeout(Duration::ZERO, n.next_event()).await {
                Ok(Some(biop2p::node::HostEvent::Accepted { .. })) => accepted[i] += 1,
                Ok(Some(_)) => {}
                _ => break,
            }
        }
    }
}

/// Waits (at most until `deadline`) for the next job any host accepts,
/// counting every event taken on the way; returns that host.
async fn next_accepted(nodes: &[Node], accepted: &mut [usize], deadline: Instant) -> usize {
    loop {
        let waits = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| Box::pin(async move { (i, n.next_event().await) }));
        let left = deadline.saturating_duration_since(Instant::now());
        let ((i, ev), _, _) = tokio::time::timeout(left, futures::future::select_all(waits))
            .await
            .expect("no host accepted a job in time");
        match ev {
            Some(biop2p::node::HostEvent::Accepted { .. }) => {
                accepted[i] += 1;
                return i;
            }
            Some(_) => {}
            None => panic!("host {i} stopped"),
        }
    }
}

/// The hosts whose receipts agree with an item's accepted output, when a
/// quorum (two or more agreeing replicas) decided it: each of them earned
/// a verified agreement.
fn quorum_signers(out: &std::path::Path, name: &str) -> Vec<String> {
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join(format!("{name}.receipts.json"))).unwrap())
            .unwrap();
    let agreeing: Vec<String> = doc["receipts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["agrees"] == true)
        .map(|r| r["host"].as_str().unwrap().to_string())
        .collect();
    if agreeing.len() >= 2 {
        agreeing
    } else {
        Vec::new()
    }
}

fn signers(out: &std::path::Path, name: &str) -> Vec<String> {
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join(format!("{name}.receipts.json"))).unwrap())
            .unwrap();
    doc["receipts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["host"].as_str().unwrap().to_string())
        .collect()
}

fn n(v: &serde_json::Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or_else(|| panic!("{k} in {v}"))
}

/// The `biop2p` submitter process, killed with SIGKILL while a batch's jobs
/// are in flight, forgets nothing its trust state held: the liars it had
/// quarantined stay quarantined, no agreement goes backwards (neither those
/// recorded before the batch nor those of the inputs it reported before
/// the kill), and the resumed batch sends the quarantined hosts no work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trust_state_survives_kill_9_of_the_submitter_and_quarantined_hosts_get_no_work() {
    use std::io::BufRead;
    use std::os::unix::process::ExitStatusExt;

    let _one = ONE_SWARM.lock().await;
    let root = tempfile::tempdir().unwrap();
    let swarm = format!("kill9-{:x}", rand::random::<u64>());
    const HONEST: usize = 5;
    let mut modes = vec![Faulty::Honest; HONEST];
    modes.extend([Faulty::Colluding; 2]);
    let nodes = start_hosts(root.path(), &swarm, &modes).await;
    let ids: Vec<String> = nodes.iter().map(|n| n.peer_id().to_string()).collect();
    let liars: HashSet<&String> = ids[HONEST..].iter().collect();
    let peers: Vec<String> = nodes.iter().map(|n| n.addrs()[0].to_string()).collect();
    let state = root.path().join("state");
    let run = |c: std::process::Command| {
        tokio::task::spawn_blocking(move || {
            let mut c = c;
            c.output().unwrap()
        })
    };

    // 1. Batches until the liars are quarantined (bounded: four of 100).
    // All of a batch's inputs are open at once, so the first one is
    // replicated widely while no host is trusted yet.
    let mut t1 = HashMap::new();
    for round in 0..4 {
        let inputs = write_inputs(root.path(), &format!("round{round}"), 100);
        let out = root.path().join(format!("out{round}"));
        let o = run(batch_cmd(
            &state,
            "builtin:echo",
            &inputs,
            &out,
            &peers,
            &swarm,
            100,
        ))
        .await
        .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "round {round}: {err}");
        // Loopback: one prefix for all, so the fallback is said.
        assert!(
            err.contains("note: the 7 host(s) come from 1 network prefix(es)")
                && err.contains("distinct hosts, not distinct prefixes"),
            "no fallback note on loopback: {err}"
        );
        t1 = trust_json(&state);
        let view: Vec<String> = t1
            .values()
            .map(|v| format!("{}/{}/{}", v["state"], v["agreements"], v["disagreements"]))
            .collect();
        eprintln!("round {round}: {view:?}");
        if liars.iter().all(|l| t1[*l]["state"] == "quarantined") {
            break;
        }
    }
    assert_eq!(t1.len(), nodes.len(), "{t1:?}");
    for (p, v) in &t1 {
        let want_q = liars.contains(p);
        assert_eq!(v["state"] == "quarantined", want_q, "{p}: {v}");
    }
    assert!(
        t1.values().filter(|v| n(v, "agreements") > 0).count() >= HONEST,
        "honest hosts built records: {t1:?}"
    );

    // 2. A slower batch, killed with SIGKILL once it reported 16 inputs and
    // a host then accepted one of its next jobs.
    let mut accepted = vec![0usize; nodes.len()];
    drain_events(&nodes, &mut accepted).await;
    accepted.iter_mut().for_each(|a| *a = 0);
    let work = root.path().join("work.wat");
    std::fs::write(&work, crate::faults::WORK).unwrap();
    let work = work.to_str().unwrap().to_string();
    let inputs = write_inputs(root.path(), "killed", 40);
    let out = root.path().join("out-killed");
    let mut c = batch_cmd(&state, &work, &inputs, &out, &peers, &swarm, 8);
    c.stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(root.path().join("killed.stderr")).unwrap());
    let mut child = crate::durability::Killer(c.spawn().unwrap());
    let stdout = child.0.stdout.take().unwrap();
    let (tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for l in std::io::BufReader::new(stdout).lines() {
            let Ok(l) = l else { break };
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    const REPORTED: usize = 16;
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut reported: Vec<serde_json::Value> = Vec::new();
    while reported.len() < REPORTED {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = tokio::time::timeout(left, lines.recv())
            .await
            .expect("the batch reported too slowly")
            .unwrap_or_else(|| {
                panic!(
                    "the submitter exited after {} inputs: {}",
                    reported.len(),
                    std::fs::read_to_string(root.path().join("killed.stderr")).unwrap()
                )
            });
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert!(v.get("summary").is_none(), "finished before the kill: {v}");
        reported.push(v);
    }
    // Every job of the reported inputs was accepted (and answered) before
    // they were reported: their events are in the hosts' queues now. The
    // next accepted job belongs to a later chunk, which starts only once
    // the reported ones are stored.
    drain_events(&nodes, &mut accepted).await;
    let by = next_accepted(&nodes, &mut accepted, deadline).await;
    child.0.kill().unwrap(); // SIGKILL
    let status = child.0.wait().unwrap();
    assert_eq!(status.signal(), Some(9), "killed mid-run: {status:?}");
    assert!(!liars.contains(&ids[by]), "a quarantined host got a job");

    let mut gained: HashMap<String, u64> = HashMap::new();
    for v in &reported {
        assert_eq!(v["status"], "done", "{v}");
        for h in quorum_signers(&out, v["name"].as_str().unwrap()) {
            *gained.entry(h).or_default() += 1;
        }
    }
    let t2 = trust_json(&state);
    eprintln!(
        "kill -9: {} inputs reported before the kill, job accepted by host {by}; \
         quorum agreements they earned: {gained:?}",
        reported.len()
    );
    for (p, before) in &t1 {
        let after = t2.get(p).unwrap_or_else(|| panic!("{p} forgotten: {t2:?}"));
        if before["state"] == "quarantined" {
            assert_eq!(after["state"], "quarantined", "{p}: {after}");
        }
        let g = gained.get(p).copied().unwrap_or(0);
        assert!(
            n(after, "agreements") >= n(before, "agreements") + g,
            "{p}: agreements went back: {before} then {after} ({g} earned by reported inputs)"
        );
        assert!(
            n(after, "disagreements") >= n(before, "disagreements"),
            "{p}: {before} then {after}"
        );
        let ev = |v: &serde_json::Value| v["evidence"].as_array().unwrap().len();
        assert!(
            ev(after) >= ev(before),
            "{p}: evidence lost: {before} then {after}"
        );
    }
    assert!(
        gained.values().sum::<u64>() > 0 || reported.iter().all(|v| n(v, "answers") == 1),
        "no reported input was compared"
    );

    // 3. The same batch again: it resumes what was stored, and nothing goes
    // to the quarantined hosts.
    let before3 = accepted.clone();
    let o = run(batch_cmd(&state, &work, &inputs, &out, &peers, &swarm, 8))
        .await
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    drain_events(&nodes, &mut accepted).await;
    let text = String::from_utf8(o.stdout).unwrap();
    let all: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let summary = &all.last().unwrap()["summary"];
    assert_eq!(n(summary, "total"), 40, "{summary}");
    assert_eq!(n(summary, "done"), 40, "{summary}");
    assert!(
        n(summary, "resumed") >= REPORTED as u64,
        "the {REPORTED} inputs reported before the kill were stored: {summary}"
    );
    for v in &all[..all.len() - 1] {
        if v["resumed"] == true {
            continue;
        }
        for h in signers(&out, v["name"].as_str().unwrap()) {
            assert!(
                !liars.contains(&h),
                "{} answered by quarantined {h}",
                v["name"]
            );
        }
    }
    for i in 0..40 {
        let name = format!("{i:03}.txt");
        assert_eq!(
            std::fs::read(out.join(format!("{name}.out"))).unwrap(),
            std::fs::read(inputs.join(&name)).unwrap(),
            "{name}"
        );
    }
    for (i, a) in accepted.iter().enumerate() {
        if liars.contains(&ids[i]) {
            assert_eq!(
                *a, 0,
                "quarantined host {i} accepted {a} jobs after it was quarantined"
            );
        }
    }
    assert!(
        (0..HONEST).any(|i| accepted[i] > before3[i]),
        "the resumed batch ran on honest hosts: {accepted:?}"
    );
    let t3 = trust_json(&state);
    for l in &liars {
        assert_eq!(t3[*l]["state"], "quarantined", "{}", t3[*l]);
    }
    eprintln!(
        "kill -9: resumed {} of 40; jobs accepted per host after the quarantines {accepted:?}",
        n(summary, "resumed")
    );
    for n in &nodes {
        n.stop().await;
    }
}

/// Placement for verification keeps replicas in distinct observed network
/// prefixes when there are enough of them: seven `biop2p host` processes in
/// namespaces of their own, three of them in 10.1.1.0/24 and one in each of
/// four other /24s (on one bridge), and a `biop2p submit` batch (adaptive)
/// from an eighth. No replicated input has two replicas in one /24 (a draw
/// blind to prefixes would put two of them in 10.1.1.0/24 about once in
/// seven pairs), the submitter does not say it fell back to distinct peers
/// (on loopback it does: see the kill -9 test), and `biop2p trust` shows
/// each host under the prefix its connection was observed from.
#[test]
fn replicas_come_from_distinct_observed_prefixes_in_namespaces() {
    if !crate::netns::required("replicas_come_from_distinct_observed_prefixes_in_namespaces") {
        return;
    }
    // Seven host processes: not while a swarm test loads the machine.
    let _one = ONE_SWARM.blocking_lock();
    const INPUTS: usize = 40;
    let mut cidrs: Vec<String> = ["10.1.1.1", "10.1.1.2", "10.1.1.3"]
        .iter()
        .map(|a| format!("{a}/16"))
        .collect();
    cidrs.extend((2..=5).map(|k| format!("10.1.{k}.1/16")));
    let hosts_n = cidrs.len();
    cidrs.push("10.1.9.1/16".into()); // the submitter
    let lan = crate::netns::Lan::bridge_at(&cidrs).expect("namespaces and the bridge");
    let (tx, _events) = std::sync::mpsc::channel();
    let hosts: Vec<crate::faults::Host> = (0..hosts_n)
        .map(|i| crate::faults::spawn_host(&lan, i, tx.clone()))
        .collect();
    drop(tx);
    let slash24 = |a: &str| {
        let o: Vec<&str> = a.split('.').collect();
        format!("{}.{}.{}.0/24", o[0], o[1], o[2])
    };
    let prefix_of: HashMap<String, String> = hosts
        .iter()
        .enumerate()
        .map(|(i, h)| (h.peer_id.clone(), slash24(&lan.addr(i))))
        .collect();

    let dir = tempfile::tempdir().unwrap();
    let inputs = write_inputs(dir.path(), "spread", INPUTS);
    let out = dir.path().join("out");
    let state = dir.path().join("state");
    let mut c = lan.command(hosts_n, env!("CARGO_BIN_EXE_biop2p"));
    c.args(["submit", "builtin:echo", "--json", "--no-mdns"])
        .args(["--parallel", &INPUTS.to_string()])
        .arg("--inputs")
        .arg(&inputs)
        .arg("-o")
        .arg(&out)
        .arg("--state-dir")
        .arg(&state)
        .env("BIOP2P_LOG", "warn")
        .stdin(std::process::Stdio::null());
    for h in &hosts {
        c.arg("--peer").arg(&h.addr);
    }
    let o = c.output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        !err.contains("network prefix(es)") && !err.contains("not distinct prefixes"),
        "five prefixes, yet the submitter fell back: {err}"
    );
    let lines: Vec<serde_json::Value> = String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let summary = &lines.last().unwrap()["summary"];
    assert_eq!(n(summary, "done"), INPUTS as u64, "{summary}");

    // The chance that a draw of k distinct hosts blind to prefixes puts at
    // most one in 10.1.1.0/24 (3 of the 7 hosts; 4 elsewhere).
    let choose = |n: u64, k: u64| -> f64 {
        if k > n {
            return 0.0;
        }
        (0..k).fold(1.0, |acc, i| acc * (n - i) as f64 / (i + 1) as f64)
    };
    let apart = |k: u64| (choose(4, k) + 3.0 * choose(4, k - 1)) / choose(7, k);
    let mut luck = 1.0;
    let mut replicated = 0;
    let mut crowded = 0;
    let mut sizes = std::collections::BTreeMap::new();
    for v in &lines[..lines.len() - 1] {
        let name = v["name"].as_str().unwrap();
        let by = signers(&out, name);
        assert!(!by.is_empty(), "{name}: no receipt");
        if by.len() < 2 {
            continue;
        }
        replicated += 1;
        luck *= apart(by.len() as u64);
        *sizes.entry(by.len()).or_insert(0) += 1;
        let prefixes: Vec<&String> = by.iter().map(|h| &prefix_of[h]).collect();
        let distinct: HashSet<&&String> = prefixes.iter().collect();
        assert_eq!(
            distinct.len(),
            prefixes.len(),
            "{name}: replicas share a prefix: {prefixes:?}"
        );
        crowded += usize::from(prefixes.iter().any(|p| *p == "10.1.1.0/24"));
    }
    eprintln!(
        "prefixes: {replicated} of {INPUTS} inputs replicated, all in distinct /24s; \
         {crowded} of them with one replica from 10.1.1.0/24; replicas per input {sizes:?}; \
         a draw blind to prefixes would have kept them apart with probability {luck:.2e}"
    );
    assert!(replicated >= 10, "only {replicated} inputs were replicated");
    assert!(
        luck < 1e-3,
        "too few replicas to tell a prefix-blind draw apart: {luck} ({sizes:?})"
    );
    assert!(crowded > 0, "the shared prefix never ran a replica");

    // What the submitter recorded: the prefix each connection came from.
    let t = trust_json(&state);
    assert_eq!(t.len(), hosts_n, "{t:?}");
    for (p, want) in &prefix_of {
        assert_eq!(t[p]["prefix"], want.as_str(), "{}", t[p]);
    }
}

/// The `Node` API submits through the same flow as `biop2p submit`: with
/// no replicas given the coordinator places and compares (a colluding liar
/// among five hosts gets nothing wrong accepted), `replicas: Some(3)` is a
/// strict majority of three distinct hosts, the submitter has a key of its
/// own, and a node that is not running says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_api_submits_through_the_coordinator_and_by_majority() {
    use biop2p::node::submit::{Mode, SubmitOptions};
    let _one = ONE_SWARM.lock().await;
    let root = tempfile::tempdir().unwrap();
    let swarm = "node-api-submit";
    let nodes = start_hosts(
        root.path(),
        swarm,
        &[
            Faulty::Honest,
            Faulty::Honest,
            Faulty::Honest,
            Faulty::Honest,
            Faulty::Colluding,
        ],
    )
    .await;
    let echo = workloads::get("echo").unwrap().bytes.to_vec();
    let mut opts = SubmitOptions::default();
    opts.reach.discover = Duration::from_secs(30);
    opts.deadline = Duration::from_secs(60);
    let mut notes = Vec::new();
    for i in 0..4 {
        let input = format!("node api job {i}\n").into_bytes();
        let out = nodes[0]
            .submit(echo.clone(), input.clone(), opts.clone(), &mut |p| {
                notes.push(format!("{p:?}"))
            })
            .await
            .unwrap_or_else(|e| panic!("job {i}: {e}; notes {notes:#?}"));
        assert_eq!(out.mode, Mode::Adaptive);
        assert!(out.verified);
        assert_eq!(out.output(), Some(&input[..]), "job {i}: the honest output");
        assert!(out.accepted_replicas >= 1 && !out.receipts.is_empty());
        let submitter =
            biop2p::node::submitter::peer_of_key(&out.record.job.verify().unwrap().submitter);
        assert!(submitter.is_some());
        assert_ne!(
            submitter,
            Some(nodes[0].peer_id()),
            "the submitter has a key of its own"
        );
    }
    assert!(
        root.path()
            .join("host0")
            .join(biop2p::node::SUBMITTER_DIR)
            .join("submitter")
            .exists()
    );

    opts.replicas = Some(3);
    let input = b"node api, three replicas\n".to_vec();
    let out = nodes[0]
        .submit(echo.clone(), input.clone(), opts.clone(), &mut |_| {})
        .await
        .unwrap();
    assert_eq!(out.mode, Mode::Majority(3));
    assert_eq!(out.output(), Some(&input[..]));
    assert!(out.accepted_replicas >= 2, "a strict majority of 3");
    let hosts: HashSet<PeerId> = out
        .receipts
        .iter()
        .map(|r| r.verify().unwrap().host_peer_id().unwrap())
        .collect();
    assert_eq!(hosts.len(), out.receipts.len(), "distinct hosts");

    let idle = Node::builder()
        .with_data_dir(root.path().join("idle"))
        .build()
        .await
        .unwrap();
    let err = idle
        .submit(echo, b"x".to_vec(), SubmitOptions::default(), &mut |_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, biop2p::node::NodeError::NotStarted), "{err}");
    for n in &nodes {
        n.stop().await;
    }
}
