//! `cargo xtask bench-report [--criterion DIR] [--out FILE] [--include-stale]`: turns the latest criterion run
//! of `cuda-vmm-benches` into a section of `BENCHMARKS.md` plus two SVG plots.
//!
//! Inputs, all under the criterion directory (default `target/criterion`):
//! - `**/new/estimates.json` + `benchmark.json`: the median of every benchmark, keyed by its
//!   criterion id (e.g. `latency/map/raw/2MiB`);
//! - `cuda-vmm-run.json`: the run's metadata (GPU, driver versions, date, start time), written by
//!   the benches; estimates older than its `started_unix` are left-overs of earlier runs and are
//!   skipped unless `--include-stale`;
//! - `cuda-vmm-extra.json`: flat `{"key": number}` side measurements (peak committed memory...).
//!
//! The section is keyed by GPU + date: re-running replaces it, another GPU or day appends one.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// File (in the criterion directory) holding the run's metadata.
const RUN_FILE: &str = "cuda-vmm-run.json";
/// File (in the criterion directory) holding side measurements.
const EXTRA_FILE: &str = "cuda-vmm-extra.json";
/// Where the SVG plots go, relative to the report's directory.
const PLOT_DIR: &str = "docs/bench";

const DOC_HEADER: &str = "# Benchmarks

Medians measured by `cargo bench -p cuda-vmm-benches` and written here by
`cargo xtask bench-report` (one section per GPU and date; re-running replaces that section).
See `benches/src/lib.rs` for the benchmark names and sizes.
";

pub fn run(args: &[String]) -> Result<(), String> {
    let mut criterion: Option<PathBuf> = None;
    let mut out: Option<PathBuf> = None;
    let mut include_stale = false;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--criterion" => {
                criterion = Some(it.next().ok_or("--criterion needs a directory")?.into())
            }
            "--include-stale" => include_stale = true,
            "--out" => out = Some(it.next().ok_or("--out needs a file name")?.into()),
            other => {
                return Err(format!(
                    "unknown argument `{other}` to `cargo xtask bench-report`"
                ))
            }
        }
    }
    let criterion = criterion.unwrap_or_else(default_criterion_dir);
    let out = out.unwrap_or_else(|| workspace_root().join("BENCHMARKS.md"));
    let written = generate(&criterion, &out, include_stale)?;
    for path in written {
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// Reads the run under `criterion`, writes its plots and upserts its section in `out`.
/// Returns the files written.
fn generate(criterion: &Path, out: &Path, include_stale: bool) -> Result<Vec<PathBuf>, String> {
    let run = Run::load(criterion, include_stale)?;
    let base = out.parent().map(Path::to_path_buf).unwrap_or_default();
    let plot_rel = format!("{PLOT_DIR}/{}", run.meta.slug());
    let plot_dir = base.join(&plot_rel);
    std::fs::create_dir_all(&plot_dir)
        .map_err(|e| format!("cannot create {}: {e}", plot_dir.display()))?;

    let mut written = Vec::new();
    let mut plots = BTreeMap::new();
    for (name, svg) in [
        ("latency.svg", latency_plot(&run)),
        ("growth.svg", growth_plot(&run)),
    ] {
        let Some(svg) = svg else { continue };
        let path = plot_dir.join(name);
        std::fs::write(&path, svg).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        plots.insert(name, format!("{plot_rel}/{name}"));
        written.push(path);
    }

    let section = render_section(&run, &plots);
    let existing = match std::fs::read_to_string(out) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => DOC_HEADER.to_string(),
        Err(e) => return Err(format!("cannot read {}: {e}", out.display())),
    };
    let doc = upsert_section(&existing, &run.meta.key(), &section);
    std::fs::write(out, doc).map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    written.push(out.to_path_buf());
    Ok(written)
}

fn workspace_root() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.parent().map(Path::to_path_buf).unwrap_or(here)
}

/// Criterion's own choice: `$CRITERION_HOME`, `$CARGO_TARGET_DIR/criterion`, `target/criterion`.
fn default_criterion_dir() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return home.into();
    }
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(target) => PathBuf::from(target).join("criterion"),
        None => workspace_root().join("target/criterion"),
    }
}

// ---------------------------------------------------------------------------------------------
// Loading a run

/// Metadata of one benchmark run (`cuda-vmm-run.json`).
#[derive(Debug, Clone, Default)]
struct Meta {
    gpu: String,
    backend: String,
    cuda_driver: String,
    kernel_driver: String,
    date: String,
    quick: bool,
    note: String,
}

impl Meta {
    fn key(&self) -> String {
        format!("{} @ {}", self.gpu, self.date).replace("--", "-")
    }

    fn slug(&self) -> String {
        let mut slug = String::new();
        for c in self.key().chars() {
            if c.is_ascii_alphanumeric() {
                slug.push(c.to_ascii_lowercase());
            } else if !slug.ends_with('-') {
                slug.push('-');
            }
        }
        slug.trim_matches('-').to_string()
    }
}

/// One run: medians (ns) by criterion id, side measurements, metadata.
#[derive(Debug, Default)]
struct Run {
    meta: Meta,
    medians: BTreeMap<String, f64>,
    extra: BTreeMap<String, f64>,
}

