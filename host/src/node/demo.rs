//! The demo swarm: N hosts on loopback, each with its own data dir, role
//! and price, found through one bootstrap host and their gossiped adverts,
//! and a submitter that runs the embedded workloads on them as any
//! submitter would. `biop2p demo` prints what this returns.
//!
//! Two modes. Adaptive (the default, 4 hosts or more): the submitter's
//! trust coordinator ([`super::submitter::Submitter`]) runs `jobs` small
//! jobs and decides replication itself (newcomers checked against trusted
//! hosts, trusted hosts spot-checked, canaries, quarantine). Fixed
//! (`replicas`): each embedded workload runs on that many replicas and is
//! accepted on a strict majority. The last `faulty` hosts lie, all the same
//! way (they collude); the run is `ok` only if no wrong output was
//! accepted and the ledger balances.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use libp2p::PeerId;

use super::client::JobParams;
use super::host::unix_now_ms;
use super::ledger::{self, LedgerView};
use super::placement::{self, Candidate, Plan};
use super::submitter::{self, SubmitterError};
use super::trails::Trails;
use super::{Client, ClientError, Node, NodeError};
use crate::config::NetworkConfig;
use crate::identity::Identity;
use crate::proto::{self, Advert, JobResponse};
use crate::sandbox::SandboxError;
use crate::store::{HostStore, StoreError, SubmitterStore};
use crate::{BiologicalRole, NodeConfig, workloads};

/// What to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoConfig {
    /// Hosts to start (1 to 12).
    pub hosts: usize,
    /// The last this many hosts lie, all with the same wrong output.
    pub faulty: usize,
    /// `Some(r)`: fixed majorities of `r` replicas; `None`: adaptive.
    pub replicas: Option<usize>,
    /// Jobs to run in adaptive mode.
    pub jobs: usize,
}

/// Fewer hosts than this and adaptive replication cannot confirm an
/// answer (four untried hosts are what it takes): use fixed majorities.
pub const ADAPTIVE_MIN_HOSTS: usize = 4;

