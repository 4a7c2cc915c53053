//! One `sleep(tags)` over every owner of a tag: caching allocators (their tags), buffers and
//! sparse arrays (shared behind a mutex so the group can reach them).

use std::sync::{Arc, Mutex, Weak};

use crate::caching::allocator::Inner;
use crate::caching::{Backup, CachingAllocator, SleepReport, WakeReport};
use crate::pod::DevicePod;
use crate::{Error, GrowableBuffer, Result, SparseArray};

/// What the group can do with one member.
trait Member: Send + Sync {
    /// Whether the owner still exists.
    fn alive(&self) -> bool;
    /// `None` when the owner is gone.
    fn sleep(&self, tag: &str, backup: Backup) -> Option<Result<SleepReport>>;
    fn wake(&self, tag: &str) -> Option<Result<WakeReport>>;
}

struct Allocator(Weak<Inner>);

impl Member for Allocator {
    fn alive(&self) -> bool {
        self.0.strong_count() > 0
    }

    fn sleep(&self, tag: &str, backup: Backup) -> Option<Result<SleepReport>> {
        let a = CachingAllocator::from_inner(self.0.upgrade()?);
        Some(a.sleep(&[tag], backup))
    }

    fn wake(&self, tag: &str) -> Option<Result<WakeReport>> {
        let a = CachingAllocator::from_inner(self.0.upgrade()?);
        Some(a.wake(&[tag]))
    }
}

/// A buffer or sparse array behind its mutex.
struct Locked<S>(Weak<Mutex<S>>);

/// Sleep and wake of a structure the group holds behind a mutex.
trait Sleeps {
    fn sleep_now(&mut self, backup: Backup) -> Result<SleepReport>;
    fn wake_now(&mut self) -> Result<WakeReport>;
}

impl<T: DevicePod> Sleeps for GrowableBuffer<T> {
    fn sleep_now(&mut self, backup: Backup) -> Result<SleepReport> {
        self.sleep(backup)
    }
    fn wake_now(&mut self) -> Result<WakeReport> {
        self.wake()
    }
}

impl<T: DevicePod> Sleeps for SparseArray<T> {
    fn sleep_now(&mut self, backup: Backup) -> Result<SleepReport> {
        self.sleep(backup)
    }
    fn wake_now(&mut self) -> Result<WakeReport> {
        self.wake()
    }
}

fn poisoned() -> Error {
    Error::InvalidRequest {
        message: "a member's mutex is poisoned (a thread panicked holding it)".into(),
    }
}

impl<S: Sleeps + Send> Member for Locked<S> {
    fn alive(&self) -> bool {
        self.0.strong_count() > 0
    }

    fn sleep(&self, _tag: &str, backup: Backup) -> Option<Result<SleepReport>> {
        let owner = self.0.upgrade()?;
        let result = match owner.lock() {
            Ok(mut s) => s.sleep_now(backup),
            Err(_) => Err(poisoned()),
        };
        Some(result)
    }

    fn wake(&self, _tag: &str) -> Option<Result<WakeReport>> {
        let owner = self.0.upgrade()?;
        let result = match owner.lock() {
            Ok(mut s) => s.wake_now(),
            Err(_) => Err(poisoned()),
        };
        Some(result)
    }
}

struct Entry {
    tag: String,
    member: Box<dyn Member>,
    /// The backup of its current sleep, to put it back to sleep as it was.
    slept: Option<Backup>,
}

/// The owners of each tag, put to sleep and woken together (as `torch_memory_saver`'s
/// `pause(tag)`/`resume(tag)`). Holds its members weakly: dropping an owner removes it.
///
/// All or nothing: when one member of a sleep fails, the members this call put to sleep
/// are woken again and the error is returned; when one member of a wake fails, the members
/// this call woke are put back to sleep (with their backup) and the tags stay asleep.
#[derive(Default)]
pub struct SleepGroup {
    entries: Mutex<Vec<Entry>>,
}

impl std::fmt::Debug for SleepGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let count = self.entries.lock().map_or(0, |e| e.len());
        f.debug_struct("SleepGroup")
            .field("members", &count)
            .finish()
    }
}

impl SleepGroup {
    /// An empty group.
    pub fn new() -> SleepGroup {
        SleepGroup::default()
    }

