//! Settlement: what a verified job is worth, who owes whom, and how much
//! unaccepted work a host carries for one submitter.
//!
//! Pure and sans-IO like the rest of the crate: the host and the submitter
//! feed it facts they have already checked (signatures are the caller's,
//! over the exact bytes), and store what it decides. Nothing here reads a
//! clock or a disk; a [`Ledger`] is rebuilt from the stored entries at
//! start, and the live node keeps it in step with its sled store.
//!
//! - **Price rule** ([`pay`], [`amount`]): a replica whose output is the
//!   accepted one is paid the fuel the quorum agreed on, at the host's own
//!   quoted rate (the rate its signed receipt states: `price / fuel_used`),
//!   never above the job's ceiling. A host that claims more fuel than the
//!   quorum's deterministic count is paid the count, and the difference is
//!   returned as evidence ([`Pay::Paid::over_claim`]). A replica with another
//!   output is not paid. A canary is paid by the same rule (against its
//!   known answer), so a suspect cannot tell one from a job by its pay.
//! - **Double entry** ([`Ledger`]): every settled [`Entry`] posts a debit
//!   and an equal credit ([`Entry::postings`]); on a host, the submitter's
//!   account is debited (it owes) and earnings credited; on a submitter,
//!   spending is debited and the host's account credited. The sum of all
//!   postings is zero after any sequence of events ([`Ledger::trial_balance`]),
//!   and an entry is applied at most once per job (the receipt binds the
//!   job): replays, restarts and re-runs never count twice.
//! - **Credit** ([`CreditPolicy`]): a host carries at most a limit of
//!   unaccepted work per submitter. Newcomers start small (a Sybil with a
//!   fresh key gets little free work), and the limit grows with the value
//!   the submitter has settled.
//! - **Netting** ([`Statement`]): a peer's signed statement of its balance
//!   with us is compared with our own entries; a disagreement is evidence,
//!   never merged.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A 32-byte identity: an ed25519 public key (a party) or a blake3 hash.
pub type Key = [u8; 32];

/// The other side of an entry: on a host, a submitter's key; on a
/// submitter, a host's key.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub struct Party(pub Key);

/// Which side of the market a ledger belongs to.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum Side {
    /// Sells compute: earns.
    Host,
    /// Buys compute: spends.
    Submitter,
}

/// An account of the double-entry ledger.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Serialize, Deserialize)]
pub enum Account {
    /// What a counterparty owes us (positive) or we owe it (negative).
    Counterparty(Party),
    /// A host's income account.
    Earnings,
    /// A submitter's expense account.
    Spending,
}

/// One side of an entry: `amount` is positive for a debit, negative for a
/// credit, so the postings of an entry sum to zero.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Posting {
    /// The account.
    pub account: Account,
    /// Debit (+) or credit (-).
    pub amount: i128,
}

/// A settled job: a receipt the host signed plus an acceptance the
/// submitter signed. Both sides store the same facts.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Entry {
    /// The job (bound by the receipt): at most one entry per job.
    pub job_id: Key,
    /// blake3 of the signed receipt's bytes.
    pub receipt_hash: Key,
    /// The other side.
    pub counterparty: Party,
    /// Fuel the receipt claims.
    pub claimed_fuel: u64,
    /// Fuel the submitter agreed to pay for (the quorum's count).
    pub agreed_fuel: u64,
    /// What is owed, in the market's units.
    pub amount: u64,
}

impl Entry {
    /// The debit and the credit this entry posts on `side`.
    pub fn postings(&self, side: Side) -> [Posting; 2] {
        let a = i128::from(self.amount);
        let cp = Account::Counterparty(self.counterparty);
        match side {
            Side::Host => [
                Posting {
                    account: cp,
                    amount: a,
                },
                Posting {
                    account: Account::Earnings,
                    amount: -a,
                },
            ],
            Side::Submitter => [
                Posting {
                    account: Account::Spending,
                    amount: a,
                },
                Posting {
                    account: cp,
                    amount: -a,
                },
            ],
        }
    }

