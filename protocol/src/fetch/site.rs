//! Site-aware fetching: which peers a download may ask for which chunk, given
//! which peers share the node's site (its LAN), the WAN-fetcher election and
//! the transfer policy the driver sets (WAN windows, upload cap).
//!
//! Only a few nodes per site pull a release across the WAN; the others take it
//! from the LAN. The election needs no coordinator: every node ranks itself
//! among itself and its known LAN peers by [`election_score`] (a hash of the
//! release and the node ID), and the `k` lowest are the release's WAN fetchers.
//! The `r`-th fetcher owns the chunks whose index is `r` modulo the number of
//! fetchers, so each chunk crosses the WAN about once. A chunk some LAN peer
//! holds is never fetched across the WAN. So that a site never stalls (a
//! fetcher offline, outside its wave, without WAN peers), a node that sees no
//! LAN progress for [`WAN_STALL_MS`] doubles the number of fetchers it counts
//! itself among ([`WanElection`]), the chunks split among them again; once
//! every node is a fetcher and the site still stalls, any node may fetch any
//! chunk. Section 15.7 of
//! `docs/protocol.md` is the normative text.

use crate::id::{NodeId, ReleaseId};
use crate::limits::{MAX_WAN_WIDENINGS, WAN_STALL_MS};
use crate::time::Timestamp;

/// blake3 `derive_key` context of the election score.
pub const ELECTION_CONTEXT: &str = "waveguard 2026-12 wan-fetcher v1";

/// What the driver allows now; the engine never reads a clock, so windows and
/// caps are evaluated by the driver and handed in as this policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TransferPolicy {
    /// Chunks may be fetched from WAN peers (inside a WAN window).
    pub wan_fetch: bool,
    /// Chunks may be served to WAN peers (inside a window and under the upload cap).
    pub wan_serve: bool,
    /// Chunks may be fetched from LAN peers.
    pub lan_fetch: bool,
    /// Chunks may be served to LAN peers.
    pub lan_serve: bool,
}

impl Default for TransferPolicy {
    /// Everything allowed.
    fn default() -> Self {
        TransferPolicy {
            wan_fetch: true,
            wan_serve: true,
            lan_fetch: true,
            lan_serve: true,
        }
    }
}

impl TransferPolicy {
    /// Whether everything is allowed (no filter is needed).
    pub fn is_open(&self) -> bool {
        *self == TransferPolicy::default()
    }

    /// Whether chunks may be served to a peer that is (`lan`) or is not on our LAN.
    pub fn may_serve(&self, lan: bool) -> bool {
        if lan {
            self.lan_serve
        } else {
            self.wan_serve
        }
    }
}

/// A node's election score for a release: lower scores are elected first.
pub fn election_score(release: &ReleaseId, node: &NodeId) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key(ELECTION_CONTEXT);
    h.update(&release.0);
    h.update(&node.0);
    *h.finalize().as_bytes()
}

/// `me`'s rank among itself and `lan` for `release` (0 = lowest score), and
/// how many distinct nodes were ranked. `me` in `lan` counts once.
pub fn election_rank<'a>(
    release: &ReleaseId,
    me: &NodeId,
    lan: impl IntoIterator<Item = &'a NodeId>,
) -> (usize, usize) {
    let mine = election_score(release, me);
    let (mut rank, mut members) = (0, 1);
    for peer in lan {
        if peer == me {
            continue;
        }
        members += 1;
        // Ties (a blake3 collision) are broken by node ID, so ranks are distinct.
        if (election_score(release, peer), peer) < (mine, me) {
            rank += 1;
        }
    }
    (rank, members)
}

/// Which of `of` fetchers owns chunk `index` under `salt`: a splitmix64
/// finaliser of the two, modulo `of`, so shares are even and every salt deals
/// them differently.
pub fn chunk_owner(index: u32, of: u32, salt: u64) -> u32 {
    let mut z = salt.wrapping_add(u64::from(index).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z % u64::from(of.max(1))) as u32
}

/// Which chunks a node may fetch from WAN peers (always only chunks no LAN peer holds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WanAccess {
    /// None: not a fetcher, or outside a WAN window.
    Closed,
    /// The chunks whose [`chunk_owner`] under `salt` is `rank`: one of `of` elected fetchers.
    Owned {
        /// This node's rank among the fetchers.
        rank: u32,
        /// How many fetchers split the chunks.
        of: u32,
        /// Draws the split; it changes with every widening, so the share of a
        /// fetcher that does not fetch is dealt out afresh.
        salt: u64,
    },
    /// Any chunk: elected after a stall, or site-aware fetching is off.
    Open,
}

