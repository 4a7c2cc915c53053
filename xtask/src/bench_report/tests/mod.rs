//! The report from synthetic criterion trees: the fixtures both test modules build on.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use serde_json::json;

use super::load::{EXTRA_FILE, RUN_FILE};
use super::targets::Verdict;
use super::*;

mod readme_cli;
mod report;

fn scratch(name: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let dir = std::env::temp_dir().join(format!(
        "bench-report-{name}-{}-{nanos}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write_json(path: &Path, value: &serde_json::Value) {
    std::fs::write(path, serde_json::to_string_pretty(value).unwrap()).unwrap();
}

/// Writes a criterion-shaped benchmark directory (mangled name, real id in benchmark.json).
fn bench(root: &Path, id: &str, median_ns: f64) {
    let dir = root.join(id.replace('/', "_")).join("new");
    std::fs::create_dir_all(&dir).unwrap();
    let estimate = |v: f64| {
        json!({
            "confidence_interval": {"confidence_level": 0.95, "lower_bound": v * 0.9, "upper_bound": v * 1.1},
            "point_estimate": v,
            "standard_error": 0.1
        })
    };
    let est = json!({
        "mean": estimate(median_ns * 1.1),
        "median": estimate(median_ns),
        "median_abs_dev": estimate(1.0),
        "slope": null,
        "std_dev": estimate(2.0)
    });
    write_json(&dir.join("estimates.json"), &est);
    let (group, rest) = id.rsplit_once('/').unwrap();
    let b = json!({
        "group_id": group, "function_id": null, "value_str": rest, "throughput": null,
        "full_id": id, "directory_name": "x", "title": id
    });
    write_json(&dir.join("benchmark.json"), &b);
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A left-over estimate from an earlier run: written an hour ago.
fn stale_bench(root: &Path, id: &str) {
    bench(root, id, 1.0);
    let file = root.join(id.replace('/', "_")).join("new/estimates.json");
    let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    let f = std::fs::File::options().write(true).open(file).unwrap();
    f.set_modified(hour_ago).unwrap();
}

fn synthetic(root: &Path, date: &str) {
    stale_bench(root, "latency/map/raw/1GiB");
    bench(root, "latency/map/raw/2MiB", 1000.0);
    bench(root, "latency/map/safe/2MiB", 1050.0); // +50 ns: within 0.1 µs
    bench(root, "latency/map/raw/32MiB", 2000.0);
    bench(root, "latency/map/safe/32MiB", 2500.0); // +500 ns: miss
    bench(root, "latency/set_access/raw/2MiB", 25_000.0);
    bench(root, "latency/set_access/safe/2MiB", 25_200.0); // +0.8%: within
    bench(root, "overhead/set_access/raw", 5.0);
    bench(root, "overhead/set_access/safe", 55.0); // +50 ns: within 2% of 25 µs
    bench(root, "overhead/map_unmap/raw", 10.0);
    bench(root, "overhead/map_unmap/safe", 310.0); // +150 ns per call: miss
    bench(root, "growth/growable/256MiB", 1.0e6);
    bench(root, "growth/realloc/256MiB", 20.0e6);
    bench(root, "growth/growable/2GiB", 2.0e6);
    bench(root, "growth/raw_steps/256MiB", 0.5e6);
    bench(root, "growth/raw_steps/2GiB", 1.6e6);
    bench(root, "growth/raw_other/256MiB", 0.7e6); // a layout the report has no name for
    bench(root, "sparse/one_tile/pooled_commit", 30_000.0);
    bench(root, "sparse/one_tile/pooled_commit_uninit", 26_000.0);
    bench(root, "sparse/one_tile/raw_map_set_access", 25_000.0);
    bench(root, "alloc_free/pool/2MiB", 1_000.0);
    bench(root, "alloc_free/cuMemAlloc/2MiB", 3_000.0);
    bench(root, "alloc_free/pool_mapped/2MiB", 30_000.0);
    bench(root, "ordering/write_drop/default/2MiB", 40_000.0);
    bench(root, "ordering/write_drop/opt_out/2MiB", 20_000.0);
    bench(root, "ordering/write_drop/raw/2MiB", 10_000.0);
    // A group the report has no code for gets a table of its own.
    bench(root, "copy/h2d/pinned/2MiB", 40_000.0);
    let meta = json!({
        "gpu": "NVIDIA H100 80GB HBM3", "backend": "real driver", "cuda_driver": "13.0",
        "kernel_driver": "580.65.06", "date": date, "quick": false,
        "started_unix": now_secs() - 10
    });
    write_json(&root.join(RUN_FILE), &meta);
    let extra = json!({
        "growth/growable/2GiB/max_commit_ratio_past_1GiB": 1.125,
        "growth/growable/2GiB/pointer_moved": 0,
        "growth/growable/256MiB/peak_committed_bytes": 268435456u64
    });
    write_json(&root.join(EXTRA_FILE), &extra);
}

/// A full-size run with the issue-11 benches, numbers of the H200 runs of 2026-11-22.
fn issue11_run(root: &Path) {
    for (layout, t) in [
        ("raw_steps", 31.16e6),
        ("raw_steps_32MiB", 29.63e6),
        ("raw_doubling", 31.11e6),
        ("raw_realloc", 71.03e6),
        ("growable", 31.39e6),
        ("growable_speed", 29.58e6),
        ("growable_pooled", 2.144e6),
        ("realloc", 74.23e6),
        ("naive", 313.1e6),
    ] {
        bench(root, &format!("growth/{layout}/16GiB"), t);
        bench(root, &format!("growth/{layout}/256MiB"), t / 64.0);
    }
    for (layout, t) in [
        ("raw_steps", 40.58e6),
        ("raw_steps_32MiB", 45.34e6),
        ("growable", 40.35e6),
    ] {
        bench(root, &format!("growth_cycle/{layout}/16GiB"), t);
    }
    bench(root, "prefetch/off/16GiB", 46.53e6);
    bench(root, "prefetch/on/16GiB", 42.49e6);
    bench(root, "prefetch/off/256MiB", 1.051e6);
    bench(root, "prefetch/on/256MiB", 1.003e6);
    for (variant, create, drop) in [
        ("errors", 3.45e3, 4.04e3),
        ("zeros_256MiB", 151e6, 85.3e6),
        ("zeros_64MiB", 491e6, 302e6),
    ] {
        bench(root, &format!("zero_holes/create/{variant}/1TiB"), create);
        bench(root, &format!("zero_holes/drop/{variant}/1TiB"), drop);
    }
    for (variant, pooled, unpooled) in [
        ("errors", 72.8e3, 92.8e3),
        ("zeros_split", 370e3, 390e3),
        ("zeros_split_64MiB", 276e3, 225e3),
        ("zeros_again", 46.4e3, 57.0e3),
        ("errors_sequential", 35.4e3, 43.2e3),
        ("zeros_sequential", 88.4e3, 99.5e3),
    ] {
        let id = |pool: &str| format!("zero_holes/one_tile_commit/{variant}/{pool}");
        bench(root, &id("pooled"), pooled);
        bench(root, &id("unpooled"), unpooled);
    }
    bench(root, "teardown/growable/16GiB", 31.7e6);
    bench(root, "teardown/growable_pooled/16GiB", 11.9e6);
    bench(root, "teardown/raw_release/16GiB_in_32MiB", 28.0e6);
    bench(root, "teardown/raw_unmap/16GiB_in_32MiB", 11.8e6);
    bench(root, "teardown/raw_release/16GiB_in_1", 8.91e6);
    let meta = json!({
        "gpu": "NVIDIA H200", "backend": "real driver", "cuda_driver": "13.0",
        "kernel_driver": "580.159.04", "date": "2026-11-22", "quick": false,
        "started_unix": now_secs() - 10
    });
    write_json(&root.join(RUN_FILE), &meta);
    let extra = json!({
        "growth/growable/16GiB/max_commit_ratio_past_1GiB": 1.25,
        "growth/growable/16GiB/pointer_moved": 0,
        "growth/growable_speed/16GiB/pointer_moved": 0,
        "growth/realloc/16GiB/pointer_moved": 1,
        "growth/growable/16GiB/ratio_to_raw_steps": 1.007,
        "growth/growable/16GiB/settled_median_s": 8.06e-3,
        "growth/growable/16GiB/first_use_s": 2.46e-3,
        "growth/raw_steps/16GiB/settled_median_s": 5.16e-3,
        "create_probe/512MiB/after_release_s": 11.3e-6,
        "create_probe/512MiB/after_idle_s": 285e-6,
        "prefetch/off/16GiB/blocked_p50_s": 0.0,
        "prefetch/on/16GiB/blocked_p50_s": 0.0,
        "prefetch/off/16GiB/blocked_p99_s": 0.0,
        "prefetch/on/16GiB/blocked_p99_s": 0.0,
        "prefetch/off/16GiB/blocked_max_s": 1.14e-3,
        "prefetch/on/16GiB/blocked_max_s": 3.13e-3,
        "prefetch/off/16GiB/blocked_total_s": 4.596e-3,
        "prefetch/on/16GiB/blocked_total_s": 0.401e-3,
        "prefetch/16GiB/blocked_ratio": 0.0872,
        "prefetch/256MiB/blocked_ratio": 0.74,
        "zero_holes/zero_memory_bytes": 534_773_760u64
    });
    write_json(&root.join(EXTRA_FILE), &extra);
}
