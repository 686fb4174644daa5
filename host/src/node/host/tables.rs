//! Young's tables, carried for fresh submitters (`/biop2p/role/1.0.0`).
//!
//! Submitters only dial out, so an experienced submitter cannot answer a
//! fresh one itself: it publishes its signed Thermal table to hosts, and a
//! fresh submitter asks a few hosts for the tables they carry (see
//! `node::young`). Like the trust board, the host never judges a table:
//! it checks its signature and bounds off the loop ([`check`]) and keeps
//! the newest per publisher. With each table it answers how many settled
//! entries it holds with the publisher: a reader weighs publishers by that
//! (a key that paid nobody weighs nothing), taking the median over the
//! hosts it asked, so one carrier's claim cannot make a publisher count.
//!
//! Bounded against a flooding peer: tables in all ([`MAX_TABLES`]), per
//! sending peer ([`PER_SENDER`]), one per publisher; past the total, the
//! oldest table of a publisher with no settled entries here goes first.
//! Kept in memory only: a restarted host carries nothing until submitters
//! publish again (they do at least hourly while they run jobs).

use std::collections::{BTreeMap, HashMap};

use libp2p::PeerId;

use crate::proto::{CarriedTable, MAX_TABLES_PER_ANSWER, SignedTable, TableBody, check_table};

/// Tables carried at most.
pub const MAX_TABLES: usize = 256;
/// Tables carried per sending peer at most (its oldest goes first).
pub const PER_SENDER: usize = 4;
/// A table older than this is neither kept nor handed out.
pub const MAX_AGE_MS: u64 = 24 * 3_600_000;
/// How far in the future a table's time may be (clocks differ).
pub const SKEW_MS: u64 = 60_000;
/// Table checks at once off the loop, and admitted in all.
pub const CHECKS_AT_ONCE: usize = 1;
/// See [`CHECKS_AT_ONCE`].
pub const CHECKS_QUEUED: usize = 16;

struct Carried {
    seq: u64,
    sender: PeerId,
    issued_at_ms: u64,
    table: SignedTable,
}

/// The tables this host carries.
#[derive(Default)]
pub struct Tables {
    by_publisher: HashMap<[u8; 32], Carried>,
    /// Publishers by arrival (oldest first).
    order: BTreeMap<u64, [u8; 32]>,
    per_sender: HashMap<PeerId, usize>,
    next: u64,
}

/// A published table checked off the loop, with where its answer goes.
pub struct Checked<R> {
    /// The peer that sent it.
    pub sender: PeerId,
    /// Where the answer goes.
    pub reply: R,
    /// The table.
    pub table: SignedTable,
    /// Its body, or the stable refusal reason and detail.
    pub outcome: Result<TableBody, (&'static str, String)>,
}

/// Checks a published table (run off the loop: it verifies a signature).
pub fn check(table: &SignedTable, now_ms: u64) -> Result<TableBody, (&'static str, String)> {
    check_table(table, now_ms, SKEW_MS, MAX_AGE_MS)
}

impl Tables {
    /// Tables carried.
    pub fn len(&self) -> usize {
        self.by_publisher.len()
    }

    /// Whether none is carried.
    pub fn is_empty(&self) -> bool {
        self.by_publisher.is_empty()
    }

    /// Keeps a checked table from `sender`; true when it is new here (not
    /// the one already carried, nor older than it). `paid` says whether
    /// this host has settled entries with a publisher.
    pub fn keep(
        &mut self,
        sender: PeerId,
        table: SignedTable,
        body: &TableBody,
        paid: impl Fn(&[u8; 32]) -> bool,
    ) -> bool {
        if let Some(old) = self.by_publisher.get(&body.publisher)
            && old.issued_at_ms >= body.issued_at_ms
        {
            return false;
        }
        self.remove(&body.publisher);
        // The sender's own oldest makes room for its new one.
        if self.per_sender.get(&sender).copied().unwrap_or(0) >= PER_SENDER
            && let Some(p) = self
                .order
                .values()
                .find(|p| {
                    self.by_publisher
                        .get(*p)
                        .is_some_and(|c| c.sender == sender)
                })
                .copied()
        {
            self.remove(&p);
        }
        if self.by_publisher.len() >= MAX_TABLES {
            let victim = self
                .order
                .values()
                .find(|p| !paid(p))
                .or_else(|| self.order.values().next())
                .copied();
            if let Some(p) = victim {
                self.remove(&p);
            }
        }
        let seq = self.next;
        self.next += 1;
        self.order.insert(seq, body.publisher);
        *self.per_sender.entry(sender).or_default() += 1;
        self.by_publisher.insert(
            body.publisher,
            Carried {
                seq,
                sender,
                issued_at_ms: body.issued_at_ms,
                table,
            },
        );
        true
    }

