//! Persisting the engine's rollout records (`Output::StoreRollout`), keyed by
//! release, so a restarted agent feeds them back (`Input::RolloutRestored`)
//! and a release it installed keeps baking, or stays rolled back, instead of
//! being installed again. The bytes are the engine's; the store checks only
//! their size and count, and the engine re-checks them when fed back.

use super::keyed::{self, ReadFail};
use super::Store;
use std::path::PathBuf;
use thiserror::Error;
use waveguard_protocol::limits::MAX_TARGETS;
use waveguard_protocol::rollout::MAX_ROLLOUT_RECORD_BYTES;
use waveguard_protocol::ReleaseId;

/// Most records kept: one per release the trusted targets can name.
pub const MAX_STORED_ROLLOUTS: usize = MAX_TARGETS;

/// Storing a rollout record failed; the stored records are unchanged.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum PutRolloutError {
    /// Larger than any record the engine writes.
    #[error("refusing to store the rollout record of release {release}: it is {len} bytes, over the limit of {MAX_ROLLOUT_RECORD_BYTES}")]
    TooLarge {
        /// The release.
        release: ReleaseId,
        /// Its length.
        len: usize,
    },
    /// The store already keeps as many records as it may.
    #[error("refusing to store the rollout record of release {release}: {MAX_STORED_ROLLOUTS} records are already stored")]
    Full {
        /// The release.
        release: ReleaseId,
    },
    /// The database refused the write or the flush.
    #[error("cannot store the rollout record of release {release} in {}: {source}", path.display())]
    Db {
        /// The release.
        release: ReleaseId,
        /// The database directory.
        path: PathBuf,
        /// What sled said.
        #[source]
        source: sled::Error,
    },
}

/// Reading the stored rollout records failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum RolloutsError {
    /// A stored entry is not one this store writes.
    #[error("the rollout records in {} are damaged ({detail}); move the data directory aside and restart", path.display())]
    Corrupt {
        /// The database directory.
        path: PathBuf,
        /// What was wrong.
        detail: String,
    },
    /// The database could not be read.
    #[error("cannot read rollout records from {}: {source}", path.display())]
    Db {
        /// The database directory.
        path: PathBuf,
        /// What sled said.
        #[source]
        source: sled::Error,
    },
}

impl Store {
    /// Stores (or replaces) the rollout record of `release`, durably: the engine may act on the
    /// state it describes (a rollback, a skipped install) as soon as this returns.
    pub fn put_rollout(&self, release: &ReleaseId, data: &[u8]) -> Result<(), PutRolloutError> {
        if data.len() > MAX_ROLLOUT_RECORD_BYTES {
            return Err(PutRolloutError::TooLarge {
                release: *release,
                len: data.len(),
            });
        }
        let db_err = |source| PutRolloutError::Db {
            release: *release,
            path: self.meta.path.clone(),
            source,
        };
        let _records = self.lock_records();
        let tree = &self.meta.rollouts;
        let replacing = tree.contains_key(release.0).map_err(db_err)?;
        if !replacing && tree.len() >= MAX_STORED_ROLLOUTS {
            return Err(PutRolloutError::Full { release: *release });
        }
        tree.insert(release.0, data).map_err(db_err)?;
        self.meta.flush().map_err(db_err)
    }

    /// Every stored rollout record, by release (in release ID order).
    pub fn rollouts(&self) -> Result<Vec<(ReleaseId, Vec<u8>)>, RolloutsError> {
        read(&self.meta.rollouts).map_err(|e| match e {
            ReadFail::Db(source) => RolloutsError::Db {
                path: self.meta.path.clone(),
                source,
            },
            ReadFail::Malformed(detail) => RolloutsError::Corrupt {
                path: self.meta.path.clone(),
                detail,
            },
        })
    }
}

/// Checks the tree at open; the error says what is wrong.
pub(super) fn validate(tree: &sled::Tree) -> Result<(), String> {
    keyed::validate(
        tree,
        "rollout record",
        MAX_STORED_ROLLOUTS,
        MAX_ROLLOUT_RECORD_BYTES as u64,
    )
}

fn read(tree: &sled::Tree) -> Result<Vec<(ReleaseId, Vec<u8>)>, ReadFail> {
    keyed::read(
        tree,
        "rollout record",
        MAX_STORED_ROLLOUTS,
        MAX_ROLLOUT_RECORD_BYTES as u64,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_survive_reopening_and_oversized_ones_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let r = ReleaseId([3; 32]);
        {
            let store = Store::open(dir.path()).unwrap();
            store.put_rollout(&r, b"{\"a\":1}").unwrap();
            store.put_rollout(&r, b"{\"a\":2}").unwrap();
            let e = store
                .put_rollout(&r, &vec![b' '; MAX_ROLLOUT_RECORD_BYTES + 1])
                .unwrap_err();
            assert!(e.to_string().contains("over the limit"), "{e}");
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.rollouts().unwrap(), vec![(r, b"{\"a\":2}".to_vec())]);
    }

    #[test]
    fn malformed_keys_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path().join("r.sled")).unwrap();
        let t = db.open_tree(super::super::meta::ROLLOUTS_TREE).unwrap();
        t.insert([1u8; 31], b"x".as_slice()).unwrap();
        assert!(validate(&t).unwrap_err().contains("31 bytes, not 32"));
    }
}

/// Removing a rollout record failed; it may still be stored.
#[derive(Debug, Error)]
#[error("cannot remove the rollout record of release {release} from {}: {source}", path.display())]
pub struct RemoveRolloutError {
    /// The release.
    pub release: ReleaseId,
    /// The database directory.
    pub path: PathBuf,
    /// What sled said.
    #[source]
    pub source: sled::Error,
}

impl Store {
    /// Forgets the rollout record of `release` (a no-op if none is stored).
    pub fn remove_rollout(&self, release: &ReleaseId) -> Result<(), RemoveRolloutError> {
        let db_err = |source| RemoveRolloutError {
            release: *release,
            path: self.meta.path.clone(),
            source,
        };
        let _records = self.lock_records();
        self.meta.rollouts.remove(release.0).map_err(db_err)?;
        self.meta.flush().map_err(db_err)
    }
}
