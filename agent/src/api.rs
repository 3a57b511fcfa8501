//! The agent's local HTTP API: `GET /` (the live dashboard, see
//! [`crate::dashboard`]), `GET /status` (JSON), `GET /metrics`
//! (Prometheus text), `POST /directive` (a signed halt or resume),
//! `POST /bundle` (import a release bundle file) and `GET /health/{release}`
//! / `POST /health` (health bundles carried to and from isolated sites),
//! served by axum next to the driver loop.
//!
//! The `GET` handlers only read the driver's [`Shared`] snapshot, so they
//! never block or steer the engine. `POST /directive` hands the body to the
//! driver loop through its command queue and waits for the verdict: the
//! engine verifies the directive against the node's trust at that moment
//! (signature, expiry, shape) and decides what it changes, so the API itself
//! trusts nothing it is sent. The JSON is this module's own [`StatusView`]
//! (serializable both ways, with hex IDs, state names, per-wave counts and a
//! human halt reason), not the engine's types, so `waveguard status` can read
//! it back and the protocol crate stays free to change its internals. The
//! API has no authentication: it is meant for loopback, which is the default
//! listen address.

use crate::driver::{Counters, DirectiveReceipt, Shared, SubmitError};
use crate::metrics::PeerClass;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use thiserror::Error;
use tokio::net::TcpListener;
use waveguard_protocol::bundle::health as health_bundle;
use waveguard_protocol::clock::ClockCheck;
use waveguard_protocol::health::directive::{DirectiveAction, DirectiveState};
use waveguard_protocol::health::gate::{GateState, WaveHealth};
use waveguard_protocol::limits::MAX_DIRECTIVE_BYTES;
use waveguard_protocol::node::{NodeStatus, ReleaseStatus};
use waveguard_protocol::rollout::{HaltReason, RolloutState};
use waveguard_protocol::{NodeId, Timestamp};

/// The content type of Prometheus text exposition (what prometheus-client writes).
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The API server could not run.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ApiError {
    /// The listen address could not be bound.
    #[error("cannot listen for the HTTP API on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The server stopped with an error.
    #[error("the HTTP API server failed: {0}")]
    Serve(#[source] std::io::Error),
}

/// What the handlers read: the driver's shared view and this node's ID.
#[derive(Clone)]
pub struct ApiState {
    /// The driver's shared status, counters and listen addresses.
    pub shared: Shared,
    /// This node's ID.
    pub node: NodeId,
}

/// `GET /status`: the whole agent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusView {
    /// This node's libp2p PeerId.
    pub node: String,
    /// This node's ID as 64 hex digits.
    pub node_hex: String,
    /// False until the engine has handled its first event (the rest reads 0 then).
    pub ready: bool,
    /// Connected peers.
    pub peers: usize,
    /// Banned peers.
    pub banned: usize,
    /// Version of the trusted root metadata.
    pub root_version: u64,
    /// Addresses the network listens on.
    pub listen: Vec<String>,
    /// The driver's counters.
    pub counters: CountersView,
    /// Releases this node follows.
    pub releases: Vec<ReleaseView>,
    /// WAN windows, the upload cap and this month's WAN upload (absent from older agents).
    #[serde(default)]
    pub site: Option<crate::driver::SiteStatus>,
    /// Connected peers split by LAN and WAN, and the busiest of them (absent
    /// from older agents). Sampled with the traffic counters, about once a
    /// second, so it may lag `peers` (the engine's count) a little.
    #[serde(default)]
    pub connected: PeersView,
    /// The fleet's clock minus this node's, in milliseconds (positive: this
    /// node's clock is behind), as estimated from peers' health reports; absent
    /// without enough of them, and from older agents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock_offset_ms: Option<i64>,
    /// Whether that estimate puts this node's clock too far off to install
    /// (`unknown`, `agrees`, `far-off`); absent from older agents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock: Option<ClockCheck>,
}

/// Connected peers at the driver's last traffic sample.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeersView {
    /// Peers found by mDNS on the local link.
    pub lan: usize,
    /// Every other peer (bootstrap, Kademlia, inbound).
    pub wan: usize,
    /// The peers with the most bytes exchanged first, at most
    /// [`crate::driver::MAX_PEERS_LISTED`] (`lan` and `wan` count them all).
    pub list: Vec<PeerView>,
}

