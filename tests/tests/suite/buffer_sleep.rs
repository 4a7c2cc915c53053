//! Sleep and wake of a `GrowableBuffer` (issue 21): the chunks go back to the driver (or
//! the pool), the pointer, length and capacity stay, every call touching the memory is
//! refused while asleep, and wake restores every byte; faults leave a state a retry
//! completes.

use std::time::Duration;

use cuda_vmm::Device;
use cuda_vmm_alloc::{Backup, BufferConfig, ChunkPool, Error, GrowableBuffer, PoolConfig};

use crate::device;
use cuda_vmm_tests::helpers::{gran, TestResult};

const FLUSH: Duration = Duration::from_secs(30);

fn values(n: usize, seed: u32) -> Vec<u32> {
    (0..n as u32)
        .map(|i| i.wrapping_mul(2_654_435_761) ^ seed)
        .collect()
}

/// A buffer of `n` values over several chunks.
fn filled(d: &Device, n: usize, pool: Option<ChunkPool>) -> Result<GrowableBuffer<u32>, Error> {
    let mut b = GrowableBuffer::<u32>::new(
        d,
        BufferConfig {
            max_capacity: Some(64 << 20),
            pool,
            ..BufferConfig::default()
        },
    )?;
    b.extend_from_slice(&values(n, 7))?;
    Ok(b)
}

fn is_asleep_error(r: Result<(), Error>) -> bool {
    matches!(r, Err(Error::Asleep { .. }))
}

#[test]
fn a_sleeping_buffer_gives_its_memory_back_refuses_every_use_and_wakes_intact() -> TestResult {
    let _memory = crate::memory_exclusive();
    let d = device()?;
    let g = gran(&d)?;
    let n = (5 * g) / 4 + 123; // several chunks, the last one partly used
    let mut b = filled(&d, n, None)?;
    let (ptr, cap, committed) = (b.ptr(), b.capacity(), b.committed_bytes());
    assert!(d.cuda().flush_releases(FLUSH)?);
    let free0 = d.memory_info()?.free;
    let report = b.sleep(Backup::Host)?;
    assert_eq!(report.released_bytes, committed);
    assert_eq!(report.backed_up_bytes, n * 4);
    assert_eq!(
        d.memory_info()?.free,
        free0 + committed,
        "the driver has it back"
    );
    assert!(b.is_asleep());
    assert_eq!((b.ptr(), b.len(), b.capacity()), (ptr, n, cap));
    assert!(is_asleep_error(b.push(1)));
    assert!(is_asleep_error(b.reserve(g)));
    assert!(is_asleep_error(b.write(0, &[1])));
    let mut out = [0u32; 4];
    assert!(is_asleep_error(b.read(0..4, &mut out)));
    assert!(is_asleep_error(b.to_vec().map(drop)));
    assert!(is_asleep_error(b.shrink_to_fit()));
    assert!(matches!(
        b.sleep(Backup::Host),
        Err(Error::InvalidRequest { .. })
    ));
    let woke = b.wake()?;
    assert_eq!((woke.mapped_bytes, woke.restored_bytes), (committed, n * 4));
    assert_eq!(d.memory_info()?.free, free0);
    assert_eq!((b.ptr(), b.committed_bytes()), (ptr, committed));
    assert_eq!(b.to_vec()?, values(n, 7));
    assert!(matches!(b.wake(), Err(Error::InvalidRequest { .. })));
    b.push(42)?;
    assert_eq!(b.len(), n + 1);
    Ok(())
}

#[test]
fn a_discarded_buffer_wakes_with_usable_memory_and_ten_cycles_pin_once() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    let n = g / 2;
    let mut b = filled(&d, n, None)?;
    b.sleep(Backup::Discard)?;
    b.wake()?;
    b.write(0, &values(n, 9))?;
    assert_eq!(b.to_vec()?, values(n, 9));
    for cycle in 0..10 {
        let r = b.sleep(Backup::Host)?;
        if cycle > 0 {
            assert_eq!(r.host_prepared_bytes, 0, "cycle {cycle} pinned again");
        }
        b.wake()?;
    }
    assert_eq!(b.to_vec()?, values(n, 9));
    assert!(b.release_host_backup() >= n * 4);
    b.set_keep_host_backup(false);
    b.sleep(Backup::Host)?;
    let woke = b.wake()?;
    assert!(woke.host_released_bytes >= n * 4);
    assert_eq!(b.to_vec()?, values(n, 9));
    Ok(())
}

