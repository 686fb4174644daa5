//! The host's durable state: accepted jobs, seen nonces, results.
//!
//! A job is written (and flushed by the caller) before the host acknowledges
//! it; on start, every job not yet finished is run again. Nonces are kept
//! until their job's expiry, so a replay is refused even after a restart.

use serde::{Deserialize, Serialize};

use super::{StoreError, decode, encode};
use crate::proto::{Hash, JobId, JobResponse, NotedEntry, SettledEntry, SignedJob};

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

/// One settled ledger entry as stored (on both sides): the facts the
/// ledger posts and the signed evidence they come from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LedgerRecord {
    /// What the ledger posts.
    pub entry: security::settlement::Entry,
    /// The receipt and the acceptance: anyone can check both signatures.
    pub evidence: SettledEntry,
    /// Submitter side: the host confirmed it (else it is sent again).
    pub delivered: bool,
}

/// A trust report on the host's board, as stored.
#[derive(Debug, Clone)]
pub struct StoredReport {
    /// Its board sequence number.
    pub seq: u64,
    /// The peer that published it (libp2p peer id bytes).
    pub sender: Vec<u8>,
    /// The encoded report.
    pub report: Vec<u8>,
}

/// The host's database: one sled tree, keys prefixed by kind, so that a
/// job, its nonce and its result are written together in atomic batches
/// (sled's multi-tree transactions stalled under concurrent flushes).
#[derive(Clone)]
pub struct HostStore {
    db: sled::Db,
    tree: sled::Tree,
    /// The file sled locks while the database is open (`DIR/db`).
    lock_file: std::path::PathBuf,
}

/// How long [`HostStore::close`] waits for sled's background threads to let
/// go of the database. Their queued writes take milliseconds; this bound
/// only turns a leaked handle (a bug) into an error instead of a hang.
const CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Results are kept this long after their job's expiry for late collectors.
pub const RESULT_RETENTION_SECS: u64 = 7 * 24 * 3600;

const JOB: u8 = b'j';
const NONCE: u8 = b'n';
const RESULT: u8 = b'r';
/// An unaccepted claim: job → (submitter key, price), written with the
/// result, removed when the job is settled.
const CLAIM: u8 = b'c';
/// A settled entry: job → [`LedgerRecord`]. Kept for good: it is the
/// ledger (one per paid job).
const LEDGER: u8 = b'L';
/// A long job's latest accepted debit note: job → [`NotedEntry`] (the
/// submitter's signed word for the work done so far). Kept with the job's
/// ledger for good: it is evidence.
const NOTE: u8 = b'N';

/// A trust report on the board: big-endian sequence → (the peer that
/// published it, the encoded report). See `node::host::board`.
const REPORT: u8 = b'T';

fn key(kind: u8, parts: &[&[u8]]) -> Vec<u8> {
    let mut k = vec![kind];
    for p in parts {
        k.extend_from_slice(p);
    }
    k
}

impl HostStore {
    /// Opens (creating) the database in `dir`.
    pub fn open(dir: &std::path::Path) -> Result<Self, StoreError> {
        let db = sled::Config::new()
            .path(dir)
            .mode(sled::Mode::HighThroughput)
            .open()?;
        Ok(HostStore {
            tree: db.open_tree("host")?,
            db,
            lock_file: dir.join("db"),
        })
    }

