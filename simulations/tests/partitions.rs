//! A site cut off for hours, then healed: during a bad release's rollout the
//! rest of the fleet halts at its canary wave while the site is cut, and the
//! site learns of the halt after the heal with no operator action; a good
//! release that had not reached the site before the cut is installed there
//! after the heal. Also what a cut-off site decides on its own evidence.
//!
//! The mesh checks that no node installs after it learned of a halt, and
//! every run here would fail on that. Node records give each endpoint's site,
//! wave, install time and the time it learned of a halt.

mod scenario_support;

use scenario_support::*;
use waveguard_sim::report::NodeRecord;
use waveguard_sim::run::RunOutput;

/// When the ship is cut off and when it heals, seconds after publishing: three hours.
const CUT_S: u64 = 300;
const HEAL_S: u64 = CUT_S + 3 * 3600;

/// 100 endpoints at hq (with the seeder) and `ship` on a ship, unlimited
/// links, a 1 MiB release, three waves (10 %, 50 %, 100 %) from 10 minutes
/// after publishing, baking 20 minutes each; 20 % failures fail a gate, at
/// least 3 reports, silence 2 minutes, heartbeats every 30 s.
fn fleet(ship: usize) -> ScenarioBuilder {
    let mut b = ScenarioBuilder::new("partition", 100 + ship)
        .release(1.0, 64)
        .topology(6, 0.8)
        .sites(vec![
            SiteBuilder::new("hq", 100),
            SiteBuilder::new("ship", ship),
        ])
        .waves(
            600,
            &[
                ("canary", 10.0, 1200),
                ("early", 50.0, 1200),
                ("all", 100.0, 1200),
            ],
        )
        .health(20.0, 120, 30)
        .duration(HEAL_S + 3600);
    b.min_reports = 3;
    b.seeder_site = Some("hq".into());
    b
}

fn ship_nodes(out: &RunOutput) -> Vec<&NodeRecord> {
    out.nodes.iter().filter(|r| r.site == "ship").collect()
}

/// Whether `t` (seconds after publishing) falls within the cut.
fn during_cut(t: f64) -> bool {
    t < HEAL_S as f64
}

/// Every node of `nodes` learned of the halt during the cut, and none outside
/// the canary wave installed.
fn assert_halted_during_cut(nodes: &[&NodeRecord], site: &str, seed: u64) {
    for r in nodes {
        assert!(
            r.knew_halt_s.is_some_and(during_cut),
            "seed {seed}: {site} node {} learned of the halt at {:?}",
            r.node,
            r.knew_halt_s
        );
        assert!(r.wave == 0 || r.installed_s.is_none(), "seed {seed}: {r:?}");
    }
}

#[test]
fn a_site_cut_off_for_hours_learns_the_halt_after_the_heal() {
    // 8 endpoints on the ship, 3 of them canaries for seed 1: with
    // min_reports = 5 the ship cannot judge its canary wave on its own evidence.
    let mut b = fleet(8)
        .bad(1.0, "probe")
        .partition("ship", CUT_S, Some(HEAL_S));
    b.min_reports = 5;
    let seed = b.seed;
    let out = b.run();
    let s = &out.summary;
    assert_eq!(
        (fault(s, "partitions"), fault(s, "heals")),
        (1, 1),
        "seed {seed}"
    );
    // The rest of the fleet halts at its canary wave while the ship is cut.
    let hq: Vec<&NodeRecord> = out.nodes.iter().filter(|r| r.site == "hq").collect();
    assert_halted_during_cut(&hq, "hq", seed);
    let ship = ship_nodes(&out);
    let canaries: Vec<_> = ship.iter().filter(|r| r.wave == 0).collect();
    assert!(
        !canaries.is_empty() && canaries.len() < 5,
        "seed {seed}: {} ship canaries",
        canaries.len()
    );
    let mut learned_after_heal = Vec::new();
    for r in &ship {
        let knew = r.knew_halt_s.unwrap_or_else(|| {
            panic!(
                "seed {seed}: ship node {} never learned of the halt",
                r.node
            )
        });
        if r.wave == 0 {
            // A canary's own failed probe halts it at once, cut or not.
            assert!(
                r.installed_s.is_some() && during_cut(knew),
                "seed {seed}: {r:?}"
            );
        } else {
            // Nobody on the ship opens a later wave, and the others hear of the
            // halt only after the heal: two canaries' failures are not enough.
            assert_eq!(r.installed_s, None, "seed {seed}: {r:?}");
            assert!(!during_cut(knew), "seed {seed}: {r:?}");
            learned_after_heal.push(knew - HEAL_S as f64);
        }
    }
    // Without an operator, within minutes of the heal (measured: 5.1 s for all
    // of them). Each asks a random peer for the canary reports every
    // heartbeat_s while its gate is undecided (health sync); the first to ask
    // an hq peer halts, and its halt evidence spreads over the ship.
    let last = learned_after_heal.iter().copied().fold(0.0, f64::max);
    assert!(
        !learned_after_heal.is_empty() && last <= 600.0,
        "seed {seed}: the ship learned {learned_after_heal:?} s after the heal"
    );
}

