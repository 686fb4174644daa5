//! `biop2p demo`: a whole swarm on this machine, end to end.
//!
//! Starts N hosts on loopback (each with its own data dir in a temporary
//! folder, its own role and price), lets them find each other through a
//! bootstrap host and their gossiped adverts, then submits the embedded
//! workloads as a submitter would. By default (4 hosts or more) the
//! submitter's trust coordinator decides replication (adaptive: newcomers
//! checked against trusted hosts, trusted hosts spot-checked, canaries,
//! quarantine); with `--replicas R` each job runs on R replicas and is
//! accepted on a strict majority. `--faulty K` makes K hosts lie, all the
//! same way (they collude); the demo passes only if no wrong output was
//! accepted.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use biop2p::config::NetworkConfig;
use biop2p::identity::Identity;
use biop2p::node::client::JobParams;
use biop2p::node::host::unix_now_ms;
use biop2p::node::ledger::{self, LedgerView};
use biop2p::node::placement::{self, Candidate, Plan};
use biop2p::node::submitter;
use biop2p::node::trails::Trails;
use biop2p::node::{Client, Node};
use biop2p::proto::{self, Advert, JobResponse};
use biop2p::store::{HostStore, SubmitterStore};
use biop2p::{BiologicalRole, NodeConfig, workloads};
use libp2p::PeerId;

use super::common;

