//! Devices: identity, attributes, granularity, memory info, current context.

use std::fmt;
use std::mem::MaybeUninit;
use std::sync::{Arc, OnceLock};

use cuda_vmm_sys::{
    entry, CUcontext, CUdevice, CUdevice_attribute, CUmemAllocationGranularity_flags, CUstream,
    DriverTable,
};
use parking_lot::Mutex;

use crate::capabilities::{Capabilities, Features};
use crate::context::{bind, Bound, PrimaryContext};
use crate::driver::Cuda;
use crate::error::{check, Error, Result};
use crate::props::{AllocationProps, PropsKey};
use crate::staging::Staging;

/// Which granularity `cuMemGetAllocationGranularity` reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GranularityKind {
    /// The minimum: sizes and offsets must be multiples of it.
    Minimum,
    /// The granularity the driver recommends for performance.
    Recommended,
}

/// Free and total device memory in bytes (`cuMemGetInfo`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryInfo {
    /// Free bytes.
    pub free: usize,
    /// Total bytes.
    pub total: usize,
}

/// What a [`Cuda`] keeps per opened device, for its whole lifetime.
pub(crate) struct DeviceShared {
    table: &'static DriverTable,
    ordinal: usize,
    raw: CUdevice,
    context: PrimaryContext,
    /// Minimum granularity per kind of properties, filled on first use.
    granularity: Mutex<Vec<(PropsKey, usize)>>,
    /// Feature attributes, read on first use.
    features: OnceLock<Features>,
    /// Host staging buffers for copies (freed before the context is released).
    staging: Staging,
}

impl Drop for DeviceShared {
    fn drop(&mut self) {
        self.staging.release(self.table, self.context.ctx);
        self.context.release(self.table);
    }
}

/// A device of a [`Cuda`].
///
/// The device's primary context (the one the CUDA runtime and cudarc use) is
/// retained once by the `Cuda`, the first time the device is opened, and
/// released when the `Cuda` and every object made from it are gone; opening
/// a device again, cloning it or dropping a clone costs no driver call.
/// Operations bind the context only for their own duration, so the calling
/// thread's current context is left as it was. `Send + Sync`.
#[derive(Clone)]
pub struct Device {
    cuda: Cuda,
    inner: Arc<DeviceShared>,
}

impl fmt::Debug for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Device")
            .field("ordinal", &self.inner.ordinal)
            .field("backend", &self.cuda.backend())
            .finish()
    }
}

impl Device {
    /// Wraps state the `Cuda` already holds.
    pub(crate) fn from_shared(cuda: Cuda, inner: Arc<DeviceShared>) -> Device {
        Device { cuda, inner }
    }

    /// Looks the device up and retains its primary context (ordinal already
    /// checked); called once per device by [`Cuda`].
    pub(crate) fn open_shared(cuda: &Cuda, ordinal: usize) -> Result<Arc<DeviceShared>> {
        let f = cuda.entry(entry!(cuda.table(), cuDeviceGet))?;
        let mut raw = MaybeUninit::<CUdevice>::uninit();
        let ordinal_c = i32::try_from(ordinal)
            .map_err(|_| Error::invalid(format!("device ordinal {ordinal} does not fit an int")))?;
        // SAFETY: `raw` is a valid out-pointer; any ordinal is accepted (bad ones fail).
        check("cuDeviceGet", unsafe { f(raw.as_mut_ptr(), ordinal_c) })?;
        // SAFETY: written by the driver on success.
        let raw = unsafe { raw.assume_init() };
        let context = PrimaryContext::retain(cuda, raw)?;
        Ok(Arc::new(DeviceShared {
            table: cuda.table(),
            ordinal,
            raw,
            context,
            granularity: Mutex::new(Vec::new()),
            features: OnceLock::new(),
            staging: Staging::default(),
        }))
    }

    /// The device's ordinal.
    #[inline]
    pub fn ordinal(&self) -> usize {
        self.inner.ordinal
    }

    /// The driver this device belongs to.
    #[inline]
    pub fn cuda(&self) -> &Cuda {
        &self.cuda
    }

    /// The primary context's handle (retained for the `Cuda`'s lifetime).
    ///
    /// Interop: this is the context cudarc and the runtime API use.
    #[inline]
    pub fn raw_context(&self) -> CUcontext {
        self.inner.context.ctx
    }

    /// The crate's private non-blocking stream on this device.
    #[inline]
    pub(crate) fn private_stream(&self) -> CUstream {
        self.inner.context.stream
    }

    /// The device's host staging buffers.
    #[inline]
    pub(crate) fn staging(&self) -> &Staging {
        &self.inner.staging
    }

    /// Bytes of host-copy staging set aside on this device after failed waits (see
    /// [`staging`](crate::staging)): buffers a copy may still use, reused once their
    /// copy is seen complete (queried here), or never when no event covers it. Nonzero
    /// only after a wait failed, which usually means the context is lost.
    pub fn quarantined_staging_bytes(&self) -> usize {
        // The events are queried in their context; unbound, a query counts as not done.
        let _bound = self.bind();
        self.inner.staging.quarantined(self.cuda().table())
    }

