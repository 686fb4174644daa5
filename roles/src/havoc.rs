//! HAVOC: crisis detection, emergency re-placement and load shedding.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::error::RolesError;
use crate::id::{Millis, NodeId};

/// When to declare a crisis and when to hand back.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HavocConfig {
    /// Sliding window for losses and errors, ms. Default 2 s.
    pub window_ms: Millis,
    /// Fraction of the group lost inside the window that means crisis.
    /// Default 0.15: ordinary churn loses far less per window.
    pub lost_fraction: f64,
    /// Queue depth over its running average that means a surge. Default 3×.
    pub surge_ratio: f64,
    /// Queue depth below which no surge is declared. Default 32.
    pub surge_min_depth: u32,
    /// Failed results over all results in the window that mean an error
    /// spike. Default 0.25 (with at least 10 results).
    pub error_rate: f64,
    /// Calm time before handing back, ms. Default 3 s: the hysteresis that
    /// stops a flapping group from toggling modes every tick.
    pub calm_ms: Millis,
    /// In crisis, the backlog per slot above which new low-priority work is
    /// deferred (load shedding). Default 2.0.
    pub shed_backlog_per_slot: f64,
    /// Outside a crisis, how long to wait before re-placing work of a lost
    /// host (it may be a transient partition; re-placing early risks running
    /// a job twice). Default 2 s. In a crisis re-placement is immediate.
    pub normal_grace_ms: Millis,
}

impl Default for HavocConfig {
    fn default() -> Self {
        Self {
            window_ms: 2_000,
            lost_fraction: 0.15,
            surge_ratio: 3.0,
            surge_min_depth: 32,
            error_rate: 0.25,
            calm_ms: 3_000,
            shed_backlog_per_slot: 2.0,
            normal_grace_ms: 2_000,
        }
    }
}

impl HavocConfig {
    /// Checks ranges.
    pub fn validate(&self) -> Result<(), RolesError> {
        if self.window_ms == 0
            || !(self.lost_fraction > 0.0 && self.lost_fraction <= 1.0)
            || !(self.surge_ratio > 1.0)
            || !(self.error_rate > 0.0 && self.error_rate <= 1.0)
            || !(self.shed_backlog_per_slot > 0.0)
        {
            return Err(RolesError::InvalidConfig {
                field: "havoc".into(),
                value: format!("{self:?}"),
                reason: "need window > 0, fractions in (0,1], surge_ratio > 1, shed > 0",
            });
        }
        Ok(())
    }
}

/// What a group leader tells its crisis detector.
#[derive(Clone, Debug, PartialEq)]
pub enum CrisisEvent {
    /// The group's current size (sent on every membership change).
    Members(u32),
    /// A member stopped answering heartbeats.
    HostLost(NodeId),
    /// The group's queue depth, sampled once per tick.
    QueueDepth(u32),
    /// A job finished; `ok = false` for failures and wrong results.
    JobResult {
        /// Whether the result was good.
        ok: bool,
    },
}

/// Decisions the detector emits.
#[derive(Clone, Debug, PartialEq)]
pub enum HavocAction {
    /// Enter crisis mode: re-place lost work immediately and shed load.
    EnterCrisis {
        /// Why, in numbers (for the switch log).
        reason: String,
    },
    /// Hand back to normal operation.
    ExitCrisis {
        /// Why, in numbers.
        reason: String,
    },
}

/// The detector's mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrisisState {
    /// Normal operation.
    Calm,
    /// Crisis since the given time.
    Crisis {
        /// When the crisis was declared.
        since: Millis,
    },
}

