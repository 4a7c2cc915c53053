//! Background spares against a memory budget, faults injected into the worker's calls,
//! and a peer granted access while spares are in flight.

use super::*;

#[test]
fn spares_past_the_budget_fail_on_the_worker_and_commits_are_refused_exactly() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    let per = g / 4;
    // 4 spares never fit in 3 tiles: every run asked of the worker is refused.
    let budget = MemoryBudget::new(3 * g);
    let mut a = SparseArray::<u32>::new(&d, 16 * per, config(4, None, Some(budget.clone())))?;
    let mut m = Model::new(16, 4);
    for t in 0..3 {
        assert_eq!(a.commit(t * per..(t + 1) * per)?, 1, "tile {t}");
        m.committed.insert(t, t as u32);
        mark(&mut a, per, t, t as u32)?;
        assert_eq!(budget.used(), (t + 1) * g);
    }
    match a.commit(3 * per..4 * per) {
        Err(Error::BudgetExceeded {
            requested,
            used,
            limit,
        }) => assert_eq!((requested, used, limit), (g, 3 * g, 3 * g)),
        other => panic!("not refused: {other:?}"),
    }
    check(&a, &m, per, "after the refusal")?;
    assert_eq!(a.release_spares()?, 0);
    drop(a);
    assert!(d.cuda().flush_releases(FLUSH)?);
    assert_eq!(budget.used(), 0);
    Ok(())
}

#[test]
fn spares_that_fit_the_budget_only_partly_leave_the_rest_to_the_commits() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    let per = g / 4;
    let budget = MemoryBudget::new(4 * g);
    let mut a = SparseArray::<u32>::new(&d, 16 * per, config(2, None, Some(budget.clone())))?;
    // Tile 0, spares 1 and 2 (3 tiles); then each later run of 2 spares would pass 4.
    let expected = [(1, 3), (1, 3), (1, 3), (1, 4)];
    for (t, (n, used)) in expected.into_iter().enumerate() {
        let before = counts(&CALLS);
        assert_eq!(a.commit(t * per..(t + 1) * per)?, n, "tile {t}");
        // Only every commit whose tile is no spare maps on this thread.
        let mapped = u64::from(t == 0 || t == 3);
        if on_simulator()? {
            assert_eq!(
                delta(&before, &counts(&CALLS)),
                [mapped, mapped, mapped],
                "tile {t}"
            );
        }
        if t > 0 {
            // (After tile 0 the worker may not have charged its spares yet.)
            assert_eq!(budget.used(), used * g, "tile {t}");
        }
    }
    assert_eq!(a.committed_bytes(), 4 * g);
    match a.commit(4 * per..5 * per) {
        Err(Error::BudgetExceeded {
            requested,
            used,
            limit,
        }) => assert_eq!((requested, used, limit), (g, 4 * g, 4 * g)),
        other => panic!("not refused: {other:?}"),
    }
    assert_eq!((a.committed_bytes(), a.spare_count()), (4 * g, 0));
    drop(a);
    assert!(d.cuda().flush_releases(FLUSH)?);
    assert_eq!(budget.used(), 0);
    Ok(())
}

#[test]
fn a_commit_that_fits_the_budget_is_not_refused_for_background_spares() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let g = gran(&d)?;
    let per = g / 4;
    let budget = MemoryBudget::new(2 * g);
    let mut a = SparseArray::<u32>::new(&d, 16 * per, config(1, None, Some(budget.clone())))?;
    assert_eq!(a.commit(0..per)?, 1); // the worker maps tile 1 as a spare
    std::thread::sleep(Duration::from_millis(200)); // ... and is done by now
                                                    // The commit itself fits: tile 0 and tile 5 are 2 tiles of a 2-tile budget.
    assert_eq!(a.commit(5 * per..6 * per)?, 1);
    assert_eq!(a.committed_bytes(), 2 * g);
    drop(a);
    assert!(d.cuda().flush_releases(FLUSH)?);
    assert_eq!(budget.used(), 0);
    Ok(())
}

