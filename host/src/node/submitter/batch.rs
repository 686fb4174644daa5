//! Batches: one module, many inputs (`biop2p submit --inputs`), with the
//! hosts found once and many jobs in flight at once.
//!
//! Two drivers share the journal, the output files and the report:
//! - [`run_direct`]: each input on `replicas` distinct hosts (1 = the job
//!   runs once, as a single `submit` does with fewer than 4 hosts), the
//!   least-loaded host first; accepted on a strict majority of matching
//!   output hashes; a refusal, a failure to answer or a disagreement places
//!   one more job, up to `max_retries` per input.
//! - [`run_adaptive`]: the inputs go through [`Submitter`], so
//!   `security::Coordinator` decides replicas, canaries and quarantines as
//!   for a single `submit` on 4 hosts or more.
//!
//! Resuming: every input has a [`BatchEntry`] in the submitter's store,
//! keyed by the batch id (a hash of the module, the limits, the inputs and
//! the output directory, so the same command finds the same batch). In
//! direct mode each job is recorded (and flushed, one flush for all the
//! jobs of a scheduling pass) *before* it is sent; a submitter restarted
//! after `kill -9` asks the recorded host for the recorded job id
//! (`Fetch`), so an input that already ran is collected, not run again,
//! and one the host never accepted (`Unknown`) is placed again. Decided
//! inputs are never re-run nor re-paid. In adaptive mode only decided
//! inputs are remembered (the coordinator's jobs are its own); undecided
//! ones run again.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use base64::Engine as _;
use libp2p::PeerId;
use serde::Serialize;

use super::{Submitter, SubmitterError, TaskInput, TaskStatus, verified_settlement_record};
use crate::node::client::{Client, ClientError, JobParams, RequestId};
use crate::node::placement::inline_blobs;
use crate::node::receipts::verify_response;
use crate::proto::{self, Hash, JobRequest, JobResponse, SignedJob, SignedReceipt};
use crate::store::{BatchDone, BatchEntry, BatchJob, LedgerRecord, StoreError, SubmitterStore};
use security::Digest;

/// Blobs up to this size travel inside the job request.
const INLINE_LIMIT: usize = 512 << 10;
/// Answers handled before the next scheduling pass (and its one flush).
const MAX_ANSWERS_PER_PASS: usize = 4096;

/// Errors of a batch.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// The submitter's store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The adaptive submitter failed.
    #[error(transparent)]
    Submitter(#[from] SubmitterError),
    /// An output or receipt file could not be written.
    #[error("cannot write {}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// No host to place jobs on.
    #[error("no host connected: a batch needs at least one")]
    NoHosts,
    /// Two inputs would write the same output file.
    #[error("two inputs are both named {0:?}: their outputs would overwrite each other")]
    DuplicateName(String),
    /// A name that is not a plain file name.
    #[error("input name {0:?} is not a plain file name")]
    BadName(String),
    /// More inputs than a batch records.
    #[error("{0} inputs: a batch holds at most 4294967295")]
    TooMany(usize),
}

/// One input of a batch.
#[derive(Debug, Clone)]
pub struct Item {
    /// Output files are `NAME.out` and `NAME.receipts.json`.
    pub name: String,
    /// The input bytes.
    pub input: Arc<Vec<u8>>,
}

/// What a batch runs and how.
#[derive(Debug, Clone)]
pub struct BatchPlan {
    /// The module bytes.
    pub module: Arc<Vec<u8>>,
    /// Limits, args, price ceiling (the same for every input).
    pub params: JobParams,
    /// Replicas per input in direct mode (at least 1).
    pub replicas: usize,
    /// Jobs placed again per input, at most.
    pub max_retries: u32,
    /// Inputs open at once.
    pub parallel: usize,
    /// Jobs in flight per host at once. Hosts refuse `busy` past their
    /// per-submitter queue (256 by default), so the default stays below.
    pub per_host: usize,
    /// Where outputs and receipts go.
    pub out_dir: PathBuf,
}

