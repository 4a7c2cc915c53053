//! Physical allocations (`cuMemCreate` / `cuMemRelease`).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use cuda_vmm_sys::CUmemGenericAllocationHandle;

use crate::device::Device;
use crate::error::{Error, Result};
use crate::props::{AllocationProps, HandleTypes, Location};
use crate::raw::AllocationHandle;
use crate::validate::check_multiple;

pub(crate) struct AllocationInner {
    device: Device,
    handle: AllocationHandle,
    size: usize,
    granularity: usize,
    props: AllocationProps,
    /// Imported from a shareable handle: other processes (or other imports) may map the
    /// same memory, which no count of this process can see.
    imported: bool,
}

/// Live [`AllocationInner`]s per driver handle, keyed by (driver table address, handle
/// value): every path that wraps a handle (create, retain, import) counts here, so a wrapper
/// can tell whether another wrapper of the same driver handle exists. The real driver and
/// the simulator both return the original handle value from `cuMemRetainAllocationHandle`.
static WRAPPERS: parking_lot::Mutex<Option<HashMap<(usize, CUmemGenericAllocationHandle), usize>>> =
    parking_lot::Mutex::new(None);

fn wrapper_key(device: &Device, handle: CUmemGenericAllocationHandle) -> (usize, u64) {
    (device.cuda().sys() as *const _ as usize, handle)
}

fn count_wrapper(key: (usize, u64)) {
    *WRAPPERS
        .lock()
        .get_or_insert_with(HashMap::new)
        .entry(key)
        .or_insert(0) += 1;
}

fn uncount_wrapper(key: (usize, u64)) {
    let mut guard = WRAPPERS.lock();
    if let Some(map) = guard.as_mut() {
        if let Some(n) = map.get_mut(&key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&key);
            }
        }
    }
}

fn wrappers_of(key: (usize, u64)) -> usize {
    WRAPPERS
        .lock()
        .as_ref()
        .and_then(|map| map.get(&key).copied())
        .unwrap_or(0)
}

/// A physical allocation.
///
/// Clones share it. The handle is released when the last clone and every
/// [`Mapping`](crate::Mapping) of it are gone. `Send + Sync`.
#[derive(Clone)]
pub struct Allocation {
    inner: Arc<AllocationInner>,
}

impl fmt::Debug for Allocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Allocation")
            .field("handle", &format_args!("{:#x}", self.inner.handle.raw()))
            .field("size", &self.inner.size)
            .field("device", &self.inner.device.ordinal())
            .field("props", &self.inner.props)
            .finish()
    }
}

/// How long an allocation that ran out of memory waits for queued releases.
const OOM_FLUSH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

fn is_oom(e: &Error) -> bool {
    e.cuda_error()
        .is_some_and(|c| c.code() == cuda_vmm_sys::CUresult::CUDA_ERROR_OUT_OF_MEMORY.0)
}

impl Allocation {
    /// Creates `size` bytes of physical memory (`cuMemCreate`). When the device is out of
    /// memory while releases are queued, waits for them (up to a minute) and tries once
    /// more.
    ///
    /// `size` must be a nonzero multiple of the minimum granularity for `props`;
    /// a device location must be `device`; requested features (fabric or POSIX
    /// handles, compression, RDMA) must be supported by the device.
    ///
    /// Host memory is created through `device` too, and mapped and made accessible to
    /// devices like device memory; it does not count against the device's
    /// [`memory_info`](Device::memory_info). Refused before the driver is called
    /// ([`AllocationProps::validate_for_create`]): [`Location::HostNumaCurrent`] (the
    /// driver refuses it, though it answers its granularity), [`Location::Host`] with
    /// export handle types, and [`Location::HostNuma`] on a device without
    /// `HOST_NUMA_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED` ([`Error::Unsupported`]) or with a
    /// node that is neither the device's [`host_numa_id`](Device::host_numa_id) nor online.
    pub fn new(device: &Device, size: usize, props: &AllocationProps) -> Result<Allocation> {
        if size == 0 {
            return Err(Error::invalid(
                "allocation size 0: the size must be nonzero",
            ));
        }
        props.validate_for_create(device.cuda())?;
        if let Location::Device(d) = props.location() {
            if d != device.ordinal() {
                return Err(Error::invalid(format!(
                    "properties locate the memory on device {d}, but it is created through device {}",
                    device.ordinal()
                )));
            }
        }
        if let Location::HostNuma(node) = props.location() {
            crate::host_numa::check_node(device, node)?;
        }
        check_features(device, props)?;
        let granularity = device.min_granularity(props)?;
        check_multiple("allocation size", size as u64, granularity)?;
        // No current context needed: the driver answers VMM calls without one
        // (recorded on H200, driver 580: conformance `no_context_*`).
        let raw_props = props.to_raw();
        let api = device.cuda().api();
        let handle = match AllocationHandle::create(api, size, &raw_props, 0) {
            Err(e) if is_oom(&e) && device.cuda().release_queue().has_pending() => {
                // Memory whose release is queued comes back once its device work is done:
                // wait for it, then try once more.
                let _ = device.cuda().flush_releases(OOM_FLUSH_TIMEOUT);
                AllocationHandle::create(api, size, &raw_props, 0)?
            }
            other => other?,
        };
        Ok(Self::from_parts(
            device.clone(),
            handle,
            size,
            granularity,
            props.clone(),
        ))
    }

