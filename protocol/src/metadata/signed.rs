//! The signed envelope shared by every waveguard document, and canonical JSON.
//!
//! Every document is `{"signed": {...}, "signatures": [{"keyid": "...", "sig": "..."}]}`
//! exactly as in TUF 1.0. A signature is ed25519 over the OLPC canonical JSON of
//! the `signed` value *as received*, so fields this implementation does not know
//! still count and are never silently dropped. `sig` is 128 lowercase hex digits.

use crate::keys::{KeyId, PublicKey, SigningKey};
use crate::limits::MAX_SIGNATURES;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use thiserror::Error;

/// Serializes `value` as OLPC canonical JSON (sorted keys, no insignificant
/// white space, only integers as numbers).
pub fn canonical_json<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, serde_json::Error> {
    let mut out = Vec::new();
    let mut ser =
        serde_json::Serializer::with_formatter(&mut out, olpc_cjson::CanonicalFormatter::new());
    value.serialize(&mut ser)?;
    Ok(out)
}

/// One signature in an envelope.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    /// Key ID of the signing key.
    pub keyid: KeyId,
    /// 128 lowercase hex digits: the ed25519 signature.
    pub sig: String,
}

/// The keys allowed to sign for a role, and how many of them must.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleKeys {
    /// Key IDs that may sign.
    pub keyids: Vec<KeyId>,
    /// How many distinct key IDs among `keyids` must have signed.
    pub threshold: u32,
}

/// Reading an envelope from bytes failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The document is larger than the limit for its kind (the endless-data attack).
    #[error("{kind} is {len} bytes, over the limit of {limit}")]
    TooLarge {
        /// What was being read.
        kind: &'static str,
        /// Its size.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// Not JSON, or not of the envelope's shape.
    #[error("{kind} is not a valid signed JSON document: {source}")]
    Json {
        /// What was being read.
        kind: &'static str,
        /// The parser's complaint.
        source: serde_json::Error,
    },
    /// More signatures than any role could need.
    #[error("{kind} carries {count} signatures, over the limit of {limit}")]
    TooManySignatures {
        /// What was being read.
        kind: &'static str,
        /// How many.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// A string holds a control character or text not in Unicode NFC, so its
    /// canonical form would differ from what was received.
    #[error("{kind} holds a string with a control character or non-NFC text; its canonical form differs from the document")]
    NotNormalised {
        /// What was being read.
        kind: &'static str,
    },
    /// A key ID or signature is not lowercase hex.
    #[error("{kind} has a signature whose keyid or sig is not lowercase hex (keyid {keyid:?})")]
    BadSignatureEncoding {
        /// What was being read.
        kind: &'static str,
        /// The key ID as given (shortened).
        keyid: String,
    },
    /// The `signed` value has no canonical form (for example it holds a float).
    #[error("{kind} has no canonical JSON form (floats are not allowed): {source}")]
    NotCanonical {
        /// What was being read.
        kind: &'static str,
        /// The serializer's complaint.
        source: serde_json::Error,
    },
}

/// Refuses (as `Json`, spec 5.2 step 2) an envelope that is not an object,
/// whose `signed` is not an object, or whose `signatures` holds anything but
/// objects: serde reads a struct written as an array, which would re-encode to
/// different and larger bytes than were received.
fn check_object_shape(value: &serde_json::Value, kind: &'static str) -> Result<(), DecodeError> {
    let not = |what: &str| {
        Err(DecodeError::Json {
            kind,
            source: serde::de::Error::custom(format!("{what} must be a JSON object")),
        })
    };
    let Some(envelope) = value.as_object() else {
        return not("the envelope");
    };
    if envelope.get("signed").is_some_and(|s| !s.is_object()) {
        return not("`signed`");
    }
    if let Some(serde_json::Value::Array(signatures)) = envelope.get("signatures") {
        if signatures.iter().any(|s| !s.is_object()) {
            return not("every entry of `signatures`");
        }
    }
    Ok(())
}

fn is_lower_hex(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Checking signatures against a role failed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignatureError {
    /// Fewer valid signatures from the role's keys than its threshold.
    #[error(
        "{role} has {valid} valid signature(s) from its keys, below the threshold of {threshold}"
    )]
    BelowThreshold {
        /// The role checked.
        role: String,
        /// Distinct valid signatures found.
        valid: u32,
        /// The threshold required.
        threshold: u32,
    },
    /// A threshold of zero would accept anything.
    #[error("{role} has a threshold of 0")]
    ZeroThreshold {
        /// The role checked.
        role: String,
    },
}

/// A document with its signatures, and the canonical bytes they cover.
#[derive(Clone, Debug)]
pub struct Envelope<T> {
    /// The typed content of `signed`.
    pub signed: T,
    /// The signatures, as received.
    pub signatures: Vec<Signature>,
    /// Canonical JSON of the `signed` value as received: the signature input.
    canonical: Vec<u8>,
}

