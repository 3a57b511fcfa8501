//! Fuzzes `ChunkList::decode`: a chunk list served by a peer, before (or without)
//! the signed hash check.
//!
//! The format has exactly one encoding per list, so an accepted input must
//! re-encode to itself byte for byte, and its chunks must respect the bounds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use waveguard_protocol::chunk::{encoded_list_len, ChunkList};
use waveguard_protocol::limits::{MAX_CHUNKS_PER_RELEASE, MAX_CHUNK_BYTES};

fuzz_target!(|data: &[u8]| {
    let Ok(list) = ChunkList::decode(data) else {
        return;
    };
    let n = u32::try_from(list.chunks.len()).expect("count fits the u32 header field");
    assert!(n <= MAX_CHUNKS_PER_RELEASE);
    assert_eq!(encoded_list_len(n), data.len() as u64);
    assert!(list
        .chunks
        .iter()
        .all(|c| (1..=MAX_CHUNK_BYTES).contains(&c.length)));
    assert_eq!(
        list.encode(),
        data,
        "an accepted chunk list must be canonical"
    );
});
