//! Devices: identity, attributes, granularity, memory info, current context.

use std::fmt;
use std::sync::{Arc, OnceLock};

use cuda_vmm_sys::{
    CUcontext, CUdevice, CUdevice_attribute, CUmemAllocationGranularity_flags, CUresult,
};
use parking_lot::Mutex;

use crate::capabilities::{Capabilities, Features};
use crate::context::{bind, Bound, PrimaryContext};
use crate::driver::Cuda;
use crate::error::{Error, Result};
use crate::props::{AllocationProps, PropsKey};
use crate::raw::{self, Api, StreamHandle};
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
    /// The driver's table, reporting no version (as contexts and staging do).
    api: Api,
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
        self.staging.release(self.api, &self.context.context);
        self.context.release(self.api);
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
        let ordinal_c = i32::try_from(ordinal)
            .map_err(|_| Error::invalid(format!("device ordinal {ordinal} does not fit an int")))?;
        let raw = raw::device_get(cuda.api(), ordinal_c)?;
        let context = PrimaryContext::retain(cuda, raw)?;
        Ok(Arc::new(DeviceShared {
            api: cuda.api().versionless(),
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
        self.inner.context.context.raw()
    }

    /// The crate's private non-blocking stream on this device.
    #[inline]
    pub(crate) fn private_stream(&self) -> &StreamHandle {
        &self.inner.context.stream
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
        self.inner.staging.quarantined(self.inner.api)
    }

    /// Binds the primary context to the calling thread until the guard drops.
    #[inline]
    pub(crate) fn bind(&self) -> Result<Bound> {
        bind(self.inner.api, &self.inner.context.context)
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
        raw::device_get_name(self.cuda.api(), self.raw())
    }

    /// Total memory in bytes (`cuDeviceTotalMem`).
    pub fn total_memory(&self) -> Result<usize> {
        raw::device_total_mem(self.cuda.api(), self.raw())
    }

    /// One device attribute (`cuDeviceGetAttribute`).
    pub fn attribute(&self, attr: CUdevice_attribute) -> Result<i32> {
        raw::device_get_attribute(self.cuda.api(), attr, self.raw())
    }

    /// The VMM-related feature attributes, read once and cached.
    pub(crate) fn features(&self) -> Result<Features> {
        if let Some(f) = self.inner.features.get() {
            return Ok(*f);
        }
        let f = Features::query(self)?;
        Ok(*self.inner.features.get_or_init(|| f))
    }

    /// Whether host NUMA memory ([`Location::HostNuma`](crate::Location::HostNuma)) can be
    /// created and mapped through this device with the VMM calls
    /// (`CU_DEVICE_ATTRIBUTE_HOST_NUMA_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED`; read once and
    /// cached; a driver too old to know the attribute means no).
    pub fn supports_host_numa_vmm(&self) -> Result<bool> {
        Ok(self.features()?.host_numa_vmm)
    }

    /// The host NUMA node closest to this device (`CU_DEVICE_ATTRIBUTE_HOST_NUMA_ID`):
    /// `None` when the device reports none (a negative id) or the driver does not know the
    /// attribute.
    pub fn host_numa_id(&self) -> Result<Option<u32>> {
        match self.attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_HOST_NUMA_ID) {
            Ok(id) => Ok(u32::try_from(id).ok()),
            Err(e) if e.code() == Some(CUresult::CUDA_ERROR_INVALID_VALUE.0) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A report of what this device supports for VMM.
    pub fn capabilities(&self) -> Result<Capabilities> {
        let props = AllocationProps::device(self);
        Ok(Capabilities::new(
            self.name()?,
            self.ordinal(),
            self.total_memory()?,
            self.features()?,
            self.host_numa_id()?,
            self.granularity(&props, GranularityKind::Minimum)?,
            self.granularity(&props, GranularityKind::Recommended)?,
        ))
    }

    /// Allocation granularity for `props` (`cuMemGetAllocationGranularity`).
    ///
    /// `props` are [validated](AllocationProps::validate) first. Every host location is
    /// answered, [`Location::HostNumaCurrent`](crate::Location::HostNumaCurrent) too,
    /// though `cuMemCreate` refuses that one (an H200, driver 580, answers 2 MiB at each).
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
        // No current context needed: the driver answers VMM calls without one
        // (recorded on H200, driver 580: conformance `no_context_*`).
        let g = raw::mem_get_allocation_granularity(self.cuda.api(), &props.to_raw(), flags)?;
        if g == 0 || !g.is_power_of_two() {
            return Err(Error::invalid(format!(
                "the driver reported granularity {g}, which is not a power of two"
            )));
        }
        Ok(g)
    }

    /// Free and total memory of this device (`cuMemGetInfo`).
    pub fn memory_info(&self) -> Result<MemoryInfo> {
        crate::raw::require!(self.cuda().api(), cuMemGetInfo_v2);
        let bound = self.bind()?;
        let (free, total) = bound.finish(raw::mem_get_info(self.cuda.api()))?;
        Ok(MemoryInfo { free, total })
    }

    /// Makes this device's primary context current on the calling thread
    /// (`cuCtxSetCurrent`, a no-op when it already is), and leaves it current.
    ///
    /// The crate itself never needs this: every operation binds the context
    /// for its own duration and restores the caller's. Use it before launching
    /// work through raw driver calls.
    pub fn make_current(&self) -> Result<()> {
        self.inner.context.context.make_current(self.cuda.api())
    }

    /// Waits for all work in this device's primary context (`cuCtxSynchronize`).
    ///
    /// This also reports sticky errors of work this crate did not issue.
    pub fn synchronize(&self) -> Result<()> {
        self.synchronize_idle().map(|_idle| ())
    }

    /// [`synchronize`](Self::synchronize), returning the proof that the work finished.
    pub(crate) fn synchronize_idle(&self) -> Result<raw::ContextIdle> {
        crate::raw::require!(self.cuda().api(), cuCtxSynchronize);
        let bound = self.bind()?;
        bound.finish(raw::ctx_synchronize(self.cuda.api()))?;
        Ok(raw::ContextIdle::after_synchronize())
    }

    /// Whether this device can access `peer`'s memory (`cuDeviceCanAccessPeer`).
    pub fn can_access_peer(&self, peer: &Device) -> Result<bool> {
        self.check_same_driver(peer, "the peer device")?;
        raw::device_can_access_peer(self.cuda.api(), self.raw(), peer.raw())
    }
}
