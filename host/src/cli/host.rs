//! `biop2p host`: the volunteer's daemon.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

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
    /// Serve the status page, `/metrics` and `/api` here (e.g.
    /// `127.0.0.1:7452`; overrides `[http] listen`).
    #[arg(long, value_name = "ADDR")]
    http: Option<std::net::SocketAddr>,
    /// Start paused: take no new work until resumed from the page or
    /// `POST /api/resume`.
    #[arg(long)]
    paused: bool,
    /// Take new work only this share of each duty period (overrides
    /// `[policy] duty_cycle`).
    #[arg(long, value_name = "FRACTION")]
    duty_cycle: Option<f64>,
    /// Take new work only while the load average (minus this host's own
    /// tasks) is below this (overrides `[policy] max_load_avg`).
    #[arg(long, value_name = "LOAD")]
    max_load: Option<f64>,
    /// Fuel lent per UTC day (overrides `[policy] daily_fuel_cap`).
    #[arg(long, value_name = "FUEL")]
    daily_fuel_cap: Option<u64>,
    /// Task time lent per UTC day, in seconds (overrides `[policy]
    /// daily_time_cap_secs`).
    #[arg(long, value_name = "SECS")]
    daily_time_cap: Option<u64>,
    /// Memory limits of all unfinished tasks together, e.g. `2GiB`
    /// (overrides `[policy] memory_cap_bytes`).
    #[arg(long, value_name = "BYTES", value_parser = common::parse_bytes)]
    memory_cap: Option<u64>,
    /// On SIGTERM, seconds running tasks get to finish (overrides
    /// `[service] stop_grace_secs`).
    #[arg(long, value_name = "SECS")]
    stop_grace: Option<u64>,
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
    if let Some(h) = a.http {
        config.http.listen = h.to_string();
    }
    let p = &mut config.policy;
    p.duty_cycle = a.duty_cycle.unwrap_or(p.duty_cycle);
    p.max_load_avg = a.max_load.unwrap_or(p.max_load_avg);
    p.daily_fuel_cap = a.daily_fuel_cap.unwrap_or(p.daily_fuel_cap);
    p.daily_time_cap_secs = a.daily_time_cap.unwrap_or(p.daily_time_cap_secs);
    p.memory_cap_bytes = a.memory_cap.unwrap_or(p.memory_cap_bytes);
    if let Some(g) = a.stop_grace {
        config.service.stop_grace_secs = g;
    }
    config.validate()?;
    // Before confinement: the notify socket may be outside the data dir.
    let notifier = biop2p::service::Notifier::from_env();
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
    let http_listen: Option<std::net::SocketAddr> = (!config.http.listen.is_empty())
        .then(|| config.http.listen.parse())
        .transpose()?;
    let grace = Duration::from_secs(config.service.stop_grace_secs);
    let mut facts = biop2p::http::HostFacts {
        peer_id: String::new(),
        addrs: Vec::new(),
        role: config.biological.primary_role.clone(),
        price_per_mfuel: config.market.price_per_mfuel,
        workers: config.resources.workers(),
        max_fuel: config.resources.max_fuel,
        max_memory_bytes: config.resources.max_memory_bytes,
    };
    rt.block_on(async move {
        let mut host = spawn_host(HostOptions {
            config,
            data_dir: data_dir.clone(),
            listen: a.listen,
            faulty: a.faulty.unwrap_or_default(),
        })
        .await
        .with_context(|| format!("cannot start the host (data dir {})", data_dir.display()))?;
        facts.peer_id = host.peer_id.to_string();
        facts.addrs = host.addrs.iter().map(ToString::to_string).collect();
        let control = host.control.clone();
        if a.paused {
            control.set_paused(true);
        }
        let sampler = control.spawn_load_sampler();
        let mut http = None;
        let mut events = std::mem::replace(&mut host.events, tokio::sync::mpsc::channel(1).1);
        if let Some(listen) = http_listen {
            let h = biop2p::http::start(
                biop2p::http::HttpOptions {
                    listen,
                    data_dir: data_dir.clone(),
                    control: control.clone(),
                    facts,
                },
                events,
            )
            .await
            .context("cannot start the status page (`[http] listen`, `--http`)")?;
            print_http(&h, &data_dir, a.json)?;
            http = Some(h);
            events = http
                .as_mut()
                .map(|h| std::mem::replace(&mut h.events, tokio::sync::mpsc::channel(1).1))
                .expect("just set");
        }
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        loop {
            tokio::select! {
                ev = events.recv() => match ev {
                    Some(ev) => {
                        print_event(&ev, a.json)?;
                        if matches!(ev, HostEvent::Listening { .. }) {
                            if let Some(r) = &confined {
                                print_confined(r, a.json)?;
                            }
                            if std::mem::take(&mut probe) {
                                run_probe(a.json).await?;
                            }
                            notifier.notify("READY=1");
                        }
                    }
                    None => break,
                },
                _ = tokio::signal::ctrl_c() => break,
                _ = term.recv() => {
                    drain(&control, &notifier, grace, &mut events, a.json).await?;
                    break;
                }
            }
        }
        tracing::info!("shutting down");
        sampler.abort();
        if let Some(h) = http {
            h.shutdown().await;
        }
        host.shutdown().await;
        Ok(ExitCode::SUCCESS)
    })
}

