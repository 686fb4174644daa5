//! Helpers shared by subcommands: data dir, module loading, sizes, hex.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use biop2p::sandbox::{Sandbox, WasmModule};

/// The host's data directory: `--data-dir` (or `$BIOP2P_DATA_DIR`), else
/// `$XDG_DATA_HOME/biop2p/host`.
pub fn data_dir(flag: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(d) = flag {
        return Ok(d);
    }
    Ok(state_dir(None)?.join("host"))
}

/// The submitter's state directory: `--state-dir` (or `$BIOP2P_STATE_DIR`),
/// else `$XDG_DATA_HOME/biop2p`.
pub fn state_dir(flag: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(d) = flag {
        return Ok(d);
    }
    let base = dirs::data_dir()
        .context("no data directory on this platform: pass --data-dir/--state-dir")?;
    Ok(base.join("biop2p"))
}

/// Opens a sandbox with its code cache in `data_dir` (fuel rate measured
/// once and stored).
pub fn open_sandbox(data_dir: &Path) -> Result<Sandbox> {
    biop2p::node::open_sandbox(data_dir).context("cannot start the sandbox")
}

/// Loads a module from a path, or an embedded workload as `builtin:NAME`.
pub fn load_module(file: &str) -> Result<WasmModule> {
    if let Some(name) = file.strip_prefix("builtin:") {
        let b = biop2p::workloads::get(name).with_context(|| {
            let names: Vec<_> = biop2p::workloads::ALL.iter().map(|b| b.name).collect();
            format!("no builtin workload {name:?}; try one of {names:?}")
        })?;
        return Ok(WasmModule::new(b.bytes));
    }
    let bytes = std::fs::read(file).with_context(|| format!("cannot read module {file}"))?;
    Ok(WasmModule::new(bytes))
}

/// Reads the input: a path, `-` for stdin, or nothing.
pub fn read_input(input: Option<&str>, max: u64) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    match input {
        None => {}
        Some("-") => {
            std::io::stdin()
                .take(max + 1)
                .read_to_end(&mut buf)
                .context("cannot read stdin")?;
        }
        Some(path) => {
            std::fs::File::open(path)
                .with_context(|| format!("cannot open input {path}"))?
                .take(max + 1)
                .read_to_end(&mut buf)
                .with_context(|| format!("cannot read input {path}"))?;
        }
    }
    if buf.len() as u64 > max {
        bail!("input is larger than {max} bytes");
    }
    Ok(buf)
}

/// Parses `--data NAME=PATH`: a read-only file the job sees at
/// `/data/NAME`.
pub fn parse_data(s: &str) -> Result<(String, PathBuf), String> {
    let (name, path) = s
        .split_once('=')
        .ok_or_else(|| format!("--data wants NAME=PATH, got {s:?}"))?;
    if !biop2p::proto::valid_data_name(name) {
        return Err(format!(
            "data name {name:?} must be 1-64 characters of [A-Za-z0-9._-], not starting with a dot"
        ));
    }
    if path.is_empty() {
        return Err(format!("--data {name}= names no file"));
    }
    Ok((name.to_string(), PathBuf::from(path)))
}

/// One `--data` file, read and hashed.
#[derive(Debug, Clone)]
pub struct DataFile {
    /// Its reference in the signed job.
    pub r: biop2p::proto::DataRef,
    /// Its bytes.
    pub bytes: std::sync::Arc<Vec<u8>>,
}

/// Reads the `--data` files (each at most `max` bytes; names used once).
pub fn read_data(data: &[(String, PathBuf)], max: u64) -> Result<Vec<DataFile>> {
    let mut out: Vec<DataFile> = Vec::with_capacity(data.len());
    if data.len() > biop2p::proto::MAX_DATA_BLOBS {
        bail!(
            "{} --data files; a job has at most {}",
            data.len(),
            biop2p::proto::MAX_DATA_BLOBS
        );
    }
    for (name, path) in data {
        if out.iter().any(|d| &d.r.name == name) {
            bail!("--data {name}= is given twice");
        }
        let mut buf = Vec::new();
        std::fs::File::open(path)
            .with_context(|| format!("cannot open --data {name}={}", path.display()))?
            .take(max + 1)
            .read_to_end(&mut buf)
            .with_context(|| format!("cannot read --data {name}={}", path.display()))?;
        if buf.len() as u64 > max {
            bail!(
                "--data {name}={} is larger than {max} bytes",
                path.display()
            );
        }
        out.push(DataFile {
            r: biop2p::proto::DataRef {
                name: name.clone(),
                hash: *blake3::hash(&buf).as_bytes(),
                size: buf.len() as u64,
            },
            bytes: std::sync::Arc::new(buf),
        });
    }
    Ok(out)
}

/// Parses a byte size: `1048576`, `64KiB`, `256MiB`, `1GiB` (also `K`, `M`,
/// `G`, `KB`, `MB`, `GB`, all powers of 1024).
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("not a byte size: {s:?}"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => return Err(format!("unknown size unit {other:?} in {s:?}")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("byte size too large: {s:?}"))
}

/// Parses a duration in seconds (`2`, `0.5`) into milliseconds.
pub fn parse_secs(s: &str) -> Result<u64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("not a number of seconds: {s:?}"))?;
    if !(v.is_finite() && v > 0.0) {
        return Err(format!(
            "timeout must be a positive number of seconds: {s:?}"
        ));
    }
    Ok((v * 1000.0).ceil() as u64)
}

/// Lowercase hex of a hash.
pub fn hex(h: &[u8; 32]) -> String {
    blake3::Hash::from(*h).to_hex().to_string()
}

/// Prints a line to stdout; a closed pipe (`| head`) ends quietly.
pub fn print_line(line: &str) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{line}").and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        r => r.context("cannot write to stdout"),
    }
}

/// Loads the node config: `--config`, else `DATA_DIR/biop2p.toml` if it
/// exists, else the embedded defaults.
pub fn load_config(flag: Option<&Path>, data_dir: &Path) -> Result<biop2p::NodeConfig> {
    let path = match flag {
        Some(p) => Some(p.to_path_buf()),
        None => Some(data_dir.join("biop2p.toml")).filter(|p| p.exists()),
    };
    match path {
        None => Ok(biop2p::NodeConfig::default()),
        Some(p) => {
            let text = std::fs::read_to_string(&p)
                .with_context(|| format!("cannot read {}", p.display()))?;
            biop2p::NodeConfig::from_toml(&text).with_context(|| format!("in {}", p.display()))
        }
    }
}
