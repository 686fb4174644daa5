//! The advertiser: what this host offers (its signed advert, with its Caste
//! thresholds), when to publish it, and `peers.json` for `biop2p peers`.
//!
//! Building an advert is cheap and needs the loop's counters, so it is built
//! here on the loop; writing `peers.json` (serialising up to
//! `max_known_hosts` entries, a file write and a rename) runs on the
//! blocking pool, one write at a time, so the swarm task never waits on the
//! disk. A write still running when the next is due is skipped, not queued:
//! the file is a snapshot and the next one supersedes it.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use libp2p::{Multiaddr, PeerId, Swarm};

use super::unix_now_ms;
use crate::config::NodeConfig;
use crate::identity::Identity;
use crate::net::Behaviour;
use crate::node::discovery::Discovery;
use crate::node::peers::{PeerEntry, PeersFile};
use crate::proto::{self, Advert, SignedAdvert};

/// Where a running host lists the hosts it knows (for `biop2p peers`).
pub const PEERS_FILE: &str = "peers.json";
/// Adverts are published at most this often, even when peers keep joining
/// (each joining peer asks for one, so a newcomer need not wait a whole
/// interval).
pub(super) const MIN_ADVERT_GAP: Duration = Duration::from_millis(250);
/// How often the list of known hosts is rewritten.
const PEERS_FILE_EVERY: Duration = Duration::from_secs(1);

/// The loop's counters an advert reports.
pub(super) struct Load {
    /// Sandbox workers in all.
    pub workers: u32,
    /// Jobs in a sandbox now.
    pub running: usize,
    /// Accepted and unfinished jobs.
    pub queued: usize,
    /// Whether the host takes new work at all now.
    pub open: bool,
}

pub(super) struct Advertiser {
    id: Identity,
    cfg: NodeConfig,
    fuel_per_sec: u64,
    /// Where this host listens (full multiaddrs), relayed addresses too.
    pub listen_addrs: Vec<Multiaddr>,
    /// The response thresholds a Caste host learns: each task done lowers
    /// its class's threshold, so the host specialises, and its adverts say
    /// so. Learned only while the host is Caste.
    pub caste: roles::ResponseThresholds,
    /// The role now (Young, Caste, Havoc...) and when it changes.
    pub role: roles::HostRole,
    /// What its adverts carry (chosen from `listen_addrs` by the NAT
    /// owner: reachable addresses only, see `[network.nat] advertise`).
    pub advertised: Vec<Multiaddr>,
    /// The relay limits adverts state while this host relays (set by the
    /// NAT owner once AutoNAT confirmed it reachable).
    pub relay_offer: Option<proto::RelayOffer>,
    last_advert: Option<Instant>,
    last_peers_file: Option<Instant>,
    /// A peer subscribed since the last advert: publish soon.
    wanted: bool,
    peers_file: PathBuf,
    writing: Option<tokio::task::JoinHandle<()>>,
}

impl Advertiser {
    pub fn new(
        id: Identity,
        cfg: NodeConfig,
        fuel_per_sec: u64,
        listen_addrs: Vec<Multiaddr>,
        peers_file: PathBuf,
    ) -> Self {
        let role: roles::BiologicalRole = cfg
            .biological
            .primary_role
            .parse()
            .unwrap_or(roles::BiologicalRole::Young);
        Advertiser {
            caste: roles::ResponseThresholds::new(&roles::CasteConfig::default()),
            role: roles::HostRole::new(cfg.biological.switch.clone(), role),
            id,
            cfg,
            fuel_per_sec,
            listen_addrs,
            advertised: Vec::new(),
            relay_offer: None,
            last_advert: None,
            last_peers_file: None,
            wanted: true,
            peers_file,
            writing: None,
        }
    }

    /// What this host offers now.
    pub fn advert(&self, load: &Load) -> Advert {
        let now = unix_now_ms();
        let ttl = 3 * 1000 * self.cfg.network.advert_interval_secs;
        let (free_slots, queue_room) = if load.open {
            (
                load.workers.saturating_sub(load.running as u32),
                self.cfg.resources.max_queue.saturating_sub(load.queued) as u32,
            )
        } else {
            (0, 0)
        };
        Advert {
            version: proto::VERSION,
            host_key: self.id.public_key(),
            addrs: self
                .advertised
                .iter()
                .take(proto::MAX_ADVERT_ADDRS)
                .map(|a| a.to_string())
                .collect(),
            free_slots,
            workers: load.workers,
            queue_room,
            fuel_per_sec: self.fuel_per_sec,
            price_per_mfuel: self.cfg.market.price_per_mfuel,
            max_fuel: self.cfg.resources.max_fuel,
            max_memory_bytes: self.cfg.resources.max_memory_bytes,
            roles: vec![role_name(self.role.role())],
            region: proto::region_of(&self.cfg.biological.address),
            thresholds: self
                .role
                .thresholds(Some(&self.caste), &roles::CasteConfig::default()),
            issued_at_ms: now,
            expires_at_ms: now + ttl,
            relay: self.relay_offer,
        }
    }

    /// This host's role and Caste thresholds, as its advert says them.
    pub fn role_and_thresholds(&self) -> (String, [f64; 3]) {
        (
            role_name(self.role.role()),
            self.role
                .thresholds(Some(&self.caste), &roles::CasteConfig::default()),
        )
    }

