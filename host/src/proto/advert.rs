//! Adverts ("pheromone trails"): what a host offers, signed by the host and
//! alive for a bounded time. A host republishes its advert on a timer; a
//! submitter forgets a host whose adverts stop, the way an unrenewed trail
//! evaporates.

use libp2p::PeerId;
use serde::{Deserialize, Serialize};

use super::ProtoError;
use super::job::serde_big_array;

const DOMAIN: &[u8] = b"biop2p/advert/v1\0";

/// Longest an advert may claim to live: a host that stops is forgotten
/// within this long, whatever it claimed.
pub const MAX_ADVERT_TTL_MS: u64 = 15 * 60 * 1000;
/// Largest encoded advert accepted (the gossip limit is a little above).
pub const MAX_ADVERT_BYTES: usize = 4096;
/// Addresses an advert may carry.
pub const MAX_ADVERT_ADDRS: usize = 8;
/// Roles an advert may list.
pub const MAX_ADVERT_ROLES: usize = 8;

/// What a host offers, as of `issued_at_ms`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Advert {
    /// [`VERSION`].
    pub version: u8,
    /// The host's ed25519 public key (its peer id derives from it).
    pub host_key: [u8; 32],
    /// Where the host can be dialed (full multiaddrs).
    pub addrs: Vec<String>,
    /// Sandbox workers idle now.
    pub free_slots: u32,
    /// Sandbox workers in all.
    pub workers: u32,
    /// Jobs the host would still accept before refusing `busy`.
    pub queue_room: u32,
    /// Measured fuel per second of one worker (what time limits convert at).
    pub fuel_per_sec: u64,
    /// Price per million fuel.
    pub price_per_mfuel: u64,
    /// Largest fuel budget accepted.
    pub max_fuel: u64,
    /// Largest memory limit accepted, in bytes.
    pub max_memory_bytes: u64,
    /// Current roles (see `biop2p roles`).
    pub roles: Vec<String>,
    /// Region of the host's hierarchical address (`region.cluster.tier`).
    pub region: String,
    /// Caste response thresholds per task class (cpu, memory, small), in
    /// [0, 1]: low means specialised in that class. Generalists: 0.5.
    pub thresholds: [f64; 3],
    /// Unix milliseconds when issued.
    pub issued_at_ms: u64,
    /// Unix milliseconds after which it must be forgotten.
    pub expires_at_ms: u64,
    /// The host relays for hosts behind NAT (circuit relay v2), within
    /// these limits; `None` when it does not (not confirmed reachable, or
    /// `[network.nat] relay_server = false`).
    pub relay: Option<RelayOffer>,
}

/// A relay's limits, as its adverts state them (`[network.nat] relay_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayOffer {
    /// Reservations held for others at once.
    pub max_reservations: u32,
    /// Circuits at once per peer.
    pub max_circuits_per_peer: u32,
    /// Seconds a circuit may last.
    pub circuit_secs: u64,
    /// Bytes a circuit may carry, both ways together.
    pub circuit_bytes: u64,
}

impl Advert {
    /// The host's peer id.
    pub fn peer_id(&self) -> Option<PeerId> {
        let pk = libp2p::identity::ed25519::PublicKey::try_from_bytes(&self.host_key).ok()?;
        Some(PeerId::from_public_key(&libp2p::identity::PublicKey::from(
            pk,
        )))
    }

    /// How long the advert says it lives, in ms (0 if inconsistent).
    pub fn ttl_ms(&self) -> u64 {
        self.expires_at_ms.saturating_sub(self.issued_at_ms)
    }

    /// Checks the bounds a well-behaved host keeps.
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.addrs.len() > MAX_ADVERT_ADDRS || self.addrs.iter().any(|a| a.len() > 256) {
            return Err("too many or too long addresses".into());
        }
        if self.roles.len() > MAX_ADVERT_ROLES || self.roles.iter().any(|r| r.len() > 32) {
            return Err("too many or too long roles".into());
        }
        if self.region.len() > 32 {
            return Err("region too long".into());
        }
        let ttl = self.ttl_ms();
        if ttl == 0 || ttl > MAX_ADVERT_TTL_MS {
            return Err(format!(
                "lifetime of {ttl} ms is not in 1..={MAX_ADVERT_TTL_MS}"
            ));
        }
        if !self
            .thresholds
            .iter()
            .all(|t| t.is_finite() && (0.0..=1.0).contains(t))
        {
            return Err("thresholds must be in [0, 1]".into());
        }
        if self.workers == 0 || self.free_slots > self.workers {
            return Err("inconsistent worker counts".into());
        }
        Ok(())
    }
}

