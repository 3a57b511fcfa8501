//! Protocol engines wired to each other in memory (no tokio, no sockets):
//! a release spreads from one seeder, waves open in order on a fake clock,
//! and a bad release halts at its first wave however it breaks machines.

mod support;

use support::{check_halted_at_first_wave, policy, run, setup, setup_with, waves_of, T0};
use waveguard_protocol::health::directive::DirectiveAction;
use waveguard_protocol::node::Input;
use waveguard_protocol::rollout::{HaltReason, RolloutState};
use waveguard_protocol::Timestamp;
use waveguard_sim::mesh::BadMode;

#[test]
fn a_good_release_reaches_every_endpoint_wave_by_wave() {
    let mut s = setup(7, 20, None);
    let waves = waves_of(&s);
    assert!(
        waves.contains(&0),
        "seed 7 must put someone in the canary wave: {waves:?}"
    );
    run(&mut s, policy().end().plus_secs(120));

    for i in 1..s.mesh.len() {
        assert_eq!(
            s.mesh.staged(i, &s.release.id),
            Some(s.release.artifact_blake3),
            "node {i} staged a different artifact"
        );
        assert_eq!(
            s.mesh.node(i).release_state(&s.release.id),
            Some(&RolloutState::Healthy),
            "node {i}"
        );
    }
    let installs = s.mesh.installs();
    assert_eq!(installs.len(), 20, "every endpoint installs exactly once");
    for rec in installs {
        assert!(
            rec.at >= policy().scheduled_open(rec.wave),
            "{rec:?} installed before its wave"
        );
    }
    // Waves open in order: every install of wave w+1 comes after every install of wave w.
    for w in 0..2 {
        let last_w = installs.iter().filter(|r| r.wave == w).map(|r| r.at).max();
        let first_next = installs
            .iter()
            .filter(|r| r.wave == w + 1)
            .map(|r| r.at)
            .min();
        if let (Some(a), Some(b)) = (last_w, first_next) {
            assert!(
                a <= b,
                "wave {} opened before wave {w} finished installing",
                w + 1
            );
        }
    }
}

#[test]
fn a_release_whose_probe_fails_halts_at_the_first_wave_everywhere() {
    let mut s = setup(7, 20, Some(4));
    s.mesh.mark_bad(s.release.id, BadMode::Probe);
    run(&mut s, policy().end().plus_secs(120));
    check_halted_at_first_wave(&s);
}

#[test]
fn installers_that_go_silent_halt_the_rollout() {
    let mut s = setup(11, 20, None);
    s.mesh.mark_bad(s.release.id, BadMode::Crash);
    run(&mut s, policy().end().plus_secs(120));

    let installs = s.mesh.installs();
    assert!(!installs.is_empty(), "the canary wave installs");
    assert!(
        installs.iter().all(|r| r.wave == 0),
        "installs outside the first wave: {installs:?}"
    );
    let crashed: Vec<usize> = installs.iter().map(|r| r.node).collect();
    let survivor = (1..s.mesh.len())
        .find(|i| !crashed.contains(i))
        .expect("someone survives");
    match s.mesh.halt_reason(survivor, &s.release.id) {
        Some(HaltReason::GateFailed {
            wave: 0, failures, ..
        }) => assert!(failures >= 1),
        other => panic!("survivor {survivor} should halt on the silent canaries, has {other:?}"),
    }
}

#[test]
fn a_vendor_halt_directive_stops_the_rollout_before_the_next_wave() {
    let mut s = setup(7, 20, None);
    // Half a minute before the second wave is due, the vendor pulls the release.
    let before_second_wave = Timestamp(policy().scheduled_open(1).as_millis() - 30_000);
    run(&mut s, before_second_wave);
    assert!(
        s.mesh.installs().iter().any(|r| r.wave == 0),
        "the canaries installed first"
    );
    let directive = s.vendor.directive(
        s.release.id,
        DirectiveAction::Halt,
        1,
        T0.plus_secs(3600),
        "bad telemetry",
    );
    s.mesh.inject(0, Input::Directive(directive));
    run(&mut s, policy().end().plus_secs(60));
    assert!(s.mesh.installs().iter().all(|r| r.wave == 0));
    for i in 0..s.mesh.len() {
        assert!(
            matches!(
                s.mesh.halt_reason(i, &s.release.id),
                Some(HaltReason::Directive { seq: 1, .. })
            ),
            "node {i}"
        );
    }
}

