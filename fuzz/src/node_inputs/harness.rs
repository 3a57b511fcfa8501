//! The driver `node_inputs` runs a node with: it turns [`Step`]s into
//! inputs, remembers what the node asked for, drains and checks every output.

use super::canned::{self, fixture};
use super::steps::{Setup, Step};
use super::{Summary, MAX_DRAIN, MAX_REMEMBERED};
use crate::fixtures::{node_key, peer_key, world, Content, World, NOW, PEERS};
use crate::script::advance_ms;
use std::collections::BTreeMap;
use waveguard_protocol::chunk::{self, ChunkHash};
use waveguard_protocol::fetch::Bitfield;
use waveguard_protocol::node::{Input, Node, NodeConfig, NodeEvent, NodeRole, Output};
use waveguard_protocol::wave::WavePin;
use waveguard_protocol::wire::{Gossip, Request, Response, SignedHealth};
use waveguard_protocol::{NodeId, ReleaseId, Timestamp};

/// A request the node sent and nobody has answered yet.
struct OpenRequest {
    to: NodeId,
    id: u64,
    request: Request,
}

/// The driver: the node, the clock, and what the node is waiting for.
pub(super) struct Harness {
    world: &'static World,
    table: &'static [Vec<u8>],
    sync: &'static [SignedHealth],
    node: Node,
    me: NodeId,
    now: Timestamp,
    requests: Vec<OpenRequest>,
    stores: Vec<ChunkHash>,
    loads: Vec<(u64, ChunkHash)>,
    /// Inbound requests not yet answered: id to the peer that asked.
    inbound: BTreeMap<u64, NodeId>,
    next_inbound: u64,
    next_message: u64,
    pub(super) summary: Summary,
    /// Print every step and output to stderr (see [`trace`]).
    trace: bool,
}

/// Appends to a bounded list, forgetting the oldest entry when full.
fn remember<T>(list: &mut Vec<T>, item: T) {
    if list.len() >= MAX_REMEMBERED {
        list.remove(0);
    }
    list.push(item);
}

/// Takes the `sel`-th (modulo) entry, oldest first, if any.
fn take<T>(list: &mut Vec<T>, sel: u8) -> Option<T> {
    if list.is_empty() {
        None
    } else {
        let i = usize::from(sel) % list.len();
        Some(list.remove(i))
    }
}

/// Takes the `sel`-th (modulo) entry, newest first, if any: the node forgets
/// requests after a timeout, so recent ones are the ones worth answering.
fn take_newest<T>(list: &mut Vec<T>, sel: u8) -> Option<T> {
    let n = list.len();
    if n == 0 {
        None
    } else {
        Some(list.remove(n - 1 - usize::from(sel) % n))
    }
}

fn chunk_by_hash<'a>(content: &'a Content, hash: &ChunkHash) -> Option<&'a Vec<u8>> {
    content
        .list
        .chunks
        .iter()
        .position(|c| &c.hash == hash)
        .and_then(|i| content.chunks.get(i))
}

impl Harness {
    pub(super) fn new(setup: Setup, trace: bool) -> Harness {
        let world = world(setup.operator);
        let pin = match setup.pin {
            1 => WavePin::Canary,
            2 => WavePin::Last,
            _ => WavePin::None,
        };
        let pin_index = usize::from(setup.pin % 3);
        let config = NodeConfig {
            seed: 1,
            role: if setup.seeder {
                NodeRole::Seeder
            } else {
                NodeRole::Endpoint
            },
            pin,
            prefetch: setup.prefetch,
            paused: setup.paused,
            cert: if setup.no_cert {
                None
            } else {
                world.node_certs[pin_index].clone()
            },
            ..NodeConfig::default()
        };
        let trust = if setup.with_release {
            world.trust_a.clone()
        } else {
            world.trust_root.clone()
        };
        let key = node_key();
        let me = key.node_id();
        let mut h = Harness {
            world,
            table: &fixture(setup.operator).table,
            sync: &fixture(setup.operator).sync,
            node: Node::new(key, trust, config, NOW),
            me,
            now: NOW,
            requests: Vec::new(),
            stores: Vec::new(),
            loads: Vec::new(),
            inbound: BTreeMap::new(),
            next_inbound: 1,
            next_message: 1,
            summary: Summary::default(),
            trace,
        };
        // Outputs queued at construction (release discovery) are drained like any others.
        h.drain(None);
        h
    }

