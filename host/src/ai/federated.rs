//! Federated training of the digits network across a local swarm, with
//! poisoners, comparing FedAvg and a robust aggregator in one run
//! (`biop2p demo --federated`, `examples/federated_digits.rs`).
//!
//! Each round, for each of the two models (one aggregated with FedAvg, one
//! with the coordinate-wise median, [`security::aggregate`]), shard `s` of
//! the training set is trained by host `s` as a real signed job over the
//! network: the model's current weights are the input, the training set a
//! read-only data blob (`/data/train`, fetched once per host however many
//! tasks use it). Every receipt is verified. Both aggregators see the
//! answers as received, poisoned ones included, so the comparison measures
//! the aggregators alone.
//!
//! Replication runs beside: each round some of the robust model's training
//! tasks are also run by a second host and the two outputs compared by
//! hash. Training is deterministic, so honest replicas agree bit for bit;
//! when they differ, the submitter re-runs the task in its own sandbox and
//! the host whose output differs from that is caught.
//!
//! After each round both models are evaluated on the held-back test split
//! in the submitter's own sandbox (the workload's `infer`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use libp2p::PeerId;
use security::aggregate::Aggregator;
use serde::Serialize;

use super::AiError;
use super::digits::{Digits, Model, encode_samples};
use crate::config::{NetworkConfig, NodeConfig};
use crate::identity::Identity;
use crate::node::client::JobParams;
use crate::node::faulty::Faulty;
use crate::node::{Client, Node, verify_response};
use crate::proto::{self, DataRef, JobRequest, SignedJob};
use crate::sandbox::{DataSource, Sandbox, Task, TaskData, WasmModule};
use crate::workloads;

/// Settings of a federated run.
#[derive(Debug, Clone)]
pub struct FederatedConfig {
    /// Hosts (one shard each).
    pub hosts: usize,
    /// How many of them poison (the last ones).
    pub poison: usize,
    /// Rounds of federated averaging.
    pub rounds: u32,
    /// Local epochs per training task.
    pub local_epochs: u32,
    /// SGD step size.
    pub lr: f32,
    /// Robust-model training tasks replicated on a second host per round.
    pub replicated_per_round: usize,
    /// Test accuracy the robust model must reach for the run to pass.
    pub target: f32,
    /// Seed of the initial weights and the shuffles.
    pub seed: u64,
}

impl Default for FederatedConfig {
    /// 5 hosts, 10 rounds of 4 local epochs at lr 0.05 (measured: the
    /// median model reaches about 96% under one poisoner), 2 replicated
    /// tasks per round, target 95%.
    fn default() -> Self {
        FederatedConfig {
            hosts: 5,
            poison: 0,
            rounds: 10,
            local_epochs: 4,
            lr: 0.05,
            replicated_per_round: 2,
            target: 0.95,
            seed: 1,
        }
    }
}

/// Test accuracy of both models after one round.
#[derive(Debug, Clone, Serialize)]
pub struct RoundReport {
    /// 1-based.
    pub round: u32,
    /// The robust (median) model's test accuracy.
    pub accuracy_robust: f32,
    /// The FedAvg model's test accuracy.
    pub accuracy_fedavg: f32,
}

/// One verified receipt of a training task.
#[derive(Debug, Clone, Serialize)]
pub struct ReceiptLine {
    /// 1-based round.
    pub round: u32,
    /// Which model it trained (`FedMedian`, `FedAvg`).
    pub model: &'static str,
    /// Shard trained.
    pub shard: usize,
    /// Whether it was the replica of a replicated task.
    pub replica: bool,
    /// The host that signed it.
    pub host: String,
    /// Its job id (hex).
    pub job_id: String,
    /// blake3 of the output (hex).
    pub output_hash: String,
    /// Fuel used.
    pub fuel_used: u64,
    /// Price charged.
    pub price: u64,
    /// The data blobs it had mounted (hex).
    pub data_hashes: Vec<String>,
}

/// A replicated task whose replicas differed.
#[derive(Debug, Clone, Serialize)]
pub struct Mismatch {
    /// 1-based round.
    pub round: u32,
    /// Shard.
    pub shard: usize,
    /// The hosts whose output differed from the submitter's own re-run.
    pub caught: Vec<String>,
}

