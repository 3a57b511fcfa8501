//! The `Node` engine driven by hand, one input at a time: the calling
//! contract, gossip verdicts, and how it treats a peer that lies.

use serde_bytes::ByteBuf;
use std::num::NonZeroU64;
use waveguard_protocol::chunk::ChunkList;
use waveguard_protocol::chunker::chunk_bytes;
use waveguard_protocol::fetch::{Bandwidth, Bitfield};
use waveguard_protocol::limits::{BAN_MS, DOWNLOAD_WINDOW_MS, MAX_WAITING_REQUESTS, MAX_WAIT_MS};
use waveguard_protocol::metadata::build::{
    new_root, release_target, sign_document, Expiries, Repository, RoleSigners, RoleSpec, RootSpec,
};
use waveguard_protocol::metadata::trust::TrustedState;
use waveguard_protocol::node::{Input, Node, NodeConfig, NodeEvent, Output, Verdict};
use waveguard_protocol::release::{
    ChunkListRef, ChunkerParams, HealthPolicy, ReleaseInfo, RolloutPolicy, WaveSpec,
};
use waveguard_protocol::wire::{Gossip, MetadataBundle, Request, Response};
use waveguard_protocol::{NodeId, ReleaseId, SigningKey, Timestamp};

const T0: Timestamp = Timestamp::from_secs(1_900_000_000);

