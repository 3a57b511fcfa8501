//! Behaviour of the download scheduler (`waveguard_protocol::fetch`) through its public API.

use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use waveguard_protocol::chunk::{ChunkEntry, ChunkList};
use waveguard_protocol::fetch::{Bitfield, Download, PeerBook, Standing, BENCH_MS};
use waveguard_protocol::limits::{
    BUSY_BACKOFF_MS, ENDGAME_AFTER_MS, MAX_REQUESTS_PER_PEER, MAX_REQUESTS_TOTAL,
    MAX_TRACKED_PEERS, REQUEST_TIMEOUT_MS,
};
use waveguard_protocol::{NodeId, Timestamp};

// ---- builders ---------------------------------------------------------------

fn node(n: u16) -> NodeId {
    let mut id = [0u8; 32];
    id[..2].copy_from_slice(&n.to_be_bytes());
    id[31] = 1;
    NodeId(id)
}

fn bits(n: u32, set: impl IntoIterator<Item = u32>) -> Bitfield {
    let mut b = Bitfield::new(n);
    for i in set {
        b.set(i);
    }
    b
}

fn all_but(n: u32, except: &[u32]) -> Bitfield {
    bits(n, (0..n).filter(|i| !except.contains(i)))
}

const T0: Timestamp = Timestamp(1_900_000_000_000);

fn nobody(_: &NodeId) -> bool {
    false
}

/// A download of `chunks` chunks with some peers' availability already known.
struct DownloadBuilder {
    chunks: u32,
    held: Vec<u32>,
    seed: u64,
    peers: Vec<(NodeId, Bitfield)>,
}

impl DownloadBuilder {
    fn new(chunks: u32) -> Self {
        DownloadBuilder {
            chunks,
            held: Vec::new(),
            seed: 7,
            peers: Vec::new(),
        }
    }
    fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
    fn held(mut self, held: &[u32]) -> Self {
        self.held = held.to_vec();
        self
    }
    fn peer(mut self, id: NodeId, have: Bitfield) -> Self {
        self.peers.push((id, have));
        self
    }
    fn full_peers(mut self, ids: impl IntoIterator<Item = NodeId>) -> Self {
        for id in ids {
            self.peers.push((id, Bitfield::full(self.chunks)));
        }
        self
    }
    fn build(self) -> Download {
        let list = ChunkList {
            chunks: vec![
                ChunkEntry {
                    length: 1024,
                    hash: [0; 32]
                };
                self.chunks as usize
            ],
        };
        let mut d = Download::new(&list, bits(self.chunks, self.held), self.seed);
        for (id, have) in self.peers {
            assert!(d.set_peer_have(id, have));
        }
        d
    }
}

fn per_peer(reqs: &[(NodeId, u32)]) -> BTreeMap<NodeId, usize> {
    let mut out = BTreeMap::new();
    for (p, _) in reqs {
        *out.entry(*p).or_insert(0) += 1;
    }
    out
}

// ---- rarest first -----------------------------------------------------------

#[test]
fn rarest_chunk_is_requested_first() {
    let (a, b, c) = (node(1), node(2), node(3));
    // Chunk 7: only a. Chunk 3: a and b. Everything else: all three.
    let mut d = DownloadBuilder::new(10)
        .peer(a, Bitfield::full(10))
        .peer(b, all_but(10, &[7]))
        .peer(c, all_but(10, &[7, 3]))
        .build();
    let reqs = d.next_requests(T0, &nobody);
    assert_eq!(reqs.first(), Some(&(a, 7)));
    assert_eq!(reqs.get(1).map(|r| r.1), Some(3));
    assert_ne!(reqs.get(1).map(|r| r.0), Some(c), "c does not have chunk 3");
}

