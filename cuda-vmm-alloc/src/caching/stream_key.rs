//! Which stream a pool belongs to.

use cuda_vmm::Stream;

/// `CU_STREAM_LEGACY` (a `cuda.h` macro bindgen cannot translate).
const STREAM_LEGACY: usize = 0x1;
/// `CU_STREAM_PER_THREAD`.
const STREAM_PER_THREAD: usize = 0x2;

/// A stream's identity: streams are per context, and the special handles name a different
/// stream in each context (the null stream and `CU_STREAM_LEGACY` the legacy stream,
/// `CU_STREAM_PER_THREAD` the calling thread's stream), so a raw handle alone is not one.
///
/// A destroyed stream's handle may be reused by a later stream, which then inherits the
/// cached memory: as with PyTorch, destroy a stream only after its work on allocator memory
/// is done.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct StreamKey {
    context: usize,
    stream: usize,
    thread: Option<std::thread::ThreadId>,
}

impl StreamKey {
    /// The key of `stream`, as seen from the calling thread.
    pub(crate) fn of(stream: &Stream) -> StreamKey {
        let raw = stream.raw() as usize;
        StreamKey {
            context: stream.device().raw_context() as usize,
            stream: if raw == 0 { STREAM_LEGACY } else { raw },
            thread: (raw == STREAM_PER_THREAD).then(|| std::thread::current().id()),
        }
    }

    /// The raw stream handle (for snapshots).
    pub(crate) fn raw(&self) -> u64 {
        self.stream as u64
    }
}
