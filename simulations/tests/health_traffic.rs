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
