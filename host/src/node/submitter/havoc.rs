//! HAVOC on the submitter's side: when it loses hosts faster than churn,
//! its placements change.
//!
//! The crisis itself is the `roles` crate's [`CrisisDetector`] (the code
//! the simulator measures), fed with the joined hosts and with each one
//! whose connection is gone. A lost host leaves the coordinator at once
//! (its work is re-placed, not waited for), and while the detector says
//! crisis the coordinator places every replica on the least loaded of a
//! few random draws (`security::Event::Crisis`), so the lost hosts' work
//! lands where it starts soonest instead of queueing behind other work;
//! after the calm time it hands back to plain random placement. Each
//! switch is noted for the user and logged with the numbers that decided
//! it.

use libp2p::PeerId;
use roles::{CrisisEvent, HavocAction, NodeId};
use security::Event;

use super::{EvidenceEntry, Submitter, security_id};

impl Submitter {
    /// The detector hears the joined hosts' number.
    pub(super) fn havoc_members(&mut self, now: u64) {
        self.havoc
            .handle(now, CrisisEvent::Members(self.joined.len() as u32));
        self.havoc_drain(now);
    }

    /// Joined hosts whose connection is gone are lost: they leave the
    /// coordinator and the detector counts them. What this decides goes
    /// before the events already queued, so that the failures of the lost
    /// hosts' jobs are re-placed by the mode just decided.
    pub(super) fn watch_hosts(&mut self, now: u64) {
        let lost: Vec<PeerId> = self
            .joined
            .iter()
            .filter(|p| !self.client.is_connected(p))
            .copied()
            .collect();
        let queued = self.pending_events.len();
        for p in lost {
            self.lose_host(p, now);
        }
        self.havoc.handle_timeout(now);
        self.havoc_drain(now);
        self.pending_events.rotate_left(queued);
    }

    /// `peer` is gone: out of the coordinator, counted as lost.
    pub(super) fn lose_host(&mut self, peer: PeerId, now: u64) {
        if !self.joined.remove(&peer) {
            return;
        }
        tracing::info!(%peer, joined = self.joined.len(), "host lost");
        self.pending_events.push_back(Event::PeerLeft {
            peer: security_id(&peer),
        });
        // The group is the hosts still joined plus those lost in the
        // window (the detector adds the latter).
        self.havoc
            .handle(now, CrisisEvent::Members(self.joined.len() as u32));
        let b = peer.to_bytes();
        let id = u32::from_le_bytes([
            b[b.len() - 4],
            b[b.len() - 3],
            b[b.len() - 2],
            b[b.len() - 1],
        ]);
        self.havoc.handle(now, CrisisEvent::HostLost(NodeId(id)));
    }

    fn havoc_drain(&mut self, now: u64) {
        while let Some(a) = self.havoc.poll() {
            let (on, reason) = match a {
                HavocAction::EnterCrisis { reason } => (true, reason),
                HavocAction::ExitCrisis { reason } => (false, reason),
            };
            if on {
                self.summary.crises += 1;
            }
            let what = if on {
                "crisis: placing on the least loaded hosts"
            } else {
                "calm again: random placement"
            };
            tracing::warn!(%reason, "HAVOC: {what}");
            self.havoc_notes
                .push(format!("note: HAVOC: {what} ({reason})"));
            self.log.push(EvidenceEntry {
                at_ms: now,
                peer_id: String::new(),
                kind: if on { "crisis" } else { "calm" }.into(),
                detail: reason,
                job_id: None,
                report: None,
            });
            self.dirty = true;
            self.pending_events.push_back(Event::Crisis { on });
        }
    }

    /// Whether the submitter is in a crisis now.
    pub fn in_crisis(&self) -> bool {
        self.havoc.in_crisis()
    }
}
