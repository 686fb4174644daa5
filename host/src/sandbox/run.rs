//! Running one task: a fresh store per task with limits, metering and a
//! closed WASI world; traps become [`SandboxError`]s.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use wasmtime::component::{
    ComponentExportIndex, HasSelf, Instance as ComponentInstance, Linker as ComponentLinker,
    ResourceTable,
};
use wasmtime::{Engine, InstancePre, Linker, Store, StoreContextMut, Trap, Val};
use wasmtime_wasi::I32Exit;
use wasmtime_wasi::p2::bindings::sync::{Command, CommandPre};

use super::cache::{CacheSource, CacheStats, Code, CodeCache, CoreMeter};
use super::data::{DataRoot, MountError, TaskData};
use super::debit::{Debit, Segments, Unpaid};
use super::engine::{EngineConfig, Engines, MAX_WASM_STACK, Metering};
use super::guest::bindings::{Workload, WorkloadPre};
use super::guest::{ComponentMeter, ComponentState, CoreState, GuestReport};
use super::limits::{TaskLimiter, TaskLimits};
use super::scratch::ScratchRoot;
use super::{SandboxError, wasi};

/// A blake3 hash, as raw bytes.
pub type Hash = [u8; 32];

/// The architecture replicas must share to compare outputs bit for bit
/// (floats' NaN bit patterns differ between architectures unless the task
/// runs `portable`).
pub const ARCH: &str = std::env::consts::ARCH;

/// Settings of a [`Sandbox`].
#[derive(Debug, Clone, Default)]
pub struct SandboxConfig {
    /// Engine settings (pool size, resident memory).
    pub engine: EngineConfig,
    /// Where compiled code and scratch directories live. `None`: compiled code
    /// is cached in memory only and scratch goes to the system temp dir.
    pub data_dir: Option<PathBuf>,
    /// Fuel per second on this host, if already measured; otherwise
    /// [`Sandbox::new`] measures it (about 100 ms).
    pub fuel_per_sec: Option<u64>,
}

/// Module bytes with their blake3 hash, computed once: jobs name modules by
/// hash, and a task must not pay for hashing a module it has seen before.
#[derive(Debug, Clone)]
pub struct WasmModule {
    bytes: Arc<[u8]>,
    hash: Hash,
}

impl WasmModule {
    /// Hashes `bytes` (binary wasm or WAT text).
    pub fn new(bytes: impl Into<Arc<[u8]>>) -> Self {
        let bytes = bytes.into();
        let hash = *blake3::hash(&bytes).as_bytes();
        WasmModule { bytes, hash }
    }

    /// The bytes as submitted.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// blake3 of the bytes.
    pub fn hash(&self) -> Hash {
        self.hash
    }
}

/// One task: what to run, on what, within which limits.
#[derive(Debug, Clone)]
pub struct Task {
    /// The module, component or WAT text, as submitted.
    pub module: WasmModule,
    /// The input (a component's `run` argument, a command's stdin).
    pub input: Vec<u8>,
    /// The guest's argv after the program name.
    pub args: Vec<String>,
    /// Limits.
    pub limits: TaskLimits,
    /// Mount a fresh `/scratch` directory for this task.
    pub scratch: bool,
    /// Run on the NaN-canonicalizing engine (bit-identical across
    /// architectures, slower on float code).
    pub portable: bool,
    /// Seed of the guest's random numbers. `None`: derived from the module,
    /// input and args, so the same task is reproducible.
    pub seed: Option<Hash>,
    /// Read-only files mounted at `/data/NAME` (verified before the guest
    /// starts).
    pub data: Vec<TaskData>,
    /// Debit notes: pause at the first host call past every so many units
    /// and ask whether to go on (`sandbox::debit`). Components only: the
    /// notes ride on the component meter's `sync`; a core module's host
    /// calls are charged in a call hook that has no note schedule (not
    /// built).
    pub debit: Option<Debit>,
}

impl Task {
    /// A task with default limits and no scratch directory.
    pub fn new(module: WasmModule, input: Vec<u8>) -> Self {
        Task {
            module,
            input,
            args: Vec::new(),
            limits: TaskLimits::default(),
            scratch: false,
            portable: false,
            seed: None,
            data: Vec::new(),
            debit: None,
        }
    }
}

