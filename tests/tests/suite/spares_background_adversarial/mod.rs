//! Adversarial tests of `SparseConfig::background_spares`, through the public API: commits
//! at the array's end and past runs already asked of the worker, overlapping commits right
//! after a commit, random sequences of commit / decommit / release_spares / grant_access /
//! drop checked against a model after every step, a memory budget the worker's spares
//! exceed, a pool shared by arrays on several threads, and faults injected into the
//! worker's maps.
//!
//! The model: the tiles the array holds as spares once every run asked of the worker is
//! adopted are determined by the calls alone (a run asked for stops at committed tiles,
//! adopted spares and runs still in flight alike), so the tests know them exactly, and
//! with them the driver calls each commit makes on the caller's thread.
//!
//! Every test here holds the suite's device-memory lock (shared, or exclusive for exact
//! free-memory checks and for faults aimed at the worker threads by name), so that the
//! faults aimed at `cuda-vmm-prefetch` threads fire on this file's arrays.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::time::Duration;

use cuda_vmm::sys::CUresult;
use cuda_vmm::Device;
use cuda_vmm_alloc::{ChunkPool, Error, MemoryBudget, PoolConfig, SparseArray, SparseConfig};
use cuda_vmm_sys::entry;

use crate::alloc::{counts, delta};
use crate::{cuda, device, on_simulator, simulator_or_skip, FAULT_INJECTION};
use cuda_vmm_tests::helpers::{gran, granule_pool, words_added, TestResult};

mod budget_faults;

const CALLS: [&str; 3] = ["cuMemCreate", "cuMemMap", "cuMemSetAccess"];
/// Elements written (and checked) at the start and at the end of each committed tile.
const MARK: usize = 16;
const FLUSH: Duration = Duration::from_secs(60);

fn config(spares: usize, pool: Option<ChunkPool>, budget: Option<MemoryBudget>) -> SparseConfig {
    SparseConfig {
        spare_tiles: spares,
        background_spares: true,
        uninit_tiles: true,
        pool,
        budget,
        ..SparseConfig::default()
    }
}

fn free(d: &Device) -> cuda_vmm::Result<usize> {
    Ok(d.memory_info()?.free)
}

/// A fixed-seed xorshift generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// What the array must hold: committed tiles (with the seed of what was written to them)
/// and the spares it holds or has asked the worker for.
struct Model {
    tiles: usize,
    spare_tiles: usize,
    committed: BTreeMap<usize, u32>,
    spares: BTreeSet<usize>,
}

impl Model {
    fn new(tiles: usize, spare_tiles: usize) -> Model {
        Model {
            tiles,
            spare_tiles,
            committed: BTreeMap::new(),
            spares: BTreeSet::new(),
        }
    }

    /// A commit of tiles `w`: the new tiles, the runs of those that are not spares (mapped
    /// on the caller's thread), then the run asked of the worker.
    fn commit(&mut self, w: Range<usize>, seed: u32) -> (Vec<usize>, Vec<Range<usize>>) {
        let new: Vec<usize> = w
            .clone()
            .filter(|t| !self.committed.contains_key(t))
            .collect();
        let mut missing: Vec<Range<usize>> = Vec::new();
        for &t in new.iter().filter(|t| !self.spares.contains(t)) {
            match missing.last_mut() {
                Some(r) if r.end == t => r.end += 1,
                _ => missing.push(t..t + 1),
            }
        }
        for &t in &new {
            self.spares.remove(&t);
            self.committed.insert(t, seed);
        }
        if !new.is_empty() {
            let limit = (w.end + self.spare_tiles).min(self.tiles);
            let stop = (w.end..limit)
                .find(|t| self.committed.contains_key(t) || self.spares.contains(t))
                .unwrap_or(limit);
            self.spares.extend(w.end..stop);
        }
        (new, missing)
    }

    /// A decommit of tiles `w`: how many committed tiles it drops.
    fn decommit(&mut self, w: Range<usize>) -> usize {
        let n = w
            .clone()
            .filter(|t| self.committed.remove(t).is_some())
            .count();
        for t in w {
            self.spares.remove(&t);
        }
        n
    }
}

