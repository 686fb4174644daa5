//! Trust reports shared through hosts' boards: what one submitter caught,
//! every other submitter can check for itself.
//!
//! Submitters only dial out, so they meet at hosts: each host keeps a
//! bounded board of signed reports (`node::host::board`). Around every run
//! a submitter publishes the reports of the lies it caught (one per accused
//! host, to up to [`FANOUT`] hosts other than the accused) and reads the
//! boards of a few ([`BOARDS`]) hosts it is connected to. Every report it reads goes through
//! [`Submitter::check_report`]: re-run here within a fuel budget before it
//! counts, weighed by the reporter's record when it cannot be re-run, and
//! ignored when forged. So a sleeper one submitter catches loses the trust
//! it earned with the others too, and no host and no reporter can make
//! anyone believe a lie it did not reproduce.
//!
//! Everything a peer controls is bounded: boards read per exchange
//! ([`BOARDS`]), re-runs per exchange ([`CHECKS_PER_EXCHANGE`], and their
//! fuel in all; the rest wait for the next exchange), bytes per page, the wait per request
//! ([`BOARD_WAIT`]: a host that holds its answer only costs that), and the
//! report ids remembered ([`MAX_SEEN`]).

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use libp2p::PeerId;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use super::evidence::LieReport;
use super::{EvidenceEntry, ReportVerdict, Submitter, SubmitterError, security_id};
use crate::node::host::board::report_id;
use crate::node::host::unix_now_ms;
use crate::proto::{self, JobRequest, JobResponse};

/// Boards read per exchange. Reads happen around every run, so few.
pub const BOARDS: usize = 3;
/// Hosts each own report is published to. Publishing happens only when a
/// lie was caught, so it goes wide: a reader of [`BOARDS`] random boards
/// among `n` hosts then misses every copy with odds of about
/// `(1 - FANOUT/n)^BOARDS` per exchange, and it exchanges every run.
pub const FANOUT: usize = 8;
/// Received reports re-run per exchange at most.
pub const CHECKS_PER_EXCHANGE: usize = 8;
/// Own reports published per exchange at most.
pub const PUBLISH_PER_EXCHANGE: usize = 8;
/// Report ids remembered as read.
pub const MAX_SEEN: usize = 4096;
/// How long one board request may take.
pub const BOARD_WAIT: Duration = Duration::from_secs(10);
/// Report bytes asked per page.
const PAGE_BYTES: u32 = 2 << 20;
/// A host is reported again after this long (it may have been cleared and
/// lied again).
const REPUBLISH_MS: u64 = 24 * 3_600_000;
/// Boards whose read position is remembered.
const MAX_CURSORS: usize = 4096;
/// Accused hosts remembered as published.
const MAX_PUBLISHED: usize = 1024;

/// What the submitter remembers of the boards (in its store).
#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct BoardState {
    /// Per host (peer id): the last board sequence read.
    cursors: HashMap<String, u64>,
    /// Report ids (hex) read, oldest first.
    seen: VecDeque<String>,
    /// Accused host (peer id) → when its report was last published.
    published: HashMap<String, u64>,
}

/// What one exchange did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Shared {
    /// Own reports published (each to at least one host).
    pub published: usize,
    /// New reports read from boards.
    pub read: usize,
    /// Of those, re-run here.
    pub rerun: usize,
    /// Re-runs that reproduced the lie and changed this submitter's view.
    pub applied: usize,
}

impl Submitter {
    fn board_state(&self) -> BoardState {
        match self.store.board() {
            Ok(Some(b)) => serde_json::from_slice(&b).unwrap_or_default(),
            _ => BoardState::default(),
        }
    }

