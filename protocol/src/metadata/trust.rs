//! The client's trusted metadata and the TUF update rules (spec 1.0, §5.3–5.6).
//!
//! [`TrustedState`] plays the part of python-tuf's `TrustedMetadataSet`: it
//! holds the root chain and the newest timestamp, snapshot and targets this
//! node accepted, and accepts a new document only if the TUF client workflow
//! would. Each attack TUF names ends in its own error variant:
//!
//! | attack | refused by |
//! |---|---|
//! | arbitrary installation | `NoValidSignature`, `LengthMismatch`, `HashMismatch` |
//! | below-threshold signing | `BelowThreshold` |
//! | rollback | `Rollback`, `SnapshotRollback`, `TargetsRollback`, `VersionReused` |
//! | freeze | `Expired`, `RootExpired` |
//! | endless data | `TooLarge` (checked before parsing), [`BundleError::TooManyRoots`] |
//! | mix-and-match | `VersionMismatch`, `NotProvided` |
//! | fast-forward after key rotation | `SignedByRevokedKeys` |
//!
//! Where waveguard deviates from TUF:
//! - Metadata travels over gossip as a [`MetadataBundle`] (root chain, timestamp,
//!   snapshot, targets) instead of being downloaded from a repository URL. A
//!   bundle is applied atomically and must leave the documents consistent: a
//!   timestamp without the snapshot it names is refused, not half-applied.
//! - No `consistent_snapshot` file naming (there are no files to name); roots
//!   write `consistent_snapshot: false`.
//! - Pins use blake3 and must carry a length: `meta` entries without
//!   `hashes.blake3` and `length` are refused.
//! - A node keeps its state between refreshes rather than rebuilding it from
//!   disk each time, so fast-forward recovery is explicit: when a root rotation
//!   changes the timestamp or snapshot keys, the trusted timestamp and snapshot
//!   are dropped; when it changes the targets keys, targets are dropped as well
//!   (the snapshot pins them). A document signed only by keys a newer root
//!   removed is reported as `SignedByRevokedKeys`.
//! - Freeze protection and air-gapped sites: expiry is enforced per role at
//!   the time passed in, on every update and on use ([`TrustedState::expired`]).
//!   A site that cannot receive fresh timestamps cannot be exempted; vendors set
//!   long expiries on the documents for air-gapped releases instead.
//! - Only the newest [`MAX_BUNDLE_ROOTS`] roots are kept, so a node more than
//!   that many rotations behind every peer must be given a newer root out of band.

use crate::id::ReleaseId;
use crate::keys::{KeyId, PublicKey};
use crate::limits::{
    MAX_ROOT_ROTATIONS, MAX_SNAPSHOT_BYTES, MAX_TARGETS_BYTES, MAX_TIMESTAMP_BYTES,
};
use crate::metadata::root::{
    read_metadata, Metadata, ReadError, RoleName, Root, RootError, RootKeySet,
};
use crate::metadata::signed::{Envelope, RoleKeys, SignatureError};
use crate::metadata::snapshot::{MetaFile, Snapshot, SnapshotError, BLAKE3};
use crate::metadata::targets::{Targets, TargetsError};
use crate::metadata::timestamp::{TimestampError, TimestampMeta};
use crate::release::Release;
use crate::time::Timestamp;
use crate::wire::{MetadataBundle, MAX_BUNDLE_ROOTS};
use serde_bytes::ByteBuf;
use std::collections::{BTreeMap, BTreeSet};
use thiserror::Error;

/// What offering one document did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Update {
    /// The document is the one already trusted (same signed content); nothing changed.
    Unchanged,
    /// The document is now trusted.
    Updated {
        /// Its version.
        version: u64,
    },
}

/// What applying a bundle did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BundleOutcome {
    /// Whether any trusted document changed; `false` when everything in the
    /// bundle was already trusted (then the lists below are empty).
    pub changed: bool,
    /// The new root version, if roots were rotated.
    pub rotated_root: Option<u64>,
    /// Releases in the trusted targets now that were not before this bundle.
    pub new_releases: Vec<Release>,
    /// Releases trusted before this bundle that the trusted targets no longer list.
    pub removed_releases: Vec<ReleaseId>,
}

/// The versions of the trusted documents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrustVersions {
    /// Root version.
    pub root: u64,
    /// Timestamp version, if one is trusted.
    pub timestamp: Option<u64>,
    /// Snapshot version, if one is trusted.
    pub snapshot: Option<u64>,
    /// Targets version, if one is trusted.
    pub targets: Option<u64>,
}

/// The trusted documents as bytes, for the agent to persist and reload with
/// [`TrustedState::from_stored`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoredTrust {
    /// The root chain, oldest first; the first is the anchor.
    pub roots: Vec<Vec<u8>>,
    /// Timestamp metadata.
    pub timestamp: Option<Vec<u8>>,
    /// Snapshot metadata.
    pub snapshot: Option<Vec<u8>>,
    /// Targets metadata.
    pub targets: Option<Vec<u8>>,
}

/// Applying a metadata bundle failed; the trusted state is exactly as before.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum BundleError {
    /// Endless data: more roots than [`MAX_BUNDLE_ROOTS`]; nothing was parsed.
    #[error("bundle carries {count} roots, over the limit of {limit}")]
    TooManyRoots {
        /// Roots carried.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// A root in the bundle was refused.
    #[error("root at position {position} of the bundle: {source}")]
    Root {
        /// Index in the bundle's root list.
        position: usize,
        /// Why.
        source: RootError,
    },
    /// Freeze attack: the newest root, after applying the bundle's roots, has expired.
    #[error("the trusted root v{version} expired at {expires} (now {now})")]
    RootExpired {
        /// The root's version.
        version: u64,
        /// Its expiry.
        expires: Timestamp,
        /// The time of the check.
        now: Timestamp,
    },
    /// The bundle's timestamp was refused.
    #[error("timestamp: {0}")]
    Timestamp(TimestampError),
    /// The bundle's snapshot was refused, or the snapshot its timestamp names is missing.
    #[error("snapshot: {0}")]
    Snapshot(SnapshotError),
    /// The bundle's targets were refused, or the targets its snapshot names are missing.
    #[error("targets: {0}")]
    Targets(TargetsError),
}

