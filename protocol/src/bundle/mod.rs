//! Sneakernet bundles: one file that carries a release to a site without a
//! network path to the vendor — its signed trust metadata (root chain,
//! timestamp, snapshot, targets), its chunk list and its chunks (all of them,
//! or for a *delta* bundle only those the site lacks given a base release).
//!
//! This module owns the byte layout (normative text: `docs/protocol.md`,
//! section 18) and its verification; it never touches a file. Whoever reads
//! the file asks a [`Verifier`] how many bytes it wants next
//! ([`Verifier::wants`], always bounded by the limits below, so a hostile
//! length never makes the reader allocate), feeds exactly those bytes
//! ([`Verifier::feed`]) and finally calls [`Verifier::finish`]. The trust
//! metadata is checked against a *copy* of the importer's trusted state, with
//! the same rules as metadata from any other source (signatures, thresholds,
//! root rotation, expiry, rollback), before a single chunk is looked at; every
//! chunk is then checked against the signed chunk list. A file that ends
//! early or carries bytes after its last chunk is refused.
//!
//! Layout (integers big-endian):
//! ```text
//! header   "WGBUNDLE" · version 0x01 · kind (1 full, 2 delta) · 2 zero bytes ·
//!          root count u32 · release id (32) · base release id (32, zero if full)
//! section  tag u8 · 3 zero bytes · length u32 · that many bytes
//!          roots (tag 1, root count of them, oldest first), timestamp (2),
//!          snapshot (3), targets (4), chunk list (5)
//! chunks   tag 6 · 3 zero bytes · record count u32, then per record:
//!          list index u32 · length u32 · the chunk's bytes
//! ```

pub mod health;

use crate::chunk::{verify_chunk, ChunkError, ChunkHash, ChunkList, ChunkListError};
use crate::id::ReleaseId;
use crate::limits::{
    MAX_BUNDLE_ROOTS, MAX_CHUNKS_PER_RELEASE, MAX_CHUNK_BYTES, MAX_ROOT_BYTES, MAX_SNAPSHOT_BYTES,
    MAX_TARGETS_BYTES, MAX_TIMESTAMP_BYTES,
};
use crate::metadata::trust::{BundleError, TrustedState};
use crate::release::Release;
use crate::time::Timestamp;
use crate::wire::MetadataBundle;
use serde_bytes::ByteBuf;
use std::collections::HashSet;
use std::fmt;
use thiserror::Error;

/// Magic bytes at the start of a release bundle.
pub const MAGIC: [u8; 8] = *b"WGBUNDLE";
/// Bundle format version.
pub const FORMAT_VERSION: u8 = 1;
/// Bytes of the header.
pub const HEADER_LEN: usize = 80;
/// Bytes of a section header (tag, 3 zero bytes, length).
pub const SECTION_HEADER_LEN: usize = 8;
/// Bytes before each chunk's bytes (list index, length).
pub const CHUNK_RECORD_HEADER_LEN: usize = 8;
/// Largest chunk list section: the list of a release with the most chunks.
pub const MAX_CHUNK_LIST_BYTES: u64 = crate::chunk::CHUNK_LIST_HEADER_LEN
    + crate::chunk::CHUNK_LIST_ENTRY_LEN * MAX_CHUNKS_PER_RELEASE as u64;

/// Whether a bundle carries every chunk or only those missing from a base release.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Every distinct chunk of the release.
    Full,
    /// Only the chunks whose hash is not in the base release's chunk list.
    Delta {
        /// The release the site already runs.
        base: ReleaseId,
    },
}

impl Kind {
    fn code(self) -> u8 {
        match self {
            Kind::Full => 1,
            Kind::Delta { .. } => 2,
        }
    }
}

/// The fixed-size start of a bundle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Full or delta.
    pub kind: Kind,
    /// How many root sections follow (1 to [`MAX_BUNDLE_ROOTS`]).
    pub roots: u32,
    /// The release carried.
    pub release: ReleaseId,
}

