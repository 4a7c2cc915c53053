//! Interop with [cudarc] (feature `cudarc`): mapped memory as cudarc device memory.
//!
//! [`CudarcView`] is a typed range of a [`Reservation`] that implements cudarc's
//! [`DeviceSlice`], [`DevicePtr`] and [`DevicePtrMut`], and can be a kernel argument
//! (`launch_builder(..).arg(&mut view)`). Both libraries use the device's primary
//! context: a cudarc `CudaContext::new(ordinal)` and this crate's `Cuda::device(ordinal)`
//! share it, and a view refuses a stream of any other context.
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
use crate::reservation::Reservation;

/// `len` elements of `T` at a byte offset of a mapped, read-write [`Reservation`] range,
/// usable wherever cudarc takes device memory. Created by [`Reservation::cudarc_view`].
pub struct CudarcView<'a, T> {
    reservation: &'a Reservation,
    ptr: u64,
    len: usize,
    stream: Arc<CudaStream>,
    read: Option<CudaEvent>,
    write: Option<CudaEvent>,
    _elements: PhantomData<fn() -> T>,
}

impl<T> fmt::Debug for CudarcView<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CudarcView")
            .field("ptr", &format_args!("{:#x}", self.ptr))
            .field("len", &self.len)
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
        let device = self.device();
        if stream.context().cu_ctx().cast() != device.raw_context() {
            return Err(Error::invalid(format!(
                "the cudarc stream belongs to another context than device {}'s primary context",
                device.ordinal()
            )));
        }
        if offset % std::mem::align_of::<T>() != 0 {
            return Err(Error::invalid(format!(
                "offset {offset} is not aligned for {} (alignment {})",
                std::any::type_name::<T>(),
                std::mem::align_of::<T>()
            )));
        }
        let bytes = len
            .checked_mul(std::mem::size_of::<T>())
            .ok_or_else(|| Error::invalid(format!("{len} elements overflow the address space")))?;
        self.check_mapped_access(offset, bytes, AccessFlags::ReadWrite)?;
        let event = || {
            stream
                .context()
                .new_event(None)
                .map_err(|e| Error::invalid(format!("creating a cudarc event: {e:?}")))
        };
        Ok(CudarcView {
            reservation: self,
            ptr: self.ptr() + offset as u64,
            len,
            stream: stream.clone(),
            read: Some(event()?),
            write: Some(event()?),
            _elements: PhantomData,
        })
    }
}

impl<T> CudarcView<'_, T> {
    /// The device address of the first element.
    pub fn ptr(&self) -> u64 {
        self.ptr
    }

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

    fn wait(&self, stream: &CudaStream, event: &Option<CudaEvent>) {
        if let Some(e) = event {
            if let Err(e) = stream.wait(e) {
                tracing::error!("ordering a cudarc stream after the view's events: {e:?}");
            }
        }
    }
}

impl<T> DeviceSlice<T> for CudarcView<'_, T> {
    fn len(&self) -> usize {
        self.len
    }

    fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }
}

impl<T> DevicePtr<T> for CudarcView<'_, T> {
    fn device_ptr<'b>(&'b self, stream: &'b CudaStream) -> (u64, SyncOnDrop<'b>) {
        self.order(stream);
        self.wait(stream, &self.write);
        (self.ptr, SyncOnDrop::record_event(&self.read, stream))
    }
}

impl<T> DevicePtrMut<T> for CudarcView<'_, T> {
    fn device_ptr_mut<'b>(&'b mut self, stream: &'b CudaStream) -> (u64, SyncOnDrop<'b>) {
        self.order(stream);
        self.wait(stream, &self.read);
        self.wait(stream, &self.write);
        (self.ptr, SyncOnDrop::record_event(&self.write, stream))
    }
}

// SAFETY: the argument pushed is a pointer to `arg.ptr`, a `CUdeviceptr` that lives as
// long as the borrow `'b`, which outlives the launch arguments `'a`; the device memory
// behind it is mapped read-write (checked at creation) and stays mapped while the view
// borrows its reservation. cudarc offers no way to add events to a launch from outside,
// so the view's stream is ordered here and the use is recorded on it when the view drops:
// launch kernels taking a view on the view's own stream.
#[allow(unsafe_code)]
unsafe impl<'a, 'b: 'a, 'c: 'b, T> PushKernelArg<&'b mut CudarcView<'c, T>> for LaunchArgs<'a> {
    #[inline(always)]
    fn arg(&mut self, arg: &'b mut CudarcView<'c, T>) -> &mut Self {
        let stream = arg.stream.clone();
        arg.order(&stream);
        arg.wait(&stream, &arg.read);
        arg.wait(&stream, &arg.write);
        self.arg(&arg.ptr)
    }
}

// SAFETY: as above, for a read-only use: the view's stream waits for earlier writes
// through the view.
#[allow(unsafe_code)]
unsafe impl<'a, 'b: 'a, 'c: 'b, T> PushKernelArg<&'b CudarcView<'c, T>> for LaunchArgs<'a> {
    #[inline(always)]
    fn arg(&mut self, arg: &'b CudarcView<'c, T>) -> &mut Self {
        let stream = arg.stream.clone();
        arg.order(&stream);
        arg.wait(&stream, &arg.write);
        self.arg(&arg.ptr)
    }
}

impl<T> Drop for CudarcView<'_, T> {
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
