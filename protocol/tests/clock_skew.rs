//! Nodes whose clocks run hours or minutes ahead of or behind the fleet's
//! (docs/protocol.md, 11.10 "Clocks"): a node far off is told so in its
//! status and installs nothing; a node a little ahead does not open its wave
//! before the fleet's time; a node a little behind does not take expired
//! metadata for fresh; and one node's clock does not move another's gates.
//!
//! Each test drives one engine by hand. "Fleet time" is the true time every
//! honest reporter signs; a skewed node is given `fleet time + skew` as `now`.

use waveguard_protocol::chunk::ChunkList;
use waveguard_protocol::chunker::chunk_bytes;
use waveguard_protocol::clock::ClockCheck;
use waveguard_protocol::health::gate::GateState;
use waveguard_protocol::health::report::{sign_report, HealthReport, HealthStatus};
use waveguard_protocol::limits::{CLOCK_FAR_OFF_MS, MIN_CLOCK_REPORTERS};
use waveguard_protocol::metadata::build::{
    new_root, release_target, sign_document, Expiries, Repository, RoleSigners, RoleSpec, RootSpec,
};
use waveguard_protocol::metadata::trust::TrustedState;
use waveguard_protocol::node::{Input, Node, NodeConfig, NodeEvent, Output, Verdict};
use waveguard_protocol::release::{
    ChunkListRef, ChunkerParams, HealthPolicy, ReleaseInfo, RolloutPolicy, WaveSpec,
};
use waveguard_protocol::wave::WavePin;
use waveguard_protocol::wire::{Gossip, MetadataBundle};
use waveguard_protocol::{ReleaseId, SigningKey, Timestamp};

/// When the vendor signs.
const T0: Timestamp = Timestamp::from_secs(1_900_000_000);
/// One hour in milliseconds.
const HOUR_MS: i64 = 3_600_000;
/// The canary wave's bake, in seconds: wave 1 opens this long after `START`.
const CANARY_BAKE: u64 = 3600;
/// `silence_seconds` of the test policy.
const SILENCE: u64 = 600;

/// The rollout start: an hour after signing.
fn start() -> Timestamp {
    T0.plus_secs(3600)
}

/// When wave 1 opens by the fleet's clock (if the canary gate passed).
fn wave1_opens() -> Timestamp {
    start().plus_secs(CANARY_BAKE)
}

/// `t` moved by `ms` (either sign).
fn shift(t: Timestamp, ms: i64) -> Timestamp {
    Timestamp(t.as_millis().saturating_add_signed(ms))
}

// ---------------------------------------------------------------------------
// Builders

/// A vendor's signed release: a canary wave (1%) and everyone, and its artifact.
struct Fixture {
    root: Vec<u8>,
    bundle: MetadataBundle,
    release: ReleaseId,
    list: Vec<u8>,
}

