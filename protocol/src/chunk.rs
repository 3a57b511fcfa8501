//! Content-defined chunking, chunk lists, and chunk verification.
//!
//! An artifact is cut with FastCDC (2020 variant) so that a new version shares
//! its unchanged chunks with the old one. The chunk list names every chunk by
//! length and blake3 in artifact order; the list's own blake3 and length are in
//! the signed release, so one signature covers every byte.
//!
//! Chunk list encoding (all integers big-endian):
//! `"WGCL"` (4 bytes) · format version `0x01` · 3 zero bytes · chunk count (u32) ·
//! artifact length (u64) · then per chunk: length (u32) · blake3 (32 bytes).

use crate::limits::{MAX_CHUNKS_PER_RELEASE, MAX_CHUNK_BYTES};
use crate::release::Release;
use thiserror::Error;

/// Magic bytes at the start of an encoded chunk list.
pub const CHUNK_LIST_MAGIC: [u8; 4] = *b"WGCL";
/// Chunk list format version.
pub const CHUNK_LIST_VERSION: u8 = 1;
/// Bytes before the first entry.
pub const CHUNK_LIST_HEADER_LEN: u64 = 20;
/// Bytes per entry.
pub const CHUNK_LIST_ENTRY_LEN: u64 = 36;

/// A chunk's blake3 hash, which is also its name.
pub type ChunkHash = [u8; 32];

/// One chunk of an artifact.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ChunkEntry {
    /// Length in bytes.
    pub length: u32,
    /// blake3 of the chunk's bytes.
    pub hash: ChunkHash,
}

/// The ordered chunks of one artifact.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkList {
    /// Chunks in artifact order.
    pub chunks: Vec<ChunkEntry>,
}

/// Length of an encoded chunk list of `count` chunks.
pub fn encoded_list_len(count: u32) -> u64 {
    CHUNK_LIST_HEADER_LEN + CHUNK_LIST_ENTRY_LEN * u64::from(count)
}

/// blake3 of some bytes.
pub fn hash(bytes: &[u8]) -> ChunkHash {
    *blake3::hash(bytes).as_bytes()
}

/// A chunk list could not be read or does not belong to its release.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChunkListError {
    /// Length differs from the one the release signed (truncation or padding).
    #[error("chunk list is {got} bytes, the release says {expected}")]
    WrongLength {
        /// Bytes received.
        got: u64,
        /// Bytes expected.
        expected: u64,
    },
    /// blake3 differs from the one the release signed.
    #[error("chunk list hash {got} does not match the signed hash {expected}")]
    WrongHash {
        /// Hex of what was received.
        got: String,
        /// Hex of what was signed.
        expected: String,
    },
    /// Not a chunk list at all, or of another format version.
    #[error("chunk list header is invalid: {0}")]
    BadHeader(String),
    /// A chunk is empty or larger than the limit or the release's max size.
    #[error("chunk {index} has length {length}, outside 1..={max}")]
    BadChunkLength {
        /// Which chunk.
        index: usize,
        /// Its length.
        length: u32,
        /// The bound.
        max: u32,
    },
    /// The chunk lengths do not add up to the artifact length.
    #[error("chunk lengths add up to {sum}, the artifact is {length} bytes")]
    LengthMismatch {
        /// Sum of chunk lengths.
        sum: u64,
        /// Artifact length.
        length: u64,
    },
}

/// A chunk does not match its entry.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChunkError {
    /// Wrong number of bytes.
    #[error("chunk {hash} is {got} bytes, expected {expected}")]
    WrongLength {
        /// Hex of the expected hash.
        hash: String,
        /// Bytes received.
        got: usize,
        /// Bytes expected.
        expected: u32,
    },
    /// The bytes hash to something else.
    #[error("chunk {expected} hashes to {got}")]
    WrongHash {
        /// Hex of the expected hash.
        expected: String,
        /// Hex of the actual hash.
        got: String,
    },
}

impl ChunkList {
    /// Total length of all chunks.
    pub fn total_len(&self) -> u64 {
        self.chunks.iter().map(|c| u64::from(c.length)).sum()
    }

    /// Encodes in the format described in the module docs.
    pub fn encode(&self) -> Vec<u8> {
        let n = u32::try_from(self.chunks.len()).unwrap_or(u32::MAX);
        let mut out = Vec::with_capacity(usize::try_from(encoded_list_len(n)).unwrap_or(0));
        out.extend_from_slice(&CHUNK_LIST_MAGIC);
        out.extend_from_slice(&[CHUNK_LIST_VERSION, 0, 0, 0]);
        out.extend_from_slice(&n.to_be_bytes());
        out.extend_from_slice(&self.total_len().to_be_bytes());
        for c in &self.chunks {
            out.extend_from_slice(&c.length.to_be_bytes());
            out.extend_from_slice(&c.hash);
        }
        out
    }

