//! Fixed trust material and sample content shared by the fuzz targets, the
//! seed generator and the tests: a vendor with keys from fixed seeds, its
//! roots and signed bundles, two releases with real chunked content, a node
//! key, peer keys and fleet certificates.
//!
//! Everything derives from constants, so a crash found with one build
//! reproduces with any other, and seeds written by `examples/make_seeds.rs`
//! stay valid for the targets. Each fixture is built once per process.

use std::sync::OnceLock;
use waveguard_protocol::chunk::ChunkList;
use waveguard_protocol::chunker::chunk_bytes;
use waveguard_protocol::health::cert::issue_cert;
use waveguard_protocol::health::FleetKeys;
use waveguard_protocol::metadata::build::{
    new_root, release_target, sign_document, Expiries, Repository, RoleSigners, RoleSpec,
    RootChanges, RootSpec,
};
use waveguard_protocol::metadata::root::RoleName;
use waveguard_protocol::metadata::trust::TrustedState;
use waveguard_protocol::release::{
    ChunkListRef, ChunkerParams, HealthPolicy, Release, ReleaseInfo, RolloutPolicy, WaveSpec,
};
use waveguard_protocol::wave::WavePin;
use waveguard_protocol::wire::MetadataBundle;
use waveguard_protocol::{NodeId, SigningKey, Timestamp};

/// When the vendor signs its first bundle, and when every target's clock starts.
pub const NOW: Timestamp = Timestamp::from_secs(1_900_000_000);
/// Seconds from [`NOW`] to the rollout start of both releases.
pub const START_AFTER_SECS: u64 = 60;
/// Bake time of each of the two waves, in seconds.
pub const BAKE_SECS: u64 = 600;
/// Number of fixed peers (besides the node itself) in `node_inputs`.
pub const PEERS: usize = 4;
const DAY_SECS: u64 = 24 * 3600;

/// When both sample releases start rolling out.
pub fn start() -> Timestamp {
    NOW.plus_secs(START_AFTER_SECS)
}

/// A key from a one-byte seed tag; every fixture key has its own tag.
fn key(tag: u8) -> SigningKey {
    SigningKey::from_seed([tag; 32])
}

/// The fuzzed node's key.
pub fn node_key() -> SigningKey {
    key(0x60)
}

/// Peer `i`'s key (taken modulo [`PEERS`]).
pub fn peer_key(i: usize) -> SigningKey {
    // PEERS is 4, so the tag stays within 0x61..=0x64.
    key(0x61 + (i % PEERS) as u8)
}

/// The vendor's and operator's keys.
pub struct VendorKeys {
    /// Root role.
    pub root: SigningKey,
    /// Targets role (the vendor's release key; also signs directives).
    pub targets: SigningKey,
    /// Snapshot role.
    pub snapshot: SigningKey,
    /// Timestamp role, before the rotation in [`TrustDocs`].
    pub timestamp: SigningKey,
    /// Timestamp role after that rotation.
    pub timestamp2: SigningKey,
    /// Operator role (fleet certificates, directives).
    pub operator: SigningKey,
}

/// The one vendor every fixture uses.
pub fn vendor_keys() -> VendorKeys {
    VendorKeys {
        root: key(0x51),
        targets: key(0x52),
        snapshot: key(0x53),
        timestamp: key(0x54),
        timestamp2: key(0x56),
        operator: key(0x55),
    }
}

impl VendorKeys {
    /// A root (version 1, expiring a year after [`NOW`]) signed by the root key;
    /// with `operator`, it names an operator role.
    pub fn root_json(&self, operator: bool) -> Vec<u8> {
        let spec = RootSpec {
            root: RoleSpec::single(self.root.public()),
            targets: RoleSpec::single(self.targets.public()),
            snapshot: RoleSpec::single(self.snapshot.public()),
            timestamp: RoleSpec::single(self.timestamp.public()),
            operator: operator.then(|| RoleSpec::single(self.operator.public())),
            expires: NOW.plus_secs(365 * DAY_SECS),
        };
        let root = new_root(&spec).expect("the fixture root spec is valid");
        sign_document(root, &[&self.root]).expect("the fixture root signs")
    }

