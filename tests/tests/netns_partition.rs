//! A site cut off from the fleet learns the fleet's halt when the link heals
//! (docs/protocol.md 11.11, halt sync), with real agents on real network stacks.
//!
//! `scripts/testbed/netns.sh` builds two sites joined through a WAN
//! namespace: "hq" (the vendor's seeder, three canaries whose health probe
//! fails, one agent of the second wave) and "ship" (two canaries whose probe
//! passes, two agents of the second wave), every host in its own namespace,
//! every agent a real `waveguard` process bootstrapping from the seeder. Node
//! keys are chosen to put each agent in its wave.
//!
//! Once every agent has staged the release, the ship's link to the WAN goes
//! down, before wave 0 opens, so nothing about wave 0 crosses it. Wave 0
//! opens: hq's canaries fail and hq halts; the ship's canaries install and
//! stay healthy, so on the ship's own evidence its canary gate would pass
//! when wave 0 has baked and the ship's second wave would install. The test
//! waits until every connection across the cut has dropped (the hosts' TCP
//! gives up after a few seconds of unanswered retransmissions:
//! `net.ipv4.tcp_retries2` is lowered in each namespace to stand in for a cut
//! of hours) and hq has halted, keeps the link down `CUT_HOLD` longer, checks
//! that no ship agent knows of the halt, then brings the link back up with no
//! other action. Every ship agent must
//! then reconnect by itself and show the release halted (its canaries on the
//! failed canary gate, not on their own probes) within `HALT_LIMIT`, and
//! none may install after the heal, in particular not when the ship's
//! second wave would have opened.
//!
//! Needs root and `ip netns`; without them it says so on stderr
//! (`SKIPPED netns_partition: ...`) and returns.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use waveguard_agent::api::{HaltView, StatusView};
use waveguard_agent::repo::Repo;
use waveguard_protocol::wave::{wave_of, WavePin};
use waveguard_protocol::SigningKey;
use waveguard_tests::netns::{can_use_netns, run, waveguard_bin, Testbed};

/// Hosts per site: hq (host 0 the seeder, hosts 1 to 4 agents), then the ship
/// (hosts 5 to 8).
const SITES: &str = "5,4";
/// The hq agents, and which of them are canaries with a failing probe.
const HQ_AGENTS: [usize; 4] = [1, 2, 3, 4];
const HQ_BAD_CANARIES: [usize; 3] = [1, 2, 3];
/// The ship's agents, and which of them are canaries (their probe passes).
const SHIP_AGENTS: [usize; 4] = [5, 6, 7, 8];
const SHIP_CANARIES: [usize; 2] = [5, 6];
/// The ship's router namespace is site 1's; its veth to the WAN is `wan0`,
/// whose far end (in the WAN namespace) is 10.77.201.1.
const SHIP_SITE: usize = 1;
const SHIP_GATEWAY: &str = "10.77.201.1";
/// Two waves. Wave 0 bakes long enough that the ship's second wave opens
/// well after the heal: the halt must reach the ship before then.
const WAVE0_BAKE_SECS: u64 = 55;
/// `min_reports` 2 and `max_failure` 50%: hq's three failing canaries fail
/// the canary gate on their own; the ship's two healthy canaries would pass
/// it on the ship's evidence alone; together (three failures of five) it fails.
const MIN_REPORTS: &str = "2";
const MAX_FAILURE: &str = "50%";
/// Seconds from publishing until wave 0 opens: enough to build the testbed,
/// start the agents and stage the small release on both sites.
const START_IN_SECS: u64 = 15;
const RELEASE_BYTES: usize = 1 << 20;
/// Cut the link no later than this before wave 0 opens, so no wave-0 report
/// can cross it.
const CUT_MARGIN: Duration = Duration::from_secs(2);
/// TCP retransmissions before a host gives a connection up (the default, 15,
/// takes about 15 minutes): 4 takes about 6 s.
const TCP_RETRIES2: &str = "4";
/// Longest the cut may take to drop every connection across it and to see hq halt.
const CUT_LIMIT: Duration = Duration::from_secs(60);
/// How long the link stays cut after the last connection across it dropped:
/// long enough that the agents' redials have backed off (1, 2, 4, 8, 16 s...)
/// as after a long cut, rather than catching the heal on their first try.
const CUT_HOLD: Duration = Duration::from_secs(20);
/// Longest wait, from the heal, for every ship agent to show the halt.
const HALT_LIMIT: Duration = Duration::from_secs(30);

