//! Layer 4, behaviour monitoring: anomaly detection on each peer's event stream.
//!
//! For every (peer, [`Metric`]) the monitor keeps an exponentially weighted
//! mean and variance (its own history). On a timer it also computes, per
//! metric, the network's median and median absolute deviation of the peers'
//! means (robust: attackers below half the population cannot move them).
//!
//! A sample is anomalous when it is far from the peer's own history *and*
//! the peer's mean is far from the network (a peer that is merely slow but
//! consistent, or a one-off spike within what the network does, is not
//! flagged). Before a peer has history, only a network deviation twice the
//! threshold counts. `strikes` anomalies within `strike_window` samples make
//! a verdict, which the coordinator turns into suspicion (decoys only),
//! never directly into quarantine.
//!
//! Thresholds adapt: if more than `target_alarm_rate` of samples alarm
//! (e.g. the whole network got slower), the multiplier rises; when alarms
//! are rare it relaxes back to 1.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::ids::PeerId;
use crate::reputation::Metric;

const METRICS: usize = 5;

fn index(m: Metric) -> usize {
    match m {
        Metric::Latency => 0,
        Metric::ErrorRate => 1,
        Metric::RefusalRate => 2,
        Metric::MessageRate => 3,
        Metric::SpeedRatio => 4,
    }
}

/// Tuning for the monitor.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MonitorConfig {
    /// EWMA weight of a new sample. Smaller = longer memory.
    pub alpha: f64,
    /// Samples before a peer's own history is used.
    pub warmup: u32,
    /// Deviation (in standard deviations) from own history that counts.
    pub z_own: f64,
    /// Deviation (in scaled MADs) from the network that counts.
    pub z_network: f64,
    /// Anomalies needed for a verdict ...
    pub strikes: u32,
    /// ... within this many samples of the same metric.
    pub strike_window: u32,
    /// Alarm rate above which thresholds are raised.
    pub target_alarm_rate: f64,
    /// Peers tracked; beyond it new peers are not monitored (bounded memory).
    pub max_peers: usize,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        Self {
            alpha: 0.05,
            warmup: 20,
            z_own: 5.0,
            z_network: 5.0,
            strikes: 3,
            strike_window: 20,
            target_alarm_rate: 0.01,
            max_peers: 100_000,
        }
    }
}

#[derive(Clone, Copy, Default, Debug, Serialize, Deserialize)]
struct Stat {
    n: u32,
    mean: f64,
    var: f64,
    strikes: u32,
    since_strike: u32,
}

#[derive(Clone, Copy, Default, Debug, Serialize, Deserialize)]
struct NetStat {
    median: f64,
    mad: f64,
    known: bool,
}

/// A verdict: the peer behaved anomalously on `metric`.
#[derive(Clone, Copy, PartialEq, Debug, Serialize, Deserialize)]
pub struct Anomaly {
    /// Which metric.
    pub metric: Metric,
    /// How far out the last sample was (the smaller of the two z scores).
    pub score: f64,
}

/// The behaviour monitor. Feed samples with [`Monitor::observe`]; call
/// [`Monitor::recalibrate`] periodically (the coordinator does it on its timer).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Monitor {
    config: MonitorConfig,
    peers: HashMap<PeerId, [Stat; METRICS]>,
    network: [NetStat; METRICS],
    scale: f64,
    samples: u64,
    alarms: u64,
}

impl Monitor {
    /// A monitor with no history.
    pub fn new(config: MonitorConfig) -> Self {
        Self {
            config,
            peers: HashMap::new(),
            network: [NetStat::default(); METRICS],
            scale: 1.0,
            samples: 0,
            alarms: 0,
        }
    }

    /// Current threshold multiplier (1 = configured thresholds).
    pub fn scale(&self) -> f64 {
        self.scale
    }

    /// Forgets a peer (e.g. quarantined or evicted).
    pub fn forget(&mut self, peer: &PeerId) {
        self.peers.remove(peer);
    }