/// One connected peer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerView {
    /// Its libp2p PeerId.
    pub id: String,
    /// `lan` (found by mDNS) or `wan`.
    pub class: String,
    /// Payload bytes sent to it on its current connection.
    pub up: u64,
    /// Payload bytes received from it on its current connection.
    pub down: u64,
    /// Its gossipsub score, rounded down (negative after it delivered gossip
    /// that failed validation; below -80 it is banned); absent while
    /// gossipsub does not score it, and from older agents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<i64>,
}

/// One recent ban.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BanView {
    /// The banned peer's libp2p PeerId.
    pub id: String,
    /// Why it was banned.
    pub reason: String,
    /// Its gossipsub score when banned, rounded down, if it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<i64>,
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// When the ban ends, in milliseconds since the Unix epoch; absent for a
    /// ban that lasts until the agent restarts (the engine's bans), and from
    /// older agents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until_ms: Option<u64>,
}

/// The driver's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CountersView {
    /// Chunks received that verified and were stored.
    pub chunks_stored: u64,
    /// Chunks received that failed their hash check.
    pub chunks_rejected: u64,
    /// Verified chunks whose store write failed.
    pub store_failures: u64,
    /// Releases whose stored data was removed after the vendor pruned them (absent from older agents).
    #[serde(default)]
    pub releases_forgotten: u64,
    /// Chunk bytes those removals freed (absent from older agents).
    #[serde(default)]
    pub bytes_forgotten: u64,
    /// The last write to the data directory found the disk full (absent from older agents).
    #[serde(default)]
    pub disk_full: bool,
    /// Peers banned.
    pub peers_banned: u64,
    /// Inputs the engine refused.
    pub inputs_refused: u64,
    /// Peers banned because their gossip score fell below the graylist
    /// threshold (included in `peers_banned`; absent from older agents).
    #[serde(default)]
    pub peers_scored_out: u64,
    /// Requests from peers that did not decode (absent from older agents).
    #[serde(default)]
    pub requests_malformed: u64,
    /// The latest bans, oldest first, at most
    /// [`crate::driver::MAX_RECENT_BANS`] (absent from older agents).
    #[serde(default)]
    pub recent_bans: Vec<BanView>,
    /// Timed bans that ended (absent from older agents).
    #[serde(default)]
    pub bans_lifted: u64,
    /// Payload bytes per peer class.
    pub traffic: Vec<TrafficView>,
}

/// Payload bytes exchanged with one class of peers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrafficView {
    /// `lan` (found by mDNS) or `wan`.
    pub class: String,
    /// Bytes sent.
    pub up: u64,
    /// Bytes received.
    pub down: u64,
    /// Bytes sent per second over the last sample (about a second; absent from older agents).
    #[serde(default)]
    pub up_rate: u64,
    /// Bytes received per second over the last sample (absent from older agents).
    #[serde(default)]
    pub down_rate: u64,
}

fn yes() -> bool {
    true
}

/// One release on this node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseView {
    /// The release ID (hex).
    pub id: String,
    /// Product.
    pub product: String,
    /// Version.
    pub version: String,
    /// This node's state (`discovered`, `fetching`, …, `rolled-back`).
    pub state: String,
    /// When the install started (`installing`) or finished (`baking`).
    pub since: Option<Timestamp>,
    /// This node's wave (0 is the first canary wave).
    pub wave: u32,
    /// Whether this node is in the release's report sample, so sends health reports
    /// (`true` for every node of a release without a sample, and when read from an
    /// older agent's answer, which had no sample).
    #[serde(default = "yes")]
    pub reports: bool,
    /// Chunks stored here.
    pub chunks_stored: u32,
    /// Chunks in the release (0 until the chunk list is known).
    pub chunks_total: u32,
    /// Every wave's counts and gate on this node's evidence, in order.
    pub waves: Vec<WaveView>,
    /// Why the release stopped, if it did.
    pub halt: Option<HaltView>,
    /// `halt` in words, e.g. `wave 0 gate failed: 3 of 4 reporting nodes failed or went silent`.
    #[serde(default)]
    pub halt_reason: Option<String>,
}

