//! `waveguard demo`: the whole path of two releases through a mesh of real
//! agents on this machine, with nothing to set up.
//!
//! A throw-away vendor creates keys and a root and publishes release 1.0; a
//! seeder and (by default) twelve endpoint agents start on 127.0.0.1 in a
//! temporary directory — the same daemon, driver, store, libp2p network and
//! installer as deployed agents, through [`crate::testbed`] — each with its
//! local HTTP API, so the seeder's dashboard can be opened while it runs.
//! 1.0 rolls out wave by wave; then the vendor publishes 1.1 and hands it to
//! its seeder as a release bundle, and 1.1's health probe fails on every
//! machine that installs it, so its canary wave's gate fails, the rollout
//! halts everywhere and the canaries roll back to 1.0.
//!
//! This module only sets the stage and watches ([`watch`]): installs, gates,
//! halts and rollbacks are decided by the agents' engines. The rollout policy
//! has four waves with bakes of seconds, so the whole demo takes about a
//! minute. Node keys are chosen so that each wave of 1.0 holds its share of
//! the agents, and the canary wave's agents are pinned to it (`[rollout] pin`)
//! for every release: with a dozen agents, hashing alone could leave a wave
//! empty, and an empty wave never passes its gate.

mod live;
mod summary;
mod watch;

pub use summary::{DemoReport, ReleaseRun, WaveRun};

use crate::api::ApiState;
use crate::cli::{run_at, Outcome};
use crate::config::HooksConfig;
use crate::driver::now;
use crate::testbed::{AgentSpec, ReleaseSpec, RolloutSpec, Testbed};
use anyhow::{bail, Context};
use live::Live;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;
use waveguard_protocol::release::{Release, RolloutPolicy, PPM};
use waveguard_protocol::wave::WavePin;

/// Arguments of `waveguard demo`.
#[derive(clap::Args, Debug, Clone)]
pub struct DemoArgs {
    /// Endpoint agents besides the seeder (at least one per wave).
    #[arg(long, default_value_t = 12, value_parser = clap::value_parser!(u32).range(4..=40))]
    pub agents: u32,
    /// Keep the vendor's keys, the release directory and every agent's data
    /// in this new or empty directory instead of a temporary one that is removed.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Where the seeder's HTTP API (status, metrics, dashboard) listens; port 0 picks a free one.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    pub api: SocketAddr,
    /// After the summary, keep the mesh (and its dashboards) running until Ctrl-C.
    #[arg(long)]
    pub hold: bool,
}

/// The demo's rollout policy: four waves whose bakes take seconds, not hours.
const WAVES: &str = "canary:15%:6s,early:40%:5s,broad:70%:5s,all:100%:3s";
/// A wave fails when a fifth of its agents fail; one report is enough to decide.
const MAX_FAILURE: &str = "20%";
const MIN_REPORTS: u32 = 1;
/// Silence after six missed heartbeats counts as a failure: slack for a busy machine.
const SILENCE: &str = "6s";
const HEARTBEAT: &str = "1s";
/// Time from publishing to the first wave's opening: enough for every agent
/// to fetch and stage the release first.
const LEAD_SECS: u64 = 8;
/// Each release's artifact.
const SIZE: u64 = 8 << 20;
const CHUNK_AVG: &str = "256KiB";
/// The second release, whose probe fails.
const BAD_VERSION: &str = "1.1";
/// What is wrong with it, for the report.
const BAD_FAULT: &str = "its health probe fails on every machine that installs it";

