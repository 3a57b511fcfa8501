//! The agent's store through its public interface: round trips, restarts,
//! damage on disk (truncation, bit flips, missing files, crash leftovers),
//! trusted metadata, chunk lists, and assembling artifacts.

use proptest::prelude::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tempfile::TempDir;
use waveguard_agent::store::{
    AssembleError, CheckDepth, Damage, GetError, OpenError, PutError, PutListError, PutTrustError,
    Store, FORMAT_FILE, MAX_STORED_CHUNK_LISTS, META_DB,
};
use waveguard_protocol::chunk::{self, ChunkHash};
use waveguard_protocol::limits::{MAX_ARTIFACT_BYTES, MAX_BUNDLE_ROOTS, MAX_CHUNK_BYTES};
use waveguard_protocol::metadata::build::{
    new_root, sign_document, Expiries, Repository, RoleSigners, RoleSpec, RootChanges, RootSpec,
};
use waveguard_protocol::metadata::{StoredTrust, TrustedState};
use waveguard_protocol::{ReleaseId, SigningKey, Timestamp};

// ---------------------------------------------------------------------------
// Builders

/// A store in a fresh temporary data directory, which it can reopen.
struct Fixture {
    dir: TempDir,
    store: Option<Store>,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path()).expect("a new store opens");
        Fixture {
            dir,
            store: Some(store),
        }
    }

    fn store(&self) -> &Store {
        self.store.as_ref().expect("store is open")
    }

    fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Closes the store (releasing sled's lock) and opens it again, as a restart does.
    fn reopen(&mut self) -> &Store {
        self.store = None;
        self.store = Some(Store::open(self.dir.path()).expect("the store reopens"));
        self.store()
    }

    /// Stores `bytes` as a chunk and returns its hash.
    fn put(&self, bytes: &[u8]) -> ChunkHash {
        let hash = chunk::hash(bytes);
        self.store().put_chunk(&hash, bytes).expect("chunk stored");
        hash
    }
}

/// Deterministic pseudo-random bytes (xorshift64), distinct per seed.
fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// An artifact cut into chunks of the given sizes.
struct Artifact {
    data: Vec<u8>,
    chunks: Vec<ChunkHash>,
    pieces: Vec<Vec<u8>>,
}

impl Artifact {
    fn new(seed: u64, sizes: &[usize]) -> Self {
        let data = bytes(seed, sizes.iter().sum());
        let mut pieces = Vec::new();
        let mut at = 0;
        for &n in sizes {
            pieces.push(data[at..at + n].to_vec());
            at += n;
        }
        let chunks = pieces.iter().map(|p| chunk::hash(p)).collect();
        Artifact {
            data,
            chunks,
            pieces,
        }
    }

    fn store_in(&self, fx: &Fixture) {
        for p in &self.pieces {
            fx.put(p);
        }
    }

    fn length(&self) -> u64 {
        self.data.len() as u64
    }

    fn blake3(&self) -> [u8; 32] {
        chunk::hash(&self.data)
    }

    fn assemble(&self, store: &Store, release: &ReleaseId) -> Result<PathBuf, AssembleError> {
        store.assemble(
            release,
            "firmware/app-1.0.bin",
            self.length(),
            &self.blake3(),
            &self.chunks,
        )
    }
}

const RELEASE: ReleaseId = ReleaseId([0x42; 32]);
const NOW: Timestamp = Timestamp::from_secs(1_900_000_000);

/// Real trusted metadata: a root chain of `roots` versions plus timestamp,
/// snapshot and targets, as the engine would hand it to `StoreTrust`.
fn signed_trust(roots: usize) -> StoredTrust {
    let key = |seed: u8| SigningKey::from_seed([seed; 32]);
    let (root_key, targets, snapshot, timestamp) = (key(1), key(2), key(3), key(4));
    let spec = RootSpec {
        root: RoleSpec::single(root_key.public()),
        targets: RoleSpec::single(targets.public()),
        snapshot: RoleSpec::single(snapshot.public()),
        timestamp: RoleSpec::single(timestamp.public()),
        operator: None,
        expires: NOW.plus_secs(365 * 24 * 3600),
    };
    let root = sign_document(new_root(&spec).expect("valid spec"), &[&root_key]).expect("signs");
    let mut repo = Repository::new(&root).expect("valid root");
    for _ in 1..roots {
        repo.rotate_root(&RootChanges::default(), &[&root_key])
            .expect("rotates");
    }
    repo.sign(
        NOW,
        &Expiries::default(),
        &RoleSigners {
            targets: &[&targets],
            snapshot: &[&snapshot],
            timestamp: &[&timestamp],
        },
    )
    .expect("signs a bundle");
    repo.stored()
}

