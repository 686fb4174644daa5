//! The node's configuration: what `biop2p.toml` deserialises into.
//!
//! Every field has a documented default, so no file is needed; `biop2p init`
//! writes the defaults out with comments. Unknown fields are an error (a typo
//! must not silently fall back to a default), and the schema is versioned.

use serde::{Deserialize, Serialize};

/// Current schema version of `biop2p.toml`.
pub const CONFIG_VERSION: u32 = 1;

/// Errors of loading a configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file is not valid TOML for this schema.
    #[error("invalid config: {0}")]
    Parse(#[from] toml::de::Error),
    /// A value is out of range.
    #[error("invalid config: {0}")]
    Invalid(String),
}

/// The whole configuration of a node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    /// Schema version ([`CONFIG_VERSION`]).
    pub version: u32,
    /// Transports, ports, discovery, connection limits.
    pub network: NetworkConfig,
    /// Roles.
    pub biological: BiologicalConfig,
    /// What the host lends.
    pub resources: ResourceConfig,
    /// Limits on what peers may send.
    pub security: SecurityConfig,
    /// Prices.
    pub market: MarketConfig,
    /// The volunteer's page and `/metrics`.
    pub http: HttpConfig,
    /// When new work is taken (pause, duty cycle, idle, daily caps, memory).
    pub policy: roles::PolicyConfig,
    /// Running unattended (systemd).
    pub service: ServiceConfig,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            version: CONFIG_VERSION,
            network: NetworkConfig::default(),
            biological: BiologicalConfig::default(),
            resources: ResourceConfig::default(),
            security: SecurityConfig::default(),
            market: MarketConfig::default(),
            http: HttpConfig::default(),
            policy: roles::PolicyConfig::default(),
            service: ServiceConfig::default(),
        }
    }
}

/// `[network]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkConfig {
    /// TCP port (0: any free port).
    pub tcp_port: u16,
    /// QUIC (UDP) port (0: any free port).
    pub quic_port: u16,
    /// WebSocket port (0: any free port).
    pub ws_port: u16,
    /// Listen addresses; when empty, all interfaces with all three
    /// transports on the ports above.
    pub listen: Vec<String>,
    /// Find hosts on the LAN by mDNS.
    pub mdns: bool,
    /// Peers to join the swarm through (full multiaddrs with `/p2p/`).
    pub bootstrap: Vec<String>,
    /// Name of the swarm: hosts and submitters only see adverts of their
    /// own swarm, so a test network can share a LAN with the main one.
    pub swarm: String,
    /// Seconds between a host's adverts. An advert lives three intervals,
    /// so a host that stops is forgotten within that time.
    pub advert_interval_secs: u64,
    /// Hosts remembered from adverts (the soonest-expiring go first).
    pub max_known_hosts: usize,
    /// Established connections in total. Each costs a few buffers and a
    /// Yamux session; 256 suits a volunteer machine.
    pub max_connections: u32,
    /// Established connections per peer.
    pub max_connections_per_peer: u32,
    /// Inbound connections from one network prefix (/24 for IPv4, /48 for
    /// IPv6): peer ids cost nothing to make, addresses do, so this is what
    /// bounds one machine or one small network that makes many identities.
    pub max_connections_per_prefix: u32,
    /// Connections being set up at once (handshakes cost CPU: bounding them
    /// bounds what a flood of dials can make us spend).
    pub max_pending: u32,
    /// Seconds a request may take before the requester gives up (a job that
    /// waits for its result included).
    pub request_timeout_secs: u64,
    /// Seconds an idle connection is kept open (dials cost milliseconds;
    /// requests on an open connection, microseconds).
    pub idle_timeout_secs: u64,
    /// `[network.nat]`: reachability, relaying and hole punching.
    pub nat: NatConfig,
}

