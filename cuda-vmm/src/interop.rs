//! What interop with other CUDA libraries (cudarc, the runtime API) needs from this crate
//! without depending on them: the device behind another library's context, and the byte
//! size of a typed view.

use crate::device::Device;
use crate::driver::Cuda;
use crate::error::{Error, Result};
use crate::sys::CUcontext;

impl Cuda {
    /// Device `ordinal`, provided `context` is its primary context (the one this crate,
    /// the runtime API and cudarc's `CudaContext::new(ordinal)` use); any other context is
    /// [`Error::InvalidArgument`]: work queued in it cannot be ordered with this crate's.
    ///
    /// For a cudarc stream: `cuda.primary_context_device(stream.context().ordinal(),
    /// stream.context().cu_ctx().cast())`.
    pub fn primary_context_device(&self, ordinal: usize, context: CUcontext) -> Result<Device> {
        let device = self.device(ordinal)?;
        if device.raw_context() != context {
            return Err(Error::invalid(format!(
                "context {context:p} is not device {ordinal}'s primary context ({:p}): only \
                 work in the primary context (cudarc's CudaContext::new({ordinal}), the \
                 runtime API) can be ordered with this crate's",
                device.raw_context()
            )));
        }
        Ok(device)
    }
}

/// The bytes of `len` elements of `T` from byte `offset` of a `size`-byte reservation:
/// refuses an `offset` not aligned for `T` and a range that overflows or ends past `size`.
#[cfg_attr(not(feature = "cudarc"), allow(dead_code))]
pub(crate) fn view_bytes<T>(offset: usize, len: usize, size: usize) -> Result<usize> {
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
    crate::validate::check_bounds("view in reservation", offset, bytes, size)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::view_bytes;
    use crate::error::Error;

    #[test]
    fn view_bytes_checks_alignment_overflow_and_bounds() {
        assert_eq!(view_bytes::<u32>(8, 4, 64), Ok(16));
        assert_eq!(view_bytes::<u32>(48, 4, 64), Ok(16));
        assert_eq!(view_bytes::<u32>(64, 0, 64), Ok(0));
        assert!(matches!(
            view_bytes::<u32>(2, 1, 64),
            Err(Error::InvalidArgument { message }) if message.contains("not aligned for u32")
        ));
        assert!(matches!(
            view_bytes::<u64>(0, usize::MAX, 64),
            Err(Error::InvalidArgument { message }) if message.contains("overflow")
        ));
        assert_eq!(
            view_bytes::<u32>(52, 4, 64),
            Err(Error::OutOfBounds {
                what: "view in reservation",
                offset: 52,
                size: 16,
                limit: 64
            })
        );
    }
}
