//! One submission, from a module and an input to an answer the submitter
//! may rely on: finding hosts, placing, replicating, comparing, recording
//! and paying. `biop2p submit`, `biop2p status` and [`crate::Node::submit`]
//! all go through here, so the CLI only turns flags into [`SubmitOptions`]
//! and prints the [`Submitted`] it gets back.
//!
//! Three ways a job can be verified, chosen by [`SubmitOptions::replicas`]
//! and by how many hosts are reachable:
//! - **adaptive** (no `replicas`, at least [`ADAPTIVE_MIN_HOSTS`] hosts): the
//!   trust coordinator ([`super::submitter::Submitter`]) decides how many
//!   replicas the job needs, sends canaries and quarantines liars;
//! - **majority** (`replicas = Some(n)`, `n ≥ 2`): `n` distinct hosts, each
//!   its own signed job, accepted on a strict majority of output hashes;
//! - **single** (one host given, or too few reachable, or `detach`): the job
//!   runs once; its answer is verified (signatures, hashes) but not
//!   compared, and [`Submitted::verified`] says so.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use libp2p::{Multiaddr, PeerId};

use super::client::{Client, ClientError, JobParams};
use super::placement::{self, Candidate, Plan};
use super::receipts::{VerifyError, verify_response};
use super::submitter::{self, Submitter, SubmitterConfig, SubmitterError, TaskInput, TaskStatus};
use super::trails::Trails;
use super::young;
use crate::config::NetworkConfig;
use crate::identity::Identity;
use crate::proto::{self, Advert, JobId, JobRequest, JobResponse, SignedReceipt};
use crate::store::{StoreError, SubmitRecord, SubmitterStore, unix_now};
use roles::YoungConfig;
use security::{AcceptReason, GiveUpReason};

/// Hosts the coordinator needs before it decides replication itself: four
/// untried hosts (quorum weight 1/4 each) can confirm an answer.
pub const ADAPTIVE_MIN_HOSTS: usize = 4;

/// Blobs up to this size travel inside the job request (one round trip
/// saved); larger ones the host fetches in chunks.
pub const INLINE_LIMIT: usize = 512 << 10;

/// Largest output accepted from a host.
pub const MAX_OUTPUT: u64 = 16 << 20;

