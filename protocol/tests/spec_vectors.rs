//! The test vectors of `docs/protocol.md`, computed with this crate.
//!
//! Every value the spec quotes as a test vector is computed here from fixed
//! inputs and compared with `docs/vectors/vectors.json`; a difference fails
//! with one line per differing JSON path. After an intended change run
//! `WAVEGUARD_BLESS=1 cargo test -p waveguard-protocol --test spec_vectors`
//! to rewrite the file, then update the values quoted in the spec (and let
//! `docs/outsider/verify_vectors.py`, which recomputes every vector in Python
//! from the spec alone, confirm them).

use serde_bytes::ByteBuf;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use waveguard_protocol::chunk::{ChunkEntry, ChunkList};
use waveguard_protocol::chunker::chunk_bytes;
use waveguard_protocol::fetch::Bitfield;
use waveguard_protocol::health::{
    condition, decide, issue_cert, sign_directive, sign_report, Directive, DirectiveAction,
    HealthReport, HealthStatus,
};
use waveguard_protocol::metadata::build::{
    new_root, sign_document, Expiries, Repository, RoleSigners, RoleSpec, RootSpec,
};
use waveguard_protocol::metadata::signed::{canonical_json, DecodeError, Envelope};
use waveguard_protocol::release::{ChunkerParams, HealthPolicy, Release, TargetFile};
use waveguard_protocol::wave::{
    bucket, in_sample, report_bucket, wave_for_bucket, wave_of, WavePin,
};
use waveguard_protocol::wire::{
    Gossip, HaltEvidence, MetadataBundle, Request, Response, SignedHealth, WireError,
};
use waveguard_protocol::{NodeId, ReleaseId, SigningKey, Timestamp};

// ---------------------------------------------------------------------------
// Fixed inputs (the spec names each of them)

/// The vector key: ed25519 seed of 32 bytes 0x01.
fn key1() -> SigningKey {
    SigningKey::from_seed([0x01; 32])
}

/// A second key (seed of 32 bytes 0x02), the operator in certificate and directive vectors.
fn key2() -> SigningKey {
    SigningKey::from_seed([0x02; 32])
}

/// The vector release ID: ("acme-sensor", "7.11.0", 32 bytes 0x11).
fn release_id() -> ReleaseId {
    ReleaseId::derive("acme-sensor", "7.11.0", &[0x11; 32])
}

/// Rollout start of the vector policy.
const START: &str = "2030-01-01T00:00:00Z";

fn start() -> Timestamp {
    Timestamp::parse_rfc3339(START).expect("the vector start time is well formed")
}

/// The vector node IDs.
fn node_ids() -> [NodeId; 3] {
    [NodeId([0x00; 32]), NodeId([0x01; 32]), NodeId([0xff; 32])]
}

/// `len` bytes of blake3 extended output for `seed` (easy to reproduce anywhere).
fn xof(seed: &[u8], len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    blake3::Hasher::new()
        .update(seed)
        .finalize_xof()
        .fill(&mut out);
    out
}

/// The target entry of the vector release: a 1 MiB artifact in 4 chunks, with the default policy.
fn target_json() -> Value {
    json!({
        "length": 1_048_576,
        "hashes": {"blake3": "11".repeat(32)},
        "custom": {"waveguard": {
            "product": "acme-sensor",
            "version": "7.11.0",
            "chunk_list": {"length": 164, "blake3": "22".repeat(32), "chunks": 4},
            "chunker": {"algorithm": "fastcdc-v2020", "min_size": 262_144, "avg_size": 1_048_576, "max_size": 4_194_304},
            "rollout": {
                "start": START,
                "waves": [
                    {"name": "canary", "cumulative_ppm": 10_000, "bake_seconds": 3600},
                    {"name": "early", "cumulative_ppm": 100_000, "bake_seconds": 21_600},
                    {"name": "broad", "cumulative_ppm": 500_000, "bake_seconds": 43_200},
                    {"name": "all", "cumulative_ppm": 1_000_000, "bake_seconds": 0}
                ],
                "health": {"max_failure_ppm": 50_000, "min_reports": 3, "silence_seconds": 600, "heartbeat_seconds": 60}
            }
        }}
    })
}

