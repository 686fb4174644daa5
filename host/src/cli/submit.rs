//! `biop2p submit`: send a signed job to a host, get verified output.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use biop2p::node::client::JobParams;
use biop2p::node::submit::{self, Mode, Progress, Reach, SubmitError, SubmitOptions, Submitted};
use biop2p::proto::{self, JobResponse};
use biop2p::store::SubmitRecord;
use libp2p::Multiaddr;

use super::common;

pub use biop2p::node::submit::SubmitterState as State;

mod batch;
pub mod spec;

/// Submit a job to a host and wait for its verified output.
#[derive(clap::Args)]
pub struct Args {
    /// The module (component, WASI p1 command, .wat, or builtin:NAME);
    /// may come from `--spec` instead.
    file: Option<String>,
    /// The input: a file, or `-` for stdin.
    #[arg(long, conflicts_with = "inputs")]
    input: Option<String>,
    /// A batch: each file (every file of a directory) is one job, with the
    /// same module, limits and price; outputs go to `-o OUTDIR`.
    #[arg(long, num_args = 1..)]
    inputs: Vec<PathBuf>,
    /// With `--inputs`: each non-empty line of each file (e.g. `.jsonl`) is
    /// one job, named `STEM.LINE`.
    #[arg(long, requires = "inputs")]
    lines: bool,
    /// With `--inputs`: inputs in flight at once (default 512).
    #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=65536))]
    parallel: Option<usize>,
    /// Read the job (module, inputs, limits, replicas, price, output, hosts)
    /// from a TOML spec file; flags given here win over it.
    #[arg(long)]
    spec: Option<PathBuf>,
    /// Print the spec this command line means (TOML) and exit.
    #[arg(long)]
    print_spec: bool,
    /// A host (full multiaddr, e.g. /ip4/127.0.0.1/tcp/7450/p2p/12D3...).
    /// Repeat it to give candidates: with `--replicas N` the job runs on N
    /// distinct hosts among them; an unreachable one is replaced by the next.
    /// Without it, hosts are found by mDNS and `--bootstrap` peers and
    /// chosen by their adverts.
    #[arg(long)]
    peer: Vec<Multiaddr>,
    /// A peer to find hosts through (full multiaddr; repeatable).
    #[arg(long)]
    bootstrap: Vec<Multiaddr>,
    /// Do not look for hosts on the LAN.
    #[arg(long)]
    no_mdns: bool,
    /// Swarm name: only hosts advertising in it are considered.
    #[arg(long, env = "BIOP2P_SWARM", default_value = "main")]
    swarm: String,
    /// Seconds to spend finding hosts (without `--peer`).
    #[arg(long, default_value_t = 10)]
    discover_secs: u64,
    /// Neither start from other submitters' trails when this one has none
    /// (Young), nor publish this one's for others.
    #[arg(long)]
    no_young: bool,
    /// Replicas that may be placed again after a host disconnects, refuses
    /// or misses the deadline.
    #[arg(long, default_value_t = 3)]
    max_replacements: usize,
    /// Seconds a host may take to answer before its replica is placed
    /// elsewhere (default: twice `--timeout` plus 30, or 600).
    #[arg(long)]
    deadline: Option<u64>,
    /// Force this many replicas on distinct hosts and accept the output only
    /// on a strict majority of matching output hashes. Without it the
    /// submitter's trust coordinator decides (adaptive replication: newcomers
    /// are checked against trusted hosts, trusted hosts are spot-checked),
    /// given at least 4 hosts; with fewer, the job runs once and its output
    /// is reported as not compared.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=16))]
    replicas: Option<u32>,
    /// Fuel budget.
    #[arg(long, default_value_t = JobParams::default().fuel)]
    fuel: u64,
    /// Memory limit in bytes (KiB/MiB/GiB suffixes accepted).
    #[arg(long, value_parser = common::parse_bytes, default_value = "256MiB")]
    memory: u64,
    /// Time limit in seconds.
    #[arg(long, value_parser = common::parse_secs)]
    timeout: Option<u64>,
    /// The most you pay per million fuel (a ceiling: hosts asking more
    /// refuse `price_too_low`; you pay each host its own price).
    #[arg(long, default_value_t = JobParams::default().max_price_per_mfuel)]
    max_price: u64,
    /// Print what the job may cost on each host it would go to (its fuel
    /// cap × the host's price) and send nothing.
    #[arg(long, conflicts_with = "detach")]
    quote: bool,
    /// Canonicalize NaNs so replicas on different CPU architectures agree
    /// bit for bit (slower on float-heavy code).
    #[arg(long)]
    portable: bool,
    /// Write the output to this file instead of stdout (with `--inputs`:
    /// the directory for `NAME.out` and `NAME.receipts.json`).
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
    /// A read-only file for the guest at `/data/NAME` (repeatable); signed
    /// into the job by hash and fetched by the host like the module.
    #[arg(long = "data", value_name = "NAME=PATH", value_parser = common::parse_data)]
    data: Vec<(String, PathBuf)>,
    /// The `--data` files, read.
    #[arg(skip)]
    loaded: Vec<common::DataFile>,
    /// Arguments for the guest.
    #[arg(last = true)]
    args: Vec<String>,
}

