//! Host copies through the device's staging buffers (see `staging.rs`): the caller's
//! memory is read before the copy is queued and written only after it completed.

use crate::device::Device;
use crate::error::Result;
use crate::ordering::{UseKind, UseTracker};
use crate::raw::{self, CheckedRange, StreamHandle};
use crate::staging::{HostBuffer, STAGE_BYTES};
use crate::stream::synchronize_raw;

/// A synchronous write is queued in pieces of this size, so that the device copies one
/// piece while the host fills the next (a whole 4 MiB buffer at once serialises the two).
const PIECE_BYTES: usize = 512 << 10;

/// Where a staging buffer's last copy stands.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// No copy queued since the last successful wait.
    Idle,
    /// A copy is queued and no event covers it yet.
    Queued,
    /// A copy is queued and the buffer's event covers it.
    Recorded,
}

/// The two buffers a large copy alternates between, and where each one's copy stands
/// (so a failure knows what to set aside).
struct Pair<'d> {
    device: &'d Device,
    slots: [Option<(HostBuffer, Slot)>; 2],
}

impl<'d> Pair<'d> {
    fn new(device: &'d Device) -> Self {
        Pair {
            device,
            slots: [None, None],
        }
    }

    /// The buffer of `slot`, idle (its earlier copy waited for), taken on first use.
    fn idle(&mut self, slot: usize) -> Result<&mut HostBuffer> {
        let entry = &mut self.slots[slot];
        if entry.is_none() {
            *entry = Some((self.device.staging().take(self.device)?, Slot::Idle));
        }
        let Some((buffer, state)) = entry.as_mut() else {
            unreachable!("filled above")
        };
        if *state != Slot::Idle {
            buffer.wait(self.device)?;
            *state = Slot::Idle;
        }
        Ok(buffer)
    }

    /// Queues a copy with `queue` on `slot`'s (idle) buffer and records its event,
    /// tracking each step for [`Pair::finish`].
    fn queue(
        &mut self,
        slot: usize,
        stream: &StreamHandle,
        queue: impl FnOnce(&HostBuffer) -> Result<()>,
    ) -> Result<()> {
        self.queue_piece(slot, stream, queue, true)
    }

    /// The buffer of `slot` (taken by [`Pair::idle`]), whatever its copies: for filling
    /// the bytes after the pieces already queued.
    fn buffer(&mut self, slot: usize) -> Option<&mut HostBuffer> {
        self.slots[slot].as_mut().map(|(buffer, _)| buffer)
    }

    /// [`Pair::queue`] for one piece of a buffer: the event is recorded only after the
    /// `last` piece (it covers all of them); until then the buffer counts as queued with
    /// no event covering it.
    fn queue_piece(
        &mut self,
        slot: usize,
        stream: &StreamHandle,
        queue: impl FnOnce(&HostBuffer) -> Result<()>,
        last: bool,
    ) -> Result<()> {
        let device = self.device;
        let Some((buffer, state)) = self.slots[slot].as_mut() else {
            return Ok(());
        };
        queue(buffer)?;
        *state = Slot::Queued;
        if !last {
            return Ok(());
        }
        if let Err(e) = buffer.record(device, stream) {
            // No event covers the copy: only a finished stream makes the buffer idle.
            if synchronize_raw(device, stream).is_ok() {
                *state = Slot::Idle;
            }
            return Err(e);
        }
        *state = Slot::Recorded;
        Ok(())
    }

    /// Marks every buffer idle (the stream was synchronised).
    fn all_idle(&mut self) {
        for (_, state) in self.slots.iter_mut().flatten() {
            *state = Slot::Idle;
        }
    }

    /// Returns idle buffers to the staging and sets aside ones a copy may still use.
    fn finish(self) {
        let staging = self.device.staging();
        for (buffer, state) in self.slots.into_iter().flatten() {
            match state {
                Slot::Idle => staging.give_back(self.device, buffer),
                Slot::Recorded => staging.suspend(buffer),
                Slot::Queued => staging.quarantine(buffer),
            }
        }
    }
}

fn queue_htod(
    device: &Device,
    stream: &StreamHandle,
    dst: CheckedRange<'_>,
    src: &HostBuffer,
) -> Result<()> {
    raw::copy_htod_staged(device.cuda().api(), stream, dst, src.memory())
}

fn queue_dtoh(
    device: &Device,
    stream: &StreamHandle,
    dst: &HostBuffer,
    src: CheckedRange<'_>,
) -> Result<()> {
    raw::copy_dtoh_staged(device.cuda().api(), stream, dst.memory(), src)
}

