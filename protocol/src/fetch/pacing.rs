//! Rate limits as the engine sees them: how many bytes of requests a
//! download may have in flight, and whether a server can still take on a
//! chunk without answering it after the asker's deadline.
//!
//! The driver enforces the configured rates on the wire (the agent with a
//! token bucket on its streams); the engine only has to avoid asking for, or
//! promising, more than those rates can carry in time. Otherwise a node with
//! a slow limit would see its own requests time out and strike honest peers,
//! and a slow server would be struck by every asker.
//!
//! A server with no configured upload rate paces by what the driver reports
//! sent ([`crate::node::Input::ResponseSent`]): it keeps at most
//! [`UNMETERED_UPLOAD_WINDOW`] bytes of chunks promised and not yet sent, so
//! its link (whatever its speed) carries a few chunks at a time, each
//! arriving quickly, instead of every request at once, each crawling.
//!
//! A server also avoids sending the same chunk twice in quick succession:
//! for [`RESEND_HOLD_MS`] the chunk is held back from other askers, whose
//! requests wait behind requests for other chunks (and may fetch it from its
//! first recipient meanwhile), so the server's upload goes to chunks the
//! swarm does not have yet.

use crate::chunk::ChunkHash;
use crate::id::NodeId;
use crate::limits::{
    DOWNLOAD_WINDOW_MS, MAX_RECENT_SENDS, REQUEST_TIMEOUT_MS, RESEND_HOLD_MS, UNMETERED_UPLOAD_WINDOW,
    UPLOAD_BACKLOG_MS,
};
use crate::time::Timestamp;
use std::collections::{BTreeMap, VecDeque};
use std::num::NonZeroU64;

/// A node's configured bandwidth limits, in bytes per second (`None`: not
/// configured; uploads are then paced by what the driver reports sent).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bandwidth {
    /// Most bytes per second this node sends to peers.
    pub upload: Option<NonZeroU64>,
    /// Most bytes per second this node receives from peers.
    pub download: Option<NonZeroU64>,
}

impl Bandwidth {
    /// Most bytes one download may have requested and not yet received:
    /// [`DOWNLOAD_WINDOW_MS`] worth of the download rate, or no limit.
    pub fn download_window(&self) -> u64 {
        match self.download {
            Some(rate) => rate.get().saturating_mul(DOWNLOAD_WINDOW_MS) / 1000,
            None => u64::MAX,
        }
    }
}

/// A server's promise book. With a configured rate, chunks accepted for
/// sending drain at that rate (a leaky bucket), and a chunk is accepted only
/// while what is already promised would be sent within
/// [`UPLOAD_BACKLOG_MS`]. Without one, a chunk stays promised until the
/// driver reports its response sent, and a chunk is accepted only while the
/// promised bytes fit [`UNMETERED_UPLOAD_WINDOW`]. Either way an empty
/// backlog takes any chunk.
#[derive(Clone, Debug)]
pub struct UploadBacklog {
    rate: Option<NonZeroU64>,
    /// With a rate: bytes promised and, by the rate, not yet sent at `at`.
    queued: u64,
    at: Timestamp,
    /// Without a rate: chunks promised and not yet reported sent, by (asker,
    /// request ID): their length and when they were promised. Bounded by the
    /// window (and [`crate::limits::MIN_CHUNK_MIN`]); an entry the driver never
    /// reports is dropped after [`REQUEST_TIMEOUT_MS`], when its asker has given up.
    unsent: BTreeMap<(NodeId, u64), (u64, Timestamp)>,
    unsent_bytes: u64,
    /// Chunks accepted lately, oldest first: (chunk, to whom, when), at most
    /// [`MAX_RECENT_SENDS`], none older than [`RESEND_HOLD_MS`] after pruning.
    recent: VecDeque<(ChunkHash, NodeId, Timestamp)>,
}

impl UploadBacklog {
    /// An empty backlog for `rate` bytes per second (`None`: paced by reported sends).
    pub fn new(rate: Option<NonZeroU64>) -> UploadBacklog {
        UploadBacklog {
            rate,
            queued: 0,
            at: Timestamp(0),
            unsent: BTreeMap::new(),
            unsent_bytes: 0,
            recent: VecDeque::new(),
        }
    }

    /// Bytes promised and not yet sent at `now`: by the rate, or as reported.
    pub fn queued(&mut self, now: Timestamp) -> u64 {
        if self.rate.is_none() {
            self.drop_stale(now);
            return self.unsent_bytes;
        }
        self.queued = self.queued_at(now);
        // Time only moves forward for the bucket, even if `now` does not.
        self.at = self.at.max(now);
        self.queued
    }

