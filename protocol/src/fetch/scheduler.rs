//! One release's download: which chunk to request from which peer, and what to
//! do when a request succeeds, fails or runs out of time.
//!
//! [`Download::next_requests`] picks chunks rarest-first (rarity = how many
//! non-banned tracked peers have the chunk; ties broken by the seeded RNG) and
//! sends each to a peer that has it with the fewest requests in flight (ties:
//! better [`Standing`] first, each `Busy` since the peer's last delivery
//! counting as a strike here, then the RNG), within
//! [`MAX_REQUESTS_PER_PEER`] and [`MAX_REQUESTS_TOTAL`]. Once every missing
//! chunk is in flight (the endgame), a chunk whose request has been outstanding
//! for [`ENDGAME_AFTER_MS`] (at once if the peer asked is not in good standing)
//! may also be asked of a second peer, so one slow peer
//! cannot hold up the last chunks; never more than [`MAX_COPIES`] copies are
//! outstanding. (Copying at once wasted upload: a request may wait its turn at
//! a busy server for a while, see [`crate::fetch::waiting`].)
//!
//! Timeouts are handled by a small per-peer [`Standing`]: each expired request is
//! a strike that halves the peer's slots, [`STRIKES_TO_BENCH`] unforgiven
//! strikes bench it for [`BENCH_MS`], and each chunk it delivers forgives one
//! strike. Strikes count requests, not polls, so a peer that lets a whole batch
//! of requests expire is benched at once, however the driver schedules polls.
//!
//! A peer that answers `Busy` rests for [`BUSY_BACKOFF_MS`] and comes back
//! with half its slots; being busy is an honest answer, not a strike. With a
//! byte window ([`Download::set_byte_window`]), requests in flight never add
//! up to more bytes than the window, so a node's own download limit cannot
//! make its requests time out.
//!
//! With a [`SiteFilter`] ([`Download::set_site_filter`]), a chunk is asked
//! of LAN peers only while a usable (not benched) LAN peer holds it, and of
//! WAN peers only when the filter's [`crate::fetch::site::WanAccess`] allows
//! that chunk (see [`crate::fetch::site`]), as a first copy (no endgame
//! duplicate crosses the WAN) and within [`MAX_WAN_IN_FLIGHT`].
//!
//! Every method takes peer input at face value only where that is harmless:
//! unknown peers, unknown indices, unsolicited and duplicate answers leave the
//! bookkeeping consistent, and every collection is bounded by the limits.

use super::bitfield::Bitfield;
use super::site::SiteFilter;
use crate::chunk::ChunkList;
use crate::id::NodeId;
use crate::limits::{
    BUSY_BACKOFF_MS, MAX_REQUESTS_PER_PEER, MAX_REQUESTS_TOTAL, MAX_TRACKED_PEERS,
    MAX_WAN_IN_FLIGHT, REQUEST_TIMEOUT_MS,
};
use crate::time::Timestamp;
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use std::collections::BTreeMap;
use std::fmt;

pub use crate::limits::{BENCH_MS, ENDGAME_AFTER_MS, MAX_COPIES, STRIKES_TO_BENCH};

// Availability counts are u16: every tracked peer can be counted.
const _: () = assert!(MAX_TRACKED_PEERS < u16::MAX as usize);

/// How a peer has answered our requests lately; it sets how many requests the
/// peer may have in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Standing {
    /// Answering: up to [`MAX_REQUESTS_PER_PEER`] requests.
    Good,
    /// Recent requests timed out: each strike halves the slots (at least one remains).
    Slow {
        /// Timeouts not yet forgiven, `1..STRIKES_TO_BENCH`.
        strikes: u8,
    },
    /// Too many timeouts: no requests until `until`, then one slot on probation
    /// (`Slow` with one strike short of another bench).
    Benched {
        /// When the peer may be asked again.
        until: Timestamp,
    },
    /// Answered `Busy`: no requests until `until`, then half the slots
    /// (`Slow` with one strike).
    Resting {
        /// When the peer may be asked again.
        until: Timestamp,
    },
}

impl Standing {
    /// Requests this standing allows in flight.
    pub fn slots(self) -> usize {
        match self {
            Standing::Good => MAX_REQUESTS_PER_PEER,
            Standing::Slow { strikes } => MAX_REQUESTS_PER_PEER
                .checked_shr(u32::from(strikes))
                .unwrap_or(0)
                .max(1),
            Standing::Benched { .. } | Standing::Resting { .. } => 0,
        }
    }

    /// Orders peers with equal load: lower is preferred.
    fn rank(self) -> u8 {
        match self {
            Standing::Good => 0,
            Standing::Slow { strikes } => strikes,
            Standing::Benched { .. } | Standing::Resting { .. } => STRIKES_TO_BENCH,
        }
    }

    /// After a request to this peer expired at `now`.
    fn strike(self, now: Timestamp) -> Standing {
        let strikes = match self {
            Standing::Good => 1,
            Standing::Slow { strikes } => strikes.saturating_add(1),
            Standing::Benched { .. } => STRIKES_TO_BENCH,
            Standing::Resting { .. } => 1,
        };
        if strikes >= STRIKES_TO_BENCH {
            Standing::Benched {
                until: now.plus_millis(BENCH_MS),
            }
        } else {
            Standing::Slow { strikes }
        }
    }

    /// After this peer delivered a requested chunk.
    fn forgive(self) -> Standing {
        match self {
            Standing::Good | Standing::Slow { strikes: 0..=1 } => Standing::Good,
            Standing::Slow { strikes } => Standing::Slow {
                strikes: strikes - 1,
            },
            Standing::Benched { .. } => Standing::on_probation(),
            Standing::Resting { .. } => Standing::Slow { strikes: 1 },
        }
    }

