//! The composed libp2p behaviour of every biop2p node.

// The derive generates `BehaviourEvent`, whose variants mirror the fields
// documented below.
#![allow(missing_docs)]

use std::time::Duration;

use libp2p::swarm::NetworkBehaviour;
use libp2p::{StreamProtocol, connection_limits, identify, ping, request_response};

use super::codec::{Codec, Limits};
use crate::config::NetworkConfig;
use crate::proto::{BlobRequest, BlobResponse, JobRequest, JobResponse};

/// The job protocol: submit a job, get its result and receipt.
pub const JOB_PROTOCOL: StreamProtocol = StreamProtocol::new("/biop2p/job/1.0.0");
/// The blob protocol: content by blake3 hash, in bounded chunks.
pub const BLOB_PROTOCOL: StreamProtocol = StreamProtocol::new("/biop2p/blob/1.0.0");

/// Bytes per blob chunk. 1 MiB keeps a chunk's response well under the
/// codec limit while amortising a stream's set-up over many bytes.
pub const BLOB_CHUNK: u32 = 1 << 20;

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

/// Codec of the job protocol.
pub type JobCodec = Codec<JobRequest, JobResponse>;
/// Codec of the blob protocol.
pub type BlobCodec = Codec<BlobRequest, BlobResponse>;

/// Every behaviour of a node, composed. One task owns the swarm.
#[derive(NetworkBehaviour)]
pub struct Behaviour {
    /// Connection limits (total, per peer, pending).
    pub limits: connection_limits::Behaviour,
    /// Identify (agent `biop2p/<version>`).
    pub identify: identify::Behaviour,
    /// Liveness.
    pub ping: ping::Behaviour,
    /// `/biop2p/job/1.0.0`.
    pub job: request_response::Behaviour<JobCodec>,
    /// `/biop2p/blob/1.0.0`.
    pub blob: request_response::Behaviour<BlobCodec>,
}

impl Behaviour {
    /// Builds the behaviours from the config.
    pub fn new(key: &libp2p::identity::Keypair, net: &NetworkConfig, job: Limits) -> Self {
        let limits = connection_limits::ConnectionLimits::default()
            .with_max_established(Some(net.max_connections))
            .with_max_established_per_peer(Some(net.max_connections_per_peer))
            .with_max_pending_incoming(Some(net.max_pending))
            .with_max_pending_outgoing(Some(net.max_pending));
        let rr = request_response::Config::default()
            .with_request_timeout(Duration::from_secs(net.request_timeout_secs))
            .with_max_concurrent_streams(256);
        Behaviour {
            limits: connection_limits::Behaviour::new(limits),
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
                rr,
            ),
        }
    }
}
