//! Vendor-side builders: new and rotated roots, and a [`Repository`] that signs
//! targets, snapshot and timestamp into a [`MetadataBundle`].
//!
//! Used by the CLI (`waveguard root init`, `root rotate`, `publish`) and by
//! tests. Signing keys are always passed in explicitly; nothing here stores or
//! generates keys. Before a [`Repository`] hands out a bundle it applies it to
//! a copy of its own [`TrustedState`], so a vendor can only publish what a
//! client would accept (thresholds met, versions consistent, nothing expired),
//! and it refuses bundles too large to gossip.

use crate::keys::{PublicKey, SigningKey};
use crate::limits::{MAX_GOSSIP_BYTES, MAX_TARGETS};
use crate::metadata::root::{
    FormatError, Metadata, RoleName, Root, RootError, WaveguardRoles, SPEC_VERSION,
};
use crate::metadata::signed::{Envelope, RoleKeys};
use crate::metadata::snapshot::{MetaFile, Snapshot, SnapshotFiles, BLAKE3};
use crate::metadata::targets::Targets;
use crate::metadata::timestamp::{TimestampFiles, TimestampMeta};
use crate::metadata::trust::{BundleError, StoredTrust, StoredTrustError, TrustedState};
use crate::release::{Release, ReleaseError, ReleaseInfo, TargetFile};
use crate::time::Timestamp;
use crate::wire::{Gossip, MetadataBundle};
use serde_bytes::ByteBuf;
use std::collections::BTreeMap;
use thiserror::Error;

/// One day in seconds.
const DAY: u64 = 24 * 3600;

/// Building or signing metadata failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The document would break a rule of its format (e.g. a threshold above the key count).
    #[error("the document would be invalid: {0}")]
    Invalid(FormatError),
    /// A target is not a valid waveguard release.
    #[error("target {path:?} is not a valid release: {source}")]
    InvalidTarget {
        /// The target path.
        path: String,
        /// Why.
        source: ReleaseError,
    },
    /// Another target already describes the same release.
    #[error("target {path:?} is the same release as the existing target {existing:?}")]
    DuplicateRelease {
        /// The target being added.
        path: String,
        /// The target already present.
        existing: String,
    },
    /// Adding the target would exceed [`MAX_TARGETS`].
    #[error("the repository already holds {limit} targets, the most targets metadata may list")]
    TooManyTargets {
        /// The limit.
        limit: usize,
    },
    /// The document could not be serialized (it holds something JSON cannot carry).
    #[error("the document could not be serialized: {0}")]
    Encode(serde_json::Error),
    /// A new root was refused, e.g. its signatures do not meet both thresholds.
    #[error("the new root would be refused by clients: {0}")]
    RootRejected(RootError),
    /// The signed bundle would be refused by clients (keys below threshold, expired root, ...).
    #[error("the signed metadata would be refused by clients: {0}")]
    Rejected(BundleError),
    /// Stored repository state could not be reloaded.
    #[error("the stored repository could not be loaded: {0}")]
    Load(StoredTrustError),
    /// The bundle is over the gossip limit; prune old releases.
    #[error("the metadata bundle is {len} bytes on the wire, over the gossip limit of {limit}; remove old targets")]
    BundleTooLarge {
        /// Encoded size.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// A timestamp can only be refreshed once a snapshot has been signed.
    #[error("there is no snapshot to refresh the timestamp for; sign targets first")]
    NoSnapshot,
}

/// The keys of one role and how many must sign.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleSpec {
    /// Public keys, in the order they are listed.
    pub keys: Vec<PublicKey>,
    /// Signatures required.
    pub threshold: u32,
}

impl RoleSpec {
    /// `threshold` of `keys`.
    pub fn new(keys: Vec<PublicKey>, threshold: u32) -> Self {
        RoleSpec { keys, threshold }
    }

    /// A single key, threshold 1.
    pub fn single(key: PublicKey) -> Self {
        RoleSpec::new(vec![key], 1)
    }

