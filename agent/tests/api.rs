//! The local HTTP API over a fake driver state (no libp2p): `/status` JSON,
//! `/metrics` text, and `waveguard status` against it.

use std::net::SocketAddr;
use waveguard_agent::api::{self, ApiState, HaltView, StatusView, WaveView};
use waveguard_agent::cli::status::{self, HttpGetError};
use waveguard_agent::cli::{self, Outcome};
use waveguard_agent::driver::{Counters, Shared};
use waveguard_agent::metrics::PeerClass;
use waveguard_agent::net::Traffic;
use waveguard_protocol::clock::ClockCheck;
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
            reports: true,
            chunks_stored: 3,
            chunks_total: 12,
            waves: vec![
                wave(0, [0, 5, 0, 0], GateState::Passed),
                wave(1, [2, 1, 0, 0], GateState::Pending),
            ],
            eligible: vec![5, 3],
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

    /// Outside the release's report sample.
    fn unsampled(mut self) -> Self {
        self.0.reports = false;
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
        clock_offset_ms: Some(1_200),
        clock: ClockCheck::Agrees,
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
    assert_eq!(json["clock"], "agrees");
    assert_eq!(json["clock_offset_ms"], 1_200);
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
    assert_eq!(app["waves"][0]["name"], "wave 0");
    assert_eq!(app["waves"][0]["eligible"], 5);
    assert_eq!(app["waves"][0]["this_node"], false);
    assert_eq!(app["waves"][1]["installed"], 2);
    assert_eq!(app["waves"][1]["this_node"], true);
    assert!(app["halt"].is_null());
    assert!(app["halt_reason"].is_null());

    let db = &json["releases"][1];
    assert_eq!(db["state"], "halted");
    assert_eq!(db["halt"]["kind"], "gate-failed");
    assert_eq!(db["halt"]["failures"], 2);
    assert_eq!(
        db["halt_reason"],
        "wave 0 gate failed: 2 of 4 reporting nodes failed or went silent"
    );
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
    assert_eq!(
        view.halt_reason.as_deref(),
        Some("this node failed: probe exited 1")
    );
}

/// The brief's example: wave 0 of three failed its gate, this node is in wave 1.
fn canary_failure() -> ReleaseStatus {
    let reason = HaltReason::GateFailed {
        wave: 0,
        failures: 3,
        reporting: 4,
    };
    let mut r = ReleaseBuilder::new("acme", 9)
        .state(RolloutState::Halted {
            reason: reason.clone(),
        })
        .halt(reason)
        .build();
    r.waves = vec![
        wave(0, [0, 1, 2, 1], GateState::Failed),
        wave(1, [6, 0, 0, 0], GateState::Pending),
        wave(2, [0, 0, 0, 0], GateState::Pending),
    ];
    r.eligible = vec![4, 6, 10];
    r
}

#[test]
fn release_view_shows_every_waves_counts_and_why_it_halted() {
    let view = api::ReleaseView::of(&canary_failure());
    assert_eq!((view.state.as_str(), view.wave), ("halted", 1));
    assert_eq!(
        view.waves[0],
        WaveView {
            wave: 0,
            name: "wave 0".into(),
            eligible: 4,
            reporting: 4,
            installed: 0,
            healthy: 1,
            failed: 2,
            silent: 1,
            gate: "failed".into(),
            this_node: false,
        }
    );
    let summary: Vec<_> = view
        .waves
        .iter()
        .map(|w| (w.eligible, w.installed, w.gate.as_str(), w.this_node))
        .collect();
    assert_eq!(
        summary,
        [
            (4, 0, "failed", false),
            (6, 6, "pending", true),
            (10, 0, "pending", false)
        ]
    );
    assert_eq!(
        view.halt_reason.as_deref(),
        Some("wave 0 gate failed: 3 of 4 reporting nodes failed or went silent")
    );

    // A directive's halt names its seq and reason; a short `eligible` reads as 0.
    let mut r = ReleaseBuilder::new("acme", 9)
        .halt(HaltReason::Directive {
            reason: "canary crash loop".into(),
            seq: 7,
        })
        .build();
    r.eligible.clear();
    let view = api::ReleaseView::of(&r);
    assert_eq!(
        view.halt_reason.as_deref(),
        Some("directive #7: canary crash loop")
    );
    assert!(view.waves.iter().all(|w| w.eligible == 0));
}

