//! Halt and resume directives: a vendor's or operator's signed order about
//! one release, and the per-release log that keeps the latest one.
//!
//! Schema of the `signed` object, signed by the vendor (TUF targets role) or
//! the operator role, each to its own threshold:
//! `{"_type":"waveguard-directive","action":"halt"|"resume","release":hex,"seq":u64,"expires":T,"reason":str}`.
//!
//! Both roles share one `seq` space per release and the highest accepted `seq`
//! wins. `expires` bounds when a directive may be *accepted*, so an old one
//! cannot be replayed to nodes that never saw it; once accepted, a halt stays
//! until a resume with a higher `seq` arrives, because a halt that lapsed by
//! itself would restart a rollout nobody decided to restart.

use super::{parse_lower_hex32, shorten, sign_doc, FleetKeys, OPERATOR_ROLE, VENDOR_ROLE};
use crate::id::ReleaseId;
use crate::keys::SigningKey;
use crate::metadata::signed::{DecodeError, Envelope, SignatureError};
use crate::time::{rfc3339, Timestamp};
use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use crate::limits::{MAX_DIRECTIVE_BYTES, MAX_REASON_BYTES};

/// The `_type` of a directive.
pub const DIRECTIVE_TYPE: &str = "waveguard-directive";

/// What a directive orders. Exhaustive: the signed schema allows exactly these.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DirectiveAction {
    /// Stop the rollout of the release everywhere.
    Halt,
    /// Let the rollout continue.
    Resume,
}

/// A directive's content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Directive {
    /// Halt or resume.
    pub action: DirectiveAction,
    /// The release it is about.
    pub release: ReleaseId,
    /// Orders directives of one release; only a higher one than seen is accepted.
    pub seq: u64,
    /// It may be accepted strictly before this time (signed in whole seconds).
    pub expires: Timestamp,
    /// Why, for people; at most [`MAX_REASON_BYTES`] bytes.
    pub reason: String,
}

/// The signed JSON form.
#[derive(Serialize, Deserialize)]
struct DirectiveDoc {
    #[serde(rename = "_type")]
    kind: String,
    action: DirectiveAction,
    release: String,
    seq: u64,
    #[serde(with = "rfc3339")]
    expires: Timestamp,
    reason: String,
}

/// A directive was refused.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum DirectiveError {
    /// Too large, not JSON, or not of the directive's shape.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The document is of another kind.
    #[error("directive has _type {0:?}, expected \"{DIRECTIVE_TYPE}\"")]
    WrongType(String),
    /// The release ID is not 64 lowercase hex digits.
    #[error("directive release {0:?} is not 64 lowercase hex digits")]
    BadRelease(String),
    /// The reason is too long.
    #[error("directive reason is {len} bytes, over the limit of {MAX_REASON_BYTES}")]
    ReasonTooLong {
        /// Its length.
        len: usize,
    },
    /// Neither the vendor nor the operator role signed it to threshold.
    #[error("directive is signed neither by the vendor ({vendor}) nor by an operator ({})",
        operator.as_ref().map_or_else(|| "this fleet has no operator role".to_string(), ToString::to_string))]
    Signature {
        /// Why the vendor role's check failed.
        vendor: SignatureError,
        /// Why the operator role's check failed, if the fleet has one.
        operator: Option<SignatureError>,
    },
    /// Expired.
    #[error("directive {seq} for release {release} expired at {expires}, now is {now}")]
    Expired {
        /// The release.
        release: ReleaseId,
        /// Its seq.
        seq: u64,
        /// When it expired.
        expires: Timestamp,
        /// The time of the check.
        now: Timestamp,
    },
}

/// Signs `directive` with each of `keys`. Call [`Directive::check`] first:
/// a reason over [`MAX_REASON_BYTES`] gives a document nobody accepts.
pub fn sign_directive(keys: &[&SigningKey], directive: &Directive) -> Vec<u8> {
    let doc = DirectiveDoc {
        kind: DIRECTIVE_TYPE.into(),
        action: directive.action,
        release: directive.release.to_hex(),
        seq: directive.seq,
        expires: directive.expires,
        reason: directive.reason.clone(),
    };
    sign_doc(doc, keys)
}

impl Directive {
    /// Checks the bounds a signer controls (the reason's length).
    pub fn check(&self) -> Result<(), DirectiveError> {
        if self.reason.len() > MAX_REASON_BYTES {
            return Err(DirectiveError::ReasonTooLong {
                len: self.reason.len(),
            });
        }
        Ok(())
    }
}

