//! The crash campaign (issue 8): the real `waveguard` binary as an agent
//! process, SIGKILLed at seeded-random moments while it downloads a release,
//! while its install hook runs, while its rollback hook runs and while it
//! removes the data of releases the vendor withdrew (store compaction), and
//! restarted on the same data directory each time. After every kill and
//! restart the test checks what a crash must never break:
//!
//! - the agent starts again and answers its API (a store it cannot open
//!   would make it exit with its error, which fails the test with the log);
//! - every chunk file in the store hashes to its name (only verified bytes);
//! - no chunk logged as stored (`waveguard::chunks` debug line, written only
//!   once the record is durable) is ever requested again in a later run;
//! - `installs/<product>/current` points to a complete old or new version:
//!   its one artifact hashes to the published artifact of the version its
//!   directory is named for, and that version is the old or the new one.
//!
//! After the compaction kills, the store holds exactly the chunks and chunk
//! lists of the releases still published.
//!
//! `WG_CRASH_KILLS` (default 12) sets the number of kills, split about
//! 2:1:1:1 between download, install, rollback and compaction; `WG_CRASH_SEED` repeats a
//! run (the seed is printed). The agent's own download limit stretches the
//! download so kills land mid-transfer.

mod daemons;

use daemons::{
    arg, check_chunk_files, chunk_file, installed, run_seeder, state_of, Daemon, Node, Published,
    Rng, Vendor,
};
use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

const PRODUCT: &str = "acme";
/// The agent's download limit: slow enough that a few MiB take seconds.
const DOWNLOAD_LIMIT: u64 = 512 * 1024;
/// How long the install and activate hooks of 2.0.0 and every rollback hook sleep: the
/// windows kills aim at (an install kill lands before or after the switch of `current`).
const HOOK_SLEEP_SECS: u64 = 2;
/// Generous on a loaded two-core machine: start-up, fetching, hooks.
const START_LIMIT: Duration = Duration::from_secs(60);
const PHASE_LIMIT: Duration = Duration::from_secs(240);
const RUST_LOG: &str = "info,waveguard::chunks=debug";

/// One agent run's log, in order.
struct Runs {
    logs: Vec<std::path::PathBuf>,
}

/// The agent under test with everything needed to restart it.
struct Subject {
    node: Node,
    config: std::path::PathBuf,
    daemon: Option<Daemon>,
    runs: Runs,
    hooks_log: std::path::PathBuf,
}

impl Subject {
    fn start(&mut self) -> waveguard_agent::api::StatusView {
        assert!(self.daemon.is_none(), "already running");
        let log = self
            .node
            .dir
            .join(format!("run-{:03}.log", self.runs.logs.len()));
        let mut d = Daemon::start(&["agent", "--config", arg(&self.config)], &log, RUST_LOG);
        self.runs.logs.push(log);
        let status = d.wait_ready(&self.node, START_LIMIT);
        self.daemon = Some(d);
        status
    }

