//! The report sample (`report_ppm`, spec 11.1): only the sampled share of
//! each wave reports health, the gate counts only them, and that is enough
//! both to finish a good rollout and to stop a bad one at its first wave.

mod support;

use support::{check_halted_at_first_wave, policy, run, setup_with};
use waveguard_protocol::release::RolloutPolicy;
use waveguard_protocol::rollout::RolloutState;
use waveguard_protocol::wave::{reports_health, WavePin};
use waveguard_sim::mesh::BadMode;

/// The three-wave test policy with half of each wave reporting.
fn half_reporting() -> RolloutPolicy {
    let mut p = policy();
    p.health.report_ppm = 500_000;
    p
}

#[test]
fn only_sampled_nodes_report_and_a_good_rollout_completes() {
    let p = half_reporting();
    let mut s = setup_with(5, 40, None, p.clone());
    run(&mut s, p.end().plus_secs(300));
    let (mut reporters, mut quiet) = (0, 0);
    for i in 1..s.mesh.len() {
        let id = s.mesh.node(i).id();
        assert_eq!(
            s.mesh.node(i).release_state(&s.release.id),
            Some(&RolloutState::Healthy),
            "node {i}"
        );
        let sampled = reports_health(&p, &s.release.id, &id, WavePin::None);
        let sent = s.mesh.health_sent(i);
        if sampled {
            reporters += 1;
            assert!(sent > 0, "sampled node {i} sent no report");
        } else {
            quiet += 1;
            assert_eq!(sent, 0, "node {i} outside the sample sent {sent} reports");
        }
    }
    // Seed 5 splits the 40 both ways; a seed that did not would test nothing.
    assert!(
        reporters >= 5 && quiet >= 5,
        "{reporters} reporters, {quiet} quiet"
    );
}

#[test]
fn a_bad_release_halts_at_its_first_wave_on_the_sample_alone() {
    let p = half_reporting();
    let mut s = setup_with(7, 40, None, p.clone());
    s.mesh.mark_bad(s.release.id, BadMode::Probe);
    run(&mut s, p.end().plus_secs(120));
    let installs = check_halted_at_first_wave(&s);
    // Canaries outside the sample said nothing, yet they too rolled back (checked above):
    // on their own failed probe, and on the fleet's halt.
    let silent_canaries = installs
        .iter()
        .filter(|r| !reports_health(&p, &s.release.id, &s.mesh.node(r.node).id(), WavePin::None))
        .count();
    assert!(
        silent_canaries > 0,
        "every canary was sampled: {installs:?}"
    );
}
