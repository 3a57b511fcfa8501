//! The sweep table: aggregating the [`SweepOutcome`]s of a parameter sweep
//! into one row per combination of parameter values (across seeds: mean,
//! minimum and maximum of each headline metric) and writing it as
//! `sweep.csv`, `sweep.md` (a markdown table) and `sweep.svg` (mean download
//! max against the first parameter, one line per value of the second).
//!
//! Only successful runs contribute to the statistics, and a run contributes to
//! a metric only when its summary has a finite value for it (no bad release
//! means no blast radius, nobody finishing means no download max, …). Failed
//! runs are counted in each row and listed under the markdown table.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use plotters::prelude::*;
use toml::Value;

use super::plots::{axis_range, color, draw_to, tick, PlotError, SIZE};
use super::summary::Summary;
use crate::sweep::{value_text, SweepOutcome};

/// A headline metric of a run, aggregated across seeds in the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Metric {
    /// `download.p50`: median seconds until an endpoint held the release.
    DownloadP50,
    /// `download.max`: seconds until the last endpoint held the release.
    DownloadMax,
    /// `lower_bound.ratio`: download max over the P2P lower bound.
    BoundRatio,
    /// `completion.max` of the last wave: seconds until the last install.
    LastWaveMax,
    /// `bad_release.blast_radius`: fraction of endpoints that installed a bad
    /// release.
    BlastRadius,
    /// `bad_release.failure_to_halt_s`: seconds from the first failure to the
    /// first halt.
    FailureToHalt,
}

impl Metric {
    /// Every metric, in table column order.
    pub const ALL: [Metric; 6] = [
        Metric::DownloadP50,
        Metric::DownloadMax,
        Metric::BoundRatio,
        Metric::LastWaveMax,
        Metric::BlastRadius,
        Metric::FailureToHalt,
    ];

    /// The metric's column-name stem in `sweep.csv`.
    pub fn name(self) -> &'static str {
        match self {
            Metric::DownloadP50 => "download_p50_s",
            Metric::DownloadMax => "download_max_s",
            Metric::BoundRatio => "bound_ratio",
            Metric::LastWaveMax => "last_wave_max_s",
            Metric::BlastRadius => "blast_radius",
            Metric::FailureToHalt => "failure_to_halt_s",
        }
    }

    /// The metric's heading in `sweep.md`.
    pub fn title(self) -> &'static str {
        match self {
            Metric::DownloadP50 => "download p50 (s)",
            Metric::DownloadMax => "download max (s)",
            Metric::BoundRatio => "max / bound",
            Metric::LastWaveMax => "last wave done (s)",
            Metric::BlastRadius => "blast radius",
            Metric::FailureToHalt => "failure → halt (s)",
        }
    }

    /// The metric's value in one run's summary, if it has one.
    pub fn of(self, s: &Summary) -> Option<f64> {
        let bad = s.bad_release.as_ref();
        match self {
            Metric::DownloadP50 => s.download.p50,
            Metric::DownloadMax => s.download.max,
            Metric::BoundRatio => s.lower_bound.ratio,
            Metric::LastWaveMax => s.waves.last().and_then(|w| w.completion.max),
            Metric::BlastRadius => bad.map(|b| b.blast_radius),
            Metric::FailureToHalt => bad.and_then(|b| b.failure_to_halt_s),
        }
    }
}

/// Mean, minimum and maximum of one metric across a row's runs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Stat {
    /// How many runs had a finite value.
    pub n: u64,
    /// Their mean (`None` when `n == 0`).
    pub mean: Option<f64>,
    /// Their minimum.
    pub min: Option<f64>,
    /// Their maximum.
    pub max: Option<f64>,
}

impl Stat {
    /// The statistics of the finite `values` (others are ignored).
    pub fn of(values: impl IntoIterator<Item = f64>) -> Stat {
        let (mut n, mut sum) = (0u64, 0.0);
        let (mut min, mut max) = (f64::INFINITY, f64::NEG_INFINITY);
        for v in values.into_iter().filter(|v| v.is_finite()) {
            n += 1;
            sum += v;
            min = min.min(v);
            max = max.max(v);
        }
        if n == 0 {
            return Stat::default();
        }
        Stat {
            n,
            mean: Some(sum / n as f64),
            min: Some(min),
            max: Some(max),
        }
    }
}

