//! Project automation for the cuda-vmm workspace.
//!
//! - `cargo xtask bindgen [--check] [--cuda-include DIR]`: regenerate (or verify)
//!   `cuda-vmm-sys/src/bindings.rs` from the driver header `cuda.h`.
//! - `cargo xtask bench-report [--criterion DIR] [--out FILE] [--include-stale] [--readme FILE |
//!   --no-readme]`: write the latest `cargo bench` run into `BENCHMARKS.md` and
//!   `docs/bench/<gpu-date>/*.svg`, with its targets and verdicts, and rewrite the README's
//!   performance table (between `<!-- perf-table:start -->` and `<!-- perf-table:end -->`).
//! - `cargo xtask header-pin`: print the pinned PyPI requirement that ships `cuda.h`.

mod bench_report;
mod bindgen_task;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("bindgen") => bindgen_task::run(&args[1..]),
        Some("bench-report") => bench_report::run(&args[1..]),
        Some("header-pin") => {
            println!("{}", bindgen_task::HEADER_REQUIREMENT);
            Ok(())
        }
        _ => Err(usage()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("xtask: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn usage() -> String {
    "usage:\n  cargo xtask bindgen [--check] [--cuda-include DIR]\n  \
     cargo xtask bench-report [--criterion DIR] [--out FILE] [--include-stale] \
     [--readme FILE | --no-readme]\n  \
     cargo xtask header-pin"
        .to_string()
}