/// Which addresses a host's adverts carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdvertiseAddrs {
    /// Addresses AutoNAT confirmed reachable, relayed (`/p2p-circuit`)
    /// addresses, and a loopback or private address only while a peer is
    /// connected from that same scope (loopback, or the same private /16 or
    /// /48): what a volunteer behind a home router needs, since a private
    /// address is useless, and slow to fail, for anyone outside its LAN.
    Reachable,
    /// Every listen address, reachable or not (the behaviour before NAT
    /// traversal; for closed test networks).
    All,
}

/// `[network.nat]`: how a host learns whether it can be dialed, relays for
/// others when it can, and is reached through relays and hole punching
/// when it cannot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatConfig {
    /// What adverts carry.
    pub advertise: AdvertiseAddrs,
    /// Serve AutoNAT v2 dial-back checks for other hosts (each check costs
    /// one dial; the protocol makes a client send more bytes than the check
    /// costs, so it is no amplifier).
    pub autonat_server: bool,
    /// Addresses this host is known to be reachable at (multiaddrs, e.g.
    /// `/ip4/203.0.113.7/udp/7450/quic-v1`), taken as confirmed at start:
    /// for a bootstrap or relay host with a public IP. AutoNAT needs another
    /// host to dial it back, and the first host of a swarm has nobody yet;
    /// without this it would stay `unknown` and offer no relaying until a
    /// second public host joined. Default: none (AutoNAT decides).
    pub external_addrs: Vec<String>,
    /// Offer circuit relay v2 to others once AutoNAT confirmed this host
    /// publicly reachable (never before: a relay nobody can reach is
    /// useless). Bounded by the `relay_*` limits below.
    pub relay_server: bool,
    /// Reservations held for others at once (each is a slot a NATed host
    /// keeps open through us).
    pub relay_max_reservations: usize,
    /// Reservations one peer may hold at once (at least 1).
    pub relay_max_reservations_per_peer: usize,
    /// Seconds a reservation lasts before it must be renewed.
    pub relay_reservation_secs: u64,
    /// Relayed connections (circuits) at once, in all.
    pub relay_max_circuits: usize,
    /// Circuits one peer may be part of at once (as source or
    /// destination); a circuit it asks for past that is refused.
    pub relay_max_circuits_per_peer: usize,
    /// Seconds a circuit may last; then the relay closes it.
    pub relay_circuit_secs: u64,
    /// Bytes a circuit may carry, both ways together; then the relay closes
    /// it. This bounds what relaying costs a volunteer's uplink.
    pub relay_circuit_bytes: u64,
    /// Relays a host behind NAT reserves a slot on (picked among its
    /// bootstrap peers and connected hosts that offer relaying); 0: none.
    pub relays: usize,
    /// Largest job (module plus input bytes) a host takes from a submitter
    /// it reaches only through a relay: relays carry small jobs, never
    /// large blobs. Larger ones are refused `too_large`, saying why.
    pub max_relayed_job_bytes: u64,
    /// Seconds a submitter that reached a host through a relay waits for
    /// hole punching (DCUtR) to give a direct connection before it sends
    /// the job through the relay.
    pub hole_punch_secs: u64,
}

impl Default for NatConfig {
    fn default() -> Self {
        NatConfig {
            advertise: AdvertiseAddrs::Reachable,
            external_addrs: Vec::new(),
            autonat_server: true,
            relay_server: true,
            relay_max_reservations: 32,
            relay_max_reservations_per_peer: 1,
            relay_reservation_secs: 3600,
            relay_max_circuits: 16,
            relay_max_circuits_per_peer: 4,
            relay_circuit_secs: 120,
            relay_circuit_bytes: 1 << 20,
            relays: 2,
            max_relayed_job_bytes: 256 << 10,
            hole_punch_secs: 5,
        }
    }
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            tcp_port: 7450,
            quic_port: 7450,
            ws_port: 7451,
            listen: Vec::new(),
            mdns: true,
            bootstrap: Vec::new(),
            swarm: "main".into(),
            advert_interval_secs: 5,
            max_known_hosts: 1024,
            max_connections: 256,
            max_connections_per_peer: 4,
            max_connections_per_prefix: 64,
            max_pending: 64,
            request_timeout_secs: 600,
            idle_timeout_secs: 120,
            nat: NatConfig::default(),
        }
    }
}

