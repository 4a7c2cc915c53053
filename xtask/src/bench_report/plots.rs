//! Log-log SVG plots of one run, drawn with plotters' SVG backend (no fonts needed: text is
//! left to the SVG viewer).

use plotters::element::DashedPathElement;
use plotters::prelude::*;

use super::format::{fmt_bytes, fmt_time, parse_size};
use super::growth::growth_strategies;
use super::load::Run;
use super::{sizes_under, LATENCY_OPS};

/// One line of a plot: x in bytes, y in nanoseconds.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    pub color: RGBColor,
    pub dashed: bool,
}

const COLORS: &[RGBColor] = &[
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0xe3, 0x77, 0xc2),
    RGBColor(0x17, 0xbe, 0xcf),
];

const SIZE: (u32, u32) = (900, 480);
/// Width of the legend column right of the plot.
const LEGEND_WIDTH: u32 = 250;

/// The measured (size, median) points of the ids `PREFIX/SIZE`.
fn points(run: &Run, prefix: &str) -> Vec<(f64, f64)> {
    sizes_under(run, prefix)
        .iter()
        .filter_map(|size| {
            let t = run.median(&format!("{prefix}{size}"))?;
            Some((parse_size(size)? as f64, t))
        })
        .collect()
}

/// Latency of every single entry point against chunk size, raw solid and safe dashed.
pub fn latency_plot(run: &Run) -> Result<Option<String>, String> {
    let mut series = Vec::new();
    let singles = LATENCY_OPS.iter().filter(|o| o.2 == 1.0);
    for (i, &(op, name, _)) in singles.enumerate() {
        for layer in ["raw", "safe"] {
            let points = points(run, &format!("latency/{op}/{layer}/"));
            if !points.is_empty() {
                series.push(Series {
                    name: format!("{name} ({layer})"),
                    points,
                    color: COLORS[i % COLORS.len()],
                    dashed: layer == "safe",
                });
            }
        }
    }
    let title = format!("Latency per entry point, {}", run.meta.gpu);
    log_log(&title, "chunk size", "median latency", &series)
}

/// Growth time of every layout against final size, the raw floors dashed.
pub fn growth_plot(run: &Run) -> Result<Option<String>, String> {
    let series: Vec<Series> = growth_strategies(run)
        .iter()
        .enumerate()
        .map(|(i, (key, name))| Series {
            name: name.trim_matches('`').to_string(),
            points: points(run, &format!("growth/{key}/")),
            color: COLORS[i % COLORS.len()],
            // The raw floors dashed.
            dashed: key.starts_with("raw_"),
        })
        .filter(|s| !s.points.is_empty())
        .collect();
    let title = format!("Growth by 2 MiB appends, {}", run.meta.gpu);
    log_log(&title, "final size", "median time", &series)
}

/// A log-log line plot with markers and a legend; x ticks at powers of two (sizes), y at
/// powers of ten (times). `None` when there is nothing positive to draw.
pub fn log_log(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
) -> Result<Option<String>, String> {
    let positive = || {
        series
            .iter()
            .flat_map(|s| s.points.iter())
            .filter(|p| p.0 > 0.0 && p.1 > 0.0)
    };
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in positive() {
        (x0, x1) = (x0.min(x), x1.max(x));
        (y0, y1) = (y0.min(y), y1.max(y));
    }
    if x0 > x1 {
        return Ok(None);
    }
    // Pad x by a little, snap y to whole decades.
    let (x0, x1) = (x0 / 1.5, x1 * 1.5);
    let y0 = 10f64.powf(y0.log10().floor());
    let y1 = 10f64.powf(y1.log10().ceil().max(y0.log10() + 1.0));
    let mut svg = String::new();
    draw(&mut svg, title, x_label, y_label, series, (x0..x1, y0..y1)).map_err(|e| e.to_string())?;
    Ok(Some(svg))
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;

fn draw(
    svg: &mut String,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    (x, y): (std::ops::Range<f64>, std::ops::Range<f64>),
) -> DrawResult {
    let root = SVGBackend::with_string(svg, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let (plot, legend) = root.split_horizontally(SIZE.0 - LEGEND_WIDTH);
    let mut chart = ChartBuilder::on(&plot)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(72)
        .build_cartesian_2d(x.log_scale().base(2.0), y.log_scale())?;
    chart
        .configure_mesh()
        .x_desc(format!("{x_label} (log)"))
        .y_desc(format!("{y_label} (log)"))
        .x_label_formatter(&|v| fmt_bytes(*v))
        .y_label_formatter(&|v| fmt_time(*v).replace(".00 ", " ").replace(".0 ", " "))
        .label_style(("sans-serif", 15))
        .max_light_lines(0)
        .draw()?;
    for s in series {
        let style = s.color.stroke_width(2);
        let line = s.points.iter().copied();
        if s.dashed {
            chart.draw_series(DashedLineSeries::new(line, 6, 4, style))?;
        } else {
            chart.draw_series(LineSeries::new(line, style))?;
        }
        let color = s.color;
        chart.draw_series(
            s.points
                .iter()
                .map(move |&p| Circle::new(p, 3, color.filled())),
        )?;
    }
    // The legend, in its own column so that it hides no data.
    let top = 50;
    for (i, s) in series.iter().enumerate() {
        let y = top + 20 * i as i32;
        let style = s.color.stroke_width(2);
        let mark = vec![(8, y), (36, y)];
        if s.dashed {
            legend.draw(&DashedPathElement::new(mark, 6, 4, style))?;
        } else {
            legend.draw(&PathElement::new(mark, style))?;
        }
        legend.draw(&Text::new(
            s.name.clone(),
            (44, y - 7),
            ("sans-serif", 15).into_font(),
        ))?;
    }
    root.present()?;
    Ok(())
}
