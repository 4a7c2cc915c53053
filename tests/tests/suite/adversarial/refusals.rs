//! Class 4 and 5: refusals change nothing. Bad input (`usize::MAX` sizes, offsets and
//! counts, `offset + len` overflow, cuts through mappings) must come back as a clear
//! error and leave mappings, access, committed bytes, lengths and contents as before;
//! a chunk pool must refuse allocations another handle or mapping still holds.

use cuda_vmm::{
    AccessFlags, Allocation, AllocationProps, Error, GranularityKind, Reservation, ReserveOptions,
};
use cuda_vmm_alloc::{ChunkPool, GrowableBuffer, PoolConfig, SparseArray, SparseConfig};

use super::{pattern_blocks, TestResult, MIB};

type AllocError = cuda_vmm_alloc::Error;

/// Class 4: `Reservation::map` given `usize::MAX` offsets and sizes, an offset whose
/// `offset + size` overflows, a partial allocation or an overlap: each refusal is the
/// exact validation error, and the reservation's mappings, access and bytes are as
/// before.
#[test]
fn bad_maps_are_refused_and_change_nothing() -> TestResult {
    let _memory = crate::memory_shared();
    let device = crate::cuda()?.device(0)?;
    let props = AllocationProps::device(&device);
    let g = device.granularity(&props, GranularityKind::Minimum)?;
    let r = Reservation::new(&device, 4 * g, ReserveOptions::default())?;
    let a = Allocation::new(&device, g, &props)?;
    let _m = r.map(0, &a, 0, g)?;
    r.set_access(0, g, &[(&device, AccessFlags::ReadWrite)])?;
    let data = pattern_blocks(g, 41, 37, 13);
    r.write(0, &data)?;
    let b = Allocation::new(&device, g, &props)?;
    let top = usize::MAX - (g - 1); // a granularity multiple whose end overflows
    let cases: Vec<(&str, cuda_vmm::Result<cuda_vmm::Mapping>)> = vec![
        ("offset MAX", r.map(usize::MAX, &b, 0, g)),
        ("size MAX", r.map(0, &b, 0, usize::MAX)),
        ("offset + size overflows", r.map(top, &b, 0, g)),
        ("past the end", r.map(4 * g, &b, 0, g)),
        ("alloc offset MAX", r.map(g, &b, usize::MAX, g)),
        ("alloc offset overflows", r.map(g, &b, top, g)),
        ("size 0", r.map(g, &b, 0, 0)),
        ("overlap", r.map(0, &b, 0, g)),
    ];
    for (what, result) in cases {
        let e = result.expect_err(what);
        let expected = match what {
            "offset MAX" | "size MAX" | "alloc offset MAX" => {
                matches!(e, Error::NotAligned { .. })
            }
            "offset + size overflows" | "past the end" | "alloc offset overflows" => {
                matches!(e, Error::OutOfBounds { .. })
            }
            "size 0" => matches!(e, Error::InvalidArgument { .. }),
            _ => matches!(
                e,
                Error::Overlap {
                    existing_offset: 0,
                    ..
                }
            ),
        };
        assert!(expected, "{what}: {e:?}");
        assert_eq!(r.mapping_count(), 1, "{what}");
        assert!(r.is_mapped(0, g) && !r.is_mapped(g, g), "{what}");
        assert_eq!(r.access(0, &device)?, AccessFlags::ReadWrite, "{what}");
    }
    assert_eq!(
        b.holders(),
        1,
        "a refused map kept a clone of the allocation"
    );
    let mut out = vec![0u8; g];
    r.read(0, &mut out)?;
    assert!(out == data);
    Ok(())
}