impl BatchPlan {
    /// The batch's identity: the same command, the same batch.
    pub fn batch_id(&self, items: &[Item], adaptive: bool) -> [u8; 32] {
        let mut h = blake3::Hasher::new();
        h.update(b"biop2p-batch-v1");
        h.update(blake3::hash(&self.module).as_bytes());
        let p = &self.params;
        for a in &p.args {
            h.update(&(a.len() as u64).to_be_bytes());
            h.update(a.as_bytes());
        }
        h.update(&p.fuel.to_be_bytes());
        h.update(&p.memory_bytes.to_be_bytes());
        h.update(&p.timeout_ms.unwrap_or(0).to_be_bytes());
        h.update(&p.max_price_per_mfuel.to_be_bytes());
        h.update(&[
            u8::from(p.portable),
            u8::from(p.scratch),
            u8::from(adaptive),
        ]);
        h.update(&(self.replicas as u64).to_be_bytes());
        h.update(self.out_dir.to_string_lossy().as_bytes());
        for it in items {
            h.update(&(it.name.len() as u64).to_be_bytes());
            h.update(it.name.as_bytes());
            h.update(blake3::hash(&it.input).as_bytes());
        }
        *h.finalize().as_bytes()
    }
}

/// What became of one input (one `--json` line).
#[derive(Debug, Clone, Serialize)]
pub struct ItemReport {
    /// The input's name.
    pub name: String,
    /// Its place in the batch.
    pub index: u32,
    /// `done`, or why not (the failure kind).
    pub status: String,
    /// The accepted output's hash (hex), when done.
    pub output_hash: Option<String>,
    /// `OUTDIR/NAME.out`, when done.
    pub output: Option<PathBuf>,
    /// Fuel of all its jobs.
    pub fuel: u64,
    /// Price of all its jobs.
    pub price: u64,
    /// Jobs placed again (refusals, failures, disagreements).
    pub retries: u32,
    /// Verified answers that matched the accepted one.
    pub agreeing: usize,
    /// Verified answers in all.
    pub answers: usize,
    /// Answers collected from hosts for jobs sent before a restart.
    pub collected: usize,
    /// Decided in an earlier run of the same batch (not re-run, not re-paid).
    pub resumed: bool,
}

/// Totals of a batch (the last `--json` line).
#[derive(Debug, Clone, Default, Serialize)]
pub struct BatchSummary {
    /// Hex batch id.
    pub batch_id: String,
    /// `direct` or `adaptive`.
    pub mode: String,
    /// Inputs.
    pub total: u64,
    /// Inputs with an accepted output.
    pub done: u64,
    /// Inputs without one.
    pub failed: u64,
    /// Failed inputs by kind.
    pub failed_by_kind: BTreeMap<String, u64>,
    /// Inputs that needed at least one job placed again.
    pub retried: u64,
    /// Jobs placed again in all.
    pub retries: u64,
    /// Inputs decided by an earlier run of this batch.
    pub resumed: u64,
    /// Answers collected for jobs sent before a restart.
    pub collected: u64,
    /// Jobs sent in this run.
    pub jobs_sent: u64,
    /// Acceptances hosts confirmed in this run (direct mode: one per
    /// answer in an input's majority; earlier runs' undelivered ones are
    /// sent again first).
    pub settled: u64,
    /// Fuel of every receipt (this run and earlier ones).
    pub fuel: u64,
    /// Price of every receipt (this run and earlier ones).
    pub price: u64,
    /// Bytes sent inside job requests (modules and inputs).
    pub uploaded_bytes: u64,
    /// Wall time of this run, seconds.
    pub wall_secs: f64,
    /// Inputs decided in this run per second of wall time.
    pub jobs_per_sec: f64,
}

