//! A [`CachedBlock`] as cudarc device memory (feature `cudarc`): [`CachedView`] is a
//! `DeviceSlice`, `DevicePtr`, `DevicePtrMut` and kernel argument that records its uses on
//! the block by itself.

use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use cudarc::driver::{
    CudaEvent, CudaStream, DevicePtr, DevicePtrMut, DeviceSlice, LaunchArgs, PushKernelArg,
    SyncOnDrop,
};

use super::CachedBlock;
use crate::pod::DevicePod;
use crate::{Error, Result};

/// The elements of a [`CachedBlock`] as cudarc memory on one cudarc stream (created by
/// [`CachedBlock::cudarc_view`]). Work through it is ordered as cudarc orders a
/// `CudaSlice` (reads after the view's writes, writes after its reads and writes); when the
/// view drops, every stream that used it is recorded as a use of the block, so the block's
/// memory is reused only after that work. Launch kernels taking the view as an argument on
/// the view's stream.
pub struct CachedView<'a, T> {
    block: &'a mut CachedBlock,
    len: usize,
    stream: Arc<CudaStream>,
    read: Option<CudaEvent>,
    write: Option<CudaEvent>,
    /// `device_ptr`/`device_ptr_mut` ran on a stream other than the view's: the events
    /// were recorded there and become uses of the block at drop.
    elsewhere: AtomicBool,
    _elements: PhantomData<fn() -> T>,
}

impl<T> fmt::Debug for CachedView<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedView")
            .field("ptr", &format_args!("{:#x}", self.block.ptr()))
            .field("len", &self.len)
            .finish()
    }
}

impl CachedBlock {
    /// The block's `len() / size_of::<T>()` elements as cudarc memory on `stream` (a
    /// stream of the allocator device's primary context). The block is in stream order on
    /// the stream it was allocated on: a view on another stream must be ordered after
    /// that stream's earlier work by the caller, as with PyTorch's `record_stream`.
    /// Refused for a stream of another context, a zero-sized `T`, or a block smaller than
    /// one element.
    pub fn cudarc_view<T: DevicePod>(
        &mut self,
        stream: &Arc<CudaStream>,
    ) -> Result<CachedView<'_, T>> {
        self.check_cudarc_stream(stream)?;
        let element = std::mem::size_of::<T>();
        if element == 0 || self.len() < element {
            return Err(Error::InvalidRequest {
                message: format!(
                    "a view of {}-byte elements over a block of {} bytes",
                    element,
                    self.len()
                ),
            });
        }
        let event = || {
            stream
                .context()
                .new_event(None)
                .map_err(|e| Error::InvalidRequest {
                    message: format!("creating a cudarc event: {e:?}"),
                })
        };
        Ok(CachedView {
            len: self.len() / element,
            stream: stream.clone(),
            read: Some(event()?),
            write: Some(event()?),
            elsewhere: AtomicBool::new(false),
            block: self,
            _elements: PhantomData,
        })
    }
}

impl<T> CachedView<'_, T> {
    /// The device address of the first element.
    pub fn ptr(&self) -> u64 {
        self.block.ptr()
    }

    fn wait(stream: &CudaStream, event: &Option<CudaEvent>) {
        if let Some(e) = event {
            if let Err(e) = stream.wait(e) {
                tracing::error!("ordering a cudarc stream after a cached view's events: {e:?}");
            }
        }
    }

    fn note_stream(&self, stream: &CudaStream) {
        if stream.cu_stream() != self.stream.cu_stream() {
            self.elsewhere.store(true, Ordering::Relaxed);
        }
    }

    fn order_read(&self, stream: &CudaStream) {
        Self::wait(stream, &self.write);
    }

    fn order_write(&self, stream: &CudaStream) {
        Self::wait(stream, &self.read);
        Self::wait(stream, &self.write);
    }
}

impl<T> Drop for CachedView<'_, T> {
    fn drop(&mut self) {
        // Kernels that took the view as an argument ran on its stream.
        if let Err(e) = self.block.record_cudarc_use(&self.stream) {
            tracing::error!("recording a cached view's use on its block: {e}");
        }
        if !self.elsewhere.load(Ordering::Relaxed) {
            return;
        }
        for event in [self.read.take(), self.write.take()].into_iter().flatten() {
            if let Err(e) = self.block.record_after_cudarc_event(&event) {
                tracing::error!("recording a cached view's use on its block: {e}");
            }
        }
    }
}

impl<T> DeviceSlice<T> for CachedView<'_, T> {
    fn len(&self) -> usize {
        self.len
    }

    fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }
}

impl<T> DevicePtr<T> for CachedView<'_, T> {
    fn device_ptr<'b>(&'b self, stream: &'b CudaStream) -> (u64, SyncOnDrop<'b>) {
        self.note_stream(stream);
        self.order_read(stream);
        (self.ptr(), SyncOnDrop::record_event(&self.read, stream))
    }
}

impl<T> DevicePtrMut<T> for CachedView<'_, T> {
    fn device_ptr_mut<'b>(&'b mut self, stream: &'b CudaStream) -> (u64, SyncOnDrop<'b>) {
        self.note_stream(stream);
        self.order_write(stream);
        (self.ptr(), SyncOnDrop::record_event(&self.write, stream))
    }
}

// SAFETY: the argument pushed is a pointer to the block's `ptr`, a `CUdeviceptr` that lives
// as long as the borrow `'b`, which outlives the launch arguments `'a`. The block's memory
// is mapped read-write for the block's whole life, and the view borrows the block mutably,
// so it is neither dropped nor reused while the view lives. The view's stream is ordered
// here, and its use recorded on the block when the view drops: launch on the view's stream.
#[allow(unsafe_code)]
unsafe impl<'a, 'b: 'a, 'c: 'b, T> PushKernelArg<&'b mut CachedView<'c, T>> for LaunchArgs<'a> {
    #[inline(always)]
    fn arg(&mut self, arg: &'b mut CachedView<'c, T>) -> &mut Self {
        let stream = arg.stream.clone();
        arg.order_write(&stream);
        self.arg(&arg.block.ptr)
    }
}

// SAFETY: as above, for a kernel that reads (`const T*`): the view's stream waits for the
// earlier writes through the view.
#[allow(unsafe_code)]
unsafe impl<'a, 'b: 'a, 'c: 'b, T> PushKernelArg<&'b CachedView<'c, T>> for LaunchArgs<'a> {
    #[inline(always)]
    fn arg(&mut self, arg: &'b CachedView<'c, T>) -> &mut Self {
        let stream = arg.stream.clone();
        arg.order_read(&stream);
        self.arg(&arg.block.ptr)
    }
}
