//! A staged rollout across two sites on real network stacks (issue 7).
//!
//! `scripts/testbed/netns.sh` builds the testbed: a vendor host with the
//! seeder on its own site and two sites of three agents each, every host in
//! its own network namespace behind a `tc tbf`-shaped veth, every site behind
//! a shaped link to a WAN namespace. Real `waveguard` processes run in them.
//! The release has three waves with short bakes, and every wave holds one
//! agent of each site (their node keys are chosen for it), so each wave's
//! gate needs health reports from both sites, carried over the WAN. Every
//! agent must install, none before its wave's scheduled opening, and no
//! agent of a wave before every agent of the wave before it (the install
//! times come from an install hook writing the wall clock in milliseconds).
//!
//! Needs root and `ip netns`; without them it says so on stderr
//! (`SKIPPED netns_rollout: ...`) and returns.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use waveguard_agent::repo::Repo;
use waveguard_protocol::wave::{wave_of, WavePin};
use waveguard_protocol::SigningKey;

/// Hosts per site: the vendor's (the seeder, host 0), then sites A and B.
const SITES: &str = "1,3,3";
/// The agents: hosts 1..=6; host 1 + k and host 4 + k are in wave k.
const AGENTS: [usize; 6] = [1, 2, 3, 4, 5, 6];
/// Three waves with short bakes; `min_reports` 2 makes each gate wait for both sites (and
/// `--max-failure 60%` lets one slow heartbeat on a loaded machine pass).
const WAVES: &str = "canary:34%:4s,early:67%:4s,all:100%:0s";
/// Seconds from publishing until wave 0 opens: enough to build the testbed,
/// start the agents and stage the small release.
const START_IN_SECS: u64 = 14;
const RELEASE_BYTES: usize = 1 << 20;
/// Longest wait for every agent to have installed, from publishing.
const INSTALL_LIMIT: Duration = Duration::from_secs(60);

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives in the workspace")
        .to_path_buf()
}

/// Runs a command, failing with its output if it does not succeed.
fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{program} {} failed: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `scripts/testbed/netns.sh` with `args`.
fn netns(args: &[&str]) -> Result<String, String> {
    let script = workspace().join("scripts/testbed/netns.sh");
    let mut all = vec![script.to_str().expect("a UTF-8 workspace path")];
    all.extend_from_slice(args);
    run("bash", &all)
}

/// Whether this process may create network namespaces and shape links; the reason if not.
fn can_use_netns() -> Result<(), String> {
    let probe = format!("wgprobe{}", std::process::id());
    run("ip", &["netns", "add", &probe])?;
    let _ = run("ip", &["netns", "del", &probe]);
    run("tc", &["-V"]).map(|_| ())
}

/// The testbed; dropping it runs `netns.sh down`, which kills every process in
/// its namespaces and deletes them, also when an assertion fails half-way.
struct Lab {
    name: String,
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Err(e) = netns(&["down", &self.name]) {
            eprintln!("netns_rollout: tearing down {}: {e}", self.name);
        }
    }
}

/// The `waveguard` binary, built as netns_site.rs does (a no-op when fresh).
fn waveguard_bin() -> PathBuf {
    let workspace = workspace();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        // Naming this test too keeps cargo's feature unification as under
        // `cargo test`, so this does not rebuild libp2p.
        .args([
            "build",
            "-q",
            "-p",
            "waveguard-agent",
            "-p",
            "waveguard-tests",
            "--bin",
            "waveguard",
            "--test",
            "netns_rollout",
        ])
        .current_dir(&workspace)
        .env("CARGO_TARGET_DIR", &target)
        .status()
        .expect("cannot run cargo to build the waveguard binary");
    assert!(status.success(), "building the waveguard binary failed");
    let bin = target.join("debug").join("waveguard");
    assert!(bin.exists(), "no waveguard binary at {}", bin.display());
    bin
}

/// Publishes a release of pseudo-random bytes whose wave 0 opens
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
        .update(b"netns_rollout")
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
        WAVES,
        "--min-reports",
        "2",
        "--max-failure",
        "60%",
        "--heartbeat",
        "1s",
        "--silence",
        "6s",
    ]);
    dir.join("repo")
}