    fn kill(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            d.kill();
        }
    }

    fn log(&self) -> String {
        self.runs
            .logs
            .last()
            .and_then(|p| fs::read_to_string(p).ok())
            .unwrap_or_default()
    }

    /// Lines of the hook log that start with `prefix`.
    fn hook_count(&self, prefix: &str) -> usize {
        fs::read_to_string(&self.hooks_log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with(prefix))
            .count()
    }

    fn state(&self, release: &str) -> Option<String> {
        self.node.status().and_then(|s| state_of(&s, release))
    }

    /// Waits for `what`, panicking with the current run's log if it does not come or the agent dies.
    fn wait<T>(&mut self, limit: Duration, what: &str, mut f: impl FnMut(&Self) -> Option<T>) -> T {
        let start = Instant::now();
        loop {
            if let Some(t) = f(self) {
                return t;
            }
            if let Some(code) = self.daemon.as_mut().and_then(Daemon::exited) {
                panic!(
                    "the agent exited ({code}) waiting for {what}; log:\n{}",
                    self.log()
                );
            }
            assert!(
                start.elapsed() < limit,
                "timed out after {limit:?} waiting for {what}; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// `key=value` of a tracing line.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

/// The chunk-log lines of one run: chunks requested (by hash) and chunks recorded as stored.
fn chunk_events(
    log: &str,
    lists: &HashMap<String, Vec<[u8; 32]>>,
) -> (Vec<String>, HashSet<String>) {
    let (mut requested, mut stored) = (Vec::new(), HashSet::new());
    for line in log.lines().filter(|l| l.contains("waveguard::chunks")) {
        if line.contains("chunk requested") {
            let release = field(line, "release").expect("release field");
            let index: usize = field(line, "index")
                .and_then(|i| i.parse().ok())
                .expect("index field");
            let list = lists.get(release).expect("a published release");
            requested.push(hex::encode(list[index]));
        } else if line.contains("chunk stored") {
            stored.insert(field(line, "chunk").expect("chunk field").to_string());
        }
    }
    (requested, stored)
}

/// After a kill: chunk files are verified and `current` is one of `allowed`, whole.
fn check_after_kill(data: &Path, allowed: &[&Published]) -> Option<String> {
    check_chunk_files(data);
    let (dir, hash) = installed(data, PRODUCT)?;
    let p = allowed
        .iter()
        .find(|p| dir.starts_with(&format!("{}-", p.version)))
        .unwrap_or_else(|| panic!("current -> {dir}: not one of the allowed versions"));
    assert_eq!(
        hash, p.blake3,
        "current -> {dir} holds an artifact that is not {}'s",
        p.version
    );
    Some(p.version.clone())
}

#[test]
fn sigkill_during_download_install_and_rollback_loses_nothing_and_mixes_nothing() {
    let started = Instant::now();
    let kills: usize = std::env::var("WG_CRASH_KILLS")
        .ok()
        .and_then(|k| k.parse().ok())
        .unwrap_or(12);
    assert!(
        kills >= 4,
        "WG_CRASH_KILLS must be at least 4 (one per phase)"
    );
    let mut rng = Rng::from_env("WG_CRASH_SEED");
    let k_install = kills / 5;
    let k_rollback = kills / 5;
    let k_compact = kills / 5;
    let k_download = kills - k_install - k_rollback - k_compact;
    println!(
        "kills: {k_download} download, {k_install} install, {k_rollback} rollback, {k_compact} compaction"
    );

    let tmp = tempfile::tempdir().expect("tempdir");
    let vendor = Vendor::new(&tmp.path().join("vendor"));
    // Sized so the download outlasts its kills: each run fetches for about a second.
    let v1_len = (k_download * 640 * 1024).max(3 << 20);
    let v1 = vendor.publish(PRODUCT, "1.0.0", &rng.bytes(v1_len));
    let mut lists: HashMap<String, Vec<[u8; 32]>> = HashMap::new();
    lists.insert(v1.release.clone(), v1.chunks.clone());

    let seeder = Node::new(&tmp.path().join("seeder"), &tmp.path().join("seeder/data"));
    let seeder_config = seeder.write_config("seeder", &vendor.root(), &[], 0, "");
    let start_seeder = |n: usize| run_seeder(&seeder, &vendor, &seeder_config, n, START_LIMIT);
    let mut seed_daemon = start_seeder(0);

    let agent_dir = tmp.path().join("agent");
    let node = Node::new(&agent_dir, &agent_dir.join("data"));
    let hooks_log = agent_dir.join("hooks.log");
    let hl = arg(&hooks_log);
    // 2.0.0's install and activate hooks and every rollback hook sleep so kills land inside them;
    // 3.0.0's probe fails, so 3.0.0 rolls back to 2.0.0.
    let hooks = format!(
        "[hooks]\n\
         install = [\"sh\", \"-c\", \"echo \\\"install $WAVEGUARD_VERSION\\\" >> {hl}; \
         if [ $WAVEGUARD_VERSION = 2.0.0 ]; then sleep {HOOK_SLEEP_SECS}; fi\"]\n\
         activate = [\"sh\", \"-c\", \"if [ $WAVEGUARD_VERSION = 2.0.0 ]; then sleep {HOOK_SLEEP_SECS}; fi\"]\n\
         probe = [\"sh\", \"-c\", \"[ $WAVEGUARD_VERSION != 3.0.0 ]\"]\n\
         rollback = [\"sh\", \"-c\", \"echo \\\"rollback $WAVEGUARD_VERSION\\\" >> {hl}; \
         sleep {HOOK_SLEEP_SECS}\"]\n\
         timeout_secs = 60\n"
    );
    let config = node.write_config(
        "endpoint",
        &vendor.root(),
        &[&seeder],
        DOWNLOAD_LIMIT,
        &hooks,
    );
    let mut subject = Subject {
        node,
        config,
        daemon: None,
        runs: Runs { logs: Vec::new() },
        hooks_log,
    };
    let data = subject.node.data.clone();
    let mut outcomes: Vec<String> = Vec::new();

    // --- Download: kill while chunks of 1.0.0 arrive. ---
    let mut done_download = 0;
    for k in 0..k_download {
        subject.start();
        // Wait for this run's first chunk request, then let it fetch for a random while.
        let fetching = subject.wait(START_LIMIT, "a chunk request or 1.0.0 staged", |s| {
            if s.log().contains("chunk requested") {
                return Some(true);
            }
            match s.state(&v1.release).as_deref() {
                Some("fetching" | "discovered" | "staging") | None => None,
                Some(_) => Some(false),
            }
        });
        if !fetching {
            println!("download finished before kill {k}; {done_download} download kills");
            break;
        }
        std::thread::sleep(rng.millis(0, 1500));
        let held = subject
            .node
            .status()
            .and_then(|s| s.releases.into_iter().find(|r| r.id == v1.release))
            .map(|r| format!("{}/{}", r.chunks_stored, r.chunks_total));
        subject.kill();
        done_download += 1;
        let v = check_after_kill(&data, &[&v1]);
        outcomes.push(format!(
            "download kill {k}: about {} chunks held, current {v:?}",
            held.as_deref().unwrap_or("?")
        ));
    }
    subject.start();
    subject.wait(PHASE_LIMIT, "1.0.0 installed and healthy", |s| {
        matches!(s.state(&v1.release).as_deref(), Some("baking" | "healthy")).then_some(())
    });
    assert_eq!(
        check_after_kill(&data, &[&v1]).as_deref(),
        Some("1.0.0"),
        "1.0.0 is current"
    );
    subject.kill();

    // --- Install: kill while 2.0.0's install hook runs. ---
    let v2 = vendor.publish(PRODUCT, "2.0.0", &rng.bytes(600 * 1024));
    lists.insert(v2.release.clone(), v2.chunks.clone());
    seed_daemon.kill();
    seed_daemon = start_seeder(1);
    let mut done_install = 0;
    for k in 0..k_install {
        let before = subject.hook_count("install 2.0.0");
        subject.start();
        // A kill that the loaded machine delayed past the activate hook found the install
        // done: the restart then has nothing to install, and this phase is over.
        let hook_ran = subject.wait(PHASE_LIMIT, "2.0.0's install hook to start", |s| {
            if s.hook_count("install 2.0.0") > before {
                return Some(true);
            }
            matches!(s.state(&v2.release).as_deref(), Some("baking" | "healthy")).then_some(false)
        });
        if !hook_ran {
            println!("2.0.0 was installed before install kill {k}");
            break;
        }
        // Inside the install hook or the activate hook after it.
        std::thread::sleep(rng.millis(0, 2 * HOOK_SLEEP_SECS * 1000));
        subject.kill();
        done_install += 1;
        let v = check_after_kill(&data, &[&v1, &v2]);
        assert!(v.is_some(), "a version is current after install kill {k}");
        outcomes.push(format!("install kill {k}: current {v:?}"));
    }
    subject.start();
    subject.wait(PHASE_LIMIT, "2.0.0 installed and healthy", |s| {
        matches!(s.state(&v2.release).as_deref(), Some("baking" | "healthy")).then_some(())
    });
    assert_eq!(check_after_kill(&data, &[&v2]).as_deref(), Some("2.0.0"));
    subject.kill();

    // --- Rollback: 3.0.0's probe fails; kill while its rollback hook runs. ---
    let v3 = vendor.publish(PRODUCT, "3.0.0", &rng.bytes(300 * 1024));
    lists.insert(v3.release.clone(), v3.chunks.clone());
    seed_daemon.kill();
    seed_daemon = start_seeder(2);
    let mut done_rollback = 0;
    for k in 0..k_rollback {
        let before = subject.hook_count("rollback 3.0.0");
        subject.start();
        let hook_ran = subject.wait(PHASE_LIMIT, "3.0.0's rollback hook to start", |s| {
            if s.hook_count("rollback 3.0.0") > before {
                return Some(true);
            }
            (s.state(&v3.release).as_deref() == Some("rolled-back")).then_some(false)
        });
        if !hook_ran {
            println!("3.0.0 was rolled back before rollback kill {k}");
            break;
        }
        std::thread::sleep(rng.millis(0, HOOK_SLEEP_SECS * 1000));
        subject.kill();
        done_rollback += 1;
        let v = check_after_kill(&data, &[&v2, &v3]);
        assert!(v.is_some(), "a version is current after rollback kill {k}");
        outcomes.push(format!("rollback kill {k}: current {v:?}"));
    }
    subject.start();
    subject.wait(PHASE_LIMIT, "3.0.0 rolled back", |s| {
        (s.state(&v3.release).as_deref() == Some("rolled-back")).then_some(())
    });
    assert_eq!(check_after_kill(&data, &[&v2]).as_deref(), Some("2.0.0"));
    let final_status = subject.node.status().expect("status");
    assert_eq!(
        state_of(&final_status, &v2.release)
            .as_deref()
            .map(|s| matches!(s, "baking" | "healthy")),
        Some(true),
        "2.0.0 still runs: {final_status:?}"
    );
    subject.kill();

    // --- Compaction: 1.0.0 and 3.0.0 withdrawn; kill while their data is removed. ---
    vendor.unpublish(PRODUCT, "1.0.0");
    vendor.unpublish(PRODUCT, "3.0.0");
    seed_daemon.kill();
    let _seed_daemon = start_seeder(3);
    let withdrawn: Vec<[u8; 32]> = v1.chunks.iter().chain(&v3.chunks).copied().collect();
    let left = |data: &Path| {
        withdrawn
            .iter()
            .filter(|c| chunk_file(data, c).exists())
            .count()
    };
    let (mut done_compact, mut mid_forget) = (0, 0);
    for k in 0..k_compact {
        let before = left(&data);
        if before == 0 {
            println!("compaction finished before kill {k}");
            break;
        }
        // A removal of a few dozen chunks takes about a hundred milliseconds (one store
        // flush per chunk), too short to aim at by time: the kill instead comes once the
        // number of withdrawn chunk files still there drops to a random `target`, so it
        // lands part-way through (or, at 0, between the last chunk and the chunk lists).
        // Steps average the chunks left over the kills left, so every kill has some.
        let kills_left = k_compact - k;
        let most = (2 * before / (kills_left + 1)).clamp(1, before);
        let step = rng.millis(1, most as u64).as_millis() as usize;
        let target = before - step;
        subject.start();
        // The first run retires them when the new metadata arrives; a later one finds the
        // chunk lists a cut-off removal left behind as soon as it starts.
        let started = Instant::now();
        while left(&data) > target {
            assert!(
                started.elapsed() < PHASE_LIMIT,
                "compaction kill {k}: the removal never got below {target} chunks; log:\n{}",
                subject.log()
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        subject.kill();
        done_compact += 1;
        assert_eq!(
            check_after_kill(&data, &[&v2]).as_deref(),
            Some("2.0.0"),
            "2.0.0 stays current through compaction kill {k}"
        );
        let after = left(&data);
        if after > 0 && after < before {
            mid_forget += 1;
        }
        outcomes.push(format!(
            "compaction kill {k}: {before} -> {after} of {} withdrawn chunks left (aimed at {target})",
            withdrawn.len()
        ));
    }
    // Unkilled runs finish the job: the chunks go, then the chunk lists (last, so that a
    // run cut off before them is found out at the next start and redoes the removal).
    let mut stored_lists: Vec<String> = Vec::new();
    for attempt in 0..5 {
        subject.start();
        subject.wait(
            PHASE_LIMIT,
            "the withdrawn releases' chunks removed",
            |_| (left(&data) == 0).then_some(()),
        );
        subject.wait(PHASE_LIMIT, "every retirement of this run finished", |s| {
            let log = s.log();
            (log.matches("Retired").count() <= log.matches("its stored data removed").count())
                .then_some(())
        });
        subject.kill();
        let store = waveguard_agent::store::Store::open(&data).expect("the store opens");
        stored_lists = store
            .chunk_lists()
            .expect("chunk lists")
            .into_iter()
            .map(|(id, _)| id.to_hex())
            .collect();
        if stored_lists == std::slice::from_ref(&v2.release) {
            break;
        }
        println!("after final run {attempt}: chunk lists {stored_lists:?}; once more");
    }
    assert_eq!(
        stored_lists,
        std::slice::from_ref(&v2.release),
        "only 2.0.0's chunk list is left"
    );
    let final_run = subject.log();
    assert!(
        !final_run.contains("could not remove"),
        "a removal failed:\n{final_run}"
    );

    // --- No chunk held before a kill was requested again after it. ---
    let mut held: HashSet<String> = HashSet::new();
    let (mut requests, mut stored_total) = (0usize, 0usize);
    for (run, path) in subject.runs.logs.iter().enumerate() {
        let log = fs::read_to_string(path).expect("run log");
        let (requested, stored) = chunk_events(&log, &lists);
        for h in &requested {
            assert!(
                !held.contains(h),
                "run {run} requested chunk {h}, recorded as stored in an earlier run ({})",
                path.display()
            );
        }
        requests += requested.len();
        stored_total += stored.len();
        held.extend(stored);
    }
    let expected: HashSet<String> = [&v1, &v2, &v3]
        .iter()
        .flat_map(|p| p.chunks.iter().map(hex::encode))
        .collect();
    // A kill between a chunk's durable record and its log line hides it from `held` (it is
    // then neither logged nor requested again), so `held` may fall short of every chunk.
    assert!(
        held.is_subset(&expected),
        "only published chunks were stored"
    );
    assert_eq!(stored_total, held.len(), "no chunk was stored in two runs");
    assert!(
        held.len() + done_download >= expected.len(),
        "{} of {} chunks logged as stored",
        held.len(),
        expected.len()
    );
    // The logs really were read: chunks were requested and stored.
    assert!(requests >= expected.len(), "{requests} requests");
    // Compaction left exactly the published release's chunks.
    assert_eq!(check_chunk_files(&data), v2.chunks.len());
    for c in &v2.chunks {
        assert!(
            chunk_file(&data, c).exists(),
            "2.0.0 chunk {}",
            hex::encode(c)
        );
    }

    println!(
        "crash campaign: {done_download} download, {done_install} install, {done_rollback} rollback, \
         {done_compact} compaction kills ({mid_forget} of them with the removal part-way); \
         {} agent runs, {requests} chunk requests, {} chunks stored once each; took {:?}",
        subject.runs.logs.len(),
        expected.len(),
        started.elapsed()
    );
    for o in &outcomes {
        println!("  {o}");
    }
}
