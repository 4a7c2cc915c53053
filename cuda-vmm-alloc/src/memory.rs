//! [`DeviceMemory`]: what a [`GrowableBuffer`](crate::GrowableBuffer) and a
//! [`SparseArray`](crate::SparseArray) share, both being one reserved virtual address range
//! of device memory with the same rules for when it may be unmapped.

use cuda_vmm::{Device, Stream, UnmapWait};

use std::ops::Range;

use cuda_vmm::Reservation;

use crate::error::{check_range, Result};
use crate::pod::{as_bytes, DevicePod};

/// The one required accessor, kept out of the public API: handing out the reservation would
/// let callers map, unmap or set access behind the owner's back.
pub(crate) mod sealed {
    /// Implemented by the crate's structures over one reservation.
    pub trait Sealed {
        /// The reservation behind the structure.
        fn reservation(&self) -> &cuda_vmm::Reservation;

        /// Bytes whose release is queued, waiting for device work.
        fn queued_release_bytes(&self) -> usize;
    }
}

/// Device memory over one reserved virtual address range (`cuMemAddressReserve`), into which
/// the structure maps physical allocations (`cuMemCreate` + `cuMemMap`) as it grows or
/// commits, and from which it unmaps them (`cuMemUnmap`) as it shrinks, decommits or drops.
///
/// Implemented by [`GrowableBuffer`](crate::GrowableBuffer) and
/// [`SparseArray`](crate::SparseArray); sealed (no other type can implement it). Every
/// method is provided, built on the structure's reservation. Both types also have each of
/// these methods as an inherent method, so calling them needs no import; the trait is for
/// code generic over either.
///
/// Unmapping is ordered after device work as [`unmap_wait`](DeviceMemory::unmap_wait) says:
/// by default ([`UnmapWait::Devices`]) after every recorded use and all work in the
/// contexts that can access the memory. Drops, decommits and shrinks hand their mappings to
/// the release queue ([`cuda_vmm::release`]) and return at once; its worker waits.
pub trait DeviceMemory: sealed::Sealed {
    /// The device address of the range's start (a `CUdeviceptr`); the same for the
    /// structure's whole life.
    fn ptr(&self) -> u64 {
        self.reservation().ptr()
    }

    /// The device the memory is reserved on (the owner).
    fn device(&self) -> &Device {
        self.reservation().device()
    }

    /// Bytes of address space reserved.
    fn reserved_bytes(&self) -> usize {
        self.reservation().size()
    }

    /// Records that work queued so far on `stream` (a kernel, a cudarc or runtime copy) may
    /// use the memory: unmapping (shrinking, decommitting, dropping) and this crate's copies
    /// wait for it.
    fn record_use(&self, stream: &Stream) -> Result<()> {
        Ok(self.reservation().record_use(stream)?)
    }

    /// Records that work queued so far on `stream` only reads the memory: this crate's
    /// later reads need not wait for it; writes and unmapping do.
    fn record_read(&self, stream: &Stream) -> Result<()> {
        Ok(self.reservation().record_read(stream)?)
    }

    /// Bytes this structure gave up (decommitted, shrunk, rolled back) whose unmap is still
    /// queued on the release queue, waiting for the device work before it: no longer
    /// committed, not yet free on the device. [`cuda_vmm::Cuda::flush_releases`] waits for
    /// them.
    fn pending_release_bytes(&self) -> usize {
        self.queued_release_bytes()
    }

    /// As [`record_use`](DeviceMemory::record_use), for work queued on a cudarc stream
    /// (feature `cudarc`), with no `unsafe` bridge to a [`Stream`]. The stream must belong
    /// to a device's primary context (cudarc's `CudaContext::new(ordinal)`); a stream of
    /// another context is refused
    /// ([`cuda_vmm::Error::InvalidArgument`], "is not device N's primary context").
    #[cfg(feature = "cudarc")]
    fn record_cudarc_use(&self, stream: &cudarc::driver::CudaStream) -> Result<()> {
        Ok(self.reservation().record_cudarc_use(stream)?)
    }

    /// Waits for the device work that unmapping would wait for (see [`UnmapWait`]).
    fn synchronize(&self) -> Result<()> {
        Ok(self.reservation().synchronize()?)
    }

    /// What unmapping (shrinking, decommitting, dropping) waits for;
    /// [`UnmapWait::Devices`] by default.
    fn unmap_wait(&self) -> UnmapWait {
        self.reservation().unmap_wait()
    }