#[test]
fn a_failed_map_on_the_worker_leaves_the_tiles_to_the_commit_and_leaks_nothing() -> TestResult {
    let _memory = crate::memory_exclusive();
    if !simulator_or_skip(FAULT_INJECTION)? {
        return Ok(());
    }
    let d = device()?;
    let per = gran(&d)? / 4;
    let before = free(&d)?;
    let mut a = SparseArray::<u32>::new(&d, 32 * per, config(2, None, None))?;
    let mut m = Model::new(32, 2);
    let oom = CUresult::CUDA_ERROR_OUT_OF_MEMORY;
    // The worker's first map fails: its run (tiles 1, 2) is given back whole.
    let fault = cuda_vmm_sim::inject_fault_on_thread("cuda-vmm-prefetch", "cuMemMap", 1, oom);
    commit(&mut a, &mut m, per, 0..1, 1, true)?;
    m.spares.clear(); // the run asked for fails
    let calls = counts(&CALLS);
    assert_eq!(a.commit(per..3 * per)?, 2);
    assert!(fault.fired());
    // Mapped here, as one run.
    assert_eq!(delta(&calls, &counts(&CALLS)), [2, 2, 1]);
    m.commit(1..3, 2);
    for t in 1..3 {
        mark(&mut a, per, t, 2)?;
    }
    check(&a, &m, per, "after the worker's failed run")?;
    drop(fault);
    // Settles the run asked for after tiles 1..3 (tiles 3, 4: adopted and released), so
    // that no map of it counts toward the next fault.
    decommit(&mut a, &mut m, per, 3..5)?;
    // The second map of the next run fails, after the first went in: undone too.
    let fault = cuda_vmm_sim::inject_fault_on_thread("cuda-vmm-prefetch", "cuMemMap", 2, oom);
    commit(&mut a, &mut m, per, 10..11, 3, true)?;
    m.spares.retain(|&t| !(11..13).contains(&t));
    commit(&mut a, &mut m, per, 11..13, 4, true)?;
    assert!(fault.fired());
    drop(fault);
    // Tiles 3, 4 map here again; later runs map on the worker again.
    commit(&mut a, &mut m, per, 3..5, 5, true)?;
    commit(&mut a, &mut m, per, 13..15, 6, true)?;
    assert_eq!(a.release_spares()?, m.spares.len());
    m.spares.clear();
    check(&a, &m, per, "at the end")?;
    drop(a);
    assert!(d.cuda().flush_releases(FLUSH)?);
    assert_eq!(free(&d)?, before, "memory leaked");
    Ok(())
}

#[test]
fn a_mapping_the_worker_could_not_undo_does_not_fail_the_commit_over_its_tile() -> TestResult {
    let _memory = crate::memory_exclusive();
    if !simulator_or_skip(FAULT_INJECTION)? {
        return Ok(());
    }
    let d = device()?;
    let per = gran(&d)? / 4;
    let before = free(&d)?;
    let mut a = SparseArray::<u32>::new(&d, 32 * per, config(2, None, None))?;
    let mut m = Model::new(32, 2);
    // The worker's run (tiles 11, 12) maps tile 11, fails on tile 12, and cannot unmap
    // tile 11 on its first try: that mapping is handed to the array to unmap later.
    let map = cuda_vmm_sim::inject_fault_on_thread(
        "cuda-vmm-prefetch",
        "cuMemMap",
        2,
        CUresult::CUDA_ERROR_OUT_OF_MEMORY,
    );
    let unmap = cuda_vmm_sim::inject_fault_on_thread(
        "cuda-vmm-prefetch",
        "cuMemUnmap",
        1,
        CUresult::CUDA_ERROR_UNKNOWN,
    );
    commit(&mut a, &mut m, per, 10..11, 1, true)?;
    m.spares.clear();
    // The commit over the failed run waits for it, and must map tiles 11 and 12 itself
    // (after unmapping what the worker left at tile 11).
    let n = a.commit(11 * per..13 * per);
    assert!(map.fired() && unmap.fired());
    assert_eq!(n?, 2);
    m.commit(11..13, 2);
    for t in 11..13 {
        mark(&mut a, per, t, 2)?;
    }
    check(&a, &m, per, "after the stranded mapping")?;
    drop((map, unmap));
    drop(a);
    assert!(d.cuda().flush_releases(FLUSH)?);
    assert_eq!(free(&d)?, before, "memory leaked");
    Ok(())
}

