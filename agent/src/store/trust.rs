//! Persisting the trusted metadata (the protocol's `StoredTrust`): the root
//! chain, timestamp, snapshot and targets, as the bytes the engine trusted.
//!
//! Rollback protection across restarts depends on these documents matching
//! each other, so they are written as one atomic sled batch that replaces the
//! whole set: after a crash the store holds either the old set or the new
//! one, never a mix. The store checks only sizes and shape; the engine
//! re-verifies every signature and version rule when it reloads them with
//! `TrustedState::from_stored`.
//!
//! Keys in the `trust` tree: `root.` + index (u32 big-endian, so sled's byte
//! order is the chain's order, oldest first), `timestamp`, `snapshot`, `targets`.

use super::Store;
use std::path::PathBuf;
use thiserror::Error;
use waveguard_protocol::limits::{
    MAX_BUNDLE_ROOTS, MAX_ROOT_BYTES, MAX_SNAPSHOT_BYTES, MAX_TARGETS_BYTES, MAX_TIMESTAMP_BYTES,
};
use waveguard_protocol::metadata::StoredTrust;

const ROOT_PREFIX: &[u8] = b"root.";
const TIMESTAMP_KEY: &[u8] = b"timestamp";
const SNAPSHOT_KEY: &[u8] = b"snapshot";
const TARGETS_KEY: &[u8] = b"targets";

/// Storing the trusted metadata failed; the previously stored set is unchanged.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum PutTrustError {
    /// The set has no root, so it could never be reloaded.
    #[error("refusing to store trusted metadata without a root: it could not be reloaded")]
    NoRoots,
    /// More roots than a node keeps.
    #[error("refusing to store {count} roots: a node keeps at most {limit}")]
    TooManyRoots {
        /// Roots given.
        count: usize,
        /// The limit ([`MAX_BUNDLE_ROOTS`]).
        limit: usize,
    },
    /// A document is larger than the protocol accepts for its kind.
    #[error("refusing to store the {doc} document of {len} bytes: the limit is {limit}")]
    TooLarge {
        /// Which document ("root 0", "timestamp", ...).
        doc: String,
        /// Its length.
        len: usize,
        /// The limit for its kind.
        limit: usize,
    },
    /// The database refused the write or the flush.
    #[error("cannot store trusted metadata in {}: {source}", path.display())]
    Db {
        /// The database directory.
        path: PathBuf,
        /// What sled said.
        #[source]
        source: sled::Error,
    },
}

/// Reading the stored trusted metadata failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum TrustError {
    /// The stored set is not one this store writes (checked at open, so this
    /// means the database changed underneath the agent).
    #[error("the trusted metadata in {} is damaged ({detail}); move the data directory aside and restart", path.display())]
    Corrupt {
        /// The database directory.
        path: PathBuf,
        /// What was wrong.
        detail: String,
    },
    /// The database could not be read.
    #[error("cannot read trusted metadata from {}: {source}", path.display())]
    Db {
        /// The database directory.
        path: PathBuf,
        /// What sled said.
        #[source]
        source: sled::Error,
    },
}

impl Store {
    /// Replaces the stored trusted metadata with `trust`, atomically and
    /// durably: when this returns `Ok` the whole set survives a crash, and
    /// on any error the previous set is still the stored one.
    pub fn put_trust(&self, trust: &StoredTrust) -> Result<(), PutTrustError> {
        check_bounds(trust)?;
        let db_err = |source| PutTrustError::Db {
            path: self.meta.path.clone(),
            source,
        };
        let _records = self.lock_records();
        let mut batch = sled::Batch::default();
        // Remove every old key first: a shorter root chain or a dropped
        // document must not leave a stale entry behind.
        for key in self.meta.trust.iter().keys() {
            batch.remove(key.map_err(db_err)?);
        }
        for (i, root) in trust.roots.iter().enumerate() {
            batch.insert(root_key(i), root.as_slice());
        }
        for (key, doc) in [
            (TIMESTAMP_KEY, &trust.timestamp),
            (SNAPSHOT_KEY, &trust.snapshot),
            (TARGETS_KEY, &trust.targets),
        ] {
            if let Some(doc) = doc {
                batch.insert(key, doc.as_slice());
            }
        }
        self.meta.trust.apply_batch(batch).map_err(db_err)?;
        self.meta.flush().map_err(db_err)
    }

    /// The stored trusted metadata, or `None` if none was ever stored.
    pub fn trust(&self) -> Result<Option<StoredTrust>, TrustError> {
        read(&self.meta.trust).map_err(|e| match e {
            ReadFail::Db(source) => TrustError::Db {
                path: self.meta.path.clone(),
                source,
            },
            ReadFail::Malformed(detail) => TrustError::Corrupt {
                path: self.meta.path.clone(),
                detail,
            },
        })
    }
}

/// Checks the trust tree at open; the error says what is wrong.
pub(super) fn validate(tree: &sled::Tree) -> Result<(), String> {
    match read(tree) {
        Ok(_) => Ok(()),
        Err(ReadFail::Malformed(detail)) => Err(detail),
        Err(ReadFail::Db(e)) => Err(format!("its trusted metadata cannot be read: {e}")),
    }
}