    /// Binds the primary context to the calling thread until the guard drops.
    #[inline]
    pub(crate) fn bind(&self) -> Result<Bound> {
        bind(self.cuda.table(), self.inner.context.ctx)
    }

    /// The raw `CUdevice`.
    #[inline]
    pub(crate) fn raw(&self) -> CUdevice {
        self.inner.raw
    }

    /// Whether `other` is the same device of the same driver.
    #[inline]
    pub(crate) fn same_as(&self, other: &Device) -> bool {
        self.inner.ordinal == other.inner.ordinal && self.cuda().same_driver(other.cuda())
    }

    /// Fails unless `other` belongs to the same driver (handles are per driver).
    #[inline]
    pub(crate) fn check_same_driver(&self, other: &Device, what: &str) -> Result<()> {
        if self.cuda().same_driver(other.cuda()) {
            Ok(())
        } else {
            Err(Error::invalid(format!(
                "{what} belongs to a different driver ({}) than device {} ({})",
                other.cuda().sys().origin(),
                self.ordinal(),
                self.cuda().sys().origin()
            )))
        }
    }

    /// The device's name (`cuDeviceGetName`).
    pub fn name(&self) -> Result<String> {
        let f = self
            .cuda()
            .entry(entry!(self.cuda().table(), cuDeviceGetName))?;
        let mut buf = [0 as std::ffi::c_char; 256];
        // SAFETY: `buf` is writable for `buf.len()` bytes, which we pass as the length.
        check("cuDeviceGetName", unsafe {
            f(buf.as_mut_ptr(), buf.len() as i32, self.raw())
        })?;
        let bytes: Vec<u8> = buf
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Total memory in bytes (`cuDeviceTotalMem`).
    pub fn total_memory(&self) -> Result<usize> {
        let f = self
            .cuda()
            .entry(entry!(self.cuda().table(), cuDeviceTotalMem_v2))?;
        let mut bytes = MaybeUninit::<usize>::uninit();
        // SAFETY: `bytes` is a valid out-pointer.
        check("cuDeviceTotalMem_v2", unsafe {
            f(bytes.as_mut_ptr(), self.raw())
        })?;
        // SAFETY: written by the driver on success.
        Ok(unsafe { bytes.assume_init() })
    }

    /// One device attribute (`cuDeviceGetAttribute`).
    pub fn attribute(&self, attr: CUdevice_attribute) -> Result<i32> {
        let f = self
            .cuda()
            .entry(entry!(self.cuda().table(), cuDeviceGetAttribute))?;
        let mut value = MaybeUninit::<i32>::uninit();
        // SAFETY: `value` is a valid out-pointer; unknown attributes fail cleanly.
        check("cuDeviceGetAttribute", unsafe {
            f(value.as_mut_ptr(), attr, self.raw())
        })?;
        // SAFETY: written by the driver on success.
        Ok(unsafe { value.assume_init() })
    }

    /// The VMM-related feature attributes, read once and cached.
    pub(crate) fn features(&self) -> Result<Features> {
        if let Some(f) = self.inner.features.get() {
            return Ok(*f);
        }
        let f = Features::query(self)?;
        Ok(*self.inner.features.get_or_init(|| f))
    }

    /// A report of what this device supports for VMM.
    pub fn capabilities(&self) -> Result<Capabilities> {
        let props = AllocationProps::device(self);
        Ok(Capabilities::new(
            self.name()?,
            self.ordinal(),
            self.total_memory()?,
            self.features()?,
            self.granularity(&props, GranularityKind::Minimum)?,
            self.granularity(&props, GranularityKind::Recommended)?,
        ))
    }

    /// Allocation granularity for `props` (`cuMemGetAllocationGranularity`).
    ///
    /// The minimum is cached per kind of properties, so repeated calls (and the
    /// validation in [`Allocation::new`](crate::Allocation::new)) cost no driver call.
    pub fn granularity(&self, props: &AllocationProps, kind: GranularityKind) -> Result<usize> {
        props.validate(self.cuda())?;
        match kind {
            GranularityKind::Minimum => self.min_granularity(props),
            GranularityKind::Recommended => self.query_granularity(
                props,
                CUmemAllocationGranularity_flags::CU_MEM_ALLOC_GRANULARITY_RECOMMENDED,
            ),
        }
    }

    /// The minimum allocation granularity for `props`: the size and alignment every
    /// allocation, reservation and mapping with these properties is a multiple of
    /// (`cuMemGetAllocationGranularity`, `CU_MEM_ALLOC_GRANULARITY_MINIMUM`).
    ///
    /// Cached per kind of properties like [`granularity`](Self::granularity), so repeated
    /// calls cost no driver call. Unlike `granularity`, `props` are not
    /// [validated](AllocationProps::validate) first: properties that validation would refuse
    /// get the driver's answer (usually its error) instead of
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument).
    /// `AllocationProps::device(&device)` is always valid.
    #[inline]
    pub fn min_granularity(&self, props: &AllocationProps) -> Result<usize> {
        let key = props.key();
        if let Some(&(_, g)) = self
            .inner
            .granularity
            .lock()
            .iter()
            .find(|(k, _)| *k == key)
        {
            return Ok(g);
        }
        let g = self.query_granularity(
            props,
            CUmemAllocationGranularity_flags::CU_MEM_ALLOC_GRANULARITY_MINIMUM,
        )?;
        let mut cache = self.inner.granularity.lock();
        if !cache.iter().any(|(k, _)| *k == key) {
            cache.push((key, g));
        }
        Ok(g)
    }

