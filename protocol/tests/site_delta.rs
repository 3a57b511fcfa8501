//! Saving bandwidth, at the engine: a node that holds an old release's chunks
//! asks only for the new release's chunks it lacks (delta by content-defined
//! chunking), and a node told its site asks LAN peers first, leaves the WAN
//! alone when the transfer policy closes it, and answers WAN peers `Busy`
//! when it may not serve them.

use serde_bytes::ByteBuf;
use std::collections::BTreeSet;
use waveguard_protocol::chunk::ChunkList;
use waveguard_protocol::chunker::chunk_bytes;
use waveguard_protocol::fetch::{Bitfield, TransferPolicy};
use waveguard_protocol::metadata::build::{
    new_root, release_target, sign_document, Expiries, Repository, RoleSigners, RoleSpec, RootSpec,
};
use waveguard_protocol::metadata::trust::TrustedState;
use waveguard_protocol::node::{Input, Node, NodeConfig, Output};
use waveguard_protocol::release::{
    ChunkListRef, ChunkerParams, HealthPolicy, ReleaseInfo, RolloutPolicy, WaveSpec,
};
use waveguard_protocol::wire::{MetadataBundle, Request, Response};
use waveguard_protocol::{NodeId, ReleaseId, SigningKey, Timestamp};

const T0: Timestamp = Timestamp::from_secs(1_900_000_000);

/// One release as published: its ID, encoded chunk list and the list.
struct Published {
    id: ReleaseId,
    list_bytes: Vec<u8>,
    list: ChunkList,
}

/// Two versions of a product in one signed bundle.
struct Fixture {
    root: Vec<u8>,
    bundle: MetadataBundle,
    old: Published,
    new: Published,
}

/// `len` pseudo-random bytes (incompressible, like a binary) from `seed`.
fn artifact(seed: u32, len: u32) -> Vec<u8> {
    let mut out = vec![0u8; len as usize];
    blake3::Hasher::new()
        .update(&seed.to_le_bytes())
        .finalize_xof()
        .fill(&mut out);
    out
}

/// Version 2 is version 1 with two runs overwritten and 20 KiB inserted.
fn fixture() -> Fixture {
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
    let v1 = artifact(0, 2_000_000);
    let mut v2 = v1.clone();
    v2[300_000..302_000].fill(7);
    v2[1_500_000..1_500_100].fill(9);
    let inserted = artifact(77, 20_000);
    v2.splice(900_000..900_000, inserted);
    let params = ChunkerParams {
        min_size: 16 * 1024,
        avg_size: 64 * 1024,
        max_size: 256 * 1024,
        ..ChunkerParams::default()
    };
    let mut add = |version: &str, data: &[u8]| {
        let list: ChunkList = chunk_bytes(data, &params).unwrap();
        let encoded = list.encode();
        let info = ReleaseInfo {
            product: "acme".into(),
            version: version.into(),
            chunk_list: ChunkListRef {
                length: encoded.len() as u64,
                blake3: hex::encode(blake3::hash(&encoded).as_bytes()),
                chunks: list.chunks.len() as u32,
            },
            chunker: params.clone(),
            rollout: RolloutPolicy {
                start: T0.plus_secs(3600),
                waves: vec![WaveSpec {
                    name: "all".into(),
                    cumulative_ppm: 1_000_000,
                    bake_seconds: 60,
                }],
                health: HealthPolicy {
                    max_failure_ppm: 100_000,
                    min_reports: 1,
                    silence_seconds: 60,
                    heartbeat_seconds: 10,
                    report_ppm: 1_000_000,
                },
            },
        };
        let hash = *blake3::hash(data).as_bytes();
        let path = format!("acme/{version}");
        let target = release_target(&path, data.len() as u64, &hash, &info).unwrap();
        let id = repo.add_target(&path, target).unwrap().id;
        Published {
            id,
            list_bytes: encoded,
            list,
        }
    };
    let old = add("1.0", &v1);
    let new = add("2.0", &v2);
    let k = [&key];
    let signers = RoleSigners {
        targets: &k,
        snapshot: &k,
        timestamp: &k,
    };
    let bundle = repo.sign(T0, &Expiries::default(), &signers).unwrap();
    Fixture {
        root,
        bundle,
        old,
        new,
    }
}

fn peer(seed: u8) -> NodeId {
    SigningKey::from_seed([seed; 32]).node_id()
}

/// A prefetching node trusting the fixture's bundle and holding the new release's list.
fn node(f: &Fixture) -> Node {
    let trust = TrustedState::new(&f.root).unwrap();
    let config = NodeConfig {
        prefetch: true,
        ..NodeConfig::default()
    };
    let mut n = Node::new(SigningKey::from_seed([1; 32]), trust, config, T0);
    n.handle_input(T0, Input::Metadata(f.bundle.clone()));
    n
}

/// `from` announces it holds every chunk of `release`.
fn announce_all(n: &mut Node, from: NodeId, p: &Published, request_id: u64) {
    let mut bits = Bitfield::new(p.list.chunks.len() as u32);
    for i in 0..p.list.chunks.len() as u32 {
        bits.set(i);
    }
    n.handle_input(
        T0,
        Input::Request {
            from,
            request_id,
            data: Request::Have {
                release: p.id,
                bitfield: ByteBuf::from(bits.to_bytes()),
            }
            .encode(),
        },
    );
}

/// Everything queued, up to the timeout.
fn drain(n: &mut Node) -> Vec<Output> {
    let mut out = Vec::new();
    loop {
        match n.poll_output() {
            Output::Timeout(_) => return out,
            o => out.push(o),
        }
    }
}