#[test]
fn banned_peers_neither_count_for_rarity_nor_are_asked() {
    let (b, c, d_) = (node(2), node(3), node(4));
    let banned: Vec<NodeId> = (10..13).map(node).collect();
    // Chunk 0: b, c, d (rarity 3). Chunk 1: b and three banned peers (rarity 1).
    // Chunk 2: b and c (rarity 2). Counting the banned, chunk 1 would come last.
    let mut builder = DownloadBuilder::new(3)
        .peer(b, Bitfield::full(3))
        .peer(c, bits(3, [0, 2]))
        .peer(d_, bits(3, [0]));
    for id in &banned {
        builder = builder.peer(*id, bits(3, [1]));
    }
    let mut d = builder.build();
    let is_banned = |p: &NodeId| banned.contains(p);
    let reqs = d.next_requests(T0, &is_banned);
    let order: Vec<u32> = reqs.iter().map(|r| r.1).collect();
    // First requests in rarity order; endgame copies (for chunks c or d also have) follow.
    assert_eq!(order[..3], [1, 2, 0]);
    assert!(reqs.iter().all(|(p, _)| !banned.contains(p)));
}

#[test]
fn ties_follow_the_seed() {
    let choice = |seed| {
        let mut d = DownloadBuilder::new(64)
            .seed(seed)
            .full_peers([node(1)])
            .build();
        d.next_requests(T0, &nobody)
    };
    assert_eq!(choice(42), choice(42), "same seed, same choice");
    assert_eq!(choice(42).len(), MAX_REQUESTS_PER_PEER);
    let distinct: BTreeSet<Vec<(NodeId, u32)>> = (0..16).map(choice).collect();
    assert!(
        distinct.len() > 8,
        "ties should vary with the seed: {distinct:?}"
    );
}

#[test]
fn peer_ties_spread_over_equally_loaded_peers() {
    // Eight chunks, two equal peers: each gets four, none gets five.
    let mut d = DownloadBuilder::new(8)
        .full_peers([node(1), node(2)])
        .build();
    let reqs = d.next_requests(T0, &nobody);
    assert_eq!(reqs.len(), 8);
    assert!(per_peer(&reqs).values().all(|&n| n == 4));
}

// ---- limits -----------------------------------------------------------------

#[test]
fn per_peer_and_total_limits_hold() {
    let mut d = DownloadBuilder::new(500)
        .full_peers((0..40).map(node))
        .build();
    let reqs = d.next_requests(T0, &nobody);
    assert_eq!(reqs.len(), MAX_REQUESTS_TOTAL);
    assert!(per_peer(&reqs)
        .values()
        .all(|&n| n <= MAX_REQUESTS_PER_PEER));
    let chunks: BTreeSet<u32> = reqs.iter().map(|r| r.1).collect();
    assert_eq!(chunks.len(), reqs.len(), "no duplicates before the endgame");
    assert!(d.next_requests(T0, &nobody).is_empty(), "budget is spent");
    assert_eq!(d.in_flight(), MAX_REQUESTS_TOTAL);

    let mut d = DownloadBuilder::new(500)
        .full_peers([node(1), node(2)])
        .build();
    assert_eq!(
        d.next_requests(T0, &nobody).len(),
        2 * MAX_REQUESTS_PER_PEER
    );
    assert!(d.next_requests(T0, &nobody).is_empty());
}

#[test]
fn at_most_max_tracked_peers_are_tracked() {
    let mut d = DownloadBuilder::new(4).build();
    for n in 0..MAX_TRACKED_PEERS as u16 {
        assert!(d.set_peer_have(node(n), Bitfield::full(4)));
    }
    let extra = node(MAX_TRACKED_PEERS as u16);
    assert!(!d.set_peer_have(extra, Bitfield::full(4)));
    assert!(!d.peer_got(extra, 0));
    assert_eq!(d.tracked_peers(), MAX_TRACKED_PEERS);
    // A tracked peer can still update, and leaving makes room.
    assert!(d.peer_got(node(0), 1));
    d.remove_peer(&node(0));
    assert!(d.set_peer_have(extra, Bitfield::full(4)));
}

// ---- timeouts ---------------------------------------------------------------

