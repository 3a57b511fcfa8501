//! The `Node` engine: one sans-IO state machine per endpoint.
//!
//! # Calling contract
//!
//! A driver (the agent, the simulator, a test) owns one [`Node`] per endpoint and
//! does exactly two things with it, in the style of quinn-proto and str0m:
//!
//! 1. Feed it every event with [`Node::handle_input`]`(now, input)`: network
//!    messages, results of actions it asked for, and [`Input::Tick`] when its
//!    timer fires. `now` is wall-clock time in milliseconds since the Unix epoch
//!    and must never go backwards between calls (a smaller `now` is treated as
//!    the last one seen).
//! 2. After every `handle_input`, drain [`Node::poll_output`] until it returns
//!    [`Output::Timeout`]: carry out each action, in order, and arm a timer for
//!    the timeout. Results of actions come back later as inputs
//!    (`StoreChunk` → `ChunkStored`, `Install` → `InstallFinished`, …).
//!
//! The node never blocks, never reads a clock, never does I/O and draws
//! randomness only from the seed in [`NodeConfig`], so the same inputs at the
//! same times always give the same outputs. Every rollout and download
//! decision is made here; drivers only move bytes, keep time and touch disks.

mod fetching;
mod halt_sync;
mod io;
mod lifecycle;
mod local;
mod restore;
mod retire;
mod serving;
mod site;
mod status;
mod sync;

pub use io::{Input, NodeEvent, Output, Verdict};
pub use retire::RETIRE_WAIT_MS;
pub use status::{NodeStatus, ReleaseStatus};

use crate::chunk::{ChunkHash, ChunkList};
use crate::clock::{ClockCheck, ClockEstimate};
use crate::fetch::{Bandwidth, Bitfield, Download, PeerBook, TransferPolicy, WanElection};
use crate::health::directive::DirectiveLog;
use crate::health::ledger::Ledger;
use crate::health::FleetKeys;
use crate::id::{NodeId, ReleaseId};
use crate::keys::SigningKey;
use crate::limits::CLOCK_SLACK_MS;
use crate::metadata::trust::TrustedState;
use crate::release::Release;
use crate::rollout::{HaltReason, RolloutEvent, RolloutState};
use crate::time::Timestamp;
use crate::wave::WavePin;
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};

/// What kind of node this is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NodeRole {
    /// An endpoint: fetches, installs in its wave, reports health.
    #[default]
    Endpoint,
    /// A seeder or relay (a vendor's node, a site cache): fetches and serves, never installs.
    Seeder,
}

/// Per-node settings.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// Seed for every random choice (tie-breaking in the scheduler).
    pub seed: u64,
    /// Endpoint or seeder.
    pub role: NodeRole,
    /// The operator's wave override for this node (honoured by peers only when signed in `cert`).
    pub pin: WavePin,
    /// Fetch as soon as a release is trusted rather than when its wave opens.
    pub prefetch: bool,
    /// Operator pause: install nothing until unpaused.
    pub paused: bool,
    /// This node's fleet certificate (JSON envelope bytes), required in fleets with an operator key.
    pub cert: Option<Vec<u8>>,
    /// The bandwidth limits the driver enforces; the engine keeps its requests
    /// and promises within them (see [`crate::fetch::pacing`]).
    pub bandwidth: Bandwidth,
    /// WAN fetchers elected per site and release (section 15.7); 0 turns
    /// site-aware fetching off (every node fetches from any peer).
    pub wan_fetchers: u32,
    /// Report signatures already checked, shared with other engines in this
    /// process (a simulator's); `None` for an agent. Changes no verdict.
    pub checked_signatures: Option<crate::health::checked::CheckedSignatures>,
}

impl Default for NodeConfig {
    /// An endpoint with seed 0, no pin, cert or limits, fetching when its
    /// wave opens, with [`crate::limits::DEFAULT_WAN_FETCHERS`] per site.
    fn default() -> Self {
        NodeConfig {
            seed: 0,
            role: NodeRole::default(),
            pin: WavePin::default(),
            prefetch: false,
            paused: false,
            cert: None,
            bandwidth: Bandwidth::default(),
            wan_fetchers: crate::limits::DEFAULT_WAN_FETCHERS,
            checked_signatures: None,
        }
    }
}