    /// After this peer answered `Busy` at `now`. A benched peer stays benched.
    fn rest(self, now: Timestamp) -> Standing {
        match self {
            Standing::Benched { .. } => self,
            _ => Standing::Resting {
                until: now.plus_millis(BUSY_BACKOFF_MS),
            },
        }
    }

    /// When a bench or rest ends, if this is one.
    fn pause_ends(self) -> Option<Timestamp> {
        match self {
            Standing::Benched { until } | Standing::Resting { until } => Some(until),
            _ => None,
        }
    }

    /// One slot, and one more timeout benches again.
    fn on_probation() -> Standing {
        Standing::Slow {
            strikes: STRIKES_TO_BENCH - 1,
        }
    }
}

/// What we know about one tracked peer for this release.
#[derive(Clone, Debug)]
struct Peer {
    /// Chunks it says it has (minus those it failed to deliver).
    have: Bitfield,
    /// Our requests to it that are outstanding.
    in_flight: usize,
    /// How it has answered lately.
    standing: Standing,
    /// `Busy` answers since it last delivered a chunk (at most
    /// [`STRIKES_TO_BENCH`]); ranks it behind peers not turned away as often.
    busy_streak: u8,
}

impl Peer {
    fn free_slots(&self) -> usize {
        self.standing.slots().saturating_sub(self.in_flight)
    }

    /// Orders peers with equal load: lower is preferred. Each `Busy` since its
    /// last delivery counts like a strike here (not for slots or benching):
    /// peers that keep answering `Busy` would otherwise always rank ahead of a
    /// peer on probation, which then never gets the request that would clear it.
    fn rank(&self) -> u8 {
        self.standing.rank().saturating_add(self.busy_streak)
    }
}

/// One outstanding request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct InFlight {
    peer: NodeId,
    index: u32,
    deadline: Timestamp,
}

/// When a request has been outstanding long enough to earn an endgame copy.
fn endgame_from(r: &InFlight) -> Timestamp {
    Timestamp(
        r.deadline
            .as_millis()
            .saturating_sub(REQUEST_TIMEOUT_MS)
            .saturating_add(ENDGAME_AFTER_MS),
    )
}

/// The fetch state of one release.
#[derive(Clone)]
pub struct Download {
    /// Chunks we hold.
    held: Bitfield,
    /// Chunks we do not hold: `held.len() - held.count()`, kept to avoid recounting.
    missing: u32,
    /// Per chunk, how many tracked peers have it (banned ones too: the ban
    /// predicate is only known when requests are chosen).
    avail: Vec<u16>,
    /// Per chunk, outstanding requests, `0..=MAX_COPIES`.
    copies: Vec<u8>,
    /// At most [`MAX_TRACKED_PEERS`]; a BTreeMap so that iteration order, and
    /// with it every choice, depends only on the seed.
    peers: BTreeMap<NodeId, Peer>,
    /// At most [`MAX_REQUESTS_TOTAL`], oldest first.
    requests: Vec<InFlight>,
    /// Per chunk, its length in bytes.
    lengths: Vec<u32>,
    /// Bytes of the requests outstanding (duplicates counted each time).
    in_flight_bytes: u64,
    /// Most bytes the requests outstanding may add up to (see [`Download::set_byte_window`]).
    byte_window: u64,
    /// Which peers may be asked for which chunk; `None`: any peer for any chunk.
    site: Option<SiteFilter>,
    /// Breaks ties; seeded by the caller.
    rng: ChaCha8Rng,
}

impl fmt::Debug for Download {
    /// A summary; the per-chunk tables are too large to print.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Download")
            .field("held", &self.held)
            .field("peers", &self.peers.len())
            .field("in_flight", &self.requests.len())
            .finish_non_exhaustive()
    }
}

/// The state of one [`Download::next_requests`] call.
struct Round {
    /// Requests that may still be issued within [`MAX_REQUESTS_TOTAL`].
    budget: usize,
    /// Non-banned peers with a free slot.
    open: usize,
    /// Deadline of the requests issued.
    deadline: Timestamp,
    /// Tracked peers the caller has banned, sorted.
    banned: Vec<NodeId>,
}

impl Round {
    fn is_over(&self) -> bool {
        self.budget == 0 || self.open == 0
    }
}

/// A uniform index below `n` (which must be at least 1). The multiply-shift
/// bias is below `n / 2^64`, far too small to matter for tie-breaking.
fn below(rng: &mut ChaCha8Rng, n: usize) -> usize {
    ((u128::from(rng.next_u64()) * n as u128) >> 64) as usize
}

/// Adds one to (or, if `add` is false, takes one from) `avail` for every bit set in `bits`.
fn count_bits(avail: &mut [u16], bits: &Bitfield, add: bool) {
    for (byte_index, &byte) in bits.as_bytes().iter().enumerate() {
        if byte == 0 {
            continue;
        }
        for bit in 0..8 {
            if byte & (0x80 >> bit) != 0 {
                if let Some(a) = avail.get_mut(byte_index * 8 + bit) {
                    *a = if add {
                        a.saturating_add(1)
                    } else {
                        a.saturating_sub(1)
                    };
                }
            }
        }
    }
}

/// Orders candidates by rarity, keeping the input order among equals. A
/// counting sort: linear in the number of chunks, since a rarity is at most
/// [`MAX_TRACKED_PEERS`].
fn sort_by_rarity(candidates: Vec<(u16, u32)>) -> Vec<(u16, u32)> {
    let max = candidates
        .iter()
        .map(|c| usize::from(c.0))
        .max()
        .unwrap_or(0);
    // starts[r] = where the first candidate of rarity r goes.
    let mut starts = vec![0usize; max + 2];
    for c in &candidates {
        starts[usize::from(c.0) + 1] += 1;
    }
    for r in 1..starts.len() {
        starts[r] += starts[r - 1];
    }
    let mut out = vec![(0, 0); candidates.len()];
    for c in candidates {
        let slot = &mut starts[usize::from(c.0)];
        out[*slot] = c;
        *slot += 1;
    }
    out
}

