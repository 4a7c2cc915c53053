//! Spare tiles (`SparseConfig::spare_tiles`): memory committed ahead of a growing run of a
//! sparse array, taken by later commits without driver calls, on whichever backend
//! `Cuda::new()` picks.

use cuda_vmm::sys::CUresult;
use cuda_vmm::Device;
use cuda_vmm_alloc::{ChunkPool, Error, HoleBehavior, PoolConfig, SparseArray, SparseConfig};
use cuda_vmm_sim::inject_fault;

use crate::alloc::{counts, delta, fails, runs};
use crate::{device, on_simulator};
use cuda_vmm_tests::helpers::{gran, raw_read, words_added, TestResult};

/// The VMM entry points a commit can make.
const CALLS: [&str; 5] = [
    "cuMemCreate",
    "cuMemMap",
    "cuMemSetAccess",
    "cuMemUnmap",
    "cuMemRelease",
];

/// A `u32` array of `tiles` one-granule tiles keeping up to `spares` spare tiles.
fn array(
    d: &Device,
    tiles: usize,
    holes: HoleBehavior,
    spares: usize,
    pool: Option<ChunkPool>,
    uninit_tiles: bool,
) -> cuda_vmm_alloc::Result<SparseArray<u32>> {
    let g = gran(d)?;
    SparseArray::new(
        d,
        tiles * g / 4,
        SparseConfig {
            holes,
            spare_tiles: spares,
            pool,
            uninit_tiles,
            ..SparseConfig::default()
        },
    )
}

/// A pool of one-granule chunks holding 4 chunks full of `words_added(.., seed)`.
fn dirty_pool(d: &Device, seed: u32) -> cuda_vmm_alloc::Result<ChunkPool> {
    let per = gran(d)? / 4;
    let pool = ChunkPool::new(
        d,
        PoolConfig {
            chunk_size: 4 * per,
            ..PoolConfig::default()
        },
    )?;
    let mut dirty = array(d, 4, HoleBehavior::Error, 0, Some(pool.clone()), false)?;
    dirty.commit(0..4 * per)?;
    dirty.write(0, &words_added(0..4 * per, seed))?;
    dirty.decommit(0..4 * per)?;
    assert_eq!(pool.stats().chunks_held, 4);
    Ok(pool)
}

#[test]
fn spares_are_committed_ahead_of_a_growing_run_and_taken_without_driver_calls() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let per = gran(&d)? / 4;
    let mut a = array(&d, 16, HoleBehavior::Error, 3, None, false)?;
    // Tile 0 starts a run: it is committed with 3 spares, one set access for all 4.
    assert_eq!(a.commit(0..1)?, 1);
    let s = a.stats();
    assert_eq!((s.creates, s.maps, s.set_access_calls), (4, 4, 1));
    assert_eq!((a.spare_count(), a.spare_bytes()), (3, 3 * 4 * per));
    assert_eq!(runs(&a), [(0, 1)]);
    assert_eq!(a.committed_bytes(), 4 * per);
    // Spares are holes to the caller.
    assert!(!a.is_committed(per));
    let mut out = vec![0u32; per];
    assert!(matches!(
        fails(a.read(per..2 * per, &mut out)),
        Error::NotCommitted { tile: 1, .. }
    ));
    assert!(matches!(
        fails(a.write(per, &out)),
        Error::NotCommitted { tile: 1, .. }
    ));
    // Tiles 1..4 are taken from the spares: no driver call, and they read as zeros.
    let before = counts(&CALLS);
    for t in 1..4 {
        assert_eq!(a.commit(t * per..t * per + 1)?, 1);
    }
    assert_eq!(a.stats().creates, 4);
    assert_eq!(a.stats().set_access_calls, 1);
    if on_simulator()? {
        assert_eq!(delta(&before, &counts(&CALLS)), [0; 5]);
    }
    assert_eq!((a.spare_count(), runs(&a)), (0, vec![(0, 4)]));
    let mut zeros = vec![1u32; 3 * per];
    a.read(per..4 * per, &mut zeros)?;
    assert_eq!(zeros, vec![0u32; 3 * per]);
    let data = words_added(per..4 * per, 3);
    a.write(per, &data)?;
    // Tile 4 extends the run again: 4..8, spares 5..8.
    a.commit(4 * per..4 * per + 1)?;
    assert_eq!((a.stats().creates, a.spare_count()), (8, 3));
    // A commit away from any run takes no spares; one ahead of a run stops at the next
    // committed tile (12): spares 9..12.
    a.commit(12 * per..12 * per + 1)?;
    assert_eq!((a.stats().creates, a.spare_count()), (9, 3));
    a.commit(5 * per..9 * per)?;
    assert_eq!((a.stats().creates, a.spare_count()), (13, 3));
    assert_eq!(runs(&a), [(0, 9), (12, 13)]);
    // Spares stop at the array's end.
    a.commit(13 * per..13 * per + 1)?;
    assert_eq!((a.stats().creates, a.spare_count()), (16, 5));
    // The residency map draws spares (14, 15 and 9..12) beside the committed tiles.
    assert_eq!(
        a.to_string().lines().nth(1),
        Some("######## #sss##ss"),
        "{a}"
    );
    assert!(a.to_string().contains(", 5 spare (s, "), "{a}");
    // A decommit over spares releases them too (counting only the committed tiles); one
    // that covers none leaves them alone; release_spares gives back the rest.
    assert_eq!(a.decommit(14 * per..15 * per)?, 0);
    assert_eq!((a.spare_count(), a.spare_bytes()), (4, 4 * 4 * per));
    let before = a.stats().releases;
    assert_eq!(a.decommit(0..12 * per)?, 9);
    assert_eq!((a.spare_count(), a.stats().releases - before), (1, 9 + 3));
    assert_eq!(a.committed_bytes(), 2 * 4 * per);
    assert_eq!(a.release_spares()?, 1);
    assert_eq!(a.decommit(0..16 * per)?, 2);
    assert_eq!(
        (a.committed_bytes(), a.spare_bytes(), a.stats().chunks),
        (0, 0, 0)
    );
    assert_eq!(a.release_spares()?, 0);
    // The data written before is gone with its tiles; committing again gives zeros.
    a.commit(per..2 * per)?;
    let mut out = vec![1u32; per];
    a.read(per..2 * per, &mut out)?;
    assert_eq!(out, vec![0u32; per]);
    assert_ne!(data[..per], out[..]);
    Ok(())
}

