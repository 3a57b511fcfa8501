//! Restarts after an install: a node that reboots while baking carries on
//! baking (no second install, its reports still count), and one that rolled a
//! bad release back does not install it again when it comes back.

mod support;

use support::{policy, run, setup, waves_of, T0};
use waveguard_protocol::health::directive::DirectiveAction;
use waveguard_protocol::node::Input;
use waveguard_protocol::rollout::RolloutState;
use waveguard_sim::mesh::BadMode;

#[test]
fn a_canary_restarted_during_its_bake_keeps_baking_without_installing_again() {
    let mut s = setup(7, 20, None);
    let waves = waves_of(&s);
    let p = policy();
    let canary = waves.iter().position(|&w| w == 0).expect("a canary") + 1;
    // Mid-bake of wave 0.
    run(&mut s, p.scheduled_open(0).plus_secs(40));
    assert!(
        matches!(
            s.mesh.node(canary).release_state(&s.release.id),
            Some(RolloutState::Baking { .. })
        ),
        "canary {canary} is {:?}",
        s.mesh.node(canary).release_state(&s.release.id)
    );
    s.mesh.restart(canary).expect("restart");
    run(&mut s, p.scheduled_open(0).plus_secs(41));
    assert!(
        matches!(
            s.mesh.node(canary).release_state(&s.release.id),
            Some(RolloutState::Baking { .. })
        ),
        "after its restart canary {canary} is {:?}",
        s.mesh.node(canary).release_state(&s.release.id)
    );
    run(&mut s, p.end().plus_secs(120));
    let installs = s.mesh.installs();
    assert_eq!(
        installs.iter().filter(|r| r.node == canary).count(),
        1,
        "the restarted canary installed again"
    );
    for i in 1..s.mesh.len() {
        assert_eq!(
            s.mesh.node(i).release_state(&s.release.id),
            Some(&RolloutState::Healthy),
            "node {i}: the restart must not look like a failure"
        );
    }
}

#[test]
fn a_canary_that_rolled_back_does_not_install_again_after_a_restart() {
    let mut s = setup(7, 20, None);
    let waves = waves_of(&s);
    let p = policy();
    s.mesh.mark_bad(s.release.id, BadMode::Probe);
    let canary = waves.iter().position(|&w| w == 0).expect("a canary") + 1;
    run(&mut s, p.scheduled_open(0).plus_secs(60));
    assert!(matches!(
        s.mesh.node(canary).release_state(&s.release.id),
        Some(RolloutState::RolledBack { .. })
    ));
    s.mesh.restart(canary).expect("restart");
    run(&mut s, p.end().plus_secs(120));
    assert!(
        matches!(
            s.mesh.node(canary).release_state(&s.release.id),
            Some(RolloutState::RolledBack { .. })
        ),
        "after its restart canary {canary} is {:?}",
        s.mesh.node(canary).release_state(&s.release.id)
    );
    assert_eq!(
        s.mesh
            .installs()
            .iter()
            .filter(|r| r.node == canary)
            .count(),
        1,
        "the canary installed the bad release again after its restart"
    );
}

#[test]
fn directive_halts_and_resumes_survive_restarts_and_old_ones_stay_refused() {
    let mut s = setup(7, 12, None);
    let p = policy();
    let node = 3;
    let directive = |s: &support::Setup, action, seq| {
        s.vendor
            .directive(s.release.id, action, seq, T0.plus_secs(3600), "test")
    };
    let old_resume = directive(&s, DirectiveAction::Resume, 4);
    let halt = directive(&s, DirectiveAction::Halt, 5);
    s.mesh.inject(0, Input::Directive(halt));
    run(&mut s, T0.plus_secs(30));
    s.mesh.restart(node).expect("restart");
    run(&mut s, T0.plus_secs(40));
    assert!(
        s.mesh.halt_reason(node, &s.release.id).is_some(),
        "the restarted node forgot the halt"
    );
    // An older resume, replayed straight to the restarted node, is refused.
    s.mesh.inject(node, Input::Directive(old_resume));
    run(&mut s, T0.plus_secs(45));
    assert!(
        s.mesh.halt_reason(node, &s.release.id).is_some(),
        "an older resume lifted a newer halt after a restart"
    );
    let resume = directive(&s, DirectiveAction::Resume, 6);
    s.mesh.inject(0, Input::Directive(resume));
    run(&mut s, T0.plus_secs(55));
    s.mesh.restart(node).expect("restart");
    run(&mut s, p.end().plus_secs(120));
    assert_eq!(
        s.mesh.node(node).release_state(&s.release.id),
        Some(&RolloutState::Healthy),
        "the resume must survive the restart too"
    );
}