impl Run {
    /// Loads the run in `dir`; unless `include_stale`, estimates written before the session
    /// in `cuda-vmm-run.json` started (left over from earlier runs) are ignored.
    fn load(dir: &Path, include_stale: bool) -> Result<Run, String> {
        if !dir.is_dir() {
            return Err(format!(
                "{} is not a directory; run `cargo bench -p cuda-vmm-benches` first or pass --criterion DIR",
                dir.display()
            ));
        }
        let mut found = BTreeMap::new();
        collect_estimates(dir, dir, &mut found)?;
        if found.is_empty() {
            return Err(format!(
                "no criterion estimates (*/new/estimates.json) under {}",
                dir.display()
            ));
        }
        let run_file = read_json(&dir.join(RUN_FILE))?;
        let started = run_file
            .as_ref()
            .and_then(|v| v.get("started_unix"))
            .and_then(json::Value::as_f64);
        let meta = match run_file {
            Some(v) => Meta {
                gpu: v.str_or("gpu", "unknown device"),
                backend: v.str_or("backend", "unknown backend"),
                cuda_driver: v.str_or("cuda_driver", "unknown"),
                kernel_driver: v.str_or("kernel_driver", "unknown"),
                date: v.str_or("date", "unknown date"),
                quick: v
                    .get("quick")
                    .and_then(json::Value::as_bool)
                    .unwrap_or(false),
                note: v.str_or("note", ""),
            },
            None => {
                eprintln!(
                    "warning: no {RUN_FILE} in {}; GPU and date unknown",
                    dir.display()
                );
                Meta {
                    gpu: "unknown device".into(),
                    date: "unknown date".into(),
                    ..Meta::default()
                }
            }
        };
        let medians = fresh_medians(found, started, include_stale)?;
        let mut extra = BTreeMap::new();
        if let Some(json::Value::Object(fields)) = read_json(&dir.join(EXTRA_FILE))? {
            for (k, v) in fields {
                if let Some(n) = v.as_f64() {
                    extra.insert(k, n);
                }
            }
        }
        Ok(Run {
            meta,
            medians,
            extra,
        })
    }

    fn median(&self, id: &str) -> Option<f64> {
        self.medians.get(id).copied()
    }
}

/// Drops estimates written before `started` (Unix seconds), saying how many.
fn fresh_medians(
    found: BTreeMap<String, (f64, f64)>,
    started: Option<f64>,
    include_stale: bool,
) -> Result<BTreeMap<String, f64>, String> {
    let cutoff = match started {
        Some(t) if !include_stale => t - 1.0,
        _ => f64::MIN,
    };
    let total = found.len();
    let fresh: BTreeMap<String, f64> = found
        .into_iter()
        .filter(|(_, (_, written))| *written >= cutoff)
        .map(|(id, (median, _))| (id, median))
        .collect();
    if fresh.len() < total {
        eprintln!(
            "ignoring {} estimates older than this run (pass --include-stale to keep them)",
            total - fresh.len()
        );
    }
    if fresh.is_empty() {
        return Err("every criterion estimate predates the run in cuda-vmm-run.json".into());
    }
    Ok(fresh)
}

fn read_json(path: &Path) -> Result<Option<json::Value>, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => json::parse(&text)
            .map(Some)
            .map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// Walks `dir` for `new/estimates.json`, keyed by `benchmark.json`'s `full_id` (criterion's
/// directory names are mangled: `/` becomes `_`), falling back to the relative path.
/// Values are (median ns, Unix time the estimate was written).
fn collect_estimates(
    root: &Path,
    dir: &Path,
    out: &mut BTreeMap<String, (f64, f64)>,
) -> Result<(), String> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    for entry in entries {
        let path = entry
            .map_err(|e| format!("cannot list {}: {e}", dir.display()))?
            .path();
        if !path.is_dir() {
            continue;
        }
        let estimates = path.join("new/estimates.json");
        if estimates.is_file() {
            let est = read_json(&estimates)?.unwrap_or(json::Value::Null);
            let median = est
                .get("median")
                .and_then(|m| m.get("point_estimate"))
                .and_then(json::Value::as_f64)
                .ok_or_else(|| format!("{}: no median.point_estimate", estimates.display()))?;
            let id = read_json(&path.join("new/benchmark.json"))?
                .and_then(|b| {
                    b.get("full_id")
                        .and_then(json::Value::as_str)
                        .map(String::from)
                })
                .unwrap_or_else(|| {
                    let rel = path.strip_prefix(root).unwrap_or(&path);
                    rel.to_string_lossy().replace('\\', "/")
                });
            let written = std::fs::metadata(&estimates)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0.0, |d| d.as_secs_f64());
            out.insert(id, (median, written));
        }
        collect_estimates(root, &path, out)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Benchmark names (must match benches/src/lib.rs)

/// Single entry points and the paired benchmarks, with the number of driver calls each makes.
const LATENCY_OPS: &[(&str, &str, f64)] = &[
    ("reserve", "cuMemAddressReserve", 1.0),
    ("free", "cuMemAddressFree", 1.0),
    ("reserve_free", "reserve + free", 2.0),
    ("create", "cuMemCreate", 1.0),
    ("release", "cuMemRelease", 1.0),
    ("create_release", "create + release", 2.0),
    ("map", "cuMemMap", 1.0),
    ("unmap", "cuMemUnmap", 1.0),
    ("map_unmap", "map + set access + unmap", 3.0),
    ("set_access", "cuMemSetAccess", 1.0),
];
const GROWTH_STRATEGIES: &[(&str, &str)] = &[
    ("growable", "GrowableBuffer"),
    ("growable_pooled", "GrowableBuffer, warm pool"),
    ("realloc", "realloc-doubling"),
    ("naive", "naive VMM (2 MiB each)"),
];
const SAFE_ABS_NS: f64 = 100.0;
const SAFE_REL: f64 = 0.02;

/// Sizes (`"2MiB"` strings) that occur as the last component of ids starting with `prefix`.
fn sizes_under(run: &Run, prefix: &str) -> Vec<String> {
    let mut sizes: Vec<String> = run
        .medians
        .keys()
        .filter_map(|id| id.strip_prefix(prefix))
        .filter_map(|rest| rest.rsplit('/').next())
        .filter(|s| parse_size(s).is_some())
        .map(String::from)
        .collect();
    sizes.sort_by_key(|s| parse_size(s));
    sizes.dedup();
    sizes
}

