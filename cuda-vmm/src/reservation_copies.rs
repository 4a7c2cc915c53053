//! Copies and fills on a reservation's mapped memory: the checked front of
//! `copy_engine.rs` (bounds, mappings and access are checked under the mapped-ranges lock,
//! which is held across the driver call so no unmap races the copy).

use std::sync::Arc;

use crate::access::AccessFlags;
use crate::copy_engine;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::mapped::MappedRanges;
use crate::reservation::Reservation;
use crate::stream::Stream;
use crate::validate::check_bounds;

impl Reservation {
    /// Copies `data` to `offset` (`cuMemcpyHtoD`); the range must be mapped and
    /// read-write for the reservation's device.
    ///
    /// The bytes go through the device's staging buffers in chunks of
    /// [`crate::staging::STAGE_BYTES`]; if the call fails after a driver call, each byte of
    /// the range holds either its old value or its new one (chunks may have landed).
    pub fn write(&self, offset: usize, data: &[u8]) -> Result<()> {
        let mapped = self.inner.mapped.read();
        self.check_access(&mapped, offset, data.len(), AccessFlags::ReadWrite)?;
        let inner = &*self.inner;
        let dst = inner.range.checked(&mapped, offset, data.len())?;
        copy_engine::htod(&inner.device, &[&inner.uses], dst, data)
    }

    /// Copies from `offset` into `out` (`cuMemcpyDtoH`); the range must be
    /// mapped and readable for the reservation's device.
    pub fn read(&self, offset: usize, out: &mut [u8]) -> Result<()> {
        let mapped = self.inner.mapped.read();
        self.check_access(&mapped, offset, out.len(), AccessFlags::Read)?;
        let inner = &*self.inner;
        let src = inner.range.checked(&mapped, offset, out.len())?;
        copy_engine::dtoh(&inner.device, &[&inner.uses], out, src)
    }

    /// Copies `len` bytes from offset `src` to offset `dst` (`cuMemcpyDtoD`,
    /// waits for completion). Ranges may not overlap.
    pub fn copy_within(&self, src: usize, dst: usize, len: usize) -> Result<()> {
        let mapped = self.inner.mapped.read();
        self.check_copy_within(&mapped, src, dst, len)?;
        let inner = &*self.inner;
        let dst = inner.range.checked(&mapped, dst, len)?;
        let src = inner.range.checked(&mapped, src, len)?;
        copy_engine::dtod_sync(&inner.device, &[&inner.uses], dst, src)
    }

    /// Sets `len` bytes at `offset` to `byte` (`cuMemsetD8`, waits for completion).
    pub fn fill(&self, offset: usize, len: usize, byte: u8) -> Result<()> {
        let mapped = self.inner.mapped.read();
        self.check_access(&mapped, offset, len, AccessFlags::ReadWrite)?;
        let inner = &*self.inner;
        let dst = inner.range.checked(&mapped, offset, len)?;
        copy_engine::fill_sync(&inner.device, &[&inner.uses], dst, byte)
    }

    /// Queues a copy of `data` to `offset` on `stream` (`cuMemcpyHtoDAsync`)
    /// and records the use, so unmapping waits for it.
    ///
    /// `data` is copied into the device's staging buffers (see [`crate::staging`])
    /// before this returns and never read afterwards, whatever kind of host memory it
    /// is: the caller may rewrite or free it at once.
    pub fn write_async(&self, stream: &Stream, offset: usize, data: &[u8]) -> Result<()> {
        self.check_stream(stream)?;
        let mapped = self.inner.mapped.read();
        self.check_access(&mapped, offset, data.len(), AccessFlags::ReadWrite)?;
        let inner = &*self.inner;
        let dst = inner.range.checked(&mapped, offset, data.len())?;
        copy_engine::htod_async(stream, &inner.uses, dst, data)
    }

