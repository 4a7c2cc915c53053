//! The safe layer: mapping and data.

use super::*;

#[test]
fn alias_mappings_share_data_and_one_set_access_covers_both() -> TestResult {
    let _memory = crate::memory_shared();
    let (d, g, a, r) = allocation_and_reservation(1, 2)?;
    let m0 = r.map(0, &a, 0, g)?;
    let m1 = r.map(g, &a, 0, g)?;
    assert_eq!(m0.ptr(), r.ptr());
    assert_eq!(m1.ptr(), r.ptr() + g as u64);
    assert_eq!((m1.offset(), m1.size()), (g, g));
    assert_eq!(m1.allocation().raw_handle(), a.raw_handle());
    assert_eq!(m1.reservation().ptr(), r.ptr());
    assert!(r.is_mapped(0, 2 * g));
    r.set_access(0, 2 * g, &rw(&d))?;
    let data = pattern(4096, 7);
    r.write(100, &data)?;
    let mut out = vec![0u8; data.len()];
    r.read(g + 100, &mut out)?;
    assert_eq!(out, data);
    Ok(())
}

#[test]
fn data_across_two_allocations() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    let props = AllocationProps::device(&d);
    let a = Allocation::new(&d, g, &props)?;
    let b = Allocation::new(&d, g, &props)?;
    let r = Reservation::new(&d, 2 * g, ReserveOptions::default())?;
    let _ma = r.map(0, &a, 0, g)?;
    let _mb = r.map(g, &b, 0, g)?;
    r.set_access(0, 2 * g, &rw(&d))?;
    let data = pattern(8192, 3);
    r.write(g - 4096, &data)?;
    // Read the second half back through a different reservation aliasing `b`.
    let r2 = Reservation::new(&d, g, ReserveOptions::default())?;
    let m2 = r2.map(0, &b, 0, g)?;
    m2.set_access(&rw(&d))?;
    let mut out = vec![0u8; 4096];
    r2.read(0, &mut out)?;
    assert_eq!(out, data[4096..]);
    Ok(())
}

#[test]
fn fill_and_copy_within() -> TestResult {
    let _memory = crate::memory_shared();
    let (d, g, a, r) = allocation_and_reservation(2, 2)?;
    let m = r.map(0, &a, 0, 2 * g)?;
    m.set_access(&rw(&d))?;
    r.fill(0, 4096, 0xab)?;
    r.copy_within(0, g, 4096)?;
    let mut out = vec![0u8; 4096];
    r.read(g, &mut out)?;
    assert!(out.iter().all(|&b| b == 0xab));
    assert_eq!(
        fails(r.copy_within(0, 2048, 4096)),
        Error::InvalidArgument {
            message: "copy ranges [0, 0 + 4096) and [2048, 2048 + 4096) overlap".into()
        }
    );
    Ok(())
}

#[test]
fn map_alignment_validation() -> TestResult {
    let _memory = crate::memory_shared();
    let (_, g, a, r) = allocation_and_reservation(2, 4)?;
    assert_eq!(
        fails(r.map(4096, &a, 0, g)),
        Error::NotAligned {
            what: "offset",
            value: 4096,
            granularity: g
        }
    );
    assert_eq!(
        fails(r.map(0, &a, 0, g + 4096)),
        Error::NotAligned {
            what: "size",
            value: (g + 4096) as u64,
            granularity: g
        }
    );
    assert_eq!(
        fails(r.map(0, &a, 4096, g)),
        Error::NotAligned {
            what: "allocation offset",
            value: 4096,
            granularity: g
        }
    );
    assert_eq!(
        fails(r.map(0, &a, 0, 0)),
        Error::InvalidArgument {
            message: "mapping size 0: the size must be nonzero".into()
        }
    );
    assert_eq!(r.mapping_count(), 0);
    Ok(())
}