#[test]
fn status_view_json_round_trips_with_stable_field_names() {
    let mut node = sample_status();
    node.releases.push(canary_failure());
    let view = StatusView::of(&NODE, Some(&node), &sample_counters(), &[]);
    let json = serde_json::to_string(&view).unwrap();
    assert_eq!(serde_json::from_str::<StatusView>(&json).unwrap(), view);

    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    let release = &value["releases"][2];
    let mut keys: Vec<_> = release["waves"][0]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "eligible",
            "failed",
            "gate",
            "healthy",
            "installed",
            "name",
            "reporting",
            "silent",
            "this_node",
            "wave"
        ]
    );
    assert_eq!(
        release["halt_reason"],
        "wave 0 gate failed: 3 of 4 reporting nodes failed or went silent"
    );
}

#[test]
fn a_release_without_the_newer_fields_still_reads() {
    // What an agent sent before waves had names, eligible counts and a worded halt.
    let old = serde_json::json!({
        "id": "ab", "product": "app", "version": "1.0.0", "state": "halted",
        "since": null, "wave": 0, "chunks_stored": 1, "chunks_total": 2,
        "waves": [{"wave": 0, "reporting": 2, "installed": 0, "healthy": 0,
                   "failed": 2, "silent": 0, "gate": "failed"}],
        "halt": {"kind": "directive", "reason": "stop", "seq": 3},
    });
    let view: api::ReleaseView = serde_json::from_value(old).unwrap();
    assert_eq!(
        (view.waves[0].eligible, view.waves[0].name.as_str()),
        (0, "")
    );
    assert_eq!(view.halt_reason, None);
    let mut status = StatusView::of(&NODE, Some(&sample_status()), &Counters::default(), &[]);
    status.releases = vec![view];
    let text = status::StatusReport { status }.to_string();
    assert!(text.contains("\n  halted: directive #3: stop"), "{text}");
    // No `this_node` either, so no row is marked.
    let row = "\n    0            0          0        0       2       0  failed\n";
    assert!(text.contains(row), "{text}");
}

#[test]
fn status_says_when_this_node_is_outside_the_report_sample() {
    let node = NodeStatus {
        releases: vec![ReleaseBuilder::new("acme", 4).unsampled().build()],
        ..sample_status()
    };
    let status = StatusView::of(&NODE, Some(&node), &Counters::default(), &[]);
    assert!(!status.releases[0].reports);
    let text = status::StatusReport { status }.to_string();
    assert!(
        text.contains("this node in wave 1 (outside the report sample: sends no health reports)\n"),
        "{text}"
    );
    // An older agent's answer has no `reports`: it had no sample, so every node reported.
    let mut json = serde_json::to_value(StatusView::of(
        &NODE,
        Some(&node),
        &Counters::default(),
        &[],
    ))
    .unwrap();
    json["releases"][0]
        .as_object_mut()
        .unwrap()
        .remove("reports");
    let old: StatusView = serde_json::from_value(json).unwrap();
    assert!(old.releases[0].reports);
}