/// Class 4: `set_access` over ranges that overflow, pass the end, cut a mapping or
/// cover a hole is refused before the driver, and the access granted earlier stays.
#[test]
fn bad_set_access_is_refused_and_keeps_the_access() -> TestResult {
    let _memory = crate::memory_shared();
    let device = crate::cuda()?.device(0)?;
    let props = AllocationProps::device(&device);
    let g = device.granularity(&props, GranularityKind::Minimum)?;
    let r = Reservation::new(&device, 4 * g, ReserveOptions::default())?;
    let _m0 = r.map(0, &Allocation::new(&device, 2 * g, &props)?, 0, 2 * g)?;
    let _m1 = r.map(3 * g, &Allocation::new(&device, g, &props)?, 0, g)?;
    r.set_access(0, 2 * g, &[(&device, AccessFlags::ReadWrite)])?;
    r.set_access(3 * g, g, &[(&device, AccessFlags::Read)])?;
    let rw = [(&device, AccessFlags::ReadWrite)];
    let top = usize::MAX - (g - 1);
    let refusals: Vec<(&str, Error)> = vec![
        ("offset MAX", r.set_access(usize::MAX, g, &rw).unwrap_err()),
        ("size MAX", r.set_access(0, usize::MAX, &rw).unwrap_err()),
        ("overflow", r.set_access(top, g, &rw).unwrap_err()),
        ("past the end", r.set_access(3 * g, 2 * g, &rw).unwrap_err()),
        ("cut", r.set_access(g, g, &rw).unwrap_err()),
        ("hole", r.set_access(0, 4 * g, &rw).unwrap_err()),
        ("size 0", r.set_access(0, 0, &rw).unwrap_err()),
    ];
    for (what, e) in refusals {
        let expected = match what {
            "offset MAX" | "size MAX" => matches!(e, Error::NotAligned { .. }),
            "overflow" | "past the end" => matches!(e, Error::OutOfBounds { .. }),
            "hole" => matches!(e, Error::NotMapped { .. }),
            _ => matches!(e, Error::InvalidArgument { .. }),
        };
        assert!(expected, "{what}: {e:?}");
        assert_eq!(r.access(0, &device)?, AccessFlags::ReadWrite, "{what}");
        assert_eq!(r.access(3 * g, &device)?, AccessFlags::Read, "{what}");
    }
    assert!(matches!(
        r.write(3 * g, &[1]),
        Err(Error::AccessDenied { .. })
    ));
    Ok(())
}

/// Class 4: a growable buffer given `usize::MAX` reserve, resize, write offsets and
/// read ranges (and `offset + len` overflow) refuses each, and keeps its length,
/// capacity, committed bytes and contents.
#[test]
fn growable_buffer_refusals_change_nothing() -> TestResult {
    let _memory = crate::memory_shared();
    let device = crate::cuda()?.device(0)?;
    let mut b = GrowableBuffer::<u32>::with_max_capacity(&device, 8 * MIB)?;
    let values: Vec<u32> = (0..300_000u32)
        .map(|i| i.wrapping_mul(2_654_435_761))
        .collect();
    b.extend_from_slice(&values)?;
    let before = (b.len(), b.capacity(), b.committed_bytes());
    let state = |b: &GrowableBuffer<u32>| (b.len(), b.capacity(), b.committed_bytes());
    let e = b.reserve(usize::MAX).unwrap_err();
    assert!(matches!(e, AllocError::CapacityExceeded { .. }), "{e:?}");
    assert_eq!(state(&b), before);
    let e = b.reserve(usize::MAX - b.len() + 1).unwrap_err();
    assert!(matches!(e, AllocError::CapacityExceeded { .. }), "{e:?}");
    assert_eq!(state(&b), before);
    let e = b.resize(usize::MAX, 7).unwrap_err();
    assert!(matches!(e, AllocError::CapacityExceeded { .. }), "{e:?}");
    assert_eq!(state(&b), before);
    let e = b.write(usize::MAX, &[1, 2]).unwrap_err();
    assert!(matches!(e, AllocError::OutOfRange { .. }), "{e:?}");
    let e = b.write(values.len() - 1, &[1, 2]).unwrap_err();
    assert!(matches!(e, AllocError::OutOfRange { .. }), "{e:?}");
    let mut out = [0u32; 2];
    let e = b
        .read(usize::MAX - 1..usize::MAX, &mut out[..1])
        .unwrap_err();
    assert!(matches!(e, AllocError::OutOfRange { .. }), "{e:?}");
    #[allow(clippy::reversed_empty_ranges)]
    let e = b.read(5..3, &mut out).unwrap_err();
    assert!(matches!(e, AllocError::OutOfRange { .. }), "{e:?}");
    let e = b.read(0..2, &mut out[..1]).unwrap_err();
    assert!(matches!(e, AllocError::LengthMismatch { .. }), "{e:?}");
    let big = vec![0u32; b.max_capacity() - b.len() + 1];
    let e = b.extend_from_slice(&big).unwrap_err();
    assert!(matches!(e, AllocError::CapacityExceeded { .. }), "{e:?}");
    assert_eq!(state(&b), before);
    b.truncate(usize::MAX);
    assert_eq!(
        state(&b),
        before,
        "truncate past the end changed the buffer"
    );
    assert!(b.to_vec()? == values);
    Ok(())
}