#[derive(Deserialize)]
struct RawEnvelope {
    signed: serde_json::Value,
    signatures: Vec<Signature>,
}

#[derive(Serialize)]
struct RawEnvelopeRef<'a> {
    signed: &'a serde_json::Value,
    signatures: &'a [Signature],
}

impl<T: Serialize + DeserializeOwned> Envelope<T> {
    /// Reads an envelope, refusing anything over `limit` bytes before parsing.
    /// `kind` names the document in errors ("root metadata", "health report", ...).
    pub fn from_json(bytes: &[u8], limit: usize, kind: &'static str) -> Result<Self, DecodeError> {
        if bytes.len() > limit {
            return Err(DecodeError::TooLarge {
                kind,
                len: bytes.len(),
                limit,
            });
        }
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|source| DecodeError::Json { kind, source })?;
        check_object_shape(&value, kind)?;
        let raw: RawEnvelope =
            serde_json::from_value(value).map_err(|source| DecodeError::Json { kind, source })?;
        if raw.signatures.len() > MAX_SIGNATURES {
            return Err(DecodeError::TooManySignatures {
                kind,
                count: raw.signatures.len(),
                limit: MAX_SIGNATURES,
            });
        }
        let canonical = canonical_json(&raw.signed)
            .map_err(|source| DecodeError::NotCanonical { kind, source })?;
        // OLPC canonical JSON normalises strings to NFC and writes control characters raw. Either
        // would let two different documents share one signature (or produce unparseable bytes),
        // so the canonical form must read back as exactly the value received.
        match serde_json::from_slice::<serde_json::Value>(&canonical) {
            Ok(back) if back == raw.signed => {}
            _ => return Err(DecodeError::NotNormalised { kind }),
        }
        if let Some(bad) = raw
            .signatures
            .iter()
            .find(|s| !is_lower_hex(&s.keyid.0) || !is_lower_hex(&s.sig))
        {
            return Err(DecodeError::BadSignatureEncoding {
                kind,
                keyid: bad.keyid.0.chars().take(80).collect(),
            });
        }
        let signed: T = serde_json::from_value(raw.signed)
            .map_err(|source| DecodeError::Json { kind, source })?;
        Ok(Envelope {
            signed,
            signatures: raw.signatures,
            canonical,
        })
    }

    /// Builds an unsigned envelope around `signed`.
    pub fn new(signed: T) -> Result<Self, serde_json::Error> {
        let canonical = canonical_json(&serde_json::to_value(&signed)?)?;
        Ok(Envelope {
            signed,
            signatures: Vec::new(),
            canonical,
        })
    }

    /// Builds an envelope and signs it with each key.
    pub fn sign_new(signed: T, keys: &[&SigningKey]) -> Result<Self, serde_json::Error> {
        let mut env = Self::new(signed)?;
        for k in keys {
            env.add_signature(k);
        }
        Ok(env)
    }

    /// Adds (or replaces) the signature of `key`.
    pub fn add_signature(&mut self, key: &SigningKey) {
        let keyid = key.key_id();
        self.signatures.retain(|s| s.keyid != keyid);
        let sig = hex::encode(key.sign(&self.canonical));
        self.signatures.push(Signature { keyid, sig });
    }

    /// The signature input: canonical JSON of `signed`.
    pub fn canonical_signed(&self) -> &[u8] {
        &self.canonical
    }

    /// The whole envelope as JSON (canonical, so byte-identical everywhere).
    pub fn to_json(&self) -> Vec<u8> {
        // The canonical bytes came from a Value, so they parse back.
        let signed: serde_json::Value =
            serde_json::from_slice(&self.canonical).unwrap_or(serde_json::Value::Null);
        canonical_json(&RawEnvelopeRef {
            signed: &signed,
            signatures: &self.signatures,
        })
        .unwrap_or_default()
    }

    /// Counts distinct key IDs of `role` whose signature verifies with the key
    /// listed for it in `keys`, and checks the count reaches the threshold.
    /// Signatures by keys outside the role, unknown keys, bad hex and
    /// duplicates are ignored, as TUF requires.
    pub fn verify_role(
        &self,
        role_name: &str,
        role: &RoleKeys,
        keys: &BTreeMap<KeyId, PublicKey>,
    ) -> Result<u32, SignatureError> {
        if role.threshold == 0 {
            return Err(SignatureError::ZeroThreshold {
                role: role_name.into(),
            });
        }
        let valid = count_valid(&self.canonical, &self.signatures, role, keys);
        if valid < role.threshold {
            return Err(SignatureError::BelowThreshold {
                role: role_name.into(),
                valid,
                threshold: role.threshold,
            });
        }
        Ok(valid)
    }

    /// Whether `key` has a valid signature on this document.
    pub fn is_signed_by(&self, key: &PublicKey) -> bool {
        let id = key.key_id();
        self.signatures
            .iter()
            .filter(|s| s.keyid == id)
            .any(|s| sig_bytes(&s.sig).is_some_and(|sig| key.verify(&self.canonical, &sig)))
    }
}