/// One wave of a release on this node's evidence. Its counts are the gate's
/// (see `waveguard_protocol::health::gate`) plus `eligible`.
///
/// `name`, `eligible` and `this_node` default when absent, so the CLI still
/// reads an older agent's answer (whose waves had only the gate's fields).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaveView {
    /// The wave's index (0 is the first canary wave).
    pub wave: u32,
    /// Its name: the policy's if the status carries it, else `wave N`.
    #[serde(default)]
    pub name: String,
    /// Nodes this node knows to be in the wave (itself, connected peers,
    /// nodes that reported): a lower bound on the wave's size.
    #[serde(default)]
    pub eligible: u64,
    /// Nodes of the wave that reported.
    pub reporting: u64,
    /// Installed, no verdict yet, not silent.
    pub installed: u64,
    /// Healthy and not silent.
    pub healthy: u64,
    /// Latest report is a failure.
    pub failed: u64,
    /// Installed or healthy but silent too long.
    pub silent: u64,
    /// The gate: `pending`, `passed` or `failed`.
    pub gate: String,
    /// Whether this node is in this wave.
    #[serde(default)]
    pub this_node: bool,
}

impl WaveView {
    /// The view of one wave's health; `eligible` and `this_node` come from the release.
    pub fn of(h: &WaveHealth, eligible: u64, this_node: bool) -> Self {
        WaveView {
            wave: h.wave,
            name: format!("wave {}", h.wave),
            eligible,
            reporting: h.reporting,
            installed: h.installed,
            healthy: h.healthy,
            failed: h.failed,
            silent: h.silent,
            gate: gate_name(h.gate).to_string(),
            this_node,
        }
    }
}

/// A gate state as the API writes it.
fn gate_name(g: GateState) -> &'static str {
    match g {
        GateState::Pending => "pending",
        GateState::Passed => "passed",
        GateState::Failed => "failed",
    }
}

/// Why a release stopped on this node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
#[non_exhaustive]
pub enum HaltView {
    /// A wave's health gate failed.
    GateFailed {
        /// The wave.
        wave: u32,
        /// Failed plus silent nodes.
        failures: u64,
        /// Nodes reporting.
        reporting: u64,
    },
    /// A signed halt directive.
    Directive {
        /// Its reason text.
        reason: String,
        /// Its sequence number.
        seq: u64,
    },
    /// This node's own install or probe failed.
    LocalFailure {
        /// What failed.
        detail: String,
    },
}

impl From<&HaltReason> for HaltView {
    fn from(r: &HaltReason) -> Self {
        match r {
            HaltReason::GateFailed {
                wave,
                failures,
                reporting,
            } => HaltView::GateFailed {
                wave: *wave,
                failures: *failures,
                reporting: *reporting,
            },
            HaltReason::Directive { reason, seq } => HaltView::Directive {
                reason: reason.clone(),
                seq: *seq,
            },
            HaltReason::LocalFailure { detail } => HaltView::LocalFailure {
                detail: detail.clone(),
            },
        }
    }
}

impl fmt::Display for HaltView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HaltView::GateFailed {
                wave,
                failures,
                reporting,
            } => write!(
                f,
                "wave {wave} gate failed: {failures} of {reporting} reporting nodes failed or went silent"
            ),
            HaltView::Directive { reason, seq } => write!(f, "directive #{seq}: {reason}"),
            HaltView::LocalFailure { detail } => write!(f, "this node failed: {detail}"),
        }
    }
}

impl ReleaseView {
    /// The view of one engine release status.
    pub fn of(r: &ReleaseStatus) -> Self {
        let (since, state_halt) = match &r.state {
            RolloutState::Installing { since } => (Some(*since), None),
            RolloutState::Baking { installed_at } => (Some(*installed_at), None),
            RolloutState::Halted { reason }
            | RolloutState::RollingBack { reason }
            | RolloutState::RolledBack { reason } => (None, Some(reason)),
            _ => (None, None),
        };
        let halt = r.halt.as_ref().or(state_halt).map(HaltView::from);
        // `eligible` has one entry per wave; a shorter list (a hand-made status) reads as 0.
        let waves = r
            .waves
            .iter()
            .map(|h| {
                let eligible = usize::try_from(h.wave)
                    .ok()
                    .and_then(|w| r.eligible.get(w))
                    .copied()
                    .unwrap_or(0);
                WaveView::of(h, eligible, h.wave == r.wave)
            })
            .collect();
        ReleaseView {
            id: r.id.to_hex(),
            product: r.product.clone(),
            version: r.version.clone(),
            state: r.state.name().to_string(),
            since,
            wave: r.wave,
            reports: r.reports,
            chunks_stored: r.chunks_stored,
            chunks_total: r.chunks_total,
            waves,
            halt_reason: halt.as_ref().map(ToString::to_string),
            halt,
        }
    }
}