#[test]
fn a_cut_off_site_with_enough_canaries_halts_a_bad_release_on_its_own() {
    // 20 endpoints on the ship, 4 of them canaries for seed 1: at least
    // min_reports = 3 failures, so the ship's own evidence fails its gate.
    let b = fleet(20)
        .bad(1.0, "probe")
        .partition("ship", CUT_S, Some(HEAL_S));
    let seed = b.seed;
    let out = b.run();
    assert_halted_during_cut(&ship_nodes(&out), "ship", seed);
}

#[test]
fn a_cut_off_site_with_enough_canaries_rolls_a_good_release_out_on_its_own() {
    // The same ship and a good release: its 4 canaries pass its canary gate on
    // their own, so the ship opens its later waves on schedule during the cut.
    let b = fleet(20).partition("ship", CUT_S, Some(HEAL_S));
    let seed = b.seed;
    let out = b.run();
    let opens = [600.0, 1800.0, 3000.0];
    for r in ship_nodes(&out) {
        assert_eq!(
            r.installed_s,
            Some(opens[r.wave as usize]),
            "seed {seed}: {r:?}"
        );
        assert_eq!(r.knew_halt_s, None, "seed {seed}: {r:?}");
    }
}

#[test]
fn a_site_cut_off_for_hours_before_a_release_installs_it_after_the_heal() {
    // The ship is cut off from publishing on, for three hours, and cannot
    // judge any wave on its own (8 endpoints, min_reports = 5). The rest of the
    // fleet rolls out in an hour; after the heal the ship fetches the release,
    // takes the fleet's reports for the gates and installs every wave.
    let heal = 3 * 3600;
    let mut b = fleet(8).partition("ship", 0, Some(heal));
    b.min_reports = 5;
    let seed = b.seed;
    let out = b.run();
    let s = &out.summary;
    assert_eq!(fault(s, "heals"), 1, "seed {seed}");
    for r in ship_nodes(&out) {
        let installed = r
            .installed_s
            .unwrap_or_else(|| panic!("seed {seed}: ship node {} never installed", r.node));
        assert!(
            r.downloaded_s.is_some_and(|t| t >= heal as f64) && installed >= heal as f64,
            "seed {seed}: {r:?}"
        );
        assert_eq!(r.knew_halt_s, None, "seed {seed}: {r:?}");
    }
    let installed: u64 = s.waves.iter().map(|w| w.installed).sum();
    assert_eq!(installed, 108, "seed {seed}: {:?}", s.waves);
}

#[test]
fn a_site_whose_own_canaries_passed_learns_the_fleets_halt_after_the_heal() {
    // 40 endpoints on the ship and a release that hurts 10 % of machines. hq's
    // canaries fail its gate and hq halts during the cut; the ship's own canaries
    // (one failure of six for seed 1) pass its gate, so the ship rolls the release
    // out on its own while cut off. Its gates are decided, so it asks nobody for
    // health after the heal, and the halt evidence was gossiped hours before:
    // only halt sync (a `Request::Halt` on every new connection) tells it.
    let mut b = fleet(40)
        .bad(0.1, "probe")
        .partition("ship", CUT_S, Some(HEAL_S));
    // Everything looks settled long before the heal: the run must go past it.
    b.stop_when_settled = false;
    let seed = b.seed;
    let out = b.run();
    let hq: Vec<&NodeRecord> = out.nodes.iter().filter(|r| r.site == "hq").collect();
    assert!(
        hq.iter().all(|r| r.knew_halt_s.is_some_and(during_cut)),
        "seed {seed}: hq did not halt during the cut"
    );
    let ship = ship_nodes(&out);
    // The premise: the ship went past its canary wave while cut off.
    assert!(
        ship.iter()
            .any(|r| r.wave > 0 && r.installed_s.is_some_and(during_cut)),
        "seed {seed}: the ship never opened a later wave during the cut"
    );
    let mut after_heal = Vec::new();
    for r in &ship {
        let knew = r.knew_halt_s.unwrap_or_else(|| {
            panic!(
                "seed {seed}: ship node {} never learned of the fleet's halt",
                r.node
            )
        });
        if !during_cut(knew) {
            after_heal.push(knew - HEAL_S as f64);
        }
    }
    // Measured: every ship node within seconds of the heal.
    let last = after_heal.iter().copied().fold(0.0, f64::max);
    assert!(
        !after_heal.is_empty() && last <= 60.0,
        "seed {seed}: the ship learned {after_heal:?} s after the heal"
    );
}