/// The residency map's symbols, one per tile.
fn symbols<T: cuda_vmm_alloc::DevicePod>(a: &SparseArray<T>) -> Vec<char> {
    let text = a.to_string();
    let (_, map) = text.split_once('\n').unwrap_or((&text, ""));
    map.chars().filter(|c| "#s.+".contains(*c)).collect()
}

/// Writes the marks of tile `t`.
fn mark(a: &mut SparseArray<u32>, per: usize, t: usize, seed: u32) -> TestResult {
    let s = t * per;
    a.write(s, &words_added(s..s + MARK, seed))?;
    a.write(s + per - MARK, &words_added(s + per - MARK..s + per, seed))?;
    Ok(())
}

/// Checks the array against the model (`what` names the step).
fn check(a: &SparseArray<u32>, m: &Model, per: usize, what: &str) -> TestResult {
    let tile = a.tile_bytes();
    assert_eq!(a.committed_bytes(), m.committed.len() * tile, "{what}");
    let runs: Vec<Range<usize>> = a.committed_runs().collect();
    let mut want: Vec<Range<usize>> = Vec::new();
    for &t in m.committed.keys() {
        match want.last_mut() {
            Some(r) if r.end == t => r.end += 1,
            _ => want.push(t..t + 1),
        }
    }
    assert_eq!(runs, want, "committed runs, {what}");
    for t in 0..m.tiles {
        let c = m.committed.contains_key(&t);
        assert_eq!(a.is_committed(t * per), c, "tile {t} start, {what}");
        assert_eq!(a.is_committed(t * per + per - 1), c, "tile {t} end, {what}");
    }
    // Spares adopted so far: among the model's, never a committed tile.
    let map = symbols(a);
    assert_eq!(map.len(), m.tiles, "{what}");
    let mut spares = 0;
    for (t, &c) in map.iter().enumerate() {
        let expected = if m.committed.contains_key(&t) {
            '#'
        } else if c == 's' && m.spares.contains(&t) {
            's'
        } else {
            '.'
        };
        assert_eq!(c, expected, "tile {t} in the map, {what}: {a}");
        spares += usize::from(c == 's');
    }
    assert_eq!(a.spare_count(), spares, "{what}");
    assert_eq!(a.spare_bytes(), spares * tile, "{what}");
    for (&t, &seed) in &m.committed {
        let s = t * per;
        let mut head = vec![0u32; MARK];
        a.read(s..s + MARK, &mut head)?;
        assert!(
            head == words_added(s..s + MARK, seed),
            "tile {t} head, {what}"
        );
        let mut tail = vec![0u32; MARK];
        a.read(s + per - MARK..s + per, &mut tail)?;
        assert!(
            tail == words_added(s + per - MARK..s + per, seed),
            "tile {t} tail, {what}"
        );
    }
    Ok(())
}

/// Commits tiles `w`, checking the count, the caller's driver calls (when `calls`: no pool,
/// no fault) and the model; writes the new tiles' marks.
fn commit(
    a: &mut SparseArray<u32>,
    m: &mut Model,
    per: usize,
    w: Range<usize>,
    seed: u32,
    calls: bool,
) -> TestResult {
    let before = counts(&CALLS);
    let n = a.commit(w.start * per..w.end * per)?;
    let made = delta(&before, &counts(&CALLS));
    let (new, missing) = m.commit(w.clone(), seed);
    assert_eq!(n, new.len(), "commit {w:?}");
    // Per-thread call counts exist on the simulator only.
    if calls && on_simulator()? {
        let tiles = missing.iter().map(|r| r.len() as u64).sum::<u64>();
        assert_eq!(
            made,
            [tiles, tiles, missing.len() as u64],
            "caller's driver calls, commit {w:?} (mapping {missing:?} itself)"
        );
    }
    for t in new {
        mark(a, per, t, seed)?;
    }
    check(a, m, per, &format!("after commit {w:?}"))
}

fn decommit(a: &mut SparseArray<u32>, m: &mut Model, per: usize, w: Range<usize>) -> TestResult {
    let n = a.decommit(w.start * per..w.end * per)?;
    assert_eq!(n, m.decommit(w.clone()), "decommit {w:?}");
    check(a, m, per, &format!("after decommit {w:?}"))
}