    /// Hosts to exchange with: connected, not quarantined or suspect here,
    /// in random order (so no host decides alone what this submitter reads).
    fn board_hosts(&self, except: Option<&PeerId>, n: usize) -> Vec<PeerId> {
        let rep = self.coord.reputation();
        let mut hosts: Vec<PeerId> = self
            .joined
            .iter()
            .filter(|p| Some(*p) != except)
            .filter(|p| {
                rep.peer(&security_id(p)).is_none_or(|r| {
                    !matches!(
                        r.state,
                        security::PeerState::Suspect | security::PeerState::Quarantined
                    )
                })
            })
            .copied()
            .collect();
        hosts.sort_by_key(|p| p.to_bytes());
        hosts.shuffle(&mut rand::rng());
        hosts.truncate(n);
        hosts
    }

    async fn board_request(&mut self, peer: &PeerId, req: JobRequest) -> Option<JobResponse> {
        match tokio::time::timeout(BOARD_WAIT, self.client.request(peer, req)).await {
            Ok(Ok(r)) => Some(r),
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "board request failed");
                None
            }
            Err(_) => {
                tracing::debug!(%peer, "board request timed out");
                None
            }
        }
    }

    /// Publishes the reports of lies caught here that are not on a board
    /// yet, then reads the boards of a few connected hosts and checks what
    /// is new there, its re-runs within `fuel_budget` in all (a board may
    /// serve reports of costly jobs to waste this submitter's CPU). `note`
    /// gets a line
    /// per host whose standing here changed.
    pub async fn share_reports(
        &mut self,
        fuel_budget: u64,
        note: &mut impl FnMut(&str),
    ) -> Result<Shared, SubmitterError> {
        if self.dirty || !self.log.is_empty() {
            self.persist().await?;
        }
        let mut state = self.board_state();
        let mut out = Shared::default();
        self.publish_own(&mut state, &mut out).await?;
        self.read_boards(&mut state, &mut out, fuel_budget, note)
            .await?;
        if state.cursors.len() > MAX_CURSORS {
            // Re-reading a board costs a page; the seen ids skip its reports.
            state.cursors.clear();
        }
        self.store.put_board(&serde_json::to_vec(&state)?).await?;
        Ok(out)
    }

    async fn publish_own(
        &mut self,
        state: &mut BoardState,
        out: &mut Shared,
    ) -> Result<(), SubmitterError> {
        let now = unix_now_ms();
        let mut todo: Vec<(PeerId, LieReport)> = Vec::new();
        for raw in self.store.evidence()? {
            let Ok(e) = serde_json::from_slice::<EvidenceEntry>(&raw) else {
                continue;
            };
            let (Some(text), "lie") = (e.report.as_deref(), e.kind.as_str()) else {
                continue;
            };
            let Ok(r) = LieReport::from_text(text) else {
                continue;
            };
            let Some(subject) = r.receipt.verify().ok().and_then(|b| b.host_peer_id()) else {
                continue;
            };
            let key = subject.to_string();
            let recent = state
                .published
                .get(&key)
                .is_some_and(|t| now.saturating_sub(*t) < REPUBLISH_MS);
            if recent || todo.iter().any(|(s, _)| *s == subject) {
                continue;
            }
            todo.push((subject, r));
        }
        for (subject, report) in todo.into_iter().take(PUBLISH_PER_EXCHANGE) {
            let bytes = postcard::to_stdvec(&report).expect("reports encode");
            let mut kept = false;
            for host in self.board_hosts(Some(&subject), FANOUT) {
                let req = JobRequest::PublishReport {
                    report: bytes.clone(),
                };
                match self.board_request(&host, req).await {
                    Some(JobResponse::ReportKept { .. }) => kept = true,
                    Some(JobResponse::Refused { reason, message }) => {
                        tracing::info!(%host, %reason, %message, "trust report refused")
                    }
                    _ => {}
                }
            }
            if kept {
                out.published += 1;
                tracing::info!(accused = %subject, "trust report published");
                state.published.insert(subject.to_string(), now);
            }
        }
        if state.published.len() > MAX_PUBLISHED {
            let mut by_age: Vec<(String, u64)> = state.published.drain().collect();
            by_age.sort_by_key(|(_, t)| std::cmp::Reverse(*t));
            by_age.truncate(MAX_PUBLISHED);
            state.published = by_age.into_iter().collect();
        }
        Ok(())
    }

    async fn read_boards(
        &mut self,
        state: &mut BoardState,
        out: &mut Shared,
        fuel_budget: u64,
        note: &mut impl FnMut(&str),
    ) -> Result<(), SubmitterError> {
        let me = self.client.identity().public_key();
        // Fuel the re-runs may burn, at most (each is charged its cap).
        let mut spent = 0u64;
        'hosts: for host in self.board_hosts(None, BOARDS) {
            let key = host.to_string();
            let mut after = state.cursors.get(&key).copied().unwrap_or(0);
            // Bounded: a page is at least one report, and a board holds a
            // bounded number of them.
            for _ in 0..super::super::host::board::MAX_REPORTS {
                let req = JobRequest::Reports {
                    after,
                    max_bytes: PAGE_BYTES,
                };
                let Some(JobResponse::Reports { items, next, more }) =
                    self.board_request(&host, req).await
                else {
                    continue 'hosts;
                };
                if next < after {
                    // The board was reset: read it again from the start.
                    after = 0;
                    if items.is_empty() {
                        state.cursors.insert(key.clone(), 0);
                        continue 'hosts;
                    }
                }
                for item in items {
                    if item.seq <= after {
                        continue;
                    }
                    let Ok(report) = postcard::from_bytes::<LieReport>(&item.report) else {
                        after = item.seq;
                        continue;
                    };
                    let id = proto::hex(&report_id(&report));
                    if report.reporter_key == me || state.seen.contains(&id) {
                        after = item.seq;
                        continue;
                    }
                    if out.rerun >= CHECKS_PER_EXCHANGE {
                        // The rest waits for the next exchange.
                        state.cursors.insert(key.clone(), after);
                        continue 'hosts;
                    }
                    let subject = report.receipt.verify().ok().and_then(|b| b.host_peer_id());
                    let before = subject.and_then(|s| self.state_of(&s));
                    if before != Some(security::PeerState::Trusted) {
                        // Only a trusted host's work runs unreplicated here,
                        // so only then is a re-run worth its cost. Left
                        // unseen: read on another board once it is trusted.
                        after = item.seq;
                        continue;
                    }
                    out.read += 1;
                    let Some(left) = fuel_budget.checked_sub(spent).filter(|l| *l > 0) else {
                        state.cursors.insert(key.clone(), after);
                        continue 'hosts;
                    };
                    let job_fuel = report.job.verify().map_or(left, |j| j.fuel);
                    spent = spent.saturating_add(job_fuel.min(left));
                    let verdict = self.check_report(&report, left).await?;
                    if let ReportVerdict::Checked { applied, .. } = &verdict {
                        out.rerun += 1;
                        if *applied {
                            out.applied += 1;
                        }
                    }
                    if let Some(s) = subject {
                        let after_state = self.state_of(&s);
                        if after_state != before
                            && let (Some(b), Some(a)) = (before, after_state)
                        {
                            note(&format!(
                                "note: a trust report read at host {host} was re-run here: host {s} {} -> {}",
                                super::state_name(b),
                                super::state_name(a)
                            ));
                        }
                    }
                    tracing::info!(%host, report = %&id[..12], ?verdict, "board report checked");
                    state.seen.push_back(id);
                    if state.seen.len() > MAX_SEEN {
                        state.seen.pop_front();
                    }
                    after = item.seq;
                }
                after = after.max(next);
                state.cursors.insert(key.clone(), after);
                if !more {
                    break;
                }
            }
        }
        Ok(())
    }

    fn state_of(&self, p: &PeerId) -> Option<security::PeerState> {
        self.coord
            .reputation()
            .peer(&security_id(p))
            .map(|r| r.state)
    }
}