fn release() -> Release {
    let target: TargetFile =
        serde_json::from_value(target_json()).expect("the vector target entry parses");
    Release::from_target("acme-sensor-7.11.0.bin", &target)
        .expect("the vector target entry is a valid release")
}

/// The chunk list of three chunks cut from "hello, world".
fn small_chunk_list() -> (Vec<&'static str>, ChunkList) {
    let pieces = vec!["hello", ", ", "world"];
    let chunks = pieces
        .iter()
        .map(|p| ChunkEntry {
            length: p.len() as u32,
            hash: waveguard_protocol::chunk::hash(p.as_bytes()),
        })
        .collect();
    (pieces, ChunkList { chunks })
}

/// Bits 0, 3 and 9 of a 10-chunk release.
fn bitfield() -> Bitfield {
    let mut b = Bitfield::new(10);
    for i in [0, 3, 9] {
        b.set(i);
    }
    b
}

// ---------------------------------------------------------------------------
// The vectors, section by section

fn keys_vector() -> Value {
    let k = key1();
    let public = k.public();
    json!({
        "seed_hex": hex::encode([0x01u8; 32]),
        "public_hex": public.keyval.public,
        "tuf_key_canonical": utf8(&canonical_json(&public).expect("a key has canonical JSON")),
        "keyid": k.key_id().0,
        "node_id_hex": k.node_id().to_hex(),
        "peer_id_bytes_hex": hex::encode(k.node_id().to_peer_id_bytes()),
        "peer_id": k.node_id().to_peer_id_string(),
    })
}

fn canonical_json_vector() -> Value {
    // Unsorted and nested keys, the two escaped characters, a literal control
    // character, non-ASCII text, negative and large integers, booleans, null.
    let input = json!({
        "z": [3, -1, 18_446_744_073_709_551_615u64],
        "a": {"y": true, "b": null, "x": false},
        "quote\"back\\slash": "tab\there",
        "é": "ünïcödé",
        "": ""
    });
    json!({
        "input_json": input.to_string(),
        "canonical": utf8(&canonical_json(&input).expect("the vector input has no floats")),
    })
}

fn time_vector() -> Value {
    json!({"text": START, "millis": start().as_millis()})
}

fn health_report() -> HealthReport {
    HealthReport {
        node: key1().node_id(),
        release: release_id(),
        wave: 0,
        status: HealthStatus::Healthy,
        seq: 1,
        time: start(),
    }
}

fn signed_vector() -> Value {
    let msg = sign_report(&key1(), health_report(), None);
    let env = Envelope::<Value>::from_json(&msg.report, 1 << 20, "vector report")
        .expect("our own report parses");
    let sig = &env.signatures[0];
    let cert = issue_cert(
        &[&key2()],
        key1().node_id(),
        start().plus_secs(86_400),
        WavePin::Canary,
    );
    let cert_env =
        Envelope::<Value>::from_json(&cert, 1 << 20, "vector cert").expect("our own cert parses");
    json!({
        "health_report": {
            "signing_seed_hex": hex::encode([0x01u8; 32]),
            "canonical_signed": utf8(env.canonical_signed()),
            "keyid": sig.keyid.0,
            "sig": sig.sig,
            "envelope": utf8(&msg.report),
        },
        "fleet_cert": {
            "signing_seed_hex": hex::encode([0x02u8; 32]),
            "canonical_signed": utf8(cert_env.canonical_signed()),
            "keyid": cert_env.signatures[0].keyid.0,
            "sig": cert_env.signatures[0].sig,
            "envelope": utf8(&cert),
        }
    })
}

fn blake3_vector() -> Value {
    json!({
        "empty": hex::encode(blake3::hash(b"").as_bytes()),
        "waveguard": hex::encode(blake3::hash(b"waveguard").as_bytes()),
    })
}

