//! [`GrowableBuffer::set_len`]: a length set after the device wrote the elements.

use super::GrowableBuffer;
use crate::error::{check_range, Result};
use crate::pod::DevicePod;

impl<T: DevicePod> GrowableBuffer<T> {
    /// Sets the length to `new_len` elements without writing any, as [`Vec::set_len`]:
    /// for elements a kernel appended on the device, through `cudarc_spare_capacity_view`
    /// (feature `cudarc`) or at [`ptr`](GrowableBuffer::ptr) plus the old length. Nothing is
    /// committed: `new_len` must be at most [`capacity`](GrowableBuffer::capacity) (call
    /// [`reserve`](GrowableBuffer::reserve) before the kernel runs), else
    /// [`Error::OutOfRange`](crate::Error::OutOfRange) with `what` `"set_len (committed
    /// capacity)"` and the length unchanged. A shorter `new_len` is a
    /// [`truncate`](GrowableBuffer::truncate).
    ///
    /// # Safety
    /// Every element from the old length to `new_len` must hold a value written for this
    /// buffer (a kernel's output, a copy), and that write must be ordered before the
    /// buffer's next reads (a view records its use when it drops; otherwise
    /// [`record_use`](GrowableBuffer::record_use) the stream that wrote them). Otherwise
    /// those elements are whatever the committed memory held (zeros, or another structure's
    /// old data in a pool's recycled chunk), which the buffer then copies, publishes and
    /// shares as its own.
    pub unsafe fn set_len(&mut self, new_len: usize) -> Result<()> {
        self.check_awake("set_len")?;
        check_range(
            "set_len (committed capacity)",
            &(0..new_len),
            self.capacity(),
        )?;
        self.len = new_len;
        Ok(())
    }
}
