//! Role switching from network state, with hysteresis and a reasoned log.

use serde::{Deserialize, Serialize};

use crate::error::RolesError;
use crate::hierarchy::Level;
use crate::id::Millis;
use crate::role::BiologicalRole;

/// What a node knows about the network when deciding its role.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NetworkState {
    /// Virtual time of the observation.
    pub now: Millis,
    /// Fraction of the node's group lost in the last window.
    pub lost_fraction: f64,
    /// Failed results over all results in the last window.
    pub error_rate: f64,
    /// Group backlog per execution slot.
    pub backlog_per_slot: f64,
    /// Placements/completions this node has seen.
    pub experience: u64,
    /// Node's capacity percentile in its group, 0..1.
    pub capacity_rank: f64,
    /// Node's uptime, ms.
    pub uptime_ms: Millis,
    /// Mean untrusted-result rate reported by the security layer, 0..1.
    pub suspicion: f64,
    /// Hierarchy level this node was elected to, if any.
    pub elected: Option<Level>,
}

/// Hysteresis settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SwitchConfig {
    /// Lost fraction that enters Havoc. Default 0.15.
    pub havoc_enter: f64,
    /// Lost fraction under which Havoc is left. Default 0.05 (a wide band
    /// so a group hovering at the boundary does not flap).
    pub havoc_exit: f64,
    /// Least time in a role before a non-crisis switch, ms. Default 10 s.
    pub min_dwell_ms: Millis,
    /// Experience under which a node stays Young. Default 50.
    pub young_until: u64,
    /// Capacity percentile at or above which a worker acts as Thermal placer. Default 0.8.
    pub thermal_rank: f64,
    /// Uptime at which a low-capacity node becomes a Memory keeper, ms. Default 10 min.
    pub memory_uptime_ms: Millis,
    /// Suspicion above which a node takes the Trust role. Default 0.1.
    pub trust_suspicion: f64,
}

impl Default for SwitchConfig {
    fn default() -> Self {
        Self {
            havoc_enter: 0.15,
            havoc_exit: 0.05,
            min_dwell_ms: 10_000,
            young_until: 50,
            thermal_rank: 0.8,
            memory_uptime_ms: 600_000,
            trust_suspicion: 0.1,
        }
    }
}

impl SwitchConfig {
    /// Checks ranges.
    pub fn validate(&self) -> Result<(), RolesError> {
        if !(self.havoc_exit < self.havoc_enter && self.havoc_exit >= 0.0)
            || !(0.0..=1.0).contains(&self.thermal_rank)
        {
            return Err(RolesError::InvalidConfig {
                field: "switch".into(),
                value: format!("{self:?}"),
                reason: "need 0 <= havoc_exit < havoc_enter and thermal_rank in 0..=1",
            });
        }
        Ok(())
    }
}

/// One logged role change.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoleSwitch {
    /// When.
    pub at: Millis,
    /// Old role.
    pub from: BiologicalRole,
    /// New role.
    pub to: BiologicalRole,
    /// Why, with the numbers that decided it.
    pub reason: String,
}

/// Decides a node's role from [`NetworkState`] with hysteresis: crisis has
/// separate enter/exit levels; other switches wait `min_dwell_ms`.
#[derive(Clone, Debug)]
pub struct RoleSwitcher {
    cfg: SwitchConfig,
    role: BiologicalRole,
    since: Millis,
    log: Vec<RoleSwitch>,
}

/// Most switches kept in the log (oldest dropped).
const LOG_CAP: usize = 256;

impl RoleSwitcher {
    /// Starts in `role` at `now`.
    pub fn new(cfg: SwitchConfig, role: BiologicalRole, now: Millis) -> Self {
        Self {
            cfg,
            role,
            since: now,
            log: Vec::new(),
        }
    }

    /// Current role.
    pub fn role(&self) -> BiologicalRole {
        self.role
    }

    /// The switch log, oldest first.
    pub fn log(&self) -> &[RoleSwitch] {
        &self.log
    }

    /// The role the state calls for and why, before hysteresis.
    pub fn desired(&self, s: &NetworkState) -> (BiologicalRole, String) {
        let in_havoc = self.role == BiologicalRole::Havoc;
        let crisis_level = if in_havoc {
            self.cfg.havoc_exit
        } else {
            self.cfg.havoc_enter
        };
        if s.lost_fraction >= crisis_level {
            return (
                BiologicalRole::Havoc,
                format!(
                    "lost {:.0}% of group (threshold {:.0}%)",
                    s.lost_fraction * 100.0,
                    crisis_level * 100.0
                ),
            );
        }
        if let Some(l) = s.elected {
            let r = match l {
                Level::Bravo => BiologicalRole::Bravo,
                Level::Alpha => BiologicalRole::Alpha,
                Level::Super => BiologicalRole::Super,
            };
            return (r, format!("elected {l:?}"));
        }
        if s.experience < self.cfg.young_until {
            return (
                BiologicalRole::Young,
                format!("experience {} < {}", s.experience, self.cfg.young_until),
            );
        }
        if s.suspicion >= self.cfg.trust_suspicion {
            return (
                BiologicalRole::Trust,
                format!(
                    "suspicion {:.2} >= {:.2}",
                    s.suspicion, self.cfg.trust_suspicion
                ),
            );
        }
        if s.capacity_rank >= self.cfg.thermal_rank {
            return (
                BiologicalRole::Thermal,
                format!(
                    "capacity rank {:.2} >= {:.2}",
                    s.capacity_rank, self.cfg.thermal_rank
                ),
            );
        }
        if s.uptime_ms >= self.cfg.memory_uptime_ms && s.capacity_rank < 0.3 {
            return (
                BiologicalRole::Memory,
                format!(
                    "uptime {} ms with capacity rank {:.2}",
                    s.uptime_ms, s.capacity_rank
                ),
            );
        }
        (
            BiologicalRole::Caste,
            "worker: divide labour by thresholds".into(),
        )
    }

    /// Proposes a switch without applying it (the trait's `should_switch_role`).
    pub fn proposal(&self, s: &NetworkState) -> Option<(BiologicalRole, String)> {
        let (want, reason) = self.desired(s);
        if want == self.role {
            return None;
        }
        // Entering or leaving a crisis is urgent; everything else dwells.
        let urgent = want == BiologicalRole::Havoc || self.role == BiologicalRole::Havoc;
        let elected = matches!(
            want,
            BiologicalRole::Alpha | BiologicalRole::Bravo | BiologicalRole::Super
        ) || matches!(
            self.role,
            BiologicalRole::Alpha | BiologicalRole::Bravo | BiologicalRole::Super
        );
        if !urgent && !elected && s.now < self.since + self.cfg.min_dwell_ms {
            return None;
        }
        Some((want, reason))
    }

    /// Evaluates `s` and switches if warranted; returns the logged switch.
    pub fn update(&mut self, s: &NetworkState) -> Option<RoleSwitch> {
        let (to, reason) = self.proposal(s)?;
        let sw = RoleSwitch {
            at: s.now,
            from: self.role,
            to,
            reason,
        };
        self.role = to;
        self.since = s.now;
        if self.log.len() >= LOG_CAP {
            self.log.remove(0);
        }
        self.log.push(sw.clone());
        Some(sw)
    }
}