fn chunk_list_vector() -> Value {
    let (pieces, list) = small_chunk_list();
    let encoded = list.encode();
    json!({
        "pieces": pieces,
        "chunk_hashes": list.chunks.iter().map(|c| hex::encode(c.hash)).collect::<Vec<_>>(),
        "encoded_hex": hex::encode(&encoded),
        "encoded_blake3": hex::encode(blake3::hash(&encoded).as_bytes()),
    })
}

fn chunking_vector() -> Value {
    const SEED: &[u8] = b"waveguard spec vector: chunking";
    const LEN: usize = 300_000;
    let params = ChunkerParams {
        min_size: 16_384,
        avg_size: 32_768,
        max_size: 65_536,
        ..ChunkerParams::default()
    };
    let data = xof(SEED, LEN);
    let list = chunk_bytes(&data, &params).expect("the vector parameters are valid");
    json!({
        "input": {"xof_seed": utf8(SEED), "length": LEN},
        "params": {"min_size": params.min_size, "avg_size": params.avg_size, "max_size": params.max_size},
        "chunk_lengths": list.chunks.iter().map(|c| c.length).collect::<Vec<_>>(),
        "first_chunk_blake3": hex::encode(list.chunks[0].hash),
        "chunk_list_blake3": hex::encode(blake3::hash(&list.encode()).as_bytes()),
    })
}

fn release_vector() -> Value {
    let r = release();
    json!({
        "product": "acme-sensor",
        "version": "7.11.0",
        "artifact_blake3": "11".repeat(32),
        "release_id": release_id().to_hex(),
        "target_path": r.target_path,
        "target": target_json(),
        "target_release_id": r.id.to_hex(),
    })
}

/// The report share the waves vector's sample entries are computed at.
const VECTOR_REPORT_PPM: u32 = 400_000;

fn waves_vector() -> Value {
    let r = release();
    let policy = r.policy();
    let nodes: Vec<Value> = node_ids()
        .iter()
        .map(|n| {
            let b = bucket(&r.id, n);
            let w = wave_of(policy, &r.id, n, WavePin::None);
            let rb = report_bucket(&r.id, n);
            json!({
                "report_bucket": rb,
                "report_bucket_hex": format!("{rb:016x}"),
                "in_report_sample": in_sample(rb, VECTOR_REPORT_PPM),
                "node_id": n.to_hex(),
                "bucket": b,
                "bucket_hex": format!("{b:016x}"),
                "wave": w,
                "wave_name": policy.waves[w].name,
                "wave_pin_canary": wave_of(policy, &r.id, n, WavePin::Canary),
                "wave_pin_last": wave_of(policy, &r.id, n, WavePin::Last),
            })
        })
        .collect();
    let opens: Vec<Value> = (0..policy.waves.len())
        .map(|i| json!(policy.scheduled_open(i).to_rfc3339()))
        .collect();
    // Around each share's exact boundary ceil(cum * 2^64 / 10^6), and the extremes.
    let mut probes = vec![0u64, u64::MAX];
    for w in &policy.waves[..policy.waves.len() - 1] {
        let edge = ((u128::from(w.cumulative_ppm) << 64).div_ceil(1_000_000)) as u64;
        probes.extend([edge - 1, edge]);
    }
    probes.sort_unstable();
    let boundaries: Vec<Value> = probes
        .iter()
        .map(|b| json!({"bucket": b, "wave": wave_for_bucket(policy, *b)}))
        .collect();
    json!({
        "release_id": r.id.to_hex(),
        "boundaries": boundaries,
        "waves_ppm": policy.waves.iter().map(|w| w.cumulative_ppm).collect::<Vec<_>>(),
        "report_ppm": VECTOR_REPORT_PPM,
        "nodes": nodes,
        "scheduled_open": opens,
        "end": policy.end().to_rfc3339(),
    })
}

