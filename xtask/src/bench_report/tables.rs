//! The generic Markdown tables of one run's section: safe-layer overhead, latency per entry
//! point, one table per benchmark group without a module of its own (found in the run, so new
//! benches get a table without code here), and every median.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::format::{fmt_delta, fmt_ratio, fmt_time, natural_key, pretty_size};
use super::load::Run;
use super::{safe_overheads, stub_overheads, LATENCY_OPS, SAFE_ABS_NS, SAFE_REL};

/// Groups with a title and a ratio column: (id prefix, title, [numerator, denominator]).
const TITLED_GROUPS: &[(&str, &str, [&str; 2])] = &[
    (
        "sparse/commit_decommit",
        "Sparse commit + decommit of k adjacent random 2 MiB tiles",
        ["unpooled", "pooled"],
    ),
    (
        "sparse/one_tile",
        "One 2 MiB tile",
        ["pooled_commit_uninit", "raw_map_set_access"],
    ),
    (
        "set_access",
        "Set access on contiguous 2 MiB chunks",
        ["per_chunk", "per_run"],
    ),
    ("alloc_free", "2 MiB alloc + free", ["cuMemAlloc", "pool"]),
    (
        "ordering/write_drop",
        "Ordering: a new buffer, 2 MiB written from the host, dropped",
        ["default", "raw"],
    ),
    (
        "ordering/commit_decommit",
        "Ordering: one sparse tile committed, written and decommitted",
        ["default", "opt_out"],
    ),
];

/// Top-level groups that have tables of their own.
const DEDICATED: &[&str] = &[
    "latency",
    "growth",
    "overhead",
    "prefetch",
    "zero_holes",
    "teardown",
];

/// The safe layer's own cost on the stub driver.
pub fn overhead_table(run: &Run, s: &mut String) {
    let rows = stub_overheads(run);
    if rows.is_empty() {
        return;
    }
    s.push_str(
        "### Safe-layer overhead (median)\n\n\
         Measured on a driver whose VMM entry points return at once (`benches/src/stub.rs`), so \
         `safe - raw` is the safe layer's own work; the limit is max(2% of the real driver's raw \
         time at 2 MiB, 0.1 µs per call).\n\n\
         | Calls | stub raw | stub safe | added per call | real raw (2 MiB) | limit per call | within |\n\
         |---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let name = match r.op {
            "map_unmap" => "map + unmap",
            op => LATENCY_OPS.iter().find(|o| o.0 == op).map_or(op, |o| o.1),
        };
        let limit = (SAFE_REL * r.real.unwrap_or(0.0)).max(SAFE_ABS_NS * r.calls) / r.calls;
        let _ = writeln!(
            s,
            "| {name} | {} | {} | {} | {} | {} | {} |",
            fmt_time(r.raw),
            fmt_time(r.safe),
            fmt_delta((r.safe - r.raw) / r.calls),
            r.real.map_or("-".into(), fmt_time),
            fmt_time(limit),
            if r.within { "yes" } else { "**no**" }
        );
    }
    s.push('\n');
}

/// Raw and safe latency of every entry point and size.
pub fn latency_table(run: &Run, s: &mut String, plot: Option<&String>) {
    let overheads = safe_overheads(run);
    if overheads.is_empty() {
        return;
    }
    s.push_str("### Latency per entry point (median)\n\n");
    s.push_str(
        "On the real driver `safe - raw` mixes the safe layer's cost with run-to-run driver \
         noise (both signs occur); the overhead target is judged on the stub driver above.\n\n",
    );
    s.push_str("| Entry point | Size | raw | safe | safe - raw | within max(2%, 0.1 µs) |\n|---|---|---|---|---|---|\n");
    for (op, size, raw, safe, ok) in &overheads {
        let name = LATENCY_OPS.iter().find(|o| o.0 == *op).map_or(*op, |o| o.1);
        let _ = writeln!(
            s,
            "| {name} | {} | {} | {} | {} | {} |",
            pretty_size(size),
            fmt_time(*raw),
            fmt_time(*safe),
            fmt_delta(safe - raw),
            if *ok { "yes" } else { "**no**" }
        );
    }
    if let Some(plot) = plot {
        let _ = writeln!(s, "\n![Latency vs chunk size]({plot})");
    }
    s.push('\n');
}

