//! SVG plots of a run's [`TimeSeries`], drawn with plotters' SVG backend
//! (text is emitted as SVG `<text>`, so no fonts are needed):
//!
//! - `installs.svg`: cumulative installs per wave over time, one line per wave;
//! - `health.svg`: healthy, failed and knowing-halt counts over time, the
//!   halted state as a shaded step and the number of open waves as a step line
//!   on the right-hand axis;
//! - `bandwidth.svg`: total, WAN and seeder-upload rates in MB/s (10⁶ bytes
//!   per second) over time.
//!
//! Axis ranges are guarded so that an empty series, a single sample or a
//! series of zeros still gives a valid (if empty) chart: plotters panics on
//! empty ranges. Non-finite values are left out of the lines.

use std::error::Error;
use std::ops::Range;
use std::path::{Path, PathBuf};

use plotters::prelude::*;

use super::series::TimeSeries;

/// Why [`write_plots`] (or another chart writer of this crate) failed.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// The output directory could not be created.
    #[error("creating directory {path}: {source}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Drawing or writing the chart failed.
    #[error("drawing {path}: {message}")]
    Draw {
        /// The SVG file being written.
        path: PathBuf,
        /// plotters' error, as text.
        message: String,
    },
}

/// The chart size in pixels.
pub(crate) const SIZE: (u32, u32) = (960, 540);

/// One named line of a chart.
pub(crate) struct Line {
    /// The legend label.
    pub name: String,
    /// The line's colour.
    pub color: RGBAColor,
    /// The points, in x order.
    pub points: Vec<(f64, f64)>,
}

/// A distinct colour for the `i`-th line.
pub(crate) fn color(i: usize) -> RGBAColor {
    Palette99::pick(i).to_rgba()
}

/// A range covering the finite `values`, never empty: `(0, 1)` without any,
/// `(v, v + 1)` for a single value `v`. With `from_zero` it starts at 0 (or
/// lower) and gets 5 % headroom at the top.
pub(crate) fn axis_range(values: impl IntoIterator<Item = f64>, from_zero: bool) -> Range<f64> {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.into_iter().filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if lo > hi {
        return 0.0..1.0;
    }
    if from_zero {
        lo = lo.min(0.0);
        hi = hi.max(0.0);
        hi += (hi - lo) * 0.05;
    }
    if !(hi - lo).is_finite() || hi - lo <= f64::EPSILON * lo.abs().max(hi.abs()).max(1.0) {
        return if lo.is_finite() && (lo + 1.0) > lo {
            lo..lo + 1.0
        } else {
            0.0..1.0
        };
    }
    lo..hi
}

/// An axis label: the value rounded to six decimals, without a trailing `.0`.
pub(crate) fn tick(x: &f64) -> String {
    let r = (x * 1e6).round() / 1e6;
    if r == 0.0 {
        "0".into()
    } else {
        format!("{r}")
    }
}

/// The points with a non-finite coordinate dropped.
fn finite(points: impl IntoIterator<Item = (f64, f64)>) -> Vec<(f64, f64)> {
    points
        .into_iter()
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .collect()
}

/// Points of a step function: each value holds until the next sample.
fn steps(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let mut out = Vec::with_capacity(points.len() * 2);
    for (i, &(x, y)) in points.iter().enumerate() {
        if i > 0 {
            out.push((x, points[i - 1].1));
        }
        out.push((x, y));
    }
    out
}

