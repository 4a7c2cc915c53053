//! Side files next to criterion's output, read by `cargo xtask bench-report`: JSON written
//! and read with serde.
//!
//! - `cuda-vmm-run.json`: the run's metadata ([`RunMeta`]);
//! - `cuda-vmm-extra.json`: `{"key": number}` side measurements ([`record_extra`]).
//!
//! A *session* is one `cargo bench` invocation (the bench binaries share their parent
//! process), or the binaries run with one `CUDA_VMM_BENCH_SESSION` value: the first binary of
//! a session starts `cuda-vmm-run.json` afresh and clears `cuda-vmm-extra.json`; the report
//! ignores estimates older than the session's start.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::Env;

const RUN_FILE: &str = "cuda-vmm-run.json";
const EXTRA_FILE: &str = "cuda-vmm-extra.json";
/// Set to the same value for bench binaries run by separate commands that form one run.
const SESSION_ENV: &str = "CUDA_VMM_BENCH_SESSION";

/// The run's metadata, as `cargo xtask bench-report` reads it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct RunMeta {
    gpu: String,
    backend: String,
    cuda_driver: String,
    kernel_driver: String,
    /// `YYYY-MM-DD` (UTC) the session started.
    date: String,
    quick: bool,
    session: String,
    started_unix: u64,
}

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
    let mut extra: BTreeMap<String, f64> = read(&path).unwrap_or_default();
    extra.insert(key.to_string(), value);
    write(&path, &extra);
}

/// Writes `cuda-vmm-run.json` for this process; a new session also clears the extra file.
pub(crate) fn write_run_meta(env: &Env) {
    let dir = criterion_dir();
    let path = dir.join(RUN_FILE);
    let session = session_id();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let started = match read::<RunMeta>(&path) {
        Some(old) if old.session == session && now.saturating_sub(old.started_unix) < 24 * 3600 => {
            old.started_unix
        }
        _ => {
            let _ = std::fs::remove_file(dir.join(EXTRA_FILE));
            now
        }
    };
    let meta = RunMeta {
        gpu: env
            .device
            .name()
            .unwrap_or_else(|e| format!("unknown device ({e})")),
        backend: env.cuda.backend().to_string(),
        cuda_driver: env
            .cuda
            .driver_version()
            .map_or_else(|e| format!("unknown ({e})"), |v| v.to_string()),
        kernel_driver: kernel_driver(env),
        date: utc_date(started),
        quick: env.quick,
        session,
        started_unix: started,
    };
    write(&path, &meta);
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
    let time = UNIX_EPOCH + Duration::from_secs(unix_secs);
    let mut stamp = humantime::format_rfc3339_seconds(time).to_string();
    stamp.truncate(10);
    stamp
}

/// The file's JSON, or `None` if it is missing or not what we wrote (then it is rewritten).
fn read<T: DeserializeOwned>(path: &Path) -> Option<T> {
    let text = std::fs::read_to_string(path).ok()?;
    match serde_json::from_str(&text) {
        Ok(value) => Some(value),
        Err(e) => {
            eprintln!("cuda-vmm benches: ignoring {}: {e}", path.display());
            None
        }
    }
}

fn write<T: Serialize>(path: &Path, value: &T) {
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let written = serde_json::to_string_pretty(value)
        .map_err(|e| e.to_string())
        .and_then(|text| std::fs::write(path, text + "\n").map_err(|e| e.to_string()));
    if let Err(e) = written {
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
    fn side_files_round_trip() {
        let path = std::env::temp_dir().join(format!("cuda-vmm-side-{}.json", std::process::id()));
        let meta = RunMeta {
            gpu: "NVIDIA \"H100\"".into(),
            backend: "real driver".into(),
            cuda_driver: "13.0".into(),
            kernel_driver: "580.65.06".into(),
            date: "2025-01-02".into(),
            quick: false,
            session: "ppid:1".into(),
            started_unix: 1_735_776_000,
        };
        write(&path, &meta);
        assert_eq!(read::<RunMeta>(&path), Some(meta));
        std::fs::write(&path, "{\"gpu\": 1}").expect("write scratch file");
        assert_eq!(read::<RunMeta>(&path), None);
        std::fs::remove_file(&path).expect("remove scratch file");
    }
}
