//! A live host's role: Young until it has done enough work, then Caste, and
//! Havoc while its swarm is in crisis. Sans-IO like the rest of the crate:
//! the host feeds what it observes (the hosts whose adverts are live, its
//! finished tasks, its queue) with an explicit `now`, and reads back its
//! role, the thresholds to advertise and whether to shed new work.
//!
//! What each role changes in the running swarm:
//! - **Young** advertises the generalist thresholds and learns nothing yet
//!   (a crow watching before it acts);
//! - **Caste** learns response thresholds from the work it does and
//!   advertises them, so placement sends it the classes it specialised in;
//! - **Havoc** advertises every threshold at the floor (it takes anything:
//!   a mosquito population adapting in a crisis) and sheds new work once its
//!   backlog per slot passes [`HavocConfig::shed_backlog_per_slot`], so
//!   what it has accepted finishes first.
//!
//! The crisis itself is [`CrisisDetector`]'s: losses are the hosts whose
//! adverts stopped arriving, errors the tasks that failed.

use serde::{Deserialize, Serialize};

use crate::havoc::{CrisisDetector, CrisisEvent, HavocAction, HavocConfig};
use crate::id::{Millis, NodeId};
use crate::role::BiologicalRole;
use crate::threshold::{CasteConfig, ResponseThresholds};

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

/// How a host changes role.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HostRoleConfig {
    /// Tasks a Young host finishes before it becomes Caste. Default 50.
    pub young_until: u64,
    /// The crisis detector's settings.
    pub havoc: HavocConfig,
}

impl Default for HostRoleConfig {
    fn default() -> Self {
        HostRoleConfig {
            young_until: 50,
            havoc: HavocConfig::default(),
        }
    }
}

/// A host's role over time (see the module docs).
#[derive(Clone, Debug)]
pub struct HostRole {
    cfg: HostRoleConfig,
    /// The role outside a crisis.
    base: BiologicalRole,
    role: BiologicalRole,
    done: u64,
    detector: CrisisDetector,
    log: Vec<RoleSwitch>,
}

/// Most switches kept in the log (oldest dropped).
const LOG_CAP: usize = 64;

impl HostRole {
    /// A host starting in `role`. Only Young moves on by itself (to Caste);
    /// any role enters Havoc in a crisis and returns to it afterwards.
    pub fn new(cfg: HostRoleConfig, role: BiologicalRole) -> Self {
        let detector = CrisisDetector::new(cfg.havoc.clone());
        HostRole {
            cfg,
            base: role,
            role,
            done: 0,
            detector,
            log: Vec::new(),
        }
    }

    /// The role now.
    pub fn role(&self) -> BiologicalRole {
        self.role
    }

    /// Every switch so far (the newest last; at most 64).
    pub fn log(&self) -> &[RoleSwitch] {
        &self.log
    }

    /// The hosts known now (`members`) and those lost since the last
    /// call (`lost`: their adverts stopped arriving).
    pub fn on_hosts(&mut self, now: Millis, lost: &[NodeId], members: u32) -> Option<RoleSwitch> {
        for gone in lost {
            self.detector.handle(now, CrisisEvent::HostLost(*gone));
        }
        self.detector.handle(now, CrisisEvent::Members(members));
        self.settle(now)
    }

    /// A task finished (`ok = false`: it failed on the host's side).
    pub fn on_task_done(&mut self, now: Millis, ok: bool) -> Option<RoleSwitch> {
        self.done += 1;
        self.detector.handle(now, CrisisEvent::JobResult { ok });
        self.settle(now)
    }

    /// Time passed; `queue` is the host's backlog now.
    pub fn on_tick(&mut self, now: Millis, queue: u32) -> Option<RoleSwitch> {
        self.detector.handle(now, CrisisEvent::QueueDepth(queue));
        self.detector.handle_timeout(now);
        self.settle(now)
    }

    /// Whether new work is refused now: in a crisis, once the backlog per
    /// slot is over the limit.
    pub fn should_shed(&self, backlog: u32, slots: u32) -> bool {
        self.role == BiologicalRole::Havoc && self.detector.should_shed(backlog, slots)
    }

