//! The allocator's error type.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

/// Result of every fallible allocator operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in this crate: a driver/validation error from `cuda-vmm`,
/// or one of the allocator's own checks. Each variant names the values involved.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A `cuda-vmm` call failed (driver error or argument validation).
    #[error(transparent)]
    Vmm(#[from] cuda_vmm::Error),
    /// Growing would pass the end of the reserved address range.
    #[error("a capacity of {requested} elements exceeds the reserved maximum of {max} elements")]
    CapacityExceeded {
        /// Elements the operation needed.
        requested: usize,
        /// Elements that fit in the reservation.
        max: usize,
    },
    /// A sparse array access touched a tile that holds no physical memory.
    #[error("element {index} lies in tile {tile}, which is not committed")]
    NotCommitted {
        /// First element of the access that lies in a hole.
        index: usize,
        /// The uncommitted tile holding it.
        tile: usize,
    },
    /// A sparse array's tile size is not a usable multiple of the allocation granularity.
    #[error(
        "tile size {tile_size} is not a nonzero multiple of the allocation granularity {granularity}"
    )]
    BadTileSize {
        /// The tile size asked for, in bytes.
        tile_size: usize,
        /// The allocation granularity, in bytes.
        granularity: usize,
    },
    /// An element range reaches past the end of the buffer or array.
    #[error("{what} range {start}..{end} is out of bounds for length {len}")]
    OutOfRange {
        /// The operation ("read", "write", "commit", ...).
        what: &'static str,
        /// First element of the range.
        start: usize,
        /// One past the last element of the range.
        end: usize,
        /// Current length in elements.
        len: usize,
    },
    /// A host slice has a different length than the element range it is copied to/from.
    #[error("host slice holds {actual} elements but the range covers {expected}")]
    LengthMismatch {
        /// Elements in the device range.
        expected: usize,
        /// Elements in the host slice.
        actual: usize,
    },
    /// A growth policy's numbers are unusable.
    #[error("invalid growth policy: {message}")]
    BadPolicy {
        /// What is wrong, naming the value.
        message: String,
    },
    /// A configuration value (pool limits, chunk size, capacity) is unusable.
    #[error("invalid configuration: {message}")]
    InvalidConfig {
        /// What is wrong, naming the value.
        message: String,
    },
    /// A chunk pool serves another size class than the one asked for.
    #[error("chunk pool mismatch: {message}")]
    PoolMismatch {
        /// Which of device, properties or chunk size differs, with both values.
        message: String,
    },
    /// A chunk handed to a pool is still held elsewhere (another clone or a mapping).
    #[error(
        "allocation {handle:#x} has {holders} holders (clones or mappings): a pool takes only \
         uniquely owned, unmapped chunks"
    )]
    ChunkInUse {
        /// The raw allocation handle.
        handle: u64,
        /// [`Allocation::holders`](cuda_vmm::Allocation::holders), this handle included.
        holders: usize,
    },
    /// The prefetch worker thread could not be started.
    #[error("cannot start the prefetch worker thread: {message}")]
    Worker {
        /// What the operating system said.
        message: String,
    },
    /// The peer of a shared buffer broke the protocol: a malformed, truncated or
    /// inconsistent message, or one that does not follow what is mapped (another buffer,
    /// a generation out of order, chunks that overlap or leave a gap, a stream closed in the
    /// middle of a message).
    #[error("shared buffer protocol: {message}")]
    SharedProtocol {
        /// What the peer sent, naming the values.
        message: String,
    },
    /// A shared buffer's socket failed (the peer gone, a broken pipe, a timeout set on the
    /// stream by the caller).
    #[error("shared buffer I/O: {message}: {source}")]
    SharedIo {
        /// What was being sent or received.
        message: String,
        /// The socket's error.
        #[source]
        source: SocketError,
    },
    /// An earlier failure left a shared-buffer producer or consumer out of step with its
    /// peer; it refuses every later call. The message names the first failure.
    #[error("shared buffer: {message}")]
    SharedBroken {
        /// The failure that broke it.
        message: String,
    },
    /// A commit would pass a [`MemoryBudget`](crate::MemoryBudget)'s limit; refused before
    /// any driver call, changing nothing.
    #[error(
        "committing {requested} bytes would pass the memory budget: {used} of {limit} bytes \
         are used"
    )]
    BudgetExceeded {
        /// Bytes the commit needed.
        requested: usize,
        /// Bytes the budget's structures held when it was refused.
        used: usize,
        /// The budget's limit.
        limit: usize,
    },
    /// A request a [`CachingAllocator`](crate::CachingAllocator) cannot serve as asked (zero
    /// bytes, more than `isize::MAX`, a stream of another device); nothing changed.
    #[error("invalid allocation request: {message}")]
    InvalidRequest {
        /// What is wrong, naming the value.
        message: String,
    },
    /// A [`CachingAllocator`](crate::CachingAllocator) could not serve a request even after
    /// giving its cached memory back and retrying.
    #[error(
        "allocating {requested} bytes failed: {reserved} bytes reserved by the allocator \
         ({allocated} allocated, {releasing} being released), {device_free} bytes free on \
         the device{}",
        max_reserved.map(|m| format!(", budget {m} bytes")).unwrap_or_default()
    )]
    AllocatorOutOfMemory {
        /// Bytes asked for.
        requested: usize,
        /// Physical memory the allocator mapped when it gave up.
        reserved: usize,
        /// Of that, bytes in blocks handed out.
        allocated: usize,
        /// Memory given back whose release was still queued behind device work.
        releasing: usize,
        /// `cuMemGetInfo`'s free bytes at that moment (0 when the query failed).
        device_free: usize,
        /// The allocator's budget, if it has one.
        max_reserved: Option<usize>,
    },
    /// The stream is capturing a CUDA graph: an allocator call that would make a driver call
    /// (or, with `check_capture`, any call) on it is refused, changing nothing, so that the
    /// capture is never broken.
    #[error(
        "{operation} on a stream that is capturing a CUDA graph: refused so the capture is \
         not broken (allocate before the capture, or from memory cached on that stream)"
    )]
    StreamCapturing {
        /// What was refused (`alloc`, `growth`, `record_use`).
        operation: &'static str,
    },
    /// The memory of this tag is asleep: its physical memory was given back by `sleep`, and
    /// nothing may allocate in it (or use it) until `wake`.
    #[error("{operation} refused: tag {tag:?} is asleep (wake it first)")]
    Asleep {
        /// The sleeping tag.
        tag: String,
        /// What was refused.
        operation: &'static str,
    },
    /// The element type has size zero, which device memory cannot represent.
    #[error("element type {type_name} has size zero")]
    ZeroSizedElement {
        /// `std::any::type_name` of the element type.
        type_name: &'static str,
    },
}