impl Header {
    /// The header's bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[..8].copy_from_slice(&MAGIC);
        out[8] = FORMAT_VERSION;
        out[9] = self.kind.code();
        out[12..16].copy_from_slice(&self.roots.to_be_bytes());
        out[16..48].copy_from_slice(&self.release.0);
        if let Kind::Delta { base } = self.kind {
            out[48..80].copy_from_slice(&base.0);
        }
        out
    }

    /// Reads and checks a header.
    pub fn decode(bytes: &[u8]) -> Result<Header, VerifyError> {
        if bytes.len() != HEADER_LEN {
            return Err(VerifyError::Truncated {
                section: Section::Header,
                offset: 0,
                wanted: HEADER_LEN,
                got: bytes.len(),
            });
        }
        if bytes[..8] != MAGIC {
            return Err(VerifyError::BadMagic);
        }
        if bytes[8] != FORMAT_VERSION {
            return Err(VerifyError::UnsupportedVersion { found: bytes[8] });
        }
        if bytes[10..12] != [0, 0] {
            return Err(VerifyError::Reserved {
                section: Section::Header,
            });
        }
        let roots = be32(&bytes[12..16]);
        if roots == 0 || roots as usize > MAX_BUNDLE_ROOTS {
            return Err(VerifyError::RootCount {
                count: roots,
                limit: MAX_BUNDLE_ROOTS,
            });
        }
        let release = ReleaseId(arr32(&bytes[16..48]));
        let base = arr32(&bytes[48..80]);
        let kind = match bytes[9] {
            1 if base == [0; 32] => Kind::Full,
            1 => return Err(VerifyError::FullWithBase),
            2 if base == [0; 32] || base == release.0 => {
                return Err(VerifyError::BadBase {
                    base: ReleaseId(base),
                })
            }
            2 => Kind::Delta {
                base: ReleaseId(base),
            },
            found => return Err(VerifyError::BadKind { found }),
        };
        Ok(Header {
            kind,
            roots,
            release,
        })
    }
}

/// The section tags, in the order they appear.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Tag {
    /// A root document.
    Root = 1,
    /// The timestamp document.
    Timestamp = 2,
    /// The snapshot document.
    Snapshot = 3,
    /// The targets document.
    Targets = 4,
    /// The encoded chunk list.
    ChunkList = 5,
    /// The chunk records (the length field is their count).
    Chunks = 6,
}

impl Tag {
    /// Largest length field this section may carry.
    pub fn limit(self) -> u64 {
        match self {
            Tag::Root => MAX_ROOT_BYTES as u64,
            Tag::Timestamp => MAX_TIMESTAMP_BYTES as u64,
            Tag::Snapshot => MAX_SNAPSHOT_BYTES as u64,
            Tag::Targets => MAX_TARGETS_BYTES as u64,
            Tag::ChunkList => MAX_CHUNK_LIST_BYTES,
            Tag::Chunks => u64::from(MAX_CHUNKS_PER_RELEASE),
        }
    }
}

/// The header of one section.
pub fn section_header(tag: Tag, length: u32) -> [u8; SECTION_HEADER_LEN] {
    let mut out = [0u8; SECTION_HEADER_LEN];
    out[0] = tag as u8;
    out[4..].copy_from_slice(&length.to_be_bytes());
    out
}

/// The header of one chunk record.
pub fn chunk_record_header(index: u32, length: u32) -> [u8; CHUNK_RECORD_HEADER_LEN] {
    let mut out = [0u8; CHUNK_RECORD_HEADER_LEN];
    out[..4].copy_from_slice(&index.to_be_bytes());
    out[4..].copy_from_slice(&length.to_be_bytes());
    out
}

/// The list indices a bundle of `list` carries, in order: the first
/// occurrence of each distinct hash, leaving out hashes in `base` (the base
/// release's chunk list, for a delta bundle).
pub fn chunks_to_carry(list: &ChunkList, base: Option<&ChunkList>) -> Vec<u32> {
    let mut skip: HashSet<ChunkHash> = base
        .map(|b| b.chunks.iter().map(|c| c.hash).collect())
        .unwrap_or_default();
    let mut out = Vec::new();
    for (i, c) in list.chunks.iter().enumerate() {
        if skip.insert(c.hash) {
            out.push(i as u32);
        }
    }
    out
}

