//! Reading one criterion run: `**/new/estimates.json` + `benchmark.json` (criterion's own
//! files, through serde) and the benches' side files `cuda-vmm-run.json` / `cuda-vmm-extra.json`.

use std::collections::BTreeMap;
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Deserialize;

/// File (in the criterion directory) holding the run's metadata.
pub const RUN_FILE: &str = "cuda-vmm-run.json";
/// File (in the criterion directory) holding side measurements.
pub const EXTRA_FILE: &str = "cuda-vmm-extra.json";

/// Metadata of one benchmark run (`cuda-vmm-run.json`, written by `benches/src/side.rs`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Meta {
    pub gpu: String,
    pub backend: String,
    pub cuda_driver: String,
    pub kernel_driver: String,
    pub date: String,
    pub quick: bool,
    pub note: String,
    /// Unix seconds the run (session) started.
    pub started_unix: Option<f64>,
}

impl Default for Meta {
    fn default() -> Self {
        Meta {
            gpu: "unknown device".into(),
            backend: "unknown backend".into(),
            cuda_driver: "unknown".into(),
            kernel_driver: "unknown".into(),
            date: "unknown date".into(),
            quick: false,
            note: String::new(),
            started_unix: None,
        }
    }
}

impl Meta {
    /// The section key: GPU and date.
    pub fn key(&self) -> String {
        format!("{} @ {}", self.gpu, self.date).replace("--", "-")
    }

    /// The key as a file-name slug: `nvidia-h200-2026-11-21`.
    pub fn slug(&self) -> String {
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
pub struct Run {
    pub meta: Meta,
    pub medians: BTreeMap<String, f64>,
    pub extra: BTreeMap<String, f64>,
}

/// The part of criterion's `estimates.json` the report uses.
#[derive(Deserialize)]
struct Estimates {
    median: Estimate,
}

#[derive(Deserialize)]
struct Estimate {
    point_estimate: f64,
}

/// The part of criterion's `benchmark.json` the report uses.
#[derive(Deserialize)]
struct BenchmarkId {
    full_id: String,
}

impl Run {
    /// Loads the run in `dir`; unless `include_stale`, estimates written before the session
    /// in `cuda-vmm-run.json` started (left over from earlier runs) are ignored.
    pub fn load(dir: &Path, include_stale: bool) -> Result<Run, String> {
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
        let meta = match read_json::<Meta>(&dir.join(RUN_FILE))? {
            Some(meta) => meta,
            None => {
                eprintln!(
                    "warning: no {RUN_FILE} in {}; GPU and date unknown",
                    dir.display()
                );
                Meta::default()
            }
        };
        let medians = fresh_medians(found, meta.started_unix, include_stale)?;
        let extra = read_json(&dir.join(EXTRA_FILE))?.unwrap_or_default();
        Ok(Run {
            meta,
            medians,
            extra,
        })
    }

    /// The median of `id` in nanoseconds, if it was measured.
    pub fn median(&self, id: &str) -> Option<f64> {
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

/// Parses the JSON file at `path` as `T`; `None` if there is no such file.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text)
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
        if let Some(est) = read_json::<Estimates>(&estimates)? {
            let id = match read_json::<BenchmarkId>(&path.join("new/benchmark.json"))? {
                Some(b) => b.full_id,
                None => {
                    let rel = path.strip_prefix(root).unwrap_or(&path);
                    rel.to_string_lossy().replace('\\', "/")
                }
            };
            let written = std::fs::metadata(&estimates)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0.0, |d| d.as_secs_f64());
            out.insert(id, (est.median.point_estimate, written));
        }
        collect_estimates(root, &path, out)?;
    }
    Ok(())
}
