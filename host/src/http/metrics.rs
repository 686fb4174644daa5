//! `/metrics`: the host's figures in the Prometheus/OpenMetrics text
//! format, encoded by `prometheus-client` (never by hand).

use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// One label set: a label name and its value.
type Labels = Vec<(&'static str, String)>;

/// Every metric of a host. The types are atomics inside; the observer task
/// updates them and the `/metrics` handler encodes them.
pub struct Metrics {
    registry: Registry,
    /// `biop2p_tasks_total{outcome}`: `ok` or the sandbox error kind.
    pub tasks: Family<Labels, Counter>,
    /// `biop2p_accepted_total`: jobs durably accepted.
    pub accepted: Counter,
    /// `biop2p_fuel_used_total`: meter units used by finished tasks.
    pub fuel: Counter,
    /// `biop2p_earned_total`: prices of finished tasks' receipts.
    pub earned: Counter,
    /// `biop2p_job_latency_seconds`: accepted → finished, seen by this host.
    pub latency: Histogram,
    /// `biop2p_queue_wait_seconds`: accepted → in a sandbox (latency minus
    /// the task's wall time).
    pub queue_wait: Histogram,
    /// `biop2p_refusals_total{reason}`: the stable refusal reasons.
    pub refusals: Family<Labels, Counter>,
    /// `biop2p_peers`: peers with a connection to this host.
    pub peers: Gauge,
    /// `biop2p_known_hosts`: hosts known from live adverts.
    pub known_hosts: Gauge,
    /// `biop2p_hosts_discovered_total`: first adverts seen from a host.
    pub discovered: Counter,
    /// `biop2p_running_tasks`: tasks in a sandbox now.
    pub running: Gauge,
    /// `biop2p_paused`: 1 while the volunteer paused the host.
    pub paused: Gauge,
    /// `biop2p_adverts_seen_total`: verified adverts taken in (the host
    /// loop's own counter, shared through the control).
    pub adverts_seen: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new(Counter::default())
    }
}

impl Metrics {
    /// Registers every metric; `adverts_seen` is the host loop's counter.
    pub fn new(adverts_seen: Counter) -> Self {
        let mut r = Registry::default();
        let tasks = Family::<Labels, Counter>::default();
        let refusals = Family::<Labels, Counter>::default();
        // From 1 ms to about 4.4 min, ×4 per bucket.
        let latency = Histogram::new(exponential_buckets(0.001, 4.0, 10));
        let queue_wait = Histogram::new(exponential_buckets(0.001, 4.0, 10));
        let m = Metrics {
            accepted: Counter::default(),
            fuel: Counter::default(),
            earned: Counter::default(),
            peers: Gauge::default(),
            known_hosts: Gauge::default(),
            discovered: Counter::default(),
            running: Gauge::default(),
            paused: Gauge::default(),
            adverts_seen,
            registry: Registry::default(),
            tasks,
            refusals,
            latency,
            queue_wait,
        };
        // Counters get their `_total` suffix from the encoder.
        r.register(
            "biop2p_tasks",
            "Finished tasks by outcome (ok or the error kind)",
            m.tasks.clone(),
        );
        r.register(
            "biop2p_accepted",
            "Jobs durably accepted",
            m.accepted.clone(),
        );
        r.register(
            "biop2p_fuel_used",
            "Meter units used by finished tasks",
            m.fuel.clone(),
        );
        r.register(
            "biop2p_earned",
            "Sum of the prices in this host's receipts",
            m.earned.clone(),
        );
        r.register(
            "biop2p_job_latency_seconds",
            "Accepted to finished, on this host",
            m.latency.clone(),
        );
        r.register(
            "biop2p_queue_wait_seconds",
            "Accepted to in a sandbox, on this host",
            m.queue_wait.clone(),
        );
        r.register(
            "biop2p_refusals",
            "Refused requests by reason",
            m.refusals.clone(),
        );
        r.register(
            "biop2p_peers",
            "Peers connected to this host",
            m.peers.clone(),
        );
        r.register(
            "biop2p_known_hosts",
            "Hosts known from live adverts",
            m.known_hosts.clone(),
        );
        r.register(
            "biop2p_hosts_discovered",
            "Hosts seen advertising for the first time",
            m.discovered.clone(),
        );
        r.register(
            "biop2p_running_tasks",
            "Tasks in a sandbox now",
            m.running.clone(),
        );
        r.register(
            "biop2p_paused",
            "1 while the volunteer paused new work",
            m.paused.clone(),
        );
        r.register(
            "biop2p_adverts_seen",
            "Verified adverts of other hosts taken in (first or fresher)",
            m.adverts_seen.clone(),
        );
        Metrics { registry: r, ..m }
    }

    /// The text exposition: these metrics, then `network`'s (the
    /// transport's byte counters, `libp2p_bandwidth_bytes_total` by
    /// direction and protocol stack), then one `# EOF`.
    pub fn encode(&self, network: Option<&Registry>) -> String {
        let mut s = String::new();
        let fail = "writing to a String cannot fail";
        encode_registry(&mut s, &self.registry).expect(fail);
        if let Some(n) = network {
            encode_registry(&mut s, n).expect(fail);
        }
        encode_eof(&mut s).expect(fail);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_interfaces() {
        let m = Metrics::default();
        m.tasks.get_or_create(&vec![("outcome", "ok".into())]).inc();
        m.refusals
            .get_or_create(&vec![("reason", "busy".into())])
            .inc();
        m.fuel.inc_by(7);
        m.latency.observe(0.01);
        m.adverts_seen.inc();
        let text = m.encode(None);
        for want in [
            "biop2p_tasks_total{outcome=\"ok\"} 1",
            "biop2p_refusals_total{reason=\"busy\"} 1",
            "biop2p_fuel_used_total 7",
            "biop2p_job_latency_seconds_count 1",
            "biop2p_peers 0",
            "biop2p_adverts_seen_total 1",
        ] {
            assert!(text.contains(want), "{want} missing from\n{text}");
        }
    }
}
