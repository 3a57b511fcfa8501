//! The agent's local HTTP API: `GET /status` (JSON) and `GET /metrics`
//! (Prometheus text), served by axum next to the driver loop.
//!
//! Handlers only read the driver's [`Shared`] snapshot, so the API never
//! blocks or steers the engine. The JSON is this module's own [`StatusView`]
//! (serializable both ways, with hex IDs and state names), not the engine's
//! types, so `waveguard status` can read it back and the protocol crate stays
//! free to change its internals. The API has no authentication: it is meant
//! for loopback, which is the default listen address.

use crate::driver::{Counters, Shared};
use crate::metrics::PeerClass;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use thiserror::Error;
use tokio::net::TcpListener;
use waveguard_protocol::health::gate::WaveHealth;
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
    /// Peers banned.
    pub peers_banned: u64,
    /// Inputs the engine refused.
    pub inputs_refused: u64,
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
    /// Chunks stored here.
    pub chunks_stored: u32,
    /// Chunks in the release (0 until the chunk list is known).
    pub chunks_total: u32,
    /// Every wave's health on this node's evidence.
    pub waves: Vec<WaveHealth>,
    /// Why the release stopped, if it did.
    pub halt: Option<HaltView>,
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
                "wave {wave} failed its health gate ({failures} of {reporting} nodes failed or silent)"
            ),
            HaltView::Directive { reason, seq } => {
                write!(f, "halt directive #{seq}: {reason}")
            }
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
        ReleaseView {
            id: r.id.to_hex(),
            product: r.product.clone(),
            version: r.version.clone(),
            state: r.state.name().to_string(),
            since,
            wave: r.wave,
            chunks_stored: r.chunks_stored,
            chunks_total: r.chunks_total,
            waves: r.waves.clone(),
            halt: r.halt.as_ref().or(state_halt).map(HaltView::from),
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
            peers_banned: c.peers_banned,
            inputs_refused: c.inputs_refused,
            traffic: PeerClass::ALL
                .iter()
                .map(|&class| {
                    let t = c.traffic.of(class);
                    TrafficView {
                        class: class.label().to_string(),
                        up: t.sent,
                        down: t.received,
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
        }
    }
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
        StatusView::of(&self.node, status.as_ref(), &counters, &listen)
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

/// The API's routes.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/status", get(status_handler))
        .route("/metrics", get(metrics_handler))
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