impl BundleError {
    /// Whether the bundle is authentic but out of date (older versions, expired,
    /// signed by keys since rotated away): a lagging honest peer sends such
    /// bundles, so gossip drops them without penalising the sender.
    pub fn is_stale(&self) -> bool {
        match self {
            BundleError::RootExpired { .. } => true,
            BundleError::Timestamp(e) => matches!(
                e,
                TimestampError::Rollback { .. }
                    | TimestampError::SnapshotRollback { .. }
                    | TimestampError::Expired { .. }
                    | TimestampError::RootExpired { .. }
                    | TimestampError::SignedByRevokedKeys { .. }
            ),
            BundleError::Snapshot(e) => matches!(
                e,
                SnapshotError::Rollback { .. }
                    | SnapshotError::TargetsRollback { .. }
                    | SnapshotError::Expired { .. }
                    | SnapshotError::SignedByRevokedKeys { .. }
            ),
            BundleError::Targets(e) => matches!(
                e,
                TargetsError::Rollback { .. }
                    | TargetsError::Expired { .. }
                    | TargetsError::SignedByRevokedKeys { .. }
            ),
            _ => false,
        }
    }
}

/// Reloading persisted trust failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StoredTrustError {
    /// No root at all: there is nothing to anchor trust in.
    #[error("stored trust holds no root")]
    NoRoots,
    /// More roots than [`MAX_ROOT_ROTATIONS`].
    #[error("stored trust holds {count} roots, over the limit of {limit}")]
    TooManyRoots {
        /// Roots stored.
        count: usize,
        /// The limit.
        limit: u64,
    },
    /// A stored root was refused.
    #[error("stored root at position {position}: {source}")]
    Root {
        /// Index in the stored chain.
        position: usize,
        /// Why.
        source: RootError,
    },
    /// The stored timestamp was refused.
    #[error("stored timestamp: {0}")]
    Timestamp(TimestampError),
    /// The stored snapshot was refused or is missing.
    #[error("stored snapshot: {0}")]
    Snapshot(SnapshotError),
    /// The stored targets were refused or are missing.
    #[error("stored targets: {0}")]
    Targets(TargetsError),
}

/// A trusted document with the exact bytes it arrived as (what peers are served).
#[derive(Clone, Debug)]
struct Held<T> {
    env: Envelope<T>,
    raw: Vec<u8>,
    blake3: [u8; 32],
}

impl<T: Metadata> Held<T> {
    fn new(env: Envelope<T>, raw: &[u8]) -> Self {
        Held {
            env,
            raw: raw.to_vec(),
            blake3: *blake3::hash(raw).as_bytes(),
        }
    }

    fn version(&self) -> u64 {
        self.env.signed.version()
    }

    fn expires(&self) -> Timestamp {
        self.env.signed.expires()
    }

    fn check_pin(&self, pin: &MetaFile) -> Result<(), PinFault> {
        check_pin(pin, self.version(), &self.raw, &self.blake3)
    }
}

/// Trusted targets with their releases, validated once on acceptance.
#[derive(Clone, Debug)]
struct HeldTargets {
    doc: Held<Targets>,
    releases: Vec<Release>,
}

/// Whether expiry is checked: always for updates, never when reloading
/// stored trust (expiry is then checked on use, via [`TrustedState::expired`]).
#[derive(Clone, Copy, Debug)]
enum Expiry {
    At(Timestamp),
    Ignored,
}

impl Expiry {
    /// `Err(now)` when `expires` has been reached.
    fn check(self, expires: Timestamp) -> Result<(), Timestamp> {
        match self {
            Expiry::At(now) if now >= expires => Err(now),
            _ => Ok(()),
        }
    }
}

/// How targets are anchored when accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Anchor {
    /// Pinned by the trusted snapshot (always, for updates).
    Snapshot,
    /// Reloaded from storage after a key rotation dropped timestamp and snapshot:
    /// only the signatures can be checked.
    StoredAlone,
}

/// Why signatures fell short, before it is put into a role's error.
enum SigFault {
    NoValid,
    Below { valid: u32, threshold: u32 },
    Revoked { root_version: u64 },
}

/// Why a document does not match the pin of the role above it.
enum PinFault {
    Version { expected: u64, got: u64 },
    Length { expected: u64, got: u64 },
    Hash { expected: String, got: String },
}

/// A document the one above it names is absent or stale.
enum Gap {
    Snapshot(u64),
    Targets(u64),
}

fn check_pin(pin: &MetaFile, version: u64, raw: &[u8], hash: &[u8; 32]) -> Result<(), PinFault> {
    if version != pin.version {
        return Err(PinFault::Version {
            expected: pin.version,
            got: version,
        });
    }
    let len = u64::try_from(raw.len()).unwrap_or(u64::MAX);
    if len != pin.length {
        return Err(PinFault::Length {
            expected: pin.length,
            got: len,
        });
    }
    if pin.blake3().as_ref() != Some(hash) {
        return Err(PinFault::Hash {
            expected: pin
                .hashes
                .get(BLAKE3)
                .map(|h| h.chars().take(64).collect())
                .unwrap_or_default(),
            got: hex::encode(hash),
        });
    }
    Ok(())
}

/// Checks a root's signatures against `signer`'s root role.
fn check_root_signatures(
    env: &Envelope<Root>,
    signer: &Root,
    keys: RootKeySet,
) -> Result<(), RootError> {
    let version = env.signed.version;
    let Some(role) = signer.role(RoleName::Root) else {
        return Err(RootError::NoValidSignature { version, keys });
    };
    match env.verify_role(RoleName::Root.as_str(), role, &signer.keys) {
        Ok(_) => Ok(()),
        Err(SignatureError::BelowThreshold {
            valid, threshold, ..
        }) if valid > 0 => Err(RootError::BelowThreshold {
            version,
            keys,
            valid,
            threshold,
        }),
        Err(_) => Err(RootError::NoValidSignature { version, keys }),
    }
}

/// Everything a client trusts, and the rules for trusting more.
#[derive(Clone, Debug)]
pub struct TrustedState {
    /// The newest root.
    root: Held<Root>,
    /// Older roots still kept, oldest first; with `root` at most [`MAX_BUNDLE_ROOTS`].
    previous: Vec<Held<Root>>,
    timestamp: Option<Held<TimestampMeta>>,
    snapshot: Option<Held<Snapshot>>,
    targets: Option<HeldTargets>,
    /// Roots accepted since the last accepted timestamp (bounded by [`MAX_ROOT_ROTATIONS`]).
    rotations: u64,
}

impl TrustedState {
    /// Bootstraps from a root shipped with the agent: it must be signed by a
    /// threshold of its own root keys. Its expiry is checked later, after any
    /// rotations, as TUF does.
    pub fn new(root_bytes: &[u8]) -> Result<Self, RootError> {
        let env = read_metadata::<Root>(root_bytes)?;
        check_root_signatures(&env, &env.signed, RootKeySet::NewRoot)?;
        Ok(TrustedState {
            root: Held::new(env, root_bytes),
            previous: Vec::new(),
            timestamp: None,
            snapshot: None,
            targets: None,
            rotations: 0,
        })
    }

