//! The host daemon: one task owns the swarm and drives the job state.
//! Job streams are read, decoded and written by their own tasks
//! (`job_streams`), sandboxes run on the worker pool and flushes on the
//! flusher; shutdown has one owner, `Host::stop`.
//!
//! A job's path: the `Submit` request is checked (signature, expiry, replay,
//! limits, price, queue room); missing blobs are fetched from the submitter
//! in chunks and verified against their hashes; the job and its nonce are
//! written to sled and flushed before the host says `Accepted`; the task runs
//! on the sandbox worker pool (never on this task); the result and a signed
//! receipt are stored and sent to whoever waits for them. On start, every
//! accepted job that has no result yet is run again, so `kill -9` loses
//! nothing that was acknowledged.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::request_response::{self, OutboundRequestId, ResponseChannel};

use super::job_streams::{self, StreamLimits, StreamReply, StreamRequest};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, Swarm};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

use super::discovery::{Discovery, Learned};
use crate::config::NodeConfig;
use crate::identity::Identity;
use crate::net::{
    BLOB_CHUNK, Behaviour, BehaviourEvent, Inbound, NodeKind, build_swarm, default_listen_addrs,
    with_peer_id,
};
use crate::proto::{
    self, Advert, BlobRequest, BlobResponse, Hash, InlineBlob, JobId, JobRequest, JobResponse,
    JobSpec, JobState, ReceiptBody, ReceiptOutcome, RefuseReason, SignedAdvert, SignedJob,
    SignedReceipt,
};
use crate::sandbox::{Task, TaskLimits, TaskResult, WasmModule, WorkerPool};
use crate::store::{BlobStore, HostStore, JobRecord, StoredState, unix_now};

/// How a host is started.
#[derive(Debug, Clone)]
pub struct HostOptions {
    /// Configuration.
    pub config: NodeConfig,
    /// Data directory (identity, database, blobs, compiled code).
    pub data_dir: PathBuf,
    /// Listen addresses; empty means the config's (or all interfaces).
    pub listen: Vec<Multiaddr>,
    /// Test-only: corrupt every output (to exercise replica disagreement).
    pub faulty: bool,
}

/// What the host reports, one event per line in `biop2p host --json`.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum HostEvent {
    /// Listening; `addrs` are full multiaddrs (with `/p2p/`).
    Listening {
        /// The host's peer id.
        peer_id: String,
        /// Where it can be reached.
        addrs: Vec<String>,
        /// Measured fuel per second (what `--timeout` is converted with).
        fuel_per_sec: u64,
    },
    /// A job was durably accepted.
    Accepted {
        /// The job.
        job_id: String,
        /// Who sent it.
        submitter: String,
        /// Its module's hash (hex).
        module_hash: String,
    },
    /// A job finished (ok or with a sandbox error).
    Finished {
        /// The job.
        job_id: String,
        /// `ok` or the error kind.
        status: String,
        /// Fuel used.
        fuel_used: u64,
        /// Wall time in ms.
        wall_ms: f64,
        /// Price charged.
        price: u64,
        /// Peak linear memory in bytes.
        peak_memory_bytes: u64,
    },
    /// A job was refused.
    Refused {
        /// The job, if it could be identified.
        job_id: Option<String>,
        /// Who sent it.
        peer: String,
        /// Stable reason.
        reason: String,
        /// Detail.
        message: String,
    },
    /// Jobs found unfinished at start and queued again.
    Recovered {
        /// How many.
        jobs: usize,
    },
    /// A host became known through its first advert.
    Discovered {
        /// Its peer id.
        peer_id: String,
        /// Its price per million fuel.
        price_per_mfuel: u64,
        /// Its roles.
        roles: Vec<String>,
    },
    /// A host's adverts stopped and it was forgotten.
    Forgotten {
        /// Its peer id.
        peer_id: String,
    },
}

/// A running host.
pub struct HostHandle {
    /// Its peer id.
    pub peer_id: PeerId,
    /// Where it listens (full multiaddrs).
    pub addrs: Vec<Multiaddr>,
    /// Its events (bounded; events are dropped if nobody reads them).
    pub events: mpsc::Receiver<HostEvent>,
    /// Pause, resume and the resource policy (shared with the loop).
    pub control: super::control::Control,
    shutdown: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl HostHandle {
    /// Stops the host and returns once everything it started has ended:
    /// the event loop, the flusher, the sandbox workers (tasks already in a
    /// sandbox finish, bounded by their fuel; queued ones are dropped) and
    /// the database, which is closed, so a new host can open the same data
    /// dir at once. Accepted jobs without a result stay in the database and
    /// run again at the next start.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = self.task.await;
    }

    /// The first listen address using `proto` ("tcp", "quic-v1", "ws").
    pub fn addr(&self, proto: &str) -> Option<Multiaddr> {
        self.addrs
            .iter()
            .find(|a| transport_of(a) == proto)
            .cloned()
    }
}

fn transport_of(a: &Multiaddr) -> &'static str {
    use libp2p::multiaddr::Protocol;
    let mut t = "";
    for p in a.iter() {
        match p {
            Protocol::Tcp(_) => t = "tcp",
            Protocol::QuicV1 => t = "quic-v1",
            Protocol::Ws(_) => t = "ws",
            _ => {}
        }
    }
    t
}

