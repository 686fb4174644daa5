//! Debit notes in the sandbox: a long task pauses after every `every`
//! units of our meter and asks the host whether to go on.
//!
//! The pause happens at the guest's host calls, inside the meter's `sync`
//! (see `sandbox::meter`), which already runs before each of them: at the
//! first host call past a note boundary the worker thread calls
//! [`Debit::note`] and blocks there until it answers. Nothing is charged
//! for it and the counter is not touched, so the count is the same with or
//! without notes, and replicas on hosts with other note intervals agree.
//!
//! Why at host calls and not wherever the boundary falls: pausing guest
//! code in its hot loops means a returning call on the meter's slow path,
//! which measured 2.1× native against 1.4× on the SIMD matmul kernel, and
//! inside a component's `cabi_realloc` or post-return code no host call
//! is allowed at all ("cannot leave component instance"). Workloads built
//! with the guest SDK report progress through the host as they go (every
//! epoch, every repetition), which is where notes come. A guest that
//! computes long without a host call reaches its next note only at its
//! next call or its end; what a host risks on it is bounded by the
//! submitter's credit limit, as for any job.

use std::sync::Arc;

/// Decides, at each note boundary, whether the task goes on: called on the
/// worker thread with the note's number (1, 2, ...) and the fuel done so
/// far; `false` stops the task with `unpaid`.
pub type NoteHook = Arc<dyn Fn(u32, u64) -> bool + Send + Sync>;

/// A task's debit-note schedule.
#[derive(Clone)]
pub struct Debit {
    /// Units between notes (at least 1).
    pub every: u64,
    /// What decides at each note.
    pub note: NoteHook,
}

impl std::fmt::Debug for Debit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Debit").field("every", &self.every).finish()
    }
}

/// Why a task stopped at a note (carried through wasmtime as an error).
#[derive(Debug)]
pub(crate) struct Unpaid {
    pub(crate) seq: u32,
    pub(crate) fuel: u64,
}

impl std::fmt::Display for Unpaid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "debit note {} at {} fuel not accepted",
            self.seq, self.fuel
        )
    }
}

impl std::error::Error for Unpaid {}

/// The meter's view of a task's budget with its note boundaries.
#[derive(Debug, Default)]
pub(crate) struct Segments {
    /// The task's whole budget (the guest's counter starts there).
    pub(crate) cap: i64,
    /// Fuel done at which the next note is due.
    next: i64,
    /// Notes issued so far.
    seq: u32,
    debit: Option<Debit>,
}

impl Segments {
    /// A budget of `cap`, with a note every `debit.every` if there is one.
    pub(crate) fn new(cap: u64, debit: Option<Debit>) -> Self {
        let cap = cap.min(i64::MAX as u64) as i64;
        let debit = debit.filter(|d| d.every > 0 && (d.every as i64) < cap);
        Segments {
            cap,
            next: debit.as_ref().map_or(i64::MAX, |d| d.every as i64),
            seq: 0,
            debit,
        }
    }

    /// A host call (`charge` units) is about to happen with the guest's
    /// counter at `counter`; or the counter went below zero (`charge` 0).
    /// The counter after the charge, once any note due is accepted; or why
    /// the task cannot go on (`Err(None)`: the budget is used up).
    pub(crate) fn at_host_call(
        &mut self,
        counter: i64,
        charge: i64,
    ) -> Result<i64, Option<Unpaid>> {
        if counter < charge {
            return Err(None);
        }
        let after = counter - charge;
        let used = self.cap - after;
        if used >= self.next
            && let Some(d) = &self.debit
        {
            // One note for the work so far, however many boundaries the
            // guest crossed since its last host call.
            self.seq += 1;
            let fuel = used as u64;
            if !(d.note)(self.seq, fuel) {
                return Err(Some(Unpaid {
                    seq: self.seq,
                    fuel,
                }));
            }
            let every = d.every as i64;
            self.next = (used / every + 1).saturating_mul(every);
        }
        Ok(after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn a_note_comes_at_the_first_host_call_past_each_boundary() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s2 = seen.clone();
        let mut s = Segments::new(
            100,
            Some(Debit {
                every: 30,
                note: Arc::new(move |seq, fuel| {
                    s2.lock().unwrap().push((seq, fuel));
                    true
                }),
            }),
        );
        // 25 used: no note yet.
        assert_eq!(s.at_host_call(80, 5).unwrap(), 75);
        // 35 used: the first boundary is past.
        assert_eq!(s.at_host_call(70, 5).unwrap(), 65);
        // 95 used: two boundaries past, one note for both.
        assert_eq!(s.at_host_call(10, 5).unwrap(), 5);
        assert_eq!(*seen.lock().unwrap(), vec![(1, 35), (2, 95)]);
        // Over the budget: exhausted, with no note.
        assert!(s.at_host_call(3, 5).unwrap_err().is_none());
        assert!(s.at_host_call(-1, 0).unwrap_err().is_none());
        assert_eq!(seen.lock().unwrap().len(), 2);

        // Without notes: the plain counter.
        let mut plain = Segments::new(100, None);
        assert_eq!(plain.at_host_call(5, 5).unwrap(), 0);
        assert!(plain.at_host_call(4, 5).unwrap_err().is_none());
    }

    #[test]
    fn a_refused_note_stops_at_that_host_call() {
        let mut s = Segments::new(
            100,
            Some(Debit {
                every: 40,
                note: Arc::new(|seq, _| seq < 2),
            }),
        );
        assert_eq!(s.at_host_call(55, 0).unwrap(), 55);
        let u = s.at_host_call(15, 1).unwrap_err().expect("unpaid");
        assert_eq!((u.seq, u.fuel), (2, 86));
    }
}