impl CountersView {
    /// The view of the driver's counters.
    pub fn of(c: &Counters) -> Self {
        CountersView {
            chunks_stored: c.chunks_stored,
            chunks_rejected: c.chunks_rejected,
            store_failures: c.store_failures,
            releases_forgotten: c.releases_forgotten,
            bytes_forgotten: c.bytes_forgotten,
            disk_full: c.disk_full,
            peers_banned: c.peers_banned,
            inputs_refused: c.inputs_refused,
            peers_scored_out: c.peers_scored_out,
            requests_malformed: c.requests_malformed,
            bans_lifted: c.bans_lifted,
            recent_bans: c
                .recent_bans
                .iter()
                .map(|b| BanView {
                    id: b.node.to_peer_id_string(),
                    reason: b.reason.clone(),
                    score: b.score,
                    at_ms: b.at.as_millis(),
                    until_ms: b.until.map(|t| t.as_millis()),
                })
                .collect(),
            traffic: PeerClass::ALL
                .iter()
                .map(|&class| {
                    let t = c.traffic.of(class);
                    let r = c.rate.of(class);
                    TrafficView {
                        class: class.label().to_string(),
                        up: t.sent,
                        down: t.received,
                        up_rate: r.sent,
                        down_rate: r.received,
                    }
                })
                .collect(),
        }
    }
}

impl StatusView {
    /// The view of one snapshot; `status` is `None` before the engine's first event.
    pub fn of(
        node: &NodeId,
        status: Option<&NodeStatus>,
        counters: &Counters,
        listen: &[libp2p::Multiaddr],
    ) -> Self {
        StatusView {
            node: node.to_peer_id_string(),
            node_hex: node.to_hex(),
            ready: status.is_some(),
            peers: status.map_or(0, |s| s.peers),
            banned: status.map_or(0, |s| s.banned),
            root_version: status.map_or(0, |s| s.root_version),
            listen: listen.iter().map(ToString::to_string).collect(),
            counters: CountersView::of(counters),
            releases: status
                .map(|s| s.releases.iter().map(ReleaseView::of).collect())
                .unwrap_or_default(),
            site: None,
            connected: PeersView::of(counters),
            clock_offset_ms: status.and_then(|s| s.clock_offset_ms),
            clock: status.map(|s| s.clock),
        }
    }
}

impl PeersView {
    /// The view of the driver's last peer sample.
    pub fn of(c: &Counters) -> Self {
        PeersView {
            lan: c.connected_lan,
            wan: c.connected_wan,
            list: c
                .peers
                .iter()
                .map(|p| PeerView {
                    id: p.node.to_peer_id_string(),
                    class: p.class.label().to_string(),
                    up: p.traffic.sent,
                    down: p.traffic.received,
                    score: p.score,
                })
                .collect(),
        }
    }
}

/// `POST /directive`'s answer when the directive verified (202 if it changed
/// something, 200 if it did not).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectiveView {
    /// `halt` or `resume`.
    pub action: String,
    /// The release ID (hex).
    pub release: String,
    /// The directive's sequence number.
    pub seq: u64,
    /// Until when the directive may be accepted (RFC 3339).
    pub expires: String,
    /// Its reason text.
    pub reason: String,
    /// Whether this node follows the release; if not, it keeps the directive
    /// until it does, and passes it on.
    pub followed: bool,
    /// Whether it changed anything: false when its seq is not above the
    /// latest accepted one (see `latest_seq`), and then it is not passed on.
    pub changed: bool,
    /// The seq of the release's latest accepted directive afterwards.
    pub latest_seq: Option<u64>,
    /// The release's state on this node afterwards (`halted`, `fetching`, …).
    pub state: Option<String>,
    /// Why the release is halted on this node afterwards, if it is.
    pub halt: Option<HaltView>,
}