/// Where in a bundle something went wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Section {
    /// The fixed header.
    Header,
    /// Root section `n` (0-based, in file order).
    Root(u32),
    /// The timestamp section.
    Timestamp,
    /// The snapshot section.
    Snapshot,
    /// The targets section.
    Targets,
    /// The chunk list section.
    ChunkList,
    /// The header of the chunk records.
    Chunks,
    /// Chunk record `record` (0-based), for list index `index` once known.
    Chunk {
        /// The record's position among the chunk records.
        record: u32,
        /// The chunk list index it claims, once read.
        index: Option<u32>,
    },
    /// After the last chunk record.
    End,
}

impl fmt::Display for Section {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Section::Header => f.write_str("header"),
            Section::Root(n) => write!(f, "root section {n}"),
            Section::Timestamp => f.write_str("timestamp section"),
            Section::Snapshot => f.write_str("snapshot section"),
            Section::Targets => f.write_str("targets section"),
            Section::ChunkList => f.write_str("chunk list section"),
            Section::Chunks => f.write_str("chunk records header"),
            Section::Chunk {
                record,
                index: Some(i),
            } => write!(f, "chunk record {record} (chunk index {i})"),
            Section::Chunk {
                record,
                index: None,
            } => write!(f, "chunk record {record}"),
            Section::End => f.write_str("end of the bundle"),
        }
    }
}

