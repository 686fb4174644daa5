//! Signed acceptances: the submitter's word, after it verified a result
//! (the receipt, and the quorum where there were replicas), that it owes
//! the host a price for it. A receipt plus its acceptance is one settled
//! entry, and it proves itself: anyone holding it checks both signatures
//! and the bindings between them, with no trust in either party.

use serde::{Deserialize, Serialize};

use super::job::serde_big_array;
use super::{Hash, JobId, ProtoError, ReceiptBody, SignedReceipt};

const DOMAIN: &[u8] = b"biop2p/acceptance/v1\0";

/// What the submitter signs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcceptanceBody {
    /// Encoding version ([`VERSION`]).
    pub version: u8,
    /// The submitter's ed25519 key: the key that signed the job.
    pub submitter: [u8; 32],
    /// The host's key, as in the receipt.
    pub host_key: [u8; 32],
    /// The job (as in the receipt).
    pub job_id: JobId,
    /// blake3 of the signed receipt's body: which receipt is accepted.
    pub receipt_hash: Hash,
    /// Fuel the receipt claims.
    pub claimed_fuel: u64,
    /// Fuel paid for: the quorum's deterministic count (at most the claim).
    pub agreed_fuel: u64,
    /// What the submitter owes for it, by the price rule
    /// (`security::settlement::amount`).
    pub price: u64,
    /// Unix ms when signed.
    pub issued_at_ms: u64,
}

/// An acceptance with the submitter's signature over its exact bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedAcceptance {
    /// postcard encoding of an [`AcceptanceBody`].
    pub body: Vec<u8>,
    /// ed25519 signature by `body.submitter` over `DOMAIN || body`.
    #[serde(with = "serde_big_array")]
    pub signature: [u8; 64],
}

impl SignedAcceptance {
    /// Encodes and signs an acceptance.
    pub fn sign(body: &AcceptanceBody, key: &ed25519_dalek::SigningKey) -> Self {
        let bytes = postcard::to_stdvec(body).expect("an acceptance always encodes");
        let signature = super::sign(key, DOMAIN, &bytes);
        SignedAcceptance {
            body: bytes,
            signature,
        }
    }

    /// Decodes and checks the signature against the key the body names.
    pub fn verify(&self) -> Result<AcceptanceBody, ProtoError> {
        let body: AcceptanceBody =
            super::decode(&self.body, "acceptance", |b: &AcceptanceBody| b.version)?;
        super::verify(
            &body.submitter,
            DOMAIN,
            &self.body,
            &self.signature,
            "acceptance",
        )?;
        Ok(body)
    }
}

/// Which receipt an acceptance names: blake3 of its signed body.
pub fn receipt_hash(r: &SignedReceipt) -> Hash {
    *blake3::hash(&r.body).as_bytes()
}

/// A receipt and its acceptance: one settled ledger entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettledEntry {
    /// The host's signed receipt.
    pub receipt: SignedReceipt,
    /// The submitter's signed acceptance of it.
    pub acceptance: SignedAcceptance,
}

impl SettledEntry {
    /// Checks both signatures and that the acceptance names this receipt:
    /// its hash, job, host and claimed fuel, and agrees to no more fuel
    /// than claimed. Whether the submitter is the job's (and the price
    /// follows the rule) needs the job: the host checks that.
    pub fn check(&self) -> Result<(ReceiptBody, AcceptanceBody), ProtoError> {
        let r = self.receipt.verify()?;
        let a = self.acceptance.verify()?;
        let bad = |reason: &str| ProtoError::Invalid {
            what: "settled entry",
            reason: reason.to_string(),
        };
        if a.receipt_hash != receipt_hash(&self.receipt) {
            return Err(bad("the acceptance names another receipt"));
        }
        if a.job_id != r.job_id || a.host_key != r.host_key {
            return Err(bad("the acceptance names another job or host"));
        }
        if a.claimed_fuel != r.fuel_used || a.agreed_fuel > r.fuel_used {
            return Err(bad("the acceptance's fuel does not match the receipt"));
        }
        Ok((r, a))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::ReceiptOutcome;
    use crate::proto::VERSION;

    fn receipt(host: &ed25519_dalek::SigningKey) -> SignedReceipt {
        SignedReceipt::sign(
            &ReceiptBody {
                version: VERSION,
                job_id: [3; 32],
                host_key: host.verifying_key().to_bytes(),
                module_hash: [1; 32],
                input_hash: [2; 32],
                output_hash: [4; 32],
                fuel_used: 2_000_000,
                peak_memory_bytes: 65536,
                wall_us: 10,
                price: 2,
                timestamp: 1,
                arch: "x86_64".into(),
                outcome: ReceiptOutcome::Ok,
                data_hashes: Vec::new(),
            },
            host,
        )
    }

    #[test]
    fn a_settled_entry_proves_itself_and_forgeries_fail() {
        let host = ed25519_dalek::SigningKey::from_bytes(&[1; 32]);
        let sub = ed25519_dalek::SigningKey::from_bytes(&[2; 32]);
        let r = receipt(&host);
        let body = AcceptanceBody {
            version: VERSION,
            submitter: sub.verifying_key().to_bytes(),
            host_key: host.verifying_key().to_bytes(),
            job_id: [3; 32],
            receipt_hash: receipt_hash(&r),
            claimed_fuel: 2_000_000,
            agreed_fuel: 2_000_000,
            price: 2,
            issued_at_ms: 5,
        };
        let e = SettledEntry {
            receipt: r.clone(),
            acceptance: SignedAcceptance::sign(&body, &sub),
        };
        let (rb, ab) = e.check().unwrap();
        assert_eq!((rb.price, ab.price), (2, 2));

        // Signed by someone else than the submitter it names.
        let other = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
        let forged = SettledEntry {
            receipt: r.clone(),
            acceptance: SignedAcceptance {
                body: e.acceptance.body.clone(),
                signature: SignedAcceptance::sign(&body, &other).signature,
            },
        };
        assert!(matches!(forged.check(), Err(ProtoError::BadSignature(_))));
        // More fuel agreed than claimed.
        let greedy = AcceptanceBody {
            agreed_fuel: 3_000_000,
            ..body.clone()
        };
        let e2 = SettledEntry {
            receipt: r.clone(),
            acceptance: SignedAcceptance::sign(&greedy, &sub),
        };
        assert!(matches!(e2.check(), Err(ProtoError::Invalid { .. })));
        // Another receipt.
        let wrong = AcceptanceBody {
            receipt_hash: [0; 32],
            ..body
        };
        let e3 = SettledEntry {
            receipt: r,
            acceptance: SignedAcceptance::sign(&wrong, &sub),
        };
        assert!(matches!(e3.check(), Err(ProtoError::Invalid { .. })));
    }
}
