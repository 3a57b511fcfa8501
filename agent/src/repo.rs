//! The release directory: where a vendor's published metadata, chunk lists
//! and chunks live on disk, and how they are read and written.
//!
//! ```text
//! DIR/metadata/1.root.json, 2.root.json, ...   every root version ever signed
//! DIR/metadata/root.json                       a copy of the newest root
//! DIR/metadata/timestamp.json                  current timestamp metadata
//! DIR/metadata/snapshot.json                   current snapshot metadata
//! DIR/metadata/targets.json                    current targets metadata
//! DIR/chunklists/<release id hex>.wgcl         encoded chunk list of each release
//! DIR/chunks/<blake3 hex>                      each chunk, named by its hash
//! DIR/metadata/.pending/                       only while a publish is being committed
//! ```
//!
//! Chunks are shared by every release that contains them, which is what makes
//! a delta cheap. Reads are bounded: a metadata document by the protocol's
//! limit for its kind, a chunk list or chunk by the length the signed release
//! gives plus one byte (enough to tell "too long" from "exactly right").
//! Writes are atomic (see [`crate::fsio`]), and the timestamp, snapshot and
//! targets a publish signs are committed together through a small journal
//! ([`Repo::commit_metadata`]): they must match each other, so a crash
//! between two of them must not leave a mix of old and new on disk.
//! This module only moves bytes;
//! what they mean and whether they are trustworthy is the protocol's business.

use crate::fsio::{self, ReadError, WriteError};
use std::fmt;
use std::path::{Path, PathBuf};
use waveguard_protocol::chunk::{ChunkEntry, ChunkHash};
use waveguard_protocol::limits::{
    MAX_ROOT_BYTES, MAX_ROOT_ROTATIONS, MAX_SNAPSHOT_BYTES, MAX_TARGETS_BYTES, MAX_TIMESTAMP_BYTES,
};
use waveguard_protocol::release::Release;
use waveguard_protocol::ReleaseId;

/// Sub-directory holding metadata documents.
pub const METADATA_DIR: &str = "metadata";
/// Sub-directory holding chunks.
pub const CHUNKS_DIR: &str = "chunks";
/// Sub-directory holding chunk lists.
pub const CHUNK_LISTS_DIR: &str = "chunklists";
/// File extension of an encoded chunk list.
pub const CHUNK_LIST_EXT: &str = "wgcl";

/// One of the metadata documents of a release directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetadataFile {
    /// A numbered root version, `N.root.json`.
    Root(u64),
    /// `root.json`, the newest root.
    CurrentRoot,
    /// `timestamp.json`.
    Timestamp,
    /// `snapshot.json`.
    Snapshot,
    /// `targets.json`.
    Targets,
}

impl MetadataFile {
    /// The file name inside `DIR/metadata/`.
    pub fn file_name(self) -> String {
        match self {
            MetadataFile::Root(v) => format!("{v}.root.json"),
            MetadataFile::CurrentRoot => "root.json".into(),
            MetadataFile::Timestamp => "timestamp.json".into(),
            MetadataFile::Snapshot => "snapshot.json".into(),
            MetadataFile::Targets => "targets.json".into(),
        }
    }

    /// The protocol's size limit for this kind of document.
    pub fn limit(self) -> usize {
        match self {
            MetadataFile::Root(_) | MetadataFile::CurrentRoot => MAX_ROOT_BYTES,
            MetadataFile::Timestamp => MAX_TIMESTAMP_BYTES,
            MetadataFile::Snapshot => MAX_SNAPSHOT_BYTES,
            MetadataFile::Targets => MAX_TARGETS_BYTES,
        }
    }
}

impl fmt::Display for MetadataFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetadataFile::Root(v) => write!(f, "root metadata version {v}"),
            MetadataFile::CurrentRoot => f.write_str("current root metadata"),
            MetadataFile::Timestamp => f.write_str("timestamp metadata"),
            MetadataFile::Snapshot => f.write_str("snapshot metadata"),
            MetadataFile::Targets => f.write_str("targets metadata"),
        }
    }
}

/// Reading a chunk or chunk list file gave something other than bytes of the expected size.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BlobReadError {
    /// The file does not exist.
    #[error("{} is missing", path.display())]
    Missing {
        /// The file.
        path: PathBuf,
    },
    /// The file is longer than the signed length.
    #[error("{} is longer than the expected {expected} bytes", path.display())]
    TooLong {
        /// The file.
        path: PathBuf,
        /// The signed length.
        expected: u64,
    },
    /// The file could not be read.
    #[error(transparent)]
    Io(ReadError),
}

