//! PNG plots: latency by percentile (B, C), migration pauses (D) and
//! failover times (E). Text is drawn with a TrueType font read at run time
//! (no fontconfig needed).

use crate::report::Series;
use crate::{BenchError, Result};
use plotters::coord::ranged1d::AsRangedCoord;
use plotters::prelude::*;
use plotters::style::FontStyle;
use std::path::{Path, PathBuf};

const SIZE: (u32, u32) = (960, 560);
const COLORS: [RGBColor; 5] = [
    RGBColor(214, 39, 40),
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
];

fn pe(e: impl std::fmt::Display) -> BenchError {
    BenchError::Plot(e.to_string())
}

/// Registers the font every plot uses.
pub fn load_font(path: &Path) -> Result<()> {
    let bytes = std::fs::read(path)
        .map_err(|e| BenchError::Plot(format!("font {}: {e}", path.display())))?;
    // plotters keeps fonts for the whole process.
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
        .map_err(|_| BenchError::Plot(format!("{} is not a usable font", path.display())))
}

fn nines_label(x: f64) -> String {
    let q = 100.0 * (1.0 - 10f64.powf(-x));
    format!("p{}", (q * 100.0).round() / 100.0)
}

/// The chart every plot is: a white canvas of [`SIZE`] at `path` with
/// `title`, axes over `x` and `y`, what `draw` puts on it (the mesh and
/// the series), and the series' legend at `legend`.
fn chart<X, Y, F>(
    path: &Path,
    title: &str,
    (x, y): (X, Y),
    legend: SeriesLabelPosition,
    draw: F,
) -> Result<()>
where
    X: AsRangedCoord,
    Y: AsRangedCoord,
    F: FnOnce(&mut Chart<'_, '_, X, Y>) -> Result<()>,
{
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(pe)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 24))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(x, y)
        .map_err(pe)?;
    draw(&mut chart)?;
    chart
        .configure_series_labels()
        .position(legend)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(pe)?;
    drop(chart);
    root.present().map_err(pe)
}

/// What [`chart`] hands its drawing.
type Chart<'a, 'b, X, Y> = ChartContext<
    'a,
    BitMapBackend<'b>,
    Cartesian2d<<X as AsRangedCoord>::CoordDescType, <Y as AsRangedCoord>::CoordDescType>,
>;

/// Latency by percentile of every system in `scenario` ("B", "C").
fn latency(dir: &Path, series: &Series, scenario: &str, title: &str) -> Result<Option<PathBuf>> {
    let curves: Vec<(&str, &Vec<(f64, f64)>)> = series
        .latency_curves
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix(&format!("{scenario}/"))?, v)))
        .filter(|(_, v)| !v.is_empty())
        .collect();
    if curves.is_empty() {
        return Ok(None);
    }
    let all = curves.iter().flat_map(|(_, v)| v.iter());
    let x_max = all.clone().map(|p| p.0).fold(1.0, f64::max);
    let y_min = all.clone().map(|p| p.1).fold(f64::MAX, f64::min).max(0.005) / 1.5;
    let y_max = all.map(|p| p.1).fold(0.0, f64::max).max(y_min * 2.0) * 1.5;
    let path = dir.join(format!("latency_{scenario}.png"));
    let axes = (0f64..x_max, (y_min..y_max).log_scale());
    chart(
        &path,
        title,
        axes,
        SeriesLabelPosition::UpperLeft,
        |chart| {
            chart
                .configure_mesh()
                .x_desc("percentile")
                .y_desc("send to receive (ms, log scale)")
                .x_labels(x_max as usize + 1)
                .x_label_formatter(&|x| nines_label(*x))
                .draw()
                .map_err(pe)?;
            for (i, (name, points)) in curves.iter().enumerate() {
                let color = COLORS[i % COLORS.len()];
                chart
                    .draw_series(LineSeries::new(
                        points.iter().copied(),
                        color.stroke_width(2),
                    ))
                    .map_err(pe)?
                    .label(*name)
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(2))
                    });
            }
            Ok(())
        },
    )?;
    Ok(Some(path))
}

/// Labelled sets of `(x, ms)` points.
type PointSets<'a> = [(&'a str, &'a [(f64, f64)])];

/// A scatter of sets of `(x, ms)` points, a colour each, with a target
/// line.
fn scatter(
    path: PathBuf,
    sets: &PointSets,
    title: &str,
    x_desc: &str,
    target_ms: f64,
) -> Result<Option<PathBuf>> {
    let points = || sets.iter().flat_map(|(_, p)| p.iter());
    if points().next().is_none() {
        return Ok(None);
    }
    let x_max = points().map(|p| p.0).fold(1.0, f64::max) + 1.0;
    let y_max = points().map(|p| p.1).fold(target_ms, f64::max) * 1.15;
    let axes = (0f64..x_max, 0f64..y_max);
    chart(
        &path,
        title,
        axes,
        SeriesLabelPosition::UpperRight,
        |chart| {
            chart
                .configure_mesh()
                .x_desc(x_desc)
                .y_desc("ms")
                .x_label_formatter(&|x| format!("{x:.0}"))
                .draw()
                .map_err(pe)?;
            for (i, (label, points)) in sets.iter().filter(|(_, p)| !p.is_empty()).enumerate() {
                let dot = COLORS[1 + i % (COLORS.len() - 1)].mix(0.35).filled();
                chart
                    .draw_series(points.iter().map(|&p| Circle::new(p, 3, dot)))
                    .map_err(pe)?
                    .label(*label)
                    .legend(move |(x, y)| Circle::new((x + 12, y), 3, dot));
            }
            chart
                .draw_series(LineSeries::new(
                    [(0.0, target_ms), (x_max, target_ms)],
                    COLORS[0].stroke_width(2),
                ))
                .map_err(pe)?
                .label(format!("target {target_ms:.0} ms"))
                .legend(|(x, y)| {
                    PathElement::new(vec![(x, y), (x + 24, y)], COLORS[0].stroke_width(2))
                });
            Ok(())
        },
    )?;
    Ok(Some(path))
}

/// Draws every plot there is data for into `dir`; returns the files.
pub fn draw_all(dir: &Path, font: &Path, series: &Series) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    load_font(font)?;
    let drawn = [
        latency(dir, series, "B", "B: latency under load, by percentile")?,
        latency(
            dir,
            series,
            "C",
            "C: latency with many clients, by percentile",
        )?,
        scatter(
            dir.join("migration_pause.png"),
            &[("one client", &series.migration_gaps)],
            "D: per-client pause at each planned migration",
            "migration",
            50.0,
        )?,
        scatter(
            dir.join("failover.png"),
            &[
                ("one member, in a crowd", &series.failover),
                ("the survivor, in a two-member room", &series.failover_pair),
            ],
            "E: time from kill -9 of the host until a member receives again",
            "kill",
            1000.0,
        )?,
    ];
    Ok(drawn.into_iter().flatten().collect())
}
