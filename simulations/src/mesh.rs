//! An in-memory mesh of protocol engines over simulated time.
//!
//! Each node is a real [`Node`]. The mesh plays network, disk and installer:
//! messages arrive after a fixed latency; gossip is flooded along the
//! connection graph and deduplicated by content, forwarded only after the
//! receiving node's `Accept` verdict (as gossipsub does with validation on);
//! chunk stores and loads are in-memory maps; installs, probes and rollbacks
//! take a fixed time, and a release marked bad makes probes fail or installers
//! go silent. Invariants are checked after every event: no install before the
//! node's wave is scheduled, no install after the node learned of a halt, and
//! every stored chunk matches its hash.

use crate::clock::EventQueue;
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use serde_bytes::ByteBuf;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use thiserror::Error;
use waveguard_protocol::chunk::{hash, ChunkHash};
use waveguard_protocol::metadata::trust::{StoredTrust, TrustedState};
use waveguard_protocol::node::{Input, Node, NodeConfig, NodeEvent, NodeRole, Output, Verdict};
use waveguard_protocol::rollout::HaltReason;
use waveguard_protocol::wave::{wave_of, WavePin};
use waveguard_protocol::wire::{Gossip, MetadataBundle, Response};
use waveguard_protocol::{NodeId, ReleaseId, SigningKey, Timestamp};

/// How a bad release hurts the machines that install it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadMode {
    /// Health probes fail; the node reports it and rolls back.
    ProbeFails,
    /// The machine dies right after installing and never speaks again.
    CrashAfterInstall,
}

/// Mesh parameters.
#[derive(Clone, Debug)]
pub struct MeshConfig {
    /// Seed for keys, topology and every engine's RNG.
    pub seed: u64,
    /// Endpoints besides the one seeder.
    pub endpoints: usize,
    /// Connections per node (`None`: everyone connects to everyone).
    pub degree: Option<usize>,
    /// One-way message latency, in milliseconds.
    pub latency_ms: u64,
    /// How long an install takes, in milliseconds.
    pub install_ms: u64,
    /// How long a probe takes, in milliseconds.
    pub probe_ms: u64,
    /// Whether endpoints fetch before their wave opens.
    pub prefetch: bool,
}

impl Default for MeshConfig {
    fn default() -> Self {
        MeshConfig {
            seed: 1,
            endpoints: 20,
            degree: None,
            latency_ms: 20,
            install_ms: 2_000,
            probe_ms: 500,
            prefetch: true,
        }
    }
}

/// An invariant broke; the message names the node, the time and the seed.
#[derive(Debug, Error)]
#[error("invariant violated at t={at} ms (seed {seed}): {what}")]
pub struct InvariantViolation {
    /// Simulated time.
    pub at: u64,
    /// The run's seed, to reproduce it.
    pub seed: u64,
    /// What broke.
    pub what: String,
}

/// One install the mesh carried out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstallRecord {
    /// Node index.
    pub node: usize,
    /// The release.
    pub release: ReleaseId,
    /// The node's wave for it.
    pub wave: usize,
    /// When the install started.
    pub at: Timestamp,
}

enum Event {
    Deliver {
        to: usize,
        input: Input,
    },
    Wake {
        node: usize,
    },
    /// The machine stops for good: it processes nothing more.
    Crash {
        node: usize,
    },
}

struct SimNode {
    engine: Node,
    key: SigningKey,
    node_config: NodeConfig,
    /// What the engine asked to keep durably, for restarts.
    saved_trust: Option<StoredTrust>,
    saved_lists: BTreeMap<ReleaseId, Vec<u8>>,
    saved_rollouts: BTreeMap<ReleaseId, Vec<u8>>,
    /// How often each chunk was written: a restart must not fetch a stored chunk again.
    writes: HashMap<ChunkHash, u32>,
    /// Serves chunks with a flipped byte (a hostile peer that bypasses its engine).
    liar: bool,
    store: HashMap<ChunkHash, Vec<u8>>,
    staged: BTreeMap<ReleaseId, [u8; 32]>,
    neighbours: BTreeSet<usize>,
    seen_gossip: HashSet<[u8; 32]>,
    /// Halts this node has learned of (by its own `Halted` event).
    halted: BTreeSet<ReleaseId>,
    dead: bool,
    next_wake: Option<Timestamp>,
    /// Health reports this node broadcast itself.
    health_sent: u64,
    /// Health gossip (reports and halt evidence) delivered to this node: messages, bytes.
    health_received: (u64, u64),
}

