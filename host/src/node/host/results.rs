//! The result router: who waits for which job's result, and what a status
//! or result request is answered now.

use std::collections::HashMap;

use super::Reply;
use crate::proto::{JobId, JobResponse, JobState};

/// Waiters by job. Bounded by what reaches it: a waiter is one request in
/// flight on a job stream (at most `in_flight` per stream, streams bounded
/// per peer) or a request-response stream (bounded per connection), and
/// fetches are rate-limited per peer by admission.
#[derive(Default)]
pub(super) struct Results {
    waiters: HashMap<JobId, Vec<Reply>>,
}

impl Results {
    /// `ch` gets the job's result when it finishes.
    pub fn wait(&mut self, job_id: JobId, ch: Reply) {
        self.waiters.entry(job_id).or_default().push(ch);
    }

    /// Everyone waiting for `job_id`'s result (it finished).
    pub fn take(&mut self, job_id: &JobId) -> Vec<Reply> {
        self.waiters.remove(job_id).unwrap_or_default()
    }

    /// Answers a status or result request: the stored result if there is
    /// one; for a job still in flight (`state`), either parks the request
    /// until it finishes (`wait`, then `None`) or says where it is; for any
    /// other job, `Unknown`.
    pub fn on_fetch(
        &mut self,
        job_id: JobId,
        wait: bool,
        stored: Option<JobResponse>,
        state: Option<JobState>,
        ch: Reply,
    ) -> Option<(Reply, JobResponse)> {
        let resp = match (stored, state) {
            (Some(r), _) => r,
            (None, Some(_)) if wait => {
                self.wait(job_id, ch);
                return None;
            }
            (None, Some(state)) => JobResponse::Pending { job_id, state },
            (None, None) => JobResponse::Unknown { job_id },
        };
        Some((ch, resp))
    }
}
