//! The one loop that drives a node: it feeds the protocol engine network
//! events, timer ticks and the results of disk and installer work, and carries
//! out the engine's outputs. It decides nothing about releases; every such
//! decision is the engine's (`waveguard_protocol::node`).
//!
//! Blocking work (the chunk store, assembling artifacts) runs on tokio's
//! blocking pool and installer hooks run as child processes; their results
//! come back to the loop through one channel and enter the engine as inputs,
//! so the engine sees one ordered stream of events.
//!
//! The outside (the HTTP API, tests) reaches the loop through a small bounded
//! [`Command`] queue whose sender sits in [`Shared`]; each command carries a
//! oneshot channel for its answer, so the asker waits for the loop's verdict
//! while the engine keeps its single ordered stream of inputs.

use crate::install::{InstallRequest, Installer};
use crate::metrics::{ClassTraffic, PeerClass, MAX_LAN_PEERS};
use crate::net::{Discovery, NetEvent, Network, Traffic, MALFORMED_BAN};
use crate::store::Store;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};
use waveguard_protocol::health::directive::{Directive, DirectiveError, DirectiveState};
use waveguard_protocol::node::{Input, Node, NodeEvent, NodeStatus, Output, ReleaseStatus};
use waveguard_protocol::wire::SignedHealth;
use waveguard_protocol::{ReleaseId, Timestamp};

/// Most results of background work waiting for the loop; the loop drains
/// them first, so this only bounds a burst.
const LOCAL_QUEUE: usize = 4096;

/// Most commands waiting for the loop. Commands are rare operator actions
/// answered at once, so a full queue means the loop is stuck, and askers
/// time out instead of queueing without bound.
const COMMAND_QUEUE: usize = 16;

/// How long [`Shared::submit_directive`] waits for the loop's answer.
pub const COMMAND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The `tracing` target of one debug line per chunk request sent and per
/// chunk recorded in the store, so a test or an operator can follow chunk
/// traffic (`RUST_LOG=info,waveguard::chunks=debug`) without the rest of the
/// driver's debug output.
pub const CHUNK_LOG_TARGET: &str = "waveguard::chunks";

/// How long fetching pauses after the disk was found full, at first; each
/// further full-disk failure while paused doubles it up to
/// [`DISK_FULL_PAUSE_MAX`]. Fetching on is what tests whether space came
/// back, so the pause bounds the bytes fetched and thrown away meanwhile.
pub const DISK_FULL_PAUSE_MIN: std::time::Duration = std::time::Duration::from_secs(5);
/// Longest pause of fetching (and between staging or install retries) on a full disk.
pub const DISK_FULL_PAUSE_MAX: std::time::Duration = std::time::Duration::from_secs(30);

/// Staging or installing waits out a full disk: each failure is recorded (so
/// the loop pauses fetching) and the next try comes after a pause that
/// doubles from [`DISK_FULL_PAUSE_MIN`] to [`DISK_FULL_PAUSE_MAX`].
struct FullDiskRetry {
    pause: std::time::Duration,
    counters: Arc<Mutex<Counters>>,
    no_space: Arc<AtomicU64>,
}

impl FullDiskRetry {
    /// Records a full-disk failure and sleeps until the next try.
    async fn wait(&mut self) {
        Driver::disk_outcome(&self.counters, &self.no_space, true);
        tokio::time::sleep(self.pause).await;
        self.pause = (self.pause * 2).min(DISK_FULL_PAUSE_MAX);
    }
}

/// `added` bytes over `elapsed` as bytes per second (zero without an interval).
fn per_second(added: &ClassTraffic, elapsed: Option<std::time::Duration>) -> ClassTraffic {
    let secs = elapsed.map_or(0.0, |e| e.as_secs_f64());
    let mut rate = ClassTraffic::default();
    if secs <= 0.0 {
        return rate;
    }
    // Float to integer casts saturate; a byte count fits an f64 closely enough for a rate.
    let scale = |n: u64| (n as f64 / secs) as u64;
    for class in PeerClass::ALL {
        let t = added.of(class);
        rate.add(
            class,
            Traffic {
                sent: scale(t.sent),
                received: scale(t.received),
            },
        );
    }
    rate
}