/// Class 4: a sparse array given ranges that pass its end or overflow refuses commit,
/// decommit, read and write, and keeps its committed tiles, bytes and contents.
#[test]
fn sparse_array_refusals_change_nothing() -> TestResult {
    let _memory = crate::memory_shared();
    let device = crate::cuda()?.device(0)?;
    let len = 4 * MIB;
    let mut a = SparseArray::<u8>::new(&device, len, SparseConfig::default())?;
    let tile = a.tile_bytes();
    a.commit(0..tile)?;
    let data = pattern_blocks(tile, 51, 37, 13);
    a.write(0, &data)?;
    let runs = |a: &SparseArray<u8>| a.committed_runs().collect::<Vec<_>>();
    let before = (runs(&a), a.committed_bytes());
    let bad: Vec<std::ops::Range<usize>> = vec![
        0..usize::MAX,
        usize::MAX - 1..usize::MAX,
        len..len + 1,
        tile..len + 1,
    ];
    for range in bad {
        let e = a.commit(range.clone()).unwrap_err();
        assert!(
            matches!(e, AllocError::OutOfRange { .. }),
            "commit {range:?}: {e:?}"
        );
        assert_eq!((runs(&a), a.committed_bytes()), before, "commit {range:?}");
        let e = a.decommit(range.clone()).unwrap_err();
        assert!(
            matches!(e, AllocError::OutOfRange { .. }),
            "decommit {range:?}: {e:?}"
        );
        assert_eq!(
            (runs(&a), a.committed_bytes()),
            before,
            "decommit {range:?}"
        );
    }
    let e = a.write(usize::MAX, &[1]).unwrap_err();
    assert!(matches!(e, AllocError::OutOfRange { .. }), "{e:?}");
    let e = a.write(len - 1, &[1, 2]).unwrap_err();
    assert!(matches!(e, AllocError::OutOfRange { .. }), "{e:?}");
    let mut out = vec![0u8; tile];
    a.read(0..tile, &mut out)?;
    assert!(out == data);
    assert_eq!((runs(&a), a.committed_bytes()), before);
    Ok(())
}

/// Class 5: a chunk pool must not take back an allocation someone else still holds:
/// a clone, a mapping of it, or a second handle retained from the mapping; an
/// imported one is never exclusive. Each refusal returns the allocation untouched,
/// and once every other holder is gone the recycle is accepted.
#[test]
fn chunk_pool_refuses_allocations_held_elsewhere() -> TestResult {
    let _memory = crate::memory_shared();
    let device = crate::cuda()?.device(0)?;
    let pool = ChunkPool::new(&device, PoolConfig::default())?;
    let chunk = pool.acquire()?;
    let (r, m) = {
        let size = chunk.size();
        let r = Reservation::new(&device, size, ReserveOptions::default())?;
        let m = r.map(0, &chunk, 0, size)?;
        (r, m)
    };
    m.set_access(&[(&device, AccessFlags::ReadWrite)])?;
    let retained = m.retain_allocation()?;
    let refused = |a: Allocation, what: &str| -> Allocation {
        let e = pool.recycle(a).expect_err(what);
        let (error, back) = e.into_parts();
        assert!(
            matches!(error, AllocError::ChunkInUse { .. }),
            "{what}: {error:?}"
        );
        back.unwrap_or_else(|| panic!("{what}: the allocation did not come back"))
    };
    let held = pool.stats().chunks_held;
    let clone = refused(chunk.clone(), "a clone while mapped");
    let retained = refused(retained, "the retained handle while mapped");
    drop(m);
    let retained = refused(retained, "the retained handle while the original lives");
    drop(retained);
    let clone = refused(clone, "a clone while another clone lives");
    drop(clone);
    assert_eq!(pool.stats().chunks_held, held, "a refusal changed the pool");
    assert_eq!(chunk.holders(), 1);
    assert!(pool.recycle(chunk).map_err(|e| e.into_parts().0)?);
    assert_eq!(pool.stats().chunks_held, held + 1);
    drop(r);
    Ok(())
}

