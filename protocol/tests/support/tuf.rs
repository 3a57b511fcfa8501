//! Test repositories for the TUF tests: a [`Vendor`] that publishes through the
//! real [`Repository`], and a [`Forge`] that signs documents the repository
//! would refuse to produce (old versions, wrong keys, short expiries), as an
//! attacker holding some keys would.
#![allow(dead_code)]

use serde_bytes::ByteBuf;
use std::collections::BTreeMap;
use waveguard_protocol::chunk::encoded_list_len;
use waveguard_protocol::metadata::{
    release_target, sign_document, Expiries, MetaFile, Repository, RoleName, RoleSigners, RoleSpec,
    Root, RootChanges, Snapshot, SnapshotFiles, Targets, TimestampFiles, TimestampMeta,
    TrustedState, SPEC_VERSION,
};
use waveguard_protocol::release::{
    ChunkListRef, ChunkerParams, HealthPolicy, ReleaseInfo, RolloutPolicy, TargetFile, WaveSpec,
    PPM,
};
use waveguard_protocol::wire::MetadataBundle;
use waveguard_protocol::{SigningKey, Timestamp};

/// The tests' "now".
pub const NOW: Timestamp = Timestamp::from_secs(1_900_000_000);
/// One day in seconds.
pub const DAY: u64 = 24 * 3600;

/// A key from a one-byte seed.
pub fn key(seed: u8) -> SigningKey {
    SigningKey::from_seed([seed; 32])
}

/// The target path of release `version`.
pub fn path(version: &str) -> String {
    format!("acme-{version}.bin")
}

/// A valid release target for `version` of product `acme`. Versions of equal
/// length give targets of equal JSON length.
pub fn target(version: &str) -> TargetFile {
    let info = ReleaseInfo {
        product: "acme".into(),
        version: version.into(),
        chunk_list: ChunkListRef {
            length: encoded_list_len(3),
            blake3: "11".repeat(32),
            chunks: 3,
        },
        chunker: ChunkerParams::default(),
        rollout: RolloutPolicy {
            start: NOW,
            waves: vec![
                WaveSpec {
                    name: "canary".into(),
                    cumulative_ppm: 10_000,
                    bake_seconds: 3600,
                },
                WaveSpec {
                    name: "all".into(),
                    cumulative_ppm: PPM,
                    bake_seconds: 0,
                },
            ],
            health: HealthPolicy {
                max_failure_ppm: 20_000,
                min_reports: 5,
                silence_seconds: 900,
                heartbeat_seconds: 300,
                report_ppm: 1_000_000,
            },
        },
    };
    let hash = *blake3::hash(version.as_bytes()).as_bytes();
    release_target(&path(version), 5_000_000, &hash, &info).expect("test target is valid")
}

/// Keys of one role.
#[derive(Clone)]
pub struct RoleKeyring {
    /// Every key of the role.
    pub keys: Vec<SigningKey>,
    /// How many must sign.
    pub threshold: u32,
}

impl RoleKeyring {
    fn new(first_seed: u8, count: u8, threshold: u32) -> Self {
        RoleKeyring {
            keys: (0..count).map(|i| key(first_seed + i)).collect(),
            threshold,
        }
    }

    /// The role as a root spec.
    pub fn spec(&self) -> RoleSpec {
        RoleSpec::new(
            self.keys.iter().map(SigningKey::public).collect(),
            self.threshold,
        )
    }

    /// References to all keys, for signing.
    pub fn refs(&self) -> Vec<&SigningKey> {
        self.keys.iter().collect()
    }
}

/// Builds a [`Vendor`]; every role defaults to one key, threshold 1.
pub struct VendorBuilder {
    roles: [(u8, u32); 4],
}

impl VendorBuilder {
    /// `count` root keys, `threshold` of which must sign.
    pub fn root(mut self, count: u8, threshold: u32) -> Self {
        self.roles[0] = (count, threshold);
        self
    }

    /// `count` targets keys, `threshold` of which must sign.
    pub fn targets(mut self, count: u8, threshold: u32) -> Self {
        self.roles[1] = (count, threshold);
        self
    }