/// Flips one bit in the middle of a file.
fn flip_a_bit(path: &Path) {
    let mut b = fs::read(path).expect("file exists");
    let mid = b.len() / 2;
    b[mid] ^= 0x01;
    fs::write(path, b).expect("rewritten");
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

// ---------------------------------------------------------------------------
// Chunks

mod chunks {
    use super::*;

    #[test]
    fn a_chunk_round_trips_and_is_listed() {
        let fx = Fixture::new();
        let data = bytes(1, 10_000);
        let hash = fx.put(&data);
        let store = fx.store();
        assert_eq!(store.get_chunk(&hash, 10_000).unwrap(), Some(data));
        assert_eq!(store.held().unwrap(), vec![hash]);
        assert!(store.has_chunk(&hash).unwrap());
        let hex = hex::encode(hash);
        let expected = fx.data_dir().join("chunks").join(&hex[..2]).join(&hex);
        assert_eq!(store.chunk_path(&hash), expected);
        assert!(expected.is_file());
        assert_eq!(store.stats().chunks_written, 1);
        assert_eq!(store.stats().bytes_written, 10_000);
    }

    #[test]
    fn storing_a_held_chunk_again_writes_nothing() {
        let fx = Fixture::new();
        let data = bytes(2, 100);
        fx.put(&data);
        fx.put(&data);
        assert_eq!(fx.store().stats().chunks_written, 1);
        assert_eq!(fx.store().held().unwrap().len(), 1);
    }

    #[test]
    fn a_chunk_not_held_reads_as_none() {
        let fx = Fixture::new();
        assert_eq!(fx.store().get_chunk(&[9; 32], 10).unwrap(), None);
        assert!(!fx.store().has_chunk(&[9; 32]).unwrap());
    }

    #[test]
    fn bytes_that_do_not_match_their_hash_are_refused() {
        let fx = Fixture::new();
        let data = bytes(3, 100);
        let err = fx.store().put_chunk(&[0; 32], &data).unwrap_err();
        assert!(matches!(err, PutError::HashMismatch { .. }), "{err}");
        assert!(
            err.to_string().contains(&hex::encode(chunk::hash(&data))),
            "{err}"
        );
        assert!(fx.store().held().unwrap().is_empty());
    }

    #[test]
    fn empty_and_oversized_chunks_are_refused() {
        let fx = Fixture::new();
        let err = fx.store().put_chunk(&chunk::hash(&[]), &[]).unwrap_err();
        assert!(matches!(err, PutError::BadLength { len: 0, .. }), "{err}");
        let big = vec![0u8; MAX_CHUNK_BYTES as usize + 1];
        let err = fx.store().put_chunk(&chunk::hash(&big), &big).unwrap_err();
        assert!(matches!(err, PutError::BadLength { .. }), "{err}");
        assert!(fx.store().held().unwrap().is_empty());
    }

    #[test]
    fn asking_for_another_length_reads_nothing_and_keeps_the_chunk() {
        let fx = Fixture::new();
        let hash = fx.put(&bytes(4, 100));
        let err = fx.store().get_chunk(&hash, 99).unwrap_err();
        assert!(
            matches!(
                err,
                GetError::LengthMismatch {
                    recorded: 100,
                    expected: 99,
                    ..
                }
            ),
            "{err}"
        );
        assert!(fx.store().has_chunk(&hash).unwrap());
    }

    #[test]
    fn a_removed_chunk_is_gone_with_its_file() {
        let fx = Fixture::new();
        let hash = fx.put(&bytes(5, 100));
        fx.store().remove_chunk(&hash).unwrap();
        assert!(!fx.store().chunk_path(&hash).exists());
        assert_eq!(fx.store().get_chunk(&hash, 100).unwrap(), None);
        fx.store().remove_chunk(&hash).unwrap();
    }

    #[test]
    fn concurrent_writers_all_land() {
        let fx = Fixture::new();
        let store = Arc::new(Store::open(&fx.data_dir().join("shared")).unwrap());
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let store = Arc::clone(&store);
                std::thread::spawn(move || {
                    for i in 0..10u64 {
                        // Thread pairs write the same chunks, racing on one name.
                        let data = bytes(100 + (t % 2) * 1000 + i, 2000);
                        store.put_chunk(&chunk::hash(&data), &data).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(store.held().unwrap().len(), 20);
        let report = store.check_chunks(CheckDepth::Full).unwrap();
        assert_eq!(report.checked, 20);
        assert!(report.dropped.is_empty(), "{report:?}");
        assert_eq!(report.temps_removed + report.orphans_removed, 0);
    }
}

// ---------------------------------------------------------------------------
// Damage on disk and crash leftovers

mod damage {
    use super::*;

    #[test]
    fn a_truncated_chunk_is_dropped_by_the_length_scan() {
        let mut fx = Fixture::new();
        let keep = fx.put(&bytes(10, 500));
        let hash = fx.put(&bytes(11, 500));
        let path = fx.store().chunk_path(&hash);
        fs::write(&path, &fs::read(&path).unwrap()[..300]).unwrap();

        let store = fx.reopen();
        let report = store.check_chunks(CheckDepth::Lengths).unwrap();
        assert_eq!(report.checked, 2);
        assert_eq!(
            report.dropped,
            vec![(
                hash,
                Damage::Truncated {
                    len: 300,
                    expected: 500
                }
            )]
        );
        assert_eq!(store.held().unwrap(), vec![keep]);
        assert_eq!(store.get_chunk(&hash, 500).unwrap(), None);
        assert!(!path.exists(), "the damaged file is deleted");
        assert_eq!(store.stats().chunks_dropped, 1);
    }

    #[test]
    fn a_truncated_chunk_is_never_returned_by_get() {
        let fx = Fixture::new();
        let hash = fx.put(&bytes(12, 500));
        let path = fx.store().chunk_path(&hash);
        fs::write(&path, &fs::read(&path).unwrap()[..499]).unwrap();
        let err = fx.store().get_chunk(&hash, 500).unwrap_err();
        assert!(
            matches!(
                &err,
                GetError::Damaged {
                    damage: Damage::Truncated { len: 499, .. },
                    ..
                }
            ),
            "{err}"
        );
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
        assert_eq!(fx.store().get_chunk(&hash, 500).unwrap(), None);
    }

    #[test]
    fn a_flipped_bit_is_caught_on_read_and_the_chunk_dropped() {
        let fx = Fixture::new();
        let hash = fx.put(&bytes(13, 4096));
        flip_a_bit(&fx.store().chunk_path(&hash));
        // Same length: the quick scan cannot see it...
        let quick = fx.store().check_chunks(CheckDepth::Lengths).unwrap();
        assert!(quick.dropped.is_empty());
        // ...but reading verifies the hash and never returns the bytes.
        let err = fx.store().get_chunk(&hash, 4096).unwrap_err();
        assert!(
            matches!(
                &err,
                GetError::Damaged {
                    damage: Damage::WrongHash { .. },
                    ..
                }
            ),
            "{err}"
        );
        assert!(fx.store().held().unwrap().is_empty());
        assert!(!fx.store().chunk_path(&hash).exists());
        // It can be stored again once fetched again.
        fx.put(&bytes(13, 4096));
        assert!(fx.store().get_chunk(&hash, 4096).unwrap().is_some());
    }

    #[test]
    fn a_flipped_bit_is_dropped_by_the_full_scan() {
        let mut fx = Fixture::new();
        let hash = fx.put(&bytes(14, 4096));
        flip_a_bit(&fx.store().chunk_path(&hash));
        let store = fx.reopen();
        let report = store.check_chunks(CheckDepth::Full).unwrap();
        assert!(
            matches!(report.dropped.as_slice(), [(h, Damage::WrongHash { .. })] if *h == hash),
            "{report:?}"
        );
        assert!(store.held().unwrap().is_empty());
    }

    #[test]
    fn a_grown_or_missing_chunk_file_is_dropped() {
        let fx = Fixture::new();
        let grown = fx.put(&bytes(15, 100));
        let gone = fx.put(&bytes(16, 100));
        let mut longer = bytes(15, 100);
        longer.push(0);
        fs::write(fx.store().chunk_path(&grown), longer).unwrap();
        fs::remove_file(fx.store().chunk_path(&gone)).unwrap();
        let report = fx.store().check_chunks(CheckDepth::Lengths).unwrap();
        let mut dropped = report.dropped;
        dropped.sort_by_key(|(h, _)| *h);
        let mut expected = vec![
            (grown, Damage::TooLong { expected: 100 }),
            (gone, Damage::Missing),
        ];
        expected.sort_by_key(|(h, _)| *h);
        assert_eq!(dropped, expected);
        assert!(fx.store().held().unwrap().is_empty());
    }

    #[test]
    fn get_never_reads_past_the_expected_length() {
        let fx = Fixture::new();
        let hash = fx.put(&bytes(17, 100));
        // A huge file under the chunk's name: only 101 bytes are read before refusing.
        let f = fs::File::create(fx.store().chunk_path(&hash)).unwrap();
        f.set_len(1 << 30).unwrap();
        let err = fx.store().get_chunk(&hash, 100).unwrap_err();
        assert!(
            matches!(
                &err,
                GetError::Damaged {
                    damage: Damage::TooLong { expected: 100 },
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn temp_files_left_by_a_crash_are_removed() {
        let mut fx = Fixture::new();
        let hash = fx.put(&bytes(18, 100));
        let fan_out = fx.store().chunk_path(&hash).parent().unwrap().to_owned();
        fs::write(fan_out.join(".tmp-deadbeef.1.0"), b"half a chunk").unwrap();
        let staged = fx.data_dir().join("staging").join(RELEASE.to_hex());
        fs::create_dir_all(&staged).unwrap();
        fs::write(staged.join("app.bin.partial"), b"half an artifact").unwrap();
        let top_temp = fx.data_dir().join(".tmp-store.format.1.0");
        fs::write(&top_temp, b"waveg").unwrap();

        let store = fx.reopen();
        let report = store.check_chunks(CheckDepth::Lengths).unwrap();
        assert_eq!(report.temps_removed, 3, "{report:?}");
        assert_eq!(entries(&fan_out), vec![hex::encode(hash)]);
        assert!(entries(&staged).is_empty());
        assert!(!top_temp.exists());
        assert_eq!(store.held().unwrap(), vec![hash]);
    }

    #[test]
    fn a_chunk_written_but_never_recorded_is_not_present() {
        // A crash after the rename but before the record: the file is there, the record is not.
        let mut fx = Fixture::new();
        let data = bytes(19, 300);
        let hash = chunk::hash(&data);
        let path = fx.store().chunk_path(&hash);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, &data).unwrap();
        let stray = fx.data_dir().join("chunks").join("README");
        fs::write(&stray, b"not ours to delete").unwrap();

        let store = fx.reopen();
        assert_eq!(store.get_chunk(&hash, 300).unwrap(), None);
        assert!(store.held().unwrap().is_empty());
        let report = store.check_chunks(CheckDepth::Full).unwrap();
        assert_eq!(report.orphans_removed, 1);
        assert!(!path.exists());
        assert!(
            stray.exists(),
            "files the store does not recognise are left alone"
        );
        assert!(store.held().unwrap().is_empty());
    }
}

// ---------------------------------------------------------------------------
// Restarts, trusted metadata and chunk lists

mod persistence {
    use super::*;

    #[test]
    fn reopening_keeps_chunks_lists_and_trust() {
        let mut fx = Fixture::new();
        let a = fx.put(&bytes(20, 1000));
        let b = fx.put(&bytes(21, 2000));
        fx.store().put_chunk_list(&RELEASE, b"list bytes").unwrap();
        let trust = signed_trust(2);
        fx.store().put_trust(&trust).unwrap();

        let store = fx.reopen();
        let report = store.check_chunks(CheckDepth::Full).unwrap();
        assert!(
            report.dropped.is_empty() && report.orphans_removed == 0,
            "{report:?}"
        );
        let mut held = store.held().unwrap();
        held.sort();
        let mut expected = vec![a, b];
        expected.sort();
        assert_eq!(held, expected);
        assert_eq!(store.get_chunk(&b, 2000).unwrap(), Some(bytes(21, 2000)));
        assert_eq!(
            store.chunk_lists().unwrap(),
            vec![(RELEASE, b"list bytes".to_vec())]
        );
        assert_eq!(store.trust().unwrap(), Some(trust));
        assert_eq!(
            store.stats(),
            Default::default(),
            "counters start again at open"
        );
    }

    #[test]
    fn stored_trust_reloads_into_the_engine_after_a_restart() {
        let mut fx = Fixture::new();
        assert_eq!(fx.store().trust().unwrap(), None);
        let trust = signed_trust(3);
        fx.store().put_trust(&trust).unwrap();
        let reloaded = fx.reopen().trust().unwrap().expect("trust was stored");
        assert_eq!(reloaded, trust);
        assert_eq!(reloaded.roots.len(), 3);
        let state = TrustedState::from_stored(&reloaded).expect("the engine accepts it");
        assert_eq!(state.stored(), trust);
    }

    #[test]
    fn a_new_trust_set_replaces_the_old_one_whole() {
        let mut fx = Fixture::new();
        fx.store().put_trust(&signed_trust(3)).unwrap();
        // A shorter chain and no targets: nothing of the old set may linger.
        let mut newer = signed_trust(1);
        newer.targets = None;
        newer.snapshot = None;
        fx.store().put_trust(&newer).unwrap();
        assert_eq!(fx.reopen().trust().unwrap(), Some(newer));
    }

    #[test]
    fn a_refused_trust_set_leaves_the_stored_one_unchanged() {
        let fx = Fixture::new();
        let good = signed_trust(1);
        fx.store().put_trust(&good).unwrap();

        let err = fx.store().put_trust(&StoredTrust::default()).unwrap_err();
        assert!(matches!(err, PutTrustError::NoRoots), "{err}");
        let mut many = good.clone();
        many.roots = vec![good.roots[0].clone(); MAX_BUNDLE_ROOTS + 1];
        let err = fx.store().put_trust(&many).unwrap_err();
        assert!(matches!(err, PutTrustError::TooManyRoots { .. }), "{err}");
        let mut huge = good.clone();
        huge.timestamp = Some(vec![b' '; 1024 * 1024 + 1]);
        let err = fx.store().put_trust(&huge).unwrap_err();
        assert!(
            matches!(&err, PutTrustError::TooLarge { doc, .. } if doc == "timestamp"),
            "{err}"
        );
        assert_eq!(fx.store().trust().unwrap(), Some(good));
    }

    #[test]
    fn chunk_lists_are_replaced_removed_and_bounded() {
        let mut fx = Fixture::new();
        let other = ReleaseId([7; 32]);
        fx.store().put_chunk_list(&RELEASE, b"v1").unwrap();
        fx.store().put_chunk_list(&RELEASE, b"v2").unwrap();
        fx.store().put_chunk_list(&other, b"o").unwrap();
        assert_eq!(
            fx.store().chunk_lists().unwrap(),
            vec![(other, b"o".to_vec()), (RELEASE, b"v2".to_vec())]
        );
        fx.store().remove_chunk_list(&other).unwrap();
        assert_eq!(fx.reopen().chunk_lists().unwrap().len(), 1);

        for i in 1..MAX_STORED_CHUNK_LISTS {
            let mut id = [0u8; 32];
            id[..8].copy_from_slice(&(i as u64).to_be_bytes());
            fx.store().put_chunk_list(&ReleaseId(id), b"l").unwrap();
        }
        let err = fx.store().put_chunk_list(&other, b"o").unwrap_err();
        assert!(matches!(err, PutListError::Full { .. }), "{err}");
        // Replacing a list already stored is still allowed when full.
        fx.store().put_chunk_list(&RELEASE, b"v3").unwrap();
        let err = fx
            .store()
            .put_chunk_list(&other, &vec![0; 5 * 1024 * 1024])
            .unwrap_err();
        assert!(matches!(err, PutListError::TooLarge { .. }), "{err}");
    }
}

// ---------------------------------------------------------------------------
// Opening: what the store refuses

mod open {
    use super::*;

    #[test]
    fn a_file_in_place_of_the_data_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("data");
        fs::write(&file, b"").unwrap();
        let err = Store::open(&file).unwrap_err();
        assert!(matches!(err, OpenError::NotADirectory { .. }), "{err}");
    }

    #[test]
    fn a_second_open_of_the_same_directory_is_refused() {
        let fx = Fixture::new();
        let err = Store::open(fx.data_dir()).unwrap_err();
        assert!(matches!(err, OpenError::InUse { .. }), "{err}");
        assert!(err.to_string().contains("another waveguard agent"), "{err}");
    }

    #[test]
    fn a_lost_database_is_refused_with_a_recovery_hint() {
        let mut fx = Fixture::new();
        fx.put(&bytes(30, 100));
        fx.store = None;
        fs::remove_dir_all(fx.data_dir().join(META_DB)).unwrap();
        let err = Store::open(fx.data_dir()).unwrap_err();
        assert!(matches!(err, OpenError::MetadataMissing { .. }), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains("restore") && msg.contains("start afresh"),
            "{msg}"
        );
    }

    #[test]
    fn a_lost_database_is_refused_even_without_chunks() {
        // Trust alone is worth protecting: losing it silently undoes rollback protection.
        let mut fx = Fixture::new();
        fx.store().put_trust(&signed_trust(1)).unwrap();
        fx.store = None;
        fs::remove_dir_all(fx.data_dir().join(META_DB)).unwrap();
        let err = Store::open(fx.data_dir()).unwrap_err();
        assert!(
            matches!(&err, OpenError::MetadataMissing { evidence, .. } if evidence.ends_with(FORMAT_FILE)),
            "{err}"
        );
    }

    #[test]
    fn a_damaged_database_log_is_refused_not_reset() {
        let mut fx = Fixture::new();
        fx.store().put_trust(&signed_trust(1)).unwrap();
        fx.store = None;
        // Garble sled's log: sled itself would open it as an empty database.
        let log = fx.data_dir().join(META_DB).join("db");
        let garbled: Vec<u8> = fs::read(&log).unwrap().iter().map(|b| b ^ 0x5a).collect();
        fs::write(&log, garbled).unwrap();
        let err = Store::open(fx.data_dir()).unwrap_err();
        assert!(matches!(err, OpenError::Corrupt { .. }), "{err}");
        assert!(
            err.to_string().contains("move the data directory aside"),
            "{err}"
        );
    }

    #[test]
    fn a_store_of_another_format_is_refused() {
        let mut fx = Fixture::new();
        fx.store = None;
        fs::write(fx.data_dir().join(FORMAT_FILE), "waveguard-store 2\n").unwrap();
        let err = Store::open(fx.data_dir()).unwrap_err();
        assert!(
            matches!(&err, OpenError::UnknownFormat { found, .. } if found == "waveguard-store 2"),
            "{err}"
        );
    }

    #[test]
    fn opening_creates_the_layout() {
        let fx = Fixture::new();
        assert_eq!(
            entries(fx.data_dir()),
            vec!["chunks", "meta.sled", "staging", FORMAT_FILE]
        );
    }
}

// ---------------------------------------------------------------------------
// Assembling artifacts

mod assemble {
    use super::*;

    #[test]
    fn an_artifact_is_assembled_verified_and_named_safely() {
        let fx = Fixture::new();
        let art = Artifact::new(40, &[1000, 1, 5000, 1000]);
        art.store_in(&fx);
        let path = art.assemble(fx.store(), &RELEASE).unwrap();
        let dir = fx.data_dir().join("staging").join(RELEASE.to_hex());
        assert_eq!(path, dir.join("app-1.0.bin"));
        assert_eq!(
            path,
            fx.store().staged_path(&RELEASE, "firmware/app-1.0.bin")
        );
        assert_eq!(fs::read(&path).unwrap(), art.data);
        assert_eq!(
            entries(&dir),
            vec!["app-1.0.bin"],
            "no partial file is left"
        );
        assert_eq!(fx.store().stats().artifacts_staged, 1);
    }

    #[test]
    fn a_hostile_target_path_stays_inside_the_staging_directory() {
        let fx = Fixture::new();
        let art = Artifact::new(41, &[100]);
        art.store_in(&fx);
        let path = fx
            .store()
            .assemble(
                &RELEASE,
                "../../../etc/passwd",
                art.length(),
                &art.blake3(),
                &art.chunks,
            )
            .unwrap();
        assert_eq!(
            path,
            fx.data_dir()
                .join("staging")
                .join(RELEASE.to_hex())
                .join("passwd")
        );
    }

    #[test]
    fn a_missing_chunk_is_named_and_nothing_is_written() {
        let fx = Fixture::new();
        let art = Artifact::new(42, &[100, 200, 300]);
        fx.put(&art.pieces[0]);
        fx.put(&art.pieces[2]);
        let err = art.assemble(fx.store(), &RELEASE).unwrap_err();
        assert!(
            matches!(&err, AssembleError::MissingChunk { index: 1, hash, .. } if *hash == art.chunks[1]),
            "{err}"
        );
        assert!(err.is_store_damage());
        assert!(entries(&fx.data_dir().join("staging")).is_empty());
    }

    #[test]
    fn chunks_that_do_not_add_up_to_the_signed_length_are_refused() {
        let fx = Fixture::new();
        let art = Artifact::new(43, &[100, 200]);
        art.store_in(&fx);
        let err = fx
            .store()
            .assemble(
                &RELEASE,
                "a.bin",
                art.length() + 1,
                &art.blake3(),
                &art.chunks,
            )
            .unwrap_err();
        assert!(
            matches!(
                err,
                AssembleError::WrongLength {
                    got: 300,
                    expected: 301,
                    ..
                }
            ),
            "{err}"
        );
        assert!(!err.is_store_damage());
    }

    #[test]
    fn an_artifact_with_another_hash_is_refused_and_removed() {
        let fx = Fixture::new();
        let art = Artifact::new(44, &[100, 200]);
        art.store_in(&fx);
        let err = fx
            .store()
            .assemble(&RELEASE, "a.bin", art.length(), &[0; 32], &art.chunks)
            .unwrap_err();
        assert!(matches!(err, AssembleError::WrongHash { .. }), "{err}");
        assert!(
            err.to_string().contains(&hex::encode(art.blake3())),
            "{err}"
        );
        let dir = fx.data_dir().join("staging").join(RELEASE.to_hex());
        assert!(entries(&dir).is_empty(), "{:?}", entries(&dir));
    }

    #[test]
    fn a_damaged_chunk_is_named_dropped_and_the_old_artifact_kept() {
        let fx = Fixture::new();
        let art = Artifact::new(45, &[100, 4096, 100]);
        art.store_in(&fx);
        let good = art.assemble(fx.store(), &RELEASE).unwrap();
        flip_a_bit(&fx.store().chunk_path(&art.chunks[1]));
        let err = art.assemble(fx.store(), &RELEASE).unwrap_err();
        assert!(
            matches!(
                &err,
                AssembleError::DamagedChunk {
                    index: 1,
                    damage: Damage::WrongHash { .. },
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.is_store_damage());
        assert!(!fx.store().has_chunk(&art.chunks[1]).unwrap());
        assert_eq!(
            fs::read(&good).unwrap(),
            art.data,
            "the verified artifact stays"
        );
        assert_eq!(entries(good.parent().unwrap()), vec!["app-1.0.bin"]);
    }

    #[test]
    fn oversized_requests_are_refused_before_any_work() {
        let fx = Fixture::new();
        let err = fx
            .store()
            .assemble(&RELEASE, "a", MAX_ARTIFACT_BYTES + 1, &[0; 32], &[])
            .unwrap_err();
        assert!(matches!(err, AssembleError::TooLarge { .. }), "{err}");
        let many = vec![[0u8; 32]; (1 << 17) + 1];
        let err = fx
            .store()
            .assemble(&RELEASE, "a", 0, &[0; 32], &many)
            .unwrap_err();
        assert!(matches!(err, AssembleError::TooManyChunks { .. }), "{err}");
    }

    #[test]
    fn a_staged_artifact_can_be_discarded() {
        let fx = Fixture::new();
        let art = Artifact::new(46, &[10]);
        art.store_in(&fx);
        let path = art.assemble(fx.store(), &RELEASE).unwrap();
        fx.store().discard_staged(&RELEASE).unwrap();
        assert!(!path.exists() && !path.parent().unwrap().exists());
        fx.store().discard_staged(&RELEASE).unwrap();
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(16))]
        #[test]
        fn any_split_reassembles_to_the_original(
            seed in any::<u64>(),
            sizes in proptest::collection::vec(1usize..3000, 1..8),
        ) {
            let fx = Fixture::new();
            let art = Artifact::new(seed, &sizes);
            art.store_in(&fx);
            let path = art.assemble(fx.store(), &RELEASE).unwrap();
            prop_assert_eq!(fs::read(path).unwrap(), art.data);
        }
    }
}

// ---------------------------------------------------------------------------
// Forgetting a retired release

/// The encoded chunk list of `art`.
fn list_of(art: &Artifact) -> Vec<u8> {
    chunk::ChunkList {
        chunks: art
            .pieces
            .iter()
            .map(|p| chunk::ChunkEntry {
                length: p.len() as u32,
                hash: chunk::hash(p),
            })
            .collect(),
    }
    .encode()
}

/// `old` and `new` share their first chunk; `old` is stored, listed, staged and
/// has a rollout record; `new` is listed and stored.
fn two_releases(fx: &Fixture) -> (Artifact, Artifact) {
    let old = Artifact::new(1, &[40_000, 50_000, 60_000]);
    let mut new = Artifact::new(2, &[70_000, 80_000]);
    new.pieces[0] = old.pieces[0].clone();
    new.chunks[0] = old.chunks[0];
    old.store_in(fx);
    new.store_in(fx);
    let store = fx.store();
    store.put_chunk_list(&RELEASE, &list_of(&old)).unwrap();
    store.put_chunk_list(&OTHER, &list_of(&new)).unwrap();
    store.put_rollout(&RELEASE, b"record").unwrap();
    let staged = old.assemble(store, &RELEASE).unwrap();
    assert!(staged.exists());
    (old, new)
}

const OTHER: ReleaseId = ReleaseId([0x43; 32]);

#[test]
fn forgetting_a_release_removes_its_own_chunks_list_record_and_staging_only() {
    let mut fx = Fixture::new();
    let (old, new) = two_releases(&fx);
    let done = fx.store().forget_release(&RELEASE).unwrap();
    assert_eq!((done.chunks, done.bytes, done.shared), (2, 110_000, 1));
    let store = fx.reopen();
    let held = store.held().unwrap();
    assert!(!held.contains(&old.chunks[1]) && !held.contains(&old.chunks[2]));
    assert!(
        new.chunks.iter().all(|c| held.contains(c)),
        "shared and other chunks stay"
    );
    for c in &old.chunks[1..] {
        assert!(
            !store.chunk_path(c).exists(),
            "file of a forgotten chunk remains"
        );
    }
    let lists: Vec<ReleaseId> = store
        .chunk_lists()
        .unwrap()
        .into_iter()
        .map(|l| l.0)
        .collect();
    assert_eq!(lists, vec![OTHER]);
    assert!(store.rollouts().unwrap().is_empty());
    assert!(!fx
        .data_dir()
        .join("staging")
        .join(RELEASE.to_hex())
        .exists());
    assert!(
        old.assemble(fx.store(), &OTHER).is_err(),
        "its chunks are gone"
    );
    let report = fx.store().check_chunks(CheckDepth::Full).unwrap();
    assert!(report.dropped.is_empty(), "{report:?}");
}

#[test]
fn a_forget_cut_short_is_finished_by_doing_it_again() {
    let fx = Fixture::new();
    let (old, _) = two_releases(&fx);
    // A crash after the first chunk went: the list, removed last, is still there.
    fx.store().remove_chunk(&old.chunks[1]).unwrap();
    let done = fx.store().forget_release(&RELEASE).unwrap();
    assert_eq!((done.chunks, done.shared), (1, 1));
    assert_eq!(fx.store().chunk_lists().unwrap().len(), 1);
    // And once more: nothing left to do.
    assert_eq!(fx.store().forget_release(&RELEASE).unwrap().chunks, 0);
}

#[test]
fn with_another_list_unreadable_no_chunk_is_forgotten() {
    let fx = Fixture::new();
    let (old, _) = two_releases(&fx);
    let third = ReleaseId([0x44; 32]);
    fx.store()
        .put_chunk_list(&third, b"not a chunk list")
        .unwrap();
    let done = fx.store().forget_release(&RELEASE).unwrap();
    assert_eq!((done.chunks, done.shared), (0, 3));
    let held = fx.store().held().unwrap();
    assert!(old.chunks.iter().all(|c| held.contains(c)));
    assert!(fx.store().rollouts().unwrap().is_empty());
}