/// `"2MiB"` -> 2097152 (KiB, MiB, GiB, TiB or B).
fn parse_size(s: &str) -> Option<u64> {
    let units = [
        ("TiB", 1u64 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
        ("B", 1),
    ];
    units.iter().find_map(|(unit, mult)| {
        let n: u64 = s.strip_suffix(unit)?.parse().ok()?;
        n.checked_mul(*mult)
    })
}

// ---------------------------------------------------------------------------------------------
// Markdown

/// Pass, miss or not measured.
fn verdict(ok: Option<bool>) -> &'static str {
    match ok {
        Some(true) => "pass",
        Some(false) => "**miss**",
        None => "n/a",
    }
}

fn render_section(run: &Run, plots: &BTreeMap<&str, String>) -> String {
    let meta = &run.meta;
    let mut s = String::new();
    let _ = writeln!(s, "<!-- bench-run: {} -->", meta.key());
    let _ = writeln!(s, "## {}, {}\n", meta.gpu, meta.date);
    let mode = if meta.quick {
        "quick mode (reduced sizes)"
    } else {
        "full sizes"
    };
    let _ = writeln!(
        s,
        "Backend: {}; CUDA driver API {}; kernel driver {}; {mode}.",
        meta.backend, meta.cuda_driver, meta.kernel_driver
    );
    if !meta.note.is_empty() {
        let _ = writeln!(s, "{}", meta.note);
    }
    s.push('\n');
    targets_table(run, &mut s);
    overhead_table(run, &mut s);
    latency_table(run, &mut s, plots.get("latency.svg"));
    growth_table(run, &mut s, plots.get("growth.svg"));
    misc_tables(run, &mut s);
    all_medians(run, &mut s);
    let _ = writeln!(s, "<!-- end bench-run: {} -->", meta.key());
    s
}

/// Safe-layer overhead of every (op, size) with both layers: (op, size, raw, safe, within).
fn safe_overheads(run: &Run) -> Vec<(&'static str, String, f64, f64, bool)> {
    let mut rows = Vec::new();
    for &(op, _, calls) in LATENCY_OPS {
        for size in sizes_under(run, &format!("latency/{op}/")) {
            let raw = run.median(&format!("latency/{op}/raw/{size}"));
            let safe = run.median(&format!("latency/{op}/safe/{size}"));
            if let (Some(raw), Some(safe)) = (raw, safe) {
                let limit = (SAFE_REL * raw).max(SAFE_ABS_NS * calls);
                rows.push((op, size, raw, safe, safe - raw <= limit));
            }
        }
    }
    rows
}

/// (op, calls, stub raw, stub safe, real raw, within) of one stub-driver overhead pair.
type StubRow = (&'static str, f64, f64, f64, Option<f64>, bool);

/// The safe layer's own cost, measured on the stub driver, against the real driver's raw
/// latency at 2 MiB in the same run: (op, calls, stub raw, stub safe, real raw, within).
fn stub_overheads(run: &Run) -> Vec<StubRow> {
    const OPS: [(&str, f64, &[&str]); 4] = [
        ("reserve_free", 2.0, &["latency/reserve_free/raw/2MiB"]),
        ("create_release", 2.0, &["latency/create_release/raw/2MiB"]),
        (
            "map_unmap",
            2.0,
            &["latency/map/raw/2MiB", "latency/unmap/raw/2MiB"],
        ),
        ("set_access", 1.0, &["latency/set_access/raw/2MiB"]),
    ];
    let mut rows = Vec::new();
    for (op, calls, real_ids) in OPS {
        let (Some(raw), Some(safe)) = (
            run.median(&format!("overhead/{op}/raw")),
            run.median(&format!("overhead/{op}/safe")),
        ) else {
            continue;
        };
        let real: Option<f64> = real_ids.iter().map(|id| run.median(id)).sum();
        let limit = (SAFE_REL * real.unwrap_or(0.0)).max(SAFE_ABS_NS * calls);
        rows.push((op, calls, raw, safe, real, safe - raw <= limit));
    }
    rows
}

/// Growth comparison with `other`: (size, other / growable time) at 16 GiB if both were
/// measured there, else at the largest size both reached.
fn growth_ratio(run: &Run, buffer: &str, other: &str) -> Option<(String, f64)> {
    let both: Vec<(String, f64)> = sizes_under(run, &format!("growth/{buffer}/"))
        .into_iter()
        .filter_map(|size| {
            let growable = run.median(&format!("growth/{buffer}/{size}"))?;
            let other = run.median(&format!("growth/{other}/{size}"))?;
            Some((size, other / growable))
        })
        .collect();
    let at_16 = both.iter().find(|(size, _)| size == "16GiB");
    at_16.or(both.last()).cloned()
}

fn ratio_row(
    s: &mut String,
    target: &str,
    goal: &str,
    ratio: Option<f64>,
    ok: impl Fn(f64) -> bool,
) {
    let measured = ratio.map_or("not measured".to_string(), |r| format!("{}x", fmt_ratio(r)));
    let _ = writeln!(
        s,
        "| {target} | {goal} | {measured} | {} |",
        verdict(ratio.map(ok))
    );
}

fn targets_table(run: &Run, s: &mut String) {
    s.push_str("### Targets\n\n| Target | Goal | Measured | Result |\n|---|---|---|---|\n");

    let overheads = stub_overheads(run);
    if overheads.is_empty() {
        let _ = writeln!(
            s,
            "| Safe-layer overhead per raw call | <= max(2%, 0.1 µs) | not measured | n/a |"
        );
    } else {
        let within = overheads.iter().filter(|r| r.5).count();
        let worst = overheads
            .iter()
            .map(|(op, calls, raw, safe, _, _)| (op, (safe - raw) / calls))
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(op, per_call)| format!("; largest: {op} {} per call", fmt_delta(per_call)))
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "| Safe-layer overhead per raw call (stub driver, see below) | <= max(2%, 0.1 µs) per call | {within}/{} within{worst} | {} |",
            overheads.len(),
            verdict(Some(within == overheads.len()))
        );
    }

    for (buffer, label) in [
        ("growable", "growable"),
        ("growable_pooled", "growable on a warm pool"),
    ] {
        for (other, name, goal, min) in [
            ("realloc", "realloc-doubling", ">= 10x", 10.0),
            ("naive", "naive VMM", ">= 100x", 100.0),
        ] {
            let found = growth_ratio(run, buffer, other);
            let at = found
                .as_ref()
                .map_or("16 GiB".into(), |(size, _)| pretty_size(size));
            let target = format!("Growth to {at}: {name} / {label} time");
            ratio_row(s, &target, goal, found.map(|f| f.1), |r| r >= min);
        }
    }

    let ratios: Vec<f64> = run
        .extra
        .iter()
        .filter(|(k, _)| {
            k.starts_with("growth/growable/") && k.ends_with("/max_commit_ratio_past_1GiB")
        })
        .map(|(_, v)| *v)
        .collect();
    let worst = ratios.iter().copied().reduce(f64::max);
    let measured = worst.map_or("no run past 1 GiB".into(), |r| format!("{r:.3}"));
    let _ = writeln!(
        s,
        "| Growable committed / length past 1 GiB | <= 1.25 | {measured} | {} |",
        verdict(worst.map(|r| r <= 1.25))
    );

    let moved: Vec<f64> = run
        .extra
        .iter()
        .filter(|(k, _)| k.starts_with("growth/growable/") && k.ends_with("/pointer_moved"))
        .map(|(_, v)| *v)
        .collect();
    let stayed = (!moved.is_empty()).then(|| moved.iter().all(|m| *m == 0.0));
    let measured = stayed.map_or(
        "not measured",
        |st| if st { "never moved" } else { "moved" },
    );
    let _ = writeln!(
        s,
        "| Growable pointer never moves | stays put | {measured} | {} |",
        verdict(stayed)
    );

    // Like for like: the raw baseline does not zero-fill, so compare the
    // commit that skips zero-filling (`SparseConfig::uninit_tiles`).
    let tile = run
        .median("sparse/one_tile/pooled_commit_uninit")
        .zip(run.median("sparse/one_tile/raw_map_set_access"))
        .map(|(p, r)| p / r);
    ratio_row(
        s,
        "Pooled sparse commit of one 2 MiB tile (no zero-fill) / raw map + set-access",
        "<= 1.1x",
        tile,
        |r| r <= 1.1,
    );

    let pool = run
        .median("alloc_free/cuMemAlloc/2MiB")
        .zip(run.median("alloc_free/pool/2MiB"))
        .map(|(raw, pool)| raw / pool);
    ratio_row(
        s,
        "cuMemAlloc+cuMemFree / pooled alloc+free of 2 MiB",
        ">= 1.5x",
        pool,
        |r| r >= 1.5,
    );
    s.push('\n');
}

