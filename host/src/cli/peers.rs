//! `biop2p peers`: the hosts a swarm knows, with their latest adverts.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use biop2p::config::NetworkConfig;
use biop2p::identity::Identity;
use biop2p::node::{Client, PeerEntry, read_peers_file};
use libp2p::Multiaddr;

use super::common;

/// List known hosts and what they offer.
#[derive(clap::Args)]
pub struct Args {
    /// Read the list a running host keeps in this data dir, instead of
    /// joining the swarm.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Join through this peer (full multiaddr; repeatable).
    #[arg(long)]
    bootstrap: Vec<Multiaddr>,
    /// Do not look for hosts on the LAN.
    #[arg(long)]
    no_mdns: bool,
    /// Swarm name.
    #[arg(long, env = "BIOP2P_SWARM", default_value = "main")]
    swarm: String,
    /// Seconds to listen for adverts when joining.
    #[arg(long, default_value_t = 3.0)]
    wait: f64,
    /// A JSON array.
    #[arg(long)]
    json: bool,
}

pub fn execute(a: Args) -> Result<ExitCode> {
    let hosts = match &a.data_dir {
        Some(dir) => read_peers_file(dir).with_context(|| {
            format!(
                "cannot read the host list in {} (is a host running there?)",
                dir.display()
            )
        })?,
        None => join(&a)?,
    };
    if a.json {
        common::print_line(&serde_json::to_string(&hosts)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    if hosts.is_empty() {
        eprintln!("no hosts known");
        return Ok(ExitCode::SUCCESS);
    }
    common::print_line(&format!(
        "{:<54} {:>6} {:>7} {:>12} {:<10} {:<6} {:>7}",
        "PEER", "PRICE", "FREE", "FUEL/S", "ROLES", "REGION", "TTL_S"
    ))?;
    for h in &hosts {
        common::print_line(&format!(
            "{:<54} {:>6} {:>7} {:>12} {:<10} {:<6} {:>7.1}{}",
            h.peer_id,
            h.price_per_mfuel,
            format!("{}/{}", h.free_slots, h.workers),
            h.fuel_per_sec,
            h.roles.join(","),
            h.region,
            h.expires_in_ms as f64 / 1000.0,
            if h.is_self { "  (this host)" } else { "" }
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Joins the swarm with a throwaway identity and listens for adverts.
fn join(a: &Args) -> Result<Vec<PeerEntry>> {
    let mut net = NetworkConfig::direct();
    net.mdns = !a.no_mdns;
    net.bootstrap = a.bootstrap.iter().map(|b| b.to_string()).collect();
    net.swarm = a.swarm.clone();
    if !net.mdns && net.bootstrap.is_empty() {
        bail!("nothing to join through: give --bootstrap, allow mDNS, or read --data-dir");
    }
    if !(a.wait.is_finite() && a.wait > 0.0 && a.wait <= 600.0) {
        bail!("--wait must be in (0, 600] seconds");
    }
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let mut client = Client::new(Identity::from_seed(rand::random()), &net, 1 << 20).await?;
        client.listen_for(Duration::from_secs_f64(a.wait)).await;
        let mut hosts: Vec<PeerEntry> = client
            .known_hosts()
            .iter()
            .map(|(p, ad)| PeerEntry::new(p, ad, false))
            .collect();
        hosts.sort_by(|x, y| x.peer_id.cmp(&y.peer_id));
        Ok(hosts)
    })
}
