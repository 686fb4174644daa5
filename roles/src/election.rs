//! Leader election for a hierarchy group (Bravo of a cluster, Alpha of a region, Super set).

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::error::RolesError;
use crate::id::{Millis, NodeId};

/// Election parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ElectionConfig {
    /// Uptime at which a candidate counts fully, ms. Default 60 s: a node that
    /// just joined is weighted at 25% so flapping nodes rarely lead.
    pub uptime_full_ms: Millis,
    /// A challenger must beat the incumbent's score by this factor to take
    /// over. Default 1.5: leader changes cost a summary rebuild, so they need
    /// a clear win (hysteresis).
    pub incumbent_bonus: f64,
    /// Lowest address tier that may lead. Default 0 (anyone).
    pub min_tier: u8,
    /// Most members tracked per group. Default 1024.
    pub capacity: usize,
}

impl Default for ElectionConfig {
    fn default() -> Self {
        Self {
            uptime_full_ms: 60_000,
            incumbent_bonus: 1.5,
            min_tier: 0,
            capacity: 1024,
        }
    }
}

impl ElectionConfig {
    /// Checks ranges.
    pub fn validate(&self) -> Result<(), RolesError> {
        if !(self.incumbent_bonus >= 1.0) || self.capacity == 0 || self.min_tier > 9 {
            return Err(RolesError::InvalidConfig {
                field: "election".into(),
                value: format!("{self:?}"),
                reason: "need incumbent_bonus >= 1, capacity > 0, min_tier <= 9",
            });
        }
        Ok(())
    }
}

/// A node standing for election.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    /// The node.
    pub id: NodeId,
    /// Advertised capacity (slots × relative speed).
    pub capacity: f64,
    /// When it joined the group.
    pub joined_at: Millis,
    /// Its address tier.
    pub tier: u8,
}

/// Membership change fed to an [`Election`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ElectionEvent {
    /// A node joined the group.
    Join(Candidate),
    /// A node left or was declared lost.
    Leave(NodeId),
}

/// A leadership change, with the reason for the switch log.
#[derive(Clone, Debug, PartialEq)]
pub struct Elected {
    /// New leader, `None` if the group is empty.
    pub leader: Option<NodeId>,
    /// Previous leader.
    pub previous: Option<NodeId>,
    /// Why the leader changed.
    pub reason: String,
}

/// Elects one leader per group by capacity and uptime.
#[derive(Clone, Debug)]
pub struct Election {
    cfg: ElectionConfig,
    members: Vec<Candidate>,
    leader: Option<NodeId>,
    out: VecDeque<Elected>,
}

impl Election {
    /// An empty group.
    pub fn new(cfg: ElectionConfig) -> Self {
        Self {
            cfg,
            members: Vec::new(),
            leader: None,
            out: VecDeque::new(),
        }
    }

    /// Current leader.
    pub fn leader(&self) -> Option<NodeId> {
        self.leader
    }

    /// Members, in join order.
    pub fn members(&self) -> &[Candidate] {
        &self.members
    }

    /// Election score at `now`: capacity × uptime factor × tier prior.
    pub fn score(&self, c: &Candidate, now: Millis) -> f64 {
        let up = (now.saturating_sub(c.joined_at) as f64 / self.cfg.uptime_full_ms.max(1) as f64)
            .min(1.0);
        c.capacity * (0.25 + 0.75 * up) * (1.0 + 0.05 * c.tier as f64)
    }

    fn best(&self, now: Millis) -> Option<Candidate> {
        self.members
            .iter()
            .filter(|c| c.tier >= self.cfg.min_tier)
            .max_by(|a, b| {
                self.score(a, now)
                    .total_cmp(&self.score(b, now))
                    .then(b.id.cmp(&a.id))
            })
            .copied()
    }

    /// Applies a membership change; may elect.
    pub fn handle(&mut self, now: Millis, ev: ElectionEvent) {
        match ev {
            ElectionEvent::Join(c) => {
                if self.members.iter().any(|m| m.id == c.id)
                    || self.members.len() >= self.cfg.capacity
                {
                    return;
                }
                self.members.push(c);
                match self
                    .leader
                    .and_then(|l| self.members.iter().find(|m| m.id == l).copied())
                {
                    None => self.elect(now, "group had no leader".into()),
                    Some(inc)
                        if c.tier >= self.cfg.min_tier
                            && self.score(&c, now)
                                > self.cfg.incumbent_bonus * self.score(&inc, now) =>
                    {
                        self.elect(
                            now,
                            format!(
                                "challenger {:?} outscores incumbent by >{}x",
                                c.id, self.cfg.incumbent_bonus
                            ),
                        );
                    }
                    Some(_) => {}
                }
            }
            ElectionEvent::Leave(id) => {
                self.members.retain(|m| m.id != id);
                if self.leader == Some(id) {
                    self.elect(now, format!("leader {id:?} left"));
                }
            }
        }
    }

    fn elect(&mut self, now: Millis, reason: String) {
        let previous = self.leader;
        let leader = self.best(now).map(|c| c.id);
        self.leader = leader;
        if leader != previous {
            self.out.push_back(Elected {
                leader,
                previous,
                reason,
            });
        }
    }

    /// Next leadership change, if any.
    pub fn poll(&mut self) -> Option<Elected> {
        self.out.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(id: u32, capacity: f64) -> Candidate {
        Candidate {
            id: NodeId(id),
            capacity,
            joined_at: 0,
            tier: 0,
        }
    }

    #[test]
    fn elects_strongest_and_reelects_when_leader_leaves() {
        let mut e = Election::new(ElectionConfig::default());
        for (i, c) in [4.0, 9.0, 6.0].into_iter().enumerate() {
            e.handle(100_000, ElectionEvent::Join(cand(i as u32, c)));
        }
        assert_eq!(e.leader(), Some(NodeId(1)));
        while e.poll().is_some() {}
        e.handle(200_000, ElectionEvent::Leave(NodeId(1)));
        assert_eq!(e.leader(), Some(NodeId(2)));
        let ev = e.poll().unwrap();
        assert_eq!(ev.previous, Some(NodeId(1)));
        assert!(ev.reason.contains("left"));
        // Non-leader leaving changes nothing.
        e.handle(200_000, ElectionEvent::Leave(NodeId(0)));
        assert!(e.poll().is_none());
    }

    #[test]
    fn incumbent_keeps_seat_against_slightly_better_challenger() {
        let mut e = Election::new(ElectionConfig::default());
        e.handle(100_000, ElectionEvent::Join(cand(1, 10.0)));
        e.handle(100_000, ElectionEvent::Join(cand(2, 12.0)));
        assert_eq!(e.leader(), Some(NodeId(1)));
        e.handle(100_000, ElectionEvent::Join(cand(3, 20.0)));
        assert_eq!(e.leader(), Some(NodeId(3)));
    }

    #[test]
    fn fresh_nodes_score_lower_than_seasoned_ones() {
        let e = Election::new(ElectionConfig::default());
        let old = Candidate {
            id: NodeId(1),
            capacity: 5.0,
            joined_at: 0,
            tier: 0,
        };
        let new = Candidate {
            id: NodeId(2),
            capacity: 8.0,
            joined_at: 60_000,
            tier: 0,
        };
        assert!(e.score(&old, 60_000) > e.score(&new, 60_000));
    }
}
