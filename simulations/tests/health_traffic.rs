//! Health traffic follows the waves in progress: an installed node heartbeats
//! only until its own wave's gate has passed, then sends one final `baked`
//! report and stops; a node that missed a finished wave's reports gets them
//! from a peer (health sync) instead of waiting for gossip that will not come.

mod support;

use support::{policy, run, setup, waves_of};
use waveguard_protocol::rollout::RolloutState;

#[test]
fn installed_nodes_stop_heartbeating_once_their_wave_has_passed() {
    let mut s = setup(7, 40, None);
    let waves = waves_of(&s);
    let p = policy();
    let heartbeat = p.health.heartbeat_seconds;
    run(&mut s, p.end().plus_secs(120));
    let total_sent =
        |s: &support::Setup| -> u64 { (1..s.mesh.len()).map(|i| s.mesh.health_sent(i)).sum() };
    let at_end = total_sent(&s);
    for (k, &wave) in waves.iter().enumerate() {
        let i = k + 1;
        assert_eq!(
            s.mesh.node(i).release_state(&s.release.id),
            Some(&RolloutState::Healthy),
            "node {i}"
        );
        // Installed, one report per heartbeat through the wave's bake, the final one, and
        // slack for the gate check that notices the pass.
        let bake = p.waves[wave].bake_seconds.max(heartbeat);
        let most = 2 + bake / heartbeat + 3;
        let sent = s.mesh.health_sent(i);
        println!("node {i} (wave {wave}): {sent} reports, at most {most}");
        assert!(
            sent <= most,
            "node {i} of wave {wave} sent {sent} health reports; its wave bakes {bake} s at one \
             heartbeat per {heartbeat} s, so at most {most}"
        );
    }
    // Everyone is done: nothing more is sent, however long the fleet runs.
    run(&mut s, p.end().plus_secs(3600));
    assert_eq!(
        total_sent(&s),
        at_end,
        "health reports after the rollout ended"
    );
}

#[test]
fn a_node_that_lost_its_ledger_after_the_canaries_finished_syncs_their_reports() {
    let mut s = setup(7, 20, None);
    let waves = waves_of(&s);
    let p = policy();
    let late = waves
        .iter()
        .position(|&w| w == 2)
        .map(|k| k + 1)
        .expect("seed 7 puts someone in the last wave");
    // Past wave 0's bake: its nodes have sent their final reports and gone quiet.
    run(&mut s, p.scheduled_open(1).plus_secs(60));
    for (k, &w) in waves.iter().enumerate() {
        if w == 0 {
            assert_eq!(
                s.mesh.node(k + 1).release_state(&s.release.id),
                Some(&RolloutState::Healthy),
                "canary {} has not finished",
                k + 1
            );
        }
    }
    let quiet = s.mesh.health_sent(late);
    s.mesh.restart(late).expect("restart");
    run(&mut s, p.end().plus_secs(300));
    assert_eq!(
        s.mesh.node(late).release_state(&s.release.id),
        Some(&RolloutState::Healthy),
        "the restarted node never opened its wave: it could not judge wave 0 without its reports"
    );
    assert!(s.mesh.health_sent(late) > quiet);
}

/// Engines that share report signature checks (the simulator's default) reach
/// the same verdicts as engines that each check every signature: the same
/// trace, installs and halt, also with forgers about whose reports fail the
/// check.
#[test]
fn shared_signature_checks_change_no_verdict() {
    let run_with = |share: bool| {
        let p = policy();
        let mut s = support::setup_sharing(11, 30, None, p.clone(), share);
        s.mesh
            .mark_bad_fraction(s.release.id, waveguard_sim::mesh::BadMode::Probe, 0.5);
        for i in [3, 8, 21] {
            s.mesh
                .make_health_liar(i, waveguard_sim::mesh::HealthLie::Forge);
        }
        run(&mut s, p.end().plus_secs(120));
        (
            s.mesh.trace_hash(),
            s.mesh.installs().to_vec(),
            s.mesh.stats().knowing_halt,
            s.mesh.events(),
        )
    };
    let (shared, alone) = (run_with(true), run_with(false));
    assert!(
        !shared.1.is_empty(),
        "nothing installed: the test would show nothing"
    );
    assert!(
        shared.2 > 0,
        "no halt: the forged and failed reports were not exercised"
    );
    assert_eq!(
        shared, alone,
        "seed 11: sharing signature checks changed the run"
    );
}
