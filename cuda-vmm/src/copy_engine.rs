//! Copies and fills between host and device memory (the raw calls; callers validate).
//!
//! The synchronous ones run on the device's private non-blocking stream, after
//! the memory's recorded uses, and wait for that stream alone
//! (`cuStreamSynchronize`), so they are complete when they return: a pageable
//! host-to-device copy is never left in flight, and work of other streams is
//! neither waited for nor blamed for. The async ones queue on a caller's
//! stream and record the use, so unmapping waits for them.

use crate::device::Device;
use crate::error::Result;
use crate::ordering::UseTracker;
use crate::raw::{self, CheckedRange, StreamHandle};
use crate::stream::{synchronize_raw, Stream};

mod staged;

/// One queued operation: `(stream, bound context)` are given, the closure calls the driver.
type Queue<'a> = &'a dyn Fn(&StreamHandle) -> Result<()>;

/// Runs `op` on the private stream after the recorded uses and waits for it.
///
/// When the wait fails, the stream is waited for once more, so that the failed call
/// leaves nothing in flight (its caller may unmap at once: a growable buffer or sparse
/// array rolls back the memory it committed for a fill, under `UnmapWait::Caller` too);
/// only when that fails too is the operation recorded as a use.
fn on_private_stream(device: &Device, uses: &[&UseTracker], op: Queue<'_>) -> Result<()> {
    let stream = device.private_stream();
    let bound = device.bind()?;
    let result = (|| {
        for tracker in uses {
            tracker.order_after_uses(device, stream)?;
        }
        op(stream)?;
        let synced = synchronize_raw(device, stream);
        if synced.is_err() {
            if let Err(e) = synchronize_raw(device, stream) {
                tracing::error!("waiting again for a failed operation: {e}");
                record_unfinished(device, uses, stream);
            }
        }
        synced
    })();
    bound.finish(result)
}

/// After a failed wait, the copy may still be queued on `stream`: record it as a use of
/// the memory, so unmapping waits for it whatever the policy.
fn record_unfinished(device: &Device, uses: &[&UseTracker], stream: &StreamHandle) {
    for tracker in uses {
        if let Err(e) = tracker.record(device, stream) {
            tracing::error!("recording an unfinished copy as a use: {e}");
        }
    }
}

/// Queues `op` on `stream` after the recorded uses, then records it as a use.
///
/// A failed `op` may have queued part of its work (a staged write queues one copy per
/// chunk and can fail on a later one). So the use is recorded whether `op` succeeded or
/// not (else an unmap under [`crate::UnmapWait::RecordedUse`] would not wait for the
/// chunks already queued), and a failed `op` waits for the stream before the error is
/// returned: the caller may unmap at once, with no chance to synchronise first (a
/// growable buffer rolls back the chunks it committed for the copy inside the same
/// call, under [`crate::UnmapWait::Caller`] too).
pub(crate) fn on_stream(stream: &Stream, uses: &UseTracker, op: Queue<'_>) -> Result<()> {
    let device = stream.device();
    let bound = device.bind()?;
    let result = (|| {
        uses.order_after_uses(device, stream.handle())?;
        let queued = op(stream.handle());
        let recorded = uses.record(device, stream.handle());
        if queued.is_err() || recorded.is_err() {
            // Part of a failed operation may be queued, or the operation is queued but not
            // recorded, so nothing would order a later copy, fill or unmap after it: wait
            // for it here, before reporting the error.
            if let Err(e) = synchronize_raw(device, stream.handle()) {
                tracing::error!("waiting for a failed or unrecorded operation: {e}");
            }
        }
        queued.and(recorded)
    })();
    bound.finish(result)
}

fn dtod_op<'a>(
    device: &'a Device,
    dst: CheckedRange<'a>,
    src: CheckedRange<'a>,
) -> impl Fn(&StreamHandle) -> Result<()> + 'a {
    move |stream: &StreamHandle| raw::copy_dtod(device.cuda().api(), stream, dst, src)
}

fn fill_op<'a>(
    device: &'a Device,
    dst: CheckedRange<'a>,
    byte: u8,
) -> impl Fn(&StreamHandle) -> Result<()> + 'a {
    move |stream: &StreamHandle| raw::fill(device.cuda().api(), stream, dst, byte)
}