/// The mesh. Node 0 is the seeder; nodes 1..=endpoints are endpoints.
pub struct Mesh {
    config: MeshConfig,
    nodes: Vec<SimNode>,
    index: HashMap<NodeId, usize>,
    queue: EventQueue<Event>,
    now: Timestamp,
    /// Inbound request id → (requester, requester's own request id).
    routes: HashMap<u64, (usize, u64)>,
    next_route: u64,
    /// Gossip message id → (receiver, sender, payload), until the verdict.
    gossip_pending: HashMap<u64, (usize, usize, Vec<u8>)>,
    next_message: u64,
    bad: BTreeMap<ReleaseId, BadMode>,
    installs: Vec<InstallRecord>,
    /// (banning node, banned node).
    bans: Vec<(usize, usize)>,
    trace: blake3::Hasher,
    events: u64,
    /// Health reports broadcast, by the simulated minute they were sent in.
    health_by_minute: BTreeMap<u64, u64>,
}

impl Mesh {
    /// A mesh whose nodes all trust `root` (root metadata JSON), starting at `start`.
    pub fn new(config: MeshConfig, root: &[u8], start: Timestamp) -> Result<Mesh, String> {
        Mesh::with_certs(config, root, start, &|_| None)
    }

    /// Like [`Mesh::new`], giving each node the fleet certificate `certify` returns for it.
    pub fn with_certs(
        config: MeshConfig,
        root: &[u8],
        start: Timestamp,
        certify: &dyn Fn(NodeId) -> Option<Vec<u8>>,
    ) -> Result<Mesh, String> {
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        let count = config.endpoints + 1;
        let mut nodes = Vec::with_capacity(count);
        let mut index = HashMap::new();
        for i in 0..count {
            let mut seed = [0u8; 32];
            rng.fill_bytes(&mut seed);
            let key = SigningKey::from_seed(seed);
            let trust = TrustedState::new(root).map_err(|e| e.to_string())?;
            let node_config = NodeConfig {
                seed: rng.next_u64(),
                role: if i == 0 {
                    NodeRole::Seeder
                } else {
                    NodeRole::Endpoint
                },
                pin: WavePin::None,
                prefetch: config.prefetch,
                paused: false,
                cert: certify(key.node_id()),
                ..NodeConfig::default()
            };
            let engine = Node::new(key.clone(), trust, node_config.clone(), start);
            index.insert(engine.id(), i);
            nodes.push(SimNode {
                engine,
                key,
                node_config,
                saved_trust: None,
                saved_lists: BTreeMap::new(),
                saved_rollouts: BTreeMap::new(),
                writes: HashMap::new(),
                liar: false,
                store: HashMap::new(),
                staged: BTreeMap::new(),
                neighbours: BTreeSet::new(),
                seen_gossip: HashSet::new(),
                halted: BTreeSet::new(),
                dead: false,
                next_wake: None,
                health_sent: 0,
                health_received: (0, 0),
            });
        }
        let mut mesh = Mesh {
            config,
            nodes,
            index,
            queue: EventQueue::default(),
            now: start,
            routes: HashMap::new(),
            next_route: 1,
            gossip_pending: HashMap::new(),
            next_message: 1,
            bad: BTreeMap::new(),
            installs: Vec::new(),
            bans: Vec::new(),
            trace: blake3::Hasher::new(),
            events: 0,
            health_by_minute: BTreeMap::new(),
        };
        mesh.connect(&mut rng);
        Ok(mesh)
    }