/// The access flags `device` has at `addr`, asked of the driver (`cuMemGetAccess`).
fn access_at(addr: u64, device: &Device) -> Result<u64, Box<dyn std::error::Error>> {
    let get = entry!(cuda()?.sys().table(), cuMemGetAccess)?;
    let location = cuda_vmm_sys::CUmemLocation {
        type_: cuda_vmm_sys::CUmemLocationType::CU_MEM_LOCATION_TYPE_DEVICE,
        id: i32::try_from(device.ordinal())?,
    };
    let mut flags = 0u64;
    // SAFETY: valid out-pointer and location; `addr` lies in a live mapping (the caller
    // holds the array).
    let r = unsafe { get(&mut flags, &location, addr) };
    assert_eq!(r, CUresult::CUDA_SUCCESS, "cuMemGetAccess at {addr:#x}");
    Ok(flags)
}

#[test]
fn a_peer_granted_while_spares_are_in_flight_reaches_them_and_the_later_ones() -> TestResult {
    let _memory = crate::memory_shared();
    if !simulator_or_skip("needs two simulated devices")? || cuda()?.device_count()? < 2 {
        return Ok(());
    }
    let d = device()?;
    let peer = cuda()?.device(1)?;
    let g = gran(&d)?;
    let per = g / 4;
    let rw = cuda_vmm_sys::CUmemAccess_flags::CU_MEM_ACCESS_FLAGS_PROT_READWRITE.0 as u64;
    for round in 0..20 {
        let mut a = SparseArray::<u32>::new(&d, 16 * per, config(2, None, None))?;
        let mut m = Model::new(16, 2);
        commit(&mut a, &mut m, per, 0..1, 1, true)?; // tiles 1, 2 in flight
        a.grant_access(std::slice::from_ref(&peer))?; // waits for them
        assert_eq!(a.spare_count(), 2, "round {round}");
        check(&a, &m, per, "after grant_access")?;
        // Tiles 1, 2 (old worker), then 3, 4 and 5, 6 (the worker started after the grant).
        commit(&mut a, &mut m, per, 1..3, 2, true)?;
        commit(&mut a, &mut m, per, 3..5, 3, true)?;
        a.grant_access(std::slice::from_ref(&peer))?; // again, with 5, 6 in flight
        commit(&mut a, &mut m, per, 5..7, 4, true)?;
        for t in 0..7 {
            let addr = a.ptr() + (t * g) as u64;
            assert_eq!(access_at(addr, &peer)?, rw, "round {round}, tile {t}");
        }
        decommit(&mut a, &mut m, per, 0..16)?;
    }
    Ok(())
}

#[test]
fn any_failed_call_of_the_workers_run_gives_its_memory_and_budget_back() -> TestResult {
    let _memory = crate::memory_exclusive();
    if !simulator_or_skip(FAULT_INJECTION)? {
        return Ok(());
    }
    let d = device()?;
    let g = gran(&d)?;
    let per = g / 4;
    let oom = CUresult::CUDA_ERROR_OUT_OF_MEMORY;
    // The worker's run for tiles 1, 2 makes 2 creates, 2 maps and 1 set-access.
    let faults = [
        ("cuMemCreate", 1),
        ("cuMemCreate", 2),
        ("cuMemMap", 1),
        ("cuMemMap", 2),
        ("cuMemSetAccess", 1),
    ];
    for pooled in [false, true] {
        for (symbol, n) in faults {
            let what = format!("{symbol} #{n}, pooled {pooled}");
            let before = free(&d)?;
            let pool = if pooled {
                let config = PoolConfig {
                    chunk_size: g,
                    ..PoolConfig::default()
                };
                Some(ChunkPool::new(&d, config)?)
            } else {
                None
            };
            let budget = MemoryBudget::new(16 * g);
            let config = config(2, pool.clone(), Some(budget.clone()));
            let mut a = SparseArray::<u32>::new(&d, 16 * per, config)?;
            let mut m = Model::new(16, 2);
            let fault = cuda_vmm_sim::inject_fault_on_thread("cuda-vmm-prefetch", symbol, n, oom);
            commit(&mut a, &mut m, per, 0..1, 1, !pooled)?;
            m.spares.clear();
            // Waits for the failed run and maps both tiles here.
            commit(&mut a, &mut m, per, 1..3, 2, !pooled)?;
            assert!(fault.fired(), "{what}");
            drop(fault);
            // The next run (tiles 3, 4) goes through.
            assert_eq!(a.release_spares()?, 2, "{what}");
            m.spares.clear();
            check(&a, &m, per, &what)?;
            assert_eq!(budget.used(), 3 * g, "{what}");
            drop(a);
            drop(pool);
            assert!(d.cuda().flush_releases(FLUSH)?);
            assert_eq!(budget.used(), 0, "{what}");
            assert_eq!(free(&d)?, before, "memory leaked, {what}");
        }
    }
    Ok(())
}