    /// Queues a copy from `offset` into host memory on `stream` (`cuMemcpyDtoHAsync`)
    /// and records the use.
    ///
    /// # Safety
    /// `out` must stay valid for writes, and must not be read or written, until
    /// `stream` has reached the copy (e.g. after [`Stream::synchronize`]).
    #[allow(unsafe_code)]
    pub unsafe fn read_async(
        &self,
        stream: &Stream,
        offset: usize,
        out: *mut u8,
        len: usize,
    ) -> Result<()> {
        self.check_stream(stream)?;
        let mapped = self.inner.mapped.read();
        self.check_access(&mapped, offset, len, AccessFlags::Read)?;
        if len == 0 {
            return Ok(());
        }
        let inner = &*self.inner;
        let (api, src) = (stream.device().cuda().api(), inner.ptr + offset as u64);
        copy_engine::on_stream(stream, &inner.uses, &|s| {
            // SAFETY: `out` is forwarded from this function's contract; the device
            // range was checked above (under the mapped-ranges lock) and `s` is the caller's
            // live stream, bound.
            unsafe { crate::raw::memcpy_dtoh_async(api, out.cast(), src, len, s.raw()) }
        })
    }

    /// Queues a copy of `len` bytes from offset `src` to offset `dst` on
    /// `stream` (`cuMemcpyDtoDAsync`) and records the use. Ranges may not overlap.
    pub fn copy_within_async(
        &self,
        stream: &Stream,
        src: usize,
        dst: usize,
        len: usize,
    ) -> Result<()> {
        self.check_stream(stream)?;
        let mapped = self.inner.mapped.read();
        self.check_copy_within(&mapped, src, dst, len)?;
        let inner = &*self.inner;
        let dst = inner.range.checked(&mapped, dst, len)?;
        let src = inner.range.checked(&mapped, src, len)?;
        copy_engine::dtod_async(stream, &inner.uses, dst, src)
    }

    /// Queues a fill of `len` bytes at `offset` with `byte` on `stream`
    /// (`cuMemsetD8Async`) and records the use.
    pub fn fill_async(&self, stream: &Stream, offset: usize, len: usize, byte: u8) -> Result<()> {
        self.check_stream(stream)?;
        let mapped = self.inner.mapped.read();
        self.check_access(&mapped, offset, len, AccessFlags::ReadWrite)?;
        let inner = &*self.inner;
        let dst = inner.range.checked(&mapped, offset, len)?;
        copy_engine::fill_async(stream, &inner.uses, dst, byte)
    }

    /// Copies `len` bytes from `offset` here to `dst_offset` in `dst`
    /// (`cuMemcpyDtoD`), run by `device` and complete when this returns: the
    /// way to move data between GPUs, or between memory of one GPU that
    /// another reads or writes through its access rights.
    ///
    /// `device` (of this driver) must be able to read `[offset, offset + len)`
    /// here and to write the destination range, as granted with
    /// [`set_access`](Reservation::set_access); a copy a device is not allowed
    /// to make would fault on the GPU, so it is refused here with
    /// [`Error::AccessDenied`] naming the device. The copy waits for the
    /// recorded uses of both reservations. Within one reservation the ranges
    /// may not overlap.
    pub fn copy_to(
        &self,
        offset: usize,
        dst: &Reservation,
        dst_offset: usize,
        len: usize,
        device: &Device,
    ) -> Result<()> {
        self.inner
            .device
            .check_same_driver(dst.device(), "the destination reservation")?;
        self.inner.device.check_same_driver(device, "the device")?;
        let (src_base, dst_base) = (self.inner.ptr, dst.inner.ptr);
        if Arc::ptr_eq(&self.inner, &dst.inner) {
            let mapped = self.inner.mapped.read();
            self.check_access_by(&mapped, offset, len, AccessFlags::Read, device)?;
            self.check_access_by(&mapped, dst_offset, len, AccessFlags::ReadWrite, device)?;
            check_disjoint(offset, dst_offset, len)?;
            let dst_range = self.inner.range.checked(&mapped, dst_offset, len)?;
            let src_range = self.inner.range.checked(&mapped, offset, len)?;
            return copy_engine::dtod_sync(device, &[&self.inner.uses], dst_range, src_range);
        }
        // Two locks, always taken in address order, so two copies in opposite
        // directions cannot deadlock behind waiting writers.
        let (first, second) = if src_base < dst_base {
            (self, dst)
        } else {
            (dst, self)
        };
        let first_spans = first.inner.mapped.read();
        let second_spans = second.inner.mapped.read();
        let (src_spans, dst_spans) = if src_base < dst_base {
            (&first_spans, &second_spans)
        } else {
            (&second_spans, &first_spans)
        };
        self.check_access_by(src_spans, offset, len, AccessFlags::Read, device)?;
        dst.check_access_by(dst_spans, dst_offset, len, AccessFlags::ReadWrite, device)?;
        let dst_range = dst.inner.range.checked(dst_spans, dst_offset, len)?;
        let src_range = self.inner.range.checked(src_spans, offset, len)?;
        copy_engine::dtod_sync(
            device,
            &[&self.inner.uses, &dst.inner.uses],
            dst_range,
            src_range,
        )
    }