/// A bundle was refused; nothing it carries may be stored.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The file does not start with [`MAGIC`]: not a waveguard bundle.
    #[error("not a waveguard release bundle (the header's magic bytes are wrong)")]
    BadMagic,
    /// A bundle format this implementation does not read.
    #[error(
        "bundle format version {found} is not supported (this reads version {FORMAT_VERSION})"
    )]
    UnsupportedVersion {
        /// The version byte found.
        found: u8,
    },
    /// The kind byte is neither full nor delta.
    #[error("header: bundle kind {found} is unknown (1 = full, 2 = delta)")]
    BadKind {
        /// The kind byte found.
        found: u8,
    },
    /// Bytes that must be zero are not.
    #[error("{section}: reserved bytes are not zero")]
    Reserved {
        /// Where.
        section: Section,
    },
    /// No roots, or more than a metadata bundle may carry.
    #[error("header: the bundle declares {count} roots, it must carry 1 to {limit}")]
    RootCount {
        /// Roots declared.
        count: u32,
        /// The limit.
        limit: usize,
    },
    /// A full bundle names a base release.
    #[error("header: a full bundle must not name a base release")]
    FullWithBase,
    /// A delta bundle's base is missing or is the release itself.
    #[error("header: delta bundle base {base} is not a usable base release")]
    BadBase {
        /// The base named.
        base: ReleaseId,
    },
    /// A section other than the one the layout puts here.
    #[error("{section}: expected a section with tag {expected}, found tag {found}")]
    WrongTag {
        /// Where.
        section: Section,
        /// The tag the layout requires.
        expected: u8,
        /// The tag found.
        found: u8,
    },
    /// A section's length field is over its limit (or zero where bytes are required).
    #[error("{section}: length {length} is outside 1..={limit}")]
    SectionLength {
        /// Where.
        section: Section,
        /// The length field.
        length: u64,
        /// The limit.
        limit: u64,
    },
    /// The trust metadata does not verify against the importer's trusted
    /// state (foreign root, bad signature, below threshold, expired, rollback…).
    #[error("trust metadata (roots, timestamp, snapshot, targets sections) refused: {0}")]
    Metadata(#[source] BundleError),
    /// The metadata verified but its targets do not list the release the header names.
    #[error("header names release {release}, which the verified targets metadata does not list")]
    ReleaseNotInTargets {
        /// The release named.
        release: ReleaseId,
    },
    /// The chunk list does not match the signed release.
    #[error("chunk list section: {0}")]
    ChunkList(#[source] ChunkListError),
    /// More chunk records than the chunk list has chunks.
    #[error("chunk records header: {count} records, but the chunk list has only {chunks} chunks")]
    TooManyChunks {
        /// Records declared.
        count: u32,
        /// Chunks in the list.
        chunks: u32,
    },
    /// A chunk record names an index outside the chunk list.
    #[error("chunk record {record}: index {index} is outside the chunk list of {chunks} chunks")]
    IndexOutOfRange {
        /// The record.
        record: u32,
        /// The index it names.
        index: u32,
        /// Chunks in the list.
        chunks: u32,
    },
    /// Chunk records must name strictly increasing indices.
    #[error("chunk record {record}: index {index} does not follow index {previous}")]
    IndexOrder {
        /// The record.
        record: u32,
        /// The index it names.
        index: u32,
        /// The index of the record before.
        previous: u32,
    },
    /// A record carries a chunk whose hash an earlier record already carried.
    #[error("chunk record {record} (chunk index {index}): the same chunk was already carried")]
    DuplicateChunk {
        /// The record.
        record: u32,
        /// Its index.
        index: u32,
    },
    /// A record's length field differs from the chunk list's length for that index.
    #[error("chunk record {record} (chunk index {index}): length field {got}, the chunk list says {expected}")]
    RecordLength {
        /// The record.
        record: u32,
        /// Its index.
        index: u32,
        /// The length field.
        got: u32,
        /// The listed length.
        expected: u32,
    },
    /// A chunk's bytes do not hash to the chunk list's entry (altered content).
    #[error("chunk record {record} (chunk index {index}): {source}")]
    Chunk {
        /// The record.
        record: u32,
        /// Its index.
        index: u32,
        /// The failed check.
        #[source]
        source: ChunkError,
    },
    /// The file ended inside a section.
    #[error("bundle is truncated in the {section} at byte {offset}: {wanted} bytes needed, {got} present")]
    Truncated {
        /// Where.
        section: Section,
        /// File offset where the short read began.
        offset: u64,
        /// Bytes needed.
        wanted: usize,
        /// Bytes there were.
        got: usize,
    },
    /// Bytes follow the last chunk record.
    #[error("bundle has trailing bytes after its last chunk record (at byte {offset})")]
    TrailingBytes {
        /// File offset of the first extra byte.
        offset: u64,
    },
    /// A full bundle does not carry every chunk of its release.
    #[error("full bundle lacks {missing} of the release's {chunks} distinct chunks")]
    Incomplete {
        /// Distinct chunks neither carried.
        missing: u64,
        /// Distinct chunks of the release.
        chunks: u64,
    },
    /// A delta bundle needs chunks of its base release the importer does not hold.
    #[error("delta bundle (base {base}): {missing} chunks it leaves out are not in the store; import the base release first or use a full bundle")]
    MissingBase {
        /// The base release.
        base: ReleaseId,
        /// Distinct chunks neither carried nor held.
        missing: u64,
    },
    /// The verifier was driven out of its order (a caller bug, never caused by the file).
    #[error("bundle verifier used out of order: {0}")]
    OutOfOrder(&'static str),
    /// The reader fed a different number of bytes than [`Verifier::wants`] (a caller bug).
    #[error("verifier fed {got} bytes, it wanted {wanted}")]
    Misfed {
        /// Bytes wanted.
        wanted: usize,
        /// Bytes fed.
        got: usize,
    },
}

/// What one call of [`Verifier::feed`] completed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fed {
    /// A header or part of a section; nothing for the caller.
    Part,
    /// The trust metadata verified (after the targets section).
    Metadata,
    /// The chunk list verified.
    ChunkList,
    /// A chunk's bytes (the bytes just fed) verified against the list.
    Chunk {
        /// Its index in the chunk list.
        index: u32,
        /// Its hash.
        hash: ChunkHash,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Header,
    SectionHeader(Tag),
    SectionBody(Tag, usize),
    ChunkHeader,
    ChunkBody { index: u32, length: usize },
    Done,
}

/// A release bundle that verified completely.
#[derive(Clone, Debug)]
pub struct Verified {
    /// The header.
    pub header: Header,
    /// The metadata as carried (what the importer's engine is fed).
    pub metadata: MetadataBundle,
    /// The importer's trust after applying the metadata (what it stores).
    pub trust: TrustedState,
    /// The release carried.
    pub release: Release,
    /// The chunk list's exact bytes.
    pub list_bytes: Vec<u8>,
    /// The decoded chunk list.
    pub list: ChunkList,
    /// Chunk records carried.
    pub carried: u32,
    /// Bytes of chunk data carried.
    pub carried_bytes: u64,
}

/// Verifies a bundle fed to it piece by piece; see the module docs.
#[derive(Debug)]
pub struct Verifier {
    trust: TrustedState,
    now: Timestamp,
    step: Step,
    offset: u64,
    header: Option<Header>,
    metadata: MetadataBundle,
    release: Option<Release>,
    list_bytes: Vec<u8>,
    list: Option<ChunkList>,
    records: u32,
    record: u32,
    previous: Option<u32>,
    carried: HashSet<ChunkHash>,
    carried_bytes: u64,
}

impl Verifier {
    /// A verifier checking against a copy of `trust` at `now`.
    pub fn new(trust: &TrustedState, now: Timestamp) -> Self {
        Verifier {
            trust: trust.clone(),
            now,
            step: Step::Header,
            offset: 0,
            header: None,
            metadata: MetadataBundle::default(),
            release: None,
            list_bytes: Vec::new(),
            list: None,
            records: 0,
            record: 0,
            previous: None,
            carried: HashSet::new(),
            carried_bytes: 0,
        }
    }

    /// Bytes the next [`Verifier::feed`] must get; 0 once the last record is in.
    /// Never more than a section's limit (at most [`MAX_TARGETS_BYTES`]).
    pub fn wants(&self) -> usize {
        match self.step {
            Step::Header => HEADER_LEN,
            Step::SectionHeader(_) => SECTION_HEADER_LEN,
            Step::SectionBody(_, n) => n,
            Step::ChunkHeader => CHUNK_RECORD_HEADER_LEN,
            Step::ChunkBody { length, .. } => length,
            Step::Done => 0,
        }
    }

    /// Bytes fed so far (the file offset of the next piece).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The header, once read.
    pub fn header(&self) -> Option<&Header> {
        self.header.as_ref()
    }

    /// The verified chunk list, once read.
    pub fn chunk_list(&self) -> Option<&ChunkList> {
        self.list.as_ref()
    }

    /// Chunk records the bundle declares (known after the chunk records header).
    pub fn records(&self) -> u32 {
        self.records
    }

    /// Where the next piece belongs, for error messages.
    pub fn section(&self) -> Section {
        match self.step {
            Step::Header => Section::Header,
            Step::SectionHeader(tag) | Step::SectionBody(tag, _) => self.tag_section(tag),
            Step::ChunkHeader => Section::Chunk {
                record: self.record,
                index: None,
            },
            Step::ChunkBody { index, .. } => Section::Chunk {
                record: self.record,
                index: Some(index),
            },
            Step::Done => Section::End,
        }
    }

    fn tag_section(&self, tag: Tag) -> Section {
        match tag {
            Tag::Root => Section::Root(self.metadata.roots.len() as u32),
            Tag::Timestamp => Section::Timestamp,
            Tag::Snapshot => Section::Snapshot,
            Tag::Targets => Section::Targets,
            Tag::ChunkList => Section::ChunkList,
            Tag::Chunks => Section::Chunks,
        }
    }

    /// The error for input that ended after `got` of the wanted bytes.
    pub fn truncated(&self, got: usize) -> VerifyError {
        VerifyError::Truncated {
            section: self.section(),
            offset: self.offset,
            wanted: self.wants(),
            got,
        }
    }

    /// Feeds exactly [`Verifier::wants`] bytes.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Fed, VerifyError> {
        let wanted = self.wants();
        if bytes.len() != wanted || wanted == 0 {
            return Err(VerifyError::Misfed {
                wanted,
                got: bytes.len(),
            });
        }
        let fed = self.take(bytes)?;
        self.offset += bytes.len() as u64;
        Ok(fed)
    }

    fn take(&mut self, bytes: &[u8]) -> Result<Fed, VerifyError> {
        match self.step {
            Step::Header => {
                let header = Header::decode(bytes)?;
                self.header = Some(header);
                self.step = Step::SectionHeader(Tag::Root);
                Ok(Fed::Part)
            }
            Step::SectionHeader(tag) => {
                let section = self.tag_section(tag);
                if bytes[0] != tag as u8 {
                    return Err(VerifyError::WrongTag {
                        section,
                        expected: tag as u8,
                        found: bytes[0],
                    });
                }
                if bytes[1..4] != [0, 0, 0] {
                    return Err(VerifyError::Reserved { section });
                }
                let length = be32(&bytes[4..8]);
                if tag == Tag::Chunks {
                    return self.start_chunks(length);
                }
                if length == 0 || u64::from(length) > tag.limit() {
                    return Err(VerifyError::SectionLength {
                        section,
                        length: u64::from(length),
                        limit: tag.limit(),
                    });
                }
                self.step = Step::SectionBody(tag, length as usize);
                Ok(Fed::Part)
            }
            Step::SectionBody(tag, _) => self.section_body(tag, bytes),
            Step::ChunkHeader => self.chunk_header(bytes),
            Step::ChunkBody { index, .. } => self.chunk_body(index, bytes),
            Step::Done => Err(VerifyError::Misfed {
                wanted: 0,
                got: bytes.len(),
            }),
        }
    }

    fn section_body(&mut self, tag: Tag, bytes: &[u8]) -> Result<Fed, VerifyError> {
        let body = ByteBuf::from(bytes.to_vec());
        match tag {
            Tag::Root => {
                self.metadata.roots.push(body);
                let declared = self.header.map_or(0, |h| h.roots) as usize;
                self.step = if self.metadata.roots.len() < declared {
                    Step::SectionHeader(Tag::Root)
                } else {
                    Step::SectionHeader(Tag::Timestamp)
                };
                Ok(Fed::Part)
            }
            Tag::Timestamp => {
                self.metadata.timestamp = body;
                self.step = Step::SectionHeader(Tag::Snapshot);
                Ok(Fed::Part)
            }
            Tag::Snapshot => {
                self.metadata.snapshot = body;
                self.step = Step::SectionHeader(Tag::Targets);
                Ok(Fed::Part)
            }
            Tag::Targets => {
                self.metadata.targets = body;
                self.verify_metadata()?;
                self.step = Step::SectionHeader(Tag::ChunkList);
                Ok(Fed::Metadata)
            }
            Tag::ChunkList => {
                let release = self
                    .release
                    .as_ref()
                    .ok_or(VerifyError::OutOfOrder("chunk list before metadata"))?;
                let list = ChunkList::decode_for(release, bytes).map_err(VerifyError::ChunkList)?;
                self.list_bytes = bytes.to_vec();
                self.list = Some(list);
                self.step = Step::SectionHeader(Tag::Chunks);
                Ok(Fed::ChunkList)
            }
            // The chunk records header has no body; `start_chunks` handled it.
            Tag::Chunks => Err(VerifyError::Misfed {
                wanted: 0,
                got: bytes.len(),
            }),
        }
    }

    /// Applies the carried metadata to the copy of the trust, exactly as a
    /// bundle from gossip or a vendor would be, and finds the release.
    fn verify_metadata(&mut self) -> Result<(), VerifyError> {
        self.trust
            .apply_bundle(&self.metadata, self.now)
            .map_err(VerifyError::Metadata)?;
        let id = self.header.map_or(ReleaseId([0; 32]), |h| h.release);
        let release = self
            .trust
            .release(&id)
            .ok_or(VerifyError::ReleaseNotInTargets { release: id })?;
        self.release = Some(release);
        Ok(())
    }

    fn chunk_count(&self) -> u32 {
        self.list.as_ref().map_or(0, |l| l.chunks.len() as u32)
    }

    fn start_chunks(&mut self, count: u32) -> Result<Fed, VerifyError> {
        let chunks = self.chunk_count();
        if count > chunks {
            return Err(VerifyError::TooManyChunks { count, chunks });
        }
        self.records = count;
        self.step = if count == 0 {
            Step::Done
        } else {
            Step::ChunkHeader
        };
        Ok(Fed::Part)
    }

    fn chunk_header(&mut self, bytes: &[u8]) -> Result<Fed, VerifyError> {
        let record = self.record;
        let index = be32(&bytes[..4]);
        let length = be32(&bytes[4..8]);
        let chunks = self.chunk_count();
        let entry = match self
            .list
            .as_ref()
            .and_then(|l| l.chunks.get(index as usize))
        {
            Some(e) => *e,
            None => {
                return Err(VerifyError::IndexOutOfRange {
                    record,
                    index,
                    chunks,
                })
            }
        };
        if let Some(previous) = self.previous {
            if index <= previous {
                return Err(VerifyError::IndexOrder {
                    record,
                    index,
                    previous,
                });
            }
        }
        if self.carried.contains(&entry.hash) {
            return Err(VerifyError::DuplicateChunk { record, index });
        }
        // The list already bounds entry lengths by the release's chunker maximum.
        if length != entry.length || length > MAX_CHUNK_BYTES {
            return Err(VerifyError::RecordLength {
                record,
                index,
                got: length,
                expected: entry.length,
            });
        }
        self.step = Step::ChunkBody {
            index,
            length: length as usize,
        };
        Ok(Fed::Part)
    }

    fn chunk_body(&mut self, index: u32, bytes: &[u8]) -> Result<Fed, VerifyError> {
        let record = self.record;
        let entry = self
            .list
            .as_ref()
            .and_then(|l| l.chunks.get(index as usize))
            .copied()
            .ok_or(VerifyError::OutOfOrder("chunk before its record header"))?;
        verify_chunk(&entry, bytes).map_err(|source| VerifyError::Chunk {
            record,
            index,
            source,
        })?;
        self.carried.insert(entry.hash);
        self.carried_bytes += bytes.len() as u64;
        self.previous = Some(index);
        self.record += 1;
        self.step = if self.record == self.records {
            Step::Done
        } else {
            Step::ChunkHeader
        };
        Ok(Fed::Chunk {
            index,
            hash: entry.hash,
        })
    }

    /// Ends verification once [`Verifier::wants`] is 0. `trailing` says
    /// whether the input has bytes left; `held` whether the importer's store
    /// holds a chunk (consulted only for chunks a delta bundle leaves out).
    pub fn finish(
        self,
        trailing: bool,
        held: impl Fn(&ChunkHash) -> bool,
    ) -> Result<Verified, VerifyError> {
        if self.step != Step::Done {
            return Err(self.truncated(0));
        }
        if trailing {
            return Err(VerifyError::TrailingBytes {
                offset: self.offset,
            });
        }
        let (Some(header), Some(release), Some(list)) = (self.header, self.release, self.list)
        else {
            return Err(VerifyError::OutOfOrder("finished before the end"));
        };
        let distinct: HashSet<ChunkHash> = list.chunks.iter().map(|c| c.hash).collect();
        let left_out = distinct.iter().filter(|h| !self.carried.contains(*h));
        match header.kind {
            Kind::Full => {
                let missing = left_out.count() as u64;
                if missing > 0 {
                    return Err(VerifyError::Incomplete {
                        missing,
                        chunks: distinct.len() as u64,
                    });
                }
            }
            Kind::Delta { base } => {
                let missing = left_out.filter(|h| !held(h)).count() as u64;
                if missing > 0 {
                    return Err(VerifyError::MissingBase { base, missing });
                }
            }
        }
        Ok(Verified {
            header,
            metadata: self.metadata,
            trust: self.trust,
            release,
            list_bytes: self.list_bytes,
            list,
            carried: self.records,
            carried_bytes: self.carried_bytes,
        })
    }
}

/// Verifies a whole bundle held in memory (tests, small bundles).
pub fn verify_bytes(
    bytes: &[u8],
    trust: &TrustedState,
    now: Timestamp,
    held: impl Fn(&ChunkHash) -> bool,
) -> Result<Verified, VerifyError> {
    let mut v = Verifier::new(trust, now);
    let mut at = 0usize;
    loop {
        let n = v.wants();
        if n == 0 {
            break;
        }
        let Some(piece) = bytes.get(at..at.saturating_add(n)) else {
            return Err(v.truncated(bytes.len() - at));
        };
        v.feed(piece)?;
        at += n;
    }
    v.finish(at < bytes.len(), held)
}

/// A bundle's content, for [`encode`].
#[derive(Clone, Copy, Debug)]
pub struct Contents<'a> {
    /// Full or delta.
    pub kind: Kind,
    /// The release carried.
    pub release: ReleaseId,
    /// The trust metadata (roots oldest first).
    pub metadata: &'a MetadataBundle,
    /// The encoded chunk list.
    pub list_bytes: &'a [u8],
    /// `(list index, bytes)` of each chunk carried, in increasing index order.
    pub chunks: &'a [(u32, &'a [u8])],
}

