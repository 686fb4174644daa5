//! biop2p: a peer-to-peer WebAssembly compute marketplace.
//!
//! This crate is the host: the sandbox that runs one task in a fresh metered
//! wasmtime instance, the wire protocol, the durable stores, and the node
//! (host daemon and submitter client) around them. Decision logic lives in
//! the pure `roles` and `security` crates.

pub mod ai;
pub mod config;
pub mod confine;
pub mod fsutil;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod identity;
pub mod net;
pub mod node;
pub mod proto;
pub mod sandbox;
#[cfg(unix)]
pub mod service;
pub mod store;
pub mod workloads;

pub use config::NodeConfig;
pub use node::{Node, NodeBuilder};
pub use roles::{BiologicalRole, NetworkAddress};
