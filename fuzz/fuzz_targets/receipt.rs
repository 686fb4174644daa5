//! `cargo +nightly fuzz run receipt`: the body is `biop2p::fuzzing::receipt`,
//! which `tests/all/fuzz.rs` also runs on stable.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| biop2p::fuzzing::receipt(data));
