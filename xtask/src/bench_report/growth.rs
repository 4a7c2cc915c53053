//! Growth by 2 MiB appends (`benches/benches/growth.rs`): the layouts, their raw floors, the
//! steady-state table with the ratio to the floor, and the other regimes (settled, first use,
//! `cuMemCreate` after a release) from the side file.

use std::fmt::Write as _;

use super::format::{fmt_bytes, fmt_ratio, fmt_time, parse_size, pretty_size};
use super::load::Run;
use super::sizes_under;

/// A growth layout the report knows: id, description, memory bound, and the raw floor it is
/// measured against (itself for a floor).
pub struct Layout {
    pub id: &'static str,
    pub name: &'static str,
    pub bound: &'static str,
    pub floor: &'static str,
}

const fn layout(
    id: &'static str,
    name: &'static str,
    bound: &'static str,
    floor: &'static str,
) -> Layout {
    Layout {
        id,
        name,
        bound,
        floor,
    }
}

/// The layouts of `benches/benches/growth.rs`, floors first (as the bench runs them).
pub const LAYOUTS: &[Layout] = &[
    layout(
        "raw_steps",
        "raw: default steps, one allocation each",
        "1.25x",
        "raw_steps",
    ),
    layout(
        "raw_steps_32MiB",
        "raw: default steps, 32 MiB allocations",
        "1.25x",
        "raw_steps_32MiB",
    ),
    layout("raw_doubling", "raw: doubling steps", "2x", "raw_doubling"),
    layout(
        "raw_realloc",
        "raw: VMM realloc-doubling",
        "1.5x peak",
        "raw_realloc",
    ),
    layout(
        "growable",
        "GrowableBuffer, default policy",
        "1.25x",
        "raw_steps",
    ),
    layout(
        "growable_speed",
        "GrowableBuffer, GrowthPolicy::speed()",
        "2x",
        "raw_doubling",
    ),
    layout(
        "growable_whole",
        "GrowableBuffer, default steps, always one allocation each",
        "1.25x",
        "raw_steps",
    ),
    layout(
        "growable_churn",
        "GrowableBuffer, 32 MiB pieces for 1 s after a slow create",
        "1.25x",
        "raw_steps_32MiB",
    ),
    layout(
        "growable_alloc32MiB",
        "GrowableBuffer, allocations <= 32 MiB",
        "1.25x",
        "raw_steps",
    ),
    layout(
        "growable_alloc128MiB",
        "GrowableBuffer, allocations <= 128 MiB",
        "1.25x",
        "raw_steps",
    ),
    layout(
        "growable_alloc512MiB",
        "GrowableBuffer, allocations <= 512 MiB",
        "1.25x",
        "raw_steps",
    ),
    layout(
        "growable_pooled",
        "GrowableBuffer, warm pool",
        "1.25x",
        "raw_realloc",
    ),
    layout(
        "realloc",
        "realloc-doubling (cuMemAlloc)",
        "1.5x peak",
        "raw_realloc",
    ),
    layout("naive", "naive VMM (2 MiB each)", "1x", "raw_steps"),
];

/// The growth layouts this run measured: the known ones in bench order, then any other
/// `growth/LAYOUT/SIZE` (named by its id), as (id, name).
pub fn growth_strategies(run: &Run) -> Vec<(String, String)> {
    let mut measured: Vec<&str> = Vec::new();
    for id in run.medians.keys() {
        let Some((layout, size)) = id.strip_prefix("growth/").and_then(|r| r.split_once('/'))
        else {
            continue;
        };
        if parse_size(size).is_some() && !measured.contains(&layout) {
            measured.push(layout);
        }
    }
    let mut out: Vec<(String, String)> = LAYOUTS
        .iter()
        .filter(|l| measured.contains(&l.id))
        .map(|l| (l.id.to_string(), l.name.to_string()))
        .collect();
    for layout in measured {
        if !LAYOUTS.iter().any(|l| l.id == layout) {
            out.push((layout.to_string(), format!("`{layout}`")));
        }
    }
    out
}

/// The floor of `layout` at `size`: the bench's `ratio_to_FLOOR` side key if recorded, else
/// the floor the report knows.
pub fn floor_of(run: &Run, layout: &str, size: &str) -> Option<String> {
    let prefix = format!("growth/{layout}/{size}/ratio_to_");
    let recorded = run
        .extra
        .keys()
        .find_map(|k| k.strip_prefix(&prefix).map(String::from));
    recorded.or_else(|| {
        LAYOUTS
            .iter()
            .find(|l| l.id == layout)
            .map(|l| l.floor.to_string())
    })
}

/// The largest growth size at which `layout` was measured.
pub fn largest_size(run: &Run, layout: &str) -> Option<String> {
    sizes_under(run, &format!("growth/{layout}/")).pop()
}