    /// Checks that `[offset, offset + len)` is in bounds ([`Error::OutOfBounds`]), covered
    /// by live mappings ([`Error::NotMapped`]) and has at least `required` access for the
    /// reservation's device ([`Error::AccessDenied`]): what a view over the range needs
    /// (read-write for one a kernel writes through, [`AccessFlags::Read`] for a read-only
    /// one). An empty range in bounds passes.
    pub fn check_mapped_access(
        &self,
        offset: usize,
        len: usize,
        required: AccessFlags,
    ) -> Result<()> {
        let mapped = self.inner.mapped.read();
        self.check_access(&mapped, offset, len, required)
    }

    fn check_stream(&self, stream: &Stream) -> Result<()> {
        if stream.device().same_as(&self.inner.device) {
            Ok(())
        } else {
            Err(Error::invalid(format!(
                "copies into a reservation of device {} must run on a stream of that device, not of device {}",
                self.inner.device.ordinal(),
                stream.device().ordinal()
            )))
        }
    }

    fn check_copy_within(
        &self,
        mapped: &MappedRanges,
        src: usize,
        dst: usize,
        len: usize,
    ) -> Result<()> {
        self.check_access(mapped, src, len, AccessFlags::Read)?;
        self.check_access(mapped, dst, len, AccessFlags::ReadWrite)?;
        check_disjoint(src, dst, len)
    }

    /// Checks that `[offset, offset + len)` is in bounds, mapped and has
    /// `required` access for the reservation's device.
    fn check_access(
        &self,
        mapped: &MappedRanges,
        offset: usize,
        len: usize,
        required: AccessFlags,
    ) -> Result<()> {
        self.check_access_by(mapped, offset, len, required, &self.inner.device)
    }

    /// Checks that `[offset, offset + len)` is in bounds, mapped and has
    /// `required` access for `device`.
    fn check_access_by(
        &self,
        mapped: &MappedRanges,
        offset: usize,
        len: usize,
        required: AccessFlags,
        device: &Device,
    ) -> Result<()> {
        check_bounds("copy range in reservation", offset, len, self.inner.size)?;
        if len == 0 {
            return Ok(());
        }
        match mapped.min_access(offset, len, device.ordinal()) {
            None => Err(Error::NotMapped { offset, size: len }),
            Some(a) if a < required => Err(Error::AccessDenied {
                offset,
                size: len,
                required,
                device: device.ordinal(),
            }),
            Some(_) => Ok(()),
        }
    }
}

/// Fails unless `[src, src + len)` and `[dst, dst + len)` are disjoint (both in bounds).
fn check_disjoint(src: usize, dst: usize, len: usize) -> Result<()> {
    if len != 0 && src < dst + len && dst < src + len {
        return Err(Error::invalid(format!(
            "copy ranges [{src}, {src} + {len}) and [{dst}, {dst} + {len}) overlap"
        )));
    }
    Ok(())
}
