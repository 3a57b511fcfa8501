//! Chunks on disk: writing them durably before recording them, reading them
//! back verified, and dropping those found damaged.
//!
//! Who verifies what: [`Store::put_chunk`] re-hashes the bytes before writing
//! (blake3 costs less than the write and fsync), and [`Store::get_chunk`]
//! re-hashes what it reads, so the store never returns bytes that differ
//! from their name, whatever happened on disk. A chunk found damaged is
//! dropped from the record and its file deleted, so the engine fetches it
//! again. (The engine verifies loaded chunks once more; that is its own
//! defence and costs one more hash.)

use super::disk::{self, Fill};
use super::Store;
use std::fmt;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use thiserror::Error;
use waveguard_protocol::chunk::{self, ChunkHash};
use waveguard_protocol::limits::MAX_CHUNK_BYTES;

/// What is wrong with a held chunk on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Damage {
    /// Its file is gone.
    Missing,
    /// Its file is shorter than the recorded length.
    Truncated {
        /// Bytes found.
        len: u64,
        /// Bytes recorded.
        expected: u32,
    },
    /// Its file is longer than the recorded length.
    TooLong {
        /// Bytes recorded.
        expected: u32,
    },
    /// Its bytes hash to something else.
    WrongHash {
        /// Hex of the blake3 of the bytes found.
        got: String,
    },
    /// Its file could not be read at start-up (an I/O error such as a bad sector).
    Unreadable {
        /// What the operating system said.
        reason: String,
    },
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Damage::Missing => write!(f, "its file is missing"),
            Damage::Truncated { len, expected } => {
                write!(f, "its file holds {len} bytes, {expected} were written")
            }
            Damage::TooLong { expected } => {
                write!(f, "its file holds more than the {expected} bytes written")
            }
            Damage::WrongHash { got } => write!(f, "its bytes hash to {got}"),
            Damage::Unreadable { reason } => write!(f, "its file cannot be read: {reason}"),
        }
    }
}

/// Storing a chunk failed; the chunk is not recorded as held.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum PutError {
    /// The chunk is empty or larger than any chunk may be.
    #[error(
        "refusing to store chunk {}: it is {len} bytes, outside 1..={limit}",
        hex::encode(hash)
    )]
    BadLength {
        /// The chunk's hash.
        hash: ChunkHash,
        /// Its length.
        len: usize,
        /// The largest chunk ([`MAX_CHUNK_BYTES`]).
        limit: u32,
    },
    /// The bytes do not hash to the name they were given.
    #[error(
        "refusing to store chunk {}: its bytes hash to {got}",
        hex::encode(hash)
    )]
    HashMismatch {
        /// The hash the caller gave.
        hash: ChunkHash,
        /// Hex of the hash of the bytes.
        got: String,
    },
    /// The disk (or the user's quota) is full. Nothing was recorded and no
    /// partial file was left behind.
    #[error("no space left on the disk for {}; free some space, the chunk will be fetched again", path.display())]
    NoSpace {
        /// The file being written.
        path: PathBuf,
    },
    /// Another file-system failure. Nothing was recorded.
    #[error("cannot write chunk file {}: {source}", path.display())]
    Io {
        /// The file (or directory) being written.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
    /// The database refused the record; the file is durable but may not be
    /// recorded, and is removed by the next start-up scan if it is not.
    #[error("cannot record chunk {} in {}: {source}", hex::encode(hash), path.display())]
    Db {
        /// The chunk's hash.
        hash: ChunkHash,
        /// The database directory.
        path: PathBuf,
        /// What sled said.
        #[source]
        source: sled::Error,
    },
}

/// Reading a chunk failed; no bytes are returned.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum GetError {
    /// The chunk's file is damaged. It was dropped from the store and must be fetched again.
    #[error("chunk file {} is damaged ({damage}); it was dropped and will be fetched again", path.display())]
    Damaged {
        /// The chunk.
        hash: ChunkHash,
        /// Its file.
        path: PathBuf,
        /// What was wrong.
        damage: Damage,
    },
    /// The caller asked for another length than the one stored (a caller bug:
    /// a hash has only one length). Nothing was read or dropped.
    #[error(
        "chunk {} is stored with {recorded} bytes but {expected} were asked for; not read",
        hex::encode(hash)
    )]
    LengthMismatch {
        /// The chunk.
        hash: ChunkHash,
        /// The length recorded when it was stored.
        recorded: u32,
        /// The length asked for.
        expected: u32,
    },
    /// The file could not be read (it is kept; the failure may be passing).
    #[error("cannot read chunk file {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
    /// The database could not be read or updated.
    #[error("cannot read chunk records from {}: {source}", path.display())]
    Db {
        /// The database directory.
        path: PathBuf,
        /// What sled said.
        #[source]
        source: sled::Error,
    },
}

