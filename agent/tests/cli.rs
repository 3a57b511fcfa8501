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
                "--report-share",
                "0.1%",
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
                p.health.heartbeat_seconds,
                p.health.report_ppm
            ),
            (25_000, 7, 900, 30, 1_000)
        );
        assert!(r.to_string().contains("0.1% of each wave report"), "{r}");
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
        let args = v.publish_args(&art, "1.0.0", &["--report-share", "0%"]);
        let err = error_of(NOW, &args);
        assert!(err.contains("report_ppm 0 must be 1 to"), "{err}");
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

mod operator_controls {
    use super::*;
    use waveguard_agent::cli::directive::DEFAULT_RESUME_REASON;
    use waveguard_protocol::health::cert::verify_cert;
    use waveguard_protocol::health::directive::{verify_directive, DirectiveAction};
    use waveguard_protocol::health::FleetKeys;
    use waveguard_protocol::metadata::{RoleName, TrustedState};

    /// A fleet: a root key (also every vendor role), operator keys and a node key,
    /// and a release directory whose root has an operator role of `threshold`.
    struct Fleet {
        tmp: tempfile::TempDir,
        vendor: PathBuf,
        operators: Vec<PathBuf>,
        node: NodeId,
        repo: PathBuf,
    }

    impl Fleet {
        fn new(operators: usize, threshold: u32) -> Fleet {
            let tmp = tempfile::tempdir().unwrap();
            let key = |n: &str| {
                let p = tmp.path().join(n);
                run_at(NOW, &["keygen", "--out", arg(&p)]).unwrap();
                p
            };
            let vendor = key("vendor.key");
            let operators: Vec<PathBuf> =
                (0..operators).map(|i| key(&format!("op{i}.key"))).collect();
            let node = keyfile::read_secret(&key("node.key")).unwrap().node_id();
            let repo = tmp.path().join("repo");
            let v = arg(&vendor);
            let threshold = threshold.to_string();
            let mut args = vec![
                "root",
                "init",
                "--out",
                arg(&repo),
                "--root-key",
                v,
                "--targets-key",
                v,
                "--snapshot-key",
                v,
                "--timestamp-key",
                v,
            ];
            if !operators.is_empty() {
                args.push("--operator-key");
                args.extend(operators.iter().map(|p| arg(p)));
                args.extend(["--operator-threshold", &threshold]);
            }
            run_at(NOW, &args).unwrap();
            Fleet {
                tmp,
                vendor,
                operators,
                node,
                repo,
            }
        }

        /// What the root says about who signs what, read with the protocol alone.
        fn keys(&self) -> FleetKeys {
            let bytes = fs::read(self.repo.join("metadata/1.root.json")).unwrap();
            let state = TrustedState::new(&bytes).unwrap();
            FleetKeys {
                keys: state.root().keys.clone(),
                vendor: state.role_keys(RoleName::Targets).unwrap().0,
                operator: state.operator_role().map(|(role, _)| role),
            }
        }

        fn path(&self, name: &str) -> PathBuf {
            self.tmp.path().join(name)
        }
    }

    fn cert_report(outcome: Outcome) -> waveguard_agent::cli::cert::CertReport {
        match outcome {
            Outcome::Cert(r) => r,
            other => panic!("cert issue gave {other}"),
        }
    }

