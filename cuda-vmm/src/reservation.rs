//! Reserved virtual address ranges (`cuMemAddressReserve` / `cuMemAddressFree`).

use std::fmt;
use std::sync::{Arc, Weak};

use parking_lot::{Mutex, RwLock};

use crate::access::{device_location, AccessDescs, AccessFlags};
use crate::allocation::Allocation;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::mapped::MappedRanges;
use crate::mapping::Mapping;
use crate::ordering::{UnmapWait, UseTracker};
use crate::props::AllocationProps;
use crate::raw::{self, ReservedRange};
use crate::release::Entry;
use crate::stream::Stream;
use crate::validate::{check_bounds, check_multiple};

/// How to reserve an address range; `Default` is "granularity-aligned, anywhere".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReserveOptions {
    /// Alignment of the start address: a power of two; 0 (or anything smaller
    /// than the granularity) means the granularity.
    pub alignment: usize,
    /// Preferred start address (a multiple of the granularity).
    pub hint: Option<u64>,
    /// Fail with [`Error::HintNotHonoured`] (freeing the range) when the driver
    /// places the range elsewhere. Needs a `hint`.
    pub strict_hint: bool,
}

pub(crate) struct ReservationInner {
    pub(crate) device: Device,
    pub(crate) ptr: u64,
    pub(crate) size: usize,
    pub(crate) granularity: usize,
    hint_honoured: bool,
    /// Live mappings. Writers (map, unmap, set access) and readers (copies)
    /// hold it across their driver call, so no copy races an unmap.
    pub(crate) mapped: RwLock<MappedRanges>,
    /// Device work recorded on the memory, peers, and what unmapping waits for.
    pub(crate) uses: UseTracker,
    /// The range itself, freed once.
    pub(crate) range: ReservedRange,
    /// Queued releases of mappings into this range (their intervals are marked ending).
    pub(crate) ending: Mutex<Vec<Weak<Entry>>>,
}

/// A reserved virtual address range on a device.
///
/// Clones share it. The range is freed when the last clone and every
/// [`Mapping`] into it are gone. `Send + Sync`: mapping changes and copies on
/// one reservation are serialised by a lock held across their driver call, so
/// a copy never races the unmapping of its range.
#[derive(Clone)]
pub struct Reservation {
    pub(crate) inner: Arc<ReservationInner>,
}

impl fmt::Debug for Reservation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reservation")
            .field("ptr", &format_args!("{:#x}", self.inner.ptr))
            .field("size", &self.inner.size)
            .field("device", &self.inner.device.ordinal())
            .field("mappings", &self.inner.mapped.read().len())
            .finish()
    }
}

impl Reservation {
    /// Reserves `size` bytes (a nonzero multiple of the device's minimum granularity).
    pub fn new(device: &Device, size: usize, opts: ReserveOptions) -> Result<Reservation> {
        if size == 0 {
            return Err(Error::invalid(
                "reservation size 0: the size must be nonzero",
            ));
        }
        if opts.alignment != 0 && !opts.alignment.is_power_of_two() {
            return Err(Error::invalid(format!(
                "alignment {} is not a power of two",
                opts.alignment
            )));
        }
        let granularity = device.min_granularity(&AllocationProps::device(device))?;
        check_multiple("reservation size", size as u64, granularity)?;
        let alignment = opts.alignment.max(granularity);
        let hint = match opts.hint {
            None if opts.strict_hint => {
                return Err(Error::invalid(
                    "strict_hint is set but no address hint is given",
                ))
            }
            None => 0,
            Some(0) => return Err(Error::invalid("address hint 0 is not an address; use None")),
            Some(h) => {
                check_multiple("address hint", h, granularity)?;
                if h.checked_add(size as u64).is_none() {
                    return Err(Error::invalid(format!(
                        "address hint {h:#x} plus size {size} overflows the address space"
                    )));
                }
                h
            }
        };
        // No current context needed: the driver answers VMM calls without one
        // (recorded on H200, driver 580: conformance `no_context_*`).
        let range = ReservedRange::reserve(device.cuda().api(), size, alignment, hint, 0)?;
        let ptr = range.base();
        let hint_honoured = opts.hint == Some(ptr);
        let reservation = Reservation {
            inner: Arc::new(ReservationInner {
                device: device.clone(),
                ptr,
                size,
                granularity,
                hint_honoured,
                mapped: RwLock::new(MappedRanges::default()),
                uses: UseTracker::default(),
                range,
                ending: Mutex::new(Vec::new()),
            }),
        };
        if opts.strict_hint && !hint_honoured {
            reservation.free()?;
            return Err(Error::HintNotHonoured {
                requested: hint,
                got: ptr,
            });
        }
        Ok(reservation)
    }