#[test]
fn zero_hole_spares_read_as_zeros_and_split_the_zero_block_once_per_batch() -> TestResult {
    let _memory = crate::memory_shared();
    let cuda = crate::cuda()?;
    let d = device()?;
    let g = gran(&d)?;
    let per = g / 4;
    // A pool holding 4 chunks full of data, so that a tile left unfilled would show it.
    let pool = dirty_pool(&d, 9)?;
    // uninit_tiles: the committed tile keeps what its chunk held, but spares of a zero-hole
    // array are holes and must read as zeros, to kernels too.
    let mut z = array(&d, 16, HoleBehavior::Zeros, 3, Some(pool), true)?;
    let start = z.stats();
    let before = counts(&CALLS);
    z.commit(0..1)?;
    let s = z.stats();
    // One zero block of 16 tiles is unmapped; blocks 4..8 and 8..16 are mapped around the
    // batch (made and zero-filled on first use: a create, map, set access and unmap each).
    assert_eq!(s.pool_hits - start.pool_hits, 4);
    assert_eq!(s.unmaps - start.unmaps, 1 + 2);
    assert_eq!(s.maps - start.maps, 4 + 2 + 2);
    assert_eq!(s.set_access_calls - start.set_access_calls, 1 + 1 + 2);
    if on_simulator()? {
        assert_eq!(delta(&before, &counts(&CALLS)), [2, 8, 4, 3, 0]);
    }
    for t in 1..4u64 {
        let at = z.ptr() + t * g as u64;
        assert_eq!(raw_read(&cuda, at, 16)?, [0; 16], "spare tile {t}");
        assert_eq!(
            raw_read(&cuda, at + g as u64 - 16, 16)?,
            [0; 16],
            "spare tile {t}"
        );
    }
    // Taking the spares makes no driver call; their contents are zeros.
    let before = counts(&CALLS);
    let s = z.stats();
    z.commit(per..4 * per)?;
    assert_eq!(z.stats().maps, s.maps);
    if on_simulator()? {
        assert_eq!(delta(&before, &counts(&CALLS)), [0; 5]);
    }
    let mut out = vec![1u32; 3 * per];
    z.read(per..4 * per, &mut out)?;
    assert_eq!(out, vec![0u32; 3 * per]);
    // The next batch (4..8) unmaps the block of 4 and maps no piece around it.
    let s = z.stats();
    z.commit(4 * per..5 * per)?;
    let t = z.stats();
    assert_eq!((t.unmaps - s.unmaps, t.maps - s.maps), (1, 4));
    assert_eq!(t.set_access_calls - s.set_access_calls, 1);
    assert_eq!(z.spare_count(), 3);
    // Decommitting tile 0 gives it a zero block of its own; releasing the spares maps zero
    // blocks over them again; all holes read as zeros to kernels.
    z.decommit(0..per)?;
    assert_eq!(z.release_spares()?, 3);
    for t in [0u64, 5, 6, 7, 8, 15] {
        assert_eq!(
            raw_read(&cuda, z.ptr() + t * g as u64, 16)?,
            [0; 16],
            "hole {t}"
        );
    }
    assert_eq!(runs(&z), [(1, 5)]);
    // Once nothing is committed, the holes merge back into one block of 16 tiles.
    z.decommit(0..16 * per)?;
    let s = z.stats();
    z.commit(9 * per..10 * per)?;
    assert_eq!(z.stats().unmaps - s.unmaps, 1);
    assert_eq!(z.spare_count(), 0);
    Ok(())
}

