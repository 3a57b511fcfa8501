//! `waveguard verify`: full offline verification of a release directory.
//!
//! Trust starts at `--root` (or, trusted on first use, the directory's own
//! first root), walks every root rotation, then timestamp, snapshot and
//! targets at the given time, all through the protocol's trusted state. Then,
//! for each release (or the one asked for): the chunk list against the signed
//! release, every chunk against the list (each chunk file read with a bound of
//! its signed length plus one byte), and the reassembled artifact's blake3
//! against the signed hash. Nothing is written.
//!
//! Chunk problems are collected rather than stopping at the first, so one run
//! names every damaged chunk (up to [`MAX_REPORTED_FAILURES`]).

use super::args;
use crate::repo::{BlobReadError, Repo};
use crate::trusted::{self, TrustAnchor};
use anyhow::Context as _;
use clap::Args;
use std::fmt;
use std::path::PathBuf;
use waveguard_protocol::chunk::{verify_chunk, ChunkError, ChunkList};
use waveguard_protocol::release::Release;
use waveguard_protocol::{ReleaseId, Timestamp};

/// Most failures listed in one error message; the rest are only counted.
/// Twenty lines still fit a terminal and are enough to see a pattern.
pub const MAX_REPORTED_FAILURES: usize = 20;

/// Arguments of `waveguard verify`.
#[derive(Args, Debug, Clone)]
pub struct VerifyArgs {
    /// The release directory.
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// Trusted root metadata obtained out of band (default: DIR/metadata/1.root.json, trusted on first use).
    #[arg(long, value_name = "FILE")]
    pub root: Option<PathBuf>,
    /// Verify only this release: its ID (64 hex digits) or product/version.
    #[arg(long, value_name = "ID")]
    pub release: Option<String>,
    /// Verify as of this time instead of now (YYYY-MM-DDTHH:MM:SSZ).
    #[arg(long, value_name = "TIME", value_parser = args::time)]
    pub at: Option<Timestamp>,
}

/// One release that passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedRelease {
    /// Its ID.
    pub id: ReleaseId,
    /// Product.
    pub product: String,
    /// Version.
    pub version: String,
    /// Chunks checked.
    pub chunks: usize,
    /// Artifact bytes checked.
    pub bytes: u64,
}

/// What `verify` checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Where trust started.
    pub anchor: TrustAnchor,
    /// The time of the check.
    pub at: Timestamp,
    /// Root version after every rotation.
    pub root_version: u64,
    /// Root versions walked after the anchor.
    pub rotations: Vec<u64>,
    /// Versions of timestamp, snapshot and targets.
    pub versions: (u64, u64, u64),
    /// The releases verified.
    pub releases: Vec<VerifiedRelease>,
    /// Things the user should know (trust on first use, ...).
    pub warnings: Vec<String>,
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "trusted root: {}", self.anchor)?;
        writeln!(
            f,
            "metadata OK at {}: root v{}, timestamp v{}, snapshot v{}, targets v{}",
            self.at, self.root_version, self.versions.0, self.versions.1, self.versions.2
        )?;
        write!(f, "{} release(s) verified", self.releases.len())?;
        for r in &self.releases {
            write!(
                f,
                "\n  OK {} {} ({}): {} chunks, {} bytes",
                r.product, r.version, r.id, r.chunks, r.bytes
            )?;
        }
        Ok(())
    }
}

