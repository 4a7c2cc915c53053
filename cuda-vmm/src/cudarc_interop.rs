//! Interop with [cudarc] (feature `cudarc`): mapped memory as cudarc device memory.
//!
//! [`CudarcView`] is a typed range of a [`Reservation`] that implements cudarc's
//! [`DeviceSlice`], [`DevicePtr`] and [`DevicePtrMut`], and can be a kernel argument
//! (`launch_builder(..).arg(&mut view)`); [`CudarcReadView`] is its read-only sibling
//! ([`DevicePtr`] and `arg(&view)` only), for memory mapped read-only. Both libraries use
//! the device's primary context: a cudarc `CudaContext::new(ordinal)` and this crate's
//! `Cuda::device(ordinal)` share it, and a view refuses a stream of any other context.
//! [`Reservation::record_cudarc_use`] records work queued on a cudarc stream as a use.
//!
//! Ordering follows cudarc's model and feeds this crate's: work through the view waits
//! for the reservation's recorded uses and for earlier work through the view; cudarc
//! records the view's read/write events on the launch stream (`SyncOnDrop::Record`); when
//! the view drops, those events become recorded uses of the reservation, so unmapping
//! (drop, shrink, decommit) waits for the kernels that used it, whatever the policy.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use cudarc::driver::{
    CudaEvent, CudaStream, DevicePtr, DevicePtrMut, DeviceSlice, LaunchArgs, PushKernelArg,
    SyncOnDrop,
};

use crate::access::AccessFlags;
use crate::error::{Error, Result};
use crate::interop::view_bytes;
use crate::reservation::Reservation;

/// What both views hold: the range, the stream and cudarc's read/write events.
struct ViewCore<'a> {
    reservation: &'a Reservation,
    ptr: u64,
    len: usize,
    stream: Arc<CudaStream>,
    read: Option<CudaEvent>,
    /// `None` for a read-only view: nothing writes through it.
    write: Option<CudaEvent>,
}

/// `len` elements of `T` at a byte offset of a mapped, read-write [`Reservation`] range,
/// usable wherever cudarc takes device memory. Created by [`Reservation::cudarc_view`]
/// (or, over a range with holes, [`Reservation::cudarc_view_unchecked`]).
pub struct CudarcView<'a, T> {
    core: ViewCore<'a>,
    _elements: PhantomData<fn() -> T>,
}

/// `len` elements of `T` at a byte offset of a [`Reservation`] range mapped at least
/// read-only ([`AccessFlags::Read`]): cudarc's [`DevicePtr`] (a kernel's `const T*`
/// argument, `arg(&view)`) without [`DevicePtrMut`]. Created by
/// [`Reservation::cudarc_read_view`]; its uses are recorded as reads.
pub struct CudarcReadView<'a, T> {
    core: ViewCore<'a>,
    _elements: PhantomData<fn() -> T>,
}

impl<T> fmt::Debug for CudarcView<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CudarcView")
            .field("ptr", &format_args!("{:#x}", self.core.ptr))
            .field("len", &self.core.len)
            .finish()
    }
}

impl<T> fmt::Debug for CudarcReadView<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CudarcReadView")
            .field("ptr", &format_args!("{:#x}", self.core.ptr))
            .field("len", &self.core.len)
            .finish()
    }
}

