//! Sleeping in virtual time.
//!
//! wasmtime-wasi implements a guest's sleep (`poll_oneoff` in WASI p1,
//! `subscribe-duration`/`subscribe-instant` in p2) with real timers, which
//! fuel does not see: a guest asking to sleep for a day would hold a worker
//! for a day. In a closed world nothing can become ready while a guest
//! waits — its stdin is in memory, its outputs are buffers, it has no
//! sockets — so the only thing a wait can wait for is a clock. The host
//! therefore answers at once and moves the task's virtual clocks forward to
//! the deadline. The guest sees the time pass, the worker does not, and the
//! result is the same on every replica. (Each call still costs
//! `HOST_CALL_FUEL`, so a guest sleeping in a loop runs out of fuel.)

use wasmtime::component::{Linker as ComponentLinker, Resource};
use wasmtime::{Caller, Extern, Linker};
use wasmtime_wasi::p2::{DynPollable, Pollable, subscribe};

use super::guest::{ComponentState, CoreState};
use super::wasi::VIRTUAL_EPOCH_NANOS;

// WASI p1 ABI (`wasi_snapshot_preview1`).
const SUBSCRIPTION_SIZE: usize = 48;
const EVENT_SIZE: usize = 32;
const EVENTTYPE_CLOCK: u8 = 0;
const EVENTTYPE_FD_READ: u8 = 1;
const EVENTTYPE_FD_WRITE: u8 = 2;
const CLOCKID_REALTIME: u32 = 0;
const SUBCLOCKFLAGS_ABSTIME: u16 = 1;
const ERRNO_SUCCESS: i32 = 0;
const ERRNO_FAULT: i32 = 21;
const ERRNO_INVAL: i32 = 28;
/// Subscriptions accepted in one call (bounds what the host reads).
const MAX_SUBSCRIPTIONS: usize = 4096;

/// Replaces `poll_oneoff` of WASI p1 with the virtual-time version.
pub(crate) fn shadow_core(linker: &mut Linker<CoreState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    linker.func_wrap("wasi_snapshot_preview1", "poll_oneoff", poll_oneoff)?;
    linker.allow_shadowing(false);
    Ok(())
}

/// One parsed p1 subscription.
enum Sub {
    /// A clock, with its deadline in virtual nanoseconds.
    Clock { userdata: u64, deadline: u64 },
    /// Readiness of a descriptor (always ready in the closed world).
    Fd { userdata: u64, kind: u8 },
}

