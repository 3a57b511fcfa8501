//! Content-defined chunking: cutting an artifact into the chunks its chunk list names.
//!
//! The publisher runs this once per release; nodes never re-chunk, they only
//! verify chunks against the signed list (see [`crate::chunk`]). Cut points come
//! from FastCDC 2020 (`fastcdc::v2020`, the algorithm named
//! [`CHUNKER_FASTCDC_V2020`]) with normalization level 1 and the default
//! (unseeded) gear table, so any implementation of that algorithm with the same
//! [`ChunkerParams`] finds the same boundaries. Every chunk is named by its
//! blake3 ([`crate::chunk::hash`]).
//!
//! Parameters (bytes; the release signs them):
//! - `min_size`: no cut before this many bytes; default 256 KiB
//!   ([`DEFAULT_CHUNK_MIN`](crate::limits::DEFAULT_CHUNK_MIN)).
//! - `avg_size`: the target average; FastCDC uses `round(log2(avg_size))` mask
//!   bits, a stricter mask below the average and a looser one above it
//!   (normalization level 1); default 1 MiB ([`DEFAULT_CHUNK_AVG`](crate::limits::DEFAULT_CHUNK_AVG)).
//! - `max_size`: a cut is forced here; default 4 MiB
//!   ([`DEFAULT_CHUNK_MAX`](crate::limits::DEFAULT_CHUNK_MAX)).
//!
//! Guarantees: the chunks concatenate to the input; every chunk except the last
//! is `min_size..=max_size` bytes and the last is `1..=max_size`; empty input
//! has no chunks; there are at most [`MAX_CHUNKS_PER_RELEASE`] chunks, which
//! with `max_size <= MAX_CHUNK_BYTES` also bounds the artifact by
//! [`MAX_ARTIFACT_BYTES`](crate::limits::MAX_ARTIFACT_BYTES).
//!
//! Beyond [`ChunkerParams::validate`] the chunker refuses `min_size` over
//! [`v2020::MINIMUM_MAX`] (1 MiB) and `avg_size` over [`v2020::AVERAGE_MAX`]
//! (4 MiB), where the library would panic. An odd `min_size` is fine even though
//! FastCDC tests cut points two bytes at a time from `min_size / 2 * 2`: with
//! level 1, the default gear table and `avg_size >= 16 KiB` the test at
//! `min_size - 1` can never succeed (a unit test below checks every case).

use crate::chunk::{hash, ChunkEntry, ChunkList};
use crate::limits::MAX_CHUNKS_PER_RELEASE;
use crate::release::{ChunkerParams, ReleaseError, CHUNKER_FASTCDC_V2020};
use fastcdc::v2020::{self, FastCDC, Normalization, StreamCDC};
use std::io::{self, Read};
use thiserror::Error;

/// FastCDC normalization level used by [`CHUNKER_FASTCDC_V2020`]: level 1 keeps
/// most chunks near the average without hurting deduplication.
pub const NORMALIZATION_LEVEL: u32 = 1;

/// [`NORMALIZATION_LEVEL`] as fastcdc names it.
const NORMALIZATION: Normalization = Normalization::Level1;

/// The chunker cannot work with these parameters, or the artifact is too large.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChunkerError {
    /// The parameters break the release rules of [`ChunkerParams::validate`].
    #[error("chunker parameters are invalid: {0}")]
    InvalidParams(#[source] ReleaseError),
    /// Valid for a release, but FastCDC 2020 cannot cut faithfully with them.
    #[error(
        "chunker sizes min {min} avg {avg} max {max} are not supported by {CHUNKER_FASTCDC_V2020}: {reason}"
    )]
    Unsupported {
        /// `min_size`.
        min: u32,
        /// `avg_size`.
        avg: u32,
        /// `max_size`.
        max: u32,
        /// Which rule they break.
        reason: &'static str,
    },
    /// FastCDC returned a chunk over `max_size`; a bug in the library, refused
    /// rather than signed.
    #[error("fastcdc cut a chunk of {length} bytes, over max_size {max}")]
    ChunkOverMax {
        /// The chunk's length.
        length: usize,
        /// `max_size`.
        max: u32,
    },
    /// The artifact would need more chunks than a release may have.
    #[error("the artifact needs more than {limit} chunks; sign it with larger chunker sizes")]
    TooManyChunks {
        /// The limit, [`MAX_CHUNKS_PER_RELEASE`].
        limit: u32,
    },
}

