//! Property tests for content-defined chunking, the chunk list codec, chunk
//! verification, and binding a chunk list to its signed release.

use proptest::prelude::*;
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use std::collections::HashSet;
use std::io::{self, Read};
use waveguard_protocol::chunk::{
    encoded_list_len, hash, verify_chunk, ChunkEntry, ChunkError, ChunkList, ChunkListError,
};
use waveguard_protocol::chunker::{chunk_bytes, chunk_reader};
use waveguard_protocol::limits::{MAX_CHUNK_BYTES, MIN_CHUNK_MIN};
use waveguard_protocol::release::{ChunkerParams, Release, TargetFile};

// ---------------------------------------------------------------------------
// Builders

/// `len` bytes of seeded noise.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    ChaCha8Rng::seed_from_u64(seed).fill_bytes(&mut out);
    out
}

/// Low-entropy content: runs of one byte with a sprinkle of noise, so FastCDC
/// also hits its forced cut at `max_size`.
fn runs(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        let run = (rng.next_u32() % 200_000) as usize + 1;
        let byte = rng.next_u32() as u8;
        out.extend(std::iter::repeat_n(byte, run.min(len - out.len())));
    }
    out
}

fn params(min: u32, avg: u32, max: u32) -> ChunkerParams {
    ChunkerParams {
        min_size: min,
        avg_size: avg,
        max_size: max,
        ..ChunkerParams::default()
    }
}

/// Small chunker sizes so that a few hundred KiB give many chunks.
fn arb_params() -> impl Strategy<Value = ChunkerParams> {
    (MIN_CHUNK_MIN..=48 * 1024)
        .prop_flat_map(|min| (Just(min), min..=96 * 1024))
        .prop_flat_map(|(min, avg)| (Just(min), Just(avg), avg..=192 * 1024))
        .prop_map(|(min, avg, max)| params(min, avg, max))
}

/// Artifact contents: noise or runs, up to 800 KiB, plus the edge sizes.
fn arb_data() -> impl Strategy<Value = Vec<u8>> {
    let len = prop_oneof![
        3 => 0usize..800 * 1024,
        1 => Just(0usize),
        1 => 1usize..=MIN_CHUNK_MIN as usize,
    ];
    (any::<u64>(), len, any::<bool>()).prop_map(|(seed, len, noisy)| {
        if noisy {
            noise(seed, len)
        } else {
            runs(seed, len)
        }
    })
}

fn arb_entry() -> impl Strategy<Value = ChunkEntry> {
    (1..=MAX_CHUNK_BYTES, any::<[u8; 32]>()).prop_map(|(length, hash)| ChunkEntry { length, hash })
}

fn arb_list() -> impl Strategy<Value = ChunkList> {
    prop::collection::vec(arb_entry(), 0..40).prop_map(|chunks| ChunkList { chunks })
}

/// A reader that returns between 1 and `max_step` bytes per call, following a seed.
struct ShortReads<'a> {
    data: &'a [u8],
    rng: ChaCha8Rng,
    max_step: usize,
}

impl Read for ShortReads<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let step = (self.rng.next_u32() as usize % self.max_step) + 1;
        let n = step.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

/// Builds a signed-release view of an artifact the way a vendor would publish it.
struct ReleaseBuilder {
    list: ChunkList,
    chunker: ChunkerParams,
    artifact_len: u64,
    list_bytes: Vec<u8>,
}

impl ReleaseBuilder {
    fn for_artifact(data: &[u8], chunker: ChunkerParams) -> Self {
        let list = chunk_bytes(data, &chunker).expect("test params are valid");
        let list_bytes = list.encode();
        ReleaseBuilder {
            artifact_len: data.len() as u64,
            list,
            chunker,
            list_bytes,
        }
    }

    /// Signs these chunk list bytes instead of the real encoding.
    fn list_bytes(mut self, bytes: Vec<u8>) -> Self {
        self.list_bytes = bytes;
        self
    }

