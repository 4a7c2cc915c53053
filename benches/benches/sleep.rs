//! Sleep and wake of a caching allocator's tag, against the raw floors measured in the same
//! process: 16 GiB of weights as 8 blocks of 2 GiB in tag `weights` (2 GiB pages), the
//! issue's layout. Ids `sleep/LAYOUT/SIZE`:
//! - `host`: `sleep(["weights"], Backup::Host)` with the host backup kept from the previous
//!   sleep (every sleep after the first); floor `raw_backup_release`: one
//!   `cuMemcpyDtoHAsync` of the whole range into page-locked memory allocated beforehand,
//!   then `cuMemUnmap` + `cuMemRelease` of the 8 handles;
//! - `wake`: `wake(["weights"])` after a host sleep; floor `raw_map_restore`: reserve,
//!   create, map and set access of 8 handles, then one `cuMemcpyHtoDAsync` back;
//! - `discard`: `sleep(["weights"], Backup::Discard)`; floor `raw_release`: unmap +
//!   release of the 8 handles.
//!
//! Printed once, outside criterion (not on the simulator): the first sleep (host memory
//! pinned for it) and a sleep after `release_host_backup` gave the host memory back.
//! Quick runs use 8 blocks of 8 MiB.

use std::cell::RefCell;
use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use cuda_vmm::Stream;
use cuda_vmm_alloc::{Backup, CachedBlock, CachingAllocator, CachingConfig};
use cuda_vmm_benches::{env, fmt_size, record_extra, size_id, Env, Raw, GIB, MIB};

const BLOCKS: usize = 8;

thread_local! {
    static TIMES: RefCell<HashMap<String, Vec<Duration>>> = Default::default();
}

/// The allocator and its 8 weight blocks.
struct Weights {
    allocator: CachingAllocator,
    _blocks: Vec<CachedBlock>,
}

fn weights(env: &Env, block: usize) -> Weights {
    let stream = Stream::new(&env.device).expect("stream");
    let allocator = CachingAllocator::with_config(
        &env.device,
        CachingConfig {
            tag_large_pages: vec![("weights".into(), NonZeroUsize::new(block).expect("block"))],
            ..CachingConfig::default()
        },
    )
    .expect("caching allocator");
    let blocks = (0..BLOCKS)
        .map(|_| allocator.alloc_tagged(block, &stream, "weights"))
        .collect::<Result<Vec<_>, _>>()
        .expect("weights");
    Weights {
        allocator,
        _blocks: blocks,
    }
}

fn sleep_host(w: &Weights) -> Duration {
    let start = Instant::now();
    w.allocator
        .sleep(&["weights"], Backup::Host)
        .expect("sleep");
    start.elapsed()
}

fn wake(w: &Weights) -> Duration {
    let start = Instant::now();
    w.allocator.wake(&["weights"]).expect("wake");
    start.elapsed()
}

fn record(id: &str, t: Duration) {
    TIMES.with(|m| m.borrow_mut().entry(id.to_owned()).or_default().push(t));
}

fn median_of(id: &str) -> Option<Duration> {
    TIMES.with(|m| {
        let mut v = m.borrow().get(id)?.clone();
        v.sort();
        v.get(v.len() / 2).copied()
    })
}

