//! Admission: the pure checks a job passes before anything is fetched or
//! stored, and the per-peer quotas that keep one submitter from taking
//! what belongs to all. No IO and no clock: the caller passes `now`, so
//! every edge is tested without sockets.
//!
//! Every number here is peer-controlled and checked before it is used,
//! with saturating arithmetic. The quotas are per peer *and* global: a
//! peer can fill its own share and no more, and many peers together cannot
//! exceed what the host can hold.

use std::collections::HashMap;
use std::hash::Hash as StdHash;
use std::time::{Duration, Instant};

use crate::config::NodeConfig;
use crate::proto::{self, InlineBlob, JobSpec, RefuseReason};
use security::settlement::{self, CreditPolicy, Entry, Ledger, Party};

/// A refusal: the stable reason and a message that names the bad value.
pub type Refusal = (RefuseReason, String);

/// The empty blob's hash: a zero-sized blob is never fetched, only checked.
pub fn empty_hash() -> proto::Hash {
    *blake3::hash(&[]).as_bytes()
}

/// Checks what the job says about itself: expiry, sizes, limits, price.
/// `now` is Unix seconds. Replay and queue room are the caller's (they need
/// the store and the quotas).
pub fn check_spec(cfg: &NodeConfig, spec: &JobSpec, now: u64) -> Result<(), Refusal> {
    let sec = &cfg.security;
    let res = &cfg.resources;
    if spec.expires_at.saturating_add(sec.clock_skew_secs) < now {
        return Err((
            RefuseReason::Expired,
            format!("job expired at {} (now {now})", spec.expires_at),
        ));
    }
    if spec.expires_at
        > now
            .saturating_add(sec.max_job_lifetime_secs)
            .saturating_add(sec.clock_skew_secs)
    {
        return Err((
            RefuseReason::Expired,
            format!(
                "job expires more than {} s ahead",
                sec.max_job_lifetime_secs
            ),
        ));
    }
    let too_large = |what: &str, got: u64, max: u64| {
        (
            RefuseReason::TooLarge,
            format!("{what} {got} is over this host's limit of {max}"),
        )
    };
    if spec.fuel > res.max_fuel {
        return Err(too_large("fuel", spec.fuel, res.max_fuel));
    }
    if spec.memory_bytes > res.max_memory_bytes {
        return Err(too_large("memory", spec.memory_bytes, res.max_memory_bytes));
    }
    if spec.module_size > res.max_blob_bytes {
        return Err(too_large(
            "module size",
            spec.module_size,
            res.max_blob_bytes,
        ));
    }
    if spec.input_size > res.max_blob_bytes {
        return Err(too_large("input size", spec.input_size, res.max_blob_bytes));
    }
    // A module has at least a header; an empty one could never run, and a
    // zero size with another hash could never be fetched.
    if spec.module_size == 0 {
        return Err((RefuseReason::Malformed, "module size is 0".into()));
    }
    if spec.input_size == 0 && spec.input_hash != empty_hash() {
        return Err((
            RefuseReason::BlobMismatch,
            "input size is 0 but its hash is not the empty blob's".into(),
        ));
    }
    check_data(spec, res.max_blob_bytes)?;
    let args: usize = spec.args.iter().map(|a| a.len() + 1).sum();
    if args > MAX_ARGV_BYTES {
        return Err(too_large("argv bytes", args as u64, MAX_ARGV_BYTES as u64));
    }
    let price = cfg.market.price_per_mfuel;
    if spec.max_price_per_mfuel < price {
        return Err((
            RefuseReason::PriceTooLow,
            format!(
                "price ceiling {} per Mfuel is below this host's price {price}",
                spec.max_price_per_mfuel
            ),
        ));
    }
    Ok(())
}

