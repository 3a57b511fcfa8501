//! Answering peers: metadata, availability, chunk lists and chunks, with a
//! per-peer bound on concurrent chunk loads and re-verification of every chunk
//! read back from the store before it is sent, and an upload backlog that
//! answers `Busy` once the configured upload rate could not send what was
//! promised before the askers' deadlines.

use super::{Node, NodeEvent, Output};
use crate::chunk::verify_chunk;
use crate::fetch::UploadBacklog;
use crate::id::{NodeId, ReleaseId};
use crate::limits::MAX_SERVING_PER_PEER;
use crate::wire::{Request, Response};
use serde_bytes::ByteBuf;
use std::collections::BTreeMap;

/// Chunk loads in progress, by token.
pub(super) struct Serving {
    loads: BTreeMap<u64, Load>,
    per_peer: BTreeMap<NodeId, usize>,
    backlog: UploadBacklog,
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
        }
    }

    pub(super) fn forget_peer(&mut self, peer: &NodeId) {
        self.per_peer.remove(peer);
    }

    fn busy(&self, peer: &NodeId) -> bool {
        self.per_peer.get(peer).copied().unwrap_or(0) >= MAX_SERVING_PER_PEER
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
                match entry {
                    None => Response::NotFound,
                    Some(_) if self.serving.busy(&from) => Response::Busy,
                    Some(entry)
                        if !self.serving.backlog.try_accept(
                            self.now,
                            &entry.hash,
                            &from,
                            u64::from(entry.length),
                        ) =>
                    {
                        Response::Busy
                    }
                    Some(entry) => {
                        let token = self.next_token;
                        self.next_token += 1;
                        self.serving.loads.insert(
                            token,
                            Load {
                                peer: from,
                                request_id,
                                release,
                                index,
                            },
                        );
                        *self.serving.per_peer.entry(from).or_default() += 1;
                        self.outputs.push_back(Output::LoadChunk {
                            token,
                            hash: entry.hash,
                            length: entry.length,
                        });
                        return;
                    }
                }
            }
        };
        self.respond(from, request_id, response);
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
