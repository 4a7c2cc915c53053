//! Several GPUs behind one pointer: reservations backed by memory of two devices, access
//! granted to a device list in one call, peer reads and writes checked by copies run on the
//! other device, and buffers and sparse arrays placing chunks on a chosen device or
//! round-robin.
//!
//! Each test runs on a real machine with two or more devices (it says "skipped" on one with
//! fewer), and on the simulator in a child process configured with two devices.

use std::time::Instant;

use cuda_vmm::{
    AccessFlags, Allocation, AllocationProps, Backend, Cuda, Device, Error, Location, Reservation,
    ReserveOptions, Stream,
};
use cuda_vmm_alloc::{
    BufferConfig, ChunkPool, GrowableBuffer, GrowthPolicy, HoleBehavior, Placement, PoolConfig,
    SparseArray, SparseConfig,
};
use cuda_vmm_sim::inject_fault;
use cuda_vmm_sys::{entry, CUmemAllocationProp, CUresult};

use cuda_vmm_tests::ptx::SlowFill;

const CHILD_ENV: &str = "CUDA_VMM_MULTI_GPU_CHILD";

use crate::cuda;
use cuda_vmm_tests::helpers::{pattern_cycle, run_child, TestResult};

/// Runs `body` on devices 0 and 1: in this process on a real driver (skipped with fewer
/// than two devices or no peer access), in a two-device simulator child otherwise.
fn on_two_devices(child: &str, body: fn(&Device, &Device) -> TestResult) -> TestResult {
    let _memory = crate::memory_exclusive();
    let is_child = std::env::var(CHILD_ENV).is_ok_and(|v| v == child);
    let cuda = cuda()?;
    if cuda.backend() == Backend::Simulator && !is_child {
        let out = run_child(child, |c| {
            c.env(CHILD_ENV, child).env(cuda_vmm_sim::ENV_DEVICES, "2");
        })?
        .stdout;
        assert!(out.contains("two devices: done"), "{out}");
        return Ok(());
    }
    if cuda.device_count()? < 2 {
        eprintln!("skipped: {child} needs 2 devices");
        return Ok(());
    }
    let (d0, d1) = (cuda.device(0)?, cuda.device(1)?);
    if !d0.can_access_peer(&d1)? || !d1.can_access_peer(&d0)? {
        eprintln!("skipped: {child} needs peer access between devices 0 and 1");
        return Ok(());
    }
    body(&d0, &d1)?;
    d0.synchronize()?;
    d1.synchronize()?;
    println!("two devices: done");
    Ok(())
}

/// The child half of a simulator test: does nothing unless spawned by [`on_two_devices`].
fn child_only(child: &str, body: fn(&Device, &Device) -> TestResult) -> TestResult {
    if !std::env::var(CHILD_ENV).is_ok_and(|v| v == child) {
        return Ok(());
    }
    on_two_devices(child, body)
}

/// A test run on two devices, and its simulator child.
macro_rules! two_device_test {
    ($name:ident, $child:ident, $body:ident) => {
        #[test]
        fn $name() -> TestResult {
            on_two_devices(&cuda_vmm_tests::test_name!($child), $body)
        }

        #[test]
        #[ignore = "child process of the two-device test of the same name"]
        fn $child() -> TestResult {
            child_only(&cuda_vmm_tests::test_name!($child), $body)
        }
    };
}

/// The largest minimum granularity over `devices`.
fn granularity(devices: &[&Device]) -> cuda_vmm::Result<usize> {
    let mut g = 0;
    for d in devices {
        g = g.max(d.min_granularity(&AllocationProps::device(d))?);
    }
    Ok(g)
}

/// Both devices still grow, write and read a buffer: neither context was poisoned.
fn both_healthy(d0: &Device, d1: &Device, g: usize) -> TestResult {
    for d in [d0, d1] {
        let mut check = GrowableBuffer::<u8>::with_max_capacity(d, 2 * g)?;
        check.extend_from_slice(&pattern_cycle(g, 5))?;
        assert_eq!(check.to_vec()?, pattern_cycle(g, 5));
    }
    Ok(())
}

