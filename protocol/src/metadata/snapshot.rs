//! Snapshot metadata, and [`MetaFile`], the pin one document holds on another.
//!
//! The snapshot pins the one targets document that is current: its version,
//! length and blake3 (`meta["targets.json"]`). Pinning the version stops
//! mix-and-match (an old targets with a new snapshot); pinning length and hash
//! stops a different document being passed off under the right version.
//! waveguard has no delegated targets, so `meta` holds exactly `targets.json`.
//! TUF leaves `length` and `hashes` optional; waveguard requires both and
//! requires a `blake3` hash (other hash names may be present and are ignored).

use crate::id::parse_hex32;
use crate::limits::{MAX_SNAPSHOT_BYTES, MAX_TARGETS_BYTES};
use crate::metadata::root::{check_header, FormatError, Metadata, RoleName};
use crate::metadata::signed::DecodeError;
use crate::time::{rfc3339, Timestamp};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use thiserror::Error;

/// The hash name waveguard writes and checks in `hashes`.
pub const BLAKE3: &str = "blake3";
/// The file name TUF uses for targets metadata in snapshot's `meta`.
pub const TARGETS_FILE: &str = "targets.json";
/// The file name TUF uses for snapshot metadata in timestamp's `meta`.
pub const SNAPSHOT_FILE: &str = "snapshot.json";

/// A pin on another document: its version, length and hashes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaFile {
    /// The pinned document's version.
    pub version: u64,
    /// Its length in bytes.
    pub length: u64,
    /// Hash name to lowercase hex digest; `blake3` is required.
    pub hashes: BTreeMap<String, String>,
}

impl MetaFile {
    /// The pin for `bytes`, a document at `version`.
    pub fn for_document(version: u64, bytes: &[u8]) -> Self {
        MetaFile {
            version,
            length: u64::try_from(bytes.len()).unwrap_or(u64::MAX),
            hashes: BTreeMap::from([(
                BLAKE3.to_string(),
                blake3::hash(bytes).to_hex().to_string(),
            )]),
        }
    }

    /// The blake3 digest, if present as 64 lowercase hex digits.
    pub fn blake3(&self) -> Option<[u8; 32]> {
        let h = self.hashes.get(BLAKE3)?;
        if h.bytes().any(|b| b.is_ascii_uppercase()) {
            return None;
        }
        parse_hex32(h)
    }

    /// Checks version, length and hash are usable; `limit` is the largest
    /// document of the pinned kind, so a pin can never ask for more.
    pub(crate) fn validate(&self, file: &'static str, limit: usize) -> Result<(), FormatError> {
        let bad = |reason: String| Err(FormatError::BadMetaFile { file, reason });
        if self.version == 0 {
            return bad("version is 0; metadata versions start at 1".into());
        }
        if usize::try_from(self.length).map_or(true, |l| l > limit) {
            return bad(format!(
                "length {} is over the limit of {limit}",
                self.length
            ));
        }
        if self.blake3().is_none() {
            return bad("hashes has no blake3 of 64 lowercase hex digits".into());
        }
        Ok(())
    }
}

/// The `meta` of a snapshot: exactly one entry, `targets.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotFiles {
    /// The current targets metadata.
    #[serde(rename = "targets.json")]
    pub targets: MetaFile,
}

/// The `signed` part of snapshot metadata.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Always [`RoleName::Snapshot`].
    #[serde(rename = "_type")]
    pub type_: RoleName,
    /// TUF specification version.
    pub spec_version: String,
    /// Version; equals timestamp's `meta["snapshot.json"].version`.
    pub version: u64,
    /// After this the snapshot may not be used.
    #[serde(with = "rfc3339")]
    pub expires: Timestamp,
    /// The pinned targets metadata.
    pub meta: SnapshotFiles,
}

impl Metadata for Snapshot {
    const ROLE: RoleName = RoleName::Snapshot;
    const MAX_BYTES: usize = MAX_SNAPSHOT_BYTES;
    const KIND: &'static str = "snapshot metadata";

    fn version(&self) -> u64 {
        self.version
    }

    fn expires(&self) -> Timestamp {
        self.expires
    }

    fn validate(&self) -> Result<(), FormatError> {
        check_header(
            RoleName::Snapshot,
            self.type_,
            &self.spec_version,
            self.version,
        )?;
        self.meta.targets.validate(TARGETS_FILE, MAX_TARGETS_BYTES)
    }
}

