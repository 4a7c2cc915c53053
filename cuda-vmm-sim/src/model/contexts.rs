//! Primary contexts (refcounted per device) and the thread's context stack.
//!
//! Each thread has a stack of contexts (`cuCtxPushCurrent_v2` /
//! `cuCtxPopCurrent_v2`); the current context is its top. `cuCtxSetCurrent`
//! replaces the top (pushing onto an empty stack), and with null pops it.

use core::cell::RefCell;

use cuda_vmm_sys::{CUcontext, CUctx_st};

use crate::model::answers;
use crate::model::state::{DriverResult, Sim, Waitable};

/// Context handles are fake, never-dereferenced addresses: one per device.
const CONTEXT_BASE: usize = 0x00c0_de00_0000;
const CONTEXT_STRIDE: usize = 0x100;

thread_local! {
    /// The devices whose primary contexts are on this thread's stack (top last).
    static STACK: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

/// The device whose primary context is current on this thread.
fn top() -> Option<usize> {
    STACK.with(|s| s.borrow().last().copied())
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
pub(crate) fn current_device(sim: &Sim) -> DriverResult<usize> {
    match top() {
        None => Err(answers::NO_CONTEXT),
        Some(d) if sim.devices.get(d).is_some_and(|dev| dev.primary_refs > 0) => Ok(d),
        Some(_) => Err(answers::INACTIVE_CONTEXT),
    }
}

/// `cuCtxGetCurrent`: the current context, or null.
pub(crate) fn current() -> CUcontext {
    top().map_or(core::ptr::null_mut(), handle)
}

/// `cuCtxPopCurrent_v2`: the popped context.
pub(crate) fn pop() -> DriverResult<CUcontext> {
    STACK
        .with(|s| s.borrow_mut().pop())
        .map(handle)
        .ok_or(answers::POP_EMPTY_STACK)
}

impl Sim {
    /// `cuDevicePrimaryCtxRetain`.
    pub fn retain_primary(&mut self, device: usize) -> CUcontext {
        let refs = &mut self.devices[device].primary_refs;
        *refs = refs.saturating_add(1);
        handle(device)
    }

    /// `cuDevicePrimaryCtxRelease_v2`. At zero references the context is
    /// destroyed: its pending work completes, its streams and events become
    /// invalid, and its poison clears (a later retain makes a fresh context).
    /// With held work the last release waits for it (nothing changes before).
    pub fn release_primary(&mut self, device: usize) -> Waitable<()> {
        match self.devices[device].primary_refs {
            0 => return Err(answers::RELEASE_UNRETAINED_CONTEXT.into()),
            1 => self.sync_device(device)?,
            _ => {}
        }
        let refs = &mut self.devices[device].primary_refs;
        *refs -= 1;
        if *refs == 0 {
            self.destroy_context(device);
        }
        Ok(())
    }

    /// The device of `ctx` when it is an active primary context.
    fn active(&self, ctx: CUcontext) -> DriverResult<usize> {
        match device_of(self, ctx) {
            Some(d) if self.devices[d].primary_refs > 0 => Ok(d),
            _ => Err(answers::INACTIVE_CONTEXT),
        }
    }

    /// `cuCtxSetCurrent`: null pops the top (if any); otherwise the context
    /// must be an active primary context, and replaces the top.
    pub fn set_current(&self, ctx: CUcontext) -> DriverResult<()> {
        if ctx.is_null() {
            STACK.with(|s| s.borrow_mut().pop());
            return Ok(());
        }
        let d = self.active(ctx)?;
        STACK.with(|s| {
            let mut s = s.borrow_mut();
            s.pop();
            s.push(d);
        });
        Ok(())
    }

    /// `cuCtxPushCurrent_v2`: the context must be an active primary context.
    pub fn push_current(&self, ctx: CUcontext) -> DriverResult<()> {
        let d = self.active(ctx)?;
        STACK.with(|s| s.borrow_mut().push(d));
        Ok(())
    }

    /// Fails with the device's poison, if it is poisoned.
    pub fn healthy(&self, device: usize) -> DriverResult<()> {
        match self.devices.get(device).and_then(|d| d.poison) {
            Some(code) => Err(code),
            None => Ok(()),
        }
    }
}
