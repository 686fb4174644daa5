//! biop2p: a peer-to-peer WebAssembly compute marketplace.
//!
//! This crate is the host: the sandbox that runs one task in a fresh metered
//! wasmtime instance, and (in later modules) the network node around it.
//! Decision logic lives in the pure `roles` and `security` crates.

pub mod fsutil;
pub mod sandbox;
pub mod workloads;