    /// Signs the repository's targets at `now` with the default expiries, the
    /// timestamp signed by `timestamp`.
    pub fn sign(
        &self,
        repo: &mut Repository,
        now: Timestamp,
        timestamp: &SigningKey,
    ) -> MetadataBundle {
        let (t, s, ts) = ([&self.targets], [&self.snapshot], [timestamp]);
        repo.sign(
            now,
            &Expiries::default(),
            &RoleSigners {
                targets: &t,
                snapshot: &s,
                timestamp: &ts,
            },
        )
        .expect("the fixture repository signs")
    }
}

/// The rollout policy of both releases: a 20% canary and the rest, each baking
/// [`BAKE_SECS`]; a wave fails at 25% failures out of at least two reports.
pub fn policy() -> RolloutPolicy {
    let wave = |name: &str, cumulative_ppm| WaveSpec {
        name: name.into(),
        cumulative_ppm,
        bake_seconds: BAKE_SECS,
    };
    RolloutPolicy {
        start: start(),
        waves: vec![wave("canary", 200_000), wave("rest", 1_000_000)],
        health: HealthPolicy {
            max_failure_ppm: 250_000,
            min_reports: 2,
            silence_seconds: 600,
            heartbeat_seconds: 60,
            report_ppm: 1_000_000,
        },
    }
}

/// Chunker parameters that cut the small sample artifacts into a few chunks.
pub fn small_chunks() -> ChunkerParams {
    ChunkerParams {
        min_size: 16 * 1024,
        avg_size: 32 * 1024,
        max_size: 64 * 1024,
        ..ChunkerParams::default()
    }
}

/// A release's bytes, cut into chunks.
#[derive(Clone, Debug)]
pub struct Content {
    /// The chunk list.
    pub list: ChunkList,
    /// Its encoding (what the signed release pins).
    pub list_bytes: Vec<u8>,
    /// The chunks' bytes, in list order.
    pub chunks: Vec<Vec<u8>>,
    /// The whole artifact's blake3.
    pub blake3: [u8; 32],
    /// The artifact's length.
    pub length: u64,
}

