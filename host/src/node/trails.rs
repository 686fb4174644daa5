//! Thermal placement on the submitter's side: pheromone trails over hosts.
//!
//! The trail logic is the `roles` crate's [`PheromoneTable`] (the same code
//! the simulator measures); this module maps libp2p peers onto it, feeds it
//! what replicas revealed, and keeps it across runs in the submitter's state
//! directory. A host whose output agreed with the accepted majority gets a
//! deposit; one that disagreed, refused, vanished or missed its deadline has
//! its trail halved. Placement orders fitting hosts by
//! `trail^alpha · heuristic^beta`, where the heuristic comes from the advert
//! (idle workers, speed, price, Caste readiness), so hosts that keep
//! delivering are preferred and a host caught lying drops down the list at
//! once; trails evaporate (half-life one hour), so old history stops
//! counting. Like the roles crate, this never reads the clock: callers pass
//! `now` (Unix milliseconds).

use std::collections::HashMap;
use std::path::Path;

use libp2p::PeerId;
use roles::{
    CasteConfig, Millis, NodeId, PheromoneTable, ResponseThresholds, TaskClass, ThermalConfig,
};
use serde::{Deserialize, Serialize};

use super::placement::{Report, task_class, unfit};
use crate::proto::{Advert, Hash, JobSpec};

/// A submitter runs a job now and then, not thousands per second: trails
/// are remembered for hours rather than the simulator's seconds.
const HALF_LIFE_MS: Millis = 3_600_000;

/// The submitter's trails.
#[derive(Debug, Clone)]
pub struct Trails {
    table: PheromoneTable,
    ids: HashMap<PeerId, NodeId>,
    /// Answers compared into these trails (Young's experience: what a
    /// fresh submitter chooses elders by, and when this one may teach).
    experience: u64,
    /// When these trails were last published as a Young table, and at
    /// what experience.
    published: Option<(u64, u64)>,
}

#[derive(Serialize, Deserialize)]
struct Saved {
    saved_at_ms: u64,
    trails: Vec<(String, f64)>,
    #[serde(default)]
    experience: u64,
    #[serde(default)]
    published: Option<(u64, u64)>,
}

impl Default for Trails {
    fn default() -> Self {
        Self::new()
    }
}

impl Trails {
    /// No trails yet: every host starts equal.
    pub fn new() -> Self {
        Trails {
            table: PheromoneTable::new(ThermalConfig {
                half_life_ms: HALF_LIFE_MS,
                ..ThermalConfig::default()
            }),
            ids: HashMap::new(),
            experience: 0,
            published: None,
        }
    }

