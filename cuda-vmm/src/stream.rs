//! Streams and events (`cuStream*`, `cuEvent*`): the device timeline.
//!
//! A driver call returning does not mean the device is done: copies, fills and
//! kernels run later, in stream order. [`Stream`] and [`Event`] are the RAII
//! handles for ordering work and for waiting on it; [`Reservation::record_use`]
//! ties an event to memory so that unmapping it waits (see the crate docs on
//! ordering).
//!
//! [`Reservation::record_use`]: crate::Reservation::record_use

use std::fmt;

use cuda_vmm_sys::{CUevent, CUevent_flags, CUstream, CUstreamCaptureStatus, CUstream_flags};

use crate::device::Device;
use crate::error::Result;
use crate::raw::{EventHandle, StreamHandle};

/// Waits for all work queued on `stream` so far (`cuStreamSynchronize`).
pub(crate) fn synchronize_raw(device: &Device, stream: &StreamHandle) -> Result<()> {
    crate::raw::require!(device.cuda().api(), cuStreamSynchronize);
    let bound = device.bind()?;
    bound.finish(stream.synchronize(device.cuda().api()))
}

/// Whether `status` counts as capturing for [`Stream::is_capturing`]: active and
/// invalidated captures do, and so does a status this crate does not know (the
/// cautious answer); only `CU_STREAM_CAPTURE_STATUS_NONE` does not.
fn is_capture_status(status: CUstreamCaptureStatus) -> bool {
    match status {
        CUstreamCaptureStatus::CU_STREAM_CAPTURE_STATUS_NONE => false,
        CUstreamCaptureStatus::CU_STREAM_CAPTURE_STATUS_ACTIVE
        | CUstreamCaptureStatus::CU_STREAM_CAPTURE_STATUS_INVALIDATED => true,
        _ => true,
    }
}

/// A stream of work on a device (`cuStreamCreate`), destroyed on drop.
///
/// Work queued on one stream runs in order; work on different streams may run
/// concurrently. Dropping a stream with queued work is fine: the driver runs
/// it to completion first. `Send + Sync`.
pub struct Stream {
    device: Device,
    handle: StreamHandle,
}

impl fmt::Debug for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stream")
            .field("raw", &self.handle.raw())
            .field("device", &self.device.ordinal())
            .field("owned", &self.handle.is_owned())
            .finish()
    }
}

impl Stream {
    /// A new non-blocking stream on `device` (no implicit ordering with the
    /// legacy default stream).
    pub fn new(device: &Device) -> Result<Stream> {
        Self::create(device, true)
    }

    /// A new blocking stream: ordered with the legacy default stream, as
    /// `cudaStreamCreate` makes them.
    pub fn blocking(device: &Device) -> Result<Stream> {
        Self::create(device, false)
    }

    fn create(device: &Device, non_blocking: bool) -> Result<Stream> {
        let bound = device.bind()?;
        let flags = if non_blocking {
            CUstream_flags::CU_STREAM_NON_BLOCKING
        } else {
            CUstream_flags::CU_STREAM_DEFAULT
        };
        let handle = StreamHandle::create(device.cuda().api(), &bound, flags.0)?;
        Ok(Stream {
            device: device.clone(),
            handle,
        })
    }

    /// The legacy default stream of `device`'s primary context (the null stream).
    pub fn legacy(device: &Device) -> Stream {
        Stream {
            device: device.clone(),
            handle: StreamHandle::legacy(),
        }
    }

    /// The per-thread default stream of `device`'s primary context
    /// (`CU_STREAM_PER_THREAD`): work queued through it goes to the calling
    /// thread's own stream, a different one on every thread.
    pub fn per_thread(device: &Device) -> Stream {
        Stream {
            device: device.clone(),
            handle: StreamHandle::per_thread(),
        }
    }

