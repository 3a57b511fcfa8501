//! Tests of the bundle layout and its verifier: round trips, and that every
//! truncation, altered chunk, foreign or stale metadata is refused with the
//! error that names it.

use super::health;
use super::*;
use crate::chunker::chunk_bytes;
use crate::metadata::build::{
    new_root, release_target, sign_document, Expiries, Repository, RoleSigners, RoleSpec, RootSpec,
};
use crate::release::{
    ChunkListRef, ChunkerParams, HealthPolicy, ReleaseInfo, RolloutPolicy, WaveSpec,
};
use crate::SigningKey;
use proptest::prelude::*;

const T0: Timestamp = Timestamp::from_secs(1_900_000_000);

/// One release's chunk list, its bytes and its chunks.
struct Content {
    id: ReleaseId,
    list: ChunkList,
    list_bytes: Vec<u8>,
    chunks: Vec<Vec<u8>>,
}

/// A vendor (one key for every role) with releases 1.0 and 1.1 of one
/// artifact, 1.1 differing in its last quarter.
struct Vendor {
    root: Vec<u8>,
    metadata: MetadataBundle,
    /// A later signing of the same targets.
    newer: MetadataBundle,
    v1: Content,
    v2: Content,
}

fn params() -> ChunkerParams {
    ChunkerParams {
        min_size: 16 * 1024,
        avg_size: 32 * 1024,
        max_size: 128 * 1024,
        ..ChunkerParams::default()
    }
}

fn artifact(seed: u32, len: usize) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(seed) >> 13) as u8)
        .collect()
}