/// Chunking a stream failed: bad parameters, a read error, or the chunk handler refused.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ChunkReadError<E> {
    /// The parameters or the chunk count (see [`ChunkerError`]).
    #[error(transparent)]
    Chunker(#[from] ChunkerError),
    /// The reader failed.
    #[error("reading the artifact failed after {offset} bytes: {source}")]
    Read {
        /// Bytes of the artifact already chunked when the read failed.
        offset: u64,
        /// The reader's error.
        #[source]
        source: io::Error,
    },
    /// The `on_chunk` handler returned an error; chunking stopped there.
    #[error("the chunk handler refused chunk {index} at byte {offset}: {source}")]
    Handler {
        /// Index of the chunk in the list.
        index: u32,
        /// Where the chunk starts in the artifact.
        offset: u64,
        /// The handler's error.
        #[source]
        source: E,
    },
}

/// FastCDC sizes that passed every check, as the library wants them.
#[derive(Clone, Copy, Debug)]
struct Sizes {
    min: u32,
    avg: u32,
    max: u32,
}

/// Checks `params` against the release rules and what FastCDC 2020 supports.
/// [`chunk_bytes`] and [`chunk_reader`] call this first; a publisher may call it
/// before reading anything.
pub fn check_params(params: &ChunkerParams) -> Result<(), ChunkerError> {
    sizes(params).map(|_| ())
}

fn sizes(params: &ChunkerParams) -> Result<Sizes, ChunkerError> {
    params.validate().map_err(ChunkerError::InvalidParams)?;
    let (min, avg, max) = (params.min_size, params.avg_size, params.max_size);
    let unsupported = |reason| {
        Err(ChunkerError::Unsupported {
            min,
            avg,
            max,
            reason,
        })
    };
    // validate() already keeps every size at or above MIN_CHUNK_MIN (16 KiB) and max at
    // or below MAX_CHUNK_BYTES (8 MiB), inside fastcdc's other bounds; these two remain.
    if min > v2020::MINIMUM_MAX {
        return unsupported("min_size must be at most 1 MiB");
    }
    if avg > v2020::AVERAGE_MAX {
        return unsupported("avg_size must be at most 4 MiB");
    }
    Ok(Sizes { min, avg, max })
}

/// Cuts `data` into chunks and names each by its blake3.
pub fn chunk_bytes(data: &[u8], params: &ChunkerParams) -> Result<ChunkList, ChunkerError> {
    chunk_bytes_limited(data, sizes(params)?, MAX_CHUNKS_PER_RELEASE)
}

fn chunk_bytes_limited(data: &[u8], s: Sizes, max_chunks: u32) -> Result<ChunkList, ChunkerError> {
    let too_many = ChunkerError::TooManyChunks { limit: max_chunks };
    // Refuse before hashing anything when even max-size chunks could not cover the input.
    if data.len() as u64 > u64::from(max_chunks) * u64::from(s.max) {
        return Err(too_many);
    }
    let mut chunks = Vec::with_capacity(data.len().div_ceil(s.avg as usize));
    for c in FastCDC::with_level(data, s.min, s.avg, s.max, NORMALIZATION) {
        if chunks.len() >= max_chunks as usize {
            return Err(too_many);
        }
        // fastcdc yields consecutive in-bounds ranges of `data` by construction.
        let bytes = &data[c.offset..c.offset + c.length];
        chunks.push(entry(bytes, s.max)?);
    }
    Ok(ChunkList { chunks })
}

/// Cuts what `reader` yields into chunks without holding more than about one
/// `max_size` buffer and one chunk in memory. `on_chunk` sees each chunk's entry
/// and bytes in order (to store or upload it); an error from it stops chunking.
/// `Interrupted` reads are retried; any other read error stops chunking.
pub fn chunk_reader<R: Read, E>(
    reader: R,
    params: &ChunkerParams,
    on_chunk: impl FnMut(&ChunkEntry, &[u8]) -> Result<(), E>,
) -> Result<ChunkList, ChunkReadError<E>> {
    chunk_reader_limited(reader, sizes(params)?, MAX_CHUNKS_PER_RELEASE, on_chunk)
}