    /// Flushes, drops this handle and returns once the database is really
    /// closed: its lock file can be locked again, so a new `open` of the
    /// same directory (a restarted host in the same process) succeeds.
    ///
    /// Dropping the last `sled::Db` is not enough: writes sled queued on its
    /// process-wide IO thread pool keep the file (and its `flock`) open
    /// until they run, which under load is after `drop` returns. Waiting for
    /// the lock itself is waiting for exactly the condition a new `open`
    /// needs. Every other clone of this store must be dropped first, or
    /// this returns [`StoreError::StillOpen`] after a bound.
    pub async fn close(self) -> Result<(), StoreError> {
        self.flush().await?;
        let lock_file = self.lock_file.clone();
        drop(self);
        let started = std::time::Instant::now();
        loop {
            match std::fs::File::open(&lock_file) {
                Ok(f) => match f.try_lock() {
                    Ok(()) => return Ok(()),
                    Err(std::fs::TryLockError::WouldBlock) => {}
                    Err(std::fs::TryLockError::Error(e)) => return Err(e.into()),
                },
                // Nothing to lock: nothing holds it.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(e.into()),
            }
            if started.elapsed() >= CLOSE_WAIT {
                return Err(StoreError::StillOpen(lock_file));
            }
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
    }

    /// Whether this (submitter, nonce) was accepted before.
    pub fn nonce_seen(&self, submitter: &[u8; 32], nonce: &[u8; 16]) -> Result<bool, StoreError> {
        Ok(self.tree.contains_key(key(NONCE, &[submitter, nonce]))?)
    }

    /// Records an accepted job and its nonce in one atomic batch. Returns
    /// `false` (and writes nothing) if the nonce was taken. The host's event
    /// loop is the only writer, so check-then-write cannot race. Call
    /// [`Self::flush`] before acknowledging.
    pub fn accept(
        &self,
        job_id: &JobId,
        record: &JobRecord,
        submitter: &[u8; 32],
        nonce: &[u8; 16],
    ) -> Result<bool, StoreError> {
        if self.nonce_seen(submitter, nonce)? {
            return Ok(false);
        }
        let mut b = sled::Batch::default();
        b.insert(
            key(NONCE, &[submitter, nonce]),
            &record.expires_at.to_be_bytes(),
        );
        b.insert(key(JOB, &[job_id]), encode(record));
        self.tree.apply_batch(b)?;
        Ok(true)
    }

    /// Makes everything written so far durable.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.db.flush_async().await?;
        Ok(())
    }

    /// A stored job.
    pub fn job(&self, id: &JobId) -> Result<Option<JobRecord>, StoreError> {
        self.tree
            .get(key(JOB, &[id]))?
            .map(|b| decode(&b))
            .transpose()
    }

    /// Stores a job's final response (Done or Failed) and marks the job
    /// finished, in one atomic batch.
    /// The result's receipt is also an unaccepted claim on the submitter
    /// (unless the job is settled already: a re-run after a crash), in the
    /// same batch, so credit admission counts it after any restart.
    pub fn finish(&self, id: &JobId, response: &JobResponse) -> Result<(), StoreError> {
        let mut b = sled::Batch::default();
        b.insert(key(RESULT, &[id]), encode(response));
        if let Some(mut rec) = self.job(id)? {
            let price = match response {
                JobResponse::Done { receipt, .. } | JobResponse::Failed { receipt, .. } => {
                    postcard::from_bytes::<crate::proto::ReceiptBody>(&receipt.body)
                        .ok()
                        .map(|r| r.price)
                }
                _ => None,
            };
            let submitter = postcard::from_bytes::<crate::proto::JobSpec>(&rec.job.spec)
                .ok()
                .map(|s| s.submitter);
            if let (Some(price), Some(sub)) = (price, submitter)
                && !self.tree.contains_key(key(LEDGER, &[id]))?
            {
                b.insert(key(CLAIM, &[id]), encode(&(sub, price)));
            }
            rec.state = StoredState::Finished;
            b.insert(key(JOB, &[id]), encode(&rec));
        }
        self.tree.apply_batch(b)?;
        Ok(())
    }

    /// A job's unaccepted claim: (submitter key, price).
    pub fn claim(&self, id: &JobId) -> Result<Option<([u8; 32], u64)>, StoreError> {
        self.tree
            .get(key(CLAIM, &[id]))?
            .map(|b| decode(&b))
            .transpose()
    }

    /// Every unaccepted claim: (job, submitter key, price).
    pub fn claims(&self) -> Result<Vec<(JobId, [u8; 32], u64)>, StoreError> {
        let mut out = Vec::new();
        for kv in self.tree.scan_prefix([CLAIM]) {
            let (k, v) = kv?;
            let (sub, price): ([u8; 32], u64) = decode(&v)?;
            if let Ok(id) = <JobId>::try_from(&k[1..]) {
                out.push((id, sub, price));
            }
        }
        Ok(out)
    }

    /// Records a settled entry and closes the job's claim, in one atomic
    /// batch. Call [`Self::flush`] before confirming it.
    pub fn settle(&self, id: &JobId, rec: &LedgerRecord) -> Result<(), StoreError> {
        let mut b = sled::Batch::default();
        b.insert(key(LEDGER, &[id]), encode(rec));
        b.remove(key(CLAIM, &[id]));
        self.tree.apply_batch(b)?;
        Ok(())
    }

