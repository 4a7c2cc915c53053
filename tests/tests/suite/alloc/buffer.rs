//! The allocator: growable buffer.

use super::*;

#[test]
fn buffer_grows_in_place_and_keeps_contents() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    let mut buf = buffer_with::<u32>(&d, 16 << 20, small_chunks(g))?;
    assert!(buf.is_empty());
    assert_eq!(buf.capacity(), 0);
    assert_eq!(buf.committed_bytes(), 0);
    assert_eq!(buf.reserved_bytes(), 64 << 20);
    assert_eq!(buf.max_capacity(), 16 << 20);
    let ptr = buf.ptr();
    let mut host = Vec::new();
    buf.push(7)?;
    host.push(7);
    // Irregular appends that cross many chunk boundaries.
    for (i, n) in [1usize, 1000, 300_000, 777_777, 3, 1_500_000]
        .iter()
        .enumerate()
    {
        let data = words_added(host.len()..host.len() + n, i as u32);
        buf.extend_from_slice(&data)?;
        host.extend_from_slice(&data);
        assert_eq!(buf.ptr(), ptr, "the pointer moved");
        assert_eq!(buf.len(), host.len());
        assert!(buf.capacity() >= buf.len());
    }
    assert_eq!(buf.to_vec()?, host);
    let stats = buf.stats();
    assert!(stats.chunks >= 4, "{stats:?}");
    assert_eq!(stats.creates, stats.chunks as u64);
    assert_eq!(stats.maps, stats.chunks as u64);
    assert_eq!(stats.peak_committed_bytes, buf.committed_bytes());
    assert_eq!(buf.committed_bytes() % g, 0);

    // Overwrite a window spanning a chunk boundary, read a window back.
    let window = words_added(0..100_000, 99);
    buf.write(1_000_000, &window)?;
    host[1_000_000..1_100_000].copy_from_slice(&window);
    let mut out = vec![0u32; 200_000];
    buf.read(950_000..1_150_000, &mut out)?;
    assert_eq!(out, host[950_000..1_150_000]);
    assert_eq!(buf.to_vec()?, host);
    Ok(())
}

#[test]
fn buffer_range_errors_name_the_values() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let mut buf = GrowableBuffer::<u32>::with_max_capacity(&d, 1 << 20)?;
    buf.extend_from_slice(&[1, 2, 3])?;
    let mut out = [0u32; 2];
    assert_eq!(
        fails(buf.read(2..4, &mut out)),
        Error::OutOfRange {
            what: "read",
            start: 2,
            end: 4,
            len: 3
        }
    );
    assert_eq!(
        fails(buf.read(0..3, &mut out)),
        Error::LengthMismatch {
            expected: 3,
            actual: 2
        }
    );
    assert_eq!(
        fails(buf.write(2, &[9, 9])).to_string(),
        "write range 2..4 is out of bounds for length 3"
    );
    assert_eq!(buf.to_vec()?, [1, 2, 3]);
    Ok(())
}

#[test]
fn resize_fills_on_the_device() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    let mut buf = buffer_with::<u32>(&d, 8 << 20, small_chunks(g))?;
    // memset paths (all bytes equal), then the staged pattern path (> 64 KiB of data).
    buf.resize(100_000, 0)?;
    buf.resize(250_001, u32::MAX)?;
    buf.resize(1_300_000, 0x0102_0304)?;
    let mut host = vec![0u32; 100_000];
    host.resize(250_001, u32::MAX);
    host.resize(1_300_000, 0x0102_0304);
    assert_eq!(buf.to_vec()?, host);
    // Shrinking with resize truncates.
    buf.resize(10, 5)?;
    assert_eq!(buf.to_vec()?, host[..10]);

    // Odd-sized elements: the pattern straddles chunk boundaries.
    let mut odd = buffer_with::<[u8; 3]>(&d, 4 << 20, small_chunks(g))?;
    odd.resize(1_000_003, [1, 2, 3])?;
    odd.resize(1_000_010, [4, 4, 4])?;
    let mut expect = vec![[1u8, 2, 3]; 1_000_003];
    expect.resize(1_000_010, [4, 4, 4]);
    assert_eq!(odd.to_vec()?, expect);
    Ok(())
}

#[test]
fn reserve_truncate_and_clear_keep_memory() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    let mut buf = GrowableBuffer::<u64>::new(
        &d,
        BufferConfig {
            max_capacity: Some(4 << 20),
            initial_capacity: 1,
            policy: GrowthPolicy::fixed(g),
            ..BufferConfig::default()
        },
    )?;
    assert_eq!(buf.committed_bytes(), g);
    assert_eq!(buf.len(), 0);
    buf.reserve(g / 8 * 3)?;
    assert_eq!(buf.committed_bytes(), 3 * g);
    assert_eq!(buf.capacity(), g / 8 * 3);
    assert_eq!(buf.len(), 0);
    buf.extend_from_slice(&[1, 2, 3, 4])?;
    buf.truncate(2);
    assert_eq!(buf.to_vec()?, [1, 2]);
    buf.truncate(10);
    assert_eq!(buf.len(), 2);
    buf.clear();
    assert!(buf.is_empty());
    assert_eq!(buf.committed_bytes(), 3 * g);
    Ok(())
}

