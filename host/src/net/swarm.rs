//! Building the swarm: TCP (no Nagle), QUIC and WebSocket, each secured by
//! Noise and multiplexed by Yamux (QUIC brings its own), so any libp2p
//! implementation can dial us with the spec'd protocols; DNS names in the
//! addresses we dial are resolved first.

use std::time::Duration;

use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId, Swarm, noise, tcp, yamux};

use super::behaviour::{Behaviour, NodeKind};
use crate::config::NetworkConfig;
use crate::identity::Identity;

/// Errors of setting up the network.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// A transport could not be built.
    #[error("transport: {0}")]
    Transport(String),
    /// A listen address is invalid or could not be bound.
    #[error("cannot listen on {addr}: {reason}")]
    Listen {
        /// The address.
        addr: String,
        /// Why.
        reason: String,
    },
    /// A multiaddr did not parse.
    #[error("invalid multiaddr {0:?}")]
    BadAddr(String),
}

/// Builds the swarm of a node. Every byte its transports carry is counted
/// in `bandwidth` (`libp2p_bandwidth_bytes_total{protocols,direction}`),
/// which costs an atomic add per read or write.
pub async fn build_swarm(
    id: &Identity,
    net: &NetworkConfig,
    job_limits: super::codec::Limits,
    kind: NodeKind,
    bandwidth: &mut prometheus_client::registry::Registry,
) -> Result<Swarm<Behaviour>, NetError> {
    let t = |e: &dyn std::fmt::Display| NetError::Transport(e.to_string());
    let net2 = net.clone();
    let dns = resolver_config();
    let swarm = libp2p::SwarmBuilder::with_existing_identity(id.keypair.clone())
        .with_tokio()
        .with_tcp(
            // Nagle's algorithm costs ~40 ms per small request: off.
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| t(&e))?
        .with_quic()
        // WebSocket over TCP, Noise, Yamux. Built by hand because the
        // builder's own WebSocket phase comes before QUIC's.
        .with_other_transport(|key| {
            use libp2p::Transport as _;
            let tcp = libp2p::tcp::tokio::Transport::new(tcp::Config::default().nodelay(true));
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(
                libp2p::websocket::Config::new(tcp)
                    .upgrade(libp2p::core::upgrade::Version::V1Lazy)
                    .authenticate(noise::Config::new(key)?)
                    .multiplex(yamux::Config::default()),
            )
        })
        .map_err(|e| t(&e))?
        // `/dns4`, `/dns6` and `/dns` addresses (bootstrap peers by name).
        .with_dns_config(dns.0, dns.1)
        // Circuit relay v2: `/p2p-circuit` addresses, dialed and listened on
        // through a relay, secured end to end by Noise.
        .with_relay_client(noise::Config::new, yamux::Config::default)
        .map_err(|e| t(&e))?
        .with_bandwidth_metrics(bandwidth)
        .with_behaviour(move |key, relay_client| {
            Behaviour::new(key, &net2, job_limits, kind, relay_client)
                .map_err(Box::<dyn std::error::Error + Send + Sync>::from)
        })
        .map_err(|e| t(&e))?
        .with_swarm_config(|c| {
            c.with_idle_connection_timeout(Duration::from_secs(net.idle_timeout_secs))
        })
        .build();
    Ok(swarm)
}

/// The system's resolver configuration (`/etc/resolv.conf`; `/etc/hosts`
/// is read first either way). A machine without one still starts: names
/// then resolve from `/etc/hosts` only, and the log says so.
fn resolver_config() -> (libp2p::dns::ResolverConfig, libp2p::dns::ResolverOpts) {
    match hickory_resolver::system_conf::read_system_conf() {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "no system resolver configuration: DNS names in addresses resolve from /etc/hosts only");
            (
                libp2p::dns::ResolverConfig::from_parts(None, Vec::new(), Vec::new()),
                libp2p::dns::ResolverOpts::default(),
            )
        }
    }
}

/// All interfaces, all three transports, on the configured ports.
pub fn default_listen_addrs(net: &NetworkConfig) -> Vec<Multiaddr> {
    let mut v: Vec<Multiaddr> = Vec::new();
    v.push(
        format!("/ip4/0.0.0.0/tcp/{}", net.tcp_port)
            .parse()
            .expect("tcp addr"),
    );
    v.push(
        format!("/ip4/0.0.0.0/udp/{}/quic-v1", net.quic_port)
            .parse()
            .expect("quic addr"),
    );
    v.push(
        format!("/ip4/0.0.0.0/tcp/{}/ws", net.ws_port)
            .parse()
            .expect("ws addr"),
    );
    v
}

/// `addr` with `/p2p/<peer>` appended (a full multiaddr), unless it ends
/// with one already. A relayed address names its relay before
/// `/p2p-circuit`, and the peer after it.
pub fn with_peer_id(addr: &Multiaddr, peer: PeerId) -> Multiaddr {
    if matches!(addr.iter().last(), Some(Protocol::P2p(_))) {
        addr.clone()
    } else {
        addr.clone().with(Protocol::P2p(peer))
    }
}