    #[test]
    fn an_issued_certificate_verifies_against_the_operator_root() {
        let f = Fleet::new(2, 2);
        let out = f.path("node.cert");
        let report = cert_report(
            run_at(
                NOW,
                &[
                    "cert",
                    "issue",
                    "--operator-key",
                    arg(&f.operators[0]),
                    arg(&f.operators[1]),
                    "--node",
                    &f.node.to_peer_id_string(),
                    "--expires",
                    "30d",
                    "--pin",
                    "canary",
                    "--out",
                    arg(&out),
                    "--repo",
                    arg(&f.repo),
                ],
            )
            .unwrap(),
        );
        let expires = NOW.plus_secs(30 * 86_400);
        assert_eq!(report.node, f.node);
        assert_eq!(report.expires, expires);
        assert_eq!(report.pin, WavePin::Canary);
        assert_eq!(report.signers.len(), 2);
        assert!(report.warnings.is_empty(), "{:?}", report.warnings);
        let checked = report.checked.as_ref().expect("checked against the root");
        assert_eq!((checked.version, checked.threshold), (1, 2));
        let text = report.to_string();
        for part in [
            f.node.to_hex(),
            f.node.to_peer_id_string(),
            "2030-01-31T00:00:00Z".to_string(),
            "canary".to_string(),
            out.display().to_string(),
        ] {
            assert!(text.contains(&part), "{part} missing in\n{text}");
        }

        let bytes = fs::read(&out).unwrap();
        let cert = verify_cert(&bytes, &f.keys(), LATER).unwrap();
        assert_eq!(
            (cert.node, cert.expires, cert.pin),
            (f.node, expires, WavePin::Canary)
        );
        assert!(verify_cert(&bytes, &f.keys(), expires).is_err());

        // The file is never replaced without --force.
        let again = [
            "cert",
            "issue",
            "--operator-key",
            arg(&f.operators[0]),
            arg(&f.operators[1]),
            "--node",
            &f.node.to_hex(),
            "--out",
            arg(&out),
        ];
        let err = error_of(NOW, &again);
        assert!(
            err.contains("already exists") && err.contains("--force"),
            "{err}"
        );
        assert_eq!(fs::read(&out).unwrap(), bytes);
        let mut forced = again.to_vec();
        forced.push("--force");
        let report = cert_report(run_at(NOW, &forced).unwrap());
        // Defaults: a year, no pin; unchecked without --repo or --root, and it says so.
        assert_eq!(report.expires, NOW.plus_secs(365 * 86_400));
        assert_eq!(report.pin, WavePin::None);
        assert!(report.checked.is_none());
        assert!(
            report.warnings[0].contains("--repo or --root"),
            "{:?}",
            report.warnings
        );
        let cert = verify_cert(&fs::read(&out).unwrap(), &f.keys(), LATER).unwrap();
        assert_eq!(cert.pin, WavePin::None);
    }

    #[test]
    fn keys_outside_the_operator_role_or_below_its_threshold_are_refused() {
        let f = Fleet::new(2, 2);
        let out = f.path("node.cert");
        let node = f.node.to_hex();
        let root = f.repo.join("metadata/1.root.json");
        let issue = |keys: &[&Path], check: &[&str]| {
            let mut args = vec!["cert", "issue", "--operator-key"];
            args.extend(keys.iter().map(|k| arg(k)));
            args.extend(["--node", &node, "--out", arg(&out)]);
            args.extend_from_slice(check);
            error_of(NOW, &args)
        };
        let err = issue(&[&f.vendor], &["--repo", arg(&f.repo)]);
        assert!(err.contains("not in the operator role of root v1"), "{err}");
        let err = issue(&[&f.operators[0], &f.vendor], &["--root", arg(&root)]);
        assert!(err.contains("not in the operator role"), "{err}");
        let err = issue(&[&f.operators[0]], &["--repo", arg(&f.repo)]);
        assert!(err.contains("below the threshold of 2"), "{err}");
        assert!(!out.exists());

        let open = Fleet::new(0, 1);
        let err = issue(&[&open.vendor], &["--repo", arg(&open.repo)]);
        assert!(err.contains("has no operator role"), "{err}");
        assert!(!out.exists());
    }

    #[test]
    fn cert_issue_names_bad_arguments() {
        let f = Fleet::new(1, 1);
        let out = f.path("node.cert");
        let base = |node: &str, extra: &[&str]| {
            let mut args = vec![
                "cert".to_string(),
                "issue".into(),
                "--operator-key".into(),
                arg(&f.operators[0]).into(),
                "--node".into(),
                node.into(),
                "--out".into(),
                arg(&out).into(),
            ];
            args.extend(extra.iter().map(|s| s.to_string()));
            args
        };
        let err_of = |args: Vec<String>| {
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            error_of(NOW, &refs)
        };
        let err = err_of(base("xyz", &[]));
        assert!(err.contains("--node") && err.contains("xyz"), "{err}");
        let hex = "ab".repeat(32);
        let err = err_of(base(&hex, &["--pin", "first"]));
        assert!(err.contains("--pin"), "{err}");
        let err = err_of(base(&hex, &["--expires", "1y"]));
        assert!(
            err.contains("--expires") && err.contains("duration"),
            "{err}"
        );
        let err = err_of(base(&hex, &["--expires", "0s"]));
        assert!(err.contains("longer than 0s"), "{err}");
        let err = err_of(base(&hex, &["--root", "/nonexistent/root.json"]));
        assert!(err.contains("/nonexistent/root.json"), "{err}");
        assert!(!out.exists());
    }

