//! `summary.json`: the serde types holding one run's results (timings,
//! per-wave completion, download percentiles against the P2P lower bound,
//! traffic per message kind, the outcome of a bad release, fault counters),
//! the nearest-rank percentiles they are built from, and writing and reading
//! the file.
//!
//! The simulator fills these types in; this module only defines them and
//! (de)serializes them. Seconds are `f64`, byte counts `u64`. A non-finite
//! `f64` is written by `serde_json` as `null`; the plain `f64` fields read such
//! a `null` back as NaN so a summary always round-trips.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::bound::BoundSummary;

/// The summary of one simulation run, written as `summary.json`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Summary {
    /// The scenario's name.
    pub scenario: String,
    /// The seed the run used.
    pub seed: u64,
    /// The hash of the run's event trace (hex), equal for equal seeds.
    pub trace_hash: String,
    /// The number of endpoints (downloaders, not counting the seeder).
    pub endpoints: u64,
    /// In a sampled fleet, the endpoints run as full engines (the rest follow
    /// twins); absent when every endpoint is an engine.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub engines: Option<u64>,
    /// The size of the release in bytes.
    pub release_bytes: u64,
    /// The byte scale the run used (bulk bytes moved = nominal / scale; reports are nominal).
    #[serde(default = "one")]
    pub byte_scale: u64,
    /// Events processed.
    pub events: u64,
    /// Wall-clock seconds the run took.
    #[serde(deserialize_with = "null_as_nan")]
    pub wall_seconds: f64,
    /// Simulated seconds covered by the run.
    #[serde(deserialize_with = "null_as_nan")]
    pub simulated_seconds: f64,
    /// `events / wall_seconds`.
    #[serde(deserialize_with = "null_as_nan")]
    pub events_per_second: f64,
    /// The process's peak resident memory, when the platform reports it.
    pub peak_memory_bytes: Option<u64>,
    /// One entry per rollout wave, in rollout order.
    pub waves: Vec<WaveSummary>,
    /// Seconds from publication until each endpoint held the whole release.
    pub download: Percentiles,
    /// The same for the endpoints with no injected fault (neither corrupt nor lying).
    #[serde(default)]
    pub download_honest: Percentiles,
    /// The P2P lower bound on distribution time and how the run compares.
    pub lower_bound: BoundSummary,
    /// Bytes the seeder uploaded.
    pub seeder_upload_bytes: u64,
    /// Mean bytes sent per endpoint, by message kind (kind names are the
    /// simulator's: `chunk`, `request`, `metadata`, `health`, …).
    #[serde(deserialize_with = "map_null_as_nan")]
    pub bytes_per_node: BTreeMap<String, f64>,
    /// The outcome of a bad release, when the scenario published one.
    pub bad_release: Option<BadReleaseSummary>,
    /// Fault counters (`corrupt_chunks_served`, `bans`, `reports_withheld`, …).
    pub faults: BTreeMap<String, u64>,
    /// How many invariant checks ran (and passed).
    pub invariant_checks: u64,
    /// Per site (by name), nominal bytes that entered it across its WAN link.
    pub wan_in: BTreeMap<String, WanSummary>,
}

/// What crossed one site's WAN link inbound.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct WanSummary {
    /// Chunk bytes (nominal, as the release's size is).
    pub chunk_bytes: u64,
    /// Every message's bytes, chunks included.
    pub total_bytes: u64,
    /// `chunk_bytes` over the release's size: how often the release crossed the link.
    #[serde(deserialize_with = "null_as_nan")]
    pub releases: f64,
}

/// One rollout wave's results.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct WaveSummary {
    /// The wave's name.
    pub name: String,
    /// Endpoints assigned to the wave.
    pub eligible: u64,
    /// Endpoints of the wave that installed the release.
    pub installed: u64,
    /// Seconds from the rollout's start until each install.
    pub completion: Percentiles,
    /// Seconds from publishing until the wave's first install, if any.
    pub opened_at_s: Option<f64>,
}

