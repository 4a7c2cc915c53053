//! Adversarial review of the class 7 fixes: every fault point of a shrink under
//! `Placement::RoundRobin` leaves the rotation as it was, and a failed growth leaves the
//! blocked-time stats and the prefetch queue as they were. Class 9 (ChunkPool) is in
//! `adversarial_pool.rs`. Each test names the class and the defect it guards.

use cuda_vmm::Device;
use cuda_vmm_alloc::{
    BufferConfig, ChunkPool, GrowableBuffer, GrowthPolicy, HoleBehavior, Placement, PoolConfig,
    SparseArray, SparseConfig,
};
use cuda_vmm_sim::inject_fault;
use cuda_vmm_sys::CUresult;

use crate::two_simulated_devices_and_granule;
use cuda_vmm_tests::helpers::TestResult;

/// The device ordinal of each chunk of `b`, in address order, with its size in granules.
fn layout(b: &GrowableBuffer<u8>, g: usize) -> Vec<(usize, usize)> {
    b.chunk_allocations()
        .map(|(_, a)| (a.device().ordinal(), a.size() / g))
        .collect()
}

/// A byte buffer of `d0` striping three-granule chunks over `d0` and `d1`, holding a
/// granule and a bit in its first chunk (so that a shrink replaces that chunk by two granules).
fn striped_straddling(
    d0: &Device,
    d1: &Device,
    g: usize,
) -> cuda_vmm_alloc::Result<GrowableBuffer<u8>> {
    let mut b = GrowableBuffer::new(
        d0,
        BufferConfig {
            max_capacity: Some(32 * g),
            policy: GrowthPolicy::fixed(3 * g),
            placement: Placement::RoundRobin(vec![d0.clone(), d1.clone()]),
            ..Default::default()
        },
    )?;
    let data: Vec<u8> = (0..g + 17).map(|i| (i % 251) as u8).collect();
    b.extend_from_slice(&data)?;
    Ok(b)
}

/// Class 7: a failed `shrink_to_fit` under `Placement::RoundRobin` kept the turn its
/// scratch replacement chunk took (when the scratch unmap, the old chunk's unmap, or the
/// replacement's remap failed), although the buffer kept its old chunk: the next growth
/// landed on the device the kept chunk already used. Every fault point of the shrink is
/// tried; a failed shrink leaves the buffer and its rotation exactly as a buffer that never
/// shrank, a shrink that absorbed the fault exactly as one that saw none.
#[test]
fn failed_round_robin_shrink_gives_its_turn_back() -> TestResult {
    let Some((d0, d1, g)) = two_simulated_devices_and_granule()? else {
        return Ok(());
    };
    let _memory = crate::memory_shared();
    // The twins: one never shrank, one shrank without a fault; both then grow twice.
    let grow = |b: &mut GrowableBuffer<u8>| -> cuda_vmm_alloc::Result<()> {
        b.reserve(b.capacity() - b.len() + 1)?;
        b.reserve(b.capacity() - b.len() + 1)
    };
    let mut unshrunk = striped_straddling(&d0, &d1, g)?;
    let contents = unshrunk.to_vec()?;
    grow(&mut unshrunk)?;
    let never_shrank = layout(&unshrunk, g);
    assert_eq!(never_shrank, [(0, 3), (1, 3), (0, 3)]);
    let mut shrunk = striped_straddling(&d0, &d1, g)?;
    shrunk.shrink_to_fit()?;
    assert_eq!(layout(&shrunk, g), [(1, 2)], "the replacement took a turn");
    grow(&mut shrunk)?;
    let shrank = layout(&shrunk, g);
    let code = CUresult::CUDA_ERROR_OUT_OF_MEMORY;
    let mut failures = 0;
    for symbol in [
        "cuMemCreate",
        "cuMemMap",
        "cuMemSetAccess",
        "cuMemUnmap",
        "cuMemcpyDtoDAsync",
        "cuMemcpyDtoD",
        "cuStreamSynchronize",
        "cuCtxSynchronize",
        "cuEventRecord",
        "cuMemRelease",
    ] {
        for nth in 1..=4 {
            let mut b = striped_straddling(&d0, &d1, g)?;
            let guard = inject_fault(symbol, nth, code);
            let result = b.shrink_to_fit();
            drop(guard);
            let what = format!("{symbol} #{nth}");
            assert_eq!(b.to_vec()?, contents, "{what}: the contents");
            match result {
                Ok(()) => {
                    assert_eq!(layout(&b, g), [(1, 2)], "{what}: shrank");
                    grow(&mut b)?;
                    assert_eq!(layout(&b, g), shrank, "{what}: after a shrink");
                }
                // The old chunk's release was refused (retried as its handle drops):
                // the replacement is in place and took its turn.
                Err(e) if symbol == "cuMemRelease" => {
                    assert_eq!(e.code(), Some(code.0), "{what}: {e}");
                    assert_eq!(layout(&b, g), [(1, 2)], "{what}: replaced");
                    grow(&mut b)?;
                    assert_eq!(layout(&b, g), shrank, "{what}: after the refused release");
                }
                Err(e) => {
                    failures += 1;
                    assert_eq!(e.code(), Some(code.0), "{what}: {e}");
                    assert_eq!(b.committed_bytes(), 3 * g, "{what}: committed");
                    assert_eq!(layout(&b, g), [(0, 3)], "{what}: the old chunk stays");
                    grow(&mut b)?;
                    assert_eq!(layout(&b, g), never_shrank, "{what}: after a failed shrink");
                }
            }
            assert_eq!(b.stats().chunks, b.chunk_allocations().count(), "{what}");
        }
    }
    assert!(
        failures >= 5,
        "only {failures} fault points failed the shrink"
    );
    Ok(())
}

