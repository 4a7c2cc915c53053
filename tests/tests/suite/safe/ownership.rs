//! The safe layer: ownership.

use super::*;

#[test]
fn release_and_free_with_live_users_are_in_use() -> TestResult {
    let _memory = crate::memory_shared();
    let (_, g, a, r) = allocation_and_reservation(1, 1)?;
    let m = r.map(0, &a, 0, g)?;
    // `a` + the mapping's clone remain besides the clone being released.
    assert_eq!(
        fails(a.clone().release()),
        Error::InUse {
            what: "allocation",
            users: 2
        }
    );
    assert_eq!(
        fails(r.clone().free()),
        Error::InUse {
            what: "reservation",
            users: 2
        }
    );
    m.unmap()?;
    a.release()?;
    r.free()?;
    Ok(())
}

#[test]
fn mapping_keeps_reservation_and_allocation_alive() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    let m = {
        let a = Allocation::new(&d, g, &AllocationProps::device(&d))?;
        let r = Reservation::new(&d, g, ReserveOptions::default())?;
        r.map(0, &a, 0, g)?
        // `a` and `r` are dropped here; the mapping holds both.
    };
    m.set_access(&rw(&d))?;
    let data = pattern(1024, 5);
    m.reservation().write(0, &data)?;
    let mut out = vec![0u8; data.len()];
    m.reservation().read(0, &mut out)?;
    assert_eq!(out, data);
    let r = m.reservation().clone();
    drop(m);
    assert!(!r.is_mapped(0, g));
    r.free()?;
    Ok(())
}

#[test]
fn memory_returns_to_the_start_after_everything_is_dropped() -> TestResult {
    let _memory = crate::memory_exclusive();
    let d = device()?;
    let g = gran(&d)?;
    let sim = d.cuda().backend() == Backend::Simulator;
    // Every test of the suite that allocates holds `crate::DEVICE_MEMORY` (shared), so
    // with it held exclusively nothing else allocates meanwhile: one measurement.
    let start = d.memory_info()?;
    let (during, after) = {
        let r = Reservation::new(&d, 4 * g, ReserveOptions::default())?;
        let mut maps = Vec::new();
        for i in 0..4 {
            let a = Allocation::new(&d, g, &AllocationProps::device(&d))?;
            maps.push(r.map(i * g, &a, 0, g)?);
        }
        r.set_access(0, 4 * g, &rw(&d))?;
        let during = d.memory_info()?;
        drop(maps);
        drop(r);
        (during, d.memory_info()?)
    };
    let ok = if sim {
        during.free + 4 * g == start.free && after == start
    } else {
        after.total == start.total && after.free + 16 * g >= start.free
    };
    assert!(
        ok,
        "memory did not return to its start value: start {start:?}, during {during:?}, after {after:?}"
    );
    Ok(())
}

#[test]
fn mapping_from_another_driver_is_refused() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    let r = Reservation::new(&d, g, ReserveOptions::default())?;
    // A second driver object over the simulator's functions: handles of one
    // Cuda must never reach the other.
    let table = *cuda_vmm_sim::driver().table();
    // SAFETY: the simulator's functions, valid for the program's lifetime.
    let other: &'static cuda_vmm_sys::Driver = Box::leak(Box::new(unsafe {
        cuda_vmm_sys::Driver::from_table(table, "copy")
    }));
    // SAFETY: the simulator implements the driver API.
    let other = unsafe { Cuda::from_driver(other, Backend::Simulator) }?;
    let od = other.device(0)?;
    let oa = Allocation::new(&od, gran(&od)?, &AllocationProps::device(&od))?;
    assert!(matches!(
        fails(r.map(0, &oa, 0, g)),
        Error::InvalidArgument { message } if message.starts_with("the allocation belongs to a different driver")
    ));
    assert!(matches!(
        fails(r.set_access(0, g, &rw(&od))),
        Error::InvalidArgument { message } if message.starts_with("a device in the access list belongs to a different driver")
    ));
    Ok(())
}

#[test]
fn missing_entry_point_is_reported() -> TestResult {
    let _memory = crate::memory_shared();
    let mut table = *cuda_vmm_sim::driver().table();
    table.cuMemCreate = None;
    // SAFETY: every remaining slot is a simulator function, valid forever.
    let driver: &'static cuda_vmm_sys::Driver = Box::leak(Box::new(unsafe {
        cuda_vmm_sys::Driver::from_table(table, "sim without cuMemCreate")
    }));
    // SAFETY: the simulator implements the driver API.
    let cuda = unsafe { Cuda::from_driver(driver, Backend::Simulator) }?;
    let d = cuda.device(0)?;
    let g = gran(&d)?;
    let version = cuda.driver_version()?;
    let e = fails(Allocation::new(&d, g, &AllocationProps::device(&d)));
    assert_eq!(
        e,
        Error::MissingEntryPoint {
            symbol: "cuMemCreate",
            driver_version: Some(version)
        }
    );
    assert_eq!(
        e.to_string(),
        format!("the driver (version {version}) does not export `cuMemCreate`")
    );
    Ok(())
}

#[test]
fn threads_map_and_copy_concurrently() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    let r = Reservation::new(&d, 8 * g, ReserveOptions::default())?;
    std::thread::scope(|s| -> TestResult {
        let handles: Vec<_> = (0..8usize)
            .map(|i| {
                let (r, d) = (r.clone(), d.clone());
                s.spawn(move || -> cuda_vmm::Result<Vec<u8>> {
                    let a = Allocation::new(&d, g, &AllocationProps::device(&d))?;
                    let m = r.map(i * g, &a, 0, g)?;
                    m.set_access(&rw(&d))?;
                    let data = pattern(256, i as u8);
                    r.write(i * g, &data)?;
                    let mut out = vec![0u8; 256];
                    r.read(i * g, &mut out)?;
                    m.unmap()?;
                    Ok(out)
                })
            })
            .collect();
        for (i, h) in handles.into_iter().enumerate() {
            let out = h.join().map_err(|_| "thread panicked")??;
            assert_eq!(out, pattern(256, i as u8));
        }
        Ok(())
    })?;
    assert_eq!(r.mapping_count(), 0);
    Ok(())
}
