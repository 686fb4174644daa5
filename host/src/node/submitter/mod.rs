//! The submit flow in one place: a thin driver over `security::Coordinator`,
//! the same state machine `biop2p sim byzantine` measures.
//!
//! The coordinator decides who runs each task, how many replicas it needs
//! (adaptive replication), what is accepted, who is suspect or quarantined,
//! and when a canary goes where. This driver only does the IO:
//! - hosts join with the prefix their connection was observed from
//!   ([`prefix`]), never the region they declare;
//! - every `Dispatch` becomes its own signed job (own nonce, own job id),
//!   so no host can tell who else runs the task or fetch their output;
//! - answers are verified (signatures, bindings, output hash) before they
//!   become `ResultReturned`; refusals, transport failures and deadlines
//!   become `JobFailed`;
//! - canaries are real jobs with known answers: earlier accepted quorums,
//!   or a run in this process's own sandbox (counted in [`Summary`]);
//! - the reputation, the peer map and the evidence behind every state
//!   change are kept in the submitter's sled store after each change, so a
//!   `kill -9` of the submitter forgets no quarantine;
//! - Thermal trails are reinforced only by answers a quorum compared, never
//!   by an unverified one.
//!
//! The CLI (`submit`, `demo`, `trust`), and the tests submit through
//! [`Submitter`].

pub mod batch;
pub mod evidence;
pub mod prefix;
pub mod sharing;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use libp2p::PeerId;
use security::{
    AcceptReason, Action, Canary, Coordinator, Digest, Event, FailureKind, GiveUpReason,
    JobSpec as SecJob, PeerState, ReceiptFacts, Reputation, SecurityConfig, TaskId, TaskSpec,
};
use serde::{Deserialize, Serialize};

use super::client::{Client, ClientError, JobParams, RequestId};
use super::host::unix_now_ms;
use super::placement::inline_blobs;
use super::receipts::verify_response;
use super::trails::Trails;
use crate::proto::{
    self, AcceptanceBody, Hash, JobId, JobRequest, JobResponse, SettledEntry, SignedAcceptance,
    SignedJob, SignedReceipt,
};
use crate::sandbox::{DataSource, ErrorKind, Sandbox, Task, TaskData, TaskLimits, WasmModule};
use crate::store::{LedgerRecord, StoreError, SubmitRecord, SubmitterStore, unix_now};
use evidence::{LieReport, ReportError};
use security::settlement::{self, Claim, Entry, Party, Pay};

/// Blobs up to this size travel inside the job request.
const INLINE_LIMIT: usize = 512 << 10;
/// Known answers kept for canaries (each used once).
const MAX_KNOWN: usize = 256;
/// Verified answers kept until their task is decided.
const MAX_ANSWERS: usize = 8192;

/// Errors of the submitter.
#[derive(Debug, thiserror::Error)]
pub enum SubmitterError {
    /// The network failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The security configuration or a persisted state is unusable.
    #[error("security state: {0}")]
    Security(#[from] security::SecurityError),
    /// The persisted trust state does not decode.
    #[error("trust state in the store does not decode: {0}")]
    Corrupt(#[from] serde_json::Error),
    /// No host to submit to.
    #[error("no host joined: connect to hosts first")]
    NoHosts,
    /// A host answered something the protocol does not allow there.
    #[error("host {peer}: {what}")]
    BadAnswer {
        /// The host.
        peer: PeerId,
        /// What was wrong.
        what: String,
    },
}

/// How the submitter runs.
#[derive(Debug, Clone)]
pub struct SubmitterConfig {
    /// The coordinator's policy. Its `seed` should be secret and fresh per
    /// run (spot checks must be unpredictable); the default draws one.
    pub security: SecurityConfig,
    /// How long a host may take to answer one job.
    pub deadline: Duration,
    /// Tasks open at once (more queue here).
    pub max_open: usize,
    /// Local sandbox runs allowed for making canaries, in all. Each costs
    /// one execution here; 0 = canaries only from accepted quorums.
    pub local_canaries: usize,
    /// Data directory of the local sandbox (compiled-code cache); `None`
    /// disables local runs (and the checking of received reports).
    pub sandbox_dir: Option<std::path::PathBuf>,
    /// Fewer distinct observed prefixes than this: the coordinator may put
    /// replicas of one task in one prefix (distinct peers only), and says so.
    pub min_prefixes: usize,
    /// Send acceptances (and so pay) as soon as results are verified. Off,
    /// they are stored and owed but only sent by
    /// [`Submitter::deliver_settlements`] (tests hold them to crash a host
    /// between its receipt and the acceptance).
    pub settle: bool,
    /// Share trust reports through hosts' boards around every run
    /// ([`sharing`]): publish the lies caught here, read and re-run others'.
    pub share_reports: bool,
    /// Most fuel one re-run of a report read from a board may burn here.
    pub report_fuel: u64,
}

impl Default for SubmitterConfig {
    fn default() -> Self {
        SubmitterConfig {
            security: SecurityConfig {
                seed: rand::random(),
                ..SecurityConfig::default()
            },
            deadline: Duration::from_secs(600),
            max_open: 32,
            local_canaries: 8,
            sandbox_dir: None,
            min_prefixes: 4,
            settle: true,
            share_reports: true,
            report_fuel: 10_000_000_000,
        }
    }
}

/// One task to run.
#[derive(Debug, Clone)]
pub struct TaskInput {
    /// The module bytes.
    pub module: Arc<Vec<u8>>,
    /// The input bytes.
    pub input: Arc<Vec<u8>>,
    /// Limits, args, price ceiling.
    pub params: JobParams,
}

/// What became of one task.
#[derive(Debug, Clone)]
pub enum TaskStatus {
    /// Accepted.
    Accepted {
        /// The accepted replica's job id.
        job_id: JobId,
        /// The host whose (verified) answer is returned.
        host: PeerId,
        /// Done or Failed, verified.
        response: Box<JobResponse>,
        /// Why it was accepted.
        reason: AcceptReason,
        /// Every verified receipt of the task's replicas.
        receipts: Vec<SignedReceipt>,
    },
    /// Given up.
    GaveUp(GiveUpReason),
}

/// One task's outcome, in submission order.
#[derive(Debug, Clone)]
pub struct TaskOutcome {
    /// Index in the batch.
    pub index: usize,
    /// What happened.
    pub status: TaskStatus,
}

/// Totals so far (across batches of one submitter).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    /// Tasks decided.
    pub tasks: u64,
    /// Jobs dispatched in all: replicas, audits and canaries.
    pub dispatched: u64,
    /// Canaries sent (spot checks of trusted hosts and decoys to suspects).
    pub canaries: u64,
    /// Canaries whose answer came from a local sandbox run.
    pub local_canary_runs: u64,
    /// Fuel those local runs burnt (their cost).
    pub local_canary_fuel: u64,
    /// Wall time of those local runs, ms.
    pub local_canary_ms: u64,
}

/// What `trust` shows per host.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostTrust {
    /// The host.
    pub peer_id: String,
    /// `newcomer`, `trusted`, `suspect` or `quarantined`.
    pub state: String,
    /// Reputation score (beta mean).
    pub score: f64,
    /// Lifetime verified agreements.
    pub agreements: u64,
    /// Lifetime disagreements and failed canaries.
    pub disagreements: u64,
    /// Observed prefix.
    pub prefix: String,
}

/// One entry of the evidence log: a state change or an accusation, with
/// the job and receipts behind it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvidenceEntry {
    /// Unix ms.
    pub at_ms: u64,
    /// The host.
    pub peer_id: String,
    /// What happened: `state`, `lie`, `over_claim` or `statement_mismatch`.
    pub kind: String,
    /// For `state`: `from->to (rule)`; for `lie`: what was wrong.
    pub detail: String,
    /// The job (hex id) behind it, if one.
    pub job_id: Option<String>,
    /// The signed report (for `lie`), in [`LieReport::to_text`] form; for
    /// `statement_mismatch`, the host's signed statement (postcard, base64).
    pub report: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