/// Steady-state growth: a row per layout, a column per size, the ratio to the floor and the
/// peak committed memory at the largest size.
pub fn growth_table(run: &Run, s: &mut String, plot: Option<&String>) {
    let sizes = sizes_under(run, "growth/");
    let Some(largest) = sizes.last() else {
        return;
    };
    let at = pretty_size(largest);
    s.push_str(
        "### Growth by 2 MiB appends, steady state (median)\n\n\
         Criterion runs iterations back to back, so each one creates memory that the previous \
         one released moments before. Floors make the same driver calls through the raw table \
         (`benches/src/raw_growth.rs`).\n\n| Layout | What | Bound |",
    );
    for size in &sizes {
        let _ = write!(s, " {} |", pretty_size(size));
    }
    let _ = writeln!(
        s,
        " Ratio to the floor at {at} | Peak committed at {at} |\n|---|---|---|{}---|---|",
        "---|".repeat(sizes.len())
    );
    for (id, name) in growth_strategies(run) {
        let bound = LAYOUTS.iter().find(|l| l.id == id).map_or("-", |l| l.bound);
        let what = if name.starts_with('`') {
            "-"
        } else {
            name.as_str()
        };
        let _ = write!(s, "| `{id}` | {what} | {bound} |");
        for size in &sizes {
            let cell = run
                .median(&format!("growth/{id}/{size}"))
                .map_or("-".into(), fmt_time);
            let _ = write!(s, " {cell} |");
        }
        let ratio = match floor_of(run, &id, largest) {
            Some(floor) if floor == id => "floor".to_string(),
            Some(floor) => run
                .median(&format!("growth/{id}/{largest}"))
                .zip(run.median(&format!("growth/{floor}/{largest}")))
                .map_or("-".into(), |(t, f)| {
                    format!("{}x `{floor}`", fmt_ratio(t / f))
                }),
            None => "-".into(),
        };
        let peak = run
            .extra
            .get(&format!("growth/{id}/{largest}/peak_committed_bytes"))
            .map_or("-".into(), |b| fmt_bytes(*b));
        let _ = writeln!(s, " {ratio} | {peak} |");
    }
    if let Some(plot) = plot {
        let _ = writeln!(s, "\n![Growth time vs final size]({plot})");
    }
    s.push('\n');
}

/// The settled and first-use regimes (side keys `growth/LAYOUT/SIZE/settled_median_s` and
/// `.../first_use_s`), with the steady-state median of the same size for comparison.
pub fn regimes_table(run: &Run, s: &mut String) {
    let regime = |key: &str, suffix: &str| -> Option<(String, String)> {
        let rest = key.strip_prefix("growth/")?.strip_suffix(suffix)?;
        let (layout, size) = rest.split_once('/')?;
        Some((layout.to_string(), size.to_string()))
    };
    let mut rows: Vec<(String, String)> = run
        .extra
        .keys()
        .filter_map(|k| regime(k, "/settled_median_s").or_else(|| regime(k, "/first_use_s")))
        .collect();
    if rows.is_empty() {
        return;
    }
    let order = |layout: &str| LAYOUTS.iter().position(|l| l.id == layout);
    rows.sort_by_key(|(layout, size)| (parse_size(size), order(layout), layout.clone()));
    rows.dedup();
    s.push_str(
        "### Growth in the other regimes (median)\n\n\
         *Settled*: runs that start after the device has been idle for a while (median of a \
         few). *First use*: one run as the process's first device memory \
         (`CUDA_VMM_GROWTH_FIRST_USE=LAYOUT`, one process each).\n\n\
         | Layout | Size | First use | Settled | Steady state |\n|---|---|---|---|---|\n",
    );
    for (layout, size) in rows {
        let secs = |suffix: &str| side_time(run, &format!("growth/{layout}/{size}/{suffix}"));
        let steady = median_time(run, &format!("growth/{layout}/{size}"));
        let _ = writeln!(
            s,
            "| `{layout}` | {} | {} | {} | {steady} |",
            pretty_size(&size),
            secs("first_use_s"),
            secs("settled_median_s")
        );
    }
    s.push('\n');
}

/// `cuMemCreate` right after releasing the same size and after an idle pause (side keys
/// `create_probe/SIZE/{after_release,after_idle}_s`), against `latency/create/raw/SIZE`.
pub fn create_probe_table(run: &Run, s: &mut String) {
    let mut sizes: Vec<String> = run
        .extra
        .keys()
        .filter_map(|k| k.strip_prefix("create_probe/")?.split_once('/'))
        .map(|(size, _)| size.to_string())
        .collect();
    if sizes.is_empty() {
        return;
    }
    sizes.sort_by_key(|size| parse_size(size));
    sizes.dedup();
    s.push_str(
        "### `cuMemCreate` by what the device did before (median)\n\n\
         | Size | right after releasing the same size | after an idle pause | \
         `latency/create/raw` (back-to-back churn) |\n|---|---|---|---|\n",
    );
    for size in sizes {
        let probe = |what: &str| side_time(run, &format!("create_probe/{size}/{what}_s"));
        let churn = median_time(run, &format!("latency/create/raw/{size}"));
        let _ = writeln!(
            s,
            "| {} | {} | {} | {churn} |",
            pretty_size(&size),
            probe("after_release"),
            probe("after_idle")
        );
    }
    s.push('\n');
}

/// The side key `key` (seconds) as a time, or `-`.
fn side_time(run: &Run, key: &str) -> String {
    run.extra.get(key).map_or("-".into(), |t| fmt_time(t * 1e9))
}

/// The median of benchmark `id` as a time, or `-`.
fn median_time(run: &Run, id: &str) -> String {
    run.median(id).map_or("-".into(), fmt_time)
}
