//! Loading a release directory's metadata exactly as a client would: from a
//! trusted root, through every root rotation on disk, then timestamp,
//! snapshot and targets, each checked by the protocol's [`TrustedState`] at a
//! given time.
//!
//! The agent only reads files here; every trust decision (signatures,
//! thresholds, versions, pins, expiry) is the protocol's. The errors add what
//! the protocol cannot know: which file on disk was refused.

use crate::fsio::{self, ReadError};
use crate::repo::{MetadataFile, Repo};
use std::fmt;
use std::path::{Path, PathBuf};
use thiserror::Error;
use waveguard_protocol::limits::MAX_ROOT_BYTES;
use waveguard_protocol::metadata::{
    RootError, SnapshotError, TargetsError, TimestampError, TrustedState,
};
use waveguard_protocol::release::Release;
use waveguard_protocol::{ReleaseId, Timestamp};

/// Where trust came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TrustAnchor {
    /// A root the user supplied (`--root`), obtained out of band.
    Given(PathBuf),
    /// The directory's own first root: trust on first use, no protection
    /// against a directory forged as a whole.
    FirstUse(PathBuf),
}

impl TrustAnchor {
    /// The root file trust starts from.
    pub fn path(&self) -> &Path {
        match self {
            TrustAnchor::Given(p) | TrustAnchor::FirstUse(p) => p,
        }
    }

    /// The warning to show for this anchor, if any.
    pub fn warning(&self) -> Option<String> {
        match self {
            TrustAnchor::Given(_) => None,
            TrustAnchor::FirstUse(p) => Some(format!(
                "no --root given: trusting {} on first use; pass a root obtained out of band to detect a forged directory",
                p.display()
            )),
        }
    }
}

impl fmt::Display for TrustAnchor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrustAnchor::Given(p) => write!(f, "{}", p.display()),
            TrustAnchor::FirstUse(p) => write!(f, "{} (trusted on first use)", p.display()),
        }
    }
}

/// Metadata accepted from a release directory.
#[derive(Clone, Debug)]
pub struct Loaded {
    /// The protocol's trusted state after every update.
    pub state: TrustedState,
    /// Where trust started.
    pub anchor: TrustAnchor,
    /// Root versions walked after the anchor, in order.
    pub rotations: Vec<u64>,
}

/// The directory's metadata was not accepted.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum LoadError {
    /// A metadata file could not be read (missing, too large, unreadable).
    #[error("{file}: {source}")]
    Read {
        /// Which document.
        file: MetadataFile,
        /// Why.
        #[source]
        source: ReadError,
    },
    /// The trusted root file could not be read.
    #[error("trusted root: {0}")]
    ReadAnchor(#[source] ReadError),
    /// The trusted root itself was refused.
    #[error("trusted root {}: {source}", path.display())]
    Anchor {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: RootError,
    },
    /// A root rotation was refused.
    #[error("root metadata version {version} ({}) was refused: {source}", path.display())]
    Root {
        /// Its version (from the file name).
        version: u64,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: RootError,
    },
    /// The timestamp was refused.
    #[error("timestamp metadata ({}) was refused: {source}", path.display())]
    Timestamp {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: TimestampError,
    },
    /// The snapshot was refused.
    #[error("snapshot metadata ({}) was refused: {source}", path.display())]
    Snapshot {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: SnapshotError,
    },
    /// The targets were refused.
    #[error("targets metadata ({}) was refused: {source}", path.display())]
    Targets {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: TargetsError,
    },
}