    /// Fuel claimed beyond the agreed count: evidence of over-billing.
    pub fn over_claim(&self) -> Option<u64> {
        (self.claimed_fuel > self.agreed_fuel).then(|| self.claimed_fuel - self.agreed_fuel)
    }
}

/// What one replica of a decided task is paid.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Pay {
    /// Its output is the accepted one.
    Paid {
        /// The fuel paid for: the agreed count, or the claim if lower.
        agreed_fuel: u64,
        /// What it is owed.
        amount: u64,
        /// Fuel it claimed beyond the agreed count (evidence), if any.
        over_claim: Option<u64>,
    },
    /// Its output is not the accepted one: a wrong or minority answer is
    /// worth nothing.
    Unpaid,
}

/// What the submitter knows of one replica's signed receipt.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Claim {
    /// The answer it gave (output digest, or failure kind digest).
    pub output: Key,
    /// Fuel it claims.
    pub fuel: u64,
    /// Price it claims (fuel × its rate, rounded up).
    pub price: u64,
    /// The job's ceiling per million fuel.
    pub ceiling_per_mfuel: u64,
}

/// The price rule: what a replica is owed once `accepted` (the quorum's
/// output) and `agreed_fuel` (the quorum's fuel count) are decided.
pub fn pay(accepted: &Key, agreed_fuel: u64, c: &Claim) -> Pay {
    if &c.output != accepted {
        return Pay::Unpaid;
    }
    let fuel = agreed_fuel.min(c.fuel);
    Pay::Paid {
        agreed_fuel: fuel,
        amount: amount(c.fuel, c.price, fuel, c.ceiling_per_mfuel),
        over_claim: (c.fuel > agreed_fuel).then(|| c.fuel - agreed_fuel),
    }
}

/// `agreed_fuel` at the rate the host's receipt states (`claimed_price`
/// for `claimed_fuel`, rounded up as the host rounds), capped by the job's
/// ceiling. Deterministic, so a host can recompute what an acceptance
/// must say from its own receipt.
pub fn amount(
    claimed_fuel: u64,
    claimed_price: u64,
    agreed_fuel: u64,
    ceiling_per_mfuel: u64,
) -> u64 {
    let fuel = u128::from(agreed_fuel.min(claimed_fuel));
    let at_rate = if claimed_fuel == 0 {
        0
    } else {
        (u128::from(claimed_price) * fuel).div_ceil(u128::from(claimed_fuel))
    };
    let cap = (fuel * u128::from(ceiling_per_mfuel)).div_ceil(1_000_000);
    at_rate.min(cap).min(u128::from(u64::MAX)) as u64
}

/// The most a job may cost: its fuel cap at `price_per_mfuel`, rounded up
/// (what a quote shows and what credit admission reserves).
pub fn max_cost(fuel_cap: u64, price_per_mfuel: u64) -> u64 {
    (u128::from(fuel_cap) * u128::from(price_per_mfuel))
        .div_ceil(1_000_000)
        .min(u128::from(u64::MAX)) as u64
}

/// What applying an entry did.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Applied {
    /// A new entry: balances changed.
    New,
    /// The same entry was applied before (a replay or a restart): nothing
    /// changed.
    Duplicate,
    /// Another entry for the same job exists: nothing changed, and the
    /// stored one stands. Evidence of a double acceptance or a forgery.
    Conflict(Box<Entry>),
}

/// Per counterparty: what the ledger holds for it.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Standing {
    /// Sum of its postings: positive, it owes us.
    pub balance: i128,
    /// Settled entries with it.
    pub entries: u64,
    /// Value settled with it, in all (what credit grows with).
    pub settled: u64,
    /// Unaccepted work it has from us (a host's open claims).
    pub unaccepted: u64,
}

