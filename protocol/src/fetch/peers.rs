//! Peer standing across all releases: who is banned, since when, and why.
//!
//! A peer that sends a corrupt chunk or a forged document is banned here once,
//! and every [`super::Download`] skips it through the `banned` predicate the
//! driver passes to [`super::Download::next_requests`]. The book is bounded by
//! [`MAX_BANS`]: when full, the peer banned longest ago is forgotten.

use crate::id::NodeId;
use crate::time::Timestamp;
use std::collections::BTreeMap;

pub use crate::limits::{MAX_BANS, MAX_BAN_REASON_BYTES};

/// One ban: why, and when it was (last) imposed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ban {
    /// Why the peer was banned: a sentence of at most [`MAX_BAN_REASON_BYTES`].
    pub reason: String,
    /// When the ban was imposed or last renewed.
    pub since: Timestamp,
}

/// The banned peers, oldest ban first, at most [`MAX_BANS`] of them.
#[derive(Clone, Debug, Default)]
pub struct PeerBook {
    /// Each banned peer's ban and its position in `order`.
    bans: BTreeMap<NodeId, (u64, Ban)>,
    /// Ban order: a sequence number per ban, so the oldest is found in O(log n)
    /// whatever timestamps the caller passes.
    order: BTreeMap<u64, NodeId>,
    /// The next sequence number; a u64 cannot run out.
    next_seq: u64,
}

impl PeerBook {
    /// An empty book.
    pub fn new() -> PeerBook {
        PeerBook::default()
    }

    /// Bans `peer`. Banning a peer again renews the ban with the new reason and
    /// time, making it the newest. When the book is full, the oldest ban is
    /// forgotten to make room and that peer is returned.
    pub fn ban(
        &mut self,
        peer: NodeId,
        reason: impl Into<String>,
        now: Timestamp,
    ) -> Option<NodeId> {
        let reason = bounded(reason.into());
        if let Some((seq, _)) = self.bans.remove(&peer) {
            self.order.remove(&seq);
        }
        let mut forgotten = None;
        while self.bans.len() >= MAX_BANS {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            self.bans.remove(&oldest);
            forgotten = Some(oldest);
        }
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        self.order.insert(seq, peer);
        self.bans.insert(peer, (seq, Ban { reason, since: now }));
        forgotten
    }

    /// Lifts a ban; returns it if there was one.
    pub fn unban(&mut self, peer: &NodeId) -> Option<Ban> {
        let (seq, ban) = self.bans.remove(peer)?;
        self.order.remove(&seq);
        Some(ban)
    }

    /// Lifts every ban imposed (or last renewed) at or before `cutoff`, oldest
    /// first, and returns those peers.
    pub fn expire(&mut self, cutoff: Timestamp) -> Vec<NodeId> {
        let mut lifted = Vec::new();
        while let Some((&seq, &peer)) = self.order.first_key_value() {
            // Bans enter `order` as they are imposed, so the first is the oldest, as long as
            // the caller's clock does not run back; a later one imposed "earlier" just waits.
            match self.bans.get(&peer) {
                Some((_, ban)) if ban.since > cutoff => break,
                _ => {}
            }
            self.order.remove(&seq);
            self.bans.remove(&peer);
            lifted.push(peer);
        }
        lifted
    }

    /// Whether `peer` is banned.
    pub fn is_banned(&self, peer: &NodeId) -> bool {
        self.bans.contains_key(peer)
    }

    /// `peer`'s ban, if it is banned.
    pub fn ban_of(&self, peer: &NodeId) -> Option<&Ban> {
        self.bans.get(peer).map(|(_, ban)| ban)
    }

    /// Every ban, oldest first.
    pub fn banned(&self) -> impl Iterator<Item = (&NodeId, &Ban)> + '_ {
        self.order
            .values()
            .filter_map(|peer| self.bans.get_key_value(peer).map(|(p, (_, ban))| (p, ban)))
    }

    /// Number of banned peers.
    pub fn len(&self) -> usize {
        self.bans.len()
    }

    /// Whether no peer is banned.
    pub fn is_empty(&self) -> bool {
        self.bans.is_empty()
    }
}