    /// [`Self::queued`] without recording the drain or dropping stale promises.
    fn queued_at(&self, now: Timestamp) -> u64 {
        match self.rate {
            Some(rate) => {
                let elapsed = now.as_millis().saturating_sub(self.at.as_millis());
                let sent = rate.get().saturating_mul(elapsed) / 1000;
                self.queued.saturating_sub(sent)
            }
            None => self.unsent_bytes,
        }
    }

    /// Forgets promises the driver never reported sent within [`REQUEST_TIMEOUT_MS`].
    fn drop_stale(&mut self, now: Timestamp) {
        let oldest = now.as_millis().saturating_sub(REQUEST_TIMEOUT_MS);
        let unsent_bytes = &mut self.unsent_bytes;
        self.unsent.retain(|_, (length, at)| {
            let keep = at.as_millis() >= oldest;
            if !keep {
                *unsent_bytes = unsent_bytes.saturating_sub(*length);
            }
            keep
        });
    }

    /// Takes on chunk `hash` of `length` bytes for request `request_id` of
    /// `peer` at `now` if the backlog allows it and the chunk was not sent to
    /// another peer within [`RESEND_HOLD_MS`]; returns false (answer `Busy`)
    /// if not. An empty backlog takes any chunk not held back, so even a chunk
    /// larger than the window is served.
    pub fn try_accept(
        &mut self,
        now: Timestamp,
        hash: &ChunkHash,
        peer: &NodeId,
        request_id: u64,
        length: u64,
    ) -> bool {
        if self.held_back(now, hash, peer) || !self.has_room(now, length) {
            return false;
        }
        self.accept(now, hash, peer, request_id, length);
        true
    }

    /// Whether `hash` went to a peer other than `peer` within [`RESEND_HOLD_MS`].
    /// Also forgets sends older than the hold.
    pub fn held_back(&mut self, now: Timestamp, hash: &ChunkHash, peer: &NodeId) -> bool {
        let hold_from = now.as_millis().saturating_sub(RESEND_HOLD_MS);
        while self
            .recent
            .front()
            .is_some_and(|(_, _, at)| at.as_millis() < hold_from)
        {
            self.recent.pop_front();
        }
        self.held_until(now, hash, peer).is_some()
    }

    /// When `hash` stops being held back from `peer` ([`Self::held_back`]), or
    /// `None` if it is not held back at `now`. Does not forget old sends.
    pub fn held_until(&self, now: Timestamp, hash: &ChunkHash, peer: &NodeId) -> Option<Timestamp> {
        let hold_from = now.as_millis().saturating_sub(RESEND_HOLD_MS);
        self.recent
            .iter()
            .filter(|(h, to, at)| h == hash && to != peer && at.as_millis() >= hold_from)
            .map(|(_, _, at)| at.plus_millis(RESEND_HOLD_MS + 1))
            .max()
    }

    /// When everything promised will have been sent: by the rate, or (without
    /// one) at the latest when the oldest promise would be dropped as stale;
    /// `now` if it has. Without a rate the answer is an upper bound: a
    /// reported send ([`Self::sent`]) empties the backlog sooner.
    pub fn empty_at(&self, now: Timestamp) -> Timestamp {
        let Some(rate) = self.rate else {
            return self
                .unsent
                .values()
                .map(|(_, at)| at.plus_millis(REQUEST_TIMEOUT_MS + 1))
                .max()
                .map_or(now, |t| t.max(now));
        };
        let queued = self.queued_at(now);
        now.plus_millis(queued.saturating_mul(1000).div_ceil(rate.get()))
    }

    /// Whether a chunk of `length` bytes fits the backlog at `now`.
    pub fn has_room(&mut self, now: Timestamp, length: u64) -> bool {
        let queued = self.queued(now);
        queued == 0 || queued.saturating_add(length) <= self.limit()
    }

    /// When a chunk of `length` bytes will fit the backlog, if nothing more
    /// is accepted before then (`now` if it fits already). Without a rate, an
    /// upper bound as for [`Self::empty_at`].
    pub fn room_at(&self, now: Timestamp, length: u64) -> Timestamp {
        let queued = self.queued_at(now);
        if queued == 0 || queued.saturating_add(length) <= self.limit() {
            return now;
        }
        let Some(rate) = self.rate else {
            // The earliest a stale promise is dropped.
            return self
                .unsent
                .values()
                .map(|(_, at)| at.plus_millis(REQUEST_TIMEOUT_MS + 1))
                .min()
                .map_or(now, |t| t.max(now));
        };
        // The backlog must drain to `limit - length`, or to empty for a chunk larger than the window.
        let target = self.limit().saturating_sub(length);
        let excess = queued.saturating_sub(target);
        now.plus_millis(excess.saturating_mul(1000).div_ceil(rate.get()))
    }

