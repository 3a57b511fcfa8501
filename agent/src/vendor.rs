//! The publisher's view of a release directory: reloading the vendor's
//! [`Repository`] (root chain, current timestamp, snapshot and targets) from
//! disk so the next signing continues its version numbers, and committing
//! what it signs back to disk.
//!
//! Reloading re-verifies everything with the protocol (signatures, versions,
//! pins; not expiry, so an expired timestamp can be re-signed). One case needs
//! care: after `root rotate` replaced the timestamp, snapshot or targets keys,
//! the documents on disk are signed by keys the newest root revoked. Clients
//! drop such documents when they rotate (TUF's fast-forward recovery), so the
//! vendor may sign new ones from version 1; but the list of releases must
//! survive, so old targets are re-added after checking them against the
//! root that still trusted their keys.

use crate::fsio::{ReadError, WriteError};
use crate::repo::{MetadataFile, Recovery, Repo};
use std::path::PathBuf;
use thiserror::Error;
use waveguard_protocol::metadata::build::Repository;
use waveguard_protocol::metadata::{
    read_metadata, BuildError, RoleName, Root, SnapshotError, StoredTrust, StoredTrustError,
    Targets, TargetsError, TimestampError,
};
use waveguard_protocol::wire::MetadataBundle;

/// A reloaded repository and what the user should know about the reload.
#[derive(Clone, Debug)]
pub struct Opened {
    /// The vendor's repository, ready to add targets and sign.
    pub repository: Repository,
    /// Things done on the way (recovery of an interrupted publish, re-signing after a rotation).
    pub notes: Vec<String>,
}

/// A release directory could not be reloaded for publishing.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum OpenError {
    /// There is no first root.
    #[error("there is no root metadata at {}; run `waveguard root init` first", path.display())]
    NoRoot {
        /// Where the first root should be.
        path: PathBuf,
    },
    /// A metadata file could not be read.
    #[error("{file}: {source}")]
    Read {
        /// Which document.
        file: MetadataFile,
        /// Why.
        #[source]
        source: ReadError,
    },
    /// An interrupted publish could not be finished or discarded.
    #[error("an interrupted publish could not be recovered: {0}")]
    Recover(#[source] WriteError),
    /// The metadata on disk was refused by the protocol.
    #[error("the metadata in {} was refused: {source}", dir.display())]
    Refused {
        /// The metadata directory.
        dir: PathBuf,
        /// Why.
        #[source]
        source: BuildError,
    },
    /// Targets signed by revoked keys were not properly signed by the root that trusted those keys.
    #[error("targets metadata ({}) is signed by keys root v{root_version} trusted, but not validly: {reason}", path.display())]
    OldTargets {
        /// The targets file.
        path: PathBuf,
        /// The root that trusted the signing keys.
        root_version: u64,
        /// What is wrong.
        reason: String,
    },
}

/// Every numbered root of the directory, oldest first.
pub fn root_chain(repo: &Repo) -> Result<Vec<Vec<u8>>, OpenError> {
    let chain = repo.roots_after(0).map_err(|source| OpenError::Read {
        file: MetadataFile::Root(1),
        source,
    })?;
    if chain.is_empty() {
        return Err(OpenError::NoRoot {
            path: repo.metadata_path(MetadataFile::Root(1)),
        });
    }
    Ok(chain.into_iter().map(|(_, b)| b).collect())
}

