//! CPU work the host loop hands to the blocking pool: checks of what a
//! peer sent (signatures, decoding) whose result the loop then applies to
//! state it alone owns. The swarm task never runs them itself, so a peer
//! that sends costly messages slows only its own answers.
//!
//! Bounded twice: at most `running` checks on the pool at once (they share
//! two cores with the sandbox workers) and at most `queued` admitted in
//! all; past that [`Offload::start`] says no and the caller refuses `busy`.
//! Per-peer rates are the host's fetch quota's, taken before.

use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc};

/// One kind of offloaded work, whose results are `T`.
pub struct Offload<T> {
    queue_len: usize,
    queued: Arc<Semaphore>,
    running: Arc<Semaphore>,
    tx: mpsc::Sender<T>,
    rx: mpsc::Receiver<T>,
}

impl<T: Send + 'static> Offload<T> {
    /// At most `running` at once on the pool, `queued` (≥ `running`)
    /// admitted in all.
    pub fn new(running: usize, queued: usize) -> Self {
        let queued = queued.max(running).max(1);
        let (tx, rx) = mpsc::channel(queued);
        Offload {
            queue_len: queued,
            queued: Arc::new(Semaphore::new(queued)),
            running: Arc::new(Semaphore::new(running.max(1))),
            tx,
            rx,
        }
    }

    /// Admits `work(ctx)` (its result comes out of [`Offload::next`]), or
    /// gives `ctx` back when `queued` are admitted already.
    pub fn start<C, W>(&self, ctx: C, work: W) -> Result<(), C>
    where
        C: Send + 'static,
        W: FnOnce(C) -> T + Send + 'static,
    {
        let Ok(slot) = self.queued.clone().try_acquire_owned() else {
            return Err(ctx);
        };
        let (running, tx) = (self.running.clone(), self.tx.clone());
        tokio::spawn(async move {
            let Ok(run) = running.acquire_owned().await else {
                return;
            };
            let Ok(out) = tokio::task::spawn_blocking(move || work(ctx)).await else {
                return; // it panicked: its answer is lost, the slot freed
            };
            drop(run);
            // A slot is held per admitted result, so there is room; the
            // loop may have ended (shutdown), and then nobody answers.
            let _ = tx.try_send(out);
            drop(slot);
        });
        Ok(())
    }

    /// Waits until every admitted piece of work has ended (what it
    /// captured, a store handle say, is dropped by then): shutdown calls it
    /// before the store is closed.
    pub async fn finish(self) {
        let all = u32::try_from(self.queue_len).unwrap_or(u32::MAX);
        let _ = self.queued.acquire_many(all).await;
    }

    /// The next finished result.
    pub async fn next(&mut self) -> Option<T> {
        self.rx.recv().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn work_past_the_queue_is_given_back_the_rest_answered_and_finish_waits_for_it() {
        let mut o: Offload<u32> = Offload::new(1, 2);
        let gate = Arc::new(std::sync::Barrier::new(2));
        let g = gate.clone();
        // The first holds the one running place until released.
        assert!(
            o.start((), move |()| {
                g.wait();
                1
            })
            .is_ok()
        );
        assert!(o.start((), |()| 2).is_ok());
        assert_eq!(o.start(3, |n| n), Err(3), "a third is over the queue of 2");
        // Released from the blocking pool: this test's runtime has one
        // thread, which must stay free to start the work.
        tokio::task::spawn_blocking(move || gate.wait())
            .await
            .unwrap();
        let mut got = vec![o.next().await.unwrap(), o.next().await.unwrap()];
        got.sort();
        assert_eq!(got, vec![1, 2]);
        // Room again once answered.
        assert!(o.start(4, |n| n).is_ok());
        assert_eq!(o.next().await, Some(4));

        // `finish` returns only once admitted work has ended.
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let d = done.clone();
        assert!(
            o.start((), move |()| {
                std::thread::sleep(std::time::Duration::from_millis(20));
                d.store(true, std::sync::atomic::Ordering::SeqCst);
                5
            })
            .is_ok()
        );
        o.finish().await;
        assert!(done.load(std::sync::atomic::Ordering::SeqCst));
    }
}
