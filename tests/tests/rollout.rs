//! Canary rollouts on real agents (the agent's `testbed`, 20 agents and a
//! seeder on 127.0.0.1, bake times in seconds): a good release opens its
//! waves in order and reaches everyone; a release whose probe fails, or whose
//! installers go silent, halts at its first wave everywhere and the canaries
//! roll back; health reports from outside the fleet, replays and a single
//! failing node change no gate.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use waveguard_agent::config::HooksConfig;
use waveguard_agent::net::{Keypair, NetConfig, NetEvent, Network};
use waveguard_agent::testbed::{counters, wait_for, AgentSpec, ReleaseSpec, RolloutSpec, Testbed};
use waveguard_protocol::health::directive::{sign_directive, Directive, DirectiveAction};
use waveguard_protocol::health::report::{sign_report, HealthReport, HealthStatus};
use waveguard_protocol::node::ReleaseStatus;
use waveguard_protocol::rollout::{HaltReason, RolloutState};
use waveguard_protocol::wave::WavePin;
use waveguard_protocol::wire::{Gossip, TOPIC_HEALTH};
use waveguard_protocol::{ReleaseId, SigningKey, Timestamp};

/// Agents per wave in every test: 20 in all, wave shares 20% / 30% / 50%.
const LAYOUT: [usize; 3] = [4, 6, 10];

/// Three waves with short bakes; `canary_bake` is wave 0's. Silence is five heartbeats, so a
/// busy test machine does not make a healthy agent look crashed.
fn rollout(canary_bake: &str) -> RolloutSpec {
    RolloutSpec {
        waves: format!("canary:20%:{canary_bake},early:50%:4s,all:100%:2s"),
        max_failure: "5%".into(),
        min_reports: 3,
        silence: "5s".into(),
        heartbeat: "1s".into(),
    }
}

/// A small release whose wave 0 opens `start_in_secs` from now.
fn release(rollout: RolloutSpec, operator: bool) -> ReleaseSpec {
    ReleaseSpec {
        size: 1 << 20,
        chunk_avg: "256KiB".into(),
        start_in_secs: 8,
        rollout,
        operator,
    }
}

fn probe(cmd: &[&str]) -> HooksConfig {
    HooksConfig {
        probe: Some(cmd.iter().map(|s| s.to_string()).collect()),
        timeout_secs: 5,
        ..HooksConfig::default()
    }
}

/// A seeder and `LAYOUT` agents, each in its wave; `spec(wave, k)` shapes agent `k` of a wave.
struct Fleet {
    bed: Testbed,
    release: ReleaseId,
    seeder: usize,
    /// Testbed index and wave of every agent.
    agents: Vec<(usize, u32)>,
}

impl Fleet {
    async fn start(
        dir: &std::path::Path,
        spec: ReleaseSpec,
        agent: impl Fn(u32, usize) -> AgentSpec,
    ) -> Fleet {
        let (mut bed, published) = Testbed::publish(dir, &spec).expect("publish");
        let seeder = bed
            .start(&AgentSpec {
                seed: true,
                ..AgentSpec::default()
            })
            .await
            .expect("seeder starts");
        let mut agents = Vec::new();
        for (wave, &count) in LAYOUT.iter().enumerate() {
            let wave = wave as u32;
            for k in 0..count {
                let spec = AgentSpec {
                    wave: Some(wave),
                    ..agent(wave, k)
                };
                agents.push((bed.start(&spec).await.expect("agent starts"), wave));
            }
        }
        Fleet {
            bed,
            release: published.release,
            seeder,
            agents,
        }
    }

    /// Agent `index`'s view of the release.
    fn release_status(&self, index: usize) -> Option<ReleaseStatus> {
        let status = self.bed.members[index].shared.status.lock().ok()?.clone()?;
        status.releases.into_iter().find(|r| r.id == self.release)
    }

    fn state(&self, index: usize) -> Option<RolloutState> {
        self.release_status(index).map(|r| r.state)
    }

    fn halt(&self, index: usize) -> Option<HaltReason> {
        self.release_status(index).and_then(|r| r.halt)
    }

    fn in_wave(&self, wave: u32) -> Vec<usize> {
        self.agents
            .iter()
            .filter(|(_, w)| *w == wave)
            .map(|(i, _)| *i)
            .collect()
    }

    /// Agent indices in wave order.
    fn all(&self) -> Vec<usize> {
        self.agents.iter().map(|(i, _)| *i).collect()
    }

