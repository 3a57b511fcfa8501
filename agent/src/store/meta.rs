//! The store's sled database: opening it (and refusing one it cannot trust),
//! its format marker, and the records of which chunks are held.
//!
//! Trees: the default tree holds only the format marker; `chunks` maps a
//! chunk hash (32 bytes) to its length (u32, big-endian); `chunk_lists` and
//! `trust` belong to [`super::lists`] and [`super::trust`], `rollouts` to
//! [`super::rollouts`]. Every change is
//! followed by a flush (an fsync), because the engine is told a chunk is
//! durable as soon as the call returns.

use super::{lists, rollouts, trust, History, OpenError, FORMAT_FILE};
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use waveguard_protocol::chunk::ChunkHash;
use waveguard_protocol::limits::MAX_CHUNK_BYTES;

/// Page cache sled may use, in bytes. sled's default is 1 GiB, far more than
/// the metadata needs: trust is at most about 30 MiB, a chunk record 36
/// bytes, and chunk lists are read once at start-up. 64 MiB keeps the
/// agent's footprint small on endpoints.
pub const SLED_CACHE_BYTES: u64 = 64 * 1024 * 1024;

/// The format marker this agent writes and accepts. A later, incompatible
/// layout changes it, so an old agent refuses a new store instead of
/// misreading it.
pub(super) const FORMAT: &str = "waveguard-store 1";
const FORMAT_KEY: &[u8] = b"format";
const CHUNKS_TREE: &[u8] = b"chunks";
pub(super) const LISTS_TREE: &[u8] = b"chunk_lists";
pub(super) const TRUST_TREE: &[u8] = b"trust";
pub(super) const ROLLOUTS_TREE: &[u8] = b"rollouts";

/// Handles on the open database.
#[derive(Debug)]
pub(super) struct Meta {
    pub(super) path: PathBuf,
    db: sled::Db,
    chunks: sled::Tree,
    pub(super) lists: sled::Tree,
    pub(super) trust: sled::Tree,
    pub(super) rollouts: sled::Tree,
}

impl Meta {
    /// Opens (creating if missing) and validates the database at `path`;
    /// `history` says whether a store was initialised there before.
    pub(super) fn open(path: &Path, history: History) -> Result<Meta, OpenError> {
        let config = sled::Config::new()
            .path(path)
            .cache_capacity(SLED_CACHE_BYTES);
        // sled releases its file lock only when its background flusher drops
        // the last handle, a moment after the previous owner closed it (an
        // in-process restart): a lock held that briefly is waited out.
        let mut attempts = 0;
        let db = loop {
            match open_once(path, &config) {
                Err(OpenError::InUse { .. }) if attempts < IN_USE_RETRIES => {
                    attempts += 1;
                    std::thread::sleep(IN_USE_PAUSE);
                }
                other => break other?,
            }
        };
        let db_err = |source| OpenError::Db {
            path: path.to_owned(),
            source,
        };
        check_format(path, &db, history)?;
        let meta = Meta {
            path: path.to_owned(),
            chunks: db.open_tree(CHUNKS_TREE).map_err(db_err)?,
            lists: db.open_tree(LISTS_TREE).map_err(db_err)?,
            trust: db.open_tree(TRUST_TREE).map_err(db_err)?,
            rollouts: db.open_tree(ROLLOUTS_TREE).map_err(db_err)?,
            db,
        };
        let corrupt = |detail| OpenError::Corrupt {
            path: path.to_owned(),
            detail,
        };
        trust::validate(&meta.trust).map_err(corrupt)?;
        lists::validate(&meta.lists).map_err(corrupt)?;
        rollouts::validate(&meta.rollouts).map_err(corrupt)?;
        Ok(meta)
    }

    /// Makes every change so far durable.
    pub(super) fn flush(&self) -> Result<(), sled::Error> {
        self.db.flush().map(|_| ())
    }

    /// The recorded length of a held chunk. A record that does not decode
    /// counts as absent: it is never served, and [`super::Store::check_chunks`]
    /// removes it.
    pub(super) fn chunk_len(&self, hash: &ChunkHash) -> Result<Option<u32>, sled::Error> {
        Ok(self.chunks.get(hash)?.and_then(|v| decode_len(&v)))
    }

    /// Records a chunk as held and flushes.
    pub(super) fn record_chunk(&self, hash: &ChunkHash, len: u32) -> Result<(), sled::Error> {
        self.chunks.insert(hash, &len.to_be_bytes())?;
        self.flush()
    }

    /// Removes chunk records (by raw key, so malformed ones can go too) and flushes.
    pub(super) fn unrecord_chunks<K: AsRef<[u8]>>(&self, keys: &[K]) -> Result<(), sled::Error> {
        if keys.is_empty() {
            return Ok(());
        }
        let mut batch = sled::Batch::default();
        for k in keys {
            batch.remove(k.as_ref());
        }
        self.chunks.apply_batch(batch)?;
        self.flush()
    }

    /// Every chunk record: the raw key, and the hash and length if it decodes.
    pub(super) fn chunk_records(
        &self,
    ) -> impl Iterator<Item = Result<(sled::IVec, Option<(ChunkHash, u32)>), sled::Error>> + '_
    {
        self.chunks.iter().map(|item| {
            let (k, v) = item?;
            let decoded = <[u8; 32]>::try_from(k.as_ref()).ok().zip(decode_len(&v));
            Ok((k, decoded))
        })
    }
}