    /// One of the fixed peers. Messages never come from the node's own ID:
    /// transports authenticate peers, so a driver cannot receive that.
    fn peer(&self, sel: u8) -> NodeId {
        peer_key(usize::from(sel)).node_id()
    }

    /// A fixed peer or, for the last selector value, the node itself (a
    /// driver may well report connecting to itself, e.g. through a relay).
    fn peer_or_me(&self, sel: u8) -> NodeId {
        match usize::from(sel) % (PEERS + 1) {
            PEERS => self.me,
            i => peer_key(i).node_id(),
        }
    }

    fn release(&self, sel: u8) -> ReleaseId {
        match sel % 3 {
            0 => self.world.release_a.id,
            1 => self.world.release_b.id,
            _ => ReleaseId([sel; 32]),
        }
    }

    fn hash(&mut self, sel: u8, open: bool) -> ChunkHash {
        let chunks = &self.world.content_a.list.chunks;
        if sel & 0x80 == 0 && open {
            if let Some(h) = take(&mut self.stores, sel) {
                return h;
            }
        }
        if sel & 0x40 != 0 {
            return chunks[usize::from(sel) % chunks.len()].hash;
        }
        [sel; 32]
    }

    /// What an honest peer answers to `request`.
    fn honest_answer(&self, request: &Request) -> Response {
        let w = self.world;
        let c = &w.content_a;
        match request {
            Request::Metadata => Response::Metadata(w.bundle_ab.clone()),
            Request::Have { release, .. } if *release == w.release_a.id => Response::Have {
                bitfield: Bitfield::full(c.list.chunks.len() as u32).to_bytes().into(),
            },
            Request::ChunkList { release } if *release == w.release_a.id => {
                Response::ChunkList(c.list_bytes.clone().into())
            }
            Request::Chunk { release, index } if *release == w.release_a.id => c
                .chunks
                .get(*index as usize)
                .map_or(Response::NotFound, |b| Response::Chunk(b.clone().into())),
            Request::Health { release, wave: 0 } if *release == w.release_a.id => {
                Response::Health(self.sync.to_vec())
            }
            _ => Response::NotFound,
        }
    }

