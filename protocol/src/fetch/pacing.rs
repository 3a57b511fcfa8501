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
//! An upload-limited server also avoids sending the same chunk twice in
//! quick succession: for [`RESEND_HOLD_MS`] the chunk is held back from other
//! askers, whose requests wait behind requests for other chunks (and may fetch
//! it from its first recipient meanwhile), so the server's scarce upload goes
//! to chunks the swarm does not have yet.

use crate::chunk::ChunkHash;
use crate::id::NodeId;
use crate::limits::{DOWNLOAD_WINDOW_MS, MAX_RECENT_SENDS, RESEND_HOLD_MS, UPLOAD_BACKLOG_MS};
use crate::time::Timestamp;
use std::collections::VecDeque;
use std::num::NonZeroU64;

/// A node's configured bandwidth limits, in bytes per second (`None`: unlimited).
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

/// A server's promise book: chunks accepted for sending drain at the upload
/// rate (a leaky bucket), and a chunk is accepted only while what is already
/// promised would be sent within [`UPLOAD_BACKLOG_MS`].
#[derive(Clone, Debug)]
pub struct UploadBacklog {
    rate: Option<NonZeroU64>,
    /// Bytes promised and, by the rate, not yet sent at `at`.
    queued: u64,
    at: Timestamp,
    /// Chunks accepted lately, oldest first: (chunk, to whom, when), at most
    /// [`MAX_RECENT_SENDS`], none older than [`RESEND_HOLD_MS`] after pruning.
    recent: VecDeque<(ChunkHash, NodeId, Timestamp)>,
}

impl UploadBacklog {
    /// An empty backlog for `rate` bytes per second (`None`: never busy).
    pub fn new(rate: Option<NonZeroU64>) -> UploadBacklog {
        UploadBacklog {
            rate,
            queued: 0,
            at: Timestamp(0),
            recent: VecDeque::new(),
        }
    }

    /// Bytes promised and not yet sent at `now`, by the rate.
    pub fn queued(&mut self, now: Timestamp) -> u64 {
        self.queued = self.queued_at(now);
        // Time only moves forward for the bucket, even if `now` does not.
        self.at = self.at.max(now);
        self.queued
    }

    /// [`Self::queued`] without recording the drain.
    fn queued_at(&self, now: Timestamp) -> u64 {
        match self.rate {
            Some(rate) => {
                let elapsed = now.as_millis().saturating_sub(self.at.as_millis());
                let sent = rate.get().saturating_mul(elapsed) / 1000;
                self.queued.saturating_sub(sent)
            }
            None => self.queued,
        }
    }

    /// Takes on chunk `hash` of `length` bytes for `peer` at `now` if the
    /// backlog allows it and the chunk was not sent to another peer within
    /// [`RESEND_HOLD_MS`]; returns false (answer `Busy`) if not. An empty
    /// backlog takes any chunk not held back, so even a chunk larger than the
    /// window is served. Without a rate, everything is accepted.
    pub fn try_accept(
        &mut self,
        now: Timestamp,
        hash: &ChunkHash,
        peer: &NodeId,
        length: u64,
    ) -> bool {
        if self.held_back(now, hash, peer) || !self.has_room(now, length) {
            return false;
        }
        self.accept(now, hash, peer, length);
        true
    }

