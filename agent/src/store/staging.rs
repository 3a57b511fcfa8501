//! The staging area: assembling a release's artifact from held chunks into
//! `staging/<release id>/<name>`, verified against its signed length and
//! blake3 before it gets its final name.
//!
//! The artifact is streamed into `<name>.partial`, each chunk re-verified as
//! it is read and the whole hashed as it is written; it is synced and renamed
//! only when length and hash match, so a file under the final name is always
//! the signed artifact. Paths use the release ID's hex and a sanitised file
//! name, never a peer-chosen path.
//!
//! This is blocking I/O over the whole artifact (up to a TiB): the driver
//! runs it with `tokio::task::spawn_blocking`.

use super::disk::{self, TEMP_PREFIX};
use super::scan::{file_name, list_dir, remove_if_present, CheckError};
use super::{CheckReport, Damage, Store};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use thiserror::Error;
use waveguard_protocol::chunk::ChunkHash;
use waveguard_protocol::limits::{MAX_ARTIFACT_BYTES, MAX_CHUNKS_PER_RELEASE, MAX_NAME_BYTES};
use waveguard_protocol::ReleaseId;

/// Longest staged file name, in bytes: the protocol's longest target name
/// ([`MAX_NAME_BYTES`]), far under every file system's 255-byte limit even
/// with the `.partial` suffix.
pub const MAX_STAGED_NAME_BYTES: usize = MAX_NAME_BYTES;

/// Suffix of an artifact being written; such files are removed at start-up.
const PARTIAL_SUFFIX: &str = ".partial";

/// Name used when a target path sanitises to nothing.
const FALLBACK_NAME: &str = "artifact";

/// Assembling an artifact failed; no file is left under its final name
/// (an earlier, complete one is kept) and the partial file is removed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum AssembleError {
    /// The signed length is larger than any artifact may be.
    #[error("release {release}: refusing to assemble {length} bytes, over the limit of {limit}")]
    TooLarge {
        /// The release.
        release: ReleaseId,
        /// The length asked for.
        length: u64,
        /// The limit.
        limit: u64,
    },
    /// More chunks than any release may have.
    #[error("release {release}: refusing to assemble {count} chunks, over the limit of {limit}")]
    TooManyChunks {
        /// The release.
        release: ReleaseId,
        /// Chunks asked for.
        count: usize,
        /// The limit.
        limit: u32,
    },
    /// A chunk is not held.
    #[error(
        "release {release}: chunk {index} ({}) is not in the store",
        hex::encode(hash)
    )]
    MissingChunk {
        /// The release.
        release: ReleaseId,
        /// Position of the chunk in the artifact.
        index: usize,
        /// Its hash.
        hash: ChunkHash,
    },
    /// A held chunk's file is damaged; it was dropped from the store.
    #[error("release {release}: chunk {index} ({}) is damaged ({damage}); it was dropped and must be fetched again", hex::encode(hash))]
    DamagedChunk {
        /// The release.
        release: ReleaseId,
        /// Position of the chunk in the artifact.
        index: usize,
        /// Its hash.
        hash: ChunkHash,
        /// What was wrong.
        damage: Damage,
    },
    /// The chunks add up to another length than the signed one.
    #[error("release {release}: the chunks add up to {got} bytes but the release is signed as {expected}")]
    WrongLength {
        /// The release.
        release: ReleaseId,
        /// Sum of the chunk lengths.
        got: u64,
        /// The signed length.
        expected: u64,
    },
    /// The assembled bytes hash to another blake3 than the signed one.
    #[error("release {release}: the assembled artifact hashes to {got} but the release is signed with {expected}")]
    WrongHash {
        /// The release.
        release: ReleaseId,
        /// Hex of the blake3 found.
        got: String,
        /// Hex of the signed blake3.
        expected: String,
    },
    /// The disk (or quota) is full.
    #[error("no space left on the disk for {}; free some space and assemble again", path.display())]
    NoSpace {
        /// The file being written.
        path: PathBuf,
    },
    /// Another file-system failure.
    #[error("cannot assemble into {}: {source}", path.display())]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
    /// The chunk records could not be read or updated.
    #[error("cannot read chunk records from {}: {source}", path.display())]
    Db {
        /// The database directory.
        path: PathBuf,
        /// What sled said.
        #[source]
        source: sled::Error,
    },
}

impl AssembleError {
    /// Whether the store lost data the artifact needs (a chunk missing or
    /// damaged), as opposed to a release that does not add up: fetching the
    /// chunk again and assembling again can succeed.
    /// The chunk the store turned out to lack or hold damaged, if that is why assembly failed:
    /// it must be fetched again rather than the release given up.
    pub fn lost_chunk(&self) -> Option<ChunkHash> {
        match self {
            AssembleError::MissingChunk { hash, .. } | AssembleError::DamagedChunk { hash, .. } => {
                Some(*hash)
            }
            _ => None,
        }
    }

