//! Persisting chunk lists, keyed by release, so a restarted agent can feed
//! them back to the engine (`Input::ChunkList`) and serve them to peers.
//!
//! The store keeps the bytes as the engine verified them and checks only
//! their size; the engine re-checks each list against its signed release
//! when it is fed back.

use super::keyed::{self, ReadFail};
use super::Store;
use std::path::PathBuf;
use thiserror::Error;
use waveguard_protocol::chunk::{CHUNK_LIST_ENTRY_LEN, CHUNK_LIST_HEADER_LEN};
use waveguard_protocol::limits::{MAX_CHUNKS_PER_RELEASE, MAX_TARGETS};
use waveguard_protocol::ReleaseId;

/// Most chunk lists kept. A list is only useful for a release the trusted
/// targets name, and one targets document names at most [`MAX_TARGETS`]
/// releases; lists of releases no longer named should be removed with
/// [`Store::remove_chunk_list`].
pub const MAX_STORED_CHUNK_LISTS: usize = MAX_TARGETS;

/// Largest chunk list kept: the encoding of [`MAX_CHUNKS_PER_RELEASE`] chunks (4.5 MiB).
const MAX_LIST_BYTES: u64 =
    CHUNK_LIST_HEADER_LEN + CHUNK_LIST_ENTRY_LEN * MAX_CHUNKS_PER_RELEASE as u64;

/// Storing a chunk list failed; the stored lists are unchanged.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum PutListError {
    /// The list is larger than any valid chunk list.
    #[error("refusing to store the chunk list of release {release}: it is {len} bytes, over the limit of {limit}")]
    TooLarge {
        /// The release.
        release: ReleaseId,
        /// Its length.
        len: usize,
        /// The limit.
        limit: u64,
    },
    /// The store already keeps as many lists as it may.
    #[error("refusing to store the chunk list of release {release}: {limit} lists are already stored; remove those of releases no longer trusted")]
    Full {
        /// The release.
        release: ReleaseId,
        /// The limit ([`MAX_STORED_CHUNK_LISTS`]).
        limit: usize,
    },
    /// The database refused the write or the flush.
    #[error("cannot store the chunk list of release {release} in {}: {source}", path.display())]
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

/// Reading the stored chunk lists failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ListsError {
    /// A stored entry is not one this store writes.
    #[error("the chunk lists in {} are damaged ({detail}); move the data directory aside and restart", path.display())]
    Corrupt {
        /// The database directory.
        path: PathBuf,
        /// What was wrong.
        detail: String,
    },
    /// The database could not be read.
    #[error("cannot read chunk lists from {}: {source}", path.display())]
    Db {
        /// The database directory.
        path: PathBuf,
        /// What sled said.
        #[source]
        source: sled::Error,
    },
}

/// Removing a chunk list failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum RemoveListError {
    /// The database refused the removal or the flush.
    #[error("cannot remove the chunk list of release {release} from {}: {source}", path.display())]
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

impl Store {
    /// Stores (or replaces) the chunk list of `release`, durably.
    pub fn put_chunk_list(&self, release: &ReleaseId, data: &[u8]) -> Result<(), PutListError> {
        if data.len() as u64 > MAX_LIST_BYTES {
            return Err(PutListError::TooLarge {
                release: *release,
                len: data.len(),
                limit: MAX_LIST_BYTES,
            });
        }
        let db_err = |source| PutListError::Db {
            release: *release,
            path: self.meta.path.clone(),
            source,
        };
        // Held so two puts cannot both pass the count check.
        let _records = self.lock_records();
        let lists = &self.meta.lists;
        let replacing = lists.contains_key(release.0).map_err(db_err)?;
        if !replacing && lists.len() >= MAX_STORED_CHUNK_LISTS {
            return Err(PutListError::Full {
                release: *release,
                limit: MAX_STORED_CHUNK_LISTS,
            });
        }
        lists.insert(release.0, data).map_err(db_err)?;
        self.meta.flush().map_err(db_err)
    }

    /// Every stored chunk list, by release (in release ID order).
    pub fn chunk_lists(&self) -> Result<Vec<(ReleaseId, Vec<u8>)>, ListsError> {
        read(&self.meta.lists).map_err(|e| match e {
            ReadFail::Db(source) => ListsError::Db {
                path: self.meta.path.clone(),
                source,
            },
            ReadFail::Malformed(detail) => ListsError::Corrupt {
                path: self.meta.path.clone(),
                detail,
            },
        })
    }

    /// Forgets the chunk list of `release` (a no-op if none is stored).
    pub fn remove_chunk_list(&self, release: &ReleaseId) -> Result<(), RemoveListError> {
        let db_err = |source| RemoveListError::Db {
            release: *release,
            path: self.meta.path.clone(),
            source,
        };
        let _records = self.lock_records();
        self.meta.lists.remove(release.0).map_err(db_err)?;
        self.meta.flush().map_err(db_err)
    }
}

/// Checks the tree at open; the error says what is wrong.
pub(super) fn validate(tree: &sled::Tree) -> Result<(), String> {
    keyed::validate(tree, "chunk list", MAX_STORED_CHUNK_LISTS, MAX_LIST_BYTES)
}

fn read(tree: &sled::Tree) -> Result<Vec<(ReleaseId, Vec<u8>)>, ReadFail> {
    keyed::read(tree, "chunk list", MAX_STORED_CHUNK_LISTS, MAX_LIST_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;
    use waveguard_protocol::chunk::encoded_list_len;

    #[test]
    fn the_size_bound_is_the_largest_valid_list() {
        assert_eq!(MAX_LIST_BYTES, encoded_list_len(MAX_CHUNKS_PER_RELEASE));
    }

    #[test]
    fn malformed_keys_and_sizes_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path().join("l.sled")).unwrap();
        let t = db.open_tree(super::super::meta::LISTS_TREE).unwrap();
        t.insert([1u8; 31], b"x".as_slice()).unwrap();
        assert!(validate(&t).unwrap_err().contains("31 bytes, not 32"));
        t.clear().unwrap();
        t.insert([1u8; 32], vec![0u8; MAX_LIST_BYTES as usize + 1])
            .unwrap();
        assert!(validate(&t).unwrap_err().contains("over the limit"));
        t.clear().unwrap();
        t.insert([1u8; 32], vec![0u8; 20]).unwrap();
        assert!(validate(&t).is_ok());
    }
}