/// Runs the demo; with `--hold`, prints the summary itself and keeps the mesh
/// running until Ctrl-C before returning.
pub fn run(a: &DemoArgs) -> anyhow::Result<DemoReport> {
    let started = Instant::now();
    let (tmp, dir) = match &a.dir {
        Some(d) => {
            empty_dir(d)?;
            (None, d.clone())
        }
        None => {
            let t = tempfile::Builder::new()
                .prefix("waveguard-demo-")
                .tempdir()
                .context("cannot create a temporary directory")?;
            let p = t.path().to_path_buf();
            (Some(t), p)
        }
    };
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let live = Live::new();
    let result = runtime.block_on(async {
        let mut mesh = None;
        // Ctrl-C before the end stops the agents cleanly, so the temporary directory goes too.
        let outcome = tokio::select! {
            r = demo(a, &dir, &live, &mut mesh) => r,
            _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted before the demo's end")),
        };
        let outcome = match outcome {
            Ok(mut report) => {
                report.dir = dir.clone();
                report.kept = tmp.is_none();
                if a.hold {
                    report.wall = started.elapsed();
                    live.suspend(|| {
                        println!("{report}");
                        let _ = std::io::stdout().flush();
                    });
                    live.say(format!(
                        "holding: the mesh keeps running, dashboard at {}; Ctrl-C stops it",
                        report.dashboard
                    ));
                    let _ = tokio::signal::ctrl_c().await;
                    report.held = true;
                }
                Ok(report)
            }
            Err(e) => Err(e),
        };
        if let Some(mesh) = mesh {
            mesh.shutdown().await;
        }
        outcome
    });
    runtime.shutdown_timeout(Duration::from_secs(5));
    // Removed before the time is taken: cleaning up is part of the demo.
    drop(tmp);
    let mut report = result?;
    if !report.held {
        report.wall = started.elapsed();
    }
    Ok(report)
}

/// The running mesh: the testbed and every agent's HTTP API.
struct Mesh {
    bed: Testbed,
    seeder: usize,
    apis: Vec<(SocketAddr, JoinHandle<Result<(), crate::api::ApiError>>)>,
    stop_apis: tokio::sync::watch::Sender<bool>,
}

impl Mesh {
    /// Serves agent `index`'s HTTP API on `addr`; returns the address it got.
    async fn serve_api(&mut self, index: usize, addr: SocketAddr) -> anyhow::Result<SocketAddr> {
        let Some(m) = self.bed.members.get(index) else {
            bail!("no agent {index}");
        };
        let listener = crate::api::bind(addr).await?;
        let local = listener
            .local_addr()
            .context("the HTTP API's listen address")?;
        let state = ApiState {
            shared: m.shared.clone(),
            node: m.node,
        };
        let mut stop = self.stop_apis.subscribe();
        let task = tokio::spawn(crate::api::serve(listener, state, async move {
            let _ = stop.changed().await;
        }));
        self.apis.push((local, task));
        Ok(local)
    }

