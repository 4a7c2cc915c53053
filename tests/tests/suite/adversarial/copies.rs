//! Class 1: caller host memory is never touched after a call returns.