/// The thermal counters of one task: what it cost, measured by the host.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ThermalCounters {
    /// Fuel consumed (deterministic for a given module, input and args).
    pub fuel_used: u64,
    /// Peak linear memory across the task's memories, in bytes
    /// (deterministic).
    pub peak_memory_bytes: u64,
    /// Wall time of instantiate + run, in microseconds (not deterministic).
    pub wall_us: u64,
    /// Output length in bytes.
    pub output_bytes: u64,
    /// blake3 of the output.
    pub output_hash: Hash,
}

/// Everything a task produced, success or not.
#[derive(Debug, Clone)]
pub struct TaskResult {
    /// The output, or why there is none.
    pub outcome: Result<Vec<u8>, SandboxError>,
    /// What it cost.
    pub counters: ThermalCounters,
    /// blake3 of the module bytes as submitted.
    pub module_hash: Hash,
    /// blake3 of the input.
    pub input_hash: Hash,
    /// The host's architecture ([`ARCH`]).
    pub arch: &'static str,
    /// The guest's stderr (bounded).
    pub stderr: Vec<u8>,
    /// Progress and log lines from a workload component.
    pub report: GuestReport,
    /// Where the compiled code came from.
    pub cache: Option<CacheSource>,
    /// blake3 of each file mounted under `/data`, in the task's order.
    pub data_hashes: Vec<Hash>,
}

/// What a module was prepared as: linking is done once per module. The
/// meter's handles are `None` on the unmetered and fuel engines.
enum Prepared {
    Core(InstancePre<CoreState>, Option<CoreMeter>),
    Workload(WorkloadPre<ComponentState>, Option<ComponentExportIndex>),
    Command(CommandPre<ComponentState>, Option<ComponentExportIndex>),
}

/// The linkers of one engine.
struct Runtime {
    engine: Engine,
    core: Linker<CoreState>,
    component: ComponentLinker<ComponentState>,
}

impl Runtime {
    fn new(engine: Engine) -> wasmtime::Result<Self> {
        let mut core = Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_sync(&mut core, |s: &mut CoreState| &mut s.wasi)?;
        super::sleep::shadow_core(&mut core)?;
        let mut component: ComponentLinker<ComponentState> = ComponentLinker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut component)?;
        super::sleep::shadow_component(&mut component)?;
        // The world's `host` interface; `tensor` and `data` charge through
        // the meter, so they are added by hand (`sandbox::tensor`).
        super::guest::bindings::biop2p::workload::host::add_to_linker::<_, HasSelf<GuestReport>>(
            &mut component,
            |s| &mut s.report,
        )?;
        super::tensor::add_to_linker(&mut component)?;
        // The metered component's lines to the host (`sandbox::meter`).
        component.root().func_wrap(
            super::meter::SYNC_IMPORT,
            |mut store: StoreContextMut<'_, ComponentState>, (counter,): (i64,)| {
                store.data_mut().meter.sync(counter).map(|c| (c,))
            },
        )?;
        component.root().func_wrap(
            super::meter::SETTLE_IMPORT,
            |mut store: StoreContextMut<'_, ComponentState>, (counter,): (i64,)| {
                store.data_mut().meter.settle(counter).map(|c| (c,))
            },
        )?;
        Ok(Runtime {
            engine,
            core,
            component,
        })
    }

    fn prepare(&self, code: Code) -> Result<Prepared, SandboxError> {
        let invalid = |e: wasmtime::Error| SandboxError::InvalidModule(format!("{e:#}"));
        match code {
            Code::Core(module, meter) => {
                if module.get_export("_start").is_none() {
                    return Err(SandboxError::InvalidModule(
                        "core module has no `_start` export (expected a WASI command)".into(),
                    ));
                }
                Ok(Prepared::Core(
                    self.core.instantiate_pre(&module).map_err(invalid)?,
                    meter,
                ))
            }
            Code::Component(component, metered) => {
                let get = if metered {
                    Some(
                        component
                            .get_export_index(None, super::meter::GET_EXPORT)
                            .ok_or_else(|| {
                                SandboxError::InvalidModule(
                                    "the meter's accessor is missing".into(),
                                )
                            })?,
                    )
                } else {
                    None
                };
                let pre = self
                    .component
                    .instantiate_pre(&component)
                    .map_err(invalid)?;
                if let Ok(w) = WorkloadPre::new(pre.clone()) {
                    return Ok(Prepared::Workload(w, get));
                }
                CommandPre::new(pre)
                    .map(|c| Prepared::Command(c, get))
                    .map_err(|_| {
                        SandboxError::InvalidModule(
                            "component exports neither `run` of biop2p:workload nor wasi:cli/run"
                                .into(),
                        )
                    })
            }
        }
    }
}

