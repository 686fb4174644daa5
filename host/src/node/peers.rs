//! The list of known hosts as `biop2p peers` shows it, and the file a
//! running host keeps it in (`DATA_DIR/peers.json`, rewritten each second).

use std::path::Path;

use libp2p::PeerId;
use serde::{Deserialize, Serialize};

use crate::proto::Advert;

/// One known host and its latest advert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerEntry {
    /// Its peer id.
    pub peer_id: String,
    /// Whether this is the host that wrote the list.
    #[serde(rename = "self")]
    pub is_self: bool,
    /// Where it can be dialed.
    pub addrs: Vec<String>,
    /// Idle sandbox workers.
    pub free_slots: u32,
    /// Sandbox workers in all.
    pub workers: u32,
    /// Jobs it would still accept.
    pub queue_room: u32,
    /// Measured fuel per second.
    pub fuel_per_sec: u64,
    /// Price per million fuel.
    pub price_per_mfuel: u64,
    /// Largest fuel budget accepted.
    pub max_fuel: u64,
    /// Largest memory limit accepted.
    pub max_memory_bytes: u64,
    /// Current roles.
    pub roles: Vec<String>,
    /// Region of its address.
    pub region: String,
    /// Caste response thresholds (cpu, memory, small); low = specialised.
    pub thresholds: [f64; 3],
    /// Milliseconds until its advert expires unless renewed.
    pub expires_in_ms: u64,
}

impl PeerEntry {
    /// The entry of `peer`'s advert, as of now.
    pub fn new(peer: &PeerId, a: &Advert, is_self: bool) -> Self {
        PeerEntry {
            peer_id: peer.to_string(),
            is_self,
            addrs: a.addrs.clone(),
            free_slots: a.free_slots,
            workers: a.workers,
            queue_room: a.queue_room,
            fuel_per_sec: a.fuel_per_sec,
            price_per_mfuel: a.price_per_mfuel,
            max_fuel: a.max_fuel,
            max_memory_bytes: a.max_memory_bytes,
            roles: a.roles.clone(),
            region: a.region.clone(),
            thresholds: a.thresholds,
            expires_in_ms: a
                .expires_at_ms
                .saturating_sub(super::host::unix_now_ms().max(a.issued_at_ms)),
        }
    }
}

/// `peers.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PeersFile {
    /// When it was written (Unix ms).
    pub written_at_ms: u64,
    /// This host first, then the hosts it knows.
    pub hosts: Vec<PeerEntry>,
}

/// Reads a running host's list. Entries whose adverts would have expired
/// since the file was written are dropped, so a stopped host's list empties.
pub fn read_peers_file(data_dir: &Path) -> std::io::Result<Vec<PeerEntry>> {
    let path = data_dir.join(super::host::PEERS_FILE);
    let text = std::fs::read(&path)?;
    parse_peers_file(&text, super::host::unix_now_ms()).map_err(std::io::Error::other)
}

/// Parses the bytes of `peers.json` as of `now_ms` (see [`read_peers_file`]).
pub fn parse_peers_file(text: &[u8], now_ms: u64) -> Result<Vec<PeerEntry>, serde_json::Error> {
    let file: PeersFile = serde_json::from_slice(text)?;
    let age = now_ms.saturating_sub(file.written_at_ms);
    Ok(file
        .hosts
        .into_iter()
        .filter(|e| e.expires_in_ms > age)
        .map(|mut e| {
            e.expires_in_ms -= age;
            e
        })
        .collect())
}