/// How often a node re-announces its chunk availability when it changed, in milliseconds.
/// Short, because a chunk spreads one hop per announcement: at 1 s, the
/// announcement delay dominated how fast new chunks reached the swarm.
const HAVE_FLUSH_MS: u64 = 200;
/// How often a node wakes with nothing else to do, in milliseconds (housekeeping).
const IDLE_TICK_MS: u64 = 30_000;
/// Delay between a ledger change and the gate re-evaluation it triggers, in milliseconds;
/// batches bursts of reports into one evaluation.
const GATE_CHECK_DELAY_MS: u64 = 500;

/// What the node is waiting for from a request it sent.
#[derive(Clone, Debug)]
enum Pending {
    Metadata,
    Have(ReleaseId),
    ChunkList(ReleaseId),
    Chunk { release: ReleaseId, index: u32 },
    Health(ReleaseId),
    Halt(ReleaseId),
}

/// Where the health probe of an installed release stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Probe {
    /// Not installed, or the rollout is over.
    Off,
    /// Next probe due at this time.
    DueAt(Timestamp),
    /// Waiting for `ProbeFinished`.
    Running,
}

/// One release as this node follows it.
struct Tracked {
    release: Release,
    state: RolloutState,
    wave: u32,
    list: Option<ChunkList>,
    list_bytes: Option<Vec<u8>>,
    /// Where each chunk hash stands in the list (a hash may repeat), so a stored
    /// chunk is placed without scanning the whole list.
    positions: HashMap<ChunkHash, Vec<u32>>,
    /// Chunks whose bytes are durable here; what we serve and announce.
    stored: Option<Bitfield>,
    download: Option<Download>,
    /// An outstanding chunk list request: (request id, deadline).
    list_request: Option<(u64, Timestamp)>,
    /// Peers that told us they hold chunks of this release (chunk list sources).
    sources: BTreeSet<NodeId>,
    ledger: Ledger,
    directives: DirectiveLog,
    /// The latest accepted directive's signed bytes, to answer halt sync (lost on restart).
    directive_bytes: Option<Vec<u8>>,
    /// Latched halt: once set it stays until a resume directive lifts it.
    halt: Option<HaltReason>,
    probe: Probe,
    /// Our own reports' sequence number.
    seq: u64,
    have_dirty: bool,
    gate_check_at: Option<Timestamp>,
    halt_announced: bool,
    /// This node's own wave passed its gate on this node's evidence: it sent its final
    /// (`baked`) report and stops heartbeating.
    own_wave_passed: bool,
    /// A health probe of the installed release has passed (a failing one halts instead).
    probed_healthy: bool,
    /// A gate failure that rested on silence, and when we asked a peer to confirm it
    /// (wave, time): see `check_gates`.
    silence_check: Option<(u32, Timestamp)>,
    /// Earliest time for the next health sync request (see [`sync`]).
    sync_next: Timestamp,
    /// When this node first saw the last wave open (its schedule reached and every earlier gate
    /// passed). The rollout ends one last bake later; until then gates are watched.
    last_wave_open_at: Option<Timestamp>,
    /// The WAN-fetcher election's widenings and stall clock (section 15.7).
    election: WanElection,
    /// This node's election rank for the release among its site.
    rank: site::RankCache,
}

impl Tracked {
    /// Whether the rollout is over on this node's evidence: the last wave opened and baked.
    /// A schedule delayed by slow gates ends later than [`crate::release::RolloutPolicy::end`].
    fn rollout_over(&self, now: Timestamp) -> bool {
        let policy = self.release.policy();
        let last_bake = policy.waves.last().map_or(0, |w| w.bake_seconds);
        self.last_wave_open_at
            .is_some_and(|t| now >= t.plus_secs(last_bake))
    }

    /// Indices of `hash` in the chunk list (empty before the list is known).
    fn indices_of(&self, hash: &ChunkHash) -> Vec<u32> {
        self.positions.get(hash).cloned().unwrap_or_default()
    }
}

