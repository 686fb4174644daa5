//! The process's wasmtime engines and the settings every task runs under.
//!
//! There are two engines, built once: the default one, and a "portable" one
//! with NaN canonicalization for tasks whose replicas may run on different CPU
//! architectures. Everything else (pooling, copy-on-write, metering, SIMD
//! determinism, stack bound) is identical. The meter is not an engine
//! setting: modules are rewritten before compiling (`sandbox::meter`).

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
    /// Linear-memory (and table) bytes kept resident in a slot between
    /// tasks. With the `PAGEMAP_SCAN` ioctl (Linux 6.7+, used when available)
    /// only the pages a task dirtied are reset, by copying them back from
    /// the module's image, instead of being unmapped and faulted in again by
    /// the next task. Default 2 MiB: a Rust guest's 1 MiB stack sits at the
    /// bottom of its memory and its data just above, so this covers what
    /// small tasks touch. Measured on the echo workloads: component cycle
    /// 14.5 → 7.5 µs, WASI p1 command 56 → 11.6 µs (64 KiB kept the p1
    /// command at 23 µs). Costs up to this much RSS per warm pool slot, and
    /// only for pages a task actually touched.
    pub keep_resident_bytes: usize,
    /// How guest code is metered. Always [`Metering::Meter`] in production;
    /// the other two exist for measurements and tests only, and no CLI flag,
    /// config file or network message can reach them.
    pub metering: Metering,
}

/// The meter in guest code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Metering {
    /// Our own deterministic meter (`sandbox::meter`): modules are rewritten
    /// once before compiling so that guest code counts its own work.
    #[default]
    Meter,
    /// wasmtime's fuel, one unit per operator executed: kept only as a
    /// cross-check of the meter in tests (the two must order tasks by cost
    /// the same way) and as a baseline in `examples/metering_cost.rs`.
    WasmtimeFuel,
    /// No meter at all: an unmetered task has no bound on its run time and
    /// no cost. Only for `examples/metering_cost.rs`, to measure what the
    /// meter costs against an otherwise identical engine.
    Off,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            pool_slots: 256,
            keep_resident_bytes: 2 << 20,
            metering: Metering::Meter,
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
        // Reset only dirty pages (see `keep_resident_bytes`); falls back to
        // memset + madvise on kernels without the ioctl.
        .pagemap_scan(wasmtime::Enabled::Auto)
        .max_core_instance_size(4 << 20)
        .max_component_instance_size(4 << 20);

    let mut c = Config::new();
    c.allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
        .memory_init_cow(true)
        // Deterministic metering is our meter, compiled into the guest's code
        // (`sandbox::meter`); wasmtime's fuel only on the cross-check engine.
        // A task's time limit becomes a cap on the count, so there is
        // exactly one mechanism in guest code.
        .consume_fuel(cfg.metering == Metering::WasmtimeFuel)
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
