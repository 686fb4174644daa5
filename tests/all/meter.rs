//! Our deterministic meter: hostile guests end within their budget with
//! their error kind, metered and unmetered runs agree on output, counts are
//! the same on every run and on both engines, wasmtime's fuel orders tasks
//! by cost the same way, and a guest cannot reach the meter's own items by
//! naming them.

use biop2p::sandbox::{
    EngineConfig, ErrorKind, Metering, Sandbox, SandboxConfig, Task, TaskResult, WasmModule,
};
use biop2p::workloads;

const RATE: u64 = 1_000_000_000;

fn sandbox(metering: Metering) -> Sandbox {
    Sandbox::new(SandboxConfig {
        engine: EngineConfig {
            metering,
            pool_slots: 16,
            ..EngineConfig::default()
        },
        fuel_per_sec: Some(RATE),
        ..SandboxConfig::default()
    })
    .expect("sandbox")
}

fn wat(text: &str, budget: u64) -> Task {
    let mut t = Task::new(WasmModule::new(text.as_bytes()), Vec::new());
    t.limits.fuel = budget;
    t.limits.memory_bytes = 16 << 20;
    t
}

fn kind(r: &TaskResult) -> Option<ErrorKind> {
    r.outcome.as_ref().err().map(|e| e.kind())
}

/// `memory.fill` of 4 GiB, charged by its size before it runs.
const FILL_4GIB: &str = r#"(module (memory 1)
  (func (export "_start") (memory.fill (i32.const 0) (i32.const 0) (i32.const -1))))"#;

/// `table.grow` of 100 M elements, over and over (each one refused by the
/// table limit, so only the meter ends it).
const TABLE_GROW_LOOP: &str = r#"(module (table 1 funcref)
  (func (export "_start")
    (loop (drop (table.grow (ref.null func) (i32.const 100000000))) (br 0))))"#;

/// Spins on a failing host call: `fd_write` to a closed descriptor.
const FAILING_HOST_CALL: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $w (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start") (loop (drop (call $w (i32.const 99) (i32.const 0) (i32.const 0) (i32.const 8))) (br 0))))"#;

const LOOP: &str = r#"(module (func (export "_start") (loop (br 0))))"#;

const RECURSION: &str = r#"(module (func $f (export "_start") (call $f)))"#;

#[test]
fn hostile_guests_end_within_their_budget() {
    let s = sandbox(Metering::Meter);
    let budget = 1_000_000;
    for (name, guest, want) in [
        ("loop", LOOP, ErrorKind::FuelExhausted),
        ("fill 4 GiB", FILL_4GIB, ErrorKind::FuelExhausted),
        ("table.grow loop", TABLE_GROW_LOOP, ErrorKind::FuelExhausted),
        (
            "failing host call",
            FAILING_HOST_CALL,
            ErrorKind::FuelExhausted,
        ),
        ("recursion", RECURSION, ErrorKind::StackOverflow),
    ] {
        let r = s.run(&wat(guest, budget));
        assert_eq!(kind(&r), Some(want), "{name}: {:?}", r.outcome);
        assert!(
            r.counters.fuel_used <= budget,
            "{name} used {}",
            r.counters.fuel_used
        );
        if want == ErrorKind::FuelExhausted {
            assert_eq!(r.counters.fuel_used, budget, "{name}");
        }
    }
}

#[test]
fn timeout_is_the_budget_at_the_calibrated_rate() {
    let s = sandbox(Metering::Meter);
    let mut t = wat(LOOP, u64::MAX / 4);
    t.limits.timeout_ms = Some(3);
    let r = s.run(&t);
    assert_eq!(kind(&r), Some(ErrorKind::Timeout));
    assert_eq!(r.counters.fuel_used, 3 * RATE / 1000);
}

fn workload_tasks() -> Vec<Task> {
    let mut mm = 32u32.to_le_bytes().to_vec();
    mm.extend_from_slice(&7u32.to_le_bytes());
    let mut p1 = Task::new(WasmModule::new(workloads::ECHO_P1), b"p1 input".to_vec());
    p1.args = vec!["a".into(), "b".into()];
    vec![
        Task::new(WasmModule::new(workloads::ECHO), b"echo".to_vec()),
        p1,
        Task::new(WasmModule::new(workloads::MATMUL), mm),
        Task::new(WasmModule::new(workloads::SLEEP), b"5".to_vec()),
        wat(
            r#"(module (func (export "_start") unreachable))"#,
            1_000_000,
        ),
    ]
}

#[test]
fn metered_and_unmetered_runs_agree_and_counts_repeat() {
    let meter = sandbox(Metering::Meter);
    let off = sandbox(Metering::Off);
    for mut t in workload_tasks() {
        let a = meter.run(&t);
        let b = meter.run(&t);
        let u = off.run(&t);
        assert_eq!(a.outcome.as_ref().ok(), u.outcome.as_ref().ok());
        assert_eq!(kind(&a), kind(&u));
        assert_eq!(a.counters.output_hash, u.counters.output_hash);
        assert_eq!(a.counters.fuel_used, b.counters.fuel_used);
        assert!(a.counters.fuel_used > 0);
        t.portable = true;
        let p = meter.run(&t);
        assert_eq!(
            p.counters.fuel_used, a.counters.fuel_used,
            "portable engine"
        );
        assert_eq!(p.outcome.as_ref().ok(), a.outcome.as_ref().ok());
    }
}

/// A loop of `n` iterations with some arithmetic, as a WASI command.
fn loop_of(n: u32) -> String {
    format!(
        r#"(module (func (export "_start") (local $i i32) (local $a i32)
          (loop $l
            (local.set $a (i32.add (local.get $a) (i32.mul (local.get $i) (i32.const 3))))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br_if $l (i32.lt_u (local.get $i) (i32.const {n}))))))"#
    )
}