/// Errors of a submission.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The state directory (key, database) could not be opened.
    #[error("cannot open the submitter state in {dir}: {why}")]
    State {
        /// The directory.
        dir: PathBuf,
        /// Why.
        why: String,
    },
    /// The options contradict each other.
    #[error("{0}")]
    Usage(String),
    /// No host to send the job to.
    #[error("{0}")]
    NoHost(String),
    /// The job was sent but no answer came back: it may or may not run.
    #[error("job {job} may or may not have run; ask with `biop2p status`")]
    MayHaveRun {
        /// The job id (hex).
        job: String,
        /// Why the answer did not come.
        #[source]
        source: Box<ClientError>,
    },
    /// The host's answer did not verify: nothing was accepted.
    #[error("the host's answer failed verification; nothing was accepted")]
    Unverified(#[source] VerifyError),
    /// The host does not know the job.
    #[error("the host does not know job {0} (it was never durably accepted)")]
    UnknownJob(String),
    /// The host answered a job request with a settlement message.
    #[error("the host answered a job request with a settlement")]
    Misanswered,
    /// `--replicas N`: no output reached a strict majority. What the
    /// replicas did answer is kept for the report.
    #[error("no output reached a strict majority of {replicas} replicas ({} answered)", .failed.receipts.len())]
    NoMajority {
        /// Replicas asked for.
        replicas: usize,
        /// The replicas' receipts, the missing and the disagreeing.
        failed: Box<Submitted>,
    },
    /// Adaptive: the coordinator could not confirm any output.
    #[error("no output could be confirmed: {reason:?}; nothing was accepted")]
    NoQuorum {
        /// The coordinator's reason.
        reason: GiveUpReason,
        /// Hosts quarantined so far.
        quarantined: Vec<PeerId>,
        /// Canaries sent.
        canaries: u64,
    },
    /// The coordinator accepted a job whose record is not in the store.
    #[error("the accepted job {0}'s record is missing from the store")]
    MissingRecord(String),
    /// The network failed.
    #[error(transparent)]
    Client(Box<ClientError>),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The trust coordinator failed.
    #[error(transparent)]
    Submitter(#[from] SubmitterError),
}

impl From<ClientError> for SubmitError {
    fn from(e: ClientError) -> Self {
        SubmitError::Client(Box::new(e))
    }
}

/// A submitter's own state: its key and its database (jobs, results, trust,
/// ledger), and the Thermal trails over the hosts it used.
pub struct SubmitterState {
    /// Its identity (the key every job is signed with).
    pub id: Identity,
    /// Jobs, results, trust and settlements.
    pub store: Arc<SubmitterStore>,
    /// The state directory.
    pub dir: PathBuf,
    /// Where the Thermal trails over hosts are kept.
    pub trails_path: PathBuf,
}

impl SubmitterState {
    /// Opens (or creates) the state in `dir`.
    pub fn open(dir: &Path) -> Result<Self, SubmitError> {
        let fail = |why: String| SubmitError::State {
            dir: dir.to_path_buf(),
            why,
        };
        std::fs::create_dir_all(dir).map_err(|e| fail(format!("cannot create it: {e}")))?;
        let id = Identity::load_or_create(dir).map_err(|e| fail(format!("the key: {e}")))?;
        let store = SubmitterStore::open(&dir.join("submitter"))
            .map_err(|e| fail(format!("the job database: {e}")))?;
        Ok(SubmitterState {
            id,
            store: Arc::new(store),
            trails_path: dir.join("trails.json"),
            dir: dir.to_path_buf(),
        })
    }
}

/// Where a submission finds its hosts.
#[derive(Debug, Clone)]
pub struct Reach {
    /// Hosts given by address: the job goes to these (in order) and no
    /// discovery is done.
    pub peers: Vec<Multiaddr>,
    /// Peers to find hosts through.
    pub bootstrap: Vec<Multiaddr>,
    /// Look for hosts on the LAN too.
    pub mdns: bool,
    /// Only hosts advertising in this swarm are considered.
    pub swarm: String,
    /// How long to spend finding hosts.
    pub discover: Duration,
    /// Young: with no trails of its own, start from those of experienced
    /// submitters that hosts carry; once experienced, publish its own.
    pub young: bool,
}

impl Default for Reach {
    fn default() -> Self {
        Reach {
            peers: Vec::new(),
            bootstrap: Vec::new(),
            mdns: true,
            swarm: "main".into(),
            discover: Duration::from_secs(10),
            young: true,
        }
    }
}

impl Reach {
    /// The client's network: discovery only when no host was named.
    pub fn net(&self) -> Result<NetworkConfig, SubmitError> {
        if !self.peers.is_empty() {
            let mut net = NetworkConfig::direct();
            net.swarm = self.swarm.clone();
            return Ok(net);
        }
        if !self.mdns && self.bootstrap.is_empty() {
            return Err(SubmitError::NoHost(
                "no host to submit to: give --peer, or --bootstrap, or allow mDNS".into(),
            ));
        }
        Ok(self.discovery_net())
    }

    /// The network for finding hosts: the bootstrap peers, mDNS as set.
    pub fn discovery_net(&self) -> NetworkConfig {
        let mut net = NetworkConfig::direct();
        net.mdns = self.mdns;
        net.bootstrap = self.bootstrap.iter().map(|b| b.to_string()).collect();
        net.swarm = self.swarm.clone();
        net
    }
}

/// What to run and how to verify it.
#[derive(Debug, Clone)]
pub struct SubmitOptions {
    /// Limits, price ceiling, arguments. Its `data` is filled in from
    /// [`SubmitOptions::data`].
    pub params: JobParams,
    /// Read-only data blobs, by name (the guest sees `/data/NAME`).
    pub data: Vec<(String, Arc<Vec<u8>>)>,
    /// Where the hosts are.
    pub reach: Reach,
    /// `Some(n)`: exactly `n` replicas, accepted on a strict majority.
    /// `None`: the coordinator decides.
    pub replicas: Option<usize>,
    /// Return once a host has durably accepted the job (single host only).
    pub detach: bool,
    /// Replicas that may be placed again after a failure.
    pub max_replacements: usize,
    /// How long a host may take before its replica goes elsewhere.
    pub deadline: Duration,
}

impl Default for SubmitOptions {
    fn default() -> Self {
        SubmitOptions {
            params: JobParams::default(),
            data: Vec::new(),
            reach: Reach::default(),
            replicas: None,
            detach: false,
            max_replacements: 3,
            deadline: Duration::from_secs(600),
        }
    }
}

/// How a submission was verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One host; its answer verified but not compared.
    Single,
    /// One host, returned at acceptance: no answer yet.
    Detached,
    /// Fixed replicas, strict majority.
    Majority(usize),
    /// The trust coordinator decided.
    Adaptive,
}