impl Error {
    /// The raw `CUresult` code when this is a driver error, else `None`.
    pub fn code(&self) -> Option<u32> {
        self.cuda_error().map(cuda_vmm::CudaError::code)
    }

    /// Whether the device ran out of memory (`CUDA_ERROR_OUT_OF_MEMORY` from a driver call,
    /// or a caching allocator's [`Error::AllocatorOutOfMemory`],
    /// see [`cuda_vmm::Error::is_out_of_memory`]): the error to evict or back off on. A
    /// [`MemoryBudget`](crate::MemoryBudget)'s refusal is not one (see
    /// [`is_budget_exceeded`](Self::is_budget_exceeded)).
    pub fn is_out_of_memory(&self) -> bool {
        matches!(self, Error::AllocatorOutOfMemory { .. })
            || matches!(self, Error::Vmm(e) if e.is_out_of_memory())
    }

    /// Whether a [`MemoryBudget`](crate::MemoryBudget) refused a commit
    /// ([`Error::BudgetExceeded`]).
    pub fn is_budget_exceeded(&self) -> bool {
        matches!(self, Error::BudgetExceeded { .. })
    }

    /// Whether the device or driver does not support the operation (see
    /// [`cuda_vmm::Error::is_not_supported`]).
    pub fn is_not_supported(&self) -> bool {
        matches!(self, Error::Vmm(e) if e.is_not_supported())
    }