/// Verifies size, shape, signatures (vendor OR operator role, each to its own
/// threshold; never a mix of the two) and expiry (valid while `now < expires`).
pub fn verify_directive(
    bytes: &[u8],
    fleet: &FleetKeys,
    now: Timestamp,
) -> Result<Directive, DirectiveError> {
    let env = Envelope::<DirectiveDoc>::from_json(bytes, MAX_DIRECTIVE_BYTES, "directive")?;
    let doc = &env.signed;
    if doc.kind != DIRECTIVE_TYPE {
        return Err(DirectiveError::WrongType(shorten(&doc.kind)));
    }
    let release = parse_lower_hex32(&doc.release)
        .map(ReleaseId)
        .ok_or_else(|| DirectiveError::BadRelease(shorten(&doc.release)))?;
    let directive = Directive {
        action: doc.action,
        release,
        seq: doc.seq,
        expires: doc.expires,
        reason: doc.reason.clone(),
    };
    directive.check()?;
    if let Err(vendor) = env.verify_role(VENDOR_ROLE, &fleet.vendor, &fleet.keys) {
        let operator = fleet
            .operator
            .as_ref()
            .map(|role| env.verify_role(OPERATOR_ROLE, role, &fleet.keys));
        match operator {
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                return Err(DirectiveError::Signature {
                    vendor,
                    operator: Some(e),
                })
            }
            None => {
                return Err(DirectiveError::Signature {
                    vendor,
                    operator: None,
                })
            }
        }
    }
    if now >= directive.expires {
        return Err(DirectiveError::Expired {
            release,
            seq: directive.seq,
            expires: directive.expires,
            now,
        });
    }
    Ok(directive)
}

/// Where a release stands by directive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DirectiveState {
    /// No directive accepted yet.
    None,
    /// The latest accepted directive, with this seq, is a halt.
    Halted {
        /// Its seq.
        seq: u64,
    },
    /// The latest accepted directive, with this seq, is a resume.
    Resumed {
        /// Its seq.
        seq: u64,
    },
}

/// A directive was not applied to a [`DirectiveLog`].
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DirectiveLogError {
    /// About another release.
    #[error("directive is about release {got}, this log is for release {expected}")]
    WrongRelease {
        /// The directive's release.
        got: ReleaseId,
        /// The log's release.
        expected: ReleaseId,
    },
    /// Not newer than the latest accepted one (a replay or a duplicate).
    #[error("directive seq {seq} is not above the latest accepted seq {latest}")]
    Replayed {
        /// Its seq.
        seq: u64,
        /// The latest accepted seq.
        latest: u64,
    },
}

/// The latest accepted directive of one release.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirectiveLog {
    release: ReleaseId,
    latest: Option<Directive>,
}

impl DirectiveLog {
    /// An empty log for `release`.
    pub fn new(release: ReleaseId) -> Self {
        DirectiveLog {
            release,
            latest: None,
        }
    }

    /// The release this log is for.
    pub fn release(&self) -> ReleaseId {
        self.release
    }

    /// Accepts a directive from [`verify_directive`] if its seq is above every
    /// one accepted before; returns the new state.
    pub fn accept(&mut self, directive: &Directive) -> Result<DirectiveState, DirectiveLogError> {
        if directive.release != self.release {
            return Err(DirectiveLogError::WrongRelease {
                got: directive.release,
                expected: self.release,
            });
        }
        if let Some(latest) = &self.latest {
            if directive.seq <= latest.seq {
                return Err(DirectiveLogError::Replayed {
                    seq: directive.seq,
                    latest: latest.seq,
                });
            }
        }
        self.latest = Some(directive.clone());
        Ok(self.state())
    }

    /// The latest accepted directive.
    pub fn latest(&self) -> Option<&Directive> {
        self.latest.as_ref()
    }

    /// Where the release stands by directive.
    pub fn state(&self) -> DirectiveState {
        match &self.latest {
            None => DirectiveState::None,
            Some(d) => match d.action {
                DirectiveAction::Halt => DirectiveState::Halted { seq: d.seq },
                DirectiveAction::Resume => DirectiveState::Resumed { seq: d.seq },
            },
        }
    }

