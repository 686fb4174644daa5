//! The host's board of signed trust reports, kept for other submitters.
//!
//! Submitters are clients: they dial hosts and never listen, so one
//! submitter cannot hand its evidence of a lie to another directly. Hosts
//! are where they all meet, so every host keeps a small board: a submitter
//! that caught a lie publishes its signed report to a few hosts, and every
//! submitter reads the boards of the hosts it connects to. The host never
//! judges a report (it is no referee, and may be the accused): it checks
//! only that the report is well-formed and signed, so that the board
//! cannot be filled with garbage, and every reader re-runs the evidence in
//! its own sandbox before it believes it (`Submitter::check_report`).
//!
//! A hostile peer may flood it, so everything is bounded: reports in all
//! ([`MAX_REPORTS`], [`MAX_BYTES`]), per reporter key ([`PER_REPORTER`]), per
//! sending peer ([`PER_SENDER`]); past the total, the oldest report of a
//! reporter this host has no settled payment from goes first, so fresh
//! identities cannot push out the reports of submitters that paid here.
//! The board is in the host's database, so it survives restarts.

use std::collections::{BTreeMap, HashSet};

use libp2p::PeerId;

use crate::node::submitter::evidence::{LieReport, ReportError};
use crate::proto::{BoardItem, Hash, RefuseReason};
use crate::store::{HostStore, StoreError};

/// Reports kept at most.
pub const MAX_REPORTS: usize = 256;
/// Report bytes kept at most.
pub const MAX_BYTES: usize = 64 << 20;
/// Reports kept per reporter key (its oldest goes first).
pub const PER_REPORTER: usize = 8;
/// Reports kept per peer that sent them (relays of others' reports count).
pub const PER_SENDER: usize = 16;
/// Report bytes in one page at most.
pub const MAX_PAGE_BYTES: usize = 4 << 20;

struct Entry {
    id: Hash,
    reporter: [u8; 32],
    sender: Vec<u8>,
    report: Vec<u8>,
}

/// The board.
pub struct Board {
    store: HostStore,
    entries: BTreeMap<u64, Entry>,
    ids: HashSet<Hash>,
    bytes: usize,
    next: u64,
}

/// The id of a report: the hash of its reporter's signature, which covers
/// every part of it.
pub fn report_id(r: &LieReport) -> Hash {
    *blake3::hash(&r.signature).as_bytes()
}

impl Board {
    /// The board kept in `store`.
    pub fn load(store: HostStore) -> Result<Self, StoreError> {
        let mut b = Board {
            store,
            entries: BTreeMap::new(),
            ids: HashSet::new(),
            bytes: 0,
            next: 1,
        };
        for s in b.store.reports()? {
            let Ok(r) = postcard::from_bytes::<LieReport>(&s.report) else {
                b.store.remove_report(s.seq)?;
                continue;
            };
            b.next = b.next.max(s.seq + 1);
            b.insert(s.seq, report_id(&r), r.reporter_key, s.sender, s.report);
        }
        Ok(b)
    }

    fn insert(&mut self, seq: u64, id: Hash, reporter: [u8; 32], sender: Vec<u8>, report: Vec<u8>) {
        self.bytes += report.len();
        self.ids.insert(id);
        self.entries.insert(
            seq,
            Entry {
                id,
                reporter,
                sender,
                report,
            },
        );
    }

    fn remove(&mut self, seq: u64) -> Result<(), StoreError> {
        if let Some(e) = self.entries.remove(&seq) {
            self.bytes -= e.report.len();
            self.ids.remove(&e.id);
            self.store.remove_report(seq)?;
        }
        Ok(())
    }

    /// Reports kept.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no report is kept.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Decodes a published report and checks its signatures and that a
    /// reader could re-run it: the costly part of publishing (up to a
    /// request's size of postcard and three ed25519 verifications), so the
    /// host runs it off its loop ([`Checks`]). Needs no board.
    pub fn check(bytes: &[u8]) -> Result<LieReport, (RefuseReason, String)> {
        let report: LieReport = postcard::from_bytes(bytes)
            .map_err(|e| (RefuseReason::Malformed, format!("not a trust report: {e}")))?;
        match report.check() {
            Ok(_) => Ok(report),
            Err(ReportError::Forged(why)) => {
                Err((RefuseReason::BadSignature, format!("forged report: {why}")))
            }
            Err(ReportError::Unverifiable(why)) => Err((
                RefuseReason::Malformed,
                format!("a report no reader could re-run: {why}"),
            )),
        }
    }

