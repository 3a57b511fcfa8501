//! Redialing the bootstrap peers after their connections are lost.
//!
//! Bootstrap peers are dialed once at start; mDNS finds only the local link,
//! and Kademlia dials only peers it newly learns of (its own periodic
//! bootstrap runs every five minutes). So a node whose connections across a
//! link dropped during a long cut never dialed across it again after the
//! link came back: a ship cut off for an hour stayed apart from the fleet
//! (tests/tests/netns_partition.rs). [`Redial`] is the schedule that closes
//! the gap: while the node has fewer peers than it wants, each configured
//! bootstrap peer that is not connected is dialed again, with exponential
//! backoff from [`REDIAL_MIN`] up to [`REDIAL_MAX`] (half of it random
//! jitter, so a fleet does not redial a restarted seeder in step), and the
//! backoff starts over once the peer connects.
//!
//! An address that does not name its peer (no `/p2p/<PeerId>` suffix) is
//! redialed the same way, but only while no peer at all is connected: with
//! no ID there is no telling whether its peer is already here.
//!
//! Bounded: at most
//! [`super::bounds::MAX_BOOTSTRAP_ADDRS`] of them, each at most once per
//! [`REDIAL_MIN`] and, after repeated failures, once per [`REDIAL_MAX`]. A
//! node with its wanted number of peers redials nothing. Only connections:
//! what the node then says to the peer is the engine's business.

use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};
use std::time::{Duration, Instant};

/// The first redial after a bootstrap peer's connection is lost (or after the
/// dial at start): soon, since most drops are short.
pub const REDIAL_MIN: Duration = Duration::from_secs(1);

/// The longest wait between two redials of one unreachable bootstrap peer: a
/// link back after a long cut is found within this (plus the handshake),
/// while an unreachable peer costs one failed dial per address at most every
/// half of it (a SYN or a QUIC initial, and only while below the target).
pub const REDIAL_MAX: Duration = Duration::from_secs(15);

/// How often the schedule is looked at: the granularity of the waits above.
pub const REDIAL_TICK: Duration = Duration::from_secs(1);

/// One bootstrap peer's redial state.
#[derive(Debug)]
struct Entry {
    /// The peer the address names, if it does.
    peer: Option<PeerId>,
    addr: Multiaddr,
    /// Redials since the peer was last connected.
    failures: u32,
    /// Not before this.
    next: Instant,
}

/// When to dial which bootstrap peer again.
#[derive(Debug, Default)]
pub struct Redial {
    entries: Vec<Entry>,
}

impl Redial {
    /// The schedule for these bootstrap addresses, each first due
    /// [`REDIAL_MIN`] after `now`, when the dial at start has had its chance.
    pub fn new(bootstrap: &[Multiaddr], now: Instant) -> Self {
        let entries = bootstrap
            .iter()
            .map(|addr| Entry {
                peer: match addr.iter().last() {
                    Some(Protocol::P2p(peer)) => Some(peer),
                    _ => None,
                },
                addr: addr.clone(),
                failures: 0,
                next: now + REDIAL_MIN,
            })
            .collect();
        Self { entries }
    }

    /// A connection to `peer` came up: its backoff starts over.
    pub fn connected(&mut self, peer: &PeerId) {
        for e in self.entries.iter_mut().filter(|e| e.peer == Some(*peer)) {
            e.failures = 0;
        }
    }

    /// The last connection to `peer` closed: dial it again soon.
    pub fn disconnected(&mut self, peer: &PeerId, now: Instant) {
        for e in self.entries.iter_mut().filter(|e| e.peer == Some(*peer)) {
            e.failures = 0;
            e.next = now + REDIAL_MIN;
        }
    }

    /// The bootstrap addresses to dial now, with the peer each names.
    /// `wanted` is whether the node has fewer peers than it wants;
    /// `skip(Some(peer))` whether that peer is connected or banned, and
    /// `skip(None)` whether any peer is connected (the address is then not
    /// dialed, and its backoff starts over); `jitter` gives a random `u32`
    /// for each dial's wait.
    pub fn due(
        &mut self,
        now: Instant,
        wanted: bool,
        skip: impl Fn(Option<&PeerId>) -> bool,
        mut jitter: impl FnMut() -> u32,
    ) -> Vec<(Option<PeerId>, Multiaddr)> {
        let mut dial = Vec::new();
        for e in self.entries.iter_mut().filter(|e| e.next <= now) {
            if !wanted || skip(e.peer.as_ref()) {
                e.failures = 0;
                e.next = now + REDIAL_MIN;
                continue;
            }
            e.failures = e.failures.saturating_add(1);
            e.next = now + backoff(e.failures, jitter());
            dial.push((e.peer, e.addr.clone()));
        }
        dial
    }
}