    /// Wraps a handle this process owns one reference of (released on last drop).
    pub(crate) fn from_parts(
        device: Device,
        handle: AllocationHandle,
        size: usize,
        granularity: usize,
        props: AllocationProps,
    ) -> Allocation {
        count_wrapper(wrapper_key(&device, handle.raw()));
        Allocation {
            inner: Arc::new(AllocationInner {
                device,
                handle,
                size,
                granularity,
                props,
                imported: false,
            }),
        }
    }

    /// Sets the properties of a just-wrapped (unshared) imported handle, and marks it
    /// imported (never [exclusive](Allocation::is_exclusive)).
    pub(crate) fn with_props(mut self, props: AllocationProps, granularity: usize) -> Allocation {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.props = props;
            inner.granularity = granularity;
            inner.imported = true;
        }
        self
    }

    /// Size in bytes.
    #[inline]
    pub fn size(&self) -> usize {
        self.inner.size
    }

    /// The device it was created through.
    #[inline]
    pub fn device(&self) -> &Device {
        &self.inner.device
    }

    /// The properties it was created with.
    #[inline]
    pub fn props(&self) -> &AllocationProps {
        &self.inner.props
    }

    /// The minimum granularity of its properties: map offsets and sizes are multiples of it.
    #[inline]
    pub fn granularity(&self) -> usize {
        self.inner.granularity
    }

    /// The raw `CUmemGenericAllocationHandle`, for diagnostics.
    #[inline]
    pub fn raw_handle(&self) -> u64 {
        self.inner.handle.raw()
    }

    /// The owned handle, live while this allocation is.
    pub(crate) fn handle(&self) -> &AllocationHandle {
        &self.inner.handle
    }

    /// How many handles hold this allocation: this one, its other clones, and every
    /// [`Mapping`](crate::Mapping) of it (live, or leaked after a failed unmap). 1 means this
    /// handle is the only one, so the allocation is mapped nowhere and nobody else can map it
    /// through this process's handles (a handle of the same memory obtained separately, by
    /// [`Mapping::retain_allocation`](crate::Mapping::retain_allocation) or an import, is not
    /// counted here: see [`handle_wrappers`](Allocation::handle_wrappers) and
    /// [`is_exclusive`](Allocation::is_exclusive)).
    pub fn holders(&self) -> usize {
        Arc::strong_count(&self.inner)
    }

    /// How many wrappers of this allocation's DRIVER HANDLE this process holds: this one
    /// (with its clones) counts 1, and every other [`Allocation`] of the same handle value
    /// (from [`Mapping::retain_allocation`](crate::Mapping::retain_allocation), or an import
    /// the driver answered with the same handle) counts 1 more, live or leaked.
    pub fn handle_wrappers(&self) -> usize {
        wrappers_of(wrapper_key(&self.inner.device, self.inner.handle.raw())).max(1)
    }

    /// Whether this handle provably owns the memory alone: exactly one wrapper of the driver
    /// handle exists ([`handle_wrappers`](Allocation::handle_wrappers) is 1), it has no other
    /// clone and no live or leaked [`Mapping`](crate::Mapping) ([`holders`](Allocation::holders)
    /// is 1), and it was not imported (an imported handle may be mapped by the exporter, which
    /// no count of this process sees). Whatever path produced the wrapper, memory still mapped
    /// or held through another wrapper is not exclusive. Pools take only exclusive chunks.
    pub fn is_exclusive(&self) -> bool {
        !self.inner.imported && self.holders() == 1 && self.handle_wrappers() == 1
    }

    /// Whether this allocation was imported from a shareable handle.
    pub fn is_imported(&self) -> bool {
        self.inner.imported
    }

    /// The properties as the driver reports them (`cuMemGetAllocationPropertiesFromHandle`).
    ///
    /// The driver does not always report the location the memory was created at: memory
    /// created at [`Location::Host`] is reported as [`Location::HostNuma`]`(0)` (recorded
    /// on an H200, driver 580.159.04: conformance `properties_of_host`).
    /// [`props`](Allocation::props) keeps the properties it was created with.
    pub fn properties(&self) -> Result<AllocationProps> {
        query_props(&self.inner.device, &self.inner.handle)
    }

    /// Releases the handle now.
    ///
    /// Fails with [`Error::InUse`] while other clones or mappings hold it; this
    /// handle is then dropped and the memory is released when the last user goes.
    /// If the driver refuses the release, the error is returned and the release is
    /// tried once more as the handle is dropped.
    pub fn release(self) -> Result<()> {
        match Arc::try_unwrap(self.inner) {
            Ok(mut inner) => inner.release_handle(),
            Err(shared) => Err(Error::InUse {
                what: "allocation",
                users: Arc::strong_count(&shared).saturating_sub(1).max(1),
            }),
        }
    }
}

