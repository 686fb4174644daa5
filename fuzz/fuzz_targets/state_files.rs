//! `cargo +nightly fuzz run state_files`: the body is `biop2p::fuzzing::state_files`,
//! which `tests/all/fuzz.rs` also runs on stable.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| biop2p::fuzzing::state_files(data));