/// Medians of one group: case -> variant -> median.
type GroupRows<'a> = BTreeMap<(u64, String, u64, &'a str), BTreeMap<&'a str, f64>>;

/// Splits an id into (group, variant, case) for the per-group tables: a titled group's
/// prefix first; otherwise `GROUP.../VARIANT/CASE` (3+ parts) or `GROUP/VARIANT`. `None` for
/// ids with a table of their own.
fn split_id(id: &str) -> Option<(&str, &str, &str)> {
    for (prefix, _, _) in TITLED_GROUPS {
        if let Some(rest) = id.strip_prefix(prefix).and_then(|r| r.strip_prefix('/')) {
            let (variant, case) = rest.split_once('/').unwrap_or((rest, "-"));
            return Some((prefix, variant, case));
        }
    }
    let top = id.split('/').next().unwrap_or(id);
    if DEDICATED.contains(&top) {
        return None;
    }
    let (head, case) = id.rsplit_once('/')?;
    match head.rsplit_once('/') {
        Some((group, variant)) => Some((group, variant, case)),
        None => Some((head, case, "-")),
    }
}

/// One table per benchmark group that has no table of its own: a column per variant, a row
/// per case, and for the titled groups the ratio of the two variants named.
pub fn group_tables(run: &Run, s: &mut String) {
    let mut groups: BTreeMap<&str, GroupRows<'_>> = BTreeMap::new();
    for (id, v) in &run.medians {
        if let Some((group, variant, case)) = split_id(id) {
            groups
                .entry(group)
                .or_default()
                .entry(natural_key(case))
                .or_default()
                .insert(variant, *v);
        }
    }
    let titled = TITLED_GROUPS
        .iter()
        .map(|(p, t, r)| (*p, t.to_string(), Some(*r)));
    let others: Vec<(&str, String, Option<[&str; 2]>)> = groups
        .keys()
        .filter(|g| !TITLED_GROUPS.iter().any(|t| t.0 == **g))
        .map(|g| (*g, format!("`{g}`"), None))
        .collect();
    for (group, title, ratio) in titled.chain(others) {
        if let Some(rows) = groups.get(group) {
            group_table(s, &title, rows, ratio);
        }
    }
}

fn group_table(s: &mut String, title: &str, rows: &GroupRows<'_>, ratio: Option<[&str; 2]>) {
    let mut variants: Vec<&str> = ratio.map_or(Vec::new(), |r| r.to_vec());
    for row in rows.values() {
        for v in row.keys() {
            if !variants.contains(v) {
                variants.push(v);
            }
        }
    }
    let _ = write!(s, "### {title} (median)\n\n| Case |");
    for v in &variants {
        let _ = write!(s, " {v} |");
    }
    let mut columns = variants.len();
    if let Some([a, b]) = ratio {
        let _ = write!(s, " {a} / {b} |");
        columns += 1;
    }
    let _ = writeln!(s, "\n|---|{}", "---|".repeat(columns));
    for ((_, _, _, case), row) in rows {
        let _ = write!(s, "| {case} |");
        for v in &variants {
            let _ = write!(s, " {} |", row.get(v).map_or("-".into(), |t| fmt_time(*t)));
        }
        if let Some([a, b]) = ratio {
            let r = row
                .get(a)
                .zip(row.get(b))
                .map_or("-".into(), |(x, y)| fmt_ratio(x / y));
            let _ = write!(s, " {r} |");
        }
        s.push('\n');
    }
    s.push('\n');
}

/// Every median, by criterion id.
pub fn all_medians(run: &Run, s: &mut String) {
    s.push_str("<details><summary>All medians</summary>\n\n| Benchmark | Median |\n|---|---|\n");
    for (id, v) in &run.medians {
        let _ = writeln!(s, "| `{id}` | {} |", fmt_time(*v));
    }
    s.push_str("\n</details>\n\n");
}
