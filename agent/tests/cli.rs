//! End-to-end tests of the `waveguard` command-line tool, run in-process:
//! keygen → root init → publish → verify, then one test per way a release
//! directory can be damaged or forged, each checking that `verify` names the
//! failure and changes nothing.

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use support::{arg, error_of, fingerprint, noise, run_at, Vendor, LATER, NOW};
use waveguard_agent::cli::{keygen::KeygenReport, Outcome};
use waveguard_agent::keyfile;
use waveguard_protocol::chunk::ChunkList;
use waveguard_protocol::metadata::{
    read_metadata, rotate_root, sign_document, RoleSpec, Root, RootChanges,
};
use waveguard_protocol::wave::{self, WavePin};
use waveguard_protocol::{NodeId, SigningKey, Timestamp};

/// About 5 MiB: with 64 KiB average chunks, some 80 chunks.
const ARTIFACT_LEN: usize = 5 * 1024 * 1024 + 12_345;

/// A vendor that has published one 5 MiB release; returns the vendor and the chunk list.
fn published() -> (Vendor, ChunkList) {
    let v = Vendor::new();
    let art = v.artifact("v1.bin", &noise(ARTIFACT_LEN, 1));
    let report = v.publish(&art, "7.11.0");
    let list = ChunkList::decode(
        &fs::read(
            v.repo()
                .join("chunklists")
                .join(format!("{}.wgcl", report.release)),
        )
        .unwrap(),
    )
    .unwrap();
    (v, list)
}

fn chunk_file(v: &Vendor, list: &ChunkList, index: usize) -> PathBuf {
    v.path("chunks").join(hex::encode(list.chunks[index].hash))
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

mod keygen {
    use super::*;

    fn keygen(dir: &Path, name: &str) -> (PathBuf, KeygenReport) {
        let path = dir.join(name);
        let Outcome::Keygen(report) = run_at(NOW, &["keygen", "--out", arg(&path)]).unwrap() else {
            panic!("keygen gave another outcome");
        };
        (path, report)
    }

    #[test]
    fn peer_id_matches_libp2p() {
        let dir = tempfile::tempdir().unwrap();
        let (path, report) = keygen(dir.path(), "node.json");
        let seed = keyfile::read_secret(&path).unwrap().to_seed();
        let kp = libp2p_identity::Keypair::ed25519_from_bytes(seed).unwrap();
        assert_eq!(report.peer_id, kp.public().to_peer_id().to_string());
        assert!(report.to_string().contains(&report.peer_id));
        // The node ID printed is the public key libp2p derives from the seed.
        let libp2p_public = kp.public().try_into_ed25519().unwrap().to_bytes();
        assert_eq!(report.node_id.0, libp2p_public);
        assert_eq!(report.key_id, SigningKey::from_seed(seed).key_id());
    }

    #[test]
    fn keys_differ_files_are_private_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let (_, a) = keygen(dir.path(), "a.json");
        let (path, b) = keygen(dir.path(), "b.json");
        assert_ne!(a.node_id, b.node_id);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let before = fs::read(&path).unwrap();
        let err = error_of(NOW, &["keygen", "--out", arg(&path)]);
        assert!(err.contains("already exists"), "{err}");
        assert_eq!(fs::read(&path).unwrap(), before);
    }
}

mod publish_and_verify {
    use super::*;

    #[test]
    fn a_published_release_verifies() {
        let (v, list) = published();
        assert!(list.chunks.len() > 40, "{} chunks", list.chunks.len());
        let report = v.verify(LATER, &[]).unwrap();
        assert_eq!(report.releases.len(), 1);
        let r = &report.releases[0];
        assert_eq!(
            (r.product.as_str(), r.version.as_str()),
            ("acme-sensor", "7.11.0")
        );
        assert_eq!(r.chunks, list.chunks.len());
        assert_eq!(r.bytes, ARTIFACT_LEN as u64);
        assert_eq!(report.versions, (1, 1, 1));
        // Without --root, trust on first use is announced.
        assert!(
            report.warnings.iter().any(|w| w.contains("first use")),
            "{:?}",
            report.warnings
        );
        let root = v.path("metadata/1.root.json");
        let report = v.verify(LATER, &["--root", arg(&root)]).unwrap();
        assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    }

