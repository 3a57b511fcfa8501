//! The local HTTP API over a fake driver state (no libp2p): `/status` JSON,
//! `/metrics` text, and `waveguard status` against it.

use std::net::SocketAddr;
use waveguard_agent::api::{self, ApiState, HaltView, StatusView};
use waveguard_agent::cli::status::{self, HttpGetError};
use waveguard_agent::cli::{self, Outcome};
use waveguard_agent::driver::{Counters, Shared};
use waveguard_agent::metrics::PeerClass;
use waveguard_agent::net::Traffic;
use waveguard_protocol::health::gate::{GateState, WaveHealth};
use waveguard_protocol::node::{NodeStatus, ReleaseStatus};
use waveguard_protocol::rollout::{HaltReason, RolloutState};
use waveguard_protocol::{NodeId, ReleaseId, Timestamp};

const NODE: NodeId = NodeId([7; 32]);
const INSTALLED: Timestamp = Timestamp::from_secs(1_893_456_000);

fn wave(wave: u32, counts: [u64; 4], gate: GateState) -> WaveHealth {
    let [installed, healthy, failed, silent] = counts;
    WaveHealth {
        wave,
        reporting: installed + healthy + failed + silent,
        installed,
        healthy,
        failed,
        silent,
        gate,
    }
}

/// A release status with sensible defaults, changed by the `with_` methods.
struct ReleaseBuilder(ReleaseStatus);

impl ReleaseBuilder {
    fn new(product: &str, id: u8) -> Self {
        ReleaseBuilder(ReleaseStatus {
            id: ReleaseId([id; 32]),
            product: product.to_string(),
            version: "1.0.0".to_string(),
            state: RolloutState::Fetching,
            wave: 1,
            chunks_stored: 3,
            chunks_total: 12,
            waves: vec![
                wave(0, [0, 5, 0, 0], GateState::Passed),
                wave(1, [2, 1, 0, 0], GateState::Pending),
            ],
            halt: None,
        })
    }

    fn state(mut self, state: RolloutState) -> Self {
        self.0.state = state;
        self
    }

    fn halt(mut self, reason: HaltReason) -> Self {
        self.0.halt = Some(reason);
        self
    }

    fn build(self) -> ReleaseStatus {
        self.0
    }
}

fn gate_failed() -> HaltReason {
    HaltReason::GateFailed {
        wave: 0,
        failures: 2,
        reporting: 4,
    }
}

/// The sample: one release baking, one halted by its canaries.
fn sample_status() -> NodeStatus {
    NodeStatus {
        node: NODE.to_hex(),
        peers: 3,
        banned: 1,
        root_version: 2,
        releases: vec![
            ReleaseBuilder::new("app", 1)
                .state(RolloutState::Baking {
                    installed_at: INSTALLED,
                })
                .build(),
            ReleaseBuilder::new("db", 2)
                .state(RolloutState::Halted {
                    reason: gate_failed(),
                })
                .halt(gate_failed())
                .build(),
        ],
    }
}

fn sample_counters() -> Counters {
    let mut c = Counters {
        chunks_stored: 40,
        chunks_rejected: 2,
        peers_banned: 1,
        ..Counters::default()
    };
    c.traffic.add(
        PeerClass::Lan,
        Traffic {
            sent: 1536,
            received: 3 * 1024 * 1024,
        },
    );
    c
}

/// An API server on an ephemeral loopback port; stops when dropped.
struct TestApi {
    addr: SocketAddr,
    _runtime: tokio::runtime::Runtime,
}

impl TestApi {
    fn start(shared: Shared) -> TestApi {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(api::bind(SocketAddr::from(([127, 0, 0, 1], 0))))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let state = ApiState { shared, node: NODE };
        runtime.spawn(api::serve(listener, state, std::future::pending()));
        TestApi {
            addr,
            _runtime: runtime,
        }
    }

    fn with_sample() -> TestApi {
        let shared = Shared::default();
        *shared.status.lock().unwrap() = Some(sample_status());
        *shared.counters.lock().unwrap() = sample_counters();
        shared
            .listen
            .lock()
            .unwrap()
            .push("/ip4/127.0.0.1/tcp/4001".parse().unwrap());
        TestApi::start(shared)
    }

    fn get(&self, path: &str) -> String {
        String::from_utf8(status::http_get(self.addr, path).unwrap()).unwrap()
    }
}

#[test]
fn status_json_names_node_releases_waves_and_counters() {
    let server = TestApi::with_sample();
    let json: serde_json::Value = serde_json::from_str(&server.get("/status")).unwrap();
    assert_eq!(json["node"], NODE.to_peer_id_string());
    assert_eq!(json["node_hex"], NODE.to_hex());
    assert_eq!(json["ready"], true);
    assert_eq!(json["peers"], 3);
    assert_eq!(json["root_version"], 2);
    assert_eq!(json["listen"][0], "/ip4/127.0.0.1/tcp/4001");
    assert_eq!(json["counters"]["chunks_stored"], 40);
    assert_eq!(json["counters"]["chunks_rejected"], 2);
    assert_eq!(json["counters"]["traffic"][0]["class"], "lan");
    assert_eq!(json["counters"]["traffic"][0]["down"], 3 * 1024 * 1024);

    let app = &json["releases"][0];
    assert_eq!(app["id"], ReleaseId([1; 32]).to_hex());
    assert_eq!(app["state"], "baking");
    assert_eq!(app["since"], INSTALLED.as_millis());
    assert_eq!(app["wave"], 1);
    assert_eq!(app["chunks_stored"], 3);
    assert_eq!(app["chunks_total"], 12);
    assert_eq!(app["waves"][0]["gate"], "passed");
    assert_eq!(app["waves"][1]["installed"], 2);
    assert!(app["halt"].is_null());

    let db = &json["releases"][1];
    assert_eq!(db["state"], "halted");
    assert_eq!(db["halt"]["kind"], "gate-failed");
    assert_eq!(db["halt"]["failures"], 2);
}