#[test]
fn map_bounds_validation() -> TestResult {
    let _memory = crate::memory_shared();
    let (_, g, a, r) = allocation_and_reservation(2, 4)?;
    // Past the reservation's end: the real driver may accept this; the wrapper refuses.
    assert_eq!(
        fails(r.map(3 * g, &a, 0, 2 * g)),
        Error::OutOfBounds {
            what: "mapping in reservation",
            offset: 3 * g as u64,
            size: 2 * g as u64,
            limit: 4 * g as u64
        }
    );
    assert_eq!(
        fails(r.map(0, &a, g, 2 * g)),
        Error::OutOfBounds {
            what: "mapping in allocation",
            offset: g as u64,
            size: 2 * g as u64,
            limit: 2 * g as u64
        }
    );
    assert_eq!(
        fails(r.map(usize::MAX - g + 1, &a, 0, g)),
        Error::OutOfBounds {
            what: "mapping in reservation",
            offset: (usize::MAX - g + 1) as u64,
            size: g as u64,
            limit: 4 * g as u64
        }
    );
    // Exactly up to the end is fine.
    let _m = r.map(2 * g, &a, 0, 2 * g)?;
    Ok(())
}

#[test]
fn partial_maps_are_refused_before_the_driver() -> TestResult {
    let _memory = crate::memory_shared();
    // The real driver answers CUDA_ERROR_NOT_SUPPORTED (conformance
    // `map_size_smaller_than_allocation`, `map_nonzero_offset`); the wrapper
    // refuses first and says why.
    let (_, g, a, r) = allocation_and_reservation(2, 4)?;
    let msg = |off: usize, size: usize| Error::InvalidArgument {
        message: format!(
            "mapping {size} bytes at allocation offset {off} of a {}-byte allocation: \
             cuMemMap maps whole allocations only (offset 0, size {})",
            2 * g,
            2 * g
        ),
    };
    assert_eq!(fails(r.map(0, &a, 0, g)), msg(0, g));
    assert_eq!(fails(r.map(0, &a, g, g)), msg(g, g));
    assert_eq!(r.mapping_count(), 0);
    let _whole = r.map(0, &a, 0, 2 * g)?;
    assert_eq!(r.mapping_count(), 1);
    Ok(())
}

#[test]
fn overlapping_maps_are_refused() -> TestResult {
    let _memory = crate::memory_shared();
    let (d, g, a, r) = allocation_and_reservation(2, 4)?;
    let m = r.map(g, &a, 0, 2 * g)?;
    assert_eq!(
        fails(r.map(0, &a, 0, 2 * g)),
        Error::Overlap {
            offset: 0,
            size: 2 * g,
            existing_offset: g,
            existing_size: 2 * g
        }
    );
    assert_eq!(
        fails(r.map(2 * g, &a, 0, 2 * g)),
        Error::Overlap {
            offset: 2 * g,
            size: 2 * g,
            existing_offset: g,
            existing_size: 2 * g
        }
    );
    // Neighbours on both sides are fine.
    let small = Allocation::new(&d, g, &AllocationProps::device(&d))?;
    let _left = r.map(0, &small, 0, g)?;
    let _right = r.map(3 * g, &small, 0, g)?;
    assert_eq!(r.mapping_count(), 3);
    // After unmapping, the range can be mapped again.
    m.unmap()?;
    assert!(!r.is_mapped(g, 2 * g));
    let _again = r.map(g, &a, 0, 2 * g)?;
    assert!(r.is_mapped(0, 4 * g));
    Ok(())
}

#[test]
fn set_access_validation() -> TestResult {
    let _memory = crate::memory_shared();
    let (d, g, a, r) = allocation_and_reservation(1, 4)?;
    let _m = r.map(0, &a, 0, g)?;
    assert_eq!(
        fails(r.set_access(0, 2 * g, &rw(&d))),
        Error::NotMapped {
            offset: 0,
            size: 2 * g
        }
    );
    assert_eq!(
        fails(r.set_access(4096, g, &rw(&d))),
        Error::NotAligned {
            what: "offset",
            value: 4096,
            granularity: g
        }
    );
    assert_eq!(
        fails(r.set_access(3 * g, 2 * g, &rw(&d))),
        Error::OutOfBounds {
            what: "access range in reservation",
            offset: 3 * g as u64,
            size: 2 * g as u64,
            limit: 4 * g as u64
        }
    );
    assert_eq!(
        fails(r.set_access(0, g, &[])),
        Error::InvalidArgument {
            message: "the access list is empty: name at least one device".into()
        }
    );
    assert_eq!(
        fails(r.set_access(
            0,
            g,
            &[(&d, AccessFlags::Read), (&d, AccessFlags::ReadWrite)]
        )),
        Error::InvalidArgument {
            message: "device 0 appears more than once in the access list".into()
        }
    );
    Ok(())
}

