//! Release bundles on disk: writing one from a vendor's release directory or
//! from an agent's store ([`export`]), and importing one into an agent's
//! store ([`import`]). The layout and every check are the protocol's
//! (`waveguard_protocol::bundle`); this module moves the bytes, shows
//! progress and writes the store.
//!
//! Import works on the agent's data directory while the agent is stopped
//! (sled lets one process hold a store; a running agent's lock is reported as
//! [`ImportError::Store`] with the advice to stop it or to go through its
//! API), or inside a running agent ([`import_into`], reached by
//! `POST /bundle`), which then feeds the result to its engine. It reads the bundle
//! twice: the first pass verifies everything — metadata against the store's
//! trusted state (or the configured root for a store that has none yet),
//! the chunk list, every chunk, the end of the file, and for a delta bundle
//! that the store holds every chunk left out — and writes nothing; only then
//! does the second pass store the chunks (verifying each again, since the
//! file could have changed in between), then the chunk list, then the
//! trusted metadata. When the agent starts it feeds all three to its engine
//! (`daemon::start`), which follows the release and serves it to the mesh.

use crate::fsio::{self, ReadError};
use crate::repo::{BlobReadError, Repo};
use crate::store::{OpenError, Store};
use crate::trusted::{self, FindError};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::HashSet;
use std::fmt;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use thiserror::Error;
use waveguard_protocol::bundle::{
    chunk_record_header, chunks_to_carry, encode_prefix, Contents, EncodeError, Fed, Kind,
    Verified, Verifier, VerifyError,
};
use waveguard_protocol::chunk::{verify_chunk, ChunkError, ChunkHash, ChunkList, ChunkListError};
use waveguard_protocol::limits::MAX_ROOT_BYTES;
use waveguard_protocol::metadata::root::RootError;
use waveguard_protocol::metadata::trust::{StoredTrustError, TrustedState};
use waveguard_protocol::release::Release;
use waveguard_protocol::{ReleaseId, Timestamp};

/// Where `export` reads a release from.
#[derive(Clone, Debug)]
pub enum Source {
    /// A release directory written by `waveguard publish` (the vendor's side).
    Repo {
        /// The directory.
        dir: PathBuf,
        /// Root to start trust from (default: the directory's own first root).
        root: Option<PathBuf>,
    },
    /// A stopped agent's data directory (a connected site passing a release on).
    Store {
        /// The data directory.
        data_dir: PathBuf,
    },
}

/// Writing a bundle failed; no file was left under the output name.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ExportError {
    /// The release directory's metadata did not load or verify.
    #[error("release directory: {0}")]
    Load(#[source] trusted::LoadError),
    /// The agent's store could not be opened.
    #[error("cannot open the agent's store: {0}")]
    Store(#[source] OpenError),
    /// The store's trusted metadata could not be read or does not verify.
    #[error("the store's trusted metadata: {0}")]
    StoredTrust(String),
    /// The release (or base) is not in the trusted targets.
    #[error("{what}: {source}")]
    Find {
        /// `release` or `base release`.
        what: &'static str,
        /// Why.
        #[source]
        source: FindError,
    },
    /// The base is the release itself.
    #[error("the base release is the release itself; a delta needs the release the site runs now")]
    SameBase,
    /// A chunk list is missing or unreadable.
    #[error("chunk list of {release}: {detail}")]
    ChunkList {
        /// The release.
        release: String,
        /// What was wrong.
        detail: String,
    },
    /// A chunk list does not match its signed release.
    #[error("chunk list of {release}: {source}")]
    BadChunkList {
        /// The release.
        release: String,
        /// Why.
        #[source]
        source: ChunkListError,
    },
    /// A chunk the bundle must carry is missing or unreadable at the source.
    #[error("chunk {index} ({hash}): {detail}")]
    ChunkRead {
        /// Its index in the chunk list.
        index: u32,
        /// Its hash (hex).
        hash: String,
        /// What was wrong.
        detail: String,
    },
    /// A chunk at the source does not match the chunk list.
    #[error("chunk {index} at the source is damaged: {source}")]
    BadChunk {
        /// Its index in the chunk list.
        index: u32,
        /// The failed check.
        #[source]
        source: ChunkError,
    },
    /// The metadata does not fit the bundle layout.
    #[error("{0}")]
    Encode(#[source] EncodeError),
    /// The output could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
}

/// What `export` wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportReport {
    /// The bundle file.
    pub path: PathBuf,
    /// The release.
    pub release: ReleaseId,
    /// Product.
    pub product: String,
    /// Version.
    pub version: String,
    /// The base release of a delta bundle.
    pub base: Option<ReleaseId>,
    /// Chunks in the release's list.
    pub chunks: u32,
    /// Chunk records written.
    pub carried: u32,
    /// Bytes of chunk data written.
    pub carried_bytes: u64,
    /// Size of the file.
    pub file_bytes: u64,
}

impl fmt::Display for ExportReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.base {
            Some(b) => format!("delta bundle (base {b})"),
            None => "full bundle".into(),
        };
        write!(
            f,
            "wrote {kind} of {} {} ({}) to {}: {} of {} chunks, {} bytes of chunks, {} bytes in all",
            self.product,
            self.version,
            self.release,
            self.path.display(),
            self.carried,
            self.chunks,
            self.carried_bytes,
            self.file_bytes
        )
    }
}