/// Reloads the vendor's repository from `repo`, first finishing or discarding
/// a publish a crash interrupted.
pub fn open(repo: &Repo) -> Result<Opened, OpenError> {
    let mut notes = Vec::new();
    match repo.recover_pending().map_err(OpenError::Recover)? {
        Recovery::Clean => {}
        Recovery::RolledForward => {
            notes.push("finished committing an interrupted publish".to_string())
        }
        Recovery::Discarded => {
            notes.push("discarded an interrupted, incomplete publish".to_string())
        }
    }
    let roots = root_chain(repo)?;
    let read = |file| {
        repo.read_metadata_if_present(file)
            .map_err(|source| OpenError::Read { file, source })
    };
    let stored = StoredTrust {
        roots: roots.clone(),
        timestamp: read(MetadataFile::Timestamp)?,
        snapshot: read(MetadataFile::Snapshot)?,
        targets: read(MetadataFile::Targets)?,
    };
    let refused = |source| OpenError::Refused {
        dir: repo.metadata_dir(),
        source,
    };
    let revoked = match Repository::from_stored(&stored) {
        Ok(repository) => return Ok(Opened { repository, notes }),
        Err(e) => match revoked_role(&e) {
            Some(r) => r,
            None => return Err(refused(e)),
        },
    };
    let mut after_rotation = StoredTrust {
        roots: roots.clone(),
        timestamp: None,
        snapshot: None,
        targets: stored.targets.clone(),
    };
    let revoked = match revoked {
        Revoked::TimestampOrSnapshot(v) => {
            notes.push(format!(
                "the timestamp or snapshot keys changed in root v{v} or later; signing fresh timestamp and snapshot"
            ));
            match Repository::from_stored(&after_rotation) {
                Ok(repository) => return Ok(Opened { repository, notes }),
                Err(e) => match revoked_role(&e) {
                    Some(Revoked::Targets(v)) => v,
                    _ => return Err(refused(e)),
                },
            }
        }
        Revoked::Targets(v) => v,
    };
    notes.push(format!(
        "the targets keys changed after root v{revoked}; re-signing the existing releases with the new keys"
    ));
    after_rotation.targets = None;
    let mut repository = Repository::from_stored(&after_rotation).map_err(refused)?;
    let old = old_targets(
        repo,
        &roots,
        revoked,
        stored.targets.as_deref().unwrap_or_default(),
    )?;
    for (path, target) in old.targets {
        repository.add_target(&path, target).map_err(refused)?;
    }
    Ok(Opened { repository, notes })
}

/// Which documents on disk are signed by keys the newest root revoked.
enum Revoked {
    /// Timestamp or snapshot, with the newest root that trusted their keys.
    TimestampOrSnapshot(u64),
    /// Targets, with the newest root that trusted their keys.
    Targets(u64),
}

fn revoked_role(e: &BuildError) -> Option<Revoked> {
    let BuildError::Load(e) = e else {
        return None;
    };
    match e {
        StoredTrustError::Timestamp(TimestampError::SignedByRevokedKeys { root_version })
        | StoredTrustError::Snapshot(SnapshotError::SignedByRevokedKeys { root_version }) => {
            Some(Revoked::TimestampOrSnapshot(*root_version))
        }
        StoredTrustError::Targets(TargetsError::SignedByRevokedKeys { root_version }) => {
            Some(Revoked::Targets(*root_version))
        }
        _ => None,
    }
}

/// Parses targets signed under root `root_version` and checks their signatures against it.
fn old_targets(
    repo: &Repo,
    roots: &[Vec<u8>],
    root_version: u64,
    raw: &[u8],
) -> Result<Targets, OpenError> {
    let bad = |reason: String| OpenError::OldTargets {
        path: repo.metadata_path(MetadataFile::Targets),
        root_version,
        reason,
    };
    let root_raw = usize::try_from(root_version)
        .ok()
        .and_then(|v| roots.get(v.checked_sub(1)?))
        .ok_or_else(|| bad("that root is not in the directory".into()))?;
    let root = read_metadata::<Root>(root_raw).map_err(|e| bad(e.to_string()))?;
    let (role, keys) = root
        .signed
        .role_keys(RoleName::Targets)
        .ok_or_else(|| bad("that root has no targets role".into()))?;
    let env = read_metadata::<Targets>(raw).map_err(|e| bad(e.to_string()))?;
    env.verify_role(RoleName::Targets.as_str(), &role, &keys)
        .map_err(|e| bad(e.to_string()))?;
    Ok(env.signed)
}

/// Writes the timestamp, snapshot and targets of a signed bundle as one commit.
pub fn commit(repo: &Repo, bundle: &MetadataBundle) -> Result<(), WriteError> {
    repo.commit_metadata(&[
        (MetadataFile::Targets, &bundle.targets),
        (MetadataFile::Snapshot, &bundle.snapshot),
        (MetadataFile::Timestamp, &bundle.timestamp),
    ])
}