#[test]
fn timed_out_chunk_is_offered_again() {
    let (a, b) = (node(1), node(2));
    let mut d = DownloadBuilder::new(1).full_peers([a, b]).build();
    let first = d.next_requests(T0, &nobody);
    assert_eq!(first.len(), 1, "one request at first");
    let slow = first[0].0;
    // The only chunk is asked of the other peer too once the first request is old.
    let copy_at = T0.plus_millis(ENDGAME_AFTER_MS);
    assert_eq!(d.next_deadline(), Some(copy_at));
    assert!(d
        .next_requests(Timestamp(copy_at.0 - 1), &nobody)
        .is_empty());
    let copy = d.next_requests(copy_at, &nobody);
    assert_eq!(copy.len(), 1, "the endgame copy");
    assert_ne!(copy[0].0, slow);
    let deadline = T0.plus_millis(REQUEST_TIMEOUT_MS);
    assert_eq!(d.next_deadline(), Some(deadline));
    assert!(d.poll_timeouts(Timestamp(deadline.0 - 1)).is_empty());
    let expired: BTreeSet<_> = d.poll_timeouts(deadline).into_iter().collect();
    assert_eq!(expired, first.iter().copied().collect());
    assert_eq!(d.in_flight(), 1);
    assert!(!d.is_in_flight(&slow, 0));
    assert_eq!(d.peer_standing(&slow), Some(Standing::Slow { strikes: 1 }));
    let again = d.next_requests(deadline, &nobody);
    assert!(again.iter().any(|r| r.1 == 0));
}

#[test]
fn a_peer_that_keeps_timing_out_gets_fewer_slots_then_is_benched() {
    let (slow, good) = (node(1), node(2));
    let mut d = DownloadBuilder::new(40).full_peers([slow, good]).build();
    let mut now = T0;
    // One request to `slow` at a time expires; `good` answers at once.
    let mut slots_seen = Vec::new();
    while !matches!(d.peer_standing(&slow), Some(Standing::Benched { .. })) {
        let reqs = d.next_requests(now, &nobody);
        slots_seen.push(reqs.iter().filter(|r| r.0 == slow).count());
        for (p, i) in reqs {
            if p == good {
                d.on_chunk_verified(&p, i);
            } else {
                // Answer all but one, which is left to time out.
                if d.peer_in_flight(&slow) > 1 {
                    d.on_request_failed(&p, i);
                }
            }
        }
        now = now.plus_millis(REQUEST_TIMEOUT_MS);
        d.poll_timeouts(now);
        assert!(slots_seen.len() < 10, "never benched: {slots_seen:?}");
    }
    // 4 slots, then 2 after one strike, then 1; the third strike benches.
    assert_eq!(slots_seen, vec![MAX_REQUESTS_PER_PEER, 2, 1]);
    let until = now.plus_millis(BENCH_MS);
    assert_eq!(d.peer_standing(&slow), Some(Standing::Benched { until }));
    let reqs = d.next_requests(now, &nobody);
    assert!(!reqs.is_empty() && reqs.iter().all(|r| r.0 == good));
    for (p, i) in reqs {
        d.on_chunk_verified(&p, i);
    }
    // Once the bench is over, one request on probation; a delivery forgives a strike.
    let reqs = d.next_requests(until, &nobody);
    let probation: Vec<_> = reqs.iter().filter(|r| r.0 == slow).copied().collect();
    assert_eq!(probation.len(), 1);
    d.on_chunk_verified(&slow, probation[0].1);
    assert_eq!(d.peer_standing(&slow), Some(Standing::Slow { strikes: 1 }));
}

#[test]
fn a_batch_of_timeouts_benches_at_once() {
    let (slow, good) = (node(1), node(2));
    let mut d = DownloadBuilder::new(40).full_peers([slow, good]).build();
    let reqs = d.next_requests(T0, &nobody);
    assert_eq!(
        reqs.iter().filter(|r| r.0 == slow).count(),
        MAX_REQUESTS_PER_PEER
    );
    for (p, i) in reqs.into_iter().filter(|r| r.0 == good) {
        d.on_chunk_verified(&p, i);
    }
    let now = T0.plus_millis(REQUEST_TIMEOUT_MS);
    assert_eq!(d.poll_timeouts(now).len(), MAX_REQUESTS_PER_PEER);
    let until = now.plus_millis(BENCH_MS);
    assert_eq!(d.peer_standing(&slow), Some(Standing::Benched { until }));
    assert_eq!(d.next_deadline(), Some(until));
    // A finished download has nothing to wake up for, benches or not.
    for i in 0..40 {
        d.on_chunk_verified(&good, i);
    }
    assert_eq!(d.next_deadline(), None);
}

