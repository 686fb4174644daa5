//! What `biop2p ledger` and `biop2p demo` show: a party's balances per
//! counterparty and its entries with their evidence, read from its store
//! and posted through the pure `security::settlement::Ledger` (so the
//! view is the double-entry model's, not a second sum).

use security::settlement::{Ledger, Party, Side};
use serde::{Deserialize, Serialize};

use crate::proto;
use crate::store::{HostStore, LedgerRecord, StoreError, SubmitterStore};

/// One settled entry, with the evidence that proves it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EntryView {
    /// The job (hex).
    pub job_id: String,
    /// blake3 of the host's signed receipt (hex).
    pub receipt_hash: String,
    /// The submitter's acceptance signature (hex): with the receipt, anyone
    /// can check the entry.
    pub acceptance: String,
    /// Owed for it.
    pub amount: u64,
    /// Fuel the receipt claims.
    pub claimed_fuel: u64,
    /// Fuel paid for (the quorum's count).
    pub agreed_fuel: u64,
    /// Fuel claimed beyond the count: evidence of over-billing.
    pub over_claim: Option<u64>,
    /// Submitter side: the host confirmed it.
    pub delivered: bool,
}

/// One counterparty.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CounterpartyView {
    /// Its libp2p peer id.
    pub peer_id: String,
    /// Positive: owed to us (a host's earnings); negative: we owe it (a
    /// submitter's spending).
    pub balance: i64,
    /// The settled entries with it.
    pub entries: Vec<EntryView>,
    /// Host side: work done for it and not yet accepted.
    pub unaccepted: u64,
    /// Host side: of that, what it acknowledged in signed debit notes of
    /// jobs not settled yet (the latest note of each; evidence it owes at
    /// least this much).
    #[serde(default)]
    pub noted: u64,
}

/// A party's whole ledger.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LedgerView {
    /// `host` or `submitter`.
    pub side: String,
    /// Per counterparty, by peer id.
    pub counterparties: Vec<CounterpartyView>,
    /// Sum of the balances.
    pub net: i64,
    /// Sum of every posting (0: each debit has its credit).
    pub trial_balance: i64,
}

impl LedgerView {
    /// A counterparty's balance (0 if none).
    pub fn balance_with(&self, peer: &str) -> i64 {
        self.counterparties
            .iter()
            .find(|c| c.peer_id == peer)
            .map_or(0, |c| c.balance)
    }
}

/// The ledger a host keeps (its data dir's database).
pub fn host_view(store: &HostStore) -> Result<LedgerView, StoreError> {
    let mut l = Ledger::new(Side::Host);
    let recs = store.ledger()?;
    for r in &recs {
        l.apply(r.entry.clone());
    }
    for (job, sub, price) in store.claims()? {
        l.claim(job, Party(sub), price);
    }
    let mut v = view(&l, &recs);
    for (job, note) in store.notes()? {
        let Ok(n) = note.note.verify() else { continue };
        if l.entry(&job).is_some() {
            continue;
        }
        let peer = peer_label(&Party(n.submitter));
        if let Some(c) = v.counterparties.iter_mut().find(|c| c.peer_id == peer) {
            c.noted = c.noted.saturating_add(n.price);
        }
    }
    Ok(v)
}

/// The ledger a submitter keeps.
pub fn submitter_view(store: &SubmitterStore) -> Result<LedgerView, StoreError> {
    let recs = store.ledger()?;
    Ok(view(&submitter_ledger(&recs), &recs))
}

/// A submitter's stored entries posted through the pure ledger.
pub fn submitter_ledger(recs: &[LedgerRecord]) -> Ledger {
    let mut l = Ledger::new(Side::Submitter);
    for r in recs {
        l.apply(r.entry.clone());
    }
    l
}

fn clamp(x: i128) -> i64 {
    x.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

fn view(l: &Ledger, recs: &[LedgerRecord]) -> LedgerView {
    let mut counterparties: Vec<CounterpartyView> = l
        .accounts()
        .map(|(party, a)| CounterpartyView {
            peer_id: peer_label(party),
            balance: clamp(a.balance),
            entries: recs
                .iter()
                .filter(|r| r.entry.counterparty == *party)
                .map(|r| EntryView {
                    job_id: proto::hex(&r.entry.job_id),
                    receipt_hash: proto::hex(&r.entry.receipt_hash),
                    acceptance: r
                        .evidence
                        .acceptance
                        .signature
                        .iter()
                        .map(|b| format!("{b:02x}"))
                        .collect(),
                    amount: r.entry.amount,
                    claimed_fuel: r.entry.claimed_fuel,
                    agreed_fuel: r.entry.agreed_fuel,
                    over_claim: r.entry.over_claim(),
                    delivered: r.delivered,
                })
                .collect(),
            unaccepted: a.unaccepted,
            noted: 0,
        })
        .collect();
    counterparties.sort_by(|a, b| a.peer_id.cmp(&b.peer_id));
    LedgerView {
        side: match l.side() {
            Side::Host => "host",
            Side::Submitter => "submitter",
        }
        .into(),
        counterparties,
        net: clamp(l.net_balance()),
        trial_balance: clamp(l.trial_balance()),
    }
}

fn peer_label(p: &Party) -> String {
    super::submitter::peer_of_key(&p.0).map_or_else(|| proto::hex(&p.0), |id| id.to_string())
}