/// Accepting snapshot metadata failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// Endless data: the document is over [`MAX_SNAPSHOT_BYTES`] and was not parsed.
    #[error("snapshot metadata is {len} bytes, over the limit of {limit}")]
    TooLarge {
        /// Its size.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// Not a signed JSON document of the snapshot's shape.
    #[error(transparent)]
    Decode(DecodeError),
    /// Parsed, but breaks a rule of the snapshot format.
    #[error("snapshot metadata is invalid: {0}")]
    Invalid(FormatError),
    /// A snapshot can only be checked against a trusted timestamp.
    #[error("no trusted timestamp metadata to check the snapshot against")]
    NoTimestamp,
    /// Arbitrary installation: not one valid signature from the snapshot keys.
    #[error("snapshot metadata has no valid signature from the snapshot role's keys")]
    NoValidSignature,
    /// Some valid signatures, but fewer than the threshold.
    #[error("snapshot metadata has {valid} valid signature(s), below the snapshot threshold of {threshold}")]
    BelowThreshold {
        /// Distinct valid signatures.
        valid: u32,
        /// Required.
        threshold: u32,
    },
    /// Fast-forward attack: signed only by snapshot keys a later root revoked.
    #[error("snapshot metadata is signed by snapshot keys that root v{root_version} trusted but the current root revoked")]
    SignedByRevokedKeys {
        /// The newest root that still trusted the signing keys.
        root_version: u64,
    },
    /// Rollback: older than the trusted snapshot.
    #[error("snapshot v{got} is older than the trusted snapshot v{trusted}")]
    Rollback {
        /// Trusted version.
        trusted: u64,
        /// Offered version.
        got: u64,
    },
    /// Same version as the trusted snapshot, different content.
    #[error("snapshot v{version} differs from the trusted snapshot with the same version")]
    VersionReused {
        /// The version.
        version: u64,
    },
    /// Mix-and-match: not the version the trusted timestamp names.
    #[error("snapshot v{got} is not the v{expected} the trusted timestamp names")]
    VersionMismatch {
        /// Version in timestamp's `meta["snapshot.json"]`.
        expected: u64,
        /// Offered version.
        got: u64,
    },
    /// Arbitrary installation: length differs from the timestamp's pin.
    #[error("snapshot metadata is {got} bytes, the trusted timestamp says {expected}")]
    LengthMismatch {
        /// Pinned length.
        expected: u64,
        /// Actual length.
        got: u64,
    },
    /// Arbitrary installation: blake3 differs from the timestamp's pin.
    #[error("snapshot metadata has blake3 {got}, the trusted timestamp says {expected}")]
    HashMismatch {
        /// Pinned hash (hex).
        expected: String,
        /// Actual hash (hex).
        got: String,
    },
    /// Rollback: the snapshot names an older targets version than the one trusted.
    #[error("snapshot names targets v{got}, older than the trusted targets v{trusted}")]
    TargetsRollback {
        /// Targets version trusted before.
        trusted: u64,
        /// Version this snapshot names.
        got: u64,
    },
    /// Freeze attack: the snapshot has expired.
    #[error("snapshot v{version} expired at {expires} (now {now})")]
    Expired {
        /// The version.
        version: u64,
        /// Its expiry.
        expires: Timestamp,
        /// The time of the check.
        now: Timestamp,
    },
    /// The timestamp names a snapshot that was not supplied with it.
    #[error("the trusted timestamp names snapshot v{version}, which was not supplied")]
    NotProvided {
        /// Version the timestamp names.
        version: u64,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> Snapshot {
        Snapshot {
            type_: RoleName::Snapshot,
            spec_version: crate::metadata::root::SPEC_VERSION.into(),
            version: 3,
            expires: Timestamp::from_secs(2_000_000_000),
            meta: SnapshotFiles {
                targets: MetaFile::for_document(2, b"targets"),
            },
        }
    }

    #[test]
    fn meta_file_pins_length_and_blake3() {
        let m = MetaFile::for_document(7, b"hello");
        assert_eq!(m.length, 5);
        assert_eq!(m.blake3(), Some(*blake3::hash(b"hello").as_bytes()));
        m.validate(TARGETS_FILE, 10).unwrap();
        assert!(m.validate(TARGETS_FILE, 4).is_err());
    }

    #[test]
    fn meta_file_needs_lowercase_blake3_and_a_version() {
        let mut m = MetaFile::for_document(7, b"hello");
        let h = m.hashes[BLAKE3].to_uppercase();
        m.hashes.insert(BLAKE3.into(), h);
        assert!(m.validate(TARGETS_FILE, 10).is_err());
        let mut m = MetaFile::for_document(7, b"hello");
        m.hashes.clear();
        m.hashes.insert("sha256".into(), "00".repeat(32));
        assert!(m.validate(TARGETS_FILE, 10).is_err());
        let mut m = MetaFile::for_document(7, b"hello");
        m.version = 0;
        assert!(m.validate(TARGETS_FILE, 10).is_err());
    }

    #[test]
    fn snapshot_meta_is_exactly_targets_json() {
        snapshot().validate().unwrap();
        let mut v = serde_json::to_value(snapshot()).unwrap();
        assert!(v["meta"]["targets.json"]["hashes"]["blake3"].is_string());
        v["meta"]["role1.json"] = v["meta"]["targets.json"].clone();
        assert!(serde_json::from_value::<Snapshot>(v).is_err());
        let mut v = serde_json::to_value(snapshot()).unwrap();
        v["meta"] = serde_json::json!({});
        assert!(serde_json::from_value::<Snapshot>(v).is_err());
    }

    #[test]
    fn snapshot_checks_header_and_pin() {
        let mut s = snapshot();
        s.type_ = RoleName::Timestamp;
        assert!(matches!(s.validate(), Err(FormatError::WrongType { .. })));
        let mut s = snapshot();
        s.meta.targets.length = MAX_TARGETS_BYTES as u64 + 1;
        assert!(matches!(s.validate(), Err(FormatError::BadMetaFile { .. })));
    }
}
