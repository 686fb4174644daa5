//! The submitter's durable state: its jobs and their verified results, so
//! `status` and `result` work after `submit --detach` and after the
//! submitter itself was killed.

use serde::{Deserialize, Serialize};

use super::{LedgerRecord, StoreError, decode, encode};
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

/// One job of a batch entry, recorded before it is sent, so a submitter
/// restarted after `kill -9` collects its answer instead of running the
/// input again.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BatchJob {
    /// The job as signed.
    pub job: SignedJob,
    /// The host it went to (string form).
    pub host_peer: String,
}

/// What one input of a batch has come to.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct BatchEntry {
    /// Every job sent for this input, in order.
    pub jobs: Vec<BatchJob>,
    /// Set once the input is decided (outputs and receipts written).
    pub done: Option<BatchDone>,
}

/// A decided input.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BatchDone {
    /// `done`, or the failure kind (a trap kind, a refusal reason,
    /// `no_majority`, `no_host`).
    pub status: String,
    /// The accepted output's hash (zero when failed).
    pub output_hash: [u8; 32],
    /// Fuel of every receipt of the input's jobs.
    pub fuel: u64,
    /// Price of every receipt of the input's jobs.
    pub price: u64,
    /// Jobs placed again after a refusal, a failure or a disagreement.
    pub retries: u32,
}

/// The saved (reputation, peer map), JSON, each `None` before the first save.
pub type TrustBlobs = (Option<Vec<u8>>, Option<Vec<u8>>);

/// The submitter's database.
pub struct SubmitterStore {
    db: sled::Db,
    jobs: sled::Tree,
    /// The coordinator's state (reputation), the peer-id map and the
    /// evidence log: see [`SubmitterStore::put_trust`].
    trust: sled::Tree,
    /// Batches (`submit --inputs`): one [`BatchEntry`] per input, keyed
    /// batch id ++ big-endian index, so a killed batch resumes.
    batches: sled::Tree,
    /// Settled entries by job ([`LedgerRecord`]), each stored before its
    /// acceptance is sent, so none is lost or paid twice.
    ledger: sled::Tree,
}

/// Keys of the trust tree. Values are JSON: the security crate's types use
/// internally tagged enums, which postcard cannot decode.
const REPUTATION: &[u8] = b"reputation";
const PEERS: &[u8] = b"peers";
/// What the submitter read of hosts' boards and published there (JSON,
/// `node::submitter::sharing`).
const BOARD: &[u8] = b"board";
/// Evidence entries are keyed `e` + big-endian sequence, oldest first.
const EVIDENCE: u8 = b'e';
/// Evidence kept at most; the oldest entries are dropped beyond it.
pub const MAX_EVIDENCE: u64 = 10_000;

impl SubmitterStore {
    /// Opens (creating) the database in `dir`.
    pub fn open(dir: &std::path::Path) -> Result<Self, StoreError> {
        let db = sled::open(dir)?;
        Ok(SubmitterStore {
            jobs: db.open_tree("jobs")?,
            trust: db.open_tree("trust")?,
            batches: db.open_tree("batches")?,
            ledger: db.open_tree("ledger")?,
            db,
        })
    }

    /// Saves a record and flushes it to disk.
    pub async fn put(&self, id: &JobId, rec: &SubmitRecord) -> Result<(), StoreError> {
        self.jobs.insert(id, encode(rec))?;
        self.db.flush_async().await?;
        Ok(())
    }

    /// Saves a record without waiting for the flush (the next `put` or
    /// `put_trust` flushes it).
    pub fn put_nowait(&self, id: &JobId, rec: &SubmitRecord) -> Result<(), StoreError> {
        self.jobs.insert(id, encode(rec))?;
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

    /// Saves the trust state in one atomic batch and flushes it, so a
    /// `kill -9` of the submitter loses at most what happened since.
    pub async fn put_trust(
        &self,
        reputation: &[u8],
        peers: &[u8],
        evidence: &[Vec<u8>],
    ) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        batch.insert(REPUTATION, reputation);
        batch.insert(PEERS, peers);
        self.evidence_into(&mut batch, evidence)?;
        self.trust.apply_batch(batch)?;
        self.db.flush_async().await?;
        Ok(())
    }

    /// Adds `evidence` after the log's last entry, dropping the oldest past
    /// [`MAX_EVIDENCE`].
    fn evidence_into(
        &self,
        batch: &mut sled::Batch,
        evidence: &[Vec<u8>],
    ) -> Result<(), StoreError> {
        let first = self.next_evidence()?;
        for (next, e) in (first..).zip(evidence) {
            let mut k = vec![EVIDENCE];
            k.extend_from_slice(&next.to_be_bytes());
            batch.insert(k, e.as_slice());
            if next >= MAX_EVIDENCE {
                let mut old = vec![EVIDENCE];
                old.extend_from_slice(&(next - MAX_EVIDENCE).to_be_bytes());
                batch.remove(old);
            }
        }
        Ok(())
    }