#[test]
fn status_json_reads_back_as_the_view() {
    let server = TestApi::with_sample();
    let view = status::fetch(server.addr).unwrap();
    let expected = StatusView::of(
        &NODE,
        Some(&sample_status()),
        &sample_counters(),
        &["/ip4/127.0.0.1/tcp/4001".parse().unwrap()],
    );
    assert_eq!(view, expected);
    assert_eq!(
        view.releases[1].halt,
        Some(HaltView::GateFailed {
            wave: 0,
            failures: 2,
            reporting: 4
        })
    );
}

#[test]
fn halt_reason_in_the_state_alone_still_shows() {
    let r = ReleaseBuilder::new("app", 1)
        .state(RolloutState::RolledBack {
            reason: HaltReason::LocalFailure {
                detail: "probe exited 1".into(),
            },
        })
        .build();
    let view = api::ReleaseView::of(&r);
    assert_eq!(view.state, "rolled-back");
    assert_eq!(
        view.halt.map(|h| h.to_string()).as_deref(),
        Some("this node failed: probe exited 1")
    );
}

#[test]
fn metrics_are_prometheus_text_of_the_snapshot() {
    let server = TestApi::with_sample();
    let text = server.get("/metrics");
    for line in [
        "waveguard_chunks_stored_total 40",
        "waveguard_chunks_rejected_total 2",
        "waveguard_peers_banned_total 1",
        "waveguard_peer_bytes_total{class=\"lan\",direction=\"up\"} 1536",
        "waveguard_peer_bytes_total{class=\"lan\",direction=\"down\"} 3145728",
        "waveguard_peer_bytes_total{class=\"wan\",direction=\"up\"} 0",
        "waveguard_releases{state=\"baking\"} 1",
        "waveguard_releases{state=\"halted\"} 1",
        "waveguard_releases{state=\"fetching\"} 0",
        "waveguard_connected_peers 3",
        "# TYPE waveguard_chunks_stored counter",
        "# TYPE waveguard_releases gauge",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    assert!(text.ends_with("# EOF\n"), "{text}");
}

#[test]
fn an_agent_before_its_first_event_reports_not_ready() {
    let server = TestApi::start(Shared::default());
    let view = status::fetch(server.addr).unwrap();
    assert!(!view.ready);
    assert!(view.releases.is_empty());
    let text = server.get("/metrics");
    assert!(text.contains("waveguard_connected_peers 0"), "{text}");
    let report = status::StatusReport { status: view };
    assert!(
        report
            .to_string()
            .contains("has not handled its first event"),
        "{report}"
    );
}

#[test]
fn unknown_paths_are_http_errors() {
    let server = TestApi::with_sample();
    let err = status::http_get(server.addr, "/nope").unwrap_err();
    assert!(
        matches!(err, HttpGetError::Status { code: 404, .. }),
        "{err}"
    );
}

#[test]
fn status_command_prints_releases_waves_and_halts() {
    let server = TestApi::with_sample();
    let addr = server.addr.to_string();
    let outcome = cli::run(["waveguard", "status", "--api", &addr]).unwrap();
    let Outcome::Status(report) = outcome else {
        panic!("expected a status report, got {outcome:?}");
    };
    let text = report.to_string();
    let expected = format!(
        "agent {node}
  root v2, 3 peers connected, 1 banned
  listening on /ip4/127.0.0.1/tcp/4001
  chunks: 40 stored, 2 rejected, 0 store failures; 1 peers banned, 0 inputs refused
  traffic lan: 1.5 KiB up, 3.0 MiB down
  traffic wan: 0 B up, 0 B down
release app 1.0.0 (0101010101010101…)
  state:    baking since 2030-01-01T00:00:00Z
  wave:     1
  progress: 3/12 chunks (25%)
  wave   reporting installed healthy failed silent  gate
  0              5         0       5      0      0  passed
  1              3         2       1      0      0  pending *
release db 1.0.0 (0202020202020202…)
  state:    halted
  wave:     1
  progress: 3/12 chunks (25%)
  halted:   wave 0 failed its health gate (2 of 4 nodes failed or silent)
  wave   reporting installed healthy failed silent  gate
  0              5         0       5      0      0  passed
  1              3         2       1      0      0  pending *",
        node = NODE.to_peer_id_string()
    );
    assert_eq!(text, expected);
}

#[test]
fn status_command_says_clearly_when_no_agent_listens() {
    // A port that was just free: bind, note it, release it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let err = cli::run(["waveguard", "status", "--api", &addr]).unwrap_err();
    let message = cli::error_message(&err);
    assert!(
        message.contains(&format!("no agent is listening on {addr}")),
        "{message}"
    );
}

#[test]
fn status_command_rejects_a_bad_address() {
    let err = cli::run(["waveguard", "status", "--api", "localhost"]).unwrap_err();
    assert!(cli::error_message(&err).contains("--api"), "{err}");
}
