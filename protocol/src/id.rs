//! Identities: [`NodeId`] (an endpoint) and [`ReleaseId`] (one release).
//!
//! A node's ID is its ed25519 public key. The agent's libp2p identity is the
//! same key, so a libp2p `PeerId` and a `NodeId` convert both ways without a
//! lookup table: for an ed25519 key the PeerId is the identity multihash of the
//! protobuf-encoded public key, i.e. the 38 bytes
//! `00 24 08 01 12 20 <32-byte key>`, shown in base58btc (`12D3KooW…`).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use thiserror::Error;

/// The bytes that precede an ed25519 key in its libp2p PeerId:
/// identity multihash (0x00), length 36 (0x24), protobuf field 1 = KeyType Ed25519
/// (0x08 0x01), field 2 = 32 bytes of key (0x12 0x20).
pub const PEER_ID_ED25519_PREFIX: [u8; 6] = [0x00, 0x24, 0x08, 0x01, 0x12, 0x20];

/// blake3 `derive_key` context for release IDs.
pub const RELEASE_ID_CONTEXT: &str = "waveguard 2026-11 release-id v1";

/// An endpoint's identity: its 32-byte ed25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeId(pub [u8; 32]);

/// A release's identity: a domain-separated blake3 hash of product, version
/// and artifact hash (see [`ReleaseId::derive`]).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ReleaseId(pub [u8; 32]);

/// A node or release ID string could not be read.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdParseError {
    /// Neither 64 hex digits nor a base58 libp2p PeerId.
    #[error("{0:?} is neither 64 hex digits nor a libp2p ed25519 PeerId (12D3KooW...)")]
    Unrecognised(String),
    /// Base58 that decodes, but not to an ed25519 identity PeerId.
    #[error("PeerId {0:?} does not hold an ed25519 key inline")]
    NotEd25519(String),
}

impl NodeId {
    /// The libp2p PeerId bytes for this key.
    pub fn to_peer_id_bytes(&self) -> [u8; 38] {
        let mut out = [0u8; 38];
        out[..6].copy_from_slice(&PEER_ID_ED25519_PREFIX);
        out[6..].copy_from_slice(&self.0);
        out
    }

    /// The libp2p PeerId in its usual base58btc text form.
    pub fn to_peer_id_string(&self) -> String {
        bs58::encode(self.to_peer_id_bytes()).into_string()
    }

    /// Reads libp2p PeerId bytes; only ed25519 identity PeerIds carry a key.
    pub fn from_peer_id_bytes(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != 38 || bytes[..6] != PEER_ID_ED25519_PREFIX {
            return None;
        }
        let mut key = [0u8; 32];
        key.copy_from_slice(&bytes[6..]);
        Some(NodeId(key))
    }

    /// Lowercase hex of the key.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl FromStr for NodeId {
    type Err = IdParseError;

    /// Accepts 64 hex digits or a base58 PeerId.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let short: String = s.chars().take(80).collect();
        if let Some(bytes) = parse_hex32(s) {
            return Ok(NodeId(bytes));
        }
        if s.len() > 80 {
            return Err(IdParseError::Unrecognised(short));
        }
        let bytes = bs58::decode(s)
            .into_vec()
            .map_err(|_| IdParseError::Unrecognised(short.clone()))?;
        NodeId::from_peer_id_bytes(&bytes).ok_or(IdParseError::NotEd25519(short))
    }
}

impl ReleaseId {
    /// `blake3::derive_key(RELEASE_ID_CONTEXT, product || 0x00 || version || 0x00 || artifact_blake3)`.
    /// Product and version never contain NUL (metadata validation refuses it),
    /// so the encoding is unambiguous.
    pub fn derive(product: &str, version: &str, artifact_blake3: &[u8; 32]) -> Self {
        let mut h = blake3::Hasher::new_derive_key(RELEASE_ID_CONTEXT);
        h.update(product.as_bytes());
        h.update(&[0]);
        h.update(version.as_bytes());
        h.update(&[0]);
        h.update(artifact_blake3);
        ReleaseId(*h.finalize().as_bytes())
    }

    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl FromStr for ReleaseId {
    type Err = IdParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_hex32(s)
            .map(ReleaseId)
            .ok_or_else(|| IdParseError::Unrecognised(s.chars().take(80).collect()))
    }
}

/// Parses exactly 64 hex digits.
pub fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}
impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({})", &self.to_hex()[..12])
    }
}
impl fmt::Display for ReleaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}
impl fmt::Debug for ReleaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ReleaseId({})", &self.to_hex()[..12])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_id_round_trip() {
        let id = NodeId([7u8; 32]);
        let text = id.to_peer_id_string();
        assert!(text.starts_with("12D3KooW"), "{text}");
        assert_eq!(text.parse::<NodeId>().unwrap(), id);
        assert_eq!(id.to_hex().parse::<NodeId>().unwrap(), id);
    }

    #[test]
    fn rejects_other_strings() {
        assert!("xyz".parse::<NodeId>().is_err());
        assert!("QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N"
            .parse::<NodeId>()
            .is_err());
    }

    #[test]
    fn release_id_depends_on_every_field() {
        let a = ReleaseId::derive("p", "1", &[0; 32]);
        assert_ne!(a, ReleaseId::derive("p", "2", &[0; 32]));
        assert_ne!(a, ReleaseId::derive("q", "1", &[0; 32]));
        assert_ne!(a, ReleaseId::derive("p", "1", &[1; 32]));
        assert_ne!(
            ReleaseId::derive("p1", "", &[0; 32]),
            ReleaseId::derive("p", "1", &[0; 32])
        );
    }
}