    /// The role as `root` defines it, if it defines it.
    pub fn of(root: &Root, role: RoleName) -> Option<Self> {
        let rk = root.role(role)?;
        Some(RoleSpec {
            keys: rk
                .keyids
                .iter()
                .filter_map(|id| root.keys.get(id).cloned())
                .collect(),
            threshold: rk.threshold,
        })
    }
}

/// Everything a first root needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RootSpec {
    /// Root keys.
    pub root: RoleSpec,
    /// Targets keys.
    pub targets: RoleSpec,
    /// Snapshot keys.
    pub snapshot: RoleSpec,
    /// Timestamp keys.
    pub timestamp: RoleSpec,
    /// Operator keys, for fleets with an operator.
    pub operator: Option<RoleSpec>,
    /// When the root expires.
    pub expires: Timestamp,
}

/// What to do with the operator role in a rotation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum OperatorChange {
    /// Leave it as it is.
    #[default]
    Keep,
    /// Remove the operator role.
    Remove,
    /// Set new operator keys.
    Set(RoleSpec),
}

/// Changes for [`rotate_root`]; `None` keeps a role as it is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RootChanges {
    /// New root keys.
    pub root: Option<RoleSpec>,
    /// New targets keys.
    pub targets: Option<RoleSpec>,
    /// New snapshot keys.
    pub snapshot: Option<RoleSpec>,
    /// New timestamp keys.
    pub timestamp: Option<RoleSpec>,
    /// The operator role.
    pub operator: OperatorChange,
    /// New expiry.
    pub expires: Option<Timestamp>,
}

/// How long after signing each document expires, in seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expiries {
    /// Timestamp lifetime.
    pub timestamp_secs: u64,
    /// Snapshot lifetime.
    pub snapshot_secs: u64,
    /// Targets lifetime.
    pub targets_secs: u64,
}

impl Default for Expiries {
    /// python-tuf's customary lifetimes: timestamp 1 day, snapshot 7 days,
    /// targets 90 days. Air-gapped fleets need much longer ones.
    fn default() -> Self {
        Expiries {
            timestamp_secs: DAY,
            snapshot_secs: 7 * DAY,
            targets_secs: 90 * DAY,
        }
    }
}

/// The keys that sign targets, snapshot and timestamp.
#[derive(Clone, Copy, Debug)]
pub struct RoleSigners<'a> {
    /// Targets signers.
    pub targets: &'a [&'a SigningKey],
    /// Snapshot signers.
    pub snapshot: &'a [&'a SigningKey],
    /// Timestamp signers.
    pub timestamp: &'a [&'a SigningKey],
}

/// Validates `doc`, signs it with every key and returns the envelope's JSON.
pub fn sign_document<T: Metadata>(doc: T, keys: &[&SigningKey]) -> Result<Vec<u8>, BuildError> {
    doc.validate().map_err(BuildError::Invalid)?;
    Ok(Envelope::sign_new(doc, keys)
        .map_err(BuildError::Encode)?
        .to_json())
}

/// A first root (version 1) from `spec`, with `consistent_snapshot: false`.
pub fn new_root(spec: &RootSpec) -> Result<Root, BuildError> {
    assemble(
        1,
        spec.expires,
        [&spec.root, &spec.targets, &spec.snapshot, &spec.timestamp],
        spec.operator.as_ref().map(|o| (o, BTreeMap::new())),
        BTreeMap::new(),
    )
}