/// A release with its trust, as read from an export source.
struct Loaded {
    trust: TrustedState,
    reader: Reader,
}

enum Reader {
    Repo(Repo),
    Store(Box<Store>),
}

impl Reader {
    fn list_bytes(&self, release: &Release) -> Result<Vec<u8>, ExportError> {
        let name = release_name(release);
        let missing = |detail: String| ExportError::ChunkList {
            release: name.clone(),
            detail,
        };
        match self {
            Reader::Repo(repo) => repo
                .read_chunk_list(release)
                .map_err(|e| missing(e.to_string())),
            Reader::Store(store) => store
                .chunk_lists()
                .map_err(|e| missing(e.to_string()))?
                .into_iter()
                .find(|(id, _)| *id == release.id)
                .map(|(_, data)| data)
                .ok_or_else(|| missing("the store does not hold it".into())),
        }
    }

    fn list(&self, release: &Release) -> Result<(Vec<u8>, ChunkList), ExportError> {
        let bytes = self.list_bytes(release)?;
        let list =
            ChunkList::decode_for(release, &bytes).map_err(|source| ExportError::BadChunkList {
                release: release_name(release),
                source,
            })?;
        Ok((bytes, list))
    }

    fn chunk(&self, index: u32, list: &ChunkList) -> Result<Vec<u8>, ExportError> {
        let Some(entry) = list.chunks.get(index as usize) else {
            return Err(ExportError::ChunkRead {
                index,
                hash: String::new(),
                detail: "outside the chunk list".into(),
            });
        };
        let read_err = |detail: String| ExportError::ChunkRead {
            index,
            hash: hex::encode(entry.hash),
            detail,
        };
        let bytes = match self {
            Reader::Repo(repo) => repo.read_chunk(entry).map_err(|e| match e {
                BlobReadError::Missing { path } => {
                    read_err(format!("{} is missing", path.display()))
                }
                other => read_err(other.to_string()),
            })?,
            Reader::Store(store) => store
                .get_chunk(&entry.hash, entry.length)
                .map_err(|e| read_err(e.to_string()))?
                .ok_or_else(|| read_err("the store does not hold it".into()))?,
        };
        verify_chunk(entry, &bytes).map_err(|source| ExportError::BadChunk { index, source })?;
        Ok(bytes)
    }
}

fn release_name(r: &Release) -> String {
    format!("{}/{}", r.info.product, r.info.version)
}

fn load_source(source: &Source, now: Timestamp) -> Result<Loaded, ExportError> {
    match source {
        Source::Repo { dir, root } => {
            let repo = Repo::new(dir);
            let loaded = trusted::load(&repo, root.as_deref(), now).map_err(ExportError::Load)?;
            Ok(Loaded {
                trust: loaded.state,
                reader: Reader::Repo(repo),
            })
        }
        Source::Store { data_dir } => {
            let store = Store::open(data_dir).map_err(ExportError::Store)?;
            let stored = store
                .trust()
                .map_err(|e| ExportError::StoredTrust(e.to_string()))?
                .ok_or_else(|| {
                    ExportError::StoredTrust(format!(
                        "{} holds no trusted metadata yet",
                        data_dir.display()
                    ))
                })?;
            let trust = TrustedState::from_stored(&stored)
                .map_err(|e| ExportError::StoredTrust(e.to_string()))?;
            Ok(Loaded {
                trust,
                reader: Reader::Store(Box::new(store)),
            })
        }
    }
}

