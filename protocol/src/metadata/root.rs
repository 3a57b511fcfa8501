//! Root metadata, the trust anchor, and what every top-level document shares.
//!
//! The root lists every key the vendor uses and which of them may sign for
//! each role (`root`, `targets`, `snapshot`, `timestamp`), with a threshold.
//! waveguard adds one role of its own in the extra field
//! `"waveguard": {"operator": {"keyids": [...], "threshold": n}}`: the fleet
//! operator, who signs fleet certificates and halt/resume directives. TUF
//! clients such as python-tuf keep that field as an unrecognised field, so the
//! document stays a valid TUF 1.0 root.
//!
//! This module also holds what the four documents have in common: the
//! [`RoleName`]s, the header checks (`_type`, `spec_version`, `version`), the
//! [`Metadata`] trait and [`read_metadata`], which bounds and parses a
//! document before anything else looks at it.

use crate::keys::{KeyError, KeyId, PublicKey};
use crate::limits::{MAX_KEYS_PER_ROOT, MAX_ROOT_BYTES};
use crate::metadata::signed::{DecodeError, Envelope, RoleKeys};
use crate::time::{rfc3339, Timestamp};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use thiserror::Error;

/// The TUF specification version written into every document waveguard signs.
pub const SPEC_VERSION: &str = "1.0.31";

/// A role: the four TUF top-level roles plus waveguard's operator role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum RoleName {
    /// Signs root metadata: the keys of every role.
    Root,
    /// Signs targets metadata: the releases.
    Targets,
    /// Signs snapshot metadata: which targets version is current.
    Snapshot,
    /// Signs timestamp metadata: which snapshot is current (short-lived, for freshness).
    Timestamp,
    /// waveguard only: signs fleet certificates and halt/resume directives.
    Operator,
}

impl RoleName {
    /// The four roles a root must define, in TUF's client-workflow order.
    pub const TOP_LEVEL: [RoleName; 4] = [
        RoleName::Root,
        RoleName::Timestamp,
        RoleName::Snapshot,
        RoleName::Targets,
    ];

    /// The role's name as written in metadata (`"root"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            RoleName::Root => "root",
            RoleName::Targets => "targets",
            RoleName::Snapshot => "snapshot",
            RoleName::Timestamp => "timestamp",
            RoleName::Operator => "operator",
        }
    }
}