    /// Borrows a stream created elsewhere (cudarc, the runtime API) without owning it.
    ///
    /// # Safety
    /// `raw` must be a stream of `device`'s primary context (or null) and must
    /// stay alive for as long as the returned value is used.
    #[allow(unsafe_code)]
    pub unsafe fn from_raw(device: &Device, raw: CUstream) -> Stream {
        Stream {
            device: device.clone(),
            // SAFETY: forwarded from this function's contract.
            handle: unsafe { StreamHandle::borrowed(raw) },
        }
    }

    /// The raw handle, for launching work through the driver API or cudarc.
    #[inline]
    pub fn raw(&self) -> CUstream {
        self.handle.raw()
    }

    /// The typed handle, for the crate's stream-ordered calls.
    #[inline]
    pub(crate) fn handle(&self) -> &StreamHandle {
        &self.handle
    }

    /// The device whose primary context the stream belongs to.
    #[inline]
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Blocks until every piece of work queued so far has finished (`cuStreamSynchronize`).
    pub fn synchronize(&self) -> Result<()> {
        synchronize_raw(&self.device, &self.handle)
    }

    /// Whether every piece of work queued so far has finished (`cuStreamQuery`).
    pub fn is_idle(&self) -> Result<bool> {
        crate::raw::require!(self.device.cuda().api(), cuStreamQuery);
        let bound = self.device.bind()?;
        bound.finish(self.handle.query(self.device.cuda().api()))
    }

    /// Whether the stream is being captured into a CUDA graph (`cuStreamIsCapturing`).
    ///
    /// `CU_STREAM_CAPTURE_STATUS_ACTIVE` is `true`, and so is
    /// `CU_STREAM_CAPTURE_STATUS_INVALIDATED`: a capture that was invalidated has not
    /// ended, and work that must not run during a capture (the allocators' driver
    /// calls: allocations, mappings, synchronisation) still must not be issued for the
    /// stream until the capture is ended. `CU_STREAM_CAPTURE_STATUS_NONE` is `false`.
    /// The legacy and per-thread default streams answer for the calling thread's view
    /// of them, in this stream's device context.
    pub fn is_capturing(&self) -> Result<bool> {
        crate::raw::require!(self.device.cuda().api(), cuStreamIsCapturing);
        let bound = self.device.bind()?;
        let status = self.handle.capture_status(self.device.cuda().api());
        bound.finish(status.map(is_capture_status))
    }

    /// Makes later work on this stream wait for `event` (`cuStreamWaitEvent`);
    /// the host does not block.
    pub fn wait(&self, event: &Event) -> Result<()> {
        crate::raw::require!(self.device.cuda().api(), cuStreamWaitEvent);
        let bound = self.device.bind()?;
        let api = self.device.cuda().api();
        bound.finish(self.handle.wait(api, event.handle()))
    }

    /// A new event recorded at the current end of this stream.
    pub fn record(&self) -> Result<Event> {
        let event = Event::new(&self.device)?;
        event.record(self)?;
        Ok(event)
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        if !self.handle.is_owned() {
            return;
        }
        let raw = self.handle.raw();
        let api = self.device.cuda().api();
        let handle = &mut self.handle;
        let result = self
            .device
            .bind()
            .and_then(|bound| handle.destroy(api, &bound));
        if let Err(e) = result {
            tracing::error!("destroying stream {raw:?}: {e}");
        }
    }
}

/// A marker in a stream's work (`cuEventCreate`, timing disabled), destroyed on drop.
///
/// `Send + Sync`.
pub struct Event {
    device: Device,
    /// `Some` until the event is dropped.
    handle: Option<EventHandle>,
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("raw", &self.raw())
            .field("device", &self.device.ordinal())
            .finish()
    }
}

impl Event {
    /// A new, unrecorded event on `device` (an unrecorded event counts as complete).
    pub fn new(device: &Device) -> Result<Event> {
        crate::raw::require!(device.cuda().api(), cuEventCreate);
        let bound = device.bind()?;
        let handle = EventHandle::create(
            device.cuda().api(),
            &bound,
            CUevent_flags::CU_EVENT_DISABLE_TIMING.0,
        )?;
        Ok(Event {
            device: device.clone(),
            handle: Some(handle),
        })
    }

