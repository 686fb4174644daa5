//! Compiled-code cache: in memory by blake3 of the module bytes, and on disk
//! as serialized artifacts under the host's data directory.
//!
//! Deserializing a wasmtime artifact runs its machine code, so a file is only
//! loaded when it carries a keyed-blake3 tag made with this host's secret key
//! (created on first use, mode 0600): the host only ever loads what it wrote.
//! Artifacts live in a folder named after the engine's compatibility hash, so
//! an upgraded wasmtime or a changed setting never loads stale code.

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use wasmtime::component::Component;
use wasmtime::{Engine, Module};

use super::engine::Metering;
use super::meter::Metered;

/// Length of the tag that proves an artifact was written by this host.
const TAG_LEN: usize = 32;

/// Where a compiled module came from, for the cache-hit test and the logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheSource {
    /// Found compiled in memory.
    Memory,
    /// Loaded from this host's on-disk artifact.
    Disk,
    /// Compiled now.
    Compiled,
}

/// Hit counters, for tests and `bench`.
#[derive(Debug, Default)]
pub struct CacheStats {
    /// In-memory hits.
    pub memory_hits: AtomicU64,
    /// On-disk hits.
    pub disk_hits: AtomicU64,
    /// Compilations.
    pub compiles: AtomicU64,
}

/// What was compiled: a core module or a component, and whether it carries
/// our meter.
#[derive(Clone)]
pub(crate) enum Code {
    /// A core module; `meter` names its counter (and deferred start
    /// function) when it was metered.
    Core(Module, Option<CoreMeter>),
    /// A component; `metered` when it has the meter's prologue.
    Component(Component, bool),
}

/// Where a metered core module keeps its counter (see `sandbox::meter`).
#[derive(Clone, Debug)]
pub(crate) struct CoreMeter {
    /// The exported counter global.
    pub(crate) counter: String,
    /// The module's start function, exported for the host to run after the
    /// counter is set.
    pub(crate) start: Option<String>,
}

/// Memory cache entries; one compiled module is a few hundred KiB to a few
/// MiB of machine code, so the cache is bounded by count.
const MEMORY_ENTRIES: usize = 128;

type Key = ([u8; 32], bool);

/// Entries plus their insertion order (oldest first) for eviction.
type Entries<V> = (HashMap<Key, Arc<V>>, VecDeque<Key>);

pub(crate) struct CodeCache<V> {
    memory: Mutex<Entries<V>>,
    disk: Option<DiskCache>,
    metering: Metering,
    pub(crate) stats: CacheStats,
}

impl<V> CodeCache<V> {
    pub(crate) fn new(
        data_dir: Option<&Path>,
        engines: &super::Engines,
        metering: Metering,
    ) -> std::io::Result<Self> {
        let disk = match data_dir {
            Some(d) => Some(DiskCache::open(&d.join("code-cache"), engines, metering)?),
            None => None,
        };
        Ok(CodeCache {
            memory: Mutex::new((HashMap::new(), VecDeque::new())),
            disk,
            metering,
            stats: CacheStats::default(),
        })
    }

    /// Returns the prepared entry for `hash`, compiling (or loading from
    /// disk) with `compile` and preparing with `prepare` on a miss.
    pub(crate) fn get_or_insert<E>(
        &self,
        engine: &Engine,
        hash: [u8; 32],
        portable: bool,
        bytes: &[u8],
        prepare: impl FnOnce(Code) -> Result<V, E>,
        invalid: impl FnOnce(String) -> E,
    ) -> Result<(Arc<V>, CacheSource), E> {
        let key = (hash, portable);
        if let Some(v) = self.memory.lock().expect("cache lock").0.get(&key) {
            self.stats.memory_hits.fetch_add(1, Ordering::Relaxed);
            return Ok((v.clone(), CacheSource::Memory));
        }
        let (code, source) = match self.disk.as_ref().and_then(|d| d.load(engine, &key)) {
            Some(code) => {
                self.stats.disk_hits.fetch_add(1, Ordering::Relaxed);
                (code, CacheSource::Disk)
            }
            None => {
                let code = compile(engine, bytes, self.metering).map_err(invalid)?;
                self.stats.compiles.fetch_add(1, Ordering::Relaxed);
                if let Some(d) = &self.disk {
                    d.store(&key, &code);
                }
                (code, CacheSource::Compiled)
            }
        };
        let v = Arc::new(prepare(code)?);
        let mut guard = self.memory.lock().expect("cache lock");
        let (map, order) = &mut *guard;
        if map.insert(key, v.clone()).is_none() {
            order.push_back(key);
            while order.len() > MEMORY_ENTRIES {
                if let Some(old) = order.pop_front() {
                    map.remove(&old);
                }
            }
        }
        Ok((v, source))
    }
}

