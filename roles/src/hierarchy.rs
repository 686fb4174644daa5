//! Hierarchy Alpha / Bravo / Super: summaries that make placement O(log n).

use serde::{Deserialize, Serialize};

/// A level of the placement hierarchy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Level {
    /// Cluster leader: knows each host of its cluster.
    Bravo,
    /// Region leader: knows one summary per cluster.
    Alpha,
    /// Bridge: knows one summary per region.
    Super,
}

/// What a leader tells the level above about its group. Summaries are fixed
/// size whatever the group size, which is what keeps the upper levels' tables
/// and messages bounded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GroupSummary {
    /// Live hosts in the group.
    pub hosts: u32,
    /// Execution slots in the group.
    pub slots: u32,
    /// Jobs queued or running in the group.
    pub backlog: u32,
    /// Sum of the group's learned host speeds (trail-weighted), the group's
    /// effective capacity as placement has observed it.
    pub speed: f64,
    /// Mean advertised price.
    pub price: f64,
}

impl GroupSummary {
    /// Folds `other` into `self` (a Bravo's summary into its Alpha's).
    pub fn merge(&mut self, other: &GroupSummary) {
        let n = (self.hosts + other.hosts).max(1) as f64;
        self.price = (self.price * self.hosts as f64 + other.price * other.hosts as f64) / n;
        self.hosts += other.hosts;
        self.slots += other.slots;
        self.backlog += other.backlog;
        self.speed += other.speed;
    }

    /// Placement heuristic of the group: learned capacity per queued job,
    /// divided by price. Zero for an empty group, so it is never picked.
    pub fn heuristic(&self) -> f64 {
        if self.hosts == 0 || self.slots == 0 {
            return 0.0;
        }
        let load = self.backlog as f64 / self.slots as f64;
        self.speed / (1.0 + load) / self.price.max(0.01)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_merge_and_prefer_free_fast_cheap_groups() {
        let mut a = GroupSummary {
            hosts: 2,
            slots: 4,
            backlog: 0,
            speed: 10.0,
            price: 1.0,
        };
        let b = GroupSummary {
            hosts: 2,
            slots: 4,
            backlog: 8,
            speed: 10.0,
            price: 3.0,
        };
        assert!(a.heuristic() > b.heuristic());
        a.merge(&b);
        assert_eq!(a.hosts, 4);
        assert_eq!(a.backlog, 8);
        assert!((a.price - 2.0).abs() < 1e-9);
        assert_eq!(GroupSummary::default().heuristic(), 0.0);
    }
}
