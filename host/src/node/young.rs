//! Young in the live swarm: a fresh submitter learns from elders instead of
//! placing cold, and an experienced one teaches.
//!
//! Submitters only dial out, so they meet at hosts: an experienced
//! submitter publishes its signed Thermal table to hosts ([`publish`]),
//! which carry it (`node::host::tables`); a submitter whose trails are
//! cold asks the hosts it found for the tables they carry ([`learn`]) and
//! drives the `roles` crate's [`Bootstrap`] (the code the simulator
//! measures) over them: the publishers are the candidate elders, chosen by
//! experience and trust, and the merge by trust is where it starts.
//!
//! Trust in a publisher is what it has paid: each carrier says how many
//! settled entries it holds with the publisher, and the reader takes the
//! [`VOUCHERS`]-th largest of those claims over the carriers it asked, so
//! one lying carrier cannot make a fresh key (a Sybil that paid nobody)
//! count. A publisher that settled with at least [`SETTLED_FOR_TRUST`]
//! entries at that many hosts reaches Young's `min_trust` of ½. The merge
//! is a starting point only: the submitter's own compared answers move its
//! trails from the first job on.

use std::collections::HashMap;
use std::time::Duration;

use libp2p::PeerId;
use rand::seq::SliceRandom;
use roles::{
    Bootstrap, BootstrapAction, BootstrapEvent, ElderInfo, MemorySnapshot, Millis, NodeId,
    YoungConfig,
};

use super::client::Client;
use super::host::tables::{MAX_AGE_MS, SKEW_MS};
use super::trails::Trails;
use crate::identity::Identity;
use crate::proto::{
    self, MAX_TABLE_TRAILS, RoleRequest, RoleResponse, SignedTable, TableBody, check_table,
};

/// Hosts asked for the tables they carry (all found, up to this many).
pub const CARRIERS: usize = 8;
/// Hosts a table is published to.
pub const FANOUT: usize = 8;
/// Independent carriers that must vouch for a publisher's payments.
pub const VOUCHERS: usize = 2;
/// Settled entries (at [`VOUCHERS`] carriers) that give trust ½.
pub const SETTLED_FOR_TRUST: u64 = 5;
/// A table is published again after this long, or once its experience
/// has doubled.
pub const REPUBLISH_MS: u64 = 3_600_000;

/// What a bootstrap found, for the user and for tests.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Learned {
    /// Hosts asked.
    pub asked: usize,
    /// Hosts that answered with their tables.
    pub answered: usize,
    /// Distinct publishers whose tables verified.
    pub publishers: usize,
    /// Elders whose tables were merged.
    pub elders: usize,
    /// Hosts whose trails the merge set.
    pub seeded: usize,
}

/// A publisher's trust from its carriers' claims of settled entries (every
/// carrier that answered counts; one that did not carry the table claims
/// nothing): the [`VOUCHERS`]-th largest claim `s`, as `s / (s + S)` with
/// `S` = [`SETTLED_FOR_TRUST`].
pub fn publisher_trust(claims: &[u64]) -> f64 {
    let mut c = claims.to_vec();
    c.sort_unstable_by(|a, b| b.cmp(a));
    let s = c.get(VOUCHERS - 1).copied().unwrap_or(0) as f64;
    s / (s + SETTLED_FOR_TRUST as f64)
}

/// One publisher's newest table and what each carrier claimed of it.
struct Heard {
    body: TableBody,
    claims: HashMap<PeerId, u64>,
}

/// Up to `max` of the hosts the client knows from adverts, at random,
/// connected: those connected already first, then others as long as
/// `budget` lasts (a host that cannot be reached is left out, and costs
/// at most the budget).
async fn connected_hosts(client: &mut Client, max: usize, budget: Duration) -> Vec<PeerId> {
    let mut known = client.known_hosts();
    known.shuffle(&mut rand::rng());
    known.sort_by_key(|(p, _)| !client.is_connected(p));
    let mut out = Vec::new();
    let connecting = async {
        for (p, ad) in known {
            if out.len() >= max {
                break;
            }
            match client.connect_host(p, &ad).await {
                Ok(()) => out.push(p),
                Err(e) => tracing::debug!(host = %p, error = %e, "Young: host not reached"),
            }
        }
    };
    if tokio::time::timeout(budget, connecting).await.is_err() {
        tracing::debug!(
            reached = out.len(),
            "Young: out of time connecting to hosts"
        );
    }
    out
}

/// How long each step (connecting, asking) may take: Young's answer
/// timeout. A fresh submitter places cold rather than wait longer.
fn wait(cfg: &YoungConfig) -> Duration {
    Duration::from_millis(cfg.answer_timeout_ms)
}

