//! The driver's C ABI: one `extern "C"` function per entry point, exported
//! under the exact symbol name a program compiled against `cuda.h` links to.
//!
//! Every function counts the call and checks for an injected fault (see
//! [`inject_fault`](crate::inject_fault)), then checks initialisation and the
//! current context ([`answers::NEEDS_CONTEXT`]), then its arguments, and never
//! unwinds into the caller: a panic becomes [`answers::INTERNAL_PANIC`].
//!
//! # Safety (every function here)
//! Pointer arguments must be null or valid as `cuda.h` documents for the entry
//! point: out-pointers writable for one value, input structs readable, host
//! buffers of copies valid for their byte count (unmapped host pages are
//! reported as errors, not faults). Null out-pointers are answered with
//! [`answers::NULL_POINTER`].
//!
//! The entry points live in submodules by area and are all re-exported here.
#![allow(non_snake_case, clippy::missing_safety_doc)]

mod copies;
mod memory;
mod pools;
mod streams;

pub use copies::*;
pub use memory::*;
pub use pools::*;
pub use streams::*;

use core::ffi::{c_char, c_int, c_uint, c_void, CStr};
use core::ptr::NonNull;
use std::panic::{catch_unwind, AssertUnwindSafe};

use cuda_vmm_sys::{
    cuuint64_t, CUcontext, CUdevice, CUdevice_attribute, CUdriverProcAddressQueryResult, CUresult,
};

use crate::hooks::faults;
use crate::model::state::{self, DriverResult, Sim};
use crate::model::symbols::{sym, Sym};
use crate::model::{answers, contexts, devices, error_strings, procs};

/// Runs one entry point: fault injection, init and context checks, the body, no unwinding.
fn call(s: Sym, body: impl FnOnce() -> DriverResult<()>) -> CUresult {
    if let Some(code) = faults::on_call(s) {
        return code;
    }
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        if !s.works_before_init() && !state::initialized() {
            return Err(answers::NOT_INITIALIZED);
        }
        if s.needs_context() {
            state::with(|sim| contexts::current_device(sim).map(drop))?;
        }
        if s.checks_poison() {
            state::with(|sim| match contexts::current_device(sim) {
                Ok(d) => sim.healthy(d),
                Err(_) => Ok(()),
            })?;
        }
        body()
    }));
    match outcome {
        Ok(Ok(())) => CUresult::CUDA_SUCCESS,
        Ok(Err(code)) => code,
        Err(_) => answers::INTERNAL_PANIC,
    }
}

/// A non-null out-pointer, checked before the call has side effects.
struct Out<T>(NonNull<T>);

impl<T> Out<T> {
    fn new(p: *mut T) -> DriverResult<Self> {
        NonNull::new(p).map(Self).ok_or(answers::NULL_POINTER)
    }

    /// # Safety
    /// The pointer must be valid for a write of `T` (the entry point's contract).
    unsafe fn write(self, value: T) {
        // SAFETY: non-null (checked in `new`) and writable per the caller.
        unsafe { self.0.as_ptr().write_unaligned(value) }
    }
}

/// Answers through the out-pointer `p` the value that `value` computes: null is refused
/// before `value` runs, and nothing is written when it fails.
///
/// # Safety
/// `p` must be null or valid for a write of `T` (the entry point's contract).
unsafe fn answer<T>(p: *mut T, value: impl FnOnce() -> DriverResult<T>) -> DriverResult<()> {
    let out = Out::new(p)?;
    let value = value()?;
    // SAFETY: forwarded from this function's contract.
    unsafe { out.write(value) };
    Ok(())
}

/// Runs `f` on the simulator with the device of the calling thread's current context.
fn on_current_device<T>(f: impl FnOnce(&mut Sim, usize) -> DriverResult<T>) -> DriverResult<T> {
    state::with(|sim| {
        let d = contexts::current_device(sim)?;
        f(sim, d)
    })
}

