//! Sneakernet bundles end to end: a release exported from a vendor's
//! release directory and imported into agents that never talk to the
//! vendor; refused bundles (altered, truncated, foreign, delta without its
//! base) leave the store exactly as it was; and health reports carried back
//! change a gate at the connected site.

mod support;

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use support::{arg, error_of, fingerprint, noise, run_at, Vendor, LATER};
use waveguard_agent::api::{self, ApiState};
use waveguard_agent::cli::bundle::BundleReport;
use waveguard_agent::cli::Outcome;
use waveguard_agent::store::Store;
use waveguard_agent::testbed::{
    chunks_stored, wait_for, AgentSpec, ReleaseSpec, RolloutSpec, Testbed,
};
use waveguard_protocol::bundle::health;
use waveguard_protocol::health::gate::GateState;
use waveguard_protocol::health::report::{sign_report, HealthReport, HealthStatus};
use waveguard_protocol::wave::{wave_of, WavePin};
use waveguard_protocol::{ReleaseId, SigningKey};

/// Exports a bundle of `release` from `repo` (with `base`, a delta) at [`LATER`].
fn export(repo: &Path, release: &str, base: Option<&str>, out: &Path) -> Outcome {
    let mut args = vec![
        "bundle",
        "export",
        "--repo",
        arg(repo),
        "--release",
        release,
        "--out",
        arg(out),
    ];
    if let Some(b) = base {
        args.extend_from_slice(&["--base", b]);
    }
    run_at(LATER, &args).unwrap()
}

/// The import command line for a data directory trusting `root`.
fn import_args<'a>(file: &'a Path, data: &'a Path, root: &'a Path) -> Vec<&'a str> {
    vec![
        "bundle",
        "import",
        arg(file),
        "--data-dir",
        arg(data),
        "--trusted-root",
        arg(root),
    ]
}

/// What a store holds: every file outside the database byte for byte, and
/// the database's records (held chunks, chunk lists, trust) by content.
type Contents = (
    BTreeMap<PathBuf, Vec<u8>>,
    Vec<[u8; 32]>,
    Vec<(ReleaseId, Vec<u8>)>,
    Option<waveguard_protocol::metadata::trust::StoredTrust>,
);

fn contents(data: &Path) -> Contents {
    let files = fingerprint(data)
        .into_iter()
        .filter(|(p, _)| !p.starts_with(data.join("meta.sled")))
        .collect();
    let store = Store::open(data).unwrap();
    (
        files,
        store.held().unwrap(),
        store.chunk_lists().unwrap(),
        store.trust().unwrap(),
    )
}

/// A release directory with `acme-sensor` 1.0 and 1.1 (5% of 1.1 changed).
fn two_versions() -> (Vendor, PathBuf) {
    let v = Vendor::new();
    let a = noise(1_500_000, 1);
    let mut b = a.clone();
    for x in &mut b[700_000..775_000] {
        *x ^= 0x5a;
    }
    v.publish(&v.artifact("a.bin", &a), "1.0");
    v.publish(&v.artifact("b.bin", &b), "1.1");
    let root = v.path("metadata/1.root.json");
    (v, root)
}