/// One combination of parameter values, aggregated across its seeds.
#[derive(Clone, Debug, PartialEq)]
pub struct SweepRow {
    /// The parameters' paths and values.
    pub params: Vec<(String, Value)>,
    /// The seeds run for this combination, in outcome order.
    pub seeds: Vec<u64>,
    /// Error messages of the runs that failed.
    pub errors: Vec<String>,
    /// One entry per metric, in the order of [`Metric::ALL`].
    pub stats: Vec<Stat>,
}

impl SweepRow {
    /// The statistics of `metric`.
    pub fn stat(&self, metric: Metric) -> &Stat {
        let i = Metric::ALL
            .iter()
            .position(|m| *m == metric)
            .expect("every metric is in ALL");
        &self.stats[i]
    }

    /// How many runs succeeded.
    pub fn succeeded(&self) -> usize {
        self.seeds.len() - self.errors.len()
    }
}

/// A sweep's results, one row per combination of parameter values.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SweepTable {
    /// The swept parameters' paths (empty for a plain multi-seed run).
    pub param_names: Vec<String>,
    /// The rows, in the order their combinations first appear in the outcomes.
    pub rows: Vec<SweepRow>,
}

/// Why writing a sweep table failed.
#[derive(Debug, thiserror::Error)]
pub enum WriteTableError {
    /// The output directory could not be created.
    #[error("creating directory {path}: {source}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file could not be written.
    #[error("writing {path}: {source}")]
    Io {
        /// The file being written.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The chart could not be drawn.
    #[error(transparent)]
    Plot(#[from] PlotError),
}

/// Groups `outcomes` by their parameters and aggregates each group's
/// successful runs.
pub fn aggregate(outcomes: &[SweepOutcome]) -> SweepTable {
    type Group<'a> = (Vec<(String, Value)>, Vec<&'a SweepOutcome>);
    let mut groups: Vec<Group> = Vec::new();
    for o in outcomes {
        match groups.iter_mut().find(|(p, _)| *p == o.params) {
            Some((_, members)) => members.push(o),
            None => groups.push((o.params.clone(), vec![o])),
        }
    }
    let rows = groups
        .into_iter()
        .map(|(params, members)| {
            let ok: Vec<&Summary> = members
                .iter()
                .filter_map(|o| o.result.as_ref().ok())
                .collect();
            SweepRow {
                params,
                seeds: members.iter().map(|o| o.seed).collect(),
                errors: members
                    .iter()
                    .filter_map(|o| o.result.as_ref().err().cloned())
                    .collect(),
                stats: Metric::ALL
                    .iter()
                    .map(|m| Stat::of(ok.iter().filter_map(|s| m.of(s))))
                    .collect(),
            }
        })
        .collect();
    SweepTable {
        param_names: outcomes
            .first()
            .map(|o| o.params.iter().map(|(p, _)| p.clone()).collect())
            .unwrap_or_default(),
        rows,
    }
}

/// A CSV field, quoted when it contains a comma, quote or line break.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// An optional number for the CSV (empty when absent).
fn csv_num(v: Option<f64>) -> String {
    v.map(|x| x.to_string()).unwrap_or_default()
}

/// A number shortened for reading.
fn short(x: f64) -> String {
    let a = x.abs();
    if a == 0.0 {
        "0".into()
    } else if a >= 1000.0 {
        format!("{x:.0}")
    } else if a >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.4}")
    }
}

/// Text for a markdown cell, with pipes escaped and line breaks removed.
fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace(['\n', '\r'], " ")
}