#[test]
fn capacity_exceeded_leaves_the_buffer_alone() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    // 1000 u32s round up to one granule of address space.
    let mut buf = GrowableBuffer::<u32>::with_max_capacity(&d, 1000)?;
    let max = g / 4;
    assert_eq!(buf.max_capacity(), max);
    buf.resize(max - 1, 3)?;
    let before = buf.stats();
    assert_eq!(
        fails(buf.extend_from_slice(&[1, 2])),
        Error::CapacityExceeded {
            requested: max + 1,
            max
        }
    );
    assert_eq!(
        fails(buf.reserve(usize::MAX)),
        Error::CapacityExceeded {
            requested: usize::MAX,
            max
        }
    );
    assert_eq!(
        fails(buf.resize(max + 5, 0)).to_string(),
        format!(
            "a capacity of {} elements exceeds the reserved maximum of {max} elements",
            max + 5
        )
    );
    assert_eq!(buf.len(), max - 1);
    assert_eq!(buf.stats(), before);
    buf.push(9)?;
    assert_eq!(buf.len(), max);
    let mut last = [0u32; 2];
    buf.read(max - 2..max, &mut last)?;
    assert_eq!(last, [3, 9]);
    Ok(())
}

#[test]
fn zero_sized_elements_and_bad_policies_are_refused() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let err = fails(GrowableBuffer::<[u32; 0]>::with_max_capacity(&d, 10));
    assert_eq!(
        err,
        Error::ZeroSizedElement {
            type_name: "[u32; 0]"
        }
    );
    let err = fails(GrowableBuffer::<u8>::new(
        &d,
        BufferConfig {
            policy: GrowthPolicy {
                min_chunk: 0,
                max_chunk: 0,
                factor: 0.25,
                max_allocation: 0,
                churn_allocation: 0,
            },
            ..BufferConfig::default()
        },
    ));
    assert_eq!(
        err.to_string(),
        "invalid growth policy: max_chunk 0 must be nonzero and at least min_chunk 0"
    );
    Ok(())
}

#[test]
fn growth_makes_one_set_access_per_run() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    let names = ["cuMemCreate", "cuMemMap", "cuMemSetAccess"];
    let mut buf = buffer_with::<u8>(&d, 64 << 20, GrowthPolicy::fixed(g))?;
    let before = counts(&names);
    buf.reserve(5 * g)?; // five one-granule chunks, one run
    let stats = buf.stats();
    assert_eq!(
        (
            stats.creates,
            stats.maps,
            stats.set_access_calls,
            stats.chunks
        ),
        (5, 5, 1, 5)
    );
    if on_simulator()? {
        assert_eq!(delta(&before, &counts(&names)), [5, 5, 1]);
    }

    // The default policy: growth steps that grow with the buffer, one allocation and one
    // set-access call per step.
    let mut fast = GrowableBuffer::<u8>::with_max_capacity(&d, 1 << 30)?;
    let before = counts(&names);
    // Grow one granule at a time to 100 granules (reserve: no fill needed).
    for step in 1..=100 {
        fast.reserve(step * g)?;
    }
    let stats = fast.stats();
    // With 2 MiB granules: steps of 16,16,16,16,16,20,24,30,38,48 MiB.
    assert_eq!(fast.committed_bytes(), 240 << 20, "{stats:?}");
    assert_eq!(
        (stats.set_access_calls, stats.creates, stats.maps),
        (10, 10, 10)
    );
    assert_eq!(stats.chunks, 10);
    assert!(fast.committed_bytes() as f64 <= 1.25 * (100 * g) as f64);
    if on_simulator()? {
        assert_eq!(delta(&before, &counts(&names)), [10, 10, 10]);
    }
    Ok(())
}

#[test]
fn shrink_to_fit_returns_memory() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    let policy = GrowthPolicy {
        min_chunk: 4 * g,
        max_chunk: 4 * g,
        factor: 0.0,
        max_allocation: 0,
        churn_allocation: 0,
    };
    let mut buf = buffer_with::<u32>(&d, 32 << 20, policy)?;
    let ptr = buf.ptr();
    buf.reserve(3 * g)?; // 12 granules: three 4-granule chunks
    let host = words_added(0..(10 * g / 4), 5);
    buf.extend_from_slice(&host)?;
    assert_eq!(buf.committed_bytes(), 12 * g); // three 4-granule chunks
                                               // Keep 5 granules + 4 bytes: chunk 2 goes, chunk 1 is split to 2 granules.
    let keep = 5 * g / 4 + 1;
    buf.truncate(keep);
    let names = ["cuMemRelease", "cuMemCreate"];
    let before = counts(&names);
    buf.shrink_to_fit()?;
    assert_eq!(buf.committed_bytes(), 6 * g);
    assert_eq!(buf.capacity(), 6 * g / 4);
    assert_eq!(buf.ptr(), ptr);
    assert_eq!(buf.to_vec()?, host[..keep]);
    assert_eq!(buf.stats().chunks, 2);
    if on_simulator()? {
        // Released: the dropped chunk and the split chunk; created: its replacement.
        assert_eq!(delta(&before, &counts(&names)), [2, 1]);
    }
    // Grows again from the shrunk size, contents intact.
    buf.extend_from_slice(&host[keep..])?;
    assert_eq!(buf.to_vec()?, host);

    buf.clear();
    buf.shrink_to_fit()?;
    assert_eq!(buf.committed_bytes(), 0);
    assert_eq!(buf.stats().chunks, 0);
    assert_eq!(buf.stats().peak_committed_bytes, 12 * g);
    Ok(())
}

