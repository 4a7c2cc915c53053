//! `MemoryBudget` (issue 23): commits past a budget shared by several sparse arrays are
//! refused with `Error::BudgetExceeded` before any driver call and change nothing; a spare
//! batch past it falls back to the tiles asked for; decommits and drops give the bytes back.

use cuda_vmm::Device;
use cuda_vmm_alloc::{
    ChunkPool, Error, HoleBehavior, MemoryBudget, PoolConfig, SparseArray, SparseConfig,
};

use crate::alloc::{counts, delta};
use crate::{device, on_simulator};
use cuda_vmm_tests::helpers::{gran, TestResult};

const CALLS: [&str; 3] = ["cuMemCreate", "cuMemMap", "cuMemSetAccess"];

fn array(
    d: &Device,
    budget: &MemoryBudget,
    holes: HoleBehavior,
    spare_tiles: usize,
    pool: Option<ChunkPool>,
) -> cuda_vmm_alloc::Result<SparseArray<u8>> {
    let g = gran(d)?;
    SparseArray::new(
        d,
        16 * g,
        SparseConfig {
            budget: Some(budget.clone()),
            holes,
            spare_tiles,
            pool,
            ..SparseConfig::default()
        },
    )
}

#[test]
fn commits_past_a_shared_budget_are_refused_and_change_nothing() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    for holes in [HoleBehavior::Error, HoleBehavior::Zeros] {
        let budget = MemoryBudget::new(4 * g);
        let mut a = array(&d, &budget, holes, 0, None)?;
        let mut b = array(&d, &budget, holes, 0, None)?;
        assert_eq!(a.commit(0..2 * g)?, 2);
        assert_eq!(b.commit(3 * g..4 * g)?, 1);
        assert_eq!((budget.used(), budget.available()), (3 * g, g));
        // Past the budget: refused before any driver call, nothing changed.
        let (stats, map) = (b.stats(), b.to_string());
        let before = counts(&CALLS);
        let refused = Error::BudgetExceeded {
            requested: 2 * g,
            used: 3 * g,
            limit: 4 * g,
        };
        assert_eq!(b.commit(5 * g..7 * g), Err(refused), "{holes:?}");
        if on_simulator()? {
            assert_eq!(delta(&before, &counts(&CALLS)), [0; 3], "{holes:?}");
        }
        assert_eq!(
            (b.stats(), b.to_string()),
            (stats, map.clone()),
            "{holes:?}"
        );
        assert_eq!(budget.used(), 3 * g);
        // One commit of two runs (tiles 2 and 4), the second past the budget: the first
        // is rolled back too.
        let err = b.commit(2 * g..5 * g).expect_err("past the budget");
        assert_eq!(
            err,
            Error::BudgetExceeded {
                requested: g,
                used: 4 * g,
                limit: 4 * g
            },
            "{holes:?}"
        );
        assert!(err.is_budget_exceeded() && !err.is_out_of_memory(), "{err}");
        assert_eq!((b.to_string(), b.committed_bytes()), (map, g), "{holes:?}");
        assert_eq!(budget.used(), 3 * g);
        // Freed memory is available again, to either array; a drop gives it back.
        a.decommit(0..16 * g)?;
        assert_eq!(budget.used(), g);
        b.commit(5 * g..8 * g)?;
        assert_eq!(budget.available(), 0);
        drop(a);
        assert_eq!(budget.used(), 4 * g);
        drop(b);
        assert_eq!(budget.used(), 0);
    }
    Ok(())
}

#[test]
fn a_spare_batch_past_the_budget_falls_back_and_pooled_tiles_count_while_held() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    let budget = MemoryBudget::new(3 * g);
    let pool = ChunkPool::new(&d, PoolConfig::default())?;
    let mut a = array(&d, &budget, HoleBehavior::Error, 3, Some(pool.clone()))?;
    // Tile 0 with 3 spares would be 4 tiles: the tile alone is committed.
    assert_eq!(a.commit(0..1)?, 1);
    assert_eq!((a.spare_count(), budget.used()), (0, g));
    // Tile 1 with its spares would be 5: alone again.
    a.commit(g..g + 1)?;
    assert_eq!((a.spare_count(), budget.used()), (0, 2 * g));
    a.commit(5 * g..5 * g + 1)?;
    assert_eq!(budget.used(), 3 * g);
    assert!(a.commit(7 * g..7 * g + 1).unwrap_err().is_budget_exceeded());
    assert_eq!(a.committed_bytes(), 3 * g);
    // Decommitted tiles go to the pool's cache, which the budget does not count.
    a.decommit(0..16 * g)?;
    assert_eq!((budget.used(), pool.stats().chunks_held), (0, 3));
    a.commit(0..1)?;
    assert_eq!(budget.used(), g);
    Ok(())
}