fn wire_vector() -> Value {
    let rid = release_id();
    let bits = ByteBuf::from(bitfield().to_bytes());
    let report = sign_report(&key1(), health_report(), None);
    let tiny = SignedHealth {
        report: ByteBuf::from(b"{}".to_vec()),
        cert: Some(ByteBuf::from(b"[]".to_vec())),
    };
    let bundle = MetadataBundle {
        roots: vec![ByteBuf::from(b"R1".to_vec()), ByteBuf::from(b"R2".to_vec())],
        timestamp: ByteBuf::from(b"T".to_vec()),
        snapshot: ByteBuf::from(b"S".to_vec()),
        targets: ByteBuf::from(b"X".to_vec()),
    };
    let mut out = Map::new();
    let mut put = |name: &str, bytes: Vec<u8>| {
        out.insert(name.into(), json!(hex::encode(bytes)));
    };
    put("request_metadata", Request::Metadata.encode());
    put(
        "request_chunk_list",
        Request::ChunkList { release: rid }.encode(),
    );
    put(
        "request_chunk_300",
        Request::Chunk {
            release: rid,
            index: 300,
        }
        .encode(),
    );
    put(
        "request_have",
        Request::Have {
            release: rid,
            bitfield: bits.clone(),
        }
        .encode(),
    );
    put(
        "request_health",
        Request::Health {
            release: rid,
            wave: 2,
        }
        .encode(),
    );
    put("request_halt", Request::Halt { release: rid }.encode());
    put(
        "response_metadata",
        Response::Metadata(bundle.clone()).encode(),
    );
    put(
        "response_chunk_list",
        Response::ChunkList(ByteBuf::from(small_chunk_list().1.encode())).encode(),
    );
    put(
        "response_chunk_hello",
        Response::Chunk(ByteBuf::from(b"hello".to_vec())).encode(),
    );
    put(
        "response_have",
        Response::Have {
            bitfield: bits.clone(),
        }
        .encode(),
    );
    put("response_not_found", Response::NotFound.encode());
    put("response_busy", Response::Busy.encode());
    put(
        "response_health",
        Response::Health(vec![report.clone()]).encode(),
    );
    put(
        "response_halt",
        Response::Halt(HaltEvidence {
            release: rid,
            wave: 1,
            reports: vec![tiny.clone()],
        })
        .encode(),
    );
    put(
        "response_directive",
        Response::Directive(ByteBuf::from(b"{}".to_vec())).encode(),
    );
    put("gossip_metadata", Gossip::Metadata(bundle).encode());
    put("gossip_health", Gossip::Health(report).encode());
    put(
        "gossip_halt",
        Gossip::Halt(HaltEvidence {
            release: rid,
            wave: 1,
            reports: vec![tiny],
        })
        .encode(),
    );
    put(
        "gossip_directive",
        Gossip::Directive(ByteBuf::from(b"{}".to_vec())).encode(),
    );
    json!({
        "bitfield_10_bits_0_3_9_hex": hex::encode(bitfield().to_bytes()),
        "messages": out,
    })
}

fn directive_vector() -> Value {
    let d = Directive {
        action: DirectiveAction::Halt,
        release: release_id(),
        seq: 7,
        expires: start().plus_secs(86_400),
        reason: "canary crash loop, see INC-1234".into(),
    };
    let bytes = sign_directive(&[&key2()], &d);
    let env = Envelope::<Value>::from_json(&bytes, 1 << 20, "vector directive")
        .expect("our own directive parses");
    json!({
        "signing_seed_hex": hex::encode([0x02u8; 32]),
        "canonical_signed": utf8(env.canonical_signed()),
        "sig": env.signatures[0].sig,
        "envelope": utf8(&bytes),
    })
}