    /// The thresholds to advertise: the learned ones as Caste, the floor in
    /// Havoc, the generalist's otherwise.
    pub fn thresholds(&self, caste: Option<&ResponseThresholds>, cfg: &CasteConfig) -> [f64; 3] {
        match (self.role, caste) {
            (BiologicalRole::Havoc, _) => [cfg.min; 3],
            (BiologicalRole::Caste, Some(t)) => t.values(),
            _ => [cfg.initial; 3],
        }
    }

    fn settle(&mut self, now: Millis) -> Option<RoleSwitch> {
        let mut why = None;
        while let Some(a) = self.detector.poll() {
            why = Some(match a {
                HavocAction::EnterCrisis { reason } => format!("crisis: {reason}"),
                HavocAction::ExitCrisis { reason } => format!("calm again: {reason}"),
            });
        }
        if self.base == BiologicalRole::Young && self.done >= self.cfg.young_until {
            self.base = BiologicalRole::Caste;
            why.get_or_insert_with(|| {
                format!(
                    "{} tasks done (young until {})",
                    self.done, self.cfg.young_until
                )
            });
        }
        let want = if self.detector.in_crisis() {
            BiologicalRole::Havoc
        } else {
            self.base
        };
        if want == self.role {
            return None;
        }
        let sw = RoleSwitch {
            at: now,
            from: self.role,
            to: want,
            reason: why.unwrap_or_else(|| "role changed".into()),
        };
        self.role = want;
        if self.log.len() >= LOG_CAP {
            self.log.remove(0);
        }
        self.log.push(sw.clone());
        Some(sw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(r: std::ops::Range<u32>) -> Vec<NodeId> {
        r.map(NodeId).collect()
    }

    #[test]
    fn young_becomes_caste_after_enough_tasks_and_only_then_learns() {
        let cfg = HostRoleConfig {
            young_until: 3,
            ..HostRoleConfig::default()
        };
        let caste = CasteConfig::default();
        let mut r = HostRole::new(cfg, BiologicalRole::Young);
        let learned = ResponseThresholds::from_values(&caste, [0.9, 0.9, 0.1]);
        assert!(r.on_task_done(1, true).is_none());
        assert!(r.on_task_done(2, true).is_none());
        assert_eq!(r.thresholds(Some(&learned), &caste), [0.5; 3]);
        let sw = r.on_task_done(3, true).expect("third task");
        assert_eq!(
            (sw.from, sw.to),
            (BiologicalRole::Young, BiologicalRole::Caste)
        );
        assert!(sw.reason.contains("3 tasks"), "{}", sw.reason);
        assert_eq!(r.thresholds(Some(&learned), &caste), [0.9, 0.9, 0.1]);
        assert!(r.on_task_done(4, true).is_none(), "no second switch");
    }

    #[test]
    fn losing_hosts_is_a_crisis_that_floors_thresholds_sheds_and_passes() {
        let mut r = HostRole::new(HostRoleConfig::default(), BiologicalRole::Caste);
        let caste = CasteConfig::default();
        assert!(r.on_hosts(0, &[], 10).is_none());
        // One in ten lost: ordinary churn.
        assert!(r.on_hosts(100, &ids(0..1), 9).is_none());
        assert!(!r.should_shed(100, 2));
        // Three more within the window: 4 of 10.
        let sw = r.on_hosts(200, &ids(1..4), 6).expect("crisis");
        assert_eq!(sw.to, BiologicalRole::Havoc);
        assert!(sw.reason.starts_with("crisis"), "{}", sw.reason);
        assert_eq!(r.thresholds(None, &caste), [caste.min; 3]);
        assert!(r.should_shed(5, 2), "backlog 2.5 per slot is over 2");
        assert!(!r.should_shed(4, 2));
        // Calm: the window empties and the calm time passes.
        let mut back = None;
        for t in (300..20_000).step_by(250) {
            back = back.or(r.on_tick(t, 0));
        }
        let back = back.expect("hands back");
        assert_eq!(
            (back.from, back.to),
            (BiologicalRole::Havoc, BiologicalRole::Caste)
        );
        assert!(!r.should_shed(100, 2));
        assert_eq!(r.log().len(), 2);
    }
}
