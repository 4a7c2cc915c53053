//! The release worker: one thread per queue, started on demand, exiting when idle.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Entry, ReleaseQueue, WORKER_IDLE};
use crate::device::Device;

/// Starts the worker thread of `queue`; false if the thread could not be started (the
/// entries then wait for a caller: a flush, a mapping over them, or the bound).
pub(super) fn spawn(queue: &Arc<ReleaseQueue>) -> bool {
    let queue = queue.clone();
    let name = queue.name.clone();
    match std::thread::Builder::new()
        .name(name)
        .spawn(move || run(&queue))
    {
        Ok(_) => true,
        Err(e) => {
            tracing::error!("starting the release worker: {e}");
            false
        }
    }
}

/// Takes every queued entry as one batch and goes through it in order: waits for each
/// entry's events, finishes it at once when events are all it waits for, else keeps it for
/// the batch's fence; then fences each device the kept entries need once (all of the batch
/// was queued before the fence began) and finishes them in order. Exits after [`WORKER_IDLE`] with nothing queued.
fn run(queue: &Arc<ReleaseQueue>) {
    let mut cpu_seen = thread_cpu();
    let mut cpu_since = move || {
        let now = thread_cpu();
        let used = now.saturating_sub(cpu_seen);
        cpu_seen = now;
        used
    };
    // Set once the kept entries were retried in this idle spell.
    let mut retried_kept = false;
    loop {
        let batch: Vec<Arc<Entry>> = {
            let mut state = queue.state.lock();
            while state.entries.is_empty() {
                if queue.work.wait_for(&mut state, WORKER_IDLE).timed_out()
                    && state.entries.is_empty()
                {
                    if !retried_kept && !state.failed.is_empty() {
                        // Before exiting, give kept entries one more try: they may have
                        // no one left to flush them.
                        retried_kept = true;
                        drop(state);
                        queue.retry_kept();
                        state = queue.state.lock();
                        continue;
                    }
                    state.worker_running = false;
                    state.stats.worker_cpu += cpu_since();
                    return;
                }
            }
            retried_kept = false;
            let batch: Vec<_> = state.entries.drain(..).collect();
            state.running += batch.len();
            batch
        };
        let started = Instant::now();
        let mut fenced = Vec::new();
        let mut fence: Vec<Device> = Vec::new();
        for entry in batch {
            // Taken only now, so a caller that needs a later entry's addresses can complete
            // that entry itself meanwhile.
            let Some(mut work) = entry.take() else {
                // A caller is completing it (it needs the addresses), or has.
                drop(entry);
                queue.stop_running();
                continue;
            };
            let mut errors = Vec::new();
            Entry::wait_events(&mut work, &mut errors);
            if work.fence.is_empty() {
                // Events only: finished as soon as they completed.
                let waits = errors.len();
                let outcome = entry.finish(work, errors);
                queue.account(&entry, outcome, waits, false);
                drop(entry);
                queue.stop_running();
                continue;
            }
            for device in work.fence.drain(..) {
                if !fence.iter().any(|d| d.same_as(&device)) {
                    fence.push(device);
                }
            }
            fenced.push((entry, work, errors));
        }
        let mut fence_errors = Vec::new();
        for device in &fence {
            if let Err(e) = device.synchronize() {
                fence_errors.push(e);
            }
        }
        drop(fence);
        for (entry, work, mut errors) in fenced {
            // A fence's error is reported once, with the first entry that waited for it.
            errors.append(&mut fence_errors);
            let waits = errors.len();
            let outcome = entry.finish(work, errors);
            queue.account(&entry, outcome, waits, false);
            drop(entry);
            queue.stop_running();
        }
        let mut state = queue.state.lock();
        state.stats.worker_busy += started.elapsed();
        state.stats.worker_cpu += cpu_since();
    }
}

/// CPU time this thread has used.
fn thread_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}