/// SIGTERM: no new work (adverts show no room, submissions are refused
/// `busy`), then wait for the accepted jobs, at most `grace`. Whatever is
/// still unfinished stays in the database and runs at the next start.
async fn drain(
    control: &biop2p::node::Control,
    notifier: &biop2p::service::Notifier,
    grace: Duration,
    events: &mut tokio::sync::mpsc::Receiver<HostEvent>,
    json: bool,
) -> Result<()> {
    control.drain();
    notifier.notify("STOPPING=1");
    let deadline = tokio::time::Instant::now() + grace;
    let left = control.unfinished();
    tracing::info!(
        unfinished = left,
        grace_secs = grace.as_secs(),
        "stopping: running tasks may finish"
    );
    if json {
        common::print_line(&serde_json::json!({"event": "stopping", "unfinished": left, "grace_secs": grace.as_secs()}).to_string())?;
    } else {
        common::print_line(&format!(
            "stopping: {left} unfinished job(s), grace {} s",
            grace.as_secs()
        ))?;
    }
    let mut poll = tokio::time::interval(Duration::from_millis(50));
    while control.unfinished() > 0 {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => {
                tracing::warn!(unfinished = control.unfinished(), "grace period over; the rest runs at the next start");
                break;
            }
            Some(ev) = events.recv() => print_event(&ev, json)?,
            _ = poll.tick() => {}
        }
    }
    while let Ok(ev) = events.try_recv() {
        print_event(&ev, json)?;
    }
    Ok(())
}

fn print_http(h: &biop2p::http::HttpHandle, data_dir: &std::path::Path, json: bool) -> Result<()> {
    let token_file = data_dir.join(biop2p::http::token::TOKEN_FILE);
    if json {
        return common::print_line(
            &serde_json::json!({
                "event": "http",
                "url": format!("http://{}/", h.addr),
                "token": h.token,
                "token_file": token_file,
            })
            .to_string(),
        );
    }
    common::print_line(&format!(
        "status page: http://{}/\ncontrol token: {} (in {})",
        h.addr,
        h.token,
        token_file.display()
    ))
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
        HostEvent::Accepted {
            job_id,
            submitter,
            via_relay,
            ..
        } => format!(
            "accepted {job_id} from {submitter}{}",
            if *via_relay { " (via relay)" } else { "" }
        ),
        HostEvent::Finished {
            job_id,
            status,
            fuel_used,
            wall_ms,
            price,
            ..
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
        HostEvent::NoteAccepted {
            job_id,
            seq,
            fuel,
            price,
        } => format!("debit note {seq} of {job_id} accepted: {fuel} fuel so far, {price} owed"),
        HostEvent::RoleSwitched { from, to, reason } => {
            format!("role: {from} -> {to} ({reason})")
        }
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
        HostEvent::Ledger {
            earned,
            entries,
            unaccepted,
        } => format!(
            "ledger: earned {earned} in {entries} settled entries; {unaccepted} not accepted yet"
        ),
        HostEvent::Reachability { status, .. } => format!("reachability: {status}"),
        HostEvent::Relay {
            action,
            peer,
            detail,
        } => format!("relay: {action} for {peer} {detail}"),
    };
    common::print_line(&line)
}
