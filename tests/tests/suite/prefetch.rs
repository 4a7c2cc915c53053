//! Background commit (`GrowableBuffer::set_prefetch`): growth takes the worker's steps, stays
//! transactional, and shrinking, turning it off and dropping with a step in flight leak
//! nothing. Fault injection and free-memory checks run on the simulator only (faults are
//! per thread: they hit the caller's in-line commits and copies, not the worker's).

use cuda_vmm::sys::CUresult;
use cuda_vmm::Device;
use cuda_vmm_alloc::{BufferConfig, ChunkPool, GrowableBuffer, GrowthPolicy, PoolConfig};
use cuda_vmm_sim::inject_fault;

use crate::device;
use cuda_vmm_tests::helpers::{gran, words_xored, TestResult};

/// Proportional steps of whole granules: several growth steps in a few MiB.
fn steps(g: usize) -> GrowthPolicy {
    GrowthPolicy {
        min_chunk: g,
        max_chunk: 4 * g,
        factor: 0.5,
        max_allocation: 0,
        churn_allocation: 0,
    }
}

fn buffer(d: &Device, g: usize, policy: GrowthPolicy, prefetch: bool) -> GrowableBuffer<u32> {
    let config = BufferConfig {
        max_capacity: Some(64 * g / 4),
        policy,
        prefetch,
        ..BufferConfig::default()
    };
    GrowableBuffer::new(d, config).unwrap()
}

#[test]
fn prefetched_growth_commits_what_inline_growth_does() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    let mut inline = buffer(&d, g, steps(g), false);
    let mut ahead = buffer(&d, g, steps(g), true);
    assert!(ahead.prefetch() && !inline.prefetch());
    let ptr = ahead.ptr();
    let mut host = Vec::new();
    // Appends of a third of a granule: many calls per step.
    for i in 0..60 {
        let data = words_xored(host.len()..host.len() + g / 12, i);
        inline.extend_from_slice(&data)?;
        ahead.extend_from_slice(&data)?;
        host.extend_from_slice(&data);
        assert_eq!(
            ahead.committed_bytes(),
            inline.committed_bytes(),
            "append {i}"
        );
        assert_eq!(ahead.ptr(), ptr);
    }
    assert_eq!(ahead.to_vec()?, host);
    let (b, s) = (ahead.blocked_stats(), ahead.stats());
    assert_eq!(b.calls, 60);
    // Every step was taken ready-made: one commit each, as in line.
    assert_eq!(b.grew, inline.blocked_stats().grew);
    assert_eq!(b.prefetched, b.grew);
    assert_eq!(inline.blocked_stats().prefetched, 0);
    assert_eq!(s.chunks, inline.stats().chunks);
    assert_eq!(s.set_access_calls, inline.stats().set_access_calls);
    // Turning it off gives the step in flight back.
    ahead.set_prefetch(false)?;
    let s = ahead.stats();
    assert_eq!(s.creates, s.releases + s.chunks as u64, "{s:?}");
    assert_eq!(s.maps, s.unmaps + s.chunks as u64, "{s:?}");
    assert_eq!(ahead.committed_bytes(), inline.committed_bytes());
    assert_eq!(ahead.to_vec()?, host);
    Ok(())
}

#[test]
fn shrinking_with_a_step_in_flight_gives_it_back() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    let mut buf = buffer(&d, g, GrowthPolicy::fixed(2 * g), true);
    buf.resize(3 * g / 4, 5)?;
    buf.truncate(g / 4);
    buf.shrink_to_fit()?;
    assert_eq!(buf.committed_bytes(), g);
    let s = buf.stats();
    assert_eq!(s.chunks, 1);
    // The pending step was collected and released: nothing is mapped past the buffer.
    assert_eq!(s.maps, s.unmaps + 1, "{s:?}");
    assert_eq!(s.creates, s.releases + 1, "{s:?}");
    assert_eq!(buf.to_vec()?, vec![5; g / 4]);
    // Growth asks for steps again: the first resize took one, the last takes another.
    assert_eq!(buf.blocked_stats().prefetched, 1);
    buf.resize(3 * g, 6)?;
    assert_eq!(buf.blocked_stats().prefetched, 1);
    buf.resize(5 * g, 7)?;
    assert_eq!(buf.blocked_stats().prefetched, 2);
    Ok(())
}

#[test]
fn dropping_with_a_step_in_flight_leaks_nothing() -> TestResult {
    // Exclusive: every allocating test holds the lock shared, so one measurement is
    // undisturbed.
    let _memory = crate::memory_exclusive();
    let Some((d, g)) =
        crate::simulated_device("free-memory accounting is checked on the simulator only")?
    else {
        return Ok(());
    };
    let free_before = d.memory_info()?.free;
    let mut buf = buffer(&d, g, GrowthPolicy::fixed(4 * g), true);
    buf.extend_from_slice(&words_xored(0..g, 1))?;
    // The next step is requested now and may still be in flight.
    drop(buf);
    assert_eq!(
        d.memory_info()?.free,
        free_before,
        "dropping a prefetching buffer did not give all memory back"
    );
    Ok(())
}