fn sig_bytes(hex_sig: &str) -> Option<[u8; 64]> {
    if hex_sig.len() != 128 {
        return None;
    }
    let mut out = [0u8; 64];
    hex::decode_to_slice(hex_sig, &mut out).ok()?;
    Some(out)
}

fn count_valid(
    message: &[u8],
    signatures: &[Signature],
    role: &RoleKeys,
    keys: &BTreeMap<KeyId, PublicKey>,
) -> u32 {
    let allowed: BTreeSet<&KeyId> = role.keyids.iter().collect();
    let mut seen = BTreeSet::new();
    for s in signatures {
        if !allowed.contains(&s.keyid) || seen.contains(&s.keyid) {
            continue;
        }
        let (Some(key), Some(sig)) = (keys.get(&s.keyid), sig_bytes(&s.sig)) else {
            continue;
        };
        // A key listed under an ID that is not its own would let one key count twice.
        if key.key_id() != s.keyid {
            continue;
        }
        if key.verify(message, &sig) {
            seen.insert(s.keyid.clone());
        }
    }
    u32::try_from(seen.len()).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn setup(n: u8) -> (Vec<SigningKey>, BTreeMap<KeyId, PublicKey>) {
        let ks: Vec<SigningKey> = (0..n).map(|i| SigningKey::from_seed([i + 1; 32])).collect();
        let map = ks.iter().map(|k| (k.key_id(), k.public())).collect();
        (ks, map)
    }

    #[test]
    fn threshold_counts_distinct_role_keys() {
        let (ks, keys) = setup(3);
        let role = RoleKeys {
            keyids: ks.iter().map(|k| k.key_id()).collect(),
            threshold: 2,
        };
        let mut env = Envelope::new(json!({"a": 1})).unwrap();
        env.add_signature(&ks[0]);
        env.add_signature(&ks[0]);
        assert!(env.verify_role("root", &role, &keys).is_err());
        env.add_signature(&ks[1]);
        assert_eq!(env.verify_role("root", &role, &keys).unwrap(), 2);
        // duplicated signature entries do not count twice
        let dup = env.signatures[0].clone();
        env.signatures.push(dup);
        assert_eq!(env.verify_role("root", &role, &keys).unwrap(), 2);
    }

    #[test]
    fn unknown_fields_are_covered_by_the_signature() {
        let (ks, keys) = setup(1);
        let role = RoleKeys {
            keyids: vec![ks[0].key_id()],
            threshold: 1,
        };
        let env = Envelope::sign_new(json!({"a": 1, "extra": "x"}), &[&ks[0]]).unwrap();
        #[derive(Serialize, Deserialize)]
        struct OnlyA {
            a: u32,
        }
        let bytes = env.to_json();
        let typed = Envelope::<OnlyA>::from_json(&bytes, 1 << 20, "test").unwrap();
        typed.verify_role("r", &role, &keys).unwrap();
        let tampered = String::from_utf8(bytes).unwrap().replace("\"x\"", "\"y\"");
        let typed = Envelope::<OnlyA>::from_json(tampered.as_bytes(), 1 << 20, "test").unwrap();
        assert!(typed.verify_role("r", &role, &keys).is_err());
    }

    #[test]
    fn refuses_text_whose_canonical_form_differs() {
        let nfd = r#"{"signed":{"p":"cafe\u0301"},"signatures":[]}"#;
        assert!(matches!(
            Envelope::<serde_json::Value>::from_json(nfd.as_bytes(), 1000, "t"),
            Err(DecodeError::NotNormalised { .. })
        ));
        let control = br#"{"signed":{"p":"a\nb"},"signatures":[]}"#;
        assert!(matches!(
            Envelope::<serde_json::Value>::from_json(control, 1000, "t"),
            Err(DecodeError::NotNormalised { .. })
        ));
        let upper = br#"{"signed":{"p":1},"signatures":[{"keyid":"AB","sig":"00"}]}"#;
        assert!(matches!(
            Envelope::<serde_json::Value>::from_json(upper, 1000, "t"),
            Err(DecodeError::BadSignatureEncoding { .. })
        ));
    }

    #[test]
    fn refuses_floats_and_oversize() {
        let doc = br#"{"signed":{"a":1.5},"signatures":[]}"#;
        assert!(matches!(
            Envelope::<serde_json::Value>::from_json(doc, 1000, "t"),
            Err(DecodeError::NotCanonical { .. })
        ));
        assert!(matches!(
            Envelope::<serde_json::Value>::from_json(doc, 10, "t"),
            Err(DecodeError::TooLarge { .. })
        ));
    }
}