// ---- endgame ----------------------------------------------------------------

#[test]
fn endgame_duplicates_only_the_last_chunks() {
    let (a, b) = (node(1), node(2));
    let mut d = DownloadBuilder::new(3).full_peers([a, b]).build();
    // Three first requests, then, once they are old, each chunk once more from the other peer.
    assert_eq!(d.next_requests(T0, &nobody).len(), 3);
    assert_eq!(d.next_deadline(), Some(T0.plus_millis(ENDGAME_AFTER_MS)));
    assert_eq!(
        d.next_requests(T0.plus_millis(ENDGAME_AFTER_MS), &nobody)
            .len(),
        3
    );
    for i in 0..3 {
        assert!(d.is_in_flight(&a, i) && d.is_in_flight(&b, i), "chunk {i}");
    }
    assert_eq!(d.on_chunk_verified(&a, 1), vec![(b, 1)]);
    assert!(!d.is_in_flight(&b, 1));
    assert_eq!(d.in_flight(), 4);
}

#[test]
fn no_duplicates_while_some_missing_chunk_is_not_requested() {
    let (a, b) = (node(1), node(2));
    let mut d = DownloadBuilder::new(20).full_peers([a, b]).build();
    let mut now = T0;
    let mut seen_endgame = false;
    for _ in 0..100 {
        if d.is_complete() {
            break;
        }
        let before: BTreeSet<u32> = d.outstanding().map(|r| r.1).collect();
        let reqs = d.next_requests(now, &nobody);
        let mut asked = before.clone();
        let mut duplicated = false;
        for (_, i) in &reqs {
            duplicated |= !asked.insert(*i);
        }
        if duplicated {
            seen_endgame = true;
            let missing = (0..20).filter(|i| !d.held().get(*i));
            assert!(
                missing.clone().all(|i| asked.contains(&i)),
                "duplicate issued while a missing chunk was unrequested"
            );
            assert!(d.missing() as usize <= 2 * MAX_REQUESTS_PER_PEER);
        }
        // Answer one chunk per step, so the end comes gradually.
        let first = d.outstanding().next();
        if let Some((p, i)) = first {
            d.on_chunk_verified(&p, i);
        }
        now = now.plus_millis(ENDGAME_AFTER_MS);
    }
    assert!(d.is_complete());
    assert!(seen_endgame);
}

#[test]
fn no_endgame_while_a_missing_chunk_has_no_source() {
    let (a, b) = (node(1), node(2));
    // Nobody has chunk 2, so the end is not near: no duplicates despite free slots.
    let mut d = DownloadBuilder::new(3)
        .peer(a, bits(3, [0, 1]))
        .peer(b, bits(3, [0, 1]))
        .build();
    let reqs = d.next_requests(T0, &nobody);
    assert_eq!(
        reqs.iter().map(|r| r.1).collect::<BTreeSet<_>>(),
        BTreeSet::from([0, 1])
    );
    assert_eq!(reqs.len(), 2);
    // Once chunk 2 is in flight too, the others get second copies when old enough.
    assert!(d.peer_got(a, 2));
    let reqs = d.next_requests(T0, &nobody);
    assert_eq!(reqs, vec![(a, 2)]);
    let reqs = d.next_requests(T0.plus_millis(ENDGAME_AFTER_MS), &nobody);
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    for i in [0, 1] {
        assert!(d.is_in_flight(&a, i) && d.is_in_flight(&b, i), "chunk {i}");
    }
}

// ---- answers ----------------------------------------------------------------