    /// Keeps a report `sender` published, once [`Board::check`] passed it
    /// (`bytes` is its encoding). `paid(key)` says whether this host has
    /// settled payments from that submitter key (its reports are kept over
    /// strangers' when the board is full). Returns whether it was new.
    pub fn keep(
        &mut self,
        sender: &PeerId,
        report: &LieReport,
        bytes: Vec<u8>,
        paid: impl Fn(&[u8; 32]) -> bool,
    ) -> Result<bool, (RefuseReason, String)> {
        let id = report_id(report);
        if self.ids.contains(&id) {
            return Ok(false);
        }
        let sender = sender.to_bytes();
        let same_sender: Vec<u64> = self
            .entries
            .iter()
            .filter(|(_, e)| e.sender == sender)
            .map(|(s, _)| *s)
            .collect();
        if same_sender.len() >= PER_SENDER {
            return Err((
                RefuseReason::Busy,
                format!("this host keeps {PER_SENDER} reports per peer, and has yours"),
            ));
        }
        let store_err = |e: StoreError| {
            tracing::error!(error = %e, "cannot store a trust report");
            (RefuseReason::Busy, "host cannot store the report".into())
        };
        // The reporter's own oldest goes first.
        let same_reporter: Vec<u64> = self
            .entries
            .iter()
            .filter(|(_, e)| e.reporter == report.reporter_key)
            .map(|(s, _)| *s)
            .collect();
        if same_reporter.len() >= PER_REPORTER {
            self.remove(same_reporter[0]).map_err(store_err)?;
        }
        while self.entries.len() >= MAX_REPORTS || self.bytes + bytes.len() > MAX_BYTES {
            let victim = self
                .entries
                .iter()
                .find(|(_, e)| !paid(&e.reporter))
                .or_else(|| self.entries.iter().next())
                .map(|(s, _)| *s);
            match victim {
                Some(s) => self.remove(s).map_err(store_err)?,
                None => break,
            }
        }
        let seq = self.next;
        self.next += 1;
        self.store
            .put_report(seq, &sender, &bytes)
            .map_err(store_err)?;
        self.insert(seq, id, report.reporter_key, sender, bytes);
        Ok(true)
    }

    /// Reports after `after`, oldest first, up to `max_bytes` (and
    /// [`MAX_PAGE_BYTES`]; at least one report when any is there). Returns
    /// the page, the `after` to ask with next, and whether more follows.
    pub fn page(&self, after: u64, max_bytes: u32) -> (Vec<BoardItem>, u64, bool) {
        let budget = (max_bytes as usize).min(MAX_PAGE_BYTES);
        // A reader ahead of this board read another board (the host's
        // database was replaced): start it again from the beginning.
        let after = if after >= self.next { 0 } else { after };
        let mut items = Vec::new();
        let mut used = 0;
        let mut last = after;
        let mut more = false;
        for (seq, e) in self.entries.range(after + 1..) {
            if !items.is_empty() && used + e.report.len() > budget {
                more = true;
                break;
            }
            used += e.report.len();
            last = *seq;
            items.push(BoardItem {
                seq: *seq,
                report: e.report.clone(),
            });
        }
        (items, last, more)
    }
}

/// Published reports checked at once, off the host loop, and admitted to
/// wait for a check; past that a publisher is told `busy` (the per-peer
/// fetch quota bounds each peer's share, this bounds all of them).
pub const CHECKS_AT_ONCE: usize = 2;
/// See [`CHECKS_AT_ONCE`].
pub const CHECKS_QUEUED: usize = 16;

/// A report checked off the loop ([`Board::check`]), with what the loop
/// needs to keep it and answer its publisher.
pub struct Checked<R> {
    /// The peer that published it.
    pub sender: PeerId,
    /// Where the answer goes.
    pub reply: R,
    /// The report's encoding, as it is kept.
    pub bytes: Vec<u8>,
    /// What [`Board::check`] made of it.
    pub outcome: Result<LieReport, (RefuseReason, String)>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{JobSpec, ReceiptBody, ReceiptOutcome, SignedJob, SignedReceipt};
    use ed25519_dalek::SigningKey;

    /// What the host loop does with a published report, in one call.
    fn publish(
        b: &mut Board,
        sender: &PeerId,
        bytes: Vec<u8>,
        paid: impl Fn(&[u8; 32]) -> bool,
    ) -> Result<bool, (RefuseReason, String)> {
        let report = Board::check(&bytes)?;
        b.keep(sender, &report, bytes, paid)
    }

