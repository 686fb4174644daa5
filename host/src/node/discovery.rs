//! Finding hosts: mDNS on the LAN, Kademlia from bootstrap peers for the
//! WAN, and the adverts hosts gossip. Shared by the host daemon and the
//! submitter's client, each of which feeds it its swarm's events.
//!
//! Whatever a discovery mechanism reports is only a candidate address; a
//! host becomes *known* only through an advert it signed itself. Dials are
//! bounded (only while the node has fewer than half its connection budget)
//! and deduplicated by libp2p's dial conditions.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use libp2p::gossipsub::{self, IdentTopic, MessageAcceptance};
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::{Multiaddr, PeerId, Swarm, identify, kad, mdns};

use super::adverts::{AdvertTable, Inserted};
use crate::config::NetworkConfig;
use crate::net::{Behaviour, KAD_PROTOCOL, NetError, advert_topic};
use crate::proto::{Advert, SignedAdvert};

/// Addresses taken from one peer's identify message.
const MAX_ADDRS_PER_PEER: usize = 8;
/// LAN peers remembered for re-dialing.
const MAX_LAN_PEERS: usize = 256;
/// How often LAN peers we are not connected to are dialed again (a dial
/// that failed once is not reported again by mDNS until its record
/// expires, minutes later).
const REDIAL_EVERY: Duration = Duration::from_secs(2);

/// What a gossip message told us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Learned {
    /// A host not known before.
    New(PeerId),
    /// A fresher advert of a known host.
    Refreshed(PeerId),
    /// A peer subscribed to our adverts (a host answers with its advert).
    Subscriber(PeerId),
}

/// Discovery state of one node.
pub struct Discovery {
    me: PeerId,
    topic: IdentTopic,
    /// Known hosts (not including this node).
    pub table: AdvertTable,
    dial_budget: usize,
    /// Peers mDNS reported and has not expired, with their addresses.
    lan: HashMap<PeerId, Vec<Multiaddr>>,
    last_redial: Option<Instant>,
}

impl Discovery {
    /// Discovery for node `me` with the network config's bounds.
    pub fn new(me: PeerId, net: &NetworkConfig) -> Self {
        Discovery {
            me,
            topic: advert_topic(&net.swarm),
            table: AdvertTable::new(net.max_known_hosts),
            dial_budget: (net.max_connections as usize / 2).max(1),
            lan: HashMap::new(),
            last_redial: None,
        }
    }

    /// Subscribes to the swarm's adverts and dials the bootstrap peers
    /// (`net.bootstrap`, full multiaddrs with `/p2p/`).
    pub fn start(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        net: &NetworkConfig,
    ) -> Result<(), NetError> {
        let mut bootstrap = Vec::new();
        for s in &net.bootstrap {
            bootstrap.push(
                s.parse::<Multiaddr>()
                    .map_err(|_| NetError::BadAddr(s.clone()))?,
            );
        }
        swarm
            .behaviour_mut()
            .gossipsub
            .subscribe(&self.topic)
            .map_err(|e| NetError::Transport(format!("gossipsub: {e}")))?;
        for addr in &bootstrap {
            let peer = addr
                .iter()
                .find_map(|p| match p {
                    libp2p::multiaddr::Protocol::P2p(id) => Some(id),
                    _ => None,
                })
                .ok_or_else(|| NetError::BadAddr(format!("{addr} (bootstrap needs /p2p/<id>)")))?;
            if peer == self.me {
                continue;
            }
            swarm.behaviour_mut().kad.add_address(&peer, addr.clone());
            self.dial(swarm, peer, vec![addr.clone()]);
        }
        if !bootstrap.is_empty() {
            // Fills the routing table from the bootstrap peers; libp2p then
            // refreshes it periodically on its own.
            let _ = swarm.behaviour_mut().kad.bootstrap();
        }
        Ok(())
    }

    fn dial(&self, swarm: &mut Swarm<Behaviour>, peer: PeerId, addrs: Vec<Multiaddr>) {
        if peer == self.me
            || swarm.is_connected(&peer)
            || swarm.network_info().num_peers() >= self.dial_budget
        {
            return;
        }
        let opts = DialOpts::peer_id(peer)
            .addresses(addrs)
            .condition(PeerCondition::DisconnectedAndNotDialing)
            .build();
        if let Err(e) = swarm.dial(opts) {
            tracing::debug!(%peer, error = %e, "discovery dial not started");
        }
    }

