//! `waveguard demo`: the README's main command runs end to end on real agents
//! and tells the story it promises — the good release installed everywhere,
//! the bad one halted at its canary wave, whose agents roll back to the good one.

use waveguard_agent::cli::{run_at, Outcome};
use waveguard_protocol::health::gate::GateState;
use waveguard_protocol::rollout::HaltReason;
use waveguard_protocol::Timestamp;

#[test]
fn the_demo_rolls_out_a_good_release_and_halts_a_bad_one_at_its_canaries() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keep = dir.path().join("demo");
    let started = std::time::Instant::now();
    let outcome = run_at(
        [
            "waveguard",
            "demo",
            "--agents",
            "5",
            "--dir",
            keep.to_str().expect("utf-8"),
        ],
        Timestamp(0),
    )
    .expect("demo runs");
    println!("the demo took {:?}", started.elapsed());
    let Outcome::Demo(report) = outcome else {
        panic!("demo returned {outcome:?}");
    };
    let (good, bad) = (&report.good, &report.bad);
    assert_eq!(report.agents, 5);

    // The good release: every wave had agents, every agent installed it and ended healthy.
    assert!(good.finished, "{good}");
    assert!(good.halt.is_none(), "{good}");
    assert_eq!(good.healthy, 5, "{good}");
    assert!(
        good.waves
            .iter()
            .all(|w| w.agents > 0 && w.installed == w.agents),
        "{good}"
    );
    // Each wave's gate passed before the next opened (the last one's is decided as it ends).
    let last = good.waves.len() - 1;
    assert!(
        good.waves[..last]
            .iter()
            .all(|w| w.gate == GateState::Passed),
        "{good}"
    );

    // The bad release: its canaries installed, failed their probe and rolled back; the gate of
    // the first wave failed and nobody outside it installed; every node knows of the halt.
    assert!(bad.finished, "{bad}");
    // (A canary slower than the first failure may learn of the halt before it installs.)
    let canaries = &bad.waves[0];
    assert!(canaries.installed > 0, "{bad}");
    assert_eq!(canaries.gate, GateState::Failed, "{bad}");
    assert_eq!(bad.installs_after_first_wave(), 0, "{bad}");
    assert_eq!(bad.rolled_back, canaries.installed, "{bad}");
    assert_eq!(bad.know_halt, 6, "the seeder and every agent: {bad}");
    assert!(
        matches!(bad.halt, Some(HaltReason::GateFailed { wave: 0, .. })),
        "the seeder saw wave 0's gate fail: {bad}"
    );
    assert!(
        bad.halt_after.is_some() && bad.all_knew_after.is_some(),
        "{bad}"
    );
    // Afterwards every agent runs the good release: the canaries went back to it.
    assert_eq!(bad.running.get(&good.version).copied(), Some(5), "{bad}");
    // Agents fetched from each other, not only from the seeder.
    assert!(good.peers_sent > 0, "{good}");

    // Everything stayed in --dir: the release directory with both releases, every agent's data.
    assert!(report.kept);
    assert!(keep.join("repo/metadata/1.root.json").exists());
    assert!(keep.join("agent5").is_dir());
    let text = report.to_string();
    assert!(text.contains("HALTED"), "{text}");
    assert!(report.dashboard.starts_with("http://127.0.0.1:"), "{text}");
}

#[test]
fn the_demo_refuses_a_directory_that_is_not_empty() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("precious"), b"keep me").expect("write");
    let err = run_at(
        [
            "waveguard",
            "demo",
            "--dir",
            dir.path().to_str().expect("utf-8"),
        ],
        Timestamp(0),
    )
    .expect_err("a used directory is refused");
    assert!(err.to_string().contains("not empty"), "{err}");
    assert_eq!(
        std::fs::read(dir.path().join("precious")).expect("still there"),
        b"keep me"
    );
}