    /// The trusted root.
    pub fn root(&self) -> &Root {
        &self.root.env.signed
    }

    /// The trusted root's version.
    pub fn root_version(&self) -> u64 {
        self.root.version()
    }

    /// The versions of every trusted document.
    pub fn versions(&self) -> TrustVersions {
        TrustVersions {
            root: self.root_version(),
            timestamp: self.timestamp.as_ref().map(Held::version),
            snapshot: self.snapshot.as_ref().map(Held::version),
            targets: self.targets.as_ref().map(|t| t.doc.version()),
        }
    }

    /// Every release in the trusted targets, in target-path order.
    pub fn releases(&self) -> Vec<Release> {
        self.targets
            .as_ref()
            .map(|t| t.releases.clone())
            .unwrap_or_default()
    }

    /// One release of the trusted targets.
    pub fn release(&self, id: &ReleaseId) -> Option<Release> {
        self.targets
            .as_ref()?
            .releases
            .iter()
            .find(|r| &r.id == id)
            .cloned()
    }

    /// The keys and threshold of `role` under the trusted root, with the public
    /// keys it names; `None` only for the operator role of a fleet without one.
    pub fn role_keys(&self, role: RoleName) -> Option<(RoleKeys, BTreeMap<KeyId, PublicKey>)> {
        self.root().role_keys(role)
    }

    /// The operator role: who signs fleet certificates and halt/resume directives.
    pub fn operator_role(&self) -> Option<(RoleKeys, BTreeMap<KeyId, PublicKey>)> {
        self.role_keys(RoleName::Operator)
    }

    /// The first trusted document that has expired at `now`, in the order
    /// root, timestamp, snapshot, targets. A node must not act on releases while
    /// this is `Some` (freeze protection).
    pub fn expired(&self, now: Timestamp) -> Option<RoleName> {
        let candidates = [
            (RoleName::Root, Some(self.root.expires())),
            (
                RoleName::Timestamp,
                self.timestamp.as_ref().map(Held::expires),
            ),
            (
                RoleName::Snapshot,
                self.snapshot.as_ref().map(Held::expires),
            ),
            (
                RoleName::Targets,
                self.targets.as_ref().map(|t| t.doc.expires()),
            ),
        ];
        candidates
            .into_iter()
            .find(|(_, e)| e.is_some_and(|e| now >= e))
            .map(|(role, _)| role)
    }

    /// What this node serves to peers: its root chain (newest last) and the
    /// timestamp, snapshot and targets it trusts, as received; empty when absent.
    pub fn bundle(&self) -> MetadataBundle {
        let bytes = |raw: Option<&Vec<u8>>| ByteBuf::from(raw.cloned().unwrap_or_default());
        MetadataBundle {
            roots: self
                .root_chain()
                .map(|r| ByteBuf::from(r.raw.clone()))
                .collect(),
            timestamp: bytes(self.timestamp.as_ref().map(|h| &h.raw)),
            snapshot: bytes(self.snapshot.as_ref().map(|h| &h.raw)),
            targets: bytes(self.targets.as_ref().map(|h| &h.doc.raw)),
        }
    }

    /// Everything needed to rebuild this state with [`TrustedState::from_stored`].
    pub fn stored(&self) -> StoredTrust {
        StoredTrust {
            roots: self.root_chain().map(|r| r.raw.clone()).collect(),
            timestamp: self.timestamp.as_ref().map(|h| h.raw.clone()),
            snapshot: self.snapshot.as_ref().map(|h| h.raw.clone()),
            targets: self.targets.as_ref().map(|h| h.doc.raw.clone()),
        }
    }

    /// Rebuilds a state from storage, re-verifying every signature, pin and
    /// version rule (so rollback protection survives a restart) but not expiry:
    /// a node that was off for a month must still load, and then learns from
    /// [`TrustedState::expired`] that it must not act until it is refreshed.
    /// The first stored root is the anchor; the agent stores only roots it trusted.
    pub fn from_stored(stored: &StoredTrust) -> Result<Self, StoredTrustError> {
        let (first, rest) = stored
            .roots
            .split_first()
            .ok_or(StoredTrustError::NoRoots)?;
        if u64::try_from(stored.roots.len()).map_or(true, |n| n > MAX_ROOT_ROTATIONS) {
            return Err(StoredTrustError::TooManyRoots {
                count: stored.roots.len(),
                limit: MAX_ROOT_ROTATIONS,
            });
        }
        let mut state = Self::new(first).map_err(|source| StoredTrustError::Root {
            position: 0,
            source,
        })?;
        for (i, raw) in rest.iter().enumerate() {
            let root_err = |source| StoredTrustError::Root {
                position: i + 1,
                source,
            };
            let env = read_metadata::<Root>(raw).map_err(|e| root_err(e.into()))?;
            state.accept_root(env, raw).map_err(root_err)?;
        }
        if let Some(raw) = &stored.timestamp {
            state
                .timestamp_step(raw, Expiry::Ignored)
                .map_err(StoredTrustError::Timestamp)?;
        }
        if let Some(raw) = &stored.snapshot {
            state
                .snapshot_step(raw, Expiry::Ignored)
                .map_err(StoredTrustError::Snapshot)?;
        }
        if let Some(raw) = &stored.targets {
            let anchor = match state.snapshot {
                Some(_) => Anchor::Snapshot,
                None => Anchor::StoredAlone,
            };
            state
                .targets_step(raw, Expiry::Ignored, anchor)
                .map_err(StoredTrustError::Targets)?;
        }
        state.check_consistent().map_err(|gap| match gap {
            Gap::Snapshot(version) => {
                StoredTrustError::Snapshot(SnapshotError::NotProvided { version })
            }
            Gap::Targets(version) => {
                StoredTrustError::Targets(TargetsError::NotProvided { version })
            }
        })?;
        state.rotations = 0;
        Ok(state)
    }

    /// Rotates to the next root (§5.3.4–5.3.11): `bytes` must be version
    /// trusted+1, signed by a threshold of the trusted root's root keys and of
    /// its own. Intermediate roots may be expired; the final one is checked by
    /// the next timestamp update. Rotating timestamp or snapshot keys drops the
    /// trusted timestamp and snapshot; rotating targets keys drops targets too.
    pub fn update_root(&mut self, bytes: &[u8]) -> Result<(), RootError> {
        let env = read_metadata::<Root>(bytes)?;
        self.accept_root(env, bytes)
    }

    /// Offers timestamp metadata (§5.4), checked at `now`.
    pub fn update_timestamp(
        &mut self,
        bytes: &[u8],
        now: Timestamp,
    ) -> Result<Update, TimestampError> {
        self.timestamp_step(bytes, Expiry::At(now))
    }

