//! `biop2p submit`: send a signed job to a host, get verified output.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use biop2p::config::NetworkConfig;
use biop2p::identity::Identity;
use biop2p::node::client::JobParams;
use biop2p::node::{Client, verify_response};
use biop2p::proto::{self, InlineBlob, JobId, JobRequest, JobResponse};
use biop2p::store::{SubmitRecord, SubmitterStore, unix_now};
use libp2p::{Multiaddr, PeerId};

use super::common;

/// Blobs up to this size travel inside the job request (one round trip
/// saved); larger ones the host fetches in chunks.
const INLINE_LIMIT: usize = 512 << 10;
/// Largest output accepted from a host.
const MAX_OUTPUT: u64 = 16 << 20;

/// Submit a job to a host and wait for its verified output.
#[derive(clap::Args)]
pub struct Args {
    /// The module (component, WASI p1 command, .wat, or builtin:NAME).
    file: String,
    /// The input: a file, or `-` for stdin.
    #[arg(long)]
    input: Option<String>,
    /// A host (full multiaddr, e.g. /ip4/127.0.0.1/tcp/7450/p2p/12D3...).
    /// Repeat it to give candidates: with `--replicas N` the job runs on N
    /// distinct hosts among them; an unreachable one is replaced by the next.
    #[arg(long, required = true)]
    peer: Vec<Multiaddr>,
    /// Run the job on this many distinct hosts and accept the output only on
    /// a strict majority of matching output hashes.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=16))]
    replicas: u32,
    /// Fuel budget.
    #[arg(long, default_value_t = JobParams::default().fuel)]
    fuel: u64,
    /// Memory limit in bytes (KiB/MiB/GiB suffixes accepted).
    #[arg(long, value_parser = common::parse_bytes, default_value = "256MiB")]
    memory: u64,
    /// Time limit in seconds.
    #[arg(long, value_parser = common::parse_secs)]
    timeout: Option<u64>,
    /// The most you pay per million fuel.
    #[arg(long, default_value_t = JobParams::default().max_price_per_mfuel)]
    max_price: u64,
    /// Canonicalize NaNs so replicas on different CPU architectures agree
    /// bit for bit (slower on float-heavy code).
    #[arg(long)]
    portable: bool,
    /// Write the output to this file instead of stdout.
    #[arg(short = 'o', long)]
    output: Option<PathBuf>,
    /// Return as soon as the host has durably accepted the job.
    #[arg(long)]
    detach: bool,
    /// One JSON line.
    #[arg(long)]
    json: bool,
    /// Submitter state (key, jobs, results); default $XDG_DATA_HOME/biop2p.
    #[arg(long, env = "BIOP2P_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// Arguments for the guest.
    #[arg(last = true)]
    args: Vec<String>,
}

impl Args {
    /// What the job asks for, from the flags.
    fn params(&self) -> JobParams {
        JobParams {
            args: self.args.clone(),
            fuel: self.fuel,
            memory_bytes: self.memory,
            timeout_ms: self.timeout,
            max_price_per_mfuel: self.max_price,
            portable: self.portable,
            ..JobParams::default()
        }
    }
}

/// The submitter's state: identity and database.
pub struct State {
    pub id: Identity,
    pub store: SubmitterStore,
}

impl State {
    pub fn open(flag: Option<PathBuf>) -> Result<Self> {
        let dir = common::state_dir(flag)?;
        let id = Identity::load_or_create(&dir)
            .with_context(|| format!("cannot load the key in {}", dir.display()))?;
        let store = SubmitterStore::open(&dir.join("submitter"))
            .with_context(|| format!("cannot open the job database in {}", dir.display()))?;
        Ok(State { id, store })
    }
}

pub fn execute(a: Args) -> Result<ExitCode> {
    let module = common::load_module(&a.file)?;
    let input = common::read_input(a.input.as_deref(), 256 << 20)?;
    let state = State::open(a.state_dir.clone())?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(submit(a, state, module.bytes().to_vec(), input))
}

fn progress(json: bool) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if json || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let pb = indicatif::ProgressBar::new_spinner();
    pb.enable_steady_tick(std::time::Duration::from_millis(100));
    pb
}

