//! The host's side of NAT traversal: what it learned of its reachability
//! ([`Reachability`], fed by AutoNAT, identify and the relay client), the
//! relays it reserves a slot on when it is private, which of its addresses
//! its adverts carry, and which peers it reaches only through a relay.
//!
//! Relays are chosen among connected peers that offer circuit relay v2 (the
//! relay protocol is only offered by a host AutoNAT confirmed reachable),
//! bootstrap peers first, over the address this host dialed them at.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use libp2p::core::ConnectedPoint;
use libp2p::core::transport::ListenerId;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::ConnectionId;
use libp2p::{Multiaddr, PeerId, Swarm, identify};

use crate::config::NatConfig;
use crate::net::Behaviour;
use crate::net::reachability::{self, Reachability, Scope, Status};

/// Relay candidates remembered (peers offering relaying).
const MAX_CANDIDATES: usize = 64;

/// Relays remembered as having refused or dropped us.
const MAX_REFUSED: usize = 256;

pub(super) struct Nat {
    cfg: NatConfig,
    reach: Reachability,
    bootstrap: HashSet<PeerId>,
    /// Each live connection: its peer, whether it is relayed, the scope of
    /// its remote address, and the address when we dialed it.
    conns: HashMap<ConnectionId, Conn>,
    /// Peers offering relaying, from identify.
    candidates: HashSet<PeerId>,
    /// Our reservations, pending or active, by listener.
    reservations: HashMap<ListenerId, PeerId>,
    /// Relays that refused us or dropped us: not asked again this run
    /// (a relay at its limits stays at them for a while).
    refused: HashSet<PeerId>,
}

struct Conn {
    peer: PeerId,
    relayed: bool,
    scope: Option<Scope>,
    dialed: Option<Multiaddr>,
}

impl Nat {
    pub fn new(cfg: NatConfig, bootstrap: &[String]) -> Self {
        let bootstrap = bootstrap
            .iter()
            .filter_map(|b| b.parse::<Multiaddr>().ok())
            .filter_map(|a| {
                a.iter().find_map(|p| match p {
                    Protocol::P2p(id) => Some(id),
                    _ => None,
                })
            })
            .collect();
        Nat {
            cfg,
            reach: Reachability::new(),
            bootstrap,
            conns: HashMap::new(),
            candidates: HashSet::new(),
            reservations: HashMap::new(),
            refused: HashSet::new(),
        }
    }

    /// What this host knows of its reachability now.
    pub fn status(&self) -> Status {
        self.reach.status()
    }

    /// The addresses adverts should carry, out of `listen` (which includes
    /// relayed listen addresses).
    pub fn advert_addrs(&self, listen: &[Multiaddr], max: usize) -> Vec<Multiaddr> {
        let scopes: HashSet<Scope> = self
            .conns
            .values()
            .filter(|c| !c.relayed)
            .filter_map(|c| c.scope)
            .collect();
        reachability::advert_addrs(
            self.cfg.advertise,
            listen,
            self.reach.confirmed(),
            &scopes,
            max,
        )
    }

    /// Whether every connection to `peer` goes through a relay (and there
    /// is at least one).
    pub fn relayed_only(&self, peer: &PeerId) -> bool {
        let mut any = false;
        for c in self.conns.values().filter(|c| c.peer == *peer) {
            if !c.relayed {
                return false;
            }
            any = true;
        }
        any
    }

    pub fn on_established(&mut self, peer: PeerId, id: ConnectionId, endpoint: &ConnectedPoint) {
        let remote = endpoint.get_remote_address();
        let relayed = endpoint.is_relayed() || reachability::is_relayed(remote);
        self.conns.insert(
            id,
            Conn {
                peer,
                relayed,
                scope: reachability::scope(remote),
                dialed: (!relayed && endpoint.is_dialer()).then(|| remote.clone()),
            },
        );
    }

    pub fn on_closed(&mut self, id: ConnectionId) {
        self.conns.remove(&id);
    }

    /// Identify: a peer's protocols (does it relay?) and the address it
    /// sees us at. Returns whether the status changed.
    #[must_use]
    pub fn on_identify(&mut self, e: &identify::Event, own: &[Multiaddr]) -> bool {
        let identify::Event::Received {
            connection_id,
            peer_id,
            info,
        } = e
        else {
            return false;
        };
        let Some(conn) = self.conns.get(connection_id) else {
            return false;
        };
        if conn.relayed {
            return false;
        }
        if info.protocols.contains(&libp2p::relay::HOP_PROTOCOL_NAME) {
            if self.candidates.len() < MAX_CANDIDATES {
                self.candidates.insert(*peer_id);
            }
        } else {
            self.candidates.remove(peer_id);
        }
        let ips: Vec<IpAddr> = own
            .iter()
            .filter(|a| !reachability::is_relayed(a))
            .filter_map(|a| match a.iter().next()? {
                Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
                Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
                _ => None,
            })
            .collect();
        self.reach.on_observed(&info.observed_addr, &ips)
    }