#[test]
fn corrupt_chunk_drops_the_peer_and_its_requests() {
    let (bad, good) = (node(1), node(2));
    let mut d = DownloadBuilder::new(16)
        .peer(bad, Bitfield::full(16))
        .peer(good, bits(16, [0]))
        .build();
    let mut book = PeerBook::new();
    let reqs = d.next_requests(T0, &|p: &NodeId| book.is_banned(p));
    let to_bad: Vec<_> = reqs.iter().filter(|r| r.0 == bad).copied().collect();
    assert_eq!(to_bad.len(), MAX_REQUESTS_PER_PEER);
    let (_, broken) = to_bad[0];
    let mut cancelled = d.on_chunk_corrupt(&bad, broken);
    book.ban(bad, format!("sent a corrupt chunk {broken}"), T0);
    cancelled.sort();
    let mut expected: Vec<_> = to_bad[1..].to_vec();
    expected.sort();
    assert_eq!(cancelled, expected);
    assert!(d.outstanding().all(|r| r.0 != bad));
    assert!(d.peer_have(&bad).is_none());
    // Even if it announces again, it is banned and never asked.
    assert!(d.set_peer_have(bad, Bitfield::full(16)));
    let later = d.next_requests(T0.plus_millis(1), &|p: &NodeId| book.is_banned(p));
    assert!(later.iter().all(|r| r.0 != bad));
}

#[test]
fn a_busy_peer_rests_then_comes_back_with_half_its_slots_and_no_strike() {
    let (a, b) = (node(1), node(2));
    let mut d = DownloadBuilder::new(16).full_peers([a]).build();
    let first = d.next_requests(T0, &nobody);
    assert_eq!(first.len(), MAX_REQUESTS_PER_PEER);
    let (_, index) = first[0];
    d.on_busy(&a, index, T0);
    assert_eq!(
        d.peer_standing(&a),
        Some(Standing::Resting {
            until: T0.plus_millis(BUSY_BACKOFF_MS)
        })
    );
    // Still believed to have the chunk: another peer may be asked, `a` is not while resting.
    assert!(d.peer_have(&a).is_some_and(|h| h.get(index)));
    assert!(d.next_requests(T0, &nobody).is_empty());
    assert_eq!(d.next_deadline(), Some(T0.plus_millis(BUSY_BACKOFF_MS)));
    assert!(d.set_peer_have(b, Bitfield::full(16)));
    let to_b = d.next_requests(T0, &nobody);
    assert!(to_b.iter().all(|(p, _)| *p == b));
    assert!(
        to_b.contains(&(b, index)),
        "the busy chunk goes elsewhere: {to_b:?}"
    );
    // After the rest: half the slots, nothing struck.
    let later = T0.plus_millis(BUSY_BACKOFF_MS);
    assert!(d.poll_timeouts(later).is_empty());
    d.next_requests(later, &nobody);
    assert_eq!(d.peer_standing(&a), Some(Standing::Slow { strikes: 1 }));
    assert_eq!(d.peer_in_flight(&a), MAX_REQUESTS_PER_PEER - 1);
}

#[test]
fn busy_for_a_request_never_made_changes_nothing() {
    let a = node(1);
    let mut d = DownloadBuilder::new(4).full_peers([a]).build();
    d.on_busy(&a, 2, T0);
    assert_eq!(d.peer_standing(&a), Some(Standing::Good));
}

#[test]
fn the_byte_window_bounds_the_bytes_in_flight_but_allows_one_request() {
    let peers: Vec<NodeId> = (1..=8).map(node).collect();
    // 1 KiB chunks, a 3.5 KiB window: three requests.
    let mut d = DownloadBuilder::new(64).full_peers(peers.clone()).build();
    d.set_byte_window(3 * 1024 + 512);
    assert_eq!(d.next_requests(T0, &nobody).len(), 3);
    assert_eq!(d.in_flight_bytes(), 3 * 1024);
    assert!(d.next_requests(T0, &nobody).is_empty());
    // A window smaller than one chunk still lets one through.
    let mut d = DownloadBuilder::new(64).full_peers(peers).build();
    d.set_byte_window(10);
    let one = d.next_requests(T0, &nobody);
    assert_eq!(one.len(), 1);
    // Its answer frees the window for the next.
    d.on_chunk_verified(&one[0].0, one[0].1);
    assert_eq!(d.in_flight_bytes(), 0);
    assert_eq!(d.next_requests(T0, &nobody).len(), 1);
}

