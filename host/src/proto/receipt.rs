//! Signed receipts: what a host vouches it ran, and what it cost.

use libp2p::PeerId;
use serde::{Deserialize, Serialize};

use super::job::serde_big_array;
use super::{Hash, JobId, ProtoError};

const DOMAIN: &[u8] = b"biop2p/receipt/v1\0";

/// How the task ended, as the host saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReceiptOutcome {
    /// Output produced; its hash is `output_hash`.
    Ok,
    /// The sandbox's stable error kind (`fuel_exhausted`, `trap`, ...).
    Error(String),
}

/// What the host signs. It binds the job, the host, what ran on what, what
/// came out, the thermal counters and the price, so that any of them can be
/// checked against replicas and the job later.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptBody {
    /// Encoding version.
    pub version: u8,
    /// The job this receipt is for.
    pub job_id: JobId,
    /// The host's ed25519 public key; its libp2p peer id derives from it.
    pub host_key: [u8; 32],
    /// blake3 of the module that ran.
    pub module_hash: Hash,
    /// blake3 of the input.
    pub input_hash: Hash,
    /// blake3 of the output (of nothing, on failure).
    pub output_hash: Hash,
    /// Fuel used.
    pub fuel_used: u64,
    /// Peak linear memory in bytes.
    pub peak_memory_bytes: u64,
    /// Wall time in microseconds.
    pub wall_us: u64,
    /// Price charged, in the market's units: fuel used × price per million
    /// fuel, rounded up.
    pub price: u64,
    /// Unix seconds when the task finished.
    pub timestamp: u64,
    /// The host's architecture (replicas are compared within one).
    pub arch: String,
    /// How the task ended.
    pub outcome: ReceiptOutcome,
    /// blake3 of each read-only data blob the task had mounted, in the
    /// job's order.
    pub data_hashes: Vec<Hash>,
}

impl ReceiptBody {
    /// The host's libp2p peer id.
    pub fn host_peer_id(&self) -> Option<PeerId> {
        let pk = libp2p::identity::ed25519::PublicKey::try_from_bytes(&self.host_key).ok()?;
        Some(PeerId::from_public_key(&libp2p::identity::PublicKey::from(
            pk,
        )))
    }
}

/// A receipt with the host's signature over its exact bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedReceipt {
    /// postcard encoding of a [`ReceiptBody`].
    pub body: Vec<u8>,
    /// ed25519 signature by `body.host_key` over `DOMAIN || body`.
    #[serde(with = "serde_big_array")]
    pub signature: [u8; 64],
}

impl SignedReceipt {
    /// Encodes and signs a receipt.
    pub fn sign(body: &ReceiptBody, key: &ed25519_dalek::SigningKey) -> Self {
        let bytes = postcard::to_stdvec(body).expect("a receipt always encodes");
        let signature = super::sign(key, DOMAIN, &bytes);
        SignedReceipt {
            body: bytes,
            signature,
        }
    }

    /// Decodes and checks the signature against the key the body names.
    /// Callers must still check that the key is the host they asked, the
    /// job is theirs, and the output matches: see `client::verify_receipt`.
    pub fn verify(&self) -> Result<ReceiptBody, ProtoError> {
        let body: ReceiptBody = super::decode(&self.body, "receipt", |b: &ReceiptBody| b.version)?;
        super::verify(
            &body.host_key,
            DOMAIN,
            &self.body,
            &self.signature,
            "receipt",
        )?;
        Ok(body)
    }
}