    /// Whether the failure is damage to the store (a missing or damaged chunk) rather than the release.
    pub fn is_store_damage(&self) -> bool {
        matches!(
            self,
            AssembleError::MissingChunk { .. } | AssembleError::DamagedChunk { .. }
        )
    }
}

/// Removing a staged artifact failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum DiscardError {
    /// The directory could not be removed.
    #[error("cannot remove staged artifact directory {}: {source}", path.display())]
    Io {
        /// The release's staging directory.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
}

impl Store {
    /// Assembles `chunks` (in artifact order) into
    /// `staging/<release hex>/<staged_file_name(target_path)>`, checking that
    /// every chunk is held and undamaged, that they add up to `length`, and
    /// that the whole hashes to `blake3`; returns the final path. A previous
    /// artifact under that name is replaced only by a verified one.
    /// Blocking: see the module documentation. One call per release at a time.
    pub fn assemble(
        &self,
        release: &ReleaseId,
        target_path: &str,
        length: u64,
        blake3: &[u8; 32],
        chunks: &[ChunkHash],
    ) -> Result<PathBuf, AssembleError> {
        if length > MAX_ARTIFACT_BYTES {
            return Err(AssembleError::TooLarge {
                release: *release,
                length,
                limit: MAX_ARTIFACT_BYTES,
            });
        }
        if chunks.len() > MAX_CHUNKS_PER_RELEASE as usize {
            return Err(AssembleError::TooManyChunks {
                release: *release,
                count: chunks.len(),
                limit: MAX_CHUNKS_PER_RELEASE,
            });
        }
        let _gate = self.shared();
        // Before writing a byte: every chunk is held and the lengths add up.
        let lengths = self.held_lengths(release, chunks)?;
        let total: u64 = lengths.iter().map(|&l| u64::from(l)).sum();
        if total != length {
            return Err(AssembleError::WrongLength {
                release: *release,
                got: total,
                expected: length,
            });
        }

        let dir = self.layout.staged_dir(release);
        for d in [&self.layout.staging, &dir] {
            disk::ensure_dir(d).map_err(|e| write_error(d, e))?;
        }
        let name = staged_file_name(target_path);
        let final_path = dir.join(&name);
        let partial = dir.join(format!("{name}{PARTIAL_SUFFIX}"));
        // A crash may have left one; it is ours to replace.
        match fs::remove_file(&partial) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(write_error(&partial, e)),
            _ => {}
        }

        let got = self.write_partial(release, &partial, chunks, &lengths)?;
        if got != *blake3 {
            let _ = fs::remove_file(&partial);
            return Err(AssembleError::WrongHash {
                release: *release,
                got: hex::encode(got),
                expected: hex::encode(blake3),
            });
        }
        if let Err(e) = fs::rename(&partial, &final_path) {
            let _ = fs::remove_file(&partial);
            return Err(write_error(&final_path, e));
        }
        disk::sync_dir(&dir).map_err(|e| write_error(&dir, e))?;
        self.counters
            .artifacts_staged
            .fetch_add(1, Ordering::Relaxed);
        Ok(final_path)
    }

    /// Where [`Store::assemble`] puts the artifact of `release` named by `target_path`.
    pub fn staged_path(&self, release: &ReleaseId, target_path: &str) -> PathBuf {
        self.layout
            .staged_dir(release)
            .join(staged_file_name(target_path))
    }

    /// Removes the staging directory of `release` and everything in it (a
    /// no-op if there is none), once the artifact is installed or abandoned.
    pub fn discard_staged(&self, release: &ReleaseId) -> Result<(), DiscardError> {
        let dir = self.layout.staged_dir(release);
        match fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(DiscardError::Io {
                path: dir,
                source: e,
            }),
            _ => Ok(()),
        }
    }

    /// Streams the chunks into a new, synced file at `partial` and returns
    /// the blake3 of what was written; on failure the file is removed.
    fn write_partial(
        &self,
        release: &ReleaseId,
        partial: &Path,
        chunks: &[ChunkHash],
        lengths: &[u32],
    ) -> Result<[u8; 32], AssembleError> {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(partial)
            .map_err(|e| write_error(partial, e))?;
        let result = self
            .stream_chunks(release, partial, &mut file, chunks, lengths)
            .and_then(|hash| {
                file.sync_all().map_err(|e| write_error(partial, e))?;
                Ok(hash)
            });
        if result.is_err() {
            drop(file);
            let _ = fs::remove_file(partial);
        }
        result
    }

    /// Copies each chunk, re-verified, into `file`, hashing as it goes. A
    /// damaged chunk is dropped from the store and named in the error.
    fn stream_chunks(
        &self,
        release: &ReleaseId,
        partial: &Path,
        file: &mut File,
        chunks: &[ChunkHash],
        lengths: &[u32],
    ) -> Result<[u8; 32], AssembleError> {
        let mut hasher = blake3::Hasher::new();
        // One buffer of at most one chunk (MAX_CHUNK_BYTES + 1), reused.
        let mut buf = Vec::new();
        for (index, (hash, &len)) in chunks.iter().zip(lengths).enumerate() {
            let damage = match self.read_checked(hash, len, &mut buf) {
                Ok(Ok(())) => None,
                Ok(Err(damage)) => Some(damage),
                Err(source) => {
                    return Err(AssembleError::Io {
                        path: self.layout.chunk_path(hash),
                        source,
                    })
                }
            };
            if let Some(damage) = damage {
                self.drop_chunks(&[*hash])
                    .map_err(|source| AssembleError::Db {
                        path: self.meta.path.clone(),
                        source,
                    })?;
                return Err(AssembleError::DamagedChunk {
                    release: *release,
                    index,
                    hash: *hash,
                    damage,
                });
            }
            hasher.update(&buf);
            file.write_all(&buf).map_err(|e| write_error(partial, e))?;
        }
        Ok(*hasher.finalize().as_bytes())
    }

    /// The recorded length of each chunk, or the first one not held.
    fn held_lengths(
        &self,
        release: &ReleaseId,
        chunks: &[ChunkHash],
    ) -> Result<Vec<u32>, AssembleError> {
        let mut lengths = Vec::with_capacity(chunks.len());
        for (index, hash) in chunks.iter().enumerate() {
            let len = self
                .meta
                .chunk_len(hash)
                .map_err(|source| AssembleError::Db {
                    path: self.meta.path.clone(),
                    source,
                })?
                .ok_or_else(|| AssembleError::MissingChunk {
                    release: *release,
                    index,
                    hash: *hash,
                })?;
            lengths.push(len);
        }
        Ok(lengths)
    }

    /// Removes partial artifacts left by an interrupted assembly, and
    /// temporary files at the top of the data directory (from writing the
    /// format file).
    pub(super) fn sweep_staging(&self, report: &mut CheckReport) -> Result<(), CheckError> {
        for file in list_dir(&self.layout.root)? {
            if file_name(&file).is_some_and(|n| n.starts_with(TEMP_PREFIX)) && file.is_file() {
                remove_if_present(&file)?;
                report.temps_removed += 1;
            }
        }
        for dir in list_dir(&self.layout.staging)? {
            if !dir.is_dir() {
                continue;
            }
            for file in list_dir(&dir)? {
                let Some(name) = file_name(&file) else {
                    continue;
                };
                if name.ends_with(PARTIAL_SUFFIX) || name.starts_with(TEMP_PREFIX) {
                    remove_if_present(&file)?;
                    report.temps_removed += 1;
                }
            }
        }
        Ok(())
    }
}

