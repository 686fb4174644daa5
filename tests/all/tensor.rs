//! The host's tensor and data interfaces under the meter: an operation is
//! charged by its shapes before any work, a task that cannot pay ends
//! `fuel_exhausted` there, bad shapes and names come back to the guest as
//! errors that say what is wrong, and counts repeat exactly. And the
//! meter's hostile guests as a component (`tests/all/meter.rs` has them as
//! core modules): each ends with its error kind within its budget.

use std::sync::Arc;

use biop2p::sandbox::{
    DataSource, EngineConfig, ErrorKind, Metering, Sandbox, SandboxConfig, SandboxError, Task,
    TaskData, TaskResult, WasmModule,
};
use biop2p::workloads;

fn sandbox(metering: Metering) -> Sandbox {
    Sandbox::new(SandboxConfig {
        engine: EngineConfig {
            metering,
            pool_slots: 8,
            ..EngineConfig::default()
        },
        fuel_per_sec: Some(1_000_000_000),
        ..SandboxConfig::default()
    })
    .expect("sandbox")
}

fn probe(input: &str, budget: u64) -> Task {
    let mut t = Task::new(
        WasmModule::new(workloads::TENSOR_PROBE),
        input.as_bytes().to_vec(),
    );
    t.limits.fuel = budget;
    t.limits.memory_bytes = 256 << 20;
    t
}

fn matmul(m: u64, k: u64, n: u64, spin: u64, budget: u64) -> Task {
    probe(
        &format!("matmul {m} {k} {n} {} {} {spin}", m * k, n * k),
        budget,
    )
}

fn output(r: &TaskResult) -> String {
    match &r.outcome {
        Ok(o) => String::from_utf8_lossy(o).into_owned(),
        Err(e) => panic!("task failed: {}: {e}", e.kind()),
    }
}

fn assert_exhausted(r: &TaskResult) {
    assert_eq!(
        r.outcome.as_ref().err().map(|e| e.kind()),
        Some(ErrorKind::FuelExhausted),
        "{:?}",
        r.outcome
    );
}

fn guest_error(r: &TaskResult) -> String {
    match &r.outcome {
        Err(SandboxError::GuestError(m)) => m.clone(),
        other => panic!("want guest_error, got {other:?}"),
    }
}

/// What the tensor interface charges for one `matmul-bt`: one unit per
/// multiply-add and one per 16 values copied (`tensor_kernel::Shape::cost`).
fn cost(m: u64, k: u64, n: u64) -> u64 {
    m * k * n + (m * k + n * k + m * n).div_ceil(16)
}

#[test]
fn a_product_is_charged_by_its_shape_and_the_count_repeats() {
    let s = sandbox(Metering::Meter);
    let budget = 10_000_000_000;
    let small = s.run(&matmul(32, 64, 48, 0, budget));
    // Row sums of a (t % 7) times b (t % 5), computed by the host.
    assert!(output(&small).starts_with("ok 1536 "), "{}", output(&small));
    let again = s.run(&matmul(32, 64, 48, 0, budget));
    assert_eq!(small.counters.fuel_used, again.counters.fuel_used);
    assert_eq!(small.outcome.as_ref().ok(), again.outcome.as_ref().ok());
    // Eight times the rows: the count grows by at least the difference in
    // the charge (the guest's own work to build the operands comes on top,
    // a few units per value).
    let big = s.run(&matmul(256, 64, 48, 0, budget));
    assert!(output(&big).starts_with("ok 12288 "));
    let grew = big.counters.fuel_used - small.counters.fuel_used;
    let charged = cost(256, 64, 48) - cost(32, 64, 48);
    assert!(
        grew >= charged && grew < charged + 200 * (256 - 32) * 64,
        "the count grew by {grew}, the charge by {charged}"
    );
    // The portable engine gives the same bits and the same count.
    let portable = {
        let mut t = matmul(32, 64, 48, 0, budget);
        t.portable = true;
        s.run(&t)
    };
    assert_eq!(portable.counters.fuel_used, small.counters.fuel_used);
    assert_eq!(portable.outcome.as_ref().ok(), small.outcome.as_ref().ok());
}

#[test]
fn a_product_the_task_cannot_pay_for_ends_fuel_exhausted_at_its_budget() {
    let s = sandbox(Metering::Meter);
    // 2048³ is 8.6 G multiply-adds; the operands (4 M values each) take
    // the guest some tens of millions of units to build.
    let budget = 2_000_000_000;
    let r = s.run(&matmul(2048, 2048, 2048, 0, budget));
    assert_exhausted(&r);
    assert_eq!(r.counters.fuel_used, budget);
    // On the fuel cross-check engine the charge ends it too.
    let f = sandbox(Metering::WasmtimeFuel).run(&matmul(2048, 2048, 2048, 0, budget));
    assert_exhausted(&f);
}

