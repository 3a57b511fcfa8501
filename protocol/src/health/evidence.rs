//! Halt evidence: the signed reports a node sends along when it halts a
//! rollout, and the check a receiver makes before believing the halt.
//!
//! A halt is not taken on anyone's word. The sender picks reports from its
//! ledger so that, when possible, they fail the gate *on their own*: its
//! failed and silent nodes first, then just enough other reports to reach
//! `min_reports` while the failure ratio still fails. The receiver verifies
//! every report, merges the new ones into its own ledger (replays are
//! skipped), and accepts the halt only if the gate on the merged ledger fails.

use super::gate::{condition, evaluate, WaveHealth};
use super::ledger::Ledger;
use super::report::{verify_report, ReportError};
use super::FleetKeys;
use crate::id::{NodeId, ReleaseId};
use crate::limits::MAX_EVIDENCE_REPORTS;
use crate::release::{Release, PPM};
use crate::time::Timestamp;
use crate::wire::{HaltEvidence, SignedHealth};
use thiserror::Error;

pub use crate::limits::MAX_EVIDENCE_BYTES;

/// Bytes postcard adds around one report: two length prefixes and the option tag.
const PER_REPORT_OVERHEAD: usize = 8;

/// Halt evidence was not accepted.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum EvidenceError {
    /// The evidence is about another release.
    #[error("halt evidence is about release {got}, not release {expected}")]
    WrongRelease {
        /// The release in the evidence.
        got: ReleaseId,
        /// The release it was checked against.
        expected: ReleaseId,
    },
    /// The ledger given is for another release than the one checked against.
    #[error("the health ledger is for release {ledger}, but the evidence was checked against release {release}")]
    LedgerMismatch {
        /// The ledger's release.
        ledger: ReleaseId,
        /// The release checked against.
        release: ReleaseId,
    },
    /// The release has no such wave.
    #[error("halt evidence names wave {wave}, but the release has {waves} wave(s)")]
    NoSuchWave {
        /// The wave named.
        wave: u32,
        /// How many waves the release has.
        waves: usize,
    },
    /// More reports than any evidence needs.
    #[error("halt evidence carries {count} reports, over the limit of {MAX_EVIDENCE_REPORTS}")]
    TooManyReports {
        /// How many.
        count: usize,
    },
    /// A report did not verify.
    #[error("report {index} of the halt evidence was refused: {source}")]
    Report {
        /// Its position in the evidence.
        index: usize,
        /// Why.
        #[source]
        source: ReportError,
    },
    /// A report is from another wave than the evidence names.
    #[error("report {index} of the halt evidence is from node {node} in wave {wave}, not wave {expected}")]
    WrongWave {
        /// Its position in the evidence.
        index: usize,
        /// The reporting node.
        node: NodeId,
        /// Its wave.
        wave: u32,
        /// The evidence's wave.
        expected: u32,
    },
    /// Evidence and ledger together do not fail the gate.
    #[error("{reason}")]
    NotFailing {
        /// The wave's counts on the merged ledger.
        health: WaveHealth,
        /// A sentence saying why, e.g. "evidence shows 1 failure out of 5 reports ...".
        reason: String,
    },
}

impl EvidenceError {
    /// Whether the evidence is invalid in itself (malformed, over a limit, or
    /// holding a report that does not verify), as opposed to valid reports that
    /// do not fail the gate on this node's ledger. A driver may penalise a peer
    /// for the former; the latter can be honest disagreement (a newer report
    /// here, or clocks apart). A report dated beyond the allowed skew counts as
    /// honest disagreement too; a certificate expiring in transit can still
    /// make honest evidence invalid.
    pub fn is_forgery(&self) -> bool {
        !matches!(
            self,
            EvidenceError::NotFailing { .. }
                | EvidenceError::LedgerMismatch { .. }
                // Dated ahead of our clock and valid otherwise: our clock may be the one
                // that is off (docs/protocol.md 11.10), so the sender is not blamed.
                | EvidenceError::Report {
                    source: ReportError::FromTheFuture { .. },
                    ..
                }
        )
    }
}

