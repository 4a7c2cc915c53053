//! Host memory as a first-class location: `Location::Host` and `Location::HostNuma`
//! allocations created, mapped, given device access and copied through the safe layer, on
//! both backends; the host locations the driver refuses are refused before it is called;
//! granularity queries; growable buffers and chunk pools of host memory.
//!
//! On the simulator the tests also check the driver's exact codes (and, by its call
//! counts, that no `cuMemCreate` was made); on a GPU the same tests expect success where
//! an H200 (driver 580) gives it. The driver's answers themselves are recorded by the
//! conformance cases in `conformance/host_cases.rs`.

use cuda_vmm::raw::bare;
use cuda_vmm::sys::{CUmemAllocationProp, CUresult};
use cuda_vmm::{
    AccessFlags, Allocation, AllocationProps, Device, Error, GranularityKind, HandleTypes,
    Location, Reservation, ReserveOptions,
};
use cuda_vmm_alloc::{BufferConfig, ChunkPool, GrowableBuffer, Placement, PoolConfig};
use cuda_vmm_tests::helpers::{pattern, TestResult};

use crate::{on_simulator, pinned_device as device};

/// The host locations that `cuMemCreate` takes: host memory, and the device's NUMA node.
fn host_props(d: &Device) -> cuda_vmm::Result<[AllocationProps; 2]> {
    Ok([
        AllocationProps::new(Location::Host),
        AllocationProps::host_numa_near(d)?,
    ])
}

/// The error of a call expected to fail.
#[track_caller]
fn fails<T>(r: cuda_vmm::Result<T>) -> Error {
    match r {
        Ok(_) => panic!("expected an error, the call succeeded"),
        Err(e) => e,
    }
}

/// `cuMemCreate` calls this thread made on the simulator so far (0 on a GPU).
fn creates() -> u64 {
    cuda_vmm_sim::call_count("cuMemCreate")
}

/// What the driver itself answers to `cuMemCreate` of `size` bytes with `props` (released
/// again when it succeeds).
fn driver_answer(d: &Device, size: usize, props: &AllocationProps) -> CUresult {
    let raw: CUmemAllocationProp = props.to_raw();
    let api = d.cuda().api();
    let (rc, handle) = bare::mem_create(api, size, &raw, 0).expect("cuMemCreate");
    if rc == CUresult::CUDA_SUCCESS {
        // SAFETY: the handle was just created and is released once.
        let _ = unsafe { bare::mem_release(api, handle) };
    }
    rc
}

#[test]
fn device_reports_host_numa_support() -> TestResult {
    let d = device()?;
    let caps = d.capabilities()?;
    assert_eq!(caps.host_numa_vmm, d.supports_host_numa_vmm()?);
    assert_eq!(caps.host_numa_id, d.host_numa_id()?);
    // The simulator models what an H200 (driver 580) reports.
    assert!(d.supports_host_numa_vmm()?, "HOST_NUMA VMM supported");
    assert_eq!(d.host_numa_id()?, Some(0));
    assert_eq!(
        AllocationProps::host_numa_near(&d)?.location(),
        Location::HostNuma(0)
    );
    assert!(caps.to_string().contains("host NUMA memory with VMM   yes"));
    Ok(())
}

#[test]
fn host_allocations_map_take_device_access_and_copy() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    for (seed, props) in host_props(&d)?.into_iter().enumerate() {
        let g = d.granularity(&props, GranularityKind::Minimum)?;
        let a = Allocation::new(&d, 2 * g, &props)?;
        assert_eq!((a.size(), a.granularity()), (2 * g, g));
        // The driver reports HOST memory as HOST_NUMA node 0 (an H200, driver 580); the
        // allocation keeps the properties it was created with.
        let reported = match props.location() {
            Location::Host => Location::HostNuma(0),
            created => created,
        };
        assert_eq!(a.properties()?.location(), reported, "{props:?}");
        assert_eq!(a.props().location(), props.location(), "{props:?}");
        let r = Reservation::new(&d, 2 * g, ReserveOptions::default())?;
        let m = r.map(0, &a, 0, 2 * g)?;
        m.set_access(&[(&d, AccessFlags::ReadWrite)])?;
        assert_eq!(r.access(0, &d)?, AccessFlags::ReadWrite);
        // Across the middle of the allocation.
        let data = pattern(g, seed as u8 + 1);
        r.write(g - 4096, &data)?;
        let mut back = vec![0u8; data.len()];
        r.read(g - 4096, &mut back)?;
        assert!(back == data, "{props:?}: data read back differs");
        // A device-side copy within host memory.
        r.copy_within(g - 4096, 0, 4096)?;
        let mut head = vec![0u8; 4096];
        r.read(0, &mut head)?;
        assert!(head == data[..4096], "{props:?}: copy_within differs");
    }
    Ok(())
}