fn overhead_table(run: &Run, s: &mut String) {
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
    for (op, calls, raw, safe, real, ok) in rows {
        let name = match op {
            "map_unmap" => "map + unmap",
            _ => LATENCY_OPS.iter().find(|o| o.0 == op).map_or(op, |o| o.1),
        };
        let limit = (SAFE_REL * real.unwrap_or(0.0)).max(SAFE_ABS_NS * calls) / calls;
        let _ = writeln!(
            s,
            "| {name} | {} | {} | {} | {} | {} | {} |",
            fmt_time(raw),
            fmt_time(safe),
            fmt_delta((safe - raw) / calls),
            real.map_or("-".into(), fmt_time),
            fmt_time(limit),
            if ok { "yes" } else { "**no**" }
        );
    }
    s.push('\n');
}

fn latency_table(run: &Run, s: &mut String, plot: Option<&String>) {
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

fn growth_table(run: &Run, s: &mut String, plot: Option<&String>) {
    let sizes = sizes_under(run, "growth/");
    if sizes.is_empty() {
        return;
    }
    s.push_str("### Growth by 2 MiB appends (median time / peak committed)\n\n| Final size |");
    for (_, name) in GROWTH_STRATEGIES {
        let _ = write!(s, " {name} |");
    }
    s.push_str("\n|---|");
    for _ in GROWTH_STRATEGIES {
        s.push_str("---|");
    }
    s.push('\n');
    for size in &sizes {
        let _ = write!(s, "| {} |", pretty_size(size));
        for (key, _) in GROWTH_STRATEGIES {
            let time = run.median(&format!("growth/{key}/{size}"));
            let peak = run
                .extra
                .get(&format!("growth/{key}/{size}/peak_committed_bytes"));
            let cell = match (time, peak) {
                (Some(t), Some(p)) => format!("{} / {}", fmt_time(t), fmt_bytes(*p)),
                (Some(t), None) => fmt_time(t),
                _ => "skipped".into(),
            };
            let _ = write!(s, " {cell} |");
        }
        s.push('\n');
    }
    if let Some(plot) = plot {
        let _ = writeln!(s, "\n![Growth time vs final size]({plot})");
    }
    s.push('\n');
}

/// Sparse tiles, set-access batching and pooled alloc/free: one table each, a column per
/// variant (ids `PREFIX/VARIANT[/CASE]`) and the ratio of the first two named.
fn misc_tables(run: &Run, s: &mut String) {
    let sections: [(&str, &str, [&str; 2]); 4] = [
        (
            "Sparse commit + decommit of k adjacent random 2 MiB tiles",
            "sparse/commit_decommit/",
            ["unpooled", "pooled"],
        ),
        (
            "One 2 MiB tile",
            "sparse/one_tile/",
            ["pooled_commit_uninit", "raw_map_set_access"],
        ),
        (
            "Set access on contiguous 2 MiB chunks",
            "set_access/",
            ["per_chunk", "per_run"],
        ),
        ("2 MiB alloc + free", "alloc_free/", ["cuMemAlloc", "pool"]),
    ];
    for (title, prefix, [a, b]) in sections {
        // case -> variant -> median
        let mut rows: BTreeMap<(String, u64, &str), BTreeMap<&str, f64>> = BTreeMap::new();
        for (id, v) in &run.medians {
            if let Some(rest) = id.strip_prefix(prefix) {
                let (variant, case) = rest.split_once('/').unwrap_or((rest, "-"));
                rows.entry(natural_key(case))
                    .or_default()
                    .insert(variant, *v);
            }
        }
        if rows.is_empty() {
            continue;
        }
        let mut variants = vec![a, b];
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
        let _ = writeln!(
            s,
            " {a} / {b} |\n|---|{}---|",
            "---|".repeat(variants.len())
        );
        for ((_, _, case), row) in rows {
            let _ = write!(s, "| {case} |");
            for v in &variants {
                let _ = write!(s, " {} |", row.get(v).map_or("-".into(), |t| fmt_time(*t)));
            }
            let ratio = row
                .get(a)
                .zip(row.get(b))
                .map_or("-".into(), |(x, y)| fmt_ratio(x / y));
            let _ = writeln!(s, " {ratio} |");
        }
        s.push('\n');
    }
}

/// Sorts `k4` before `k16`: (text before the number, the number, the whole case).
fn natural_key(case: &str) -> (String, u64, &str) {
    let digits = case
        .find(|c: char| c.is_ascii_digit())
        .unwrap_or(case.len());
    let number: String = case[digits..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    (
        case[..digits].to_string(),
        number.parse().unwrap_or(0),
        case,
    )
}

/// A ratio with three significant digits: `627`, `1.04`, `0.00217`.
fn fmt_ratio(r: f64) -> String {
    match r.abs() {
        x if x >= 100.0 => format!("{r:.0}"),
        x if x >= 10.0 => format!("{r:.1}"),
        x if x >= 1.0 || x == 0.0 => format!("{r:.2}"),
        x => {
            let digits = (2.0 - x.log10().floor()) as usize;
            format!("{r:.digits$}")
        }
    }
}

fn all_medians(run: &Run, s: &mut String) {
    s.push_str("<details><summary>All medians</summary>\n\n| Benchmark | Median |\n|---|---|\n");
    for (id, v) in &run.medians {
        let _ = writeln!(s, "| `{id}` | {} |", fmt_time(*v));
    }
    s.push_str("\n</details>\n\n");
}

/// Replaces the section keyed `key` in `doc`, or appends it.
fn upsert_section(doc: &str, key: &str, section: &str) -> String {
    let begin = format!("<!-- bench-run: {key} -->");
    let end = format!("<!-- end bench-run: {key} -->");
    if let (Some(b), Some(e)) = (doc.find(&begin), doc.find(&end)) {
        if b < e {
            let mut tail = &doc[e + end.len()..];
            tail = tail.strip_prefix('\n').unwrap_or(tail);
            return format!("{}{section}{tail}", &doc[..b]);
        }
    }
    let mut out = doc.trim_end().to_string();
    out.push_str("\n\n");
    out.push_str(section);
    out
}

fn fmt_time(ns: f64) -> String {
    let (v, unit) = match ns.abs() {
        x if x >= 1e9 => (ns / 1e9, "s"),
        x if x >= 1e6 => (ns / 1e6, "ms"),
        x if x >= 1e3 => (ns / 1e3, "µs"),
        _ => (ns, "ns"),
    };
    let digits = if v.abs() >= 100.0 {
        0
    } else if v.abs() >= 10.0 {
        1
    } else {
        2
    };
    format!("{v:.digits$} {unit}")
}

fn fmt_delta(ns: f64) -> String {
    let sign = if ns < 0.0 { "-" } else { "+" };
    format!("{sign}{}", fmt_time(ns.abs()))
}

fn fmt_bytes(bytes: f64) -> String {
    let units = [("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)];
    for (unit, shift) in units {
        let scale = (1u64 << shift) as f64;
        if bytes >= scale {
            let v = bytes / scale;
            return if v.fract() == 0.0 {
                format!("{v:.0} {unit}")
            } else {
                format!("{v:.2} {unit}")
            };
        }
    }
    format!("{bytes:.0} B")
}

/// `"2MiB"` -> `"2 MiB"`.
fn pretty_size(s: &str) -> String {
    parse_size(s).map_or(s.to_string(), |b| fmt_bytes(b as f64))
}

// ---------------------------------------------------------------------------------------------
// Plots

const COLORS: &[&str] = &[
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

fn latency_plot(run: &Run) -> Option<String> {
    let mut series = Vec::new();
    let singles = LATENCY_OPS.iter().filter(|o| o.2 == 1.0);
    for (i, &(op, name, _)) in singles.enumerate() {
        for layer in ["raw", "safe"] {
            let points: Vec<(f64, f64)> = sizes_under(run, &format!("latency/{op}/{layer}/"))
                .iter()
                .filter_map(|size| {
                    let t = run.median(&format!("latency/{op}/{layer}/{size}"))?;
                    Some((parse_size(size)? as f64, t))
                })
                .collect();
            if !points.is_empty() {
                series.push(svg::Series {
                    name: format!("{name} ({layer})"),
                    points,
                    color: COLORS[i % COLORS.len()],
                    dashed: layer == "safe",
                });
            }
        }
    }
    let title = format!("Latency per entry point, {}", run.meta.gpu);
    svg::log_log(&title, "chunk size", "median latency", &series)
}

fn growth_plot(run: &Run) -> Option<String> {
    let series: Vec<svg::Series> = GROWTH_STRATEGIES
        .iter()
        .enumerate()
        .map(|(i, (key, name))| svg::Series {
            name: name.to_string(),
            points: sizes_under(run, &format!("growth/{key}/"))
                .iter()
                .filter_map(|size| {
                    let t = run.median(&format!("growth/{key}/{size}"))?;
                    Some((parse_size(size)? as f64, t))
                })
                .collect(),
            color: COLORS[i % COLORS.len()],
            dashed: false,
        })
        .filter(|s| !s.points.is_empty())
        .collect();
    let title = format!("Growth by 2 MiB appends, {}", run.meta.gpu);
    svg::log_log(&title, "final size", "median time", &series)
}

/// A minimal SVG writer: log-log line plots with a legend.
mod svg {
    use std::fmt::Write as _;

    /// One line of a plot: x in bytes, y in nanoseconds.
    pub struct Series {
        pub name: String,
        pub points: Vec<(f64, f64)>,
        pub color: &'static str,
        pub dashed: bool,
    }

    const WIDTH: f64 = 760.0;
    const HEIGHT: f64 = 440.0;
    const LEFT: f64 = 80.0;
    const RIGHT: f64 = 240.0;
    const TOP: f64 = 40.0;
    const BOTTOM: f64 = 50.0;

    /// Log-log plot; x ticks at the measured sizes, y ticks at powers of ten.
    /// `None` when there is nothing positive to draw.
    pub fn log_log(title: &str, x_label: &str, y_label: &str, series: &[Series]) -> Option<String> {
        let points = || {
            series
                .iter()
                .flat_map(|s| s.points.iter())
                .filter(|p| p.0 > 0.0 && p.1 > 0.0)
        };
        let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
        for &(x, y) in points() {
            x0 = x0.min(x.log10());
            x1 = x1.max(x.log10());
            y0 = y0.min(y.log10());
            y1 = y1.max(y.log10());
        }
        if x0 > x1 {
            return None;
        }
        // Pad x a little, snap y to whole decades.
        let pad = ((x1 - x0) * 0.05).max(0.1);
        let (x0, x1) = (x0 - pad, x1 + pad);
        let (y0, y1) = (y0.floor(), y1.ceil().max(y0.floor() + 1.0));
        let (pw, ph) = (WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM);
        let px = |x: f64| LEFT + (x.log10() - x0) / (x1 - x0) * pw;
        let py = |y: f64| TOP + ph - (y.log10() - y0) / (y1 - y0) * ph;

        let mut s = String::new();
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(
            s,
            r#"<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>"#
        );
        let _ = writeln!(
            s,
            r#"<text x="{}" y="22" text-anchor="middle" font-size="15">{}</text>"#,
            LEFT + pw / 2.0,
            escape(title)
        );
        // Grid and ticks.
        let mut xs: Vec<f64> = points().map(|p| p.0).collect();
        xs.sort_by(f64::total_cmp);
        xs.dedup();
        let mut last_label = f64::MIN;
        for x in xs {
            let gx = px(x);
            let _ = writeln!(
                s,
                r##"<line x1="{gx:.1}" y1="{TOP}" x2="{gx:.1}" y2="{:.1}" stroke="#ddd"/>"##,
                TOP + ph
            );
            // Label every grid line that is not crowding the previous label.
            if gx - last_label >= 56.0 {
                last_label = gx;
                let _ = writeln!(
                    s,
                    r#"<text x="{gx:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
                    TOP + ph + 16.0,
                    escape(&super::fmt_bytes(x))
                );
            }
        }
        let mut decade = y0;
        while decade <= y1 {
            let y = 10f64.powf(decade);
            let gy = py(y);
            let _ = writeln!(
                s,
                r##"<line x1="{LEFT}" y1="{gy:.1}" x2="{:.1}" y2="{gy:.1}" stroke="#ddd"/>"##,
                LEFT + pw
            );
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
                LEFT - 6.0,
                gy + 4.0,
                escape(&super::fmt_time(y).replace(".00 ", " ").replace(".0 ", " "))
            );
            decade += 1.0;
        }
        let _ = writeln!(
            s,
            r#"<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="black"/>"#
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{} (log)</text>"#,
            LEFT + pw / 2.0,
            HEIGHT - 12.0,
            escape(x_label)
        );
        let _ = writeln!(
            s,
            r#"<text x="16" y="{:.1}" text-anchor="middle" transform="rotate(-90 16 {:.1})">{} (log)</text>"#,
            TOP + ph / 2.0,
            TOP + ph / 2.0,
            escape(y_label)
        );
        // Lines, markers, legend.
        for (i, ser) in series.iter().enumerate() {
            let dash = if ser.dashed {
                r#" stroke-dasharray="6 4""#
            } else {
                ""
            };
            let pts: Vec<String> = ser
                .points
                .iter()
                .filter(|p| p.0 > 0.0 && p.1 > 0.0)
                .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y)))
                .collect();
            let _ = writeln!(
                s,
                r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="2"{dash}/>"#,
                pts.join(" "),
                ser.color
            );
            for p in &pts {
                let (cx, cy) = p.split_once(',').unwrap_or(("0", "0"));
                let _ = writeln!(
                    s,
                    r#"<circle cx="{cx}" cy="{cy}" r="3" fill="{}"/>"#,
                    ser.color
                );
            }
            let ly = TOP + 10.0 + 18.0 * i as f64;
            let lx = LEFT + pw + 14.0;
            let _ = writeln!(
                s,
                r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{}" stroke-width="2"{dash}/>"#,
                lx + 24.0,
                ser.color
            );
            let _ = writeln!(
                s,
                r#"<text x="{}" y="{}">{}</text>"#,
                lx + 30.0,
                ly + 4.0,
                escape(&ser.name)
            );
        }
        s.push_str("</svg>\n");
        Some(s)
    }

    fn escape(text: &str) -> String {
        text.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    }
}

/// Just enough JSON to read criterion's output and our side files.
mod json {
    /// A parsed JSON value; objects keep their field order.
    #[derive(Debug, Clone, PartialEq)]
    pub enum Value {
        Null,
        Bool(bool),
        Number(f64),
        String(String),
        Array(Vec<Value>),
        Object(Vec<(String, Value)>),
    }

    impl Value {
        pub fn get(&self, key: &str) -> Option<&Value> {
            match self {
                Value::Object(fields) => fields.iter().find(|(k, _)| k == key).map(|(_, v)| v),
                _ => None,
            }
        }
        pub fn as_f64(&self) -> Option<f64> {
            match self {
                Value::Number(n) => Some(*n),
                _ => None,
            }
        }
        pub fn as_str(&self) -> Option<&str> {
            match self {
                Value::String(s) => Some(s),
                _ => None,
            }
        }
        pub fn as_bool(&self) -> Option<bool> {
            match self {
                Value::Bool(b) => Some(*b),
                _ => None,
            }
        }
        /// The string field `key`, or `default`.
        pub fn str_or(&self, key: &str, default: &str) -> String {
            self.get(key)
                .and_then(Value::as_str)
                .unwrap_or(default)
                .to_string()
        }
    }

    /// Parses one JSON document.
    pub fn parse(text: &str) -> Result<Value, String> {
        let mut p = Parser {
            text: text.as_bytes(),
            pos: 0,
        };
        let v = p.value()?;
        p.skip_ws();
        if p.pos != p.text.len() {
            return Err(p.error("trailing characters"));
        }
        Ok(v)
    }

    struct Parser<'a> {
        text: &'a [u8],
        pos: usize,
    }

    impl Parser<'_> {
        fn error(&self, what: &str) -> String {
            format!("invalid JSON at byte {}: {what}", self.pos)
        }

        fn skip_ws(&mut self) {
            while self.text.get(self.pos).is_some_and(u8::is_ascii_whitespace) {
                self.pos += 1;
            }
        }

        fn peek(&mut self) -> Option<u8> {
            self.skip_ws();
            self.text.get(self.pos).copied()
        }

        fn expect(&mut self, byte: u8) -> Result<(), String> {
            if self.peek() == Some(byte) {
                self.pos += 1;
                Ok(())
            } else {
                Err(self.error(&format!("expected `{}`", byte as char)))
            }
        }

        fn literal(&mut self, word: &str, v: Value) -> Result<Value, String> {
            if self.text[self.pos..].starts_with(word.as_bytes()) {
                self.pos += word.len();
                Ok(v)
            } else {
                Err(self.error("unknown literal"))
            }
        }

        fn value(&mut self) -> Result<Value, String> {
            match self.peek() {
                Some(b'{') => self.object(),
                Some(b'[') => self.array(),
                Some(b'"') => self.string().map(Value::String),
                Some(b't') => self.literal("true", Value::Bool(true)),
                Some(b'f') => self.literal("false", Value::Bool(false)),
                Some(b'n') => self.literal("null", Value::Null),
                Some(b'-' | b'0'..=b'9') => self.number(),
                _ => Err(self.error("expected a value")),
            }
        }

        fn object(&mut self) -> Result<Value, String> {
            self.expect(b'{')?;
            let mut fields = Vec::new();
            if self.peek() == Some(b'}') {
                self.pos += 1;
                return Ok(Value::Object(fields));
            }
            loop {
                if self.peek() != Some(b'"') {
                    return Err(self.error("expected a field name"));
                }
                let key = self.string()?;
                self.expect(b':')?;
                fields.push((key, self.value()?));
                match self.peek() {
                    Some(b',') => self.pos += 1,
                    Some(b'}') => {
                        self.pos += 1;
                        return Ok(Value::Object(fields));
                    }
                    _ => return Err(self.error("expected `,` or `}`")),
                }
            }
        }

        fn array(&mut self) -> Result<Value, String> {
            self.expect(b'[')?;
            let mut items = Vec::new();
            if self.peek() == Some(b']') {
                self.pos += 1;
                return Ok(Value::Array(items));
            }
            loop {
                items.push(self.value()?);
                match self.peek() {
                    Some(b',') => self.pos += 1,
                    Some(b']') => {
                        self.pos += 1;
                        return Ok(Value::Array(items));
                    }
                    _ => return Err(self.error("expected `,` or `]`")),
                }
            }
        }

        fn number(&mut self) -> Result<Value, String> {
            let start = self.pos;
            while self.text.get(self.pos).is_some_and(|b| {
                b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E')
            }) {
                self.pos += 1;
            }
            let s = std::str::from_utf8(&self.text[start..self.pos])
                .map_err(|_| self.error("bad number"))?;
            s.parse()
                .map(Value::Number)
                .map_err(|_| self.error(&format!("bad number `{s}`")))
        }

        fn hex4(&mut self) -> Result<u32, String> {
            let digits = self
                .text
                .get(self.pos..self.pos + 4)
                .ok_or_else(|| self.error("short \\u escape"))?;
            let s = std::str::from_utf8(digits).map_err(|_| self.error("bad \\u escape"))?;
            let v = u32::from_str_radix(s, 16).map_err(|_| self.error("bad \\u escape"))?;
            self.pos += 4;
            Ok(v)
        }

        fn string(&mut self) -> Result<String, String> {
            self.expect(b'"')?;
            let mut out = Vec::new();
            loop {
                let byte = *self
                    .text
                    .get(self.pos)
                    .ok_or_else(|| self.error("unterminated string"))?;
                self.pos += 1;
                match byte {
                    b'"' => break,
                    b'\\' => {
                        let esc = *self
                            .text
                            .get(self.pos)
                            .ok_or_else(|| self.error("unterminated escape"))?;
                        self.pos += 1;
                        let c = match esc {
                            b'"' => '"',
                            b'\\' => '\\',
                            b'/' => '/',
                            b'b' => '\u{8}',
                            b'f' => '\u{c}',
                            b'n' => '\n',
                            b'r' => '\r',
                            b't' => '\t',
                            b'u' => {
                                let mut code = self.hex4()?;
                                if (0xD800..0xDC00).contains(&code)
                                    && self.text[self.pos..].starts_with(b"\\u")
                                {
                                    self.pos += 2;
                                    let low = self.hex4()?;
                                    code = 0x10000
                                        + ((code - 0xD800) << 10)
                                        + (low.wrapping_sub(0xDC00) & 0x3FF);
                                }
                                char::from_u32(code).unwrap_or('\u{FFFD}')
                            }
                            _ => return Err(self.error("unknown escape")),
                        };
                        let mut buf = [0u8; 4];
                        out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                    }
                    b => out.push(b),
                }
            }
            String::from_utf8(out).map_err(|_| self.error("string is not UTF-8"))
        }
    }
}