/// What happened to a release that fails its health probes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BadReleaseSummary {
    /// Endpoints that installed the bad release.
    pub installed_bad: u64,
    /// `installed_bad` as a fraction of all endpoints.
    #[serde(deserialize_with = "null_as_nan")]
    pub blast_radius: f64,
    /// Probe failures plus silent crashes.
    pub failed: u64,
    /// Seconds from publishing until the first failure (failed probe or crash).
    pub first_failure_s: Option<f64>,
    /// Seconds from publishing until the first node learned of a halt.
    pub first_halt_s: Option<f64>,
    /// Seconds from the first failure to the first halt.
    pub failure_to_halt_s: Option<f64>,
    /// Seconds from the first failure until 99.9 % of live nodes (the seeder included) knew of the halt.
    pub failure_to_999_knowing_s: Option<f64>,
    /// Nodes (the seeder included) that knew of the halt at the end of the run.
    pub knowing_halt: u64,
}

/// Count, median, 99th percentile and maximum of a set of samples.
///
/// Percentiles use the nearest-rank definition: for `n` sorted samples
/// `x_1 ≤ … ≤ x_n`, the p-th percentile is `x_k` with `k = ⌈p/100 · n⌉`
/// (at least 1). It is always one of the samples. With no samples every value
/// is `None`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Percentiles {
    /// How many samples there were (NaN samples are not counted).
    pub count: u64,
    /// The 50th percentile.
    pub p50: Option<f64>,
    /// The 99th percentile.
    pub p99: Option<f64>,
    /// The largest sample.
    pub max: Option<f64>,
}

impl Percentiles {
    /// Percentiles of `samples`, which this sorts in place after dropping any
    /// NaN.
    pub fn from_samples(samples: &mut Vec<f64>) -> Percentiles {
        samples.retain(|x| !x.is_nan());
        samples.sort_by(f64::total_cmp);
        Percentiles {
            count: samples.len() as u64,
            p50: percentile(samples, 50.0),
            p99: percentile(samples, 99.0),
            max: samples.last().copied(),
        }
    }
}

/// The nearest-rank `p`-th percentile (`0 ≤ p ≤ 100`) of samples sorted in
/// ascending order: the sample of rank `⌈p/100 · n⌉`, clamped to `1..=n`.
/// `None` when `sorted` is empty.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    // Tolerate the rounding error of a non-integer `p` such as 99.9.
    let exact = p.clamp(0.0, 100.0) * n as f64 / 100.0;
    let rank = (exact - 1e-9).ceil().max(1.0) as usize;
    Some(sorted[rank.min(n) - 1])
}

/// Why [`Summary::write`] failed.
#[derive(Debug, thiserror::Error)]
pub enum WriteSummaryError {
    /// The summary could not be encoded as JSON.
    #[error("encoding the summary for {path}: {source}")]
    Encode {
        /// The file being written.
        path: PathBuf,
        /// The encoder's error.
        source: serde_json::Error,
    },
    /// The file could not be written.
    #[error("writing {path}: {source}")]
    Io {
        /// The file being written.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Why [`Summary::read`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadSummaryError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Io {
        /// The file being read.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a valid summary.
    #[error("parsing {path}: {source}")]
    Parse {
        /// The file being read.
        path: PathBuf,
        /// The decoder's error.
        source: serde_json::Error,
    },
}

impl Summary {
    /// The summary as pretty-printed JSON.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string_pretty(self)
    }

    /// Writes the summary to `path` as pretty-printed JSON (with a trailing
    /// newline), replacing any existing file.
    pub fn write(&self, path: impl AsRef<Path>) -> Result<(), WriteSummaryError> {
        let path = path.as_ref();
        let mut json = self.to_json().map_err(|source| WriteSummaryError::Encode {
            path: path.to_owned(),
            source,
        })?;
        json.push('\n');
        std::fs::write(path, json).map_err(|source| WriteSummaryError::Io {
            path: path.to_owned(),
            source,
        })
    }

    /// Reads a summary written by [`write`](Summary::write).
    pub fn read(path: impl AsRef<Path>) -> Result<Summary, ReadSummaryError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ReadSummaryError::Io {
            path: path.to_owned(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|source| ReadSummaryError::Parse {
            path: path.to_owned(),
            source,
        })
    }
}

/// Reads a number, or `null` (how `serde_json` writes NaN and ±∞) as NaN.
fn null_as_nan<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// [`null_as_nan`] for the values of a map.
fn map_null_as_nan<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, f64>, D::Error> {
    let raw = BTreeMap::<String, Option<f64>>::deserialize(d)?;
    Ok(raw
        .into_iter()
        .map(|(k, v)| (k, v.unwrap_or(f64::NAN)))
        .collect())
}

