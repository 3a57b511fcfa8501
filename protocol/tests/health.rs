//! Integration tests of the health module through its public API: signed
//! reports and certificates, the ledger, the gate, halt evidence and
//! directives, as a node would use them.

use proptest::prelude::*;
use serde_json::json;
use std::collections::BTreeMap;
use waveguard_protocol::health::{
    build_evidence, check_evidence, evaluate, issue_cert, sign_directive, sign_report,
    verify_directive, verify_report, CertError, Directive, DirectiveAction, DirectiveError,
    DirectiveLog, DirectiveLogError, EvidenceError, FleetKeys, GateState, HealthReport,
    HealthStatus, Ledger, LedgerError, ReportError, WaveHealth,
};
use waveguard_protocol::keys::SigningKey;
use waveguard_protocol::limits::MAX_CLOCK_SKEW_MS;
use waveguard_protocol::metadata::signed::RoleKeys;
use waveguard_protocol::release::{Release, TargetFile};
use waveguard_protocol::wave::WavePin;
use waveguard_protocol::wire::SignedHealth;
use waveguard_protocol::Timestamp;

/// Rollout start of every test release.
const START: Timestamp = Timestamp::from_secs(1_900_000_000);
/// Wave 0 bakes for an hour.
const BAKE_SECS: u64 = 3600;
/// An installed node silent for longer than this counts as failed.
const SILENCE_SECS: u64 = 600;

fn key(n: u32) -> SigningKey {
    let mut seed = [0u8; 32];
    seed[..4].copy_from_slice(&n.to_be_bytes());
    seed[31] = 0xa5;
    SigningKey::from_seed(seed)
}

/// A release with two waves (10%, then the rest) and the given gate.
fn release(max_failure_ppm: u32, min_reports: u32) -> Release {
    let custom = json!({"waveguard": {
    "product": "acme-sensor", "version": "7.11.0",
    "chunk_list": {"length": waveguard_protocol::chunk::encoded_list_len(1), "blake3": "ab".repeat(32), "chunks": 1},
    "chunker": {"algorithm": "fastcdc-v2020", "min_size": 262_144, "avg_size": 1_048_576, "max_size": 4_194_304},
    "rollout": {
        "start": START.to_rfc3339(),
        "waves": [
            {"name": "canary", "cumulative_ppm": 100_000, "bake_seconds": BAKE_SECS},
            {"name": "everyone", "cumulative_ppm": 1_000_000, "bake_seconds": BAKE_SECS},
        ],
        "health": {"max_failure_ppm": max_failure_ppm, "min_reports": min_reports,
                   "silence_seconds": SILENCE_SECS, "heartbeat_seconds": 60},
    }}});
    let target = TargetFile {
        length: 4096,
        hashes: BTreeMap::from([("blake3".to_string(), "cd".repeat(32))]),
        custom: Some(custom),
    };
    Release::from_target("acme-sensor-7.11.0.bin", &target).unwrap()
}

/// A fleet: one vendor key, and optionally a 1-of-1 operator role.
struct World {
    release: Release,
    fleet: FleetKeys,
    vendor: SigningKey,
    operator: Option<SigningKey>,
}

impl World {
    fn open() -> Self {
        Self::new(false)
    }

    fn operated() -> Self {
        Self::new(true)
    }

    fn new(with_operator: bool) -> Self {
        let vendor = key(10_000);
        let operator = with_operator.then(|| key(20_000));
        let role = |k: &SigningKey| RoleKeys {
            keyids: vec![k.key_id()],
            threshold: 1,
        };
        let keys = std::iter::once(&vendor)
            .chain(&operator)
            .map(|k| (k.key_id(), k.public()))
            .collect();
        let fleet = FleetKeys {
            keys,
            vendor: role(&vendor),
            operator: operator.as_ref().map(role),
        };
        World {
            release: release(200_000, 3),
            fleet,
            vendor,
            operator,
        }
    }

    fn with_gate(mut self, max_failure_ppm: u32, min_reports: u32) -> Self {
        self.release = release(max_failure_ppm, min_reports);
        self
    }

    /// A canary-pinned certificate for node `n`, valid for a day.
    fn cert(&self, n: u32) -> Option<Vec<u8>> {
        let op = self.operator.as_ref()?;
        Some(issue_cert(
            &[op],
            key(n).node_id(),
            START.plus_secs(86_400),
            WavePin::Canary,
        ))
    }

    /// A report of node `n`, in wave 0 (certified canary, or self-pinned in an open fleet).
    fn report(&self, n: u32) -> ReportBuilder {
        ReportBuilder {
            signer: key(n),
            report: HealthReport {
                node: key(n).node_id(),
                release: self.release.id,
                wave: 0,
                status: HealthStatus::Healthy,
                seq: 1,
                time: START,
            },
            cert: self.cert(n),
        }
    }

