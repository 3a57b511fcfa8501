//! `waveguard unpublish`: removes a release from a release directory's signed
//! targets. Agents that follow it retire it when the new metadata reaches them:
//! they stop following it and remove its chunks (those no other release
//! shares), chunk list and staged artifact from their stores (protocol 15.8).
//! What they installed stays installed. A release with a rollout under way
//! should be halted first; unpublishing only stops it where the new metadata
//! arrives. The release directory keeps the release's chunk list and chunks, so
//! `verify` still reads older metadata and the version can be re-published.

use super::args;
use super::keys;
use super::publish::{signers, unused_keys};
use crate::repo::Repo;
use crate::vendor;
use anyhow::{bail, Context as _};
use clap::Args;
use std::fmt;
use std::path::PathBuf;
use waveguard_protocol::metadata::{Expiries, RoleName, RoleSigners};
use waveguard_protocol::release::Release;
use waveguard_protocol::{ReleaseId, Timestamp};

/// Arguments of `waveguard unpublish`.
#[derive(Args, Debug, Clone)]
pub struct UnpublishArgs {
    /// The release directory.
    #[arg(long, value_name = "DIR")]
    pub repo: PathBuf,
    /// Product name.
    #[arg(long)]
    pub product: String,
    /// Version to remove.
    #[arg(long)]
    pub version: String,
    /// Key files for the targets, snapshot and timestamp roles; the root says which signs what.
    #[arg(long = "key", value_name = "FILE", num_args = 1.., required = true)]
    pub keys: Vec<PathBuf>,
    /// How long the signed targets stay valid.
    #[arg(long, value_name = "DURATION", default_value = "90d", value_parser = args::duration_secs)]
    pub targets_expires: u64,
    /// How long the signed snapshot stays valid.
    #[arg(long, value_name = "DURATION", default_value = "30d", value_parser = args::duration_secs)]
    pub snapshot_expires: u64,
    /// How long the signed timestamp stays valid.
    #[arg(long, value_name = "DURATION", default_value = "7d", value_parser = args::duration_secs)]
    pub timestamp_expires: u64,
}

/// What `unpublish` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnpublishReport {
    /// The removed release's ID.
    pub release: ReleaseId,
    /// Its TUF target path.
    pub target_path: String,
    /// Releases still published.
    pub remaining: usize,
    /// Versions of the new targets, snapshot and timestamp.
    pub versions: (u64, u64, u64),
    /// Things the user should know.
    pub notes: Vec<String>,
}

impl fmt::Display for UnpublishReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "unpublished {}", self.target_path)?;
        writeln!(f, "release id: {}", self.release)?;
        writeln!(f, "remaining:  {} release(s)", self.remaining)?;
        let (t, s, ts) = self.versions;
        write!(
            f,
            "metadata:   targets v{t}, snapshot v{s}, timestamp v{ts}"
        )?;
        for n in &self.notes {
            write!(f, "\nnote: {n}")?;
        }
        Ok(())
    }
}

/// Runs `unpublish` as of `now`.
pub fn run(a: &UnpublishArgs, now: Timestamp) -> anyhow::Result<UnpublishReport> {
    let secrets = keys::read_secrets(&a.keys, "unpublish: --key")?;
    let repo = Repo::new(&a.repo);
    let opened = vendor::open(&repo).context("unpublish")?;
    let mut repository = opened.repository;
    let mut notes = opened.notes;
    let targets = signers("unpublish", &repository, RoleName::Targets, &secrets)?;
    let snapshot = signers("unpublish", &repository, RoleName::Snapshot, &secrets)?;
    let timestamp = signers("unpublish", &repository, RoleName::Timestamp, &secrets)?;
    notes.extend(unused_keys(&repository, &secrets));

    let target_path = format!("{}/{}", a.product, a.version);
    let Some(target) = repository.remove_target(&target_path) else {
        let published: Vec<&String> = repository.targets().keys().collect();
        bail!(
            "unpublish: {target_path} is not published in {} (published: {published:?})",
            a.repo.display()
        );
    };
    let release = Release::from_target(&target_path, &target).context("unpublish")?;
    let expiries = Expiries {
        timestamp_secs: a.timestamp_expires,
        snapshot_secs: a.snapshot_expires,
        targets_secs: a.targets_expires,
    };
    let signers = RoleSigners {
        targets: &targets,
        snapshot: &snapshot,
        timestamp: &timestamp,
    };
    let bundle = repository
        .sign(now, &expiries, &signers)
        .context("unpublish")?;
    vendor::commit(&repo, &bundle).context("unpublish: cannot write the signed metadata")?;
    let v = repository.trust().versions();
    Ok(UnpublishReport {
        release: release.id,
        target_path,
        remaining: repository.targets().len(),
        versions: (
            v.targets.unwrap_or(0),
            v.snapshot.unwrap_or(0),
            v.timestamp.unwrap_or(0),
        ),
        notes,
    })
}
