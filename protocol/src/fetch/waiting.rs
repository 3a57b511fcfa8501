//! Chunk requests a rate-limited server holds until its upload has room,
//! served to the askers that hold the fewest chunks first.
//!
//! Answering `Busy` whenever the upload backlog was full left servers idle:
//! refused askers back off, and the upload sat unused until one asked again.
//! So a server keeps up to [`MAX_WAITING_REQUESTS`] requests waiting and, each
//! time its backlog has room, serves the asker holding the fewest chunks of
//! the release (by its latest availability announcement). Stragglers catch up
//! and the swarm finishes together, instead of early finishers idling while
//! others still fetch. Requests that wait [`MAX_WAIT_MS`] are answered `Busy`,
//! so an asker that keeps losing to stragglers soon fetches elsewhere.
//!
//! An asker can claim to hold less than it does to be served earlier; that
//! only reorders its own requests within the per-peer limit, never bypasses it.

use crate::chunk::ChunkHash;
use crate::id::{NodeId, ReleaseId};
use crate::limits::{MAX_WAITING_REQUESTS, MAX_WAIT_MS};
use crate::time::Timestamp;

/// One chunk request waiting for upload room.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Waiting {
    /// Who asked.
    pub peer: NodeId,
    /// The asker's request ID, to answer it.
    pub request_id: u64,
    /// The release the chunk belongs to.
    pub release: ReleaseId,
    /// The chunk's index in the release's list.
    pub index: u32,
    /// The chunk's hash.
    pub hash: ChunkHash,
    /// The chunk's length in bytes.
    pub length: u64,
    /// When the request arrived.
    pub since: Timestamp,
    /// How many chunks of the release the asker holds (its priority: fewer first).
    pub held: u32,
}

impl Waiting {
    /// Serving order: fewest chunks held, then longest waiting, then lowest request ID.
    fn key(&self) -> (u32, Timestamp, NodeId, u64) {
        (self.held, self.since, self.peer, self.request_id)
    }
}

/// The waiting requests of one server, at most [`MAX_WAITING_REQUESTS`].
#[derive(Clone, Debug, Default)]
pub struct WaitingRequests {
    entries: Vec<Waiting>,
}

impl WaitingRequests {
    /// No requests waiting.
    pub fn new() -> WaitingRequests {
        WaitingRequests::default()
    }

    /// How many requests wait.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether none wait.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// How many requests of `peer` wait.
    pub fn count_of(&self, peer: &NodeId) -> usize {
        self.entries.iter().filter(|w| &w.peer == peer).count()
    }

    /// Adds a request. When full, the request last in serving order — the new
    /// one or a waiting one — is turned away and returned, to be answered `Busy`.
    pub fn push(&mut self, request: Waiting) -> Option<Waiting> {
        if self.entries.len() < MAX_WAITING_REQUESTS {
            self.entries.push(request);
            return None;
        }
        let last = self
            .entries
            .iter()
            .enumerate()
            .max_by_key(|(_, w)| w.key())
            .map(|(i, _)| i);
        match last {
            Some(i) if self.entries[i].key() > request.key() => {
                Some(std::mem::replace(&mut self.entries[i], request))
            }
            _ => Some(request),
        }
    }

    /// The request to serve next when some are not ready (a chunk held back
    /// for a while, see [`crate::fetch::UploadBacklog::held_back`]): the first in
    /// serving order that `ready` accepts, or else the first overall, so the
    /// upload never idles while a request waits. Returns its position for
    /// [`Self::get`] and [`Self::take`], and whether it is ready.
    pub fn next(&self, mut ready: impl FnMut(&Waiting) -> bool) -> Option<(usize, bool)> {
        let mut order: Vec<usize> = (0..self.entries.len()).collect();
        order.sort_by_key(|&i| self.entries[i].key());
        let first = order.first().copied()?;
        Some(
            order
                .into_iter()
                .find(|&i| ready(&self.entries[i]))
                .map_or((first, false), |i| (i, true)),
        )
    }

    /// The request at position `i` (from [`Self::next`]).
    pub fn get(&self, i: usize) -> Option<&Waiting> {
        self.entries.get(i)
    }

    /// Removes and returns the request at position `i` (from [`Self::next`]).
    pub fn take(&mut self, i: usize) -> Option<Waiting> {
        (i < self.entries.len()).then(|| self.entries.swap_remove(i))
    }

