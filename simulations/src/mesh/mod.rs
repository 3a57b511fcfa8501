//! A fleet of protocol engines over a simulated network and simulated time.
//!
//! Each node is a real [`Node`]. The mesh plays network, disk and installer,
//! and makes no decision of its own: messages travel the paths of a
//! [`Topology`] (latency and loss per path, partitions and churn taking links
//! down), bulk transfers share bandwidth at flow level ([`Flows`]), gossip
//! follows the gossipsub mesh model ([`GossipRouter`]) and is forwarded only
//! after the receiving engine's `Accept` verdict; chunk stores are sets over
//! one shared content table; installs, probes and rollbacks take fixed times,
//! and a bad release makes probes fail or installers go silent on a share of
//! the machines. Invariants are checked after every event: no install before
//! the node's wave is scheduled, no install after the node learned of a halt,
//! and every stored chunk matches its hash.

mod carry;
mod faults;
pub mod stats;
mod transport;

use crate::clock::EventQueue;
use crate::network::flows::{FlowId, Flows, ResourceId};
use crate::network::gossip::{GossipConfig, GossipRouter, Send as GossipSend};
use crate::network::topology::Topology;
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use stats::{Kind, Stats};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use thiserror::Error;
use waveguard_protocol::chunk::ChunkHash;
use waveguard_protocol::health::checked::CheckedSignatures;
use waveguard_protocol::metadata::trust::{StoredTrust, TrustedState};
use waveguard_protocol::node::{Input, Node, NodeConfig, NodeRole, Output};
use waveguard_protocol::rollout::HaltReason;
use waveguard_protocol::wire::MetadataBundle;
use waveguard_protocol::{NodeId, ReleaseId, SigningKey, Timestamp};

pub use crate::scenario::{BadMode, HaveLie, HealthLie};

/// Mesh parameters.
#[derive(Clone, Debug)]
pub struct MeshConfig {
    /// Seed for keys, topology, losses and every engine's RNG.
    pub seed: u64,
    /// Endpoints besides the one seeder (ignored when `topology` is given).
    pub endpoints: usize,
    /// Connections per node (`None`: everyone connects to everyone); ignored with `topology`.
    pub degree: Option<usize>,
    /// One-way message latency, in milliseconds; ignored with `topology`.
    pub latency_ms: u64,
    /// How long an install takes, in milliseconds.
    pub install_ms: u64,
    /// How long a probe takes, in milliseconds.
    pub probe_ms: u64,
    /// Whether endpoints fetch before their wave opens.
    pub prefetch: bool,
    /// Sites, capacities and links; `None`: one site, unlimited capacity, `latency_ms` everywhere.
    pub topology: Option<Topology>,
    /// The gossipsub mesh model's parameters.
    pub gossip: GossipConfig,
    /// Capacities in `topology` are 1/`byte_scale` of the real ones and chunks 1/`byte_scale` of
    /// their real size; other messages keep their size and are charged accordingly.
    pub byte_scale: u32,
    /// Site-aware fetching: `Some(k)` tells every engine which nodes share its
    /// site (as an agent learns it from its LAN) and sets `k` WAN fetchers per
    /// site; `None` tells engines nothing of sites.
    pub wan_fetchers: Option<u32>,
    /// Engines share the outcome of health-report signature checks
    /// (`CheckedSignatures`): each report's signature is checked once per run,
    /// not once per engine. Verdicts, and so the trace, are the same either way.
    pub share_signature_checks: bool,
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
            topology: None,
            gossip: GossipConfig::default(),
            byte_scale: 1,
            wan_fetchers: None,
            share_signature_checks: true,
        }
    }
}