/// The (peer, chunk index) pairs of chunk requests for `release` in `out`.
fn chunk_requests(out: &[Output], release: ReleaseId) -> Vec<(NodeId, u32)> {
    out.iter()
        .filter_map(|o| match o {
            Output::SendRequest { to, data, .. } => match Request::decode(data) {
                Ok(Request::Chunk { release: r, index }) if r == release => Some((*to, index)),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

#[test]
fn a_node_holding_the_old_release_asks_only_for_new_chunks() {
    let f = fixture();
    let mut n = node(&f);
    let old_hashes: Vec<_> = f.old.list.chunks.iter().map(|c| c.hash).collect();
    n.handle_input(T0, Input::ChunksHeld(old_hashes.clone()));
    n.handle_input(
        T0,
        Input::ChunkList {
            release: f.new.id,
            data: f.new.list_bytes.clone(),
        },
    );
    n.handle_input(T0, Input::PeerConnected(peer(2)));
    announce_all(&mut n, peer(2), &f.new, 1);
    let asked: BTreeSet<u32> = chunk_requests(&drain(&mut n), f.new.id)
        .into_iter()
        .map(|(_, i)| i)
        .collect();
    let held: BTreeSet<_> = old_hashes.into_iter().collect();
    let missing: BTreeSet<u32> = (0..f.new.list.chunks.len() as u32)
        .filter(|i| !held.contains(&f.new.list.chunks[*i as usize].hash))
        .collect();
    assert!(
        !missing.is_empty() && missing.len() * 3 < f.new.list.chunks.len(),
        "{} of {} chunks changed",
        missing.len(),
        f.new.list.chunks.len()
    );
    assert_eq!(asked, missing, "exactly the chunks the old release lacks");
}

/// A node told its site: `lan` shares it, `wan` does not; both hold the release.
fn sited(f: &Fixture, policy: Option<TransferPolicy>) -> (Node, NodeId, NodeId) {
    let (lan, wan) = (peer(2), peer(3));
    let mut n = node(f);
    n.handle_input(T0, Input::SitePeers(vec![lan]));
    if let Some(p) = policy {
        n.handle_input(T0, Input::TransferPolicy(p));
    }
    n.handle_input(
        T0,
        Input::ChunkList {
            release: f.new.id,
            data: f.new.list_bytes.clone(),
        },
    );
    for (i, p) in [lan, wan].into_iter().enumerate() {
        n.handle_input(T0, Input::PeerConnected(p));
        announce_all(&mut n, p, &f.new, 10 + i as u64);
    }
    (n, lan, wan)
}

#[test]
fn chunks_a_lan_peer_holds_are_asked_of_the_lan_only() {
    let f = fixture();
    let (mut n, lan, _) = sited(&f, None);
    let asked = chunk_requests(&drain(&mut n), f.new.id);
    assert!(!asked.is_empty());
    assert!(asked.iter().all(|(p, _)| *p == lan), "{asked:?}");
}

#[test]
fn a_closed_wan_window_leaves_wan_peers_alone_and_waits_without_widening() {
    let f = fixture();
    let closed = TransferPolicy {
        wan_fetch: false,
        wan_serve: false,
        ..TransferPolicy::default()
    };
    let (mut n, lan, wan) = sited(&f, Some(closed));
    // The LAN peer goes away: only the WAN peer holds the chunks now.
    n.handle_input(T0, Input::PeerDisconnected(lan));
    let _ = drain(&mut n);
    let later = T0.plus_secs(600);
    n.handle_input(later, Input::Tick);
    let asked = chunk_requests(&drain(&mut n), f.new.id);
    assert!(asked.is_empty(), "{asked:?}");
    // The window opens: the node (alone on its site now, so elected) fetches.
    n.handle_input(later, Input::TransferPolicy(TransferPolicy::default()));
    let asked = chunk_requests(&drain(&mut n), f.new.id);
    assert!(!asked.is_empty() && asked.iter().all(|(p, _)| *p == wan));
    // Across the WAN, a few at a time.
    assert!(asked.len() <= waveguard_protocol::limits::MAX_WAN_IN_FLIGHT);
}

#[test]
fn a_wan_peer_is_answered_busy_when_serving_it_is_not_allowed() {
    let f = fixture();
    let no_wan_uploads = TransferPolicy {
        wan_serve: false,
        ..TransferPolicy::default()
    };
    let (mut n, lan, wan) = sited(&f, Some(no_wan_uploads));
    n.handle_input(
        T0,
        Input::ChunksHeld(f.new.list.chunks.iter().map(|c| c.hash).collect()),
    );
    let _ = drain(&mut n);
    let ask = |n: &mut Node, from: NodeId, request_id: u64| {
        n.handle_input(
            T0,
            Input::Request {
                from,
                request_id,
                data: Request::Chunk {
                    release: f.new.id,
                    index: 0,
                }
                .encode(),
            },
        );
        drain(n)
    };
    let to_wan = ask(&mut n, wan, 100);
    assert!(to_wan.iter().any(|o| matches!(o,
        Output::Respond { request_id: 100, data, .. } if Response::decode(data).ok() == Some(Response::Busy))));
    let to_lan = ask(&mut n, lan, 101);
    assert!(
        to_lan.iter().any(|o| matches!(o, Output::LoadChunk { .. })),
        "the LAN peer is served: {to_lan:?}"
    );
}
