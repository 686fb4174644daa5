//! The journal's flusher: the one place that waits for sled to reach the
//! disk, off the swarm task. Group commit: every write queued while a flush
//! runs is made durable by the next one, so a burst of detached jobs costs
//! one fsync, not one each.

use tokio::sync::mpsc;

use super::Reply;
use crate::proto::JobResponse;
use crate::store::HostStore;

/// What waits for the next flush: an answer to send once what it confirms
/// is durable (`Accepted`, `Settled`), or only the flush itself (a result
/// nobody waits for).
pub(super) type FlushWaiter = Option<(Reply, JobResponse)>;

/// Flushes the store for every batch of writes queued while the previous
/// flush ran, then hands the acknowledgements that waited on it back to the
/// host loop. One flush at a time: concurrent sled flushes stalled.
///
/// The queue is unbounded on purpose: each entry is one accepted job (or
/// one finished job's flush), and accepted jobs are bounded by the
/// admission quotas, so the queue is too. Ends when every sender is gone,
/// or when the host loop stops taking acknowledgements.
pub(super) async fn flusher(
    store: HostStore,
    mut rx: mpsc::UnboundedReceiver<FlushWaiter>,
    durable: mpsc::Sender<(Reply, JobResponse)>,
) {
    while let Some(first) = rx.recv().await {
        let mut acks: Vec<_> = first.into_iter().collect();
        while let Ok(more) = rx.try_recv() {
            acks.extend(more);
        }
        if let Err(e) = store.flush().await {
            tracing::error!(error = %e, "flush failed; not acknowledging");
            continue;
        }
        for a in acks {
            if durable.send(a).await.is_err() {
                return;
            }
        }
    }
}
