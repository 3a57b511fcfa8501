//! Bandwidth limits on the wire: a token bucket (crate `governor`) per
//! direction, shared by every connection, that request-response frames pass
//! through in blocks.
//!
//! Only request-response frames are paced (chunks, chunk lists, metadata
//! answers: nearly all the bytes a node moves); gossip stays unpaced so
//! halts and health reports are never queued behind bulk data. The engine is
//! told the same rates (`waveguard_protocol::fetch::Bandwidth`) and keeps its
//! requests and promises within what they can carry before a deadline.

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use std::num::{NonZeroU32, NonZeroU64};
use std::sync::Arc;
use std::time::Duration;

/// Bytes per token: the limiter's unit of account.
pub const CELL_BYTES: usize = 1024;
/// Bytes written or read per wait: small enough to share a link fairly
/// between streams, large enough that pacing costs little.
pub const BLOCK_BYTES: usize = 16 * CELL_BYTES;
/// Most time a full bucket lets pass at full speed: bursts are a tenth of a
/// second of the rate (at least one block).
const BURST: Duration = Duration::from_millis(100);

/// One direction's limit, shared by all connections.
#[derive(Clone, Debug)]
pub struct RateLimit {
    limiter: Arc<DefaultDirectRateLimiter>,
    bytes_per_sec: NonZeroU64,
}

impl RateLimit {
    /// A limit of `bytes_per_sec`.
    pub fn new(bytes_per_sec: NonZeroU64) -> RateLimit {
        let rate = bytes_per_sec.get();
        // One cell every CELL_BYTES / rate seconds, at least a nanosecond apart.
        let period_ns = (CELL_BYTES as u128 * 1_000_000_000 / u128::from(rate)).max(1);
        let period = Duration::from_nanos(u64::try_from(period_ns).unwrap_or(u64::MAX));
        let burst_cells = (u128::from(rate) * BURST.as_millis() / 1000 / CELL_BYTES as u128)
            .max((BLOCK_BYTES / CELL_BYTES) as u128);
        let burst = NonZeroU32::new(u32::try_from(burst_cells).unwrap_or(u32::MAX))
            .unwrap_or(NonZeroU32::MIN);
        let quota = Quota::with_period(period)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MAX))
            .allow_burst(burst);
        RateLimit {
            limiter: Arc::new(RateLimiter::direct(quota)),
            bytes_per_sec,
        }
    }

    /// The configured rate.
    pub fn bytes_per_sec(&self) -> NonZeroU64 {
        self.bytes_per_sec
    }

    /// Waits until `bytes` (at most [`BLOCK_BYTES`]) may pass.
    pub async fn take(&self, bytes: usize) {
        let cells = bytes
            .div_ceil(CELL_BYTES)
            .clamp(1, BLOCK_BYTES / CELL_BYTES);
        let cells = NonZeroU32::new(u32::try_from(cells).unwrap_or(1)).unwrap_or(NonZeroU32::MIN);
        // The burst always holds a block (see `new`), so this cannot be refused.
        let _ = self.limiter.until_n_ready(cells).await;
    }
}

/// The limits of both directions; `None` is unlimited.
#[derive(Clone, Debug, Default)]
pub struct Throttle {
    /// Bytes this node sends in responses.
    pub upload: Option<RateLimit>,
    /// Bytes this node receives in responses.
    pub download: Option<RateLimit>,
}

impl Throttle {
    /// Limits of `upload` and `download` bytes per second (`None`: unlimited).
    pub fn new(upload: Option<NonZeroU64>, download: Option<NonZeroU64>) -> Throttle {
        Throttle {
            upload: upload.map(RateLimit::new),
            download: download.map(RateLimit::new),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[tokio::test]
    async fn a_limit_paces_blocks_to_its_rate() {
        // 256 KiB/s: past the 25 KiB burst, 512 KiB takes about two seconds.
        let limit = RateLimit::new(NonZeroU64::new(256 * 1024).unwrap());
        let started = Instant::now();
        for _ in 0..(512 * 1024 / BLOCK_BYTES) {
            limit.take(BLOCK_BYTES).await;
        }
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(1800),
            "512 KiB at 256 KiB/s took {took:?}"
        );
    }

    #[tokio::test]
    async fn a_tiny_rate_still_lets_a_block_through() {
        let limit = RateLimit::new(NonZeroU64::new(1).unwrap());
        // The first block fits the burst: no wait.
        tokio::time::timeout(Duration::from_secs(1), limit.take(BLOCK_BYTES))
            .await
            .expect("the burst holds one block");
    }
}
