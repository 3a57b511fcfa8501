//! Wire codec properties: every message round-trips, decoders never panic,
//! truncated and oversize frames are refused, and counts over their limits are refused.

use proptest::prelude::*;
use serde_bytes::ByteBuf;
use waveguard_protocol::limits::{
    MAX_CHUNK_BYTES, MAX_EVIDENCE_REPORTS, MAX_FRAME_BYTES, MAX_GOSSIP_BYTES, MAX_REQUEST_BYTES,
};
use waveguard_protocol::wire::{
    Gossip, HaltEvidence, MetadataBundle, Request, Response, SignedHealth, WireError,
    MAX_BITFIELD_BYTES, MAX_BUNDLE_ROOTS, TOPIC_DIRECTIVES, TOPIC_HEALTH, TOPIC_METADATA,
    WIRE_VERSION,
};
use waveguard_protocol::ReleaseId;

// ---------------------------------------------------------------------------
// Strategies and builders

fn bytes(max: usize) -> impl Strategy<Value = ByteBuf> {
    prop::collection::vec(any::<u8>(), 0..=max).prop_map(ByteBuf::from)
}

fn release() -> impl Strategy<Value = ReleaseId> {
    any::<[u8; 32]>().prop_map(ReleaseId)
}

fn bundle() -> impl Strategy<Value = MetadataBundle> {
    (
        prop::collection::vec(bytes(64), 0..=MAX_BUNDLE_ROOTS),
        bytes(256),
        bytes(256),
        bytes(1024),
    )
        .prop_map(|(roots, timestamp, snapshot, targets)| MetadataBundle {
            roots,
            timestamp,
            snapshot,
            targets,
        })
}

fn signed_health() -> impl Strategy<Value = SignedHealth> {
    (bytes(256), prop::option::of(bytes(128)))
        .prop_map(|(report, cert)| SignedHealth { report, cert })
}

fn halt() -> impl Strategy<Value = HaltEvidence> {
    (
        release(),
        any::<u32>(),
        prop::collection::vec(signed_health(), 0..12),
    )
        .prop_map(|(release, wave, reports)| HaltEvidence {
            release,
            wave,
            reports,
        })
}

fn gossip() -> impl Strategy<Value = Gossip> {
    prop_oneof![
        bundle().prop_map(Gossip::Metadata),
        signed_health().prop_map(Gossip::Health),
        halt().prop_map(Gossip::Halt),
        bytes(512).prop_map(Gossip::Directive),
    ]
}

fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        Just(Request::Metadata),
        release().prop_map(|release| Request::ChunkList { release }),
        (release(), any::<u32>()).prop_map(|(release, index)| Request::Chunk { release, index }),
        (release(), bytes(2048))
            .prop_map(|(release, bitfield)| Request::Have { release, bitfield }),
    ]
}

fn response() -> impl Strategy<Value = Response> {
    prop_oneof![
        bundle().prop_map(Response::Metadata),
        bytes(2048).prop_map(Response::ChunkList),
        bytes(4096).prop_map(Response::Chunk),
        bytes(2048).prop_map(|bitfield| Response::Have { bitfield }),
        Just(Response::NotFound),
        Just(Response::Busy),
    ]
}

fn buf(len: usize) -> ByteBuf {
    ByteBuf::from(vec![0xa5; len])
}

fn health(len: usize) -> SignedHealth {
    SignedHealth {
        report: buf(len),
        cert: None,
    }
}

fn bundle_with_roots(n: usize) -> MetadataBundle {
    MetadataBundle {
        roots: (0..n).map(|_| buf(3)).collect(),
        ..MetadataBundle::default()
    }
}

fn halt_with_reports(n: usize) -> Gossip {
    Gossip::Halt(HaltEvidence {
        release: ReleaseId([3; 32]),
        wave: 1,
        reports: (0..n).map(|_| health(2)).collect(),
    })
}

/// The three decoders behind one name, so properties can run over all of them.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Gossip,
    Request,
    Response,
}

impl Kind {
    const ALL: [Kind; 3] = [Kind::Gossip, Kind::Request, Kind::Response];

    fn decode(self, bytes: &[u8]) -> Result<(), WireError> {
        match self {
            Kind::Gossip => Gossip::decode(bytes).map(drop),
            Kind::Request => Request::decode(bytes).map(drop),
            Kind::Response => Response::decode(bytes).map(drop),
        }
    }

    fn limit(self) -> usize {
        match self {
            Kind::Gossip => MAX_GOSSIP_BYTES,
            Kind::Request => MAX_REQUEST_BYTES,
            Kind::Response => MAX_FRAME_BYTES,
        }
    }
}