/// What a submission did.
#[derive(Debug, Clone)]
pub struct Submitted {
    /// The stored record: the accepted job, its host and its response.
    pub record: SubmitRecord,
    /// How it was verified.
    pub mode: Mode,
    /// Every verified receipt of the job's replicas.
    pub receipts: Vec<SignedReceipt>,
    /// Replicas whose output is the accepted one.
    pub accepted_replicas: usize,
    /// Replicas whose output differs from the accepted one.
    pub disagreeing: Vec<(PeerId, proto::Hash)>,
    /// Hosts tried that gave nothing usable, with why.
    pub missing: Vec<(String, String)>,
    /// Replicas placed again after a failure.
    pub replacements: usize,
    /// Whether the output was compared with other hosts' (or the
    /// coordinator accepted it on its rules).
    pub verified: bool,
    /// Adaptive: why the coordinator accepted it.
    pub reason: Option<AcceptReason>,
    /// Hosts the coordinator has quarantined.
    pub quarantined: Vec<PeerId>,
    /// Canaries the coordinator sent.
    pub canaries: u64,
}

impl Submitted {
    fn new(record: SubmitRecord, mode: Mode) -> Self {
        Submitted {
            record,
            mode,
            receipts: Vec::new(),
            accepted_replicas: 0,
            disagreeing: Vec::new(),
            missing: Vec::new(),
            replacements: 0,
            verified: false,
            reason: None,
            quarantined: Vec::new(),
            canaries: 0,
        }
    }

    /// The job's output, when it ran to completion.
    pub fn output(&self) -> Option<&[u8]> {
        match &self.record.response {
            Some(JobResponse::Done { output, .. }) => Some(output),
            _ => None,
        }
    }
}

/// What a submission tells its caller while it runs.
#[derive(Debug, Clone)]
pub enum Progress {
    /// What it is doing now (a spinner's message).
    Stage(String),
    /// Something the user should know (printed as is; starts with `note:`).
    Note(String),
}

/// Runs one job as `opts` says and returns what it did. The answer is
/// recorded in `state` before this returns; acceptances that could not be
/// delivered stay owed and go with the next submission to the host.
pub async fn submit(
    state: &SubmitterState,
    module: Vec<u8>,
    input: Vec<u8>,
    opts: &SubmitOptions,
    on: &mut (dyn FnMut(Progress) + Send),
) -> Result<Submitted, SubmitError> {
    match opts.replicas {
        Some(n) if n >= 2 => return replicated(state, module, input, opts, n, on).await,
        None if !opts.detach
            && (opts.reach.peers.is_empty() || opts.reach.peers.len() >= ADAPTIVE_MIN_HOSTS) =>
        {
            return adaptive(state, module, input, opts, on).await;
        }
        None if !opts.detach => on(Progress::Note(format!(
            "note: {} host(s) given, fewer than the {ADAPTIVE_MIN_HOSTS} adaptive replication needs: the job runs once and its output is not compared",
            opts.reach.peers.len()
        ))),
        _ => {}
    }
    if !(opts.detach || opts.reach.peers.len() == 1) {
        return replicated(state, module, input, opts, 1, on).await;
    }
    single(state, module, input, opts, on).await
}

/// A client for `state`, with the options' data blobs offered and their
/// references in the returned parameters.
async fn client_for(
    state: &SubmitterState,
    opts: &SubmitOptions,
) -> Result<(Client, JobParams), SubmitError> {
    let mut client = Client::new(state.id.clone(), &opts.reach.net()?, MAX_OUTPUT).await?;
    let mut params = opts.params.clone();
    params.data = opts
        .data
        .iter()
        .map(|(name, bytes)| client.offer_data(name, bytes.clone()))
        .collect();
    Ok((client, params))
}