    #[test]
    fn publish_reports_and_leaves_no_temporary_files() {
        let v = Vendor::new();
        let art = v.artifact("v1.bin", &noise(300_000, 3));
        let r = v.publish(&art, "1.0.0");
        assert_eq!(r.bytes, 300_000);
        assert_eq!(r.chunks, r.chunks_written);
        assert_eq!(files_in(&v.path("chunks")).len(), r.chunks as usize);
        assert_eq!(r.policy.waves.len(), 4);
        assert_eq!(r.policy.start, NOW);
        assert_eq!(r.policy.health.max_failure_ppm, 50_000);
        assert_eq!(r.policy.health.silence_seconds, 600);
        for dir in ["chunks", "chunklists", "metadata"] {
            assert!(
                files_in(&v.path(dir)).iter().all(|n| !n.starts_with('.')),
                "{dir}"
            );
        }
        let text = r.to_string();
        assert!(
            text.contains(&r.release.to_hex()) && text.contains("canary"),
            "{text}"
        );
    }

    #[test]
    fn policy_flags_are_signed_as_given() {
        let v = Vendor::new();
        let art = v.artifact("a.bin", &noise(100_000, 4));
        let args = v.publish_args(
            &art,
            "2.0.0",
            &[
                "--waves",
                "pilot:0.5%:30m,rest:100%:0s",
                "--start",
                "2030-02-01T00:00:00Z",
                "--max-failure",
                "2.5%",
                "--min-reports",
                "7",
                "--silence",
                "15m",
                "--heartbeat",
                "30s",
            ],
        );
        let Outcome::Publish(r) = run_at(NOW, &args).unwrap() else {
            panic!("not a publish report");
        };
        let p = &r.policy;
        assert_eq!(
            p.start,
            Timestamp::parse_rfc3339("2030-02-01T00:00:00Z").unwrap()
        );
        assert_eq!(
            p.waves
                .iter()
                .map(|w| (w.name.as_str(), w.cumulative_ppm, w.bake_seconds))
                .collect::<Vec<_>>(),
            [("pilot", 5_000, 1800), ("rest", 1_000_000, 0)]
        );
        assert_eq!(
            (
                p.health.max_failure_ppm,
                p.health.min_reports,
                p.health.silence_seconds,
                p.health.heartbeat_seconds
            ),
            (25_000, 7, 900, 30)
        );
        v.verify(LATER, &[]).unwrap();
    }

    #[test]
    fn a_bad_policy_is_refused_before_any_chunk_is_written() {
        let v = Vendor::new();
        let art = v.artifact("a.bin", &noise(100_000, 5));
        let args = v.publish_args(&art, "1.0.0", &["--waves", "canary:1%:1h,most:90%:1h"]);
        let err = error_of(NOW, &args);
        assert!(err.contains("last wave must reach"), "{err}");
        assert!(!v.path("chunks").exists() || files_in(&v.path("chunks")).is_empty());
        let args = v.publish_args(&art, "1.0.0", &["--silence", "1m", "--heartbeat", "1m"]);
        let err = error_of(NOW, &args);
        assert!(err.contains("silence_seconds"), "{err}");
    }

