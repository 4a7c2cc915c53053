//! The crate's one error type, the driver's error codes ([`CudaError`]) and the helper that
//! turns a `CUresult` into them.

use std::fmt;

use cuda_vmm_sys::{result_description, result_name, CUresult, LoadError};

use crate::version::DriverVersion;

/// A `CUresult` other than `CUDA_SUCCESS`: its code, and the name and description `cuda.h`
/// gives it (a table generated from the header, so every code the header defines is named;
/// what `cuGetErrorName`/`cuGetErrorString` answer, without a driver call).
///
/// A code the header does not define (a newer driver's) keeps its number and prints as
/// `unknown CUresult N`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CudaError(CUresult);

impl CudaError {
    /// The error for `result`, `None` for `CUDA_SUCCESS`.
    pub fn from_result(result: CUresult) -> Option<CudaError> {
        (result != CUresult::CUDA_SUCCESS).then_some(CudaError(result))
    }

    /// The raw code, e.g. `2`.
    pub fn code(self) -> u32 {
        self.0 .0
    }

    /// The code as the driver's `CUresult`.
    pub fn result(self) -> CUresult {
        self.0
    }

    /// The header's name, e.g. `"CUDA_ERROR_OUT_OF_MEMORY"`; `None` for a code `cuda.h`
    /// does not define.
    pub fn name(self) -> Option<&'static str> {
        result_name(self.0)
    }

    /// The header's description of the code; `None` for a code `cuda.h` does not define.
    pub fn description(self) -> Option<&'static str> {
        result_description(self.0)
    }
}

impl fmt::Display for CudaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.name(), self.description()) {
            (Some(name), Some(description)) => {
                write!(f, "{name} ({}): {description}", self.code())
            }
            (Some(name), None) => write!(f, "{name} ({})", self.code()),
            _ => write!(f, "unknown CUresult {}", self.code()),
        }
    }
}

impl fmt::Debug for CudaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CudaError")
            .field("code", &self.code())
            .field("name", &self.name().unwrap_or("unknown"))
            .finish()
    }
}

impl std::error::Error for CudaError {}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// Everything that can go wrong in this crate.
#[non_exhaustive]
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A driver call returned an error code.
    #[error("{call} failed: {error}")]
    Driver {
        /// The entry point that failed, e.g. `"cuMemMap"`.
        call: &'static str,
        /// What it returned: code, name and description.
        error: CudaError,
    },
    /// An argument failed validation; the message names the bad value.
    #[error("invalid argument: {message}")]
    InvalidArgument {
        /// What was wrong, naming the value.
        message: String,
    },
    /// A size, offset or address is not a multiple of the allocation granularity.
    #[error("{what} {value} is not a multiple of the allocation granularity {granularity}")]
    NotAligned {
        /// Which argument, e.g. `"offset"`.
        what: &'static str,
        /// The value passed.
        value: u64,
        /// The granularity it must be a multiple of.
        granularity: usize,
    },
    /// A range does not fit into the object it refers to.
    #[error("{what} range [{offset}, {offset} + {size}) exceeds its limit {limit}")]
    OutOfBounds {
        /// Which range, e.g. `"mapping in reservation"`.
        what: &'static str,
        /// Start of the requested range.
        offset: u64,
        /// Length of the requested range.
        size: u64,
        /// The size of the object the range must fit into.
        limit: u64,
    },
    /// A new mapping would overlap a live one.
    #[error(
        "range [{offset}, {offset} + {size}) overlaps the live mapping [{existing_offset}, {existing_offset} + {existing_size})"
    )]
    Overlap {
        /// Offset of the requested range in the reservation.
        offset: usize,
        /// Size of the requested range.
        size: usize,
        /// Offset of the live mapping it overlaps.
        existing_offset: usize,
        /// Size of that live mapping.
        existing_size: usize,
    },
    /// (Part of) a range is not covered by live mappings.
    #[error("range [{offset}, {offset} + {size}) is not fully covered by live mappings")]
    NotMapped {
        /// Offset of the range in the reservation.
        offset: usize,
        /// Size of the range.
        size: usize,
    },
    /// A mapped range lacks the access rights an operation needs.
    #[error(
        "range [{offset}, {offset} + {size}) is not {required} for device {device}; call set_access first"
    )]
    AccessDenied {
        /// Offset of the range in the reservation.
        offset: usize,
        /// Size of the range.
        size: usize,
        /// The access the operation needs.
        required: crate::AccessFlags,
        /// The device that performs the operation.
        device: usize,
    },
    /// An object cannot be freed or released while others still use it.
    #[error("{what} is still in use by {users} other owner(s) (clones or mappings)")]
    InUse {
        /// Which object, e.g. `"reservation"`.
        what: &'static str,
        /// How many other owners hold it.
        users: usize,
    },
    /// A strict address hint was not honoured by the driver.
    #[error("the driver did not honour the address hint {requested:#x}; it returned {got:#x}")]
    HintNotHonoured {
        /// The address asked for.
        requested: u64,
        /// The address the driver returned (already freed again).
        got: u64,
    },
    /// No driver library could be loaded.
    #[error("{0}")]
    DriverNotFound(LoadError),
    /// The loaded driver lacks an entry point.
    #[error("the driver (version {}) does not export `{symbol}`", version_text(.driver_version))]
    MissingEntryPoint {
        /// The missing symbol, e.g. `"cuMemCreate"`.
        symbol: &'static str,
        /// The driver's version, when it could be queried.
        driver_version: Option<DriverVersion>,
    },
    /// The device does not support a requested feature.
    #[error("device {device} does not support {feature}")]
    Unsupported {
        /// The feature, e.g. `"fabric handles"`.
        feature: &'static str,
        /// The device ordinal.
        device: usize,
    },
    /// Sending or receiving allocations over a Unix socket failed: the socket
    /// failed (`io` is its error kind), or the peer broke the protocol (`io` is
    /// `None`: a malformed, truncated or inconsistent message).
    #[error("allocation sharing: {message}")]
    Sharing {
        /// What went wrong, naming the values involved.
        message: String,
        /// The socket's error kind, for I/O failures.
        io: Option<std::io::ErrorKind>,
    },
    /// Host copies are refused: failed waits left this many bytes of staging memory
    /// possibly in use by the device (quarantined, never reused), past the bound.
    #[error("{quarantined} bytes of copy staging are quarantined after failed waits; the device's context is likely lost")]
    StagingExhausted {
        /// Bytes quarantined.
        quarantined: usize,
    },
    /// The requested backend cannot be used.
    #[error("backend unavailable: {message}")]
    BackendUnavailable {
        /// Why.
        message: String,
    },
}