/// The sans-IO waveguard engine for one endpoint. See the module docs for the calling contract.
pub struct Node {
    id: NodeId,
    key: SigningKey,
    config: NodeConfig,
    rng: ChaCha8Rng,
    now: Timestamp,
    trust: TrustedState,
    fleet: FleetKeys,
    peers: BTreeSet<NodeId>,
    book: PeerBook,
    releases: BTreeMap<ReleaseId, Tracked>,
    /// Verified chunks the store holds, across releases (content-addressed, so releases share them).
    held: HashSet<ChunkHash>,
    outputs: VecDeque<Output>,
    next_request_id: u64,
    pending: BTreeMap<u64, (NodeId, Pending, Timestamp)>,
    next_token: u64,
    serving: serving::Serving,
    next_have_flush: Timestamp,
    /// Valid directives for releases not followed yet, applied when they are (bounded by `MAX_RELEASES`).
    early_directives: BTreeMap<ReleaseId, Vec<u8>>,
    /// Trusted targets changed since releases were last checked against them (see [`retire`]).
    retire_pending: bool,
    /// Retired releases not forgotten yet: their chunk lists and the latest time to forget them.
    retiring: BTreeMap<ReleaseId, (Option<ChunkList>, Timestamp)>,
    /// Peers the driver says share our site (at most `MAX_SITE_PEERS`).
    site_peers: BTreeSet<NodeId>,
    /// Bumped whenever `site_peers` changes, so cached election ranks are redone.
    site_generation: u64,
    /// What the driver allows now (WAN windows, upload cap).
    policy: TransferPolicy,
    /// This node's clock offset from the fleet's, from peers' reports (see [`crate::clock`]).
    clock: ClockEstimate,
    /// The last known clock check (`Unknown` until there is one), so each change is
    /// announced once.
    clock_announced: ClockCheck,
}

impl Node {
    /// A node with identity `key`, trusting `trust` (at least a root), configured by `config`.
    pub fn new(key: SigningKey, trust: TrustedState, config: NodeConfig, now: Timestamp) -> Node {
        let fleet = lifecycle::fleet_keys(&trust);
        let rng = ChaCha8Rng::seed_from_u64(config.seed);
        let serving = serving::Serving::new(config.bandwidth.upload);
        let mut node = Node {
            id: key.node_id(),
            key,
            config,
            rng,
            now,
            trust,
            fleet,
            peers: BTreeSet::new(),
            book: PeerBook::default(),
            releases: BTreeMap::new(),
            held: HashSet::new(),
            outputs: VecDeque::new(),
            next_request_id: 1,
            pending: BTreeMap::new(),
            next_token: 1,
            serving,
            next_have_flush: now,
            early_directives: BTreeMap::new(),
            retire_pending: false,
            retiring: BTreeMap::new(),
            site_peers: BTreeSet::new(),
            site_generation: 1,
            policy: TransferPolicy::default(),
            clock: ClockEstimate::new(),
            clock_announced: ClockCheck::Unknown,
        };
        for release in node.trust.releases() {
            node.track(release);
        }
        node
    }

    /// This node's ID.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The trusted metadata.
    pub fn trust(&self) -> &TrustedState {
        &self.trust
    }