    #[test]
    fn publishing_needs_the_role_keys_and_never_changes_a_version() {
        let v = Vendor::new();
        let art = v.artifact("a.bin", &noise(100_000, 6));
        let repo = v.repo();
        let err = error_of(
            NOW,
            &[
                "publish",
                arg(&art),
                "--repo",
                arg(&repo),
                "--product",
                "p",
                "--version",
                "1",
                "--key",
                arg(&v.targets_key),
                arg(&v.snapshot_key),
            ],
        );
        assert!(
            err.contains("timestamp role of root v1 needs 1 signature"),
            "{err}"
        );
        v.publish(&art, "1.0.0");
        let other = v.artifact("b.bin", &noise(100_000, 7));
        let err = error_of(NOW, &v.publish_args(&other, "1.0.0", &[]));
        assert!(err.contains("already published"), "{err}");
    }

    #[test]
    fn a_second_version_shares_most_chunks() {
        let v = Vendor::new();
        let mut data = noise(ARTIFACT_LEN, 8);
        let first = v.publish(&v.artifact("v1.bin", &data), "1.0.0");
        let before = files_in(&v.path("chunks")).len();
        assert_eq!(before, first.chunks as usize);
        let mid = data.len() / 2;
        for b in &mut data[mid..mid + 100] {
            *b ^= 0x5a;
        }
        let second = v.publish(&v.artifact("v2.bin", &data), "1.0.1");
        let after = files_in(&v.path("chunks")).len();
        let added = after - before;
        assert_eq!(added, second.chunks_written as usize);
        assert!(
            (1..=4).contains(&added),
            "a 100-byte edit added {added} of {} chunks",
            second.chunks
        );
        assert_eq!(second.versions, (2, 2, 2));
        let report = v.verify(LATER, &[]).unwrap();
        assert_eq!(report.releases.len(), 2);
        let one = v
            .verify(LATER, &["--release", "acme-sensor/1.0.1"])
            .unwrap();
        assert_eq!(one.releases.len(), 1);
        assert_eq!(one.releases[0].id, second.release);
    }
}

mod verify_detects {
    use super::*;

    #[test]
    fn a_flipped_byte_in_a_chunk() {
        let (v, list) = published();
        let path = chunk_file(&v, &list, 17);
        let mut bytes = fs::read(&path).unwrap();
        bytes[100] ^= 1;
        fs::write(&path, &bytes).unwrap();
        let err = v.verify_fails(LATER, &[]);
        let hash = hex::encode(list.chunks[17].hash);
        let got = hex::encode(blake3::hash(&bytes).as_bytes());
        assert!(err.starts_with("verify: chunk 17 ("), "{err}");
        assert!(
            err.contains(&format!(
                "of acme-sensor 7.11.0 hashes to {got}, expected {hash}"
            )),
            "{err}"
        );
        assert!(err.contains(arg(&path)), "{err}");
    }

    #[test]
    fn a_truncated_chunk() {
        let (v, list) = published();
        let path = chunk_file(&v, &list, 3);
        let bytes = fs::read(&path).unwrap();
        fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
        let err = v.verify_fails(LATER, &[]);
        let expected = format!(
            "is {} bytes, expected {}: {}",
            bytes.len() - 1,
            bytes.len(),
            arg(&path)
        );
        assert!(err.starts_with("verify: chunk 3 ("), "{err}");
        assert!(err.contains(&expected), "{err}");
    }

    #[test]
    fn a_chunk_with_bytes_appended() {
        let (v, list) = published();
        let path = chunk_file(&v, &list, 4);
        let mut bytes = fs::read(&path).unwrap();
        bytes.extend_from_slice(&[0u8; 4096]);
        fs::write(&path, &bytes).unwrap();
        let err = v.verify_fails(LATER, &[]);
        assert!(
            err.contains(&format!(
                "is longer than the expected {} bytes",
                list.chunks[4].length
            )),
            "{err}"
        );
    }

    #[test]
    fn a_deleted_chunk() {
        let (v, list) = published();
        let path = chunk_file(&v, &list, 0);
        fs::remove_file(&path).unwrap();
        let err = v.verify_fails(LATER, &[]);
        assert!(err.starts_with("verify: chunk 0 ("), "{err}");
        assert!(
            err.contains(&format!("is missing: {}", arg(&path))),
            "{err}"
        );
    }