/// Reads a required input struct.
///
/// # Safety
/// `p` must be null or valid for a read of `T`.
unsafe fn read_in<T: Copy>(p: *const T) -> DriverResult<T> {
    if p.is_null() {
        return Err(answers::NULL_POINTER);
    }
    // SAFETY: non-null and readable per the caller.
    Ok(unsafe { p.read_unaligned() })
}

fn zero_bytes() -> DriverResult<()> {
    match answers::COPY_ZERO_BYTES {
        CUresult::CUDA_SUCCESS => Ok(()),
        code => Err(code),
    }
}

fn device_arg(dev: CUdevice) -> DriverResult<usize> {
    state::with(|sim| sim.device(dev.into()).ok_or(answers::BAD_DEVICE))
}

// ---- Initialisation, version, errors, entry points -----------------------------

/// `cuInit`: initialises the simulator (configuration: [`configure`](crate::configure) or the environment).
#[no_mangle]
pub unsafe extern "C" fn cuInit(Flags: c_uint) -> CUresult {
    call(const { sym("cuInit") }, || {
        if Flags != 0 {
            return Err(answers::INIT_BAD_FLAGS);
        }
        state::init()
    })
}

/// `cuDriverGetVersion` (works before `cuInit`).
#[no_mangle]
pub unsafe extern "C" fn cuDriverGetVersion(driverVersion: *mut c_int) -> CUresult {
    call(const { sym("cuDriverGetVersion") }, || {
        let value = || Ok(state::driver_version());
        // SAFETY: entry-point contract.
        unsafe { answer(driverVersion, value) }
    })
}

fn error_text(
    out: *mut *const c_char,
    error: CUresult,
    find: fn(CUresult) -> Option<*const c_char>,
) -> DriverResult<()> {
    let out = Out::new(out)?;
    let text = find(error);
    // SAFETY: entry-point contract; the strings are static.
    unsafe { out.write(text.unwrap_or(core::ptr::null())) };
    text.map(drop).ok_or(answers::UNKNOWN_ERROR_CODE)
}

/// `cuGetErrorName` (works before `cuInit`).
#[no_mangle]
pub unsafe extern "C" fn cuGetErrorName(error: CUresult, pStr: *mut *const c_char) -> CUresult {
    call(const { sym("cuGetErrorName") }, || {
        error_text(pStr, error, error_strings::name)
    })
}

/// `cuGetErrorString` (works before `cuInit`).
#[no_mangle]
pub unsafe extern "C" fn cuGetErrorString(error: CUresult, pStr: *mut *const c_char) -> CUresult {
    call(const { sym("cuGetErrorString") }, || {
        error_text(pStr, error, error_strings::description)
    })
}

/// Shared body of both `cuGetProcAddress` versions.
///
/// # Safety
/// `symbol` must be null or a NUL-terminated string; `pfn` and `found` null or writable.
unsafe fn get_proc(
    symbol: *const c_char,
    pfn: *mut *mut c_void,
    version: c_int,
    flags: cuuint64_t,
    found: *mut CUdriverProcAddressQueryResult,
) -> DriverResult<()> {
    let out = Out::new(pfn)?;
    if symbol.is_null() {
        return Err(answers::NULL_POINTER);
    }
    if flags > 2 {
        return Err(answers::BAD_FLAGS);
    }
    // SAFETY: a non-null, NUL-terminated string per the entry-point contract.
    let name = unsafe { CStr::from_ptr(symbol) }.to_str().unwrap_or("");
    let (address, status) = match procs::lookup(name, version) {
        Ok(address) => (
            address,
            CUdriverProcAddressQueryResult::CU_GET_PROC_ADDRESS_SUCCESS,
        ),
        Err(status) => (core::ptr::null_mut(), status),
    };
    // SAFETY: entry-point contract.
    unsafe { out.write(address) };
    if let Some(found) = NonNull::new(found) {
        // SAFETY: a non-null optional out-pointer, writable per the contract.
        unsafe { found.as_ptr().write_unaligned(status) };
    }
    if address.is_null() {
        Err(answers::PROC_NOT_FOUND)
    } else {
        Ok(())
    }
}