    /// Offers snapshot metadata (§5.5), checked at `now` against the trusted timestamp.
    pub fn update_snapshot(
        &mut self,
        bytes: &[u8],
        now: Timestamp,
    ) -> Result<Update, SnapshotError> {
        self.snapshot_step(bytes, Expiry::At(now))
    }

    /// Offers targets metadata (§5.6), checked at `now` against the trusted snapshot.
    pub fn update_targets(&mut self, bytes: &[u8], now: Timestamp) -> Result<Update, TargetsError> {
        self.targets_step(bytes, Expiry::At(now), Anchor::Snapshot)
    }

    /// Applies a bundle from a peer: newer roots in order, then the expiry of
    /// the final root, then timestamp, snapshot and targets (empty fields are
    /// skipped). Atomic: on error nothing changes. A bundle whose documents are
    /// all already trusted costs byte comparisons and expiry checks only.
    pub fn apply_bundle(
        &mut self,
        bundle: &MetadataBundle,
        now: Timestamp,
    ) -> Result<BundleOutcome, BundleError> {
        if bundle.roots.len() > MAX_BUNDLE_ROOTS {
            return Err(BundleError::TooManyRoots {
                count: bundle.roots.len(),
                limit: MAX_BUNDLE_ROOTS,
            });
        }
        if self.holds_all_of(bundle) {
            self.check_supplied_expiry(bundle, now)?;
            self.check_consistent().map_err(bundle_gap)?;
            return Ok(BundleOutcome::default());
        }
        let mut next = self.clone();
        next.rotations = 0;
        next.apply_in_place(bundle, now)?;
        let outcome = self.changes_to(&next);
        *self = next;
        Ok(outcome)
    }

    fn root_chain(&self) -> impl Iterator<Item = &Held<Root>> {
        self.previous.iter().chain(std::iter::once(&self.root))
    }

    fn knows_root(&self, raw: &[u8]) -> bool {
        self.root_chain().any(|r| r.raw == raw)
    }

    /// Whether every document in `bundle` is byte-identical to one already trusted.
    fn holds_all_of(&self, bundle: &MetadataBundle) -> bool {
        let same = |offered: &[u8], held: Option<&Vec<u8>>| {
            offered.is_empty() || held.is_some_and(|h| h == offered)
        };
        bundle.roots.iter().all(|r| self.knows_root(r))
            && same(&bundle.timestamp, self.timestamp.as_ref().map(|h| &h.raw))
            && same(&bundle.snapshot, self.snapshot.as_ref().map(|h| &h.raw))
            && same(&bundle.targets, self.targets.as_ref().map(|h| &h.doc.raw))
    }

    /// The expiry checks a full application of an already-trusted bundle would make.
    fn check_supplied_expiry(
        &self,
        bundle: &MetadataBundle,
        now: Timestamp,
    ) -> Result<(), BundleError> {
        let root = self.root();
        if now >= root.expires {
            return Err(BundleError::RootExpired {
                version: root.version,
                expires: root.expires,
                now,
            });
        }
        let expired = |h: Option<(u64, Timestamp)>, supplied: &[u8]| {
            h.filter(|(_, e)| !supplied.is_empty() && now >= *e)
        };
        if let Some((version, expires)) = expired(
            self.timestamp.as_ref().map(|h| (h.version(), h.expires())),
            &bundle.timestamp,
        ) {
            return Err(BundleError::Timestamp(TimestampError::Expired {
                version,
                expires,
                now,
            }));
        }
        if let Some((version, expires)) = expired(
            self.snapshot.as_ref().map(|h| (h.version(), h.expires())),
            &bundle.snapshot,
        ) {
            return Err(BundleError::Snapshot(SnapshotError::Expired {
                version,
                expires,
                now,
            }));
        }
        if let Some((version, expires)) = expired(
            self.targets
                .as_ref()
                .map(|h| (h.doc.version(), h.doc.expires())),
            &bundle.targets,
        ) {
            return Err(BundleError::Targets(TargetsError::Expired {
                version,
                expires,
                now,
            }));
        }
        Ok(())
    }

    fn apply_in_place(
        &mut self,
        bundle: &MetadataBundle,
        now: Timestamp,
    ) -> Result<(), BundleError> {
        let expiry = Expiry::At(now);
        for (position, raw) in bundle.roots.iter().enumerate() {
            if self.knows_root(raw) {
                continue;
            }
            let root_err = |source| BundleError::Root { position, source };
            let env = read_metadata::<Root>(raw).map_err(|e| root_err(e.into()))?;
            // TUF only walks forward; older roots are history the sender keeps.
            if env.signed.version <= self.root_version() {
                continue;
            }
            self.accept_root(env, raw).map_err(root_err)?;
        }
        let root = self.root();
        if now >= root.expires {
            return Err(BundleError::RootExpired {
                version: root.version,
                expires: root.expires,
                now,
            });
        }
        if !bundle.timestamp.is_empty() {
            self.timestamp_step(&bundle.timestamp, expiry)
                .map_err(BundleError::Timestamp)?;
        }
        if !bundle.snapshot.is_empty() {
            self.snapshot_step(&bundle.snapshot, expiry)
                .map_err(BundleError::Snapshot)?;
        }
        if !bundle.targets.is_empty() {
            self.targets_step(&bundle.targets, expiry, Anchor::Snapshot)
                .map_err(BundleError::Targets)?;
        }
        self.check_consistent().map_err(bundle_gap)
    }

    /// Every trusted document matches the pin of the trusted document above it.
    fn check_consistent(&self) -> Result<(), Gap> {
        if let Some(ts) = &self.timestamp {
            let pin = &ts.env.signed.meta.snapshot;
            if self
                .snapshot
                .as_ref()
                .is_none_or(|s| s.check_pin(pin).is_err())
            {
                return Err(Gap::Snapshot(pin.version));
            }
        }
        if let Some(snap) = &self.snapshot {
            let pin = &snap.env.signed.meta.targets;
            if self
                .targets
                .as_ref()
                .is_none_or(|t| t.doc.check_pin(pin).is_err())
            {
                return Err(Gap::Targets(pin.version));
            }
        }
        Ok(())
    }