impl fmt::Display for RoleName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A document is well-formed JSON of the right shape but breaks a rule of its format.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FormatError {
    /// `_type` names a different document.
    #[error("_type is {found:?} but a {expected} document was expected")]
    WrongType {
        /// The type this document should have.
        expected: RoleName,
        /// The `_type` it has.
        found: RoleName,
    },
    /// `spec_version` is not `1.x` or `1.x.y`.
    #[error("spec_version {0:?} is not a TUF 1.x version")]
    SpecVersion(String),
    /// `version` is 0; TUF versions start at 1.
    #[error("version is 0; metadata versions start at 1")]
    ZeroVersion,
    /// More keys than [`MAX_KEYS_PER_ROOT`].
    #[error("root lists {count} keys, over the limit of {limit}")]
    TooManyKeys {
        /// Keys listed.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// A key is listed under an ID that is not its own.
    #[error("key listed as {listed} has key ID {actual}")]
    KeyIdMismatch {
        /// The ID in the `keys` map.
        listed: KeyId,
        /// The key's real ID.
        actual: KeyId,
    },
    /// A key is not a usable ed25519 key.
    #[error("key {keyid} is unusable: {source}")]
    BadKey {
        /// The key's ID.
        keyid: KeyId,
        /// What is wrong with it.
        source: KeyError,
    },
    /// `roles` is not exactly root, targets, snapshot and timestamp.
    #[error("roles must be exactly root, snapshot, targets and timestamp; missing {missing:?}, unexpected {unexpected:?}")]
    Roles {
        /// Top-level roles absent.
        missing: Vec<String>,
        /// Other names present (shortened).
        unexpected: Vec<String>,
    },
    /// A role names a key the root does not list.
    #[error("role {role} names key {keyid}, which is not in the root's keys")]
    UnknownKeyId {
        /// The role.
        role: RoleName,
        /// The missing key ID.
        keyid: KeyId,
    },
    /// A role lists the same key twice.
    #[error("role {role} lists key {keyid} more than once")]
    DuplicateKeyId {
        /// The role.
        role: RoleName,
        /// The repeated key ID.
        keyid: KeyId,
    },
    /// A threshold of 0, or higher than the number of keys that could meet it.
    #[error("role {role} has threshold {threshold} with {keys} key(s); it must be 1 to {keys}")]
    BadThreshold {
        /// The role.
        role: RoleName,
        /// The threshold.
        threshold: u32,
        /// How many keys the role lists.
        keys: usize,
    },
    /// A metadata file entry (`meta["snapshot.json"]`, ...) is unusable.
    #[error("{file} entry: {reason}")]
    BadMetaFile {
        /// Which entry.
        file: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// More targets than [`crate::limits::MAX_TARGETS`].
    #[error("targets metadata lists {count} targets, over the limit of {limit}")]
    TooManyTargets {
        /// Targets listed.
        count: usize,
        /// The limit.
        limit: usize,
    },
}

/// What every top-level document offers; implemented by [`Root`],
/// [`crate::metadata::targets::Targets`], [`crate::metadata::snapshot::Snapshot`]
/// and [`crate::metadata::timestamp::TimestampMeta`].
pub trait Metadata: Serialize + DeserializeOwned + Clone + fmt::Debug {
    /// The role that signs this document; also its `_type`.
    const ROLE: RoleName;
    /// Largest document accepted, in bytes (from [`crate::limits`]).
    const MAX_BYTES: usize;
    /// How errors name this document, e.g. `"root metadata"`.
    const KIND: &'static str;
    /// The document's version.
    fn version(&self) -> u64;
    /// When the document stops being trustworthy.
    fn expires(&self) -> Timestamp;
    /// Checks every rule of the format that serde's types do not already enforce.
    fn validate(&self) -> Result<(), FormatError>;
}

/// Reading a document failed before any signature was looked at.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ReadError {
    /// Larger than the limit for its kind (the endless-data attack); not parsed.
    #[error("{kind} is {len} bytes, over the limit of {limit}")]
    TooLarge {
        /// What was being read.
        kind: &'static str,
        /// Its size.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// Not a signed JSON document of the expected shape.
    #[error(transparent)]
    Decode(DecodeError),
    /// Parsed, but breaks a rule of the format.
    #[error("{kind} is invalid: {source}")]
    Invalid {
        /// What was being read.
        kind: &'static str,
        /// The rule broken.
        source: FormatError,
    },
}

/// Bounds, parses and validates one document. Signatures are not checked here.
pub fn read_metadata<T: Metadata>(bytes: &[u8]) -> Result<Envelope<T>, ReadError> {
    if bytes.len() > T::MAX_BYTES {
        return Err(ReadError::TooLarge {
            kind: T::KIND,
            len: bytes.len(),
            limit: T::MAX_BYTES,
        });
    }
    let env = Envelope::<T>::from_json(bytes, T::MAX_BYTES, T::KIND).map_err(ReadError::Decode)?;
    env.signed.validate().map_err(|source| ReadError::Invalid {
        kind: T::KIND,
        source,
    })?;
    Ok(env)
}

/// Checks `_type`, `spec_version` and `version`, shared by all four documents.
pub(crate) fn check_header(
    expected: RoleName,
    found: RoleName,
    spec_version: &str,
    version: u64,
) -> Result<(), FormatError> {
    if found != expected {
        return Err(FormatError::WrongType { expected, found });
    }
    // Like python-tuf: "1.x" or "1.x.y", numeric parts, major 1.
    let parts: Vec<&str> = spec_version.split('.').collect();
    let numeric = parts
        .iter()
        .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    if !(2..=3).contains(&parts.len()) || !numeric || parts[0] != "1" {
        return Err(FormatError::SpecVersion(
            spec_version.chars().take(32).collect(),
        ));
    }
    if version == 0 {
        return Err(FormatError::ZeroVersion);
    }
    Ok(())
}

/// waveguard's extra roles, in the root's `waveguard` field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaveguardRoles {
    /// Keys that sign fleet certificates and halt/resume directives.
    pub operator: RoleKeys,
    /// Fields this version does not know, kept so that re-signing preserves them.
    #[serde(flatten)]
    pub unrecognized_fields: BTreeMap<String, serde_json::Value>,
}

/// The `signed` part of root metadata.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Root {
    /// Always [`RoleName::Root`].
    #[serde(rename = "_type")]
    pub type_: RoleName,
    /// TUF specification version, [`SPEC_VERSION`] when waveguard writes it.
    pub spec_version: String,
    /// Version; each rotation adds exactly one.
    pub version: u64,
    /// After this the root may not be used for updates (freeze protection).
    #[serde(with = "rfc3339")]
    pub expires: Timestamp,
    /// Every key any role uses, by key ID.
    pub keys: BTreeMap<KeyId, PublicKey>,
    /// Exactly the four top-level roles.
    pub roles: BTreeMap<String, RoleKeys>,
    /// Written `false`: waveguard has no repository paths to make consistent.
    pub consistent_snapshot: bool,
    /// waveguard's operator role, if the fleet has an operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waveguard: Option<WaveguardRoles>,
    /// Fields this version does not know, kept so that re-signing preserves them.
    #[serde(flatten)]
    pub unrecognized_fields: BTreeMap<String, serde_json::Value>,
}