impl WanAccess {
    /// The access of a node ranked `rank` among `members`, with `fetchers`
    /// elected (0: site-aware fetching off) and the election widened
    /// `widenings` times: the `min(fetchers << widenings, members)` lowest
    /// ranks split the chunks by index; once a widening finds every member
    /// already a fetcher (an owner is absent or cannot reach the WAN), every
    /// member may fetch any chunk.
    pub fn elect(
        release: &ReleaseId,
        fetchers: u32,
        rank: usize,
        members: usize,
        widenings: u8,
    ) -> WanAccess {
        if fetchers == 0 {
            return WanAccess::Open;
        }
        let at = |w: u8| {
            (fetchers as usize)
                .checked_shl(u32::from(w))
                .unwrap_or(usize::MAX)
                .min(members)
                .max(1)
        };
        let of = at(widenings);
        if rank >= of {
            return WanAccess::Closed;
        }
        if widenings > 0 && at(widenings - 1) >= members {
            return WanAccess::Open;
        }
        let mut salt = [0u8; 8];
        salt.copy_from_slice(&release.0[..8]);
        WanAccess::Owned {
            rank: u32::try_from(rank).unwrap_or(u32::MAX),
            of: u32::try_from(of).unwrap_or(u32::MAX),
            salt: u64::from_le_bytes(salt) ^ u64::from(widenings),
        }
    }

    /// Whether chunk `index` may come from a WAN peer (if no LAN peer holds it).
    pub fn allows(self, index: u32) -> bool {
        match self {
            WanAccess::Closed => false,
            WanAccess::Owned { rank, of, salt } => chunk_owner(index, of, salt) == rank,
            WanAccess::Open => true,
        }
    }
}

/// The rule a download applies when it picks a peer for a chunk: LAN peers
/// while the LAN is open; WAN peers only for chunks `wan` allows and that no
/// usable LAN peer holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SiteFilter {
    /// LAN peers, sorted and without duplicates.
    lan: Vec<NodeId>,
    /// Whether LAN peers may be asked.
    pub lan_open: bool,
    /// Which chunks WAN peers may be asked for.
    pub wan: WanAccess,
}

impl SiteFilter {
    /// A filter over the LAN peers `lan`.
    pub fn new(lan: impl IntoIterator<Item = NodeId>, lan_open: bool, wan: WanAccess) -> Self {
        let mut lan: Vec<NodeId> = lan.into_iter().collect();
        lan.sort_unstable();
        lan.dedup();
        SiteFilter { lan, lan_open, wan }
    }

    /// Whether `peer` is on our LAN.
    pub fn is_lan(&self, peer: &NodeId) -> bool {
        self.lan.binary_search(peer).is_ok()
    }
}

/// One release's election state on one node: how often it widened, and when
/// it last saw the LAN make progress.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WanElection {
    /// Times the election was widened (each doubles the fetchers), at most [`MAX_WAN_WIDENINGS`].
    pub widenings: u8,
    /// Last LAN progress (or the start of waiting); `None` until the download is driven.
    last_progress: Option<Timestamp>,
}

impl WanElection {
    /// The release made progress at `now` (a chunk arrived, a LAN peer
    /// announced a new chunk), or waiting cannot count now (the WAN is closed).
    pub fn progress(&mut self, now: Timestamp) {
        self.last_progress = Some(now);
    }

    /// Called whenever the download is driven at `now`: starts the stall clock,
    /// and widens the election once the LAN has been silent for [`WAN_STALL_MS`].
    /// Returns whether it widened.
    pub fn check_stall(&mut self, now: Timestamp) -> bool {
        let Some(last) = self.last_progress else {
            self.last_progress = Some(now);
            return false;
        };
        if self.widenings >= MAX_WAN_WIDENINGS || now < last.plus_millis(WAN_STALL_MS) {
            return false;
        }
        self.widenings += 1;
        self.last_progress = Some(now);
        true
    }

