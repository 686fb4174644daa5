//! A bounded pool of worker threads that run sandboxes.
//!
//! Sandboxes run guest code synchronously and may take seconds; they must
//! never run on an async reactor thread. The queue in front of the workers is
//! bounded: when it is full, `submit` says so at once (the host answers
//! `busy`) instead of queueing without limit.

use crossbeam_channel::{Sender, TrySendError, bounded};
use tokio::sync::oneshot;

use super::{Sandbox, Task, TaskResult};

type Job = (Task, oneshot::Sender<TaskResult>);

/// Worker threads plus their bounded queue. Dropping the pool lets the
/// workers finish queued tasks and exit.
pub struct WorkerPool {
    tx: Sender<Job>,
    workers: usize,
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
        for i in 0..workers {
            let rx = rx.clone();
            let sandbox = sandbox.clone();
            std::thread::Builder::new()
                .name(format!("sandbox-{i}"))
                .spawn(move || {
                    // Fail closed: a worker that cannot confine itself runs
                    // nothing (with none left, the host answers `busy`).
                    if let Err(e) = crate::confine::enter_task_thread() {
                        tracing::error!(error = ?e, "sandbox worker not confined: it runs no task");
                        return;
                    }
                    for (task, reply) in rx {
                        let _ = reply.send(sandbox.run(&task));
                    }
                })
                .expect("spawn sandbox worker");
        }
        WorkerPool { tx, workers }
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