/// `cuMemCreate` refuses HOST_NUMA_CURRENT, so the safe layer refuses it first; its
/// granularity the driver answers, and so does the safe layer.
#[test]
fn host_numa_current_is_refused_before_the_driver() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = d.min_granularity(&AllocationProps::device(&d))?;
    let props = AllocationProps::new(Location::HostNumaCurrent);
    let message = "location HostNumaCurrent (CU_MEM_LOCATION_TYPE_HOST_NUMA_CURRENT) is \
                   refused by cuMemCreate with CUDA_ERROR_INVALID_VALUE: name the node, e.g. \
                   AllocationProps::host_numa_near(&device)";
    let before = creates();
    let expected = Error::InvalidArgument {
        message: message.into(),
    };
    assert_eq!(fails(Allocation::new(&d, g, &props)), expected);
    assert_eq!(fails(props.validate_for_create(d.cuda())), expected);
    assert_eq!(creates(), before, "no cuMemCreate was made");
    // Only cuMemCreate refuses the location: its granularity is answered (an H200, driver
    // 580: CUDA_SUCCESS), the device's one on the simulator.
    props.validate(d.cuda())?;
    let min = d.granularity(&props, GranularityKind::Minimum)?;
    let rec = d.granularity(&props, GranularityKind::Recommended)?;
    assert!(min.is_power_of_two() && min >= 4096, "{min}");
    assert_eq!(rec % min, 0, "recommended {rec}, minimum {min}");
    assert_eq!(d.min_granularity(&props)?, min);
    if on_simulator()? {
        assert_eq!((min, rec), (g, g));
        // What the driver would have said (recorded on an H200, driver 580).
        assert_eq!(
            driver_answer(&d, g, &props),
            CUresult::CUDA_ERROR_INVALID_VALUE
        );
    }
    Ok(())
}

#[test]
fn host_with_export_handles_is_refused_before_the_driver() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let props = AllocationProps::new(Location::Host).handle_types(HandleTypes::POSIX_FD);
    let g = d.min_granularity(&AllocationProps::new(Location::Host))?;
    let before = creates();
    assert_eq!(
        fails(Allocation::new(&d, g, &props)),
        Error::InvalidArgument {
            message: "location Host takes no export handle types, but POSIX_FD are \
                      requested: host allocations are not IPC capable (cuMemCreate answers \
                      CUDA_ERROR_INVALID_VALUE)"
                .into()
        }
    );
    assert_eq!(creates(), before, "no cuMemCreate was made");
    if on_simulator()? {
        assert_eq!(
            driver_answer(&d, g, &props),
            CUresult::CUDA_ERROR_INVALID_VALUE
        );
    }
    // Without handle types the same location is fine.
    Allocation::new(&d, g, &AllocationProps::new(Location::Host))?.release()?;
    Ok(())
}

#[test]
fn host_numa_node_must_be_online() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let props = AllocationProps::new(Location::HostNuma(999));
    let g = d.min_granularity(&AllocationProps::host_numa_near(&d)?)?;
    let before = creates();
    match fails(Allocation::new(&d, g, &props)) {
        Error::InvalidArgument { message } => assert!(
            message.starts_with(
                "location HostNuma(999): host NUMA node 999 is not online (online nodes: "
            ),
            "{message}"
        ),
        other => panic!("expected an invalid argument, got {other:?}"),
    }
    assert_eq!(creates(), before, "no cuMemCreate was made");
    if on_simulator()? {
        // The simulated host has node 0 only.
        assert_eq!(
            driver_answer(&d, g, &props),
            CUresult::CUDA_ERROR_INVALID_VALUE
        );
    }
    Ok(())
}