struct PeerMap {
    /// Security id (hex) → (libp2p peer id, prefix label).
    peers: HashMap<String, (String, String)>,
}

/// Security id → libp2p peer id, and security id → prefix label.
type PeerIndex = (
    HashMap<security::PeerId, PeerId>,
    HashMap<security::PeerId, String>,
);

impl PeerMap {
    /// The stored map, split into the two lookups the submitter keeps;
    /// entries that no longer parse are dropped.
    fn decode(bytes: Option<&[u8]>) -> Result<PeerIndex, SubmitterError> {
        let map: PeerMap = match bytes {
            Some(b) => serde_json::from_slice(b)?,
            None => PeerMap::default(),
        };
        let mut ids = HashMap::new();
        let mut labels = HashMap::new();
        for (k, (p, l)) in map.peers {
            if let (Some(s), Ok(p)) = (security::PeerId::from_hex(&k), p.parse()) {
                ids.insert(s, p);
                labels.insert(s, l);
            }
        }
        Ok((ids, labels))
    }
}

/// What a dispatch carries, found by the (module, input) digests of the
/// coordinator's job.
#[derive(Debug, Clone)]
struct Payload {
    module: Arc<Vec<u8>>,
    input: Arc<Vec<u8>>,
    params: JobParams,
    /// The bytes of `params.data`, for local runs (canaries).
    data: Vec<TaskData>,
}

type PayloadKey = (Digest, Digest);

#[derive(Debug, Clone)]
struct Sent {
    coord_job: u64,
    job: SignedJob,
    spec: proto::JobSpec,
    peer: PeerId,
    key: PayloadKey,
}

#[derive(Debug, Clone)]
struct Answer {
    key: PayloadKey,
    peer: PeerId,
    job: SignedJob,
    digest: Digest,
    response: JobResponse,
}

#[derive(Debug, Clone)]
struct Known {
    key: PayloadKey,
    fuel_limit: u64,
    output: Digest,
    fuel: u64,
    peak: u64,
}

/// The security crate's id of a host: its ed25519 key (what its receipts
/// are signed with), or a hash of the peer id for other key types.
pub fn security_id(peer: &PeerId) -> security::PeerId {
    let mh = peer.as_ref();
    if mh.code() == 0
        && let Ok(pk) = libp2p::identity::PublicKey::try_decode_protobuf(mh.digest())
        && let Ok(ed) = pk.try_into_ed25519()
    {
        return security::PeerId(ed.to_bytes());
    }
    security::PeerId(*blake3::hash(&peer.to_bytes()).as_bytes())
}

/// The digest the coordinator compares for an answer: the output hash, or
/// the deterministic failure kind (a trap is an answer too).
fn answer_digest(resp: &JobResponse, output_hash: &Hash) -> Digest {
    match resp {
        JobResponse::Failed { kind, .. } => failure_digest(kind),
        _ => Digest(*output_hash),
    }
}

fn failure_digest(kind: &str) -> Digest {
    let mut h = blake3::Hasher::new();
    h.update(b"failed:");
    h.update(kind.as_bytes());
    Digest(*h.finalize().as_bytes())
}

/// The task's identity as the coordinator sees it: everything that
/// determines the output.
fn payload_key(module: &[u8], input: &[u8], p: &JobParams) -> PayloadKey {
    let m = Digest(*blake3::hash(module).as_bytes());
    let mut h = blake3::Hasher::new();
    h.update(blake3::hash(input).as_bytes());
    for a in &p.args {
        h.update(&(a.len() as u64).to_be_bytes());
        h.update(a.as_bytes());
    }
    h.update(&p.memory_bytes.to_be_bytes());
    h.update(&[u8::from(p.portable), u8::from(p.scratch)]);
    for d in &p.data {
        h.update(&(d.name.len() as u64).to_be_bytes());
        h.update(d.name.as_bytes());
        h.update(&d.hash);
    }
    (m, Digest(*h.finalize().as_bytes()))
}

/// The submitter: one client, one coordinator, one store.
pub struct Submitter {
    client: Client,
    store: Arc<SubmitterStore>,
    config: SubmitterConfig,
    coord: Coordinator,
    trails: Trails,
    trails_path: Option<std::path::PathBuf>,
    ids: HashMap<security::PeerId, PeerId>,
    labels: HashMap<security::PeerId, String>,
    joined: HashSet<PeerId>,
    payloads: HashMap<PayloadKey, Payload>,
    /// Data blobs offered with [`Submitter::offer_data`], by hash.
    data_blobs: HashMap<proto::Hash, Arc<Vec<u8>>>,
    payload_order: VecDeque<PayloadKey>,
    sent: HashMap<RequestId, Sent>,
    answers: HashMap<u64, Answer>,
    answer_order: VecDeque<u64>,
    known: VecDeque<Known>,
    canaries_wanted: usize,
    local_runs_left: usize,
    local_busy: bool,
    local_tx: tokio::sync::mpsc::Sender<Option<(Known, u64, u64)>>,
    local_rx: tokio::sync::mpsc::Receiver<Option<(Known, u64, u64)>>,
    sandbox: Option<Sandbox>,
    summary: Summary,
    pending_events: VecDeque<Event>,
    log: Vec<EvidenceEntry>,
    dirty: bool,
    quarantined_now: Vec<(PeerId, String)>,
    distinct_note: Option<String>,
    /// Open tasks' payloads.
    task_keys: HashMap<TaskId, PayloadKey>,
    /// Outputs of re-runs done for a received report, by accused job.
    verify_cache: HashMap<u64, Digest>,
    /// Settled entries decided and not yet stored (stored, then sent, at
    /// the next persist).
    outbox: Vec<(PeerId, LedgerRecord)>,
    /// `Settle` requests in flight, by request.
    settling: HashMap<RequestId, JobId>,
    /// Known answers of canaries served (output, fuel), by payload: a
    /// canary is paid like any job, against its known answer.
    canary_answers: HashMap<PayloadKey, (Digest, u64)>,
}

impl Submitter {
    /// A submitter over `client`, resuming the trust state in `store`.
    /// Hosts join with [`Submitter::join`].
    pub fn new(
        client: Client,
        store: Arc<SubmitterStore>,
        config: SubmitterConfig,
    ) -> Result<Self, SubmitterError> {
        let (rep, peers) = store.trust()?;
        let mut reputation = match rep {
            Some(b) => serde_json::from_slice::<Reputation>(&b)?,
            None => Reputation::new(config.security.reputation.clone())?,
        };
        // Nobody is connected yet: whoever was online when the state was
        // saved must join again before it gets work.
        let online: Vec<security::PeerId> = reputation
            .peers()
            .filter(|(_, r)| r.online)
            .map(|(p, _)| *p)
            .collect();
        for p in online {
            reputation.leave(&p)?;
        }
        let (ids, labels) = PeerMap::decode(peers.as_deref())?;
        let coord = Coordinator::with_reputation(config.security.clone(), reputation)?;
        let sandbox =
            config
                .sandbox_dir
                .as_ref()
                .and_then(|d| match super::calibration::open_sandbox(d) {
                    Ok(s) => Some(s),
                    Err(e) => {
                        tracing::warn!(error = %e, "no local sandbox: canaries only from quorums");
                        None
                    }
                });
        let (local_tx, local_rx) = tokio::sync::mpsc::channel(4);
        Ok(Submitter {
            client,
            store,
            local_runs_left: config.local_canaries,
            config,
            coord,
            trails: Trails::new(),
            trails_path: None,
            ids,
            labels,
            joined: HashSet::new(),
            payloads: HashMap::new(),
            payload_order: VecDeque::new(),
            sent: HashMap::new(),
            answers: HashMap::new(),
            answer_order: VecDeque::new(),
            known: VecDeque::new(),
            canaries_wanted: 0,
            local_busy: false,
            local_tx,
            local_rx,
            sandbox,
            summary: Summary::default(),
            pending_events: VecDeque::new(),
            log: Vec::new(),
            dirty: false,
            quarantined_now: Vec::new(),
            distinct_note: None,
            task_keys: HashMap::new(),
            verify_cache: HashMap::new(),
            data_blobs: HashMap::new(),
            outbox: Vec::new(),
            settling: HashMap::new(),
            canary_answers: HashMap::new(),
        })
    }

