//! Retiring a release end to end (protocol 15.8): the vendor publishes 2.0,
//! which shares half its chunks with 1.0, and unpublishes 1.0. An agent that
//! installed 1.0 takes the new metadata, drops 1.0's own chunks, chunk list
//! and staged artifact from its store, keeps the shared chunks, and installs
//! 2.0 without fetching the shared half again. The real `waveguard` binary:
//! `publish`, `unpublish`, `seed` and `agent`.

mod daemons;

use daemons::{
    arg, check_chunk_files, chunk_file, installed, run_seeder, Daemon, Node, Rng, Vendor,
};
use std::collections::HashSet;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(120);
const HALF: usize = 1 << 20;

#[test]
fn an_unpublished_release_leaves_the_agents_store_and_shared_chunks_stay() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let vendor = Vendor::new(&tmp.path().join("vendor"));
    let mut rng = Rng::from_env("WG_RETIRE_SEED");
    let old_bytes = rng.bytes(2 * HALF);
    let mut new_bytes = old_bytes.clone();
    new_bytes[HALF..].copy_from_slice(&rng.bytes(HALF));
    let old = vendor.publish("acme", "1.0", &old_bytes);

    let seeder = Node::new(&tmp.path().join("seeder"), &tmp.path().join("seeder/data"));
    let seeder_config = seeder.write_config("seeder", &vendor.root(), &[], 0, "");
    let mut seed = run_seeder(&seeder, &vendor, &seeder_config, 1, LIMIT);
    let a = Node::new(&tmp.path().join("a"), &tmp.path().join("a/data"));
    let a_config = a.write_config("endpoint", &vendor.root(), &[&seeder], 0, "");
    let start_a = |n: usize| {
        let mut d = Daemon::start(
            &["agent", "--config", arg(&a_config)],
            &a.dir.join(format!("agent-{n}.log")),
            "info",
        );
        d.wait_ready(&a, LIMIT);
        d
    };
    let mut a_daemon = start_a(1);
    daemons::wait_for(LIMIT, "A to install 1.0", || {
        installed(&a.data, "acme").filter(|(v, _)| v.starts_with("1.0-"))
    });

    // The vendor moves on: 2.0 out, 1.0 withdrawn; the seeder restarts on the new metadata.
    seed.kill();
    let new = vendor.publish("acme", "2.0", &new_bytes);
    vendor.unpublish("acme", "1.0");
    seed = run_seeder(&seeder, &vendor, &seeder_config, 2, LIMIT);
    a_daemon.kill();
    a_daemon = start_a(2);

    let status = daemons::wait_for(LIMIT, "A to retire 1.0 and install 2.0", || {
        let s = a.status()?;
        let done = s.counters.releases_forgotten >= 1
            && installed(&a.data, "acme").is_some_and(|(v, _)| v.starts_with("2.0-"));
        done.then_some(s)
    });
    assert!(
        status.releases.iter().all(|r| r.id != old.release),
        "1.0 is still followed: {:?}",
        status.releases
    );
    let shared: HashSet<[u8; 32]> = old
        .chunks
        .iter()
        .filter(|c| new.chunks.contains(c))
        .copied()
        .collect();
    assert!(!shared.is_empty(), "1.0 and 2.0 share no chunk");
    for c in &old.chunks {
        let exists = chunk_file(&a.data, c).exists();
        assert_eq!(exists, shared.contains(c), "chunk {}", hex::encode(c));
    }
    for c in &new.chunks {
        assert!(
            chunk_file(&a.data, c).exists(),
            "2.0 chunk {}",
            hex::encode(c)
        );
    }
    assert!(!a.data.join("staging").join(&old.release).exists());
    assert_eq!(check_chunk_files(&a.data), new.chunks.len());
    let freed = status.counters.bytes_forgotten;
    eprintln!(
        "freed {freed} bytes; {} of 1.0's {} chunks shared with 2.0 stayed",
        shared.len(),
        old.chunks.len()
    );
    assert!(freed > 0 && freed < 2 * HALF as u64, "{freed} bytes freed");
    let log = a_daemon.log_text();
    assert!(log.contains("its stored data removed"), "{log}");
    drop(seed);
}
