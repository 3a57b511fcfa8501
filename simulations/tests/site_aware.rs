//! Site-aware fetching in the simulator: a remote site behind a slow WAN link
//! pulls each chunk across the link about once when its engines know their
//! site (the election of section 15.7), and many times when they do not. The
//! mesh only tells engines who shares their site; every fetch decision is the
//! engines'.

mod scenario_support;

use scenario_support::{ScenarioBuilder, SiteBuilder};
use waveguard_sim::report::Summary;

/// A vendor site holding only the seeder, which every endpoint dials, and a
/// remote site of `endpoints` behind an 8/2 Mbit/s WAN link.
fn slow_wan(endpoints: usize, wan_fetchers: Option<u32>) -> ScenarioBuilder {
    let mut b = ScenarioBuilder::new("slow-wan", endpoints)
        .release(4.0, 64)
        .topology(8, 0.8)
        .wan_fetchers(wan_fetchers)
        .sites(vec![
            SiteBuilder::new("vendor", 0),
            SiteBuilder::new("remote", endpoints)
                .latency(1, 60)
                .wan(Some(2.0), Some(8.0)),
        ]);
    b.seeder_site = Some("vendor".into());
    b.seeder_dialled_by_all = true;
    b
}

/// How many times the release's size entered the remote site across its WAN link.
fn remote_crossings(s: &Summary) -> f64 {
    s.wan_in.get("remote").map_or(f64::NAN, |w| w.releases)
}

#[test]
fn with_the_election_each_chunk_crosses_the_wan_about_once() {
    let on = slow_wan(30, Some(2)).run().summary;
    assert_eq!(on.download.count, 30, "every endpoint finishes: {on:?}");
    let crossings = remote_crossings(&on);
    assert!(
        (1.0..=1.5).contains(&crossings),
        "the release crossed the WAN {crossings} times"
    );
}

#[test]
fn without_site_knowledge_the_release_crosses_the_wan_many_times() {
    let on = remote_crossings(&slow_wan(30, Some(2)).run().summary);
    let off = slow_wan(30, None).run().summary;
    assert_eq!(off.download.count, 30);
    let off = remote_crossings(&off);
    assert!(off > 2.0 * on, "off {off} vs on {on}");
}

#[test]
fn one_fetcher_alone_still_serves_the_whole_site() {
    let s = slow_wan(20, Some(1)).run().summary;
    assert_eq!(s.download.count, 20);
    let crossings = remote_crossings(&s);
    assert!((1.0..=1.5).contains(&crossings), "{crossings}");
}
