//! What sleep and wake take and report.

use std::time::Duration;

use serde::Serialize;

/// What [`sleep`](super::CachingAllocator::sleep) does with the bytes of the blocks it puts
/// to sleep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backup {
    /// Copy the blocks handed out to pinned host memory first; `wake` copies them back.
    Host,
    /// Drop the bytes: after `wake` the blocks hold whatever the new pages hold (a KV
    /// cache that will be recomputed, scratch memory).
    Discard,
}

/// What one sleep did, with the time of each step.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SleepReport {
    /// Physical memory given back to the driver.
    pub released_bytes: usize,
    /// Bytes of blocks copied to host memory (0 for [`Backup::Discard`]).
    pub backed_up_bytes: usize,
    /// Host memory newly pinned for this backup (0 when the kept arena was large enough).
    pub host_prepared_bytes: usize,
    /// Waiting for the device work on the memory (a device synchronisation).
    pub wait: Duration,
    /// Pinning host memory for the backup.
    pub host_prepare: Duration,
    /// The backup copies.
    pub backup: Duration,
    /// Unmapping and releasing the pages, until the driver has the memory back.
    pub release: Duration,
    /// Set when a release failed after the point of no return (the tags are asleep, but
    /// some pages are still queued for release, retried by the release queue; see
    /// `Cuda::flush_releases`): the error, as text.
    pub release_error: Option<String>,
}

/// What one wake did, with the time of each step.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct WakeReport {
    /// Physical memory mapped again.
    pub mapped_bytes: usize,
    /// Bytes copied back from host memory.
    pub restored_bytes: usize,
    /// Host backup memory given back after the wake (`keep_host_backup: false`).
    pub host_released_bytes: usize,
    /// Creating, mapping and granting access to the pages.
    pub map: Duration,
    /// The restore copies.
    pub restore: Duration,
}