    /// Feeds one event. See the module docs for the contract.
    pub fn handle_input(&mut self, now: Timestamp, input: Input) {
        self.now = self.now.max(now);
        match input {
            Input::Tick => {}
            Input::PeerConnected(peer) => self.on_peer_connected(peer),
            Input::PeerDisconnected(peer) => self.on_peer_disconnected(peer),
            Input::Gossip {
                from,
                message_id,
                data,
            } => {
                let verdict = self.on_gossip(from, &data);
                self.outputs.push_back(Output::GossipVerdict {
                    message_id,
                    verdict,
                });
            }
            Input::Request {
                from,
                request_id,
                data,
            } => {
                if !self.refuse_by_policy(&from, request_id, &data) {
                    self.on_request(from, request_id, &data);
                }
            }
            Input::Response {
                from,
                request_id,
                data,
            } => self.on_response(from, request_id, &data),
            Input::RequestFailed { request_id } => self.on_request_failed(request_id),
            Input::ChunkStored { hash } => self.on_chunk_stored(hash),
            Input::ChunkStoreFailed { hash, reason } => self.on_chunk_store_failed(hash, reason),
            Input::ChunkLoaded { token, data } => self.on_chunk_loaded(token, data),
            Input::ChunksHeld(hashes) => self.on_chunks_held(hashes),
            Input::ChunkLost { hash } => self.on_chunk_lost(hash),
            Input::Metadata(bundle) => {
                if let Err(e) = self.apply_metadata(&bundle, true) {
                    self.event(NodeEvent::Refused {
                        from: None,
                        reason: e.to_string(),
                    });
                }
            }
            Input::ChunkList { release, data } => self.on_local_chunk_list(release, data),
            Input::ArtifactStaged { release, result } => self.on_artifact_staged(release, result),
            Input::InstallFinished { release, result } => self.on_install_finished(release, result),
            Input::ProbeFinished { release, healthy } => self.on_probe_finished(release, healthy),
            Input::RollbackFinished { release, result } => {
                self.on_rollback_finished(release, result)
            }
            Input::RolloutRestored { release, data } => self.on_rollout_restored(release, &data),
            Input::Health(reports) => self.on_local_health(reports),
            Input::SitePeers(peers) => self.on_site_peers(peers),
            Input::TransferPolicy(policy) => self.on_transfer_policy(policy),
            Input::Directive(bytes) => {
                if self.on_directive(&bytes, true).is_err() {
                    // on_directive already reported why
                }
            }
        }
        self.step();
    }

    /// The next action for the driver; [`Output::Timeout`] when there is none.
    pub fn poll_output(&mut self) -> Output {
        if let Some(o) = self.outputs.pop_front() {
            return o;
        }
        Output::Timeout(self.next_wakeup())
    }

    /// Everything time-driven: expire requests, issue new ones, open waves, probe, check gates.
    fn step(&mut self) {
        self.lift_bans();
        self.retire_unlisted();
        self.expire_requests();
        self.serve_waiting();
        self.drive_downloads();
        self.drive_rollouts();
        self.drive_health_sync();
        self.flush_have();
        self.watch_clock();
    }

    /// The fleet's clock minus ours, in milliseconds, when peers' reports tell.
    fn clock_offset(&self) -> Option<i64> {
        self.clock.offset_ms(self.now)
    }

    /// Whether peers' reports say our clock is more than [`crate::limits::CLOCK_FAR_OFF_MS`] off.
    fn clock_far_off(&self) -> bool {
        self.clock.check(self.now) == ClockCheck::FarOff
    }

    /// The earlier of our clock and the fleet's as estimated: the time schedules are
    /// judged by, so a clock ahead never opens a wave early. Offsets within
    /// [`CLOCK_SLACK_MS`] are measurement noise and ignored.
    fn schedule_now(&self) -> Timestamp {
        match self.clock_offset() {
            Some(o) if o < 0 && o.unsigned_abs() > CLOCK_SLACK_MS => {
                Timestamp(self.now.0.saturating_sub(o.unsigned_abs()))
            }
            _ => self.now,
        }
    }

    /// The later of our clock and the fleet's as estimated: the time expiry is judged by,
    /// so a clock behind never takes expired metadata for fresh.
    fn expiry_now(&self) -> Timestamp {
        match self.clock_offset() {
            Some(o) if o > 0 && o.unsigned_abs() > CLOCK_SLACK_MS => {
                self.now.plus_millis(o.unsigned_abs())
            }
            _ => self.now,
        }
    }

    /// Announces a change of the clock check (far off, agreeing again) as an event.
    fn watch_clock(&mut self) {
        let check = self.clock.check(self.now);
        // Evidence that aged out says nothing: the last word stands until there is more.
        if check == self.clock_announced || check == ClockCheck::Unknown {
            return;
        }
        let was = std::mem::replace(&mut self.clock_announced, check);
        match (check, self.clock_offset()) {
            (ClockCheck::FarOff, Some(offset_ms)) => {
                self.event(NodeEvent::ClockFarOff { offset_ms });
            }
            (ClockCheck::Agrees, Some(offset_ms)) if was == ClockCheck::FarOff => {
                self.event(NodeEvent::ClockAgrees { offset_ms });
            }
            // A first agreeing estimate is the normal case, not worth an event.
            _ => {}
        }
    }

