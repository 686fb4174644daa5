//! Helpers shared by subcommands: data dir, module loading, sizes, hex.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use biop2p::sandbox::{Sandbox, SandboxConfig, WasmModule};

/// The data directory: `--data-dir`, else `$BIOP2P_DATA_DIR`, else the
/// platform's data dir (`$XDG_DATA_HOME/biop2p`).
pub fn data_dir(flag: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(d) = flag {
        return Ok(d);
    }
    if let Some(d) = std::env::var_os("BIOP2P_DATA_DIR") {
        return Ok(PathBuf::from(d));
    }
    let base = dirs::data_dir().context("no data directory on this platform: pass --data-dir")?;
    Ok(base.join("biop2p"))
}

/// Calibration kept on disk, so the fuel rate is measured once per host.
#[derive(serde::Serialize, serde::Deserialize)]
struct Calibration {
    fuel_per_sec: u64,
    arch: String,
    version: String,
}

/// Opens a sandbox with its code cache in `data_dir`, measuring the host's
/// fuel rate on first use and storing it.
pub fn open_sandbox(data_dir: &Path) -> Result<Sandbox> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create data dir {}", data_dir.display()))?;
    let cal_path = data_dir.join("calibration.json");
    let stored: Option<Calibration> = std::fs::read(&cal_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .filter(|c: &Calibration| {
            c.arch == std::env::consts::ARCH && c.version == env!("CARGO_PKG_VERSION")
        });
    let config = SandboxConfig {
        data_dir: Some(data_dir.to_path_buf()),
        fuel_per_sec: stored.as_ref().map(|c| c.fuel_per_sec),
        ..SandboxConfig::default()
    };
    let sandbox = Sandbox::new(config).context("cannot start the sandbox")?;
    if stored.is_none() {
        let cal = Calibration {
            fuel_per_sec: sandbox.fuel_per_sec(),
            arch: std::env::consts::ARCH.into(),
            version: env!("CARGO_PKG_VERSION").into(),
        };
        biop2p::fsutil::write_atomic(&cal_path, &serde_json::to_vec(&cal)?)
            .with_context(|| format!("cannot write {}", cal_path.display()))?;
    }
    Ok(sandbox)
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