/// The next root after `current` (version + 1) with `changes` applied. The
/// key list holds exactly the keys some role uses; unknown fields are kept.
pub fn rotate_root(current: &Root, changes: &RootChanges) -> Result<Root, BuildError> {
    let keep = |change: &Option<RoleSpec>, role| {
        change
            .clone()
            .or_else(|| RoleSpec::of(current, role))
            .unwrap_or_else(|| RoleSpec::new(Vec::new(), 1))
    };
    let roles = [
        keep(&changes.root, RoleName::Root),
        keep(&changes.targets, RoleName::Targets),
        keep(&changes.snapshot, RoleName::Snapshot),
        keep(&changes.timestamp, RoleName::Timestamp),
    ];
    let extra = current
        .waveguard
        .as_ref()
        .map(|w| w.unrecognized_fields.clone())
        .unwrap_or_default();
    let operator = match &changes.operator {
        OperatorChange::Keep => RoleSpec::of(current, RoleName::Operator),
        OperatorChange::Remove => None,
        OperatorChange::Set(spec) => Some(spec.clone()),
    };
    assemble(
        current.version.saturating_add(1),
        changes.expires.unwrap_or(current.expires),
        roles.each_ref(),
        operator.as_ref().map(|o| (o, extra)),
        current.unrecognized_fields.clone(),
    )
}

/// Builds and validates a root; `roles` are root, targets, snapshot, timestamp.
fn assemble(
    version: u64,
    expires: Timestamp,
    roles: [&RoleSpec; 4],
    operator: Option<(&RoleSpec, BTreeMap<String, serde_json::Value>)>,
    unrecognized_fields: BTreeMap<String, serde_json::Value>,
) -> Result<Root, BuildError> {
    let mut keys = BTreeMap::new();
    let mut role_keys = |spec: &RoleSpec| {
        for k in &spec.keys {
            keys.insert(k.key_id(), k.clone());
        }
        RoleKeys {
            keyids: spec.keys.iter().map(PublicKey::key_id).collect(),
            threshold: spec.threshold,
        }
    };
    let names = [
        RoleName::Root,
        RoleName::Targets,
        RoleName::Snapshot,
        RoleName::Timestamp,
    ];
    let role_map = names
        .iter()
        .zip(roles)
        .map(|(name, spec)| (name.as_str().to_string(), role_keys(spec)))
        .collect();
    let waveguard = operator.map(|(spec, unrecognized_fields)| WaveguardRoles {
        operator: role_keys(spec),
        unrecognized_fields,
    });
    let root = Root {
        type_: RoleName::Root,
        spec_version: SPEC_VERSION.into(),
        version,
        expires,
        keys,
        roles: role_map,
        consistent_snapshot: false,
        waveguard,
        unrecognized_fields,
    };
    root.validate().map_err(BuildError::Invalid)?;
    Ok(root)
}

/// A target entry for a release artifact of `length` bytes with blake3 `hash`,
/// carrying `info` under `custom.waveguard`; checked with [`Release::from_target`].
pub fn release_target(
    path: &str,
    length: u64,
    hash: &[u8; 32],
    info: &ReleaseInfo,
) -> Result<TargetFile, BuildError> {
    let info = serde_json::to_value(info).map_err(BuildError::Encode)?;
    let target = TargetFile {
        length,
        hashes: BTreeMap::from([(BLAKE3.to_string(), hex::encode(hash))]),
        custom: Some(serde_json::json!({ "waveguard": info })),
    };
    Release::from_target(path, &target).map_err(|source| BuildError::InvalidTarget {
        path: path.into(),
        source,
    })?;
    Ok(target)
}

/// The last versions this repository signed.
#[derive(Clone, Copy, Debug, Default)]
struct Signed {
    timestamp: u64,
    snapshot: u64,
    targets: u64,
}

/// Signed targets and snapshot waiting for their timestamp.
struct Draft {
    snapshot: Vec<u8>,
    snapshot_version: u64,
    targets: Vec<u8>,
}

/// A vendor's repository: the trusted root chain and documents, plus the
/// targets the next [`Repository::sign`] will publish.
#[derive(Clone, Debug)]
pub struct Repository {
    trust: TrustedState,
    targets: BTreeMap<String, TargetFile>,
    signed: Signed,
}

