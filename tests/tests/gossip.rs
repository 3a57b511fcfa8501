//! A real agent as a gossip relay: between an injecting peer and an
//! observer, it forwards genuine metadata and drops forged and rolled-back
//! manifests instead of passing them on.

use serde_bytes::ByteBuf;
use std::path::Path;
use std::time::{Duration, Instant};
use waveguard_agent::cli::run_at;
use waveguard_agent::config::{Config, Role};
use waveguard_agent::daemon;
use waveguard_agent::driver::now;
use waveguard_agent::net::{Keypair, NetConfig, NetEvent, Network};
use waveguard_protocol::wire::{Gossip, MetadataBundle, TOPIC_METADATA};

fn bundle(repo: &Path) -> MetadataBundle {
    let read = |f: &str| ByteBuf::from(std::fs::read(repo.join("metadata").join(f)).unwrap());
    MetadataBundle {
        roots: vec![read("1.root.json")],
        timestamp: read("timestamp.json"),
        snapshot: read("snapshot.json"),
        targets: read("targets.json"),
    }
}

/// Publishes two versions; returns the bundle after each.
fn two_bundles(dir: &Path) -> (MetadataBundle, MetadataBundle) {
    let at = now();
    let p = |n: &str| dir.join(n).to_string_lossy().into_owned();
    let cli = |args: &[&str]| {
        let mut argv = vec!["waveguard"];
        argv.extend_from_slice(args);
        run_at(argv, at).unwrap_or_else(|e| panic!("waveguard {args:?}: {e:#}"));
    };
    cli(&["keygen", "--out", &p("k")]);
    cli(&[
        "root",
        "init",
        "--out",
        &p("repo"),
        "--root-key",
        &p("k"),
        "--targets-key",
        &p("k"),
        "--snapshot-key",
        &p("k"),
        "--timestamp-key",
        &p("k"),
    ]);
    std::fs::write(dir.join("a.bin"), vec![7u8; 100_000]).unwrap();
    let start = at.plus_secs(3600).to_rfc3339();
    cli(&[
        "publish",
        &p("a.bin"),
        "--repo",
        &p("repo"),
        "--product",
        "acme",
        "--version",
        "1.0",
        "--key",
        &p("k"),
        "--start",
        &start,
        "--chunk-avg",
        "64KiB",
    ]);
    let first = bundle(&dir.join("repo"));
    cli(&[
        "publish",
        &p("a.bin"),
        "--repo",
        &p("repo"),
        "--product",
        "acme",
        "--version",
        "1.1",
        "--key",
        &p("k"),
        "--start",
        &start,
        "--chunk-avg",
        "64KiB",
    ]);
    (first, bundle(&dir.join("repo")))
}

/// Pumps both raw peers for `span`, returning the gossip payloads the observer received.
async fn pump(x: &mut Network, c: &mut Network, span: Duration) -> Vec<Vec<u8>> {
    let until = tokio::time::Instant::now() + span;
    let mut got = Vec::new();
    loop {
        tokio::select! {
            _ = x.next_event() => {}
            e = c.next_event() => {
                if let NetEvent::Gossip { data, message_id, .. } = e {
                    let _ = c.report_verdict(message_id, waveguard_agent::net::Verdict::Ignore);
                    got.push(data);
                }
            }
            () = tokio::time::sleep_until(until) => return got,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_rolled_back_manifests_are_dropped_not_forwarded() {
    let tmp = tempfile::tempdir().unwrap();
    let (older, newer) = two_bundles(tmp.path());
    let mut forged = newer.clone();
    let mut t = forged.targets.to_vec();
    let at = t.len() / 2;
    t[at] ^= 1;
    forged.targets = ByteBuf::from(t);

    let defaults = Config::default();
    let cfg = Config {
        data_dir: tmp.path().join("relay"),
        trusted_root: Some(tmp.path().join("repo/metadata/1.root.json")),
        role: Role::Endpoint,
        network: waveguard_agent::config::Network {
            listen: vec!["/ip4/127.0.0.1/tcp/0".into()],
            mdns: false,
            ..defaults.network.clone()
        },
        ..defaults
    };
    let relay = daemon::start(&cfg, None).expect("relay starts");
    let relay_id = relay.node_id().to_peer_id_string();
    let shared = relay.shared();
    let (_stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(relay.run(async move {
        let _ = stop_rx.changed().await;
    }));
    let started = Instant::now();
    while shared.listen.lock().unwrap().is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "relay never listened"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let addr: waveguard_agent::net::Multiaddr =
        format!("{}/p2p/{relay_id}", shared.listen.lock().unwrap()[0])
            .parse()
            .unwrap();

    let mut injector = Network::new(Keypair::generate_ed25519(), NetConfig::loopback()).unwrap();
    let mut observer = Network::new(Keypair::generate_ed25519(), NetConfig::loopback()).unwrap();
    // The two raw peers must only meet through the relay (discovery would otherwise connect them).
    observer.ban(injector.local_node_id()).unwrap();
    injector.ban(observer.local_node_id()).unwrap();
    injector.dial(addr.clone()).unwrap();
    observer.dial(addr).unwrap();
    // Let gossipsub build its mesh (heartbeats every second).
    pump(&mut injector, &mut observer, Duration::from_secs(3)).await;

    let genuine = Gossip::Metadata(newer).encode();
    injector.publish(TOPIC_METADATA, genuine.clone()).unwrap();
    let seen = pump(&mut injector, &mut observer, Duration::from_secs(4)).await;
    assert!(
        seen.contains(&genuine),
        "the relay forwards genuine metadata (control)"
    );

    let rolled_back = Gossip::Metadata(older).encode();
    let forged = Gossip::Metadata(forged).encode();
    injector
        .publish(TOPIC_METADATA, rolled_back.clone())
        .unwrap();
    injector.publish(TOPIC_METADATA, forged.clone()).unwrap();
    let seen = pump(&mut injector, &mut observer, Duration::from_secs(4)).await;
    assert!(
        !seen.contains(&rolled_back),
        "a rolled-back manifest was forwarded"
    );
    assert!(!seen.contains(&forged), "a forged manifest was forwarded");
    // And the relay still trusts the newer metadata, not the forged or older one.
    let status = shared.status.lock().unwrap().clone().expect("status");
    assert_eq!(
        status.releases.len(),
        2,
        "both genuine releases are trusted"
    );
    task.abort();
}
