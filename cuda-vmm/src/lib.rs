//! Safe wrappers over the CUDA driver's virtual memory management API.
#![warn(missing_docs)]
