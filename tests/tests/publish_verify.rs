//! The on-disk release directory written by `waveguard publish` is exactly
//! what the protocol reads: a vendor publishes with the in-process CLI, then
//! this test loads the directory with nothing but the protocol crate
//! (`TrustedState`, chunk lists, chunk verification) and plain file reads.

use serde_bytes::ByteBuf;
use std::fs;
use std::path::{Path, PathBuf};
use waveguard_agent::cli::{self, Outcome};
use waveguard_protocol::chunk::{verify_chunk, ChunkList};
use waveguard_protocol::chunker::chunk_bytes;
use waveguard_protocol::metadata::TrustedState;
use waveguard_protocol::release::Release;
use waveguard_protocol::wire::MetadataBundle;
use waveguard_protocol::Timestamp;

/// When the vendor publishes: 2030-01-01T00:00:00Z.
const NOW: Timestamp = Timestamp::from_secs(1_893_456_000);
/// When the node reads the directory: an hour later.
const LATER: Timestamp = Timestamp::from_secs(1_893_456_000 + 3600);

fn run(args: &[&str]) -> Outcome {
    match cli::run_at(
        std::iter::once("waveguard").chain(args.iter().copied()),
        NOW,
    ) {
        Ok(o) => o,
        Err(e) => panic!("{args:?} failed: {}", cli::error_message(&e)),
    }
}

fn s(p: &Path) -> &str {
    p.to_str().expect("temp paths are UTF-8")
}

/// Deterministic pseudo-random bytes (xorshift64).
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

/// A release directory with two published versions of one product; returns
/// the directory and both artifacts.
struct Published {
    _tmp: tempfile::TempDir,
    repo: PathBuf,
    artifacts: Vec<(String, Vec<u8>)>,
}

fn publish_two_versions() -> Published {
    let tmp = tempfile::tempdir().unwrap();
    let key = |name: &str| {
        let p = tmp.path().join(name);
        run(&["keygen", "--out", s(&p)]);
        p
    };
    let (root, targets, snapshot, timestamp) = (
        key("root.json"),
        key("targets.json"),
        key("snapshot.json"),
        key("timestamp.json"),
    );
    let repo = tmp.path().join("repo");
    run(&[
        "root",
        "init",
        "--out",
        s(&repo),
        "--root-key",
        s(&root),
        "--targets-key",
        s(&targets),
        "--snapshot-key",
        s(&snapshot),
        "--timestamp-key",
        s(&timestamp),
    ]);
    let v1 = noise(2 * 1024 * 1024 + 77, 1);
    let mut v2 = v1.clone();
    v2[1_000_000..1_000_050].fill(0xee);
    let mut artifacts = Vec::new();
    for (version, bytes) in [("7.11.0", v1), ("7.11.1", v2)] {
        let art = tmp.path().join(format!("{version}.bin"));
        fs::write(&art, &bytes).unwrap();
        run(&[
            "publish",
            s(&art),
            "--repo",
            s(&repo),
            "--product",
            "acme-sensor",
            "--version",
            version,
            "--key",
            s(&targets),
            s(&snapshot),
            s(&timestamp),
            "--chunk-avg",
            "64KiB",
            "--waves",
            "canary:5%:1h,all:100%:0s",
        ]);
        artifacts.push((version.to_string(), bytes));
    }
    Published {
        _tmp: tmp,
        repo,
        artifacts,
    }
}

