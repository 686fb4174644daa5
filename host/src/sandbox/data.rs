//! Read-only job data: the blobs a job attaches (weights, a dataset shard)
//! appear to its task as files under `/data`, which the guest can read and
//! never write.
//!
//! Each task gets a directory of its own under the data root, filled with
//! hard links to the verified blob files (a copy where a link is refused,
//! across file systems or under Landlock), mounted read-only at `/data` and
//! removed when the task ends. Linking first and hashing the link second
//! means the bytes the guest sees are the bytes that were checked, even if
//! the blob cache evicts the original meanwhile. Hashing costs about 1 ms
//! per MiB, paid on the worker thread, never on the swarm task.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::run::Hash;

/// One file under `/data` for a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskData {
    /// The file name under `/data` (checked by the job's admission).
    pub name: String,
    /// blake3 the bytes must have.
    pub hash: Hash,
    /// Where the bytes are.
    pub source: DataSource,
}

/// Where a task's data file comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataSource {
    /// A host file (a verified blob): hard-linked, or copied.
    File(PathBuf),
    /// Bytes in memory (a submitter's own re-run): written out.
    Bytes(std::sync::Arc<Vec<u8>>),
}

/// Why a task's data could not be mounted.
#[derive(Debug)]
pub(crate) enum MountError {
    /// The bytes on disk do not hash to what the job says.
    Mismatch(String),
    /// The host could not prepare the directory.
    Io(std::io::Error),
}

impl From<std::io::Error> for MountError {
    fn from(e: std::io::Error) -> Self {
        MountError::Io(e)
    }
}

/// The directory under which each task's `/data` directory is made.
pub(crate) struct DataRoot {
    path: PathBuf,
    counter: AtomicU64,
}

impl DataRoot {
    /// Opens (creating) the root and removes what a killed process left.
    pub(crate) fn open(path: &Path) -> std::io::Result<Self> {
        if path.exists() {
            std::fs::remove_dir_all(path)?;
        }
        std::fs::create_dir_all(path)?;
        Ok(DataRoot {
            path: path.to_path_buf(),
            counter: AtomicU64::new(0),
        })
    }

    /// Makes the task's directory with every file verified against its hash.
    pub(crate) fn mount(&self, tag: &str, files: &[TaskData]) -> Result<DataMount, MountError> {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let dir = self.path.join(format!("{tag}-{n}"));
        std::fs::create_dir(&dir)?;
        let mount = DataMount { dir };
        for f in files {
            let dst = mount.dir.join(&f.name);
            match &f.source {
                DataSource::Bytes(b) => std::fs::write(&dst, &b[..])?,
                DataSource::File(src) => {
                    if std::fs::hard_link(src, &dst).is_err() {
                        std::fs::copy(src, &dst)?;
                    }
                }
            }
            let mut h = blake3::Hasher::new();
            h.update_reader(std::fs::File::open(&dst)?)?;
            if h.finalize().as_bytes() != &f.hash {
                return Err(MountError::Mismatch(format!(
                    "data blob {:?} does not hash to {}",
                    f.name,
                    blake3::Hash::from(f.hash).to_hex()
                )));
            }
        }
        Ok(mount)
    }
}

/// One task's data directory; removed on drop.
pub(crate) struct DataMount {
    dir: PathBuf,
}

impl DataMount {
    /// The host path to preopen read-only at `/data`.
    pub(crate) fn host_path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for DataMount {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "could not remove data dir");
        }
    }
}
