//! Content-addressed blobs (modules and inputs) as files, named by blake3,
//! with a byte budget and least-recently-used eviction.
//!
//! Files rather than sled values: blobs run to hundreds of MiB, and a file
//! is written once, fsynced, and renamed into place. Every read is checked
//! against the name, so a corrupted file is never used.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::StoreError;
use crate::proto::{Hash, hex};

/// hash → (size, last-use tick), and the tick counter.
type Index = (HashMap<Hash, (u64, u64)>, u64);

/// The blob cache of a node.
#[derive(Clone)]
pub struct BlobStore {
    dir: PathBuf,
    budget: u64,
    /// hash → (size, last use tick).
    index: Arc<Mutex<Index>>,
}

impl BlobStore {
    /// Opens the store in `dir`, indexing what is there.
    pub fn open(dir: &Path, budget: u64) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir)?;
        let mut map = HashMap::new();
        for e in std::fs::read_dir(dir)? {
            let e = e?;
            let name = e.file_name();
            let Some(h) = name.to_str().and_then(crate::proto::parse_hex) else {
                // Temporary files of an interrupted write.
                let _ = std::fs::remove_file(e.path());
                continue;
            };
            map.insert(h, (e.metadata()?.len(), 0));
        }
        Ok(BlobStore {
            dir: dir.to_path_buf(),
            budget,
            index: Arc::new(Mutex::new((map, 1))),
        })
    }

    fn path(&self, h: &Hash) -> PathBuf {
        self.dir.join(hex(h))
    }

    /// The file holding the blob, if it is here (unverified: whoever
    /// reads it checks the hash, as the sandbox does before mounting it).
    pub fn file(&self, h: &Hash) -> Option<PathBuf> {
        self.contains(h).then(|| self.path(h))
    }

    /// Whether the blob is here.
    pub fn contains(&self, h: &Hash) -> bool {
        self.index.lock().expect("blob index").0.contains_key(h)
    }

    /// The blob's bytes, verified against its hash.
    pub fn get(&self, h: &Hash) -> Result<Option<Vec<u8>>, StoreError> {
        if !self.contains(h) {
            return Ok(None);
        }
        let data = match std::fs::read(self.path(h)) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.index.lock().expect("blob index").0.remove(h);
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        };
        if blake3::hash(&data).as_bytes() != h {
            tracing::warn!(blob = %hex(h), "cached blob is corrupt; removing it");
            self.remove(h);
            return Ok(None);
        }
        self.touch(h);
        Ok(Some(data))
    }

    /// A range of the blob (for serving chunks), unverified: the receiver
    /// verifies the whole blob against its hash.
    pub fn read_range(
        &self,
        h: &Hash,
        offset: u64,
        len: usize,
    ) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        use std::io::{Read, Seek};
        if !self.contains(h) {
            return Ok(None);
        }
        let mut f = std::fs::File::open(self.path(h))?;
        let total = f.metadata()?.len();
        f.seek(std::io::SeekFrom::Start(offset.min(total)))?;
        let mut buf = Vec::with_capacity(len.min((total.saturating_sub(offset)) as usize));
        f.take(len as u64).read_to_end(&mut buf)?;
        Ok(Some((total, buf)))
    }

    fn touch(&self, h: &Hash) {
        let mut g = self.index.lock().expect("blob index");
        let (map, tick) = &mut *g;
        *tick += 1;
        if let Some(e) = map.get_mut(h) {
            e.1 = *tick;
        }
    }

    /// Stores verified bytes (fsynced when `durable`), then evicts the
    /// least recently used blobs beyond the budget, never those in `pinned`.
    /// A blob of a job whose submitter waits for the result need not be
    /// durable: nothing was acknowledged, and a host that loses it in a
    /// power cut reports the job's blobs missing rather than a false result.
    pub fn put(
        &self,
        h: &Hash,
        data: &[u8],
        pinned: &[Hash],
        durable: bool,
    ) -> Result<(), StoreError> {
        debug_assert_eq!(blake3::hash(data).as_bytes(), h);
        if self.contains(h) {
            if durable {
                // It may have been stored for a waiting job, unsynced.
                std::fs::File::open(self.path(h))?.sync_all()?;
            }
        } else {
            crate::fsutil::write_atomic_with(&self.path(h), data, durable)?;
            let mut g = self.index.lock().expect("blob index");
            let (map, tick) = &mut *g;
            *tick += 1;
            map.insert(*h, (data.len() as u64, *tick));
        }
        self.touch(h);
        self.evict(h, pinned);
        Ok(())
    }

    fn evict(&self, keep: &Hash, pinned: &[Hash]) {
        let victims = {
            let g = self.index.lock().expect("blob index");
            let total: u64 = g.0.values().map(|v| v.0).sum();
            if total <= self.budget {
                return;
            }
            let mut all: Vec<(Hash, u64, u64)> =
                g.0.iter().map(|(h, (s, t))| (*h, *s, *t)).collect();
            all.sort_by_key(|e| e.2);
            let mut over = total - self.budget;
            let mut v = Vec::new();
            for (h, size, _) in all {
                if over == 0 {
                    break;
                }
                if &h == keep || pinned.contains(&h) {
                    continue;
                }
                over = over.saturating_sub(size);
                v.push(h);
            }
            v
        };
        for h in victims {
            self.remove(&h);
        }
    }

    fn remove(&self, h: &Hash) {
        self.index.lock().expect("blob index").0.remove(h);
        let _ = std::fs::remove_file(self.path(h));
    }
}