impl Download {
    /// Starts a download of the chunks in `list`, of which `have` are already
    /// held. `have` should have one bit per chunk; if it has more, the extra
    /// bits are ignored, and if fewer, the chunks it does not cover count as
    /// missing. `list` must come from [`ChunkList::decode`], which bounds its
    /// length. `seed` drives every random tie-break, so equal seeds and equal
    /// calls give equal choices.
    pub fn new(list: &ChunkList, have: Bitfield, seed: u64) -> Download {
        let n = u32::try_from(list.chunks.len()).unwrap_or(u32::MAX);
        let held = if have.len() == n {
            have
        } else {
            let mut held = Bitfield::new(n);
            for i in have.ones() {
                held.set(i);
            }
            held
        };
        Download {
            missing: n.saturating_sub(held.count()),
            held,
            avail: vec![0; n as usize],
            copies: vec![0; n as usize],
            peers: BTreeMap::new(),
            requests: Vec::new(),
            lengths: list.chunks.iter().map(|c| c.length).collect(),
            in_flight_bytes: 0,
            byte_window: u64::MAX,
            site: None,
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// Limits the requests in flight to `bytes` in total, except that one
    /// request is always allowed (a chunk larger than the window still
    /// arrives). Use [`crate::fetch::Bandwidth::download_window`].
    pub fn set_byte_window(&mut self, bytes: u64) {
        self.byte_window = bytes.max(1);
    }

    /// Restricts which peers are asked for which chunk from the next
    /// [`Download::next_requests`] on (`None` lifts the restriction). Requests
    /// already in flight are kept.
    pub fn set_site_filter(&mut self, filter: Option<SiteFilter>) {
        self.site = filter;
    }

    /// Bytes of the requests outstanding.
    pub fn in_flight_bytes(&self) -> u64 {
        self.in_flight_bytes
    }

    // ---- availability -------------------------------------------------------

    /// Replaces what `peer` has with `have`, starting to track the peer if it is
    /// new and there is room; its requests in flight and standing are kept.
    /// Returns whether the availability was recorded: a peer beyond
    /// [`MAX_TRACKED_PEERS`] is ignored until a tracked one is removed, and a
    /// bitfield whose length is not the release's chunk count is refused.
    pub fn set_peer_have(&mut self, peer: NodeId, have: Bitfield) -> bool {
        if have.len() != self.held.len() {
            return false;
        }
        if let Some(p) = self.peers.get_mut(&peer) {
            count_bits(&mut self.avail, &p.have, false);
            count_bits(&mut self.avail, &have, true);
            p.have = have;
            return true;
        }
        if self.peers.len() >= MAX_TRACKED_PEERS {
            return false;
        }
        count_bits(&mut self.avail, &have, true);
        self.peers.insert(peer, Peer::new(have));
        true
    }

    /// Records that `peer` now has chunk `index`, starting to track the peer if
    /// it is new and there is room. Returns whether it was recorded: an index
    /// past the end or a peer beyond [`MAX_TRACKED_PEERS`] is ignored.
    pub fn peer_got(&mut self, peer: NodeId, index: u32) -> bool {
        let chunks = self.held.len();
        if index >= chunks {
            return false;
        }
        if !self.peers.contains_key(&peer) {
            if self.peers.len() >= MAX_TRACKED_PEERS {
                return false;
            }
            self.peers.insert(peer, Peer::new(Bitfield::new(chunks)));
        }
        self.mark_peer_has(&peer, index);
        true
    }

    /// Stops tracking `peer` (it disconnected or was banned) and returns its
    /// requests that were in flight, which are forgotten and can go elsewhere.
    pub fn remove_peer(&mut self, peer: &NodeId) -> Vec<(NodeId, u32)> {
        let Some(p) = self.peers.remove(peer) else {
            return Vec::new();
        };
        count_bits(&mut self.avail, &p.have, false);
        let mut dropped = Vec::new();
        let (copies, lengths) = (&mut self.copies, &self.lengths);
        let mut freed = 0u64;
        self.requests.retain(|r| {
            if r.peer != *peer {
                return true;
            }
            if let Some(c) = copies.get_mut(r.index as usize) {
                *c = c.saturating_sub(1);
            }
            freed += u64::from(lengths.get(r.index as usize).copied().unwrap_or(0));
            dropped.push((r.peer, r.index));
            false
        });
        self.in_flight_bytes = self.in_flight_bytes.saturating_sub(freed);
        dropped
    }

    fn mark_peer_has(&mut self, peer: &NodeId, index: u32) {
        if let Some(p) = self.peers.get_mut(peer) {
            if p.have.set(index) {
                if let Some(a) = self.avail.get_mut(index as usize) {
                    *a = a.saturating_add(1);
                }
            }
        }
    }

    fn mark_peer_lacks(&mut self, peer: &NodeId, index: u32) {
        if let Some(p) = self.peers.get_mut(peer) {
            if p.have.clear(index) {
                if let Some(a) = self.avail.get_mut(index as usize) {
                    *a = a.saturating_sub(1);
                }
            }
        }
    }

    // ---- choosing requests --------------------------------------------------

    /// Chooses the requests to send now and records them as in flight until
    /// `now + REQUEST_TIMEOUT_MS`. Peers for which `banned` is true are neither
    /// asked nor counted towards a chunk's rarity. Returns `(peer, chunk index)`
    /// pairs; nothing once the download is complete.
    pub fn next_requests(
        &mut self,
        now: Timestamp,
        banned: &impl Fn(&NodeId) -> bool,
    ) -> Vec<(NodeId, u32)> {
        let mut issued = Vec::new();
        if self.missing == 0 {
            return issued;
        }
        self.lift_benches(now);
        // Sorted, because it comes from the BTreeMap's keys.
        let banned: Vec<NodeId> = self.peers.keys().filter(|id| banned(id)).copied().collect();
        let mut round = Round {
            budget: MAX_REQUESTS_TOTAL.saturating_sub(self.requests.len()),
            open: self
                .peers
                .iter()
                .filter(|(id, p)| p.free_slots() > 0 && banned.binary_search(id).is_err())
                .count(),
            deadline: now.plus_millis(REQUEST_TIMEOUT_MS),
            banned,
        };
        if round.is_over() {
            return issued;
        }
        // A chunk in flight is never held (its verification cancels the other
        // copies), so this counts the missing chunks nobody has been asked for.
        let unrequested = (self.missing as usize).saturating_sub(self.chunks_in_flight());
        if unrequested > 0 {
            let mut fresh = self.fresh_candidates(&round.banned);
            self.assign(&mut fresh, &mut round, &mut issued);
        }
        // Endgame only once nothing missing is left unrequested, so that
        // duplicates never take slots a first request could use.
        if unrequested == issued.len() {
            let mut second = self.endgame_candidates(&round.banned, now);
            self.assign(&mut second, &mut round, &mut issued);
        }
        issued
    }

    /// Whether `peer` has neither timed out nor answered `Busy` lately: only
    /// its requests wait [`ENDGAME_AFTER_MS`] before a copy may go elsewhere.
    fn in_good_standing(&self, peer: &NodeId) -> bool {
        self.peers
            .get(peer)
            .is_some_and(|p| p.standing == Standing::Good)
    }

    /// Distinct chunks with a request outstanding.
    fn chunks_in_flight(&self) -> usize {
        self.requests
            .iter()
            .enumerate()
            .filter(|(k, r)| !self.requests[..*k].iter().any(|o| o.index == r.index))
            .count()
    }

    /// How many tracked, non-banned peers have chunk `index`.
    fn rarity(&self, index: u32, banned_haves: &[&Bitfield]) -> u16 {
        let claimed = self.avail.get(index as usize).copied().unwrap_or(0);
        let by_banned = banned_haves.iter().filter(|h| h.get(index)).count();
        claimed.saturating_sub(u16::try_from(by_banned).unwrap_or(u16::MAX))
    }

    fn banned_haves<'a>(&'a self, banned: &[NodeId]) -> Vec<&'a Bitfield> {
        banned
            .iter()
            .filter_map(|id| self.peers.get(id))
            .map(|p| &p.have)
            .collect()
    }