/// Where the job may go, best first: the given addresses as they are, or
/// the discovered hosts whose adverts fit the job, ranked by the trails.
pub async fn candidates(
    reach: &Reach,
    client: &mut Client,
    trails: &mut Trails,
    spec: &proto::JobSpec,
    want: usize,
    on: &mut (dyn FnMut(Progress) + Send),
) -> Result<Vec<Candidate>, SubmitError> {
    if !reach.peers.is_empty() {
        return Ok(reach.peers.iter().cloned().map(Candidate::Addr).collect());
    }
    on(Progress::Stage("finding hosts".into()));
    let found = client
        .discover(
            want,
            |ad| placement::unfit(ad, spec).is_none(),
            Duration::from_millis(500),
            reach.discover,
        )
        .await;
    if reach.young {
        let now = super::host::unix_now_ms();
        if let Some(l) = young::learn_if_cold(client, trails, &YoungConfig::default(), now).await
            && l.elders > 0
        {
            on(Progress::Note(format!(
                "note: Young: no trails of its own yet; starting from {} elder(s)' ({} host(s) asked, {} answered)",
                l.elders, l.asked, l.answered
            )));
        }
    }
    let ranked = trails.rank(found, spec, super::host::unix_now_ms());
    if ranked.is_empty() {
        let known = client.known_hosts();
        if known.is_empty() {
            return Err(SubmitError::NoHost(format!(
                "no host found in {} s (swarm {:?}); start one with `biop2p host`, or give --peer or --bootstrap",
                reach.discover.as_secs(),
                reach.swarm
            )));
        }
        let mut why = String::new();
        for (p, ad) in &known {
            let reason = placement::unfit(ad, spec).unwrap_or_else(|| "fits".into());
            why.push_str(&format!("\n  {p}: {reason}"));
        }
        return Err(SubmitError::NoHost(format!(
            "none of the {} known host(s) fits this job (--max-price {}):{why}",
            known.len(),
            spec.max_price_per_mfuel
        )));
    }
    Ok(ranked
        .into_iter()
        .map(|(p, ad)| Candidate::Host(p, Box::new(ad)))
        .collect())
}

/// Connects to one candidate; returns the host, an address of it (empty
/// when its advert names none) and its advertised speed (0 when only an
/// address was given).
async fn connect_one(
    client: &mut Client,
    c: &Candidate,
    on: &mut (dyn FnMut(Progress) + Send),
) -> Result<(PeerId, Multiaddr, u64), ClientError> {
    let reached = connect_one_quiet(client, c, on).await;
    // E.g. that the host is reached only through a relay.
    for m in client.take_notes() {
        on(Progress::Note(format!("note: {m}")));
    }
    reached
}

async fn connect_one_quiet(
    client: &mut Client,
    c: &Candidate,
    on: &mut (dyn FnMut(Progress) + Send),
) -> Result<(PeerId, Multiaddr, u64), ClientError> {
    match c {
        Candidate::Addr(addr) => {
            on(Progress::Stage(format!("connecting to {addr}")));
            client.connect(addr).await.map(|p| (p, addr.clone(), 0))
        }
        Candidate::Host(p, ad) => client.connect_host(*p, ad).await.map(|()| {
            let addr = ad.addrs.first().and_then(|s| s.parse().ok());
            (*p, addr.unwrap_or_else(Multiaddr::empty), ad.fuel_per_sec)
        }),
    }
}

/// Connects to the candidates; returns the distinct hosts reached, each
/// with its advertised speed (0 when only an address was given). One that
/// cannot be reached is skipped with a note.
pub async fn connect_all(
    client: &mut Client,
    cands: Vec<Candidate>,
    on: &mut (dyn FnMut(Progress) + Send),
) -> Vec<(PeerId, u64)> {
    let mut hosts: Vec<(PeerId, u64)> = Vec::new();
    for c in cands {
        match connect_one(client, &c, on).await {
            Ok((p, _, speed)) if !hosts.iter().any(|(h, _)| *h == p) => hosts.push((p, speed)),
            Ok(_) => {}
            Err(e) => on(Progress::Note(format!("note: {e}; skipping that host"))),
        }
    }
    hosts
}