impl NetworkConfig {
    /// The defaults without LAN discovery: for a client that dials the
    /// hosts it was given and should not go looking for others.
    pub fn direct() -> Self {
        NetworkConfig {
            mdns: false,
            ..NetworkConfig::default()
        }
    }
}

/// `[biological]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BiologicalConfig {
    /// The role this node starts in (see `biop2p roles`).
    pub primary_role: String,
    /// The node's place in the hierarchy, `region.cluster.tier`.
    pub address: String,
    /// When a host changes role live: Young to Caste after `young_until`
    /// tasks, Havoc while its swarm is in crisis (`[biological.switch]`,
    /// with `havoc` inside it).
    pub switch: roles::HostRoleConfig,
}

impl Default for BiologicalConfig {
    fn default() -> Self {
        BiologicalConfig {
            primary_role: "Young".into(),
            address: "001.001.1".into(),
            switch: roles::HostRoleConfig::default(),
        }
    }
}

/// `[resources]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResourceConfig {
    /// Fraction of this machine's cores lent to sandboxes (0 < x ≤ 1); the
    /// worker pool has `ceil(cores × cpu_allocation)` threads.
    pub cpu_allocation: f64,
    /// Largest fuel budget a job may ask for.
    pub max_fuel: u64,
    /// Largest memory limit a job may ask for, in bytes.
    pub max_memory_bytes: u64,
    /// Largest module or input, in bytes.
    pub max_blob_bytes: u64,
    /// Accepted but unfinished jobs; beyond it new jobs are refused `busy`.
    pub max_queue: usize,
    /// Accepted or fetching jobs of one submitter: one peer cannot take
    /// the whole queue from the others.
    pub max_queue_per_peer: usize,
    /// Bytes held in memory for jobs (inputs waiting to run, blobs being
    /// fetched), all submitters together: memory is bounded by bytes, not
    /// only by the count of jobs.
    pub max_held_bytes: u64,
    /// The same, for one submitter. A job that alone needs more is refused
    /// `too_large`; one that would take a submitter past it, `busy`.
    pub max_held_bytes_per_peer: u64,
    /// Bytes of cached blobs kept on disk (least recently used out first).
    pub blob_cache_bytes: u64,
    /// Largest output a job may produce, in bytes.
    pub max_output_bytes: u64,
}

impl Default for ResourceConfig {
    fn default() -> Self {
        ResourceConfig {
            cpu_allocation: 1.0,
            max_fuel: 1_000_000_000_000,
            max_memory_bytes: 1 << 30,
            max_blob_bytes: 256 << 20,
            max_queue: 1024,
            max_queue_per_peer: 256,
            max_held_bytes: 1 << 30,
            max_held_bytes_per_peer: 512 << 20,
            blob_cache_bytes: 1 << 30,
            max_output_bytes: 16 << 20,
        }
    }
}

impl ResourceConfig {
    /// Worker threads for sandboxes.
    pub fn workers(&self) -> usize {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        ((cores as f64 * self.cpu_allocation).ceil() as usize).clamp(1, cores)
    }
}

