//! Registration hooks (issue 19): a fake registrar registers what becomes accessible and
//! deregisters before each unmap; it checks the order (no range is unmapped while
//! registered, no registration outlives its memory), on which thread each hook runs, and
//! that a hold keeps an unmap waiting until its owner confirms, queued or inline.
//!
//! Each test opens a `Cuda` of its own (hooks belong to one `Cuda`).

use std::sync::mpsc;
use std::sync::{Arc, Mutex as StdMutex};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use cuda_vmm::hooks::{MappedRange, MappingHooks, UnmapGate, UnmapHold};
use cuda_vmm::{AccessFlags, Cuda, Device};
use cuda_vmm_alloc::{BufferConfig, GrowableBuffer, GrowthPolicy, SparseArray, SparseConfig};
use cuda_vmm_tests::helpers::{gran, TestResult};

const FLUSH: Duration = Duration::from_secs(60);
/// How long an unmap that must stay held is watched.
const HELD_FOR: Duration = Duration::from_millis(200);

/// What the registrar saw, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Seen {
    Registered(MappedRange),
    Deregistered(MappedRange),
}

/// A fake registrar: registrations are the ranges made accessible; each unmap must fall
/// inside a range once registered; a registration overlapping it is dropped then (as a
/// registrar drops a whole region when part of its memory is about to go). With `hold_to`, it holds each unmap and sends the hold to an owner.
#[derive(Default)]
struct Registrar {
    registered: StdMutex<Vec<MappedRange>>,
    log: StdMutex<Vec<Seen>>,
    threads: StdMutex<Vec<(&'static str, ThreadId)>>,
    hold_to: StdMutex<Option<mpsc::Sender<UnmapHold>>>,
    /// Every range ever registered: an unmap outside all of them is a stray.
    ever: StdMutex<Vec<MappedRange>>,
    strays: StdMutex<Vec<MappedRange>>,
}

impl MappingHooks for Registrar {
    fn accessible(&self, range: &MappedRange, access: &[(usize, AccessFlags)]) {
        assert!(access
            .iter()
            .any(|&(d, a)| d == range.device && a == AccessFlags::ReadWrite));
        self.threads
            .lock()
            .expect("lock")
            .push(("accessible", std::thread::current().id()));
        let mut registered = self.registered.lock().expect("lock");
        registered.retain(|r| !overlaps(r, range)); // a new grant replaces an old one
        registered.push(*range);
        self.ever.lock().expect("lock").push(*range);
        self.log
            .lock()
            .expect("lock")
            .push(Seen::Registered(*range));
    }