impl Root {
    /// The keys allowed to sign for `role`; `None` only for an absent operator role.
    pub fn role(&self, role: RoleName) -> Option<&RoleKeys> {
        match role {
            RoleName::Operator => self.waveguard.as_ref().map(|w| &w.operator),
            top => self.roles.get(top.as_str()),
        }
    }

    /// The role's keys and threshold together with just the public keys it names,
    /// ready for [`Envelope::verify_role`].
    pub fn role_keys(&self, role: RoleName) -> Option<(RoleKeys, BTreeMap<KeyId, PublicKey>)> {
        let rk = self.role(role)?;
        let keys = rk
            .keyids
            .iter()
            .filter_map(|id| self.keys.get(id).map(|k| (id.clone(), k.clone())))
            .collect();
        Some((rk.clone(), keys))
    }

    /// The set of key IDs of `role` (empty for an absent operator role); a
    /// change in this set between two roots is a key rotation.
    pub fn role_key_ids(&self, role: RoleName) -> BTreeSet<&KeyId> {
        self.role(role)
            .map(|r| r.keyids.iter().collect())
            .unwrap_or_default()
    }

    fn check_role(&self, role: RoleName, rk: &RoleKeys) -> Result<(), FormatError> {
        let mut seen = BTreeSet::new();
        for id in &rk.keyids {
            if !self.keys.contains_key(id) {
                return Err(FormatError::UnknownKeyId {
                    role,
                    keyid: id.clone(),
                });
            }
            if !seen.insert(id) {
                return Err(FormatError::DuplicateKeyId {
                    role,
                    keyid: id.clone(),
                });
            }
        }
        let n = rk.keyids.len();
        if rk.threshold == 0 || usize::try_from(rk.threshold).map_or(true, |t| t > n) {
            return Err(FormatError::BadThreshold {
                role,
                threshold: rk.threshold,
                keys: n,
            });
        }
        Ok(())
    }
}

fn short(s: &str) -> String {
    s.chars().take(64).collect()
}

impl Metadata for Root {
    const ROLE: RoleName = RoleName::Root;
    const MAX_BYTES: usize = MAX_ROOT_BYTES;
    const KIND: &'static str = "root metadata";

    fn version(&self) -> u64 {
        self.version
    }

    fn expires(&self) -> Timestamp {
        self.expires
    }

    fn validate(&self) -> Result<(), FormatError> {
        check_header(RoleName::Root, self.type_, &self.spec_version, self.version)?;
        if self.keys.len() > MAX_KEYS_PER_ROOT {
            return Err(FormatError::TooManyKeys {
                count: self.keys.len(),
                limit: MAX_KEYS_PER_ROOT,
            });
        }
        for (listed, key) in &self.keys {
            key.to_bytes().map_err(|source| FormatError::BadKey {
                keyid: listed.clone(),
                source,
            })?;
            let actual = key.key_id();
            if &actual != listed {
                return Err(FormatError::KeyIdMismatch {
                    listed: listed.clone(),
                    actual,
                });
            }
        }
        let wanted: BTreeSet<&str> = RoleName::TOP_LEVEL.iter().map(|r| r.as_str()).collect();
        let have: BTreeSet<&str> = self.roles.keys().map(String::as_str).collect();
        if wanted != have {
            return Err(FormatError::Roles {
                missing: wanted.difference(&have).map(|s| s.to_string()).collect(),
                unexpected: have.difference(&wanted).take(8).map(|s| short(s)).collect(),
            });
        }
        for role in RoleName::TOP_LEVEL.into_iter().chain([RoleName::Operator]) {
            if let Some(rk) = self.role(role) {
                self.check_role(role, rk)?;
            }
        }
        Ok(())
    }
}

/// Which root's keys a new root was checked against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RootKeySet {
    /// The root keys of the currently trusted root (a rotation must satisfy them).
    TrustedRoot,
    /// The root keys the new root itself lists (it must also satisfy its own).
    NewRoot,
}