/// Runs `verify` as of `now` (or `--at`).
pub fn run(a: &VerifyArgs, now: Timestamp) -> anyhow::Result<VerifyReport> {
    let at = a.at.unwrap_or(now);
    let repo = Repo::new(&a.dir);
    let loaded = trusted::load(&repo, a.root.as_deref(), at).context("verify")?;
    let mut warnings: Vec<String> = loaded.anchor.warning().into_iter().collect();
    if repo.has_pending() {
        warnings.push(format!(
            "{} holds an interrupted publish; the next publish will finish or discard it",
            repo.pending_dir().display()
        ));
    }
    let releases = match &a.release {
        Some(spec) => vec![trusted::find_release(&loaded.state, spec).context("verify")?],
        None => loaded.state.releases(),
    };
    let mut verified = Vec::new();
    let mut failures = Vec::new();
    for release in &releases {
        match check_release(&repo, release) {
            Ok(v) => verified.push(v),
            Err(e) => failures.push(e),
        }
    }
    if !failures.is_empty() {
        anyhow::bail!("verify: {}", failures.join("\nverify: "));
    }
    let v = loaded.state.versions();
    Ok(VerifyReport {
        anchor: loaded.anchor,
        at,
        root_version: v.root,
        rotations: loaded.rotations,
        versions: (
            v.timestamp.unwrap_or(0),
            v.snapshot.unwrap_or(0),
            v.targets.unwrap_or(0),
        ),
        releases: verified,
        warnings,
    })
}

/// Checks one release's chunk list, chunks and artifact hash; the error is a
/// message naming everything that failed.
fn check_release(repo: &Repo, release: &Release) -> Result<VerifiedRelease, String> {
    let name = format!("{} {}", release.info.product, release.info.version);
    let list_path = repo.chunk_list_path(&release.id);
    let list_bytes = repo.read_chunk_list(release).map_err(|e| match e {
        BlobReadError::Missing { path } => {
            format!("the chunk list of {name} is missing: {}", path.display())
        }
        other => format!("the chunk list of {name}: {other}"),
    })?;
    let list = ChunkList::decode_for(release, &list_bytes).map_err(|e| {
        format!(
            "the chunk list of {name} ({}) does not match the signed release: {e}",
            list_path.display()
        )
    })?;

    let mut whole = blake3::Hasher::new();
    let mut failed = 0usize;
    let mut lines = Vec::new();
    for (index, entry) in list.chunks.iter().enumerate() {
        let hash = hex::encode(entry.hash);
        let path = repo.chunk_path(&entry.hash);
        let path = path.display();
        let problem = match repo.read_chunk(entry) {
            Err(BlobReadError::Missing { .. }) => Some(format!("is missing: {path}")),
            Err(BlobReadError::TooLong { expected, .. }) => Some(format!(
                "is longer than the expected {expected} bytes: {path}"
            )),
            Err(other) => Some(format!("cannot be read: {other}")),
            Ok(bytes) => match verify_chunk(entry, &bytes) {
                Ok(()) => {
                    whole.update(&bytes);
                    None
                }
                Err(ChunkError::WrongLength { got, expected, .. }) => {
                    Some(format!("is {got} bytes, expected {expected}: {path}"))
                }
                Err(ChunkError::WrongHash { got, .. }) => {
                    Some(format!("hashes to {got}, expected {hash}: {path}"))
                }
                Err(other) => Some(format!("{other}: {path}")),
            },
        };
        if let Some(p) = problem {
            failed += 1;
            if lines.len() < MAX_REPORTED_FAILURES {
                lines.push(format!("chunk {index} ({}…) of {name} {p}", &hash[..12]));
            }
        }
    }
    if failed == 1 {
        return Err(lines.remove(0));
    }
    if failed > 1 {
        let more = failed - lines.len();
        let tail = if more > 0 {
            format!("\n  and {more} more")
        } else {
            String::new()
        };
        return Err(format!(
            "{failed} of {} chunks of {name} failed:\n  {}{tail}",
            list.chunks.len(),
            lines.join("\n  ")
        ));
    }
    let got = *whole.finalize().as_bytes();
    if got != release.blake3 {
        return Err(format!(
            "the reassembled artifact of {name} hashes to {}, but targets metadata signs {}",
            hex::encode(got),
            hex::encode(release.blake3)
        ));
    }
    Ok(VerifiedRelease {
        id: release.id,
        product: release.info.product.clone(),
        version: release.info.version.clone(),
        chunks: list.chunks.len(),
        bytes: list.total_len(),
    })
}
