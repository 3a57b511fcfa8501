//! Timestamp metadata: the short-lived document that says which snapshot is current.
//!
//! Named [`TimestampMeta`] so it does not clash with [`crate::time::Timestamp`].
//! It pins the snapshot's version, length and blake3 in `meta["snapshot.json"]`,
//! and its short expiry is what lets a node notice that it is being fed stale
//! metadata (the freeze attack).

use crate::limits::{MAX_SNAPSHOT_BYTES, MAX_TIMESTAMP_BYTES};
use crate::metadata::root::{check_header, FormatError, Metadata, RoleName};
use crate::metadata::signed::DecodeError;
use crate::metadata::snapshot::{MetaFile, SNAPSHOT_FILE};
use crate::time::{rfc3339, Timestamp};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The `meta` of a timestamp: exactly one entry, `snapshot.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimestampFiles {
    /// The current snapshot metadata.
    #[serde(rename = "snapshot.json")]
    pub snapshot: MetaFile,
}

/// The `signed` part of timestamp metadata.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimestampMeta {
    /// Always [`RoleName::Timestamp`].
    #[serde(rename = "_type")]
    pub type_: RoleName,
    /// TUF specification version.
    pub spec_version: String,
    /// Version; grows with every new timestamp.
    pub version: u64,
    /// After this the timestamp may not be used.
    #[serde(with = "rfc3339")]
    pub expires: Timestamp,
    /// The pinned snapshot metadata.
    pub meta: TimestampFiles,
}

impl Metadata for TimestampMeta {
    const ROLE: RoleName = RoleName::Timestamp;
    const MAX_BYTES: usize = MAX_TIMESTAMP_BYTES;
    const KIND: &'static str = "timestamp metadata";

    fn version(&self) -> u64 {
        self.version
    }

    fn expires(&self) -> Timestamp {
        self.expires
    }

    fn validate(&self) -> Result<(), FormatError> {
        check_header(
            RoleName::Timestamp,
            self.type_,
            &self.spec_version,
            self.version,
        )?;
        self.meta
            .snapshot
            .validate(SNAPSHOT_FILE, MAX_SNAPSHOT_BYTES)
    }
}

/// Accepting timestamp metadata failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum TimestampError {
    /// Endless data: the document is over [`MAX_TIMESTAMP_BYTES`] and was not parsed.
    #[error("timestamp metadata is {len} bytes, over the limit of {limit}")]
    TooLarge {
        /// Its size.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// Not a signed JSON document of the timestamp's shape.
    #[error(transparent)]
    Decode(DecodeError),
    /// Parsed, but breaks a rule of the timestamp format.
    #[error("timestamp metadata is invalid: {0}")]
    Invalid(FormatError),
    /// Freeze attack: the trusted root has expired, so nothing may be updated under it.
    #[error("the trusted root v{version} expired at {expires} (now {now})")]
    RootExpired {
        /// The root's version.
        version: u64,
        /// Its expiry.
        expires: Timestamp,
        /// The time of the check.
        now: Timestamp,
    },
    /// Arbitrary installation: not one valid signature from the timestamp keys.
    #[error("timestamp metadata has no valid signature from the timestamp role's keys")]
    NoValidSignature,
    /// Some valid signatures, but fewer than the threshold.
    #[error("timestamp metadata has {valid} valid signature(s), below the timestamp threshold of {threshold}")]
    BelowThreshold {
        /// Distinct valid signatures.
        valid: u32,
        /// Required.
        threshold: u32,
    },
    /// Fast-forward attack: signed only by timestamp keys a later root revoked.
    #[error("timestamp metadata is signed by timestamp keys that root v{root_version} trusted but the current root revoked")]
    SignedByRevokedKeys {
        /// The newest root that still trusted the signing keys.
        root_version: u64,
    },
    /// Rollback: older than the trusted timestamp.
    #[error("timestamp v{got} is older than the trusted timestamp v{trusted}")]
    Rollback {
        /// Trusted version.
        trusted: u64,
        /// Offered version.
        got: u64,
    },
    /// Same version as the trusted timestamp, different content.
    #[error("timestamp v{version} differs from the trusted timestamp with the same version")]
    VersionReused {
        /// The version.
        version: u64,
    },
    /// Rollback: names an older snapshot than the trusted timestamp does.
    #[error("timestamp names snapshot v{got}, older than the trusted snapshot v{trusted}")]
    SnapshotRollback {
        /// Snapshot version the trusted timestamp names.
        trusted: u64,
        /// Snapshot version this timestamp names.
        got: u64,
    },
    /// Freeze attack: the timestamp has expired.
    #[error("timestamp v{version} expired at {expires} (now {now})")]
    Expired {
        /// The version.
        version: u64,
        /// Its expiry.
        expires: Timestamp,
        /// The time of the check.
        now: Timestamp,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timestamp() -> TimestampMeta {
        TimestampMeta {
            type_: RoleName::Timestamp,
            spec_version: crate::metadata::root::SPEC_VERSION.into(),
            version: 9,
            expires: Timestamp::from_secs(2_000_000_000),
            meta: TimestampFiles {
                snapshot: MetaFile::for_document(4, b"snapshot"),
            },
        }
    }

    #[test]
    fn writes_tuf_shape() {
        let v = serde_json::to_value(timestamp()).unwrap();
        assert_eq!(v["_type"], "timestamp");
        assert_eq!(v["meta"]["snapshot.json"]["version"], 4);
        assert_eq!(v["meta"]["snapshot.json"]["length"], 8);
        timestamp().validate().unwrap();
    }

    #[test]
    fn meta_is_exactly_snapshot_json() {
        let mut v = serde_json::to_value(timestamp()).unwrap();
        v["meta"]["targets.json"] = v["meta"]["snapshot.json"].clone();
        assert!(serde_json::from_value::<TimestampMeta>(v).is_err());
    }

    #[test]
    fn pin_must_fit_snapshot_limit() {
        let mut t = timestamp();
        t.meta.snapshot.length = MAX_SNAPSHOT_BYTES as u64 + 1;
        assert!(matches!(t.validate(), Err(FormatError::BadMetaFile { .. })));
        let mut t = timestamp();
        t.type_ = RoleName::Root;
        assert!(matches!(t.validate(), Err(FormatError::WrongType { .. })));
    }
}
