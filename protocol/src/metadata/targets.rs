//! Targets metadata: the vendor's signed list of releases.
//!
//! Each entry is a TUF target ([`TargetFile`]) whose `custom.waveguard` carries
//! the release fields; every entry must pass [`Release::from_target`] or the
//! whole document is refused, naming the target. At most
//! [`MAX_TARGETS`] entries. waveguard has no delegated targets: a
//! `delegations` field is ignored, so only the top-level targets role can
//! name a release.

use crate::id::ReleaseId;
use crate::limits::{MAX_TARGETS, MAX_TARGETS_BYTES};
use crate::metadata::root::{check_header, FormatError, Metadata, RoleName};
use crate::metadata::signed::DecodeError;
use crate::release::{Release, ReleaseError, TargetFile};
use crate::time::{rfc3339, Timestamp};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use thiserror::Error;

/// The `signed` part of targets metadata.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Targets {
    /// Always [`RoleName::Targets`].
    #[serde(rename = "_type")]
    pub type_: RoleName,
    /// TUF specification version.
    pub spec_version: String,
    /// Version; equals snapshot's `meta["targets.json"].version`.
    pub version: u64,
    /// After this the targets may not be used.
    #[serde(with = "rfc3339")]
    pub expires: Timestamp,
    /// Release artifacts by target path.
    pub targets: BTreeMap<String, TargetFile>,
}

impl Targets {
    /// Every entry as a validated [`Release`], in target-path order. Fails on the
    /// first entry that is not a valid release, or on two paths with one release ID.
    pub fn releases(&self) -> Result<Vec<Release>, TargetsError> {
        let mut out = Vec::with_capacity(self.targets.len());
        let mut ids: BTreeMap<ReleaseId, &str> = BTreeMap::new();
        for (path, target) in &self.targets {
            let release = Release::from_target(path, target).map_err(|source| {
                TargetsError::InvalidRelease {
                    path: path.chars().take(128).collect(),
                    source,
                }
            })?;
            if let Some(first) = ids.insert(release.id, path) {
                return Err(TargetsError::DuplicateRelease {
                    first: first.into(),
                    second: path.chars().take(128).collect(),
                });
            }
            out.push(release);
        }
        Ok(out)
    }
}

impl Metadata for Targets {
    const ROLE: RoleName = RoleName::Targets;
    const MAX_BYTES: usize = MAX_TARGETS_BYTES;
    const KIND: &'static str = "targets metadata";

    fn version(&self) -> u64 {
        self.version
    }

    fn expires(&self) -> Timestamp {
        self.expires
    }

    fn validate(&self) -> Result<(), FormatError> {
        check_header(
            RoleName::Targets,
            self.type_,
            &self.spec_version,
            self.version,
        )?;
        if self.targets.len() > MAX_TARGETS {
            return Err(FormatError::TooManyTargets {
                count: self.targets.len(),
                limit: MAX_TARGETS,
            });
        }
        Ok(())
    }
}