/// The fixture, its timestamp metadata expiring `timestamp_secs` after `T0`.
fn fixture(timestamp_secs: u64) -> Fixture {
    let key = SigningKey::from_seed([9; 32]);
    let spec = RootSpec {
        root: RoleSpec::single(key.public()),
        targets: RoleSpec::single(key.public()),
        snapshot: RoleSpec::single(key.public()),
        timestamp: RoleSpec::single(key.public()),
        operator: None,
        expires: T0.plus_secs(365 * 86_400),
    };
    let root = sign_document(new_root(&spec).unwrap(), &[&key]).unwrap();
    let mut repo = Repository::new(&root).unwrap();
    let artifact: Vec<u8> = (0..100_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let params = ChunkerParams {
        min_size: 16 * 1024,
        avg_size: 32 * 1024,
        max_size: 64 * 1024,
        ..ChunkerParams::default()
    };
    let list: ChunkList = chunk_bytes(&artifact, &params).unwrap();
    let encoded = list.encode();
    let info = ReleaseInfo {
        product: "acme".into(),
        version: "1.0".into(),
        chunk_list: ChunkListRef {
            length: encoded.len() as u64,
            blake3: hex::encode(blake3::hash(&encoded).as_bytes()),
            chunks: list.chunks.len() as u32,
        },
        chunker: params,
        rollout: RolloutPolicy {
            start: start(),
            waves: vec![
                WaveSpec {
                    name: "canary".into(),
                    cumulative_ppm: 10_000,
                    bake_seconds: CANARY_BAKE,
                },
                WaveSpec {
                    name: "all".into(),
                    cumulative_ppm: 1_000_000,
                    bake_seconds: 60,
                },
            ],
            health: HealthPolicy {
                max_failure_ppm: 100_000,
                min_reports: 3,
                silence_seconds: SILENCE,
                heartbeat_seconds: 10,
                report_ppm: 1_000_000,
            },
        },
    };
    let hash = *blake3::hash(&artifact).as_bytes();
    let target = release_target("acme/1.0", artifact.len() as u64, &hash, &info).unwrap();
    let release = repo.add_target("acme/1.0", target).unwrap().id;
    let k = [&key];
    let signers = RoleSigners {
        targets: &k,
        snapshot: &k,
        timestamp: &k,
    };
    let expiries = Expiries {
        timestamp_secs,
        ..Expiries::default()
    };
    let bundle = repo.sign(T0, &expiries, &signers).unwrap();
    Fixture {
        root,
        bundle,
        release,
        list: encoded,
    }
}

/// An endpoint pinned to `pin`, whose clock reads `fleet time + skew_ms`, holding
/// the release staged (all chunks stored, artifact verified) at fleet time `T0`.
fn staged(f: &Fixture, pin: WavePin, skew_ms: i64) -> Node {
    let now = shift(T0, skew_ms);
    let trust = TrustedState::new(&f.root).unwrap();
    let config = NodeConfig {
        pin,
        ..NodeConfig::default()
    };
    let mut n = Node::new(SigningKey::from_seed([1; 32]), trust, config, now);
    n.handle_input(now, Input::Metadata(f.bundle.clone()));
    let list = ChunkList::decode(&f.list).unwrap();
    n.handle_input(
        now,
        Input::ChunksHeld(list.chunks.iter().map(|c| c.hash).collect()),
    );
    n.handle_input(
        now,
        Input::ChunkList {
            release: f.release,
            data: f.list.clone(),
        },
    );
    let assembled = drain(&mut n)
        .iter()
        .any(|o| matches!(o, Output::Assemble { .. }));
    assert!(assembled, "the node should assemble the held artifact");
    n.handle_input(
        now,
        Input::ArtifactStaged {
            release: f.release,
            result: Ok(()),
        },
    );
    drain(&mut n);
    assert_eq!(
        n.release_state(&f.release).map(|s| s.name()),
        Some("staged")
    );
    n
}

/// Everything the node wants done, up to its timeout.
fn drain(n: &mut Node) -> Vec<Output> {
    let mut out = Vec::new();
    loop {
        match n.poll_output() {
            Output::Timeout(_) => return out,
            o => out.push(o),
        }
    }
}

/// The key of reporter `i` (seeds 20 and up; the node under test is seed 1).
fn reporter(i: u8) -> SigningKey {
    SigningKey::from_seed([20 + i; 32])
}

/// A gossiped health report of reporter `i` in wave 0, signed at fleet time `at`.
fn heartbeat(f: &Fixture, i: u8, status: HealthStatus, at: Timestamp) -> Vec<u8> {
    let key = reporter(i);
    let r = HealthReport::new(key.node_id(), f.release, 0, status, at.as_millis(), at);
    Gossip::Health(sign_report(&key, r, None)).encode()
}

/// Gossips the heartbeats of reporters `0..count`, signed at fleet time `at`, to a
/// node whose clock is `skew_ms` off; returns the verdicts and everything it did.
fn hear(
    n: &mut Node,
    f: &Fixture,
    count: u8,
    at: Timestamp,
    skew_ms: i64,
) -> (Vec<Verdict>, Vec<Output>) {
    let now = shift(at, skew_ms);
    let relay = reporter(200).node_id();
    for i in 0..count {
        n.handle_input(
            now,
            Input::Gossip {
                from: relay,
                message_id: u64::from(i),
                data: heartbeat(f, i, HealthStatus::Healthy, at),
            },
        );
    }
    let out = drain(n);
    let verdicts = out
        .iter()
        .filter_map(|o| match o {
            Output::GossipVerdict { verdict, .. } => Some(*verdict),
            _ => None,
        })
        .collect();
    (verdicts, out)
}

/// Ticks the node at fleet time `at` (its clock reading `at + skew_ms`).
fn tick(n: &mut Node, at: Timestamp, skew_ms: i64) -> Vec<Output> {
    n.handle_input(shift(at, skew_ms), Input::Tick);
    drain(n)
}

/// Checks that `n` estimates its clock `skew_ms` off (within a second) and flags it far
/// off; returns the estimate.
fn assert_far_off(n: &Node, skew_ms: i64) -> i64 {
    let offset = n
        .status()
        .clock_offset_ms
        .expect("five reporters give an estimate");
    assert!(
        (offset + skew_ms).abs() < 1000,
        "offset {offset} for a skew of {skew_ms}"
    );
    assert_eq!(n.status().clock, ClockCheck::FarOff);
    offset
}

fn installs(out: &[Output]) -> bool {
    out.iter().any(|o| matches!(o, Output::Install { .. }))
}

fn halted(out: &[Output]) -> bool {
    out.iter()
        .any(|o| matches!(o, Output::Event(NodeEvent::Halted { .. })))
}

/// Healthy canary heartbeats every 10 s of fleet time over `[from, to)`, each tick
/// followed by a tick of the node; returns everything it did.
fn bake(n: &mut Node, f: &Fixture, from: Timestamp, to: Timestamp, skew_ms: i64) -> Vec<Output> {
    let mut out = Vec::new();
    let mut at = from;
    while at < to {
        out.extend(hear(n, f, MIN_CLOCK_REPORTERS as u8, at, skew_ms).1);
        out.extend(tick(n, at, skew_ms));
        at = at.plus_secs(10);
    }
    out
}

// ---------------------------------------------------------------------------
// Far off: flagged, installs nothing, halts nothing on silence

#[test]
fn a_node_hours_ahead_is_flagged_and_neither_installs_nor_halts() {
    let f = fixture(86_400);
    let skew = 2 * HOUR_MS;
    let mut n = staged(&f, WavePin::Last, skew);
    assert_eq!(n.status().clock, ClockCheck::Unknown);
    assert_eq!(n.status().clock_offset_ms, None);
    // Canary heartbeats at fleet time start + 10 s; the node reads start + 2 h 10 s,
    // past wave 1's schedule, and to its clock every heartbeat is long silent.
    let at = start().plus_secs(10);
    let (verdicts, out) = hear(&mut n, &f, MIN_CLOCK_REPORTERS as u8, at, skew);
    assert!(
        verdicts.iter().all(|v| *v == Verdict::Accept),
        "{verdicts:?}"
    );
    let offset = assert_far_off(&n, skew);
    assert!(out.iter().any(
        |o| matches!(o, Output::Event(NodeEvent::ClockFarOff { offset_ms }) if *offset_ms == offset)
    ));
    // Minutes pass: by its clock the canary is silent, and its schedule says wave 1 is open.
    let out = tick(&mut n, at.plus_secs(60), skew);
    assert!(!installs(&out) && !halted(&out), "{out:?}");
    assert_eq!(
        n.release_state(&f.release).map(|s| s.name()),
        Some("staged")
    );
}

#[test]
fn without_the_estimate_the_same_node_would_halt_a_healthy_canary() {
    // The control for the test above: three reporters are too few to estimate, so the
    // node goes by its own clock, sees the canary silent, and halts (locally: see
    // `a_fast_node_s_halt_does_not_move_an_honest_node_s_gate`).
    let f = fixture(86_400);
    let skew = 2 * HOUR_MS;
    let mut n = staged(&f, WavePin::Last, skew);
    let at = start().plus_secs(10);
    let (_, mut out) = hear(&mut n, &f, 3, at, skew);
    assert_eq!(n.status().clock, ClockCheck::Unknown);
    out.extend(tick(&mut n, at.plus_secs(60), skew));
    assert!(halted(&out), "{out:?}");
}

#[test]
fn a_node_hours_behind_is_flagged_ignores_future_reports_without_blame_and_does_not_install() {
    let f = fixture(86_400);
    let skew = -2 * HOUR_MS;
    // Pinned to the canary: its wave needs no gate, only the schedule.
    let mut n = staged(&f, WavePin::Canary, skew);
    // A minute before its wave opens by its own clock (two hours after by the fleet's),
    // it hears the fleet: every report looks two hours in the future.
    let at = start().plus_secs(2 * 3600 - 60);
    let (verdicts, _) = hear(&mut n, &f, MIN_CLOCK_REPORTERS as u8, at, skew);
    // Not the relaying peer's fault: ignored (not passed on), not rejected (no penalty).
    assert!(
        verdicts.iter().all(|v| *v == Verdict::Ignore),
        "{verdicts:?}"
    );
    assert_far_off(&n, skew);
    // Its own clock reaches the wave's schedule: it still waits.
    let out = tick(&mut n, at.plus_secs(70), skew);
    assert!(!installs(&out), "{out:?}");
    assert_eq!(
        n.release_state(&f.release).map(|s| s.name()),
        Some("staged")
    );
}

#[test]
fn a_node_whose_clock_is_corrected_installs_and_says_so() {
    let f = fixture(86_400);
    let skew = -2 * HOUR_MS;
    let mut n = staged(&f, WavePin::Canary, skew);
    let at = start().plus_secs(2 * 3600 - 60);
    hear(&mut n, &f, MIN_CLOCK_REPORTERS as u8, at, skew);
    assert!(!installs(&tick(&mut n, at.plus_secs(70), skew)));
    assert_eq!(n.status().clock, ClockCheck::FarOff);
    // The operator fixes the clock: fresh heartbeats now agree with it.
    let later = at.plus_secs(80);
    let (verdicts, mut out) = hear(&mut n, &f, MIN_CLOCK_REPORTERS as u8, later, 0);
    assert!(
        verdicts.iter().all(|v| *v == Verdict::Accept),
        "{verdicts:?}"
    );
    out.extend(tick(&mut n, later.plus_secs(1), 0));
    assert_eq!(n.status().clock, ClockCheck::Agrees);
    assert!(out
        .iter()
        .any(|o| matches!(o, Output::Event(NodeEvent::ClockAgrees { .. }))));
    assert!(installs(&out), "{out:?}");
}

// ---------------------------------------------------------------------------
// A little off: schedules by the earlier clock, expiry by the later one

#[test]
fn a_node_minutes_ahead_does_not_open_its_wave_before_the_fleet_s_time() {
    let f = fixture(86_400);
    // Four minutes ahead: within the threshold, so not far off, but enough to open early.
    let skew = 4 * 60 * 1000;
    assert!(skew < CLOCK_FAR_OFF_MS as i64);
    let mut n = staged(&f, WavePin::Last, skew);
    // The canary bakes healthy until two minutes before wave 1 opens by the fleet's clock
    // (by the node's, two minutes after).
    let early = Timestamp(wave1_opens().as_millis() - 120_000);
    let out = bake(&mut n, &f, start().plus_secs(10), early, skew);
    assert_eq!(n.status().clock, ClockCheck::Agrees);
    assert!(
        !installs(&out),
        "installed before wave 1 opened by the fleet's clock"
    );
    // Once the fleet's clock reaches the schedule, it installs.
    let out = bake(&mut n, &f, early, wave1_opens().plus_secs(20), skew);
    assert!(installs(&out), "{out:?}");
    assert!(!halted(&out));
}

#[test]
fn a_node_minutes_behind_does_not_install_on_metadata_expired_by_the_fleet_s_clock() {
    // The timestamp expires at start + 2 min by the fleet's clock.
    let f = fixture(3600 + 120);
    let expires = start().plus_secs(120);
    let skew = -4 * 60 * 1000;
    let mut n = staged(&f, WavePin::Canary, skew);
    // It hears the fleet shortly before its wave opens by its clock.
    let (_, out) = hear(
        &mut n,
        &f,
        MIN_CLOCK_REPORTERS as u8,
        start().plus_secs(200),
        skew,
    );
    assert!(!installs(&out));
    assert_eq!(n.status().clock, ClockCheck::Agrees);
    // Fleet time start + 4 min: expired two minutes ago; the node reads start, its
    // wave's schedule, and by its clock the metadata has two minutes left.
    let at = start().plus_secs(240);
    assert!(shift(at, skew) < expires && at >= expires);
    let out = tick(&mut n, at, skew);
    assert!(
        !installs(&out),
        "installed on metadata expired by the fleet's clock"
    );
}

#[test]
fn the_same_node_without_evidence_goes_by_its_own_clock() {
    // The control for the test above (and the documented residual risk): with no
    // reports, a node behind cannot know it, and installs on its own clock's word.
    let f = fixture(3600 + 120);
    let skew = -4 * 60 * 1000;
    let mut n = staged(&f, WavePin::Canary, skew);
    let out = tick(&mut n, start().plus_secs(240), skew);
    assert_eq!(n.status().clock, ClockCheck::Unknown);
    assert!(installs(&out), "{out:?}");
}

// ---------------------------------------------------------------------------
// One node's clock does not move another's gates

#[test]
fn a_fast_node_s_halt_does_not_move_an_honest_node_s_gate() {
    let f = fixture(86_400);
    let skew = 2 * HOUR_MS;
    // A node two hours ahead with too little evidence to know it: it halts on "silence".
    let mut fast = staged(&f, WavePin::Last, skew);
    let at = start().plus_secs(10);
    let (_, mut out) = hear(&mut fast, &f, 3, at, skew);
    out.extend(tick(&mut fast, at.plus_secs(60), skew));
    let evidence = out
        .iter()
        .find_map(|o| match o {
            Output::Broadcast { data, .. }
                if matches!(Gossip::decode(data), Ok(Gossip::Halt(_))) =>
            {
                Some(data.clone())
            }
            _ => None,
        })
        .expect("the fast node announces its halt");
    // An honest node with the same three heartbeats gets the announcement a minute later.
    let mut honest = staged(&f, WavePin::Last, 0);
    hear(&mut honest, &f, 3, at, 0);
    let now = at.plus_secs(60);
    honest.handle_input(
        now,
        Input::Gossip {
            from: fast.id(),
            message_id: 99,
            data: evidence,
        },
    );
    let out = drain(&mut honest);
    assert!(!halted(&out), "{out:?}");
    assert!(out.iter().any(|o| matches!(
        o,
        Output::GossipVerdict {
            message_id: 99,
            verdict: Verdict::Ignore
        }
    )));
    let status = honest.status();
    let canary = status.releases[0].waves[0];
    assert_eq!((canary.healthy, canary.silent), (3, 0));
    assert_eq!(canary.gate, GateState::Pending);
}

#[test]
fn a_fast_node_s_reports_are_ignored_not_counted_and_its_relay_not_blamed() {
    let f = fixture(86_400);
    let mut honest = staged(&f, WavePin::Last, 0);
    let at = start().plus_secs(10);
    hear(&mut honest, &f, MIN_CLOCK_REPORTERS as u8, at, 0);
    // A canary whose clock runs two hours fast reports "unhealthy": dated beyond the
    // allowed skew, it is not believed (it could be a pre-dated report kept for later).
    let future = shift(at, 2 * HOUR_MS);
    honest.handle_input(
        at,
        Input::Gossip {
            from: reporter(200).node_id(),
            message_id: 7,
            data: heartbeat(&f, 9, HealthStatus::Unhealthy, future),
        },
    );
    let out = drain(&mut honest);
    assert!(out.iter().any(|o| matches!(
        o,
        Output::GossipVerdict {
            message_id: 7,
            verdict: Verdict::Ignore
        }
    )));
    let canary = honest.status().releases[0].waves[0];
    assert_eq!(
        (canary.reporting, canary.failed),
        (MIN_CLOCK_REPORTERS as u64, 0)
    );
    // And one fast reporter among honest ones does not make it doubt its own clock.
    assert_eq!(honest.status().clock, ClockCheck::Agrees);
    assert_eq!(honest.status().clock_offset_ms, Some(0));
}
