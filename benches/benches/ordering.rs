//! What ordering unmaps against device work costs: the safe default (wait for recorded uses
//! and for the contexts that can reach the memory) vs the `unsafe` opt-out
//! (`UnmapWait::Caller`, valid here because the library's own copies complete before they
//! return).
//!
//! Ids: `ordering/write_drop/{default,opt_out,raw}/2MiB` (a buffer created, 2 MiB written from
//! the host, dropped), `ordering/commit_decommit/{default,opt_out}/1tile` (one 2 MiB tile of a
//! sparse array committed, written and decommitted).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use cuda_vmm::UnmapWait;
use cuda_vmm_alloc::{SparseArray, SparseConfig};
use cuda_vmm_benches::{env, raw_write_drop, write_drop, write_drop_committed, Raw, CHUNK};

fn ordering(c: &mut Criterion) {
    let env = env();
    let device = &env.device;
    let data = vec![0x5Au8; CHUNK];
    let mut group = env.fast_group(c, "ordering");
    for (name, policy) in [
        ("default", UnmapWait::Devices),
        ("opt_out", UnmapWait::Caller),
    ] {
        group.bench_function(
            BenchmarkId::new(format!("write_drop/{name}"), "2MiB"),
            |b| b.iter(|| write_drop(device, &data, policy)),
        );
    }
    // The raw floor: the same driver calls through the raw table, with the buffer's committed
    // size, the copy made safe the raw way (cuCtxSynchronize before the unmap).
    let committed = write_drop_committed(device, &data);
    let raw = Raw::new(env);
    device
        .make_current()
        .expect("current context for the raw calls");
    group.bench_function(BenchmarkId::new("write_drop/raw", "2MiB"), |b| {
        b.iter(|| raw_write_drop(&raw, committed, &data))
    });
    for (name, policy) in [
        ("default", UnmapWait::Devices),
        ("opt_out", UnmapWait::Caller),
    ] {
        let mut array =
            SparseArray::<u8>::new(device, 64 * CHUNK, SparseConfig::default()).expect("array");
        // SAFETY: as above: only the library's synchronous fill and copy touch the array.
        unsafe { array.set_unmap_wait(policy) };
        group.bench_function(
            BenchmarkId::new(format!("commit_decommit/{name}"), "1tile"),
            |b| {
                b.iter(|| {
                    array.commit(0..CHUNK).expect("commit");
                    array.write(0, &data).expect("write");
                    array.decommit(0..CHUNK).expect("decommit");
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, ordering);
criterion_main!(benches);
