//! Debit notes: how a long task is paid as it runs, so that a host risks at
//! most one note's worth of work on a submitter that stops paying.
//!
//! Every `every` fuel of a task past the host's note interval the worker
//! pauses (inside the meter's `sync`) and the host signs a [`NoteBody`]:
//! the work done so far, cumulative, at the host's rate. The submitter
//! checks it against its own job (its key, the fuel cap, the quoted rate)
//! and signs a [`NoteAcceptanceBody`] naming that exact note; only then
//! does the worker go on. A note plus its acceptance is a [`NotedEntry`]:
//! like a settled entry it proves itself, and it is what the ledger books
//! for a job that ends without a final acceptance (the submitter stopped
//! accepting). A job that completes is settled as usual, and its final
//! acceptance supersedes its notes: one entry per job, never two.

use serde::{Deserialize, Serialize};

use super::job::serde_big_array;
use super::{Hash, JobId, ProtoError, VERSION};

const NOTE_DOMAIN: &[u8] = b"biop2p/debit-note/v1\0";
const ACCEPT_DOMAIN: &[u8] = b"biop2p/note-acceptance/v1\0";

/// What the host signs at a note boundary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoteBody {
    /// Encoding version ([`VERSION`]).
    pub version: u8,
    /// The host's ed25519 key.
    pub host_key: [u8; 32],
    /// The job's submitter (the key that signed the job).
    pub submitter: [u8; 32],
    /// The job.
    pub job_id: JobId,
    /// 1 for the first note of the job, then 2, 3, ...
    pub seq: u32,
    /// Fuel done so far: `seq` × the host's note interval.
    pub fuel: u64,
    /// What that fuel costs at the host's rate, rounded up as receipts are.
    pub price: u64,
    /// Unix ms when signed.
    pub issued_at_ms: u64,
}

/// A note with the host's signature over its exact bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedNote {
    /// postcard encoding of a [`NoteBody`].
    pub body: Vec<u8>,
    /// ed25519 signature by `body.host_key` over `DOMAIN || body`.
    #[serde(with = "serde_big_array")]
    pub signature: [u8; 64],
}

/// What the submitter signs to accept a note.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoteAcceptanceBody {
    /// Encoding version ([`VERSION`]).
    pub version: u8,
    /// The submitter's key (the job's).
    pub submitter: [u8; 32],
    /// The host's key, as in the note.
    pub host_key: [u8; 32],
    /// The job.
    pub job_id: JobId,
    /// Which note.
    pub seq: u32,
    /// blake3 of the signed note's body.
    pub note_hash: Hash,
    /// The note's fuel and price, restated.
    pub fuel: u64,
    /// What the submitter acknowledges it owes so far.
    pub price: u64,
    /// Unix ms when signed.
    pub issued_at_ms: u64,
}

/// A note acceptance with the submitter's signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedNoteAcceptance {
    /// postcard encoding of a [`NoteAcceptanceBody`].
    pub body: Vec<u8>,
    /// ed25519 signature by `body.submitter` over `DOMAIN || body`.
    #[serde(with = "serde_big_array")]
    pub signature: [u8; 64],
}

/// A note and its acceptance: the submitter's signed word that it owes the
/// host `price` for the first `fuel` of the job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotedEntry {
    /// The host's note.
    pub note: SignedNote,
    /// The submitter's acceptance of it.
    pub acceptance: SignedNoteAcceptance,
}

impl SignedNote {
    /// Encodes and signs a note with the host's key.
    pub fn sign(body: &NoteBody, key: &ed25519_dalek::SigningKey) -> Self {
        let bytes = postcard::to_stdvec(body).expect("a note always encodes");
        SignedNote {
            signature: super::sign(key, NOTE_DOMAIN, &bytes),
            body: bytes,
        }
    }

    /// Decodes and checks the host's signature.
    pub fn verify(&self) -> Result<NoteBody, ProtoError> {
        let body: NoteBody = super::decode(&self.body, "debit note", |b: &NoteBody| b.version)?;
        super::verify(
            &body.host_key,
            NOTE_DOMAIN,
            &self.body,
            &self.signature,
            "debit note",
        )?;
        Ok(body)
    }

    /// Which note an acceptance names: blake3 of the signed body.
    pub fn hash(&self) -> Hash {
        *blake3::hash(&self.body).as_bytes()
    }

