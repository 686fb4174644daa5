//! The volunteer's resource policy: when a host takes new work.
//!
//! A person who lends a machine wants to pause it, to lend only part of
//! its time (a duty cycle), to lend it only while nobody else uses it (load
//! average below a threshold), to cap what it gives per day (fuel, task
//! time) and to bound the memory all tasks may hold at once. This type makes
//! that decision and nothing else: no clock, no `/proc`, no sockets. The
//! host's edge feeds it (`now` in Unix milliseconds, load samples, task
//! starts and ends) and asks [`ResourcePolicy::admit`] before it accepts a
//! job and [`ResourcePolicy::stopped`] when it advertises free slots.
//!
//! A stop only ever concerns *new* work: tasks already accepted keep their
//! reservation and finish; the policy never asks to drop anything.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// Milliseconds in a (UTC) day: daily caps reset at each multiple of it.
pub const DAY_MS: u64 = 24 * 3600 * 1000;

/// `[policy]` in `biop2p.toml`. Every limit is off by default (0), so a
/// host without a policy lends everything `[resources]` allows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// Fraction of each `duty_period_secs` during which new work is taken
    /// (0 < x ≤ 1; 1 = always). The worker count itself is
    /// `resources.cpu_allocation`; the duty cycle shares time, not cores.
    pub duty_cycle: f64,
    /// Length of one duty period in seconds. Short periods cut tasks into
    /// more pieces of idle time; long ones leave the machine alone longer.
    pub duty_period_secs: u64,
    /// Take new work only while the 1-minute load average, minus this
    /// host's own running tasks, is below this (0 = off).
    pub max_load_avg: f64,
    /// Seconds between load-average checks (the edge's sampling period).
    pub load_check_secs: u64,
    /// Fuel lent per UTC day (0 = no cap).
    pub daily_fuel_cap: u64,
    /// Seconds of task wall time lent per UTC day (0 = no cap).
    pub daily_time_cap_secs: u64,
    /// Memory limits of all accepted, unfinished tasks together, in bytes
    /// (0 = no cap beyond `resources.max_memory_bytes` per task).
    pub memory_cap_bytes: u64,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            duty_cycle: 1.0,
            duty_period_secs: 60,
            max_load_avg: 0.0,
            load_check_secs: 10,
            daily_fuel_cap: 0,
            daily_time_cap_secs: 0,
            memory_cap_bytes: 0,
        }
    }
}

impl PolicyConfig {
    /// Checks ranges; the message names the bad value.
    pub fn validate(&self) -> Result<(), String> {
        let d = self.duty_cycle;
        if !(d > 0.0 && d <= 1.0) {
            return Err(format!("policy.duty_cycle {d} is not in (0, 1]"));
        }
        if self.duty_period_secs == 0 {
            return Err("policy.duty_period_secs must be at least 1".into());
        }
        if !(self.max_load_avg >= 0.0 && self.max_load_avg.is_finite()) {
            return Err(format!(
                "policy.max_load_avg {} is not a load average ≥ 0",
                self.max_load_avg
            ));
        }
        if self.load_check_secs == 0 {
            return Err("policy.load_check_secs must be at least 1".into());
        }
        Ok(())
    }
}

/// Why new work is not taken now. Displayed as the refusal's message.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "why", rename_all = "snake_case")]
pub enum Stop {
    /// The volunteer pressed pause.
    Paused,
    /// The host is stopping (SIGTERM): running tasks finish, no new ones.
    Draining,
    /// The off part of the duty cycle; work is taken again at `until_ms`.
    Resting {
        /// Unix ms when the next on part starts.
        until_ms: u64,
    },
    /// The machine is busy with other things.
    NotIdle {
        /// Load average minus this host's running tasks.
        load: f64,
        /// `max_load_avg`.
        threshold: f64,
    },
    /// Today's fuel is lent.
    DailyFuel {
        /// Fuel used today.
        used: u64,
        /// `daily_fuel_cap`.
        cap: u64,
    },
    /// Today's task time is lent.
    DailyTime {
        /// Task milliseconds today.
        used_ms: u64,
        /// `daily_time_cap_secs` in ms.
        cap_ms: u64,
    },
    /// The job's memory limit does not fit beside the tasks' reservations.
    Memory {
        /// Reserved by accepted, unfinished tasks.
        reserved: u64,
        /// Asked by this job.
        asked: u64,
        /// `memory_cap_bytes`.
        cap: u64,
    },
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stop::Paused => write!(f, "paused by the volunteer"),
            Stop::Draining => write!(f, "host is shutting down"),
            Stop::Resting { until_ms } => {
                write!(f, "resting (duty cycle) until {until_ms} ms")
            }
            Stop::NotIdle { load, threshold } => write!(
                f,
                "machine not idle: load {load:.2} is not below {threshold:.2}"
            ),
            Stop::DailyFuel { used, cap } => {
                write!(f, "daily fuel cap reached: {used} of {cap}")
            }
            Stop::DailyTime { used_ms, cap_ms } => write!(
                f,
                "daily time cap reached: {} s of {} s",
                used_ms / 1000,
                cap_ms / 1000
            ),
            Stop::Memory {
                reserved,
                asked,
                cap,
            } => write!(
                f,
                "memory cap: {reserved} bytes reserved + {asked} asked is over {cap}"
            ),
        }
    }
}

