//! Every bound the protocol enforces, in one place.
//!
//! Anything a peer sends is hostile until verified, so every size, count,
//! queue and timeout has a limit here, each with the reason for its value,
//! grouped by the part of the protocol it bounds. `docs/protocol.md`
//! (section 13) repeats these numbers normatively; change both together.
//! Modules that used to define some of these re-export them from here, so
//! paths such as `fetch::BENCH_MS` or `wire::MAX_BUNDLE_ROOTS` keep working.
//!
//! Timing constants private to the node engine (how often it flushes
//! availability or wakes up) live in `node` and are listed in the spec as
//! behaviour, not as limits.

// ---------------------------------------------------------------------------
// Signed documents and trust metadata (sections 5 to 7 of the spec)

/// Largest root metadata document accepted, in bytes. A root with the most
/// keys ([`MAX_KEYS_PER_ROOT`], about 200 bytes each), every role listing all
/// of them, and as many signatures is about 50 KiB; 1 MiB is tough's default
/// and leaves room for unknown fields.
pub const MAX_ROOT_BYTES: usize = 1024 * 1024;
/// Largest timestamp metadata document accepted, in bytes. A timestamp has
/// one pin and is under 1 KiB plus signatures; 1 MiB matches tough's default.
pub const MAX_TIMESTAMP_BYTES: usize = 1024 * 1024;
/// Largest snapshot metadata document accepted, in bytes. Without delegations
/// a snapshot pins one document, so it is as small as a timestamp.
pub const MAX_SNAPSHOT_BYTES: usize = 1024 * 1024;
/// Largest targets metadata document accepted, in bytes: tough's default.
/// In practice a whole bundle must also fit one gossip message
/// ([`MAX_GOSSIP_BYTES`]), which is the tighter bound.
pub const MAX_TARGETS_BYTES: usize = 10 * 1024 * 1024;
/// Most root versions walked in one update; stops an endless chain of
/// rotations. A vendor rotating its root keys monthly needs 85 years for 1024.
pub const MAX_ROOT_ROTATIONS: u64 = 1024;
/// Most keys a root may list. A threshold larger than a handful is never
/// needed; 64 covers four roles plus an operator role with generous spares.
pub const MAX_KEYS_PER_ROOT: usize = 64;
/// Most signatures examined on one document; bounds verification work per
/// message. No role can use more signatures than the root has keys, so this
/// equals [`MAX_KEYS_PER_ROOT`].
pub const MAX_SIGNATURES: usize = 64;
/// Most targets (releases) one targets document may carry: at about 1 to 4 KB
/// an entry, 256 keep a metadata bundle inside one gossip message.
pub const MAX_TARGETS: usize = 256;
/// Longest product, version, wave or target name, in bytes: long enough for
/// any real file or version name, short enough to log and display whole.
pub const MAX_NAME_BYTES: usize = 128;

// ---------------------------------------------------------------------------
// Content: chunking, chunk lists and artifacts (section 9)

/// Smallest `min_size` a release may sign. FastCDC 2020 itself goes down to
/// 64 bytes, but every chunk costs 36 bytes of chunk list, one request and one
/// store entry; at 16 KiB that overhead stays below a quarter of a percent.
pub const MIN_CHUNK_MIN: u32 = 16 * 1024;
/// Largest `min_size` a release may sign: FastCDC 2020 refuses a larger
/// minimum, so no publisher could reproduce such a chunk list.
pub const MAX_CHUNK_MIN: u32 = 1024 * 1024;
/// Largest `avg_size` a release may sign: FastCDC 2020 refuses a larger
/// average (its normalisation masks end there).
pub const MAX_CHUNK_AVG: u32 = 4 * 1024 * 1024;
/// Largest chunk anyone may announce or send: a chunk list naming larger
/// chunks is refused. 8 MiB stays under libp2p request-response's 10 MiB
/// message cap with room for framing.
pub const MAX_CHUNK_BYTES: u32 = 8 * 1024 * 1024;
/// Default minimum chunk size of the publisher: a quarter of the average.
pub const DEFAULT_CHUNK_MIN: u32 = 256 * 1024;
/// Default average chunk size of the publisher: about 1 MiB, small enough that
/// a new version shares most chunks with the old one, large enough that a
/// 1 GiB artifact is about a thousand requests.
pub const DEFAULT_CHUNK_AVG: u32 = 1024 * 1024;
/// Default maximum chunk size of the publisher: four times the average.
pub const DEFAULT_CHUNK_MAX: u32 = 4 * 1024 * 1024;
/// Most chunks in one release: keeps the chunk list (36 bytes a chunk,
/// 4.5 MiB) inside one response frame and an availability bitfield at
/// 16 KiB; at a 1 MiB average that is a 128 GiB artifact.
pub const MAX_CHUNKS_PER_RELEASE: u32 = 1 << 17;
/// Largest artifact, in bytes: [`MAX_CHUNKS_PER_RELEASE`] chunks of
/// [`MAX_CHUNK_BYTES`] each (1 TiB).
pub const MAX_ARTIFACT_BYTES: u64 = 1 << 40;