#[test]
fn failed_request_marks_the_chunk_missing_at_that_peer() {
    let (a, b) = (node(1), node(2));
    let mut d = DownloadBuilder::new(1).peer(a, Bitfield::full(1)).build();
    assert_eq!(d.next_requests(T0, &nobody), vec![(a, 0)]);
    d.on_request_failed(&a, 0);
    assert_eq!(d.in_flight(), 0);
    assert!(!d.peer_have(&a).is_some_and(|h| h.get(0)));
    assert!(d.next_requests(T0, &nobody).is_empty(), "nobody has it now");
    assert!(d.set_peer_have(b, Bitfield::full(1)));
    assert_eq!(d.next_requests(T0, &nobody), vec![(b, 0)]);
    assert!(d.peer_got(a, 0));
    assert!(
        d.next_requests(T0, &nobody).is_empty(),
        "too early for a copy"
    );
    let later = T0.plus_millis(ENDGAME_AFTER_MS);
    assert_eq!(
        d.next_requests(later, &nobody),
        vec![(a, 0)],
        "endgame copy"
    );
}

#[test]
fn unsolicited_and_duplicate_answers_change_nothing_they_should_not() {
    let (a, stranger) = (node(1), node(9));
    let mut d = DownloadBuilder::new(4).peer(a, Bitfield::full(4)).build();
    let reqs = d.next_requests(T0, &nobody);
    assert_eq!(reqs.len(), 4);
    // Answers for requests never made, or for chunks that do not exist.
    d.on_request_failed(&stranger, 0);
    assert!(d.on_chunk_corrupt(&stranger, 1).is_empty());
    assert!(d.on_chunk_verified(&a, 99).is_empty());
    d.on_request_failed(&a, 99);
    assert!(d.poll_timeouts(T0).is_empty());
    assert_eq!(d.in_flight(), 4);
    // A duplicate verified answer is harmless.
    d.on_chunk_verified(&a, 2);
    d.on_chunk_verified(&a, 2);
    assert_eq!(d.missing(), 3);
    assert_eq!(d.in_flight(), 3);
    assert!(!d.is_in_flight(&a, 2));
    assert_eq!(d.peer_in_flight(&a), 3);
}

#[test]
fn complete_download_issues_nothing() {
    let mut d = DownloadBuilder::new(5)
        .held(&[0, 1, 2, 3, 4])
        .full_peers([node(1)])
        .build();
    assert!(d.is_complete());
    assert!(d.next_requests(T0, &nobody).is_empty());
    assert_eq!(d.next_deadline(), None);

    let mut d = DownloadBuilder::new(5)
        .held(&[1, 3])
        .full_peers([node(1)])
        .build();
    assert_eq!(d.missing(), 3);
    let reqs = d.next_requests(T0, &nobody);
    assert_eq!(
        reqs.iter().map(|r| r.1).collect::<BTreeSet<_>>(),
        BTreeSet::from([0, 2, 4])
    );
    for (p, i) in reqs {
        d.on_chunk_verified(&p, i);
    }
    assert!(d.is_complete() && d.held().is_full());
    assert!(d.next_requests(T0.plus_millis(1), &nobody).is_empty());
    assert_eq!(d.in_flight(), 0);
    assert_eq!(d.next_deadline(), None);
}

// ---- whole downloads under chaos --------------------------------------------

/// What a simulated peer really does when asked.
#[derive(Clone, Copy, Debug)]
enum Behaviour {
    /// Sends only chunks it has; ignores the rest (they time out).
    Silent,
    /// Sends chunks it has; answers NotFound for the rest.
    Refusing,
    /// Sends garbage.
    Corrupting,
    /// Always answers Busy.
    Busy,
}

#[derive(Clone, Debug)]
struct SimPeer {
    id: NodeId,
    claims: Bitfield,
    truly: Bitfield,
    behaviour: Behaviour,
}