    #[test]
    fn every_damaged_chunk_is_named() {
        let (v, list) = published();
        fs::remove_file(chunk_file(&v, &list, 1)).unwrap();
        fs::write(chunk_file(&v, &list, 9), b"short").unwrap();
        let err = v.verify_fails(LATER, &[]);
        assert!(
            err.contains(&format!(
                "2 of {} chunks of acme-sensor 7.11.0 failed",
                list.chunks.len()
            )),
            "{err}"
        );
        assert!(
            err.contains("chunk 1 (") && err.contains("chunk 9 ("),
            "{err}"
        );
    }

    #[test]
    fn a_damaged_chunk_list() {
        let (v, _) = published();
        let dir = v.path("chunklists");
        let path = dir.join(&files_in(&dir)[0]);
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        fs::write(&path, &bytes).unwrap();
        let err = v.verify_fails(LATER, &[]);
        assert!(
            err.contains("the chunk list of acme-sensor 7.11.0"),
            "{err}"
        );
        assert!(err.contains("does not match the signed hash"), "{err}");
    }

    #[test]
    fn tampered_targets_metadata() {
        let (v, _) = published();
        let path = v.path("metadata/targets.json");
        let mut doc: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        doc["signed"]["expires"] = "2099-01-01T00:00:00Z".into();
        fs::write(&path, serde_json::to_vec(&doc).unwrap()).unwrap();
        let err = v.verify_fails(LATER, &[]);
        assert!(
            err.contains(&format!("targets metadata ({}) was refused", arg(&path))),
            "{err}"
        );
        assert!(err.contains("no valid signature"), "{err}");
    }

    #[test]
    fn an_expired_timestamp() {
        let (v, _) = published();
        // The timestamp lives 7 days by default; the snapshot 30.
        let later = NOW.plus_secs(8 * 86_400).to_rfc3339();
        let err = v.verify_fails(LATER, &["--at", &later]);
        assert!(err.contains("timestamp metadata"), "{err}");
        assert!(
            err.contains("timestamp v1 expired at 2030-01-08T00:00:00Z"),
            "{err}"
        );
        // One second before expiry it still verifies.
        let almost = NOW.plus_secs(7 * 86_400 - 1).to_rfc3339();
        v.verify(LATER, &["--at", &almost]).unwrap();
    }

    #[test]
    fn a_root_rotation_signed_only_by_the_new_keys() {
        let (v, _) = published();
        let new_key = SigningKey::from_seed([42; 32]);
        let current =
            read_metadata::<Root>(&fs::read(v.path("metadata/1.root.json")).unwrap()).unwrap();
        let changes = RootChanges {
            root: Some(RoleSpec::single(new_key.public())),
            ..RootChanges::default()
        };
        let next = rotate_root(&current.signed, &changes).unwrap();
        let forged = sign_document(next, &[&new_key]).unwrap();
        let path = v.path("metadata/2.root.json");
        fs::write(&path, forged).unwrap();
        let err = v.verify_fails(LATER, &[]);
        assert!(
            err.contains(&format!(
                "root metadata version 2 ({}) was refused",
                arg(&path)
            )),
            "{err}"
        );
        assert!(
            err.contains("no valid signature from the trusted root's root keys"),
            "{err}"
        );
    }

    #[test]
    fn a_wrong_trusted_root() {
        let (v, _) = published();
        let other = Vendor::new();
        let root = other.path("metadata/1.root.json");
        let err = v.verify_fails(LATER, &["--root", arg(&root)]);
        assert!(
            err.contains("timestamp metadata") && err.contains("no valid signature"),
            "{err}"
        );
    }
}

mod root_rotation {
    use super::*;