    /// Start address.
    #[inline]
    pub fn ptr(&self) -> u64 {
        self.inner.ptr
    }

    /// Size in bytes.
    #[inline]
    pub fn size(&self) -> usize {
        self.inner.size
    }

    /// The device's minimum granularity, which sizes and offsets here are multiples of.
    #[inline]
    pub fn granularity(&self) -> usize {
        self.inner.granularity
    }

    /// The device the range was reserved on (copies run on it).
    #[inline]
    pub fn device(&self) -> &Device {
        &self.inner.device
    }

    /// Whether a hint was given and the range starts exactly there.
    #[inline]
    pub fn hint_honoured(&self) -> bool {
        self.inner.hint_honoured
    }

    /// Number of live mappings into this range.
    pub fn mapping_count(&self) -> usize {
        self.inner.mapped.read().len()
    }

    /// Maps `size` bytes of `allocation`, from `alloc_offset`, at `offset` in this range.
    ///
    /// Offsets and size must be multiples of the allocation's granularity, lie
    /// within both the reservation and the allocation, and not overlap a live
    /// mapping. The driver maps whole allocations only, so `alloc_offset` must
    /// be 0 and `size` must equal `allocation.size()`. The new mapping has no access yet: call [`Mapping::set_access`]
    /// or [`Reservation::set_access`].
    pub fn map(
        &self,
        offset: usize,
        allocation: &Allocation,
        alloc_offset: usize,
        size: usize,
    ) -> Result<Mapping> {
        let inner = &*self.inner;
        inner
            .device
            .check_same_driver(allocation.device(), "the allocation")?;
        let g = allocation.granularity();
        if size == 0 {
            return Err(Error::invalid("mapping size 0: the size must be nonzero"));
        }
        check_multiple("offset", offset as u64, g)?;
        check_multiple("size", size as u64, g)?;
        check_multiple("allocation offset", alloc_offset as u64, g)?;
        check_multiple("reservation address", inner.ptr, g)?;
        check_bounds("mapping in reservation", offset, size, inner.size)?;
        check_bounds(
            "mapping in allocation",
            alloc_offset,
            size,
            allocation.size(),
        )?;
        if alloc_offset != 0 || size != allocation.size() {
            // The driver maps whole allocations only (CUDA_ERROR_NOT_SUPPORTED otherwise).
            return Err(Error::invalid(format!(
                "mapping {size} bytes at allocation offset {alloc_offset} of a {}-byte \
                 allocation: cuMemMap maps whole allocations only (offset 0, size {})",
                allocation.size(),
                allocation.size()
            )));
        }
        let api = inner.device.cuda().api();
        crate::raw::require!(api, cuMemMap);
        // No current context needed: the driver answers VMM calls without one
        // (recorded on H200, driver 580: conformance `no_context_*`).
        let mut mapped = inner.mapped.write();
        if mapped.overlaps_ending(offset, size) {
            // Queued releases hold these addresses: complete them (and only them) first.
            // One that fails keeps its interval, which `map` then refuses as an overlap.
            drop(mapped);
            self.complete_ending(offset, size);
            mapped = inner.mapped.write();
        }
        // Refuses an overlap with a live mapping (`Error::Overlap`), then records it.
        inner
            .range
            .map(api, &mut mapped, offset, size, alloc_offset, allocation)?;
        drop(mapped);
        Ok(Mapping::new(self.clone(), allocation.clone(), offset, size))
    }

    /// Completes the queued releases of mappings overlapping `[offset, offset + size)` on
    /// this thread.
    fn complete_ending(&self, offset: usize, size: usize) {
        let end = offset.saturating_add(size);
        let entries: Vec<Arc<Entry>> = self
            .inner
            .ending
            .lock()
            .iter()
            .filter_map(Weak::upgrade)
            .filter(|e| e.span.0 < end && offset < e.span.1)
            .collect();
        let queue = self.inner.device.cuda().release_queue();
        for entry in &entries {
            queue.complete_now(entry);
        }
    }

    /// Forgets `entry` (completed or failed) in the list of ending entries.
    pub(crate) fn forget_ending(&self, entry: &Arc<Entry>) {
        self.inner
            .ending
            .lock()
            .retain(|e| e.upgrade().is_some_and(|e| !Arc::ptr_eq(&e, entry)));
    }

