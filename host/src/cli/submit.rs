//! `biop2p submit`: send a signed job to a host, get verified output.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use biop2p::config::NetworkConfig;
use biop2p::identity::Identity;
use biop2p::node::client::JobParams;
use biop2p::node::placement::{self, Candidate, Plan};
use biop2p::node::submitter::{Submitter, SubmitterConfig, TaskInput, TaskStatus};
use biop2p::node::trails::Trails;
use biop2p::node::{Client, verify_response};
use biop2p::proto::{self, JobId, JobRequest, JobResponse};
use biop2p::store::{SubmitRecord, SubmitterStore, unix_now};
use libp2p::{Multiaddr, PeerId};

use super::common;

mod batch;
pub mod spec;

/// Blobs up to this size travel inside the job request (one round trip
/// saved); larger ones the host fetches in chunks.
const INLINE_LIMIT: usize = 512 << 10;
/// Largest output accepted from a host.
const MAX_OUTPUT: u64 = 16 << 20;

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
    /// What the job asks for, from the flags.
    fn params(&self) -> JobParams {
        JobParams {
            args: self.args.clone(),
            fuel: self.fuel,
            memory_bytes: self.memory,
            timeout_ms: self.timeout,
            max_price_per_mfuel: self.max_price,
            portable: self.portable,
            data: self.loaded.iter().map(|d| d.r.clone()).collect(),
            ..JobParams::default()
        }
    }

    /// Offers the `--data` files to the hosts that fetch them.
    fn offer_data(&self, client: &mut Client) {
        for d in &self.loaded {
            client.offer_data(&d.r.name, d.bytes.clone());
        }
    }
}

/// The submitter's state: identity and database.
pub struct State {
    pub id: Identity,
    pub store: Arc<SubmitterStore>,
    /// The state directory.
    pub dir: PathBuf,
    /// Where the Thermal trails over hosts are kept.
    pub trails_path: PathBuf,
}