/// The current wall-clock time as protocol time.
pub fn now() -> Timestamp {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp(u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
}

/// Counters the status page and tests read.
#[derive(Clone, Debug, Default)]
pub struct Counters {
    /// Chunks received that verified and were stored.
    pub chunks_stored: u64,
    /// Peers this node banned.
    pub peers_banned: u64,
    /// Chunks whose store write failed.
    pub store_failures: u64,
    /// Releases whose stored data was removed after the vendor pruned them.
    pub releases_forgotten: u64,
    /// Chunk bytes those removals freed.
    pub bytes_forgotten: u64,
    /// Chunks from peers that failed their blake3 check (each also bans its sender).
    pub chunks_rejected: u64,
    /// Inputs the engine refused (malformed or unwanted messages, local failures).
    pub inputs_refused: u64,
    /// Peers the network banned because their gossip score fell below the
    /// graylist threshold (also counted in `peers_banned`).
    pub peers_scored_out: u64,
    /// Requests from peers that did not decode (see [`MAX_MALFORMED_REQUESTS`]).
    pub requests_malformed: u64,
    /// The latest bans, oldest first, at most [`MAX_RECENT_BANS`].
    pub recent_bans: std::collections::VecDeque<BanRecord>,
    /// Timed bans that ended (the peer may connect again).
    pub bans_lifted: u64,
    /// The last write to the data directory failed because the disk (or quota)
    /// is full; cleared by the next write that succeeds. While set, fetching
    /// pauses now and then (see [`DISK_FULL_PAUSE_MIN`]), serving goes on.
    pub disk_full: bool,
    /// Payload bytes exchanged with peers by class (see [`crate::net::Traffic`]),
    /// sampled at most once per [`TRAFFIC_SAMPLE`]; bytes of a peer that
    /// disconnects between two samples are not counted.
    pub traffic: ClassTraffic,
    /// Payload bytes per second by class over the last sample interval
    /// (about [`TRAFFIC_SAMPLE`]; zero before the second sample).
    pub rate: ClassTraffic,
    /// Connected peers found by mDNS at the last sample.
    pub connected_lan: usize,
    /// Every other connected peer at the last sample.
    pub connected_wan: usize,
    /// Connected peers at the last sample, the most bytes exchanged first, at
    /// most [`MAX_PEERS_LISTED`] (the counts above cover them all).
    pub peers: Vec<PeerSample>,
}

/// Most bans [`Counters::recent_bans`] keeps: enough to see who a flood came
/// from, small enough to copy for every status request.
pub const MAX_RECENT_BANS: usize = 32;

/// Undecodable requests a peer may send before the driver bans it. An honest
/// node never sends one (requests are encoded by the same protocol crate);
/// a few are allowed so one corrupted frame does not cost a peer.
pub const MAX_MALFORMED_REQUESTS: u32 = 8;

/// Most peers whose malformed requests are counted at once; past it the
/// counts start again from zero (a flood of identities then costs each of
/// them a few more requests before its ban, not memory).
const MAX_STRIKE_PEERS: usize = 4096;

/// One ban, as the status page shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BanRecord {
    /// The banned peer.
    pub node: waveguard_protocol::NodeId,
    /// Why.
    pub reason: String,
    /// Its gossip score when banned, rounded down, if gossipsub scored it.
    pub score: Option<i64>,
    /// When (protocol time, milliseconds since the Unix epoch).
    pub at: Timestamp,
    /// When the ban ends; `None`: when the agent restarts (the engine's
    /// bans, which the engine keeps as long).
    pub until: Option<Timestamp>,
}

/// Most peers [`Counters::peers`] lists: enough for a person to read, small
/// enough that copying the counters for every status request costs nothing.
pub const MAX_PEERS_LISTED: usize = 64;

/// One connected peer as the last traffic sample saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerSample {
    /// The peer.
    pub node: waveguard_protocol::NodeId,
    /// How it was found.
    pub class: PeerClass,
    /// Payload bytes exchanged on its current connection.
    pub traffic: Traffic,
    /// Its gossip score, rounded down, if gossipsub scores it (negative
    /// after it delivered messages that failed validation).
    pub score: Option<i64>,
}

/// How often the loop copies per-peer traffic into [`Counters`]: often enough
/// for a scrape, rarely enough that walking every peer costs nothing.
pub const TRAFFIC_SAMPLE: std::time::Duration = std::time::Duration::from_secs(1);

/// A deliberate misbehaviour, for tests and benchmarks that need a hostile
/// peer running the real agent code. Reachable only through
/// [`Driver::inject_fault`], never from the configuration or command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// Flip one bit of every chunk this agent serves.
    CorruptUploads,
}

/// What the outside (HTTP API, tests) can see of a running agent.
#[derive(Clone, Default)]
pub struct Shared {
    /// The engine's status after the last event.
    pub status: Arc<Mutex<Option<NodeStatus>>>,
    /// Counters.
    pub counters: Arc<Mutex<Counters>>,
    /// Addresses the network listens on (filled in as listeners come up).
    pub listen: Arc<Mutex<Vec<libp2p::Multiaddr>>>,
    /// WAN windows, the upload cap and this month's WAN upload, once known.
    pub site: Arc<Mutex<Option<SiteStatus>>>,
    /// Commands to the driver loop; `None` when no driver owns this view
    /// (a default `Shared`, as in tests of the API alone).
    pub commands: Option<mpsc::Sender<Command>>,
}

/// The site settings' state, for `waveguard status`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SiteStatus {
    /// The calendar month counted, "YYYY-MM" in local time.
    pub month: String,
    /// Bytes uploaded to WAN peers this month.
    pub wan_upload_bytes: u64,
    /// The monthly cap (0: none).
    pub cap_bytes: u64,
    /// What the engine may do now.
    pub policy: Option<waveguard_protocol::fetch::TransferPolicy>,
    /// Peers found on the LAN (by mDNS).
    pub lan_peers: usize,
}

/// A request to the driver loop from outside it, answered on its oneshot.
#[derive(Debug)]
#[non_exhaustive]
pub enum Command {
    /// Verify a signed halt or resume directive against the node's current
    /// trust at the current time and, if it verifies, feed it to the engine,
    /// which applies it and passes it on to the mesh.
    Directive {
        /// The directive's signed JSON bytes.
        bytes: Vec<u8>,
        /// Where the verdict goes.
        reply: oneshot::Sender<Result<DirectiveReceipt, DirectiveError>>,
    },
    /// The latest health report of every node the engine's ledger holds for a
    /// release (what `waveguard bundle export-health` carries away).
    HealthReports {
        /// The release.
        release: ReleaseId,
        /// The reports; `None` if the node does not follow the release.
        reply: oneshot::Sender<Option<Vec<SignedHealth>>>,
    },
    /// A release bundle file to verify completely and store in this agent's
    /// store (off the loop, on the blocking pool); then its metadata, chunk
    /// list and chunks are fed to the engine, which serves the release.
    Bundle {
        /// The bundle file (a path on this machine).
        path: std::path::PathBuf,
        /// What was imported, or why not.
        reply: oneshot::Sender<Result<crate::bundle::ImportReport, String>>,
    },
    /// Health reports carried in from another site: fed to the engine, which
    /// verifies each like a gossiped report and passes on what it takes.
    Health {
        /// The reports.
        reports: Vec<SignedHealth>,
        /// What the engine made of them.
        reply: oneshot::Sender<HealthReceipt>,
    },
}

/// How long [`Shared::submit_bundle`] waits: verifying and storing a large
/// release bundle reads it twice from (possibly slow) removable media.
pub const BUNDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(4 * 3600);