/// One host, the first reachable candidate; with `detach`, returns once it
/// has durably accepted the job.
async fn single(
    state: &SubmitterState,
    module: Vec<u8>,
    input: Vec<u8>,
    opts: &SubmitOptions,
    on: &mut (dyn FnMut(Progress) + Send),
) -> Result<Submitted, SubmitError> {
    let (mut client, params) = client_for(state, opts).await?;
    let job = client.make_job(&module, &input, &params);
    let job_id = job.id();
    let spec = job.verify().expect("own job verifies");
    let mut trails = Trails::load(&state.trails_path);
    let mut reached = None;
    for c in candidates(&opts.reach, &mut client, &mut trails, &spec, 1, on).await? {
        match connect_one(&mut client, &c, on).await {
            Ok((p, addr, _)) => {
                reached = Some((p, addr));
                break;
            }
            Err(e) => on(Progress::Note(format!("note: {e}; trying the next host"))),
        }
    }
    let (peer, addr) = reached.ok_or_else(|| {
        SubmitError::NoHost("no host could be reached; is it running? check --peer".into())
    })?;
    let inline = placement::inline_blobs(&[&module, &input], INLINE_LIMIT);
    client.offer_blob(Arc::new(module));
    client.offer_blob(Arc::new(input));
    let mut record = SubmitRecord {
        job: job.clone(),
        host_peer: peer.to_string(),
        host_addr: crate::net::with_peer_id(&addr, peer).to_string(),
        status: "queued".into(),
        response: None,
        submitted_at: unix_now(),
    };
    state.store.put(&job_id, &record).await?;
    on(Progress::Stage(format!(
        "uploading job {}",
        &proto::hex(&job_id)[..12]
    )));
    let resp = client
        .request(
            &peer,
            JobRequest::Submit {
                job,
                inline,
                wait: !opts.detach,
            },
        )
        .await
        .map_err(|source| SubmitError::MayHaveRun {
            job: proto::hex(&job_id),
            source: Box::new(source),
        })?;
    on(Progress::Stage("verifying receipt".into()));
    let detached = matches!(resp, JobResponse::Accepted { .. });
    record_response(state, &mut record, &job_id, &spec, &peer, resp).await?;
    accept_single(&mut client, state, &peer, &record, on).await;
    let mut out = Submitted::new(
        record,
        if detached {
            Mode::Detached
        } else {
            Mode::Single
        },
    );
    out.receipts = receipt_of(out.record.response.as_ref())
        .into_iter()
        .collect();
    out.accepted_replicas = out.receipts.len();
    Ok(out)
}

fn receipt_of(r: Option<&JobResponse>) -> Option<SignedReceipt> {
    match r {
        Some(JobResponse::Done { receipt, .. } | JobResponse::Failed { receipt, .. }) => {
            Some(receipt.clone())
        }
        _ => None,
    }
}

/// Accepts a single host's verified result (nothing to compare it with):
/// signs and stores the acceptance, then sends it. Does nothing until the
/// record holds a final, verified response (a detached job is accepted by
/// the `status` that collects it). One that is not delivered stays owed
/// and is sent again by the next batch or adaptive run reaching the host.
pub async fn accept_single(
    client: &mut Client,
    state: &SubmitterState,
    peer: &PeerId,
    record: &SubmitRecord,
    on: &mut (dyn FnMut(Progress) + Send),
) {
    if let Some(r @ (JobResponse::Done { receipt, .. } | JobResponse::Failed { receipt, .. })) =
        &record.response
        && let Ok(body) = receipt.verify()
        && let Err(e) = submitter::settle_majority(
            client,
            &state.store,
            &[(*peer, record.job.clone(), r.clone())],
            &body.output_hash,
        )
        .await
    {
        on(Progress::Note(format!(
            "note: the acceptance was not delivered ({e}); it is kept and owed"
        )));
    }
}

/// Checks a host's answer and records it: `queued`/`running` while it is
/// pending, `done`/`failed` with the verified response once final. Nothing
/// that fails verification is recorded.
pub async fn record_response(
    state: &SubmitterState,
    record: &mut SubmitRecord,
    job_id: &JobId,
    spec: &proto::JobSpec,
    peer: &PeerId,
    resp: JobResponse,
) -> Result<(), SubmitError> {
    record.status = match &resp {
        JobResponse::Accepted { .. } => "queued".into(),
        JobResponse::Pending { state: s, .. } => match s {
            proto::JobState::Queued => "queued".into(),
            proto::JobState::Running => "running".into(),
        },
        JobResponse::Done { .. } | JobResponse::Failed { .. } => {
            let v = verify_response(&resp, job_id, spec, peer).map_err(SubmitError::Unverified)?;
            record.response = Some(resp.clone());
            if v.output.is_some() { "done" } else { "failed" }.into()
        }
        JobResponse::Refused { .. } => {
            record.response = Some(resp.clone());
            "failed".into()
        }
        JobResponse::Unknown { .. } => return Err(SubmitError::UnknownJob(proto::hex(job_id))),
        JobResponse::Settled { .. }
        | JobResponse::Statement { .. }
        | JobResponse::Note { .. }
        | JobResponse::NoteAccepted { .. }
        | JobResponse::ReportKept { .. }
        | JobResponse::Reports { .. }
        | JobResponse::Hello => return Err(SubmitError::Misanswered),
    };
    state.store.put(job_id, record).await?;
    Ok(())
}