fn poll_oneoff(
    mut caller: Caller<'_, CoreState>,
    subs_ptr: i32,
    events_ptr: i32,
    n: i32,
    nevents_ptr: i32,
) -> wasmtime::Result<i32> {
    let n = n as u32 as usize;
    if n == 0 || n > MAX_SUBSCRIPTIONS {
        return Ok(ERRNO_INVAL);
    }
    let Some(Extern::Memory(memory)) = caller.get_export("memory") else {
        return Ok(ERRNO_INVAL);
    };
    let (mem, state) = memory.data_and_store_mut(&mut caller);
    let now = state.time.peek_nanos();
    let range = |ptr: i32, len: usize| {
        let start = ptr as u32 as usize;
        start
            .checked_add(len)
            .filter(|end| *end <= mem.len())
            .map(|end| start..end)
    };
    let Some(subs) = range(subs_ptr, n * SUBSCRIPTION_SIZE) else {
        return Ok(ERRNO_FAULT);
    };
    let u64_at = |b: &[u8], o: usize| u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"));
    let mut parsed = Vec::with_capacity(n);
    for s in mem[subs].chunks_exact(SUBSCRIPTION_SIZE) {
        let userdata = u64_at(s, 0);
        match s[8] {
            EVENTTYPE_CLOCK => {
                let id = u32::from_le_bytes(s[16..20].try_into().expect("4 bytes"));
                let timeout = u64_at(s, 24);
                let flags = u16::from_le_bytes(s[40..42].try_into().expect("2 bytes"));
                let deadline = if flags & SUBCLOCKFLAGS_ABSTIME == 0 {
                    now.saturating_add(timeout)
                } else if id == CLOCKID_REALTIME {
                    timeout.saturating_sub(VIRTUAL_EPOCH_NANOS)
                } else {
                    timeout
                };
                parsed.push(Sub::Clock { userdata, deadline });
            }
            kind @ (EVENTTYPE_FD_READ | EVENTTYPE_FD_WRITE) => {
                parsed.push(Sub::Fd { userdata, kind });
            }
            _ => return Ok(ERRNO_INVAL),
        }
    }
    // With a descriptor in the set the call returns at once (descriptors
    // are always ready); otherwise time jumps to the earliest deadline.
    let until = if parsed.iter().any(|s| matches!(s, Sub::Fd { .. })) {
        now
    } else {
        parsed
            .iter()
            .filter_map(|s| match s {
                Sub::Clock { deadline, .. } => Some(*deadline),
                Sub::Fd { .. } => None,
            })
            .min()
            .unwrap_or(now)
    };
    state.time.advance_to(until);
    let mut events = Vec::with_capacity(n * EVENT_SIZE);
    let mut count = 0u32;
    for s in &parsed {
        let (userdata, kind, nbytes) = match *s {
            Sub::Clock { userdata, deadline } if deadline <= until => {
                (userdata, EVENTTYPE_CLOCK, 0)
            }
            Sub::Clock { .. } => continue,
            Sub::Fd { userdata, kind } => (userdata, kind, 1u64),
        };
        let mut e = [0u8; EVENT_SIZE];
        e[0..8].copy_from_slice(&userdata.to_le_bytes());
        e[8..10].copy_from_slice(&(ERRNO_SUCCESS as u16).to_le_bytes());
        e[10] = kind;
        e[16..24].copy_from_slice(&nbytes.to_le_bytes());
        events.extend_from_slice(&e);
        count += 1;
    }
    let (Some(ev), Some(nev)) = (range(events_ptr, events.len()), range(nevents_ptr, 4)) else {
        return Ok(ERRNO_FAULT);
    };
    mem[ev].copy_from_slice(&events);
    mem[nev].copy_from_slice(&count.to_le_bytes());
    Ok(ERRNO_SUCCESS)
}

/// A pollable that is ready at once: its deadline has been reached in
/// virtual time by the time the guest can wait on it.
struct Reached;

#[wasmtime_wasi::async_trait]
impl Pollable for Reached {
    async fn ready(&mut self) {}
}

fn reached(state: &mut ComponentState) -> wasmtime::Result<Resource<DynPollable>> {
    let r = state.table.push(Reached)?;
    subscribe(&mut state.table, r)
}

/// Replaces the p2 monotonic clock's subscriptions with virtual-time ones.
/// Guests importing any 0.2.x version resolve to these.
pub(crate) fn shadow_component(
    linker: &mut ComponentLinker<ComponentState>,
) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let mut clock = linker.instance(MONOTONIC_CLOCK)?;
    clock.func_wrap(
        "subscribe-duration",
        |mut cx: wasmtime::StoreContextMut<'_, ComponentState>, (nanos,): (u64,)| {
            let s = cx.data_mut();
            s.time.advance_to(s.time.peek_nanos().saturating_add(nanos));
            Ok((reached(s)?,))
        },
    )?;
    clock.func_wrap(
        "subscribe-instant",
        |mut cx: wasmtime::StoreContextMut<'_, ComponentState>, (when,): (u64,)| {
            let s = cx.data_mut();
            s.time.advance_to(when);
            Ok((reached(s)?,))
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

/// The interface name wasmtime-wasi 48 defines the p2 clocks under.
const MONOTONIC_CLOCK: &str = "wasi:clocks/monotonic-clock@0.2.12";