    /// A peer on the LAN: remember its addresses and connect, so that its
    /// adverts reach us.
    pub fn on_mdns(&mut self, swarm: &mut Swarm<Behaviour>, e: mdns::Event) {
        match e {
            mdns::Event::Discovered(found) => {
                for (peer, addr) in found {
                    tracing::debug!(%peer, %addr, "mDNS discovered");
                    swarm.behaviour_mut().kad.add_address(&peer, addr.clone());
                    if self.lan.len() < MAX_LAN_PEERS || self.lan.contains_key(&peer) {
                        let addrs = self.lan.entry(peer).or_default();
                        if !addrs.contains(&addr) && addrs.len() < MAX_ADDRS_PER_PEER {
                            addrs.push(addr.clone());
                        }
                    }
                    self.dial(swarm, peer, vec![addr]);
                }
            }
            mdns::Event::Expired(gone) => {
                for (peer, addr) in gone {
                    if let Some(addrs) = self.lan.get_mut(&peer) {
                        addrs.retain(|a| *a != addr);
                        if addrs.is_empty() {
                            self.lan.remove(&peer);
                        }
                    }
                }
            }
        }
    }

    /// Dials again the LAN peers we are not connected to (at most every
    /// [`REDIAL_EVERY`]; call it often).
    pub fn redial(&mut self, swarm: &mut Swarm<Behaviour>) {
        if self.last_redial.is_some_and(|t| t.elapsed() < REDIAL_EVERY) {
            return;
        }
        self.last_redial = Some(Instant::now());
        let lan: Vec<(PeerId, Vec<Multiaddr>)> =
            self.lan.iter().map(|(p, a)| (*p, a.clone())).collect();
        for (peer, addrs) in lan {
            self.dial(swarm, peer, addrs);
        }
    }

    /// Peers speaking our DHT protocol enter the routing table with the
    /// addresses they listen on.
    pub fn on_identify(&mut self, swarm: &mut Swarm<Behaviour>, e: identify::Event) {
        if let identify::Event::Received { peer_id, info, .. } = e
            && info.protocols.contains(&KAD_PROTOCOL)
        {
            for a in info.listen_addrs.into_iter().take(MAX_ADDRS_PER_PEER) {
                swarm.behaviour_mut().kad.add_address(&peer_id, a);
            }
        }
    }

    /// A peer found through the DHT: connect (within the dial budget).
    pub fn on_kad(&mut self, swarm: &mut Swarm<Behaviour>, e: kad::Event) {
        if let kad::Event::RoutingUpdated {
            peer, addresses, ..
        } = e
        {
            self.dial(swarm, peer, addresses.into_vec());
        }
    }

    /// Validates an advert: signed by the host it describes, which must be
    /// the message's source, and within bounds. Invalid ones are rejected,
    /// which costs the sender peer score.
    pub fn on_gossip(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        e: gossipsub::Event,
    ) -> Option<Learned> {
        match e {
            gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            } => {
                let verdict = match SignedAdvert::decode_verified(&message.data) {
                    Ok(a) if a.peer_id().is_some() && a.peer_id() == message.source => Ok(a),
                    Ok(_) => Err("advert for another host than its source".to_string()),
                    Err(e) => Err(e.to_string()),
                };
                let gs = &mut swarm.behaviour_mut().gossipsub;
                match verdict {
                    Ok(advert) => {
                        gs.report_message_validation_result(
                            &message_id,
                            &propagation_source,
                            MessageAcceptance::Accept,
                        );
                        let peer = advert.peer_id()?;
                        if peer == self.me {
                            return None;
                        }
                        let addrs: Vec<Multiaddr> =
                            advert.addrs.iter().filter_map(|a| a.parse().ok()).collect();
                        for a in &addrs {
                            swarm.behaviour_mut().kad.add_address(&peer, a.clone());
                        }
                        match self.table.insert(peer, advert, Instant::now()) {
                            Inserted::New => Some(Learned::New(peer)),
                            Inserted::Refreshed => Some(Learned::Refreshed(peer)),
                            Inserted::Stale => None,
                        }
                    }
                    Err(reason) => {
                        tracing::debug!(peer = %propagation_source, %reason, "advert rejected");
                        gs.report_message_validation_result(
                            &message_id,
                            &propagation_source,
                            MessageAcceptance::Reject,
                        );
                        None
                    }
                }
            }
            gossipsub::Event::Subscribed { peer_id, topic } if topic == self.topic.hash() => {
                Some(Learned::Subscriber(peer_id))
            }
            _ => None,
        }
    }

    /// Publishes this host's advert. Having nobody to publish to yet is
    /// normal for the first host of a swarm.
    pub fn publish(&self, swarm: &mut Swarm<Behaviour>, advert: &SignedAdvert) {
        if let Err(e) = swarm
            .behaviour_mut()
            .gossipsub
            .publish(self.topic.clone(), advert.to_bytes())
        {
            tracing::debug!(error = %e, "advert not published");
        }
    }

    /// The live adverts.
    pub fn live(&self) -> Vec<(PeerId, Advert)> {
        self.table.live(Instant::now())
    }
}
