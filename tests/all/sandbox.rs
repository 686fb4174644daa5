//! The sandbox against hostile guests, determinism, caching and scratch.

use std::sync::OnceLock;

use biop2p::sandbox::{
    CacheSource, ErrorKind, Sandbox, SandboxConfig, Task, TaskResult, WasmModule,
};
use biop2p::workloads;

use crate::guests;

/// A fixed fuel rate so tests do not calibrate (and `timeout` is exact).
const FUEL_PER_SEC: u64 = 1_000_000_000;

/// One sandbox shared by the tests, as a host shares one between tasks:
/// every hostile guest is followed by a good task on the same sandbox.
fn sandbox() -> &'static Sandbox {
    static S: OnceLock<Sandbox> = OnceLock::new();
    S.get_or_init(|| {
        Sandbox::new(SandboxConfig {
            fuel_per_sec: Some(FUEL_PER_SEC),
            ..SandboxConfig::default()
        })
        .expect("sandbox")
    })
}

fn wat_task(wat: &str) -> Task {
    let mut t = Task::new(WasmModule::new(wat.as_bytes()), Vec::new());
    t.limits.fuel = 50_000_000;
    t.limits.memory_bytes = 16 << 20;
    t
}

fn kind(r: &TaskResult) -> Option<ErrorKind> {
    r.outcome.as_ref().err().map(|e| e.kind())
}

/// After any failure, the same sandbox still runs a good task.
fn assert_still_serves() {
    let r = sandbox().run(&Task::new(
        WasmModule::new(workloads::ECHO),
        b"ping".to_vec(),
    ));
    assert_eq!(r.outcome.expect("echo after a hostile guest"), b"ping");
}

fn assert_kind(task: &Task, want: ErrorKind) -> TaskResult {
    let r = sandbox().run(task);
    assert_eq!(kind(&r), Some(want), "outcome: {:?}", r.outcome);
    assert_still_serves();
    r
}

#[test]
fn infinite_loop_runs_out_of_fuel() {
    let r = assert_kind(&wat_task(guests::INFINITE_LOOP), ErrorKind::FuelExhausted);
    assert_eq!(r.counters.fuel_used, 50_000_000);
}

#[test]
fn infinite_loop_with_timeout_times_out() {
    let mut t = wat_task(guests::INFINITE_LOOP);
    t.limits.fuel = u64::MAX / 4;
    t.limits.timeout_ms = Some(20);
    let r = assert_kind(&t, ErrorKind::Timeout);
    // 20 ms at the fixed rate of 1e9 fuel/s.
    assert_eq!(r.counters.fuel_used, 20_000_000);
}

#[test]
fn memory_bomb_hits_memory_limit() {
    let r = assert_kind(&wat_task(guests::MEMORY_BOMB), ErrorKind::MemoryLimit);
    assert!(r.counters.peak_memory_bytes <= 16 << 20);
    assert!(r.counters.peak_memory_bytes >= 15 << 20);
}

#[test]
fn deep_recursion_overflows_the_stack() {
    assert_kind(&wat_task(guests::DEEP_RECURSION), ErrorKind::StackOverflow);
}

#[test]
fn trap_is_a_trap() {
    let r = assert_kind(&wat_task(guests::TRAP), ErrorKind::Trap);
    assert!(r.outcome.unwrap_err().to_string().contains("unreachable"));
}

#[test]
fn huge_data_segment_hits_memory_limit() {
    assert_kind(&wat_task(guests::HUGE_DATA), ErrorKind::MemoryLimit);
}

#[test]
fn table_bomb_hits_resource_limit() {
    assert_kind(&wat_task(guests::TABLE_BOMB), ErrorKind::ResourceLimit);
}

#[test]
fn output_flood_hits_output_limit() {
    let mut t = wat_task(guests::OUTPUT_FLOOD);
    t.limits.output_bytes = 1 << 20;
    assert_kind(&t, ErrorKind::OutputLimit);
}

#[test]
fn garbage_and_truncated_binaries_are_invalid() {
    for bytes in [
        b"this is not wasm at all".to_vec(),
        b"\0asm".to_vec(),
        workloads::ECHO[..workloads::ECHO.len() / 2].to_vec(),
        vec![0u8; 1000],
    ] {
        let t = Task::new(WasmModule::new(bytes), Vec::new());
        assert_kind(&t, ErrorKind::InvalidModule);
    }
}

#[test]
fn module_without_start_is_invalid() {
    let r = assert_kind(&wat_task(guests::NO_START), ErrorKind::InvalidModule);
    assert!(r.outcome.unwrap_err().to_string().contains("_start"));
}

