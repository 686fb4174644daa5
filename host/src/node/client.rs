//! The submitter's side: a swarm that dials hosts, sends signed jobs, serves
//! the job's blobs to the host that fetches them, and collects responses.
//!
//! The client drives its own swarm inside its async methods (a CLI submits
//! one job, or a benchmark many in flight), so it needs no background task.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::multiaddr::Protocol;
use libp2p::request_response;
use libp2p::swarm::SwarmEvent;
use libp2p::swarm::dial_opts::DialOpts;
use libp2p::{Multiaddr, PeerId, Swarm};
use tokio::sync::mpsc;

use super::client_stream;
use super::discovery::{Discovery, Learned};
use crate::config::NetworkConfig;
use crate::identity::Identity;
use crate::net::{BLOB_CHUNK, Behaviour, BehaviourEvent, Inbound, NodeKind, build_swarm};
use crate::proto::{
    self, Advert, BlobRequest, BlobResponse, Hash, JobRequest, JobResponse, JobSpec, RoleRequest,
    RoleResponse, SignedJob,
};

pub use super::receipts::Verified;

/// Errors of the client.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Network set-up.
    #[error(transparent)]
    Net(#[from] crate::net::NetError),
    /// The host could not be reached.
    #[error("cannot connect to {addr}: {reason}")]
    Connect {
        /// Where.
        addr: String,
        /// Why.
        reason: String,
    },
    /// No placement was possible (too few hosts, none fitting).
    #[error("{0}")]
    Placement(String),
    /// A request failed in transport (timeout, connection closed, garbled).
    /// After a timeout nobody knows whether the job ran: ask with `Fetch`.
    #[error("request to {peer} failed: {reason}")]
    Request {
        /// The host.
        peer: PeerId,
        /// Why.
        reason: String,
    },
    /// A host was neither at its last known address nor found through the
    /// swarm (adverts, Kademlia) in time.
    #[error(
        "host {peer} not found: its last address ({last}) does not answer and the swarm did not find it in {secs} s"
    )]
    NotFound {
        /// The host sought.
        peer: PeerId,
        /// The address tried first and why it failed.
        last: String,
        /// How long the swarm was searched.
        secs: u64,
    },
}

/// How long a dial may take.
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);

/// What a job asks for, besides its module and input.
#[derive(Debug, Clone)]
pub struct JobParams {
    /// Guest argv after the program name.
    pub args: Vec<String>,
    /// Fuel budget.
    pub fuel: u64,
    /// Memory limit.
    pub memory_bytes: u64,
    /// Time limit.
    pub timeout_ms: Option<u64>,
    /// Scratch directory.
    pub scratch: bool,
    /// NaN canonicalization.
    pub portable: bool,
    /// Price ceiling per million fuel.
    pub max_price_per_mfuel: u64,
    /// Seconds until the job expires.
    pub lifetime_secs: u64,
    /// Read-only data blobs, mounted at `/data/NAME` (offer their bytes
    /// with [`Client::offer_data`]).
    pub data: Vec<proto::DataRef>,
}

impl Default for JobParams {
    fn default() -> Self {
        JobParams {
            args: Vec::new(),
            fuel: crate::sandbox::TaskLimits::DEFAULT.fuel,
            memory_bytes: crate::sandbox::TaskLimits::DEFAULT.memory_bytes,
            timeout_ms: None,
            scratch: false,
            portable: false,
            max_price_per_mfuel: 1_000,
            lifetime_secs: 3600,
            data: Vec::new(),
        }
    }
}

/// Names one request of this client; its answer carries the same id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub(super) u64);

