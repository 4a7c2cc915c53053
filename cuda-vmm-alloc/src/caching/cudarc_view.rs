//! A [`CachedBlock`] as cudarc device memory (feature `cudarc`): [`CachedView`] is a
//! `DeviceSlice`, `DevicePtr`, `DevicePtrMut` and kernel argument that records its uses on
//! the block by itself.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use cudarc::driver::{
    CudaEvent, CudaStream, DevicePtr, DevicePtrMut, DeviceSlice, LaunchArgs, PushKernelArg,
    SyncOnDrop,
};

use super::CachedBlock;
use crate::pod::DevicePod;
use crate::{Error, Result};

/// The elements of a [`CachedBlock`] as cudarc memory on one cudarc stream (created by
/// [`CachedBlock::cudarc_view`]). Launch kernels taking the view as an argument on the
/// view's stream: when the view drops, that stream's work so far is recorded as a use of
/// the block, so its memory is reused only after those kernels. `device_ptr` and
/// `device_ptr_mut` on another stream order it after the view's stream and synchronise it
/// when cudarc drops the returned guard (the use is over before the view can record it).
pub struct CachedView<'a, T> {
    block: &'a mut CachedBlock,
    len: usize,
    stream: Arc<CudaStream>,
    /// Recorded on the view's stream to order another stream after it.
    event: CudaEvent,
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
    /// Refused for a stream of another context, a zero-sized `T`, a block smaller than one
    /// element, or a sleeping tag ([`Error::Asleep`]); while the view lives, its tag cannot
    /// sleep.
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
        self.owner.count_view(self.pool, true)?;
        let event = stream
            .context()
            .new_event(None)
            .map_err(|e| Error::InvalidRequest {
                message: format!("creating a cudarc event: {e:?}"),
            });
        let event = match event {
            Ok(event) => event,
            Err(e) => {
                // Not opened after all.
                let _ = self.owner.count_view(self.pool, false);
                return Err(e);
            }
        };
        Ok(CachedView {
            len: self.len() / element,
            stream: stream.clone(),
            event,
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

    /// A guard for a use on `stream`: none on the view's own stream (stream order, and the
    /// use is recorded at drop); on another, `stream` first waits for the view's stream
    /// (every kernel launched through the view so far), and the guard synchronises it.
    fn guard<'b>(&'b self, stream: &'b CudaStream) -> SyncOnDrop<'b> {
        if stream.cu_stream() == self.stream.cu_stream() {
            return SyncOnDrop::Sync(None);
        }
        let ordered = self
            .event
            .record(&self.stream)
            .and_then(|()| stream.wait(&self.event));
        if let Err(e) = ordered {
            tracing::error!("ordering a cudarc stream after a cached view's stream: {e:?}");
        }
        SyncOnDrop::sync_stream(stream)
    }
}

impl<T> Drop for CachedView<'_, T> {
    fn drop(&mut self) {
        // Kernels that took the view as an argument ran on its stream.
        if let Err(e) = self.block.record_cudarc_use(&self.stream) {
            tracing::error!("recording a cached view's use on its block: {e}");
        }
        if let Err(e) = self.block.owner.count_view(self.block.pool, false) {
            tracing::error!("closing a cached view: {e}");
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
        (self.ptr(), self.guard(stream))
    }
}

impl<T> DevicePtrMut<T> for CachedView<'_, T> {
    fn device_ptr_mut<'b>(&'b mut self, stream: &'b CudaStream) -> (u64, SyncOnDrop<'b>) {
        (self.ptr(), self.guard(stream))
    }
}

// SAFETY: the argument pushed is a pointer to the block's `ptr`, a `CUdeviceptr` that lives
// as long as the borrow `'b`, which outlives the launch arguments `'a`. The block's memory
// is mapped read-write for the block's whole life, and the view borrows the block mutably,
// so it is neither dropped nor reused while the view lives; its use is recorded on the block
// when the view drops, on the view's stream: launch on the view's stream. Uses on other
// streams (`device_ptr`) are synchronous, so nothing through the view runs unordered.
#[allow(unsafe_code)]
unsafe impl<'a, 'b: 'a, 'c: 'b, T> PushKernelArg<&'b mut CachedView<'c, T>> for LaunchArgs<'a> {
    #[inline(always)]
    fn arg(&mut self, arg: &'b mut CachedView<'c, T>) -> &mut Self {
        self.arg(&arg.block.ptr)
    }
}

// SAFETY: as above, for a kernel that reads (`const T*`).
#[allow(unsafe_code)]
unsafe impl<'a, 'b: 'a, 'c: 'b, T> PushKernelArg<&'b CachedView<'c, T>> for LaunchArgs<'a> {
    #[inline(always)]
    fn arg(&mut self, arg: &'b CachedView<'c, T>) -> &mut Self {
        self.arg(&arg.block.ptr)
    }
}