/// `n` distinct hosts, each its own signed job, waiting for all; outputs
/// compared by hash, accepted on a strict majority (with `n = 1`: the one
/// answer, not compared). Disagreeing and missing replicas are reported
/// with their host.
async fn replicated(
    state: &SubmitterState,
    module: Vec<u8>,
    input: Vec<u8>,
    opts: &SubmitOptions,
    n: usize,
    on: &mut (dyn FnMut(Progress) + Send),
) -> Result<Submitted, SubmitError> {
    if opts.detach {
        return Err(SubmitError::Usage(
            "--replicas needs the submitter to wait for the results; drop --detach".into(),
        ));
    }
    let (mut client, params) = client_for(state, opts).await?;
    let jobs: Vec<_> = (0..n + opts.max_replacements)
        .map(|_| client.make_job(&module, &input, &params))
        .collect();
    let spec = jobs[0].verify().expect("own job verifies");
    let mut trails = Trails::load(&state.trails_path);
    let cands = candidates(&opts.reach, &mut client, &mut trails, &spec, n, on).await?;
    let inline = placement::inline_blobs(&[&module, &input], INLINE_LIMIT);
    client.offer_blob(Arc::new(module));
    client.offer_blob(Arc::new(input));
    let mut job = jobs[0].clone();
    let plan = Plan {
        refill_from_adverts: opts.reach.peers.is_empty(),
        replicas: n,
        max_replacements: opts.max_replacements,
        deadline: opts.deadline,
    };
    on(Progress::Stage(format!("running on {n} host(s)")));
    let report =
        placement::run_replicas(&mut client, jobs, &inline, cands, &plan, &mut trails, |m| {
            on(Progress::Note(format!("note: {m}")))
        })
        .await?;
    let winner = report.majority(n);
    if let Some((h, _)) = winner
        && let Some(w) = report.answers.iter().find(|x| x.output_hash == h)
    {
        job = w.job.clone();
    }
    let job_id = job.id();
    // Thermal: run_replicas updated the trails with what replicas revealed;
    // Young: experienced trails are offered to other submitters.
    if opts.reach.young {
        young::publish_if_due(
            &mut client,
            &mut trails,
            &YoungConfig::default(),
            super::host::unix_now_ms(),
        )
        .await;
    }
    if let Err(e) = trails.save(&state.trails_path, super::host::unix_now_ms()) {
        on(Progress::Note(format!(
            "note: cannot save host trails: {e}"
        )));
    }
    let answers = &report.answers;
    let disagreeing: Vec<(PeerId, proto::Hash)> = report
        .disagreeing(winner.map(|w| w.0))
        .iter()
        .map(|a| (a.peer, a.output_hash))
        .collect();
    for (p, h) in &disagreeing {
        on(Progress::Note(format!(
            "note: replica on {p} disagrees (output {})",
            proto::hex(h)
        )));
    }
    let first = answers.first();
    let record = SubmitRecord {
        job: job.clone(),
        host_peer: first.map(|x| x.peer.to_string()).unwrap_or_default(),
        host_addr: first
            .and_then(|x| {
                x.addr
                    .as_ref()
                    .map(|ad| crate::net::with_peer_id(ad, x.peer).to_string())
            })
            .unwrap_or_default(),
        status: "failed".into(),
        response: None,
        submitted_at: unix_now(),
    };
    let mut out = Submitted::new(record, Mode::Majority(n));
    out.receipts = answers
        .iter()
        .filter_map(|x| receipt_of(Some(&x.response)))
        .collect();
    out.disagreeing = disagreeing;
    out.missing = report
        .missing
        .iter()
        .map(|m| (m.host.clone(), m.error.clone()))
        .collect();
    out.replacements = report.replacements;
    out.verified = n >= 2;
    let Some((hash, count)) = winner else {
        state.store.put(&job_id, &out.record).await?;
        return Err(SubmitError::NoMajority {
            replicas: n,
            failed: Box::new(out),
        });
    };
    let chosen = answers
        .iter()
        .find(|x| x.output_hash == hash)
        .expect("winner answered")
        .response
        .clone();
    out.record.status = if matches!(chosen, JobResponse::Done { .. }) {
        "done"
    } else {
        "failed"
    }
    .into();
    out.record.response = Some(chosen);
    out.accepted_replicas = count;
    state.store.put(&job_id, &out.record).await?;
    // Verified: accept and pay the majority's replicas, nobody else.
    let settle: Vec<_> = answers
        .iter()
        .map(|x| (x.peer, x.job.clone(), x.response.clone()))
        .collect();
    if let Err(e) = submitter::settle_majority(&mut client, &state.store, &settle, &hash).await {
        on(Progress::Note(format!(
            "note: the acceptances were not all delivered ({e}); they are kept and owed"
        )));
    }
    Ok(out)
}

