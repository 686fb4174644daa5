//! The crate's one error type.

use crate::ids::{AssignmentId, PeerId, TaskId};

/// Everything that can go wrong when feeding the security state machines.
///
/// None of these errors corrupt state: the event that caused it was ignored,
/// so the caller may log it and carry on.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SecurityError {
    /// A configuration value is out of range; the builder refuses it rather
    /// than silently clamping, so a typo in a config file is noticed.
    #[error("invalid config: {field} = {value} ({why})")]
    InvalidConfig {
        /// The offending field, as spelled in the config struct.
        field: &'static str,
        /// The rejected value, rendered for the message.
        value: String,
        /// What the field must satisfy.
        why: &'static str,
    },
    /// An event names a peer the crate has never seen (no `PeerJoined`).
    #[error("unknown peer {0}")]
    UnknownPeer(PeerId),
    /// The peer is already known; joining twice would reset its record, which
    /// is exactly what a Sybil would like, so it is refused.
    #[error("peer {0} already joined")]
    DuplicatePeer(PeerId),
    /// A task id was submitted twice while the first is still open.
    #[error("task {0:?} is already open")]
    DuplicateTask(TaskId),
    /// A result or failure refers to an assignment that is not open: it was
    /// never made, already answered, or timed out. After a timeout nobody
    /// knows whether the job ran, so late results are dropped, not merged.
    #[error("unknown or closed assignment {0:?}")]
    UnknownAssignment(AssignmentId),
    /// A bounded table is full. The caller should finish open work before
    /// submitting more (back-pressure, not an unbounded queue).
    #[error("{table} table is full ({capacity} entries)")]
    TableFull {
        /// Which table.
        table: &'static str,
        /// Its configured bound.
        capacity: usize,
    },
    /// The caller's verifier rejected a trust report's signature.
    #[error("trust report from {0} has an invalid signature")]
    BadSignature(PeerId),
    /// A trust report's sequence number is not above the last one accepted
    /// from that reporter: a replay or reordering, ignored.
    #[error("stale trust report from {reporter}: sequence {sequence} <= last {last}")]
    StaleReport {
        /// The reporter.
        reporter: PeerId,
        /// Sequence in the rejected report.
        sequence: u64,
        /// Last accepted sequence.
        last: u64,
    },
    /// A peer reported on itself; self-praise carries no information.
    #[error("peer {0} reported on itself")]
    SelfReport(PeerId),
    /// A Byzantine strategy name was not recognised.
    #[error(
        "unknown strategy {0:?}; expected one of always-wrong, random-wrong, colluding, stealth-colluding, patient, sleeper, slanderer, over-billing, sybil-churn"
    )]
    UnknownStrategy(String),
    /// A policy name was not recognised.
    #[error("unknown policy {0:?}; expected biop2p, majority3 or boinc-adaptive")]
    UnknownPolicy(String),
    /// An attacker fraction outside [0, 1).
    #[error("invalid attacker fraction {0}: must be in [0, 1)")]
    InvalidFraction(f64),
    /// Model updates that cannot be aggregated: none, of different lengths,
    /// with a non-finite value or a zero total weight. Nothing is averaged.
    #[error("cannot aggregate updates: {0}")]
    BadUpdates(String),
}
