//! `biop2p bench`: measures the sandbox on this machine.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use biop2p::sandbox::{Sandbox, SandboxConfig, Task, WasmModule};
use biop2p::workloads;

/// Measure this machine.
#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    #[command(subcommand)]
    target: Option<Target>,
    /// Print one JSON line instead of a table.
    #[arg(long)]
    json: bool,
    /// Cycles measured per sandbox figure.
    #[arg(long, default_value_t = 5000)]
    cycles: usize,
    /// Matrix size for the wasm/native ratio.
    #[arg(long, default_value_t = 256)]
    matmul_n: u32,
}

#[derive(clap::Subcommand)]
enum Target {
    /// A host and a submitter in two processes over loopback TCP.
    Network {
        /// One JSON line.
        #[arg(long)]
        json: bool,
        /// Jobs measured one at a time for the latency figure.
        #[arg(long, default_value_t = 2000)]
        jobs: usize,
    },
    /// MiniLM embeddings and digits training, sandboxed against native
    /// (needs scripts/fetch-ai-data.sh).
    Ai {
        /// One JSON line.
        #[arg(long)]
        json: bool,
    },
}

/// The figures of `bench --json` (field names are an interface).
#[derive(serde::Serialize)]
struct Figures {
    sandbox_cycle_us_median: f64,
    sandbox_cycle_us_p99: f64,
    sandbox_cycle_p1_us_median: f64,
    sandbox_cycle_scratch_us_median: f64,
    tasks_per_sec: f64,
    wasm_native_ratio: f64,
    fuel_per_sec: u64,
    arch: &'static str,
}

pub fn execute(a: Args) -> Result<ExitCode> {
    match a.target {
        Some(Target::Network { json, jobs }) => return super::bench_network::execute(json, jobs),
        Some(Target::Ai { json }) => return super::bench_ai::execute(json || a.json),
        None => {}
    }
    // No data dir: the figures measure the in-memory cache, which is what a
    // running host uses after a module's first task.
    let sandbox = Sandbox::new(SandboxConfig::default())?;
    let echo = Task::new(WasmModule::new(workloads::ECHO), b"hello, biop2p".to_vec());
    let echo_p1 = Task::new(
        WasmModule::new(workloads::ECHO_P1),
        b"hello, biop2p".to_vec(),
    );
    let mut echo_scratch = echo.clone();
    echo_scratch.scratch = true;

    let cycle = cycles(&sandbox, &echo, a.cycles)?;
    let cycle_p1 = cycles(&sandbox, &echo_p1, a.cycles)?;
    let cycle_scratch = cycles(&sandbox, &echo_scratch, a.cycles.min(2000))?;
    let tasks_per_sec = throughput(&sandbox, &echo, Duration::from_secs(1))?;
    let ratio = wasm_native_ratio(&sandbox, a.matmul_n)?;
    let f = Figures {
        sandbox_cycle_us_median: percentile(&cycle, 0.5),
        sandbox_cycle_us_p99: percentile(&cycle, 0.99),
        sandbox_cycle_p1_us_median: percentile(&cycle_p1, 0.5),
        sandbox_cycle_scratch_us_median: percentile(&cycle_scratch, 0.5),
        tasks_per_sec,
        wasm_native_ratio: ratio,
        fuel_per_sec: sandbox.fuel_per_sec(),
        arch: std::env::consts::ARCH,
    };
    if a.json {
        println!("{}", serde_json::to_string(&f)?);
    } else {
        println!(
            "sandbox cycle (echo component)   median {:>9.1} µs   p99 {:>9.1} µs",
            f.sandbox_cycle_us_median, f.sandbox_cycle_us_p99
        );
        println!(
            "sandbox cycle (echo WASI p1)     median {:>9.1} µs",
            f.sandbox_cycle_p1_us_median
        );
        println!(
            "sandbox cycle (with /scratch)    median {:>9.1} µs",
            f.sandbox_cycle_scratch_us_median
        );
        println!("tasks per second (one thread)    {:>16.0}", f.tasks_per_sec);
        println!(
            "wasm/native ratio (matmul {n}²)  {:>16.3}",
            f.wasm_native_ratio,
            n = a.matmul_n
        );
        println!("fuel per second                  {:>16}", f.fuel_per_sec);
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `task` `n` times after a warm-up and returns each cycle in µs: fresh
/// store, WASI context, instantiate from the cached code, call, drop.
fn cycles(sandbox: &Sandbox, task: &Task, n: usize) -> Result<Vec<f64>> {
    for _ in 0..200 {
        check(sandbox, task)?;
    }
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let r = sandbox.run(task);
        v.push(t.elapsed().as_nanos() as f64 / 1000.0);
        if let Err(e) = r.outcome {
            bail!("benchmark task failed: {e}");
        }
    }
    v.sort_by(f64::total_cmp);
    Ok(v)
}

fn check(sandbox: &Sandbox, task: &Task) -> Result<Vec<u8>> {
    match sandbox.run(task).outcome {
        Ok(o) => Ok(o),
        Err(e) => bail!("benchmark task failed: {}: {e}", e.kind()),
    }
}

fn throughput(sandbox: &Sandbox, task: &Task, d: Duration) -> Result<f64> {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < d {
        for _ in 0..100 {
            check(sandbox, task)?;
        }
        n += 100;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

/// matmul of n×n in the sandbox (metered) over the same kernel compiled
/// natively, inputs generated the same way; the fastest of 11 alternating
/// runs each, because on a shared machine the median measures the load as
/// much as the code. The native side is this binary's build of the kernel:
/// the x86-64 baseline (SSE2) and wasm `simd128` are both 128-bit vectors,
/// so the default native build already is the same-vector-width one.
fn wasm_native_ratio(sandbox: &Sandbox, n: u32) -> Result<f64> {
    let mut input = n.to_le_bytes().to_vec();
    input.extend_from_slice(&1u32.to_le_bytes());
    let mut task = Task::new(WasmModule::new(workloads::MATMUL), input);
    task.limits.fuel = u64::MAX / 4;
    let wasm_out = check(sandbox, &task)?;
    let native_out = native_matmul(n);
    if wasm_out != native_out {
        bail!("matmul in wasm and natively disagree: the ratio would compare different work");
    }
    let mut wasm = Vec::new();
    let mut native = Vec::new();
    for _ in 0..11 {
        let t = Instant::now();
        check(sandbox, &task)?;
        wasm.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        std::hint::black_box(native_matmul(std::hint::black_box(n)));
        native.push(t.elapsed().as_secs_f64());
    }
    wasm.sort_by(f64::total_cmp);
    native.sort_by(f64::total_cmp);
    Ok(wasm[0] / native[0])
}

/// The native side: the same generation, kernel and output encoding as the
/// matmul workload.
fn native_matmul(n: u32) -> Vec<u8> {
    let n = n as usize;
    let (a, b) = matmul_kernel::make_inputs(n, 1);
    let mut c = vec![0f32; n * n];
    matmul_kernel::matmul(&a, &b, &mut c, n);
    c.iter().flat_map(|x| x.to_le_bytes()).collect()
}