/// A submitter's connection to the swarm.
///
/// Job requests travel on one long-lived stream per host
/// (`/biop2p/jobs/1.0.0`), opened at the first request and reopened after
/// it breaks; answers come back in any order and [`Client::next_response`]
/// hands them out by [`RequestId`].
pub struct Client {
    swarm: Swarm<Behaviour>,
    id: Identity,
    blobs: HashMap<Hash, Arc<Vec<u8>>>,
    /// Answers taken while waiting for another request's (`request`).
    ready: VecDeque<(RequestId, Result<JobResponse, ClientError>)>,
    /// Opens job streams.
    control: libp2p_stream::Control,
    /// Each host's stream task, fed requests.
    streams: HashMap<PeerId, mpsc::Sender<(RequestId, JobRequest)>>,
    /// Every stream task's answers. Unbounded, yet bounded by this client's
    /// own requests: each request gets exactly one answer.
    answers_tx: mpsc::UnboundedSender<client_stream::Answer>,
    answers: mpsc::UnboundedReceiver<client_stream::Answer>,
    /// Unanswered requests: their host and when the client gives up.
    pending: HashMap<RequestId, (PeerId, tokio::time::Instant)>,
    next_id: u64,
    request_timeout: Duration,
    limits: crate::net::codec::Limits,
    discovery: Discovery,
    /// When the last host became known or asked to be heard (discovery
    /// waits for a quiet spell).
    last_new_host: Option<Instant>,
    /// Connected peers that take part in the adverts topic but whose advert
    /// has not arrived yet (a host answers a new subscriber within ~¼ s).
    awaiting: HashSet<PeerId>,
    /// When set, blob requests are held unanswered (a stalling submitter,
    /// for tests of a host's fetch deadlines); at most this many are kept.
    withheld: Option<Vec<request_response::ResponseChannel<BlobResponse>>>,
    /// The remote address of each connected peer as the connection saw it
    /// (not what the peer claims): verification diversity is judged on it.
    /// Bounded by the open connections (entries go when the last closes).
    remotes: HashMap<PeerId, Multiaddr>,
    /// Debit notes: checked and signed here, as they arrive, so that every
    /// flow that waits for a result gets long jobs paid as they run.
    notes: super::notebook::NoteBook,
    /// The job each result request is about, and whether it waits (to
    /// wait again after a debit note).
    waits: HashMap<RequestId, (proto::JobId, bool)>,
    /// Our own `AcceptNote` requests: their answers go nowhere else.
    note_requests: HashSet<RequestId>,
    /// Live connections per peer, and whether each goes through a relay
    /// (jobs and blobs never do when a direct one exists).
    conns: HashMap<PeerId, Vec<(libp2p::swarm::ConnectionId, bool)>>,
    /// Hole punching's last outcome per peer (`Err` says why it failed).
    punched: HashMap<PeerId, Result<(), String>>,
    /// How long to wait for hole punching after reaching a host through a
    /// relay.
    hole_punch_wait: Duration,
    /// What the user should know, taken by [`Client::take_notes`].
    user_notes: Vec<String>,
    /// Answers to role requests (`/biop2p/role/1.0.0`), by request, until
    /// [`Client::ask_roles`] takes them. Bounded by this client's own
    /// requests in flight.
    role_answers: HashMap<request_response::OutboundRequestId, Result<RoleResponse, String>>,
    /// Role requests still awaited: an answer to any other (one whose
    /// wait ended) is dropped.
    role_pending: HashSet<request_response::OutboundRequestId>,
}

/// Blob requests a withholding client keeps unanswered at most.
const MAX_WITHHELD: usize = 1024;

impl Client {
    /// A client with the given identity. With `net.mdns` or bootstrap peers
    /// it also discovers hosts (see [`Client::discover`]).
    pub async fn new(
        id: Identity,
        net: &NetworkConfig,
        max_output: u64,
    ) -> Result<Self, ClientError> {
        Self::with_limits(id, net, 1 << 20, max_output).await
    }

    /// A client whose requests may carry up to `max_inline` blob bytes (a
    /// host still applies its own, usually smaller, limit).
    pub async fn with_limits(
        id: Identity,
        net: &NetworkConfig,
        max_inline: usize,
        max_output: u64,
    ) -> Result<Self, ClientError> {
        let limits = crate::net::behaviour::job_limits(max_inline, max_output);
        // A client does not expose its byte counts (one swarm recipe for all).
        let mut swarm = build_swarm(
            &id,
            net,
            limits,
            NodeKind::Submitter,
            &mut prometheus_client::registry::Registry::default(),
        )
        .await?;
        // Hole punching needs a socket that both dials and listens: the
        // relay sees the port a NAT gave it, and the host dials that port.
        let quic: Multiaddr = "/ip4/0.0.0.0/udp/0/quic-v1".parse().expect("quic addr");
        swarm
            .listen_on(quic.clone())
            .map_err(|e| crate::net::NetError::Listen {
                addr: quic.to_string(),
                reason: e.to_string(),
            })?;
        let mut discovery = Discovery::new(id.peer_id, net);
        discovery.start(&mut swarm, net)?;
        let control = swarm.behaviour().stream.new_control();
        let (answers_tx, answers) = mpsc::unbounded_channel();
        Ok(Client {
            swarm,
            id,
            blobs: HashMap::new(),
            ready: VecDeque::new(),
            control,
            streams: HashMap::new(),
            answers_tx,
            answers,
            pending: HashMap::new(),
            next_id: 0,
            request_timeout: Duration::from_secs(net.request_timeout_secs),
            limits,
            discovery,
            last_new_host: None,
            awaiting: HashSet::new(),
            withheld: None,
            remotes: HashMap::new(),
            notes: Default::default(),
            waits: HashMap::new(),
            note_requests: HashSet::new(),
            conns: HashMap::new(),
            punched: HashMap::new(),
            hole_punch_wait: Duration::from_secs(net.nat.hole_punch_secs),
            user_notes: Vec::new(),
            role_answers: HashMap::new(),
            role_pending: HashSet::new(),
        })
    }

