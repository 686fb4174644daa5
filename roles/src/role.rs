//! `BiologicalRole`: the names of the behaviours a node can play.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::RolesError;

/// The role a node currently plays. A node plays one role at a time; a live
/// host's [`crate::HostRole`] moves it between Young, Caste and Havoc from
/// what it observes. Names match the design document, and `FromStr` accepts
/// them in any case so CLI flags and config files can spell them naturally.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum BiologicalRole {
    /// New node learning from trusted elders instead of starting cold.
    Young,
    /// Worker specialising by response thresholds (division of labour).
    Caste,
    /// Crisis mode: emergency re-placement and load shedding.
    Havoc,
    /// Placer that follows pheromone trails (ant-colony placement).
    Thermal,
    /// Keeper of what worked: host history and trail snapshots.
    Memory,
    /// Bridge to the security crate's reputation scores.
    Trust,
    /// Region leader: summarises its clusters.
    Alpha,
    /// Cluster leader: summarises its hosts and places within the cluster.
    Bravo,
    /// Bridges regions: routes placements to a region.
    Super,
}

impl BiologicalRole {
    /// Every role, in a stable order (used by listings and tests).
    pub const ALL: [BiologicalRole; 9] = [
        Self::Young,
        Self::Caste,
        Self::Havoc,
        Self::Thermal,
        Self::Memory,
        Self::Trust,
        Self::Alpha,
        Self::Bravo,
        Self::Super,
    ];

    /// The lowercase name used by `Display` and the CLI.
    pub fn name(self) -> &'static str {
        match self {
            Self::Young => "young",
            Self::Caste => "caste",
            Self::Havoc => "havoc",
            Self::Thermal => "thermal",
            Self::Memory => "memory",
            Self::Trust => "trust",
            Self::Alpha => "alpha",
            Self::Bravo => "bravo",
            Self::Super => "super",
        }
    }

    /// The biological mechanism the role borrows, for `biop2p roles`.
    pub fn inspiration(self) -> &'static str {
        match self {
            Self::Young => "juvenile social learning: young animals copy experienced elders",
            Self::Caste => "response-threshold division of labour in social insects",
            Self::Havoc => "stress response: colonies switch to emergency behaviour after a shock",
            Self::Thermal => "ant pheromone trails: reinforced by success, evaporating over time",
            Self::Memory => "colony memory kept in persistent structures (nest, trails)",
            Self::Trust => "kin recognition: cooperate with those who proved reliable",
            Self::Alpha => "regional dominance hierarchy: one leader summarises a group of groups",
            Self::Bravo => "band leader: one animal speaks for its local group",
            Self::Super => "keystone individuals linking separate colonies",
        }
    }
}

impl fmt::Display for BiologicalRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for BiologicalRole {
    type Err = RolesError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|r| r.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| RolesError::UnknownRole(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_case_insensitive() {
        for r in BiologicalRole::ALL {
            assert_eq!(r.to_string().parse::<BiologicalRole>().unwrap(), r);
            assert_eq!(
                r.to_string()
                    .to_uppercase()
                    .parse::<BiologicalRole>()
                    .unwrap(),
                r
            );
        }
        assert_eq!(
            "HaVoC".parse::<BiologicalRole>().unwrap(),
            BiologicalRole::Havoc
        );
        assert!("queen".parse::<BiologicalRole>().is_err());
    }
}