    fn build(&self) -> Release {
        let count = self.list_bytes.len().saturating_sub(20) as u64 / 36;
        let waveguard = serde_json::json!({
            "product": "acme-sensor",
            "version": "7.11.0",
            "chunk_list": {
                "length": self.list_bytes.len(),
                "blake3": hex::encode(hash(&self.list_bytes)),
                "chunks": count,
            },
            "chunker": self.chunker,
            "rollout": {
                "start": "2030-01-01T00:00:00Z",
                "waves": [{"name": "all", "cumulative_ppm": 1_000_000, "bake_seconds": 0}],
                "health": {
                    "max_failure_ppm": 50_000,
                    "min_reports": 1,
                    "silence_seconds": 600,
                    "heartbeat_seconds": 60,
                },
            },
        });
        let target = TargetFile {
            length: self.artifact_len,
            hashes: [("blake3".to_string(), hex::encode([0x11; 32]))].into(),
            custom: Some(serde_json::json!({ "waveguard": waveguard })),
        };
        Release::from_target("acme-sensor-7.11.0.bin", &target).expect("test release is valid")
    }
}

/// Asserts the chunker's guarantees for one input and returns the list.
fn check_cut(data: &[u8], p: &ChunkerParams) -> Result<ChunkList, TestCaseError> {
    let list = chunk_bytes(data, p).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let mut at = 0usize;
    for (i, c) in list.chunks.iter().enumerate() {
        let last = i + 1 == list.chunks.len();
        let lo = if last { 1 } else { p.min_size };
        prop_assert!(
            (lo..=p.max_size).contains(&c.length),
            "chunk {i} of {} has length {} outside {lo}..={}",
            list.chunks.len(),
            c.length,
            p.max_size
        );
        let end = at + c.length as usize;
        prop_assert_eq!(c.hash, hash(&data[at..end]), "chunk {} hash", i);
        at = end;
    }
    prop_assert_eq!(at, data.len(), "chunks must cover the input exactly");
    prop_assert_eq!(list.total_len(), data.len() as u64);
    Ok(list)
}

// ---------------------------------------------------------------------------
// Cutting

mod cutting {
    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn chunks_reassemble_and_respect_sizes(data in arb_data(), p in arb_params()) {
            check_cut(&data, &p)?;
        }

        #[test]
        fn streaming_agrees_with_in_memory(
            data in arb_data(),
            p in arb_params(),
            read_seed in any::<u64>(),
            max_step in 1usize..100_000,
        ) {
            let whole = check_cut(&data, &p)?;
            let reader = ShortReads { data: &data, rng: ChaCha8Rng::seed_from_u64(read_seed), max_step };
            let mut seen = Vec::new();
            let mut reassembled = Vec::new();
            let streamed = chunk_reader(reader, &p, |entry, bytes| {
                seen.push(*entry);
                reassembled.extend_from_slice(bytes);
                Ok::<(), io::Error>(())
            })
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(&streamed, &whole);
            prop_assert_eq!(&seen, &whole.chunks, "the handler sees every entry in order");
            prop_assert!(reassembled == data, "the handler sees every byte in order");
        }
    }

    #[test]
    fn default_params_cut_a_large_artifact_within_bounds() {
        let p = ChunkerParams::default();
        let data = noise(7, 12 << 20);
        let list = check_cut(&data, &p).unwrap();
        assert!(list.chunks.len() >= 4, "{} chunks", list.chunks.len());
        assert_eq!(
            chunk_reader(&data[..], &p, |_, _| Ok::<(), io::Error>(())).unwrap(),
            list
        );
    }

    /// Changing 100 bytes in the middle of 16 MiB only changes the chunks around the edit.
    #[test]
    fn a_small_edit_keeps_most_chunks() {
        let p = params(16 * 1024, 64 * 1024, 256 * 1024);
        for seed in [1u64, 2] {
            let old = noise(seed, 16 << 20);
            let mut new = old.clone();
            let mid = new.len() / 2;
            for b in &mut new[mid..mid + 100] {
                *b = !*b;
            }
            let old_list = chunk_bytes(&old, &p).unwrap();
            let new_list = chunk_bytes(&new, &p).unwrap();
            assert_ne!(old_list, new_list);
            let old_hashes: HashSet<_> = old_list.chunks.iter().map(|c| c.hash).collect();
            let shared = new_list
                .chunks
                .iter()
                .filter(|c| old_hashes.contains(&c.hash))
                .count();
            let total = new_list.chunks.len();
            assert!(total >= 128, "expected many chunks, got {total}");
            assert!(
                shared * 100 >= total * 80,
                "only {shared} of {total} chunks shared"
            );
            // Content-defined boundaries resynchronise right after the edit.
            assert!(total - shared <= 3, "{} chunks changed", total - shared);
        }
    }

    #[test]
    fn an_insertion_keeps_most_chunks() {
        // Unlike fixed-size blocks, CDC survives a shift of everything after the edit.
        let p = params(16 * 1024, 64 * 1024, 256 * 1024);
        let old = noise(3, 4 << 20);
        let mut new = old.clone();
        new.splice(1 << 20..1 << 20, *b"inserted");
        let old_hashes: HashSet<_> = chunk_bytes(&old, &p)
            .unwrap()
            .chunks
            .iter()
            .map(|c| c.hash)
            .collect();
        let new_list = chunk_bytes(&new, &p).unwrap();
        let shared = new_list
            .chunks
            .iter()
            .filter(|c| old_hashes.contains(&c.hash))
            .count();
        assert!(
            new_list.chunks.len() - shared <= 3,
            "{shared} of {} shared",
            new_list.chunks.len()
        );
    }
}

