//! Raw host copies, the floor of the `copies` bench: one async copy on a stream of our own,
//! then `cuStreamSynchronize`, into pageable memory (what the safe layer did before it staged
//! copies) or into page-locked memory (what staging costs at best).

use cuda_vmm::raw::bare;
use cuda_vmm_sys::{CUdeviceptr, CUstream};

use crate::raw::{done, got};
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
        // Flags 0; `env()` made the context current.
        let stream = got(bare::stream_create(self.api, 0), "cuStreamCreate");
        let pinned = got(
            bare::mem_host_alloc(self.api, len.max(1), 0),
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
        // SAFETY: our live stream.
        let rc = unsafe { bare::stream_synchronize(self.raw.api, self.stream) };
        done(rc, "cuStreamSynchronize");
    }

    /// `cuMemcpyDtoHAsync` of `out.len()` bytes from `src` into `out`, then the stream's
    /// synchronisation.
    pub fn read_pageable(&self, src: CUdeviceptr, out: &mut [u8]) {
        let (api, dst, len) = (self.raw.api, out.as_mut_ptr().cast(), out.len());
        // SAFETY: `out` is writable for its length and borrowed until the stream is
        // synchronised below; the caller passes a mapped range of that size.
        let rc = unsafe { bare::memcpy_dtoh_async(api, dst, src, len, self.stream) };
        done(rc, "cuMemcpyDtoHAsync");
        self.sync();
    }

    /// `cuMemcpyHtoDAsync` of `data` to `dst`, then the stream's synchronisation.
    pub fn write_pageable(&self, dst: CUdeviceptr, data: &[u8]) {
        let (api, src, len) = (self.raw.api, data.as_ptr().cast(), data.len());
        // SAFETY: `data` is readable for its length and borrowed until the stream is
        // synchronised below; the caller passes a mapped range of that size.
        let rc = unsafe { bare::memcpy_htod_async(api, dst, src, len, self.stream) };
        done(rc, "cuMemcpyHtoDAsync");
        self.sync();
    }

    /// The same copy from the device into the page-locked buffer (no host-side copy).
    pub fn read_pinned(&self, src: CUdeviceptr) {
        let (api, dst) = (self.raw.api, self.pinned.cast());
        // SAFETY: the pinned buffer holds `len` bytes and lives as long as `self`.
        let rc = unsafe { bare::memcpy_dtoh_async(api, dst, src, self.len, self.stream) };
        done(rc, "cuMemcpyDtoHAsync");
        self.sync();
    }

    /// The same copy from the page-locked buffer to the device.
    pub fn write_pinned(&self, dst: CUdeviceptr) {
        let (api, src) = (self.raw.api, self.pinned.cast());
        // SAFETY: as in `read_pinned`, read instead of written.
        let rc = unsafe { bare::memcpy_htod_async(api, dst, src, self.len, self.stream) };
        done(rc, "cuMemcpyHtoDAsync");
        self.sync();
    }
}
