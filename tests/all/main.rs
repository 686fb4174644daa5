//! The integration tests of biop2p: one binary, one module per area.
//! Real wasmtime, real files; hostile guests are WAT written here.

mod ai;
mod batch;
mod bounds;
mod cli;
mod confine;
mod durability;
mod embed;
mod faults;
mod fuzz;
mod guests;
mod http;
mod ledger;
mod meter;
mod nat;
mod netns;
mod network;
mod replicas;
mod sandbox;
mod swarm;
mod tensor;
mod trust;
mod young;