impl SweepTable {
    /// The table as CSV: the parameter columns (named by path), `runs`,
    /// `failed`, then `<metric>_mean`, `<metric>_min`, `<metric>_max` for each
    /// metric; missing statistics are empty cells.
    pub fn to_csv(&self) -> String {
        let mut header: Vec<String> = self.param_names.iter().map(|p| csv_field(p)).collect();
        header.push("runs".into());
        header.push("failed".into());
        for m in Metric::ALL {
            for suffix in ["mean", "min", "max"] {
                header.push(format!("{}_{suffix}", m.name()));
            }
        }
        let mut out = header.join(",");
        out.push('\n');
        for row in &self.rows {
            let mut cells: Vec<String> = row
                .params
                .iter()
                .map(|(_, v)| csv_field(&value_text(v)))
                .collect();
            cells.push(row.seeds.len().to_string());
            cells.push(row.errors.len().to_string());
            for s in &row.stats {
                cells.extend([csv_num(s.mean), csv_num(s.min), csv_num(s.max)]);
            }
            out.push_str(&cells.join(","));
            out.push('\n');
        }
        out
    }

    /// The table in markdown: one row per combination, each metric shown as
    /// `mean [min, max]`, followed by the list of failed runs if any.
    pub fn to_markdown(&self) -> String {
        let mut head: Vec<String> = self.param_names.iter().map(|p| format!("`{p}`")).collect();
        head.push("runs".into());
        head.push("failed".into());
        head.extend(Metric::ALL.iter().map(|m| m.title().to_string()));
        let mut out = String::new();
        let _ = writeln!(
            out,
            "| {} |",
            head.iter()
                .map(|h| md_cell(h))
                .collect::<Vec<_>>()
                .join(" | ")
        );
        let _ = writeln!(out, "|{}", " --- |".repeat(head.len()));
        for row in &self.rows {
            let mut cells: Vec<String> = row
                .params
                .iter()
                .map(|(_, v)| md_cell(&value_text(v)))
                .collect();
            cells.push(row.seeds.len().to_string());
            cells.push(row.errors.len().to_string());
            for s in &row.stats {
                cells.push(match (s.mean, s.min, s.max) {
                    (Some(mean), Some(min), Some(max)) => {
                        format!("{} [{}, {}]", short(mean), short(min), short(max))
                    }
                    _ => "–".into(),
                });
            }
            let _ = writeln!(out, "| {} |", cells.join(" | "));
        }
        let errors: Vec<&String> = self.rows.iter().flat_map(|r| &r.errors).collect();
        if !errors.is_empty() {
            out.push_str("\nFailed runs:\n\n");
            for e in errors {
                let _ = writeln!(out, "- {}", md_cell(e));
            }
        }
        out
    }

    /// Writes [`to_csv`](SweepTable::to_csv) to `path`.
    pub fn write_csv(&self, path: impl AsRef<Path>) -> Result<(), WriteTableError> {
        write_text(path.as_ref(), &self.to_csv())
    }

    /// Writes [`to_markdown`](SweepTable::to_markdown) to `path`.
    pub fn write_markdown(&self, path: impl AsRef<Path>) -> Result<(), WriteTableError> {
        write_text(path.as_ref(), &self.to_markdown())
    }