    fn verify(
        &self,
        msg: &SignedHealth,
        now: Timestamp,
    ) -> Result<waveguard_protocol::health::VerifiedReport, ReportError> {
        verify_report(msg, &self.fleet, &self.release, now)
    }

    /// A ledger with nodes `0..statuses.len()` reporting at START.
    fn ledger(&self, statuses: &[HealthStatus]) -> Ledger {
        let timed: Vec<_> = statuses.iter().map(|s| (*s, START)).collect();
        self.ledger_at(&timed)
    }

    /// A ledger with nodes `0..reports.len()` reporting each status at its time.
    fn ledger_at(&self, reports: &[(HealthStatus, Timestamp)]) -> Ledger {
        let mut l = Ledger::new(self.release.id);
        for (n, (s, t)) in (0u32..).zip(reports) {
            let msg = self.report(n).status(*s).at(*t).sign();
            l.insert(self.verify(&msg, *t).unwrap()).unwrap();
        }
        l
    }

    fn gate(&self, ledger: &Ledger, now: Timestamp) -> WaveHealth {
        evaluate(ledger, &self.release, 0, now)
    }
}

struct ReportBuilder {
    signer: SigningKey,
    report: HealthReport,
    cert: Option<Vec<u8>>,
}

impl ReportBuilder {
    fn status(mut self, s: HealthStatus) -> Self {
        self.report.status = s;
        self
    }
    fn seq(mut self, seq: u64) -> Self {
        self.report.seq = seq;
        self
    }
    fn at(mut self, t: Timestamp) -> Self {
        self.report.time = t;
        self
    }
    fn wave(mut self, w: u32) -> Self {
        self.report.wave = w;
        self
    }
    fn signed_by(mut self, k: SigningKey) -> Self {
        self.signer = k;
        self
    }
    fn cert(mut self, cert: Option<Vec<u8>>) -> Self {
        self.cert = cert;
        self
    }
    fn sign(self) -> SignedHealth {
        sign_report(&self.signer, self.report, self.cert)
    }
}

use HealthStatus::{Healthy, Installed, Unhealthy};

fn baked() -> Timestamp {
    START.plus_secs(BAKE_SECS)
}

// ---- reports -------------------------------------------------------------

#[test]
fn a_report_with_a_broken_signature_is_refused() {
    let w = World::open();
    let msg = w.report(1).status(Unhealthy).sign();
    let forged = String::from_utf8(msg.report.to_vec())
        .unwrap()
        .replace("unhealthy", "healthy");
    let forged = SignedHealth {
        report: forged.into_bytes().into(),
        cert: None,
    };
    assert!(matches!(
        w.verify(&forged, START),
        Err(ReportError::NotSignedByNode(_))
    ));
}

#[test]
fn a_report_signed_by_another_key_than_its_node_is_refused() {
    let w = World::operated();
    // Node 2 signs a report naming node 1, with node 1's valid cert.
    let msg = w.report(1).signed_by(key(2)).sign();
    let err = w.verify(&msg, START).unwrap_err();
    assert!(
        matches!(err, ReportError::NotSignedByNode(n) if n == key(1).node_id()),
        "{err}"
    );
}

#[test]
fn an_uncertified_node_in_an_operator_fleet_changes_no_gate() {
    let w = World::operated();
    let mut l = w.ledger_at(&[(Healthy, baked()); 4]);
    let before = w.gate(&l, baked());
    assert_eq!(before.gate, GateState::Passed);
    for n in 100..110 {
        let msg = w.report(n).status(Unhealthy).cert(None).sign();
        let err = w.verify(&msg, START).unwrap_err();
        assert!(matches!(err, ReportError::CertRequired(_)), "{err}");
        assert!(err.to_string().contains("no fleet certificate"), "{err}");
    }
    // Not even through evidence.
    let ev = waveguard_protocol::wire::HaltEvidence {
        release: w.release.id,
        wave: 0,
        reports: (100..110)
            .map(|n| w.report(n).status(Unhealthy).cert(None).sign())
            .collect(),
    };
    let err = check_evidence(&ev, &mut l, &w.fleet, &w.release, baked()).unwrap_err();
    assert!(
        matches!(
            err,
            EvidenceError::Report {
                index: 0,
                source: ReportError::CertRequired(_)
            }
        ),
        "{err}"
    );
    assert_eq!(w.gate(&l, baked()), before);
}

