//! The RAII block a [`CachingAllocator`](super::CachingAllocator) hands out.

use std::fmt;
use std::sync::Arc;

use cuda_vmm::{Event, Reservation, Stream};

use super::allocator::Inner;
use super::stream_key::StreamKey;
use crate::Result;

/// Device memory from a [`CachingAllocator`](super::CachingAllocator), in stream order on
/// the stream it was allocated on.
///
/// Dropping it gives the memory back to its stream's cache at once: work queued later on
/// that stream runs after the work queued before, so the next allocation on the same stream
/// may reuse it with no wait. Work on any other stream must be recorded with
/// [`record_use`](Self::record_use) after it is queued (PyTorch's `record_stream`); the
/// memory is then reused only once that work is done.
pub struct CachedBlock {
    pub(crate) owner: Arc<Inner>,
    pub(crate) pool: usize,
    pub(crate) offset: usize,
    pub(crate) size: usize,
    pub(crate) requested: usize,
    pub(crate) ptr: u64,
    pub(crate) stream: StreamKey,
    /// Events recorded on other streams, one per stream.
    pub(crate) uses: Vec<(StreamKey, Event)>,
}

impl fmt::Debug for CachedBlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedBlock")
            .field("ptr", &format_args!("{:#x}", self.ptr))
            .field("len", &self.requested)
            .field("size", &self.size)
            .field("stream", &self.stream)
            .field("foreign_uses", &self.uses.len())
            .finish()
    }
}

impl CachedBlock {
    /// The device address of the first byte.
    pub fn ptr(&self) -> u64 {
        self.ptr
    }

    /// Bytes requested.
    pub fn len(&self) -> usize {
        self.requested
    }

    /// Whether zero bytes were requested (never: the allocator refuses them).
    pub fn is_empty(&self) -> bool {
        self.requested == 0
    }

    /// Bytes the block holds: the request rounded up to 512.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Copies `data` from the host to byte `at` of the block (synchronous, through the
    /// device's staging buffers). The copy does not wait for work on the block's stream:
    /// synchronise it first, as with `cudaMemcpy`. Refused for a range past the block, and
    /// with [`Error::Asleep`](crate::Error::Asleep) while its tag sleeps.
    pub fn write(&self, at: usize, data: &[u8]) -> Result<()> {
        let (reservation, offset) = self.range(at, data.len(), "write")?;
        Ok(reservation.write(offset, data)?)
    }

    /// Copies bytes from byte `at` of the block into `out` (synchronous); as
    /// [`write`](Self::write).
    pub fn read(&self, at: usize, out: &mut [u8]) -> Result<()> {
        let (reservation, offset) = self.range(at, out.len(), "read")?;
        Ok(reservation.read(offset, out)?)
    }

    /// The segment and offset of `len` bytes at `at`, checked against the block.
    fn range(
        &self,
        at: usize,
        len: usize,
        operation: &'static str,
    ) -> Result<(Reservation, usize)> {
        if at.checked_add(len).map_or(true, |end| end > self.requested) {
            return Err(crate::Error::InvalidRequest {
                message: format!(
                    "{operation} of {len} bytes at {at} in a block of {} bytes",
                    self.requested
                ),
            });
        }
        let reservation = self.owner.segment_of(self.pool, operation)?;
        Ok((reservation, self.offset + at))
    }

    /// Records that work queued so far on `stream` uses this block: when the block is
    /// dropped, its memory is reused only once that work is done (one `cuEventRecord`; a
    /// later call for the same stream moves the record forward). On the block's own stream
    /// this does nothing: stream order already covers it. Refused, changing nothing, on a
    /// stream that is capturing a graph.
    pub fn record_use(&mut self, stream: &Stream) -> Result<()> {
        let key = StreamKey::of(stream);
        if key == self.stream {
            return Ok(());
        }
        if stream.is_capturing()? {
            return Err(crate::Error::StreamCapturing {
                operation: "record_use",
            });
        }
        if let Some((_, event)) = self.uses.iter().find(|(k, _)| *k == key) {
            event.record(stream)?;
            return Ok(());
        }
        let event = self.owner.event_for(stream)?;
        if let Err(e) = event.record(stream) {
            self.owner.return_event(event);
            return Err(e.into());
        }
        self.uses.push((key, event));
        Ok(())
    }
}

impl Drop for CachedBlock {
    fn drop(&mut self) {
        let uses = std::mem::take(&mut self.uses);
        self.owner
            .free(self.pool, self.offset, self.size, self.requested, uses);
    }
}