/// Errors of starting a host.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// Identity or data directory.
    #[error("data dir: {0}")]
    Io(#[from] std::io::Error),
    /// Database.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// Sandbox.
    #[error("sandbox: {0}")]
    Sandbox(#[from] crate::sandbox::SandboxError),
    /// Network.
    #[error(transparent)]
    Net(#[from] crate::net::NetError),
}

/// Starts a host: opens its state, binds its listeners, queues the jobs a
/// previous run left unfinished, and returns once it is listening.
pub async fn spawn_host(opts: HostOptions) -> Result<HostHandle, HostError> {
    let cfg = opts.config.clone();
    let id = Identity::load_or_create(&opts.data_dir)?;
    let store = HostStore::open(&opts.data_dir.join("db"))?;
    let blobs = BlobStore::open(&opts.data_dir.join("blobs"), cfg.resources.blob_cache_bytes)?;
    let sandbox = super::open_sandbox(&opts.data_dir)?;
    let fuel_per_sec = sandbox.fuel_per_sec();
    let pool = WorkerPool::new(sandbox, cfg.resources.workers(), cfg.resources.max_queue);
    let job_limits = crate::net::behaviour::job_limits(
        cfg.security.max_inline_bytes,
        cfg.resources.max_output_bytes,
    );
    let mut swarm = build_swarm(&id, &cfg.network, job_limits, NodeKind::Host).await?;

    let mut listen = opts.listen.clone();
    if listen.is_empty() {
        for s in &cfg.network.listen {
            listen.push(
                s.parse()
                    .map_err(|_| crate::net::NetError::BadAddr(s.clone()))?,
            );
        }
    }
    if listen.is_empty() {
        listen = default_listen_addrs(&cfg.network);
    }
    let mut listeners = HashSet::new();
    for a in &listen {
        let lid = swarm
            .listen_on(a.clone())
            .map_err(|e| crate::net::NetError::Listen {
                addr: a.to_string(),
                reason: e.to_string(),
            })?;
        listeners.insert(lid);
    }
    // Wait until every listener has an address (or failed).
    let mut addrs = Vec::new();
    while !listeners.is_empty() {
        match swarm.select_next_some().await {
            SwarmEvent::NewListenAddr {
                listener_id,
                address,
            } => {
                listeners.remove(&listener_id);
                addrs.push(with_peer_id(&address, id.peer_id));
            }
            SwarmEvent::ListenerClosed {
                listener_id,
                reason,
                ..
            } if listeners.remove(&listener_id) => {
                return Err(crate::net::NetError::Listen {
                    addr: format!("{listener_id:?}"),
                    reason: format!("{reason:?}"),
                }
                .into());
            }
            SwarmEvent::ListenerError { error, .. } => {
                return Err(crate::net::NetError::Listen {
                    addr: "?".into(),
                    reason: error.to_string(),
                }
                .into());
            }
            _ => {}
        }
    }

    let mut discovery = Discovery::new(id.peer_id, &cfg.network);
    discovery.start(&mut swarm, &cfg.network)?;

    // Job streams are read and written by their own tasks; the loop only
    // sees decoded requests. The channel is shared by all streams, each of
    // which has at most `in_flight` requests unanswered.
    let incoming = swarm
        .behaviour()
        .stream
        .new_control()
        .accept(crate::net::JOB_STREAM_PROTOCOL)
        .map_err(|_| crate::net::NetError::Listen {
            addr: crate::net::JOB_STREAM_PROTOCOL.to_string(),
            reason: "protocol registered twice".into(),
        })?;
    let (stream_tx, stream_rx) = mpsc::channel(1024);
    let acceptor = tokio::spawn(job_streams::accept(
        incoming,
        stream_tx,
        StreamLimits {
            streams_per_peer: cfg.network.max_connections_per_peer as usize,
            in_flight: STREAM_IN_FLIGHT,
            request_bytes: job_limits.request,
            response_bytes: job_limits.response,
        },
    ));

    let (events_tx, events) = mpsc::channel(4096);
    let (shutdown_tx, shutdown_rx) = oneshot::channel();
    let (durable_tx, durable_rx) = mpsc::channel(cfg.resources.max_queue + 16);
    let (flush_tx, flush_rx) = mpsc::unbounded_channel();
    let flusher = tokio::spawn(flusher(store.clone(), flush_rx, durable_tx));
    let cfg_role: roles::BiologicalRole = cfg
        .biological
        .primary_role
        .parse()
        .unwrap_or(roles::BiologicalRole::Young);
    let control = super::control::Control::new(cfg.policy.clone());
    let mut host = Host {
        control: control.clone(),
        cfg,
        id: id.clone(),
        store,
        blobs,
        pool,
        tasks: JoinSet::new(),
        faulty: opts.faulty,
        events: events_tx,
        flush_tx,
        flusher: Some(flusher),
        acceptor,
        inflight: HashSet::new(),
        running: HashSet::new(),
        waiters: HashMap::new(),
        fetching: HashMap::new(),
        fetch_requests: HashMap::new(),
        modules: HashMap::new(),
        discovery,
        listen_addrs: addrs.clone(),
        fuel_per_sec,
        last_advert: None,
        last_peers_file: None,
        caste: (cfg_role == roles::BiologicalRole::Caste)
            .then(|| roles::ResponseThresholds::new(&roles::CasteConfig::default())),
        classes: HashMap::new(),
        advert_wanted: true,
        peers_file: opts.data_dir.join(PEERS_FILE),
    };
    host.emit(HostEvent::Listening {
        peer_id: id.peer_id.to_string(),
        addrs: addrs.iter().map(|a| a.to_string()).collect(),
        fuel_per_sec,
    });
    host.recover()?;
    let task = tokio::spawn(host.run(swarm, shutdown_rx, durable_rx, stream_rx));
    Ok(HostHandle {
        peer_id: id.peer_id,
        addrs,
        events,
        control,
        shutdown: Some(shutdown_tx),
        task,
    })
}

/// Where the one answer to a job request goes: back on the request-response
/// stream it came on, or on the long-lived job stream.
enum Reply {
    /// `/biop2p/job/1.0.0` (a stream per request).
    Rr(ResponseChannel<JobResponse>),
    /// `/biop2p/jobs/1.0.0` (the long-lived stream).
    Stream(StreamReply),
}

impl Reply {
    fn send(self, swarm: &mut Swarm<Behaviour>, resp: JobResponse) {
        match self {
            Reply::Rr(ch) => {
                let _ = swarm.behaviour_mut().job.send_response(ch, resp);
            }
            Reply::Stream(r) => r.send(resp),
        }
    }
}

/// A job whose blobs are being fetched before it can be accepted.
struct Fetching {
    job: SignedJob,
    spec: JobSpec,
    peer: PeerId,
    channel: Reply,
    wait: bool,
    /// Blobs still incomplete: hash → (buffer, bytes received, next offset).
    blobs: HashMap<Hash, BlobFetch>,
    /// The input's bytes when they came inline or were fetched: handed to
    /// the task as they are, not read back from disk and hashed again.
    input: Option<Vec<u8>>,
}

struct BlobFetch {
    buf: Vec<u8>,
    received: u64,
    next: u64,
    in_flight: usize,
}

/// Where a running host lists the hosts it knows (for `biop2p peers`).
pub const PEERS_FILE: &str = "peers.json";
/// Adverts are published at most this often, even when peers keep joining
/// (each joining peer asks for one, so a newcomer need not wait a whole
/// interval).
const MIN_ADVERT_GAP: Duration = Duration::from_millis(250);
/// How often the list of known hosts is rewritten.
const PEERS_FILE_EVERY: Duration = Duration::from_secs(1);

/// Requests in flight per job stream.
const STREAM_IN_FLIGHT: usize = 256;

/// Chunks requested at once per blob.
const FETCH_WINDOW: usize = 4;
/// Compiled modules' bytes kept in memory by hash (the sandbox caches the
/// compiled code; this saves re-reading and re-hashing the file).
const MODULES_IN_MEMORY: usize = 64;

struct Host {
    /// The volunteer's policy: asked before accepting, told of each task.
    control: super::control::Control,
    cfg: NodeConfig,
    id: Identity,
    store: HostStore,
    blobs: BlobStore,
    pool: WorkerPool,
    /// One task per job handed to the pool, yielding its result (`None`
    /// when the pool dropped it at shutdown). Owned here, so shutdown ends
    /// them all; at most `max_queue` (one per job in flight).
    tasks: JoinSet<(JobId, Option<TaskResult>)>,
    faulty: bool,
    events: mpsc::Sender<HostEvent>,
    /// Writes waiting for a flush; acknowledgements come back on
    /// `durable_rx` once their flush is done (group commit, one flush at a
    /// time).
    flush_tx: mpsc::UnboundedSender<Option<(JobId, Reply)>>,
    /// The flusher task; awaited at shutdown so the database is closed
    /// when `shutdown` returns.
    flusher: Option<tokio::task::JoinHandle<()>>,
    /// Accepts job streams and owns their tasks; aborted at shutdown.
    acceptor: tokio::task::JoinHandle<()>,
    /// Accepted and unfinished (bounded by `max_queue`).
    inflight: HashSet<JobId>,
    /// In a sandbox now.
    running: HashSet<JobId>,
    /// Who waits for a job's result.
    waiters: HashMap<JobId, Vec<Reply>>,
    fetching: HashMap<JobId, Fetching>,
    fetch_requests: HashMap<OutboundRequestId, (JobId, Hash, u64)>,
    modules: HashMap<Hash, WasmModule>,
    discovery: Discovery,
    /// Where this host listens (full multiaddrs), for its adverts.
    listen_addrs: Vec<Multiaddr>,
    fuel_per_sec: u64,
    last_advert: Option<Instant>,
    last_peers_file: Option<Instant>,
    /// A Caste host's response thresholds: each task done lowers its
    /// class's threshold, so the host specialises, and its adverts say so.
    caste: Option<roles::ResponseThresholds>,
    /// Task class of each job in a sandbox (for the thresholds).
    classes: HashMap<JobId, roles::TaskClass>,
    /// A peer subscribed since the last advert: publish soon.
    advert_wanted: bool,
    peers_file: PathBuf,
}

impl Host {
    fn emit(&self, e: HostEvent) {
        let _ = self.events.try_send(e);
    }

    /// Queues every accepted job that has no result (a crash or a stop).
    fn recover(&mut self) -> Result<(), HostError> {
        let jobs = self.store.unfinished()?;
        let n = jobs.len();
        for (job_id, rec) in jobs {
            match rec.job.verify() {
                Ok(spec) => {
                    self.inflight.insert(job_id);
                    self.dispatch(job_id, &spec, None);
                }
                Err(e) => {
                    tracing::error!(job = %proto::hex(&job_id), error = %e, "stored job no longer verifies")
                }
            }
        }
        if n > 0 {
            tracing::info!(jobs = n, "re-queued unfinished jobs");
            self.emit(HostEvent::Recovered { jobs: n });
        }
        Ok(())
    }

    async fn run(
        mut self,
        mut swarm: Swarm<Behaviour>,
        mut shutdown: oneshot::Receiver<()>,
        mut durable_rx: mpsc::Receiver<(JobId, Reply)>,
        mut stream_rx: mpsc::Receiver<StreamRequest>,
    ) {
        let mut gc = tokio::time::interval(Duration::from_secs(600));
        let mut tick = tokio::time::interval(MIN_ADVERT_GAP);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = &mut shutdown => break,
                Some(joined) = self.tasks.join_next() => {
                    if let Ok((job_id, Some(result))) = joined {
                        self.on_done(&mut swarm, job_id, result);
                    }
                }
                _ = tick.tick() => self.on_tick(&mut swarm),
                ev = swarm.select_next_some() => self.on_swarm_event(&mut swarm, ev),
                Some(r) = stream_rx.recv() => {
                    self.on_request(&mut swarm, r.peer, r.request, Reply::Stream(r.reply));
                }
                Some((job_id, ch)) = durable_rx.recv() => {
                    ch.send(&mut swarm, JobResponse::Accepted { job_id });
                }
                _ = gc.tick() => {
                    if let Err(e) = self.store.collect_garbage(unix_now()) {
                        tracing::warn!(error = %e, "garbage collection failed");
                    }
                }
            }
        }
        // The flusher may be waiting to hand acknowledgements back: let it
        // see nobody takes them any more, or it would never end.
        drop(durable_rx);
        self.stop(swarm).await;
    }

    /// The one owner of shutdown, in order: no new work (the swarm goes),
    /// the per-job tasks end, the workers stop and are joined, the flusher
    /// drains and ends, and the last store handle closes the database.
    async fn stop(self, swarm: Swarm<Behaviour>) {
        drop(swarm);
        let Host {
            store,
            pool,
            mut tasks,
            flush_tx,
            flusher,
            acceptor,
            ..
        } = self;
        acceptor.abort();
        let _ = acceptor.await;
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
        if tokio::task::spawn_blocking(move || pool.shutdown())
            .await
            .is_err()
        {
            tracing::error!("sandbox workers did not stop cleanly");
        }
        drop(flush_tx);
        if let Some(f) = flusher {
            let _ = f.await;
        }
        if let Err(e) = store.close().await {
            tracing::error!(error = %e, "database not closed");
        }
    }

    fn on_swarm_event(&mut self, swarm: &mut Swarm<Behaviour>, ev: SwarmEvent<BehaviourEvent>) {
        match ev {
            SwarmEvent::Behaviour(BehaviourEvent::Job(e)) => self.on_job_event(swarm, e),
            SwarmEvent::Behaviour(BehaviourEvent::Blob(e)) => self.on_blob_event(swarm, e),
            SwarmEvent::Behaviour(BehaviourEvent::Mdns(e)) => self.discovery.on_mdns(swarm, e),
            SwarmEvent::Behaviour(BehaviourEvent::Kad(e)) => self.discovery.on_kad(swarm, e),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(e)) => {
                self.discovery.on_identify(swarm, e)
            }
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(e)) => {
                match self.discovery.on_gossip(swarm, e) {
                    Some(Learned::New(peer)) => {
                        let now = Instant::now();
                        if let Some(a) = self.discovery.table.get(&peer, now) {
                            tracing::info!(%peer, "host discovered");
                            if let Err(e) = self.write_peers_file() {
                                tracing::warn!(error = %e, "cannot write the host list");
                            }
                            self.emit(HostEvent::Discovered {
                                peer_id: peer.to_string(),
                                price_per_mfuel: a.price_per_mfuel,
                                roles: a.roles.clone(),
                            });
                        }
                    }
                    Some(Learned::Subscriber(_)) => {
                        // A newcomer should not wait a whole interval.
                        self.advert_wanted = true;
                        self.maybe_advertise(swarm);
                    }
                    _ => {}
                }
            }
            SwarmEvent::NewListenAddr { address, .. } => {
                let a = with_peer_id(&address, self.id.peer_id);
                if !self.listen_addrs.contains(&a) {
                    self.listen_addrs.push(a);
                }
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                let a = with_peer_id(&address, self.id.peer_id);
                self.listen_addrs.retain(|x| *x != a);
            }
            SwarmEvent::IncomingConnectionError { error, .. } => {
                tracing::debug!(%error, "incoming connection failed");
            }
            _ => {}
        }
    }

    /// Four times a second: forget hosts whose adverts stopped, advertise
    /// when due; each second, list the known hosts for `biop2p peers`.
    fn on_tick(&mut self, swarm: &mut Swarm<Behaviour>) {
        let mut changed = false;
        for peer in self.discovery.table.evaporate(Instant::now()) {
            changed = true;
            tracing::info!(%peer, "host forgotten (its adverts stopped)");
            self.emit(HostEvent::Forgotten {
                peer_id: peer.to_string(),
            });
        }
        let interval = Duration::from_secs(self.cfg.network.advert_interval_secs);
        self.control
            .publish(swarm.network_info().num_peers(), self.running.len());
        if self.control.take_changed() || self.last_advert.is_none_or(|t| t.elapsed() >= interval) {
            self.advert_wanted = true;
        }
        self.maybe_advertise(swarm);
        self.discovery.redial(swarm);
        if changed
            || self
                .last_peers_file
                .is_none_or(|t| t.elapsed() >= PEERS_FILE_EVERY)
        {
            if let Err(e) = self.write_peers_file() {
                tracing::warn!(error = %e, "cannot write {}", self.peers_file.display());
            }
            self.last_peers_file = Some(Instant::now());
        }
    }

    /// What this host offers now.
    pub(crate) fn advert(&self) -> Advert {
        let now = unix_now_ms();
        let workers = self.pool.workers() as u32;
        let ttl = 3 * 1000 * self.cfg.network.advert_interval_secs;
        // A policy stop (pause, duty cycle, caps...) shows as no room.
        let open = u32::from(self.control.stopped().is_none());
        Advert {
            version: proto::VERSION,
            host_key: self.id.public_key(),
            addrs: self
                .listen_addrs
                .iter()
                .take(proto::MAX_ADVERT_ADDRS)
                .map(|a| a.to_string())
                .collect(),
            free_slots: workers.saturating_sub(self.running.len() as u32) * open,
            workers,
            queue_room: self
                .cfg
                .resources
                .max_queue
                .saturating_sub(self.inflight.len()) as u32
                * open,
            fuel_per_sec: self.fuel_per_sec,
            price_per_mfuel: self.cfg.market.price_per_mfuel,
            max_fuel: self.cfg.resources.max_fuel,
            max_memory_bytes: self.cfg.resources.max_memory_bytes,
            roles: vec![self.cfg.biological.primary_role.clone()],
            region: proto::region_of(&self.cfg.biological.address),
            thresholds: self.caste.as_ref().map_or(
                [roles::CasteConfig::default().initial; 3],
                roles::ResponseThresholds::values,
            ),
            issued_at_ms: now,
            expires_at_ms: now + ttl,
        }
    }

    /// Publishes the advert if one is wanted and the last is ≥ 1 s old.
    fn maybe_advertise(&mut self, swarm: &mut Swarm<Behaviour>) {
        if !self.advert_wanted
            || self
                .last_advert
                .is_some_and(|t| t.elapsed() < MIN_ADVERT_GAP)
        {
            return;
        }
        let signed = SignedAdvert::sign(&self.advert(), &self.id.signing);
        self.discovery.publish(swarm, &signed);
        self.last_advert = Some(Instant::now());
        self.advert_wanted = false;
    }

    /// Writes the known hosts (and this one) to `peers.json`, atomically.
    fn write_peers_file(&self) -> std::io::Result<()> {
        let me = (self.id.peer_id, self.advert());
        let mut hosts = vec![super::peers::PeerEntry::new(&me.0, &me.1, true)];
        let mut known = self.discovery.live();
        known.sort_by_key(|(p, _)| p.to_bytes());
        let now = Instant::now();
        hosts.extend(known.iter().map(|(p, a)| {
            let mut e = super::peers::PeerEntry::new(p, a, false);
            if let Some(left) = self.discovery.table.expires_in(p, now) {
                e.expires_in_ms = left.as_millis() as u64;
            }
            e
        }));
        let file = super::peers::PeersFile {
            written_at_ms: unix_now_ms(),
            hosts,
        };
        let tmp = self.peers_file.with_extension("json.tmp");
        std::fs::write(
            &tmp,
            serde_json::to_vec_pretty(&file).map_err(std::io::Error::other)?,
        )?;
        std::fs::rename(&tmp, &self.peers_file)
    }

    fn refuse(
        &self,
        swarm: &mut Swarm<Behaviour>,
        ch: Reply,
        peer: PeerId,
        job_id: Option<JobId>,
        reason: RefuseReason,
        message: String,
    ) {
        tracing::info!(%peer, %reason, %message, "job refused");
        self.emit(HostEvent::Refused {
            job_id: job_id.map(|j| proto::hex(&j)),
            peer: peer.to_string(),
            reason: reason.to_string(),
            message: message.clone(),
        });
        ch.send(swarm, JobResponse::Refused { reason, message });
    }

    fn on_job_event(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        e: request_response::Event<Inbound<JobRequest>, JobResponse>,
    ) {
        let request_response::Event::Message { peer, message, .. } = e else {
            if let request_response::Event::InboundFailure { peer, error, .. } = e {
                tracing::debug!(%peer, %error, "inbound job request failed");
            }
            return;
        };
        let request_response::Message::Request {
            request, channel, ..
        } = message
        else {
            return;
        };
        self.on_request(swarm, peer, request, Reply::Rr(channel));
    }

    /// A job request from either protocol.
    fn on_request(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        peer: PeerId,
        request: Inbound<JobRequest>,
        channel: Reply,
    ) {
        match request {
            Inbound::TooLarge { len, limit } => self.refuse(
                swarm,
                channel,
                peer,
                None,
                RefuseReason::TooLarge,
                format!("request of {len} bytes is over the limit of {limit}"),
            ),
            Inbound::Malformed(m) => self.refuse(
                swarm,
                channel,
                peer,
                None,
                RefuseReason::Malformed,
                format!("undecodable request: {m}"),
            ),
            Inbound::Ok(JobRequest::Submit { job, inline, wait }) => {
                self.on_submit(swarm, peer, channel, job, inline, wait)
            }
            Inbound::Ok(JobRequest::Fetch { job_id, wait }) => {
                self.on_fetch(swarm, channel, job_id, wait)
            }
        }
    }

    /// Checks a job before anything is fetched or stored.
    fn check(&self, spec: &JobSpec, job_id: &JobId) -> Result<(), (RefuseReason, String)> {
        let now = unix_now();
        let sec = &self.cfg.security;
        let res = &self.cfg.resources;
        // Peer-controlled: saturate, never overflow.
        if spec.expires_at.saturating_add(sec.clock_skew_secs) < now {
            return Err((
                RefuseReason::Expired,
                format!("job expired at {} (now {now})", spec.expires_at),
            ));
        }
        if spec.expires_at
            > now
                .saturating_add(sec.max_job_lifetime_secs)
                .saturating_add(sec.clock_skew_secs)
        {
            return Err((
                RefuseReason::Expired,
                format!(
                    "job expires more than {} s ahead",
                    sec.max_job_lifetime_secs
                ),
            ));
        }
        let seen = self
            .store
            .nonce_seen(&spec.submitter, &spec.nonce)
            .unwrap_or(true);
        if seen || self.fetching.contains_key(job_id) {
            return Err((
                RefuseReason::Replayed,
                "this job's nonce was already used".into(),
            ));
        }
        let too_large = |what: &str, got: u64, max: u64| {
            (
                RefuseReason::TooLarge,
                format!("{what} {got} is over this host's limit of {max}"),
            )
        };
        if spec.fuel > res.max_fuel {
            return Err(too_large("fuel", spec.fuel, res.max_fuel));
        }
        if spec.memory_bytes > res.max_memory_bytes {
            return Err(too_large("memory", spec.memory_bytes, res.max_memory_bytes));
        }
        if spec.module_size > res.max_blob_bytes {
            return Err(too_large(
                "module size",
                spec.module_size,
                res.max_blob_bytes,
            ));
        }
        if spec.input_size > res.max_blob_bytes {
            return Err(too_large("input size", spec.input_size, res.max_blob_bytes));
        }
        let args: usize = spec.args.iter().map(|a| a.len() + 1).sum();
        if args > 64 << 10 {
            return Err(too_large("argv bytes", args as u64, 64 << 10));
        }
        let price = self.cfg.market.price_per_mfuel;
        if spec.max_price_per_mfuel < price {
            return Err((
                RefuseReason::PriceTooLow,
                format!(
                    "price ceiling {} per Mfuel is below this host's price {price}",
                    spec.max_price_per_mfuel
                ),
            ));
        }
        if let Err(stop) = self.control.admit(spec.memory_bytes) {
            return Err((RefuseReason::Busy, stop.to_string()));
        }
        if self.inflight.len() + self.fetching.len() >= res.max_queue {
            return Err((
                RefuseReason::Busy,
                format!("{} jobs queued; try another host", res.max_queue),
            ));
        }
        Ok(())
    }

    /// Checks blobs sent inline: within the limit (checked before any
    /// hashing), only the job's own module or input, matching hash and size.
    fn check_inline(
        &self,
        spec: &JobSpec,
        inline: &[InlineBlob],
    ) -> Result<(), (RefuseReason, String)> {
        let total: usize = inline.iter().map(|b| b.data.len()).sum();
        if total > self.cfg.security.max_inline_bytes {
            return Err((
                RefuseReason::TooLarge,
                format!(
                    "{total} inline blob bytes over the limit of {}",
                    self.cfg.security.max_inline_bytes
                ),
            ));
        }
        for b in inline {
            let expected = if b.hash == spec.module_hash {
                spec.module_size
            } else if b.hash == spec.input_hash {
                spec.input_size
            } else {
                return Err((
                    RefuseReason::BlobMismatch,
                    "inline blob is not the job's module or input".into(),
                ));
            };
            if b.data.len() as u64 != expected || blake3::hash(&b.data).as_bytes() != &b.hash {
                return Err((
                    RefuseReason::BlobMismatch,
                    format!(
                        "inline blob {} does not match its hash or size",
                        proto::hex(&b.hash)
                    ),
                ));
            }
        }
        Ok(())
    }

    fn on_submit(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        peer: PeerId,
        channel: Reply,
        job: SignedJob,
        inline: Vec<InlineBlob>,
        wait: bool,
    ) {
        let spec = match job.verify() {
            Ok(s) => s,
            Err(e) => {
                let reason = match e {
                    proto::ProtoError::BadSignature(_) | proto::ProtoError::BadKey(_) => {
                        RefuseReason::BadSignature
                    }
                    _ => RefuseReason::Malformed,
                };
                return self.refuse(swarm, channel, peer, None, reason, e.to_string());
            }
        };
        let job_id = job.id();
        tracing::debug!(job = %proto::hex(&job_id), %peer, wait, "submit");
        if let Err((reason, msg)) = self.check(&spec, &job_id) {
            return self.refuse(swarm, channel, peer, Some(job_id), reason, msg);
        }
        if let Err((reason, msg)) = self.check_inline(&spec, &inline) {
            return self.refuse(swarm, channel, peer, Some(job_id), reason, msg);
        }
        let pins = [spec.module_hash, spec.input_hash];
        for b in &inline {
            if let Err(e) = self.blobs.put(&b.hash, &b.data, &pins, !wait) {
                tracing::error!(error = %e, "cannot store blob");
                return self.refuse(
                    swarm,
                    channel,
                    peer,
                    Some(job_id),
                    RefuseReason::Busy,
                    "host cannot store blobs".into(),
                );
            }
        }
        let mut missing = HashMap::new();
        for (h, size) in [
            (spec.module_hash, spec.module_size),
            (spec.input_hash, spec.input_size),
        ] {
            if !self.blobs.contains(&h) && !missing.contains_key(&h) {
                missing.insert(
                    h,
                    BlobFetch {
                        buf: vec![0; size as usize],
                        received: 0,
                        next: 0,
                        in_flight: 0,
                    },
                );
            }
        }
        let input = inline
            .into_iter()
            .find(|b| b.hash == spec.input_hash)
            .map(|b| b.data);
        let mut f = Fetching {
            job,
            spec,
            peer,
            channel,
            wait,
            blobs: missing,
            input,
        };
        if f.blobs.is_empty() {
            return self.accept(swarm, job_id, f);
        }
        self.request_chunks(swarm, job_id, &mut f);
        self.fetching.insert(job_id, f);
    }

    fn request_chunks(&mut self, swarm: &mut Swarm<Behaviour>, job_id: JobId, f: &mut Fetching) {
        for (hash, b) in f.blobs.iter_mut() {
            let total = b.buf.len() as u64;
            while b.in_flight < FETCH_WINDOW && b.next < total {
                let len = (total - b.next).min(BLOB_CHUNK as u64) as u32;
                let rid = swarm.behaviour_mut().blob.send_request(
                    &f.peer,
                    Inbound::Ok(BlobRequest {
                        hash: *hash,
                        offset: b.next,
                        len,
                    }),
                );
                self.fetch_requests.insert(rid, (job_id, *hash, b.next));
                b.next += len as u64;
                b.in_flight += 1;
            }
        }
    }

    fn on_blob_event(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        e: request_response::Event<Inbound<BlobRequest>, BlobResponse>,
    ) {
        match e {
            request_response::Event::Message { message, .. } => match message {
                // A host does not serve blobs to others: they are submitters'
                // data, given to it for one job.
                request_response::Message::Request { channel, .. } => {
                    let _ = swarm
                        .behaviour_mut()
                        .blob
                        .send_response(channel, BlobResponse::NotFound);
                }
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    self.on_chunk(swarm, request_id, Ok(response));
                }
            },
            request_response::Event::OutboundFailure {
                request_id, error, ..
            } => {
                self.on_chunk(swarm, request_id, Err(error.to_string()));
            }
            _ => {}
        }
    }

    fn on_chunk(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        rid: OutboundRequestId,
        r: Result<BlobResponse, String>,
    ) {
        let Some((job_id, hash, offset)) = self.fetch_requests.remove(&rid) else {
            return;
        };
        let Some(mut f) = self.fetching.remove(&job_id) else {
            return;
        };
        let fail = |reason, msg: String| (reason, msg);
        let outcome: Result<(), (RefuseReason, String)> = (|| {
            let b = f
                .blobs
                .get_mut(&hash)
                .ok_or_else(|| fail(RefuseReason::BlobMismatch, "unexpected chunk".into()))?;
            b.in_flight -= 1;
            let total = b.buf.len() as u64;
            match r {
                Err(e) => Err(fail(
                    RefuseReason::BlobUnavailable,
                    format!("fetching {}: {e}", proto::hex(&hash)),
                )),
                Ok(BlobResponse::NotFound) => Err(fail(
                    RefuseReason::BlobUnavailable,
                    format!("submitter does not have {}", proto::hex(&hash)),
                )),
                Ok(BlobResponse::Chunk { total: t, data }) => {
                    let want = (total - offset).min(BLOB_CHUNK as u64);
                    if t != total || data.len() as u64 != want {
                        return Err(fail(
                            RefuseReason::BlobMismatch,
                            format!(
                                "blob {} is {t} bytes, the job says {total}",
                                proto::hex(&hash)
                            ),
                        ));
                    }
                    b.buf[offset as usize..offset as usize + data.len()].copy_from_slice(&data);
                    b.received += data.len() as u64;
                    Ok(())
                }
            }
        })();
        if let Err((reason, msg)) = outcome {
            self.abandon_fetch(&job_id);
            return self.refuse(swarm, f.channel, f.peer, Some(job_id), reason, msg);
        }
        // Completed blobs: verify and store.
        let complete: Vec<Hash> = f
            .blobs
            .iter()
            .filter(|(_, b)| b.received == b.buf.len() as u64 && b.in_flight == 0)
            .map(|(h, _)| *h)
            .collect();
        let pins = [f.spec.module_hash, f.spec.input_hash];
        for h in complete {
            let b = f.blobs.remove(&h).expect("present");
            if blake3::hash(&b.buf).as_bytes() != &h {
                self.abandon_fetch(&job_id);
                return self.refuse(
                    swarm,
                    f.channel,
                    f.peer,
                    Some(job_id),
                    RefuseReason::BlobMismatch,
                    format!("fetched bytes do not hash to {}", proto::hex(&h)),
                );
            }
            if let Err(e) = self.blobs.put(&h, &b.buf, &pins, !f.wait) {
                tracing::error!(error = %e, "cannot store blob");
                self.abandon_fetch(&job_id);
                return self.refuse(
                    swarm,
                    f.channel,
                    f.peer,
                    Some(job_id),
                    RefuseReason::Busy,
                    "host cannot store blobs".into(),
                );
            }
            if h == f.spec.input_hash {
                f.input = Some(b.buf);
            }
        }
        if f.blobs.is_empty() {
            self.accept(swarm, job_id, f);
        } else {
            self.request_chunks(swarm, job_id, &mut f);
            self.fetching.insert(job_id, f);
        }
    }

    fn abandon_fetch(&mut self, job_id: &JobId) {
        self.fetch_requests.retain(|_, v| &v.0 != job_id);
    }

    /// Stores the job (and its nonce) and starts it. The `Accepted` answer is
    /// sent only once the write is flushed.
    fn accept(&mut self, swarm: &mut Swarm<Behaviour>, job_id: JobId, f: Fetching) {
        let record = JobRecord {
            job: f.job,
            submitter_peer: f.peer.to_bytes(),
            state: StoredState::Queued,
            accepted_at: unix_now(),
            expires_at: f.spec.expires_at,
        };
        match self
            .store
            .accept(&job_id, &record, &f.spec.submitter, &f.spec.nonce)
        {
            Ok(true) => {}
            Ok(false) => {
                return self.refuse(
                    swarm,
                    f.channel,
                    f.peer,
                    Some(job_id),
                    RefuseReason::Replayed,
                    "this job's nonce was already used".into(),
                );
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot store job");
                return self.refuse(
                    swarm,
                    f.channel,
                    f.peer,
                    Some(job_id),
                    RefuseReason::Busy,
                    "host cannot store jobs".into(),
                );
            }
        }
        self.inflight.insert(job_id);
        self.emit(HostEvent::Accepted {
            job_id: proto::hex(&job_id),
            submitter: f.peer.to_string(),
            module_hash: proto::hex(&f.spec.module_hash),
        });
        if f.wait {
            // The result is the acknowledgement: nothing is promised before
            // it, so no flush waits in the latency path (sled still flushes
            // on its own every 500 ms, and a crash before the answer shows
            // the submitter a failed request, never a false success).
            self.waiters.entry(job_id).or_default().push(f.channel);
        } else {
            let _ = self.flush_tx.send(Some((job_id, f.channel)));
        }
        self.dispatch(job_id, &f.spec, f.input);
    }

    fn module(&mut self, h: &Hash) -> Option<WasmModule> {
        if let Some(m) = self.modules.get(h) {
            return Some(m.clone());
        }
        let bytes = self.blobs.get(h).ok()??;
        let m = WasmModule::new(bytes);
        if self.modules.len() >= MODULES_IN_MEMORY {
            self.modules.clear();
        }
        self.modules.insert(*h, m.clone());
        Some(m)
    }

    /// Hands the task to the worker pool; the result comes back on `done_rx`.
    /// `input` is the input's bytes if the host holds them already
    /// (verified); otherwise they are read from the blob store.
    fn dispatch(&mut self, job_id: JobId, spec: &JobSpec, input: Option<Vec<u8>>) {
        self.classes
            .insert(job_id, super::placement::task_class(spec));
        self.control.on_task_accepted(job_id, spec.memory_bytes);
        let input = match input {
            Some(i) => Ok(Some(i)),
            None => self.blobs.get(&spec.input_hash),
        };
        let (module, input) = match (self.module(&spec.module_hash), input) {
            (Some(m), Ok(Some(i))) => (m, i),
            _ => {
                tracing::error!(job = %proto::hex(&job_id), "blobs of an accepted job are missing");
                let r = missing_blob_result(spec);
                self.tasks.spawn(async move { (job_id, Some(r)) });
                return;
            }
        };
        let mut task = Task::new(module, input);
        task.args = spec.args.clone();
        task.limits = TaskLimits {
            fuel: spec.fuel,
            memory_bytes: spec.memory_bytes,
            timeout_ms: spec.timeout_ms,
            output_bytes: self.cfg.resources.max_output_bytes,
            scratch_bytes: TaskLimits::DEFAULT.scratch_bytes,
        };
        task.scratch = spec.scratch;
        task.portable = spec.portable;
        task.seed = Some(job_id);
        tracing::debug!(job = %proto::hex(&job_id), "dispatch");
        match self.pool.submit(task) {
            Ok(rx) => {
                self.running.insert(job_id);
                self.tasks.spawn(async move { (job_id, rx.await.ok()) });
            }
            Err(e) => {
                // Cannot happen while inflight ≤ max_queue = pool queue; the
                // job stays stored and runs at the next start.
                tracing::error!(error = %e, "worker pool full");
            }
        }
    }

    fn on_done(&mut self, swarm: &mut Swarm<Behaviour>, job_id: JobId, mut r: TaskResult) {
        tracing::debug!(job = %proto::hex(&job_id), waiters = self.waiters.get(&job_id).map_or(0, Vec::len), "done");
        self.running.remove(&job_id);
        self.inflight.remove(&job_id);
        self.control
            .on_task_done(&job_id, r.counters.fuel_used, r.counters.wall_us);
        if let (Some(class), Some(t)) = (self.classes.remove(&job_id), self.caste.as_mut()) {
            t.on_task_done(&roles::CasteConfig::default(), class);
        }
        if self.faulty
            && let Ok(out) = &mut r.outcome
        {
            // Test-only: a host that lies about the output, consistently.
            out.push(0x5a);
            r.counters.output_hash = *blake3::hash(out).as_bytes();
        }
        let price = (u128::from(r.counters.fuel_used) * u128::from(self.cfg.market.price_per_mfuel))
            .div_ceil(1_000_000) as u64;
        let body = ReceiptBody {
            version: proto::VERSION,
            job_id,
            host_key: self.id.public_key(),
            module_hash: r.module_hash,
            input_hash: r.input_hash,
            output_hash: r.counters.output_hash,
            fuel_used: r.counters.fuel_used,
            peak_memory_bytes: r.counters.peak_memory_bytes,
            wall_us: r.counters.wall_us,
            price,
            timestamp: unix_now(),
            arch: r.arch.to_string(),
            outcome: match &r.outcome {
                Ok(_) => ReceiptOutcome::Ok,
                Err(e) => ReceiptOutcome::Error(e.kind().to_string()),
            },
        };
        let receipt = SignedReceipt::sign(&body, &self.id.signing);
        let status = match &r.outcome {
            Ok(_) => "ok".to_string(),
            Err(e) => e.kind().to_string(),
        };
        let response = match r.outcome {
            Ok(output) => JobResponse::Done {
                job_id,
                output,
                receipt,
            },
            Err(e) => JobResponse::Failed {
                job_id,
                kind: e.kind().to_string(),
                message: e.to_string(),
                receipt,
            },
        };
        if let Err(e) = self.store.finish(&job_id, &response) {
            tracing::error!(error = %e, "cannot store result");
        }
        if !self.waiters.contains_key(&job_id) {
            // Nobody is waiting: the result must survive until collected.
            let _ = self.flush_tx.send(None);
        }
        self.emit(HostEvent::Finished {
            job_id: proto::hex(&job_id),
            status,
            fuel_used: body.fuel_used,
            wall_ms: body.wall_us as f64 / 1000.0,
            price,
            peak_memory_bytes: body.peak_memory_bytes,
        });
        for ch in self.waiters.remove(&job_id).unwrap_or_default() {
            ch.send(swarm, response.clone());
        }
    }

    fn on_fetch(&mut self, swarm: &mut Swarm<Behaviour>, ch: Reply, job_id: JobId, wait: bool) {
        let resp = match self.store.result(&job_id) {
            Ok(Some(r)) => r,
            _ if self.inflight.contains(&job_id) => {
                if wait {
                    self.waiters.entry(job_id).or_default().push(ch);
                    return;
                }
                let state = if self.running.contains(&job_id) {
                    JobState::Running
                } else {
                    JobState::Queued
                };
                JobResponse::Pending { job_id, state }
            }
            _ => JobResponse::Unknown { job_id },
        };
        ch.send(swarm, resp);
    }
}

