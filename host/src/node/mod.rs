//! The node: the host daemon's event loop and the submitter's client, both
//! thin drivers over one swarm each.

mod calibration;
pub mod client;
pub mod host;
mod receipts;

pub use calibration::open_sandbox;
pub use client::{Client, ClientError, Verified};
pub use host::{HostEvent, HostHandle, HostOptions, spawn_host};
pub use receipts::{VerifyError, verify_response};
