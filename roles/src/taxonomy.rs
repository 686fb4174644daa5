//! The design's "80+ node types", each a named composition of real behaviour configs.
//!
//! A node type is not a new behaviour: it is one of the nine roles with two of
//! its real parameters set to named levels. `NodeType::config()` turns it into
//! a [`NodeConfig`] that the behaviours and the simulator run with (see the
//! scenario field `node_type`), so every type changes real decisions.

use serde::{Deserialize, Serialize};

use crate::election::ElectionConfig;
use crate::error::RolesError;
use crate::havoc::HavocConfig;
use crate::id::Millis;
use crate::pheromone::ThermalConfig;
use crate::role::BiologicalRole;
use crate::threshold::CasteConfig;
use crate::young::YoungConfig;

/// Every behaviour parameter of one node.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    /// Thermal (pheromone) parameters.
    pub thermal: ThermalConfig,
    /// Caste (response threshold) parameters.
    pub caste: CasteConfig,
    /// HAVOC (crisis) parameters.
    pub havoc: HavocConfig,
    /// Young (bootstrap) parameters.
    pub young: YoungConfig,
    /// Election parameters for Alpha/Bravo/Super.
    pub election: ElectionConfig,
    /// Memory settings and summary cadence.
    pub memory: MemoryConfig,
}

/// Memory role and hierarchy cadence settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MemoryConfig {
    /// How often a leader replicates its trail snapshot to elders, ms.
    /// Default 2 s: each costs `young.elders` messages, and a leader that leaves
    /// loses at most 2 s of learning.
    pub period_ms: Millis,
    /// Most hosts an elder's table tracks (the weakest trail is evicted
    /// past it). Default 4096, about 100 KiB per elder.
    pub capacity: usize,
    /// How often leaders send summaries up, ms. Default 1 s.
    pub summary_period_ms: Millis,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        Self {
            period_ms: 2_000,
            capacity: 4096,
            summary_period_ms: 1_000,
        }
    }
}

impl NodeConfig {
    /// Validates every part.
    pub fn validate(&self) -> Result<(), RolesError> {
        self.thermal.validate()?;
        self.caste.validate()?;
        self.havoc.validate()?;
        self.young.validate()?;
        self.election.validate()?;
        if self.memory.period_ms == 0
            || self.memory.capacity == 0
            || self.memory.summary_period_ms == 0
        {
            return Err(RolesError::InvalidConfig {
                field: "memory".into(),
                value: format!("{:?}", self.memory),
                reason: "must be positive",
            });
        }
        Ok(())
    }

    /// Sets one parameter by its dotted name (`thermal.alpha`, ...).
    pub fn set(&mut self, param: &str, v: f64) -> Result<(), RolesError> {
        let ms = v.max(0.0) as Millis;
        match param {
            "thermal.alpha" => self.thermal.alpha = v,
            "thermal.beta" => self.thermal.beta = v,
            "thermal.half_life_ms" => self.thermal.half_life_ms = ms,
            "thermal.deposit" => self.thermal.deposit = v,
            "caste.learn" => self.caste.learn = v,
            "caste.forget" => self.caste.forget = v,
            "havoc.lost_fraction" => self.havoc.lost_fraction = v,
            "havoc.calm_ms" => self.havoc.calm_ms = ms,
            "young.elders" => self.young.elders = v as usize,
            "young.min_experience" => self.young.min_experience = v as u64,
            "young.min_trust" => self.young.min_trust = v,
            "election.incumbent_bonus" => self.election.incumbent_bonus = v,
            "election.uptime_full_ms" => self.election.uptime_full_ms = ms,
            "election.min_tier" => self.election.min_tier = v as u8,
            "memory.period_ms" => self.memory.period_ms = ms,
            "memory.capacity" => self.memory.capacity = v as usize,
            "memory.summary_period_ms" => self.memory.summary_period_ms = ms,
            _ => return Err(RolesError::UnknownParameter(param.to_string())),
        }
        Ok(())
    }
}

/// One named node type.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NodeType {
    /// Name, e.g. `thermal-scout-fleeting`.
    pub name: String,
    /// Behaviours it composes (the first is its primary role).
    pub base: Vec<BiologicalRole>,
    /// Parameter overrides applied on top of the defaults.
    pub params: Vec<(String, f64)>,
    /// One line: what it does differently.
    pub differs: String,
}