/// `reason` cut to at most [`MAX_BAN_REASON_BYTES`] at a character boundary.
fn bounded(mut reason: String) -> String {
    if reason.len() > MAX_BAN_REASON_BYTES {
        let mut end = MAX_BAN_REASON_BYTES;
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        reason.truncate(end);
    }
    reason
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(n: u32) -> NodeId {
        let mut id = [0u8; 32];
        id[..4].copy_from_slice(&n.to_be_bytes());
        NodeId(id)
    }

    mod bans {
        use super::*;

        #[test]
        fn bans_end_oldest_first_and_a_renewal_starts_over() {
            let mut book = PeerBook::new();
            book.ban(peer(1), "a", Timestamp(10));
            book.ban(peer(2), "b", Timestamp(20));
            book.ban(peer(3), "c", Timestamp(30));
            // Renewed: now the newest, imposed at 40.
            book.ban(peer(1), "a again", Timestamp(40));
            assert!(book.expire(Timestamp(9)).is_empty());
            assert_eq!(book.expire(Timestamp(20)), vec![peer(2)]);
            assert!(!book.is_banned(&peer(2)));
            assert_eq!(book.expire(Timestamp(39)), vec![peer(3)]);
            assert!(book.is_banned(&peer(1)), "its renewal counts from 40");
            assert_eq!(book.expire(Timestamp(40)), vec![peer(1)]);
            assert!(book.is_empty());
            assert_eq!(book.banned().count(), 0);
        }

        #[test]
        fn ban_is_remembered_with_reason_and_time() {
            let mut book = PeerBook::new();
            assert!(!book.is_banned(&peer(1)));
            assert_eq!(
                book.ban(peer(1), "sent a corrupt chunk 7", Timestamp(5)),
                None
            );
            assert!(book.is_banned(&peer(1)));
            assert!(!book.is_banned(&peer(2)));
            assert_eq!(
                book.ban_of(&peer(1)),
                Some(&Ban {
                    reason: "sent a corrupt chunk 7".into(),
                    since: Timestamp(5)
                })
            );
            assert_eq!(book.len(), 1);
        }

        #[test]
        fn unban_lifts_the_ban() {
            let mut book = PeerBook::new();
            book.ban(peer(1), "operator", Timestamp(1));
            assert_eq!(
                book.unban(&peer(1)).map(|b| b.reason),
                Some("operator".to_string())
            );
            assert!(!book.is_banned(&peer(1)));
            assert!(book.is_empty());
            assert_eq!(book.banned().count(), 0);
            assert_eq!(book.unban(&peer(1)), None);
        }

        #[test]
        fn banned_lists_oldest_first_and_reban_renews() {
            let mut book = PeerBook::new();
            book.ban(peer(1), "first", Timestamp(1));
            book.ban(peer(2), "second", Timestamp(2));
            book.ban(peer(1), "third", Timestamp(3));
            let listed: Vec<_> = book
                .banned()
                .map(|(p, b)| (*p, b.reason.as_str(), b.since))
                .collect();
            assert_eq!(
                listed,
                vec![
                    (peer(2), "second", Timestamp(2)),
                    (peer(1), "third", Timestamp(3))
                ]
            );
        }
    }

    mod bound {
        use super::*;

        #[test]
        fn full_book_forgets_the_oldest_ban() {
            let mut book = PeerBook::new();
            for n in 0..MAX_BANS as u32 {
                assert_eq!(book.ban(peer(n), "spam", Timestamp(u64::from(n))), None);
            }
            // Renewing peer 0 makes peer 1 the oldest.
            assert_eq!(book.ban(peer(0), "spam", Timestamp(0)), None);
            assert_eq!(book.len(), MAX_BANS);
            let evicted = book.ban(peer(MAX_BANS as u32), "spam", Timestamp(0));
            assert_eq!(evicted, Some(peer(1)));
            assert_eq!(book.len(), MAX_BANS);
            assert!(!book.is_banned(&peer(1)));
            assert!(book.is_banned(&peer(0)));
            assert!(book.is_banned(&peer(MAX_BANS as u32)));
            assert_eq!(book.banned().count(), MAX_BANS);
        }

        #[test]
        fn long_reasons_are_cut_at_a_character_boundary() {
            let mut book = PeerBook::new();
            // "é" is two bytes, so the limit falls inside a character once.
            let long = format!("x{}", "é".repeat(MAX_BAN_REASON_BYTES));
            book.ban(peer(1), long.clone(), Timestamp(0));
            let kept = &book
                .ban_of(&peer(1))
                .map(|b| b.reason.clone())
                .unwrap_or_default();
            assert_eq!(kept.len(), MAX_BAN_REASON_BYTES - 1);
            assert!(long.starts_with(kept.as_str()));
            book.ban(peer(2), "short", Timestamp(0));
            assert_eq!(
                book.ban_of(&peer(2)).map(|b| b.reason.as_str()),
                Some("short")
            );
        }
    }
}
