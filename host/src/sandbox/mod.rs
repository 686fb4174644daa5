//! The sandbox: runs one task in a brand-new, metered wasmtime instance.
//!
//! One [`Engines`] per process (pooling allocator, copy-on-write memory
//! images, deterministic SIMD, bounded stack) and our own meter, compiled
//! into each module by a rewriter run before compiling; per task a new
//! `Store` with its own limits, WASI context and optional scratch directory,
//! all dropped when the task ends (CBADU: clean before and after use).

mod cache;
mod data;
mod debit;
mod engine;
mod error;
mod guest;
mod limits;
mod meter;
mod pool;
mod run;
mod scratch;
mod sleep;
mod tensor;
mod wasi;

pub use cache::{CacheSource, CacheStats};
pub use data::{DataSource, TaskData};
pub use debit::{Debit, NoteHook};
pub use engine::{EngineConfig, Engines, MAX_WASM_STACK, Metering};
pub use error::{ErrorKind, SandboxError};
pub use guest::GuestReport;
pub use limits::TaskLimits;
pub use pool::{PoolBusy, WorkerPool};
pub use run::{ARCH, Hash, Sandbox, SandboxConfig, Task, TaskResult, ThermalCounters, WasmModule};
