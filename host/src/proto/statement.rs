//! Signed balance statements: one party's summary of its settled entries
//! with another (count, total, an order-independent digest of each job and
//! amount). Two parties net by exchanging them; signed, so a statement that
//! disagrees with the receiver's own entries is evidence the sender cannot
//! deny, never something merged.

use serde::{Deserialize, Serialize};

use super::ProtoError;
use super::job::serde_big_array;

const DOMAIN: &[u8] = b"biop2p/statement/v1\0";

/// What a party signs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatementBody {
    /// Encoding version ([`VERSION`]).
    pub version: u8,
    /// The signer's ed25519 key.
    pub from: [u8; 32],
    /// The counterparty the statement is about.
    pub with: [u8; 32],
    /// Settled entries between the two.
    pub entries: u64,
    /// Their total value.
    pub total: u64,
    /// Order-independent digest of every (job, amount).
    pub digest: [u8; 32],
    /// Unix ms when signed.
    pub issued_at_ms: u64,
}

/// A statement with its signer's signature over its exact bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedStatement {
    /// postcard encoding of a [`StatementBody`].
    pub body: Vec<u8>,
    /// ed25519 signature by `body.from` over `DOMAIN || body`.
    #[serde(with = "serde_big_array")]
    pub signature: [u8; 64],
}

impl SignedStatement {
    /// Encodes and signs a statement.
    pub fn sign(body: &StatementBody, key: &ed25519_dalek::SigningKey) -> Self {
        let bytes = postcard::to_stdvec(body).expect("a statement always encodes");
        let signature = super::sign(key, DOMAIN, &bytes);
        SignedStatement {
            body: bytes,
            signature,
        }
    }

    /// Decodes and checks the signature against the key the body names.
    pub fn verify(&self) -> Result<StatementBody, ProtoError> {
        let body: StatementBody =
            super::decode(&self.body, "statement", |b: &StatementBody| b.version)?;
        super::verify(&body.from, DOMAIN, &self.body, &self.signature, "statement")?;
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::VERSION;

    fn body(from: [u8; 32]) -> StatementBody {
        StatementBody {
            version: VERSION,
            from,
            with: [7; 32],
            entries: 3,
            total: 42,
            digest: [9; 32],
            issued_at_ms: 1,
        }
    }

    #[test]
    fn a_signed_statement_verifies_and_a_changed_one_does_not() {
        let key = ed25519_dalek::SigningKey::from_bytes(&[1; 32]);
        let b = body(key.verifying_key().to_bytes());
        let s = SignedStatement::sign(&b, &key);
        assert_eq!(s.verify().unwrap(), b);
        let mut forged = b.clone();
        forged.total = 41;
        let mut t = s.clone();
        t.body = postcard::to_stdvec(&forged).unwrap();
        assert!(t.verify().is_err(), "a changed total must not verify");
        // Signed by another key than the one it names.
        let other = ed25519_dalek::SigningKey::from_bytes(&[2; 32]);
        assert!(SignedStatement::sign(&b, &other).verify().is_err());
    }
}