/// What a batch tells its caller as it goes.
#[derive(Debug)]
pub enum BatchEvent<'a> {
    /// The batch knows how many inputs are decided already.
    Start {
        /// Inputs.
        total: u64,
        /// Decided before this run.
        resumed: u64,
    },
    /// An input was decided.
    Item(&'a ItemReport),
    /// Bytes went out in job requests.
    Uploaded(u64),
    /// Something people should know (`note: ...`).
    Note(&'a str),
}

/// What both modes do first: check the names, make the output dir, and
/// name the batch (its id keys the resume state) with an empty summary.
fn begin(
    plan: &BatchPlan,
    items: &[Item],
    adaptive: bool,
) -> Result<([u8; 32], BatchSummary), BatchError> {
    check_names(items)?;
    let bid = plan.batch_id(items, adaptive);
    let sum = BatchSummary {
        batch_id: proto::hex(&bid),
        mode: if adaptive { "adaptive" } else { "direct" }.into(),
        total: items.len() as u64,
        ..BatchSummary::default()
    };
    std::fs::create_dir_all(&plan.out_dir).map_err(|source| BatchError::Write {
        path: plan.out_dir.clone(),
        source,
    })?;
    Ok((bid, sum))
}

/// Checks names: plain file names, no two alike.
pub fn check_names(items: &[Item]) -> Result<(), BatchError> {
    if items.len() > u32::MAX as usize {
        return Err(BatchError::TooMany(items.len()));
    }
    let mut seen = HashSet::new();
    for it in items {
        let n = &it.name;
        if n.is_empty() || n == "." || n == ".." || n.contains(['/', '\\', '\0']) {
            return Err(BatchError::BadName(n.clone()));
        }
        if !seen.insert(n.as_str()) {
            return Err(BatchError::DuplicateName(n.clone()));
        }
    }
    Ok(())
}

/// The receipt as `NAME.receipts.json` shows it.
#[derive(Debug, Serialize)]
struct ReceiptView {
    host: Option<String>,
    job_id: String,
    fuel_used: u64,
    peak_memory_bytes: u64,
    wall_ms: f64,
    output_hash: String,
    price: u64,
    arch: String,
    agrees: bool,
    signature: String,
    receipt_base64: String,
}

fn receipt_of(r: &JobResponse) -> Option<&SignedReceipt> {
    match r {
        JobResponse::Done { receipt, .. } | JobResponse::Failed { receipt, .. } => Some(receipt),
        _ => None,
    }
}

/// The digest answers are compared by: the output hash, or the failure
/// kind (a deterministic trap is an answer too).
fn digest_of(r: &JobResponse, output_hash: &Hash) -> Hash {
    match r {
        JobResponse::Failed { kind, .. } => {
            let mut h = blake3::Hasher::new();
            h.update(b"failed:");
            h.update(kind.as_bytes());
            *h.finalize().as_bytes()
        }
        _ => *output_hash,
    }
}

/// Writes `NAME.out` (when there is an output) and `NAME.receipts.json`,
/// each through a temporary file renamed into place, so a file present is
/// a whole file.
fn write_outputs(
    dir: &Path,
    name: &str,
    status: &str,
    output: Option<&[u8]>,
    accepted: Option<&Hash>,
    receipts: &[&SignedReceipt],
) -> Result<Option<PathBuf>, BatchError> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let views: Vec<ReceiptView> = receipts
        .iter()
        .filter_map(|r| {
            let body = r.verify().ok()?;
            Some(ReceiptView {
                host: body.host_peer_id().map(|p| p.to_string()),
                job_id: proto::hex(&body.job_id),
                fuel_used: body.fuel_used,
                peak_memory_bytes: body.peak_memory_bytes,
                wall_ms: body.wall_us as f64 / 1000.0,
                output_hash: proto::hex(&body.output_hash),
                price: body.price,
                arch: body.arch.clone(),
                agrees: accepted == Some(&body.output_hash),
                signature: b64.encode(r.signature),
                receipt_base64: b64.encode(&r.body),
            })
        })
        .collect();
    let doc = serde_json::json!({
        "name": name,
        "status": status,
        "output_hash": accepted.map(proto::hex),
        "receipts": views,
    });
    let put = |path: PathBuf, bytes: &[u8]| -> Result<PathBuf, BatchError> {
        let mut tmp = path.clone().into_os_string();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        std::fs::write(&tmp, bytes)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|source| BatchError::Write {
                path: path.clone(),
                source,
            })?;
        Ok(path)
    };
    let out = match output {
        Some(o) => Some(put(dir.join(format!("{name}.out")), o)?),
        None => None,
    };
    put(
        dir.join(format!("{name}.receipts.json")),
        serde_json::to_string_pretty(&doc)
            .expect("json encodes")
            .as_bytes(),
    )?;
    Ok(out)
}

fn sums(receipts: &[&SignedReceipt]) -> (u64, u64) {
    receipts
        .iter()
        .filter_map(|r| r.verify().ok())
        .fold((0, 0), |(f, p), b| (f + b.fuel_used, p + b.price))
}

/// A verified answer of one job.
struct Ans {
    digest: Hash,
    response: JobResponse,
    /// Who answered, the job it answered and its checked receipt: what an
    /// acceptance of this answer needs, without checking it again.
    peer: PeerId,
    spec: proto::JobSpec,
    receipt: proto::ReceiptBody,
}

/// An input being worked on.
struct Open {
    answers: Vec<Ans>,
    inflight: usize,
    want: usize,
    retries: u32,
    /// Hosts with a job of this input in flight or answered (replicas go
    /// to distinct hosts).
    used: HashSet<PeerId>,
    entry: BatchEntry,
    collected: usize,
    last_failure: Option<String>,
}

