//! Runs one embedded workload through fresh sandboxes in a loop, for
//! profiling the sandbox cycle (`perf record`, `valgrind --tool=callgrind`).
//!
//! ```text
//! cargo run --release -p biop2p --example sandbox_cycle -- [echo|p1|scratch|FILE.wasm] [COUNT]
//! perf record -g target/release/examples/sandbox_cycle echo 200000
//! ```
//!
//! Prints the median and p99 cycle in µs, as `biop2p bench` measures them.

use std::time::Instant;

use anyhow::{Result, bail};
use biop2p::sandbox::{Sandbox, SandboxConfig, Task, WasmModule};
use biop2p::workloads;

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let which = args.next().unwrap_or_else(|| "echo".into());
    let count: usize = args
        .next()
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(100_000);
    let sandbox = Sandbox::new(SandboxConfig {
        fuel_per_sec: Some(1_000_000_000),
        ..SandboxConfig::default()
    })?;
    let mut task = match which.as_str() {
        "echo" | "scratch" => {
            Task::new(WasmModule::new(workloads::ECHO), b"hello, biop2p".to_vec())
        }
        "p1" => Task::new(
            WasmModule::new(workloads::ECHO_P1),
            b"hello, biop2p".to_vec(),
        ),
        path if path.ends_with(".wasm") => Task::new(
            WasmModule::new(std::fs::read(path)?),
            b"hello, biop2p".to_vec(),
        ),
        other => bail!("unknown workload {other}: echo, p1, scratch or FILE.wasm"),
    };
    task.scratch = which == "scratch";
    let mut v = Vec::with_capacity(count);
    for _ in 0..count {
        let t = Instant::now();
        let r = sandbox.run(&task);
        v.push(t.elapsed().as_nanos() as f64 / 1000.0);
        if let Err(e) = r.outcome {
            bail!("task failed: {e}");
        }
    }
    v.sort_by(f64::total_cmp);
    println!(
        "{which}: {count} cycles, median {:.1} µs, p99 {:.1} µs",
        v[v.len() / 2],
        v[v.len() * 99 / 100]
    );
    Ok(())
}
