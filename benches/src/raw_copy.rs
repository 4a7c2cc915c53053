//! Raw host copies, the floor of the `copies` bench: one async copy on a stream of our own,
//! then `cuStreamSynchronize`, into pageable memory (what the safe layer did before it staged
//! copies) or into page-locked memory (what staging costs at best).

use cuda_vmm_sys::{entry, CUdeviceptr, CUstream};

use crate::raw::{check, missing};
use crate::Raw;

/// A stream and a page-locked host buffer for raw copies. Dropping it leaks both: benches
/// make one per size and run once.
pub struct RawCopier<'r> {
    raw: &'r Raw,
    stream: CUstream,
    pinned: *mut u8,
    len: usize,
}

impl Raw {
    /// A stream of its own and `len` bytes of page-locked memory (`cuMemHostAlloc`, flags 0).
    pub fn copier(&self, len: usize) -> RawCopier<'_> {
        let create = entry!(self.table, cuStreamCreate).unwrap_or_else(|e| missing(e));
        let mut stream: CUstream = std::ptr::null_mut();
        // SAFETY: valid out-pointer, flags 0; `env()` made the context current.
        check(unsafe { create(&mut stream, 0) }, "cuStreamCreate");
        let alloc = entry!(self.table, cuMemHostAlloc).unwrap_or_else(|e| missing(e));
        let mut pinned: *mut std::ffi::c_void = std::ptr::null_mut();
        // SAFETY: valid out-pointer and size, flags 0.
        check(
            unsafe { alloc(&mut pinned, len.max(1), 0) },
            "cuMemHostAlloc",
        );
        RawCopier {
            raw: self,
            stream,
            pinned: pinned.cast(),
            len,
        }
    }
}

impl RawCopier<'_> {
    fn sync(&self) {
        let f = entry!(self.raw.table, cuStreamSynchronize).unwrap_or_else(|e| missing(e));
        // SAFETY: our live stream.
        check(unsafe { f(self.stream) }, "cuStreamSynchronize");
    }

    /// `cuMemcpyDtoHAsync` of `out.len()` bytes from `src` into `out`, then the stream's
    /// synchronisation.
    pub fn read_pageable(&self, src: CUdeviceptr, out: &mut [u8]) {
        let f = entry!(self.raw.table, cuMemcpyDtoHAsync_v2).unwrap_or_else(|e| missing(e));
        // SAFETY: `out` is writable for its length and borrowed until the stream is
        // synchronised below; the caller passes a mapped range of that size.
        check(
            unsafe { f(out.as_mut_ptr().cast(), src, out.len(), self.stream) },
            "cuMemcpyDtoHAsync",
        );
        self.sync();
    }

    /// `cuMemcpyHtoDAsync` of `data` to `dst`, then the stream's synchronisation.
    pub fn write_pageable(&self, dst: CUdeviceptr, data: &[u8]) {
        let f = entry!(self.raw.table, cuMemcpyHtoDAsync_v2).unwrap_or_else(|e| missing(e));
        // SAFETY: `data` is readable for its length and borrowed until the stream is
        // synchronised below; the caller passes a mapped range of that size.
        check(
            unsafe { f(dst, data.as_ptr().cast(), data.len(), self.stream) },
            "cuMemcpyHtoDAsync",
        );
        self.sync();
    }

    /// The same copy from the device into the page-locked buffer (no host-side copy).
    pub fn read_pinned(&self, src: CUdeviceptr) {
        let f = entry!(self.raw.table, cuMemcpyDtoHAsync_v2).unwrap_or_else(|e| missing(e));
        // SAFETY: the pinned buffer holds `len` bytes and lives as long as `self`.
        check(
            unsafe { f(self.pinned.cast(), src, self.len, self.stream) },
            "cuMemcpyDtoHAsync",
        );
        self.sync();
    }

    /// The same copy from the page-locked buffer to the device.
    pub fn write_pinned(&self, dst: CUdeviceptr) {
        let f = entry!(self.raw.table, cuMemcpyHtoDAsync_v2).unwrap_or_else(|e| missing(e));
        // SAFETY: as in `read_pinned`, read instead of written.
        check(
            unsafe { f(dst, self.pinned.cast(), self.len, self.stream) },
            "cuMemcpyHtoDAsync",
        );
        self.sync();
    }
}