    /// Missing chunks with no request outstanding that some non-banned peer
    /// has, as `(rarity, index)` ordered by rarity then index. One pass over
    /// the held bitfield, skipping whole bytes of held chunks.
    fn fresh_candidates(&self, banned: &[NodeId]) -> Vec<(u16, u32)> {
        let banned_haves = self.banned_haves(banned);
        let n = self.held.len();
        let mut out = Vec::new();
        for (byte_index, &byte) in self.held.as_bytes().iter().enumerate() {
            if byte == 0xff {
                continue;
            }
            for bit in 0..8 {
                let Ok(index) = u32::try_from(byte_index * 8 + bit) else {
                    break;
                };
                if index >= n {
                    break;
                }
                if byte & (0x80 >> bit) != 0 || self.copies.get(index as usize) != Some(&0) {
                    continue;
                }
                let rarity = self.rarity(index, &banned_haves);
                if rarity > 0 {
                    out.push((rarity, index));
                }
            }
        }
        sort_by_rarity(out)
    }

    /// Missing chunks with at least one but fewer than [`MAX_COPIES`]
    /// requests outstanding, the first for at least [`ENDGAME_AFTER_MS`] or
    /// to a peer not in good standing, that
    /// some non-banned peer has, as `(rarity, index)` ordered by rarity. Only
    /// chunks in flight qualify, so this looks at the requests, not the whole release.
    fn endgame_candidates(&self, banned: &[NodeId], now: Timestamp) -> Vec<(u16, u32)> {
        let banned_haves = self.banned_haves(banned);
        let mut out: Vec<(u16, u32)> = Vec::new();
        for r in &self.requests {
            if endgame_from(r) > now && self.in_good_standing(&r.peer) {
                continue;
            }
            let copies = self.copies.get(r.index as usize).copied().unwrap_or(0);
            // The first request for each chunk stands for it, so no chunk is listed twice.
            if copies < MAX_COPIES && !out.iter().any(|c| c.1 == r.index) {
                let rarity = self.rarity(r.index, &banned_haves);
                if rarity > 0 {
                    out.push((rarity, r.index));
                }
            }
        }
        sort_by_rarity(out)
    }

    /// Issues requests for `candidates` (ordered by rarity), rarest first with
    /// random order among equally rare chunks, until the round is over.
    fn assign(
        &mut self,
        candidates: &mut [(u16, u32)],
        round: &mut Round,
        issued: &mut Vec<(NodeId, u32)>,
    ) {
        let mut start = 0;
        while start < candidates.len() {
            let rarity = candidates[start].0;
            let end = candidates[start..]
                .iter()
                .position(|c| c.0 != rarity)
                .map_or(candidates.len(), |len| start + len);
            // A lazy Fisher-Yates shuffle of the run: only the chunks looked at cost a draw.
            for i in start..end {
                if round.is_over() {
                    return;
                }
                let j = i + below(&mut self.rng, end - i);
                candidates.swap(i, j);
                let index = candidates[i].1;
                if !self.fits_window(index) {
                    return;
                }
                let Some(peer) = self.pick_peer(index, &round.banned) else {
                    continue;
                };
                self.issue(peer, index, round.deadline);
                issued.push((peer, index));
                round.budget -= 1;
                if self.peers.get(&peer).is_none_or(|p| p.free_slots() == 0) {
                    round.open -= 1;
                }
            }
            start = end;
        }
    }