#[test]
fn wasmtime_fuel_orders_tasks_by_cost_the_same_way() {
    let meter = sandbox(Metering::Meter);
    let fuel = sandbox(Metering::WasmtimeFuel);
    let mut mm = 48u32.to_le_bytes().to_vec();
    mm.extend_from_slice(&1u32.to_le_bytes());
    let tasks = [
        wat(&loop_of(10), u64::MAX / 4),
        Task::new(WasmModule::new(workloads::ECHO_P1), b"x".to_vec()),
        wat(&loop_of(100_000), u64::MAX / 4),
        Task::new(WasmModule::new(workloads::MATMUL), mm),
        wat(&loop_of(10_000_000), u64::MAX / 4),
    ];
    let order = |s: &Sandbox| {
        let mut v: Vec<(u64, usize)> = tasks
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let r = s.run(t);
                assert!(r.outcome.is_ok(), "{i}: {:?}", r.outcome);
                (r.counters.fuel_used, i)
            })
            .collect();
        v.sort();
        v.into_iter().map(|(_, i)| i).collect::<Vec<_>>()
    };
    assert_eq!(order(&meter), order(&fuel));
}

#[test]
fn names_like_the_meters_own_do_not_reach_the_counter() {
    let s = sandbox(Metering::Meter);
    // The guest exports its own `biop2p_meter` global (set far above any
    // budget by its start function) and a `biop2p_start`; the meter picks
    // other names, so the loop still ends at the budget.
    let clash = r#"(module
      (global $fake (export "biop2p_meter") (mut i64) (i64.const 0))
      (func $s (global.set $fake (i64.const 0x7fffffffffffffff)))
      (func (export "biop2p_start"))
      (start $s)
      (func (export "_start") (loop (br 0))))"#;
    let r = s.run(&wat(clash, 2_000_000));
    assert_eq!(kind(&r), Some(ErrorKind::FuelExhausted), "{:?}", r.outcome);
    assert_eq!(r.counters.fuel_used, 2_000_000);
    // Importing the meter's module name is just an unknown import.
    let import = r#"(module (import "biop2p:meter" "g" (global (mut i64)))
      (func (export "_start")))"#;
    assert_eq!(
        kind(&s.run(&wat(import, 1_000_000))),
        Some(ErrorKind::InvalidModule)
    );
    // A component naming the meter's import is refused, not run unmetered.
    let component = r#"(component
      (import "biop2p-meter-sync" (func (param "g" s64) (result s64))))"#;
    assert_eq!(
        kind(&s.run(&wat(component, 1_000_000))),
        Some(ErrorKind::InvalidModule)
    );
}