/// Runs a drawing closure and turns its error into a [`PlotError`] naming `path`.
pub(crate) fn draw_to(
    path: &Path,
    draw: impl FnOnce(&Path) -> Result<(), Box<dyn Error>>,
) -> Result<(), PlotError> {
    draw(path).map_err(|e| PlotError::Draw {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

/// Draws a chart of `lines` to the SVG file `path`, with a legend when any
/// line exists. The x axis covers the lines' x values, the y axis starts at 0.
pub(crate) fn line_chart(
    path: &Path,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    lines: &[Line],
) -> Result<(), PlotError> {
    draw_to(path, |path| {
        let x = axis_range(
            lines.iter().flat_map(|l| l.points.iter().map(|p| p.0)),
            false,
        );
        let y = axis_range(
            lines.iter().flat_map(|l| l.points.iter().map(|p| p.1)),
            true,
        );
        let root = SVGBackend::new(path, SIZE).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(x, y)?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc(y_desc)
            .x_label_formatter(&tick)
            .y_label_formatter(&tick)
            .draw()?;
        for line in lines {
            let style = line.color.stroke_width(2);
            chart
                .draw_series(LineSeries::new(finite(line.points.iter().copied()), style))?
                .label(line.name.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
        }
        if !lines.is_empty() {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .draw()?;
        }
        root.present()?;
        Ok(())
    })
}

/// Writes `installs.svg`, `health.svg` and `bandwidth.svg` for `series` into
/// `dir` (created if missing) and returns their paths in that order.
pub fn write_plots(series: &TimeSeries, dir: impl AsRef<Path>) -> Result<Vec<PathBuf>, PlotError> {
    let dir = dir.as_ref();
    std::fs::create_dir_all(dir).map_err(|source| PlotError::CreateDir {
        path: dir.to_owned(),
        source,
    })?;
    let installs = dir.join("installs.svg");
    let health = dir.join("health.svg");
    let bandwidth = dir.join("bandwidth.svg");
    write_installs(series, &installs)?;
    write_health(series, &health)?;
    write_bandwidth(series, &bandwidth)?;
    Ok(vec![installs, health, bandwidth])
}

/// A line of `f(sample)` against time.
fn series_line(
    series: &TimeSeries,
    name: &str,
    color: RGBAColor,
    f: impl Fn(&super::series::Sample) -> f64,
) -> Line {
    Line {
        name: name.to_string(),
        color,
        points: series.samples.iter().map(|s| (s.t_s, f(s))).collect(),
    }
}

/// `installs.svg`: cumulative installs per wave.
fn write_installs(series: &TimeSeries, path: &Path) -> Result<(), PlotError> {
    let lines: Vec<Line> = series
        .wave_names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            series_line(series, name, color(i), |s| {
                s.installed.get(i).copied().unwrap_or(0) as f64
            })
        })
        .collect();
    line_chart(
        path,
        "Cumulative installs per wave",
        "time (s)",
        "installs",
        &lines,
    )
}

/// `bandwidth.svg`: total, WAN and seeder upload rates in MB/s.
fn write_bandwidth(series: &TimeSeries, path: &Path) -> Result<(), PlotError> {
    const MB: f64 = 1e6;
    let lines = [
        series_line(series, "total", BLUE.to_rgba(), |s| s.bandwidth_bps / MB),
        series_line(series, "WAN", RED.to_rgba(), |s| s.wan_bps / MB),
        series_line(series, "seeder upload", GREEN.to_rgba(), |s| {
            s.seeder_upload_bps / MB
        }),
    ];
    line_chart(path, "Bandwidth", "time (s)", "rate (MB/s)", &lines)
}

/// `health.svg`: healthy, failed and knowing-halt counts, the halted state
/// shaded, and open waves on a secondary axis.
fn write_health(series: &TimeSeries, path: &Path) -> Result<(), PlotError> {
    let counts = [
        series_line(series, "healthy", GREEN.to_rgba(), |s| s.healthy as f64),
        series_line(series, "failed", RED.to_rgba(), |s| s.failed as f64),
        series_line(series, "knowing halt", MAGENTA.to_rgba(), |s| {
            s.knowing_halt as f64
        }),
    ];
    let waves_open: Vec<(f64, f64)> =
        finite(series.samples.iter().map(|s| (s.t_s, s.waves_open as f64)));
    draw_to(path, |path| {
        let x = axis_range(series.samples.iter().map(|s| s.t_s), false);
        let y = axis_range(
            counts.iter().flat_map(|l| l.points.iter().map(|p| p.1)),
            true,
        );
        let y_top = y.end;
        let most_open = waves_open.iter().map(|p| p.1).fold(0.0, f64::max);
        let waves = 0.0..most_open + 1.0;
        // One tick per whole number of waves while that stays readable.
        let wave_ticks = (most_open as usize + 2).min(12);
        let root = SVGBackend::new(path, SIZE).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption("Health and halts", ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .right_y_label_area_size(50)
            .build_cartesian_2d(x.clone(), y)?
            .set_secondary_coord(x, waves);
        chart
            .configure_mesh()
            .x_desc("time (s)")
            .y_desc("nodes")
            .x_label_formatter(&tick)
            .y_label_formatter(&tick)
            .draw()?;
        chart
            .configure_secondary_axes()
            .y_desc("waves open")
            .y_labels(wave_ticks)
            .y_label_formatter(&tick)
            .draw()?;

        let shade = RED.mix(0.15);
        let halted = finite(
            series
                .samples
                .iter()
                .map(|s| (s.t_s, if s.halted { y_top } else { 0.0 })),
        );
        chart
            .draw_series(AreaSeries::new(steps(&halted), 0.0, shade))?
            .label("halted")
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 20, y + 5)], shade.filled()));
        for line in &counts {
            let style = line.color.stroke_width(2);
            chart
                .draw_series(LineSeries::new(finite(line.points.iter().copied()), style))?
                .label(line.name.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
        }
        let style = BLACK.stroke_width(1);
        chart
            .draw_secondary_series(LineSeries::new(steps(&waves_open), style))?
            .label("waves open")
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::series::Sample;

    fn sample(t: f64, k: u64) -> Sample {
        Sample {
            t_s: t,
            installed: vec![k, 2 * k],
            downloaded: 3 * k,
            healthy: 2 * k,
            failed: k / 2,
            knowing_halt: k,
            waves_open: k.min(2),
            halted: k > 3,
            bandwidth_bps: 1e6 * k as f64,
            wan_bps: 2e5 * k as f64,
            seeder_upload_bps: 1e5,
            delivered_bytes: 0.0,
        }
    }

    fn check(files: &[PathBuf], names: &[&[&str]]) {
        assert_eq!(files.len(), 3);
        for (file, names) in files.iter().zip(names) {
            let text = std::fs::read_to_string(file).unwrap();
            assert!(text.starts_with("<svg"), "{}", file.display());
            for name in *names {
                assert!(text.contains(name), "{} lacks {name}", file.display());
            }
        }
    }

    const NAMES: [&[&str]; 3] = [
        &["canary", "fleet"],
        &["healthy", "failed", "knowing halt", "halted", "waves open"],
        &["total", "WAN", "seeder upload"],
    ];

    #[test]
    fn writes_three_svgs_with_series_names() {
        let dir = tempfile::tempdir().unwrap();
        let mut ts = TimeSeries::new(vec!["canary".into(), "fleet".into()]);
        for k in 0..10 {
            ts.push(sample(k as f64 * 5.0, k));
        }
        let files = write_plots(&ts, dir.path().join("plots")).unwrap();
        assert_eq!(
            files
                .iter()
                .map(|f| f.file_name().unwrap().to_str().unwrap())
                .collect::<Vec<_>>(),
            ["installs.svg", "health.svg", "bandwidth.svg"]
        );
        check(&files, &NAMES);
    }

    #[test]
    fn empty_and_single_sample_series_do_not_panic() {
        let dir = tempfile::tempdir().unwrap();
        let mut ts = TimeSeries::new(vec!["canary".into(), "fleet".into()]);
        let files = write_plots(&ts, dir.path().join("empty")).unwrap();
        check(&files, &NAMES);

        ts.push(sample(3.0, 0));
        let files = write_plots(&ts, dir.path().join("one")).unwrap();
        check(&files, &NAMES);

        let no_waves = TimeSeries::default();
        write_plots(&no_waves, dir.path().join("none")).unwrap();

        let mut weird = TimeSeries::new(vec!["w".into()]);
        let mut s = sample(f64::NAN, 1);
        s.bandwidth_bps = f64::INFINITY;
        weird.push(s);
        weird.push(sample(1e12, 5));
        write_plots(&weird, dir.path().join("weird")).unwrap();
    }

    #[test]
    fn ranges_are_never_empty() {
        assert_eq!(axis_range([], false), 0.0..1.0);
        assert_eq!(axis_range([5.0], false), 5.0..6.0);
        assert_eq!(axis_range([0.0, 0.0], true), 0.0..1.0);
        assert_eq!(axis_range([f64::NAN, 2.0], true), 0.0..2.1);
        assert_eq!(
            steps(&[(0.0, 1.0), (2.0, 3.0)]),
            [(0.0, 1.0), (2.0, 1.0), (2.0, 3.0)]
        );
    }
}