    /// When the next widening is due, if one can be.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        if self.widenings >= MAX_WAN_WIDENINGS {
            return None;
        }
        self.last_progress.map(|t| t.plus_millis(WAN_STALL_MS))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn node(n: u16) -> NodeId {
        let mut id = [0u8; 32];
        id[..2].copy_from_slice(&n.to_le_bytes());
        NodeId(id)
    }

    fn release(n: u8) -> ReleaseId {
        ReleaseId([n; 32])
    }

    /// The access every member of a site of `n` computes with a full view.
    fn site_access(r: &ReleaseId, n: u16, fetchers: u32, widenings: u8) -> Vec<WanAccess> {
        let ids: Vec<NodeId> = (0..n).map(node).collect();
        ids.iter()
            .map(|me| {
                let (rank, members) = election_rank(r, me, &ids);
                WanAccess::elect(r, fetchers, rank, members, widenings)
            })
            .collect()
    }

    proptest! {
        #[test]
        fn each_chunk_has_exactly_one_elected_owner(n in 1u16..80, k in 1u32..5, r: u8, index: u32) {
            let access = site_access(&release(r), n, k, 0);
            let owners = access.iter().filter(|a| a.allows(index)).count();
            prop_assert_eq!(owners, 1);
            let elected = access.iter().filter(|a| **a != WanAccess::Closed).count();
            prop_assert_eq!(elected, (k as usize).min(n as usize));
        }

        #[test]
        fn widening_doubles_the_owners_then_opens_to_all(n in 1u16..80, k in 1u32..4, w in 1u8..8, r: u8, index: u32) {
            let access = site_access(&release(r), n, k, w);
            let elected = access.iter().filter(|a| **a != WanAccess::Closed).count();
            prop_assert_eq!(elected, ((k as usize) << w).min(n as usize));
            let owners = access.iter().filter(|a| a.allows(index)).count();
            if ((k as usize) << (w - 1)) >= n as usize {
                // Every member was already an owner and the site still stalled: all may fetch.
                prop_assert_eq!(owners, n as usize);
            } else {
                prop_assert_eq!(owners, 1);
            }
        }

        #[test]
        fn ranks_are_a_permutation(n in 1u16..60, r: u8) {
            let ids: Vec<NodeId> = (0..n).map(node).collect();
            let mut ranks: Vec<usize> = ids
                .iter()
                .map(|me| election_rank(&release(r), me, &ids).0)
                .collect();
            ranks.sort_unstable();
            prop_assert_eq!(ranks, (0..n as usize).collect::<Vec<_>>());
        }
    }

    #[test]
    fn different_releases_elect_different_fetchers() {
        let firsts: std::collections::BTreeSet<usize> = (0..16u8)
            .map(|r| {
                site_access(&release(r), 50, 1, 0)
                    .iter()
                    .position(|a| *a != WanAccess::Closed)
                    .unwrap_or(usize::MAX)
            })
            .collect();
        assert!(firsts.len() > 4, "the load of fetching rotates: {firsts:?}");
    }

    #[test]
    fn zero_fetchers_turns_the_election_off() {
        assert_eq!(WanAccess::elect(&release(1), 0, 40, 50, 0), WanAccess::Open);
    }

    #[test]
    fn owners_share_the_chunks_evenly() {
        let mut shares = [0u32; 4];
        for index in 0..4000 {
            shares[chunk_owner(index, 4, 77) as usize] += 1;
        }
        assert!(shares.iter().all(|s| (900..1100).contains(s)), "{shares:?}");
    }

    #[test]
    fn a_widening_deals_an_absent_owners_share_afresh() {
        // Chunks owned by fetcher 1 of 2 at level 0: at level 1 most go to others.
        let r = release(9);
        let (WanAccess::Owned { salt: s0, .. }, WanAccess::Owned { salt: s1, .. }) = (
            WanAccess::elect(&r, 2, 0, 50, 0),
            WanAccess::elect(&r, 2, 0, 50, 1),
        ) else {
            panic!("fetchers own chunks");
        };
        let orphaned: Vec<u32> = (0..400).filter(|i| chunk_owner(*i, 2, s0) == 1).collect();
        let still = orphaned
            .iter()
            .filter(|i| chunk_owner(**i, 4, s1) == 1)
            .count();
        assert!(still < orphaned.len() / 2, "{still} of {}", orphaned.len());
    }

    #[test]
    fn stall_widens_after_the_bound_and_progress_resets_it() {
        let mut e = WanElection::default();
        let t0 = Timestamp(1_000_000);
        assert!(!e.check_stall(t0), "the first call starts the clock");
        assert_eq!(e.next_deadline(), Some(t0.plus_millis(WAN_STALL_MS)));
        assert!(!e.check_stall(t0.plus_millis(WAN_STALL_MS - 1)));
        e.progress(t0.plus_millis(WAN_STALL_MS - 1));
        assert!(!e.check_stall(t0.plus_millis(WAN_STALL_MS)));
        assert!(e.check_stall(t0.plus_millis(2 * WAN_STALL_MS)));
        assert_eq!(e.widenings, 1);
        let mut t = t0.plus_millis(2 * WAN_STALL_MS);
        for _ in 0..100 {
            t = t.plus_millis(WAN_STALL_MS);
            e.check_stall(t);
        }
        assert_eq!(e.widenings, MAX_WAN_WIDENINGS);
        assert_eq!(e.next_deadline(), None);
    }

    #[test]
    fn policy_serving_follows_locality() {
        let p = TransferPolicy {
            wan_serve: false,
            ..TransferPolicy::default()
        };
        assert!(p.may_serve(true));
        assert!(!p.may_serve(false));
        assert!(!p.is_open());
        assert!(TransferPolicy::default().is_open());
    }
}