    #[test]
    fn the_cli_refuses_a_rotation_signed_by_one_side_only() {
        let (v, _) = published();
        let new_root = v.tmp.path().join("root2.json");
        v.keygen(&new_root);
        let repo = v.repo();
        let before = fingerprint(&repo);
        let err = error_of(
            NOW,
            &[
                "root",
                "rotate",
                "--repo",
                arg(&repo),
                "--sign-old",
                arg(&new_root),
                "--sign-new",
                arg(&new_root),
                "--root-key",
                arg(&new_root),
            ],
        );
        assert!(
            err.contains("root v2 has no valid signature from the trusted root's root keys"),
            "{err}"
        );
        let err = error_of(
            NOW,
            &[
                "root",
                "rotate",
                "--repo",
                arg(&repo),
                "--sign-old",
                arg(&v.root_key),
                "--sign-new",
                arg(&v.root_key),
                "--root-key",
                arg(&new_root),
            ],
        );
        assert!(
            err.contains("no valid signature from its own root keys"),
            "{err}"
        );
        assert_eq!(before, fingerprint(&repo));
    }

    #[test]
    fn a_proper_rotation_verifies_from_the_old_root() {
        let (v, _) = published();
        let new_root = v.tmp.path().join("root2.json");
        v.keygen(&new_root);
        let repo = v.repo();
        let Outcome::Root(r) = run_at(
            NOW,
            &[
                "root",
                "rotate",
                "--repo",
                arg(&repo),
                "--sign-old",
                arg(&v.root_key),
                "--sign-new",
                arg(&new_root),
                "--root-key",
                arg(&new_root),
            ],
        )
        .unwrap() else {
            panic!("not a root report");
        };
        assert_eq!(r.version, 2);
        assert!(r.notes.is_empty(), "{:?}", r.notes);
        let old_root = v.tmp.path().join("trusted-1.root.json");
        fs::copy(v.path("metadata/1.root.json"), &old_root).unwrap();
        let report = v.verify(LATER, &["--root", arg(&old_root)]).unwrap();
        assert_eq!(report.root_version, 2);
        assert_eq!(report.rotations, [2]);
        assert_eq!(
            fs::read(v.path("metadata/root.json")).unwrap(),
            fs::read(v.path("metadata/2.root.json")).unwrap()
        );
    }

    #[test]
    fn rotating_the_timestamp_key_takes_effect_at_the_next_publish() {
        let (v, _) = published();
        let new_ts = v.tmp.path().join("timestamp2.json");
        v.keygen(&new_ts);
        let repo = v.repo();
        let Outcome::Root(r) = run_at(
            NOW,
            &[
                "root",
                "rotate",
                "--repo",
                arg(&repo),
                "--sign-old",
                arg(&v.root_key),
                "--sign-new",
                arg(&v.root_key),
                "--timestamp-key",
                arg(&new_ts),
            ],
        )
        .unwrap() else {
            panic!("not a root report");
        };
        assert!(
            r.notes.iter().any(|n| n.contains("timestamp")),
            "{:?}",
            r.notes
        );
        // The old timestamp is now signed by a revoked key.
        let err = v.verify_fails(LATER, &[]);
        assert!(
            err.contains("timestamp keys that root v1 trusted but the current root revoked"),
            "{err}"
        );
        let art = v.artifact("v2.bin", &noise(200_000, 9));
        let args = [
            "publish",
            arg(&art),
            "--repo",
            arg(&repo),
            "--product",
            "acme-sensor",
            "--version",
            "7.12.0",
            "--key",
            arg(&v.targets_key),
            arg(&v.snapshot_key),
            arg(&new_ts),
            "--chunk-avg",
            "64KiB",
        ];
        let Outcome::Publish(p) = run_at(NOW, &args).unwrap() else {
            panic!("not a publish report");
        };
        assert!(
            p.notes
                .iter()
                .any(|n| n.contains("timestamp or snapshot keys changed")),
            "{:?}",
            p.notes
        );
        let report = v.verify(LATER, &[]).unwrap();
        assert_eq!(report.releases.len(), 2);
    }

