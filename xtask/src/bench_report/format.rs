//! Numbers as the report prints them: times, sizes, ratios.

/// `"2MiB"` -> 2097152 (KiB, MiB, GiB, TiB or B): reads the ids the benches' `size_id`
/// (benches/src/lib.rs) writes.
pub fn parse_size(s: &str) -> Option<u64> {
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

/// Three significant digits with a unit: `850 ns`, `12.3 µs`, `4.56 ms`.
pub fn fmt_time(ns: f64) -> String {
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

/// A signed time difference: `+50.0 ns`, `-1.61 µs`.
pub fn fmt_delta(ns: f64) -> String {
    let sign = if ns < 0.0 { "-" } else { "+" };
    format!("{sign}{}", fmt_time(ns.abs()))
}

/// Bytes in binary units: `256 MiB`, `1.50 GiB`.
///
/// The benches print sizes with their own `fmt_size` (benches/src/lib.rs): xtask does not
/// depend on the benches crate, which pulls in cuda-vmm-sys, and xtask must build even when
/// cuda-vmm-sys's `bindings.rs` (which `cargo xtask bindgen` regenerates) does not.
pub fn fmt_bytes(bytes: f64) -> String {
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
pub fn pretty_size(s: &str) -> String {
    parse_size(s).map_or(s.to_string(), |b| fmt_bytes(b as f64))
}

/// A ratio with three significant digits: `627`, `1.04`, `0.00217`.
pub fn fmt_ratio(r: f64) -> String {
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

/// Sorts `k4` before `k16` and `2MiB` before `1GiB`: (size in bytes if it is one, text
/// before the number, the number, the whole case).
pub fn natural_key(case: &str) -> (u64, String, u64, &str) {
    let size = parse_size(case).unwrap_or(0);
    let digits = case
        .find(|c: char| c.is_ascii_digit())
        .unwrap_or(case.len());
    let number: String = case[digits..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    (
        size,
        case[..digits].to_string(),
        number.parse().unwrap_or(0),
        case,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_times_and_ratios() {
        assert_eq!(parse_size("2MiB"), Some(2 << 20));
        assert_eq!(parse_size("16GiB"), Some(16 << 30));
        assert_eq!(parse_size("k4"), None);
        assert_eq!(fmt_time(850.0), "850 ns");
        assert_eq!(fmt_time(12_345.0), "12.3 µs");
        assert_eq!(fmt_time(4_560_000.0), "4.56 ms");
        assert_eq!(fmt_delta(-1_610.0), "-1.61 µs");
        assert_eq!(fmt_bytes(1.5 * (1u64 << 30) as f64), "1.50 GiB");
        assert_eq!(pretty_size("512MiB"), "512 MiB");
        assert_eq!(fmt_ratio(627.58), "628");
        assert_eq!(fmt_ratio(1.04), "1.04");
        assert_eq!(fmt_ratio(0.002173), "0.00217");
        let mut cases = vec!["k16", "k1", "k4", "-", "1GiB", "2MiB"];
        cases.sort_by_key(|c| natural_key(c));
        assert_eq!(cases, ["-", "k1", "k4", "k16", "2MiB", "1GiB"]);
    }
}