/// `[security]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecurityConfig {
    /// Longest a job may be valid for, in seconds; nonces are kept this
    /// long, so this bounds the replay table.
    pub max_job_lifetime_secs: u64,
    /// Clock skew tolerated between submitter and host, in seconds.
    pub clock_skew_secs: u64,
    /// Blob bytes a job may carry inline in its request.
    pub max_inline_bytes: usize,
    /// Status and result requests one peer may make per second; more are
    /// refused `busy` (each costs a database read).
    pub max_fetches_per_sec: u32,
    /// A job's blobs must arrive within this many seconds plus one second
    /// per `fetch_min_bytes_per_sec` bytes, or the job fails with
    /// `blob_unavailable` and everything it held is freed: a submitter
    /// that trickles bytes cannot hold a queue slot for long.
    pub fetch_deadline_secs: u64,
    /// The slowest blob transfer a host waits for (see
    /// `fetch_deadline_secs`).
    pub fetch_min_bytes_per_sec: u64,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        SecurityConfig {
            max_job_lifetime_secs: 24 * 3600,
            clock_skew_secs: 60,
            max_inline_bytes: 1 << 20,
            max_fetches_per_sec: 1000,
            fetch_deadline_secs: 30,
            fetch_min_bytes_per_sec: 1 << 20,
        }
    }
}

/// `[market]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MarketConfig {
    /// This host's price per million fuel. Jobs with a lower ceiling are
    /// refused `price_too_low`.
    pub price_per_mfuel: u64,
    /// Unaccepted work (in market units) this host carries for a submitter
    /// with no settled history: small, so a fresh key (a Sybil) gets little
    /// free work. A job whose most possible cost (fuel cap × price) does
    /// not fit is refused `credit_limit`.
    pub credit_newcomer: u64,
    /// Each settled unit raises a submitter's credit by this many percent.
    pub credit_growth_percent: u64,
    /// Credit never exceeds this.
    pub credit_max: u64,
    /// Debit notes: a job whose fuel cap is above this many fuel is paid
    /// as it runs, one signed note every this many fuel; the worker pauses
    /// at each until the submitter accepts it, so this host works at most
    /// one note's worth on credit. 0: no notes. Components only (a core
    /// module runs its whole budget at once).
    pub debit_note_fuel: u64,
    /// How long a paused worker waits for a note's acceptance before the
    /// job stops `unpaid`.
    pub debit_note_timeout_secs: u64,
}

impl Default for MarketConfig {
    fn default() -> Self {
        let c = security::settlement::CreditPolicy::default();
        MarketConfig {
            price_per_mfuel: 1,
            credit_newcomer: c.newcomer_limit,
            credit_growth_percent: c.growth_percent,
            credit_max: c.max_limit,
            debit_note_fuel: 10_000_000_000,
            debit_note_timeout_secs: 60,
        }
    }
}

impl MarketConfig {
    /// The credit policy these settings make.
    pub fn credit(&self) -> security::settlement::CreditPolicy {
        security::settlement::CreditPolicy {
            newcomer_limit: self.credit_newcomer,
            growth_percent: self.credit_growth_percent,
            max_limit: self.credit_max,
        }
    }
}

/// `[http]`
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Where the status page, `/metrics` and `/api` listen, e.g.
    /// `127.0.0.1:7452`; empty = off. Bind beyond loopback only on purpose:
    /// the page shows who this host serves.
    pub listen: String,
}

/// `[service]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceConfig {
    /// On SIGTERM, seconds running tasks get to finish before the host
    /// exits anyway (the unfinished ones run again at the next start).
    /// systemd's `TimeoutStopSec` must be longer.
    pub stop_grace_secs: u64,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            stop_grace_secs: 30,
        }
    }
}

