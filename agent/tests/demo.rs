//! `waveguard demo`: the README's main command runs end to end and tells the
//! story it promises (good release everywhere, bad release stopped at its canaries).

use waveguard_agent::cli::{run_at, Outcome};
use waveguard_protocol::rollout::HaltReason;
use waveguard_protocol::Timestamp;

#[test]
fn the_demo_rolls_out_a_good_release_and_halts_a_bad_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keep = dir.path().join("demo");
    let now = Timestamp::from_secs(1_900_000_000);
    let outcome = run_at(
        [
            "waveguard",
            "demo",
            "--endpoints",
            "30",
            "--seed",
            "3",
            "--dir",
            keep.to_str().expect("utf-8"),
        ],
        now,
    )
    .expect("demo runs");
    let Outcome::Demo(report) = outcome else {
        panic!("demo returned {outcome:?}");
    };
    assert_eq!(report.good.healthy, 30, "{}", report.good);
    assert!(report.good.halt.is_none());
    let canaries = report.bad.waves[0].installed;
    assert!(canaries > 0, "{}", report.bad);
    assert!(
        report.bad.waves[1..].iter().all(|w| w.installed == 0),
        "{}",
        report.bad
    );
    assert_eq!(report.bad.rolled_back, canaries, "{}", report.bad);
    assert_eq!(
        report.bad.know_halt, 31,
        "every node learns of the halt: {}",
        report.bad
    );
    assert!(matches!(
        report.bad.halt,
        Some(HaltReason::GateFailed { wave: 0, .. } | HaltReason::LocalFailure { .. })
    ));
    // The release directory it published verifies on its own.
    assert!(keep.join("repo/metadata/1.root.json").exists());
    let text = report.to_string();
    assert!(text.contains("waveguard verify"), "{text}");
}