/// Checks a job's read-only data blobs: at most [`proto::MAX_DATA_BLOBS`],
/// each name a plain file name used once, each blob within the blob limit
/// and all together within it too (they are held while the job waits, like
/// its input), and a zero size only with the empty blob's hash.
fn check_data(spec: &JobSpec, max_blob_bytes: u64) -> Result<(), Refusal> {
    if spec.data.len() > proto::MAX_DATA_BLOBS {
        return Err((
            RefuseReason::TooLarge,
            format!(
                "{} data blobs is over the limit of {}",
                spec.data.len(),
                proto::MAX_DATA_BLOBS
            ),
        ));
    }
    let mut total = 0u64;
    for (i, d) in spec.data.iter().enumerate() {
        if !proto::valid_data_name(&d.name) {
            return Err((
                RefuseReason::Malformed,
                format!(
                    "data name {:?} is not 1-64 characters of [A-Za-z0-9._-] not starting with a dot",
                    d.name
                ),
            ));
        }
        if spec.data[..i].iter().any(|o| o.name == d.name) {
            return Err((
                RefuseReason::Malformed,
                format!("data name {:?} is used twice", d.name),
            ));
        }
        if d.size == 0 && d.hash != empty_hash() {
            return Err((
                RefuseReason::BlobMismatch,
                format!(
                    "data blob {:?} has size 0 but not the empty blob's hash",
                    d.name
                ),
            ));
        }
        total = total.saturating_add(d.size);
    }
    if total > max_blob_bytes {
        return Err((
            RefuseReason::TooLarge,
            format!("data blobs of {total} bytes are over this host's limit of {max_blob_bytes}"),
        ));
    }
    Ok(())
}

/// Checks the job fits the submitter's credit: its unaccepted work here
/// plus the job's most possible cost (fuel cap × this host's price) within
/// the limit its settled history earns ([`CreditPolicy`]).
pub fn check_credit(
    policy: &CreditPolicy,
    ledger: &Ledger,
    spec: &JobSpec,
    price_per_mfuel: u64,
) -> Result<(), Refusal> {
    let cost = settlement::max_cost(spec.fuel, price_per_mfuel);
    policy
        .check(ledger, &Party(spec.submitter), cost)
        .map_err(|r| {
            (
                RefuseReason::CreditLimit,
                format!(
                    "{} unaccepted on this host plus this job's most possible cost {} is over your credit of {}; settle earlier jobs first",
                    r.unaccepted, r.cost, r.limit
                ),
            )
        })
}

/// Why a `Settle` was not applied.
#[derive(Debug)]
pub enum SettleCheck {
    /// Refused with this reason (the job, when known).
    Refused(Option<proto::JobId>, Refusal),
    /// A receipt of ours for a job we no longer (or never) stored.
    Unknown(proto::JobId),
}

/// Checks a settled entry sent to this host (`own_key`): both signatures
/// and their bindings, that the receipt is ours, that the acceptance is
/// signed by the key that signed the job (looked up with `job`), and that
/// the price follows the rule from the receipt's own rate. Returns the
/// ledger entry to apply.
pub fn check_settlement(
    own_key: &[u8; 32],
    e: &proto::SettledEntry,
    job: impl FnOnce(&proto::JobId) -> Option<crate::store::JobRecord>,
) -> Result<Entry, SettleCheck> {
    let (r, a) = e.check().map_err(|err| {
        let reason = match err {
            proto::ProtoError::BadSignature(_) | proto::ProtoError::BadKey(_) => {
                RefuseReason::BadSignature
            }
            _ => RefuseReason::Malformed,
        };
        SettleCheck::Refused(None, (reason, err.to_string()))
    })?;
    let refused = |reason, msg: &str| SettleCheck::Refused(Some(r.job_id), (reason, msg.into()));
    if &r.host_key != own_key {
        return Err(refused(
            RefuseReason::NotYours,
            "the receipt is another host's",
        ));
    }
    let rec = job(&r.job_id).ok_or(SettleCheck::Unknown(r.job_id))?;
    let spec = rec
        .job
        .verify()
        .map_err(|_| refused(RefuseReason::Malformed, "the stored job does not verify"))?;
    if a.submitter != spec.submitter {
        return Err(refused(
            RefuseReason::NotYours,
            "the acceptance is not signed by the job's submitter",
        ));
    }
    let due = settlement::amount(
        r.fuel_used,
        r.price,
        a.agreed_fuel,
        spec.max_price_per_mfuel,
    );
    if a.price != due {
        return Err(refused(
            RefuseReason::Malformed,
            &format!(
                "the acceptance says {} for {} fuel; the price rule gives {due}",
                a.price, a.agreed_fuel
            ),
        ));
    }
    Ok(Entry {
        job_id: r.job_id,
        receipt_hash: a.receipt_hash,
        counterparty: Party(spec.submitter),
        claimed_fuel: r.fuel_used,
        agreed_fuel: a.agreed_fuel,
        amount: a.price,
    })
}

