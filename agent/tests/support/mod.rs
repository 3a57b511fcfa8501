//! Builders for the CLI tests: a vendor with keys and a release directory,
//! deterministic artifacts, and a fingerprint of a directory tree to prove a
//! command changed nothing.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use tempfile::TempDir;
use waveguard_agent::cli::{self, publish::PublishReport, verify::VerifyReport, Outcome};
use waveguard_protocol::Timestamp;

/// The time every test publishes at: 2030-01-01T00:00:00Z.
pub const NOW: Timestamp = Timestamp::from_secs(1_893_456_000);
/// Shortly after publishing: when tests verify.
pub const LATER: Timestamp = Timestamp::from_secs(1_893_456_000 + 3600);

/// Runs a command line (without the program name) as of `now`.
pub fn run_at(now: Timestamp, args: &[&str]) -> anyhow::Result<Outcome> {
    cli::run_at(
        std::iter::once("waveguard").chain(args.iter().copied()),
        now,
    )
}

/// The error of a command as the user sees it.
pub fn error_of(now: Timestamp, args: &[&str]) -> String {
    match run_at(now, args) {
        Ok(o) => panic!("expected {args:?} to fail, it printed:\n{o}"),
        Err(e) => cli::error_message(&e),
    }
}

/// A path as a command-line argument.
pub fn arg(path: &Path) -> &str {
    path.to_str().expect("temp paths are UTF-8")
}

/// Deterministic pseudo-random bytes (xorshift64), so content-defined cut points vary.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
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

/// Every file under `dir` with its contents, to compare before and after.
pub fn fingerprint(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.clone(), fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// A vendor: four role keys in a temporary directory and a release directory
/// initialised with them (one key per role, threshold 1).
pub struct Vendor {
    /// Holds keys, artifacts and the release directory.
    pub tmp: TempDir,
    /// Root key file.
    pub root_key: PathBuf,
    /// Targets key file.
    pub targets_key: PathBuf,
    /// Snapshot key file.
    pub snapshot_key: PathBuf,
    /// Timestamp key file.
    pub timestamp_key: PathBuf,
    /// The release directory.
    pub repo_dir: PathBuf,
}

impl Vendor {
    /// Generates the keys and runs `root init` at [`NOW`].
    pub fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let v = Vendor {
            root_key: tmp.path().join("root.json"),
            targets_key: tmp.path().join("targets.json"),
            snapshot_key: tmp.path().join("snapshot.json"),
            timestamp_key: tmp.path().join("timestamp.json"),
            repo_dir: tmp.path().join("repo"),
            tmp,
        };
        for k in [
            &v.root_key,
            &v.targets_key,
            &v.snapshot_key,
            &v.timestamp_key,
        ] {
            v.keygen(k);
        }
        let repo = v.repo();
        run_at(
            NOW,
            &[
                "root",
                "init",
                "--out",
                arg(&repo),
                "--root-key",
                arg(&v.root_key),
                "--root-threshold",
                "1",
                "--targets-key",
                arg(&v.targets_key),
                "--targets-threshold",
                "1",
                "--snapshot-key",
                arg(&v.snapshot_key),
                "--timestamp-key",
                arg(&v.timestamp_key),
            ],
        )
        .unwrap();
        v
    }

    /// Writes a new key file at `path`.
    pub fn keygen(&self, path: &Path) {
        run_at(NOW, &["keygen", "--out", arg(path)]).unwrap();
    }

    /// The release directory.
    pub fn repo(&self) -> PathBuf {
        self.repo_dir.clone()
    }

    /// A path inside the release directory.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.repo().join(rel)
    }

    /// Writes an artifact file and returns its path.
    pub fn artifact(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.tmp.path().join(name);
        fs::write(&p, bytes).unwrap();
        p
    }

    /// The command line of a publish with small chunks, plus `extra` flags.
    pub fn publish_args<'a>(
        &'a self,
        artifact: &'a Path,
        version: &'a str,
        extra: &[&'a str],
    ) -> Vec<&'a str> {
        let mut args = vec![
            "publish",
            arg(artifact),
            "--repo",
            arg(&self.repo_dir),
            "--product",
            "acme-sensor",
            "--version",
            version,
            "--key",
            arg(&self.targets_key),
            arg(&self.snapshot_key),
            arg(&self.timestamp_key),
            "--chunk-avg",
            "64KiB",
        ];
        args.extend_from_slice(extra);
        args
    }

    /// Publishes `artifact` as `acme-sensor <version>` at [`NOW`].
    pub fn publish(&self, artifact: &Path, version: &str) -> PublishReport {
        match run_at(NOW, &self.publish_args(artifact, version, &[])).unwrap() {
            Outcome::Publish(r) => r,
            other => panic!("publish gave {other}"),
        }
    }

    /// Runs `verify` on the release directory at `at` with `extra` flags.
    pub fn verify(&self, at: Timestamp, extra: &[&str]) -> anyhow::Result<VerifyReport> {
        let repo = self.repo();
        let mut args = vec!["verify", arg(&repo)];
        args.extend_from_slice(extra);
        run_at(at, &args).map(|o| match o {
            Outcome::Verify(r) => r,
            other => panic!("verify gave {other}"),
        })
    }

    /// Runs `verify` expecting failure, checks it changed nothing, and returns the message.
    pub fn verify_fails(&self, at: Timestamp, extra: &[&str]) -> String {
        let before = fingerprint(&self.repo());
        let err = match self.verify(at, extra) {
            Ok(r) => panic!("expected verify to fail, it printed:\n{r}"),
            Err(e) => cli::error_message(&e),
        };
        assert_eq!(
            before,
            fingerprint(&self.repo()),
            "verify modified the release directory"
        );
        err
    }
}
