//! The byte scale keeps timing, churned nodes come back and finish, a fleet
//! whose wave would be empty is refused, and a sweep runs from the command line.

mod scenario_support;

use scenario_support::{ScenarioBuilder, SiteBuilder};
use std::process::Command;
use waveguard_sim::run::run;

fn swarm(seed: u64, byte_scale: u32) -> ScenarioBuilder {
    let mut b = ScenarioBuilder::new("scaled", 20)
        .seed(seed)
        .release(8.0, 256)
        .sites(vec![
            SiteBuilder::new("lan", 20).access(Some(20.0), Some(100.0))
        ]);
    b.byte_scale = byte_scale;
    b.seeder_upload_mbit = Some(50.0);
    b
}

#[test]
fn a_byte_scale_keeps_the_timing_and_reports_nominal_bytes() {
    let seed = 3;
    let full = swarm(seed, 1).run().summary;
    let scaled = swarm(seed, 4).run().summary;
    assert_eq!(full.release_bytes, scaled.release_bytes, "seed {seed}");
    assert_eq!(scaled.byte_scale, 4);
    assert!(
        (full.lower_bound.seconds - scaled.lower_bound.seconds).abs() < 1e-9,
        "seed {seed}: the bound is the same in nominal units"
    );
    let (a, b) = (
        full.download.max.expect("full run finished"),
        scaled.download.max.expect("scaled run finished"),
    );
    // The scaled artifact is other random bytes, so its chunk boundaries differ:
    // the times agree closely, not exactly.
    assert!(
        (a - b).abs() <= 0.15 * a,
        "seed {seed}: full {a:.2} s, scaled {b:.2} s"
    );
    let (ca, cb) = (full.bytes_per_node["chunk"], scaled.bytes_per_node["chunk"]);
    assert!(
        (ca - cb).abs() <= 0.15 * ca,
        "seed {seed}: chunk bytes per node {ca} vs {cb}"
    );
}

#[test]
fn nodes_that_leave_during_the_download_come_back_and_finish() {
    let seed = 5;
    let mut b = swarm(seed, 1);
    b.extra = "\n[churn]\nfraction = 0.3\nfrom_s = 1\nuntil_s = 4\noffline_s = 20\n".into();
    let out = b.run();
    let s = &out.summary;
    assert_eq!(
        s.faults.get("churn_leaves"),
        Some(&6),
        "seed {seed}: {:?}",
        s.faults
    );
    assert_eq!(s.download.count, 20, "seed {seed}: every endpoint finishes");
    assert_eq!(
        s.waves[0].installed, 20,
        "seed {seed}: every endpoint installs"
    );
    // Six nodes were away for 20 s from at most 4 s in: the last finish is after 21 s.
    assert!(
        s.download.max.is_some_and(|m| m > 21.0),
        "seed {seed}: {:?}",
        s.download
    );
}

#[test]
fn a_fleet_whose_wave_would_be_empty_is_refused_naming_the_wave() {
    let mut b = ScenarioBuilder::new("tiny-canary", 10);
    b.waves = vec![("canary", 1.0, 60), ("all", 100.0, 60)];
    let err = run(&b.build(), None).expect_err("a 1% wave of 10 endpoints is empty");
    let msg = err.to_string();
    assert!(msg.contains("canary") && msg.contains("seed 1"), "{msg}");
}

#[test]
fn a_sweep_runs_every_point_and_writes_one_table() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut b = ScenarioBuilder::new("sweep", 10);
    b.extra = "\n[sweep]\nseeds = [1, 2]\n[[sweep.params]]\npath = \"seeder.upload_mbit\"\nvalues = [20.0, 80.0]\n".into();
    let file = dir.path().join("sweep.toml");
    std::fs::write(&file, b.toml()).expect("write scenario");
    let out = dir.path().join("out");
    let status = Command::new(env!("CARGO_BIN_EXE_waveguard-sim"))
        .args(["run", file.to_str().unwrap_or_default(), "--out"])
        .arg(&out)
        .args(["--threads", "2"])
        .output()
        .expect("run the binary");
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let runs = std::fs::read_dir(out.join("runs"))
        .expect("runs dir")
        .count();
    assert_eq!(runs, 4, "two values times two seeds");
    let csv = std::fs::read_to_string(out.join("sweep.csv")).expect("sweep.csv");
    assert_eq!(
        csv.lines().count(),
        3,
        "a header and one row per value:\n{csv}"
    );
    assert!(out.join("sweep.svg").exists() && out.join("sweep.md").exists());
}