    async fn shutdown(self) {
        let _ = self.stop_apis.send(true);
        for (_, task) in self.apis {
            // A browser's open connection may keep graceful shutdown waiting; don't.
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(1), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
        self.bed.shutdown().await;
    }
}

async fn demo(
    a: &DemoArgs,
    dir: &Path,
    live: &Live,
    slot: &mut Option<Mesh>,
) -> anyhow::Result<DemoReport> {
    let agents = a.agents as usize;
    let rollout = RolloutSpec {
        waves: WAVES.into(),
        max_failure: MAX_FAILURE.into(),
        min_reports: MIN_REPORTS,
        silence: SILENCE.into(),
        heartbeat: HEARTBEAT.into(),
    };
    let spec = ReleaseSpec {
        size: SIZE,
        chunk_avg: CHUNK_AVG.into(),
        start_in_secs: LEAD_SECS,
        rollout: rollout.clone(),
        operator: false,
    };
    let published = now();
    let (bed, good) = Testbed::publish(dir, &spec).context("the vendor's first release")?;
    let good_info = good.info.clone();
    live.say(format!(
        "vendor: throw-away keys and root; published {} ({}), waves {WAVES}, failing at {MAX_FAILURE}",
        name(&good_info),
        summary::bytes(good.size)
    ));
    verify(&bed)?;
    let (stop_apis, _) = tokio::sync::watch::channel(false);
    let mesh = slot.insert(Mesh {
        bed,
        seeder: 0,
        apis: Vec::new(),
        stop_apis,
    });
    mesh.seeder = mesh
        .bed
        .start(&AgentSpec {
            seed: true,
            ..AgentSpec::default()
        })
        .await
        .context("the seeder")?;
    let dashboard = format!("http://{}/", mesh.serve_api(mesh.seeder, a.api).await?);
    live.say(format!(
        "seeder up; dashboard (the seeder's view) at {dashboard}"
    ));

    // Wave 0 is the pinned canaries; the rest get keys that put them in their wave of 1.0.
    let layout = layout(agents, good_info.policy());
    let hooks = probe_hooks();
    for (wave, &count) in layout.iter().enumerate() {
        for _ in 0..count {
            let spec = AgentSpec {
                hooks: hooks.clone(),
                pin: if wave == 0 {
                    WavePin::Canary
                } else {
                    WavePin::None
                },
                wave: (wave > 0).then_some(wave as u32),
                ..AgentSpec::default()
            };
            let index = mesh.bed.start(&spec).await.context("an agent")?;
            mesh.serve_api(index, SocketAddr::from(([127, 0, 0, 1], 0)))
                .await?;
        }
    }
    let apis: Vec<String> = mesh.apis.iter().map(|(a, _)| a.to_string()).collect();
    live.say(format!(
        "{agents} agents up on 127.0.0.1, {} of them pinned to the canary wave; HTTP APIs at {}",
        layout.first().copied().unwrap_or(0),
        apis.join(" ")
    ));

    let good_run = watch::Watch::new(&mesh.bed, mesh.seeder, good_info, None, published)
        .run(live)
        .await;

    // The vendor's next release, handed to its running seeder as a bundle
    // (what `waveguard bundle import --api` does); the seeder announces it.
    let published = now();
    let bad_info = publish_next(&mesh.bed, &rollout, dir)?;
    live.say(format!(
        "vendor: published {} ({}); the seeder imports it and announces it to the mesh",
        name(&bad_info),
        summary::bytes(bad_info.length)
    ));
    verify(&mesh.bed)?;
    let bundle = dir.join(format!("acme-{BAD_VERSION}.bundle"));
    let bundle_arg = bundle.to_string_lossy().into_owned();
    cli(&[
        "bundle",
        "export",
        "--repo",
        &mesh.bed.repo().to_string_lossy(),
        "--release",
        &bad_info.id.to_hex(),
        "--out",
        &bundle_arg,
    ])?;
    let Some(seeder) = mesh.bed.members.get(mesh.seeder) else {
        bail!("the seeder is gone");
    };
    seeder
        .shared
        .submit_bundle(bundle)
        .await?
        .map_err(|e| anyhow::anyhow!("the seeder refused the bundle: {e}"))?;
    let bad_run = watch::Watch::new(&mesh.bed, mesh.seeder, bad_info, Some(BAD_FAULT), published)
        .run(live)
        .await;

    Ok(DemoReport {
        agents,
        dashboard,
        dir: dir.to_path_buf(),
        kept: false,
        good: good_run,
        bad: bad_run,
        wall: Duration::ZERO,
        held: false,
    })
}

/// Agents per wave of `policy` for `agents` agents: each wave's share, rounded,
/// and at least one per wave.
fn layout(agents: usize, policy: &RolloutPolicy) -> Vec<usize> {
    let waves = policy.waves.len();
    let mut counts = Vec::with_capacity(waves);
    let mut before = 0usize;
    for (k, w) in policy.waves.iter().enumerate() {
        let share =
            (agents as u64 * u64::from(w.cumulative_ppm) + u64::from(PPM) / 2) / u64::from(PPM);
        let upto = usize::try_from(share).unwrap_or(agents).clamp(
            before + 1,
            agents.saturating_sub(waves - 1 - k).max(before + 1),
        );
        counts.push(upto - before);
        before = upto;
    }
    counts
}

/// Every agent's probe: healthy unless the version installed is the bad one
/// (standing in for a service that crashes after the upgrade).
fn probe_hooks() -> HooksConfig {
    HooksConfig {
        probe: Some(vec![
            "sh".into(),
            "-c".into(),
            format!("test \"$WAVEGUARD_VERSION\" != {BAD_VERSION}"),
        ]),
        timeout_secs: 5,
        ..HooksConfig::default()
    }
}

/// Publishes the bad release into the testbed's release directory, on the
/// same rollout policy, its first wave opening [`LEAD_SECS`] from now.
fn publish_next(bed: &Testbed, rollout: &RolloutSpec, dir: &Path) -> anyhow::Result<Release> {
    let artifact = dir.join(format!("acme-{BAD_VERSION}.bin"));
    write_artifact(&artifact, SIZE)?;
    let repo = bed.repo().to_string_lossy().into_owned();
    let key = bed.vendor_key().to_string_lossy().into_owned();
    let start = now().plus_secs(LEAD_SECS).to_rfc3339();
    let min_reports = rollout.min_reports.to_string();
    let outcome = cli(&[
        "publish",
        &artifact.to_string_lossy(),
        "--repo",
        &repo,
        "--product",
        &bed.release().info.product,
        "--version",
        BAD_VERSION,
        "--key",
        &key,
        "--start",
        &start,
        "--chunk-avg",
        CHUNK_AVG,
        "--waves",
        &rollout.waves,
        "--max-failure",
        &rollout.max_failure,
        "--min-reports",
        &min_reports,
        "--silence",
        &rollout.silence,
        "--heartbeat",
        &rollout.heartbeat,
    ])?;
    let Outcome::Publish(report) = outcome else {
        bail!("publish reported something else");
    };
    let root = bed.repo().join("metadata/1.root.json");
    let loaded = crate::trusted::load(&crate::repo::Repo::new(bed.repo()), Some(&root), now())
        .context("the demo's release directory")?;
    loaded
        .state
        .releases()
        .into_iter()
        .find(|r| r.id == report.release)
        .context("the new release is not in the release directory's metadata")
}

/// `waveguard verify` on the release directory from its first root, as the
/// vendor would before seeding.
fn verify(bed: &Testbed) -> anyhow::Result<()> {
    let repo = bed.repo();
    let root = repo.join("metadata/1.root.json");
    let Outcome::Verify(report) = cli(&[
        "verify",
        &repo.to_string_lossy(),
        "--root",
        &root.to_string_lossy(),
    ])?
    else {
        bail!("verify reported something else");
    };
    if !report.warnings.is_empty() {
        bail!("verify warned: {}", report.warnings.join("; "));
    }
    Ok(())
}

/// Runs a `waveguard` subcommand in-process, now.
fn cli(args: &[&str]) -> anyhow::Result<Outcome> {
    let argv = std::iter::once("waveguard").chain(args.iter().copied());
    run_at(argv, now()).with_context(|| format!("waveguard {}", args.join(" ")))
}

/// Writes `size` pseudo-random bytes (blake3's output stream, keyed apart
/// from the testbed's first artifact so no chunk is shared).
fn write_artifact(path: &Path, size: u64) -> anyhow::Result<()> {
    let mut xof = blake3::Hasher::new()
        .update(b"waveguard demo: the second release")
        .finalize_xof();
    let mut file = std::io::BufWriter::new(
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
    );
    let mut block = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = usize::try_from(left.min(block.len() as u64)).unwrap_or(block.len());
        xof.fill(&mut block[..n]);
        file.write_all(&block[..n])
            .with_context(|| format!("cannot write {}", path.display()))?;
        left -= n as u64;
    }
    file.flush()
        .with_context(|| format!("cannot write {}", path.display()))
}

