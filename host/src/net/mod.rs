//! The network edge: transports, the composed behaviour and the codec.

pub mod behaviour;
pub mod codec;
pub mod job_stream;
pub mod prefix_limits;
pub mod reachability;
mod swarm;

pub use behaviour::{
    BLOB_CHUNK, BLOB_PROTOCOL, Behaviour, BehaviourEvent, JOB_PROTOCOL, KAD_PROTOCOL, NodeKind,
    advert_topic, chunk_place,
};
pub use codec::Inbound;
pub use job_stream::JOB_STREAM_PROTOCOL;
pub use prefix_limits::{NetPrefix, network_prefix};
pub use swarm::{NetError, build_swarm, default_listen_addrs, with_peer_id};
