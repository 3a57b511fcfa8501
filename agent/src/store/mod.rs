//! The agent's durable store: verified chunks, chunk lists, the trusted
//! metadata and the staging area for assembled artifacts, all under one data
//! directory. It is what the daemon's driver answers the protocol engine's
//! storage outputs with (`StoreChunk`, `LoadChunk`, `StoreChunkList`,
//! `StoreTrust`, `Assemble`) and what it feeds the engine at start-up
//! (`TrustedState::from_stored`, `Input::ChunksHeld`, `Input::ChunkList`).
//!
//! ```text
//! DATA/meta.sled/                 sled database: which chunks are held (and their
//!                                 lengths), chunk lists, trusted metadata, format marker
//! DATA/chunks/ab/abcd…            each chunk, named by the lowercase hex of its blake3
//! DATA/staging/<release id>/NAME  an assembled, verified artifact
//! DATA/store.format               says a store lives here (see [`FORMAT_FILE`])
//! ```
//!
//! The rule that keeps it honest: **a chunk is recorded in `meta.sled` only
//! after its bytes are verified and durable** (written to a temporary file,
//! synced, renamed, directory synced), and a record is always removed before
//! its file. So whatever a crash interrupts, a recorded chunk has a complete
//! file; a file without a record is ignored and removed by
//! [`Store::check_chunks`]. Reads verify again ([`Store::get_chunk`] checks
//! length and blake3 and drops a damaged chunk), so bit rot is never served.
//! The trusted metadata is replaced as one atomic batch ([`Store::put_trust`]).
//!
//! What sled cannot promise: it treats a damaged log tail as a torn write
//! and drops it, so after disk damage the database can come back *older*
//! than it was. Lost chunk records only cost a refetch (their files become
//! orphans and are removed); lost trust updates mean the engine restarts
//! from older (still verified) metadata. A database that comes back empty
//! or missing is refused outright.
//!
//! Every call is blocking file-system I/O. The async driver calls the store
//! from `tokio::task::spawn_blocking` (the store is `Send + Sync`; share it
//! in an `Arc`). Only one process can open a data directory at a time: sled
//! holds a lock on its database while the store is open.

mod chunks;
mod disk;
mod forget;
mod keyed;
mod lists;
mod meta;
mod rollouts;
mod scan;
mod staging;
mod trust;

pub use chunks::{Damage, GetError, HeldError, PutError, RemoveError};
pub use forget::{ForgetError, Forgotten};
pub use lists::{ListsError, PutListError, RemoveListError, MAX_STORED_CHUNK_LISTS};
pub use meta::SLED_CACHE_BYTES;
pub use rollouts::{PutRolloutError, RemoveRolloutError, RolloutsError};
pub use scan::{CheckDepth, CheckError, CheckReport};
pub use staging::{staged_file_name, AssembleError, DiscardError, MAX_STAGED_NAME_BYTES};
pub use trust::{PutTrustError, TrustError};

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use thiserror::Error;
use waveguard_protocol::chunk::ChunkHash;
use waveguard_protocol::ReleaseId;

/// Name of the sled database directory inside the data directory.
pub const META_DB: &str = "meta.sled";
/// Name of the chunk directory inside the data directory.
pub const CHUNKS_DIR: &str = "chunks";
/// Name of the staging directory inside the data directory.
pub const STAGING_DIR: &str = "staging";
/// Name of the file beside the database that records, outside sled, that a
/// store was initialised here. sled treats a damaged log as a torn write and
/// may open it empty; with this file, a database that opens empty or goes
/// missing is refused instead of silently starting afresh (which would drop
/// the trusted metadata and with it rollback protection).
pub const FORMAT_FILE: &str = "store.format";