/// A vendor with one release of `size` bytes, and the bundles of each signing.
struct Fixture {
    root: Vec<u8>,
    bundles: Vec<MetadataBundle>,
    release: ReleaseId,
    list: Vec<u8>,
    chunks: Vec<Vec<u8>>,
}

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
    let artifact: Vec<u8> = (0..600_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let params = ChunkerParams {
        min_size: 16 * 1024,
        avg_size: 64 * 1024,
        max_size: 256 * 1024,
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
    let hash = *blake3::hash(&artifact).as_bytes();
    let target = release_target("acme/1.0", artifact.len() as u64, &hash, &info).unwrap();
    let release = repo.add_target("acme/1.0", target).unwrap().id;
    let k = [&key];
    let signers = RoleSigners {
        targets: &k,
        snapshot: &k,
        timestamp: &k,
    };
    let first = repo.sign(T0, &Expiries::default(), &signers).unwrap();
    let second = repo
        .sign(T0.plus_secs(1), &Expiries::default(), &signers)
        .unwrap();
    let mut offset = 0;
    let chunks = list
        .chunks
        .iter()
        .map(|c| {
            let b = artifact[offset..offset + c.length as usize].to_vec();
            offset += c.length as usize;
            b
        })
        .collect();
    Fixture {
        root,
        bundles: vec![first, second],
        release,
        list: encoded,
        chunks,
    }
}

fn node(f: &Fixture) -> Node {
    let trust = TrustedState::new(&f.root).unwrap();
    let config = NodeConfig {
        prefetch: true,
        ..NodeConfig::default()
    };
    Node::new(SigningKey::from_seed([1; 32]), trust, config, T0)
}

/// Everything the node wants done, up to (not including) its timeout.
fn drain(n: &mut Node, now: Timestamp) -> Vec<Output> {
    let mut out = Vec::new();
    loop {
        match n.poll_output() {
            Output::Timeout(t) => {
                assert!(t > now, "timeout {t:?} is not after now {now:?}");
                return out;
            }
            o => out.push(o),
        }
    }
}

fn peer(seed: u8) -> NodeId {
    SigningKey::from_seed([seed; 32]).node_id()
}

#[test]
fn garbage_gossip_is_rejected_and_reported() {
    let f = fixture();
    let mut n = node(&f);
    n.handle_input(
        T0,
        Input::Gossip {
            from: peer(2),
            message_id: 7,
            data: vec![1, 0xff, 0xff],
        },
    );
    let out = drain(&mut n, T0);
    assert!(out.iter().any(|o| matches!(
        o,
        Output::GossipVerdict {
            message_id: 7,
            verdict: Verdict::Reject
        }
    )));
    assert!(out
        .iter()
        .any(|o| matches!(o, Output::Event(NodeEvent::Refused { .. }))));
}

#[test]
fn an_outdated_but_authentic_bundle_is_ignored_not_rejected() {
    let f = fixture();
    let mut n = node(&f);
    let gossip = |b: &MetadataBundle| Gossip::Metadata(b.clone()).encode();
    n.handle_input(
        T0,
        Input::Gossip {
            from: peer(2),
            message_id: 1,
            data: gossip(&f.bundles[1]),
        },
    );
    n.handle_input(
        T0,
        Input::Gossip {
            from: peer(2),
            message_id: 2,
            data: gossip(&f.bundles[0]),
        },
    );
    let verdicts: Vec<_> = drain(&mut n, T0)
        .into_iter()
        .filter_map(|o| match o {
            Output::GossipVerdict {
                message_id,
                verdict,
            } => Some((message_id, verdict)),
            _ => None,
        })
        .collect();
    assert_eq!(verdicts, vec![(1, Verdict::Accept), (2, Verdict::Ignore)]);
    // A forged one (a flipped byte in targets) is rejected.
    let mut forged = f.bundles[1].clone();
    let mut targets = forged.targets.to_vec();
    let at = targets.len() / 2;
    targets[at] ^= 1;
    forged.targets = ByteBuf::from(targets);
    let mut forged_newer = forged.clone();
    forged_newer.timestamp = f.bundles[1].timestamp.clone();
    n.handle_input(
        T0,
        Input::Gossip {
            from: peer(2),
            message_id: 3,
            data: gossip(&forged_newer),
        },
    );
    let out = drain(&mut n, T0);
    assert!(out.iter().any(|o| matches!(
        o,
        Output::GossipVerdict {
            message_id: 3,
            verdict: Verdict::Ignore | Verdict::Reject
        }
    )));
}

#[test]
fn now_going_backwards_is_treated_as_the_last_now() {
    let f = fixture();
    let mut n = node(&f);
    n.handle_input(T0.plus_secs(10), Input::Tick);
    drain(&mut n, T0.plus_secs(10));
    n.handle_input(T0, Input::Tick);
    drain(&mut n, T0.plus_secs(10));
}

#[test]
fn a_malformed_request_gets_not_found() {
    let f = fixture();
    let mut n = node(&f);
    n.handle_input(T0, Input::PeerConnected(peer(2)));
    drain(&mut n, T0);
    n.handle_input(
        T0,
        Input::Request {
            from: peer(2),
            request_id: 5,
            data: vec![1, 200],
        },
    );
    let out = drain(&mut n, T0);
    let answer = out.iter().find_map(|o| match o {
        Output::Respond {
            request_id: 5,
            data,
            ..
        } => Some(Response::decode(data).unwrap()),
        _ => None,
    });
    assert_eq!(answer, Some(Response::NotFound));
}

/// Walks one node through discovery with a single peer that answers every
/// request, corrupting chunk `bad` if given. Returns every output seen.
fn fetch_from(f: &Fixture, bad: Option<u32>, lose_first_chunk_once: bool) -> Vec<Output> {
    fetch_with(f, bad, lose_first_chunk_once).1
}

/// [`fetch_from`], also giving back the node and its time at the end.
fn fetch_with(
    f: &Fixture,
    bad: Option<u32>,
    lose_first_chunk_once: bool,
) -> (Node, Vec<Output>, Timestamp) {
    let mut n = node(f);
    let p = peer(2);
    let full = {
        let count = f.chunks.len();
        let mut bits = vec![0u8; count.div_ceil(8)];
        for i in 0..count {
            bits[i / 8] |= 0x80 >> (i % 8);
        }
        bits
    };
    let mut seen = Vec::new();
    let mut lost = !lose_first_chunk_once;
    let mut now = T0;
    n.handle_input(now, Input::Metadata(f.bundles[1].clone()));
    n.handle_input(now, Input::PeerConnected(p));
    for _ in 0..10_000 {
        let out = drain(&mut n, now);
        if out.is_empty() {
            break;
        }
        now = now.plus_millis(10);
        for o in out {
            match &o {
                Output::SendRequest {
                    to,
                    request_id,
                    data,
                } if *to == p => {
                    let response = match Request::decode(data).unwrap() {
                        Request::Metadata => Response::Metadata(f.bundles[1].clone()),
                        Request::Have { .. } => Response::Have {
                            bitfield: ByteBuf::from(full.clone()),
                        },
                        Request::ChunkList { .. } => {
                            Response::ChunkList(ByteBuf::from(f.list.clone()))
                        }
                        Request::Chunk { index, .. } => {
                            let mut bytes = f.chunks[index as usize].clone();
                            if Some(index) == bad {
                                bytes[0] ^= 1;
                            }
                            Response::Chunk(ByteBuf::from(bytes))
                        }
                        Request::Health { .. } | Request::Halt { .. } => Response::NotFound,
                    };
                    n.handle_input(
                        now,
                        Input::Response {
                            from: p,
                            request_id: *request_id,
                            data: response.encode(),
                        },
                    );
                }
                Output::StoreChunk { hash, .. } => {
                    n.handle_input(now, Input::ChunkStored { hash: *hash })
                }
                Output::Assemble {
                    release, chunks, ..
                } => {
                    if lost {
                        n.handle_input(
                            now,
                            Input::ArtifactStaged {
                                release: *release,
                                result: Ok(()),
                            },
                        );
                    } else {
                        // The store finds chunk 0 damaged while assembling.
                        lost = true;
                        n.handle_input(now, Input::ChunkLost { hash: chunks[0] });
                    }
                }
                _ => {}
            }
            seen.push(o);
        }
    }
    (n, seen, now)
}

#[test]
fn an_honest_peer_delivers_every_chunk_once() {
    let f = fixture();
    let out = fetch_from(&f, None, false);
    let stores = out
        .iter()
        .filter(|o| matches!(o, Output::StoreChunk { .. }))
        .count();
    assert_eq!(stores, f.chunks.len());
    assert!(out
        .iter()
        .any(|o| matches!(o, Output::Assemble { release, .. } if *release == f.release)));
    assert!(!out.iter().any(|o| matches!(o, Output::Ban { .. })));
}

#[test]
fn a_peer_that_sends_one_corrupt_chunk_is_banned_at_once() {
    let f = fixture();
    let out = fetch_from(&f, Some(2), false);
    let bans: Vec<_> = out
        .iter()
        .filter(|o| matches!(o, Output::Ban { .. }))
        .collect();
    assert_eq!(bans.len(), 1, "{bans:?}");
    assert!(out
        .iter()
        .any(|o| matches!(o, Output::Event(NodeEvent::ChunkRejected { index: 2, .. }))));
    assert!(matches!(bans[0], Output::Ban { peer: p, .. } if *p == peer(2)));
    // Nothing corrupt was stored, and nothing more was asked of the banned peer.
    for o in &out {
        if let Output::StoreChunk { hash, data } = o {
            assert_eq!(blake3::hash(data).as_bytes(), hash);
        }
    }
    let ban_at = out
        .iter()
        .position(|o| matches!(o, Output::Ban { .. }))
        .unwrap();
    assert!(!out[ban_at..]
        .iter()
        .any(|o| matches!(o, Output::SendRequest { to, .. } if *to == peer(2))));
}

#[test]
fn a_ban_ends_after_ban_ms_and_the_peer_is_a_peer_again() {
    let f = fixture();
    let (mut n, out, now) = fetch_with(&f, Some(2), false);
    let until = out
        .iter()
        .find_map(|o| match o {
            Output::Ban { peer: p, until, .. } if *p == peer(2) => Some(*until),
            _ => None,
        })
        .expect("banned for the corrupt chunk");
    let banned_at = until.as_millis() - BAN_MS;
    assert!(
        banned_at <= now.as_millis(),
        "the ban ends BAN_MS after it began"
    );
    let lifted = |out: &[Output]| {
        out.iter().any(
            |o| matches!(o, Output::Event(NodeEvent::PeerUnbanned { peer: p }) if *p == peer(2)),
        )
    };
    // A minute before its end it still holds: a reconnection is ignored.
    let before = Timestamp(until.as_millis() - 60_000);
    n.handle_input(before, Input::PeerConnected(peer(2)));
    let out = drain(&mut n, before);
    assert!(!lifted(&out));
    assert!(!out
        .iter()
        .any(|o| matches!(o, Output::SendRequest { to, .. } if *to == peer(2))));
    assert_eq!(n.status().banned, 1);
    // At its end it is lifted, and the peer, connecting again, is asked as any peer is.
    n.handle_input(until, Input::Tick);
    let out = drain(&mut n, until);
    assert!(lifted(&out), "no PeerUnbanned at the ban's end");
    assert_eq!(n.status().banned, 0);
    n.handle_input(until, Input::PeerConnected(peer(2)));
    let out = drain(&mut n, until);
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::SendRequest { to, .. } if *to == peer(2))),
        "the unbanned peer is not talked to: {out:?}"
    );
}

