//! A real agent as a gossip relay: between an injecting peer and an
//! observer, it forwards genuine metadata and drops forged, under-signed,
//! expired and rolled-back manifests instead of passing them on.

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

/// The manifests a test injects: all but `newer` must be dropped by the relay.
struct Manifests {
    older: MetadataBundle,
    newer: MetadataBundle,
    /// A later version whose timestamp carries no signature.
    under_signed: MetadataBundle,
    /// A later version signed eight days ago, so its timestamp (7 days) has expired.
    expired: MetadataBundle,
}

/// The bundle with every signature removed from its timestamp document.
fn strip_timestamp_signatures(mut b: MetadataBundle) -> MetadataBundle {
    let mut doc: serde_json::Value = serde_json::from_slice(&b.timestamp).unwrap();
    doc["signatures"] = serde_json::Value::Array(Vec::new());
    // serde_json's map is sorted and its output compact: canonical for these ASCII documents.
    b.timestamp = ByteBuf::from(serde_json::to_vec(&doc).unwrap());
    b
}

/// Publishes versions 1.0 and 1.1 now, 1.2 now and 1.3 as of eight days ago.
fn manifests(dir: &Path) -> Manifests {
    let at = now();
    let p = |n: &str| dir.join(n).to_string_lossy().into_owned();
    let cli_at = |args: &[&str], at| {
        let mut argv = vec!["waveguard"];
        argv.extend_from_slice(args);
        run_at(argv, at).unwrap_or_else(|e| panic!("waveguard {args:?}: {e:#}"));
    };
    let cli = |args: &[&str]| cli_at(args, at);
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
    let publish = |version: &str, at| {
        cli_at(
            &[
                "publish",
                &p("a.bin"),
                "--repo",
                &p("repo"),
                "--product",
                "acme",
                "--version",
                version,
                "--key",
                &p("k"),
                "--start",
                &start,
                "--chunk-avg",
                "64KiB",
            ],
            at,
        )
    };
    publish("1.0", at);
    let first = bundle(&dir.join("repo"));
    publish("1.1", at);
    let second = bundle(&dir.join("repo"));
    publish("1.2", at);
    let third = bundle(&dir.join("repo"));
    publish(
        "1.3",
        waveguard_protocol::Timestamp(at.as_millis() - 8 * 86_400_000),
    );
    Manifests {
        older: first,
        newer: second,
        under_signed: strip_timestamp_signatures(third),
        expired: bundle(&dir.join("repo")),
    }
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
async fn forged_under_signed_expired_and_rolled_back_manifests_are_dropped_not_forwarded() {
    let tmp = tempfile::tempdir().unwrap();
    let m = manifests(tmp.path());
    // Offline first: each bad manifest is refused for the reason it is meant to show.
    let root = std::fs::read(tmp.path().join("repo/metadata/1.root.json")).unwrap();
    let mut trust = waveguard_protocol::metadata::trust::TrustedState::new(&root).unwrap();
    trust.apply_bundle(&m.newer, now()).unwrap();
    let why = |b: &MetadataBundle| {
        trust
            .clone()
            .apply_bundle(b, now())
            .unwrap_err()
            .to_string()
    };
    let e = why(&m.under_signed);
    assert!(e.contains("signature"), "{e}");
    let e = why(&m.expired);
    assert!(e.contains("expired"), "{e}");
    let (older, newer) = (m.older, m.newer);
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
    let under_signed = Gossip::Metadata(m.under_signed).encode();
    let expired = Gossip::Metadata(m.expired).encode();
    injector
        .publish(TOPIC_METADATA, under_signed.clone())
        .unwrap();
    injector.publish(TOPIC_METADATA, expired.clone()).unwrap();
    let seen = pump(&mut injector, &mut observer, Duration::from_secs(4)).await;
    assert!(
        !seen.contains(&under_signed),
        "an under-signed manifest was forwarded"
    );
    assert!(
        !seen.contains(&expired),
        "an expired manifest was forwarded"
    );
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
