//! A read-only view of a node for status pages and tests.

use super::{Node, NodeRole};
use crate::clock::ClockCheck;
use crate::health::gate::{evaluate, WaveHealth};
use crate::id::NodeId;
use crate::id::ReleaseId;
use crate::rollout::{HaltReason, RolloutState};
use crate::wave::{reports_health, wave_of, WavePin};
use serde::Serialize;
use std::collections::BTreeMap;

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
    /// Whether this node is in the release's report sample, so sends health
    /// reports (every node is when the policy has no sample).
    pub reports: bool,
    /// Chunks stored here.
    pub chunks_stored: u32,
    /// Chunks in the release (0 until the chunk list is known).
    pub chunks_total: u32,
    /// Health of every wave on this node's evidence.
    pub waves: Vec<WaveHealth>,
    /// Per wave, the nodes this node knows to be in it: itself (an endpoint), its connected
    /// peers (by their computed wave; a seeder peer is counted too, nothing tells it apart) and
    /// every node in the health ledger (by the wave its reports claim). A lower bound on the
    /// wave's size in the fleet, which no node can know exactly.
    pub eligible: Vec<u64>,
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
    /// The fleet's clock minus ours, in milliseconds (positive: ours is behind), as
    /// estimated from peers' health reports; `None` without enough of them.
    pub clock_offset_ms: Option<i64>,
    /// Whether that offset is within [`crate::limits::CLOCK_FAR_OFF_MS`]; while
    /// [`ClockCheck::FarOff`] the node installs nothing.
    pub clock: ClockCheck,
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
                reports: reports_health(
                    t.release.policy(),
                    &t.release.id,
                    &self.id,
                    self.config.pin,
                ),
                chunks_stored: t.stored.as_ref().map_or(0, |s| s.count()),
                chunks_total: t.list.as_ref().map_or(0, |l| l.chunks.len() as u32),
                waves: (0..t.release.policy().waves.len())
                    .map(|w| evaluate(&t.ledger, &t.release, w as u32, self.now))
                    .collect(),
                halt: t.halt.clone(),
                eligible: self.eligible(t),
            })
            .collect();
        NodeStatus {
            node: self.id.to_hex(),
            peers: self.peers.len(),
            banned: self.book.len(),
            root_version: self.trust.root_version(),
            releases,
            clock_offset_ms: self.clock.offset_ms(self.now),
            clock: self.clock.check(self.now),
        }
    }

    fn eligible(&self, t: &super::Tracked) -> Vec<u64> {
        let policy = t.release.policy();
        let mut known: BTreeMap<NodeId, u32> = self
            .peers
            .iter()
            .map(|p| (*p, wave_of(policy, &t.release.id, p, WavePin::None) as u32))
            .collect();
        if self.config.role == NodeRole::Endpoint {
            known.insert(self.id, t.wave);
        }
        for wave in t.ledger.waves().collect::<Vec<_>>() {
            for (node, _) in t.ledger.wave(wave) {
                known.insert(*node, wave);
            }
        }
        let mut counts = vec![0u64; policy.waves.len()];
        for wave in known.values() {
            if let Some(c) = counts.get_mut(*wave as usize) {
                *c += 1;
            }
        }
        counts
    }

    /// This node's state for one release.
    pub fn release_state(&self, id: &ReleaseId) -> Option<&RolloutState> {
        self.releases.get(id).map(|t| &t.state)
    }
}