    /// Records chunk `hash` of `length` bytes as promised to `peer` for its
    /// request `request_id` at `now`.
    pub fn accept(
        &mut self,
        now: Timestamp,
        hash: &ChunkHash,
        peer: &NodeId,
        request_id: u64,
        length: u64,
    ) {
        if self.rate.is_some() {
            let queued = self.queued(now);
            self.queued = queued.saturating_add(length);
        } else {
            self.drop_stale(now);
            if let Some((old, _)) = self.unsent.insert((*peer, request_id), (length, now)) {
                self.unsent_bytes = self.unsent_bytes.saturating_sub(old);
            }
            self.unsent_bytes = self.unsent_bytes.saturating_add(length);
        }
        if self.recent.len() >= MAX_RECENT_SENDS {
            self.recent.pop_front();
        }
        self.recent.push_back((*hash, *peer, now));
    }

    /// The driver reports the response to `peer`'s request `request_id` sent
    /// (or given up): without a rate, its bytes stop counting. Anything else
    /// (a response that was no chunk, a second report) changes nothing.
    pub fn sent(&mut self, peer: &NodeId, request_id: u64) {
        if let Some((length, _)) = self.unsent.remove(&(*peer, request_id)) {
            self.unsent_bytes = self.unsent_bytes.saturating_sub(length);
        }
    }

    /// `peer` is gone: what was promised to it no longer counts.
    pub fn forget_peer(&mut self, peer: &NodeId) {
        let ids: Vec<u64> = self
            .unsent
            .range((*peer, 0)..=(*peer, u64::MAX))
            .map(|((_, id), _)| *id)
            .collect();
        for id in ids {
            self.sent(peer, id);
        }
    }

