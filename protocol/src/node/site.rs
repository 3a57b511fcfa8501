//! The node's side of site-aware fetching (section 15.7): which peers share
//! its site, the transfer policy the driver sets, the per-release WAN-fetcher
//! election and its stall clock, and refusing uploads the policy forbids.
//! The rules themselves live in [`crate::fetch::site`].

use super::{Node, NodeRole, Output, Tracked};
use crate::fetch::site::{election_rank, SiteFilter, TransferPolicy, WanAccess};
use crate::id::{NodeId, ReleaseId};
use crate::limits::MAX_SITE_PEERS;
use crate::time::Timestamp;
use crate::wire::{Request, Response};

/// A release's election rank, cached until the site's peers change.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct RankCache {
    /// The site generation it was computed for (0: never).
    generation: u64,
    rank: usize,
    members: usize,
}

impl Node {
    /// The driver's list of peers on our site replaces the previous one.
    pub(super) fn on_site_peers(&mut self, peers: Vec<NodeId>) {
        let me = self.id;
        self.site_peers = peers
            .into_iter()
            .filter(|p| *p != me)
            .take(MAX_SITE_PEERS)
            .collect();
        self.site_generation += 1;
    }

    /// The driver's transfer policy replaces the previous one.
    pub(super) fn on_transfer_policy(&mut self, policy: TransferPolicy) {
        self.policy = policy;
    }

    /// Whether `peer` is on our site.
    pub(super) fn is_lan(&self, peer: &NodeId) -> bool {
        self.site_peers.contains(peer)
    }

    /// Whether site-aware rules apply at all: the driver named site peers or restricted transfers.
    fn site_rules_apply(&self) -> bool {
        !self.site_peers.is_empty() || !self.policy.is_open()
    }

    /// The filter for `release`'s next chunk requests, advancing its stall clock;
    /// `None` when nothing restricts them.
    pub(super) fn site_filter(&mut self, release: ReleaseId) -> Option<SiteFilter> {
        if !self.site_rules_apply() {
            return None;
        }
        let (now, me, generation) = (self.now, self.id, self.site_generation);
        let (fetchers, role, policy) = (self.config.wan_fetchers, self.config.role, self.policy);
        let t = self.releases.get_mut(&release)?;
        if t.rank.generation != generation {
            let (rank, members) = election_rank(&release, &me, &self.site_peers);
            t.rank = RankCache {
                generation,
                rank,
                members,
            };
        }
        let wan = if !policy.wan_fetch {
            // Waiting outside a WAN window is not a stall: nobody may fetch.
            t.election.progress(now);
            WanAccess::Closed
        } else if role == NodeRole::Seeder {
            // A seeder or site cache is there to pull releases in.
            WanAccess::Open
        } else {
            t.election.check_stall(now);
            WanAccess::elect(
                &release,
                fetchers,
                t.rank.rank,
                t.rank.members,
                t.election.widenings,
            )
        };
        Some(SiteFilter::new(
            self.site_peers.iter().copied(),
            policy.lan_fetch,
            wan,
        ))
    }

    /// `release` moved forward: a chunk arrived from `peer` (`lan_only` false:
    /// a fetcher's own WAN chunks show it works, so it does not widen), or a
    /// peer announced new chunks (`lan_only`: only a LAN peer's count).
    pub(super) fn lan_progress(&mut self, release: &ReleaseId, peer: &NodeId, lan_only: bool) {
        if lan_only && !self.site_peers.contains(peer) {
            return;
        }
        let now = self.now;
        if let Some(t) = self.releases.get_mut(release) {
            t.election.progress(now);
        }
    }

    /// When `t`'s election widens next, if it is waiting on the LAN for chunks.
    pub(super) fn stall_deadline(&self, t: &Tracked) -> Option<Timestamp> {
        if self.site_peers.is_empty() || !self.policy.wan_fetch {
            return None;
        }
        if t.download.as_ref().is_none_or(|d| d.is_complete()) {
            return None;
        }
        t.election.next_deadline()
    }

    /// Answers `Busy` to a chunk request the transfer policy forbids serving
    /// (outside a window, over the upload cap); returns whether it did.
    pub(super) fn refuse_by_policy(&mut self, from: &NodeId, request_id: u64, data: &[u8]) -> bool {
        if self.policy.may_serve(self.is_lan(from)) {
            return false;
        }
        if !matches!(Request::decode(data), Ok(Request::Chunk { .. })) {
            return false;
        }
        // Busy, not NotFound: the asker keeps us as a source for when the window opens.
        self.outputs.push_back(Output::Respond {
            to: *from,
            request_id,
            data: Response::Busy.encode(),
        });
        true
    }

    /// Whether a chunk list may be asked of `peer` now.
    pub(super) fn may_fetch_from(&self, peer: &NodeId) -> bool {
        if self.is_lan(peer) {
            self.policy.lan_fetch
        } else {
            self.policy.wan_fetch
        }
    }
}