// ---------------------------------------------------------------------------
// Rollout policy (sections 6.4 and 11)

/// Most waves in a rollout policy: a canary, a few widening waves and the
/// rest fit easily; more would only lengthen the rollout.
pub const MAX_WAVES: usize = 16;
/// Longest bake time of one wave, in seconds (365 days): a longer bake is a
/// typo, and the bound keeps `start + sum of bakes` far from overflowing.
pub const MAX_BAKE_SECONDS: u64 = 365 * 24 * 3600;

// ---------------------------------------------------------------------------
// Health: reports, certificates, directives, evidence and the ledger (section 11)

/// Largest health report envelope accepted, in bytes. A report is about
/// 250 bytes plus one 220-byte signature; 4 KiB leaves room for fields a
/// later version adds while bounding what every ledger entry may hold.
pub const MAX_REPORT_BYTES: usize = 4 * 1024;
/// Largest fleet certificate envelope accepted, in bytes. A certificate is
/// about 200 bytes plus about 220 per signature, so this leaves room for a
/// threshold of over a dozen operator keys.
pub const MAX_CERT_BYTES: usize = 4 * 1024;
/// Largest directive envelope accepted, in bytes: a [`MAX_REASON_BYTES`]
/// reason plus the threshold signatures of a large role (about 220 bytes each).
pub const MAX_DIRECTIVE_BYTES: usize = 8 * 1024;
/// Longest directive `reason`, in bytes: a sentence or a ticket link for
/// people, not a report.
pub const MAX_REASON_BYTES: usize = 1024;
/// Most health reports carried as evidence in one halt announcement: enough
/// for [`MAX_MIN_REPORTS`], and 256 honest reports with certificates (about
/// 1 KiB each) fit one gossip message.
pub const MAX_EVIDENCE_REPORTS: usize = 256;
/// Most bytes of reports and certificates one halt evidence message carries:
/// a gossip message minus 4 KiB for framing, the release ID and the wave.
/// The bound matters when nodes pad their reports, which must not make a halt
/// impossible to gossip.
pub const MAX_EVIDENCE_BYTES: usize = MAX_GOSSIP_BYTES - 4 * 1024;
/// Largest `min_reports` a policy may ask for: a halt must be able to carry
/// enough evidence to fail the gate on its own.
pub const MAX_MIN_REPORTS: u32 = MAX_EVIDENCE_REPORTS as u32;
/// Allowed disagreement between a reporter's clock and ours, in milliseconds:
/// NTP keeps honest clocks within seconds; five minutes (Kerberos' default)
/// tolerates a badly set one without letting reports be dated far ahead.
pub const MAX_CLOCK_SKEW_MS: u64 = 5 * 60 * 1000;
/// How far this node's clock may be from the fleet's, as estimated from peers'
/// reports ([`crate::clock`]), before the node calls it far off, stops
/// installing and stops halting on silence, in milliseconds. Equal to
/// [`MAX_CLOCK_SKEW_MS`]: past it, health exchange itself breaks (a node that
/// far ahead has its reports refused as from the future; one that far behind
/// refuses everyone's), so the node could neither be counted nor count others.
pub const CLOCK_FAR_OFF_MS: u64 = MAX_CLOCK_SKEW_MS;
/// Smallest estimated clock offset, in milliseconds, that moves a schedule or
/// expiry decision: report times are signed in whole seconds (up to 1 s low)
/// and arrive after a gossip delay (most within 300 ms), so a synchronised
/// clock is estimated up to about 1.5 s ahead. Acting on that noise would only
/// delay installs; 2 s keeps a synchronised fleet's timeline exactly as signed.
pub const CLOCK_SLACK_MS: u64 = 2_000;
/// Fewest distinct reporters with a recent sample before a node estimates its
/// clock offset: the median of five is moved by no two of them, so neither a
/// single badly set peer nor a pair of liars decides; few enough that the
/// canary wave of a modest fleet provides them.
pub const MIN_CLOCK_REPORTERS: usize = 5;
/// Most reporters whose latest sample the clock estimate keeps: 64 give a
/// median far steadier than the threshold needs, in about 4 KiB.
pub const MAX_CLOCK_REPORTERS: usize = 64;
/// How old a clock sample may be, by our clock, and still count, in
/// milliseconds: one hour. Heartbeats refresh samples every minute or so while
/// any wave bakes; a quartz clock drifts well under a second an hour, so an
/// hour-old sample is still accurate, while a clock stepped since (an NTP
/// correction, a reset real-time clock) outvotes its old samples within the hour.
pub const CLOCK_SAMPLE_WINDOW_MS: u64 = 3600 * 1000;
/// Most distinct nodes whose health a node tracks per release: a fleet of a
/// million endpoints. Each entry keeps the node's latest signed report and
/// certificate (about 1 KiB when honest, at most [`MAX_REPORT_BYTES`] +
/// [`MAX_CERT_BYTES`]), so a full ledger is about 1 GiB: this stops unbounded
/// growth rather than setting a memory budget. Past it new nodes are refused
/// while known ones keep updating.
pub const MAX_LEDGER_NODES: usize = 1 << 20;