/// The policy's state. Bounded: one reservation per accepted, unfinished
/// job, and the host bounds those by `max_queue`.
#[derive(Debug, Clone)]
pub struct ResourcePolicy {
    config: PolicyConfig,
    paused: bool,
    draining: bool,
    /// Last load sample minus running tasks (None: never sampled).
    load: Option<f64>,
    /// UTC day index of the counters below.
    day: u64,
    fuel_today: u64,
    time_today_ms: u64,
    /// Memory limit of each accepted, unfinished task, by an id of the
    /// caller's choosing.
    reserved: HashMap<[u8; 32], u64>,
    reserved_total: u64,
}

impl ResourcePolicy {
    /// A policy; fails on an out-of-range config.
    pub fn new(config: PolicyConfig) -> Result<Self, String> {
        config.validate()?;
        Ok(ResourcePolicy {
            config,
            paused: false,
            draining: false,
            load: None,
            day: 0,
            fuel_today: 0,
            time_today_ms: 0,
            reserved: HashMap::new(),
            reserved_total: 0,
        })
    }

    /// The config in force.
    pub fn config(&self) -> &PolicyConfig {
        &self.config
    }

    /// Replaces the config (the page's policy form). Counters and
    /// reservations are kept.
    pub fn set_config(&mut self, config: PolicyConfig) -> Result<(), String> {
        config.validate()?;
        self.config = config;
        Ok(())
    }

    /// Pause (true) or resume (false) new work.
    pub fn set_paused(&mut self, paused: bool) {
        self.paused = paused;
    }

    /// Whether the volunteer paused the host.
    pub fn paused(&self) -> bool {
        self.paused
    }

    /// No new work from now on (the host is stopping).
    pub fn drain(&mut self) {
        self.draining = true;
    }

    /// A load-average sample (1 minute) and how many of this host's own
    /// tasks were running, so that its own work does not count as "busy".
    pub fn on_load_sample(&mut self, load_avg: f64, own_running: usize) {
        if load_avg.is_finite() {
            self.load = Some((load_avg - own_running as f64).max(0.0));
        }
    }

    fn roll_day(&mut self, now_ms: u64) {
        let day = now_ms / DAY_MS;
        if day != self.day {
            self.day = day;
            self.fuel_today = 0;
            self.time_today_ms = 0;
        }
    }

    /// A task was accepted with this memory limit: reserve it until
    /// [`on_task_done`](Self::on_task_done). Idempotent per id.
    pub fn on_task_accepted(&mut self, id: [u8; 32], memory_bytes: u64) {
        if let Some(old) = self.reserved.insert(id, memory_bytes) {
            self.reserved_total -= old;
        }
        self.reserved_total += memory_bytes;
    }

    /// A task ended: free its reservation and count what it used today.
    pub fn on_task_done(&mut self, now_ms: u64, id: &[u8; 32], fuel: u64, wall_ms: u64) {
        if let Some(m) = self.reserved.remove(id) {
            self.reserved_total -= m;
        }
        self.roll_day(now_ms);
        self.fuel_today = self.fuel_today.saturating_add(fuel);
        self.time_today_ms = self.time_today_ms.saturating_add(wall_ms);
    }

    /// Accepted tasks not yet done.
    pub fn reserved_tasks(&self) -> usize {
        self.reserved.len()
    }

    /// Fuel and task milliseconds lent today (as of the last `now`).
    pub fn today(&self, now_ms: u64) -> (u64, u64) {
        if now_ms / DAY_MS == self.day {
            (self.fuel_today, self.time_today_ms)
        } else {
            (0, 0)
        }
    }

    /// Why no new work at all is taken at `now`, if so: this is what the
    /// adverts say (no free slots) and the page shows. Checked in order of
    /// what the volunteer can change soonest.
    pub fn stopped(&self, now_ms: u64) -> Option<Stop> {
        let c = &self.config;
        if self.draining {
            return Some(Stop::Draining);
        }
        if self.paused {
            return Some(Stop::Paused);
        }
        if c.duty_cycle < 1.0 {
            let period = c.duty_period_secs * 1000;
            let on = (period as f64 * c.duty_cycle) as u64;
            let into = now_ms % period;
            if into >= on {
                return Some(Stop::Resting {
                    until_ms: now_ms - into + period,
                });
            }
        }
        if c.max_load_avg > 0.0
            && let Some(load) = self.load
            && load >= c.max_load_avg
        {
            return Some(Stop::NotIdle {
                load,
                threshold: c.max_load_avg,
            });
        }
        let (fuel, time_ms) = self.today(now_ms);
        if c.daily_fuel_cap > 0 && fuel >= c.daily_fuel_cap {
            return Some(Stop::DailyFuel {
                used: fuel,
                cap: c.daily_fuel_cap,
            });
        }
        let cap_ms = c.daily_time_cap_secs.saturating_mul(1000);
        if cap_ms > 0 && time_ms >= cap_ms {
            return Some(Stop::DailyTime {
                used_ms: time_ms,
                cap_ms,
            });
        }
        None
    }

