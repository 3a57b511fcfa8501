//! A fleet with one node whose clock runs two hours fast (docs/protocol.md
//! 11.10): the node learns from its peers' reports that its clock is far off,
//! installs nothing and halts nothing, and the rest of the fleet rolls out as
//! if it were not there.

mod support;

use support::{policy, run, setup, waves_of};
use waveguard_protocol::clock::ClockCheck;
use waveguard_protocol::rollout::RolloutState;

#[test]
fn a_node_two_hours_fast_is_told_so_and_the_fleet_rolls_out_around_it() {
    let mut s = setup(7, 40, None);
    let waves = waves_of(&s);
    // The fast node is an endpoint of the last wave: to its clock, the canaries
    // it hears from reported two hours ago, long past `silence_seconds`.
    let fast = 1 + waves
        .iter()
        .position(|&w| w == 2)
        .expect("seed 7 puts someone in the last wave");
    s.mesh.set_clock_offset(fast, 2 * 3600 * 1000);
    run(&mut s, policy().end().plus_secs(120));

    let status = s.mesh.node(fast).status();
    let offset = status
        .clock_offset_ms
        .expect("enough reporters for an estimate");
    assert!(
        (offset + 2 * 3600 * 1000).abs() < 5_000,
        "estimated offset {offset} ms"
    );
    assert_eq!(status.clock, ClockCheck::FarOff);
    assert!(
        !s.mesh.knows_halt(fast, &s.release.id),
        "the fast node halted a healthy rollout on its own clock"
    );
    assert!(s.mesh.installs().iter().all(|r| r.node != fast));
    for i in (1..s.mesh.len()).filter(|&i| i != fast) {
        assert_eq!(
            s.mesh.node(i).release_state(&s.release.id),
            Some(&RolloutState::Healthy),
            "node {i}"
        );
        assert!(!s.mesh.knows_halt(i, &s.release.id), "node {i} halted");
        assert_ne!(
            s.mesh.node(i).status().clock,
            ClockCheck::FarOff,
            "node {i}"
        );
    }
}