    /// Records one sample; returns a verdict when the peer reaches `strikes`.
    pub fn observe(&mut self, peer: PeerId, metric: Metric, value: f64) -> Option<Anomaly> {
        if !value.is_finite() {
            return None;
        }
        if !self.peers.contains_key(&peer) && self.peers.len() >= self.config.max_peers {
            return None;
        }
        let c = &self.config;
        let i = index(metric);
        let net = self.network[i];
        let s = &mut self.peers.entry(peer).or_default()[i];
        self.samples += 1;
        // Score before updating, so a sample is judged against the past.
        let own_z = if s.n >= c.warmup {
            (value - s.mean).abs() / (s.var.sqrt() + 1e-9)
        } else {
            f64::INFINITY
        };
        // An outlier moves the baseline ten times more slowly, so a sustained
        // shift keeps standing out for a few samples instead of being
        // absorbed by the first one (which would blow up the variance).
        let alpha = if own_z.is_finite() && own_z > c.z_own * self.scale {
            c.alpha * 0.1
        } else {
            c.alpha
        };
        if s.n == 0 {
            s.mean = value;
        } else {
            let d = value - s.mean;
            s.mean += alpha * d;
            s.var = (1.0 - alpha) * (s.var + alpha * d * d);
        }
        s.n = s.n.saturating_add(1);
        s.since_strike = s.since_strike.saturating_add(1);
        if s.since_strike > c.strike_window {
            s.strikes = 0;
        }
        let net_z = if net.known {
            (s.mean - net.median).abs() / (1.4826 * net.mad + 1e-9)
        } else {
            0.0
        };
        let threshold = c.z_network * self.scale;
        let anomalous = if own_z.is_finite() {
            own_z > c.z_own * self.scale && net_z > threshold
        } else {
            net_z > 2.0 * threshold
        };
        if !anomalous {
            return None;
        }
        self.alarms += 1;
        s.strikes += 1;
        s.since_strike = 0;
        if s.strikes >= c.strikes {
            s.strikes = 0;
            return Some(Anomaly {
                metric,
                score: own_z.min(net_z),
            });
        }
        None
    }

    /// Recomputes the network baseline and adapts the threshold multiplier.
    pub fn recalibrate(&mut self) {
        for (i, net) in self.network.iter_mut().enumerate() {
            let mut means: Vec<f64> = self
                .peers
                .values()
                .filter(|s| s[i].n >= self.config.warmup)
                .map(|s| s[i].mean)
                .collect();
            if means.len() < 5 {
                continue;
            }
            let mid = means.len() / 2;
            let median = *means.select_nth_unstable_by(mid, f64::total_cmp).1;
            let mut dev: Vec<f64> = means.iter().map(|m| (m - median).abs()).collect();
            let mad = *dev.select_nth_unstable_by(mid, f64::total_cmp).1;
            // A MAD of zero (all identical) would make any deviation infinite;
            // floor it at a small fraction of the median.
            *net = NetStat {
                median,
                mad: mad.max(median.abs() * 0.01).max(1e-6),
                known: true,
            };
        }
        if self.samples >= 100 {
            let rate = self.alarms as f64 / self.samples as f64;
            if rate > self.config.target_alarm_rate {
                self.scale = (self.scale * 1.25).min(4.0);
            } else if rate < self.config.target_alarm_rate / 2.0 {
                self.scale = (self.scale / 1.05).max(1.0);
            }
            self.samples = 0;
            self.alarms = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(n: u64) -> PeerId {
        PeerId::from_u64(n)
    }

    fn warm(m: &mut Monitor) {
        for round in 0..50 {
            for n in 0..20 {
                let jitter = ((round * 7 + n * 3) % 5) as f64 * 0.2;
                assert!(
                    m.observe(p(n), Metric::MessageRate, 10.0 + jitter)
                        .is_none()
                );
            }
        }
        m.recalibrate();
    }

    #[test]
    fn flooding_peer_is_flagged_against_own_and_network_history() {
        let mut m = Monitor::new(MonitorConfig::default());
        warm(&mut m);
        let mut verdict = None;
        for _ in 0..20 {
            verdict = verdict.or(m.observe(p(3), Metric::MessageRate, 500.0));
            m.recalibrate();
        }
        assert_eq!(verdict.map(|a| a.metric), Some(Metric::MessageRate));
    }

    #[test]
    fn normal_jitter_is_not_flagged() {
        let mut m = Monitor::new(MonitorConfig::default());
        warm(&mut m);
        for round in 0..200 {
            for n in 0..20 {
                let jitter = ((round * 13 + n * 5) % 7) as f64 * 0.2;
                assert!(
                    m.observe(p(n), Metric::MessageRate, 10.0 + jitter)
                        .is_none()
                );
            }
            m.recalibrate();
        }
    }
}