#[cfg(test)]
mod tests {
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

    /// Writes a criterion-shaped benchmark directory (mangled name, real id in benchmark.json).
    fn bench(root: &Path, id: &str, median_ns: f64) {
        let dir = root.join(id.replace('/', "_")).join("new");
        std::fs::create_dir_all(&dir).unwrap();
        let est = format!(
            r#"{{"mean":{{"confidence_interval":{{"confidence_level":0.95,"lower_bound":1.0,"upper_bound":2.0}},"point_estimate":{m},"standard_error":0.5}},"median":{{"confidence_interval":{{"confidence_level":0.95,"lower_bound":1.0,"upper_bound":2.0}},"point_estimate":{median_ns},"standard_error":0.1}},"slope":null}}"#,
            m = median_ns * 1.1
        );
        std::fs::write(dir.join("estimates.json"), est).unwrap();
        let (group, rest) = id.rsplit_once('/').unwrap();
        let b = format!(
            r#"{{"group_id":"{group}","function_id":null,"value_str":"{rest}","throughput":null,"full_id":"{id}","directory_name":"x","title":"{id}"}}"#
        );
        std::fs::write(dir.join("benchmark.json"), b).unwrap();
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
        bench(root, "sparse/one_tile/pooled_commit", 30_000.0);
        bench(root, "sparse/one_tile/pooled_commit_uninit", 26_000.0);
        bench(root, "sparse/one_tile/raw_map_set_access", 25_000.0);
        bench(root, "alloc_free/pool/2MiB", 1_000.0);
        bench(root, "alloc_free/cuMemAlloc/2MiB", 3_000.0);
        bench(root, "alloc_free/pool_mapped/2MiB", 30_000.0);
        let meta = format!(
            r#"{{"gpu": "NVIDIA H100 80GB HBM3", "backend": "real driver", "cuda_driver": "13.0", "kernel_driver": "580.65.06", "date": "{date}", "quick": false, "started_unix": {started}}}"#,
            started = now_secs() - 10
        );
        std::fs::write(root.join(RUN_FILE), meta).unwrap();
        let extra = r#"{"growth/growable/2GiB/max_commit_ratio_past_1GiB": 1.125, "growth/growable/2GiB/pointer_moved": 0, "growth/growable/256MiB/peak_committed_bytes": 268435456}"#;
        std::fs::write(root.join(EXTRA_FILE), extra).unwrap();
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
        assert!(doc.contains(
            "| cuMemSetAccess | 5.00 ns | 55.0 ns | +50.0 ns | 25.0 µs | 500 ns | yes |"
        ));
        assert!(doc.contains(
            "| Growth to 256 MiB: realloc-doubling / growable time | >= 10x | 20.0x | pass |"
        ));
        assert!(doc.contains("| 256 MiB | 1.00 ms / 256 MiB | skipped | 20.0 ms | 50.0 ms |"));
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

        let svg = std::fs::read_to_string(
            dir.join("docs/bench/nvidia-h100-80gb-hbm3-2025-01-02/growth.svg"),
        )
        .unwrap();
        assert!(svg.starts_with("<svg"));
        assert_eq!(svg.matches("<polyline").count(), 3);
        assert!(svg.contains(">256 MiB</text>"));

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
        targets_table(&run, &mut s);
        assert!(
            s.contains(
                "| Growth to 16 GiB: realloc-doubling / growable time | >= 10x | 15.0x | pass |"
            ),
            "{s}"
        );
        assert!(
            s.contains(
                "| Growth to 16 GiB: naive VMM / growable time | >= 100x | 50.0x | **miss** |"
            ),
            "{s}"
        );
        assert!(s.contains(
            "| Safe-layer overhead per raw call | <= max(2%, 0.1 µs) | not measured | n/a |"
        ));
    }