/// Opening the store failed; nothing was served from it.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum OpenError {
    /// Something in the data directory's place is not a directory.
    #[error("{} exists but is not a directory; point the agent at a directory it may own", path.display())]
    NotADirectory {
        /// The offending path.
        path: PathBuf,
    },
    /// A directory of the store could not be created or inspected.
    #[error("cannot create or read {}: {source}", path.display())]
    Io {
        /// The directory.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
    /// Another process (or another `Store` in this one) has the database open.
    #[error("{} is in use by another waveguard agent (its lock is held); stop that agent or choose another data directory", path.display())]
    InUse {
        /// The database directory.
        path: PathBuf,
    },
    /// The database is gone although a store was kept here: the records that
    /// say which chunks are complete, and the trusted metadata, are lost.
    #[error("{} is missing but {} shows a store was kept here, so its records and trusted metadata are lost; restore {META_DB} from a backup, or remove the whole data directory to start afresh (trust then restarts from the configured root)", meta.display(), evidence.display())]
    MetadataMissing {
        /// Where the database should be.
        meta: PathBuf,
        /// What shows a store existed: the format file, or a non-empty chunk directory.
        evidence: PathBuf,
    },
    /// The database holds something this agent never writes.
    #[error("{} is damaged ({detail}); the store cannot be trusted: move the data directory aside and restart to start afresh (trust then restarts from the configured root)", path.display())]
    Corrupt {
        /// The database directory.
        path: PathBuf,
        /// What was wrong, in a few words.
        detail: String,
    },
    /// The database was written by an agent with another store format.
    #[error("{} holds store format {found:?} but this agent reads {expected:?}; run the agent version that wrote it, or move the data directory aside to start afresh", path.display())]
    UnknownFormat {
        /// The database directory.
        path: PathBuf,
        /// The format marker found.
        found: String,
        /// The format marker this agent writes.
        expected: &'static str,
    },
    /// sled refused to open or initialise the database.
    #[error("cannot open the database {}: {source}", path.display())]
    Db {
        /// The database directory.
        path: PathBuf,
        /// What sled said.
        #[source]
        source: sled::Error,
    },
}

/// Where everything lives inside the data directory.
#[derive(Clone, Debug)]
struct Layout {
    root: PathBuf,
    meta: PathBuf,
    chunks: PathBuf,
    staging: PathBuf,
}

impl Layout {
    fn new(data_dir: &Path) -> Self {
        Layout {
            root: data_dir.to_owned(),
            meta: data_dir.join(META_DB),
            chunks: data_dir.join(CHUNKS_DIR),
            staging: data_dir.join(STAGING_DIR),
        }
    }

    /// `chunks/ab`: spreads chunks over 256 directories so none grows huge.
    fn chunk_dir(&self, hash: &ChunkHash) -> PathBuf {
        self.chunks.join(hex::encode(&hash[..1]))
    }

    fn chunk_path(&self, hash: &ChunkHash) -> PathBuf {
        self.chunk_dir(hash).join(hex::encode(hash))
    }

    fn staged_dir(&self, release: &ReleaseId) -> PathBuf {
        self.staging.join(release.to_hex())
    }
}

/// Counters since the store was opened, for metrics and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Chunks written to disk by [`Store::put_chunk`] (not those already held).
    pub chunks_written: u64,
    /// Bytes of those chunks.
    pub bytes_written: u64,
    /// Chunks dropped because their file was missing or damaged.
    pub chunks_dropped: u64,
    /// Artifacts assembled and verified by [`Store::assemble`].
    pub artifacts_staged: u64,
}

#[derive(Debug, Default)]
struct Counters {
    chunks_written: AtomicU64,
    bytes_written: AtomicU64,
    chunks_dropped: AtomicU64,
    artifacts_staged: AtomicU64,
}

/// The agent's store. See the [module documentation](self) for the layout and
/// the crash-safety rule.
#[derive(Debug)]
pub struct Store {
    layout: Layout,
    meta: meta::Meta,
    /// Writers and readers of chunk files share it; [`Store::check_chunks`]
    /// takes it alone, because it deletes files no record names, which a
    /// concurrent `put_chunk` may be about to record.
    gate: RwLock<()>,
    /// Held while a chunk record and its file change together (rename and
    /// record, or unrecord and delete), so no interleaving leaves a record
    /// without its file; also serialises read-then-write updates of the
    /// trust and chunk-list trees.
    records: Mutex<()>,
    counters: Counters,
}

