//! `biop2p status` and `biop2p result`: what became of a submitted job,
//! asking its host when the local record is not final.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use biop2p::config::NetworkConfig;
use biop2p::node::Client;
use biop2p::proto::{self, JobRequest};

use super::common;
use super::submit::{State, finish, print_result, record_response};

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
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let mut client = Client::new(state.id.clone(), &NetworkConfig::direct(), 16 << 20).await?;
        let peer = client
            .connect(&addr)
            .await
            .with_context(|| format!("cannot reach the job's host at {addr}; is it running?"))?;
        let resp = client
            .request(&peer, JobRequest::Fetch { job_id, wait })
            .await?;
        if wait {
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
        }
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