impl NodeConfig {
    /// Parses and validates a TOML document.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let c: NodeConfig = toml::from_str(text)?;
        c.validate()?;
        Ok(c)
    }

    /// Checks ranges.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.version != CONFIG_VERSION {
            return Err(ConfigError::Invalid(format!(
                "version {} (this build reads version {CONFIG_VERSION})",
                self.version
            )));
        }
        let cpu = self.resources.cpu_allocation;
        if !(cpu > 0.0 && cpu <= 1.0) {
            return Err(ConfigError::Invalid(format!(
                "resources.cpu_allocation {cpu} is not in (0, 1]"
            )));
        }
        let net = &self.network;
        if !(1..=300).contains(&net.advert_interval_secs) {
            return Err(ConfigError::Invalid(format!(
                "network.advert_interval_secs {} is not in 1..=300",
                net.advert_interval_secs
            )));
        }
        if net.max_known_hosts == 0 || net.max_known_hosts > 100_000 {
            return Err(ConfigError::Invalid(
                "network.max_known_hosts must be in 1..=100000".into(),
            ));
        }
        if net.swarm.is_empty()
            || net.swarm.len() > 64
            || !net
                .swarm
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        {
            return Err(ConfigError::Invalid(format!(
                "network.swarm {:?}: 1-64 characters of [A-Za-z0-9._-]",
                net.swarm
            )));
        }
        let nat = &net.nat;
        if nat.relay_max_circuits_per_peer == 0
            || nat.relay_max_reservations_per_peer == 0
            || nat.relay_circuit_secs == 0
            || nat.relay_reservation_secs == 0
            || nat.relay_circuit_bytes < 1024
        {
            return Err(ConfigError::Invalid(
                "network.nat: relay_max_circuits_per_peer, relay_max_reservations_per_peer, relay_circuit_secs and relay_reservation_secs must be at least 1, relay_circuit_bytes at least 1024".into(),
            ));
        }
        if nat.max_relayed_job_bytes >= nat.relay_circuit_bytes {
            return Err(ConfigError::Invalid(format!(
                "network.nat.max_relayed_job_bytes {} must be under relay_circuit_bytes {} (a relayed job must fit its circuit)",
                nat.max_relayed_job_bytes, nat.relay_circuit_bytes
            )));
        }
        if !(1..=60).contains(&nat.hole_punch_secs) {
            return Err(ConfigError::Invalid(format!(
                "network.nat.hole_punch_secs {} is not in 1..=60",
                nat.hole_punch_secs
            )));
        }
        if nat.external_addrs.len() > 16 {
            return Err(ConfigError::Invalid(format!(
                "network.nat.external_addrs has {} addresses, at most 16",
                nat.external_addrs.len()
            )));
        }
        for a in &nat.external_addrs {
            let m = a.parse::<libp2p::Multiaddr>().map_err(|e| {
                ConfigError::Invalid(format!("network.nat.external_addrs {a:?}: {e}"))
            })?;
            if crate::net::reachability::is_relayed(&m) {
                return Err(ConfigError::Invalid(format!(
                    "network.nat.external_addrs {a:?}: a relayed address is not this host's own"
                )));
            }
        }
        for b in &net.bootstrap {
            b.parse::<libp2p::Multiaddr>()
                .map_err(|e| ConfigError::Invalid(format!("network.bootstrap {b:?}: {e}")))?;
        }
        if self.resources.max_queue == 0 || self.resources.max_queue_per_peer == 0 {
            return Err(ConfigError::Invalid(
                "resources.max_queue and max_queue_per_peer must be at least 1".into(),
            ));
        }
        if self.security.fetch_min_bytes_per_sec == 0 || self.security.max_fetches_per_sec == 0 {
            return Err(ConfigError::Invalid(
                "security.fetch_min_bytes_per_sec and max_fetches_per_sec must be at least 1"
                    .into(),
            ));
        }
        self.policy.validate().map_err(ConfigError::Invalid)?;
        if !self.http.listen.is_empty() {
            self.http
                .listen
                .parse::<std::net::SocketAddr>()
                .map_err(|e| {
                    ConfigError::Invalid(format!("http.listen {:?}: {e}", self.http.listen))
                })?;
        }
        self.biological
            .primary_role
            .parse::<roles::BiologicalRole>()
            .map_err(|e| ConfigError::Invalid(format!("biological.primary_role: {e}")))?;
        self.biological
            .address
            .parse::<roles::NetworkAddress>()
            .map_err(|e| ConfigError::Invalid(format!("biological.address: {e}")))?;
        Ok(())
    }
}

/// The commented default file `biop2p init` writes.
pub const DEFAULT_TOML: &str = r#"# biop2p host configuration. Every value shown is the default.
version = 1

