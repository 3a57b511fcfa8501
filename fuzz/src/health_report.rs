//! The `health_report` target: health messages, fleet certificates and
//! directives, as gossip carries them, verified against a fixed release and
//! fixed fleet keys.
//!
//! The whole input is offered as a fleet certificate and as a directive, at
//! a fixed time. It is also read as a health message: a time-step byte (time
//! runs from the rollout start, see [`crate::script::advance_ms`]), a flag
//! byte (odd: a certificate follows the report), a little-endian u16 report
//! length, the report, and the rest as the certificate. The message is
//! checked with [`peek_release`] and with [`verify_report`] in the fleet
//! with an operator and in the same fleet without one.
//!
//! Checked besides "no panic": whatever is accepted really is what was
//! required (right release, the reporter's own signature, not from the
//! future, a valid certificate for the same node and a wave its pin allows);
//! `peek_release` agrees with `verify_report`; a report good enough for the
//! fleet with an operator is good enough for the open fleet; a directive
//! good in the open fleet is good with an operator; nothing accepted has
//! expired.

use crate::fixtures::{peer_key, start, world, NOW};
use crate::script::{advance_ms, Reader};
use waveguard_protocol::health::cert::{verify_cert, CertError};
use waveguard_protocol::health::directive::{
    sign_directive, verify_directive, Directive, DirectiveAction, MAX_REASON_BYTES,
};
use waveguard_protocol::health::report::{
    peek_release, sign_report, verify_report, HealthReport, HealthStatus, VerifiedReport,
};
use waveguard_protocol::health::FleetKeys;
use waveguard_protocol::keys::PublicKey;
use waveguard_protocol::limits::MAX_CLOCK_SKEW_MS;
use waveguard_protocol::metadata::signed::Envelope;
use waveguard_protocol::release::Release;
use waveguard_protocol::wave::{wave_of, WavePin};
use waveguard_protocol::wire::SignedHealth;
use waveguard_protocol::Timestamp;

/// The fleet with an operator and the same fleet without one.
fn fleets() -> (FleetKeys, FleetKeys) {
    let operated = world(true).fleet.clone();
    let open = FleetKeys {
        operator: None,
        ..operated.clone()
    };
    (operated, open)
}

/// The release every report is checked against.
fn release() -> &'static Release {
    &world(true).release_a
}

/// Decodes the health message part of an input; also returns its time.
pub fn decode_message(data: &[u8]) -> (Timestamp, SignedHealth) {
    let mut r = Reader::new(data);
    let now = start().plus_millis(advance_ms(r.u8()));
    let with_cert = r.u8() & 1 == 1;
    let len = usize::from(r.u16());
    let report = r.bytes(len).to_vec();
    let rest = r.bytes(usize::MAX).to_vec();
    let msg = SignedHealth {
        report: report.into(),
        cert: with_cert.then(|| rest.into()),
    };
    (now, msg)
}

/// Encodes a health message the way [`decode_message`] reads it.
pub fn encode_message(time_code: u8, msg: &SignedHealth) -> Vec<u8> {
    let len = u16::try_from(msg.report.len()).expect("seed reports are small");
    let mut w = crate::script::Writer::new();
    w.u8(time_code)
        .u8(u8::from(msg.cert.is_some()))
        .u16(len)
        .bytes(&msg.report);
    if let Some(c) = &msg.cert {
        w.bytes(c);
    }
    w.finish()
}

/// What one run accepted, for tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// The raw input as a certificate.
    pub cert: bool,
    /// The raw input as a directive (in the open fleet, in the operated fleet).
    pub directive: (bool, bool),
    /// The message as a report (in the open fleet, in the operated fleet).
    pub report: (bool, bool),
}

/// Runs one input and checks every invariant; panics on a violation.
pub fn run(data: &[u8]) -> Summary {
    let (operated, open) = fleets();
    let mut summary = Summary::default();

    // The raw input as the operator's certificate of a node.
    assert!(matches!(
        verify_cert(data, &open, NOW),
        Err(CertError::NoOperator)
    ));
    if let Ok(cert) = verify_cert(data, &operated, NOW) {
        summary.cert = true;
        assert!(NOW < cert.expires, "accepted an expired certificate");
        assert!(
            matches!(
                verify_cert(data, &operated, cert.expires),
                Err(CertError::Expired { .. })
            ),
            "a certificate is still valid when it expires"
        );
    }

    // The raw input as a halt or resume directive.
    let by_open = verify_directive(data, &open, NOW);
    let by_operated = verify_directive(data, &operated, NOW);
    for d in [&by_open, &by_operated].into_iter().flatten() {
        assert!(NOW < d.expires, "accepted an expired directive");
        assert!(d.reason.len() <= MAX_REASON_BYTES);
    }
    if let Ok(d) = &by_open {
        // Only the vendor can sign in an open fleet, and the vendor may sign in any fleet.
        assert_eq!(
            by_operated.as_ref().ok(),
            Some(d),
            "vendor directive refused with an operator"
        );
    }
    summary.directive = (by_open.is_ok(), by_operated.is_ok());

    let (now, msg) = decode_message(data);
    let peeked = peek_release(&msg);
    let with_open = verify_report(&msg, &open, release(), now);
    let with_operator = verify_report(&msg, &operated, release(), now);
    for v in [&with_open, &with_operator].into_iter().flatten() {
        check_accepted(v, &msg, now);
        assert_eq!(peeked.as_ref().ok(), Some(&release().id), "peek disagrees");
    }
    if let Ok(v) = &with_operator {
        check_certified(v, &msg, &operated, now);
        assert!(
            with_open.is_ok(),
            "accepted with an operator but refused in the open fleet: {:?}",
            with_open.err()
        );
    }
    if let Ok(v) = &with_open {
        let r = v.report();
        let policy = release().policy();
        let waves = [WavePin::None, WavePin::Canary, WavePin::Last]
            .map(|p| wave_of(policy, &release().id, &r.node, p) as u32);
        assert!(waves.contains(&r.wave), "open fleet took wave {}", r.wave);
    }
    summary.report = (with_open.is_ok(), with_operator.is_ok());
    summary
}

