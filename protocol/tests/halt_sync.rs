//! Halt sync (spec 11.11): a node that missed a halt's gossip (cut off,
//! offline) learns of it from the first peer it connects to that has halted,
//! whether the halt came from a failed gate (evidence) or from a directive,
//! and it halts only on what it verifies itself.

#[path = "support/one_wave.rs"]
mod one_wave;

use one_wave::{drain, release, report, start, vendor_key, T0};
use waveguard_protocol::health::directive::{sign_directive, Directive, DirectiveAction};
use waveguard_protocol::health::report::HealthStatus;
use waveguard_protocol::metadata::trust::TrustedState;
use waveguard_protocol::node::{Input, Node, NodeConfig, NodeEvent, NodeRole, Output};
use waveguard_protocol::rollout::HaltReason;
use waveguard_protocol::wire::{Gossip, HaltEvidence, MetadataBundle, Request, Response};
use waveguard_protocol::{NodeId, ReleaseId, SigningKey, Timestamp};

/// One seeder engine that follows the one-wave release (seeders watch gates and
/// halt like endpoints, but never install, which keeps the outputs short).
struct Peer {
    node: Node,
    id: NodeId,
    release: ReleaseId,
}

impl Peer {
    fn new(seed: u8, root: &[u8], bundle: &MetadataBundle, release: ReleaseId) -> Self {
        let key = SigningKey::from_seed([seed; 32]);
        let id = key.node_id();
        let config = NodeConfig {
            role: NodeRole::Seeder,
            ..NodeConfig::default()
        };
        let mut node = Node::new(key, TrustedState::new(root).unwrap(), config, T0);
        node.handle_input(T0, Input::Metadata(bundle.clone()));
        drain(&mut node);
        Peer { node, id, release }
    }

    /// Feeds `input` at `now` and returns what came out.
    fn feed(&mut self, now: Timestamp, input: Input) -> Vec<Output> {
        self.node.handle_input(now, input);
        drain(&mut self.node)
    }

    /// Asks this node, as `from`, what halted the release; returns its answer.
    fn answer_halt(&mut self, now: Timestamp, from: NodeId) -> Response {
        let request = Request::Halt {
            release: self.release,
        };
        let out = self.feed(
            now,
            Input::Request {
                from,
                request_id: 77,
                data: request.encode(),
            },
        );
        out.iter()
            .find_map(|o| match o {
                Output::Respond {
                    request_id: 77,
                    data,
                    ..
                } => Some(Response::decode(data).unwrap()),
                _ => None,
            })
            .expect("an answer to the halt request")
    }

    /// Takes `answer` from `from` to this node's request `request_id`.
    fn take(
        &mut self,
        now: Timestamp,
        from: NodeId,
        request_id: u64,
        answer: &Response,
    ) -> Vec<Output> {
        let data = answer.encode();
        self.feed(
            now,
            Input::Response {
                from,
                request_id,
                data,
            },
        )
    }

    /// Connects `peer` and returns the id of the halt request sent to it, if any.
    fn connect(&mut self, now: Timestamp, peer: NodeId) -> Option<u64> {
        let release = self.release;
        self.feed(now, Input::PeerConnected(peer))
            .iter()
            .find_map(|o| match o {
                Output::SendRequest {
                    to,
                    request_id,
                    data,
                } if *to == peer => match Request::decode(data) {
                    Ok(Request::Halt { release: r }) if r == release => Some(*request_id),
                    _ => None,
                },
                _ => None,
            })
    }
}

fn halt_reason(out: &[Output]) -> Option<&HaltReason> {
    out.iter().find_map(|o| match o {
        Output::Event(NodeEvent::Halted { reason, .. }) => Some(reason),
        _ => None,
    })
}

fn broadcast(out: &[Output]) -> Option<Gossip> {
    out.iter().find_map(|o| match o {
        Output::Broadcast { data, .. } => Gossip::decode(data).ok(),
        _ => None,
    })
}

/// `a` (seed 1) halted on its gate: one unhealthy report of the only wave,
/// with 10 % failures allowed and one report enough.
fn halted_on_gate() -> (Peer, Vec<u8>, MetadataBundle) {
    let (root, bundle, id) = release();
    let mut a = Peer::new(1, &root, &bundle, id);
    let at = start().plus_secs(10);
    let sick = report(20, id, HealthStatus::Unhealthy, 1, at);
    let relay = SigningKey::from_seed([5; 32]).node_id();
    a.feed(
        at,
        Input::Gossip {
            from: relay,
            message_id: 1,
            data: sick,
        },
    );
    let out = a.feed(at.plus_secs(1), Input::Tick);
    assert!(
        matches!(
            halt_reason(&out),
            Some(HaltReason::GateFailed { wave: 0, .. })
        ),
        "{out:?}"
    );
    (a, root, bundle)
}

