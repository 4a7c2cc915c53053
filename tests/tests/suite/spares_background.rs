//! Background spares (`SparseConfig::background_spares`, issue 19): the spare tiles after a
//! commit are mapped by the array's worker thread, so the next commit of those tiles makes
//! no driver call on the caller's thread; calls over tiles the worker is still mapping
//! wait for it; nothing is lost or leaked when the array decommits or drops meanwhile.

use cuda_vmm::Device;
use cuda_vmm_alloc::{ChunkPool, Error, HoleBehavior, SparseArray, SparseConfig};

use crate::alloc::{counts, delta};
use crate::{device, on_simulator};
use cuda_vmm_tests::helpers::{gran, granule_pool, words_added, TestResult};

const CALLS: [&str; 3] = ["cuMemCreate", "cuMemMap", "cuMemSetAccess"];

/// A KV-cache-style config: `spares` background spares, uninitialised tiles, error holes.
fn config(spares: usize, pool: Option<ChunkPool>) -> SparseConfig {
    SparseConfig {
        spare_tiles: spares,
        background_spares: true,
        uninit_tiles: true,
        pool,
        ..SparseConfig::default()
    }
}

fn array(d: &Device, tiles: usize, spares: usize) -> cuda_vmm_alloc::Result<SparseArray<u32>> {
    SparseArray::new(d, tiles * gran(d)? / 4, config(spares, None))
}

fn free(d: &Device) -> cuda_vmm::Result<usize> {
    Ok(d.memory_info()?.free)
}

#[test]
fn growing_one_tile_at_a_time_maps_the_next_tiles_off_the_callers_thread() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let per = gran(&d)? / 4;
    let mut a = array(&d, 64, 2)?;
    let mut caller_calls = vec![0u64; 3];
    for t in 0..32 {
        let before = counts(&CALLS);
        assert_eq!(a.commit(t * per..(t + 1) * per)?, 1, "tile {t}");
        let made = delta(&before, &counts(&CALLS));
        for (sum, n) in caller_calls.iter_mut().zip(&made) {
            *sum += n;
        }
        a.write(t * per, &words_added(t * per..(t + 1) * per, 7))?;
    }
    // Every tile holds what was written to it.
    let mut back = vec![0u32; 32 * per];
    a.read(0..32 * per, &mut back)?;
    assert!(back == words_added(0..32 * per, 7), "a tile lost its bytes");
    assert_eq!(a.committed_bytes(), 32 * a.tile_bytes());
    if on_simulator()? {
        // Only the first commit mapped on the caller's thread; the worker mapped the rest
        // ahead, and each later commit waited for it at most.
        assert_eq!(
            caller_calls,
            [1, 1, 1],
            "driver calls on the caller's thread"
        );
    }
    // The worker's calls count in the array's statistics.
    assert!(a.stats().maps >= 32, "{:?}", a.stats());
    assert!(a.spare_count() <= 2);
    Ok(())
}

#[test]
fn a_decommit_over_tiles_the_worker_is_mapping_waits_and_releases_them() -> TestResult {
    // Exclusive: free memory is compared exactly.
    let _memory = crate::memory_exclusive();
    let d = device()?;
    let per = gran(&d)? / 4;
    let sim = on_simulator()?;
    let before = free(&d)?;
    let mut a = array(&d, 16, 4)?;
    for round in 0..20 {
        a.commit(0..per)?; // the worker is asked for tiles 1..5 now
        assert_eq!(a.decommit(0..16 * per)?, 1, "round {round}");
        assert_eq!(
            (a.committed_bytes(), a.spare_count()),
            (0, 0),
            "round {round}"
        );
    }
    drop(a);
    assert!(d
        .cuda()
        .flush_releases(std::time::Duration::from_secs(60))?);
    if sim {
        assert_eq!(free(&d)?, before, "memory leaked");
    }
    Ok(())
}

#[test]
fn dropping_with_spares_in_flight_gives_every_chunk_back_to_the_pool() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    let pool = granule_pool(&d)?;
    for round in 0..10 {
        let mut a = SparseArray::<u32>::new(&d, 32 * g / 4, config(3, Some(pool.clone())))?;
        for t in 0..round {
            a.commit(t * g / 4..(t + 1) * g / 4)?;
        }
        drop(a); // spares may still be mapping
    }
    assert!(d
        .cuda()
        .flush_releases(std::time::Duration::from_secs(60))?);
    let stats = pool.stats();
    // Every chunk taken came back: none is mapped, none was lost.
    assert_eq!(stats.pending_returns, 0);
    assert_eq!(stats.hits + stats.misses, stats.returns + stats.releases);
    Ok(())
}

#[test]
fn background_spares_refuse_configurations_they_cannot_map_as_is() -> TestResult {
    let d = device()?;
    let g = gran(&d)?;
    let refused = |c: SparseConfig| match SparseArray::<u8>::new(&d, 8 * g, c) {
        Err(Error::InvalidConfig { message }) => message,
        other => panic!("not refused: {other:?}"),
    };
    let why = |what: &str| format!("background_spares needs spare tiles mapped as is: {what}");
    assert_eq!(
        refused(SparseConfig {
            spare_tiles: 0,
            ..config(1, None)
        }),
        why("spare_tiles is 0")
    );
    assert_eq!(
        refused(SparseConfig {
            holes: HoleBehavior::Zeros,
            ..config(1, None)
        }),
        why("holes read as zeros (HoleBehavior::Zeros)")
    );
    assert_eq!(
        refused(SparseConfig {
            uninit_tiles: false,
            ..config(1, None)
        }),
        why("new tiles are zero-filled (uninit_tiles is false)")
    );
    Ok(())
}
