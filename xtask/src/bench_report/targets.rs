//! The targets the project holds itself to (issue 11 and the earlier ones still valid), each
//! computed from one run with its verdict. Rendered as the section's targets table and as the
//! README's performance table.

use std::fmt::Write as _;

use super::format::{fmt_bytes, fmt_delta, fmt_ratio, fmt_time, parse_size, pretty_size};
use super::growth::largest_size;
use super::load::Run;
use super::prefetch::{fmt_secs, on_off, Blocked};
use super::teardown::{
    commit_pair, default_zero_variant, error_baseline, pick_name, release_floors, teardown_floor,
    teardown_size, zero_array_size, zero_commit_variants,
};
use super::{sizes_under, stub_overheads};

/// Growth ratios at most this are at the floor.
const GROWTH_MAX: f64 = 1.1;
/// Pooled growth at least this much faster than raw realloc-doubling.
const POOLED_MIN: f64 = 10.0;
/// Time blocked with prefetch at most this fraction of the time without.
const PREFETCH_MAX: f64 = 0.10;
/// Create and drop of a 1 TiB zero-hole array, each, in nanoseconds.
const ZERO_ARRAY_NS: f64 = 250e6;
/// The array size the zero-hole time and memory targets are set for (1 TiB; the benches
/// name it `1024GiB` or `1TiB`).
const ZERO_ARRAY_BYTES: u64 = 1 << 40;
/// Zero-filled memory at most.
const ZERO_MEMORY: f64 = (512u64 << 20) as f64;
/// Zero-mode one-tile commit at most this times the error-mode one.
const ZERO_COMMIT_MAX: f64 = 1.5;
/// Pool-backed teardown at most this times the raw unmap-only floor.
const POOLED_TEARDOWN_MAX: f64 = 1.1;

/// How a target came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Miss,
    /// The ids or side keys it needs are not in the run.
    NotMeasured,
    /// Measured at another size than the target's (a quick run).
    OtherSize,
    /// Reported for comparison, without a target.
    Info,
}

impl Verdict {
    fn of(ok: bool) -> Verdict {
        if ok {
            Verdict::Pass
        } else {
            Verdict::Miss
        }
    }

    /// The Markdown cell.
    pub fn cell(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Miss => "**miss**",
            Verdict::NotMeasured => "n/a",
            Verdict::OtherSize => "n/a (other size)",
            Verdict::Info => "-",
        }
    }
}

/// One target: what is measured, the goal, what this run measured and the verdict.
#[derive(Debug, Clone)]
pub struct Target {
    pub what: String,
    pub goal: String,
    pub measured: String,
    pub verdict: Verdict,
}

fn target(what: impl Into<String>, goal: &str, measured: String, verdict: Verdict) -> Target {
    Target {
        what: what.into(),
        goal: goal.into(),
        measured,
        verdict,
    }
}

fn not_measured(what: impl Into<String>, goal: &str) -> Target {
    target(what, goal, "not measured".into(), Verdict::NotMeasured)
}

/// `a / b = r x` with the medians as times.
fn ratio_text(a: f64, b: f64) -> String {
    format!("{} / {} = {}x", fmt_time(a), fmt_time(b), fmt_ratio(a / b))
}

/// Every target, in the order of the tables.
pub fn targets(run: &Run) -> Vec<Target> {
    let mut out = vec![safe_overhead(run)];
    out.extend(growth_targets(run));
    out.push(prefetch(run));
    out.extend(commit_bound(run));
    out.extend(zero_array(run));
    out.extend(zero_commits(run));
    out.extend(teardown(run));
    out.push(sparse_tile(run));
    out.push(pool_alloc(run));
    out
}

fn safe_overhead(run: &Run) -> Target {
    let what = "Safe layer's own cost per driver call (stub driver)";
    let goal = "<= max(2%, 0.1 µs)";
    let rows = stub_overheads(run);
    let per_call: Vec<f64> = rows.iter().map(|r| (r.safe - r.raw) / r.calls).collect();
    let (Some(lo), Some(hi)) = (
        per_call.iter().copied().reduce(f64::min),
        per_call.iter().copied().reduce(f64::max),
    ) else {
        return not_measured(what, goal);
    };
    let within = rows.iter().filter(|r| r.within).count();
    let measured = format!(
        "{} to {} per call ({within}/{} within)",
        fmt_delta(lo),
        fmt_delta(hi),
        rows.len()
    );
    target(what, goal, measured, Verdict::of(within == rows.len()))
}