/// What the engine made of imported health reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HealthReceipt {
    /// Reports handed in.
    pub reports: usize,
    /// Taken into the ledger as new (and passed on to the mesh).
    pub accepted: usize,
    /// Already held (the same message): nothing changed.
    pub known: usize,
    /// Not taken: bad signature or certificate, a release not followed, or
    /// older than what the ledger holds for the node.
    pub refused: usize,
}

/// What the engine made of a local directive that verified.
#[derive(Clone, Debug)]
pub struct DirectiveReceipt {
    /// The directive as verified.
    pub directive: Directive,
    /// Whether this node follows the release. A directive for a release it
    /// does not follow yet is kept until it does, and passed on.
    pub followed: bool,
    /// Whether the directive changed anything: it became the release's latest
    /// directive (or was kept for a release not followed yet). False when its
    /// seq is not above the latest accepted one: then nothing changes and it
    /// is not passed on.
    pub changed: bool,
    /// The release's directive state afterwards (`None` if not followed).
    pub state: Option<DirectiveState>,
    /// The release on this node afterwards (`None` if not followed).
    pub release: Option<ReleaseStatus>,
}

/// A directive handed to a running agent was not applied.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SubmitError {
    /// No driver loop is running behind this [`Shared`] (not started, or stopped).
    #[error("the agent's engine is not running")]
    NotRunning,
    /// The loop did not answer in time.
    #[error("the agent's engine did not answer within {0:?}; it may still apply the directive (see `waveguard status`)")]
    Timeout(std::time::Duration),
    /// The engine refused it: it does not verify against the node's trust now.
    #[error("directive refused: {0}")]
    Refused(#[source] DirectiveError),
}

impl Shared {
    /// Asks the driver loop for the health reports it holds for `release`
    /// (`Ok(None)` if it does not follow the release).
    pub async fn health_reports(
        &self,
        release: ReleaseId,
    ) -> Result<Option<Vec<SignedHealth>>, SubmitError> {
        self.ask(
            |reply| Command::HealthReports { release, reply },
            COMMAND_TIMEOUT,
        )
        .await
    }

    /// Hands carried health reports to the driver loop and waits for the receipt.
    pub async fn submit_health(
        &self,
        reports: Vec<SignedHealth>,
    ) -> Result<HealthReceipt, SubmitError> {
        self.ask(|reply| Command::Health { reports, reply }, COMMAND_TIMEOUT)
            .await
    }

    /// Has the driver import the bundle file at `path` (see [`Command::Bundle`])
    /// and waits for the outcome (at most [`BUNDLE_TIMEOUT`]).
    pub async fn submit_bundle(
        &self,
        path: std::path::PathBuf,
    ) -> Result<Result<crate::bundle::ImportReport, String>, SubmitError> {
        self.ask(|reply| Command::Bundle { path, reply }, BUNDLE_TIMEOUT)
            .await
    }

    /// Sends a command and waits for its answer (at most `limit`).
    async fn ask<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<T>) -> Command,
        limit: std::time::Duration,
    ) -> Result<T, SubmitError> {
        let commands = self.commands.as_ref().ok_or(SubmitError::NotRunning)?;
        let (reply, answer) = oneshot::channel();
        let asked = async {
            commands
                .send(command(reply))
                .await
                .map_err(|_| SubmitError::NotRunning)?;
            answer.await.map_err(|_| SubmitError::NotRunning)
        };
        match tokio::time::timeout(limit, asked).await {
            Ok(r) => r,
            Err(_) => Err(SubmitError::Timeout(limit)),
        }
    }

    /// Hands a signed directive to the driver loop and waits for its verdict
    /// (at most [`COMMAND_TIMEOUT`]).
    pub async fn submit_directive(&self, bytes: Vec<u8>) -> Result<DirectiveReceipt, SubmitError> {
        let commands = self.commands.as_ref().ok_or(SubmitError::NotRunning)?;
        let (reply, answer) = oneshot::channel();
        let asked = async {
            commands
                .send(Command::Directive { bytes, reply })
                .await
                .map_err(|_| SubmitError::NotRunning)?;
            // A dropped reply sender means the loop stopped before answering.
            answer.await.map_err(|_| SubmitError::NotRunning)
        };
        match tokio::time::timeout(COMMAND_TIMEOUT, asked).await {
            Ok(Ok(verdict)) => verdict.map_err(SubmitError::Refused),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(SubmitError::Timeout(COMMAND_TIMEOUT)),
        }
    }
}

/// A running agent: engine, network, store and installer.
pub struct Driver {
    node: Node,
    net: Network,
    store: Arc<Store>,
    installer: Installer,
    local_tx: mpsc::Sender<Input>,
    local_rx: mpsc::Receiver<Input>,
    commands: mpsc::Receiver<Command>,
    /// Target path of each assembled release, to find its staged artifact.
    targets: HashMap<ReleaseId, String>,
    wake: Timestamp,
    shared: Shared,
    /// Each connected peer's traffic at the last sample, to add only what is new.
    traffic_seen: HashMap<waveguard_protocol::NodeId, Traffic>,
    traffic_sampled: Option<std::time::Instant>,
    /// Peers found by mDNS, counted as [`PeerClass::Lan`] (at most [`MAX_LAN_PEERS`]).
    lan_peers: HashSet<waveguard_protocol::NodeId>,
    /// LAN peers last handed to the engine as its site (re-sent when mDNS finds more).
    site_peers_sent: usize,
    /// WAN windows and the upload cap (`None`: the engine is never restricted).
    site: Option<crate::site::SiteState>,
    fault: Option<Fault>,
    /// Full-disk failures seen by background work (chunk writes, staging, installs).
    no_space: Arc<AtomicU64>,
    /// [`Self::no_space`] when the loop last looked.
    no_space_seen: u64,
    /// Fetching is paused until then because the disk was full.
    fetch_paused_until: Option<std::time::Instant>,
    /// The next full-disk pause.
    disk_pause: std::time::Duration,
    /// Undecodable requests per peer (at most [`MAX_STRIKE_PEERS`] peers).
    malformed: HashMap<waveguard_protocol::NodeId, u32>,
}

