//! Host side of the `biop2p:workload` WIT world, and the per-task store
//! state of both kinds of guest.

use wasmtime::component::ResourceTable;
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::limits::TaskLimiter;

/// Generated bindings of `wit/workload.wit`.
pub(crate) mod bindings {
    #![allow(missing_docs)]
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "workload",
    });
}

use bindings::biop2p::workload::host::{Host, Level};

/// Log lines kept per task; further lines are dropped.
pub const MAX_LOG_LINES: usize = 256;
/// Bytes kept per log line.
pub const MAX_LOG_LINE: usize = 1024;
/// Progress reports kept per task. Progress is deterministic state (the last
/// value wins), so the bound is a count, not a rate in wall time.
pub const MAX_PROGRESS_CALLS: u32 = 10_000;

/// What the workload told the host while it ran.
#[derive(Debug, Default, Clone)]
pub struct GuestReport {
    /// The last progress fraction reported, in `[0, 1]`.
    pub progress: Option<f32>,
    /// Log lines, as `level: message`.
    pub logs: Vec<String>,
    /// Lines and progress reports dropped by the bounds.
    pub dropped: u32,
    progress_calls: u32,
}

impl Host for GuestReport {
    fn progress(&mut self, fraction: f32) {
        self.progress_calls = self.progress_calls.saturating_add(1);
        if self.progress_calls > MAX_PROGRESS_CALLS || !fraction.is_finite() {
            self.dropped = self.dropped.saturating_add(1);
            return;
        }
        self.progress = Some(fraction.clamp(0.0, 1.0));
    }

    fn log(&mut self, level: Level, message: String) {
        if self.logs.len() >= MAX_LOG_LINES {
            self.dropped = self.dropped.saturating_add(1);
            return;
        }
        let level = match level {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        };
        let mut m = message;
        if m.len() > MAX_LOG_LINE {
            let mut cut = MAX_LOG_LINE;
            while !m.is_char_boundary(cut) {
                cut -= 1;
            }
            m.truncate(cut);
        }
        self.logs.push(format!("{level}: {m}"));
    }
}

/// Store state of a WASI preview-1 command module.
pub(crate) struct CoreState {
    pub(crate) wasi: WasiP1Ctx,
    pub(crate) limiter: TaskLimiter,
    pub(crate) time: super::wasi::VirtualTime,
    /// The metered module's counter, once instantiated (for the host-call
    /// charge in the call hook).
    pub(crate) meter: Option<wasmtime::Global>,
}

/// The host's side of a metered component's counter (see
/// `sandbox::meter`): the guest calls `sync` before each host call and when
/// its counter runs out.
#[derive(Debug, Default)]
pub(crate) struct ComponentMeter {
    /// The task's budget and its debit-note boundaries.
    pub(crate) budget: super::debit::Segments,
    started: bool,
    /// The counter as of the guest's last host call: what is known after a
    /// trap, when the store refuses further calls into the component.
    pub(crate) last: i64,
    /// The counter ran out (in guest code or at a host call).
    pub(crate) exhausted: bool,
    /// What host calls cost since the last `sync` beyond their flat charge
    /// (tensor operations), taken from the guest's counter at `settle`.
    pub(crate) pending: i64,
}

impl ComponentMeter {
    /// `sync(counter) -> counter`. The first call, from the meter's own
    /// start function, hands out the budget; every later one is a host call
    /// about to happen (charged [`HOST_CALL_FUEL`](super::run::HOST_CALL_FUEL),
    /// and where a debit note due waits for its answer) or the guest's
    /// counter below zero.
    pub(crate) fn sync(&mut self, counter: i64) -> wasmtime::Result<i64> {
        if !self.started {
            self.started = true;
            self.last = self.budget.cap;
            return Ok(self.budget.cap);
        }
        self.take(counter, super::run::HOST_CALL_FUEL as i64)
    }

    /// Takes `charge` from the guest's `counter` at a host call: the new
    /// counter, or the trap that ends the task (budget used up, or a debit
    /// note refused).
    fn take(&mut self, counter: i64, charge: i64) -> wasmtime::Result<i64> {
        match self.budget.at_host_call(counter, charge) {
            Ok(c) => {
                self.last = c;
                Ok(c)
            }
            Err(None) => {
                self.exhausted = true;
                self.last = 0;
                Err(wasmtime::Trap::OutOfFuel.into())
            }
            Err(Some(unpaid)) => {
                // The count stops at the note: what the host did and
                // asked to be paid for.
                self.last = self.budget.cap - unpaid.fuel as i64;
                Err(wasmtime::Error::new(unpaid))
            }
        }
    }

    /// A host call costs `units` more than its flat charge: refused with
    /// `OutOfFuel` before any work if the count as of the `sync` just
    /// before it cannot pay, else owed until the `settle` right after it.
    /// Returns false when the meter is not running (the unmetered and fuel
    /// engines), where the caller charges by its own means.
    pub(crate) fn charge(&mut self, units: u64) -> wasmtime::Result<bool> {
        if !self.started {
            return Ok(false);
        }
        let units = units.min(i64::MAX as u64) as i64;
        if self.last < units {
            self.exhausted = true;
            self.last = 0;
            return Err(wasmtime::Trap::OutOfFuel.into());
        }
        self.last -= units;
        self.pending += units;
        Ok(true)
    }

    /// `settle(counter) -> counter`, after every host call: the counter
    /// less what the call owes ([`charge`](Self::charge)), where a debit
    /// note due is also asked for.
    pub(crate) fn settle(&mut self, counter: i64) -> wasmtime::Result<i64> {
        let owed = std::mem::take(&mut self.pending);
        if owed == 0 {
            return Ok(counter);
        }
        self.take(counter, owed)
    }
}

/// Store state of a component (workload or WASI command).
pub(crate) struct ComponentState {
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) limiter: TaskLimiter,
    pub(crate) report: GuestReport,
    pub(crate) time: super::wasi::VirtualTime,
    pub(crate) meter: ComponentMeter,
    /// The task's data files (name, host path), for `biop2p:workload/data`.
    pub(crate) data: Vec<(String, std::path::PathBuf)>,
}

impl WasiView for ComponentState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}