    /// This client's identity.
    pub fn identity(&self) -> &Identity {
        &self.id
    }

    /// Dials `addr` and waits for the connection. The peer id comes from the
    /// address's `/p2p/` part, or from the handshake when it has none.
    pub async fn connect(&mut self, addr: &Multiaddr) -> Result<PeerId, ClientError> {
        // The last `/p2p/`: a relayed address names the relay first.
        let expected = addr
            .iter()
            .filter_map(|p| match p {
                Protocol::P2p(id) => Some(id),
                _ => None,
            })
            .last();
        if let Some(p) = expected
            && self.connected(&p)
        {
            // Discovery may have reached it already, through a relay.
            self.prefer_direct(p).await;
            return Ok(p);
        }
        let err = |reason: String| ClientError::Connect {
            addr: addr.to_string(),
            reason,
        };
        // Only this dial's own failure ends the wait: the swarm may be
        // dialing the same peer at other addresses meanwhile (Kademlia's
        // queries, hole punching, a dial by peer id), and one of those
        // failing (a private address learned through the relay, say) says
        // nothing of this one.
        let opts = DialOpts::from(addr.clone());
        let ours = opts.connection_id();
        self.swarm.dial(opts).map_err(|e| err(e.to_string()))?;
        let deadline = tokio::time::Instant::now() + DIAL_TIMEOUT;
        loop {
            let ev = tokio::time::timeout_at(deadline, self.swarm.select_next_some())
                .await
                .map_err(|_| err("timed out".into()))?;
            match ev {
                SwarmEvent::ConnectionEstablished {
                    peer_id,
                    endpoint,
                    connection_id,
                    ..
                } if connection_id == ours || expected == Some(peer_id) => {
                    self.track(peer_id, connection_id, &endpoint);
                    self.remotes
                        .insert(peer_id, endpoint.get_remote_address().clone());
                    self.prefer_direct(peer_id).await;
                    return Ok(peer_id);
                }
                SwarmEvent::OutgoingConnectionError {
                    connection_id,
                    error,
                    ..
                } if connection_id == ours => {
                    return Err(err(error.to_string()));
                }
                other => self.on_event(other),
            }
        }
    }

