//! Peer messages, their versioning and codec.
//!
//! Every message on the wire is one version byte ([`WIRE_VERSION`]) followed by
//! the [postcard](https://postcard.jamesmunns.com/wire-format) encoding of a
//! [`Gossip`], [`Request`] or [`Response`]. Signed documents travel inside as
//! the exact JSON bytes that were signed, so a relay never re-encodes them.
//! Decoding checks the frame size before reading anything, rejects trailing
//! bytes, and then checks every count against [`crate::limits`]; nothing a peer
//! sends can make a decoder allocate more than the frame it already holds.

use crate::id::ReleaseId;
use crate::limits::{
    MAX_DIRECTIVE_BYTES, MAX_EVIDENCE_REPORTS, MAX_FRAME_BYTES, MAX_GOSSIP_BYTES, MAX_REQUEST_BYTES,
};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use thiserror::Error;

/// The wire format version this implementation speaks.
pub const WIRE_VERSION: u8 = 1;
/// Gossip topic for metadata bundles.
pub const TOPIC_METADATA: &str = "waveguard/1/metadata";
/// Gossip topic for health reports and halt evidence.
pub const TOPIC_HEALTH: &str = "waveguard/1/health";
/// Gossip topic for signed halt and resume directives.
pub const TOPIC_DIRECTIVES: &str = "waveguard/1/directives";
pub use crate::limits::{MAX_BITFIELD_BYTES, MAX_BUNDLE_ROOTS};

/// The trust metadata a node needs to accept releases, as signed JSON bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataBundle {
    /// Root documents in increasing version order, so an older node can walk rotations.
    pub roots: Vec<ByteBuf>,
    /// Timestamp metadata.
    pub timestamp: ByteBuf,
    /// Snapshot metadata.
    pub snapshot: ByteBuf,
    /// Targets metadata.
    pub targets: ByteBuf,
}

/// A signed health report and, in fleets with an operator key, the reporter's fleet certificate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedHealth {
    /// The report envelope's JSON bytes.
    pub report: ByteBuf,
    /// The fleet certificate envelope's JSON bytes, if any.
    pub cert: Option<ByteBuf>,
}

/// A halt announcement with the reports that justify it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HaltEvidence {
    /// The release halted.
    pub release: ReleaseId,
    /// The wave whose gate failed.
    pub wave: u32,
    /// Reports from that wave; together with the receiver's own ledger they must fail the gate.
    pub reports: Vec<SignedHealth>,
}

/// A gossipsub payload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Gossip {
    /// Trust metadata (topic [`TOPIC_METADATA`]).
    Metadata(MetadataBundle),
    /// One health report or heartbeat (topic [`TOPIC_HEALTH`]).
    Health(SignedHealth),
    /// A halt derived from health evidence (topic [`TOPIC_HEALTH`]).
    Halt(HaltEvidence),
    /// A signed halt or resume directive's JSON bytes (topic [`TOPIC_DIRECTIVES`]).
    Directive(ByteBuf),
}

/// A request to one peer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Send me your current metadata bundle.
    Metadata,
    /// Send me the chunk list of a release.
    ChunkList {
        /// Which release.
        release: ReleaseId,
    },
    /// Send me one chunk.
    Chunk {
        /// Which release.
        release: ReleaseId,
        /// Index in the chunk list.
        index: u32,
    },
    /// Here is which chunks I hold; answer with yours.
    Have {
        /// Which release.
        release: ReleaseId,
        /// Bit `i` (most significant bit first) set when chunk `i` is held.
        bitfield: ByteBuf,
    },
    /// Send me the latest health reports you hold for one wave of a release
    /// (health sync: how a node that missed a wave's gossip judges its gate).
    Health {
        /// Which release.
        release: ReleaseId,
        /// Which wave.
        wave: u32,
    },
    /// If you have halted this release, send me what halted it (halt sync: how a node
    /// that missed a halt's gossip, cut off or offline at the time, still learns of it).
    Halt {
        /// Which release.
        release: ReleaseId,
    },
}