#[test]
fn prefetched_growth_is_transactional_under_faults() -> TestResult {
    let _memory = crate::memory_shared();
    let Some((d, g)) = crate::simulated_device("fault injection needs the simulator")? else {
        return Ok(());
    };
    let mut buf = buffer(&d, g, GrowthPolicy::fixed(g), true);
    let host = words_xored(0..g / 4 + 3, 1);
    buf.extend_from_slice(&host)?;
    let (committed, chunks) = (buf.committed_bytes(), buf.stats().chunks);
    // Two one-granule steps are prefetched; this append needs three granules: two adopted,
    // one in line. The copy or an in-line call fails: the adopted steps go back too.
    let extra = words_xored(host.len()..host.len() + 3 * g / 4, 2);
    let faults = [
        ("cuMemcpyHtoDAsync", 1, CUresult::CUDA_ERROR_INVALID_VALUE),
        ("cuMemCreate", 1, CUresult::CUDA_ERROR_OUT_OF_MEMORY),
        ("cuMemSetAccess", 1, CUresult::CUDA_ERROR_INVALID_VALUE),
    ];
    // Failed creates count as calls, with nothing to release.
    let mut failed_creates = 0;
    for (symbol, nth, code) in faults {
        let guard = inject_fault(symbol, nth, code);
        assert!(guard.is_armed());
        let result = buf.extend_from_slice(&extra);
        assert!(guard.fired(), "{symbol} #{nth} did not fire");
        drop(guard);
        let err = result.expect_err("the injected fault must fail the append");
        assert_eq!(err.code(), Some(code.0), "{symbol} #{nth}: {err}");
        assert_eq!(buf.len(), host.len());
        assert_eq!(buf.committed_bytes(), committed);
        assert_eq!(buf.stats().chunks, chunks);
        assert_eq!(buf.to_vec()?, host);
        failed_creates += u64::from(symbol == "cuMemCreate");
        let s = buf.stats();
        let live = s.releases + s.chunks as u64 + failed_creates;
        assert_eq!(s.creates, live, "{symbol}: {s:?}");
        // Let the worker stage steps again before the next fault.
        buf.reserve(0)?;
    }
    // An append that takes one of the two queued steps fails in its copy: the other step
    // now lies past the growth edge, and the next growth gives it back and commits in line.
    let one_step = words_xored(host.len()..host.len() + g / 4 - 2, 3);
    let guard = inject_fault("cuMemcpyHtoDAsync", 1, CUresult::CUDA_ERROR_INVALID_VALUE);
    let err = buf
        .extend_from_slice(&one_step)
        .expect_err("the injected copy fault");
    drop(guard);
    assert_eq!(err.code(), Some(CUresult::CUDA_ERROR_INVALID_VALUE.0));
    assert_eq!(buf.committed_bytes(), committed);
    buf.extend_from_slice(&extra)?;
    let s = buf.stats();
    // Collected steps are counted: every mapping is either live or unmapped.
    assert_eq!(s.maps, s.unmaps + s.chunks as u64, "{s:?}");
    assert_eq!(buf.committed_bytes(), 5 * g);
    let mut all = host;
    all.extend_from_slice(&extra);
    assert_eq!(buf.to_vec()?, all);
    Ok(())
}

#[test]
fn pooled_prefetch_hands_every_chunk_back() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    let pool = ChunkPool::new(
        &d,
        PoolConfig {
            chunk_size: g,
            max_chunks: 32,
            max_bytes: 32 * g,
            ..PoolConfig::default()
        },
    )?;
    assert_eq!(pool.prefill(16)?, 16);
    let config = BufferConfig {
        max_capacity: Some(32 * g),
        policy: steps(g),
        pool: Some(pool.clone()),
        prefetch: true,
        ..BufferConfig::default()
    };
    let mut buf = GrowableBuffer::<u8>::new(&d, config)?;
    let mut host = Vec::new();
    for k in 0..10u32 {
        let data: Vec<u8> = words_xored(host.len()..host.len() + g / 8, k)
            .iter()
            .flat_map(|w| w.to_le_bytes())
            .collect();
        buf.extend_from_slice(&data)?;
        host.extend_from_slice(&data);
    }
    assert_eq!(buf.to_vec()?, host);
    let s = buf.stats();
    assert!(s.pool_hits >= 5, "{s:?}");
    assert_eq!(buf.blocked_stats().prefetched, buf.blocked_stats().grew);
    // Steps in flight and committed chunks all go back to the pool.
    drop(buf);
    let p = pool.stats();
    assert_eq!(p.releases, 0, "{p:?}");
    assert_eq!(p.chunks_held as u64, 16 + p.misses, "{p:?}");
    Ok(())
}
