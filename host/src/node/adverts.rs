//! The table of hosts known from their adverts: bounded, and evaporating.
//!
//! An entry lives for the lifetime its advert states (capped), counted on
//! the receiver's clock from when it arrived, so a host with a wrong clock
//! can neither live forever nor vanish at once. A newer advert from the same
//! host replaces the older one; when the table is full, the entry closest to
//! expiry makes room.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use libp2p::PeerId;

use crate::proto::{Advert, MAX_ADVERT_TTL_MS};

/// Hosts known from adverts.
#[derive(Debug)]
pub struct AdvertTable {
    cap: usize,
    entries: HashMap<PeerId, Entry>,
}

#[derive(Debug, Clone)]
struct Entry {
    advert: Advert,
    expires: Instant,
}

/// What an insertion did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    /// A host not known before.
    New,
    /// A fresher advert of a known host.
    Refreshed,
    /// Older than (or as old as) what is known: ignored.
    Stale,
}

impl AdvertTable {
    /// A table remembering at most `cap` hosts.
    pub fn new(cap: usize) -> Self {
        AdvertTable {
            cap: cap.max(1),
            entries: HashMap::new(),
        }
    }

    /// Records an advert that arrived at `now`.
    pub fn insert(&mut self, peer: PeerId, advert: Advert, now: Instant) -> Inserted {
        let ttl = Duration::from_millis(advert.ttl_ms().min(MAX_ADVERT_TTL_MS));
        let kind = match self.entries.get(&peer) {
            Some(e) if e.advert.issued_at_ms >= advert.issued_at_ms => return Inserted::Stale,
            Some(_) => Inserted::Refreshed,
            None => Inserted::New,
        };
        if kind == Inserted::New {
            self.evaporate(now);
            if self.entries.len() >= self.cap
                && let Some(victim) = self
                    .entries
                    .iter()
                    .min_by_key(|(_, e)| e.expires)
                    .map(|(p, _)| *p)
            {
                self.entries.remove(&victim);
            }
        }
        self.entries.insert(
            peer,
            Entry {
                advert,
                expires: now + ttl,
            },
        );
        kind
    }

    /// Forgets hosts whose adverts have expired; returns them.
    pub fn evaporate(&mut self, now: Instant) -> Vec<PeerId> {
        let gone: Vec<PeerId> = self
            .entries
            .iter()
            .filter(|(_, e)| e.expires <= now)
            .map(|(p, _)| *p)
            .collect();
        for p in &gone {
            self.entries.remove(p);
        }
        gone
    }

    /// Forgets one host (it refused, or went away).
    pub fn remove(&mut self, peer: &PeerId) {
        self.entries.remove(peer);
    }

    /// The live adverts, in no particular order.
    pub fn live(&self, now: Instant) -> Vec<(PeerId, Advert)> {
        self.entries
            .iter()
            .filter(|(_, e)| e.expires > now)
            .map(|(p, e)| (*p, e.advert.clone()))
            .collect()
    }

    /// One host's live advert.
    pub fn get(&self, peer: &PeerId, now: Instant) -> Option<&Advert> {
        self.entries
            .get(peer)
            .filter(|e| e.expires > now)
            .map(|e| &e.advert)
    }

    /// How long until `peer`'s advert evaporates.
    pub fn expires_in(&self, peer: &PeerId, now: Instant) -> Option<Duration> {
        self.entries
            .get(peer)
            .map(|e| e.expires.saturating_duration_since(now))
    }

    /// Hosts remembered (live or not yet swept).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no host is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn advert(issued: u64, ttl: u64) -> Advert {
        Advert {
            version: crate::proto::VERSION,
            host_key: [0; 32],
            addrs: Vec::new(),
            free_slots: 1,
            workers: 1,
            queue_room: 1,
            fuel_per_sec: 1,
            price_per_mfuel: 1,
            max_fuel: 1,
            max_memory_bytes: 1,
            roles: Vec::new(),
            region: String::new(),
            thresholds: [0.5; 3],
            relay: None,
            issued_at_ms: issued,
            expires_at_ms: issued + ttl,
        }
    }

    #[test]
    fn adverts_evaporate_unless_renewed() {
        let t0 = Instant::now();
        let mut t = AdvertTable::new(8);
        let (a, b) = (PeerId::random(), PeerId::random());
        assert_eq!(t.insert(a, advert(0, 3000), t0), Inserted::New);
        assert_eq!(t.insert(b, advert(0, 3000), t0), Inserted::New);
        // `a` renews its trail, `b` does not.
        let t2 = t0 + Duration::from_secs(2);
        assert_eq!(t.insert(a, advert(2000, 3000), t2), Inserted::Refreshed);
        assert_eq!(t.insert(a, advert(1000, 3000), t2), Inserted::Stale);
        let t4 = t0 + Duration::from_secs(4);
        assert_eq!(t.live(t4).len(), 1);
        assert!(t.get(&a, t4).is_some() && t.get(&b, t4).is_none());
        assert_eq!(t.evaporate(t4), vec![b]);
        assert_eq!(t.evaporate(t0 + Duration::from_secs(6)), vec![a]);
        assert!(t.is_empty());
    }

    #[test]
    fn a_full_table_drops_the_entry_closest_to_expiry() {
        let t0 = Instant::now();
        let mut t = AdvertTable::new(2);
        let (a, b, c) = (PeerId::random(), PeerId::random(), PeerId::random());
        t.insert(a, advert(0, 1000), t0);
        t.insert(b, advert(0, 9000), t0);
        t.insert(c, advert(0, 5000), t0);
        assert_eq!(t.len(), 2);
        assert!(t.get(&a, t0).is_none());
        assert!(t.get(&b, t0).is_some() && t.get(&c, t0).is_some());
        // A lying lifetime is capped.
        t.insert(a, advert(0, u64::MAX / 2), t0);
        let late = t0 + Duration::from_millis(MAX_ADVERT_TTL_MS + 1);
        assert!(t.get(&a, late).is_none());
    }
}
