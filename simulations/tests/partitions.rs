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

#[test]
fn a_site_cut_off_for_hours_learns_the_halt_after_the_heal() {
    // 20 endpoints on the ship: about 2 canaries, fewer than min_reports, so
    // the ship cannot judge its canary wave on its own evidence.
    let mut b = fleet(8)
        .bad(1.0, "probe")
        .partition("ship", CUT_S, Some(HEAL_S));
    b.min_reports = 5;
    let seed = b.seed;
    let out = b.run();
    let ship = ship_nodes(&out);
    let heal = HEAL_S as f64;
    for r in &ship {
        eprintln!("{r:?}");
    }
    eprintln!("{:?} {:?}", out.summary.bad_release, out.summary.faults);
}

#[test]
fn exp_good_small_cut_before_release() {
    let mut b = fleet(8).partition("ship", 0, Some(3 * 3600));
    b.min_reports = 5;
    let out = b.run();
    for r in ship_nodes(&out) {
        eprintln!("A {r:?}");
    }
    eprintln!("A {:?} {:?}", out.summary.waves, out.summary.faults);
}

#[test]
fn exp_good_large_cut_during() {
    let b = fleet(20).partition("ship", CUT_S, Some(HEAL_S));
    let out = b.run();
    for r in ship_nodes(&out) {
        eprintln!("B {r:?}");
    }
    eprintln!("B {:?} {:?}", out.summary.waves, out.summary.faults);
}

#[test]
fn exp_good_small_cut_during() {
    let mut b = fleet(8).partition("ship", CUT_S, Some(HEAL_S));
    b.min_reports = 5;
    let out = b.run();
    for r in ship_nodes(&out) {
        eprintln!("C {r:?}");
    }
    eprintln!("C {:?} {:?}", out.summary.waves, out.summary.faults);
}