fn read(repo: &Path, rel: &str) -> Vec<u8> {
    fs::read(repo.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Trust as a node bootstrapped with the first root would build it, file by file.
fn trust_from_files(repo: &Path) -> TrustedState {
    let mut state = TrustedState::new(&read(repo, "metadata/1.root.json")).unwrap();
    state
        .update_timestamp(&read(repo, "metadata/timestamp.json"), LATER)
        .unwrap();
    state
        .update_snapshot(&read(repo, "metadata/snapshot.json"), LATER)
        .unwrap();
    state
        .update_targets(&read(repo, "metadata/targets.json"), LATER)
        .unwrap();
    state
}

/// Reads a release's chunk list and chunks from the directory, checks every
/// one with the protocol, and returns the reassembled artifact.
fn reassemble(repo: &Path, release: &Release) -> Vec<u8> {
    let list_bytes = read(repo, &format!("chunklists/{}.wgcl", release.id.to_hex()));
    let list = ChunkList::decode_for(release, &list_bytes).unwrap();
    let mut out = Vec::new();
    for entry in &list.chunks {
        let chunk = read(repo, &format!("chunks/{}", hex::encode(entry.hash)));
        verify_chunk(entry, &chunk).unwrap();
        out.extend_from_slice(&chunk);
    }
    assert_eq!(blake3::hash(&out).as_bytes(), &release.blake3);
    out
}

#[test]
fn the_protocol_reads_what_publish_wrote() {
    let p = publish_two_versions();
    let state = trust_from_files(&p.repo);
    assert_eq!(state.expired(LATER), None);
    let releases = state.releases();
    assert_eq!(releases.len(), 2);
    for (release, (version, bytes)) in releases.iter().zip(&p.artifacts) {
        assert_eq!(release.info.product, "acme-sensor");
        assert_eq!(&release.info.version, version);
        assert_eq!(release.length, bytes.len() as u64);
        assert_eq!(&reassemble(&p.repo, release), bytes);
        // publish cut the artifact with the protocol's chunker and the signed parameters.
        let list = ChunkList::decode(&read(
            &p.repo,
            &format!("chunklists/{}.wgcl", release.id.to_hex()),
        ))
        .unwrap();
        assert_eq!(list, chunk_bytes(bytes, &release.info.chunker).unwrap());
        let names: Vec<&str> = release
            .policy()
            .waves
            .iter()
            .map(|w| w.name.as_str())
            .collect();
        assert_eq!(names, ["canary", "all"]);
        assert_eq!(release.policy().start, NOW);
    }
}

#[test]
fn the_metadata_files_form_a_bundle_a_node_accepts() {
    let p = publish_two_versions();
    let mut state = TrustedState::new(&read(&p.repo, "metadata/1.root.json")).unwrap();
    let bundle = MetadataBundle {
        roots: vec![ByteBuf::from(read(&p.repo, "metadata/root.json"))],
        timestamp: ByteBuf::from(read(&p.repo, "metadata/timestamp.json")),
        snapshot: ByteBuf::from(read(&p.repo, "metadata/snapshot.json")),
        targets: ByteBuf::from(read(&p.repo, "metadata/targets.json")),
    };
    let outcome = state.apply_bundle(&bundle, LATER).unwrap();
    assert!(outcome.changed);
    let mut new: Vec<String> = outcome
        .new_releases
        .iter()
        .map(|r| r.info.version.clone())
        .collect();
    new.sort();
    assert_eq!(new, ["7.11.0", "7.11.1"]);
    // The same state as reading the files one by one, and it survives a restart.
    assert_eq!(state.versions(), trust_from_files(&p.repo).versions());
    let reloaded = TrustedState::from_stored(&state.stored()).unwrap();
    assert_eq!(reloaded.releases(), state.releases());
}

#[test]
fn versions_share_chunk_files() {
    let p = publish_two_versions();
    let state = trust_from_files(&p.repo);
    let lists: Vec<ChunkList> = state
        .releases()
        .iter()
        .map(|r| {
            ChunkList::decode_for(
                r,
                &read(&p.repo, &format!("chunklists/{}.wgcl", r.id.to_hex())),
            )
            .unwrap()
        })
        .collect();
    let unique: std::collections::BTreeSet<_> = lists
        .iter()
        .flat_map(|l| l.chunks.iter().map(|c| c.hash))
        .collect();
    let on_disk = fs::read_dir(p.repo.join("chunks")).unwrap().count();
    assert_eq!(on_disk, unique.len(), "one file per distinct chunk");
    assert!(
        on_disk < lists[0].chunks.len() + 4,
        "a 50-byte edit should add only a few chunks: {on_disk} files for {} + {} chunks",
        lists[0].chunks.len(),
        lists[1].chunks.len()
    );
}