    /// May a job asking `memory_bytes` be accepted at `now`?
    pub fn admit(&self, now_ms: u64, memory_bytes: u64) -> Result<(), Stop> {
        if let Some(s) = self.stopped(now_ms) {
            return Err(s);
        }
        let cap = self.config.memory_cap_bytes;
        if cap > 0 && self.reserved_total.saturating_add(memory_bytes) > cap {
            return Err(Stop::Memory {
                reserved: self.reserved_total,
                asked: memory_bytes,
                cap,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(f: impl FnOnce(&mut PolicyConfig)) -> ResourcePolicy {
        let mut c = PolicyConfig::default();
        f(&mut c);
        ResourcePolicy::new(c).unwrap()
    }

    #[test]
    fn default_admits_everything() {
        let p = policy(|_| {});
        assert_eq!(p.admit(12_345, u64::MAX), Ok(()));
        assert_eq!(p.stopped(0), None);
    }

    #[test]
    fn pause_and_drain_stop_new_work_and_resume_restores() {
        let mut p = policy(|_| {});
        p.set_paused(true);
        assert_eq!(p.admit(0, 1), Err(Stop::Paused));
        p.set_paused(false);
        assert_eq!(p.admit(0, 1), Ok(()));
        p.drain();
        assert_eq!(p.admit(0, 1), Err(Stop::Draining));
    }

    #[test]
    fn duty_cycle_has_on_and_off_parts_at_exact_edges() {
        let p = policy(|c| {
            c.duty_cycle = 0.25;
            c.duty_period_secs = 4;
        });
        // Period 4000 ms, on for the first 1000 ms of each.
        assert_eq!(p.stopped(8_000), None);
        assert_eq!(p.stopped(8_999), None);
        assert_eq!(p.stopped(9_000), Some(Stop::Resting { until_ms: 12_000 }));
        assert_eq!(p.stopped(11_999), Some(Stop::Resting { until_ms: 12_000 }));
        assert_eq!(p.stopped(12_000), None);
    }

    #[test]
    fn load_threshold_excludes_own_tasks() {
        let mut p = policy(|c| c.max_load_avg = 1.5);
        assert_eq!(p.stopped(0), None, "no sample yet: not stopped");
        p.on_load_sample(3.2, 2);
        assert_eq!(p.stopped(0), None, "1.2 of it is others' work");
        p.on_load_sample(3.6, 2);
        assert!(matches!(p.stopped(0), Some(Stop::NotIdle { .. })));
        p.on_load_sample(f64::NAN, 0);
        assert!(
            matches!(p.stopped(0), Some(Stop::NotIdle { .. })),
            "NaN ignored"
        );
        p.on_load_sample(0.1, 0);
        assert_eq!(p.stopped(0), None);
    }

    #[test]
    fn daily_caps_stop_and_reset_next_day() {
        let mut p = policy(|c| {
            c.daily_fuel_cap = 1000;
            c.daily_time_cap_secs = 10;
        });
        let t = 5 * DAY_MS + 100;
        p.on_task_done(t, &[1; 32], 999, 10);
        assert_eq!(p.stopped(t), None);
        p.on_task_done(t, &[2; 32], 1, 10);
        assert_eq!(
            p.stopped(t),
            Some(Stop::DailyFuel {
                used: 1000,
                cap: 1000
            })
        );
        assert_eq!(p.stopped(6 * DAY_MS), None, "a new day");
        p.on_task_done(6 * DAY_MS, &[3; 32], 0, 10_000);
        assert!(matches!(
            p.stopped(6 * DAY_MS),
            Some(Stop::DailyTime { .. })
        ));
    }

    #[test]
    fn memory_cap_counts_reservations_until_done() {
        let mut p = policy(|c| c.memory_cap_bytes = 100);
        p.on_task_accepted([1; 32], 60);
        assert_eq!(p.admit(0, 40), Ok(()));
        assert_eq!(
            p.admit(0, 41),
            Err(Stop::Memory {
                reserved: 60,
                asked: 41,
                cap: 100
            })
        );
        p.on_task_accepted([1; 32], 60); // idempotent
        assert_eq!(p.reserved_tasks(), 1);
        p.on_task_done(0, &[1; 32], 0, 0);
        assert_eq!(p.admit(0, 100), Ok(()));
        assert_eq!(
            p.admit(0, u64::MAX),
            Err(Stop::Memory {
                reserved: 0,
                asked: u64::MAX,
                cap: 100
            })
        );
    }

    #[test]
    fn bad_configs_are_refused() {
        for f in [
            (|c: &mut PolicyConfig| c.duty_cycle = 0.0) as fn(&mut PolicyConfig),
            |c| c.duty_cycle = f64::NAN,
            |c| c.duty_period_secs = 0,
            |c| c.max_load_avg = -1.0,
            |c| c.load_check_secs = 0,
        ] {
            let mut c = PolicyConfig::default();
            f(&mut c);
            assert!(ResourcePolicy::new(c).is_err());
        }
    }
}
