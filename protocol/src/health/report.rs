//! Health reports: a node's signed statement of its install status for one
//! release, and their verification.
//!
//! Schema of the `signed` object, signed by the node's own key (key ID = the
//! TUF key ID of the node's public key):
//! `{"_type":"waveguard-health","node":hex,"release":hex,"wave":u32,"status":S,"seq":u64,"time":T}`.
//! Every report doubles as a heartbeat: a node re-sends its current status
//! with `seq + 1` every `heartbeat_seconds`, so silence can be told from health.
//!
//! In a fleet with an operator, a report counts only with a valid fleet
//! certificate for its node, and its wave must be the one the certificate's
//! pin gives. In an open fleet a node may pin itself to the first or last
//! wave; an open fleet cannot stop one party from minting many node keys
//! (Sybils) anyway, so self-declared pins give nothing away.

use super::cert::{verify_cert, CertError};
use super::checked::CheckedSignatures;
use super::{parse_lower_hex32, shorten, sign_doc, FleetKeys};
use crate::id::{NodeId, ReleaseId};
use crate::keys::{PublicKey, SigningKey};
use crate::limits::{MAX_CERT_BYTES, MAX_CLOCK_SKEW_MS};
use crate::metadata::signed::{DecodeError, Envelope};
use crate::release::Release;
use crate::time::{rfc3339, Timestamp};
use crate::wave::{reports_health, wave_of, WavePin};
use crate::wire::SignedHealth;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use thiserror::Error;

pub use crate::limits::MAX_REPORT_BYTES;

/// The `_type` of a health report.
pub const REPORT_TYPE: &str = "waveguard-health";

/// A node's install status for a release. Exhaustive: the signed schema
/// allows exactly these, and the gate must classify every one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HealthStatus {
    /// Installed, health not yet known.
    Installed,
    /// Installed and passing its health checks.
    Healthy,
    /// Installed and failing its health checks.
    Unhealthy,
    /// The install itself failed.
    InstallFailed,
    /// The node went back to the previous version.
    RolledBack,
    /// The node's final report: it stayed healthy until its wave's gate passed (on
    /// its evidence) and stops heartbeating. Never counts as silent, so health
    /// traffic ends with the wave instead of lasting the whole rollout.
    Baked,
}

impl HealthStatus {
    /// Whether this status counts against the wave's gate by itself.
    pub fn is_failure(self) -> bool {
        match self {
            HealthStatus::Unhealthy | HealthStatus::InstallFailed | HealthStatus::RolledBack => {
                true
            }
            HealthStatus::Installed | HealthStatus::Healthy | HealthStatus::Baked => false,
        }
    }
}

/// The content of a health report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HealthReport {
    /// The reporting node; the report must be signed by this key.
    pub node: NodeId,
    /// The release reported on.
    pub release: ReleaseId,
    /// The wave the node installed in.
    pub wave: u32,
    /// Its status.
    pub status: HealthStatus,
    /// Increases by at least one with every report the node sends for this release.
    pub seq: u64,
    /// When the report was made; signed in whole seconds.
    pub time: Timestamp,
}

impl HealthReport {
    /// A report with all its fields.
    pub fn new(
        node: NodeId,
        release: ReleaseId,
        wave: u32,
        status: HealthStatus,
        seq: u64,
        time: Timestamp,
    ) -> Self {
        HealthReport {
            node,
            release,
            wave,
            status,
            seq,
            time,
        }
    }
}

/// The signed JSON form.
#[derive(Serialize, Deserialize)]
struct ReportDoc {
    #[serde(rename = "_type")]
    kind: String,
    node: String,
    release: String,
    wave: u32,
    status: HealthStatus,
    seq: u64,
    #[serde(with = "rfc3339")]
    time: Timestamp,
}

/// A report that passed [`verify_report`], with the message it came in.
///
/// Only [`verify_report`] makes one, so a [`super::Ledger`] holds nothing else.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedReport {
    report: HealthReport,
    signed: SignedHealth,
}

impl VerifiedReport {
    /// The parsed report (its time in whole seconds, as signed).
    pub fn report(&self) -> &HealthReport {
        &self.report
    }

