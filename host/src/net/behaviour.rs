//! The composed libp2p behaviour of every biop2p node.

// The derive generates `BehaviourEvent`, whose variants mirror the fields
// documented below.
#![allow(missing_docs)]

use std::time::Duration;

use libp2p::swarm::NetworkBehaviour;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::{
    StreamProtocol, autonat, connection_limits, dcutr, gossipsub, identify, kad, mdns, ping, relay,
    request_response,
};

use super::codec::{Codec, Limits};
use crate::config::NetworkConfig;
use crate::proto::{BlobRequest, BlobResponse, JobRequest, JobResponse, RoleRequest, RoleResponse};

/// The job protocol: submit a job, get its result and receipt.
pub const JOB_PROTOCOL: StreamProtocol = StreamProtocol::new("/biop2p/job/1.0.0");
/// The blob protocol: content by blake3 hash, in bounded chunks.
pub const BLOB_PROTOCOL: StreamProtocol = StreamProtocol::new("/biop2p/blob/1.0.0");

/// Young's protocol: Thermal tables carried by hosts for fresh submitters.
pub const ROLE_PROTOCOL: StreamProtocol = StreamProtocol::new("/biop2p/role/1.0.0");

/// The Kademlia protocol of biop2p's DHT (kept apart from IPFS's).
pub const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/biop2p/kad/1.0.0");

/// Largest gossip message: one signed advert, with room to spare.
pub const GOSSIP_MAX_BYTES: usize = 8 << 10;

/// The gossip topic of a swarm's adverts.
pub fn advert_topic(swarm: &str) -> gossipsub::IdentTopic {
    gossipsub::IdentTopic::new(format!("/biop2p/{swarm}/adverts/1"))
}

/// Which side of the market a swarm serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    /// Runs jobs: answers Kademlia queries, publishes adverts.
    Host,
    /// Submits jobs: a Kademlia client that listens to adverts.
    Submitter,
}

/// Bytes per blob chunk. 1 MiB keeps a chunk's response well under the
/// codec limit while amortising a stream's set-up over many bytes.
pub const BLOB_CHUNK: u32 = 1 << 20;

/// Where a chunk answered for `offset` of a blob of `total` bytes goes in
/// the blob, or why it cannot: the answer must name the same total and
/// carry exactly the bytes the request asked (a whole chunk, or the rest of
/// the blob). A peer's answer is checked here before any byte is copied,
/// so the fetcher and its fuzz target run the very same check.
pub fn chunk_place(
    total: u64,
    offset: u64,
    answered_total: u64,
    answered_len: usize,
) -> Result<std::ops::Range<usize>, String> {
    let Some(rest) = total.checked_sub(offset) else {
        return Err(format!("offset {offset} is past the blob's {total} bytes"));
    };
    let want = rest.min(u64::from(BLOB_CHUNK));
    if answered_total != total {
        return Err(format!(
            "the answer says the blob is {answered_total} bytes, the job says {total}"
        ));
    }
    if answered_len as u64 != want {
        return Err(format!(
            "the chunk at {offset} has {answered_len} bytes, {want} were asked"
        ));
    }
    let at = offset as usize;
    Ok(at..at + answered_len)
}

/// Job messages: a request carries a signed job and up to the inline-blob
/// limit; a response carries up to the output limit. Both plus envelope.
pub fn job_limits(max_inline: usize, max_output: u64) -> Limits {
    Limits {
        request: max_inline + (256 << 10),
        response: max_output as usize + (64 << 10),
    }
}

/// Blob messages: tiny requests, one chunk per response.
pub const BLOB_LIMITS: Limits = Limits {
    request: 1024,
    response: BLOB_CHUNK as usize + 1024,
};

/// Role messages: a request is at most one table; an answer at most
/// [`MAX_TABLES_PER_ANSWER`](crate::proto::MAX_TABLES_PER_ANSWER) of them
/// (a table of 64 trails is about 3.5 KiB).
pub const ROLE_LIMITS: Limits = Limits {
    request: 16 << 10,
    response: 128 << 10,
};

/// Codec of the role protocol.
pub type RoleCodec = Codec<RoleRequest, RoleResponse>;
/// Codec of the job protocol.
pub type JobCodec = Codec<JobRequest, JobResponse>;
/// Codec of the blob protocol.
pub type BlobCodec = Codec<BlobRequest, BlobResponse>;

