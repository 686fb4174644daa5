//! The scheduler: hands accepted jobs to the sandbox worker pool and turns
//! each result into a signed receipt and a stored response.
//!
//! Each job handed to the pool gets one task in a `JoinSet` owned here. The
//! task waits for the sandbox, then signs the receipt and writes the result
//! to the store itself, so neither the Ed25519 signature nor the sled write
//! runs on the swarm task; the loop only routes the finished response to
//! whoever waits for it. Shutdown aborts the tasks and joins the workers.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tokio::task::JoinSet;

use super::notes::Notes;
use super::unix_now;
use crate::identity::Identity;
use crate::node::faulty::{FaultState, Faulty};
use crate::proto::{
    self, Hash, JobId, JobResponse, JobSpec, ReceiptBody, ReceiptOutcome, SignedReceipt,
};
use crate::sandbox::{DataSource, Task, TaskData, TaskLimits, TaskResult, WasmModule, WorkerPool};
use crate::store::{BlobStore, HostStore};

/// Compiled modules' bytes kept in memory by hash (the sandbox caches the
/// compiled code; this saves re-reading and re-hashing the file).
const MODULES_IN_MEMORY: usize = 64;

/// A finished job, signed and stored, for the loop to route.
pub(super) struct Done {
    pub job_id: JobId,
    pub response: JobResponse,
    /// `ok` or the sandbox error's kind.
    pub status: String,
    pub fuel_used: u64,
    pub wall_us: u64,
    pub price: u64,
    pub peak_memory_bytes: u64,
    /// Its task class (for a Caste host's thresholds).
    pub class: Option<roles::TaskClass>,
}

/// Test-only: how a faulty host corrupts this answer.
#[derive(Debug, Clone, Copy)]
struct Lie {
    /// Append a byte to the output.
    append: bool,
    /// Poison a trained digits model.
    poison: bool,
    /// Claim more fuel than was used.
    overbill: bool,
}

/// What a job's task needs to sign and store its result.
struct Signer {
    id: Identity,
    price_per_mfuel: u64,
    store: HostStore,
}

pub(super) struct Scheduler {
    pool: WorkerPool,
    blobs: BlobStore,
    signer: Arc<Signer>,
    max_output_bytes: u64,
    /// Test-only: which answers are lies (counted here, on the loop, in
    /// dispatch order, so a sleeper turns after exactly N jobs).
    faulty: FaultState,
    /// One task per job handed to the pool; `None` when the pool dropped it
    /// at shutdown. At most one per job in flight.
    tasks: JoinSet<(JobId, Option<Done>)>,
    modules: HashMap<Hash, WasmModule>,
    /// Handed to the pool (queued there or in a sandbox).
    running: HashSet<JobId>,
    /// Task class of each job handed to the pool (for Caste thresholds).
    classes: HashMap<JobId, roles::TaskClass>,
    /// Where long tasks' workers wait for their debit notes' acceptance.
    notes: Notes,
}

impl Scheduler {
    pub fn new(
        pool: WorkerPool,
        blobs: BlobStore,
        store: HostStore,
        id: Identity,
        price_per_mfuel: u64,
        max_output_bytes: u64,
        faulty: Faulty,
    ) -> Self {
        Scheduler {
            pool,
            blobs,
            signer: Arc::new(Signer {
                id,
                price_per_mfuel,
                store,
            }),
            max_output_bytes,
            faulty: FaultState::new(faulty),
            tasks: JoinSet::new(),
            modules: HashMap::new(),
            running: HashSet::new(),
            classes: HashMap::new(),
            notes: Notes::none(),
        }
    }

    /// Long jobs are paid in debit notes on `notes`.
    pub fn with_notes(mut self, notes: Notes) -> Self {
        self.notes = notes;
        self
    }

    /// The debit-note board (the loop answers and accepts notes on it).
    pub fn notes(&self) -> &Notes {
        &self.notes
    }

    /// Sandbox workers.
    pub fn workers(&self) -> usize {
        self.pool.workers()
    }

    /// Jobs handed to the pool and not finished.
    pub fn running(&self) -> usize {
        self.running.len()
    }