/// Run a local swarm and real workloads on it, with replicas.
#[derive(clap::Args)]
pub struct Args {
    /// Hosts to start.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=12))]
    hosts: u32,
    /// Hosts that return wrong outputs, all the same wrong output (they
    /// collude); they must be caught and quarantined.
    #[arg(long, default_value_t = 0)]
    faulty: u32,
    /// Fixed-majority mode: this many replicas per job, accepted on a
    /// strict majority. Without it the trust coordinator decides (adaptive
    /// replication, canaries, quarantine).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=12))]
    replicas: Option<u32>,
    /// Jobs to run in adaptive mode (small echo and matmul jobs).
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    jobs: u32,
    /// One JSON object at the end instead of the report.
    #[arg(long)]
    json: bool,
    /// Federated training of the digits network on 5 hosts (10 rounds),
    /// FedAvg beside the robust FedMedian; needs scripts/fetch-ai-data.sh.
    #[arg(long, conflicts_with_all = ["faulty", "replicas", "jobs"])]
    federated: bool,
    /// With --federated: this many hosts poison (return sign-flipped,
    /// scaled weights).
    #[arg(long, default_value_t = 0, requires = "federated", value_parser = clap::value_parser!(u32).range(0..=2))]
    poison: u32,
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

pub fn execute(a: Args) -> Result<ExitCode> {
    if a.federated {
        let rt = tokio::runtime::Runtime::new()?;
        return rt.block_on(federated(a));
    }
    if a.faulty > a.hosts {
        bail!("--faulty {} is more than --hosts {}", a.faulty, a.hosts);
    }
    let mut a = a;
    if a.replicas.is_none() && a.hosts < 4 {
        // Four untried hosts are what it takes to confirm an answer.
        eprintln!(
            "note: adaptive replication needs at least 4 hosts; with {} the demo runs fixed majorities of {}",
            a.hosts,
            a.hosts.min(3)
        );
        a.replicas = Some(a.hosts.min(3));
    }
    let replicas = a.replicas.unwrap_or(0);
    if replicas > a.hosts {
        bail!("--replicas {replicas} needs at least that many --hosts");
    }
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(run(a, replicas as usize))
}

/// `demo --federated`: prints the rounds and receipts, or one JSON line;
/// exit 0 only when the robust model reaches its target.
async fn federated(a: Args) -> Result<ExitCode> {
    use biop2p::ai::federated::{self, FederatedConfig};
    let digits = biop2p::ai::digits::Digits::load()?;
    let cfg = FederatedConfig {
        poison: a.poison as usize,
        ..FederatedConfig::default()
    };
    let root = tempfile::tempdir()?;
    say(
        a.json,
        &format!(
            "federated digits: {} hosts ({} poisoning), {} rounds, {} training / {} test samples",
            cfg.hosts,
            cfg.poison,
            cfg.rounds,
            digits.train.len(),
            digits.test.len()
        ),
    );
    let r = federated::run(&cfg, &digits, root.path(), |l| say(a.json, l)).await?;
    if a.json {
        common::print_line(&serde_json::to_string(&r)?)?;
    } else {
        println!("\nreceipts (verified):");
        for x in &r.receipts {
            println!(
                "  round {:>2} {:<9} shard {}{} host {} job {} output {} fuel {} price {} data {}",
                x.round,
                x.model,
                x.shard,
                if x.replica { " (replica)" } else { "" },
                short_str(&x.host),
                &x.job_id[..12],
                &x.output_hash[..12],
                x.fuel_used,
                x.price,
                x.data_hashes
                    .iter()
                    .map(|h| &h[..12])
                    .collect::<Vec<_>>()
                    .join(",")
            );
        }
        println!(
            "\nfinal test accuracy: {} {:.2}%, FedAvg {:.2}%; replicas bit-identical {:.0}% ({} replicated tasks, {:.0}% of those on honest hosts); caught by replication: {}",
            r.aggregator,
            r.final_accuracy_robust * 100.0,
            r.final_accuracy_fedavg * 100.0,
            r.replicas_identical * 100.0,
            r.replicated_tasks,
            r.replicas_identical_honest * 100.0,
            if r.caught.is_empty() {
                "nobody".to_string()
            } else {
                r.caught
                    .iter()
                    .map(|p| short_str(p))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        );
        if r.target_reached {
            println!(
                "the robust model reached its target of {:.0}%",
                cfg.target * 100.0
            );
        } else {
            println!(
                "NOT reached: the robust model's target is {:.0}%",
                cfg.target * 100.0
            );
        }
    }
    Ok(if r.target_reached {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn short_str(p: &str) -> String {
    format!("…{}", &p[p.len().saturating_sub(8)..])
}

fn say(json: bool, line: &str) {
    if !json {
        println!("{line}");
    }
}

fn short(p: &PeerId) -> String {
    let s = p.to_string();
    format!("…{}", &s[s.len() - 8..])
}

async fn start_hosts(a: &Args, root: &std::path::Path, swarm: &str) -> Result<Vec<Node>> {
    let mut nodes: Vec<Node> = Vec::new();
    for i in 0..a.hosts as usize {
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
            .faulty(i >= (a.hosts - a.faulty) as usize);
        if let Some(first) = nodes.first() {
            b = b.with_bootstrap(&first.addrs()[0]);
        }
        let node = b.build().await?;
        node.start()
            .await
            .with_context(|| format!("cannot start host {i}"))?;
        nodes.push(node);
    }
    Ok(nodes)
}

async fn run(a: Args, replicas: usize) -> Result<ExitCode> {
    let root = tempfile::tempdir()?;
    let swarm = format!("demo-{:016x}", rand::random::<u64>());
    say(
        a.json,
        &format!(
            "starting {} host(s) on loopback in {} (swarm {swarm})",
            a.hosts,
            root.path().display()
        ),
    );
    let nodes = start_hosts(&a, root.path(), &swarm).await?;
    let result = if a.replicas.is_some() {
        drive(&a, &nodes, &swarm, replicas, root.path()).await
    } else {
        drive_adaptive(&a, &nodes, &swarm, root.path()).await
    };
    for n in &nodes {
        n.stop().await;
    }
    let (ok, mut report, spent) = result?;
    // The ledger, read back from every party's own store once the hosts
    // have stopped (their databases closed): the sum is computed from the
    // stores, not from the submitter's arithmetic.
    let faulty: Vec<bool> = (0..a.hosts).map(|i| i >= a.hosts - a.faulty).collect();
    say(
        a.json,
        "
ledger (from each party's own store):",
    );
    let mut hosts_json = Vec::new();
    let mut sum = i128::from(spent.net);
    for (i, n) in nodes.iter().enumerate() {
        let store = HostStore::open(&root.path().join(format!("host{i}")).join("db"))
            .with_context(|| format!("cannot open host {i}'s ledger"))?;
        let v = ledger::host_view(&store)?;
        drop(store);
        sum += i128::from(v.net);
        let entries: usize = v.counterparties.iter().map(|c| c.entries.len()).sum();
        let unaccepted: u64 = v.counterparties.iter().map(|c| c.unaccepted).sum();
        say(
            a.json,
            &format!(
                "  {} earned {:>6} in {:>3} settled entries; {:>5} unaccepted{}",
                short(&n.peer_id()),
                v.net,
                entries,
                unaccepted,
                if faulty[i] { "  (faulty)" } else { "" }
            ),
        );
        hosts_json.push(serde_json::json!({
            "peer_id": n.peer_id().to_string(), "earned": v.net, "entries": entries,
            "unaccepted": unaccepted, "faulty": faulty[i],
        }));
    }
    say(
        a.json,
        &format!(
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
        ),
    );
    report["ledger"] = serde_json::json!({
        "hosts": hosts_json,
        "submitter_spent": -spent.net,
        "sum": sum as i64,
    });
    let ok = ok && sum == 0;
    if a.json {
        common::print_line(&report.to_string())?;
    } else if ok && a.replicas.is_none() {
        println!("every accepted output is the honest one");
    } else if ok {
        println!("\nall jobs verified: receipts signed, outputs agreed by a strict majority");
    } else {
        println!("\nNOT verified: see above");
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Prints the hosts (the last `--faulty` of them marked with `mark`) and
/// returns the faulty ones' peer ids.
fn list_hosts(a: &Args, nodes: &[Node], mark: &str) -> Vec<PeerId> {
    let faulty: Vec<PeerId> = nodes[(a.hosts - a.faulty) as usize..]
        .iter()
        .map(Node::peer_id)
        .collect();
    for n in nodes {
        let tag = if faulty.contains(&n.peer_id()) {
            mark
        } else {
            ""
        };
        say(
            a.json,
            &format!(
                "  host {} {:<8} price {}/Mfuel{tag}  {}",
                short(&n.peer_id()),
                n.role().to_string(),
                n.config().market.price_per_mfuel,
                n.addrs()[0]
            ),
        );
    }
    faulty
}

/// The submitter's network: it knows one host's address and learns the
/// rest from adverts gossiped through it.
fn submitter_net(swarm: &str, nodes: &[Node]) -> NetworkConfig {
    let mut net = NetworkConfig::direct();
    net.swarm = swarm.to_string();
    net.bootstrap = vec![nodes[0].addrs()[0].to_string()];
    net
}

async fn drive(
    a: &Args,
    nodes: &[Node],
    swarm: &str,
    replicas: usize,
    root: &std::path::Path,
) -> Result<(bool, serde_json::Value, LedgerView)> {
    let store = SubmitterStore::open(&root.join("submitter").join("submitter"))?;
    let faulty = list_hosts(a, nodes, "  (faulty)");

    // The submitter knows one address; everything else it learns from
    // adverts gossiped through it.
    let net = submitter_net(swarm, nodes);
    let mut client = Client::new(Identity::from_seed(rand::random()), &net, 16 << 20).await?;
    let found = client
        .discover(
            nodes.len(),
            |_| true,
            Duration::from_millis(300),
            Duration::from_secs(20),
        )
        .await;
    say(
        a.json,
        &format!(
            "submitter discovered {} host(s) from their adverts (bootstrap: host {})",
            found.len(),
            short(&nodes[0].peer_id())
        ),
    );
    if found.len() < replicas {
        bail!("only {} host(s) discovered, {replicas} needed", found.len());
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
        say(
            a.json,
            &format!(
                "\njob {} ({}): {replicas} replica(s)",
                &proto::hex(&job.id())[..12],
                j.workload
            ),
        );
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
            say(
                a.json,
                &format!(
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
                ),
            );
            rows.push(serde_json::json!({
                "host": ans.peer.to_string(), "role": role, "fuel_used": body.fuel_used,
                "wall_ms": body.wall_us as f64 / 1000.0, "price": body.price,
                "output_hash": proto::hex(&ans.output_hash), "agrees": agrees,
            }));
        }
        for m in &report.missing {
            say(a.json, &format!("  {} gave no result: {}", m.host, m.error));
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
            Some((h, c)) => say(
                a.json,
                &format!(
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
                ),
            ),
            None => say(a.json, "  no output reached a strict majority"),
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
    say(a.json, "\nThermal trails after the run (1.0 = untried):");
    for n in nodes {
        say(
            a.json,
            &format!(
                "  {} {:<8} {:.3}",
                short(&n.peer_id()),
                n.role().to_string(),
                trails.level(&n.peer_id(), unix_now_ms())
            ),
        );
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

/// Adaptive mode: the submitter's trust coordinator runs `--jobs` jobs; the
/// report counts wrong accepted outputs against honest ones computed here.
async fn drive_adaptive(
    a: &Args,
    nodes: &[Node],
    swarm: &str,
    root: &std::path::Path,
) -> Result<(bool, serde_json::Value, LedgerView)> {
    use biop2p::node::submitter::{Submitter, SubmitterConfig, TaskInput, TaskStatus};

    let faulty = list_hosts(a, nodes, "  (faulty: colluding)");
    let net = submitter_net(swarm, nodes);
    let state = root.join("submitter");
    let mut client = Client::new(Identity::load_or_create(&state)?, &net, 16 << 20).await?;
    let found = client
        .discover(
            nodes.len(),
            |_| true,
            Duration::from_millis(300),
            Duration::from_secs(20),
        )
        .await;
    let mut hosts = Vec::new();
    for (p, ad) in &found {
        client.connect_host(*p, ad).await?;
        hosts.push((*p, ad.fuel_per_sec));
    }
    say(
        a.json,
        &format!(
            "submitter discovered {} host(s) from their adverts; adaptive replication by the trust coordinator",
            found.len()
        ),
    );
    let store = std::sync::Arc::new(SubmitterStore::open(&state.join("submitter"))?);
    let config = SubmitterConfig {
        deadline: Duration::from_secs(120),
        sandbox_dir: Some(state.join("sandbox")),
        ..SubmitterConfig::default()
    };
    let mut s = Submitter::new(client, store.clone(), config)?;
    s.join(hosts)?;
    if let Some(n) = s.diversity_note() {
        say(a.json, n);
    }
    // Small real jobs: echo with distinct inputs, every fifth a matmul.
    let echo = std::sync::Arc::new(workloads::get("echo").expect("embedded").bytes.to_vec());
    let matmul = std::sync::Arc::new(workloads::get("matmul").expect("embedded").bytes.to_vec());
    let params = JobParams {
        max_price_per_mfuel: 10,
        ..JobParams::default()
    };
    let tasks: Vec<TaskInput> = (0..a.jobs)
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
    let sandbox = biop2p::node::open_sandbox(&state.join("reference"))?;
    let honest: Vec<Option<Vec<u8>>> = tasks
        .iter()
        .map(|t| {
            let mut task = biop2p::sandbox::Task::new(
                biop2p::sandbox::WasmModule::new(t.module.to_vec()),
                t.input.to_vec(),
            );
            task.limits.fuel = t.params.fuel;
            sandbox.run(&task).outcome.ok()
        })
        .collect();
    let json = a.json;
    let out = s
        .run(tasks, |m| {
            if !json {
                println!("{m}")
            }
        })
        .await?;
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
    say(a.json, "\nhosts after the run:");
    for n in nodes {
        say(
            a.json,
            &format!(
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
            ),
        );
    }
    say(
        a.json,
        &format!(
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
        ),
    );
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