/// A chunk length as recorded: 4 bytes big-endian, within the chunk size bounds.
fn decode_len(v: &[u8]) -> Option<u32> {
    let len = u32::from_be_bytes(<[u8; 4]>::try_from(v).ok()?);
    (1..=MAX_CHUNK_BYTES).contains(&len).then_some(len)
}

/// How often, and how long apart, an open finding the lock held tries again (1 s in all).
const IN_USE_RETRIES: u32 = 20;
const IN_USE_PAUSE: std::time::Duration = std::time::Duration::from_millis(50);

/// One attempt to open the database.
fn open_once(path: &Path, config: &sled::Config) -> Result<sled::Db, OpenError> {
    // sled may panic on some kinds of damage instead of returning an
    // error; a damaged store must be refused, not crash the agent.
    let opened = panic::catch_unwind(AssertUnwindSafe(|| config.open())).map_err(|_| {
        OpenError::Corrupt {
            path: path.to_owned(),
            detail: "the database engine could not read it".into(),
        }
    })?;
    opened.map_err(|e| open_error(path, e))
}

fn open_error(path: &Path, e: sled::Error) -> OpenError {
    match e {
        // sled reports a held lock only as text (fs2's try_lock_exclusive failing).
        sled::Error::Io(ref io) if io.to_string().contains("could not acquire lock") => {
            OpenError::InUse {
                path: path.to_owned(),
            }
        }
        sled::Error::Corruption { at, .. } => OpenError::Corrupt {
            path: path.to_owned(),
            detail: match at {
                Some(at) => format!("sled found damaged data at {at:?}"),
                None => "sled found damaged data".into(),
            },
        },
        source => OpenError::Db {
            path: path.to_owned(),
            source,
        },
    }
}

/// Checks the format marker, writing it into a brand-new database.
fn check_format(path: &Path, db: &sled::Db, history: History) -> Result<(), OpenError> {
    let db_err = |source| OpenError::Db {
        path: path.to_owned(),
        source,
    };
    match db.get(FORMAT_KEY).map_err(db_err)? {
        Some(found) if found == FORMAT.as_bytes() => Ok(()),
        Some(found) => Err(OpenError::UnknownFormat {
            path: path.to_owned(),
            // Bounded, so a damaged marker cannot flood the message.
            found: String::from_utf8_lossy(&found[..found.len().min(64)]).into_owned(),
            expected: FORMAT,
        }),
        None if is_empty(db).map_err(db_err)? => {
            if history == History::Initialised {
                // sled drops a log it cannot read as if it were a torn write.
                return Err(OpenError::Corrupt {
                    path: path.to_owned(),
                    detail: format!(
                        "it reads as empty, yet {FORMAT_FILE} shows a store was kept here: its log is damaged"
                    ),
                });
            }
            db.insert(FORMAT_KEY, FORMAT.as_bytes()).map_err(db_err)?;
            db.flush().map_err(db_err)?;
            Ok(())
        }
        None => Err(OpenError::Corrupt {
            path: path.to_owned(),
            detail: "it holds data but no format marker".into(),
        }),
    }
}

/// Whether no tree of the database holds anything.
fn is_empty(db: &sled::Db) -> Result<bool, sled::Error> {
    if !db.is_empty() {
        return Ok(false);
    }
    for name in db.tree_names() {
        if !db.open_tree(name)?.is_empty() {
            return Ok(false);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_decode_only_within_bounds() {
        assert_eq!(decode_len(&7u32.to_be_bytes()), Some(7));
        assert_eq!(
            decode_len(&MAX_CHUNK_BYTES.to_be_bytes()),
            Some(MAX_CHUNK_BYTES)
        );
        assert_eq!(decode_len(&0u32.to_be_bytes()), None);
        assert_eq!(decode_len(&(MAX_CHUNK_BYTES + 1).to_be_bytes()), None);
        assert_eq!(decode_len(&[0, 0, 7]), None);
    }

    #[test]
    fn a_database_without_marker_but_with_data_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.sled");
        {
            let db = sled::open(&path).unwrap();
            db.insert(b"something", b"else").unwrap();
            db.flush().unwrap();
        }
        let err = Meta::open(&path, History::Fresh).unwrap_err();
        assert!(matches!(err, OpenError::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains("no format marker"), "{err}");
    }

    #[test]
    fn another_format_is_refused_and_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.sled");
        {
            let db = sled::open(&path).unwrap();
            db.insert(FORMAT_KEY, b"waveguard-store 99").unwrap();
            db.flush().unwrap();
        }
        let err = Meta::open(&path, History::Fresh).unwrap_err();
        assert!(
            matches!(&err, OpenError::UnknownFormat { found, .. } if found == "waveguard-store 99"),
            "{err}"
        );
    }

    #[test]
    fn a_second_open_is_refused_as_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.sled");
        let _first = Meta::open(&path, History::Fresh).unwrap();
        let err = Meta::open(&path, History::Fresh).unwrap_err();
        assert!(matches!(err, OpenError::InUse { .. }), "{err}");
    }
}