fn check_bounds(trust: &StoredTrust) -> Result<(), PutTrustError> {
    if trust.roots.is_empty() {
        return Err(PutTrustError::NoRoots);
    }
    if trust.roots.len() > MAX_BUNDLE_ROOTS {
        return Err(PutTrustError::TooManyRoots {
            count: trust.roots.len(),
            limit: MAX_BUNDLE_ROOTS,
        });
    }
    let too_large = |doc: String, len: usize, limit: usize| {
        (len > limit).then_some(PutTrustError::TooLarge { doc, len, limit })
    };
    let roots = trust
        .roots
        .iter()
        .enumerate()
        .map(|(i, r)| too_large(format!("root {i}"), r.len(), MAX_ROOT_BYTES));
    let others = [
        ("timestamp", &trust.timestamp, MAX_TIMESTAMP_BYTES),
        ("snapshot", &trust.snapshot, MAX_SNAPSHOT_BYTES),
        ("targets", &trust.targets, MAX_TARGETS_BYTES),
    ]
    .into_iter()
    .map(|(doc, bytes, limit)| {
        bytes
            .as_ref()
            .and_then(|b| too_large(doc.to_owned(), b.len(), limit))
    });
    match roots.chain(others).flatten().next() {
        Some(err) => Err(err),
        None => Ok(()),
    }
}

fn root_key(index: usize) -> Vec<u8> {
    // `index` < MAX_BUNDLE_ROOTS, checked before any key is made.
    let index = u32::try_from(index).unwrap_or(u32::MAX);
    [ROOT_PREFIX, &index.to_be_bytes()].concat()
}

enum ReadFail {
    Db(sled::Error),
    Malformed(String),
}

/// Reads and shape-checks the whole set.
fn read(tree: &sled::Tree) -> Result<Option<StoredTrust>, ReadFail> {
    let mut out = StoredTrust::default();
    let mut any = false;
    for item in tree.iter() {
        let (key, value) = item.map_err(ReadFail::Db)?;
        any = true;
        let (doc, limit, slot) = match key.as_ref() {
            TIMESTAMP_KEY => ("timestamp", MAX_TIMESTAMP_BYTES, &mut out.timestamp),
            SNAPSHOT_KEY => ("snapshot", MAX_SNAPSHOT_BYTES, &mut out.snapshot),
            TARGETS_KEY => ("targets", MAX_TARGETS_BYTES, &mut out.targets),
            k => {
                // Keys come in byte order, so roots arrive oldest first.
                let index = k
                    .strip_prefix(ROOT_PREFIX)
                    .and_then(|i| <[u8; 4]>::try_from(i).ok())
                    .map(u32::from_be_bytes)
                    .ok_or_else(|| {
                        ReadFail::Malformed(format!(
                            "unknown trust key {}",
                            hex::encode(&k[..k.len().min(32)])
                        ))
                    })?;
                if usize::try_from(index).ok() != Some(out.roots.len()) {
                    return Err(ReadFail::Malformed(format!(
                        "root {} is missing from the stored chain",
                        out.roots.len()
                    )));
                }
                if out.roots.len() >= MAX_BUNDLE_ROOTS {
                    return Err(ReadFail::Malformed(format!(
                        "more than {MAX_BUNDLE_ROOTS} roots are stored"
                    )));
                }
                if value.len() > MAX_ROOT_BYTES {
                    return Err(ReadFail::Malformed(format!(
                        "stored root {index} is {} bytes, over the limit of {MAX_ROOT_BYTES}",
                        value.len()
                    )));
                }
                out.roots.push(value.to_vec());
                continue;
            }
        };
        if value.len() > limit {
            return Err(ReadFail::Malformed(format!(
                "the stored {doc} is {} bytes, over the limit of {limit}",
                value.len()
            )));
        }
        *slot = Some(value.to_vec());
    }
    if !any {
        return Ok(None);
    }
    if out.roots.is_empty() {
        return Err(ReadFail::Malformed(
            "metadata is stored without any root".into(),
        ));
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> (tempfile::TempDir, sled::Tree) {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path().join("t.sled")).unwrap();
        let tree = db.open_tree(super::super::meta::TRUST_TREE).unwrap();
        (dir, tree)
    }

    #[test]
    fn a_gap_in_the_root_chain_is_malformed() {
        let (_dir, t) = tree();
        t.insert(root_key(0), b"r0".as_slice()).unwrap();
        t.insert(root_key(2), b"r2".as_slice()).unwrap();
        let err = validate(&t).unwrap_err();
        assert!(err.contains("root 1 is missing"), "{err}");
    }

    #[test]
    fn documents_without_a_root_are_malformed() {
        let (_dir, t) = tree();
        t.insert(TIMESTAMP_KEY, b"ts".as_slice()).unwrap();
        let err = validate(&t).unwrap_err();
        assert!(err.contains("without any root"), "{err}");
    }

    #[test]
    fn an_unknown_key_is_malformed() {
        let (_dir, t) = tree();
        t.insert(root_key(0), b"r0".as_slice()).unwrap();
        t.insert(b"mirrors", b"x".as_slice()).unwrap();
        let err = validate(&t).unwrap_err();
        assert!(err.contains("unknown trust key"), "{err}");
    }

    #[test]
    fn an_oversized_document_is_malformed() {
        let (_dir, t) = tree();
        t.insert(root_key(0), b"r0".as_slice()).unwrap();
        t.insert(TIMESTAMP_KEY, vec![b'x'; MAX_TIMESTAMP_BYTES + 1])
            .unwrap();
        let err = validate(&t).unwrap_err();
        assert!(err.contains("timestamp"), "{err}");
    }

    #[test]
    fn roots_read_back_in_chain_order_past_index_255() {
        // Big-endian indices sort numerically; this guards the key encoding.
        assert!(root_key(255) < root_key(256));
        let (_dir, t) = tree();
        for i in 0..3 {
            t.insert(root_key(i), vec![i as u8]).unwrap();
        }
        let read = read(&t).ok().flatten().unwrap();
        assert_eq!(read.roots, vec![vec![0], vec![1], vec![2]]);
    }
}
