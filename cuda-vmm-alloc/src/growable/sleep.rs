//! Sleep and wake of one buffer: its chunks go back to the driver (or its pool), its
//! address range and length stay, and wake maps chunks of the same sizes at the same
//! offsets and restores the bytes.

use std::mem::size_of;
use std::time::Instant;

use super::GrowableBuffer;
use crate::caching::{Backup, SleepReport, WakeReport};
use crate::pod::DevicePod;
use crate::sleeping;
use crate::{Error, Result};

/// A sleeping buffer: the chunk sizes to map again, and the bytes backed up.
pub(crate) struct SleptBuffer {
    sizes: Vec<usize>,
    backed_up: usize,
}

impl<T: DevicePod> GrowableBuffer<T> {
    /// Refuses `operation` with [`Error::Asleep`] while the buffer sleeps.
    pub(crate) fn check_awake(&self, operation: &'static str) -> Result<()> {
        sleeping::check_awake(
            self.asleep.is_some(),
            || format!("buffer {}", self.id),
            operation,
        )
    }

    /// Whether the buffer sleeps.
    pub fn is_asleep(&self) -> bool {
        self.asleep.is_some()
    }

    /// Gives the buffer's physical memory back (its chunks to the driver, or to its pool),
    /// keeping its address range, length and capacity: waits for the device (a device
    /// synchronisation, as every unmap's contract), copies the `len()` elements to pinned
    /// host memory with [`Backup::Host`] (host memory kept for the next sleep unless
    /// [`set_keep_host_backup(false)`](Self::set_keep_host_backup)), and returns once the
    /// release is done. Prefetched steps are given back first. While asleep every call
    /// that touches the memory (growth, copies, views, access) is refused with
    /// [`Error::Asleep`]; [`ptr`](Self::ptr) stays, and a kernel using it faults.
    ///
    /// Refused, changing nothing, when asleep already, and for exportable memory (handle
    /// types in its properties: an importer may hold it). A failed backup leaves the buffer
    /// awake and intact.
    pub fn sleep(&mut self, backup: Backup) -> Result<SleepReport> {
        if self.asleep.is_some() {
            return Err(Error::InvalidRequest {
                message: format!("buffer {} is asleep already", self.id),
            });
        }
        crate::sleeping::refuse_exportable(&self.backing.props, "buffer")?;
        self.cancel_prefetch();
        let device = self.backing.device.clone();
        let mut report = SleepReport::default();
        sleeping::wait_for_device(&mut self.backing, &mut report)?;
        let bytes = self.len * size_of::<T>();
        if backup == Backup::Host && bytes > 0 {
            let plan = [(0, bytes, 0)];
            let sources = [(&self.backing.reservation, &plan[..])];
            self.host.back_up(&device, &sources, &mut report)?;
        }
        let start = Instant::now();
        let sizes: Vec<usize> = self.chunks.iter().map(|c| c.mapping.size()).collect();
        let chunks = std::mem::take(&mut self.chunks);
        if let Err((e, back)) = self.backing.release_chunks(chunks) {
            self.chunks = back;
            return Err(e);
        }
        sleeping::await_release(&device, &mut report);
        report.released_bytes = self.committed;
        report.release = start.elapsed();
        self.asleep = Some(SleptBuffer {
            sizes,
            backed_up: report.backed_up_bytes,
        });
        Ok(report)
    }

    /// Maps chunks of the same sizes at the same offsets again (granting access to the
    /// device and every peer granted before), restores the bytes backed up, and only then
    /// reports success. Refused, changing nothing, when not asleep. A failure (out of
    /// memory) leaves the buffer asleep with its backup: retry later.
    pub fn wake(&mut self) -> Result<WakeReport> {
        let Some(slept) = self.asleep.take() else {
            return Err(Error::InvalidRequest {
                message: format!("buffer {} is not asleep", self.id),
            });
        };
        let mut report = WakeReport::default();
        let start = Instant::now();
        let chunks = match self.backing.commit_run(0, &slept.sizes, false) {
            Ok(chunks) => chunks,
            Err(e) => {
                self.asleep = Some(slept);
                return Err(e);
            }
        };
        report.map = start.elapsed();
        report.mapped_bytes = slept.sizes.iter().sum();
        let start = Instant::now();
        if slept.backed_up > 0 {
            let plan = [(0, slept.backed_up, 0)];
            let restored =
                self.host
                    .restore(&self.backing.device, &self.backing.reservation, &plan);
            if let Err(e) = restored {
                self.backing.rollback(chunks);
                self.asleep = Some(slept);
                return Err(e);
            }
            report.restored_bytes = slept.backed_up;
        }
        report.restore = start.elapsed();
        self.chunks = chunks;
        if !self.host.keep {
            report.host_released_bytes = self.release_host_backup();
        }
        Ok(report)
    }

    /// Whether wake keeps the pinned host memory of the backup for the next sleep (the
    /// default) or gives it back.
    pub fn set_keep_host_backup(&mut self, keep: bool) {
        self.host.keep = keep;
    }

    /// Gives the backup's pinned host memory back when no backup uses it (the buffer is
    /// awake); returns the bytes given back.
    pub fn release_host_backup(&mut self) -> usize {
        self.host.release_unless_asleep(self.asleep.is_some())
    }
}