    /// A task finished: a Caste host learns from it, and a Young host may
    /// have done enough to become Caste.
    pub fn on_task_done(
        &mut self,
        class: Option<roles::TaskClass>,
        ok: bool,
    ) -> Option<roles::RoleSwitch> {
        if let Some(class) = class
            && self.role.role() == roles::BiologicalRole::Caste
        {
            self.caste
                .on_task_done(&roles::CasteConfig::default(), class);
        }
        let sw = self.role.on_task_done(unix_now_ms(), ok);
        if sw.is_some() {
            self.wanted = true;
        }
        sw
    }

    /// What the host observes each tick: the hosts whose adverts stopped
    /// (`lost`, from the table's evaporation), how many are known, and its
    /// backlog. A crisis (Havoc) or its end is advertised at once.
    pub fn observe(
        &mut self,
        lost: &[PeerId],
        known: usize,
        load: &Load,
    ) -> Vec<roles::RoleSwitch> {
        let now = unix_now_ms();
        let lost: Vec<roles::NodeId> = lost.iter().map(node_id).collect();
        let out: Vec<_> = [
            self.role.on_hosts(now, &lost, known as u32),
            self.role.on_tick(now, load.queued as u32),
        ]
        .into_iter()
        .flatten()
        .collect();
        if !out.is_empty() {
            self.wanted = true;
        }
        out
    }

    /// A newcomer subscribed: publish soon rather than at the next interval.
    pub fn want(&mut self) {
        self.wanted = true;
    }

    /// Publishes the advert if one is wanted (or the interval is over) and
    /// the last is at least [`MIN_ADVERT_GAP`] old.
    pub fn maybe_advertise(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        discovery: &Discovery,
        load: &Load,
    ) {
        let interval = Duration::from_secs(self.cfg.network.advert_interval_secs);
        if self.last_advert.is_none_or(|t| t.elapsed() >= interval) {
            self.wanted = true;
        }
        if !self.wanted
            || self
                .last_advert
                .is_some_and(|t| t.elapsed() < MIN_ADVERT_GAP)
        {
            return;
        }
        if self.advertised.is_empty() {
            // Nobody could dial an advert without an address (a host behind
            // NAT before its relay reservation holds), and a submitter that
            // picked it would fail at once: held back, and published as soon
            // as there is an address to carry (`wanted` stays set).
            return;
        }
        let signed = SignedAdvert::sign(&self.advert(load), &self.id.signing);
        discovery.publish(swarm, &signed);
        self.last_advert = Some(Instant::now());
        self.wanted = false;
    }

    /// Rewrites `peers.json` if it is due (or `now_changed`), off the loop.
    pub fn maybe_write_peers(&mut self, discovery: &Discovery, load: &Load, now_changed: bool) {
        let due = self
            .last_peers_file
            .is_none_or(|t| t.elapsed() >= PEERS_FILE_EVERY);
        if !(due || now_changed) {
            return;
        }
        if self.writing.as_ref().is_some_and(|h| !h.is_finished()) {
            return;
        }
        let file = self.peers(discovery, load);
        let path = self.peers_file.clone();
        self.last_peers_file = Some(Instant::now());
        self.writing = Some(tokio::task::spawn_blocking(move || {
            if let Err(e) = write_peers_file(&path, &file) {
                tracing::warn!(error = %e, "cannot write {}", path.display());
            }
        }));
    }

    fn peers(&self, discovery: &Discovery, load: &Load) -> PeersFile {
        let me: PeerId = self.id.peer_id;
        let mut hosts = vec![PeerEntry::new(&me, &self.advert(load), true)];
        let mut known = discovery.live();
        known.sort_by_key(|(p, _)| p.to_bytes());
        let now = Instant::now();
        hosts.extend(known.iter().map(|(p, a)| {
            let mut e = PeerEntry::new(p, a, false);
            if let Some(left) = discovery.table.expires_in(p, now) {
                e.expires_in_ms = left.as_millis() as u64;
            }
            e
        }));
        PeersFile {
            written_at_ms: unix_now_ms(),
            hosts,
        }
    }

    /// Waits for a `peers.json` write in progress (at shutdown, so no write
    /// outlives the host).
    pub async fn finish(self) {
        if let Some(h) = self.writing {
            let _ = h.await;
        }
    }
}

/// A role as adverts and events name it: capitalised, as `primary_role`
/// is written (`Young`, `Caste`, `Havoc`).
pub(super) fn role_name(r: roles::BiologicalRole) -> String {
    let n = r.name();
    let mut c = n.chars();
    c.next()
        .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
        .unwrap_or_default()
}

/// The roles crate's compact id of a peer (the first four bytes of a hash
/// of its id: a collision only merges two hosts in the loss count).
fn node_id(p: &PeerId) -> roles::NodeId {
    let h = blake3::hash(&p.to_bytes());
    let b = h.as_bytes();
    roles::NodeId(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Writes the list atomically (temporary file, then rename).
fn write_peers_file(path: &std::path::Path, file: &PeersFile) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(
        &tmp,
        serde_json::to_vec_pretty(file).map_err(std::io::Error::other)?,
    )?;
    std::fs::rename(&tmp, path)
}