/// Building a bundle failed: something does not fit the layout's limits.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EncodeError {
    /// No roots, or more than [`MAX_BUNDLE_ROOTS`].
    #[error("a bundle carries 1 to {MAX_BUNDLE_ROOTS} roots, not {0}")]
    RootCount(usize),
    /// A section is empty or over its limit.
    #[error("{section} of {length} bytes is outside 1..={limit}")]
    SectionLength {
        /// Which section.
        section: Section,
        /// Its length.
        length: u64,
        /// The limit.
        limit: u64,
    },
}

/// The section header for `bytes` under `tag`, checked against the limit.
pub fn checked_section_header(
    tag: Tag,
    section: Section,
    bytes: &[u8],
) -> Result<[u8; SECTION_HEADER_LEN], EncodeError> {
    let length = bytes.len() as u64;
    if length == 0 || length > tag.limit() {
        return Err(EncodeError::SectionLength {
            section,
            length,
            limit: tag.limit(),
        });
    }
    Ok(section_header(tag, length as u32))
}

/// Everything up to the chunk records header, for a streaming writer.
pub fn encode_prefix(c: &Contents<'_>, records: u32) -> Result<Vec<u8>, EncodeError> {
    let roots = c.metadata.roots.len();
    if roots == 0 || roots > MAX_BUNDLE_ROOTS {
        return Err(EncodeError::RootCount(roots));
    }
    let mut out = Vec::new();
    out.extend_from_slice(
        &Header {
            kind: c.kind,
            roots: roots as u32,
            release: c.release,
        }
        .encode(),
    );
    let mut section = |tag: Tag, s: Section, bytes: &[u8]| -> Result<(), EncodeError> {
        out.extend_from_slice(&checked_section_header(tag, s, bytes)?);
        out.extend_from_slice(bytes);
        Ok(())
    };
    for (i, r) in c.metadata.roots.iter().enumerate() {
        section(Tag::Root, Section::Root(i as u32), r)?;
    }
    section(Tag::Timestamp, Section::Timestamp, &c.metadata.timestamp)?;
    section(Tag::Snapshot, Section::Snapshot, &c.metadata.snapshot)?;
    section(Tag::Targets, Section::Targets, &c.metadata.targets)?;
    section(Tag::ChunkList, Section::ChunkList, c.list_bytes)?;
    out.extend_from_slice(&section_header(Tag::Chunks, records));
    Ok(out)
}

/// A whole bundle in memory.
pub fn encode(c: &Contents<'_>) -> Result<Vec<u8>, EncodeError> {
    let records = c.chunks.len() as u32;
    let mut out = encode_prefix(c, records)?;
    for (index, bytes) in c.chunks {
        out.extend_from_slice(&chunk_record_header(*index, bytes.len() as u32));
        out.extend_from_slice(bytes);
    }
    Ok(out)
}

fn be32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_be_bytes(a)
}

fn arr32(b: &[u8]) -> [u8; 32] {
    let mut a = [0u8; 32];
    a.copy_from_slice(&b[..32]);
    a
}

#[cfg(test)]
mod tests;
