//! Real agents on 127.0.0.1 (the agent's `testbed`): a seeder serves a
//! published release and every agent ends up with the same verified bytes,
//! whether a peer lies, an agent is killed mid-download, or links are
//! rate-limited.

use std::path::Path;
use std::time::{Duration, Instant};
use waveguard_agent::store::{CheckDepth, Store};
use waveguard_agent::testbed::{chunks_stored, counters, AgentSpec, ReleaseSpec, Testbed};
use waveguard_protocol::limits::BAN_MS;

fn release(size: u64, chunk_avg: &str) -> ReleaseSpec {
    ReleaseSpec {
        size,
        chunk_avg: chunk_avg.into(),
        ..ReleaseSpec::default()
    }
}

fn seeder() -> AgentSpec {
    AgentSpec {
        seed: true,
        ..AgentSpec::default()
    }
}

/// Every chunk in the store at `data_dir` (of a stopped agent) verifies against its hash.
fn store_verifies(data_dir: &Path) {
    let store = Store::open(data_dir).expect("store opens");
    let report = store.check_chunks(CheckDepth::Full).expect("store check");
    assert!(
        report.dropped.is_empty(),
        "{} holds damaged chunks: {report:?}",
        data_dir.display()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twelve_agents_get_a_64_mib_release_from_one_seeder_that_uploads_it_a_few_times() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut bed, published) = Testbed::publish(tmp.path(), &release(64 << 20, "1MiB")).unwrap();
    let seed = bed.start(&seeder()).await.unwrap();
    let mut agents = Vec::new();
    for _ in 0..12 {
        agents.push(bed.start(&AgentSpec::default()).await.unwrap());
    }
    bed.wait_staged(&agents, &published.release, Duration::from_secs(240))
        .await
        .unwrap();
    for &i in &agents {
        let bytes = bed.staged_bytes(i, &published.release).unwrap();
        assert_eq!(bytes.len() as u64, published.size, "agent {i}");
        assert_eq!(
            *blake3::hash(&bytes).as_bytes(),
            published.blake3,
            "agent {i} staged different bytes"
        );
    }
    // Let the traffic counters take their last sample.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let up = counters(&bed.members[seed].shared).traffic;
    let sent = up.lan.sent + up.wan.sent;
    let multiple = sent as f64 / published.size as f64;
    println!("seeder uploaded {sent} bytes = {multiple:.2} x the release to 12 agents");
    assert!(
        sent >= published.size,
        "the seeder must send every chunk at least once"
    );
    assert!(
        multiple < 6.0,
        "the seeder uploaded {multiple:.2} times the release; the agents should share it"
    );
    bed.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_serving_corrupt_chunks_is_banned_by_each_peer_at_its_first_bad_chunk() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut bed, published) = Testbed::publish(tmp.path(), &release(8 << 20, "256KiB")).unwrap();
    // The honest seeder is slow and the liar fast, so every agent asks the liar early.
    let honest = bed
        .start(&AgentSpec {
            upload: 2 << 20,
            ..seeder()
        })
        .await
        .unwrap();
    let liar = bed
        .start(&AgentSpec {
            corrupt_uploads: true,
            ..seeder()
        })
        .await
        .unwrap();
    let mut agents = Vec::new();
    for _ in 0..5 {
        let spec = AgentSpec {
            bootstrap: vec![liar, honest],
            ..AgentSpec::default()
        };
        agents.push(bed.start(&spec).await.unwrap());
    }
    bed.wait_staged(&agents, &published.release, Duration::from_secs(120))
        .await
        .unwrap();
    for &i in &agents {
        let c = counters(&bed.members[i].shared);
        assert_eq!(
            c.chunks_rejected, 1,
            "agent {i} rejected {} chunks: the liar must be banned at its first",
            c.chunks_rejected
        );
        assert!(c.peers_banned >= 1, "agent {i} banned nobody");
        // The engine's ban lasts an hour (BAN_MS), and the network layer holds it as long.
        let ban = c.recent_bans.back().expect("the liar's ban is recorded");
        let until = ban.until.expect("an engine ban has an end");
        // `until` is the engine's ban time plus BAN_MS, `at` the driver's clock a moment later.
        let length = until.millis_since(ban.at);
        assert!(
            (BAN_MS - 10_000..=BAN_MS).contains(&length),
            "agent {i}: the liar is banned for {length} ms, not {BAN_MS}"
        );
        let bytes = bed.staged_bytes(i, &published.release).unwrap();
        assert_eq!(
            *blake3::hash(&bytes).as_bytes(),
            published.blake3,
            "agent {i}"
        );
    }
    // Honest agents only ever banned the liar, never each other or the seeder.
    let banned: u64 = agents
        .iter()
        .map(|&i| counters(&bed.members[i].shared).peers_banned)
        .sum();
    assert_eq!(banned, agents.len() as u64);
    let (_, total) = chunks_stored(&bed.members[agents[0]].shared, &published.release);
    assert!(total > 8);
    let dirs: Vec<_> = agents
        .iter()
        .map(|&i| bed.members[i].config.data_dir.clone())
        .collect();
    bed.shutdown().await;
    for dir in dirs {
        store_verifies(&dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_killed_mid_download_resumes_without_fetching_a_stored_chunk_again() {
    let tmp = tempfile::tempdir().unwrap();
    // Small chunks make the download long enough to interrupt.
    let (mut bed, published) = Testbed::publish(tmp.path(), &release(24 << 20, "64KiB")).unwrap();
    bed.start(&seeder()).await.unwrap();
    let agent = bed.start(&AgentSpec::default()).await.unwrap();
    let shared = bed.members[agent].shared.clone();
    let started = Instant::now();
    loop {
        let (have, total) = chunks_stored(&shared, &published.release);
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
    bed.kill(agent).await;

    // Restart on the same data directory; the store may stay locked for a moment by blocking work.
    let config = bed.members[agent].config.clone();
    let opened = Instant::now();
    let driver = loop {
        match waveguard_agent::daemon::start(&config, None) {
            Ok(d) => break d,
            Err(_) if opened.elapsed() < Duration::from_secs(20) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("restart failed: {e:#}"),
        }
    };
    let shared = driver.shared();
    let (held_at_restart, total) = chunks_stored(&shared, &published.release);
    assert!(
        held_at_restart > 0,
        "the chunks stored before the kill survive it"
    );
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(driver.run(async move {
        let _ = stop_rx.changed().await;
    }));
    waveguard_agent::testbed::wait_for(
        "the restarted agent to finish",
        Duration::from_secs(60),
        || waveguard_agent::testbed::is_staged(&shared, &published.release),
    )
    .await
    .unwrap();
    let fetched_after = counters(&shared).chunks_stored;
    assert_eq!(
        fetched_after,
        u64::from(total - held_at_restart),
        "after the restart only the {} missing chunks are fetched",
        total - held_at_restart
    );
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
    // The restarted agent kept the testbed member's data directory.
    let bytes = bed.staged_bytes(agent, &published.release).unwrap();
    assert_eq!(*blake3::hash(&bytes).as_bytes(), published.blake3);
    bed.shutdown().await;
}

/// Publishes 3 MiB, starts a seeder with `seed_upload` and one agent with
/// `download`; returns how long the agent took to stage the release and the
/// release size, after checking nothing was banned or rejected.
async fn limited_transfer(seed_upload: u64, download: u64) -> (Duration, u64) {
    let tmp = tempfile::tempdir().unwrap();
    let size: u64 = 3 << 20;
    let (mut bed, published) = Testbed::publish(tmp.path(), &release(size, "256KiB")).unwrap();
    bed.start(&AgentSpec {
        upload: seed_upload,
        ..seeder()
    })
    .await
    .unwrap();
    let agent = bed
        .start(&AgentSpec {
            download,
            ..AgentSpec::default()
        })
        .await
        .unwrap();
    let took = bed
        .wait_staged(&[agent], &published.release, Duration::from_secs(60))
        .await
        .unwrap()[0];
    let c = counters(&bed.members[agent].shared);
    assert_eq!(
        c.peers_banned, 0,
        "a rate limit made the agent ban its seeder"
    );
    assert_eq!(c.chunks_rejected, 0);
    let bytes = bed.staged_bytes(agent, &published.release).unwrap();
    assert_eq!(*blake3::hash(&bytes).as_bytes(), published.blake3);
    bed.shutdown().await;
    (took, size)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_slow_transfers_down_without_timeouts_or_bans() {
    // 512 KiB/s: 3 MiB takes about six seconds instead of a fraction of one.
    let rate: u64 = 512 << 10;
    for (who, upload, download) in [
        ("upload-limited seeder", rate, 0),
        ("download-limited agent", 0, rate),
    ] {
        let (took, size) = limited_transfer(upload, download).await;
        println!("{who}: {took:?} for {size} bytes at {rate} B/s");
        // Allow for the buckets' initial bursts.
        let floor = Duration::from_secs_f64(size as f64 * 0.8 / rate as f64);
        assert!(
            took >= floor,
            "the {who} moved {size} bytes in {took:?}, faster than its limit"
        );
    }
}