#[test]
fn a_node_that_missed_a_gate_halt_learns_it_from_its_next_peer() {
    let (mut a, root, bundle) = halted_on_gate();
    let now = start().plus_secs(3 * 3600); // hours later, as after a partition heals
    let mut b = Peer::new(2, &root, &bundle, a.release);
    let request_id = b.connect(now, a.id).expect("b asks a about the release");
    let answer = a.answer_halt(now, b.id);
    let Response::Halt(ev) = &answer else {
        panic!("a halted on a gate and answers with evidence: {answer:?}");
    };
    assert_eq!((ev.release, ev.wave, ev.reports.len()), (a.release, 0, 1));
    let out = b.take(now, a.id, request_id, &answer);
    assert!(
        matches!(
            halt_reason(&out),
            Some(HaltReason::GateFailed { wave: 0, .. })
        ),
        "{out:?}"
    );
    // b's own mesh missed the halt too: b tells it.
    assert!(
        matches!(broadcast(&out), Some(Gossip::Halt(e)) if e == *ev),
        "{out:?}"
    );
    // Halted now, b asks its next peer nothing.
    let c = SigningKey::from_seed([3; 32]).node_id();
    assert_eq!(b.connect(now, c), None);
}

#[test]
fn a_node_that_missed_a_halt_directive_learns_it_from_its_next_peer() {
    let (root, bundle, id) = release();
    let mut a = Peer::new(1, &root, &bundle, id);
    let directive = sign_directive(
        &[&vendor_key()],
        &Directive {
            action: DirectiveAction::Halt,
            release: id,
            seq: 1,
            expires: T0.plus_secs(86_400),
            reason: "crash loop on canaries".into(),
        },
    );
    let out = a.feed(start(), Input::Directive(directive.clone()));
    assert!(
        matches!(
            halt_reason(&out),
            Some(HaltReason::Directive { seq: 1, .. })
        ),
        "{out:?}"
    );
    let now = start().plus_secs(3600);
    let mut b = Peer::new(2, &root, &bundle, id);
    let request_id = b.connect(now, a.id).expect("b asks a about the release");
    let answer = a.answer_halt(now, b.id);
    assert_eq!(answer, Response::Directive(directive.clone().into()));
    let out = b.take(now, a.id, request_id, &answer);
    assert!(
        matches!(
            halt_reason(&out),
            Some(HaltReason::Directive { seq: 1, .. })
        ),
        "{out:?}"
    );
    assert!(
        matches!(broadcast(&out), Some(Gossip::Directive(d)) if d.as_ref() == directive.as_slice()),
        "{out:?}"
    );
}

#[test]
fn a_node_that_has_not_halted_answers_not_found() {
    let (root, bundle, id) = release();
    let mut a = Peer::new(1, &root, &bundle, id);
    let b = SigningKey::from_seed([2; 32]).node_id();
    assert_eq!(a.answer_halt(start(), b), Response::NotFound);
}

#[test]
fn evidence_that_does_not_fail_the_gate_or_is_forged_halts_nobody() {
    let (mut a, root, bundle) = halted_on_gate();
    let now = start().plus_secs(60);
    let Response::Halt(ev) = a.answer_halt(now, SigningKey::from_seed([2; 32]).node_id()) else {
        panic!("a halted on a gate");
    };
    // A byte of the signed report changed: forged.
    let mut forged = ev.clone();
    let bytes = forged.reports[0].report.as_mut();
    let at = bytes.len() - 10;
    bytes[at] = if bytes[at] == b'0' { b'1' } else { b'0' };
    // Only a healthy report: honest, but it fails no gate.
    let healthy = HaltEvidence {
        reports: vec![one_wave::signed(&report(
            21,
            a.release,
            HealthStatus::Healthy,
            1,
            start().plus_secs(20),
        ))],
        ..ev.clone()
    };
    // Evidence about another release than the one asked about.
    let elsewhere = HaltEvidence {
        release: ReleaseId([0xab; 32]),
        ..ev
    };
    for (what, ev) in [
        ("forged", forged),
        ("healthy", healthy),
        ("elsewhere", elsewhere),
    ] {
        let mut b = Peer::new(2, &root, &bundle, a.release);
        let request_id = b.connect(now, a.id).expect("b asks a");
        let out = b.take(now, a.id, request_id, &Response::Halt(ev));
        assert_eq!(halt_reason(&out), None, "{what}: {out:?}");
        assert!(broadcast(&out).is_none(), "{what}: {out:?}");
        assert!(
            out.iter()
                .any(|o| matches!(o, Output::Event(NodeEvent::Refused { .. }))),
            "{what}: refused with a reason: {out:?}"
        );
    }
}