    /// A genuine report by `reporter` against the host `host`, job `n`.
    fn report(reporter: &SigningKey, host: &SigningKey, n: u8) -> Vec<u8> {
        let (module, input) = (b"module".to_vec(), vec![n; 4]);
        let spec = JobSpec {
            version: crate::proto::VERSION,
            submitter: reporter.verifying_key().to_bytes(),
            module_hash: *blake3::hash(&module).as_bytes(),
            module_size: module.len() as u64,
            input_hash: *blake3::hash(&input).as_bytes(),
            input_size: input.len() as u64,
            args: Vec::new(),
            fuel: 1,
            memory_bytes: 1,
            timeout_ms: None,
            scratch: false,
            portable: false,
            max_price_per_mfuel: 10,
            nonce: [n; 16],
            expires_at: 0,
            data: Vec::new(),
        };
        let job = SignedJob::sign(&spec, reporter);
        let body = ReceiptBody {
            version: crate::proto::VERSION,
            job_id: job.id(),
            host_key: host.verifying_key().to_bytes(),
            module_hash: spec.module_hash,
            input_hash: spec.input_hash,
            output_hash: [1; 32],
            fuel_used: 1,
            peak_memory_bytes: 1,
            wall_us: 1,
            price: 0,
            timestamp: 0,
            arch: "x".into(),
            outcome: ReceiptOutcome::Ok,
            data_hashes: Vec::new(),
        };
        let receipt = SignedReceipt::sign(&body, host);
        let r = LieReport::sign(reporter, job, receipt, [2; 32], 0, module, input);
        postcard::to_stdvec(&r).unwrap()
    }

    #[test]
    fn the_board_keeps_genuine_reports_within_its_bounds_and_across_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let store = HostStore::open(dir.path()).unwrap();
        let mut b = Board::load(store.clone()).unwrap();
        let (alice, bob, host) = (
            SigningKey::from_bytes(&[1; 32]),
            SigningKey::from_bytes(&[2; 32]),
            SigningKey::from_bytes(&[3; 32]),
        );
        let (p1, p2) = (PeerId::random(), PeerId::random());
        let unpaid = |_: &[u8; 32]| false;

        // Kept once; the same report again changes nothing.
        assert_eq!(
            publish(&mut b, &p1, report(&alice, &host, 0), unpaid),
            Ok(true)
        );
        assert_eq!(
            publish(&mut b, &p2, report(&alice, &host, 0), unpaid),
            Ok(false)
        );
        assert_eq!(b.len(), 1);

        // Garbled and forged reports are refused with their reason.
        let mut forged: LieReport = postcard::from_bytes(&report(&bob, &host, 1)).unwrap();
        forged.correct_output[0] ^= 1;
        let forged = postcard::to_stdvec(&forged).unwrap();
        assert_eq!(
            publish(&mut b, &p1, forged, unpaid).unwrap_err().0,
            RefuseReason::BadSignature
        );
        assert_eq!(
            publish(&mut b, &p1, b"garbage".to_vec(), unpaid)
                .unwrap_err()
                .0,
            RefuseReason::Malformed
        );
        assert_eq!(b.len(), 1);

        // One reporter keeps its newest PER_REPORTER.
        for n in 1..=PER_REPORTER as u8 {
            assert_eq!(
                publish(&mut b, &p1, report(&alice, &host, n), unpaid),
                Ok(true)
            );
        }
        assert_eq!(b.len(), PER_REPORTER);
        let (page, _, _) = b.page(0, u32::MAX);
        let first: LieReport = postcard::from_bytes(&page[0].report).unwrap();
        assert_eq!(first.input, vec![1; 4], "the oldest went first");

        // One sender is held to PER_SENDER reports, whoever signed them.
        let mut refused = None;
        for i in 0..PER_SENDER as u8 + 1 {
            let reporter = SigningKey::from_bytes(&[100 + i; 32]);
            if let Err(r) = publish(&mut b, &p2, report(&reporter, &host, 0), unpaid) {
                refused = Some(r.0);
                break;
            }
        }
        assert_eq!(refused, Some(RefuseReason::Busy));

        // Paged: small pages still carry one report each, in order.
        let all = b.page(0, u32::MAX).0;
        let mut after = 0;
        let mut read = Vec::new();
        for _ in 0..all.len() + 1 {
            let (items, next, more) = b.page(after, 1);
            assert!(items.len() <= 1);
            read.extend(items.into_iter().map(|i| i.seq));
            after = next;
            if !more {
                break;
            }
        }
        assert_eq!(read, all.iter().map(|i| i.seq).collect::<Vec<_>>());
        // A reader ahead of the board starts again from its beginning.
        assert_eq!(b.page(u64::MAX - 1, u32::MAX).0.len(), all.len());

        // Restarted on the same store: the same board.
        let n = b.len();
        drop(b);
        let b = Board::load(store).unwrap();
        assert_eq!(b.len(), n);
        assert_eq!(b.page(0, u32::MAX).0.len(), n);
    }
}