#[test]
fn get_access_reports_what_was_set() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    let a = Allocation::new(&d, g, &AllocationProps::device(&d))?;
    let b = Allocation::new(&d, g, &AllocationProps::device(&d))?;
    let r = Reservation::new(&d, 4 * g, ReserveOptions::default())?;
    let m0 = r.map(0, &a, 0, g)?;
    let m1 = r.map(g, &b, 0, g)?;
    m0.set_access(&rw(&d))?;
    m1.set_access(&[(&d, AccessFlags::Read)])?;
    assert_eq!(r.access(0, &d)?, AccessFlags::ReadWrite);
    assert_eq!(r.access(g + 4096, &d)?, AccessFlags::Read);
    assert_eq!(
        fails(r.access(2 * g, &d)),
        Error::NotMapped {
            offset: 2 * g,
            size: 1
        }
    );
    assert_eq!(
        fails(r.access(4 * g, &d)),
        Error::OutOfBounds {
            what: "access query in reservation",
            offset: 4 * g as u64,
            size: 1,
            limit: 4 * g as u64
        }
    );
    Ok(())
}

#[test]
fn copies_need_mapping_and_access() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    let a = Allocation::new(&d, g, &AllocationProps::device(&d))?;
    let b = Allocation::new(&d, g, &AllocationProps::device(&d))?;
    let r = Reservation::new(&d, 4 * g, ReserveOptions::default())?;
    let m0 = r.map(0, &a, 0, g)?;
    let _m1 = r.map(g, &b, 0, g)?;
    let mut buf = [0u8; 16];
    // Mapped, but no access yet.
    assert_eq!(
        fails(r.write(0, &buf)),
        Error::AccessDenied {
            offset: 0,
            size: 16,
            required: AccessFlags::ReadWrite,
            device: 0
        }
    );
    assert_eq!(
        fails(r.read(0, &mut buf)),
        Error::AccessDenied {
            offset: 0,
            size: 16,
            required: AccessFlags::Read,
            device: 0
        }
    );
    m0.set_access(&[(&d, AccessFlags::Read)])?;
    r.read(0, &mut buf)?;
    assert_eq!(
        fails(r.fill(0, 16, 1)),
        Error::AccessDenied {
            offset: 0,
            size: 16,
            required: AccessFlags::ReadWrite,
            device: 0
        }
    );
    // Unmapped and out of bounds.
    assert_eq!(
        fails(r.read(2 * g, &mut buf)),
        Error::NotMapped {
            offset: 2 * g,
            size: 16
        }
    );
    assert_eq!(
        fails(r.write(4 * g - 8, &buf)),
        Error::OutOfBounds {
            what: "copy range in reservation",
            offset: 4 * g as u64 - 8,
            size: 16,
            limit: 4 * g as u64
        }
    );
    // A copy spanning an accessible and an inaccessible mapping is refused.
    assert_eq!(
        fails(r.read(g - 8, &mut buf)),
        Error::AccessDenied {
            offset: g - 8,
            size: 16,
            required: AccessFlags::Read,
            device: 0
        }
    );
    Ok(())
}

#[test]
fn retain_allocation_from_a_mapping() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    let r = Reservation::new(&d, g, ReserveOptions::default())?;
    let m = {
        let a = Allocation::new(&d, g, &AllocationProps::device(&d))?;
        r.map(0, &a, 0, g)?
    };
    m.set_access(&rw(&d))?;
    let data = pattern(512, 11);
    r.write(0, &data)?;
    let retained = m.retain_allocation()?;
    assert_eq!(retained.size(), g);
    assert_eq!(retained.props(), m.allocation().props());
    drop(m);
    // The retained reference keeps the memory: map it again and read the data.
    let r2 = Reservation::new(&d, g, ReserveOptions::default())?;
    let m2 = r2.map(0, &retained, 0, g)?;
    m2.set_access(&rw(&d))?;
    let mut out = vec![0u8; data.len()];
    r2.read(0, &mut out)?;
    assert_eq!(out, data);
    Ok(())
}