fn release(a: &mut SparseArray<u32>, m: &mut Model, per: usize) -> TestResult {
    let n = a.release_spares()?;
    assert_eq!(n, m.spares.len(), "release_spares");
    m.spares.clear();
    assert_eq!((a.spare_count(), a.spare_bytes()), (0, 0));
    check(a, m, per, "after release_spares")
}

/// One random sequence on arrays of `tiles` tiles with `spares` spares, dropped and made
/// again now and then; `peer` is granted access now and then.
fn random_run(
    d: &Device,
    peer: Option<&Device>,
    seed: u64,
    steps: usize,
    tiles: usize,
    spares: usize,
    pool: Option<&ChunkPool>,
) -> TestResult {
    let g = gran(d)?;
    let per = g / 4;
    let mut rng = Rng(seed);
    let make = || SparseArray::<u32>::new(d, tiles * per, config(spares, pool.cloned(), None));
    let mut a = make()?;
    let mut m = Model::new(tiles, spares);
    let mut last_end = 0;
    let calls = pool.is_none();
    for step in 0..steps {
        let stamp = (seed as u32).wrapping_mul(31).wrapping_add(step as u32);
        match rng.below(12) {
            0..=3 => {
                let s = rng.below(tiles);
                let e = (s + 1 + rng.below(4)).min(tiles);
                commit(&mut a, &mut m, per, s..e, stamp, calls)?;
                last_end = e;
            }
            4..=5 => {
                // Right after a commit: the next tiles (the run just asked of the worker),
                // or a range overlapping the last commit's end.
                let s = last_end.saturating_sub(rng.below(2)).min(tiles - 1);
                let e = (s + 1 + rng.below(3)).min(tiles);
                commit(&mut a, &mut m, per, s..e, stamp, calls)?;
                last_end = e;
            }
            6..=7 => {
                let s = rng.below(tiles);
                let e = (s + 1 + rng.below(5)).min(tiles);
                decommit(&mut a, &mut m, per, s..e)?;
            }
            8 => release(&mut a, &mut m, per)?,
            9 => match peer {
                Some(p) => {
                    a.grant_access(std::slice::from_ref(p))?;
                    check(&a, &m, per, "after grant_access")?;
                }
                None => release(&mut a, &mut m, per)?,
            },
            10 => {
                // The commit ending exactly at the array's end.
                let s = tiles - 1 - rng.below(3);
                commit(&mut a, &mut m, per, s..tiles, stamp, calls)?;
                last_end = tiles;
            }
            _ => {
                drop(a);
                a = make()?;
                m = Model::new(tiles, spares);
                last_end = 0;
            }
        }
    }
    drop(a);
    Ok(())
}

#[test]
fn a_commit_ending_at_the_arrays_end_asks_for_no_spare_past_it() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let per = gran(&d)? / 4;
    // The last tile is partial: the array ends 5 elements before the tile does.
    let len = 8 * per - 5;
    let mut a = SparseArray::<u32>::new(&d, len, config(4, None, None))?;
    assert_eq!(a.commit(5 * per..6 * per)?, 1); // asks for 6..8 (clipped at the end)
    assert_eq!(a.commit(7 * per..len)?, 1); // waits, adopts 6 and 7, takes 7
    assert_eq!(
        (a.committed_bytes(), a.spare_count()),
        (2 * a.tile_bytes(), 1)
    );
    assert!(a.is_committed(len - 1));
    assert!(!a.is_committed(6 * per));
    assert!(!a.is_committed(len));
    let before = counts(&CALLS);
    assert_eq!(a.commit(0..len)?, 6); // tiles 0..5 mapped here, spare 6 taken
    if on_simulator()? {
        assert_eq!(delta(&before, &counts(&CALLS)), [5, 5, 1]);
    }
    assert_eq!(
        (a.committed_bytes(), a.spare_count()),
        (8 * a.tile_bytes(), 0)
    );
    a.write(len - 3, &[1, 2, 3])?;
    let mut out = [0u32; 3];
    a.read(len - 3..len, &mut out)?;
    assert_eq!(out, [1, 2, 3]);
    // The whole array: nothing to ask for, nothing in flight; every tile goes.
    assert_eq!(a.decommit(0..len)?, 8);
    assert_eq!((a.committed_bytes(), a.spare_count()), (0, 0));
    assert_eq!(a.release_spares()?, 0);
    Ok(())
}