    fn changes_to(&self, next: &TrustedState) -> BundleOutcome {
        let fingerprint = |s: &TrustedState| {
            (
                s.root_version(),
                s.timestamp.as_ref().map(|h| h.blake3),
                s.snapshot.as_ref().map(|h| h.blake3),
                s.targets.as_ref().map(|h| h.doc.blake3),
            )
        };
        if fingerprint(self) == fingerprint(next) {
            return BundleOutcome::default();
        }
        let ids = |s: &TrustedState| -> BTreeSet<ReleaseId> {
            s.targets
                .iter()
                .flat_map(|t| t.releases.iter().map(|r| r.id))
                .collect()
        };
        let (before, after) = (ids(self), ids(next));
        BundleOutcome {
            changed: true,
            rotated_root: (next.root_version() != self.root_version()).then(|| next.root_version()),
            new_releases: next
                .releases()
                .into_iter()
                .filter(|r| !before.contains(&r.id))
                .collect(),
            removed_releases: before.difference(&after).copied().collect(),
        }
    }

    /// Signatures of a non-root document against the trusted root's role keys.
    fn check_signatures<T: Metadata>(&self, env: &Envelope<T>) -> Result<(), SigFault> {
        let role = T::ROLE;
        let root = self.root();
        let Some(keys) = root.role(role) else {
            return Err(SigFault::NoValid);
        };
        match env.verify_role(role.as_str(), keys, &root.keys) {
            Ok(_) => Ok(()),
            Err(SignatureError::BelowThreshold {
                valid, threshold, ..
            }) if valid > 0 => Err(SigFault::Below { valid, threshold }),
            Err(_) => Err(match self.revoked_signer(env, role) {
                Some(root_version) => SigFault::Revoked { root_version },
                None => SigFault::NoValid,
            }),
        }
    }

    /// The newest older root whose keys for `role`, since removed, signed `env`.
    /// Each distinct revoked key is tried once, so the work is bounded by the
    /// document's signatures, as for an ordinary check.
    fn revoked_signer<T: Metadata>(&self, env: &Envelope<T>, role: RoleName) -> Option<u64> {
        let current = self.root().role_key_ids(role);
        let mut tried = BTreeSet::new();
        for old in self.previous.iter().rev() {
            let r = &old.env.signed;
            for id in r.role_key_ids(role) {
                if current.contains(id) || !tried.insert(id) {
                    continue;
                }
                if r.keys.get(id).is_some_and(|k| env.is_signed_by(k)) {
                    return Some(r.version);
                }
            }
        }
        None
    }

    fn accept_root(&mut self, env: Envelope<Root>, raw: &[u8]) -> Result<(), RootError> {
        if self.rotations >= MAX_ROOT_ROTATIONS {
            return Err(RootError::TooManyRotations {
                limit: MAX_ROOT_ROTATIONS,
            });
        }
        let trusted = self.root();
        check_root_signatures(&env, trusted, RootKeySet::TrustedRoot)?;
        let (have, got) = (trusted.version, env.signed.version);
        if got <= have {
            return Err(RootError::Rollback { trusted: have, got });
        }
        if got - have != 1 {
            return Err(RootError::VersionGap {
                expected: have + 1,
                got,
            });
        }
        check_root_signatures(&env, &env.signed, RootKeySet::NewRoot)?;
        let old = std::mem::replace(&mut self.root, Held::new(env, raw));
        self.forget_rotated_roles(&old.env.signed);
        self.previous.push(old);
        let excess = (self.previous.len() + 1).saturating_sub(MAX_BUNDLE_ROOTS);
        self.previous.drain(..excess);
        self.rotations += 1;
        Ok(())
    }

    /// Fast-forward recovery (§5.3.11): documents whose signing keys were
    /// rotated out may carry versions an attacker chose, so they stop being
    /// the baseline for rollback checks.
    fn forget_rotated_roles(&mut self, old: &Root) {
        let new = &self.root.env.signed;
        let rotated = |role| old.role_key_ids(role) != new.role_key_ids(role);
        let targets = rotated(RoleName::Targets);
        if targets || rotated(RoleName::Timestamp) || rotated(RoleName::Snapshot) {
            self.timestamp = None;
            self.snapshot = None;
        }
        if targets {
            self.targets = None;
        }
    }

    fn timestamp_step(&mut self, raw: &[u8], expiry: Expiry) -> Result<Update, TimestampError> {
        if raw.len() > MAX_TIMESTAMP_BYTES {
            return Err(TimestampError::TooLarge {
                len: raw.len(),
                limit: MAX_TIMESTAMP_BYTES,
            });
        }
        let root = self.root();
        expiry
            .check(root.expires)
            .map_err(|now| TimestampError::RootExpired {
                version: root.version,
                expires: root.expires,
                now,
            })?;
        if let Some(held) = &self.timestamp {
            if held.raw == raw {
                return self.timestamp_unchanged(expiry);
            }
        }
        let env = read_metadata::<TimestampMeta>(raw)?;
        self.check_signatures(&env)?;
        let new = &env.signed;
        if let Some(held) = &self.timestamp {
            let trusted = &held.env.signed;
            if new.version < trusted.version {
                return Err(TimestampError::Rollback {
                    trusted: trusted.version,
                    got: new.version,
                });
            }
            if new.version == trusted.version {
                if env.canonical_signed() != held.env.canonical_signed() {
                    return Err(TimestampError::VersionReused {
                        version: new.version,
                    });
                }
                return self.timestamp_unchanged(expiry);
            }
            if new.meta.snapshot.version < trusted.meta.snapshot.version {
                return Err(TimestampError::SnapshotRollback {
                    trusted: trusted.meta.snapshot.version,
                    got: new.meta.snapshot.version,
                });
            }
        }
        expiry
            .check(new.expires)
            .map_err(|now| TimestampError::Expired {
                version: new.version,
                expires: new.expires,
                now,
            })?;
        let version = new.version;
        self.timestamp = Some(Held::new(env, raw));
        self.rotations = 0;
        Ok(Update::Updated { version })
    }

    fn timestamp_unchanged(&mut self, expiry: Expiry) -> Result<Update, TimestampError> {
        if let Some(held) = &self.timestamp {
            expiry
                .check(held.expires())
                .map_err(|now| TimestampError::Expired {
                    version: held.version(),
                    expires: held.expires(),
                    now,
                })?;
        }
        self.rotations = 0;
        Ok(Update::Unchanged)
    }