/// The device whose memory backs `addr`, asked of the driver through the raw table
/// (`cuMemRetainAllocationHandle` + `cuMemGetAllocationPropertiesFromHandle`).
fn home_of(cuda: &Cuda, addr: u64) -> Result<i32, Box<dyn std::error::Error>> {
    let t = cuda.sys().table();
    let (retain, props, release) = (
        entry!(t, cuMemRetainAllocationHandle)?,
        entry!(t, cuMemGetAllocationPropertiesFromHandle)?,
        entry!(t, cuMemRelease)?,
    );
    let mut handle = 0;
    // SAFETY: valid out-pointer; `addr` lies in a live mapping (the caller holds it).
    let r = unsafe { retain(&mut handle, addr as usize as *mut core::ffi::c_void) };
    assert_eq!(r, CUresult::CUDA_SUCCESS, "retain at {addr:#x}");
    // SAFETY: CUmemAllocationProp is plain data, valid when zeroed.
    let mut prop: CUmemAllocationProp = unsafe { std::mem::zeroed() };
    // SAFETY: valid out-pointer and a handle retained just above.
    let r = unsafe { props(&mut prop, handle) };
    // SAFETY: releases the reference retained above, once.
    let released = unsafe { release(handle) };
    assert_eq!(r, CUresult::CUDA_SUCCESS);
    assert_eq!(released, CUresult::CUDA_SUCCESS);
    Ok(prop.location.id)
}

// ---- the safe layer ------------------------------------------------------------------------

two_device_test!(
    striped_reservation_with_peer_copies,
    striped_reservation_with_peer_copies_child,
    striped_reservation_body
);

/// One reservation of device 0 backed alternately by memory of devices 0 and 1, access for
/// both set in one call; device 0 writes it all (peer writes into device 1's memory), device
/// 1 copies it out (peer reads of device 0's memory) and back in (peer writes).
fn striped_reservation_body(d0: &Device, d1: &Device) -> TestResult {
    let cuda = d0.cuda();
    let g = granularity(&[d0, d1])?;
    let chunks = 4;
    let size = chunks * g;
    let striped = Reservation::new(
        d0,
        size,
        ReserveOptions {
            alignment: g,
            ..Default::default()
        },
    )?;
    let mut mappings = Vec::new();
    for k in 0..chunks {
        let home = if k % 2 == 0 { d0 } else { d1 };
        let a = Allocation::new(home, g, &AllocationProps::device(home))?;
        mappings.push(striped.map(k * g, &a, 0, g)?);
    }
    let both = [(d0, AccessFlags::ReadWrite), (d1, AccessFlags::ReadWrite)];
    striped.set_access(0, size, &both)?;
    for k in 0..chunks {
        let at = k * g;
        assert_eq!(home_of(cuda, striped.ptr() + at as u64)?, (k % 2) as i32);
        assert_eq!(striped.access(at, d0)?, AccessFlags::ReadWrite);
        assert_eq!(striped.access(at, d1)?, AccessFlags::ReadWrite);
    }
    let data = pattern_cycle(size, 17);
    striped.write(0, &data)?;
    let mut back = vec![0; size];
    striped.read(0, &mut back)?;
    assert!(
        back == data,
        "device 0 reads back what it wrote across both devices"
    );

    // A plain reservation of device 1, on device 1's memory, that only device 1 may use.
    let local = Reservation::new(d1, size, ReserveOptions::default())?;
    let la = Allocation::new(d1, size, &AllocationProps::device(d1))?;
    let lm = local.map(0, &la, 0, size)?;
    local.set_access(0, size, &[(d1, AccessFlags::ReadWrite)])?;
    striped.copy_to(0, &local, 0, size, d1)?;
    let mut seen = vec![0; size];
    local.read(0, &mut seen)?;
    assert!(
        seen == data,
        "device 1 read every byte of the striped range"
    );

    let other = pattern_cycle(size, 101);
    local.write(0, &other)?;
    local.copy_to(0, &striped, 0, size, d1)?;
    striped.read(0, &mut back)?;
    assert!(
        back == other,
        "device 1 wrote every byte of the striped range"
    );

    // Within the striped range, device 1 copies device 0's chunk onto its own.
    striped.copy_to(0, &striped, g, g, d1)?;
    let mut chunk = vec![0; g];
    striped.read(g, &mut chunk)?;
    assert!(chunk[..] == other[..g]);

    // Device 0 has no access to `local`: a copy it cannot make is refused, naming it.
    assert_eq!(
        striped.copy_to(0, &local, 0, g, d0),
        Err(Error::AccessDenied {
            offset: 0,
            size: g,
            required: AccessFlags::ReadWrite,
            device: 0,
        })
    );
    assert_eq!(
        local.copy_to(0, &striped, 0, g, d0),
        Err(Error::AccessDenied {
            offset: 0,
            size: g,
            required: AccessFlags::Read,
            device: 0,
        })
    );
    // Taking device 1's access away is tracked too.
    striped.set_access(0, 2 * g, &[(d1, AccessFlags::Read)])?;
    assert_eq!(striped.access(0, d1)?, AccessFlags::Read);
    assert_eq!(
        local.copy_to(0, &striped, 0, g, d1),
        Err(Error::AccessDenied {
            offset: 0,
            size: g,
            required: AccessFlags::ReadWrite,
            device: 1,
        })
    );
    striped.copy_to(0, &local, 0, g, d1)?;

    drop(lm);
    for m in mappings {
        m.unmap()?;
    }
    Ok(())
}