    async fn wait(&self, what: &str, secs: u64, done: impl Fn(&Fleet) -> bool) {
        wait_for(what, Duration::from_secs(secs), || done(self))
            .await
            .unwrap_or_else(|e| panic!("{e}; states: {:?}", self.states()));
    }

    fn states(&self) -> Vec<(usize, u32, String)> {
        self.agents
            .iter()
            .map(|&(i, w)| (i, w, self.state(i).map_or("-", |s| s.name()).to_string()))
            .collect()
    }
}

/// What a watcher saw of every agent: when it first saw it installing or
/// installed, and the install time the engine reported.
#[derive(Default, Debug)]
struct Seen {
    installed_at: BTreeMap<usize, Timestamp>,
    installing: BTreeMap<usize, Timestamp>,
}

/// Polls every agent's state every 20 ms until dropped (the task is aborted).
fn watch(fleet: &Fleet) -> (Arc<Mutex<Seen>>, tokio::task::JoinHandle<()>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let handles: Vec<_> = fleet
        .agents
        .iter()
        .map(|&(i, _)| (i, fleet.bed.members[i].shared.clone()))
        .collect();
    let release = fleet.release;
    let out = seen.clone();
    let task = tokio::spawn(async move {
        loop {
            for (i, shared) in &handles {
                let state = shared.status.lock().ok().and_then(|s| {
                    s.as_ref()?
                        .releases
                        .iter()
                        .find(|r| r.id == release)
                        .map(|r| r.state.clone())
                });
                let mut seen = out.lock().unwrap();
                match state {
                    Some(RolloutState::Installing { since }) => {
                        seen.installing.entry(*i).or_insert(since);
                    }
                    Some(RolloutState::Baking { installed_at }) => {
                        seen.installed_at.entry(*i).or_insert(installed_at);
                    }
                    Some(RolloutState::Healthy | RolloutState::RollingBack { .. }) => {
                        seen.installing.entry(*i).or_insert(Timestamp(0));
                    }
                    _ => {}
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    (seen, task)
}

fn installs_dir(fleet: &Fleet, index: usize) -> std::path::PathBuf {
    fleet.bed.members[index]
        .config
        .data_dir
        .join("installs")
        .join("acme")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_release_opens_its_waves_in_order_and_reaches_every_agent() {
    let tmp = tempfile::tempdir().unwrap();
    let fleet = Fleet::start(tmp.path(), release(rollout("4s"), false), |_, _| {
        AgentSpec::default()
    })
    .await;
    let (seen, watcher) = watch(&fleet);
    fleet
        .wait("every agent healthy", 90, |f| {
            f.all()
                .iter()
                .all(|&i| f.state(i) == Some(RolloutState::Healthy))
        })
        .await;
    watcher.abort();
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    let info = fleet.bed.release().clone();
    let policy = info.policy();
    let mut last_of_previous = Timestamp(0);
    for wave in 0..LAYOUT.len() as u32 {
        let opens = policy.scheduled_open(wave as usize);
        let times: Vec<Timestamp> = fleet
            .in_wave(wave)
            .iter()
            .map(|i| {
                *seen
                    .installed_at
                    .get(i)
                    .unwrap_or_else(|| panic!("agent {i} of wave {wave} was never seen installed"))
            })
            .collect();
        let first = *times.iter().min().unwrap();
        let last = *times.iter().max().unwrap();
        println!(
            "wave {wave}: scheduled {opens}, installs {} ms .. {} ms after it",
            first.as_millis() - opens.as_millis().min(first.as_millis()),
            last.as_millis() - opens.as_millis().min(last.as_millis())
        );
        assert!(
            first >= opens,
            "an agent of wave {wave} installed at {first}, before its wave opened at {opens}"
        );
        assert!(
            first > last_of_previous,
            "wave {wave} started installing at {first}, before wave {} finished at {last_of_previous}",
            wave.saturating_sub(1)
        );
        last_of_previous = last;
    }
    // Every agent runs the release from its `current` link; the seeder installs nothing.
    for i in fleet.all() {
        let current = std::fs::read_link(installs_dir(&fleet, i).join("current"))
            .unwrap_or_else(|e| panic!("agent {i} has no current version: {e}"));
        assert!(
            current.to_string_lossy().contains("1.0-"),
            "agent {i}: {current:?}"
        );
    }
    assert!(!installs_dir(&fleet, fleet.seeder).exists());
    let seeder = fleet.state(fleet.seeder).map(|s| s.name());
    assert!(
        !matches!(seeder, Some("installing" | "baking" | "healthy")),
        "the seeder is {seeder:?}"
    );
    fleet.bed.shutdown().await;
}

/// Asserts that the release halted everywhere at wave 0 and nothing outside wave 0 installed.
fn assert_halted_at_the_canaries(fleet: &Fleet, seen: &Seen) {
    for &(i, wave) in &fleet.agents {
        let state = fleet.state(i).expect("state");
        if wave == 0 {
            // The install may come and go between two polls; its version directory stays.
            let installed = std::fs::read_dir(installs_dir(fleet, i))
                .map(|d| {
                    d.flatten()
                        .any(|e| e.file_name().to_string_lossy().starts_with("1.0-"))
                })
                .unwrap_or(false);
            assert!(
                installed || seen.installed_at.contains_key(&i),
                "canary {i} never installed"
            );
            continue;
        }
        assert!(
            !seen.installed_at.contains_key(&i) && !seen.installing.contains_key(&i),
            "agent {i} of wave {wave} installed a halted release"
        );
        assert!(
            !installs_dir(fleet, i).exists(),
            "agent {i} of wave {wave} has an installs directory"
        );
        assert_eq!(state.name(), "halted", "agent {i} of wave {wave}");
        match fleet.halt(i) {
            Some(HaltReason::GateFailed {
                wave: 0, failures, ..
            }) => assert!(failures >= 3, "agent {i}: {failures} failures"),
            other => panic!("agent {i} of wave {wave} halted for {other:?}"),
        }
    }
    assert!(
        fleet.halt(fleet.seeder).is_some(),
        "the seeder learns of the halt too"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_whose_probe_fails_halts_at_its_canaries_which_roll_back() {
    let tmp = tempfile::tempdir().unwrap();
    let fleet = Fleet::start(tmp.path(), release(rollout("6s"), false), |_, _| {
        AgentSpec {
            hooks: probe(&["false"]),
            ..AgentSpec::default()
        }
    })
    .await;
    let (seen, watcher) = watch(&fleet);
    fleet
        .wait("every agent halted", 60, |f| {
            f.all().iter().all(|&i| f.halt(i).is_some())
                && f.in_wave(0)
                    .iter()
                    .all(|&i| f.state(i).is_some_and(|s| s.name() == "rolled-back"))
        })
        .await;
    // Past the time wave 1 would have opened: still nobody outside wave 0 installs.
    let opens = fleet.bed.release().policy().scheduled_open(1);
    wait_for("wave 1's scheduled time", Duration::from_secs(30), || {
        waveguard_agent::driver::now() > opens.plus_secs(1)
    })
    .await
    .unwrap();
    watcher.abort();
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    assert_halted_at_the_canaries(&fleet, &seen);
    for i in fleet.in_wave(0) {
        assert!(
            matches!(fleet.halt(i), Some(HaltReason::LocalFailure { .. })),
            "canary {i} halted for {:?}",
            fleet.halt(i)
        );
        // Nothing was installed before, so rolling back leaves no current version.
        assert!(
            !installs_dir(&fleet, i).join("current").exists(),
            "canary {i}"
        );
    }
    fleet.bed.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canaries_that_go_silent_after_installing_halt_the_rollout() {
    let tmp = tempfile::tempdir().unwrap();
    // Wave 0 bakes for 9 s, three times the 3 s silence timeout.
    let mut spec = rollout("9s");
    spec.silence = "3s".into();
    let mut fleet = Fleet::start(tmp.path(), release(spec, false), |_, _| {
        AgentSpec::default()
    })
    .await;
    let (seen, watcher) = watch(&fleet);
    let canaries = fleet.in_wave(0);
    let observer = fleet.in_wave(1)[0];
    // Kill the canaries right after their installs, once the rest of the fleet has their reports.
    fleet
        .wait("the canaries' install reports to spread", 40, |f| {
            canaries
                .iter()
                .all(|&i| f.state(i).is_some_and(|s| s.name() == "baking"))
                && wave_reporting(f, observer, 0) == canaries.len() as u64
        })
        .await;
    for &i in &canaries {
        fleet.bed.kill(i).await;
    }
    let killed_at = waveguard_agent::driver::now();
    let survivors: Vec<usize> = fleet
        .all()
        .into_iter()
        .filter(|i| !canaries.contains(i))
        .collect();
    fleet
        .wait("every survivor halted", 40, |f| {
            survivors.iter().all(|&i| f.halt(i).is_some())
        })
        .await;
    println!(
        "halted {} ms after the canaries were killed",
        waveguard_agent::driver::now().as_millis() - killed_at.as_millis()
    );
    watcher.abort();
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    // The killed canaries' last state is frozen in their status; check the others.
    fleet.agents.retain(|(i, _)| !canaries.contains(i));
    let fleet = fleet;
    assert_halted_at_the_canaries(&fleet, &seen);
    for i in fleet.all() {
        if let Some(HaltReason::GateFailed { failures, .. }) = fleet.halt(i) {
            assert_eq!(failures, 4, "agent {i}: every silent canary counts");
        }
    }
    fleet.bed.shutdown().await;
}

fn wave_reporting(fleet: &Fleet, index: usize, wave: u32) -> u64 {
    fleet
        .release_status(index)
        .and_then(|r| r.waves.get(wave as usize).copied())
        .map_or(0, |w| w.reporting)
}

/// A raw libp2p peer that publishes health gossip and records what it receives.
struct Injector {
    publish: tokio::sync::mpsc::Sender<Vec<u8>>,
    received: Arc<Mutex<Vec<Vec<u8>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Injector {
    fn connect(addr: &str) -> Injector {
        let mut net = Network::new(Keypair::generate_ed25519(), NetConfig::loopback()).unwrap();
        net.dial(addr.parse().unwrap()).unwrap();
        let (publish, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(64);
        let received = Arc::new(Mutex::new(Vec::new()));
        let out = received.clone();
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    e = net.next_event() => {
                        if let NetEvent::Gossip { data, message_id, .. } = e {
                            let _ = net.report_verdict(message_id, waveguard_agent::net::Verdict::Ignore);
                            out.lock().unwrap().push(data);
                        }
                    }
                    Some(data) = rx.recv() => {
                        if let Err(e) = net.publish(TOPIC_HEALTH, data) {
                            eprintln!("injector publish: {e}");
                        }
                    }
                }
            }
        });
        Injector {
            publish,
            received,
            task,
        }
    }

    async fn send(&self, data: Vec<u8>) {
        self.publish.send(data).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uncertified_replayed_and_lone_failure_reports_change_no_gate() {
    let tmp = tempfile::tempdir().unwrap();
    // A certified fleet; one canary's probe fails, which alone must not fail a gate that
    // needs three failing reports... and a 50% share of failures.
    let mut spec = rollout("6s");
    spec.max_failure = "50%".into();
    let fleet = Fleet::start(tmp.path(), release(spec, true), |wave, k| AgentSpec {
        certified: true,
        hooks: match (wave, k) {
            (0, 0) => probe(&["false"]),
            _ => HooksConfig::default(),
        },
        ..AgentSpec::default()
    })
    .await;
    let lone = fleet.in_wave(0)[0];
    let info = fleet.bed.release().clone();
    // A message that fails validation graylists its sender at once (gossip scoring), so each
    // forgery comes from a peer of its own, each to its own relay; the replays from one more.
    let relays: Vec<usize> = fleet.in_wave(2)[..7].to_vec();
    let injectors: Vec<Injector> = relays
        .iter()
        .map(|&r| Injector::connect(&fleet.bed.members[r].addr))
        .collect();
    let relay = relays[6];
    let (seen, watcher) = watch(&fleet);

    // Forgeries: wave-0 failure reports from keys outside the fleet, without a certificate
    // and with one signed by a key that is not the operator's.
    let stranger = SigningKey::from_seed([9; 32]);
    let outsiders = (10u8..=255)
        .map(|n| SigningKey::from_seed([n; 32]))
        .filter(|k| {
            let pin = waveguard_protocol::wave::WavePin::None;
            waveguard_protocol::wave::wave_of(info.policy(), &info.id, &k.node_id(), pin) == 0
        })
        .take(6);
    let now = waveguard_agent::driver::now();
    let forged: Vec<Vec<u8>> = outsiders
        .enumerate()
        .map(|(n, key)| {
            let report =
                HealthReport::new(key.node_id(), info.id, 0, HealthStatus::Unhealthy, 1, now);
            let cert = (n % 2 == 1).then(|| {
                waveguard_protocol::health::cert::issue_cert(
                    &[&stranger],
                    key.node_id(),
                    now.plus_secs(3600),
                    waveguard_protocol::wave::WavePin::None,
                )
            });
            Gossip::Health(sign_report(&key, report, cert)).encode()
        })
        .collect();
    assert_eq!(forged.len(), 6);
    // Wait for wave 0 to install, then inject while its gate is still being decided.
    fleet
        .wait("the canaries to install", 40, |f| {
            f.in_wave(0)
                .iter()
                .all(|&i| f.state(i).is_some_and(|s| s.name() != "staged"))
        })
        .await;
    let refused = |f: &Fleet| -> u64 {
        relays
            .iter()
            .map(|&r| counters(&f.bed.members[r].shared).inputs_refused)
            .sum()
    };
    let refused_before = refused(&fleet);
    for (f, injector) in forged.iter().zip(&injectors) {
        injector.send(f.clone()).await;
    }
    // Replays: every genuine health message the last injector has seen so far, sent again.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let injector = &injectors[6];
    let genuine: Vec<Vec<u8>> = injector.received.lock().unwrap().clone();
    assert!(
        !genuine.is_empty(),
        "the injector saw no genuine health reports to replay"
    );
    for g in &genuine {
        injector.send(g.clone()).await;
    }

    fleet
        .wait("every agent but the failing canary healthy", 90, |f| {
            f.all()
                .iter()
                .filter(|&&i| i != lone)
                .all(|&i| f.state(i) == Some(RolloutState::Healthy) && f.halt(i).is_none())
        })
        .await;
    watcher.abort();
    let refused = refused(&fleet) - refused_before;
    assert!(
        refused >= forged.len() as u64,
        "the relays refused {refused} inputs; the {} forgeries must each be refused",
        forged.len()
    );
    // The lone failure rolled itself back, and nobody else halted.
    assert_eq!(fleet.state(lone).map(|s| s.name()), Some("rolled-back"));
    for i in fleet.all().into_iter().filter(|&i| i != lone) {
        assert!(
            fleet.halt(i).is_none(),
            "agent {i} halted: {:?}",
            fleet.halt(i)
        );
        assert!(
            seen.lock().unwrap().installed_at.contains_key(&i),
            "agent {i}"
        );
    }
    // Wave 0's gate, as a wave-2 agent saw it: four certified nodes, one failure, no forgery.
    let r = fleet.release_status(relay).unwrap();
    assert_eq!(r.waves[0].reporting, 4, "{:?}", r.waves[0]);
    assert_eq!(r.waves[0].failed, 1, "{:?}", r.waves[0]);
    for injector in &injectors {
        injector.task.abort();
    }
    fleet.bed.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_that_reboots_while_baking_keeps_baking_and_installs_only_once() {
    let tmp = tempfile::tempdir().unwrap();
    // Every install appends a line to the agent's own log: a second install would show.
    let mut fleet = Fleet::start(tmp.path(), release(rollout("6s"), false), |_, _| {
        AgentSpec {
            hooks: HooksConfig {
                install: Some(vec![
                    "sh".into(),
                    "-c".into(),
                    "echo \"$WAVEGUARD_VERSION\" >> \"$WAVEGUARD_INSTALL_DIR/../../../installs.log\""
                        .into(),
                ]),
                timeout_secs: 5,
                ..HooksConfig::default()
            },
            ..AgentSpec::default()
        }
    })
    .await;
    let canary = fleet.in_wave(0)[0];
    fleet
        .wait("the canary to bake", 40, |f| {
            f.state(canary).is_some_and(|s| s.name() == "baking")
        })
        .await;
    fleet.bed.restart(canary).await.expect("restart");
    // Right after the restart it is baking again, from its stored record, not staging.
    fleet
        .wait("the restarted canary to resume", 20, |f| {
            f.state(canary).is_some_and(|s| s.name() != "discovered")
        })
        .await;
    let resumed = fleet.state(canary).map(|s| s.name());
    assert!(
        matches!(resumed, Some("baking" | "healthy")),
        "after its restart the canary is {resumed:?}"
    );
    fleet
        .wait("every agent healthy", 90, |f| {
            f.all()
                .iter()
                .all(|&i| f.state(i) == Some(RolloutState::Healthy))
        })
        .await;
    for i in fleet.all() {
        let log = fleet.bed.members[i].config.data_dir.join("installs.log");
        let installs = std::fs::read_to_string(&log).unwrap_or_default();
        assert_eq!(
            installs.lines().count(),
            1,
            "agent {i} ran its install hook {} times",
            installs.lines().count()
        );
    }
    fleet.bed.shutdown().await;
}

/// A directive for the fleet's release, signed by the testbed's vendor key.
fn directive(fleet: &Fleet, action: DirectiveAction, seq: u64, reason: &str) -> Vec<u8> {
    let key = waveguard_agent::keyfile::read_secret(&fleet.bed.vendor_key()).unwrap();
    let d = Directive {
        action,
        release: fleet.release,
        seq,
        expires: waveguard_agent::driver::now().plus_secs(3600),
        reason: reason.into(),
    };
    d.check().unwrap();
    sign_directive(&[&key], &d)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vendor_halt_reaches_every_agent_and_a_resume_lets_pinned_and_paused_agents_be() {
    let tmp = tempfile::tempdir().unwrap();
    // Agent 0 of wave 2 is pinned to the canary wave; agent 1 of wave 2 is paused.
    let fleet = Fleet::start(tmp.path(), release(rollout("4s"), false), |wave, k| {
        AgentSpec {
            pin: match (wave, k) {
                (2, 0) => WavePin::Canary,
                _ => WavePin::None,
            },
            paused: (wave, k) == (2, 1),
            ..AgentSpec::default()
        }
    })
    .await;
    let pinned = fleet.in_wave(2)[0];
    let paused = fleet.in_wave(2)[1];
    let (seen, watcher) = watch(&fleet);
    // Halt through one agent's local API path before wave 0 opens: it spreads to everyone.
    let entry = fleet.in_wave(1)[0];
    let receipt = fleet
        .bed
        .directive(
            entry,
            directive(&fleet, DirectiveAction::Halt, 1, "INC-42: hold"),
        )
        .await
        .expect("the halt is accepted");
    assert!(receipt.changed);
    let everyone: Vec<usize> = fleet.all().into_iter().chain([fleet.seeder]).collect();
    fleet
        .wait("every agent to learn of the halt", 30, |f| {
            everyone.iter().all(|&i| {
                matches!(f.halt(i), Some(HaltReason::Directive { ref reason, seq: 1 }) if reason == "INC-42: hold")
            })
        })
        .await;
    // Past wave 0's scheduled opening, nobody installed.
    let opens = fleet.bed.release().policy().scheduled_open(0);
    wait_for("wave 0's scheduled time", Duration::from_secs(30), || {
        waveguard_agent::driver::now() > opens.plus_secs(2)
    })
    .await
    .unwrap();
    {
        let seen = seen.lock().unwrap();
        assert!(
            seen.installed_at.is_empty() && seen.installing.is_empty(),
            "installs during a halt: {seen:?}"
        );
    }
    // Resume (a higher seq) through another agent: the rollout goes on and completes.
    let other = fleet.in_wave(0)[0];
    fleet
        .bed
        .directive(
            other,
            directive(&fleet, DirectiveAction::Resume, 2, "fixed"),
        )
        .await
        .expect("the resume is accepted");
    fleet
        .wait("every agent but the paused one healthy", 90, |f| {
            f.all()
                .iter()
                .filter(|&&i| i != paused)
                .all(|&i| f.state(i) == Some(RolloutState::Healthy))
        })
        .await;
    watcher.abort();
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    // The pinned agent installed with the canaries, before wave 1 could open.
    let wave1 = fleet.bed.release().policy().scheduled_open(1);
    let at = seen
        .installed_at
        .get(&pinned)
        .copied()
        .expect("the pinned agent installed");
    let canaries_last = fleet
        .in_wave(0)
        .iter()
        .filter_map(|i| seen.installed_at.get(i))
        .max()
        .copied()
        .unwrap();
    assert!(
        at < wave1 && at <= canaries_last.plus_secs(1),
        "the agent pinned to the canary wave installed at {at}, wave 1 opens at {wave1}"
    );
    // The paused agent has the release staged and never installed it.
    assert!(!seen.installed_at.contains_key(&paused) && !seen.installing.contains_key(&paused));
    assert_eq!(fleet.state(paused).map(|s| s.name()), Some("staged"));
    assert!(!installs_dir(&fleet, paused).exists());
    fleet.bed.shutdown().await;
}
