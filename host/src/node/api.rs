//! The programmatic form of a host, as the project's design wrote it:
//!
//! ```no_run
//! # async fn f() -> Result<(), Box<dyn std::error::Error>> {
//! use biop2p::{BiologicalRole, Node, NodeConfig};
//! let mut config = NodeConfig::default();
//! config.biological.primary_role = "Caste".to_string();
//! config.resources.cpu_allocation = 0.8;
//! let node = Node::builder()
//!     .with_config(config)
//!     .with_initial_role(BiologicalRole::Caste)
//!     .build()
//!     .await?;
//! node.start().await?;
//! # Ok(()) }
//! ```
//!
//! `build` checks the configuration and loads (or creates) the node's
//! identity, so the peer id is known before anything listens; `start` opens
//! the state, binds the listeners and joins the swarm.

use std::path::PathBuf;

use libp2p::{Multiaddr, PeerId};
use tokio::sync::Mutex;

use super::host::{HostError, HostEvent, HostHandle, HostOptions, spawn_host};
use super::peers::{PeerEntry, read_peers_file};
use super::submit::{Progress, SubmitError, SubmitOptions, Submitted, SubmitterState};
use crate::config::{ConfigError, NodeConfig};
use crate::identity::Identity;
use roles::BiologicalRole;