/// Sliding-window crisis detector for one group (a Bravo's cluster).
///
/// Polling order: after each [`CrisisDetector::handle`] or
/// [`CrisisDetector::handle_timeout`], drain [`CrisisDetector::poll`], then
/// arm a timer for [`CrisisDetector::poll_timeout`].
#[derive(Clone, Debug)]
pub struct CrisisDetector {
    cfg: HavocConfig,
    members: u32,
    losses: VecDeque<Millis>,
    results: VecDeque<(Millis, bool)>,
    queue_avg: f64,
    queue_samples: u32,
    last_queue: u32,
    state: CrisisState,
    calm_since: Option<Millis>,
    actions: VecDeque<HavocAction>,
}

/// Queue samples needed before a surge can be declared.
const SURGE_WARMUP: u32 = 20;

/// Windows never hold more than this many samples (bounded memory).
const MAX_SAMPLES: usize = 4096;

impl CrisisDetector {
    /// A calm detector.
    pub fn new(cfg: HavocConfig) -> Self {
        Self {
            cfg,
            members: 0,
            losses: VecDeque::new(),
            results: VecDeque::new(),
            queue_avg: 0.0,
            queue_samples: 0,
            last_queue: 0,
            state: CrisisState::Calm,
            calm_since: None,
            actions: VecDeque::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &HavocConfig {
        &self.cfg
    }

    /// Current mode.
    pub fn state(&self) -> CrisisState {
        self.state
    }

    /// True in crisis mode.
    pub fn in_crisis(&self) -> bool {
        matches!(self.state, CrisisState::Crisis { .. })
    }

    /// Whether lost work should be re-placed now (`true`) or after
    /// `normal_grace_ms` (outside a crisis).
    pub fn replace_immediately(&self) -> bool {
        self.in_crisis()
    }

    /// Load shedding: in crisis, defer new low-priority work when the backlog
    /// per slot is above the configured limit.
    pub fn should_shed(&self, backlog: u32, slots: u32) -> bool {
        self.in_crisis() && backlog as f64 > self.cfg.shed_backlog_per_slot * slots.max(1) as f64
    }

    /// Feeds one observation.
    pub fn handle(&mut self, now: Millis, ev: CrisisEvent) {
        match ev {
            CrisisEvent::Members(n) => self.members = n,
            CrisisEvent::HostLost(_) => {
                push_bounded(&mut self.losses, now);
            }
            CrisisEvent::QueueDepth(d) => {
                self.last_queue = d;
                // A slow average, so a surge stands out against it; frozen in
                // a crisis so the surge does not become the new normal.
                if !self.in_crisis() {
                    self.queue_avg = if self.queue_samples == 0 {
                        d as f64
                    } else {
                        0.9 * self.queue_avg + 0.1 * d as f64
                    };
                    self.queue_samples = self.queue_samples.saturating_add(1);
                }
            }
            CrisisEvent::JobResult { ok } => push_bounded(&mut self.results, (now, ok)),
        }
        self.evaluate(now);
    }

    /// Advances time with no new observation (hand-back happens here).
    pub fn handle_timeout(&mut self, now: Millis) {
        self.evaluate(now);
    }

    /// Next decision, if any.
    pub fn poll(&mut self) -> Option<HavocAction> {
        self.actions.pop_front()
    }

    /// When [`CrisisDetector::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Millis> {
        match (self.state, self.calm_since) {
            (CrisisState::Crisis { .. }, Some(c)) => Some(c + self.cfg.calm_ms),
            _ => None,
        }
    }

    fn evaluate(&mut self, now: Millis) {
        let start = now.saturating_sub(self.cfg.window_ms);
        while self.losses.front().is_some_and(|t| *t < start) {
            self.losses.pop_front();
        }
        while self.results.front().is_some_and(|(t, _)| *t < start) {
            self.results.pop_front();
        }
        let base = (self.members as usize + self.losses.len()).max(1) as f64;
        let lost = self.losses.len() as f64 / base;
        let n = self.results.len();
        let errs = self.results.iter().filter(|(_, ok)| !ok).count();
        let err = if n >= 10 { errs as f64 / n as f64 } else { 0.0 };
        let surge = if self.queue_avg > 0.0 {
            self.last_queue as f64 / self.queue_avg
        } else {
            0.0
        };
        // No surge verdict before the average has seen a few samples.
        let surging = self.queue_samples >= SURGE_WARMUP
            && self.last_queue >= self.cfg.surge_min_depth
            && surge >= self.cfg.surge_ratio;
        match self.state {
            CrisisState::Calm => {
                let reason = if lost >= self.cfg.lost_fraction {
                    Some(format!(
                        "lost {:.0}% of hosts within {} ms",
                        lost * 100.0,
                        self.cfg.window_ms
                    ))
                } else if err >= self.cfg.error_rate {
                    Some(format!("error rate {:.0}% over {n} results", err * 100.0))
                } else if surging {
                    Some(format!(
                        "queue surge {} = {surge:.1}x average",
                        self.last_queue
                    ))
                } else {
                    None
                };
                if let Some(reason) = reason {
                    self.state = CrisisState::Crisis { since: now };
                    self.calm_since = None;
                    self.actions.push_back(HavocAction::EnterCrisis { reason });
                }
            }
            CrisisState::Crisis { since } => {
                // Exit needs every indicator below half its entry level.
                let calm = lost < self.cfg.lost_fraction / 2.0
                    && err < self.cfg.error_rate / 2.0
                    && (self.last_queue < self.cfg.surge_min_depth
                        || surge < self.cfg.surge_ratio / 2.0);
                if !calm {
                    self.calm_since = None;
                } else {
                    let c = *self.calm_since.get_or_insert(now);
                    if now >= c + self.cfg.calm_ms {
                        self.state = CrisisState::Calm;
                        self.calm_since = None;
                        self.actions.push_back(HavocAction::ExitCrisis {
                            reason: format!(
                                "calm for {} ms after {} ms of crisis",
                                now - c,
                                now - since
                            ),
                        });
                    }
                }
            }
        }
    }
}

fn push_bounded<T>(q: &mut VecDeque<T>, v: T) {
    if q.len() >= MAX_SAMPLES {
        q.pop_front();
    }
    q.push_back(v);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mass_loss_enters_crisis_then_hands_back_after_calm() {
        let mut d = CrisisDetector::new(HavocConfig::default());
        d.handle(0, CrisisEvent::Members(100));
        d.handle(1000, CrisisEvent::HostLost(NodeId(1)));
        assert!(!d.in_crisis(), "one loss is churn, not a crisis");
        d.handle(1000, CrisisEvent::Members(70));
        for i in 0..30 {
            d.handle(1000, CrisisEvent::HostLost(NodeId(i)));
        }
        assert!(d.in_crisis());
        assert!(matches!(d.poll(), Some(HavocAction::EnterCrisis { .. })));
        assert!(d.replace_immediately());
        assert!(d.should_shed(100, 10));
        // Window passes: calm starts; hand back only after calm_ms.
        d.handle_timeout(3100);
        assert!(d.in_crisis());
        let t = d.poll_timeout().unwrap();
        d.handle_timeout(t);
        assert!(!d.in_crisis());
        assert!(matches!(d.poll(), Some(HavocAction::ExitCrisis { .. })));
    }

    #[test]
    fn error_spike_and_queue_surge_trigger() {
        let mut d = CrisisDetector::new(HavocConfig::default());
        d.handle(0, CrisisEvent::Members(10));
        for i in 0..20 {
            d.handle(i, CrisisEvent::JobResult { ok: i % 2 == 0 });
        }
        assert!(d.in_crisis());

        let mut d = CrisisDetector::new(HavocConfig::default());
        d.handle(0, CrisisEvent::Members(10));
        for i in 0..50 {
            d.handle(i * 100, CrisisEvent::QueueDepth(10 + (i % 3) as u32));
        }
        assert!(!d.in_crisis());
        d.handle(5000, CrisisEvent::QueueDepth(100));
        assert!(d.in_crisis());
    }
}
