//! Whether this node can be dialed, and which of its addresses to tell the
//! swarm. Pure: the driver feeds it what AutoNAT, identify and the relay
//! client reported, and reads back a [`Status`] and the advert addresses.
//!
//! A host is `public` once AutoNAT v2 confirmed one of its (non-relayed)
//! addresses by a dial-back from another peer; `private` once a dial-back
//! failed, or as soon as a peer observes it at an IP that is none of its
//! own (a NAT rewrote the source address, so no unsolicited dial gets in
//! unless the router forwards a port, which AutoNAT would then confirm);
//! `unknown` before either. The observation shortcut matters for the time a
//! volunteer needs to be reachable: a failed dial-back costs a handshake
//! timeout, an observation costs nothing.

use std::collections::HashSet;
use std::net::IpAddr;

use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};

use crate::config::AdvertiseAddrs;

/// Whether `a` goes through a relay (`/p2p-circuit`).
pub fn is_relayed(a: &Multiaddr) -> bool {
    a.iter().any(|p| matches!(p, Protocol::P2pCircuit))
}

/// The IP of an address, if it starts with one.
fn ip_of(a: &Multiaddr) -> Option<IpAddr> {
    match a.iter().next()? {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
        _ => None,
    }
}

/// Who can reach an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// This machine only.
    Loopback,
    /// One private site: the /16 of an IPv4 private, shared or link-local
    /// address, the /48 of an IPv6 unique-local or link-local one.
    Site([u8; 6]),
    /// Anyone.
    Public,
}

/// The scope of an address (`None` for one without an IP, e.g. DNS).
pub fn scope(a: &Multiaddr) -> Option<Scope> {
    Some(match ip_of(a)? {
        IpAddr::V4(v) if v.is_loopback() => Scope::Loopback,
        IpAddr::V4(v) => {
            let o = v.octets();
            let cgnat = o[0] == 100 && (64..128).contains(&o[1]);
            if v.is_private() || v.is_link_local() || cgnat || v.is_unspecified() {
                Scope::Site([4, 0, 0, 0, o[0], o[1]])
            } else {
                Scope::Public
            }
        }
        IpAddr::V6(v) if v.is_loopback() => Scope::Loopback,
        IpAddr::V6(v) => {
            let s = v.segments();
            let ula = (s[0] & 0xfe00) == 0xfc00;
            let link = (s[0] & 0xffc0) == 0xfe80;
            if ula || link || v.is_unspecified() {
                let b = v.octets();
                Scope::Site([b[0], b[1], b[2], b[3], b[4], b[5]])
            } else {
                Scope::Public
            }
        }
    })
}

/// The addresses an advert carries, at most `max`: with
/// [`AdvertiseAddrs::All`] every listen address; with
/// [`AdvertiseAddrs::Reachable`] the confirmed ones, loopback and private
/// listen addresses only when some peer is connected from that same scope
/// (`peer_scopes`, from the remote addresses of live connections), public
/// listen addresses only once confirmed. Relayed addresses come last
/// either way, so a submitter tries every direct path first.
pub fn advert_addrs(
    mode: AdvertiseAddrs,
    listen: &[Multiaddr],
    confirmed: &[Multiaddr],
    peer_scopes: &HashSet<Scope>,
    max: usize,
) -> Vec<Multiaddr> {
    let mut out: Vec<Multiaddr> = Vec::new();
    let push = |a: &Multiaddr, out: &mut Vec<Multiaddr>| {
        if out.len() < max && !out.contains(a) {
            out.push(a.clone());
        }
    };
    let direct = listen.iter().filter(|a| !is_relayed(a));
    match mode {
        AdvertiseAddrs::All => direct.for_each(|a| push(a, &mut out)),
        AdvertiseAddrs::Reachable => {
            for a in confirmed.iter().filter(|a| !is_relayed(a)) {
                push(a, &mut out);
            }
            for a in direct {
                match scope(a) {
                    Some(s @ (Scope::Loopback | Scope::Site(_))) if peer_scopes.contains(&s) => {
                        push(a, &mut out)
                    }
                    _ => {}
                }
            }
        }
    }
    for a in listen.iter().filter(|a| is_relayed(a)) {
        push(a, &mut out);
    }
    out
}