impl DirectiveView {
    /// The view of the driver's receipt.
    pub fn of(r: &DirectiveReceipt) -> Self {
        let d = &r.directive;
        let release = r.release.as_ref().map(ReleaseView::of);
        DirectiveView {
            action: match d.action {
                DirectiveAction::Halt => "halt",
                DirectiveAction::Resume => "resume",
            }
            .to_string(),
            release: d.release.to_hex(),
            seq: d.seq,
            expires: d.expires.to_rfc3339(),
            reason: d.reason.clone(),
            followed: r.followed,
            changed: r.changed,
            latest_seq: match r.state {
                Some(DirectiveState::Halted { seq } | DirectiveState::Resumed { seq }) => Some(seq),
                _ => None,
            },
            state: release.as_ref().map(|v| v.state.clone()),
            halt: release.and_then(|v| v.halt),
        }
    }
}

/// The body of every API error answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorView {
    /// What was wrong.
    pub error: String,
}

impl ApiState {
    /// Copies the shared state out, holding each lock only while cloning.
    /// A poisoned lock (a panic elsewhere) reads as empty rather than failing.
    fn snapshot(&self) -> (Option<NodeStatus>, Counters, Vec<libp2p::Multiaddr>) {
        let status = self.shared.status.lock().ok().and_then(|s| s.clone());
        let counters = self
            .shared
            .counters
            .lock()
            .map(|c| c.clone())
            .unwrap_or_default();
        let listen = self
            .shared
            .listen
            .lock()
            .map(|l| l.clone())
            .unwrap_or_default();
        (status, counters, listen)
    }

    /// The current `/status` document.
    pub fn status(&self) -> StatusView {
        let (status, counters, listen) = self.snapshot();
        let mut view = StatusView::of(&self.node, status.as_ref(), &counters, &listen);
        view.site = self.shared.site.lock().ok().and_then(|s| s.clone());
        view
    }

    /// The current `/metrics` text.
    pub fn metrics(&self) -> String {
        let (status, counters, _) = self.snapshot();
        crate::metrics::render(status.as_ref(), &counters)
    }
}

async fn status_handler(State(state): State<ApiState>) -> Json<StatusView> {
    Json(state.status())
}

async fn metrics_handler(State(state): State<ApiState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)],
        state.metrics(),
    )
}

fn error_answer(code: StatusCode, error: String) -> Response {
    (code, Json(ErrorView { error })).into_response()
}