#[test]
fn an_unsolicited_response_is_ignored() {
    let f = fixture();
    let mut n = node(&f);
    n.handle_input(T0, Input::PeerConnected(peer(2)));
    drain(&mut n, T0);
    let bogus = Response::Chunk(ByteBuf::from(vec![0u8; 100])).encode();
    n.handle_input(
        T0,
        Input::Response {
            from: peer(2),
            request_id: 999_999,
            data: bogus,
        },
    );
    let out = drain(&mut n, T0);
    assert!(out
        .iter()
        .all(|o| !matches!(o, Output::StoreChunk { .. } | Output::Ban { .. })));
}

#[test]
fn a_chunk_lost_from_the_store_is_fetched_again_and_the_artifact_reassembled() {
    let f = fixture();
    let out = fetch_from(&f, None, true);
    let assembles = out
        .iter()
        .filter(|o| matches!(o, Output::Assemble { .. }))
        .count();
    assert_eq!(assembles, 2, "assembled again after the loss");
    let stores = out
        .iter()
        .filter(|o| matches!(o, Output::StoreChunk { .. }))
        .count();
    assert_eq!(
        stores,
        f.chunks.len() + 1,
        "exactly the lost chunk is fetched again"
    );
    assert!(out
        .iter()
        .any(|o| matches!(o, Output::Event(NodeEvent::StoreCorrupt { .. }))));
}

