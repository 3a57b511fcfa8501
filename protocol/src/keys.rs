//! ed25519 keys in The Update Framework's key format, and their key IDs.
//!
//! A public key is written as TUF writes it:
//! `{"keytype":"ed25519","scheme":"ed25519","keyval":{"public":"<64 hex>"}}`,
//! and its key ID is the lowercase hex SHA-256 of that object's canonical JSON,
//! as TUF 1.0 defines. Node keys, vendor keys and operator keys are all of
//! this one kind.

use crate::id::{parse_hex32, NodeId};
use ed25519_dalek::Signer;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;
use thiserror::Error;

/// A TUF key ID: lowercase hex SHA-256 of the key's canonical JSON.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KeyId(pub String);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", self.0.get(..12).unwrap_or(&self.0))
    }
}

/// The `keyval` object of a TUF key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyVal {
    /// 64 lowercase hex digits of the ed25519 public key.
    pub public: String,
}

/// A public key as TUF writes it. Only `ed25519`/`ed25519` is accepted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicKey {
    /// Always `"ed25519"`.
    pub keytype: String,
    /// Always `"ed25519"`.
    pub scheme: String,
    /// The key material.
    pub keyval: KeyVal,
}

/// A key was not usable.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyError {
    /// keytype or scheme other than ed25519.
    #[error("unsupported key type {keytype:?} / scheme {scheme:?}: only ed25519 is accepted")]
    Unsupported {
        /// The keytype found.
        keytype: String,
        /// The scheme found.
        scheme: String,
    },
    /// The public key is not 64 hex digits or not a valid curve point.
    #[error("public key {0:?} is not a valid ed25519 key in hex")]
    BadPublic(String),
    /// A secret key file did not hold 64 hex digits.
    #[error("secret key is not 64 hex digits")]
    BadSecret,
}

impl PublicKey {
    /// The TUF form of a raw ed25519 public key.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        PublicKey {
            keytype: "ed25519".into(),
            scheme: "ed25519".into(),
            keyval: KeyVal {
                public: hex::encode(bytes),
            },
        }
    }

    /// The raw key, after checking type, scheme and encoding.
    pub fn to_bytes(&self) -> Result<[u8; 32], KeyError> {
        if self.keytype != "ed25519" || self.scheme != "ed25519" {
            return Err(KeyError::Unsupported {
                keytype: self.keytype.chars().take(32).collect(),
                scheme: self.scheme.chars().take(32).collect(),
            });
        }
        // Lowercase only: the key ID hashes the text, so two spellings would give two IDs.
        if self.keyval.public.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(KeyError::BadPublic(
                self.keyval.public.chars().take(80).collect(),
            ));
        }
        parse_hex32(&self.keyval.public)
            .ok_or_else(|| KeyError::BadPublic(self.keyval.public.chars().take(80).collect()))
    }

    /// The TUF key ID: hex SHA-256 of the canonical JSON of this object.
    pub fn key_id(&self) -> KeyId {
        let bytes = crate::metadata::signed::canonical_json(self)
            .expect("a key of three strings always has canonical JSON");
        KeyId(hex::encode(Sha256::digest(&bytes)))
    }

    /// The node ID this key stands for.
    pub fn node_id(&self) -> Result<NodeId, KeyError> {
        self.to_bytes().map(NodeId)
    }

    /// Checks an ed25519 signature (strict verification: no malleable or small-order forms).
    pub fn verify(&self, message: &[u8], signature: &[u8; 64]) -> bool {
        let Ok(bytes) = self.to_bytes() else {
            return false;
        };
        let Ok(vk) = ed25519_dalek::VerifyingKey::from_bytes(&bytes) else {
            return false;
        };
        let sig = ed25519_dalek::Signature::from_bytes(signature);
        vk.verify_strict(message, &sig).is_ok()
    }
}

impl From<NodeId> for PublicKey {
    fn from(id: NodeId) -> Self {
        PublicKey::from_bytes(id.0)
    }
}

/// An ed25519 secret key. The protocol never generates one (that needs
/// randomness); drivers create them from 32 random bytes.
#[derive(Clone)]
pub struct SigningKey(ed25519_dalek::SigningKey);

impl SigningKey {
    /// From a 32-byte secret seed.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        SigningKey(ed25519_dalek::SigningKey::from_bytes(&seed))
    }

    /// From 64 hex digits of secret seed.
    pub fn from_hex(s: &str) -> Result<Self, KeyError> {
        parse_hex32(s.trim())
            .map(Self::from_seed)
            .ok_or(KeyError::BadSecret)
    }

    /// The 32-byte secret seed (for writing key files).
    pub fn to_seed(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// The public key in TUF form.
    pub fn public(&self) -> PublicKey {
        PublicKey::from_bytes(self.0.verifying_key().to_bytes())
    }

    /// The node ID of this key.
    pub fn node_id(&self) -> NodeId {
        NodeId(self.0.verifying_key().to_bytes())
    }

    /// The TUF key ID of the public key.
    pub fn key_id(&self) -> KeyId {
        self.public().key_id()
    }

    /// Signs `message` (deterministic, RFC 8032).
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.0.sign(message).to_bytes()
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey({:?})", self.key_id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_id_is_sha256_of_canonical_key() {
        let k = SigningKey::from_seed([1u8; 32]);
        let pk = k.public();
        let canon = format!(
            r#"{{"keytype":"ed25519","keyval":{{"public":"{}"}},"scheme":"ed25519"}}"#,
            pk.keyval.public
        );
        assert_eq!(pk.key_id().0, hex::encode(Sha256::digest(canon.as_bytes())));
    }

    #[test]
    fn sign_verify_and_reject() {
        let k = SigningKey::from_seed([2u8; 32]);
        let sig = k.sign(b"hello");
        assert!(k.public().verify(b"hello", &sig));
        assert!(!k.public().verify(b"hellO", &sig));
        let other = SigningKey::from_seed([3u8; 32]);
        assert!(!other.public().verify(b"hello", &sig));
    }

    #[test]
    fn rejects_wrong_types_and_uppercase() {
        let mut pk = SigningKey::from_seed([2u8; 32]).public();
        pk.keyval.public = pk.keyval.public.to_uppercase();
        assert!(pk.to_bytes().is_err());
        let mut pk2 = SigningKey::from_seed([2u8; 32]).public();
        pk2.keytype = "rsa".into();
        assert!(matches!(pk2.to_bytes(), Err(KeyError::Unsupported { .. })));
    }
}