// ---------------------------------------------------------------------------
// Chunk list codec

mod list_codec {
    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn encode_decode_round_trip(list in arb_list()) {
            let bytes = list.encode();
            prop_assert_eq!(bytes.len() as u64, encoded_list_len(list.chunks.len() as u32));
            prop_assert_eq!(ChunkList::decode(&bytes), Ok(list));
        }

        #[test]
        fn decode_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
            let _ = ChunkList::decode(&bytes);
        }

        /// Damaged encodings are refused or, when accepted, are exactly what they decode to:
        /// no byte of the encoding is ignored.
        #[test]
        fn decode_accepts_only_canonical_encodings(
            list in arb_list(),
            pos in any::<prop::sample::Index>(),
            xor in 1u8..,
            cut in any::<prop::sample::Index>(),
        ) {
            let good = list.encode();
            let mut flipped = good.clone();
            flipped[pos.index(good.len())] ^= xor;
            if let Ok(decoded) = ChunkList::decode(&flipped) {
                prop_assert_eq!(decoded.encode(), flipped);
            }
            let truncated = &good[..cut.index(good.len())];
            prop_assert!(ChunkList::decode(truncated).is_err());
            let mut padded = good.clone();
            padded.push(0);
            prop_assert!(ChunkList::decode(&padded).is_err());
        }
    }

    #[test]
    fn refuses_counts_over_the_limit_before_allocating() {
        let mut bytes = ChunkList { chunks: vec![] }.encode();
        bytes[8..12].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            ChunkList::decode(&bytes),
            Err(ChunkListError::BadHeader(_))
        ));
    }

    #[test]
    fn refuses_empty_and_oversized_chunks() {
        for length in [0, MAX_CHUNK_BYTES + 1] {
            let mut bytes = ChunkList {
                chunks: vec![ChunkEntry {
                    length: 1,
                    hash: [0; 32],
                }],
            }
            .encode();
            bytes[20..24].copy_from_slice(&length.to_be_bytes());
            bytes[12..20].copy_from_slice(&u64::from(length).to_be_bytes());
            assert!(matches!(
                ChunkList::decode(&bytes),
                Err(ChunkListError::BadChunkLength { index: 0, .. })
            ));
        }
    }
}

// ---------------------------------------------------------------------------
// Chunk verification

