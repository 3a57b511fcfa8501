//! A gate that fails only because nodes went quiet is confirmed with a peer
//! before the node halts: a node's final `baked` report is sent once, so a
//! missed copy looks like silence. One engine driven by hand, watching one
//! wave of three reporting nodes.

use waveguard_protocol::health::report::{sign_report, HealthReport, HealthStatus};
use waveguard_protocol::limits::SILENCE_CONFIRM_MS;
use waveguard_protocol::metadata::build::{
    new_root, release_target, sign_document, Expiries, Repository, RoleSigners, RoleSpec, RootSpec,
};
use waveguard_protocol::metadata::trust::TrustedState;
use waveguard_protocol::node::{Input, Node, NodeConfig, NodeEvent, NodeRole, Output};
use waveguard_protocol::release::{
    ChunkListRef, ChunkerParams, HealthPolicy, ReleaseInfo, RolloutPolicy, WaveSpec,
};
use waveguard_protocol::wire::{Gossip, MetadataBundle, Request, Response, SignedHealth};
use waveguard_protocol::{NodeId, ReleaseId, SigningKey, Timestamp};

const T0: Timestamp = Timestamp::from_secs(1_900_000_000);
const SILENCE_SECS: u64 = 60;

/// A one-wave release starting at `start()`, and the bundle that trusts it.
fn release() -> (Vec<u8>, MetadataBundle, ReleaseId) {
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
    let info = ReleaseInfo {
        product: "acme".into(),
        version: "1.0".into(),
        chunk_list: ChunkListRef {
            length: waveguard_protocol::chunk::encoded_list_len(1),
            blake3: hex::encode([7u8; 32]),
            chunks: 1,
        },
        chunker: ChunkerParams::default(),
        rollout: RolloutPolicy {
            start: start(),
            waves: vec![WaveSpec {
                name: "all".into(),
                cumulative_ppm: 1_000_000,
                bake_seconds: 60,
            }],
            health: HealthPolicy {
                max_failure_ppm: 100_000,
                min_reports: 1,
                silence_seconds: SILENCE_SECS,
                heartbeat_seconds: 10,
            },
        },
    };
    let target = release_target("acme/1.0", 1000, &[1; 32], &info).unwrap();
    let id = repo.add_target("acme/1.0", target).unwrap().id;
    let k = [&key];
    let signers = RoleSigners {
        targets: &k,
        snapshot: &k,
        timestamp: &k,
    };
    let bundle = repo.sign(T0, &Expiries::default(), &signers).unwrap();
    (root, bundle, id)
}

fn start() -> Timestamp {
    T0.plus_secs(3600)
}

fn report(seed: u8, release: ReleaseId, status: HealthStatus, seq: u64, at: Timestamp) -> Vec<u8> {
    let key = SigningKey::from_seed([seed; 32]);
    let r = HealthReport::new(key.node_id(), release, 0, status, seq, at);
    Gossip::Health(sign_report(&key, r, None)).encode()
}

fn signed(data: &[u8]) -> SignedHealth {
    match Gossip::decode(data).unwrap() {
        Gossip::Health(sh) => sh,
        other => panic!("{other:?}"),
    }
}

struct Watcher {
    node: Node,
    release: ReleaseId,
    peer: NodeId,
    /// The three reporters' last heartbeats before they went quiet.
    heartbeats: Vec<Vec<u8>>,
}

/// A seeder (it watches gates but never installs) that heard three healthy heartbeats
/// at `start + 10 s`, then nothing: at `start + 10 s + silence + 2 s` all three look silent.
fn watcher() -> Watcher {
    let (root, bundle, release) = release();
    let config = NodeConfig {
        role: NodeRole::Seeder,
        ..NodeConfig::default()
    };
    let mut node = Node::new(
        SigningKey::from_seed([1; 32]),
        TrustedState::new(&root).unwrap(),
        config,
        T0,
    );
    node.handle_input(T0, Input::Metadata(bundle));
    let peer = SigningKey::from_seed([5; 32]).node_id();
    node.handle_input(T0, Input::PeerConnected(peer));
    let at = start().plus_secs(10);
    let heartbeats: Vec<Vec<u8>> = (20..23)
        .map(|s| report(s, release, HealthStatus::Healthy, 1, at))
        .collect();
    for (k, h) in heartbeats.iter().enumerate() {
        node.handle_input(
            at,
            Input::Gossip {
                from: peer,
                message_id: k as u64,
                data: h.clone(),
            },
        );
    }
    drain(&mut node);
    Watcher {
        node,
        release,
        peer,
        heartbeats,
    }
}