impl Driver {
    /// Wires an engine to its network, store and installer.
    pub fn new(node: Node, net: Network, store: Arc<Store>, installer: Installer) -> Driver {
        let (local_tx, local_rx) = mpsc::channel(LOCAL_QUEUE);
        let (command_tx, commands) = mpsc::channel(COMMAND_QUEUE);
        let shared = Shared {
            commands: Some(command_tx),
            ..Shared::default()
        };
        Driver {
            node,
            net,
            store,
            installer,
            local_tx,
            local_rx,
            commands,
            targets: HashMap::new(),
            wake: now(),
            shared,
            traffic_seen: HashMap::new(),
            traffic_sampled: None,
            lan_peers: HashSet::new(),
            site_peers_sent: 0,
            site: None,
            fault: None,
            no_space: Arc::new(AtomicU64::new(0)),
            no_space_seen: 0,
            fetch_paused_until: None,
            disk_pause: DISK_FULL_PAUSE_MIN,
            malformed: HashMap::new(),
        }
    }

    /// The transfer policy the engine should follow now: the site's, with
    /// fetching off while paused for a full disk (serving goes on: what is
    /// held is still good).
    fn effective_policy(&self) -> waveguard_protocol::fetch::TransferPolicy {
        let mut policy = self
            .site
            .as_ref()
            .and_then(|s| s.current)
            .unwrap_or_default();
        if self.fetch_paused_until.is_some() {
            policy.lan_fetch = false;
            policy.wan_fetch = false;
        }
        policy
    }

    /// Pauses fetching when background work found the disk full, and resumes
    /// it when the pause is over (a chunk stored then shows space came back;
    /// another failure pauses again, for longer).
    fn check_disk(&mut self) {
        let failures = self.no_space.load(Ordering::Relaxed);
        let changed = if failures != self.no_space_seen {
            self.no_space_seen = failures;
            if self.fetch_paused_until.is_some() {
                false
            } else {
                warn!(
                    pause = ?self.disk_pause,
                    "the disk is full: fetching paused (still serving held chunks); free some space"
                );
                self.fetch_paused_until = Some(std::time::Instant::now() + self.disk_pause);
                self.disk_pause = (self.disk_pause * 2).min(DISK_FULL_PAUSE_MAX);
                true
            }
        } else if self
            .fetch_paused_until
            .is_some_and(|t| std::time::Instant::now() >= t)
        {
            self.fetch_paused_until = None;
            info!("fetching again after a full disk");
            true
        } else {
            false
        };
        if changed {
            let policy = self.effective_policy();
            self.node.handle_input(now(), Input::TransferPolicy(policy));
            self.drain_outputs();
        }
    }

    /// A retry schedule for background work that found the disk full.
    fn full_disk_retry(&self) -> FullDiskRetry {
        FullDiskRetry {
            pause: DISK_FULL_PAUSE_MIN,
            counters: self.shared.counters.clone(),
            no_space: self.no_space.clone(),
        }
    }

    /// Background work's record of a write that found the disk full (`true`)
    /// or succeeded (`false`).
    fn disk_outcome(counters: &Arc<Mutex<Counters>>, no_space: &Arc<AtomicU64>, full: bool) {
        if full {
            no_space.fetch_add(1, Ordering::Relaxed);
        }
        if let Ok(mut c) = counters.lock() {
            c.disk_full = full;
        }
    }

    /// A release's product and version from the trusted metadata (also right after a restart,
    /// when the engine resumes a release it installed before).
    fn product_version(&self, release: &ReleaseId) -> (String, String) {
        self.node
            .trust()
            .release(release)
            .map(|r| (r.info.product, r.info.version))
            .unwrap_or_default()
    }

    /// Applies WAN windows and the monthly WAN upload cap from now on.
    pub fn set_site(&mut self, site: crate::site::SiteState) {
        self.site = Some(site);
        self.update_site(0);
    }

    /// Hands the engine its LAN peers when mDNS found new ones, and the
    /// transfer policy when the time, the month or the upload count changed it.
    fn update_site(&mut self, wan_sent: u64) {
        if self.lan_peers.len() != self.site_peers_sent {
            self.site_peers_sent = self.lan_peers.len();
            let peers = self.lan_peers.iter().copied().collect();
            self.node.handle_input(now(), Input::SitePeers(peers));
            self.drain_outputs();
        }
        let Some(site) = self.site.as_mut() else {
            return;
        };
        let changed = site.update(now().as_millis(), wan_sent);
        let status = SiteStatus {
            month: site.counter.month.clone(),
            wan_upload_bytes: site.counter.bytes,
            cap_bytes: site.policy.cap,
            policy: site.current,
            lan_peers: self.lan_peers.len(),
        };
        if let Some(policy) = changed {
            info!(
                ?policy,
                month_wan_upload = status.wan_upload_bytes,
                "transfer policy"
            );
            let policy = self.effective_policy();
            self.node.handle_input(now(), Input::TransferPolicy(policy));
            self.drain_outputs();
        }
        if let Ok(mut s) = self.shared.site.lock() {
            *s = Some(status);
        }
    }

    /// Makes this agent misbehave from now on (see [`Fault`]).
    pub fn inject_fault(&mut self, fault: Fault) {
        warn!(
            ?fault,
            "fault injected: this agent now misbehaves on purpose"
        );
        self.fault = Some(fault);
    }

    /// Handles for the HTTP API and tests.
    pub fn shared(&self) -> Shared {
        self.shared.clone()
    }

    /// This node's ID.
    pub fn node_id(&self) -> waveguard_protocol::NodeId {
        self.node.id()
    }