    /// The message as received, to pass on as evidence.
    pub fn signed(&self) -> &SignedHealth {
        &self.signed
    }

    /// Both parts.
    pub fn into_parts(self) -> (HealthReport, SignedHealth) {
        (self.report, self.signed)
    }

    /// A report that skipped verification, for unit tests of aggregation only.
    #[cfg(test)]
    pub(crate) fn unchecked(report: HealthReport) -> Self {
        VerifiedReport {
            report,
            signed: SignedHealth {
                report: ByteBuf::from(format!("{report:?}").into_bytes()),
                cert: None,
            },
        }
    }
}

/// A health report was refused.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ReportError {
    /// Too large, not JSON, or not of the report's shape.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The attached certificate is over its size limit (checked in open fleets too,
    /// because the message is stored and relayed whole).
    #[error("fleet certificate attached to a health report is {len} bytes, over the limit of {MAX_CERT_BYTES}")]
    CertTooLarge {
        /// Its size.
        len: usize,
    },
    /// The document is of another kind.
    #[error("health report has _type {0:?}, expected \"{REPORT_TYPE}\"")]
    WrongType(String),
    /// The node or release ID is not 64 lowercase hex digits.
    #[error("health report field {field} {value:?} is not 64 lowercase hex digits")]
    BadId {
        /// Which field.
        field: &'static str,
        /// Its value (shortened).
        value: String,
    },
    /// No valid signature by the key the report claims to come from.
    #[error("health report from node {0} is not signed by that node's key")]
    NotSignedByNode(NodeId),
    /// About another release than the one it was checked against.
    #[error("health report is about release {got}, not release {expected}")]
    WrongRelease {
        /// The release in the report.
        got: ReleaseId,
        /// The release it was checked against.
        expected: ReleaseId,
    },
    /// Dated further ahead of our clock than the allowed skew. Checked after
    /// everything else: a report refused for this alone is otherwise valid.
    #[error("health report from node {node} is dated {time}, more than {MAX_CLOCK_SKEW_MS} ms after now ({now})")]
    FromTheFuture {
        /// The reporting node.
        node: NodeId,
        /// The report's time.
        time: Timestamp,
        /// Our time.
        now: Timestamp,
    },
    /// The fleet has an operator, and the report came without a certificate.
    #[error("node {0} sent no fleet certificate, and in a fleet with an operator uncertified reports do not count")]
    CertRequired(NodeId),
    /// The certificate did not verify.
    #[error("fleet certificate of node {node} was refused: {source}")]
    Cert {
        /// The reporting node.
        node: NodeId,
        /// Why.
        #[source]
        source: CertError,
    },
    /// The certificate is for another node.
    #[error(
        "health report from node {report_node} carries the fleet certificate of node {cert_node}"
    )]
    CertForOtherNode {
        /// The node the report is from.
        report_node: NodeId,
        /// The node the certificate names.
        cert_node: NodeId,
    },
    /// In a fleet with an operator: not the wave the certificate's pin gives.
    #[error("node {node} claims wave {claimed}, but its certificate (pin {pin:?}) puts it in wave {expected}")]
    WrongWave {
        /// The reporting node.
        node: NodeId,
        /// The wave in the report.
        claimed: u32,
        /// The wave it is in.
        expected: u32,
        /// The certificate's pin.
        pin: WavePin,
    },
    /// In an open fleet: neither its computed wave nor the first or last.
    #[error("node {node} claims wave {claimed}, but it is in wave {computed} (or pinned to wave 0 or {last})")]
    WrongOpenWave {
        /// The reporting node.
        node: NodeId,
        /// The wave in the report.
        claimed: u32,
        /// Its computed wave.
        computed: u32,
        /// The last wave.
        last: u32,
    },
    /// The node is not in the release's report sample (`report_ppm`), so an
    /// honest node of that wave never sends one.
    #[error("node {node} is not in the report sample of release {release}, so it does not report")]
    NotInSample {
        /// The reporting node.
        node: NodeId,
        /// The release.
        release: ReleaseId,
    },
}

