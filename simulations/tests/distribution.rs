//! Getting bytes to every endpoint in memory: a peer that serves corrupt
//! chunks is banned at its first bad chunk and nobody stores a corrupt byte;
//! a node killed mid-download resumes without fetching a stored chunk again;
//! fleets with an operator key run on certified health reports.

mod support;

use support::{policy, run, setup, setup_fleet, T0};
use waveguard_protocol::rollout::RolloutState;

#[test]
fn a_lying_peer_is_banned_and_everyone_else_completes() {
    let mut s = setup(5, 12, Some(4));
    let liar = 3;
    s.mesh.make_liar(liar);
    run(&mut s, T0.plus_secs(50));
    let bans = s.mesh.bans().to_vec();
    assert!(
        !bans.is_empty(),
        "someone fetched from the liar and banned it"
    );
    assert!(
        bans.iter().all(|&(_, banned)| banned == liar),
        "only the liar is banned: {bans:?}"
    );
    for i in (1..s.mesh.len()).filter(|&i| i != liar) {
        assert_eq!(
            s.mesh.staged(i, &s.release.id),
            Some(s.release.artifact_blake3),
            "node {i} did not complete"
        );
    }
    // The mesh refuses (as an invariant violation) any StoreChunk whose bytes miss their hash,
    // so reaching here means no corrupt byte was ever stored.
    let mut banners: Vec<usize> = bans.iter().map(|&(by, _)| by).collect();
    banners.sort();
    banners.dedup();
    assert_eq!(
        banners.len(),
        bans.len(),
        "each peer bans the liar once: {bans:?}"
    );
}

#[test]
fn a_node_killed_mid_download_resumes_without_refetching() {
    let mut s = setup(9, 6, None);
    let victim = 4;
    let total = s.release.chunks.len();
    let mut t = T0;
    while s.mesh.chunks_held(victim) < total / 3 {
        t = t.plus_millis(5);
        assert!(
            t < T0.plus_secs(30),
            "node {victim} never started downloading"
        );
        run(&mut s, t);
    }
    let before = s.mesh.chunks_held(victim);
    assert!(
        before < total,
        "the download must still be in progress when the node dies"
    );
    s.mesh.restart(victim).expect("restart");
    run(&mut s, policy().end().plus_secs(120));
    assert_eq!(s.mesh.chunks_held(victim), total);
    let twice: Vec<_> = s
        .mesh
        .chunk_writes(victim)
        .iter()
        .filter(|(_, &n)| n > 1)
        .collect();
    assert!(
        twice.is_empty(),
        "chunks written more than once after the restart: {}",
        twice.len()
    );
    assert_eq!(
        s.mesh.staged(victim, &s.release.id),
        Some(s.release.artifact_blake3)
    );
    assert_eq!(
        s.mesh.node(victim).release_state(&s.release.id),
        Some(&RolloutState::Healthy)
    );
}

#[test]
fn an_operator_fleet_counts_only_certified_reports() {
    // Every endpoint but one is certified; the uncertified one still installs in its wave
    // (it follows the gate on others' evidence) but its own reports count nowhere.
    // Certificates are issued in node order: the seeder (node 0) first, then endpoint 1, left out.
    let calls = std::cell::Cell::new(0);
    let uncertified = std::cell::Cell::new(None);
    let mut s = setup_fleet(13, 12, |node| {
        calls.set(calls.get() + 1);
        if calls.get() == 2 {
            uncertified.set(Some(node));
            return false;
        }
        true
    });
    run(&mut s, policy().end().plus_secs(120));
    let outsider = uncertified.get().expect("one node was left out");
    let observer = (1..s.mesh.len())
        .find(|&i| s.mesh.node(i).id() != outsider)
        .expect("observer");
    let status = s.mesh.node(observer).status();
    let release = status
        .releases
        .iter()
        .find(|r| r.id == s.release.id)
        .expect("release followed");
    let reporting: u64 = release.waves.iter().map(|w| w.reporting).sum();
    assert_eq!(
        reporting, 11,
        "the eleven certified endpoints report; the outsider does not"
    );
    for i in 1..s.mesh.len() {
        assert_eq!(
            s.mesh.node(i).release_state(&s.release.id),
            Some(&RolloutState::Healthy),
            "node {i}"
        );
    }
}
