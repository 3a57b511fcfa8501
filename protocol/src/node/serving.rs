//! Answering peers: metadata, availability, chunk lists and chunks, with a
//! per-peer bound on concurrent chunk loads and re-verification of every chunk
//! read back from the store before it is sent, and an upload backlog: once
//! the configured upload rate could not send more in time, chunk requests wait
//! (stragglers first, see [`crate::fetch::waiting`]) or are answered `Busy`.

use super::{Node, NodeEvent, Output};
use crate::chunk::verify_chunk;
use crate::fetch::{UploadBacklog, Waiting, WaitingRequests};
use crate::id::{NodeId, ReleaseId};
use crate::limits::{MAX_SERVING_PER_PEER, MAX_TRACKED_PEERS};
use crate::time::Timestamp;
use crate::wire::{Request, Response};
use serde_bytes::ByteBuf;
use std::collections::BTreeMap;

/// Chunk loads in progress, by token.
pub(super) struct Serving {
    loads: BTreeMap<u64, Load>,
    per_peer: BTreeMap<NodeId, usize>,
    backlog: UploadBacklog,
    waiting: WaitingRequests,
    /// What each asker last said it holds (release, bitfield, count): the
    /// waiting order, and which waiting requests it no longer needs.
    held_by: BTreeMap<NodeId, (ReleaseId, Vec<u8>, u32)>,
}

struct Load {
    peer: NodeId,
    request_id: u64,
    release: ReleaseId,
    index: u32,
}

impl Serving {
    pub(super) fn new(upload: Option<std::num::NonZeroU64>) -> Serving {
        Serving {
            loads: BTreeMap::new(),
            per_peer: BTreeMap::new(),
            backlog: UploadBacklog::new(upload),
            waiting: WaitingRequests::new(),
            held_by: BTreeMap::new(),
        }
    }

    pub(super) fn forget_peer(&mut self, peer: &NodeId) {
        self.per_peer.remove(peer);
        self.waiting.remove_peer(peer);
        self.held_by.remove(peer);
    }

    /// Whether `peer` already has as many chunks loading or waiting as it may.
    fn busy(&self, peer: &NodeId) -> bool {
        let loading = self.per_peer.get(peer).copied().unwrap_or(0);
        loading + self.waiting.count_of(peer) >= MAX_SERVING_PER_PEER
    }

    /// Remembers how many chunks of `release` `peer` announced, for the waiting order.
    fn note_held(&mut self, peer: NodeId, release: ReleaseId, bitfield: &[u8]) {
        if self.held_by.len() >= MAX_TRACKED_PEERS && !self.held_by.contains_key(&peer) {
            return;
        }
        let held = bitfield.iter().map(|b| b.count_ones()).sum();
        self.held_by
            .insert(peer, (release, bitfield.to_vec(), held));
    }

    /// Chunks of `release` `peer` last said it holds (none known: 0, served early).
    fn held(&self, peer: &NodeId, release: &ReleaseId) -> u32 {
        match self.held_by.get(peer) {
            Some((r, _, held)) if r == release => *held,
            _ => 0,
        }
    }

    /// Whether `peer` has announced chunk `index` of `release` since asking:
    /// it got the chunk elsewhere (an endgame copy), so sending it would be waste.
    fn announced(&self, peer: &NodeId, release: &ReleaseId, index: u32) -> bool {
        match self.held_by.get(peer) {
            Some((r, bits, _)) if r == release => bits
                .get(index as usize / 8)
                .is_some_and(|byte| byte & (0x80 >> (index % 8)) != 0),
            _ => false,
        }
    }

    /// The waiting request to serve next (see [`WaitingRequests::next`]) and
    /// whether its chunk is held back, having just gone to another peer.
    fn next_to_serve(&self, now: Timestamp) -> Option<(usize, bool)> {
        let backlog = &self.backlog;
        let (i, ready) = self
            .waiting
            .next(|w| backlog.held_until(now, &w.hash, &w.peer).is_none())?;
        Some((i, !ready))
    }