impl Args {
    /// What the job asks for, from the flags (the data blobs are filled in
    /// by the submission from `loaded`).
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

    /// Where the hosts are, from the flags.
    fn reach(&self) -> Reach {
        Reach {
            peers: self.peer.clone(),
            bootstrap: self.bootstrap.clone(),
            mdns: !self.no_mdns,
            swarm: self.swarm.clone(),
            discover: Duration::from_secs(self.discover_secs),
            young: !self.no_young,
        }
    }

    /// The whole submission, from the flags.
    fn options(&self) -> SubmitOptions {
        SubmitOptions {
            params: self.params(),
            data: self
                .loaded
                .iter()
                .map(|d| (d.r.name.clone(), d.bytes.clone()))
                .collect(),
            reach: self.reach(),
            replicas: self.replicas.map(|n| n as usize),
            detach: self.detach,
            max_replacements: self.max_replacements,
            deadline: Duration::from_secs(
                self.deadline
                    .unwrap_or_else(|| self.timeout.map_or(600, |t| 2 * t.div_ceil(1000) + 30)),
            ),
        }
    }
}

/// Opens the submitter state in `--state-dir` (or the default).
pub fn open_state(flag: Option<PathBuf>) -> Result<State> {
    let dir = common::state_dir(flag)?;
    Ok(State::open(&dir)?)
}

pub fn execute(mut a: Args, matches: Option<&clap::ArgMatches>) -> Result<ExitCode> {
    if let Some(path) = a.spec.clone() {
        let s = spec::load(&path)?;
        spec::merge(&mut a, matches, s, &path)?;
    }
    if a.print_spec {
        print!("{}", spec::to_text(&spec::of_args(&a)));
        return Ok(ExitCode::SUCCESS);
    }
    let file = a
        .file
        .clone()
        .context("no module: give FILE (or `module` in --spec)")?;
    let module = common::load_module(&file)?;
    if !a.inputs.is_empty() && !a.data.is_empty() {
        bail!("--data with --inputs is not supported yet: a batch sends no data blobs");
    }
    a.loaded = common::read_data(&a.data, 256 << 20)?;
    let state = open_state(a.state_dir.clone())?;
    let rt = tokio::runtime::Runtime::new()?;
    if !a.inputs.is_empty() {
        return rt.block_on(batch::execute(a, state, module.bytes().to_vec()));
    }
    let input = common::read_input(a.input.as_deref(), 256 << 20)?;
    rt.block_on(run(a, state, module.bytes().to_vec(), input))
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

/// A submission's progress on the spinner, its notes on stderr.
pub fn show(pb: &indicatif::ProgressBar) -> impl FnMut(Progress) + Send + '_ {
    move |p| match p {
        Progress::Stage(m) => pb.set_message(m),
        Progress::Note(m) => pb.suspend(|| eprintln!("{m}")),
    }
}

async fn run(a: Args, state: State, module: Vec<u8>, input: Vec<u8>) -> Result<ExitCode> {
    let pb = progress(a.json);
    let opts = a.options();
    if a.quote {
        let rows = submit::quote(&state, &module, &input, &opts, &mut show(&pb)).await;
        pb.finish_and_clear();
        return print_quote(&a, &rows?);
    }
    let out = submit::submit(&state, module, input, &opts, &mut show(&pb)).await;
    pb.finish_and_clear();
    match out {
        Ok(s) => print_submitted(&s, a.json, a.output.as_deref()),
        Err(e @ SubmitError::NoMajority { .. }) if a.json => {
            if let SubmitError::NoMajority { failed, .. } = &e {
                let mut v = report_json(failed);
                v["status"] = "failed".into();
                v["error_kind"] = "no_majority".into();
                v["error"] = "no output reached a strict majority".into();
                v["accepted_replicas"] = 0.into();
                common::print_line(&v.to_string())?;
            }
            Err(e.into())
        }
        Err(e @ SubmitError::NoQuorum { .. }) if a.json => {
            if let SubmitError::NoQuorum {
                reason,
                quarantined,
                canaries,
            } = &e
            {
                common::print_line(
                    &serde_json::json!({
                        "status": "failed", "error_kind": "no_quorum",
                        "error": format!("{reason:?}"),
                        "quarantined": quarantined.iter().map(ToString::to_string).collect::<Vec<_>>(),
                        "canaries": canaries,
                    })
                    .to_string(),
                )?;
            }
            Err(e.into())
        }
        Err(e) => Err(e.into()),
    }
}