    /// Keeps Thermal trails in this file (loaded now, saved after runs).
    pub fn with_trails(mut self, path: std::path::PathBuf) -> Self {
        self.trails = Trails::load(&path);
        self.trails_path = Some(path);
        self
    }

    /// Offers `bytes` as the read-only data blob `name` of this
    /// submitter's jobs (to hosts, and to its own canary runs); put the
    /// returned reference in [`JobParams::data`].
    pub fn offer_data(&mut self, name: &str, bytes: Arc<Vec<u8>>) -> proto::DataRef {
        let r = self.client.offer_data(name, bytes.clone());
        self.data_blobs.insert(r.hash, bytes);
        r
    }

    /// The files of `params.data` for a local run (empty where a blob was
    /// not offered: that run then fails, and proves nothing).
    fn task_data(&self, params: &JobParams) -> Vec<TaskData> {
        params
            .data
            .iter()
            .map(|d| TaskData {
                name: d.name.clone(),
                hash: d.hash,
                source: DataSource::Bytes(
                    self.data_blobs.get(&d.hash).cloned().unwrap_or_default(),
                ),
            })
            .collect()
    }

    /// The client (to connect, discover, offer blobs).
    pub fn client(&mut self) -> &mut Client {
        &mut self.client
    }

    /// The coordinator (read-only: its reputation, stats, spot-check rates).
    pub fn coordinator(&self) -> &Coordinator {
        &self.coord
    }

    /// Totals so far.
    pub fn summary(&self) -> Summary {
        let s = self.coord.stats();
        Summary {
            dispatched: s.replicas + s.audits + s.spot_canaries + s.decoys,
            canaries: s.spot_canaries + s.decoys,
            ..self.summary.clone()
        }
    }

    /// The Thermal trails (hints for ranking, updated only by compared answers).
    pub fn trails(&self) -> &Trails {
        &self.trails
    }

    /// Young: offers these trails to other submitters through the hosts
    /// when they are experienced enough and not published lately (see
    /// `node::young`), and saves the mark. Returns how many hosts carry
    /// them now.
    pub async fn publish_trails(&mut self, cfg: &roles::YoungConfig) -> usize {
        let now = unix_now_ms();
        let kept = super::young::publish_if_due(&mut self.client, &mut self.trails, cfg, now).await;
        if kept > 0
            && let Some(p) = &self.trails_path
            && let Err(e) = self.trails.save(p, now)
        {
            tracing::warn!(error = %e, "cannot save trails");
        }
        kept
    }

    /// Hosts quarantined during this submitter's life, with why.
    pub fn quarantined_now(&self) -> &[(PeerId, String)] {
        &self.quarantined_now
    }

    /// A note when verification diversity fell back to distinct peers.
    pub fn diversity_note(&self) -> Option<&str> {
        self.distinct_note.as_deref()
    }

    /// Connected hosts join the coordinator, each with the prefix its
    /// connection was observed from. Call once the hosts are connected
    /// (and again for later ones). With fewer distinct prefixes than
    /// `min_prefixes`, replicas may share a prefix (distinct peers still).
    pub fn join(
        &mut self,
        hosts: impl IntoIterator<Item = (PeerId, u64)>,
    ) -> Result<usize, SubmitterError> {
        let now = unix_now_ms();
        let mut fresh = Vec::new();
        for (peer, fuel_per_sec) in hosts {
            if self.joined.contains(&peer) || !self.client.is_connected(&peer) {
                continue;
            }
            match self
                .client
                .remote_addr(&peer)
                .and_then(prefix::observed_prefix)
            {
                Some(pfx) => fresh.push((peer, fuel_per_sec, pfx)),
                None => tracing::debug!(%peer, "no observed IP prefix; not joined"),
            }
        }
        if self.joined.is_empty() && self.coord.open_tasks() == 0 {
            // The first hosts decide whether prefixes can be kept apart.
            let prefixes: HashSet<security::Region> =
                fresh.iter().map(|(_, _, p)| p.region).collect();
            let distinct = prefixes.len() >= self.config.min_prefixes;
            let mut cfg = self.config.security.clone();
            cfg.placement.distinct_regions = cfg.placement.distinct_regions && distinct;
            let rep = self.coord.reputation().clone();
            self.coord = Coordinator::with_reputation(cfg, rep)?;
            self.canaries_wanted = 0;
            self.distinct_note = (!distinct).then(|| {
                format!(
                    "note: the {} host(s) come from {} network prefix(es), fewer than {}: replicas of a task go to distinct hosts, not distinct prefixes",
                    fresh.len(),
                    prefixes.len(),
                    self.config.min_prefixes
                )
            });
        }
        let n = fresh.len();
        for (peer, fuel_per_sec, pfx) in fresh {
            let sid = security_id(&peer);
            self.ids.insert(sid, peer);
            self.labels.insert(sid, pfx.label.clone());
            self.coord.handle(
                now,
                Event::PeerJoined {
                    peer: sid,
                    region: pfx.region,
                    advertised_fuel_per_ms: fuel_per_sec / 1000,
                },
            )?;
            self.joined.insert(peer);
        }
        self.dirty = true;
        self.drain(now)?;
        Ok(n)
    }

    /// Runs `tasks` to a decision each: placed, replicated, compared and
    /// accepted (or given up) as the coordinator decides. `note` hears what
    /// people should know (quarantines), prefixed `note:`.
    pub async fn run(
        &mut self,
        tasks: Vec<TaskInput>,
        mut note: impl FnMut(&str),
    ) -> Result<Vec<TaskOutcome>, SubmitterError> {
        if self.joined.is_empty() {
            return Err(SubmitterError::NoHosts);
        }
        let total = tasks.len();
        let mut queue: VecDeque<(usize, TaskInput)> = tasks.into_iter().enumerate().collect();
        let mut open: HashMap<TaskId, (usize, PayloadKey)> = HashMap::new();
        let mut outcomes: Vec<TaskOutcome> = Vec::with_capacity(total);
        if self.config.share_reports {
            self.share_reports(self.config.report_fuel, &mut note)
                .await?;
        }
        let mut notes_seen = self.quarantined_now.len();
        self.resend_undelivered();
        while outcomes.len() < total || !self.sent.is_empty() || !self.settling.is_empty() {
            // Feed tasks while there is room.
            while open.len() < self.config.max_open
                && let Some((index, t)) = queue.pop_front()
            {
                let key = payload_key(&t.module, &t.input, &t.params);
                self.remember(
                    key,
                    Payload {
                        module: t.module.clone(),
                        input: t.input.clone(),
                        params: t.params.clone(),
                        data: self.task_data(&t.params),
                    },
                );
                let tid = TaskId(rand::random());
                open.insert(tid, (index, key));
                self.task_keys.insert(tid, key);
                let spec = TaskSpec {
                    id: tid,
                    module_hash: key.0,
                    input_hash: key.1,
                    fuel_limit: t.params.fuel,
                };
                self.pending_events.push_back(Event::TaskSubmitted(spec));
            }
            let now = unix_now_ms();
            while let Some(ev) = self.pending_events.pop_front() {
                if let Err(e) = self.coord.handle(now, ev) {
                    tracing::debug!(error = %e, "event refused by the coordinator");
                }
            }
            for d in self.drain(now)? {
                match d {
                    Decided::Accepted(tid, status) | Decided::GaveUp(tid, status) => {
                        if let Some((index, _)) = open.remove(&tid) {
                            outcomes.push(TaskOutcome { index, status });
                            self.summary.tasks += 1;
                        }
                    }
                }
            }
            for (p, why) in &self.quarantined_now[notes_seen..] {
                note(&format!("note: host {p} quarantined: {why}"));
            }
            notes_seen = self.quarantined_now.len();
            if self.dirty {
                self.persist().await?;
            }
            self.settle_outbox().await?;
            if outcomes.len() >= total && self.sent.is_empty() && self.settling.is_empty() {
                break;
            }
            if !self.pending_events.is_empty() {
                continue;
            }
            let wake = self.coord.poll_timeout().unwrap_or(now + 1000);
            let sleep =
                tokio::time::sleep(Duration::from_millis(wake.saturating_sub(now).min(1000)));
            let woke = tokio::select! {
                (rid, r) = self.client.next_response() => Woke::Answer(rid, r),
                Some(local) = self.local_rx.recv() => Woke::Local(local),
                _ = sleep => Woke::Timer,
            };
            match woke {
                Woke::Answer(rid, r) => self.on_response(rid, r),
                Woke::Local(l) => self.on_local(l),
                Woke::Timer => {}
            }
            self.coord.handle_timeout(unix_now_ms());
        }
        self.persist().await?;
        if self.config.share_reports {
            self.share_reports(self.config.report_fuel, &mut note)
                .await?;
        }
        if let Some(p) = &self.trails_path
            && let Err(e) = self.trails.save(p, unix_now_ms())
        {
            tracing::warn!(error = %e, "cannot save trails");
        }
        outcomes.sort_by_key(|o| o.index);
        Ok(outcomes)
    }

