//! The run's time series: what the simulator samples at regular simulated
//! times (installs per wave, downloads, health, halts, bandwidth) and writing
//! it as a CSV file, one row per sample.
//!
//! Rates are in bytes per second. The CSV columns are `t_s`, one
//! `installed_<wave>` per wave, `downloaded`, `healthy`, `failed`,
//! `knowing_halt`, `waves_open`, `halted` (0 or 1), `bandwidth_bps`,
//! `wan_bps`, `seeder_upload_bps` and `delivered_bytes` (cumulative); numbers use Rust's shortest round-trip
//! formatting.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The state of the whole simulation at one simulated time.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Simulated seconds since the start of the run.
    pub t_s: f64,
    /// Cumulative installs per wave, in the order of [`TimeSeries::wave_names`].
    pub installed: Vec<u64>,
    /// Endpoints holding the whole release.
    pub downloaded: u64,
    /// Nodes whose install has passed its health probe so far.
    pub healthy: u64,
    /// Probe failures plus silent crashes so far.
    pub failed: u64,
    /// Nodes that know the rollout is halted.
    pub knowing_halt: u64,
    /// Waves open so far: the larger of the highest wave with an install and one past the
    /// waves whose gate passed on the seeder's view.
    pub waves_open: u64,
    /// Whether any node has learned of a halt so far.
    pub halted: bool,
    /// Sum of all transfer rates at this moment, in bytes per second.
    pub bandwidth_bps: f64,
    /// Sum of the rates of transfers that cross the WAN, in bytes per second.
    pub wan_bps: f64,
    /// The seeder's upload rate at this moment, in bytes per second.
    pub seeder_upload_bps: f64,
    /// Bulk bytes (chunks and large answers) delivered so far, nominal: the
    /// difference between two samples is the exact throughput of the interval.
    #[serde(default)]
    pub delivered_bytes: f64,
}

/// A run's samples in time order, with the names of the waves they count.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TimeSeries {
    /// The rollout waves, in rollout order; `Sample::installed` follows it.
    pub wave_names: Vec<String>,
    /// The samples, in increasing `t_s`.
    pub samples: Vec<Sample>,
}

/// Why [`TimeSeries::write_csv`] failed.
#[derive(Debug, thiserror::Error)]
pub enum WriteCsvError {
    /// The file could not be created or written.
    #[error("writing {path}: {source}")]
    Io {
        /// The file being written.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// A wave name reduced to characters safe in a CSV header: ASCII letters,
/// digits, `_` and `-`; anything else becomes `_`.
pub fn column_name(wave: &str) -> String {
    wave.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

impl TimeSeries {
    /// An empty series for the given waves.
    pub fn new(wave_names: Vec<String>) -> TimeSeries {
        TimeSeries {
            wave_names,
            samples: Vec::new(),
        }
    }

    /// Appends a sample.
    pub fn push(&mut self, sample: Sample) {
        self.samples.push(sample);
    }

    /// The CSV header's column names.
    pub fn csv_columns(&self) -> Vec<String> {
        let mut cols = vec!["t_s".to_string()];
        cols.extend(
            self.wave_names
                .iter()
                .map(|w| format!("installed_{}", column_name(w))),
        );
        cols.extend(
            [
                "downloaded",
                "healthy",
                "failed",
                "knowing_halt",
                "waves_open",
                "halted",
                "bandwidth_bps",
                "wan_bps",
                "seeder_upload_bps",
                "delivered_bytes",
            ]
            .map(String::from),
        );
        cols
    }

    /// Writes the header and one row per sample to `out`. A sample with fewer
    /// `installed` entries than there are waves gets 0 for the missing ones;
    /// extra entries are ignored.
    pub fn write_csv_to<W: Write>(&self, mut out: W) -> std::io::Result<()> {
        writeln!(out, "{}", self.csv_columns().join(","))?;
        for s in &self.samples {
            write!(out, "{}", s.t_s)?;
            for i in 0..self.wave_names.len() {
                write!(out, ",{}", s.installed.get(i).copied().unwrap_or(0))?;
            }
            writeln!(
                out,
                ",{},{},{},{},{},{},{},{},{},{}",
                s.downloaded,
                s.healthy,
                s.failed,
                s.knowing_halt,
                s.waves_open,
                u8::from(s.halted),
                s.bandwidth_bps,
                s.wan_bps,
                s.seeder_upload_bps,
                s.delivered_bytes
            )?;
        }
        out.flush()
    }

    /// Writes the series as CSV to `path`, replacing any existing file.
    pub fn write_csv(&self, path: impl AsRef<Path>) -> Result<(), WriteCsvError> {
        let path = path.as_ref();
        let io = |source| WriteCsvError::Io {
            path: path.to_owned(),
            source,
        };
        let file = std::fs::File::create(path).map_err(io)?;
        self.write_csv_to(std::io::BufWriter::new(file)).map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series() -> TimeSeries {
        let mut ts = TimeSeries::new(vec!["canary".into(), "wave 2".into()]);
        ts.push(Sample {
            t_s: 0.0,
            ..Sample::default()
        });
        ts.push(Sample {
            t_s: 12.5,
            installed: vec![3, 40],
            downloaded: 50,
            healthy: 42,
            failed: 1,
            knowing_halt: 7,
            waves_open: 2,
            halted: true,
            bandwidth_bps: 1.25e6,
            wan_bps: 0.5,
            seeder_upload_bps: 1e5,
            delivered_bytes: 6.25e7,
        });
        ts
    }

    #[test]
    fn csv_header_and_row_parse_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("series.csv");
        series().write_csv(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(
            lines[0],
            "t_s,installed_canary,installed_wave_2,downloaded,healthy,failed,knowing_halt,\
             waves_open,halted,bandwidth_bps,wan_bps,seeder_upload_bps,delivered_bytes"
        );
        let header: Vec<&str> = lines[0].split(',').collect();
        let row: Vec<&str> = lines[2].split(',').collect();
        assert_eq!(row.len(), header.len());
        let get = |name: &str| -> f64 {
            let i = header.iter().position(|h| *h == name).unwrap();
            row[i].parse().unwrap()
        };
        assert_eq!(get("t_s"), 12.5);
        assert_eq!(get("installed_canary"), 3.0);
        assert_eq!(get("installed_wave_2"), 40.0);
        assert_eq!(get("downloaded"), 50.0);
        assert_eq!(get("healthy"), 42.0);
        assert_eq!(get("failed"), 1.0);
        assert_eq!(get("knowing_halt"), 7.0);
        assert_eq!(get("waves_open"), 2.0);
        assert_eq!(get("halted"), 1.0);
        assert_eq!(get("bandwidth_bps"), 1.25e6);
        assert_eq!(get("wan_bps"), 0.5);
        assert_eq!(get("seeder_upload_bps"), 1e5);
        assert_eq!(get("delivered_bytes"), 6.25e7);
        // The first sample has no installs yet: zeros fill the wave columns.
        assert_eq!(lines[1], "0,0,0,0,0,0,0,0,0,0,0,0,0");
    }

    #[test]
    fn csv_error_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("no").join("series.csv");
        let err = series().write_csv(&path).unwrap_err();
        assert!(err.to_string().contains("series.csv"), "{err}");
    }
}