/// An answer to a [`Request`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// My metadata bundle.
    Metadata(MetadataBundle),
    /// The encoded chunk list.
    ChunkList(ByteBuf),
    /// The chunk's bytes.
    Chunk(ByteBuf),
    /// My availability for the release in the request.
    Have {
        /// Same layout as in the request.
        bitfield: ByteBuf,
    },
    /// I do not have that.
    NotFound,
    /// I am serving too much right now; ask again later or elsewhere.
    Busy,
    /// The latest report of each node of the wave asked for that this node holds,
    /// sorted by node ID, within the evidence bounds.
    Health(Vec<SignedHealth>),
    /// The evidence of a halt on a failed gate, built from the answerer's ledger.
    Halt(HaltEvidence),
    /// The latest directive the answerer accepted for the release asked about: its JSON bytes.
    Directive(ByteBuf),
}

/// A message could not be decoded.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WireError {
    /// Larger than the limit for its kind; nothing was read.
    #[error("{kind} of {len} bytes is over the limit of {limit}")]
    TooLarge {
        /// What was being read.
        kind: &'static str,
        /// Its size.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// Empty input.
    #[error("{0} is empty")]
    Empty(&'static str),
    /// A version this implementation does not speak.
    #[error("{kind} has wire version {got}, this node speaks {WIRE_VERSION}")]
    Version {
        /// What was being read.
        kind: &'static str,
        /// The version byte found.
        got: u8,
    },
    /// The postcard body is malformed.
    #[error("{kind} is malformed: {reason}")]
    Malformed {
        /// What was being read.
        kind: &'static str,
        /// The decoder's complaint.
        reason: String,
    },
    /// Valid postcard, but not the shortest encoding (an overlong varint).
    #[error("{0} is not minimally encoded")]
    NotMinimal(&'static str),
    /// Bytes left over after the message.
    #[error("{kind} has {0} trailing bytes", kind = .1)]
    Trailing(usize, &'static str),
    /// A count inside the message is over its limit.
    #[error("{kind}: {what} is {got}, over the limit of {limit}")]
    CountTooLarge {
        /// What was being read.
        kind: &'static str,
        /// Which field.
        what: &'static str,
        /// Its value.
        got: usize,
        /// The limit.
        limit: usize,
    },
}

fn encode<T: Serialize>(msg: &T) -> Vec<u8> {
    let mut out = vec![WIRE_VERSION];
    // postcard serializes owned, plain data infallibly into a Vec.
    out.extend(postcard::to_allocvec(msg).unwrap_or_default());
    out
}

fn decode<'a, T: Deserialize<'a>>(
    bytes: &'a [u8],
    limit: usize,
    kind: &'static str,
) -> Result<T, WireError> {
    if bytes.len() > limit {
        return Err(WireError::TooLarge {
            kind,
            len: bytes.len(),
            limit,
        });
    }
    let (&version, body) = bytes.split_first().ok_or(WireError::Empty(kind))?;
    if version != WIRE_VERSION {
        return Err(WireError::Version { kind, got: version });
    }
    let (msg, rest) = postcard::take_from_bytes(body).map_err(|e| WireError::Malformed {
        kind,
        reason: e.to_string(),
    })?;
    if !rest.is_empty() {
        return Err(WireError::Trailing(rest.len(), kind));
    }
    Ok(msg)
}

/// Requires `bytes` to be the one encoding of `msg`: postcard also reads
/// overlong varints, and several encodings of one message would defeat
/// deduplication by content hash.
fn check_unique<T: Serialize>(msg: &T, bytes: &[u8], kind: &'static str) -> Result<(), WireError> {
    if encode(msg) != bytes {
        return Err(WireError::NotMinimal(kind));
    }
    Ok(())
}

fn check_count(
    kind: &'static str,
    what: &'static str,
    got: usize,
    limit: usize,
) -> Result<(), WireError> {
    if got > limit {
        return Err(WireError::CountTooLarge {
            kind,
            what,
            got,
            limit,
        });
    }
    Ok(())
}

fn check_bundle(kind: &'static str, b: &MetadataBundle) -> Result<(), WireError> {
    check_count(kind, "roots", b.roots.len(), MAX_BUNDLE_ROOTS)
}

impl Gossip {
    /// Encodes for gossipsub.
    pub fn encode(&self) -> Vec<u8> {
        encode(self)
    }

    /// Decodes and bounds-checks a gossip payload.
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        const KIND: &str = "gossip message";
        let msg: Gossip = decode(bytes, MAX_GOSSIP_BYTES, KIND)?;
        match &msg {
            Gossip::Metadata(b) => check_bundle(KIND, b)?,
            Gossip::Halt(h) => check_count(
                KIND,
                "evidence reports",
                h.reports.len(),
                MAX_EVIDENCE_REPORTS,
            )?,
            Gossip::Health(_) | Gossip::Directive(_) => {}
        }
        check_unique(&msg, bytes, KIND)?;
        Ok(msg)
    }

    /// The topic this message belongs on.
    pub fn topic(&self) -> &'static str {
        match self {
            Gossip::Metadata(_) => TOPIC_METADATA,
            Gossip::Health(_) | Gossip::Halt(_) => TOPIC_HEALTH,
            Gossip::Directive(_) => TOPIC_DIRECTIVES,
        }
    }
}

impl Request {
    /// Encodes for request-response.
    pub fn encode(&self) -> Vec<u8> {
        encode(self)
    }

    /// Decodes and bounds-checks a request.
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        const KIND: &str = "request";
        let msg: Request = decode(bytes, MAX_REQUEST_BYTES, KIND)?;
        if let Request::Have { bitfield, .. } = &msg {
            check_count(KIND, "bitfield bytes", bitfield.len(), MAX_BITFIELD_BYTES)?;
        }
        check_unique(&msg, bytes, KIND)?;
        Ok(msg)
    }
}

