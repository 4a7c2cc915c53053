//! The report from synthetic criterion trees.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use serde_json::json;

use super::load::{EXTRA_FILE, RUN_FILE};
use super::targets::Verdict;
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

#[test]
fn report_from_synthetic_tree() {
    let dir = scratch("tree");
    let crit = dir.join("criterion");
    synthetic(&crit, "2025-01-02");
    let out = dir.join("BENCHMARKS.md");
    let written = generate(&crit, &out, false, &ReadmeChoice::Skip).unwrap();
    assert_eq!(written.len(), 3, "{written:?}");

    let doc = std::fs::read_to_string(&out).unwrap();
    println!("{doc}");
    assert!(doc.starts_with("# Benchmarks"));
    assert!(doc.contains("## NVIDIA H100 80GB HBM3, 2025-01-02"));
    assert!(doc.contains("| cuMemMap | 2 MiB | 1.00 µs | 1.05 µs | +50.0 ns | yes |"));
    assert!(doc.contains("| cuMemMap | 32 MiB | 2.00 µs | 2.50 µs | +500 ns | **no** |"));
    assert!(doc.contains(
        "| Safe layer's own cost per driver call (stub driver) | <= max(2%, 0.1 µs) | \
         +50.0 ns to +150 ns per call (1/2 within) | **miss** |"
    ));
    assert!(
        doc.contains("| cuMemSetAccess | 5.00 ns | 55.0 ns | +50.0 ns | 25.0 µs | 500 ns | yes |")
    );
    // Growth: a row per layout, the known ones in bench order, unknown ones by id.
    assert!(doc.contains(
        "| Layout | What | Bound | 256 MiB | 2 GiB | Ratio to the floor at 2 GiB | Peak committed at 2 GiB |"
    ));
    assert!(doc.contains(
        "| `raw_steps` | raw: default steps, one allocation each | 1.25x | 500 µs | 1.60 ms | floor | - |"
    ));
    assert!(doc.contains(
        "| `growable` | GrowableBuffer, default policy | 1.25x | 1.00 ms | 2.00 ms | 1.25x `raw_steps` | - |"
    ));
    assert!(doc.contains(
        "| `realloc` | realloc-doubling (cuMemAlloc) | 1.5x peak | 20.0 ms | - | - | - |"
    ));
    assert!(doc.contains("| `raw_other` | - | - | 700 µs | - | - | - |"));
    let growable = doc.find("| `growable` |").unwrap();
    assert!(doc.find("| `raw_steps` |").unwrap() < growable);
    assert!(growable < doc.find("| `raw_other` |").unwrap());
    // The largest growth size (2 GiB) is where the targets are judged.
    assert!(doc.contains(
        "| Growth to 2 GiB by 2 MiB appends, default policy / fastest raw layout with the same \
         1.25x bound | <= 1.1x | 2.00 ms / 1.60 ms = 1.25x (`raw_steps`) | **miss** |"
    ));
    assert!(doc.contains(
        "| Growth to 2 GiB, `GrowthPolicy::speed()` / raw doubling | <= 1.1x | not measured | n/a |"
    ));
    assert!(!doc.contains("naive VMM / growable"), "stale target");
    assert!(doc.contains("| <= 1.25 | 1.125 | pass |"));
    assert!(doc.contains("| stays put | never moved (1 layouts and sizes) | pass |"));
    assert!(doc.contains("| <= 1.1x | 26.0 µs / 25.0 µs = 1.04x | pass |"));
    assert!(doc.contains("| >= 1.5x | 3.00 µs / 1.00 µs = 3.00x | pass |"));
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
    let ordering = "### Ordering: a new buffer, 2 MiB written from the host, dropped (median)\n\n\
                    | Case | default | raw | opt_out | default / raw |\n\
                    |---|---|---|---|---|\n\
                    | 2MiB | 40.0 µs | 10.0 µs | 20.0 µs | 4.00 |\n";
    assert!(doc.contains(ordering));
    // A group the report has no code for gets a table of its own.
    let generic = "### `copy/h2d` (median)\n\n\
                   | Case | pinned |\n\
                   |---|---|\n\
                   | 2MiB | 40.0 µs |\n";
    assert!(doc.contains(generic));
    assert!(!doc.contains("### `overhead"), "overhead has its own table");

    let svg =
        std::fs::read_to_string(dir.join("docs/bench/nvidia-h100-80gb-hbm3-2025-01-02/growth.svg"))
            .unwrap();
    assert!(svg.starts_with("<svg"));
    for name in [
        "GrowableBuffer, default policy",
        "realloc-doubling (cuMemAlloc)",
        "raw: default steps, one allocation each",
        "raw_other",
    ] {
        assert!(
            svg.contains(&format!(">\n{name}\n</text>")),
            "legend {name}: {svg}"
        );
    }
    assert!(!svg.contains("GrowableBuffer, warm pool"));
    assert!(svg.contains(">\n256 MiB\n</text>"), "{svg}");

    // Same GPU and date: replaced. Another date: appended.
    generate(&crit, &out, false, &ReadmeChoice::Skip).unwrap();
    synthetic(&crit, "2025-02-03");
    generate(&crit, &out, false, &ReadmeChoice::Skip).unwrap();
    let doc = std::fs::read_to_string(&out).unwrap();
    assert_eq!(doc.matches("<!-- bench-run: ").count(), 2);
    assert_eq!(doc.matches("<!-- end bench-run: ").count(), 2);
    assert_eq!(doc.matches("# Benchmarks").count(), 1);
    let first = doc.find("2025-01-02").unwrap();
    assert!(first < doc.find("2025-02-03").unwrap());
    std::fs::remove_dir_all(&dir).unwrap();
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

/// The rows of the section's targets table.
fn target_rows(doc: &str) -> Vec<&str> {
    let start = doc.find("### Targets").unwrap();
    doc[start..]
        .lines()
        .skip(4)
        .take_while(|l| l.starts_with('|'))
        .collect()
}

#[test]
fn issue_11_targets_and_verdicts() {
    let dir = scratch("issue11");
    let crit = dir.join("criterion");
    issue11_run(&crit);
    let out = dir.join("BENCHMARKS.md");
    generate(&crit, &out, false, &ReadmeChoice::Skip).unwrap();
    let doc = std::fs::read_to_string(&out).unwrap();
    println!("{doc}");
    let expected = [
        "| Safe layer's own cost per driver call (stub driver) | <= max(2%, 0.1 µs) | not measured | n/a |",
        "| Growth to 16 GiB by 2 MiB appends, default policy / fastest raw layout with the same 1.25x bound | <= 1.1x | 31.4 ms / 29.6 ms = 1.06x (`raw_steps_32MiB`) | pass |",
        "| Build and drop to 16 GiB (growth + teardown, back to back), default policy / fastest raw layout with the same bound | <= 1.1x | 40.4 ms / 40.6 ms = 0.994x (`raw_steps`) | pass |",
        "| Growth to 16 GiB, `GrowthPolicy::speed()` / raw doubling | <= 1.1x | 29.6 ms / 31.1 ms = 0.951x | pass |",
        "| Growth to 16 GiB: raw realloc-doubling / buffer on a warm `ChunkPool` | >= 10x | 71.0 ms / 2.14 ms = 33.1x | pass |",
        "| Background commit, growth to 16 GiB with 5 µs host work per append: time blocked, on / off | <= 10% | 401 µs / 4.60 ms = 8.7%; per append on / off: p50 0 / 0, p99 0 / 0, max 3.13 ms / 1.14 ms | pass |",
        "| Default growth: committed / length past 1 GiB | <= 1.25 | 1.250 | pass |",
        "| The pointer never moves (every `growable*` layout) | stays put | never moved (2 layouts and sizes) | pass |",
        "| Zero-hole `SparseArray` of 1 TiB (zero blocks <= 256 MiB): create | <= 250 ms | 151 ms | pass |",
        "| Zero-hole `SparseArray` of 1 TiB (zero blocks <= 256 MiB): drop | <= 250 ms | 85.3 ms | pass |",
        "| Zero-filled memory after creating 1 TiB arrays and committing | <= 512 MiB | 510 MiB | pass |",
        "| One-tile commit in a 1 TiB zero-hole array / error mode (`errors`): random tile (splits a largest zero block) | <= 1.5x | pooled 370 µs / 72.8 µs = 5.08x; unpooled 390 µs / 92.8 µs = 4.20x | **miss** |",
        "| One-tile commit in a 1 TiB zero-hole array / error mode (`errors_sequential`): the next tile, as a growing KV cache takes pages | <= 1.5x | pooled 88.4 µs / 35.4 µs = 2.50x; unpooled 99.5 µs / 43.2 µs = 2.30x | **miss** |",
        "| One-tile commit in a 1 TiB zero-hole array / error mode (`errors_spares`): the next tile, 15 spare tiles committed ahead | <= 1.5x | not measured | n/a |",
        "| One-tile commit in a 1 TiB zero-hole array / error mode (`errors_sequential`): the same tile again, beside a committed one | <= 1.5x | pooled 46.4 µs / 35.4 µs = 1.31x; unpooled 57.0 µs / 43.2 µs = 1.32x | pass |",
        "| Teardown of a 16 GiB pool-backed buffer / raw unmap-only floor (32 MiB chunks) | <= 1.1x (no release cost) | 11.9 ms / 11.8 ms = 1.01x | pass |",
        "| Teardown of a 16 GiB buffer, no pool / raw unmap + release floors | no target | 31.7 ms (raw: 8.91 ms in one allocation, 28.0 ms in 32 MiB allocations) | - |",
        "| Pooled sparse commit of one 2 MiB tile (no zero-fill) / raw map + set access | <= 1.1x | not measured | n/a |",
        "| `cuMemAlloc` + `cuMemFree` / pooled alloc + free of 2 MiB | >= 1.5x | not measured | n/a |",
    ];
    assert_eq!(target_rows(&doc), expected);

    // The tables behind them.
    assert!(doc.contains(
        "| `growable` | GrowableBuffer, default policy | 1.25x | 490 µs | 31.4 ms | 1.01x `raw_steps` | - |"
    ));
    assert!(doc.contains(
        "| `growable_pooled` | GrowableBuffer, warm pool | 1.25x | 33.5 µs | 2.14 ms | 0.0302x `raw_realloc` | - |"
    ));
    assert!(doc.contains("| `raw_steps` | 16 GiB | - | 5.16 ms | 31.2 ms |"));
    assert!(doc.contains("| `growable` | 16 GiB | 2.46 ms | 8.06 ms | 31.4 ms |"));
    assert!(doc.contains("| 512 MiB | 11.3 µs | 285 µs | - |"));
    assert!(doc.contains(
        "| 16 GiB | 42.5 ms / 46.5 ms | 401 µs / 4.60 ms | 0.0872x | 0 / 0 | 0 / 0 | 3.13 ms / 1.14 ms |"
    ));
    assert!(
        doc.contains("| 256 MiB | 1.00 ms / 1.05 ms | - / - | 0.740x | - / - | - / - | - / - |")
    );
    assert!(doc.contains("| zeros, blocks of at most 256 MiB | 151 ms | 85.3 ms |"));
    assert!(doc.contains("| zeros, blocks of at most 64 MiB | 491 ms | 302 ms |"));
    assert!(doc.contains("| errors | 3.45 µs | 4.04 µs |"));
    assert!(doc.contains("Zero-filled memory held after the creates and commits: 510 MiB."));
    assert!(doc.contains(
        "| random tile, zero blocks of 64 MiB | `errors` | 276 µs | 72.8 µs | 3.79 | 225 µs | 92.8 µs | 2.42 |"
    ));
    assert!(doc.contains(
        "| `teardown/growable_pooled/16GiB` | 11.9 ms | 1.01x `raw_unmap/16GiB_in_32MiB` |"
    ));
    assert!(doc.contains("| `teardown/raw_release/16GiB_in_1` | 8.91 ms | - |"));
    for group in ["zero_holes", "teardown", "prefetch"] {
        assert!(
            !doc.contains(&format!("### `{group}")),
            "{group} has tables of its own"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn quick_sizes_are_judged_where_the_target_allows() {
    let mut run = Run::default();
    run.meta.quick = true;
    for (k, v) in [
        ("growable", 45.2e3),
        ("raw_steps", 42.3e3),
        ("raw_steps_32MiB", 40.9e3),
    ] {
        run.medians.insert(format!("growth/{k}/64MiB"), v);
        run.medians.insert(format!("growth/{k}/16MiB"), v / 4.0);
    }
    for (id, t) in [
        ("zero_holes/create/zeros_16MiB/1GiB", 293e3),
        ("zero_holes/create/zeros_4MiB/1GiB", 1.2e6),
        ("zero_holes/drop/zeros_16MiB/1GiB", 197e3),
        ("zero_holes/one_tile_commit/errors_spares/pooled", 6.02e3),
        ("zero_holes/one_tile_commit/zeros_spares/pooled", 11.3e3),
    ] {
        run.medians.insert(id.into(), t);
    }
    run.extra
        .insert("zero_holes/zero_memory_bytes".into(), 30.0 * 1048576.0);
    let rows: Vec<(String, Verdict)> = targets::targets(&run)
        .into_iter()
        .map(|t| (format!("{} | {}", t.what, t.measured), t.verdict))
        .collect();
    let find = |start: &str| {
        rows.iter()
            .find(|(r, _)| r.starts_with(start))
            .cloned()
            .unwrap_or_else(|| panic!("no row {start}: {rows:#?}"))
    };
    assert_eq!(
        find("Growth to 64 MiB by 2 MiB appends, default policy"),
        (
            "Growth to 64 MiB by 2 MiB appends, default policy / fastest raw layout with the same \
             1.25x bound | 45.2 µs / 40.9 µs = 1.11x (`raw_steps_32MiB`)"
                .into(),
            Verdict::Miss
        )
    );
    // Absolute targets are set for 1 TiB: not judged at 1 GiB.
    assert_eq!(
        find("Zero-hole `SparseArray` of 1 GiB (zero blocks <= 16 MiB): create"),
        (
            "Zero-hole `SparseArray` of 1 GiB (zero blocks <= 16 MiB): create | 293 µs".into(),
            Verdict::OtherSize
        )
    );
    assert_eq!(
        find("Zero-hole `SparseArray` of 1 GiB (zero blocks <= 16 MiB): drop").1,
        Verdict::OtherSize
    );
    assert_eq!(find("Zero-filled memory").1, Verdict::OtherSize);
    // Only the pooled spares pair was measured: judged on it alone; the other picks are not
    // measured.
    assert_eq!(
        find("One-tile commit in a 1 GiB zero-hole array / error mode (`errors_spares`)"),
        (
            "One-tile commit in a 1 GiB zero-hole array / error mode (`errors_spares`): the next \
             tile, 15 spare tiles committed ahead | pooled 11.3 µs / 6.02 µs = 1.88x"
                .into(),
            Verdict::Miss
        )
    );
    assert_eq!(
        find("One-tile commit in a 1 GiB zero-hole array / error mode (`errors`)").1,
        Verdict::NotMeasured
    );
    assert_eq!(
        find("Teardown of a 16 GiB pool-backed buffer").1,
        Verdict::NotMeasured
    );
    // A quick run leaves the workspace README alone unless a file is named.
    assert_eq!(readme_path(&ReadmeChoice::Default, &run), None);
    let named = PathBuf::from("/tmp/README.md");
    assert_eq!(
        readme_path(&ReadmeChoice::File(named.clone()), &run),
        Some(named)
    );
    assert_eq!(readme_path(&ReadmeChoice::Skip, &run), None);
}

const README: &str = "# Project\n\nIntro.\n\n## Performance (H200)\n\nProse above.\n\n\
                      <!-- perf-table:start -->\n| | old | table |\n| --- | --- | --- |\n\
                      | a | b | c |\n<!-- perf-table:end -->\n\nProse below, kept as is.\n\n\
                      ## Next\n";

#[test]
fn readme_table_is_rewritten_between_the_markers_only() {
    let dir = scratch("readme");
    let crit = dir.join("criterion");
    issue11_run(&crit);
    let readme = dir.join("README.md");
    std::fs::write(&readme, README).unwrap();
    let out = dir.join("BENCHMARKS.md");
    let choice = ReadmeChoice::File(readme.clone());
    let written = generate(&crit, &out, false, &choice).unwrap();
    assert!(written.contains(&readme), "{written:?}");
    let doc = std::fs::read_to_string(&readme).unwrap();
    println!("{doc}");
    let (before, _) = README.split_once(readme::START).unwrap();
    let (_, after) = README.split_once(readme::END).unwrap();
    assert!(doc.starts_with(&format!("{before}{}\n", readme::START)));
    assert!(doc.ends_with(&format!("\n{}{after}", readme::END)));
    assert!(!doc.contains("| a | b | c |"), "old table kept");
    assert!(doc.contains(
        "Measured on NVIDIA H200 (real driver), kernel driver 580.159.04, CUDA driver API 13.0, \
         2026-11-22, full sizes: criterion medians, each ratio from one process"
    ));
    assert!(doc.contains("| What | Measured | Target | Result |"));
    assert!(doc.contains(
        "| Growth to 16 GiB, `GrowthPolicy::speed()` / raw doubling | 29.6 ms / 31.1 ms = 0.951x | <= 1.1x | pass |"
    ));
    assert!(doc.contains(
        "| Zero-hole `SparseArray` of 1 TiB (zero blocks <= 256 MiB): create | 151 ms | <= 250 ms | pass |"
    ));
    // One row per target, plus the header and its rule.
    let rows = doc.lines().filter(|l| l.starts_with("| ")).count();
    let run = Run::load(&crit, false).unwrap();
    assert_eq!(rows, 2 + targets::targets(&run).len());

    // Regenerating changes nothing.
    generate(&crit, &out, false, &choice).unwrap();
    assert_eq!(std::fs::read_to_string(&readme).unwrap(), doc);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn readme_without_markers_is_a_clear_error_and_writes_nothing() {
    let dir = scratch("nomarkers");
    let crit = dir.join("criterion");
    issue11_run(&crit);
    let readme = dir.join("README.md");
    let out = dir.join("BENCHMARKS.md");
    let choice = ReadmeChoice::File(readme.clone());
    for marker in [readme::START, readme::END] {
        let text = README.replace(marker, "");
        std::fs::write(&readme, &text).unwrap();
        let err = generate(&crit, &out, false, &choice).unwrap_err();
        assert_eq!(
            err,
            format!(
                "{} has no `{marker}` line: put `{}` and `{}` around the performance table",
                readme.display(),
                readme::START,
                readme::END
            )
        );
        assert_eq!(
            std::fs::read_to_string(&readme).unwrap(),
            text,
            "README changed"
        );
        assert!(!out.exists(), "BENCHMARKS.md written despite the error");
    }
    let twice = format!("{README}{}\n{}\n", readme::START, readme::END);
    let err = readme::replace_table(&twice, "t", &readme).unwrap_err();
    assert!(
        err.ends_with("has more than one `<!-- perf-table:start -->` marker"),
        "{err}"
    );
    let missing = dir.join("missing.md");
    let err = generate(&crit, &out, false, &ReadmeChoice::File(missing.clone())).unwrap_err();
    assert!(
        err.starts_with(&format!("cannot read {}", missing.display())),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
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

fn parse(args: &[&str]) -> Result<Options, String> {
    Options::parse(&mut lexopt::Parser::from_args(args))
}

#[test]
fn arguments() {
    assert_eq!(
        parse(&[]),
        Ok(Options {
            criterion: None,
            out: None,
            include_stale: false,
            readme: ReadmeChoice::Default,
        })
    );
    assert_eq!(
        parse(&[
            "--criterion",
            "c",
            "--out",
            "--o.md",
            "--include-stale",
            "--readme",
            "r.md"
        ]),
        Ok(Options {
            criterion: Some(PathBuf::from("c")),
            out: Some(PathBuf::from("--o.md")),
            include_stale: true,
            readme: ReadmeChoice::File(PathBuf::from("r.md")),
        })
    );
    assert_eq!(
        parse(&["--readme", "r.md", "--no-readme"]).map(|o| o.readme),
        Ok(ReadmeChoice::Skip)
    );
    let unknown = |a: &str| {
        Err(format!(
            "unknown argument `{a}` to `cargo xtask bench-report`"
        ))
    };
    assert_eq!(parse(&["pos"]), unknown("pos"));
    assert_eq!(parse(&["-x"]), unknown("-x"));
    assert_eq!(parse(&["--out=x"]), unknown("--out=x"));
    assert_eq!(parse(&["--no-readme=1"]), unknown("--no-readme=1"));
    for (flag, what) in [
        ("--criterion", "a directory"),
        ("--out", "a file name"),
        ("--readme", "a file name"),
    ] {
        assert_eq!(parse(&[flag]), Err(format!("{flag} needs {what}")));
    }
}
