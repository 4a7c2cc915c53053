//! Side files next to criterion's output, read by `cargo xtask bench-report`.
//!
//! Both are JSON objects with one `"key": value` field per line, so they can be merged without
//! a JSON library. A *session* is one `cargo bench` invocation (the bench binaries share their
//! parent process), or the binaries run with one `CUDA_VMM_BENCH_SESSION` value: the first
//! binary of a session starts `cuda-vmm-run.json` afresh and clears `cuda-vmm-extra.json`; the
//! report ignores estimates older than the session's start.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::Env;

const RUN_FILE: &str = "cuda-vmm-run.json";
const EXTRA_FILE: &str = "cuda-vmm-extra.json";
/// Set to the same value for bench binaries run by separate commands that form one run.
const SESSION_ENV: &str = "CUDA_VMM_BENCH_SESSION";

/// Where criterion writes, by criterion's own rules: `$CRITERION_HOME`, else
/// `$CARGO_TARGET_DIR/criterion`, else (run by cargo) the workspace's `target/criterion`, else
/// (binary run directly, e.g. on a GPU machine without Rust) `target/criterion` in the current
/// directory.
pub fn criterion_dir() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return home.into();
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(target).join("criterion");
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent();
    match workspace {
        Some(root) if std::env::var_os("CARGO").is_some() => root.join("target/criterion"),
        _ => PathBuf::from("target/criterion"),
    }
}

/// Records a side measurement (e.g. `growth/growable/16GiB/peak_committed_bytes`) for the
/// report. Does nothing under `cargo test --benches`.
pub fn record_extra(key: &str, value: f64) {
    if crate::env().test_mode {
        return;
    }
    let path = criterion_dir().join(EXTRA_FILE);
    let mut fields = read_fields(&path);
    fields.insert(key.to_string(), format!("{value}"));
    write_fields(&path, &fields);
}

/// Writes `cuda-vmm-run.json` for this process; a new session also clears the extra file.
pub(crate) fn write_run_meta(env: &Env) {
    let dir = criterion_dir();
    let path = dir.join(RUN_FILE);
    let session = quote(&session_id());
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let old = read_fields(&path);
    let same_session = old.get("session") == Some(&session);
    let started = match old.get("started_unix").and_then(|s| s.parse::<u64>().ok()) {
        Some(t) if same_session && now.saturating_sub(t) < 24 * 3600 => t,
        _ => {
            let _ = std::fs::remove_file(dir.join(EXTRA_FILE));
            now
        }
    };
    let gpu = env
        .device
        .name()
        .unwrap_or_else(|e| format!("unknown device ({e})"));
    let cuda_driver = env
        .cuda
        .driver_version()
        .map_or_else(|e| format!("unknown ({e})"), |v| v.to_string());
    let mut fields = BTreeMap::new();
    fields.insert("gpu".to_string(), quote(&gpu));
    fields.insert(
        "backend".to_string(),
        quote(&env.cuda.backend().to_string()),
    );
    fields.insert("cuda_driver".to_string(), quote(&cuda_driver));
    fields.insert("kernel_driver".to_string(), quote(&kernel_driver(env)));
    fields.insert("date".to_string(), quote(&utc_date(started)));
    fields.insert("quick".to_string(), env.quick.to_string());
    fields.insert("session".to_string(), session);
    fields.insert("started_unix".to_string(), started.to_string());
    write_fields(&path, &fields);
}

/// The session id: `$CUDA_VMM_BENCH_SESSION` if set (to join bench binaries run by separate
/// commands into one run), else the parent process (`cargo bench` or a script).
fn session_id() -> String {
    if let Ok(session) = std::env::var(SESSION_ENV) {
        return format!("env:{session}");
    }
    #[cfg(unix)]
    let parent = std::os::unix::process::parent_id();
    #[cfg(not(unix))]
    let parent = 0;
    format!("ppid:{parent}")
}

/// The NVIDIA kernel module version (e.g. `580.65.06`), or the backend's name.
fn kernel_driver(env: &Env) -> String {
    if env.cuda.backend() == cuda_vmm::Backend::Simulator {
        return "none (simulator)".into();
    }
    let text = std::fs::read_to_string("/proc/driver/nvidia/version").unwrap_or_default();
    // "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.159.04  Release Build ..."
    text.split_once("Kernel Module")
        .and_then(|(_, rest)| {
            rest.split_whitespace()
                .find(|w| w.starts_with(|c: char| c.is_ascii_digit()) && w.contains('.'))
        })
        .unwrap_or("unknown")
        .to_string()
}

/// `YYYY-MM-DD` (UTC) of a Unix time.
fn utc_date(unix_secs: u64) -> String {
    // Days to civil date (proleptic Gregorian), after Howard Hinnant's algorithm.
    let z = (unix_secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Reads a file written by [`write_fields`]: key -> raw JSON value text.
fn read_fields(path: &Path) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let line = line.trim().trim_end_matches(',');
            let (key, value) = line.split_once("\": ")?;
            Some((key.strip_prefix('"')?.to_string(), value.to_string()))
        })
        .collect()
}

fn write_fields(path: &Path, fields: &BTreeMap<String, String>) {
    let body: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("  {}: {v}", quote(k)))
        .collect();
    let text = format!("{{\n{}\n}}\n", body.join(",\n"));
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    if let Err(e) = std::fs::write(path, text) {
        eprintln!("cuda-vmm benches: cannot write {}: {e}", path.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(utc_date(0), "1970-01-01");
        assert_eq!(utc_date(951_782_400), "2000-02-29");
        assert_eq!(utc_date(1_735_689_599), "2024-12-31");
    }

    #[test]
    fn fields_round_trip() {
        let path = std::env::temp_dir().join(format!("cuda-vmm-side-{}.json", std::process::id()));
        let mut fields = BTreeMap::new();
        fields.insert("gpu".to_string(), quote("NVIDIA \"H100\""));
        fields.insert(
            "growth/naive/2GiB/peak_committed_bytes".to_string(),
            "2147483648".to_string(),
        );
        write_fields(&path, &fields);
        assert_eq!(read_fields(&path), fields);
        std::fs::remove_file(&path).expect("remove scratch file");
    }
}