/// A byte buffer of `d0` growing one granule per step, striped over `d0` and `d1`.
fn striped_steps(
    d0: &Device,
    d1: &Device,
    g: usize,
    prefetch: bool,
) -> cuda_vmm_alloc::Result<GrowableBuffer<u8>> {
    GrowableBuffer::new(
        d0,
        BufferConfig {
            max_capacity: Some(64 * g),
            policy: GrowthPolicy::fixed(g),
            placement: Placement::RoundRobin(vec![d0.clone(), d1.clone()]),
            prefetch,
            ..Default::default()
        },
    )
}

/// What a failed call must leave as it was, besides the chunks: the blocked-time counts.
fn blocked(b: &GrowableBuffer<u8>) -> (u64, u64, u64) {
    let s = b.blocked_stats();
    (s.calls, s.grew, s.prefetched)
}

/// Class 7: a growth that failed after its commit (its copy failed) was counted in
/// `blocked_stats` as a growing call that grew (and as prefetched when it adopted a step),
/// while one failing in the commit itself was not counted at all: a failed call changed
/// the stats depending on where it failed. A failed call leaves `blocked_stats` as it was,
/// at every fault point, like a twin that never made the call.
#[test]
fn failed_growth_leaves_blocked_stats_as_before() -> TestResult {
    let Some((d0, d1, g)) = two_simulated_devices_and_granule()? else {
        return Ok(());
    };
    let _memory = crate::memory_shared();
    let mut twin = striped_steps(&d0, &d1, g, false)?;
    twin.extend_from_slice(&vec![1; g])?;
    let code = CUresult::CUDA_ERROR_OUT_OF_MEMORY;
    for (symbol, calls) in [
        ("cuMemCreate", 3),
        ("cuMemMap", 3),
        ("cuMemSetAccess", 1),
        ("cuMemcpyHtoDAsync", 1),
    ] {
        for nth in 1..=calls {
            let mut b = striped_steps(&d0, &d1, g, false)?;
            b.extend_from_slice(&vec![1; g])?;
            let guard = inject_fault(symbol, nth, code);
            let failed = b.extend_from_slice(&vec![2; 3 * g]);
            drop(guard);
            let err = failed.expect_err("the injected fault");
            assert_eq!(err.code(), Some(code.0), "{symbol} #{nth}: {err}");
            assert_eq!(blocked(&b), blocked(&twin), "{symbol} #{nth}");
            assert_eq!(
                b.committed_bytes(),
                twin.committed_bytes(),
                "{symbol} #{nth}"
            );
            assert_eq!(layout(&b, g), layout(&twin, g), "{symbol} #{nth}");
        }
    }
    Ok(())
}

