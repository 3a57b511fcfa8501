//! Every target's seed inputs: one valid example of each message kind and
//! variant, plus, for the structured targets, scripts that walk whole
//! protocol flows, so the fuzzer starts past version bytes, JSON shapes and
//! signatures.
//!
//! `examples/make_seeds.rs` writes these to `seeds/<target>/<name>`.

use crate::envelope::seed_key;
use serde_json::json;
use waveguard_protocol::chunk::{ChunkEntry, ChunkList};
use waveguard_protocol::chunker::chunk_bytes;
use waveguard_protocol::metadata::signed::Envelope;
use waveguard_protocol::release::ChunkerParams;
use waveguard_protocol::wire::{
    Gossip, HaltEvidence, MetadataBundle, Request, Response, SignedHealth,
};
use waveguard_protocol::ReleaseId;

/// One seed: target, file name, bytes.
pub type Seed = (&'static str, String, Vec<u8>);

fn signed(doc: serde_json::Value) -> Vec<u8> {
    Envelope::sign_new(doc, &[&seed_key()])
        .expect("plain JSON")
        .to_json()
}

/// Seeds of the wire, chunk list and envelope targets.
fn parsers() -> Vec<Seed> {
    let mut out: Vec<Seed> = Vec::new();
    let mut add = |target, name: &str, bytes: Vec<u8>| out.push((target, name.to_string(), bytes));
    let release = ReleaseId::derive("acme-sensor", "7.11.0", &[0x11; 32]);
    let report = signed(json!({
        "_type": "health-report", "release": release.to_hex(), "wave": 0,
        "status": "healthy", "sequence": 3, "time": "2030-01-01T00:00:00Z",
    }));
    let root = signed(json!({
        "_type": "root", "spec_version": "1.0.31", "version": 1,
        "expires": "2031-01-01T00:00:00Z", "consistent_snapshot": false,
        "keys": {}, "roles": {"root": {"keyids": [], "threshold": 1}},
    }));
    let bundle = MetadataBundle {
        roots: vec![root.clone().into()],
        timestamp: signed(json!({"_type": "timestamp", "version": 1})).into(),
        snapshot: signed(json!({"_type": "snapshot", "version": 1})).into(),
        targets: signed(json!({"_type": "targets", "version": 1, "targets": {}})).into(),
    };
    let health = SignedHealth {
        report: report.clone().into(),
        cert: Some(signed(json!({"_type": "fleet-cert", "node": "00"})).into()),
    };

    let gossip = [
        ("metadata", Gossip::Metadata(bundle.clone())),
        ("health", Gossip::Health(health.clone())),
        (
            "halt",
            Gossip::Halt(HaltEvidence {
                release,
                wave: 1,
                reports: vec![
                    health.clone(),
                    SignedHealth {
                        report: report.clone().into(),
                        cert: None,
                    },
                ],
            }),
        ),
        (
            "directive",
            Gossip::Directive(signed(json!({"_type": "directive", "action": "halt"})).into()),
        ),
    ];
    for (name, m) in gossip {
        add("wire_gossip", name, m.encode());
    }

    let requests = [
        ("metadata", Request::Metadata),
        ("chunk_list", Request::ChunkList { release }),
        (
            "chunk",
            Request::Chunk {
                release,
                index: 300,
            },
        ),
        (
            "have",
            Request::Have {
                release,
                bitfield: vec![0xf0, 0x01, 0x80].into(),
            },
        ),
        ("health", Request::Health { release, wave: 1 }),
        ("halt", Request::Halt { release }),
    ];
    for (name, m) in requests {
        add("wire_request", name, m.encode());
    }

    let list = ChunkList {
        chunks: vec![
            ChunkEntry {
                length: 300_000,
                hash: [1; 32],
            },
            ChunkEntry {
                length: 70_000,
                hash: [2; 32],
            },
        ],
    };
    let responses = [
        ("metadata", Response::Metadata(bundle)),
        ("chunk_list", Response::ChunkList(list.encode().into())),
        ("chunk", Response::Chunk(b"chunk bytes".to_vec().into())),
        (
            "have",
            Response::Have {
                bitfield: vec![0xff, 0x7f].into(),
            },
        ),
        ("not_found", Response::NotFound),
        ("busy", Response::Busy),
        ("health", Response::Health(Vec::new())),
        (
            "halt",
            Response::Halt(waveguard_protocol::wire::HaltEvidence {
                release,
                wave: 0,
                reports: Vec::new(),
            }),
        ),
        ("directive", Response::Directive(b"{}".to_vec().into())),
    ];
    for (name, m) in responses {
        add("wire_response", name, m.encode());
    }

    add("chunk_list", "two", list.encode());
    add("chunk_list", "empty", ChunkList { chunks: vec![] }.encode());
    let data: Vec<u8> = (0..200_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let params = ChunkerParams {
        min_size: 16 * 1024,
        avg_size: 32 * 1024,
        max_size: 64 * 1024,
        ..ChunkerParams::default()
    };
    add(
        "chunk_list",
        "cut",
        chunk_bytes(&data, &params).expect("valid params").encode(),
    );

    add("envelope_json", "root", root);
    add("envelope_json", "report", report);
    add(
        "envelope_json",
        "unsigned",
        br#"{"signed":{"_type":"x","n":[1,-2,"\u00e9"],"o":{}},"signatures":[]}"#.to_vec(),
    );
    out
}

/// Every seed of every target.
pub fn all() -> Vec<Seed> {
    let mut out = parsers();
    let named = |target: &'static str, list: Vec<(&'static str, Vec<u8>)>| {
        list.into_iter()
            .map(move |(name, bytes)| (target, name.to_string(), bytes))
    };
    out.extend(named("trust_bundle", crate::trust_bundle::seeds()));
    out.extend(named("health_report", crate::health_report::seeds()));
    out.extend(named("node_inputs", crate::node_inputs::seeds()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_seeds_are_canonical() {
        for (target, name, bytes) in all() {
            let ok = match target {
                "wire_gossip" => Gossip::decode(&bytes).map(|m| m.encode()) == Ok(bytes.clone()),
                "wire_request" => Request::decode(&bytes).map(|m| m.encode()) == Ok(bytes.clone()),
                "wire_response" => {
                    Response::decode(&bytes).map(|m| m.encode()) == Ok(bytes.clone())
                }
                "chunk_list" => ChunkList::decode(&bytes).map(|l| l.encode()) == Ok(bytes.clone()),
                _ => true,
            };
            assert!(ok, "{target}/{name} is not a canonical valid message");
        }
    }

    #[test]
    fn seed_names_are_unique_per_target() {
        let mut seen = std::collections::BTreeSet::new();
        for (target, name, _) in all() {
            assert!(seen.insert((target, name.clone())), "{target}/{name} twice");
        }
    }
}