/// Flushes the store for every batch of writes queued while the previous
/// flush ran, then hands the acknowledgements that waited on it back to the
/// event loop. One flush at a time: concurrent sled flushes stalled.
async fn flusher(
    store: HostStore,
    mut rx: mpsc::UnboundedReceiver<Option<(JobId, Reply)>>,
    durable: mpsc::Sender<(JobId, Reply)>,
) {
    while let Some(first) = rx.recv().await {
        let mut acks: Vec<_> = first.into_iter().collect();
        while let Ok(more) = rx.try_recv() {
            acks.extend(more);
        }
        if let Err(e) = store.flush().await {
            tracing::error!(error = %e, "flush failed; not acknowledging");
            continue;
        }
        for a in acks {
            if durable.send(a).await.is_err() {
                return;
            }
        }
    }
}

/// The result of a job whose blobs vanished: reported as a host error, with
/// a receipt, rather than silently dropped.
fn missing_blob_result(spec: &JobSpec) -> TaskResult {
    TaskResult {
        outcome: Err(crate::sandbox::SandboxError::HostError(
            "the job's blobs are missing on this host".into(),
        )),
        counters: Default::default(),
        module_hash: spec.module_hash,
        input_hash: spec.input_hash,
        arch: crate::sandbox::ARCH,
        stderr: Vec::new(),
        report: Default::default(),
        cache: None,
    }
}

/// Milliseconds since the Unix epoch (the clock the edge passes to the
/// pure decision code).
pub fn unix_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