    /// When the waiting queue needs attention: the next request fits (a
    /// held-back one: its hold ends or the upload empties), or one expires.
    pub(super) fn next_wakeup(&self, now: Timestamp) -> Option<Timestamp> {
        let (i, _) = self.next_to_serve(now)?;
        let w = self.waiting.get(i)?;
        let ready = match self.backlog.held_until(now, &w.hash, &w.peer) {
            None => self.backlog.room_at(now, w.length),
            Some(until) => self.backlog.empty_at(now).min(until),
        };
        Some(match self.waiting.next_expiry() {
            Some(expiry) => ready.min(expiry),
            None => ready,
        })
    }
}

impl Node {
    fn respond(&mut self, to: NodeId, request_id: u64, response: Response) {
        self.outputs.push_back(Output::Respond {
            to,
            request_id,
            data: response.encode(),
        });
    }

    pub(super) fn on_request(&mut self, from: NodeId, request_id: u64, data: &[u8]) {
        if self.book.is_banned(&from) {
            return; // no answer: the driver is disconnecting it
        }
        let request = match Request::decode(data) {
            Ok(r) => r,
            Err(e) => {
                self.event(NodeEvent::Refused {
                    from: Some(from),
                    reason: e.to_string(),
                });
                self.respond(from, request_id, Response::NotFound);
                return;
            }
        };
        let response = match request {
            Request::Metadata => {
                let bundle = self.trust.bundle();
                if bundle.timestamp.is_empty() {
                    Response::NotFound
                } else {
                    Response::Metadata(bundle)
                }
            }
            Request::Have { release, bitfield } => {
                self.serving.note_held(from, release, &bitfield);
                if !self.peer_availability(from, release, &bitfield) {
                    self.event(NodeEvent::Refused {
                        from: Some(from),
                        reason: format!("availability bitfield for {release} has the wrong length"),
                    });
                }
                match self.releases.get(&release).and_then(|t| t.stored.as_ref()) {
                    Some(stored) => Response::Have {
                        bitfield: ByteBuf::from(stored.to_bytes()),
                    },
                    None if self.releases.contains_key(&release) => Response::Have {
                        bitfield: ByteBuf::new(),
                    },
                    None => Response::NotFound,
                }
            }
            Request::Health { release, wave } => self.health_answer(&release, wave),
            Request::Halt { release } => self.halt_answer(&release),
            Request::ChunkList { release } => match self
                .releases
                .get(&release)
                .and_then(|t| t.list_bytes.clone())
            {
                Some(bytes) => Response::ChunkList(ByteBuf::from(bytes)),
                None => Response::NotFound,
            },
            Request::Chunk { release, index } => {
                let entry = self.releases.get(&release).and_then(|t| {
                    let stored = t.stored.as_ref()?;
                    let entry = t.list.as_ref()?.chunks.get(index as usize)?;
                    stored.get(index).then_some(*entry)
                });
                let now = self.now;
                match entry {
                    None => Response::NotFound,
                    Some(_) if self.serving.busy(&from) => Response::Busy,
                    Some(entry) => {
                        let length = u64::from(entry.length);
                        // A chunk sent to someone else a moment ago waits instead: the
                        // upload goes to chunks the swarm lacks while there are any.
                        if self.serving.waiting.is_empty()
                            && !self.serving.backlog.held_back(now, &entry.hash, &from)
                            && self.serving.backlog.has_room(now, length)
                        {
                            self.serving.backlog.accept(now, &entry.hash, &from, length);
                            self.load_for(from, request_id, release, index, entry.hash, length);
                            return;
                        }
                        let held = self.serving.held(&from, &release);
                        let turned_away = self.serving.waiting.push(Waiting {
                            peer: from,
                            request_id,
                            release,
                            index,
                            hash: entry.hash,
                            length,
                            since: now,
                            held,
                        });
                        if let Some(w) = turned_away {
                            self.respond(w.peer, w.request_id, Response::Busy);
                        }
                        self.serve_waiting();
                        return;
                    }
                }
            }
        };
        self.respond(from, request_id, response);
    }