/// A node holding every chunk of the fixture's release, limited by `bandwidth`.
fn holder(f: &Fixture, bandwidth: Bandwidth) -> Node {
    let trust = TrustedState::new(&f.root).unwrap();
    let config = NodeConfig {
        prefetch: true,
        bandwidth,
        ..NodeConfig::default()
    };
    let mut n = Node::new(SigningKey::from_seed([1; 32]), trust, config, T0);
    n.handle_input(T0, Input::Metadata(f.bundles[1].clone()));
    let list = ChunkList::decode(&f.list).unwrap();
    n.handle_input(
        T0,
        Input::ChunksHeld(list.chunks.iter().map(|c| c.hash).collect()),
    );
    n.handle_input(
        T0,
        Input::ChunkList {
            release: f.release,
            data: f.list.clone(),
        },
    );
    drain(&mut n, T0);
    n
}

/// Sends `n` a request from `from` at `now` and returns what it did.
fn ask(n: &mut Node, now: Timestamp, from: NodeId, id: u64, request: Request) -> Vec<Output> {
    n.handle_input(
        now,
        Input::Request {
            from,
            request_id: id,
            data: request.encode(),
        },
    );
    drain(n, now)
}

/// Asks `n` for chunk `index` as peer `from`; returns whether it was taken on
/// (a store load) rather than answered `Busy`.
fn ask_chunk(n: &mut Node, f: &Fixture, now: Timestamp, from: NodeId, id: u64, index: u32) -> bool {
    let request = Request::Chunk {
        release: f.release,
        index,
    };
    let out = ask(n, now, from, id, request);
    let loads = out
        .iter()
        .filter(|o| matches!(o, Output::LoadChunk { .. }))
        .count();
    let busy = out
        .iter()
        .filter(|o| matches!(o, Output::Respond { data, .. } if Response::decode(data).unwrap() == Response::Busy))
        .count();
    assert_eq!(loads + busy, 1, "one answer per request: {out:?}");
    loads == 1
}