/// The median of `growth/LAYOUT/SIZE`.
fn growth_at(run: &Run, layout: &str, size: &str) -> Option<f64> {
    run.median(&format!("growth/{layout}/{size}"))
}

/// `what`: the `growable` layout's time (`at(layout)`) against the faster of the raw
/// layouts with the default's 1.25x memory bound, within [`GROWTH_MAX`].
fn against_raw_floor(what: String, goal: &str, at: impl Fn(&str) -> Option<f64>) -> Target {
    let floor = ["raw_steps", "raw_steps_32MiB"]
        .into_iter()
        .filter_map(|f| Some((f, at(f)?)))
        .min_by(|a, b| a.1.total_cmp(&b.1));
    match (at("growable"), floor) {
        (Some(t), Some((name, f))) => target(
            what,
            goal,
            format!("{} (`{name}`)", ratio_text(t, f)),
            Verdict::of(t / f <= GROWTH_MAX),
        ),
        _ => not_measured(what, goal),
    }
}

fn growth_targets(run: &Run) -> Vec<Target> {
    let size = largest_size(run, "growable")
        .or_else(|| largest_size(run, "growable_speed"))
        .or_else(|| largest_size(run, "growable_pooled"))
        .or_else(|| sizes_under(run, "growth/").pop());
    let at = size.as_deref().map_or("16 GiB".into(), pretty_size);
    let size = size.unwrap_or_default();
    let goal = "<= 1.1x";

    // The fastest raw layout with the default's memory bound (1.25x).
    let default_what = format!(
        "Growth to {at} by 2 MiB appends, default policy / fastest raw layout with the same 1.25x bound"
    );
    let default = against_raw_floor(default_what, goal, |layout| growth_at(run, layout, &size));

    // The same, built and dropped: teardown costs per allocation, which weighs on pieces.
    let cycle_what = format!(
        "Build and drop to {at} (growth + teardown, back to back), default policy / fastest raw layout with the same bound"
    );
    let cycle = against_raw_floor(cycle_what, goal, |layout| {
        run.median(&format!("growth_cycle/{layout}/{size}"))
    });

    let speed_what = format!("Growth to {at}, `GrowthPolicy::speed()` / raw doubling");
    let speed = match (
        growth_at(run, "growable_speed", &size),
        growth_at(run, "raw_doubling", &size),
    ) {
        (Some(t), Some(f)) => target(
            speed_what,
            goal,
            ratio_text(t, f),
            Verdict::of(t / f <= GROWTH_MAX),
        ),
        _ => not_measured(speed_what, goal),
    };

    let pooled_what =
        format!("Growth to {at}: raw realloc-doubling / buffer on a warm `ChunkPool`");
    let pooled = match (
        growth_at(run, "raw_realloc", &size),
        growth_at(run, "growable_pooled", &size),
    ) {
        (Some(r), Some(p)) => target(
            pooled_what,
            ">= 10x",
            ratio_text(r, p),
            Verdict::of(r / p >= POOLED_MIN),
        ),
        _ => not_measured(pooled_what, ">= 10x"),
    };
    vec![default, cycle, speed, pooled]
}

fn prefetch(run: &Run) -> Target {
    let goal = "<= 10%";
    let measured_sizes: Vec<String> = Blocked::sizes(run)
        .into_iter()
        .filter(|s| Blocked::at(run, s).ratio.is_some())
        .collect();
    let Some(size) = measured_sizes.last() else {
        return not_measured(
            "Background commit: time appends are blocked, prefetch on / off",
            goal,
        );
    };
    let b = Blocked::at(run, size);
    let what = format!(
        "Background commit, growth to {} with 5 µs host work per append: time blocked, on / off",
        pretty_size(size)
    );
    let Some(ratio) = b.ratio else {
        return not_measured(what, goal);
    };
    let totals = match b.total {
        (Some(off), Some(on)) => format!("{} / {} = ", fmt_secs(on), fmt_secs(off)),
        _ => String::new(),
    };
    let measured = format!(
        "{totals}{:.1}%; per append on / off: p50 {}, p99 {}, max {}",
        ratio * 100.0,
        on_off(b.p50),
        on_off(b.p99),
        on_off(b.max)
    );
    target(what, goal, measured, Verdict::of(ratio <= PREFETCH_MAX))
}