/// Why a demo could not run (a wrong output accepted is not an error: it
/// is a report whose `ok` is false).
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The configuration cannot be run.
    #[error("{0}")]
    Invalid(String),
    /// A host did not start.
    #[error("cannot start host {index}: {source}")]
    Host {
        /// Which host.
        index: usize,
        /// Why.
        source: NodeError,
    },
    /// Discovery found fewer hosts than the replicas asked for.
    #[error("only {found} host(s) discovered, {needed} needed")]
    TooFew {
        /// Hosts discovered.
        found: usize,
        /// Replicas asked for.
        needed: usize,
    },
    /// The submitter's client failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The trust coordinator failed.
    #[error(transparent)]
    Submitter(#[from] SubmitterError),
    /// A store (a host's or the submitter's) failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The local reference sandbox failed to open.
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    /// The submitter's identity could not be made.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// What a demo did.
#[derive(Debug, Clone)]
pub struct DemoReport {
    /// Every accepted output was the honest one and the ledger balanced.
    pub ok: bool,
    /// The whole report, as `biop2p demo --json` prints it (its fields are
    /// an interface other tools script against).
    pub json: serde_json::Value,
}

/// Roles the demo's hosts take, in turn.
const ROLES: [BiologicalRole; 4] = [
    BiologicalRole::Caste,
    BiologicalRole::Thermal,
    BiologicalRole::Young,
    BiologicalRole::Memory,
];

/// The jobs: an embedded workload, its input, and a check of the accepted
/// output where one is cheap to make.
struct DemoJob {
    workload: &'static str,
    input: Vec<u8>,
    expect: Option<Vec<u8>>,
}

fn jobs() -> Vec<DemoJob> {
    let hello = b"hello from the biop2p demo\n".to_vec();
    vec![
        DemoJob {
            workload: "echo",
            input: hello.clone(),
            expect: Some(hello),
        },
        DemoJob {
            workload: "matmul",
            input: 96u32.to_le_bytes().to_vec(),
            expect: None,
        },
        DemoJob {
            workload: "mlp",
            input: br#"{"seed":7,"dataset":"spirals","samples":200,"epochs":60,"hidden":16}"#
                .to_vec(),
            expect: None,
        },
    ]
}

/// Runs the demo in `root` (hosts' and the submitter's data dirs): starts
/// the hosts, runs the jobs, stops the hosts, and reads the ledger back
/// from every party's own store. `say` gets the human-readable lines as
/// they happen.
pub async fn run(
    cfg: &DemoConfig,
    root: &Path,
    mut say: impl FnMut(&str),
) -> Result<DemoReport, DemoError> {
    if cfg.hosts == 0 || cfg.hosts > 12 {
        return Err(DemoError::Invalid(format!("{} hosts: 1 to 12", cfg.hosts)));
    }
    if cfg.faulty > cfg.hosts {
        return Err(DemoError::Invalid(format!(
            "{} faulty hosts is more than {} hosts",
            cfg.faulty, cfg.hosts
        )));
    }
    match cfg.replicas {
        Some(r) if r == 0 || r > cfg.hosts => {
            return Err(DemoError::Invalid(format!(
                "{r} replicas needs 1 to {} (the hosts)",
                cfg.hosts
            )));
        }
        None if cfg.hosts < ADAPTIVE_MIN_HOSTS => {
            return Err(DemoError::Invalid(format!(
                "adaptive replication needs at least {ADAPTIVE_MIN_HOSTS} hosts, not {}",
                cfg.hosts
            )));
        }
        _ => {}
    }
    let say: &mut dyn FnMut(&str) = &mut say;
    let swarm = format!("demo-{:016x}", rand::random::<u64>());
    say(&format!(
        "starting {} host(s) on loopback in {} (swarm {swarm})",
        cfg.hosts,
        root.display()
    ));
    let nodes = start_hosts(cfg, root, &swarm).await?;
    let result = match cfg.replicas {
        Some(r) => drive(cfg, &nodes, &swarm, r, root, say).await,
        None => drive_adaptive(cfg, &nodes, &swarm, root, say).await,
    };
    for n in &nodes {
        n.stop().await;
    }
    let (ok, mut report, spent) = result?;
    // The ledger, read back from every party's own store once the hosts
    // have stopped (their databases closed): the sum is computed from the
    // stores, not from the submitter's arithmetic.
    let faulty: Vec<bool> = (0..cfg.hosts)
        .map(|i| i >= cfg.hosts - cfg.faulty)
        .collect();
    say("
ledger (from each party's own store):");
    let mut hosts_json = Vec::new();
    let mut sum = i128::from(spent.net);
    for (i, n) in nodes.iter().enumerate() {
        let store = HostStore::open(&root.join(format!("host{i}")).join("db"))?;
        let v = ledger::host_view(&store)?;
        drop(store);
        sum += i128::from(v.net);
        let entries: usize = v.counterparties.iter().map(|c| c.entries.len()).sum();
        let unaccepted: u64 = v.counterparties.iter().map(|c| c.unaccepted).sum();
        say(&format!(
            "  {} earned {:>6} in {:>3} settled entries; {:>5} unaccepted{}",
            short(&n.peer_id()),
            v.net,
            entries,
            unaccepted,
            if faulty[i] { "  (faulty)" } else { "" }
        ));
        hosts_json.push(serde_json::json!({
            "peer_id": n.peer_id().to_string(), "earned": v.net, "entries": entries,
            "unaccepted": unaccepted, "faulty": faulty[i],
        }));
    }
    say(&format!(
        "  submitter spent {} in {} entries; sum over every party's balance: {sum}{}",
        -spent.net,
        spent
            .counterparties
            .iter()
            .map(|c| c.entries.len())
            .sum::<usize>(),
        if sum == 0 {
            " (balanced)"
        } else {
            " (NOT balanced)"
        }
    ));
    report["ledger"] = serde_json::json!({
        "hosts": hosts_json,
        "submitter_spent": -spent.net,
        "sum": sum as i64,
    });
    let ok = ok && sum == 0;
    Ok(DemoReport { ok, json: report })
}

/// A peer id's last 8 characters, for the report.
fn short(p: &PeerId) -> String {
    let s = p.to_string();
    format!("…{}", &s[s.len() - 8..])
}

/// Starts the hosts, each bootstrapped from the first.
async fn start_hosts(cfg: &DemoConfig, root: &Path, swarm: &str) -> Result<Vec<Node>, DemoError> {
    let mut nodes: Vec<Node> = Vec::new();
    for i in 0..cfg.hosts {
        let mut config = NodeConfig::default();
        config.network.mdns = false;
        config.network.swarm = swarm.to_string();
        config.network.advert_interval_secs = 1;
        config.market.price_per_mfuel = 1 + (i as u64 % 3);
        config.resources.cpu_allocation = 0.5;
        let mut b = Node::builder()
            .with_config(config)
            .with_initial_role(ROLES[i % ROLES.len()])
            .with_data_dir(root.join(format!("host{i}")))
            .with_listen(["/ip4/127.0.0.1/tcp/0".parse().expect("addr")])
            .faulty(i >= cfg.hosts - cfg.faulty);
        if let Some(first) = nodes.first() {
            b = b.with_bootstrap(&first.addrs()[0]);
        }
        let node = b
            .build()
            .await
            .map_err(|source| DemoError::Host { index: i, source })?;
        node.start()
            .await
            .map_err(|source| DemoError::Host { index: i, source })?;
        nodes.push(node);
    }
    Ok(nodes)
}

/// Says which hosts run (the last `faulty` of them marked with `mark`) and
/// returns the faulty ones' peer ids.
fn list_hosts(
    cfg: &DemoConfig,
    nodes: &[Node],
    mark: &str,
    say: &mut dyn FnMut(&str),
) -> Vec<PeerId> {
    let faulty: Vec<PeerId> = nodes[cfg.hosts - cfg.faulty..]
        .iter()
        .map(Node::peer_id)
        .collect();
    for n in nodes {
        let tag = if faulty.contains(&n.peer_id()) {
            mark
        } else {
            ""
        };
        say(&format!(
            "  host {} {:<8} price {}/Mfuel{tag}  {}",
            short(&n.peer_id()),
            n.role().to_string(),
            n.config().market.price_per_mfuel,
            n.addrs()[0]
        ));
    }
    faulty
}

/// The submitter's client and the hosts it discovered. It knows one
/// host's address and learns the rest from adverts gossiped through it.
async fn submitter_client(
    id: Identity,
    swarm: &str,
    nodes: &[Node],
) -> Result<(Client, Vec<(PeerId, Advert)>), DemoError> {
    let mut net = NetworkConfig::direct();
    net.swarm = swarm.to_string();
    net.bootstrap = vec![nodes[0].addrs()[0].to_string()];
    let mut client = Client::new(id, &net, 16 << 20).await?;
    let found = client
        .discover(
            nodes.len(),
            |_| true,
            Duration::from_millis(300),
            Duration::from_secs(20),
        )
        .await;
    Ok((client, found))
}

/// Fixed mode: each embedded workload on `replicas` hosts ranked by the
/// Thermal trails, accepted on a strict majority; the majority is paid.
async fn drive(
    cfg: &DemoConfig,
    nodes: &[Node],
    swarm: &str,
    replicas: usize,
    root: &Path,
    say: &mut dyn FnMut(&str),
) -> Result<(bool, serde_json::Value, LedgerView), DemoError> {
    let store = SubmitterStore::open(&root.join("submitter").join("submitter"))?;
    let faulty = list_hosts(cfg, nodes, "  (faulty)", say);

    // The submitter knows one address; everything else it learns from
    // adverts gossiped through it.
    let (mut client, found) =
        submitter_client(Identity::from_seed(rand::random()), swarm, nodes).await?;
    say(&format!(
        "submitter discovered {} host(s) from their adverts (bootstrap: host {})",
        found.len(),
        short(&nodes[0].peer_id())
    ));
    if found.len() < replicas {
        return Err(DemoError::TooFew {
            found: found.len(),
            needed: replicas,
        });
    }
    let roles: std::collections::HashMap<PeerId, Advert> = found.iter().cloned().collect();

    // Thermal trails: hosts that agree with the majority are reinforced,
    // a host caught lying is halved and sinks in the ranking.
    let mut trails = Trails::new();
    let mut all_ok = true;
    let mut jobs_json = Vec::new();
    for j in jobs() {
        let module = workloads::get(j.workload)
            .expect("embedded workload")
            .bytes
            .to_vec();
        let params = JobParams {
            max_price_per_mfuel: 10,
            ..JobParams::default()
        };
        let jobs: Vec<_> = (0..replicas + 2)
            .map(|_| client.make_job(&module, &j.input, &params))
            .collect();
        let mut job = jobs[0].clone();
        let spec = job.verify().expect("own job verifies");
        let cands: Vec<Candidate> = trails
            .rank(client.known_hosts(), &spec, unix_now_ms())
            .into_iter()
            .map(|(p, ad)| Candidate::Host(p, Box::new(ad)))
            .collect();
        let inline = placement::inline_blobs(&[&module, &j.input], 512 << 10);
        client.offer_blob(Arc::new(module));
        client.offer_blob(Arc::new(j.input.clone()));
        let plan = Plan {
            refill_from_adverts: true,
            replicas,
            max_replacements: 2,
            deadline: Duration::from_secs(120),
        };
        say(&format!(
            "\njob {} ({}): {replicas} replica(s)",
            &proto::hex(&job.id())[..12],
            j.workload
        ));
        let mut notes = Vec::new();
        let report =
            placement::run_replicas(&mut client, jobs, &inline, cands, &plan, &mut trails, |m| {
                notes.push(m.to_string())
            })
            .await?;
        let winner = report.majority(replicas);
        if let Some((h, _)) = winner
            && let Some(w) = report.answers.iter().find(|x| x.output_hash == h)
        {
            job = w.job.clone();
            // Pay the majority's replicas (at the fuel they agree on), and
            // nobody else.
            let answers: Vec<_> = report
                .answers
                .iter()
                .map(|x| (x.peer, x.job.clone(), x.response.clone()))
                .collect();
            submitter::settle_majority(&mut client, &store, &answers, &h).await?;
        }
        let mut rows = Vec::new();
        for ans in &report.answers {
            let (body, out_len) = match &ans.response {
                JobResponse::Done {
                    receipt, output, ..
                } => (receipt.verify().ok(), output.len()),
                JobResponse::Failed { receipt, .. } => (receipt.verify().ok(), 0),
                _ => (None, 0),
            };
            let Some(body) = body else { continue };
            let agrees = Some(ans.output_hash) == winner.map(|w| w.0);
            let role = roles
                .get(&ans.peer)
                .map(|ad| ad.roles.join(","))
                .unwrap_or_default();
            say(&format!(
                "  {} {:<8} fuel {:>10}  wall {:>8.2} ms  price {:>3}  output {} ({} B)  receipt verified  {}",
                short(&ans.peer),
                role,
                body.fuel_used,
                body.wall_us as f64 / 1000.0,
                body.price,
                &proto::hex(&ans.output_hash)[..12],
                out_len,
                if agrees {
                    "agrees"
                } else {
                    "DISAGREES: outvoted"
                }
            ));
            rows.push(serde_json::json!({
                "host": ans.peer.to_string(), "role": role, "fuel_used": body.fuel_used,
                "wall_ms": body.wall_us as f64 / 1000.0, "price": body.price,
                "output_hash": proto::hex(&ans.output_hash), "agrees": agrees,
            }));
        }
        for m in &report.missing {
            say(&format!("  {} gave no result: {}", m.host, m.error));
        }
        // Every lie must be caught, and the accepted output must be right.
        let disagreeing: Vec<PeerId> = report
            .disagreeing(winner.map(|w| w.0))
            .iter()
            .map(|x| x.peer)
            .collect();
        let lies_caught = report
            .answers
            .iter()
            .filter(|x| faulty.contains(&x.peer))
            .all(|x| disagreeing.contains(&x.peer));
        let accepted = winner.and_then(|(h, _)| {
            report
                .answers
                .iter()
                .find(|x| x.output_hash == h)
                .map(|x| x.response.clone())
        });
        let output_ok = match (&accepted, &j.expect) {
            (Some(JobResponse::Done { output, .. }), Some(want)) => output == want,
            (Some(JobResponse::Done { .. }), None) => true,
            _ => false,
        };
        let ok = winner.is_some() && lies_caught && output_ok;
        all_ok &= ok;
        match winner {
            Some((h, c)) => say(&format!(
                "  accepted output {} on {c} of {replicas} replicas{}",
                &proto::hex(&h)[..12],
                if disagreeing.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; disagreeing host(s): {}",
                        disagreeing.iter().map(short).collect::<Vec<_>>().join(", ")
                    )
                }
            )),
            None => say("  no output reached a strict majority"),
        }
        jobs_json.push(serde_json::json!({
            "workload": j.workload, "job_id": proto::hex(&job.id()),
            "accepted_replicas": winner.map_or(0, |w| w.1),
            "output_hash": winner.map(|w| proto::hex(&w.0)),
            "replicas": rows,
            "disagreeing": disagreeing.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
            "missing": report.missing, "replacements": report.replacements,
            "notes": notes, "verified": ok,
        }));
    }
    say("\nThermal trails after the run (1.0 = untried):");
    for n in nodes {
        say(&format!(
            "  {} {:<8} {:.3}",
            short(&n.peer_id()),
            n.role().to_string(),
            trails.level(&n.peer_id(), unix_now_ms())
        ));
    }
    let report = serde_json::json!({
        "hosts": nodes.iter().map(|n| serde_json::json!({
            "trail": trails.level(&n.peer_id(), unix_now_ms()),
            "peer_id": n.peer_id().to_string(), "role": n.role().to_string(),
            "price_per_mfuel": n.config().market.price_per_mfuel,
            "faulty": faulty.contains(&n.peer_id()),
            "addr": n.addrs().first().map(|x| x.to_string()),
        })).collect::<Vec<_>>(),
        "discovered": found.len(),
        "jobs": jobs_json,
        "verified": all_ok,
    });
    Ok((all_ok, report, ledger::submitter_view(&store)?))
}

/// Adaptive mode: the submitter's trust coordinator runs `jobs` jobs; the
/// report counts wrong accepted outputs against honest ones computed here.
async fn drive_adaptive(
    cfg: &DemoConfig,
    nodes: &[Node],
    swarm: &str,
    root: &Path,
    say: &mut dyn FnMut(&str),
) -> Result<(bool, serde_json::Value, LedgerView), DemoError> {
    use super::submitter::{Submitter, SubmitterConfig, TaskInput, TaskStatus};

    let faulty = list_hosts(cfg, nodes, "  (faulty: colluding)", say);
    let state = root.join("submitter");
    let (mut client, found) =
        submitter_client(Identity::load_or_create(&state)?, swarm, nodes).await?;
    let mut hosts = Vec::new();
    for (p, ad) in &found {
        client.connect_host(*p, ad).await?;
        hosts.push((*p, ad.fuel_per_sec));
    }
    say(&format!(
        "submitter discovered {} host(s) from their adverts; adaptive replication by the trust coordinator",
        found.len()
    ));
    let store = std::sync::Arc::new(SubmitterStore::open(&state.join("submitter"))?);
    let config = SubmitterConfig {
        deadline: Duration::from_secs(120),
        sandbox_dir: Some(state.join("sandbox")),
        ..SubmitterConfig::default()
    };
    let mut s = Submitter::new(client, store.clone(), config)?;
    s.join(hosts)?;
    if let Some(n) = s.diversity_note() {
        say(n);
    }
    // Small real jobs: echo with distinct inputs, every fifth a matmul.
    let echo = std::sync::Arc::new(workloads::get("echo").expect("embedded").bytes.to_vec());
    let matmul = std::sync::Arc::new(workloads::get("matmul").expect("embedded").bytes.to_vec());
    let params = JobParams {
        max_price_per_mfuel: 10,
        ..JobParams::default()
    };
    let tasks: Vec<TaskInput> = (0..cfg.jobs)
        .map(|i| {
            let (module, input) = if i % 5 == 4 {
                (matmul.clone(), (16 + i % 32).to_le_bytes().to_vec())
            } else {
                (echo.clone(), format!("demo job {i}\n").into_bytes())
            };
            TaskInput {
                module,
                input: std::sync::Arc::new(input),
                params: params.clone(),
            }
        })
        .collect();
    // The honest outputs, computed here to judge the run (not used by the
    // coordinator: it only knows what hosts answer).
    let sandbox = super::open_sandbox(&state.join("reference"))?;
    let honest: Vec<Option<Vec<u8>>> = tasks
        .iter()
        .map(|t| {
            let mut task = crate::sandbox::Task::new(
                crate::sandbox::WasmModule::new(t.module.to_vec()),
                t.input.to_vec(),
            );
            task.limits.fuel = t.params.fuel;
            sandbox.run(&task).outcome.ok()
        })
        .collect();
    let out = s.run(tasks, |m| say(m)).await?;
    let mut wrong = 0;
    let mut accepted = 0;
    for o in &out {
        if let TaskStatus::Accepted { response, .. } = &o.status {
            accepted += 1;
            let got = match &**response {
                JobResponse::Done { output, .. } => Some(output.clone()),
                _ => None,
            };
            if got != honest[o.index] {
                wrong += 1;
            }
        }
    }
    let summary = s.summary();
    let per_job = summary.dispatched as f64 / out.len().max(1) as f64;
    let states: std::collections::HashMap<String, String> = s
        .hosts()
        .into_iter()
        .map(|h| (h.peer_id, h.state))
        .collect();
    let quarantined: Vec<String> = states
        .iter()
        .filter(|(_, v)| *v == "quarantined")
        .map(|(k, _)| k.clone())
        .collect();
    say("\nhosts after the run:");
    for n in nodes {
        say(&format!(
            "  {} {:<12}{}",
            short(&n.peer_id()),
            states
                .get(&n.peer_id().to_string())
                .map_or("unknown", |s| s),
            if faulty.contains(&n.peer_id()) {
                "  (faulty)"
            } else {
                ""
            }
        ));
    }
    say(&format!(
        "\n{accepted} of {} job(s) accepted; quarantined: {}; canaries sent: {} ({} computed locally, {} fuel, {} ms); replicas per job: {per_job:.2} (canaries included)\n{wrong} wrong accepted",
        out.len(),
        if quarantined.is_empty() {
            "none".to_string()
        } else {
            quarantined
                .iter()
                .map(|p| short(&p.parse().expect("peer id")))
                .collect::<Vec<_>>()
                .join(", ")
        },
        summary.canaries,
        summary.local_canary_runs,
        summary.local_canary_fuel,
        summary.local_canary_ms,
    ));
    let ok = wrong == 0;
    let report = serde_json::json!({
        "hosts": nodes.iter().map(|n| serde_json::json!({
            "peer_id": n.peer_id().to_string(), "role": n.role().to_string(),
            "price_per_mfuel": n.config().market.price_per_mfuel,
            "faulty": faulty.contains(&n.peer_id()),
            "state": states.get(&n.peer_id().to_string()),
            "addr": n.addrs().first().map(|x| x.to_string()),
        })).collect::<Vec<_>>(),
        "discovered": found.len(),
        "jobs": out.len(),
        "accepted": accepted,
        "wrong_accepted": wrong,
        "quarantined": quarantined,
        "canaries": summary.canaries,
        "local_canary_runs": summary.local_canary_runs,
        "replicas_per_job": per_job,
        "verified": ok,
    });
    Ok((ok, report, ledger::submitter_view(&store)?))
}