    fn remember(&mut self, key: PayloadKey, p: Payload) {
        if self.payloads.insert(key, p).is_none() {
            self.payload_order.push_back(key);
        }
        // Bounded; payloads of known answers and open tasks are recent.
        while self.payload_order.len() > 4 * MAX_KNOWN + self.config.max_open {
            if let Some(old) = self.payload_order.pop_front() {
                self.payloads.remove(&old);
            }
        }
    }

    fn on_response(&mut self, rid: RequestId, r: Result<JobResponse, ClientError>) {
        if let Some(job) = self.settling.remove(&rid) {
            return self.on_settled(job, r);
        }
        let Some(s) = self.sent.remove(&rid) else {
            return;
        };
        let sid = security_id(&s.peer);
        let ev = match r {
            // Stopped at a debit note we did not sign: not an answer about
            // the task, and not the host's fault.
            Ok(JobResponse::Failed { kind, .. }) if kind == ErrorKind::Unpaid.as_str() => {
                Event::JobFailed {
                    job_id: s.coord_job,
                    kind: FailureKind::Error,
                }
            }
            Ok(resp @ (JobResponse::Done { .. } | JobResponse::Failed { .. })) => {
                match verify_response(&resp, &s.job.id(), &s.spec, &s.peer) {
                    Ok(v) => {
                        let digest = answer_digest(&resp, &v.receipt.output_hash);
                        let facts = ReceiptFacts {
                            job_id: s.coord_job,
                            host: sid,
                            module_hash: s.key.0,
                            input_hash: s.key.1,
                            output_hash: digest,
                            fuel_used: v.receipt.fuel_used,
                            peak_memory_bytes: v.receipt.peak_memory_bytes,
                            wall_ms: v.receipt.wall_us / 1000,
                        };
                        let answer = Answer {
                            key: s.key,
                            peer: s.peer,
                            job: s.job,
                            digest,
                            response: resp,
                        };
                        if !self.task_keys.values().any(|k| *k == s.key)
                            && let Some(&(known, fuel)) = self.canary_answers.get(&s.key)
                        {
                            // A canary: paid by the same rule as any job,
                            // against its known answer and fuel count.
                            self.settle_answer(&answer, &known, fuel);
                        }
                        self.answers.insert(s.coord_job, answer);
                        self.answer_order.push_back(s.coord_job);
                        while self.answer_order.len() > MAX_ANSWERS {
                            if let Some(old) = self.answer_order.pop_front() {
                                self.answers.remove(&old);
                            }
                        }
                        Event::ResultReturned {
                            job_id: s.coord_job,
                            receipt: facts,
                        }
                    }
                    Err(e) => {
                        self.pending_events.push_back(Event::ProtocolViolation {
                            peer: sid,
                            detail: format!("answer failed verification: {e}"),
                        });
                        Event::JobFailed {
                            job_id: s.coord_job,
                            kind: FailureKind::Error,
                        }
                    }
                }
            }
            Ok(JobResponse::Refused { reason, .. }) => {
                tracing::debug!(peer = %s.peer, %reason, "refused");
                Event::JobFailed {
                    job_id: s.coord_job,
                    kind: FailureKind::Refused,
                }
            }
            Ok(_) => Event::JobFailed {
                job_id: s.coord_job,
                kind: FailureKind::Error,
            },
            Err(e) => {
                tracing::debug!(peer = %s.peer, error = %e, "request failed");
                Event::JobFailed {
                    job_id: s.coord_job,
                    kind: FailureKind::Timeout,
                }
            }
        };
        // Every answer is evidence (a passed canary lowers a spot-check
        // rate without any other action): the reputation has changed, and
        // is saved with the next flush so a kill -9 cannot undo it.
        self.dirty = true;
        self.pending_events.push_back(ev);
    }

    fn on_local(&mut self, local: Option<(Known, u64, u64)>) {
        self.local_busy = false;
        if let Some((k, fuel, ms)) = local {
            self.summary.local_canary_runs += 1;
            self.summary.local_canary_fuel += fuel;
            self.summary.local_canary_ms += ms;
            self.known.push_back(k);
        }
        self.serve_canaries();
    }

    /// Drains the coordinator's actions into IO; returns decided tasks.
    fn drain(&mut self, now: u64) -> Result<Vec<Decided>, SubmitterError> {
        let mut decided = Vec::new();
        while let Some(a) = self.coord.poll() {
            match a {
                Action::Dispatch { peer, job, .. } => self.dispatch(peer, job),
                Action::Accept {
                    task,
                    output,
                    fuel,
                    reason,
                    ..
                } => {
                    if let Some(st) = self.accepted(task, output, fuel, reason) {
                        decided.push(Decided::Accepted(task, st));
                    }
                }
                Action::GiveUp { task, reason } => {
                    self.task_keys.remove(&task);
                    decided.push(Decided::GaveUp(task, TaskStatus::GaveUp(reason)));
                }
                Action::PeerState(change) => {
                    let peer = self.ids.get(&change.peer).copied();
                    let label = peer.map_or_else(|| change.peer.to_hex(), |p| p.to_string());
                    let detail = format!(
                        "{}->{} ({:?})",
                        state_name(change.from),
                        state_name(change.to),
                        change.rule
                    );
                    if let Some(p) = peer
                        && matches!(change.to, PeerState::Suspect | PeerState::Quarantined)
                    {
                        self.trails.punish(p, now);
                    }
                    if change.to == PeerState::Quarantined
                        && let Some(p) = peer
                    {
                        let why = self
                            .log
                            .iter()
                            .rev()
                            .find(|e| e.peer_id == label && e.kind == "lie")
                            .map_or_else(|| format!("{:?}", change.rule), |e| e.detail.clone());
                        self.quarantined_now.push((p, why));
                    }
                    self.log.push(EvidenceEntry {
                        at_ms: now,
                        peer_id: label,
                        kind: "state".into(),
                        detail,
                        job_id: None,
                        report: None,
                    });
                    self.dirty = true;
                }
                Action::NeedCanaries { count } => {
                    self.canaries_wanted += count;
                    self.serve_canaries();
                }
                Action::Accuse {
                    subject,
                    job,
                    receipt,
                } => self.accuse(subject, job, receipt),
                Action::Verify { check, job } => {
                    // Only received reports ask for re-runs, and
                    // `check_report` re-ran the job before feeding it.
                    if let Some(out) = self.verify_cache.remove(&job.job_id) {
                        self.pending_events
                            .push_back(Event::Verified { check, output: out });
                    }
                }
            }
        }
        Ok(decided)
    }