/// Scratch tests use their own sandbox and data dir, so they can check that
/// the scratch root is empty after every task.
#[test]
fn scratch_escapes_fail_limits_hold_and_dirs_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let sb = Sandbox::new(SandboxConfig {
        fuel_per_sec: Some(FUEL_PER_SEC),
        data_dir: Some(dir.path().to_path_buf()),
        ..SandboxConfig::default()
    })
    .unwrap();
    let root = dir.path().join("scratch");
    let assert_empty = |what: &str| {
        let left: Vec<_> = std::fs::read_dir(&root).unwrap().flatten().collect();
        assert!(
            left.is_empty(),
            "scratch left behind after {what}: {left:?}"
        );
    };

    // Escapes: `..`, an absolute path, a symlink out, `..` as a directory.
    let mut t = wat_task(guests::SCRATCH_ESCAPE);
    t.scratch = true;
    let out = sb.run(&t).outcome.expect("escape probe runs");
    assert_eq!(out.len(), 4);
    for (i, errno) in out.iter().enumerate() {
        assert_ne!(*errno, 0, "escape attempt {i} succeeded");
    }
    assert_empty("the escape probe (which created a file)");

    // Within the limit: fine, and removed.
    let mut t = wat_task(guests::SCRATCH_FILLER);
    t.scratch = true;
    t.limits.scratch_bytes = 2 << 20;
    t.input = vec![1];
    assert!(sb.run(&t).outcome.is_ok(), "1 MiB fits in 2 MiB");
    assert_empty("success");

    // Over the limit: disk_limit, and removed.
    t.input = vec![4];
    let r = sb.run(&t);
    assert_eq!(kind(&r), Some(ErrorKind::DiskLimit), "{:?}", r.outcome);
    assert_empty("disk_limit");

    // A task that traps after writing its file: removed.
    t.input = vec![3];
    t.limits.scratch_bytes = 8 << 20;
    assert_eq!(kind(&sb.run(&t)), Some(ErrorKind::Trap));
    assert_empty("a failure");

    // Without --scratch there is no /scratch at all.
    let mut t = wat_task(guests::SCRATCH_FILLER);
    t.input = vec![1];
    assert_eq!(kind(&sb.run(&t)), Some(ErrorKind::Trap));
}

#[test]
fn same_task_same_output_and_fuel() {
    let mut input = 64u32.to_le_bytes().to_vec();
    input.extend_from_slice(&7u32.to_le_bytes());
    let t = Task::new(WasmModule::new(workloads::MATMUL), input);
    let a = sandbox().run(&t);
    let b = sandbox().run(&t);
    assert_eq!(a.outcome.as_ref().unwrap(), b.outcome.as_ref().unwrap());
    assert_eq!(a.outcome.as_ref().unwrap().len(), 64 * 64 * 4);
    assert_eq!(a.counters.fuel_used, b.counters.fuel_used);
    assert_eq!(a.counters.peak_memory_bytes, b.counters.peak_memory_bytes);
    assert_eq!(a.counters.output_hash, b.counters.output_hash);
    assert!(a.counters.fuel_used > 64 * 64 * 64, "matmul costs fuel");
}

#[test]
fn clocks_and_randomness_are_deterministic() {
    let t = wat_task(guests::CLOCKS_AND_RANDOM);
    let a = sandbox().run(&t).outcome.unwrap();
    let b = sandbox().run(&t).outcome.unwrap();
    assert_eq!(a.len(), 32);
    assert_eq!(a, b, "same task, same clock and random bytes");
    let wall = u64::from_le_bytes(a[0..8].try_into().unwrap());
    assert!(
        wall > 1_700_000_000_000_000_000,
        "virtual wall clock is a plausible date"
    );
    assert!(
        a[16..32].iter().any(|&b| b != 0),
        "random bytes are not all zero"
    );
    // A different task (other input) gets other random bytes.
    let mut t2 = t.clone();
    t2.input = b"other".to_vec();
    let c = sandbox().run(&t2).outcome.unwrap();
    assert_ne!(a[16..32], c[16..32]);
}

#[test]
fn sdk_workload_round_trips() {
    let t = Task::new(WasmModule::new(workloads::ECHO), b"round trip".to_vec());
    let r = sandbox().run(&t);
    assert_eq!(r.outcome.unwrap(), b"round trip");
    assert!(r.counters.fuel_used > 0);
    assert!(r.counters.peak_memory_bytes > 0);
    assert_eq!(r.counters.output_bytes, 10);
    assert_eq!(
        r.counters.output_hash,
        *blake3::hash(b"round trip").as_bytes()
    );
}

#[test]
fn wasi_p1_command_round_trips_with_argv() {
    let mut t = Task::new(WasmModule::new(workloads::ECHO_P1), b"from stdin".to_vec());
    t.args = vec!["alpha".into(), "beta".into()];
    let out = sandbox().run(&t).outcome.unwrap();
    assert_eq!(out, b"alpha beta\nfrom stdin");
}