fn add(repo: &mut Repository, version: &str, bytes: &[u8]) -> Content {
    let list = chunk_bytes(bytes, &params()).unwrap();
    let list_bytes = list.encode();
    let info = ReleaseInfo {
        product: "acme".into(),
        version: version.into(),
        chunk_list: ChunkListRef {
            length: list_bytes.len() as u64,
            blake3: hex::encode(blake3::hash(&list_bytes).as_bytes()),
            chunks: list.chunks.len() as u32,
        },
        chunker: params(),
        rollout: RolloutPolicy {
            start: T0,
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
    let hash = *blake3::hash(bytes).as_bytes();
    let path = format!("acme/{version}");
    let target = release_target(&path, bytes.len() as u64, &hash, &info).unwrap();
    let id = repo.add_target(&path, target).unwrap().id;
    let mut at = 0;
    let chunks = list
        .chunks
        .iter()
        .map(|c| {
            let b = bytes[at..at + c.length as usize].to_vec();
            at += c.length as usize;
            b
        })
        .collect();
    Content {
        id,
        list,
        list_bytes,
        chunks,
    }
}

fn vendor(seed: u8) -> Vendor {
    let key = SigningKey::from_seed([seed; 32]);
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
    let a = artifact(u32::from(seed), 400_000);
    let mut b = a.clone();
    for x in &mut b[300_000..] {
        *x = x.wrapping_add(1);
    }
    let v1 = add(&mut repo, "1.0", &a);
    let v2 = add(&mut repo, "1.1", &b);
    let k = [&key];
    let signers = RoleSigners {
        targets: &k,
        snapshot: &k,
        timestamp: &k,
    };
    let metadata = repo.sign(T0, &Expiries::default(), &signers).unwrap();
    let newer = repo
        .sign(T0.plus_secs(10), &Expiries::default(), &signers)
        .unwrap();
    Vendor {
        root,
        metadata,
        newer,
        v1,
        v2,
    }
}

fn bundle(v: &Vendor, c: &Content, base: Option<&Content>) -> Vec<u8> {
    let indices = chunks_to_carry(&c.list, base.map(|b| &b.list));
    let chunks: Vec<(u32, &[u8])> = indices
        .iter()
        .map(|&i| (i, c.chunks[i as usize].as_slice()))
        .collect();
    encode(&Contents {
        kind: match base {
            Some(b) => Kind::Delta { base: b.id },
            None => Kind::Full,
        },
        release: c.id,
        metadata: &v.metadata,
        list_bytes: &c.list_bytes,
        chunks: &chunks,
    })
    .unwrap()
}

fn trust(v: &Vendor) -> TrustedState {
    TrustedState::new(&v.root).unwrap()
}

fn none(_: &ChunkHash) -> bool {
    false
}

/// Offset of the first chunk record's bytes in a bundle.
fn first_chunk_offset(v: &Vendor, c: &Content) -> usize {
    let prefix = encode_prefix(
        &Contents {
            kind: Kind::Full,
            release: c.id,
            metadata: &v.metadata,
            list_bytes: &c.list_bytes,
            chunks: &[],
        },
        0,
    )
    .unwrap();
    prefix.len() + CHUNK_RECORD_HEADER_LEN
}

#[test]
fn a_full_bundle_round_trips() {
    let v = vendor(7);
    let bytes = bundle(&v, &v.v1, None);
    let ok = verify_bytes(&bytes, &trust(&v), T0, none).unwrap();
    assert_eq!(ok.release.id, v.v1.id);
    assert_eq!(ok.list, v.v1.list);
    assert_eq!(ok.list_bytes, v.v1.list_bytes);
    assert_eq!(ok.carried as usize, v.v1.list.chunks.len());
    assert_eq!(ok.carried_bytes, 400_000);
    assert_eq!(ok.metadata, v.metadata);
    assert_eq!(ok.trust.versions(), {
        let mut t = trust(&v);
        t.apply_bundle(&v.metadata, T0).unwrap();
        t.versions()
    });
}

#[test]
fn the_verifier_reports_each_chunk_it_checked() {
    let v = vendor(7);
    let bytes = bundle(&v, &v.v1, None);
    let mut ver = Verifier::new(&trust(&v), T0);
    let mut at = 0;
    let mut seen = Vec::new();
    while ver.wants() > 0 {
        let n = ver.wants();
        if let Fed::Chunk { index, hash } = ver.feed(&bytes[at..at + n]).unwrap() {
            assert_eq!(crate::chunk::hash(&bytes[at..at + n]), hash);
            seen.push(index);
        }
        at += n;
    }
    assert_eq!(seen, (0..v.v1.list.chunks.len() as u32).collect::<Vec<_>>());
    ver.finish(false, none).unwrap();
}

#[test]
fn a_flipped_byte_in_a_chunk_names_the_chunk() {
    let v = vendor(7);
    let mut bytes = bundle(&v, &v.v1, None);
    let at = first_chunk_offset(&v, &v.v1) + 10;
    bytes[at] ^= 0x40;
    match verify_bytes(&bytes, &trust(&v), T0, none) {
        Err(VerifyError::Chunk {
            record: 0,
            index: 0,
            source: ChunkError::WrongHash { .. },
        }) => {}
        other => panic!("expected a hash mismatch of chunk 0, got {other:?}"),
    }
}

#[test]
fn altered_targets_metadata_is_refused_before_any_chunk() {
    let v = vendor(7);
    let mut bytes = bundle(&v, &v.v1, None);
    let targets = &v.metadata.targets;
    let pos = bytes
        .windows(targets.len())
        .position(|w| w == &targets[..])
        .unwrap();
    // Inside the signed part: a digit of a version or length.
    let digit = pos + targets.iter().position(|b| b.is_ascii_digit()).unwrap();
    bytes[digit] = if bytes[digit] == b'1' { b'2' } else { b'1' };
    let err = verify_bytes(&bytes, &trust(&v), T0, none).unwrap_err();
    assert!(matches!(err, VerifyError::Metadata(_)), "{err}");
    assert!(err.to_string().contains("targets"), "{err}");
}

#[test]
fn a_foreign_vendors_bundle_is_refused() {
    let ours = vendor(7);
    let theirs = vendor(8);
    let bytes = bundle(&theirs, &theirs.v1, None);
    let err = verify_bytes(&bytes, &trust(&ours), T0, none).unwrap_err();
    assert!(matches!(err, VerifyError::Metadata(_)), "{err}");
}

#[test]
fn expired_metadata_is_refused() {
    let v = vendor(7);
    let bytes = bundle(&v, &v.v1, None);
    let late = T0.plus_secs(400 * 86_400);
    let err = verify_bytes(&bytes, &trust(&v), late, none).unwrap_err();
    assert!(err.to_string().contains("expired"), "{err}");
}

#[test]
fn older_metadata_than_trusted_is_refused_as_rollback() {
    let v = vendor(7);
    let old = bundle(&v, &v.v1, None);
    // The importer already trusts a newer signing of the same repository.
    let mut t = trust(&v);
    t.apply_bundle(&v.newer, T0.plus_secs(10)).unwrap();
    let err = verify_bytes(&old, &t, T0.plus_secs(10), none).unwrap_err();
    assert!(
        matches!(
            &err,
            VerifyError::Metadata(BundleError::Timestamp(
                crate::metadata::TimestampError::Rollback { .. }
            ))
        ),
        "{err}"
    );
    assert!(err.to_string().contains("older than the trusted"), "{err}");
}

#[test]
fn trailing_bytes_are_refused() {
    let v = vendor(7);
    let mut bytes = bundle(&v, &v.v1, None);
    let len = bytes.len() as u64;
    bytes.push(0);
    match verify_bytes(&bytes, &trust(&v), T0, none) {
        Err(VerifyError::TrailingBytes { offset }) => assert_eq!(offset, len),
        other => panic!("expected trailing bytes, got {other:?}"),
    }
}

#[test]
fn a_delta_bundle_is_smaller_and_needs_its_base() {
    let v = vendor(7);
    let full = bundle(&v, &v.v2, None);
    let delta = bundle(&v, &v.v2, Some(&v.v1));
    assert!(
        delta.len() * 2 < full.len(),
        "{} vs {}",
        delta.len(),
        full.len()
    );
    let base: HashSet<ChunkHash> = v.v1.list.chunks.iter().map(|c| c.hash).collect();
    let ok = verify_bytes(&delta, &trust(&v), T0, |h| base.contains(h)).unwrap();
    assert_eq!(ok.header.kind, Kind::Delta { base: v.v1.id });
    let left_out =
        v.v2.list
            .chunks
            .iter()
            .filter(|c| base.contains(&c.hash))
            .map(|c| c.hash)
            .collect::<HashSet<_>>()
            .len() as u64;
    assert!(left_out > 0);
    match verify_bytes(&delta, &trust(&v), T0, none) {
        Err(VerifyError::MissingBase { base, missing }) => {
            assert_eq!(base, v.v1.id);
            assert_eq!(missing, left_out);
        }
        other => panic!("expected missing base chunks, got {other:?}"),
    }
}

#[test]
fn a_full_bundle_missing_a_chunk_is_incomplete() {
    let v = vendor(7);
    let c = &v.v1;
    let chunks: Vec<(u32, &[u8])> = (1..c.chunks.len() as u32)
        .map(|i| (i, c.chunks[i as usize].as_slice()))
        .collect();
    let bytes = encode(&Contents {
        kind: Kind::Full,
        release: c.id,
        metadata: &v.metadata,
        list_bytes: &c.list_bytes,
        chunks: &chunks,
    })
    .unwrap();
    // Even a store holding everything does not excuse a full bundle.
    match verify_bytes(&bytes, &trust(&v), T0, |_| true) {
        Err(VerifyError::Incomplete { missing: 1, .. }) => {}
        other => panic!("expected one missing chunk, got {other:?}"),
    }
}

#[test]
fn records_out_of_order_or_repeated_are_refused() {
    let v = vendor(7);
    let c = &v.v1;
    let swapped: Vec<(u32, &[u8])> = vec![(1, &c.chunks[1]), (0, &c.chunks[0])];
    let twice: Vec<(u32, &[u8])> = vec![(0, &c.chunks[0]), (0, &c.chunks[0])];
    for (chunks, want) in [(swapped, "does not follow"), (twice, "does not follow")] {
        let bytes = encode(&Contents {
            kind: Kind::Full,
            release: c.id,
            metadata: &v.metadata,
            list_bytes: &c.list_bytes,
            chunks: &chunks,
        })
        .unwrap();
        let err = verify_bytes(&bytes, &trust(&v), T0, none).unwrap_err();
        assert!(err.to_string().contains(want), "{err}");
    }
}

#[test]
fn a_release_the_targets_do_not_list_is_refused() {
    let v = vendor(7);
    let mut bytes = bundle(&v, &v.v1, None);
    bytes[16] ^= 1;
    let err = verify_bytes(&bytes, &trust(&v), T0, none).unwrap_err();
    assert!(
        matches!(err, VerifyError::ReleaseNotInTargets { .. }),
        "{err}"
    );
}

#[test]
fn header_faults_are_named() {
    let v = vendor(7);
    let good = bundle(&v, &v.v1, None);
    let cases: [(usize, u8, &str); 5] = [
        (0, b'X', "magic"),
        (8, 9, "version"),
        (9, 7, "kind"),
        (10, 1, "reserved"),
        (15, 0, "roots"),
    ];
    for (at, value, want) in cases {
        let mut bytes = good.clone();
        bytes[at] = value;
        let err = verify_bytes(&bytes, &trust(&v), T0, none).unwrap_err();
        assert!(err.to_string().contains(want), "byte {at}: {err}");
    }
}

#[test]
fn an_oversized_section_length_is_refused_before_reading_it() {
    let v = vendor(7);
    let mut bytes = bundle(&v, &v.v1, None);
    // The first root section's length field.
    bytes[HEADER_LEN + 4..HEADER_LEN + 8].copy_from_slice(&u32::MAX.to_be_bytes());
    let mut ver = Verifier::new(&trust(&v), T0);
    ver.feed(&bytes[..HEADER_LEN]).unwrap();
    let err = ver
        .feed(&bytes[HEADER_LEN..HEADER_LEN + SECTION_HEADER_LEN])
        .unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::SectionLength {
                section: Section::Root(0),
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn health_bundles_round_trip_and_refuse_damage() {
    use crate::health::report::{sign_report, HealthReport, HealthStatus};
    let release = ReleaseId([3; 32]);
    let reports: Vec<_> = (0..3u8)
        .map(|i| {
            let key = SigningKey::from_seed([i + 1; 32]);
            let r = HealthReport::new(key.node_id(), release, 0, HealthStatus::Healthy, 1, T0);
            sign_report(&key, r, None)
        })
        .collect();
    let bytes = health::encode(&release, &reports).unwrap();
    assert_eq!(health::decode(&bytes).unwrap(), (release, reports.clone()));
    for cut in 0..bytes.len() {
        assert!(health::decode(&bytes[..cut]).is_err(), "cut at {cut}");
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(matches!(
        health::decode(&longer),
        Err(health::HealthBundleError::TrailingBytes { extra: 1 })
    ));
    let other = health::encode(&ReleaseId([4; 32]), &reports).unwrap();
    assert!(matches!(
        health::decode(&other),
        Err(health::HealthBundleError::BadReport { report: 0, .. })
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Every prefix of a bundle is refused as truncated, never accepted or panicking.
    #[test]
    fn any_truncation_is_refused(cut in 0.0f64..1.0) {
        let v = vendor(7);
        let bytes = bundle(&v, &v.v2, None);
        let len = ((bytes.len() as f64) * cut) as usize;
        let err = verify_bytes(&bytes[..len], &trust(&v), T0, none).unwrap_err();
        prop_assert!(matches!(err, VerifyError::Truncated { .. }), "{}", err);
    }

    /// Any byte changed after the metadata (chunk list, record headers, chunk bytes) is refused.
    #[test]
    fn any_altered_content_byte_is_refused(at in 0.0f64..1.0, flip in 1u8..=255) {
        let v = vendor(7);
        let mut bytes = bundle(&v, &v.v1, None);
        let start = bytes
            .windows(v.v1.list_bytes.len())
            .position(|w| w == &v.v1.list_bytes[..])
            .unwrap();
        let i = start + (((bytes.len() - start) as f64) * at) as usize;
        bytes[i] ^= flip;
        prop_assert!(verify_bytes(&bytes, &trust(&v), T0, none).is_err());
    }

    /// A full or delta bundle of any subset of chunks, in order, decodes to what was encoded.
    #[test]
    fn round_trip_of_any_record_subset(mask in proptest::collection::vec(any::<bool>(), 16)) {
        let v = vendor(7);
        let c = &v.v1;
        let chunks: Vec<(u32, &[u8])> = (0..c.chunks.len())
            .filter(|i| mask[i % mask.len()])
            .map(|i| (i as u32, c.chunks[i].as_slice()))
            .collect();
        let bytes = encode(&Contents {
            kind: Kind::Delta { base: v.v2.id },
            release: c.id,
            metadata: &v.metadata,
            list_bytes: &c.list_bytes,
            chunks: &chunks,
        })
        .unwrap();
        let ok = verify_bytes(&bytes, &trust(&v), T0, |_| true).unwrap();
        prop_assert_eq!(ok.carried as usize, chunks.len());
        let carried: u64 = chunks.iter().map(|(_, b)| b.len() as u64).sum();
        prop_assert_eq!(ok.carried_bytes, carried);
    }
}

/// A vendor that rotated its root and timestamp keys after the importer's
/// root: the bundle carries both roots and the importer walks the rotation.
#[test]
fn a_bundle_carries_a_root_rotation_the_importer_walks() {
    use crate::metadata::build::RootChanges;
    let old = SigningKey::from_seed([7; 32]);
    let new = SigningKey::from_seed([9; 32]);
    let spec = RootSpec {
        root: RoleSpec::single(old.public()),
        targets: RoleSpec::single(old.public()),
        snapshot: RoleSpec::single(old.public()),
        timestamp: RoleSpec::single(old.public()),
        operator: None,
        expires: T0.plus_secs(365 * 86_400),
    };
    let root = sign_document(new_root(&spec).unwrap(), &[&old]).unwrap();
    let mut repo = Repository::new(&root).unwrap();
    let c = add(&mut repo, "1.0", &artifact(1, 200_000));
    repo.rotate_root(
        &RootChanges {
            root: Some(RoleSpec::single(new.public())),
            timestamp: Some(RoleSpec::single(new.public())),
            ..RootChanges::default()
        },
        &[&old, &new],
    )
    .unwrap();
    let (t, ts) = ([&old], [&new]);
    let metadata = repo
        .sign(
            T0,
            &Expiries::default(),
            &RoleSigners {
                targets: &t,
                snapshot: &t,
                timestamp: &ts,
            },
        )
        .unwrap();
    assert_eq!(metadata.roots.len(), 2);
    let v = Vendor {
        root: root.clone(),
        metadata: metadata.clone(),
        newer: metadata,
        v1: c,
        v2: add(
            &mut Repository::new(&root).unwrap(),
            "9.9",
            &artifact(2, 50_000),
        ),
    };
    let bytes = bundle(&v, &v.v1, None);
    let ok = verify_bytes(&bytes, &trust(&v), T0, none).unwrap();
    assert_eq!(ok.trust.root_version(), 2);
    // Without the rotation's root, the new timestamp key is not trusted.
    let mut only_new = v.metadata.clone();
    only_new.roots.remove(1);
    let chunks: Vec<(u32, &[u8])> = (0..v.v1.chunks.len() as u32)
        .map(|i| (i, v.v1.chunks[i as usize].as_slice()))
        .collect();
    let bytes = encode(&Contents {
        kind: Kind::Full,
        release: v.v1.id,
        metadata: &only_new,
        list_bytes: &v.v1.list_bytes,
        chunks: &chunks,
    })
    .unwrap();
    let err = verify_bytes(&bytes, &trust(&v), T0, none).unwrap_err();
    assert!(matches!(err, VerifyError::Metadata(_)), "{err}");
}