#[test]
fn guest_code_after_a_product_runs_on_what_is_left_of_the_budget() {
    let s = sandbox(Metering::Meter);
    let plain = s.run(&matmul(128, 128, 128, 0, 10_000_000_000));
    output(&plain);
    // A budget that pays for the product with a little to spare: a loop
    // after it that costs far more than the spare (but less than the
    // product) must end the task, not run on units the product used.
    let budget = plain.counters.fuel_used + 10_000;
    let r = s.run(&matmul(128, 128, 128, 100_000, budget));
    assert_exhausted(&r);
    assert_eq!(r.counters.fuel_used, budget);
    // The loop was stopped inside: the log line after it never came.
    assert_eq!(plain.report.logs, ["info: spun"]);
    assert!(r.report.logs.is_empty(), "{:?}", r.report.logs);
}

#[test]
fn bad_shapes_and_results_too_large_are_refused_to_the_guest_with_the_reason() {
    let s = sandbox(Metering::Meter);
    let e = guest_error(&s.run(&probe("matmul 4 4 4 15 16 0", 1_000_000_000)));
    assert!(e.contains("a has 15 values, want m × k = 4 × 4"), "{e}");
    let e = guest_error(&s.run(&probe("matmul 4 4 4 16 17 0", 1_000_000_000)));
    assert!(e.contains("b has 17 values"), "{e}");
    let e = guest_error(&s.run(&probe("matmul 0 4 4 0 16 0", 1_000_000_000)));
    assert!(e.contains("dimensions must be positive"), "{e}");
    // 65,536² results from two 65,536-value operands: 16 GiB, refused
    // against the task's 256 MiB before anything is allocated.
    let e = guest_error(&s.run(&probe(
        "matmul 65536 1 65536 65536 65536 0",
        100_000_000_000,
    )));
    assert!(e.contains("more than"), "{e}");
    // The host keeps serving: a good product right after.
    assert!(output(&s.run(&matmul(4, 4, 4, 0, 1_000_000_000))).starts_with("ok 16 "));
}

#[test]
fn a_data_file_is_read_whole_and_charged_by_its_size() {
    let s = sandbox(Metering::Meter);
    let with = |len: usize| {
        let bytes = Arc::new(vec![7u8; len]);
        let mut t = probe("data blob", 10_000_000_000);
        t.data = vec![TaskData {
            name: "blob".into(),
            hash: *blake3::hash(&bytes).as_bytes(),
            source: DataSource::Bytes(bytes),
        }];
        t
    };
    let small = s.run(&with(1000));
    assert_eq!(output(&small), "1000");
    let big = s.run(&with(1_000_000));
    assert_eq!(output(&big), "1000000");
    // One unit per 64 bytes read, on top of the guest's own work.
    assert!(
        big.counters.fuel_used - small.counters.fuel_used >= (1_000_000 - 1000) / 64,
        "{} vs {}",
        big.counters.fuel_used,
        small.counters.fuel_used
    );
    let e = guest_error(&s.run(&probe("data missing", 1_000_000_000)));
    assert!(e.contains("no data file \"missing\""), "{e}");
}

#[test]
fn hostile_component_guests_end_within_their_budget() {
    let s = sandbox(Metering::Meter);
    let budget = 200_000_000;
    for (input, want) in [
        // A loop with no calls, far longer than the budget.
        ("spin 1000000000000", ErrorKind::FuelExhausted),
        // 1 GiB against the task's 256 MiB: the allocation is refused by
        // the memory limit before anything is filled.
        ("fill 1073741824", ErrorKind::MemoryLimit),
        // Host calls in a loop: each one charged.
        ("calls 1000000000", ErrorKind::FuelExhausted),
        // Deeper than the stack: ends at the stack bound.
        ("recurse 100000000", ErrorKind::StackOverflow),
    ] {
        let r = s.run(&probe(input, budget));
        assert_eq!(
            r.outcome.as_ref().err().map(|e| e.kind()),
            Some(want),
            "{input}: {:?}",
            r.outcome
        );
        assert!(
            r.counters.fuel_used <= budget,
            "{input}: {}",
            r.counters.fuel_used
        );
        if want == ErrorKind::FuelExhausted {
            assert_eq!(r.counters.fuel_used, budget, "{input}");
        }
    }
    // A fill the memory allows but the budget does not: 128 MiB is 2 M
    // units of `memory.fill` alone, against a budget of 1 M.
    let r = s.run(&probe("fill 134217728", 1_000_000));
    assert_exhausted(&r);
    // And the same guests, small, finish with the same count every run.
    for input in ["spin 1000", "recurse 100", "fill 100000", "calls 10"] {
        let a = s.run(&probe(input, budget));
        let b = s.run(&probe(input, budget));
        assert!(a.outcome.is_ok(), "{input}: {:?}", a.outcome);
        assert_eq!(a.counters.fuel_used, b.counters.fuel_used, "{input}");
    }
}