impl Repository {
    /// A repository anchored in a signed root (as bytes) and holding no targets.
    pub fn new(root_json: &[u8]) -> Result<Self, BuildError> {
        let trust = TrustedState::new(root_json).map_err(BuildError::RootRejected)?;
        Ok(Repository {
            trust,
            targets: BTreeMap::new(),
            signed: Signed::default(),
        })
    }

    /// Reloads a repository saved with [`Repository::stored`], re-verifying it.
    pub fn from_stored(stored: &StoredTrust) -> Result<Self, BuildError> {
        let trust = TrustedState::from_stored(stored).map_err(BuildError::Load)?;
        let v = trust.versions();
        let targets = stored
            .targets
            .as_deref()
            .and_then(|raw| crate::metadata::root::read_metadata::<Targets>(raw).ok())
            .map(|env| env.signed.targets)
            .unwrap_or_default();
        Ok(Repository {
            trust,
            targets,
            signed: Signed {
                timestamp: v.timestamp.unwrap_or(0),
                snapshot: v.snapshot.unwrap_or(0),
                targets: v.targets.unwrap_or(0),
            },
        })
    }

    /// What to persist.
    pub fn stored(&self) -> StoredTrust {
        self.trust.stored()
    }

    /// The current root.
    pub fn root(&self) -> &Root {
        self.trust.root()
    }

    /// The repository as a client sees it.
    pub fn trust(&self) -> &TrustedState {
        &self.trust
    }

    /// The targets the next signing publishes.
    pub fn targets(&self) -> &BTreeMap<String, TargetFile> {
        &self.targets
    }

    /// The last bundle signed (the root chain alone before the first signing).
    pub fn bundle(&self) -> MetadataBundle {
        self.trust.bundle()
    }

    /// Adds or replaces a target for the next signing; it must be a valid
    /// release and not the same release as another path.
    pub fn add_target(&mut self, path: &str, target: TargetFile) -> Result<Release, BuildError> {
        let release =
            Release::from_target(path, &target).map_err(|source| BuildError::InvalidTarget {
                path: path.into(),
                source,
            })?;
        if !self.targets.contains_key(path) && self.targets.len() >= MAX_TARGETS {
            return Err(BuildError::TooManyTargets { limit: MAX_TARGETS });
        }
        for (other, t) in &self.targets {
            let same =
                other != path && Release::from_target(other, t).is_ok_and(|r| r.id == release.id);
            if same {
                return Err(BuildError::DuplicateRelease {
                    path: path.into(),
                    existing: other.clone(),
                });
            }
        }
        self.targets.insert(path.into(), target);
        Ok(release)
    }

    /// Removes a target from the next signing.
    pub fn remove_target(&mut self, path: &str) -> Option<TargetFile> {
        self.targets.remove(path)
    }

    /// Adds a root signed elsewhere (e.g. by several key holders in turn).
    pub fn push_root(&mut self, root_json: &[u8]) -> Result<(), BuildError> {
        self.trust
            .update_root(root_json)
            .map_err(BuildError::RootRejected)
    }

    /// Rotates the root: builds the next root with `changes`, signs it with
    /// `keys` (which must meet the thresholds of both the current and the new
    /// root) and adds it. Returns the new root's JSON.
    pub fn rotate_root(
        &mut self,
        changes: &RootChanges,
        keys: &[&SigningKey],
    ) -> Result<Vec<u8>, BuildError> {
        let next = rotate_root(self.root(), changes)?;
        let raw = sign_document(next, keys)?;
        self.push_root(&raw)?;
        Ok(raw)
    }