    fn add(&self, tag: &str, member: Box<dyn Member>) -> Result<()> {
        let mut entries = self.entries.lock().map_err(|_| poisoned())?;
        entries.push(Entry {
            tag: tag.to_owned(),
            member,
            slept: None,
        });
        Ok(())
    }

    /// Adds `allocator`'s blocks of `tag` (see [`CachingAllocator::alloc_tagged`]).
    pub fn add_allocator(&self, tag: &str, allocator: &CachingAllocator) -> Result<()> {
        self.add(tag, Box::new(Allocator(Arc::downgrade(allocator.inner()))))
    }

    /// Adds a buffer, shared behind a mutex, under `tag`.
    pub fn add_buffer<T: DevicePod + Send>(
        &self,
        tag: &str,
        buffer: &Arc<Mutex<GrowableBuffer<T>>>,
    ) -> Result<()> {
        self.add(tag, Box::new(Locked(Arc::downgrade(buffer))))
    }

    /// Adds a sparse array, shared behind a mutex, under `tag`.
    pub fn add_array<T: DevicePod + Send>(
        &self,
        tag: &str,
        array: &Arc<Mutex<SparseArray<T>>>,
    ) -> Result<()> {
        self.add(tag, Box::new(Locked(Arc::downgrade(array))))
    }

    /// Puts every member of `tags` to sleep with `backup`; the reports summed.
    pub fn sleep(&self, tags: &[&str], backup: Backup) -> Result<SleepReport> {
        let mut entries = self.entries.lock().map_err(|_| poisoned())?;
        entries.retain(|e| e.member.alive());
        let mut total = SleepReport::default();
        let mut done: Vec<usize> = Vec::new();
        for i in 0..entries.len() {
            if !tags.contains(&entries[i].tag.as_str()) {
                continue;
            }
            match entries[i].member.sleep(&entries[i].tag, backup) {
                None => continue,
                Some(Ok(r)) => {
                    add_sleep(&mut total, &r);
                    entries[i].slept = Some(backup);
                    done.push(i);
                }
                Some(Err(e)) => {
                    for &j in done.iter().rev() {
                        if let Some(Err(undo)) = entries[j].member.wake(&entries[j].tag) {
                            tracing::error!("waking a member after a failed group sleep: {undo}");
                        }
                        entries[j].slept = None;
                    }
                    return Err(e);
                }
            }
        }
        Ok(total)
    }

    /// Wakes every member of `tags` that sleeps; the reports summed.
    pub fn wake(&self, tags: &[&str]) -> Result<WakeReport> {
        let mut entries = self.entries.lock().map_err(|_| poisoned())?;
        let mut total = WakeReport::default();
        let mut done: Vec<usize> = Vec::new();
        for i in 0..entries.len() {
            if !tags.contains(&entries[i].tag.as_str()) || entries[i].slept.is_none() {
                continue;
            }
            match entries[i].member.wake(&entries[i].tag) {
                None => continue,
                Some(Ok(r)) => {
                    add_wake(&mut total, &r);
                    done.push(i);
                }
                Some(Err(e)) => {
                    for &j in done.iter().rev() {
                        let backup = entries[j].slept.unwrap_or(Backup::Host);
                        if let Some(Err(undo)) = entries[j].member.sleep(&entries[j].tag, backup) {
                            tracing::error!(
                                "putting a member back to sleep after a failed wake: {undo}"
                            );
                        }
                    }
                    return Err(e);
                }
            }
        }
        for i in done {
            entries[i].slept = None;
        }
        Ok(total)
    }
}

fn add_sleep(total: &mut SleepReport, r: &SleepReport) {
    total.released_bytes += r.released_bytes;
    total.backed_up_bytes += r.backed_up_bytes;
    total.host_prepared_bytes += r.host_prepared_bytes;
    total.wait += r.wait;
    total.host_prepare += r.host_prepare;
    total.backup += r.backup;
    total.release += r.release;
    if total.release_error.is_none() {
        total.release_error.clone_from(&r.release_error);
    }
}

fn add_wake(total: &mut WakeReport, r: &WakeReport) {
    total.mapped_bytes += r.mapped_bytes;
    total.restored_bytes += r.restored_bytes;
    total.host_released_bytes += r.host_released_bytes;
    total.map += r.map;
    total.restore += r.restore;
}
