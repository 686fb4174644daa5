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

/// Starts `modes.len()` hosts on loopback in one swarm (the first is the
/// bootstrap of the others).
async fn start_hosts(root: &std::path::Path, swarm: &str, modes: &[Faulty]) -> Vec<Node> {
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
            TaskStatus::Accepted {
                response: JobResponse::Done { output, .. },
                ..
            } => output[..] != tasks[o.index].input[..],
            TaskStatus::Accepted { .. } => true,
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