    /// A new event whose [`synchronize`](Event::synchronize) blocks the thread instead of
    /// spinning (`CU_EVENT_BLOCKING_SYNC`, timing disabled): what the release queue's
    /// worker waits on, so it does not spin a core for the length of a kernel.
    pub(crate) fn blocking(device: &Device) -> Result<Event> {
        crate::raw::require!(device.cuda().api(), cuEventCreate);
        let bound = device.bind()?;
        let flags =
            CUevent_flags::CU_EVENT_DISABLE_TIMING.0 | CUevent_flags::CU_EVENT_BLOCKING_SYNC.0;
        let handle = EventHandle::create(device.cuda().api(), &bound, flags)?;
        Ok(Event {
            device: device.clone(),
            handle: Some(handle),
        })
    }

    /// The typed handle (present until drop).
    #[inline]
    pub(crate) fn handle(&self) -> &EventHandle {
        self.handle
            .as_ref()
            .expect("an event's handle lives until its drop")
    }

    /// Records the event at the current end of `stream` (`cuEventRecord`),
    /// replacing any earlier record.
    /// The stream must belong to the event's device.
    pub fn record(&self, stream: &Stream) -> Result<()> {
        if !stream.device.same_as(&self.device) {
            return Err(crate::Error::invalid(format!(
                "an event of device {} cannot be recorded on a stream of device {}",
                self.device.ordinal(),
                stream.device.ordinal()
            )));
        }
        crate::raw::require!(self.device.cuda().api(), cuEventRecord);
        let bound = stream.device.bind()?;
        bound.finish(
            self.handle()
                .record(self.device.cuda().api(), &stream.handle),
        )
    }

    /// Records the event on a stream of this event's device.
    pub(crate) fn record_raw(&self, stream: &StreamHandle) -> Result<()> {
        crate::raw::require!(self.device.cuda().api(), cuEventRecord);
        let bound = self.device.bind()?;
        bound.finish(self.handle().record(self.device.cuda().api(), stream))
    }

    /// Blocks until the work before the event's record has finished (`cuEventSynchronize`).
    pub fn synchronize(&self) -> Result<()> {
        crate::raw::require!(self.device.cuda().api(), cuEventSynchronize);
        let bound = self.device.bind()?;
        bound.finish(self.handle().synchronize(self.device.cuda().api()))
    }

    /// Whether the work before the event's record has finished (`cuEventQuery`).
    pub fn is_complete(&self) -> Result<bool> {
        crate::raw::require!(self.device.cuda().api(), cuEventQuery);
        let bound = self.device.bind()?;
        bound.finish(self.handle().query(self.device.cuda().api()))
    }

    /// The raw handle.
    #[inline]
    pub fn raw(&self) -> CUevent {
        self.handle().raw()
    }

    /// The device the event belongs to.
    #[inline]
    pub fn device(&self) -> &Device {
        &self.device
    }
}

impl Drop for Event {
    fn drop(&mut self) {
        let Some(handle) = self.handle.take() else {
            return;
        };
        let raw = handle.raw();
        let api = self.device.cuda().api();
        let result = self.device.bind().and_then(|_bound| handle.destroy(api));
        if let Err(e) = result {
            tracing::error!("destroying event {raw:?}: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_no_capture_is_not_capturing() {
        use CUstreamCaptureStatus as S;
        assert!(!is_capture_status(S::CU_STREAM_CAPTURE_STATUS_NONE));
        assert!(is_capture_status(S::CU_STREAM_CAPTURE_STATUS_ACTIVE));
        assert!(is_capture_status(S::CU_STREAM_CAPTURE_STATUS_INVALIDATED));
        assert!(
            is_capture_status(S(7)),
            "an unknown status counts as capturing"
        );
    }
}
