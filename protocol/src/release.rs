//! A release: one TUF target entry plus waveguard's `custom` fields.
//!
//! The vendor signs, inside targets metadata, everything a node needs to act
//! on a release without asking anyone: the artifact's length and blake3, a
//! reference to its chunk list, the chunker parameters, and the rollout policy
//! (waves, bake times, health gate). [`Release::from_target`] validates an entry
//! and is the only way to obtain a [`Release`], so code that holds one can rely
//! on every bound below.

use crate::id::{parse_hex32, ReleaseId};
use crate::limits::{
    MAX_ARTIFACT_BYTES, MAX_CHUNKS_PER_RELEASE, MAX_CHUNK_BYTES, MAX_MIN_REPORTS, MAX_NAME_BYTES,
    MAX_WAVES, MIN_CHUNK_MIN,
};
use crate::time::{rfc3339, Timestamp};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use thiserror::Error;

/// One million: percentages and ratios are integers in parts per million,
/// because canonical JSON has no floats.
pub const PPM: u32 = 1_000_000;

pub use crate::limits::{MAX_CHUNK_AVG, MAX_CHUNK_MIN};

/// The only chunker algorithm name defined so far.
pub const CHUNKER_FASTCDC_V2020: &str = "fastcdc-v2020";

/// A TUF target entry (`signed.targets[path]` in targets metadata).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetFile {
    /// Artifact length in bytes.
    pub length: u64,
    /// Hash name to lowercase hex digest; waveguard requires `blake3`.
    pub hashes: BTreeMap<String, String>,
    /// Free-form; waveguard's fields live under the key `waveguard`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom: Option<serde_json::Value>,
}

/// waveguard's fields: `custom.waveguard` of a target entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseInfo {
    /// Product name, e.g. `acme-sensor`.
    pub product: String,
    /// Version string, e.g. `7.11.0`.
    pub version: String,
    /// Where the chunk list is and how to check it.
    pub chunk_list: ChunkListRef,
    /// How the artifact was cut into chunks.
    pub chunker: ChunkerParams,
    /// When and to whom the release may be installed.
    pub rollout: RolloutPolicy,
}

/// A reference to the chunk list of a release.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkListRef {
    /// Length of the encoded chunk list in bytes.
    pub length: u64,
    /// Lowercase hex blake3 of the encoded chunk list.
    pub blake3: String,
    /// Number of chunks.
    pub chunks: u32,
}

/// Chunker parameters, in bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkerParams {
    /// Always `fastcdc-v2020` for now.
    pub algorithm: String,
    /// Smallest chunk (the last chunk may be smaller).
    pub min_size: u32,
    /// Target average chunk size.
    pub avg_size: u32,
    /// Largest chunk.
    pub max_size: u32,
}

impl Default for ChunkerParams {
    fn default() -> Self {
        ChunkerParams {
            algorithm: CHUNKER_FASTCDC_V2020.into(),
            min_size: crate::limits::DEFAULT_CHUNK_MIN,
            avg_size: crate::limits::DEFAULT_CHUNK_AVG,
            max_size: crate::limits::DEFAULT_CHUNK_MAX,
        }
    }
}

/// The signed rollout policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutPolicy {
    /// When wave 0 opens; every bake time counts from here, so all nodes share one timeline.
    #[serde(with = "rfc3339")]
    pub start: Timestamp,
    /// Waves in order; cumulative shares strictly increase and the last is 100%.
    pub waves: Vec<WaveSpec>,
    /// The health gate applied to every wave.
    pub health: HealthPolicy,
}

/// One wave of a rollout.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaveSpec {
    /// A name for people, e.g. `canary`.
    pub name: String,
    /// Share of the fleet in this wave or an earlier one, in parts per million.
    pub cumulative_ppm: u32,
    /// How long this wave bakes before the next may open, in seconds.
    pub bake_seconds: u64,
}

/// The health gate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthPolicy {
    /// A wave fails when failed/reporting reaches this, in parts per million.
    pub max_failure_ppm: u32,
    /// Reports needed before a wave can fail, and healthy reports needed before it can pass.
    pub min_reports: u32,
    /// An installed node silent for this long counts as failed, in seconds.
    pub silence_seconds: u64,
    /// How often an installed node sends a heartbeat, in seconds.
    pub heartbeat_seconds: u64,
    /// The share of each wave that reports health, in parts per million: a
    /// node reports only if it is in the release's report sample
    /// ([`crate::wave::reports_health`]), and the gate counts only sampled
    /// nodes. Absent means [`PPM`], every node (the encoding of a policy
    /// without sampling is unchanged). A fleet of millions sets this so that
    /// each wave has a few hundred reporters: every node receives every
    /// report, so health traffic per node follows the sample, not the fleet.
    #[serde(default = "every_node", skip_serializing_if = "is_every_node")]
    pub report_ppm: u32,
}