impl From<ReadError> for BlobReadError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::NotFound { path } => BlobReadError::Missing { path },
            ReadError::TooLarge { path, limit } => BlobReadError::TooLong {
                path,
                expected: limit,
            },
            other => BlobReadError::Io(other),
        }
    }
}

/// Name of the journal directory inside `DIR/metadata`.
pub const PENDING_DIR: &str = ".pending";
/// Marker file written once every journalled document is complete.
const COMMIT_MARKER: &str = "COMMIT";

/// What [`Repo::recover_pending`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recovery {
    /// No interrupted commit.
    Clean,
    /// A commit was complete but interrupted while moving files; it was finished.
    RolledForward,
    /// A commit was interrupted before it was complete; it was discarded.
    Discarded,
}

/// Whether storing a chunk wrote anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stored {
    /// The chunk was not there (or was damaged) and has been written.
    Written,
    /// An intact copy was already there, shared with another release.
    AlreadyPresent,
}

/// A release directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Repo {
    dir: PathBuf,
}

impl Repo {
    /// The release directory at `dir` (nothing is read or created yet).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Repo { dir: dir.into() }
    }

    /// The directory itself.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `DIR/metadata`.
    pub fn metadata_dir(&self) -> PathBuf {
        self.dir.join(METADATA_DIR)
    }

    /// `DIR/chunks`.
    pub fn chunks_dir(&self) -> PathBuf {
        self.dir.join(CHUNKS_DIR)
    }

    /// `DIR/chunklists`.
    pub fn chunk_lists_dir(&self) -> PathBuf {
        self.dir.join(CHUNK_LISTS_DIR)
    }

    /// Path of a metadata document.
    pub fn metadata_path(&self, file: MetadataFile) -> PathBuf {
        self.metadata_dir().join(file.file_name())
    }

    /// Path of a chunk.
    pub fn chunk_path(&self, hash: &ChunkHash) -> PathBuf {
        self.chunks_dir().join(hex::encode(hash))
    }

    /// Path of a release's chunk list.
    pub fn chunk_list_path(&self, release: &ReleaseId) -> PathBuf {
        self.chunk_lists_dir()
            .join(format!("{}.{CHUNK_LIST_EXT}", release.to_hex()))
    }

    /// Creates the three sub-directories if missing.
    pub fn create_layout(&self) -> Result<(), WriteError> {
        for d in [
            self.metadata_dir(),
            self.chunks_dir(),
            self.chunk_lists_dir(),
        ] {
            fsio::create_dir_all(&d)?;
        }
        Ok(())
    }

    /// Whether a metadata document exists.
    pub fn has_metadata(&self, file: MetadataFile) -> bool {
        self.metadata_path(file).is_file()
    }

    /// Reads a metadata document, refusing it above the protocol's limit for its kind.
    pub fn read_metadata(&self, file: MetadataFile) -> Result<Vec<u8>, ReadError> {
        fsio::read_bounded(&self.metadata_path(file), file.limit() as u64)
    }

    /// Reads a metadata document, or `None` when it does not exist.
    pub fn read_metadata_if_present(
        &self,
        file: MetadataFile,
    ) -> Result<Option<Vec<u8>>, ReadError> {
        match self.read_metadata(file) {
            Ok(b) => Ok(Some(b)),
            Err(ReadError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes a metadata document atomically. Writing a numbered root also
    /// refreshes `root.json`, after the numbered file, so `root.json` never
    /// names a version that is not on disk.
    pub fn write_metadata(&self, file: MetadataFile, bytes: &[u8]) -> Result<(), WriteError> {
        fsio::create_dir_all(&self.metadata_dir())?;
        fsio::write_atomic(&self.metadata_path(file), bytes)?;
        if let MetadataFile::Root(_) = file {
            fsio::write_atomic(&self.metadata_path(MetadataFile::CurrentRoot), bytes)?;
        }
        Ok(())
    }

    /// `DIR/metadata/.pending`, the commit journal.
    pub fn pending_dir(&self) -> PathBuf {
        self.metadata_dir().join(PENDING_DIR)
    }

    /// Whether an interrupted commit is waiting in the journal.
    pub fn has_pending(&self) -> bool {
        self.pending_dir().exists()
    }

    /// Replaces several metadata documents so that readers after a crash see
    /// either all old or (after [`Repo::recover_pending`]) all new ones: each
    /// is written to the journal, a commit marker follows, then each is moved
    /// into place in the order given and the journal is removed.
    pub fn commit_metadata(&self, files: &[(MetadataFile, &[u8])]) -> Result<(), WriteError> {
        self.recover_pending()?;
        let pending = self.pending_dir();
        fsio::create_dir_all(&pending)?;
        for (file, bytes) in files {
            fsio::write_atomic(&pending.join(file.file_name()), bytes)?;
        }
        fsio::write_atomic(&pending.join(COMMIT_MARKER), b"")?;
        self.roll_forward(files.iter().map(|(f, _)| *f))
    }

    /// Finishes or discards a commit a crash interrupted. Writers call this
    /// before reading the metadata they are about to replace.
    pub fn recover_pending(&self) -> Result<Recovery, WriteError> {
        let pending = self.pending_dir();
        if !pending.exists() {
            return Ok(Recovery::Clean);
        }
        if pending.join(COMMIT_MARKER).exists() {
            // Targets first and timestamp last, the order a commit uses.
            let order = [
                MetadataFile::Targets,
                MetadataFile::Snapshot,
                MetadataFile::Timestamp,
            ];
            self.roll_forward(order.into_iter())?;
            return Ok(Recovery::RolledForward);
        }
        remove_dir_all(&pending)?;
        Ok(Recovery::Discarded)
    }

    /// Moves every journalled file still there into place and removes the journal.
    fn roll_forward(&self, files: impl Iterator<Item = MetadataFile>) -> Result<(), WriteError> {
        let pending = self.pending_dir();
        for file in files {
            let from = pending.join(file.file_name());
            if from.exists() {
                std::fs::rename(&from, self.metadata_path(file)).map_err(|source| {
                    WriteError::Io {
                        path: self.metadata_path(file),
                        source,
                    }
                })?;
            }
        }
        remove_dir_all(&pending)
    }

    /// Numbered roots after `trusted`, in order, up to the first gap, at most
    /// [`MAX_ROOT_ROTATIONS`] of them (TUF's bound on a root update).
    pub fn roots_after(&self, trusted: u64) -> Result<Vec<(u64, Vec<u8>)>, ReadError> {
        let mut out = Vec::new();
        let mut v = trusted;
        while (out.len() as u64) < MAX_ROOT_ROTATIONS {
            v = match v.checked_add(1) {
                Some(n) => n,
                None => break,
            };
            match self.read_metadata_if_present(MetadataFile::Root(v))? {
                Some(bytes) => out.push((v, bytes)),
                None => break,
            }
        }
        Ok(out)
    }

    /// Reads a chunk file, at most `entry.length + 1` bytes of it. The bytes
    /// still have to be checked against the entry (`chunk::verify_chunk`).
    pub fn read_chunk(&self, entry: &ChunkEntry) -> Result<Vec<u8>, BlobReadError> {
        fsio::read_bounded(&self.chunk_path(&entry.hash), u64::from(entry.length))
            .map_err(Into::into)
    }

    /// Stores a chunk unless an intact copy is already there. `bytes` must
    /// already match `entry` (the chunker produced both).
    pub fn store_chunk(&self, entry: &ChunkEntry, bytes: &[u8]) -> Result<Stored, WriteError> {
        if let Ok(existing) = self.read_chunk(entry) {
            if waveguard_protocol::chunk::verify_chunk(entry, &existing).is_ok() {
                return Ok(Stored::AlreadyPresent);
            }
        }
        fsio::write_atomic(&self.chunk_path(&entry.hash), bytes)?;
        Ok(Stored::Written)
    }

    /// Reads a release's chunk list, at most its signed length + 1 bytes. The
    /// bytes still have to be checked (`ChunkList::decode_for`).
    pub fn read_chunk_list(&self, release: &Release) -> Result<Vec<u8>, BlobReadError> {
        fsio::read_bounded(
            &self.chunk_list_path(&release.id),
            release.info.chunk_list.length,
        )
        .map_err(Into::into)
    }

    /// Writes a release's encoded chunk list.
    pub fn write_chunk_list(&self, release: &ReleaseId, bytes: &[u8]) -> Result<(), WriteError> {
        fsio::write_atomic(&self.chunk_list_path(release), bytes)
    }
}

fn remove_dir_all(dir: &Path) -> Result<(), WriteError> {
    std::fs::remove_dir_all(dir).map_err(|source| WriteError::Io {
        path: dir.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use waveguard_protocol::chunk::hash;

    fn entry(bytes: &[u8]) -> ChunkEntry {
        ChunkEntry {
            length: bytes.len() as u32,
            hash: hash(bytes),
        }
    }

    #[test]
    fn layout_paths() {
        let r = Repo::new("/r");
        assert_eq!(
            r.metadata_path(MetadataFile::Root(3)),
            Path::new("/r/metadata/3.root.json")
        );
        assert_eq!(
            r.metadata_path(MetadataFile::Targets),
            Path::new("/r/metadata/targets.json")
        );
        let id = ReleaseId([0xab; 32]);
        assert_eq!(
            r.chunk_list_path(&id),
            PathBuf::from(format!("/r/chunklists/{}.wgcl", "ab".repeat(32)))
        );
        assert_eq!(
            r.chunk_path(&[1; 32]),
            PathBuf::from(format!("/r/chunks/{}", "01".repeat(32)))
        );
    }

    #[test]
    fn chunks_are_stored_once_and_read_with_a_bound() {
        let dir = tempfile::tempdir().unwrap();
        let r = Repo::new(dir.path());
        r.create_layout().unwrap();
        let e = entry(b"hello chunk");
        assert_eq!(r.store_chunk(&e, b"hello chunk").unwrap(), Stored::Written);
        assert_eq!(
            r.store_chunk(&e, b"hello chunk").unwrap(),
            Stored::AlreadyPresent
        );
        assert_eq!(r.read_chunk(&e).unwrap(), b"hello chunk");
        fs::write(r.chunk_path(&e.hash), b"hello chunk!").unwrap();
        assert!(matches!(
            r.read_chunk(&e),
            Err(BlobReadError::TooLong { expected: 11, .. })
        ));
        // A damaged copy is replaced, not trusted.
        assert_eq!(r.store_chunk(&e, b"hello chunk").unwrap(), Stored::Written);
        assert_eq!(r.read_chunk(&e).unwrap(), b"hello chunk");
        fs::remove_file(r.chunk_path(&e.hash)).unwrap();
        assert!(matches!(
            r.read_chunk(&e),
            Err(BlobReadError::Missing { .. })
        ));
    }

    #[test]
    fn root_chain_stops_at_the_first_gap() {
        let dir = tempfile::tempdir().unwrap();
        let r = Repo::new(dir.path());
        for v in [1, 2, 3, 5] {
            r.write_metadata(MetadataFile::Root(v), format!("{v}").as_bytes())
                .unwrap();
        }
        let chain: Vec<u64> = r
            .roots_after(1)
            .unwrap()
            .into_iter()
            .map(|(v, _)| v)
            .collect();
        assert_eq!(chain, [2, 3]);
        assert_eq!(r.read_metadata(MetadataFile::CurrentRoot).unwrap(), b"5");
    }

    #[test]
    fn a_commit_replaces_every_document() {
        let dir = tempfile::tempdir().unwrap();
        let r = Repo::new(dir.path());
        r.create_layout().unwrap();
        let docs = [
            MetadataFile::Targets,
            MetadataFile::Snapshot,
            MetadataFile::Timestamp,
        ];
        for f in docs {
            r.write_metadata(f, b"old").unwrap();
        }
        r.commit_metadata(&docs.map(|f| (f, &b"new"[..]))).unwrap();
        for f in docs {
            assert_eq!(r.read_metadata(f).unwrap(), b"new");
        }
        assert!(!r.has_pending());
    }

    #[test]
    fn an_interrupted_commit_is_finished_or_discarded() {
        let dir = tempfile::tempdir().unwrap();
        let r = Repo::new(dir.path());
        r.create_layout().unwrap();
        let docs = [
            MetadataFile::Targets,
            MetadataFile::Snapshot,
            MetadataFile::Timestamp,
        ];
        for f in docs {
            r.write_metadata(f, b"old").unwrap();
        }
        // Crash after the marker, with targets already moved: finish the rest.
        fs::create_dir_all(r.pending_dir()).unwrap();
        r.write_metadata(MetadataFile::Targets, b"new").unwrap();
        fs::write(r.pending_dir().join("snapshot.json"), b"new").unwrap();
        fs::write(r.pending_dir().join("timestamp.json"), b"new").unwrap();
        fs::write(r.pending_dir().join(COMMIT_MARKER), b"").unwrap();
        assert_eq!(r.recover_pending().unwrap(), Recovery::RolledForward);
        for f in docs {
            assert_eq!(r.read_metadata(f).unwrap(), b"new");
        }
        // Crash before the marker: the old documents stay.
        fs::create_dir_all(r.pending_dir()).unwrap();
        fs::write(r.pending_dir().join("targets.json"), b"newer").unwrap();
        assert_eq!(r.recover_pending().unwrap(), Recovery::Discarded);
        assert_eq!(r.read_metadata(MetadataFile::Targets).unwrap(), b"new");
        assert_eq!(r.recover_pending().unwrap(), Recovery::Clean);
    }

    #[test]
    fn oversize_metadata_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let r = Repo::new(dir.path());
        r.create_layout().unwrap();
        fs::write(
            r.metadata_path(MetadataFile::Timestamp),
            vec![b' '; MAX_TIMESTAMP_BYTES + 1],
        )
        .unwrap();
        assert!(matches!(
            r.read_metadata(MetadataFile::Timestamp),
            Err(ReadError::TooLarge { .. })
        ));
    }
}
