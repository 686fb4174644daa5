//! What the page shows, built from the host's events by one owner (the
//! observer task) and published as a JSON snapshot. Every table is bounded.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Instant;

use serde::Serialize;

use crate::node::{Control, HostEvent, PeerEntry};

use super::metrics::Metrics;

/// Finished tasks kept for the page.
const RECENT: usize = 50;
/// Tasks shown as running at most (the host bounds them by `max_queue`;
/// this bounds the page whatever the config).
const RUNNING_MAX: usize = 4096;
/// Submitters remembered (the least recently seen go first).
const SUBMITTERS_MAX: usize = 256;
/// Points of the earnings plot (older ones are thinned out).
const EARNING_POINTS: usize = 512;
/// Refusals looked at when explaining why work is not coming.
const RECENT_REFUSALS: usize = 100;
/// Modules whose task times are remembered for completion estimates.
const ESTIMATED_MODULES: usize = 256;
/// Weight of the newest task in a module's moving average: recent tasks
/// matter more (the load changes), one odd task does not swing it.
const EWMA_WEIGHT: f64 = 0.3;

/// One task on the page.
#[derive(Debug, Clone, Serialize)]
pub struct TaskView {
    /// Job id (hex).
    pub job_id: String,
    /// Submitter's peer id ("" when accepted before a restart).
    pub submitter: String,
    /// Module hash (hex; "" when accepted before a restart).
    pub module_hash: String,
    /// `running` or `done`.
    pub state: &'static str,
    /// `ok` or the error kind, once done.
    pub outcome: Option<String>,
    /// Fuel used.
    pub fuel_used: u64,
    /// Peak linear memory.
    pub peak_memory_bytes: u64,
    /// Wall time in the sandbox.
    pub wall_ms: f64,
    /// Price in the receipt.
    pub price: u64,
    /// When it was accepted (Unix ms), when seen.
    pub accepted_at_ms: Option<u64>,
    /// When it finished (Unix ms).
    pub finished_at_ms: Option<u64>,
    /// When it is expected to finish (Unix ms), while unfinished: accepted
    /// time plus the moving average of accepted → finished for its module
    /// on this host (of all modules when this one has no history yet);
    /// `None` before any task finished.
    pub eta_ms: Option<u64>,
}

impl TaskView {
    /// A task accepted and not finished, with no counters yet.
    fn running(job_id: &str, submitter: &str, module_hash: &str, accepted: Option<u64>) -> Self {
        TaskView {
            job_id: job_id.to_string(),
            submitter: submitter.to_string(),
            module_hash: module_hash.to_string(),
            state: "running",
            outcome: None,
            fuel_used: 0,
            peak_memory_bytes: 0,
            wall_ms: 0.0,
            price: 0,
            accepted_at_ms: accepted,
            finished_at_ms: None,
            eta_ms: None,
        }
    }
}

/// One submitter this host serves.
#[derive(Debug, Clone, Serialize)]
pub struct SubmitterView {
    /// Its peer id.
    pub peer_id: String,
    /// Jobs accepted from it.
    pub accepted: u64,
    /// Requests refused.
    pub refused: u64,
    /// `admitted` or `refused: REASON` (its last request).
    pub admission: String,
    last_seen_ms: u64,
}