/// `--dir` must be new or empty: the vendor's key file is never overwritten.
fn empty_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut entries =
        std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    if entries.next().is_some() {
        bail!(
            "{} is not empty; give --dir a new or empty directory",
            dir.display()
        );
    }
    Ok(())
}

/// `product version`.
fn name(r: &Release) -> String {
    format!("{} {}", r.info.product, r.info.version)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RolloutPolicy {
        let waves = crate::cli::args::waves(WAVES)
            .expect("the demo's waves parse")
            .0;
        RolloutPolicy {
            start: waveguard_protocol::Timestamp(0),
            waves,
            health: waveguard_protocol::release::HealthPolicy {
                max_failure_ppm: 200_000,
                min_reports: 1,
                silence_seconds: 6,
                heartbeat_seconds: 1,
                report_ppm: 1_000_000,
            },
        }
    }

    #[test]
    fn the_layout_gives_every_wave_its_share_and_at_least_one_agent() {
        let p = policy();
        assert_eq!(layout(12, &p), [2, 3, 3, 4]);
        assert_eq!(layout(4, &p), [1, 1, 1, 1]);
        assert_eq!(layout(5, &p), [1, 1, 2, 1]);
        for n in 4..=40 {
            let l = layout(n, &p);
            assert_eq!(l.iter().sum::<usize>(), n, "{n}: {l:?}");
            assert!(l.iter().all(|&c| c >= 1), "{n}: {l:?}");
        }
    }
}
