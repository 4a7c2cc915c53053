//! The allocator: chunk pool.

use super::*;

#[test]
fn pooled_buffers_reuse_chunks() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    let pool = ChunkPool::new(&d, PoolConfig::default())?;
    assert_eq!(pool.chunk_size(), g);
    let config = BufferConfig {
        max_capacity: Some(16 << 20),
        policy: GrowthPolicy::fixed(g),
        pool: Some(pool.clone()),
        ..BufferConfig::default()
    };
    let mut first = GrowableBuffer::<u8>::new(&d, config.clone())?;
    first.resize(4 * g, 1)?;
    assert_eq!(first.stats().creates, 4);
    assert_eq!(pool.stats().misses, 4);
    first.truncate(g);
    first.shrink_to_fit()?;
    assert_eq!(first.committed_bytes(), g);
    assert_eq!(first.stats().releases, 0);
    assert_eq!(pool.stats().chunks_held, 3);
    drop(first);
    assert_eq!(
        pool.stats(),
        PoolStats {
            hits: 0,
            misses: 4,
            returns: 4,
            releases: 0,
            chunks_held: 4,
            bytes_held: 4 * g,
            pending_returns: 0,
        }
    );
    let before = counts(&["cuMemCreate", "cuMemRelease"]);
    let mut second = GrowableBuffer::<u8>::new(&d, config)?;
    second.resize(5 * g, 2)?;
    assert_eq!(second.stats().pool_hits, 4);
    assert_eq!(second.stats().creates, 1);
    assert_eq!(second.stats().set_access_calls, 1);
    if on_simulator()? {
        assert_eq!(
            delta(&before, &counts(&["cuMemCreate", "cuMemRelease"])),
            [1, 0]
        );
    }
    assert_eq!(second.to_vec()?, vec![2u8; 5 * g]);
    let stats = pool.stats();
    assert_eq!((stats.hits, stats.misses, stats.chunks_held), (4, 5, 0));
    Ok(())
}

#[test]
fn pooled_growth_is_transactional_under_faults() -> TestResult {
    let _memory = crate::memory_shared();
    let Some((d, g)) = crate::simulated_device("fault injection needs the simulator")? else {
        return Ok(());
    };
    let pool = ChunkPool::new(&d, PoolConfig::default())?;
    assert_eq!(pool.prefill(2)?, 2);
    let mut buf = GrowableBuffer::<u8>::new(
        &d,
        BufferConfig {
            max_capacity: Some(16 << 20),
            policy: GrowthPolicy::fixed(g),
            pool: Some(pool.clone()),
            ..BufferConfig::default()
        },
    )?;
    let held = PoolStats {
        chunks_held: 2,
        bytes_held: 2 * g,
        ..PoolStats::default()
    };
    assert_eq!(pool.stats(), held);
    // Growing by 4 chunks takes the 2 cached ones and creates 2: fail the second create.
    let before = counts(&["cuMemRelease"]);
    let guard = inject_fault("cuMemCreate", 2, CUresult::CUDA_ERROR_OUT_OF_MEMORY);
    let err = fails(buf.resize(4 * g, 1));
    assert!(guard.fired());
    drop(guard);
    assert_eq!(err.code(), Some(CUresult::CUDA_ERROR_OUT_OF_MEMORY.0));
    assert_eq!(pool.stats(), held);
    assert_eq!(delta(&before, &counts(&["cuMemRelease"])), [1]);
    assert_eq!((buf.len(), buf.committed_bytes()), (0, 0));
    assert_eq!(buf.stats().pool_hits, 0);
    // Fail the third map: cached chunks go back to the pool, created ones are released.
    let before = counts(&["cuMemRelease", "cuMemUnmap"]);
    let guard = inject_fault("cuMemMap", 3, CUresult::CUDA_ERROR_OUT_OF_MEMORY);
    let err = fails(buf.resize(4 * g, 1));
    assert!(guard.fired());
    drop(guard);
    assert_eq!(err.code(), Some(CUresult::CUDA_ERROR_OUT_OF_MEMORY.0));
    assert_eq!(pool.stats(), held);
    assert_eq!(
        delta(&before, &counts(&["cuMemRelease", "cuMemUnmap"])),
        [2, 2]
    );
    // Calls count when attempted: the failed growth's two creates (one failed, one
    // released), then this one's two creates and their two releases.
    let s = buf.stats();
    assert_eq!((s.creates, s.releases, s.pool_hits, s.chunks), (4, 3, 0, 0));
    assert_eq!((buf.len(), buf.committed_bytes()), (0, 0));
    // Then it succeeds.
    buf.resize(4 * g, 1)?;
    let stats = pool.stats();
    assert_eq!((stats.hits, stats.misses, stats.chunks_held), (2, 2, 0));
    assert_eq!(buf.to_vec()?, vec![1u8; 4 * g]);
    Ok(())
}

