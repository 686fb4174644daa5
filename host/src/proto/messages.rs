//! Request and response messages of the two protocols.

use serde::{Deserialize, Serialize};

use super::{
    Hash, JobId, NotedEntry, SettledEntry, SignedJob, SignedNote, SignedReceipt, SignedStatement,
};

/// Blob bytes sent along with a job, to save a round trip for small ones.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InlineBlob {
    /// Claimed blake3; verified by the receiver.
    pub hash: Hash,
    /// The bytes (as one byte string: postcard's wire format is the same,
    /// but serde then copies them at once instead of byte by byte).
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
}

/// `/biop2p/job/1.0.0` requests.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum JobRequest {
    /// Run this job. Blobs the host lacks and that are not inline it fetches
    /// from the submitter over `/biop2p/blob/1.0.0`. With `wait`, the
    /// response is the result; without, `Accepted` once the job is durable.
    Submit {
        /// The signed job.
        job: SignedJob,
        /// Small blobs sent along.
        inline: Vec<InlineBlob>,
        /// Answer with the result instead of with `Accepted`.
        wait: bool,
    },
    /// What became of a job. With `wait`, answer when it is finished.
    Fetch {
        /// The job.
        job_id: JobId,
        /// Hold the answer until the job is done.
        wait: bool,
    },
    /// The submitter accepts a result it verified: the host's receipt with
    /// the submitter's signed acceptance, one settled ledger entry. Sent
    /// again after any doubt (a lost answer, a restart): applying it twice
    /// changes nothing.
    Settle {
        /// The receipt and its acceptance.
        entry: SettledEntry,
    },
    /// Netting: the submitter's signed statement of its settled entries
    /// with this host. The host answers with its own ([`JobResponse::Statement`]);
    /// each side compares and keeps a disagreement as evidence.
    Reconcile {
        /// The submitter's statement (`from` the submitter, `with` the host).
        statement: SignedStatement,
    },
    /// The submitter accepts a debit note of a long job still running (see
    /// `proto::note`): the worker paused at the note goes on. Sent again
    /// after any doubt; applying it twice changes nothing.
    AcceptNote {
        /// The host's note and the submitter's acceptance.
        entry: NotedEntry,
    },
    /// Keep this signed trust report (a `LieReport`, postcard) for other
    /// submitters. Hosts are the swarm's meeting points (submitters do
    /// not listen), so they keep a bounded board of reports; they never
    /// judge them: every reader re-runs the evidence itself.
    PublishReport {
        /// The encoded report.
        #[serde(with = "serde_bytes")]
        report: Vec<u8>,
    },
    /// The board's reports stored after `after` (a sequence number this
    /// host gave), oldest first, up to `max_bytes` of them.
    Reports {
        /// The last sequence number the reader has.
        after: u64,
        /// Most report bytes in the answer (the host caps it too).
        max_bytes: u32,
    },
    /// The first request on a new job stream, answered [`JobResponse::Hello`]
    /// by the stream's own task. A host takes inbound streams one at a time
    /// and libp2p-stream drops one that arrives while another still waits
    /// to be taken; an answer shows the stream was taken, so that jobs are
    /// written only on a stream that will be read.
    Hello,
}

/// Where an unfinished job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobState {
    /// Accepted, waiting for a worker.
    Queued,
    /// In a sandbox now.
    Running,
}

/// Why a host would not take a job. Stable names, shown as snake_case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RefuseReason {
    /// The job's signature does not verify.
    BadSignature,
    /// Past its expiry, or expiring too far in the future.
    Expired,
    /// This (submitter, nonce) was seen before.
    Replayed,
    /// The job's price ceiling is below the host's price.
    PriceTooLow,
    /// A size or limit is over what the host accepts.
    TooLarge,
    /// A blob's bytes do not match its hash.
    BlobMismatch,
    /// The host's queue is full.
    Busy,
    /// The request could not be decoded.
    Malformed,
    /// A blob could not be fetched from the submitter.
    BlobUnavailable,
    /// A `Fetch` of a job by a peer other than its submitter (the peer whose
    /// key signed it): outputs go only to whoever paid for them, so a lazy
    /// host cannot copy another replica's answer.
    NotYours,
    /// The submitter's unaccepted work on this host plus the job's most
    /// possible cost is over the credit this host gives it (newcomers get
    /// little; the limit grows with settled history). Settle, then retry.
    CreditLimit,
    /// The host is in a crisis (Havoc: its swarm is losing hosts) and its
    /// backlog is over its limit: it finishes what it accepted first.
    Shedding,
}