/// The receipts, the disagreeing and the missing of a replicated
/// submission, with its job id.
fn report_json(s: &Submitted) -> serde_json::Value {
    let mut v = result_json(&s.record);
    v["receipts"] = s.receipts.iter().map(receipt_json).collect();
    v["disagreeing"] = s
        .disagreeing
        .iter()
        .map(|(p, h)| serde_json::json!({ "host": p.to_string(), "output_hash": proto::hex(h) }))
        .collect();
    v["missing"] = s
        .missing
        .iter()
        .map(|(h, e)| serde_json::json!({ "host": h, "error": e }))
        .collect();
    v["replacements"] = s.replacements.into();
    v
}

/// Prints what a submission did: the output (or `-o`), or one JSON line.
fn print_submitted(
    s: &Submitted,
    json: bool,
    output_path: Option<&std::path::Path>,
) -> Result<ExitCode> {
    match s.mode {
        Mode::Detached => {
            let id = proto::hex(&s.record.job.id());
            if json {
                common::print_line(&serde_json::json!({ "job_id": id }).to_string())?;
            } else {
                common::print_line(&id)?;
            }
            return Ok(ExitCode::SUCCESS);
        }
        Mode::Single => return print_result(&s.record, json, output_path),
        Mode::Majority(_) | Mode::Adaptive => {}
    }
    if !json {
        return print_result(&s.record, false, output_path);
    }
    let mut v = if s.mode == Mode::Adaptive {
        let mut v = result_json(&s.record);
        v["receipts"] = s.receipts.iter().map(receipt_json).collect();
        v["reason"] = serde_json::to_value(s.reason)?;
        v
    } else {
        report_json(s)
    };
    v["accepted_replicas"] = s.accepted_replicas.into();
    v["verified"] = s.verified.into();
    v["quarantined"] = s
        .quarantined
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .into();
    v["canaries"] = s.canaries.into();
    common::print_line(&v.to_string())?;
    Ok(if s.record.status == "done" {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
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

/// `--quote`'s table (or JSON line): what the job may cost on each host it
/// would go to. Nothing was sent.
fn print_quote(a: &Args, quote: &[submit::QuoteRow]) -> Result<ExitCode> {
    let rows: Vec<serde_json::Value> = quote
        .iter()
        .map(|q| {
            serde_json::json!({
                "peer_id": q.peer.to_string(),
                "price_per_mfuel": q.price_per_mfuel,
                "max_cost": q.max_cost,
                "within_max_price": q.within_max_price,
            })
        })
        .collect();
    let replicas = a.replicas.map_or(1, |n| n as u64);
    let mut costs: Vec<u64> = rows
        .iter()
        .filter(|r| r["within_max_price"] == true)
        .map(|r| r["max_cost"].as_u64().unwrap_or(0))
        .collect();
    costs.sort_unstable();
    costs.reverse();
    let most: u64 = costs.iter().take(replicas as usize).sum();
    if a.json {
        common::print_line(
            &serde_json::json!({
                "quote": rows, "fuel": a.fuel, "max_price": a.max_price,
                "replicas": a.replicas, "max_total": most,
            })
            .to_string(),
        )?;
    } else {
        common::print_line(&format!(
            "{:<53} {:>10} {:>12}",
            "host", "per Mfuel", "at most"
        ))?;
        for r in &rows {
            common::print_line(&format!(
                "{:<53} {:>10} {:>12}{}",
                r["peer_id"].as_str().unwrap_or(""),
                r["price_per_mfuel"],
                r["max_cost"],
                if r["within_max_price"] == true {
                    ""
                } else {
                    "  (over --max-price: would refuse)"
                }
            ))?;
        }
        common::print_line(&format!(
            "fuel cap {} at each host's price; {} replica(s) cost at most {most} (a replica whose answer is wrong costs nothing). Nothing was sent.",
            a.fuel, replicas
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}