impl Reservation {
    /// A cudarc view of `len` elements of `T` from byte `offset`, on `stream`.
    ///
    /// The range must be mapped and read-write for the reservation's device, `offset`
    /// aligned for `T`, and `stream` a stream of the device's primary context.
    pub fn cudarc_view<T>(
        &self,
        stream: &Arc<CudaStream>,
        offset: usize,
        len: usize,
    ) -> Result<CudarcView<'_, T>> {
        let bytes = view_bytes::<T>(offset, len, self.size())?;
        self.check_mapped_access(offset, bytes, AccessFlags::ReadWrite)?;
        Ok(CudarcView {
            core: self.view_core(stream, offset, len, true)?,
            _elements: PhantomData,
        })
    }

    /// As [`cudarc_view`](Self::cudarc_view), without checking that the range is mapped
    /// or accessible: for one kernel over a range with holes (a batch over every sequence
    /// of a sparse array), whose unmapped parts it never touches. Alignment, bounds and
    /// the stream's context are still checked.
    ///
    /// # Safety
    /// No work through the view (kernels, cudarc copies) may touch a byte of the range
    /// that is not mapped read-write for the reservation's device when the work runs: an
    /// access to an unmapped address is an illegal-address fault, which kills the context.
    #[allow(unsafe_code)]
    pub unsafe fn cudarc_view_unchecked<T>(
        &self,
        stream: &Arc<CudaStream>,
        offset: usize,
        len: usize,
    ) -> Result<CudarcView<'_, T>> {
        view_bytes::<T>(offset, len, self.size())?;
        Ok(CudarcView {
            core: self.view_core(stream, offset, len, true)?,
            _elements: PhantomData,
        })
    }

    /// A read-only cudarc view of `len` elements of `T` from byte `offset`, on `stream`.
    ///
    /// The range must be mapped with at least [`AccessFlags::Read`] for the reservation's
    /// device (a shared buffer's consumer side, a sparse array's zero-filled holes),
    /// `offset` aligned for `T`, and `stream` a stream of the device's primary context.
    pub fn cudarc_read_view<T>(
        &self,
        stream: &Arc<CudaStream>,
        offset: usize,
        len: usize,
    ) -> Result<CudarcReadView<'_, T>> {
        let bytes = view_bytes::<T>(offset, len, self.size())?;
        self.check_mapped_access(offset, bytes, AccessFlags::Read)?;
        Ok(CudarcReadView {
            core: self.view_core(stream, offset, len, false)?,
            _elements: PhantomData,
        })
    }

    /// Records that work queued so far on the cudarc `stream` may use this memory, as
    /// [`record_use`](Self::record_use) does for a [`Stream`](crate::Stream): unmapping
    /// and this crate's copies wait for it.
    ///
    /// `stream` must belong to a device's primary context (cudarc's
    /// `CudaContext::new(ordinal)`); a stream of another context is
    /// [`Error::InvalidArgument`].
    pub fn record_cudarc_use(&self, stream: &CudaStream) -> Result<()> {
        let context = stream.context();
        let device = self
            .device()
            .cuda()
            .primary_context_device(context.ordinal(), context.cu_ctx().cast())?;
        // The mapped-ranges lock orders this against unmaps in flight.
        let _mapped = self.inner.mapped.read();
        let _bound = device.bind()?;
        crate::raw::with_cudarc_stream(stream, |s| self.inner.uses.record(&device, s))
    }

    /// The events and checks both views share: `stream` must be a stream of the
    /// reservation device's primary context.
    fn view_core(
        &self,
        stream: &Arc<CudaStream>,
        offset: usize,
        len: usize,
        writable: bool,
    ) -> Result<ViewCore<'_>> {
        let device = self.device();
        let context = stream.context();
        if context.cu_ctx().cast() != device.raw_context() {
            return Err(Error::invalid(format!(
                "the cudarc stream's context {:p} (device {}) is not device {}'s primary \
                 context ({:p}): create the stream from CudaContext::new({})",
                context.cu_ctx(),
                context.ordinal(),
                device.ordinal(),
                device.raw_context(),
                device.ordinal()
            )));
        }
        let event = || {
            context
                .new_event(None)
                .map_err(|e| Error::invalid(format!("creating a cudarc event: {e:?}")))
        };
        Ok(ViewCore {
            reservation: self,
            ptr: self.ptr() + offset as u64,
            len,
            stream: stream.clone(),
            read: Some(event()?),
            write: if writable { Some(event()?) } else { None },
        })
    }
}

impl ViewCore<'_> {
    /// Makes `stream` wait for the reservation's recorded uses.
    fn order(&self, stream: &CudaStream) {
        let device = self.reservation.device();
        let result = device.bind().and_then(|_bound| {
            crate::raw::with_cudarc_stream(stream, |s| {
                self.reservation.inner.uses.order_after_uses(device, s)
            })
        });
        if let Err(e) = result {
            tracing::error!("ordering a cudarc stream after recorded uses: {e}");
        }
    }

    fn wait(stream: &CudaStream, event: &Option<CudaEvent>) {
        if let Some(e) = event {
            if let Err(e) = stream.wait(e) {
                tracing::error!("ordering a cudarc stream after the view's events: {e:?}");
            }
        }
    }

    /// Orders `stream` for a read: after recorded uses and the view's writes.
    fn order_read(&self, stream: &CudaStream) {
        self.order(stream);
        Self::wait(stream, &self.write);
    }

    /// Orders `stream` for a write: after recorded uses and the view's reads and writes.
    fn order_write(&self, stream: &CudaStream) {
        self.order(stream);
        Self::wait(stream, &self.read);
        Self::wait(stream, &self.write);
    }
}

