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

use cuda_vmm_sys::{CUevent, CUevent_flags, CUstream, CUstream_flags};

use crate::device::Device;
use crate::error::Result;
use crate::raw;

/// Waits for all work queued on `stream` so far (`cuStreamSynchronize`).
#[allow(unsafe_code)]
pub(crate) fn synchronize_raw(device: &Device, stream: CUstream) -> Result<()> {
    crate::raw::require!(device.cuda().api(), cuStreamSynchronize);
    let bound = device.bind()?;
    // SAFETY: `stream` is a live stream of `device`'s primary context (or null,
    // the legacy stream).
    bound.finish(unsafe { raw::stream_synchronize(device.cuda().api(), stream) })
}

/// A stream of work on a device (`cuStreamCreate`), destroyed on drop.
///
/// Work queued on one stream runs in order; work on different streams may run
/// concurrently. Dropping a stream with queued work is fine: the driver runs
/// it to completion first. `Send + Sync`.
pub struct Stream {
    device: Device,
    raw: CUstream,
    owned: bool,
}

// SAFETY: a CUstream is an opaque driver handle, and the driver API lets any
// thread queue work on, query or synchronise any stream of a context.
#[allow(unsafe_code)]
unsafe impl Send for Stream {}
// SAFETY: as above; every method takes `&self` and only passes the handle on.
#[allow(unsafe_code)]
unsafe impl Sync for Stream {}

impl fmt::Debug for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stream")
            .field("raw", &self.raw)
            .field("device", &self.device.ordinal())
            .field("owned", &self.owned)
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
        let _bound = device.bind()?;
        let flags = if non_blocking {
            CUstream_flags::CU_STREAM_NON_BLOCKING
        } else {
            CUstream_flags::CU_STREAM_DEFAULT
        };
        let raw = raw::stream_create(device.cuda().api(), flags.0)?;
        Ok(Stream {
            device: device.clone(),
            raw,
            owned: true,
        })
    }

    /// The legacy default stream of `device`'s primary context (the null stream).
    pub fn legacy(device: &Device) -> Stream {
        Stream {
            device: device.clone(),
            raw: std::ptr::null_mut(),
            owned: false,
        }
    }

    /// The per-thread default stream of `device`'s primary context
    /// (`CU_STREAM_PER_THREAD`): work queued through it goes to the calling
    /// thread's own stream, a different one on every thread.
    pub fn per_thread(device: &Device) -> Stream {
        Stream {
            device: device.clone(),
            raw: 0x2 as CUstream,
            owned: false,
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
            raw,
            owned: false,
        }
    }

    /// The raw handle, for launching work through the driver API or cudarc.
    #[inline]
    pub fn raw(&self) -> CUstream {
        self.raw
    }

    /// The device whose primary context the stream belongs to.
    #[inline]
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Blocks until every piece of work queued so far has finished (`cuStreamSynchronize`).
    pub fn synchronize(&self) -> Result<()> {
        synchronize_raw(&self.device, self.raw)
    }

    /// Whether every piece of work queued so far has finished (`cuStreamQuery`).
    #[allow(unsafe_code)]
    pub fn is_idle(&self) -> Result<bool> {
        crate::raw::require!(self.device.cuda().api(), cuStreamQuery);
        let bound = self.device.bind()?;
        // SAFETY: `self.raw` is a live stream of the bound context.
        bound.finish(unsafe { raw::stream_query(self.device.cuda().api(), self.raw) })
    }

    /// Makes later work on this stream wait for `event` (`cuStreamWaitEvent`);
    /// the host does not block.
    #[allow(unsafe_code)]
    pub fn wait(&self, event: &Event) -> Result<()> {
        crate::raw::require!(self.device.cuda().api(), cuStreamWaitEvent);
        let bound = self.device.bind()?;
        let api = self.device.cuda().api();
        // SAFETY: both handles are live; flags must be 0.
        bound.finish(unsafe { raw::stream_wait_event(api, self.raw, event.raw, 0) })
    }

    /// A new event recorded at the current end of this stream.
    pub fn record(&self) -> Result<Event> {
        let event = Event::new(&self.device)?;
        event.record(self)?;
        Ok(event)
    }
}