    /// Removes and returns the requests that have waited [`MAX_WAIT_MS`] at `now`.
    pub fn expire(&mut self, now: Timestamp) -> Vec<Waiting> {
        let (expired, kept) = std::mem::take(&mut self.entries)
            .into_iter()
            .partition(|w| w.since.plus_millis(MAX_WAIT_MS) <= now);
        self.entries = kept;
        expired
    }

    /// When the oldest request will have waited [`MAX_WAIT_MS`].
    pub fn next_expiry(&self) -> Option<Timestamp> {
        self.entries
            .iter()
            .map(|w| w.since.plus_millis(MAX_WAIT_MS))
            .min()
    }

    /// Drops every request of `peer` (it disconnected: nobody to answer).
    pub fn remove_peer(&mut self, peer: &NodeId) {
        self.entries.retain(|w| &w.peer != peer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(peer: u8, held: u32, since: u64) -> Waiting {
        Waiting {
            peer: NodeId([peer; 32]),
            request_id: u64::from(peer),
            release: ReleaseId([0; 32]),
            index: 0,
            hash: [peer; 32],
            length: 1000,
            since: Timestamp(since),
            held,
        }
    }

    #[test]
    fn the_asker_holding_least_is_served_first_then_the_oldest() {
        let mut q = WaitingRequests::new();
        assert!(q.push(request(1, 50, 0)).is_none());
        assert!(q.push(request(2, 10, 5)).is_none());
        assert!(q.push(request(3, 10, 1)).is_none());
        let order: Vec<u8> = std::iter::from_fn(|| {
            let (i, _) = q.next(|_| true)?;
            q.take(i).map(|w| w.peer.0[0])
        })
        .collect();
        assert_eq!(order, vec![3, 2, 1]);
    }

    #[test]
    fn when_full_the_asker_holding_most_is_turned_away() {
        let mut q = WaitingRequests::new();
        for i in 0..MAX_WAITING_REQUESTS {
            assert!(q.push(request(i as u8, 100 + i as u32, 0)).is_none());
        }
        // A straggler displaces the most advanced asker...
        let out = q.push(request(200, 1, 0)).expect("someone is turned away");
        assert_eq!(out.held, 100 + MAX_WAITING_REQUESTS as u32 - 1);
        assert_eq!(q.len(), MAX_WAITING_REQUESTS);
        // ...but an asker further along than everyone waiting is itself turned away.
        let out = q
            .push(request(201, 10_000, 0))
            .expect("someone is turned away");
        assert_eq!(out.peer, NodeId([201; 32]));
        let first = q.next(|_| true).and_then(|(i, _)| q.get(i));
        assert_eq!(first.map(|w| w.held), Some(1));
    }

    #[test]
    fn next_prefers_ready_requests_and_falls_back_to_the_first() {
        let mut q = WaitingRequests::new();
        assert_eq!(q.next(|_| true), None);
        q.push(request(1, 5, 0));
        q.push(request(2, 7, 0));
        q.push(request(3, 9, 0));
        // Peer 1 comes first but is not ready: the next ready one in order is served.
        let (i, ready) = q.next(|w| w.peer != NodeId([1; 32])).expect("one waits");
        assert!(ready);
        assert_eq!(q.get(i).map(|w| w.peer), Some(NodeId([2; 32])));
        assert_eq!(q.take(i).map(|w| w.peer), Some(NodeId([2; 32])));
        // Nobody ready: the first in order still goes, so the upload does not idle.
        let (i, ready) = q.next(|_| false).expect("two wait");
        assert!(!ready);
        assert_eq!(q.take(i).map(|w| w.peer), Some(NodeId([1; 32])));
        assert_eq!(q.take(5), None);
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn requests_expire_after_the_longest_wait() {
        let mut q = WaitingRequests::new();
        q.push(request(1, 0, 1_000));
        q.push(request(2, 0, 1_500));
        assert_eq!(q.next_expiry(), Some(Timestamp(1_000 + MAX_WAIT_MS)));
        assert!(q.expire(Timestamp(1_000 + MAX_WAIT_MS - 1)).is_empty());
        let gone = q.expire(Timestamp(1_000 + MAX_WAIT_MS));
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].peer, NodeId([1; 32]));
        assert_eq!(q.count_of(&NodeId([2; 32])), 1);
        q.remove_peer(&NodeId([2; 32]));
        assert!(q.is_empty());
        assert_eq!(q.next_expiry(), None);
    }
}