/// `cuGetProcAddress_v2`: this simulator's entry point for a base name (`"cuMemCreate"`, `"cuMemGetInfo"`).
#[no_mangle]
pub unsafe extern "C" fn cuGetProcAddress_v2(
    symbol: *const c_char,
    pfn: *mut *mut c_void,
    driverVersion: c_int,
    flags: cuuint64_t,
    symbolFound: *mut CUdriverProcAddressQueryResult,
) -> CUresult {
    call(const { sym("cuGetProcAddress_v2") }, || {
        // SAFETY: forwarded entry-point contract.
        unsafe { get_proc(symbol, pfn, driverVersion, flags, symbolFound) }
    })
}

/// `cuGetProcAddress` (CUDA 11.3 signature, without the query result).
#[no_mangle]
pub unsafe extern "C" fn cuGetProcAddress(
    symbol: *const c_char,
    pfn: *mut *mut c_void,
    driverVersion: c_int,
    flags: cuuint64_t,
) -> CUresult {
    call(const { sym("cuGetProcAddress") }, || {
        // SAFETY: forwarded entry-point contract.
        unsafe { get_proc(symbol, pfn, driverVersion, flags, core::ptr::null_mut()) }
    })
}

// ---- Devices ------------------------------------------------------------------

/// `cuDeviceGet`.
#[no_mangle]
pub unsafe extern "C" fn cuDeviceGet(device: *mut CUdevice, ordinal: c_int) -> CUresult {
    call(const { sym("cuDeviceGet") }, || {
        let value = || {
            device_arg(ordinal)?;
            Ok(ordinal)
        };
        // SAFETY: entry-point contract.
        unsafe { answer(device, value) }
    })
}

/// `cuDeviceGetCount`.
#[no_mangle]
pub unsafe extern "C" fn cuDeviceGetCount(count: *mut c_int) -> CUresult {
    call(const { sym("cuDeviceGetCount") }, || {
        let value = || {
            let n = state::with(|sim| Ok(sim.devices.len()))?;
            Ok(c_int::try_from(n).unwrap_or(c_int::MAX))
        };
        // SAFETY: entry-point contract.
        unsafe { answer(count, value) }
    })
}

/// `cuDeviceGetName`: the name, truncated to `len - 1` bytes and NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn cuDeviceGetName(name: *mut c_char, len: c_int, dev: CUdevice) -> CUresult {
    call(const { sym("cuDeviceGetName") }, || {
        let out = NonNull::new(name).ok_or(answers::NULL_POINTER)?;
        let d = device_arg(dev)?;
        let capacity = usize::try_from(len)
            .ok()
            .filter(|n| *n > 0)
            .ok_or(answers::BAD_NAME_LENGTH)?;
        let text = state::with(|sim| Ok(sim.config.name_of(d as u32)))?;
        let n = text.len().min(capacity - 1);
        // SAFETY: the caller's buffer holds `len` bytes (entry-point contract);
        // `n + 1 <= len` bytes are written, and the source is a separate String.
        unsafe {
            core::ptr::copy_nonoverlapping(text.as_ptr(), out.as_ptr().cast::<u8>(), n);
            out.as_ptr().add(n).write(0);
        }
        Ok(())
    })
}

/// `cuDeviceGetAttribute`.
#[no_mangle]
pub unsafe extern "C" fn cuDeviceGetAttribute(
    pi: *mut c_int,
    attrib: CUdevice_attribute,
    dev: CUdevice,
) -> CUresult {
    call(const { sym("cuDeviceGetAttribute") }, || {
        let value = || {
            let d = device_arg(dev)?;
            devices::attribute(attrib, d).ok_or(answers::UNKNOWN_ATTRIBUTE)
        };
        // SAFETY: entry-point contract.
        unsafe { answer(pi, value) }
    })
}