/// Class 7: a growth that adopted a prefetched step and then failed gave the step back but
/// left the worker's queue behind the rolled-back edge (the next queued step starting past
/// it), so the next growths found no usable step and committed in line until the queue
/// drained: the failed call changed the prefetch state. After a failed growth the next
/// growths are served by the worker exactly as in a twin that never failed, on the same
/// devices.
#[test]
fn failed_prefetched_growth_leaves_the_prefetch_queue_usable() -> TestResult {
    let Some((d0, d1, g)) = two_simulated_devices_and_granule()? else {
        return Ok(());
    };
    let _memory = crate::memory_shared();
    let mut twin = striped_steps(&d0, &d1, g, true)?;
    let mut b = striped_steps(&d0, &d1, g, true)?;
    for buffer in [&mut twin, &mut b] {
        buffer.extend_from_slice(&vec![1; g])?;
    }
    for (symbol, size) in [("cuMemcpyHtoDAsync", g), ("cuMemcpyHtoDAsync", 5 * g)] {
        let guard = inject_fault(symbol, 1, CUresult::CUDA_ERROR_INVALID_VALUE);
        let failed = b.extend_from_slice(&vec![9; size]);
        drop(guard);
        let err = failed.expect_err("the injected copy fault");
        assert_eq!(
            err.code(),
            Some(CUresult::CUDA_ERROR_INVALID_VALUE.0),
            "{err}"
        );
        assert_eq!(
            blocked(&b),
            blocked(&twin),
            "after the failed {size}-byte append"
        );
    }
    for round in 0..4u8 {
        for buffer in [&mut twin, &mut b] {
            buffer.extend_from_slice(&vec![round; g])?;
        }
        assert_eq!(blocked(&b), blocked(&twin), "round {round}");
        assert_eq!(layout(&b, g), layout(&twin, g), "round {round}");
    }
    assert_eq!(
        twin.blocked_stats().prefetched,
        5,
        "the twin's steps were prefetched"
    );
    Ok(())
}

/// The home device of each tile of `a` (`None` for a hole or a spare), its spare count and
/// committed bytes.
fn tiles(a: &SparseArray<u32>) -> (Vec<Option<usize>>, usize, usize) {
    let homes = (0..a.tile_count())
        .map(|t| a.tile_allocation(t).map(|x| x.device().ordinal()))
        .collect();
    (homes, a.spare_count(), a.committed_bytes())
}

/// Class 7: a `SparseArray::commit` of two runs of new tiles (the last with spare tiles
/// ahead of it, or not; holes erroring or reading zeros) under `Placement::RoundRobin`, failed at every fault point of every driver
/// call it makes, leaves the tiles, spares, committed bytes and rotation as before: the
/// same commit retried lands every tile where a twin that never failed put it.
#[test]
fn failed_round_robin_sparse_commit_of_two_runs_is_undone_at_every_fault_point() -> TestResult {
    let Some((d0, d1, g)) = two_simulated_devices_and_granule()? else {
        return Ok(());
    };
    let _memory = crate::memory_shared();
    let per_tile = g / 4;
    let configs = [
        (HoleBehavior::Error, 0),
        (HoleBehavior::Error, 2),
        (HoleBehavior::Zeros, 0),
        (HoleBehavior::Zeros, 2),
    ];
    for (hole, spare_tiles) in configs {
        let array = || -> cuda_vmm_alloc::Result<SparseArray<u32>> {
            let mut a = SparseArray::<u32>::new(
                &d0,
                12 * per_tile,
                SparseConfig {
                    tile_bytes: g,
                    spare_tiles,
                    holes: hole,
                    placement: Placement::RoundRobin(vec![d0.clone(), d1.clone()]),
                    ..Default::default()
                },
            )?;
            // Tile 0 (with spares 1 and 2), then tile 4 alone.
            a.commit(0..1)?;
            a.commit(4 * per_tile..4 * per_tile + 1)?;
            Ok(a)
        };
        // Tiles 2..7: 2 is a spare, 4 is committed, runs 3 and 5..7 (with spares 7, 8).
        let range = 2 * per_tile..7 * per_tile;
        let mut twin = array()?;
        let before = tiles(&twin);
        twin.commit(range.clone())?;
        let after = tiles(&twin);
        let code = CUresult::CUDA_ERROR_OUT_OF_MEMORY;
        let mut failures = 0;
        for symbol in [
            "cuMemCreate",
            "cuMemMap",
            "cuMemSetAccess",
            "cuMemUnmap",
            "cuMemsetD8",
        ] {
            for nth in 1..=6 {
                let what = format!("{hole:?}, {spare_tiles} spares, {symbol} #{nth}");
                let mut a = array()?;
                let guard = inject_fault(symbol, nth, code);
                let result = a.commit(range.clone());
                drop(guard);
                if let Err(e) = result {
                    failures += 1;
                    assert_eq!(e.code(), Some(code.0), "{what}: {e}");
                    assert_eq!(tiles(&a), before, "{what}: the failed commit");
                    a.commit(range.clone())?;
                    assert_eq!(tiles(&a), after, "{what}: retried");
                } else {
                    // A fault in the spare batch falls back to the tiles asked for: the same
                    // tiles on the same devices, only the batch's two spares missing.
                    let (homes, spares, bytes) = tiles(&a);
                    assert_eq!((&homes, bytes), (&after.0, after.2), "{what}");
                    assert!(
                        spares == after.1 || spares + 2 == after.1,
                        "{what}: {spares}"
                    );
                }
                let mut out = vec![1u32; range.len()];
                a.read(range.clone(), &mut out)?;
                assert!(
                    out.iter().all(|&x| x == 0),
                    "{what}: new tiles read as zero"
                );
            }
        }
        assert!(
            failures >= 3,
            "{hole:?}, {spare_tiles} spares: only {failures} faults failed the commit"
        );
    }
    Ok(())
}