struct Send {
    peer: PeerId,
    req: JobRequest,
    index: u32,
    job: SignedJob,
    spec: proto::JobSpec,
    bytes: u64,
}

/// What to do with an input after an answer.
enum Next {
    Finish,
    Place,
    Wait,
}

struct Flight {
    index: u32,
    peer: PeerId,
    job: SignedJob,
    spec: proto::JobSpec,
    /// A `Fetch` of a job recorded before a restart.
    fetch: bool,
}

/// Runs a batch on `hosts` (connected, best first) without the trust
/// coordinator: see the module docs.
pub async fn run_direct(
    client: &mut Client,
    store: &SubmitterStore,
    hosts: &[PeerId],
    plan: &BatchPlan,
    items: &[Item],
    mut on: impl FnMut(BatchEvent<'_>),
) -> Result<BatchSummary, BatchError> {
    if hosts.is_empty() {
        return Err(BatchError::NoHosts);
    }
    let started = Instant::now();
    let (bid, mut sum) = begin(plan, items, false)?;
    let replicas = plan.replicas.max(1);
    let need = replicas / 2 + 1;
    let mut pending: VecDeque<u32> = VecDeque::new();
    for i in 0..items.len() as u32 {
        match store.batch_entry(&bid, i)? {
            // Decided: done with its output in place, or failed after a
            // host ran it (and was paid). Failures no host ran (refusals,
            // no answer) are tried again.
            Some(BatchEntry { done: Some(d), .. })
                if (d.status == "done"
                    && plan
                        .out_dir
                        .join(format!("{}.out", items[i as usize].name))
                        .exists())
                    || (d.status != "done" && d.fuel > 0) =>
            {
                count_done(&mut sum, &d, true);
            }
            _ => pending.push_back(i),
        }
    }
    on(BatchEvent::Start {
        total: sum.total,
        resumed: sum.resumed,
    });
    let host_set: HashSet<PeerId> = hosts.iter().copied().collect();
    let mut load: HashMap<PeerId, usize> = hosts.iter().map(|h| (*h, 0)).collect();
    // A host gets the module inline until it has answered once (it keeps
    // the blob after that).
    let mut warm: HashSet<PeerId> = HashSet::new();
    let mut open: HashMap<u32, Open> = HashMap::new();
    let mut flights: HashMap<RequestId, Flight> = HashMap::new();
    let mut ready: VecDeque<u32> = VecDeque::new();
    let per_host = plan.per_host.max(1);
    // Hosts that lost the module fetch it from here.
    client.offer_blob(plan.module.clone());
    let key = client.identity().signing.clone();
    let mut owed = Owed {
        key: &key,
        decided: Vec::new(),
        sent: HashMap::new(),
    };
    // Acceptances an earlier run stored and its hosts never confirmed (a
    // crash, a lost answer): owed, so sent first.
    owed.decided = super::undelivered(store, |p| host_set.contains(p))?;
    owed.send(client);
    loop {
        let mut sends: Vec<Send> = Vec::new();
        // Open inputs while there is room; jobs recorded before a restart
        // are asked for first.
        while open.len() < plan.parallel.max(1)
            && let Some(i) = pending.pop_front()
        {
            let mut entry = store.batch_entry(&bid, i)?.unwrap_or_default();
            entry.done = None;
            let mut o = Open {
                answers: Vec::new(),
                inflight: 0,
                want: replicas,
                retries: 0,
                used: HashSet::new(),
                entry,
                collected: 0,
                last_failure: None,
            };
            for bj in &o.entry.jobs {
                let Ok(peer) = bj.host_peer.parse::<PeerId>() else {
                    continue;
                };
                if !host_set.contains(&peer) || o.used.contains(&peer) {
                    continue;
                }
                let Ok(spec) = bj.job.verify() else { continue };
                o.used.insert(peer);
                o.inflight += 1;
                *load.entry(peer).or_default() += 1;
                sends.push(Send {
                    peer,
                    req: JobRequest::Fetch {
                        job_id: bj.job.id(),
                        wait: true,
                    },
                    index: i,
                    job: bj.job.clone(),
                    spec,
                    bytes: 0,
                });
            }
            open.insert(i, o);
            ready.push_back(i);
        }
        // Place the jobs inputs still want.
        let mut dirty: Vec<u32> = Vec::new();
        let mut blocked: Vec<u32> = Vec::new();
        let mut decided: Vec<u32> = Vec::new();
        while let Some(i) = ready.pop_front() {
            let Some(o) = open.get_mut(&i) else { continue };
            while o.answers.len() + o.inflight < o.want {
                let pick = hosts
                    .iter()
                    .filter(|h| !o.used.contains(*h) && load[*h] < per_host)
                    .min_by_key(|h| load[*h])
                    .copied();
                let Some(h) = pick else {
                    if hosts.iter().any(|h| !o.used.contains(h)) {
                        blocked.push(i);
                    } else if o.inflight == 0 {
                        decided.push(i);
                    }
                    break;
                };
                let it = &items[i as usize];
                let job = client.make_job(&plan.module, &it.input, &plan.params);
                let spec = job.verify().expect("own job verifies");
                let blobs: Vec<&[u8]> = if warm.contains(&h) {
                    vec![&it.input]
                } else {
                    vec![&plan.module, &it.input]
                };
                let inline = inline_blobs(&blobs, INLINE_LIMIT);
                let bytes: u64 = inline.iter().map(|b| b.data.len() as u64).sum();
                if !inline
                    .iter()
                    .any(|b| b.data.len() == it.input.len() && b.data == *it.input)
                {
                    client.offer_blob(it.input.clone());
                }
                o.entry.jobs.push(BatchJob {
                    job: job.clone(),
                    host_peer: h.to_string(),
                });
                o.used.insert(h);
                o.inflight += 1;
                *load.get_mut(&h).expect("a host") += 1;
                dirty.push(i);
                sends.push(Send {
                    peer: h,
                    req: JobRequest::Submit {
                        job: job.clone(),
                        inline,
                        wait: true,
                    },
                    index: i,
                    job,
                    spec,
                    bytes,
                });
            }
        }
        ready.extend(blocked);
        for i in decided {
            finish(
                i, &mut open, store, &bid, plan, items, need, &mut sum, &mut on, &mut owed,
            )?;
        }
        // Durable before sent: one flush for the whole pass.
        if !dirty.is_empty() || !owed.decided.is_empty() {
            dirty.dedup();
            store.put_batch_entries(&bid, dirty.iter().map(|i| (*i, &open[i].entry)))?;
            owed.stage(store)?;
            store.flush().await?;
        }
        owed.send(client);
        let mut uploaded = 0;
        for Send {
            peer,
            req,
            index,
            job,
            spec,
            bytes,
        } in sends
        {
            let submit = matches!(req, JobRequest::Submit { .. });
            let rid = client.send(&peer, req);
            if submit {
                sum.jobs_sent += 1;
            }
            uploaded += bytes;
            flights.insert(
                rid,
                Flight {
                    index,
                    peer,
                    job,
                    spec,
                    fetch: !submit,
                },
            );
        }
        if uploaded > 0 {
            sum.uploaded_bytes += uploaded;
            on(BatchEvent::Uploaded(uploaded));
        }
        if open.is_empty() && pending.is_empty() {
            break;
        }
        if flights.is_empty() {
            // Nothing in flight and nothing placeable: every open input is
            // blocked by hosts it may not use.
            let stuck: Vec<u32> = open.keys().copied().collect();
            for i in stuck {
                finish(
                    i, &mut open, store, &bid, plan, items, need, &mut sum, &mut on, &mut owed,
                )?;
            }
            continue;
        }
        // Take the next answer and every other one already there, then
        // plan again (one flush per pass, however many answers).
        let mut next = Some(client.next_response().await);
        let mut taken = 0;
        while let Some((rid, r)) = next.take() {
            taken += 1;
            if taken < MAX_ANSWERS_PER_PASS {
                next = futures::FutureExt::now_or_never(client.next_response());
            }
            let Some(f) = flights.remove(&rid) else {
                owed.answered(store, &mut sum, &rid, &r)?;
                continue;
            };
            *load.get_mut(&f.peer).expect("a host") -= 1;
            let next = {
                let Some(o) = open.get_mut(&f.index) else {
                    continue;
                };
                o.inflight -= 1;
                let fetched = f.fetch;
                let failure = match r {
                    Ok(resp @ (JobResponse::Done { .. } | JobResponse::Failed { .. })) => {
                        match verify_response(&resp, &f.job.id(), &f.spec, &f.peer) {
                            Ok(v) => {
                                warm.insert(f.peer);
                                if fetched {
                                    o.collected += 1;
                                    sum.collected += 1;
                                }
                                o.answers.push(Ans {
                                    digest: digest_of(&resp, &v.receipt.output_hash),
                                    response: resp,
                                    peer: f.peer,
                                    spec: f.spec.clone(),
                                    receipt: v.receipt,
                                });
                                None
                            }
                            Err(e) => {
                                on(BatchEvent::Note(&format!(
                                    "note: host {} gave an answer that fails verification ({e}); placing the job again",
                                    f.peer
                                )));
                                Some("bad_answer".to_string())
                            }
                        }
                    }
                    Ok(JobResponse::Unknown { .. }) => {
                        // Never durably accepted: it did not run; place it again
                        // (not a retry: nothing was lost).
                        o.used.remove(&f.peer);
                        None
                    }
                    Ok(JobResponse::Refused { reason, .. }) => {
                        if reason == proto::RefuseReason::Busy {
                            o.used.remove(&f.peer);
                        }
                        Some(reason.as_str().to_string())
                    }
                    Ok(_) => Some("no_result".to_string()),
                    Err(ClientError::Request { .. }) => Some("no_answer".to_string()),
                    Err(_) => Some("unreachable".to_string()),
                };
                if let Some(kind) = failure {
                    o.last_failure = Some(kind);
                    if o.retries < plan.max_retries {
                        o.retries += 1;
                    } else {
                        o.want = o.want.saturating_sub(1);
                    }
                }
                // Decide, or ask for more.
                let best = best_of(&o.answers);
                if best.is_some_and(|(_, n)| n >= need) {
                    Next::Finish
                } else if o.answers.len() + o.inflight < o.want {
                    Next::Place
                } else if o.inflight > 0 {
                    Next::Wait
                } else if o.answers.len() >= o.want && o.retries < plan.max_retries && o.want > 0 {
                    // A disagreement: one more replica breaks the tie.
                    o.retries += 1;
                    o.want += 1;
                    Next::Place
                } else {
                    Next::Finish
                }
            };
            match next {
                Next::Finish => finish(
                    f.index, &mut open, store, &bid, plan, items, need, &mut sum, &mut on,
                    &mut owed,
                )?,
                Next::Place => ready.push_back(f.index),
                Next::Wait => {}
            }
        }
    }
    // The inputs are decided; wait for the hosts' confirmations (each
    // bounded by the client's request timeout).
    while !owed.sent.is_empty() {
        let (rid, r) = client.next_response().await;
        owed.answered(store, &mut sum, &rid, &r)?;
    }
    store.flush().await?;
    let secs = started.elapsed().as_secs_f64();
    sum.wall_secs = secs;
    sum.jobs_per_sec = (sum.total - sum.resumed) as f64 / secs.max(1e-9);
    Ok(sum)
}

fn best_of(answers: &[Ans]) -> Option<(Hash, usize)> {
    let mut counts: HashMap<Hash, usize> = HashMap::new();
    for a in answers {
        *counts.entry(a.digest).or_default() += 1;
    }
    counts.into_iter().max_by_key(|(_, n)| *n)
}

fn count_done(sum: &mut BatchSummary, d: &BatchDone, resumed: bool) {
    if d.status == "done" {
        sum.done += 1;
    } else {
        sum.failed += 1;
        *sum.failed_by_kind.entry(d.status.clone()).or_default() += 1;
    }
    if d.retries > 0 {
        sum.retried += 1;
    }
    sum.retries += u64::from(d.retries);
    sum.fuel += d.fuel;
    sum.price += d.price;
    if resumed {
        sum.resumed += 1;
    }
}

/// Acceptances a direct batch owes its hosts: decided with each input,
/// stored with the pass's flush, then sent; each host's confirmation marks
/// its entry delivered.
struct Owed<'k> {
    key: &'k ed25519_dalek::SigningKey,
    /// Decided and not yet stored.
    decided: Vec<(PeerId, LedgerRecord)>,
    /// Sent and not yet answered, by request.
    sent: HashMap<RequestId, proto::JobId>,
}