/// Shows progress on standard error when asked (the CLI asks when it is a terminal).
fn progress(show: bool, len: u64, what: &str) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(
        "{msg:>10} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_string());
    bar
}

/// Writes the bundle of `release` (and, with `base`, only the chunks `base`
/// lacks) to `out`, through a temporary file renamed into place at the end.
pub fn export(
    source: &Source,
    release: &str,
    base: Option<&str>,
    out: &Path,
    now: Timestamp,
    show_progress: bool,
) -> Result<ExportReport, ExportError> {
    let loaded = load_source(source, now)?;
    let find = |what, spec| {
        trusted::find_release(&loaded.trust, spec)
            .map_err(|source| ExportError::Find { what, source })
    };
    let rel = find("release", release)?;
    let (list_bytes, list) = loaded.reader.list(&rel)?;
    let (kind, base_list) = match base {
        Some(spec) => {
            let b = find("base release", spec)?;
            if b.id == rel.id {
                return Err(ExportError::SameBase);
            }
            let (_, bl) = loaded.reader.list(&b)?;
            (Kind::Delta { base: b.id }, Some(bl))
        }
        None => (Kind::Full, None),
    };
    let indices = chunks_to_carry(&list, base_list.as_ref());
    let carried_bytes: u64 = indices
        .iter()
        .filter_map(|&i| list.chunks.get(i as usize))
        .map(|c| u64::from(c.length))
        .sum();
    let metadata = loaded.trust.bundle();
    let prefix = encode_prefix(
        &Contents {
            kind,
            release: rel.id,
            metadata: &metadata,
            list_bytes: &list_bytes,
            chunks: &[],
        },
        indices.len() as u32,
    )
    .map_err(ExportError::Encode)?;

    let write_err = |path: &Path| {
        let path = path.to_owned();
        move |source| ExportError::Write { path, source }
    };
    let tmp = temp_name(out);
    let file = File::create(&tmp).map_err(write_err(&tmp))?;
    let bar = progress(show_progress, carried_bytes, "export");
    let written = (|| {
        let mut w = BufWriter::with_capacity(1 << 20, file);
        w.write_all(&prefix).map_err(write_err(&tmp))?;
        for &i in &indices {
            let bytes = loaded.reader.chunk(i, &list)?;
            w.write_all(&chunk_record_header(i, bytes.len() as u32))
                .map_err(write_err(&tmp))?;
            w.write_all(&bytes).map_err(write_err(&tmp))?;
            bar.inc(bytes.len() as u64);
        }
        let file = w.into_inner().map_err(|e| ExportError::Write {
            path: tmp.clone(),
            source: e.into_error(),
        })?;
        // Removable media are pulled out soon after: the bytes must be on them.
        file.sync_all().map_err(write_err(&tmp))?;
        let len = file.metadata().map_err(write_err(&tmp))?.len();
        std::fs::rename(&tmp, out).map_err(write_err(out))?;
        Ok(len)
    })();
    bar.finish_and_clear();
    let file_bytes = written.inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })?;
    Ok(ExportReport {
        path: out.to_owned(),
        release: rel.id,
        product: rel.info.product.clone(),
        version: rel.info.version.clone(),
        base: match kind {
            Kind::Delta { base } => Some(base),
            Kind::Full => None,
        },
        chunks: list.chunks.len() as u32,
        carried: indices.len() as u32,
        carried_bytes,
        file_bytes,
    })
}

fn temp_name(out: &Path) -> PathBuf {
    let mut name = out
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| "bundle".into());
    name.push(".partial");
    out.with_file_name(name)
}