impl Response {
    /// Encodes for request-response.
    pub fn encode(&self) -> Vec<u8> {
        encode(self)
    }

    /// Decodes and bounds-checks a response. Only chunk and chunk list
    /// responses may be as large as [`MAX_FRAME_BYTES`].
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        const KIND: &str = "response";
        let msg: Response = decode(bytes, MAX_FRAME_BYTES, KIND)?;
        match &msg {
            Response::Chunk(_) | Response::ChunkList(_) => {}
            Response::Metadata(b) => {
                check_bundle(KIND, b)?;
                check_count(
                    KIND,
                    "metadata response bytes",
                    bytes.len(),
                    MAX_GOSSIP_BYTES,
                )?;
            }
            Response::Have { bitfield } => {
                check_count(KIND, "bitfield bytes", bitfield.len(), MAX_BITFIELD_BYTES)?
            }
            Response::Health(reports) => {
                check_count(KIND, "health reports", reports.len(), MAX_EVIDENCE_REPORTS)?;
                check_count(KIND, "health response bytes", bytes.len(), MAX_GOSSIP_BYTES)?;
            }
            Response::Halt(h) => {
                check_count(
                    KIND,
                    "evidence reports",
                    h.reports.len(),
                    MAX_EVIDENCE_REPORTS,
                )?;
                check_count(KIND, "halt response bytes", bytes.len(), MAX_GOSSIP_BYTES)?;
            }
            Response::Directive(d) => {
                check_count(KIND, "directive bytes", d.len(), MAX_DIRECTIVE_BYTES)?
            }
            Response::NotFound | Response::Busy => {}
        }
        check_unique(&msg, bytes, KIND)?;
        Ok(msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_wrong_version_trailing_and_empty() {
        let mut b = Request::Metadata.encode();
        assert_eq!(Request::decode(&b).unwrap(), Request::Metadata);
        b.push(0);
        assert!(matches!(
            Request::decode(&b),
            Err(WireError::Trailing(1, _))
        ));
        assert!(matches!(
            Request::decode(&[2, 0]),
            Err(WireError::Version { got: 2, .. })
        ));
        assert!(matches!(Request::decode(&[]), Err(WireError::Empty(_))));
    }

    #[test]
    fn refuses_overlong_varints() {
        let ok = Request::Chunk {
            release: crate::id::ReleaseId([0; 32]),
            index: 0,
        }
        .encode();
        assert!(Request::decode(&ok).is_ok());
        let mut long = ok[..ok.len() - 1].to_vec();
        long.extend_from_slice(&[0x80, 0x00]);
        assert!(matches!(
            Request::decode(&long),
            Err(WireError::NotMinimal(_))
        ));
    }

    #[test]
    fn a_huge_declared_length_does_not_allocate() {
        // Chunk variant (2) with a byte-string length of about 2^62: postcard must
        // notice the input is short instead of reserving memory.
        let bytes = [
            WIRE_VERSION,
            2,
            0xff,
            0xff,
            0xff,
            0xff,
            0xff,
            0xff,
            0xff,
            0xff,
            0x3f,
        ];
        assert!(matches!(
            Response::decode(&bytes),
            Err(WireError::Malformed { .. })
        ));
    }
}