    fn connect(&mut self, rng: &mut ChaCha8Rng) {
        let n = self.nodes.len();
        let mut edges = BTreeSet::new();
        match self.config.degree {
            None => {
                for a in 0..n {
                    for b in (a + 1)..n {
                        edges.insert((a, b));
                    }
                }
            }
            Some(d) => {
                // A ring keeps the graph connected; random chords bring the degree up.
                for a in 0..n {
                    edges.insert((a.min((a + 1) % n), a.max((a + 1) % n)));
                }
                for a in 0..n {
                    for _ in 0..d.saturating_sub(2) / 2 {
                        let b = (rng.next_u64() % n as u64) as usize;
                        if a != b {
                            edges.insert((a.min(b), a.max(b)));
                        }
                    }
                }
            }
        }
        for (a, b) in edges {
            if a == b {
                continue;
            }
            self.nodes[a].neighbours.insert(b);
            self.nodes[b].neighbours.insert(a);
            let (ida, idb) = (self.nodes[a].engine.id(), self.nodes[b].engine.id());
            self.queue.push(
                self.now,
                Event::Deliver {
                    to: a,
                    input: Input::PeerConnected(idb),
                },
            );
            self.queue.push(
                self.now,
                Event::Deliver {
                    to: b,
                    input: Input::PeerConnected(ida),
                },
            );
        }
    }

    /// Hands a release to the seeder: its metadata, chunk list and every chunk.
    pub fn publish(
        &mut self,
        bundle: MetadataBundle,
        release: ReleaseId,
        chunk_list: Vec<u8>,
        chunks: Vec<Vec<u8>>,
    ) {
        let mut hashes = Vec::with_capacity(chunks.len());
        for c in chunks {
            let h = hash(&c);
            self.nodes[0].store.insert(h, c);
            hashes.push(h);
        }
        let now = self.now;
        self.queue.push(
            now,
            Event::Deliver {
                to: 0,
                input: Input::Metadata(bundle),
            },
        );
        self.queue.push(
            now,
            Event::Deliver {
                to: 0,
                input: Input::ChunksHeld(hashes),
            },
        );
        self.queue.push(
            now,
            Event::Deliver {
                to: 0,
                input: Input::ChunkList {
                    release,
                    data: chunk_list,
                },
            },
        );
    }

    /// Makes every install of `release` go wrong in the given way.
    pub fn mark_bad(&mut self, release: ReleaseId, mode: BadMode) {
        self.bad.insert(release, mode);
    }

    /// Feeds an input to one node now (for example a signed directive).
    pub fn inject(&mut self, node: usize, input: Input) {
        self.queue
            .push(self.now, Event::Deliver { to: node, input });
    }

    /// Runs every event up to and including time `until`.
    pub fn run_until(&mut self, until: Timestamp) -> Result<(), InvariantViolation> {
        while let Some((at, event)) = self.queue.pop() {
            if at > until {
                self.queue.push(at, event);
                break;
            }
            self.now = self.now.max(at);
            self.process(event)?;
        }
        self.now = self.now.max(until);
        Ok(())
    }

    fn process(&mut self, event: Event) -> Result<(), InvariantViolation> {
        let (node, input) = match event {
            Event::Deliver { to, input } => (to, input),
            Event::Wake { node } => {
                if self.nodes[node].next_wake.is_some_and(|w| w <= self.now) {
                    self.nodes[node].next_wake = None;
                }
                (node, Input::Tick)
            }
            Event::Crash { node } => {
                self.nodes[node].dead = true;
                self.trace.update(b"crash");
                self.trace.update(&(node as u64).to_le_bytes());
                return Ok(());
            }
        };
        if self.nodes[node].dead {
            return Ok(());
        }
        self.events += 1;
        self.trace.update(&self.now.0.to_le_bytes());
        self.trace.update(&(node as u64).to_le_bytes());
        self.trace.update(input_kind(&input).as_bytes());
        self.nodes[node].engine.handle_input(self.now, input);
        self.drain(node)
    }