/// The chunk loads (by hash) and `Busy` answers (by request ID) among `out`.
fn loads_and_busy(out: &[Output]) -> (Vec<[u8; 32]>, Vec<u64>) {
    let loads = out
        .iter()
        .filter_map(|o| match o {
            Output::LoadChunk { hash, .. } => Some(*hash),
            _ => None,
        })
        .collect();
    let busy = out
        .iter()
        .filter_map(|o| match o {
            Output::Respond {
                request_id, data, ..
            } if Response::decode(data).unwrap() == Response::Busy => Some(*request_id),
            _ => None,
        })
        .collect();
    (loads, busy)
}

#[test]
fn a_full_upload_backlog_holds_requests_and_serves_the_asker_holding_least_first() {
    let f = fixture();
    let list = ChunkList::decode(&f.list).unwrap();
    let n_chunks = list.chunks.len() as u32;
    let len = |i: u32| u64::from(list.chunks[i as usize].length);
    // The first chunk drains in exactly one second; the backlog holds half of that.
    let rate = len(0);
    let mut n = holder(
        &f,
        Bandwidth {
            upload: NonZeroU64::new(rate),
            download: None,
        },
    );
    assert!(n_chunks >= 3, "{n_chunks} chunks");
    let (first, ahead, behind) = (peer(10), peer(11), peer(12));
    // `ahead` will ask for chunk 1 holding two others; `behind` for chunk 2 holding one.
    for (p, held) in [(first, vec![]), (ahead, vec![0, 2]), (behind, vec![0])] {
        n.handle_input(T0, Input::PeerConnected(p));
        let mut bits = Bitfield::new(n_chunks);
        for &i in &held {
            bits.set(i);
        }
        let have = Request::Have {
            release: f.release,
            bitfield: ByteBuf::from(bits.to_bytes()),
        };
        ask(&mut n, T0, p, 100 + held.len() as u64, have);
    }
    // An empty backlog takes the first request at once.
    assert!(ask_chunk(&mut n, &f, T0, first, 1, 0));
    // The backlog is over its half-second window: both next requests wait, unanswered.
    let big = [1, 2];
    let ahead_asks = Request::Chunk {
        release: f.release,
        index: big[0],
    };
    assert!(ask(&mut n, T0, ahead, 2, ahead_asks).is_empty());
    let behind_asks = Request::Chunk {
        release: f.release,
        index: big[1],
    };
    let out = ask(&mut n, T0.plus_millis(10), behind, 3, behind_asks);
    assert!(out.is_empty(), "{out:?}");
    // The node wakes when the backlog has drained, and serves the asker that
    // holds one chunk before the one that holds two, though it asked later.
    let Output::Timeout(wake) = n.poll_output() else {
        panic!("expected a timeout");
    };
    assert!(wake > T0.plus_millis(10) && wake <= T0.plus_millis(1000));
    n.handle_input(wake, Input::Tick);
    let (loads, busy) = loads_and_busy(&drain(&mut n, wake));
    assert_eq!(loads, vec![list.chunks[big[1] as usize].hash]);
    assert!(busy.is_empty());
    // The other request gets exactly one answer: a load when the backlog has
    // room again, or `Busy` once it has waited MAX_WAIT_MS — never before.
    let mut answers = Vec::new();
    let mut now = wake;
    while now < T0.plus_millis(MAX_WAIT_MS + 1000) {
        let Output::Timeout(next) = n.poll_output() else {
            panic!("expected a timeout");
        };
        now = next;
        n.handle_input(now, Input::Tick);
        let (loads, busy) = loads_and_busy(&drain(&mut n, now));
        answers.extend(loads.iter().map(|h| (now, Some(*h))));
        answers.extend(busy.iter().map(|_| (now, None)));
    }
    assert_eq!(answers.len(), 1, "{answers:?}");
    match answers[0] {
        (at, Some(hash)) => {
            assert_eq!(hash, list.chunks[big[0] as usize].hash);
            assert!(at < T0.plus_millis(MAX_WAIT_MS));
        }
        (at, None) => assert_eq!(at, T0.plus_millis(MAX_WAIT_MS)),
    }
}

