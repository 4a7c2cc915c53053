//! The report from synthetic criterion trees.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use serde_json::json;

use super::load::{EXTRA_FILE, RUN_FILE};
use super::*;

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
    bench(root, "growth/naive/256MiB", 50.0e6); // only 50x: miss
    bench(root, "growth/growable/2GiB", 2.0e6);
    bench(root, "growth/raw_steps/256MiB", 0.5e6); // a strategy the report has no name for
    bench(root, "sparse/one_tile/pooled_commit", 30_000.0);
    bench(root, "sparse/one_tile/pooled_commit_uninit", 26_000.0);
    bench(root, "sparse/one_tile/raw_map_set_access", 25_000.0);
    bench(root, "alloc_free/pool/2MiB", 1_000.0);
    bench(root, "alloc_free/cuMemAlloc/2MiB", 3_000.0);
    bench(root, "alloc_free/pool_mapped/2MiB", 30_000.0);
    // A group the report has no code for gets a table of its own.
    bench(root, "ordering/write_drop/default/2MiB", 40_000.0);
    bench(root, "ordering/write_drop/opt_out/2MiB", 20_000.0);
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

#[test]
fn report_from_synthetic_tree() {
    let dir = scratch("tree");
    let crit = dir.join("criterion");
    synthetic(&crit, "2025-01-02");
    let out = dir.join("BENCHMARKS.md");
    let written = generate(&crit, &out, false).unwrap();
    assert_eq!(written.len(), 3, "{written:?}");

    let doc = std::fs::read_to_string(&out).unwrap();
    println!("{doc}");
    assert!(doc.starts_with("# Benchmarks"));
    assert!(doc.contains("## NVIDIA H100 80GB HBM3, 2025-01-02"));
    assert!(doc.contains("| cuMemMap | 2 MiB | 1.00 µs | 1.05 µs | +50.0 ns | yes |"));
    assert!(doc.contains("| cuMemMap | 32 MiB | 2.00 µs | 2.50 µs | +500 ns | **no** |"));
    assert!(doc.contains("| 1/2 within; largest: map_unmap +150 ns per call | **miss** |"));
    assert!(
        doc.contains("| cuMemSetAccess | 5.00 ns | 55.0 ns | +50.0 ns | 25.0 µs | 500 ns | yes |")
    );
    assert!(doc.contains(
        "| Growth to 256 MiB: realloc-doubling / growable time | >= 10x | 20.0x | pass |"
    ));
    assert!(doc.contains(
        "| Final size | GrowableBuffer | GrowableBuffer, warm pool | realloc-doubling | naive VMM (2 MiB each) | `raw_steps` |"
    ));
    assert!(doc.contains("| 256 MiB | 1.00 ms / 256 MiB | skipped | 20.0 ms | 50.0 ms | 500 µs |"));
    assert!(doc.contains("naive VMM / growable time | >= 100x | 50.0x | **miss** |"));
    assert!(doc.contains("| <= 1.25 | 1.125 | pass |"));
    assert!(doc.contains("| stays put | never moved | pass |"));
    assert!(doc.contains("| <= 1.1x | 1.04x | pass |"));
    assert!(doc.contains("| >= 1.5x | 3.00x | pass |"));
    assert!(doc.contains("docs/bench/nvidia-h100-80gb-hbm3-2025-01-02/latency.svg"));
    assert!(
        !doc.contains("latency/map/raw/1GiB"),
        "stale estimate reported"
    );
    let pool_table = "| Case | cuMemAlloc | pool | pool_mapped | cuMemAlloc / pool |\n\
                      |---|---|---|---|---|\n\
                      | 2MiB | 3.00 µs | 1.00 µs | 30.0 µs | 3.00 |\n";
    assert!(doc.contains(pool_table));
    assert!(doc.contains("| - | 26.0 µs | 25.0 µs | 30.0 µs | 1.04 |"));
    let generic = "### `ordering/write_drop` (median)\n\n\
                   | Case | default | opt_out |\n\
                   |---|---|---|\n\
                   | 2MiB | 40.0 µs | 20.0 µs |\n";
    assert!(doc.contains(generic));
    assert!(!doc.contains("### `overhead"), "overhead has its own table");

    let svg =
        std::fs::read_to_string(dir.join("docs/bench/nvidia-h100-80gb-hbm3-2025-01-02/growth.svg"))
            .unwrap();
    assert!(svg.starts_with("<svg"));
    for name in [
        "GrowableBuffer",
        "realloc-doubling",
        "naive VMM (2 MiB each)",
        "raw_steps",
    ] {
        assert!(
            svg.contains(&format!(">\n{name}\n</text>")),
            "legend {name}: {svg}"
        );
    }
    assert!(!svg.contains("GrowableBuffer, warm pool"));
    assert!(svg.contains(">\n256 MiB\n</text>"), "{svg}");
    // Four data lines and four legend marks, each 2 px wide.
    assert_eq!(
        svg.matches("stroke-width=\"2\" points=").count(),
        4 + 4,
        "lines and legend marks"
    );

    // Same GPU and date: replaced. Another date: appended.
    generate(&crit, &out, false).unwrap();
    synthetic(&crit, "2025-02-03");
    generate(&crit, &out, false).unwrap();
    let doc = std::fs::read_to_string(&out).unwrap();
    assert_eq!(doc.matches("<!-- bench-run: ").count(), 2);
    assert_eq!(doc.matches("<!-- end bench-run: ").count(), 2);
    assert_eq!(doc.matches("# Benchmarks").count(), 1);
    let first = doc.find("2025-01-02").unwrap();
    assert!(first < doc.find("2025-02-03").unwrap());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn growth_targets_at_16_gib() {
    let mut run = Run::default();
    for (k, v) in [("growable", 1.0e8), ("realloc", 1.5e9), ("naive", 5.0e9)] {
        run.medians.insert(format!("growth/{k}/16GiB"), v);
        run.medians.insert(format!("growth/{k}/256MiB"), v / 64.0);
    }
    let mut s = String::new();
    tables::targets_table(&run, &mut s);
    assert!(
        s.contains(
            "| Growth to 16 GiB: realloc-doubling / growable time | >= 10x | 15.0x | pass |"
        ),
        "{s}"
    );
    assert!(
        s.contains("| Growth to 16 GiB: naive VMM / growable time | >= 100x | 50.0x | **miss** |"),
        "{s}"
    );
    assert!(s.contains(
        "| Safe-layer overhead per raw call | <= max(2%, 0.1 µs) | not measured | n/a |"
    ));
}

#[test]
fn missing_directory_and_bad_json_are_clear_errors() {
    let err = Run::load(Path::new("/nonexistent/criterion"), false).unwrap_err();
    assert!(
        err.contains("/nonexistent/criterion is not a directory"),
        "{err}"
    );
    let dir = scratch("empty");
    let err = Run::load(&dir, false).unwrap_err();
    assert!(err.starts_with("no criterion estimates"), "{err}");
    bench(&dir, "a/b", 1.0);
    std::fs::write(dir.join(RUN_FILE), "{\"gpu\": 3}").unwrap();
    let err = Run::load(&dir, false).unwrap_err();
    assert!(
        err.contains("cuda-vmm-run.json: invalid type: integer `3`, expected a string"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn sections_are_replaced_in_place() {
    let doc = upsert_section(
        "# T\n\n<!-- bench-run: k -->\nold\n<!-- end bench-run: k -->\ntail\n",
        "k",
        "<!-- bench-run: k -->\nnew\n<!-- end bench-run: k -->\n",
    );
    assert_eq!(
        doc,
        "# T\n\n<!-- bench-run: k -->\nnew\n<!-- end bench-run: k -->\ntail\n"
    );
}