/// Class 5: an allocation imported from a shareable handle (here the process's own
/// export) shares its memory with the exporter. The driver reports no handle types for
/// an imported handle (H200, driver 580: conformance `properties_of_imported_handle`),
/// so it matches a plain pool's class; the pool must still refuse it with `ChunkInUse`
/// (it is never exclusive), even with the exporter's handle gone, and hand it back.
#[test]
fn chunk_pool_refuses_an_imported_allocation() -> TestResult {
    let _memory = crate::memory_shared();
    let device = crate::cuda()?.device(0)?;
    if !device.capabilities()?.posix_fd_handles {
        eprintln!("skipped: POSIX file descriptor handles are not supported");
        return Ok(());
    }
    let pool = ChunkPool::new(&device, PoolConfig::default())?;
    let props = AllocationProps::device(&device).handle_types(cuda_vmm::HandleTypes::POSIX_FD);
    let original = Allocation::new(&device, pool.chunk_size(), &props)?;
    let fd = original.export_posix_fd()?;
    let imported = {
        use std::os::fd::AsFd;
        Allocation::import_posix_fd(&device, fd.as_fd(), original.size(), &props)?
    };
    drop(original);
    assert!(imported.is_imported() && !imported.is_exclusive());
    let held = pool.stats().chunks_held;
    let e = pool
        .recycle(imported)
        .expect_err("an imported allocation was recycled");
    let (error, back) = e.into_parts();
    assert!(matches!(error, AllocError::ChunkInUse { .. }), "{error:?}");
    let imported = back.expect("the refused allocation comes back");
    assert_eq!(
        pool.stats().chunks_held,
        held,
        "the refusal changed the pool"
    );
    drop(imported);
    let own = pool.acquire()?;
    assert!(pool.recycle(own).map_err(|e| e.into_parts().0)?);
    Ok(())
}

/// Class 4: `GrowableBuffer::shrink_to_fit` (releasing a whole chunk and splitting the
/// one that straddles the length) under a fault at each of its driver calls: the error
/// is the injected one, the length and contents stay intact, the context is not
/// poisoned, and the buffer keeps working (a later shrink and extend succeed).
#[test]
fn growable_shrink_under_faults_keeps_length_and_contents() -> TestResult {
    if !super::simulator_or_skip("the fault sweep")? {
        return Ok(());
    }
    let _memory = crate::memory_shared();
    let device = crate::cuda()?.device(0)?;
    let g = device.min_granularity(&AllocationProps::device(&device))?;
    let make = || -> Result<(GrowableBuffer<u8>, Vec<u8>), AllocError> {
        let mut b = GrowableBuffer::<u8>::new(
            &device,
            cuda_vmm_alloc::BufferConfig {
                max_capacity: Some(32 * g),
                policy: cuda_vmm_alloc::GrowthPolicy::fixed(4 * g),
                ..cuda_vmm_alloc::BufferConfig::default()
            },
        )?;
        let data = pattern_blocks(5 * g + 100, 81, 37, 13);
        b.extend_from_slice(&pattern_blocks(9 * g, 80, 37, 13))?;
        b.write(0, &data)?;
        b.truncate(data.len());
        Ok((b, data))
    };
    let calls = {
        let (mut b, data) = make()?;
        let calls = super::calls_made_of(super::MAPPING_CALLS, || b.shrink_to_fit().unwrap());
        assert!(b.committed_bytes() < 8 * g && b.to_vec()? == data);
        calls
    };
    assert!(!calls.is_empty());
    for (symbol, nth) in calls {
        let (mut b, data) = make()?;
        let result = {
            let _f =
                cuda_vmm_sim::inject_fault(symbol, nth, cuda_vmm_sys::CUresult::CUDA_ERROR_UNKNOWN);
            b.shrink_to_fit()
        };
        if let Err(e) = &result {
            assert!(
                super::is_injected_alloc(e, symbol),
                "{symbol} #{nth}: {e:?}"
            );
        }
        device
            .synchronize()
            .map_err(|e| format!("{symbol} #{nth} poisoned the context: {e}"))?;
        assert_eq!(b.len(), data.len(), "{symbol} #{nth}: the length changed");
        assert!(b.to_vec()? == data, "{symbol} #{nth}: the contents changed");
        b.shrink_to_fit()?;
        b.extend_from_slice(&[1, 2, 3])?;
        assert!(b.to_vec()?[data.len()..] == [1, 2, 3]);
    }
    Ok(())
}

