//! Small file helpers shared by the stores that keep state on disk.

use std::io::Write;
use std::path::Path;

/// Writes `data` to `path` atomically (temporary file, fsync, rename), with
/// mode 0600: the files written this way are keys and code.
pub fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    write_atomic_with(path, data, true)
}

/// [`write_atomic`], with the fsync only when `sync`: without it the file
/// survives the process being killed (it is in the page cache) but not a
/// power loss, for data nothing has been promised about yet.
pub fn write_atomic_with(path: &Path, data: &[u8], sync: bool) -> std::io::Result<()> {
    // Unique per write, not only per process: two threads storing the same
    // blob at once (two jobs of one host fetching the same data) must not
    // share a temporary file, or one rename finds it gone.
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_extension(format!("tmp{}-{n}", std::process::id()));
    {
        let mut f = open_private(&tmp)?;
        f.write_all(data)?;
        if sync {
            f.sync_all()?;
        }
    }
    std::fs::rename(&tmp, path)
}

fn open_private(path: &Path) -> std::io::Result<std::fs::File> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o.open(path)
}

/// Reads a 32-byte secret from `path`, creating it (mode 0600) on first use.
pub fn load_or_create_secret(path: &Path) -> std::io::Result<[u8; 32]> {
    match std::fs::read(path) {
        Ok(b) if b.len() == 32 => Ok(b.try_into().expect("32 bytes")),
        Ok(_) => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{} is not a 32-byte key", path.display()),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut key = [0u8; 32];
            rand::fill(&mut key);
            write_atomic(path, &key)?;
            Ok(key)
        }
        Err(e) => Err(e),
    }
}