fn gate_vector() -> Value {
    let policy = |max_failure_ppm, min_reports| HealthPolicy {
        max_failure_ppm,
        min_reports,
        silence_seconds: 600,
        heartbeat_seconds: 60,
        report_ppm: 1_000_000,
    };
    // (max_failure_ppm, min_reports, reporting, failures, healthy, baked)
    let cases: [(u32, u32, u64, u64, u64, bool); 10] = [
        (200_000, 3, 5, 1, 4, false),
        (200_000, 3, 6, 1, 5, false),
        (200_000, 3, 6, 1, 5, true),
        (200_000, 3, 1, 1, 0, true),
        (200_000, 3, 2, 2, 0, true),
        (200_000, 3, 3, 3, 0, true),
        (500_000, 3, 3, 0, 2, true),
        (500_000, 3, 3, 0, 3, true),
        (50_000, 3, 20, 1, 19, true),
        (50_000, 3, 21, 1, 20, true),
    ];
    let decisions: Vec<Value> = cases
        .iter()
        .map(|&(ppm, min, reporting, failures, healthy, baked)| {
            let gate = lower_debug(&decide(reporting, failures, healthy, &policy(ppm, min), baked));
            json!({"max_failure_ppm": ppm, "min_reports": min, "reporting": reporting, "failures": failures,
                   "healthy": healthy, "baked": baked, "gate": gate})
        })
        .collect();
    let h = policy(200_000, 3);
    let at = |secs: u64| {
        let c = condition(
            HealthStatus::Healthy,
            start(),
            start().plus_millis(secs),
            &h,
        );
        json!({"report_time": START, "now_millis_after": secs, "condition": lower_debug(&c)})
    };
    // How each status counts just before and after the silence boundary and a day on:
    // `baked` (a final report) is never silent.
    let statuses = [
        HealthStatus::Installed,
        HealthStatus::Healthy,
        HealthStatus::Baked,
        HealthStatus::Unhealthy,
        HealthStatus::InstallFailed,
        HealthStatus::RolledBack,
    ];
    let conditions: Vec<Value> = statuses
        .iter()
        .flat_map(|&status| {
            [600_000u64, 600_001, 86_400_000].map(|millis| {
                let c = condition(status, start(), start().plus_millis(millis), &h);
                json!({"status": status, "report_time": START, "now_millis_after": millis,
                       "condition": lower_debug(&c)})
            })
        })
        .collect();
    json!({
        "decisions": decisions,
        "silence_seconds": 600,
        "silence": [at(600_000), at(600_001)],
        "conditions": conditions,
    })
}

/// Root, targets, snapshot and timestamp of a repository whose four roles all
/// use key 1 and whose operator is key 2, signed at the vector start time with
/// the default expiries, holding the release of `target_json`.
fn tuf_vector() -> Value {
    let k1 = key1();
    let spec = RootSpec {
        root: RoleSpec::single(k1.public()),
        targets: RoleSpec::single(k1.public()),
        snapshot: RoleSpec::single(k1.public()),
        timestamp: RoleSpec::single(k1.public()),
        operator: Some(RoleSpec::single(key2().public())),
        expires: start().plus_secs(365 * 86_400),
    };
    let root = sign_document(new_root(&spec).expect("the vector root is valid"), &[&k1])
        .expect("the vector root signs");
    let mut repo = Repository::new(&root).expect("the vector root bootstraps a repository");
    let target: TargetFile =
        serde_json::from_value(target_json()).expect("the vector target entry parses");
    repo.add_target("acme-sensor-7.11.0.bin", target)
        .expect("the vector target is a valid release");
    let signers = [&k1];
    let bundle = repo
        .sign(
            start(),
            &Expiries::default(),
            &RoleSigners {
                targets: &signers,
                snapshot: &signers,
                timestamp: &signers,
            },
        )
        .expect("the vector repository signs");
    json!({
        "signed_at": START,
        "root": utf8(&root),
        "targets": utf8(&bundle.targets),
        "snapshot": utf8(&bundle.snapshot),
        "timestamp": utf8(&bundle.timestamp),
    })
}