    fn remove(&mut self, publisher: &[u8; 32]) {
        let Some(c) = self.by_publisher.remove(publisher) else {
            return;
        };
        self.order.remove(&c.seq);
        if let Some(n) = self.per_sender.get_mut(&c.sender) {
            *n -= 1;
            if *n == 0 {
                self.per_sender.remove(&c.sender);
            }
        }
    }

    /// What a reader gets: unexpired tables, those of publishers with the
    /// most settled entries here first, then the newest, at most
    /// [`MAX_TABLES_PER_ANSWER`], each with its settled entries here.
    pub fn answer(&self, now_ms: u64, settled: impl Fn(&[u8; 32]) -> u64) -> Vec<CarriedTable> {
        let mut all: Vec<(u64, u64, &Carried)> = self
            .by_publisher
            .iter()
            .filter(|(_, c)| c.issued_at_ms.saturating_add(MAX_AGE_MS) >= now_ms)
            .map(|(p, c)| (settled(p), c.issued_at_ms, c))
            .collect();
        all.sort_by(|a, b| {
            b.0.cmp(&a.0)
                .then(b.1.cmp(&a.1))
                .then(a.2.seq.cmp(&b.2.seq))
        });
        all.into_iter()
            .take(MAX_TABLES_PER_ANSWER)
            .map(|(s, _, c)| CarriedTable {
                table: c.table.clone(),
                settled_entries: s,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::VERSION;

    fn table(seed: u8, at: u64) -> (SignedTable, TableBody) {
        let key = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
        let body = TableBody {
            version: VERSION,
            publisher: key.verifying_key().to_bytes(),
            issued_at_ms: at,
            experience: 25,
            trails: vec![(vec![1; 38], 2.0)],
        };
        (SignedTable::sign(&body, &key), body)
    }

    #[test]
    fn newest_per_publisher_bounded_per_sender_and_in_all_paid_publishers_first() {
        let mut t = Tables::default();
        let (a, flood) = (PeerId::random(), PeerId::random());
        let unpaid = |_: &[u8; 32]| false;
        let (t1, b1) = table(1, 1_000);
        assert!(t.keep(a, t1.clone(), &b1, unpaid));
        assert!(!t.keep(a, t1, &b1, unpaid), "the same table again");
        let (t1_old, b1_old) = table(1, 500);
        assert!(!t.keep(a, t1_old, &b1_old, unpaid), "an older one");
        let (t1_new, b1_new) = table(1, 2_000);
        assert!(t.keep(a, t1_new, &b1_new, unpaid));
        assert_eq!(t.len(), 1);

        // One peer relaying many publishers keeps only its newest few.
        for s in 10..10 + 3 * PER_SENDER as u8 {
            let (x, bx) = table(s, 1_000 + s as u64);
            t.keep(flood, x, &bx, unpaid);
        }
        assert_eq!(t.len(), 1 + PER_SENDER);
        // Past the total, unpaid publishers go before paid ones.
        let paid_key = b1.publisher;
        let paid = |p: &[u8; 32]| *p == paid_key;
        for s in 0..MAX_TABLES as u32 {
            let key = ed25519_dalek::SigningKey::from_bytes(&{
                let mut k = [0u8; 32];
                k[..4].copy_from_slice(&s.to_le_bytes());
                k[31] = 0xaa;
                k
            });
            let body = TableBody {
                version: VERSION,
                publisher: key.verifying_key().to_bytes(),
                issued_at_ms: 3_000,
                experience: 1,
                trails: Vec::new(),
            };
            t.keep(
                PeerId::random(),
                SignedTable::sign(&body, &key),
                &body,
                paid,
            );
        }
        assert_eq!(t.len(), MAX_TABLES);
        let settled = |p: &[u8; 32]| u64::from(*p == paid_key) * 7;
        let answer = t.answer(3_000, settled);
        assert_eq!(answer.len(), MAX_TABLES_PER_ANSWER);
        assert_eq!(answer[0].settled_entries, 7);
        assert_eq!(answer[0].table.verify().unwrap().publisher, paid_key);
        // A day later nothing is handed out.
        assert!(t.answer(3_001 + MAX_AGE_MS, settled).is_empty());
    }
}