/// Learns from elders when `trails` are cold: asks up to [`CARRIERS`] of
/// the hosts the client knows (at random) for their tables. `None` when
/// the trails were not cold.
pub async fn learn_if_cold(
    client: &mut Client,
    trails: &mut Trails,
    cfg: &YoungConfig,
    now: Millis,
) -> Option<Learned> {
    if !trails.is_cold() {
        return None;
    }
    let carriers = connected_hosts(client, CARRIERS, wait(cfg)).await;
    Some(learn(client, trails, &carriers, cfg, now).await)
}

/// Publishes when [`due`] to up to [`FANOUT`] of the hosts the client
/// knows (at random); returns how many carry the table now.
pub async fn publish_if_due(
    client: &mut Client,
    trails: &mut Trails,
    cfg: &YoungConfig,
    now: Millis,
) -> usize {
    if !due(trails, cfg, now) {
        return 0;
    }
    let hosts = connected_hosts(client, FANOUT, wait(cfg)).await;
    publish(client, trails, &hosts, cfg, now).await
}

/// Asks `carriers` for their tables and seeds `trails` from the elders'
/// merge. Tables by this submitter itself, forged, expired or over the
/// bounds are dropped.
pub async fn learn(
    client: &mut Client,
    trails: &mut Trails,
    carriers: &[PeerId],
    cfg: &YoungConfig,
    now: Millis,
) -> Learned {
    let answers = client
        .ask_roles(
            carriers.iter().map(|p| (*p, RoleRequest::Tables)).collect(),
            wait(cfg),
        )
        .await;
    let me = client.identity().public_key();
    let mut out = Learned {
        asked: carriers.len(),
        ..Learned::default()
    };
    let mut heard: HashMap<[u8; 32], Heard> = HashMap::new();
    let mut answered = Vec::new();
    for (carrier, r) in answers {
        let tables = match r {
            Ok(RoleResponse::Tables { tables, .. }) => tables,
            Ok(other) => {
                tracing::debug!(%carrier, answer = ?other, "no tables from this host");
                continue;
            }
            Err(why) => {
                tracing::debug!(%carrier, %why, "no tables from this host");
                continue;
            }
        };
        answered.push(carrier);
        for c in tables.into_iter().take(proto::MAX_TABLES_PER_ANSWER) {
            let body = match check_table(&c.table, now, SKEW_MS, MAX_AGE_MS) {
                Ok(b) if b.publisher != me => b,
                Ok(_) => continue,
                Err((reason, detail)) => {
                    tracing::debug!(%carrier, reason, %detail, "a carried table is dropped");
                    continue;
                }
            };
            let h = heard.entry(body.publisher).or_insert_with(|| Heard {
                body: body.clone(),
                claims: HashMap::new(),
            });
            if body.issued_at_ms > h.body.issued_at_ms {
                h.body = body;
            }
            h.claims.insert(carrier, c.settled_entries);
        }
    }
    out.answered = answered.len();
    out.publishers = heard.len();

    // Publishers become candidate elders, numbered in key order; hosts in
    // the tables are numbered apart (a snapshot speaks of NodeIds).
    let mut publishers: Vec<([u8; 32], Heard)> = heard.into_iter().collect();
    publishers.sort_by_key(|a| a.0);
    let trust: Vec<f64> = publishers
        .iter()
        .map(|(_, h)| {
            let claims: Vec<u64> = answered
                .iter()
                .map(|c| h.claims.get(c).copied().unwrap_or(0))
                .collect();
            publisher_trust(&claims)
        })
        .collect();
    let candidates: Vec<ElderInfo> = publishers
        .iter()
        .enumerate()
        .map(|(i, (_, h))| ElderInfo {
            id: NodeId(i as u32),
            experience: h.body.experience,
        })
        .collect();
    let trust_of = |n: NodeId| trust.get(n.0 as usize).copied().unwrap_or(0.0);
    let mut hosts: Vec<PeerId> = Vec::new();
    let mut host_ids: HashMap<PeerId, NodeId> = HashMap::new();
    let mut boot = Bootstrap::new(cfg, now, &candidates, &trust_of);
    // The tables are here already: each `Ask` is answered from them.
    while let Some(a) = boot.poll() {
        match a {
            BootstrapAction::Ask(e) => {
                let Some((_, h)) = publishers.get(e.0 as usize) else {
                    continue;
                };
                let snapshot = MemorySnapshot {
                    version: roles::SNAPSHOT_VERSION,
                    taken_at: h.body.issued_at_ms,
                    trails: h
                        .body
                        .trails
                        .iter()
                        .filter_map(|(p, l)| {
                            let p = PeerId::from_bytes(p).ok()?;
                            let next = NodeId(hosts.len() as u32);
                            let id = *host_ids.entry(p).or_insert_with(|| {
                                hosts.push(p);
                                next
                            });
                            Some((id, *l))
                        })
                        .collect(),
                    thresholds: None,
                };
                out.elders += 1;
                if let Err(e) = boot.handle(now, BootstrapEvent::Answer { from: e, snapshot }) {
                    tracing::debug!(error = %e, "an elder's table is refused");
                }
            }
            BootstrapAction::Done { trails: merged, .. } => {
                let levels: Vec<(PeerId, f64)> = merged
                    .into_iter()
                    .filter_map(|(i, l)| Some((*hosts.get(i.0 as usize)?, l)))
                    .collect();
                out.seeded = levels.len();
                trails.seed(&levels, now);
            }
        }
    }
    tracing::info!(?out, "Young: learned from elders");
    out
}