/// The outcome of a federated run.
#[derive(Debug, Clone, Serialize)]
pub struct FederatedReport {
    /// The robust aggregator's name.
    pub aggregator: &'static str,
    /// Per-round test accuracies.
    pub rounds: Vec<RoundReport>,
    /// The robust model's final test accuracy.
    pub final_accuracy_robust: f32,
    /// The FedAvg model's final test accuracy.
    pub final_accuracy_fedavg: f32,
    /// Fraction of replicated training tasks whose replicas were
    /// bit-identical.
    pub replicas_identical: f64,
    /// The same fraction over tasks whose replicas all ran on honest hosts
    /// (the determinism promise: 1.0).
    pub replicas_identical_honest: f64,
    /// Replicated training tasks.
    pub replicated_tasks: usize,
    /// Replicated tasks whose replicas differed, and who was caught.
    pub mismatches: Vec<Mismatch>,
    /// Hosts caught by replication (peer ids).
    pub caught: Vec<String>,
    /// The poisoning hosts (peer ids), for judging.
    pub poisoners: Vec<String>,
    /// Test samples held back.
    pub test_samples: usize,
    /// Whether the robust model reached the target.
    pub target_reached: bool,
    /// Every verified receipt of a training task.
    pub receipts: Vec<ReceiptLine>,
}

/// A training task's answer: who, the output, whether it was the replica.
type Answer = (PeerId, Vec<u8>, bool);

/// One training task sent to a host.
struct Sent {
    model: usize,
    shard: usize,
    replica: bool,
    peer: PeerId,
    job: SignedJob,
    args: Vec<String>,
}

/// Runs a whole federated training: starts the hosts (in `root`), trains,
/// stops them. `say` gets the human-readable lines as they happen.
pub async fn run(
    cfg: &FederatedConfig,
    digits: &Digits,
    root: &std::path::Path,
    mut say: impl FnMut(&str),
) -> Result<FederatedReport, AiError> {
    let err = |e: &dyn std::fmt::Display| AiError::Run(e.to_string());
    if cfg.hosts < 3 || cfg.poison * 2 >= cfg.hosts || cfg.rounds == 0 {
        return Err(AiError::Run(format!(
            "{} hosts with {} poisoners over {} rounds: want at least 3 hosts, fewer than half poisoning, and a round",
            cfg.hosts, cfg.poison, cfg.rounds
        )));
    }
    let mut nodes = Vec::new();
    for i in 0..cfg.hosts {
        let mut config = NodeConfig::default();
        config.network.mdns = false;
        config.network.swarm = format!("federated-{}", std::process::id());
        config.market.price_per_mfuel = 1;
        let poisoner = i >= cfg.hosts - cfg.poison;
        let node = Node::builder()
            .with_config(config)
            .with_data_dir(root.join(format!("host{i}")))
            .with_listen(["/ip4/127.0.0.1/tcp/0".parse().expect("addr")])
            .faulty_mode(if poisoner {
                Faulty::Poison
            } else {
                Faulty::Honest
            })
            .build()
            .await
            .map_err(|e| err(&e))?;
        node.start().await.map_err(|e| err(&e))?;
        nodes.push(node);
    }
    let result = drive(cfg, digits, root, &nodes, &mut say).await;
    for n in &nodes {
        n.stop().await;
    }
    result
}

fn short(p: &PeerId) -> String {
    let s = p.to_string();
    format!("…{}", &s[s.len() - 8..])
}