/// Without `replicas`: the trust coordinator places, replicates, compares
/// and judges (see [`super::submitter`]). With fewer reachable hosts than
/// it needs, the job runs once and says so.
async fn adaptive(
    state: &SubmitterState,
    module: Vec<u8>,
    input: Vec<u8>,
    opts: &SubmitOptions,
    on: &mut (dyn FnMut(Progress) + Send),
) -> Result<Submitted, SubmitError> {
    let client = Client::new(state.id.clone(), &opts.reach.net()?, MAX_OUTPUT).await?;
    let config = SubmitterConfig {
        deadline: opts.deadline,
        sandbox_dir: Some(state.dir.join("sandbox")),
        ..SubmitterConfig::default()
    };
    let mut s =
        Submitter::new(client, state.store.clone(), config)?.with_trails(state.trails_path.clone());
    let mut params = opts.params.clone();
    params.data = opts
        .data
        .iter()
        .map(|(name, bytes)| s.offer_data(name, bytes.clone()))
        .collect();
    // Never sent: only its spec, to judge which adverts fit.
    let probe = s.client().make_job(&module, &input, &params);
    let spec = probe.verify().expect("own job verifies");
    let mut trails = Trails::load(&state.trails_path);
    let cands = candidates(
        &opts.reach,
        s.client(),
        &mut trails,
        &spec,
        ADAPTIVE_MIN_HOSTS,
        on,
    )
    .await?;
    let hosts = connect_all(s.client(), cands, on).await;
    if hosts.len() < ADAPTIVE_MIN_HOSTS {
        drop(s);
        on(Progress::Note(format!(
            "note: {} host(s) reachable, fewer than the {ADAPTIVE_MIN_HOSTS} adaptive replication needs: the job runs once and its output is not compared",
            hosts.len()
        )));
        return replicated(state, module, input, opts, 1, on).await;
    }
    s.join(hosts)?;
    if let Some(n) = s.diversity_note() {
        on(Progress::Note(n.to_string()));
    }
    on(Progress::Stage(
        "running; the coordinator decides the replicas".into(),
    ));
    let task = TaskInput {
        module: Arc::new(module),
        input: Arc::new(input),
        params,
    };
    let outcome = s
        .run(vec![task], |m| on(Progress::Note(m.to_string())))
        .await?;
    if opts.reach.young {
        s.publish_trails(&YoungConfig::default()).await;
    }
    let canaries = s.summary().canaries;
    let quarantined: Vec<PeerId> = s.quarantined_now().iter().map(|(p, _)| *p).collect();
    match outcome.into_iter().next().map(|o| o.status) {
        Some(TaskStatus::Accepted {
            job_id,
            response,
            reason,
            receipts,
            ..
        }) => {
            let record = state
                .store
                .get(&job_id)?
                .ok_or_else(|| SubmitError::MissingRecord(proto::hex(&job_id)))?;
            let winner = receipt_of(Some(&response))
                .and_then(|r| r.verify().ok())
                .map(|b| b.output_hash);
            let mut out = Submitted::new(record, Mode::Adaptive);
            out.accepted_replicas = receipts
                .iter()
                .filter(|r| r.verify().ok().map(|b| b.output_hash) == winner)
                .count();
            out.receipts = receipts;
            out.reason = Some(reason);
            out.verified = true;
            out.quarantined = quarantined;
            out.canaries = canaries;
            Ok(out)
        }
        Some(TaskStatus::GaveUp(reason)) => Err(SubmitError::NoQuorum {
            reason,
            quarantined,
            canaries,
        }),
        None => Err(SubmitError::NoHost(
            "the coordinator decided nothing".into(),
        )),
    }
}

/// One host's quote: its price and what the job may cost there at most.
#[derive(Debug, Clone)]
pub struct QuoteRow {
    /// The host.
    pub peer: PeerId,
    /// Its advertised price per million fuel.
    pub price_per_mfuel: u64,
    /// The job's fuel cap at that price, rounded up.
    pub max_cost: u64,
    /// Whether the price is within the job's ceiling (a host above it
    /// would refuse `price_too_low`).
    pub within_max_price: bool,
}