    fn dispatch(&mut self, peer: security::PeerId, job: SecJob) {
        let key = (job.module_hash, job.input_hash);
        let fail = |s: &mut Self| {
            s.pending_events.push_back(Event::JobFailed {
                job_id: job.job_id,
                kind: FailureKind::Error,
            })
        };
        let (Some(p), Some(payload)) = (self.ids.get(&peer).copied(), self.payloads.get(&key))
        else {
            return fail(self);
        };
        if !self.client.is_connected(&p) {
            self.pending_events.push_back(Event::PeerLeft { peer });
            self.joined.remove(&p);
            return fail(self);
        }
        let payload = payload.clone();
        let params = JobParams {
            fuel: job.fuel_limit,
            ..payload.params.clone()
        };
        // Its own signed job: fresh nonce, fresh id.
        let signed = self
            .client
            .make_job(&payload.module, &payload.input, &params);
        let spec = signed.verify().expect("own job verifies");
        let inline = inline_blobs(&[&payload.module, &payload.input], INLINE_LIMIT);
        self.client.offer_blob(payload.module.clone());
        self.client.offer_blob(payload.input.clone());
        let rid = self.client.send(
            &p,
            JobRequest::Submit {
                job: signed.clone(),
                inline,
                wait: true,
            },
        );
        self.sent.insert(
            rid,
            Sent {
                coord_job: job.job_id,
                job: signed,
                spec,
                peer: p,
                key,
            },
        );
    }

    fn accepted(
        &mut self,
        task: TaskId,
        output: Digest,
        fuel: u64,
        reason: AcceptReason,
    ) -> Option<TaskStatus> {
        // The task's answers: those of its payload (replicas of identical
        // tasks are interchangeable: same module, input and args).
        let key = self.task_keys.remove(&task)?;
        let winner = self
            .answers
            .values()
            .find(|a| a.key == key && a.digest == output)
            .cloned()?;
        let same: Vec<u64> = self
            .answers
            .iter()
            .filter(|(_, a)| a.key == winner.key)
            .map(|(j, _)| *j)
            .collect();
        let mut receipts = Vec::new();
        let now = unix_now_ms();
        for j in &same {
            let a = &self.answers[j];
            if let JobResponse::Done { receipt, .. } | JobResponse::Failed { receipt, .. } =
                &a.response
            {
                receipts.push(receipt.clone());
            }
            // Thermal: only compared answers reinforce a trail.
            if matches!(reason, AcceptReason::Quorum { .. }) && a.digest == output {
                self.trails.reinforce(a.peer, now);
            }
        }
        if let AcceptReason::Quorum { voters, .. } = reason
            && voters >= 2
            && self.known.len() < MAX_KNOWN
            && let JobResponse::Done { receipt, .. } | JobResponse::Failed { receipt, .. } =
                &winner.response
            && let Ok(body) = receipt.verify()
        {
            self.known.push_back(Known {
                key: winner.key,
                fuel_limit: winner.job.verify().map_or(0, |s| s.fuel),
                output,
                fuel: body.fuel_used,
                peak: body.peak_memory_bytes,
            });
            self.serve_canaries();
        }
        for j in same {
            if let Some(a) = self.answers.remove(&j) {
                // Every replica with the accepted answer is paid the
                // agreed fuel; the others nothing.
                self.settle_answer(&a, &output, fuel);
            }
        }
        let record = SubmitRecord {
            job: winner.job.clone(),
            host_peer: winner.peer.to_string(),
            host_addr: self
                .client
                .remote_addr(&winner.peer)
                .map(|a| a.to_string())
                .unwrap_or_default(),
            status: if matches!(winner.response, JobResponse::Done { .. }) {
                "done"
            } else {
                "failed"
            }
            .into(),
            response: Some(winner.response.clone()),
            submitted_at: unix_now(),
        };
        if let Err(e) = self.store.put_nowait(&winner.job.id(), &record) {
            tracing::warn!(error = %e, "cannot record an accepted job");
        }
        self.dirty = true;
        Some(TaskStatus::Accepted {
            job_id: winner.job.id(),
            host: winner.peer,
            response: Box::new(winner.response),
            reason,
            receipts,
        })
    }

    fn serve_canaries(&mut self) {
        let now = unix_now_ms();
        while self.canaries_wanted > 0
            && let Some(k) = self.known.pop_front()
        {
            self.canaries_wanted -= 1;
            let c = Canary {
                module_hash: k.key.0,
                input_hash: k.key.1,
                fuel_limit: k.fuel_limit,
                output_hash: k.output,
                fuel: k.fuel,
                peak_memory_bytes: k.peak,
            };
            if self.canary_answers.len() >= MAX_KNOWN {
                self.canary_answers.clear();
            }
            self.canary_answers.insert(k.key, (k.output, k.fuel));
            self.pending_events.push_back(Event::CanaryAvailable(c));
        }
        let _ = now;
        if self.canaries_wanted > 0
            && !self.local_busy
            && self.local_runs_left > 0
            && let Some(sandbox) = self.sandbox.clone()
            && let Some(key) = self.payload_order.back().copied()
            && let Some(p) = self.payloads.get(&key).cloned()
        {
            // No compared answer to reuse yet: compute one here.
            self.local_busy = true;
            self.local_runs_left -= 1;
            let tx = self.local_tx.clone();
            tokio::task::spawn_blocking(move || {
                let started = std::time::Instant::now();
                let r = sandbox.run(&local_task(&p));
                let ms = started.elapsed().as_millis() as u64;
                let digest = match &r.outcome {
                    Ok(_) => Digest(r.counters.output_hash),
                    Err(e) => failure_digest(e.kind().as_str()),
                };
                let k = Known {
                    key,
                    fuel_limit: p.params.fuel,
                    output: digest,
                    fuel: r.counters.fuel_used,
                    peak: r.counters.peak_memory_bytes,
                };
                let _ = tx.blocking_send(Some((k, r.counters.fuel_used, ms)));
            });
        }
    }

    fn accuse(&mut self, subject: security::PeerId, job: SecJob, receipt: ReceiptFacts) {
        let now = unix_now_ms();
        let Some(a) = self.answers.get(&job.job_id).cloned() else {
            return;
        };
        let Some(payload) = self.payloads.get(&a.key).cloned() else {
            return;
        };
        let signed = match &a.response {
            JobResponse::Done { receipt, .. } | JobResponse::Failed { receipt, .. } => {
                receipt.clone()
            }
            _ => return,
        };
        let _ = receipt;
        let peer = self.ids.get(&subject).copied();
        self.trails.punish(a.peer, now);
        let correct = self
            .known
            .iter()
            .find(|k| k.key == a.key)
            .map(|k| k.output.0)
            .unwrap_or([0; 32]);
        let report = LieReport::sign(
            &self.client.identity().signing,
            a.job.clone(),
            signed,
            correct,
            now,
            if payload.module.len() + payload.input.len() <= evidence::MAX_REPORT_BLOBS {
                payload.module.to_vec()
            } else {
                Vec::new()
            },
            if payload.module.len() + payload.input.len() <= evidence::MAX_REPORT_BLOBS {
                payload.input.to_vec()
            } else {
                Vec::new()
            },
        );
        self.log.push(EvidenceEntry {
            at_ms: now,
            peer_id: peer.map_or_else(|| subject.to_hex(), |p| p.to_string()),
            kind: "lie".into(),
            detail: format!(
                "job {} answered {} where the checked answer differs",
                &proto::hex(&a.job.id())[..12],
                &a.digest.to_hex()[..12]
            ),
            job_id: Some(proto::hex(&a.job.id())),
            report: Some(report.to_text()),
        });
        self.dirty = true;
    }

    /// Decides what one verified answer is paid once `accepted` and the
    /// agreed `fuel` are known; a paid one gets a signed acceptance, queued
    /// to be stored and sent. An over-claim is logged as evidence.
    fn settle_answer(&mut self, a: &Answer, accepted: &Digest, fuel: u64) {
        let Some((rec, over_claim)) = settlement_record(
            &self.client.identity().signing,
            &a.job,
            &a.response,
            &a.digest,
            accepted,
            fuel,
        ) else {
            return;
        };
        if let Some(extra) = over_claim {
            self.log.push(EvidenceEntry {
                at_ms: unix_now_ms(),
                peer_id: a.peer.to_string(),
                kind: "over_claim".into(),
                detail: format!(
                    "receipt claims {} fuel, the quorum counted {} ({extra} over); paid the count",
                    rec.entry.claimed_fuel, rec.entry.agreed_fuel
                ),
                job_id: Some(proto::hex(&rec.entry.job_id)),
                report: None,
            });
            self.dirty = true;
        }
        self.outbox.push((a.peer, rec));
    }