/// The oldest expiry a job may still have and be admitted at `now`: nonces
/// of jobs that expire before it can be forgotten, since such a job would
/// be refused `expired` anyway. Garbage collection uses exactly this edge,
/// so the replay window and the nonce table agree.
pub fn nonce_horizon(now: u64, clock_skew_secs: u64) -> u64 {
    now.saturating_sub(clock_skew_secs)
}

/// Largest total of a job's arguments (each counted with its terminator).
pub const MAX_ARGV_BYTES: usize = 64 << 10;

/// Checks blobs sent inline: within the limit (before any hashing), only
/// the job's own module or input, matching hash and size.
pub fn check_inline(
    max_inline_bytes: usize,
    spec: &JobSpec,
    inline: &[InlineBlob],
) -> Result<(), Refusal> {
    if inline.len() > 2 {
        return Err((
            RefuseReason::Malformed,
            format!("{} inline blobs; a job has at most 2", inline.len()),
        ));
    }
    let total: usize = inline.iter().map(|b| b.data.len()).sum();
    if total > max_inline_bytes {
        return Err((
            RefuseReason::TooLarge,
            format!("{total} inline blob bytes over the limit of {max_inline_bytes}"),
        ));
    }
    for b in inline {
        let expected = if b.hash == spec.module_hash {
            spec.module_size
        } else if b.hash == spec.input_hash {
            spec.input_size
        } else {
            return Err((
                RefuseReason::BlobMismatch,
                "inline blob is not the job's module or input".into(),
            ));
        };
        if b.data.len() as u64 != expected || blake3::hash(&b.data).as_bytes() != &b.hash {
            return Err((
                RefuseReason::BlobMismatch,
                format!(
                    "inline blob {} does not match its hash or size",
                    proto::hex(&b.hash)
                ),
            ));
        }
    }
    Ok(())
}

/// The bounds the quotas enforce.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QuotaLimits {
    /// Jobs accepted or being fetched, all peers together.
    pub jobs: usize,
    /// Jobs accepted or being fetched for one peer.
    pub jobs_per_peer: usize,
    /// Bytes held for jobs (inputs waiting to run and blobs being fetched),
    /// all peers together: memory is bounded by bytes, not by a count.
    pub bytes: u64,
    /// The same, for one peer.
    pub bytes_per_peer: u64,
    /// Status and result requests per second one peer may make (a token
    /// bucket of this rate whose burst is one second's worth).
    pub fetches_per_sec: u32,
}

impl QuotaLimits {
    /// The limits a host's configuration sets.
    pub fn from_config(cfg: &NodeConfig) -> Self {
        let r = &cfg.resources;
        QuotaLimits {
            jobs: r.max_queue,
            jobs_per_peer: r.max_queue_per_peer.min(r.max_queue),
            bytes: r.max_held_bytes,
            bytes_per_peer: r.max_held_bytes_per_peer.min(r.max_held_bytes),
            fetches_per_sec: cfg.security.max_fetches_per_sec,
        }
    }
}