    fn limit(&self) -> u64 {
        self.rate.map_or(UNMETERED_UPLOAD_WINDOW, |r| {
            r.get().saturating_mul(UPLOAD_BACKLOG_MS) / 1000
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: NodeId = NodeId([7; 32]);

    fn chunk(n: u8) -> ChunkHash {
        [n; 32]
    }

    fn rate(bytes: u64) -> Option<NonZeroU64> {
        NonZeroU64::new(bytes)
    }

    #[test]
    fn without_a_rate_promises_count_until_reported_sent() {
        let mut b = UploadBacklog::new(None);
        let q = NodeId([8; 32]);
        let mib = 1 << 20;
        // Four 1 MiB chunks fill the window; a fifth waits.
        for id in 0..4 {
            assert!(b.try_accept(Timestamp(0), &chunk(id as u8), &P, id, mib));
        }
        assert!(!b.try_accept(Timestamp(0), &chunk(9), &q, 9, mib));
        assert_eq!(b.queued(Timestamp(5_000)), 4 * mib, "time alone sends nothing");
        // A report for another request, or a second report, frees nothing more.
        b.sent(&q, 0);
        assert!(!b.has_room(Timestamp(1), mib));
        b.sent(&P, 2);
        b.sent(&P, 2);
        assert_eq!(b.queued(Timestamp(1)), 3 * mib);
        assert!(b.try_accept(Timestamp(1), &chunk(9), &q, 9, mib));
        // A peer that leaves takes its promises with it.
        b.forget_peer(&P);
        assert_eq!(b.queued(Timestamp(2)), mib);
        // Promises never reported are dropped once their asker has given up.
        assert_eq!(b.empty_at(Timestamp(2)), Timestamp(1 + REQUEST_TIMEOUT_MS + 1));
        assert_eq!(b.queued(Timestamp(1 + REQUEST_TIMEOUT_MS)), mib);
        assert_eq!(b.queued(Timestamp(2 + REQUEST_TIMEOUT_MS)), 0);
        // An empty backlog takes a chunk larger than the window.
        assert!(b.try_accept(Timestamp(3 + REQUEST_TIMEOUT_MS), &chunk(10), &P, 10, 8 * mib));
        assert_eq!(Bandwidth::default().download_window(), u64::MAX);
    }

    #[test]
    fn room_at_without_a_rate_is_now_or_the_first_stale_drop() {
        let mut b = UploadBacklog::new(None);
        assert_eq!(b.room_at(Timestamp(7), 1 << 20), Timestamp(7));
        b.accept(Timestamp(10), &chunk(1), &P, 1, UNMETERED_UPLOAD_WINDOW / 2);
        b.accept(Timestamp(20), &chunk(2), &P, 2, UNMETERED_UPLOAD_WINDOW / 2);
        assert_eq!(b.room_at(Timestamp(30), 0), Timestamp(30));
        assert_eq!(b.room_at(Timestamp(30), 1), Timestamp(11 + REQUEST_TIMEOUT_MS));
        b.sent(&P, 1);
        assert_eq!(b.room_at(Timestamp(30), 1 << 20), Timestamp(30));
    }

    #[test]
    fn the_backlog_fills_to_its_window_and_drains_at_the_rate() {
        // 1 MB/s: the backlog holds UPLOAD_BACKLOG_MS worth, in 100 kB chunks.
        let rate = 1_000_000;
        let window = rate * UPLOAD_BACKLOG_MS / 1000;
        let mut b = UploadBacklog::new(NonZeroU64::new(rate));
        let mut n = 0u8;
        let mut next = || {
            n += 1;
            chunk(n)
        };
        for _ in 0..window / 100_000 {
            assert!(b.try_accept(Timestamp(0), &next(), &P, 0, 100_000));
        }
        assert!(!b.try_accept(Timestamp(0), &next(), &P, 0, 1));
        // After 100 ms, 100 kB have gone out: room for one more.
        assert_eq!(b.queued(Timestamp(100)), window - 100_000);
        assert!(b.try_accept(Timestamp(100), &next(), &P, 0, 100_000));
        assert!(!b.try_accept(Timestamp(100), &next(), &P, 0, 1));
        assert_eq!(b.queued(Timestamp(60_000)), 0);
    }

    #[test]
    fn held_until_and_empty_at_agree_with_held_back_and_queued() {
        let q = NodeId([8; 32]);
        let mut b = UploadBacklog::new(rate(1_000));
        assert_eq!(b.empty_at(Timestamp(5)), Timestamp(5));
        assert!(b.try_accept(Timestamp(0), &chunk(1), &P, 0, 1_500));
        // 1,500 bytes at 1,000 bytes/s: empty at 1.5 s, not a millisecond before.
        let empty = b.empty_at(Timestamp(0));
        assert_eq!(empty, Timestamp(1_500));
        assert_eq!(b.queued(Timestamp(1_499)), 1);
        assert_eq!(b.queued(empty), 0);
        // Held back from others (not from its recipient) until held_back says otherwise.
        assert_eq!(b.held_until(Timestamp(10), &chunk(1), &P), None);
        assert_eq!(b.held_until(Timestamp(10), &chunk(2), &q), None);
        let until = b.held_until(Timestamp(10), &chunk(1), &q).expect("held");
        assert!(b.held_back(Timestamp(until.as_millis() - 1), &chunk(1), &q));
        assert!(!b.held_back(until, &chunk(1), &q));
        assert_eq!(b.held_until(until, &chunk(1), &q), None);
        assert_eq!(
            UploadBacklog::new(None).held_until(Timestamp(0), &chunk(1), &q),
            None
        );
    }

    #[test]
    fn a_chunk_just_sent_is_held_back_from_other_peers_for_a_while() {
        let q = NodeId([8; 32]);
        let mut b = UploadBacklog::new(rate(1_000_000));
        assert!(b.try_accept(Timestamp(0), &chunk(1), &P, 0, 1000));
        // The same peer may ask again (its answer may have been lost); another may not.
        assert!(b.try_accept(Timestamp(10), &chunk(1), &P, 0, 1000));
        assert!(!b.try_accept(Timestamp(10), &chunk(1), &q, 0, 1000));
        assert!(b.try_accept(Timestamp(10), &chunk(2), &q, 0, 1000));
        // Once the hold is over, it is sent again.
        // (counted from the last send, to P at 10 ms).
        assert!(!b.try_accept(Timestamp(10 + RESEND_HOLD_MS - 1), &chunk(1), &q, 0, 1000));
        assert!(b.try_accept(Timestamp(11 + RESEND_HOLD_MS), &chunk(1), &q, 0, 1000));
        // Without a rate too: the hold saves whatever the link carries.
        let mut paced = UploadBacklog::new(None);
        assert!(paced.try_accept(Timestamp(0), &chunk(1), &P, 0, 1000));
        assert!(!paced.try_accept(Timestamp(0), &chunk(1), &q, 1, 1000));
    }

    #[test]
    fn an_empty_backlog_takes_a_chunk_larger_than_its_window() {
        let mut b = UploadBacklog::new(rate(1));
        assert!(b.try_accept(Timestamp(0), &chunk(5), &P, 0, 8 << 20));
        assert!(!b.try_accept(Timestamp(0), &chunk(6), &P, 0, 1));
    }

    #[test]
    fn time_going_backwards_sends_nothing() {
        let mut b = UploadBacklog::new(rate(1000));
        assert!(b.try_accept(Timestamp(5000), &chunk(7), &P, 0, 5000));
        assert_eq!(b.queued(Timestamp(0)), 5000);
        assert_eq!(b.queued(Timestamp(6000)), 4000);
    }

    #[test]
    fn the_download_window_is_half_a_request_timeout_of_the_rate() {
        let bw = Bandwidth {
            upload: None,
            download: rate(2_000_000),
        };
        assert_eq!(bw.download_window(), 30_000_000);
    }
}
