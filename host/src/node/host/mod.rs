//! The host daemon. One task owns the swarm and only routes: each piece of
//! work has its own owner, in a file named for it, and nothing CPU-heavy or
//! blocking runs on the swarm task.
//!
//! - `job_streams` (beside this module): reads, decodes and writes the
//!   long-lived job streams, one task per stream;
//! - [`admission`]: the pure checks and the per-peer quotas;
//! - [`fetcher`]: streams a job's missing blobs from its submitter, with a
//!   deadline, and verifies and stores them on the blocking pool;
//! - [`journal`]: the flusher, the one place that waits for the disk;
//! - [`scheduler`]: the sandbox worker pool; each job's task signs its
//!   receipt and stores its result itself;
//! - [`results`]: who waits for which result;
//! - [`advertiser`]: adverts, Caste thresholds and `peers.json`;
//! - [`tables`] and `carrier`: Young's tables carried for fresh submitters
//!   (`/biop2p/role/1.0.0`).
//!
//! A job's path: the `Submit` request is checked (signature, expiry, replay,
//! limits, price) and given room by the quotas (jobs and bytes, per
//! submitter and in all); missing blobs are fetched and verified; the job
//! and its nonce are written to sled, and flushed before the host says
//! `Accepted` when the submitter does not wait (when it waits, the result
//! is the acknowledgement); the task runs on the worker pool; the result
//! and a signed receipt are stored and sent to whoever waits for them. On
//! start, every accepted job that has no result yet is run again, so
//! `kill -9` loses nothing that was acknowledged. Shutdown has one owner,
//! `Host::stop`.

mod admission;
mod advertiser;
pub mod board;
mod carrier;
mod fetcher;
mod journal;
mod nat;
mod notes;
mod offload;
mod results;
mod scheduler;
pub mod tables;

pub use admission::{QuotaLimits, Quotas};
pub use advertiser::PEERS_FILE;
#[doc(hidden)]
pub use fetcher::place_chunk;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::request_response::{self, ResponseChannel};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, Swarm};
use tokio::sync::{mpsc, oneshot};

use self::admission::Refusal;
use self::advertiser::{Advertiser, Load, MIN_ADVERT_GAP};
use self::fetcher::{Fetcher, Incoming, Outcome};
use self::offload::Offload;
use self::results::Results;
use self::scheduler::{Done, Scheduler};
use super::discovery::{Discovery, Learned};
use super::job_streams::{self, StreamLimits, StreamReply, StreamRequest};
use crate::config::NodeConfig;
use crate::identity::Identity;
use crate::net::{
    Behaviour, BehaviourEvent, Inbound, NodeKind, build_swarm, default_listen_addrs, with_peer_id,
};
use crate::proto::{
    self, BlobResponse, InlineBlob, JobId, JobRequest, JobResponse, RefuseReason, SignedJob,
};
use crate::sandbox::WorkerPool;
use crate::store::{BlobStore, HostStore, JobRecord, LedgerRecord, StoredState, unix_now};
use security::settlement::{Applied, CreditPolicy, Ledger, Party, Side};

/// How a host is started.
#[derive(Debug, Clone)]
pub struct HostOptions {
    /// Configuration.
    pub config: NodeConfig,
    /// Data directory (identity, database, blobs, compiled code).
    pub data_dir: PathBuf,
    /// Listen addresses; empty means the config's (or all interfaces).
    pub listen: Vec<Multiaddr>,
    /// Test-only: corrupt outputs (to exercise replica disagreement).
    pub faulty: super::faulty::Faulty,
}