impl Owed<'_> {
    /// Pays every answer in the majority `accepted` the lowest fuel the
    /// majority claims (fuel is deterministic: honest replicas claim the
    /// same, an inflated claim only loses); other answers earn nothing.
    fn accept(&mut self, answers: &[Ans], accepted: &Hash) {
        let Some(fuel) = answers
            .iter()
            .filter(|a| a.digest == *accepted)
            .map(|a| a.receipt.fuel_used)
            .min()
        else {
            return;
        };
        for a in answers {
            let Some(signed) = receipt_of(&a.response) else {
                continue;
            };
            if let Some((rec, _)) = verified_settlement_record(
                self.key,
                &a.spec,
                signed,
                &a.receipt,
                &Digest(a.digest),
                &Digest(*accepted),
                fuel,
            ) {
                self.decided.push((a.peer, rec));
            }
        }
    }

    /// Stores the decided entries (the caller flushes before [`Self::send`]).
    fn stage(&self, store: &SubmitterStore) -> Result<(), BatchError> {
        if !self.decided.is_empty() {
            let recs: Vec<LedgerRecord> = self.decided.iter().map(|(_, r)| r.clone()).collect();
            store.stage_settlements(&recs)?;
        }
        Ok(())
    }

    /// Sends the stored entries.
    fn send(&mut self, client: &mut Client) {
        for (peer, rec) in self.decided.drain(..) {
            let job = rec.entry.job_id;
            let rid = client.send(
                &peer,
                JobRequest::Settle {
                    entry: rec.evidence,
                },
            );
            self.sent.insert(rid, job);
        }
    }

    /// Takes a host's answer to a settlement; false if `rid` is not one.
    fn answered(
        &mut self,
        store: &SubmitterStore,
        sum: &mut BatchSummary,
        rid: &RequestId,
        r: &Result<JobResponse, ClientError>,
    ) -> Result<bool, BatchError> {
        let Some(job) = self.sent.remove(rid) else {
            return Ok(false);
        };
        match r {
            Ok(JobResponse::Settled { job_id, .. }) if *job_id == job => {
                store.mark_delivered(&job)?;
                sum.settled += 1;
            }
            // Kept undelivered: owed, and sent again by the next batch or
            // adaptive submit that reaches this host.
            Ok(other) => {
                tracing::info!(job = %proto::hex(&job), answer = ?std::mem::discriminant(other), "settlement not confirmed")
            }
            Err(e) => {
                tracing::info!(job = %proto::hex(&job), error = %e, "settlement not delivered")
            }
        }
        Ok(true)
    }
}