    /// Appends to the evidence log alone (flushed), for evidence found
    /// outside a trust run (a balance statement that disagrees).
    pub async fn append_evidence(&self, evidence: &[Vec<u8>]) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        self.evidence_into(&mut batch, evidence)?;
        self.trust.apply_batch(batch)?;
        self.db.flush_async().await?;
        Ok(())
    }

    fn next_evidence(&self) -> Result<u64, StoreError> {
        Ok(self
            .trust
            .scan_prefix([EVIDENCE])
            .keys()
            .next_back()
            .transpose()?
            .and_then(|k| <[u8; 8]>::try_from(&k[1..]).ok())
            .map_or(0, |b| u64::from_be_bytes(b) + 1))
    }

    /// The saved trust state: (reputation, peers), each `None` before the
    /// first save.
    pub fn trust(&self) -> Result<TrustBlobs, StoreError> {
        let get = |k: &[u8]| -> Result<Option<Vec<u8>>, StoreError> {
            Ok(self.trust.get(k)?.map(|v| v.to_vec()))
        };
        Ok((get(REPUTATION)?, get(PEERS)?))
    }

    /// Saves the board state (flushed).
    pub async fn put_board(&self, state: &[u8]) -> Result<(), StoreError> {
        self.trust.insert(BOARD, state)?;
        self.db.flush_async().await?;
        Ok(())
    }

    /// The saved board state, `None` before the first save.
    pub fn board(&self) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.trust.get(BOARD)?.map(|v| v.to_vec()))
    }

    /// The evidence log, oldest first.
    pub fn evidence(&self) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut out = Vec::new();
        for v in self.trust.scan_prefix([EVIDENCE]).values() {
            out.push(v?.to_vec());
        }
        Ok(out)
    }

    /// Stores settled entries (not yet delivered) and flushes them: after
    /// this the submitter owes them, whatever happens to it or the host.
    /// An entry already stored for the job is kept (idempotent by job).
    pub async fn put_settlements(&self, recs: &[LedgerRecord]) -> Result<(), StoreError> {
        self.stage_settlements(recs)?;
        self.db.flush_async().await?;
        Ok(())
    }

    /// [`Self::put_settlements`] without the flush, for a caller that
    /// flushes once for many writes (a batch's pass) before it sends any
    /// of them. A job settled already keeps its first entry.
    pub fn stage_settlements(&self, recs: &[LedgerRecord]) -> Result<(), StoreError> {
        for r in recs {
            let _ = self
                .ledger
                .compare_and_swap(r.entry.job_id, None::<&[u8]>, Some(encode(r)))?;
        }
        Ok(())
    }

    /// The host confirmed a settled entry.
    pub fn mark_delivered(&self, job: &JobId) -> Result<(), StoreError> {
        if let Some(mut r) = self.settlement(job)? {
            r.delivered = true;
            self.ledger.insert(job, encode(&r))?;
        }
        Ok(())
    }

    /// The settled entry of a job.
    pub fn settlement(&self, job: &JobId) -> Result<Option<LedgerRecord>, StoreError> {
        self.ledger.get(job)?.map(|b| decode(&b)).transpose()
    }

    /// Every settled entry.
    pub fn ledger(&self) -> Result<Vec<LedgerRecord>, StoreError> {
        let mut out = Vec::new();
        for v in self.ledger.iter().values() {
            out.push(decode(&v?)?);
        }
        Ok(out)
    }

    /// A batch's entry for one input.
    pub fn batch_entry(
        &self,
        batch: &[u8; 32],
        index: u32,
    ) -> Result<Option<BatchEntry>, StoreError> {
        self.batches
            .get(batch_key(batch, index))?
            .map(|b| decode(&b))
            .transpose()
    }

    /// Saves entries without waiting for the disk; [`SubmitterStore::flush`]
    /// makes them durable.
    pub fn put_batch_entries<'a>(
        &self,
        batch: &[u8; 32],
        entries: impl IntoIterator<Item = (u32, &'a BatchEntry)>,
    ) -> Result<(), StoreError> {
        let mut b = sled::Batch::default();
        for (i, e) in entries {
            b.insert(batch_key(batch, i).to_vec(), encode(e));
        }
        self.batches.apply_batch(b)?;
        Ok(())
    }

    /// Flushes everything written so far to disk.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.db.flush_async().await?;
        Ok(())
    }
}

fn batch_key(batch: &[u8; 32], index: u32) -> [u8; 36] {
    let mut k = [0u8; 36];
    k[..32].copy_from_slice(batch);
    k[32..].copy_from_slice(&index.to_be_bytes());
    k
}