    /// Draws the mean download max against the first parameter, one line per
    /// value of the second parameter (if any), to the SVG file `path`. A
    /// non-numeric first parameter is placed on evenly spaced categories;
    /// without parameters the chart has a single point.
    pub fn write_svg(&self, path: impl AsRef<Path>) -> Result<(), WriteTableError> {
        let path = path.as_ref();
        let x_name = self.param_names.first().cloned().unwrap_or_default();
        let first = |row: &SweepRow| row.params.first().map(|(_, v)| v.clone());
        let numeric = self
            .rows
            .iter()
            .all(|r| matches!(first(r), Some(Value::Integer(_)) | Some(Value::Float(_))))
            && !self.rows.is_empty();
        // Category names for a non-numeric (or absent) first parameter.
        let mut categories: Vec<String> = Vec::new();
        let mut x_of = |row: &SweepRow| -> f64 {
            match first(row) {
                Some(Value::Integer(i)) if numeric => i as f64,
                Some(Value::Float(f)) if numeric => f,
                other => {
                    let name = other
                        .map(|v| value_text(&v))
                        .unwrap_or_else(|| "all runs".into());
                    match categories.iter().position(|c| *c == name) {
                        Some(i) => i as f64,
                        None => {
                            categories.push(name);
                            (categories.len() - 1) as f64
                        }
                    }
                }
            }
        };
        // One line per value of the second parameter, in first-appearance order.
        let mut lines: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
        for row in &self.rows {
            let x = x_of(row);
            let label = match row.params.get(1) {
                Some((p, v)) => format!("{p}={}", value_text(v)),
                None => "mean download max".to_string(),
            };
            let idx = match lines.iter().position(|(l, _)| *l == label) {
                Some(i) => i,
                None => {
                    lines.push((label, Vec::new()));
                    lines.len() - 1
                }
            };
            if let Some(y) = row.stat(Metric::DownloadMax).mean.filter(|y| y.is_finite()) {
                if x.is_finite() {
                    lines[idx].1.push((x, y));
                }
            }
        }
        for (_, pts) in &mut lines {
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        }
        let x_range = if numeric {
            let r = axis_range(lines.iter().flat_map(|(_, p)| p.iter().map(|q| q.0)), false);
            let pad = (r.end - r.start) * 0.05;
            r.start - pad..r.end + pad
        } else {
            -0.5..(categories.len().max(1) as f64 - 0.5)
        };
        let y_range = axis_range(lines.iter().flat_map(|(_, p)| p.iter().map(|q| q.1)), true);
        let x_desc = if x_name.is_empty() {
            "runs".to_string()
        } else {
            x_name.clone()
        };
        let title = if x_name.is_empty() {
            "Mean download max".to_string()
        } else {
            format!("Mean download max vs {x_name}")
        };
        // Put the legend in the upper corner away from the highest point.
        let highest = lines
            .iter()
            .flat_map(|(_, p)| p.iter())
            .max_by(|a, b| a.1.total_cmp(&b.1));
        let legend_at = match highest {
            Some(&(x, _)) if x > (x_range.start + x_range.end) / 2.0 => {
                SeriesLabelPosition::UpperLeft
            }
            _ => SeriesLabelPosition::UpperRight,
        };
        draw_to(path, |path| {
            let root = SVGBackend::new(path, SIZE).into_drawing_area();
            root.fill(&WHITE)?;
            let mut chart = ChartBuilder::on(&root)
                .caption(title.as_str(), ("sans-serif", 22))
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(70)
                .build_cartesian_2d(x_range, y_range)?;
            let label_category = |x: &f64| {
                let i = x.round();
                if (x - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < categories.len() {
                    categories[i as usize].clone()
                } else {
                    String::new()
                }
            };
            let mut mesh = chart.configure_mesh();
            mesh.x_desc(x_desc.as_str())
                .y_desc("mean download max (s)")
                .y_label_formatter(&tick);
            if numeric {
                mesh.x_label_formatter(&tick);
            } else {
                mesh.x_labels(categories.len().max(1) + 1)
                    .x_label_formatter(&label_category);
            }
            mesh.draw()?;
            for (i, (label, pts)) in lines.iter().enumerate() {
                let c = color(i);
                let style = c.stroke_width(2);
                chart
                    .draw_series(LineSeries::new(pts.iter().copied(), style))?
                    .label(label.as_str())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
                chart.draw_series(pts.iter().map(|&p| Circle::new(p, 4, c.filled())))?;
            }
            if !lines.is_empty() {
                chart
                    .configure_series_labels()
                    .position(legend_at)
                    .background_style(WHITE.mix(0.85))
                    .border_style(BLACK)
                    .draw()?;
            }
            root.present()?;
            Ok(())
        })?;
        Ok(())
    }

    /// Writes `sweep.csv`, `sweep.md` and `sweep.svg` into `dir` (created if
    /// missing) and returns their paths in that order.
    pub fn write_all(&self, dir: impl AsRef<Path>) -> Result<Vec<PathBuf>, WriteTableError> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|source| WriteTableError::CreateDir {
            path: dir.to_owned(),
            source,
        })?;
        let csv = dir.join("sweep.csv");
        let md = dir.join("sweep.md");
        let svg = dir.join("sweep.svg");
        self.write_csv(&csv)?;
        self.write_markdown(&md)?;
        self.write_svg(&svg)?;
        Ok(vec![csv, md, svg])
    }
}

