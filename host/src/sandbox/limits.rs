//! Per-task limits and the store limiter that enforces them and measures
//! peak memory (one of the thermal counters).

use serde::{Deserialize, Serialize};

/// What one task may use. Every field is a hard bound: the sandbox stops the
/// task with a specific [`super::ErrorKind`] when one is crossed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskLimits {
    /// Metering budget in units of our meter (`sandbox::meter`): one unit
    /// per wasm operator, counted statically per function entry and loop
    /// header, plus bulk memory and table operations by size and
    /// [`HOST_CALL_FUEL`](super::run::HOST_CALL_FUEL) per call into the host.
    /// Deterministic: the same task always uses the same count, so replicas
    /// can compare it and prices can be quoted in it. The field keeps its
    /// name (`fuel`) because it is an interface. Measured here: about 15e9
    /// units/s on the calibration loop on a loaded machine.
    pub fuel: u64,
    /// Linear memory cap across all memories of the task, in bytes.
    pub memory_bytes: u64,
    /// Optional time budget. Converted into a fuel cap at this host's measured
    /// fuel-per-second rate, so that time stays deterministic across replicas:
    /// a task that would run too long fails with `timeout` on every host of
    /// similar speed, never on one and not the other because of load.
    pub timeout_ms: Option<u64>,
    /// Output bytes the task may produce (stdout or the `run` result).
    pub output_bytes: u64,
    /// Bytes the task may leave in its scratch directory.
    pub scratch_bytes: u64,
}

impl TaskLimits {
    /// Defaults for a task that does not say: 10 billion fuel (a third of a
    /// second to a second of compute on a modern core, by the rates on
    /// [`TaskLimits::fuel`]), 256 MiB memory, 16 MiB output, 64 MiB scratch,
    /// no timeout beyond the fuel.
    pub const DEFAULT: TaskLimits = TaskLimits {
        fuel: 10_000_000_000,
        memory_bytes: 256 << 20,
        timeout_ms: None,
        output_bytes: 16 << 20,
        scratch_bytes: 64 << 20,
    };
}

impl Default for TaskLimits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Table elements a task may hold in total. Tables are host memory (a pointer
/// per element) that the linear-memory limit does not count.
pub(crate) const MAX_TABLE_ELEMENTS: usize = 100_000;
/// Core instances per task (a component is several core instances).
pub(crate) const MAX_INSTANCES: usize = 32;
/// Tables per task.
pub(crate) const MAX_TABLES: usize = 32;
/// Linear memories per task.
pub(crate) const MAX_MEMORIES: usize = 16;

/// The store's [`wasmtime::ResourceLimiter`]: enforces the memory and table
/// caps and records the peak linear memory across all of the task's memories.
///
/// Denials are recorded in flags so that the failure can be classified even
/// when it reaches us as a guest trap (a Rust guest aborts with `unreachable`
/// when its allocator cannot grow memory).
#[derive(Debug)]
pub(crate) struct TaskLimiter {
    memory_limit: usize,
    current_memory: usize,
    pub(crate) peak_memory: usize,
    pub(crate) memory_denied: Option<usize>,
    table_elements: usize,
    pub(crate) table_denied: bool,
}

impl TaskLimiter {
    /// The memory limit in bytes.
    pub(crate) fn limit(&self) -> usize {
        self.memory_limit
    }

    pub(crate) fn new(memory_limit: u64) -> Self {
        TaskLimiter {
            memory_limit: usize::try_from(memory_limit).unwrap_or(usize::MAX),
            current_memory: 0,
            peak_memory: 0,
            memory_denied: None,
            table_elements: 0,
            table_denied: false,
        }
    }
}

impl wasmtime::ResourceLimiter for TaskLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self.current_memory - current.min(self.current_memory) + desired;
        if total > self.memory_limit {
            self.memory_denied = Some(total);
            return Ok(false);
        }
        self.current_memory = total;
        self.peak_memory = self.peak_memory.max(total);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self.table_elements - current.min(self.table_elements) + desired;
        if total > MAX_TABLE_ELEMENTS {
            self.table_denied = true;
            return Ok(false);
        }
        self.table_elements = total;
        Ok(true)
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}