    fn snapshot_step(&mut self, raw: &[u8], expiry: Expiry) -> Result<Update, SnapshotError> {
        if raw.len() > MAX_SNAPSHOT_BYTES {
            return Err(SnapshotError::TooLarge {
                len: raw.len(),
                limit: MAX_SNAPSHOT_BYTES,
            });
        }
        let pin = match &self.timestamp {
            Some(ts) => ts.env.signed.meta.snapshot.clone(),
            None => return Err(SnapshotError::NoTimestamp),
        };
        if let Some(held) = &self.snapshot {
            if held.raw == raw {
                return snapshot_unchanged(held, &pin, expiry);
            }
        }
        let env = read_metadata::<Snapshot>(raw)?;
        self.check_signatures(&env)?;
        let new = &env.signed;
        if let Some(held) = &self.snapshot {
            if new.version < held.version() {
                return Err(SnapshotError::Rollback {
                    trusted: held.version(),
                    got: new.version,
                });
            }
            if new.version == held.version() {
                if env.canonical_signed() != held.env.canonical_signed() {
                    return Err(SnapshotError::VersionReused {
                        version: new.version,
                    });
                }
                return snapshot_unchanged(held, &pin, expiry);
            }
        }
        let hash = *blake3::hash(raw).as_bytes();
        check_pin(&pin, new.version, raw, &hash)?;
        // §5.5.5: the targets version may not go down, whether we judge by the
        // snapshot trusted before or by the targets themselves.
        let floor = [
            self.snapshot
                .as_ref()
                .map(|s| s.env.signed.meta.targets.version),
            self.targets.as_ref().map(|t| t.doc.version()),
        ]
        .into_iter()
        .flatten()
        .max();
        if let Some(trusted) = floor.filter(|f| new.meta.targets.version < *f) {
            return Err(SnapshotError::TargetsRollback {
                trusted,
                got: new.meta.targets.version,
            });
        }
        expiry
            .check(new.expires)
            .map_err(|now| SnapshotError::Expired {
                version: new.version,
                expires: new.expires,
                now,
            })?;
        let version = new.version;
        self.snapshot = Some(Held {
            env,
            raw: raw.to_vec(),
            blake3: hash,
        });
        Ok(Update::Updated { version })
    }

    fn targets_step(
        &mut self,
        raw: &[u8],
        expiry: Expiry,
        anchor: Anchor,
    ) -> Result<Update, TargetsError> {
        if raw.len() > MAX_TARGETS_BYTES {
            return Err(TargetsError::TooLarge {
                len: raw.len(),
                limit: MAX_TARGETS_BYTES,
            });
        }
        let pin = match (&self.snapshot, anchor) {
            (Some(s), _) => Some(s.env.signed.meta.targets.clone()),
            (None, Anchor::StoredAlone) => None,
            (None, Anchor::Snapshot) => return Err(TargetsError::NoSnapshot),
        };
        if let Some(held) = &self.targets {
            if held.doc.raw == raw {
                return targets_unchanged(&held.doc, pin.as_ref(), expiry);
            }
        }
        let env = read_metadata::<Targets>(raw)?;
        self.check_signatures(&env)?;
        let new = &env.signed;
        if let Some(held) = &self.targets {
            let trusted = held.doc.version();
            if new.version < trusted {
                return Err(TargetsError::Rollback {
                    trusted,
                    got: new.version,
                });
            }
            if new.version == trusted {
                if env.canonical_signed() != held.doc.env.canonical_signed() {
                    return Err(TargetsError::VersionReused {
                        version: new.version,
                    });
                }
                return targets_unchanged(&held.doc, pin.as_ref(), expiry);
            }
        }
        let hash = *blake3::hash(raw).as_bytes();
        if let Some(pin) = &pin {
            check_pin(pin, new.version, raw, &hash)?;
        }
        expiry
            .check(new.expires)
            .map_err(|now| TargetsError::Expired {
                version: new.version,
                expires: new.expires,
                now,
            })?;
        let releases = new.releases()?;
        let version = new.version;
        self.targets = Some(HeldTargets {
            doc: Held {
                env,
                raw: raw.to_vec(),
                blake3: hash,
            },
            releases,
        });
        Ok(Update::Updated { version })
    }
}

fn snapshot_unchanged(
    held: &Held<Snapshot>,
    pin: &MetaFile,
    expiry: Expiry,
) -> Result<Update, SnapshotError> {
    held.check_pin(pin)?;
    expiry
        .check(held.expires())
        .map_err(|now| SnapshotError::Expired {
            version: held.version(),
            expires: held.expires(),
            now,
        })?;
    Ok(Update::Unchanged)
}

fn targets_unchanged(
    held: &Held<Targets>,
    pin: Option<&MetaFile>,
    expiry: Expiry,
) -> Result<Update, TargetsError> {
    if let Some(pin) = pin {
        held.check_pin(pin)?;
    }
    expiry
        .check(held.expires())
        .map_err(|now| TargetsError::Expired {
            version: held.version(),
            expires: held.expires(),
            now,
        })?;
    Ok(Update::Unchanged)
}

fn bundle_gap(gap: Gap) -> BundleError {
    match gap {
        Gap::Snapshot(version) => BundleError::Snapshot(SnapshotError::NotProvided { version }),
        Gap::Targets(version) => BundleError::Targets(TargetsError::NotProvided { version }),
    }
}

impl From<ReadError> for TimestampError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::TooLarge { len, limit, .. } => TimestampError::TooLarge { len, limit },
            ReadError::Decode(d) => TimestampError::Decode(d),
            ReadError::Invalid { source, .. } => TimestampError::Invalid(source),
        }
    }
}

impl From<ReadError> for SnapshotError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::TooLarge { len, limit, .. } => SnapshotError::TooLarge { len, limit },
            ReadError::Decode(d) => SnapshotError::Decode(d),
            ReadError::Invalid { source, .. } => SnapshotError::Invalid(source),
        }
    }
}

impl From<ReadError> for TargetsError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::TooLarge { len, limit, .. } => TargetsError::TooLarge { len, limit },
            ReadError::Decode(d) => TargetsError::Decode(d),
            ReadError::Invalid { source, .. } => TargetsError::Invalid(source),
        }
    }
}

impl From<SigFault> for TimestampError {
    fn from(f: SigFault) -> Self {
        match f {
            SigFault::NoValid => TimestampError::NoValidSignature,
            SigFault::Below { valid, threshold } => {
                TimestampError::BelowThreshold { valid, threshold }
            }
            SigFault::Revoked { root_version } => {
                TimestampError::SignedByRevokedKeys { root_version }
            }
        }
    }
}

impl From<SigFault> for SnapshotError {
    fn from(f: SigFault) -> Self {
        match f {
            SigFault::NoValid => SnapshotError::NoValidSignature,
            SigFault::Below { valid, threshold } => {
                SnapshotError::BelowThreshold { valid, threshold }
            }
            SigFault::Revoked { root_version } => {
                SnapshotError::SignedByRevokedKeys { root_version }
            }
        }
    }
}

impl From<SigFault> for TargetsError {
    fn from(f: SigFault) -> Self {
        match f {
            SigFault::NoValid => TargetsError::NoValidSignature,
            SigFault::Below { valid, threshold } => {
                TargetsError::BelowThreshold { valid, threshold }
            }
            SigFault::Revoked { root_version } => {
                TargetsError::SignedByRevokedKeys { root_version }
            }
        }
    }
}