    fn later(&self, ms: u64) -> Timestamp {
        self.now.plus_millis(ms)
    }

    fn drain(&mut self, i: usize) -> Result<(), InvariantViolation> {
        loop {
            let out = self.nodes[i].engine.poll_output();
            match out {
                Output::Timeout(t) => {
                    let n = &mut self.nodes[i];
                    if n.next_wake.is_none_or(|w| t < w || w <= self.now) {
                        n.next_wake = Some(t);
                        self.queue.push(t, Event::Wake { node: i });
                    }
                    return Ok(());
                }
                other => self.carry_out(i, other)?,
            }
        }
    }

    fn carry_out(&mut self, i: usize, out: Output) -> Result<(), InvariantViolation> {
        let lat = self.config.latency_ms;
        match out {
            Output::Broadcast { data, .. } => {
                if matches!(Gossip::decode(&data), Ok(Gossip::Health(_))) {
                    self.nodes[i].health_sent += 1;
                    *self
                        .health_by_minute
                        .entry(self.now.as_millis() / 60_000)
                        .or_default() += 1;
                }
                self.nodes[i].seen_gossip.insert(hash(&data));
                self.flood(i, None, data);
            }
            Output::GossipVerdict {
                message_id,
                verdict,
            } => {
                if let Some((receiver, sender, data)) = self.gossip_pending.remove(&message_id) {
                    if verdict == Verdict::Accept {
                        self.flood(receiver, Some(sender), data);
                    }
                }
            }
            Output::SendRequest {
                to,
                request_id,
                data,
            } => {
                let Some(&j) = self.index.get(&to) else {
                    return Ok(());
                };
                let route = self.next_route;
                self.next_route += 1;
                self.routes.insert(route, (i, request_id));
                let from = self.nodes[i].engine.id();
                let at = self.later(lat);
                if self.nodes[j].dead {
                    self.queue.push(
                        self.later(waveguard_protocol::limits::REQUEST_TIMEOUT_MS),
                        Event::Deliver {
                            to: i,
                            input: Input::RequestFailed { request_id },
                        },
                    );
                } else {
                    self.queue.push(
                        at,
                        Event::Deliver {
                            to: j,
                            input: Input::Request {
                                from,
                                request_id: route,
                                data,
                            },
                        },
                    );
                }
            }
            Output::Respond {
                request_id, data, ..
            } => {
                let data = if self.nodes[i].liar {
                    corrupt_chunk(data)
                } else {
                    data
                };
                if let Some((requester, their_id)) = self.routes.remove(&request_id) {
                    let from = self.nodes[i].engine.id();
                    let at = self.later(lat);
                    self.queue.push(
                        at,
                        Event::Deliver {
                            to: requester,
                            input: Input::Response {
                                from,
                                request_id: their_id,
                                data,
                            },
                        },
                    );
                }
            }
            Output::LoadChunk { token, hash: h, .. } => {
                let data = self.nodes[i].store.get(&h).cloned();
                self.queue.push(
                    self.now,
                    Event::Deliver {
                        to: i,
                        input: Input::ChunkLoaded { token, data },
                    },
                );
            }
            Output::StoreChunk { hash: h, data } => {
                if hash(&data) != h {
                    return Err(self.violation(format!(
                        "node {i} was asked to store a chunk that does not match its hash"
                    )));
                }
                self.nodes[i].store.insert(h, data);
                *self.nodes[i].writes.entry(h).or_default() += 1;
                self.queue.push(
                    self.now,
                    Event::Deliver {
                        to: i,
                        input: Input::ChunkStored { hash: h },
                    },
                );
            }
            Output::Assemble {
                release,
                length,
                blake3: want,
                chunks,
                ..
            } => {
                let mut hasher = blake3::Hasher::new();
                let mut len = 0u64;
                let mut missing = false;
                for c in &chunks {
                    match self.nodes[i].store.get(c) {
                        Some(bytes) => {
                            hasher.update(bytes);
                            len += bytes.len() as u64;
                        }
                        None => missing = true,
                    }
                }
                let got = *hasher.finalize().as_bytes();
                let result = if missing {
                    Err("a chunk is missing from the store".to_string())
                } else if len != length || got != want {
                    Err(format!(
                        "assembled {len} bytes hashing to {}",
                        hex::encode(got)
                    ))
                } else {
                    self.nodes[i].staged.insert(release, got);
                    Ok(())
                };
                self.queue.push(
                    self.now,
                    Event::Deliver {
                        to: i,
                        input: Input::ArtifactStaged { release, result },
                    },
                );
            }
            Output::Install { release, .. } => {
                self.check_install(i, release)?;
                let at = self.later(self.config.install_ms);
                self.queue.push(
                    at,
                    Event::Deliver {
                        to: i,
                        input: Input::InstallFinished {
                            release,
                            result: Ok(()),
                        },
                    },
                );
                if self.bad.get(&release) == Some(&BadMode::CrashAfterInstall) {
                    // The install "succeeds", then the machine is gone: it reports once at most.
                    let die = self.later(self.config.install_ms + 1);
                    self.queue.push(die, Event::Crash { node: i });
                }
            }
            Output::RunProbe { release } => {
                let healthy = !self.bad.contains_key(&release);
                let at = self.later(self.config.probe_ms);
                self.queue.push(
                    at,
                    Event::Deliver {
                        to: i,
                        input: Input::ProbeFinished { release, healthy },
                    },
                );
            }
            Output::Rollback { release } => {
                let at = self.later(self.config.install_ms);
                self.queue.push(
                    at,
                    Event::Deliver {
                        to: i,
                        input: Input::RollbackFinished {
                            release,
                            result: Ok(()),
                        },
                    },
                );
            }
            Output::Ban { peer, .. } => {
                if let Some(&j) = self.index.get(&peer) {
                    self.bans.push((i, j));
                    self.disconnect(i, j);
                }
            }
            Output::StoreTrust(stored) => self.nodes[i].saved_trust = Some(stored),
            Output::StoreRollout { release, data } => {
                self.nodes[i].saved_rollouts.insert(release, data);
            }
            Output::StoreChunkList { release, data } => {
                self.nodes[i].saved_lists.insert(release, data);
            }
            Output::Event(NodeEvent::Halted { release, .. }) => {
                self.nodes[i].halted.insert(release);
            }
            Output::Event(NodeEvent::Resumed { release }) => {
                self.nodes[i].halted.remove(&release);
            }
            Output::Event(_) => {}
            _ => {}
        }
        Ok(())
    }

