//! Sleep and wake of a `SparseArray` (issue 21): committed tiles go back to the driver and
//! come back at the same tiles with their bytes; spares are released; holes stay holes
//! (reading zeros with `HoleBehavior::Zeros`); every use is refused while asleep; faults
//! leave a state a retry completes.

use std::time::Duration;

use cuda_vmm::Device;
use cuda_vmm_alloc::{Backup, Error, HoleBehavior, SparseArray, SparseConfig};

use crate::device;
use cuda_vmm_tests::helpers::{gran, TestResult};

const FLUSH: Duration = Duration::from_secs(30);

/// Tiles committed (and filled with a pattern per tile) in a 16-tile array of `u32`.
const TILES: [usize; 4] = [0, 1, 5, 9];

fn array(d: &Device, config: SparseConfig) -> Result<(SparseArray<u32>, usize), Error> {
    let g = gran(d)?;
    let per_tile = g / 4;
    let mut a = SparseArray::<u32>::new(d, 16 * per_tile, config)?;
    for &t in &TILES {
        a.commit(t * per_tile..(t + 1) * per_tile)?;
        a.write(t * per_tile, &tile_values(t, per_tile))?;
    }
    Ok((a, per_tile))
}

fn tile_values(t: usize, n: usize) -> Vec<u32> {
    (0..n as u32)
        .map(|i| i ^ (t as u32).wrapping_mul(0x9E37_79B9))
        .collect()
}

fn check(a: &SparseArray<u32>, per_tile: usize) -> TestResult {
    for &t in &TILES {
        let mut out = vec![0u32; per_tile];
        a.read(t * per_tile..(t + 1) * per_tile, &mut out)?;
        assert!(out == tile_values(t, per_tile), "tile {t}");
    }
    Ok(())
}

#[test]
fn a_sleeping_array_gives_its_tiles_back_and_wakes_them_intact() -> TestResult {
    let _memory = crate::memory_exclusive();
    let d = device()?;
    let (mut a, per_tile) = array(&d, SparseConfig::default())?;
    let committed = a.committed_bytes();
    assert!(d.cuda().flush_releases(FLUSH)?);
    let free0 = d.memory_info()?.free;
    let report = a.sleep(Backup::Host)?;
    assert_eq!(
        (report.released_bytes, report.backed_up_bytes),
        (committed, committed)
    );
    assert_eq!(
        d.memory_info()?.free,
        free0 + committed,
        "the driver has it back"
    );
    assert!(a.is_asleep() && !a.is_committed(0));
    let mut out = vec![0u32; 4];
    assert!(matches!(a.read(0..4, &mut out), Err(Error::Asleep { .. })));
    assert!(matches!(a.write(0, &[1]), Err(Error::Asleep { .. })));
    assert!(matches!(
        a.commit(2 * per_tile..3 * per_tile),
        Err(Error::Asleep { .. })
    ));
    assert!(matches!(a.decommit(0..per_tile), Err(Error::Asleep { .. })));
    assert!(matches!(
        a.sleep(Backup::Host),
        Err(Error::InvalidRequest { .. })
    ));
    let woke = a.wake()?;
    assert_eq!(
        (woke.mapped_bytes, woke.restored_bytes),
        (committed, committed)
    );
    assert_eq!(d.memory_info()?.free, free0);
    assert_eq!(a.committed_bytes(), committed);
    assert!(a.is_committed(5 * per_tile) && !a.is_committed(2 * per_tile));
    check(&a, per_tile)?;
    assert!(matches!(a.wake(), Err(Error::InvalidRequest { .. })));
    a.commit(2 * per_tile..3 * per_tile)?;
    Ok(())
}

#[test]
fn holes_read_zeros_after_wake_spares_are_released_and_discard_keeps_the_layout() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let config = SparseConfig {
        holes: HoleBehavior::Zeros,
        spare_tiles: 1,
        ..SparseConfig::default()
    };
    let (mut a, per_tile) = array(&d, config)?;
    a.commit(10 * per_tile..11 * per_tile)?; // grows the run at 9: a spare after it
    assert!(a.spare_count() > 0);
    a.sleep(Backup::Host)?;
    assert_eq!(a.spare_count(), 0);
    a.wake()?;
    check(&a, per_tile)?;
    let mut hole = vec![1u32; per_tile];
    a.read(3 * per_tile..4 * per_tile, &mut hole)?;
    assert!(
        hole.iter().all(|&v| v == 0),
        "a hole reads zeros after wake"
    );
    a.sleep(Backup::Discard)?;
    a.wake()?;
    assert_eq!(a.committed_bytes(), (TILES.len() + 1) * per_tile * 4);
    a.write(0, &tile_values(0, per_tile))?;
    let mut out = vec![0u32; per_tile];
    a.read(0..per_tile, &mut out)?;
    assert_eq!(out, tile_values(0, per_tile));
    for cycle in 0..5 {
        let r = a.sleep(Backup::Host)?;
        if cycle > 0 {
            assert_eq!(r.host_prepared_bytes, 0, "cycle {cycle} pinned again");
        }
        a.wake()?;
    }
    Ok(())
}

/// Every fault of an array's sleep and wake (see [`crate::sleep_faults`]).
#[test]
fn every_fault_of_an_array_s_sleep_and_wake_leaves_a_state_a_retry_completes() -> TestResult {
    let Some((d, g)) = crate::simulated_device(crate::FAULT_INJECTION)? else {
        return Ok(());
    };
    let _memory = crate::memory_shared();
    let per_tile = g / 4;
    crate::sleep_faults::every_fault(
        &d,
        || Ok(array(&d, SparseConfig::default())?.0),
        |a| check(a, per_tile),
    )
}
