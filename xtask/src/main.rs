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

use std::ffi::OsString;
use std::process::ExitCode;

use lexopt::{Arg, Parser};

fn main() -> ExitCode {
    match run(Parser::from_env()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("xtask: {msg}");
            ExitCode::FAILURE
        }
    }
}

/// Dispatches on the command word; each task parses the rest of the arguments.
fn run(mut args: Parser) -> Result<(), String> {
    let command = match args.next() {
        Ok(Some(Arg::Value(command))) => command,
        _ => return Err(usage()),
    };
    match command.to_str() {
        Some("bindgen") => bindgen_task::run(&mut args),
        Some("bench-report") => bench_report::run(&mut args),
        // Prints the pin and nothing else (`.ci/run` captures it); later arguments are
        // ignored, as they always were.
        Some("header-pin") => {
            println!("{}", bindgen_task::HEADER_REQUIREMENT);
            Ok(())
        }
        _ => Err(usage()),
    }
}

/// The error for an argument `task` (`bindgen`, `bench-report`) does not take, naming it as
/// it was written (`--flag`, `-f` or the value).
pub(crate) fn unknown_argument(arg: &Arg<'_>, task: &str) -> String {
    let arg = match arg {
        Arg::Long(name) => format!("--{name}"),
        Arg::Short(c) => format!("-{c}"),
        Arg::Value(value) => value.to_string_lossy().into_owned(),
    };
    unknown(&arg, task)
}

/// [`lexopt::Parser::next`]'s error as `task` reports it: a value glued to a flag that takes
/// none (`--check=1`) is an unknown argument, as it always was.
pub(crate) fn argument_error(error: lexopt::Error, task: &str) -> String {
    match error {
        lexopt::Error::UnexpectedValue { option, value } => {
            unknown(&format!("{option}={}", value.to_string_lossy()), task)
        }
        other => other.to_string(),
    }
}

/// The value after `--flag` (the next argument, whatever it looks like), or the error
/// `--FLAG needs NEEDS` (`--out needs a file name`). `--flag=VALUE` is an unknown argument, as it always was.
pub(crate) fn flag_value(
    args: &mut Parser,
    flag: &str,
    task: &str,
    needs: &str,
) -> Result<OsString, String> {
    if let Some(glued) = args.optional_value() {
        return Err(unknown(
            &format!("--{flag}={}", glued.to_string_lossy()),
            task,
        ));
    }
    args.value().map_err(|_| format!("--{flag} needs {needs}"))
}

fn unknown(arg: &str, task: &str) -> String {
    format!("unknown argument `{arg}` to `cargo xtask {task}`")
}

fn usage() -> String {
    "usage:\n  cargo xtask bindgen [--check] [--cuda-include DIR]\n  \
     cargo xtask bench-report [--criterion DIR] [--out FILE] [--include-stale] \
     [--readme FILE | --no-readme]\n  \
     cargo xtask header-pin"
        .to_string()
}
