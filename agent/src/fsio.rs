//! Small file-system primitives every other module builds on: reading a file
//! with a size bound, replacing a file atomically, and creating a file that
//! must not exist yet.
//!
//! Every write goes to a temporary file in the destination's directory first,
//! is flushed to disk, and only then appears under its final name (by rename,
//! or by hard link when an existing file must never be replaced). A crash
//! therefore leaves either the old file, the complete new one, or a stray
//! temporary file, never a half-written file under the final name.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use thiserror::Error;

/// Reading a bounded file failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ReadError {
    /// There is no file at the path.
    #[error("{} does not exist", path.display())]
    NotFound {
        /// The path asked for.
        path: PathBuf,
    },
    /// The file holds more bytes than the caller allows.
    #[error("{} is larger than the limit of {limit} bytes", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The most bytes the caller accepts.
        limit: u64,
    },
    /// The operating system refused to open or read the file.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
}

/// Writing a file failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum WriteError {
    /// The destination exists and the caller asked never to replace it.
    #[error("{} already exists; refusing to overwrite it", path.display())]
    Exists {
        /// The destination.
        path: PathBuf,
    },
    /// The destination has no parent directory or no file name.
    #[error("{} is not a file path", path.display())]
    NotAFilePath {
        /// The destination.
        path: PathBuf,
    },
    /// The operating system refused an operation.
    #[error("cannot write {}: {source}", path.display())]
    Io {
        /// The destination.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
}

/// Reads a whole file, refusing it if it holds more than `limit` bytes.
/// At most `limit + 1` bytes are ever read, whatever the file claims its size is.
pub fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>, ReadError> {
    let file = File::open(path).map_err(|source| open_error(path, source))?;
    let io_err = |source| ReadError::Io {
        path: path.to_owned(),
        source,
    };
    let hint = file.metadata().map_err(io_err)?.len();
    if hint > limit {
        return Err(ReadError::TooLarge {
            path: path.to_owned(),
            limit,
        });
    }
    // The size hint only sizes the buffer; the `take` is what enforces the bound.
    let mut out = Vec::with_capacity(usize::try_from(hint).unwrap_or(0));
    file.take(limit.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(io_err)?;
    if out.len() as u64 > limit {
        return Err(ReadError::TooLarge {
            path: path.to_owned(),
            limit,
        });
    }
    Ok(out)
}

fn open_error(path: &Path, source: io::Error) -> ReadError {
    if source.kind() == io::ErrorKind::NotFound {
        ReadError::NotFound {
            path: path.to_owned(),
        }
    } else {
        ReadError::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// Writes `bytes` to `path`, replacing any existing file atomically.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), WriteError> {
    let tmp = write_temp(path, bytes, None)?;
    fs::rename(&tmp, path).map_err(|source| {
        let _ = fs::remove_file(&tmp);
        WriteError::Io {
            path: path.to_owned(),
            source,
        }
    })
}

/// Writes `bytes` to `path`, which must not exist yet, with Unix permission
/// bits `mode` set before any byte is written (so a secret is never readable
/// by others, even briefly).
pub fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), WriteError> {
    if path.symlink_metadata().is_ok() {
        return Err(WriteError::Exists {
            path: path.to_owned(),
        });
    }
    let tmp = write_temp(path, bytes, Some(mode))?;
    // A hard link never replaces an existing name, unlike rename, so a file
    // created in the meantime is not clobbered either.
    let linked = fs::hard_link(&tmp, path);
    let _ = fs::remove_file(&tmp);
    linked.map_err(|source| {
        if source.kind() == io::ErrorKind::AlreadyExists {
            WriteError::Exists {
                path: path.to_owned(),
            }
        } else {
            WriteError::Io {
                path: path.to_owned(),
                source,
            }
        }
    })
}

/// Creates `dir` and its parents if missing.
pub fn create_dir_all(dir: &Path) -> Result<(), WriteError> {
    fs::create_dir_all(dir).map_err(|source| WriteError::Io {
        path: dir.to_owned(),
        source,
    })
}

/// Distinguishes temporary files of concurrent writers in one process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes and syncs a temporary file next to `path` and returns its path.
fn write_temp(path: &Path, bytes: &[u8], mode: Option<u32>) -> Result<PathBuf, WriteError> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(WriteError::NotAFilePath {
            path: path.to_owned(),
        });
    };
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp_name = format!(".{}.tmp.{}.{n}", name.to_string_lossy(), std::process::id());
    let tmp = dir.join(tmp_name);
    let io_err = |source| WriteError::Io {
        path: path.to_owned(),
        source,
    };
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    set_mode(&mut opts, mode);
    let mut file = opts.open(&tmp).map_err(io_err)?;
    let written = file.write_all(bytes).and_then(|()| file.sync_all());
    if let Err(source) = written {
        let _ = fs::remove_file(&tmp);
        return Err(io_err(source));
    }
    Ok(tmp)
}

#[cfg(unix)]
fn set_mode(opts: &mut OpenOptions, mode: Option<u32>) {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(mode) = mode {
        opts.mode(mode);
    }
}

#[cfg(not(unix))]
fn set_mode(_opts: &mut OpenOptions, _mode: Option<u32>) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_read_accepts_the_limit_and_refuses_one_more() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        fs::write(&p, [1u8; 10]).unwrap();
        assert_eq!(read_bounded(&p, 10).unwrap().len(), 10);
        assert!(matches!(
            read_bounded(&p, 9),
            Err(ReadError::TooLarge { limit: 9, .. })
        ));
        assert!(matches!(
            read_bounded(&dir.path().join("nope"), 9),
            Err(ReadError::NotFound { .. })
        ));
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn write_new_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        write_new(&p, b"one", 0o600).unwrap();
        let err = write_new(&p, b"two", 0o600).unwrap_err();
        assert!(matches!(err, WriteError::Exists { .. }), "{err}");
        assert_eq!(fs::read(&p).unwrap(), b"one");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[cfg(unix)]
    #[test]
    fn write_new_sets_the_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        write_new(&p, b"secret", 0o600).unwrap();
        let mode = fs::metadata(&p).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
