//! Read-only questions a driver asks on behalf of a local operator, before
//! and after it feeds the engine an input.
//!
//! A directive handed in locally (the agent's HTTP API) deserves an answer
//! — accepted or why not — but the engine's [`Input::Directive`] only
//! reports refusals as events. These methods let the driver check the
//! directive against the node's current trust first and see afterwards what
//! it changed, without taking any decision out of the engine: the engine
//! still verifies and applies the directive itself when it is fed.
//!
//! Health reports carried in from an isolated site (a health bundle) take the
//! same route as gossiped ones; [`Node::health_reports`] and
//! [`Node::holds_report`] let the driver export what the ledger holds and say
//! afterwards which imported reports the engine took.
//!
//! [`Input::Directive`]: super::Input::Directive

use super::{Node, Output, Verdict};
use crate::health::directive::{verify_directive, Directive, DirectiveError, DirectiveState};
use crate::health::report::peek_report;
use crate::id::ReleaseId;
use crate::time::Timestamp;
use crate::wire::{Gossip, SignedHealth, TOPIC_HEALTH};

impl Node {
    /// Verifies a signed directive (size, shape, vendor or operator signature
    /// to threshold, expiry) against this node's current trust at the last
    /// time it was given, exactly as [`Input::Directive`](super::Input::Directive)
    /// will. Changes nothing.
    pub fn check_directive(&self, bytes: &[u8]) -> Result<Directive, DirectiveError> {
        verify_directive(bytes, &self.fleet, self.now)
    }

    /// Like [`Node::check_directive`], but as of `now` (never earlier than the
    /// last time the node was given, the time [`Node::handle_input`] would use
    /// for an input at `now`).
    pub fn check_directive_at(
        &self,
        bytes: &[u8],
        now: Timestamp,
    ) -> Result<Directive, DirectiveError> {
        verify_directive(bytes, &self.fleet, self.now.max(now))
    }

    /// Where `release` stands by directive on this node: `None` if the node
    /// does not follow the release (yet).
    pub fn directive_state(&self, release: &ReleaseId) -> Option<DirectiveState> {
        self.releases.get(release).map(|t| t.directives.state())
    }

    /// The latest report of every node in every wave of `release` that this
    /// node's ledger holds, as received (what a health bundle carries), in
    /// wave then node order; `None` if the release is not followed.
    pub fn health_reports(&self, release: &ReleaseId) -> Option<Vec<SignedHealth>> {
        let t = self.releases.get(release)?;
        let waves: Vec<u32> = t.ledger.waves().collect();
        Some(
            waves
                .into_iter()
                .flat_map(|w| t.ledger.wave(w).map(|(_, r)| r.signed.clone()))
                .collect(),
        )
    }

    /// Whether the ledger holds exactly this message as its node's latest report.
    pub fn holds_report(&self, msg: &SignedHealth) -> bool {
        let Ok(report) = peek_report(msg) else {
            return false;
        };
        self.releases
            .get(&report.release)
            .and_then(|t| t.ledger.get(&report.node))
            .is_some_and(|r| r.signed == *msg)
    }

