//! One function per driver entry point this crate uses: the only place it calls the driver.
//!
//! Every driver call repeats the same steps: look the entry point up in the
//! [`DriverTable`], call it, check the `CUresult`, read the out-parameters. The
//! functions here do them once, with the call's `unsafe` contract stated once, on the
//! function (cudarc calls its equivalent module `result`). There are two tiers:
//!
//! - [`bare`]: the driver's answer untouched: a missing entry point is a
//!   [`MissingSymbol`], otherwise the `CUresult` and the out-parameters as the driver
//!   left them (each starts out zeroed, or null, so a failed call leaves a defined
//!   value). No span, no check: for conformance tests and benchmark floors.
//! - this module's own functions, the checked tier the safe layer uses, on top of the
//!   bare one: a missing entry point is [`Error::MissingEntryPoint`], a failed call
//!   [`Error::Driver`] naming the entry point, and the calls that change the address
//!   space (`cuMemAddressReserve`, `cuMemCreate`, `cuMemMap`, `cuMemSetAccess`,
//!   `cuMemUnmap`, `cuMemRelease`, `cuMemAddressFree`, `cuMemImportFromShareableHandle`,
//!   `cuMemAlloc_v2`, `cuMemFree_v2`, `cuMemAllocAsync`, `cuMemAllocFromPoolAsync`,
//!   `cuMemFreeAsync`) run inside their debug-level tracing span (see the
//!   crate docs).
//!
//! Functions whose arguments are plain values the driver validates (ordinals,
//! attributes, sizes, flags, property structs passed by reference) are safe: they can
//! only fail. Functions that take a handle or an address whose validity the driver
//! cannot check (streams, events, contexts, allocation handles, device or host
//! pointers), or that end the life of something, are `unsafe fn`s with a `# Safety`
//! section. Every function takes an [`Api`]: a driver table that implements the
//! driver API, which [`Cuda::api`](crate::Cuda::api) hands out (the
//! [`Cuda::from_driver`](crate::Cuda::from_driver) contract vouches for it).
//!
//! ```
//! use cuda_vmm::{raw, Backend, Cuda};
//! # fn main() -> Result<(), cuda_vmm::Error> {
//! // SAFETY: the simulator implements the driver API.
//! let cuda = unsafe { Cuda::from_driver(cuda_vmm_sim::driver(), Backend::Simulator)? };
//! let api = cuda.api();
//! let count = raw::device_get_count(api)?;
//! let (rc, bare_count) = raw::bare::device_get_count(api).expect("cuDeviceGetCount");
//! assert_eq!(rc, cuda_vmm::sys::CUresult::CUDA_SUCCESS);
//! assert_eq!(count, bare_count);
//! # Ok(()) }
//! ```
#![allow(unsafe_code)]

use cuda_vmm_sys::{CUresult, DriverTable, MissingSymbol};

use crate::error::{check, Error, Result};
use crate::version::DriverVersion;

pub mod bare;
mod bound;
mod context;
mod handles;
mod host;
mod memory;
mod pool;
mod stream;
mod vmm;

pub(crate) use bound::{bind, Bound, RetainedContext};
pub use context::*;
#[cfg(feature = "cudarc")]
pub(crate) use handles::with_cudarc_stream;
pub(crate) use handles::{EventHandle, StreamHandle};
pub(crate) use host::HostMemory;
pub use memory::*;
pub use pool::*;
pub use stream::*;
pub(crate) use vmm::{
    copy_dtod, copy_dtoh_staged, copy_htod_staged, copy_htod_staged_at, fill, AllocationHandle,
    CheckedRange, ContextIdle, DeviceMemory, ReservedRange, Waited,
};

/// Fails with [`Error::MissingEntryPoint`] (returning from the caller) unless the table
/// of `$api` resolves `$symbol`: for callers that looked the entry point up before other
/// fallible steps (binding a context, validation under a lock), so that a missing one is
/// still reported first.
macro_rules! require {
    ($api:expr, $symbol:ident) => {{
        let api: $crate::raw::Api = $api;
        api.require(api.table().$symbol, ::core::stringify!($symbol))?
    }};
}
pub(crate) use require;

/// A driver's function table, vouched for as implementing the CUDA driver API, and
/// the driver version that [`Error::MissingEntryPoint`] reports.
///
/// Cheap to copy. Get one from [`Cuda::api`](crate::Cuda::api).
#[derive(Clone, Copy, Debug)]
pub struct Api {
    table: &'static DriverTable,
    version: Option<DriverVersion>,
}

impl Api {
    /// Wraps `table`; `version` is what missing entry points report.
    ///
    /// # Safety
    /// Every function in `table` must implement the CUDA driver API's documented
    /// semantics (as [`Cuda::from_driver`](crate::Cuda::from_driver) requires of its
    /// driver): the functions here rely on it for every call.
    pub unsafe fn new(table: &'static DriverTable, version: Option<DriverVersion>) -> Api {
        Api { table, version }
    }

    /// The function table.
    #[inline]
    pub fn table(self) -> &'static DriverTable {
        self.table
    }

    /// The driver version missing entry points report.
    #[inline]
    pub fn version(self) -> Option<DriverVersion> {
        self.version
    }

    /// The same table, reporting `version` for missing entry points.
    #[inline]
    pub fn with_version(self, version: Option<DriverVersion>) -> Api {
        Api {
            table: self.table,
            version,
        }
    }

    /// The same table, reporting no version for missing entry points (for code that
    /// runs where no [`Cuda`](crate::Cuda) is at hand: contexts, staging).
    #[inline]
    pub(crate) fn versionless(self) -> Api {
        Api {
            table: self.table,
            version: None,
        }
    }

    /// A missing entry point as this crate reports it.
    #[inline]
    pub(crate) fn missing(self, m: MissingSymbol) -> Error {
        Error::MissingEntryPoint {
            symbol: m.0,
            driver_version: self.version,
        }
    }

    /// Fails with [`Error::MissingEntryPoint`] unless `slot` (the table's field for
    /// `symbol`) is resolved: for callers that look an entry point up before checks of
    /// their own, so that a missing one is reported first.
    #[inline]
    pub(crate) fn require<F>(self, slot: Option<F>, symbol: &'static str) -> Result<()> {
        match slot {
            Some(_) => Ok(()),
            None => Err(self.missing(MissingSymbol(symbol))),
        }
    }

    /// Checks a bare call without out-parameters.
    #[inline]
    fn done(self, call: &'static str, rc: bare::Rc) -> Result<()> {
        check(call, rc.map_err(|m| self.missing(m))?)
    }

    /// Checks a bare call and returns its out-parameters.
    #[inline]
    fn out<T>(self, call: &'static str, answer: bare::Out<T>) -> Result<T> {
        let (rc, value) = answer.map_err(|m| self.missing(m))?;
        check(call, rc)?;
        Ok(value)
    }

    /// Checks a bare query: `CUDA_ERROR_NOT_READY` is `false`, success `true`.
    #[inline]
    fn ready(self, call: &'static str, rc: bare::Rc) -> Result<bool> {
        match rc.map_err(|m| self.missing(m))? {
            CUresult::CUDA_ERROR_NOT_READY => Ok(false),
            rc => check(call, rc).map(|()| true),
        }
    }
}
