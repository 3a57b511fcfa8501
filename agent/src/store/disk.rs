//! File-system steps the store builds its durability on: writing a synced
//! temporary file, syncing a directory so a rename in it survives a crash,
//! reading a file with a hard bound, and telling a full disk from other
//! failures.
//!
//! Nothing here knows about chunks or releases; the callers decide names and
//! what a failure means for the store's records.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Prefix of every temporary file the store writes; a file with this prefix
/// is never a finished chunk, so a start-up scan may delete it.
pub(crate) const TEMP_PREFIX: &str = ".tmp-";

/// Distinguishes temporary files of concurrent writers in one process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Whether an I/O error means the disk (or the user's quota) is full.
pub(crate) fn is_no_space(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    )
}

/// A fresh temporary path in `dir` for a file that will become `name`.
pub(crate) fn temp_path(dir: &Path, name: &str) -> PathBuf {
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    dir.join(format!("{TEMP_PREFIX}{name}.{}.{n}", std::process::id()))
}

/// Creates `tmp` (which must not exist), lets `write` fill it, and syncs it.
/// On any failure the temporary file is removed again, so a failed write
/// leaves nothing behind (a crash may; the start-up scan removes that).
pub(crate) fn write_synced(
    tmp: &Path,
    write: impl FnOnce(&mut File) -> io::Result<()>,
) -> io::Result<()> {
    let mut file = OpenOptions::new().write(true).create_new(true).open(tmp)?;
    let result = write(&mut file)
        .and_then(|()| file.flush())
        .and_then(|()| file.sync_all());
    if result.is_err() {
        drop(file);
        let _ = fs::remove_file(tmp);
    }
    result
}

/// Syncs a directory, so that entries created, renamed or removed in it are
/// durable (a rename alone may be lost in a crash until its directory is synced).
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    // Windows cannot open a directory as a file; NTFS journals renames itself.
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// Creates `dir` if missing (its parent must exist) and syncs the parent when
/// it did, so the new directory survives a crash. Returns whether it was created.
pub(crate) fn ensure_dir(dir: &Path) -> io::Result<bool> {
    match fs::create_dir(dir) {
        Ok(()) => {
            if let Some(parent) = dir.parent() {
                sync_dir(parent)?;
            }
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(false),
        Err(e) => Err(e),
    }
}

/// Reads `path` into `buf` (cleared first), never more than `limit + 1` bytes
/// whatever the file claims its size is.
pub(crate) fn read_bounded_into(path: &Path, limit: u64, buf: &mut Vec<u8>) -> io::Result<Fill> {
    buf.clear();
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Fill::Missing),
        Err(e) => return Err(e),
    };
    file.take(limit.saturating_add(1)).read_to_end(buf)?;
    if buf.len() as u64 > limit {
        return Ok(Fill::TooLong);
    }
    Ok(Fill::Complete)
}

/// What [`read_bounded_into`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fill {
    /// The buffer holds the whole file (at most the limit).
    Complete,
    /// The file holds more than the limit.
    TooLong,
    /// There is no file.
    Missing,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_space_is_recognised_from_the_os_error() {
        // ENOSPC and EDQUOT on Linux.
        #[cfg(target_os = "linux")]
        {
            assert!(is_no_space(&io::Error::from_raw_os_error(28)));
            assert!(is_no_space(&io::Error::from_raw_os_error(122)));
        }
        assert!(is_no_space(&io::Error::from(io::ErrorKind::StorageFull)));
        assert!(!is_no_space(&io::Error::from(
            io::ErrorKind::PermissionDenied
        )));
    }

    #[test]
    fn a_failed_write_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = temp_path(dir.path(), "x");
        let err = write_synced(&tmp, |f| {
            f.write_all(b"half")?;
            Err(io::Error::from(io::ErrorKind::StorageFull))
        })
        .unwrap_err();
        assert!(is_no_space(&err));
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn bounded_reads_tell_exact_too_long_and_missing_apart() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        fs::write(&p, [7u8; 10]).unwrap();
        let mut buf = vec![1, 2, 3];
        assert_eq!(read_bounded_into(&p, 10, &mut buf).unwrap(), Fill::Complete);
        assert_eq!(buf, [7u8; 10]);
        assert_eq!(read_bounded_into(&p, 9, &mut buf).unwrap(), Fill::TooLong);
        assert_eq!(buf.len(), 10, "reads stop one byte past the limit");
        let missing = dir.path().join("nope");
        assert_eq!(
            read_bounded_into(&missing, 9, &mut buf).unwrap(),
            Fill::Missing
        );
    }

    #[test]
    fn ensure_dir_creates_once() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("d");
        assert!(ensure_dir(&d).unwrap());
        assert!(!ensure_dir(&d).unwrap());
        fs::write(dir.path().join("f"), b"").unwrap();
        assert!(ensure_dir(&dir.path().join("f")).is_err());
    }
}
