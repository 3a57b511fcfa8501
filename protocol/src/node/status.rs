//! A read-only view of a node for status pages and tests.

use super::Node;
use crate::health::gate::{evaluate, WaveHealth};
use crate::id::ReleaseId;
use crate::rollout::{HaltReason, RolloutState};
use serde::Serialize;

/// One release as this node sees it.
#[derive(Clone, Debug, Serialize)]
pub struct ReleaseStatus {
    /// The release ID.
    pub id: ReleaseId,
    /// Product.
    pub product: String,
    /// Version.
    pub version: String,
    /// This node's state.
    pub state: RolloutState,
    /// This node's wave.
    pub wave: u32,
    /// Chunks stored here.
    pub chunks_stored: u32,
    /// Chunks in the release (0 until the chunk list is known).
    pub chunks_total: u32,
    /// Health of every wave on this node's evidence.
    pub waves: Vec<WaveHealth>,
    /// Why the release is halted, if it is.
    pub halt: Option<HaltReason>,
}

/// The whole node.
#[derive(Clone, Debug, Serialize)]
pub struct NodeStatus {
    /// This node's ID (hex).
    pub node: String,
    /// Connected peers.
    pub peers: usize,
    /// Banned peers.
    pub banned: usize,
    /// Trusted root version.
    pub root_version: u64,
    /// Releases followed.
    pub releases: Vec<ReleaseStatus>,
}

impl Node {
    /// A snapshot of the node's state at the last `now` it was given.
    pub fn status(&self) -> NodeStatus {
        let releases = self
            .releases
            .values()
            .map(|t| ReleaseStatus {
                id: t.release.id,
                product: t.release.info.product.clone(),
                version: t.release.info.version.clone(),
                state: t.state.clone(),
                wave: t.wave,
                chunks_stored: t.stored.as_ref().map_or(0, |s| s.count()),
                chunks_total: t.list.as_ref().map_or(0, |l| l.chunks.len() as u32),
                waves: (0..t.release.policy().waves.len())
                    .map(|w| evaluate(&t.ledger, &t.release, w as u32, self.now))
                    .collect(),
                halt: t.halt.clone(),
            })
            .collect();
        NodeStatus {
            node: self.id.to_hex(),
            peers: self.peers.len(),
            banned: self.book.len(),
            root_version: self.trust.root_version(),
            releases,
        }
    }

    /// This node's state for one release.
    pub fn release_state(&self, id: &ReleaseId) -> Option<&RolloutState> {
        self.releases.get(id).map(|t| &t.state)
    }
}