/// Whether trails with this history should be published now: experienced
/// enough to teach, and never published, or an hour ago, or with half the
/// experience it has now.
pub fn due(trails: &Trails, cfg: &YoungConfig, now: Millis) -> bool {
    trails.experience() >= cfg.min_experience
        && match trails.published() {
            None => true,
            Some((at, exp)) => {
                now.saturating_sub(at) >= REPUBLISH_MS || trails.experience() >= 2 * exp.max(1)
            }
        }
}

/// Signs this submitter's most telling trails as a table.
pub fn table(id: &Identity, trails: &Trails, now: Millis) -> SignedTable {
    let body = TableBody {
        version: proto::VERSION,
        publisher: id.public_key(),
        issued_at_ms: now,
        experience: trails.experience(),
        trails: trails
            .most_telling(now, MAX_TABLE_TRAILS)
            .into_iter()
            .map(|(p, l)| (p.to_bytes(), l))
            .collect(),
    };
    SignedTable::sign(&body, &id.signing)
}

/// Publishes the trails to `hosts` when [`due`]; returns how many hosts
/// carry it now.
pub async fn publish(
    client: &mut Client,
    trails: &mut Trails,
    hosts: &[PeerId],
    cfg: &YoungConfig,
    now: Millis,
) -> usize {
    if !due(trails, cfg, now) || hosts.is_empty() {
        return 0;
    }
    let t = table(client.identity(), trails, now);
    let answers = client
        .ask_roles(
            hosts
                .iter()
                .map(|p| (*p, RoleRequest::Publish { table: t.clone() }))
                .collect(),
            wait(cfg),
        )
        .await;
    let kept = answers
        .iter()
        .filter(|(_, r)| matches!(r, Ok(RoleResponse::Kept { .. })))
        .count();
    for (p, r) in &answers {
        if !matches!(r, Ok(RoleResponse::Kept { .. })) {
            tracing::debug!(host = %p, answer = ?r, "Young table not carried");
        }
    }
    if kept > 0 {
        trails.mark_published(now);
    }
    tracing::info!(kept, asked = hosts.len(), "Young: table published");
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_carrier_cannot_vouch_alone_and_payments_buy_trust() {
        // A Sybil carried (and vouched for) by one lying host only.
        assert_eq!(publisher_trust(&[1_000_000, 0, 0]), 0.0);
        assert_eq!(publisher_trust(&[1_000_000]), 0.0);
        assert_eq!(publisher_trust(&[]), 0.0);
        // Paid at two hosts.
        assert_eq!(publisher_trust(&[5, 0, 5, 0]), 0.5);
        assert!(publisher_trust(&[50, 40, 0]) > 0.85);
        assert!(publisher_trust(&[4, 4]) < YoungConfig::default().min_trust);
    }

    #[test]
    fn publication_waits_for_experience_then_an_hour_or_a_doubling() {
        let cfg = YoungConfig::default();
        let mut t = Trails::new();
        let host = PeerId::random();
        for _ in 0..cfg.min_experience - 1 {
            t.reinforce(host, 0);
        }
        assert!(!due(&t, &cfg, 0));
        t.reinforce(host, 0);
        assert!(due(&t, &cfg, 0));
        t.mark_published(0);
        assert!(!due(&t, &cfg, 1));
        assert!(due(&t, &cfg, REPUBLISH_MS));
        for _ in 0..cfg.min_experience {
            t.punish(host, 0);
        }
        assert!(due(&t, &cfg, 1));
    }
}
