//! Inbound connections bounded per network prefix.
//!
//! `connection_limits` bounds connections in total and per peer id, but a
//! peer id costs nothing to make: one machine can present thousands. An
//! address costs more, so a host also bounds the inbound connections it
//! keeps from one prefix (/24 for IPv4, /48 for IPv6, the blocks one
//! operator typically holds). The check runs before the handshake, so a
//! flood of dials from one prefix costs no Noise work past the limit.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::IpAddr;
use std::task::{Context, Poll};

use libp2p::core::transport::PortUse;
use libp2p::core::{ConnectedPoint, Endpoint};
use libp2p::multiaddr::Protocol;
use libp2p::swarm::{
    ConnectionClosed, ConnectionDenied, ConnectionId, FromSwarm, ListenFailure, NetworkBehaviour,
    THandler, THandlerInEvent, THandlerOutEvent, ToSwarm, dummy,
};
use libp2p::{Multiaddr, PeerId};

/// A network prefix: the first 24 bits of an IPv4 address or 48 of an IPv6
/// one, with the rest zeroed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NetPrefix(pub IpAddr);

impl std::fmt::Display for NetPrefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            IpAddr::V4(a) => write!(f, "{a}/24"),
            IpAddr::V6(a) => write!(f, "{a}/48"),
        }
    }
}

/// The prefix of the first IP address in `addr`, if it has one (a memory
/// transport address or a DNS name has none).
pub fn network_prefix(addr: &Multiaddr) -> Option<NetPrefix> {
    addr.iter().find_map(|p| match p {
        Protocol::Ip4(a) => {
            let o = a.octets();
            Some(NetPrefix(IpAddr::from([o[0], o[1], o[2], 0])))
        }
        Protocol::Ip6(a) => {
            // An IPv4-mapped address is its IPv4 prefix, not one /48 for
            // the whole IPv4 internet.
            if let Some(v4) = a.to_ipv4_mapped() {
                let o = v4.octets();
                return Some(NetPrefix(IpAddr::from([o[0], o[1], o[2], 0])));
            }
            let mut s = a.segments();
            s[3..].fill(0);
            Some(NetPrefix(IpAddr::from(s)))
        }
        _ => None,
    })
}

/// Why a connection was denied (downcast from `ConnectionDenied`).
#[derive(Debug, thiserror::Error)]
#[error("{count} inbound connections from {prefix} already, the most one prefix may have")]
pub struct PrefixLimitExceeded {
    /// The prefix at its limit.
    pub prefix: NetPrefix,
    /// Connections it has.
    pub count: u32,
}

/// The behaviour: counts established inbound connections per prefix and
/// denies new ones past `max_per_prefix`.
pub struct Behaviour {
    max_per_prefix: u32,
    counts: HashMap<NetPrefix, u32>,
    /// Established inbound connections and their prefixes (to count down
    /// when they close).
    inbound: HashMap<ConnectionId, NetPrefix>,
}

impl Behaviour {
    /// Allows at most `max_per_prefix` inbound connections per prefix.
    pub fn new(max_per_prefix: u32) -> Self {
        Behaviour {
            max_per_prefix,
            counts: HashMap::new(),
            inbound: HashMap::new(),
        }
    }

    fn check(&self, remote: &Multiaddr) -> Result<(), ConnectionDenied> {
        let Some(prefix) = network_prefix(remote) else {
            return Ok(());
        };
        let count = self.counts.get(&prefix).copied().unwrap_or(0);
        if count >= self.max_per_prefix {
            tracing::debug!(%prefix, count, "inbound connection denied: prefix at its limit");
            return Err(ConnectionDenied::new(PrefixLimitExceeded { prefix, count }));
        }
        Ok(())
    }

    /// Inbound connections counted from `prefix` now.
    pub fn count(&self, prefix: &NetPrefix) -> u32 {
        self.counts.get(prefix).copied().unwrap_or(0)
    }
}

impl NetworkBehaviour for Behaviour {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_pending_inbound_connection(
        &mut self,
        _: ConnectionId,
        _local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        self.check(remote)
    }

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        // Checked again: others from the prefix may have finished their
        // handshakes meanwhile.
        self.check(remote)?;
        Ok(dummy::ConnectionHandler)
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match event {
            FromSwarm::ConnectionEstablished(e) => {
                if let ConnectedPoint::Listener { send_back_addr, .. } = e.endpoint
                    && let Some(p) = network_prefix(send_back_addr)
                {
                    *self.counts.entry(p).or_default() += 1;
                    self.inbound.insert(e.connection_id, p);
                }
            }
            FromSwarm::ConnectionClosed(ConnectionClosed { connection_id, .. }) => {
                if let Some(p) = self.inbound.remove(&connection_id)
                    && let Some(c) = self.counts.get_mut(&p)
                {
                    *c = c.saturating_sub(1);
                    if *c == 0 {
                        self.counts.remove(&p);
                    }
                }
            }
            FromSwarm::ListenFailure(ListenFailure { .. }) => {}
            _ => {}
        }
    }

    fn on_connection_handler_event(
        &mut self,
        _: PeerId,
        _: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_slash_24_and_slash_48() {
        let p = |s: &str| network_prefix(&s.parse().unwrap()).unwrap().to_string();
        assert_eq!(p("/ip4/203.0.113.77/tcp/1"), "203.0.113.0/24");
        assert_eq!(p("/ip6/2001:db8:1:2:3::4/udp/1/quic-v1"), "2001:db8:1::/48");
        assert_eq!(p("/ip6/::ffff:198.51.100.9/tcp/1"), "198.51.100.0/24");
        assert!(network_prefix(&"/memory/5".parse().unwrap()).is_none());
    }
}