    /// The submitter's acceptance of this note (whose body is `n`).
    pub fn accept(
        &self,
        n: &NoteBody,
        key: &ed25519_dalek::SigningKey,
        now_ms: u64,
    ) -> SignedNoteAcceptance {
        let body = NoteAcceptanceBody {
            version: VERSION,
            submitter: key.verifying_key().to_bytes(),
            host_key: n.host_key,
            job_id: n.job_id,
            seq: n.seq,
            note_hash: self.hash(),
            fuel: n.fuel,
            price: n.price,
            issued_at_ms: now_ms,
        };
        let bytes = postcard::to_stdvec(&body).expect("an acceptance always encodes");
        SignedNoteAcceptance {
            signature: super::sign(key, ACCEPT_DOMAIN, &bytes),
            body: bytes,
        }
    }
}

impl SignedNoteAcceptance {
    /// Decodes and checks the submitter's signature.
    pub fn verify(&self) -> Result<NoteAcceptanceBody, ProtoError> {
        let body: NoteAcceptanceBody =
            super::decode(&self.body, "note acceptance", |b: &NoteAcceptanceBody| {
                b.version
            })?;
        super::verify(
            &body.submitter,
            ACCEPT_DOMAIN,
            &self.body,
            &self.signature,
            "note acceptance",
        )?;
        Ok(body)
    }
}

impl NotedEntry {
    /// Checks both signatures and that the acceptance restates this very
    /// note (hash, job, host, submitter, seq, fuel, price). Whether the
    /// submitter is the job's and the price follows the host's rate needs
    /// the job: the host checks that.
    pub fn check(&self) -> Result<(NoteBody, NoteAcceptanceBody), ProtoError> {
        let n = self.note.verify()?;
        let a = self.acceptance.verify()?;
        let same = a.note_hash == self.note.hash()
            && a.job_id == n.job_id
            && a.host_key == n.host_key
            && a.submitter == n.submitter
            && a.seq == n.seq
            && a.fuel == n.fuel
            && a.price == n.price;
        if !same {
            return Err(ProtoError::Invalid {
                what: "noted entry",
                reason: "the acceptance does not restate this note".into(),
            });
        }
        Ok((n, a))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(host: &ed25519_dalek::SigningKey, sub: [u8; 32]) -> (NoteBody, SignedNote) {
        let b = NoteBody {
            version: VERSION,
            host_key: host.verifying_key().to_bytes(),
            submitter: sub,
            job_id: [3; 32],
            seq: 2,
            fuel: 2_000_000,
            price: 4,
            issued_at_ms: 1,
        };
        let s = SignedNote::sign(&b, host);
        (b, s)
    }

    #[test]
    fn a_noted_entry_proves_itself_and_a_changed_one_does_not() {
        let host = ed25519_dalek::SigningKey::from_bytes(&[1; 32]);
        let sub = ed25519_dalek::SigningKey::from_bytes(&[2; 32]);
        let (b, n) = note(&host, sub.verifying_key().to_bytes());
        assert_eq!(n.verify().unwrap(), b);
        let e = NotedEntry {
            acceptance: n.accept(&b, &sub, 5),
            note: n.clone(),
        };
        let (nb, ab) = e.check().unwrap();
        assert_eq!((nb.price, ab.price, ab.seq), (4, 4, 2));

        // The host raises the price after acceptance: the hash no longer
        // matches, and its signature is over other bytes anyway.
        let mut dearer = b.clone();
        dearer.price = 40;
        let forged = NotedEntry {
            note: SignedNote::sign(&dearer, &host),
            acceptance: e.acceptance.clone(),
        };
        assert!(matches!(forged.check(), Err(ProtoError::Invalid { .. })));
        // Accepted by someone other than the note's submitter.
        let other = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
        let wrong = NotedEntry {
            acceptance: n.accept(&b, &other, 5),
            note: n.clone(),
        };
        assert!(matches!(wrong.check(), Err(ProtoError::Invalid { .. })));
        // A note signed by another key than the host it names.
        let mut t = n;
        t.signature = SignedNote::sign(&b, &other).signature;
        assert!(matches!(t.verify(), Err(ProtoError::BadSignature(_))));
    }
}