    fn unmapping(&self, range: &MappedRange, gate: &UnmapGate) {
        self.threads
            .lock()
            .expect("lock")
            .push(("unmapping", std::thread::current().id()));
        self.registered
            .lock()
            .expect("lock")
            .retain(|r| !overlaps(r, range));
        let inside = |r: &MappedRange| {
            r.ptr <= range.ptr && range.ptr + range.size as u64 <= r.ptr + r.size as u64
        };
        if !self.ever.lock().expect("lock").iter().any(inside) {
            self.strays.lock().expect("lock").push(*range);
        }
        self.log
            .lock()
            .expect("lock")
            .push(Seen::Deregistered(*range));
        if let Some(owner) = &*self.hold_to.lock().expect("lock") {
            owner.send(gate.hold()).expect("owner");
        }
    }
}

fn overlaps(a: &MappedRange, b: &MappedRange) -> bool {
    a.ptr < b.ptr + b.size as u64 && b.ptr < a.ptr + a.size as u64
}

fn own_cuda() -> Result<(Cuda, Device), Box<dyn std::error::Error>> {
    crate::cuda()?; // prints the backend once
    let cuda = Cuda::new()?;
    let device = cuda.device(0)?;
    Ok((cuda, device))
}

fn drained(cuda: &Cuda) -> TestResult {
    assert!(cuda.flush_releases(FLUSH)?, "the queue did not drain");
    assert!(cuda.take_release_errors().is_empty());
    Ok(())
}

#[test]
fn every_registration_is_dropped_before_its_memory_is_unmapped() -> TestResult {
    let _memory = crate::memory_shared();
    let (cuda, d) = own_cuda()?;
    let g = gran(&d)?;
    let registrar = Arc::new(Registrar::default());
    let id = cuda.add_mapping_hooks(registrar.clone());
    let me = std::thread::current().id();
    {
        let mut a = SparseArray::<u8>::new(&d, 8 * g, SparseConfig::default())?;
        a.commit(0..3 * g)?; // one run: one grant over three tiles
        a.commit(5 * g..6 * g)?;
        let base = a.ptr();
        let log = registrar.log.lock().expect("lock").clone();
        assert_eq!(
            log,
            [
                Seen::Registered(MappedRange {
                    ptr: base,
                    size: 3 * g,
                    device: d.ordinal()
                }),
                Seen::Registered(MappedRange {
                    ptr: base + 5 * g as u64,
                    size: g,
                    device: d.ordinal()
                }),
            ]
        );
        // A decommit reports each tile before it is queued, on the caller's thread.
        a.decommit(g..2 * g)?;
        assert_eq!(registrar.registered.lock().expect("lock").len(), 1);
        let mut buffer = GrowableBuffer::<u32>::new(
            &d,
            BufferConfig {
                max_capacity: Some(4 * g),
                policy: GrowthPolicy::fixed(g),
                ..BufferConfig::default()
            },
        )?;
        buffer.extend_from_slice(&vec![7u32; g / 4 + 1])?; // two chunks
        drop(buffer);
    }
    drained(&cuda)?;
    assert!(
        registrar.registered.lock().expect("lock").is_empty(),
        "a registration outlived its memory"
    );
    assert!(
        registrar.strays.lock().expect("lock").is_empty(),
        "an unmap of a range never registered"
    );
    let threads = registrar.threads.lock().expect("lock").clone();
    assert!(threads.iter().all(|(_, t)| *t == me), "{threads:?}");
    let unmaps = threads.iter().filter(|(w, _)| *w == "unmapping").count();
    assert_eq!(
        unmaps,
        1 + 3 + 2,
        "the decommitted tile, three left, two chunks: each once"
    );
    // Removed hooks are not called any more.
    assert!(cuda.remove_mapping_hooks(id));
    assert!(!cuda.remove_mapping_hooks(id));
    let mut a = SparseArray::<u8>::new(&d, 2 * g, SparseConfig::default())?;
    a.commit(0..g)?;
    drop(a);
    drained(&cuda)?;
    assert_eq!(registrar.threads.lock().expect("lock").len(), threads.len());
    Ok(())
}

#[test]
fn a_hold_keeps_a_queued_unmap_waiting_until_its_owner_confirms() -> TestResult {
    let _memory = crate::memory_shared();
    let (cuda, d) = own_cuda()?;
    assert!(!cuda.releases_complete_inline());
    let g = gran(&d)?;
    let registrar = Arc::new(Registrar::default());
    let (to_owner, owner) = mpsc::channel();
    *registrar.hold_to.lock().expect("lock") = Some(to_owner);
    cuda.add_mapping_hooks(registrar.clone());
    let mut a = SparseArray::<u8>::new(&d, 4 * g, SparseConfig::default())?;
    a.commit(0..2 * g)?;
    let start = Instant::now();
    a.decommit(0..2 * g)?;
    let returned_in = start.elapsed();
    // The caller is not held: the hold is waited for by the worker.
    assert!(returned_in < HELD_FOR, "decommit took {returned_in:?}");
    let holds: Vec<UnmapHold> = owner.try_iter().collect();
    assert_eq!(holds.len(), 2);
    std::thread::sleep(HELD_FOR);
    assert_eq!(a.pending_release_bytes(), 2 * g, "unmapped while held");
    assert_eq!(cuda.release_stats().pending_entries, 1);
    // One confirmed, one still held: still queued.
    let mut holds = holds.into_iter();
    holds.next().expect("hold").confirm();
    std::thread::sleep(HELD_FOR / 4);
    assert_eq!(
        a.pending_release_bytes(),
        2 * g,
        "unmapped with a hold open"
    );
    drop(holds); // the last is dropped: a drop confirms too
    drained(&cuda)?;
    assert_eq!(a.pending_release_bytes(), 0);
    // The addresses are usable again.
    a.commit(0..g)?;
    Ok(())
}

#[test]
fn with_the_queue_off_the_ending_call_waits_for_the_hold() -> TestResult {
    let _memory = crate::memory_shared();
    let (cuda, d) = own_cuda()?;
    cuda.set_max_pending_release_bytes(0);
    let g = gran(&d)?;
    let registrar = Arc::new(Registrar::default());
    let (to_owner, owner) = mpsc::channel::<UnmapHold>();
    *registrar.hold_to.lock().expect("lock") = Some(to_owner);
    cuda.add_mapping_hooks(registrar.clone());
    let mut a = SparseArray::<u8>::new(&d, 4 * g, SparseConfig::default())?;
    a.commit(0..g)?;
    // The owner confirms from its own thread after a while.
    let confirmer = std::thread::spawn(move || {
        let hold = owner.recv().expect("a hold");
        std::thread::sleep(HELD_FOR);
        hold.confirm();
    });
    let start = Instant::now();
    a.decommit(0..g)?;
    assert!(
        start.elapsed() >= HELD_FOR,
        "the decommit did not wait for the hold"
    );
    confirmer.join().expect("owner");
    assert_eq!(a.committed_bytes(), 0);
    assert!(registrar.registered.lock().expect("lock").is_empty());
    Ok(())
}

/// A hook that panics is caught: the commit and the decommit go on, nothing leaks.
struct Panicking;

impl MappingHooks for Panicking {
    fn accessible(&self, _: &MappedRange, _: &[(usize, AccessFlags)]) {
        panic!("registrar failure on access");
    }
    fn unmapping(&self, _: &MappedRange, _: &UnmapGate) {
        panic!("registrar failure on unmap");
    }
}

#[test]
fn a_panicking_hook_does_not_stop_the_mapping_change() -> TestResult {
    let _memory = crate::memory_shared();
    let (cuda, d) = own_cuda()?;
    let g = gran(&d)?;
    let registrar = Arc::new(Registrar::default());
    cuda.add_mapping_hooks(Arc::new(Panicking));
    cuda.add_mapping_hooks(registrar.clone());
    let mut a = SparseArray::<u8>::new(&d, 4 * g, SparseConfig::default())?;
    a.commit(0..g)?;
    a.write(0, &[1, 2, 3])?;
    a.decommit(0..g)?;
    drained(&cuda)?;
    assert_eq!((a.committed_bytes(), a.pending_release_bytes()), (0, 0));
    // The hooks after the panicking one still ran.
    assert_eq!(registrar.log.lock().expect("lock").len(), 2);
    assert!(registrar.registered.lock().expect("lock").is_empty());
    Ok(())
}
