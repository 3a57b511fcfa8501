//! The table of valid messages `node_inputs` scripts refer to by index
//! (canned payloads): bundles, every peer's healthy and unhealthy report,
//! halt evidence, directives, and every request and response kind for
//! release A. Built once per fleet, signed with the fixture keys.

use crate::fixtures::{fleet_keys, peer_key, start, world, World, NOW, PEERS};
use std::sync::OnceLock;
use waveguard_protocol::fetch::Bitfield;
use waveguard_protocol::health::directive::{sign_directive, Directive, DirectiveAction};
use waveguard_protocol::health::evidence::build_evidence;
use waveguard_protocol::health::ledger::Ledger;
use waveguard_protocol::health::report::{sign_report, verify_report, HealthReport, HealthStatus};
use waveguard_protocol::wire::{Gossip, Request, Response, SignedHealth};

/// Gossip: the bundle with release A.
pub const GOSSIP_BUNDLE_A: u8 = 0;
/// Gossip: the bundle with releases A and B.
pub const GOSSIP_BUNDLE_AB: u8 = 1;
/// Gossip: peer `i`'s healthy report (seq 1, wave 0).
pub const fn gossip_healthy(i: usize) -> u8 {
    2 + (i % PEERS) as u8
}
/// Gossip: peer `i`'s unhealthy report (seq 2, wave 0).
pub const fn gossip_unhealthy(i: usize) -> u8 {
    2 + PEERS as u8 + (i % PEERS) as u8
}
/// Gossip: halt evidence (every peer unhealthy in wave 0).
pub const GOSSIP_HALT: u8 = 2 + 2 * PEERS as u8;
/// Gossip: the vendor's halt directive (seq 1).
pub const GOSSIP_DIRECTIVE_HALT: u8 = GOSSIP_HALT + 1;
/// Gossip: a resume directive (seq 2), by the operator where there is one.
pub const GOSSIP_DIRECTIVE_RESUME: u8 = GOSSIP_HALT + 2;
/// Request: metadata.
pub const REQUEST_METADATA: u8 = GOSSIP_HALT + 3;
/// Request: availability of release A, holding everything.
pub const REQUEST_HAVE_FULL: u8 = GOSSIP_HALT + 4;
/// Request: release A's chunk list.
pub const REQUEST_CHUNK_LIST: u8 = GOSSIP_HALT + 5;
/// Request: release A's chunk 0.
pub const REQUEST_CHUNK_0: u8 = GOSSIP_HALT + 6;
/// Response: the bundle with releases A and B.
pub const RESPONSE_METADATA: u8 = GOSSIP_HALT + 7;
/// Response: holding all of release A.
pub const RESPONSE_HAVE_FULL: u8 = GOSSIP_HALT + 8;
/// Response: release A's chunk list.
pub const RESPONSE_CHUNK_LIST: u8 = GOSSIP_HALT + 9;
/// Response: release A's chunk 0.
pub const RESPONSE_CHUNK_0: u8 = GOSSIP_HALT + 10;
/// Response: release A's chunk 1.
pub const RESPONSE_CHUNK_1: u8 = GOSSIP_HALT + 11;
/// Response: not found.
pub const RESPONSE_NOT_FOUND: u8 = GOSSIP_HALT + 12;
/// Response: busy.
pub const RESPONSE_BUSY: u8 = GOSSIP_HALT + 13;
/// Local: the halt directive's bytes.
pub const DIRECTIVE_HALT: u8 = GOSSIP_HALT + 14;
/// Local: the resume directive's bytes.
pub const DIRECTIVE_RESUME: u8 = GOSSIP_HALT + 15;
/// Local: release A's chunk list bytes.
pub const CHUNK_LIST: u8 = GOSSIP_HALT + 16;
/// Number of entries.
pub const LEN: usize = GOSSIP_HALT as usize + 17;