/// Errors of building and running a [`Node`].
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The data directory or identity could not be set up.
    #[error("data dir {dir}: {source}")]
    DataDir {
        /// The directory.
        dir: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The host failed to start.
    #[error(transparent)]
    Host(#[from] HostError),
    /// `start` was called on a running node.
    #[error("the node is already running")]
    AlreadyStarted,
    /// `submit` without hosts to reach on a node that is not running.
    #[error("the node is not running: start it, or give the submission hosts to reach")]
    NotStarted,
    /// A submission failed.
    #[error(transparent)]
    Submit(#[from] SubmitError),
}

/// Builds a [`Node`].
#[derive(Debug, Clone, Default)]
pub struct NodeBuilder {
    config: NodeConfig,
    role: Option<BiologicalRole>,
    data_dir: Option<PathBuf>,
    listen: Vec<Multiaddr>,
    faulty: super::faulty::Faulty,
}

impl NodeBuilder {
    /// The configuration (what `biop2p.toml` deserialises into).
    pub fn with_config(mut self, config: NodeConfig) -> Self {
        self.config = config;
        self
    }

    /// The role the node starts in; overrides `[biological] primary_role`.
    pub fn with_initial_role(mut self, role: BiologicalRole) -> Self {
        self.role = Some(role);
        self
    }

    /// Where identity, database, blobs and compiled code live (default
    /// `$XDG_DATA_HOME/biop2p/host`).
    pub fn with_data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    /// Listen addresses; overrides the config's.
    pub fn with_listen(mut self, addrs: impl IntoIterator<Item = Multiaddr>) -> Self {
        self.listen = addrs.into_iter().collect();
        self
    }

    /// A peer to join the swarm through, added to `[network] bootstrap`.
    pub fn with_bootstrap(mut self, addr: &Multiaddr) -> Self {
        self.config.network.bootstrap.push(addr.to_string());
        self
    }

    /// Test and demonstration only: the node returns wrong outputs, so
    /// replica checks have something to catch.
    pub fn faulty(mut self, yes: bool) -> Self {
        self.faulty = if yes {
            super::faulty::Faulty::Colluding
        } else {
            super::faulty::Faulty::Honest
        };
        self
    }

    /// Test and demonstration only: how the node lies (a sleeper turns
    /// after some honest jobs).
    pub fn faulty_mode(mut self, mode: super::faulty::Faulty) -> Self {
        self.faulty = mode;
        self
    }

    /// Checks the configuration and loads or creates the identity.
    pub async fn build(self) -> Result<Node, NodeError> {
        let mut config = self.config;
        if let Some(r) = self.role {
            config.biological.primary_role = r.to_string();
        }
        config.validate()?;
        let role: BiologicalRole = config
            .biological
            .primary_role
            .parse()
            .map_err(|e| ConfigError::Invalid(format!("biological.primary_role: {e}")))?;
        let data_dir = match self.data_dir {
            Some(d) => d,
            None => default_data_dir(),
        };
        let id = Identity::load_or_create(&data_dir).map_err(|source| NodeError::DataDir {
            dir: data_dir.clone(),
            source,
        })?;
        Ok(Node {
            config,
            role,
            data_dir,
            listen: self.listen,
            faulty: self.faulty,
            peer_id: id.peer_id,
            handle: Mutex::new(None),
            events: Mutex::new(None),
            addrs: std::sync::Mutex::new(Vec::new()),
            submitter: Mutex::new(None),
        })
    }
}

/// `$XDG_DATA_HOME/biop2p/host` (or `./biop2p-host` without a home).
pub fn default_data_dir() -> PathBuf {
    dirs::data_dir()
        .map(|d| d.join("biop2p").join("host"))
        .unwrap_or_else(|| PathBuf::from("biop2p-host"))
}

/// A host node: lends this machine's CPU to the swarm once started.
pub struct Node {
    config: NodeConfig,
    role: BiologicalRole,
    data_dir: PathBuf,
    listen: Vec<Multiaddr>,
    faulty: super::faulty::Faulty,
    peer_id: PeerId,
    handle: Mutex<Option<HostHandle>>,
    /// Apart from the handle, so waiting for an event never blocks `stop`.
    events: Mutex<Option<tokio::sync::mpsc::Receiver<HostEvent>>>,
    addrs: std::sync::Mutex<Vec<Multiaddr>>,
    /// The submitter side, opened at the first `submit` and kept (its
    /// database can be open once per process); held while a submission
    /// runs.
    submitter: Mutex<Option<SubmitterState>>,
}

/// Where a node keeps its submitter state (its own key: a host and a
/// submitter never share one peer id).
pub const SUBMITTER_DIR: &str = "submitter-state";

impl Node {
    /// A builder with the default configuration.
    pub fn builder() -> NodeBuilder {
        NodeBuilder::default()
    }

    /// Starts the host: state, listeners, discovery, adverts. Returns once
    /// it listens.
    pub async fn start(&self) -> Result<(), NodeError> {
        let mut slot = self.handle.lock().await;
        if slot.is_some() {
            return Err(NodeError::AlreadyStarted);
        }
        let mut h = spawn_host(HostOptions {
            config: self.config.clone(),
            data_dir: self.data_dir.clone(),
            listen: self.listen.clone(),
            faulty: self.faulty,
        })
        .await?;
        *self.addrs.lock().expect("addrs lock") = h.addrs.clone();
        let (_, dummy) = tokio::sync::mpsc::channel(1);
        *self.events.lock().await = Some(std::mem::replace(&mut h.events, dummy));
        *slot = Some(h);
        Ok(())
    }

    /// Stops the host (jobs still running are kept and resume at the next
    /// start). Does nothing if it is not running.
    pub async fn stop(&self) {
        if let Some(h) = self.handle.lock().await.take() {
            h.shutdown().await;
        }
        self.addrs.lock().expect("addrs lock").clear();
    }

    /// The next event of the running host (`None` once stopped).
    pub async fn next_event(&self) -> Option<HostEvent> {
        let mut slot = self.events.lock().await;
        slot.as_mut()?.recv().await
    }

    /// The node's peer id (known from `build` on).
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// Where the running node listens (full multiaddrs; empty if stopped).
    pub fn addrs(&self) -> Vec<Multiaddr> {
        self.addrs.lock().expect("addrs lock").clone()
    }

    /// The role it started in.
    pub fn role(&self) -> BiologicalRole {
        self.role
    }

    /// Its configuration.
    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    /// Its data directory.
    pub fn data_dir(&self) -> &std::path::Path {
        &self.data_dir
    }

    /// Sandbox workers (`cpu_allocation` of the cores, at least one).
    pub fn workers(&self) -> usize {
        self.config.resources.workers()
    }

    /// Other hosts it knows from live adverts (read from the list the
    /// running host keeps; empty before its first second).
    pub fn known_hosts(&self) -> Vec<PeerEntry> {
        read_peers_file(&self.data_dir)
            .map(|v| v.into_iter().filter(|e| !e.is_self).collect())
            .unwrap_or_default()
    }

    /// Submits a job to the swarm and returns its verified answer, through
    /// the same flow as `biop2p submit` ([`super::submit::submit`]): without
    /// `opts.replicas` the trust coordinator decides the replicas. The
    /// submitter has its own key and state in `DATA_DIR/submitter-state`
    /// (jobs, trust, ledger). When `opts.reach` names no hosts and no
    /// bootstrap peers, the swarm is reached through this node itself (its
    /// swarm name; mDNS as its config says), so the node must be running.
    pub async fn submit(
        &self,
        module: Vec<u8>,
        input: Vec<u8>,
        mut opts: SubmitOptions,
        on: &mut (dyn FnMut(Progress) + Send),
    ) -> Result<Submitted, NodeError> {
        if opts.reach.peers.is_empty() && opts.reach.bootstrap.is_empty() {
            let addrs = self.addrs();
            if addrs.is_empty() {
                return Err(NodeError::NotStarted);
            }
            opts.reach.bootstrap = addrs;
            opts.reach.swarm = self.config.network.swarm.clone();
            opts.reach.mdns = self.config.network.mdns;
        }
        // One submission at a time: each runs a coordinator over the one
        // trust state in the store, and two at once would overwrite each
        // other's verdicts.
        let mut slot = self.submitter.lock().await;
        if slot.is_none() {
            *slot = Some(SubmitterState::open(&self.data_dir.join(SUBMITTER_DIR))?);
        }
        let state = slot.as_ref().expect("just opened");
        Ok(super::submit::submit(state, module, input, &opts, on).await?)
    }
}
