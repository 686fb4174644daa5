//! `cargo +nightly fuzz run job_stream`: the body is `biop2p::fuzzing::job_stream`,
//! which `tests/all/fuzz.rs` also runs on stable.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| biop2p::fuzzing::job_stream(data));
