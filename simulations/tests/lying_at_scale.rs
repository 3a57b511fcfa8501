//! Half of the peers are hostile at once: a quarter serve corrupted chunks
//! and a quarter claim to hold every chunk of the release (the availability
//! lie) while holding only what they fetched. Honest endpoints must store no
//! corrupt byte (the mesh checks every stored chunk against its hash and every
//! assembled artifact against the signed one), all complete, and ban each
//! corrupt sender at its first bad chunk.

mod scenario_support;

use scenario_support::*;

/// `n` endpoints on one site with 20 Mbit/s uplinks, a 40 Mbit/s seeder, a
/// 2 MiB release in 128 KiB chunks, degree 8. Heartbeats every 2 minutes:
/// corrupt peers that every neighbour banned never install, so the run lasts
/// its whole duration, and health gossip would take most of its time.
fn swarm(n: usize) -> ScenarioBuilder {
    ScenarioBuilder::new("lying-at-scale", n)
        .release(2.0, 128)
        .seeder(Some(40.0), None)
        .topology(8, 1.0)
        .sites(vec![
            SiteBuilder::new("lan", n).access(Some(20.0), Some(100.0))
        ])
        .health(20.0, 300, 120)
        .duration(150)
}

fn check(lie: &'static str) {
    let n = 200u64;
    let b = swarm(n as usize).corrupt(0.25).have_liars(0.25, lie);
    let seed = b.seed;
    let out = b.run();
    let s = &out.summary;
    let honest: Vec<_> = out
        .nodes
        .iter()
        .filter(|r| !r.corrupt && r.have_lie.is_none())
        .collect();
    assert_eq!(honest.len() as u64, n / 2, "seed {seed}");
    let unfinished: Vec<u64> = honest
        .iter()
        .filter(|r| r.downloaded_s.is_none() || r.installed_s.is_none())
        .map(|r| r.node)
        .collect();
    assert!(
        unfinished.is_empty(),
        "seed {seed}: honest endpoints {unfinished:?} did not download and install"
    );
    assert!(s.invariant_checks > 0, "seed {seed}");
    let served = fault(s, "corrupt_chunks_served");
    let rejected = fault(s, "corrupt_chunks_rejected");
    assert!(served > 0 && rejected > 0, "seed {seed}: {:?}", s.faults);
    assert_eq!(
        fault(s, "corrupt_chunks_rejected_again"),
        0,
        "seed {seed}: a node took a second bad chunk from a peer: {:?}",
        s.faults
    );
    assert_eq!(
        s.faults.get("corrupt_senders_not_banned"),
        Some(&0),
        "seed {seed}: {:?}",
        s.faults
    );
    assert!(
        fault(s, "false_have_claims") > 0,
        "seed {seed}: {:?}",
        s.faults
    );
}

#[test]
fn half_the_swarm_lying_with_not_found_stores_nothing_corrupt() {
    check("not-found");
}

#[test]
fn half_the_swarm_lying_by_stalling_stores_nothing_corrupt() {
    check("stall");
}
