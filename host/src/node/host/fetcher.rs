//! The blob fetcher: gets a job's missing module and input from its
//! submitter in chunks, with a window of requests in flight per blob and a
//! deadline per job, then verifies and stores each blob on the blocking
//! pool (hashing 64 MiB takes tens of milliseconds: never on the swarm
//! task).
//!
//! A job leaves the fetcher exactly once, as [`Outcome::Ready`] (every blob
//! verified and stored) or [`Outcome::Failed`] (with the refusal to send);
//! the host then releases what admission gave it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use libp2p::request_response::OutboundRequestId;
use libp2p::{PeerId, Swarm};
use tokio::task::JoinSet;

use super::Reply;
use super::admission::Refusal;
use crate::net::{BLOB_CHUNK, Behaviour, Inbound};
use crate::proto::{
    self, BlobRequest, BlobResponse, Hash, JobId, JobSpec, RefuseReason, SignedJob,
};
use crate::store::BlobStore;

/// Chunks requested at once per blob.
const FETCH_WINDOW: usize = 4;

/// A job on its way in: checked, with room taken, not yet stored.
pub(super) struct Incoming {
    pub job: SignedJob,
    pub spec: JobSpec,
    pub peer: PeerId,
    pub channel: Reply,
    pub wait: bool,
    /// Bytes admission counted for it (released when it leaves).
    pub held: u64,
    /// The input's bytes when they came inline or were fetched: handed to
    /// the task as they are, not read back from disk and hashed again.
    pub input: Option<Vec<u8>>,
    /// Whether its submitter was reachable only through a relay.
    pub relayed: bool,
}

struct BlobFetch {
    buf: Vec<u8>,
    received: u64,
    next: u64,
    in_flight: usize,
}

struct Fetching {
    job: Incoming,
    /// Blobs still arriving.
    blobs: HashMap<Hash, BlobFetch>,
    /// Blobs complete and being verified and stored.
    verifying: usize,
    deadline: Instant,
}

/// What became of a job in the fetcher.
pub(super) enum Outcome {
    /// Every blob is verified and stored: the job can be accepted.
    Ready(Incoming),
    /// The job cannot be accepted; the refusal says why.
    Failed(Incoming, Refusal),
}

pub(super) struct Fetcher {
    blobs: BlobStore,
    jobs: HashMap<JobId, Fetching>,
    requests: HashMap<OutboundRequestId, (JobId, Hash, u64)>,
    /// Blobs being verified and stored: (job, hash, bytes or refusal).
    verifying: JoinSet<(JobId, Hash, Result<Vec<u8>, Refusal>)>,
    deadline_base: Duration,
    min_bytes_per_sec: u64,
}

impl Fetcher {
    pub fn new(blobs: BlobStore, deadline_base: Duration, min_bytes_per_sec: u64) -> Self {
        Fetcher {
            blobs,
            jobs: HashMap::new(),
            requests: HashMap::new(),
            verifying: JoinSet::new(),
            deadline_base,
            min_bytes_per_sec: min_bytes_per_sec.max(1),
        }
    }

    /// Jobs being fetched.
    pub fn len(&self) -> usize {
        self.jobs.len()
    }

    /// Whether `job_id` is being fetched (a second submit of it is a replay).
    pub fn contains(&self, job_id: &JobId) -> bool {
        self.jobs.contains_key(job_id)
    }

    /// Starts fetching the blobs in `missing` (hash → size, sizes already
    /// bounded by admission), or returns the job at once if none is missing.
    pub fn start(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        job_id: JobId,
        job: Incoming,
        missing: Vec<(Hash, u64)>,
        now: Instant,
    ) -> Option<Incoming> {
        if missing.is_empty() {
            return Some(job);
        }
        let bytes: u64 = missing.iter().map(|(_, s)| s).sum();
        let deadline =
            now + self.deadline_base + Duration::from_secs(bytes / self.min_bytes_per_sec);
        let blobs = missing
            .into_iter()
            .map(|(h, size)| {
                (
                    h,
                    BlobFetch {
                        buf: vec![0; size as usize],
                        received: 0,
                        next: 0,
                        in_flight: 0,
                    },
                )
            })
            .collect();
        let mut f = Fetching {
            job,
            blobs,
            verifying: 0,
            deadline,
        };
        self.request_chunks(swarm, job_id, &mut f);
        self.jobs.insert(job_id, f);
        None
    }

    fn request_chunks(&mut self, swarm: &mut Swarm<Behaviour>, job_id: JobId, f: &mut Fetching) {
        for (hash, b) in f.blobs.iter_mut() {
            let total = b.buf.len() as u64;
            while b.in_flight < FETCH_WINDOW && b.next < total {
                let len = (total - b.next).min(BLOB_CHUNK as u64) as u32;
                let rid = swarm.behaviour_mut().blob.send_request(
                    &f.job.peer,
                    Inbound::Ok(BlobRequest {
                        hash: *hash,
                        offset: b.next,
                        len,
                    }),
                );
                self.requests.insert(rid, (job_id, *hash, b.next));
                b.next += len as u64;
                b.in_flight += 1;
            }
        }
    }