fn one() -> u64 {
    1
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bound::LowerBound;

    #[test]
    fn percentile_nearest_rank_by_hand() {
        let s = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0];
        assert_eq!(percentile(&s, 50.0), Some(5.0)); // ⌈5⌉ = 5th
        assert_eq!(percentile(&s, 99.0), Some(10.0)); // ⌈9.9⌉ = 10th
        assert_eq!(percentile(&s, 90.0), Some(9.0)); // ⌈9⌉ = 9th
        assert_eq!(percentile(&s, 91.0), Some(10.0)); // ⌈9.1⌉ = 10th
        assert_eq!(percentile(&s, 0.0), Some(1.0)); // clamped to rank 1
        assert_eq!(percentile(&s, 100.0), Some(10.0));
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&[7.0], 99.0), Some(7.0));
        let thousand: Vec<f64> = (1..=1000).map(f64::from).collect();
        assert_eq!(percentile(&thousand, 99.9), Some(999.0));
        assert_eq!(percentile(&thousand, 99.0), Some(990.0));
    }

    #[test]
    fn percentiles_from_unsorted_samples() {
        let mut v = vec![30.0, 10.0, f64::NAN, 20.0, 40.0];
        let p = Percentiles::from_samples(&mut v);
        assert_eq!(p.count, 4);
        assert_eq!(p.p50, Some(20.0)); // ⌈2⌉ = 2nd of 10, 20, 30, 40
        assert_eq!(p.p99, Some(40.0));
        assert_eq!(p.max, Some(40.0));
        assert_eq!(v, vec![10.0, 20.0, 30.0, 40.0]);
    }

    #[test]
    fn percentiles_of_nothing() {
        let p = Percentiles::from_samples(&mut Vec::new());
        assert_eq!(p, Percentiles::default());
        assert_eq!(p.count, 0);
        assert_eq!((p.p50, p.p99, p.max), (None, None, None));
    }

    fn sample_summary() -> Summary {
        let mut b = LowerBound::new(1_000_000, 100_000.0);
        b.add_peer(50_000.0, 200_000.0);
        Summary {
            scenario: "tiny".into(),
            seed: 7,
            trace_hash: "ab".repeat(16),
            endpoints: 1,
            engines: None,
            release_bytes: 1_000_000,
            byte_scale: 1,
            events: 42,
            wall_seconds: 0.5,
            simulated_seconds: 12.0,
            events_per_second: 84.0,
            peak_memory_bytes: None,
            waves: vec![WaveSummary {
                name: "canary".into(),
                eligible: 1,
                installed: 1,
                completion: Percentiles::from_samples(&mut vec![11.0]),
                opened_at_s: Some(0.0),
            }],
            download: Percentiles::from_samples(&mut vec![10.0]),
            download_honest: Percentiles::from_samples(&mut vec![10.0]),
            lower_bound: b.summary(Some(10.0)),
            seeder_upload_bytes: 1_000_000,
            bytes_per_node: [("chunk".to_string(), 1e6), ("have".to_string(), f64::NAN)]
                .into_iter()
                .collect(),
            bad_release: Some(BadReleaseSummary {
                installed_bad: 1,
                blast_radius: 1.0,
                failed: 1,
                first_failure_s: Some(11.5),
                ..BadReleaseSummary::default()
            }),
            faults: [("bans".to_string(), 2)].into_iter().collect(),
            invariant_checks: 3,
            wan_in: [(
                "remote".to_string(),
                WanSummary {
                    chunk_bytes: 10,
                    total_bytes: 12,
                    releases: 1.25,
                },
            )]
            .into_iter()
            .collect(),
        }
    }

    #[test]
    fn write_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("summary.json");
        let s = sample_summary();
        s.write(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\n  \"scenario\": \"tiny\""), "{text}");
        assert!(text.contains("\"have\": null"), "{text}");
        let back = Summary::read(&path).unwrap();
        assert!(back.bytes_per_node["have"].is_nan());
        let mut expected = s.clone();
        expected.bytes_per_node.remove("have");
        let mut back_cmp = back.clone();
        back_cmp.bytes_per_node.remove("have");
        assert_eq!(back_cmp, expected);
    }

    #[test]
    fn write_error_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing").join("summary.json");
        let err = Summary::default().write(&path).unwrap_err();
        assert!(err.to_string().contains("summary.json"), "{err}");
    }
}
