//! `/biop2p/role/1.0.0`: Young's exchange of tables.
//!
//! A submitter that has placed enough work publishes its Thermal trails (a
//! [`SignedTable`]) to hosts; a fresh submitter asks a few hosts for the
//! tables they carry and starts from their merge instead of cold (see
//! `node::young`). Submitters only dial out, so hosts carry the tables, as
//! they carry trust reports. A host never vouches for a table: it checks
//! only the signature and the bounds, and says how many settled entries it
//! holds with each publisher, which is what a reader weighs a publisher by
//! (a fresh key has paid nobody).

use serde::{Deserialize, Serialize};

use super::job::serde_big_array;
use super::{ProtoError, VERSION};

const DOMAIN: &[u8] = b"biop2p/table/v1\0";

/// Trails in one table at most (the publisher's strongest).
pub const MAX_TABLE_TRAILS: usize = 64;
/// Tables in one answer at most.
pub const MAX_TABLES_PER_ANSWER: usize = 16;
/// A peer id's bytes at most (an ed25519 identity multihash is 38).
const MAX_PEER_BYTES: usize = 64;

/// What a publisher signs: its trails over hosts as of `issued_at_ms`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableBody {
    /// Encoding version ([`VERSION`]).
    pub version: u8,
    /// The publisher's ed25519 key (a submitter's identity).
    pub publisher: [u8; 32],
    /// Unix ms when signed.
    pub issued_at_ms: u64,
    /// Answers the publisher compared to learn these trails (what elders
    /// are chosen by).
    pub experience: u64,
    /// (host peer id bytes, trail level), at most [`MAX_TABLE_TRAILS`].
    pub trails: Vec<(Vec<u8>, f64)>,
}

/// A table with its publisher's signature over its exact bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedTable {
    /// postcard encoding of a [`TableBody`].
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
    /// ed25519 signature by `body.publisher` over `DOMAIN || body`.
    #[serde(with = "serde_big_array")]
    pub signature: [u8; 64],
}

impl SignedTable {
    /// Encodes and signs a table.
    pub fn sign(body: &TableBody, key: &ed25519_dalek::SigningKey) -> Self {
        let bytes = postcard::to_stdvec(body).expect("a table always encodes");
        let signature = super::sign(key, DOMAIN, &bytes);
        SignedTable {
            body: bytes,
            signature,
        }
    }

    /// Decodes, checks the bounds and the signature under the key the body
    /// names.
    pub fn verify(&self) -> Result<TableBody, ProtoError> {
        let body: TableBody = super::decode(&self.body, "table", |b: &TableBody| b.version)?;
        let invalid = |reason: String| ProtoError::Invalid {
            what: "table",
            reason,
        };
        if body.trails.len() > MAX_TABLE_TRAILS {
            return Err(invalid(format!(
                "{} trails, at most {MAX_TABLE_TRAILS}",
                body.trails.len()
            )));
        }
        if let Some((p, l)) = body
            .trails
            .iter()
            .find(|(p, l)| p.len() > MAX_PEER_BYTES || !l.is_finite() || *l < 0.0)
        {
            return Err(invalid(format!(
                "a trail of {} peer bytes at level {l}",
                p.len()
            )));
        }
        super::verify(
            &body.publisher,
            DOMAIN,
            &self.body,
            &self.signature,
            "table",
        )?;
        Ok(body)
    }
}

/// `/biop2p/role/1.0.0` requests.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum RoleRequest {
    /// The tables this host carries, newest first (at most
    /// [`MAX_TABLES_PER_ANSWER`]).
    Tables,
    /// Carry this table for other submitters (it replaces the publisher's
    /// older one).
    Publish {
        /// The table.
        table: SignedTable,
    },
}

/// A carried table with what the carrier knows of its publisher.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CarriedTable {
    /// The table as published.
    pub table: SignedTable,
    /// Settled ledger entries the carrier holds with the publisher.
    pub settled_entries: u64,
}