    /// Asks the driver to read a chunk promised to `peer`.
    fn load_for(
        &mut self,
        peer: NodeId,
        request_id: u64,
        release: ReleaseId,
        index: u32,
        hash: crate::chunk::ChunkHash,
        length: u64,
    ) {
        let token = self.next_token;
        self.next_token += 1;
        self.serving.loads.insert(
            token,
            Load {
                peer,
                request_id,
                release,
                index,
            },
        );
        *self.serving.per_peer.entry(peer).or_default() += 1;
        self.outputs.push_back(Output::LoadChunk {
            token,
            hash,
            length: u32::try_from(length).unwrap_or(u32::MAX),
        });
    }

    /// Answers waiting requests that waited too long with `Busy`, and serves
    /// the others, stragglers first, while the upload backlog has room.
    pub(super) fn serve_waiting(&mut self) {
        let now = self.now;
        for w in self.serving.waiting.expire(now) {
            self.respond(w.peer, w.request_id, Response::Busy);
        }
        // Chunks sent to someone else a moment ago go last, and only when
        // the upload would otherwise idle: their first recipient will share
        // them. (Refusing them outright idled a fast seeder most of the time.)
        while let Some((i, held)) = self.serving.next_to_serve(now) {
            let Some(length) = self.serving.waiting.get(i).map(|w| w.length) else {
                break;
            };
            let fits = if held {
                self.serving.backlog.queued(now) == 0
            } else {
                self.serving.backlog.has_room(now, length)
            };
            if !fits {
                break;
            }
            let Some(w) = self.serving.waiting.take(i) else {
                break;
            };
            if self.serving.announced(&w.peer, &w.release, w.index) {
                // The asker has it already (fetched elsewhere meanwhile).
                self.respond(w.peer, w.request_id, Response::Busy);
                continue;
            }
            let still_held = self
                .releases
                .get(&w.release)
                .and_then(|t| t.stored.as_ref())
                .is_some_and(|stored| stored.get(w.index));
            if !still_held {
                self.respond(w.peer, w.request_id, Response::NotFound);
                continue;
            }
            self.serving.backlog.accept(now, &w.hash, &w.peer, w.length);
            self.load_for(w.peer, w.request_id, w.release, w.index, w.hash, w.length);
        }
    }

    pub(super) fn on_chunk_loaded(&mut self, token: u64, data: Option<Vec<u8>>) {
        let Some(load) = self.serving.loads.remove(&token) else {
            return;
        };
        if let Some(n) = self.serving.per_peer.get_mut(&load.peer) {
            *n = n.saturating_sub(1);
        }
        let entry = self
            .releases
            .get(&load.release)
            .and_then(|t| t.list.as_ref())
            .and_then(|l| l.chunks.get(load.index as usize))
            .copied();
        let response = match (entry, data) {
            (Some(entry), Some(bytes)) => match verify_chunk(&entry, &bytes) {
                Ok(()) => Response::Chunk(ByteBuf::from(bytes)),
                Err(_) => {
                    // Our own store is damaged: never serve it, forget it, fetch it again.
                    self.forget_chunk(entry.hash);
                    self.event(NodeEvent::StoreCorrupt { hash: entry.hash });
                    Response::NotFound
                }
            },
            (Some(entry), None) => {
                self.forget_chunk(entry.hash);
                Response::NotFound
            }
            (None, _) => Response::NotFound,
        };
        if self.peers.contains(&load.peer) {
            self.respond(load.peer, load.request_id, response);
        }
    }

    /// Drops a chunk we believed we held (damaged or missing in the store) so it is fetched again.
    pub(super) fn forget_chunk(&mut self, hash: crate::chunk::ChunkHash) {
        self.held.remove(&hash);
        for t in self.releases.values_mut() {
            let indices = t.indices_of(&hash);
            let Some(stored) = t.stored.as_mut() else {
                continue;
            };
            for i in indices {
                if stored.clear(i) {
                    if let Some(d) = t.download.as_mut() {
                        d.mark_missing(i);
                    }
                    t.have_dirty = true;
                }
            }
        }
    }
}