// ---------------------------------------------------------------------------
// Wire frames (section 12)

/// Largest wire frame of any kind: one [`MAX_CHUNK_BYTES`] chunk plus 64 KiB,
/// far more than the few bytes of framing a chunk response needs.
pub const MAX_FRAME_BYTES: usize = MAX_CHUNK_BYTES as usize + 64 * 1024;
/// Largest gossip message data and metadata response (metadata bundles
/// dominate); the agent sets gossipsub's max transmit size to this plus room
/// for gossipsub's own envelope. Vendors keep targets
/// metadata under it by pruning old releases.
pub const MAX_GOSSIP_BYTES: usize = 1024 * 1024;
/// Largest request frame. `Have` requests dominate: a [`MAX_BITFIELD_BYTES`]
/// (16 KiB) bitfield and a release ID; 128 KiB leaves ample room.
pub const MAX_REQUEST_BYTES: usize = 128 * 1024;
/// Most root documents in one metadata bundle, and most roots a node keeps:
/// a node further behind than this must be given a newer root out of band.
/// 16 rotations are years of key changes for a careful vendor.
pub const MAX_BUNDLE_ROOTS: usize = 16;
/// Largest availability bitfield, in bytes: one bit per chunk of the largest
/// release ([`MAX_CHUNKS_PER_RELEASE`] bits, 16 KiB).
pub const MAX_BITFIELD_BYTES: usize = (MAX_CHUNKS_PER_RELEASE as usize).div_ceil(8);

// ---------------------------------------------------------------------------
// Fetching: the download scheduler and peer standing (section 15.4)

/// Most peers whose availability one release's download tracks; further
/// peers are ignored until one leaves. 256 sources are far more than a
/// download can keep busy at [`MAX_REQUESTS_TOTAL`] requests.
pub const MAX_TRACKED_PEERS: usize = 256;
/// Most chunk requests in flight to one peer: four 1 MiB chunks keep a
/// fast link busy without letting one slow peer hold much of the download.
pub const MAX_REQUESTS_PER_PEER: usize = 4;
/// Most chunk requests in flight per release download (each release's
/// download has its own budget): 64 MiB in flight at the default chunk
/// size fills a fast link while bounding memory for answers.
pub const MAX_REQUESTS_TOTAL: usize = 64;
/// Most outstanding requests for one chunk: the first one plus one endgame
/// duplicate. A third copy would mostly waste bandwidth on a chunk that two
/// peers are already sending.
pub const MAX_COPIES: u8 = 2;
/// How long a chunk request must have been outstanding before the endgame may
/// ask a second peer for the same chunk, in milliseconds: longer than a
/// request may wait at a busy server ([`MAX_WAIT_MS`]), so a copy goes out
/// only for a transfer that is really slow, not for one waiting its turn.
pub const ENDGAME_AFTER_MS: u64 = 2 * MAX_WAIT_MS;
/// How long a request may take before it is given up and retried elsewhere,
/// in milliseconds: an 8 MiB chunk at a slow 2 Mbit/s still arrives in time.
pub const REQUEST_TIMEOUT_MS: u64 = 30_000;