#[test]
fn dropping_right_after_the_worker_stranded_a_mapping_leaks_nothing() -> TestResult {
    let _memory = crate::memory_exclusive();
    if !simulator_or_skip(FAULT_INJECTION)? {
        return Ok(());
    }
    let d = device()?;
    let per = gran(&d)? / 4;
    let before = free(&d)?;
    for round in 0..10 {
        let mut a = SparseArray::<u32>::new(&d, 32 * per, config(2, None, None))?;
        let map = cuda_vmm_sim::inject_fault_on_thread(
            "cuda-vmm-prefetch",
            "cuMemMap",
            2,
            CUresult::CUDA_ERROR_OUT_OF_MEMORY,
        );
        let unmap = cuda_vmm_sim::inject_fault_on_thread(
            "cuda-vmm-prefetch",
            "cuMemUnmap",
            1,
            CUresult::CUDA_ERROR_UNKNOWN,
        );
        assert_eq!(a.commit(10 * per..11 * per)?, 1);
        drop(a); // waits for the run, adopts the stranded mapping, releases everything
        assert!(map.fired() && unmap.fired(), "round {round}");
        drop((map, unmap));
        assert!(d.cuda().flush_releases(FLUSH)?);
        assert_eq!(free(&d)?, before, "memory leaked, round {round}");
    }
    Ok(())
}

#[test]
fn a_failed_commit_over_tiles_in_flight_keeps_them_as_spares_and_counts_every_call() -> TestResult {
    let _memory = crate::memory_shared();
    if !simulator_or_skip(FAULT_INJECTION)? {
        return Ok(());
    }
    let d = device()?;
    let g = gran(&d)?;
    let per = g / 4;
    let mut a = SparseArray::<u32>::new(&d, 16 * per, config(2, None, None))?;
    let mut m = Model::new(16, 2);
    commit(&mut a, &mut m, per, 0..1, 1, true)?; // tiles 1, 2 in flight
                                                 // Tiles 0..5: 1, 2 adopted, 3, 4 mapped here, and that map fails.
    let fault = cuda_vmm_sim::inject_fault("cuMemMap", 2, CUresult::CUDA_ERROR_OUT_OF_MEMORY);
    let e = a.commit(0..5 * per).unwrap_err();
    assert!(fault.fired());
    drop(fault);
    assert_eq!(
        e.to_string(),
        "cuMemMap failed: CUDA_ERROR_OUT_OF_MEMORY (2): The API call failed because it was \
         unable to allocate enough memory or other resources to perform the requested \
         operation."
    );
    // All or nothing: tiles 1, 2 are still spares, nothing more was asked.
    assert_eq!(a.spare_count(), 2);
    check(&a, &m, per, "after the failed commit")?;
    commit(&mut a, &mut m, per, 0..5, 2, true)?;
    assert_eq!(a.release_spares()?, 2); // 5, 6
    m.spares.clear();
    check(&a, &m, per, "at the end")?;
    // The worker's calls count with the caller's (maps as attempted): tile 0; 1, 2
    // (worker); 3 and the failed map of 4 (undone, no set-access); 3, 4; 5, 6 (worker).
    let stats = a.stats();
    assert_eq!(
        (stats.creates, stats.maps, stats.set_access_calls),
        (9, 9, 4)
    );
    assert_eq!(stats.peak_committed_bytes, 7 * g);
    // Empty ranges, at the start and at the end: nothing committed, nothing asked.
    assert_eq!(a.commit(16 * per..16 * per)?, 0);
    assert_eq!(a.commit(8 * per..8 * per)?, 0);
    assert_eq!(a.spare_count(), 0);
    assert_eq!(a.release_spares()?, 0);
    Ok(())
}
