//! The host's durable state: accepted jobs, seen nonces, results.
//!
//! A job is written (and flushed by the caller) before the host acknowledges
//! it; on start, every job not yet finished is run again. Nonces are kept
//! until their job's expiry, so a replay is refused even after a restart.

use serde::{Deserialize, Serialize};

use super::{StoreError, decode, encode};
use crate::proto::{Hash, JobId, JobResponse, SignedJob};

/// Where a stored job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StoredState {
    /// Accepted, not finished. (Running is not stored: after a crash a
    /// running job is simply queued again.)
    Queued,
    /// Finished; the result is in the results tree.
    Finished,
}

/// An accepted job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobRecord {
    /// The job as signed.
    pub job: SignedJob,
    /// The submitter's libp2p peer id (bytes).
    pub submitter_peer: Vec<u8>,
    /// Where it is.
    pub state: StoredState,
    /// Unix seconds of acceptance.
    pub accepted_at: u64,
    /// The job's expiry (kept to collect old records).
    pub expires_at: u64,
}

/// The host's database.
#[derive(Clone)]
pub struct HostStore {
    db: sled::Db,
    jobs: sled::Tree,
    nonces: sled::Tree,
    results: sled::Tree,
}

/// Results are kept this long after their job's expiry for late collectors.
pub const RESULT_RETENTION_SECS: u64 = 7 * 24 * 3600;

impl HostStore {
    /// Opens (creating) the database in `dir`.
    pub fn open(dir: &std::path::Path) -> Result<Self, StoreError> {
        let db = sled::Config::new()
            .path(dir)
            .mode(sled::Mode::HighThroughput)
            .open()?;
        Ok(HostStore {
            jobs: db.open_tree("jobs")?,
            nonces: db.open_tree("nonces")?,
            results: db.open_tree("results")?,
            db,
        })
    }

    fn nonce_key(submitter: &[u8; 32], nonce: &[u8; 16]) -> Vec<u8> {
        let mut k = submitter.to_vec();
        k.extend_from_slice(nonce);
        k
    }

    /// Whether this (submitter, nonce) was accepted before.
    pub fn nonce_seen(&self, submitter: &[u8; 32], nonce: &[u8; 16]) -> Result<bool, StoreError> {
        Ok(self
            .nonces
            .contains_key(Self::nonce_key(submitter, nonce))?)
    }

    /// Records an accepted job and its nonce together. Returns `false` (and
    /// writes nothing) if the nonce was taken meanwhile. Call [`Self::flush`]
    /// before acknowledging.
    pub fn accept(
        &self,
        job_id: &JobId,
        record: &JobRecord,
        submitter: &[u8; 32],
        nonce: &[u8; 16],
    ) -> Result<bool, StoreError> {
        use sled::Transactional;
        let nk = Self::nonce_key(submitter, nonce);
        let rec = encode(record);
        let r = (&self.jobs, &self.nonces).transaction(|(jobs, nonces)| {
            if nonces.get(&nk)?.is_some() {
                return Ok(false);
            }
            nonces.insert(nk.as_slice(), &record.expires_at.to_be_bytes())?;
            jobs.insert(job_id.as_slice(), rec.as_slice())?;
            Ok(true)
        });
        r.map_err(|e: sled::transaction::TransactionError<()>| match e {
            sled::transaction::TransactionError::Storage(s) => StoreError::Db(s),
            sled::transaction::TransactionError::Abort(()) => unreachable!("never aborted"),
        })
    }

    /// Makes everything written so far durable.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.db.flush_async().await?;
        Ok(())
    }

    /// A stored job.
    pub fn job(&self, id: &JobId) -> Result<Option<JobRecord>, StoreError> {
        self.jobs.get(id)?.map(|b| decode(&b)).transpose()
    }

    /// Stores a job's final response (Done or Failed) and marks it finished.
    pub fn finish(&self, id: &JobId, response: &JobResponse) -> Result<(), StoreError> {
        self.results.insert(id, encode(response))?;
        if let Some(mut rec) = self.job(id)? {
            rec.state = StoredState::Finished;
            self.jobs.insert(id, encode(&rec))?;
        }
        Ok(())
    }

    /// A finished job's response.
    pub fn result(&self, id: &JobId) -> Result<Option<JobResponse>, StoreError> {
        self.results.get(id)?.map(|b| decode(&b)).transpose()
    }

    /// Jobs accepted and not finished (to run again after a restart).
    pub fn unfinished(&self) -> Result<Vec<(JobId, JobRecord)>, StoreError> {
        let mut out = Vec::new();
        for kv in self.jobs.iter() {
            let (k, v) = kv?;
            let rec: JobRecord = decode(&v)?;
            if rec.state == StoredState::Queued {
                let id: Hash = k.as_ref().try_into().map_err(|_| {
                    StoreError::Io(std::io::Error::other("job key is not 32 bytes"))
                })?;
                out.push((id, rec));
            }
        }
        Ok(out)
    }

    /// Removes expired nonces and old finished jobs and results.
    pub fn collect_garbage(&self, now: u64) -> Result<usize, StoreError> {
        let mut removed = 0;
        for kv in self.nonces.iter() {
            let (k, v) = kv?;
            let exp = u64::from_be_bytes(v.as_ref().try_into().unwrap_or([0; 8]));
            if exp < now {
                self.nonces.remove(k)?;
                removed += 1;
            }
        }
        for kv in self.jobs.iter() {
            let (k, v) = kv?;
            let rec: JobRecord = decode(&v)?;
            if rec.state == StoredState::Finished && rec.expires_at + RESULT_RETENTION_SECS < now {
                self.jobs.remove(&k)?;
                self.results.remove(&k)?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}