    /// Addresses the network listens on.
    pub fn listen_addrs(&self) -> Vec<libp2p::Multiaddr> {
        self.net.listen_addrs()
    }

    /// The network, for dialing peers before the loop starts.
    pub fn network_mut(&mut self) -> &mut Network {
        &mut self.net
    }

    /// Feeds one input now and carries out what follows.
    pub fn input(&mut self, input: Input) {
        self.node.handle_input(now(), input);
        self.drain();
    }

    /// Runs until `shutdown` resolves.
    pub async fn run(mut self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        self.drain();
        // Traffic is sampled after events and, when nothing happens, on this clock,
        // so counters settle soon after a transfer ends.
        let mut sampler = tokio::time::interval(TRAFFIC_SAMPLE);
        sampler.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let wait = std::time::Duration::from_millis(
                self.wake.as_millis().saturating_sub(now().as_millis()),
            );
            let input = tokio::select! {
                biased;
                () = &mut shutdown => break,
                Some(input) = self.local_rx.recv() => Some(input),
                Some(command) = self.commands.recv() => {
                    // Feeds the engine and drains itself.
                    self.on_command(command);
                    continue;
                }
                event = self.net.next_event() => self.net_input(event),
                () = tokio::time::sleep(wait) => Some(Input::Tick),
                _ = sampler.tick() => {
                    self.sample_traffic();
                    self.check_disk();
                    continue;
                }
            };
            if let Some(input) = input {
                if matches!(input, Input::ChunkStored { .. }) {
                    // The disk takes chunks again: a later full disk starts with a short pause.
                    self.disk_pause = DISK_FULL_PAUSE_MIN;
                }
                self.node.handle_input(now(), input);
            }
            self.drain();
        }
        if let Some(site) = self.site.as_mut() {
            site.save();
        }
        info!("agent stopped");
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Directive { bytes, reply } => {
                let verdict = self.directive(bytes);
                // The asker may have given up waiting; the directive stands either way.
                let _ = reply.send(verdict);
            }
            Command::HealthReports { release, reply } => {
                let _ = reply.send(self.node.health_reports(&release));
            }
            Command::Health { reports, reply } => {
                let receipt = self.health(reports);
                let _ = reply.send(receipt);
            }
            Command::Bundle { path, reply } => self.import_bundle(path, reply),
        }
    }

    /// Imports a bundle on the blocking pool against the engine's trust now;
    /// what it stored comes back as local inputs, metadata first so the
    /// engine follows the release before it hears of its list and chunks.
    fn import_bundle(
        &self,
        path: std::path::PathBuf,
        reply: oneshot::Sender<Result<crate::bundle::ImportReport, String>>,
    ) {
        let store = self.store.clone();
        let trust = self.node.trust().clone();
        let tx = self.local_tx.clone();
        let at = now();
        tokio::task::spawn_blocking(move || {
            match crate::bundle::import_into(&store, &trust, &path, at, false) {
                Ok(imported) => {
                    let release = imported.report.release;
                    let v = imported.verified;
                    let _ = tx.blocking_send(Input::Metadata(v.metadata));
                    let _ = tx.blocking_send(Input::ChunkList {
                        release,
                        data: v.list_bytes,
                    });
                    let _ = tx.blocking_send(Input::ChunksHeld(imported.chunks));
                    let mut report = imported.report;
                    report.running = true;
                    let _ = reply.send(Ok(report));
                }
                Err(e) => {
                    let _ = reply.send(Err(e.to_string()));
                }
            }
        });
    }

    /// Feeds carried health reports to the engine and counts what it took.
    fn health(&mut self, reports: Vec<SignedHealth>) -> HealthReceipt {
        let known: Vec<bool> = reports.iter().map(|r| self.node.holds_report(r)).collect();
        let mut receipt = HealthReceipt {
            reports: reports.len(),
            ..HealthReceipt::default()
        };
        let check = reports.clone();
        self.node.handle_input(now(), Input::Health(reports));
        self.drain();
        for (r, was) in check.iter().zip(known) {
            match (was, self.node.holds_report(r)) {
                (true, _) => receipt.known += 1,
                (false, true) => receipt.accepted += 1,
                (false, false) => receipt.refused += 1,
            }
        }
        receipt
    }

    /// Verifies a local directive now and, if it holds, feeds it to the
    /// engine; the engine decides what it changes.
    fn directive(&mut self, bytes: Vec<u8>) -> Result<DirectiveReceipt, DirectiveError> {
        let at = now();
        let directive = self.node.check_directive_at(&bytes, at)?;
        let id = directive.release;
        let before = self.node.directive_state(&id);
        self.node.handle_input(at, Input::Directive(bytes));
        self.drain();
        let state = self.node.directive_state(&id);
        let release = match state {
            Some(_) => self.node.status().releases.into_iter().find(|r| r.id == id),
            None => None,
        };
        Ok(DirectiveReceipt {
            directive,
            followed: state.is_some(),
            changed: state.is_none() || state != before,
            state,
            release,
        })
    }

    fn net_input(&mut self, event: NetEvent) -> Option<Input> {
        match event {
            NetEvent::PeerConnected(peer) => Some(Input::PeerConnected(peer)),
            NetEvent::PeerDisconnected(peer) => {
                // Undecodable requests count per connection spell: a peer that
                // restarts starts again from zero.
                self.malformed.remove(&peer);
                Some(Input::PeerDisconnected(peer))
            }
            NetEvent::BanLifted(peer) => {
                info!(%peer, "ban ended: the peer may connect again");
                self.count(|c| c.bans_lifted += 1);
                None
            }
            NetEvent::Gossip {
                from,
                message_id,
                data,
                ..
            } => Some(Input::Gossip {
                from,
                message_id,
                data,
            }),
            NetEvent::Request {
                from,
                request_id,
                data,
            } => {
                if waveguard_protocol::wire::Request::decode(&data).is_err() && self.strike(from) {
                    // Unanswered: dropping the handle fails the request, and the ban closes the connection.
                    return None;
                }
                Some(Input::Request {
                    from,
                    request_id,
                    data,
                })
            }
            NetEvent::PeerScoredOut {
                peer,
                score,
                length,
            } => {
                warn!(%peer, score, ?length, "banning peer: its gossip score fell below the graylist threshold");
                self.record_ban(
                    peer,
                    format!("gossip score {score} below the graylist threshold"),
                    Some(score),
                    Some(length),
                );
                self.count(|c| c.peers_scored_out += 1);
                None
            }
            NetEvent::Response {
                from,
                request_id,
                data,
            } => Some(Input::Response {
                from,
                request_id,
                data,
            }),
            NetEvent::RequestFailed { request_id, reason } => {
                debug!(request_id, ?reason, "request failed");
                Some(Input::RequestFailed { request_id })
            }
            NetEvent::Discovered {
                peer,
                via: Discovery::Mdns,
            } => {
                if self.lan_peers.len() < MAX_LAN_PEERS {
                    self.lan_peers.insert(peer);
                }
                None
            }
            NetEvent::Listening(addr) => {
                info!(%addr, "listening");
                if let Ok(mut l) = self.shared.listen.lock() {
                    l.push(addr);
                }
                None
            }
            other => {
                debug!(?other, "network");
                None
            }
        }
    }

    /// Counts an undecodable request from `peer`; at [`MAX_MALFORMED_REQUESTS`]
    /// bans it and returns true.
    fn strike(&mut self, peer: waveguard_protocol::NodeId) -> bool {
        self.count(|c| c.requests_malformed += 1);
        if self.net.is_banned(&peer) {
            // Already on its way out (requests read before the ban still arrive).
            return true;
        }
        if self.malformed.len() >= MAX_STRIKE_PEERS && !self.malformed.contains_key(&peer) {
            self.malformed.clear();
        }
        let strikes = self.malformed.entry(peer).or_insert(0);
        *strikes += 1;
        if *strikes < MAX_MALFORMED_REQUESTS {
            return false;
        }
        self.malformed.remove(&peer);
        let reason = format!("sent {MAX_MALFORMED_REQUESTS} requests that do not decode");
        warn!(%peer, %reason, "banning peer");
        let score = self.net.peer_score(&peer).map(|s| s.floor() as i64);
        match self.net.ban_repeat(peer, MALFORMED_BAN) {
            Ok(length) => self.record_ban(peer, reason, score, Some(length)),
            Err(e) => debug!(%e, "ban"),
        }
        true
    }

    /// Counts a ban of `length` (`None`: until the agent restarts) and keeps
    /// it among the recent ones.
    fn record_ban(
        &self,
        node: waveguard_protocol::NodeId,
        reason: String,
        score: Option<i64>,
        length: Option<std::time::Duration>,
    ) {
        let at = now();
        let until =
            length.map(|l| at.plus_millis(u64::try_from(l.as_millis()).unwrap_or(u64::MAX)));
        self.count(|c| {
            c.peers_banned += 1;
            if c.recent_bans.len() >= MAX_RECENT_BANS {
                c.recent_bans.pop_front();
            }
            c.recent_bans.push_back(BanRecord {
                node,
                reason,
                score,
                at,
                until,
            });
        });
    }

    fn drain(&mut self) {
        self.drain_outputs();
        self.sample_traffic();
        self.check_disk();
    }

    /// Carries out everything the engine asked for and publishes its status.
    fn drain_outputs(&mut self) {
        loop {
            match self.node.poll_output() {
                Output::Timeout(t) => {
                    self.wake = t;
                    break;
                }
                out => self.carry_out(out),
            }
        }
        if let Ok(mut s) = self.shared.status.lock() {
            *s = Some(self.node.status());
        }
    }

    /// Adds the bytes exchanged since the last sample to the counters, and has
    /// the network ban peers whose gossip score fell below the graylist threshold.
    fn sample_traffic(&mut self) {
        let due = self
            .traffic_sampled
            .is_none_or(|t| t.elapsed() >= TRAFFIC_SAMPLE);
        if !due {
            return;
        }
        let elapsed = self.traffic_sampled.map(|t| t.elapsed());
        self.traffic_sampled = Some(std::time::Instant::now());
        // Here rather than on a timer of its own: this runs about once a second
        // also while network events keep the loop busy. Bans and their ends
        // show up as events.
        self.net.ban_scored_out();
        self.net.expire_bans();
        let mut added = ClassTraffic::default();
        let mut wan_sent = 0u64;
        let mut seen = HashMap::new();
        let mut peers = Vec::new();
        let (mut connected_lan, mut connected_wan) = (0usize, 0usize);
        for peer in self.net.connected_peers() {
            let class = match self.lan_peers.contains(&peer) {
                true => PeerClass::Lan,
                false => PeerClass::Wan,
            };
            match class {
                PeerClass::Lan => connected_lan += 1,
                PeerClass::Wan => connected_wan += 1,
            }
            let Some(now) = self.net.traffic(&peer) else {
                continue;
            };
            peers.push(PeerSample {
                node: peer,
                class,
                traffic: now,
                score: self.net.peer_score(&peer).map(|s| s.floor() as i64),
            });
            // A peer that reconnected starts again from zero.
            let before = self
                .traffic_seen
                .get(&peer)
                .filter(|b| b.sent <= now.sent && b.received <= now.received)
                .copied()
                .unwrap_or_default();
            if class == PeerClass::Wan {
                wan_sent = wan_sent.saturating_add(now.sent - before.sent);
            }
            added.add(
                class,
                Traffic {
                    sent: now.sent - before.sent,
                    received: now.received - before.received,
                },
            );
            seen.insert(peer, now);
        }
        self.traffic_seen = seen;
        peers.sort_by_key(|p| std::cmp::Reverse(p.traffic.sent.saturating_add(p.traffic.received)));
        peers.truncate(MAX_PEERS_LISTED);
        let rate = per_second(&added, elapsed);
        self.count(|c| {
            c.traffic.merge(&added);
            c.rate = rate;
            c.connected_lan = connected_lan;
            c.connected_wan = connected_wan;
            c.peers = peers;
        });
        self.update_site(wan_sent);
    }

    /// Runs blocking work on the blocking pool; its answer comes back as an input.
    fn background(&self, work: impl FnOnce() -> Input + Send + 'static) {
        let tx = self.local_tx.clone();
        tokio::task::spawn_blocking(move || {
            let input = work();
            // The loop has stopped only when the agent shuts down; nothing to do then.
            let _ = tx.blocking_send(input);
        });
    }

    fn count(&self, f: impl FnOnce(&mut Counters)) {
        if let Ok(mut c) = self.shared.counters.lock() {
            f(&mut c);
        }
    }

    fn carry_out(&mut self, out: Output) {
        match out {
            Output::Broadcast { topic, data } => {
                if let Err(e) = self.net.publish(topic, data) {
                    debug!(topic, %e, "publish");
                }
            }
            Output::GossipVerdict {
                message_id,
                verdict,
            } => {
                if let Err(e) = self.net.report_verdict(message_id, verdict) {
                    debug!(%e, "verdict");
                }
            }
            Output::SendRequest {
                to,
                request_id,
                data,
            } => {
                // Decoded only when the line is wanted: this is every outgoing request.
                if tracing::enabled!(target: CHUNK_LOG_TARGET, tracing::Level::DEBUG) {
                    if let Ok(waveguard_protocol::wire::Request::Chunk { release, index }) =
                        waveguard_protocol::wire::Request::decode(&data)
                    {
                        debug!(target: CHUNK_LOG_TARGET, %release, index, peer = %to, "chunk requested");
                    }
                }
                self.net.send_request(to, request_id, data)
            }
            Output::Respond {
                request_id, data, ..
            } => {
                let data = match self.fault {
                    Some(Fault::CorruptUploads) => corrupt_chunk_response(data),
                    None => data,
                };
                if let Err(e) = self.net.respond(request_id, data) {
                    debug!(%e, "respond");
                }
            }
            Output::LoadChunk {
                token,
                hash,
                length,
            } => {
                let store = self.store.clone();
                self.background(move || {
                    let data = store.get_chunk(&hash, length).ok().flatten();
                    Input::ChunkLoaded { token, data }
                });
            }
            Output::StoreChunk { hash, data } => {
                let store = self.store.clone();
                let (counters, no_space) = (self.shared.counters.clone(), self.no_space.clone());
                self.background(move || match store.put_chunk(&hash, &data) {
                    Ok(()) => {
                        // Logged once the record is durable: a test reads this line as
                        // "held, never to be fetched again", also across a crash.
                        debug!(target: CHUNK_LOG_TARGET, chunk = %hex::encode(hash), "chunk stored");
                        if let Ok(mut c) = counters.lock() {
                            c.chunks_stored += 1;
                        }
                        Driver::disk_outcome(&counters, &no_space, false);
                        Input::ChunkStored { hash }
                    }
                    Err(e) => {
                        let full = matches!(e, crate::store::PutError::NoSpace { .. });
                        if full {
                            // The driver loop logs the full disk once per pause.
                            debug!(chunk = %hex::encode(hash), %e, "chunk not stored");
                        } else {
                            warn!(chunk = %hex::encode(hash), %e, "chunk not stored");
                        }
                        if let Ok(mut c) = counters.lock() {
                            c.store_failures += 1;
                        }
                        Driver::disk_outcome(&counters, &no_space, full);
                        Input::ChunkStoreFailed {
                            hash,
                            reason: e.to_string(),
                        }
                    }
                });
            }
            Output::StoreChunkList { release, data } => {
                if let Err(e) = self.store.put_chunk_list(&release, &data) {
                    warn!(%release, %e, "could not keep chunk list");
                }
            }
            Output::StoreRollout { release, data } => {
                // Synchronous, like trust: the outputs after it (a rollback, say) may rely on it.
                if let Err(e) = self.store.put_rollout(&release, &data) {
                    warn!(%release, %e, "could not keep the rollout record");
                }
            }
            Output::StoreTrust(stored) => {
                if let Err(e) = self.store.put_trust(&stored) {
                    warn!(%e, "could not keep trusted metadata");
                }
            }
            Output::Assemble {
                release,
                target_path,
                length,
                blake3,
                chunks,
            } => {
                self.targets.insert(release, target_path.clone());
                let store = self.store.clone();
                let tx = self.local_tx.clone();
                let mut retry = self.full_disk_retry();
                tokio::spawn(async move {
                    let input = loop {
                        let (store, target_path, chunks) =
                            (store.clone(), target_path.clone(), chunks.clone());
                        let assembled = tokio::task::spawn_blocking(move || {
                            store.assemble(&release, &target_path, length, &blake3, &chunks)
                        })
                        .await;
                        match assembled {
                            Ok(Ok(_)) => {
                                Driver::disk_outcome(&retry.counters, &retry.no_space, false);
                                break Input::ArtifactStaged {
                                    release,
                                    result: Ok(()),
                                };
                            }
                            // A full disk is this machine's problem, not the release's: wait
                            // for space instead of failing the release (which would halt it).
                            Ok(Err(e @ crate::store::AssembleError::NoSpace { .. })) => {
                                warn!(%release, %e, retry_in = ?retry.pause, "cannot stage the artifact: the disk is full");
                                retry.wait().await;
                            }
                            // Our store lost a chunk: fetch it again instead of giving the release up.
                            Ok(Err(e)) => match e.lost_chunk() {
                                Some(hash) => break Input::ChunkLost { hash },
                                None => {
                                    break Input::ArtifactStaged {
                                        release,
                                        result: Err(e.to_string()),
                                    }
                                }
                            },
                            Err(e) => {
                                break Input::ArtifactStaged {
                                    release,
                                    result: Err(format!("staging stopped: {e}")),
                                }
                            }
                        }
                    };
                    // The loop has stopped only when the agent shuts down; nothing to do then.
                    let _ = tx.send(input).await;
                });
            }
            Output::Install {
                release,
                product,
                version,
            } => {
                let staged = self
                    .targets
                    .get(&release)
                    .map(|t| self.store.staged_path(&release, t));
                let installer = self.installer.clone();
                let tx = self.local_tx.clone();
                let mut retry = self.full_disk_retry();
                tokio::spawn(async move {
                    let result = loop {
                        let Some(path) = &staged else {
                            break Err("the staged artifact is gone".to_string());
                        };
                        let installed = installer
                            .install(InstallRequest {
                                release: &release,
                                product: &product,
                                version: &version,
                                staged: path,
                            })
                            .await;
                        match installed {
                            // As when staging: wait for space rather than report the release failed.
                            Err(e) if e.is_no_space() => {
                                warn!(%release, %e, retry_in = ?retry.pause, "cannot install: the disk is full");
                                retry.wait().await;
                            }
                            other => break other.map(|_| ()).map_err(|e| e.to_string()),
                        }
                    };
                    let _ = tx.send(Input::InstallFinished { release, result }).await;
                });
            }
            Output::RunProbe { release } => {
                let (product, version) = self.product_version(&release);
                let installer = self.installer.clone();
                let tx = self.local_tx.clone();
                tokio::spawn(async move {
                    let healthy = installer.probe(&release, &product, &version).await;
                    let _ = tx.send(Input::ProbeFinished { release, healthy }).await;
                });
            }
            Output::Rollback { release } => {
                let (product, version) = self.product_version(&release);
                let installer = self.installer.clone();
                let tx = self.local_tx.clone();
                tokio::spawn(async move {
                    let result = installer
                        .rollback(&release, &product, &version)
                        .await
                        .map_err(|e| e.to_string());
                    let _ = tx.send(Input::RollbackFinished { release, result }).await;
                });
            }
            Output::Forget { release } => {
                let store = self.store.clone();
                let counters = self.shared.counters.clone();
                // Off the loop: thousands of files may go. A chunk the engine stores again
                // meanwhile is kept if its release's list was stored first (it always is
                // before its chunks are fetched); otherwise it is found missing and fetched.
                tokio::task::spawn_blocking(move || match store.forget_release(&release) {
                    Ok(done) => {
                        info!(%release, chunks = done.chunks, bytes = done.bytes, shared = done.shared,
                            "release no longer in trusted metadata: its stored data removed");
                        if let Ok(mut c) = counters.lock() {
                            c.releases_forgotten += 1;
                            c.bytes_forgotten += done.bytes;
                        }
                    }
                    Err(e) => {
                        warn!(%release, %e, "could not remove the data of a retired release; retried at the next start")
                    }
                });
            }
            Output::Ban {
                peer,
                reason,
                until,
            } => {
                warn!(%peer, %reason, %until, "banning peer");
                let score = self.net.peer_score(&peer).map(|s| s.floor() as i64);
                // As long as the engine's own ban, which the engine lifts at `until` too.
                let length = std::time::Duration::from_millis(until.millis_since(now()));
                self.record_ban(peer, reason, score, Some(length));
                if let Err(e) = self.net.ban_for(peer, Some(length)) {
                    debug!(%e, "ban");
                }
            }
            Output::Event(event) => {
                match event {
                    NodeEvent::Refused { .. } => self.count(|c| c.inputs_refused += 1),
                    NodeEvent::ChunkRejected { .. } => self.count(|c| c.chunks_rejected += 1),
                    _ => {}
                }
                log_event(&event)
            }
            Output::Timeout(t) => self.wake = t,
            other => debug!(?other, "unhandled output"),
        }
    }
}