#[test]
fn status_prints_a_wave_table_and_the_halt() {
    let node = NodeStatus {
        releases: vec![canary_failure()],
        ..sample_status()
    };
    let status = StatusView::of(&NODE, Some(&node), &Counters::default(), &[]);
    let text = status::StatusReport { status }.to_string();
    let release = text
        .split_once("\nacme ")
        .map(|(_, r)| r)
        .unwrap_or_else(|| panic!("no release in\n{text}"));
    assert_eq!(
        release,
        "1.0.0  (release 0909090909090909…)  state halted, this node in wave 1
  chunks: 3/12 (25%)
    wave  eligible  installed  healthy  failed  silent  gate
    0            4          0        1       2       1  failed
  * 1            6          6        0       0       0  pending
    2           10          0        0       0       0  pending
  halted: wave 0 gate failed: 3 of 4 reporting nodes failed or went silent"
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
  clock: agrees with the fleet's (1.2 s behind it, by peers' health reports)
  chunks: 40 stored, 2 rejected, 0 store failures; 1 peers banned, 0 inputs refused
  traffic lan: 1.5 KiB up, 3.0 MiB down
  traffic wan: 0 B up, 0 B down
app 1.0.0  (release 0101010101010101…)  state baking since 2030-01-01T00:00:00Z, this node in wave 1
  chunks: 3/12 (25%)
    wave  eligible  installed  healthy  failed  silent  gate
    0            5          0        5       0       0  passed
  * 1            3          2        1       0       0  pending
db 1.0.0  (release 0202020202020202…)  state halted, this node in wave 1
  chunks: 3/12 (25%)
    wave  eligible  installed  healthy  failed  silent  gate
    0            5          0        5       0       0  passed
  * 1            3          2        1       0       0  pending
  halted: wave 0 gate failed: 2 of 4 reporting nodes failed or went silent",
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

/// `POST /directive` against a real agent: a seeder of a testbed release
/// (libp2p on loopback, the real driver loop) with the API in front of it.
mod directive {
    use super::*;
    use waveguard_agent::api::{DirectiveView, ErrorView};
    use waveguard_agent::cli::status::{http_request, HttpResponse};
    use waveguard_agent::driver::{now, SubmitError};
    use waveguard_agent::keyfile;
    use waveguard_agent::testbed::{counters, AgentSpec, ReleaseSpec, Testbed};
    use waveguard_protocol::health::directive::{
        sign_directive, Directive, DirectiveAction, DirectiveError, MAX_DIRECTIVE_BYTES,
    };
    use waveguard_protocol::SigningKey;

    /// One seeder agent following one release, and its API; stops when dropped.
    struct LiveAgent {
        api: SocketAddr,
        release: ReleaseId,
        vendor: SigningKey,
        vendor_key: std::path::PathBuf,
        bed: Testbed,
        runtime: tokio::runtime::Runtime,
        _tmp: tempfile::TempDir,
    }

    impl LiveAgent {
        fn start() -> LiveAgent {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            let tmp = tempfile::tempdir().unwrap();
            let spec = ReleaseSpec {
                size: 256 << 10,
                chunk_avg: "64KiB".into(),
                ..ReleaseSpec::default()
            };
            let (bed, published, listener) = runtime.block_on(async {
                let (mut bed, published) = Testbed::publish(tmp.path(), &spec).unwrap();
                bed.start(&AgentSpec {
                    seed: true,
                    ..AgentSpec::default()
                })
                .await
                .unwrap();
                let listener = api::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
                    .await
                    .unwrap();
                (bed, published, listener)
            });
            let api = listener.local_addr().unwrap();
            let member = &bed.members[0];
            let state = ApiState {
                shared: member.shared.clone(),
                node: member.node,
            };
            runtime.spawn(api::serve(listener, state, std::future::pending()));
            let vendor_key = bed.vendor_key();
            LiveAgent {
                api,
                release: published.release,
                vendor: keyfile::read_secret(&vendor_key).unwrap(),
                vendor_key,
                bed,
                runtime,
                _tmp: tmp,
            }
        }

        fn directive(&self, action: DirectiveAction, seq: u64, reason: &str) -> Directive {
            Directive {
                action,
                release: self.release,
                seq,
                expires: now().plus_secs(3600),
                reason: reason.into(),
            }
        }

        fn post(&self, body: &[u8]) -> HttpResponse {
            http_request(self.api, "POST", "/directive", Some(body)).unwrap()
        }

        fn release_view(&self) -> api::ReleaseView {
            let status = status::fetch(self.api).unwrap();
            status
                .releases
                .into_iter()
                .find(|r| r.id == self.release.to_hex())
                .expect("the seeder follows the release")
        }
    }

    fn view(r: &HttpResponse) -> DirectiveView {
        serde_json::from_slice(&r.body).unwrap_or_else(|e| {
            panic!("{e}: {}", String::from_utf8_lossy(&r.body));
        })
    }

    fn error(r: &HttpResponse) -> String {
        serde_json::from_slice::<ErrorView>(&r.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&r.body)))
            .error
    }

    #[test]
    fn a_good_halt_is_applied_a_replay_changes_nothing_and_resume_lifts_it() {
        let agent = LiveAgent::start();
        let halt = agent.directive(DirectiveAction::Halt, 7, "canary crash loop");
        let signed = sign_directive(&[&agent.vendor], &halt);

        let r = agent.post(&signed);
        assert_eq!(r.code, 202, "{}", String::from_utf8_lossy(&r.body));
        let v = view(&r);
        assert_eq!(v.action, "halt");
        assert_eq!(v.release, agent.release.to_hex());
        assert_eq!((v.seq, v.latest_seq), (7, Some(7)));
        assert!(v.followed && v.changed, "{v:?}");
        let expected = HaltView::Directive {
            reason: "canary crash loop".into(),
            seq: 7,
        };
        assert_eq!(v.halt.as_ref(), Some(&expected));
        // The status snapshot is updated before the API answers.
        assert_eq!(agent.release_view().halt, Some(expected.clone()));

        // The same directive again: valid, but nothing changes.
        let r = agent.post(&signed);
        assert_eq!(r.code, 200);
        let v = view(&r);
        assert!(!v.changed && v.followed, "{v:?}");
        assert_eq!(v.halt, Some(expected.clone()));

        // A resume at or below the halt's seq does not lift it.
        let low = agent.directive(DirectiveAction::Resume, 7, "too early");
        let r = agent.post(&sign_directive(&[&agent.vendor], &low));
        assert_eq!((r.code, view(&r).changed), (200, false));
        assert_eq!(agent.release_view().halt, Some(expected));

        // `waveguard resume` with a higher seq does, through the same route.
        let addr = agent.api.to_string();
        let release = agent.release.to_hex();
        let key = agent.vendor_key.to_str().unwrap();
        let outcome = cli::run([
            "waveguard",
            "resume",
            "--key",
            key,
            "--release",
            &release,
            "--seq",
            "8",
            "--api",
            &addr,
        ])
        .unwrap();
        let Outcome::Directive(report) = outcome else {
            panic!("expected a directive report, got {outcome:?}");
        };
        let delivered = report.delivered.as_ref().expect("sent to the agent");
        assert_eq!(delivered.code, 202, "{report}");
        assert_eq!(delivered.answer.latest_seq, Some(8));
        assert_eq!(delivered.answer.halt, None, "{report}");
        assert!(
            report.to_string().contains("accepted and passed on"),
            "{report}"
        );
        assert_eq!(agent.release_view().halt, None);

        // `waveguard halt` with the default seq (now in ms) outranks seq 8.
        let outcome = cli::run([
            "waveguard",
            "halt",
            "--key",
            key,
            "--release",
            &release,
            "--reason",
            "bad build",
            "--api",
            &addr,
        ])
        .unwrap();
        let Outcome::Directive(report) = outcome else {
            panic!("expected a directive report, got {outcome:?}");
        };
        assert!(report.directive.seq > 8);
        assert_eq!(report.delivered.map(|d| d.code), Some(202));
        assert!(matches!(
            agent.release_view().halt,
            Some(HaltView::Directive { ref reason, .. }) if reason == "bad build"
        ));
    }

    #[test]
    fn bad_directives_are_refused_with_their_reason_and_change_nothing() {
        let agent = LiveAgent::start();
        let before = agent.release_view();
        let refused_before = counters(&agent.bed.members[0].shared).inputs_refused;
        let halt = agent.directive(DirectiveAction::Halt, 7, "canary crash loop");

        // Signed by a key the root does not know.
        let stranger = SigningKey::from_seed([42; 32]);
        let r = agent.post(&sign_directive(&[&stranger], &halt));
        assert_eq!(r.code, 400);
        let e = error(&r);
        assert!(e.contains("signed neither by the vendor"), "{e}");
        assert!(e.contains("this fleet has no operator role"), "{e}");

        // Expired.
        let mut old = halt.clone();
        old.expires = Timestamp::from_secs(now().as_secs() - 60);
        let r = agent.post(&sign_directive(&[&agent.vendor], &old));
        assert_eq!(r.code, 400);
        assert!(error(&r).contains("expired"), "{}", error(&r));

        // Not a directive at all.
        let r = agent.post(b"{\"hello\": 1}");
        assert_eq!(r.code, 400);
        assert!(error(&r).contains("directive"), "{}", error(&r));

        // Too large: refused before it reaches the engine.
        let big = vec![b' '; MAX_DIRECTIVE_BYTES + 1];
        let r = agent.post(&big);
        assert_eq!(r.code, 413);
        assert!(
            error(&r).contains(&MAX_DIRECTIVE_BYTES.to_string()),
            "{}",
            error(&r)
        );

        // `waveguard halt` says why the agent refused.
        let stranger_key = agent.bed.repo().join("stranger.key");
        cli::run([
            "waveguard",
            "keygen",
            "--out",
            stranger_key.to_str().unwrap(),
        ])
        .unwrap();
        let err = cli::run([
            "waveguard",
            "halt",
            "--key",
            stranger_key.to_str().unwrap(),
            "--release",
            &agent.release.to_hex(),
            "--reason",
            "x",
            "--api",
            &agent.api.to_string(),
        ])
        .unwrap_err();
        let message = cli::error_message(&err);
        assert!(message.contains("refused the directive"), "{message}");
        assert!(
            message.contains("signed neither by the vendor"),
            "{message}"
        );

        let after = agent.release_view();
        assert_eq!(after, before);
        assert_eq!(after.halt, None);
        // Refused before the engine saw them, so not even counted as refused inputs.
        assert_eq!(
            counters(&agent.bed.members[0].shared).inputs_refused,
            refused_before
        );

        // The driver's own answer, as the testbed hands it to tests.
        let member = &agent.bed.members[0];
        let err = agent
            .runtime
            .block_on(member.directive(sign_directive(&[&stranger], &halt)))
            .unwrap_err();
        assert!(
            matches!(
                err.downcast_ref::<SubmitError>(),
                Some(SubmitError::Refused(DirectiveError::Signature { .. }))
            ),
            "{err:#}"
        );
        let receipt = agent
            .runtime
            .block_on(
                agent
                    .bed
                    .directive(0, sign_directive(&[&agent.vendor], &halt)),
            )
            .unwrap();
        assert!(receipt.changed && receipt.followed);
    }

    #[test]
    fn without_a_running_engine_the_api_says_so() {
        let server = TestApi::with_sample();
        let r = http_request(server.addr, "POST", "/directive", Some(b"{}")).unwrap();
        assert_eq!(r.code, 503);
        assert!(error(&r).contains("not running"), "{}", error(&r));
        // Only POST is routed.
        let err = status::http_get(server.addr, "/directive").unwrap_err();
        assert!(
            matches!(err, HttpGetError::Status { code: 405, .. }),
            "{err}"
        );
    }
}
