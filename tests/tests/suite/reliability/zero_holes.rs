//! Fault-injection sweeps over the zero-block paths of zero-hole sparse arrays: splitting a
//! block around a committed tile (with the smaller blocks made on first use or already
//! there), committing a run across blocks, and decommitting with and without merging blocks.

use cuda_vmm_alloc::{HoleBehavior, SparseArray, SparseConfig, ZeroMemory};

use super::harness::{digest, sweep, OnErr, Res, Scenario, State, Step};
use super::sweeps::{decommit_partial, report};
use super::{cuda, device, gran, pattern_hashed, raw_read};

/// Tiles of the array: one zero block of 16 tiles when nothing is committed.
const TILES: usize = 16;

struct Zero {
    array: SparseArray<u8>,
    zeros: ZeroMemory,
}

/// A zero-hole array with its own zero memory and `committed` tiles written.
fn setup(committed: &[usize]) -> Res<Zero> {
    let d = device()?;
    let g = gran(&d)?;
    let zeros = ZeroMemory::new(&d, 0)?;
    let mut array = SparseArray::new(
        &d,
        TILES * g,
        SparseConfig {
            holes: HoleBehavior::Zeros,
            zeros: Some(zeros.clone()),
            ..SparseConfig::default()
        },
    )?;
    for &t in committed {
        array.commit(t * g..t * g + 1)?;
        array.write(t * g + 3, &pattern_hashed(64, t as u8))?;
    }
    Ok(Zero { array, zeros })
}

/// Contents of committed tiles, and for every hole whether a kernel reads zeros there.
fn observe(z: &Zero) -> Res<State> {
    let tile = z.array.tile_bytes();
    let mut words = vec![z.array.committed_bytes() as u64];
    let mut parts = Vec::new();
    for t in 0..TILES {
        if z.array.is_committed(t * tile) {
            let mut out = vec![0u8; tile];
            z.array.read(t * tile..(t + 1) * tile, &mut out)?;
            parts.push(Some(digest(&out)));
        } else {
            parts.push(None);
            let seen = cuda()
                .map_err(|e| e.to_string())
                .and_then(|c| raw_read(&c, z.array.ptr() + (t * tile) as u64, 64));
            words.push(u64::from(seen.is_ok_and(|b| b.iter().all(|&x| x == 0))));
        }
    }
    Ok(State { words, parts })
}

/// A later commit works, and then every hole reads zeros.
fn after(z: &mut Zero) -> Res<()> {
    let tile = z.array.tile_bytes();
    z.array.commit(14 * tile..14 * tile + 1)?;
    for t in 0..TILES {
        if !z.array.is_committed(t * tile) {
            let seen = cuda()
                .map_err(|e| e.to_string())
                .and_then(|c| raw_read(&c, z.array.ptr() + (t * tile) as u64, 64));
            if !seen.is_ok_and(|b| b.iter().all(|&x| x == 0)) {
                return Err(super::harness::Failure {
                    code: None,
                    text: format!("hole {t} does not read zeros after the next operation"),
                });
            }
        }
    }
    if z.zeros.physical_bytes() == 0 {
        return Err(super::harness::Failure {
            code: None,
            text: "the zero memory holds no block".into(),
        });
    }
    Ok(())
}

fn commit(tiles: std::ops::Range<usize>) -> Step<Zero> {
    Box::new(move |z: &mut Zero| {
        let tile = z.array.tile_bytes();
        Ok(z.array
            .commit(tiles.start * tile..tiles.end * tile)
            .map(|_| ())?)
    })
}

#[test]
fn zero_block_splits_roll_back_under_every_fault() {
    let _memory = crate::memory_exclusive();
    let scenarios = [
        Scenario {
            name: "commit one tile in a fresh zero block (smaller blocks made on first use)",
            setup: Box::new(|| setup(&[])),
            op: commit(5..6),
            observe: Box::new(observe),
            after: Box::new(after),
            on_err: OnErr::Unchanged,
        },
        Scenario {
            name: "commit one tile in a zero block (smaller blocks there already)",
            setup: Box::new(|| setup(&[9])),
            op: commit(5..6),
            observe: Box::new(observe),
            after: Box::new(after),
            on_err: OnErr::Unchanged,
        },
        Scenario {
            name: "commit a run across zero blocks",
            setup: Box::new(|| setup(&[9])),
            op: commit(3..12),
            observe: Box::new(observe),
            after: Box::new(after),
            on_err: OnErr::Unchanged,
        },
        Scenario {
            name: "decommit tiles next to a committed one (new blocks, no merge)",
            setup: Box::new(|| setup(&[5, 6, 9])),
            op: Box::new(|z: &mut Zero| {
                let tile = z.array.tile_bytes();
                Ok(z.array.decommit(5 * tile..7 * tile).map(|_| ())?)
            }),
            observe: Box::new(observe),
            after: Box::new(after),
            on_err: OnErr::Partial(decommit_partial),
        },
        Scenario {
            name: "decommit the last committed tiles (zero blocks merged)",
            setup: Box::new(|| setup(&[5, 6, 9])),
            op: Box::new(|z: &mut Zero| {
                let tile = z.array.tile_bytes();
                Ok(z.array.decommit(5 * tile..10 * tile).map(|_| ())?)
            }),
            observe: Box::new(observe),
            after: Box::new(after),
            on_err: OnErr::Partial(decommit_partial),
        },
    ];
    let covs: Vec<_> = scenarios.iter().map(sweep).collect();
    report("zero-hole blocks", &covs);
}