#[test]
fn a_chunk_just_sent_to_another_peer_waits_behind_fresh_ones_but_is_not_refused() {
    let f = fixture();
    let list = ChunkList::decode(&f.list).unwrap();
    assert!(list.chunks.len() >= 2);
    // Fast enough that the first chunk drains well within RESEND_HOLD_MS.
    let rate = u64::from(list.chunks[0].length) * 10;
    let mut n = holder(
        &f,
        Bandwidth {
            upload: NonZeroU64::new(rate),
            download: None,
        },
    );
    let (first, again, fresh) = (peer(10), peer(11), peer(12));
    for p in [first, again, fresh] {
        n.handle_input(T0, Input::PeerConnected(p));
    }
    drain(&mut n, T0);
    assert!(ask_chunk(&mut n, &f, T0, first, 1, 0));
    // Chunk 0 again, for another peer, while it is held back: it waits, unanswered
    // (refusing it would make the asker back off and could leave the upload idle)...
    let zero = Request::Chunk {
        release: f.release,
        index: 0,
    };
    let out = ask(&mut n, T0, again, 2, zero);
    assert!(out.is_empty(), "{out:?}");
    // ...and a request for a chunk nobody was sent arrives after it but goes first.
    let one = Request::Chunk {
        release: f.release,
        index: 1,
    };
    let (mut loads, busy) = loads_and_busy(&ask(&mut n, T0, fresh, 3, one));
    assert!(busy.is_empty());
    let mut now = T0;
    while loads.len() < 2 && now < T0.plus_millis(MAX_WAIT_MS) {
        let Output::Timeout(next) = n.poll_output() else {
            panic!("expected a timeout");
        };
        now = next;
        n.handle_input(now, Input::Tick);
        let (l, busy) = loads_and_busy(&drain(&mut n, now));
        assert!(busy.is_empty(), "nothing is refused: {busy:?}");
        loads.extend(l);
    }
    // Both are served before either could expire, the fresh chunk first: once
    // the upload has nothing else to send, the held-back chunk goes rather than leave it idle.
    assert_eq!(
        loads,
        vec![list.chunks[1].hash, list.chunks[0].hash],
        "served by {now:?}"
    );
    assert!(now < T0.plus_millis(MAX_WAIT_MS));
}

#[test]
fn a_waiting_request_for_a_chunk_the_asker_has_since_announced_is_not_served() {
    let f = fixture();
    let list = ChunkList::decode(&f.list).unwrap();
    let n_chunks = list.chunks.len() as u32;
    let rate = u64::from(list.chunks[0].length);
    let mut n = holder(
        &f,
        Bandwidth {
            upload: NonZeroU64::new(rate),
            download: None,
        },
    );
    let (first, asker) = (peer(10), peer(11));
    for p in [first, asker] {
        n.handle_input(T0, Input::PeerConnected(p));
    }
    assert!(ask_chunk(&mut n, &f, T0, first, 1, 0));
    let wants_one = Request::Chunk {
        release: f.release,
        index: 1,
    };
    assert!(ask(&mut n, T0, asker, 2, wants_one).is_empty(), "it waits");
    // The asker got chunk 1 elsewhere (an endgame copy) and says so.
    let mut bits = Bitfield::new(n_chunks);
    bits.set(1);
    let have = Request::Have {
        release: f.release,
        bitfield: ByteBuf::from(bits.to_bytes()),
    };
    ask(&mut n, T0.plus_millis(100), asker, 3, have);
    let Output::Timeout(wake) = n.poll_output() else {
        panic!("expected a timeout");
    };
    n.handle_input(wake, Input::Tick);
    let (loads, busy) = loads_and_busy(&drain(&mut n, wake));
    assert!(loads.is_empty(), "chunk 1 is not sent again");
    assert_eq!(busy, vec![2]);
}