    /// Whether the latest accepted directive is a halt.
    pub fn is_halted(&self) -> bool {
        matches!(self.state(), DirectiveState::Halted { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::test_support::{fleet, key, START};

    fn directive(action: DirectiveAction, seq: u64) -> Directive {
        Directive {
            action,
            release: ReleaseId([3; 32]),
            seq,
            expires: START.plus_secs(60),
            reason: "canary crash loop".into(),
        }
    }

    #[test]
    fn vendor_or_operator_may_sign() {
        let f = fleet(2);
        let d = directive(DirectiveAction::Halt, 1);
        let by_vendor = sign_directive(&[&f.vendor[0]], &d);
        assert_eq!(verify_directive(&by_vendor, &f.keys, START).unwrap(), d);
        let by_operator = sign_directive(&[&f.operator[0], &f.operator[1]], &d);
        assert_eq!(verify_directive(&by_operator, &f.keys, START).unwrap(), d);
    }

    #[test]
    fn below_threshold_mixed_or_foreign_signatures_are_refused() {
        let f = fleet(2);
        let d = directive(DirectiveAction::Halt, 1);
        // One key of the 2-of-2 operator role is not enough.
        let half = sign_directive(&[&f.operator[0]], &d);
        let err = verify_directive(&half, &f.keys, START).unwrap_err();
        assert!(
            matches!(
                err,
                DirectiveError::Signature {
                    operator: Some(_),
                    ..
                }
            ),
            "{err}"
        );
        assert!(
            err.to_string().contains("below the threshold of 2"),
            "{err}"
        );
        // A node key is in no role.
        let node = sign_directive(&[&key(5)], &d);
        assert!(matches!(
            verify_directive(&node, &f.keys, START),
            Err(DirectiveError::Signature { .. })
        ));
        let mut open = f.keys.clone();
        open.operator = None;
        let err = verify_directive(&node, &open, START).unwrap_err();
        assert!(
            err.to_string().contains("this fleet has no operator role"),
            "{err}"
        );
    }

    #[test]
    fn expiry_is_strict() {
        let f = fleet(0);
        let d = directive(DirectiveAction::Resume, 1);
        let bytes = sign_directive(&[&f.vendor[0]], &d);
        assert!(verify_directive(&bytes, &f.keys, Timestamp(d.expires.0 - 1)).is_ok());
        assert!(matches!(
            verify_directive(&bytes, &f.keys, d.expires),
            Err(DirectiveError::Expired { .. })
        ));
    }

    #[test]
    fn reason_length_is_bounded() {
        let f = fleet(0);
        let mut d = directive(DirectiveAction::Halt, 1);
        d.reason = "x".repeat(MAX_REASON_BYTES);
        assert!(d.check().is_ok());
        assert!(verify_directive(&sign_directive(&[&f.vendor[0]], &d), &f.keys, START).is_ok());
        d.reason.push('x');
        assert!(matches!(
            d.check(),
            Err(DirectiveError::ReasonTooLong { len: 1025 })
        ));
        assert!(matches!(
            verify_directive(&sign_directive(&[&f.vendor[0]], &d), &f.keys, START),
            Err(DirectiveError::ReasonTooLong { .. })
        ));
    }

    #[test]
    fn other_document_types_are_refused() {
        let f = fleet(0);
        let cert = crate::health::cert::issue_cert(
            &[&f.vendor[0]],
            key(1).node_id(),
            START,
            Default::default(),
        );
        assert!(verify_directive(&cert, &f.keys, START).is_err());
        let doc = serde_json::json!({"_type": "waveguard-health", "action": "halt", "release": "03".repeat(32),
            "seq": 1, "expires": "2040-01-01T00:00:00Z", "reason": ""});
        let bytes = Envelope::sign_new(doc, &[&f.vendor[0]]).unwrap().to_json();
        assert!(matches!(
            verify_directive(&bytes, &f.keys, START),
            Err(DirectiveError::WrongType(_))
        ));
    }

    #[test]
    fn the_log_takes_only_higher_seqs_and_tracks_the_latest_action() {
        let mut log = DirectiveLog::new(ReleaseId([3; 32]));
        assert_eq!(log.state(), DirectiveState::None);
        assert!(!log.is_halted());
        assert_eq!(
            log.accept(&directive(DirectiveAction::Halt, 2)),
            Ok(DirectiveState::Halted { seq: 2 })
        );
        assert!(log.is_halted());
        // A replayed older resume does not undo the halt; neither does the same seq.
        assert!(matches!(
            log.accept(&directive(DirectiveAction::Resume, 1)),
            Err(DirectiveLogError::Replayed { seq: 1, latest: 2 })
        ));
        assert!(log.accept(&directive(DirectiveAction::Resume, 2)).is_err());
        assert!(log.is_halted());
        assert_eq!(
            log.accept(&directive(DirectiveAction::Resume, 3)),
            Ok(DirectiveState::Resumed { seq: 3 })
        );
        assert!(!log.is_halted());
        let mut other = directive(DirectiveAction::Halt, 9);
        other.release = ReleaseId([4; 32]);
        assert!(matches!(
            log.accept(&other),
            Err(DirectiveLogError::WrongRelease { .. })
        ));
        assert_eq!(log.latest().map(|d| d.seq), Some(3));
    }
}
