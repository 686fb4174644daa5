//! `biop2p host`: the volunteer's daemon.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use biop2p::node::{HostEvent, HostOptions, spawn_host};
use libp2p::Multiaddr;

use super::common;

/// Run a host: lend this machine's CPU to the swarm.
#[derive(clap::Args)]
pub struct Args {
    /// Config file (default: DATA_DIR/biop2p.toml if present, else built-in
    /// defaults; `biop2p init` writes one).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Data directory: identity, database, blobs, compiled code.
    #[arg(long, env = "BIOP2P_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Listen address (repeatable); overrides the config.
    #[arg(long)]
    listen: Vec<Multiaddr>,
    /// A peer to join the swarm through (full multiaddr with /p2p/;
    /// repeatable); added to the config's `[network] bootstrap`.
    #[arg(long)]
    bootstrap: Vec<Multiaddr>,
    /// Do not look for hosts on the LAN (overrides `[network] mdns`).
    #[arg(long)]
    no_mdns: bool,
    /// Swarm name (overrides `[network] swarm`): only adverts of the same
    /// swarm are seen.
    #[arg(long, env = "BIOP2P_SWARM")]
    swarm: Option<String>,
    /// One JSON line per event.
    #[arg(long)]
    json: bool,
    /// Test only: return wrong outputs (to exercise replica checks).
    #[arg(long, hide = true)]
    faulty: bool,
}

pub fn execute(a: Args) -> Result<ExitCode> {
    let data_dir = common::data_dir(a.data_dir)?;
    let mut config = common::load_config(a.config.as_deref(), &data_dir)?;
    config
        .network
        .bootstrap
        .extend(a.bootstrap.iter().map(|b| b.to_string()));
    if a.no_mdns {
        config.network.mdns = false;
    }
    if let Some(s) = a.swarm {
        config.network.swarm = s;
    }
    config.validate()?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let mut host = spawn_host(HostOptions {
            config,
            data_dir: data_dir.clone(),
            listen: a.listen,
            faulty: a.faulty,
        })
        .await
        .with_context(|| format!("cannot start the host (data dir {})", data_dir.display()))?;
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        loop {
            tokio::select! {
                ev = host.events.recv() => match ev {
                    Some(ev) => print_event(&ev, a.json)?,
                    None => break,
                },
                _ = tokio::signal::ctrl_c() => break,
                _ = term.recv() => break,
            }
        }
        tracing::info!("shutting down");
        host.shutdown().await;
        Ok(ExitCode::SUCCESS)
    })
}

fn print_event(ev: &HostEvent, json: bool) -> Result<()> {
    if json {
        return common::print_line(&serde_json::to_string(ev)?);
    }
    let line = match ev {
        HostEvent::Listening {
            peer_id,
            addrs,
            fuel_per_sec,
        } => {
            let mut s =
                format!("peer id: {peer_id}\nfuel per second: {fuel_per_sec}\nlistening on:");
            for a in addrs {
                s.push_str(&format!("\n  {a}"));
            }
            s
        }
        HostEvent::Accepted { job_id, submitter } => format!("accepted {job_id} from {submitter}"),
        HostEvent::Finished {
            job_id,
            status,
            fuel_used,
            wall_ms,
            price,
        } => {
            format!("finished {job_id}: {status}, {fuel_used} fuel, {wall_ms:.3} ms, price {price}")
        }
        HostEvent::Refused {
            job_id,
            peer,
            reason,
            message,
        } => format!(
            "refused {} from {peer}: {reason}: {message}",
            job_id.as_deref().unwrap_or("a request")
        ),
        HostEvent::Recovered { jobs } => {
            format!("re-queued {jobs} unfinished job(s) from before a restart")
        }
        HostEvent::Discovered {
            peer_id,
            price_per_mfuel,
            roles,
        } => format!(
            "discovered host {peer_id} ({}, price {price_per_mfuel}/Mfuel)",
            roles.join(",")
        ),
        HostEvent::Forgotten { peer_id } => {
            format!("forgot host {peer_id}: its adverts stopped")
        }
    };
    common::print_line(&line)
}