/// What a node knows of its own reachability.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Nothing confirmed or refuted yet.
    Unknown,
    /// AutoNAT confirmed an address of ours.
    Public,
    /// Not dialable from outside; reachable through these relays (possibly
    /// none yet).
    Private {
        /// Relays holding a reservation for us.
        relays: Vec<PeerId>,
    },
}

impl Status {
    /// `public`, `private` or `unknown` (a stable word for JSON).
    pub fn word(&self) -> &'static str {
        match self {
            Status::Unknown => "unknown",
            Status::Public => "public",
            Status::Private { .. } => "private",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Status::Private { relays } if relays.is_empty() => {
                write!(f, "private (no relay yet)")
            }
            Status::Private { relays } => {
                let r: Vec<String> = relays.iter().map(|p| p.to_string()).collect();
                write!(f, "private (relayed via {})", r.join(", "))
            }
            s => f.write_str(s.word()),
        }
    }
}

/// The reachability state of one node. Every input returns whether the
/// [`Reachability::status`] changed, so the driver knows when to say so
/// and re-advertise.
#[derive(Debug, Default)]
pub struct Reachability {
    confirmed: Vec<Multiaddr>,
    failed_probes: u32,
    behind_nat: bool,
    relays: Vec<PeerId>,
}

/// Addresses remembered as confirmed (the swarm keeps its own list too).
const MAX_CONFIRMED: usize = 16;

impl Reachability {
    /// A node that knows nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// What the node knows now.
    pub fn status(&self) -> Status {
        if !self.confirmed.is_empty() {
            Status::Public
        } else if self.failed_probes > 0 || self.behind_nat {
            Status::Private {
                relays: self.relays.clone(),
            }
        } else {
            Status::Unknown
        }
    }

    /// Addresses confirmed reachable (never relayed ones).
    pub fn confirmed(&self) -> &[Multiaddr] {
        &self.confirmed
    }

    fn changed(&mut self, before: Status) -> bool {
        self.status() != before
    }

    /// The swarm confirmed an external address. Relayed addresses are
    /// confirmed by the relay client and say nothing about direct dials.
    #[must_use]
    pub fn on_confirmed(&mut self, a: &Multiaddr) -> bool {
        let before = self.status();
        if !is_relayed(a) && !self.confirmed.contains(a) && self.confirmed.len() < MAX_CONFIRMED {
            self.confirmed.push(a.clone());
        }
        self.changed(before)
    }

    /// An external address expired.
    #[must_use]
    pub fn on_expired(&mut self, a: &Multiaddr) -> bool {
        let before = self.status();
        self.confirmed.retain(|x| x != a);
        self.changed(before)
    }

    /// An AutoNAT dial-back to one of our addresses failed.
    #[must_use]
    pub fn on_probe_failed(&mut self) -> bool {
        let before = self.status();
        self.failed_probes = self.failed_probes.saturating_add(1);
        self.changed(before)
    }

    /// A peer told us (identify) the address it sees us at, over a direct
    /// connection. `own_ips` are the IPs we listen on. An observed public IP
    /// that is not ours means a NAT is in the way.
    #[must_use]
    pub fn on_observed(&mut self, observed: &Multiaddr, own_ips: &[IpAddr]) -> bool {
        let before = self.status();
        if let Some(ip) = ip_of(observed)
            && !own_ips.contains(&ip)
            && !own_ips.iter().any(|i| i.is_unspecified())
            && scope(observed) == Some(Scope::Public)
        {
            self.behind_nat = true;
        }
        self.changed(before)
    }

    /// A relay accepted our reservation.
    #[must_use]
    pub fn on_reserved(&mut self, relay: PeerId) -> bool {
        let before = self.status();
        if !self.relays.contains(&relay) {
            self.relays.push(relay);
        }
        self.changed(before)
    }

    /// A reservation ended (the relay went away or refused renewal).
    #[must_use]
    pub fn on_reservation_lost(&mut self, relay: &PeerId) -> bool {
        let before = self.status();
        self.relays.retain(|r| r != relay);
        self.changed(before)
    }