/// An advert with the host's signature over its exact bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedAdvert {
    /// postcard encoding of an [`Advert`].
    pub body: Vec<u8>,
    /// ed25519 signature by `body.host_key` over `DOMAIN || body`.
    #[serde(with = "serde_big_array")]
    pub signature: [u8; 64],
}

impl SignedAdvert {
    /// Encodes and signs an advert.
    pub fn sign(advert: &Advert, key: &ed25519_dalek::SigningKey) -> Self {
        let body = postcard::to_stdvec(advert).expect("an advert always encodes");
        let signature = super::sign(key, DOMAIN, &body);
        SignedAdvert { body, signature }
    }

    /// The wire form (what is published on the gossip topic).
    pub fn to_bytes(&self) -> Vec<u8> {
        postcard::to_stdvec(self).expect("a signed advert always encodes")
    }

    /// Decodes wire bytes, checks size, signature and bounds. Expiry is the
    /// receiver's business (see `AdvertTable`), since clocks differ.
    pub fn decode_verified(bytes: &[u8]) -> Result<Advert, ProtoError> {
        if bytes.len() > MAX_ADVERT_BYTES {
            return Err(ProtoError::Invalid {
                what: "advert",
                reason: format!("{} bytes is over {MAX_ADVERT_BYTES}", bytes.len()),
            });
        }
        let signed: SignedAdvert =
            postcard::from_bytes(bytes).map_err(|source| ProtoError::Malformed {
                what: "signed advert",
                source,
            })?;
        let advert: Advert = super::decode(&signed.body, "advert", |b: &Advert| b.version)?;
        super::verify(
            &advert.host_key,
            DOMAIN,
            &signed.body,
            &signed.signature,
            "advert",
        )?;
        advert.check().map_err(|reason| ProtoError::Invalid {
            what: "advert",
            reason,
        })?;
        Ok(advert)
    }
}

/// The region part of a hierarchical address `region.cluster.tier`.
pub fn region_of(address: &str) -> String {
    address
        .split('.')
        .next()
        .unwrap_or("")
        .chars()
        .take(32)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::VERSION;

    fn advert(key: &ed25519_dalek::SigningKey) -> Advert {
        Advert {
            version: VERSION,
            host_key: key.verifying_key().to_bytes(),
            addrs: vec!["/ip4/127.0.0.1/tcp/1".into()],
            free_slots: 1,
            workers: 2,
            queue_room: 10,
            fuel_per_sec: 1_000_000,
            price_per_mfuel: 3,
            max_fuel: 1 << 40,
            max_memory_bytes: 1 << 30,
            roles: vec!["Young".into()],
            region: "001".into(),
            thresholds: [0.5; 3],
            relay: None,
            issued_at_ms: 1000,
            expires_at_ms: 16_000,
        }
    }

    #[test]
    fn signed_advert_round_trips_and_forgery_is_caught() {
        let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        let a = advert(&key);
        let bytes = SignedAdvert::sign(&a, &key).to_bytes();
        assert_eq!(SignedAdvert::decode_verified(&bytes).unwrap(), a);

        // A lower price signed by someone else under the host's key.
        let mut forged = a.clone();
        forged.price_per_mfuel = 0;
        let other = ed25519_dalek::SigningKey::from_bytes(&[8; 32]);
        let mut signed = SignedAdvert::sign(&forged, &other);
        signed.body = postcard::to_stdvec(&forged).unwrap();
        assert!(matches!(
            SignedAdvert::decode_verified(&signed.to_bytes()),
            Err(ProtoError::BadSignature(_))
        ));
        assert!(SignedAdvert::decode_verified(&bytes[..bytes.len() - 3]).is_err());
        assert!(SignedAdvert::decode_verified(&vec![0; MAX_ADVERT_BYTES + 1]).is_err());
    }

    #[test]
    fn unbounded_adverts_are_refused() {
        let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        let mut a = advert(&key);
        a.expires_at_ms = a.issued_at_ms + MAX_ADVERT_TTL_MS + 1;
        let bytes = SignedAdvert::sign(&a, &key).to_bytes();
        assert!(matches!(
            SignedAdvert::decode_verified(&bytes),
            Err(ProtoError::Invalid { .. })
        ));
        let mut a = advert(&key);
        a.addrs = vec!["/ip4/1.2.3.4/tcp/1".into(); MAX_ADVERT_ADDRS + 1];
        let bytes = SignedAdvert::sign(&a, &key).to_bytes();
        assert!(SignedAdvert::decode_verified(&bytes).is_err());
        assert_eq!(region_of("007.002.1"), "007");
    }
}