/// A valid encoding of any message kind, tagged with its decoder.
fn encoded() -> impl Strategy<Value = (Kind, Vec<u8>)> {
    prop_oneof![
        gossip().prop_map(|m| (Kind::Gossip, m.encode())),
        request().prop_map(|m| (Kind::Request, m.encode())),
        response().prop_map(|m| (Kind::Response, m.encode())),
    ]
}

fn is_count_too_large(r: Result<(), WireError>, field: &str, n: usize, max: usize) -> bool {
    matches!(r, Err(WireError::CountTooLarge { what, got, limit, .. }) if what == field && got == n && limit == max)
}

// ---------------------------------------------------------------------------
// Round trips

mod round_trips {
    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn gossip_round_trips(m in gossip()) {
            let bytes = m.encode();
            prop_assert_eq!(bytes[0], WIRE_VERSION);
            prop_assert_eq!(Gossip::decode(&bytes), Ok(m));
        }

        #[test]
        fn request_round_trips(m in request()) {
            prop_assert_eq!(Request::decode(&m.encode()), Ok(m));
        }

        #[test]
        fn response_round_trips(m in response()) {
            prop_assert_eq!(Response::decode(&m.encode()), Ok(m));
        }
    }

    #[test]
    fn gossip_topics() {
        assert_eq!(
            Gossip::Metadata(MetadataBundle::default()).topic(),
            TOPIC_METADATA
        );
        assert_eq!(Gossip::Health(health(1)).topic(), TOPIC_HEALTH);
        assert_eq!(halt_with_reports(1).topic(), TOPIC_HEALTH);
        assert_eq!(Gossip::Directive(buf(1)).topic(), TOPIC_DIRECTIVES);
    }

    #[test]
    fn the_largest_allowed_messages_round_trip() {
        let chunk = Response::Chunk(buf(MAX_CHUNK_BYTES as usize));
        assert_eq!(Response::decode(&chunk.encode()), Ok(chunk));
        let have = Request::Have {
            release: ReleaseId([1; 32]),
            bitfield: buf(MAX_BITFIELD_BYTES),
        };
        assert_eq!(Request::decode(&have.encode()), Ok(have));
        let have = Response::Have {
            bitfield: buf(MAX_BITFIELD_BYTES),
        };
        assert_eq!(Response::decode(&have.encode()), Ok(have));
        let roots = Gossip::Metadata(bundle_with_roots(MAX_BUNDLE_ROOTS));
        assert_eq!(Gossip::decode(&roots.encode()), Ok(roots));
        let halt = halt_with_reports(MAX_EVIDENCE_REPORTS);
        assert_eq!(Gossip::decode(&halt.encode()), Ok(halt));
        // A gossip message of exactly the limit.
        let overhead =
            Gossip::Directive(buf(MAX_GOSSIP_BYTES - 16)).encode().len() - (MAX_GOSSIP_BYTES - 16);
        let directive = Gossip::Directive(buf(MAX_GOSSIP_BYTES - overhead));
        assert_eq!(directive.encode().len(), MAX_GOSSIP_BYTES);
        assert_eq!(Gossip::decode(&directive.encode()), Ok(directive));
    }
}

// ---------------------------------------------------------------------------
// Hostile input