    /// Whether `job_id` is with the pool.
    pub fn is_running(&self, job_id: &JobId) -> bool {
        self.running.contains(job_id)
    }

    fn module(&mut self, h: &Hash) -> Option<WasmModule> {
        if let Some(m) = self.modules.get(h) {
            return Some(m.clone());
        }
        let bytes = self.blobs.get(h).ok()??;
        let m = WasmModule::new(bytes);
        if self.modules.len() >= MODULES_IN_MEMORY {
            self.modules.clear();
        }
        self.modules.insert(*h, m.clone());
        Some(m)
    }

    /// Hands the task to the worker pool. `input` is the input's bytes if
    /// the host holds them already (verified); otherwise they are read from
    /// the blob store.
    pub fn dispatch(&mut self, job_id: JobId, spec: &JobSpec, input: Option<Vec<u8>>) {
        self.classes
            .insert(job_id, crate::node::placement::task_class(spec));
        let input = match input {
            Some(i) => Ok(Some(i)),
            // The empty input is never stored (admission checked its hash).
            None if spec.input_size == 0 => Ok(Some(Vec::new())),
            None => self.blobs.get(&spec.input_hash),
        };
        let signer = self.signer.clone();
        let lie = Lie {
            append: self.faulty.lies_now(),
            poison: self.faulty.poisons(),
            overbill: self.faulty.overbills(),
        };
        let data: Option<Vec<TaskData>> = spec
            .data
            .iter()
            .map(|d| {
                // The empty blob is never stored (admission checked its hash).
                let source = if d.size == 0 {
                    DataSource::Bytes(Default::default())
                } else {
                    DataSource::File(self.blobs.file(&d.hash)?)
                };
                Some(TaskData {
                    name: d.name.clone(),
                    hash: d.hash,
                    source,
                })
            })
            .collect();
        let (module, input, data) = match (self.module(&spec.module_hash), input, data) {
            (Some(m), Ok(Some(i)), Some(d)) => (m, i, d),
            _ => {
                tracing::error!(job = %proto::hex(&job_id), "blobs of an accepted job are missing");
                let r = missing_blob_result(spec);
                self.running.insert(job_id);
                self.tasks
                    .spawn(async move { (job_id, Some(signer.finish(job_id, r, lie))) });
                return;
            }
        };
        let mut task = Task::new(module, input);
        task.args = spec.args.clone();
        task.limits = TaskLimits {
            fuel: spec.fuel,
            memory_bytes: spec.memory_bytes,
            timeout_ms: spec.timeout_ms,
            output_bytes: self.max_output_bytes,
            scratch_bytes: TaskLimits::DEFAULT.scratch_bytes,
        };
        task.scratch = spec.scratch;
        task.data = data;
        task.portable = spec.portable;
        // Derived from module, input and args (not the job id): replicas of
        // one task are distinct jobs and must still agree bit for bit.
        task.seed = None;
        task.debit = self.notes.debit(
            job_id,
            spec.submitter,
            spec.fuel,
            (self.signer.id.clone(), self.signer.price_per_mfuel),
            || super::notes::accepted_in_store(&self.signer.store, &job_id),
        );
        tracing::debug!(job = %proto::hex(&job_id), "dispatch");
        match self.pool.submit(task) {
            Ok(rx) => {
                self.running.insert(job_id);
                self.tasks.spawn(async move {
                    let done = match rx.await {
                        Ok(r) => Some(signer.finish(job_id, r, lie)),
                        Err(_) => None,
                    };
                    (job_id, done)
                });
            }
            Err(e) => {
                // Cannot happen while admission bounds the jobs in flight by
                // the pool's queue; the job stays stored and runs at the
                // next start.
                tracing::error!(error = %e, "worker pool full");
            }
        }
    }

