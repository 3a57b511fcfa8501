//! How far this node's clock is from the fleet's, estimated from the times in
//! signed health reports of many distinct nodes.
//!
//! Every health report carries its sender's clock reading (`time`). A report
//! that arrives by gossip was signed moments ago (gossipsub only relays
//! messages from its short message cache), so `time - now` at receipt is the
//! sender's clock minus ours, less the transit delay. One such difference per
//! reporter is kept, the newest; the estimate is their median, and only when
//! at least [`MIN_CLOCK_REPORTERS`] distinct nodes gave one inside
//! [`CLOCK_SAMPLE_WINDOW_MS`]. The median of that many is not moved by a few
//! liars or by one badly set peer: fewer than half the reporters cannot pull it
//! outside the range of the honest ones. Memory is bounded by
//! [`MAX_CLOCK_REPORTERS`]; when full, the oldest sample is forgotten.
//!
//! The estimate only ever makes a node more careful (section 11.10, "Clocks", of
//! `docs/protocol.md`): peers who lie about time can stop this node from
//! installing, which they could also do by withholding reports, but cannot
//! make it install sooner or accept what its own clock refuses.

use crate::id::NodeId;
use crate::limits::{
    CLOCK_FAR_OFF_MS, CLOCK_SAMPLE_WINDOW_MS, MAX_CLOCK_REPORTERS, MIN_CLOCK_REPORTERS,
};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What this node knows about its clock (written `unknown`, `agrees`, `far-off`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum ClockCheck {
    /// Too few distinct reporters recently to estimate the offset: the node
    /// goes by its own clock.
    Unknown,
    /// The estimated offset is within [`CLOCK_FAR_OFF_MS`].
    Agrees,
    /// The estimated offset is beyond [`CLOCK_FAR_OFF_MS`]: the node does not
    /// install, and does not halt on silence, until it agrees again.
    FarOff,
}

/// One reporter's latest evidence.
#[derive(Clone, Copy, Debug)]
struct Sample {
    /// The report's time minus our clock at receipt, in milliseconds.
    offset_ms: i64,
    /// The report's signed time (only a newer report replaces a sample).
    reported: Timestamp,
    /// Our clock when it arrived (for the window and for eviction).
    received: Timestamp,
}

/// The clock offset estimator; see the module docs.
#[derive(Clone, Debug, Default)]
pub struct ClockEstimate {
    samples: BTreeMap<NodeId, Sample>,
}

impl ClockEstimate {
    /// An estimator with no evidence.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes the signed `time` of a verified report by `node` that arrived by
    /// gossip at our time `now`. A report older than the one held for that
    /// node is ignored, so a replay or a late copy cannot drag the estimate.
    pub fn sample(&mut self, node: NodeId, time: Timestamp, now: Timestamp) {
        if let Some(held) = self.samples.get(&node) {
            if time <= held.reported {
                return;
            }
        }
        let offset_ms = signed_diff(time, now);
        if !self.samples.contains_key(&node) && self.samples.len() >= MAX_CLOCK_REPORTERS {
            // Forget the sample we received longest ago (ties: lowest node ID).
            let oldest = self
                .samples
                .iter()
                .min_by_key(|(id, s)| (s.received, **id))
                .map(|(id, _)| *id);
            if let Some(id) = oldest {
                self.samples.remove(&id);
            }
        }
        self.samples.insert(
            node,
            Sample {
                offset_ms,
                reported: time,
                received: now,
            },
        );
    }

    /// The fleet's clock minus ours, in milliseconds (positive: we are behind),
    /// from the samples received in the last [`CLOCK_SAMPLE_WINDOW_MS`]; `None`
    /// with fewer than [`MIN_CLOCK_REPORTERS`] of them. With an even count the
    /// lower of the two middle values is taken, so the result is always one
    /// reporter's own figure.
    pub fn offset_ms(&self, now: Timestamp) -> Option<i64> {
        let mut recent: Vec<i64> = self
            .samples
            .values()
            // A sample "received" after now means our clock was set back since: not comparable.
            .filter(|s| s.received <= now && now.millis_since(s.received) <= CLOCK_SAMPLE_WINDOW_MS)
            .map(|s| s.offset_ms)
            .collect();
        if recent.len() < MIN_CLOCK_REPORTERS {
            return None;
        }
        recent.sort_unstable();
        recent.get((recent.len() - 1) / 2).copied()
    }

    /// Whether the estimate at `now` says this clock is far off.
    pub fn check(&self, now: Timestamp) -> ClockCheck {
        match self.offset_ms(now) {
            None => ClockCheck::Unknown,
            Some(o) if o.unsigned_abs() > CLOCK_FAR_OFF_MS => ClockCheck::FarOff,
            Some(_) => ClockCheck::Agrees,
        }
    }

    /// Distinct reporters currently held (at most [`MAX_CLOCK_REPORTERS`]).
    pub fn reporters(&self) -> usize {
        self.samples.len()
    }
}

/// `a - b` in milliseconds, saturating at the ends of `i64`.
fn signed_diff(a: Timestamp, b: Timestamp) -> i64 {
    let (a, b) = (i128::from(a.as_millis()), i128::from(b.as_millis()));
    i64::try_from(a - b).unwrap_or(if a > b { i64::MAX } else { i64::MIN })
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timestamp = Timestamp::from_secs(1_900_000_000);
    const HOUR: u64 = 3_600_000;

    fn node(i: u8) -> NodeId {
        NodeId([i; 32])
    }

    #[test]
    fn no_estimate_below_the_minimum_number_of_reporters() {
        let mut c = ClockEstimate::new();
        for i in 0..MIN_CLOCK_REPORTERS as u8 - 1 {
            c.sample(node(i), T.plus_millis(HOUR), T);
        }
        assert_eq!(c.offset_ms(T), None);
        assert_eq!(c.check(T), ClockCheck::Unknown);
        // Many reports of one node still count once.
        c.sample(node(0), T.plus_millis(HOUR + 1000), T);
        assert_eq!(c.offset_ms(T), None);
        c.sample(node(100), T.plus_millis(HOUR), T);
        assert_eq!(c.offset_ms(T), Some(HOUR as i64));
        assert_eq!(c.check(T), ClockCheck::FarOff);
    }

    #[test]
    fn the_median_ignores_a_minority_of_liars() {
        let mut c = ClockEstimate::new();
        // Three honest peers 1 s ahead of us, two liars a day off in either direction.
        for i in 0..3 {
            c.sample(node(i), T.plus_millis(1000), T);
        }
        c.sample(node(10), T.plus_millis(24 * HOUR), T);
        c.sample(node(11), Timestamp(T.0 - 24 * HOUR), T);
        assert_eq!(c.offset_ms(T), Some(1000));
        assert_eq!(c.check(T), ClockCheck::Agrees);
    }

    #[test]
    fn we_behind_gives_a_positive_offset_we_ahead_a_negative_one() {
        let mut behind = ClockEstimate::new();
        let mut ahead = ClockEstimate::new();
        for i in 0..5 {
            behind.sample(node(i), T.plus_millis(2 * HOUR), T);
            ahead.sample(node(i), T, T.plus_millis(2 * HOUR));
        }
        assert_eq!(behind.offset_ms(T), Some(2 * HOUR as i64));
        let now = T.plus_millis(2 * HOUR);
        assert_eq!(ahead.offset_ms(now), Some(-2 * HOUR as i64));
        assert_eq!(ahead.check(now), ClockCheck::FarOff);
    }

    #[test]
    fn old_samples_leave_the_window_and_older_reports_do_not_replace_newer() {
        let mut c = ClockEstimate::new();
        for i in 0..5 {
            c.sample(node(i), T, T);
        }
        assert_eq!(c.offset_ms(T), Some(0));
        // A replay of an older report changes nothing.
        c.sample(node(0), Timestamp(T.0 - HOUR), T.plus_millis(10));
        assert_eq!(c.offset_ms(T.plus_millis(10)), Some(0));
        let later = T.plus_millis(CLOCK_SAMPLE_WINDOW_MS + 1);
        assert_eq!(c.offset_ms(later), None);
        // Our clock set back before the samples: they are not used either.
        assert_eq!(c.offset_ms(Timestamp(T.0 - 1)), None);
    }

    #[test]
    fn memory_is_bounded_and_the_oldest_sample_goes_first() {
        let mut c = ClockEstimate::new();
        for i in 0..=MAX_CLOCK_REPORTERS as u64 {
            let mut id = [0u8; 32];
            id[..8].copy_from_slice(&i.to_be_bytes());
            c.sample(NodeId(id), T.plus_millis(i), T.plus_millis(i));
        }
        assert_eq!(c.reporters(), MAX_CLOCK_REPORTERS);
        assert!(!c.samples.contains_key(&NodeId([0; 32])));
    }

    #[test]
    fn extreme_times_saturate() {
        assert_eq!(signed_diff(Timestamp(u64::MAX), Timestamp(0)), i64::MAX);
        assert_eq!(signed_diff(Timestamp(0), Timestamp(u64::MAX)), i64::MIN);
    }
}