/// Accepting targets metadata failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum TargetsError {
    /// Endless data: the document is over [`MAX_TARGETS_BYTES`] and was not parsed.
    #[error("targets metadata is {len} bytes, over the limit of {limit}")]
    TooLarge {
        /// Its size.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// Not a signed JSON document of the targets' shape.
    #[error(transparent)]
    Decode(DecodeError),
    /// Parsed, but breaks a rule of the targets format.
    #[error("targets metadata is invalid: {0}")]
    Invalid(FormatError),
    /// Targets can only be checked against a trusted snapshot.
    #[error("no trusted snapshot metadata to check the targets against")]
    NoSnapshot,
    /// Arbitrary installation: not one valid signature from the targets keys.
    #[error("targets metadata has no valid signature from the targets role's keys")]
    NoValidSignature,
    /// Some valid signatures, but fewer than the threshold.
    #[error("targets metadata has {valid} valid signature(s), below the targets threshold of {threshold}")]
    BelowThreshold {
        /// Distinct valid signatures.
        valid: u32,
        /// Required.
        threshold: u32,
    },
    /// Fast-forward attack: signed only by targets keys a later root revoked.
    #[error("targets metadata is signed by targets keys that root v{root_version} trusted but the current root revoked")]
    SignedByRevokedKeys {
        /// The newest root that still trusted the signing keys.
        root_version: u64,
    },
    /// Rollback: older than the trusted targets.
    #[error("targets v{got} is older than the trusted targets v{trusted}")]
    Rollback {
        /// Trusted version.
        trusted: u64,
        /// Offered version.
        got: u64,
    },
    /// Same version as the trusted targets, different content.
    #[error("targets v{version} differs from the trusted targets with the same version")]
    VersionReused {
        /// The version.
        version: u64,
    },
    /// Mix-and-match: not the version the trusted snapshot names.
    #[error("targets v{got} is not the v{expected} the trusted snapshot names")]
    VersionMismatch {
        /// Version in snapshot's `meta["targets.json"]`.
        expected: u64,
        /// Offered version.
        got: u64,
    },
    /// Arbitrary installation: length differs from the snapshot's pin.
    #[error("targets metadata is {got} bytes, the trusted snapshot says {expected}")]
    LengthMismatch {
        /// Pinned length.
        expected: u64,
        /// Actual length.
        got: u64,
    },
    /// Arbitrary installation: blake3 differs from the snapshot's pin.
    #[error("targets metadata has blake3 {got}, the trusted snapshot says {expected}")]
    HashMismatch {
        /// Pinned hash (hex).
        expected: String,
        /// Actual hash (hex).
        got: String,
    },
    /// Freeze attack: the targets have expired.
    #[error("targets v{version} expired at {expires} (now {now})")]
    Expired {
        /// The version.
        version: u64,
        /// Its expiry.
        expires: Timestamp,
        /// The time of the check.
        now: Timestamp,
    },
    /// A signed entry is not a valid waveguard release; the whole document is refused.
    #[error("target {path:?} is not a valid release: {source}")]
    InvalidRelease {
        /// The target path.
        path: String,
        /// Why.
        source: ReleaseError,
    },
    /// Two target paths describe the same release (same product, version and artifact).
    #[error("targets {first:?} and {second:?} are the same release")]
    DuplicateRelease {
        /// The first path.
        first: String,
        /// The second path.
        second: String,
    },
    /// The snapshot names targets that were not supplied with it.
    #[error("the trusted snapshot names targets v{version}, which was not supplied")]
    NotProvided {
        /// Version the snapshot names.
        version: u64,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::release::{
        ChunkListRef, ChunkerParams, HealthPolicy, ReleaseInfo, RolloutPolicy, WaveSpec, PPM,
    };

    fn target(version: &str) -> TargetFile {
        let info = ReleaseInfo {
            product: "acme".into(),
            version: version.into(),
            chunk_list: ChunkListRef {
                length: crate::chunk::encoded_list_len(1),
                blake3: "11".repeat(32),
                chunks: 1,
            },
            chunker: ChunkerParams::default(),
            rollout: RolloutPolicy {
                start: Timestamp::from_secs(1_800_000_000),
                waves: vec![WaveSpec {
                    name: "all".into(),
                    cumulative_ppm: PPM,
                    bake_seconds: 60,
                }],
                health: HealthPolicy {
                    max_failure_ppm: 50_000,
                    min_reports: 1,
                    silence_seconds: 120,
                    heartbeat_seconds: 30,
                    report_ppm: 1_000_000,
                },
            },
        };
        TargetFile {
            length: 100,
            hashes: BTreeMap::from([("blake3".into(), "22".repeat(32))]),
            custom: Some(serde_json::json!({ "waveguard": info })),
        }
    }

    fn targets(entries: &[(&str, TargetFile)]) -> Targets {
        Targets {
            type_: RoleName::Targets,
            spec_version: crate::metadata::root::SPEC_VERSION.into(),
            version: 1,
            expires: Timestamp::from_secs(2_000_000_000),
            targets: entries
                .iter()
                .map(|(p, t)| (p.to_string(), t.clone()))
                .collect(),
        }
    }

    #[test]
    fn lists_releases_in_path_order() {
        let t = targets(&[("b", target("2")), ("a", target("1"))]);
        let rs = t.releases().unwrap();
        assert_eq!(
            rs.iter()
                .map(|r| r.target_path.as_str())
                .collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert_eq!(rs[0].info.version, "1");
    }

    #[test]
    fn one_bad_entry_refuses_the_document_and_names_it() {
        let mut bad = target("3");
        bad.hashes.clear();
        let t = targets(&[("a", target("1")), ("broken", bad)]);
        let err = t.releases().unwrap_err();
        assert!(matches!(&err, TargetsError::InvalidRelease { path, .. } if path == "broken"));
        assert!(err.to_string().contains("broken"));
    }

    #[test]
    fn the_same_release_under_two_paths_is_refused() {
        let t = targets(&[("a", target("1")), ("b", target("1"))]);
        assert!(matches!(
            t.releases(),
            Err(TargetsError::DuplicateRelease { .. })
        ));
    }

    #[test]
    fn target_count_is_bounded() {
        let mut t = targets(&[]);
        t.validate().unwrap();
        let one = target("1");
        for i in 0..=MAX_TARGETS {
            t.targets.insert(format!("t{i}"), one.clone());
        }
        assert!(matches!(
            t.validate(),
            Err(FormatError::TooManyTargets { .. })
        ));
    }
}