    /// Whether this is a shared buffer's I/O failure ([`Error::SharedIo`]), with its error
    /// kind: `Some(BrokenPipe)` when the peer is gone.
    pub fn shared_io_kind(&self) -> Option<std::io::ErrorKind> {
        match self {
            Error::SharedIo { source, .. } => Some(source.kind()),
            _ => None,
        }
    }

    /// The driver's error (code, name, description) when this is a driver error, else `None`.
    pub fn cuda_error(&self) -> Option<cuda_vmm::CudaError> {
        match self {
            Error::Vmm(e) => e.cuda_error(),
            _ => None,
        }
    }
}

/// A socket's [`std::io::Error`], the source of [`Error::SharedIo`], wrapped so that
/// [`Error`] stays comparable: two are equal when their kind, OS error code and message are.
#[derive(Clone, Debug)]
pub struct SocketError(Arc<std::io::Error>);

impl SocketError {
    /// The error's kind.
    pub fn kind(&self) -> std::io::ErrorKind {
        self.0.kind()
    }

    /// The I/O error itself.
    pub fn io_error(&self) -> &std::io::Error {
        &self.0
    }
}

impl From<std::io::Error> for SocketError {
    fn from(error: std::io::Error) -> Self {
        SocketError(Arc::new(error))
    }
}

impl PartialEq for SocketError {
    fn eq(&self, other: &Self) -> bool {
        self.kind() == other.kind()
            && self.0.raw_os_error() == other.0.raw_os_error()
            && self.0.to_string() == other.0.to_string()
    }
}

impl Eq for SocketError {}

impl fmt::Display for SocketError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for SocketError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// [`Error::OutOfRange`] (naming the operation `what`) unless `range` is ascending and ends
/// within `len` elements.
pub(crate) fn check_range(what: &'static str, range: &Range<usize>, len: usize) -> Result<()> {
    if range.start > range.end || range.end > len {
        return Err(Error::OutOfRange {
            what,
            start: range.start,
            end: range.end,
            len,
        });
    }
    Ok(())
}

/// [`Error::LengthMismatch`] unless `actual` elements are `range.len()`.
pub(crate) fn check_len(range: &Range<usize>, actual: usize) -> Result<()> {
    if range.len() != actual {
        return Err(Error::LengthMismatch {
            expected: range.len(),
            actual,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cuda_vmm::sys::CUresult;
    use cuda_vmm::CudaError;

    #[test]
    fn driver_errors_keep_code_name_and_call() {
        let oom = CudaError::from_result(CUresult::CUDA_ERROR_OUT_OF_MEMORY);
        let Some(error) = oom else {
            panic!("CUDA_ERROR_OUT_OF_MEMORY is an error");
        };
        let e = Error::from(cuda_vmm::Error::Driver {
            call: "cuMemCreate",
            error,
        });
        assert_eq!(e.cuda_error(), Some(error));
        assert_eq!(e.code(), Some(2));
        assert_eq!(error.name(), Some("CUDA_ERROR_OUT_OF_MEMORY"));
        assert!(e
            .to_string()
            .starts_with("cuMemCreate failed: CUDA_ERROR_OUT_OF_MEMORY (2): The API call failed"));
        assert!(e.is_out_of_memory() && !e.is_not_supported());
        let own = Error::CapacityExceeded {
            requested: 1,
            max: 0,
        };
        assert_eq!((own.cuda_error(), own.code()), (None, None));
        assert!(!own.is_out_of_memory() && !own.is_not_supported());
        let unsupported = Error::from(cuda_vmm::Error::Unsupported {
            feature: "fabric handles",
            device: 0,
        });
        assert!(unsupported.is_not_supported() && !unsupported.is_out_of_memory());
    }
}