    /// Stores the decided settlements (flushed: from now on they are owed,
    /// whatever crashes) and then sends them.
    async fn settle_outbox(&mut self) -> Result<(), SubmitterError> {
        if self.outbox.is_empty() {
            return Ok(());
        }
        let out = std::mem::take(&mut self.outbox);
        let recs: Vec<LedgerRecord> = out.iter().map(|(_, r)| r.clone()).collect();
        self.store.put_settlements(&recs).await?;
        if self.config.settle {
            for (peer, rec) in out {
                self.send_settle(peer, rec);
            }
        }
        Ok(())
    }

    fn send_settle(&mut self, peer: PeerId, rec: LedgerRecord) {
        if !self.client.is_connected(&peer)
            || self.settling.values().any(|j| *j == rec.entry.job_id)
        {
            return;
        }
        let job = rec.entry.job_id;
        let rid = self.client.send(
            &peer,
            JobRequest::Settle {
                entry: rec.evidence,
            },
        );
        self.settling.insert(rid, job);
    }

    fn on_settled(&mut self, job: JobId, r: Result<JobResponse, ClientError>) {
        match r {
            Ok(JobResponse::Settled { job_id, new }) if job_id == job => {
                tracing::debug!(job = %proto::hex(&job), new, "settled");
                if let Err(e) = self.store.mark_delivered(&job) {
                    tracing::warn!(error = %e, "cannot mark a settlement delivered");
                }
            }
            // Kept undelivered: sent again later (idempotent on the host).
            Ok(other) => {
                tracing::info!(job = %proto::hex(&job), answer = ?std::mem::discriminant(&other), "settlement not confirmed")
            }
            Err(e) => {
                tracing::info!(job = %proto::hex(&job), error = %e, "settlement not delivered")
            }
        }
    }

    /// Sends every stored settlement its host has not confirmed yet, to
    /// hosts that are connected (a crash of either side, a lost answer).
    fn resend_undelivered(&mut self) {
        let Ok(owed) = undelivered(&self.store, |_| true) else {
            return;
        };
        for (peer, rec) in owed {
            self.send_settle(peer, rec);
        }
    }

    /// Sends every undelivered settlement to its (connected) host and waits
    /// for the answers, each bounded by the client's request timeout.
    /// Returns how many are still undelivered.
    pub async fn deliver_settlements(&mut self) -> Result<usize, SubmitterError> {
        self.settle_outbox().await?;
        self.resend_undelivered();
        while !self.settling.is_empty() {
            let (rid, r) = self.client.next_response().await;
            self.on_response(rid, r);
        }
        Ok(self.store.ledger()?.iter().filter(|r| !r.delivered).count())
    }

    /// Saves the reputation, the peer map and new evidence (one flush).
    pub async fn persist(&mut self) -> Result<(), SubmitterError> {
        let rep = serde_json::to_vec(self.coord.reputation())?;
        let map = PeerMap {
            peers: self
                .ids
                .iter()
                .map(|(s, p)| {
                    (
                        s.to_hex(),
                        (
                            p.to_string(),
                            self.labels.get(s).cloned().unwrap_or_default(),
                        ),
                    )
                })
                .collect(),
        };
        let log: Vec<Vec<u8>> = self
            .log
            .drain(..)
            .map(|e| serde_json::to_vec(&e).expect("entries encode"))
            .collect();
        self.store
            .put_trust(&rep, &serde_json::to_vec(&map)?, &log)
            .await?;
        self.dirty = false;
        Ok(())
    }

    /// Checks a received report: signatures, then a local re-run within
    /// `fuel_budget`. Only a re-run that contradicts the accused receipt
    /// is fed to the coordinator as evidence (which may then re-run it
    /// again through [`Action::Verify`]); one that matches it counts
    /// against the reporter. Forged reports change nothing; a genuine one
    /// that is not re-run here is only weighed ([`Self::weigh`]).
    pub async fn check_report(
        &mut self,
        report: &LieReport,
        fuel_budget: u64,
    ) -> Result<ReportVerdict, SubmitterError> {
        let checked = match report.check() {
            Ok(c) => c,
            Err(e) => return Ok(ReportVerdict::Ignored(e)),
        };
        let Some(sandbox) = self.sandbox.clone() else {
            return self
                .weigh(
                    &checked,
                    report.issued_at_ms,
                    "no local sandbox here".into(),
                )
                .await;
        };
        let params = JobParams {
            args: checked.spec.args.clone(),
            // Within the budget this receiver chooses: a re-run that runs
            // out of it proves nothing either way.
            fuel: checked.spec.fuel.min(fuel_budget),
            memory_bytes: checked.spec.memory_bytes,
            timeout_ms: None,
            scratch: checked.spec.scratch,
            portable: checked.spec.portable,
            ..JobParams::default()
        };
        if !checked.spec.data.is_empty() {
            // A report carries the module and input, not the data blobs:
            // without them a re-run would contradict an honest host.
            return self
                .weigh(
                    &checked,
                    report.issued_at_ms,
                    "the job has data blobs the report does not carry".into(),
                )
                .await;
        }
        let payload = Payload {
            module: Arc::new(report.module.clone()),
            input: Arc::new(report.input.clone()),
            params,
            data: Vec::new(),
        };
        let task = local_task(&payload);
        let r = tokio::task::spawn_blocking(move || sandbox.run(&task))
            .await
            .map_err(|e| SubmitterError::Client(ClientError::Placement(e.to_string())))?;
        // A re-run that fails here (out of the budget, a trap, a host
        // error) proves nothing against anyone: conservative on purpose.
        if let Err(e) = &r.outcome {
            let why = format!("the re-run did not finish here: {}", e.kind().as_str());
            return self.weigh(&checked, report.issued_at_ms, why).await;
        }
        let mine = r.counters.output_hash;
        let lied = mine != checked.body.output_hash;
        let subject = security_id(&checked.subject);
        let reporter = security_id(&checked.reporter);
        if self.coord.reputation().peer(&subject).is_none() {
            return Ok(ReportVerdict::Checked {
                lied,
                applied: false,
            });
        }
        let key = payload_key(&payload.module, &payload.input, &payload.params);
        let coord_job = u64::from_be_bytes(checked.body.job_id[..8].try_into().expect("8"));
        let acc = security::Accusation {
            reporter,
            subject,
            job: SecJob {
                job_id: coord_job,
                module_hash: key.0,
                input_hash: key.1,
                fuel_limit: checked.spec.fuel,
            },
            receipt: ReceiptFacts {
                job_id: coord_job,
                host: subject,
                module_hash: key.0,
                input_hash: key.1,
                output_hash: Digest(checked.body.output_hash),
                fuel_used: checked.body.fuel_used,
                peak_memory_bytes: checked.body.peak_memory_bytes,
                wall_ms: checked.body.wall_us / 1000,
            },
            issued_at: report.issued_at_ms,
        };
        self.verify_cache.insert(coord_job, Digest(mine));
        let now = unix_now_ms();
        let before = self.coord.stats().verifications;
        let r = self.coord.handle(now, Event::Accusation(acc));
        self.drain(now)?;
        while let Some(ev) = self.pending_events.pop_front() {
            let _ = self.coord.handle(now, ev);
            self.drain(now)?;
        }
        self.verify_cache.remove(&coord_job);
        let applied = r.is_ok() && self.coord.stats().verifications > before;
        self.persist().await?;
        Ok(ReportVerdict::Checked { lied, applied })
    }