/// The whole page, as JSON (`GET /api/status`, and each SSE message).
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    /// This host.
    pub peer_id: String,
    /// Where it listens.
    pub addrs: Vec<String>,
    /// `reachability: public | private (relayed via …) | unknown`, the
    /// words after the colon.
    pub reachability: String,
    /// `serving`, `paused` or `busy`.
    pub state: &'static str,
    /// Why no new work is taken, when `busy` or `paused`.
    pub stopped_because: Option<String>,
    /// Tasks finished since start.
    pub tasks_done: u64,
    /// Roles and since when (Unix ms).
    pub roles: Vec<(String, u64)>,
    /// Price per million fuel.
    pub price_per_mfuel: u64,
    /// Calibrated speed: meter units per second.
    pub fuel_per_sec: u64,
    /// Sandbox workers.
    pub workers: usize,
    /// Seconds since start.
    pub uptime_secs: u64,
    /// Connected peers.
    pub connected_peers: u64,
    /// In a sandbox or queued.
    pub running: Vec<TaskView>,
    /// Finished, newest first.
    pub recent: Vec<TaskView>,
    /// Sum of receipt prices since start (claimed; paid once accepted).
    pub earnings_total: u64,
    /// Value settled in the ledger (receipts submitters accepted), all
    /// time; `None` until the host reported its ledger.
    pub ledger_earned: Option<u64>,
    /// Settled entries in the ledger.
    pub ledger_entries: u64,
    /// Value of receipts not accepted yet.
    pub ledger_unaccepted: u64,
    /// Settled earnings over time: (Unix ms, ledger total).
    pub earnings: Vec<(u64, u64)>,
    /// Hosts known from adverts.
    pub swarm: Vec<PeerEntry>,
    /// Submitters this host serves.
    pub submitters: Vec<SubmitterView>,
    /// Refusals by reason since start.
    pub refusals: BTreeMap<String, u64>,
    /// Why work is not coming, when it is not (empty otherwise).
    pub why_no_work: Vec<String>,
    /// The policy in force.
    pub policy: roles::PolicyConfig,
    /// Fuel and task ms lent today.
    pub today: (u64, u64),
    /// The host's clock when this snapshot was made (Unix ms), so the page
    /// turns `eta_ms` into "seconds left" on the host's clock, not its own.
    pub now_ms: u64,
    /// When every unfinished task is expected to be done (Unix ms; the
    /// latest `eta_ms`); `None` when nothing is unfinished or nothing can be
    /// estimated yet.
    pub all_done_eta_ms: Option<u64>,
}

/// Static facts given at start.
pub struct HostFacts {
    /// This host's peer id, known before its first event, so the first
    /// snapshot already names it.
    pub peer_id: String,
    /// Where it listens at start (multiaddrs).
    pub addrs: Vec<String>,
    /// Roles at start.
    pub role: String,
    /// Price per million fuel.
    pub price_per_mfuel: u64,
    /// Sandbox workers.
    pub workers: usize,
    /// Largest fuel and memory a job may ask.
    pub max_fuel: u64,
    /// See `max_fuel`.
    pub max_memory_bytes: u64,
}

/// `serving`, `paused` or `busy` (every slot taken, or the policy stops new
/// work).
pub fn state_of(paused: bool, stopped: bool, running: u64, workers: usize) -> &'static str {
    if paused {
        "paused"
    } else if stopped || running as usize >= workers {
        "busy"
    } else {
        "serving"
    }
}

/// The observer's state.
pub struct View {
    facts: HostFacts,
    started: Instant,
    peer_id: String,
    addrs: Vec<String>,
    reachability: String,
    fuel_per_sec: u64,
    tasks_done: u64,
    running: HashMap<String, (TaskView, Instant)>,
    recent: VecDeque<TaskView>,
    earnings_total: u64,
    earnings: Vec<(u64, u64)>,
    ledger: Option<(u64, u64, u64)>,
    submitters: HashMap<String, SubmitterView>,
    refusals: BTreeMap<String, u64>,
    recent_refusals: VecDeque<(String, String)>,
    swarm: Vec<PeerEntry>,
    /// The role now and since when (Unix ms).
    role: (String, u64),
    /// Moving average of accepted → finished, in ms, per module hash.
    latency_by_module: HashMap<String, f64>,
    /// The same over every module.
    latency_all: Option<f64>,
}

impl View {
    /// An empty view.
    pub fn new(facts: HostFacts, now_ms: u64) -> Self {
        View {
            started: Instant::now(),
            peer_id: facts.peer_id.clone(),
            addrs: facts.addrs.clone(),
            reachability: "unknown".into(),
            role: (facts.role.clone(), now_ms),
            facts,
            fuel_per_sec: 0,
            tasks_done: 0,
            running: HashMap::new(),
            recent: VecDeque::new(),
            earnings_total: 0,
            earnings: Vec::new(),
            ledger: None,
            submitters: HashMap::new(),
            refusals: BTreeMap::new(),
            recent_refusals: VecDeque::new(),
            swarm: Vec::new(),
            latency_by_module: HashMap::new(),
            latency_all: None,
        }
    }

