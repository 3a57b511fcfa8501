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
//! The network layer's own bans double with each offence of the same identity
//! (10 minutes, 20, 40, … up to [`MAX_REPEAT_BAN`]): a flooder that comes
//! back after its ban and offends again is away longer each time, while an
//! honest peer banned once by mistake is back within minutes. The offences of
//! the last `MAX_BANS` offenders are remembered, also after their bans end.
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

/// The longest a repeat offender's ban grows to (see [`BanList::insert_repeat`]).
pub const MAX_REPEAT_BAN: Duration = Duration::from_secs(24 * 3600);

/// Bans keyed by `K` (a peer ID), oldest first, at most `max`.
#[derive(Debug)]
pub(crate) struct BanList<K> {
    /// When each ban ends; `None`: when lifted (or the process ends).
    until: HashMap<K, Option<Instant>>,
    /// Banned keys, oldest ban first (each key once).
    order: VecDeque<K>,
    /// Offences counted by [`BanList::insert_repeat`], kept after the bans
    /// end; at most `max` keys, the least recent offender forgotten first.
    offences: HashMap<K, u32>,
    /// Keys in `offences`, least recent offence first.
    offenders: VecDeque<K>,
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
            offences: HashMap::new(),
            offenders: VecDeque::new(),
            max,
        }
    }

    /// Bans `key` for an offence: `base` for its first, doubled for each
    /// earlier one, at most [`MAX_REPEAT_BAN`]. An offence while the key is
    /// still banned (messages read before the ban took hold) is not counted
    /// and leaves the ban as it is. Returns what [`BanList::insert`] did and
    /// the ban's length.
    pub(crate) fn insert_repeat(
        &mut self,
        key: K,
        now: Instant,
        base: Duration,
    ) -> (Inserted<K>, Duration) {
        let before = self.offences.get(&key).copied().unwrap_or(0);
        let length = base
            .checked_mul(1u32.checked_shl(before).unwrap_or(u32::MAX))
            .unwrap_or(MAX_REPEAT_BAN)
            .min(MAX_REPEAT_BAN);
        if self.contains(&key, now) {
            let left = match self.until.get(&key) {
                Some(Some(end)) => end.saturating_duration_since(now),
                _ => MAX_REPEAT_BAN,
            };
            let kept = Inserted {
                new: false,
                evicted: None,
            };
            return (kept, left);
        }
        self.offences.insert(key, before.saturating_add(1));
        self.offenders.retain(|k| *k != key);
        self.offenders.push_back(key);
        if self.offenders.len() > self.max {
            if let Some(old) = self.offenders.pop_front() {
                self.offences.remove(&old);
            }
        }
        (self.insert(key, now, Some(length)), length)
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
    fn a_repeat_offender_is_banned_twice_as_long_each_time_up_to_a_day() {
        let t0 = Instant::now();
        let mut bans = BanList::new(8);
        let (first, length) = bans.insert_repeat(1u32, t0, 10 * MIN);
        assert!(first.new);
        assert_eq!(length, 10 * MIN);
        // Offending again while banned counts nothing and changes nothing.
        let (again, left) = bans.insert_repeat(1, t0 + MIN, 10 * MIN);
        assert!(!again.new);
        assert_eq!(left, 9 * MIN);
        assert_eq!(bans.ends(&1), Some(Some(t0 + 10 * MIN)));
        let mut t = t0 + 10 * MIN;
        for expected in [20, 40, 80, 160, 320, 640, 1280, 1440, 1440] {
            assert_eq!(bans.expire(t), vec![1]);
            let (_, length) = bans.insert_repeat(1, t, 10 * MIN);
            assert_eq!(length, expected * MIN);
            t += length;
        }
        // Another identity starts at the base.
        assert_eq!(bans.insert_repeat(2, t, 10 * MIN).1, 10 * MIN);
    }

    #[test]
    fn offences_are_remembered_for_the_last_offenders_only() {
        let t0 = Instant::now();
        let mut bans = BanList::new(2);
        bans.insert_repeat(1u32, t0, MIN);
        bans.insert_repeat(2, t0, MIN);
        bans.insert_repeat(3, t0, MIN);
        bans.expire(t0 + MIN);
        // 1 was forgotten to make room for 3; 2 and 3 are repeat offenders.
        assert_eq!(bans.insert_repeat(1, t0 + MIN, MIN).1, MIN);
        assert_eq!(bans.insert_repeat(3, t0 + MIN, MIN).1, 2 * MIN);
        assert!(bans.offences.len() <= 2 && bans.offenders.len() <= 2);
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
