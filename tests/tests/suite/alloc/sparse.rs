//! The allocator: sparse array.

use super::*;

/// A sparse array of `tiles` one-granule tiles of u32.
fn sparse(
    d: &Device,
    tiles: usize,
    holes: HoleBehavior,
) -> cuda_vmm_alloc::Result<SparseArray<u32>> {
    let g = gran(d)?;
    SparseArray::new(
        d,
        tiles * g / 4,
        SparseConfig {
            holes,
            ..SparseConfig::default()
        },
    )
}

/// Committed tile runs as `(start, end)` pairs.
pub(crate) fn runs<T: cuda_vmm_alloc::DevicePod>(a: &SparseArray<T>) -> Vec<(usize, usize)> {
    a.committed_runs().map(|r| (r.start, r.end)).collect()
}

#[test]
fn sparse_commit_and_decommit_round_out_and_in() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    let per = g / 4; // elements per tile
    let mut a = sparse(&d, 16, HoleBehavior::Error)?;
    assert_eq!(a.tile_count(), 16);
    assert_eq!(a.tile_bytes(), g);
    assert_eq!(a.reserved_bytes(), 16 * g);
    // Rounded out: the range touches tiles 1..3.
    assert_eq!(a.commit(per + 5..3 * per - 5)?, 2);
    assert_eq!(a.commit(per..2 * per)?, 0);
    assert_eq!(a.commit(8 * per - 1..8 * per + 1)?, 2);
    assert_eq!(a.commit(15 * per..16 * per)?, 1);
    assert_eq!(runs(&a), [(1, 3), (7, 9), (15, 16)]);
    assert_eq!(a.committed_bytes(), 5 * g);
    assert!(a.is_committed(per));
    assert!(!a.is_committed(per - 1));
    assert!(!a.is_committed(16 * per));
    // Rounded in: only tile 7 lies wholly inside.
    assert_eq!(a.decommit(7 * per - 1..8 * per + 1)?, 1);
    assert_eq!(a.decommit(8 * per + 1..9 * per)?, 0);
    assert_eq!(runs(&a), [(1, 3), (8, 9), (15, 16)]);
    let stats = a.stats();
    assert_eq!((stats.creates, stats.releases, stats.chunks), (5, 1, 4));
    assert_eq!(
        a.to_string(),
        format!(
            "4/16 tiles committed ({} MiB of {} MiB, tile {} MiB)\n.##..... #......#",
            (4 * g) >> 20,
            (16 * g) >> 20,
            g >> 20
        )
    );
    assert_eq!(
        fails(a.commit(0..16 * per + 1)),
        Error::OutOfRange {
            what: "commit",
            start: 0,
            end: 16 * per + 1,
            len: 16 * per
        }
    );
    Ok(())
}

#[test]
fn sparse_contents_and_hole_errors() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    let per = g / 4;
    let mut a = sparse(&d, 8, HoleBehavior::Error)?;
    a.commit(2 * per..5 * per)?;
    let data = words_added(2 * per + 10..5 * per - 10, 3);
    a.write(2 * per + 10, &data)?;
    let mut out = vec![0u32; data.len()];
    a.read(2 * per + 10..5 * per - 10, &mut out)?;
    assert_eq!(out, data);
    // New tiles read as zero.
    let mut head = vec![1u32; 10];
    a.read(2 * per..2 * per + 10, &mut head)?;
    assert_eq!(head, [0; 10]);
    // Holes: exact element and tile named, nothing copied.
    let mut out = vec![7u32; 20];
    assert_eq!(
        fails(a.read(5 * per - 10..5 * per + 10, &mut out)),
        Error::NotCommitted {
            index: 5 * per,
            tile: 5
        }
    );
    assert_eq!(out, [7; 20]);
    assert_eq!(
        fails(a.write(per, &[1, 2])).to_string(),
        format!("element {per} lies in tile 1, which is not committed")
    );
    // Decommitting the middle tile makes it a hole again.
    a.decommit(3 * per..4 * per)?;
    let mut one = [0u32; 1];
    assert_eq!(
        fails(a.read(3 * per + 5..3 * per + 6, &mut one)),
        Error::NotCommitted {
            index: 3 * per + 5,
            tile: 3
        }
    );
    a.read(2 * per + 10..2 * per + 11, &mut one)?;
    assert_eq!(one[0], data[0]);
    Ok(())
}