/// Writes `text` to `path`, naming the file on failure.
fn write_text(path: &Path, text: &str) -> Result<(), WriteTableError> {
    std::fs::write(path, text).map_err(|source| WriteTableError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Aggregates `outcomes` and writes `sweep.csv`, `sweep.md` and `sweep.svg`
/// into `dir`; returns the table and the files' paths.
pub fn write_sweep_table(
    outcomes: &[SweepOutcome],
    dir: impl AsRef<Path>,
) -> Result<(SweepTable, Vec<PathBuf>), WriteTableError> {
    let table = aggregate(outcomes);
    let files = table.write_all(dir)?;
    Ok((table, files))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::summary::{BadReleaseSummary, Percentiles, WaveSummary};

    fn summary(p50: f64, max: f64, ratio: f64, last: f64, bad: Option<(f64, f64)>) -> Summary {
        Summary {
            download: Percentiles {
                count: 10,
                p50: Some(p50),
                p99: Some(max),
                max: Some(max),
            },
            lower_bound: crate::bound::BoundSummary {
                ratio: Some(ratio),
                ..Default::default()
            },
            waves: vec![
                WaveSummary {
                    name: "canary".into(),
                    completion: Percentiles {
                        max: Some(1.0),
                        ..Default::default()
                    },
                    ..Default::default()
                },
                WaveSummary {
                    name: "all".into(),
                    completion: Percentiles {
                        max: Some(last),
                        ..Default::default()
                    },
                    ..Default::default()
                },
            ],
            bad_release: bad.map(|(radius, halt)| BadReleaseSummary {
                blast_radius: radius,
                failure_to_halt_s: Some(halt),
                ..Default::default()
            }),
            ..Summary::default()
        }
    }

    fn outcome(a: i64, b: &str, seed: u64, result: Result<Summary, String>) -> SweepOutcome {
        SweepOutcome {
            params: vec![
                ("sites.0.upload_mbps".into(), Value::Integer(a)),
                ("mode".into(), Value::String(b.into())),
            ],
            seed,
            result,
        }
    }

    fn outcomes() -> Vec<SweepOutcome> {
        vec![
            outcome(
                1,
                "x",
                1,
                Ok(summary(10.0, 20.0, 2.0, 30.0, Some((0.01, 5.0)))),
            ),
            outcome(1, "x", 2, Ok(summary(14.0, 40.0, 4.0, 50.0, None))),
            outcome(
                1,
                "y",
                1,
                Ok(summary(8.0, 16.0, 1.6, 20.0, Some((0.02, 3.0)))),
            ),
            outcome(1, "y", 2, Err("seed=2: boom".into())),
            outcome(2, "x", 1, Ok(summary(5.0, 10.0, 1.0, 12.0, None))),
            outcome(2, "x", 2, Ok(summary(7.0, 12.0, 1.2, 14.0, None))),
            outcome(2, "y", 1, Err("seed=1: bust".into())),
            outcome(2, "y", 2, Err("seed=2: bust, again".into())),
        ]
    }

    #[test]
    fn aggregates_across_seeds() {
        let t = aggregate(&outcomes());
        assert_eq!(t.param_names, ["sites.0.upload_mbps", "mode"]);
        assert_eq!(t.rows.len(), 4);
        let r = &t.rows[0];
        assert_eq!(r.seeds, [1, 2]);
        assert_eq!(r.succeeded(), 2);
        assert_eq!(
            r.stat(Metric::DownloadP50),
            &Stat {
                n: 2,
                mean: Some(12.0),
                min: Some(10.0),
                max: Some(14.0)
            }
        );
        assert_eq!(r.stat(Metric::DownloadMax).mean, Some(30.0));
        assert_eq!(r.stat(Metric::BoundRatio).mean, Some(3.0));
        assert_eq!(r.stat(Metric::LastWaveMax).max, Some(50.0));
        // Only the run with a bad release counts for its metrics.
        assert_eq!(r.stat(Metric::BlastRadius).n, 1);
        assert_eq!(r.stat(Metric::BlastRadius).mean, Some(0.01));
        assert_eq!(r.stat(Metric::FailureToHalt).mean, Some(5.0));

        let r = &t.rows[1];
        assert_eq!(r.errors, ["seed=2: boom"]);
        assert_eq!(r.stat(Metric::DownloadMax).n, 1);
        assert_eq!(r.stat(Metric::DownloadMax).mean, Some(16.0));

        let r = &t.rows[3];
        assert_eq!(r.succeeded(), 0);
        assert!(r.stats.iter().all(|s| *s == Stat::default()));
    }

    #[test]
    fn stat_ignores_non_finite() {
        assert_eq!(Stat::of([]), Stat::default());
        let s = Stat::of([1.0, f64::NAN, 3.0, f64::INFINITY]);
        assert_eq!(
            (s.n, s.mean, s.min, s.max),
            (2, Some(2.0), Some(1.0), Some(3.0))
        );
    }

    #[test]
    fn csv_and_markdown() {
        let t = aggregate(&outcomes());
        let csv = t.to_csv();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 5);
        assert!(lines[0].starts_with(
            "sites.0.upload_mbps,mode,runs,failed,download_p50_s_mean,download_p50_s_min,download_p50_s_max,"
        ));
        assert_eq!(lines[0].split(',').count(), 4 + 3 * Metric::ALL.len());
        assert!(
            lines[1].starts_with("1,x,2,0,12,10,14,30,20,40,3,2,4,40,30,50,0.01,0.01,0.01,5,5,5")
        );
        assert!(lines[4].starts_with("2,y,2,2,,,"), "{}", lines[4]);

        let md = t.to_markdown();
        let rows: Vec<&str> = md.lines().take_while(|l| l.starts_with('|')).collect();
        assert_eq!(rows.len(), 2 + 4);
        assert!(rows[0]
            .starts_with("| `sites.0.upload_mbps` | `mode` | runs | failed | download p50 (s)"));
        assert!(rows[2].contains("| 12.00 [10.00, 14.00] |"), "{}", rows[2]);
        assert!(md.contains("- seed=2: bust, again"));
    }

    #[test]
    fn writes_three_files() {
        let dir = tempfile::tempdir().unwrap();
        let (table, files) = write_sweep_table(&outcomes(), dir.path().join("sweep")).unwrap();
        assert_eq!(table.rows.len(), 4);
        assert_eq!(files.len(), 3);
        let svg = std::fs::read_to_string(&files[2]).unwrap();
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("mode=x") && svg.contains("mode=y"), "{svg}");
        assert!(svg.contains("sites.0.upload_mbps"));
        assert_eq!(std::fs::read_to_string(&files[0]).unwrap(), table.to_csv());

        // Degenerate tables draw too: no outcomes, no parameters, string parameter.
        SweepTable::default()
            .write_all(dir.path().join("empty"))
            .unwrap();
        let plain = vec![SweepOutcome {
            params: vec![],
            seed: 1,
            result: Ok(summary(1.0, 2.0, 1.0, 3.0, None)),
        }];
        write_sweep_table(&plain, dir.path().join("plain")).unwrap();
        let named: Vec<SweepOutcome> = ["fast", "slow"]
            .iter()
            .map(|m| SweepOutcome {
                params: vec![("mode".into(), Value::String(m.to_string()))],
                seed: 1,
                result: Ok(summary(1.0, 2.0, 1.0, 3.0, None)),
            })
            .collect();
        let (_, files) = write_sweep_table(&named, dir.path().join("named")).unwrap();
        let svg = std::fs::read_to_string(&files[2]).unwrap();
        assert!(svg.contains("fast") && svg.contains("slow"));
    }
}