/// The hosts the job would go to, each with its price and what the job may
/// cost there at most. Nothing is sent: the job is signed only to judge
/// which adverts fit.
pub async fn quote(
    state: &SubmitterState,
    module: &[u8],
    input: &[u8],
    opts: &SubmitOptions,
    on: &mut (dyn FnMut(Progress) + Send),
) -> Result<Vec<QuoteRow>, SubmitError> {
    let (mut client, params) = client_for(state, opts).await?;
    let probe = client.make_job(module, input, &params);
    let spec = probe.verify().expect("own job verifies");
    let want = opts
        .replicas
        .unwrap_or(ADAPTIVE_MIN_HOSTS)
        .max(opts.reach.peers.len());
    let mut hosts: Vec<(PeerId, Advert)> = Vec::new();
    if opts.reach.peers.is_empty() {
        let mut trails = Trails::load(&state.trails_path);
        for c in candidates(&opts.reach, &mut client, &mut trails, &spec, want, on).await? {
            if let Candidate::Host(p, ad) = c {
                hosts.push((p, *ad));
            }
        }
    } else {
        let mut peers = Vec::new();
        for addr in &opts.reach.peers {
            on(Progress::Stage(format!("connecting to {addr}")));
            peers.push(client.connect(addr).await?);
        }
        on(Progress::Stage("waiting for the hosts' adverts".into()));
        let found = client
            .discover(
                peers.len(),
                |_| true,
                Duration::from_millis(300),
                opts.reach.discover,
            )
            .await;
        hosts = found
            .into_iter()
            .filter(|(p, _)| peers.contains(p))
            .collect();
        if hosts.is_empty() {
            return Err(SubmitError::NoHost(format!(
                "no advert from the given host(s) within {} s",
                opts.reach.discover.as_secs()
            )));
        }
    }
    Ok(hosts
        .iter()
        .map(|(p, ad)| QuoteRow {
            peer: *p,
            price_per_mfuel: ad.price_per_mfuel,
            max_cost: security::settlement::max_cost(params.fuel, ad.price_per_mfuel),
            within_max_price: ad.price_per_mfuel <= params.max_price_per_mfuel,
        })
        .collect())
}

/// Asks the host of a recorded job what became of it (`wait`: until it is
/// final), records the verified answer and, once it is final, accepts it.
/// The host is looked for at its recorded address first, without
/// discovery (nothing goes to the LAN when it is where it was), then
/// through the swarm (`reach`'s bootstrap peers and mDNS) for `reach.discover`.
pub async fn collect(
    state: &SubmitterState,
    record: &mut SubmitRecord,
    wait: bool,
    reach: &Reach,
    on: &mut (dyn FnMut(Progress) + Send),
) -> Result<(), SubmitError> {
    let job_id = record.job.id();
    let spec = record
        .job
        .verify()
        .map_err(|e| SubmitError::Usage(format!("the stored job no longer verifies: {e}")))?;
    let bad = |what: &str| SubmitError::Usage(format!("the stored record's {what} is unreadable"));
    let addr: Multiaddr = record.host_addr.parse().map_err(|_| bad("host address"))?;
    let peer: PeerId = record.host_peer.parse().map_err(|_| bad("host peer id"))?;
    let mut client = Client::new(state.id.clone(), &NetworkConfig::direct(), MAX_OUTPUT).await?;
    if let Err(e) = client.connect(&crate::net::with_peer_id(&addr, peer)).await {
        // The host moved (restarted on another port or address): ask the
        // swarm where it is now.
        tracing::info!(error = %e, "the job's host is not at its recorded address");
        client = Client::new(state.id.clone(), &reach.discovery_net(), MAX_OUTPUT).await?;
        on(Progress::Stage(format!("looking for host {peer}")));
        client
            .reach(peer, None, &reach.bootstrap, reach.discover)
            .await
            .map_err(|e2| {
                SubmitError::NoHost(format!(
                    "not at its recorded address {addr} ({e}) and not found in the swarm ({e2}); is it running? give --bootstrap to look for it through a peer"
                ))
            })?;
    }
    let resp = client
        .request(&peer, JobRequest::Fetch { job_id, wait })
        .await?;
    record_response(state, record, &job_id, &spec, &peer, resp).await?;
    // Collected and verified now: pay for it (a detached job's only chance;
    // nothing happens while it is still pending).
    accept_single(&mut client, state, &peer, record, on).await;
    Ok(())
}