/// Picks reports of `wave` from `ledger` that fail the gate on their own at
/// `now`, when the ledger allows it; in node ID order. At most
/// [`MAX_EVIDENCE_REPORTS`] reports and [`MAX_EVIDENCE_BYTES`] bytes.
pub fn build_evidence(
    ledger: &Ledger,
    release: &Release,
    wave: u32,
    now: Timestamp,
) -> HaltEvidence {
    let health = &release.policy().health;
    let (mut bad, mut good) = (Vec::new(), Vec::new());
    for (node, r) in ledger.wave(wave) {
        let list = if condition(r.status, r.time, now, health).is_failure() {
            &mut bad
        } else {
            &mut good
        };
        list.push((*node, &r.signed));
    }
    let mut picked: Vec<(NodeId, SignedHealth)> = Vec::new();
    let mut budget = Budget::default();
    let b = budget.take(&bad, usize::MAX, &mut picked);
    // With b failures, a set of n reports fails iff n >= min_reports and
    // b * PPM >= max_failure_ppm * n, i.e. n <= b * PPM / max_failure_ppm.
    let b64 = u64::try_from(b).unwrap_or(u64::MAX);
    let most = u128::from(b64) * u128::from(PPM) / u128::from(health.max_failure_ppm.max(1));
    let most_good = u64::try_from(most).unwrap_or(u64::MAX).saturating_sub(b64);
    let needed = u64::from(health.min_reports).saturating_sub(b64);
    // Past the ratio, more good reports would only argue against the halt.
    let g = usize::try_from(needed.min(most_good)).unwrap_or(usize::MAX);
    budget.take(&good, g, &mut picked);
    picked.sort_by_key(|a| a.0);
    HaltEvidence {
        release: release.id,
        wave,
        reports: picked.into_iter().map(|(_, s)| s).collect(),
    }
}

/// Counts reports and bytes picked so far.
#[derive(Default)]
struct Budget {
    count: usize,
    bytes: usize,
}

impl Budget {
    /// Moves up to `max` of `from`, in order, into `into` while the limits
    /// allow; skips any single report too large to fit. Returns how many.
    fn take(
        &mut self,
        from: &[(NodeId, &SignedHealth)],
        max: usize,
        into: &mut Vec<(NodeId, SignedHealth)>,
    ) -> usize {
        let mut taken = 0;
        for (node, s) in from {
            if taken >= max || self.count >= MAX_EVIDENCE_REPORTS {
                break;
            }
            let size =
                s.report.len() + s.cert.as_ref().map_or(0, |c| c.len()) + PER_REPORT_OVERHEAD;
            if self.bytes + size > MAX_EVIDENCE_BYTES {
                continue;
            }
            self.bytes += size;
            self.count += 1;
            taken += 1;
            into.push((*node, (*s).clone()));
        }
        taken
    }
}

/// Verifies every report of `ev` against `release` (each must be of
/// `ev.wave`), merges them into `ledger` (replays and other refusals are
/// skipped), and evaluates the gate of `ev.wave` at `now`. `Ok` only if the
/// gate fails; the ledger keeps the new reports either way.
pub fn check_evidence(
    ev: &HaltEvidence,
    ledger: &mut Ledger,
    fleet: &FleetKeys,
    release: &Release,
    now: Timestamp,
) -> Result<WaveHealth, EvidenceError> {
    if ev.release != release.id {
        return Err(EvidenceError::WrongRelease {
            got: ev.release,
            expected: release.id,
        });
    }
    if ledger.release() != release.id {
        return Err(EvidenceError::LedgerMismatch {
            ledger: ledger.release(),
            release: release.id,
        });
    }
    let waves = release.policy().waves.len();
    if usize::try_from(ev.wave).map_or(true, |w| w >= waves) {
        return Err(EvidenceError::NoSuchWave {
            wave: ev.wave,
            waves,
        });
    }
    if ev.reports.len() > MAX_EVIDENCE_REPORTS {
        return Err(EvidenceError::TooManyReports {
            count: ev.reports.len(),
        });
    }
    // Verify all before inserting any, so refused evidence leaves no trace.
    let mut verified = Vec::with_capacity(ev.reports.len());
    for (index, msg) in ev.reports.iter().enumerate() {
        let v = verify_report(msg, fleet, release, now)
            .map_err(|source| EvidenceError::Report { index, source })?;
        let r = v.report();
        if r.wave != ev.wave {
            return Err(EvidenceError::WrongWave {
                index,
                node: r.node,
                wave: r.wave,
                expected: ev.wave,
            });
        }
        verified.push(v);
    }
    for v in verified {
        // A report the ledger already has, or a newer one, changes nothing;
        // nor does one it cannot take (full, or a node that changed wave).
        let _ = ledger.insert(v);
    }
    let health = evaluate(ledger, release, ev.wave, now);
    if health.gate == super::GateState::Failed {
        return Ok(health);
    }
    let policy = &release.policy().health;
    let reason = if health.reporting < u64::from(policy.min_reports) {
        format!(
            "evidence shows {} report(s) for wave {}, fewer than the {} the gate needs before it can fail",
            health.reporting, ev.wave, policy.min_reports
        )
    } else {
        format!(
            "evidence shows {} failure(s) out of {} reports for wave {}, below the {} threshold",
            health.failures(),
            health.reporting,
            ev.wave,
            percent(policy.max_failure_ppm)
        )
    };
    Err(EvidenceError::NotFailing { health, reason })
}