    fn flood(&mut self, from: usize, except: Option<usize>, data: Vec<u8>) {
        let at = self.later(self.config.latency_ms);
        let id = hash(&data);
        let sender = self.nodes[from].engine.id();
        let health = matches!(
            Gossip::decode(&data),
            Ok(Gossip::Health(_) | Gossip::Halt(_))
        );
        let targets: Vec<usize> = self.nodes[from]
            .neighbours
            .iter()
            .copied()
            .filter(|&j| Some(j) != except)
            .collect();
        for j in targets {
            if !self.nodes[j].seen_gossip.insert(id) {
                continue;
            }
            if health {
                let r = &mut self.nodes[j].health_received;
                r.0 += 1;
                r.1 += data.len() as u64;
            }
            let message_id = self.next_message;
            self.next_message += 1;
            self.gossip_pending
                .insert(message_id, (j, from, data.clone()));
            self.queue.push(
                at,
                Event::Deliver {
                    to: j,
                    input: Input::Gossip {
                        from: sender,
                        message_id,
                        data: data.clone(),
                    },
                },
            );
        }
    }

    fn check_install(&mut self, i: usize, release: ReleaseId) -> Result<(), InvariantViolation> {
        let engine = &self.nodes[i].engine;
        let Some(r) = engine.trust().release(&release) else {
            return Err(self.violation(format!(
                "node {i} installs {release}, which it does not trust"
            )));
        };
        let wave = wave_of(r.policy(), &release, &engine.id(), WavePin::None);
        if self.now < r.policy().scheduled_open(wave) {
            return Err(self.violation(format!(
                "node {i} installs {release} before wave {wave} is scheduled"
            )));
        }
        if self.nodes[i].halted.contains(&release) {
            return Err(self.violation(format!(
                "node {i} installs {release} after learning it is halted"
            )));
        }
        self.installs.push(InstallRecord {
            node: i,
            release,
            wave,
            at: self.now,
        });
        Ok(())
    }