/// The agents' extra configuration: the install hook appends the wall clock
/// in ms (so a second install shows), and the probe fails where a file `bad`
/// exists in the host's directory.
const CONFIG_EXTRA: &str = "[hooks]\n\
    install = [\"sh\", \"-c\", \"date +%s%3N >> @DIR@/installed-at\"]\n\
    probe = [\"sh\", \"-c\", \"test ! -e @DIR@/bad\"]\n\
    timeout_secs = 10\n";

/// Milliseconds since the epoch.
fn epoch_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_millis() as u64
}

/// Publishes a two-wave release of pseudo-random bytes whose wave 0 opens
/// `START_IN_SECS` from now; returns the release directory.
fn publish(bin: &Path, dir: &Path) -> PathBuf {
    let p = |n: &str| dir.join(n).to_string_lossy().into_owned();
    let wg = |args: &[&str]| run(&bin.to_string_lossy(), args).unwrap_or_else(|e| panic!("{e}"));
    wg(&["keygen", "--out", &p("vendor.key")]);
    let key = p("vendor.key");
    wg(&[
        "root",
        "init",
        "--out",
        &p("repo"),
        "--root-key",
        &key,
        "--targets-key",
        &key,
        "--snapshot-key",
        &key,
        "--timestamp-key",
        &key,
    ]);
    let mut data = vec![0u8; RELEASE_BYTES];
    blake3::Hasher::new()
        .update(b"netns_partition")
        .finalize_xof()
        .fill(&mut data);
    std::fs::write(dir.join("app.bin"), &data).expect("write the artifact");
    let start = run(
        "date",
        &[
            "-u",
            "-d",
            &format!("+{START_IN_SECS} seconds"),
            "+%Y-%m-%dT%H:%M:%SZ",
        ],
    )
    .expect("date computes the start time");
    wg(&[
        "publish",
        &p("app.bin"),
        "--repo",
        &p("repo"),
        "--product",
        "acme",
        "--version",
        "1.0",
        "--key",
        &key,
        "--start",
        start.trim(),
        "--chunk-avg",
        "256KiB",
        "--waves",
        &format!("canary:50%:{WAVE0_BAKE_SECS}s,all:100%:0s"),
        "--min-reports",
        MIN_REPORTS,
        "--max-failure",
        MAX_FAILURE,
        "--heartbeat",
        "1s",
        "--silence",
        "30s",
    ]);
    dir.join("repo")
}

/// Writes a node key into each agent's data directory that puts it in its
/// wave (the canaries in wave 0, the others in wave 1). Returns the agents'
/// peer IDs by host and every wave's scheduled opening (ms).
fn place_agents(repo: &Path, work: &Path) -> (Vec<(usize, String)>, Vec<u64>) {
    let root = repo.join("metadata/1.root.json");
    let loaded = waveguard_agent::trusted::load(
        &Repo::new(repo),
        Some(&root),
        waveguard_agent::driver::now(),
    )
    .expect("the release directory verifies");
    let release = loaded
        .state
        .releases()
        .into_iter()
        .next()
        .expect("the published release");
    let policy = release.policy();
    let mut tries = 0u64;
    let mut peers = Vec::new();
    for host in HQ_AGENTS.into_iter().chain(SHIP_AGENTS) {
        let canary = HQ_BAD_CANARIES.contains(&host) || SHIP_CANARIES.contains(&host);
        let wave = if canary { 0 } else { 1 };
        let key = loop {
            tries += 1;
            assert!(tries < 100_000, "found no node key for wave {wave}");
            let seed = *blake3::hash(format!("{}-{host}-{tries}", std::process::id()).as_bytes())
                .as_bytes();
            let key = SigningKey::from_seed(seed);
            if wave_of(policy, &release.id, &key.node_id(), WavePin::None) == wave {
                break key;
            }
        };
        let data = work.join(format!("host{host}/data"));
        std::fs::create_dir_all(&data).expect("agent data directory");
        waveguard_agent::keyfile::write_secret(&data.join("node.key"), &key)
            .expect("write a node key");
        peers.push((host, key.node_id().to_peer_id_string()));
    }
    let opens = (0..=policy.waves.len())
        .map(|w| policy.scheduled_open(w).as_millis())
        .collect();
    (peers, opens)
}