fn drain(n: &mut Node) -> Vec<Output> {
    let mut out = Vec::new();
    loop {
        match n.poll_output() {
            Output::Timeout(_) => return out,
            o => out.push(o),
        }
    }
}

fn halted(out: &[Output]) -> bool {
    out.iter()
        .any(|o| matches!(o, Output::Event(NodeEvent::Halted { .. })))
}

/// Ticks at `at`; returns the health sync request id sent, if any, and whether it halted.
fn tick(w: &mut Watcher, at: Timestamp) -> (Option<u64>, bool) {
    w.node.handle_input(at, Input::Tick);
    let out = drain(&mut w.node);
    let sync = out.iter().find_map(|o| match o {
        Output::SendRequest {
            to,
            request_id,
            data,
        } if *to == w.peer => match Request::decode(data) {
            Ok(Request::Health { release, wave: 0 }) if release == w.release => Some(*request_id),
            _ => None,
        },
        _ => None,
    });
    (sync, halted(&out))
}

fn quiet_time() -> Timestamp {
    start().plus_secs(10 + SILENCE_SECS + 2)
}

#[test]
fn silence_is_confirmed_with_a_peer_and_final_reports_it_returns_clear_it() {
    let mut w = watcher();
    let (sync, halted_now) = tick(&mut w, quiet_time());
    let request_id = sync.expect("a health sync request to confirm the silence");
    assert!(!halted_now, "halted before hearing back");
    // The peer holds the final reports we missed: the three are done, not silent.
    let baked: Vec<SignedHealth> = (20..23)
        .map(|s| {
            signed(&report(
                s,
                w.release,
                HealthStatus::Baked,
                2,
                start().plus_secs(15),
            ))
        })
        .collect();
    let now = quiet_time().plus_millis(50);
    w.node.handle_input(
        now,
        Input::Response {
            from: w.peer,
            request_id,
            data: Response::Health(baked).encode(),
        },
    );
    let out = drain(&mut w.node);
    assert!(
        !halted(&out),
        "halted although every node sent its final report"
    );
    for later in [SILENCE_CONFIRM_MS, 10 * SILENCE_CONFIRM_MS] {
        let (_, halted_later) = tick(&mut w, now.plus_millis(later));
        assert!(!halted_later);
    }
    let status = w.node.status();
    assert_eq!(status.releases[0].waves[0].healthy, 3);
    assert!(status.releases[0].halt.is_none());
}

#[test]
fn silence_the_peer_confirms_halts_at_once() {
    let mut w = watcher();
    let (sync, _) = tick(&mut w, quiet_time());
    let request_id = sync.expect("a sync request");
    let same: Vec<SignedHealth> = w.heartbeats.iter().map(|h| signed(h)).collect();
    w.node.handle_input(
        quiet_time().plus_millis(50),
        Input::Response {
            from: w.peer,
            request_id,
            data: Response::Health(same).encode(),
        },
    );
    let out = drain(&mut w.node);
    assert!(
        halted(&out),
        "the peer saw the same silence: the node must halt"
    );
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Broadcast { data, .. }
            if matches!(Gossip::decode(data), Ok(Gossip::Halt(_))))),
        "the halt is announced with its evidence"
    );
}

#[test]
fn silence_unconfirmed_in_time_halts_at_the_deadline() {
    let mut w = watcher();
    let (sync, _) = tick(&mut w, quiet_time());
    assert!(sync.is_some());
    let (_, early) = tick(&mut w, quiet_time().plus_millis(SILENCE_CONFIRM_MS - 100));
    assert!(!early, "halted before the confirmation deadline");
    let (_, late) = tick(&mut w, quiet_time().plus_millis(SILENCE_CONFIRM_MS + 100));
    assert!(
        late,
        "no answer in time: the silence stands and the node halts"
    );
}