    fn violation(&self, what: String) -> InvariantViolation {
        InvariantViolation {
            at: self.now.0,
            seed: self.config.seed,
            what,
        }
    }

    /// Makes node `i` serve every chunk with one byte flipped.
    pub fn make_liar(&mut self, i: usize) {
        self.nodes[i].liar = true;
    }

    /// Every (banning node, banned node) pair so far.
    pub fn bans(&self) -> &[(usize, usize)] {
        &self.bans
    }

    /// How many times node `i` wrote each chunk (a restart must not write a stored chunk again).
    pub fn chunk_writes(&self, i: usize) -> &HashMap<ChunkHash, u32> {
        &self.nodes[i].writes
    }

    /// Chunks node `i` holds.
    pub fn chunks_held(&self, i: usize) -> usize {
        self.nodes[i].store.len()
    }

    /// Kills node `i` (as `kill -9` would) and starts it again from what it had made durable:
    /// its trusted metadata, chunk lists and chunk store. Its connections drop and come back.
    pub fn restart(&mut self, i: usize) -> Result<(), String> {
        let now = self.now;
        let n = &mut self.nodes[i];
        let trust = match &n.saved_trust {
            Some(stored) => TrustedState::from_stored(stored).map_err(|e| e.to_string())?,
            None => return Err(format!("node {i} never stored any trust")),
        };
        n.engine = Node::new(n.key.clone(), trust, n.node_config.clone(), now);
        n.next_wake = None;
        n.seen_gossip.clear();
        let mut held: Vec<ChunkHash> = n.store.keys().copied().collect();
        held.sort();
        let lists: Vec<(ReleaseId, Vec<u8>)> =
            n.saved_lists.iter().map(|(k, v)| (*k, v.clone())).collect();
        let rollouts: Vec<(ReleaseId, Vec<u8>)> = n
            .saved_rollouts
            .iter()
            .map(|(k, v)| (*k, v.clone()))
            .collect();
        let neighbours: Vec<usize> = n.neighbours.iter().copied().collect();
        // Replies still in flight to the old process are lost with it.
        self.routes.retain(|_, (requester, _)| *requester != i);
        self.queue.push(
            now,
            Event::Deliver {
                to: i,
                input: Input::ChunksHeld(held),
            },
        );
        for (release, data) in lists {
            self.queue.push(
                now,
                Event::Deliver {
                    to: i,
                    input: Input::ChunkList { release, data },
                },
            );
        }
        for (release, data) in rollouts {
            self.queue.push(
                now,
                Event::Deliver {
                    to: i,
                    input: Input::RolloutRestored { release, data },
                },
            );
        }
        let id = self.nodes[i].engine.id();
        for j in neighbours {
            let other = self.nodes[j].engine.id();
            self.queue.push(
                now,
                Event::Deliver {
                    to: j,
                    input: Input::PeerDisconnected(id),
                },
            );
            self.queue.push(
                now,
                Event::Deliver {
                    to: j,
                    input: Input::PeerConnected(id),
                },
            );
            self.queue.push(
                now,
                Event::Deliver {
                    to: i,
                    input: Input::PeerConnected(other),
                },
            );
        }
        Ok(())
    }

