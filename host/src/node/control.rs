//! The volunteer's hold on a running host: pause, resume, the resource
//! policy, and a few live figures the host loop publishes for the page.
//!
//! The decision is [`roles::ResourcePolicy`] (pure); this is its edge. It
//! is shared by the host loop, the HTTP owner and the load sampler. The
//! mutex is held only for an O(1) call into the policy, never across an
//! `.await`, so neither side can stall the swarm task; figures the page
//! reads often are atomics.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;

use roles::{PolicyConfig, ResourcePolicy, Stop};

use super::host::unix_now_ms;

/// A cheap, cloneable handle (see the module docs).
#[derive(Clone)]
pub struct Control {
    inner: Arc<Inner>,
}

struct Inner {
    policy: Mutex<ResourcePolicy>,
    /// The policy changed in a way adverts must show soon.
    changed: AtomicBool,
    connected_peers: AtomicU64,
    running: AtomicU64,
    /// Verified adverts taken in from other hosts (first or fresher).
    adverts_seen: Counter,
    /// The transport's byte counters (libp2p's bandwidth metrics), set
    /// once when the swarm is built.
    network: OnceLock<Registry>,
    /// The host's store while it runs, for readers off the swarm task (the
    /// ledger on the page); taken away before the database closes, so it
    /// never keeps the database open.
    store: Mutex<Option<crate::store::HostStore>>,
}

impl Control {
    /// A control over a policy that was validated with the config.
    pub fn new(config: PolicyConfig) -> Self {
        let policy = ResourcePolicy::new(config.clone()).unwrap_or_else(|e| {
            tracing::error!(error = %e, "invalid policy; using the defaults");
            ResourcePolicy::new(PolicyConfig::default()).expect("default policy is valid")
        });
        Control {
            inner: Arc::new(Inner {
                policy: Mutex::new(policy),
                changed: AtomicBool::new(false),
                connected_peers: AtomicU64::new(0),
                running: AtomicU64::new(0),
                adverts_seen: Counter::default(),
                network: OnceLock::new(),
                store: Mutex::new(None),
            }),
        }
    }

    fn policy(&self) -> MutexGuard<'_, ResourcePolicy> {
        // A panic while holding it cannot leave the policy half-updated in a
        // way that matters more than stopping the host would.
        self.inner.policy.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn touch(&self) {
        self.inner.changed.store(true, Ordering::Release);
    }

    /// Pause (true) or resume (false) new work.
    pub fn set_paused(&self, paused: bool) {
        self.policy().set_paused(paused);
        self.touch();
        tracing::info!(paused, "volunteer control");
    }

    /// Replaces the policy's config.
    pub fn set_config(&self, config: PolicyConfig) -> Result<(), String> {
        self.policy().set_config(config)?;
        self.touch();
        Ok(())
    }

    /// The policy's config now.
    pub fn config(&self) -> PolicyConfig {
        self.policy().config().clone()
    }

    /// Whether the volunteer paused the host.
    pub fn paused(&self) -> bool {
        self.policy().paused()
    }

    /// Stop taking work for good (SIGTERM).
    pub fn drain(&self) {
        self.policy().drain();
        self.touch();
    }

    /// Why no new work is taken now, if so.
    pub fn stopped(&self) -> Option<Stop> {
        self.policy().stopped(unix_now_ms())
    }

    /// May a job with this memory limit be accepted now?
    pub fn admit(&self, memory_bytes: u64) -> Result<(), Stop> {
        self.policy().admit(unix_now_ms(), memory_bytes)
    }

    /// Fuel and task milliseconds lent today.
    pub fn today(&self) -> (u64, u64) {
        self.policy().today(unix_now_ms())
    }

    /// Accepted jobs not yet finished (what a graceful stop waits for).
    pub fn unfinished(&self) -> usize {
        self.policy().reserved_tasks()
    }

    /// Called by the host loop for each job handed to the sandbox.
    pub(crate) fn on_task_accepted(&self, job_id: [u8; 32], memory_bytes: u64) {
        self.policy().on_task_accepted(job_id, memory_bytes);
    }

    /// Called by the host loop for each finished job.
    pub(crate) fn on_task_done(&self, job_id: &[u8; 32], fuel: u64, wall_us: u64) {
        self.policy()
            .on_task_done(unix_now_ms(), job_id, fuel, wall_us / 1000);
        self.touch();
    }