impl Drop for Stream {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        if !self.owned {
            return;
        }
        let result = self.device.bind().and_then(|_bound| {
            // SAFETY: we created this stream and destroy it once; the driver
            // finishes queued work before freeing it.
            unsafe { raw::stream_destroy(self.device.cuda().api(), self.raw) }
        });
        if let Err(e) = result {
            tracing::error!("destroying stream {:?}: {e}", self.raw);
        }
    }
}

/// A marker in a stream's work (`cuEventCreate`, timing disabled), destroyed on drop.
///
/// `Send + Sync`.
pub struct Event {
    device: Device,
    raw: CUevent,
}

// SAFETY: a CUevent is an opaque driver handle; the driver API lets any thread
// record, query, wait on or synchronise any event.
#[allow(unsafe_code)]
unsafe impl Send for Event {}
// SAFETY: as above; every method takes `&self` and only passes the handle on.
#[allow(unsafe_code)]
unsafe impl Sync for Event {}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("raw", &self.raw)
            .field("device", &self.device.ordinal())
            .finish()
    }
}

impl Event {
    /// A new, unrecorded event on `device` (an unrecorded event counts as complete).
    pub fn new(device: &Device) -> Result<Event> {
        crate::raw::require!(device.cuda().api(), cuEventCreate);
        let _bound = device.bind()?;
        let raw = raw::event_create(
            device.cuda().api(),
            CUevent_flags::CU_EVENT_DISABLE_TIMING.0,
        )?;
        Ok(Event {
            device: device.clone(),
            raw,
        })
    }

    /// Records the event at the current end of `stream` (`cuEventRecord`),
    /// replacing any earlier record.
    /// The stream must belong to the event's device.
    #[allow(unsafe_code)]
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
        // SAFETY: both handles are live.
        bound.finish(unsafe { raw::event_record(self.device.cuda().api(), self.raw, stream.raw) })
    }

    /// Records the event on a raw stream of this event's device.
    #[allow(unsafe_code)]
    pub(crate) fn record_raw(&self, stream: CUstream) -> Result<()> {
        crate::raw::require!(self.device.cuda().api(), cuEventRecord);
        let bound = self.device.bind()?;
        // SAFETY: the event is live and the caller passes a live stream of the device.
        bound.finish(unsafe { raw::event_record(self.device.cuda().api(), self.raw, stream) })
    }

    /// Blocks until the work before the event's record has finished (`cuEventSynchronize`).
    #[allow(unsafe_code)]
    pub fn synchronize(&self) -> Result<()> {
        crate::raw::require!(self.device.cuda().api(), cuEventSynchronize);
        let bound = self.device.bind()?;
        // SAFETY: the event is live.
        bound.finish(unsafe { raw::event_synchronize(self.device.cuda().api(), self.raw) })
    }

    /// Whether the work before the event's record has finished (`cuEventQuery`).
    #[allow(unsafe_code)]
    pub fn is_complete(&self) -> Result<bool> {
        crate::raw::require!(self.device.cuda().api(), cuEventQuery);
        let bound = self.device.bind()?;
        // SAFETY: the event is live.
        bound.finish(unsafe { raw::event_query(self.device.cuda().api(), self.raw) })
    }

    /// The raw handle.
    #[inline]
    pub fn raw(&self) -> CUevent {
        self.raw
    }

    /// The device the event belongs to.
    #[inline]
    pub fn device(&self) -> &Device {
        &self.device
    }
}

impl Drop for Event {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        let result = self.device.bind().and_then(|_bound| {
            // SAFETY: we created this event and destroy it once.
            unsafe { raw::event_destroy(self.device.cuda().api(), self.raw) }
        });
        if let Err(e) = result {
            tracing::error!("destroying event {:?}: {e}", self.raw);
        }
    }
}