impl From<PinFault> for SnapshotError {
    fn from(f: PinFault) -> Self {
        match f {
            PinFault::Version { expected, got } => SnapshotError::VersionMismatch { expected, got },
            PinFault::Length { expected, got } => SnapshotError::LengthMismatch { expected, got },
            PinFault::Hash { expected, got } => SnapshotError::HashMismatch { expected, got },
        }
    }
}

impl From<PinFault> for TargetsError {
    fn from(f: PinFault) -> Self {
        match f {
            PinFault::Version { expected, got } => TargetsError::VersionMismatch { expected, got },
            PinFault::Length { expected, got } => TargetsError::LengthMismatch { expected, got },
            PinFault::Hash { expected, got } => TargetsError::HashMismatch { expected, got },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::build::fixtures::*;
    use crate::metadata::build::{new_root, rotate_root, sign_document, RoleSpec, RootChanges};

    /// A vendor repository with one release signed, and a client that trusts it.
    fn published() -> (Vendor, crate::metadata::build::Repository, MetadataBundle) {
        let v = Vendor::new();
        let mut repo = v.repository();
        repo.add_target("a", target("1.0")).unwrap();
        let bundle = v.sign(&mut repo, NOW).unwrap();
        (v, repo, bundle)
    }

    fn client(v: &Vendor) -> TrustedState {
        TrustedState::new(&v.root_json()).unwrap()
    }

    mod bootstrap {
        use super::*;

        #[test]
        fn self_signed_root_is_trusted() {
            let v = Vendor::new();
            let s = client(&v);
            assert_eq!(s.root_version(), 1);
            assert!(s.operator_role().is_some());
            assert!(s.releases().is_empty());
            assert_eq!(s.bundle().roots.len(), 1);
            assert!(s.bundle().timestamp.is_empty());
        }

        #[test]
        fn root_must_meet_its_own_threshold() {
            let v = Vendor::new();
            let other = sign_document(new_root(&v.spec()).unwrap(), &[&key(77)]).unwrap();
            assert!(matches!(
                TrustedState::new(&other),
                Err(RootError::NoValidSignature {
                    keys: RootKeySet::NewRoot,
                    ..
                })
            ));
            let mut spec = v.spec();
            spec.root = RoleSpec::new(vec![v.root.public(), key(6).public()], 2);
            let once = sign_document(new_root(&spec).unwrap(), &[&v.root]).unwrap();
            assert!(matches!(
                TrustedState::new(&once),
                Err(RootError::BelowThreshold {
                    valid: 1,
                    threshold: 2,
                    ..
                })
            ));
        }
    }

    mod roots {
        use super::*;

        fn next_root(
            s: &TrustedState,
            changes: &RootChanges,
            keys: &[&crate::keys::SigningKey],
        ) -> Vec<u8> {
            sign_document(rotate_root(s.root(), changes).unwrap(), keys).unwrap()
        }

        #[test]
        fn chain_is_trimmed_to_the_bundle_limit_and_reloads() {
            let v = Vendor::new();
            let mut s = client(&v);
            for _ in 0..MAX_BUNDLE_ROOTS + 4 {
                let raw = next_root(&s, &RootChanges::default(), &[&v.root]);
                s.update_root(&raw).unwrap();
            }
            assert_eq!(s.root_version(), MAX_BUNDLE_ROOTS as u64 + 5);
            let stored = s.stored();
            assert_eq!(stored.roots.len(), MAX_BUNDLE_ROOTS);
            let again = TrustedState::from_stored(&stored).unwrap();
            assert_eq!(again.root_version(), s.root_version());
        }

        #[test]
        fn rotations_are_bounded_until_a_timestamp_arrives() {
            let (v, _, bundle) = published();
            let mut s = client(&v);
            s.rotations = MAX_ROOT_ROTATIONS;
            let raw = next_root(&s, &RootChanges::default(), &[&v.root]);
            assert!(matches!(
                s.update_root(&raw),
                Err(RootError::TooManyRotations { .. })
            ));
            // A bundle is one refresh: the count starts again.
            s.apply_bundle(&bundle, NOW).unwrap();
            assert_eq!(s.rotations, 0);
            s.update_root(&raw).unwrap();
        }

        #[test]
        fn only_rotated_roles_are_forgotten() {
            let (v, _, bundle) = published();
            let mut s = client(&v);
            s.apply_bundle(&bundle, NOW).unwrap();
            // Root keys only: everything stays.
            let raw = next_root(
                &s,
                &RootChanges {
                    root: Some(RoleSpec::single(key(10).public())),
                    ..RootChanges::default()
                },
                &[&v.root, &key(10)],
            );
            s.update_root(&raw).unwrap();
            let vs = s.versions();
            assert_eq!(
                (vs.timestamp, vs.snapshot, vs.targets),
                (Some(1), Some(1), Some(1))
            );
            // Snapshot keys: timestamp and snapshot go, targets stay.
            let raw = next_root(
                &s,
                &RootChanges {
                    snapshot: Some(RoleSpec::single(key(11).public())),
                    ..RootChanges::default()
                },
                &[&key(10)],
            );
            s.update_root(&raw).unwrap();
            let vs = s.versions();
            assert_eq!(
                (vs.timestamp, vs.snapshot, vs.targets),
                (None, None, Some(1))
            );
            assert_eq!(s.releases().len(), 1);
            // Targets keys: targets go too.
            let raw = next_root(
                &s,
                &RootChanges {
                    targets: Some(RoleSpec::single(key(12).public())),
                    ..RootChanges::default()
                },
                &[&key(10)],
            );
            s.update_root(&raw).unwrap();
            assert_eq!(s.versions().targets, None);
            assert!(s.releases().is_empty());
        }

        #[test]
        fn versions_must_follow_one_by_one() {
            let v = Vendor::new();
            let mut s = client(&v);
            let two = next_root(&s, &RootChanges::default(), &[&v.root]);
            let mut r3 = rotate_root(s.root(), &RootChanges::default()).unwrap();
            r3.version = 3;
            let three = sign_document(r3, &[&v.root]).unwrap();
            assert!(matches!(
                s.update_root(&three),
                Err(RootError::VersionGap {
                    expected: 2,
                    got: 3
                })
            ));
            s.update_root(&two).unwrap();
            assert!(matches!(
                s.update_root(&two),
                Err(RootError::Rollback { trusted: 2, got: 2 })
            ));
            s.update_root(&three).unwrap();
        }
    }

    mod bundles {
        use super::*;

        #[test]
        fn the_same_bundle_twice_is_unchanged() {
            let (v, _, bundle) = published();
            let mut s = client(&v);
            let first = s.apply_bundle(&bundle, NOW).unwrap();
            assert!(first.changed);
            assert_eq!(first.new_releases.len(), 1);
            assert_eq!(
                s.apply_bundle(&bundle, NOW).unwrap(),
                BundleOutcome::default()
            );
            // and what the node serves is what it received
            assert_eq!(s.bundle(), bundle);
        }

        #[test]
        fn outcome_lists_new_and_removed_releases() {
            let (v, mut repo, bundle) = published();
            let mut s = client(&v);
            s.apply_bundle(&bundle, NOW).unwrap();
            let old = s.releases()[0].id;
            repo.remove_target("a");
            repo.add_target("b", target("2.0")).unwrap();
            let next = v.sign(&mut repo, NOW).unwrap();
            let out = s.apply_bundle(&next, NOW).unwrap();
            assert!(out.changed);
            assert_eq!(out.rotated_root, None);
            assert_eq!(out.new_releases.len(), 1);
            assert_eq!(out.new_releases[0].info.version, "2.0");
            assert_eq!(out.removed_releases, vec![old]);
            assert!(s.release(&old).is_none());
            assert!(s.release(&out.new_releases[0].id).is_some());
        }

        #[test]
        fn a_roots_only_bundle_is_fine_but_a_lone_timestamp_is_not() {
            let (v, _, bundle) = published();
            let mut s = client(&v);
            let roots_only = MetadataBundle {
                roots: bundle.roots.clone(),
                ..MetadataBundle::default()
            };
            assert!(!s.apply_bundle(&roots_only, NOW).unwrap().changed);
            let lone = MetadataBundle {
                timestamp: bundle.timestamp.clone(),
                ..MetadataBundle::default()
            };
            assert!(matches!(
                s.apply_bundle(&lone, NOW),
                Err(BundleError::Snapshot(SnapshotError::NotProvided {
                    version: 1
                }))
            ));
            assert_eq!(s.versions().timestamp, None);
        }

        #[test]
        fn older_roots_in_a_bundle_are_skipped() {
            let (v, mut repo, _) = published();
            repo.rotate_root(&RootChanges::default(), &[&v.root])
                .unwrap();
            let bundle = v.sign(&mut repo, NOW).unwrap();
            assert_eq!(bundle.roots.len(), 2);
            let mut s = client(&v);
            let out = s.apply_bundle(&bundle, NOW).unwrap();
            assert_eq!(out.rotated_root, Some(2));
            // A node shipped with root 2 has never seen root 1 and skips it by version.
            let mut fresh = TrustedState::new(&bundle.roots[1]).unwrap();
            let out = fresh.apply_bundle(&bundle, NOW).unwrap();
            assert_eq!(out.rotated_root, None);
            assert_eq!(fresh.stored().roots.len(), 1);
            assert_eq!(fresh.releases().len(), 1);
        }
    }

    mod stored {
        use super::*;

        #[test]
        fn round_trip_keeps_everything() {
            let (v, _, bundle) = published();
            let mut s = client(&v);
            s.apply_bundle(&bundle, NOW).unwrap();
            let again = TrustedState::from_stored(&s.stored()).unwrap();
            assert_eq!(again.versions(), s.versions());
            assert_eq!(again.releases(), s.releases());
            assert_eq!(again.bundle(), s.bundle());
        }

        #[test]
        fn targets_kept_across_a_timestamp_rotation_reload_alone() {
            let (v, mut repo, bundle) = published();
            let mut s = client(&v);
            s.apply_bundle(&bundle, NOW).unwrap();
            let changes = RootChanges {
                timestamp: Some(RoleSpec::single(key(9).public())),
                ..RootChanges::default()
            };
            let raw = repo.rotate_root(&changes, &[&v.root]).unwrap();
            s.update_root(&raw).unwrap();
            let stored = s.stored();
            assert!(stored.timestamp.is_none() && stored.targets.is_some());
            let again = TrustedState::from_stored(&stored).unwrap();
            assert_eq!(again.releases().len(), 1);
        }

        #[test]
        fn incomplete_or_empty_storage_is_refused() {
            let (v, _, bundle) = published();
            assert!(matches!(
                TrustedState::from_stored(&StoredTrust::default()),
                Err(StoredTrustError::NoRoots)
            ));
            let no_timestamp = StoredTrust {
                roots: vec![v.root_json()],
                snapshot: Some(bundle.snapshot.to_vec()),
                ..StoredTrust::default()
            };
            assert!(matches!(
                TrustedState::from_stored(&no_timestamp),
                Err(StoredTrustError::Snapshot(SnapshotError::NoTimestamp))
            ));
            let no_targets = StoredTrust {
                roots: vec![v.root_json()],
                timestamp: Some(bundle.timestamp.to_vec()),
                snapshot: Some(bundle.snapshot.to_vec()),
                targets: None,
            };
            assert!(matches!(
                TrustedState::from_stored(&no_targets),
                Err(StoredTrustError::Targets(TargetsError::NotProvided {
                    version: 1
                }))
            ));
        }
    }

    mod expiry {
        use super::*;

        #[test]
        fn expired_names_the_first_expired_role() {
            let (v, _, bundle) = published();
            let mut s = client(&v);
            assert_eq!(s.expired(NOW), None);
            s.apply_bundle(&bundle, NOW).unwrap();
            assert_eq!(s.expired(NOW), None);
            assert_eq!(
                s.expired(NOW.plus_secs(DAY_SECS)),
                Some(RoleName::Timestamp)
            );
            assert_eq!(
                s.expired(NOW.plus_secs(8 * DAY_SECS)),
                Some(RoleName::Timestamp)
            );
            assert_eq!(
                s.expired(NOW.plus_secs(400 * DAY_SECS)),
                Some(RoleName::Root)
            );
        }

        #[test]
        fn reloading_ignores_expiry() {
            let (v, _, bundle) = published();
            let mut s = client(&v);
            s.apply_bundle(&bundle, NOW).unwrap();
            // Stored data a year old still loads; expired() says it must not be used.
            let again = TrustedState::from_stored(&s.stored()).unwrap();
            assert_eq!(
                again.expired(NOW.plus_secs(30 * DAY_SECS)),
                Some(RoleName::Timestamp)
            );
        }

        #[test]
        fn an_expired_bundle_is_refused_even_when_already_trusted() {
            let (v, _, bundle) = published();
            let mut s = client(&v);
            s.apply_bundle(&bundle, NOW).unwrap();
            let later = NOW.plus_secs(DAY_SECS);
            assert!(matches!(
                s.apply_bundle(&bundle, later),
                Err(BundleError::Timestamp(TimestampError::Expired {
                    version: 1,
                    ..
                }))
            ));
        }
    }
}
