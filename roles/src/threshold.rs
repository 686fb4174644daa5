//! Caste: response thresholds and division of labour.

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::error::RolesError;

/// The task classes hosts specialise into.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TaskClass {
    /// Compute-bound jobs (matmul and friends).
    Cpu,
    /// Jobs that need a large linear memory.
    Memory,
    /// Small, latency-sensitive jobs.
    Small,
}

impl TaskClass {
    /// All classes, indexable by [`TaskClass::index`].
    pub const ALL: [TaskClass; 3] = [TaskClass::Cpu, TaskClass::Memory, TaskClass::Small];

    /// Position in [`TaskClass::ALL`] and in threshold arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Parameters of the response-threshold model.
///
/// A host answers a stimulus `s` for class `k` with probability
/// `s^n / (s^n + θ_k^n)`. Doing class-`k` work lowers `θ_k` by `learn`;
/// doing other work raises it by `forget`. Specialised hosts keep a class's
/// module compiled and its data warm, so they switch less.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CasteConfig {
    /// Threshold of a new host for every class. Default 0.5 (generalist).
    pub initial: f64,
    /// Threshold drop per task done of that class. Default 0.05.
    pub learn: f64,
    /// Threshold rise per task done of another class. Default 0.02; the ratio
    /// learn/forget sets how fast hosts specialise.
    pub forget: f64,
    /// Floor of every threshold. Default 0.02.
    pub min: f64,
    /// Ceiling of every threshold. Default 1.0.
    pub max: f64,
    /// Steepness `n` of the response curve. Default 2 (the classic model).
    pub steepness: f64,
}

impl Default for CasteConfig {
    fn default() -> Self {
        Self {
            initial: 0.5,
            learn: 0.05,
            forget: 0.02,
            min: 0.02,
            max: 1.0,
            steepness: 2.0,
        }
    }
}

impl CasteConfig {
    /// Checks ranges.
    pub fn validate(&self) -> Result<(), RolesError> {
        if !(self.min > 0.0 && self.min <= self.initial && self.initial <= self.max)
            || !(self.learn >= 0.0 && self.forget >= 0.0 && self.steepness > 0.0)
        {
            return Err(RolesError::InvalidConfig {
                field: "caste".into(),
                value: format!("{self:?}"),
                reason: "need 0 < min <= initial <= max, learn/forget >= 0, steepness > 0",
            });
        }
        Ok(())
    }
}

/// One host's thresholds, one per [`TaskClass`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResponseThresholds {
    theta: [f64; 3],
}

impl ResponseThresholds {
    /// A generalist host: every threshold at `cfg.initial`.
    pub fn new(cfg: &CasteConfig) -> Self {
        Self {
            theta: [cfg.initial; 3],
        }
    }

    /// Builds from explicit values (snapshots, elders), clamped to the bounds.
    pub fn from_values(cfg: &CasteConfig, theta: [f64; 3]) -> Self {
        Self {
            theta: theta.map(|t| {
                if t.is_finite() {
                    t.clamp(cfg.min, cfg.max)
                } else {
                    cfg.initial
                }
            }),
        }
    }

    /// Current thresholds, indexed by [`TaskClass::index`].
    pub fn values(&self) -> [f64; 3] {
        self.theta
    }

    /// Threshold for one class.
    pub fn threshold(&self, class: TaskClass) -> f64 {
        self.theta[class.index()]
    }

    /// Probability of answering stimulus `s` for `class`.
    pub fn response(&self, cfg: &CasteConfig, class: TaskClass, stimulus: f64) -> f64 {
        let s = stimulus.max(0.0).powf(cfg.steepness);
        let t = self.threshold(class).powf(cfg.steepness);
        if s + t == 0.0 { 0.0 } else { s / (s + t) }
    }

    /// The host finished a task of `class`: that threshold falls, the others rise.
    pub fn on_task_done(&mut self, cfg: &CasteConfig, class: TaskClass) {
        for (i, t) in self.theta.iter_mut().enumerate() {
            *t = if i == class.index() {
                *t - cfg.learn
            } else {
                *t + cfg.forget
            }
            .clamp(cfg.min, cfg.max);
        }
    }

    /// Chooses which queued class to run next: class `k` with weight
    /// `response(k, stimuli[k])`; classes with zero stimulus are skipped.
    /// Returns `None` when nothing is queued.
    pub fn choose_class<R: Rng + ?Sized>(
        &self,
        cfg: &CasteConfig,
        stimuli: [f64; 3],
        rng: &mut R,
    ) -> Option<TaskClass> {
        if stimuli.iter().all(|s| *s <= 0.0) {
            return None;
        }
        let w: Vec<f64> = TaskClass::ALL
            .iter()
            .map(|c| {
                if stimuli[c.index()] > 0.0 {
                    self.response(cfg, *c, stimuli[c.index()])
                } else {
                    0.0
                }
            })
            .collect();
        let i = crate::pheromone::sample(&w, rng);
        // `sample` picks uniformly among all when every weight is zero; never pick an empty class.
        if stimuli[i] > 0.0 {
            Some(TaskClass::ALL[i])
        } else {
            TaskClass::ALL
                .into_iter()
                .find(|c| stimuli[c.index()] > 0.0)
        }
    }

    /// How specialised the host is: max minus min threshold (0 = generalist).
    pub fn specialisation(&self) -> f64 {
        let max = self.theta.iter().cloned().fold(f64::MIN, f64::max);
        let min = self.theta.iter().cloned().fold(f64::MAX, f64::min);
        max - min
    }

    /// The class this host is most eager for.
    pub fn favourite(&self) -> TaskClass {
        let mut best = TaskClass::Cpu;
        for c in TaskClass::ALL {
            if self.threshold(c) < self.threshold(best) {
                best = c;
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn doing_work_lowers_threshold_and_raises_others() {
        let cfg = CasteConfig::default();
        let mut t = ResponseThresholds::new(&cfg);
        t.on_task_done(&cfg, TaskClass::Cpu);
        assert!(t.threshold(TaskClass::Cpu) < 0.5);
        assert!(t.threshold(TaskClass::Memory) > 0.5);
        for _ in 0..100 {
            t.on_task_done(&cfg, TaskClass::Cpu);
        }
        assert_eq!(t.threshold(TaskClass::Cpu), cfg.min);
        assert_eq!(t.threshold(TaskClass::Small), cfg.max);
        assert_eq!(t.favourite(), TaskClass::Cpu);
        assert!(t.specialisation() > 0.9);
    }

    #[test]
    fn specialised_host_answers_its_class_more() {
        let cfg = CasteConfig::default();
        let mut t = ResponseThresholds::new(&cfg);
        for _ in 0..10 {
            t.on_task_done(&cfg, TaskClass::Memory);
        }
        assert!(t.response(&cfg, TaskClass::Memory, 0.5) > 0.9);
        assert!(t.response(&cfg, TaskClass::Cpu, 0.5) < 0.5);
    }

    proptest! {
        #[test]
        fn thresholds_stay_in_bounds(seq in proptest::collection::vec(0usize..3, 0..300)) {
            let cfg = CasteConfig::default();
            let mut t = ResponseThresholds::new(&cfg);
            for c in seq {
                t.on_task_done(&cfg, TaskClass::ALL[c]);
                for v in t.values() { prop_assert!((cfg.min..=cfg.max).contains(&v)); }
                for k in TaskClass::ALL { let r = t.response(&cfg, k, 1.0); prop_assert!((0.0..=1.0).contains(&r)); }
            }
        }
    }
}