/// What every accepted report must be.
fn check_accepted(v: &VerifiedReport, msg: &SignedHealth, now: Timestamp) {
    assert_eq!(
        v.signed(),
        msg,
        "the verified message is not the one received"
    );
    let r = v.report();
    assert_eq!(r.release, release().id);
    assert!(
        r.time <= now.plus_millis(MAX_CLOCK_SKEW_MS),
        "accepted a report from the future"
    );
    let env = Envelope::<serde_json::Value>::from_json(&msg.report, usize::MAX, "report")
        .expect("an accepted report is an envelope");
    assert!(
        env.is_signed_by(&PublicKey::from(r.node)),
        "accepted a report its node did not sign"
    );
}

/// What a report accepted in a fleet with an operator must also be.
fn check_certified(v: &VerifiedReport, msg: &SignedHealth, fleet: &FleetKeys, now: Timestamp) {
    let r = v.report();
    let cert = msg.cert.as_ref().expect("accepted without a certificate");
    let cert = verify_cert(cert, fleet, now).expect("accepted with an invalid certificate");
    assert_eq!(cert.node, r.node, "accepted another node's certificate");
    let expected = wave_of(release().policy(), &release().id, &r.node, cert.pin);
    assert_eq!(
        r.wave as usize, expected,
        "accepted a wave the pin does not give"
    );
}

/// Seed inputs: `(name, bytes)`.
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let w = world(true);
    let peer = peer_key(0);
    let node = peer.node_id();
    let rel = release();
    let computed = wave_of(rel.policy(), &rel.id, &node, WavePin::None) as u32;
    let report = |wave, status, cert: Option<&Vec<u8>>| {
        let r = HealthReport::new(node, rel.id, wave, status, 1, start().plus_secs(30));
        sign_report(&peer, r, cert.cloned())
    };
    let canary_cert = w.peer_certs[0]
        .as_ref()
        .expect("the operated fleet certifies peers");
    let directive = |action, key| {
        let d = Directive {
            action,
            release: rel.id,
            seq: 1,
            expires: NOW.plus_secs(3600),
            reason: "canary crash loop".into(),
        };
        sign_directive(&[key], &d)
    };
    let v = crate::fixtures::vendor_keys();
    vec![
        (
            "report_certified",
            encode_message(0, &report(0, HealthStatus::Healthy, Some(canary_cert))),
        ),
        (
            "report_open_computed_wave",
            encode_message(0, &report(computed, HealthStatus::Unhealthy, None)),
        ),
        (
            "report_last_wave_late",
            encode_message(
                crate::script::time_code(4, 3),
                &report(1, HealthStatus::RolledBack, Some(canary_cert)),
            ),
        ),
        ("cert", canary_cert.clone()),
        (
            "directive_vendor",
            directive(DirectiveAction::Halt, &v.targets),
        ),
        (
            "directive_operator",
            directive(DirectiveAction::Resume, &v.operator),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed(name: &str) -> Vec<u8> {
        seeds()
            .into_iter()
            .find(|(n, _)| *n == name)
            .map(|(_, b)| b)
            .expect("seed exists")
    }

    #[test]
    fn valid_seeds_are_accepted_where_they_should_be() {
        assert_eq!(run(&seed("report_certified")).report, (true, true));
        assert_eq!(
            run(&seed("report_open_computed_wave")).report,
            (true, false)
        );
        assert!(run(&seed("cert")).cert);
        assert_eq!(run(&seed("directive_vendor")).directive, (true, true));
        assert_eq!(run(&seed("directive_operator")).directive, (false, true));
    }

    #[test]
    fn a_report_claiming_the_last_wave_needs_a_matching_pin() {
        // The canary certificate pins wave 0, so wave 1 fails with an operator;
        // in the open fleet the last wave is always allowed.
        assert_eq!(run(&seed("report_last_wave_late")).report, (true, false));
    }

    #[test]
    fn messages_round_trip() {
        let msg = SignedHealth {
            report: b"{}".to_vec().into(),
            cert: Some(b"cert".to_vec().into()),
        };
        let (now, back) = decode_message(&encode_message(0, &msg));
        assert_eq!(back, msg);
        assert_eq!(now, start());
    }
}
