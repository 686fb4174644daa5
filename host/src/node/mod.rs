//! The node: the host daemon's event loop and the submitter's client, both
//! thin drivers over one swarm each.

pub mod adverts;
mod api;
pub(crate) mod calibration;
pub mod client;
mod client_stream;
pub mod control;
pub mod demo;
pub mod discovery;
pub mod faulty;
mod fetch_auth;
pub mod host;
mod job_streams;
pub mod ledger;
pub mod notebook;
pub mod peers;
pub mod placement;
mod receipts;
pub mod submit;
pub mod submitter;
pub mod trails;
pub mod young;

pub use api::{Node, NodeBuilder, NodeError, SUBMITTER_DIR, default_data_dir};
pub use calibration::open_sandbox;
pub use client::{Client, ClientError, Verified};
pub use control::Control;
pub use host::{HostEvent, HostHandle, HostOptions, spawn_host};
pub use peers::{PeerEntry, read_peers_file};
pub use receipts::{VerifyError, verify_response};