#[test]
fn refused_bundles_name_the_fault_and_leave_the_store_unchanged() {
    let (v, root) = two_versions();
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.wgb");
    export(&v.repo(), "acme-sensor/1.0", None, &good);
    let data = dir.path().join("site");
    match run_at(LATER, &import_args(&good, &data, &root)).unwrap() {
        Outcome::Bundle(r) => assert!(r.to_string().contains("imported acme-sensor 1.0"), "{r}"),
        other => panic!("import gave {other}"),
    }
    let before = contents(&data);
    assert!(!before.1.is_empty());
    let bytes_10 = std::fs::read(&good).unwrap();
    // The refused bundles carry 1.1, whose chunks the store mostly lacks, so
    // storing anything before verifying everything would show.
    let good_11 = dir.path().join("good11.wgb");
    export(&v.repo(), "acme-sensor/1.1", None, &good_11);
    let bytes = std::fs::read(&good_11).unwrap();

    // The site can pass the release on: a bundle written from its store is the same file.
    let again = dir.path().join("again.wgb");
    run_at(
        LATER,
        &[
            "bundle",
            "export",
            "--data-dir",
            arg(&data),
            "--release",
            "acme-sensor/1.0",
            "--out",
            arg(&again),
        ],
    )
    .unwrap();
    assert!(
        std::fs::read(&again).unwrap() == bytes_10,
        "store export differs"
    );

    // One flipped byte in the last chunk's data.
    let mut chunk_flip = bytes.clone();
    let last = chunk_flip.len() - 1;
    chunk_flip[last] ^= 1;
    // One changed digit inside the signed targets document.
    let targets = std::fs::read(v.path("metadata/targets.json")).unwrap();
    let at = bytes
        .windows(targets.len())
        .position(|w| w == targets.as_slice())
        .unwrap();
    let digit = at + targets.iter().position(|b| b.is_ascii_digit()).unwrap();
    let mut meta_flip = bytes.clone();
    meta_flip[digit] = if meta_flip[digit] == b'1' { b'2' } else { b'1' };
    // Cut in the middle of the chunks.
    let truncated = bytes[..bytes.len() * 2 / 3].to_vec();
    // The same artifact published by another vendor with its own root.
    let other = Vendor::new();
    other.publish(&other.artifact("a.bin", &noise(1_500_000, 1)), "1.0");
    let foreign = dir.path().join("foreign.wgb");
    export(&other.repo(), "acme-sensor/1.0", None, &foreign);

    let cases: Vec<(&str, Vec<u8>, &[&str])> = vec![
        (
            "chunk",
            chunk_flip,
            &["refused, nothing was stored", "chunk record", "hashes to"],
        ),
        (
            "metadata",
            meta_flip,
            &["refused, nothing was stored", "trust metadata", "targets"],
        ),
        (
            "truncated",
            truncated,
            &[
                "refused, nothing was stored",
                "truncated in the chunk record",
            ],
        ),
        (
            "foreign",
            std::fs::read(&foreign).unwrap(),
            &["refused, nothing was stored", "trust metadata", "timestamp"],
        ),
    ];
    for (name, bad, wants) in cases {
        let file = dir.path().join(format!("{name}.wgb"));
        std::fs::write(&file, bad).unwrap();
        let err = error_of(LATER, &import_args(&file, &data, &root));
        for want in wants {
            assert!(err.contains(want), "{name}: {err:?} lacks {want:?}");
        }
        assert!(contents(&data) == before, "{name}: the store changed");
    }
    // The intact 1.1 bundle goes in, and adds what the refused ones did not.
    run_at(LATER, &import_args(&good_11, &data, &root)).unwrap();
    let after = contents(&data);
    assert!(after.1.len() > before.1.len() && after.2.len() == 2);
}

#[test]
fn a_delta_bundle_is_smaller_and_needs_the_base_in_the_store() {
    let (v, root) = two_versions();
    let dir = tempfile::tempdir().unwrap();
    let (full1, full2, delta) = (
        dir.path().join("full1.wgb"),
        dir.path().join("full2.wgb"),
        dir.path().join("delta.wgb"),
    );
    export(&v.repo(), "acme-sensor/1.0", None, &full1);
    export(&v.repo(), "acme-sensor/1.1", None, &full2);
    let left_out = match export(
        &v.repo(),
        "acme-sensor/1.1",
        Some("acme-sensor/1.0"),
        &delta,
    ) {
        Outcome::Bundle(r) => match *r {
            BundleReport::Exported(e) => {
                assert!(e.base.is_some());
                assert!(e.carried > 0 && e.carried < e.chunks, "{e}");
                e.chunks - e.carried
            }
            other => panic!("export gave {other}"),
        },
        other => panic!("export gave {other}"),
    };
    let (full_len, delta_len) = (
        std::fs::metadata(&full2).unwrap().len(),
        std::fs::metadata(&delta).unwrap().len(),
    );
    assert!(
        delta_len * 3 < full_len,
        "delta {delta_len} vs full {full_len}"
    );

    // A site running 1.0 takes the delta.
    let site = dir.path().join("site");
    run_at(LATER, &import_args(&full1, &site, &root)).unwrap();
    let held_before: HashSet<[u8; 32]> = contents(&site).1.into_iter().collect();
    match run_at(LATER, &import_args(&delta, &site, &root)).unwrap() {
        Outcome::Bundle(r) => {
            let text = r.to_string();
            assert!(text.contains("imported acme-sensor 1.1"), "{text}");
            assert!(text.contains("delta on"), "{text}");
        }
        other => panic!("import gave {other}"),
    }
    let after = contents(&site);
    assert_eq!(after.2.len(), 2, "both chunk lists are stored");
    assert!(after.1.len() > held_before.len());

    // A site without 1.0 cannot use it, and is told how many chunks it lacks.
    let empty = dir.path().join("empty");
    drop(Store::open(&empty).unwrap());
    let before = contents(&empty);
    let err = error_of(LATER, &import_args(&delta, &empty, &root));
    assert!(err.contains("are not in the store"), "{err}");
    assert!(
        err.contains(&format!("{left_out} chunks it leaves out")),
        "{err} (expected {left_out} missing)"
    );
    assert!(contents(&empty) == before, "the empty store changed");
}