// ---- buffers and sparse arrays -------------------------------------------------------------

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
    sparse_round_robin_tiles,
    sparse_round_robin_tiles_child,
    sparse_round_robin_body
);

/// Sparse arrays (both hole modes) whose tiles alternate between the devices: a run of
/// tiles is committed with one access call, data round-trips, decommit returns memory.
fn sparse_round_robin_body(d0: &Device, d1: &Device) -> TestResult {
    let cuda = d0.cuda();
    let g = granularity(&[d0, d1])?;
    for holes in [HoleBehavior::Error, HoleBehavior::Zeros] {
        let config = SparseConfig {
            holes,
            placement: Placement::RoundRobin(vec![d0.clone(), d1.clone()]),
            ..Default::default()
        };
        let mut s = SparseArray::<u8>::new(d0, 16 * g, config)?;
        let before = s.stats().set_access_calls;
        s.commit(2 * g..6 * g)?;
        // With zero holes the run splits the zero block 0..16: one access call per side
        // (blocks 0..2, and 6..8 + 8..16), and one each to fill the new 2- and 8-tile blocks.
        let zero_calls = if holes == HoleBehavior::Zeros {
            2 + 2
        } else {
            0
        };
        assert_eq!(s.stats().set_access_calls - before, 1 + zero_calls);
        for (k, tile) in (2..6).enumerate() {
            assert_eq!(
                home_of(cuda, s.ptr() + (tile * g) as u64)?,
                (k % 2) as i32,
                "tile {tile} ({holes:?})"
            );
        }
        let data = pattern_cycle(4 * g, 11);
        s.write(2 * g, &data)?;
        let mut back = vec![0; 4 * g];
        s.read(2 * g..6 * g, &mut back)?;
        assert!(back == data);
        assert_eq!(s.decommit(2 * g..6 * g)?, 4);
        assert_eq!(s.committed_bytes(), 0);
    }
    Ok(())
}

two_device_test!(
    spares_keep_rotation_and_granted_access,
    spares_keep_rotation_and_granted_access_child,
    spares_body
);