/// `POST /directive`: 413 above [`MAX_DIRECTIVE_BYTES`], 400 with the reason
/// when the directive does not verify, else 202 (it changed something) or
/// 200 (a replay or an older seq: nothing changed) with a [`DirectiveView`].
async fn directive_handler(
    State(state): State<ApiState>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let bytes = match body {
        Ok(b) => b,
        Err(r) if r.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return error_answer(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("a directive is at most {MAX_DIRECTIVE_BYTES} bytes; this body is larger"),
            )
        }
        Err(r) => return error_answer(r.status(), r.body_text()),
    };
    match state.shared.submit_directive(bytes.to_vec()).await {
        Ok(receipt) => {
            let code = match receipt.changed {
                true => StatusCode::ACCEPTED,
                false => StatusCode::OK,
            };
            (code, Json(DirectiveView::of(&receipt))).into_response()
        }
        Err(SubmitError::Refused(e)) => error_answer(StatusCode::BAD_REQUEST, e.to_string()),
        Err(e) => error_answer(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

/// `GET /health/{release}`: the health reports the node holds for the
/// release (hex ID) as a health bundle file (`application/octet-stream`);
/// 404 if the node does not follow it.
async fn health_export_handler(
    State(state): State<ApiState>,
    axum::extract::Path(release): axum::extract::Path<String>,
) -> Response {
    let Ok(id) = release.parse::<waveguard_protocol::ReleaseId>() else {
        return error_answer(
            StatusCode::BAD_REQUEST,
            format!("{release:?} is not a release ID (64 hex digits)"),
        );
    };
    match state.shared.health_reports(id).await {
        Ok(Some(mut reports)) => {
            // A site larger than one bundle holds: the first MAX_HEALTH_REPORTS nodes go.
            reports.truncate(health_bundle::MAX_HEALTH_REPORTS as usize);
            match health_bundle::encode(&id, &reports) {
                Ok(bytes) => {
                    ([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response()
                }
                Err(e) => error_answer(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
            }
        }
        Ok(None) => error_answer(
            StatusCode::NOT_FOUND,
            format!("this node does not follow release {id}"),
        ),
        Err(e) => error_answer(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

/// `POST /health`: a health bundle file from another site. 400 if it does
/// not decode; else 200 with a [`HealthImportView`] (each report verified
/// by the engine as if gossiped; those it takes are passed on).
async fn health_import_handler(
    State(state): State<ApiState>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let bytes = match body {
        Ok(b) => b,
        Err(r) => return error_answer(r.status(), r.body_text()),
    };
    let (release, reports) = match health_bundle::decode(&bytes) {
        Ok(d) => d,
        Err(e) => return error_answer(StatusCode::BAD_REQUEST, e.to_string()),
    };
    match state.shared.submit_health(reports).await {
        Ok(r) => Json(HealthImportView {
            release: release.to_hex(),
            reports: r.reports,
            accepted: r.accepted,
            known: r.known,
            refused: r.refused,
        })
        .into_response(),
        Err(e) => error_answer(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

/// `POST /bundle`'s body: the bundle file to import, a path on the agent's machine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleRequest {
    /// An absolute path to the bundle file.
    pub path: String,
}

/// `POST /bundle`'s answer when the bundle was imported.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleImportView {
    /// The release (hex).
    pub release: String,
    /// Product.
    pub product: String,
    /// Version.
    pub version: String,
    /// The base release of a delta bundle (hex).
    pub base: Option<String>,
    /// Chunk records in the bundle.
    pub carried: u32,
    /// Chunks newly stored.
    pub stored: u32,
}

/// `POST /bundle`: imports a release bundle file into the running agent
/// (verified completely before anything is stored, see `crate::bundle`).
/// 400 with the reason if it is refused, 200 with a [`BundleImportView`].
async fn bundle_import_handler(
    State(state): State<ApiState>,
    body: Result<Json<BundleRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let request = match body {
        Ok(Json(r)) => r,
        Err(r) => return error_answer(r.status(), r.body_text()),
    };
    let path = std::path::PathBuf::from(&request.path);
    if !path.is_absolute() {
        return error_answer(
            StatusCode::BAD_REQUEST,
            format!("{:?} is not an absolute path", request.path),
        );
    }
    match state.shared.submit_bundle(path).await {
        Ok(Ok(r)) => Json(BundleImportView {
            release: r.release.to_hex(),
            product: r.product,
            version: r.version,
            base: r.base.map(|b| b.to_hex()),
            carried: r.carried,
            stored: r.stored,
        })
        .into_response(),
        Ok(Err(e)) => error_answer(StatusCode::BAD_REQUEST, e),
        Err(e) => error_answer(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

/// `POST /health`'s answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthImportView {
    /// The release (hex).
    pub release: String,
    /// Reports in the bundle.
    pub reports: usize,
    /// Taken as new and passed on to the mesh.
    pub accepted: usize,
    /// Already held.
    pub known: usize,
    /// Refused by the engine (signature, certificate, unknown release, older than held).
    pub refused: usize,
}

/// The API's routes.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/", get(crate::dashboard::page))
        .route("/dashboard", get(crate::dashboard::page))
        .route("/status", get(status_handler))
        .route("/health/{release}", get(health_export_handler))
        .route("/bundle", post(bundle_import_handler))
        .route(
            "/health",
            post(health_import_handler).layer(DefaultBodyLimit::max(
                health_bundle::MAX_HEALTH_BUNDLE_BYTES as usize,
            )),
        )
        .route("/metrics", get(metrics_handler))
        .route(
            "/directive",
            // The limit makes axum stop reading at the bound instead of buffering any body.
            post(directive_handler).layer(DefaultBodyLimit::max(MAX_DIRECTIVE_BYTES)),
        )
        .with_state(state)
}

/// Binds the API's listen address; warns when it is not loopback, since the
/// API has no authentication.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, ApiError> {
    if !addr.ip().is_loopback() {
        tracing::warn!(%addr, "the HTTP API has no authentication and listens beyond loopback");
    }
    TcpListener::bind(addr)
        .await
        .map_err(|source| ApiError::Bind { addr, source })
}

/// Serves the API on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    state: ApiState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ApiError> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(ApiError::Serve)
}