#[test]
fn sparse_zero_holes_read_as_zero() -> TestResult {
    // Zero memory is allocated here: keep out of the free-memory sweeps' way.
    let _memory = crate::memory_shared();
    let cuda = cuda()?;
    let d = device()?;
    let g = gran(&d)?;
    let per = g / 4;
    let mut a = sparse(&d, 6, HoleBehavior::Zeros)?;
    // Creation: the 6 holes take zero blocks of 4 and 2 tiles, each made and zero-filled
    // (a create, a map and a set access each), then mapped, with one set access for the run.
    let stats = a.stats();
    assert_eq!(
        (stats.creates, stats.maps, stats.set_access_calls),
        (2, 4, 3)
    );
    a.commit(per..3 * per)?;
    let data = words_added(per..3 * per, 8);
    a.write(per, &data)?;
    let mut out = vec![9u32; 4 * per];
    a.read(0..4 * per, &mut out)?;
    assert_eq!(out[..per], vec![0u32; per]);
    assert_eq!(out[per..3 * per], data);
    assert_eq!(out[3 * per..], vec![0u32; per]);
    // Kernels see zeros in holes too.
    assert_eq!(raw_read(&cuda, a.ptr() + 5 * g as u64 - 4, 8)?, [0; 8]);
    a.decommit(per..2 * per)?;
    assert_eq!(raw_read(&cuda, a.ptr() + g as u64, 8)?, [0; 8]);
    a.read(0..4 * per, &mut out)?;
    assert_eq!(out[..2 * per], vec![0u32; 2 * per]);
    assert_eq!(out[2 * per..3 * per], data[per..]);
    if on_simulator()? {
        // Holes are mapped read-only: writes fault.
        let code = raw_write(&cuda, a.ptr() + g as u64, &[1, 2, 3, 4])?;
        assert_eq!(code, cuda_vmm_sim::answers::COPY_NO_ACCESS);
        assert_eq!(raw_read(&cuda, a.ptr() + g as u64, 4)?, [0; 4]);
    }
    Ok(())
}

#[test]
fn sparse_commit_makes_one_set_access_per_run() -> TestResult {
    // Zero memory is allocated here: keep out of the free-memory sweeps' way.
    let _memory = crate::memory_shared();
    let d = device()?;
    let names = ["cuMemCreate", "cuMemMap", "cuMemSetAccess", "cuMemUnmap"];
    let g = gran(&d)?;
    let per = g / 4;
    let mut a = sparse(&d, 16, HoleBehavior::Error)?;
    let before = counts(&names);
    a.commit(0..4 * per)?;
    let s = a.stats();
    assert_eq!((s.creates, s.maps, s.set_access_calls), (4, 4, 1));
    // Two runs: tiles 4..6 and 8..9 (tiles 6..8 are committed already).
    a.commit(6 * per..8 * per)?;
    let before_two = a.stats();
    a.commit(4 * per..9 * per)?;
    let s = a.stats();
    assert_eq!(s.set_access_calls - before_two.set_access_calls, 2);
    assert_eq!(s.creates, 9);
    if on_simulator()? {
        assert_eq!(delta(&before, &counts(&names)), [9, 9, 4, 0]);
    }

    // One zero block of 8 tiles covers the holes. Committing tiles 2..5 unmaps it and maps
    // blocks 0..2, 5..6 and 6..8 around the run (one set access per side); the blocks of 2
    // and 1 tiles are made and zero-filled on first use (a create, map, set access and
    // unmap each).
    let mut z = sparse(&d, 8, HoleBehavior::Zeros)?;
    let start = z.stats();
    let before = counts(&names);
    z.commit(2 * per..5 * per)?;
    let s = z.stats();
    assert_eq!(s.creates - start.creates, 3 + 2);
    assert_eq!(s.unmaps - start.unmaps, 1 + 2);
    assert_eq!(s.maps - start.maps, 3 + 3 + 2);
    assert_eq!(s.set_access_calls - start.set_access_calls, 1 + 2 + 2);
    if on_simulator()? {
        assert_eq!(delta(&before, &counts(&names)), [5, 8, 5, 3]);
    }
    // Decommitting merges the holes back into one block of 8 tiles (the three blocks around
    // the run are unmapped); committing tile 3 splits it into 0..2, 2..3 and 4..8 (the block
    // of 4 tiles is made on first use: a create, map, set access and unmap).
    z.decommit(2 * per..5 * per)?;
    let s = z.stats();
    assert_eq!(s.unmaps - start.unmaps, 3 + 3 + 3);
    assert_eq!(s.maps - start.maps, 8 + 1);
    let start = z.stats();
    let before = counts(&names);
    z.commit(3 * per..4 * per)?;
    let s = z.stats();
    assert_eq!(s.creates - start.creates, 1 + 1);
    assert_eq!(s.unmaps - start.unmaps, 1 + 1);
    assert_eq!(s.maps - start.maps, 3 + 1 + 1);
    assert_eq!(s.set_access_calls - start.set_access_calls, 2 + 1 + 1);
    if on_simulator()? {
        assert_eq!(delta(&before, &counts(&names)), [2, 5, 4, 2]);
    }
    Ok(())
}