/// Every behaviour of a node, composed. One task owns the swarm.
#[derive(NetworkBehaviour)]
pub struct Behaviour {
    /// Connection limits (total, per peer, pending).
    pub limits: connection_limits::Behaviour,
    /// Inbound connections per network prefix (/24, /48).
    pub prefixes: super::prefix_limits::Behaviour,
    /// Identify (agent `biop2p/<version>`).
    pub identify: identify::Behaviour,
    /// Liveness.
    pub ping: ping::Behaviour,
    /// `/biop2p/job/1.0.0`.
    pub job: request_response::Behaviour<JobCodec>,
    /// `/biop2p/blob/1.0.0`.
    pub blob: request_response::Behaviour<BlobCodec>,
    /// `/biop2p/role/1.0.0`.
    pub role: request_response::Behaviour<RoleCodec>,
    /// LAN discovery (off when `[network] mdns = false`).
    pub mdns: Toggle<mdns::tokio::Behaviour>,
    /// WAN discovery from bootstrap peers.
    pub kad: kad::Behaviour<kad::store::MemoryStore>,
    /// Adverts, signed by their source, with peer scoring.
    pub gossipsub: gossipsub::Behaviour,
    /// Raw streams: the long-lived job stream `/biop2p/jobs/1.0.0`.
    pub stream: libp2p_stream::Behaviour,
    /// Circuit relay v2, client side: dials and listens through relays.
    pub relay_client: relay::client::Behaviour,
    /// Circuit relay v2, relay side (hosts with `[network.nat]
    /// relay_server`; active only once AutoNAT confirmed an address).
    pub relay: Toggle<relay::Behaviour>,
    /// Hole punching: upgrades a relayed connection to a direct one.
    pub dcutr: dcutr::Behaviour,
    /// AutoNAT v2, asking side (hosts): confirms our own addresses.
    pub autonat: Toggle<autonat::v2::client::Behaviour>,
    /// AutoNAT v2, answering side (hosts with `autonat_server`).
    pub autonat_server: Toggle<autonat::v2::server::Behaviour>,
}

/// How often AutoNAT tests addresses not tested yet (a test is one
/// dial-back; tested addresses are not tested again).
const AUTONAT_PROBE_EVERY: Duration = Duration::from_secs(1);

/// The relay's limits, from `[network.nat]`.
///
/// libp2p-relay 0.22 refuses a peer's reservation or circuit only when the
/// peer already holds *more* than its per-peer value (`count > max`), so it
/// lets one more through than it is given; it is given one less, so that
/// the configured (and advertised) per-peer limits are the ones that hold.
/// The totals (`count >= max`) are exact and passed as they are.
pub fn relay_config(nat: &crate::config::NatConfig) -> relay::Config {
    relay::Config {
        max_reservations: nat.relay_max_reservations,
        max_reservations_per_peer: nat.relay_max_reservations_per_peer.saturating_sub(1),
        reservation_duration: Duration::from_secs(nat.relay_reservation_secs),
        max_circuits: nat.relay_max_circuits,
        max_circuits_per_peer: nat.relay_max_circuits_per_peer.saturating_sub(1),
        max_circuit_duration: Duration::from_secs(nat.relay_circuit_secs),
        max_circuit_bytes: nat.relay_circuit_bytes,
        // libp2p's rate limits (per peer and per IP) stay on.
        ..relay::Config::default()
    }
}