    /// [`super::Input::Health`]: each report goes the gossip path (`on_health`,
    /// which reports refusals as events) and what it accepts is passed on.
    pub(super) fn on_local_health(&mut self, reports: Vec<SignedHealth>) {
        for sh in reports {
            if self.on_health(None, &sh, false) == Verdict::Accept {
                self.outputs.push_back(Output::Broadcast {
                    topic: TOPIC_HEALTH,
                    data: Gossip::Health(sh).encode(),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::directive::{sign_directive, DirectiveAction};
    use crate::metadata::build::fixtures::{key, target, Vendor, NOW};
    use crate::metadata::trust::TrustedState;
    use crate::node::{Input, NodeConfig};

    /// A node of `v`'s fleet that follows one release; returns the node and the release.
    fn node(v: &Vendor) -> (Node, ReleaseId) {
        let trust = match TrustedState::new(&v.root_json()) {
            Ok(t) => t,
            Err(e) => panic!("fixture root: {e}"),
        };
        let mut n = Node::new(key(77), trust, NodeConfig::default(), NOW);
        let mut repo = v.repository();
        if let Err(e) = repo.add_target("a", target("1.0")) {
            panic!("fixture target: {e}");
        }
        let bundle = match v.sign(&mut repo, NOW) {
            Ok(b) => b,
            Err(e) => panic!("fixture signing: {e}"),
        };
        n.handle_input(NOW, Input::Metadata(bundle));
        let release = match n.trust().releases().first() {
            Some(r) => r.id,
            None => panic!("the node follows no release"),
        };
        (n, release)
    }

    fn directive(action: DirectiveAction, release: ReleaseId, seq: u64) -> Directive {
        Directive {
            action,
            release,
            seq,
            expires: NOW.plus_secs(60),
            reason: "canary crash loop".into(),
        }
    }

    #[test]
    fn vendor_and_operator_directives_check_and_a_stranger_s_does_not() {
        let v = Vendor::new();
        let (n, release) = node(&v);
        let d = directive(DirectiveAction::Halt, release, 5);
        for signer in [&v.targets, &v.operator] {
            assert_eq!(
                n.check_directive(&sign_directive(&[signer], &d)).ok(),
                Some(d.clone())
            );
        }
        let err = n
            .check_directive(&sign_directive(&[&key(99)], &d))
            .unwrap_err();
        assert!(matches!(err, DirectiveError::Signature { .. }), "{err}");
        assert!(n.check_directive(b"{}").is_err());
    }

    #[test]
    fn expiry_is_checked_at_the_later_of_both_times() {
        let v = Vendor::new();
        let (n, release) = node(&v);
        let bytes = sign_directive(&[&v.targets], &directive(DirectiveAction::Halt, release, 5));
        assert!(n.check_directive_at(&bytes, NOW.plus_secs(59)).is_ok());
        assert!(matches!(
            n.check_directive_at(&bytes, NOW.plus_secs(60)),
            Err(DirectiveError::Expired { .. })
        ));
        // An earlier time than the node's own is read as the node's own.
        assert!(n.check_directive_at(&bytes, Timestamp(0)).is_ok());
    }

    #[test]
    fn checking_changes_nothing_and_feeding_shows_in_the_state() {
        let v = Vendor::new();
        let (mut n, release) = node(&v);
        let halt = sign_directive(&[&v.targets], &directive(DirectiveAction::Halt, release, 5));
        assert!(n.check_directive(&halt).is_ok());
        assert_eq!(n.directive_state(&release), Some(DirectiveState::None));
        n.handle_input(NOW, Input::Directive(halt.clone()));
        assert_eq!(
            n.directive_state(&release),
            Some(DirectiveState::Halted { seq: 5 })
        );
        // A replay still checks (it is signed and in force) but changes nothing.
        assert!(n.check_directive(&halt).is_ok());
        let resume = directive(DirectiveAction::Resume, release, 4);
        n.handle_input(
            NOW,
            Input::Directive(sign_directive(&[&v.operator], &resume)),
        );
        assert_eq!(
            n.directive_state(&release),
            Some(DirectiveState::Halted { seq: 5 })
        );
        assert_eq!(n.directive_state(&ReleaseId([3; 32])), None);
    }

    /// Reports of `count` other nodes (keys 10, 11, …) of `v`'s fleet, certified, in wave 0.
    fn site_reports(
        v: &Vendor,
        release: ReleaseId,
        status: crate::health::report::HealthStatus,
        count: u8,
    ) -> Vec<SignedHealth> {
        use crate::health::cert::issue_cert;
        use crate::health::report::{sign_report, HealthReport};
        use crate::wave::WavePin;
        (0..count)
            .map(|i| {
                let k = key(10 + i);
                let cert = issue_cert(
                    &[&v.operator],
                    k.node_id(),
                    NOW.plus_secs(86_400),
                    WavePin::None,
                );
                let r = HealthReport::new(k.node_id(), release, 0, status, 1, NOW);
                sign_report(&k, r, Some(cert))
            })
            .collect()
    }

    fn gate(n: &Node, release: ReleaseId) -> crate::health::gate::GateState {
        let status = n.status();
        match status.releases.iter().find(|r| r.id == release) {
            Some(r) => r.waves[0].gate,
            None => panic!("release not followed"),
        }
    }

    fn broadcasts(n: &mut Node) -> usize {
        let mut count = 0;
        loop {
            match n.poll_output() {
                Output::Timeout(_) => return count,
                Output::Broadcast { topic, data } if topic == TOPIC_HEALTH => {
                    if matches!(Gossip::decode(&data), Ok(Gossip::Health(_))) {
                        count += 1;
                    }
                }
                _ => {}
            }
        }
    }

    #[test]
    fn carried_failing_reports_fail_a_gate_that_was_pending_and_are_passed_on() {
        use crate::health::gate::GateState;
        use crate::health::report::HealthStatus;
        let v = Vendor::new();
        let (mut n, release) = node(&v);
        broadcasts(&mut n);
        assert_eq!(gate(&n, release), GateState::Pending);
        let reports = site_reports(&v, release, HealthStatus::Unhealthy, 3);
        assert!(reports.iter().all(|r| !n.holds_report(r)));
        n.handle_input(NOW.plus_secs(1), Input::Health(reports.clone()));
        assert_eq!(broadcasts(&mut n), 3, "each new report is gossiped on");
        assert!(reports.iter().all(|r| n.holds_report(r)));
        assert_eq!(gate(&n, release), GateState::Failed);
        // The same bundle again is a replay: taken by nobody, passed on by nobody.
        n.handle_input(NOW.plus_secs(2), Input::Health(reports));
        assert_eq!(broadcasts(&mut n), 0);
    }

    #[test]
    fn carried_final_reports_pass_a_gate_that_would_stay_pending() {
        use crate::health::gate::GateState;
        use crate::health::report::HealthStatus;
        let v = Vendor::new();
        let (mut n, release) = node(&v);
        // Past the wave's bake time, the gate needs min_reports healthy nodes.
        let later = NOW.plus_secs(2 * 3600);
        n.handle_input(later, Input::Tick);
        assert_eq!(gate(&n, release), GateState::Pending);
        let reports = site_reports(&v, release, HealthStatus::Baked, 3);
        n.handle_input(later, Input::Health(reports.clone()));
        assert_eq!(gate(&n, release), GateState::Passed);
        let exported = n.health_reports(&release).unwrap_or_default();
        assert_eq!(exported.len(), 3);
        assert!(reports.iter().all(|r| exported.contains(r)));
    }

    #[test]
    fn carried_reports_from_outside_the_fleet_are_refused() {
        use crate::health::gate::GateState;
        use crate::health::report::{sign_report, HealthReport, HealthStatus};
        let v = Vendor::new();
        let (mut n, release) = node(&v);
        broadcasts(&mut n);
        // Signed by their nodes but without a fleet certificate.
        let reports: Vec<SignedHealth> = (0..3u8)
            .map(|i| {
                let k = key(30 + i);
                let r = HealthReport::new(k.node_id(), release, 0, HealthStatus::Unhealthy, 1, NOW);
                sign_report(&k, r, None)
            })
            .collect();
        n.handle_input(NOW, Input::Health(reports.clone()));
        assert_eq!(broadcasts(&mut n), 0);
        assert!(reports.iter().all(|r| !n.holds_report(r)));
        assert_eq!(gate(&n, release), GateState::Pending);
    }
}