    /// A chunk (or the failure of its request) arrived.
    pub fn on_chunk(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        rid: OutboundRequestId,
        r: Result<BlobResponse, String>,
    ) -> Option<Outcome> {
        let (job_id, hash, offset) = self.requests.remove(&rid)?;
        let mut f = self.jobs.remove(&job_id)?;
        match take_chunk(&mut f, hash, offset, r) {
            Err(refusal) => Some(self.fail(job_id, f, refusal)),
            Ok(complete) => {
                if complete {
                    let b = f.blobs.remove(&hash).expect("the chunk's blob is present");
                    self.verify(job_id, &f, hash, b.buf);
                    f.verifying += 1;
                }
                self.request_chunks(swarm, job_id, &mut f);
                self.jobs.insert(job_id, f);
                None
            }
        }
    }

    /// Hashes and stores a complete blob on the blocking pool.
    fn verify(&mut self, job_id: JobId, f: &Fetching, hash: Hash, buf: Vec<u8>) {
        let blobs = self.blobs.clone();
        let pins = job_pins(&f.job.spec);
        let durable = !f.job.wait;
        self.verifying.spawn_blocking(move || {
            if blake3::hash(&buf).as_bytes() != &hash {
                let msg = format!("fetched bytes do not hash to {}", proto::hex(&hash));
                return (job_id, hash, Err((RefuseReason::BlobMismatch, msg)));
            }
            if let Err(e) = blobs.put(&hash, &buf, &pins, durable) {
                tracing::error!(error = %e, "cannot store blob");
                let msg = "host cannot store blobs".to_string();
                return (job_id, hash, Err((RefuseReason::Busy, msg)));
            }
            (job_id, hash, Ok(buf))
        });
    }

    /// Waits for the next verified blob; `None` when none is being verified
    /// (the caller's `select!` then waits on its other branches).
    pub async fn next_verified(&mut self) -> Option<Outcome> {
        loop {
            let joined = self.verifying.join_next().await?;
            let Ok((job_id, hash, r)) = joined else {
                continue;
            };
            let Some(mut f) = self.jobs.remove(&job_id) else {
                // Failed or expired meanwhile; its refusal went out then.
                continue;
            };
            f.verifying -= 1;
            match r {
                Err(refusal) => return Some(self.fail(job_id, f, refusal)),
                Ok(buf) => {
                    if hash == f.job.spec.input_hash {
                        f.job.input = Some(buf);
                    }
                    if f.blobs.is_empty() && f.verifying == 0 {
                        return Some(Outcome::Ready(f.job));
                    }
                    self.jobs.insert(job_id, f);
                }
            }
        }
    }

    /// Jobs whose deadline passed by `now`, failed with `blob_unavailable`;
    /// everything they held is dropped.
    pub fn expire(&mut self, now: Instant) -> Vec<Outcome> {
        let late: Vec<JobId> = self
            .jobs
            .iter()
            .filter(|(_, f)| f.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        late.into_iter()
            .filter_map(|id| {
                let f = self.jobs.remove(&id)?;
                let left: u64 = f
                    .blobs
                    .values()
                    .map(|b| b.buf.len() as u64 - b.received)
                    .sum();
                let msg = format!(
                    "the job's blobs did not arrive in time ({left} bytes missing at the deadline)"
                );
                Some(self.fail(id, f, (RefuseReason::BlobUnavailable, msg)))
            })
            .collect()
    }

    fn fail(&mut self, job_id: JobId, f: Fetching, refusal: Refusal) -> Outcome {
        self.requests.retain(|_, v| v.0 != job_id);
        Outcome::Failed(f.job, refusal)
    }
}

/// The blobs of a job that eviction must spare while it is admitted: its
/// module, input and data.
pub(super) fn job_pins(spec: &JobSpec) -> Vec<Hash> {
    let mut pins = vec![spec.module_hash, spec.input_hash];
    pins.extend(spec.data.iter().map(|d| d.hash));
    pins
}

/// Copies a chunk into its blob. `Ok(true)` when the blob is complete.
fn take_chunk(
    f: &mut Fetching,
    hash: Hash,
    offset: u64,
    r: Result<BlobResponse, String>,
) -> Result<bool, Refusal> {
    let b = f
        .blobs
        .get_mut(&hash)
        .ok_or_else(|| (RefuseReason::BlobMismatch, "unexpected chunk".to_string()))?;
    b.in_flight -= 1;
    let n = place_chunk(&mut b.buf, &hash, offset, r)?;
    b.received += n as u64;
    Ok(b.received == b.buf.len() as u64 && b.in_flight == 0)
}

/// The host's handling of the answer to the chunk it asked at `offset` of
/// blob `hash`, whose buffer `buf` has the size the job named: a failed
/// request or `NotFound` is a refusal; a chunk is checked
/// ([`crate::net::chunk_place`]) and only then copied into place. Returns
/// the bytes copied. Not an API: public for the `blob_chunk` fuzz target.
#[doc(hidden)]
pub fn place_chunk(
    buf: &mut [u8],
    hash: &Hash,
    offset: u64,
    r: Result<BlobResponse, String>,
) -> Result<usize, Refusal> {
    match r {
        Err(e) => Err((
            RefuseReason::BlobUnavailable,
            format!("fetching {}: {e}", proto::hex(hash)),
        )),
        Ok(BlobResponse::NotFound) => Err((
            RefuseReason::BlobUnavailable,
            format!("submitter does not have {}", proto::hex(hash)),
        )),
        Ok(BlobResponse::Chunk { total: t, data }) => {
            let at =
                crate::net::chunk_place(buf.len() as u64, offset, t, data.len()).map_err(|e| {
                    (
                        RefuseReason::BlobMismatch,
                        format!("blob {}: {e}", proto::hex(hash)),
                    )
                })?;
            buf[at].copy_from_slice(&data);
            Ok(data.len())
        }
    }
}