#[test]
fn the_same_seed_gives_the_same_trace() {
    let trace = |seed| {
        let mut s = setup(seed, 8, Some(4));
        run(&mut s, T0.plus_secs(400));
        (s.mesh.trace_hash(), s.mesh.events())
    };
    let (a, events) = trace(3);
    assert!(events > 100, "the run did something ({events} events)");
    assert_eq!(a, trace(3).0, "seed 3 is not deterministic");
    assert_ne!(a, trace(4).0, "different seeds gave the same trace");
}

#[test]
fn a_release_that_arrives_after_its_schedule_still_waits_for_its_gates() {
    // Every wave's scheduled time has passed when the release arrives (an air-gapped site
    // receiving it late): waves must still open one gate at a time, and a bad one still halts.
    let mut late = policy();
    late.start = Timestamp(T0.as_millis() - 3_600_000);
    let mut s = setup_with(7, 20, None, late.clone());
    s.mesh.mark_bad(s.release.id, BadMode::Probe);
    run(&mut s, T0.plus_secs(600));
    let installs = s.mesh.installs();
    assert!(!installs.is_empty());
    assert!(
        installs.iter().all(|r| r.wave == 0),
        "installs outside the first wave: {installs:?}"
    );
    for i in 0..s.mesh.len() {
        assert!(
            s.mesh.knows_halt(i, &s.release.id),
            "node {i} never learned of the halt"
        );
    }
}

#[test]
fn a_resume_directive_lifts_a_vendor_halt_and_the_rollout_completes() {
    let mut s = setup(7, 12, None);
    let halt = s.vendor.directive(
        s.release.id,
        DirectiveAction::Halt,
        1,
        T0.plus_secs(3600),
        "hold on",
    );
    s.mesh.inject(0, Input::Directive(halt));
    run(&mut s, T0.plus_secs(30));
    for i in 1..s.mesh.len() {
        assert!(
            s.mesh
                .node(i)
                .release_state(&s.release.id)
                .is_some_and(|st| st.is_stopped()),
            "node {i}"
        );
    }
    let resume = s.vendor.directive(
        s.release.id,
        DirectiveAction::Resume,
        2,
        T0.plus_secs(3600),
        "all clear",
    );
    s.mesh.inject(0, Input::Directive(resume));
    run(&mut s, policy().end().plus_secs(120));
    for i in 1..s.mesh.len() {
        assert_eq!(
            s.mesh.node(i).release_state(&s.release.id),
            Some(&RolloutState::Healthy),
            "node {i}"
        );
    }
}

#[test]
fn a_halt_that_arrives_before_its_release_still_holds() {
    let mut s = setup(7, 12, None);
    // Deliver the halt to a node before the release reaches anyone: it must be kept, spread,
    // and applied once the release is trusted.
    let halt = s.vendor.directive(
        s.release.id,
        DirectiveAction::Halt,
        1,
        T0.plus_secs(7200),
        "recalled",
    );
    s.mesh.inject(5, Input::Directive(halt));
    run(&mut s, policy().end().plus_secs(120));
    assert!(s.mesh.installs().is_empty(), "{:?}", s.mesh.installs());
    for i in 1..s.mesh.len() {
        assert!(
            matches!(
                s.mesh.halt_reason(i, &s.release.id),
                Some(HaltReason::Directive { seq: 1, .. })
            ),
            "node {i}"
        );
    }
}