    /// Loads trails saved by [`Trails::save`]; a missing or unreadable file
    /// starts afresh (trails are a hint, never a reason to fail a job).
    pub fn load(path: &Path) -> Self {
        let mut t = Self::new();
        let Ok(bytes) = std::fs::read(path) else {
            return t;
        };
        match Self::from_json(&bytes) {
            Ok(loaded) => t = loaded,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "ignoring unreadable trails")
            }
        }
        t
    }

    /// Parses the bytes of a trails file (what [`Trails::load`] reads). The
    /// file is outside the submitter's control once written, so anything
    /// may be in it: unparsable peer ids are skipped and levels go through
    /// [`PheromoneTable::import`], which drops non-finite ones and clamps.
    pub fn from_json(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        let mut t = Self::new();
        let saved = serde_json::from_slice::<Saved>(bytes)?;
        let levels: Vec<(NodeId, f64)> = saved
            .trails
            .iter()
            .filter_map(|(p, l)| Some((t.id(p.parse().ok()?, saved.saved_at_ms), *l)))
            .collect();
        // Imported as of when they were saved, so time away counts as
        // evaporation.
        t.table.import(&levels, saved.saved_at_ms);
        t.experience = saved.experience;
        t.published = saved.published;
        Ok(t)
    }

    /// Writes the trails atomically, as of `now`.
    pub fn save(&self, path: &Path, now: Millis) -> std::io::Result<()> {
        let by_id: HashMap<NodeId, PeerId> = self.ids.iter().map(|(p, i)| (*i, *p)).collect();
        let saved = Saved {
            saved_at_ms: now,
            trails: self
                .table
                .export(now)
                .into_iter()
                .filter_map(|(i, l)| Some((by_id.get(&i)?.to_string(), l)))
                .collect(),
            experience: self.experience,
            published: self.published,
        };
        let tmp = path.with_extension("json.tmp");
        std::fs::write(
            &tmp,
            serde_json::to_vec(&saved).map_err(std::io::Error::other)?,
        )?;
        std::fs::rename(tmp, path)
    }

    fn id(&mut self, peer: PeerId, now: Millis) -> NodeId {
        if let Some(i) = self.ids.get(&peer) {
            return *i;
        }
        // Bounded: the table evicts weak trails past its capacity; drop the
        // mappings of evicted hosts when the map grows well past it.
        if self.ids.len() >= 4 * self.table.config().capacity {
            let live: std::collections::HashSet<NodeId> =
                self.table.export(now).into_iter().map(|(i, _)| i).collect();
            self.ids.retain(|_, i| live.contains(i));
        }
        let next = NodeId(self.ids.values().map(|i| i.0 + 1).max().unwrap_or(0));
        self.ids.insert(peer, next);
        next
    }

    /// The trail of `peer` at `now`.
    pub fn level(&self, peer: &PeerId, now: Millis) -> f64 {
        match self.ids.get(peer) {
            Some(i) => self.table.level(*i, now),
            None => self.table.config().tau_init,
        }
    }

    /// A verified answer that agreed with the accepted output.
    pub fn reinforce(&mut self, peer: PeerId, now: Millis) {
        let i = self.id(peer, now);
        self.table.reinforce(i, 1.0, now);
        self.experience += 1;
    }

    /// A host that disagreed, refused, vanished or missed its deadline.
    pub fn punish(&mut self, peer: PeerId, now: Millis) {
        let i = self.id(peer, now);
        self.table.punish(i, now);
        self.experience += 1;
    }

    /// Outcomes learned from (each reinforcement or punishment counts).
    pub fn experience(&self) -> u64 {
        self.experience
    }

    /// Nothing learned yet, here or from elders: Young asks before placing.
    pub fn is_cold(&self) -> bool {
        self.experience == 0 && self.table.is_empty()
    }

    /// Starts from elders' merged levels (Young): each level replaces this
    /// host's (clamped to the trail bounds); experience stays this
    /// submitter's own.
    pub fn seed(&mut self, levels: &[(PeerId, f64)], now: Millis) {
        let ids: Vec<(NodeId, f64)> = levels.iter().map(|(p, l)| (self.id(*p, now), *l)).collect();
        self.table.import(&ids, now);
    }

    /// The `max` trails as of `now` that say most, those furthest from
    /// the initial level (by ratio) first, ties by peer: what a Young table
    /// carries. A liar's sunk trail says as much as a good host's raised
    /// one.
    pub fn most_telling(&self, now: Millis, max: usize) -> Vec<(PeerId, f64)> {
        let init = self.table.config().tau_init;
        let telling = |l: f64| (l / init).ln().abs();
        let by_id: HashMap<NodeId, PeerId> = self.ids.iter().map(|(p, i)| (*i, *p)).collect();
        let mut all: Vec<(PeerId, f64)> = self
            .table
            .export(now)
            .into_iter()
            .filter_map(|(i, l)| Some((*by_id.get(&i)?, l)))
            .collect();
        all.sort_by(|a, b| {
            telling(b.1)
                .total_cmp(&telling(a.1))
                .then(a.0.to_bytes().cmp(&b.0.to_bytes()))
        });
        all.truncate(max);
        all
    }

    /// When and at what experience these trails were last published.
    pub fn published(&self) -> Option<(u64, u64)> {
        self.published
    }

    /// Records a publication at `now`.
    pub fn mark_published(&mut self, now: Millis) {
        self.published = Some((now, self.experience));
    }

    /// Feeds a finished job's report: the hosts that agreed with `winner`
    /// are reinforced, the others punished.
    pub fn learn(&mut self, report: &Report, winner: Option<Hash>, now: Millis) {
        for a in &report.answers {
            if Some(a.output_hash) == winner {
                self.reinforce(a.peer, now);
            } else {
                self.punish(a.peer, now);
            }
        }
        for m in &report.missing {
            if let Ok(p) = m.host.parse::<PeerId>() {
                self.punish(p, now);
            }
        }
    }

    /// The hosts that fit `spec`, best first by trail and advert.
    pub fn rank(
        &mut self,
        hosts: Vec<(PeerId, Advert)>,
        spec: &JobSpec,
        now: Millis,
    ) -> Vec<(PeerId, Advert)> {
        let class = task_class(spec);
        let mut scored: Vec<(f64, PeerId, Advert)> = hosts
            .into_iter()
            .filter(|(_, a)| unfit(a, spec).is_none())
            .map(|(p, a)| {
                let w = match self.ids.get(&p) {
                    Some(i) => self.table.weight(*i, heuristic(&a, class), now),
                    // Unknown hosts weigh in at the initial trail.
                    None => {
                        let cfg = self.table.config();
                        cfg.tau_init.powf(cfg.alpha) * heuristic(&a, class).powf(cfg.beta)
                    }
                };
                (w, p, a)
            })
            .collect();
        scored.sort_by(|x, y| {
            y.0.total_cmp(&x.0)
                .then(x.1.to_bytes().cmp(&y.1.to_bytes()))
        });
        scored.into_iter().map(|(_, p, a)| (p, a)).collect()
    }
}