    /// Takes one finished task's accepted → finished time into the
    /// estimates.
    fn learn_latency(&mut self, module_hash: &str, ms: f64) {
        let mix = |old: Option<f64>| match old {
            Some(o) => o + EWMA_WEIGHT * (ms - o),
            None => ms,
        };
        self.latency_all = Some(mix(self.latency_all));
        if module_hash.is_empty() {
            return;
        }
        if !self.latency_by_module.contains_key(module_hash)
            && self.latency_by_module.len() >= ESTIMATED_MODULES
        {
            // Bounded: forget an arbitrary module; it re-learns in one task.
            let k = self.latency_by_module.keys().next().cloned();
            if let Some(k) = k {
                self.latency_by_module.remove(&k);
            }
        }
        let old = self.latency_by_module.get(module_hash).copied();
        self.latency_by_module
            .insert(module_hash.to_string(), mix(old));
    }

    /// When an unfinished task is expected to finish (see
    /// [`TaskView::eta_ms`]).
    fn eta(&self, t: &TaskView) -> Option<u64> {
        let accepted = t.accepted_at_ms?;
        let ms = self
            .latency_by_module
            .get(&t.module_hash)
            .copied()
            .or(self.latency_all)?;
        Some(accepted + ms.round() as u64)
    }

    fn submitter(&mut self, peer: &str, now_ms: u64) -> &mut SubmitterView {
        if !self.submitters.contains_key(peer) && self.submitters.len() >= SUBMITTERS_MAX {
            let oldest = self
                .submitters
                .values()
                .min_by_key(|s| s.last_seen_ms)
                .map(|s| s.peer_id.clone());
            if let Some(o) = oldest {
                self.submitters.remove(&o);
            }
        }
        let s = self
            .submitters
            .entry(peer.to_string())
            .or_insert_with(|| SubmitterView {
                peer_id: peer.to_string(),
                accepted: 0,
                refused: 0,
                admission: String::new(),
                last_seen_ms: now_ms,
            });
        s.last_seen_ms = now_ms;
        s
    }