/// A double-entry ledger with the host's open claims beside it.
///
/// Invariants, after any sequence of calls: the postings of all entries sum
/// to zero ([`Ledger::trial_balance`]); each job has at most one entry and
/// at most one open claim, never both; every counterparty's balance is the
/// sum of its entries' postings. Memory is bounded by what the caller
/// stores (one entry per settled job, one claim per unaccepted one).
#[derive(Clone, Debug)]
pub struct Ledger {
    side: Side,
    entries: BTreeMap<Key, Entry>,
    claims: BTreeMap<Key, (Party, u64)>,
    accounts: BTreeMap<Party, Standing>,
    /// Earnings (host) or spending (submitter), as posted.
    own: i128,
}

impl Ledger {
    /// An empty ledger of `side`.
    pub fn new(side: Side) -> Self {
        Ledger {
            side,
            entries: BTreeMap::new(),
            claims: BTreeMap::new(),
            accounts: BTreeMap::new(),
            own: 0,
        }
    }

    /// Which side this is.
    pub fn side(&self) -> Side {
        self.side
    }

    /// A host signed a receipt for `job` worth `amount` to `party`, not yet
    /// accepted. A later claim for the same job (a re-run after a crash)
    /// replaces the earlier one; a job already settled keeps no claim.
    /// Returns whether the claim is open.
    pub fn claim(&mut self, job: Key, party: Party, amount: u64) -> bool {
        if self.entries.contains_key(&job) {
            return false;
        }
        if let Some((p, old)) = self.claims.insert(job, (party, amount)) {
            let a = self.accounts.entry(p).or_default();
            a.unaccepted = a.unaccepted.saturating_sub(old);
        }
        let a = self.accounts.entry(party).or_default();
        a.unaccepted = a.unaccepted.saturating_add(amount);
        true
    }

    /// Applies a settled entry, at most once per job; the job's open claim
    /// (if any) is closed.
    pub fn apply(&mut self, e: Entry) -> Applied {
        if let Some(old) = self.entries.get(&e.job_id) {
            return if *old == e {
                Applied::Duplicate
            } else {
                Applied::Conflict(Box::new(old.clone()))
            };
        }
        if let Some((p, old)) = self.claims.remove(&e.job_id) {
            let a = self.accounts.entry(p).or_default();
            a.unaccepted = a.unaccepted.saturating_sub(old);
        }
        for p in e.postings(self.side) {
            match p.account {
                Account::Counterparty(party) => {
                    let a = self.accounts.entry(party).or_default();
                    a.balance += p.amount;
                    a.entries += 1;
                    a.settled = a.settled.saturating_add(e.amount);
                }
                Account::Earnings | Account::Spending => self.own += p.amount,
            }
        }
        self.entries.insert(e.job_id, e);
        Applied::New
    }

    /// The entry of a job, if settled.
    pub fn entry(&self, job: &Key) -> Option<&Entry> {
        self.entries.get(job)
    }

    /// Whether `job` has an open (unaccepted) claim.
    pub fn has_claim(&self, job: &Key) -> bool {
        self.claims.contains_key(job)
    }

    /// What the ledger holds for `party`.
    pub fn account(&self, party: &Party) -> Standing {
        self.accounts.get(party).copied().unwrap_or_default()
    }

    /// Every counterparty with what the ledger holds for it.
    pub fn accounts(&self) -> impl Iterator<Item = (&Party, &Standing)> {
        self.accounts.iter()
    }

