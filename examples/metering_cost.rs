//! What metering costs on a real program: runs one module through the
//! sandbox with metering on (the production engine) and on an otherwise
//! identical engine with metering off, and prints the wall-time ratio.
//!
//! ```text
//! cargo run --release -p biop2p --example metering_cost -- [--input FILE] [--runs N] FILE.wasm [ARGS...]
//! ```
//!
//! `--input` becomes the guest's stdin (a component workload's `run`
//! argument). Both sandboxes compile the module once before timing (the
//! compiled code is cached in memory, as on a host after a module's first
//! task), then runs alternate between them; the figures are medians. The
//! outputs of both must be identical, or the ratio would compare different
//! work.
//!
//! The unmetered engine exists for this measurement only
//! ([`EngineConfig::metering`]); nothing in the CLI or the network protocol
//! can turn metering off.

use std::time::Instant;

use anyhow::{Context, Result, bail};
use biop2p::sandbox::{EngineConfig, Sandbox, SandboxConfig, Task, TaskResult, WasmModule};

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let mut input = Vec::new();
    let mut runs = 5usize;
    let mut file = None;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--input" => {
                let p = args.next().context("--input needs a file")?;
                input = std::fs::read(&p).with_context(|| format!("cannot read {p}"))?;
            }
            "--runs" => {
                runs = args.next().context("--runs needs a count")?.parse()?;
            }
            _ => {
                file = Some(a);
                break;
            }
        }
    }
    let Some(file) = file else {
        bail!("usage: metering_cost [--input FILE] [--runs N] FILE.wasm [ARGS...]");
    };
    let guest_args: Vec<String> = args.collect();
    let bytes = std::fs::read(&file).with_context(|| format!("cannot read {file}"))?;
    let module = WasmModule::new(bytes);

    let metered = Sandbox::new(SandboxConfig::default())?;
    let unmetered = Sandbox::new(SandboxConfig {
        engine: EngineConfig {
            metering: false,
            ..EngineConfig::default()
        },
        // Nothing to calibrate without fuel; the rate is unused.
        fuel_per_sec: Some(1),
        ..SandboxConfig::default()
    })?;

    let mut task = Task::new(module, input);
    task.args = guest_args;
    // The limits `biop2p run` applies by default, except that the fuel cap
    // must not end a long program early.
    task.limits.fuel = u64::MAX / 4;

    let t = Instant::now();
    let first_m = run(&metered, &task, "metered")?;
    eprintln!(
        "compiled + first metered run: {:.2} s",
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    let first_u = run(&unmetered, &task, "unmetered")?;
    eprintln!(
        "compiled + first unmetered run: {:.2} s",
        t.elapsed().as_secs_f64()
    );
    if first_m.outcome.as_ref().ok() != first_u.outcome.as_ref().ok() {
        bail!("metered and unmetered runs produced different output");
    }

    let mut m = Vec::new();
    let mut u = Vec::new();
    let mut fuel = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let r = run(&metered, &task, "metered")?;
        m.push(t.elapsed().as_secs_f64());
        fuel.push(r.counters.fuel_used);
        let t = Instant::now();
        run(&unmetered, &task, "unmetered")?;
        u.push(t.elapsed().as_secs_f64());
    }
    m.sort_by(f64::total_cmp);
    u.sort_by(f64::total_cmp);
    let (mm, um) = (m[m.len() / 2], u[u.len() / 2]);
    fuel.dedup();
    println!("module        {file}");
    println!("runs          {runs} each, alternating; medians");
    println!("metered       {:.3} ms   (min {:.3})", mm * 1e3, m[0] * 1e3);
    println!("unmetered     {:.3} ms   (min {:.3})", um * 1e3, u[0] * 1e3);
    println!("ratio         {:.3}", mm / um);
    println!(
        "fuel used     {} ({})",
        fuel[0],
        if fuel.len() == 1 {
            "identical on every run"
        } else {
            "DIFFERS between runs"
        }
    );
    println!(
        "output        {} bytes, identical metered and unmetered",
        first_m.counters.output_bytes
    );
    Ok(())
}

fn run(sandbox: &Sandbox, task: &Task, what: &str) -> Result<TaskResult> {
    let r = sandbox.run(task);
    if let Err(e) = &r.outcome {
        let stderr = String::from_utf8_lossy(&r.stderr);
        bail!("{what} run failed: {}: {e}\n{stderr}", e.kind());
    }
    Ok(r)
}
