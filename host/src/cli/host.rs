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
    /// Test only: return wrong outputs (to exercise replica checks):
    /// `--faulty` or `--faulty colluding` lies on every job, the same way
    /// as every other faulty host; `--faulty sleeper=N` after N honest jobs.
    #[arg(long, hide = true, num_args = 0..=1, default_missing_value = "colluding")]
    faulty: Option<biop2p::node::faulty::Faulty>,
    /// Run without confinement (no Landlock, no seccomp): for debugging
    /// only. A sandbox escape would then get every right of this user.
    #[arg(long, env = "BIOP2P_NO_CONFINE")]
    no_confine: bool,
    /// Test only: once listening, try what an escaped guest would (read
    /// FILE, outside the data dir; run /bin/sh; open raw sockets), from a
    /// host thread and from a sandbox worker, and print what was let through.
    #[arg(long, hide = true, value_name = "FILE")]
    escape_probe: Option<PathBuf>,
}

pub fn execute(mut a: Args) -> Result<ExitCode> {
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
    // Confinement comes before the first thread (see biop2p::confine): the
    // data dir must exist to be a Landlock rule, and the config is read.
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create the data dir {}", data_dir.display()))?;
    let confined = if a.no_confine {
        tracing::warn!(
            "confinement is off (--no-confine): a sandbox escape would get every right of this user"
        );
        None
    } else {
        let report = biop2p::confine::confine_host(&data_dir).context(
            "cannot confine the host (`--no-confine` runs it unconfined, for debugging)",
        )?;
        Some(report)
    };
    let mut probe = a.escape_probe.is_some();
    if let Some(file) = a.escape_probe.take() {
        biop2p::confine::probe::arm(file, data_dir.clone());
    }
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let mut host = spawn_host(HostOptions {
            config,
            data_dir: data_dir.clone(),
            listen: a.listen,
            faulty: a.faulty.unwrap_or_default(),
        })
        .await
        .with_context(|| format!("cannot start the host (data dir {})", data_dir.display()))?;
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        loop {
            tokio::select! {
                ev = host.events.recv() => match ev {
                    Some(ev) => {
                        print_event(&ev, a.json)?;
                        if matches!(ev, HostEvent::Listening { .. }) {
                            if let Some(r) = &confined {
                                print_confined(r, a.json)?;
                            }
                            if std::mem::take(&mut probe) {
                                run_probe(a.json).await?;
                            }
                        }
                    }
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

fn print_confined(r: &biop2p::confine::Report, json: bool) -> Result<()> {
    if json {
        let mut v = serde_json::to_value(r)?;
        v["event"] = "confined".into();
        return common::print_line(&v.to_string());
    }
    common::print_line(&format!("confinement: {r}"))
}

/// The hidden escape probe: one line per attempt.
async fn run_probe(json: bool) -> Result<()> {
    let wait = std::time::Duration::from_secs(10);
    let attempts =
        tokio::task::spawn_blocking(move || biop2p::confine::probe::run_on_host(wait)).await?;
    for at in attempts {
        if json {
            let mut v = serde_json::to_value(&at)?;
            v["event"] = "escape_probe".into();
            common::print_line(&v.to_string())?;
        } else {
            let verdict = if at.allowed { "allowed" } else { "denied" };
            let why = at.error.as_deref().unwrap_or("");
            common::print_line(&format!(
                "escape probe ({}): {} {verdict} {why}",
                at.thread, at.attempt
            ))?;
        }
    }
    Ok(())
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