#[test]
fn a_pooled_buffer_sleeps_into_its_pool_and_wakes_from_it() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    let pool = ChunkPool::new(&d, PoolConfig::default())?;
    let mut b = filled(&d, 3 * g / 4 + 10, Some(pool.clone()))?;
    let chunks = b.committed_bytes() / g;
    b.sleep(Backup::Host)?;
    assert_eq!(pool.stats().chunks_held, chunks);
    b.wake()?;
    assert_eq!(pool.stats().chunks_held, 0);
    assert_eq!(b.to_vec()?, values(3 * g / 4 + 10, 7));
    Ok(())
}

#[test]
fn wake_grants_the_peers_access_again() -> TestResult {
    let Some((d0, d1)) = crate::two_simulated_devices()? else {
        return Ok(());
    };
    let _memory = crate::memory_shared();
    let g = gran(&d0)?;
    let mut b = filled(&d0, g / 2, None)?;
    b.grant_access(std::slice::from_ref(&d1))?;
    b.sleep(Backup::Host)?;
    assert!(is_asleep_error(b.grant_access(std::slice::from_ref(&d1))));
    b.wake()?;
    assert_eq!(
        crate::caching::adversarial_sleep::access_at(b.ptr(), &d1)?,
        3,
        "read-write"
    );
    assert_eq!(b.to_vec()?, values(g / 2, 7));
    Ok(())
}

/// Every fault of a buffer's sleep and wake (see [`crate::sleep_faults`]).
#[test]
fn every_fault_of_a_buffer_s_sleep_and_wake_leaves_a_state_a_retry_completes() -> TestResult {
    let Some((d, g)) = crate::simulated_device(crate::FAULT_INJECTION)? else {
        return Ok(());
    };
    let _memory = crate::memory_shared();
    let n = g / 2 + 5;
    crate::sleep_faults::every_fault(
        &d,
        || Ok(filled(&d, n, None)?),
        |b| {
            assert_eq!(b.to_vec()?, values(n, 7));
            Ok(())
        },
    )
}

/// A buffer of POSIX-fd exportable memory holding `values(n, 3)`.
pub(crate) fn exportable(d: &Device, n: usize) -> Result<GrowableBuffer<u32>, Error> {
    let props = cuda_vmm::AllocationProps::device(d).handle_types(cuda_vmm::HandleTypes::POSIX_FD);
    let mut b = GrowableBuffer::<u32>::new(
        d,
        BufferConfig {
            max_capacity: Some(16 << 20),
            props: Some(props),
            ..BufferConfig::default()
        },
    )?;
    b.extend_from_slice(&values(n, 3))?;
    Ok(b)
}

/// Exportable memory cannot sleep: an importer may still map it. Refused, changing nothing.
#[test]
fn an_exportable_buffer_is_refused() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    let mut b = exportable(&d, g / 4)?;
    let committed = b.committed_bytes();
    match b.sleep(Backup::Host) {
        Err(Error::InvalidRequest { message }) => {
            assert!(message.contains("exportable"), "{message}")
        }
        other => panic!("an exportable buffer slept: {other:?}"),
    }
    assert!(!b.is_asleep());
    assert_eq!(b.committed_bytes(), committed);
    assert_eq!(b.to_vec()?, values(g / 4, 3));
    Ok(())
}

/// A memset queued on a held stream (not recorded as a use, as a kernel of another
/// library): `sleep` waits for it, so the backup holds what it wrote. Run for a buffer and a
/// sparse array; removing the device wait before the backup fails both.
#[test]
fn sleep_waits_for_work_it_cannot_see() -> TestResult {
    let Some((d, g)) = crate::simulated_device("needs the simulator's stream holds")? else {
        return Ok(());
    };
    let _memory = crate::memory_shared();
    let mut b = filled(&d, g / 4, None)?;
    let per_tile = g / 4;
    let mut a = cuda_vmm_alloc::SparseArray::<u32>::new(&d, 4 * per_tile, Default::default())?;
    a.commit(0..per_tile)?;
    for (ptr, what) in [(b.ptr(), "buffer"), (a.ptr(), "array")] {
        let s = cuda_vmm::Stream::new(&d)?;
        let hold = cuda_vmm_sim::hold_stream(s.raw());
        assert!(hold.is_active());
        crate::caching::adversarial_sleep::memset_async(&d, &s, ptr, 0x5A, g)?;
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            drop(hold);
        });
        if what == "buffer" {
            b.sleep(Backup::Host)?;
            b.wake()?;
        } else {
            a.sleep(Backup::Host)?;
            a.wake()?;
        }
        release.join().map_err(|_| "release thread")?;
    }
    assert!(
        b.to_vec()?.iter().all(|&v| v == 0x5A5A_5A5A),
        "buffer: the backup missed the memset"
    );
    let mut out = vec![0u32; per_tile];
    a.read(0..per_tile, &mut out)?;
    assert!(
        out.iter().all(|&v| v == 0x5A5A_5A5A),
        "array: the backup missed the memset"
    );
    Ok(())
}