    /// Records a job's latest accepted debit note (replacing an earlier
    /// one). Call [`Self::flush`] before confirming it.
    pub fn put_note(&self, id: &JobId, entry: &NotedEntry) -> Result<(), StoreError> {
        self.tree.insert(key(NOTE, &[id]), encode(entry))?;
        Ok(())
    }

    /// Every job's latest accepted debit note.
    pub fn notes(&self) -> Result<Vec<(JobId, NotedEntry)>, StoreError> {
        let mut out = Vec::new();
        for kv in self.tree.scan_prefix([NOTE]) {
            let (k, v) = kv?;
            if let Ok(id) = <JobId>::try_from(&k[1..]) {
                out.push((id, decode(&v)?));
            }
        }
        Ok(out)
    }

    /// A job's latest accepted debit note.
    pub fn note(&self, id: &JobId) -> Result<Option<NotedEntry>, StoreError> {
        self.tree
            .get(key(NOTE, &[id]))?
            .map(|b| decode(&b))
            .transpose()
    }

    /// Keeps a board report under `seq`, with the peer that sent it.
    pub fn put_report(&self, seq: u64, sender: &[u8], report: &[u8]) -> Result<(), StoreError> {
        self.tree.insert(
            key(REPORT, &[&seq.to_be_bytes()]),
            encode(&(
                serde_bytes::Bytes::new(sender),
                serde_bytes::Bytes::new(report),
            )),
        )?;
        Ok(())
    }

    /// Drops a board report.
    pub fn remove_report(&self, seq: u64) -> Result<(), StoreError> {
        self.tree.remove(key(REPORT, &[&seq.to_be_bytes()]))?;
        Ok(())
    }

    /// Every board report, oldest first.
    pub fn reports(&self) -> Result<Vec<StoredReport>, StoreError> {
        let mut out = Vec::new();
        for kv in self.tree.scan_prefix([REPORT]) {
            let (k, v) = kv?;
            let Ok(seq) = <[u8; 8]>::try_from(&k[1..]) else {
                continue;
            };
            let (sender, report): (serde_bytes::ByteBuf, serde_bytes::ByteBuf) = decode(&v)?;
            out.push(StoredReport {
                seq: u64::from_be_bytes(seq),
                sender: sender.into_vec(),
                report: report.into_vec(),
            });
        }
        Ok(out)
    }

    /// Every settled entry.
    pub fn ledger(&self) -> Result<Vec<LedgerRecord>, StoreError> {
        let mut out = Vec::new();
        for v in self.tree.scan_prefix([LEDGER]).values() {
            out.push(decode(&v?)?);
        }
        Ok(out)
    }

    /// A finished job's response.
    pub fn result(&self, id: &JobId) -> Result<Option<JobResponse>, StoreError> {
        self.tree
            .get(key(RESULT, &[id]))?
            .map(|b| decode(&b))
            .transpose()
    }

    /// Jobs accepted and not finished (to run again after a restart).
    pub fn unfinished(&self) -> Result<Vec<(JobId, JobRecord)>, StoreError> {
        let mut out = Vec::new();
        for kv in self.tree.scan_prefix([JOB]) {
            let (k, v) = kv?;
            let rec: JobRecord = decode(&v)?;
            if rec.state == StoredState::Queued {
                let id: Hash = k[1..].try_into().map_err(|_| {
                    StoreError::Io(std::io::Error::other("job key is not 33 bytes"))
                })?;
                out.push((id, rec));
            }
        }
        Ok(out)
    }

    /// Removes expired nonces and old finished jobs and results.
    pub fn collect_garbage(&self, now: u64) -> Result<usize, StoreError> {
        let mut removed = 0;
        for kv in self.tree.scan_prefix([NONCE]) {
            let (k, v) = kv?;
            let exp = u64::from_be_bytes(v.as_ref().try_into().unwrap_or([0; 8]));
            if exp < now {
                self.tree.remove(k)?;
                removed += 1;
            }
        }
        for kv in self.tree.scan_prefix([JOB]) {
            let (k, v) = kv?;
            let rec: JobRecord = decode(&v)?;
            if rec.state == StoredState::Finished && rec.expires_at + RESULT_RETENTION_SECS < now {
                let mut b = sled::Batch::default();
                b.remove(k.clone());
                b.remove(key(RESULT, &[&k[1..]]));
                self.tree.apply_batch(b)?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}