    fn next_wakeup(&self) -> Timestamp {
        let now = self.now;
        // Schedules are judged on `schedule_now`, which may lag our clock (11.10).
        let (schedule_now, lag) = {
            let s = self.schedule_now();
            (s, now.millis_since(s))
        };
        let mut next = now.plus_millis(IDLE_TICK_MS);
        let mut consider = |t: Timestamp| {
            if t > now && t < next {
                next = t;
            }
        };
        for (_, _, deadline) in self.pending.values() {
            consider(*deadline);
        }
        if let Some(t) = self.serving.next_wakeup(now) {
            consider(t);
        }
        if let Some(t) = self.next_forget() {
            consider(t);
        }
        for t in self.releases.values() {
            if let Some(d) = t.download.as_ref().and_then(|d| d.next_deadline()) {
                consider(d);
            }
            if let Some((_, d)) = t.list_request {
                consider(d);
            }
            if let Probe::DueAt(d) = t.probe {
                consider(d);
            }
            if let Some(d) = t.gate_check_at {
                consider(d);
            }
            if t.have_dirty {
                consider(self.next_have_flush);
            }
            if let Some(d) = self.stall_deadline(t) {
                consider(d);
            }
            lifecycle::consider_schedule(t, schedule_now, lag, &mut consider);
        }
        next
    }

    fn new_request(&mut self, to: NodeId, pending: Pending, request: crate::wire::Request) -> u64 {
        let id = self.next_request_id;
        self.next_request_id += 1;
        let deadline = self.now.plus_millis(crate::limits::REQUEST_TIMEOUT_MS);
        self.pending.insert(id, (to, pending, deadline));
        self.outputs.push_back(Output::SendRequest {
            to,
            request_id: id,
            data: request.encode(),
        });
        id
    }

    fn event(&mut self, e: NodeEvent) {
        self.outputs.push_back(Output::Event(e));
    }

    fn transition(&mut self, release: &ReleaseId, event: RolloutEvent) -> bool {
        let Some(t) = self.releases.get_mut(release) else {
            return false;
        };
        let from = t.state.name();
        match t.state.clone().next(event) {
            Ok(next) => {
                t.state = next;
                let to = t.state.name();
                if from != to {
                    self.outputs
                        .push_back(Output::Event(NodeEvent::StateChanged {
                            release: *release,
                            from,
                            to,
                        }));
                    self.record_rollout(release);
                }
                true
            }
            Err(_) => false,
        }
    }

    /// Ends the bans imposed [`crate::limits::BAN_MS`] ago or more. The driver's
    /// ban (`Output::Ban::until`) ends at the same time on its own, so the peer may
    /// connect again; it is a peer like any other once it does.
    fn lift_bans(&mut self) {
        let Some(cutoff) = self.now.as_millis().checked_sub(crate::limits::BAN_MS) else {
            return;
        };
        for peer in self.book.expire(Timestamp(cutoff)) {
            self.event(NodeEvent::PeerUnbanned { peer });
        }
    }

    fn ban(&mut self, peer: NodeId, reason: String) {
        if self.book.is_banned(&peer) {
            return;
        }
        self.book.ban(peer, reason.clone(), self.now);
        // From now on it is not a peer: nothing more is sent to it, whenever the driver disconnects.
        self.peers.remove(&peer);
        for t in self.releases.values_mut() {
            if let Some(d) = t.download.as_mut() {
                d.remove_peer(&peer);
            }
            t.sources.remove(&peer);
        }
        self.outputs.push_back(Output::Ban {
            peer,
            reason: reason.clone(),
            until: self.now.plus_millis(crate::limits::BAN_MS),
        });
        self.event(NodeEvent::PeerBanned { peer, reason });
    }

    fn random_u64(&mut self) -> u64 {
        self.rng.next_u64()
    }
}