fn every_node() -> u32 {
    PPM
}

fn is_every_node(ppm: &u32) -> bool {
    *ppm == PPM
}

/// A target entry is not a usable waveguard release.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReleaseError {
    /// No `custom.waveguard` object, or it does not have the expected fields.
    #[error("target {path:?} has no valid custom.waveguard release fields: {reason}")]
    NotARelease {
        /// The target path.
        path: String,
        /// What the parser said.
        reason: String,
    },
    /// `hashes.blake3` is missing or not 64 lowercase hex digits.
    #[error("target {0:?} has no blake3 hash of 64 lowercase hex digits")]
    MissingBlake3(String),
    /// A name is empty, too long, or holds something other than printable ASCII without space, `"` or `\\`.
    #[error("{field} {value:?} must be 1 to {max} bytes of printable ASCII without spaces, quotes or backslashes")]
    BadName {
        /// Which field.
        field: &'static str,
        /// Its value (shortened).
        value: String,
        /// The longest allowed.
        max: usize,
    },
    /// A size or count is out of bounds.
    #[error("{0}")]
    OutOfBounds(String),
    /// The rollout policy is inconsistent.
    #[error("rollout policy: {0}")]
    BadPolicy(String),
}

/// A validated release.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Release {
    /// Derived ID (see [`ReleaseId::derive`]).
    pub id: ReleaseId,
    /// The TUF target path.
    pub target_path: String,
    /// Artifact length.
    pub length: u64,
    /// Artifact blake3.
    pub blake3: [u8; 32],
    /// Chunk list blake3.
    pub chunk_list_blake3: [u8; 32],
    /// The waveguard fields.
    pub info: ReleaseInfo,
}

/// Names are printable ASCII without spaces, quotes or backslashes, so that their
/// canonical JSON is the same in every implementation (olpc-cjson normalises
/// Unicode and python-tuf does not) and they are safe in file names and logs.
fn check_name(field: &'static str, value: &str) -> Result<(), ReleaseError> {
    let allowed = |b: u8| b.is_ascii_graphic() && b != b'"' && b != b'\\';
    if value.is_empty() || value.len() > MAX_NAME_BYTES || !value.bytes().all(allowed) {
        return Err(ReleaseError::BadName {
            field,
            value: value.chars().take(64).collect(),
            max: MAX_NAME_BYTES,
        });
    }
    Ok(())
}

fn lower_hex32(s: &str) -> Option<[u8; 32]> {
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    parse_hex32(s)
}

impl Release {
    /// Validates a target entry and derives its release ID.
    pub fn from_target(path: &str, target: &TargetFile) -> Result<Release, ReleaseError> {
        check_name("target path", path)?;
        let blake3 = target
            .hashes
            .get("blake3")
            .and_then(|h| lower_hex32(h))
            .ok_or_else(|| ReleaseError::MissingBlake3(path.into()))?;
        let custom = target
            .custom
            .as_ref()
            .and_then(|c| c.get("waveguard"))
            .ok_or_else(|| ReleaseError::NotARelease {
                path: path.into(),
                reason: "custom.waveguard is missing".into(),
            })?;
        let info: ReleaseInfo =
            serde_json::from_value(custom.clone()).map_err(|e| ReleaseError::NotARelease {
                path: path.into(),
                reason: e.to_string(),
            })?;
        check_name("product", &info.product)?;
        check_name("version", &info.version)?;
        if target.length > MAX_ARTIFACT_BYTES {
            return Err(ReleaseError::OutOfBounds(format!(
                "artifact length {} is over the limit of {MAX_ARTIFACT_BYTES}",
                target.length
            )));
        }
        let chunk_list_blake3 = lower_hex32(&info.chunk_list.blake3).ok_or_else(|| {
            ReleaseError::OutOfBounds("chunk_list.blake3 is not 64 lowercase hex digits".into())
        })?;
        info.chunker.validate()?;
        let n = info.chunk_list.chunks;
        if n > MAX_CHUNKS_PER_RELEASE {
            return Err(ReleaseError::OutOfBounds(format!(
                "{n} chunks is over the limit of {MAX_CHUNKS_PER_RELEASE}"
            )));
        }
        if info.chunk_list.length != crate::chunk::encoded_list_len(n) {
            return Err(ReleaseError::OutOfBounds(format!(
                "chunk list length {} does not match {n} chunks",
                info.chunk_list.length
            )));
        }
        // Every chunk is at most max_size and at least one byte.
        let (lo, hi) = (
            u64::from(n.min(1)),
            u64::from(n) * u64::from(info.chunker.max_size),
        );
        if target.length < lo || target.length > hi || (n == 0 && target.length != 0) {
            return Err(ReleaseError::OutOfBounds(format!(
                "artifact length {} cannot be cut into {n} chunks of at most {} bytes",
                target.length, info.chunker.max_size
            )));
        }
        info.rollout.validate()?;
        Ok(Release {
            id: ReleaseId::derive(&info.product, &info.version, &blake3),
            target_path: path.into(),
            length: target.length,
            blake3,
            chunk_list_blake3,
            info,
        })
    }

