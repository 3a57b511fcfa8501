//! Wave selection: which canary wave a node belongs to for one release.
//!
//! A node's bucket for a release is the first 8 bytes, read big-endian as a
//! `u64`, of `blake3::derive_key(WAVE_CONTEXT, release_id || node_id)`; as a
//! fraction it is `bucket / 2^64`, in [0, 1). The node belongs to the first wave
//! whose cumulative share exceeds its bucket, compared exactly in integers:
//! `bucket * 1_000_000 < cumulative_ppm * 2^64`. Because the release ID is
//! hashed in, each release picks different canaries. Operators may pin a node
//! to the first or the last wave.
//!
//! The report sample works the same way with its own context
//! ([`REPORT_CONTEXT`]), so that it is independent of the wave split: a node
//! reports health for a release iff `report_bucket * 1_000_000 <
//! report_ppm * 2^64`, or it is pinned to the canary wave (operators pin
//! machines they want to hear from).

use crate::id::{NodeId, ReleaseId};
use crate::release::{RolloutPolicy, PPM};
use serde::{Deserialize, Serialize};

/// blake3 `derive_key` context for wave buckets.
pub const WAVE_CONTEXT: &str = "waveguard 2026-11 wave-bucket v1";

/// blake3 `derive_key` context for report-sample buckets.
pub const REPORT_CONTEXT: &str = "waveguard 2026-12 report-sample v1";

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
    bucket_in(WAVE_CONTEXT, release, node)
}

/// A node's report-sample bucket for a release (see the module docs).
pub fn report_bucket(release: &ReleaseId, node: &NodeId) -> u64 {
    bucket_in(REPORT_CONTEXT, release, node)
}

/// Whether a node reports health for a release: it is in the policy's
/// report sample, or pinned to the canary wave.
pub fn reports_health(
    policy: &RolloutPolicy,
    release: &ReleaseId,
    node: &NodeId,
    pin: WavePin,
) -> bool {
    pin == WavePin::Canary || in_sample(report_bucket(release, node), policy.health.report_ppm)
}

/// Whether `bucket` falls below a share of `ppm` parts per million.
pub fn in_sample(bucket: u64, ppm: u32) -> bool {
    u128::from(bucket) * u128::from(PPM) < (u128::from(ppm) << 64)
}

fn bucket_in(context: &str, release: &ReleaseId, node: &NodeId) -> u64 {
    let mut h = blake3::Hasher::new_derive_key(context);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_boundary_is_exact() {
        assert!(!in_sample(0, 0));
        assert!(in_sample(0, 1));
        assert!(in_sample(u64::MAX, PPM));
        // 25%: 2^62 is exactly a quarter, so it is outside; one below is inside.
        assert!(in_sample((1 << 62) - 1, 250_000));
        assert!(!in_sample(1 << 62, 250_000));
    }

    #[test]
    fn the_report_sample_is_not_the_wave_split() {
        let (release, node) = (ReleaseId([1; 32]), NodeId([2; 32]));
        assert_ne!(bucket(&release, &node), report_bucket(&release, &node));
    }
}