/// Turns submitted bytes (binary or WAT text) into compiled code, metered
/// first unless `metering` says otherwise. Rewriting happens here, once per
/// module, never per task.
fn compile(engine: &Engine, bytes: &[u8], metering: Metering) -> Result<Code, String> {
    let binary: std::borrow::Cow<[u8]> = if bytes.starts_with(b"\0asm") {
        bytes.into()
    } else {
        wat::parse_bytes(bytes).map_err(|e| format!("not wasm binary, and not valid WAT: {e}"))?
    };
    if binary.len() < 8 {
        return Err(format!("truncated header ({} bytes)", binary.len()));
    }
    if metering == Metering::Meter {
        return match super::meter::instrument(&binary)? {
            Metered::Core {
                bytes,
                counter,
                start,
            } => Module::new(engine, &bytes)
                .map(|m| Code::Core(m, Some(CoreMeter { counter, start })))
                .map_err(|e| format!("{e:#}")),
            Metered::Component { bytes } => Component::new(engine, &bytes)
                .map(|c| Code::Component(c, true))
                .map_err(|e| format!("{e:#}")),
        };
    }
    // Core modules have layer 0 in bytes 6..8, components layer 1.
    if binary[6..8] == [1, 0] {
        Component::new(engine, &binary)
            .map(|c| Code::Component(c, false))
            .map_err(|e| format!("{e:#}"))
    } else {
        Module::new(engine, &binary)
            .map(|m| Code::Core(m, None))
            .map_err(|e| format!("{e:#}"))
    }
}

struct DiskCache {
    dir: PathBuf,
    key: [u8; 32],
    metering: Metering,
}

impl DiskCache {
    fn open(root: &Path, engines: &super::Engines, metering: Metering) -> std::io::Result<Self> {
        std::fs::create_dir_all(root)?;
        let key = crate::fsutil::load_or_create_secret(&root.join("key"))?;
        // One folder for both engines: the key also carries `portable`, and
        // the folder name covers the settings of both.
        let mut h = std::collections::hash_map::DefaultHasher::new();
        engines.native.precompile_compatibility_hash().hash(&mut h);
        engines
            .portable
            .precompile_compatibility_hash()
            .hash(&mut h);
        // Code rewritten by another version of the meter counts differently.
        super::meter::METER_VERSION.hash(&mut h);
        format!("{metering:?}").hash(&mut h);
        let dir = root.join(format!("{:016x}", h.finish()));
        std::fs::create_dir_all(&dir)?;
        Ok(DiskCache { dir, key, metering })
    }

    fn path(&self, key: &Key) -> PathBuf {
        let mode = if key.1 { "portable" } else { "native" };
        self.dir.join(format!(
            "{}-{mode}.cwasm",
            blake3::Hash::from(key.0).to_hex()
        ))
    }

    fn load(&self, engine: &Engine, key: &Key) -> Option<Code> {
        let path = self.path(key);
        let data = std::fs::read(&path).ok()?;
        if data.len() < TAG_LEN + 1 {
            return None;
        }
        let (tag, body) = data.split_at(TAG_LEN);
        let expected = blake3::keyed_hash(&self.key, body);
        // blake3::Hash compares in constant time.
        if expected != blake3::Hash::from(<[u8; 32]>::try_from(tag).ok()?) {
            tracing::warn!(path = %path.display(), "ignoring cached artifact with a bad tag");
            return None;
        }
        let (kind, rest) = body.split_first()?;
        let metered = self.metering == Metering::Meter;
        let code = match kind {
            0 => {
                let (meter, artifact) = if metered {
                    let (counter, rest) = take_str(rest)?;
                    let (start, rest) = take_str(rest)?;
                    let start = (!start.is_empty()).then_some(start);
                    (Some(CoreMeter { counter, start }), rest)
                } else {
                    (None, rest)
                };
                deserialize_module(engine, artifact).map(|m| Code::Core(m, meter))
            }
            1 => deserialize_component(engine, rest).map(|c| Code::Component(c, metered)),
            _ => return None,
        };
        match code {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cached artifact did not load");
                None
            }
        }
    }

    fn store(&self, key: &Key, code: &Code) {
        let serialized = match code {
            Code::Core(m, _) => m.serialize().map(|b| (0u8, b)),
            Code::Component(c, _) => c.serialize().map(|b| (1u8, b)),
        };
        let (kind, artifact) = match serialized {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "could not serialize compiled code");
                return;
            }
        };
        let mut body = Vec::with_capacity(artifact.len() + 64);
        body.push(kind);
        if let Code::Core(_, Some(meter)) = code {
            put_str(&mut body, &meter.counter);
            put_str(&mut body, meter.start.as_deref().unwrap_or(""));
        }
        body.extend_from_slice(&artifact);
        let tag = blake3::keyed_hash(&self.key, &body);
        let mut data = Vec::with_capacity(TAG_LEN + body.len());
        data.extend_from_slice(tag.as_bytes());
        data.extend_from_slice(&body);
        if let Err(e) = crate::fsutil::write_atomic(&self.path(key), &data) {
            tracing::warn!(error = %e, "could not write compiled code to the cache");
        }
    }
}

/// Appends a length-prefixed string (the meter's export names).
fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn take_str(data: &[u8]) -> Option<(String, &[u8])> {
    let len = u32::from_le_bytes(data.get(..4)?.try_into().ok()?) as usize;
    let s = std::str::from_utf8(data.get(4..4 + len)?).ok()?.to_string();
    Some((s, &data[4 + len..]))
}

// Deserializing is unsafe because the bytes are trusted to be code wasmtime
// produced. `load` only calls these after checking this host's keyed tag.
#[allow(unsafe_code)]
fn deserialize_module(engine: &Engine, artifact: &[u8]) -> wasmtime::Result<Module> {
    // SAFETY: `artifact` was serialized by this host (tag checked by caller)
    // with an engine of the same compatibility hash (folder name).
    unsafe { Module::deserialize(engine, artifact) }
}

#[allow(unsafe_code)]
fn deserialize_component(engine: &Engine, artifact: &[u8]) -> wasmtime::Result<Component> {
    // SAFETY: as for `deserialize_module`.
    unsafe { Component::deserialize(engine, artifact) }
}