    #[test]
    fn missing_directory_is_a_clear_error() {
        let err = Run::load(Path::new("/nonexistent/criterion"), false).unwrap_err();
        assert!(
            err.contains("/nonexistent/criterion is not a directory"),
            "{err}"
        );
        let dir = scratch("empty");
        let err = Run::load(&dir, false).unwrap_err();
        assert!(err.starts_with("no criterion estimates"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn json_values() {
        let v = json::parse(
            r#" {"a": [1, -2.5e3, true, null], "b": "x\"\u00e9\ud83d\ude00\n", "c": {}} "#,
        )
        .unwrap();
        assert_eq!(
            v.get("a"),
            Some(&json::Value::Array(vec![
                json::Value::Number(1.0),
                json::Value::Number(-2500.0),
                json::Value::Bool(true),
                json::Value::Null
            ]))
        );
        assert_eq!(v.get("b").and_then(json::Value::as_str), Some("x\"é😀\n"));
        assert_eq!(v.get("c"), Some(&json::Value::Object(vec![])));
        assert_eq!(
            json::parse("[1,]").unwrap_err(),
            "invalid JSON at byte 3: expected a value"
        );
        assert_eq!(
            json::parse("{} x").unwrap_err(),
            "invalid JSON at byte 3: trailing characters"
        );
    }

    #[test]
    fn sizes_and_times() {
        assert_eq!(parse_size("2MiB"), Some(2 << 20));
        assert_eq!(parse_size("16GiB"), Some(16 << 30));
        assert_eq!(parse_size("k4"), None);
        assert_eq!(fmt_time(850.0), "850 ns");
        assert_eq!(fmt_time(12_345.0), "12.3 µs");
        assert_eq!(fmt_time(4_560_000.0), "4.56 ms");
        assert_eq!(fmt_bytes(1.5 * (1u64 << 30) as f64), "1.50 GiB");
        assert_eq!(fmt_ratio(627.58), "628");
        assert_eq!(fmt_ratio(1.04), "1.04");
        assert_eq!(fmt_ratio(0.002173), "0.00217");
        let mut cases = vec!["k16", "k1", "k4", "-"];
        cases.sort_by_key(|c| natural_key(c));
        assert_eq!(cases, ["-", "k1", "k4", "k16"]);
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
}