#[test]
fn error_mode_spares_are_zero_filled_whatever_the_pool_chunks_held() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    let per = g / 4;
    let pool = dirty_pool(&d, 5)?;
    let mut a = array(&d, 16, HoleBehavior::Error, 3, Some(pool), false)?;
    a.commit(0..1)?;
    assert_eq!((a.stats().pool_hits, a.spare_count()), (4, 3));
    a.commit(per..4 * per)?;
    let mut out = vec![1u32; 4 * per];
    a.read(0..4 * per, &mut out)?;
    assert_eq!(out, vec![0u32; 4 * per]);
    Ok(())
}

#[test]
fn a_failed_spare_batch_falls_back_to_the_tiles_asked_for() -> TestResult {
    let _memory = crate::memory_shared();
    if !crate::simulator_or_skip("fault injection needs the simulator")? {
        return Ok(());
    }
    let d = device()?;
    let per = gran(&d)? / 4;
    let mut a = array(&d, 8, HoleBehavior::Zeros, 3, None, false)?;
    let start = a.stats();
    // The batch's second create fails: the first is released, then tile 0 alone commits.
    let guard = inject_fault("cuMemCreate", 2, CUresult::CUDA_ERROR_OUT_OF_MEMORY);
    let before = counts(&["cuMemCreate", "cuMemRelease"]);
    assert_eq!(a.commit(0..1)?, 1);
    assert!(guard.fired());
    drop(guard);
    // Three creates for tiles reached the driver (the second refused) and the first was
    // released; three more made the zero blocks of 1, 2 and 4 tiles mapped around tile 0.
    assert_eq!(
        delta(&before, &counts(&["cuMemCreate", "cuMemRelease"])),
        [3 + 3, 1]
    );
    assert_eq!((a.spare_count(), runs(&a)), (0, vec![(0, 1)]));
    assert_eq!(a.stats().chunks - start.chunks, 1);
    // A failure of the tile asked for is reported, and nothing is left behind.
    let guard = inject_fault("cuMemCreate", 1, CUresult::CUDA_ERROR_OUT_OF_MEMORY);
    let guard2 = inject_fault("cuMemCreate", 2, CUresult::CUDA_ERROR_OUT_OF_MEMORY);
    let err = fails(a.commit(per..per + 1));
    drop((guard, guard2));
    assert_eq!(err.code(), Some(CUresult::CUDA_ERROR_OUT_OF_MEMORY.0));
    assert_eq!((a.spare_count(), runs(&a)), (0, vec![(0, 1)]));
    assert_eq!(a.commit(per..per + 1)?, 1);
    assert_eq!((a.spare_count(), runs(&a)), (3, vec![(0, 2)]));
    Ok(())
}

#[test]
fn dropping_an_array_releases_its_spares() -> TestResult {
    let _memory = crate::memory_exclusive();
    let d = device()?;
    let per = gran(&d)? / 4;
    let free_before = d.memory_info()?.free;
    {
        let mut a = array(&d, 32, HoleBehavior::Error, 7, None, false)?;
        a.commit(0..per)?;
        a.commit(per..2 * per)?;
        assert_eq!(a.spare_count(), 6);
        assert!(d.memory_info()?.free < free_before);
    }
    assert_eq!(d.memory_info()?.free, free_before);
    Ok(())
}
