//! `biop2p status` and `biop2p result`: what became of a submitted job,
//! asking its host when the local record is not final.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use biop2p::node::submit::{self, Reach};
use biop2p::proto;

use super::common;
use super::submit::{open_state, print_result};

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
    let state = open_state(a.state_dir.clone())?;
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
    let reach = Reach {
        peers: Vec::new(),
        bootstrap: a.bootstrap.clone(),
        mdns: !a.no_mdns,
        swarm: a.swarm.clone(),
        discover: std::time::Duration::from_secs(a.find_secs),
        young: false,
    };
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(submit::collect(
        &state,
        &mut record,
        wait,
        &reach,
        &mut |p| {
            if let submit::Progress::Note(m) = p {
                eprintln!("{m}");
            }
        },
    ))?;
    if wait {
        print_result(&record, a.json, a.output.as_deref())
    } else {
        print_status(&record, a.json)
    }
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