/// Importing a bundle failed. When the bundle was refused ([`ImportError::Refused`]),
/// nothing was written to the store.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ImportError {
    /// The bundle file could not be opened or read.
    #[error("cannot read bundle {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
    /// The bundle failed verification; the store is untouched.
    #[error("bundle {} refused, nothing was stored: {source}", path.display())]
    Refused {
        /// The file.
        path: PathBuf,
        /// The failed check.
        #[source]
        source: VerifyError,
    },
    /// The store could not be opened (for example the agent is running and holds its lock).
    #[error("cannot open the agent's store: {0}; `bundle import` writes the data directory itself, so stop the agent first and start it again afterwards, or pass --api to have the running agent import it")]
    Store(#[source] OpenError),
    /// Neither the store nor the caller gave a trusted root.
    #[error("{} holds no trusted metadata yet; pass --trusted-root (or --config with trusted_root) with the root from your vendor", data_dir.display())]
    NoTrust {
        /// The data directory.
        data_dir: PathBuf,
    },
    /// The given trusted root could not be read.
    #[error("trusted root: {0}")]
    ReadRoot(#[source] ReadError),
    /// The given trusted root does not verify.
    #[error("trusted root {}: {source}", path.display())]
    Root {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: RootError,
    },
    /// The store's trusted metadata does not verify.
    #[error("the store's trusted metadata does not verify: {0}")]
    StoredTrust(#[source] StoredTrustError),
    /// Reading from or writing to the store failed.
    #[error("store: {0}")]
    StoreIo(String),
    /// The bundle verified in the first pass but not in the second: it changed on disk.
    #[error("bundle {} changed while it was being imported (chunks already stored are verified and harmless; no metadata was stored): {source}", path.display())]
    Changed {
        /// The file.
        path: PathBuf,
        /// The failed check.
        #[source]
        source: VerifyError,
    },
}

/// What `import` stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportReport {
    /// The release.
    pub release: ReleaseId,
    /// Product.
    pub product: String,
    /// Version.
    pub version: String,
    /// The base of a delta bundle.
    pub base: Option<ReleaseId>,
    /// Chunk records in the bundle.
    pub carried: u32,
    /// Chunks written to the store (those it did not hold).
    pub stored: u32,
    /// Trusted targets version afterwards.
    pub targets_version: Option<u64>,
    /// Whether a running agent took it (it serves the release at once).
    pub running: bool,
}

impl fmt::Display for ImportReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "imported {} {} ({}): bundle verified, {} chunks carried, {} new chunks stored",
            self.product, self.version, self.release, self.carried, self.stored
        )?;
        if let Some(base) = self.base {
            write!(f, " (delta on {base})")?;
        }
        if let Some(v) = self.targets_version {
            write!(f, "; trusted targets now v{v}")?;
        }
        match self.running {
            true => f.write_str("; the agent serves it to the site now"),
            false => f.write_str("; start the agent to serve it to the site"),
        }
    }
}

/// The trust to verify against: the store's, else the given root.
fn importer_trust(
    store: &Store,
    data_dir: &Path,
    root: Option<&Path>,
) -> Result<TrustedState, ImportError> {
    if let Some(stored) = store
        .trust()
        .map_err(|e| ImportError::StoreIo(e.to_string()))?
    {
        return TrustedState::from_stored(&stored).map_err(ImportError::StoredTrust);
    }
    let Some(path) = root else {
        return Err(ImportError::NoTrust {
            data_dir: data_dir.to_owned(),
        });
    };
    let bytes = fsio::read_bounded(path, MAX_ROOT_BYTES as u64).map_err(ImportError::ReadRoot)?;
    TrustedState::new(&bytes).map_err(|source| ImportError::Root {
        path: path.to_owned(),
        source,
    })
}

