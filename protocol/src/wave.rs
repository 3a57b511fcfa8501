//! Wave selection: which canary wave a node belongs to for one release.
//!
//! A node's bucket for a release is the first 8 bytes, read big-endian as a
//! `u64`, of `blake3::derive_key(WAVE_CONTEXT, release_id || node_id)`; as a
//! fraction it is `bucket / 2^64`, in [0, 1). The node belongs to the first wave
//! whose cumulative share exceeds its bucket, compared exactly in integers:
//! `bucket * 1_000_000 < cumulative_ppm * 2^64`. Because the release ID is
//! hashed in, each release picks different canaries. Operators may pin a node
//! to the first or the last wave.

use crate::id::{NodeId, ReleaseId};
use crate::release::{RolloutPolicy, PPM};
use serde::{Deserialize, Serialize};

/// blake3 `derive_key` context for wave buckets.
pub const WAVE_CONTEXT: &str = "waveguard 2026-11 wave-bucket v1";

/// An operator's override of the computed wave.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WavePin {
    /// Use the computed wave.
    #[default]
    None,
    /// Always in the first (canary) wave.
    Canary,
    /// Always in the last wave.
    Last,
}

/// A node's bucket for a release, as a `u64` (divide by 2^64 for the fraction).
pub fn bucket(release: &ReleaseId, node: &NodeId) -> u64 {
    let mut h = blake3::Hasher::new_derive_key(WAVE_CONTEXT);
    h.update(&release.0);
    h.update(&node.0);
    let out = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&out.as_bytes()[..8]);
    u64::from_be_bytes(first)
}

/// The bucket as a fraction in [0, 1), for display only; decisions use integers.
pub fn bucket_fraction(bucket: u64) -> f64 {
    bucket as f64 / 18_446_744_073_709_551_616.0
}

/// Index of the first wave whose cumulative share exceeds `bucket`.
/// A validated policy ends at 100%, so there always is one; an unvalidated
/// one that does not falls back to the last wave.
pub fn wave_for_bucket(policy: &RolloutPolicy, bucket: u64) -> usize {
    let b = u128::from(bucket) * u128::from(PPM);
    policy
        .waves
        .iter()
        .position(|w| b < (u128::from(w.cumulative_ppm) << 64))
        .unwrap_or(policy.waves.len().saturating_sub(1))
}

/// The wave a node is in for a release, after applying an operator pin.
pub fn wave_of(policy: &RolloutPolicy, release: &ReleaseId, node: &NodeId, pin: WavePin) -> usize {
    match pin {
        WavePin::Canary => 0,
        WavePin::Last => policy.waves.len().saturating_sub(1),
        WavePin::None => wave_for_bucket(policy, bucket(release, node)),
    }
}
