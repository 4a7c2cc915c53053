//! Background commit: a worker thread commits a buffer's next growth steps (create, map, set
//! access) past its committed memory before the caller needs them.
//!
//! The worker works on a shadow of the owner's [`Backing`] (the same reservation, device,
//! properties, pool and peers; its own counters) and hands each step back whole: the chunks,
//! or the error after the step rolled itself back, with the driver calls it made. The owner
//! takes a step only at the offset it asked for; anything else it rolls back, on its own
//! thread, through the usual unmap ordering.

use std::collections::VecDeque;
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::JoinHandle;

use cuda_vmm::Mapping;
use parking_lot::Mutex;

use crate::backing::{Backing, Chunk};
use crate::error::{Error, Result};
use crate::stats::DriverStats;
use crate::trace::Hex;

/// A step to commit: chunks of `sizes` bytes mapped back to back from `offset`, the first
/// at position `turn` of the owner's placement rotation.
struct Request {
    offset: usize,
    turn: usize,
    sizes: Vec<usize>,
}

/// A step the worker committed, or tried to.
pub(crate) struct Staged {
    /// Where the step starts in the reservation.
    pub(crate) offset: usize,
    /// Its size in bytes.
    pub(crate) bytes: usize,
    /// The owner's rotation position its first chunk was placed at: the owner adopts the
    /// step only while its own rotation stands there.
    pub(crate) turn: usize,
    /// The mapped chunks (with access set), or why the step failed (nothing kept then).
    pub(crate) chunks: Result<Vec<Chunk>>,
    /// Driver calls the step made, for the owner's statistics.
    pub(crate) stats: DriverStats,
    /// Mappings a failed step could not unmap, for the owner to retry.
    pub(crate) stranded: Vec<Mapping>,
}

/// Steps the worker may run ahead of the owner: the next one, and the one after it, so that
/// a step's commit overlaps the caller's work on two steps (small early steps hide behind
/// little host work).
pub(crate) const DEPTH: usize = 2;

/// One owner's worker thread; at most [`DEPTH`] steps asked for and not collected.
pub(crate) struct Prefetcher {
    requests: Option<Sender<Request>>,
    /// Behind a lock only so that the buffer owning this stays `Sync` (a `Receiver` is not);
    /// used through `&mut self` alone (`get_mut`), never locked.
    staged: Mutex<Receiver<Staged>>,
    worker: Option<JoinHandle<()>>,
    /// End offsets and end rotation positions of the steps asked for and not collected yet,
    /// oldest first.
    queued: VecDeque<(usize, usize)>,
    /// Steps that may be asked for and not collected at once.
    depth: usize,
}

impl Prefetcher {
    /// Starts a worker committing through `shadow`, [`DEPTH`] steps ahead at most.
    pub(crate) fn start(shadow: Backing) -> Result<Prefetcher> {
        Prefetcher::start_with_depth(shadow, DEPTH)
    }

    /// Starts a worker committing through `shadow`, `depth` steps ahead at most.
    pub(crate) fn start_with_depth(shadow: Backing, depth: usize) -> Result<Prefetcher> {
        let (requests, inbox) = mpsc::channel::<Request>();
        let (outbox, staged) = mpsc::channel::<Staged>();
        let worker = std::thread::Builder::new()
            .name("cuda-vmm-prefetch".into())
            .spawn(move || work(shadow, &inbox, &outbox))
            .map_err(|e| Error::Worker {
                message: e.to_string(),
            })?;
        Ok(Prefetcher {
            requests: Some(requests),
            staged: Mutex::new(staged),
            worker: Some(worker),
            queued: VecDeque::new(),
            depth,
        })
    }

    /// Steps asked for and not collected.
    pub(crate) fn queued(&self) -> usize {
        self.queued.len()
    }

    /// Where the last step asked for ends, if any is queued: its end offset and the
    /// rotation position after its chunks.
    pub(crate) fn edge(&self) -> Option<(usize, usize)> {
        self.queued.back().copied()
    }

    /// Asks for chunks of `sizes` at `offset`, the first placed at rotation position `turn`
    /// (the owner's rotation is the only one: the worker keeps none of its own), unless
    /// the depth's worth of steps are queued. True if asked.
    pub(crate) fn request(&mut self, offset: usize, turn: usize, sizes: Vec<usize>) -> bool {
        if self.queued.len() >= self.depth || sizes.is_empty() {
            return false;
        }
        let end = offset + sizes.iter().sum::<usize>();
        let turn_end = turn.wrapping_add(sizes.len());
        let sent = self.requests.as_ref().is_some_and(|tx| {
            tx.send(Request {
                offset,
                turn,
                sizes,
            })
            .is_ok()
        });
        if sent {
            self.queued.push_back((end, turn_end));
        }
        sent
    }

    /// The oldest queued step if the worker has finished it, without waiting.
    pub(crate) fn try_collect(&mut self) -> Option<Staged> {
        if self.queued.is_empty() {
            return None;
        }
        let staged = self.staged.get_mut().try_recv().ok()?;
        self.queued.pop_front();
        Some(staged)
    }

    /// The oldest queued step, waiting for the worker to finish it; `None` if none is queued
    /// (or the worker is gone).
    pub(crate) fn collect(&mut self) -> Option<Staged> {
        self.queued.pop_front()?;
        self.staged.get_mut().recv().ok()
    }
}

impl Drop for Prefetcher {
    fn drop(&mut self) {
        // Closing the channel ends the worker's loop once its step is done.
        self.requests = None;
        if let Some(worker) = self.worker.take() {
            if worker.join().is_err() {
                tracing::error!("the prefetch worker panicked");
            }
        }
        // A step nobody collected: its chunks unmap (after the usual wait) and release as
        // they drop.
        for staged in self.staged.get_mut().try_iter() {
            if staged.chunks.is_ok() {
                tracing::warn!(
                    "dropping an uncollected prefetched step at offset {}",
                    staged.offset
                );
            }
        }
    }
}

/// The worker's loop: commits each requested step and hands it back.
fn work(mut shadow: Backing, inbox: &Receiver<Request>, outbox: &Sender<Staged>) {
    for Request {
        offset,
        turn,
        sizes,
    } in inbox
    {
        let span = tracing::debug_span!(
            "prefetch",
            address = %Hex(shadow.reservation.ptr() + offset as u64),
            size = sizes.iter().sum::<usize>(),
        )
        .entered();
        // Placed where the owner's rotation will stand when it adopts the step.
        shadow.homes.set_position(turn);
        let chunks = shadow.commit_run(offset, &sizes, false);
        drop(span);
        let staged = Staged {
            offset,
            bytes: sizes.iter().sum(),
            turn,
            chunks,
            stats: std::mem::take(&mut shadow.stats),
            stranded: std::mem::take(&mut shadow.stranded),
        };
        if outbox.send(staged).is_err() {
            // The owner is gone; the step's chunks drop with the message.
            return;
        }
    }
}