    /// A genuine (signed) report this submitter cannot or will not re-run:
    /// a bare accusation. It is weighed by the reporter's own record here,
    /// as a signed trust report of one disagreement (the reputation's
    /// `apply_report`: the reporter's score times `report_weight`, less
    /// when we have seen the host ourselves). It moves the host's score,
    /// never its state, so no number of bare accusations quarantines a host
    /// on their own (no slander); and a reporter with no record here (a
    /// submitter we never worked with, as most are) weighs nothing.
    async fn weigh(
        &mut self,
        checked: &evidence::Checked,
        issued_at_ms: u64,
        why: String,
    ) -> Result<ReportVerdict, SubmitterError> {
        let subject = security_id(&checked.subject);
        let reporter = security_id(&checked.reporter);
        let rep = self.coord.reputation();
        let (Some(_), Some(r)) = (rep.peer(&subject), rep.peer(&reporter)) else {
            return Ok(ReportVerdict::Ignored(ReportError::Unverifiable(format!(
                "{why}; not re-run, and the reporter has no record here, so its word weighs nothing"
            ))));
        };
        if matches!(r.state, PeerState::Suspect | PeerState::Quarantined) {
            return Ok(ReportVerdict::Ignored(ReportError::Unverifiable(format!(
                "{why}; not re-run, and the reporter is {} here",
                state_name(r.state)
            ))));
        }
        let before = rep.score(&subject);
        let report = security::TrustReport {
            reporter,
            subject,
            agreements: 0,
            disagreements: 1,
            issued_at: issued_at_ms,
            // The reporter signed its issue time: a replayed report is
            // stale (sequences must rise per reporter).
            sequence: issued_at_ms,
        };
        let now = unix_now_ms();
        let r = self.coord.handle(
            now,
            Event::TrustReport {
                report,
                // `LieReport::check` verified the reporter's signature.
                signature_valid: true,
            },
        );
        self.drain(now)?;
        if let Err(e) = r {
            return Ok(ReportVerdict::Ignored(ReportError::Unverifiable(format!(
                "{why}; not re-run, and not weighed: {e}"
            ))));
        }
        self.dirty = true;
        self.persist().await?;
        Ok(ReportVerdict::Weighed {
            why,
            score_before: before,
            score_after: self.coord.reputation().score(&subject),
        })
    }

    /// The persisted hosts and evidence log (what `biop2p trust` shows).
    pub fn stored_trust(&self) -> Result<(Vec<HostTrust>, Vec<EvidenceEntry>), SubmitterError> {
        stored_trust(&self.store)
    }

    /// Every host this submitter knows, with its state and record.
    pub fn hosts(&self) -> Vec<HostTrust> {
        host_rows(self.coord.reputation(), &self.ids, &self.labels)
    }
}

/// What a received report did.
#[derive(Debug)]
pub enum ReportVerdict {
    /// Not believed, nothing changed.
    Ignored(ReportError),
    /// Not re-run here (`why`), but signed by a reporter with a record
    /// here: weighed as a bare accusation, which moved the host's score
    /// and never its state.
    Weighed {
        /// Why it was not re-run.
        why: String,
        /// The host's score before.
        score_before: f64,
        /// And after.
        score_after: f64,
    },
    /// Re-run here.
    Checked {
        /// The re-run contradicts the accused receipt.
        lied: bool,
        /// The coordinator took it as evidence (it only does for a host it
        /// trusts: others' work is replicated anyway).
        applied: bool,
    },
}

enum Woke {
    Answer(RequestId, Result<JobResponse, ClientError>),
    Local(Option<(Known, u64, u64)>),
    Timer,
}

enum Decided {
    Accepted(TaskId, TaskStatus),
    GaveUp(TaskId, TaskStatus),
}

/// The stable name of a state.
pub fn state_name(s: PeerState) -> &'static str {
    match s {
        PeerState::Newcomer => "newcomer",
        PeerState::Trusted => "trusted",
        PeerState::Suspect => "suspect",
        PeerState::Quarantined => "quarantined",
    }
}

fn host_rows(
    rep: &Reputation,
    ids: &HashMap<security::PeerId, PeerId>,
    labels: &HashMap<security::PeerId, String>,
) -> Vec<HostTrust> {
    let mut rows: Vec<HostTrust> = rep
        .peers()
        .map(|(s, r)| HostTrust {
            peer_id: ids.get(s).map_or_else(|| s.to_hex(), |p| p.to_string()),
            state: state_name(r.state).into(),
            score: rep.score(s),
            agreements: r.verified,
            disagreements: r.wrong,
            prefix: labels.get(s).cloned().unwrap_or_default(),
        })
        .collect();
    rows.sort_by(|a, b| a.peer_id.cmp(&b.peer_id));
    rows
}

/// What `biop2p trust` reads: the persisted hosts and evidence, without a
/// network.
pub fn stored_trust(
    store: &SubmitterStore,
) -> Result<(Vec<HostTrust>, Vec<EvidenceEntry>), SubmitterError> {
    let (rep, peers) = store.trust()?;
    let Some(rep) = rep else {
        return Ok((Vec::new(), Vec::new()));
    };
    let rep: Reputation = serde_json::from_slice(&rep)?;
    let (ids, labels) = PeerMap::decode(peers.as_deref())?;
    let evidence = store
        .evidence()?
        .iter()
        .filter_map(|b| serde_json::from_slice(b).ok())
        .collect();
    Ok((host_rows(&rep, &ids, &labels), evidence))
}

/// The settled entry one verified answer earns once `accepted` (the
/// compared answer's digest) and the agreed `fuel` are decided, with its
/// signed acceptance, and the over-claim if the receipt claims more fuel;
/// `None` for an answer that is not paid (another output) or has no
/// receipt.
pub fn settlement_record(
    key: &ed25519_dalek::SigningKey,
    job: &SignedJob,
    response: &JobResponse,
    digest: &Digest,
    accepted: &Digest,
    fuel: u64,
) -> Option<(LedgerRecord, Option<u64>)> {
    let receipt = match response {
        JobResponse::Done { receipt, .. } | JobResponse::Failed { receipt, .. } => receipt,
        _ => return None,
    };
    let (Ok(body), Ok(spec)) = (receipt.verify(), job.verify()) else {
        return None;
    };
    verified_settlement_record(key, &spec, receipt, &body, digest, accepted, fuel)
}

/// [`settlement_record`] for an answer whose receipt (`body`, decoded from
/// `receipt`) and job (`spec`) were verified already: a batch checks each
/// answer once, not once more to pay it.
pub fn verified_settlement_record(
    key: &ed25519_dalek::SigningKey,
    spec: &proto::JobSpec,
    receipt: &SignedReceipt,
    body: &proto::ReceiptBody,
    digest: &Digest,
    accepted: &Digest,
    fuel: u64,
) -> Option<(LedgerRecord, Option<u64>)> {
    let claim = Claim {
        output: digest.0,
        fuel: body.fuel_used,
        price: body.price,
        ceiling_per_mfuel: spec.max_price_per_mfuel,
    };
    let Pay::Paid {
        agreed_fuel,
        amount,
        over_claim,
    } = settlement::pay(&accepted.0, fuel, &claim)
    else {
        return None;
    };
    let receipt_hash = proto::receipt_hash(receipt);
    let acceptance = SignedAcceptance::sign(
        &AcceptanceBody {
            version: proto::VERSION,
            submitter: spec.submitter,
            host_key: body.host_key,
            job_id: body.job_id,
            receipt_hash,
            claimed_fuel: body.fuel_used,
            agreed_fuel,
            price: amount,
            issued_at_ms: unix_now_ms(),
        },
        key,
    );
    let rec = LedgerRecord {
        entry: Entry {
            job_id: body.job_id,
            receipt_hash,
            counterparty: Party(body.host_key),
            claimed_fuel: body.fuel_used,
            agreed_fuel,
            amount,
        },
        evidence: SettledEntry {
            receipt: receipt.clone(),
            acceptance,
        },
        delivered: false,
    };
    Some((rec, over_claim))
}

