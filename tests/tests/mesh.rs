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
    publish_with(dir, size, "256KiB")
}

fn publish_with(dir: &Path, size: usize, chunk_avg: &str) -> (ReleaseId, Vec<u8>) {
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
    // Pseudo-random bytes with no repeated chunk, so chunk counts equal fetch counts.
    let mut artifact = vec![0u8; size];
    blake3::Hasher::new()
        .update(b"waveguard e2e artifact")
        .finalize_xof()
        .fill(&mut artifact);
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
        chunk_avg,
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

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (seeder_task, _, addr) = start_seeder(tmp.path(), stop_rx.clone()).await;
    let mut tasks = vec![seeder_task];

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
        tasks.push(tokio::spawn(driver.run(stopped(stop_rx.clone()))));
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
        assert_eq!(
            staged_bytes(cfg, shared, &release).await,
            artifact,
            "agent {i} staged different bytes"
        );
    }
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
    }
}

/// Waits until the agent has staged `release`, then reads the staged artifact.
async fn staged_bytes(cfg: &Config, shared: &Shared, release: &ReleaseId) -> Vec<u8> {
    wait_for("the artifact to be staged", Duration::from_secs(30), || {
        shared.status.lock().unwrap().as_ref().is_some_and(|s| {
            s.releases
                .iter()
                .any(|r| &r.id == release && r.state.name() == "staged")
        })
    })
    .await;
    let staged = cfg.data_dir.join("staging").join(release.to_hex());
    let file = std::fs::read_dir(&staged)
        .unwrap()
        .next()
        .expect("a staged file")
        .unwrap()
        .path();
    std::fs::read(&file).unwrap()
}

/// Starts a seeder for `dir/repo`; returns its task, shared state and dialable address.
async fn start_seeder(
    dir: &Path,
    stop: tokio::sync::watch::Receiver<bool>,
) -> (tokio::task::JoinHandle<()>, Shared, String) {
    let root = dir.join("repo/metadata/1.root.json");
    let cfg = config(dir.join("seeder"), root, Role::Seeder, vec![]);
    let seeder = daemon::start(&cfg, Some(&dir.join("repo"))).expect("seeder starts");
    let id = seeder.node_id().to_peer_id_string();
    let shared = seeder.shared();
    let task = tokio::spawn(seeder.run(stopped(stop)));
    wait_for("the seeder to listen", Duration::from_secs(10), || {
        !shared.listen.lock().unwrap().is_empty()
    })
    .await;
    let addr = format!("{}/p2p/{id}", shared.listen.lock().unwrap()[0]);
    (task, shared, addr)
}

async fn stopped(mut rx: tokio::sync::watch::Receiver<bool>) {
    let _ = rx.changed().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_killed_mid_download_resumes_without_fetching_a_stored_chunk_again() {
    let tmp = tempfile::tempdir().unwrap();
    // Small chunks make the download long enough to interrupt.
    let (release, artifact) = publish_with(tmp.path(), 24 << 20, "64KiB");
    let root = tmp.path().join("repo/metadata/1.root.json");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (seeder_task, _, addr) = start_seeder(tmp.path(), stop_rx.clone()).await;

    let cfg = config(tmp.path().join("agent"), root, Role::Endpoint, vec![addr]);
    let driver = daemon::start(&cfg, None).expect("agent starts");
    let shared = driver.shared();
    let task = tokio::spawn(driver.run(stopped(stop_rx.clone())));
    let started = Instant::now();
    loop {
        let (have, total) = chunks_stored(&shared, &release);
        if total > 0 && have >= 3 {
            assert!(
                have < total,
                "the download finished before it could be interrupted ({have} of {total})"
            );
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the download never started"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // Kill it: the task is dropped wherever it is, as with SIGKILL (no shutdown path runs).
    task.abort();
    let _ = task.await;

    // Restart on the same data directory; the store may stay locked for a moment by blocking work.
    let opened = Instant::now();
    let driver = loop {
        match daemon::start(&cfg, None) {
            Ok(d) => break d,
            Err(e) if opened.elapsed() < Duration::from_secs(20) => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("restart failed: {e:#}"),
        }
    };
    let shared = driver.shared();
    let (held_at_restart, total) = chunks_stored(&shared, &release);
    assert!(
        held_at_restart > 0,
        "the chunks stored before the kill survive it"
    );
    let task = tokio::spawn(driver.run(stopped(stop_rx.clone())));
    wait_for(
        "the restarted agent to finish",
        Duration::from_secs(60),
        || {
            let (have, total) = chunks_stored(&shared, &release);
            total > 0 && have == total
        },
    )
    .await;
    let fetched_after = shared.counters.lock().unwrap().chunks_stored;
    assert_eq!(
        fetched_after,
        u64::from(total - held_at_restart),
        "after the restart only the {} missing chunks are fetched",
        total - held_at_restart
    );
    assert_eq!(staged_bytes(&cfg, &shared, &release).await, artifact);
    let _ = stop_tx.send(true);
    for t in [task, seeder_task] {
        let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
    }
}
