//! The submitter's durable state: its jobs and their verified results, so
//! `status` and `result` work after `submit --detach` and after the
//! submitter itself was killed.

use serde::{Deserialize, Serialize};

use super::{StoreError, decode, encode};
use crate::proto::{JobId, JobResponse, SignedJob};

/// A job this submitter sent.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SubmitRecord {
    /// The job as signed.
    pub job: SignedJob,
    /// The host's peer id (string form).
    pub host_peer: String,
    /// The address it was reached at (full multiaddr).
    pub host_addr: String,
    /// Last known status: `queued`, `running`, `done` or `failed`.
    pub status: String,
    /// The verified final response (Done or Failed), once known.
    pub response: Option<JobResponse>,
    /// Unix seconds when submitted.
    pub submitted_at: u64,
}

/// The submitter's database.
pub struct SubmitterStore {
    db: sled::Db,
    jobs: sled::Tree,
}

impl SubmitterStore {
    /// Opens (creating) the database in `dir`.
    pub fn open(dir: &std::path::Path) -> Result<Self, StoreError> {
        let db = sled::open(dir)?;
        Ok(SubmitterStore {
            jobs: db.open_tree("jobs")?,
            db,
        })
    }

    /// Saves a record and flushes it to disk.
    pub async fn put(&self, id: &JobId, rec: &SubmitRecord) -> Result<(), StoreError> {
        self.jobs.insert(id, encode(rec))?;
        self.db.flush_async().await?;
        Ok(())
    }

    /// A record.
    pub fn get(&self, id: &JobId) -> Result<Option<SubmitRecord>, StoreError> {
        self.jobs.get(id)?.map(|b| decode(&b)).transpose()
    }

    /// Finds a job by a unique prefix of its hex id.
    pub fn find(&self, prefix: &str) -> Result<Vec<JobId>, StoreError> {
        let mut out = Vec::new();
        for k in self.jobs.iter().keys() {
            let k = k?;
            let Ok(id) = <JobId>::try_from(k.as_ref()) else {
                continue;
            };
            if crate::proto::hex(&id).starts_with(&prefix.to_ascii_lowercase()) {
                out.push(id);
            }
        }
        Ok(out)
    }
}