/// The file name an artifact is staged under: the last component of the TUF
/// target path, with every character other than ASCII letters, digits and
/// `.-_+` replaced by `_`, leading dots removed (no hidden files, no `..`),
/// cut to [`MAX_STAGED_NAME_BYTES`], never ending in `.partial` (that suffix
/// marks unfinished files), and `artifact` if nothing is left.
pub fn staged_file_name(target_path: &str) -> String {
    let last = target_path.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = last
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '+') {
                c
            } else {
                '_'
            }
        })
        .collect();
    // Only ASCII is left, so any byte index is a character boundary.
    let mut name = cleaned.trim_start_matches('.').to_owned();
    name.truncate(MAX_STAGED_NAME_BYTES);
    if name.ends_with(PARTIAL_SUFFIX) {
        name.pop();
        name.push('_');
    }
    if name.is_empty() {
        FALLBACK_NAME.to_owned()
    } else {
        name
    }
}

fn write_error(path: &Path, e: io::Error) -> AssembleError {
    if disk::is_no_space(&e) {
        AssembleError::NoSpace {
            path: path.to_owned(),
        }
    } else {
        AssembleError::Io {
            path: path.to_owned(),
            source: e,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn names_are_sanitised() {
        assert_eq!(staged_file_name("fw/app-1.2.bin"), "app-1.2.bin");
        assert_eq!(staged_file_name("../../etc/passwd"), "passwd");
        assert_eq!(staged_file_name("..\\..\\boot.ini"), "boot.ini");
        assert_eq!(staged_file_name(".."), FALLBACK_NAME);
        assert_eq!(staged_file_name(""), FALLBACK_NAME);
        assert_eq!(staged_file_name("dir/"), FALLBACK_NAME);
        assert_eq!(staged_file_name(".hidden"), "hidden");
        assert_eq!(staged_file_name("a b\u{e9}\0c"), "a_b__c");
        assert_eq!(staged_file_name("x.partial"), "x.partia_");
        assert_eq!(
            staged_file_name(&"n".repeat(300)).len(),
            MAX_STAGED_NAME_BYTES
        );
    }

    proptest! {
        #[test]
        fn any_target_path_gives_one_safe_file_name(path in "\\PC{0,300}") {
            let name = staged_file_name(&path);
            prop_assert!(!name.is_empty() && name.len() <= MAX_STAGED_NAME_BYTES);
            prop_assert!(!name.starts_with('.'));
            prop_assert!(!name.ends_with(PARTIAL_SUFFIX));
            prop_assert!(name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-+".contains(&b)));
            prop_assert_eq!(Path::new(&name).components().count(), 1);
        }
    }
}
