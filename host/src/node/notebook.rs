//! The submitter's side of debit notes (see `proto::note`): which notes it
//! signs, and the ones it signed.
//!
//! A note is accepted only if it is for a job this submitter sent to the
//! host that signed it, for no more fuel than the job's cap, and at no more
//! than the job's price ceiling: a host cannot bill through notes what it
//! could not bill in a receipt. Everything is bounded: jobs are remembered
//! while they may still send notes, at most [`MAX_JOBS`] of them.

use std::collections::{HashMap, VecDeque};

use libp2p::PeerId;

use crate::proto::{JobId, JobSpec, NoteBody, NotedEntry, SignedJob, SignedNote};

/// Jobs (and their accepted notes) remembered at once; the oldest go
/// first. A job forgotten while it runs gets its next note refused, and
/// ends `unpaid` on the host, never silently paid.
pub const MAX_JOBS: usize = 16_384;

/// What a note may claim for one job.
#[derive(Clone, Copy)]
struct Bounds {
    host: PeerId,
    fuel_cap: u64,
    ceiling_per_mfuel: u64,
}

/// The notes this submitter checks and has accepted.
#[derive(Default)]
pub struct NoteBook {
    jobs: HashMap<JobId, Bounds>,
    order: VecDeque<JobId>,
    accepted: HashMap<JobId, NotedEntry>,
    /// Test-only: accept no note (a submitter that stopped paying).
    pub(crate) withhold: bool,
}

impl NoteBook {
    /// A job is being sent to `host`.
    pub fn sent(&mut self, host: PeerId, job: &SignedJob) {
        let Ok(spec) = postcard::from_bytes::<JobSpec>(&job.spec) else {
            return;
        };
        let id = job.id();
        let b = Bounds {
            host,
            fuel_cap: spec.fuel,
            ceiling_per_mfuel: spec.max_price_per_mfuel,
        };
        if self.jobs.insert(id, b).is_none() {
            self.order.push_back(id);
        }
        while self.order.len() > MAX_JOBS {
            if let Some(old) = self.order.pop_front() {
                self.jobs.remove(&old);
                self.accepted.remove(&old);
            }
        }
    }

    /// Checks a note `from` a host against the job it names; the note's
    /// body if this submitter should sign it, else why not.
    pub fn check(
        &self,
        from: &PeerId,
        me: &[u8; 32],
        note: &SignedNote,
    ) -> Result<NoteBody, String> {
        let n = note.verify().map_err(|e| e.to_string())?;
        let b = self
            .jobs
            .get(&n.job_id)
            .ok_or("a note for a job this submitter does not know")?;
        if super::submitter::peer_of_key(&n.host_key) != Some(*from) || b.host != *from {
            return Err("a note signed by another host than the job's".into());
        }
        if n.submitter != *me {
            return Err("a note addressed to another submitter".into());
        }
        if n.fuel > b.fuel_cap {
            return Err(format!(
                "a note for {} fuel, over the job's cap of {}",
                n.fuel, b.fuel_cap
            ));
        }
        let most = security::settlement::max_cost(n.fuel, b.ceiling_per_mfuel);
        if n.price > most {
            return Err(format!(
                "a note of {} for {} fuel, over the job's ceiling ({most})",
                n.price, n.fuel
            ));
        }
        if let Some(prev) = self.accepted.get(&n.job_id)
            && let Ok(p) = prev.note.verify()
            // Later notes claim more; the same note again is a host that
            // restarted and lost our acceptance (signing it again costs
            // nothing: notes are cumulative).
            && !((n.seq > p.seq && n.fuel > p.fuel) || (n.seq == p.seq && n.fuel == p.fuel))
        {
            return Err(format!(
                "note {} does not follow note {} already accepted",
                n.seq, p.seq
            ));
        }
        if self.withhold {
            return Err("this submitter accepts no notes (test)".into());
        }
        Ok(n)
    }

    /// Records an accepted note (the latest of its job).
    pub fn accepted(&mut self, entry: NotedEntry) {
        if let Ok(n) = entry.note.verify()
            && self.jobs.contains_key(&n.job_id)
        {
            self.accepted.insert(n.job_id, entry);
        }
    }

    /// The latest note accepted for a job.
    pub fn latest(&self, job: &JobId) -> Option<&NotedEntry> {
        self.accepted.get(job)
    }
}