/// A chunk response with one bit of the chunk flipped; other responses unchanged.
fn corrupt_chunk_response(data: Vec<u8>) -> Vec<u8> {
    match waveguard_protocol::wire::Response::decode(&data) {
        Ok(waveguard_protocol::wire::Response::Chunk(mut bytes)) if !bytes.is_empty() => {
            let middle = bytes.len() / 2;
            bytes[middle] ^= 0x10;
            waveguard_protocol::wire::Response::Chunk(bytes).encode()
        }
        _ => data,
    }
}

fn log_event(event: &NodeEvent) {
    match event {
        NodeEvent::Halted { release, reason } => warn!(%release, ?reason, "release halted"),
        NodeEvent::PeerBanned { peer, reason } => warn!(%peer, %reason, "peer banned"),
        NodeEvent::StoreCorrupt { hash } => {
            warn!(chunk = %hex::encode(hash), "damaged chunk dropped from the store")
        }
        NodeEvent::Refused { from, reason } => debug!(?from, %reason, "refused"),
        NodeEvent::ClockFarOff { offset_ms } => warn!(
            offset_ms,
            "this node's clock is far off the fleet's (offset = fleet minus ours, from peers' \
             health reports); installs wait until it is set right (check NTP)"
        ),
        NodeEvent::ClockAgrees { offset_ms } => {
            info!(offset_ms, "this node's clock agrees with the fleet's again")
        }
        other => info!(?other, "node"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_bytes_over_the_sample_interval() {
        let mut added = ClassTraffic::default();
        added.add(
            PeerClass::Wan,
            Traffic {
                sent: 3000,
                received: 1 << 20,
            },
        );
        let rate = per_second(&added, Some(std::time::Duration::from_millis(1500)));
        assert_eq!(
            rate.of(PeerClass::Wan),
            Traffic {
                sent: 2000,
                received: 699_050
            }
        );
        assert_eq!(rate.of(PeerClass::Lan), Traffic::default());
        // The first sample has no interval behind it.
        assert_eq!(per_second(&added, None), ClassTraffic::default());
    }
}