    #[test]
    fn rotating_the_targets_key_keeps_every_release() {
        let (v, _) = published();
        let new_targets = v.tmp.path().join("targets2.json");
        v.keygen(&new_targets);
        let repo = v.repo();
        run_at(
            NOW,
            &[
                "root",
                "rotate",
                "--repo",
                arg(&repo),
                "--sign-old",
                arg(&v.root_key),
                "--sign-new",
                arg(&v.root_key),
                "--targets-key",
                arg(&new_targets),
            ],
        )
        .unwrap();
        let art = v.artifact("v2.bin", &noise(200_000, 10));
        let args = [
            "publish",
            arg(&art),
            "--repo",
            arg(&repo),
            "--product",
            "acme-sensor",
            "--version",
            "7.12.0",
            "--key",
            arg(&new_targets),
            arg(&v.snapshot_key),
            arg(&v.timestamp_key),
            "--chunk-avg",
            "64KiB",
        ];
        let Outcome::Publish(p) = run_at(NOW, &args).unwrap() else {
            panic!("not a publish report");
        };
        assert!(
            p.notes.iter().any(|n| n.contains("targets keys changed")),
            "{:?}",
            p.notes
        );
        let report = v.verify(LATER, &[]).unwrap();
        let versions: Vec<&str> = report.releases.iter().map(|r| r.version.as_str()).collect();
        assert_eq!(versions, ["7.11.0", "7.12.0"]);
    }
}

mod operator_role {
    use super::*;
    use waveguard_protocol::metadata::RoleName;

    fn roles(outcome: Outcome) -> Vec<(RoleName, u32, usize)> {
        let Outcome::Root(r) = outcome else {
            panic!("not a root report");
        };
        r.roles
            .iter()
            .map(|s| (s.role, s.threshold, s.keys.len()))
            .collect()
    }

    #[test]
    fn init_adds_it_and_rotate_changes_or_removes_it() {
        let tmp = tempfile::tempdir().unwrap();
        let key = |n: &str| {
            let p = tmp.path().join(n);
            run_at(NOW, &["keygen", "--out", arg(&p)]).unwrap();
            p
        };
        let (root, op1, op2, op3) = (
            key("root.json"),
            key("op1.json"),
            key("op2.json"),
            key("op3.json"),
        );
        let repo = tmp.path().join("repo");
        let r = arg(&root);
        let init = run_at(
            NOW,
            &[
                "root",
                "init",
                "--out",
                arg(&repo),
                "--root-key",
                r,
                "--targets-key",
                r,
                "--snapshot-key",
                r,
                "--timestamp-key",
                r,
                "--operator-key",
                arg(&op1),
                arg(&op2),
                "--operator-threshold",
                "2",
            ],
        )
        .unwrap();
        assert!(roles(init).contains(&(RoleName::Operator, 2, 2)));
        let base = [
            "root",
            "rotate",
            "--repo",
            arg(&repo),
            "--sign-old",
            r,
            "--sign-new",
            r,
        ];
        let mut args = base.to_vec();
        args.extend(["--operator-key", arg(&op3)]);
        // New keys without a threshold keep the old threshold, which one key cannot meet.
        let err = error_of(NOW, &args);
        assert!(err.contains("threshold 2 with 1 key"), "{err}");
        args.extend(["--operator-threshold", "1"]);
        assert!(roles(run_at(NOW, &args).unwrap()).contains(&(RoleName::Operator, 1, 1)));
        let mut args = base.to_vec();
        args.push("--remove-operator");
        let left = roles(run_at(NOW, &args).unwrap());
        assert!(
            left.iter().all(|(role, _, _)| *role != RoleName::Operator),
            "{left:?}"
        );
        assert_eq!(left.len(), 4);
        assert!(repo.join("metadata/3.root.json").exists());
    }
}

mod wave_command {
    use super::*;

    fn node(seed: u8) -> NodeId {
        SigningKey::from_seed([seed; 32]).node_id()
    }