    fn disconnect(&mut self, a: usize, b: usize) {
        self.nodes[a].neighbours.remove(&b);
        self.nodes[b].neighbours.remove(&a);
        let (ida, idb) = (self.nodes[a].engine.id(), self.nodes[b].engine.id());
        self.queue.push(
            self.now,
            Event::Deliver {
                to: a,
                input: Input::PeerDisconnected(idb),
            },
        );
        self.queue.push(
            self.now,
            Event::Deliver {
                to: b,
                input: Input::PeerDisconnected(ida),
            },
        );
    }

    /// Health reports node `i` broadcast itself.
    pub fn health_sent(&self, i: usize) -> u64 {
        self.nodes[i].health_sent
    }

    /// Health reports broadcast by all nodes between `from` (inclusive) and `to` (exclusive),
    /// counted by whole simulated minutes.
    pub fn health_sent_between(&self, from: Timestamp, to: Timestamp) -> u64 {
        self.health_by_minute
            .range(from.as_millis() / 60_000..to.as_millis() / 60_000)
            .map(|(_, n)| n)
            .sum()
    }

    /// Health gossip delivered to node `i` so far: (messages, bytes).
    pub fn health_received(&self, i: usize) -> (u64, u64) {
        self.nodes[i].health_received
    }

    /// Every install so far.
    pub fn installs(&self) -> &[InstallRecord] {
        &self.installs
    }

    /// The engine of node `i`.
    pub fn node(&self, i: usize) -> &Node {
        &self.nodes[i].engine
    }

    /// Number of nodes, seeder included.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the mesh has no node (never: there is always a seeder).
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// blake3 of the staged artifact of `release` on node `i`, if staged.
    pub fn staged(&self, i: usize, release: &ReleaseId) -> Option<[u8; 32]> {
        self.nodes[i].staged.get(release).copied()
    }

    /// Whether node `i` learned that `release` is halted.
    pub fn knows_halt(&self, i: usize, release: &ReleaseId) -> bool {
        self.nodes[i].halted.contains(release)
    }

    /// Current simulated time.
    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// Events processed so far.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// Hash of every event processed so far (time, node, kind): equal seeds give equal hashes.
    pub fn trace_hash(&self) -> [u8; 32] {
        *self.trace.finalize().as_bytes()
    }

    /// The halt reason node `i` holds for `release`.
    pub fn halt_reason(&self, i: usize, release: &ReleaseId) -> Option<HaltReason> {
        self.nodes[i]
            .engine
            .status()
            .releases
            .into_iter()
            .find(|r| &r.id == release)
            .and_then(|r| r.halt)
    }
}

/// Flips one byte of a chunk response; leaves every other response alone.
fn corrupt_chunk(data: Vec<u8>) -> Vec<u8> {
    match Response::decode(&data) {
        Ok(Response::Chunk(bytes)) => {
            let mut bytes = bytes.into_vec();
            if let Some(b) = bytes.first_mut() {
                *b ^= 0xff;
            }
            Response::Chunk(ByteBuf::from(bytes)).encode()
        }
        _ => data,
    }
}

fn input_kind(input: &Input) -> &'static str {
    match input {
        Input::Tick => "tick",
        Input::PeerConnected(_) => "connected",
        Input::PeerDisconnected(_) => "disconnected",
        Input::Gossip { .. } => "gossip",
        Input::Request { .. } => "request",
        Input::Response { .. } => "response",
        Input::RequestFailed { .. } => "request-failed",
        Input::ChunkStored { .. } => "chunk-stored",
        Input::ChunkStoreFailed { .. } => "chunk-store-failed",
        Input::ChunkLoaded { .. } => "chunk-loaded",
        Input::ChunksHeld(_) => "chunks-held",
        Input::Metadata(_) => "metadata",
        Input::ChunkList { .. } => "chunk-list",
        Input::ArtifactStaged { .. } => "staged",
        Input::InstallFinished { .. } => "installed",
        Input::ProbeFinished { .. } => "probed",
        Input::RollbackFinished { .. } => "rolled-back",
        Input::Directive(_) => "directive",
        _ => "other",
    }
}