impl Behaviour {
    /// Builds the behaviours from the config.
    pub fn new(
        key: &libp2p::identity::Keypair,
        net: &NetworkConfig,
        job: Limits,
        kind: NodeKind,
        relay_client: relay::client::Behaviour,
    ) -> Result<Self, String> {
        let me = key.public().to_peer_id();
        let limits = connection_limits::ConnectionLimits::default()
            .with_max_established(Some(net.max_connections))
            .with_max_established_per_peer(Some(net.max_connections_per_peer))
            .with_max_pending_incoming(Some(net.max_pending))
            .with_max_pending_outgoing(Some(net.max_pending));
        let rr = request_response::Config::default()
            .with_request_timeout(Duration::from_secs(net.request_timeout_secs))
            .with_max_concurrent_streams(256);
        let mdns = if net.mdns {
            // Without multicast (a container, say) mDNS is simply absent.
            // Query every 5 s once probing is over (the default is 5 min):
            // a lost multicast packet then costs seconds, not minutes.
            let cfg = mdns::Config {
                query_interval: Duration::from_secs(5),
                ..mdns::Config::default()
            };
            match mdns::tokio::Behaviour::new(cfg, me) {
                Ok(m) => Some(m),
                Err(e) => {
                    tracing::warn!(error = %e, "mDNS unavailable");
                    None
                }
            }
        } else {
            None
        };
        let mut kad_cfg = kad::Config::new(KAD_PROTOCOL);
        kad_cfg.set_query_timeout(Duration::from_secs(30));
        let mut kad = kad::Behaviour::with_config(me, kad::store::MemoryStore::new(me), kad_cfg);
        // Hosts serve the DHT even on addresses nobody confirmed (a LAN, a
        // loopback swarm); submitters come and go, so they only ask.
        kad.set_mode(Some(match kind {
            NodeKind::Host => kad::Mode::Server,
            NodeKind::Submitter => kad::Mode::Client,
        }));
        let gs_cfg = gossipsub::ConfigBuilder::default()
            .heartbeat_interval(Duration::from_millis(500))
            .validation_mode(gossipsub::ValidationMode::Strict)
            .validate_messages()
            .max_transmit_size(GOSSIP_MAX_BYTES)
            .build()
            .map_err(|e| e.to_string())?;
        let mut gossipsub =
            gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Signed(key.clone()), gs_cfg)?;
        gossipsub.with_peer_score(
            score_params(&net.swarm),
            gossipsub::PeerScoreThresholds::default(),
        )?;
        Ok(Behaviour {
            limits: connection_limits::Behaviour::new(limits),
            prefixes: super::prefix_limits::Behaviour::new(net.max_connections_per_prefix),
            identify: identify::Behaviour::new(
                identify::Config::new("/biop2p/1.0.0".into(), key.public())
                    .with_agent_version(format!("biop2p/{}", env!("CARGO_PKG_VERSION"))),
            ),
            ping: ping::Behaviour::new(ping::Config::new()),
            job: request_response::Behaviour::with_codec(
                JobCodec::new(job),
                [(JOB_PROTOCOL, request_response::ProtocolSupport::Full)],
                rr.clone(),
            ),
            blob: request_response::Behaviour::with_codec(
                BlobCodec::new(BLOB_LIMITS),
                [(BLOB_PROTOCOL, request_response::ProtocolSupport::Full)],
                rr.clone(),
            ),
            // Hosts carry tables; submitters only ask and publish.
            role: request_response::Behaviour::with_codec(
                RoleCodec::new(ROLE_LIMITS),
                [(
                    ROLE_PROTOCOL,
                    match kind {
                        NodeKind::Host => request_response::ProtocolSupport::Full,
                        NodeKind::Submitter => request_response::ProtocolSupport::Outbound,
                    },
                )],
                rr,
            ),
            mdns: mdns.into(),
            kad,
            gossipsub,
            stream: libp2p_stream::Behaviour::new(),
            relay_client,
            relay: (kind == NodeKind::Host && net.nat.relay_server)
                .then(|| relay::Behaviour::new(me, relay_config(&net.nat)))
                .into(),
            dcutr: dcutr::Behaviour::new(me),
            autonat: (kind == NodeKind::Host)
                .then(|| {
                    // AutoNAT's rand (0.10) is not ours; seeded from ours.
                    autonat::v2::client::Behaviour::new(
                        <rand_wasi::rngs::StdRng as rand_wasi::SeedableRng>::from_seed(
                            rand::random(),
                        ),
                        autonat::v2::client::Config::default()
                            .with_probe_interval(AUTONAT_PROBE_EVERY),
                    )
                })
                .into(),
            autonat_server: (kind == NodeKind::Host && net.nat.autonat_server)
                .then(autonat::v2::server::Behaviour::default)
                .into(),
        })
    }
}

/// Peer scoring: a peer that sends invalid adverts (bad signature, out of
/// bounds, not its own) loses score quickly, and below the graylist
/// threshold its gossip is ignored.
fn score_params(swarm: &str) -> gossipsub::PeerScoreParams {
    let mut p = gossipsub::PeerScoreParams::default();
    let topic = gossipsub::TopicScoreParams {
        topic_weight: 1.0,
        invalid_message_deliveries_weight: -100.0,
        invalid_message_deliveries_decay: 0.5,
        ..Default::default()
    };
    p.topics.insert(advert_topic(swarm).hash(), topic);
    p
}