    #[test]
    fn halt_and_resume_write_directives_the_protocol_accepts() {
        let f = Fleet::new(1, 1);
        let release = "cd".repeat(32);
        let halt_file = f.path("halt.json");
        let Outcome::Directive(report) = run_at(
            NOW,
            &[
                "halt",
                "--key",
                arg(&f.vendor),
                "--release",
                &release,
                "--reason",
                "canary crash loop",
                "--seq",
                "42",
                "--out",
                arg(&halt_file),
            ],
        )
        .unwrap() else {
            panic!("not a directive report");
        };
        assert!(report.delivered.is_none(), "--out alone sends nothing");
        assert_eq!(report.written.as_deref(), Some(halt_file.as_path()));
        let bytes = fs::read(&halt_file).unwrap();
        assert_eq!(bytes, report.signed);
        let d = verify_directive(&bytes, &f.keys(), LATER).unwrap();
        assert_eq!(d, report.directive);
        assert_eq!(d.action, DirectiveAction::Halt);
        assert_eq!(d.release.to_hex(), release);
        assert_eq!(d.seq, 42);
        assert_eq!(d.reason, "canary crash loop");
        assert_eq!(d.expires, NOW.plus_secs(7 * 86_400));
        let text = report.to_string();
        assert!(
            text.contains("signed halt of release") && text.contains("42"),
            "{text}"
        );

        // Resume by the operator, later, with the defaults: its seq is the time in ms, so higher.
        let resume_file = f.path("resume.json");
        let Outcome::Directive(report) = run_at(
            LATER,
            &[
                "resume",
                "--key",
                arg(&f.operators[0]),
                "--release",
                &release,
                "--out",
                arg(&resume_file),
                "--repo",
                arg(&f.repo),
            ],
        )
        .unwrap() else {
            panic!("not a directive report");
        };
        assert_eq!(report.checked.as_ref().map(|c| c.0), Some(1));
        let d = verify_directive(&fs::read(&resume_file).unwrap(), &f.keys(), LATER).unwrap();
        assert_eq!(d.action, DirectiveAction::Resume);
        assert_eq!(d.seq, LATER.as_millis());
        assert!(d.seq > 42);
        assert_eq!(d.reason, DEFAULT_RESUME_REASON);

        // A file is never replaced without --force.
        let err = error_of(
            NOW,
            &[
                "resume",
                "--key",
                arg(&f.vendor),
                "--release",
                &release,
                "--out",
                arg(&resume_file),
            ],
        );
        assert!(
            err.contains("already exists") && err.contains("--force"),
            "{err}"
        );
    }

    #[test]
    fn halt_and_resume_name_bad_arguments() {
        let f = Fleet::new(1, 1);
        let release = "cd".repeat(32);
        let out = f.path("d.json");
        let vendor = arg(&f.vendor);
        let err = error_of(
            NOW,
            &[
                "halt",
                "--key",
                vendor,
                "--release",
                &release,
                "--out",
                arg(&out),
            ],
        );
        assert!(err.contains("--reason"), "{err}");
        let err = error_of(
            NOW,
            &[
                "halt",
                "--key",
                vendor,
                "--release",
                "acme/1.0",
                "--reason",
                "x",
                "--out",
                arg(&out),
            ],
        );
        assert!(
            err.contains("--release") && err.contains("acme/1.0"),
            "{err}"
        );
        let long = "x".repeat(1025);
        let err = error_of(
            NOW,
            &[
                "halt",
                "--key",
                vendor,
                "--release",
                &release,
                "--reason",
                &long,
                "--out",
                arg(&out),
            ],
        );
        assert!(
            err.contains("--reason") && err.contains("1025 bytes"),
            "{err}"
        );
        let err = error_of(
            NOW,
            &["resume", "--key", vendor, "--release", &release, "--force"],
        );
        assert!(err.contains("--out"), "{err}");
        let err = error_of(
            NOW,
            &[
                "resume",
                "--key",
                vendor,
                "--release",
                &release,
                "--seq",
                "soon",
                "--out",
                arg(&out),
            ],
        );
        assert!(err.contains("--seq"), "{err}");
        // A key in no role of the root is caught before anything is written or sent.
        let stranger = f.path("stranger.key");
        run_at(NOW, &["keygen", "--out", arg(&stranger)]).unwrap();
        let err = error_of(
            NOW,
            &[
                "halt",
                "--key",
                arg(&stranger),
                "--release",
                &release,
                "--reason",
                "x",
                "--out",
                arg(&out),
                "--repo",
                arg(&f.repo),
            ],
        );
        assert!(err.contains("signed neither by the vendor"), "{err}");
        assert!(!out.exists());
    }
}
