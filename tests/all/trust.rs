//! Trust, live: the security coordinator places and judges real jobs on a
//! real swarm of in-process hosts on loopback (real libp2p, real wasmtime,
//! real sled): colluding liars are quarantined, a sleeper is caught, each
//! replica is its own job, outputs go only to their submitter, and forged
//! or unverifiable trust reports change nothing.

use std::sync::Arc;
use std::time::Duration;

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
            .faulty_mode(*mode);
        if let Some(first) = nodes.first() {
            b = b.with_bootstrap(&first.addrs()[0]);
        }
        let node = b.build().await.unwrap();
        node.start().await.unwrap();
        nodes.push(node);
    }
    nodes
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
