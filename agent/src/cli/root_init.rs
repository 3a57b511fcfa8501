//! `waveguard root init`: creates a release directory and its first root
//! metadata (version 1), signed by the root keys given.
//!
//! Every role's keys come from key files; only the public parts go into the
//! root, but enough of the root key files must hold private keys to meet the
//! root threshold, because a root signs itself.

use super::args;
use super::keys::{self, LoadedKey};
use crate::repo::{MetadataFile, Repo};
use anyhow::{bail, Context as _};
use clap::Args;
use std::fmt;
use std::path::PathBuf;
use waveguard_protocol::metadata::build::Repository;
use waveguard_protocol::metadata::{new_root, sign_document, RoleName, Root, RootSpec};
use waveguard_protocol::{KeyId, Timestamp};

/// Arguments of `waveguard root init`.
#[derive(Args, Debug, Clone)]
pub struct RootInitArgs {
    /// The release directory to create.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Root key files (the root signs itself, so at least the threshold of them must hold private keys).
    #[arg(long = "root-key", value_name = "FILE", num_args = 1.., required = true)]
    pub root_keys: Vec<PathBuf>,
    /// Signatures needed on a root.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub root_threshold: u32,
    /// Targets key files (public part used).
    #[arg(long = "targets-key", value_name = "FILE", num_args = 1.., required = true)]
    pub targets_keys: Vec<PathBuf>,
    /// Signatures needed on targets metadata.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub targets_threshold: u32,
    /// Snapshot key files (public part used).
    #[arg(long = "snapshot-key", value_name = "FILE", num_args = 1.., required = true)]
    pub snapshot_keys: Vec<PathBuf>,
    /// Signatures needed on snapshot metadata.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub snapshot_threshold: u32,
    /// Timestamp key files (public part used).
    #[arg(long = "timestamp-key", value_name = "FILE", num_args = 1.., required = true)]
    pub timestamp_keys: Vec<PathBuf>,
    /// Signatures needed on timestamp metadata.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub timestamp_threshold: u32,
    /// Operator key files (signs fleet certificates and halt/resume directives).
    #[arg(long = "operator-key", value_name = "FILE", num_args = 1..)]
    pub operator_keys: Vec<PathBuf>,
    /// Signatures needed from the operator role.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 1,
        requires = "operator_keys"
    )]
    pub operator_threshold: u32,
    /// How long the root stays valid (s, m, h, d, w).
    #[arg(long, value_name = "DURATION", default_value = "365d", value_parser = args::duration_secs)]
    pub expires: u64,
}

/// One role of a root, for the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleSummary {
    /// The role.
    pub role: RoleName,
    /// Signatures needed.
    pub threshold: u32,
    /// Keys allowed to sign.
    pub keys: Vec<KeyId>,
}

/// What `root init` or `root rotate` wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootReport {
    /// The file written.
    pub path: PathBuf,
    /// The root's version.
    pub version: u64,
    /// When it expires.
    pub expires: Timestamp,
    /// Its roles.
    pub roles: Vec<RoleSummary>,
    /// What the user should do next, if anything.
    pub notes: Vec<String>,
}

impl RootReport {
    /// The report for a signed root written to `path`.
    pub fn new(path: PathBuf, root: &Root, notes: Vec<String>) -> Self {
        let roles = RoleName::TOP_LEVEL
            .into_iter()
            .chain([RoleName::Operator])
            .filter_map(|role| {
                root.role(role).map(|rk| RoleSummary {
                    role,
                    threshold: rk.threshold,
                    keys: rk.keyids.clone(),
                })
            })
            .collect();
        RootReport {
            path,
            version: root.version,
            expires: root.expires,
            roles,
            notes,
        }
    }
}

impl fmt::Display for RootReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "wrote root metadata version {} to {} (expires {})",
            self.version,
            self.path.display(),
            self.expires
        )?;
        for r in &self.roles {
            let ids: Vec<String> = r.keys.iter().map(keys::short_id).collect();
            write!(
                f,
                "\n  {:<9} {} of {}: {}",
                r.role.as_str(),
                r.threshold,
                r.keys.len(),
                ids.join(", ")
            )?;
        }
        for n in &self.notes {
            write!(f, "\nnote: {n}")?;
        }
        Ok(())
    }
}

/// Runs `root init` as of `now`.
pub fn run(a: &RootInitArgs, now: Timestamp) -> anyhow::Result<RootReport> {
    let repo = Repo::new(&a.out);
    let first = repo.metadata_path(MetadataFile::Root(1));
    if first.exists() {
        bail!(
            "root init: {} already exists; use `waveguard root rotate` to change the keys",
            first.display()
        );
    }
    let root_keys = keys::read_all(&a.root_keys, "root init: --root-key")?;
    let public = |paths: &[PathBuf], flag| keys::read_all(paths, flag);
    let targets = public(&a.targets_keys, "root init: --targets-key")?;
    let snapshot = public(&a.snapshot_keys, "root init: --snapshot-key")?;
    let timestamp = public(&a.timestamp_keys, "root init: --timestamp-key")?;
    let operator = public(&a.operator_keys, "root init: --operator-key")?;
    let spec = RootSpec {
        root: keys::role_spec(&root_keys, a.root_threshold),
        targets: keys::role_spec(&targets, a.targets_threshold),
        snapshot: keys::role_spec(&snapshot, a.snapshot_threshold),
        timestamp: keys::role_spec(&timestamp, a.timestamp_threshold),
        operator: (!operator.is_empty()).then(|| keys::role_spec(&operator, a.operator_threshold)),
        expires: now.plus_secs(a.expires),
    };
    let root = new_root(&spec).context("root init")?;
    let signers = signers_for_threshold(&root_keys, a.root_threshold)?;
    let refs: Vec<_> = signers.iter().collect();
    let raw = sign_document(root.clone(), &refs).context("root init")?;
    // What a client will do with it: it must be signed to its own threshold.
    Repository::new(&raw).context("root init")?;
    repo.create_layout()
        .context("root init: cannot create the release directory")?;
    repo.write_metadata(MetadataFile::Root(1), &raw)
        .context("root init")?;
    Ok(RootReport::new(first, &root, Vec::new()))
}

/// The secret keys among the root keys, checked to be enough for `threshold`.
fn signers_for_threshold(
    root_keys: &[LoadedKey],
    threshold: u32,
) -> anyhow::Result<Vec<waveguard_protocol::SigningKey>> {
    let signers = keys::secrets(root_keys);
    if (signers.len() as u64) < u64::from(threshold) {
        bail!(
            "root init: the root threshold is {threshold} but only {} of the --root-key files hold a private key; a root must be signed by its own keys",
            signers.len()
        );
    }
    Ok(signers)
}