    /// The rollout policy.
    pub fn policy(&self) -> &RolloutPolicy {
        &self.info.rollout
    }
}

impl ChunkerParams {
    /// Checks the algorithm name and `MIN_CHUNK_MIN <= min <= avg <= max <= MAX_CHUNK_BYTES`.
    pub fn validate(&self) -> Result<(), ReleaseError> {
        if self.algorithm != CHUNKER_FASTCDC_V2020 {
            return Err(ReleaseError::OutOfBounds(format!(
                "chunker {:?} is unknown (expected {CHUNKER_FASTCDC_V2020})",
                self.algorithm.chars().take(32).collect::<String>()
            )));
        }
        // FastCDC 2020 itself refuses a minimum over 1 MiB or an average over 4 MiB.
        let ok = MIN_CHUNK_MIN <= self.min_size
            && self.min_size <= self.avg_size
            && self.avg_size <= self.max_size
            && self.max_size <= MAX_CHUNK_BYTES
            && self.min_size <= MAX_CHUNK_MIN
            && self.avg_size <= MAX_CHUNK_AVG;
        if !ok {
            return Err(ReleaseError::OutOfBounds(format!(
                "chunker sizes min {} avg {} max {} must satisfy {MIN_CHUNK_MIN} <= min <= avg <= max <= {MAX_CHUNK_BYTES}, min <= {MAX_CHUNK_MIN} and avg <= {MAX_CHUNK_AVG}",
                self.min_size, self.avg_size, self.max_size
            )));
        }
        Ok(())
    }
}

impl RolloutPolicy {
    /// Checks the waves and the health gate.
    pub fn validate(&self) -> Result<(), ReleaseError> {
        let bad = |m: String| Err(ReleaseError::BadPolicy(m));
        if self.waves.is_empty() || self.waves.len() > MAX_WAVES {
            return bad(format!(
                "needs 1 to {MAX_WAVES} waves, has {}",
                self.waves.len()
            ));
        }
        let mut prev = 0u32;
        for (i, w) in self.waves.iter().enumerate() {
            check_name("wave name", &w.name)?;
            if w.cumulative_ppm <= prev || w.cumulative_ppm > PPM {
                return bad(format!(
                    "wave {i} ({}) has cumulative_ppm {}; shares must strictly increase up to {PPM}",
                    w.name, w.cumulative_ppm
                ));
            }
            if w.bake_seconds > crate::limits::MAX_BAKE_SECONDS {
                return bad(format!("wave {i} bakes for more than a year"));
            }
            prev = w.cumulative_ppm;
        }
        if prev != PPM {
            return bad(format!(
                "the last wave must reach {PPM} ppm (100%), reaches {prev}"
            ));
        }
        let h = &self.health;
        if h.max_failure_ppm == 0 || h.max_failure_ppm > PPM {
            return bad(format!(
                "max_failure_ppm {} must be 1 to {PPM}",
                h.max_failure_ppm
            ));
        }
        if h.min_reports == 0 || h.min_reports > MAX_MIN_REPORTS {
            return bad(format!(
                "min_reports {} must be 1 to {MAX_MIN_REPORTS}",
                h.min_reports
            ));
        }
        if h.report_ppm == 0 || h.report_ppm > PPM {
            return bad(format!("report_ppm {} must be 1 to {PPM}", h.report_ppm));
        }
        if h.heartbeat_seconds == 0 || h.silence_seconds <= h.heartbeat_seconds {
            return bad(format!(
                "silence_seconds ({}) must exceed heartbeat_seconds ({}), which must be at least 1",
                h.silence_seconds, h.heartbeat_seconds
            ));
        }
        Ok(())
    }

    /// When wave `index` may open at the earliest: start plus the bake times of all earlier waves.
    pub fn scheduled_open(&self, index: usize) -> Timestamp {
        let secs: u64 = self.waves.iter().take(index).map(|w| w.bake_seconds).sum();
        self.start.plus_secs(secs)
    }

    /// When the last wave has finished baking; after this the rollout is complete.
    pub fn end(&self) -> Timestamp {
        self.scheduled_open(self.waves.len())
    }
}