/// What the host reports, one event per line in `biop2p host --json`.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum HostEvent {
    /// The host changed role (Young to Caste, into or out of Havoc); its
    /// next advert says so.
    RoleSwitched {
        /// The old role.
        from: String,
        /// The new role.
        to: String,
        /// Why, with the numbers that decided it.
        reason: String,
    },
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
        /// Whether it came through a relay (no direct connection to its
        /// submitter: hole punching failed or was impossible).
        via_relay: bool,
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
    /// A long job's debit note was accepted by its submitter: the job goes
    /// on.
    NoteAccepted {
        /// The job (hex).
        job_id: String,
        /// The note's number (1, 2, ...).
        seq: u32,
        /// Fuel done so far.
        fuel: u64,
        /// What the submitter acknowledged it owes so far.
        price: u64,
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
    /// The host's ledger: at start, then at most once a tick when it
    /// changed (a new claim or a newly settled entry).
    Ledger {
        /// Value settled with submitters (receipts they accepted).
        earned: u64,
        /// Settled entries.
        entries: u64,
        /// Value of receipts not accepted yet.
        unaccepted: u64,
    },
    /// What the host knows of its reachability: said at start (`unknown`)
    /// and whenever it changes.
    Reachability {
        /// `public`, `private` or `unknown`.
        reachability: String,
        /// The same in words, e.g. `private (relayed via 12D3…)`.
        status: String,
        /// Relays holding a reservation for this host.
        relays: Vec<String>,
        /// The addresses its adverts carry now.
        advertised: Vec<String>,
    },
    /// This host, as a relay, refused or served a peer.
    Relay {
        /// `reservation_accepted`, `reservation_denied`, `circuit_accepted`,
        /// `circuit_denied` or `circuit_closed`.
        action: String,
        /// The peer that asked (the source of a circuit).
        peer: String,
        /// The destination of a circuit, or the refusal's status.
        detail: String,
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
    let mut bandwidth = prometheus_client::registry::Registry::default();
    let mut swarm = build_swarm(
        &id,
        &cfg.network,
        job_limits,
        NodeKind::Host,
        &mut bandwidth,
    )
    .await?;

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
    let flusher = tokio::spawn(journal::flusher(store.clone(), flush_rx, durable_tx));
    let control = super::control::Control::new(cfg.policy.clone());
    control.set_network_metrics(bandwidth);
    control.set_store(Some(store.clone()));
    let ledger = load_ledger(&store)?;
    let board = board::Board::load(store.clone())?;
    let credit = cfg.market.credit();
    let (notes, notes_rx) = notes::Notes::new(
        cfg.market.debit_note_fuel,
        Duration::from_secs(cfg.market.debit_note_timeout_secs),
    );
    let mut host = Host {
        control: control.clone(),
        quotas: Quotas::new(QuotaLimits::from_config(&cfg)),
        fetcher: Fetcher::new(
            blobs.clone(),
            Duration::from_secs(cfg.security.fetch_deadline_secs),
            cfg.security.fetch_min_bytes_per_sec,
        ),
        scheduler: Scheduler::new(
            pool,
            blobs.clone(),
            store.clone(),
            id.clone(),
            cfg.market.price_per_mfuel,
            cfg.resources.max_output_bytes,
            opts.faulty,
        )
        .with_notes(notes),
        advertiser: Advertiser::new(
            id.clone(),
            cfg.clone(),
            fuel_per_sec,
            addrs.clone(),
            opts.data_dir.join(PEERS_FILE),
        ),
        nat: nat::Nat::new(cfg.network.nat.clone(), &cfg.network.bootstrap),
        cfg,
        id: id.clone(),
        store,
        blobs,
        events: events_tx,
        flush_tx,
        flusher: Some(flusher),
        acceptor,
        gc: None,
        inflight: HashMap::new(),
        results: Results::default(),
        discovery,
        ledger,
        ledger_changed: false,
        credit,
        board,
        report_checks: Offload::new(board::CHECKS_AT_ONCE, board::CHECKS_QUEUED),
        settle_checks: Offload::new(SETTLE_CHECKS_AT_ONCE, SETTLE_CHECKS_QUEUED),
        tables: tables::Tables::default(),
        table_checks: Offload::new(tables::CHECKS_AT_ONCE, tables::CHECKS_QUEUED),
    };
    host.emit(HostEvent::Listening {
        peer_id: id.peer_id.to_string(),
        addrs: addrs.iter().map(|a| a.to_string()).collect(),
        fuel_per_sec,
    });
    host.emit_ledger();
    host.say_reachability();
    // Addresses the operator vouches for (a relay with a public IP): public
    // at once, so it relays before any AutoNAT server is around.
    let mut changed = false;
    for a in &host.cfg.network.nat.external_addrs.clone() {
        let a: Multiaddr = a
            .parse()
            .map_err(|_| crate::net::NetError::BadAddr(a.clone()))?;
        tracing::info!(addr = %a, "external address from the config");
        swarm.add_external_address(a.clone());
        changed |= host.nat.on_confirmed(&a);
    }
    host.on_reachability(&mut swarm, changed);
    host.recover()?;
    let task = tokio::spawn(host.run(swarm, shutdown_rx, durable_rx, stream_rx, notes_rx));
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
pub(crate) enum Reply {
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

/// Requests in flight per job stream.
const STREAM_IN_FLIGHT: usize = 256;

/// A job accepted and not finished: whose it is and what admission counted
/// for it (`None` for a job recovered at start, which admission never saw).
type Held = Option<(PeerId, u64)>;

struct Host {
    /// The volunteer's policy: asked before accepting, told of each task.
    control: super::control::Control,
    cfg: NodeConfig,
    id: Identity,
    store: HostStore,
    blobs: BlobStore,
    events: mpsc::Sender<HostEvent>,
    /// Writes waiting for a flush; acknowledgements come back on
    /// `durable_rx` once their flush is done (group commit, one flush at a
    /// time).
    flush_tx: mpsc::UnboundedSender<journal::FlushWaiter>,
    /// The flusher task; awaited at shutdown so the database is closed
    /// when `shutdown` returns.
    flusher: Option<tokio::task::JoinHandle<()>>,
    /// Accepts job streams and owns their tasks; aborted at shutdown.
    acceptor: tokio::task::JoinHandle<()>,
    /// Garbage collection in progress on the blocking pool (it holds a
    /// store handle, so shutdown waits for it).
    gc: Option<tokio::task::JoinHandle<()>>,
    /// Accepted and unfinished (bounded by `max_queue`).
    inflight: HashMap<JobId, Held>,
    quotas: Quotas<PeerId>,
    fetcher: Fetcher,
    scheduler: Scheduler,
    results: Results,
    discovery: Discovery,
    advertiser: Advertiser,
    nat: nat::Nat,
    /// Settled entries and unaccepted claims, mirrored from the store
    /// (loaded at start): what credit admission reads.
    ledger: Ledger,
    /// The ledger changed since it was last reported.
    ledger_changed: bool,
    credit: CreditPolicy,
    /// Trust reports kept for other submitters (a store handle: dropped
    /// before the store is closed).
    board: board::Board,
    /// Published reports being checked off the loop.
    report_checks: Offload<board::Checked<Reply>>,
    /// Settlements (acceptances) being checked off the loop.
    settle_checks: Offload<SettleChecked>,
    /// Young's tables carried for fresh submitters.
    tables: tables::Tables,
    /// Published tables being checked off the loop.
    table_checks:
        Offload<tables::Checked<libp2p::request_response::ResponseChannel<proto::RoleResponse>>>,
}

/// Acceptances checked at once off the loop, and admitted to wait for a
/// check (a batch's submitter settles many at once); past that `busy`, and
/// the submitter keeps them owed and settles them again later.
const SETTLE_CHECKS_AT_ONCE: usize = 2;
/// See [`SETTLE_CHECKS_AT_ONCE`].
const SETTLE_CHECKS_QUEUED: usize = 1024;

/// An acceptance checked off the loop, with what applying it needs.
struct SettleChecked {
    peer: PeerId,
    reply: Reply,
    evidence: proto::SettledEntry,
    checked: Result<security::settlement::Entry, admission::SettleCheck>,
}

/// A `Submit` as the host loop takes it: the job, what checking its
/// signature gave (on a job stream's task, or on the loop for
/// request-response), its inline blobs, and whether its submitter waits.
struct Submission {
    job: SignedJob,
    spec: Result<proto::JobSpec, proto::ProtoError>,
    inline: Vec<InlineBlob>,
    wait: bool,
}

impl Host {
    fn on_role_switch(&self, sw: roles::RoleSwitch) {
        tracing::info!(from = %sw.from, to = %sw.to, reason = %sw.reason, "role switched");
        self.emit(HostEvent::RoleSwitched {
            from: advertiser::role_name(sw.from),
            to: advertiser::role_name(sw.to),
            reason: sw.reason,
        });
    }

    fn emit(&self, e: HostEvent) {
        let _ = self.events.try_send(e);
    }

    /// Says what the host knows of its reachability (log and event).
    fn say_reachability(&mut self) {
        let status = self.nat.status();
        let relays = match &status {
            crate::net::reachability::Status::Private { relays } => {
                relays.iter().map(|r| r.to_string()).collect()
            }
            _ => Vec::new(),
        };
        self.refresh_addrs();
        tracing::info!("reachability: {status}");
        self.emit(HostEvent::Reachability {
            reachability: status.word().to_string(),
            status: status.to_string(),
            relays,
            advertised: self
                .advertiser
                .advertised
                .iter()
                .map(|a| a.to_string())
                .collect(),
        });
    }

    /// Recomputes what adverts carry; a change is advertised soon.
    fn refresh_addrs(&mut self) {
        let nat = &self.cfg.network.nat;
        let offer = (nat.relay_server
            && self.nat.status() == crate::net::reachability::Status::Public)
            .then(|| proto::RelayOffer {
                max_reservations: nat.relay_max_reservations.min(u32::MAX as usize) as u32,
                max_circuits_per_peer: nat.relay_max_circuits_per_peer.min(u32::MAX as usize)
                    as u32,
                circuit_secs: nat.relay_circuit_secs,
                circuit_bytes: nat.relay_circuit_bytes,
            });
        if offer != self.advertiser.relay_offer {
            self.advertiser.relay_offer = offer;
            self.advertiser.want();
        }
        let addrs = self
            .nat
            .advert_addrs(&self.advertiser.listen_addrs, proto::MAX_ADVERT_ADDRS);
        if addrs != self.advertiser.advertised {
            self.advertiser.advertised = addrs;
            self.advertiser.want();
        }
    }

    /// A NAT-related status change: say it, give back or take relay slots.
    fn on_reachability(&mut self, swarm: &mut Swarm<Behaviour>, changed: bool) {
        if changed {
            self.nat.release_if_public(swarm);
            self.nat.maybe_reserve(swarm);
            self.say_reachability();
        }
    }

    fn on_relay_event(&self, e: libp2p::relay::Event) {
        use libp2p::relay::Event as R;
        let (action, peer, detail) = match e {
            R::ReservationReqAccepted { src_peer_id, .. } => {
                ("reservation_accepted", src_peer_id, String::new())
            }
            R::ReservationReqDenied {
                src_peer_id,
                status,
            } => ("reservation_denied", src_peer_id, format!("{status:?}")),
            R::CircuitReqAccepted {
                src_peer_id,
                dst_peer_id,
            } => ("circuit_accepted", src_peer_id, dst_peer_id.to_string()),
            R::CircuitReqDenied {
                src_peer_id,
                dst_peer_id,
                status,
            } => (
                "circuit_denied",
                src_peer_id,
                format!("{dst_peer_id}: {status:?}"),
            ),
            R::CircuitClosed {
                src_peer_id,
                dst_peer_id,
                error,
            } => (
                "circuit_closed",
                src_peer_id,
                match error {
                    Some(e) => format!("{dst_peer_id}: {e}"),
                    None => dst_peer_id.to_string(),
                },
            ),
            other => {
                tracing::debug!(event = ?other, "relay");
                return;
            }
        };
        tracing::info!(%peer, %detail, "relay: {action}");
        self.emit(HostEvent::Relay {
            action: action.to_string(),
            peer: peer.to_string(),
            detail,
        });
    }

    fn load(&self) -> Load {
        Load {
            workers: self.scheduler.workers() as u32,
            running: self.scheduler.running(),
            queued: self.inflight.len() + self.fetcher.len(),
            // A policy stop (pause, duty cycle, caps...) shows as no room.
            open: self.control.stopped().is_none(),
        }
    }

    /// Queues every accepted job that has no result (a crash or a stop).
    fn recover(&mut self) -> Result<(), HostError> {
        let jobs = self.store.unfinished()?;
        let n = jobs.len();
        for (job_id, rec) in jobs {
            match rec.job.verify() {
                Ok(spec) => {
                    self.inflight.insert(job_id, None);
                    self.control.on_task_accepted(job_id, spec.memory_bytes);
                    self.scheduler.dispatch(job_id, &spec, None);
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
        mut durable_rx: mpsc::Receiver<(Reply, JobResponse)>,
        mut stream_rx: mpsc::Receiver<StreamRequest>,
        mut notes_rx: mpsc::UnboundedReceiver<JobId>,
    ) {
        let mut gc = tokio::time::interval(Duration::from_secs(600));
        let mut tick = tokio::time::interval(MIN_ADVERT_GAP);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // Biased: shutdown first, then local completions (they free
            // room), then new remote work.
            tokio::select! {
                biased;
                _ = &mut shutdown => break,
                Some(done) = self.scheduler.next_done() => self.on_done(&mut swarm, done),
                Some(out) = self.fetcher.next_verified() => self.on_fetched(&mut swarm, out),
                Some(job_id) = notes_rx.recv() => self.on_note_issued(&mut swarm, job_id),
                Some((ch, resp)) = durable_rx.recv() => ch.send(&mut swarm, resp),
                Some(c) = self.report_checks.next() => self.on_report_checked(&mut swarm, c),
                Some(c) = self.settle_checks.next() => self.on_settle_checked(&mut swarm, c),
                Some(c) = self.table_checks.next() => self.on_table_checked(&mut swarm, c),
                _ = tick.tick() => self.on_tick(&mut swarm),
                ev = swarm.select_next_some() => self.on_swarm_event(&mut swarm, ev),
                Some(r) = stream_rx.recv() => {
                    let reply = Reply::Stream(r.reply);
                    self.on_request(&mut swarm, r.peer, r.request, r.verified, reply);
                }
                _ = gc.tick() => self.collect_garbage(),
            }
        }
        // The flusher may be waiting to hand acknowledgements back: let it
        // see nobody takes them any more, or it would never end.
        drop(durable_rx);
        self.stop(swarm).await;
    }

    /// Removes expired nonces and old results on the blocking pool, one
    /// collection at a time. A nonce is kept exactly as long as its job
    /// could still be admitted ([`admission::nonce_horizon`]).
    fn collect_garbage(&mut self) {
        if self.gc.as_ref().is_some_and(|h| !h.is_finished()) {
            return;
        }
        let store = self.store.clone();
        let horizon = admission::nonce_horizon(unix_now(), self.cfg.security.clock_skew_secs);
        self.gc = Some(tokio::task::spawn_blocking(move || {
            if let Err(e) = store.collect_garbage(horizon) {
                tracing::warn!(error = %e, "garbage collection failed");
            }
        }));
    }

    /// The one owner of shutdown, in order: no new work (the swarm goes),
    /// the per-job tasks end, the workers stop and are joined, the flusher
    /// drains and ends, and the last store handle closes the database.
    async fn stop(self, swarm: Swarm<Behaviour>) {
        drop(swarm);
        let Host {
            store,
            control,
            scheduler,
            flush_tx,
            flusher,
            acceptor,
            gc,
            advertiser,
            fetcher,
            board,
            report_checks,
            settle_checks,
            ..
        } = self;
        drop(board);
        // Checks still running hold store handles (a settlement's reads its
        // job): they end before the store is closed.
        report_checks.finish().await;
        settle_checks.finish().await;
        acceptor.abort();
        let _ = acceptor.await;
        drop(fetcher);
        scheduler.shutdown().await;
        advertiser.finish().await;
        if let Some(g) = gc {
            let _ = g.await;
        }
        drop(flush_tx);
        if let Some(f) = flusher {
            let _ = f.await;
        }
        control.set_store(None);
        if let Err(e) = store.close().await {
            tracing::error!(error = %e, "database not closed");
        }
    }

    /// Tells the page (and `--json`) what the ledger holds now.
    fn emit_ledger(&mut self) {
        let (mut earned, mut entries, mut unaccepted) = (0u64, 0u64, 0u64);
        for (_, st) in self.ledger.accounts() {
            earned = earned.saturating_add(st.settled);
            entries += st.entries;
            unaccepted = unaccepted.saturating_add(st.unaccepted);
        }
        self.emit(HostEvent::Ledger {
            earned,
            entries,
            unaccepted,
        });
    }

    fn on_swarm_event(&mut self, swarm: &mut Swarm<Behaviour>, ev: SwarmEvent<BehaviourEvent>) {
        match ev {
            SwarmEvent::Behaviour(BehaviourEvent::Job(e)) => self.on_job_event(swarm, e),
            SwarmEvent::Behaviour(BehaviourEvent::Blob(e)) => self.on_blob_event(swarm, e),
            SwarmEvent::Behaviour(BehaviourEvent::Role(e)) => self.on_role_event(swarm, e),
            SwarmEvent::Behaviour(BehaviourEvent::Mdns(e)) => self.discovery.on_mdns(swarm, e),
            SwarmEvent::Behaviour(BehaviourEvent::Kad(e)) => self.discovery.on_kad(swarm, e),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(e)) => {
                let changed = self.nat.on_identify(&e, &self.advertiser.listen_addrs);
                self.on_reachability(swarm, changed);
                // A new relay candidate may have appeared.
                self.nat.maybe_reserve(swarm);
                self.discovery.on_identify(swarm, e)
            }
            SwarmEvent::Behaviour(BehaviourEvent::Autonat(e)) => {
                let changed = self.nat.on_autonat(&e);
                self.on_reachability(swarm, changed);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Relay(e)) => self.on_relay_event(e),
            SwarmEvent::Behaviour(BehaviourEvent::RelayClient(e)) => {
                tracing::debug!(event = ?e, "relay client");
            }
            SwarmEvent::Behaviour(BehaviourEvent::Dcutr(e)) => match e.result {
                Ok(_) => {
                    tracing::info!(peer = %e.remote_peer_id, "hole punched: direct connection")
                }
                Err(err) => {
                    tracing::info!(peer = %e.remote_peer_id, error = %err, "hole punching failed")
                }
            },
            SwarmEvent::ExternalAddrConfirmed { address } => {
                let changed = self.nat.on_confirmed(&address);
                self.on_reachability(swarm, changed);
                self.refresh_addrs();
            }
            SwarmEvent::ExternalAddrExpired { address } => {
                let changed = self.nat.on_expired(&address);
                self.on_reachability(swarm, changed);
                self.refresh_addrs();
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                ..
            } => {
                self.nat.on_established(peer_id, connection_id, &endpoint);
                self.refresh_addrs();
            }
            SwarmEvent::ConnectionClosed { connection_id, .. } => {
                self.nat.on_closed(connection_id);
                self.refresh_addrs();
            }
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(e)) => {
                let learned = self.discovery.on_gossip(swarm, e);
                if matches!(learned, Some(Learned::New(_) | Learned::Refreshed(_))) {
                    self.control.on_advert();
                }
                match learned {
                    Some(Learned::New(peer)) => {
                        let now = Instant::now();
                        if let Some(a) = self.discovery.table.get(&peer, now) {
                            tracing::info!(%peer, "host discovered");
                            self.emit(HostEvent::Discovered {
                                peer_id: peer.to_string(),
                                price_per_mfuel: a.price_per_mfuel,
                                roles: a.roles.clone(),
                            });
                            let load = self.load();
                            self.advertiser
                                .maybe_write_peers(&self.discovery, &load, true);
                        }
                    }
                    Some(Learned::Subscriber(_)) => {
                        // A newcomer should not wait a whole interval.
                        self.advertiser.want();
                        let load = self.load();
                        self.advertiser
                            .maybe_advertise(swarm, &self.discovery, &load);
                    }
                    _ => {}
                }
            }
            SwarmEvent::NewListenAddr {
                listener_id,
                address,
            } => {
                let a = with_peer_id(&address, self.id.peer_id);
                if !self.advertiser.listen_addrs.contains(&a) {
                    self.advertiser.listen_addrs.push(a);
                }
                let changed = self.nat.on_listen_addr(listener_id, &address);
                self.refresh_addrs();
                self.on_reachability(swarm, changed);
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                let a = with_peer_id(&address, self.id.peer_id);
                self.advertiser.listen_addrs.retain(|x| *x != a);
                self.refresh_addrs();
            }
            SwarmEvent::ListenerClosed {
                listener_id,
                addresses,
                reason,
            } => {
                for address in addresses {
                    let a = with_peer_id(&address, self.id.peer_id);
                    self.advertiser.listen_addrs.retain(|x| *x != a);
                }
                let why = match reason {
                    Ok(()) => "closed".to_string(),
                    Err(e) => e.to_string(),
                };
                let changed = self.nat.on_listener_closed(listener_id, &why);
                self.refresh_addrs();
                self.on_reachability(swarm, changed);
            }
            SwarmEvent::IncomingConnectionError { error, .. } => {
                tracing::debug!(%error, "incoming connection failed");
            }
            _ => {}
        }
    }

    /// Four times a second: fail fetches past their deadline, forget hosts
    /// whose adverts stopped, advertise when due, list the known hosts for
    /// `biop2p peers` each second.
    fn on_tick(&mut self, swarm: &mut Swarm<Behaviour>) {
        let now = Instant::now();
        if std::mem::take(&mut self.ledger_changed) {
            self.emit_ledger();
        }
        for out in self.fetcher.expire(now) {
            self.on_fetched(swarm, out);
        }
        self.quotas.forget_idle(now);
        let gone = self.discovery.table.evaporate(now);
        let changed = !gone.is_empty();
        for peer in &gone {
            tracing::info!(%peer, "host forgotten (its adverts stopped)");
            self.emit(HostEvent::Forgotten {
                peer_id: peer.to_string(),
            });
        }
        self.control
            .publish(swarm.network_info().num_peers(), self.scheduler.running());
        if self.control.take_changed() {
            self.advertiser.want();
        }
        self.nat.maybe_reserve(swarm);
        let load = self.load();
        let known = self.discovery.table.len();
        for sw in self.advertiser.observe(&gone, known, &load) {
            self.on_role_switch(sw);
        }
        self.advertiser
            .maybe_advertise(swarm, &self.discovery, &load);
        self.discovery.redial(swarm);
        self.advertiser
            .maybe_write_peers(&self.discovery, &load, changed);
    }

    fn refuse(
        &self,
        swarm: &mut Swarm<Behaviour>,
        ch: Reply,
        peer: PeerId,
        job_id: Option<JobId>,
        (reason, message): Refusal,
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
        self.on_request(swarm, peer, request, None, Reply::Rr(channel));
    }

    /// A job request from either protocol; `verified` is a job stream's
    /// check of a `Submit`'s signature, made on its own task (`None`: check
    /// it here).
    fn on_request(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        peer: PeerId,
        request: Inbound<JobRequest>,
        verified: Option<Result<proto::JobSpec, proto::ProtoError>>,
        channel: Reply,
    ) {
        // Everything but a job costs one fetch token (jobs have quotas of
        // their own), taken before any work is done for it.
        if let Inbound::Ok(r) = &request
            && !matches!(r, JobRequest::Submit { .. })
            && let Err(why) = self.quotas.admit_fetch(&peer, Instant::now())
        {
            let job_id = match r {
                JobRequest::Fetch { job_id, .. } => Some(*job_id),
                _ => None,
            };
            return self.refuse(swarm, channel, peer, job_id, why);
        }
        match request {
            Inbound::TooLarge { len, limit } => self.refuse(
                swarm,
                channel,
                peer,
                None,
                (
                    RefuseReason::TooLarge,
                    format!("request of {len} bytes is over the limit of {limit}"),
                ),
            ),
            Inbound::Malformed(m) => self.refuse(
                swarm,
                channel,
                peer,
                None,
                (RefuseReason::Malformed, format!("undecodable request: {m}")),
            ),
            Inbound::Ok(JobRequest::Submit { job, inline, wait }) => {
                let spec = verified.unwrap_or_else(|| job.verify());
                let submission = Submission {
                    job,
                    spec,
                    inline,
                    wait,
                };
                self.on_submit(swarm, peer, channel, submission)
            }
            Inbound::Ok(JobRequest::Fetch { job_id, wait }) => {
                if let Some(why) = super::fetch_auth::fetch_refusal(&self.store, &peer, &job_id) {
                    return self.refuse(
                        swarm,
                        channel,
                        peer,
                        Some(job_id),
                        (RefuseReason::NotYours, why),
                    );
                }
                self.on_fetch(swarm, channel, job_id, wait)
            }
            Inbound::Ok(JobRequest::Settle { entry }) => {
                self.on_settle(swarm, peer, channel, entry)
            }
            Inbound::Ok(JobRequest::Reconcile { statement }) => {
                self.on_reconcile(swarm, peer, channel, statement)
            }
            Inbound::Ok(JobRequest::AcceptNote { entry }) => {
                self.on_accept_note(swarm, peer, channel, entry)
            }
            Inbound::Ok(JobRequest::PublishReport { report }) => {
                let checked = self
                    .report_checks
                    .start((channel, report), move |(reply, bytes)| {
                        let outcome = board::Board::check(&bytes);
                        board::Checked {
                            sender: peer,
                            reply,
                            bytes,
                            outcome,
                        }
                    });
                if let Err((channel, _)) = checked {
                    self.refuse(
                        swarm,
                        channel,
                        peer,
                        None,
                        (
                            RefuseReason::Busy,
                            "this host is checking other trust reports; publish again later".into(),
                        ),
                    );
                }
            }
            Inbound::Ok(JobRequest::Reports { after, max_bytes }) => {
                let (items, next, more) = self.board.page(after, max_bytes);
                channel.send(swarm, JobResponse::Reports { items, next, more })
            }
            // Job streams answer it themselves; on request-response it
            // costs as much as a fetch (taken above).
            Inbound::Ok(JobRequest::Hello) => channel.send(swarm, JobResponse::Hello),
        }
    }

    /// A published report came back from its check: kept (or refused with
    /// the check's reason), and its publisher answered.
    fn on_report_checked(&mut self, swarm: &mut Swarm<Behaviour>, c: board::Checked<Reply>) {
        let ledger = &self.ledger;
        let paid = |k: &[u8; 32]| ledger.account(&Party(*k)).entries > 0;
        let kept = c
            .outcome
            .and_then(|report| self.board.keep(&c.sender, &report, c.bytes, paid));
        match kept {
            Ok(new) => {
                tracing::info!(peer = %c.sender, new, kept = self.board.len(), "trust report published");
                c.reply.send(swarm, JobResponse::ReportKept { new })
            }
            Err(r) => self.refuse(swarm, c.reply, c.sender, None, r),
        }
    }

    /// A worker paused at a debit note: its submitter's waiting requests
    /// get the note (a later `Fetch` gets it too, while it waits).
    fn on_note_issued(&mut self, swarm: &mut Swarm<Behaviour>, job_id: JobId) {
        let waiters = self.results.take(&job_id);
        if waiters.is_empty() {
            // The next `Fetch` gets it.
            return;
        }
        let Ok(Some(note)) = self.scheduler.notes().deliver(&job_id) else {
            // Accepted (or ended) meanwhile: they wait on.
            for ch in waiters {
                self.results.wait(job_id, ch);
            }
            return;
        };
        tracing::debug!(job = %proto::hex(&job_id), "debit note issued");
        for ch in waiters {
            ch.send(
                swarm,
                JobResponse::Note {
                    job_id,
                    note: note.clone(),
                },
            );
        }
    }

    /// A submitter accepts a debit note: check that it is our note for its
    /// job (both signatures, the acceptance restating the note, the job's
    /// submitter is the peer), store it, and let the worker go on. A replay
    /// of an accepted note is confirmed and changes nothing.
    fn on_accept_note(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        peer: PeerId,
        channel: Reply,
        entry: proto::NotedEntry,
    ) {
        let (n, _) = match entry.check() {
            Ok(x) => x,
            Err(e) => return self.refuse(swarm, channel, peer, None, refusal_of(&e)),
        };
        let job_id = n.job_id;
        if n.host_key != self.id.public_key()
            || super::submitter::peer_of_key(&n.submitter) != Some(peer)
        {
            return self.refuse(
                swarm,
                channel,
                peer,
                Some(job_id),
                (
                    RefuseReason::NotYours,
                    "a note is accepted only by its job's submitter, at the host that issued it"
                        .into(),
                ),
            );
        }
        let notes = self.scheduler.notes().clone();
        let stored = notes::accepted_in_store(&self.store, &job_id);
        if n.seq <= stored {
            return channel.send(swarm, JobResponse::NoteAccepted { job_id, seq: n.seq });
        }
        // Only the note a worker waits on can be accepted: a note we signed
        // for an earlier run (or never) changes nothing.
        let waiting = notes.pending(&job_id);
        if waiting.as_ref().map(|(s, w)| (*s, w.hash())) != Some((n.seq, entry.note.hash())) {
            return self.refuse(
                swarm,
                channel,
                peer,
                Some(job_id),
                (
                    RefuseReason::Replayed,
                    "no worker waits on this note (the job moved on, ended or restarted)".into(),
                ),
            );
        }
        if let Err(e) = self.store.put_note(&job_id, &entry) {
            tracing::error!(error = %e, "cannot store a note acceptance");
            return self.refuse(
                swarm,
                channel,
                peer,
                Some(job_id),
                (RefuseReason::Busy, "host cannot store the note".into()),
            );
        }
        notes.accept(job_id, n.seq);
        tracing::info!(job = %proto::hex(&job_id), %peer, seq = n.seq, fuel = n.fuel, price = n.price, "debit note accepted");
        self.emit(HostEvent::NoteAccepted {
            job_id: proto::hex(&job_id),
            seq: n.seq,
            fuel: n.fuel,
            price: n.price,
        });
        let _ = self.flush_tx.send(Some((
            channel,
            JobResponse::NoteAccepted { job_id, seq: n.seq },
        )));
    }

    /// A submitter's statement of our settled entries with it: answer with
    /// ours, signed, and log a disagreement as evidence (it is never merged:
    /// only entries proven by both signatures count). Only the submitter
    /// itself may ask, about itself.
    fn on_reconcile(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        peer: PeerId,
        channel: Reply,
        statement: proto::SignedStatement,
    ) {
        let theirs = match statement.verify() {
            Ok(b) => b,
            Err(e) => {
                return self.refuse(
                    swarm,
                    channel,
                    peer,
                    None,
                    (RefuseReason::BadSignature, e.to_string()),
                );
            }
        };
        if super::submitter::peer_of_key(&theirs.from) != Some(peer)
            || theirs.with != self.id.public_key()
        {
            return self.refuse(
                swarm,
                channel,
                peer,
                None,
                (
                    RefuseReason::NotYours,
                    "a statement is reconciled only by its signer, with the host it names".into(),
                ),
            );
        }
        let ours = self.ledger.statement(&Party(theirs.from));
        let agrees = ours.entries == theirs.entries
            && ours.total == theirs.total
            && ours.digest == theirs.digest;
        if !agrees {
            tracing::warn!(
                %peer,
                ours_entries = ours.entries,
                ours_total = ours.total,
                theirs_entries = theirs.entries,
                theirs_total = theirs.total,
                "a submitter's balance statement disagrees with our ledger (kept as evidence, not merged)"
            );
        }
        let signed = proto::SignedStatement::sign(
            &proto::StatementBody {
                version: proto::VERSION,
                from: self.id.public_key(),
                with: theirs.from,
                entries: ours.entries,
                total: ours.total,
                digest: ours.digest,
                issued_at_ms: unix_now_ms(),
            },
            &self.id.signing,
        );
        channel.send(
            swarm,
            JobResponse::Statement {
                statement: signed,
                agrees,
            },
        )
    }

    /// A submitter accepts a result: check the entry (both signatures, our
    /// receipt, its job, the price rule), apply it once, store it and
    /// confirm once durable. Forged, foreign or inconsistent entries are
    /// refused and change nothing; a replay is confirmed and changes
    /// nothing.
    fn on_settle(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        peer: PeerId,
        channel: Reply,
        evidence: proto::SettledEntry,
    ) {
        let (store, own_key) = (self.store.clone(), self.id.public_key());
        let started = self
            .settle_checks
            .start((channel, evidence), move |(reply, evidence)| {
                let checked = admission::check_settlement(&own_key, &evidence, |j| {
                    store.job(j).ok().flatten()
                });
                SettleChecked {
                    peer,
                    reply,
                    evidence,
                    checked,
                }
            });
        if let Err((channel, _)) = started {
            self.refuse(
                swarm,
                channel,
                peer,
                None,
                (
                    RefuseReason::Busy,
                    "this host is checking many acceptances; settle again later".into(),
                ),
            );
        }
    }

    /// An acceptance came back from its check (both signatures, our
    /// receipt, its job, the price rule): applied once, stored, and
    /// confirmed once durable.
    fn on_settle_checked(&mut self, swarm: &mut Swarm<Behaviour>, c: SettleChecked) {
        let SettleChecked {
            peer,
            reply: channel,
            evidence,
            checked,
        } = c;
        match checked {
            Err(admission::SettleCheck::Refused(job_id, r)) => {
                self.refuse(swarm, channel, peer, job_id, r)
            }
            Err(admission::SettleCheck::Unknown(job_id)) => {
                channel.send(swarm, JobResponse::Unknown { job_id })
            }
            Ok(entry) => {
                let job_id = entry.job_id;
                match self.ledger.apply(entry.clone()) {
                    Applied::Duplicate => {
                        channel.send(swarm, JobResponse::Settled { job_id, new: false })
                    }
                    Applied::Conflict(_) => self.refuse(
                        swarm,
                        channel,
                        peer,
                        Some(job_id),
                        (
                            RefuseReason::Replayed,
                            "this job was settled with another acceptance".into(),
                        ),
                    ),
                    Applied::New => {
                        let rec = LedgerRecord {
                            entry,
                            evidence,
                            delivered: true,
                        };
                        if let Err(e) = self.store.settle(&job_id, &rec) {
                            tracing::error!(error = %e, "cannot store a settled entry");
                            // Keep memory in step with the disk: rebuild.
                            if let Ok(l) = load_ledger(&self.store) {
                                self.ledger = l;
                            }
                            return self.refuse(
                                swarm,
                                channel,
                                peer,
                                Some(job_id),
                                (RefuseReason::Busy, "host cannot store the ledger".into()),
                            );
                        }
                        tracing::info!(job = %proto::hex(&job_id), %peer, price = rec.entry.amount, "settled");
                        self.ledger_changed = true;
                        let _ = self
                            .flush_tx
                            .send(Some((channel, JobResponse::Settled { job_id, new: true })));
                    }
                }
            }
        }
    }

    fn on_submit(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        peer: PeerId,
        channel: Reply,
        submission: Submission,
    ) {
        let Submission {
            job,
            spec,
            inline,
            wait,
        } = submission;
        let spec = match spec {
            Ok(s) => s,
            Err(e) => return self.refuse(swarm, channel, peer, None, refusal_of(&e)),
        };
        let job_id = job.id();
        tracing::debug!(job = %proto::hex(&job_id), %peer, wait, "submit");
        if let Err(r) = admission::check_spec(&self.cfg, &spec, unix_now()) {
            return self.refuse(swarm, channel, peer, Some(job_id), r);
        }
        let seen = self
            .store
            .nonce_seen(&spec.submitter, &spec.nonce)
            .unwrap_or(true);
        if seen || self.fetcher.contains(&job_id) || self.inflight.contains_key(&job_id) {
            return self.refuse(
                swarm,
                channel,
                peer,
                Some(job_id),
                (
                    RefuseReason::Replayed,
                    "this job's nonce was already used".into(),
                ),
            );
        }
        if let Err(r) = admission::check_credit(
            &self.credit,
            &self.ledger,
            &spec,
            self.cfg.market.price_per_mfuel,
        ) {
            return self.refuse(swarm, channel, peer, Some(job_id), r);
        }
        if let Err(r) = admission::check_inline(self.cfg.security.max_inline_bytes, &spec, &inline)
        {
            return self.refuse(swarm, channel, peer, Some(job_id), r);
        }
        let relayed = self.nat.relayed_only(&peer);
        if relayed {
            let bytes = spec.module_size.saturating_add(spec.input_size);
            let limit = self.cfg.network.nat.max_relayed_job_bytes;
            if bytes > limit {
                return self.refuse(
                    swarm,
                    channel,
                    peer,
                    Some(job_id),
                    (
                        RefuseReason::TooLarge,
                        format!(
                            "job of {bytes} bytes (module and input) is over the {limit} bytes this host takes through a relay: there is no direct connection to you (hole punching failed); relays carry small jobs only"
                        ),
                    ),
                );
            }
        }
        if let Err(stop) = self.control.admit(spec.memory_bytes) {
            return self.refuse(
                swarm,
                channel,
                peer,
                Some(job_id),
                (RefuseReason::Busy, stop.to_string()),
            );
        }
        // Havoc: in a crisis, a backlog over the limit is not grown.
        let backlog = (self.inflight.len() + self.fetcher.len()) as u32;
        if self
            .advertiser
            .role
            .should_shed(backlog, self.scheduler.workers() as u32)
        {
            return self.refuse(
                swarm,
                channel,
                peer,
                Some(job_id),
                (
                    RefuseReason::Shedding,
                    format!("in a crisis with {backlog} jobs queued; try another host"),
                ),
            );
        }
        // Recovered jobs are outside the quotas: bound the pool's queue too.
        let max_queue = self.cfg.resources.max_queue;
        if self.inflight.len() + self.fetcher.len() >= max_queue {
            return self.refuse(
                swarm,
                channel,
                peer,
                Some(job_id),
                (
                    RefuseReason::Busy,
                    format!("{max_queue} jobs queued; try another host"),
                ),
            );
        }
        // What this job holds in memory until it runs: its input, and any
        // blob being fetched.
        let empty = admission::empty_hash();
        let mut missing = Vec::new();
        let blobs = [
            (spec.module_hash, spec.module_size),
            (spec.input_hash, spec.input_size),
        ];
        let data = spec.data.iter().map(|d| (d.hash, d.size));
        for (h, size) in blobs.into_iter().chain(data) {
            let inlined = inline.iter().any(|b| b.hash == h);
            if h != empty
                && !inlined
                && !self.blobs.contains(&h)
                && !missing.iter().any(|(m, _)| *m == h)
            {
                missing.push((h, size));
            }
        }
        let held = spec.input_size
            + missing
                .iter()
                .filter(|(h, _)| *h != spec.input_hash)
                .map(|(_, s)| s)
                .sum::<u64>();
        if let Err(r) = self.quotas.admit_job(&peer, held) {
            return self.refuse(swarm, channel, peer, Some(job_id), r);
        }
        let pins = fetcher::job_pins(&spec);
        for b in &inline {
            if let Err(e) = self.blobs.put(&b.hash, &b.data, &pins, !wait) {
                tracing::error!(error = %e, "cannot store blob");
                self.quotas.release_job(&peer, held);
                return self.refuse(
                    swarm,
                    channel,
                    peer,
                    Some(job_id),
                    (RefuseReason::Busy, "host cannot store blobs".into()),
                );
            }
        }
        let input = if spec.input_hash == empty {
            Some(Vec::new())
        } else {
            inline
                .into_iter()
                .find(|b| b.hash == spec.input_hash)
                .map(|b| b.data)
        };
        let incoming = Incoming {
            job,
            spec,
            peer,
            channel,
            wait,
            held,
            input,
            relayed,
        };
        if let Some(ready) = self
            .fetcher
            .start(swarm, job_id, incoming, missing, Instant::now())
        {
            self.accept(swarm, job_id, ready);
        }
    }

    fn on_blob_event(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        e: request_response::Event<Inbound<proto::BlobRequest>, BlobResponse>,
    ) {
        let out = match e {
            request_response::Event::Message { message, .. } => match message {
                // A host does not serve blobs to others: they are submitters'
                // data, given to it for one job.
                request_response::Message::Request { channel, .. } => {
                    let _ = swarm
                        .behaviour_mut()
                        .blob
                        .send_response(channel, BlobResponse::NotFound);
                    None
                }
                request_response::Message::Response {
                    request_id,
                    response,
                } => self.fetcher.on_chunk(swarm, request_id, Ok(response)),
            },
            request_response::Event::OutboundFailure {
                request_id, error, ..
            } => self
                .fetcher
                .on_chunk(swarm, request_id, Err(error.to_string())),
            _ => None,
        };
        if let Some(out) = out {
            self.on_fetched(swarm, out);
        }
    }

    /// A job left the fetcher: accept it, or refuse it and free its room.
    fn on_fetched(&mut self, swarm: &mut Swarm<Behaviour>, out: Outcome) {
        match out {
            Outcome::Ready(job) => {
                let job_id = job.job.id();
                self.accept(swarm, job_id, job);
            }
            Outcome::Failed(job, refusal) => {
                let job_id = job.job.id();
                self.quotas.release_job(&job.peer, job.held);
                self.refuse(swarm, job.channel, job.peer, Some(job_id), refusal);
            }
        }
    }

    /// Stores the job (and its nonce) and starts it. The `Accepted` answer is
    /// sent only once the write is flushed.
    fn accept(&mut self, swarm: &mut Swarm<Behaviour>, job_id: JobId, f: Incoming) {
        let record = JobRecord {
            job: f.job,
            submitter_peer: f.peer.to_bytes(),
            state: StoredState::Queued,
            accepted_at: unix_now(),
            expires_at: f.spec.expires_at,
        };
        let refusal = match self
            .store
            .accept(&job_id, &record, &f.spec.submitter, &f.spec.nonce)
        {
            Ok(true) => None,
            Ok(false) => Some((
                RefuseReason::Replayed,
                "this job's nonce was already used".to_string(),
            )),
            Err(e) => {
                tracing::error!(error = %e, "cannot store job");
                Some((RefuseReason::Busy, "host cannot store jobs".to_string()))
            }
        };
        if let Some(r) = refusal {
            self.quotas.release_job(&f.peer, f.held);
            return self.refuse(swarm, f.channel, f.peer, Some(job_id), r);
        }
        self.inflight.insert(job_id, Some((f.peer, f.held)));
        self.emit(HostEvent::Accepted {
            job_id: proto::hex(&job_id),
            submitter: f.peer.to_string(),
            module_hash: proto::hex(&f.spec.module_hash),
            via_relay: f.relayed,
        });
        if f.wait {
            // The result is the acknowledgement: nothing is promised before
            // it, so no flush waits in the latency path (sled still flushes
            // on its own every 500 ms, and a crash before the answer shows
            // the submitter a failed request, never a false success).
            self.results.wait(job_id, f.channel);
        } else {
            let _ = self
                .flush_tx
                .send(Some((f.channel, JobResponse::Accepted { job_id })));
        }
        self.control.on_task_accepted(job_id, f.spec.memory_bytes);
        self.scheduler.dispatch(job_id, &f.spec, f.input);
    }

    fn on_done(&mut self, swarm: &mut Swarm<Behaviour>, d: Done) {
        let job_id = d.job_id;
        tracing::debug!(job = %proto::hex(&job_id), "done");
        if let Some(Some((peer, held))) = self.inflight.remove(&job_id) {
            self.quotas.release_job(&peer, held);
        }
        self.control.on_task_done(&job_id, d.fuel_used, d.wall_us);
        // The receipt is unaccepted work on the submitter's credit until it
        // is settled (the store wrote the claim with the result).
        if let Ok(Some((sub, price))) = self.store.claim(&job_id) {
            self.ledger.claim(job_id, Party(sub), price);
            self.ledger_changed = true;
        }
        // Only the host's own failures count against the swarm's health: a
        // guest that traps or runs out of fuel is the submitter's doing.
        let ok = d.status != "host_error";
        if let Some(sw) = self.advertiser.on_task_done(d.class, ok) {
            self.on_role_switch(sw);
        }
        let waiters = self.results.take(&job_id);
        if waiters.is_empty() {
            // Nobody is waiting: the result must survive until collected.
            let _ = self.flush_tx.send(None);
        }
        self.emit(HostEvent::Finished {
            job_id: proto::hex(&job_id),
            status: d.status,
            fuel_used: d.fuel_used,
            wall_ms: d.wall_us as f64 / 1000.0,
            price: d.price,
            peak_memory_bytes: d.peak_memory_bytes,
        });
        for ch in waiters {
            ch.send(swarm, d.response.clone());
        }
    }

    fn on_fetch(&mut self, swarm: &mut Swarm<Behaviour>, ch: Reply, job_id: JobId, wait: bool) {
        // A job paused at a debit note answers with the note: nothing else
        // moves it on. A waiting request that was handed the note already
        // waits for what comes next (the job's end or its next note).
        let notes = self.scheduler.notes();
        if !wait {
            if let Some((_, note)) = notes.pending(&job_id) {
                return ch.send(swarm, JobResponse::Note { job_id, note });
            }
        } else {
            match notes.deliver(&job_id) {
                Ok(Some(note)) => return ch.send(swarm, JobResponse::Note { job_id, note }),
                Err(()) => return self.results.wait(job_id, ch),
                Ok(None) => {}
            }
        }
        let stored = self.store.result(&job_id).ok().flatten();
        let state = self.inflight.contains_key(&job_id).then(|| {
            if self.scheduler.is_running(&job_id) {
                proto::JobState::Running
            } else {
                proto::JobState::Queued
            }
        });
        if let Some((ch, resp)) = self.results.on_fetch(job_id, wait, stored, state, ch) {
            ch.send(swarm, resp);
        }
    }
}

/// The refusal for a signed object that does not verify: a bad signature
/// or key is `bad_signature`, anything else `malformed`.
fn refusal_of(e: &proto::ProtoError) -> (RefuseReason, String) {
    let reason = match e {
        proto::ProtoError::BadSignature(_) | proto::ProtoError::BadKey(_) => {
            RefuseReason::BadSignature
        }
        _ => RefuseReason::Malformed,
    };
    (reason, e.to_string())
}

/// The host's ledger as stored: settled entries, then open claims.
fn load_ledger(store: &HostStore) -> Result<Ledger, crate::store::StoreError> {
    let mut l = Ledger::new(Side::Host);
    for r in store.ledger()? {
        l.apply(r.entry);
    }
    for (job, sub, price) in store.claims()? {
        l.claim(job, Party(sub), price);
    }
    Ok(l)
}

/// Milliseconds since the Unix epoch (the clock the edge passes to the
/// pure decision code).
pub fn unix_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
