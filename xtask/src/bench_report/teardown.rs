//! Zero-hole arrays and teardown (`benches/benches/teardown.rs`): create, drop and one-tile
//! commits of zero-hole `SparseArray`s against error mode, and dropping a grown buffer against
//! its raw floors; the id lookups the targets share with the tables.

use std::fmt::Write as _;

use super::format::{fmt_bytes, fmt_ratio, fmt_time, natural_key, parse_size, pretty_size};
use super::load::Run;
use super::sizes_under;

/// The zero-hole array's size: the largest case of `zero_holes/{create,drop}/VARIANT/SIZE`.
pub fn zero_array_size(run: &Run) -> Option<String> {
    let mut sizes: Vec<&str> = run
        .medians
        .keys()
        .filter(|id| id.starts_with("zero_holes/create/") || id.starts_with("zero_holes/drop/"))
        .filter_map(|id| id.rsplit('/').next())
        .filter(|s| parse_size(s).is_some())
        .collect();
    sizes.sort_by_key(|s| parse_size(s));
    sizes.last().map(|s| s.to_string())
}

/// The default zero layout: the `zeros_BLOCK` create/drop variant with the largest block.
pub fn default_zero_variant(run: &Run) -> Option<String> {
    let mut blocks: Vec<&str> = run
        .medians
        .keys()
        .filter_map(|id| id.strip_prefix("zero_holes/create/zeros_"))
        .filter_map(|rest| rest.split('/').next())
        .filter(|b| parse_size(b).is_some())
        .collect();
    blocks.sort_by_key(|b| parse_size(b));
    blocks.last().map(|b| format!("zeros_{b}"))
}

/// The error-mode commit a zero-mode one-tile commit is compared with: the same pick
/// (`zeros_sequential` -> `errors_sequential`, `zeros_spares` -> `errors_spares`); a random
/// tile (`zeros_split*`) -> `errors`; the same tile again -> the next tile, the cheaper
/// error-mode commit (a re-commit has no error-mode case of its own).
pub fn error_baseline(variant: &str) -> Option<String> {
    let pick = variant.strip_prefix("zeros_")?;
    Some(match pick {
        p if p.starts_with("split") => "errors".into(),
        "again" => "errors_sequential".into(),
        p => format!("errors_{p}"),
    })
}

/// What a one-tile commit variant picks, for the tables.
pub fn pick_name(variant: &str) -> String {
    match variant {
        "zeros_split" => "random tile (splits a largest zero block)".into(),
        "zeros_again" => "the same tile again, beside a committed one".into(),
        "zeros_sequential" => "the next tile, as a growing KV cache takes pages".into(),
        "zeros_spares" => "the next tile, 15 spare tiles committed ahead".into(),
        "zeros_spares7" => "the next tile, 7 spare tiles committed ahead".into(),
        v => match v.strip_prefix("zeros_split_") {
            Some(block) => format!("random tile, zero blocks of {}", pretty_size(block)),
            None => format!("`{v}`"),
        },
    }
}

/// The zero-mode one-tile commit variants measured, in a fixed order.
pub fn zero_commit_variants(run: &Run) -> Vec<String> {
    let mut variants: Vec<String> = run
        .medians
        .keys()
        .filter_map(|id| id.strip_prefix("zero_holes/one_tile_commit/"))
        .filter_map(|rest| rest.split('/').next())
        .filter(|v| v.starts_with("zeros_"))
        .map(String::from)
        .collect();
    let order = [
        "zeros_split",
        "zeros_sequential",
        "zeros_spares",
        "zeros_spares7",
        "zeros_again",
    ];
    variants.sort_by_key(|v| {
        let rank = order.iter().position(|o| o == v).unwrap_or(order.len());
        (rank, v.clone())
    });
    variants.dedup();
    variants
}

/// (zeros, errors) medians of one pick and pool mode.
pub fn commit_pair(run: &Run, variant: &str, pool: &str) -> Option<(f64, f64)> {
    let base = error_baseline(variant)?;
    let id = |v: &str| format!("zero_holes/one_tile_commit/{v}/{pool}");
    run.median(&id(variant)).zip(run.median(&id(&base)))
}