impl State {
    pub fn open(flag: Option<PathBuf>) -> Result<Self> {
        let dir = common::state_dir(flag)?;
        let id = Identity::load_or_create(&dir)
            .with_context(|| format!("cannot load the key in {}", dir.display()))?;
        let store = SubmitterStore::open(&dir.join("submitter"))
            .with_context(|| format!("cannot open the job database in {}", dir.display()))?;
        Ok(State {
            id,
            store: Arc::new(store),
            trails_path: dir.join("trails.json"),
            dir,
        })
    }
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
    let state = State::open(a.state_dir.clone())?;
    let rt = tokio::runtime::Runtime::new()?;
    if !a.inputs.is_empty() {
        return rt.block_on(batch::execute(a, state, module.bytes().to_vec()));
    }
    let input = common::read_input(a.input.as_deref(), 256 << 20)?;
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

/// The client's network: discovery only when no host was named.
fn client_net(a: &Args) -> Result<NetworkConfig> {
    let mut net = NetworkConfig::direct();
    if a.peer.is_empty() {
        net.mdns = !a.no_mdns;
        net.bootstrap = a.bootstrap.iter().map(|b| b.to_string()).collect();
        if !net.mdns && net.bootstrap.is_empty() {
            bail!("no host to submit to: give --peer, or --bootstrap, or allow mDNS");
        }
    }
    net.swarm = a.swarm.clone();
    Ok(net)
}

/// Where the job may go, best first: the `--peer` addresses as given, or
/// the discovered hosts whose adverts fit the job, ranked.
async fn candidates(
    a: &Args,
    client: &mut Client,
    trails: &mut Trails,
    spec: &proto::JobSpec,
    pb: &indicatif::ProgressBar,
    want: usize,
) -> Result<Vec<Candidate>> {
    if !a.peer.is_empty() {
        return Ok(a.peer.iter().cloned().map(Candidate::Addr).collect());
    }
    pb.set_message("finding hosts");
    let found = client
        .discover(
            want,
            |ad| placement::unfit(ad, spec).is_none(),
            Duration::from_millis(500),
            Duration::from_secs(a.discover_secs),
        )
        .await;
    let ranked = trails.rank(found, spec, biop2p::node::host::unix_now_ms());
    if ranked.is_empty() {
        let known = client.known_hosts();
        if known.is_empty() {
            bail!(
                "no host found in {} s (swarm {:?}); start one with `biop2p host`, or give --peer or --bootstrap",
                a.discover_secs,
                a.swarm
            );
        }
        let mut why = String::new();
        for (p, ad) in &known {
            let reason = placement::unfit(ad, spec).unwrap_or_else(|| "fits".into());
            why.push_str(&format!("\n  {p}: {reason}"));
        }
        bail!(
            "none of the {} known host(s) fits this job (--max-price {}):{why}",
            known.len(),
            a.max_price
        );
    }
    Ok(ranked
        .into_iter()
        .map(|(p, ad)| Candidate::Host(p, Box::new(ad)))
        .collect())
}

/// Hosts the coordinator needs before it decides replication itself: four
/// untried hosts (quorum weight 1/4 each) can confirm an answer.
const ADAPTIVE_MIN_HOSTS: usize = 4;

async fn submit(a: Args, state: State, module: Vec<u8>, input: Vec<u8>) -> Result<ExitCode> {
    if a.quote {
        return quote(a, state, module, input).await;
    }
    match a.replicas {
        Some(n) if n >= 2 => return replicated(a, n as usize, state, module, input).await,
        None if !a.detach && (a.peer.is_empty() || a.peer.len() >= ADAPTIVE_MIN_HOSTS) => {
            return adaptive(a, state, module, input).await;
        }
        None if !a.detach => {
            eprintln!(
                "note: {} host(s) given, fewer than the {ADAPTIVE_MIN_HOSTS} adaptive replication needs: the job runs once and its output is not compared",
                a.peer.len()
            );
        }
        _ => {}
    }
    if !(a.detach || a.peer.len() == 1) {
        return replicated(a, 1, state, module, input).await;
    }
    let pb = progress(a.json);
    let mut client = Client::new(state.id.clone(), &client_net(&a)?, MAX_OUTPUT).await?;
    let job = client.make_job(&module, &input, &a.params());
    let job_id = job.id();
    let spec = job.verify().expect("own job verifies");
    // The first reachable candidate takes the job.
    let mut reached = None;
    let mut trails = Trails::load(&state.trails_path);
    for c in candidates(&a, &mut client, &mut trails, &spec, &pb, 1).await? {
        let r = match &c {
            Candidate::Addr(addr) => {
                pb.set_message(format!("connecting to {addr}"));
                client.connect(addr).await.map(|p| (p, addr.clone()))
            }
            Candidate::Host(p, ad) => client.connect_host(*p, ad).await.map(|()| {
                let addr = ad.addrs.first().and_then(|s| s.parse().ok());
                (*p, addr.unwrap_or_else(Multiaddr::empty))
            }),
        };
        match r {
            Ok(x) => {
                reached = Some(x);
                break;
            }
            Err(e) => eprintln!("note: {e}; trying the next host"),
        }
    }
    let (peer, addr) = reached.context("no host could be reached; is it running? check --peer")?;
    let inline = placement::inline_blobs(&[&module, &input], INLINE_LIMIT);
    client.offer_blob(Arc::new(module));
    client.offer_blob(Arc::new(input));
    a.offer_data(&mut client);
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
    accept_single(&mut client, &state, &peer, &record).await;
    code
}

/// Accepts a single host's verified result (nothing to compare it with):
/// signs and stores the acceptance, then sends it. Does nothing until the
/// record holds a final, verified response (a detached job is accepted by
/// the `result` that collects it). One that is not delivered stays owed
/// and is sent again by the next batch or adaptive run reaching the host.
pub async fn accept_single(
    client: &mut Client,
    state: &State,
    peer: &PeerId,
    record: &SubmitRecord,
) {
    if let Some(r @ (JobResponse::Done { receipt, .. } | JobResponse::Failed { receipt, .. })) =
        &record.response
        && let Ok(body) = receipt.verify()
        && let Err(e) = biop2p::node::submitter::settle_majority(
            client,
            &state.store,
            &[(*peer, record.job.clone(), r.clone())],
            &body.output_hash,
        )
        .await
    {
        eprintln!("note: the acceptance was not delivered ({e:#}); it is kept and owed");
    }
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
        JobResponse::Settled { .. }
        | JobResponse::Statement { .. }
        | JobResponse::Note { .. }
        | JobResponse::NoteAccepted { .. } => {
            bail!("the host answered a job request with a settlement")
        }
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

/// `--replicas N`: the task on N distinct hosts, each its own signed job,
/// waiting for all; outputs compared by hash, accepted on a strict
/// majority. Disagreeing and missing replicas are reported with their host.
async fn replicated(
    a: Args,
    n: usize,
    state: State,
    module: Vec<u8>,
    input: Vec<u8>,
) -> Result<ExitCode> {
    if a.detach {
        bail!("--replicas needs the submitter to wait for the results; drop --detach");
    }
    let pb = progress(a.json);
    let mut client = Client::new(state.id.clone(), &client_net(&a)?, MAX_OUTPUT).await?;
    let jobs: Vec<_> = (0..n + a.max_replacements)
        .map(|_| client.make_job(&module, &input, &a.params()))
        .collect();
    let spec = jobs[0].verify().expect("own job verifies");
    let mut trails = Trails::load(&state.trails_path);
    let cands = candidates(&a, &mut client, &mut trails, &spec, &pb, n).await?;
    let inline = placement::inline_blobs(&[&module, &input], INLINE_LIMIT);
    client.offer_blob(Arc::new(module));
    client.offer_blob(Arc::new(input));
    a.offer_data(&mut client);
    let mut job = jobs[0].clone();
    let plan = Plan {
        refill_from_adverts: a.peer.is_empty(),
        replicas: n,
        max_replacements: a.max_replacements,
        deadline: Duration::from_secs(
            a.deadline
                .unwrap_or_else(|| a.timeout.map_or(600, |t| 2 * t.div_ceil(1000) + 30)),
        ),
    };
    pb.set_message(format!("running on {n} host(s)"));
    let report =
        placement::run_replicas(&mut client, jobs, &inline, cands, &plan, &mut trails, |m| {
            pb.suspend(|| eprintln!("note: {m}"));
        })
        .await?;
    if let Some((h, _)) = report.majority(n)
        && let Some(w) = report.answers.iter().find(|x| x.output_hash == h)
    {
        job = w.job.clone();
    }
    let job_id = job.id();
    pb.finish_and_clear();
    let winner = report.majority(n);
    // Thermal: run_replicas updated the trails with what replicas revealed.
    if let Err(e) = trails.save(&state.trails_path, biop2p::node::host::unix_now_ms()) {
        eprintln!("note: cannot save host trails: {e}");
    }
    let answers = &report.answers;
    let missing: Vec<serde_json::Value> = report
        .missing
        .iter()
        .map(|m| serde_json::json!({ "host": m.host, "error": m.error }))
        .collect();
    let disagreeing: Vec<serde_json::Value> = report
        .disagreeing(winner.map(|w| w.0))
        .iter()
        .map(|a| serde_json::json!({ "host": a.peer.to_string(), "output_hash": proto::hex(&a.output_hash) }))
        .collect();
    for d in &disagreeing {
        eprintln!(
            "note: replica on {} disagrees (output {})",
            d["host"], d["output_hash"]
        );
    }
    let first = answers.first();
    let mut record = SubmitRecord {
        job: job.clone(),
        host_peer: first.map(|x| x.peer.to_string()).unwrap_or_default(),
        host_addr: first
            .and_then(|x| {
                x.addr
                    .as_ref()
                    .map(|ad| biop2p::net::with_peer_id(ad, x.peer).to_string())
            })
            .unwrap_or_default(),
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
                    "accepted_replicas": 0, "receipts": answers.iter().map(|x| response_receipt(&x.response)).collect::<Vec<_>>(),
                    "disagreeing": disagreeing, "missing": missing, "replacements": report.replacements,
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
        .find(|x| x.output_hash == hash)
        .expect("winner answered")
        .response
        .clone();
    record.status = if matches!(chosen, JobResponse::Done { .. }) {
        "done"
    } else {
        "failed"
    }
    .into();
    record.response = Some(chosen);
    state.store.put(&job_id, &record).await?;
    // Verified: accept and pay the majority's replicas, nobody else.
    let settle: Vec<_> = answers
        .iter()
        .map(|x| (x.peer, x.job.clone(), x.response.clone()))
        .collect();
    if let Err(e) =
        biop2p::node::submitter::settle_majority(&mut client, &state.store, &settle, &hash).await
    {
        eprintln!("note: the acceptances were not all delivered ({e:#}); they are kept and owed");
    }
    if a.json {
        let mut v = result_json(&record);
        v["accepted_replicas"] = count.into();
        v["receipts"] = answers
            .iter()
            .map(|x| response_receipt(&x.response))
            .collect();
        v["disagreeing"] = disagreeing.into();
        v["missing"] = missing.into();
        v["replacements"] = report.replacements.into();
        v["verified"] = (n >= 2).into();
        v["quarantined"] = serde_json::json!([]);
        v["canaries"] = 0.into();
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

/// `--quote`: the hosts the job would go to, each with its price and what
/// the job may cost there at most (fuel cap × price, rounded up). Nothing
/// is sent: the job is signed only to judge which adverts fit.
async fn quote(a: Args, state: State, module: Vec<u8>, input: Vec<u8>) -> Result<ExitCode> {
    let pb = progress(a.json);
    let mut client = Client::new(state.id.clone(), &client_net(&a)?, MAX_OUTPUT).await?;
    let probe = client.make_job(&module, &input, &a.params());
    let spec = probe.verify().expect("own job verifies");
    let want = a
        .replicas
        .map_or(ADAPTIVE_MIN_HOSTS, |n| n as usize)
        .max(a.peer.len());
    let mut hosts: Vec<(PeerId, proto::Advert)> = Vec::new();
    if a.peer.is_empty() {
        let mut trails = Trails::load(&state.trails_path);
        for c in candidates(&a, &mut client, &mut trails, &spec, &pb, want).await? {
            if let Candidate::Host(p, ad) = c {
                hosts.push((p, *ad));
            }
        }
    } else {
        let mut peers = Vec::new();
        for addr in &a.peer {
            pb.set_message(format!("connecting to {addr}"));
            peers.push(client.connect(addr).await?);
        }
        pb.set_message("waiting for the hosts' adverts");
        let found = client
            .discover(
                peers.len(),
                |_| true,
                Duration::from_millis(300),
                Duration::from_secs(a.discover_secs),
            )
            .await;
        hosts = found
            .into_iter()
            .filter(|(p, _)| peers.contains(p))
            .collect();
        if hosts.is_empty() {
            bail!(
                "no advert from the given host(s) within {} s",
                a.discover_secs
            );
        }
    }
    pb.finish_and_clear();
    let rows: Vec<serde_json::Value> = hosts
        .iter()
        .map(|(p, ad)| {
            serde_json::json!({
                "peer_id": p.to_string(),
                "price_per_mfuel": ad.price_per_mfuel,
                "max_cost": security::settlement::max_cost(a.fuel, ad.price_per_mfuel),
                "within_max_price": ad.price_per_mfuel <= a.max_price,
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

/// Without `--replicas`: the trust coordinator places, replicates, compares
/// and judges (see `biop2p::node::submitter`).
async fn adaptive(a: Args, state: State, module: Vec<u8>, input: Vec<u8>) -> Result<ExitCode> {
    let pb = progress(a.json);
    let client = Client::new(state.id.clone(), &client_net(&a)?, MAX_OUTPUT).await?;
    let config = SubmitterConfig {
        deadline: Duration::from_secs(
            a.deadline
                .unwrap_or_else(|| a.timeout.map_or(600, |t| 2 * t.div_ceil(1000) + 30)),
        ),
        sandbox_dir: Some(state.dir.join("sandbox")),
        ..SubmitterConfig::default()
    };
    let mut s =
        Submitter::new(client, state.store.clone(), config)?.with_trails(state.trails_path.clone());
    // Never sent: only its spec, to judge which adverts fit.
    let probe = s.client().make_job(&module, &input, &a.params());
    let spec = probe.verify().expect("own job verifies");
    let mut trails = Trails::load(&state.trails_path);
    let cands = candidates(&a, s.client(), &mut trails, &spec, &pb, ADAPTIVE_MIN_HOSTS).await?;
    let mut hosts = Vec::new();
    for c in cands {
        let r = match &c {
            Candidate::Addr(addr) => {
                pb.set_message(format!("connecting to {addr}"));
                s.client().connect(addr).await.map(|p| (p, 0))
            }
            Candidate::Host(p, ad) => s
                .client()
                .connect_host(*p, ad)
                .await
                .map(|()| (*p, ad.fuel_per_sec)),
        };
        match r {
            Ok(h) => hosts.push(h),
            Err(e) => pb.suspend(|| eprintln!("note: {e}; skipping that host")),
        }
    }
    if hosts.len() < ADAPTIVE_MIN_HOSTS {
        pb.finish_and_clear();
        drop(s);
        eprintln!(
            "note: {} host(s) reachable, fewer than the {ADAPTIVE_MIN_HOSTS} adaptive replication needs: the job runs once and its output is not compared",
            hosts.len()
        );
        return replicated(a, 1, state, module, input).await;
    }
    s.join(hosts)?;
    for d in &a.loaded {
        s.offer_data(&d.r.name, d.bytes.clone());
    }
    if let Some(n) = s.diversity_note() {
        pb.suspend(|| eprintln!("{n}"));
    }
    pb.set_message("running; the coordinator decides the replicas");
    let task = TaskInput {
        module: Arc::new(module),
        input: Arc::new(input),
        params: a.params(),
    };
    let out = s
        .run(vec![task], |m| pb.suspend(|| eprintln!("{m}")))
        .await?;
    pb.finish_and_clear();
    let summary = s.summary();
    let quarantined: Vec<String> = s
        .quarantined_now()
        .iter()
        .map(|(p, _)| p.to_string())
        .collect();
    match &out[0].status {
        TaskStatus::Accepted {
            job_id,
            response,
            reason,
            receipts,
            ..
        } => {
            let record = state
                .store
                .get(job_id)?
                .context("the accepted job's record is missing")?;
            if !a.json {
                return print_result(&record, false, a.output.as_deref());
            }
            let winner = match &**response {
                JobResponse::Done { receipt, .. } | JobResponse::Failed { receipt, .. } => {
                    receipt.verify().ok().map(|b| b.output_hash)
                }
                _ => None,
            };
            let mut v = result_json(&record);
            v["receipts"] = receipts.iter().map(receipt_json).collect();
            v["accepted_replicas"] = receipts
                .iter()
                .filter(|r| r.verify().ok().map(|b| b.output_hash) == winner)
                .count()
                .into();
            v["reason"] = serde_json::to_value(reason)?;
            v["verified"] = true.into();
            v["quarantined"] = quarantined.into();
            v["canaries"] = summary.canaries.into();
            common::print_line(&v.to_string())?;
            Ok(if record.status == "done" {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        TaskStatus::GaveUp(reason) => {
            if a.json {
                common::print_line(
                    &serde_json::json!({
                        "status": "failed", "error_kind": "no_quorum",
                        "error": format!("{reason:?}"), "quarantined": quarantined,
                        "canaries": summary.canaries,
                    })
                    .to_string(),
                )?;
            }
            bail!("no output could be confirmed: {reason:?}; nothing was accepted")
        }
    }
}