/// Copies `data` to `dst` (of `data.len()` bytes) and waits until it has landed.
///
/// The bytes go through the device's staging buffers, so `data` is never read after
/// this returns, also when it fails. Callers checked that `device` may write `dst`.
pub(crate) fn htod(
    device: &Device,
    uses: &[&UseTracker],
    dst: CheckedRange<'_>,
    data: &[u8],
) -> Result<()> {
    if data.is_empty() {
        return Ok(());
    }
    let stream = device.private_stream();
    let bound = device.bind()?;
    let result = staged::htod_sync(device, uses, stream, dst, data);
    bound.finish(result)
}

/// Copies from `src` (of `out.len()` bytes) into `out` and waits for it.
///
/// The bytes go through the device's staging buffers and reach `out` only after their
/// copy completed, so nothing writes `out` after this returns, also when it fails.
/// Callers checked that `device` may read `src`.
pub(crate) fn dtoh(
    device: &Device,
    uses: &[&UseTracker],
    out: &mut [u8],
    src: CheckedRange<'_>,
) -> Result<()> {
    if out.is_empty() {
        return Ok(());
    }
    let stream = device.private_stream();
    let bound = device.bind()?;
    let result = staged::dtoh_sync(device, uses, stream, out, src);
    bound.finish(result)
}

/// Copies `len` bytes between device addresses and waits for the copy to finish.
///
/// Callers checked that `device` has the needed access to both ranges.
pub(crate) fn dtod_sync(
    device: &Device,
    uses: &[&UseTracker],
    dst: CheckedRange<'_>,
    src: CheckedRange<'_>,
) -> Result<()> {
    if src.len() == 0 {
        return Ok(());
    }
    on_private_stream(device, uses, &dtod_op(device, dst, src))
}

/// Sets `len` bytes at `dst` to `byte` and waits for it to finish.
///
/// Callers checked that `device` may write the range.
pub(crate) fn fill_sync(
    device: &Device,
    uses: &[&UseTracker],
    dst: CheckedRange<'_>,
    byte: u8,
) -> Result<()> {
    if dst.len() == 0 {
        return Ok(());
    }
    on_private_stream(device, uses, &fill_op(device, dst, byte))
}

/// Queues a host-to-device copy on `stream` and records the use.
///
/// `data` is copied into staging buffers before this returns (never read later,
/// whatever kind of memory it is); the buffers are reused once the stream is past them.
pub(crate) fn htod_async(
    stream: &Stream,
    uses: &UseTracker,
    dst: CheckedRange<'_>,
    data: &[u8],
) -> Result<()> {
    if data.is_empty() {
        return Ok(());
    }
    let device = stream.device();
    on_stream(stream, uses, &|s| staged::htod_async(device, s, dst, data))
}

/// Queues a device-to-device copy on `stream` and records the use.
pub(crate) fn dtod_async(
    stream: &Stream,
    uses: &UseTracker,
    dst: CheckedRange<'_>,
    src: CheckedRange<'_>,
) -> Result<()> {
    if src.len() == 0 {
        return Ok(());
    }
    on_stream(stream, uses, &dtod_op(stream.device(), dst, src))
}

/// Queues a byte fill on `stream` and records the use.
pub(crate) fn fill_async(
    stream: &Stream,
    uses: &UseTracker,
    dst: CheckedRange<'_>,
    byte: u8,
) -> Result<()> {
    if dst.len() == 0 {
        return Ok(());
    }
    on_stream(stream, uses, &fill_op(stream.device(), dst, byte))
}

/// Copies `len` bytes from device address `src` to `dst` and waits for it to finish.
///
/// # Safety
/// Both `[src, src + len)` and `[dst, dst + len)` must be device memory of
/// `device`'s driver, mapped and accessible (readable, respectively writable)
/// by `device`, for the duration of the call.
#[allow(unsafe_code)]
pub unsafe fn copy_dtod(device: &Device, dst: u64, src: u64, len: usize) -> Result<()> {
    // SAFETY: forwarded from this function's contract.
    let (dst, src) = unsafe {
        (
            CheckedRange::vouched(dst, len),
            CheckedRange::vouched(src, len),
        )
    };
    dtod_sync(device, &[], dst, src)
}