    /// Sets access for every device in `access` over `[offset, offset + size)`
    /// with ONE `cuMemSetAccess` call. The range must be fully covered by live
    /// mappings (it may span several) and consist of whole mappings.
    ///
    /// The driver refuses a range that starts or ends inside a mapping
    /// (recorded on an H200: conformance `set_access_head_of_allocation` and
    /// others) and, worse, answers success for a range with a hole while
    /// granting only the mappings before it (`set_access_with_hole`). Both are
    /// refused here before the driver is called: [`Error::NotMapped`] for a
    /// hole, [`Error::InvalidArgument`] naming the allocation boundary for a cut.
    pub fn set_access(
        &self,
        offset: usize,
        size: usize,
        access: &[(&Device, AccessFlags)],
    ) -> Result<()> {
        let inner = &*self.inner;
        if size == 0 {
            return Err(Error::invalid(
                "access range size 0: the size must be nonzero",
            ));
        }
        check_multiple("offset", offset as u64, inner.granularity)?;
        check_multiple("size", size as u64, inner.granularity)?;
        check_bounds("access range in reservation", offset, size, inner.size)?;
        let descs = AccessDescs::new(&inner.device, access)?;
        let api = inner.device.cuda().api();
        crate::raw::require!(api, cuMemSetAccess);
        // No current context needed: the driver answers VMM calls without one
        // (recorded on H200, driver 580: conformance `no_context_*`).
        let mut mapped = inner.mapped.write();
        if !mapped.covers(offset, size) {
            return Err(Error::NotMapped { offset, size });
        }
        mapped.check_whole(offset, size)?;
        // The lock is held, so no mapping goes away meanwhile.
        inner
            .range
            .set_access(api, &mapped, offset, size, descs.as_slice())?;
        let grants: Vec<(usize, AccessFlags)> =
            access.iter().map(|(d, a)| (d.ordinal(), *a)).collect();
        mapped.set_access(offset, size, &grants);
        for (device, flags) in access {
            if *flags != AccessFlags::None {
                inner.uses.add_peer(&inner.device, device);
            }
        }
        drop(mapped);
        let range = crate::hooks::MappedRange {
            ptr: inner.ptr + offset as u64,
            size,
            device: inner.device.ordinal(),
        };
        inner
            .device
            .cuda()
            .hook_registry()
            .accessible(range, &grants);
        Ok(())
    }

    /// The access `device` has at `offset` (`cuMemGetAccess`); `offset` must be mapped.
    pub fn access(&self, offset: usize, device: &Device) -> Result<AccessFlags> {
        let inner = &*self.inner;
        inner.device.check_same_driver(device, "the device")?;
        check_bounds("access query in reservation", offset, 1, inner.size)?;
        let api = inner.device.cuda().api();
        crate::raw::require!(api, cuMemGetAccess);
        let mapped = inner.mapped.read();
        if !mapped.covers(offset, 1) {
            return Err(Error::NotMapped { offset, size: 1 });
        }
        let location = device_location(device);
        // The address is mapped (held under the lock).
        AccessFlags::try_from(raw::mem_get_access(
            api,
            &location,
            inner.ptr + offset as u64,
        )?)
    }

    /// Whether every byte of `[offset, offset + size)` is covered by live mappings.
    pub fn is_mapped(&self, offset: usize, size: usize) -> bool {
        size != 0
            && offset
                .checked_add(size)
                .is_some_and(|end| end <= self.inner.size)
            && self.inner.mapped.read().covers(offset, size)
    }

    /// Records that work queued so far on `stream` may use this memory
    /// (kernels, cudarc or runtime copies): unmapping any part of the range,
    /// and this crate's own copies, wait for it. Recording again on the same
    /// stream moves the record forward; there is one event per stream.
    pub fn record_use(&self, stream: &Stream) -> Result<()> {
        self.inner
            .device
            .check_same_driver(stream.device(), "the stream")?;
        // The mapped-ranges lock orders this against unmaps in flight.
        let _mapped = self.inner.mapped.read();
        let device = stream.device();
        let _bound = device.bind()?;
        self.inner.uses.record(device, stream.handle())
    }

    /// Records that work queued so far on `stream` only reads this memory: later readers
    /// (this crate's copies out of the memory) do not wait for it, later writers and
    /// every end of life do. [`record_use`](Reservation::record_use) records a use that
    /// may write.
    pub fn record_read(&self, stream: &Stream) -> Result<()> {
        self.inner
            .device
            .check_same_driver(stream.device(), "the stream")?;
        let _mapped = self.inner.mapped.read();
        let device = stream.device();
        let _bound = device.bind()?;
        self.inner
            .uses
            .record_kind(device, stream.handle(), crate::ordering::UseKind::Read)
    }