    /// Decodes a chunk list without reference to a release. Bounds every count
    /// before allocating; prefer [`ChunkList::decode_for`] for peer data.
    pub fn decode(bytes: &[u8]) -> Result<ChunkList, ChunkListError> {
        let header = bytes
            .get(..CHUNK_LIST_HEADER_LEN as usize)
            .ok_or_else(|| ChunkListError::BadHeader("shorter than the 20-byte header".into()))?;
        if header[..4] != CHUNK_LIST_MAGIC {
            return Err(ChunkListError::BadHeader("magic is not WGCL".into()));
        }
        if header[4..8] != [CHUNK_LIST_VERSION, 0, 0, 0] {
            return Err(ChunkListError::BadHeader(format!(
                "unknown format version {}",
                header[4]
            )));
        }
        let n = u32::from_be_bytes([header[8], header[9], header[10], header[11]]);
        if n > MAX_CHUNKS_PER_RELEASE {
            return Err(ChunkListError::BadHeader(format!(
                "{n} chunks is over the limit of {MAX_CHUNKS_PER_RELEASE}"
            )));
        }
        let mut total = [0u8; 8];
        total.copy_from_slice(&header[12..20]);
        let total = u64::from_be_bytes(total);
        let expected = encoded_list_len(n);
        if bytes.len() as u64 != expected {
            return Err(ChunkListError::WrongLength {
                got: bytes.len() as u64,
                expected,
            });
        }
        let mut chunks = Vec::with_capacity(n as usize);
        for (index, e) in bytes[CHUNK_LIST_HEADER_LEN as usize..]
            .chunks_exact(CHUNK_LIST_ENTRY_LEN as usize)
            .enumerate()
        {
            let length = u32::from_be_bytes([e[0], e[1], e[2], e[3]]);
            if length == 0 || length > MAX_CHUNK_BYTES {
                return Err(ChunkListError::BadChunkLength {
                    index,
                    length,
                    max: MAX_CHUNK_BYTES,
                });
            }
            let mut hash = [0u8; 32];
            hash.copy_from_slice(&e[4..]);
            chunks.push(ChunkEntry { length, hash });
        }
        let list = ChunkList { chunks };
        if list.total_len() != total {
            return Err(ChunkListError::LengthMismatch {
                sum: list.total_len(),
                length: total,
            });
        }
        Ok(list)
    }

    /// Verifies chunk list bytes against the signed release (length, then
    /// blake3, then contents) and decodes them.
    pub fn decode_for(release: &Release, bytes: &[u8]) -> Result<ChunkList, ChunkListError> {
        let r = &release.info.chunk_list;
        if bytes.len() as u64 != r.length {
            return Err(ChunkListError::WrongLength {
                got: bytes.len() as u64,
                expected: r.length,
            });
        }
        let got = hash(bytes);
        if got != release.chunk_list_blake3 {
            return Err(ChunkListError::WrongHash {
                got: hex::encode(got),
                expected: hex::encode(release.chunk_list_blake3),
            });
        }
        let list = ChunkList::decode(bytes)?;
        let max = release.info.chunker.max_size;
        if let Some((index, c)) = list.chunks.iter().enumerate().find(|(_, c)| c.length > max) {
            return Err(ChunkListError::BadChunkLength {
                index,
                length: c.length,
                max,
            });
        }
        if list.total_len() != release.length {
            return Err(ChunkListError::LengthMismatch {
                sum: list.total_len(),
                length: release.length,
            });
        }
        Ok(list)
    }
}

/// Checks a chunk's bytes against its entry: length first (cheap), then blake3.
pub fn verify_chunk(entry: &ChunkEntry, bytes: &[u8]) -> Result<(), ChunkError> {
    if bytes.len() != entry.length as usize {
        return Err(ChunkError::WrongLength {
            hash: hex::encode(entry.hash),
            got: bytes.len(),
            expected: entry.length,
        });
    }
    let got = hash(bytes);
    if got != entry.hash {
        return Err(ChunkError::WrongHash {
            expected: hex::encode(entry.hash),
            got: hex::encode(got),
        });
    }
    Ok(())
}
