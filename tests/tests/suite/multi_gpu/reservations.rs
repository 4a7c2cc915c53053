//! Memory of two devices behind one pointer, tile by tile: a raw reservation striped
//! across the devices, and sparse arrays (and their spare tiles) placed round-robin.

use super::*;

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

// ---- sparse arrays -----------------------------------------------------------------------

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