    /// The vendor, its first root signed by every root key.
    pub fn build(self) -> Vendor {
        // Seeds 10.., 20.., 30.., 40..: distinct per role.
        let ring =
            |i: usize| RoleKeyring::new(10 * (i as u8 + 1), self.roles[i].0, self.roles[i].1);
        let (root, targets, snapshot, timestamp) = (ring(0), ring(1), ring(2), ring(3));
        let spec = waveguard_protocol::metadata::RootSpec {
            root: root.spec(),
            targets: targets.spec(),
            snapshot: snapshot.spec(),
            timestamp: timestamp.spec(),
            operator: Some(RoleSpec::single(key(90).public())),
            expires: NOW.plus_secs(365 * DAY),
        };
        let root_doc = waveguard_protocol::metadata::new_root(&spec).expect("valid spec");
        let first_root = sign_document(root_doc, &root.refs()).expect("signs");
        let repo = Repository::new(&first_root).expect("valid root");
        Vendor {
            root,
            targets,
            snapshot,
            timestamp,
            repo,
            first_root,
        }
    }
}

/// A vendor: its keys and its repository.
pub struct Vendor {
    /// Root keys.
    pub root: RoleKeyring,
    /// Targets keys.
    pub targets: RoleKeyring,
    /// Snapshot keys.
    pub snapshot: RoleKeyring,
    /// Timestamp keys.
    pub timestamp: RoleKeyring,
    /// The repository.
    pub repo: Repository,
    first_root: Vec<u8>,
}

impl Vendor {
    /// A builder.
    pub fn builder() -> VendorBuilder {
        VendorBuilder { roles: [(1, 1); 4] }
    }

    /// One key per role, threshold 1.
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// The first root, as shipped with agents.
    pub fn first_root(&self) -> &[u8] {
        &self.first_root
    }

    /// A client that trusts the first root.
    pub fn client(&self) -> TrustedState {
        TrustedState::new(&self.first_root).expect("first root is valid")
    }

    /// Publishes exactly `releases` at [`NOW`] through the repository.
    pub fn publish(&mut self, releases: &[&str]) -> MetadataBundle {
        let paths: Vec<String> = self.repo.targets().keys().cloned().collect();
        for p in paths {
            self.repo.remove_target(&p);
        }
        for v in releases {
            self.repo
                .add_target(&path(v), target(v))
                .expect("valid target");
        }
        let (t, s, ts) = (
            self.targets.refs(),
            self.snapshot.refs(),
            self.timestamp.refs(),
        );
        let signers = RoleSigners {
            targets: &t,
            snapshot: &s,
            timestamp: &ts,
        };
        self.repo
            .sign(NOW, &Expiries::default(), &signers)
            .expect("the vendor can sign")
    }

    /// Rotates `role` to fresh keys from `seed` (one key, threshold 1) through
    /// the repository, signed by the old and new root keys; returns the new root.
    pub fn rotate(&mut self, role: RoleName, seed: u8) -> Vec<u8> {
        let ring = RoleKeyring::new(seed, 1, 1);
        let mut changes = RootChanges::default();
        let mut signers: Vec<SigningKey> = self.root.keys.clone();
        match role {
            RoleName::Root => {
                changes.root = Some(ring.spec());
                signers.extend(ring.keys.iter().cloned());
                self.root = ring;
            }
            RoleName::Targets => {
                changes.targets = Some(ring.spec());
                self.targets = ring;
            }
            RoleName::Snapshot => {
                changes.snapshot = Some(ring.spec());
                self.snapshot = ring;
            }
            RoleName::Timestamp => {
                changes.timestamp = Some(ring.spec());
                self.timestamp = ring;
            }
            other => panic!("tests do not rotate {other}"),
        }
        let refs: Vec<&SigningKey> = signers.iter().collect();
        self.repo
            .rotate_root(&changes, &refs)
            .expect("rotation is valid")
    }

    /// The current root.
    pub fn root_doc(&self) -> Root {
        self.repo.root().clone()
    }

    /// A forge that starts from the vendor's current state: the next versions,
    /// the current releases, the vendor's keys, 30-day expiries.
    pub fn forge(&self) -> Forge {
        let v = self.repo.trust().versions();
        let next = |x: Option<u64>| x.unwrap_or(0) + 1;
        Forge {
            roots: self.repo.bundle().roots,
            timestamp: next(v.timestamp),
            snapshot: next(v.snapshot),
            targets: next(v.targets),
            releases: self
                .repo
                .targets()
                .values()
                .filter_map(|t| {
                    t.custom.as_ref()?["waveguard"]["version"]
                        .as_str()
                        .map(String::from)
                })
                .collect(),
            expires: [NOW.plus_secs(30 * DAY); 3],
            keys: [
                self.timestamp.keys.clone(),
                self.snapshot.keys.clone(),
                self.targets.keys.clone(),
            ],
        }
    }
}