/// `len` pseudo-random bytes (a multiplicative hash of the position and `salt`), chunked.
fn content(salt: u32, len: u32) -> Content {
    let data: Vec<u8> = (0..len)
        .map(|i| ((i ^ salt).wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let list = chunk_bytes(&data, &small_chunks()).expect("the fixture chunker params are valid");
    let mut offset = 0usize;
    let chunks = list
        .chunks
        .iter()
        .map(|c| {
            let end = offset + c.length as usize;
            let bytes = data[offset..end].to_vec();
            offset = end;
            bytes
        })
        .collect();
    Content {
        list_bytes: list.encode(),
        list,
        chunks,
        blake3: *blake3::hash(&data).as_bytes(),
        length: u64::from(len),
    }
}

/// Adds `product` `version` with `content` to `repo`.
fn add_release(repo: &mut Repository, version: &str, content: &Content) -> Release {
    let info = ReleaseInfo {
        product: "acme-sensor".into(),
        version: version.into(),
        chunk_list: ChunkListRef {
            length: content.list_bytes.len() as u64,
            blake3: blake3::hash(&content.list_bytes).to_hex().to_string(),
            chunks: u32::try_from(content.list.chunks.len()).expect("a few chunks"),
        },
        chunker: small_chunks(),
        rollout: policy(),
    };
    let path = format!("acme-sensor-{version}.bin");
    let target = release_target(&path, content.length, &content.blake3, &info)
        .expect("the fixture release is valid");
    repo.add_target(&path, target)
        .expect("the fixture target is accepted")
}

/// Who may sign what under a trusted root (as the node derives it).
pub fn fleet_keys(trust: &TrustedState) -> FleetKeys {
    FleetKeys {
        keys: trust.root().keys.clone(),
        vendor: trust
            .role_keys(RoleName::Targets)
            .map(|(role, _)| role)
            .unwrap_or_default(),
        operator: trust.operator_role().map(|(role, _)| role),
    }
}

/// A fleet: one vendor's root (with or without an operator), two releases and
/// the certificates the node and its peers carry.
pub struct World {
    /// Whether the root names an operator (reports then need certificates).
    pub operator: bool,
    /// The signed root, version 1.
    pub root: Vec<u8>,
    /// Release A alone, signed at [`NOW`].
    pub bundle_a: MetadataBundle,
    /// Releases A and B, signed one minute after [`NOW`].
    pub bundle_ab: MetadataBundle,
    /// The release every node follows.
    pub release_a: Release,
    /// A second release, learned from [`World::bundle_ab`].
    pub release_b: Release,
    /// Release A's bytes.
    pub content_a: Content,
    /// The root alone.
    pub trust_root: TrustedState,
    /// The root and [`World::bundle_a`].
    pub trust_a: TrustedState,
    /// Who may sign what.
    pub fleet: FleetKeys,
    /// The node's certificate for each pin (none, canary, last); `None` in an open fleet.
    pub node_certs: [Option<Vec<u8>>; 3],
    /// Each peer's certificate (canary pin); `None` in an open fleet.
    pub peer_certs: Vec<Option<Vec<u8>>>,
}

/// The pins in the order [`World::node_certs`] lists them.
pub const PINS: [WavePin; 3] = [WavePin::None, WavePin::Canary, WavePin::Last];

fn build_world(operator: bool) -> World {
    let v = vendor_keys();
    let root = v.root_json(operator);
    let mut repo = Repository::new(&root).expect("the fixture root is valid");
    let content_a = content(0xa, 80 * 1024);
    let release_a = add_release(&mut repo, "1.0.0", &content_a);
    let bundle_a = v.sign(&mut repo, NOW, &v.timestamp);
    let release_b = add_release(&mut repo, "1.1.0", &content(0xb, 40 * 1024));
    let bundle_ab = v.sign(&mut repo, NOW.plus_secs(60), &v.timestamp);
    let trust_root = TrustedState::new(&root).expect("the fixture root is valid");
    let mut trust_a = trust_root.clone();
    trust_a
        .apply_bundle(&bundle_a, NOW)
        .expect("the fixture bundle is valid");
    let expires = NOW.plus_secs(365 * DAY_SECS);
    let cert = |node: NodeId, pin| operator.then(|| issue_cert(&[&v.operator], node, expires, pin));
    World {
        operator,
        fleet: fleet_keys(&trust_root),
        node_certs: PINS.map(|pin| cert(node_key().node_id(), pin)),
        peer_certs: (0..PEERS)
            .map(|i| cert(peer_key(i).node_id(), WavePin::Canary))
            .collect(),
        root,
        bundle_a,
        bundle_ab,
        release_a,
        release_b,
        content_a,
        trust_root,
        trust_a,
    }
}

/// The open fleet (`false`) or the fleet with an operator (`true`).
pub fn world(operator: bool) -> &'static World {
    static OPEN: OnceLock<World> = OnceLock::new();
    static OPERATED: OnceLock<World> = OnceLock::new();
    if operator {
        OPERATED.get_or_init(|| build_world(true))
    } else {
        OPEN.get_or_init(|| build_world(false))
    }
}

/// A vendor's metadata history for `trust_bundle`: three roots, four signed
/// bundles and the trusted states between them. The fleet has an operator.
pub struct TrustDocs {
    /// Root v1 (the anchor), v2 (expiry extended), v3 (timestamp key rotated).
    pub roots: [Vec<u8>; 3],
    /// Release A at [`NOW`]; A and B an hour later; a fresh timestamp two hours
    /// later (timestamp only); after the rotation, three hours later.
    pub bundles: [MetadataBundle; 4],
    /// When each bundle was signed.
    pub signed_at: [Timestamp; 4],
    /// The root alone, then the state after each of bundles 0, 1 + 2 and 3.
    pub states: [TrustedState; 4],
}

impl TrustDocs {
    /// Every distinct document, roots first: the table canned payloads index.
    pub fn table(&self) -> Vec<Vec<u8>> {
        let mut out: Vec<Vec<u8>> = self.roots.to_vec();
        for b in &self.bundles {
            for doc in [&b.timestamp, &b.snapshot, &b.targets] {
                if !doc.is_empty() && !out.iter().any(|d| d[..] == doc[..]) {
                    out.push(doc.to_vec());
                }
            }
        }
        out
    }
}

fn build_trust_docs() -> TrustDocs {
    let v = vendor_keys();
    let root1 = v.root_json(true);
    let mut repo = Repository::new(&root1).expect("the fixture root is valid");
    let signed_at = [0, 1, 2, 3].map(|h| NOW.plus_secs(h * 3600));
    add_release(&mut repo, "1.0.0", &content(0xa, 80 * 1024));
    let b0 = v.sign(&mut repo, signed_at[0], &v.timestamp);
    add_release(&mut repo, "1.1.0", &content(0xb, 40 * 1024));
    let b1 = v.sign(&mut repo, signed_at[1], &v.timestamp);
    let b2 = repo
        .sign_timestamp(signed_at[2], DAY_SECS, &[&v.timestamp])
        .expect("the fixture timestamp signs");
    let root2 = repo
        .rotate_root(
            &RootChanges {
                expires: Some(NOW.plus_secs(730 * DAY_SECS)),
                ..RootChanges::default()
            },
            &[&v.root],
        )
        .expect("the fixture rotation signs");
    let root3 = repo
        .rotate_root(
            &RootChanges {
                timestamp: Some(RoleSpec::single(v.timestamp2.public())),
                ..RootChanges::default()
            },
            &[&v.root],
        )
        .expect("the fixture rotation signs");
    let b3 = v.sign(&mut repo, signed_at[3], &v.timestamp2);
    let s0 = TrustedState::new(&root1).expect("the fixture root is valid");
    let mut s1 = s0.clone();
    let apply = |s: &mut TrustedState, b: &MetadataBundle, at| {
        s.apply_bundle(b, at).expect("the fixture bundle is valid");
    };
    apply(&mut s1, &b0, signed_at[0]);
    let mut s2 = s1.clone();
    apply(&mut s2, &b1, signed_at[1]);
    apply(&mut s2, &b2, signed_at[2]);
    let mut s3 = s2.clone();
    apply(&mut s3, &b3, signed_at[3]);
    TrustDocs {
        roots: [root1, root2, root3],
        bundles: [b0, b1, b2, b3],
        signed_at,
        states: [s0, s1, s2, s3],
    }
}

/// The metadata history, built once.
pub fn trust_docs() -> &'static TrustDocs {
    static DOCS: OnceLock<TrustDocs> = OnceLock::new();
    DOCS.get_or_init(build_trust_docs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worlds_hold_a_release_with_several_chunks() {
        for operator in [false, true] {
            let w = world(operator);
            assert!(
                w.content_a.chunks.len() >= 2,
                "{}",
                w.content_a.chunks.len()
            );
            assert_eq!(w.trust_a.releases(), vec![w.release_a.clone()]);
            assert_eq!(w.fleet.operator.is_some(), operator);
            assert_eq!(w.node_certs[0].is_some(), operator);
        }
    }

    #[test]
    fn trust_docs_walk_versions_and_rotate_the_timestamp_key() {
        let d = trust_docs();
        let v: Vec<_> = d.states.iter().map(|s| s.versions()).collect();
        assert_eq!(v[0].timestamp, None);
        assert_eq!(v[1].timestamp, Some(1));
        assert_eq!(v[2].timestamp, Some(3));
        assert_eq!(v[3].root, 3);
        assert_eq!(v[3].timestamp, Some(4));
        assert_eq!(d.table().len(), 13);
    }
}
