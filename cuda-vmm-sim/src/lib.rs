//! A CPU simulator of the CUDA driver's VMM API.
#![warn(missing_docs)]