#[test]
fn a_start_function_runs_metered() {
    let s = sandbox(Metering::Meter);
    let spin_at_start = r#"(module (func $s (loop (br 0))) (start $s)
      (func (export "_start")))"#;
    let r = s.run(&wat(spin_at_start, 1_000_000));
    assert_eq!(kind(&r), Some(ErrorKind::FuelExhausted), "{:?}", r.outcome);
}

/// A matmul component task of 64×64 (seed 3), `reps` repetitions (it
/// reports progress to the host after each), with a budget of `fuel`.
fn matmul(reps: u32, fuel: u64) -> Task {
    let input = [64u32, 3, reps, 1]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let mut t = Task::new(WasmModule::new(workloads::MATMUL), input);
    t.limits.fuel = fuel;
    t
}

fn noted(mut t: Task, every: u64, note: impl Fn(u32, u64) -> bool + Send + Sync + 'static) -> Task {
    t.debit = Some(biop2p::sandbox::Debit {
        every,
        note: std::sync::Arc::new(note),
    });
    t
}

/// Debit notes pause a component at its first host call past each note
/// boundary and go on once the hook says so: the output and the count are
/// the same as without notes (so replicas on hosts with other note
/// intervals still agree), each note states the work done so far, and
/// there is one per boundary the guest crossed between host calls.
#[test]
fn debit_notes_pause_at_host_calls_past_each_boundary_and_change_neither_output_nor_count() {
    use std::sync::{Arc, Mutex};
    const REPS: u32 = 12;
    let s = sandbox(Metering::Meter);
    let plain = s.run(&matmul(REPS, 1 << 40));
    assert!(plain.outcome.is_ok(), "{:?}", plain.outcome);
    let used = plain.counters.fuel_used;
    for every in [used / 7, used / 3, used / 40] {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let r = s.run(&noted(matmul(REPS, 1 << 40), every, move |seq, fuel| {
            log.lock().unwrap().push((seq, fuel));
            true
        }));
        assert!(r.outcome.is_ok(), "every {every}: {:?}", r.outcome.err());
        assert_eq!(r.outcome.as_ref().ok(), plain.outcome.as_ref().ok());
        assert_eq!(r.counters.fuel_used, used, "every {every}");
        let notes = seen.lock().unwrap().clone();
        assert!(!notes.is_empty(), "every {every}: no note");
        let mut next = every;
        for (i, &(seq, fuel)) in notes.iter().enumerate() {
            assert_eq!(seq as usize, i + 1);
            assert!(
                fuel >= next && fuel < used,
                "note {seq} at {fuel}, due at {next}"
            );
            next = (fuel / every + 1) * every;
        }
        // A rep's work is about used / REPS: with boundaries closer than
        // that, some notes cover more than one.
        if every >= used / u64::from(REPS) {
            assert!(
                notes.len() as u64 >= (used - 1) / every - 1,
                "every {every}: {notes:?}"
            );
        }
    }
    // The budget still ends the task where it would without notes.
    let cap = used / 3;
    let short = s.run(&matmul(REPS, cap));
    let capped = s.run(&noted(matmul(REPS, cap), cap / 4, |_, _| true));
    assert_eq!(kind(&short), Some(ErrorKind::FuelExhausted));
    assert_eq!(kind(&capped), Some(ErrorKind::FuelExhausted));
    assert_eq!(capped.counters.fuel_used, short.counters.fuel_used);
}

/// A note the hook refuses stops the task there, `unpaid`, with the work
/// done so far as its count: past the last accepted note, the host did at
/// most what the guest ran between two host calls.
#[test]
fn a_refused_debit_note_stops_the_task_unpaid() {
    let s = sandbox(Metering::Meter);
    let used = s.run(&matmul(10, 1 << 40)).counters.fuel_used;
    let every = used / 5;
    let r = s.run(&noted(matmul(10, 1 << 40), every, |seq, _| seq < 3));
    assert_eq!(kind(&r), Some(ErrorKind::Unpaid), "{:?}", r.outcome);
    let done = r.counters.fuel_used;
    assert!(
        done >= 3 * every && done < 3 * every + used / 10 + 1,
        "{done}"
    );
    // The sandbox is fine afterwards.
    assert!(s.run(&matmul(1, 1 << 40)).outcome.is_ok());
}
