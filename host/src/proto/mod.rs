//! The wire protocol: signed jobs, signed receipts, and the request and
//! response messages of `/biop2p/job/1.0.0` and `/biop2p/blob/1.0.0`.
//!
//! Pure data and cryptography, no IO. Signed objects carry the exact bytes
//! that were signed (postcard, a deterministic encoding), so the signature
//! covers exactly what the host will run and what the submitter will check;
//! nobody re-encodes a struct and hopes for the same bytes.

mod acceptance;
mod advert;
mod job;
mod messages;
mod note;
mod receipt;
mod role;
mod statement;

pub use acceptance::{AcceptanceBody, SettledEntry, SignedAcceptance, receipt_hash};
pub use advert::{
    Advert, MAX_ADVERT_ADDRS, MAX_ADVERT_BYTES, MAX_ADVERT_TTL_MS, RelayOffer, SignedAdvert,
    region_of,
};
pub use job::{DataRef, JobId, JobSpec, MAX_DATA_BLOBS, SignedJob, valid_data_name};
pub use messages::{
    BlobRequest, BlobResponse, BoardItem, InlineBlob, JobRequest, JobResponse, JobState,
    RefuseReason,
};
pub use note::{NoteAcceptanceBody, NoteBody, NotedEntry, SignedNote, SignedNoteAcceptance};
pub use receipt::{ReceiptBody, ReceiptOutcome, SignedReceipt};
pub use role::{
    CarriedTable, MAX_TABLE_TRAILS, MAX_TABLES_PER_ANSWER, RoleRequest, RoleResponse, SignedTable,
    TableBody, check_table,
};
pub use statement::{SignedStatement, StatementBody};

/// A blake3 hash.
pub type Hash = [u8; 32];

/// Errors of decoding and verifying protocol objects.
#[derive(Debug, thiserror::Error)]
pub enum ProtoError {
    /// The bytes are not a valid encoding of the expected object.
    #[error("malformed {what}: {source}")]
    Malformed {
        /// What was being decoded.
        what: &'static str,
        /// The decoder's complaint.
        source: postcard::Error,
    },
    /// The signature does not verify under the claimed key.
    #[error("bad signature on {0}")]
    BadSignature(&'static str),
    /// A public key is not a valid ed25519 point.
    #[error("invalid public key in {0}")]
    BadKey(&'static str),
    /// The object is of a protocol version this build does not speak.
    #[error("unsupported {what} version {version}")]
    Version {
        /// What was being decoded.
        what: &'static str,
        /// The version found.
        version: u8,
    },
    /// Well-formed and signed, but outside the protocol's bounds.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// What was being checked.
        what: &'static str,
        /// Which bound it broke.
        reason: String,
    },
}

/// Current version of signed jobs and receipts (2: jobs carry read-only
/// data blobs and receipts their hashes).
pub const VERSION: u8 = 2;

/// Lowercase hex of a hash (how ids and hashes are shown to people).
pub fn hex(h: &Hash) -> String {
    blake3::Hash::from(*h).to_hex().to_string()
}

/// Parses a 64-character hex hash.
pub fn parse_hex(s: &str) -> Option<Hash> {
    blake3::Hash::from_hex(s.trim()).ok().map(|h| *h.as_bytes())
}

fn sign(key: &ed25519_dalek::SigningKey, domain: &[u8], body: &[u8]) -> [u8; 64] {
    use ed25519_dalek::Signer;
    let mut msg = Vec::with_capacity(domain.len() + body.len());
    msg.extend_from_slice(domain);
    msg.extend_from_slice(body);
    key.sign(&msg).to_bytes()
}

fn verify(
    key: &[u8; 32],
    domain: &[u8],
    body: &[u8],
    sig: &[u8; 64],
    what: &'static str,
) -> Result<(), ProtoError> {
    let vk = ed25519_dalek::VerifyingKey::from_bytes(key).map_err(|_| ProtoError::BadKey(what))?;
    let mut msg = Vec::with_capacity(domain.len() + body.len());
    msg.extend_from_slice(domain);
    msg.extend_from_slice(body);
    vk.verify_strict(&msg, &ed25519_dalek::Signature::from_bytes(sig))
        .map_err(|_| ProtoError::BadSignature(what))
}

/// Decodes a signed object's body and checks its encoding version, before
/// its signature is checked under the key the body names.
fn decode<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    what: &'static str,
    version: impl Fn(&T) -> u8,
) -> Result<T, ProtoError> {
    let body: T =
        postcard::from_bytes(bytes).map_err(|source| ProtoError::Malformed { what, source })?;
    match version(&body) {
        VERSION => Ok(body),
        v => Err(ProtoError::Version { what, version: v }),
    }
}