[network]
# Ports of the three transports (0 = any free port).
tcp_port = 7450
quic_port = 7450          # UDP
ws_port = 7451
# Explicit listen multiaddrs; empty = all interfaces, all three transports.
listen = []
# Find hosts on the LAN.
mdns = true
# Peers to join through, e.g. "/ip4/203.0.113.7/tcp/7450/p2p/12D3KooW...".
bootstrap = []
# Swarm name: only adverts of the same swarm are seen.
swarm = "main"
# Seconds between adverts; an advert expires after three intervals.
advert_interval_secs = 5
# Hosts remembered from adverts.
max_known_hosts = 1024
# Connection limits: total, per peer, and handshakes in progress.
max_connections = 256
max_connections_per_peer = 4
# Inbound connections from one /24 (IPv4) or /48 (IPv6).
max_connections_per_prefix = 64
max_pending = 64
# A request (including a job waiting for its result) gives up after this.
request_timeout_secs = 600
# Idle connections are kept this long (dials cost milliseconds).
idle_timeout_secs = 120

[network.nat]
# What adverts carry: "reachable" (addresses AutoNAT confirmed, relayed
# addresses, and loopback/private ones only to peers in the same scope)
# or "all" (every listen address).
advertise = "reachable"
# Addresses this host is known to be reachable at (a relay or bootstrap host
# with a public IP, e.g. "/ip4/203.0.113.7/udp/7450/quic-v1"), confirmed at
# start so it relays at once; [] = AutoNAT decides.
external_addrs = []
# Answer other hosts' AutoNAT dial-back checks.
autonat_server = true
# Relay for hosts behind NAT once AutoNAT confirmed this host reachable,
# within these limits (all advertised): reservations in all and per peer,
# how long one lasts, circuits in all and per peer, and how long and how
# many bytes (both ways together) one circuit may carry.
relay_server = true
relay_max_reservations = 32
relay_max_reservations_per_peer = 1
relay_reservation_secs = 3600
relay_max_circuits = 16
relay_max_circuits_per_peer = 4
relay_circuit_secs = 120
relay_circuit_bytes = 1048576
# Behind NAT: relays to reserve a slot on (0 = none).
relays = 2
# Largest job (module + input bytes) taken from a submitter reached only
# through a relay; larger ones are refused as too_large.
max_relayed_job_bytes = 262144
# A submitter that reached a host through a relay waits this long for hole
# punching before it sends the job through the relay.
hole_punch_secs = 5

[biological]
# Starting role: Young, Caste, Havoc, Thermal, Memory, Trust, Alpha, Bravo, Super.
primary_role = "Young"
# Place in the hierarchy: region.cluster.tier.
address = "001.001.1"

[biological.switch]
# Tasks a Young host finishes before it becomes Caste.
young_until = 50

[biological.switch.havoc]
# The host turns Havoc (thresholds at the floor; sheds new work past
# shed_backlog_per_slot) when lost_fraction of its known hosts stop
# advertising within window_ms, when error_rate of its last results (10 at
# least) failed on its side, or when its queue surges surge_ratio over its
# average (from surge_min_depth); it hands back after calm_ms of calm.
window_ms = 2000
lost_fraction = 0.15
surge_ratio = 3.0
surge_min_depth = 32
error_rate = 0.25
calm_ms = 3000
shed_backlog_per_slot = 2.0
normal_grace_ms = 2000

[resources]
# Fraction of the cores lent to sandboxes.
cpu_allocation = 1.0
# Largest fuel budget and memory limit a job may ask for.
max_fuel = 1000000000000
max_memory_bytes = 1073741824
# Largest module or input, and largest output.
max_blob_bytes = 268435456
max_output_bytes = 16777216
# Accepted but unfinished jobs; more are refused as busy.
max_queue = 1024
# Of those, jobs one submitter may have; and bytes held in memory for jobs
# (inputs waiting to run, blobs being fetched), in all and per submitter.
max_queue_per_peer = 256
max_held_bytes = 1073741824
max_held_bytes_per_peer = 536870912
# Disk kept for cached modules and inputs.
blob_cache_bytes = 1073741824