impl NodeType {
    /// The behaviour configuration this type runs with.
    pub fn config(&self) -> Result<NodeConfig, RolesError> {
        let mut c = NodeConfig::default();
        for (p, v) in &self.params {
            c.set(p, *v)?;
        }
        c.validate()?;
        Ok(c)
    }

    /// Looks a type up by name (case-insensitive).
    pub fn find(name: &str) -> Option<NodeType> {
        taxonomy()
            .into_iter()
            .find(|t| t.name.eq_ignore_ascii_case(name))
    }
}

type Axis = (&'static str, [(&'static str, f64, &'static str); 3]);

struct Family {
    prefix: &'static str,
    base: &'static [BiologicalRole],
    what: &'static str,
    a: Axis,
    b: Axis,
}

use BiologicalRole as R;

const FAMILIES: &[Family] = &[
    Family {
        prefix: "thermal",
        base: &[R::Thermal],
        what: "places by pheromone trails",
        a: (
            "thermal.alpha",
            [
                ("scout", 0.5, "weak trail weight, explores"),
                ("tracker", 2.0, "follows trails firmly"),
                ("exploiter", 4.0, "piles onto the best-known hosts"),
            ],
        ),
        b: (
            "thermal.half_life_ms",
            [
                ("fleeting", 3_000.0, "forgets in seconds"),
                ("steady", 30_000.0, "averages half a minute"),
                ("enduring", 120_000.0, "remembers for minutes"),
            ],
        ),
    },
    Family {
        prefix: "caste",
        base: &[R::Caste],
        what: "divides labour by response thresholds",
        a: (
            "caste.learn",
            [
                ("generalist", 0.01, "barely specialises"),
                ("specialist", 0.1, "specialises quickly"),
                ("zealot", 0.2, "locks into a class at once"),
            ],
        ),
        b: (
            "caste.forget",
            [
                ("loyal", 0.005, "keeps its speciality through other work"),
                ("fickle", 0.05, "drifts when given other work"),
                ("restless", 0.1, "re-specialises after a few tasks"),
            ],
        ),
    },
    Family {
        prefix: "young",
        base: &[R::Young, R::Thermal],
        what: "bootstraps trails from elders",
        a: (
            "young.elders",
            [
                ("solo", 1.0, "copies one elder"),
                ("council", 5.0, "averages five elders"),
                ("village", 8.0, "averages eight elders"),
            ],
        ),
        b: (
            "young.min_experience",
            [
                ("eager", 5.0, "accepts novice teachers"),
                ("choosy", 100.0, "wants 100 completions of experience"),
                ("elitist", 500.0, "only the most experienced teach"),
            ],
        ),
    },
    Family {
        prefix: "havoc",
        base: &[R::Havoc],
        what: "switches to crisis mode",
        a: (
            "havoc.lost_fraction",
            [
                ("sentinel", 0.05, "declares crisis at 5% loss"),
                ("guard", 0.25, "at 25% loss"),
                ("stoic", 0.4, "only at 40% loss"),
            ],
        ),
        b: (
            "havoc.calm_ms",
            [
                ("brief", 1_000.0, "hands back after 1 s calm"),
                ("lingering", 10_000.0, "after 10 s calm"),
                ("cautious", 30_000.0, "after 30 s calm"),
            ],
        ),
    },
    Family {
        prefix: "memory",
        base: &[R::Memory],
        what: "keeps host history and trail snapshots",
        a: (
            "memory.period_ms",
            [
                ("diarist", 1_000.0, "snapshots every second"),
                ("archivist", 60_000.0, "every minute"),
                ("chronicler", 600_000.0, "every ten minutes"),
            ],
        ),
        b: (
            "memory.capacity",
            [
                ("small", 256.0, "remembers 256 hosts"),
                ("deep", 16_384.0, "16k hosts"),
                ("vast", 65_536.0, "65k hosts"),
            ],
        ),
    },
    Family {
        prefix: "trust",
        base: &[R::Trust, R::Young],
        what: "learns only from elders it trusts",
        a: (
            "young.min_trust",
            [
                ("credulous", 0.2, "learns from barely trusted peers"),
                ("wary", 0.7, "needs trust 0.7"),
                ("sceptic", 0.95, "needs near-perfect trust"),
            ],
        ),
        b: (
            "young.elders",
            [
                ("lone", 1.0, "takes one trusted elder's word"),
                ("panel", 3.0, "weighs three elders, so one liar is outvoted"),
                ("jury", 12.0, "weighs twelve elders"),
            ],
        ),
    },
    Family {
        prefix: "bravo",
        base: &[R::Bravo, R::Thermal],
        what: "leads a cluster",
        a: (
            "election.incumbent_bonus",
            [
                ("yielding", 1.1, "yields to a 10% better challenger"),
                ("firm", 2.0, "needs a 2x better challenger"),
                ("entrenched", 3.0, "needs 3x"),
            ],
        ),
        b: (
            "election.uptime_full_ms",
            [
                ("open", 10_000.0, "trusts 10 s of uptime"),
                ("seasoned", 300_000.0, "wants 5 min uptime"),
                ("veteran", 3_600_000.0, "wants an hour"),
            ],
        ),
    },
    Family {
        prefix: "alpha",
        base: &[R::Alpha],
        what: "summarises a region",
        a: (
            "election.min_tier",
            [
                ("commoner", 2.0, "tier 2+ may lead"),
                ("noble", 5.0, "tier 5+ may lead"),
                ("royal", 8.0, "tier 8+ may lead"),
            ],
        ),
        b: (
            "memory.summary_period_ms",
            [
                ("chatty", 250.0, "summarises 4x a second"),
                ("measured", 2_000.0, "every 2 s"),
                ("terse", 10_000.0, "every 10 s"),
            ],
        ),
    },
    Family {
        prefix: "super",
        base: &[R::Super, R::Thermal],
        what: "bridges regions",
        a: (
            "thermal.beta",
            [
                ("trailbound", 0.5, "routes by learned trails over adverts"),
                ("balanced", 3.0, "weighs adverts strongly"),
                (
                    "advertbound",
                    5.0,
                    "routes almost only by advertised capacity",
                ),
            ],
        ),
        b: (
            "thermal.deposit",
            [
                ("light", 0.02, "deposits little per completion"),
                ("heavy", 0.5, "deposits a lot"),
                ("torrent", 1.0, "saturates trails fast"),
            ],
        ),
    },
];

/// All node types: nine families (one per role) × three levels of two real
/// parameters = 81 types. Listed by `biop2p roles`.
pub fn taxonomy() -> Vec<NodeType> {
    let mut out = Vec::with_capacity(FAMILIES.len() * 9);
    for f in FAMILIES {
        for (an, av, ad) in f.a.1 {
            for (bn, bv, bd) in f.b.1 {
                out.push(NodeType {
                    name: format!("{}-{an}-{bn}", f.prefix),
                    base: f.base.to_vec(),
                    params: vec![(f.a.0.to_string(), av), (f.b.0.to_string(), bv)],
                    differs: format!("{}: {ad} ({}={av}); {bd} ({}={bv})", f.what, f.a.0, f.b.0),
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_least_80_types_all_distinct_and_backed_by_real_configs() {
        let t = taxonomy();
        assert!(t.len() >= 80, "{}", t.len());
        let configs: Vec<NodeConfig> = t.iter().map(|x| x.config().expect(&x.name)).collect();
        for i in 0..t.len() {
            assert_ne!(
                configs[i],
                NodeConfig::default(),
                "{} changes nothing",
                t[i].name
            );
            for j in i + 1..t.len() {
                assert_ne!(t[i].name, t[j].name);
                assert_ne!(t[i].params, t[j].params);
                assert_ne!(
                    configs[i], configs[j],
                    "{} and {} behave the same",
                    t[i].name, t[j].name
                );
            }
        }
        // Every role is the primary behaviour of some type.
        for r in BiologicalRole::ALL {
            assert!(t.iter().any(|x| x.base[0] == r), "{r} has no type");
        }
        assert!(NodeType::find("THERMAL-SCOUT-FLEETING").is_some());
    }

    #[test]
    fn unknown_parameter_is_an_error() {
        assert!(NodeConfig::default().set("thermal.gamma", 1.0).is_err());
    }
}