    pub(super) fn step(&mut self, step: &Step) {
        let table = self.table;
        let world = self.world;
        let c = &world.content_a;
        let (input, gossip_id) = match step {
            Step::Advance(code) => {
                self.now = self.now.plus_millis(advance_ms(*code));
                (Input::Tick, None)
            }
            Step::Connect(p) => (Input::PeerConnected(self.peer_or_me(*p)), None),
            Step::Disconnect(p) => (Input::PeerDisconnected(self.peer_or_me(*p)), None),
            Step::Gossip { from, data } => {
                let i = usize::from(*from) % PEERS;
                let data = data.resolve(table, || {
                    table[usize::from(canned::gossip_healthy(i))].clone()
                });
                let id = self.next_message;
                self.next_message += 1;
                let input = Input::Gossip {
                    from: self.peer(*from),
                    message_id: id,
                    data,
                };
                (input, Some(id))
            }
            Step::Request { from, data } => {
                let id = self.next_inbound;
                self.next_inbound += 1;
                let from = self.peer(*from);
                self.inbound.insert(id, from);
                let data = data.resolve(table, || {
                    table[usize::from(canned::REQUEST_CHUNK_0)].clone()
                });
                (
                    Input::Request {
                        from,
                        request_id: id,
                        data,
                    },
                    None,
                )
            }
            Step::Respond { open, data } => {
                let Some(req) = take_newest(&mut self.requests, *open) else {
                    return;
                };
                let data = data.resolve(table, || self.honest_answer(&req.request).encode());
                (
                    Input::Response {
                        from: req.to,
                        request_id: req.id,
                        data,
                    },
                    None,
                )
            }
            Step::RespondStray {
                from,
                request_id,
                data,
            } => {
                let data = data.resolve(table, || Response::NotFound.encode());
                (
                    Input::Response {
                        from: self.peer(*from),
                        request_id: u64::from(*request_id),
                        data,
                    },
                    None,
                )
            }
            Step::Fail { open } => {
                let Some(req) = take_newest(&mut self.requests, *open) else {
                    return;
                };
                (Input::RequestFailed { request_id: req.id }, None)
            }
            Step::Stored(sel) => (
                Input::ChunkStored {
                    hash: self.hash(*sel, true),
                },
                None,
            ),
            Step::StoreFailed(sel) => (
                Input::ChunkStoreFailed {
                    hash: self.hash(*sel, true),
                    reason: "disk full".into(),
                },
                None,
            ),
            Step::Loaded { which, data } => {
                let (token, hash) = if which & 0x80 == 0 {
                    take(&mut self.loads, *which).unwrap_or((u64::from(*which), [0; 32]))
                } else {
                    (u64::from(*which & 0x7f), [0; 32])
                };
                let honest = || chunk_by_hash(c, &hash).cloned().unwrap_or_default();
                let data = data.as_ref().map(|d| d.resolve(table, honest));
                (Input::ChunkLoaded { token, data }, None)
            }
            Step::Held(mask) => {
                let mut hashes: Vec<ChunkHash> = c
                    .list
                    .chunks
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| *i < 7 && mask & (1 << i) != 0)
                    .map(|(_, e)| e.hash)
                    .collect();
                if mask & 0x80 != 0 {
                    hashes.push([*mask; 32]);
                }
                (Input::ChunksHeld(hashes), None)
            }
            Step::Metadata(b) => {
                let bundle = match b % 3 {
                    0 => self.world.bundle_a.clone(),
                    1 => self.world.bundle_ab.clone(),
                    _ => Default::default(),
                };
                (Input::Metadata(bundle), None)
            }
            Step::ChunkList { release, data } => (
                Input::ChunkList {
                    release: self.release(*release),
                    data: data.resolve(table, || c.list_bytes.clone()),
                },
                None,
            ),
            Step::Staged { release, ok } => (
                Input::ArtifactStaged {
                    release: self.release(*release),
                    result: result(*ok),
                },
                None,
            ),
            Step::Installed { release, ok } => (
                Input::InstallFinished {
                    release: self.release(*release),
                    result: result(*ok),
                },
                None,
            ),
            Step::Probed { release, healthy } => (
                Input::ProbeFinished {
                    release: self.release(*release),
                    healthy: *healthy,
                },
                None,
            ),
            Step::RolledBack { release, ok } => (
                Input::RollbackFinished {
                    release: self.release(*release),
                    result: result(*ok),
                },
                None,
            ),
            Step::Directive(d) => (
                Input::Directive(
                    d.resolve(table, || table[usize::from(canned::DIRECTIVE_HALT)].clone()),
                ),
                None,
            ),
        };
        if self.trace {
            eprintln!("t={} {}", self.now.as_millis(), short(&format!("{step:?}")));
        }
        self.node.handle_input(self.now, input);
        self.drain(gossip_id);
    }

    /// Drains outputs until the timeout, checking each (see the module docs).
    fn drain(&mut self, gossip_id: Option<u64>) {
        let mut verdicts = 0usize;
        for _ in 0..MAX_DRAIN {
            let out = self.node.poll_output();
            if self.trace {
                eprintln!("    -> {}", short(&format!("{out:?}")));
            }
            let kind = output_name(&out);
            *self.summary.outputs.entry(kind).or_default() += 1;
            match out {
                Output::Timeout(t) => {
                    assert!(t >= self.now, "timeout {t:?} is before now {:?}", self.now);
                    let expected = usize::from(gossip_id.is_some());
                    assert_eq!(verdicts, expected, "wrong number of gossip verdicts");
                    return;
                }
                Output::GossipVerdict { message_id, .. } => {
                    assert_eq!(Some(message_id), gossip_id, "verdict for another message");
                    verdicts += 1;
                }
                Output::Broadcast { topic, data } => {
                    let msg = Gossip::decode(&data).unwrap_or_else(|e| {
                        panic!("the node broadcast a message peers refuse: {e}")
                    });
                    assert_eq!(msg.topic(), topic, "broadcast on the wrong topic");
                }
                Output::SendRequest {
                    to,
                    request_id,
                    data,
                } => {
                    assert_ne!(to, self.me, "request to itself");
                    let request = Request::decode(&data)
                        .unwrap_or_else(|e| panic!("the node sent a request peers refuse: {e}"));
                    assert!(
                        self.requests.iter().all(|r| r.id != request_id),
                        "request id {request_id} reused while open"
                    );
                    remember(
                        &mut self.requests,
                        OpenRequest {
                            to,
                            id: request_id,
                            request,
                        },
                    );
                }
                Output::Respond {
                    to,
                    request_id,
                    data,
                } => {
                    if let Err(e) = Response::decode(&data) {
                        panic!("the node sent a response peers refuse: {e}");
                    }
                    let asked = self.inbound.remove(&request_id);
                    assert_eq!(
                        asked,
                        Some(to),
                        "response to request {request_id} nobody open asked"
                    );
                }
                Output::StoreChunk { hash, data } => {
                    assert_eq!(
                        chunk::hash(&data),
                        hash,
                        "asked to store a chunk under the wrong hash"
                    );
                    remember(&mut self.stores, hash);
                }
                Output::LoadChunk { token, hash, .. } => remember(&mut self.loads, (token, hash)),
                Output::Assemble {
                    release, chunks, ..
                } => {
                    assert_eq!(
                        release, self.world.release_a.id,
                        "assembled an unknown release"
                    );
                    let expected: Vec<ChunkHash> = self
                        .world
                        .content_a
                        .list
                        .chunks
                        .iter()
                        .map(|c| c.hash)
                        .collect();
                    assert_eq!(chunks, expected, "assembled from the wrong chunks");
                }
                Output::Install { release, .. } => {
                    let known = [self.world.release_a.id, self.world.release_b.id];
                    assert!(known.contains(&release), "installing an untrusted release");
                }
                Output::Event(e) => {
                    *self.summary.events.entry(event_name(&e)).or_default() += 1;
                }
                _ => {}
            }
        }
        panic!("the node produced more than {MAX_DRAIN} outputs for one input");
    }
}

