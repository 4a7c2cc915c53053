//! What the sleep and wake of a buffer and of a sparse array share: the refusal of
//! exportable memory, the wait before, the release after, and the host arena the backups go
//! to (kept between sleeps unless told otherwise).

use std::time::{Duration, Instant};

use cuda_vmm::{AllocationProps, Device, Reservation};

use crate::backing::Backing;
use crate::caching::host_arena::HostArena;
use crate::caching::SleepReport;
use crate::{Error, Result};

/// A run backed up: `(offset in its source, len, offset in the host arena)`.
pub(crate) type Run = (usize, usize, usize);

/// How long a sleep waits for the releases it queued.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(30);

/// Refuses to put exportable memory to sleep: an importer may still map its chunks, which
/// would then not go back to the driver, and after wake its mapping would see other memory.
pub(crate) fn refuse_exportable(props: &AllocationProps, what: &str) -> Result<()> {
    let handles = props.requested_handle_types();
    if handles.is_empty() {
        return Ok(());
    }
    Err(Error::InvalidRequest {
        message: format!(
            "the {what}'s memory is exportable ({handles:?}): an importer may hold it, so it \
             cannot sleep"
        ),
    })
}

/// Refuses `operation` with [`Error::Asleep`] (naming the structure `what()`) while
/// `asleep`.
pub(crate) fn check_awake(
    asleep: bool,
    what: impl FnOnce() -> String,
    operation: &'static str,
) -> Result<()> {
    if asleep {
        return Err(Error::Asleep {
            tag: what(),
            operation,
        });
    }
    Ok(())
}

/// Waits for the device (a synchronisation: every unmap's contract), for queued releases,
/// and for mappings a failed rollback left; timed into `report.wait`.
pub(crate) fn wait_for_device(backing: &mut Backing, report: &mut SleepReport) -> Result<()> {
    let start = Instant::now();
    backing.device.synchronize()?;
    if let Err(e) = backing.device.cuda().flush_releases(FLUSH_TIMEOUT) {
        tracing::warn!("flushing releases before a sleep: {e}");
    }
    backing.retry_stranded()?;
    report.wait = start.elapsed();
    Ok(())
}

/// Waits for the releases a sleep queued, past its point of no return: a failure is
/// reported in `report.release_error`, not returned.
pub(crate) fn await_release(device: &Device, report: &mut SleepReport) {
    match device.cuda().flush_releases(FLUSH_TIMEOUT) {
        Ok(true) => {}
        Ok(false) => report.release_error = Some("releases still queued after the timeout".into()),
        Err(e) => report.release_error = Some(e.to_string()),
    }
}

/// A structure's host arena for its sleep backups, created on first use, kept between
/// sleeps unless told otherwise.
pub(crate) struct KeptArena {
    pub(crate) arena: Option<HostArena>,
    pub(crate) keep: bool,
}

impl KeptArena {
    pub(crate) fn new() -> KeptArena {
        KeptArena {
            arena: None,
            keep: true,
        }
    }

    /// The arena, created for `device` on first use, holding at least `bytes`; returns it
    /// with the bytes newly pinned. A failure leaves it as it was.
    pub(crate) fn ensure(&mut self, device: &Device, bytes: usize) -> Result<(&HostArena, usize)> {
        if self.arena.is_none() {
            self.arena = Some(HostArena::new(device)?);
        }
        let arena = self.arena.as_mut().ok_or_else(|| Error::InvalidConfig {
            message: "no host arena".into(),
        })?;
        let before = arena.bytes();
        arena.ensure(bytes)?;
        let grown = arena.bytes() - before;
        Ok((arena, grown))
    }

    /// The arena's reservation, once it holds memory.
    pub(crate) fn reservation(&self) -> Result<&Reservation> {
        self.arena
            .as_ref()
            .and_then(HostArena::reservation)
            .ok_or_else(|| Error::InvalidConfig {
                message: "a backup without host memory".into(),
            })
    }

    /// Bytes of host memory held.
    pub(crate) fn bytes(&self) -> usize {
        self.arena.as_ref().map_or(0, HostArena::bytes)
    }

    /// Gives the host memory back unless a backup asleep uses it; the bytes given back.
    pub(crate) fn release_unless_asleep(&mut self, asleep: bool) -> usize {
        if asleep {
            return 0;
        }
        self.truncate(0)
    }

    /// Gives back host allocations past `keep` bytes; the bytes given back.
    pub(crate) fn truncate(&mut self, keep: usize) -> usize {
        self.arena.as_mut().map_or(0, |a| a.truncate(keep))
    }
}

impl KeptArena {
    /// Copies each source's runs (`(offset in the source, len, offset in the arena)`)
    /// into the arena, grown first to hold the last run; timed and counted into `report`.
    /// A failure gives back what the arena grew by.
    pub(crate) fn back_up(
        &mut self,
        device: &Device,
        sources: &[(&Reservation, &[Run])],
        report: &mut SleepReport,
    ) -> Result<()> {
        let runs = || sources.iter().flat_map(|(_, plan)| plan.iter());
        let end = runs().map(|&(_, len, at)| at + len).max().unwrap_or(0);
        if runs().all(|r| r.1 == 0) {
            return Ok(());
        }
        let start = Instant::now();
        let before = self.arena.as_ref().map_or(0, HostArena::bytes);
        let (arena, grown) = self.ensure(device, end)?;
        report.host_prepared_bytes = grown;
        report.host_prepare = start.elapsed();
        let start = Instant::now();
        let copied = (|| -> Result<()> {
            let host = arena.reservation().ok_or_else(|| Error::InvalidConfig {
                message: "a host arena without memory".into(),
            })?;
            for (src, plan) in sources {
                for &(offset, len, at) in plan.iter() {
                    src.copy_to(offset, host, at, len, device)?;
                }
            }
            Ok(())
        })();
        report.backup = start.elapsed();
        if let Err(e) = copied {
            self.truncate(before);
            return Err(e);
        }
        report.backed_up_bytes = runs().map(|r| r.1).sum();
        Ok(())
    }

    /// Copies `plan`'s runs back from the arena into `dst`.
    pub(crate) fn restore(
        &self,
        device: &Device,
        dst: &Reservation,
        plan: &[(usize, usize, usize)],
    ) -> Result<()> {
        let host = self.reservation()?;
        for &(offset, len, at) in plan {
            host.copy_to(at, dst, offset, len, device)?;
        }
        Ok(())
    }
}