impl RefuseReason {
    /// The stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            RefuseReason::BadSignature => "bad_signature",
            RefuseReason::Expired => "expired",
            RefuseReason::Replayed => "replayed",
            RefuseReason::PriceTooLow => "price_too_low",
            RefuseReason::TooLarge => "too_large",
            RefuseReason::BlobMismatch => "blob_mismatch",
            RefuseReason::Busy => "busy",
            RefuseReason::Malformed => "malformed",
            RefuseReason::BlobUnavailable => "blob_unavailable",
            RefuseReason::NotYours => "not_yours",
            RefuseReason::CreditLimit => "credit_limit",
            RefuseReason::Shedding => "shedding",
        }
    }
}

impl std::fmt::Display for RefuseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `/biop2p/job/1.0.0` responses.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum JobResponse {
    /// The job is durably accepted (it will run even if the host crashes).
    Accepted {
        /// Its id.
        job_id: JobId,
    },
    /// Not finished yet.
    Pending {
        /// Its id.
        job_id: JobId,
        /// Where it is.
        state: JobState,
    },
    /// Finished with output.
    Done {
        /// Its id.
        job_id: JobId,
        /// The output.
        #[serde(with = "serde_bytes")]
        output: Vec<u8>,
        /// The host's signed receipt.
        receipt: SignedReceipt,
    },
    /// Ran and failed in the sandbox; the receipt says how and what it cost.
    Failed {
        /// Its id.
        job_id: JobId,
        /// The sandbox's error kind.
        kind: String,
        /// Human-readable detail.
        message: String,
        /// The host's signed receipt.
        receipt: SignedReceipt,
    },
    /// Not taken.
    Refused {
        /// Why, as a stable reason.
        reason: RefuseReason,
        /// Detail for a person.
        message: String,
    },
    /// The host knows no such job.
    Unknown {
        /// The id asked about.
        job_id: JobId,
    },
    /// A `Settle` is recorded (and durable).
    Settled {
        /// The job settled.
        job_id: JobId,
        /// False when it was settled before: a replay changed nothing.
        new: bool,
    },
    /// The host's signed statement of its settled entries with the
    /// submitter that asked, and whether it matched the submitter's.
    Statement {
        /// The host's statement (`from` the host, `with` the submitter).
        statement: SignedStatement,
        /// The host found the submitter's statement equal to its own.
        agrees: bool,
    },
    /// A long job reached a debit note: it is paused until the submitter
    /// accepts the note ([`JobRequest::AcceptNote`]). The answer to a
    /// waiting `Submit` or `Fetch` of the job's submitter, instead of its
    /// result.
    Note {
        /// The job.
        job_id: JobId,
        /// The host's signed note.
        note: SignedNote,
    },
    /// A note acceptance is recorded (and durable); the job goes on.
    NoteAccepted {
        /// The job.
        job_id: JobId,
        /// The note accepted.
        seq: u32,
    },
    /// A published report is on the board.
    ReportKept {
        /// False when the board had it already.
        new: bool,
    },
    /// A page of the board (answer to [`JobRequest::Reports`]).
    Reports {
        /// Encoded reports with their sequence numbers, oldest first.
        items: Vec<BoardItem>,
        /// Ask again with `after = next` for what follows; below the
        /// reader's `after` when the board was reset (read it again).
        next: u64,
        /// More is stored past this page.
        more: bool,
    },
    /// Answer to [`JobRequest::Hello`]: this stream is being read.
    Hello,
}

/// One report on a host's board.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BoardItem {
    /// Its sequence number on this host.
    pub seq: u64,
    /// The encoded report.
    #[serde(with = "serde_bytes")]
    pub report: Vec<u8>,
}

/// `/biop2p/blob/1.0.0`: a range of the blob with this hash.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BlobRequest {
    /// blake3 of the whole blob.
    pub hash: Hash,
    /// First byte wanted.
    pub offset: u64,
    /// Bytes wanted (capped by the server at its chunk size).
    pub len: u32,
}

/// `/biop2p/blob/1.0.0` response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum BlobResponse {
    /// Bytes from `offset`, and the blob's total length.
    Chunk {
        /// Total length of the blob.
        total: u64,
        /// The bytes.
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// This peer does not have (or will not give) that blob.
    NotFound,
}