/// An invariant broke; the message names the node, the time and the seed.
#[derive(Debug, Error)]
#[error("invariant violated {at} ms after the start (seed {seed}): {what}")]
pub struct InvariantViolation {
    /// Simulated milliseconds since the mesh started.
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

/// What a transfer carries to its receiver's engine.
enum Payload {
    /// An input as the sender produced it.
    Input(Input),
    /// A chunk response, whose bytes are shared with every other response in flight
    /// that carries the same chunk (they are byte for byte the same): thousands of
    /// transfers in flight would otherwise each hold a copy, most of the simulator's
    /// memory (docs/benchmarks.md). The engine gets its own copy on delivery.
    Chunk {
        from: NodeId,
        request_id: u64,
        data: Arc<[u8]>,
    },
}

impl Payload {
    fn into_input(self) -> Input {
        match self {
            Payload::Input(input) => input,
            Payload::Chunk {
                from,
                request_id,
                data,
            } => Input::Response {
                from,
                request_id,
                data: data.to_vec(),
            },
        }
    }
}

/// A message or transfer in flight, delivered when its flow completes.
struct Transfer {
    from: usize,
    to: usize,
    input: Payload,
    /// Who must hear `RequestFailed` if the transfer is lost: (node, its request id).
    on_loss: Option<(usize, u64)>,
}

/// Gossipsub control traffic between two nodes.
enum Control {
    IHave(Vec<u32>),
    IWant(Vec<u32>),
    Graft,
    Prune,
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
    FlowDone {
        flow: FlowId,
        version: u32,
    },
    Gossip {
        to: usize,
        from: usize,
        msg: u32,
    },
    Control {
        to: usize,
        from: usize,
        control: Control,
    },
    Heartbeat {
        node: usize,
    },
    Leave {
        node: usize,
    },
    Join {
        node: usize,
    },
    Cut {
        site: usize,
    },
    Heal {
        site: usize,
    },
    Import {
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
    serves_corrupt: bool,
    /// Lies about health.
    lie: Option<HealthLie>,
    /// Claims every chunk of every release it announces (an availability liar).
    have_lie: Option<HaveLie>,
    /// How far this node's clock runs ahead of simulated time, in ms (behind when negative).
    clock_offset_ms: i64,
    /// Chunks held; their bytes live in the mesh's shared content table.
    store: HashSet<ChunkHash>,
    /// Chunk loads asked for and not yet answered: which chunk each token is.
    loading: HashMap<u64, ChunkHash>,
    /// Chunks of the tracked release held.
    tracked_held: u32,
    staged: BTreeMap<ReleaseId, [u8; 32]>,
    neighbours: BTreeSet<usize>,
    /// Halts this node has learned of (by its own `Halted` event).
    halted: BTreeSet<ReleaseId>,
    /// Releases whose probe already counted in the stats.
    probed: BTreeSet<ReleaseId>,
    /// When it first learned of a halt.
    knew_halt_at: Option<Timestamp>,
    dead: bool,
    /// Away (churn): processes nothing and has no links until it comes back.
    offline: bool,
    /// A bundle was imported while away: the engine hears of it on coming back.
    import_pending: bool,
    next_wake: Option<Timestamp>,
    heartbeat_armed: bool,
    /// Health reports this node broadcast itself.
    health_sent: u64,
    /// Health gossip (reports and halt evidence) delivered to this node: messages, bytes.
    health_received: (u64, u64),
}

/// The mesh. Node 0 is the seeder; nodes 1.. are endpoints.
pub struct Mesh {
    config: MeshConfig,
    topology: Topology,
    nodes: Vec<SimNode>,
    index: HashMap<NodeId, usize>,
    queue: EventQueue<Event>,
    now: Timestamp,
    /// When the mesh started.
    start: Timestamp,
    rng: ChaCha8Rng,
    /// Inbound request id → (requester, requester's own request id, kind).
    routes: HashMap<u64, (usize, u64, Kind)>,
    /// Inbound `Have` requests to availability liars → the release asked about.
    have_routes: HashMap<u64, ReleaseId>,
    /// Corrupt chunks each node rejected, by (rejecting node, sender).
    rejected: HashMap<(usize, usize), u32>,
    next_route: u64,
    /// Gossip message id → (receiver, sender, message), until the verdict.
    gossip_pending: HashMap<u64, (usize, usize, u32)>,
    next_message: u64,
    /// Interned gossip payloads (index = the router's message id) and their kinds.
    messages: Vec<(Arc<[u8]>, Kind)>,
    message_ids: HashMap<[u8; 32], u32>,
    router: GossipRouter,
    flows: Flows<Transfer>,
    /// Verified chunk bytes, shared by every node that holds them.
    content: HashMap<ChunkHash, Arc<[u8]>>,
    /// Each chunk's `Response::Chunk` encoding, made once and shared by every
    /// response in flight that carries it (see [`Payload::Chunk`]).
    encoded_chunks: HashMap<ChunkHash, Arc<[u8]>>,
    /// The chunk whose load the engine being fed is answering, if it is one.
    serving: Option<ChunkHash>,
    /// Assembled artifacts by the hash of their chunk sequence: (length, blake3).
    assembled: HashMap<[u8; 32], (u64, [u8; 32])>,
    /// What the seeder published, for bundle imports: (metadata, release, chunk list, chunk hashes).
    published: Vec<(MetadataBundle, ReleaseId, Vec<u8>, Vec<ChunkHash>)>,
    /// The release whose download completion is timed, and its distinct chunks.
    tracked: Option<(ReleaseId, HashSet<ChunkHash>)>,
    complete_at: Vec<Option<Timestamp>>,
    /// When each node first held a chunk of the tracked release (how long its start took).
    first_chunk_at: Vec<Option<Timestamp>>,
    bad: BTreeMap<ReleaseId, (BadMode, f64)>,
    /// Sites cut off from the others.
    cut: Vec<bool>,
    installs: Vec<InstallRecord>,
    /// (banning node, banned node).
    bans: Vec<(usize, usize)>,
    trace: blake3::Hasher,
    events: u64,
    /// Health reports broadcast, by the simulated minute they were sent in.
    health_by_minute: BTreeMap<u64, u64>,
    stats: Stats,
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
        let topology = config.topology.clone().unwrap_or_else(|| {
            Topology::flat(
                config.endpoints,
                config.latency_ms,
                config.degree.unwrap_or(0),
            )
        });
        let count = topology.nodes();
        let trust = TrustedState::new(root).map_err(|e| e.to_string())?;
        let mut nodes = Vec::with_capacity(count);
        let mut index = HashMap::with_capacity(count);
        let mut flows = Flows::new();
        let checked = config.share_signature_checks.then(CheckedSignatures::new);
        for i in 0..count {
            let mut seed = [0u8; 32];
            rng.fill_bytes(&mut seed);
            let key = SigningKey::from_seed(seed);
            let node_config = NodeConfig {
                seed: rng.next_u64(),
                role: if i == 0 {
                    NodeRole::Seeder
                } else {
                    NodeRole::Endpoint
                },
                prefetch: config.prefetch,
                cert: certify(key.node_id()),
                bandwidth: transport::engine_bandwidth(&topology, i),
                wan_fetchers: config
                    .wan_fetchers
                    .unwrap_or(waveguard_protocol::limits::DEFAULT_WAN_FETCHERS),
                checked_signatures: checked.clone(),
                ..NodeConfig::default()
            };
            let engine = Node::new(key.clone(), trust.clone(), node_config.clone(), start);
            index.insert(engine.id(), i);
            // Resources 2i and 2i+1: the node's uplink and downlink.
            flows.add_resource(topology.upload(i));
            flows.add_resource(topology.download(i));
            nodes.push(SimNode {
                engine,
                key,
                node_config,
                saved_trust: None,
                saved_lists: BTreeMap::new(),
                saved_rollouts: BTreeMap::new(),
                writes: HashMap::new(),
                serves_corrupt: false,
                lie: None,
                have_lie: None,
                clock_offset_ms: 0,
                store: HashSet::new(),
                loading: HashMap::new(),
                tracked_held: 0,
                staged: BTreeMap::new(),
                neighbours: BTreeSet::new(),
                halted: BTreeSet::new(),
                probed: BTreeSet::new(),
                knew_halt_at: None,
                dead: false,
                offline: false,
                import_pending: false,
                next_wake: None,
                heartbeat_armed: false,
                health_sent: 0,
                health_received: (0, 0),
            });
        }
        // Then each site's WAN uplink and downlink.
        for site in &topology.sites {
            flows.add_resource(site.wan_upload);
            flows.add_resource(site.wan_download);
        }
        let router = GossipRouter::new(count, config.gossip.clone(), rng.next_u64());
        let edges = if config.topology.is_some() {
            topology.edges(&mut rng)
        } else {
            flat_edges(count, config.degree, &mut rng)
        };
        let sites = topology.sites.len();
        let mut mesh = Mesh {
            config,
            topology,
            nodes,
            index,
            queue: EventQueue::default(),
            now: start,
            start,
            rng,
            routes: HashMap::new(),
            have_routes: HashMap::new(),
            rejected: HashMap::new(),
            next_route: 1,
            gossip_pending: HashMap::new(),
            next_message: 1,
            messages: Vec::new(),
            message_ids: HashMap::new(),
            router,
            flows,
            content: HashMap::new(),
            encoded_chunks: HashMap::new(),
            serving: None,
            assembled: HashMap::new(),
            published: Vec::new(),
            tracked: None,
            complete_at: vec![None; count],
            first_chunk_at: vec![None; count],
            bad: BTreeMap::new(),
            cut: vec![false; sites],
            installs: Vec::new(),
            bans: Vec::new(),
            trace: blake3::Hasher::new(),
            events: 0,
            health_by_minute: BTreeMap::new(),
            stats: Stats::default(),
        };
        for i in 0..count {
            if let Some(input) = mesh.site_peers_input(i) {
                mesh.queue.push(start, Event::Deliver { to: i, input });
            }
        }
        for (a, b) in edges {
            mesh.nodes[a].neighbours.insert(b);
            mesh.nodes[b].neighbours.insert(a);
            mesh.link_up(a, b);
        }
        Ok(mesh)
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
            let h = waveguard_protocol::chunk::hash(&c);
            self.content.insert(h, Arc::from(c));
            self.hold(0, h);
            hashes.push(h);
        }
        let now = self.now;
        self.published
            .push((bundle.clone(), release, chunk_list.clone(), hashes.clone()));
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