    /// How many more relays to reserve on, out of `want`: only a private
    /// node needs any.
    pub fn relays_wanted(&self, want: usize, pending: usize) -> usize {
        match self.status() {
            Status::Private { relays } => want.saturating_sub(relays.len() + pending),
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(s: &str) -> Multiaddr {
        s.parse().unwrap()
    }

    #[test]
    fn scopes() {
        assert_eq!(scope(&m("/ip4/127.0.0.1/tcp/1")), Some(Scope::Loopback));
        assert_eq!(
            scope(&m("/ip4/10.1.2.3/tcp/1")),
            scope(&m("/ip4/10.1.9.9/udp/1/quic-v1"))
        );
        assert_ne!(
            scope(&m("/ip4/10.1.2.3/tcp/1")),
            scope(&m("/ip4/10.2.2.3/tcp/1"))
        );
        assert_eq!(
            scope(&m("/ip4/100.70.0.1/tcp/1")).map(|s| s == Scope::Public),
            Some(false)
        );
        assert_eq!(scope(&m("/ip4/198.18.0.1/tcp/1")), Some(Scope::Public));
        assert_eq!(scope(&m("/ip6/::1/tcp/1")), Some(Scope::Loopback));
        assert!(matches!(
            scope(&m("/ip6/fd00::1/tcp/1")),
            Some(Scope::Site(_))
        ));
        assert_eq!(scope(&m("/ip6/2001:db8::1/tcp/1")), Some(Scope::Public));
        assert_eq!(scope(&m("/dns4/example.org/tcp/1")), None);
    }

    #[test]
    fn adverts_carry_only_what_the_audience_can_reach() {
        let relayed = m("/ip4/198.18.0.1/udp/7450/quic-v1")
            .with(Protocol::P2p(PeerId::random()))
            .with(Protocol::P2pCircuit);
        let listen = [
            m("/ip4/127.0.0.1/tcp/1"),
            m("/ip4/10.1.1.2/udp/7450/quic-v1"),
            m("/ip4/198.18.0.9/tcp/7450"),
            relayed,
        ];
        let none = HashSet::new();
        let got = advert_addrs(AdvertiseAddrs::Reachable, &listen, &[], &none, 8);
        assert_eq!(got, vec![listen[3].clone()], "only the relayed address");
        let lan: HashSet<_> = [scope(&listen[1]).unwrap()].into();
        let got = advert_addrs(AdvertiseAddrs::Reachable, &listen, &[], &lan, 8);
        assert_eq!(got, vec![listen[1].clone(), listen[3].clone()]);
        let confirmed = [m("/ip4/198.18.0.9/tcp/7450")];
        let got = advert_addrs(AdvertiseAddrs::Reachable, &listen, &confirmed, &none, 8);
        assert_eq!(got, vec![listen[2].clone(), listen[3].clone()]);
        let got = advert_addrs(AdvertiseAddrs::All, &listen, &[], &none, 2);
        assert_eq!(got, listen[..2].to_vec(), "capped");
    }

    #[test]
    fn status_follows_what_was_learned() {
        let mut r = Reachability::new();
        assert_eq!(r.status(), Status::Unknown);
        let own = [IpAddr::from([10, 1, 1, 2])];
        assert!(!r.on_observed(&m("/ip4/10.1.1.2/udp/7450/quic-v1"), &own));
        assert_eq!(r.relays_wanted(2, 0), 0);
        assert!(r.on_observed(&m("/ip4/198.18.0.2/udp/7450/quic-v1"), &own));
        assert_eq!(r.status().to_string(), "private (no relay yet)");
        assert_eq!(r.relays_wanted(2, 1), 1);
        let relay = PeerId::random();
        assert!(r.on_reserved(relay));
        assert_eq!(
            r.status().to_string(),
            format!("private (relayed via {relay})")
        );
        assert!(!r.on_confirmed(&m("/ip4/198.18.0.1/udp/1/quic-v1/p2p-circuit")));
        assert!(r.on_confirmed(&m("/ip4/198.18.0.2/udp/7450/quic-v1")));
        assert_eq!(r.status(), Status::Public);
        assert_eq!(r.relays_wanted(2, 0), 0);
        assert!(r.on_expired(&m("/ip4/198.18.0.2/udp/7450/quic-v1")));
        assert!(r.on_reservation_lost(&relay));
        assert_eq!(r.status().word(), "private");
        let mut fresh = Reachability::new();
        assert!(fresh.on_probe_failed());
        assert_eq!(fresh.status().word(), "private");
    }
}
