//! A one-wave release and the pieces to drive one [`Node`] by hand around it:
//! the bundle that trusts it, signed health reports from seeded nodes, and
//! draining outputs. One key (seed 9) holds every vendor role, so it also
//! signs directives; the fleet has no operator, so reports need no certificate.
#![allow(dead_code)]

use waveguard_protocol::health::report::{sign_report, HealthReport, HealthStatus};
use waveguard_protocol::metadata::build::{
    new_root, release_target, sign_document, Expiries, Repository, RoleSigners, RoleSpec, RootSpec,
};
use waveguard_protocol::node::{Node, Output};
use waveguard_protocol::release::{
    ChunkListRef, ChunkerParams, HealthPolicy, ReleaseInfo, RolloutPolicy, WaveSpec,
};
use waveguard_protocol::wire::{Gossip, MetadataBundle, SignedHealth};
use waveguard_protocol::{ReleaseId, SigningKey, Timestamp};

/// The tests' starting time.
pub const T0: Timestamp = Timestamp::from_secs(1_900_000_000);
/// The release's `silence_seconds`.
pub const SILENCE_SECS: u64 = 60;

/// The vendor's only key: every role, directives too.
pub fn vendor_key() -> SigningKey {
    SigningKey::from_seed([9; 32])
}

/// When the release's only wave opens: an hour after [`T0`].
pub fn start() -> Timestamp {
    T0.plus_secs(3600)
}

/// A one-wave release starting at [`start`] (10 % failures fail the gate, one
/// report suffices), the first root, and the bundle that trusts the release.
pub fn release() -> (Vec<u8>, MetadataBundle, ReleaseId) {
    let mut vendor = Vendor::new();
    let bundle = vendor.publish(&["1.0"]);
    (vendor.root.clone(), bundle, vendor.id("1.0"))
}

/// A vendor whose every role is [`vendor_key`], publishing one-wave releases of
/// product `acme` (target path `acme/<version>`).
pub struct Vendor {
    /// The first root, as shipped with agents.
    pub root: Vec<u8>,
    repo: Repository,
    ids: std::collections::BTreeMap<String, ReleaseId>,
}

impl Vendor {
    /// A vendor with nothing published.
    pub fn new() -> Self {
        let key = vendor_key();
        let spec = RootSpec {
            root: RoleSpec::single(key.public()),
            targets: RoleSpec::single(key.public()),
            snapshot: RoleSpec::single(key.public()),
            timestamp: RoleSpec::single(key.public()),
            operator: None,
            expires: T0.plus_secs(365 * 86_400),
        };
        let root = sign_document(new_root(&spec).unwrap(), &[&key]).unwrap();
        let repo = Repository::new(&root).unwrap();
        Vendor {
            root,
            repo,
            ids: Default::default(),
        }
    }

    /// Signs metadata listing exactly `versions` (pruning any others).
    pub fn publish(&mut self, versions: &[&str]) -> MetadataBundle {
        let paths: Vec<String> = self.repo.targets().keys().cloned().collect();
        for p in paths {
            self.repo.remove_target(&p);
        }
        for v in versions {
            let release = self
                .repo
                .add_target(&format!("acme/{v}"), target(v))
                .unwrap();
            self.ids.insert(v.to_string(), release.id);
        }
        let key = vendor_key();
        let k = [&key];
        let signers = RoleSigners {
            targets: &k,
            snapshot: &k,
            timestamp: &k,
        };
        self.repo.sign(T0, &Expiries::default(), &signers).unwrap()
    }

    /// The ID of a published version.
    pub fn id(&self, version: &str) -> ReleaseId {
        self.ids[version]
    }
}

fn target(version: &str) -> waveguard_protocol::release::TargetFile {
    let info = ReleaseInfo {
        product: "acme".into(),
        version: version.into(),
        chunk_list: ChunkListRef {
            length: waveguard_protocol::chunk::encoded_list_len(1),
            blake3: hex::encode([7u8; 32]),
            chunks: 1,
        },
        chunker: ChunkerParams::default(),
        rollout: RolloutPolicy {
            start: start(),
            waves: vec![WaveSpec {
                name: "all".into(),
                cumulative_ppm: 1_000_000,
                bake_seconds: 60,
            }],
            health: HealthPolicy {
                max_failure_ppm: 100_000,
                min_reports: 1,
                silence_seconds: SILENCE_SECS,
                heartbeat_seconds: 10,
                report_ppm: 1_000_000,
            },
        },
    };
    let artifact = blake3::hash(version.as_bytes());
    release_target(&format!("acme/{version}"), 1000, artifact.as_bytes(), &info).unwrap()
}

/// A wave-0 report by the node of key seed `seed`, as a `Gossip::Health` frame.
pub fn report(
    seed: u8,
    release: ReleaseId,
    status: HealthStatus,
    seq: u64,
    at: Timestamp,
) -> Vec<u8> {
    let key = SigningKey::from_seed([seed; 32]);
    let r = HealthReport::new(key.node_id(), release, 0, status, seq, at);
    Gossip::Health(sign_report(&key, r, None)).encode()
}

/// The report inside a `Gossip::Health` frame.
pub fn signed(data: &[u8]) -> SignedHealth {
    match Gossip::decode(data).unwrap() {
        Gossip::Health(sh) => sh,
        other => panic!("{other:?}"),
    }
}

/// Every output up to the next timeout.
pub fn drain(n: &mut Node) -> Vec<Output> {
    let mut out = Vec::new();
    loop {
        match n.poll_output() {
            Output::Timeout(_) => return out,
            o => out.push(o),
        }
    }
}
