//! `biop2p run`: one task in a fresh local sandbox.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use base64::Engine as _;
use biop2p::sandbox::{DataSource, Task, TaskData, TaskLimits, TaskResult};

use super::common;

/// Inputs larger than this are refused before anything runs.
const MAX_INPUT: u64 = 256 << 20;

/// Run one task locally (component, WASI p1 command, or .wat).
#[derive(clap::Args)]
pub struct Args {
    /// The module: a component, a WASI p1 command module, a `.wat` file, or
    /// `builtin:NAME` for an embedded workload (echo, echo-p1, matmul, mlp,
    /// digits, embed, sleep, tensor-probe).
    file: String,
    /// The input: a file, or `-` for stdin. Default: empty.
    #[arg(long)]
    input: Option<String>,
    /// Fuel budget (deterministic metering units).
    #[arg(long, default_value_t = TaskLimits::DEFAULT.fuel)]
    fuel: u64,
    /// Memory limit in bytes (suffixes KiB, MiB, GiB accepted).
    #[arg(long, value_parser = common::parse_bytes, default_value = "256MiB")]
    memory: u64,
    /// Time limit in seconds, turned into a fuel cap at this host's rate.
    #[arg(long, value_parser = common::parse_secs)]
    timeout: Option<u64>,
    /// Mount a fresh, size-capped `/scratch` directory, removed afterwards.
    #[arg(long)]
    scratch: bool,
    /// Canonicalize NaNs so output is identical across CPU architectures
    /// (slower on float-heavy code).
    #[arg(long)]
    portable: bool,
    /// A read-only file for the guest at `/data/NAME` (repeatable).
    #[arg(long = "data", value_name = "NAME=PATH", value_parser = common::parse_data)]
    data: Vec<(String, PathBuf)>,
    /// Print one JSON line instead of raw output.
    #[arg(long)]
    json: bool,
    /// Data directory (compiled-code cache, calibration).
    #[arg(long, env = "BIOP2P_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Arguments for the guest (its argv after the program name).
    #[arg(last = true)]
    args: Vec<String>,
}

pub fn execute(a: Args) -> Result<ExitCode> {
    let module = common::load_module(&a.file)?;
    let input = common::read_input(a.input.as_deref(), MAX_INPUT)?;
    let sandbox = common::open_sandbox(&common::data_dir(a.data_dir)?)?;
    let mut task = Task::new(module, input);
    task.args = a.args;
    task.limits.fuel = a.fuel;
    task.limits.memory_bytes = a.memory;
    task.limits.timeout_ms = a.timeout;
    task.scratch = a.scratch;
    task.portable = a.portable;
    task.data = common::read_data(&a.data, MAX_INPUT)?
        .into_iter()
        .map(|d| TaskData {
            name: d.r.name,
            hash: d.r.hash,
            source: DataSource::Bytes(d.bytes),
        })
        .collect();
    let r = sandbox.run(&task);
    if a.json {
        common::print_line(&serde_json::to_string(&json(&r))?)?;
    } else {
        match &r.outcome {
            Ok(out) => {
                let mut stdout = std::io::stdout().lock();
                match stdout.write_all(out).and_then(|()| stdout.flush()) {
                    Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
                    r => r.context("cannot write output")?,
                }
            }
            Err(e) => {
                std::io::stderr().write_all(&r.stderr).ok();
                eprintln!("error: {}: {e}", e.kind());
            }
        }
    }
    Ok(if r.outcome.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The JSON line of `run --json` (field names are an interface).
pub fn json(r: &TaskResult) -> serde_json::Value {
    let (status, kind, error, output) = match &r.outcome {
        Ok(out) => (
            "ok",
            None,
            None,
            Some(base64::engine::general_purpose::STANDARD.encode(out)),
        ),
        Err(e) => ("error", Some(e.kind().as_str()), Some(e.to_string()), None),
    };
    serde_json::json!({
        "status": status,
        "error_kind": kind,
        "error": error,
        "output_base64": output,
        "output_hash": common::hex(&r.counters.output_hash),
        "module_hash": common::hex(&r.module_hash),
        "input_hash": common::hex(&r.input_hash),
        "data_hashes": r.data_hashes.iter().map(common::hex).collect::<Vec<_>>(),
        "fuel_used": r.counters.fuel_used,
        "peak_memory_bytes": r.counters.peak_memory_bytes,
        "wall_ms": r.counters.wall_us as f64 / 1000.0,
        "arch": r.arch,
    })
}
