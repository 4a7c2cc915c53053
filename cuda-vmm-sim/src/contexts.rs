//! Primary contexts (refcounted per device) and the thread's current context.

use core::cell::Cell;

use cuda_vmm_sys::{CUcontext, CUctx_st};

use crate::answers;
use crate::state::{Res, Sim};

/// Context handles are fake, never-dereferenced addresses: one per device.
const CONTEXT_BASE: usize = 0x00c0_de00_0000;
const CONTEXT_STRIDE: usize = 0x100;

thread_local! {
    /// The device whose primary context is current on this thread.
    static CURRENT: Cell<Option<usize>> = const { Cell::new(None) };
}

/// The handle of `device`'s primary context.
pub(crate) fn handle(device: usize) -> CUcontext {
    core::ptr::null_mut::<CUctx_st>().wrapping_byte_add(CONTEXT_BASE + device * CONTEXT_STRIDE)
}

/// The device whose primary context `ctx` is, if it is one.
fn device_of(sim: &Sim, ctx: CUcontext) -> Option<usize> {
    let offset = (ctx as usize).checked_sub(CONTEXT_BASE)?;
    if offset % CONTEXT_STRIDE != 0 {
        return None;
    }
    Some(offset / CONTEXT_STRIDE).filter(|d| *d < sim.devices.len())
}

/// The current context's device; fails when none is current or it was released.
pub(crate) fn current_device(sim: &Sim) -> Res<usize> {
    match CURRENT.with(Cell::get) {
        None => Err(answers::NO_CONTEXT),
        Some(d) if sim.devices.get(d).is_some_and(|dev| dev.primary_refs > 0) => Ok(d),
        Some(_) => Err(answers::INACTIVE_CONTEXT),
    }
}

/// `cuCtxGetCurrent`: the current context, or null.
pub(crate) fn current() -> CUcontext {
    CURRENT
        .with(Cell::get)
        .map_or(core::ptr::null_mut(), handle)
}

impl Sim {
    /// `cuDevicePrimaryCtxRetain`.
    pub fn retain_primary(&mut self, device: usize) -> CUcontext {
        let refs = &mut self.devices[device].primary_refs;
        *refs = refs.saturating_add(1);
        handle(device)
    }

    /// `cuDevicePrimaryCtxRelease_v2`.
    pub fn release_primary(&mut self, device: usize) -> Res<()> {
        let refs = &mut self.devices[device].primary_refs;
        if *refs == 0 {
            return Err(answers::RELEASE_UNRETAINED_CONTEXT);
        }
        *refs -= 1;
        Ok(())
    }

    /// `cuCtxSetCurrent`: null unbinds; otherwise the context must be an active primary context.
    pub fn set_current(&self, ctx: CUcontext) -> Res<()> {
        if ctx.is_null() {
            CURRENT.with(|c| c.set(None));
            return Ok(());
        }
        match device_of(self, ctx) {
            Some(d) if self.devices[d].primary_refs > 0 => {
                CURRENT.with(|c| c.set(Some(d)));
                Ok(())
            }
            _ => Err(answers::INACTIVE_CONTEXT),
        }
    }
}
