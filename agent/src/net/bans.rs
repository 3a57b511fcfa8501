//! The network layer's ban list: which peers are refused, and until when.
//!
//! A ban either lasts a set time (the bans the network layer and the driver
//! raise on their own: a gossip score below the graylist threshold,
//! undecodable requests; see [`SCORE_BAN`]) or until the agent restarts (the
//! engine's bans, which the engine itself keeps for as long). A timed ban
//! ends on its own, so an honest peer banned by mistake, or a peer that
//! restarted with its key after a ban of its previous life, comes back. At
//! most `MAX_BANS` bans are kept; the oldest is lifted to make room.
//!
//! Time is passed in (`now`), so the list is tested with a made-up clock.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::time::{Duration, Instant};

/// How long a peer is banned for a gossip score below the graylist
/// threshold: long enough that a flooder's identity is worth nothing for a
/// while (each comeback costs it a new ban after one invalid message), short
/// enough that an honest peer banned by mistake is back within minutes.
/// Gossipsub forgets the score of a peer disconnected for 5 minutes
/// (`SCORE_RETENTION` in the behaviour), so a peer whose ban ends starts
/// again from a clean score and is not banned again for its past.
pub const SCORE_BAN: Duration = Duration::from_secs(10 * 60);

/// How long a peer is banned for sending
/// [`crate::driver::MAX_MALFORMED_REQUESTS`] requests that do not decode.
pub const MALFORMED_BAN: Duration = Duration::from_secs(10 * 60);

/// Bans keyed by `K` (a peer ID), oldest first, at most `max`.
#[derive(Debug)]
pub(crate) struct BanList<K> {
    /// When each ban ends; `None`: when lifted (or the process ends).
    until: HashMap<K, Option<Instant>>,
    /// Banned keys, oldest ban first (each key once).
    order: VecDeque<K>,
    max: usize,
}

/// What [`BanList::insert`] did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Inserted<K> {
    /// The key was not banned before.
    pub(crate) new: bool,
    /// The ban lifted to make room, if any.
    pub(crate) evicted: Option<K>,
}

impl<K: Copy + Eq + Hash> BanList<K> {
    /// An empty list of at most `max` bans.
    pub(crate) fn new(max: usize) -> Self {
        Self {
            until: HashMap::new(),
            order: VecDeque::new(),
            max,
        }
    }

    /// Bans `key` from `now` for `length` (`None`: until lifted). A key
    /// already banned keeps the longer of its two bans.
    pub(crate) fn insert(&mut self, key: K, now: Instant, length: Option<Duration>) -> Inserted<K> {
        let end = length.map(|l| now + l);
        if let Some(old) = self.until.get_mut(&key) {
            *old = match (*old, end) {
                (None, _) | (_, None) => None,
                (Some(a), Some(b)) => Some(a.max(b)),
            };
            return Inserted {
                new: false,
                evicted: None,
            };
        }
        self.until.insert(key, end);
        self.order.push_back(key);
        let mut evicted = None;
        if self.order.len() > self.max {
            if let Some(old) = self.order.pop_front() {
                self.until.remove(&old);
                evicted = Some(old);
            }
        }
        Inserted { new: true, evicted }
    }

    /// Whether `key` is banned (a timed ban that has ended but was not yet
    /// taken out by [`BanList::expire`] no longer counts).
    pub(crate) fn contains(&self, key: &K, now: Instant) -> bool {
        match self.until.get(key) {
            Some(None) => true,
            Some(Some(end)) => *end > now,
            None => false,
        }
    }

    /// When `key`'s ban ends: `None` if it is not banned, `Some(None)` if
    /// its ban lasts until lifted.
    pub(crate) fn ends(&self, key: &K) -> Option<Option<Instant>> {
        self.until.get(key).copied()
    }

    /// Takes out every timed ban that has ended by `now`; returns their keys,
    /// oldest ban first.
    pub(crate) fn expire(&mut self, now: Instant) -> Vec<K> {
        let until = &mut self.until;
        let mut lifted = Vec::new();
        self.order.retain(|k| match until.get(k) {
            Some(Some(end)) if *end <= now => {
                until.remove(k);
                lifted.push(*k);
                false
            }
            _ => true,
        });
        lifted
    }

    /// Number of bans held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.order.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn a_timed_ban_ends_and_only_then() {
        let t0 = Instant::now();
        let mut bans = BanList::new(8);
        assert!(bans.insert(1u32, t0, Some(10 * MIN)).new);
        assert!(bans.contains(&1, t0));
        assert!(bans.contains(&1, t0 + 10 * MIN - Duration::from_millis(1)));
        assert_eq!(bans.ends(&1), Some(Some(t0 + 10 * MIN)));
        assert!(bans.expire(t0 + 9 * MIN).is_empty());
        assert!(bans.contains(&1, t0 + 9 * MIN));
        // Over: no longer banned even before the sweep, then swept out.
        assert!(!bans.contains(&1, t0 + 10 * MIN));
        assert_eq!(bans.expire(t0 + 10 * MIN), vec![1]);
        assert_eq!(bans.ends(&1), None);
        assert_eq!(bans.len(), 0);
        // A new ban starts from scratch.
        assert!(bans.insert(1, t0 + 11 * MIN, Some(MIN)).new);
        assert!(bans.contains(&1, t0 + 11 * MIN));
        assert_eq!(bans.expire(t0 + 12 * MIN), vec![1]);
    }

    #[test]
    fn a_ban_until_lifted_never_expires() {
        let t0 = Instant::now();
        let mut bans = BanList::new(8);
        bans.insert(1u32, t0, None);
        bans.insert(2, t0, Some(MIN));
        let later = t0 + 1000 * MIN;
        assert!(bans.contains(&1, later));
        assert_eq!(bans.expire(later), vec![2]);
        assert!(bans.contains(&1, later));
        assert_eq!(bans.ends(&1), Some(None));
    }

    #[test]
    fn banning_again_keeps_the_longer_ban() {
        let t0 = Instant::now();
        let mut bans = BanList::new(8);
        bans.insert(1u32, t0, Some(10 * MIN));
        let again = bans.insert(1, t0 + MIN, Some(MIN));
        assert!(!again.new);
        assert_eq!(bans.ends(&1), Some(Some(t0 + 10 * MIN)));
        bans.insert(1, t0 + 5 * MIN, Some(10 * MIN));
        assert_eq!(bans.ends(&1), Some(Some(t0 + 15 * MIN)));
        bans.insert(1, t0 + 6 * MIN, None);
        assert_eq!(bans.ends(&1), Some(None));
        bans.insert(1, t0 + 7 * MIN, Some(MIN));
        assert_eq!(bans.ends(&1), Some(None), "a ban until lifted stays so");
        assert_eq!(bans.len(), 1);
    }

    #[test]
    fn the_list_is_bounded_and_lifts_the_oldest_ban() {
        let t0 = Instant::now();
        let mut bans = BanList::new(3);
        for k in 0..3u32 {
            assert_eq!(bans.insert(k, t0, None).evicted, None);
        }
        let full = bans.insert(3, t0, Some(MIN));
        assert_eq!(full.evicted, Some(0));
        assert!(!bans.contains(&0, t0));
        assert!(bans.contains(&3, t0));
        assert_eq!(bans.len(), 3);
        // Expired bans make room without evicting anyone.
        assert_eq!(bans.expire(t0 + MIN), vec![3]);
        assert_eq!(bans.insert(4, t0 + MIN, None).evicted, None);
        assert_eq!(bans.len(), 3);
    }
}
