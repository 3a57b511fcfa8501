//! A gate that fails only because nodes went quiet is confirmed with a peer
//! before the node halts: a node's final `baked` report is sent once, so a
//! missed copy looks like silence. One engine driven by hand, watching one
//! wave of three reporting nodes.

#[path = "support/one_wave.rs"]
mod one_wave;

use one_wave::{drain, release, report, signed, start, SILENCE_SECS, T0};
use waveguard_protocol::health::report::HealthStatus;
use waveguard_protocol::limits::SILENCE_CONFIRM_MS;
use waveguard_protocol::metadata::trust::TrustedState;
use waveguard_protocol::node::{Input, Node, NodeConfig, NodeEvent, NodeRole, Output};
use waveguard_protocol::wire::{Gossip, Request, Response, SignedHealth};
use waveguard_protocol::{NodeId, ReleaseId, SigningKey, Timestamp};

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