    /// Times when each node comes to hold every chunk of `release`, which the seeder
    /// must have published (see [`Mesh::completed_at`]).
    pub fn track_release(&mut self, release: ReleaseId) {
        let set: HashSet<ChunkHash> = self
            .published
            .iter()
            .filter(|(_, id, _, _)| *id == release)
            .flat_map(|(_, _, _, hashes)| hashes.iter().copied())
            .collect();
        for (i, n) in self.nodes.iter_mut().enumerate() {
            n.tracked_held = n.store.iter().filter(|h| set.contains(*h)).count() as u32;
            if n.tracked_held as usize == set.len() {
                self.complete_at[i] = Some(self.now);
            }
        }
        self.tracked = Some((release, set));
    }

    /// Makes every install of `release` go wrong in the given way.
    pub fn mark_bad(&mut self, release: ReleaseId, mode: BadMode) {
        self.bad.insert(release, (mode, 1.0));
    }

    /// Makes installs of `release` go wrong on a `fraction` of the nodes (chosen by the seed).
    pub fn mark_bad_fraction(&mut self, release: ReleaseId, mode: BadMode, fraction: f64) {
        self.bad.insert(release, (mode, fraction));
    }

    /// Whether a bad `release` hurts node `i` when it installs (the seeded share of
    /// [`Mesh::mark_bad_fraction`]).
    pub fn hurts(&self, i: usize, release: &ReleaseId) -> bool {
        self.hurt(i, release).is_some()
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
                self.trace_event(node, "crash");
                // A probe that already failed counted this machine once.
                let counted = self.nodes[node]
                    .probed
                    .iter()
                    .any(|r| self.hurt(node, r).is_some());
                if !counted && !self.nodes[node].dead {
                    self.count_failure();
                }
                self.nodes[node].dead = true;
                self.take_down(node);
                return Ok(());
            }
            Event::FlowDone { flow, version } => return self.flow_done(flow, version),
            Event::Gossip { to, from, msg } => return self.gossip_arrived(to, from, msg),
            Event::Control { to, from, control } => return self.control_arrived(to, from, control),
            Event::Heartbeat { node } => return self.heartbeat(node),
            Event::Leave { node } => return self.leave(node),
            Event::Join { node } => return self.join(node),
            Event::Cut { site } => return self.set_cut(site, true),
            Event::Heal { site } => return self.set_cut(site, false),
            Event::Import { node } => return self.import(node),
        };
        self.feed(node, input)
    }

    /// Hands one input to a live node's engine and carries out what it asks.
    fn feed(&mut self, node: usize, input: Input) -> Result<(), InvariantViolation> {
        let serving = match &input {
            Input::ChunkLoaded { token, data } => self.nodes[node]
                .loading
                .remove(token)
                .filter(|_| data.is_some()),
            _ => None,
        };
        if self.nodes[node].dead || self.nodes[node].offline {
            return Ok(());
        }
        self.trace_event(node, input_kind(&input));
        let now = self.local_time(node, self.now);
        self.serving = serving;
        self.nodes[node].engine.handle_input(now, input);
        let drained = self.drain(node);
        self.serving = None;
        drained
    }

    fn trace_event(&mut self, node: usize, kind: &str) {
        self.events += 1;
        self.trace.update(&self.now.0.to_le_bytes());
        self.trace.update(&(node as u64).to_le_bytes());
        self.trace.update(kind.as_bytes());
    }

    fn later(&self, ms: u64) -> Timestamp {
        self.now.plus_millis(ms)
    }

    fn drain(&mut self, i: usize) -> Result<(), InvariantViolation> {
        loop {
            let out = self.nodes[i].engine.poll_output();
            match out {
                Output::Timeout(t) => {
                    // The engine's timer is on its own clock.
                    let t = self.sim_time(i, t);
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

    fn violation(&self, what: String) -> InvariantViolation {
        InvariantViolation {
            at: self.now.0.saturating_sub(self.start.0),
            seed: self.config.seed,
            what,
        }
    }

    /// Records that node `i` now durably holds chunk `h`.
    fn hold(&mut self, i: usize, h: ChunkHash) {
        let n = &mut self.nodes[i];
        if !n.store.insert(h) {
            return;
        }
        if let Some((_, set)) = &self.tracked {
            if set.contains(&h) {
                n.tracked_held += 1;
                if self.first_chunk_at[i].is_none() {
                    self.first_chunk_at[i] = Some(self.now);
                }
                if n.tracked_held as usize == set.len() && self.complete_at[i].is_none() {
                    self.complete_at[i] = Some(self.now);
                }
            }
        }
    }

    /// The site peers node `i`'s engine is told of, when site-aware fetching is on:
    /// every other node of its site (the driver's knowledge, like an agent's LAN).
    fn site_peers_input(&self, i: usize) -> Option<Input> {
        self.config.wan_fetchers?;
        let site = self.topology.site_of(i);
        let peers = (0..self.nodes.len())
            .filter(|&j| j != i && self.topology.site_of(j) == site)
            .map(|j| self.nodes[j].engine.id())
            .collect();
        Some(Input::SitePeers(peers))
    }

    /// Makes node `i` serve every chunk with one byte flipped.
    pub fn make_liar(&mut self, i: usize) {
        self.nodes[i].serves_corrupt = true;
    }

    /// Runs node `i`'s clock `offset_ms` ahead of simulated time (behind when negative):
    /// its engine is given `now + offset_ms`, and its timers are taken back to simulated
    /// time. Call before the first [`Mesh::run_until`]: the engine is built afresh at its
    /// own clock's reading, since an engine's time never goes backwards.
    pub fn set_clock_offset(&mut self, i: usize, offset_ms: i64) {
        self.nodes[i].clock_offset_ms = offset_ms;
        let now = self.local_time(i, self.now);
        let n = &mut self.nodes[i];
        let trust = n.engine.trust().clone();
        n.engine = Node::new(n.key.clone(), trust, n.node_config.clone(), now);
    }

    /// Node `i`'s clock reading at simulated time `t`.
    fn local_time(&self, i: usize, t: Timestamp) -> Timestamp {
        Timestamp(t.0.saturating_add_signed(self.nodes[i].clock_offset_ms))
    }

    /// The simulated time at which node `i`'s clock reads `t`.
    fn sim_time(&self, i: usize, t: Timestamp) -> Timestamp {
        Timestamp(t.0.saturating_add_signed(self.nodes[i].clock_offset_ms.saturating_neg()))
    }

    /// Makes node `i` claim every chunk of every release in its availability
    /// (`Have`) messages, answering for the chunks it lacks as `lie` says.
    pub fn make_have_liar(&mut self, i: usize, lie: HaveLie) {
        self.nodes[i].have_lie = Some(lie);
    }

    /// Corrupt chunks each node rejected (verified and found wrong), by
    /// (rejecting node, sender); pairs with none are absent.
    pub fn rejections(&self) -> &HashMap<(usize, usize), u32> {
        &self.rejected
    }

    /// Makes node `i` lie about health in the given way.
    pub fn make_health_liar(&mut self, i: usize, lie: HealthLie) {
        self.nodes[i].lie = Some(lie);
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

    /// Health reports node `i` broadcast.
    pub fn health_sent(&self, i: usize) -> u64 {
        self.nodes[i].health_sent
    }

    /// Health reports broadcast by anyone in `[from, to)`, counted by whole minutes.
    pub fn health_sent_between(&self, from: Timestamp, to: Timestamp) -> u64 {
        self.health_by_minute
            .range(from.as_millis() / 60_000..to.as_millis() / 60_000)
            .map(|(_, n)| n)
            .sum()
    }

    /// Health gossip delivered to node `i`: (messages, bytes).
    pub fn health_received(&self, i: usize) -> (u64, u64) {
        self.nodes[i].health_received
    }

    /// Every install so far.
    pub fn installs(&self) -> &[InstallRecord] {
        &self.installs
    }

    /// Node `i`'s engine.
    pub fn node(&self, i: usize) -> &Node {
        &self.nodes[i].engine
    }

    /// Nodes, the seeder included.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Never: a mesh has at least its seeder.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The hash of what node `i` assembled for `release`, if it did.
    pub fn staged(&self, i: usize, release: &ReleaseId) -> Option<[u8; 32]> {
        self.nodes[i].staged.get(release).copied()
    }

    /// Whether node `i` learned that `release` halted.
    pub fn knows_halt(&self, i: usize, release: &ReleaseId) -> bool {
        self.nodes[i].halted.contains(release)
    }

    /// Whether node `i` died (a bad release crashed it).
    pub fn is_dead(&self, i: usize) -> bool {
        self.nodes[i].dead
    }

    /// Simulated time now.
    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// Events processed so far.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// The hash of every event so far: the same seed always gives the same hash.
    pub fn trace_hash(&self) -> [u8; 32] {
        *self.trace.clone().finalize().as_bytes()
    }

    /// Why node `i` halted `release`, if it did.
    pub fn halt_reason(&self, i: usize, release: &ReleaseId) -> Option<HaltReason> {
        self.nodes[i]
            .engine
            .status()
            .releases
            .into_iter()
            .find(|r| r.id == *release)
            .and_then(|r| r.halt)
    }

    /// When node `i` came to hold every chunk of the tracked release.
    pub fn completed_at(&self, i: usize) -> Option<Timestamp> {
        self.complete_at.get(i).copied().flatten()
    }

    /// When node `i` first held a chunk of the tracked release, if it has.
    pub fn first_chunk_at(&self, i: usize) -> Option<Timestamp> {
        self.first_chunk_at.get(i).copied().flatten()
    }

    /// When node `i` first learned of a halt.
    pub fn knew_halt_at(&self, i: usize) -> Option<Timestamp> {
        self.nodes[i].knew_halt_at
    }

    /// Node `i`'s connections now (bans drop some).
    pub fn degree(&self, i: usize) -> usize {
        self.nodes[i].neighbours.len()
    }

    /// Whether node `i` serves corrupted chunks, and how it lies about health.
    pub fn faults_of(&self, i: usize) -> (bool, Option<HealthLie>) {
        (self.nodes[i].serves_corrupt, self.nodes[i].lie)
    }

    /// How node `i` lies about the chunks it holds, if it does.
    pub fn have_lie_of(&self, i: usize) -> Option<HaveLie> {
        self.nodes[i].have_lie
    }

    /// Counters kept so far.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The network layout.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// Bytes per second in use now: (all transfers, WAN links, the seeder's uplink).
    pub fn rates(&self) -> (f64, f64, f64) {
        let n = self.nodes.len() as u32;
        let wan: f64 = (0..self.topology.sites.len() as u32)
            .map(|s| self.flows.rate(ResourceId(2 * n + 2 * s)))
            .sum();
        (self.flows.total_rate(), wan, self.flows.rate(ResourceId(0)))
    }

    /// Bulk bytes delivered end to end so far (simulated, not scaled).
    pub fn carried_bytes(&self) -> u64 {
        self.flows.carried()
    }

    /// Bytes the seeder's uplink carried in transfers so far.
    pub fn seeder_transfer_bytes(&self) -> u64 {
        self.flows.bytes_sent(ResourceId(0), self.now.0)
    }

    /// Whether node `i` is away (churn) right now.
    pub fn is_offline(&self, i: usize) -> bool {
        self.nodes[i].offline
    }

    /// Whether node `i` sits in a site that is cut off now.
    pub fn is_cut_off(&self, i: usize) -> bool {
        self.cut[self.topology.site_of(i)]
    }

    fn send_heartbeat_later(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        if !n.heartbeat_armed && !n.dead && !n.offline && self.router.wants_heartbeat(i as u32) {
            n.heartbeat_armed = true;
            let at = self.now.plus_millis(self.config.gossip.heartbeat_ms);
            self.queue.push(at, Event::Heartbeat { node: i });
        }
    }

    fn heartbeat(&mut self, i: usize) -> Result<(), InvariantViolation> {
        self.nodes[i].heartbeat_armed = false;
        if self.nodes[i].dead || self.nodes[i].offline {
            return Ok(());
        }
        let sends = self.router.heartbeat(i as u32);
        self.dispatch(i, sends);
        self.send_heartbeat_later(i);
        Ok(())
    }

    fn dispatch(&mut self, i: usize, sends: Vec<GossipSend>) {
        for s in sends {
            self.send_gossip(i, s);
        }
        self.send_heartbeat_later(i);
    }
}

/// The old flat graph: everyone to everyone, or a ring plus random chords.
fn flat_edges(n: usize, degree: Option<usize>, rng: &mut ChaCha8Rng) -> BTreeSet<(usize, usize)> {
    let mut edges = BTreeSet::new();
    match degree {
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
                let b = (a + 1) % n;
                if a != b {
                    edges.insert((a.min(b), a.max(b)));
                }
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
    edges
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
        Input::RolloutRestored { .. } => "restored",
        Input::SitePeers(_) => "site-peers",
        Input::TransferPolicy(_) => "transfer-policy",
        _ => "other",
    }
}