/// Class 7: `DriverStats` counts driver calls when attempted, failed ones included, and
/// `creates` includes the pool's creates on a miss; but a pooled growth whose pool failed a
/// create counted none of the creates the pool attempted (nor the releases of those it
/// made), where the same growth without a pool counted them all. A failed pooled growth
/// counts exactly what an unpooled one does.
#[test]
fn failed_pooled_growth_counts_the_creates_it_attempted() -> TestResult {
    let Some((d, g)) = crate::simulated_device(crate::FAULT_INJECTION)? else {
        return Ok(());
    };
    let _memory = crate::memory_shared();
    let buffer = |pool: Option<ChunkPool>| {
        GrowableBuffer::<u8>::new(
            &d,
            BufferConfig {
                max_capacity: Some(8 * g),
                policy: GrowthPolicy::fixed(g),
                pool,
                ..Default::default()
            },
        )
    };
    let code = CUresult::CUDA_ERROR_OUT_OF_MEMORY;
    for nth in 1..=3 {
        let mut counts = Vec::new();
        for pooled in [false, true] {
            let pool = ChunkPool::new(&d, PoolConfig::default())?;
            let mut b = buffer(pooled.then_some(pool))?;
            let guard = inject_fault("cuMemCreate", nth, code);
            let err = b
                .extend_from_slice(&vec![1; 3 * g])
                .expect_err("the injected create fault");
            drop(guard);
            assert_eq!(err.code(), Some(code.0), "create #{nth}: {err}");
            let s = b.stats();
            counts.push((s.creates, s.releases, s.pool_hits, s.chunks));
        }
        assert_eq!(counts[0], (nth, nth - 1, 0, 0), "unpooled, create #{nth}");
        assert_eq!(counts[1], counts[0], "pooled, create #{nth}");
    }
    Ok(())
}

/// Class 7: the prefetch worker places its steps at the turns the buffer's rotation
/// assigns; this checks that no mix of large appends, truncates, shrinks (whole chunks
/// released, the queued steps given back) and failed appends with steps in flight makes
/// the worker's placement drift from the buffer's: after every operation the chunks lie on
/// the devices a twin without prefetch puts them on, with the same length and contents.
#[test]
fn prefetched_placement_never_drifts_from_an_inline_twin() -> TestResult {
    let Some((d0, d1, g)) = two_simulated_devices_and_granule()? else {
        return Ok(());
    };
    let _memory = crate::memory_shared();
    let mut inline = striped_steps(&d0, &d1, g, false)?;
    let mut ahead = striped_steps(&d0, &d1, g, true)?;
    let fault = CUresult::CUDA_ERROR_INVALID_VALUE;
    // (bytes to append, whether the append's copy fails, length to truncate to, shrink)
    let ops: [(usize, bool, Option<usize>, bool); 10] = [
        (g, false, None, false),
        (5 * g, false, None, false),
        (3 * g, true, None, false),
        (g / 2, false, Some(2 * g + 1), true),
        (g, true, None, false),
        (7 * g, false, Some(3 * g), false),
        (g, false, None, true),
        (2 * g, true, Some(g), true),
        (3 * g + 5, false, None, false),
        (g, false, Some(0), true),
    ];
    for (i, (bytes, fails, truncate, shrink)) in ops.into_iter().enumerate() {
        for b in [&mut inline, &mut ahead] {
            let data = vec![i as u8; bytes];
            if fails {
                let guard = inject_fault("cuMemcpyHtoDAsync", 1, fault);
                let err = b
                    .extend_from_slice(&data)
                    .expect_err("the injected copy fault");
                drop(guard);
                assert_eq!(err.code(), Some(fault.0), "op {i}: {err}");
            } else {
                b.extend_from_slice(&data)?;
            }
            if let Some(len) = truncate {
                b.truncate(len);
            }
            if shrink {
                b.shrink_to_fit()?;
            }
        }
        assert_eq!(layout(&ahead, g), layout(&inline, g), "op {i}: placement");
        assert_eq!(ahead.len(), inline.len(), "op {i}");
        assert_eq!(ahead.to_vec()?, inline.to_vec()?, "op {i}");
    }
    assert!(
        ahead.blocked_stats().prefetched > 0,
        "the worker served steps"
    );
    Ok(())
}