/// Writes a node key into each agent's data directory that puts it in its
/// wave (host 1 + k and 4 + k in wave k); returns every wave's scheduled opening (ms).
fn place_agents(repo: &Path, work: &Path) -> Vec<u64> {
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
    for &host in &AGENTS {
        let wave = (host - 1) % 3;
        let key = loop {
            tries += 1;
            assert!(tries < 100_000, "found no node key for wave {wave}");
            // Test keys: any distinct seeds do.
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
    }
    (0..=policy.waves.len())
        .map(|w| policy.scheduled_open(w).as_millis())
        .collect()
}

/// `waveguard status` of host `host`, or the error text.
fn status(bin: &Path, lab: &str, host: usize) -> String {
    netns(&[
        "exec",
        lab,
        &host.to_string(),
        &bin.to_string_lossy(),
        "status",
    ])
    .unwrap_or_else(|e| e)
}

/// The install time agent `host`'s install hook wrote, in ms since the epoch.
fn installed_at(work: &Path, host: usize) -> Option<u64> {
    std::fs::read_to_string(work.join(format!("host{host}/installed-at")))
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[test]
fn a_release_rolls_out_wave_by_wave_across_two_sites() {
    if let Err(reason) = can_use_netns() {
        eprintln!("SKIPPED netns_rollout: cannot create network namespaces ({reason})");
        return;
    }
    let bin = waveguard_bin();
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let work = tmp.path().join("work");
    let started = Instant::now();
    let repo = publish(&bin, tmp.path());
    let opens = place_agents(&repo, &work);

    let name = format!("ro{}", std::process::id());
    netns(&[
        "up",
        &name,
        "--sites",
        SITES,
        "--up",
        "100mbit",
        "--down",
        "100mbit",
        "--wan-rate",
        "20mbit",
    ])
    .unwrap_or_else(|e| panic!("the testbed did not come up: {e}"));
    let lab = Lab { name };

    // The install hook records when the installer ran, in ms.
    let extra = tmp.path().join("hooks.toml");
    std::fs::write(
        &extra,
        "[hooks]\ninstall = [\"sh\", \"-c\", \"date +%s%3N > @DIR@/installed-at\"]\ntimeout_secs = 10\n",
    )
    .expect("write the hook fragment");
    let agents = AGENTS.map(|h| h.to_string()).join(",");
    netns(&[
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
        &agents,
        "--config-extra",
        &extra.to_string_lossy(),
        "--wait",
        "20",
    ])
    .unwrap_or_else(|e| panic!("the agents did not start: {e}"));

    // Until every agent has installed and is baking (or done).
    loop {
        let done = AGENTS.iter().all(|&h| {
            installed_at(&work, h).is_some() && {
                let s = status(&bin, &lab.name, h);
                s.contains("state baking") || s.contains("state healthy")
            }
        });
        if done {
            break;
        }
        if started.elapsed() > INSTALL_LIMIT {
            let states: Vec<String> = AGENTS
                .iter()
                .map(|&h| {
                    let s = status(&bin, &lab.name, h);
                    let state = s
                        .lines()
                        .find(|l| l.contains("state "))
                        .unwrap_or("no release")
                        .trim()
                        .to_string();
                    format!("host {h}: {state}")
                })
                .collect();
            let kept = tmp.keep();
            panic!(
                "not every agent installed within {INSTALL_LIMIT:?}: {states:?}; logs in {}",
                kept.join("work").display()
            );
        }
        std::thread::sleep(Duration::from_millis(300));
    }

    let mut last_of_previous = 0u64;
    for wave in 0..3 {
        let hosts = [1 + wave, 4 + wave];
        let times: Vec<u64> = hosts
            .iter()
            .map(|&h| installed_at(&work, h).expect("checked above"))
            .collect();
        let (first, last) = (
            *times.iter().min().expect("two hosts"),
            *times.iter().max().expect("two hosts"),
        );
        eprintln!(
            "netns_rollout: wave {wave} (hosts {hosts:?}, one per site): scheduled to open at \
             +{} ms, installs at +{} ms and +{} ms (from wave 0's opening)",
            opens[wave] - opens[0],
            times[0] as i64 - opens[0] as i64,
            times[1] as i64 - opens[0] as i64,
        );
        assert!(
            first >= opens[wave],
            "an agent of wave {wave} installed {} ms before the wave's scheduled opening",
            opens[wave] - first
        );
        assert!(
            first > last_of_previous,
            "wave {wave} began installing at {first}, before wave {} finished installing at \
             {last_of_previous}",
            wave.saturating_sub(1)
        );
        last_of_previous = last;
    }
    // Every agent runs the release from its `current` link; the seeder installs nothing.
    for h in AGENTS {
        let current = std::fs::read_link(work.join(format!("host{h}/data/installs/acme/current")))
            .unwrap_or_else(|e| panic!("host {h} has no current version: {e}"));
        assert!(
            current.to_string_lossy().contains("1.0-"),
            "host {h}: {current:?}"
        );
    }
    assert!(!work.join("host0/data/installs").exists());
    eprintln!(
        "netns_rollout: 6 agents on two sites installed wave by wave in {:?}",
        started.elapsed()
    );
    drop(lab);
}
