//! `biop2p init` and `biop2p id`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};

use super::common;

/// Write a commented default `biop2p.toml`.
#[derive(clap::Args)]
pub struct InitArgs {
    /// Where to write it (default: DATA_DIR/biop2p.toml).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Data directory.
    #[arg(long, env = "BIOP2P_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Overwrite an existing file.
    #[arg(long)]
    force: bool,
}

pub fn init(a: InitArgs) -> Result<ExitCode> {
    let path = match a.config {
        Some(p) => p,
        None => common::data_dir(a.data_dir)?.join("biop2p.toml"),
    };
    if path.exists() && !a.force {
        bail!("{} exists; pass --force to overwrite it", path.display());
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&path, biop2p::config::DEFAULT_TOML)
        .with_context(|| format!("cannot write {}", path.display()))?;
    common::print_line(&format!("wrote {}", path.display()))?;
    Ok(ExitCode::SUCCESS)
}

/// Print this host's peer id (creating its identity if needed).
#[derive(clap::Args)]
pub struct IdArgs {
    /// Data directory.
    #[arg(long, env = "BIOP2P_DATA_DIR")]
    data_dir: Option<PathBuf>,
}

pub fn id(a: IdArgs) -> Result<ExitCode> {
    let dir = common::data_dir(a.data_dir)?;
    let id = biop2p::identity::Identity::load_or_create(&dir)
        .with_context(|| format!("cannot load the identity in {}", dir.display()))?;
    common::print_line(&id.peer_id.to_string())?;
    Ok(ExitCode::SUCCESS)
}
