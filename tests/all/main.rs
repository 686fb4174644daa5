//! The integration tests of biop2p: one binary, one module per area.
//! Real wasmtime, real files; hostile guests are WAT written here.

mod cli;
mod confine;
mod durability;
mod guests;
mod http;
mod meter;
mod network;
mod replicas;
mod sandbox;
mod swarm;
