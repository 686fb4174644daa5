//! `biop2p status` and `biop2p result`: what became of a submitted job,
//! asking its host when the local record is not final.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use biop2p::config::NetworkConfig;
use biop2p::node::Client;
use biop2p::proto::{self, JobRequest};

use super::common;
use super::submit::{State, accept_single, finish, print_result, record_response};

/// Ask what became of a job.
#[derive(clap::Args)]
pub struct Args {
    /// The job id (or a unique prefix of it).
    job: String,
    /// One JSON line.
    #[arg(long)]
    json: bool,
    /// Write the output here instead of stdout (`result` only).
    #[arg(short = 'o', long)]
    output: Option<PathBuf>,
    /// Submitter state directory.
    #[arg(long, env = "BIOP2P_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// A peer to look for the job's host through, when it no longer
    /// answers at its recorded address (full multiaddr; repeatable).
    #[arg(long)]
    bootstrap: Vec<libp2p::Multiaddr>,
    /// Do not look for the job's host on the LAN.
    #[arg(long)]
    no_mdns: bool,
    /// Swarm name (its adverts are the ones listened to).
    #[arg(long, env = "BIOP2P_SWARM", default_value = "main")]
    swarm: String,
    /// Seconds to look for a host that moved before giving up.
    #[arg(long, default_value_t = 10)]
    find_secs: u64,
}

pub fn status(a: Args) -> Result<ExitCode> {
    run(a, false)
}

pub fn result(a: Args) -> Result<ExitCode> {
    run(a, true)
}

fn run(a: Args, wait: bool) -> Result<ExitCode> {
    let state = State::open(a.state_dir.clone())?;
    let ids = state.store.find(&a.job)?;
    let job_id = match ids.as_slice() {
        [one] => *one,
        [] => bail!("no job {:?} in this submitter's records", a.job),
        _ => bail!(
            "{:?} matches {} jobs; give more of the id",
            a.job,
            ids.len()
        ),
    };
    let mut record = state.store.get(&job_id)?.context("record vanished")?;
    let final_ = matches!(record.status.as_str(), "done" | "failed");
    if final_ {
        return if wait || record.status == "failed" {
            print_result(&record, a.json, a.output.as_deref())
        } else {
            print_status(&record, a.json)
        };
    }
    let spec = record
        .job
        .verify()
        .context("stored job no longer verifies")?;
    let addr: libp2p::Multiaddr = record.host_addr.parse().context("stored host address")?;
    let peer: libp2p::PeerId = record.host_peer.parse().context("stored host peer id")?;
    let mut net = NetworkConfig::direct();
    net.mdns = !a.no_mdns;
    net.swarm = a.swarm.clone();
    net.bootstrap = a.bootstrap.iter().map(|b| b.to_string()).collect();
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        // The recorded address first, without discovery (nothing is sent
        // to the LAN when the host is where it was).
        let mut client = Client::new(state.id.clone(), &NetworkConfig::direct(), 16 << 20).await?;
        if let Err(e) = client
            .connect(&biop2p::net::with_peer_id(&addr, peer))
            .await
        {
            // The host moved (restarted on another port or address): ask
            // the swarm where it is now.
            tracing::info!(error = %e, "the job's host is not at its recorded address");
            client = Client::new(state.id.clone(), &net, 16 << 20).await?;
            client
                .reach(
                    peer,
                    None,
                    &a.bootstrap,
                    std::time::Duration::from_secs(a.find_secs),
                )
                .await
                .with_context(|| {
                    format!("not at its recorded address {addr} ({e:#}); is it running? give --bootstrap to look for it through a peer")
                })?;
        }
        let resp = client
            .request(&peer, JobRequest::Fetch { job_id, wait })
            .await?;
        let code = if wait {
            finish(
                &state,
                &mut record,
                &job_id,
                &spec,
                &peer,
                resp,
                a.json,
                a.output.as_deref(),
            )
            .await
        } else {
            // Record what the host says, print only the status.
            record_response(&state, &mut record, &job_id, &spec, &peer, resp).await?;
            print_status(&record, a.json)
        };
        // Collected and verified now: pay for it (a detached job's only
        // chance; nothing happens while it is still pending).
        accept_single(&mut client, &state, &peer, &record).await;
        code
    })
}

fn print_status(record: &biop2p::store::SubmitRecord, json: bool) -> Result<ExitCode> {
    let id = proto::hex(&record.job.id());
    if json {
        common::print_line(
            &serde_json::json!({ "job_id": id, "status": record.status, "host": record.host_peer })
                .to_string(),
        )?;
    } else {
        common::print_line(&record.status)?;
    }
    Ok(ExitCode::SUCCESS)
}