/// Signs `report` with `key` and attaches `cert`. The report's `node` should
/// be `key`'s node ID: [`verify_report`] refuses anything else. Its time is
/// signed in whole seconds.
pub fn sign_report(key: &SigningKey, report: HealthReport, cert: Option<Vec<u8>>) -> SignedHealth {
    let doc = ReportDoc {
        kind: REPORT_TYPE.into(),
        node: report.node.to_hex(),
        release: report.release.to_hex(),
        wave: report.wave,
        status: report.status,
        seq: report.seq,
        time: report.time,
    };
    SignedHealth {
        report: ByteBuf::from(sign_doc(doc, &[key])),
        cert: cert.map(ByteBuf::from),
    }
}

/// Verifies a health message for `release` at time `now`: sizes, shape, the
/// node's own signature, release, time (at most [`MAX_CLOCK_SKEW_MS`] ahead),
/// the fleet certificate when the fleet has an operator, and the wave claim.
pub fn verify_report(
    msg: &SignedHealth,
    fleet: &FleetKeys,
    release: &Release,
    now: Timestamp,
) -> Result<VerifiedReport, ReportError> {
    verify_report_with(msg, fleet, release, now, None)
}

/// [`verify_report`], taking the signature check's outcome from `checked`
/// when these exact bytes were found signed by the node before (the verdict is
/// the same; see [`CheckedSignatures`]).
pub fn verify_report_with(
    msg: &SignedHealth,
    fleet: &FleetKeys,
    release: &Release,
    now: Timestamp,
    checked: Option<&CheckedSignatures>,
) -> Result<VerifiedReport, ReportError> {
    if let Some(cert) = &msg.cert {
        if cert.len() > MAX_CERT_BYTES {
            return Err(ReportError::CertTooLarge { len: cert.len() });
        }
    }
    let env = Envelope::<ReportDoc>::from_json(&msg.report, MAX_REPORT_BYTES, "health report")?;
    let report = parse(&env.signed)?;
    let node = report.node;
    // Checking with the key the report names ties the keyid to the node too:
    // only a signature listed under that key's own ID is looked at.
    let signed = || env.is_signed_by(&PublicKey::from(node));
    let signed = match checked {
        Some(c) => c.signed_by(&node.0, &msg.report, signed),
        None => signed(),
    };
    if !signed {
        return Err(ReportError::NotSignedByNode(node));
    }
    if report.release != release.id {
        return Err(ReportError::WrongRelease {
            got: report.release,
            expected: release.id,
        });
    }
    let pin = check_wave(&report, msg, fleet, release, now)?;
    if !reports_health(release.policy(), &release.id, &node, pin) {
        return Err(ReportError::NotInSample {
            node,
            release: release.id,
        });
    }
    // Checked last, so that this error means "valid in every other respect": a node
    // whose clock is behind still learns from such reports how far behind it is.
    if report.time > now.plus_millis(MAX_CLOCK_SKEW_MS) {
        return Err(ReportError::FromTheFuture {
            node,
            time: report.time,
            now,
        });
    }
    Ok(VerifiedReport {
        report,
        signed: msg.clone(),
    })
}

/// The release a health message is about, read WITHOUT verifying anything,
/// so a node can find the release (and ledger) to verify it against with
/// [`verify_report`]. Size and shape are checked as in [`verify_report`].
pub fn peek_release(msg: &SignedHealth) -> Result<ReleaseId, ReportError> {
    let env = Envelope::<ReportDoc>::from_json(&msg.report, MAX_REPORT_BYTES, "health report")?;
    parse(&env.signed).map(|r| r.release)
}

/// The report a health message claims, read WITHOUT verifying anything (for
/// lookups such as "does the ledger hold this exact message"); see [`peek_release`].
pub fn peek_report(msg: &SignedHealth) -> Result<HealthReport, ReportError> {
    let env = Envelope::<ReportDoc>::from_json(&msg.report, MAX_REPORT_BYTES, "health report")?;
    parse(&env.signed)
}