    /// Takes in one host event (and moves the metrics it concerns).
    pub fn on_event(&mut self, ev: &HostEvent, m: &Metrics, now_ms: u64) {
        match ev {
            HostEvent::RoleSwitched { to, .. } => self.role = (to.clone(), now_ms),
            HostEvent::Listening {
                peer_id,
                addrs,
                fuel_per_sec,
            } => {
                self.peer_id = peer_id.clone();
                self.addrs = addrs.clone();
                self.fuel_per_sec = *fuel_per_sec;
            }
            HostEvent::Reachability { status, .. } => self.reachability = status.clone(),
            HostEvent::Accepted {
                job_id,
                submitter,
                module_hash,
                ..
            } => {
                m.accepted.inc();
                let s = self.submitter(submitter, now_ms);
                s.accepted += 1;
                s.admission = "admitted".into();
                if self.running.len() < RUNNING_MAX {
                    let t = TaskView::running(job_id, submitter, module_hash, Some(now_ms));
                    self.running.insert(job_id.clone(), (t, Instant::now()));
                }
            }
            HostEvent::Finished {
                job_id,
                status,
                fuel_used,
                wall_ms,
                price,
                peak_memory_bytes,
            } => {
                let (mut t, since) = match self.running.remove(job_id) {
                    Some((t, since)) => (t, Some(since)),
                    // Accepted before a restart (or past the page's bound).
                    None => (TaskView::running(job_id, "", "", None), None),
                };
                if let Some(since) = since {
                    let latency = since.elapsed().as_secs_f64();
                    m.latency.observe(latency);
                    m.queue_wait.observe((latency - wall_ms / 1000.0).max(0.0));
                    self.learn_latency(&t.module_hash, latency * 1000.0);
                }
                t.state = "done";
                t.outcome = Some(status.clone());
                t.fuel_used = *fuel_used;
                t.peak_memory_bytes = *peak_memory_bytes;
                t.wall_ms = *wall_ms;
                t.price = *price;
                t.finished_at_ms = Some(now_ms);
                self.tasks_done += 1;
                m.tasks
                    .get_or_create(&vec![("outcome", status.clone())])
                    .inc();
                m.fuel.inc_by(*fuel_used);
                m.earned.inc_by(*price);
                self.earnings_total += price;
                self.recent.push_front(t);
                self.recent.truncate(RECENT);
            }
            HostEvent::Ledger {
                earned,
                entries,
                unaccepted,
            } => {
                self.ledger = Some((*earned, *entries, *unaccepted));
                self.earnings.push((now_ms, *earned));
                if self.earnings.len() > EARNING_POINTS {
                    // Keep the first point and every other of the rest.
                    let first = self.earnings[0];
                    let mut thinned: Vec<_> =
                        self.earnings[1..].iter().copied().step_by(2).collect();
                    thinned.insert(0, first);
                    if thinned.last() != self.earnings.last() {
                        thinned.push(*self.earnings.last().expect("non-empty"));
                    }
                    self.earnings = thinned;
                }
            }
            HostEvent::Refused {
                peer,
                reason,
                message,
                ..
            } => {
                m.refusals
                    .get_or_create(&vec![("reason", reason.clone())])
                    .inc();
                *self.refusals.entry(reason.clone()).or_default() += 1;
                self.recent_refusals
                    .push_front((reason.clone(), message.clone()));
                self.recent_refusals.truncate(RECENT_REFUSALS);
                let s = self.submitter(peer, now_ms);
                s.refused += 1;
                s.admission = format!("refused: {reason}");
            }
            HostEvent::Discovered { .. } => {
                m.discovered.inc();
            }
            HostEvent::Recovered { .. }
            | HostEvent::Forgotten { .. }
            | HostEvent::NoteAccepted { .. }
            | HostEvent::Relay { .. } => {}
        }
    }

    /// The hosts known from adverts (read from `peers.json` by the caller).
    pub fn set_swarm(&mut self, hosts: Vec<PeerEntry>, m: &Metrics) {
        self.swarm = hosts.into_iter().filter(|h| !h.is_self).collect();
        m.known_hosts.set(self.swarm.len() as i64);
    }

    /// Why work is not coming: each line is one cause the host can see.
    fn why_no_work(&self, stop: Option<&roles::Stop>, peers: u64) -> Vec<String> {
        let mut why = Vec::new();
        if let Some(s) = stop {
            why.push(format!("new work is stopped: {s}"));
        }
        if peers == 0 && self.swarm.is_empty() {
            why.push("no peers: nothing is connected and no other host is known".into());
        }
        let count = |r: &str| self.recent_refusals.iter().filter(|(x, _)| x == r).count();
        let price = count("price_too_low");
        if price > 0 {
            why.push(format!(
                "price above what recent jobs offered: {price} of the last {} refusals were price_too_low (your price {} per Mfuel)",
                self.recent_refusals.len(),
                self.facts.price_per_mfuel
            ));
        }
        let big = count("too_large");
        if big > 0 {
            let example = self
                .recent_refusals
                .iter()
                .find(|(r, _)| r == "too_large")
                .map_or("", |(_, m)| m.as_str());
            why.push(format!(
                "limits below what jobs ask: {big} recent refusals were too_large (e.g. {example})"
            ));
        }
        let cheaper = self
            .swarm
            .iter()
            .filter(|h| h.price_per_mfuel < self.facts.price_per_mfuel)
            .count();
        if cheaper > 0 {
            why.push(format!(
                "{cheaper} of {} known hosts charge less than your {} per Mfuel",
                self.swarm.len(),
                self.facts.price_per_mfuel
            ));
        }
        let bigger = self
            .swarm
            .iter()
            .filter(|h| {
                h.max_fuel > self.facts.max_fuel || h.max_memory_bytes > self.facts.max_memory_bytes
            })
            .count();
        if bigger > 0 && self.tasks_done == 0 {
            why.push(format!(
                "{bigger} known hosts accept larger jobs than yours"
            ));
        }
        if why.is_empty() && self.tasks_done == 0 && self.running.is_empty() {
            why.push(
                "no job has arrived yet: submitters pick hosts by price, speed and free slots"
                    .into(),
            );
        }
        why
    }