#[test]
fn import_refuses_a_store_without_trust_and_without_a_root() {
    let (v, _) = two_versions();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("b.wgb");
    export(&v.repo(), "acme-sensor/1.0", None, &file);
    let data = dir.path().join("site");
    let err = error_of(
        LATER,
        &["bundle", "import", arg(&file), "--data-dir", arg(&data)],
    );
    assert!(err.contains("--trusted-root"), "{err}");
}

fn runtime_root(tb_dir: &Path) -> PathBuf {
    tb_dir.join("repo/metadata/1.root.json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_carried_release_is_served_by_the_importing_agent_to_its_peer() {
    let dir = tempfile::tempdir().unwrap();
    let spec = ReleaseSpec {
        size: 3 << 20,
        chunk_avg: "256KiB".into(),
        ..ReleaseSpec::default()
    };
    let (mut tb, published) = Testbed::publish(dir.path(), &spec).unwrap();
    let file = dir.path().join("carry.wgb");
    let repo = tb.repo();
    let id = published.release.to_hex();
    let now = waveguard_agent::driver::now();
    let exported = waveguard_agent::cli::run_at(
        [
            "waveguard",
            "bundle",
            "export",
            "--repo",
            arg(&repo),
            "--release",
            &id,
            "--out",
            arg(&file),
        ],
        now,
    );
    assert!(exported.is_ok(), "{exported:?}");

    // The site's agent: no seeder exists, so it dials nobody.
    let site = tb.start(&AgentSpec::default()).await.unwrap();
    let data = tb.members[site].config.data_dir.clone();
    let root = runtime_root(dir.path());
    // While it runs, its store is locked: import says to stop it.
    let mut args = vec!["waveguard"];
    args.extend(import_args(&file, &data, &root));
    let err = match waveguard_agent::cli::run_at(args.clone(), now) {
        Ok(o) => panic!("import into a running agent's store gave {o}"),
        Err(e) => waveguard_agent::cli::error_message(&e),
    };
    assert!(err.contains("stop the agent first"), "{err}");
    assert_eq!(
        chunks_stored(&tb.members[site].shared, &published.release).1,
        0
    );

    tb.kill(site).await;
    let imported = loop {
        // The killed task's blocking store work may hold the lock for a moment.
        match waveguard_agent::cli::run_at(args.clone(), now) {
            Ok(o) => break o,
            Err(e) if waveguard_agent::cli::error_message(&e).contains("stop the agent") => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("import: {}", waveguard_agent::cli::error_message(&e)),
        }
    };
    assert!(imported.to_string().contains("imported"), "{imported}");
    tb.restart(site).await.unwrap();
    let total = published.info.info.chunk_list.chunks;
    assert_eq!(
        chunks_stored(&tb.members[site].shared, &published.release),
        (total, total)
    );

    // A neighbour that only knows the site's agent gets the release from it.
    let peer = tb
        .start(&AgentSpec {
            bootstrap: vec![site],
            ..AgentSpec::default()
        })
        .await
        .unwrap();
    let shared = tb.members[peer].shared.clone();
    let release = published.release;
    wait_for(
        "the neighbour to fetch every chunk",
        Duration::from_secs(60),
        || chunks_stored(&shared, &release) == (total, total),
    )
    .await
    .unwrap();
    tb.shutdown().await;
}

/// An API server for a testbed member on an ephemeral loopback port.
async fn serve_api(tb: &Testbed, index: usize) -> SocketAddr {
    let listener = api::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let state = ApiState {
        shared: tb.members[index].shared.clone(),
        node: tb.members[index].node,
    };
    tokio::spawn(api::serve(listener, state, std::future::pending()));
    addr
}

fn wave0_gate(tb: &Testbed, index: usize, release: &ReleaseId) -> Option<GateState> {
    let status = tb.members[index].shared.status.lock().ok()?.clone()?;
    let r = status.releases.iter().find(|r| &r.id == release)?;
    r.waves.first().map(|w| w.gate)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_carried_back_fails_the_gate_at_the_connected_site() {
    let dir = tempfile::tempdir().unwrap();
    let spec = ReleaseSpec {
        size: 1 << 20,
        chunk_avg: "256KiB".into(),
        start_in_secs: 0,
        rollout: RolloutSpec {
            waves: "canary:50%:1h,all:100%:0s".into(),
            max_failure: "5%".into(),
            min_reports: 2,
            silence: "10m".into(),
            heartbeat: "1m".into(),
        },
        ..ReleaseSpec::default()
    };
    let (mut tb, published) = Testbed::publish(dir.path(), &spec).unwrap();
    let release = published.release;
    // The connected site: a seeder and an endpoint in the last wave that installs nothing.
    let seeder = tb
        .start(&AgentSpec {
            seed: true,
            ..AgentSpec::default()
        })
        .await
        .unwrap();
    let connected = tb
        .start(&AgentSpec {
            wave: Some(1),
            paused: true,
            ..AgentSpec::default()
        })
        .await
        .unwrap();
    wait_for(
        "the endpoint to follow the release",
        Duration::from_secs(20),
        || wave0_gate(&tb, connected, &release).is_some(),
    )
    .await
    .unwrap();
    assert_eq!(
        wave0_gate(&tb, connected, &release),
        Some(GateState::Pending)
    );

    // The isolated site's canaries failed; their signed reports come back on a stick.
    let policy = published.info.policy().clone();
    let now = waveguard_agent::driver::now();
    let reports: Vec<_> = (0u8..=255)
        .map(|s| SigningKey::from_seed([s; 32]))
        .filter(|k| wave_of(&policy, &release, &k.node_id(), WavePin::None) == 0)
        .take(2)
        .map(|k| {
            let r = HealthReport::new(k.node_id(), release, 0, HealthStatus::Unhealthy, 1, now);
            sign_report(&k, r, None)
        })
        .collect();
    assert_eq!(reports.len(), 2);
    let file = dir.path().join("health.wgh");
    std::fs::write(&file, health::encode(&release, &reports).unwrap()).unwrap();

    let api_addr = serve_api(&tb, connected).await.to_string();
    let (f, a) = (file.clone(), api_addr.clone());
    let imported = tokio::task::spawn_blocking(move || {
        waveguard_agent::cli::run_at(
            ["waveguard", "bundle", "import-health", arg(&f), "--api", &a],
            now,
        )
        .map(|o| o.to_string())
    })
    .await
    .unwrap()
    .unwrap();
    assert!(imported.contains("2 accepted and passed on"), "{imported}");

    wait_for(
        "the connected gate to fail",
        Duration::from_secs(10),
        || wave0_gate(&tb, connected, &release) == Some(GateState::Failed),
    )
    .await
    .unwrap();
    // Passed on: the seeder, which never saw the file, judges the same.
    wait_for("the seeder's gate to fail", Duration::from_secs(20), || {
        wave0_gate(&tb, seeder, &release) == Some(GateState::Failed)
    })
    .await
    .unwrap();

    // And export-health hands out what the connected node now holds.
    let out = dir.path().join("again.wgh");
    let (o, a, id) = (out.clone(), api_addr.clone(), release.to_hex());
    let exported = tokio::task::spawn_blocking(move || {
        waveguard_agent::cli::run_at(
            [
                "waveguard",
                "bundle",
                "export-health",
                "--api",
                &a,
                "--release",
                &id,
                "--out",
                arg(&o),
            ],
            now,
        )
        .map(|o| o.to_string())
    })
    .await
    .unwrap()
    .unwrap();
    assert!(exported.contains("wrote 2 health reports"), "{exported}");
    let (got_release, got) = health::decode(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(got_release, release);
    assert!(reports.iter().all(|r| got.contains(r)));
    tb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_agent_imports_a_bundle_through_its_api() {
    let dir = tempfile::tempdir().unwrap();
    let spec = ReleaseSpec {
        size: 2 << 20,
        chunk_avg: "256KiB".into(),
        ..ReleaseSpec::default()
    };
    let (mut tb, published) = Testbed::publish(dir.path(), &spec).unwrap();
    let file = dir.path().join("carry.wgb");
    let repo = tb.repo();
    let id = published.release.to_hex();
    let now = waveguard_agent::driver::now();
    waveguard_agent::cli::run_at(
        [
            "waveguard",
            "bundle",
            "export",
            "--repo",
            arg(&repo),
            "--release",
            &id,
            "--out",
            arg(&file),
        ],
        now,
    )
    .unwrap();
    let site = tb.start(&AgentSpec::default()).await.unwrap();
    let api_addr = serve_api(&tb, site).await.to_string();
    let import = |f: PathBuf| {
        let a = api_addr.clone();
        tokio::task::spawn_blocking(move || {
            waveguard_agent::cli::run_at(
                ["waveguard", "bundle", "import", arg(&f), "--api", &a],
                now,
            )
            .map(|o| o.to_string())
            .map_err(|e| waveguard_agent::cli::error_message(&e))
        })
    };

    // A truncated copy is refused by the running agent, which stores nothing.
    let cut = dir.path().join("cut.wgb");
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let err = import(cut).await.unwrap().unwrap_err();
    assert!(err.contains("truncated"), "{err}");
    assert_eq!(
        chunks_stored(&tb.members[site].shared, &published.release),
        (0, 0)
    );

    let done = import(file).await.unwrap().unwrap();
    assert!(done.contains("it serves the release now"), "{done}");
    let total = published.info.info.chunk_list.chunks;
    let shared = tb.members[site].shared.clone();
    let release = published.release;
    wait_for(
        "the agent to hold the release",
        Duration::from_secs(10),
        || chunks_stored(&shared, &release) == (total, total),
    )
    .await
    .unwrap();
    tb.shutdown().await;
}
