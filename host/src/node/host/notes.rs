//! Debit notes on the host: the board where a paused worker waits for its
//! submitter's acceptance (see `proto::note` and `sandbox::debit`).
//!
//! A worker reaching a note boundary signs the note, posts it here, tells
//! the loop (which answers the submitter's waiting request with it, or
//! keeps it for the next `Fetch`) and blocks on the board's condition
//! variable, at most the configured timeout. The loop checks and stores an
//! acceptance, then marks it here, which wakes the worker. So the host
//! never does more than one note's worth of work that the submitter has
//! not signed for. A job re-run after a crash finds its notes accepted in
//! the store and does not wait for them again.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::unix_now_ms;
use crate::identity::Identity;
use crate::proto::{self, JobId, NoteBody, SignedNote};
use crate::sandbox::Debit;
use crate::store::HostStore;

/// One job's notes.
#[derive(Default)]
struct Slot {
    /// The note the worker waits on, if it waits.
    pending: Option<(u32, SignedNote)>,
    /// The pending note was handed to a waiting request of the submitter
    /// (later waits park until the job moves on, so a submitter that will
    /// not sign is not answered the same note in a loop).
    delivered: bool,
    /// Highest note accepted.
    accepted: u32,
}

#[derive(Default)]
struct Board {
    slots: HashMap<JobId, Slot>,
    stopping: bool,
}

/// The host's debit-note board, shared by the loop and the workers.
#[derive(Clone)]
pub(super) struct Notes {
    inner: Arc<(Mutex<Board>, Condvar)>,
    /// Tells the loop a note was issued (one per paused worker at most:
    /// bounded by the worker count).
    issued: mpsc::UnboundedSender<JobId>,
    every: u64,
    timeout: Duration,
}

impl Notes {
    /// A board for notes every `every` fuel (0: none), each waited for at
    /// most `timeout`. The receiver gets the job of each note issued.
    pub fn new(every: u64, timeout: Duration) -> (Self, mpsc::UnboundedReceiver<JobId>) {
        let (issued, rx) = mpsc::unbounded_channel();
        (
            Notes {
                inner: Arc::default(),
                issued,
                every,
                timeout,
            },
            rx,
        )
    }

    /// A board that issues no notes.
    pub fn none() -> Self {
        Notes::new(0, Duration::ZERO).0
    }

    /// The schedule of a job's task, if its fuel cap reaches past one note.
    /// `accepted` reads the highest note the store already holds for it
    /// (only for such a job: ordinary jobs cost no store read).
    pub fn debit(
        &self,
        job_id: JobId,
        submitter: [u8; 32],
        fuel_cap: u64,
        signer: (Identity, u64),
        accepted: impl FnOnce() -> u32,
    ) -> Option<Debit> {
        if self.every == 0 || fuel_cap <= self.every {
            return None;
        }
        let accepted = accepted();
        self.lock().slots.entry(job_id).or_default().accepted = accepted;
        let notes = self.clone();
        let (id, price_per_mfuel) = signer;
        Some(Debit {
            every: self.every,
            note: Arc::new(move |seq, fuel| {
                let body = NoteBody {
                    version: proto::VERSION,
                    host_key: id.public_key(),
                    submitter,
                    job_id,
                    seq,
                    fuel,
                    price: security::settlement::max_cost(fuel, price_per_mfuel),
                    issued_at_ms: unix_now_ms(),
                };
                notes.wait(job_id, seq, SignedNote::sign(&body, &id.signing))
            }),
        })
    }

    /// On the worker: posts note `seq` and waits for its acceptance.
    fn wait(&self, job_id: JobId, seq: u32, note: SignedNote) -> bool {
        {
            let mut b = self.lock();
            let slot = b.slots.entry(job_id).or_default();
            if slot.accepted >= seq {
                return true;
            }
            slot.pending = Some((seq, note));
            slot.delivered = false;
        }
        let _ = self.issued.send(job_id);
        let deadline = Instant::now() + self.timeout;
        let (m, cv) = &*self.inner;
        let mut b = m.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            let accepted = b.slots.get(&job_id).is_some_and(|s| s.accepted >= seq);
            if accepted || b.stopping {
                if let Some(s) = b.slots.get_mut(&job_id) {
                    s.pending = None;
                }
                return accepted;
            }
            let now = Instant::now();
            if now >= deadline {
                if let Some(s) = b.slots.get_mut(&job_id) {
                    s.pending = None;
                }
                tracing::info!(job = %proto::hex(&job_id), seq, "debit note not accepted in time: the task stops unpaid");
                return false;
            }
            b = cv
                .wait_timeout(b, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// The note a job's worker waits on, if any.
    pub fn pending(&self, job_id: &JobId) -> Option<(u32, SignedNote)> {
        self.lock().slots.get(job_id)?.pending.clone()
    }

    /// For a waiting request: the pending note if it was not handed to a
    /// waiting request yet (it is now), `Err(())` if it was (the request
    /// should wait for what comes next), `Ok(None)` if there is none.
    pub fn deliver(&self, job_id: &JobId) -> Result<Option<SignedNote>, ()> {
        let mut b = self.lock();
        let Some(slot) = b.slots.get_mut(job_id) else {
            return Ok(None);
        };
        match &slot.pending {
            None => Ok(None),
            Some(_) if slot.delivered => Err(()),
            Some((_, note)) => {
                slot.delivered = true;
                Ok(Some(note.clone()))
            }
        }
    }

    /// Note `seq` of `job_id` is accepted (and stored): its worker goes on.
    pub fn accept(&self, job_id: JobId, seq: u32) {
        let mut b = self.lock();
        let slot = b.slots.entry(job_id).or_default();
        slot.accepted = slot.accepted.max(seq);
        if slot.pending.as_ref().is_some_and(|(s, _)| *s <= seq) {
            slot.pending = None;
        }
        self.inner.1.notify_all();
    }

    /// The job ended: its slot goes.
    pub fn finished(&self, job_id: &JobId) {
        self.lock().slots.remove(job_id);
    }

    /// Shutdown: every waiting worker stops at once (its job stays stored
    /// and runs again at the next start).
    pub fn stop(&self) {
        self.lock().stopping = true;
        self.inner.1.notify_all();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Board> {
        self.inner.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The highest note of a job the store holds an acceptance for (0: none).
pub(super) fn accepted_in_store(store: &HostStore, job_id: &JobId) -> u32 {
    store.note(job_id).ok().flatten().map_or(0, |e| {
        e.acceptance
            .verify()
            .map_or(0, |a: proto::NoteAcceptanceBody| a.seq)
    })
}