/// The sandbox of one process: engines, linkers, compiled-code cache and
/// scratch root. Cheap to clone; shared by the worker threads.
#[derive(Clone)]
pub struct Sandbox {
    inner: Arc<Inner>,
}

struct Inner {
    runtimes: [Runtime; 2],
    cache: CodeCache<Prepared>,
    scratch: ScratchRoot,
    data: DataRoot,
    fuel_per_sec: AtomicU64,
    metering: Metering,
    _scratch_tmp: Option<tempfile::TempDir>,
}

impl Sandbox {
    /// Builds the engines and linkers, opens the caches, and measures this
    /// host's fuel rate if `config` does not carry one.
    pub fn new(config: SandboxConfig) -> Result<Self, SandboxError> {
        let host = |e: &dyn std::fmt::Display| SandboxError::HostError(e.to_string());
        let engines = Engines::new(&config.engine).map_err(|e| host(&e))?;
        let cache = CodeCache::new(config.data_dir.as_deref(), &engines, config.engine.metering)
            .map_err(|e| host(&e))?;
        let (scratch_path, tmp) = match &config.data_dir {
            Some(d) => (d.join("scratch"), None),
            None => {
                let t = tempfile::Builder::new()
                    .prefix("biop2p-scratch")
                    .tempdir()
                    .map_err(|e| host(&e))?;
                (t.path().join("scratch"), Some(t))
            }
        };
        let scratch = ScratchRoot::open(&scratch_path).map_err(|e| host(&e))?;
        let data =
            DataRoot::open(&scratch_path.with_file_name("data-mounts")).map_err(|e| host(&e))?;
        let runtimes = [
            Runtime::new(engines.native.clone()).map_err(|e| host(&e))?,
            Runtime::new(engines.portable.clone()).map_err(|e| host(&e))?,
        ];
        let sandbox = Sandbox {
            inner: Arc::new(Inner {
                runtimes,
                cache,
                scratch,
                data,
                fuel_per_sec: AtomicU64::new(config.fuel_per_sec.unwrap_or(0)),
                metering: config.engine.metering,
                _scratch_tmp: tmp,
            }),
        };
        if config.fuel_per_sec.is_none() {
            let rate = sandbox.calibrate()?;
            sandbox.inner.fuel_per_sec.store(rate, Ordering::Relaxed);
        }
        Ok(sandbox)
    }

    /// Fuel units this host executes per second: the rate at which a
    /// `timeout` becomes a fuel cap, and what adverts quote.
    pub fn fuel_per_sec(&self) -> u64 {
        self.inner.fuel_per_sec.load(Ordering::Relaxed)
    }

    /// Compiled-code cache counters.
    pub fn cache_stats(&self) -> &CacheStats {
        &self.inner.cache.stats
    }

    /// Measures fuel per second with a fixed loop of arithmetic and memory
    /// operations (about 100 ms). The loop is the reference workload of the
    /// unit: one fuel ≈ one wasm operator of such code.
    pub fn calibrate(&self) -> Result<u64, SandboxError> {
        let mut task = Task::new(WasmModule::new(CALIBRATION_WAT.as_bytes()), Vec::new());
        task.limits.fuel = u64::MAX / 4;
        // Warm-up compiles; then the fastest of a few runs is taken, so that a
        // moment of load on the host does not halve the rate (seen: 17e9
        // instead of 34e9 fuel/s from a single run), which would make every
        // `timeout` half as long as asked.
        self.run(&task).outcome?;
        let mut best_us = u64::MAX;
        let mut fuel = 0;
        for _ in 0..CALIBRATION_RUNS {
            let r = self.run(&task);
            r.outcome?;
            best_us = best_us.min(r.counters.wall_us.max(1));
            fuel = r.counters.fuel_used;
        }
        let secs = best_us as f64 / 1e6;
        Ok((fuel as f64 / secs) as u64)
    }

