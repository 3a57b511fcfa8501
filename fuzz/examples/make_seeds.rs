//! Writes the seed inputs in `seeds/<target>/`: one valid example of every message
//! kind and variant, so the fuzzer starts past the version byte and the JSON shape.
//!
//! Run from `fuzz/` with `cargo run --example make_seeds` after a format change,
//! and commit the result. It overwrites seeds of the same name and keeps others.

use serde_json::json;
use std::fs;
use std::path::Path;
use waveguard_protocol::chunk::{ChunkEntry, ChunkList};
use waveguard_protocol::chunker::chunk_bytes;
use waveguard_protocol::metadata::signed::Envelope;
use waveguard_protocol::release::ChunkerParams;
use waveguard_protocol::wire::{
    Gossip, HaltEvidence, MetadataBundle, Request, Response, SignedHealth,
};
use waveguard_protocol::{ReleaseId, SigningKey};

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("seeds")
        .join(target);
    fs::create_dir_all(&dir).expect("create seed directory");
    fs::write(dir.join(name), bytes).expect("write seed");
}

fn signed(doc: serde_json::Value) -> Vec<u8> {
    let key = SigningKey::from_seed([7; 32]);
    Envelope::sign_new(doc, &[&key])
        .expect("plain JSON")
        .to_json()
}

fn main() {
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
        write("wire_gossip", name, &m.encode());
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
    ];
    for (name, m) in requests {
        write("wire_request", name, &m.encode());
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
    ];
    for (name, m) in responses {
        write("wire_response", name, &m.encode());
    }

    write("chunk_list", "two", &list.encode());
    write(
        "chunk_list",
        "empty",
        &ChunkList { chunks: vec![] }.encode(),
    );
    let data: Vec<u8> = (0..200_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let params = ChunkerParams {
        min_size: 16 * 1024,
        avg_size: 32 * 1024,
        max_size: 64 * 1024,
        ..ChunkerParams::default()
    };
    write(
        "chunk_list",
        "cut",
        &chunk_bytes(&data, &params).expect("valid params").encode(),
    );

    write("envelope_json", "root", &root);
    write("envelope_json", "report", &report);
    write(
        "envelope_json",
        "unsigned",
        br#"{"signed":{"_type":"x","n":[1,-2,"\u00e9"],"o":{}},"signatures":[]}"#,
    );
}
