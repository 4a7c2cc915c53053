//! Shared helpers for the integration and conformance suites.