    /// The next finished job; `None` while nothing is with the pool.
    pub async fn next_done(&mut self) -> Option<Done> {
        loop {
            let (job_id, done) = match self.tasks.join_next().await? {
                Ok(x) => x,
                Err(e) => {
                    tracing::error!(error = %e, "a job's task failed");
                    continue;
                }
            };
            self.running.remove(&job_id);
            self.notes.finished(&job_id);
            let class = self.classes.remove(&job_id);
            if let Some(mut d) = done {
                d.class = class;
                return Some(d);
            }
        }
    }

    /// Stops: the job tasks end, queued tasks are dropped, running ones
    /// finish (bounded by their fuel) and the workers are joined.
    pub async fn shutdown(self) {
        let Scheduler {
            pool,
            mut tasks,
            notes,
            ..
        } = self;
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
        // Only now (no task is left to store an `unpaid` result) do workers
        // waiting at a debit note stop; their jobs run again at next start.
        notes.stop();
        if tokio::task::spawn_blocking(move || pool.shutdown())
            .await
            .is_err()
        {
            tracing::error!("sandbox workers did not stop cleanly");
        }
    }
}

impl Signer {
    /// Signs the receipt of a result and stores the response (off the loop).
    fn finish(&self, job_id: JobId, mut r: TaskResult, lie: Lie) -> Done {
        if lie.append
            && let Ok(out) = &mut r.outcome
        {
            // Test-only: a host that lies about the output, consistently.
            out.push(0x5a);
            r.counters.output_hash = *blake3::hash(out).as_bytes();
        }
        if lie.poison
            && let Ok(out) = &mut r.outcome
            && let Some(p) = crate::ai::digits::poison(out)
        {
            // Test-only: a federated-learning poisoner.
            *out = p;
            r.counters.output_hash = *blake3::hash(out).as_bytes();
        }
        if lie.overbill {
            // Test-only: a host that claims more fuel than it burnt.
            r.counters.fuel_used = r.counters.fuel_used.saturating_mul(2) + 1000;
        }
        let price = (u128::from(r.counters.fuel_used) * u128::from(self.price_per_mfuel))
            .div_ceil(1_000_000) as u64;
        let body = ReceiptBody {
            version: proto::VERSION,
            job_id,
            host_key: self.id.public_key(),
            module_hash: r.module_hash,
            input_hash: r.input_hash,
            output_hash: r.counters.output_hash,
            fuel_used: r.counters.fuel_used,
            peak_memory_bytes: r.counters.peak_memory_bytes,
            wall_us: r.counters.wall_us,
            price,
            timestamp: unix_now(),
            arch: r.arch.to_string(),
            outcome: match &r.outcome {
                Ok(_) => ReceiptOutcome::Ok,
                Err(e) => ReceiptOutcome::Error(e.kind().to_string()),
            },
            data_hashes: r.data_hashes.clone(),
        };
        let receipt = SignedReceipt::sign(&body, &self.id.signing);
        let status = match &r.outcome {
            Ok(_) => "ok".to_string(),
            Err(e) => e.kind().to_string(),
        };
        let response = match r.outcome {
            Ok(output) => JobResponse::Done {
                job_id,
                output,
                receipt,
            },
            Err(e) => JobResponse::Failed {
                job_id,
                kind: e.kind().to_string(),
                message: e.to_string(),
                receipt,
            },
        };
        if let Err(e) = self.store.finish(&job_id, &response) {
            tracing::error!(error = %e, "cannot store result");
        }
        Done {
            job_id,
            response,
            status,
            fuel_used: body.fuel_used,
            wall_us: body.wall_us,
            price,
            peak_memory_bytes: body.peak_memory_bytes,
            class: None,
        }
    }
}

/// The result of a job whose blobs vanished: reported as a host error, with
/// a receipt, rather than silently dropped.
fn missing_blob_result(spec: &JobSpec) -> TaskResult {
    TaskResult {
        outcome: Err(crate::sandbox::SandboxError::HostError(
            "the job's blobs are missing on this host".into(),
        )),
        counters: Default::default(),
        module_hash: spec.module_hash,
        input_hash: spec.input_hash,
        arch: crate::sandbox::ARCH,
        stderr: Vec::new(),
        report: Default::default(),
        cache: None,
        data_hashes: spec.data.iter().map(|d| d.hash).collect(),
    }
}
