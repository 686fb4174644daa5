//! Durable state in sled (and content-addressed blob files beside it). This
//! module is the only user of sled: everything else sees typed records.

mod blobs;
mod host;
mod submitter;

pub use blobs::BlobStore;
pub use host::{HostStore, JobRecord, LedgerRecord, StoredReport, StoredState};
pub use submitter::{BatchDone, BatchEntry, BatchJob, SubmitRecord, SubmitterStore};

/// Errors of the stores.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed.
    #[error("database: {0}")]
    Db(#[from] sled::Error),
    /// A file operation failed.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// A record did not decode (a bug or a corrupted file).
    #[error("corrupt record: {0}")]
    Corrupt(#[from] postcard::Error),
    /// The database was still locked long after its last handle was
    /// dropped: something still holds it (a bug), and a new open of the
    /// same directory would fail.
    #[error("database {} is still locked after close", .0.display())]
    StillOpen(std::path::PathBuf),
}

fn encode<T: serde::Serialize>(v: &T) -> Vec<u8> {
    postcard::to_stdvec(v).expect("records always encode")
}

fn decode<T: serde::de::DeserializeOwned>(b: &[u8]) -> Result<T, StoreError> {
    Ok(postcard::from_bytes(b)?)
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