async fn submit(a: Args, state: State, module: Vec<u8>, input: Vec<u8>) -> Result<ExitCode> {
    if a.replicas > 1 {
        return replicated(a, state, module, input).await;
    }
    let pb = progress(a.json);
    let addr = a.peer.first().cloned().context("--peer is required")?;
    pb.set_message(format!("connecting to {addr}"));
    let mut client = Client::new(state.id.clone(), &NetworkConfig::default(), MAX_OUTPUT).await?;
    let peer = client
        .connect(&addr)
        .await
        .context("is the host running? check --peer")?;
    let job = client.make_job(&module, &input, &a.params());
    let job_id = job.id();
    let spec = job.verify().expect("own job verifies");
    let mut inline = Vec::new();
    let mut inline_bytes = 0;
    for data in [&module, &input] {
        if inline_bytes + data.len() <= INLINE_LIMIT {
            inline_bytes += data.len();
            inline.push(InlineBlob {
                hash: *blake3::hash(data).as_bytes(),
                data: data.clone(),
            });
        }
    }
    client.offer_blob(Arc::new(module));
    client.offer_blob(Arc::new(input));
    let mut record = SubmitRecord {
        job: job.clone(),
        host_peer: peer.to_string(),
        host_addr: biop2p::net::with_peer_id(&addr, peer).to_string(),
        status: "queued".into(),
        response: None,
        submitted_at: unix_now(),
    };
    state.store.put(&job_id, &record).await?;
    pb.set_message(format!("uploading job {}", &proto::hex(&job_id)[..12]));
    let resp = client
        .request(
            &peer,
            JobRequest::Submit {
                job,
                inline,
                wait: !a.detach,
            },
        )
        .await
        .with_context(|| {
            format!(
                "job {} may or may not have run; ask with `biop2p status`",
                proto::hex(&job_id)
            )
        })?;
    pb.set_message("verifying receipt");
    let code = finish(
        &state,
        &mut record,
        &job_id,
        &spec,
        &peer,
        resp,
        a.json,
        a.output.as_deref(),
    )
    .await;
    pb.finish_and_clear();
    code
}

/// Checks a host's answer and records it: `queued`/`running` while it is
/// pending, `done`/`failed` with the verified response once final. Nothing
/// that fails verification is recorded.
pub async fn record_response(
    state: &State,
    record: &mut SubmitRecord,
    job_id: &JobId,
    spec: &proto::JobSpec,
    peer: &PeerId,
    resp: JobResponse,
) -> Result<()> {
    record.status = match &resp {
        JobResponse::Accepted { .. } => "queued".into(),
        JobResponse::Pending { state: s, .. } => match s {
            proto::JobState::Queued => "queued".into(),
            proto::JobState::Running => "running".into(),
        },
        JobResponse::Done { .. } | JobResponse::Failed { .. } => {
            let v = verify_response(&resp, job_id, spec, peer)
                .context("the host's answer failed verification; nothing was accepted")?;
            record.response = Some(resp.clone());
            if v.output.is_some() { "done" } else { "failed" }.into()
        }
        JobResponse::Refused { .. } => {
            record.response = Some(resp.clone());
            "failed".into()
        }
        JobResponse::Unknown { .. } => bail!(
            "the host does not know job {} (it was never durably accepted)",
            proto::hex(job_id)
        ),
    };
    state.store.put(job_id, record).await?;
    Ok(())
}

