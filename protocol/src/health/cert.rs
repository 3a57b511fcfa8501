//! Fleet certificates: the operator's signed statement that a node belongs to
//! the fleet until a given time, and which wave pin it has.
//!
//! Schema of the `signed` object:
//! `{"_type":"waveguard-fleet-cert","node":hex,"expires":T,"pin":"none"|"canary"|"last"}`,
//! signed by the operator role to its threshold. In a fleet with an operator,
//! a report counts only with a valid certificate, which is what keeps
//! made-up nodes (Sybils) out of the gate; the signed pin is how others can
//! check an operator's override of a node's wave.

use super::{parse_lower_hex32, shorten, sign_doc, FleetKeys, OPERATOR_ROLE};
use crate::id::NodeId;
use crate::keys::SigningKey;
use crate::metadata::signed::{DecodeError, Envelope, SignatureError};
use crate::time::{rfc3339, Timestamp};
use crate::wave::WavePin;
use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use crate::limits::MAX_CERT_BYTES;

/// The `_type` of a fleet certificate.
pub const CERT_TYPE: &str = "waveguard-fleet-cert";

/// A verified fleet certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FleetCert {
    /// The certified node.
    pub node: NodeId,
    /// The certificate is valid strictly before this time.
    pub expires: Timestamp,
    /// The operator's wave override for this node.
    pub pin: WavePin,
}

/// The signed JSON form.
#[derive(Serialize, Deserialize)]
struct CertDoc {
    #[serde(rename = "_type")]
    kind: String,
    node: String,
    #[serde(with = "rfc3339")]
    expires: Timestamp,
    pin: WavePin,
}

/// A fleet certificate was refused.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum CertError {
    /// Too large, not JSON, or not of the certificate's shape.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The document is of another kind.
    #[error("fleet certificate has _type {0:?}, expected \"{CERT_TYPE}\"")]
    WrongType(String),
    /// The node ID is not 64 lowercase hex digits.
    #[error("fleet certificate node {0:?} is not 64 lowercase hex digits")]
    BadNode(String),
    /// The fleet has no operator role, so no certificate can be valid.
    #[error("this fleet has no operator role, so no fleet certificate can be verified")]
    NoOperator,
    /// Not signed by the operator role to its threshold.
    #[error("fleet certificate is not signed by the operator: {0}")]
    Signature(#[source] SignatureError),
    /// Expired.
    #[error("fleet certificate for node {node} expired at {expires}, now is {now}")]
    Expired {
        /// The certified node.
        node: NodeId,
        /// When it expired.
        expires: Timestamp,
        /// The time of the check.
        now: Timestamp,
    },
}

/// Issues a certificate for `node`, signed by each of `keys` (the operator's).
/// `expires` is written in whole seconds.
pub fn issue_cert(keys: &[&SigningKey], node: NodeId, expires: Timestamp, pin: WavePin) -> Vec<u8> {
    let doc = CertDoc {
        kind: CERT_TYPE.into(),
        node: node.to_hex(),
        expires,
        pin,
    };
    sign_doc(doc, keys)
}

/// Verifies a certificate's size, shape, operator signatures and expiry
/// (valid while `now < expires`).
pub fn verify_cert(
    bytes: &[u8],
    fleet: &FleetKeys,
    now: Timestamp,
) -> Result<FleetCert, CertError> {
    let operator = fleet.operator.as_ref().ok_or(CertError::NoOperator)?;
    let env = Envelope::<CertDoc>::from_json(bytes, MAX_CERT_BYTES, "fleet certificate")?;
    let doc = &env.signed;
    if doc.kind != CERT_TYPE {
        return Err(CertError::WrongType(shorten(&doc.kind)));
    }
    let node = parse_lower_hex32(&doc.node)
        .map(NodeId)
        .ok_or_else(|| CertError::BadNode(shorten(&doc.node)))?;
    env.verify_role(OPERATOR_ROLE, operator, &fleet.keys)
        .map_err(CertError::Signature)?;
    if now >= doc.expires {
        return Err(CertError::Expired {
            node,
            expires: doc.expires,
            now,
        });
    }
    Ok(FleetCert {
        node,
        expires: doc.expires,
        pin: doc.pin,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::test_support::{fleet, key, START};

    #[test]
    fn a_threshold_signed_cert_verifies_until_it_expires() {
        let f = fleet(2);
        let node = key(1).node_id();
        let expires = START.plus_secs(100);
        let bytes = issue_cert(
            &[&f.operator[0], &f.operator[1]],
            node,
            expires,
            WavePin::Canary,
        );
        let cert = verify_cert(&bytes, &f.keys, START).unwrap();
        assert_eq!(
            cert,
            FleetCert {
                node,
                expires,
                pin: WavePin::Canary
            }
        );
        assert!(verify_cert(&bytes, &f.keys, Timestamp(expires.0 - 1)).is_ok());
        assert!(matches!(
            verify_cert(&bytes, &f.keys, expires),
            Err(CertError::Expired { .. })
        ));
    }

    #[test]
    fn below_threshold_or_foreign_keys_are_refused() {
        let f = fleet(2);
        let node = key(1).node_id();
        let one = issue_cert(&[&f.operator[0]], node, START.plus_secs(100), WavePin::None);
        assert!(matches!(
            verify_cert(&one, &f.keys, START),
            Err(CertError::Signature(_))
        ));
        // The vendor may sign directives, but it does not certify nodes.
        let vendor = issue_cert(
            &[&f.vendor[0], &f.operator[0]],
            node,
            START.plus_secs(100),
            WavePin::None,
        );
        assert!(matches!(
            verify_cert(&vendor, &f.keys, START),
            Err(CertError::Signature(_))
        ));
    }

    #[test]
    fn open_fleets_have_no_certs() {
        let f = fleet(1);
        let bytes = issue_cert(
            &[&f.operator[0]],
            key(1).node_id(),
            START.plus_secs(100),
            WavePin::None,
        );
        let mut open = f.keys.clone();
        open.operator = None;
        assert!(matches!(
            verify_cert(&bytes, &open, START),
            Err(CertError::NoOperator)
        ));
    }

    #[test]
    fn other_document_types_and_sizes_are_refused() {
        let f = fleet(1);
        let doc = serde_json::json!({"_type": "waveguard-directive", "node": key(1).node_id().to_hex(),
            "expires": "2040-01-01T00:00:00Z", "pin": "none"});
        let bytes = Envelope::sign_new(doc, &[&f.operator[0]])
            .unwrap()
            .to_json();
        assert!(matches!(
            verify_cert(&bytes, &f.keys, START),
            Err(CertError::WrongType(_))
        ));
        let upper = serde_json::json!({"_type": CERT_TYPE, "node": key(1).node_id().to_hex().to_uppercase(),
            "expires": "2040-01-01T00:00:00Z", "pin": "none"});
        let bytes = Envelope::sign_new(upper, &[&f.operator[0]])
            .unwrap()
            .to_json();
        assert!(matches!(
            verify_cert(&bytes, &f.keys, START),
            Err(CertError::BadNode(_))
        ));
        let big = vec![b' '; MAX_CERT_BYTES + 1];
        assert!(matches!(
            verify_cert(&big, &f.keys, START),
            Err(CertError::Decode(DecodeError::TooLarge { .. }))
        ));
    }
}
