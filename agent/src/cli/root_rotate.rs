//! `waveguard root rotate`: writes the next root version, with changed keys
//! or thresholds for any role, signed by a threshold of the current root's
//! root keys (`--sign-old`) and of the new root's (`--sign-new`), as TUF
//! requires of every rotation.
//!
//! The protocol builds the new root and refuses to hand it out unless a
//! client would accept it, so a rotation signed by only one side never
//! reaches the disk.

use super::args;
use super::keys::{self, LoadedKey};
use super::root_init::RootReport;
use crate::repo::{MetadataFile, Repo};
use crate::vendor;
use anyhow::Context as _;
use clap::Args;
use std::collections::BTreeSet;
use std::path::PathBuf;
use waveguard_protocol::metadata::build::Repository;
use waveguard_protocol::metadata::{
    OperatorChange, RoleName, RoleSpec, Root, RootChanges, StoredTrust,
};
use waveguard_protocol::Timestamp;

/// Arguments of `waveguard root rotate`.
#[derive(Args, Debug, Clone)]
pub struct RootRotateArgs {
    /// The release directory.
    #[arg(long, value_name = "DIR")]
    pub repo: PathBuf,
    /// Current root keys signing the rotation (enough to meet the current root threshold).
    #[arg(long = "sign-old", value_name = "FILE", num_args = 1.., required = true)]
    pub sign_old: Vec<PathBuf>,
    /// New root keys signing the rotation (enough to meet the new root threshold).
    #[arg(long = "sign-new", value_name = "FILE", num_args = 1.., required = true)]
    pub sign_new: Vec<PathBuf>,
    /// New root key files.
    #[arg(long = "root-key", value_name = "FILE", num_args = 1..)]
    pub root_keys: Vec<PathBuf>,
    /// New root threshold (default: unchanged).
    #[arg(long, value_name = "N")]
    pub root_threshold: Option<u32>,
    /// New targets key files.
    #[arg(long = "targets-key", value_name = "FILE", num_args = 1..)]
    pub targets_keys: Vec<PathBuf>,
    /// New targets threshold (default: unchanged).
    #[arg(long, value_name = "N")]
    pub targets_threshold: Option<u32>,
    /// New snapshot key files.
    #[arg(long = "snapshot-key", value_name = "FILE", num_args = 1..)]
    pub snapshot_keys: Vec<PathBuf>,
    /// New snapshot threshold (default: unchanged).
    #[arg(long, value_name = "N")]
    pub snapshot_threshold: Option<u32>,
    /// New timestamp key files.
    #[arg(long = "timestamp-key", value_name = "FILE", num_args = 1..)]
    pub timestamp_keys: Vec<PathBuf>,
    /// New timestamp threshold (default: unchanged).
    #[arg(long, value_name = "N")]
    pub timestamp_threshold: Option<u32>,
    /// New operator key files.
    #[arg(long = "operator-key", value_name = "FILE", num_args = 1.., conflicts_with = "remove_operator")]
    pub operator_keys: Vec<PathBuf>,
    /// New operator threshold (default: unchanged).
    #[arg(long, value_name = "N", conflicts_with = "remove_operator")]
    pub operator_threshold: Option<u32>,
    /// Remove the operator role.
    #[arg(long)]
    pub remove_operator: bool,
    /// How long the new root stays valid (s, m, h, d, w).
    #[arg(long, value_name = "DURATION", default_value = "365d", value_parser = args::duration_secs)]
    pub expires: u64,
}

/// Runs `root rotate` as of `now`.
pub fn run(a: &RootRotateArgs, now: Timestamp) -> anyhow::Result<RootReport> {
    let repo = Repo::new(&a.repo);
    let chain = vendor::root_chain(&repo).context("root rotate")?;
    let mut repository = Repository::from_stored(&StoredTrust {
        roots: chain,
        ..StoredTrust::default()
    })
    .with_context(|| {
        format!(
            "root rotate: the root chain in {} was refused",
            repo.metadata_dir().display()
        )
    })?;
    let current = repository.root().clone();
    let read =
        |paths: &[PathBuf], flag: &str| keys::read_all(paths, &format!("root rotate: {flag}"));
    let changes = RootChanges {
        root: change(
            &current,
            RoleName::Root,
            &read(&a.root_keys, "--root-key")?,
            a.root_threshold,
        ),
        targets: change(
            &current,
            RoleName::Targets,
            &read(&a.targets_keys, "--targets-key")?,
            a.targets_threshold,
        ),
        snapshot: change(
            &current,
            RoleName::Snapshot,
            &read(&a.snapshot_keys, "--snapshot-key")?,
            a.snapshot_threshold,
        ),
        timestamp: change(
            &current,
            RoleName::Timestamp,
            &read(&a.timestamp_keys, "--timestamp-key")?,
            a.timestamp_threshold,
        ),
        operator: if a.remove_operator {
            OperatorChange::Remove
        } else {
            match change(
                &current,
                RoleName::Operator,
                &read(&a.operator_keys, "--operator-key")?,
                a.operator_threshold,
            ) {
                Some(spec) => OperatorChange::Set(spec),
                None => OperatorChange::Keep,
            }
        },
        expires: Some(now.plus_secs(a.expires)),
    };
    let mut signers = keys::read_secrets(&a.sign_old, "root rotate: --sign-old")?;
    let seen: BTreeSet<_> = signers.iter().map(|k| k.key_id()).collect();
    for k in keys::read_secrets(&a.sign_new, "root rotate: --sign-new")? {
        if !seen.contains(&k.key_id()) {
            signers.push(k);
        }
    }
    let refs: Vec<_> = signers.iter().collect();
    let raw = repository
        .rotate_root(&changes, &refs)
        .context("root rotate")?;
    let next = repository.root().clone();
    repo.write_metadata(MetadataFile::Root(next.version), &raw)
        .context("root rotate")?;
    let notes = resign_notes(&current, &next);
    Ok(RootReport::new(
        repo.metadata_path(MetadataFile::Root(next.version)),
        &next,
        notes,
    ))
}

/// The role as changed by the arguments, or `None` when neither keys nor a
/// threshold were given. New keys without a threshold keep the current threshold.
fn change(
    current: &Root,
    role: RoleName,
    new_keys: &[LoadedKey],
    threshold: Option<u32>,
) -> Option<RoleSpec> {
    if new_keys.is_empty() && threshold.is_none() {
        return None;
    }
    let now = RoleSpec::of(current, role);
    let threshold = threshold
        .or_else(|| now.as_ref().map(|r| r.threshold))
        .unwrap_or(1);
    if new_keys.is_empty() {
        // Only the threshold changes.
        let keys = now.map(|r| r.keys).unwrap_or_default();
        return Some(RoleSpec::new(keys, threshold));
    }
    Some(keys::role_spec(new_keys, threshold))
}

/// What must be re-signed because signing keys changed.
fn resign_notes(old: &Root, new: &Root) -> Vec<String> {
    let changed: Vec<&str> = [RoleName::Targets, RoleName::Snapshot, RoleName::Timestamp]
        .into_iter()
        .filter(|r| old.role_key_ids(*r) != new.role_key_ids(*r))
        .map(RoleName::as_str)
        .collect();
    if changed.is_empty() {
        return Vec::new();
    }
    vec![format!(
        "the {} keys changed: clients will refuse the current metadata until the next `waveguard publish` signs it with the new keys",
        changed.join(", ")
    )]
}