fn chunk_reader_limited<R: Read, E>(
    reader: R,
    s: Sizes,
    max_chunks: u32,
    mut on_chunk: impl FnMut(&ChunkEntry, &[u8]) -> Result<(), E>,
) -> Result<ChunkList, ChunkReadError<E>> {
    let stream =
        StreamCDC::with_level(RetryInterrupted(reader), s.min, s.avg, s.max, NORMALIZATION);
    let mut chunks = Vec::new();
    let mut offset = 0u64;
    for item in stream {
        let data = item.map_err(|e| ChunkReadError::Read {
            offset,
            source: e.into(),
        })?;
        let index = u32::try_from(chunks.len()).unwrap_or(u32::MAX);
        if index >= max_chunks {
            return Err(ChunkerError::TooManyChunks { limit: max_chunks }.into());
        }
        let e = entry(&data.data, s.max)?;
        on_chunk(&e, &data.data).map_err(|source| ChunkReadError::Handler {
            index,
            offset,
            source,
        })?;
        offset += u64::from(e.length);
        chunks.push(e);
    }
    Ok(ChunkList { chunks })
}

fn entry(bytes: &[u8], max: u32) -> Result<ChunkEntry, ChunkerError> {
    let length = u32::try_from(bytes.len())
        .ok()
        .filter(|&l| l <= max)
        .ok_or(ChunkerError::ChunkOverMax {
            length: bytes.len(),
            max,
        })?;
    Ok(ChunkEntry {
        length,
        hash: hash(bytes),
    })
}

/// Retries reads interrupted by a signal, which `StreamCDC` would report as failures.
struct RetryInterrupted<R>(R);