    /// Runs one task to completion on the calling thread in a fresh store.
    /// Never panics on guest behaviour: every failure is in `outcome`.
    pub fn run(&self, task: &Task) -> TaskResult {
        let module_hash = task.module.hash();
        let input_hash = *blake3::hash(&task.input).as_bytes();
        let mut result = TaskResult {
            outcome: Ok(Vec::new()),
            counters: ThermalCounters::default(),
            module_hash,
            input_hash,
            arch: ARCH,
            stderr: Vec::new(),
            report: GuestReport::default(),
            cache: None,
            data_hashes: task.data.iter().map(|d| d.hash).collect(),
        };
        let mut budget = Budget::new(&task.limits, self.fuel_per_sec());
        budget.mode = self.inner.metering;
        budget.debit = task
            .debit
            .clone()
            .filter(|d| d.every > 0 && d.every < budget.cap);
        let rt = &self.inner.runtimes[usize::from(task.portable)];
        let prepared = self.inner.cache.get_or_insert(
            &rt.engine,
            module_hash,
            task.portable,
            task.module.bytes(),
            |code| rt.prepare(code),
            SandboxError::InvalidModule,
        );
        let prepared = match prepared {
            Ok((p, source)) => {
                result.cache = Some(source);
                p
            }
            Err(e) => {
                result.outcome = Err(e);
                return result;
            }
        };
        let seed = task
            .seed
            .unwrap_or_else(|| task_seed(&module_hash, &input_hash, &task.args));
        let scratch = if task.scratch {
            match self.inner.scratch.create(&hex8(&seed)) {
                Ok(d) => Some(d),
                Err(e) => {
                    result.outcome = Err(SandboxError::HostError(format!(
                        "could not create scratch dir: {e}"
                    )));
                    return result;
                }
            }
        } else {
            None
        };
        let output_limit = usize::try_from(task.limits.output_bytes).unwrap_or(usize::MAX);
        let (mut builder, mut stdio) = wasi::builder(
            seed,
            match &*prepared {
                // A workload gets its input as the argument of `run`.
                Prepared::Workload(..) => Vec::new(),
                _ => task.input.clone(),
            },
            output_limit,
            &task.args,
        );
        if let Some(dir) = &scratch
            && let Err(e) = builder.preopened_dir(
                dir.host_path(),
                "/scratch",
                wasmtime_wasi::FsPerms::ReadWrite,
            )
        {
            result.outcome = Err(SandboxError::HostError(format!(
                "could not mount scratch: {e}"
            )));
            return result;
        }
        let data = if task.data.is_empty() {
            None
        } else {
            match self.inner.data.mount(&hex8(&seed), &task.data) {
                Ok(m) => Some(m),
                Err(e) => {
                    result.outcome = Err(SandboxError::HostError(match e {
                        MountError::Mismatch(m) => m,
                        MountError::Io(e) => format!("could not prepare /data: {e}"),
                    }));
                    return result;
                }
            }
        };
        if let Some(m) = &data
            && let Err(e) =
                builder.preopened_dir(m.host_path(), "/data", wasmtime_wasi::FsPerms::ReadOnly)
        {
            result.outcome = Err(SandboxError::HostError(format!(
                "could not mount /data: {e}"
            )));
            return result;
        }
        if let Some(m) = &data {
            stdio.data = task
                .data
                .iter()
                .map(|f| (f.name.clone(), m.host_path().join(&f.name)))
                .collect();
        }
        let limiter = TaskLimiter::new(task.limits.memory_bytes);
        let start = Instant::now();
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match &*prepared {
            Prepared::Core(pre, meter) => {
                run_core(pre, meter.as_ref(), builder, limiter, &budget, &stdio)
            }
            Prepared::Workload(pre, get) => {
                run_workload(pre, *get, builder, limiter, &budget, &task.input, &stdio)
            }
            Prepared::Command(pre, get) => {
                run_command(pre, *get, builder, limiter, &budget, &stdio)
            }
        }));
        let wall_us = start.elapsed().as_micros() as u64;
        let (
            outcome,
            Left {
                left: fuel_left,
                exhausted,
            },
            limiter,
            report,
        ) = match run {
            Ok(r) => r,
            Err(_) => {
                result.outcome = Err(SandboxError::HostError("sandbox panicked".into()));
                return result;
            }
        };
        let overflow = stdio.stdout.overflowed() || stdio.stderr.overflowed();
        let mut outcome = outcome.map_err(|e| {
            if overflow {
                SandboxError::OutputLimit {
                    limit: task.limits.output_bytes,
                }
            } else {
                classify(e, &limiter, &budget, fuel_left, exhausted)
            }
        });
        if matches!(&outcome, Ok(out) if out.len() as u64 > task.limits.output_bytes) {
            outcome = Err(SandboxError::OutputLimit {
                limit: task.limits.output_bytes,
            });
        }
        if let Some(dir) = &scratch {
            match dir.used_bytes() {
                Ok(used) if used > task.limits.scratch_bytes => {
                    outcome = Err(SandboxError::DiskLimit {
                        limit: task.limits.scratch_bytes,
                        used,
                    });
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "could not measure scratch dir"),
            }
        }
        drop(scratch);
        drop(data);
        let output: &[u8] = outcome.as_deref().unwrap_or(&[]);
        result.counters = ThermalCounters {
            fuel_used: budget.cap - fuel_left,
            peak_memory_bytes: limiter.peak_memory as u64,
            wall_us,
            output_bytes: output.len() as u64,
            output_hash: *blake3::hash(output).as_bytes(),
        };
        result.stderr = stdio.stderr.take();
        result.report = report;
        result.outcome = outcome;
        result
    }
}