/// `cuDeviceTotalMem_v2`.
#[no_mangle]
pub unsafe extern "C" fn cuDeviceTotalMem_v2(bytes: *mut usize, dev: CUdevice) -> CUresult {
    call(const { sym("cuDeviceTotalMem_v2") }, || {
        let value = || {
            device_arg(dev)?;
            let total = state::with(|sim| Ok(sim.config.memory()))?;
            Ok(total as usize)
        };
        // SAFETY: entry-point contract.
        unsafe { answer(bytes, value) }
    })
}

/// `cuDeviceCanAccessPeer`: every pair of distinct simulated devices are peers.
#[no_mangle]
pub unsafe extern "C" fn cuDeviceCanAccessPeer(
    canAccessPeer: *mut c_int,
    dev: CUdevice,
    peerDev: CUdevice,
) -> CUresult {
    call(const { sym("cuDeviceCanAccessPeer") }, || {
        let value = || {
            let (a, b) = (device_arg(dev)?, device_arg(peerDev)?);
            Ok(c_int::from(a != b))
        };
        // SAFETY: entry-point contract.
        unsafe { answer(canAccessPeer, value) }
    })
}

// ---- Contexts -----------------------------------------------------------------

/// `cuDevicePrimaryCtxRetain`.
#[no_mangle]
pub unsafe extern "C" fn cuDevicePrimaryCtxRetain(pctx: *mut CUcontext, dev: CUdevice) -> CUresult {
    call(const { sym("cuDevicePrimaryCtxRetain") }, || {
        let value = || {
            state::with(|sim| {
                let d = sim.device(dev.into()).ok_or(answers::BAD_DEVICE)?;
                Ok(sim.retain_primary(d))
            })
        };
        // SAFETY: entry-point contract.
        unsafe { answer(pctx, value) }
    })
}

/// `cuDevicePrimaryCtxRelease_v2`: the last release completes the context's
/// work first (blocking while a [hold](crate::hold_stream) is in the way).
#[no_mangle]
pub unsafe extern "C" fn cuDevicePrimaryCtxRelease_v2(dev: CUdevice) -> CUresult {
    call(const { sym("cuDevicePrimaryCtxRelease_v2") }, || {
        state::with_waiting(|sim| {
            let d = sim.device(dev.into()).ok_or(answers::BAD_DEVICE)?;
            sim.release_primary(d)
        })
    })
}

/// `cuCtxSetCurrent` (per thread): replaces the top of the context stack
/// (pushes onto an empty one); null pops the top.
#[no_mangle]
pub unsafe extern "C" fn cuCtxSetCurrent(ctx: CUcontext) -> CUresult {
    call(const { sym("cuCtxSetCurrent") }, || {
        state::with(|sim| sim.set_current(ctx))
    })
}

/// `cuCtxGetCurrent`: the thread's context, or null.
#[no_mangle]
pub unsafe extern "C" fn cuCtxGetCurrent(pctx: *mut CUcontext) -> CUresult {
    call(const { sym("cuCtxGetCurrent") }, || {
        let value = || Ok(contexts::current());
        // SAFETY: entry-point contract.
        unsafe { answer(pctx, value) }
    })
}

/// `cuCtxGetDevice`.
#[no_mangle]
pub unsafe extern "C" fn cuCtxGetDevice(device: *mut CUdevice) -> CUresult {
    call(const { sym("cuCtxGetDevice") }, || {
        let value = || {
            let d = state::with(|sim| contexts::current_device(sim))?;
            Ok(d as CUdevice)
        };
        // SAFETY: entry-point contract.
        unsafe { answer(device, value) }
    })
}

/// `cuCtxSynchronize`: completes the work of every stream of the current
/// context; answers the context's poison if it has one. Blocks while a
/// [hold](crate::hold_stream) keeps work of the context from completing. Then
/// the stream-ordered pools release free memory beyond their thresholds.
#[no_mangle]
pub unsafe extern "C" fn cuCtxSynchronize() -> CUresult {
    call(const { sym("cuCtxSynchronize") }, || {
        state::with_waiting(|sim| {
            let d = contexts::current_device(sim)?;
            sim.sync_device(d)?;
            sim.healthy(d)?;
            Ok(sim.pools_after_sync()?)
        })
    })
}