/// The step of spec 5.2 at which a reader refuses an envelope, as the vectors name it.
fn envelope_verdict(json_text: &str) -> &'static str {
    match Envelope::<Value>::from_json(json_text.as_bytes(), 1 << 20, "vector envelope") {
        Ok(_) => "accepted",
        Err(DecodeError::TooLarge { .. }) => "too-large",
        Err(DecodeError::Json { .. }) => "json",
        Err(DecodeError::TooManySignatures { .. }) => "too-many-signatures",
        Err(DecodeError::NotCanonical { .. }) => "not-canonical",
        Err(DecodeError::NotNormalised { .. }) => "not-normalised",
        Err(DecodeError::BadSignatureEncoding { .. }) => "bad-signature-encoding",
        Err(_) => "other",
    }
}

/// How a reader takes a frame of `kind`, as the vectors name it.
fn frame_verdict(kind: &str, bytes: &[u8]) -> &'static str {
    let result = match kind {
        "request" => Request::decode(bytes).map(|_| ()),
        "response" => Response::decode(bytes).map(|_| ()),
        _ => Gossip::decode(bytes).map(|_| ()),
    };
    match result {
        Ok(()) => "accepted",
        Err(WireError::NotMinimal(_)) => "not-minimal",
        Err(WireError::CountTooLarge { .. }) => "count-too-large",
        Err(_) => "other",
    }
}

/// `frame` with its last varint, which must be the single byte `last`, padded to two bytes.
fn pad_last_varint(frame: Vec<u8>, last: u8) -> Vec<u8> {
    assert!(last < 0x80, "only a one-byte varint can be padded this way");
    let mut out = frame;
    assert_eq!(
        out.pop(),
        Some(last),
        "the frame does not end with that varint"
    );
    out.extend_from_slice(&[last | 0x80, 0x00]);
    out
}

