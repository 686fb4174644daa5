//! Per-task scratch directories: created before the task, measured and
//! removed after it whatever happened (CBADU: clean before and after use).
//!
//! All file operations on the scratch tree go through `cap_std`, relative to
//! the scratch root, so symlinks a guest leaves behind can never lead the
//! host's own clean-up or measuring outside the tree.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use cap_std::ambient_authority;
use cap_std::fs::Dir;

/// The directory under which every task's scratch directory is created.
pub(crate) struct ScratchRoot {
    path: PathBuf,
    dir: Dir,
    counter: AtomicU64,
}

impl ScratchRoot {
    /// Opens (creating if needed) the scratch root and removes anything a
    /// previous process left behind (a host killed mid-task).
    pub(crate) fn open(path: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(path)?;
        let dir = Dir::open_ambient_dir(path, ambient_authority())?;
        for entry in dir.entries()? {
            let entry = entry?;
            let name = entry.file_name();
            if entry.file_type()?.is_dir() {
                dir.remove_dir_all(&name)?;
            } else {
                dir.remove_file(&name)?;
            }
        }
        Ok(ScratchRoot {
            path: path.to_path_buf(),
            dir,
            counter: AtomicU64::new(0),
        })
    }

    /// Creates a fresh, empty directory for one task.
    pub(crate) fn create(&self, task_tag: &str) -> std::io::Result<ScratchDir<'_>> {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let name = format!("{task_tag}-{n}");
        self.dir.create_dir(&name)?;
        Ok(ScratchDir {
            root: self,
            host_path: self.path.join(&name),
            name,
        })
    }
}

/// One task's scratch directory; removed on drop.
pub(crate) struct ScratchDir<'a> {
    root: &'a ScratchRoot,
    name: String,
    host_path: PathBuf,
}

impl ScratchDir<'_> {
    /// The host path to preopen for the guest.
    pub(crate) fn host_path(&self) -> &Path {
        &self.host_path
    }

    /// Bytes the guest left in the directory (regular files; symlinks are
    /// counted by their own size and never followed).
    pub(crate) fn used_bytes(&self) -> std::io::Result<u64> {
        let dir = self.root.dir.open_dir(&self.name)?;
        dir_size(&dir, 0)
    }
}

/// Nesting beyond this is not walked further (and is still removed).
const MAX_DEPTH: usize = 64;

fn dir_size(dir: &Dir, depth: usize) -> std::io::Result<u64> {
    let mut total = 0u64;
    for entry in dir.entries()? {
        let entry = entry?;
        let ft = entry.file_type()?;
        if ft.is_dir() {
            if depth < MAX_DEPTH {
                total += dir_size(&entry.open_dir()?, depth + 1)?;
            }
        } else {
            total += entry.metadata()?.len();
        }
    }
    Ok(total)
}

impl Drop for ScratchDir<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.root.dir.remove_dir_all(&self.name) {
            tracing::warn!(dir = %self.host_path.display(), error = %e, "could not remove scratch dir");
        }
    }
}