/// The units a task may use and which limit set it.
struct Budget {
    cap: u64,
    /// Debit notes of a long task (`sandbox::debit`).
    debit: Option<Debit>,
    from_timeout: Option<u64>,
    /// The meter of the engine ([`EngineConfig::metering`]).
    mode: Metering,
}

impl Budget {
    fn new(limits: &TaskLimits, fuel_per_sec: u64) -> Self {
        let timeout_cap = limits.timeout_ms.map(|ms| {
            (u128::from(ms) * u128::from(fuel_per_sec) / 1000).min(MAX_BUDGET as u128) as u64
        });
        match timeout_cap {
            Some(t) if t < limits.fuel.min(MAX_BUDGET) => Budget {
                cap: t,
                debit: None,
                from_timeout: limits.timeout_ms,
                mode: Metering::Meter,
            },
            _ => Budget {
                cap: limits.fuel.min(MAX_BUDGET),
                debit: None,
                from_timeout: None,
                mode: Metering::Meter,
            },
        }
    }
}

/// The seed of a task's randomness: same task, same bytes.
fn task_seed(module: &Hash, input: &Hash, args: &[String]) -> Hash {
    let mut h = blake3::Hasher::new_derive_key("biop2p task seed v1");
    h.update(module).update(input);
    for a in args {
        h.update(&(a.len() as u64).to_le_bytes())
            .update(a.as_bytes());
    }
    *h.finalize().as_bytes()
}