/// Zero-hole arrays: create and drop per layout, the zero memory, and one-tile commits
/// against error mode.
pub fn zero_holes_tables(run: &Run, s: &mut String) {
    if let Some(array) = zero_array_size(run) {
        let mut variants: Vec<&str> = run
            .medians
            .keys()
            .filter_map(|id| id.strip_prefix("zero_holes/create/"))
            .chain(
                run.medians
                    .keys()
                    .filter_map(|id| id.strip_prefix("zero_holes/drop/")),
            )
            .filter_map(|rest| rest.strip_suffix(&format!("/{array}")))
            .collect();
        variants.sort_by_key(|v| natural_key(v));
        variants.dedup();
        let _ = writeln!(
            s,
            "### Zero-hole `SparseArray` of {} with 2 MiB tiles (median)\n\n\
             | Holes | create | drop |\n|---|---|---|",
            pretty_size(&array)
        );
        for v in variants {
            let name = match v.strip_prefix("zeros_") {
                Some(block) => format!("zeros, blocks of at most {}", pretty_size(block)),
                None => v.to_string(),
            };
            let cell = |op: &str| {
                run.median(&format!("zero_holes/{op}/{v}/{array}"))
                    .map_or("-".into(), fmt_time)
            };
            let _ = writeln!(s, "| {name} | {} | {} |", cell("create"), cell("drop"));
        }
        if let Some(bytes) = run.extra.get("zero_holes/zero_memory_bytes") {
            let _ = writeln!(
                s,
                "\nZero-filled memory held after the creates and commits: {}.",
                fmt_bytes(*bytes)
            );
        }
        s.push('\n');
    }
    let variants = zero_commit_variants(run);
    if variants.is_empty() {
        return;
    }
    s.push_str(
        "### One-tile commit, zero holes vs error mode (median)\n\n\
         Pooled: the chunk comes from a warm `ChunkPool`. The error-mode baseline is the same \
         pick, except that a random tile compares with a random error-mode tile and a \
         re-commit with the next tile (the cheaper error-mode commit).\n\n\
         | Tile committed | baseline | zeros pooled | errors pooled | ratio | zeros unpooled | \
         errors unpooled | ratio |\n|---|---|---|---|---|---|---|---|\n",
    );
    for v in variants {
        let base = error_baseline(&v).unwrap_or_default();
        let _ = write!(s, "| {} | `{base}` |", pick_name(&v));
        for pool in ["pooled", "unpooled"] {
            let id = |v: &str| format!("zero_holes/one_tile_commit/{v}/{pool}");
            let cell = |v: &str| run.median(&id(v)).map_or("-".into(), fmt_time);
            let ratio = commit_pair(run, &v, pool).map_or("-".into(), |(z, e)| fmt_ratio(z / e));
            let _ = write!(s, " {} | {} | {ratio} |", cell(&v), cell(&base));
        }
        s.push('\n');
    }
    s.push('\n');
}

/// The buffer size of the teardown bench: the case of `teardown/growable*/SIZE`.
pub fn teardown_size(run: &Run) -> Option<String> {
    sizes_under(run, "teardown/growable").pop()
}

/// The raw floor `teardown/{kind}/{size}_in_CHUNK` with the most allocations (the layout of
/// a pooled buffer's chunks): (id, median).
pub fn teardown_floor(run: &Run, kind: &str, size: &str) -> Option<(String, f64)> {
    let prefix = format!("teardown/{kind}/{size}_in_");
    run.medians
        .iter()
        .filter_map(|(id, t)| {
            let chunk = parse_size(id.strip_prefix(&prefix)?)?;
            Some((chunk, id, *t))
        })
        .min_by_key(|(chunk, _, _)| *chunk)
        .map(|(_, id, t)| (id.clone(), t))
}

/// Every raw unmap + release floor at `size`, labelled (`16GiB_in_32MiB`: "32 MiB
/// allocations"; `16GiB_in_1`: "one allocation"), fewest allocations first.
pub fn release_floors(run: &Run, size: &str) -> Vec<(String, f64)> {
    let prefix = format!("teardown/raw_release/{size}_in_");
    let mut floors: Vec<(u64, String, f64)> = run
        .medians
        .iter()
        .filter_map(|(id, t)| {
            let layout = id.strip_prefix(&prefix)?;
            match (layout, parse_size(layout)) {
                ("1", _) => Some((u64::MAX, "one allocation".to_string(), *t)),
                (_, Some(chunk)) => {
                    Some((chunk, format!("{} allocations", pretty_size(layout)), *t))
                }
                _ => None,
            }
        })
        .collect();
    floors.sort_by_key(|(chunk, _, _)| std::cmp::Reverse(*chunk));
    floors.into_iter().map(|(_, label, t)| (label, t)).collect()
}

/// Teardown of a grown buffer and its raw floors.
pub fn teardown_table(run: &Run, s: &mut String) {
    let rows: Vec<(&String, f64)> = run
        .medians
        .iter()
        .filter(|(id, _)| id.starts_with("teardown/"))
        .map(|(id, t)| (id, *t))
        .collect();
    if rows.is_empty() {
        return;
    }
    let size = teardown_size(run).unwrap_or_default();
    s.push_str(
        "### Teardown (median)\n\n\
         A buffer grown as by 2 MiB appends, then dropped; the raw floors make the same driver \
         calls through the raw table after one `cuCtxSynchronize` (`raw_unmap`: unmap only, \
         what a pool-backed teardown does; `raw_release`: unmap + release).\n\n\
         | Case | Median | vs floor |\n|---|---|---|\n",
    );
    for (id, t) in rows {
        let floor = match id.strip_prefix("teardown/") {
            Some(rest) if rest == format!("growable_pooled/{size}") => {
                teardown_floor(run, "raw_unmap", &size)
            }
            _ => None,
        };
        let unpooled = id.strip_prefix("teardown/") == Some(format!("growable/{size}").as_str());
        let vs = if unpooled {
            // The buffer's allocation count lies between the floors': show them all.
            let all: Vec<String> = release_floors(run, &size)
                .iter()
                .map(|(label, f)| format!("{}x unmap + release in {label}", fmt_ratio(t / f)))
                .collect();
            if all.is_empty() {
                "-".into()
            } else {
                all.join(", ")
            }
        } else {
            floor.map_or("-".into(), |(fid, f)| {
                format!(
                    "{}x `{}`",
                    fmt_ratio(t / f),
                    fid.trim_start_matches("teardown/")
                )
            })
        };
        let _ = writeln!(s, "| `{id}` | {} | {vs} |", fmt_time(t));
    }
    s.push('\n');
}