    /// Every entry, by job.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values()
    }

    /// Earnings (host, negative: credits) or spending (submitter, positive).
    pub fn own_account(&self) -> i128 {
        self.own
    }

    /// The sum of every posting, recomputed from the entries: zero, always
    /// (each entry's debit has its credit).
    pub fn trial_balance(&self) -> i128 {
        self.entries
            .values()
            .flat_map(|e| e.postings(self.side))
            .map(|p| p.amount)
            .sum()
    }

    /// Sum of the counterparty balances: what the rest of the market owes
    /// us, net. Across every party of a market (each side's ledger), these
    /// sums add to zero when both sides hold the same entries.
    pub fn net_balance(&self) -> i128 {
        self.accounts.values().map(|a| a.balance).sum()
    }

    /// Our statement of the balance with `party`, for netting.
    pub fn statement(&self, party: &Party) -> Statement {
        let mut h = Digest::default();
        let mut entries = 0;
        let mut balance = 0i128;
        for e in self.entries.values().filter(|e| e.counterparty == *party) {
            h.add(&e.job_id, e.amount);
            entries += 1;
            balance += e.postings(self.side)[0].amount.abs();
        }
        Statement {
            entries,
            total: balance.min(i128::from(u64::MAX)) as u64,
            digest: h.0,
        }
    }

    /// Compares a counterparty's statement of our dealings with our own
    /// entries. A disagreement is returned as evidence; it changes nothing.
    pub fn check_statement(&self, party: &Party, theirs: &Statement) -> StatementCheck {
        let ours = self.statement(party);
        if ours == *theirs {
            StatementCheck::Agrees
        } else {
            StatementCheck::Disagrees {
                ours,
                theirs: *theirs,
            }
        }
    }
}

/// A summary of the settled entries between two parties: how many, their
/// total value, and an order-independent digest of (job, amount) pairs, so
/// two statements agree exactly when both sides hold the same entries.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Statement {
    /// Entries.
    pub entries: u64,
    /// Total value.
    pub total: u64,
    /// XOR of a mix of each (job, amount): independent of order.
    pub digest: Key,
}

/// The outcome of comparing a peer's statement with our entries.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum StatementCheck {
    /// Same entries on both sides.
    Agrees,
    /// Evidence: the statement does not match our entries (not merged).
    Disagrees {
        /// Our statement.
        ours: Statement,
        /// Theirs.
        theirs: Statement,
    },
}

#[derive(Default)]
struct Digest(Key);

impl Digest {
    /// Folds (job, amount) in. Not cryptographic: statements are signed by
    /// the caller over these bytes, and a peer forging a collision only
    /// hides its own disagreement from itself.
    fn add(&mut self, job: &Key, amount: u64) {
        let mut x = *job;
        for (i, b) in amount.to_be_bytes().iter().enumerate() {
            x[i] ^= b;
            x[31 - i] = x[31 - i].wrapping_add(b.rotate_left(3));
        }
        for (d, v) in self.0.iter_mut().zip(x) {
            *d ^= v;
        }
    }
}

/// How much unaccepted work a host carries per submitter.
///
/// The limit is `newcomer_limit + settled × growth_percent / 100`, at most
/// `max_limit`: a fresh key gets `newcomer_limit` of work on credit, and
/// every unit it settles buys `growth_percent`% more. A job is admitted when
/// the submitter's unaccepted work plus the job's most possible cost fits.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct CreditPolicy {
    /// Credit of a submitter with no settled history, in market units.
    /// Default 1 000 000: one job of a host's default largest fuel budget
    /// (10¹²) at price 1, or a hundred of the default fuel cap (10¹⁰). A
    /// fresh key gets that much work on credit and no more.
    pub newcomer_limit: u64,
    /// How much each settled unit raises the limit, in percent. Default 100.
    pub growth_percent: u64,
    /// The limit never exceeds this. Default 10¹².
    pub max_limit: u64,
}

impl Default for CreditPolicy {
    fn default() -> Self {
        CreditPolicy {
            newcomer_limit: 1_000_000,
            growth_percent: 100,
            max_limit: 1_000_000_000_000,
        }
    }
}

/// Why credit was refused: the numbers, for the refusal's message.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct CreditRefusal {
    /// Unaccepted work the submitter has from this host.
    pub unaccepted: u64,
    /// The job's most possible cost.
    pub cost: u64,
    /// The submitter's limit now.
    pub limit: u64,
}

impl CreditPolicy {
    /// The limit of a submitter that has settled `settled` in all.
    pub fn limit(&self, settled: u64) -> u64 {
        let grown = u128::from(settled) * u128::from(self.growth_percent) / 100;
        (u128::from(self.newcomer_limit) + grown).min(u128::from(self.max_limit)) as u64
    }

