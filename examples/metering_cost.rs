//! What metering costs on a real program: runs one module through the
//! sandbox with our meter (the production engine), with wasmtime's fuel, and
//! on an otherwise identical engine with no meter at all, and prints the
//! wall-time ratios.
//!
//! ```text
//! cargo run --release -p biop2p --example metering_cost -- [--input FILE] [--runs N] FILE.wasm [ARGS...]
//! ```
//!
//! `--input` becomes the guest's stdin (a component workload's `run`
//! argument). The three sandboxes share every engine setting (pooling,
//! copy-on-write, deterministic relaxed SIMD, no NaN canonicalization) except
//! the meter, so the ratios compare like with like. Each compiles the module
//! once before timing (the compiled code is cached in memory, as on a host
//! after a module's first task); then runs alternate between them, and the
//! figures are medians and minimums. The outputs must be byte-identical, or
//! the ratio would compare different work.
//!
//! The unmetered and fuel engines exist for measurements like this one only
//! ([`EngineConfig::metering`]); nothing in the CLI or the network protocol
//! can reach them.

use std::time::Instant;

use anyhow::{Context, Result, bail};
use biop2p::sandbox::{
    EngineConfig, Metering, Sandbox, SandboxConfig, Task, TaskResult, WasmModule,
};

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

    let sandbox = |metering| {
        Sandbox::new(SandboxConfig {
            engine: EngineConfig {
                metering,
                ..EngineConfig::default()
            },
            // The rate is not used here; skip calibrating.
            fuel_per_sec: Some(1),
            ..SandboxConfig::default()
        })
    };
    let engines = [
        ("meter", sandbox(Metering::Meter)?),
        ("fuel", sandbox(Metering::WasmtimeFuel)?),
        ("unmetered", sandbox(Metering::Off)?),
    ];

    let mut task = Task::new(module, input);
    task.args = guest_args;
    // The limits `biop2p run` applies by default, except that the budget
    // must not end a long program early.
    task.limits.fuel = u64::MAX / 4;

    let mut first: Vec<TaskResult> = Vec::new();
    for (name, s) in &engines {
        let t = Instant::now();
        first.push(run(s, &task, name)?);
        eprintln!(
            "compiled + first {name} run: {:.2} s",
            t.elapsed().as_secs_f64()
        );
    }
    for (r, (name, _)) in first.iter().zip(&engines).skip(1) {
        if r.outcome.as_ref().ok() != first[0].outcome.as_ref().ok() {
            bail!("the {name} run produced different output from the metered one");
        }
    }

    let mut times = vec![Vec::new(); engines.len()];
    let mut counts = vec![Vec::new(); 2];
    for _ in 0..runs {
        for (i, (name, s)) in engines.iter().enumerate() {
            let t = Instant::now();
            let r = run(s, &task, name)?;
            times[i].push(t.elapsed().as_secs_f64());
            if i < 2 {
                counts[i].push(r.counters.fuel_used);
            }
        }
    }
    for t in &mut times {
        t.sort_by(f64::total_cmp);
    }
    let med = |t: &Vec<f64>| t[t.len() / 2];
    let base = med(&times[2]);
    let base_min = times[2][0];
    println!("module        {file}");
    println!("runs          {runs} each, alternating; medians (min)");
    for (i, (name, _)) in engines.iter().enumerate() {
        println!(
            "{name:<13} {:>10.3} ms ({:>10.3})   ratio {:.3} ({:.3})",
            med(&times[i]) * 1e3,
            times[i][0] * 1e3,
            med(&times[i]) / base,
            times[i][0] / base_min,
        );
    }
    for (i, what) in ["meter units", "fuel units"].iter().enumerate() {
        let mut c = counts[i].clone();
        c.dedup();
        println!(
            "{what:<13} {} ({})",
            c[0],
            if c.len() == 1 {
                "identical on every run"
            } else {
                "DIFFERS between runs"
            }
        );
    }
    println!(
        "output        {} bytes, identical on all three engines",
        first[0].counters.output_bytes
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