/// Longest a node waits, once a gate fails only because of silent nodes, for a peer's
/// reports of that wave (health sync) before it halts: a node's final `baked` report is sent
/// once, and one missed copy must not halt a fleet. Short, because a real crash should halt
/// fast: it adds at most this to the time from the silence timeout to the halt.
pub const SILENCE_CONFIRM_MS: u64 = 5_000;
/// Most of a node's configured download rate, in milliseconds of transfer,
/// that its requests in flight may add up to (per release download): half a
/// [`REQUEST_TIMEOUT_MS`], so a rate-limited node receives every answer
/// well before it gives up on it and never strikes an honest peer for its own
/// limit.
pub const DOWNLOAD_WINDOW_MS: u64 = REQUEST_TIMEOUT_MS / 2;
/// Most of a node's configured upload rate, in milliseconds of transfer, that
/// the chunks it has agreed to send may add up to; further chunk requests are
/// answered `Busy`. Far below [`REQUEST_TIMEOUT_MS`], so a rate-limited
/// server answers everything it accepts before the asker's deadline, and
/// short, so what it sends reaches the swarm (and is shared) quickly instead
/// of queueing while others ask it for the same chunks: on loopback, 12
/// agents fetching 64 MiB from a 2 MiB/s seeder took 3.4 times the P2P lower
/// bound with a 10 s backlog and 2.1 times with 2 s; in the simulator (which
/// reproduces that loopback figure), 500 ms with a 200 ms availability flush
/// and a 1 s resend hold brought 200 nodes fetching 8 MiB from 6.3 to 2.7
/// times the bound and 50 nodes behind a slow seeder from 2.0 to 1.27
/// (docs/benchmarks.md).
pub const UPLOAD_BACKLOG_MS: u64 = 500;
/// How long an upload-limited node holds a chunk back from other peers after
/// sending it once, in milliseconds (their requests wait behind requests for
/// other chunks, and go only when its upload would otherwise idle): long
/// enough for the first recipient to store and announce it (availability is
/// announced within 200 ms), so that others fetch it from there and the
/// scarce upload goes to chunks nobody has yet; short, because while it holds,
/// a node with the chunk cannot help spread it (5 s held 200 simulated nodes
/// at 5.7 times the lower bound, 1 s at 2.7).
pub const RESEND_HOLD_MS: u64 = 1_000;
/// Most chunks an upload-limited node remembers having sent (for
/// [`RESEND_HOLD_MS`]); the oldest is forgotten first.
pub const MAX_RECENT_SENDS: usize = 1024;
/// How long a peer that answered `Busy` is not asked again, in milliseconds:
/// about the time a rate-limited server needs to work off part of its backlog.
pub const BUSY_BACKOFF_MS: u64 = 1_000;
/// Unforgiven timeouts after which a peer is benched (each chunk it delivers
/// forgives one). Two strikes already cut a peer to one slot; the third shows
/// it is not merely slow.
pub const STRIKES_TO_BENCH: u8 = 3;
/// How long a benched peer is skipped, in milliseconds: two request timeouts,
/// long enough for other peers to take over its work, short enough that a
/// peer that was briefly overloaded is used again within a minute.
pub const BENCH_MS: u64 = 2 * REQUEST_TIMEOUT_MS;
/// Most bans kept. An ed25519 identity costs an attacker nothing, so no ban
/// list can stop a Sybil; bans exist to stop the peers we actually talk to
/// from wasting our bandwidth again. 4096 is sixteen times
/// [`MAX_TRACKED_PEERS`], so a ban outlives many rounds of peer churn, while
/// the book (with [`MAX_BAN_REASON_BYTES`]) stays under 3 MiB. Forgetting the
/// oldest ban when full loses nothing an attacker could not get anyway by
/// minting a new key.
pub const MAX_BANS: usize = 4096;
/// How long the engine bans a peer, in milliseconds: an hour. Long enough
/// that a liar or forger costs its victim one bad message an hour, short
/// enough that a peer banned for a fault it has since fixed (a disk that
/// corrupted a chunk, metadata far behind the fleet's) is heard again without
/// anyone restarting anything. A peer that misbehaves again is banned again.
pub const BAN_MS: u64 = 3_600_000;
/// Longest ban reason kept, in bytes; longer ones are cut at a character
/// boundary. Reasons are our own sentences, but they quote error messages
/// that may hold peer data; 512 bytes fits a sentence with a few 64-digit
/// hashes.
pub const MAX_BAN_REASON_BYTES: usize = 512;

