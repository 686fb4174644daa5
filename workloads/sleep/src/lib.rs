//! A workload that sleeps, to show (and test) that a guest's time is
//! virtual: the host answers a sleep at once and moves the guest's clocks
//! forward instead, so a sleeping guest cannot hold a worker for real time,
//! and replicas see the same clock readings.
//!
//! Input: seconds to sleep, as ASCII (empty means 1). Output:
//! `slept N.NNN s` measured with `std::time::Instant` inside the guest.
//!
//! Build: `cargo build --release --target wasm32-wasip2 -p wl-sleep`.

use std::time::{Duration, Instant};

fn sleep(input: Vec<u8>) -> Result<Vec<u8>, String> {
    let text = String::from_utf8(input).map_err(|_| "input must be ASCII seconds".to_string())?;
    let secs: f64 = match text.trim() {
        "" => 1.0,
        t => t
            .parse()
            .map_err(|_| format!("not a number of seconds: {t:?}"))?,
    };
    if !(secs.is_finite() && (0.0..=1e9).contains(&secs)) {
        return Err(format!("seconds must be in 0..=1e9, got {secs}"));
    }
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(secs));
    Ok(format!("slept {:.3} s", start.elapsed().as_secs_f64()).into_bytes())
}

biop2p_guest::workload!(sleep);
