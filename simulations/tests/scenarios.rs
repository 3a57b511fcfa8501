mod scenario_support;
use scenario_support::*;

fn show(tag: &str, s: &waveguard_sim::report::Summary) {
    println!("== {tag}: sim {} download {:?} bound {} {:?} seeder {} ",
        s.simulated_seconds, s.download, s.lower_bound.seconds, s.lower_bound.binding, s.seeder_upload_bytes);
    for w in &s.waves { println!("   wave {} elig {} inst {} {:?} open {:?}", w.name, w.eligible, w.installed, w.completion, w.opened_at_s); }
    println!("   bad {:?}\n   faults {:?}", s.bad_release, s.faults);
}

#[test]
fn explore1() {
    for lat in [1u64, 20, 100] {
    for chunk in [64u32, 128, 256] {
    let out = ScenarioBuilder::new("one", 1)
        .release(2.0, chunk)
        .seeder(Some(8.0), None)
        .sites(vec![SiteBuilder::new("lan", 1).latency(lat, 25)])
        .run();
    show(&format!("lat {lat} chunk {chunk}"), &out.summary);
    }}
}
#[test]
fn explore2() {
    for seed in 1..6 {
    let out = ScenarioBuilder::new("line", 2).seed(seed)
        .release(2.0, 64)
        .seeder(Some(8.0), Some(1)).topology(2, 1.0)
        .sites(vec![SiteBuilder::new("lan", 2).access(Some(8.0), Some(40.0)).latency(5, 25)])
        .run();
    show(&format!("line seed {seed}"), &out.summary);
    }
}
#[test]
fn explore3() {
    let out = ScenarioBuilder::new("waves", 40)
        .release(1.0, 64)
        .waves(20, &[("a", 10.0, 30), ("b", 30.0, 60), ("c", 60.0, 90), ("d", 100.0, 120)])
        .run();
    show("waves", &out.summary);
}