    /// Whether `hash` went to a peer other than `peer` within [`RESEND_HOLD_MS`]
    /// (only with a rate: an unlimited server has no upload to save).
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
        self.rate?;
        let hold_from = now.as_millis().saturating_sub(RESEND_HOLD_MS);
        self.recent
            .iter()
            .filter(|(h, to, at)| h == hash && to != peer && at.as_millis() >= hold_from)
            .map(|(_, _, at)| at.plus_millis(RESEND_HOLD_MS + 1))
            .max()
    }

    /// When everything promised will have been sent, by the rate (`now` if it has).
    pub fn empty_at(&self, now: Timestamp) -> Timestamp {
        let Some(rate) = self.rate else {
            return now;
        };
        let queued = self.queued_at(now);
        now.plus_millis(queued.saturating_mul(1000).div_ceil(rate.get()))
    }

    /// Whether a chunk of `length` bytes fits the backlog at `now`.
    pub fn has_room(&mut self, now: Timestamp, length: u64) -> bool {
        if self.rate.is_none() {
            return true;
        }
        let queued = self.queued(now);
        queued == 0 || queued.saturating_add(length) <= self.limit()
    }

    /// When a chunk of `length` bytes will fit the backlog, if nothing more
    /// is accepted before then (`now` if it fits already).
    pub fn room_at(&self, now: Timestamp, length: u64) -> Timestamp {
        let Some(rate) = self.rate else {
            return now;
        };
        let queued = self.queued_at(now);
        if queued == 0 {
            return now;
        }
        // The backlog must drain to `limit - length`, or to empty for a chunk larger than the window.
        let target = self.limit().saturating_sub(length);
        let excess = queued.saturating_sub(target);
        if excess == 0 {
            return now;
        }
        now.plus_millis(excess.saturating_mul(1000).div_ceil(rate.get()))
    }

    /// Records chunk `hash` of `length` bytes as promised to `peer` at `now`.
    pub fn accept(&mut self, now: Timestamp, hash: &ChunkHash, peer: &NodeId, length: u64) {
        if self.rate.is_none() {
            return;
        }
        let queued = self.queued(now);
        self.queued = queued.saturating_add(length);
        if self.recent.len() >= MAX_RECENT_SENDS {
            self.recent.pop_front();
        }
        self.recent.push_back((*hash, *peer, now));
    }

    fn limit(&self) -> u64 {
        self.rate.map_or(u64::MAX, |r| {
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
    fn unlimited_never_refuses() {
        let mut b = UploadBacklog::new(None);
        for _ in 0..1000 {
            assert!(b.try_accept(Timestamp(0), &[0; 32], &P, u64::MAX / 2));
        }
        assert_eq!(Bandwidth::default().download_window(), u64::MAX);
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
            assert!(b.try_accept(Timestamp(0), &next(), &P, 100_000));
        }
        assert!(!b.try_accept(Timestamp(0), &next(), &P, 1));
        // After 100 ms, 100 kB have gone out: room for one more.
        assert_eq!(b.queued(Timestamp(100)), window - 100_000);
        assert!(b.try_accept(Timestamp(100), &next(), &P, 100_000));
        assert!(!b.try_accept(Timestamp(100), &next(), &P, 1));
        assert_eq!(b.queued(Timestamp(60_000)), 0);
    }

    #[test]
    fn held_until_and_empty_at_agree_with_held_back_and_queued() {
        let q = NodeId([8; 32]);
        let mut b = UploadBacklog::new(rate(1_000));
        assert_eq!(b.empty_at(Timestamp(5)), Timestamp(5));
        assert!(b.try_accept(Timestamp(0), &chunk(1), &P, 1_500));
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
        assert!(b.try_accept(Timestamp(0), &chunk(1), &P, 1000));
        // The same peer may ask again (its answer may have been lost); another may not.
        assert!(b.try_accept(Timestamp(10), &chunk(1), &P, 1000));
        assert!(!b.try_accept(Timestamp(10), &chunk(1), &q, 1000));
        assert!(b.try_accept(Timestamp(10), &chunk(2), &q, 1000));
        // Once the hold is over, it is sent again.
        // (counted from the last send, to P at 10 ms).
        assert!(!b.try_accept(Timestamp(10 + RESEND_HOLD_MS - 1), &chunk(1), &q, 1000));
        assert!(b.try_accept(Timestamp(11 + RESEND_HOLD_MS), &chunk(1), &q, 1000));
        // Without a limit nothing is held back.
        let mut free = UploadBacklog::new(None);
        assert!(free.try_accept(Timestamp(0), &chunk(1), &P, 1000));
        assert!(free.try_accept(Timestamp(0), &chunk(1), &q, 1000));
    }

    #[test]
    fn an_empty_backlog_takes_a_chunk_larger_than_its_window() {
        let mut b = UploadBacklog::new(rate(1));
        assert!(b.try_accept(Timestamp(0), &chunk(5), &P, 8 << 20));
        assert!(!b.try_accept(Timestamp(0), &chunk(6), &P, 1));
    }

    #[test]
    fn time_going_backwards_sends_nothing() {
        let mut b = UploadBacklog::new(rate(1000));
        assert!(b.try_accept(Timestamp(5000), &chunk(7), &P, 5000));
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
