//! Opening the sandbox of a data directory: the fuel rate is measured once
//! per host (and per version) and kept, so every start does not re-measure
//! and adverts quote a stable figure.

use std::path::Path;

use crate::sandbox::{Sandbox, SandboxConfig, SandboxError};

#[derive(serde::Serialize, serde::Deserialize)]
struct Calibration {
    fuel_per_sec: u64,
    arch: String,
    version: String,
}

/// File holding the measured fuel rate.
pub const CALIBRATION_FILE: &str = "calibration.json";

/// The fuel rate in the bytes of a calibration file, if they are one of
/// this architecture and version with a positive rate (anything else is
/// measured again).
pub fn stored_rate(bytes: &[u8]) -> Option<u64> {
    serde_json::from_slice::<Calibration>(bytes)
        .ok()
        .filter(|c| {
            c.arch == std::env::consts::ARCH
                && c.version == env!("CARGO_PKG_VERSION")
                && c.fuel_per_sec > 0
        })
        .map(|c| c.fuel_per_sec)
}

/// Opens a sandbox whose code cache and scratch live in `data_dir`,
/// measuring this host's fuel rate on first use and storing it.
pub fn open_sandbox(data_dir: &Path) -> Result<Sandbox, SandboxError> {
    let host = |e: std::io::Error| SandboxError::HostError(format!("{}: {e}", data_dir.display()));
    std::fs::create_dir_all(data_dir).map_err(host)?;
    let path = data_dir.join(CALIBRATION_FILE);
    let stored = std::fs::read(&path).ok().and_then(|b| stored_rate(&b));
    let config = SandboxConfig {
        data_dir: Some(data_dir.to_path_buf()),
        fuel_per_sec: stored,
        ..SandboxConfig::default()
    };
    let sandbox = Sandbox::new(config)?;
    if stored.is_none() {
        let cal = Calibration {
            fuel_per_sec: sandbox.fuel_per_sec(),
            arch: std::env::consts::ARCH.into(),
            version: env!("CARGO_PKG_VERSION").into(),
        };
        let bytes = serde_json::to_vec(&cal).expect("calibration encodes");
        crate::fsutil::write_atomic(&path, &bytes).map_err(host)?;
    }
    Ok(sandbox)
}
