//! Our deterministic meter: a rewriter run once per module before it is
//! compiled, so that guest code counts its own work.
//!
//! # The unit
//!
//! One unit is one wasm operator, counted statically: on entering a function
//! the guest pays for every operator of the function body outside loops, and
//! on each entry to a loop (including each branch back to its header) for
//! every operator of the loop body outside nested loops. A branch that skips
//! code still pays for it, so the count is an upper bound on the operators
//! executed, and exactly the same on every host and every run. On top of
//! that, bulk operations pay for their size: `memory.fill`, `memory.copy` and
//! `memory.init` one unit per 64 bytes, `memory.grow` 1024 units per 64 KiB
//! page asked for, `table.grow`, `table.fill`, `table.copy` and `table.init`
//! one unit per 8 elements; and each call into the host costs
//! [`HOST_CALL_UNITS`](super::run::HOST_CALL_FUEL); a tensor operation of
//! `biop2p:workload/tensor` costs what `tensor_kernel::Shape::cost` says
//! (one unit per multiply-add, one per 16 values copied). The counts are what
//! receipts, prices and `--timeout` use.
//!
//! # Why not wasmtime's fuel
//!
//! Fuel's check ends in an out-of-line call, so Cranelift must keep
//! registers free around it in every loop: on the SIMD matmul kernel the
//! accumulators were spilled and reloaded each iteration (1.83× native with
//! fuel, 1.32× without). Here the slow path is a trap (in a component, a
//! call straight into the trap), after which nothing is live, so the hot
//! path is a load, a subtract, a store and a never-taken branch.
//!
//! Core modules ([`module`]) keep the counter in a global of their own,
//! exported for the host; components ([`component`]) share one counter among
//! all their core instances through a small module the rewriter adds.

mod component;
mod module;

/// Bumped whenever the rewriting changes, so cached compiled code made by an
/// older meter is never loaded (it is part of the code cache's key).
pub(crate) const METER_VERSION: u32 = 2;

/// The component-level import through which a component's guest code talks
/// to the host: `sync(counter) -> counter` (see [`component`]). Components
/// that import or export anything named `biop2p-meter…` themselves are
/// refused, so the guest can never reach it other than through the meter.
pub(crate) const SYNC_IMPORT: &str = "biop2p-meter-sync";

/// The component-level import called after each host call:
/// `settle(counter) -> counter`, less what the call cost beyond its flat
/// charge (a tensor operation's, by its shapes).
pub(crate) const SETTLE_IMPORT: &str = "biop2p-meter-settle";

/// The lifted export that returns a component's counter after a normal
/// return.
pub(crate) const GET_EXPORT: &str = "biop2p-meter-get";

/// A module or component after metering.
pub(crate) enum Metered {
    /// A core module: the counter is the exported global `counter`, and the
    /// module's start function, if it had one, is the exported `start`.
    Core {
        bytes: Vec<u8>,
        counter: String,
        start: Option<String>,
    },
    /// A component with the meter's prologue.
    Component { bytes: Vec<u8> },
}

/// Meters binary wasm (a core module or a component). Errors name what
/// could not be metered; the bytes should then be refused as invalid.
pub(crate) fn instrument(wasm: &[u8]) -> Result<Metered, String> {
    // Validate first: the rewriter assumes well-formed input, and a
    // rewriting error on garbage would hide the real reason.
    wasmparser::Validator::new_with_features(wasmparser::WasmFeatures::all())
        .validate_all(wasm)
        .map_err(|e| e.to_string())?;
    if wasm.get(6..8) == Some(&[1, 0][..]) {
        return Ok(Metered::Component {
            bytes: component::rewrite_component(wasm)?,
        });
    }
    let names = module::names(wasm)?;
    let counter = module::unique("biop2p_meter", &names.exports);
    let start = module::unique("biop2p_start", &names.exports);
    let bytes = module::rewrite(
        wasm,
        &module::Mode::Standalone {
            counter_export: &counter,
            start_export: &start,
        },
    )?;
    Ok(Metered::Core {
        bytes,
        counter,
        start: names.has_start.then_some(start),
    })
}