    /// The page's state now.
    pub fn snapshot(&self, control: &Control, m: &Metrics, now_ms: u64) -> Snapshot {
        let stop = control.stopped();
        let paused = control.paused();
        let peers = control.connected_peers();
        let running_now = control.running();
        m.peers.set(peers as i64);
        m.running.set(running_now as i64);
        m.paused.set(i64::from(paused));
        let state = state_of(paused, stop.is_some(), running_now, self.facts.workers);
        let mut running: Vec<TaskView> = self
            .running
            .values()
            .map(|(t, _)| TaskView {
                eta_ms: self.eta(t),
                ..t.clone()
            })
            .collect();
        running.sort_by_key(|t| t.accepted_at_ms);
        let all_done_eta_ms = running.iter().filter_map(|t| t.eta_ms).max();
        let mut submitters: Vec<_> = self.submitters.values().cloned().collect();
        submitters.sort_by_key(|s| std::cmp::Reverse(s.last_seen_ms));
        Snapshot {
            peer_id: self.peer_id.clone(),
            addrs: self.addrs.clone(),
            reachability: self.reachability.clone(),
            state,
            stopped_because: stop.as_ref().map(|s| s.to_string()),
            tasks_done: self.tasks_done,
            roles: vec![self.role.clone()],
            price_per_mfuel: self.facts.price_per_mfuel,
            fuel_per_sec: self.fuel_per_sec,
            workers: self.facts.workers,
            uptime_secs: self.started.elapsed().as_secs(),
            connected_peers: peers,
            running,
            recent: self.recent.iter().cloned().collect(),
            earnings_total: self.earnings_total,
            ledger_earned: self.ledger.map(|l| l.0),
            ledger_entries: self.ledger.map_or(0, |l| l.1),
            ledger_unaccepted: self.ledger.map_or(0, |l| l.2),
            earnings: self.earnings.clone(),
            swarm: self.swarm.clone(),
            submitters,
            refusals: self.refusals.clone(),
            why_no_work: self.why_no_work(stop.as_ref(), peers),
            policy: control.config(),
            today: control.today(),
            now_ms,
            all_done_eta_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> HostFacts {
        HostFacts {
            peer_id: "12D3KooWtest".into(),
            addrs: Vec::new(),
            role: "caste".into(),
            price_per_mfuel: 1,
            workers: 2,
            max_fuel: 1,
            max_memory_bytes: 1,
        }
    }

    fn task(module: &str, accepted: u64) -> TaskView {
        TaskView::running("j", "s", module, Some(accepted))
    }

    #[test]
    fn estimates_follow_each_modules_recent_times() {
        let mut v = View::new(facts(), 0);
        assert_eq!(v.eta(&task("a", 1000)), None, "nothing to go by yet");
        v.learn_latency("a", 100.0);
        assert_eq!(v.eta(&task("a", 1000)), Some(1100));
        // A module without history borrows the average of all.
        assert_eq!(v.eta(&task("b", 1000)), Some(1100));
        v.learn_latency("b", 1000.0);
        assert_eq!(v.eta(&task("b", 0)), Some(1000));
        // The newest time moves the average by its weight, not all the way.
        v.learn_latency("a", 200.0);
        assert_eq!(v.eta(&task("a", 0)), Some(130));
        // The table is bounded.
        for i in 0..(ESTIMATED_MODULES + 10) {
            v.learn_latency(&format!("m{i}"), 5.0);
        }
        assert!(v.latency_by_module.len() <= ESTIMATED_MODULES);
    }

    #[test]
    fn state_names_the_reason_new_work_stops() {
        assert_eq!(state_of(true, true, 0, 2), "paused");
        assert_eq!(state_of(false, true, 0, 2), "busy");
        assert_eq!(state_of(false, false, 2, 2), "busy");
        assert_eq!(state_of(false, false, 1, 2), "serving");
    }
}