impl Drop for ViewCore<'_> {
    fn drop(&mut self) {
        // Kernels that took the view as an argument ran on its stream.
        let device = self.reservation.device();
        let on_stream = device.bind().and_then(|_bound| {
            crate::raw::with_cudarc_stream(&self.stream, |s| {
                self.reservation.inner.uses.record(device, s)
            })
        });
        if let Err(e) = on_stream {
            tracing::error!("recording a cudarc view's use on its reservation: {e}");
        }
        // Uses through `device_ptr`/`device_ptr_mut` on other streams recorded these.
        for event in [self.read.take(), self.write.take()].into_iter().flatten() {
            let result = self
                .reservation
                .inner
                .uses
                .record_after_event(self.reservation.device(), &event);
            if let Err(e) = result {
                tracing::error!("recording a cudarc view's use on its reservation: {e}");
            }
        }
    }
}

impl<T> CudarcView<'_, T> {
    /// The device address of the first element.
    pub fn ptr(&self) -> u64 {
        self.core.ptr
    }
}

impl<T> CudarcReadView<'_, T> {
    /// The device address of the first element.
    pub fn ptr(&self) -> u64 {
        self.core.ptr
    }
}

impl<T> DeviceSlice<T> for CudarcView<'_, T> {
    fn len(&self) -> usize {
        self.core.len
    }

    fn stream(&self) -> &Arc<CudaStream> {
        &self.core.stream
    }
}

impl<T> DeviceSlice<T> for CudarcReadView<'_, T> {
    fn len(&self) -> usize {
        self.core.len
    }

    fn stream(&self) -> &Arc<CudaStream> {
        &self.core.stream
    }
}

impl<T> DevicePtr<T> for CudarcView<'_, T> {
    fn device_ptr<'b>(&'b self, stream: &'b CudaStream) -> (u64, SyncOnDrop<'b>) {
        self.core.order_read(stream);
        (
            self.core.ptr,
            SyncOnDrop::record_event(&self.core.read, stream),
        )
    }
}

impl<T> DevicePtrMut<T> for CudarcView<'_, T> {
    fn device_ptr_mut<'b>(&'b mut self, stream: &'b CudaStream) -> (u64, SyncOnDrop<'b>) {
        self.core.order_write(stream);
        (
            self.core.ptr,
            SyncOnDrop::record_event(&self.core.write, stream),
        )
    }
}

impl<T> DevicePtr<T> for CudarcReadView<'_, T> {
    fn device_ptr<'b>(&'b self, stream: &'b CudaStream) -> (u64, SyncOnDrop<'b>) {
        self.core.order_read(stream);
        (
            self.core.ptr,
            SyncOnDrop::record_event(&self.core.read, stream),
        )
    }
}

// SAFETY: the argument pushed is a pointer to `arg.core.ptr`, a `CUdeviceptr` that lives
// as long as the borrow `'b`, which outlives the launch arguments `'a`; the device memory
// behind it is mapped read-write (checked at creation, or promised by the caller of
// `cudarc_view_unchecked` for every byte a kernel touches) and stays mapped while the view
// borrows its reservation. cudarc offers no way to add events to a launch from outside,
// so the view's stream is ordered here and the use is recorded on it when the view drops:
// launch kernels taking a view on the view's own stream.
#[allow(unsafe_code)]
unsafe impl<'a, 'b: 'a, 'c: 'b, T> PushKernelArg<&'b mut CudarcView<'c, T>> for LaunchArgs<'a> {
    #[inline(always)]
    fn arg(&mut self, arg: &'b mut CudarcView<'c, T>) -> &mut Self {
        let stream = arg.core.stream.clone();
        arg.core.order_write(&stream);
        self.arg(&arg.core.ptr)
    }
}

// SAFETY: as above, for a read-only use: the view's stream waits for earlier writes
// through the view.
#[allow(unsafe_code)]
unsafe impl<'a, 'b: 'a, 'c: 'b, T> PushKernelArg<&'b CudarcView<'c, T>> for LaunchArgs<'a> {
    #[inline(always)]
    fn arg(&mut self, arg: &'b CudarcView<'c, T>) -> &mut Self {
        let stream = arg.core.stream.clone();
        arg.core.order_read(&stream);
        self.arg(&arg.core.ptr)
    }
}

// SAFETY: as above; the memory is mapped at least readable (checked at creation), and
// only a shared borrow is taken, so the kernel gets the address for reading (`const T*`):
// a read-only view has no `DevicePtrMut` and no `&mut` argument form.
#[allow(unsafe_code)]
unsafe impl<'a, 'b: 'a, 'c: 'b, T> PushKernelArg<&'b CudarcReadView<'c, T>> for LaunchArgs<'a> {
    #[inline(always)]
    fn arg(&mut self, arg: &'b CudarcReadView<'c, T>) -> &mut Self {
        let stream = arg.core.stream.clone();
        arg.core.order_read(&stream);
        self.arg(&arg.core.ptr)
    }
}