#[test]
fn an_expired_certificate_is_refused() {
    let w = World::operated();
    let op = w.operator.as_ref().unwrap();
    let expires = START.plus_secs(60);
    let cert = issue_cert(&[op], key(1).node_id(), expires, WavePin::Canary);
    let msg = w.report(1).cert(Some(cert)).sign();
    assert!(w.verify(&msg, Timestamp(expires.0 - 1)).is_ok());
    let err = w.verify(&msg, expires).unwrap_err();
    assert!(
        matches!(
            err,
            ReportError::Cert {
                source: CertError::Expired { .. },
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn a_certificate_signed_by_a_node_key_is_refused() {
    let w = World::operated();
    let cert = issue_cert(
        &[&key(1)],
        key(1).node_id(),
        START.plus_secs(60),
        WavePin::Canary,
    );
    let msg = w.report(1).cert(Some(cert)).sign();
    assert!(matches!(
        w.verify(&msg, START),
        Err(ReportError::Cert {
            source: CertError::Signature(_),
            ..
        })
    ));
}

#[test]
fn a_replayed_report_changes_nothing() {
    let w = World::open();
    let mut l = Ledger::new(w.release.id);
    let old = w.report(1).status(Healthy).seq(1).sign();
    let new = w
        .report(1)
        .status(Unhealthy)
        .seq(2)
        .at(START.plus_secs(60))
        .sign();
    l.insert(w.verify(&old, START).unwrap()).unwrap();
    l.insert(w.verify(&new, START).unwrap()).unwrap();
    let held = l.get(&key(1).node_id()).cloned();
    let err = l.insert(w.verify(&old, START).unwrap()).unwrap_err();
    assert!(
        matches!(
            err,
            LedgerError::Replayed {
                seq: 1,
                latest: 2,
                ..
            }
        ),
        "{err}"
    );
    assert!(matches!(
        l.insert(w.verify(&new, START).unwrap()),
        Err(LedgerError::Duplicate { .. })
    ));
    // A higher seq that goes back in time is a replay too.
    let back = w.report(1).status(Healthy).seq(3).at(START).sign();
    assert!(matches!(
        l.insert(w.verify(&back, START).unwrap()),
        Err(LedgerError::TimeWentBackwards { .. })
    ));
    assert_eq!(l.get(&key(1).node_id()).cloned(), held);
    assert_eq!(held.map(|r| r.status), Some(Unhealthy));
}

#[test]
fn a_future_dated_report_is_refused() {
    let w = World::open();
    let skew = START.plus_millis(MAX_CLOCK_SKEW_MS);
    assert!(w.verify(&w.report(1).at(skew).sign(), START).is_ok());
    let msg = w.report(1).at(skew.plus_secs(1)).sign();
    let err = w.verify(&msg, START).unwrap_err();
    assert!(matches!(err, ReportError::FromTheFuture { .. }), "{err}");
}

#[test]
fn a_wrong_wave_claim_is_refused() {
    let w = World::operated();
    // The cert pins node 1 to the canary wave; claiming wave 1 is refused.
    let msg = w.report(1).wave(1).sign();
    let err = w.verify(&msg, START).unwrap_err();
    assert!(
        matches!(
            err,
            ReportError::WrongWave {
                claimed: 1,
                expected: 0,
                ..
            }
        ),
        "{err}"
    );
    // In an open fleet, a wave beyond the policy is refused.
    let open = World::open();
    let err = open
        .verify(&open.report(1).wave(5).sign(), START)
        .unwrap_err();
    assert!(
        matches!(err, ReportError::WrongOpenWave { claimed: 5, .. }),
        "{err}"
    );
}

// ---- gate ----------------------------------------------------------------

#[test]
fn exactly_at_the_threshold_fails_and_one_below_passes() {
    let w = World::open(); // 20%, min 3
    let mut statuses = vec![Healthy; 10];
    statuses[3] = Unhealthy;
    statuses[7] = HealthStatus::RolledBack;
    let at = w.gate(&w.ledger(&statuses), START);
    assert_eq!(
        (at.failed, at.reporting, at.gate),
        (2, 10, GateState::Failed)
    );

    statuses[7] = Healthy;
    let timed: Vec<_> = statuses.iter().map(|s| (*s, baked())).collect();
    let l = w.ledger_at(&timed);
    let below = w.gate(&l, baked());
    assert_eq!(
        (below.failed, below.healthy, below.gate),
        (1, 9, GateState::Passed)
    );
    // Before the wave has baked it is only pending.
    assert_eq!(
        w.gate(&l, Timestamp(baked().0 - 1)).gate,
        GateState::Pending
    );
}

#[test]
fn passing_needs_min_reports_healthy_nodes() {
    let w = World::open(); // min_reports 3
    let l = w.ledger_at(&[(Healthy, baked()), (Healthy, baked()), (Installed, baked())]);
    let h = w.gate(&l, baked());
    assert_eq!((h.healthy, h.installed, h.gate), (2, 1, GateState::Pending));
    let l = w.ledger_at(&[(Healthy, baked()), (Healthy, baked()), (Healthy, baked())]);
    assert_eq!(w.gate(&l, baked()).gate, GateState::Passed);
}

#[test]
fn silence_turns_an_installed_node_into_a_failure_exactly_after_silence_seconds() {
    let w = World::open().with_gate(1_000_000, 1);
    let l = w.ledger(&[Installed]);
    let edge = START.plus_secs(SILENCE_SECS);
    let h = w.gate(&l, edge);
    assert_eq!((h.installed, h.silent, h.gate), (1, 0, GateState::Pending));
    let h = w.gate(&l, edge.plus_millis(1));
    assert_eq!((h.installed, h.silent, h.gate), (0, 1, GateState::Failed));
}

#[test]
fn one_node_cannot_fail_a_gate_that_needs_three_reports() {
    let w = World::open(); // min_reports 3
    let l = w.ledger(&[HealthStatus::InstallFailed]);
    let h = w.gate(&l, baked());
    assert_eq!((h.failed, h.gate), (1, GateState::Pending));
    // Neither can its evidence.
    let ev = build_evidence(&l, &w.release, 0, baked());
    let err = check_evidence(
        &ev,
        &mut Ledger::new(w.release.id),
        &w.fleet,
        &w.release,
        baked(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("fewer than the 3"), "{err}");
}

// ---- evidence ------------------------------------------------------------

#[test]
fn evidence_built_on_one_ledger_fails_the_gate_on_an_empty_one() {
    for w in [World::open(), World::operated()] {
        let mut statuses = vec![Healthy; 20];
        statuses[4] = Unhealthy;
        statuses[11] = HealthStatus::InstallFailed;
        statuses[17] = HealthStatus::RolledBack;
        statuses[18] = Unhealthy;
        let l = w.ledger(&statuses);
        assert_eq!(w.gate(&l, START).gate, GateState::Failed);
        let ev = build_evidence(&l, &w.release, 0, START);
        // 4 failures carry 20 reports' worth at 20%; min_reports is already met.
        assert_eq!(ev.reports.len(), 4);
        let mut receiver = Ledger::new(w.release.id);
        let h = check_evidence(&ev, &mut receiver, &w.fleet, &w.release, START).unwrap();
        assert_eq!((h.failed, h.reporting, h.gate), (4, 4, GateState::Failed));
        // Checking it again only skips replays and still fails.
        assert!(check_evidence(&ev, &mut receiver, &w.fleet, &w.release, START).is_ok());
    }
}

#[test]
fn evidence_of_only_healthy_reports_is_refused() {
    let w = World::open();
    let l = w.ledger(&[Healthy; 6]);
    let ev = build_evidence(&l, &w.release, 0, START);
    let mut receiver = Ledger::new(w.release.id);
    let err = check_evidence(&ev, &mut receiver, &w.fleet, &w.release, START).unwrap_err();
    assert!(
        matches!(
            err,
            EvidenceError::NotFailing {
                health: WaveHealth { failed: 0, .. },
                ..
            }
        ),
        "{err}"
    );
    let full = waveguard_protocol::wire::HaltEvidence {
        release: w.release.id,
        wave: 0,
        reports: l.wave(0).map(|(_, r)| r.signed.clone()).collect(),
    };
    let err = check_evidence(&full, &mut receiver, &w.fleet, &w.release, START).unwrap_err();
    assert_eq!(
        err.to_string(),
        "evidence shows 0 failure(s) out of 6 reports for wave 0, below the 20% threshold"
    );
}

#[test]
fn evidence_is_judged_together_with_the_receivers_newer_reports() {
    let w = World::open().with_gate(500_000, 3);
    let l = w.ledger(&[Unhealthy, Unhealthy, Unhealthy]);
    let ev = build_evidence(&l, &w.release, 0, START);
    // The receiver already heard that two of them recovered.
    let mut receiver = Ledger::new(w.release.id);
    for n in 0..2 {
        let msg = w
            .report(n)
            .status(Healthy)
            .seq(2)
            .at(START.plus_secs(30))
            .sign();
        receiver.insert(w.verify(&msg, START).unwrap()).unwrap();
    }
    let err = check_evidence(&ev, &mut receiver, &w.fleet, &w.release, START).unwrap_err();
    assert!(err.to_string().contains("1 failure(s) out of 3"), "{err}");
}

// ---- directives ----------------------------------------------------------

fn halt(w: &World, seq: u64) -> Directive {
    Directive {
        action: DirectiveAction::Halt,
        release: w.release.id,
        seq,
        expires: START.plus_secs(3600),
        reason: "crash loop in canary".into(),
    }
}

#[test]
fn directive_replay_and_expiry() {
    let w = World::operated();
    let mut log = DirectiveLog::new(w.release.id);
    let h2 = sign_directive(&[&w.vendor], &halt(&w, 2));
    let r1 = sign_directive(
        &[w.operator.as_ref().unwrap()],
        &Directive {
            action: DirectiveAction::Resume,
            seq: 1,
            ..halt(&w, 1)
        },
    );
    log.accept(&verify_directive(&h2, &w.fleet, START).unwrap())
        .unwrap();
    assert!(log.is_halted());
    let replay = log.accept(&verify_directive(&r1, &w.fleet, START).unwrap());
    assert!(matches!(
        replay,
        Err(DirectiveLogError::Replayed { seq: 1, latest: 2 })
    ));
    assert!(matches!(
        log.accept(&verify_directive(&h2, &w.fleet, START).unwrap()),
        Err(DirectiveLogError::Replayed { .. })
    ));
    assert!(log.is_halted());
    let expires = halt(&w, 2).expires;
    let err = verify_directive(&h2, &w.fleet, expires).unwrap_err();
    assert!(
        matches!(err, DirectiveError::Expired { seq: 2, .. }),
        "{err}"
    );
    let r3 = Directive {
        action: DirectiveAction::Resume,
        ..halt(&w, 3)
    };
    log.accept(&verify_directive(&sign_directive(&[&w.vendor], &r3), &w.fleet, START).unwrap())
        .unwrap();
    assert!(!log.is_halted());
}

#[test]
fn a_directive_signed_by_a_key_outside_both_roles_is_refused() {
    let w = World::operated();
    for signer in [key(1), key(30_000)] {
        let bytes = sign_directive(&[&signer], &halt(&w, 1));
        let err = verify_directive(&bytes, &w.fleet, START).unwrap_err();
        assert!(matches!(err, DirectiveError::Signature { .. }), "{err}");
    }
    // A key listed in the root but in neither role: still refused.
    let mut fleet = w.fleet.clone();
    let stray = key(40_000);
    fleet.keys.insert(stray.key_id(), stray.public());
    let bytes = sign_directive(&[&stray], &halt(&w, 1));
    assert!(matches!(
        verify_directive(&bytes, &fleet, START),
        Err(DirectiveError::Signature { .. })
    ));
}

// ---- property ------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// On ledgers of signed reports, Failed is exactly the integer rule and
    /// Passed exactly its rule (the two exclude each other by construction:
    /// `GateState` holds one of them).
    #[test]
    fn the_gate_matches_the_integer_rule(
        nodes in proptest::collection::vec((0usize..5, any::<bool>()), 0..12),
        ppm in 1u32..=1_000_000,
        min_reports in 1u32..6,
        has_baked in any::<bool>(),
    ) {
        let all = [Installed, Healthy, Unhealthy, HealthStatus::InstallFailed, HealthStatus::RolledBack];
        let now = if has_baked { baked() } else { Timestamp(baked().0 - 1) };
        // A quiet node last reported just over silence_seconds ago.
        let quiet = Timestamp(now.0 - SILENCE_SECS * 1000 - 1);
        let reports: Vec<_> = nodes.iter().map(|&(s, q)| (all[s], if q { quiet } else { now })).collect();
        let w = World::open().with_gate(ppm, min_reports);
        let h = w.gate(&w.ledger_at(&reports), now);

        let failed = reports.iter().filter(|(s, _)| s.is_failure()).count() as u64;
        let silent = reports.iter().filter(|(s, t)| !s.is_failure() && *t == quiet).count() as u64;
        let healthy = reports.iter().filter(|(s, t)| *s == Healthy && *t == now).count() as u64;
        let reporting = reports.len() as u64;
        prop_assert_eq!((h.reporting, h.failed, h.silent, h.healthy), (reporting, failed, silent, healthy));
        let fail = reporting >= u64::from(min_reports)
            && u128::from(failed + silent) * 1_000_000 >= u128::from(ppm) * u128::from(reporting);
        prop_assert_eq!(h.gate == GateState::Failed, fail);
        let pass = !fail && healthy >= u64::from(min_reports) && has_baked;
        prop_assert_eq!(h.gate == GateState::Passed, pass);
    }
}
