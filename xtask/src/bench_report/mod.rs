//! `cargo xtask bench-report [--criterion DIR] [--out FILE] [--include-stale] [--readme FILE |
//! --no-readme]`: turns the latest criterion run of `cuda-vmm-benches` into a section of
//! `BENCHMARKS.md` plus two SVG plots, and rewrites the README's performance table.
//!
//! Inputs, all under the criterion directory (default `target/criterion`), read with serde:
//! - `**/new/estimates.json` + `benchmark.json`: the median of every benchmark, keyed by its
//!   criterion id (e.g. `latency/map/raw/2MiB`);
//! - `cuda-vmm-run.json`: the run's metadata (GPU, driver versions, date, start time), written by
//!   the benches; estimates older than its `started_unix` are left-overs of earlier runs and are
//!   skipped unless `--include-stale`;
//! - `cuda-vmm-extra.json`: `{"key": number}` side measurements (peak committed memory...).
//!
//! The section is keyed by GPU + date: re-running replaces it, another GPU or day appends one.
//! It starts with the targets (issue 11's and the earlier ones), each with its verdict; the
//! same targets replace the table between `<!-- perf-table:start -->` and
//! `<!-- perf-table:end -->` in the README (default the workspace's `README.md`, except for a
//! quick or simulator run, which writes the README only when `--readme FILE` names it).
//! `cargo bench` itself writes criterion's HTML report (`target/criterion/report/index.html`).

mod format;
mod growth;
mod load;
mod plots;
mod prefetch;
mod readme;
mod tables;
mod targets;
mod teardown;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use format::parse_size;
use load::Run;

/// Where the SVG plots go, relative to the report's directory.
const PLOT_DIR: &str = "docs/bench";

const DOC_HEADER: &str = "# Benchmarks

Medians measured by `cargo bench -p cuda-vmm-benches` and written here by
`cargo xtask bench-report` (one section per GPU and date; re-running replaces that section).
See `benches/src/lib.rs` for the benchmark names and sizes. `cargo bench` also writes
criterion's HTML report, with plots, to `target/criterion/report/index.html`.
";

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
const SAFE_ABS_NS: f64 = 100.0;
const SAFE_REL: f64 = 0.02;

/// Where the README's performance table goes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ReadmeChoice {
    /// The workspace README, unless the run is quick or on the simulator.
    Default,
    /// This file, whatever the run.
    File(PathBuf),
    /// Nowhere (`--no-readme`).
    Skip,
}

/// What `cargo xtask bench-report [--criterion DIR] [--out FILE] [--include-stale]
/// [--readme FILE | --no-readme]` was asked.
#[derive(Debug, PartialEq, Eq)]
struct Options {
    criterion: Option<PathBuf>,
    out: Option<PathBuf>,
    include_stale: bool,
    readme: ReadmeChoice,
}

impl Options {
    fn parse(args: &mut lexopt::Parser) -> Result<Options, String> {
        let mut options = Options {
            criterion: None,
            out: None,
            include_stale: false,
            readme: ReadmeChoice::Default,
        };
        let value = |args: &mut lexopt::Parser, flag, needs| {
            crate::flag_value(args, flag, "bench-report", needs)
        };
        while let Some(arg) = args
            .next()
            .map_err(|e| crate::argument_error(e, "bench-report"))?
        {
            match arg {
                lexopt::Arg::Long("criterion") => {
                    options.criterion = Some(value(args, "criterion", "a directory")?.into());
                }
                lexopt::Arg::Long("include-stale") => options.include_stale = true,
                lexopt::Arg::Long("out") => {
                    options.out = Some(value(args, "out", "a file name")?.into());
                }
                lexopt::Arg::Long("readme") => {
                    options.readme =
                        ReadmeChoice::File(value(args, "readme", "a file name")?.into());
                }
                lexopt::Arg::Long("no-readme") => options.readme = ReadmeChoice::Skip,
                other => return Err(crate::unknown_argument(&other, "bench-report")),
            }
        }
        Ok(options)
    }
}

pub fn run(args: &mut lexopt::Parser) -> Result<(), String> {
    let Options {
        criterion,
        out,
        include_stale,
        readme,
    } = Options::parse(args)?;
    let criterion = criterion.unwrap_or_else(default_criterion_dir);
    let out = out.unwrap_or_else(|| workspace_root().join("BENCHMARKS.md"));
    let written = generate(&criterion, &out, include_stale, &readme)?;
    for path in written {
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// Reads the run under `criterion`, writes its plots, upserts its section in `out` and
/// rewrites the README's table as `readme` says. Returns the files written.
fn generate(
    criterion: &Path,
    out: &Path,
    include_stale: bool,
    readme: &ReadmeChoice,
) -> Result<Vec<PathBuf>, String> {
    let run = Run::load(criterion, include_stale)?;
    // Check the README before writing anything, so that missing markers leave no half-done
    // report behind.
    let readme = readme_path(readme, &run);
    let readme_text = match &readme {
        Some(path) => {
            let doc = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            Some(readme::replace_table(
                &doc,
                &readme::perf_table(&run),
                path,
            )?)
        }
        None => None,
    };

    let base = out.parent().map(Path::to_path_buf).unwrap_or_default();
    let plot_rel = format!("{PLOT_DIR}/{}", run.meta.slug());
    let plot_dir = base.join(&plot_rel);
    std::fs::create_dir_all(&plot_dir)
        .map_err(|e| format!("cannot create {}: {e}", plot_dir.display()))?;

    let mut written = Vec::new();
    let mut plots = BTreeMap::new();
    for (name, svg) in [
        ("latency.svg", plots::latency_plot(&run)?),
        ("growth.svg", plots::growth_plot(&run)?),
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
    if let (Some(path), Some(text)) = (readme, readme_text) {
        std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

/// The README to rewrite for `run`: the workspace's unless the run is quick or on the
/// simulator (said on stderr), the file named, or none.
fn readme_path(choice: &ReadmeChoice, run: &Run) -> Option<PathBuf> {
    match choice {
        ReadmeChoice::Skip => None,
        ReadmeChoice::File(path) => Some(path.clone()),
        ReadmeChoice::Default if run.meta.quick || run.meta.backend.contains("simulator") => {
            eprintln!(
                "not rewriting README.md: a quick or simulator run (pass --readme FILE to \
                 write one anyway)"
            );
            None
        }
        ReadmeChoice::Default => Some(workspace_root().join("README.md")),
    }
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

/// One stub-driver overhead pair against the real driver's raw latency at 2 MiB.
struct StubRow {
    op: &'static str,
    calls: f64,
    raw: f64,
    safe: f64,
    real: Option<f64>,
    within: bool,
}

/// The safe layer's own cost, measured on the stub driver, against the real driver's raw
/// latency at 2 MiB in the same run.
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
        rows.push(StubRow {
            op,
            calls,
            raw,
            safe,
            real,
            within: safe - raw <= limit,
        });
    }
    rows
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
    targets::targets_table(run, &mut s);
    tables::overhead_table(run, &mut s);
    tables::latency_table(run, &mut s, plots.get("latency.svg"));
    growth::growth_table(run, &mut s, plots.get("growth.svg"));
    growth::regimes_table(run, &mut s);
    growth::create_probe_table(run, &mut s);
    prefetch::prefetch_table(run, &mut s);
    teardown::zero_holes_tables(run, &mut s);
    teardown::teardown_table(run, &mut s);
    tables::group_tables(run, &mut s);
    tables::all_medians(run, &mut s);
    let _ = writeln!(s, "<!-- end bench-run: {} -->", meta.key());
    s
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

#[cfg(test)]
mod tests;
