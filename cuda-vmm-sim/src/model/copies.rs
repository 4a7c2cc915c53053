//! Copies and sets: device ranges resolved into memfd segments.
//!
//! A device range is resolved (under the lock, when the work is issued) into
//! segments of memfds, checking that every byte is mapped and that the device
//! has the access the operation needs. The bytes move (when the work runs,
//! see [`work`](crate::model::work)) with `pread`/`pwrite` on the memfds: an unmap
//! meanwhile cannot fault the copy, because each segment holds its memory
//! alive, and a bad host pointer is reported by the kernel (EFAULT) instead of
//! crashing the process.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;

use crate::model::answers;
use crate::model::state::{DriverResult, Memory, Sim};
use crate::os;

/// Bytes moved per step of a device-to-device copy or a set.
const CHUNK: u64 = 4 << 20;

/// Part of a device range: `len` bytes of `memory` from `offset`.
struct Segment {
    memory: Arc<Memory>,
    offset: u64,
    len: u64,
}

/// A resolved device range.
pub(crate) struct Span {
    segments: Vec<Segment>,
}

fn io_error(e: io::Error) -> cuda_vmm_sys::CUresult {
    if os::is_bad_address(&e) {
        answers::COPY_BAD_HOST_POINTER
    } else {
        answers::OS_FAILURE
    }
}

impl Sim {
    /// Resolves `[addr, addr + len)` for `device`, needing write access if `write`.
    pub fn resolve(&self, addr: u64, len: u64, device: usize, write: bool) -> DriverResult<Span> {
        let end = addr.checked_add(len).ok_or(answers::COPY_OVERFLOW)?;
        let bit = 1u64 << device;
        let mut segments: Vec<Segment> = Vec::new();
        let mut cursor = addr;
        while cursor < end {
            let classic = self
                .classic
                .range(..=cursor)
                .next_back()
                .filter(|(s, c)| cursor - **s < c.size);
            let (memory, offset, stop) = if let Some((start, c)) = classic {
                (c.memory.clone(), cursor - start, start + c.size)
            } else {
                let (start, piece) = self.piece_at(cursor).ok_or(answers::COPY_UNMAPPED)?;
                let allowed = if write { piece.write } else { piece.read };
                if allowed & bit == 0 {
                    return Err(answers::COPY_NO_ACCESS);
                }
                let memory = self
                    .allocations
                    .get(&piece.handle)
                    .map(|a| a.memory.clone())
                    .ok_or(answers::COPY_UNMAPPED)?;
                (memory, piece.offset + (cursor - start), start + piece.len)
            };
            let n = stop.min(end) - cursor;
            match segments.last_mut() {
                Some(last)
                    if Arc::ptr_eq(&last.memory, &memory) && last.offset + last.len == offset =>
                {
                    last.len += n
                }
                _ => segments.push(Segment {
                    memory,
                    offset,
                    len: n,
                }),
            }
            cursor += n;
        }
        Ok(Span { segments })
    }
}

impl Span {
    /// A copy of `len` host bytes at `src`, taken now (in a fresh memfd).
    ///
    /// # Safety
    /// `src` must be valid for reads of `len` bytes, or unmapped (reported as an error).
    pub unsafe fn snapshot(src: *const u8, len: u64) -> DriverResult<Span> {
        let fd = os::memfd(len).map_err(|_| answers::OS_FAILURE)?;
        // SAFETY: forwarded from this function's contract.
        unsafe { os::write_at(fd.as_fd(), src, len, 0) }.map_err(io_error)?;
        Ok(Span {
            segments: vec![Segment {
                memory: Arc::new(Memory { fd, size: len }),
                offset: 0,
                len,
            }],
        })
    }

    /// Calls `f(segment, offset in segment, position in span, bytes)` for the
    /// parts of `[pos, pos + len)`.
    fn parts(
        &self,
        pos: u64,
        len: u64,
        mut f: impl FnMut(&Segment, u64, u64, u64) -> DriverResult<()>,
    ) -> DriverResult<()> {
        let mut seg_start = 0u64;
        for seg in &self.segments {
            let seg_end = seg_start + seg.len;
            let from = pos.max(seg_start);
            let to = (pos + len).min(seg_end);
            if from < to {
                f(seg, from - seg_start, from, to - from)?;
            }
            seg_start = seg_end;
        }
        Ok(())
    }

    fn len(&self) -> u64 {
        self.segments.iter().map(|s| s.len).sum()
    }

