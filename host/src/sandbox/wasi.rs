//! The WASI view a task gets: only what the issue of determinism allows.
//!
//! No environment, no network, no host clocks, no host randomness. Clocks are
//! virtual (they advance by a fixed step at each read, from a fixed epoch) and
//! random bytes come from a generator seeded with the task id, so that the
//! same task produces the same bytes on every run and on every replica.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use std::pin::Pin;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use rand_wasi::SeedableRng;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::pipe::MemoryInputPipe;
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtxBuilder};

/// Where the virtual wall clock starts: 2024-01-01T00:00:00Z. Fixed, so a
/// guest that prints the date prints the same date on every replica.
const VIRTUAL_EPOCH_SECS: u64 = 1_704_067_200;
/// How far a virtual clock moves per read: 1 µs. Programs that time loops
/// by reading the clock still see time pass and terminate.
const TICK_NANOS: u64 = 1_000;

/// Largest single random request a guest may make (WASI's default is 64 MiB,
/// which a guest could use to make the host allocate).
const MAX_RANDOM_BYTES: u64 = 1 << 20;

/// A task's virtual time, in ticks since the task started. Both clocks read
/// it (each read moves it one tick), and a sleep moves it forward by the
/// time slept instead of blocking: a guest cannot hold a worker for real
/// time that fuel does not see, and every replica sees the same readings.
#[derive(Clone, Default)]
pub(crate) struct VirtualTime(Arc<AtomicU64>);

impl VirtualTime {
    /// Nanoseconds since the start, without moving the clock.
    pub(crate) fn peek_nanos(&self) -> u64 {
        self.0.load(Ordering::Relaxed).saturating_mul(TICK_NANOS)
    }

    fn read_nanos(&self) -> u64 {
        (self.0.fetch_add(1, Ordering::Relaxed) + 1).saturating_mul(TICK_NANOS)
    }

    /// Moves the clock forward to `nanos` since the start (never back).
    pub(crate) fn advance_to(&self, nanos: u64) {
        self.0
            .fetch_max(nanos.div_ceil(TICK_NANOS), Ordering::Relaxed);
    }
}

/// A wall clock that reads a fixed epoch plus the task's virtual time.
struct VirtualWallClock(VirtualTime);

impl HostWallClock for VirtualWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_nanos(TICK_NANOS)
    }
    fn now(&self) -> Duration {
        Duration::from_secs(VIRTUAL_EPOCH_SECS) + Duration::from_nanos(self.0.read_nanos())
    }
}

/// A monotonic clock that reads the task's virtual time.
struct VirtualMonotonicClock(VirtualTime);

impl HostMonotonicClock for VirtualMonotonicClock {
    fn resolution(&self) -> u64 {
        TICK_NANOS
    }
    fn now(&self) -> u64 {
        self.0.read_nanos()
    }
}

/// Nanoseconds of the virtual wall clock's epoch (to turn absolute wall
/// deadlines into virtual time).
pub(crate) const VIRTUAL_EPOCH_NANOS: u64 = VIRTUAL_EPOCH_SECS * 1_000_000_000;

/// The pipes of one task, kept so the host can read them after the run.
pub(crate) struct Stdio {
    pub(crate) stdout: BoundedOutput,
    pub(crate) stderr: BoundedOutput,
    /// The task's clocks, for the sleep functions the host answers itself.
    pub(crate) time: VirtualTime,
    /// The task's read-only data files (name, host path), for
    /// `biop2p:workload/data` (`sandbox::tensor`).
    pub(crate) data: Vec<(String, std::path::PathBuf)>,
}

/// The output limit was crossed: the write that crossed it traps the guest.
#[derive(Debug)]
pub(crate) struct OutputOverflow;

impl std::fmt::Display for OutputOverflow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("output limit exceeded")
    }
}

impl std::error::Error for OutputOverflow {}

/// An in-memory stdout/stderr with a hard cap. Unlike wasmtime-wasi's memory
/// pipe, which reports a full buffer as a closed stream (a guest that
/// ignores the error then spins until its fuel is gone), a write beyond the
/// cap traps the guest at once, and the flag lets the host name the failure
/// `output_limit`.
#[derive(Clone)]
pub(crate) struct BoundedOutput {
    buf: Arc<Mutex<Vec<u8>>>,
    cap: usize,
    overflowed: Arc<AtomicBool>,
}

impl BoundedOutput {
    fn new(cap: usize) -> Self {
        BoundedOutput {
            buf: Arc::default(),
            cap,
            overflowed: Arc::default(),
        }
    }

    /// Takes the bytes out without copying.
    pub(crate) fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.buf.lock().expect("pipe lock"))
    }

    /// Whether the guest tried to write past the cap.
    pub(crate) fn overflowed(&self) -> bool {
        self.overflowed.load(Ordering::Relaxed)
    }

    fn push(&self, bytes: &[u8]) -> bool {
        let mut buf = self.buf.lock().expect("pipe lock");
        if bytes.len() > self.cap - buf.len() {
            self.overflowed.store(true, Ordering::Relaxed);
            return false;
        }
        buf.extend_from_slice(bytes);
        true
    }
}

impl OutputStream for BoundedOutput {
    fn write(&mut self, bytes: bytes::Bytes) -> Result<(), StreamError> {
        if self.push(&bytes) {
            Ok(())
        } else {
            Err(StreamError::Trap(wasmtime::Error::new(OutputOverflow)))
        }
    }
    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }
    fn check_write(&mut self) -> Result<usize, StreamError> {
        let used = self.buf.lock().expect("pipe lock").len();
        if used < self.cap {
            Ok(self.cap - used)
        } else {
            // Full: the guest wants to write more than it may.
            self.overflowed.store(true, Ordering::Relaxed);
            Err(StreamError::Trap(wasmtime::Error::new(OutputOverflow)))
        }
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for BoundedOutput {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for BoundedOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        b: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.push(b) {
            Poll::Ready(Ok(b.len()))
        } else {
            Poll::Ready(Err(std::io::Error::other(OutputOverflow)))
        }
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl IsTerminal for BoundedOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for BoundedOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

/// Bytes of stderr kept per task; beyond it the guest's write fails.
pub(crate) const STDERR_LIMIT: usize = 64 << 10;

/// A WASI builder with this task's deterministic, closed-world settings.
/// `seed` is derived from the task id; `input` becomes stdin.
pub(crate) fn builder(
    seed: [u8; 32],
    input: Vec<u8>,
    output_limit: usize,
    args: &[String],
) -> (WasiCtxBuilder, Stdio) {
    let stdout = BoundedOutput::new(output_limit);
    let stderr = BoundedOutput::new(STDERR_LIMIT);
    let time = VirtualTime::default();
    let mut b = WasiCtxBuilder::new();
    b.stdin(MemoryInputPipe::new(input))
        .stdout(stdout.clone())
        .stderr(stderr.clone())
        .arg("task")
        .args(args)
        .wall_clock(VirtualWallClock(time.clone()))
        .monotonic_clock(VirtualMonotonicClock(time.clone()))
        .secure_random(rand_wasi::rngs::StdRng::from_seed(seed))
        .insecure_random(rand_wasi::rngs::StdRng::from_seed(blake3::derive_key(
            "biop2p insecure random",
            &seed,
        )))
        .insecure_random_seed(u128::from_le_bytes(
            seed[..16].try_into().expect("16 bytes"),
        ))
        .max_random_size(MAX_RANDOM_BYTES)
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false);
    (
        b,
        Stdio {
            stdout,
            stderr,
            time,
            data: Vec::new(),
        },
    )
}