    /// Changes what unmapping (shrinking, decommitting, dropping, a failed growth's or
    /// commit's rollback) waits for.
    ///
    /// # Safety
    /// As for [`cuda_vmm::Reservation::set_unmap_wait`]: with [`UnmapWait::RecordedUse`] every use by
    /// work this crate did not queue must be recorded with
    /// [`record_use`](DeviceMemory::record_use); with [`UnmapWait::Caller`] no device work
    /// may touch memory the structure unmaps.
    unsafe fn set_unmap_wait(&self, policy: UnmapWait) {
        // SAFETY: forwarded from this function's contract.
        unsafe { self.reservation().set_unmap_wait(policy) }
    }
}

/// Implements [`DeviceMemory`] for `$ty<T>` over its `backing`'s reservation, and gives the
/// type each of the trait's methods as an inherent forward (callable with no import).
macro_rules! device_memory {
    ($ty:ident) => {
        impl<T: $crate::pod::DevicePod> $crate::memory::sealed::Sealed for $ty<T> {
            fn reservation(&self) -> &cuda_vmm::Reservation {
                &self.backing.reservation
            }

            fn queued_release_bytes(&self) -> usize {
                self.backing.pending_bytes()
            }
        }

        impl<T: $crate::pod::DevicePod> $crate::memory::DeviceMemory for $ty<T> {}

        impl<T: $crate::pod::DevicePod> $ty<T> {
            /// See [`DeviceMemory::ptr`](crate::DeviceMemory::ptr).
            pub fn ptr(&self) -> u64 {
                $crate::memory::DeviceMemory::ptr(self)
            }

            /// See [`DeviceMemory::device`](crate::DeviceMemory::device).
            pub fn device(&self) -> &cuda_vmm::Device {
                $crate::memory::DeviceMemory::device(self)
            }

            /// See [`DeviceMemory::reserved_bytes`](crate::DeviceMemory::reserved_bytes).
            pub fn reserved_bytes(&self) -> usize {
                $crate::memory::DeviceMemory::reserved_bytes(self)
            }

            /// See [`DeviceMemory::record_use`](crate::DeviceMemory::record_use).
            pub fn record_use(&self, stream: &cuda_vmm::Stream) -> $crate::error::Result<()> {
                $crate::memory::DeviceMemory::record_use(self, stream)
            }

            /// See [`DeviceMemory::record_read`](crate::DeviceMemory::record_read).
            pub fn record_read(&self, stream: &cuda_vmm::Stream) -> $crate::error::Result<()> {
                $crate::memory::DeviceMemory::record_read(self, stream)
            }

            /// See [`DeviceMemory::pending_release_bytes`](crate::DeviceMemory::pending_release_bytes).
            pub fn pending_release_bytes(&self) -> usize {
                $crate::memory::DeviceMemory::pending_release_bytes(self)
            }

            /// See [`DeviceMemory::record_cudarc_use`](crate::DeviceMemory::record_cudarc_use).
            #[cfg(feature = "cudarc")]
            pub fn record_cudarc_use(
                &self,
                stream: &cudarc::driver::CudaStream,
            ) -> $crate::error::Result<()> {
                $crate::memory::DeviceMemory::record_cudarc_use(self, stream)
            }

            /// See [`DeviceMemory::synchronize`](crate::DeviceMemory::synchronize).
            pub fn synchronize(&self) -> $crate::error::Result<()> {
                $crate::memory::DeviceMemory::synchronize(self)
            }

            /// See [`DeviceMemory::unmap_wait`](crate::DeviceMemory::unmap_wait).
            pub fn unmap_wait(&self) -> cuda_vmm::UnmapWait {
                $crate::memory::DeviceMemory::unmap_wait(self)
            }
        }
    };
}
pub(crate) use device_memory;

/// Overwrites elements from `offset` on of a structure of `len` elements over `reservation`:
/// refuses a range past `len`, does nothing for no values, else runs `check(range)` (e.g.
/// every tile committed) and then copies them in ([`copy_in`]: synchronously, or queued on
/// `stream`).
pub(crate) fn overwrite<T: DevicePod>(
    reservation: &Reservation,
    len: usize,
    offset: usize,
    values: &[T],
    check: impl FnOnce(Range<usize>) -> Result<()>,
    stream: Option<&Stream>,
) -> Result<()> {
    let range = offset..offset.saturating_add(values.len());
    check_range("write", &range, len)?;
    if range.is_empty() {
        return Ok(());
    }
    check(range)?;
    copy_in(
        reservation,
        stream,
        offset * size_of::<T>(),
        as_bytes(values),
    )
}

/// Copies host `bytes` to `reservation` at byte `offset`: synchronously, or queued on
/// `stream` and recorded as a use (`bytes` staged before this returns).
pub(crate) fn copy_in(
    reservation: &Reservation,
    stream: Option<&Stream>,
    offset: usize,
    bytes: &[u8],
) -> Result<()> {
    match stream {
        None => reservation.write(offset, bytes)?,
        Some(stream) => reservation.write_async(stream, offset, bytes)?,
    }
    Ok(())
}