fn hex8(h: &Hash) -> String {
    h[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// The largest budget the meter's signed 64-bit counter holds.
const MAX_BUDGET: u64 = i64::MAX as u64;

/// What is left of the budget when a task stops, and whether it ran out.
struct Left {
    left: u64,
    exhausted: bool,
}

type RunOutcome = (wasmtime::Result<Vec<u8>>, Left, TaskLimiter, GuestReport);

fn run_core(
    pre: &InstancePre<CoreState>,
    meter: Option<&CoreMeter>,
    mut builder: wasmtime_wasi::WasiCtxBuilder,
    limiter: TaskLimiter,
    budget: &Budget,
    stdio: &wasi::Stdio,
) -> RunOutcome {
    let mut store = Store::new(
        pre.module().engine(),
        CoreState {
            wasi: builder.build_p1(),
            limiter,
            time: stdio.time.clone(),
            meter: None,
        },
    );
    store.limiter(|s| &mut s.limiter);
    let r = (|| {
        fuel(&mut store, budget)?;
        let instance = pre.instantiate(&mut store)?;
        if let Some(m) = meter {
            // No guest code has run yet: the rewriter moved any start
            // function out of instantiation, to run once the counter is set.
            let counter = instance
                .get_global(&mut store, &m.counter)
                .ok_or_else(|| wasmtime::format_err!("the meter's counter is missing"))?;
            counter.set(&mut store, Val::I64(budget.cap as i64))?;
            store.data_mut().meter = Some(counter);
            store.call_hook(charge_host_calls_meter);
            if let Some(s) = &m.start {
                instance
                    .get_typed_func::<(), ()>(&mut store, s)?
                    .call(&mut store, ())?;
            }
        }
        let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
        match start.call(&mut store, ()) {
            Ok(()) => Ok(()),
            Err(e) => match e.downcast_ref::<I32Exit>() {
                Some(I32Exit(0)) => Ok(()),
                _ => Err(e),
            },
        }
    })();
    let left = match store.data().meter {
        Some(g) => {
            let v = g.get(&mut store).i64().unwrap_or(-1);
            Left {
                left: v.max(0) as u64,
                exhausted: v < 0,
            }
        }
        None => fuel_left(&store, budget),
    };
    let out = r.map(|()| stdio.stdout.take());
    let CoreState { limiter, .. } = store.into_data();
    (out, left, limiter, GuestReport::default())
}

fn component_store(
    engine: &Engine,
    mut builder: wasmtime_wasi::WasiCtxBuilder,
    limiter: TaskLimiter,
    stdio: &wasi::Stdio,
) -> Store<ComponentState> {
    let mut store = Store::new(
        engine,
        ComponentState {
            wasi: builder.build(),
            table: ResourceTable::new(),
            limiter,
            report: GuestReport::default(),
            time: stdio.time.clone(),
            meter: ComponentMeter::default(),
            data: stdio.data.clone(),
        },
    );
    store.limiter(|s| &mut s.limiter);
    store
}

/// On the fuel cross-check engine, gives the store its fuel and the
/// host-call charge. The meter is set up after instantiation instead.
fn fuel<T: 'static>(store: &mut Store<T>, budget: &Budget) -> wasmtime::Result<()> {
    if budget.mode == Metering::WasmtimeFuel {
        store.call_hook(charge_host_calls);
        store.set_fuel(budget.cap)?;
    }
    Ok(())
}

/// Fuel left in the store on the fuel engine; the whole cap on the unmetered
/// benchmark engine.
fn fuel_left<T: 'static>(store: &Store<T>, budget: &Budget) -> Left {
    if budget.mode == Metering::WasmtimeFuel {
        let left = store.get_fuel().unwrap_or(0);
        Left {
            left,
            exhausted: false,
        }
    } else {
        Left {
            left: budget.cap,
            exhausted: false,
        }
    }
}

/// The host-call charge of a metered core module, taken from its counter.
fn charge_host_calls_meter(
    mut ctx: StoreContextMut<'_, CoreState>,
    hook: wasmtime::CallHook,
) -> wasmtime::Result<()> {
    if matches!(hook, wasmtime::CallHook::CallingHost)
        && let Some(g) = ctx.data().meter
    {
        let left = g.get(&mut ctx).i64().unwrap_or(-1);
        let charge = HOST_CALL_FUEL as i64;
        if left < charge {
            g.set(&mut ctx, Val::I64(-1))?;
            return Err(Trap::OutOfFuel.into());
        }
        g.set(&mut ctx, Val::I64(left - charge))?;
    }
    Ok(())
}