/// Decides an input: writes its files, records it, reports it.
#[allow(clippy::too_many_arguments)]
fn finish(
    index: u32,
    open: &mut HashMap<u32, Open>,
    store: &SubmitterStore,
    bid: &[u8; 32],
    plan: &BatchPlan,
    items: &[Item],
    need: usize,
    sum: &mut BatchSummary,
    on: &mut impl FnMut(BatchEvent<'_>),
    owed: &mut Owed<'_>,
) -> Result<(), BatchError> {
    let Some(mut o) = open.remove(&index) else {
        return Ok(());
    };
    if let Some((h, _)) = best_of(&o.answers).filter(|(_, n)| *n >= need) {
        owed.accept(&o.answers, &h);
    }
    let name = &items[index as usize].name;
    let best = best_of(&o.answers).filter(|(_, n)| *n >= need);
    let receipts: Vec<&SignedReceipt> = o
        .answers
        .iter()
        .filter_map(|a| receipt_of(&a.response))
        .collect();
    let (fuel, price) = sums(&receipts);
    let winner = best.and_then(|(h, _)| o.answers.iter().find(|a| a.digest == h));
    let (status, output, hash) = match winner.map(|a| &a.response) {
        Some(JobResponse::Done { output, .. }) => {
            ("done".to_string(), Some(&output[..]), best.map(|b| b.0))
        }
        Some(JobResponse::Failed { kind, .. }) => (kind.clone(), None, None),
        _ if o.answers.is_empty() => (
            o.last_failure.clone().unwrap_or_else(|| "no_host".into()),
            None,
            None,
        ),
        _ => ("no_majority".to_string(), None, None),
    };
    let accepted_output = winner
        .and_then(|a| receipt_of(&a.response))
        .and_then(|r| r.verify().ok().map(|b| b.output_hash));
    let out_path = write_outputs(
        &plan.out_dir,
        name,
        &status,
        output,
        accepted_output.as_ref(),
        &receipts,
    )?;
    let done = BatchDone {
        status: status.clone(),
        output_hash: hash.unwrap_or([0; 32]),
        fuel,
        price,
        retries: o.retries,
    };
    count_done(sum, &done, false);
    o.entry.done = Some(done);
    store.put_batch_entries(bid, [(index, &o.entry)])?;
    let report = ItemReport {
        name: name.clone(),
        index,
        status,
        output_hash: hash.as_ref().map(proto::hex),
        output: out_path,
        fuel,
        price,
        retries: o.retries,
        agreeing: best.map_or(0, |b| b.1),
        answers: o.answers.len(),
        collected: o.collected,
        resumed: false,
    };
    on(BatchEvent::Item(&report));
    Ok(())
}

/// Runs a batch through the trust coordinator ([`Submitter`], already
/// joined to its hosts), `plan.parallel` inputs at a time.
pub async fn run_adaptive(
    s: &mut Submitter,
    store: &SubmitterStore,
    plan: &BatchPlan,
    items: &[Item],
    mut on: impl FnMut(BatchEvent<'_>),
) -> Result<BatchSummary, BatchError> {
    let started = Instant::now();
    let (bid, mut sum) = begin(plan, items, true)?;
    let mut pending = Vec::new();
    for i in 0..items.len() as u32 {
        match store.batch_entry(&bid, i)? {
            Some(BatchEntry { done: Some(d), .. }) => count_done(&mut sum, &d, true),
            _ => pending.push(i),
        }
    }
    on(BatchEvent::Start {
        total: sum.total,
        resumed: sum.resumed,
    });
    let before = s.summary().dispatched;
    for chunk in pending.chunks(plan.parallel.max(1)) {
        let tasks: Vec<TaskInput> = chunk
            .iter()
            .map(|i| TaskInput {
                module: plan.module.clone(),
                input: items[*i as usize].input.clone(),
                params: plan.params.clone(),
            })
            .collect();
        let bytes: u64 = tasks.iter().map(|t| t.input.len() as u64).sum();
        on(BatchEvent::Uploaded(bytes));
        sum.uploaded_bytes += bytes;
        let mut notes = Vec::new();
        let outcomes = s.run(tasks, |m| notes.push(m.to_string())).await?;
        for n in &notes {
            on(BatchEvent::Note(n));
        }
        for o in outcomes {
            let index = chunk[o.index];
            let name = &items[index as usize].name;
            let (status, output, hash, receipts, job) = match &o.status {
                TaskStatus::Accepted {
                    response,
                    receipts,
                    job_id,
                    ..
                } => match &**response {
                    JobResponse::Done {
                        output, receipt, ..
                    } => (
                        "done".to_string(),
                        Some(&output[..]),
                        receipt.verify().ok().map(|b| b.output_hash),
                        receipts.iter().collect::<Vec<_>>(),
                        Some(*job_id),
                    ),
                    JobResponse::Failed { kind, .. } => (
                        kind.clone(),
                        None,
                        None,
                        receipts.iter().collect(),
                        Some(*job_id),
                    ),
                    _ => ("no_result".into(), None, None, Vec::new(), None),
                },
                TaskStatus::GaveUp(_) => ("no_quorum".into(), None, None, Vec::new(), None),
            };
            let (fuel, price) = sums(&receipts);
            let out_path = write_outputs(
                &plan.out_dir,
                name,
                &status,
                output,
                hash.as_ref(),
                &receipts,
            )?;
            let agreeing = receipts
                .iter()
                .filter(|r| r.verify().ok().map(|b| b.output_hash) == hash)
                .count();
            let done = BatchDone {
                status: status.clone(),
                output_hash: hash.unwrap_or([0; 32]),
                fuel,
                price,
                retries: receipts.len().saturating_sub(1) as u32,
            };
            count_done(&mut sum, &done, false);
            let _ = job;
            let entry = BatchEntry {
                jobs: Vec::new(),
                done: Some(done.clone()),
            };
            store.put_batch_entries(&bid, [(index, &entry)])?;
            on(BatchEvent::Item(&ItemReport {
                name: name.clone(),
                index,
                status,
                output_hash: hash.as_ref().map(proto::hex),
                output: out_path,
                fuel,
                price,
                retries: done.retries,
                agreeing,
                answers: receipts.len(),
                collected: 0,
                resumed: false,
            }));
        }
        store.flush().await?;
    }
    sum.jobs_sent = s.summary().dispatched - before;
    let secs = started.elapsed().as_secs_f64();
    sum.wall_secs = secs;
    sum.jobs_per_sec = (sum.total - sum.resumed) as f64 / secs.max(1e-9);
    Ok(sum)
}