/// Class 4: `SparseArray::commit` is all or nothing: under a fault at each of its driver
/// calls (creating, mapping, granting and zero-filling three new tiles next to a
/// committed one), the error is the injected one and the committed tiles, bytes and
/// contents are as before, with the context healthy; `decommit` under a fault at its
/// unmap keeps the tiles it could not unmap with their contents.
#[test]
fn sparse_commit_under_faults_is_all_or_nothing() -> TestResult {
    if !super::simulator_or_skip("the fault sweep")? {
        return Ok(());
    }
    let _memory = crate::memory_shared();
    let device = crate::cuda()?.device(0)?;
    let mut a = SparseArray::<u8>::new(&device, 16 * MIB, SparseConfig::default())?;
    let tile = a.tile_bytes();
    a.commit(0..tile)?;
    let data = pattern_blocks(tile, 91, 37, 13);
    a.write(0, &data)?;
    let runs = |a: &SparseArray<u8>| a.committed_runs().collect::<Vec<_>>();
    let before = (runs(&a), a.committed_bytes());
    let calls = super::calls_made_of(super::MAPPING_CALLS, || {
        a.commit(tile..4 * tile).unwrap();
    });
    a.decommit(tile..16 * MIB)?;
    assert_eq!((runs(&a), a.committed_bytes()), before);
    for (symbol, nth) in calls {
        let result = {
            let _f =
                cuda_vmm_sim::inject_fault(symbol, nth, cuda_vmm_sys::CUresult::CUDA_ERROR_UNKNOWN);
            a.commit(tile..4 * tile)
        };
        match result {
            Ok(n) => {
                assert_eq!(n, 3, "{symbol} #{nth}");
                a.decommit(tile..16 * MIB)?;
            }
            Err(e) => {
                assert!(
                    super::is_injected_alloc(&e, symbol),
                    "{symbol} #{nth}: {e:?}"
                );
            }
        }
        device
            .synchronize()
            .map_err(|e| format!("{symbol} #{nth} poisoned the context: {e}"))?;
        assert_eq!((runs(&a), a.committed_bytes()), before, "{symbol} #{nth}");
        let mut out = vec![0u8; tile];
        a.read(0..tile, &mut out)?;
        assert!(out == data, "{symbol} #{nth}: the committed tile changed");
    }
    a.commit(tile..2 * tile)?;
    let more = pattern_blocks(tile, 92, 37, 13);
    a.write(tile, &more)?;
    {
        let _f =
            cuda_vmm_sim::inject_fault("cuMemUnmap", 1, cuda_vmm_sys::CUresult::CUDA_ERROR_UNKNOWN);
        let e = a
            .decommit(0..2 * tile)
            .expect_err("the injected unmap failure");
        assert!(super::is_injected_alloc(&e, "cuMemUnmap"), "{e:?}");
    }
    device.synchronize()?;
    let mut out = vec![0u8; 2 * tile];
    for t in 0..2 {
        if a.is_committed(t * tile) {
            a.read(t * tile..(t + 1) * tile, &mut out[..tile])?;
            let expected = if t == 0 { &data } else { &more };
            assert!(out[..tile] == expected[..], "tile {t} kept but changed");
        }
    }
    Ok(())
}
