//! Tile arithmetic and the residency map of sparse arrays (pure bookkeeping, no driver calls).

use std::fmt;
use std::ops::Range;

/// Tiles touched by any byte of `bytes` (rounded out). Empty for an empty range.
pub(crate) fn covering(bytes: Range<usize>, tile: usize) -> Range<usize> {
    if bytes.is_empty() {
        return 0..0;
    }
    bytes.start / tile..bytes.end.div_ceil(tile)
}

/// Tiles lying wholly inside `bytes` (rounded in); `len_bytes` is the array's length, so the
/// last, partly used tile counts as inside when the range reaches the array's end.
pub(crate) fn inside(bytes: Range<usize>, tile: usize, len_bytes: usize) -> Range<usize> {
    if bytes.is_empty() {
        return 0..0;
    }
    let first = bytes.start.div_ceil(tile);
    let last = if bytes.end >= len_bytes {
        bytes.end.div_ceil(tile)
    } else {
        bytes.end / tile
    };
    first..last.max(first)
}

/// Groups ascending tile indices into maximal runs of consecutive tiles.
pub(crate) fn runs(tiles: impl IntoIterator<Item = usize>) -> Vec<Range<usize>> {
    let mut out: Vec<Range<usize>> = Vec::new();
    for t in tiles {
        match out.last_mut() {
            Some(run) if run.end == t => run.end += 1,
            _ => out.push(t..t + 1),
        }
    }
    out
}

/// Symbols drawn at most; larger arrays draw one symbol per group of tiles.
const MAX_SYMBOLS: usize = 1024;
const PER_LINE: usize = 64;
const PER_GROUP: usize = 8;

/// Writes a residency map: a header line, then one symbol per tile (or per group of tiles for
/// huge arrays): `#` committed, `s` spare (memory held ahead, a hole to the caller), `.`
/// hole, `+` group of mixed tiles. `spare_in` counts the spare tiles of a range; the header
/// names them and the memory they hold when there are any.
pub(crate) fn render(
    f: &mut fmt::Formatter<'_>,
    total_tiles: usize,
    tile_bytes: usize,
    committed_in: impl Fn(Range<usize>) -> usize,
    spare_in: impl Fn(Range<usize>) -> usize,
) -> fmt::Result {
    let committed = committed_in(0..total_tiles);
    write!(
        f,
        "{committed}/{total_tiles} tiles committed ({} of {}, tile {})",
        Bytes(committed.saturating_mul(tile_bytes)),
        Bytes(total_tiles.saturating_mul(tile_bytes)),
        Bytes(tile_bytes)
    )?;
    let spares = spare_in(0..total_tiles);
    if spares > 0 {
        write!(
            f,
            ", {spares} spare (s, {} held ahead)",
            Bytes(spares.saturating_mul(tile_bytes))
        )?;
    }
    let per = total_tiles.div_ceil(MAX_SYMBOLS).max(1);
    if per > 1 {
        write!(f, "; one symbol per {per} tiles, + = partly committed")?;
    }
    let symbols = total_tiles.div_ceil(per);
    for s in 0..symbols {
        if s % PER_LINE == 0 {
            writeln!(f)?;
        } else if s % PER_GROUP == 0 {
            write!(f, " ")?;
        }
        let group = s * per..((s + 1) * per).min(total_tiles);
        let size = group.len();
        let symbol = match (committed_in(group.clone()), spare_in(group)) {
            (0, 0) => '.',
            (n, 0) if n == size => '#',
            (0, n) if n == size => 's',
            _ => '+',
        };
        write!(f, "{symbol}")?;
    }
    Ok(())
}

/// A byte count printed with a binary unit (`2 MiB`, `1.5 GiB`, `512 B`).
///
/// The benches' `fmt_size` and xtask's `fmt_bytes` do not use it: it is private to this
/// library (a public formatter would be new API for their sake), and xtask depends on no
/// workspace crate (see `fmt_size` in benches/src/lib.rs).
pub(crate) struct Bytes(pub usize);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
        let mut value = self.0 as f64;
        let mut unit = 0;
        while value >= 1024.0 && unit + 1 < UNITS.len() {
            value /= 1024.0;
            unit += 1;
        }
        if value.fract() == 0.0 {
            write!(f, "{value} {}", UNITS[unit])
        } else {
            write!(f, "{value:.1} {}", UNITS[unit])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Map(Vec<bool>, usize);

    impl fmt::Display for Map {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            render(
                f,
                self.0.len(),
                self.1,
                |r| self.0[r].iter().filter(|&&c| c).count(),
                |_| 0,
            )
        }
    }

    #[test]
    fn covering_rounds_out() {
        assert_eq!(covering(0..1, 10), 0..1);
        assert_eq!(covering(9..11, 10), 0..2);
        assert_eq!(covering(10..20, 10), 1..2);
        assert_eq!(covering(5..5, 10), 0..0);
    }

    #[test]
    fn inside_rounds_in() {
        assert_eq!(inside(0..10, 10, 100), 0..1);
        assert_eq!(inside(1..19, 10, 100), 1..1);
        assert_eq!(inside(5..35, 10, 100), 1..3);
        // The last tile is partly past the array's end: reaching the end decommits it.
        assert_eq!(inside(90..95, 10, 95), 9..10);
        assert_eq!(inside(90..94, 10, 95), 9..9);
    }

    #[test]
    fn runs_group_consecutive_tiles() {
        assert_eq!(runs([1, 2, 3, 7, 9, 10]), vec![1..4, 7..8, 9..11]);
        assert_eq!(runs([]), Vec::<Range<usize>>::new());
    }

    #[test]
    fn renders_small_map() {
        let mut tiles = vec![false; 20];
        for t in [0, 1, 2, 9, 19] {
            tiles[t] = true;
        }
        let text = Map(tiles, 2 << 20).to_string();
        assert_eq!(
            text,
            "5/20 tiles committed (10 MiB of 40 MiB, tile 2 MiB)\n###..... .#...... ...#"
        );
    }

    #[test]
    fn renders_spares_beside_committed_tiles() {
        struct Spares;
        impl fmt::Display for Spares {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                // Tile 0 committed, 1..3 spare, 3..10 holes.
                let count =
                    |r: Range<usize>, of: Range<usize>| r.filter(|t| of.contains(t)).count();
                render(f, 10, 2 << 20, |r| count(r, 0..1), |r| count(r, 1..3))
            }
        }
        assert_eq!(
            Spares.to_string(),
            "1/10 tiles committed (2 MiB of 20 MiB, tile 2 MiB), 2 spare (s, 4 MiB held ahead)\n#ss..... .."
        );
    }

    #[test]
    fn renders_huge_map_in_groups() {
        let mut tiles = vec![false; 4096];
        for t in tiles.iter_mut().take(6) {
            *t = true;
        }
        let text = Map(tiles, 1 << 20).to_string();
        let mut lines = text.lines();
        assert_eq!(
            lines.next(),
            Some("6/4096 tiles committed (6 MiB of 4 GiB, tile 1 MiB); one symbol per 4 tiles, + = partly committed")
        );
        assert_eq!(lines.next().map(|l| &l[..10]), Some("#+...... ."));
        assert_eq!(text.lines().count(), 17);
    }

    #[test]
    fn bytes_display() {
        assert_eq!(Bytes(512).to_string(), "512 B");
        assert_eq!(Bytes(3 << 19).to_string(), "1.5 MiB");
        assert_eq!(Bytes(1 << 30).to_string(), "1 GiB");
    }
}