    /// Among the non-banned peers with chunk `index`, a free slot and no
    /// request for that chunk yet, the one with the fewest requests in flight,
    /// then the best standing, then a random one.
    fn pick_peer(&mut self, index: u32, banned: &[NodeId]) -> Option<NodeId> {
        let mut best: Option<((usize, u8), NodeId)> = None;
        let mut ties = 0usize;
        // Only an endgame chunk has a request to exclude a peer for.
        let asked: Vec<NodeId> = match self.copies.get(index as usize) {
            Some(0) | None => Vec::new(),
            Some(_) => self
                .requests
                .iter()
                .filter(|r| r.index == index)
                .map(|r| r.peer)
                .collect(),
        };
        if self.site.is_some() {
            return self.pick_peer_by_site(index, banned, &asked);
        }
        // Iterating the map (rather than looking peers up) keeps this cheap:
        // it runs once per chunk considered.
        for (id, p) in &self.peers {
            if !p.have.get(index) || p.free_slots() == 0 || asked.contains(id) {
                continue;
            }
            if !banned.is_empty() && banned.binary_search(id).is_ok() {
                continue;
            }
            let key = (p.in_flight, p.rank());
            match best {
                Some((b, _)) if key > b => {}
                Some((b, _)) if key == b => {
                    // Reservoir sampling: each of the tied peers is kept with equal chance.
                    ties += 1;
                    if below(&mut self.rng, ties) == 0 {
                        best = Some((key, *id));
                    }
                }
                _ => {
                    best = Some((key, *id));
                    ties = 1;
                }
            }
        }
        best.map(|(_, id)| id)
    }

    /// [`Download::pick_peer`] under the site filter: the LAN peers allowed
    /// if a usable LAN peer holds the chunk, else the WAN peers if the filter
    /// allows this chunk from the WAN, nobody was asked for it yet and fewer
    /// than [`MAX_WAN_IN_FLIGHT`] WAN requests are out; the same order among them.
    fn pick_peer_by_site(
        &mut self,
        index: u32,
        banned: &[NodeId],
        asked: &[NodeId],
    ) -> Option<NodeId> {
        let site = self.site.as_ref()?;
        let mut lan_holds = false;
        let mut candidates: Vec<((usize, u8), NodeId, bool)> = Vec::new();
        for (id, p) in &self.peers {
            if !p.have.get(index) || (!banned.is_empty() && banned.binary_search(id).is_ok()) {
                continue;
            }
            let lan = site.is_lan(id);
            // A benched LAN peer is not waited for; a resting one is back within a second.
            if lan && !matches!(p.standing, Standing::Benched { .. }) {
                lan_holds = true;
            }
            if p.free_slots() == 0 || asked.contains(id) {
                continue;
            }
            candidates.push(((p.in_flight, p.rank()), *id, lan));
        }
        let wan_busy = self
            .requests
            .iter()
            .filter(|r| !site.is_lan(&r.peer))
            .count();
        let wan_ok = !lan_holds
            && asked.is_empty()
            && wan_busy < MAX_WAN_IN_FLIGHT
            && site.wan.allows(index);
        let lan_ok = site.lan_open;
        candidates.retain(|(_, _, lan)| if *lan { lan_ok } else { wan_ok });
        let best = candidates.iter().map(|c| c.0).min()?;
        candidates.retain(|c| c.0 == best);
        let pick = below(&mut self.rng, candidates.len());
        candidates.get(pick).map(|c| c.1)
    }

    /// Whether a request for chunk `index` keeps the bytes in flight within the window.
    fn fits_window(&self, index: u32) -> bool {
        let length = u64::from(self.lengths.get(index as usize).copied().unwrap_or(0));
        self.in_flight_bytes == 0 || self.in_flight_bytes.saturating_add(length) <= self.byte_window
    }

    fn chunk_length(&self, index: u32) -> u64 {
        u64::from(self.lengths.get(index as usize).copied().unwrap_or(0))
    }

    fn issue(&mut self, peer: NodeId, index: u32, deadline: Timestamp) {
        self.in_flight_bytes = self
            .in_flight_bytes
            .saturating_add(self.chunk_length(index));
        if let Some(p) = self.peers.get_mut(&peer) {
            p.in_flight += 1;
        }
        if let Some(c) = self.copies.get_mut(index as usize) {
            *c = c.saturating_add(1);
        }
        self.requests.push(InFlight {
            peer,
            index,
            deadline,
        });
    }

    /// Forgets the request `(peer, index)`; returns whether there was one.
    fn drop_request(&mut self, peer: &NodeId, index: u32) -> bool {
        let Some(pos) = self
            .requests
            .iter()
            .position(|r| r.peer == *peer && r.index == index)
        else {
            return false;
        };
        self.requests.remove(pos);
        self.in_flight_bytes = self
            .in_flight_bytes
            .saturating_sub(self.chunk_length(index));
        if let Some(c) = self.copies.get_mut(index as usize) {
            *c = c.saturating_sub(1);
        }
        if let Some(p) = self.peers.get_mut(peer) {
            p.in_flight = p.in_flight.saturating_sub(1);
        }
        true
    }