    /// Signs new targets, snapshot and timestamp (each version one above the
    /// last), expiring `expiries` after `now`, and returns the bundle to gossip.
    /// Nothing changes unless a client would accept the bundle at `now`.
    pub fn sign(
        &mut self,
        now: Timestamp,
        expiries: &Expiries,
        keys: &RoleSigners<'_>,
    ) -> Result<MetadataBundle, BuildError> {
        let v = self.trust.versions();
        let next =
            |last: u64, trusted: Option<u64>| last.max(trusted.unwrap_or(0)).saturating_add(1);
        let versions = Signed {
            targets: next(self.signed.targets, v.targets),
            snapshot: next(self.signed.snapshot, v.snapshot),
            timestamp: next(self.signed.timestamp, v.timestamp),
        };
        let targets = sign_document(
            Targets {
                type_: RoleName::Targets,
                spec_version: SPEC_VERSION.into(),
                version: versions.targets,
                expires: now.plus_secs(expiries.targets_secs),
                targets: self.targets.clone(),
            },
            keys.targets,
        )?;
        let snapshot = sign_document(
            Snapshot {
                type_: RoleName::Snapshot,
                spec_version: SPEC_VERSION.into(),
                version: versions.snapshot,
                expires: now.plus_secs(expiries.snapshot_secs),
                meta: SnapshotFiles {
                    targets: MetaFile::for_document(versions.targets, &targets),
                },
            },
            keys.snapshot,
        )?;
        let draft = Draft {
            snapshot,
            snapshot_version: versions.snapshot,
            targets,
        };
        let bundle = self.timestamped(
            now,
            expiries.timestamp_secs,
            versions.timestamp,
            draft,
            keys.timestamp,
        )?;
        self.publish(&bundle, now)?;
        self.signed = versions;
        Ok(bundle)
    }

    /// Signs only a new timestamp for the current snapshot, to keep nodes
    /// fresh without new targets, expiring `expires_secs` after `now`.
    pub fn sign_timestamp(
        &mut self,
        now: Timestamp,
        expires_secs: u64,
        keys: &[&SigningKey],
    ) -> Result<MetadataBundle, BuildError> {
        let current = self.trust.bundle();
        let v = self.trust.versions();
        let snapshot_version = v.snapshot.ok_or(BuildError::NoSnapshot)?;
        let version = self
            .signed
            .timestamp
            .max(v.timestamp.unwrap_or(0))
            .saturating_add(1);
        let draft = Draft {
            snapshot: current.snapshot.into_vec(),
            snapshot_version,
            targets: current.targets.into_vec(),
        };
        let bundle = self.timestamped(now, expires_secs, version, draft, keys)?;
        self.publish(&bundle, now)?;
        self.signed.timestamp = version;
        Ok(bundle)
    }

    /// Signs a timestamp for the draft's snapshot and assembles the bundle.
    fn timestamped(
        &self,
        now: Timestamp,
        expires_secs: u64,
        version: u64,
        draft: Draft,
        keys: &[&SigningKey],
    ) -> Result<MetadataBundle, BuildError> {
        let timestamp = sign_document(
            TimestampMeta {
                type_: RoleName::Timestamp,
                spec_version: SPEC_VERSION.into(),
                version,
                expires: now.plus_secs(expires_secs),
                meta: TimestampFiles {
                    snapshot: MetaFile::for_document(draft.snapshot_version, &draft.snapshot),
                },
            },
            keys,
        )?;
        Ok(MetadataBundle {
            roots: self.trust.bundle().roots,
            timestamp: ByteBuf::from(timestamp),
            snapshot: ByteBuf::from(draft.snapshot),
            targets: ByteBuf::from(draft.targets),
        })
    }

    /// Checks the bundle fits gossip and that a client would take it, then takes it.
    fn publish(&mut self, bundle: &MetadataBundle, now: Timestamp) -> Result<(), BuildError> {
        let len = Gossip::Metadata(bundle.clone()).encode().len();
        if len > MAX_GOSSIP_BYTES {
            return Err(BuildError::BundleTooLarge {
                len,
                limit: MAX_GOSSIP_BYTES,
            });
        }
        // apply_bundle is atomic: on error the repository is unchanged.
        self.trust
            .apply_bundle(bundle, now)
            .map_err(BuildError::Rejected)?;
        Ok(())
    }
}