/// What an advert promises: idle workers run the job now, faster hosts
/// finish sooner, cheaper ones cost less, and a Caste host specialised in
/// the job's class (low threshold) answers its stimulus more readily.
fn heuristic(a: &Advert, class: TaskClass) -> f64 {
    let idle = if a.free_slots > 0 { 1.0 } else { 0.3 };
    let speed = (a.fuel_per_sec as f64 / 1e10).clamp(0.01, 100.0);
    let caste = CasteConfig::default();
    let readiness = ResponseThresholds::from_values(&caste, a.thresholds).response(
        &caste,
        class,
        caste.initial,
    );
    idle * speed * readiness / (1.0 + a.price_per_mfuel as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::placement::{Answer, Miss};
    use crate::proto::JobResponse;

    /// A fixed clock: the tests never read the real one.
    const NOW: Millis = 1_800_000_000_000;

    fn advert(price: u64) -> Advert {
        Advert {
            version: crate::proto::VERSION,
            host_key: [0; 32],
            addrs: Vec::new(),
            free_slots: 1,
            workers: 1,
            queue_room: 1,
            fuel_per_sec: 10_000_000_000,
            price_per_mfuel: price,
            max_fuel: u64::MAX,
            max_memory_bytes: u64::MAX,
            roles: Vec::new(),
            region: String::new(),
            thresholds: [0.5; 3],
            relay: None,
            issued_at_ms: 0,
            expires_at_ms: 1,
        }
    }

    fn spec() -> JobSpec {
        JobSpec {
            version: crate::proto::VERSION,
            submitter: [0; 32],
            module_hash: [0; 32],
            module_size: 0,
            input_hash: [0; 32],
            input_size: 0,
            args: Vec::new(),
            fuel: 1,
            memory_bytes: 1,
            timeout_ms: None,
            scratch: false,
            portable: false,
            max_price_per_mfuel: 10,
            nonce: [0; 16],
            expires_at: 0,
            data: Vec::new(),
        }
    }

    fn answer(peer: PeerId, h: u8) -> Answer {
        Answer {
            peer,
            job: crate::proto::SignedJob::sign(
                &spec(),
                &ed25519_dalek::SigningKey::from_bytes(&[7; 32]),
            ),
            addr: None,
            output_hash: [h; 32],
            response: JobResponse::Unknown { job_id: [0; 32] },
        }
    }

    #[test]
    fn caste_specialists_attract_their_class() {
        let (cpu_specialist, generalist) = (PeerId::random(), PeerId::random());
        let mut s = advert(1);
        s.thresholds = [0.05, 0.5, 0.9];
        let hosts = vec![(generalist, advert(1)), (cpu_specialist, s)];
        let mut t = Trails::new();
        let mut cpu_job = spec();
        cpu_job.fuel = 1 << 40;
        let first = |t: &mut Trails, j: &JobSpec| t.rank(hosts.clone(), j, NOW)[0].0;
        assert_eq!(task_class(&cpu_job), TaskClass::Cpu);
        assert_eq!(first(&mut t, &cpu_job), cpu_specialist);
        assert_eq!(task_class(&spec()), TaskClass::Small);
        assert_eq!(first(&mut t, &spec()), generalist);
    }

    #[test]
    fn a_caught_liar_drops_below_a_dearer_honest_host_and_it_persists() {
        let (cheap_liar, dear, dearer) = (PeerId::random(), PeerId::random(), PeerId::random());
        let hosts = vec![
            (dear, advert(2)),
            (cheap_liar, advert(1)),
            (dearer, advert(3)),
        ];
        let mut t = Trails::new();
        // No history: the advert decides, cheapest first.
        let order: Vec<PeerId> = t
            .rank(hosts.clone(), &spec(), NOW)
            .into_iter()
            .map(|x| x.0)
            .collect();
        assert_eq!(order, vec![cheap_liar, dear, dearer]);

        // Two jobs in which the cheap host disagreed with the majority.
        for _ in 0..2 {
            let report = Report {
                answers: vec![answer(dear, 1), answer(dearer, 1), answer(cheap_liar, 2)],
                missing: Vec::new(),
                replacements: 0,
            };
            t.learn(&report, Some([1; 32]), NOW);
        }
        assert!(t.level(&cheap_liar, NOW) < t.level(&dear, NOW));
        let order: Vec<PeerId> = t
            .rank(hosts.clone(), &spec(), NOW)
            .into_iter()
            .map(|x| x.0)
            .collect();
        assert_eq!(order, vec![dear, dearer, cheap_liar]);

        // A host that vanished is punished too.
        t.learn(
            &Report {
                answers: Vec::new(),
                missing: vec![Miss {
                    host: dear.to_string(),
                    error: "connection closed".into(),
                }],
                replacements: 1,
            },
            None,
            NOW,
        );
        assert!(t.level(&dear, NOW) < 1.0);
        // A day later the history has evaporated: nobody is singled out.
        let later = NOW + 24 * 3_600_000;
        assert_eq!(t.level(&cheap_liar, later), t.level(&dear, later));

        // Saved and loaded, the order holds.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trails.json");
        t.save(&path, NOW).unwrap();
        let mut back = Trails::load(&path);
        let order: Vec<PeerId> = back
            .rank(hosts, &spec(), NOW)
            .into_iter()
            .map(|x| x.0)
            .collect();
        assert_eq!(order.last(), Some(&cheap_liar));
        std::fs::write(&path, b"garbage").unwrap();
        assert_eq!(Trails::load(&path).level(&dear, NOW), 1.0);
    }
}