[security]
# Jobs may be valid for at most this long (bounds the replay table).
max_job_lifetime_secs = 86400
clock_skew_secs = 60
# Blob bytes a submitter may send inline with a job.
max_inline_bytes = 1048576
# Status and result requests per second one peer may make.
max_fetches_per_sec = 1000
# A job's blobs must arrive within fetch_deadline_secs plus a second per
# fetch_min_bytes_per_sec bytes, or it fails with blob_unavailable.
fetch_deadline_secs = 30
fetch_min_bytes_per_sec = 1048576

[market]
# Price per million fuel; jobs whose ceiling is lower are refused.
price_per_mfuel = 1
# Credit per submitter: unaccepted work carried for a newcomer (market
# units), growth per settled unit (percent), and the ceiling. A job whose
# fuel cap x price does not fit is refused credit_limit.
credit_newcomer = 1000000
credit_growth_percent = 100
credit_max = 1000000000000

[http]
# The volunteer's status page, /metrics and /api, e.g. "127.0.0.1:7452";
# empty = off. The pause and policy controls need DATA_DIR/http.token.
listen = ""

[policy]
# Share of each period during which new work is taken (1.0 = always).
duty_cycle = 1.0
duty_period_secs = 60
# Take work only while the 1-minute load average (minus this host's own
# tasks) is below this; 0 = off. Checked every load_check_secs.
max_load_avg = 0.0
load_check_secs = 10
# Per UTC day: fuel and seconds of task time lent; 0 = no cap.
daily_fuel_cap = 0
daily_time_cap_secs = 0
# Memory limits of all unfinished tasks together, in bytes; 0 = no cap.
memory_cap_bytes = 0

[service]
# On SIGTERM, running tasks get this long to finish.
stop_grace_secs = 30
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_file_is_the_default_config() {
        assert_eq!(
            NodeConfig::from_toml(DEFAULT_TOML).unwrap(),
            NodeConfig::default()
        );
    }

    #[test]
    fn unknown_fields_and_bad_values_are_errors() {
        assert!(NodeConfig::from_toml("[network]\ntcp_prot = 1\n").is_err());
        assert!(NodeConfig::from_toml("[resources]\ncpu_allocation = 1.5\n").is_err());
        assert!(NodeConfig::from_toml("[biological]\nprimary_role = \"Queen\"\n").is_err());
        assert!(NodeConfig::from_toml("version = 2\n").is_err());
        let c = NodeConfig::from_toml("[market]\nprice_per_mfuel = 9\n").unwrap();
        assert_eq!(c.market.price_per_mfuel, 9);
    }

    #[test]
    fn external_addrs_must_be_own_direct_multiaddrs() {
        let ok = "[network.nat]\nexternal_addrs = [\"/ip4/198.51.100.7/udp/7450/quic-v1\"]\n";
        let c = NodeConfig::from_toml(ok).unwrap();
        assert_eq!(c.network.nat.external_addrs.len(), 1);
        let bad = "[network.nat]\nexternal_addrs = [\"198.51.100.7:7450\"]\n";
        assert!(NodeConfig::from_toml(bad).is_err());
        let relayed = "[network.nat]\nexternal_addrs = [\"/ip4/198.51.100.7/udp/7450/quic-v1/p2p/12D3KooWPbRHQz49xwQNqZ4QBjZWg5W2McJGAeDMugMJJ8mv5RP7/p2p-circuit\"]\n";
        let e = NodeConfig::from_toml(relayed).unwrap_err().to_string();
        assert!(e.contains("relayed"), "{e}");
        let many = format!(
            "[network.nat]\nexternal_addrs = [{}]\n",
            vec!["\"/ip4/198.51.100.7/tcp/7450\""; 17].join(",")
        );
        assert!(NodeConfig::from_toml(&many).is_err());
    }
}