/// Envelopes and frames that decode in a lenient reader but that spec
/// sections 5.2, 12.1 and 12.4 require a reader to refuse, with the step that
/// refuses each.
fn refused_vector() -> Value {
    let report = sign_report(&key1(), health_report(), None);
    let text = utf8(&report.report);
    let env = Envelope::<Value>::from_json(text.as_bytes(), 1 << 20, "vector")
        .expect("the vector report parses");
    let sig = &env.signatures[0].sig;
    let upper = text.replace(sig.as_str(), &sig.to_uppercase());
    let envelopes: Vec<Value> = [
        ("non-NFC text", r#"{"signatures":[],"signed":{"p":"cafe\u0301"}}"#.to_string()),
        ("control character", r#"{"signatures":[],"signed":{"p":"a\nb"}}"#.to_string()),
        ("uppercase signature", upper),
        ("envelope as an array", r#"[{"p":1},[]]"#.to_string()),
        ("signature as an array", format!(r#"{{"signatures":[["{}","{}"]],"signed":{{"p":1}}}}"#, env.signatures[0].keyid.0, sig)),
    ]
    .into_iter()
    .map(|(name, json_text)| {
        json!({"name": name, "json": json_text, "refused_at": envelope_verdict(&json_text)})
    })
    .collect();
    let chunk = Request::Chunk {
        release: release_id(),
        index: 0,
    }
    .encode();
    // Response::Chunk("hello"): version, variant 2, length 5, then the bytes.
    let mut hello = Response::Chunk(ByteBuf::from(b"hello".to_vec())).encode();
    let body = hello.split_off(3);
    let hello = [pad_last_varint(hello, 5), body].concat();
    // A health sync response of one report more than MAX_EVIDENCE_REPORTS (256).
    let tiny = SignedHealth {
        report: ByteBuf::from(b"{}".to_vec()),
        cert: None,
    };
    let too_many = Response::Health(vec![tiny; 257]).encode();
    let frames: Vec<Value> = [
        ("request_metadata_padded_variant", "request", pad_last_varint(Request::Metadata.encode(), 0)),
        ("request_chunk_padded_index", "request", pad_last_varint(chunk, 0)),
        ("response_chunk_padded_length", "response", hello),
        ("response_health_257_reports", "response", too_many),
    ]
    .into_iter()
    .map(|(name, kind, bytes)| {
        json!({"name": name, "kind": kind, "hex": hex::encode(&bytes), "refused_at": frame_verdict(kind, &bytes)})
    })
    .collect();
    json!({"envelopes": envelopes, "frames": frames})
}

/// Every vector, keyed by spec section.
fn vectors() -> Value {
    json!({
        "about": "Test vectors of docs/protocol.md, written by protocol/tests/spec_vectors.rs (WAVEGUARD_BLESS=1 rewrites) and recomputed independently by docs/outsider/verify_vectors.py.",
        "keys": keys_vector(),
        "canonical_json": canonical_json_vector(),
        "time": time_vector(),
        "signed": signed_vector(),
        "blake3": blake3_vector(),
        "chunk_list": chunk_list_vector(),
        "chunking": chunking_vector(),
        "release": release_vector(),
        "waves": waves_vector(),
        "wire": wire_vector(),
        "directive": directive_vector(),
        "gate": gate_vector(),
        "tuf": tuf_vector(),
        "refused": refused_vector(),
    })
}

// ---------------------------------------------------------------------------
// Comparison with the file

/// A unit enum variant's name in lower case (`GateState::Failed` -> `failed`), as the spec writes it.
fn lower_debug(value: &impl std::fmt::Debug) -> String {
    format!("{value:?}").to_lowercase()
}

fn utf8(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("vector text is UTF-8")
}

fn vectors_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/vectors/vectors.json")
}

/// One line per JSON path where `want` (the file) and `got` (computed) differ.
fn diff(path: &str, want: &Value, got: &Value, out: &mut Vec<String>) {
    match (want, got) {
        (Value::Object(w), Value::Object(g)) => {
            let keys: BTreeMap<&String, ()> = w.keys().chain(g.keys()).map(|k| (k, ())).collect();
            for k in keys.keys() {
                let p = format!("{path}/{k}");
                match (w.get(*k), g.get(*k)) {
                    (Some(a), Some(b)) => diff(&p, a, b, out),
                    (Some(a), None) => {
                        out.push(format!("{p}: in the file ({a}) but no longer computed"))
                    }
                    (None, Some(b)) => {
                        out.push(format!("{p}: computed ({b}) but missing from the file"))
                    }
                    (None, None) => {}
                }
            }
        }
        (Value::Array(w), Value::Array(g)) if w.len() == g.len() => {
            for (i, (a, b)) in w.iter().zip(g).enumerate() {
                diff(&format!("{path}/{i}"), a, b, out);
            }
        }
        _ if want != got => out.push(format!("{path}: file has {want}, computed {got}")),
        _ => {}
    }
}

#[test]
fn spec_vectors_match_the_file() {
    let computed = vectors();
    let path = vectors_path();
    if std::env::var_os("WAVEGUARD_BLESS").is_some_and(|v| v == "1") {
        let text = serde_json::to_string_pretty(&computed).expect("vectors serialize") + "\n";
        std::fs::write(&path, text)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        return;
    }
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e}; run WAVEGUARD_BLESS=1 cargo test -p waveguard-protocol --test spec_vectors",
            path.display()
        )
    });
    let file: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
    let mut out = Vec::new();
    diff("", &file, &computed, &mut out);
    assert!(
        out.is_empty(),
        "docs/vectors/vectors.json differs from what the protocol crate computes:\n  {}\n\
         If the change is intended, run WAVEGUARD_BLESS=1 cargo test -p waveguard-protocol --test spec_vectors \
         and update docs/protocol.md.",
        out.join("\n  ")
    );
}

#[test]
fn wire_vectors_decode_to_their_messages() {
    let v = wire_vector();
    let messages = v["messages"].as_object().expect("messages is an object");
    for (name, hex_value) in messages {
        let bytes = hex::decode(hex_value.as_str().expect("hex string")).expect("valid hex");
        let again = if name.starts_with("request_") {
            Request::decode(&bytes).map(|m| m.encode())
        } else if name.starts_with("response_") {
            Response::decode(&bytes).map(|m| m.encode())
        } else {
            Gossip::decode(&bytes).map(|m| m.encode())
        };
        assert_eq!(
            again.as_deref(),
            Ok(&bytes[..]),
            "{name} does not round-trip"
        );
    }
}

