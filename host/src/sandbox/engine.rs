//! The process's wasmtime engines and the settings every task runs under.
//!
//! There are two engines, built once: the default one, and a "portable" one
//! with NaN canonicalization for tasks whose replicas may run on different CPU
//! architectures. Everything else (pooling, copy-on-write, metering, SIMD
//! determinism, stack bound) is identical.

use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// Maximum wasm stack per task. Deep recursion ends in `stack_overflow`
/// instead of touching the host's own stack.
pub const MAX_WASM_STACK: usize = 512 << 10;

/// Settings for building the engines. Defaults suit a volunteer host.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Concurrent instance slots in the pooling allocator. Each task of a
    /// component uses several core instances; bounds how many tasks can be
    /// alive at once. Costs virtual address space only (about 4 GiB per
    /// memory slot, reserved, not committed).
    pub pool_slots: u32,
    /// Linear-memory bytes kept resident in a slot between tasks. Resident
    /// pages are zeroed with memset instead of being unmapped: faster for the
    /// small tasks that dominate, a little RSS for large ones.
    pub keep_resident_bytes: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            pool_slots: 256,
            keep_resident_bytes: 64 << 10,
        }
    }
}

/// The engines of one process: one per determinism mode.
#[derive(Clone)]
pub struct Engines {
    /// The default engine: fast, bit-identical across runs on one
    /// architecture.
    pub native: Engine,
    /// NaN-canonicalizing engine: bit-identical across architectures at a
    /// measured cost of up to 2.5× on float-SIMD-heavy code.
    pub portable: Engine,
}

impl Engines {
    /// Builds both engines.
    pub fn new(cfg: &EngineConfig) -> wasmtime::Result<Self> {
        Ok(Engines {
            native: Engine::new(&config(cfg, false))?,
            portable: Engine::new(&config(cfg, true))?,
        })
    }

    /// The engine for a task.
    pub fn get(&self, portable: bool) -> &Engine {
        if portable {
            &self.portable
        } else {
            &self.native
        }
    }
}

fn config(cfg: &EngineConfig, portable: bool) -> Config {
    let mut pool = PoolingAllocationConfig::new();
    let slots = cfg.pool_slots.max(1);
    pool.total_core_instances(slots * 8)
        .total_component_instances(slots)
        .total_memories(slots * 2)
        .total_tables(slots * 4)
        .max_memories_per_module(super::limits::MAX_MEMORIES as u32)
        .max_memories_per_component(super::limits::MAX_MEMORIES as u32)
        .max_tables_per_module(super::limits::MAX_TABLES as u32)
        .max_tables_per_component(super::limits::MAX_TABLES as u32)
        .max_core_instances_per_component(super::limits::MAX_INSTANCES as u32)
        // The per-task limiter decides memory; the pool only has to be able
        // to hold the largest memory a 32-bit wasm can address.
        .max_memory_size(4 << 30)
        .table_elements(super::limits::MAX_TABLE_ELEMENTS)
        .linear_memory_keep_resident(cfg.keep_resident_bytes)
        .table_keep_resident(cfg.keep_resident_bytes)
        .max_core_instance_size(4 << 20)
        .max_component_instance_size(4 << 20);

    let mut c = Config::new();
    c.allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
        .memory_init_cow(true)
        // Deterministic metering: fuel. A task's time limit becomes a fuel
        // cap, so there is exactly one mechanism in guest code.
        .consume_fuel(true)
        .epoch_interruption(false)
        .wasm_simd(true)
        .wasm_relaxed_simd(true)
        .relaxed_simd_deterministic(true)
        .wasm_threads(false)
        .wasm_component_model(true)
        .max_wasm_stack(MAX_WASM_STACK)
        .cranelift_nan_canonicalization(portable)
        .parallel_compilation(true);
    c
}
