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
//! [`Input::Directive`]: super::Input::Directive

use super::Node;
use crate::health::directive::{verify_directive, Directive, DirectiveError, DirectiveState};
use crate::id::ReleaseId;
use crate::time::Timestamp;

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
}
