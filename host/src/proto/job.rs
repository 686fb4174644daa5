//! Signed jobs: what a submitter asks a host to run.

use serde::{Deserialize, Serialize};

use super::{Hash, ProtoError};

/// Domain separation: a job signature can never be replayed as anything else.
const DOMAIN: &[u8] = b"biop2p/job/v1\0";

/// A job's id: blake3 of its signed bytes. Two different jobs never share an
/// id; the same job always has the same one.
pub type JobId = Hash;

/// What the submitter signs. The module and input are named by blake3 hash
/// (fetched separately and verified against it); everything that changes
/// what runs or what it may cost is here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSpec {
    /// Encoding version ([`VERSION`]).
    pub version: u8,
    /// The submitter's ed25519 public key (the signature is checked with it).
    pub submitter: [u8; 32],
    /// blake3 of the module bytes.
    pub module_hash: Hash,
    /// Length of the module in bytes (bounds the fetch before it starts).
    pub module_size: u64,
    /// blake3 of the input.
    pub input_hash: Hash,
    /// Length of the input in bytes.
    pub input_size: u64,
    /// The guest's argv after the program name.
    pub args: Vec<String>,
    /// Fuel budget.
    pub fuel: u64,
    /// Memory limit in bytes.
    pub memory_bytes: u64,
    /// Time limit, turned into a fuel cap at the host's rate.
    pub timeout_ms: Option<u64>,
    /// Mount a scratch directory.
    pub scratch: bool,
    /// NaN-canonicalizing engine.
    pub portable: bool,
    /// The most the submitter pays per million fuel. A host whose price is
    /// higher refuses (`price_too_low`).
    pub max_price_per_mfuel: u64,
    /// Random; a host never accepts the same (submitter, nonce) twice.
    pub nonce: [u8; 16],
    /// Unix seconds after which no host may start the job.
    pub expires_at: u64,
    /// Read-only data blobs (weights, a dataset shard), mounted at
    /// `/data/NAME` in the sandbox. Fetched and verified like the module;
    /// signed here so a host cannot run the job on other data unnoticed.
    pub data: Vec<DataRef>,
}

/// One read-only data blob of a job, named by hash like the module.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataRef {
    /// The file name under `/data` (see [`valid_data_name`]).
    pub name: String,
    /// blake3 of the bytes.
    pub hash: Hash,
    /// Length in bytes (bounds the fetch before it starts).
    pub size: u64,
}

/// Most data blobs one job may carry.
pub const MAX_DATA_BLOBS: usize = 16;

/// Whether `name` may name a file under `/data`: 1 to 64 characters of
/// `[A-Za-z0-9._-]`, not starting with a dot. No separators, so a name can
/// never reach outside the data directory.
pub fn valid_data_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A job with its signature over the exact encoded bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedJob {
    /// postcard encoding of a [`JobSpec`].
    pub spec: Vec<u8>,
    /// ed25519 signature by `spec.submitter` over `DOMAIN || spec`.
    #[serde(with = "serde_big_array")]
    pub signature: [u8; 64],
}

impl SignedJob {
    /// Encodes and signs `spec` (whose `submitter` must be `key`'s public key).
    pub fn sign(spec: &JobSpec, key: &ed25519_dalek::SigningKey) -> Self {
        let bytes = postcard::to_stdvec(spec).expect("a job spec always encodes");
        let signature = super::sign(key, DOMAIN, &bytes);
        SignedJob {
            spec: bytes,
            signature,
        }
    }

    /// The job's id.
    pub fn id(&self) -> JobId {
        *blake3::hash(&self.spec).as_bytes()
    }

    /// Decodes the spec and checks the signature against the key it names.
    pub fn verify(&self) -> Result<JobSpec, ProtoError> {
        let spec: JobSpec = super::decode(&self.spec, "job", |b: &JobSpec| b.version)?;
        super::verify(&spec.submitter, DOMAIN, &self.spec, &self.signature, "job")?;
        Ok(spec)
    }
}

/// Serde for `[u8; 64]` (serde derives arrays only up to 32).
pub(crate) mod serde_big_array {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8; 64], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 64], D::Error> {
        let v: &[u8] = <&[u8]>::deserialize(d).map_err(|_| serde::de::Error::custom("bytes"))?;
        v.try_into()
            .map_err(|_| serde::de::Error::invalid_length(v.len(), &"64 bytes"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::VERSION;

    fn spec(key: &ed25519_dalek::SigningKey) -> JobSpec {
        JobSpec {
            version: VERSION,
            submitter: key.verifying_key().to_bytes(),
            module_hash: [1; 32],
            module_size: 10,
            input_hash: [2; 32],
            input_size: 3,
            args: vec!["x".into()],
            fuel: 1000,
            memory_bytes: 1 << 20,
            timeout_ms: Some(5),
            scratch: false,
            portable: false,
            max_price_per_mfuel: 7,
            nonce: [9; 16],
            expires_at: 1_800_000_000,
            data: vec![DataRef {
                name: "weights".into(),
                hash: [8; 32],
                size: 4,
            }],
        }
    }

    #[test]
    fn signed_job_verifies_and_tampering_is_caught() {
        let key = ed25519_dalek::SigningKey::from_bytes(&[5; 32]);
        let job = SignedJob::sign(&spec(&key), &key);
        assert_eq!(job.verify().unwrap(), spec(&key));
        let mut tampered = job.clone();
        let last = tampered.spec.len() - 1;
        tampered.spec[last] ^= 1;
        assert!(matches!(
            tampered.verify(),
            Err(ProtoError::BadSignature(_)) | Err(ProtoError::Malformed { .. })
        ));
        let mut forged = job.clone();
        forged.signature[0] ^= 1;
        assert!(matches!(forged.verify(), Err(ProtoError::BadSignature(_))));
        // Signed by someone else than the key it names.
        let other = ed25519_dalek::SigningKey::from_bytes(&[6; 32]);
        let wrong = SignedJob {
            spec: job.spec.clone(),
            signature: SignedJob::sign(&spec(&key), &other).signature,
        };
        assert!(matches!(wrong.verify(), Err(ProtoError::BadSignature(_))));
        assert_ne!(job.id(), tampered.id());
    }

    #[test]
    fn data_names_cannot_leave_the_data_dir() {
        for ok in ["weights", "train.bin", "shard-0", "a_b"] {
            assert!(valid_data_name(ok), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            ".hidden",
            "a/b",
            "../x",
            "a\\b",
            "é",
            &"x".repeat(65),
        ] {
            assert!(!valid_data_name(bad), "{bad:?}");
        }
    }
}
