//! The gate rule: whether a wave has failed, passed, or is still pending.
//!
//! For wave `w` at time `now`, over the ledger's nodes of `w` (latest report each):
//! a node is *failed* if its status is a failure; *silent* if its status is
//! `installed` or `healthy` and `now > time + silence_seconds`; *healthy* if
//! its status is `healthy` and it is not silent, or `baked` (a final report,
//! never silent). `reporting` counts every node
//! of `w`, and `failures = failed + silent`.
//!
//! * **Failed** iff `reporting >= min_reports` and
//!   `failures * 1_000_000 >= max_failure_ppm * reporting`.
//! * **Passed** iff not failed, `healthy >= min_reports`, and
//!   `now >= scheduled_open(w + 1)` (the wave has baked).
//! * **Pending** otherwise.
//!
//! All arithmetic is in integers (u64 counts, u128 products), so every node
//! reaches the same decision from the same reports.

use super::ledger::{Ledger, NodeRecord};
use super::report::HealthStatus;
use crate::release::{HealthPolicy, Release, RolloutPolicy, PPM};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};

/// The outcome of a wave's gate (written `pending`, `passed`, `failed`).
///
/// Deliberately exhaustive: the gate rule has exactly these three outcomes,
/// and a fourth would be a protocol change every match should notice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GateState {
    /// Not decided yet: too few reports, not baked, or not enough healthy nodes.
    Pending,
    /// The wave is healthy and has baked; the next may open.
    Passed,
    /// Too many failures: the rollout halts.
    Failed,
}

/// How one node counts towards its wave's gate at a given time. Exhaustive,
/// like [`GateState`]: these four classes are the gate rule's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NodeCondition {
    /// Installed, no verdict yet, and heard from recently.
    Installed,
    /// Healthy and heard from recently.
    Healthy,
    /// Reported a failure status.
    Failed,
    /// Installed or healthy, but silent for longer than `silence_seconds`.
    Silent,
}

impl NodeCondition {
    /// Whether this counts as a failure (failed or silent).
    pub fn is_failure(self) -> bool {
        matches!(self, NodeCondition::Failed | NodeCondition::Silent)
    }
}

/// A wave's counts and gate at one time (serializable for status pages).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaveHealth {
    /// The wave.
    pub wave: u32,
    /// Nodes of the wave in the ledger.
    pub reporting: u64,
    /// Installed, no verdict yet, not silent.
    pub installed: u64,
    /// Healthy and not silent.
    pub healthy: u64,
    /// Latest status is a failure.
    pub failed: u64,
    /// Installed or healthy but silent too long.
    pub silent: u64,
    /// The decision.
    pub gate: GateState,
}

impl WaveHealth {
    /// Failed plus silent nodes.
    pub fn failures(&self) -> u64 {
        self.failed + self.silent
    }
}

/// How a node with latest `status` at `time` counts at `now`. Silence starts
/// strictly after `silence_seconds`: at exactly that age a node still counts.
pub fn condition(
    status: HealthStatus,
    time: Timestamp,
    now: Timestamp,
    health: &HealthPolicy,
) -> NodeCondition {
    let silent = now > time.plus_secs(health.silence_seconds);
    match status {
        HealthStatus::Unhealthy | HealthStatus::InstallFailed | HealthStatus::RolledBack => {
            NodeCondition::Failed
        }
        HealthStatus::Installed | HealthStatus::Healthy if silent => NodeCondition::Silent,
        HealthStatus::Installed => NodeCondition::Installed,
        // A final report: the node said it is done reporting, so its quiet is not silence.
        HealthStatus::Healthy | HealthStatus::Baked => NodeCondition::Healthy,
    }
}

/// Whether `failures` out of `reporting` fail the gate.
pub fn fails(reporting: u64, failures: u64, health: &HealthPolicy) -> bool {
    reporting >= u64::from(health.min_reports)
        && u128::from(failures) * u128::from(PPM)
            >= u128::from(health.max_failure_ppm) * u128::from(reporting)
}

/// The gate rule on counts; `baked` is `now >= scheduled_open(w + 1)`.
pub fn decide(
    reporting: u64,
    failures: u64,
    healthy: u64,
    health: &HealthPolicy,
    baked: bool,
) -> GateState {
    if fails(reporting, failures, health) {
        GateState::Failed
    } else if healthy >= u64::from(health.min_reports) && baked {
        GateState::Passed
    } else {
        GateState::Pending
    }
}