/// Reads up to `n` bytes into `buf` (resized to `n`); returns how many there were.
fn read_piece(r: &mut impl Read, buf: &mut Vec<u8>, n: usize) -> io::Result<usize> {
    buf.resize(n, 0);
    let mut got = 0;
    while got < n {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(k) => got += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Why one pass over the bundle stopped.
enum PassError {
    Io(io::Error),
    Verify(VerifyError),
    Store(String),
}

/// Feeds the whole file to a verifier; `on_chunk` gets every verified chunk.
fn pass(
    path: &Path,
    trust: &TrustedState,
    now: Timestamp,
    held: &HashSet<ChunkHash>,
    bar: &ProgressBar,
    mut on_chunk: impl FnMut(&ChunkHash, &[u8]) -> Result<(), String>,
) -> Result<Verified, PassError> {
    let file = File::open(path).map_err(PassError::Io)?;
    let mut r = BufReader::with_capacity(1 << 20, file);
    let mut v = Verifier::new(trust, now);
    let mut buf = Vec::new();
    loop {
        // Bounded by the verifier: at most a section's limit.
        let n = v.wants();
        if n == 0 {
            break;
        }
        let got = read_piece(&mut r, &mut buf, n).map_err(PassError::Io)?;
        if got < n {
            return Err(PassError::Verify(v.truncated(got)));
        }
        let fed = v.feed(&buf).map_err(PassError::Verify)?;
        bar.inc(n as u64);
        if let Fed::Chunk { hash, .. } = fed {
            on_chunk(&hash, &buf).map_err(PassError::Store)?;
        }
    }
    let mut extra = Vec::new();
    let trailing = read_piece(&mut r, &mut extra, 1).map_err(PassError::Io)? > 0;
    v.finish(trailing, |h| held.contains(h))
        .map_err(PassError::Verify)
}

/// Verifies the bundle at `path` completely against the store in `data_dir`
/// (or `root` for a store without trust yet), then stores it. See the module docs.
pub fn import(
    path: &Path,
    data_dir: &Path,
    root: Option<&Path>,
    now: Timestamp,
    show_progress: bool,
) -> Result<ImportReport, ImportError> {
    let store = Store::open(data_dir).map_err(ImportError::Store)?;
    let trust = importer_trust(&store, data_dir, root)?;
    let imported = import_into(&store, &trust, path, now, show_progress)?;
    // Trust last: a store never names a release whose content it was not given.
    store
        .put_trust(&imported.verified.trust.stored())
        .map_err(|e| ImportError::StoreIo(e.to_string()))?;
    Ok(imported.report)
}

/// A bundle stored by [`import_into`].
#[derive(Debug)]
pub struct Imported {
    /// What to tell the operator.
    pub report: ImportReport,
    /// The verified bundle (its metadata is what a running engine is fed).
    pub verified: Verified,
    /// Every chunk hash of the release's list (all held now).
    pub chunks: Vec<ChunkHash>,
}

/// Verifies the bundle at `path` completely against `trust`, then stores its
/// chunks and chunk list in `store` (an open store: the offline import's, or
/// a running agent's). The trusted metadata is left to the caller: the
/// offline import stores it, a running agent feeds it to its engine, which
/// applies and stores it itself.
pub fn import_into(
    store: &Store,
    trust: &TrustedState,
    path: &Path,
    now: Timestamp,
    show_progress: bool,
) -> Result<Imported, ImportError> {
    let read_err = |source| ImportError::Read {
        path: path.to_owned(),
        source,
    };
    let size = std::fs::metadata(path).map_err(read_err)?.len();
    let held: HashSet<ChunkHash> = store
        .held()
        .map_err(|e| ImportError::StoreIo(e.to_string()))?
        .into_iter()
        .collect();

    let bar = progress(show_progress, size, "verify");
    let first = pass(path, trust, now, &held, &bar, |_, _| Ok(()));
    bar.finish_and_clear();
    match first {
        Ok(_) => {}
        Err(PassError::Io(e)) => return Err(read_err(e)),
        Err(PassError::Verify(source)) => {
            return Err(ImportError::Refused {
                path: path.to_owned(),
                source,
            })
        }
        Err(PassError::Store(e)) => return Err(ImportError::StoreIo(e)),
    }

    let bar = progress(show_progress, size, "store");
    let mut stored = 0u32;
    let second = pass(path, trust, now, &held, &bar, |hash, bytes| {
        if held.contains(hash) {
            return Ok(());
        }
        store.put_chunk(hash, bytes).map_err(|e| e.to_string())?;
        stored += 1;
        Ok(())
    });
    bar.finish_and_clear();
    let verified = match second {
        Ok(v) => v,
        Err(PassError::Io(e)) => return Err(read_err(e)),
        Err(PassError::Verify(source)) => {
            return Err(ImportError::Changed {
                path: path.to_owned(),
                source,
            })
        }
        Err(PassError::Store(e)) => return Err(ImportError::StoreIo(e)),
    };
    // The chunk list only after every chunk.
    store
        .put_chunk_list(&verified.release.id, &verified.list_bytes)
        .map_err(|e| ImportError::StoreIo(e.to_string()))?;
    let report = ImportReport {
        release: verified.release.id,
        product: verified.release.info.product.clone(),
        version: verified.release.info.version.clone(),
        base: match verified.header.kind {
            Kind::Delta { base } => Some(base),
            Kind::Full => None,
        },
        carried: verified.carried,
        stored,
        targets_version: verified.trust.versions().targets,
        running: false,
    };
    let chunks = verified.list.chunks.iter().map(|c| c.hash).collect();
    Ok(Imported {
        report,
        verified,
        chunks,
    })
}
