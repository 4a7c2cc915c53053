//! Growable buffers whose chunks live on another device or alternate between two: growth,
//! shrinking, a peer kernel, pools, background commit, and placements refused by name.

use super::*;

// ---- buffers -------------------------------------------------------------------------------

two_device_test!(
    growable_round_robin_stripes_chunks,
    growable_round_robin_stripes_chunks_child,
    growable_round_robin_body
);

/// A buffer of device 0 whose chunks alternate between devices 0 and 1: each growth step
/// sets access for both devices with one call, data round-trips, and shrinking and dropping
/// right after writing leave both devices healthy.
fn growable_round_robin_body(d0: &Device, d1: &Device) -> TestResult {
    let cuda = d0.cuda();
    let g = granularity(&[d0, d1])?;
    let config = BufferConfig {
        max_capacity: Some(16 * g),
        policy: GrowthPolicy::fixed(g),
        placement: Placement::RoundRobin(vec![d0.clone(), d1.clone()]),
        ..Default::default()
    };
    let mut b = GrowableBuffer::<u8>::new(d0, config)?;
    let data = pattern_cycle(6 * g, 3);
    b.extend_from_slice(&data)?;
    let homes: Vec<usize> = b
        .chunk_allocations()
        .map(|(_, a)| a.device().ordinal())
        .collect();
    assert_eq!(homes, [0, 1, 0, 1, 0, 1]);
    for (offset, _) in b.chunk_allocations() {
        assert_eq!(
            home_of(cuda, b.ptr() + offset as u64)?,
            ((offset / g) % 2) as i32
        );
    }
    let stats = b.stats();
    assert_eq!(
        stats.set_access_calls, 1,
        "one call for the run, both devices"
    );
    assert_eq!(b.to_vec()?, data);
    // The next step continues the rotation.
    b.extend_from_slice(&pattern_cycle(g, 9))?;
    assert_eq!(
        b.chunk_allocations()
            .last()
            .map(|(_, a)| a.device().ordinal()),
        Some(0)
    );
    // Shrink and drop right after writing, in a loop.
    for round in 0..4u8 {
        b.truncate(g);
        b.shrink_to_fit()?;
        b.extend_from_slice(&pattern_cycle(4 * g, round))?;
    }
    drop(b);
    both_healthy(d0, d1, g)
}

two_device_test!(
    peer_kernel_is_waited_for_on_shrink_and_drop,
    peer_kernel_is_waited_for_on_shrink_and_drop_child,
    peer_kernel_body
);

/// A kernel on device 1 still writing a striped buffer of device 0 (half of whose chunks
/// live on device 0) when the buffer shrinks and when it is dropped is waited for: no fault
/// on either device, and every element it wrote is there.
fn peer_kernel_body(d0: &Device, d1: &Device) -> TestResult {
    if d0.cuda().backend() == Backend::Simulator {
        eprintln!("skipped: kernels need the real driver");
        return Ok(());
    }
    let k = SlowFill::load(d1)?;
    let stream = Stream::new(d1)?;
    let g = granularity(&[d0, d1])?;
    let n = 16 * g / 4; // u32 elements over 16 chunks
    for round in 0..4u32 {
        let config = BufferConfig {
            max_capacity: Some(2 * n),
            policy: GrowthPolicy::fixed(g),
            placement: Placement::RoundRobin(vec![d0.clone(), d1.clone()]),
            ..Default::default()
        };
        let mut b = GrowableBuffer::<u32>::new(d0, config)?;
        b.resize(n, 0)?;
        let value = 0xD1D1_0000 + round;
        // SAFETY: the buffer's first n elements are mapped read-write for device 1; the
        // buffer waits for device 1's work before unmapping any of it.
        unsafe { k.launch(&stream, b.ptr(), n as u64, value, 50_000_000)? };
        let t = Instant::now();
        b.truncate(n / 2);
        b.shrink_to_fit()?;
        let waited = t.elapsed();
        let v = b.to_vec()?;
        assert!(v.iter().all(|&x| x == value), "round {round}");
        eprintln!("round {round}: shrink waited {waited:?} for a 50 ms kernel on device 1");
        // SAFETY: as above, for the remaining half.
        unsafe { k.launch(&stream, b.ptr(), (n / 2) as u64, value, 20_000_000)? };
        drop(b);
    }
    both_healthy(d0, d1, g)
}

two_device_test!(
    placement_on_a_chosen_device,
    placement_on_a_chosen_device_child,
    chosen_device_body
);