fn sleep_benches(c: &mut Criterion) {
    let env = env();
    let raw = Raw::new(env);
    let block = if env.quick { 8 * MIB } else { 2 * GIB };
    let size = BLOCKS * block;
    if env.sizes("sleep", &[size], 2.2).is_empty() {
        return;
    }
    let sid = size_id(size);
    let copier = raw.copier(size);
    let w = weights(env, block);
    if !env.quick {
        once(&w, &sid);
    }
    let discard = w
        .allocator
        .sleep(&["weights"], Backup::Discard)
        .expect("sleep");
    println!("sleep/discard/{sid} once: {discard:?}");
    wake(&w);
    let mut group = env.slow_group(c, "sleep");
    let mut bench = |name: &str, run: &mut dyn FnMut() -> Duration| {
        let id = format!("sleep/{name}/{sid}");
        group.bench_function(BenchmarkId::new(name, &sid), |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| {
                        let t = run();
                        record(&id, t);
                        t
                    })
                    .sum()
            })
        });
    };
    bench("raw_backup_release", &mut || {
        let mut chunks = raw.mapped_chunks(BLOCKS, block);
        let start = Instant::now();
        copier.read_pinned(chunks.ptr());
        chunks.unmap_all();
        chunks.release_all();
        start.elapsed()
    });
    bench("raw_release", &mut || {
        let mut chunks = raw.mapped_chunks(BLOCKS, block);
        let start = Instant::now();
        chunks.unmap_all();
        chunks.release_all();
        start.elapsed()
    });
    bench("raw_map_restore", &mut || {
        let start = Instant::now();
        let chunks = raw.mapped_chunks(BLOCKS, block);
        copier.write_pinned(chunks.ptr());
        let t = start.elapsed();
        drop(chunks);
        t
    });
    bench("host", &mut || {
        let t = sleep_host(&w);
        wake(&w);
        t
    });
    bench("wake", &mut || {
        sleep_host(&w);
        wake(&w)
    });
    bench("discard", &mut || {
        let start = Instant::now();
        let r = w
            .allocator
            .sleep(&["weights"], Backup::Discard)
            .expect("sleep");
        let t = start.elapsed();
        if std::env::var_os("CUDA_VMM_SLEEP_REPORTS").is_some() {
            println!("sleep/discard: {t:?} {r:?}");
        }
        wake(&w);
        t
    });
    group.finish();
    for (name, floor) in [
        ("host", "raw_backup_release"),
        ("wake", "raw_map_restore"),
        ("discard", "raw_release"),
    ] {
        let key = format!("sleep/{name}/{sid}");
        let floor_key = format!("sleep/{floor}/{sid}");
        if let (Some(t), Some(f)) = (median_of(&key), median_of(&floor_key)) {
            let r = t.as_secs_f64() / f.as_secs_f64();
            record_extra(&format!("{key}/ratio_to_{floor}"), r);
            println!("{key}: median {t:?} = {r:.3}x {floor} ({f:?})");
        }
    }
}

/// The first sleep (pinning host memory for the backup) and a sleep after the host memory
/// was given back, each once, with the free memory while asleep.
fn once(w: &Weights, sid: &str) {
    let before = w.allocator.device().memory_info().map_or(0, |m| m.free);
    let first = w
        .allocator
        .sleep(&["weights"], Backup::Host)
        .expect("sleep");
    let asleep = w.allocator.device().memory_info().map_or(0, |m| m.free);
    println!(
        "sleep/host/{sid} first: {:?} (host memory pinned {} in {:?}, backup {:?}, release \
         {:?}); free {} -> {} asleep",
        first.wait + first.host_prepare + first.backup + first.release,
        fmt_size(first.host_prepared_bytes),
        first.host_prepare,
        first.backup,
        first.release,
        fmt_size(before),
        fmt_size(asleep)
    );
    record_extra(
        &format!("sleep/host/{sid}/first_s"),
        (first.host_prepare + first.backup + first.release).as_secs_f64(),
    );
    let woke = w.allocator.wake(&["weights"]).expect("wake");
    println!(
        "sleep/wake/{sid} first: map {:?}, restore {:?}",
        woke.map, woke.restore
    );
    let given = w.allocator.release_host_backup();
    let start = Instant::now();
    let again = w
        .allocator
        .sleep(&["weights"], Backup::Host)
        .expect("sleep");
    let t = start.elapsed();
    println!(
        "sleep/host/{sid} after release_host_backup ({} given back): {t:?} (pinned {:?})",
        fmt_size(given),
        again.host_prepare
    );
    record_extra(
        &format!("sleep/host/{sid}/after_given_back_s"),
        t.as_secs_f64(),
    );
    w.allocator.wake(&["weights"]).expect("wake");
}

criterion_group!(benches, sleep_benches);
criterion_main!(benches);
