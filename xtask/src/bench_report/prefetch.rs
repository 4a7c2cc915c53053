//! Background commit (`benches/benches/prefetch.rs`): the time appends spend blocked in the
//! allocator with and without prefetch, from the side file, and its table.

use std::fmt::Write as _;

use super::format::{fmt_ratio, fmt_time, parse_size, pretty_size};
use super::load::Run;
use super::sizes_under;

/// Seconds in a side key, as a time: `blocked_total_s` -> `401 µs`, a zero -> `0`.
pub fn fmt_secs(secs: f64) -> String {
    if secs == 0.0 {
        "0".into()
    } else {
        fmt_time(secs * 1e9)
    }
}

/// One prefetch size's blocked statistics, with and without prefetch (side keys
/// `prefetch/{off,on}/SIZE/blocked_{p50,p99,max,total}_s`).
pub struct Blocked {
    pub ratio: Option<f64>,
    /// (off, on) for p50, p99, max, total, in seconds.
    pub p50: (Option<f64>, Option<f64>),
    pub p99: (Option<f64>, Option<f64>),
    pub max: (Option<f64>, Option<f64>),
    pub total: (Option<f64>, Option<f64>),
}

impl Blocked {
    pub fn at(run: &Run, size: &str) -> Blocked {
        let pair = |stat: &str| {
            let get = |mode: &str| {
                run.extra
                    .get(&format!("prefetch/{mode}/{size}/blocked_{stat}_s"))
                    .copied()
            };
            (get("off"), get("on"))
        };
        Blocked {
            ratio: run
                .extra
                .get(&format!("prefetch/{size}/blocked_ratio"))
                .copied(),
            p50: pair("p50"),
            p99: pair("p99"),
            max: pair("max"),
            total: pair("total"),
        }
    }

    /// The sizes the prefetch bench measured (medians or side keys), smallest first.
    pub fn sizes(run: &Run) -> Vec<String> {
        let mut sizes = sizes_under(run, "prefetch/");
        for key in run.extra.keys() {
            if let Some(size) = key
                .strip_prefix("prefetch/")
                .and_then(|r| r.strip_suffix("/blocked_ratio"))
            {
                sizes.push(size.to_string());
            }
        }
        sizes.sort_by_key(|s| parse_size(s));
        sizes.dedup();
        sizes
    }
}

/// An (off, on) pair as `on / off` text: `401 µs / 4.60 ms`.
pub fn on_off((off, on): (Option<f64>, Option<f64>)) -> String {
    let cell = |v: Option<f64>| v.map_or("-".into(), fmt_secs);
    format!("{} / {}", cell(on), cell(off))
}

/// Background commit: the whole workload and the time appends spent blocked, per size.
pub fn prefetch_table(run: &Run, s: &mut String) {
    let sizes = Blocked::sizes(run);
    if sizes.is_empty() {
        return;
    }
    s.push_str(
        "### Background commit (`prefetch/{off,on}/SIZE`, median)\n\n\
         Growth by 2 MiB appends with 5 µs of busy host work per append, default policy. \
         Blocked = time the growing call spent in the allocator (`GrowableBuffer::blocked_stats`): \
         p50 and p99 per append of the median run, max over all runs, total the median over runs. \
         Each pair is *on / off*.\n\n\
         | Size | Whole workload on / off | Blocked total on / off | Ratio | p50 | p99 | max |\n\
         |---|---|---|---|---|---|---|\n",
    );
    for size in sizes {
        let b = Blocked::at(run, &size);
        let whole = (
            run.median(&format!("prefetch/off/{size}")).map(|t| t / 1e9),
            run.median(&format!("prefetch/on/{size}")).map(|t| t / 1e9),
        );
        let ratio = b.ratio.map_or("-".into(), |r| format!("{}x", fmt_ratio(r)));
        let _ = writeln!(
            s,
            "| {} | {} | {} | {ratio} | {} | {} | {} |",
            pretty_size(&size),
            on_off(whole),
            on_off(b.total),
            on_off(b.p50),
            on_off(b.p99),
            on_off(b.max)
        );
    }
    s.push('\n');
}
