//! Interop with cudarc (feature `cudarc`): buffers and committed tiles as cudarc device
//! memory, through [`cuda_vmm::CudarcView`].

use std::ops::Range;
use std::sync::Arc;

use cuda_vmm::CudarcView;
use cudarc::driver::CudaStream;

use crate::error::{check_range, Result};
use crate::growable::GrowableBuffer;
use crate::memory::sealed::Sealed;
use crate::pod::DevicePod;
use crate::sparse::SparseArray;

impl<T: DevicePod> GrowableBuffer<T> {
    /// The buffer's `len()` elements as a cudarc view on `stream` (a stream of the device's
    /// primary context): a `DevicePtr`/`DevicePtrMut` and kernel argument. Work through it
    /// waits for the buffer's recorded uses; when the view drops, its use is recorded, so
    /// shrinking or dropping the buffer waits for the kernels that used it. The view borrows
    /// the buffer, which cannot grow or shrink meanwhile.
    pub fn cudarc_view(&self, stream: &Arc<CudaStream>) -> Result<CudarcView<'_, T>> {
        Ok(self.reservation().cudarc_view(stream, 0, self.len())?)
    }
}

impl<T: DevicePod> SparseArray<T> {
    /// Elements `range` as a cudarc view on `stream`; every tile it touches must be
    /// committed (holes, even zero-mapped ones, are not writable). See
    /// [`GrowableBuffer::cudarc_view`] for the ordering.
    pub fn cudarc_view(
        &self,
        stream: &Arc<CudaStream>,
        range: Range<usize>,
    ) -> Result<CudarcView<'_, T>> {
        check_range("cudarc view", &range, self.len())?;
        self.check_committed(range.clone())?;
        let offset = range.start * size_of::<T>();
        Ok(self
            .reservation()
            .cudarc_view(stream, offset, range.len())?)
    }
}
