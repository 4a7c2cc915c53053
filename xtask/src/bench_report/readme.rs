//! The README's performance table: one row per target of the run, rewritten between the
//! markers [`START`] and [`END`]; the text outside them is left as it is.

use std::fmt::Write as _;
use std::path::Path;

use super::load::Run;
use super::targets::target_rows;

/// Marker before the generated table.
pub const START: &str = "<!-- perf-table:start -->";
/// Marker after the generated table.
pub const END: &str = "<!-- perf-table:end -->";

/// The GPU/driver/date line and the targets table of `run`.
pub fn perf_table(run: &Run) -> String {
    let meta = &run.meta;
    let mode = if meta.quick {
        "quick mode (reduced sizes)"
    } else {
        "full sizes"
    };
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Measured on {} ({}), kernel driver {}, CUDA driver API {}, {}, {mode}: criterion \
         medians, each ratio from one process, written by `cargo xtask bench-report`.\n",
        meta.gpu, meta.backend, meta.kernel_driver, meta.cuda_driver, meta.date
    );
    s.push_str("| What | Measured | Target | Result |\n| --- | --- | --- | --- |\n");
    target_rows(run, &mut s, |t| [&t.what, &t.measured, &t.goal]);
    s
}

/// `doc` with the text between the markers replaced by `table`. An error names the file and
/// the marker that is missing or out of order.
pub fn replace_table(doc: &str, table: &str, file: &Path) -> Result<String, String> {
    let missing = |marker: &str| {
        format!(
            "{} has no `{marker}` line: put `{START}` and `{END}` around the performance table",
            file.display()
        )
    };
    let start = doc.find(START).ok_or_else(|| missing(START))?;
    let body = start + START.len();
    let end = doc[body..]
        .find(END)
        .map(|e| body + e)
        .ok_or_else(|| missing(END))?;
    if doc[end + END.len()..].contains(START) || doc[body..end].contains(START) {
        return Err(format!(
            "{} has more than one `{START}` marker",
            file.display()
        ));
    }
    Ok(format!(
        "{}\n{}\n{}",
        &doc[..body],
        table.trim_end(),
        &doc[end..]
    ))
}