/// Listing the held chunks failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum HeldError {
    /// The database could not be read.
    #[error("cannot list chunk records in {}: {source}", path.display())]
    Db {
        /// The database directory.
        path: PathBuf,
        /// What sled said.
        #[source]
        source: sled::Error,
    },
}

/// Removing a chunk failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum RemoveError {
    /// The record was removed but the file could not be deleted (the next
    /// start-up scan deletes it).
    #[error("cannot delete chunk file {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
    /// The database could not be updated; the chunk is still held.
    #[error("cannot remove the record of chunk {} from {}: {source}", hex::encode(hash), path.display())]
    Db {
        /// The chunk's hash.
        hash: ChunkHash,
        /// The database directory.
        path: PathBuf,
        /// What sled said.
        #[source]
        source: sled::Error,
    },
}

impl Store {
    /// Stores a chunk the caller has verified: checks its length and hash
    /// again, writes it to a temporary file, syncs it, renames it into place,
    /// syncs the directory, and only then records it as held (and flushes the
    /// record). Storing a chunk already held does nothing.
    pub fn put_chunk(&self, hash: &ChunkHash, bytes: &[u8]) -> Result<(), PutError> {
        self.put_chunk_with(hash, bytes, |file| file.write_all(bytes))
    }

    /// [`Store::put_chunk`] with the file's contents written by `write`, so
    /// tests can make the disk fail part-way.
    fn put_chunk_with(
        &self,
        hash: &ChunkHash,
        bytes: &[u8],
        write: impl FnOnce(&mut File) -> io::Result<()>,
    ) -> Result<(), PutError> {
        let len = u32::try_from(bytes.len())
            .ok()
            .filter(|n| (1..=MAX_CHUNK_BYTES).contains(n))
            .ok_or_else(|| PutError::BadLength {
                hash: *hash,
                len: bytes.len(),
                limit: MAX_CHUNK_BYTES,
            })?;
        let got = chunk::hash(bytes);
        if got != *hash {
            return Err(PutError::HashMismatch {
                hash: *hash,
                got: hex::encode(got),
            });
        }
        let db_err = |source| PutError::Db {
            hash: *hash,
            path: self.meta.path.clone(),
            source,
        };
        let _gate = self.shared();
        if self.meta.chunk_len(hash).map_err(db_err)? == Some(len) {
            return Ok(());
        }
        let dir = self.layout.chunk_dir(hash);
        disk::ensure_dir(&dir).map_err(|e| write_error(&dir, e))?;
        let name = hex::encode(hash);
        let path = dir.join(&name);
        let tmp = disk::temp_path(&dir, &name);
        disk::write_synced(&tmp, write).map_err(|e| write_error(&path, e))?;

        let _records = self.lock_records();
        if let Err(e) = fs::rename(&tmp, &path) {
            let _ = fs::remove_file(&tmp);
            return Err(write_error(&path, e));
        }
        // Until the directory is synced the rename may not survive a crash,
        // so the chunk must not be recorded yet.
        disk::sync_dir(&dir).map_err(|e| write_error(&dir, e))?;
        self.meta.record_chunk(hash, len).map_err(db_err)?;
        self.counters.chunks_written.fetch_add(1, Ordering::Relaxed);
        self.counters
            .bytes_written
            .fetch_add(u64::from(len), Ordering::Relaxed);
        Ok(())
    }

    /// Reads a held chunk, verified: `Ok(None)` if it is not held, the bytes
    /// if its file has exactly `expected_len` bytes hashing to `hash`. At
    /// most `expected_len + 1` bytes are read. A damaged chunk is dropped
    /// (record, then file) and reported as [`GetError::Damaged`]; the driver
    /// answers the engine's `LoadChunk` with `None` on any error.
    pub fn get_chunk(
        &self,
        hash: &ChunkHash,
        expected_len: u32,
    ) -> Result<Option<Vec<u8>>, GetError> {
        let db_err = |source| GetError::Db {
            path: self.meta.path.clone(),
            source,
        };
        let _gate = self.shared();
        let Some(recorded) = self.meta.chunk_len(hash).map_err(db_err)? else {
            return Ok(None);
        };
        if recorded != expected_len {
            return Err(GetError::LengthMismatch {
                hash: *hash,
                recorded,
                expected: expected_len,
            });
        }
        let path = self.layout.chunk_path(hash);
        let mut buf = Vec::new();
        match self
            .read_checked(hash, recorded, &mut buf)
            .map_err(|source| GetError::Io {
                path: path.clone(),
                source,
            })? {
            Ok(()) => Ok(Some(buf)),
            Err(damage) => {
                self.drop_chunks(&[*hash]).map_err(db_err)?;
                Err(GetError::Damaged {
                    hash: *hash,
                    path,
                    damage,
                })
            }
        }
    }