/// Committed / length past 1 GiB (default policy) and the pointer of every `growable*` layout.
fn commit_bound(run: &Run) -> Vec<Target> {
    let extras = |layout_prefix: &str, suffix: &str| -> Vec<f64> {
        run.extra
            .iter()
            .filter(|(k, _)| k.starts_with(layout_prefix) && k.ends_with(suffix))
            .map(|(_, v)| *v)
            .collect()
    };
    let worst = extras("growth/growable/", "/max_commit_ratio_past_1GiB")
        .into_iter()
        .reduce(f64::max);
    let bound = match worst {
        Some(r) => target(
            "Default growth: committed / length past 1 GiB",
            "<= 1.25",
            format!("{r:.3}"),
            Verdict::of(r <= 1.25),
        ),
        None => target(
            "Default growth: committed / length past 1 GiB",
            "<= 1.25",
            "no run past 1 GiB".into(),
            Verdict::NotMeasured,
        ),
    };
    let moved = extras("growth/growable", "/pointer_moved");
    let pointer = if moved.is_empty() {
        not_measured(
            "The pointer never moves (every `growable*` layout)",
            "stays put",
        )
    } else {
        let stayed = moved.iter().all(|m| *m == 0.0);
        let measured = if stayed {
            format!("never moved ({} layouts and sizes)", moved.len())
        } else {
            let n = moved.iter().filter(|m| **m != 0.0).count();
            format!("moved in {n} of {}", moved.len())
        };
        target(
            "The pointer never moves (every `growable*` layout)",
            "stays put",
            measured,
            Verdict::of(stayed),
        )
    };
    vec![bound, pointer]
}

/// Create and drop of the default zero layout, and the zero memory held.
fn zero_array(run: &Run) -> Vec<Target> {
    let goal = "<= 250 ms";
    let (Some(array), Some(variant)) = (zero_array_size(run), default_zero_variant(run)) else {
        return vec![
            not_measured("Zero-hole `SparseArray` of 1 TiB: create", goal),
            not_measured("Zero-hole `SparseArray` of 1 TiB: drop", goal),
            not_measured(
                "Zero-filled memory for 1 TiB zero-hole arrays",
                "<= 512 MiB",
            ),
        ];
    };
    let full = parse_size(&array) == Some(ZERO_ARRAY_BYTES);
    let judge = |ok: bool| {
        if full {
            Verdict::of(ok)
        } else {
            Verdict::OtherSize
        }
    };
    let block = variant.trim_start_matches("zeros_");
    let mut out = Vec::new();
    for op in ["create", "drop"] {
        let what = format!(
            "Zero-hole `SparseArray` of {} (zero blocks <= {}): {op}",
            pretty_size(&array),
            pretty_size(block)
        );
        out.push(
            match run.median(&format!("zero_holes/{op}/{variant}/{array}")) {
                Some(t) => target(what, goal, fmt_time(t), judge(t <= ZERO_ARRAY_NS)),
                None => not_measured(what, goal),
            },
        );
    }
    let what = format!(
        "Zero-filled memory after creating {} arrays and committing",
        pretty_size(&array)
    );
    out.push(match run.extra.get("zero_holes/zero_memory_bytes") {
        Some(b) => target(what, "<= 512 MiB", fmt_bytes(*b), judge(*b <= ZERO_MEMORY)),
        None => not_measured(what, "<= 512 MiB"),
    });
    out
}

/// The zero-mode one-tile commit picks with a target: random, next, next with 15 and 7
/// spares, again.
const ZERO_PICKS: [&str; 5] = [
    "zeros_split",
    "zeros_sequential",
    "zeros_spares",
    "zeros_spares7",
    "zeros_again",
];