#[test]
fn shrink_gives_memory_back_to_the_device() -> TestResult {
    // Exclusive: every allocating test holds the lock shared, so one measurement is
    // undisturbed.
    let _memory = crate::memory_exclusive();
    let Some((d, g)) =
        crate::simulated_device("free-memory accounting is checked on the simulator only")?
    else {
        return Ok(());
    };
    let mut buf = buffer_with::<u8>(&d, 64 << 20, GrowthPolicy::fixed(8 * g))?;
    buf.resize(24 * g, 1)?;
    buf.truncate(8 * g);
    let free_before = d.memory_info()?.free;
    buf.shrink_to_fit()?;
    let free_after = d.memory_info()?.free;
    assert_eq!(buf.committed_bytes(), 8 * g);
    assert_eq!(
        free_after.wrapping_sub(free_before),
        16 * g,
        "shrink_to_fit did not return 16 granules to free memory"
    );
    Ok(())
}

#[test]
fn growth_is_transactional_under_faults() -> TestResult {
    let _memory = crate::memory_shared();
    let Some((d, g)) = crate::simulated_device("fault injection needs the simulator")? else {
        return Ok(());
    };
    let mut buf = buffer_with::<u32>(&d, 32 << 20, GrowthPolicy::fixed(g))?;
    let host = words_added(0..(g / 4 + 3), 1);
    buf.extend_from_slice(&host)?;
    let ptr = buf.ptr();
    let committed = buf.committed_bytes();
    let chunks = buf.stats().chunks;
    // Growing by 3 granules needs 3 creates, 3 maps and 1 set-access: fail each in turn.
    let faults = [
        ("cuMemCreate", 2, CUresult::CUDA_ERROR_OUT_OF_MEMORY),
        ("cuMemCreate", 3, CUresult::CUDA_ERROR_OUT_OF_MEMORY),
        ("cuMemMap", 2, CUresult::CUDA_ERROR_OUT_OF_MEMORY),
        ("cuMemSetAccess", 1, CUresult::CUDA_ERROR_INVALID_VALUE),
    ];
    let extra = words_added(host.len()..host.len() + 3 * g / 4, 2);
    for (symbol, nth, code) in faults {
        let names = ["cuMemCreate", "cuMemRelease", "cuMemMap", "cuMemUnmap"];
        let before = counts(&names);
        let guard = inject_fault(symbol, nth, code);
        assert!(guard.is_armed());
        let err = fails(buf.extend_from_slice(&extra));
        assert!(guard.fired(), "{symbol} #{nth} did not fire");
        drop(guard);
        assert_eq!(err.code(), Some(code.0), "{symbol} #{nth}: {err}");
        assert_eq!(buf.len(), host.len());
        assert_eq!(buf.ptr(), ptr);
        assert_eq!(buf.committed_bytes(), committed);
        assert_eq!(buf.stats().chunks, chunks);
        // Everything created was released, everything mapped unmapped.
        let d = delta(&before, &counts(&names));
        let created_ok = d[0] - u64::from(symbol == "cuMemCreate");
        let mapped_ok = d[2] - u64::from(symbol == "cuMemMap");
        assert_eq!(d[1], created_ok, "{symbol} #{nth}: releases {d:?}");
        assert_eq!(d[3], mapped_ok, "{symbol} #{nth}: unmaps {d:?}");
        assert_eq!(buf.to_vec()?, host);
    }
    // And the same growth then succeeds.
    buf.extend_from_slice(&extra)?;
    let mut all = host.clone();
    all.extend_from_slice(&extra);
    assert_eq!(buf.to_vec()?, all);
    Ok(())
}

#[test]
fn grant_access_covers_old_and_new_memory() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    let devices = cuda()?.devices()?;
    let mut buf = buffer_with::<u8>(&d, 16 << 20, GrowthPolicy::fixed(g))?;
    buf.resize(g, 1)?;
    let before = counts(&["cuMemSetAccess"]);
    buf.grant_access(&devices)?;
    assert_eq!(buf.stats().set_access_calls, 2);
    if on_simulator()? {
        assert_eq!(delta(&before, &counts(&["cuMemSetAccess"])), [1]);
    }
    buf.resize(3 * g, 2)?;
    assert_eq!(buf.stats().set_access_calls, 3);
    let mut out = vec![0u8; 2];
    buf.read(g - 1..g + 1, &mut out)?;
    assert_eq!(out, [1, 2]);
    Ok(())
}
