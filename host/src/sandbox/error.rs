//! Why a task failed, as a stable kind other tools can match on.

use serde::{Deserialize, Serialize};

/// The stable name of a failure, printed as `error_kind` in JSON and carried
/// in refusals over the network. The names never change: scripts match on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The task used its whole fuel budget (`--fuel`).
    FuelExhausted,
    /// The guest asked for more linear memory than `--memory` allows.
    MemoryLimit,
    /// The fuel cap derived from `--timeout` ran out: at this host's measured
    /// rate the task would have run longer than allowed.
    Timeout,
    /// The guest exhausted the bounded wasm stack (deep recursion).
    StackOverflow,
    /// Any other wasm trap (unreachable, out-of-bounds access, ...).
    Trap,
    /// The bytes are not a valid module or component, or lack the export a
    /// task needs.
    InvalidModule,
    /// The guest wrote more output than the output limit.
    OutputLimit,
    /// The guest left more bytes in its scratch directory than allowed.
    DiskLimit,
    /// Tables, instances or other store resources over their limit.
    ResourceLimit,
    /// The workload itself reported an error (`err` from `run`, or a
    /// non-zero exit code from a WASI command).
    GuestError,
    /// The host could not set the task up (I/O on its own files). Not the
    /// guest's fault; the task may be retried elsewhere.
    HostError,
    /// A long task stopped at a debit note its submitter did not accept in
    /// time (`proto::note`): the host works at most one note's worth on
    /// credit. Not the guest's fault, and not a verdict on its result.
    Unpaid,
}

impl ErrorKind {
    /// The stable snake_case name (`fuel_exhausted`, `memory_limit`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::FuelExhausted => "fuel_exhausted",
            ErrorKind::MemoryLimit => "memory_limit",
            ErrorKind::Timeout => "timeout",
            ErrorKind::StackOverflow => "stack_overflow",
            ErrorKind::Trap => "trap",
            ErrorKind::InvalidModule => "invalid_module",
            ErrorKind::OutputLimit => "output_limit",
            ErrorKind::DiskLimit => "disk_limit",
            ErrorKind::ResourceLimit => "resource_limit",
            ErrorKind::GuestError => "guest_error",
            ErrorKind::HostError => "host_error",
            ErrorKind::Unpaid => "unpaid",
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A task that did not produce output. Each variant maps to one [`ErrorKind`];
/// the message names the limit or value involved so a person can act on it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SandboxError {
    /// See [`ErrorKind::FuelExhausted`].
    #[error("fuel exhausted after {used} units (limit {limit})")]
    FuelExhausted {
        /// Fuel consumed when the task stopped.
        used: u64,
        /// The budget it had.
        limit: u64,
    },
    /// See [`ErrorKind::MemoryLimit`].
    #[error("memory limit of {limit} bytes exceeded (guest asked for {requested} bytes)")]
    MemoryLimit {
        /// The task's memory limit in bytes.
        limit: u64,
        /// The total the guest asked for.
        requested: u64,
    },
    /// See [`ErrorKind::Timeout`].
    #[error("timeout: the task exceeded {timeout_ms} ms ({fuel_cap} fuel at this host's rate)")]
    Timeout {
        /// The timeout requested.
        timeout_ms: u64,
        /// The fuel cap the timeout was converted into.
        fuel_cap: u64,
    },
    /// See [`ErrorKind::StackOverflow`].
    #[error("stack overflow: the guest exhausted its {stack_bytes}-byte wasm stack")]
    StackOverflow {
        /// The configured maximum wasm stack.
        stack_bytes: usize,
    },
    /// See [`ErrorKind::Trap`].
    #[error("guest trapped: {0}")]
    Trap(String),
    /// See [`ErrorKind::InvalidModule`].
    #[error("invalid module: {0}")]
    InvalidModule(String),
    /// See [`ErrorKind::OutputLimit`].
    #[error("output limit of {limit} bytes exceeded")]
    OutputLimit {
        /// The output limit in bytes.
        limit: u64,
    },
    /// See [`ErrorKind::DiskLimit`].
    #[error("scratch directory limit of {limit} bytes exceeded ({used} bytes written)")]
    DiskLimit {
        /// The scratch limit in bytes.
        limit: u64,
        /// What the guest left behind.
        used: u64,
    },
    /// See [`ErrorKind::ResourceLimit`].
    #[error("resource limit exceeded: {0}")]
    ResourceLimit(String),
    /// See [`ErrorKind::GuestError`].
    #[error("workload error: {0}")]
    GuestError(String),
    /// See [`ErrorKind::HostError`].
    #[error("host error: {0}")]
    HostError(String),
    /// See [`ErrorKind::Unpaid`].
    #[error("unpaid: debit note {note} (at {used} fuel) was not accepted in time")]
    Unpaid {
        /// Fuel done when the task stopped (the note's).
        used: u64,
        /// The note left unaccepted.
        note: u32,
    },
}

impl SandboxError {
    /// The stable kind of this failure.
    pub fn kind(&self) -> ErrorKind {
        match self {
            SandboxError::FuelExhausted { .. } => ErrorKind::FuelExhausted,
            SandboxError::MemoryLimit { .. } => ErrorKind::MemoryLimit,
            SandboxError::Timeout { .. } => ErrorKind::Timeout,
            SandboxError::StackOverflow { .. } => ErrorKind::StackOverflow,
            SandboxError::Trap(_) => ErrorKind::Trap,
            SandboxError::InvalidModule(_) => ErrorKind::InvalidModule,
            SandboxError::OutputLimit { .. } => ErrorKind::OutputLimit,
            SandboxError::DiskLimit { .. } => ErrorKind::DiskLimit,
            SandboxError::ResourceLimit(_) => ErrorKind::ResourceLimit,
            SandboxError::GuestError(_) => ErrorKind::GuestError,
            SandboxError::HostError(_) => ErrorKind::HostError,
            SandboxError::Unpaid { .. } => ErrorKind::Unpaid,
        }
    }
}