fn result(ok: bool) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err("failed".into())
    }
}

fn output_name(o: &Output) -> &'static str {
    match o {
        Output::Broadcast { .. } => "broadcast",
        Output::GossipVerdict { .. } => "verdict",
        Output::SendRequest { .. } => "send_request",
        Output::Respond { .. } => "respond",
        Output::LoadChunk { .. } => "load_chunk",
        Output::StoreChunk { .. } => "store_chunk",
        Output::StoreChunkList { .. } => "store_chunk_list",
        Output::StoreTrust(_) => "store_trust",
        Output::Assemble { .. } => "assemble",
        Output::Install { .. } => "install",
        Output::RunProbe { .. } => "run_probe",
        Output::Rollback { .. } => "rollback",
        Output::Ban { .. } => "ban",
        Output::Event(_) => "event",
        Output::Timeout(_) => "timeout",
        _ => "other",
    }
}

fn event_name(e: &NodeEvent) -> &'static str {
    match e {
        NodeEvent::ReleaseDiscovered { .. } => "release_discovered",
        NodeEvent::StateChanged { .. } => "state_changed",
        NodeEvent::Halted { .. } => "halted",
        NodeEvent::PeerBanned { .. } => "peer_banned",
        NodeEvent::StoreCorrupt { .. } => "store_corrupt",
        NodeEvent::Refused { .. } => "refused",
        _ => "other",
    }
}

/// At most 160 characters of a debug line.
fn short(s: &str) -> String {
    if s.len() <= 160 {
        return s.to_string();
    }
    let cut: String = s.chars().take(160).collect();
    format!("{cut}...")
}