fn version_text(v: &Option<DriverVersion>) -> String {
    match v {
        Some(v) => v.to_string(),
        None => "unknown".to_owned(),
    }
}

impl Error {
    /// The raw `CUresult` of a [`Error::Driver`] error, `None` for every other kind.
    pub fn code(&self) -> Option<u32> {
        self.cuda_error().map(CudaError::code)
    }

    /// The driver's error of a [`Error::Driver`] error, `None` for every other kind.
    pub fn cuda_error(&self) -> Option<CudaError> {
        match self {
            Error::Driver { error, .. } => Some(*error),
            _ => None,
        }
    }

    /// Whether the driver ran out of memory: a [`Error::Driver`] error with
    /// `CUDA_ERROR_OUT_OF_MEMORY` (what `cuMemCreate` answers when the device is full).
    /// The error to branch on for eviction or back-off, instead of matching
    /// `cuda_error().name()`.
    ///
    /// ```
    /// use cuda_vmm::{sys::CUresult, CudaError, Error};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let error = CudaError::from_result(CUresult::CUDA_ERROR_OUT_OF_MEMORY).ok_or("success")?;
    /// assert!(Error::Driver { call: "cuMemCreate", error }.is_out_of_memory());
    /// assert!(!Error::InvalidArgument { message: "size 0".into() }.is_out_of_memory());
    /// # Ok(()) }
    /// ```
    pub fn is_out_of_memory(&self) -> bool {
        self.cuda_error()
            .is_some_and(|e| e.result() == CUresult::CUDA_ERROR_OUT_OF_MEMORY)
    }

    /// Whether the operation is not supported here: [`Error::Unsupported`] (the device
    /// lacks a feature), [`Error::MissingEntryPoint`] (the driver is too old), or a
    /// [`Error::Driver`] error with `CUDA_ERROR_NOT_SUPPORTED`.
    pub fn is_not_supported(&self) -> bool {
        match self {
            Error::Unsupported { .. } | Error::MissingEntryPoint { .. } => true,
            _ => self
                .cuda_error()
                .is_some_and(|e| e.result() == CUresult::CUDA_ERROR_NOT_SUPPORTED),
        }
    }

