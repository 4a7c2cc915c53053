//! Interop with cudarc (feature `cudarc`): buffers, sparse arrays and shared buffers as
//! cudarc device memory, through [`cuda_vmm::CudarcView`] (read-write: `DevicePtr` and
//! `DevicePtrMut`) and [`cuda_vmm::CudarcReadView`] (read-only: `DevicePtr`).
//!
//! Every view is created on a stream of the device's primary context (cudarc's
//! `CudaContext::new(ordinal)`); work through it waits for the structure's recorded uses,
//! and when the view drops its use is recorded, so unmapping (shrinking, decommitting,
//! dropping) waits for the kernels that used it. A view borrows its structure, which
//! cannot grow, shrink, commit or decommit meanwhile.

use std::ops::Range;
use std::sync::Arc;

use cuda_vmm::{CudarcReadView, CudarcView};
use cudarc::driver::CudaStream;

use crate::caching::CachedBlock;
use crate::error::{check_range, Result};
use crate::growable::GrowableBuffer;
use crate::memory::sealed::Sealed;
use crate::pod::DevicePod;
use crate::shared::SharedBufferConsumer;
use crate::sparse::SparseArray;

impl<T: DevicePod> GrowableBuffer<T> {
    /// The buffer's `len()` elements as a cudarc view on `stream` (a stream of the device's
    /// primary context): a `DevicePtr`/`DevicePtrMut` and kernel argument. Work through it
    /// waits for the buffer's recorded uses; when the view drops, its use is recorded, so
    /// shrinking or dropping the buffer waits for the kernels that used it. The view borrows
    /// the buffer, which cannot grow or shrink meanwhile.
    pub fn cudarc_view(&self, stream: &Arc<CudaStream>) -> Result<CudarcView<'_, T>> {
        self.check_awake("cudarc_view")?;
        Ok(self.reservation().cudarc_view(stream, 0, self.len())?)
    }

    /// The committed elements past the end, `len()..capacity()`, as a cudarc view on
    /// `stream` (as [`Vec::spare_capacity_mut`]), for a kernel that appends on the device:
    /// it writes element `i` of the view, then, once the view is dropped,
    /// [`set_len`](GrowableBuffer::set_len) makes the written elements part of the buffer.
    /// [`reserve`](GrowableBuffer::reserve) first to commit room for them. Ordering is as
    /// for [`cudarc_view`](GrowableBuffer::cudarc_view).
    pub fn cudarc_spare_capacity_view(
        &self,
        stream: &Arc<CudaStream>,
    ) -> Result<CudarcView<'_, T>> {
        self.check_awake("cudarc_spare_capacity_view")?;
        let offset = self.len() * size_of::<T>();
        let spare = self.capacity() - self.len();
        Ok(self.reservation().cudarc_view(stream, offset, spare)?)
    }

    /// The buffer's `len()` elements as a read-only cudarc view on `stream`: a `DevicePtr`
    /// (a kernel's `const T*` argument) without `DevicePtrMut`; its uses are recorded as
    /// for [`cudarc_view`](GrowableBuffer::cudarc_view).
    pub fn cudarc_read_view(&self, stream: &Arc<CudaStream>) -> Result<CudarcReadView<'_, T>> {
        self.check_awake("cudarc_read_view")?;
        Ok(self.reservation().cudarc_read_view(stream, 0, self.len())?)
    }
}

