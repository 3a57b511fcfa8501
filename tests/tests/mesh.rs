//! Real agents on 127.0.0.1: a seeder serves a published release and every
//! agent ends up with the same verified bytes.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use waveguard_agent::cli::{run_at, Outcome};
use waveguard_agent::config::{Config, Role};
use waveguard_agent::daemon;
use waveguard_agent::driver::{now, Shared};
use waveguard_protocol::ReleaseId;

/// Publishes `size` pseudo-random bytes into `dir/repo`; returns the release ID and the artifact.
fn publish(dir: &Path, size: usize) -> (ReleaseId, Vec<u8>) {
    let at = now();
    let p = |n: &str| dir.join(n).to_string_lossy().into_owned();
    let cli = |args: &[&str]| {
        let mut argv = vec!["waveguard"];
        argv.extend_from_slice(args);
        run_at(argv, at).unwrap_or_else(|e| panic!("waveguard {args:?}: {e:#}"))
    };
    cli(&["keygen", "--out", &p("vendor.key")]);
    cli(&[
        "root",
        "init",
        "--out",
        &p("repo"),
        "--root-key",
        &p("vendor.key"),
        "--targets-key",
        &p("vendor.key"),
        "--snapshot-key",
        &p("vendor.key"),
        "--timestamp-key",
        &p("vendor.key"),
    ]);
    let artifact: Vec<u8> = (0..size as u64)
        .map(|i| (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8)
        .collect();
    std::fs::write(dir.join("app.bin"), &artifact).unwrap();
    // The rollout starts in an hour: agents prefetch, nobody installs during the test.
    let start = at.plus_secs(3600).to_rfc3339();
    let Outcome::Publish(r) = cli(&[
        "publish",
        &p("app.bin"),
        "--repo",
        &p("repo"),
        "--product",
        "acme",
        "--version",
        "1.0",
        "--key",
        &p("vendor.key"),
        "--start",
        &start,
        "--chunk-avg",
        "256KiB",
    ]) else {
        panic!("publish returned something else");
    };
    (r.release, artifact)
}

fn config(data: PathBuf, root: PathBuf, role: Role, bootstrap: Vec<String>) -> Config {
    let defaults = Config::default();
    Config {
        data_dir: data,
        trusted_root: Some(root),
        role,
        network: waveguard_agent::config::Network {
            listen: vec!["/ip4/127.0.0.1/tcp/0".into()],
            mdns: false,
            bootstrap,
            ..defaults.network.clone()
        },
        ..defaults
    }
}

async fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn chunks_stored(shared: &Shared, release: &ReleaseId) -> (u32, u32) {
    let status = shared.status.lock().unwrap();
    status
        .as_ref()
        .and_then(|s| {
            s.releases
                .iter()
                .find(|r| &r.id == release)
                .map(|r| (r.chunks_stored, r.chunks_total))
        })
        .unwrap_or((0, 0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_agents_get_a_release_from_one_seeder() {
    let tmp = tempfile::tempdir().unwrap();
    let (release, artifact) = publish(tmp.path(), 6 << 20);
    let root = tmp.path().join("repo/metadata/1.root.json");

    let seeder_cfg = config(
        tmp.path().join("seeder"),
        root.clone(),
        Role::Seeder,
        vec![],
    );
    let seeder = daemon::start(&seeder_cfg, Some(&tmp.path().join("repo"))).expect("seeder starts");
    let seeder_id = seeder.node_id().to_peer_id_string();
    let seeder_shared = seeder.shared();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopper = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.changed().await;
    };
    let mut tasks = vec![tokio::spawn(seeder.run(stopper(stop_rx.clone())))];
    wait_for("the seeder to listen", Duration::from_secs(10), || {
        !seeder_shared.listen.lock().unwrap().is_empty()
    })
    .await;
    let addr = format!(
        "{}/p2p/{seeder_id}",
        seeder_shared.listen.lock().unwrap()[0]
    );

    let mut agents = Vec::new();
    for i in 0..4 {
        let cfg = config(
            tmp.path().join(format!("agent{i}")),
            root.clone(),
            Role::Endpoint,
            vec![addr.clone()],
        );
        let driver = daemon::start(&cfg, None).expect("agent starts");
        agents.push((cfg, driver.shared()));
        tasks.push(tokio::spawn(driver.run(stopper(stop_rx.clone()))));
    }
    for (i, (_, shared)) in agents.iter().enumerate() {
        wait_for(
            &format!("agent {i} to hold every chunk"),
            Duration::from_secs(60),
            || {
                let (have, total) = chunks_stored(shared, &release);
                total > 0 && have == total
            },
        )
        .await;
    }
    // Each agent assembled and verified the artifact in its staging area: byte-identical.
    for (i, (cfg, shared)) in agents.iter().enumerate() {
        wait_for(
            &format!("agent {i} to stage the artifact"),
            Duration::from_secs(30),
            || {
                shared.status.lock().unwrap().as_ref().is_some_and(|s| {
                    s.releases
                        .iter()
                        .any(|r| r.id == release && r.state.name() == "staged")
                })
            },
        )
        .await;
        let staged = cfg.data_dir.join("staging").join(release.to_hex());
        let file = std::fs::read_dir(&staged)
            .unwrap()
            .next()
            .expect("a staged file")
            .unwrap()
            .path();
        assert_eq!(
            std::fs::read(&file).unwrap(),
            artifact,
            "agent {i} staged different bytes"
        );
    }
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
    }
}