#[test]
fn a_commit_over_runs_asked_for_waits_for_them_and_the_ones_before() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let per = gran(&d)? / 4;
    let mut a = SparseArray::<u32>::new(&d, 32 * per, config(2, None, None))?;
    let mut m = Model::new(32, 2);
    for (i, t) in [0usize, 10, 20].into_iter().enumerate() {
        commit(&mut a, &mut m, per, t..t + 1, i as u32, true)?;
    }
    // Over tile 12, the end of the second run asked for: the first two are adopted.
    commit(&mut a, &mut m, per, 12..13, 3, true)?;
    // Everything up to tile 30: the spares (1, 2, 11, 13, 14, 21, 22) taken, the rest
    // (3..10, 15..20, 23..30) mapped here.
    commit(&mut a, &mut m, per, 0..30, 4, true)?;
    assert_eq!(m.spares, BTreeSet::from([30, 31]));
    decommit(&mut a, &mut m, per, 30..32)?;
    assert_eq!(a.spare_count(), 0);
    assert_eq!(a.release_spares()?, 0);
    Ok(())
}

#[test]
fn a_commit_right_after_a_commit_takes_the_tiles_in_flight_without_driver_calls() -> TestResult {
    let _memory = crate::memory_shared();
    let d = device()?;
    let per = gran(&d)? / 4;
    let mut a = SparseArray::<u32>::new(&d, 40 * per, config(3, None, None))?;
    let mut m = Model::new(40, 3);
    for t in 0..36 {
        // Tile t (mapping it only when the last step left it as a hole), then at once an
        // overlapping range reaching into the run just asked for.
        commit(&mut a, &mut m, per, t..t + 1, t as u32, true)?;
        commit(&mut a, &mut m, per, t..t + 2, t as u32 + 100, true)?;
        if t % 5 == 4 {
            // A middle range goes while the worker maps after the end.
            decommit(&mut a, &mut m, per, t - 3..t - 1)?;
        }
    }
    assert_eq!(a.release_spares()?, m.spares.len());
    Ok(())
}

#[test]
fn random_sequences_keep_every_tile_and_every_spare_where_the_model_says() -> TestResult {
    let _memory = crate::memory_exclusive();
    let d = device()?;
    let sim = on_simulator()?;
    let peer = if cuda()?.device_count()? > 1 {
        Some(cuda()?.device(1)?)
    } else {
        None
    };
    let before = free(&d)?;
    for seed in 1..=6u64 {
        random_run(&d, peer.as_ref(), seed * 0x9E37_79B9, 150, 24, 3, None)?;
    }
    random_run(&d, peer.as_ref(), 77, 150, 9, 8, None)?;
    assert!(d.cuda().flush_releases(FLUSH)?);
    if sim {
        assert_eq!(free(&d)?, before, "memory leaked");
    }
    Ok(())
}

#[test]
fn a_pool_shared_by_background_arrays_on_several_threads_balances() -> TestResult {
    let _memory = crate::memory_exclusive();
    let d = device()?;
    let pool = granule_pool(&d)?;
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..4u64)
            .map(|i| {
                let (d, pool) = (d.clone(), pool.clone());
                s.spawn(move || {
                    random_run(&d, None, 1000 + i, 120, 16, 2, Some(&pool))
                        .map_err(|e| e.to_string())
                })
            })
            .collect();
        for h in handles {
            assert_eq!(h.join().expect("a thread panicked"), Ok(()));
        }
    });
    assert!(d.cuda().flush_releases(FLUSH)?);
    let stats = pool.stats();
    assert_eq!(stats.pending_returns, 0);
    assert_eq!(stats.hits + stats.misses, stats.returns + stats.releases);
    Ok(())
}