async fn drive(
    cfg: &FederatedConfig,
    digits: &Digits,
    root: &std::path::Path,
    nodes: &[Node],
    say: &mut impl FnMut(&str),
) -> Result<FederatedReport, AiError> {
    let err = |e: &dyn std::fmt::Display| AiError::Run(e.to_string());
    let mut client = Client::new(
        Identity::from_seed(rand::random()),
        &NetworkConfig::direct(),
        16 << 20,
    )
    .await
    .map_err(|e| err(&e))?;
    let mut peers = Vec::new();
    for n in nodes {
        peers.push(client.connect(&n.addrs()[0]).await.map_err(|e| err(&e))?);
    }
    let poisoners: Vec<PeerId> = peers[cfg.hosts - cfg.poison..].to_vec();
    for (i, p) in peers.iter().enumerate() {
        let tag = if poisoners.contains(p) {
            "  (poisoner)"
        } else {
            ""
        };
        say(&format!("  host {i} {}{tag}", short(p)));
    }
    let train_blob = Arc::new(encode_samples(&digits.train));
    let test_blob = Arc::new(encode_samples(&digits.test));
    let train_ref = client.offer_data("train", train_blob.clone());
    let sandbox = crate::node::open_sandbox(&root.join("submitter")).map_err(|e| err(&e))?;
    let module = workloads::DIGITS;
    let aggregators = [Aggregator::Median, Aggregator::FedAvg];
    let init = local_run(
        &sandbox,
        &[],
        &[
            "train".into(),
            "--epochs".into(),
            "0".into(),
            "--seed".into(),
            cfg.seed.to_string(),
        ],
        &train_ref,
        &train_blob,
    )
    .await?;
    let mut models: Vec<Vec<u8>> = vec![init.clone(), init];
    let mut rounds = Vec::new();
    let mut receipts = Vec::new();
    let mut mismatches = Vec::new();
    let mut caught: Vec<PeerId> = Vec::new();
    let (mut replicated, mut identical, mut honest, mut honest_identical) = (0, 0, 0, 0);
    for round in 1..=cfg.rounds {
        let mut sent: HashMap<crate::node::client::RequestId, Sent> = HashMap::new();
        for (m, weights) in models.iter().enumerate() {
            for shard in 0..cfg.hosts {
                let args: Vec<String> = vec![
                    "train".into(),
                    "--epochs".into(),
                    cfg.local_epochs.to_string(),
                    "--lr".into(),
                    cfg.lr.to_string(),
                    "--shard".into(),
                    format!("{shard}/{}", cfg.hosts),
                    "--seed".into(),
                    (cfg.seed * 1_000_003 + u64::from(round) * 1000 + shard as u64).to_string(),
                ];
                let rep = m == 0
                    && (0..cfg.replicated_per_round.min(cfg.hosts)).any(|k| {
                        (((round as usize - 1) * cfg.replicated_per_round) + k) % cfg.hosts == shard
                    });
                let mut targets = vec![(peers[shard], false)];
                if rep {
                    targets.push((peers[(shard + 1) % cfg.hosts], true));
                }
                for (peer, replica) in targets {
                    let params = JobParams {
                        args: args.clone(),
                        max_price_per_mfuel: 10,
                        data: vec![train_ref.clone()],
                        ..JobParams::default()
                    };
                    let job = client.make_job(module, weights, &params);
                    let inline = crate::node::placement::inline_blobs(
                        &[module, weights.as_slice()],
                        512 << 10,
                    );
                    client.offer_blob(Arc::new(module.to_vec()));
                    client.offer_blob(Arc::new(weights.clone()));
                    let rid = client.send(
                        &peer,
                        JobRequest::Submit {
                            job: job.clone(),
                            inline,
                            wait: true,
                        },
                    );
                    sent.insert(
                        rid,
                        Sent {
                            model: m,
                            shard,
                            replica,
                            peer,
                            job,
                            args: args.clone(),
                        },
                    );
                }
            }
        }
        // (model, shard) -> [(peer, output, replica)]
        let mut outputs: HashMap<(usize, usize), Vec<Answer>> = HashMap::new();
        let mut task_args: HashMap<usize, Vec<String>> = HashMap::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
        while !sent.is_empty() {
            let (rid, resp) = tokio::time::timeout_at(deadline, client.next_response())
                .await
                .map_err(|_| {
                    AiError::Run(format!("round {round}: hosts did not answer in time"))
                })?;
            let Some(s) = sent.remove(&rid) else { continue };
            let resp = resp.map_err(|e| err(&format!("round {round}: {e}")))?;
            let spec = s.job.verify().expect("own job verifies");
            let v = verify_response(&resp, &s.job.id(), &spec, &s.peer)
                .map_err(|e| err(&format!("round {round}: receipt of {}: {e}", s.peer)))?;
            let Some(out) = v.output else {
                let (kind, msg) = v.failure.unwrap_or_default();
                return Err(AiError::Run(format!(
                    "round {round}: training on {} failed: {kind}: {msg}",
                    s.peer
                )));
            };
            receipts.push(ReceiptLine {
                round,
                model: aggregators[s.model].name(),
                shard: s.shard,
                replica: s.replica,
                host: s.peer.to_string(),
                job_id: proto::hex(&s.job.id()),
                output_hash: proto::hex(&v.receipt.output_hash),
                fuel_used: v.receipt.fuel_used,
                price: v.receipt.price,
                data_hashes: v.receipt.data_hashes.iter().map(proto::hex).collect(),
            });
            task_args.insert(s.shard, s.args);
            outputs
                .entry((s.model, s.shard))
                .or_default()
                .push((s.peer, out, s.replica));
        }
        // Replication: compare, and judge mismatches by a local re-run.
        for shard in 0..cfg.hosts {
            let outs = &outputs[&(0, shard)];
            if outs.len() < 2 {
                continue;
            }
            replicated += 1;
            let all_honest = outs.iter().all(|(p, _, _)| !poisoners.contains(p));
            let same = outs.iter().all(|(_, o, _)| o == &outs[0].1);
            identical += usize::from(same);
            if all_honest {
                honest += 1;
                honest_identical += usize::from(same);
            }
            if !same {
                let local = local_run(
                    &sandbox,
                    &models[0],
                    &task_args[&shard],
                    &train_ref,
                    &train_blob,
                )
                .await?;
                let bad: Vec<PeerId> = outs
                    .iter()
                    .filter(|(_, o, _)| o != &local)
                    .map(|(p, _, _)| *p)
                    .collect();
                for p in &bad {
                    if !caught.contains(p) {
                        caught.push(*p);
                    }
                }
                say(&format!(
                    "  round {round} shard {shard}: replicas differ; the local re-run catches {}",
                    bad.iter().map(short).collect::<Vec<_>>().join(", ")
                ));
                mismatches.push(Mismatch {
                    round,
                    shard,
                    caught: bad.iter().map(|p| p.to_string()).collect(),
                });
            }
        }
        // Aggregate each model from its primaries' answers, as received.
        let mut acc = [0.0f32; 2];
        for (m, agg) in aggregators.iter().enumerate() {
            let mut ups: Vec<Model> = Vec::new();
            for shard in 0..cfg.hosts {
                let (peer, out, _) = outputs[&(m, shard)]
                    .iter()
                    .find(|(_, _, r)| !r)
                    .expect("a primary answer per shard");
                ups.push(Model::decode(out).ok_or_else(|| {
                    AiError::Run(format!(
                        "round {round}: {peer} returned something that is not a model"
                    ))
                })?);
            }
            let refs: Vec<(&[f32], u64)> = ups
                .iter()
                .map(|u| (u.params.as_slice(), u64::from(u.samples)))
                .collect();
            let params = agg.aggregate(&refs).map_err(|e| err(&e))?;
            let model = Model {
                loss: 0.0,
                accuracy: 0.0,
                samples: 0,
                params,
            };
            models[m] = model.encode();
            acc[m] = evaluate(&sandbox, &models[m], &test_blob).await?;
        }
        say(&format!(
            "round {round:>2}: test accuracy {} {:.2}%   {} {:.2}%",
            aggregators[0].name(),
            acc[0] * 100.0,
            aggregators[1].name(),
            acc[1] * 100.0
        ));
        rounds.push(RoundReport {
            round,
            accuracy_robust: acc[0],
            accuracy_fedavg: acc[1],
        });
    }
    let last = rounds.last().expect("at least one round");
    let frac = |a: usize, b: usize| if b == 0 { 1.0 } else { a as f64 / b as f64 };
    Ok(FederatedReport {
        aggregator: Aggregator::Median.name(),
        final_accuracy_robust: last.accuracy_robust,
        final_accuracy_fedavg: last.accuracy_fedavg,
        target_reached: last.accuracy_robust >= cfg.target,
        rounds,
        replicas_identical: frac(identical, replicated),
        replicas_identical_honest: frac(honest_identical, honest),
        replicated_tasks: replicated,
        mismatches,
        caught: caught.iter().map(|p| p.to_string()).collect(),
        poisoners: poisoners.iter().map(|p| p.to_string()).collect(),
        test_samples: digits.test.len(),
        receipts,
    })
}