    /// What unmapping waits for (see [`UnmapWait`]); [`UnmapWait::Devices`] by default.
    pub fn unmap_wait(&self) -> UnmapWait {
        self.inner.uses.policy()
    }

    /// Changes what unmapping waits for.
    ///
    /// # Safety
    /// With [`UnmapWait::RecordedUse`], every piece of device work on this
    /// memory that this crate did not queue itself must be recorded with
    /// [`Reservation::record_use`] before any mapping of the range ends; with
    /// [`UnmapWait::Caller`], the caller must make sure that no device work
    /// touches a mapping when it ends (drop, unmap, and every shrink or drop of
    /// a structure built on this reservation). Unmapping memory the device still
    /// uses kills the context, and the address may already back other memory
    /// when the work lands. [`UnmapWait::Devices`] has no requirement.
    #[allow(unsafe_code)]
    pub unsafe fn set_unmap_wait(&self, policy: UnmapWait) {
        self.inner.uses.set_policy(policy);
    }

    /// Waits, on the host, for every recorded use of the memory and, under
    /// [`UnmapWait::Devices`], for all work in the contexts unmapping waits for.
    ///
    /// Unlike unmapping, this waits for the recorded uses under every policy
    /// ([`UnmapWait::Caller`] waives only the wait at unmap).
    pub fn synchronize(&self) -> Result<()> {
        let _mapped = self.inner.mapped.write();
        self.inner.uses.wait_documented(&self.inner.device)
    }

    /// Unmaps several mappings of this reservation, waiting for device work
    /// once for all of them (dropping them one by one waits for each).
    ///
    /// Returns one result per mapping, in order: every mapping is attempted,
    /// and one the driver refused is leaked (see [`Mapping::unmap`]).
    ///
    /// The two errors differ in what they did:
    /// - a **refusal** (a mapping of another reservation) changes nothing: the
    ///   error comes back with every mapping, still live and the caller's;
    /// - a **failed wait** unmaps none and leaks all (device work may still use
    ///   them): the error comes back with an empty list.
    #[allow(clippy::result_large_err)]
    pub fn unmap_batch(
        &self,
        mappings: Vec<Mapping>,
    ) -> std::result::Result<Vec<Result<()>>, (Error, Vec<Mapping>)> {
        if let Some(m) = mappings
            .iter()
            .find(|m| !Arc::ptr_eq(&m.reservation().inner, &self.inner))
        {
            let e = Error::invalid(format!(
                "mapping at {:#x} belongs to another reservation than {:#x}",
                m.ptr(),
                self.inner.ptr
            ));
            return Err((e, mappings));
        }
        if mappings.is_empty() {
            return Ok(Vec::new());
        }
        let mut mappings = mappings;
        if let Some(holds) = Mapping::announce(&mut mappings) {
            holds.wait();
        }
        let mut mapped = self.inner.mapped.write();
        let waited = match self.inner.uses.wait(&self.inner.device) {
            Ok(waited) => waited,
            Err(e) => {
                drop(mapped);
                for m in mappings {
                    m.leak();
                }
                return Err((e, Vec::new()));
            }
        };
        Ok(mappings
            .into_iter()
            .map(|m| m.unmap_waited(&mut mapped, &waited))
            .collect())
    }

    /// Frees the range now.
    ///
    /// Fails with [`Error::InUse`] while other clones or mappings hold it; this
    /// handle is then dropped and the range is freed when the last user goes.
    pub fn free(self) -> Result<()> {
        match Arc::try_unwrap(self.inner) {
            Ok(mut inner) => inner.free_range(),
            Err(shared) => Err(Error::InUse {
                what: "reservation",
                users: Arc::strong_count(&shared).saturating_sub(1).max(1),
            }),
        }
    }
}

impl ReservationInner {
    fn free_range(&mut self) -> Result<()> {
        // No current context needed: the driver answers VMM calls without one
        // (recorded on H200, driver 580: conformance `no_context_*`). No mapping into
        // the range is alive (every Mapping holds a clone of the reservation).
        let api = self.device.cuda().api();
        self.range.free(api, self.mapped.get_mut())
    }
}

impl Drop for ReservationInner {
    fn drop(&mut self) {
        if let Err(e) = self.free_range() {
            tracing::error!(
                "freeing reservation {:#x} (+{} bytes): {e}",
                self.ptr,
                self.size
            );
        }
    }
}