#[test]
fn signed_vectors_verify() {
    let v = signed_vector();
    for (doc, key) in [("health_report", key1()), ("fleet_cert", key2())] {
        let bytes = v[doc]["envelope"]
            .as_str()
            .expect("envelope text")
            .as_bytes()
            .to_vec();
        let env = Envelope::<Value>::from_json(&bytes, 1 << 20, "vector")
            .expect("vector envelope parses");
        assert!(
            env.is_signed_by(&key.public()),
            "{doc} is not signed by its key"
        );
        let mut tampered = bytes.clone();
        let at = tampered.len() / 3;
        tampered[at] ^= 0x01;
        if let Ok(env) = Envelope::<Value>::from_json(&tampered, 1 << 20, "vector") {
            assert!(
                !env.is_signed_by(&key.public()),
                "{doc} still verifies after a flipped bit"
            );
        }
    }
}

#[test]
fn refusal_vectors_are_refused_at_the_step_the_spec_names() {
    let v = refused_vector();
    let got: Vec<(&str, &str)> = ["envelopes", "frames"]
        .iter()
        .flat_map(|k| v[*k].as_array().into_iter().flatten())
        .map(|c| {
            (
                c["name"].as_str().unwrap_or_default(),
                c["refused_at"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("non-NFC text", "not-normalised"),
            ("control character", "not-normalised"),
            ("uppercase signature", "bad-signature-encoding"),
            ("envelope as an array", "json"),
            ("signature as an array", "json"),
            ("request_metadata_padded_variant", "not-minimal"),
            ("request_chunk_padded_index", "not-minimal"),
            ("response_chunk_padded_length", "not-minimal"),
            ("response_health_257_reports", "count-too-large"),
        ]
    );
}

/// The values docs/protocol.md quotes in its text, so the prose cannot drift from the file.
fn quoted_values(v: &Value) -> Vec<String> {
    let s = |p: &str| {
        v.pointer(p)
            .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_string))
    };
    let mut out: Vec<String> = [
        "/keys/public_hex",
        "/keys/keyid",
        "/keys/peer_id",
        "/keys/peer_id_bytes_hex",
        "/keys/tuf_key_canonical",
        "/release/release_id",
        "/signed/health_report/sig",
        "/signed/health_report/envelope",
        "/signed/fleet_cert/envelope",
        "/blake3/empty",
        "/blake3/waveguard",
        "/chunk_list/encoded_blake3",
        "/chunking/first_chunk_blake3",
        "/chunking/chunk_list_blake3",
        "/tuf/root",
        "/tuf/snapshot",
        "/tuf/timestamp",
        "/directive/envelope",
        "/waves/end",
    ]
    .iter()
    .filter_map(|p| s(p))
    .collect();
    for e in v["refused"]["envelopes"].as_array().into_iter().flatten() {
        if e["name"] != "uppercase signature" && e["name"] != "signature as an array" {
            out.push(e["json"].as_str().unwrap_or_default().to_string());
        }
    }
    for node in v["waves"]["nodes"].as_array().into_iter().flatten() {
        out.extend([
            node["bucket_hex"].as_str().unwrap_or_default().to_string(),
            node["bucket"].to_string(),
        ]);
    }
    for b in v["waves"]["boundaries"].as_array().into_iter().flatten() {
        out.push(b["bucket"].to_string());
    }
    let lengths: Vec<String> = v["chunking"]["chunk_lengths"]
        .as_array()
        .into_iter()
        .flatten()
        .map(Value::to_string)
        .collect();
    out.push(lengths.join(", "));
    out
}

#[test]
fn the_spec_quotes_the_vectors() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/protocol.md");
    let spec = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let missing: Vec<String> = quoted_values(&vectors())
        .into_iter()
        .filter(|q| !q.is_empty() && !spec.contains(q.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/protocol.md does not quote these vector values (update the spec's test vectors):\n  {}",
        missing.join("\n  ")
    );
}
