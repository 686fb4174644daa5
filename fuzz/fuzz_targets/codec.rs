//! `cargo +nightly fuzz run codec`: the body is `biop2p::fuzzing::codec`,
//! which `tests/all/fuzz.rs` also runs on stable.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| biop2p::fuzzing::codec(data));