    // ---- answers ------------------------------------------------------------

    /// Chunk `index` from `peer` matched the chunk list: it is held from now on.
    /// Returns the other requests for that chunk still outstanding, which are
    /// forgotten; the caller cancels them or ignores their answers. A delivered
    /// request forgives one of the peer's strikes. An index past the end is ignored.
    pub fn on_chunk_verified(&mut self, peer: &NodeId, index: u32) -> Vec<(NodeId, u32)> {
        if index >= self.held.len() {
            return Vec::new();
        }
        if self.drop_request(peer, index) {
            if let Some(p) = self.peers.get_mut(peer) {
                p.standing = p.standing.forgive();
                p.busy_streak = 0;
            }
        }
        self.mark_peer_has(peer, index);
        if self.held.set(index) {
            self.missing = self.missing.saturating_sub(1);
        }
        let others: Vec<(NodeId, u32)> = self
            .requests
            .iter()
            .filter(|r| r.index == index)
            .map(|r| (r.peer, r.index))
            .collect();
        for (other, i) in &others {
            self.drop_request(other, *i);
        }
        others
    }

    /// Chunk `index` became held without a request (the same bytes arrived for
    /// another index or release, or from a local source). Returns the requests
    /// for it that are now pointless.
    pub fn mark_held(&mut self, index: u32) -> Vec<(NodeId, u32)> {
        if index >= self.held.len() {
            return Vec::new();
        }
        if self.held.set(index) {
            self.missing = self.missing.saturating_sub(1);
        }
        let others: Vec<(NodeId, u32)> = self
            .requests
            .iter()
            .filter(|r| r.index == index)
            .map(|r| (r.peer, r.index))
            .collect();
        for (other, i) in &others {
            self.drop_request(other, *i);
        }
        others
    }

    /// Chunk `index` is no longer held (it could not be stored, or the store
    /// lost it): it becomes requestable again.
    pub fn mark_missing(&mut self, index: u32) {
        if index < self.held.len() && self.held.clear(index) {
            self.missing = self.missing.saturating_add(1);
        }
    }

    /// Chunk `index` from `peer` did not match the chunk list. The caller bans
    /// the peer; here its request is freed and the peer stops being tracked.
    /// Returns the peer's other requests in flight, now forgotten.
    pub fn on_chunk_corrupt(&mut self, peer: &NodeId, index: u32) -> Vec<(NodeId, u32)> {
        self.drop_request(peer, index);
        self.remove_peer(peer)
    }

    /// The request for chunk `index` from `peer` failed (not found, busy or
    /// disconnected): the slot is freed and the peer is taken not to have the
    /// chunk until it announces it again. Failures are quick answers, not
    /// strikes.
    pub fn on_request_failed(&mut self, peer: &NodeId, index: u32) {
        self.drop_request(peer, index);
        self.mark_peer_lacks(peer, index);
    }

    /// `peer` answered `Busy` to the request for chunk `index` at `now`: the
    /// slot is freed, the chunk may be asked of others, and the peer rests for
    /// [`BUSY_BACKOFF_MS`] (it still has the chunk). Not a strike.
    pub fn on_busy(&mut self, peer: &NodeId, index: u32, now: Timestamp) {
        if self.drop_request(peer, index) {
            if let Some(p) = self.peers.get_mut(peer) {
                p.standing = p.standing.rest(now);
                p.busy_streak = p.busy_streak.saturating_add(1).min(STRIKES_TO_BENCH);
            }
        }
    }

    // ---- time ---------------------------------------------------------------

    /// Expires the requests whose deadline is at or before `now` and returns
    /// them; their chunks can be requested again. Each is a strike against its
    /// peer (see [`Standing`]). Also ends benches that are over.
    pub fn poll_timeouts(&mut self, now: Timestamp) -> Vec<(NodeId, u32)> {
        self.lift_benches(now);
        let expired: Vec<InFlight> = self
            .requests
            .iter()
            .filter(|r| r.deadline <= now)
            .copied()
            .collect();
        for r in &expired {
            self.drop_request(&r.peer, r.index);
            if let Some(p) = self.peers.get_mut(&r.peer) {
                p.standing = p.standing.strike(now);
            }
        }
        expired.into_iter().map(|r| (r.peer, r.index)).collect()
    }

    fn lift_benches(&mut self, now: Timestamp) {
        for p in self.peers.values_mut() {
            match p.standing {
                Standing::Benched { until } if until <= now => {
                    p.standing = Standing::on_probation();
                }
                Standing::Resting { until } if until <= now => {
                    p.standing = Standing::Slow { strikes: 1 };
                }
                _ => {}
            }
        }
    }

