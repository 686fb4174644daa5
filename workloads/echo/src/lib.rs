//! The smallest biop2p workload: `run` returns its input unchanged.
//!
//! Used by the sandbox-cycle benchmark, so it does nothing else: no
//! formatting, no logging, no allocation beyond the canonical ABI's own.
//!
//! Build: `cargo build --release --target wasm32-wasip2 -p wl-echo`.

fn echo(input: Vec<u8>) -> Result<Vec<u8>, String> {
    Ok(input)
}

biop2p_guest::workload!(echo);