/// What one peer holds now.
#[derive(Debug, Clone, Copy, Default)]
struct PeerUse {
    jobs: usize,
    bytes: u64,
    tokens: f64,
    /// When `tokens` was last refilled; `None` until the first fetch.
    refilled: Option<Instant>,
}

/// Per-peer and global quotas of jobs, held bytes and fetch rate.
///
/// Every [`Quotas::admit_job`] that succeeds must be matched by exactly one
/// [`Quotas::release_job`] with the same peer and bytes (when the job is
/// refused after all, finishes, or is dropped at shutdown); the host keeps
/// that promise by releasing where a job leaves its tables. Peers holding
/// nothing are forgotten, so the table is bounded by what is held.
#[derive(Debug)]
pub struct Quotas<K> {
    limits: QuotaLimits,
    peers: HashMap<K, PeerUse>,
    jobs: usize,
    bytes: u64,
}

impl<K: StdHash + Eq + Clone + std::fmt::Display> Quotas<K> {
    /// Empty quotas.
    pub fn new(limits: QuotaLimits) -> Self {
        Quotas {
            limits,
            peers: HashMap::new(),
            jobs: 0,
            bytes: 0,
        }
    }

    /// Takes room for one job of `peer` holding `bytes`, or says why not.
    /// The whole host's limits are checked first, so a refusal because the
    /// host is full reads differently from one because this peer is.
    pub fn admit_job(&mut self, peer: &K, bytes: u64) -> Result<(), Refusal> {
        let l = self.limits;
        let used = self.peers.get(peer).copied().unwrap_or_default();
        if self.jobs >= l.jobs {
            return Err((
                RefuseReason::Busy,
                format!("{} jobs queued; try another host", l.jobs),
            ));
        }
        if bytes > l.bytes_per_peer {
            return Err((
                RefuseReason::TooLarge,
                format!(
                    "the job holds {bytes} bytes, over this host's limit of {} per submitter",
                    l.bytes_per_peer
                ),
            ));
        }
        if self.bytes.saturating_add(bytes) > l.bytes {
            return Err((
                RefuseReason::Busy,
                format!(
                    "{} bytes held for jobs, {bytes} more would pass the limit of {}; try another host",
                    self.bytes, l.bytes
                ),
            ));
        }
        if used.jobs >= l.jobs_per_peer {
            return Err((
                RefuseReason::Busy,
                format!(
                    "{peer} has {} jobs queued here, the most one submitter may",
                    used.jobs
                ),
            ));
        }
        if used.bytes.saturating_add(bytes) > l.bytes_per_peer {
            return Err((
                RefuseReason::Busy,
                format!(
                    "{peer} holds {} bytes here, {bytes} more would pass the limit of {} per submitter",
                    used.bytes, l.bytes_per_peer
                ),
            ));
        }
        let u = self.peers.entry(peer.clone()).or_default();
        u.jobs += 1;
        u.bytes += bytes;
        self.jobs += 1;
        self.bytes += bytes;
        Ok(())
    }

    /// Gives back what [`Quotas::admit_job`] took.
    pub fn release_job(&mut self, peer: &K, bytes: u64) {
        self.jobs = self.jobs.saturating_sub(1);
        self.bytes = self.bytes.saturating_sub(bytes);
        if let Some(u) = self.peers.get_mut(peer) {
            u.jobs = u.jobs.saturating_sub(1);
            u.bytes = u.bytes.saturating_sub(bytes);
            if u.jobs == 0 && u.bytes == 0 && u.refilled.is_none() {
                self.peers.remove(peer);
            }
        }
    }

