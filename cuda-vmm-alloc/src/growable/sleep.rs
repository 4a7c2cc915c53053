//! Sleep and wake of one buffer: its chunks go back to the driver (or its pool), its
//! address range and length stay, and wake maps chunks of the same sizes at the same
//! offsets and restores the bytes.

use std::mem::size_of;
use std::time::{Duration, Instant};

use super::GrowableBuffer;
use crate::caching::host_arena::HostArena;
use crate::caching::{Backup, SleepReport, WakeReport};
use crate::pod::DevicePod;
use crate::{Error, Result};

/// How long a sleep waits for the releases it queued.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(30);

/// A sleeping buffer: the chunk sizes to map again, and the bytes backed up.
pub(crate) struct SleptBuffer {
    sizes: Vec<usize>,
    backed_up: usize,
}

impl<T: DevicePod> GrowableBuffer<T> {
    /// Refuses `operation` with [`Error::Asleep`] while the buffer sleeps.
    pub(crate) fn check_awake(&self, operation: &'static str) -> Result<()> {
        match self.asleep {
            Some(_) => Err(Error::Asleep {
                tag: format!("buffer {}", self.id),
                operation,
            }),
            None => Ok(()),
        }
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
        let handles = self.backing.props.requested_handle_types();
        if !handles.is_empty() {
            // An importer may still map the chunks: released, they would not go back to
            // the driver, and after wake its mapping would see other memory.
            return Err(Error::InvalidRequest {
                message: format!(
                    "the buffer's memory is exportable ({handles:?}): an importer may hold it, \
                     so it cannot sleep"
                ),
            });
        }
        self.cancel_prefetch();
        let device = self.backing.device.clone();
        let mut report = SleepReport::default();
        let start = Instant::now();
        device.synchronize()?;
        if let Err(e) = device.cuda().flush_releases(FLUSH_TIMEOUT) {
            tracing::warn!("flushing releases before a sleep: {e}");
        }
        self.backing.retry_stranded()?;
        report.wait = start.elapsed();
        let bytes = self.len * size_of::<T>();
        if backup == Backup::Host && bytes > 0 {
            self.back_up(bytes, &mut report)?;
        }
        let start = Instant::now();
        let sizes: Vec<usize> = self.chunks.iter().map(|c| c.mapping.size()).collect();
        let chunks = std::mem::take(&mut self.chunks);
        if let Err((e, back)) = self.backing.release_chunks(chunks) {
            self.chunks = back;
            return Err(e);
        }
        match device.cuda().flush_releases(FLUSH_TIMEOUT) {
            Ok(true) => {}
            Ok(false) => {
                report.release_error = Some("releases still queued after the timeout".into());
            }
            Err(e) => report.release_error = Some(e.to_string()),
        }
        report.released_bytes = self.committed;
        report.release = start.elapsed();
        self.asleep = Some(SleptBuffer {
            sizes,
            backed_up: report.backed_up_bytes,
        });
        Ok(report)
    }

    fn back_up(&mut self, bytes: usize, report: &mut SleepReport) -> Result<()> {
        let device = self.backing.device.clone();
        let start = Instant::now();
        let before = self.host.arena.as_ref().map_or(0, HostArena::bytes);
        let (arena, grown) = self.host.ensure(&device, bytes)?;
        report.host_prepared_bytes = grown;
        report.host_prepare = start.elapsed();
        let start = Instant::now();
        let copied = match arena.reservation() {
            Some(host) => self
                .backing
                .reservation
                .copy_to(0, host, 0, bytes, &device)
                .map_err(Error::from),
            None => Err(Error::InvalidConfig {
                message: "a host arena without memory".into(),
            }),
        };
        report.backup = start.elapsed();
        if let Err(e) = copied {
            self.host.truncate(before);
            return Err(e);
        }
        report.backed_up_bytes = bytes;
        Ok(())
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
            let restored = self.host.reservation().and_then(|host| {
                Ok(host.copy_to(
                    0,
                    &self.backing.reservation,
                    0,
                    slept.backed_up,
                    &self.backing.device,
                )?)
            });
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
        if self.asleep.is_some() {
            return 0;
        }
        self.host.truncate(0)
    }
}