/// Loads and checks `repo`'s metadata at `now`, starting from the root file
/// `anchor` or, without one, from the directory's own first root.
pub fn load(repo: &Repo, anchor: Option<&Path>, now: Timestamp) -> Result<Loaded, LoadError> {
    let anchor = match anchor {
        Some(p) => TrustAnchor::Given(p.to_owned()),
        None => TrustAnchor::FirstUse(repo.metadata_path(MetadataFile::Root(1))),
    };
    let anchor_bytes =
        fsio::read_bounded(anchor.path(), MAX_ROOT_BYTES as u64).map_err(LoadError::ReadAnchor)?;
    let mut state = TrustedState::new(&anchor_bytes).map_err(|source| LoadError::Anchor {
        path: anchor.path().to_owned(),
        source,
    })?;
    let read_err = |file| move |source| LoadError::Read { file, source };
    let mut rotations = Vec::new();
    let chain = repo
        .roots_after(state.root_version())
        .map_err(read_err(MetadataFile::Root(
            state.root_version().saturating_add(1),
        )))?;
    for (version, bytes) in chain {
        state
            .update_root(&bytes)
            .map_err(|source| LoadError::Root {
                version,
                path: repo.metadata_path(MetadataFile::Root(version)),
                source,
            })?;
        rotations.push(version);
    }
    let path = |f| repo.metadata_path(f);
    let bytes = repo
        .read_metadata(MetadataFile::Timestamp)
        .map_err(read_err(MetadataFile::Timestamp))?;
    state
        .update_timestamp(&bytes, now)
        .map_err(|source| LoadError::Timestamp {
            path: path(MetadataFile::Timestamp),
            source,
        })?;
    let bytes = repo
        .read_metadata(MetadataFile::Snapshot)
        .map_err(read_err(MetadataFile::Snapshot))?;
    state
        .update_snapshot(&bytes, now)
        .map_err(|source| LoadError::Snapshot {
            path: path(MetadataFile::Snapshot),
            source,
        })?;
    let bytes = repo
        .read_metadata(MetadataFile::Targets)
        .map_err(read_err(MetadataFile::Targets))?;
    state
        .update_targets(&bytes, now)
        .map_err(|source| LoadError::Targets {
            path: path(MetadataFile::Targets),
            source,
        })?;
    Ok(Loaded {
        state,
        anchor,
        rotations,
    })
}

/// A release asked for by name is not in the trusted targets.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FindError {
    /// Neither a release ID nor `product/version`.
    #[error("{0:?} is neither a release ID (64 hex digits) nor product/version")]
    Unrecognised(String),
    /// No such release in the trusted targets.
    #[error("release {wanted} is not in targets metadata v{targets_version} (it lists: {known})")]
    NotFound {
        /// What was asked for.
        wanted: String,
        /// The trusted targets version.
        targets_version: u64,
        /// The releases it does list, as product/version.
        known: String,
    },
}

/// Most releases named in a "not found" message; a targets document may list
/// up to 1024, which would drown the message.
pub const MAX_LISTED_RELEASES: usize = 10;

/// Finds a release of the trusted targets by ID (64 hex digits) or `product/version`.
pub fn find_release(state: &TrustedState, spec: &str) -> Result<Release, FindError> {
    let releases = state.releases();
    let found = if let Ok(id) = spec.parse::<ReleaseId>() {
        releases.iter().find(|r| r.id == id)
    } else if let Some((product, version)) = spec.split_once('/') {
        releases
            .iter()
            .find(|r| r.info.product == product && r.info.version == version)
    } else {
        return Err(FindError::Unrecognised(spec.chars().take(80).collect()));
    };
    found.cloned().ok_or_else(|| {
        let mut known: Vec<String> = releases
            .iter()
            .take(MAX_LISTED_RELEASES)
            .map(|r| format!("{}/{}", r.info.product, r.info.version))
            .collect();
        if releases.len() > MAX_LISTED_RELEASES {
            known.push(format!("and {} more", releases.len() - MAX_LISTED_RELEASES));
        }
        FindError::NotFound {
            wanted: spec.chars().take(80).collect(),
            targets_version: state.versions().targets.unwrap_or(0),
            known: if known.is_empty() {
                "nothing".into()
            } else {
                known.join(", ")
            },
        }
    })
}