    /// The entry point that failed, for a [`Error::Driver`] error.
    pub fn failed_call(&self) -> Option<&'static str> {
        match self {
            Error::Driver { call, .. } => Some(call),
            _ => None,
        }
    }

    /// Shorthand for [`Error::InvalidArgument`].
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Error::InvalidArgument {
            message: message.into(),
        }
    }
}

/// Turns the `CUresult` of the driver call `call` into `Ok(())` or [`Error::Driver`].
///
/// Every driver call in this crate goes through here.
#[inline]
pub(crate) fn check(call: &'static str, rc: CUresult) -> Result<()> {
    match CudaError::from_result(rc) {
        None => Ok(()),
        Some(error) => Err(Error::Driver { call, error }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn driver_errors_name_the_call_and_code() {
        let e = check("cuMemMap", CUresult::CUDA_ERROR_INVALID_VALUE).unwrap_err();
        assert_eq!(e.code(), Some(1));
        assert_eq!(
            e.to_string(),
            format!(
                "cuMemMap failed: CUDA_ERROR_INVALID_VALUE (1): {}",
                result_description(CUresult::CUDA_ERROR_INVALID_VALUE).unwrap()
            )
        );
        assert_eq!(e.failed_call(), Some("cuMemMap"));
        let unknown = check("cuMemCreate", CUresult(12345)).unwrap_err();
        let error = unknown.cuda_error().unwrap();
        assert_eq!(
            unknown,
            Error::Driver {
                call: "cuMemCreate",
                error
            }
        );
        assert_eq!(
            (error.code(), error.name(), error.description()),
            (12345, None, None)
        );
        assert_eq!(
            unknown.to_string(),
            "cuMemCreate failed: unknown CUresult 12345"
        );
        assert!(check("cuInit", CUresult::CUDA_SUCCESS).is_ok());
        assert!(!e.is_out_of_memory() && !e.is_not_supported());
        let oom = check("cuMemCreate", CUresult::CUDA_ERROR_OUT_OF_MEMORY).unwrap_err();
        assert!(oom.is_out_of_memory() && !oom.is_not_supported());
        let no = check("cuMemCreate", CUresult::CUDA_ERROR_NOT_SUPPORTED).unwrap_err();
        assert!(no.is_not_supported() && !no.is_out_of_memory());
        let unsupported = Error::Unsupported {
            feature: "fabric handles",
            device: 0,
        };
        assert!(unsupported.is_not_supported() && !unsupported.is_out_of_memory());
        let missing = Error::MissingEntryPoint {
            symbol: "cuMemCreate",
            driver_version: None,
        };
        assert!(missing.is_not_supported());
        assert_eq!(CudaError::from_result(CUresult::CUDA_SUCCESS), None);
    }

    #[test]
    fn every_code_in_the_header_is_named_and_described() {
        for &(code, name, description) in cuda_vmm_sys::RESULT_CODES {
            let Some(e) = CudaError::from_result(CUresult(code)) else {
                assert_eq!(name, "CUDA_SUCCESS");
                continue;
            };
            assert_eq!((e.code(), e.result()), (code, CUresult(code)));
            assert_eq!(e.name(), Some(name));
            assert_eq!(e.description(), Some(description));
            assert!(!description.is_empty(), "{name} has no description");
            assert_eq!(e.to_string(), format!("{name} ({code}): {description}"));
        }
        let oom = CudaError::from_result(CUresult::CUDA_ERROR_OUT_OF_MEMORY).unwrap();
        assert_eq!(
            format!("{oom:?}"),
            "CudaError { code: 2, name: \"CUDA_ERROR_OUT_OF_MEMORY\" }"
        );
    }

    #[test]
    fn validation_messages_are_readable() {
        let e = Error::NotAligned {
            what: "offset",
            value: 4096,
            granularity: 2 << 20,
        };
        assert_eq!(
            e.to_string(),
            "offset 4096 is not a multiple of the allocation granularity 2097152"
        );
        assert_eq!(e.code(), None);
        let e = Error::MissingEntryPoint {
            symbol: "cuMemCreate",
            driver_version: Some(DriverVersion {
                major: 13,
                minor: 0,
            }),
        };
        assert_eq!(
            e.to_string(),
            "the driver (version 13.0) does not export `cuMemCreate`"
        );
        let e = Error::Unsupported {
            feature: "fabric handles",
            device: 0,
        };
        assert_eq!(e.to_string(), "device 0 does not support fabric handles");
    }
}
