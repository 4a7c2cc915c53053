//! The generated report: its sections, tables, targets and verdicts.

use super::*;

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