/// Messages and documents for one world.
pub struct Fixture {
    /// The canned table, in the order of the constants of this module.
    pub table: Vec<Vec<u8>>,
    /// What an honest peer answers to a health sync request for wave 0 of release A: every
    /// peer's final `baked` report (seq 3). Outside the table, so its indices stay put.
    pub sync: Vec<SignedHealth>,
}

fn gossip(g: Gossip) -> Vec<u8> {
    g.encode()
}

fn build_fixture(w: &World) -> Fixture {
    let a = &w.release_a;
    let report = |i: usize, status, seq, secs| {
        let key = peer_key(i);
        let r = HealthReport::new(key.node_id(), a.id, 0, status, seq, start().plus_secs(secs));
        sign_report(&key, r, w.peer_certs[i].clone())
    };
    let healthy: Vec<SignedHealth> = (0..PEERS)
        .map(|i| report(i, HealthStatus::Healthy, 1, 30))
        .collect();
    let unhealthy: Vec<SignedHealth> = (0..PEERS)
        .map(|i| report(i, HealthStatus::Unhealthy, 2, 60))
        .collect();
    let sync: Vec<SignedHealth> = (0..PEERS)
        .map(|i| report(i, HealthStatus::Baked, 3, 120))
        .collect();
    let at = start().plus_secs(90);
    let mut ledger = Ledger::new(a.id);
    for sh in &unhealthy {
        let v = verify_report(sh, &fleet_keys(&w.trust_a), a, at).expect("fixture report verifies");
        ledger.insert(v).expect("fixture report is new");
    }
    let evidence = build_evidence(&ledger, a, 0, at);
    assert!(
        !evidence.reports.is_empty(),
        "fixture evidence holds reports"
    );
    let v = crate::fixtures::vendor_keys();
    let directive = |action, seq| Directive {
        action,
        release: a.id,
        seq,
        expires: NOW.plus_secs(30 * 86_400),
        reason: "fuzzing".into(),
    };
    let halt = sign_directive(&[&v.targets], &directive(DirectiveAction::Halt, 1));
    let resumer = if w.operator { &v.operator } else { &v.targets };
    let resume = sign_directive(&[resumer], &directive(DirectiveAction::Resume, 2));
    let c = &w.content_a;
    let full = Bitfield::full(c.list.chunks.len() as u32).to_bytes();
    let mut table = vec![
        gossip(Gossip::Metadata(w.bundle_a.clone())),
        gossip(Gossip::Metadata(w.bundle_ab.clone())),
    ];
    table.extend(healthy.into_iter().map(|h| gossip(Gossip::Health(h))));
    table.extend(unhealthy.into_iter().map(|h| gossip(Gossip::Health(h))));
    table.extend([
        gossip(Gossip::Halt(evidence)),
        gossip(Gossip::Directive(halt.clone().into())),
        gossip(Gossip::Directive(resume.clone().into())),
        Request::Metadata.encode(),
        Request::Have {
            release: a.id,
            bitfield: full.clone().into(),
        }
        .encode(),
        Request::ChunkList { release: a.id }.encode(),
        Request::Chunk {
            release: a.id,
            index: 0,
        }
        .encode(),
        Response::Metadata(w.bundle_ab.clone()).encode(),
        Response::Have {
            bitfield: full.into(),
        }
        .encode(),
        Response::ChunkList(c.list_bytes.clone().into()).encode(),
        Response::Chunk(c.chunks[0].clone().into()).encode(),
        Response::Chunk(c.chunks[1].clone().into()).encode(),
        Response::NotFound.encode(),
        Response::Busy.encode(),
        halt,
        resume,
        c.list_bytes.clone(),
    ]);
    assert_eq!(table.len(), LEN);
    Fixture { table, sync }
}

/// The fixture of the open fleet (`false`) or the one with an operator (`true`).
pub fn fixture(operator: bool) -> &'static Fixture {
    static OPEN: OnceLock<Fixture> = OnceLock::new();
    static OPERATED: OnceLock<Fixture> = OnceLock::new();
    let cell = if operator { &OPERATED } else { &OPEN };
    cell.get_or_init(|| build_fixture(world(operator)))
}
