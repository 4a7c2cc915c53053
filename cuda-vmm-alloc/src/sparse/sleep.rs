//! Sleep and wake of one sparse array: its committed tiles go back to the driver (or its
//! pool), its spares are released, and wake commits the same tiles again and restores
//! their bytes. Holes (and their zero blocks) stay as they are.

use std::ops::Range;
use std::time::Instant;

use super::{tiles, Chunk, SparseArray};
use crate::caching::{Backup, SleepReport, WakeReport};
use crate::pod::DevicePod;
use crate::sleeping;
use crate::{Error, Result};

/// A sleeping array: the runs of tiles to commit again, where their bytes went, and
/// whether the background spares worker ran.
pub(crate) struct SleptArray {
    runs: Vec<Range<usize>>,
    /// `(byte offset, len, host offset)` per run backed up.
    backup: Vec<(usize, usize, usize)>,
    ahead: bool,
}

impl<T: DevicePod> SparseArray<T> {
    /// Refuses `operation` with [`Error::Asleep`] while the array sleeps.
    pub(crate) fn check_awake(&self, operation: &'static str) -> Result<()> {
        sleeping::check_awake(
            self.asleep.is_some(),
            || format!("sparse array at {:#x}", self.backing.reservation.ptr()),
            operation,
        )
    }

    /// Whether the array sleeps.
    pub fn is_asleep(&self) -> bool {
        self.asleep.is_some()
    }

    /// Gives the committed tiles' physical memory back (to the driver, or to the pool) and
    /// releases the spare tiles, keeping the address range: waits for the device (a device
    /// synchronisation), copies the committed tiles to pinned host memory with
    /// [`Backup::Host`] (kept for the next sleep), and returns once the release is done.
    /// The background spares worker is stopped (and restarted by wake). While asleep every
    /// call that touches the memory is refused with [`Error::Asleep`], and
    /// [`is_committed`](Self::is_committed) reads false.
    ///
    /// Refused, changing nothing, when asleep already, and for exportable memory (handle
    /// types in its properties: an importer may hold it). A failed backup leaves the array
    /// awake and intact.
    pub fn sleep(&mut self, backup: Backup) -> Result<SleepReport> {
        if self.asleep.is_some() {
            return Err(Error::InvalidRequest {
                message: "the sparse array is asleep already".into(),
            });
        }
        crate::sleeping::refuse_exportable(&self.backing.props, "sparse array")?;
        let ahead = self.stop_ahead().is_some();
        let result = self.sleep_now(backup, ahead);
        if result.is_err() && ahead {
            self.restart_ahead();
        }
        result
    }

    fn sleep_now(&mut self, backup: Backup, ahead: bool) -> Result<SleepReport> {
        self.release_spares()?;
        let device = self.backing.device.clone();
        let mut report = SleepReport::default();
        sleeping::wait_for_device(&mut self.backing, &mut report)?;
        let tile = self.tile_bytes;
        let runs = tiles::runs(self.committed.keys().copied());
        let mut plan = Vec::new();
        if backup == Backup::Host {
            let mut at = 0;
            for run in &runs {
                let len = run.len() * tile;
                plan.push((run.start * tile, len, at));
                at += len;
            }
            if at > 0 {
                let sources = [(&self.backing.reservation, &plan[..])];
                self.host.back_up(&device, &sources, &mut report)?;
            }
        }
        let start = Instant::now();
        let chunks: Vec<Chunk> = std::mem::take(&mut self.committed).into_values().collect();
        report.released_bytes = chunks.len() * tile;
        if let Err((e, kept)) = self.backing.release_chunks(chunks) {
            for chunk in kept {
                self.committed.insert(chunk.offset() / tile, chunk);
            }
            return Err(e);
        }
        sleeping::await_release(&device, &mut report);
        report.release = start.elapsed();
        self.asleep = Some(SleptArray {
            runs,
            backup: plan,
            ahead,
        });
        Ok(report)
    }

    /// Commits the tiles that were committed when it fell asleep (access for the device and
    /// every peer granted before), restores their bytes, restarts the background spares
    /// worker if it ran, and only then reports success. Refused, changing nothing, when not
    /// asleep. A failure (out of memory) leaves the array asleep with its backup: retry.
    pub fn wake(&mut self) -> Result<WakeReport> {
        let Some(slept) = self.asleep.take() else {
            return Err(Error::InvalidRequest {
                message: "the sparse array is not asleep".into(),
            });
        };
        let tile = self.tile_bytes;
        let mut report = WakeReport::default();
        let start = Instant::now();
        let mut done: Vec<(Range<usize>, Vec<Chunk>)> = Vec::new();
        let mut failed = None;
        for run in &slept.runs {
            match self
                .backing
                .commit_run(run.start * tile, &vec![tile; run.len()], false)
            {
                Ok(chunks) => done.push((run.clone(), chunks)),
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        report.map = start.elapsed();
        let start = Instant::now();
        if failed.is_none() && !slept.backup.is_empty() {
            failed = self
                .host
                .reservation()
                .and_then(|host| {
                    for &(offset, len, at) in &slept.backup {
                        host.copy_to(
                            at,
                            &self.backing.reservation,
                            offset,
                            len,
                            &self.backing.device,
                        )?;
                    }
                    Ok(())
                })
                .err();
        }
        report.restore = start.elapsed();
        if let Some(e) = failed {
            for (_, chunks) in done.into_iter().rev() {
                self.backing.rollback(chunks);
            }
            self.asleep = Some(slept);
            return Err(e);
        }
        for (run, chunks) in done {
            report.mapped_bytes += chunks.len() * tile;
            for (t, chunk) in run.zip(chunks) {
                self.committed.insert(t, chunk);
            }
        }
        report.restored_bytes = slept.backup.iter().map(|b| b.1).sum();
        self.backing.note_committed(self.committed.len() * tile);
        if slept.ahead {
            self.restart_ahead();
        }
        if !self.host.keep {
            report.host_released_bytes = self.host.truncate(0);
        }
        Ok(report)
    }

    /// Whether wake keeps the pinned host memory of the backup for the next sleep (the
    /// default) or gives it back.
    pub fn set_keep_host_backup(&mut self, keep: bool) {
        self.host.keep = keep;
    }

    /// Gives the backup's pinned host memory back when the array is awake; returns the
    /// bytes given back.
    pub fn release_host_backup(&mut self) -> usize {
        self.host.release_unless_asleep(self.asleep.is_some())
    }
}