    /// Calls `f(fd, position from pos, bytes, file offset)` for the parts of
    /// `[pos, pos + len)`, as [`parts`](Self::parts) does, with each part's file.
    fn file_parts(
        &self,
        pos: u64,
        len: u64,
        mut f: impl FnMut(BorrowedFd<'_>, usize, u64, u64) -> io::Result<()>,
    ) -> DriverResult<()> {
        self.parts(pos, len, |seg, at, p, n| {
            f(
                seg.memory.fd.as_fd(),
                (p - pos) as usize,
                n,
                seg.offset + at,
            )
            .map_err(io_error)
        })
    }

    /// Copies the whole span into host memory at `dst`.
    ///
    /// # Safety
    /// `dst` must be valid for writes of the span's length, or unmapped
    /// (reported as an error); no Rust reference may point into it.
    pub unsafe fn read_into(&self, dst: *mut u8) -> DriverResult<()> {
        self.file_parts(0, self.len(), |fd, i, n, at| {
            // SAFETY: `dst + i .. + n` lies in the caller's buffer.
            unsafe { os::read_at(fd, dst.wrapping_add(i), n, at) }
        })
    }

    /// Copies host memory at `src` over the whole span.
    ///
    /// # Safety
    /// `src` must be valid for reads of the span's length, or unmapped.
    pub unsafe fn write_from(&self, src: *const u8) -> DriverResult<()> {
        self.file_parts(0, self.len(), |fd, i, n, at| {
            // SAFETY: `src + i .. + n` lies in the caller's buffer.
            unsafe { os::write_at(fd, src.wrapping_add(i), n, at) }
        })
    }

    fn read_part(&self, pos: u64, buf: &mut [u8]) -> DriverResult<()> {
        let base = buf.as_mut_ptr();
        self.file_parts(pos, buf.len() as u64, |fd, i, n, at| {
            // SAFETY: `i .. + n` is inside `buf`, which is borrowed mutably.
            unsafe { os::read_at(fd, base.wrapping_add(i), n, at) }
        })
    }

    fn write_part(&self, pos: u64, buf: &[u8]) -> DriverResult<()> {
        let base = buf.as_ptr();
        self.file_parts(pos, buf.len() as u64, |fd, i, n, at| {
            // SAFETY: `i .. + n` is inside `buf`.
            unsafe { os::write_at(fd, base.wrapping_add(i), n, at) }
        })
    }

    /// Zeroes the span: whole pages by punching holes, the edges by writing.
    fn punch_zeros(&self) -> DriverResult<()> {
        let page = os::page_size();
        let mut pos = 0u64;
        for seg in &self.segments {
            let (start, end) = (seg.offset, seg.offset + seg.len);
            let inner_start = start.next_multiple_of(page).min(end);
            let inner_end = (end / page * page).max(inner_start);
            let zeros = vec![0u8; (inner_start - start).max(end - inner_end) as usize];
            self.write_part(pos, &zeros[..(inner_start - start) as usize])?;
            if inner_end > inner_start {
                os::punch_hole(seg.memory.fd.as_fd(), inner_start, inner_end - inner_start)
                    .map_err(io_error)?;
            }
            let tail = (end - inner_end) as usize;
            self.write_part(pos + (inner_end - start), &zeros[..tail])?;
            pos += seg.len;
        }
        Ok(())
    }

    /// Copies `src` (same length) into this span, a chunk at a time.
    pub fn copy_from(&self, src: &Span) -> DriverResult<()> {
        let len = self.len();
        let mut buf = vec![0u8; CHUNK.min(len) as usize];
        let mut pos = 0;
        while pos < len {
            let n = CHUNK.min(len - pos) as usize;
            src.read_part(pos, &mut buf[..n])?;
            self.write_part(pos, &buf[..n])?;
            pos += n as u64;
        }
        Ok(())
    }

    /// Fills the span with repetitions of `pattern` (whose length divides the span's).
    /// Zero fills free whole pages instead of writing them (a 2 GiB memset
    /// costs no memory).
    pub fn fill(&self, pattern: &[u8]) -> DriverResult<()> {
        if pattern.iter().all(|b| *b == 0) && self.punch_zeros().is_ok() {
            return Ok(());
        }
        let len = self.len();
        let chunk = CHUNK.min(len) as usize;
        let buf: Vec<u8> = pattern.iter().copied().cycle().take(chunk).collect();
        let mut pos = 0;
        while pos < len {
            let n = (len - pos).min(chunk as u64) as usize;
            self.write_part(pos, &buf[..n])?;
            pos += n as u64;
        }
        Ok(())
    }
}
