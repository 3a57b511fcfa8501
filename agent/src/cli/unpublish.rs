//! `waveguard unpublish`: removes a release from a release directory's signed
//! targets. Agents that follow it retire it when the new metadata reaches them:
//! they stop following it and remove its chunks (those no other release
//! shares), chunk list and staged artifact from their stores (protocol 15.8).
//! What they installed stays installed. A release with a rollout under way
//! should be halted first; unpublishing only stops it where the new metadata
//! arrives. The release directory keeps the release's chunk list and chunks, so
//! `verify` still reads older metadata and the version can be re-published.

use super::keys;
use super::publish::{unused_keys, ExpiryArgs, Signing};
use crate::repo::Repo;
use crate::vendor;
use anyhow::{bail, Context as _};
use clap::Args;
use std::fmt;
use std::path::PathBuf;
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
    /// Lifetimes of the documents signed.
    #[command(flatten)]
    pub expiries: ExpiryArgs,
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
    let signing = Signing::new("unpublish", &repository, &secrets)?;
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
    let versions = signing.commit(&repo, &mut repository, now, &a.expiries)?;
    Ok(UnpublishReport {
        release: release.id,
        target_path,
        remaining: repository.targets().len(),
        versions,
        notes,
    })
}