#[test]
fn compiled_code_cache_is_hit() {
    let dir = tempfile::tempdir().unwrap();
    let config = SandboxConfig {
        fuel_per_sec: Some(FUEL_PER_SEC),
        data_dir: Some(dir.path().to_path_buf()),
        ..SandboxConfig::default()
    };
    let t = Task::new(WasmModule::new(workloads::ECHO_P1), b"x".to_vec());
    let s1 = Sandbox::new(config.clone()).unwrap();
    assert_eq!(s1.run(&t).cache, Some(CacheSource::Compiled));
    assert_eq!(s1.run(&t).cache, Some(CacheSource::Memory));
    drop(s1);
    // A new process on the same data dir loads the artifact from disk.
    let s2 = Sandbox::new(config.clone()).unwrap();
    let r = s2.run(&t);
    assert_eq!(r.cache, Some(CacheSource::Disk));
    assert_eq!(r.outcome.unwrap(), b"x");
    drop(s2);
    // A tampered artifact is not loaded: it is recompiled.
    let cache = dir.path().join("code-cache");
    let mut tampered = 0;
    for sub in std::fs::read_dir(&cache).unwrap().flatten() {
        if sub.path().is_dir() {
            for f in std::fs::read_dir(sub.path()).unwrap().flatten() {
                let mut bytes = std::fs::read(f.path()).unwrap();
                let last = bytes.len() - 1;
                bytes[last] ^= 0xff;
                std::fs::write(f.path(), bytes).unwrap();
                tampered += 1;
            }
        }
    }
    assert!(tampered > 0);
    let s3 = Sandbox::new(config).unwrap();
    let r = s3.run(&t);
    assert_eq!(r.cache, Some(CacheSource::Compiled));
    assert_eq!(r.outcome.unwrap(), b"x");
}

#[test]
fn guest_error_is_reported() {
    let r = assert_kind(&wat_task(guests::EXIT_3), ErrorKind::GuestError);
    assert!(r.outcome.unwrap_err().to_string().contains("exit code 3"));
}

/// Scratch directories are reused (moved to `scratch-spare` when emptied):
/// a later task never sees what an earlier one left, the spares are empty,
/// and the scratch root holds only running tasks' directories.
#[test]
fn reused_scratch_dirs_start_empty() {
    let dir = tempfile::tempdir().unwrap();
    let sb = Sandbox::new(SandboxConfig {
        fuel_per_sec: Some(FUEL_PER_SEC),
        data_dir: Some(dir.path().to_path_buf()),
        ..SandboxConfig::default()
    })
    .unwrap();
    let mut leave = wat_task(guests::SCRATCH_ESCAPE);
    leave.scratch = true;
    let mut probe = wat_task(guests::SCRATCH_PROBE);
    probe.scratch = true;
    for round in 0..20 {
        // Creates `left-behind.txt` and the symlink `out`.
        sb.run(&leave).outcome.expect("escape probe runs");
        let out = sb.run(&probe).outcome.expect("scratch probe runs");
        assert_eq!(out.len(), 2);
        assert!(
            out.iter().all(|&errno| errno != 0),
            "round {round}: an earlier task's file is visible: {out:?}"
        );
    }
    let root = dir.path().join("scratch");
    assert_eq!(std::fs::read_dir(&root).unwrap().count(), 0);
    let spares: Vec<_> = std::fs::read_dir(dir.path().join("scratch-spare"))
        .unwrap()
        .flatten()
        .collect();
    assert!(!spares.is_empty(), "emptied dirs are kept for reuse");
    assert!(spares.len() <= 2, "one task at a time needs one spare");
    for s in spares {
        assert_eq!(std::fs::read_dir(s.path()).unwrap().count(), 0);
    }
}

/// The benchmark-only unmetered engine runs the same task to the same
/// output; it reports no fuel.
#[test]
fn unmetered_engine_gives_the_same_output() {
    let sb = Sandbox::new(SandboxConfig {
        fuel_per_sec: Some(FUEL_PER_SEC),
        engine: biop2p::sandbox::EngineConfig {
            metering: biop2p::sandbox::Metering::Off,
            ..Default::default()
        },
        ..SandboxConfig::default()
    })
    .unwrap();
    let mut t = Task::new(WasmModule::new(workloads::ECHO_P1), b"same".to_vec());
    t.args = vec!["x".into()];
    let metered = sandbox().run(&t);
    let unmetered = sb.run(&t);
    assert_eq!(metered.outcome.unwrap(), unmetered.outcome.unwrap());
    assert!(metered.counters.fuel_used > 0);
    assert_eq!(unmetered.counters.fuel_used, 0);
}

/// A guest that sleeps does not hold a worker: its clocks jump to the
/// deadline (WASI p1 `poll_oneoff` and p2 `subscribe-duration`), the same on
/// every run. Were sleeps real, these would take an hour and a day.
#[test]
fn sleeping_guests_sleep_in_virtual_time() {
    let mut t = wat_task(guests::SLEEP_AN_HOUR);
    t.limits.timeout_ms = Some(60_000);
    let a = sandbox().run(&t);
    assert_eq!(a.outcome.as_deref().unwrap(), b"ok");
    let b = sandbox().run(&t);
    assert_eq!(a.counters.fuel_used, b.counters.fuel_used);

    let t = Task::new(WasmModule::new(workloads::SLEEP), b"86400".to_vec());
    let r = sandbox().run(&t);
    assert_eq!(r.outcome.unwrap(), b"slept 86400.000 s");
    assert_still_serves();
}