    /// Takes one token of `peer`'s fetch rate at `now`, or refuses `busy`.
    pub fn admit_fetch(&mut self, peer: &K, now: Instant) -> Result<(), Refusal> {
        let rate = f64::from(self.limits.fetches_per_sec.max(1));
        let u = self.peers.entry(peer.clone()).or_default();
        let tokens = match u.refilled {
            None => rate,
            Some(t) => (u.tokens + now.saturating_duration_since(t).as_secs_f64() * rate).min(rate),
        };
        u.refilled = Some(now);
        if tokens < 1.0 {
            u.tokens = tokens;
            return Err((
                RefuseReason::Busy,
                format!(
                    "{peer} asks for more than {} results or statuses per second",
                    self.limits.fetches_per_sec
                ),
            ));
        }
        u.tokens = tokens - 1.0;
        Ok(())
    }

    /// Forgets the fetch rate of peers that hold nothing and whose bucket
    /// is full again (so the table stays bounded by live peers).
    pub fn forget_idle(&mut self, now: Instant) {
        let full = Duration::from_secs(1);
        self.peers.retain(|_, u| {
            u.jobs > 0
                || u.bytes > 0
                || u.refilled
                    .is_some_and(|t| now.saturating_duration_since(t) < full)
        });
    }

    /// Jobs held for `peer`.
    pub fn jobs_of(&self, peer: &K) -> usize {
        self.peers.get(peer).map_or(0, |u| u.jobs)
    }

    /// Bytes held for `peer`.
    pub fn bytes_of(&self, peer: &K) -> u64 {
        self.peers.get(peer).map_or(0, |u| u.bytes)
    }

    /// Jobs held, all peers together.
    pub fn jobs(&self) -> usize {
        self.jobs
    }