mod hostile {
    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        #[test]
        fn decoders_never_panic_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            for kind in Kind::ALL {
                let _ = kind.decode(&bytes);
            }
        }

        /// Arbitrary bodies behind the right version byte reach the postcard decoder.
        #[test]
        fn decoders_never_panic_on_versioned_bytes(body in prop::collection::vec(any::<u8>(), 0..512)) {
            let mut bytes = vec![WIRE_VERSION];
            bytes.extend(body);
            for kind in Kind::ALL {
                let _ = kind.decode(&bytes);
            }
        }

        /// Damaged valid encodings: a flipped byte, a byte inserted or removed.
        #[test]
        fn decoders_never_panic_on_damaged_messages(
            (kind, good) in encoded(),
            pos in any::<prop::sample::Index>(),
            byte in any::<u8>(),
        ) {
            let at = pos.index(good.len());
            let mut flipped = good.clone();
            flipped[at] ^= byte;
            let _ = kind.decode(&flipped);
            let mut inserted = good.clone();
            inserted.insert(at, byte);
            let _ = kind.decode(&inserted);
            let mut removed = good.clone();
            removed.remove(at);
            let _ = kind.decode(&removed);
        }

        /// Every proper prefix of a valid message is refused: the encoding is self-delimiting.
        #[test]
        fn every_truncation_is_refused((kind, good) in encoded()) {
            for cut in 0..good.len() {
                prop_assert!(kind.decode(&good[..cut]).is_err(), "{:?} cut at {} of {}", kind, cut, good.len());
            }
        }

        /// Bytes after a valid message are refused, not ignored.
        #[test]
        fn trailing_bytes_are_refused((kind, good) in encoded(), tail in prop::collection::vec(any::<u8>(), 1..16)) {
            let mut bytes = good;
            bytes.extend_from_slice(&tail);
            let refused = matches!(kind.decode(&bytes), Err(WireError::Trailing(n, _)) if n == tail.len());
            prop_assert!(refused);
        }

        #[test]
        fn other_versions_are_refused((kind, good) in encoded(), version in any::<u8>()) {
            prop_assume!(version != WIRE_VERSION);
            let mut bytes = good;
            bytes[0] = version;
            let refused = matches!(kind.decode(&bytes), Err(WireError::Version { got, .. }) if got == version);
            prop_assert!(refused);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        /// Anything over a kind's limit is refused by size alone, valid or not.
        #[test]
        fn oversize_frames_are_refused_before_parsing((kind, good) in encoded(), extra in 1usize..4096, fill in any::<u8>()) {
            let mut bytes = good;
            bytes.resize(kind.limit() + extra, fill);
            let len = bytes.len();
            let refused = matches!(kind.decode(&bytes), Err(WireError::TooLarge { len: l, limit, .. }) if l == len && limit == kind.limit());
            prop_assert!(refused);
        }
    }

    #[test]
    fn empty_input_is_refused() {
        for kind in Kind::ALL {
            assert!(
                matches!(kind.decode(&[]), Err(WireError::Empty(_))),
                "{kind:?}"
            );
        }
    }

    #[test]
    fn valid_but_oversize_messages_are_refused() {
        let big = Gossip::Directive(buf(MAX_GOSSIP_BYTES));
        assert!(matches!(
            Gossip::decode(&big.encode()),
            Err(WireError::TooLarge { .. })
        ));
        let big = Request::Have {
            release: ReleaseId([1; 32]),
            bitfield: buf(MAX_REQUEST_BYTES),
        };
        assert!(matches!(
            Request::decode(&big.encode()),
            Err(WireError::TooLarge { .. })
        ));
        let big = Response::Chunk(buf(MAX_FRAME_BYTES));
        assert!(matches!(
            Response::decode(&big.encode()),
            Err(WireError::TooLarge { .. })
        ));
    }
}

// ---------------------------------------------------------------------------
// Counts over their limits

mod counts {
    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(16))]

        #[test]
        fn too_many_bundle_roots(n in MAX_BUNDLE_ROOTS + 1..MAX_BUNDLE_ROOTS + 64) {
            let bytes = Gossip::Metadata(bundle_with_roots(n)).encode();
            prop_assert!(is_count_too_large(Kind::Gossip.decode(&bytes), "roots", n, MAX_BUNDLE_ROOTS));
            let bytes = Response::Metadata(bundle_with_roots(n)).encode();
            prop_assert!(is_count_too_large(Kind::Response.decode(&bytes), "roots", n, MAX_BUNDLE_ROOTS));
        }

        #[test]
        fn too_many_evidence_reports(n in MAX_EVIDENCE_REPORTS + 1..MAX_EVIDENCE_REPORTS + 64) {
            let bytes = halt_with_reports(n).encode();
            prop_assert!(is_count_too_large(Kind::Gossip.decode(&bytes), "evidence reports", n, MAX_EVIDENCE_REPORTS));
        }

        #[test]
        fn bitfields_too_large(n in MAX_BITFIELD_BYTES + 1..MAX_BITFIELD_BYTES + 4096) {
            let req = Request::Have { release: ReleaseId([9; 32]), bitfield: buf(n) }.encode();
            prop_assert!(req.len() <= MAX_REQUEST_BYTES, "the frame itself is within limits");
            prop_assert!(is_count_too_large(Kind::Request.decode(&req), "bitfield bytes", n, MAX_BITFIELD_BYTES));
            let resp = Response::Have { bitfield: buf(n) }.encode();
            prop_assert!(is_count_too_large(Kind::Response.decode(&resp), "bitfield bytes", n, MAX_BITFIELD_BYTES));
        }

        /// A metadata response must fit in a gossip message even though the response frame is larger.
        #[test]
        fn metadata_responses_over_the_gossip_limit(extra in 1usize..100_000) {
            let overhead = Response::Metadata(MetadataBundle::default()).encode().len();
            let bundle = MetadataBundle {
                targets: buf(MAX_GOSSIP_BYTES + extra),
                ..MetadataBundle::default()
            };
            let bytes = Response::Metadata(bundle).encode();
            prop_assert!(bytes.len() > MAX_GOSSIP_BYTES + overhead);
            prop_assert!(bytes.len() <= MAX_FRAME_BYTES);
            prop_assert!(is_count_too_large(Kind::Response.decode(&bytes), "metadata response bytes", bytes.len(), MAX_GOSSIP_BYTES));
        }
    }
}