/// Records a host's answer, then prints it as `submit` and `result` do.
#[allow(clippy::too_many_arguments)]
pub async fn finish(
    state: &State,
    record: &mut SubmitRecord,
    job_id: &JobId,
    spec: &proto::JobSpec,
    peer: &PeerId,
    resp: JobResponse,
    json: bool,
    output_path: Option<&std::path::Path>,
) -> Result<ExitCode> {
    let accepted = matches!(resp, JobResponse::Accepted { .. });
    record_response(state, record, job_id, spec, peer, resp).await?;
    if !accepted {
        return print_result(record, json, output_path);
    }
    if json {
        common::print_line(&serde_json::json!({ "job_id": proto::hex(job_id) }).to_string())?;
    } else {
        common::print_line(&proto::hex(job_id))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The JSON line of `submit --json` and `result --json`.
fn result_json(record: &SubmitRecord) -> serde_json::Value {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut v = serde_json::json!({
        "job_id": proto::hex(&record.job.id()),
        "status": record.status,
        "output_base64": null,
        "output_hash": null,
        "receipts": [],
    });
    match &record.response {
        Some(JobResponse::Done {
            output, receipt, ..
        }) => {
            v["output_base64"] = b64.encode(output).into();
            v["output_hash"] = blake3::hash(output).to_hex().as_str().into();
            v["receipts"] = serde_json::json!([receipt_json(receipt)]);
        }
        Some(JobResponse::Failed {
            kind,
            message,
            receipt,
            ..
        }) => {
            v["receipts"] = serde_json::json!([receipt_json(receipt)]);
            v["error_kind"] = kind.as_str().into();
            v["error"] = message.as_str().into();
        }
        Some(JobResponse::Refused { reason, message }) => {
            v["error_kind"] = reason.as_str().into();
            v["error"] = message.as_str().into();
        }
        _ => {}
    }
    v
}

/// Prints a job's record: raw output (or the `-o` file), or the JSON line.
pub fn print_result(
    record: &SubmitRecord,
    json: bool,
    output_path: Option<&std::path::Path>,
) -> Result<ExitCode> {
    let (output, error) = match &record.response {
        Some(JobResponse::Done { output, .. }) => (Some(output), None),
        Some(JobResponse::Failed { kind, message, .. }) => (
            None,
            Some(format!("the job failed on the host: {kind}: {message}")),
        ),
        Some(JobResponse::Refused { reason, message }) => (
            None,
            Some(format!("the host refused the job: {reason}: {message}")),
        ),
        _ => (None, None),
    };
    if json {
        common::print_line(&result_json(record).to_string())?;
    } else if let Some(out) = output {
        match output_path {
            Some(p) => {
                std::fs::write(p, out).with_context(|| format!("cannot write {}", p.display()))?
            }
            None => {
                let mut so = std::io::stdout().lock();
                match so.write_all(out).and_then(|()| so.flush()) {
                    Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
                    r => r.context("cannot write output")?,
                }
            }
        }
    } else if error.is_none() {
        common::print_line(&format!(
            "{} {}",
            proto::hex(&record.job.id()),
            record.status
        ))?;
    }
    if let Some(e) = error {
        if !json {
            eprintln!("error: {e}");
        }
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// `--replicas N`: the same signed job on N distinct hosts, waiting for all;
/// outputs compared by hash, accepted on a strict majority. Disagreeing and
/// missing replicas are reported with their host.
async fn replicated(a: Args, state: State, module: Vec<u8>, input: Vec<u8>) -> Result<ExitCode> {
    let n = a.replicas as usize;
    if a.detach {
        bail!("--replicas needs the submitter to wait for the results; drop --detach");
    }
    let pb = progress(a.json);
    let mut client = Client::new(state.id.clone(), &NetworkConfig::default(), MAX_OUTPUT).await?;
    // Re-placement: an unreachable candidate is replaced by the next one.
    let mut hosts: Vec<(PeerId, Multiaddr)> = Vec::new();
    let mut missing: Vec<serde_json::Value> = Vec::new();
    for addr in &a.peer {
        if hosts.len() == n {
            break;
        }
        pb.set_message(format!("connecting to {addr}"));
        match client.connect(addr).await {
            Ok(p) if hosts.iter().all(|(q, _)| *q != p) => hosts.push((p, addr.clone())),
            Ok(_) => {}
            Err(e) => {
                eprintln!("note: {addr} unreachable ({e}); trying the next candidate");
                missing
                    .push(serde_json::json!({ "host": addr.to_string(), "error": e.to_string() }));
            }
        }
    }
    if hosts.len() < n {
        bail!(
            "--replicas {n} needs {n} reachable distinct hosts; reached {}",
            hosts.len()
        );
    }
    let job = client.make_job(&module, &input, &a.params());
    let job_id = job.id();
    let spec = job.verify().expect("own job verifies");
    client.offer_blob(Arc::new(module));
    client.offer_blob(Arc::new(input));
    pb.set_message(format!("running on {n} hosts"));
    let mut pending = std::collections::HashMap::new();
    for (peer, _) in &hosts {
        let rid = client.send(
            peer,
            JobRequest::Submit {
                job: job.clone(),
                inline: Vec::new(),
                wait: true,
            },
        );
        pending.insert(rid, *peer);
    }
    // Verified answers: (host, output hash, response).
    let mut answers: Vec<(PeerId, [u8; 32], JobResponse)> = Vec::new();
    while !pending.is_empty() {
        let (rid, r) = client.next_response().await;
        let Some(peer) = pending.remove(&rid) else {
            continue;
        };
        let problem = match r {
            Ok(resp @ (JobResponse::Done { .. } | JobResponse::Failed { .. })) => {
                match verify_response(&resp, &job_id, &spec, &peer) {
                    Ok(v) => {
                        answers.push((peer, v.receipt.output_hash, resp));
                        continue;
                    }
                    Err(e) => format!("answer failed verification: {e}"),
                }
            }
            Ok(JobResponse::Refused { reason, message }) => format!("refused: {reason}: {message}"),
            Ok(other) => format!("unexpected answer {other:?}"),
            Err(e) => e.to_string(),
        };
        eprintln!("note: replica on {peer} gave no usable result: {problem}");
        missing.push(serde_json::json!({ "host": peer.to_string(), "error": problem }));
    }
    pb.finish_and_clear();
    // Strict majority of the N placed replicas.
    let mut counts: std::collections::HashMap<[u8; 32], usize> = std::collections::HashMap::new();
    for (_, h, _) in &answers {
        *counts.entry(*h).or_default() += 1;
    }
    let winner = counts
        .iter()
        .filter(|(_, c)| **c * 2 > n)
        .map(|(h, c)| (*h, *c))
        .next();
    let disagreeing: Vec<serde_json::Value> = answers
        .iter()
        .filter(|(_, h, _)| Some(*h) != winner.map(|w| w.0))
        .map(|(p, h, _)| serde_json::json!({ "host": p.to_string(), "output_hash": proto::hex(h) }))
        .collect();
    for d in &disagreeing {
        eprintln!(
            "note: replica on {} disagrees (output {})",
            d["host"], d["output_hash"]
        );
    }
    let (peer, addr) = &hosts[0];
    let mut record = SubmitRecord {
        job: job.clone(),
        host_peer: peer.to_string(),
        host_addr: biop2p::net::with_peer_id(addr, *peer).to_string(),
        status: "failed".into(),
        response: None,
        submitted_at: unix_now(),
    };
    let Some((hash, count)) = winner else {
        state.store.put(&job_id, &record).await?;
        if a.json {
            common::print_line(
                &serde_json::json!({
                    "job_id": proto::hex(&job_id), "status": "failed",
                    "error_kind": "no_majority", "error": "no output reached a strict majority",
                    "accepted_replicas": 0, "receipts": answers.iter().map(|(_, _, r)| response_receipt(r)).collect::<Vec<_>>(),
                    "disagreeing": disagreeing, "missing": missing,
                })
                .to_string(),
            )?;
        }
        bail!(
            "no output reached a strict majority of {n} replicas ({} answered)",
            answers.len()
        );
    };
    let chosen = answers
        .iter()
        .find(|(_, h, _)| *h == hash)
        .expect("winner answered")
        .2
        .clone();
    record.status = if matches!(chosen, JobResponse::Done { .. }) {
        "done"
    } else {
        "failed"
    }
    .into();
    record.response = Some(chosen);
    state.store.put(&job_id, &record).await?;
    if a.json {
        let mut v = result_json(&record);
        v["accepted_replicas"] = count.into();
        v["receipts"] = answers
            .iter()
            .map(|(_, _, r)| response_receipt(r))
            .collect();
        v["disagreeing"] = disagreeing.into();
        v["missing"] = missing.into();
        common::print_line(&v.to_string())?;
        return Ok(if record.status == "done" {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    print_result(&record, false, a.output.as_deref())
}

fn response_receipt(r: &JobResponse) -> serde_json::Value {
    match r {
        JobResponse::Done { receipt, .. } | JobResponse::Failed { receipt, .. } => {
            receipt_json(receipt)
        }
        _ => serde_json::Value::Null,
    }
}

fn receipt_json(r: &proto::SignedReceipt) -> serde_json::Value {
    let b64 = base64::engine::general_purpose::STANDARD;
    match r.verify() {
        Ok(body) => serde_json::json!({
            "host": body.host_peer_id().map(|p| p.to_string()),
            "fuel_used": body.fuel_used,
            "peak_memory_bytes": body.peak_memory_bytes,
            "wall_ms": body.wall_us as f64 / 1000.0,
            "output_hash": proto::hex(&body.output_hash),
            "price": body.price,
            "signature": b64.encode(r.signature),
            "receipt_base64": b64.encode(&r.body),
            "arch": body.arch,
        }),
        Err(e) => serde_json::json!({ "error": e.to_string() }),
    }
}