// ---------------------------------------------------------------------------
// Site-aware fetching (section 15.7)

/// Default number of WAN fetchers per site and release: two, so one slow or
/// absent fetcher does not stall its site while each chunk still crosses the
/// WAN about once (the two split the chunks between them).
pub const DEFAULT_WAN_FETCHERS: u32 = 2;
/// Most LAN peers a node takes part in the WAN-fetcher election with; further
/// ones given by the driver are ignored. A site larger than this still elects
/// few fetchers: each node only ranks itself among the peers it keeps.
pub const MAX_SITE_PEERS: usize = 4096;
/// How long a node waits without LAN progress on a release (no chunk from a
/// LAN peer, no LAN peer announcing a new chunk) before it widens the election
/// (doubles the number of fetchers it counts itself among), in milliseconds.
/// One request timeout: a working fetcher, with at most [`MAX_WAN_IN_FLIGHT`]
/// requests out, lands a chunk in that time, and each stall costs the whole
/// site this long (an elected fetcher without a WAN peer is found out only
/// by the silence).
pub const WAN_STALL_MS: u64 = REQUEST_TIMEOUT_MS;
/// Most chunk requests one release's download keeps in flight to WAN peers
/// under site-aware fetching. A site's WAN link is far narrower than a node's
/// access link, which sets the byte window: with every missing chunk in flight
/// at once over a slow link, none arrives before the request timeout, the
/// site sees no progress and widens the election. Four keep a link busy
/// (two fetchers make eight) while the first chunks arrive within seconds.
pub const MAX_WAN_IN_FLIGHT: usize = 4;
/// Most times a node widens the election for one release: after this many
/// stalls every node is a fetcher (`2 << 12` exceeds [`MAX_SITE_PEERS`]).
pub const MAX_WAN_WIDENINGS: u8 = 12;

// ---------------------------------------------------------------------------
// Serving and the node engine (section 15)

/// Most chunk reads a node serves to one peer at once; further requests are
/// answered `Busy`. Matches [`MAX_REQUESTS_PER_PEER`], so an honest peer is
/// never refused and a greedy one cannot monopolise the store.
pub const MAX_SERVING_PER_PEER: usize = 4;

/// Most chunk requests a rate-limited server keeps waiting for upload room
/// (see [`crate::fetch::waiting`]); past it, the asker holding the most chunks
/// is answered `Busy`.
pub const MAX_WAITING_REQUESTS: usize = 16;

/// Longest a chunk request waits at a server for upload room before it is
/// answered `Busy`, in milliseconds: long enough to cover a few chunk sends,
/// short next to [`REQUEST_TIMEOUT_MS`], so the asker soon tries elsewhere.
pub const MAX_WAIT_MS: u64 = 2_000;
/// Most releases a node follows at once; releases named after that are not
/// followed. Every followed release costs a ledger and a download, and 64 is
/// far more than the releases a vendor keeps live ([`MAX_TARGETS`] bounds
/// one targets document, but most entries are old versions).
pub const MAX_RELEASES: usize = 64;