/// One-tile commits in zero mode against error mode, one row per pick (a single "not
/// measured" row when the run has none).
fn zero_commits(run: &Run) -> Vec<Target> {
    let measured = zero_commit_variants(run);
    // The 7-spare pick is a variant of the 15-spare one: a row only when measured.
    let mut picks: Vec<&str> = ZERO_PICKS
        .into_iter()
        .filter(|p| *p != "zeros_spares7" || measured.iter().any(|m| m == p))
        .collect();
    if measured.is_empty() {
        picks.truncate(1);
    }
    let at = zero_array_size(run).map_or("1 TiB".into(), |a| pretty_size(&a));
    picks
        .into_iter()
        .map(|pick| {
            let base = error_baseline(pick).unwrap_or_default();
            let what = format!(
                "One-tile commit in a {at} zero-hole array / error mode (`{base}`): {}",
                pick_name(pick)
            );
            let pairs: Vec<(&str, f64, f64)> = ["pooled", "unpooled"]
                .into_iter()
                .filter_map(|pool| commit_pair(run, pick, pool).map(|(z, e)| (pool, z, e)))
                .collect();
            if pairs.is_empty() {
                return not_measured(what, "<= 1.5x");
            }
            let text: Vec<String> = pairs
                .iter()
                .map(|(pool, z, e)| format!("{pool} {}", ratio_text(*z, *e)))
                .collect();
            let ok = pairs.iter().all(|(_, z, e)| z / e <= ZERO_COMMIT_MAX);
            target(what, "<= 1.5x", text.join("; "), Verdict::of(ok))
        })
        .collect()
}

/// Teardown of a grown buffer: pooled against the raw unmap-only floor (the target), unpooled
/// against unmap + release (for comparison).
fn teardown(run: &Run) -> Vec<Target> {
    let size = teardown_size(run);
    let at = size.as_deref().map_or("16 GiB".into(), pretty_size);
    let size = size.unwrap_or_default();
    let floor_name = |id: &str| {
        id.rsplit_once("_in_").map_or(String::new(), |(_, c)| {
            format!(" ({} chunks)", pretty_size(c))
        })
    };
    let mut out = Vec::new();
    let what = format!("Teardown of a {at} pool-backed buffer / raw unmap-only floor");
    let goal = "<= 1.1x (no release cost)";
    out.push(
        match (
            run.median(&format!("teardown/growable_pooled/{size}")),
            teardown_floor(run, "raw_unmap", &size),
        ) {
            (Some(t), Some((id, f))) => target(
                format!("{what}{}", floor_name(&id)),
                goal,
                ratio_text(t, f),
                Verdict::of(t / f <= POOLED_TEARDOWN_MAX),
            ),
            _ => not_measured(what, goal),
        },
    );
    let what = format!("Teardown of a {at} buffer, no pool / raw unmap + release floors");
    let floors = release_floors(run, &size);
    if let (Some(t), false) = (
        run.median(&format!("teardown/growable/{size}")),
        floors.is_empty(),
    ) {
        let vs: Vec<String> = floors
            .iter()
            .map(|(label, f)| format!("{} in {label}", fmt_time(*f)))
            .collect();
        out.push(target(
            what,
            "no target",
            format!("{} (raw: {})", fmt_time(t), vs.join(", ")),
            Verdict::Info,
        ));
    }
    out
}

fn sparse_tile(run: &Run) -> Target {
    // Like for like: the raw baseline does not zero-fill, so compare the commit that skips
    // zero-filling (`SparseConfig::uninit_tiles`).
    let what = "Pooled sparse commit of one 2 MiB tile (no zero-fill) / raw map + set access";
    match run
        .median("sparse/one_tile/pooled_commit_uninit")
        .zip(run.median("sparse/one_tile/raw_map_set_access"))
    {
        Some((p, r)) => target(what, "<= 1.1x", ratio_text(p, r), Verdict::of(p / r <= 1.1)),
        None => not_measured(what, "<= 1.1x"),
    }
}

fn pool_alloc(run: &Run) -> Target {
    let what = "`cuMemAlloc` + `cuMemFree` / pooled alloc + free of 2 MiB";
    match run
        .median("alloc_free/cuMemAlloc/2MiB")
        .zip(run.median("alloc_free/pool/2MiB"))
    {
        Some((raw, pool)) => target(
            what,
            ">= 1.5x",
            ratio_text(raw, pool),
            Verdict::of(raw / pool >= 1.5),
        ),
        None => not_measured(what, ">= 1.5x"),
    }
}

/// The targets as a Markdown table.
pub fn targets_table(run: &Run, s: &mut String) {
    s.push_str("### Targets\n\n| Target | Goal | Measured | Result |\n|---|---|---|---|\n");
    target_rows(run, s, |t| [&t.what, &t.goal, &t.measured]);
    s.push('\n');
}

/// One Markdown row a target: the three `cells`, then the verdict.
pub fn target_rows(run: &Run, s: &mut String, cells: impl Fn(&Target) -> [&String; 3]) {
    for t in targets(run) {
        let [a, b, c] = cells(&t);
        let _ = writeln!(s, "| {a} | {b} | {c} | {} |", t.verdict.cell());
    }
}