    /// When something changes on its own: the earliest request deadline or end
    /// of a bench. The driver calls [`Download::poll_timeouts`] and then
    /// [`Download::next_requests`] at that time. `None` when nothing is pending,
    /// and always once the download is complete.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        if self.is_complete() {
            return None;
        }
        let deadlines = self.requests.iter().map(|r| r.deadline);
        let benches = self.peers.values().filter_map(|p| p.standing.pause_ends());
        // Once nothing missing is unrequested, a request may earn a second copy.
        let in_endgame = self.missing as usize <= self.requests.len()
            && self.missing as usize <= self.chunks_in_flight();
        let endgame = in_endgame
            .then(|| {
                self.requests
                    .iter()
                    .filter(|r| {
                        self.copies
                            .get(r.index as usize)
                            .is_some_and(|&c| c < MAX_COPIES)
                    })
                    .map(endgame_from)
                    .min()
            })
            .flatten();
        deadlines.chain(benches).chain(endgame).min()
    }

    // ---- queries ------------------------------------------------------------

    /// Whether every chunk is held.
    pub fn is_complete(&self) -> bool {
        self.missing == 0
    }

    /// Chunks not yet held.
    pub fn missing(&self) -> u32 {
        self.missing
    }

    /// The chunks held (for answering peers' `Have` requests).
    pub fn held(&self) -> &Bitfield {
        &self.held
    }

    /// Chunks in the release.
    pub fn chunk_count(&self) -> u32 {
        self.held.len()
    }

    /// Requests outstanding, over all peers.
    pub fn in_flight(&self) -> usize {
        self.requests.len()
    }

    /// Whether chunk `index` was requested from `peer` and is still
    /// outstanding; a chunk arriving otherwise is unsolicited and dropped.
    pub fn is_in_flight(&self, peer: &NodeId, index: u32) -> bool {
        self.requests
            .iter()
            .any(|r| r.peer == *peer && r.index == index)
    }

    /// Every outstanding request as `(peer, index)`, oldest first.
    pub fn outstanding(&self) -> impl Iterator<Item = (NodeId, u32)> + '_ {
        self.requests.iter().map(|r| (r.peer, r.index))
    }

    /// Peers whose availability is tracked.
    pub fn tracked_peers(&self) -> usize {
        self.peers.len()
    }

    /// What `peer` is known to have, if it is tracked.
    pub fn peer_have(&self, peer: &NodeId) -> Option<&Bitfield> {
        self.peers.get(peer).map(|p| &p.have)
    }

    /// `peer`'s standing, if it is tracked.
    pub fn peer_standing(&self, peer: &NodeId) -> Option<Standing> {
        self.peers.get(peer).map(|p| p.standing)
    }

    /// Requests outstanding to `peer`.
    pub fn peer_in_flight(&self, peer: &NodeId) -> usize {
        self.peers.get(peer).map_or(0, |p| p.in_flight)
    }
}

impl Peer {
    fn new(have: Bitfield) -> Peer {
        Peer {
            have,
            in_flight: 0,
            standing: Standing::Good,
            busy_streak: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::ChunkEntry;
    use proptest::prelude::*;

    fn peer(n: u8) -> NodeId {
        NodeId([n; 32])
    }

    fn list(n: u32) -> ChunkList {
        ChunkList {
            chunks: vec![
                ChunkEntry {
                    length: 1,
                    hash: [0; 32]
                };
                n as usize
            ],
        }
    }

    const NOBODY: fn(&NodeId) -> bool = |_| false;

    impl Download {
        /// Recomputes every derived table from scratch and compares.
        fn check_consistency(&self) -> Result<(), String> {
            let n = self.held.len();
            if self.missing != n - self.held.count() {
                return Err(format!(
                    "missing {} but {} held of {n}",
                    self.missing,
                    self.held.count()
                ));
            }
            for i in 0..n {
                let avail = self.peers.values().filter(|p| p.have.get(i)).count();
                if usize::from(self.avail[i as usize]) != avail {
                    return Err(format!(
                        "chunk {i}: avail {} but {avail} peers have it",
                        self.avail[i as usize]
                    ));
                }
                let copies = self.requests.iter().filter(|r| r.index == i).count();
                if usize::from(self.copies[i as usize]) != copies
                    || copies > usize::from(MAX_COPIES)
                {
                    return Err(format!(
                        "chunk {i}: copies {} but {copies} requests",
                        self.copies[i as usize]
                    ));
                }
            }
            for (id, p) in &self.peers {
                let count = self.requests.iter().filter(|r| r.peer == *id).count();
                if p.in_flight != count || count > MAX_REQUESTS_PER_PEER {
                    return Err(format!(
                        "{id:?}: in_flight {} but {count} requests",
                        p.in_flight
                    ));
                }
            }
            for (k, r) in self.requests.iter().enumerate() {
                if !self.peers.contains_key(&r.peer) {
                    return Err(format!("request to untracked {:?}", r.peer));
                }
                if self.requests[..k]
                    .iter()
                    .any(|o| o.peer == r.peer && o.index == r.index)
                {
                    return Err(format!("duplicate request {:?}/{}", r.peer, r.index));
                }
            }
            if self.requests.len() > MAX_REQUESTS_TOTAL || self.peers.len() > MAX_TRACKED_PEERS {
                return Err("over a limit".into());
            }
            Ok(())
        }
    }

    mod standing {
        use super::*;

        #[test]
        fn strikes_halve_slots_then_bench() {
            let now = Timestamp(1_000);
            let s = Standing::Good;
            assert_eq!(s.slots(), MAX_REQUESTS_PER_PEER);
            let s = s.strike(now);
            assert_eq!(s, Standing::Slow { strikes: 1 });
            assert_eq!(s.slots(), MAX_REQUESTS_PER_PEER / 2);
            let s = s.strike(now);
            assert_eq!(s.slots(), 1);
            let s = s.strike(now);
            assert_eq!(
                s,
                Standing::Benched {
                    until: now.plus_millis(BENCH_MS)
                }
            );
            assert_eq!(s.slots(), 0);
            // A benched peer that times out again is benched from the new time.
            let later = now.plus_millis(10);
            assert_eq!(
                s.strike(later),
                Standing::Benched {
                    until: later.plus_millis(BENCH_MS)
                }
            );
        }

        #[test]
        fn deliveries_forgive_one_strike_each() {
            let benched = Standing::Benched {
                until: Timestamp(5),
            };
            let s = benched.forgive();
            assert_eq!(s, Standing::on_probation());
            assert_eq!(s.forgive(), Standing::Slow { strikes: 1 });
            assert_eq!(s.forgive().forgive(), Standing::Good);
            assert_eq!(Standing::Good.forgive(), Standing::Good);
        }

        #[test]
        fn bench_ends_in_probation_and_is_a_deadline() {
            let mut d = Download::new(&list(8), Bitfield::new(8), 1);
            d.set_peer_have(peer(1), Bitfield::full(8));
            let t0 = Timestamp(0);
            let mut now = t0;
            for _ in 0..STRIKES_TO_BENCH {
                if matches!(d.peer_standing(&peer(1)), Some(Standing::Benched { .. })) {
                    break;
                }
                assert!(!d.next_requests(now, &NOBODY).is_empty());
                now = now.plus_millis(REQUEST_TIMEOUT_MS);
                d.poll_timeouts(now);
            }
            let until = now.plus_millis(BENCH_MS);
            assert_eq!(d.next_deadline(), Some(until));
            assert!(d.next_requests(Timestamp(until.0 - 1), &NOBODY).is_empty());
            assert_eq!(
                d.next_requests(until, &NOBODY).len(),
                1,
                "probation gives one slot"
            );
            assert_eq!(d.peer_standing(&peer(1)), Some(Standing::on_probation()));
        }
    }

    mod bookkeeping {
        use super::*;

        #[test]
        fn replacing_availability_updates_counts() {
            let mut d = Download::new(&list(10), Bitfield::new(10), 3);
            let mut some = Bitfield::new(10);
            some.set(2);
            assert!(d.set_peer_have(peer(1), Bitfield::full(10)));
            assert!(d.set_peer_have(peer(2), some.clone()));
            assert!(d.set_peer_have(peer(1), some));
            assert_eq!(d.avail[2], 2);
            assert_eq!(d.avail[3], 0);
            assert!(d.peer_got(peer(3), 9));
            assert_eq!(d.avail[9], 1);
            d.remove_peer(&peer(2));
            assert_eq!(d.avail[2], 1);
            d.check_consistency().unwrap();
        }

        #[test]
        fn refuses_wrong_lengths_and_indices() {
            let mut d = Download::new(&list(10), Bitfield::new(10), 3);
            assert!(!d.set_peer_have(peer(1), Bitfield::full(11)));
            assert!(!d.peer_got(peer(1), 10));
            assert_eq!(d.tracked_peers(), 0);
        }

        #[test]
        fn have_of_another_length_is_adapted() {
            let mut short = Bitfield::new(3);
            short.set(1);
            let d = Download::new(&list(10), short, 0);
            assert_eq!(d.held().len(), 10);
            assert!(d.held().get(1));
            assert_eq!(d.missing(), 9);
            let d = Download::new(&list(2), Bitfield::full(10), 0);
            assert!(d.is_complete());
        }
    }

    /// One thing that can happen to a download.
    #[derive(Clone, Debug)]
    enum Op {
        Have(u8, Vec<u32>),
        Got(u8, u32),
        Remove(u8),
        Request(u64),
        Verified(usize),
        Failed(usize),
        Corrupt(usize),
        Poll(u64),
        Stray(u8, u32),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..6, proptest::collection::vec(0u32..24, 0..24)).prop_map(|(p, b)| Op::Have(p, b)),
            (0u8..6, 0u32..30).prop_map(|(p, i)| Op::Got(p, i)),
            (0u8..6).prop_map(Op::Remove),
            (0u64..40_000).prop_map(Op::Request),
            any::<usize>().prop_map(Op::Verified),
            any::<usize>().prop_map(Op::Failed),
            any::<usize>().prop_map(Op::Corrupt),
            (0u64..70_000).prop_map(Op::Poll),
            (0u8..6, 0u32..30).prop_map(|(p, i)| Op::Stray(p, i)),
        ]
    }

