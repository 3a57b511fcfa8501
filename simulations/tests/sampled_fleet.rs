//! Sampled fleets (`[scale] engines`, docs/simulator.md): a fleet larger than
//! its engines counts every endpoint, keeps every reporter an engine, halts a
//! bad release at its first wave with the blast radius over the whole fleet,
//! is deterministic, and gives about the timings the same fleet gives when
//! every endpoint is an engine.

mod scenario_support;

use scenario_support::{without_machine, ScenarioBuilder, SiteBuilder};

const FLEET: usize = 800;
const ENGINES: usize = 160;

/// Three waves over a fleet whose report sample (5 %) fits in its engines.
fn three_waves(name: &str) -> ScenarioBuilder {
    ScenarioBuilder::new(name, FLEET)
        .release(1.0, 64)
        .waves(
            20,
            &[
                ("canary", 10.0, 120),
                ("early", 50.0, 120),
                ("all", 100.0, 120),
            ],
        )
        .health(20.0, 60, 10)
        .report_percent(5.0)
}

#[test]
fn a_sampled_fleet_halts_a_bad_release_at_its_first_wave_counting_every_endpoint() {
    let b = three_waves("sampled-bad")
        .engines(ENGINES)
        .bad(1.0, "probe");
    let seed = b.seed;
    let out = b.run();
    let s = &out.summary;
    assert_eq!(s.endpoints, FLEET as u64, "seed {seed}");
    assert_eq!(s.engines, Some(ENGINES as u64), "seed {seed}");
    assert_eq!(out.nodes.len(), ENGINES, "nodes.csv lists the engines");
    let stood_for: u64 = out.nodes.iter().map(|r| r.stands_for).sum();
    assert_eq!(
        stood_for, FLEET as u64,
        "seed {seed}: every endpoint is counted once"
    );
    let eligible: u64 = s.waves.iter().map(|w| w.eligible).sum();
    assert_eq!(eligible, FLEET as u64, "seed {seed}: {:?}", s.waves);
    // The protocol's hash puts about 10 % of the fleet in the canary wave.
    let canary = &s.waves[0];
    assert!(
        (45..=115).contains(&canary.eligible),
        "seed {seed}: canary {canary:?}"
    );
    let bad = s.bad_release.clone().expect("a bad-release summary");
    assert_eq!(canary.installed, canary.eligible, "seed {seed}: {canary:?}");
    assert_eq!(bad.installed_bad, canary.eligible, "seed {seed}: {bad:?}");
    assert_eq!(bad.failed, bad.installed_bad, "seed {seed}: {bad:?}");
    let radius = canary.eligible as f64 / FLEET as f64;
    assert!(
        (bad.blast_radius - radius).abs() < 1e-12,
        "seed {seed}: {bad:?}"
    );
    for w in &s.waves[1..] {
        assert_eq!(w.installed, 0, "seed {seed}: wave {} installed", w.name);
    }
    // Every endpoint, member or engine, learns of the halt (probe failures roll back, alive).
    assert!(
        bad.knowing_halt >= FLEET as u64,
        "seed {seed}: {} of {FLEET} know",
        bad.knowing_halt
    );
    assert!(
        bad.failure_to_999_knowing_s.is_some(),
        "seed {seed}: {bad:?}"
    );
    let last = out.series.samples.last().expect("samples");
    assert_eq!(
        last.installed.iter().sum::<u64>(),
        canary.installed,
        "seed {seed}: the series counts the members too"
    );
    assert!(last.knowing_halt >= FLEET as u64, "seed {seed}: {last:?}");
}

#[test]
fn a_sampled_fleet_is_deterministic() {
    let b = three_waves("sampled-again").engines(ENGINES);
    let (first, second) = (b.run(), b.run());
    assert_eq!(
        without_machine(first.summary.clone()),
        without_machine(second.summary),
        "seed {}",
        b.seed
    );
    assert_eq!(first.nodes, second.nodes, "seed {}", b.seed);
}

/// The comparison needs the bound's aggregate-upload term to bind, as at
/// scale: the engines' seeder is cut to their share, so a fleet held back by
/// its seeder alone would be slower sampled (docs/simulator.md).
#[test]
fn a_sampled_fleet_finishes_about_when_the_whole_fleet_of_engines_does() {
    let limited = |b: ScenarioBuilder| {
        let sites = vec![SiteBuilder::new("lan", FLEET).access(Some(20.0), Some(100.0))];
        b.sites(sites)
    };
    let whole = limited(three_waves("whole")).run().summary;
    let sampled = limited(three_waves("sampled").engines(ENGINES))
        .run()
        .summary;
    let seed = whole.seed;
    assert_eq!(whole.endpoints, sampled.endpoints);
    assert_eq!(whole.lower_bound.seconds, sampled.lower_bound.seconds);
    for (name, w, s) in [
        ("p50", whole.download.p50, sampled.download.p50),
        ("max", whole.download.max, sampled.download.max),
    ] {
        let (w, s) = (w.expect("whole"), s.expect("sampled"));
        assert!(
            (s - w).abs() <= 0.25 * w,
            "seed {seed}: download {name} {s} s sampled against {w} s whole"
        );
    }
    for (w, s) in whole.waves.iter().zip(&sampled.waves) {
        // Different IDs, the same hash shares: within 4 standard deviations.
        let sd = (FLEET as f64 * 0.25).sqrt();
        assert!(
            (w.eligible as f64 - s.eligible as f64).abs() <= 4.0 * sd,
            "seed {seed}: wave {} eligible {} whole, {} sampled",
            w.name,
            w.eligible,
            s.eligible
        );
        assert_eq!(w.installed, w.eligible, "seed {seed}: {w:?}");
        assert_eq!(s.installed, s.eligible, "seed {seed}: {s:?}");
        let (wp, sp) = (
            w.completion.p50.expect("whole"),
            s.completion.p50.expect("sampled"),
        );
        assert!(
            (wp - sp).abs() <= 1.0,
            "seed {seed}: wave {} p50 {wp} vs {sp}",
            w.name
        );
    }
    eprintln!(
        "whole: download p50 {:?} max {:?}; sampled: p50 {:?} max {:?}; bound {} s",
        whole.download.p50,
        whole.download.max,
        sampled.download.p50,
        sampled.download.max,
        whole.lower_bound.seconds
    );
}