// Compile-time checks that the bounds fit together as their comments claim.
const _: () = assert!(MAX_SIGNATURES <= MAX_KEYS_PER_ROOT);
const _: () =
    assert!(DOWNLOAD_WINDOW_MS < REQUEST_TIMEOUT_MS && UPLOAD_BACKLOG_MS < REQUEST_TIMEOUT_MS);
const _: () = assert!(BUSY_BACKOFF_MS < BENCH_MS);
const _: () = assert!((DEFAULT_WAN_FETCHERS as usize) << MAX_WAN_WIDENINGS >= MAX_SITE_PEERS);
const _: () = assert!(MIN_CHUNK_MIN <= DEFAULT_CHUNK_MIN && DEFAULT_CHUNK_MIN <= MAX_CHUNK_MIN);
const _: () = assert!(DEFAULT_CHUNK_AVG <= MAX_CHUNK_AVG && MAX_CHUNK_AVG <= MAX_CHUNK_BYTES);
const _: () = assert!(DEFAULT_CHUNK_MAX <= MAX_CHUNK_BYTES);
const _: () = assert!(MAX_ARTIFACT_BYTES == MAX_CHUNKS_PER_RELEASE as u64 * MAX_CHUNK_BYTES as u64);
const _: () = assert!(MAX_BITFIELD_BYTES < MAX_REQUEST_BYTES);
const _: () = assert!(MAX_GOSSIP_BYTES < MAX_FRAME_BYTES);
const _: () = assert!(MAX_MIN_REPORTS as usize <= MAX_EVIDENCE_REPORTS);
const _: () = assert!(MIN_CLOCK_REPORTERS <= MAX_CLOCK_REPORTERS && MIN_CLOCK_REPORTERS >= 3);
const _: () = assert!(MAX_SERVING_PER_PEER >= MAX_REQUESTS_PER_PEER);
const _: () = assert!(MAX_WAIT_MS < REQUEST_TIMEOUT_MS);
const _: () = assert!(BENCH_MS >= REQUEST_TIMEOUT_MS);
const _: () = assert!(MAX_EVIDENCE_BYTES == 1_044_480);
const _: () = assert!(MAX_BITFIELD_BYTES == 16 * 1024);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::encoded_list_len;
    use crate::health::{issue_cert, sign_directive, sign_report, Directive, DirectiveAction};
    use crate::health::{HealthReport, HealthStatus};
    use crate::id::{NodeId, ReleaseId};
    use crate::keys::SigningKey;
    use crate::release::{ChunkerParams, HealthPolicy, RolloutPolicy, WaveSpec, PPM};
    use crate::wave::WavePin;
    use crate::wire::{Gossip, HaltEvidence, Request, Response, SignedHealth};
    use crate::Timestamp;
    use serde_bytes::ByteBuf;

    const T: Timestamp = Timestamp::from_secs(1_900_000_000);

    /// `n` distinct signing keys.
    fn keys(n: u8) -> Vec<SigningKey> {
        (1..=n).map(|i| SigningKey::from_seed([i; 32])).collect()
    }

    /// A one-wave policy baking `bake_seconds`, otherwise valid.
    fn policy(bake_seconds: u64) -> RolloutPolicy {
        RolloutPolicy {
            start: T,
            waves: vec![WaveSpec {
                name: "all".into(),
                cumulative_ppm: PPM,
                bake_seconds,
            }],
            health: HealthPolicy {
                max_failure_ppm: 50_000,
                min_reports: MAX_MIN_REPORTS,
                silence_seconds: 600,
                heartbeat_seconds: 60,
                report_ppm: 1_000_000,
            },
        }
    }

    /// Chunker parameters with the given sizes.
    fn chunker(min_size: u32, avg_size: u32, max_size: u32) -> ChunkerParams {
        ChunkerParams {
            min_size,
            avg_size,
            max_size,
            ..ChunkerParams::default()
        }
    }

    #[test]
    fn release_validation_enforces_the_bake_bound() {
        // release.rs spells this bound as a literal; this keeps the two equal.
        assert!(policy(MAX_BAKE_SECONDS).validate().is_ok());
        assert!(policy(MAX_BAKE_SECONDS + 1).validate().is_err());
    }

    #[test]
    fn release_validation_enforces_the_min_reports_bound() {
        let mut p = policy(0);
        p.health.min_reports = MAX_MIN_REPORTS + 1;
        assert!(p.validate().is_err());
    }

    #[test]
    fn release_validation_enforces_the_chunker_bounds() {
        assert!(ChunkerParams::default().validate().is_ok());
        let largest = chunker(MAX_CHUNK_MIN, MAX_CHUNK_AVG, MAX_CHUNK_BYTES);
        assert!(largest.validate().is_ok());
        let smallest = chunker(MIN_CHUNK_MIN, MIN_CHUNK_MIN, MIN_CHUNK_MIN);
        assert!(smallest.validate().is_ok());
        for bad in [
            chunker(MIN_CHUNK_MIN - 1, 64 * 1024, 64 * 1024),
            chunker(MAX_CHUNK_MIN + 1, MAX_CHUNK_AVG, MAX_CHUNK_BYTES),
            chunker(MAX_CHUNK_MIN, MAX_CHUNK_AVG + 1, MAX_CHUNK_BYTES),
            chunker(MAX_CHUNK_MIN, MAX_CHUNK_AVG, MAX_CHUNK_BYTES + 1),
        ] {
            assert!(bad.validate().is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn the_largest_chunk_list_fits_one_response() {
        let len = encoded_list_len(MAX_CHUNKS_PER_RELEASE);
        assert_eq!(len, 4_718_612);
        let frame = Response::ChunkList(ByteBuf::from(vec![0; len as usize])).encode();
        assert!(Response::decode(&frame).is_ok());
    }

    #[test]
    fn the_largest_chunk_fits_one_response() {
        let frame = Response::Chunk(ByteBuf::from(vec![0; MAX_CHUNK_BYTES as usize])).encode();
        assert!(Response::decode(&frame).is_ok());
    }

    #[test]
    fn the_largest_bitfield_fits_a_request() {
        let frame = Request::Have {
            release: ReleaseId([7; 32]),
            bitfield: ByteBuf::from(vec![0xff; MAX_BITFIELD_BYTES]),
        }
        .encode();
        assert!(Request::decode(&frame).is_ok());
    }

    #[test]
    fn evidence_at_its_byte_limit_fits_one_gossip_message() {
        // Reports are counted with 8 bytes of framing each, as evidence.rs does.
        let per_report = MAX_EVIDENCE_BYTES / MAX_EVIDENCE_REPORTS - 8;
        let reports = (0..MAX_EVIDENCE_REPORTS)
            .map(|_| SignedHealth {
                report: ByteBuf::from(vec![b'x'; per_report]),
                cert: None,
            })
            .collect();
        let frame = Gossip::Halt(HaltEvidence {
            release: ReleaseId([7; 32]),
            wave: u32::MAX,
            reports,
        })
        .encode();
        assert!(frame.len() <= MAX_GOSSIP_BYTES, "{} bytes", frame.len());
        assert!(Gossip::decode(&frame).is_ok());
    }

    #[test]
    fn a_directive_with_the_longest_reason_and_16_signatures_fits() {
        let d = Directive {
            action: DirectiveAction::Halt,
            release: ReleaseId([7; 32]),
            seq: u64::MAX,
            expires: T,
            reason: "x".repeat(MAX_REASON_BYTES),
        };
        let signers = keys(16);
        let refs: Vec<&SigningKey> = signers.iter().collect();
        let len = sign_directive(&refs, &d).len();
        assert!(len <= MAX_DIRECTIVE_BYTES, "{len} bytes");
    }

    #[test]
    fn a_certificate_with_13_signatures_fits() {
        let signers = keys(13);
        let refs: Vec<&SigningKey> = signers.iter().collect();
        let len = issue_cert(&refs, NodeId([7; 32]), T, WavePin::Canary).len();
        assert!(len <= MAX_CERT_BYTES, "{len} bytes");
    }

    #[test]
    fn a_report_uses_a_fraction_of_its_limit() {
        let key = SigningKey::from_seed([1; 32]);
        let report = HealthReport::new(
            key.node_id(),
            ReleaseId([7; 32]),
            u32::MAX,
            HealthStatus::InstallFailed,
            u64::MAX,
            T,
        );
        let len = sign_report(&key, report, None).report.len();
        assert!(len * 4 <= MAX_REPORT_BYTES, "{len} bytes");
    }
}