/// Small builders shared by the unit tests of this module and of `trust`.
#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;
    use crate::release::{ChunkListRef, ChunkerParams, HealthPolicy, RolloutPolicy, WaveSpec, PPM};

    /// A fixed "now" for tests.
    pub const NOW: Timestamp = Timestamp::from_secs(1_900_000_000);
    /// One day.
    pub const DAY_SECS: u64 = DAY;

    /// A key from a one-byte seed.
    pub fn key(seed: u8) -> SigningKey {
        SigningKey::from_seed([seed; 32])
    }

    /// A valid release target for `version` of product `acme`.
    pub fn target(version: &str) -> TargetFile {
        let info = ReleaseInfo {
            product: "acme".into(),
            version: version.into(),
            chunk_list: ChunkListRef {
                length: crate::chunk::encoded_list_len(2),
                blake3: "11".repeat(32),
                chunks: 2,
            },
            chunker: ChunkerParams::default(),
            rollout: RolloutPolicy {
                start: NOW,
                waves: vec![WaveSpec {
                    name: "all".into(),
                    cumulative_ppm: PPM,
                    bake_seconds: 3600,
                }],
                health: HealthPolicy {
                    max_failure_ppm: 50_000,
                    min_reports: 3,
                    silence_seconds: 600,
                    heartbeat_seconds: 60,
                    report_ppm: 1_000_000,
                },
            },
        };
        let hash = *blake3::hash(version.as_bytes()).as_bytes();
        release_target(&format!("acme-{version}.bin"), 3_000_000, &hash, &info)
            .expect("fixture target is valid")
    }

    /// Role keys: root 1, targets 2, snapshot 3, timestamp 4, operator 5.
    pub struct Vendor {
        pub root: SigningKey,
        pub targets: SigningKey,
        pub snapshot: SigningKey,
        pub timestamp: SigningKey,
        pub operator: SigningKey,
    }

    impl Vendor {
        pub fn new() -> Self {
            Vendor {
                root: key(1),
                targets: key(2),
                snapshot: key(3),
                timestamp: key(4),
                operator: key(5),
            }
        }

        pub fn spec(&self) -> RootSpec {
            RootSpec {
                root: RoleSpec::single(self.root.public()),
                targets: RoleSpec::single(self.targets.public()),
                snapshot: RoleSpec::single(self.snapshot.public()),
                timestamp: RoleSpec::single(self.timestamp.public()),
                operator: Some(RoleSpec::single(self.operator.public())),
                expires: NOW.plus_secs(365 * DAY),
            }
        }

        /// The signed first root.
        pub fn root_json(&self) -> Vec<u8> {
            sign_document(new_root(&self.spec()).expect("valid spec"), &[&self.root])
                .expect("signs")
        }

        pub fn repository(&self) -> Repository {
            Repository::new(&self.root_json()).expect("valid root")
        }

        /// Signs with the vendor's role keys.
        pub fn sign(
            &self,
            repo: &mut Repository,
            now: Timestamp,
        ) -> Result<MetadataBundle, BuildError> {
            let (t, s, ts) = ([&self.targets], [&self.snapshot], [&self.timestamp]);
            repo.sign(
                now,
                &Expiries::default(),
                &RoleSigners {
                    targets: &t,
                    snapshot: &s,
                    timestamp: &ts,
                },
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;

    mod roots {
        use super::*;

        #[test]
        fn new_root_writes_a_valid_version_1() {
            let v = Vendor::new();
            let root = new_root(&v.spec()).unwrap();
            assert_eq!(root.version, 1);
            assert!(!root.consistent_snapshot);
            assert_eq!(root.keys.len(), 5);
            assert_eq!(root.role_keys(RoleName::Operator).unwrap().1.len(), 1);
            let json: serde_json::Value = serde_json::to_value(&root).unwrap();
            assert_eq!(json["waveguard"]["operator"]["threshold"], 1);
            assert_eq!(json["spec_version"], SPEC_VERSION);
        }

        #[test]
        fn new_root_refuses_unreachable_thresholds() {
            let v = Vendor::new();
            let mut spec = v.spec();
            spec.targets.threshold = 2;
            assert!(matches!(
                new_root(&spec),
                Err(BuildError::Invalid(FormatError::BadThreshold { .. }))
            ));
        }

        #[test]
        fn rotation_bumps_version_keeps_unchanged_roles_and_prunes_keys() {
            let v = Vendor::new();
            let mut current = new_root(&v.spec()).unwrap();
            current
                .unrecognized_fields
                .insert("x-note".into(), serde_json::json!("kept"));
            let changes = RootChanges {
                timestamp: Some(RoleSpec::single(key(9).public())),
                operator: OperatorChange::Remove,
                ..RootChanges::default()
            };
            let next = rotate_root(&current, &changes).unwrap();
            assert_eq!(next.version, 2);
            assert_eq!(next.expires, current.expires);
            assert_eq!(
                next.role(RoleName::Targets),
                current.role(RoleName::Targets)
            );
            assert_eq!(
                next.role(RoleName::Timestamp).unwrap().keyids,
                vec![key(9).key_id()]
            );
            assert!(next.waveguard.is_none());
            // old timestamp key and operator key are gone
            assert_eq!(next.keys.len(), 4);
            assert!(!next.keys.contains_key(&v.timestamp.key_id()));
            assert_eq!(next.unrecognized_fields["x-note"], "kept");
        }
    }

    mod repository {
        use super::*;

        #[test]
        fn sign_bumps_every_version_and_a_client_accepts_it() {
            let v = Vendor::new();
            let mut repo = v.repository();
            repo.add_target("a", target("1.0")).unwrap();
            let b1 = v.sign(&mut repo, NOW).unwrap();
            repo.add_target("b", target("1.1")).unwrap();
            let b2 = v.sign(&mut repo, NOW).unwrap();
            let vs = repo.trust().versions();
            assert_eq!(
                (vs.timestamp, vs.snapshot, vs.targets),
                (Some(2), Some(2), Some(2))
            );
            let mut client = TrustedState::new(&v.root_json()).unwrap();
            assert_eq!(client.apply_bundle(&b1, NOW).unwrap().new_releases.len(), 1);
            assert_eq!(client.apply_bundle(&b2, NOW).unwrap().new_releases.len(), 1);
            assert_eq!(client.releases().len(), 2);
        }

        #[test]
        fn sign_with_a_wrong_key_changes_nothing() {
            let v = Vendor::new();
            let mut repo = v.repository();
            repo.add_target("a", target("1.0")).unwrap();
            let wrong = key(42);
            let (t, s, ts) = ([&wrong], [&v.snapshot], [&v.timestamp]);
            let err = repo
                .sign(
                    NOW,
                    &Expiries::default(),
                    &RoleSigners {
                        targets: &t,
                        snapshot: &s,
                        timestamp: &ts,
                    },
                )
                .unwrap_err();
            assert!(
                matches!(err, BuildError::Rejected(BundleError::Targets(_))),
                "{err}"
            );
            assert_eq!(repo.trust().versions().targets, None);
            // the next good signing still starts at version 1
            v.sign(&mut repo, NOW).unwrap();
            assert_eq!(repo.trust().versions().targets, Some(1));
        }

        #[test]
        fn add_target_refuses_invalid_and_duplicate_releases() {
            let v = Vendor::new();
            let mut repo = v.repository();
            let mut bad = target("1.0");
            bad.hashes.clear();
            assert!(matches!(
                repo.add_target("x", bad),
                Err(BuildError::InvalidTarget { .. })
            ));
            repo.add_target("a", target("1.0")).unwrap();
            assert!(matches!(
                repo.add_target("b", target("1.0")),
                Err(BuildError::DuplicateRelease { existing, .. }) if existing == "a"
            ));
            // replacing the same path is fine
            repo.add_target("a", target("1.0")).unwrap();
            assert!(repo.remove_target("a").is_some());
            assert!(repo.targets().is_empty());
        }

        #[test]
        fn refuses_bundles_too_large_to_gossip() {
            let v = Vendor::new();
            let mut repo = v.repository();
            // Each target is about 1 KiB of JSON; a few thousand would pass 1 MiB,
            // but MAX_TARGETS stops first, so pad one target's custom field instead.
            let mut big = target("1.0");
            if let Some(serde_json::Value::Object(custom)) = big.custom.as_mut() {
                custom.insert(
                    "padding".into(),
                    serde_json::Value::String("x".repeat(MAX_GOSSIP_BYTES)),
                );
            }
            repo.add_target("a", big).unwrap();
            assert!(matches!(
                v.sign(&mut repo, NOW),
                Err(BuildError::BundleTooLarge { .. })
            ));
            assert_eq!(repo.trust().versions().targets, None);
        }

        #[test]
        fn rotation_then_signing_uses_the_new_keys() {
            let v = Vendor::new();
            let mut repo = v.repository();
            repo.add_target("a", target("1.0")).unwrap();
            v.sign(&mut repo, NOW).unwrap();
            let new_ts = key(9);
            let changes = RootChanges {
                timestamp: Some(RoleSpec::single(new_ts.public())),
                ..RootChanges::default()
            };
            repo.rotate_root(&changes, &[&v.root]).unwrap();
            // rotating the timestamp key dropped timestamp and snapshot, not targets
            let vs = repo.trust().versions();
            assert_eq!(
                (vs.root, vs.timestamp, vs.snapshot, vs.targets),
                (2, None, None, Some(1))
            );
            assert!(matches!(
                v.sign(&mut repo, NOW),
                Err(BuildError::Rejected(BundleError::Timestamp(_)))
            ));
            let (t, s, ts) = ([&v.targets], [&v.snapshot], [&new_ts]);
            let signers = RoleSigners {
                targets: &t,
                snapshot: &s,
                timestamp: &ts,
            };
            let bundle = repo.sign(NOW, &Expiries::default(), &signers).unwrap();
            assert_eq!(bundle.roots.len(), 2);
            assert_eq!(repo.trust().versions().timestamp, Some(2));
        }

        #[test]
        fn timestamp_refresh_keeps_snapshot_and_targets() {
            let v = Vendor::new();
            let mut repo = v.repository();
            assert!(matches!(
                repo.sign_timestamp(NOW, DAY_SECS, &[&v.timestamp]),
                Err(BuildError::NoSnapshot)
            ));
            repo.add_target("a", target("1.0")).unwrap();
            let first = v.sign(&mut repo, NOW).unwrap();
            let later = NOW.plus_secs(2 * DAY_SECS);
            let refreshed = repo
                .sign_timestamp(later, DAY_SECS, &[&v.timestamp])
                .unwrap();
            assert_eq!(refreshed.snapshot, first.snapshot);
            assert_eq!(refreshed.targets, first.targets);
            assert_ne!(refreshed.timestamp, first.timestamp);
            let mut client = TrustedState::new(&v.root_json()).unwrap();
            client.apply_bundle(&first, NOW).unwrap();
            assert_eq!(client.expired(later), Some(RoleName::Timestamp));
            assert!(client.apply_bundle(&refreshed, later).unwrap().changed);
            assert_eq!(client.expired(later), None);
        }

        #[test]
        fn stored_repository_reloads_with_its_targets() {
            let v = Vendor::new();
            let mut repo = v.repository();
            repo.add_target("a", target("1.0")).unwrap();
            v.sign(&mut repo, NOW).unwrap();
            let mut again = Repository::from_stored(&repo.stored()).unwrap();
            assert_eq!(again.targets().len(), 1);
            v.sign(&mut again, NOW).unwrap();
            assert_eq!(again.trust().versions().targets, Some(2));
        }
    }
}