impl fmt::Display for RootKeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RootKeySet::TrustedRoot => "the trusted root's root keys",
            RootKeySet::NewRoot => "its own root keys",
        })
    }
}

/// Bootstrapping from a root or rotating to a new one failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum RootError {
    /// Endless data: the document is over [`MAX_ROOT_BYTES`] and was not parsed.
    #[error("root metadata is {len} bytes, over the limit of {limit}")]
    TooLarge {
        /// Its size.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// Not a signed JSON document of the root's shape.
    #[error(transparent)]
    Decode(DecodeError),
    /// Parsed, but breaks a rule of the root format.
    #[error("root metadata is invalid: {0}")]
    Invalid(FormatError),
    /// Arbitrary installation: not one valid signature from the required keys.
    #[error("root v{version} has no valid signature from {keys}")]
    NoValidSignature {
        /// The new root's version.
        version: u64,
        /// Which root's keys were required.
        keys: RootKeySet,
    },
    /// Some valid signatures, but fewer than the threshold.
    #[error("root v{version} has {valid} valid signature(s) from {keys}, below the threshold of {threshold}")]
    BelowThreshold {
        /// The new root's version.
        version: u64,
        /// Which root's keys were required.
        keys: RootKeySet,
        /// Distinct valid signatures.
        valid: u32,
        /// Required.
        threshold: u32,
    },
    /// Rollback: a root no newer than the trusted one.
    #[error("root v{got} is not newer than the trusted root v{trusted}")]
    Rollback {
        /// Trusted version.
        trusted: u64,
        /// Offered version.
        got: u64,
    },
    /// Roots must be applied one version at a time; this one skips some.
    #[error("root v{got} does not follow the trusted root: v{expected} is needed first")]
    VersionGap {
        /// The only acceptable next version.
        expected: u64,
        /// Offered version.
        got: u64,
    },
    /// More rotations without a timestamp update than [`crate::limits::MAX_ROOT_ROTATIONS`].
    #[error("more than {limit} root rotations in one update")]
    TooManyRotations {
        /// The limit.
        limit: u64,
    },
}

