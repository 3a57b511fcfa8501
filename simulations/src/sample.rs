//! Sample releases for the simulator, demos and tests: a vendor with
//! throw-away keys, a root, and releases of pseudo-random content signed into
//! one repository, all derived from a seed.

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use waveguard_protocol::chunk::ChunkList;
use waveguard_protocol::chunker::chunk_bytes;
use waveguard_protocol::health::directive::{sign_directive, Directive, DirectiveAction};
use waveguard_protocol::metadata::build::{
    new_root, release_target, sign_document, Expiries, Repository, RoleSigners, RoleSpec, RootSpec,
};
use waveguard_protocol::release::{ChunkListRef, ChunkerParams, ReleaseInfo, RolloutPolicy};
use waveguard_protocol::wire::MetadataBundle;
use waveguard_protocol::{ReleaseId, SigningKey, Timestamp};

/// A release ready to hand to a seeder.
#[derive(Clone, Debug)]
pub struct SampleRelease {
    /// Its ID.
    pub id: ReleaseId,
    /// The metadata bundle that makes it trusted.
    pub bundle: MetadataBundle,
    /// The encoded chunk list.
    pub chunk_list: Vec<u8>,
    /// The chunks in order.
    pub chunks: Vec<Vec<u8>>,
    /// blake3 of the whole artifact.
    pub artifact_blake3: [u8; 32],
}

/// A vendor with one key per role (and an operator key) and its repository.
pub struct SampleVendor {
    root_key: SigningKey,
    vendor_key: SigningKey,
    operator_key: SigningKey,
    root_json: Vec<u8>,
    repo: Repository,
    rng: ChaCha8Rng,
}

/// Chunker parameters small enough that a few MiB make many chunks.
pub fn small_chunks() -> ChunkerParams {
    ChunkerParams {
        min_size: 16 * 1024,
        avg_size: 64 * 1024,
        max_size: 256 * 1024,
        ..ChunkerParams::default()
    }
}

impl SampleVendor {
    /// A vendor whose keys derive from `seed`; its root expires a year after `now`.
    /// With `operator`, the root names an operator role (fleet certificates required).
    pub fn new(seed: u64, now: Timestamp, operator: bool) -> Result<SampleVendor, String> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x7761_7665_6775_6172);
        let mut key = || {
            let mut s = [0u8; 32];
            rng.fill_bytes(&mut s);
            SigningKey::from_seed(s)
        };
        let (root_key, vendor_key, operator_key) = (key(), key(), key());
        let spec = RootSpec {
            root: RoleSpec::single(root_key.public()),
            targets: RoleSpec::single(vendor_key.public()),
            snapshot: RoleSpec::single(vendor_key.public()),
            timestamp: RoleSpec::single(vendor_key.public()),
            operator: operator.then(|| RoleSpec::single(operator_key.public())),
            expires: now.plus_secs(365 * 24 * 3600),
        };
        let root = new_root(&spec).map_err(|e| e.to_string())?;
        let root_json = sign_document(root, &[&root_key]).map_err(|e| e.to_string())?;
        let repo = Repository::new(&root_json).map_err(|e| e.to_string())?;
        Ok(SampleVendor {
            root_key,
            vendor_key,
            operator_key,
            root_json,
            repo,
            rng: ChaCha8Rng::seed_from_u64(seed),
        })
    }

    /// The root every node must trust.
    pub fn root_json(&self) -> &[u8] {
        &self.root_json
    }

    /// The root key (for rotations in tests).
    pub fn root_key(&self) -> &SigningKey {
        &self.root_key
    }

    /// The operator key (for fleet certificates and directives).
    pub fn operator_key(&self) -> &SigningKey {
        &self.operator_key
    }

    /// Publishes `size` pseudo-random bytes as `product` `version` under `policy`, signed at `now`.
    pub fn release(
        &mut self,
        product: &str,
        version: &str,
        size: usize,
        policy: RolloutPolicy,
        now: Timestamp,
    ) -> Result<SampleRelease, String> {
        self.release_with(product, version, size, policy, now, small_chunks())
    }

    /// Like [`SampleVendor::release`], cut with the chunker `params`.
    pub fn release_with(
        &mut self,
        product: &str,
        version: &str,
        size: usize,
        policy: RolloutPolicy,
        now: Timestamp,
        params: ChunkerParams,
    ) -> Result<SampleRelease, String> {
        let mut artifact = vec![0u8; size];
        self.rng.fill_bytes(&mut artifact);
        let list: ChunkList = chunk_bytes(&artifact, &params).map_err(|e| e.to_string())?;
        let encoded = list.encode();
        let n = u32::try_from(list.chunks.len()).map_err(|e| e.to_string())?;
        let info = ReleaseInfo {
            product: product.into(),
            version: version.into(),
            chunk_list: ChunkListRef {
                length: encoded.len() as u64,
                blake3: hex::encode(blake3::hash(&encoded).as_bytes()),
                chunks: n,
            },
            chunker: params,
            rollout: policy,
        };
        let artifact_blake3 = *blake3::hash(&artifact).as_bytes();
        let path = format!("{product}/{version}/{product}-{version}.bin");
        let target = release_target(&path, artifact.len() as u64, &artifact_blake3, &info)
            .map_err(|e| e.to_string())?;
        let release = self
            .repo
            .add_target(&path, target)
            .map_err(|e| e.to_string())?;
        let k = [&self.vendor_key];
        let bundle = self
            .repo
            .sign(
                now,
                &Expiries::default(),
                &RoleSigners {
                    targets: &k,
                    snapshot: &k,
                    timestamp: &k,
                },
            )
            .map_err(|e| e.to_string())?;
        let mut offset = 0usize;
        let chunks = list
            .chunks
            .iter()
            .map(|c| {
                let bytes = artifact[offset..offset + c.length as usize].to_vec();
                offset += c.length as usize;
                bytes
            })
            .collect();
        Ok(SampleRelease {
            id: release.id,
            bundle,
            chunk_list: encoded,
            chunks,
            artifact_blake3,
        })
    }

    /// A vendor-signed halt or resume directive.
    pub fn directive(
        &self,
        release: ReleaseId,
        action: DirectiveAction,
        seq: u64,
        expires: Timestamp,
        reason: &str,
    ) -> Vec<u8> {
        let d = Directive {
            action,
            release,
            seq,
            expires,
            reason: reason.into(),
        };
        sign_directive(&[&self.vendor_key], &d)
    }
}