/// `/biop2p/role/1.0.0` responses.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum RoleResponse {
    /// Answer to [`RoleRequest::Tables`].
    Tables {
        /// The carrier's role (`caste`, `havoc`, ...).
        role: String,
        /// The carrier's own Caste thresholds.
        thresholds: [f64; 3],
        /// The tables it carries.
        tables: Vec<CarriedTable>,
    },
    /// Answer to [`RoleRequest::Publish`]: kept (`new` false when it had
    /// that table or a newer one of the publisher already).
    Kept {
        /// Whether this table is now carried and was not before.
        new: bool,
    },
    /// Refused, with a stable reason (`bad_signature`, `malformed`,
    /// `expired`, `too_large`, `busy`) and words for people.
    Refused {
        /// The stable reason.
        reason: String,
        /// Why, for people.
        detail: String,
    },
}

/// Checks a table as a carrier or a reader does: well-formed, signed, and
/// issued neither in the future (beyond `skew_ms`) nor more than `max_age_ms`
/// before `now_ms`. The error is the stable refusal reason and its detail.
pub fn check_table(
    t: &SignedTable,
    now_ms: u64,
    skew_ms: u64,
    max_age_ms: u64,
) -> Result<TableBody, (&'static str, String)> {
    let body = t.verify().map_err(|e| match e {
        ProtoError::BadSignature(_) | ProtoError::BadKey(_) => ("bad_signature", e.to_string()),
        ProtoError::Invalid { .. } => ("too_large", e.to_string()),
        _ => ("malformed", e.to_string()),
    })?;
    if body.issued_at_ms > now_ms.saturating_add(skew_ms)
        || body.issued_at_ms.saturating_add(max_age_ms) < now_ms
    {
        return Err((
            "expired",
            format!(
                "issued at {} ms, now is {now_ms} ms: outside the {max_age_ms} ms a table is kept",
                body.issued_at_ms
            ),
        ));
    }
    debug_assert_eq!(body.version, VERSION);
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(key: &ed25519_dalek::SigningKey, trails: usize) -> TableBody {
        TableBody {
            version: VERSION,
            publisher: key.verifying_key().to_bytes(),
            issued_at_ms: 1_000,
            experience: 30,
            trails: (0..trails).map(|i| (vec![i as u8; 38], 1.5)).collect(),
        }
    }

    #[test]
    fn a_table_verifies_and_any_change_or_excess_is_refused() {
        let key = ed25519_dalek::SigningKey::from_bytes(&[3; 32]);
        let t = SignedTable::sign(&body(&key, 4), &key);
        assert_eq!(check_table(&t, 1_000, 0, 10).unwrap().trails.len(), 4);

        let mut forged = t.clone();
        *forged.body.last_mut().unwrap() ^= 1;
        assert!(check_table(&forged, 1_000, 0, 10).is_err());
        let mut resigned = t.clone();
        resigned.signature[0] ^= 1;
        assert_eq!(
            check_table(&resigned, 1_000, 0, 10).unwrap_err().0,
            "bad_signature"
        );

        let big = SignedTable::sign(&body(&key, MAX_TABLE_TRAILS + 1), &key);
        assert_eq!(check_table(&big, 1_000, 0, 10).unwrap_err().0, "too_large");
        let mut nan = body(&key, 1);
        nan.trails[0].1 = f64::NAN;
        let nan = SignedTable::sign(&nan, &key);
        assert_eq!(check_table(&nan, 1_000, 0, 10).unwrap_err().0, "too_large");

        assert_eq!(check_table(&t, 1_011, 0, 10).unwrap_err().0, "expired");
        assert_eq!(check_table(&t, 990, 10, 10).unwrap().experience, 30);
        assert_eq!(check_table(&t, 989, 0, 10).unwrap_err().0, "expired");
        let garbage = SignedTable {
            body: vec![0xff; 5],
            signature: [0; 64],
        };
        assert_eq!(
            check_table(&garbage, 1_000, 0, 10).unwrap_err().0,
            "malformed"
        );
    }
}