/// The wait after the `failures`-th redial in a row: `REDIAL_MIN` doubled
/// each time up to `REDIAL_MAX`, of which the upper half is scaled by
/// `jitter / u32::MAX`.
pub fn backoff(failures: u32, jitter: u32) -> Duration {
    let full = REDIAL_MIN
        .saturating_mul(1u32 << failures.saturating_sub(1).min(16))
        .min(REDIAL_MAX);
    let half = full / 2;
    half + half.mul_f64(f64::from(jitter) / f64::from(u32::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(peer: PeerId) -> Multiaddr {
        format!("/ip4/10.0.0.1/tcp/4610/p2p/{peer}")
            .parse()
            .unwrap()
    }

    #[test]
    fn the_backoff_doubles_up_to_the_cap_with_half_of_it_jitter() {
        assert_eq!(backoff(1, 0), REDIAL_MIN / 2);
        assert_eq!(backoff(1, u32::MAX), REDIAL_MIN);
        assert_eq!(backoff(2, u32::MAX), REDIAL_MIN * 2);
        assert_eq!(backoff(3, u32::MAX), REDIAL_MIN * 4);
        assert_eq!(backoff(20, u32::MAX), REDIAL_MAX);
        assert_eq!(backoff(u32::MAX, 0), REDIAL_MAX / 2);
        for f in 1..40 {
            assert!(backoff(f, 7) <= backoff(f + 1, 7), "{f}");
        }
    }

    #[test]
    fn an_address_without_a_peer_id_is_redialed_only_while_no_peer_is_connected() {
        let bare: Multiaddr = "/ip4/10.0.0.1/tcp/4610".parse().unwrap();
        let t0 = Instant::now();
        let mut r = Redial::new(std::slice::from_ref(&bare), t0);
        let connected = |p: Option<&PeerId>| p.is_none();
        for s in 0..100 {
            let now = t0 + Duration::from_secs(s);
            assert!(r.due(now, true, connected, || 0).is_empty());
        }
        let alone = t0 + Duration::from_secs(101);
        assert_eq!(r.due(alone, true, |_| false, || 0), vec![(None, bare)]);
    }

    #[test]
    fn an_unreachable_peer_is_redialed_with_backoff_and_at_once_after_it_connects_and_drops() {
        let peer = PeerId::random();
        let t0 = Instant::now();
        let mut r = Redial::new(&[addr(peer)], t0);
        assert!(
            r.due(t0, true, |_| false, || 0).is_empty(),
            "the start dial first"
        );
        // Unreachable: count the dials over ten minutes, one tick a second.
        let mut dials = Vec::new();
        for s in 0..600 {
            let now = t0 + Duration::from_secs(s);
            if !r.due(now, true, |_| false, || u32::MAX).is_empty() {
                dials.push(s);
            }
        }
        // 1, 2, 4, 8 and then 15 s apart.
        assert_eq!(&dials[..6], &[1, 2, 4, 8, 16, 31]);
        assert!(dials.windows(2).all(|w| w[1] - w[0] <= 15), "{dials:?}");
        assert!(dials.len() <= 5 + 600 / 15, "{} dials", dials.len());
        // It connects; while connected nothing is dialed.
        r.connected(&peer);
        let t1 = t0 + Duration::from_secs(600);
        for s in 0..100 {
            assert!(r
                .due(t1 + Duration::from_secs(s), true, |_| true, || 0)
                .is_empty());
        }
        // The connection drops (a cut): the first redial comes a second later.
        let t2 = t1 + Duration::from_secs(100);
        r.disconnected(&peer, t2);
        assert!(r.due(t2, true, |_| false, || 0).is_empty());
        assert_eq!(
            r.due(t2 + REDIAL_MIN, true, |_| false, || 0),
            vec![(Some(peer), addr(peer))]
        );
    }

    #[test]
    fn a_node_with_enough_peers_redials_nothing() {
        let peer = PeerId::random();
        let t0 = Instant::now();
        let mut r = Redial::new(&[addr(peer)], t0);
        for s in 0..100 {
            let now = t0 + Duration::from_secs(s);
            assert!(r.due(now, false, |_| false, || 0).is_empty());
        }
        // Below the target again: dialed on the next tick.
        let now = t0 + Duration::from_secs(101);
        assert_eq!(r.due(now, true, |_| false, || 0).len(), 1);
    }
}