/// An event of the chaotic phase.
#[derive(Clone, Debug)]
enum Event {
    Tick(u64),
    Answer(usize),
    Fail(usize),
    Announce(usize, u32),
}

fn sim_peer(n: u32) -> impl Strategy<Value = (Vec<bool>, Vec<bool>, u8)> {
    (
        proptest::collection::vec(any::<bool>(), n as usize),
        proptest::collection::vec(any::<bool>(), n as usize),
        0u8..4,
    )
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        (0u64..2 * REQUEST_TIMEOUT_MS).prop_map(Event::Tick),
        any::<usize>().prop_map(Event::Answer),
        any::<usize>().prop_map(Event::Fail),
        (any::<usize>(), any::<u32>()).prop_map(|(p, i)| Event::Announce(p, i)),
    ]
}

/// Drives a download and checks the scheduler's promises after every call.
struct Sim {
    d: Download,
    peers: Vec<SimPeer>,
    honest: NodeId,
    book: PeerBook,
    /// What we have told the download each peer has.
    known: BTreeMap<NodeId, Bitfield>,
    /// Outstanding requests, tracked from what the API returned.
    out: BTreeSet<(NodeId, u32)>,
    now: Timestamp,
}

impl Sim {
    fn request(&mut self) -> Result<(), TestCaseError> {
        let book = &self.book;
        let reqs = self
            .d
            .next_requests(self.now, &|p: &NodeId| book.is_banned(p));
        for (p, i) in &reqs {
            prop_assert!(!self.d.held().get(*i), "requested held chunk {}", i);
            prop_assert!(!self.book.is_banned(p), "requested from a banned peer");
            prop_assert!(
                self.known.get(p).is_some_and(|k| k.get(*i)),
                "requested chunk {} from a peer that lacks it",
                i
            );
            prop_assert!(self.out.insert((*p, *i)), "same request twice");
        }
        prop_assert!(self.out.len() <= MAX_REQUESTS_TOTAL);
        prop_assert!(per_peer(&self.out.iter().copied().collect::<Vec<_>>())
            .values()
            .all(|&n| n <= MAX_REQUESTS_PER_PEER));
        for i in self.out.iter().map(|r| r.1) {
            prop_assert!(self.out.iter().filter(|r| r.1 == i).count() <= 2);
        }
        let actual: BTreeSet<_> = self.d.outstanding().collect();
        prop_assert_eq!(&actual, &self.out);
        prop_assert_eq!(self.d.in_flight(), self.out.len());
        // Every test chunk is 1 KiB.
        prop_assert_eq!(self.d.in_flight_bytes(), 1024 * self.out.len() as u64);
        Ok(())
    }

    fn tick(&mut self, dt: u64) {
        self.now = self.now.plus_millis(dt);
        for r in self.d.poll_timeouts(self.now) {
            self.out.remove(&r);
        }
    }

    fn peer(&self, id: &NodeId) -> Option<&SimPeer> {
        self.peers.iter().find(|p| p.id == *id)
    }

    /// The peer of request `(id, index)` answers as it really would.
    fn answer(&mut self, id: NodeId, index: u32) {
        let Some(p) = self.peer(&id).cloned() else {
            return;
        };
        self.out.remove(&(id, index));
        match p.behaviour {
            Behaviour::Corrupting => {
                for r in self.d.on_chunk_corrupt(&id, index) {
                    self.out.remove(&r);
                }
                self.book.ban(id, "sent a corrupt chunk", self.now);
                self.known.remove(&id);
            }
            Behaviour::Busy => self.d.on_busy(&id, index, self.now),
            _ if p.truly.get(index) => {
                for r in self.d.on_chunk_verified(&id, index) {
                    self.out.remove(&r);
                }
                if let Some(k) = self.known.get_mut(&id) {
                    k.set(index);
                }
            }
            _ => self.fail(id, index),
        }
    }

    fn fail(&mut self, id: NodeId, index: u32) {
        self.out.remove(&(id, index));
        self.d.on_request_failed(&id, index);
        if let Some(k) = self.known.get_mut(&id) {
            k.clear(index);
        }
    }