#[test]
fn host_granularity_queries() -> TestResult {
    let d = device()?;
    let device_g = d.min_granularity(&AllocationProps::device(&d))?;
    for props in host_props(&d)? {
        let min = d.granularity(&props, GranularityKind::Minimum)?;
        let rec = d.granularity(&props, GranularityKind::Recommended)?;
        assert!(min.is_power_of_two() && min >= 4096, "{props:?}: {min}");
        assert_eq!(rec % min, 0, "{props:?}: recommended {rec}, minimum {min}");
        assert_eq!(d.min_granularity(&props)?, min);
        if on_simulator()? {
            // The simulator gives host locations the device granularity.
            assert_eq!((min, rec), (device_g, device_g), "{props:?}");
        }
    }
    Ok(())
}

#[test]
fn host_memory_is_not_device_memory() -> TestResult {
    let _memory = crate::memory_exclusive();
    let d = device()?;
    for props in host_props(&d)? {
        let g = d.min_granularity(&props)?;
        let before = d.memory_info()?;
        let a = Allocation::new(&d, 8 * g, &props)?;
        let during = d.memory_info()?;
        assert_eq!(
            during.free, before.free,
            "{props:?} counted as device memory"
        );
        a.release()?;
    }
    Ok(())
}

#[test]
fn growable_buffer_of_host_memory() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    for props in host_props(&d)? {
        let g = d.min_granularity(&props)?;
        let config = BufferConfig {
            props: Some(props.clone()),
            max_capacity: Some(4 * g / 4),
            ..Default::default()
        };
        let mut buffer = GrowableBuffer::<u32>::new(&d, config)?;
        let values: Vec<u32> = (0..(g / 4 + 1000) as u32).collect();
        buffer.extend_from_slice(&values)?;
        assert!(buffer.committed_bytes() >= 2 * g);
        assert!(buffer.to_vec()? == values, "{props:?}: contents differ");
        for (_, a) in buffer.chunk_allocations() {
            assert_eq!(a.props().location(), props.location());
        }
        buffer.shrink_to_fit()?;
        assert!(
            buffer.to_vec()? == values,
            "{props:?}: contents after shrink"
        );
    }
    Ok(())
}

#[test]
fn chunk_pool_of_host_memory_feeds_a_buffer() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let props = AllocationProps::host_numa_near(&d)?;
    let g = d.min_granularity(&props)?;
    let pool = ChunkPool::new(
        &d,
        PoolConfig {
            props: Some(props.clone()),
            ..PoolConfig::default()
        },
    )?;
    assert_eq!(pool.prefill(2)?, 2);
    let config = BufferConfig {
        props: Some(props.clone()),
        pool: Some(pool.clone()),
        max_capacity: Some(4 * g),
        ..Default::default()
    };
    let mut buffer = GrowableBuffer::<u8>::new(&d, config)?;
    let data = pattern(2 * g, 3);
    buffer.extend_from_slice(&data)?;
    assert!(buffer.uses_pool());
    assert!(buffer.to_vec()? == data, "contents differ");
    let chunks = buffer.chunk_allocations().count();
    assert!(chunks >= 2, "{chunks} chunks for two granules");
    let stats = pool.stats();
    assert_eq!(
        (stats.hits, stats.chunks_held),
        (2, 0),
        "both cached chunks taken"
    );
    drop(buffer);
    d.cuda()
        .flush_releases(std::time::Duration::from_secs(30))?;
    assert_eq!(
        pool.stats().chunks_held,
        chunks,
        "every chunk came back to the pool"
    );
    Ok(())
}

#[test]
fn placement_on_devices_is_refused_for_host_memory() -> TestResult {
    let d = device()?;
    for placement in [
        Placement::On(d.clone()),
        Placement::RoundRobin(vec![d.clone()]),
    ] {
        let config = BufferConfig {
            props: Some(AllocationProps::new(Location::Host)),
            max_capacity: Some(1 << 20),
            placement,
            ..Default::default()
        };
        let err = GrowableBuffer::<u8>::new(&d, config)
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some(
                "invalid configuration: placement on devices needs device memory, but the \
                 properties place it at Host: host memory has one home, so it takes \
                 Placement::Owner"
            )
        );
    }
    Ok(())
}