/// Parts per million as a percentage without trailing zeros: 200000 -> "20%", 125000 -> "12.5%".
fn percent(ppm: u32) -> String {
    let (whole, frac) = (ppm / 10_000, ppm % 10_000);
    if frac == 0 {
        return format!("{whole}%");
    }
    let digits = format!("{frac:04}");
    format!("{whole}.{}%", digits.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::report::{sign_report, HealthReport, HealthStatus};
    use crate::health::test_support::{fleet, key, ReleaseBuilder, TestFleet, START};
    use crate::health::GateState;
    use crate::wave::{wave_of, WavePin};
    use serde_bytes::ByteBuf;

    /// An open fleet, a release, and keys of nodes whose computed wave is 0.
    struct Setup {
        f: TestFleet,
        release: Release,
        keys: Vec<crate::keys::SigningKey>,
    }

    fn setup(max_failure_ppm: u32, min_reports: u32, nodes: usize) -> Setup {
        let release = ReleaseBuilder::new()
            .waves(&[(500_000, 3600), (1_000_000, 3600)])
            .gate(max_failure_ppm, min_reports)
            .build();
        let keys = (0..)
            .map(key)
            .filter(|k| wave_of(release.policy(), &release.id, &k.node_id(), WavePin::None) == 0)
            .take(nodes)
            .collect();
        Setup {
            f: fleet(0),
            release,
            keys,
        }
    }

    impl Setup {
        fn msg(&self, i: usize, status: HealthStatus, time: Timestamp) -> SignedHealth {
            let k = &self.keys[i];
            let r = HealthReport {
                node: k.node_id(),
                release: self.release.id,
                wave: 0,
                status,
                seq: 1,
                time,
            };
            sign_report(k, r, None)
        }

        fn ledger(&self, statuses: &[HealthStatus]) -> Ledger {
            let mut l = Ledger::new(self.release.id);
            for (i, s) in statuses.iter().enumerate() {
                let v = verify_report(&self.msg(i, *s, START), &self.f.keys, &self.release, START)
                    .unwrap();
                l.insert(v).unwrap();
            }
            l
        }
    }

    #[test]
    fn percentages() {
        assert_eq!(percent(200_000), "20%");
        assert_eq!(percent(125_000), "12.5%");
        assert_eq!(percent(1), "0.0001%");
        assert_eq!(percent(PPM), "100%");
    }

    #[test]
    fn picks_failures_first_then_just_enough_others_in_node_order() {
        use HealthStatus::*;
        // 2 failures of 8; 20% and min 5: 2 bad + 3 good = 40% fails alone.
        let s = setup(200_000, 5, 8);
        let l = s.ledger(&[
            Healthy, Unhealthy, Healthy, Healthy, RolledBack, Healthy, Healthy, Healthy,
        ]);
        assert_eq!(evaluate(&l, &s.release, 0, START).gate, GateState::Failed);
        let ev = build_evidence(&l, &s.release, 0, START);
        assert_eq!(ev.reports.len(), 5);
        let mut fresh = Ledger::new(s.release.id);
        let h = check_evidence(&ev, &mut fresh, &s.f.keys, &s.release, START).unwrap();
        assert_eq!((h.reporting, h.failed, h.gate), (5, 2, GateState::Failed));
        let nodes: Vec<_> = fresh.wave(0).map(|(n, _)| *n).collect();
        let mut sorted = nodes.clone();
        sorted.sort();
        assert_eq!(nodes, sorted);
        // Deterministic: the same ledger gives the same evidence.
        assert_eq!(build_evidence(&l, &s.release, 0, START), ev);
    }

    #[test]
    fn silent_nodes_count_as_failures_in_evidence() {
        use HealthStatus::*;
        let s = setup(500_000, 3, 4);
        let l = s.ledger(&[Installed, Healthy, Installed, Healthy]);
        let late = START.plus_secs(601);
        let ev = build_evidence(&l, &s.release, 0, late);
        assert_eq!(ev.reports.len(), 4);
        let mut fresh = Ledger::new(s.release.id);
        let h = check_evidence(&ev, &mut fresh, &s.f.keys, &s.release, late).unwrap();
        assert_eq!((h.silent, h.gate), (4, GateState::Failed));
    }

    #[test]
    fn healthy_only_evidence_is_refused_with_a_reason() {
        use HealthStatus::*;
        let s = setup(200_000, 3, 6);
        let l = s.ledger(&[Healthy, Healthy, Unhealthy, Healthy, Healthy, Healthy]);
        let all = HaltEvidence {
            release: s.release.id,
            wave: 0,
            reports: l.wave(0).map(|(_, r)| r.signed.clone()).collect(),
        };
        let mut fresh = Ledger::new(s.release.id);
        let err = check_evidence(&all, &mut fresh, &s.f.keys, &s.release, START).unwrap_err();
        assert_eq!(
            err.to_string(),
            "evidence shows 1 failure(s) out of 6 reports for wave 0, below the 20% threshold"
        );
        assert!(!err.is_forgery());
        // The reports were still merged.
        assert_eq!(fresh.wave_len(0), 6);
        let healthy_reports = l
            .wave(0)
            .filter(|(_, r)| r.status == Healthy)
            .map(|(_, r)| r.signed.clone());
        let healthy = HaltEvidence {
            reports: healthy_reports.take(3).collect(),
            ..all.clone()
        };
        let err = check_evidence(
            &healthy,
            &mut Ledger::new(s.release.id),
            &s.f.keys,
            &s.release,
            START,
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                EvidenceError::NotFailing {
                    health: WaveHealth { healthy: 3, .. },
                    ..
                }
            ),
            "{err}"
        );
        let two = HaltEvidence {
            reports: all.reports[..2].to_vec(),
            ..all
        };
        let err = check_evidence(
            &two,
            &mut Ledger::new(s.release.id),
            &s.f.keys,
            &s.release,
            START,
        )
        .unwrap_err();
        assert!(err.to_string().contains("fewer than the 3"), "{err}");
    }

    #[test]
    fn one_bad_report_refuses_the_whole_evidence_and_inserts_nothing() {
        use HealthStatus::*;
        let s = setup(200_000, 3, 3);
        let mut ev = build_evidence(
            &s.ledger(&[Unhealthy, Unhealthy, Unhealthy]),
            &s.release,
            0,
            START,
        );
        ev.reports[1].report = ByteBuf::from(b"{}".to_vec());
        let mut fresh = Ledger::new(s.release.id);
        let err = check_evidence(&ev, &mut fresh, &s.f.keys, &s.release, START).unwrap_err();
        assert!(
            matches!(err, EvidenceError::Report { index: 1, .. }),
            "{err}"
        );
        assert!(fresh.is_empty());
    }

    #[test]
    fn release_wave_and_count_are_checked() {
        use HealthStatus::*;
        let s = setup(200_000, 3, 3);
        let l = s.ledger(&[Unhealthy, Unhealthy, Unhealthy]);
        let ev = build_evidence(&l, &s.release, 0, START);
        let check = |ev: &HaltEvidence| {
            check_evidence(
                ev,
                &mut Ledger::new(s.release.id),
                &s.f.keys,
                &s.release,
                START,
            )
        };
        let other = HaltEvidence {
            release: ReleaseId([7; 32]),
            ..ev.clone()
        };
        assert!(matches!(
            check(&other),
            Err(EvidenceError::WrongRelease { .. })
        ));
        let far = HaltEvidence {
            wave: 2,
            ..ev.clone()
        };
        assert!(matches!(
            check(&far),
            Err(EvidenceError::NoSuchWave { wave: 2, waves: 2 })
        ));
        let wrong = HaltEvidence {
            wave: 1,
            ..ev.clone()
        };
        assert!(matches!(
            check(&wrong),
            Err(EvidenceError::WrongWave {
                index: 0,
                wave: 0,
                expected: 1,
                ..
            })
        ));
        let many = HaltEvidence {
            reports: vec![ev.reports[0].clone(); MAX_EVIDENCE_REPORTS + 1],
            ..ev.clone()
        };
        assert!(matches!(
            check(&many),
            Err(EvidenceError::TooManyReports { .. })
        ));
        let mut foreign = Ledger::new(ReleaseId([7; 32]));
        assert!(matches!(
            check_evidence(&ev, &mut foreign, &s.f.keys, &s.release, START),
            Err(EvidenceError::LedgerMismatch { .. })
        ));
    }

    #[test]
    fn evidence_is_capped_in_count_and_bytes_and_fits_in_gossip() {
        let big = SignedHealth {
            report: ByteBuf::from(vec![b'x'; 4000]),
            cert: Some(ByteBuf::from(vec![b'y'; 4000])),
        };
        let from: Vec<_> = (0..300u32).map(|i| (key(i).node_id(), &big)).collect();
        let (mut budget, mut out) = (Budget::default(), Vec::new());
        let n = budget.take(&from, usize::MAX, &mut out);
        assert_eq!(n, MAX_EVIDENCE_BYTES / (8000 + PER_REPORT_OVERHEAD));
        assert!(n < MAX_EVIDENCE_REPORTS);
        let ev = HaltEvidence {
            release: ReleaseId([7; 32]),
            wave: u32::MAX,
            reports: out.into_iter().map(|(_, s)| s).collect(),
        };
        let bytes = crate::wire::Gossip::Halt(ev).encode();
        assert!(
            crate::wire::Gossip::decode(&bytes).is_ok(),
            "{} bytes",
            bytes.len()
        );
        let small = SignedHealth {
            report: ByteBuf::from(vec![b'x'; 10]),
            cert: None,
        };
        let from: Vec<_> = (0..300u32).map(|i| (key(i).node_id(), &small)).collect();
        let (mut budget, mut out) = (Budget::default(), Vec::new());
        assert_eq!(
            budget.take(&from, usize::MAX, &mut out),
            MAX_EVIDENCE_REPORTS
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

        /// Whenever the sender's gate fails, its evidence alone fails the gate
        /// of an empty ledger with no more reports than needed; and checked
        /// against the sender's own ledger it agrees with the sender's gate.
        #[test]
        fn evidence_of_a_failed_gate_fails_on_its_own(
            statuses in proptest::collection::vec(0usize..5, 1..24),
            ppm in 1u32..=PPM,
            min_reports in 1u32..8,
        ) {
            use HealthStatus::*;
            let all = [Installed, Healthy, Unhealthy, InstallFailed, RolledBack];
            let statuses: Vec<_> = statuses.into_iter().map(|i| all[i]).collect();
            let s = setup(ppm, min_reports, statuses.len());
            let l = s.ledger(&statuses);
            let sender = evaluate(&l, &s.release, 0, START);
            let ev = build_evidence(&l, &s.release, 0, START);
            proptest::prop_assert!(ev.reports.len() as u64 <= sender.reporting);
            let mut fresh = Ledger::new(s.release.id);
            let got = check_evidence(&ev, &mut fresh, &s.f.keys, &s.release, START);
            if sender.gate == GateState::Failed {
                let h = got.map_err(|e| proptest::test_runner::TestCaseError::fail(e.to_string()))?;
                proptest::prop_assert_eq!(h.failed, sender.failed);
                proptest::prop_assert_eq!(h.reporting, sender.failed.max(u64::from(min_reports)));
            }
            let own = check_evidence(&ev, &mut l.clone(), &s.f.keys, &s.release, START);
            proptest::prop_assert_eq!(own.is_ok(), sender.gate == GateState::Failed);
        }
    }
}
