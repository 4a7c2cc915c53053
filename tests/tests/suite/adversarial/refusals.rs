//! Class 4 and 5: refusals change nothing.