#[test]
fn an_upload_limit_turns_away_the_furthest_along_asker_when_too_many_wait() {
    let f = fixture();
    let n_chunks = ChunkList::decode(&f.list).unwrap().chunks.len() as u32;
    // 1 byte/s: after the first chunk, nothing fits for the length of the test.
    let mut n = holder(
        &f,
        Bandwidth {
            upload: NonZeroU64::new(1),
            download: None,
        },
    );
    let mut id = 0;
    let mut busy_at_once = 0;
    for p in 10..(12 + MAX_WAITING_REQUESTS as u8) {
        let from = peer(p);
        n.handle_input(T0, Input::PeerConnected(from));
        id += 1;
        // Any chunk but the one just sent (that one is held back from others).
        let index = if p == 10 {
            0
        } else {
            1 + u32::from(p) % (n_chunks - 1)
        };
        let out = ask(
            &mut n,
            T0,
            from,
            id,
            Request::Chunk {
                release: f.release,
                index,
            },
        );
        busy_at_once += loads_and_busy(&out).1.len();
    }
    // One load, MAX_WAITING_REQUESTS waiting, the one over the bound turned away.
    assert_eq!(busy_at_once, 1);
    // Each waiting request is answered `Busy` once it has waited MAX_WAIT_MS.
    let later = T0.plus_millis(MAX_WAIT_MS);
    n.handle_input(later, Input::Tick);
    let (loads, busy) = loads_and_busy(&drain(&mut n, later));
    assert!(loads.is_empty());
    assert_eq!(busy.len(), MAX_WAITING_REQUESTS);
}

#[test]
fn without_an_upload_limit_only_the_per_peer_bound_says_busy() {
    let f = fixture();
    let mut n = holder(&f, Bandwidth::default());
    let mut id = 0;
    for p in 10..60u8 {
        let from = peer(p);
        n.handle_input(T0, Input::PeerConnected(from));
        drain(&mut n, T0);
        id += 1;
        assert!(ask_chunk(&mut n, &f, T0, from, id, 0));
    }
}

#[test]
fn a_download_limit_keeps_the_bytes_requested_within_its_window() {
    let f = fixture();
    let list = ChunkList::decode(&f.list).unwrap();
    // 20 kB/s: a window of DOWNLOAD_WINDOW_MS (15 s) is 300 kB, a few 64 KiB chunks.
    let rate = 20_000u64;
    let window = rate * DOWNLOAD_WINDOW_MS / 1000;
    let trust = TrustedState::new(&f.root).unwrap();
    let config = NodeConfig {
        prefetch: true,
        bandwidth: Bandwidth {
            upload: None,
            download: NonZeroU64::new(rate),
        },
        ..NodeConfig::default()
    };
    let mut n = Node::new(SigningKey::from_seed([1; 32]), trust, config, T0);
    n.handle_input(T0, Input::Metadata(f.bundles[1].clone()));
    n.handle_input(
        T0,
        Input::ChunkList {
            release: f.release,
            data: f.list.clone(),
        },
    );
    let full = Bitfield::full(list.chunks.len() as u32);
    for p in 10..20u8 {
        n.handle_input(T0, Input::PeerConnected(peer(p)));
        n.handle_input(
            T0,
            Input::Request {
                from: peer(p),
                request_id: u64::from(p),
                data: Request::Have {
                    release: f.release,
                    bitfield: ByteBuf::from(full.as_bytes().to_vec()),
                }
                .encode(),
            },
        );
    }
    let out = drain(&mut n, T0);
    let requested: u64 = out
        .iter()
        .filter_map(|o| match o {
            Output::SendRequest { data, .. } => match Request::decode(data).unwrap() {
                Request::Chunk { index, .. } => Some(u64::from(list.chunks[index as usize].length)),
                _ => None,
            },
            _ => None,
        })
        .sum();
    assert!(requested > 0, "nothing requested: {out:?}");
    let largest = list
        .chunks
        .iter()
        .map(|c| u64::from(c.length))
        .max()
        .unwrap();
    assert!(
        requested <= window.max(largest),
        "{requested} bytes in flight, window {window}"
    );
    // Without the limit, all ten peers would be asked for the whole release at once.
    assert!(list.chunks.iter().map(|c| u64::from(c.length)).sum::<u64>() > window);
}
