//! Tables of the background-commit, zero-hole and teardown benches (`benches/benches/
//! prefetch.rs`, `teardown.rs`), and the id lookups the targets share with them.

use std::fmt::Write as _;

use super::format::{fmt_bytes, fmt_ratio, fmt_time, natural_key, parse_size, pretty_size};
use super::load::Run;
use super::sizes_under;

/// Seconds in a side key, as a time: `blocked_total_s` -> `401 µs`, a zero -> `0`.
pub fn fmt_secs(secs: f64) -> String {
    if secs == 0.0 {
        "0".into()
    } else {
        fmt_time(secs * 1e9)
    }
}

/// One prefetch size's blocked statistics, with and without prefetch (side keys
/// `prefetch/{off,on}/SIZE/blocked_{p50,p99,max,total}_s`).
pub struct Blocked {
    pub ratio: Option<f64>,
    /// (off, on) for p50, p99, max, total, in seconds.
    pub p50: (Option<f64>, Option<f64>),
    pub p99: (Option<f64>, Option<f64>),
    pub max: (Option<f64>, Option<f64>),
    pub total: (Option<f64>, Option<f64>),
}

impl Blocked {
    pub fn at(run: &Run, size: &str) -> Blocked {
        let pair = |stat: &str| {
            let get = |mode: &str| {
                run.extra
                    .get(&format!("prefetch/{mode}/{size}/blocked_{stat}_s"))
                    .copied()
            };
            (get("off"), get("on"))
        };
        Blocked {
            ratio: run
                .extra
                .get(&format!("prefetch/{size}/blocked_ratio"))
                .copied(),
            p50: pair("p50"),
            p99: pair("p99"),
            max: pair("max"),
            total: pair("total"),
        }
    }

    /// The sizes the prefetch bench measured (medians or side keys), smallest first.
    pub fn sizes(run: &Run) -> Vec<String> {
        let mut sizes = sizes_under(run, "prefetch/");
        for key in run.extra.keys() {
            if let Some(size) = key
                .strip_prefix("prefetch/")
                .and_then(|r| r.strip_suffix("/blocked_ratio"))
            {
                sizes.push(size.to_string());
            }
        }
        sizes.sort_by_key(|s| parse_size(s));
        sizes.dedup();
        sizes
    }
}

/// An (off, on) pair as `on / off` text: `401 µs / 4.60 ms`.
pub fn on_off((off, on): (Option<f64>, Option<f64>)) -> String {
    let cell = |v: Option<f64>| v.map_or("-".into(), fmt_secs);
    format!("{} / {}", cell(on), cell(off))
}

/// Background commit: the whole workload and the time appends spent blocked, per size.
pub fn prefetch_table(run: &Run, s: &mut String) {
    let sizes = Blocked::sizes(run);
    if sizes.is_empty() {
        return;
    }
    s.push_str(
        "### Background commit (`prefetch/{off,on}/SIZE`, median)\n\n\
         Growth by 2 MiB appends with 5 µs of busy host work per append, default policy. \
         Blocked = time the growing call spent in the allocator (`GrowableBuffer::blocked_stats`): \
         p50 and p99 per append of the median run, max over all runs, total the median over runs. \
         Each pair is *on / off*.\n\n\
         | Size | Whole workload on / off | Blocked total on / off | Ratio | p50 | p99 | max |\n\
         |---|---|---|---|---|---|---|\n",
    );
    for size in sizes {
        let b = Blocked::at(run, &size);
        let whole = (
            run.median(&format!("prefetch/off/{size}")).map(|t| t / 1e9),
            run.median(&format!("prefetch/on/{size}")).map(|t| t / 1e9),
        );
        let ratio = b.ratio.map_or("-".into(), |r| format!("{}x", fmt_ratio(r)));
        let _ = writeln!(
            s,
            "| {} | {} | {} | {ratio} | {} | {} | {} |",
            pretty_size(&size),
            on_off(whole),
            on_off(b.total),
            on_off(b.p50),
            on_off(b.p99),
            on_off(b.max)
        );
    }
    s.push('\n');
}

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
        "zeros_spares" => "the next tile, 7 spare tiles committed ahead".into(),
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
            Some(rest) if rest == format!("growable/{size}") => {
                teardown_floor(run, "raw_release", &size)
            }
            _ => None,
        };
        let vs = floor.map_or("-".into(), |(fid, f)| {
            format!(
                "{}x `{}`",
                fmt_ratio(t / f),
                fid.trim_start_matches("teardown/")
            )
        });
        let _ = writeln!(s, "| `{id}` | {} | {vs} |", fmt_time(t));
    }
    s.push('\n');
}
