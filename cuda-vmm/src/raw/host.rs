//! Host memory the library owns for staging copies: page-locked when the driver
//! gives it (`cuMemHostAlloc`), heap memory otherwise.

use core::ffi::c_void;

use super::{bare, Api};
use crate::error::check;

/// `len` bytes of host memory this value owns. It has no `Drop`: letting it go out of
/// scope leaks the memory (what a buffer a copy may still use needs); [`free`] frees it.
///
/// Crate-internal: the staging module hands the driver this memory for copies and
/// guarantees that [`bytes`] and [`free`] are only used while no copy on it is queued.
///
/// [`free`]: HostMemory::free
/// [`bytes`]: HostMemory::bytes
pub(crate) struct HostMemory {
    ptr: *mut u8,
    len: usize,
    pinned: bool,
}

// SAFETY: plain host memory owned by this value; only its one owner touches it.
unsafe impl Send for HostMemory {}

impl HostMemory {
    /// Page-locked memory (`cuMemHostAlloc` with `flags`; the caller bound a context),
    /// or zeroed heap memory when the driver refuses (logged at debug level).
    pub(crate) fn new(api: Api, len: usize, flags: u32) -> HostMemory {
        match super::mem_host_alloc(api, len, flags) {
            Ok(ptr) if !ptr.is_null() => HostMemory {
                ptr: ptr.cast(),
                len,
                pinned: true,
            },
            other => {
                if let Err(e) = other {
                    tracing::debug!("staging in pageable memory: {e}");
                }
                HostMemory {
                    ptr: Box::into_raw(vec![0u8; len].into_boxed_slice()).cast(),
                    len,
                    pinned: false,
                }
            }
        }
    }

    /// The address, for the driver's copies.
    #[inline]
    pub(crate) fn ptr(&self) -> *mut u8 {
        self.ptr
    }

    /// The length in bytes.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The bytes, for host-side copies. Only called while no device copy on the
    /// memory is queued (the staging module's invariant).
    #[inline]
    pub(crate) fn bytes(&mut self) -> &mut [u8] {
        // SAFETY: `ptr` points to `len` initialised bytes this value owns; `&mut self`
        // makes the slice unique on the host, and no device copy is in flight (the
        // staging module's invariant).
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }

    /// The bytes from `from` on (none when `from` is past the end), for filling a buffer
    /// piece by piece. Only called while no device copy that is queued reads or writes
    /// those bytes: copies of the pieces before `from` may be in flight (they only read
    /// bytes this slice does not cover).
    #[inline]
    pub(crate) fn bytes_from(&mut self, from: usize) -> &mut [u8] {
        let from = from.min(self.len);
        // SAFETY: `ptr + from .. ptr + len` lies in the `len` initialised bytes this value
        // owns; `&mut self` makes the slice unique on the host, and the device copies in
        // flight (the caller's contract) touch only bytes before `from`.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(from), self.len - from) }
    }

    /// Frees the memory (no copy uses it any more: the staging module's invariant).
    /// A failed `cuMemFreeHost` is logged; a missing one leaks the memory.
    pub(crate) fn free(self, api: Api) {
        if self.pinned {
            // SAFETY: `ptr` came from cuMemHostAlloc, is freed once (`self` is
            // consumed) and no copy uses it any more.
            if let Ok(rc) = unsafe { bare::mem_free_host(api, self.ptr.cast::<c_void>()) } {
                if let Err(e) = check("cuMemFreeHost", rc) {
                    tracing::error!("freeing a staging buffer: {e}");
                }
            }
        } else {
            // SAFETY: `ptr` came from `new` (a leaked boxed slice of `len` bytes) and is
            // freed once (`self` is consumed).
            drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(self.ptr, self.len)) });
        }
    }
}