/// Host `host`'s status from its API, or why not.
fn status(lab: &Testbed, host: usize) -> Result<StatusView, String> {
    let body = Testbed::in_ns(
        &lab.host_ns(host),
        &["curl", "-sf", "-m", "3", "http://127.0.0.1:7070/status"],
    )?;
    serde_json::from_str(&body).map_err(|e| format!("host {host}: bad status JSON: {e}"))
}

/// What the test needs of one status: the release's state and halt, and
/// whether any of `hq` is among the connected peers.
struct Seen {
    state: String,
    halt: Option<HaltView>,
    hq_peers: usize,
}

fn seen(lab: &Testbed, host: usize, hq: &HashSet<String>) -> Seen {
    match status(lab, host) {
        Ok(s) => {
            let release = s.releases.first();
            Seen {
                state: release.map_or("none".into(), |r| r.state.clone()),
                halt: release.and_then(|r| r.halt.clone()),
                hq_peers: s
                    .connected
                    .list
                    .iter()
                    .filter(|p| hq.contains(&p.id))
                    .count(),
            }
        }
        Err(e) => Seen {
            state: format!("unknown ({e})"),
            halt: None,
            hq_peers: 0,
        },
    }
}

/// Every install time host `host`'s install hook wrote, in ms since the epoch.
fn installs(work: &Path, host: usize) -> Vec<u64> {
    std::fs::read_to_string(work.join(format!("host{host}/installed-at")))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// A one-line summary of every agent, for failure messages.
fn summary(lab: &Testbed, hq: &HashSet<String>) -> String {
    (0..=8)
        .map(|h| {
            let s = seen(lab, h, hq);
            format!(
                "host {h}: {} halt {:?}, {} hq peers",
                s.state, s.halt, s.hq_peers
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[test]
fn a_ship_cut_off_during_a_halt_learns_it_when_the_link_heals() {
    if let Err(reason) = can_use_netns().and_then(|()| run("curl", &["--version"]).map(|_| ())) {
        eprintln!("SKIPPED netns_partition: cannot create network namespaces ({reason})");
        return;
    }
    let bin = waveguard_bin("netns_partition");
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let work = tmp.path().join("work");
    let repo = publish(&bin, tmp.path());
    let (agent_peers, opens) = place_agents(&repo, &work);
    let (wave0, wave1) = (opens[0], opens[1]);
    // Times in the log are from wave 0's scheduled opening.
    let rel = |ms: u64| format!("{:+.1} s", (ms as i64 - wave0 as i64) as f64 / 1000.0);

    let lab = Testbed::up(
        &format!("np{}", std::process::id()),
        &[
            "--sites",
            SITES,
            "--up",
            "100mbit",
            "--down",
            "100mbit",
            "--wan-rate",
            "20mbit",
        ],
    );
    for host in 0..=8 {
        Testbed::in_ns(
            &lab.host_ns(host),
            &[
                "sysctl",
                "-qw",
                &format!("net.ipv4.tcp_retries2={TCP_RETRIES2}"),
            ],
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }
    for host in HQ_BAD_CANARIES {
        std::fs::write(work.join(format!("host{host}/bad")), "").expect("mark a bad canary");
    }
    let extra = tmp.path().join("extra.toml");
    std::fs::write(&extra, CONFIG_EXTRA).expect("write the config fragment");
    start_processes(&lab, &bin, &work, &repo, &extra);
    let seeder_peer = std::fs::read_to_string(work.join("host0/peer-id"))
        .expect("netns.sh wrote the seeder's peer ID")
        .trim()
        .to_string();
    let hq: HashSet<String> = agent_peers
        .iter()
        .filter(|(h, _)| HQ_AGENTS.contains(h))
        .map(|(_, p)| p.clone())
        .chain([seeder_peer])
        .collect();

    // Both sites have the release before the cut, and the ship is connected to hq.
    let all_agents: Vec<usize> = HQ_AGENTS.into_iter().chain(SHIP_AGENTS).collect();
    loop {
        let views: Vec<Seen> = all_agents.iter().map(|&h| seen(&lab, h, &hq)).collect();
        let staged = views.iter().all(|s| s.state == "staged");
        let linked = views[HQ_AGENTS.len()..].iter().all(|s| s.hq_peers > 0);
        if staged && linked {
            break;
        }
        if epoch_ms() + CUT_MARGIN.as_millis() as u64 >= wave0 {
            let kept = tmp.keep();
            panic!(
                "not every agent staged the release (or the ship is not connected to hq) in time \
                 to cut the link before wave 0 opens: {}; logs in {}",
                summary(&lab, &hq),
                kept.join("work").display()
            );
        }
        std::thread::sleep(Duration::from_millis(300));
    }

    // The cut: the ship router's link to the WAN goes down (its routes with it).
    let router = lab.router_ns(SHIP_SITE);
    Testbed::in_ns(&router, &["ip", "link", "set", "wan0", "down"])
        .unwrap_or_else(|e| panic!("{e}"));
    let (cut, cut_ms) = (Instant::now(), epoch_ms());
    eprintln!("netns_partition: link cut at {}", rel(cut_ms));

    // Until every connection across the cut has dropped, hq has halted and the
    // ship's canaries are baking the release; no ship agent may know of the halt.
    let (mut dropped_ms, mut hq_halted_ms) = (None, None);
    loop {
        let ship: Vec<(usize, Seen)> = SHIP_AGENTS
            .iter()
            .map(|&h| (h, seen(&lab, h, &hq)))
            .collect();
        for (h, s) in &ship {
            assert!(
                s.halt.is_none(),
                "ship host {h} learned of the halt during the cut ({:?}): the cut leaks",
                s.halt
            );
        }
        if dropped_ms.is_none() && ship.iter().all(|(_, s)| s.hq_peers == 0) {
            dropped_ms = Some(epoch_ms());
        }
        if hq_halted_ms.is_none()
            && [0, 4].iter().all(|&h| {
                matches!(
                    seen(&lab, h, &hq).halt,
                    Some(HaltView::GateFailed { wave: 0, .. })
                )
            })
        {
            hq_halted_ms = Some(epoch_ms());
        }
        let canaries_baking = ship
            .iter()
            .filter(|(h, _)| SHIP_CANARIES.contains(h))
            .all(|(_, s)| s.state == "baking");
        if dropped_ms.is_some_and(|d| epoch_ms() >= d + CUT_HOLD.as_millis() as u64)
            && hq_halted_ms.is_some()
            && canaries_baking
        {
            break;
        }
        if cut.elapsed() > CUT_LIMIT + CUT_HOLD {
            let kept = tmp.keep();
            panic!(
                "within {CUT_LIMIT:?} (+ {CUT_HOLD:?}) of the cut, not every connection across it dropped \
                 ({dropped_ms:?}), hq did not halt ({hq_halted_ms:?}) or the ship's canaries are \
                 not baking: {}; logs in {}",
                summary(&lab, &hq),
                kept.join("work").display()
            );
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let (dropped_ms, hq_halted_ms) = (dropped_ms.expect("set"), hq_halted_ms.expect("set"));

    // The heal: the link comes back up and the router gets its default route
    // back. Nothing is done to any agent.
    Testbed::in_ns(&router, &["ip", "link", "set", "wan0", "up"]).unwrap_or_else(|e| panic!("{e}"));
    Testbed::in_ns(
        &router,
        &["ip", "route", "replace", "default", "via", SHIP_GATEWAY],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let (heal, heal_ms) = (Instant::now(), epoch_ms());
    eprintln!(
        "netns_partition: every connection across the cut dropped at {}, hq halted at {}, \
         link healed at {} after a {:.1} s cut ({:.1} s without any connection across it); \
         the ship's wave 1 would open at {}",
        rel(dropped_ms),
        rel(hq_halted_ms),
        rel(heal_ms),
        (heal_ms - cut_ms) as f64 / 1000.0,
        (heal_ms - dropped_ms) as f64 / 1000.0,
        rel(wave1),
    );

    let mut reconnected: [Option<Duration>; 4] = [None; 4];
    let mut halted: [Option<Duration>; 4] = [None; 4];
    while halted.iter().any(Option::is_none) {
        for (i, &h) in SHIP_AGENTS.iter().enumerate() {
            if halted[i].is_some() {
                continue;
            }
            let s = seen(&lab, h, &hq);
            if reconnected[i].is_none() && s.hq_peers > 0 {
                reconnected[i] = Some(heal.elapsed());
            }
            if let Some(halt) = s.halt {
                assert!(
                    matches!(halt, HaltView::GateFailed { wave: 0, .. }),
                    "ship host {h} halted for another reason: {halt}"
                );
                halted[i] = Some(heal.elapsed());
                reconnected[i].get_or_insert(heal.elapsed());
            }
        }
        if heal.elapsed() > HALT_LIMIT {
            let kept = tmp.keep();
            panic!(
                "within {HALT_LIMIT:?} of the heal, not every ship agent showed the halt \
                 (reconnected to hq after {reconnected:?}, halted after {halted:?}): {}; logs in {}",
                summary(&lab, &hq),
                kept.join("work").display()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    for (i, &h) in SHIP_AGENTS.iter().enumerate() {
        eprintln!(
            "netns_partition: ship host {h} ({}): first connection to hq {:.1} s and halt {:.1} s \
             after the heal; now {}",
            if SHIP_CANARIES.contains(&h) {
                "canary"
            } else {
                "wave 1"
            },
            reconnected[i].expect("set").as_secs_f64(),
            halted[i].expect("set").as_secs_f64(),
            seen(&lab, h, &hq).state,
        );
    }

    // Past the time the ship's wave 1 would have opened on its own evidence:
    // no ship agent installs after the heal.
    while epoch_ms() < wave1 + 3_000 {
        std::thread::sleep(Duration::from_millis(300));
    }
    for h in SHIP_AGENTS {
        let late: Vec<String> = installs(&work, h)
            .into_iter()
            .filter(|&t| t >= heal_ms)
            .map(rel)
            .collect();
        assert!(
            late.is_empty(),
            "ship host {h} installed at {late:?}, after the heal at {}",
            rel(heal_ms)
        );
        let s = seen(&lab, h, &hq);
        assert!(
            s.halt.is_some()
                && ["halted", "rolling-back", "rolled-back"].contains(&s.state.as_str()),
            "ship host {h} is {} (halt {:?}) at the end",
            s.state,
            s.halt
        );
    }
    for h in SHIP_CANARIES {
        assert!(
            !installs(&work, h).is_empty(),
            "ship canary {h} never installed: the ship's own canaries were to pass during the cut"
        );
    }
    eprintln!(
        "netns_partition: every ship agent knew of the halt {:.1} s after the heal at the latest; \
         none installed after it",
        halted
            .iter()
            .flatten()
            .max()
            .expect("four agents")
            .as_secs_f64()
    );
    drop(lab);
}

/// Starts the seeder on host 0 and the agents on hosts 1 to 8.
fn start_processes(lab: &Testbed, bin: &Path, work: &Path, repo: &Path, extra: &Path) {
    waveguard_tests::netns::netns(&[
        "run",
        &lab.name,
        "--bin",
        &bin.to_string_lossy(),
        "--work",
        &work.to_string_lossy(),
        "--root",
        &repo.join("metadata/1.root.json").to_string_lossy(),
        "--seeder",
        "0",
        "--repo",
        &repo.to_string_lossy(),
        "--agents",
        "1-8",
        "--config-extra",
        &extra.to_string_lossy(),
        "--wait",
        "20",
    ])
    .unwrap_or_else(|e| panic!("the agents did not start: {e}"));
}