    /// Connects to a host known from its advert, trying its addresses in
    /// turn.
    pub async fn connect_host(&mut self, peer: PeerId, advert: &Advert) -> Result<(), ClientError> {
        if self.connected(&peer) {
            self.prefer_direct(peer).await;
            return Ok(());
        }
        let mut last = ClientError::Connect {
            addr: peer.to_string(),
            reason: "its advert lists no address".into(),
        };
        for a in &advert.addrs {
            let Ok(addr) = a.parse::<Multiaddr>() else {
                continue;
            };
            match self.connect(&crate::net::with_peer_id(&addr, peer)).await {
                Ok(p) if p == peer => return Ok(()),
                Ok(p) => {
                    last = ClientError::Connect {
                        addr: a.clone(),
                        reason: format!("reached {p}, not {peer}"),
                    }
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Connects to the host `peer`: at `last` if it still answers there,
    /// otherwise wherever the swarm says it is now (a host restarted on
    /// another port or address). The search asks Kademlia for the peer and
    /// listens for its advert, through the client's bootstrap peers and
    /// mDNS and any hosts in `seeds` (say, other hosts this submitter has
    /// used), until `timeout`.
    pub async fn reach(
        &mut self,
        peer: PeerId,
        last: Option<&Multiaddr>,
        seeds: &[Multiaddr],
        timeout: Duration,
    ) -> Result<(), ClientError> {
        if self.connected(&peer) {
            self.prefer_direct(peer).await;
            return Ok(());
        }
        let mut why = "none recorded".to_string();
        if let Some(addr) = last {
            match self.connect(&crate::net::with_peer_id(addr, peer)).await {
                Ok(_) => return Ok(()),
                Err(e) => why = format!("{addr}: {e}"),
            }
        }
        tracing::info!(%peer, "looking for the host through the swarm");
        let deadline = tokio::time::Instant::now() + timeout;
        for s in seeds {
            // A seed that does not answer is only one way in of several.
            let _ = self.swarm.dial(s.clone());
        }
        self.swarm.behaviour_mut().kad.get_closest_peers(peer);
        let mut next_try = tokio::time::Instant::now();
        while tokio::time::Instant::now() < deadline {
            if self.swarm.is_connected(&peer) {
                self.prefer_direct(peer).await;
                return Ok(());
            }
            if let Some(a) = self.discovery.table.get(&peer, Instant::now()).cloned()
                && self.connect_host(peer, &a).await.is_ok()
            {
                return Ok(());
            }
            if tokio::time::Instant::now() >= next_try {
                // Addresses Kademlia learned for the peer are used by a dial
                // by peer id.
                let _ = self.swarm.dial(peer);
                self.discovery.redial(&mut self.swarm);
                next_try = tokio::time::Instant::now() + Duration::from_millis(500);
            }
            let wake = (tokio::time::Instant::now() + Duration::from_millis(100)).min(deadline);
            if let Ok(ev) = tokio::time::timeout_at(wake, self.swarm.select_next_some()).await {
                self.on_event(ev);
            }
        }
        Err(ClientError::NotFound {
            peer,
            last: why,
            secs: timeout.as_secs(),
        })
    }

    /// Whether a connection to `peer` is up, once the swarm events already
    /// waiting are handled: a client that has not polled its swarm for a
    /// while (between two submits, say) would otherwise still count a
    /// connection to a host that has since restarted, and fail its next
    /// request on the dead connection.
    fn connected(&mut self, peer: &PeerId) -> bool {
        self.pump();
        self.swarm.is_connected(peer)
    }

    /// Handles the swarm events already waiting, without waiting for more;
    /// bounded, so a flood of events cannot hold the caller.
    fn pump(&mut self) {
        use futures::FutureExt as _;
        for _ in 0..1024 {
            match self.swarm.select_next_some().now_or_never() {
                Some(ev) => self.on_event(ev),
                None => break,
            }
        }
    }

    /// Takes the notes gathered so far (the CLI prints each after
    /// `note: `), e.g. that a host was reached only through a relay.
    pub fn take_notes(&mut self) -> Vec<String> {
        std::mem::take(&mut self.user_notes)
    }

    /// Whether every connection to `peer` goes through a relay.
    pub fn is_relayed(&self, peer: &PeerId) -> bool {
        self.conns
            .get(peer)
            .is_some_and(|c| !c.is_empty() && c.iter().all(|(_, r)| *r))
    }

    fn track(
        &mut self,
        peer: PeerId,
        id: libp2p::swarm::ConnectionId,
        endpoint: &libp2p::core::ConnectedPoint,
    ) {
        let relayed = endpoint.is_relayed();
        let c = self.conns.entry(peer).or_default();
        if !c.iter().any(|(i, _)| *i == id) {
            c.push((id, relayed));
        }
        if !relayed {
            // Verification diversity is judged on the direct path.
            self.remotes
                .insert(peer, endpoint.get_remote_address().clone());
            self.close_relayed(peer);
        }
    }

    /// Closes the relayed connections to `peer` once a direct one exists,
    /// so that no job or blob goes through a relay then.
    fn close_relayed(&mut self, peer: PeerId) {
        let Some(c) = self.conns.get(&peer) else {
            return;
        };
        if !c.iter().any(|(_, r)| !*r) {
            return;
        }
        for (id, _) in c.iter().filter(|(_, r)| *r) {
            self.swarm.close_connection(*id);
        }
    }

    /// After reaching `peer` through a relay: waits (at most
    /// `[network.nat] hole_punch_secs`) for hole punching to give a direct
    /// connection. Without one the host is used through the relay, within
    /// the relay's limits, and a note says so.
    async fn prefer_direct(&mut self, peer: PeerId) {
        if !self.is_relayed(&peer) {
            return;
        }
        // Hole punching runs once per relayed connection, when it opens:
        // a failure already recorded for this peer's connections stands (it
        // is forgotten when the last of them closes).
        let deadline = tokio::time::Instant::now() + self.hole_punch_wait;
        while self.is_relayed(&peer) && !self.punched.get(&peer).is_some_and(|r| r.is_err()) {
            match tokio::time::timeout_at(deadline, self.swarm.select_next_some()).await {
                Ok(ev) => self.on_event(ev),
                Err(_) => break,
            }
        }
        // Direct now: wait (briefly) for the relayed connections to be
        // gone, so that no stream is opened on one of them.
        let closing = tokio::time::Instant::now() + Duration::from_secs(2);
        while !self.is_relayed(&peer)
            && self
                .conns
                .get(&peer)
                .is_some_and(|c| c.iter().any(|(_, r)| *r))
        {
            match tokio::time::timeout_at(closing, self.swarm.select_next_some()).await {
                Ok(ev) => self.on_event(ev),
                Err(_) => break,
            }
        }
        if self.is_relayed(&peer) {
            let why = match self.punched.get(&peer) {
                Some(Err(e)) => e.clone(),
                _ => format!(
                    "no direct connection within {} s",
                    self.hole_punch_wait.as_secs()
                ),
            };
            tracing::info!(%peer, %why, "host reachable only through a relay");
            self.user_notes.push(format!(
                "host {peer} runs the job via relay (hole punching failed: {why}); relays carry small jobs only"
            ));
        }
    }

    /// The address `peer`'s connection came from, as observed here.
    pub fn remote_addr(&self, peer: &PeerId) -> Option<&Multiaddr> {
        self.remotes.get(peer)
    }

    /// Whether `peer` is connected now.
    pub fn is_connected(&self, peer: &PeerId) -> bool {
        self.swarm.is_connected(peer)
    }

    /// Hosts known from live adverts.
    pub fn known_hosts(&self) -> Vec<(PeerId, Advert)> {
        self.discovery.live()
    }

    /// Forgets a host (it refused or could not be reached) until it
    /// advertises again.
    pub fn forget_host(&mut self, peer: &PeerId) {
        self.discovery.table.remove(peer);
    }

    /// Listens to the swarm until at least `want` known hosts satisfy `fits`
    /// and no new host appeared for `quiet`, or until `timeout`; returns
    /// the fitting hosts known by then.
    pub async fn discover(
        &mut self,
        want: usize,
        fits: impl Fn(&Advert) -> bool,
        quiet: Duration,
        timeout: Duration,
    ) -> Vec<(PeerId, Advert)> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let fitting: Vec<_> = self
                .known_hosts()
                .into_iter()
                .filter(|(_, a)| fits(a))
                .collect();
            let settled = self.awaiting.is_empty()
                && self.last_new_host.is_some_and(|t| t.elapsed() >= quiet);
            if fitting.len() >= want && settled {
                return fitting;
            }
            self.discovery.redial(&mut self.swarm);
            let wake = (tokio::time::Instant::now() + quiet / 4).min(deadline);
            match tokio::time::timeout_at(wake, self.swarm.select_next_some()).await {
                Ok(ev) => self.on_event(ev),
                Err(_) if tokio::time::Instant::now() >= deadline => return fitting,
                Err(_) => {}
            }
        }
    }

    /// Drives the swarm for `d` (to collect adverts).
    pub async fn listen_for(&mut self, d: Duration) {
        let deadline = tokio::time::Instant::now() + d;
        while let Ok(ev) = tokio::time::timeout_at(deadline, self.swarm.select_next_some()).await {
            self.on_event(ev);
        }
    }

    /// Makes `data` available to hosts that fetch it by hash; returns the hash.
    pub fn offer_blob(&mut self, data: Arc<Vec<u8>>) -> Hash {
        let h = *blake3::hash(&data).as_bytes();
        self.blobs.insert(h, data);
        h
    }

    /// Makes `bytes` available as the read-only data blob `name` of jobs;
    /// returns the reference to put in [`JobParams::data`].
    pub fn offer_data(&mut self, name: &str, bytes: Arc<Vec<u8>>) -> proto::DataRef {
        let size = bytes.len() as u64;
        let hash = self.offer_blob(bytes);
        proto::DataRef {
            name: name.to_string(),
            hash,
            size,
        }
    }

    /// Serves `data` under a claimed hash without checking it. Only a test
    /// of a host's verification has a use for this.
    pub fn offer_blob_as(&mut self, hash: Hash, data: Arc<Vec<u8>>) {
        self.blobs.insert(hash, data);
    }

    /// Stops answering blob requests (or starts again): the client then
    /// behaves like a submitter that stalls a host's fetch. Only a test of
    /// a host's fetch deadlines has a use for this.
    #[doc(hidden)]
    pub fn withhold_blobs(&mut self, on: bool) {
        self.withheld = on.then(Vec::new);
    }

    /// Builds and signs a job for a module and input already offered.
    pub fn make_job(&self, module: &[u8], input: &[u8], p: &JobParams) -> SignedJob {
        let mut nonce = [0u8; 16];
        rand::fill(&mut nonce);
        let spec = JobSpec {
            version: proto::VERSION,
            submitter: self.id.public_key(),
            module_hash: *blake3::hash(module).as_bytes(),
            module_size: module.len() as u64,
            input_hash: *blake3::hash(input).as_bytes(),
            input_size: input.len() as u64,
            args: p.args.clone(),
            fuel: p.fuel,
            memory_bytes: p.memory_bytes,
            timeout_ms: p.timeout_ms,
            scratch: p.scratch,
            portable: p.portable,
            max_price_per_mfuel: p.max_price_per_mfuel,
            nonce,
            expires_at: crate::store::unix_now() + p.lifetime_secs,
            data: p.data.clone(),
        };
        SignedJob::sign(&spec, &self.id.signing)
    }

    /// Sends each `(peer, request)` on `/biop2p/role/1.0.0` at once and
    /// waits up to `wait` for all of them; each gets its answer or why it
    /// has none. The peers must be connected (or reachable by a known
    /// address).
    pub async fn ask_roles(
        &mut self,
        requests: Vec<(PeerId, RoleRequest)>,
        wait: Duration,
    ) -> Vec<(PeerId, Result<RoleResponse, String>)> {
        let sent: Vec<(PeerId, request_response::OutboundRequestId)> = requests
            .into_iter()
            .map(|(p, r)| {
                let id = self
                    .swarm
                    .behaviour_mut()
                    .role
                    .send_request(&p, Inbound::Ok(r));
                self.role_pending.insert(id);
                (p, id)
            })
            .collect();
        let deadline = tokio::time::Instant::now() + wait;
        while sent
            .iter()
            .any(|(_, id)| !self.role_answers.contains_key(id))
        {
            tokio::select! {
                ev = self.swarm.select_next_some() => self.on_event(ev),
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        sent.into_iter()
            .map(|(p, id)| {
                self.role_pending.remove(&id);
                let r = self
                    .role_answers
                    .remove(&id)
                    .unwrap_or_else(|| Err(format!("no answer within {} ms", wait.as_millis())));
                (p, r)
            })
            .collect()
    }

    /// Sends a request on the host's job stream (opening it if needed); its
    /// response comes from [`Client::next_response`]. Never waits: when the
    /// stream's queue is full the failure is the response.
    pub fn send(&mut self, peer: &PeerId, req: JobRequest) -> RequestId {
        let id = RequestId(self.next_id);
        self.next_id += 1;
        match &req {
            JobRequest::Submit { job, wait, .. } => {
                self.notes.sent(*peer, job);
                if *wait {
                    self.waits.insert(id, (job.id(), true));
                }
            }
            JobRequest::Fetch { job_id, wait } => {
                self.waits.insert(id, (*job_id, *wait));
            }
            _ => {}
        }
        self.send_as(id, peer, req);
        id
    }

    /// Sends `req` under request id `id` (a new one, or a wait renewed
    /// after a debit note).
    fn send_as(&mut self, id: RequestId, peer: &PeerId, req: JobRequest) {
        self.pending.insert(
            id,
            (*peer, tokio::time::Instant::now() + self.request_timeout),
        );
        let mut item = (id, req);
        // A stream that ended (the host went away) is opened again; at most
        // once per request, so a host that refuses streams fails fast.
        for _ in 0..2 {
            let tx = self.streams.entry(*peer).or_insert_with(|| {
                let (tx, rx) = mpsc::channel(client_stream::QUEUE);
                tokio::spawn(client_stream::run(
                    self.control.clone(),
                    *peer,
                    rx,
                    self.answers_tx.clone(),
                    self.limits.request,
                    self.limits.response,
                ));
                tx
            });
            match tx.try_send(item) {
                Ok(()) => return,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    self.fail(id, *peer, "too many requests queued for this host");
                    return;
                }
                Err(mpsc::error::TrySendError::Closed(back)) => {
                    self.streams.remove(peer);
                    item = back;
                }
            }
        }
        self.fail(id, *peer, "the job stream closed at once");
    }

    fn fail(&mut self, id: RequestId, peer: PeerId, reason: &str) {
        let _ = self.answers_tx.send((
            id,
            Err(ClientError::Request {
                peer,
                reason: reason.to_string(),
            }),
        ));
    }

    /// Drives the swarm until some response (or failure) arrives. Cancel
    /// safe: dropping the future loses no answer.
    pub async fn next_response(&mut self) -> (RequestId, Result<JobResponse, ClientError>) {
        if let Some(r) = self.ready.pop_front() {
            return r;
        }
        self.next_answer().await
    }

    /// The next answer off the streams (not from `ready`), driving the
    /// swarm meanwhile; a request past its timeout fails.
    async fn next_answer(&mut self) -> (RequestId, Result<JobResponse, ClientError>) {
        loop {
            let next_timeout = self
                .pending
                .iter()
                .min_by_key(|(_, (_, t))| *t)
                .map(|(id, (p, t))| (*id, *p, *t));
            let sleep = async {
                match next_timeout {
                    Some((_, _, t)) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                Some((id, r)) = self.answers.recv() => {
                    // An answer to a request that already timed out is dropped.
                    let Some((peer, _)) = self.pending.remove(&id) else {
                        continue;
                    };
                    if self.note_requests.remove(&id) {
                        match r {
                            Ok(JobResponse::NoteAccepted { .. }) => {}
                            other => tracing::warn!(%peer, answer = ?other.map(|_| ()), "a debit note's acceptance was not confirmed"),
                        }
                        continue;
                    }
                    let job = self.waits.remove(&id);
                    if let (Ok(JobResponse::Note { job_id, note }), Some((job, wait))) = (&r, job)
                        && *job_id == job
                    {
                        self.on_note(peer, job, note.clone());
                        if !wait {
                            // A status request: the job is running, paused
                            // at the note just signed.
                            return (id, Ok(JobResponse::Pending {
                                job_id: job,
                                state: proto::JobState::Running,
                            }));
                        }
                        self.waits.insert(id, (job, true));
                        self.send_as(id, &peer, JobRequest::Fetch { job_id: job, wait: true });
                        continue;
                    }
                    return (id, r);
                }
                ev = self.swarm.select_next_some() => self.on_event(ev),
                _ = sleep => {
                    let (id, peer, _) = next_timeout.expect("a deadline");
                    self.pending.remove(&id);
                    self.waits.remove(&id);
                    if self.note_requests.remove(&id) {
                        tracing::warn!(%peer, "a debit note's acceptance was not confirmed in time");
                        continue;
                    }
                    return (id, Err(ClientError::Request {
                        peer,
                        reason: format!("no answer within {} s", self.request_timeout.as_secs()),
                    }));
                }
            }
        }
    }

    /// Sends a request and waits for its response; other requests' answers
    /// that arrive meanwhile are kept for [`Client::next_response`].
    pub async fn request(
        &mut self,
        peer: &PeerId,
        req: JobRequest,
    ) -> Result<JobResponse, ClientError> {
        let id = self.send(peer, req);
        loop {
            let (rid, r) = self.next_answer().await;
            if rid == id {
                return r;
            }
            self.ready.push_back((rid, r));
        }
    }

    /// A long job paused at a debit note: sign it if it is fair (see
    /// [`NoteBook::check`](super::notebook::NoteBook::check)). The caller
    /// then waits for the job again under the same request id, so it only
    /// ever sees the result. A note not signed leaves the host to stop the
    /// job `unpaid` at its timeout, which is the answer the caller gets.
    fn on_note(&mut self, peer: PeerId, job_id: proto::JobId, note: proto::SignedNote) {
        match self.notes.check(&peer, &self.id.public_key(), &note) {
            Ok(body) => {
                let acceptance = note.accept(&body, &self.id.signing, super::host::unix_now_ms());
                let entry = proto::NotedEntry { note, acceptance };
                self.notes.accepted(entry.clone());
                tracing::debug!(%peer, seq = body.seq, fuel = body.fuel, price = body.price, "debit note accepted");
                let aid = RequestId(self.next_id);
                self.next_id += 1;
                self.note_requests.insert(aid);
                self.send_as(aid, &peer, JobRequest::AcceptNote { entry });
            }
            Err(why) => {
                tracing::warn!(%peer, job = %proto::hex(&job_id), %why, "debit note not accepted")
            }
        }
    }

    /// The latest debit note this client accepted for a job, if any.
    pub fn accepted_note(&self, job_id: &proto::JobId) -> Option<&proto::NotedEntry> {
        self.notes.latest(job_id)
    }

    /// Test-only: accept no debit note (a submitter that stopped paying).
    #[doc(hidden)]
    pub fn withhold_notes(&mut self, on: bool) {
        self.notes.withhold = on;
    }

    fn on_event(&mut self, ev: SwarmEvent<BehaviourEvent>) {
        match ev {
            SwarmEvent::Behaviour(BehaviourEvent::Mdns(e)) => {
                self.discovery.on_mdns(&mut self.swarm, e)
            }
            SwarmEvent::Behaviour(BehaviourEvent::Kad(e)) => {
                self.discovery.on_kad(&mut self.swarm, e)
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(e)) => {
                self.discovery.on_identify(&mut self.swarm, e)
            }
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(e)) => {
                match self.discovery.on_gossip(&mut self.swarm, e) {
                    Some(Learned::New(peer)) => {
                        tracing::debug!(%peer, "host known from its advert");
                        self.awaiting.remove(&peer);
                        self.last_new_host = Some(Instant::now());
                    }
                    Some(Learned::Refreshed(peer)) => {
                        self.awaiting.remove(&peer);
                    }
                    Some(Learned::Subscriber(peer))
                        if self.discovery.table.get(&peer, Instant::now()).is_none() =>
                    {
                        self.awaiting.insert(peer);
                        self.last_new_host = Some(Instant::now());
                    }
                    _ => {}
                }
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                endpoint,
                connection_id,
                ..
            } => {
                self.remotes
                    .entry(peer_id)
                    .or_insert_with(|| endpoint.get_remote_address().clone());
                self.track(peer_id, connection_id, &endpoint);
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                num_established,
                ..
            } => {
                if let Some(c) = self.conns.get_mut(&peer_id) {
                    c.retain(|(i, _)| *i != connection_id);
                }
                if num_established == 0 {
                    self.awaiting.remove(&peer_id);
                    self.remotes.remove(&peer_id);
                    self.conns.remove(&peer_id);
                    self.punched.remove(&peer_id);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Dcutr(e)) => {
                let r = e.result.map(|_| ()).map_err(|e| e.to_string());
                match &r {
                    Ok(()) => {
                        tracing::info!(peer = %e.remote_peer_id, "hole punched: direct connection")
                    }
                    Err(why) => {
                        tracing::info!(peer = %e.remote_peer_id, %why, "hole punching failed")
                    }
                }
                self.punched.insert(e.remote_peer_id, r);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Job(request_response::Event::Message {
                message: request_response::Message::Request { channel, .. },
                ..
            })) => {
                // Submitters do not run jobs (and send theirs on the job
                // stream, so no request-response answers come back).
                let _ = self.swarm.behaviour_mut().job.send_response(
                    channel,
                    JobResponse::Refused {
                        reason: proto::RefuseReason::Busy,
                        message: "this peer is a submitter, not a host".into(),
                    },
                );
            }
            SwarmEvent::Behaviour(BehaviourEvent::Role(e)) => match e {
                request_response::Event::Message {
                    message:
                        request_response::Message::Response {
                            request_id,
                            response,
                        },
                    ..
                } if self.role_pending.contains(&request_id) => {
                    self.role_answers.insert(request_id, Ok(response));
                }
                request_response::Event::OutboundFailure {
                    request_id, error, ..
                } if self.role_pending.contains(&request_id) => {
                    self.role_answers.insert(request_id, Err(error.to_string()));
                }
                _ => {}
            },
            SwarmEvent::Behaviour(BehaviourEvent::Blob(request_response::Event::Message {
                message:
                    request_response::Message::Request {
                        request, channel, ..
                    },
                ..
            })) => {
                if let Some(held) = &mut self.withheld {
                    if held.len() < MAX_WITHHELD {
                        held.push(channel);
                    }
                    return;
                }
                let resp = match request {
                    Inbound::Ok(req) => match self.blobs.get(&req.hash) {
                        Some(data) => BlobResponse::Chunk {
                            total: data.len() as u64,
                            data: data[chunk_range(&req, data.len())].to_vec(),
                        },
                        None => BlobResponse::NotFound,
                    },
                    _ => BlobResponse::NotFound,
                };
                let _ = self.swarm.behaviour_mut().blob.send_response(channel, resp);
            }
            _ => {}
        }
    }
}

/// The bytes of a blob of `len` bytes that a peer's request asks for:
/// clamped into the blob (the offset and length are the peer's) and to
/// [`BLOB_CHUNK`].
pub fn chunk_range(req: &BlobRequest, len: usize) -> std::ops::Range<usize> {
    let start = usize::try_from(req.offset).unwrap_or(usize::MAX).min(len);
    let end = start + (req.len.min(BLOB_CHUNK) as usize).min(len - start);
    start..end
}

#[cfg(test)]
mod tests {
    use libp2p::swarm::dial_opts::PeerCondition;

    use super::*;
    use crate::node::{HostOptions, spawn_host};

    /// The submitter behind NAT B once gave up on a host it was reaching
    /// through a relay because another dial of the same host (Kademlia's,
    /// at a private address the relay had learned) failed meanwhile: a
    /// connect ends on its own dial's failure only.
    #[tokio::test]
    async fn another_dial_of_the_same_peer_failing_does_not_fail_a_connect() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = crate::config::NodeConfig::default();
        config.network.mdns = false;
        let host = spawn_host(HostOptions {
            config,
            data_dir: dir.path().to_path_buf(),
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
            faulty: Default::default(),
        })
        .await
        .unwrap();
        let good = host.addr("tcp").unwrap();
        // A port nobody listens on: a dial there is refused at once, well
        // before the good dial's handshakes are over.
        let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = dead.local_addr().unwrap().port();
        drop(dead);
        let bad: Multiaddr = format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap();

        let mut c = Client::new(
            Identity::from_seed(rand::random()),
            &NetworkConfig::direct(),
            16 << 20,
        )
        .await
        .unwrap();
        c.swarm
            .dial(
                DialOpts::peer_id(host.peer_id)
                    .addresses(vec![bad])
                    .condition(PeerCondition::Always)
                    .build(),
            )
            .unwrap();
        let reached = c
            .connect(&crate::net::with_peer_id(&good, host.peer_id))
            .await
            .expect("the connect's own dial succeeds");
        assert_eq!(reached, host.peer_id);
        assert!(c.is_connected(&host.peer_id));
        host.shutdown().await;
    }
}
