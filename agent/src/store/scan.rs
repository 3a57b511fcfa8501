//! The start-up scan: what a crash or bit rot left in the chunk store is
//! found and removed before anything is served. Temporary files of
//! interrupted writes go, chunk files that were never recorded go, and every
//! recorded chunk is checked (by length, or re-hashed) and dropped if damaged.

use super::chunks::Damage;
use super::disk::TEMP_PREFIX;
use super::Store;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use thiserror::Error;
use waveguard_protocol::chunk::ChunkHash;
use waveguard_protocol::id::parse_hex32;

/// The start-up scan failed part-way; what it already dropped stays dropped.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum CheckError {
    /// A directory of the store could not be listed or a file not removed.
    #[error("cannot scan {}: {source}", path.display())]
    Io {
        /// The directory or file.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
    /// The database could not be read or updated.
    #[error("cannot check chunk records in {}: {source}", path.display())]
    Db {
        /// The database directory.
        path: PathBuf,
        /// What sled said.
        #[source]
        source: sled::Error,
    },
}

/// How thoroughly [`Store::check_chunks`] examines held chunks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckDepth {
    /// Read and re-hash every chunk: finds bit rot, costs a full read of the store.
    Full,
    /// Compare file lengths with the records only: finds crashes and
    /// truncation in a moment; bit rot is still caught on read by
    /// [`Store::get_chunk`] and [`Store::assemble`].
    Lengths,
}

/// What [`Store::check_chunks`] found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// Held chunks examined.
    pub checked: u64,
    /// Chunks dropped from the record (and their files deleted), with why.
    pub dropped: Vec<(ChunkHash, Damage)>,
    /// Records that did not decode, removed.
    pub bad_records_removed: u64,
    /// Temporary files left by an interrupted write, removed.
    pub temps_removed: u64,
    /// Chunk files without a record (written but never recorded), removed.
    pub orphans_removed: u64,
}

impl Store {
    /// The start-up scan, run before the store serves anything: removes
    /// temporary files left by interrupted writes (chunks and staging),
    /// removes chunk files that were never recorded, and checks every held
    /// chunk to `depth`, dropping (record, then file) those missing,
    /// truncated or corrupt. Waits for chunk and staging calls in progress
    /// and holds new ones back while it runs.
    pub fn check_chunks(&self, depth: CheckDepth) -> Result<CheckReport, CheckError> {
        let db_err = |source| CheckError::Db {
            path: self.meta.path.clone(),
            source,
        };
        let _gate = self.exclusive();
        let mut report = CheckReport::default();
        self.sweep_chunk_files(&mut report)?;
        self.sweep_staging(&mut report)?;

        let mut bad_keys = Vec::new();
        let mut buf = Vec::new();
        for record in self.meta.chunk_records() {
            let (key, decoded) = record.map_err(db_err)?;
            let Some((hash, len)) = decoded else {
                bad_keys.push(key);
                report.bad_records_removed += 1;
                continue;
            };
            report.checked += 1;
            let verdict = match depth {
                CheckDepth::Full => self.read_checked(&hash, len, &mut buf).unwrap_or_else(|e| {
                    Err(Damage::Unreadable {
                        reason: e.to_string(),
                    })
                }),
                CheckDepth::Lengths => self.length_checked(&hash, len),
            };
            if let Err(damage) = verdict {
                bad_keys.push(key);
                report.dropped.push((hash, damage));
            }
        }
        self.meta.unrecord_chunks(&bad_keys).map_err(db_err)?;
        for (hash, _) in &report.dropped {
            remove_if_present(&self.layout.chunk_path(hash))?;
        }
        self.counters
            .chunks_dropped
            .fetch_add(report.dropped.len() as u64, Ordering::Relaxed);
        Ok(report)
    }

    /// Checks a held chunk's file length against its record, without reading it.
    fn length_checked(&self, hash: &ChunkHash, len: u32) -> Result<(), Damage> {
        match fs::metadata(self.layout.chunk_path(hash)) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(Damage::Missing),
            Err(e) => Err(Damage::Unreadable {
                reason: e.to_string(),
            }),
            Ok(m) if !m.is_file() => Err(Damage::Missing),
            Ok(m) if m.len() < u64::from(len) => Err(Damage::Truncated {
                len: m.len(),
                expected: len,
            }),
            Ok(m) if m.len() > u64::from(len) => Err(Damage::TooLong { expected: len }),
            Ok(_) => Ok(()),
        }
    }

    /// Removes temporary files and unrecorded chunk files under `chunks/`.
    /// Anything it does not recognise (not a fan-out directory, not a
    /// lowercase-hex chunk name in the right directory) is left alone.
    fn sweep_chunk_files(&self, report: &mut CheckReport) -> Result<(), CheckError> {
        for dir in list_dir(&self.layout.chunks)? {
            let Some(prefix) = file_name(&dir).filter(|n| is_fan_out_name(n)) else {
                continue;
            };
            if !dir.is_dir() {
                continue;
            }
            for file in list_dir(&dir)? {
                let Some(name) = file_name(&file) else {
                    continue;
                };
                if name.starts_with(TEMP_PREFIX) {
                    remove_if_present(&file)?;
                    report.temps_removed += 1;
                    continue;
                }
                let Some(hash) = parse_chunk_name(&name, &prefix) else {
                    continue;
                };
                let recorded = self
                    .meta
                    .chunk_len(&hash)
                    .map_err(|source| CheckError::Db {
                        path: self.meta.path.clone(),
                        source,
                    })?;
                if recorded.is_none() {
                    remove_if_present(&file)?;
                    report.orphans_removed += 1;
                }
            }
        }
        Ok(())
    }
}

/// The entries of `dir`, as paths.
pub(super) fn list_dir(dir: &Path) -> Result<Vec<PathBuf>, CheckError> {
    let io_err = |source| CheckError::Io {
        path: dir.to_owned(),
        source,
    };
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err)? {
        out.push(entry.map_err(io_err)?.path());
    }
    Ok(out)
}

/// A path's file name, if it is UTF-8 (every name the store writes is).
pub(super) fn file_name(path: &Path) -> Option<String> {
    path.file_name()?.to_str().map(str::to_owned)
}

pub(super) fn remove_if_present(path: &Path) -> Result<(), CheckError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(CheckError::Io {
            path: path.to_owned(),
            source: e,
        }),
        _ => Ok(()),
    }
}

fn is_fan_out_name(name: &str) -> bool {
    name.len() == 2
        && name
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The hash a chunk file is named after, if the name is exactly the
/// lowercase hex the store writes and it sits in its fan-out directory.
fn parse_chunk_name(name: &str, dir: &str) -> Option<ChunkHash> {
    let hash = parse_hex32(name)?;
    (hex::encode(hash) == name && name.starts_with(dir)).then_some(hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_names_are_canonical_lowercase_hex_in_their_directory() {
        let h = [0xab; 32];
        let name = hex::encode(h);
        assert_eq!(parse_chunk_name(&name, "ab"), Some(h));
        assert_eq!(parse_chunk_name(&name, "cd"), None);
        assert_eq!(parse_chunk_name(&name.to_uppercase(), "AB"), None);
        assert_eq!(parse_chunk_name("abc", "ab"), None);
        assert!(is_fan_out_name("0f"));
        assert!(!is_fan_out_name("0F"));
        assert!(!is_fan_out_name("0ff"));
    }
}
