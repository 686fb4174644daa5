//! A bounded pool of worker threads that run sandboxes.
//!
//! Sandboxes run guest code synchronously and may take seconds; they must
//! never run on an async reactor thread. The queue in front of the workers is
//! bounded: when it is full, `submit` says so at once (the host answers
//! `busy`) instead of queueing without limit.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use crossbeam_channel::{Sender, TrySendError, bounded};
use tokio::sync::oneshot;

use super::{Sandbox, Task, TaskResult};

type Job = (Task, oneshot::Sender<TaskResult>);

/// Worker threads plus their bounded queue. Dropping the pool lets the
/// workers finish queued tasks and exit; [`WorkerPool::shutdown`] instead
/// drops the queued tasks and waits for the threads.
pub struct WorkerPool {
    tx: Sender<Job>,
    workers: usize,
    /// Set by `shutdown`: workers drop queued tasks instead of running them.
    stopping: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

/// The queue is full: try again later or elsewhere.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("all {0} sandbox workers are busy and the queue is full")]
pub struct PoolBusy(pub usize);

impl WorkerPool {
    /// Starts `workers` threads (at least one) with room for `queue` waiting
    /// tasks.
    pub fn new(sandbox: Sandbox, workers: usize, queue: usize) -> Self {
        let workers = workers.max(1);
        let (tx, rx) = bounded::<Job>(queue);
        let stopping = Arc::new(AtomicBool::new(false));
        let threads = (0..workers)
            .map(|i| {
                let rx = rx.clone();
                let sandbox = sandbox.clone();
                let stopping = stopping.clone();
                std::thread::Builder::new()
                    .name(format!("sandbox-{i}"))
                    .spawn(move || {
                        // Fail closed: a worker that cannot confine itself
                        // runs nothing (with none left, the host answers
                        // `busy` once the queue is full).
                        if let Err(e) = crate::confine::enter_task_thread() {
                            tracing::error!(error = ?e, "sandbox worker not confined: it runs no task");
                            return;
                        }
                        for (task, reply) in rx {
                            if stopping.load(Ordering::Acquire) {
                                // Dropping `reply` tells the waiter the
                                // task did not run.
                                continue;
                            }
                            let _ = reply.send(sandbox.run(&task));
                        }
                    })
                    .expect("spawn sandbox worker")
            })
            .collect();
        WorkerPool {
            tx,
            workers,
            stopping,
            threads,
        }
    }

    /// Stops the pool: queued tasks are dropped without running (their
    /// receivers see the sender gone), tasks already in a sandbox finish
    /// (each is bounded by its fuel), and this returns once every worker
    /// thread has exited, so nothing the pool started outlives it. Blocks:
    /// call it off the async reactor (`spawn_blocking`).
    pub fn shutdown(self) {
        self.stopping.store(true, Ordering::Release);
        drop(self.tx);
        for t in self.threads {
            if t.join().is_err() {
                tracing::error!("a sandbox worker panicked");
            }
        }
    }

    /// Number of worker threads.
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Queues a task; the receiver yields its result.
    pub fn submit(&self, task: Task) -> Result<oneshot::Receiver<TaskResult>, PoolBusy> {
        let (tx, rx) = oneshot::channel();
        match self.tx.try_send((task, tx)) {
            Ok(()) => Ok(rx),
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                Err(PoolBusy(self.workers))
            }
        }
    }
}
