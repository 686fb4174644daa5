//! `cargo +nightly fuzz run blob_chunk`: the body is `biop2p::fuzzing::blob_chunk`,
//! which `tests/all/fuzz.rs` also runs on stable.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| biop2p::fuzzing::blob_chunk(data));