    fn announce(&mut self, id: NodeId, have: Bitfield) {
        if self.d.set_peer_have(id, have.clone()) {
            self.known.insert(id, have);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Random availability and random verified/failed/timeout events keep every
    /// limit, and afterwards one honest complete peer finishes the download in
    /// a bounded number of rounds.
    #[test]
    fn chaos_keeps_promises_and_an_honest_peer_finishes(
        n in 1u32..40,
        seed: u64,
        sims in proptest::collection::vec(sim_peer(40), 0..6),
        events in proptest::collection::vec(event(), 0..150),
    ) {
        let honest = node(1000);
        let mut peers = vec![SimPeer {
            id: honest,
            claims: Bitfield::full(n),
            truly: Bitfield::full(n),
            behaviour: Behaviour::Silent,
        }];
        for (k, (claims, truly, b)) in sims.into_iter().enumerate() {
            let pick = |v: &[bool]| bits(n, (0..n).filter(|&i| v[i as usize]));
            peers.push(SimPeer {
                id: node(k as u16),
                claims: pick(&claims),
                truly: pick(&truly),
                behaviour: [Behaviour::Silent, Behaviour::Refusing, Behaviour::Corrupting, Behaviour::Busy][b as usize],
            });
        }
        let mut sim = Sim {
            d: DownloadBuilder::new(n).seed(seed).build(),
            peers: peers.clone(),
            honest,
            book: PeerBook::new(),
            known: BTreeMap::new(),
            out: BTreeSet::new(),
            now: T0,
        };
        for p in &peers {
            sim.announce(p.id, p.claims.clone());
        }

        // Chaos: anyone may fail or time out, answers arrive in any order.
        for e in events {
            match e {
                Event::Tick(dt) => sim.tick(dt),
                Event::Answer(k) | Event::Fail(k) => {
                    // The k-th outstanding request (if any) gets its answer.
                    let Some(&(p, i)) = sim.out.iter().nth(k % sim.out.len().max(1)) else {
                        continue;
                    };
                    if matches!(e, Event::Answer(_)) {
                        sim.answer(p, i);
                    } else {
                        sim.fail(p, i);
                    }
                }
                Event::Announce(k, i) => {
                    let p = peers[k % peers.len()].id;
                    let i = i % n;
                    if sim.d.peer_got(p, i) {
                        sim.known.entry(p).or_insert_with(|| Bitfield::new(n)).set(i);
                    }
                }
            }
            sim.request()?;
        }

        // Recovery: the honest peer re-announces and answers everything at
        // once; the others behave as they are. Each round lasts one timeout.
        sim.announce(sim.honest, Bitfield::full(n));
        let bound = u64::from(n) + 3 * peers.len() as u64 + BENCH_MS / REQUEST_TIMEOUT_MS + 4;
        let mut rounds = 0;
        while !sim.d.is_complete() {
            prop_assert!(rounds < bound, "not complete after {} rounds, {} missing", rounds, sim.d.missing());
            rounds += 1;
            // A round wakes once when outstanding requests become old enough for
            // an endgame copy, and once when they time out, as a driver honouring
            // `next_deadline` would.
            for step in [ENDGAME_AFTER_MS, REQUEST_TIMEOUT_MS - ENDGAME_AFTER_MS] {
                sim.tick(step);
                sim.request()?;
                let asked: Vec<_> = sim.out.iter().copied().collect();
                for (p, i) in asked {
                    let behaviour = sim.peer(&p).map(|s| s.behaviour);
                    match behaviour {
                        _ if p == sim.honest => sim.answer(p, i),
                        Some(Behaviour::Refusing | Behaviour::Corrupting | Behaviour::Busy) => {
                            sim.answer(p, i)
                        }
                        _ => {} // Silent peers let every request time out.
                    }
                }
            }
        }
        prop_assert!(sim.d.held().is_full());
        prop_assert!(sim.d.next_requests(sim.now, &|_: &NodeId| false).is_empty());
    }
}