    fn query_granularity(
        &self,
        props: &AllocationProps,
        flags: CUmemAllocationGranularity_flags,
    ) -> Result<usize> {
        let f = self
            .cuda()
            .entry(entry!(self.cuda().table(), cuMemGetAllocationGranularity))?;
        // No current context needed: the driver answers VMM calls without one
        // (recorded on H200, driver 580: conformance `no_context_*`).
        let raw = props.to_raw();
        let mut g = MaybeUninit::<usize>::uninit();
        // SAFETY: `g` is a valid out-pointer and `raw` a valid, fully initialised prop struct.
        check("cuMemGetAllocationGranularity", unsafe {
            f(g.as_mut_ptr(), &raw, flags)
        })?;
        // SAFETY: written by the driver on success.
        let g = unsafe { g.assume_init() };
        if g == 0 || !g.is_power_of_two() {
            return Err(Error::invalid(format!(
                "the driver reported granularity {g}, which is not a power of two"
            )));
        }
        Ok(g)
    }

    /// Free and total memory of this device (`cuMemGetInfo`).
    pub fn memory_info(&self) -> Result<MemoryInfo> {
        let f = self
            .cuda()
            .entry(entry!(self.cuda().table(), cuMemGetInfo_v2))?;
        let bound = self.bind()?;
        let mut free = MaybeUninit::<usize>::uninit();
        let mut total = MaybeUninit::<usize>::uninit();
        // SAFETY: both are valid out-pointers; the device's context is current.
        bound.finish(check("cuMemGetInfo_v2", unsafe {
            f(free.as_mut_ptr(), total.as_mut_ptr())
        }))?;
        // SAFETY: both written by the driver on success.
        let (free, total) = unsafe { (free.assume_init(), total.assume_init()) };
        Ok(MemoryInfo { free, total })
    }

    /// Makes this device's primary context current on the calling thread
    /// (`cuCtxSetCurrent`, a no-op when it already is), and leaves it current.
    ///
    /// The crate itself never needs this: every operation binds the context
    /// for its own duration and restores the caller's. Use it before launching
    /// work through raw driver calls.
    pub fn make_current(&self) -> Result<()> {
        let table = self.cuda.table();
        let get = self.cuda.entry(entry!(table, cuCtxGetCurrent))?;
        let mut current = MaybeUninit::<CUcontext>::uninit();
        // SAFETY: `current` is a valid out-pointer.
        check("cuCtxGetCurrent", unsafe { get(current.as_mut_ptr()) })?;
        // SAFETY: written by the driver on success.
        if unsafe { current.assume_init() } == self.raw_context() {
            return Ok(());
        }
        let set = self.cuda.entry(entry!(table, cuCtxSetCurrent))?;
        // SAFETY: the context is retained by `self.cuda` for its lifetime.
        check("cuCtxSetCurrent", unsafe { set(self.raw_context()) })
    }

    /// Waits for all work in this device's primary context (`cuCtxSynchronize`).
    ///
    /// This also reports sticky errors of work this crate did not issue.
    pub fn synchronize(&self) -> Result<()> {
        let f = self
            .cuda
            .entry(entry!(self.cuda.table(), cuCtxSynchronize))?;
        let bound = self.bind()?;
        // SAFETY: no arguments; the device's context is current.
        bound.finish(check("cuCtxSynchronize", unsafe { f() }))
    }

    /// Whether this device can access `peer`'s memory (`cuDeviceCanAccessPeer`).
    pub fn can_access_peer(&self, peer: &Device) -> Result<bool> {
        self.check_same_driver(peer, "the peer device")?;
        let f = self
            .cuda()
            .entry(entry!(self.cuda().table(), cuDeviceCanAccessPeer))?;
        let mut can = MaybeUninit::<i32>::uninit();
        // SAFETY: `can` is a valid out-pointer; both devices come from this driver.
        check("cuDeviceCanAccessPeer", unsafe {
            f(can.as_mut_ptr(), self.raw(), peer.raw())
        })?;
        // SAFETY: written by the driver on success.
        Ok(unsafe { can.assume_init() } != 0)
    }
}