impl Store {
    /// Opens the store in `data_dir`, creating the directory, the database,
    /// `chunks/` and `staging/` if missing. Refuses a database it cannot
    /// trust (damaged, foreign, of another format, or lost while chunks
    /// remain) with an error that says how to recover.
    ///
    /// Opening does not scan chunk files; call [`Store::check_chunks`] next.
    pub fn open(data_dir: &Path) -> Result<Store, OpenError> {
        let layout = Layout::new(data_dir);
        make_dir_all(data_dir)?;
        let marker = data_dir.join(FORMAT_FILE);
        let history = read_marker(&marker)?;
        let meta_exists = match fs::symlink_metadata(&layout.meta) {
            Ok(_) => true,
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(source) => {
                return Err(OpenError::Io {
                    path: layout.meta.clone(),
                    source,
                })
            }
        };
        if !meta_exists {
            let evidence = match history {
                History::Initialised => Some(marker.clone()),
                History::Fresh if dir_has_entries(&layout.chunks)? => Some(layout.chunks.clone()),
                History::Fresh => None,
            };
            if let Some(evidence) = evidence {
                return Err(OpenError::MetadataMissing {
                    meta: layout.meta,
                    evidence,
                });
            }
        }
        let meta = meta::Meta::open(&layout.meta, history)?;
        make_dir_all(&layout.chunks)?;
        make_dir_all(&layout.staging)?;
        if history == History::Fresh {
            write_marker(data_dir, &marker)?;
        }
        // Make the new directories' entries durable before anything is recorded in them.
        disk::sync_dir(data_dir).map_err(|source| OpenError::Io {
            path: data_dir.to_owned(),
            source,
        })?;
        Ok(Store {
            layout,
            meta,
            gate: RwLock::new(()),
            records: Mutex::new(()),
            counters: Counters::default(),
        })
    }

    /// The counters since open.
    pub fn stats(&self) -> StoreStats {
        let c = &self.counters;
        StoreStats {
            chunks_written: c.chunks_written.load(Ordering::Relaxed),
            bytes_written: c.bytes_written.load(Ordering::Relaxed),
            chunks_dropped: c.chunks_dropped.load(Ordering::Relaxed),
            artifacts_staged: c.artifacts_staged.load(Ordering::Relaxed),
        }
    }

    /// Where a chunk's file lives (whether or not it is held).
    pub fn chunk_path(&self, hash: &ChunkHash) -> PathBuf {
        self.layout.chunk_path(hash)
    }

    // The guarded data is `()`, so a panic elsewhere while holding a lock
    // leaves nothing inconsistent behind; poisoning is ignored.
    fn shared(&self) -> RwLockReadGuard<'_, ()> {
        self.gate.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn exclusive(&self) -> RwLockWriteGuard<'_, ()> {
        self.gate.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_records(&self) -> MutexGuard<'_, ()> {
        self.records.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Whether a store was initialised in the data directory before.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum History {
    /// No format file: a new store (or one whose first open was interrupted).
    Fresh,
    /// The format file is there: the database must hold a store.
    Initialised,
}

/// Reads the format file; a format other than ours is refused.
fn read_marker(path: &Path) -> Result<History, OpenError> {
    let mut buf = Vec::new();
    // The marker is one short line; 64 bytes bound what a damaged file costs.
    match disk::read_bounded_into(path, 64, &mut buf) {
        Ok(disk::Fill::Missing) => Ok(History::Fresh),
        Ok(_) if buf.trim_ascii() == meta::FORMAT.as_bytes() => Ok(History::Initialised),
        Ok(_) => Err(OpenError::UnknownFormat {
            path: path.to_owned(),
            found: String::from_utf8_lossy(buf.trim_ascii()).into_owned(),
            expected: meta::FORMAT,
        }),
        Err(source) => Err(OpenError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Writes the format file durably, once the database holds its own marker.
fn write_marker(data_dir: &Path, path: &Path) -> Result<(), OpenError> {
    let io_err = |source| OpenError::Io {
        path: path.to_owned(),
        source,
    };
    let tmp = disk::temp_path(data_dir, FORMAT_FILE);
    disk::write_synced(&tmp, |f| {
        use std::io::Write;
        writeln!(f, "{}", meta::FORMAT)
    })
    .map_err(io_err)?;
    fs::rename(&tmp, path).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        io_err(e)
    })
}

fn make_dir_all(dir: &Path) -> Result<(), OpenError> {
    match fs::create_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(_) if dir.exists() && !dir.is_dir() => Err(OpenError::NotADirectory {
            path: dir.to_owned(),
        }),
        Err(source) => Err(OpenError::Io {
            path: dir.to_owned(),
            source,
        }),
    }
}

fn dir_has_entries(dir: &Path) -> Result<bool, OpenError> {
    match fs::read_dir(dir) {
        Ok(mut entries) => Ok(entries.next().is_some()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(OpenError::Io {
            path: dir.to_owned(),
            source,
        }),
    }
}
