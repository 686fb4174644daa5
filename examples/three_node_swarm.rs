//! Three host nodes on loopback, each in its own role, find each other
//! through a bootstrap peer and their gossiped adverts; a submitter that
//! knows only the first node's address discovers all three and runs real
//! workloads on three replicas each, verifying every receipt and accepting
//! outputs on a strict majority. Prints what each node did; exits 0.
//!
//! ```text
//! cargo run --release -p biop2p --example three_node_swarm
//! cargo test --release --example three_node_swarm test_three_node_creation
//! ```

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, bail, ensure};
use biop2p::config::NetworkConfig;
use biop2p::identity::Identity;
use biop2p::node::client::JobParams;
use biop2p::node::placement::{self, Candidate, Plan};
use biop2p::node::trails::Trails;
use biop2p::node::{Client, HostEvent};
use biop2p::{BiologicalRole, Node, NodeConfig, workloads};
use libp2p::PeerId;

/// What the swarm did, per node: jobs finished and fuel burnt.
#[derive(Debug, Default)]
struct Summary {
    jobs: HashMap<PeerId, (u32, u64)>,
    discovered: usize,
}

async fn three_nodes(root: &std::path::Path, swarm: &str) -> Result<Vec<Node>> {
    let roles = [
        BiologicalRole::Caste,
        BiologicalRole::Thermal,
        BiologicalRole::Young,
    ];
    let mut nodes: Vec<Node> = Vec::new();
    for (i, role) in roles.into_iter().enumerate() {
        let mut config = NodeConfig::default();
        config.biological.primary_role = role.to_string();
        config.resources.cpu_allocation = 0.5;
        config.network.mdns = false; // the bootstrap peer is enough here
        config.network.swarm = swarm.to_string();
        config.network.advert_interval_secs = 1;
        let mut b = Node::builder()
            .with_config(config)
            .with_initial_role(role)
            .with_data_dir(root.join(format!("node{i}")))
            .with_listen(["/ip4/127.0.0.1/tcp/0".parse()?]);
        if let Some(first) = nodes.first() {
            b = b.with_bootstrap(&first.addrs()[0]);
        }
        let node = b.build().await?;
        node.start().await?;
        nodes.push(node);
    }
    Ok(nodes)
}

async fn run_swarm() -> Result<Summary> {
    let root = tempfile::tempdir()?;
    let swarm = format!("example-{:016x}", rand::random::<u64>());
    let nodes = three_nodes(root.path(), &swarm).await?;
    let result = submit_jobs(&nodes, &swarm).await;
    for n in &nodes {
        n.stop().await;
    }
    let mut summary = result?;
    // What each node did, from its own events.
    for n in &nodes {
        while let Some(ev) = n.next_event().await {
            if let HostEvent::Finished { fuel_used, .. } = ev {
                let e = summary.jobs.entry(n.peer_id()).or_default();
                e.0 += 1;
                e.1 += fuel_used;
            }
        }
        let (jobs, fuel) = summary.jobs.get(&n.peer_id()).copied().unwrap_or_default();
        println!(
            "node {} ({}): {jobs} job(s), {fuel} fuel",
            n.peer_id(),
            n.role()
        );
    }
    Ok(summary)
}

async fn submit_jobs(nodes: &[Node], swarm: &str) -> Result<Summary> {
    let mut net = NetworkConfig::direct();
    net.swarm = swarm.to_string();
    net.bootstrap = vec![nodes[0].addrs()[0].to_string()];
    let mut client = Client::new(Identity::from_seed(rand::random()), &net, 16 << 20).await?;
    let found = client
        .discover(
            3,
            |_| true,
            Duration::from_millis(300),
            Duration::from_secs(20),
        )
        .await;
    println!("discovered {} nodes from their adverts", found.len());
    ensure!(found.len() == 3, "expected to discover 3 nodes");

    let jobs: [(&str, Vec<u8>); 2] = [
        ("echo", b"three nodes agree".to_vec()),
        ("mlp", br#"{"seed":3,"dataset":"xor","epochs":40}"#.to_vec()),
    ];
    // The submitter's Thermal trails: replicas that agree are reinforced.
    let mut trails = Trails::new();
    for (name, input) in jobs {
        let module = workloads::get(name).expect("embedded").bytes.to_vec();
        let job = client.make_job(&module, &input, &JobParams::default());
        let spec = job.verify()?;
        let cands = trails
            .rank(
                client.known_hosts(),
                &spec,
                biop2p::node::host::unix_now_ms(),
            )
            .into_iter()
            .map(|(p, a)| Candidate::Host(p, Box::new(a)))
            .collect();
        let inline = placement::inline_blobs(&[&module, &input], 512 << 10);
        let plan = Plan {
            refill_from_adverts: true,
            replicas: 3,
            max_replacements: 1,
            deadline: Duration::from_secs(60),
        };
        // Each replica its own signed job (own nonce, own id).
        let jobs: Vec<_> = (0..plan.replicas + plan.max_replacements)
            .map(|_| client.make_job(&module, &input, &JobParams::default()))
            .collect();
        client.offer_blob(Arc::new(module));
        client.offer_blob(Arc::new(input.clone()));
        let report =
            placement::run_replicas(&mut client, jobs, &inline, cands, &plan, &mut trails, |m| {
                println!("  {m}")
            })
            .await?;
        let Some((hash, agreeing)) = report.majority(3) else {
            bail!("{name}: no majority");
        };
        println!(
            "{name}: output {} accepted on {agreeing} of 3 verified receipts",
            blake3::Hash::from(hash).to_hex()
        );
        ensure!(agreeing == 3, "honest replicas must agree");
        if name == "echo" {
            let out = report.answers.iter().find_map(|a| match &a.response {
                biop2p::proto::JobResponse::Done { output, .. } => Some(output.clone()),
                _ => None,
            });
            ensure!(out.as_deref() == Some(&input[..]), "echo must echo");
        }
    }
    Ok(Summary {
        jobs: HashMap::new(),
        discovered: found.len(),
    })
}

#[tokio::main]
async fn main() -> Result<()> {
    let s = run_swarm().await?;
    println!(
        "ok: {} nodes discovered, every replica verified",
        s.discovered
    );
    Ok(())
}

#[test]
fn test_three_node_creation() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let s = rt.block_on(run_swarm()).unwrap();
    assert_eq!(s.discovered, 3);
    // Each of the three nodes ran one replica of each of the two jobs.
    assert_eq!(s.jobs.len(), 3);
    assert!(s.jobs.values().all(|(jobs, fuel)| *jobs == 2 && *fuel > 0));
}