/// The count a metered component ends with: read through the meter's
/// accessor after a normal return; after a trap (when wasmtime refuses
/// further calls into the component) the count at the guest's last host
/// call.
fn component_left(
    store: &mut Store<ComponentState>,
    instance: Option<&ComponentInstance>,
    get: Option<ComponentExportIndex>,
    returned: bool,
    budget: &Budget,
) -> Left {
    let Some(get) = get else {
        return fuel_left(store, budget);
    };
    let m = &store.data().meter;
    if m.exhausted {
        return Left {
            left: 0,
            exhausted: true,
        };
    }
    let last = m.last;
    // A charge not yet settled (the guest returned, or trapped, right
    // after the host call) is still owed.
    let owed = m.pending;
    if returned && let Some(instance) = instance {
        let read = (|| {
            let f = instance.get_typed_func::<(), (i64,)>(&mut *store, get)?;
            let (v,) = f.call(&mut *store, ())?;
            wasmtime::Result::<i64>::Ok(v)
        })();
        if let Ok(v) = read {
            let v = v.saturating_sub(owed);
            return Left {
                left: v.max(0) as u64,
                exhausted: v < 0,
            };
        }
    }
    Left {
        left: last.max(0) as u64,
        exhausted: false,
    }
}

/// Fuel charged for each call from the guest into the host (WASI and the
/// workload interface). Host code is not counted by the meter in guest code, so
/// without a charge a guest could keep a worker busy in host code (a loop
/// of failing writes) for far longer than its fuel suggests. 10,000 fuel is
/// about the cost of a cheap WASI call at the calibrated rate; the count of
/// host calls is deterministic, so the charge keeps fuel deterministic.
pub const HOST_CALL_FUEL: u64 = 10_000;

fn charge_host_calls<T>(
    mut ctx: wasmtime::StoreContextMut<'_, T>,
    hook: wasmtime::CallHook,
) -> wasmtime::Result<()> {
    if matches!(hook, wasmtime::CallHook::CallingHost) {
        let left = ctx.get_fuel()?;
        if left < HOST_CALL_FUEL {
            ctx.set_fuel(0)?;
            return Err(Trap::OutOfFuel.into());
        }
        ctx.set_fuel(left - HOST_CALL_FUEL)?;
    }
    Ok(())
}

fn run_workload(
    pre: &WorkloadPre<ComponentState>,
    get: Option<ComponentExportIndex>,
    builder: wasmtime_wasi::WasiCtxBuilder,
    limiter: TaskLimiter,
    budget: &Budget,
    input: &[u8],
    stdio: &wasi::Stdio,
) -> RunOutcome {
    let mut store = component_store(pre.engine(), builder, limiter, stdio);
    store.data_mut().meter.budget = Segments::new(budget.cap, budget.debit.clone());
    let mut instance = None;
    let mut returned = false;
    let r = (|| {
        fuel(&mut store, budget)?;
        let i = pre.instance_pre().instantiate(&mut store)?;
        instance = Some(i);
        let w = Workload::new(&mut store, &i)?;
        let out = w.call_run(&mut store, input)?;
        returned = true;
        match out {
            Ok(out) => Ok(out),
            Err(msg) => Err(wasmtime::Error::new(GuestFailure(truncate(msg)))),
        }
    })();
    let left = component_left(&mut store, instance.as_ref(), get, returned, budget);
    let s = store.into_data();
    (r, left, s.limiter, s.report)
}

fn run_command(
    pre: &CommandPre<ComponentState>,
    get: Option<ComponentExportIndex>,
    builder: wasmtime_wasi::WasiCtxBuilder,
    limiter: TaskLimiter,
    budget: &Budget,
    stdio: &wasi::Stdio,
) -> RunOutcome {
    let mut store = component_store(pre.engine(), builder, limiter, stdio);
    store.data_mut().meter.budget = Segments::new(budget.cap, budget.debit.clone());
    let mut instance = None;
    let mut returned = false;
    let r = (|| {
        fuel(&mut store, budget)?;
        let i = pre.instance_pre().instantiate(&mut store)?;
        instance = Some(i);
        let cmd = Command::new(&mut store, &i)?;
        match cmd.wasi_cli_run().call_run(&mut store) {
            Ok(Ok(())) => {
                returned = true;
                Ok(stdio.stdout.take())
            }
            Ok(Err(())) => {
                returned = true;
                Err(wasmtime::Error::new(GuestFailure(
                    "command exited with failure".into(),
                )))
            }
            // `exit` is a host call: the count at it is exact.
            Err(e) => match e.downcast_ref::<I32Exit>() {
                Some(I32Exit(0)) => Ok(stdio.stdout.take()),
                _ => Err(e),
            },
        }
    })();
    let left = component_left(&mut store, instance.as_ref(), get, returned, budget);
    let s = store.into_data();
    (r, left, s.limiter, s.report)
}

