//! Growable buffers, sparse arrays and a physical chunk pool.
#![warn(missing_docs)]