/// Synchronous host-to-device copy on `stream` (the private one; context bound).
pub(super) fn htod_sync(
    device: &Device,
    uses: &[&UseTracker],
    stream: &StreamHandle,
    dst: CheckedRange<'_>,
    data: &[u8],
) -> Result<()> {
    for tracker in uses {
        tracker.order_after_uses(device, stream)?;
    }
    let mut pair = Pair::new(device);
    let api = device.cuda().api();
    let result = (|| {
        for (i, chunk) in data.chunks(STAGE_BYTES).enumerate() {
            let slot = i % 2;
            pair.idle(slot)?;
            // Piece by piece: the device reads piece `k` while the host fills `k + 1`.
            let pieces = chunk.len().div_ceil(PIECE_BYTES);
            for (k, piece) in chunk.chunks(PIECE_BYTES).enumerate() {
                let from = k * PIECE_BYTES;
                if let Some(buffer) = pair.buffer(slot) {
                    buffer.bytes_from(from)[..piece.len()].copy_from_slice(piece);
                }
                let at = dst.sub(i * STAGE_BYTES + from, piece.len())?;
                let copy =
                    |b: &HostBuffer| raw::copy_htod_staged_at(api, stream, at, b.memory(), from);
                pair.queue_piece(slot, stream, copy, k + 1 == pieces)?;
            }
        }
        synchronize_raw(device, stream)?;
        pair.all_idle();
        Ok(())
    })();
    if result.is_err() {
        settle(device, uses, stream, &mut pair);
    }
    pair.finish();
    result
}

/// After a failed synchronous copy, chunks may still be queued on `stream` (a later
/// chunk failed, or a wait did): wait for the stream once more, so that the failed call
/// leaves nothing in flight (its caller may unmap at once: a growable buffer rolls back
/// the chunks it committed for the copy, under `UnmapWait::Caller` too). Only when that
/// wait fails too is the copy recorded as a use and its buffers set aside.
fn settle(device: &Device, uses: &[&UseTracker], stream: &StreamHandle, pair: &mut Pair<'_>) {
    match synchronize_raw(device, stream) {
        Ok(()) => pair.all_idle(),
        Err(e) => {
            tracing::error!("waiting for a failed copy: {e}");
            super::record_unfinished(device, uses, stream);
        }
    }
}

/// Synchronous device-to-host copy on `stream` (the private one; context bound).
pub(super) fn dtoh_sync(
    device: &Device,
    uses: &[&UseTracker],
    stream: &StreamHandle,
    out: &mut [u8],
    src: CheckedRange<'_>,
) -> Result<()> {
    // A read: earlier reads on other streams need not finish first, writes must.
    for tracker in uses {
        tracker.order_for(device, stream, UseKind::Read)?;
    }
    let chunks = out.len().div_ceil(STAGE_BYTES);
    let total = out.len();
    let range = |i: usize| i * STAGE_BYTES..((i + 1) * STAGE_BYTES).min(total);
    let mut pair = Pair::new(device);
    let result = (|| {
        // Chunk `i` is queued while chunk `i - 1` is copied out on the host.
        for i in 0..=chunks {
            if i < chunks {
                let slot = i % 2;
                // Idle: chunk `i - 2`, queued on this buffer, was copied out already.
                let r = range(i);
                pair.idle(slot)?;
                let at = src.sub(r.start, r.len())?;
                pair.queue(slot, stream, |b| queue_dtoh(device, stream, b, at))?;
            }
            if i > 0 {
                let done = i - 1;
                let r = range(done);
                let buffer = pair.idle(done % 2)?;
                out[r.clone()].copy_from_slice(&buffer.bytes()[..r.len()]);
            }
        }
        Ok(())
    })();
    if result.is_err() {
        settle(device, uses, stream, &mut pair);
    }
    pair.finish();
    result
}

/// Queues a host-to-device copy of `data` on `stream` through staging buffers that are
/// reused once the stream is past them (context bound by the caller).
pub(super) fn htod_async(
    device: &Device,
    stream: &StreamHandle,
    dst: CheckedRange<'_>,
    data: &[u8],
) -> Result<()> {
    let staging = device.staging();
    for (i, chunk) in data.chunks(STAGE_BYTES).enumerate() {
        let at = dst.sub(i * STAGE_BYTES, chunk.len())?;
        let mut buffer = staging.take(device)?;
        buffer.bytes()[..chunk.len()].copy_from_slice(chunk);
        if let Err(e) = queue_htod(device, stream, at, &buffer) {
            staging.give_back(device, buffer);
            return Err(e);
        }
        if let Err(e) = buffer.record(device, stream) {
            // Queued without an event: only a finished stream frees the buffer.
            match synchronize_raw(device, stream) {
                Ok(()) => staging.give_back(device, buffer),
                Err(_) => staging.quarantine(buffer),
            }
            return Err(e);
        }
        staging.give_back_in_flight(buffer);
    }
    Ok(())
}