/// Signs arbitrary timestamp/snapshot/targets combinations.
#[derive(Clone)]
pub struct Forge {
    roots: Vec<ByteBuf>,
    timestamp: u64,
    snapshot: u64,
    targets: u64,
    releases: Vec<String>,
    /// Expiries of timestamp, snapshot, targets.
    expires: [Timestamp; 3],
    /// Signing keys of timestamp, snapshot, targets.
    keys: [Vec<SigningKey>; 3],
}

impl Forge {
    /// Sets the versions of timestamp, snapshot and targets.
    pub fn versions(mut self, timestamp: u64, snapshot: u64, targets: u64) -> Self {
        (self.timestamp, self.snapshot, self.targets) = (timestamp, snapshot, targets);
        self
    }

    /// Sets the releases the targets list.
    pub fn releases(mut self, releases: &[&str]) -> Self {
        self.releases = releases.iter().map(|s| s.to_string()).collect();
        self
    }

    /// Sets the expiries of timestamp, snapshot and targets.
    pub fn expiring(
        mut self,
        timestamp: Timestamp,
        snapshot: Timestamp,
        targets: Timestamp,
    ) -> Self {
        self.expires = [timestamp, snapshot, targets];
        self
    }

    /// Signs the timestamp with `keys` instead.
    pub fn timestamp_keys(mut self, keys: &[SigningKey]) -> Self {
        self.keys[0] = keys.to_vec();
        self
    }

    /// Signs the snapshot with `keys` instead.
    pub fn snapshot_keys(mut self, keys: &[SigningKey]) -> Self {
        self.keys[1] = keys.to_vec();
        self
    }

    /// Signs the targets with `keys` instead.
    pub fn targets_keys(mut self, keys: &[SigningKey]) -> Self {
        self.keys[2] = keys.to_vec();
        self
    }

    /// Signs the targets document.
    pub fn targets_doc(&self) -> Vec<u8> {
        let targets: BTreeMap<String, TargetFile> =
            self.releases.iter().map(|v| (path(v), target(v))).collect();
        let doc = Targets {
            type_: RoleName::Targets,
            spec_version: SPEC_VERSION.into(),
            version: self.targets,
            expires: self.expires[2],
            targets,
        };
        sign_document(doc, &self.keys[2].iter().collect::<Vec<_>>()).expect("signs")
    }

    /// Signs a snapshot pinning `targets`.
    pub fn snapshot_doc(&self, targets: &[u8]) -> Vec<u8> {
        let doc = Snapshot {
            type_: RoleName::Snapshot,
            spec_version: SPEC_VERSION.into(),
            version: self.snapshot,
            expires: self.expires[1],
            meta: SnapshotFiles {
                targets: MetaFile::for_document(self.targets, targets),
            },
        };
        sign_document(doc, &self.keys[1].iter().collect::<Vec<_>>()).expect("signs")
    }

    /// Signs a timestamp pinning `snapshot`.
    pub fn timestamp_doc(&self, snapshot: &[u8]) -> Vec<u8> {
        let doc = TimestampMeta {
            type_: RoleName::Timestamp,
            spec_version: SPEC_VERSION.into(),
            version: self.timestamp,
            expires: self.expires[0],
            meta: TimestampFiles {
                snapshot: MetaFile::for_document(self.snapshot, snapshot),
            },
        };
        sign_document(doc, &self.keys[0].iter().collect::<Vec<_>>()).expect("signs")
    }

    /// The whole bundle: the vendor's roots and three consistent documents.
    pub fn bundle(&self) -> MetadataBundle {
        let targets = self.targets_doc();
        let snapshot = self.snapshot_doc(&targets);
        let timestamp = self.timestamp_doc(&snapshot);
        MetadataBundle {
            roots: self.roots.clone(),
            timestamp: ByteBuf::from(timestamp),
            snapshot: ByteBuf::from(snapshot),
            targets: ByteBuf::from(targets),
        }
    }
}

/// `bytes` grown past `limit` with trailing white space (still valid JSON).
pub fn padded(bytes: &[u8], limit: usize) -> Vec<u8> {
    let mut out = bytes.to_vec();
    out.resize(limit + 1, b' ');
    out
}