impl<T: DevicePod> SparseArray<T> {
    /// Elements `range` as a cudarc view on `stream`; every tile it touches must be
    /// committed ([`Error::NotCommitted`](crate::Error::NotCommitted) names the first
    /// hole; holes, even zero-mapped ones, are not writable). For one kernel over a range
    /// with holes, see [`cudarc_view_unchecked`](SparseArray::cudarc_view_unchecked). See
    /// [`GrowableBuffer::cudarc_view`] for the ordering.
    pub fn cudarc_view(
        &self,
        stream: &Arc<CudaStream>,
        range: Range<usize>,
    ) -> Result<CudarcView<'_, T>> {
        self.check_awake("cudarc_view")?;
        check_range("cudarc view", &range, self.len())?;
        self.check_committed(range.clone())?;
        let offset = range.start * size_of::<T>();
        Ok(self
            .reservation()
            .cudarc_view(stream, offset, range.len())?)
    }

    /// Elements `range` (`0..len()` for the whole array) as a cudarc view on `stream`,
    /// holes included: for one batched kernel over every sequence of a paged cache, which
    /// finds each element's address with [`ptr_at`](SparseArray::ptr_at) arithmetic and
    /// touches only committed elements. The range is bounds-checked; its tiles are not.
    ///
    /// # Safety
    /// No work through the view may touch an element that is not committed
    /// ([`is_committed`](SparseArray::is_committed)) while it runs: a hole is unmapped (or,
    /// with [`HoleBehavior::Zeros`](crate::HoleBehavior::Zeros), mapped read-only), and a
    /// write there, or any access to an unmapped hole, is an illegal-address fault that
    /// kills the context. The view borrows the array, so nothing is committed or
    /// decommitted while it lives.
    pub unsafe fn cudarc_view_unchecked(
        &self,
        stream: &Arc<CudaStream>,
        range: Range<usize>,
    ) -> Result<CudarcView<'_, T>> {
        let offset = self.view_offset(&range)?;
        // SAFETY: forwarded from this function's contract: the caller promises no work
        // through the view touches an element outside the committed tiles, which are
        // mapped read-write; the view borrows the array, so none is unmapped meanwhile.
        let view = unsafe {
            self.reservation()
                .cudarc_view_unchecked(stream, offset, range.len())?
        };
        Ok(view)
    }

    /// Elements `range` as a read-only cudarc view on `stream` (`DevicePtr` without
    /// `DevicePtrMut`): every tile must be committed, or, with
    /// [`HoleBehavior::Zeros`](crate::HoleBehavior::Zeros), may be a hole, which reads as
    /// zeros. Uses are recorded as for [`GrowableBuffer::cudarc_view`].
    pub fn cudarc_read_view(
        &self,
        stream: &Arc<CudaStream>,
        range: Range<usize>,
    ) -> Result<CudarcReadView<'_, T>> {
        let offset = self.check_readable(&range)?;
        Ok(self
            .reservation()
            .cudarc_read_view(stream, offset, range.len())?)
    }
}

impl<T: DevicePod> SharedBufferConsumer<T> {
    /// The published `len()` elements as a read-only cudarc view on `stream` (a stream of
    /// the consumer device's primary context): the consumer maps the chunks read-only, so
    /// the view is a `DevicePtr` (a kernel's `const T*` argument) without `DevicePtrMut`.
    /// When the view drops, its use is recorded: dropping the consumer waits for the
    /// kernels that read through it. The view borrows the consumer, which cannot receive
    /// meanwhile.
    pub fn cudarc_read_view(&self, stream: &Arc<CudaStream>) -> Result<CudarcReadView<'_, T>> {
        Ok(self.reservation().cudarc_read_view(stream, 0, self.len())?)
    }

    /// Records that work queued so far on the cudarc `stream` may read the consumer's
    /// memory (see [`cuda_vmm::Reservation::record_cudarc_use`]).
    pub fn record_cudarc_use(&self, stream: &CudaStream) -> Result<()> {
        Ok(self.reservation().record_cudarc_use(stream)?)
    }
}

impl CachedBlock {
    /// Records that work queued so far on the cudarc `stream` (a stream of the allocator
    /// device's primary context) uses this block, as [`record_use`](Self::record_use) does
    /// for a [`cuda_vmm::Stream`]: dropped, the block is reused only once that work is done.
    /// Pass [`ptr`](Self::ptr) to kernels as the device pointer.
    pub fn record_cudarc_use(&mut self, stream: &CudaStream) -> Result<()> {
        self.check_cudarc_stream(stream)?;
        let device = self.owner.device().clone();
        // SAFETY: the stream belongs to `device`'s primary context (checked above), and the
        // borrowed wrapper lives only for this call, while `stream` is borrowed.
        let borrowed = unsafe { cuda_vmm::Stream::from_raw(&device, stream.cu_stream().cast()) };
        self.record_use(&borrowed)
    }

    /// Refuses a cudarc stream that is not of the allocator device's primary context.
    pub(crate) fn check_cudarc_stream(&self, stream: &CudaStream) -> Result<()> {
        let device = self.owner.device();
        let context = stream.context();
        if context.cu_ctx().cast::<std::ffi::c_void>() != device.raw_context().cast() {
            return Err(crate::Error::InvalidRequest {
                message: format!(
                    "a cudarc stream of device {}'s context for a block of device {}",
                    context.ordinal(),
                    device.ordinal()
                ),
            });
        }
        Ok(())
    }
}