/// Spare tiles with several devices: a batch of spares continues the round-robin rotation,
/// `grant_access` covers spares too, and spares taken later keep that access.
fn spares_body(d0: &Device, d1: &Device) -> TestResult {
    let cuda = d0.cuda();
    let g = granularity(&[d0, d1])?;
    let rw = cuda_vmm_sys::CUmemAccess_flags::CU_MEM_ACCESS_FLAGS_PROT_READWRITE.0 as u64;
    for holes in [HoleBehavior::Error, HoleBehavior::Zeros] {
        let config = |placement| SparseConfig {
            holes,
            spare_tiles: 3,
            placement,
            ..Default::default()
        };
        // Round robin: spares take their turns, the tiles after them continue.
        let both = Placement::RoundRobin(vec![d0.clone(), d1.clone()]);
        let mut s = SparseArray::<u8>::new(d0, 16 * g, config(both))?;
        s.commit(0..1)?;
        s.commit(g..5 * g)?;
        assert_eq!((s.committed_bytes(), s.spare_count()), (5 * g, 3));
        for tile in 0..8 {
            let at = s.ptr() + (tile * g) as u64;
            assert_eq!(
                home_of(cuda, at)?,
                (tile % 2) as i32,
                "tile {tile} ({holes:?})"
            );
        }
        drop(s);
        // On the owner: d1 has no access to the spares until granted, then keeps it.
        let mut s = SparseArray::<u8>::new(d0, 16 * g, config(Placement::Owner))?;
        s.commit(0..1)?;
        assert_eq!(access_at(cuda, s.ptr() + 2 * g as u64, d1)?, 0);
        s.grant_access(std::slice::from_ref(d1))?;
        for tile in 0..4 {
            let at = s.ptr() + (tile * g) as u64;
            assert_eq!(access_at(cuda, at, d1)?, rw, "tile {tile} ({holes:?})");
        }
        s.commit(g..5 * g)?;
        for tile in 0..8 {
            let at = s.ptr() + (tile * g) as u64;
            assert_eq!(access_at(cuda, at, d1)?, rw, "tile {tile} ({holes:?})");
        }
        let data = pattern_cycle(5 * g, 7);
        s.write(0, &data)?;
        let mut back = vec![0; 5 * g];
        s.read(0..5 * g, &mut back)?;
        assert!(back == data);
        assert_eq!(s.release_spares()?, 3);
        both_healthy(d0, d1, g)?;
    }
    if cuda.backend() == Backend::Simulator {
        // A batch of 3 (tile 0 and 2 spares) whose second map fails gives its turn in the
        // rotation back: tile 0, committed alone, still lands on device 0.
        let config = SparseConfig {
            spare_tiles: 2,
            placement: Placement::RoundRobin(vec![d0.clone(), d1.clone()]),
            ..Default::default()
        };
        let mut s = SparseArray::<u8>::new(d0, 16 * g, config)?;
        let guard = inject_fault("cuMemMap", 2, CUresult::CUDA_ERROR_OUT_OF_MEMORY);
        s.commit(0..1)?;
        assert!(guard.fired());
        drop(guard);
        assert_eq!((s.committed_bytes(), s.spare_count()), (g, 0));
        assert_eq!(home_of(cuda, s.ptr())?, 0);
        s.commit(g..g + 1)?;
        assert_eq!(home_of(cuda, s.ptr() + g as u64)?, 1);
    }
    Ok(())
}

two_device_test!(
    prefetch_keeps_rotation_and_granted_access,
    prefetch_keeps_rotation_and_granted_access_child,
    prefetch_body
);

/// The access flags `device` has at `addr`, asked of the driver (`cuMemGetAccess`).
fn access_at(cuda: &Cuda, addr: u64, device: &Device) -> Result<u64, Box<dyn std::error::Error>> {
    let get = entry!(cuda.sys().table(), cuMemGetAccess)?;
    let location = cuda_vmm_sys::CUmemLocation {
        type_: cuda_vmm_sys::CUmemLocationType::CU_MEM_LOCATION_TYPE_DEVICE,
        id: i32::try_from(device.ordinal())?,
    };
    let mut flags = 0u64;
    // SAFETY: valid out-pointer and location; `addr` lies in a live mapping (the caller
    // holds it).
    let r = unsafe { get(&mut flags, &location, addr) };
    assert_eq!(r, CUresult::CUDA_SUCCESS, "cuMemGetAccess at {addr:#x}");
    Ok(flags)
}

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
             properties place it at Host"
                .into()
        )
    );
    Ok(())
}