/// Reads the properties of `handle` from the driver.
fn query_props(device: &Device, handle: &AllocationHandle) -> Result<AllocationProps> {
    crate::raw::require!(device.cuda().api(), cuMemGetAllocationPropertiesFromHandle);
    let _bound = device.bind()?;
    let raw = handle.properties(device.cuda().api())?;
    AllocationProps::from_raw(&raw)
}

/// Refuses features the device lacks, before any allocation call.
fn check_features(device: &Device, props: &AllocationProps) -> Result<()> {
    let types = props.requested_handle_types();
    let unsupported = |feature| Error::Unsupported {
        feature,
        device: device.ordinal(),
    };
    if cfg!(not(windows))
        && (types.contains(HandleTypes::WIN32) || types.contains(HandleTypes::WIN32_KMT))
    {
        return Err(unsupported("Win32 handles"));
    }
    if types.is_empty() && !props.is_compressed() && !props.is_rdma_capable() {
        return Ok(());
    }
    let features = device.features()?;
    if types.contains(HandleTypes::POSIX_FD) && !features.posix_fd {
        return Err(unsupported("POSIX file descriptor handles"));
    }
    if types.contains(HandleTypes::FABRIC) && !features.fabric {
        return Err(unsupported("fabric handles"));
    }
    if props.is_compressed() && !features.compression {
        return Err(unsupported("compression"));
    }
    if props.is_rdma_capable() && !features.rdma {
        return Err(unsupported("GPUDirect RDMA"));
    }
    Ok(())
}

impl AllocationInner {
    fn release_handle(&mut self) -> Result<()> {
        // No current context needed: the driver answers VMM calls without one
        // (recorded on H200, driver 580: conformance `no_context_*`). No mapping of it
        // is alive (every Mapping holds a clone of the allocation).
        self.handle.release(self.device.cuda().api(), self.size)
    }
}

impl Drop for AllocationInner {
    fn drop(&mut self) {
        if let Err(e) = self.release_handle() {
            tracing::error!("releasing allocation {:#x}: {e}", self.handle.raw());
        }
        // Uncounted after the release: a handle value the driver reuses meanwhile is
        // over-counted for a moment (refused by pools), never under-counted.
        uncount_wrapper(wrapper_key(&self.device, self.handle.raw()));
    }
}
