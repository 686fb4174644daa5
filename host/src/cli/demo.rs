//! `biop2p demo`: a whole swarm on this machine, end to end. The swarm,
//! its jobs and its report are [`biop2p::node::demo`] (and
//! [`biop2p::ai::federated`] for `--federated`); this parses the flags and
//! prints. `--faulty K` makes K hosts lie, all the same way (they
//! collude); the demo exits non-zero if a wrong output was accepted.

use std::process::ExitCode;

use anyhow::{Result, bail};
use biop2p::node::demo::{self, ADAPTIVE_MIN_HOSTS, DemoConfig};

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

pub fn execute(a: Args) -> Result<ExitCode> {
    if a.federated {
        let rt = tokio::runtime::Runtime::new()?;
        return rt.block_on(federated(a));
    }
    if a.faulty > a.hosts {
        bail!("--faulty {} is more than --hosts {}", a.faulty, a.hosts);
    }
    let mut a = a;
    if a.replicas.is_none() && (a.hosts as usize) < ADAPTIVE_MIN_HOSTS {
        eprintln!(
            "note: adaptive replication needs at least {ADAPTIVE_MIN_HOSTS} hosts; with {} the demo runs fixed majorities of {}",
            a.hosts,
            a.hosts.min(3)
        );
        a.replicas = Some(a.hosts.min(3));
    }
    if let Some(r) = a.replicas
        && r > a.hosts
    {
        bail!("--replicas {r} needs at least that many --hosts");
    }
    let cfg = DemoConfig {
        hosts: a.hosts as usize,
        faulty: a.faulty as usize,
        replicas: a.replicas.map(|r| r as usize),
        jobs: a.jobs as usize,
    };
    let root = tempfile::tempdir()?;
    let rt = tokio::runtime::Runtime::new()?;
    let report = rt.block_on(demo::run(&cfg, root.path(), |l| say(a.json, l)))?;
    if a.json {
        common::print_line(&report.json.to_string())?;
    } else if report.ok && cfg.replicas.is_none() {
        println!("every accepted output is the honest one");
    } else if report.ok {
        println!("\nall jobs verified: receipts signed, outputs agreed by a strict majority");
    } else {
        println!("\nNOT verified: see above");
    }
    Ok(if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
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