/// A workload's own error, carried through `wasmtime::Error` to `classify`.
#[derive(Debug)]
struct GuestFailure(String);

impl std::fmt::Display for GuestFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for GuestFailure {}

/// Guest-provided messages are cut to this many bytes.
const MAX_GUEST_MESSAGE: usize = 1024;

fn truncate(mut s: String) -> String {
    if s.len() > MAX_GUEST_MESSAGE {
        let mut cut = MAX_GUEST_MESSAGE;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

/// Turns whatever stopped the guest into its stable kind. Limiter flags come
/// first: a denied allocation usually reaches us as the guest's own abort.
fn classify(
    e: wasmtime::Error,
    limiter: &TaskLimiter,
    budget: &Budget,
    fuel_left: u64,
    exhausted: bool,
) -> SandboxError {
    if exhausted {
        return out_of_budget(budget, fuel_left);
    }
    if let Some(requested) = limiter.memory_denied {
        return SandboxError::MemoryLimit {
            limit: limiter_limit(limiter),
            requested: requested as u64,
        };
    }
    if limiter.table_denied {
        return SandboxError::ResourceLimit(format!(
            "table elements over {}",
            super::limits::MAX_TABLE_ELEMENTS
        ));
    }
    if let Some(u) = e.downcast_ref::<Unpaid>() {
        return SandboxError::Unpaid {
            used: u.fuel,
            note: u.seq,
        };
    }
    if let Some(g) = e.downcast_ref::<GuestFailure>() {
        return SandboxError::GuestError(g.0.clone());
    }
    if let Some(I32Exit(code)) = e.downcast_ref::<I32Exit>() {
        return SandboxError::GuestError(format!("exit code {code}"));
    }
    if let Some(trap) = e.downcast_ref::<Trap>() {
        return match trap {
            Trap::OutOfFuel => out_of_budget(budget, fuel_left),
            Trap::StackOverflow => SandboxError::StackOverflow {
                stack_bytes: MAX_WASM_STACK,
            },
            other => SandboxError::Trap(format!("{other}")),
        };
    }
    let msg = format!("{e:#}");
    if msg.contains("resource limit") || msg.contains("exceeds") {
        return SandboxError::ResourceLimit(msg);
    }
    SandboxError::Trap(msg)
}

/// `fuel_exhausted`, or `timeout` when the cap came from `--timeout`.
fn out_of_budget(budget: &Budget, fuel_left: u64) -> SandboxError {
    match budget.from_timeout {
        Some(timeout_ms) => SandboxError::Timeout {
            timeout_ms,
            fuel_cap: budget.cap,
        },
        None => SandboxError::FuelExhausted {
            used: budget.cap - fuel_left,
            limit: budget.cap,
        },
    }
}

fn limiter_limit(l: &TaskLimiter) -> u64 {
    l.limit() as u64
}

/// Measured runs of the calibration loop (about 15 ms each).
const CALIBRATION_RUNS: usize = 5;

/// The calibration loop: integer arithmetic and memory traffic in a 64 KiB
/// page, 20 million iterations.
const CALIBRATION_WAT: &str = r#"
(module
  (memory 1)
  (func (export "_start") (local $i i32) (local $acc i32)
    (loop $l
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (i32.store (i32.and (i32.mul (local.get $i) (i32.const 4)) (i32.const 0xfffc)) (local.get $acc))
      (local.set $acc (i32.add (local.get $acc)
        (i32.load (i32.and (i32.mul (local.get $i) (i32.const 12)) (i32.const 0xfffc)))))
      (local.set $acc (i32.xor (local.get $acc) (i32.shl (local.get $i) (i32.const 3))))
      (br_if $l (i32.lt_u (local.get $i) (i32.const 20000000))))))
"#;
