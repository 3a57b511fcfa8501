//! Every bound the protocol enforces, in one place.
//!
//! Anything a peer sends is hostile until verified, so every size, count and
//! queue has a limit here, each with the reason for its value. `docs/protocol.md`
//! repeats these numbers normatively; change both together.

/// Largest root metadata document accepted, in bytes (tough's default: roots are small).
pub const MAX_ROOT_BYTES: usize = 1024 * 1024;
/// Largest timestamp metadata document accepted, in bytes.
pub const MAX_TIMESTAMP_BYTES: usize = 1024 * 1024;
/// Largest snapshot metadata document accepted, in bytes.
pub const MAX_SNAPSHOT_BYTES: usize = 1024 * 1024;
/// Largest targets metadata document accepted, in bytes (tough's default).
pub const MAX_TARGETS_BYTES: usize = 10 * 1024 * 1024;
/// Most root versions walked in one update; stops an endless chain of rotations.
pub const MAX_ROOT_ROTATIONS: u64 = 1024;
/// Most keys a root may list; a threshold larger than a handful is never needed.
pub const MAX_KEYS_PER_ROOT: usize = 64;
/// Most signatures examined on one document; bounds verification work per message.
pub const MAX_SIGNATURES: usize = 64;
/// Most targets (releases) one targets document may carry: at about 1 to 4 KB an entry,
/// 256 keep a metadata bundle inside one gossip message.
pub const MAX_TARGETS: usize = 256;

/// Smallest chunk the chunker may be configured to emit (fastcdc's floor for v2020 is 64 bytes; we want SIMD-sized hashing).
pub const MIN_CHUNK_MIN: u32 = 16 * 1024;
/// Largest chunk anyone may announce or send: a chunk list naming larger chunks is refused.
/// 8 MiB stays under request-response's 10 MiB cap with room for framing.
pub const MAX_CHUNK_BYTES: u32 = 8 * 1024 * 1024;
/// Default chunker parameters: about 1 MiB average so deltas share most chunks.
pub const DEFAULT_CHUNK_MIN: u32 = 256 * 1024;
/// Default average chunk size.
pub const DEFAULT_CHUNK_AVG: u32 = 1024 * 1024;
/// Default maximum chunk size.
pub const DEFAULT_CHUNK_MAX: u32 = 4 * 1024 * 1024;
/// Most chunks in one release: keeps the chunk list (36 B each, 4.7 MiB) inside one response
/// and an availability bitfield at 16 KiB; at 1 MiB average that is a 128 GiB artifact.
pub const MAX_CHUNKS_PER_RELEASE: u32 = 1 << 17;
/// Largest artifact: bounded by the chunk count and the largest chunk.
pub const MAX_ARTIFACT_BYTES: u64 = 1 << 40;

/// Largest wire frame of any kind: one chunk plus framing.
pub const MAX_FRAME_BYTES: usize = MAX_CHUNK_BYTES as usize + 64 * 1024;
/// Most waves in a rollout policy.
pub const MAX_WAVES: usize = 16;
/// Longest product, version, wave or target name, in bytes.
pub const MAX_NAME_BYTES: usize = 128;
/// Most health reports carried as evidence in one halt announcement.
pub const MAX_EVIDENCE_REPORTS: usize = 256;

/// Most peers one node tracks availability for; further peers are ignored until one leaves.
pub const MAX_TRACKED_PEERS: usize = 256;
/// Most chunk requests in flight to one peer.
pub const MAX_REQUESTS_PER_PEER: usize = 4;
/// Most chunk requests in flight in total.
pub const MAX_REQUESTS_TOTAL: usize = 64;
/// Most chunk requests a node serves to one peer at once; further ones are answered `Busy`.
pub const MAX_SERVING_PER_PEER: usize = 4;
/// How long a chunk request may take before it is retried elsewhere, in milliseconds.
pub const REQUEST_TIMEOUT_MS: u64 = 30_000;
/// Most releases a node follows at once; older ones are forgotten first.
pub const MAX_RELEASES: usize = 64;
/// Most distinct nodes whose health a node tracks per release.
pub const MAX_LEDGER_NODES: usize = 1 << 20;
/// Most outputs queued before the node stops producing optional ones (announcements).
pub const MAX_OUTPUT_QUEUE: usize = 65_536;
/// Allowed disagreement between a reporter's clock and ours, in milliseconds.
pub const MAX_CLOCK_SKEW_MS: u64 = 5 * 60 * 1000;
/// Largest gossip message (metadata bundles dominate); the agent sets gossipsub's
/// max transmit size to this. Vendors keep targets metadata under it by pruning old releases.
pub const MAX_GOSSIP_BYTES: usize = 1024 * 1024;
/// Largest request or non-chunk response (availability bitfields dominate: 16 KiB).
pub const MAX_REQUEST_BYTES: usize = 128 * 1024;
/// Largest `min_reports` a policy may ask for: a halt must be able to carry enough evidence.
pub const MAX_MIN_REPORTS: u32 = MAX_EVIDENCE_REPORTS as u32;