    /// The chunks recorded as held, in hash order: what the driver feeds the
    /// engine as `Input::ChunksHeld` (after [`Store::check_chunks`]).
    pub fn held(&self) -> Result<Vec<ChunkHash>, HeldError> {
        let db_err = |source| HeldError::Db {
            path: self.meta.path.clone(),
            source,
        };
        let mut out = Vec::new();
        for record in self.meta.chunk_records() {
            if let (_, Some((hash, _))) = record.map_err(db_err)? {
                out.push(hash);
            }
        }
        Ok(out)
    }

    /// Whether a chunk is recorded as held (its file is not read; use
    /// [`Store::get_chunk`] for verified bytes).
    pub fn has_chunk(&self, hash: &ChunkHash) -> Result<bool, HeldError> {
        self.meta
            .chunk_len(hash)
            .map(|len| len.is_some())
            .map_err(|source| HeldError::Db {
                path: self.meta.path.clone(),
                source,
            })
    }

    /// Stops holding a chunk: removes its record, then its file. Removing a
    /// chunk not held does nothing.
    pub fn remove_chunk(&self, hash: &ChunkHash) -> Result<(), RemoveError> {
        let _gate = self.shared();
        let _records = self.lock_records();
        self.meta
            .unrecord_chunks(&[hash])
            .map_err(|source| RemoveError::Db {
                hash: *hash,
                path: self.meta.path.clone(),
                source,
            })?;
        let path = self.layout.chunk_path(hash);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(RemoveError::Io { path, source: e })
            }
            _ => Ok(()),
        }
    }

    /// Reads a held chunk's file into `buf` and checks it against its record.
    /// The outer error is an I/O failure; the inner one, damage.
    pub(super) fn read_checked(
        &self,
        hash: &ChunkHash,
        len: u32,
        buf: &mut Vec<u8>,
    ) -> io::Result<Result<(), Damage>> {
        let path = self.layout.chunk_path(hash);
        Ok(match disk::read_bounded_into(&path, u64::from(len), buf)? {
            Fill::Missing => Err(Damage::Missing),
            Fill::TooLong => Err(Damage::TooLong { expected: len }),
            Fill::Complete if buf.len() as u64 != u64::from(len) => Err(Damage::Truncated {
                len: buf.len() as u64,
                expected: len,
            }),
            Fill::Complete => {
                let got = chunk::hash(buf);
                if got == *hash {
                    Ok(())
                } else {
                    Err(Damage::WrongHash {
                        got: hex::encode(got),
                    })
                }
            }
        })
    }

    /// Drops held chunks found damaged: records first (so a record never
    /// names a missing file), then files, best effort (the next scan removes
    /// any file left).
    pub(super) fn drop_chunks(&self, hashes: &[ChunkHash]) -> Result<(), sled::Error> {
        let _records = self.lock_records();
        self.meta.unrecord_chunks(hashes)?;
        for hash in hashes {
            let _ = fs::remove_file(self.layout.chunk_path(hash));
        }
        self.counters
            .chunks_dropped
            .fetch_add(hashes.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}

/// Maps a write failure to [`PutError`], telling a full disk apart.
fn write_error(path: &Path, e: io::Error) -> PutError {
    if disk::is_no_space(&e) {
        PutError::NoSpace {
            path: path.to_owned(),
        }
    } else {
        PutError::Io {
            path: path.to_owned(),
            source: e,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        (dir, store)
    }

    #[test]
    fn a_full_disk_mid_write_records_nothing_and_leaves_no_file() {
        let (_dir, store) = store();
        let bytes = vec![5u8; 4096];
        let hash = chunk::hash(&bytes);
        let err = store
            .put_chunk_with(&hash, &bytes, |f| {
                f.write_all(&bytes[..1000])?;
                Err(io::Error::from(io::ErrorKind::StorageFull))
            })
            .unwrap_err();
        assert!(matches!(err, PutError::NoSpace { .. }), "{err}");
        assert!(err.to_string().contains("no space left"), "{err}");
        assert_eq!(store.held().unwrap(), Vec::<ChunkHash>::new());
        let fan_out = store.layout.chunk_dir(&hash);
        assert_eq!(fs::read_dir(&fan_out).unwrap().count(), 0);
        assert_eq!(store.stats().chunks_written, 0);
        // Once space is back, the same chunk stores normally.
        store.put_chunk(&hash, &bytes).unwrap();
        assert_eq!(store.get_chunk(&hash, 4096).unwrap(), Some(bytes));
    }

    #[test]
    fn damage_messages_say_what_is_wrong() {
        let t = Damage::Truncated {
            len: 3,
            expected: 10,
        };
        assert_eq!(t.to_string(), "its file holds 3 bytes, 10 were written");
        assert_eq!(Damage::Missing.to_string(), "its file is missing");
    }
}