/// Counts wave `wave` of `ledger` at `now` and applies the gate of `release`'s policy.
pub fn evaluate(ledger: &Ledger, release: &Release, wave: u32, now: Timestamp) -> WaveHealth {
    tally(
        ledger.wave(wave).map(|(_, r)| r),
        release.policy(),
        wave,
        now,
    )
}

/// Counts the given records (all of `wave`) and applies the gate.
fn tally<'a>(
    records: impl Iterator<Item = &'a NodeRecord>,
    policy: &RolloutPolicy,
    wave: u32,
    now: Timestamp,
) -> WaveHealth {
    let mut h = WaveHealth {
        wave,
        reporting: 0,
        installed: 0,
        healthy: 0,
        failed: 0,
        silent: 0,
        gate: GateState::Pending,
    };
    for r in records {
        h.reporting += 1;
        let slot = match condition(r.status, r.time, now, &policy.health) {
            NodeCondition::Installed => &mut h.installed,
            NodeCondition::Healthy => &mut h.healthy,
            NodeCondition::Failed => &mut h.failed,
            NodeCondition::Silent => &mut h.silent,
        };
        *slot += 1;
    }
    let next = usize::try_from(wave).map_or(usize::MAX, |w| w.saturating_add(1));
    let baked = now >= policy.scheduled_open(next);
    h.gate = decide(h.reporting, h.failures(), h.healthy, &policy.health, baked);
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::report::{HealthReport, VerifiedReport};
    use crate::health::test_support::{ReleaseBuilder, START};
    use crate::id::NodeId;
    use proptest::prelude::*;

    fn ledger_of(statuses: &[(HealthStatus, Timestamp)]) -> Ledger {
        let release = ReleaseBuilder::new().build();
        let mut l = Ledger::new(release.id);
        for (i, (status, time)) in statuses.iter().enumerate() {
            let mut node = [0u8; 32];
            node[..8].copy_from_slice(&(i as u64).to_be_bytes());
            let report = HealthReport {
                node: NodeId(node),
                release: release.id,
                wave: 0,
                status: *status,
                seq: 1,
                time: *time,
            };
            l.insert(VerifiedReport::unchecked(report)).unwrap();
        }
        l
    }

    fn health(max_failure_ppm: u32, min_reports: u32) -> HealthPolicy {
        HealthPolicy {
            max_failure_ppm,
            min_reports,
            silence_seconds: 600,
            heartbeat_seconds: 60,
            report_ppm: 1_000_000,
        }
    }

    #[test]
    fn exactly_at_the_threshold_fails_one_below_does_not() {
        let h = health(200_000, 3);
        assert_eq!(decide(5, 1, 4, &h, false), GateState::Failed);
        assert_eq!(decide(6, 1, 5, &h, false), GateState::Pending);
        assert_eq!(decide(6, 1, 5, &h, true), GateState::Passed);
        // min_reports: one failure alone cannot fail a gate that needs three reports.
        assert_eq!(decide(1, 1, 0, &h, true), GateState::Pending);
        assert_eq!(decide(2, 2, 0, &h, true), GateState::Pending);
        assert_eq!(decide(3, 3, 0, &h, true), GateState::Failed);
    }

    #[test]
    fn wave_health_serializes_for_status_pages() {
        let h = WaveHealth {
            wave: 1,
            reporting: 2,
            installed: 0,
            healthy: 1,
            failed: 1,
            silent: 0,
            gate: GateState::Pending,
        };
        let text = serde_json::to_string(&h).unwrap();
        assert!(text.contains(r#""gate":"pending""#), "{text}");
        assert_eq!(serde_json::from_str::<WaveHealth>(&text).unwrap(), h);
    }

    #[test]
    fn passing_needs_enough_healthy_nodes_and_the_bake() {
        let h = health(500_000, 3);
        assert_eq!(decide(3, 0, 2, &h, true), GateState::Pending);
        assert_eq!(decide(3, 0, 3, &h, false), GateState::Pending);
        assert_eq!(decide(3, 0, 3, &h, true), GateState::Passed);
    }

    #[test]
    fn silence_starts_strictly_after_silence_seconds() {
        let h = health(200_000, 3);
        let t = START;
        let edge = t.plus_secs(600);
        assert_eq!(
            condition(HealthStatus::Installed, t, edge, &h),
            NodeCondition::Installed
        );
        assert_eq!(
            condition(HealthStatus::Installed, t, edge.plus_millis(1), &h),
            NodeCondition::Silent
        );
        assert_eq!(
            condition(HealthStatus::Healthy, t, edge.plus_millis(1), &h),
            NodeCondition::Silent
        );
        // A failure stays a failure, however old.
        assert_eq!(
            condition(HealthStatus::RolledBack, t, edge.plus_secs(1), &h),
            NodeCondition::Failed
        );
    }

    #[test]
    fn evaluate_counts_silence_and_bake_time() {
        let release = ReleaseBuilder::new().build();
        let policy = release.policy();
        let baked = policy.scheduled_open(1);
        let l = ledger_of(&[
            (HealthStatus::Healthy, baked),
            (HealthStatus::Healthy, baked),
            (HealthStatus::Healthy, baked),
            (HealthStatus::Healthy, baked),
            (HealthStatus::Installed, baked.plus_secs(60)),
        ]);
        let at = |now| evaluate(&l, &release, 0, now);
        let h = at(baked);
        assert_eq!(
            (h.reporting, h.healthy, h.installed, h.failures()),
            (5, 4, 1, 0)
        );
        assert_eq!(h.gate, GateState::Passed);
        assert_eq!(at(Timestamp(baked.0 - 1)).gate, GateState::Pending);
        // After 600 s the four healthy nodes are silent: 4 of 5 fail.
        let late = at(baked.plus_secs(600).plus_millis(1));
        assert_eq!(
            (late.silent, late.installed, late.gate),
            (4, 1, GateState::Failed)
        );
        // Waves without nodes are pending.
        assert_eq!(at(baked).wave, 0);
        assert_eq!(evaluate(&l, &release, 1, baked).gate, GateState::Pending);
    }

    proptest! {
        #[test]
        fn decide_follows_the_integer_rule(
            reporting in 0u64..10_000,
            failures_seed in any::<u64>(),
            healthy_seed in any::<u64>(),
            ppm in 1u32..=PPM,
            min_reports in 1u32..=256,
            baked in any::<bool>(),
        ) {
            let failures = failures_seed % (reporting + 1);
            let healthy = healthy_seed % (reporting - failures + 1);
            let h = health(ppm, min_reports);
            let gate = decide(reporting, failures, healthy, &h, baked);
            let fail = reporting >= u64::from(min_reports)
                && u128::from(failures) * 1_000_000 >= u128::from(ppm) * u128::from(reporting);
            prop_assert_eq!(gate == GateState::Failed, fail);
            prop_assert_eq!(gate == GateState::Passed, !fail && healthy >= u64::from(min_reports) && baked);
        }

        #[test]
        fn evaluate_partitions_every_node(
            nodes in proptest::collection::vec((0usize..5, 0u64..1_200), 0..40),
            after in 0u64..1_200,
        ) {
            let statuses = [
                HealthStatus::Installed,
                HealthStatus::Healthy,
                HealthStatus::Unhealthy,
                HealthStatus::InstallFailed,
                HealthStatus::RolledBack,
            ];
            let reports: Vec<_> = nodes.iter().map(|&(s, age)| (statuses[s], START.plus_secs(age))).collect();
            let l = ledger_of(&reports);
            let release = ReleaseBuilder::new().build();
        let policy = release.policy();
            let now = START.plus_secs(after + 600);
            let h = evaluate(&l, &release, 0, now);
            prop_assert_eq!(h.reporting, nodes.len() as u64);
            prop_assert_eq!(h.installed + h.healthy + h.failed + h.silent, h.reporting);
            let failed = reports.iter().filter(|(s, _)| s.is_failure()).count() as u64;
            prop_assert_eq!(h.failed, failed);
            let fail = h.reporting >= 3 && h.failures() * 1_000_000 >= 200_000 * h.reporting;
            prop_assert_eq!(h.gate == GateState::Failed, fail);
            let passed = !fail && h.healthy >= 3 && now >= policy.scheduled_open(1);
            prop_assert_eq!(h.gate == GateState::Passed, passed);
        }
    }
}