impl From<ReadError> for RootError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::TooLarge { len, limit, .. } => RootError::TooLarge { len, limit },
            ReadError::Decode(d) => RootError::Decode(d),
            ReadError::Invalid { source, .. } => RootError::Invalid(source),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SigningKey;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_seed([seed; 32])
    }

    /// A valid root with one key per top-level role (seeds 1..=4), threshold 1.
    fn root() -> Root {
        let mut keys = BTreeMap::new();
        let mut roles = BTreeMap::new();
        for (i, role) in RoleName::TOP_LEVEL.into_iter().enumerate() {
            let k = key(i as u8 + 1);
            keys.insert(k.key_id(), k.public());
            roles.insert(
                role.as_str().to_string(),
                RoleKeys {
                    keyids: vec![k.key_id()],
                    threshold: 1,
                },
            );
        }
        Root {
            type_: RoleName::Root,
            spec_version: SPEC_VERSION.into(),
            version: 1,
            expires: Timestamp::from_secs(2_000_000_000),
            keys,
            roles,
            consistent_snapshot: false,
            waveguard: None,
            unrecognized_fields: BTreeMap::new(),
        }
    }

    mod header {
        use super::*;

        #[test]
        fn accepts_valid_root() {
            root().validate().unwrap();
        }

        #[test]
        fn rejects_wrong_type_spec_and_zero_version() {
            let mut r = root();
            r.type_ = RoleName::Targets;
            assert!(matches!(r.validate(), Err(FormatError::WrongType { .. })));
            for bad in ["2.0.0", "1", "1.x.0", "1..0", "1.0.0.0", ""] {
                let mut r = root();
                r.spec_version = bad.into();
                assert!(
                    matches!(r.validate(), Err(FormatError::SpecVersion(_))),
                    "{bad}"
                );
            }
            for good in ["1.0", "1.0.31", "1.2.3"] {
                let mut r = root();
                r.spec_version = good.into();
                r.validate().unwrap();
            }
            let mut r = root();
            r.version = 0;
            assert_eq!(r.validate(), Err(FormatError::ZeroVersion));
        }
    }

    mod roles {
        use super::*;

        #[test]
        fn roles_must_be_exactly_the_four() {
            let mut r = root();
            r.roles.remove("snapshot");
            assert!(
                matches!(r.validate(), Err(FormatError::Roles { missing, .. }) if missing == ["snapshot"])
            );
            let mut r = root();
            let extra = r.roles["root"].clone();
            r.roles.insert("mirror".into(), extra);
            assert!(
                matches!(r.validate(), Err(FormatError::Roles { unexpected, .. }) if unexpected == ["mirror"])
            );
        }

        #[test]
        fn thresholds_must_be_reachable() {
            let mut r = root();
            r.roles.get_mut("targets").unwrap().threshold = 0;
            assert!(matches!(
                r.validate(),
                Err(FormatError::BadThreshold {
                    role: RoleName::Targets,
                    ..
                })
            ));
            let mut r = root();
            r.roles.get_mut("targets").unwrap().threshold = 2;
            assert!(matches!(
                r.validate(),
                Err(FormatError::BadThreshold {
                    threshold: 2,
                    keys: 1,
                    ..
                })
            ));
        }

        #[test]
        fn keyids_must_be_listed_once_and_known() {
            let mut r = root();
            let rk = r.roles.get_mut("timestamp").unwrap();
            rk.keyids.push(rk.keyids[0].clone());
            rk.threshold = 2;
            assert!(matches!(
                r.validate(),
                Err(FormatError::DuplicateKeyId { .. })
            ));
            let mut r = root();
            r.roles.get_mut("timestamp").unwrap().keyids[0] = key(9).key_id();
            assert!(matches!(
                r.validate(),
                Err(FormatError::UnknownKeyId {
                    role: RoleName::Timestamp,
                    ..
                })
            ));
        }

        #[test]
        fn operator_role_is_checked_too() {
            let mut r = root();
            r.waveguard = Some(WaveguardRoles {
                operator: RoleKeys {
                    keyids: vec![key(9).key_id()],
                    threshold: 1,
                },
                unrecognized_fields: BTreeMap::new(),
            });
            assert!(matches!(
                r.validate(),
                Err(FormatError::UnknownKeyId {
                    role: RoleName::Operator,
                    ..
                })
            ));
            let k = key(9);
            r.keys.insert(k.key_id(), k.public());
            r.validate().unwrap();
            let (rk, keys) = r.role_keys(RoleName::Operator).unwrap();
            assert_eq!(rk.keyids, vec![k.key_id()]);
            assert_eq!(keys.len(), 1);
        }
    }

    mod keys {
        use super::*;

        #[test]
        fn key_must_sit_under_its_own_id() {
            let mut r = root();
            let (_, k) = r.keys.pop_first().unwrap();
            r.keys.insert(key(8).key_id(), k);
            assert!(matches!(
                r.validate(),
                Err(FormatError::KeyIdMismatch { .. })
            ));
        }

        #[test]
        fn key_count_is_bounded() {
            let mut r = root();
            for i in 0..MAX_KEYS_PER_ROOT as u32 {
                let mut seed = [0u8; 32];
                seed[..4].copy_from_slice(&i.to_be_bytes());
                seed[31] = 0xaa;
                let k = SigningKey::from_seed(seed);
                r.keys.insert(k.key_id(), k.public());
            }
            assert!(matches!(r.validate(), Err(FormatError::TooManyKeys { .. })));
        }

        #[test]
        fn unknown_key_types_are_refused() {
            let mut r = root();
            let k = key(7);
            let mut pk = k.public();
            pk.keytype = "rsa".into();
            r.keys.insert(pk.key_id(), pk);
            assert!(matches!(r.validate(), Err(FormatError::BadKey { .. })));
        }
    }

    mod json {
        use super::*;

        #[test]
        fn unknown_fields_survive_a_round_trip() {
            let mut v = serde_json::to_value(root()).unwrap();
            v["x-vendor"] = serde_json::json!({"a": 1});
            let r: Root = serde_json::from_value(v).unwrap();
            assert_eq!(r.unrecognized_fields["x-vendor"]["a"], 1);
            let back = serde_json::to_value(&r).unwrap();
            assert_eq!(back["x-vendor"]["a"], 1);
            assert_eq!(back["_type"], "root");
            assert_eq!(back["expires"], "2033-05-18T03:33:20Z");
            assert!(back.get("waveguard").is_none());
        }

        #[test]
        fn oversize_is_refused_before_parsing() {
            let bytes = vec![b' '; MAX_ROOT_BYTES + 1];
            assert!(matches!(
                read_metadata::<Root>(&bytes),
                Err(ReadError::TooLarge { .. })
            ));
            let err = RootError::from(read_metadata::<Root>(&bytes).unwrap_err());
            assert!(matches!(err, RootError::TooLarge { .. }));
        }
    }
}