#[test]
fn pool_limits_trim_and_mismatch() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    let pool = ChunkPool::new(
        &d,
        PoolConfig {
            max_chunks: 2,
            ..PoolConfig::default()
        },
    )?;
    let chunks = [pool.acquire()?, pool.acquire()?, pool.acquire()?];
    assert_eq!(pool.stats().misses, 3);
    let kept: Vec<bool> = chunks
        .into_iter()
        .map(|c| pool.recycle(c))
        .collect::<Result<_, _>>()?;
    assert_eq!(kept, [true, true, false]);
    let stats = pool.stats();
    assert_eq!(
        (
            stats.returns,
            stats.releases,
            stats.chunks_held,
            stats.bytes_held
        ),
        (2, 1, 2, 2 * g)
    );
    let again = pool.acquire()?;
    assert_eq!(pool.stats().hits, 1);
    assert!(pool.recycle(again)?);
    assert_eq!(pool.trim()?, 2);
    let stats = pool.stats();
    assert_eq!(
        (stats.releases, stats.chunks_held, stats.bytes_held),
        (3, 0, 0)
    );
    assert_eq!(pool.prefill(5)?, 2); // bounded by max_chunks
    assert_eq!(pool.stats().chunks_held, 2);

    let fd_props = AllocationProps::device(&d).handle_types(HandleTypes::POSIX_FD);
    let err = fails(GrowableBuffer::<u8>::new(
        &d,
        BufferConfig {
            pool: Some(pool.clone()),
            props: Some(fd_props),
            ..BufferConfig::default()
        },
    ));
    match err {
        Error::PoolMismatch { message } => assert!(
            message.starts_with("the buffer has properties "),
            "{message}"
        ),
        other => panic!("expected a pool mismatch, got {other:?}"),
    }
    let big = cuda_vmm::Allocation::new(&d, 2 * g, &AllocationProps::device(&d))?;
    assert_eq!(
        fails(pool.recycle(big).map_err(Error::from)).to_string(),
        format!(
            "chunk pool mismatch: allocation size {} differs from the pool's chunk size {g}",
            2 * g
        )
    );
    let err = fails(ChunkPool::new(
        &d,
        PoolConfig {
            chunk_size: g + 4096,
            ..PoolConfig::default()
        },
    ));
    assert_eq!(
        err.to_string(),
        format!(
            "invalid configuration: pool chunk size {} is not a multiple of the allocation granularity {g}",
            g + 4096
        )
    );
    Ok(())
}

#[test]
fn pool_is_shared_between_threads() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let pool = ChunkPool::new(&d, PoolConfig::default())?;
    std::thread::scope(|s| {
        for _ in 0..2 {
            let pool = pool.clone();
            s.spawn(move || {
                for _ in 0..4 {
                    let c = pool.acquire().expect("acquire");
                    pool.recycle(c).expect("recycle");
                }
            });
        }
    });
    let stats = pool.stats();
    assert_eq!(stats.hits + stats.misses, 8);
    assert_eq!(stats.returns, 8);
    assert_eq!(stats.chunks_held as u64, stats.misses);
    Ok(())
}