    #[must_use]
    pub fn on_confirmed(&mut self, a: &Multiaddr) -> bool {
        self.reach.on_confirmed(a)
    }

    #[must_use]
    pub fn on_expired(&mut self, a: &Multiaddr) -> bool {
        self.reach.on_expired(a)
    }

    /// An AutoNAT v2 test of one of our addresses ended.
    #[must_use]
    pub fn on_autonat(&mut self, e: &libp2p::autonat::v2::client::Event) -> bool {
        match &e.result {
            Ok(()) => {
                tracing::info!(addr = %e.tested_addr, server = %e.server, "AutoNAT: address reachable");
                false
            }
            Err(err) => {
                tracing::info!(addr = %e.tested_addr, server = %e.server, error = %err, "AutoNAT: address not reachable");
                self.reach.on_probe_failed()
            }
        }
    }

    /// A relayed listen address appeared: our reservation holds.
    #[must_use]
    pub fn on_listen_addr(&mut self, listener: ListenerId, a: &Multiaddr) -> bool {
        match self.reservations.get(&listener) {
            Some(relay) if reachability::is_relayed(a) => self.reach.on_reserved(*relay),
            _ => false,
        }
    }

    /// A listener closed: if it was a reservation, it is gone (refused, or
    /// the relay went away).
    #[must_use]
    pub fn on_listener_closed(&mut self, listener: ListenerId, reason: &str) -> bool {
        let Some(relay) = self.reservations.remove(&listener) else {
            return false;
        };
        tracing::info!(%relay, %reason, "relay reservation ended");
        self.refuse(relay);
        self.reach.on_reservation_lost(&relay)
    }

    /// Reserves slots on relays while this host is private and holds fewer
    /// than `[network.nat] relays`.
    pub fn maybe_reserve(&mut self, swarm: &mut Swarm<Behaviour>) {
        let mut wanted = self
            .reach
            .relays_wanted(self.cfg.relays, self.pending_reservations());
        if wanted == 0 {
            return;
        }
        let reserved: HashSet<PeerId> = self.reservations.values().copied().collect();
        let mut picks: Vec<PeerId> = self
            .candidates
            .iter()
            .filter(|p| !reserved.contains(p) && !self.refused.contains(p))
            .copied()
            .collect();
        // Bootstrap peers first (the operator chose them), then by id, so the
        // choice does not depend on hash order.
        picks.sort_by_key(|p| (!self.bootstrap.contains(p), p.to_bytes()));
        for relay in picks {
            if wanted == 0 {
                break;
            }
            let Some(addr) = self
                .conns
                .values()
                .find(|c| c.peer == relay && c.dialed.is_some())
                .and_then(|c| c.dialed.clone())
            else {
                continue;
            };
            let circuit = crate::net::with_peer_id(&addr, relay).with(Protocol::P2pCircuit);
            match swarm.listen_on(circuit.clone()) {
                Ok(id) => {
                    tracing::info!(%relay, addr = %circuit, "reserving a relay slot");
                    self.reservations.insert(id, relay);
                    wanted -= 1;
                }
                Err(e) => {
                    tracing::warn!(%relay, error = %e, "cannot listen through relay");
                    self.refuse(relay);
                }
            }
        }
    }

    /// Remembers a relay not to ask again, within [`MAX_REFUSED`]: past it
    /// the list starts over, which only means asking some relays again.
    fn refuse(&mut self, relay: PeerId) {
        if self.refused.len() >= MAX_REFUSED {
            self.refused.clear();
        }
        self.refused.insert(relay);
    }

    fn pending_reservations(&self) -> usize {
        let active: HashSet<PeerId> = match self.reach.status() {
            Status::Private { relays } => relays.into_iter().collect(),
            _ => HashSet::new(),
        };
        self.reservations
            .values()
            .filter(|r| !active.contains(r))
            .count()
    }

    /// Once public, the reservations are given back: they hold a slot on
    /// someone else's relay for nothing.
    pub fn release_if_public(&mut self, swarm: &mut Swarm<Behaviour>) {
        if self.reach.status() != Status::Public || self.reservations.is_empty() {
            return;
        }
        for (id, relay) in self.reservations.drain() {
            tracing::info!(%relay, "reachable directly: relay reservation given back");
            swarm.remove_listener(id);
            let _ = self.reach.on_reservation_lost(&relay);
        }
    }
}