    proptest! {
        /// Whatever happens, the derived tables agree with the requests and
        /// availability they are derived from.
        #[test]
        fn tables_stay_consistent(seed: u64, ops in proptest::collection::vec(op(), 0..80)) {
            let n = 24;
            let mut d = Download::new(&list(n), Bitfield::new(n), seed);
            let mut now = Timestamp(0);
            for op in ops {
                let pick = |k: usize, d: &Download| {
                    let all: Vec<_> = d.outstanding().collect();
                    (!all.is_empty()).then(|| all[k % all.len()])
                };
                match op {
                    Op::Have(p, bits) => {
                        let mut b = Bitfield::new(n);
                        for i in bits { b.set(i); }
                        d.set_peer_have(peer(p), b);
                    }
                    Op::Got(p, i) => { d.peer_got(peer(p), i); }
                    Op::Remove(p) => { d.remove_peer(&peer(p)); }
                    Op::Request(dt) => {
                        now = now.plus_millis(dt);
                        for (p, i) in d.next_requests(now, &|id: &NodeId| *id == peer(5)) {
                            prop_assert!(!d.held().get(i));
                            prop_assert!(p != peer(5));
                        }
                    }
                    Op::Verified(k) => if let Some((p, i)) = pick(k, &d) { d.on_chunk_verified(&p, i); },
                    Op::Failed(k) => if let Some((p, i)) = pick(k, &d) { d.on_request_failed(&p, i); },
                    Op::Corrupt(k) => if let Some((p, i)) = pick(k, &d) { d.on_chunk_corrupt(&p, i); },
                    Op::Poll(dt) => { now = now.plus_millis(dt); d.poll_timeouts(now); }
                    Op::Stray(p, i) => {
                        // Answers nobody asked for, in every flavour.
                        d.on_request_failed(&peer(p), i);
                        d.on_chunk_verified(&peer(p), i);
                        d.on_chunk_corrupt(&peer(p), i.wrapping_add(1));
                    }
                }
                if let Err(e) = d.check_consistency() {
                    prop_assert!(false, "{}", e);
                }
            }
        }
    }
}