impl<R: Read> Read for RetryInterrupted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.0.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => return other,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::{MAX_CHUNK_BYTES, MIN_CHUNK_MIN};

    fn params(min: u32, avg: u32, max: u32) -> ChunkerParams {
        ChunkerParams {
            min_size: min,
            avg_size: avg,
            max_size: max,
            ..ChunkerParams::default()
        }
    }

    fn small() -> ChunkerParams {
        params(16 * 1024, 32 * 1024, 64 * 1024)
    }

    /// Deterministic pseudo-random bytes (xorshift), so cut points vary.
    fn noise(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    fn stream(data: &[u8], p: &ChunkerParams) -> Result<ChunkList, ChunkReadError<io::Error>> {
        chunk_reader(data, p, |_, _| Ok(()))
    }

    mod params_check {
        use super::*;

        #[test]
        fn defaults_are_supported() {
            check_params(&ChunkerParams::default()).unwrap();
            assert_eq!(NORMALIZATION.bits(), NORMALIZATION_LEVEL);
        }

        #[test]
        fn release_rules_come_first() {
            let mut p = small();
            p.algorithm = "rabin".into();
            assert!(matches!(
                check_params(&p),
                Err(ChunkerError::InvalidParams(_))
            ));
            let p = params(MIN_CHUNK_MIN - 2, 32 * 1024, 64 * 1024);
            assert!(matches!(
                check_params(&p),
                Err(ChunkerError::InvalidParams(_))
            ));
            let p = params(64 * 1024, 32 * 1024, 64 * 1024);
            assert!(matches!(
                check_params(&p),
                Err(ChunkerError::InvalidParams(_))
            ));
        }

        #[test]
        fn sizes_fastcdc_would_panic_on_are_refused() {
            let p = params(v2020::MINIMUM_MAX + 2, 2 << 20, MAX_CHUNK_BYTES);
            assert!(matches!(
                check_params(&p),
                Err(ChunkerError::InvalidParams(_))
            ));
            let p = params(1 << 20, v2020::AVERAGE_MAX + 2, MAX_CHUNK_BYTES);
            assert!(matches!(
                check_params(&p),
                Err(ChunkerError::InvalidParams(_))
            ));
            // Both bounds themselves are fine, and chunking with them does not panic.
            let p = params(v2020::MINIMUM_MAX, v2020::AVERAGE_MAX, MAX_CHUNK_BYTES);
            assert_eq!(
                chunk_bytes(&noise(3 << 20, 5), &p).unwrap().total_len(),
                3 << 20
            );
        }

        #[test]
        fn odd_minimum_never_cuts_one_byte_short() {
            // With an odd min_size the first cut point FastCDC tests is min_size - 1, where
            // the gear hash is a single table entry. It is tested with the small mask, or
            // with the large one when the input ends just past min_size. If no table entry
            // passes either mask, no chunk can be shorter than min_size.
            let (_, gear_ls) = v2020::get_gear_with_seed(0);
            let bits_lo = v2020::logarithm2(MIN_CHUNK_MIN);
            let bits_hi = v2020::logarithm2(v2020::AVERAGE_MAX);
            for bits in bits_lo..=bits_hi {
                for mask_bits in [bits + NORMALIZATION_LEVEL, bits - NORMALIZATION_LEVEL] {
                    let mask_ls = v2020::MASKS[mask_bits as usize] << 1;
                    let hit = gear_ls.iter().position(|g| g & mask_ls == 0);
                    assert_eq!(hit, None, "avg 2^{bits}: mask of {mask_bits} bits");
                }
            }
        }

        #[test]
        fn odd_minimum_keeps_chunks_in_bounds() {
            let p = params(16 * 1024 + 1, 32 * 1024, 64 * 1024);
            for seed in 1..6 {
                let list = chunk_bytes(&noise(400 * 1024, seed), &p).unwrap();
                let (last, rest) = list.chunks.split_last().unwrap();
                assert!(rest
                    .iter()
                    .all(|c| (p.min_size..=p.max_size).contains(&c.length)));
                assert!(last.length <= p.max_size);
            }
        }
    }

    mod cutting {
        use super::*;

        #[test]
        fn empty_input_has_no_chunks() {
            assert!(chunk_bytes(&[], &small()).unwrap().chunks.is_empty());
            assert!(stream(&[], &small()).unwrap().chunks.is_empty());
        }

        #[test]
        fn input_below_min_is_one_chunk() {
            let data = noise(1000, 1);
            let list = chunk_bytes(&data, &small()).unwrap();
            assert_eq!(
                list.chunks,
                vec![ChunkEntry {
                    length: 1000,
                    hash: hash(&data)
                }]
            );
        }

        #[test]
        fn uniform_data_is_cut_at_max() {
            // No content boundaries at all: FastCDC falls back to max-size chunks.
            let data = vec![0u8; 200 * 1024];
            let lens: Vec<u32> = chunk_bytes(&data, &small())
                .unwrap()
                .chunks
                .iter()
                .map(|c| c.length)
                .collect();
            assert_eq!(lens, vec![65536, 65536, 65536, 8192]);
        }

        #[test]
        fn hashes_name_the_chunk_bytes() {
            let data = noise(300 * 1024, 9);
            let list = chunk_bytes(&data, &small()).unwrap();
            assert!(list.chunks.len() > 2);
            let mut at = 0usize;
            for c in &list.chunks {
                let end = at + c.length as usize;
                crate::chunk::verify_chunk(c, &data[at..end]).unwrap();
                at = end;
            }
            assert_eq!(at, data.len());
        }
    }

    mod limits {
        use super::*;

        fn sizes_small() -> Sizes {
            sizes(&small()).unwrap()
        }

        #[test]
        fn chunk_count_is_bounded_in_memory() {
            // Uniform bytes are cut at max size: exactly 3 chunks fit, one more byte does not.
            let data = vec![7u8; 64 * 1024 * 3];
            assert_eq!(
                chunk_bytes_limited(&data, sizes_small(), 3)
                    .unwrap()
                    .chunks
                    .len(),
                3
            );
            let data = vec![7u8; 64 * 1024 * 3 + 1];
            assert_eq!(
                chunk_bytes_limited(&data, sizes_small(), 3),
                Err(ChunkerError::TooManyChunks { limit: 3 })
            );
            // Content boundaries give more chunks than the size precheck assumes.
            let data = noise(64 * 1024 * 3, 2);
            let n = chunk_bytes(&data, &small()).unwrap().chunks.len() as u32;
            assert!(n > 3);
            assert_eq!(
                chunk_bytes_limited(&data, sizes_small(), n)
                    .unwrap()
                    .chunks
                    .len() as u32,
                n
            );
            assert_eq!(
                chunk_bytes_limited(&data, sizes_small(), n - 1),
                Err(ChunkerError::TooManyChunks { limit: n - 1 })
            );
        }

        #[test]
        fn chunk_count_is_bounded_when_streaming() {
            let data = noise(64 * 1024 * 3, 2);
            let n = chunk_bytes(&data, &small()).unwrap().chunks.len() as u32;
            let mut seen = 0;
            let r = chunk_reader_limited(&data[..], sizes_small(), n - 1, |_, _| {
                seen += 1;
                Ok::<(), io::Error>(())
            });
            assert!(matches!(
                r,
                Err(ChunkReadError::Chunker(ChunkerError::TooManyChunks { .. }))
            ));
            assert_eq!(
                seen,
                n - 1,
                "the handler must not see chunks past the limit"
            );
            assert_eq!(
                chunk_reader_limited(&data[..], sizes_small(), n, |_, _| Ok::<(), io::Error>(()))
                    .unwrap()
                    .chunks
                    .len() as u32,
                n
            );
        }

        #[test]
        fn the_real_limit_refuses_huge_input_without_reading_it() {
            // alloc_zeroed: the pages are never touched, because the size precheck refuses first.
            let p = params(MIN_CHUNK_MIN, MIN_CHUNK_MIN, MIN_CHUNK_MIN);
            let len = MAX_CHUNKS_PER_RELEASE as usize * MIN_CHUNK_MIN as usize + 1;
            let data = vec![0u8; len];
            assert_eq!(
                chunk_bytes(&data, &p),
                Err(ChunkerError::TooManyChunks {
                    limit: MAX_CHUNKS_PER_RELEASE
                })
            );
        }
    }

    mod streaming {
        use super::*;

        /// Hands out at most `step` bytes per read and fails or interrupts on request.
        struct Trickle<'a> {
            data: &'a [u8],
            step: usize,
            interrupt_every: usize,
            fail_at: Option<usize>,
            calls: usize,
            pos: usize,
        }

        impl Read for Trickle<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                self.calls += 1;
                if self.interrupt_every > 0 && self.calls % self.interrupt_every == 0 {
                    return Err(io::ErrorKind::Interrupted.into());
                }
                if self.fail_at.is_some_and(|at| self.pos >= at) {
                    return Err(io::Error::other("disk on fire"));
                }
                let n = buf.len().min(self.step).min(self.data.len() - self.pos);
                buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
                self.pos += n;
                Ok(n)
            }
        }

        fn trickle(data: &[u8]) -> Trickle<'_> {
            Trickle {
                data,
                step: 7777,
                interrupt_every: 0,
                fail_at: None,
                calls: 0,
                pos: 0,
            }
        }

        #[test]
        fn short_and_interrupted_reads_give_the_same_chunks() {
            let data = noise(500 * 1024, 3);
            let whole = chunk_bytes(&data, &small()).unwrap();
            let mut t = trickle(&data);
            t.interrupt_every = 3;
            let mut bytes = Vec::new();
            let list = chunk_reader(t, &small(), |e, b| {
                assert_eq!(e.length as usize, b.len());
                bytes.extend_from_slice(b);
                Ok::<(), io::Error>(())
            })
            .unwrap();
            assert_eq!(list, whole);
            assert_eq!(bytes, data);
        }

        #[test]
        fn read_errors_name_the_offset() {
            let data = noise(500 * 1024, 3);
            let mut t = trickle(&data);
            t.fail_at = Some(200 * 1024);
            let err = chunk_reader(t, &small(), |_, _| Ok::<(), io::Error>(())).unwrap_err();
            let ChunkReadError::Read { offset, .. } = &err else {
                panic!("expected a read error, got {err}");
            };
            assert!(*offset < 200 * 1024, "{offset}");
            assert!(err.to_string().contains("disk on fire"), "{err}");
        }

        #[test]
        fn handler_errors_stop_chunking() {
            let data = noise(500 * 1024, 3);
            let mut calls = 0;
            let err = chunk_reader(&data[..], &small(), |_, _| {
                calls += 1;
                if calls == 2 {
                    Err("store full")
                } else {
                    Ok(())
                }
            })
            .unwrap_err();
            let first = chunk_bytes(&data, &small()).unwrap().chunks[0].length;
            assert!(matches!(
                err,
                ChunkReadError::Handler { index: 1, offset, source: "store full" } if offset == u64::from(first)
            ));
            assert_eq!(calls, 2);
        }
    }
}