    /// The host loop's figures, published each tick.
    pub(crate) fn publish(&self, connected_peers: usize, running: usize) {
        self.inner
            .connected_peers
            .store(connected_peers as u64, Ordering::Relaxed);
        self.inner.running.store(running as u64, Ordering::Relaxed);
    }

    /// Whether adverts should be refreshed now (and clears the flag).
    pub(crate) fn take_changed(&self) -> bool {
        self.inner.changed.swap(false, Ordering::AcqRel)
    }

    /// Peers with a connection to this host (as of the last tick).
    pub fn connected_peers(&self) -> u64 {
        self.inner.connected_peers.load(Ordering::Relaxed)
    }

    /// Verified adverts taken in so far; the counter itself, so `/metrics`
    /// reads the live value (clones share it).
    pub fn adverts_seen(&self) -> Counter {
        self.inner.adverts_seen.clone()
    }

    /// Called by the host loop for each verified advert it takes in.
    pub(crate) fn on_advert(&self) {
        self.inner.adverts_seen.inc();
    }

    /// The transport's byte counters (`libp2p_bandwidth_bytes_total`), once
    /// the swarm is built.
    pub fn network_metrics(&self) -> Option<&Registry> {
        self.inner.network.get()
    }

    /// Set once by the host after building its swarm.
    pub(crate) fn set_network_metrics(&self, registry: Registry) {
        if self.inner.network.set(registry).is_err() {
            tracing::warn!("network metrics set twice; keeping the first");
        }
    }

    /// Set by the host when it starts (`Some`) and before it closes its
    /// database (`None`).
    pub(crate) fn set_store(&self, store: Option<crate::store::HostStore>) {
        *self.inner.store.lock().unwrap_or_else(|p| p.into_inner()) = store;
    }

    /// The running host's ledger, read from its store (blocking: call it
    /// off async tasks); `None` when no host runs.
    pub fn ledger_view(
        &self,
    ) -> Option<Result<crate::node::ledger::LedgerView, crate::store::StoreError>> {
        let store = self
            .inner
            .store
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()?;
        Some(crate::node::ledger::host_view(&store))
    }

    /// Tasks in a sandbox now (as of the last tick).
    pub fn running(&self) -> u64 {
        self.inner.running.load(Ordering::Relaxed)
    }

    /// Samples `/proc/loadavg` every `load_check_secs` (re-read each round,
    /// so a policy change takes effect) until the control is the last
    /// handle left. Runs on its own task: a file read never waits on the
    /// swarm task, nor it on this.
    pub fn spawn_load_sampler(&self) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            loop {
                let Some(inner) = weak.upgrade() else { return };
                let c = Control { inner };
                let every = c.config().load_check_secs.max(1);
                if c.config().max_load_avg > 0.0 {
                    match tokio::fs::read_to_string("/proc/loadavg").await {
                        Ok(text) => match parse_loadavg(&text) {
                            Some(l) => c.policy().on_load_sample(l, c.running() as usize),
                            None => tracing::warn!(%text, "unreadable /proc/loadavg"),
                        },
                        Err(e) => tracing::warn!(error = %e, "cannot read /proc/loadavg"),
                    }
                    c.touch();
                }
                drop(c);
                tokio::time::sleep(Duration::from_secs(every)).await;
            }
        })
    }
}

/// The 1-minute figure of `/proc/loadavg` ("0.52 0.58 0.59 1/467 12345").
fn parse_loadavg(text: &str) -> Option<f64> {
    text.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loadavg_first_field() {
        assert_eq!(parse_loadavg("0.52 0.58 0.59 1/467 12345\n"), Some(0.52));
        assert_eq!(parse_loadavg(""), None);
        assert_eq!(parse_loadavg("x 1 2"), None);
    }

    #[test]
    fn pause_is_seen_by_admit_and_flags_a_new_advert() {
        let c = Control::new(PolicyConfig::default());
        assert!(c.admit(1).is_ok());
        assert!(!c.take_changed());
        c.set_paused(true);
        assert_eq!(c.admit(1), Err(Stop::Paused));
        assert!(c.take_changed());
        c.set_paused(false);
        assert!(c.admit(1).is_ok());
    }
}