/// Runs the digits workload in the submitter's own sandbox (on the
/// blocking pool: the hosts share this runtime).
async fn local_run(
    sandbox: &Sandbox,
    input: &[u8],
    args: &[String],
    data: &DataRef,
    bytes: &Arc<Vec<u8>>,
) -> Result<Vec<u8>, AiError> {
    let mut task = Task::new(WasmModule::new(workloads::DIGITS), input.to_vec());
    task.args = args.to_vec();
    task.data = vec![TaskData {
        name: data.name.clone(),
        hash: data.hash,
        source: DataSource::Bytes(bytes.clone()),
    }];
    let sandbox = sandbox.clone();
    tokio::task::spawn_blocking(move || sandbox.run(&task).outcome)
        .await
        .map_err(|e| AiError::Run(format!("local run of the digits workload: {e}")))?
        .map_err(|e| AiError::Run(format!("local run of the digits workload: {e}")))
}

/// Test accuracy of `weights` on the samples in `test` (`infer`, locally).
async fn evaluate(sandbox: &Sandbox, weights: &[u8], test: &Arc<Vec<u8>>) -> Result<f32, AiError> {
    let r = DataRef {
        name: "test".into(),
        hash: *blake3::hash(test).as_bytes(),
        size: test.len() as u64,
    };
    let out = local_run(sandbox, weights, &["infer".into()], &r, test).await?;
    let v: serde_json::Value = serde_json::from_slice(&out)
        .map_err(|e| AiError::Run(format!("infer output is not JSON: {e}")))?;
    v["accuracy"]
        .as_f64()
        .map(|a| a as f32)
        .ok_or_else(|| AiError::Run("infer output has no accuracy".into()))
}
