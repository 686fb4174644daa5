//! The host side of `biop2p:workload/tensor` and `biop2p:workload/data`:
//! each tensor operation is charged by its shapes through the meter, then
//! run natively by `tensor-kernel`, whose fixed summation order keeps
//! replicas bit-identical; a data file is read whole in one call, charged
//! by its size.
//!
//! Order of a call: the meter's `sync` (flat host-call charge) runs before
//! it, the operands are copied out of guest memory, the shape is checked
//! (a bad one costs only the copy and returns `err` to the guest), the
//! whole cost is charged before any arithmetic (a task that cannot pay ends
//! `fuel_exhausted` here, not after the work), and the meter's `settle`
//! right after the call takes the charge from the guest's counter.

use tensor_kernel::{Shape, VALUES_PER_UNIT};
use wasmtime::StoreContextMut;
use wasmtime::component::Linker;

use super::guest::ComponentState;

/// The interfaces as the guest imports them.
const INTERFACE: &str = "biop2p:workload/tensor@0.1.0";
const DATA_INTERFACE: &str = "biop2p:workload/data@0.1.0";

/// Bytes of a data file read that cost one unit (as `memory.copy`).
const DATA_BYTES_PER_UNIT: u64 = 64;

/// Adds the tensor and data interfaces to a component linker.
pub(crate) fn add_to_linker(linker: &mut Linker<ComponentState>) -> wasmtime::Result<()> {
    linker.instance(DATA_INTERFACE)?.func_wrap(
        "read",
        |mut store: StoreContextMut<'_, ComponentState>, (name,): (String,)| {
            let Some(path) = store
                .data()
                .data
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, p)| p.clone())
            else {
                return Ok((Err(format!("the task has no data file {name:?}")),));
            };
            let len = match std::fs::metadata(&path) {
                Ok(m) => m.len(),
                Err(e) => return Ok((Err(format!("cannot read data file {name:?}: {e}")),)),
            };
            let limit = store.data().limiter.limit() as u64;
            if len > limit {
                return Ok((Err(format!(
                    "data file {name:?} is {len} bytes, more than the task's {limit}-byte memory"
                )),));
            }
            charge(&mut store, len.div_ceil(DATA_BYTES_PER_UNIT))?;
            Ok(
                (
                    std::fs::read(&path)
                        .map_err(|e| format!("cannot read data file {name:?}: {e}")),
                ),
            )
        },
    )?;
    let mut i = linker.instance(INTERFACE)?;
    i.func_wrap(
        "matmul-bt",
        |mut store: StoreContextMut<'_, ComponentState>,
         (a, b, m, k, n): (Vec<f32>, Vec<f32>, u32, u32, u32)| {
            // The result is lowered into guest memory, so it can be no
            // larger than the task may hold.
            let max_values = (store.data().limiter.limit() / 4) as u64;
            match Shape::check(a.len(), b.len(), m, k, n, max_values) {
                Err(e) => {
                    let copied = (a.len() + b.len()) as u64;
                    charge(&mut store, copied.div_ceil(VALUES_PER_UNIT))?;
                    Ok((Err(format!("matmul-bt: {e}")),))
                }
                Ok(shape) => {
                    charge(&mut store, shape.cost())?;
                    Ok((Ok(tensor_kernel::matmul_bt(&a, &b, shape)),))
                }
            }
        },
    )?;
    Ok(())
}

/// Charges `units` on whichever meter the engine has: ours (settled after
/// the call), or wasmtime's fuel on the cross-check engine. The unmetered
/// benchmark engine charges nothing.
fn charge(store: &mut StoreContextMut<'_, ComponentState>, units: u64) -> wasmtime::Result<()> {
    if store.data_mut().meter.charge(units)? {
        return Ok(());
    }
    if let Ok(left) = store.get_fuel() {
        if left < units {
            store.set_fuel(0)?;
            return Err(wasmtime::Trap::OutOfFuel.into());
        }
        store.set_fuel(left - units)?;
    }
    Ok(())
}