/// Settles a fixed-majority run (`submit --replicas`, the demo): every
/// answer with the majority's output hash is paid the lowest fuel the
/// majority claims (fuel is deterministic, so honest replicas claim the
/// same and an inflated claim only loses), the others nothing. Entries are
/// stored (flushed) before they are sent; each host's confirmation marks
/// its entry delivered, and acceptances these hosts never confirmed from
/// earlier runs are sent again first. Returns how many of this run's hosts
/// confirmed.
pub async fn settle_majority(
    client: &mut Client,
    store: &SubmitterStore,
    answers: &[(PeerId, SignedJob, JobResponse)],
    accepted_output: &Hash,
) -> Result<usize, SubmitterError> {
    let claims: Vec<(Hash, u64)> = answers
        .iter()
        .filter_map(|(_, _, r)| match r {
            JobResponse::Done { receipt, .. } | JobResponse::Failed { receipt, .. } => {
                receipt.verify().ok().map(|b| (b.output_hash, b.fuel_used))
            }
            _ => None,
        })
        .collect();
    let Some(fuel) = claims
        .iter()
        .filter(|(h, _)| h == accepted_output)
        .map(|(_, f)| *f)
        .min()
    else {
        return Ok(0);
    };
    let mut recs = Vec::new();
    for (peer, job, resp) in answers {
        let digest = match resp {
            JobResponse::Done { receipt, .. } | JobResponse::Failed { receipt, .. } => {
                match receipt.verify() {
                    Ok(b) => Digest(b.output_hash),
                    Err(_) => continue,
                }
            }
            _ => continue,
        };
        if let Some((rec, _)) = settlement_record(
            &client.identity().signing,
            job,
            resp,
            &digest,
            &Digest(*accepted_output),
            fuel,
        ) {
            recs.push((*peer, rec));
        }
    }
    // Acceptances these hosts never confirmed (an earlier run lost the
    // answer or was killed) go again first: the host books each once.
    // Read before this run's are stored, so they are not among them.
    let mut owed = undelivered(store, |p| answers.iter().any(|(a, _, _)| a == p))?;
    let all: Vec<LedgerRecord> = recs.iter().map(|(_, r)| r.clone()).collect();
    store.put_settlements(&all).await?;
    let earlier = owed.len();
    owed.extend(recs);
    let mut confirmed = 0;
    for (i, (peer, rec)) in owed.into_iter().enumerate() {
        let fresh = i >= earlier;
        let job = rec.entry.job_id;
        match client
            .request(
                &peer,
                JobRequest::Settle {
                    entry: rec.evidence,
                },
            )
            .await
        {
            Ok(JobResponse::Settled { job_id, .. }) if job_id == job => {
                store.mark_delivered(&job)?;
                confirmed += usize::from(fresh);
            }
            Ok(_) => tracing::info!(%peer, "settlement not confirmed"),
            Err(e) => tracing::info!(%peer, error = %e, "settlement not delivered"),
        }
    }
    Ok(confirmed)
}

/// The stored acceptances a host has not confirmed yet, with the host
/// each is owed to, for the hosts `to` picks (the one place that decides
/// what is still owed: the live loop, batches, fixed-majority submits and
/// netting all re-send these).
pub(crate) fn undelivered(
    store: &SubmitterStore,
    to: impl Fn(&PeerId) -> bool,
) -> Result<Vec<(PeerId, LedgerRecord)>, StoreError> {
    Ok(store
        .ledger()?
        .into_iter()
        .filter(|r| !r.delivered)
        .filter_map(|r| {
            peer_of_key(&r.entry.counterparty.0)
                .filter(|p| to(p))
                .map(|p| (p, r))
        })
        .collect())
}

/// What netting with one host found.
#[derive(Debug, Clone, Serialize)]
pub struct Reconciliation {
    /// The host.
    pub peer_id: String,
    /// Both statements are equal: the two ledgers hold the same entries.
    pub agrees: bool,
    /// Acceptances the host had not confirmed, sent (again) first.
    pub resent: usize,
    /// Of those, the ones it confirmed now.
    pub confirmed: usize,
    /// Our settled entries with it.
    pub ours_entries: u64,
    /// Their total value.
    pub ours_total: u64,
    /// The host's entries with us, from its signed statement.
    pub theirs_entries: u64,
    /// Their total value.
    pub theirs_total: u64,
}

/// Nets with a connected host: sends every acceptance it has not
/// confirmed, then exchanges signed statements of the settled entries
/// between us. A disagreement is logged as evidence (`statement_mismatch`,
/// with the host's signed statement) and nothing is merged: only entries
/// both signatures prove count.
pub async fn reconcile(
    client: &mut Client,
    store: &SubmitterStore,
    peer: &PeerId,
) -> Result<Reconciliation, SubmitterError> {
    let host_key = security_id(peer).0;
    let owed = undelivered(store, |p| p == peer)?;
    let resent = owed.len();
    let mut confirmed = 0;
    for (_, rec) in owed {
        let job = rec.entry.job_id;
        if let Ok(JobResponse::Settled { job_id, .. }) = client
            .request(
                peer,
                JobRequest::Settle {
                    entry: rec.evidence,
                },
            )
            .await
            && job_id == job
        {
            store.mark_delivered(&job)?;
            confirmed += 1;
        }
    }
    let recs = store.ledger()?;
    let ours = super::ledger::submitter_ledger(&recs).statement(&Party(host_key));
    let me = client.identity().public_key();
    let mine = proto::SignedStatement::sign(
        &proto::StatementBody {
            version: proto::VERSION,
            from: me,
            with: host_key,
            entries: ours.entries,
            total: ours.total,
            digest: ours.digest,
            issued_at_ms: unix_now_ms(),
        },
        &client.identity().signing,
    );
    let resp = client
        .request(peer, JobRequest::Reconcile { statement: mine })
        .await?;
    let JobResponse::Statement { statement, .. } = resp else {
        return Err(SubmitterError::BadAnswer {
            peer: *peer,
            what: format!("answered a statement with {resp:?}"),
        });
    };
    let theirs = match statement.verify() {
        Ok(b) if b.from == host_key && b.with == me => b,
        _ => {
            return Err(SubmitterError::BadAnswer {
                peer: *peer,
                what: "answered with a statement it did not sign for us".into(),
            });
        }
    };
    let agrees = theirs.entries == ours.entries
        && theirs.total == ours.total
        && theirs.digest == ours.digest;
    if !agrees {
        let e = EvidenceEntry {
            at_ms: unix_now_ms(),
            peer_id: peer.to_string(),
            kind: "statement_mismatch".into(),
            detail: format!(
                "we hold {} entries worth {}, the host's signed statement {} worth {}",
                ours.entries, ours.total, theirs.entries, theirs.total
            ),
            job_id: None,
            // The host's signed statement (postcard, base64): it cannot deny it.
            report: Some(base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                postcard::to_stdvec(&statement).expect("a statement encodes"),
            )),
        };
        store
            .append_evidence(&[serde_json::to_vec(&e).expect("entries encode")])
            .await?;
    }
    Ok(Reconciliation {
        peer_id: peer.to_string(),
        agrees,
        resent,
        confirmed,
        ours_entries: ours.entries,
        ours_total: ours.total,
        theirs_entries: theirs.entries,
        theirs_total: theirs.total,
    })
}

/// The libp2p peer id of an ed25519 key.
pub fn peer_of_key(key: &[u8; 32]) -> Option<PeerId> {
    let pk = libp2p::identity::ed25519::PublicKey::try_from_bytes(key).ok()?;
    Some(PeerId::from_public_key(&libp2p::identity::PublicKey::from(
        pk,
    )))
}

fn local_task(p: &Payload) -> Task {
    let mut task = Task::new(WasmModule::new(p.module.to_vec()), p.input.to_vec());
    task.args = p.params.args.clone();
    task.limits = TaskLimits {
        fuel: p.params.fuel,
        memory_bytes: p.params.memory_bytes,
        timeout_ms: p.params.timeout_ms,
        ..TaskLimits::DEFAULT
    };
    task.scratch = p.params.scratch;
    task.portable = p.params.portable;
    task.data = p.data.clone();
    task
}