mod verification {
    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn verify_chunk_accepts_exactly_the_named_bytes(
            bytes in prop::collection::vec(any::<u8>(), 1..4096),
            pos in any::<prop::sample::Index>(),
            xor in 1u8..,
            cut in any::<prop::sample::Index>(),
        ) {
            let entry = ChunkEntry { length: bytes.len() as u32, hash: hash(&bytes) };
            prop_assert_eq!(verify_chunk(&entry, &bytes), Ok(()));

            let mut flipped = bytes.clone();
            flipped[pos.index(bytes.len())] ^= xor;
            let is_wrong_hash = matches!(verify_chunk(&entry, &flipped), Err(ChunkError::WrongHash { .. }));
            prop_assert!(is_wrong_hash);

            let short = &bytes[..cut.index(bytes.len())];
            let is_wrong_length = matches!(verify_chunk(&entry, short), Err(ChunkError::WrongLength { .. }));
            prop_assert!(is_wrong_length);

            let mut long = bytes.clone();
            long.push(0);
            let is_wrong_length = matches!(verify_chunk(&entry, &long), Err(ChunkError::WrongLength { .. }));
            prop_assert!(is_wrong_length);
        }
    }
}

// ---------------------------------------------------------------------------
// Binding a chunk list to its release

mod release_binding {
    use super::*;

    fn small() -> ChunkerParams {
        params(16 * 1024, 32 * 1024, 64 * 1024)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        #[test]
        fn decode_for_accepts_the_signed_list_only(
            seed in any::<u64>(),
            len in 1usize..400 * 1024,
            pos in any::<prop::sample::Index>(),
            xor in 1u8..,
            cut in any::<prop::sample::Index>(),
        ) {
            let data = noise(seed, len);
            let b = ReleaseBuilder::for_artifact(&data, small());
            let release = b.build();
            let good = b.list.encode();
            prop_assert_eq!(ChunkList::decode_for(&release, &good), Ok(b.list.clone()));

            let mut flipped = good.clone();
            flipped[pos.index(good.len())] ^= xor;
            let is_wrong_hash = matches!(ChunkList::decode_for(&release, &flipped), Err(ChunkListError::WrongHash { .. }));
            prop_assert!(is_wrong_hash);

            let truncated = &good[..cut.index(good.len())];
            let is_wrong_length = matches!(ChunkList::decode_for(&release, truncated), Err(ChunkListError::WrongLength { .. }));
            prop_assert!(is_wrong_length);
        }
    }

    #[test]
    fn refuses_the_list_of_another_artifact() {
        let data = noise(1, 300 * 1024);
        let release = ReleaseBuilder::for_artifact(&data, small()).build();
        let other = chunk_bytes(&noise(2, 300 * 1024), &small())
            .unwrap()
            .encode();
        let err = ChunkList::decode_for(&release, &other).unwrap_err();
        assert!(
            matches!(
                err,
                ChunkListError::WrongHash { .. } | ChunkListError::WrongLength { .. }
            ),
            "{err}"
        );
    }

    #[test]
    fn refuses_a_signed_list_that_does_not_add_up_to_the_artifact() {
        // The vendor signed a list whose chunks sum to one byte less than the artifact.
        let data = noise(4, 300 * 1024);
        let b = ReleaseBuilder::for_artifact(&data, small());
        let short = chunk_bytes(&data[1..], &small()).unwrap().encode();
        let b = b.list_bytes(short.clone());
        let err = ChunkList::decode_for(&b.build(), &short).unwrap_err();
        assert!(
            matches!(err, ChunkListError::LengthMismatch { .. }),
            "{err}"
        );
    }

    #[test]
    fn refuses_a_signed_list_with_chunks_over_the_release_max() {
        // One 64 KiB chunk among small ones, signed with a 32 KiB max: the artifact
        // length still fits in 5 chunks of 32 KiB, so only the chunk check can refuse it.
        let lengths = [16 * 1024, 64 * 1024, 16 * 1024, 16 * 1024, 16 * 1024];
        let list = ChunkList {
            chunks: lengths
                .iter()
                .map(|&length| ChunkEntry {
                    length,
                    hash: [1; 32],
                })
                .collect(),
        };
        let b = ReleaseBuilder {
            artifact_len: list.total_len(),
            list_bytes: list.encode(),
            list,
            chunker: params(16 * 1024, 32 * 1024, 32 * 1024),
        };
        let err = ChunkList::decode_for(&b.build(), &b.list_bytes).unwrap_err();
        assert!(
            matches!(
                err,
                ChunkListError::BadChunkLength {
                    index: 1,
                    length: 65536,
                    max: 32768
                }
            ),
            "{err}"
        );
    }
}