#[test]
fn sparse_commit_is_all_or_nothing_under_faults() -> TestResult {
    // Zero memory is allocated here: keep out of the free-memory sweeps' way.
    let _memory = crate::memory_shared();
    if !crate::simulator_or_skip("fault injection needs the simulator")? {
        return Ok(());
    }
    let cuda = cuda()?;
    let d = device()?;
    let g = gran(&d)?;
    let per = g / 4;
    let mut z = sparse(&d, 8, HoleBehavior::Zeros)?;
    z.commit(3 * per..4 * per)?;
    // Runs 1..3 and 4..6: the second run's second map fails.
    let guard = inject_fault("cuMemMap", 4, CUresult::CUDA_ERROR_OUT_OF_MEMORY);
    let names = ["cuMemCreate", "cuMemRelease"];
    let before = counts(&names);
    let err = fails(z.commit(per..6 * per));
    assert!(guard.fired());
    drop(guard);
    assert_eq!(err.code(), Some(CUresult::CUDA_ERROR_OUT_OF_MEMORY.0));
    let d_counts = delta(&before, &counts(&names));
    assert_eq!(d_counts, [4, 4]);
    assert_eq!(runs(&z), [(3, 4)]);
    assert_eq!(z.stats().chunks, 1);
    // Holes are zero-mapped again.
    for tile in [1u64, 2, 4, 5] {
        assert_eq!(raw_read(&cuda, z.ptr() + tile * g as u64, 4)?, [0; 4]);
    }
    assert_eq!(z.commit(per..6 * per)?, 4);
    assert_eq!(runs(&z), [(1, 6)]);
    Ok(())
}

#[test]
fn sparse_tiles_from_a_pool() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    let pool = ChunkPool::new(
        &d,
        PoolConfig {
            chunk_size: 2 * g,
            ..PoolConfig::default()
        },
    )?;
    let per = 2 * g / 4;
    let config = SparseConfig {
        pool: Some(pool.clone()),
        ..SparseConfig::default()
    };
    let mut a = SparseArray::<u32>::new(&d, 8 * per, config.clone())?;
    assert_eq!(a.tile_bytes(), 2 * g);
    a.commit(0..4 * per)?;
    a.write(0, &words_added(0..4 * per, 4))?;
    assert_eq!(a.decommit(0..4 * per)?, 4);
    assert_eq!(a.stats().releases, 0);
    assert_eq!(pool.stats().chunks_held, 4);
    let mut b = SparseArray::<u32>::new(&d, 8 * per, config)?;
    let before = counts(&["cuMemCreate"]);
    b.commit(2 * per..7 * per)?;
    assert_eq!(b.stats().pool_hits, 4);
    assert_eq!(b.stats().creates, 1);
    if on_simulator()? {
        assert_eq!(delta(&before, &counts(&["cuMemCreate"])), [1]);
    }
    // Reused tiles are zeroed: no data leaks between users.
    let mut out = vec![1u32; 5 * per];
    b.read(2 * per..7 * per, &mut out)?;
    assert!(out.iter().all(|&x| x == 0));
    drop(b);
    let stats = pool.stats();
    assert_eq!((stats.hits, stats.misses, stats.chunks_held), (4, 5, 5));
    Ok(())
}

#[test]
fn sparse_bad_tile_sizes_are_refused() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    let err = fails(SparseArray::<u8>::new(
        &d,
        1 << 20,
        SparseConfig {
            tile_bytes: g + 4096,
            ..SparseConfig::default()
        },
    ));
    assert_eq!(
        err,
        Error::BadTileSize {
            tile_size: g + 4096,
            granularity: g
        }
    );
    let pool = ChunkPool::new(&d, PoolConfig::default())?;
    let err = fails(SparseArray::<u8>::new(
        &d,
        1 << 20,
        SparseConfig {
            tile_bytes: 2 * g,
            pool: Some(pool),
            ..SparseConfig::default()
        },
    ));
    assert_eq!(
        err.to_string(),
        format!(
            "chunk pool mismatch: tile size {} differs from the pool's chunk size {g}",
            2 * g
        )
    );
    Ok(())
}

#[test]
fn sparse_residency_map_of_a_huge_array() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    // 4096 tiles (8 GiB at 2 MiB granularity): drawn as 1024 symbols of 4 tiles.
    let mut a = SparseArray::<u8>::new(&d, 4096 * g, SparseConfig::default())?;
    a.commit(0..6 * g)?;
    a.grant_access(&cuda()?.devices()?)?;
    let text = a.to_string();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some(
            format!(
                "6/4096 tiles committed ({} MiB of {} GiB, tile {} MiB); one symbol per 4 tiles, + = partly committed",
                (6 * g) >> 20,
                (4 * g) >> 20,
                g >> 20
            )
            .as_str()
        )
    );
    assert_eq!(lines.next().map(|l| &l[..10]), Some("#+...... ."));
    assert_eq!(text.lines().count(), 17);
    Ok(())
}

/// A user struct that derives `bytemuck::Pod` is a buffer element with no unsafe code.
#[test]
fn bytemuck_pod_structs_are_elements() -> TestResult {
    let _memory = crate::memory_shared();
    use bytemuck::{Pod, Zeroable};
    #[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
    #[repr(C)]
    struct Particle {
        position: [f32; 3],
        id: u32,
    }
    let d = device()?;
    let mut b = GrowableBuffer::<Particle>::with_max_capacity(&d, 1 << 20)?;
    let p = Particle {
        position: [1.0, 2.0, 3.0],
        id: 7,
    };
    b.extend_from_slice(&[p; 1000])?;
    b.resize(5000, Particle::zeroed())?;
    let v = b.to_vec()?;
    assert_eq!(v[999], p);
    assert_eq!(v[4999], Particle::zeroed());
    Ok(())
}