    #[test]
    fn agrees_with_the_protocol_for_many_nodes() {
        let v = Vendor::new();
        let art = v.artifact("a.bin", &noise(100_000, 11));
        // Wide waves so a few dozen nodes land in more than one of them.
        let args = v.publish_args(&art, "1.0.0", &["--waves", "a:20%:1h,b:50%:1h,c:100%:0s"]);
        let Outcome::Publish(p) = run_at(NOW, &args).unwrap() else {
            panic!("not a publish report");
        };
        let repo = v.repo();
        let release = p.release.to_hex();
        let mut seen = std::collections::BTreeSet::new();
        for seed in 0..40u8 {
            let n = node(seed);
            let Outcome::Wave(w) = run_at(
                LATER,
                &[
                    "wave",
                    "--node",
                    &n.to_hex(),
                    "--release",
                    &release,
                    "--repo",
                    arg(&repo),
                ],
            )
            .unwrap() else {
                panic!("not a wave report");
            };
            let expected = wave::wave_of(&p.policy, &p.release, &n, WavePin::None);
            let got = w.wave.expect("a policy was given");
            assert_eq!(got.index, expected, "node {n}");
            assert_eq!(got.name, p.policy.waves[expected].name);
            assert_eq!(w.bucket, wave::bucket(&p.release, &n));
            seen.insert(expected);
        }
        assert_eq!(seen.len(), 3, "40 nodes should cover all three waves");
    }

    #[test]
    fn accepts_peer_ids_product_version_and_pins() {
        let v = Vendor::new();
        let p = v.publish(&v.artifact("a.bin", &noise(100_000, 12)), "1.0.0");
        let repo = v.repo();
        let n = node(7);
        let wave_at = |extra: &[&str]| {
            let mut args = vec!["wave", "--repo", arg(&repo)];
            args.extend_from_slice(extra);
            match run_at(LATER, &args).unwrap() {
                Outcome::Wave(w) => w,
                other => panic!("wave gave {other}"),
            }
        };
        let by_peer = wave_at(&[
            "--node",
            &n.to_peer_id_string(),
            "--release",
            "acme-sensor/1.0.0",
        ]);
        let by_hex = wave_at(&["--node", &n.to_hex(), "--release", &p.release.to_hex()]);
        assert_eq!(by_peer, by_hex);
        let canary = wave_at(&[
            "--node",
            &n.to_hex(),
            "--release",
            "acme-sensor/1.0.0",
            "--pin",
            "canary",
        ]);
        assert_eq!(canary.wave.as_ref().map(|w| w.index), Some(0));
        let last = wave_at(&[
            "--node",
            &n.to_hex(),
            "--release",
            "acme-sensor/1.0.0",
            "--pin",
            "last",
        ]);
        assert_eq!(
            last.wave.as_ref().map(|w| (w.index, w.name.as_str())),
            Some((3, "all"))
        );
    }

    #[test]
    fn without_a_repo_prints_the_bucket_only() {
        let n = node(3);
        let release = waveguard_protocol::ReleaseId([9; 32]);
        let Outcome::Wave(w) = run_at(
            NOW,
            &[
                "wave",
                "--node",
                &n.to_hex(),
                "--release",
                &release.to_hex(),
            ],
        )
        .unwrap() else {
            panic!("not a wave report");
        };
        assert_eq!(w.bucket, wave::bucket(&release, &n));
        assert!(w.wave.is_none());
        assert!(w.to_string().contains(&w.bucket.to_string()));
        let err = error_of(
            NOW,
            &["wave", "--node", &n.to_hex(), "--release", "acme/1.0"],
        );
        assert!(err.contains("product/version needs --repo"), "{err}");
        let err = error_of(
            NOW,
            &["wave", "--node", "xyz", "--release", &release.to_hex()],
        );
        assert!(err.contains("--node"), "{err}");
    }
}