/// Chunks on device 1 for a buffer of device 0, with and without a pool of device 1; the
/// pool must serve the device the chunks live on, and striping takes no pool.
fn chosen_device_body(d0: &Device, d1: &Device) -> TestResult {
    let g = granularity(&[d0, d1])?;
    let on_d1 = |pool: Option<ChunkPool>| BufferConfig {
        max_capacity: Some(8 * g),
        placement: Placement::On(d1.clone()),
        pool,
        ..Default::default()
    };
    let mut b = GrowableBuffer::<u32>::new(d0, on_d1(None))?;
    b.resize(g, 7)?;
    assert!(b
        .chunk_allocations()
        .all(|(_, a)| a.device().ordinal() == 1));
    assert_eq!(b.to_vec()?, vec![7; g]);
    drop(b);

    let pool = ChunkPool::new(d1, PoolConfig::default())?;
    let mut pooled = GrowableBuffer::<u8>::new(d0, on_d1(Some(pool.clone())))?;
    pooled.extend_from_slice(&pattern_cycle(3 * g, 1))?;
    assert!(pooled
        .chunk_allocations()
        .all(|(_, a)| a.device().ordinal() == 1));
    drop(pooled);
    assert!(pool.stats().chunks_held > 0, "{:?}", pool.stats());

    let pool0 = ChunkPool::new(d0, PoolConfig::default())?;
    let refused = GrowableBuffer::<u8>::new(d0, on_d1(Some(pool0.clone()))).err();
    assert_eq!(
        refused.map(|e| e.to_string()),
        Some("chunk pool mismatch: the buffer is on device 1 but the pool serves device 0".into())
    );
    let striped = BufferConfig {
        placement: Placement::RoundRobin(vec![d0.clone(), d1.clone()]),
        pool: Some(pool0),
        max_capacity: Some(8 * g),
        ..Default::default()
    };
    let refused = GrowableBuffer::<u8>::new(d0, striped).err();
    assert_eq!(
        refused.map(|e| e.to_string()),
        Some(
            "chunk pool mismatch: the buffer stripes chunks over several devices, but a pool \
             serves one (device 0): use no pool with Placement::RoundRobin"
                .into()
        )
    );
    Ok(())
}

two_device_test!(
    prefetch_keeps_rotation_and_granted_access,
    prefetch_keeps_rotation_and_granted_access_child,
    prefetch_body
);

/// Background commit with several devices: prefetched steps continue the round-robin
/// rotation, and steps committed after `grant_access` carry the new peer's access.
fn prefetch_body(d0: &Device, d1: &Device) -> TestResult {
    let cuda = d0.cuda();
    let g = granularity(&[d0, d1])?;
    let striped = BufferConfig {
        max_capacity: Some(16 * g),
        policy: GrowthPolicy::fixed(g),
        placement: Placement::RoundRobin(vec![d0.clone(), d1.clone()]),
        prefetch: true,
        ..Default::default()
    };
    let mut b = GrowableBuffer::<u8>::new(d0, striped)?;
    for k in 0..6 {
        b.extend_from_slice(&pattern_cycle(g, k))?;
    }
    assert_eq!(b.blocked_stats().prefetched, 6);
    let homes: Vec<usize> = b
        .chunk_allocations()
        .map(|(_, a)| a.device().ordinal())
        .collect();
    assert_eq!(homes, [0, 1, 0, 1, 0, 1]);
    drop(b);

    let owner = BufferConfig {
        max_capacity: Some(16 * g),
        policy: GrowthPolicy::fixed(g),
        prefetch: true,
        ..Default::default()
    };
    let mut b = GrowableBuffer::<u8>::new(d0, owner)?;
    b.extend_from_slice(&pattern_cycle(g, 1))?;
    // Two steps are queued without d1's access: the grant gives them back.
    b.grant_access(std::slice::from_ref(d1))?;
    assert!(b.prefetch());
    // Steps asked for after the grant (taken by both appends) carry d1's access too.
    b.extend_from_slice(&pattern_cycle(3 * g, 2))?;
    b.extend_from_slice(&pattern_cycle(2 * g, 3))?;
    let rw = cuda_vmm_sys::CUmemAccess_flags::CU_MEM_ACCESS_FLAGS_PROT_READWRITE.0 as u64;
    for k in 0..6 {
        let addr = b.ptr() + (k * g) as u64;
        assert_eq!(access_at(cuda, addr, d1)?, rw, "granule {k}");
    }
    assert_eq!(b.blocked_stats().prefetched, 3);
    Ok(())
}

// ---- bad placements (one device is enough) -------------------------------------------------

#[test]
fn bad_placements_are_refused_by_name() -> TestResult {
    let _memory = crate::memory_shared();
    let d = cuda()?.device(0)?;
    let empty = BufferConfig {
        placement: Placement::RoundRobin(Vec::new()),
        max_capacity: Some(1 << 20),
        ..Default::default()
    };
    assert_eq!(
        GrowableBuffer::<u8>::new(&d, empty)
            .err()
            .map(|e| e.to_string()),
        Some(
            "invalid configuration: Placement::RoundRobin with an empty device list: name at \
             least one device"
                .into()
        )
    );
    let host = SparseConfig {
        placement: Placement::On(d.clone()),
        props: Some(AllocationProps::new(Location::Host)),
        ..Default::default()
    };
    assert_eq!(
        SparseArray::<u8>::new(&d, 1 << 20, host)
            .err()
            .map(|e| e.to_string()),
        Some(
            "invalid configuration: placement on devices needs device memory, but the \
             properties place it at Host: host memory has one home, so it takes \
             Placement::Owner"
                .into()
        )
    );
    Ok(())
}