    /// Peers tracked now.
    pub fn peers(&self) -> usize {
        self.peers.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> QuotaLimits {
        QuotaLimits {
            jobs: 4,
            jobs_per_peer: 2,
            bytes: 100,
            bytes_per_peer: 60,
            fetches_per_sec: 10,
        }
    }

    #[test]
    fn one_peer_fills_its_share_and_no_more() {
        let mut q = Quotas::new(limits());
        q.admit_job(&"a", 10).unwrap();
        q.admit_job(&"a", 10).unwrap();
        let (r, m) = q.admit_job(&"a", 10).unwrap_err();
        assert_eq!(r, RefuseReason::Busy);
        assert!(m.contains("a has 2 jobs"), "{m}");
        // Another peer still has room.
        q.admit_job(&"b", 10).unwrap();
        assert_eq!(q.jobs(), 3);
        q.release_job(&"a", 10);
        q.admit_job(&"a", 10).unwrap();
    }

    #[test]
    fn bytes_are_bounded_per_peer_and_in_all_at_their_exact_edge() {
        let mut q = Quotas::new(limits());
        q.admit_job(&"a", 60).unwrap(); // exactly the per-peer limit
        assert_eq!(q.admit_job(&"a", 1).unwrap_err().0, RefuseReason::Busy);
        q.admit_job(&"b", 40).unwrap(); // exactly the global limit
        assert_eq!(q.admit_job(&"c", 1).unwrap_err().0, RefuseReason::Busy);
        q.admit_job(&"c", 0).unwrap();
        // A job larger than any peer may hold is too large, not busy.
        let mut q = Quotas::new(limits());
        assert_eq!(q.admit_job(&"a", 61).unwrap_err().0, RefuseReason::TooLarge);
        assert_eq!(q.jobs(), 0);
    }

    #[test]
    fn the_global_job_count_binds_many_peers() {
        let mut q = Quotas::new(limits());
        for p in ["a", "b", "c", "d"] {
            q.admit_job(&p, 1).unwrap();
        }
        let (r, m) = q.admit_job(&"e", 1).unwrap_err();
        assert_eq!(r, RefuseReason::Busy);
        assert!(m.contains("4 jobs queued"), "{m}");
    }

    #[test]
    fn released_peers_are_forgotten() {
        let mut q = Quotas::new(limits());
        q.admit_job(&"a", 5).unwrap();
        q.release_job(&"a", 5);
        assert_eq!(q.peers(), 0);
        assert_eq!(q.bytes_of(&"a"), 0);
        // Releasing what was never taken saturates instead of wrapping.
        q.release_job(&"z", 5);
        assert_eq!(q.jobs(), 0);
    }

    #[test]
    fn fetch_rate_is_a_token_bucket_per_peer() {
        let mut q = Quotas::<&str>::new(limits());
        let t0 = Instant::now();
        for _ in 0..10 {
            q.admit_fetch(&"a", t0).unwrap();
        }
        assert_eq!(q.admit_fetch(&"a", t0).unwrap_err().0, RefuseReason::Busy);
        // Another peer is unaffected.
        q.admit_fetch(&"b", t0).unwrap();
        // 100 ms later one token has come back, and only one.
        let t1 = t0 + Duration::from_millis(100);
        q.admit_fetch(&"a", t1).unwrap();
        assert!(q.admit_fetch(&"a", t1).is_err());
        // Idle peers' buckets are forgotten once full again.
        q.forget_idle(t1 + Duration::from_secs(2));
        assert_eq!(q.peers(), 0);
    }

    fn spec() -> JobSpec {
        let cfg = NodeConfig::default();
        JobSpec {
            version: proto::VERSION,
            submitter: [1; 32],
            nonce: [2; 16],
            module_hash: [3; 32],
            module_size: 10,
            input_hash: [4; 32],
            input_size: 10,
            args: vec![],
            fuel: 1000,
            memory_bytes: 1 << 20,
            timeout_ms: Some(1000),
            scratch: false,
            portable: false,
            max_price_per_mfuel: cfg.market.price_per_mfuel,
            expires_at: 1_000_000,
            data: Vec::new(),
        }
    }

    #[test]
    fn zero_sized_blobs_are_checked_not_fetched() {
        let cfg = NodeConfig::default();
        let now = 1_000_000 - 10;
        check_spec(&cfg, &spec(), now).unwrap();
        let mut s = spec();
        s.module_size = 0;
        assert_eq!(
            check_spec(&cfg, &s, now).unwrap_err().0,
            RefuseReason::Malformed
        );
        let mut s = spec();
        s.input_size = 0;
        assert_eq!(
            check_spec(&cfg, &s, now).unwrap_err().0,
            RefuseReason::BlobMismatch
        );
        s.input_hash = empty_hash();
        check_spec(&cfg, &s, now).unwrap();
    }

    #[test]
    fn expiry_edges_saturate() {
        let cfg = NodeConfig::default();
        let skew = cfg.security.clock_skew_secs;
        let mut s = spec();
        // Exactly at the skew edge: still admissible; one second later: not.
        let now = s.expires_at + skew;
        check_spec(&cfg, &s, now).unwrap();
        assert_eq!(
            check_spec(&cfg, &s, now + 1).unwrap_err().0,
            RefuseReason::Expired
        );
        s.expires_at = u64::MAX;
        assert_eq!(
            check_spec(&cfg, &s, now).unwrap_err().0,
            RefuseReason::Expired
        );
    }

    #[test]
    fn a_nonce_is_kept_exactly_as_long_as_its_job_is_admissible() {
        let cfg = NodeConfig::default();
        let skew = cfg.security.clock_skew_secs;
        let s = spec();
        for now in [s.expires_at, s.expires_at + skew, s.expires_at + skew + 1] {
            let admissible = check_spec(&cfg, &s, now).is_ok();
            // The store removes a nonce whose expiry is below the horizon.
            let forgotten = s.expires_at < nonce_horizon(now, skew);
            assert_ne!(admissible, forgotten, "at now = {now}");
        }
    }

    #[test]
    fn more_than_two_inline_blobs_are_malformed() {
        let b = InlineBlob {
            hash: [0; 32],
            data: vec![],
        };
        let r = check_inline(1 << 20, &spec(), &[b.clone(), b.clone(), b]).unwrap_err();
        assert_eq!(r.0, RefuseReason::Malformed);
    }
}
