//! Rate limits as the engine sees them: how many bytes of requests a
//! download may have in flight, and whether a server can still take on a
//! chunk without answering it after the asker's deadline.
//!
//! The driver enforces the configured rates on the wire (the agent with a
//! token bucket on its streams); the engine only has to avoid asking for, or
//! promising, more than those rates can carry in time. Otherwise a node with
//! a slow limit would see its own requests time out and strike honest peers,
//! and a slow server would be struck by every asker.

use crate::limits::{DOWNLOAD_WINDOW_MS, UPLOAD_BACKLOG_MS};
use crate::time::Timestamp;
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
}

impl UploadBacklog {
    /// An empty backlog for `rate` bytes per second (`None`: never busy).
    pub fn new(rate: Option<NonZeroU64>) -> UploadBacklog {
        UploadBacklog {
            rate,
            queued: 0,
            at: Timestamp(0),
        }
    }

    /// Bytes promised and not yet sent at `now`, by the rate.
    pub fn queued(&mut self, now: Timestamp) -> u64 {
        if let Some(rate) = self.rate {
            let elapsed = now.as_millis().saturating_sub(self.at.as_millis());
            let sent = rate.get().saturating_mul(elapsed) / 1000;
            self.queued = self.queued.saturating_sub(sent);
        }
        // Time only moves forward for the bucket, even if `now` does not.
        self.at = self.at.max(now);
        self.queued
    }

    /// Takes on a chunk of `length` bytes at `now` if the backlog allows it;
    /// returns false (answer `Busy`) if not. An empty backlog always takes
    /// one chunk, so even a chunk larger than the window is served.
    pub fn try_accept(&mut self, now: Timestamp, length: u64) -> bool {
        let Some(rate) = self.rate else {
            return true;
        };
        let limit = rate.get().saturating_mul(UPLOAD_BACKLOG_MS) / 1000;
        let queued = self.queued(now);
        if queued > 0 && queued.saturating_add(length) > limit {
            return false;
        }
        self.queued = queued.saturating_add(length);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(bytes: u64) -> Option<NonZeroU64> {
        NonZeroU64::new(bytes)
    }

    #[test]
    fn unlimited_never_refuses() {
        let mut b = UploadBacklog::new(None);
        for _ in 0..1000 {
            assert!(b.try_accept(Timestamp(0), u64::MAX / 2));
        }
        assert_eq!(Bandwidth::default().download_window(), u64::MAX);
    }

    #[test]
    fn the_backlog_fills_to_its_window_and_drains_at_the_rate() {
        // 1 MB/s: a 10 s backlog holds 10 MB.
        let mut b = UploadBacklog::new(rate(1_000_000));
        for _ in 0..10 {
            assert!(b.try_accept(Timestamp(0), 1_000_000));
        }
        assert!(!b.try_accept(Timestamp(0), 1));
        // After one second, one megabyte has gone out.
        assert_eq!(b.queued(Timestamp(1000)), 9_000_000);
        assert!(b.try_accept(Timestamp(1000), 1_000_000));
        assert!(!b.try_accept(Timestamp(1000), 1));
        assert_eq!(b.queued(Timestamp(60_000)), 0);
    }

    #[test]
    fn an_empty_backlog_takes_a_chunk_larger_than_its_window() {
        let mut b = UploadBacklog::new(rate(1));
        assert!(b.try_accept(Timestamp(0), 8 << 20));
        assert!(!b.try_accept(Timestamp(0), 1));
    }

    #[test]
    fn time_going_backwards_sends_nothing() {
        let mut b = UploadBacklog::new(rate(1000));
        assert!(b.try_accept(Timestamp(5000), 5000));
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