fn parse(doc: &ReportDoc) -> Result<HealthReport, ReportError> {
    if doc.kind != REPORT_TYPE {
        return Err(ReportError::WrongType(shorten(&doc.kind)));
    }
    let id = |field: &'static str, value: &str| {
        parse_lower_hex32(value).ok_or_else(|| ReportError::BadId {
            field,
            value: shorten(value),
        })
    };
    Ok(HealthReport {
        node: NodeId(id("node", &doc.node)?),
        release: ReleaseId(id("release", &doc.release)?),
        wave: doc.wave,
        status: doc.status,
        seq: doc.seq,
        time: doc.time,
    })
}

/// Checks certification and the wave claim, and returns the pin it implies
/// (certified, or in an open fleet claimed).
fn check_wave(
    report: &HealthReport,
    msg: &SignedHealth,
    fleet: &FleetKeys,
    release: &Release,
    now: Timestamp,
) -> Result<WavePin, ReportError> {
    let node = report.node;
    let policy = release.policy();
    // Validated policies have at most MAX_WAVES waves, so these fit.
    let wave = |pin| u32::try_from(wave_of(policy, &release.id, &node, pin)).unwrap_or(u32::MAX);
    if fleet.operator.is_none() {
        // An open fleet has no certificates: a node may claim a pin to the
        // first or the last wave, and is taken at its word.
        let (computed, last) = (wave(WavePin::None), wave(WavePin::Last));
        if report.wave == computed {
            return Ok(WavePin::None);
        }
        if report.wave == 0 {
            return Ok(WavePin::Canary);
        }
        if report.wave == last {
            return Ok(WavePin::Last);
        }
        return Err(ReportError::WrongOpenWave {
            node,
            claimed: report.wave,
            computed,
            last,
        });
    }
    let cert_bytes = msg.cert.as_ref().ok_or(ReportError::CertRequired(node))?;
    let cert =
        verify_cert(cert_bytes, fleet, now).map_err(|source| ReportError::Cert { node, source })?;
    if cert.node != node {
        return Err(ReportError::CertForOtherNode {
            report_node: node,
            cert_node: cert.node,
        });
    }
    let expected = wave(cert.pin);
    if report.wave != expected {
        return Err(ReportError::WrongWave {
            node,
            claimed: report.wave,
            expected,
            pin: cert.pin,
        });
    }
    Ok(cert.pin)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::cert::issue_cert;
    use crate::health::test_support::{fleet, key, ReleaseBuilder, TestFleet, START};

    fn report(k: &SigningKey, release: &Release, wave: u32) -> HealthReport {
        HealthReport {
            node: k.node_id(),
            release: release.id,
            wave,
            status: HealthStatus::Healthy,
            seq: 1,
            time: START,
        }
    }

    fn cert(f: &TestFleet, k: &SigningKey, pin: WavePin) -> Vec<u8> {
        issue_cert(&[&f.operator[0]], k.node_id(), START.plus_secs(3600), pin)
    }

    fn computed_wave(release: &Release, k: &SigningKey) -> u32 {
        wave_of(release.policy(), &release.id, &k.node_id(), WavePin::None) as u32
    }

    #[test]
    fn failure_statuses() {
        use HealthStatus::*;
        let failing: Vec<_> = [Installed, Healthy, Unhealthy, InstallFailed, RolledBack]
            .into_iter()
            .filter(|s| s.is_failure())
            .collect();
        assert_eq!(failing, [Unhealthy, InstallFailed, RolledBack]);
    }

    #[test]
    fn status_names_on_the_wire() {
        let names = serde_json::to_string(&[HealthStatus::InstallFailed, HealthStatus::RolledBack])
            .unwrap();
        assert_eq!(names, r#"["install-failed","rolled-back"]"#);
    }

    #[test]
    fn open_fleet_round_trip_and_signed_fields() {
        let (f, r, k) = (fleet(0), ReleaseBuilder::new().build(), key(7));
        let rep = report(&k, &r, computed_wave(&r, &k));
        let msg = sign_report(&k, rep, None);
        let text = String::from_utf8(msg.report.to_vec()).unwrap();
        assert!(text.contains(r#""_type":"waveguard-health""#), "{text}");
        assert!(text.contains(r#""time":"2030-03-17T17:46:40Z""#), "{text}");
        let v = verify_report(&msg, &f.keys, &r, START).unwrap();
        assert_eq!(v.report(), &rep);
        assert_eq!(v.signed(), &msg);
    }

    #[test]
    fn peek_reads_the_release_without_verifying() {
        let (r, k) = (ReleaseBuilder::new().build(), key(7));
        let msg = sign_report(&key(8), report(&k, &r, 0), None);
        assert_eq!(peek_release(&msg).unwrap(), r.id);
        let junk = SignedHealth {
            report: ByteBuf::from(b"{}".to_vec()),
            cert: None,
        };
        assert!(matches!(peek_release(&junk), Err(ReportError::Decode(_))));
    }

    #[test]
    fn a_tampered_report_is_refused() {
        let (f, r, k) = (fleet(0), ReleaseBuilder::new().build(), key(7));
        let msg = sign_report(&k, report(&k, &r, 0), None);
        let text = String::from_utf8(msg.report.to_vec())
            .unwrap()
            .replace("healthy", "unhealthy");
        let bad = SignedHealth {
            report: ByteBuf::from(text.into_bytes()),
            cert: None,
        };
        assert!(matches!(
            verify_report(&bad, &f.keys, &r, START),
            Err(ReportError::NotSignedByNode(_))
        ));
    }

    #[test]
    fn only_the_named_node_may_sign() {
        let (f, r) = (fleet(0), ReleaseBuilder::new().build());
        let msg = sign_report(&key(8), report(&key(7), &r, 0), None);
        assert!(
            matches!(verify_report(&msg, &f.keys, &r, START), Err(ReportError::NotSignedByNode(n)) if n == key(7).node_id())
        );
    }

    #[test]
    fn release_and_future_time_are_checked() {
        let (f, r, k) = (fleet(0), ReleaseBuilder::new().build(), key(7));
        let other = ReleaseBuilder::new().gate(100_000, 3).build();
        let mut rep = report(&k, &other, 0);
        rep.release = crate::id::ReleaseId([9; 32]);
        let msg = sign_report(&k, rep, None);
        assert!(matches!(
            verify_report(&msg, &f.keys, &r, START),
            Err(ReportError::WrongRelease { .. })
        ));

        let mut rep = report(&k, &r, 0);
        rep.time = START.plus_millis(MAX_CLOCK_SKEW_MS + 1000);
        let msg = sign_report(&k, rep, None);
        assert!(matches!(
            verify_report(&msg, &f.keys, &r, START),
            Err(ReportError::FromTheFuture { .. })
        ));
        // Exactly at the allowed skew is still accepted.
        assert!(verify_report(&msg, &f.keys, &r, START.plus_secs(1)).is_ok());
    }

    #[test]
    fn only_the_report_sample_and_pinned_canaries_may_report() {
        use crate::wave::reports_health;
        let f = fleet(0);
        let r = ReleaseBuilder::new().report_ppm(250_000).build();
        let sampled =
            |k: &SigningKey| reports_health(r.policy(), &r.id, &k.node_id(), WavePin::None);
        let keys: Vec<SigningKey> = (0..60).map(key).collect();
        let inside = keys.iter().find(|k| sampled(k)).unwrap();
        // Outside the sample and outside wave 0, so a claim of wave 0 is a pin.
        let outside = keys
            .iter()
            .find(|k| !sampled(k) && computed_wave(&r, k) == 1)
            .unwrap();
        let send = |k: &SigningKey, wave| {
            verify_report(
                &sign_report(k, report(k, &r, wave), None),
                &f.keys,
                &r,
                START,
            )
        };
        assert!(send(inside, computed_wave(&r, inside)).is_ok());
        assert!(matches!(
            send(outside, 1),
            Err(ReportError::NotInSample { node, release }) if node == outside.node_id() && release == r.id
        ));
        // A canary pin (in an open fleet, claimed) always reports.
        assert!(send(outside, 0).is_ok());
        // With a certificate the pin is the operator's word, not the node's.
        let fc = fleet(1);
        let certified = |k: &SigningKey, pin| SignedHealth {
            cert: Some(ByteBuf::from(cert(&fc, k, pin))),
            ..sign_report(
                k,
                report(k, &r, if pin == WavePin::Canary { 0 } else { 1 }),
                None,
            )
        };
        assert!(verify_report(&certified(outside, WavePin::Canary), &fc.keys, &r, START).is_ok());
        assert!(matches!(
            verify_report(&certified(outside, WavePin::None), &fc.keys, &r, START),
            Err(ReportError::NotInSample { .. })
        ));
    }

    #[test]
    fn open_fleet_waves_are_computed_first_or_last() {
        let f = fleet(0);
        let r4 = ReleaseBuilder::new()
            .waves(&[(250_000, 0), (500_000, 0), (750_000, 0), (1_000_000, 0)])
            .build();
        let k = (0..100)
            .map(key)
            .find(|k| computed_wave(&r4, k) == 1)
            .unwrap();
        for w in [0, 1, 3] {
            assert!(verify_report(
                &sign_report(&k, report(&k, &r4, w), None),
                &f.keys,
                &r4,
                START
            )
            .is_ok());
        }
        let msg = sign_report(&k, report(&k, &r4, 2), None);
        assert!(matches!(
            verify_report(&msg, &f.keys, &r4, START),
            Err(ReportError::WrongOpenWave {
                claimed: 2,
                computed: 1,
                last: 3,
                ..
            })
        ));
        let msg = sign_report(&k, report(&k, &r4, 7), None);
        assert!(matches!(
            verify_report(&msg, &f.keys, &r4, START),
            Err(ReportError::WrongOpenWave { .. })
        ));
    }

    #[test]
    fn operator_fleets_need_a_matching_valid_cert() {
        let (f, r) = (fleet(1), ReleaseBuilder::new().build());
        let k = (0..100)
            .map(key)
            .find(|k| computed_wave(&r, k) == 1)
            .unwrap();
        let none = sign_report(&k, report(&k, &r, 1), None);
        assert!(matches!(
            verify_report(&none, &f.keys, &r, START),
            Err(ReportError::CertRequired(_))
        ));

        let ok = sign_report(&k, report(&k, &r, 1), Some(cert(&f, &k, WavePin::None)));
        verify_report(&ok, &f.keys, &r, START).unwrap();
        // The same cert after it expired.
        assert!(matches!(
            verify_report(&ok, &f.keys, &r, START.plus_secs(3600)),
            Err(ReportError::Cert {
                source: CertError::Expired { .. },
                ..
            })
        ));
        // A cert of another node.
        let stolen = sign_report(
            &k,
            report(&k, &r, 1),
            Some(cert(&f, &key(99), WavePin::None)),
        );
        assert!(matches!(
            verify_report(&stolen, &f.keys, &r, START),
            Err(ReportError::CertForOtherNode { .. })
        ));
        // Self-pinning is not allowed when an operator signs pins.
        let canary = sign_report(&k, report(&k, &r, 0), Some(cert(&f, &k, WavePin::None)));
        assert!(matches!(
            verify_report(&canary, &f.keys, &r, START),
            Err(ReportError::WrongWave {
                claimed: 0,
                expected: 1,
                ..
            })
        ));
        let pinned = sign_report(&k, report(&k, &r, 0), Some(cert(&f, &k, WavePin::Canary)));
        verify_report(&pinned, &f.keys, &r, START).unwrap();
    }

    #[test]
    fn oversize_parts_are_refused_before_parsing() {
        let (f, r, k) = (fleet(0), ReleaseBuilder::new().build(), key(7));
        let mut msg = sign_report(&k, report(&k, &r, 0), Some(vec![b'x'; MAX_CERT_BYTES + 1]));
        assert!(matches!(
            verify_report(&msg, &f.keys, &r, START),
            Err(ReportError::CertTooLarge { .. })
        ));
        msg.cert = None;
        msg.report = ByteBuf::from(vec![b' '; MAX_REPORT_BYTES + 1]);
        assert!(matches!(
            verify_report(&msg, &f.keys, &r, START),
            Err(ReportError::Decode(DecodeError::TooLarge { .. }))
        ));
    }
}