    /// Whether a job of most possible cost `cost` fits `party`'s credit.
    pub fn check(&self, ledger: &Ledger, party: &Party, cost: u64) -> Result<(), CreditRefusal> {
        let a = ledger.account(party);
        let limit = self.limit(a.settled);
        if a.unaccepted.saturating_add(cost) > limit {
            return Err(CreditRefusal {
                unaccepted: a.unaccepted,
                cost,
                limit,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry(job: u8, party: u8, amount: u64) -> Entry {
        Entry {
            job_id: [job; 32],
            receipt_hash: [job ^ 0xff; 32],
            counterparty: Party([party; 32]),
            claimed_fuel: amount * 10,
            agreed_fuel: amount * 10,
            amount,
        }
    }

    #[test]
    fn an_over_claim_is_paid_the_agreed_count_and_a_wrong_answer_nothing() {
        let right = [1; 32];
        // Rate 2 per Mfuel: 3 000 000 fuel cost 6.
        let honest = Claim {
            output: right,
            fuel: 3_000_000,
            price: 6,
            ceiling_per_mfuel: 10,
        };
        assert_eq!(
            pay(&right, 3_000_000, &honest),
            Pay::Paid {
                agreed_fuel: 3_000_000,
                amount: 6,
                over_claim: None
            }
        );
        let greedy = Claim {
            fuel: 6_000_000,
            price: 12,
            ..honest
        };
        assert_eq!(
            pay(&right, 3_000_000, &greedy),
            Pay::Paid {
                agreed_fuel: 3_000_000,
                amount: 6,
                over_claim: Some(3_000_000)
            }
        );
        let wrong = Claim {
            output: [2; 32],
            ..honest
        };
        assert_eq!(pay(&right, 3_000_000, &wrong), Pay::Unpaid);
        // The ceiling caps a receipt that states a higher rate.
        assert_eq!(amount(1_000_000, 50, 1_000_000, 10), 10);
        assert_eq!(max_cost(10_000_000_000, 1), 10_000);
        assert_eq!(amount(0, 0, 0, 10), 0);
    }

    #[test]
    fn entries_apply_once_and_conflicts_change_nothing() {
        let mut l = Ledger::new(Side::Host);
        assert!(l.claim([1; 32], Party([9; 32]), 5));
        assert_eq!(l.account(&Party([9; 32])).unaccepted, 5);
        assert_eq!(l.apply(entry(1, 9, 5)), Applied::New);
        assert_eq!(l.apply(entry(1, 9, 5)), Applied::Duplicate);
        assert!(matches!(l.apply(entry(1, 9, 50)), Applied::Conflict(_)));
        assert!(
            !l.claim([1; 32], Party([9; 32]), 5),
            "settled job: no claim"
        );
        let a = l.account(&Party([9; 32]));
        assert_eq!(
            (a.balance, a.entries, a.settled, a.unaccepted),
            (5, 1, 5, 0)
        );
        assert_eq!(l.trial_balance(), 0);
        assert_eq!(l.own_account(), -5);
    }

    #[test]
    fn credit_starts_small_and_grows_with_settled_history() {
        let p = CreditPolicy {
            newcomer_limit: 100,
            growth_percent: 50,
            max_limit: 1000,
        };
        let party = Party([3; 32]);
        let mut l = Ledger::new(Side::Host);
        assert!(p.check(&l, &party, 100).is_ok());
        assert!(p.check(&l, &party, 101).is_err());
        l.claim([1; 32], party, 80);
        let r = p.check(&l, &party, 30).unwrap_err();
        assert_eq!((r.unaccepted, r.cost, r.limit), (80, 30, 100));
        l.apply(entry(1, 3, 80));
        assert_eq!(p.limit(80), 140);
        assert!(p.check(&l, &party, 140).is_ok());
        assert_eq!(p.limit(u64::MAX), 1000);
    }

    #[test]
    fn statements_agree_only_on_the_same_entries() {
        let mut host = Ledger::new(Side::Host);
        let mut sub = Ledger::new(Side::Submitter);
        let h = Party([1; 32]);
        let s = Party([2; 32]);
        for (job, amt) in [(1u8, 5u64), (2, 7)] {
            let mut e = entry(job, 0, amt);
            e.counterparty = s;
            host.apply(e.clone());
            e.counterparty = h;
            sub.apply(e);
        }
        assert_eq!(
            host.check_statement(&s, &sub.statement(&h)),
            StatementCheck::Agrees
        );
        assert_eq!(host.net_balance() + sub.net_balance(), 0);
        let mut e = entry(3, 0, 1);
        e.counterparty = h;
        sub.apply(e);
        assert!(matches!(
            host.check_statement(&s, &sub.statement(&h)),
            StatementCheck::Disagrees { .. }
        ));
    }

    #[derive(Debug, Clone)]
    enum Op {
        /// A job finishes on host `h` for submitter `s`: a claim.
        Run { job: u8, h: u8, s: u8, fuel: u64 },
        /// The job is accepted (quorum fuel `agreed` ≤ claimed) and the
        /// acceptance delivered, or lost on the way.
        Accept { job: u8, cut: u64, delivered: bool },
        /// The job's answer was wrong: never accepted.
        Fail { job: u8 },
        /// A party restarts: its ledger is rebuilt from what it stored.
        Restart { host: bool },
        /// An old acceptance is sent again.
        Replay { job: u8 },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..24, 0u8..3, 0u8..3, 1u64..10_000_000).prop_map(|(job, h, s, fuel)| Op::Run {
                job,
                h,
                s,
                fuel
            }),
            (0u8..24, 0u64..3, any::<bool>()).prop_map(|(job, cut, delivered)| Op::Accept {
                job,
                cut,
                delivered
            }),
            (0u8..24).prop_map(|job| Op::Fail { job }),
            any::<bool>().prop_map(|host| Op::Restart { host }),
            (0u8..24).prop_map(|job| Op::Replay { job }),
        ]
    }

    /// Rebuilds a ledger from its stored entries and claims, as a restarted
    /// node does.
    fn reload(side: Side, entries: &[Entry], claims: &[(Key, Party, u64)]) -> Ledger {
        let mut l = Ledger::new(side);
        for e in entries {
            l.apply(e.clone());
        }
        for (j, p, a) in claims {
            l.claim(*j, *p, *a);
        }
        l
    }

    proptest! {
        /// Over random jobs, failures, restarts and replays: every ledger's
        /// postings sum to zero, no job is settled twice, the hosts' and
        /// submitters' balances cancel once every sent acceptance has been
        /// delivered, and a wrong answer is never paid.
        #[test]
        fn double_entry_holds_over_any_history(ops in proptest::collection::vec(op(), 1..120)) {
            // 3 hosts and 3 submitters, each with its ledger and its "disk".
            let mut hosts: Vec<Ledger> = (0..3).map(|_| Ledger::new(Side::Host)).collect();
            let mut subs: Vec<Ledger> = (0..3).map(|_| Ledger::new(Side::Submitter)).collect();
            let mut host_disk: HostDisk = vec![Default::default(); 3];
            let mut sub_disk: Vec<Vec<Entry>> = vec![Vec::new(); 3];
            // job → (host, submitter, claimed fuel, claimed price, wrong)
            let mut jobs: BTreeMap<u8, (usize, usize, u64, u64, bool)> = BTreeMap::new();
            // Acceptances the submitter stored and has yet to deliver.
            let mut outbox: Vec<(usize, Entry)> = Vec::new();
            let key = |i: usize| Party([i as u8 + 100; 32]);
            for op in ops {
                match op {
                    Op::Run { job, h, s, fuel } => {
                        if jobs.contains_key(&job) { continue; }
                        let price = max_cost(fuel, 3);
                        jobs.insert(job, (h as usize, s as usize, fuel, price, false));
                        let j = [job; 32];
                        if hosts[h as usize].claim(j, key(s as usize + 3), price) {
                            host_disk[h as usize].1.retain(|c| c.0 != j);
                            host_disk[h as usize].1.push((j, key(s as usize + 3), price));
                        }
                    }
                    Op::Fail { job } => {
                        if let Some(j) = jobs.get_mut(&job) { j.4 = true; }
                    }
                    Op::Accept { job, cut, delivered } => {
                        let Some(&(h, s, fuel, price, wrong)) = jobs.get(&job) else { continue };
                        let right = [7; 32];
                        let claim = Claim { output: if wrong { [8; 32] } else { right }, fuel, price, ceiling_per_mfuel: 10 };
                        let agreed = fuel / (cut + 1);
                        let Pay::Paid { agreed_fuel, amount, .. } = pay(&right, agreed, &claim) else {
                            prop_assert!(wrong, "a right answer is paid");
                            continue;
                        };
                        prop_assert!(!wrong, "a wrong answer is never paid");
                        prop_assert!(amount <= price);
                        let e = Entry { job_id: [job; 32], receipt_hash: [job ^ 1; 32], counterparty: key(h), claimed_fuel: fuel, agreed_fuel, amount };
                        // The submitter stores first, then sends.
                        if subs[s].apply(e.clone()) == Applied::New {
                            sub_disk[s].push(e.clone());
                            outbox.push((s, e));
                        }
                        if delivered {
                            deliver(&mut hosts, &mut host_disk, &mut outbox, &jobs, key);
                        }
                    }
                    Op::Replay { job } => {
                        if let Some(&(h, s, ..)) = jobs.get(&job)
                            && let Some(e) = subs[s].entry(&[job; 32]).cloned() {
                            let mut e = e;
                            e.counterparty = key(s + 3);
                            let before = hosts[h].account(&e.counterparty);
                            let r = hosts[h].apply(e.clone());
                            if r == Applied::New {
                                host_disk[h].0.push(e);
                            } else {
                                prop_assert_eq!(before, hosts[h].account(&key(s + 3)), "a replay changes nothing");
                            }
                        }
                    }
                    Op::Restart { host } => {
                        if host {
                            for (i, l) in hosts.iter_mut().enumerate() {
                                *l = reload(Side::Host, &host_disk[i].0, &host_disk[i].1);
                            }
                        } else {
                            for (i, l) in subs.iter_mut().enumerate() {
                                *l = reload(Side::Submitter, &sub_disk[i], &[]);
                            }
                        }
                    }
                }
                for l in hosts.iter().chain(&subs) {
                    prop_assert_eq!(l.trial_balance(), 0);
                    prop_assert_eq!(l.own_account(), -l.net_balance());
                    for e in l.entries() {
                        prop_assert!(!l.has_claim(&e.job_id), "settled and open at once");
                    }
                }
            }
            deliver(&mut hosts, &mut host_disk, &mut outbox, &jobs, key);
            let net: i128 = hosts.iter().chain(&subs).map(|l| l.net_balance()).sum();
            prop_assert_eq!(net, 0, "every party's balances sum to zero");
            let settled: usize = hosts.iter().map(|l| l.entries().count()).sum();
            let paid: usize = subs.iter().map(|l| l.entries().count()).sum();
            prop_assert_eq!(settled, paid, "each acceptance is one entry on each side");
        }
    }

    type HostDisk = Vec<(Vec<Entry>, Vec<(Key, Party, u64)>)>;

    fn deliver(
        hosts: &mut [Ledger],
        disk: &mut HostDisk,
        outbox: &mut Vec<(usize, Entry)>,
        jobs: &BTreeMap<u8, (usize, usize, u64, u64, bool)>,
        key: impl Fn(usize) -> Party,
    ) {
        for (s, mut e) in outbox.drain(..) {
            let (h, ..) = jobs[&e.job_id[0]];
            e.counterparty = key(s + 3);
            if hosts[h].apply(e.clone()) == Applied::New {
                disk[h].1.retain(|c| c.0 != e.job_id);
                disk[h].0.push(e);
            }
        }
    }
}
