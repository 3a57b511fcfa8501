//! `waveguard demo`: the whole path of a release on one machine, with nothing
//! to set up.
//!
//! A throw-away vendor creates keys and a root, publishes a good release and a
//! bad one into a release directory, and verifies the directory offline —
//! all through the same code as the real subcommands. Then an in-memory fleet
//! of protocol engines (the simulator's mesh: real `Node`s, simulated network
//! and clock) rolls both out from one seeder: the good release wave by wave to
//! everyone, the bad one halted at its canary wave and rolled back there.
//! The real libp2p agents take over this demo in a later version.

use super::{execute, Cli, Outcome};
use anyhow::Context;
use clap::Parser;
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use std::fmt;
use std::path::{Path, PathBuf};
use waveguard_protocol::rollout::{HaltReason, RolloutState};
use waveguard_protocol::wave::{wave_of, WavePin};
use waveguard_protocol::{ReleaseId, Timestamp};
use waveguard_sim::mesh::{BadMode, Mesh, MeshConfig};

/// Arguments of `waveguard demo`.
#[derive(clap::Args, Debug, Clone)]
pub struct DemoArgs {
    /// Endpoints in the in-memory fleet (besides the vendor's seeder).
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..=2000))]
    pub endpoints: u32,
    /// Seed for the artifact, the fleet's identities and every random choice.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Keep the release directory here instead of a temporary directory that is removed afterwards.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// How one release went in the fleet.
#[derive(Debug, Clone)]
pub struct ReleaseRun {
    /// `product version`.
    pub name: String,
    /// What was wrong with it, if anything.
    pub fault: Option<&'static str>,
    /// Per wave: name, cumulative share in ppm, endpoints in it, installs, first and last install (seconds after start).
    pub waves: Vec<WaveRun>,
    /// Endpoints whose final state is healthy.
    pub healthy: usize,
    /// Endpoints that rolled back.
    pub rolled_back: usize,
    /// Nodes (seeder included) that know of a halt.
    pub know_halt: usize,
    /// Why it halted, as one endpoint saw it.
    pub halt: Option<HaltReason>,
}

/// One wave of a [`ReleaseRun`].
#[derive(Debug, Clone)]
pub struct WaveRun {
    /// Wave name.
    pub name: String,
    /// Cumulative share, ppm.
    pub cumulative_ppm: u32,
    /// Endpoints in this wave.
    pub nodes: usize,
    /// Installs that happened.
    pub installed: usize,
    /// First and last install, seconds after the rollout start.
    pub span: Option<(u64, u64)>,
}

/// What `demo` did.
#[derive(Debug, Clone)]
pub struct DemoReport {
    /// Where the release directory is (removed afterwards unless `--dir` was given).
    pub dir: PathBuf,
    /// Whether it was kept.
    pub kept: bool,
    /// The offline steps' reports, in order.
    pub steps: Vec<String>,
    /// Endpoints in the fleet.
    pub endpoints: u32,
    /// The good release's rollout.
    pub good: ReleaseRun,
    /// The bad release's rollout.
    pub bad: ReleaseRun,
    /// Simulated events processed.
    pub events: u64,
}

/// Runs the demo as of `now`.
pub fn run(a: &DemoArgs, now: Timestamp) -> anyhow::Result<DemoReport> {
    let (dir, kept) = match &a.dir {
        Some(d) => (d.clone(), true),
        None => (temp_dir(now), false),
    };
    let result = run_in(a, &dir, now);
    if !kept {
        // Best effort: a leftover temporary directory is harmless.
        let _ = std::fs::remove_dir_all(&dir);
    }
    let (steps, good, bad, events) = result?;
    Ok(DemoReport {
        dir,
        kept,
        steps,
        endpoints: a.endpoints,
        good,
        bad,
        events,
    })
}

type Runs = (Vec<String>, ReleaseRun, ReleaseRun, u64);

fn run_in(a: &DemoArgs, dir: &Path, now: Timestamp) -> anyhow::Result<Runs> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let p = |name: &str| dir.join(name).to_string_lossy().into_owned();
    let (root_key, vendor_key, repo) = (p("root.key"), p("vendor.key"), p("repo"));
    let mut steps = Vec::new();
    let mut step = |args: &[&str]| -> anyhow::Result<Outcome> {
        let mut argv = vec!["waveguard"];
        argv.extend_from_slice(args);
        let outcome = execute(Cli::try_parse_from(&argv)?, now)?;
        steps.push(format!("$ waveguard {}\n{outcome}", args.join(" ")));
        Ok(outcome)
    };
    step(&["keygen", "--out", &root_key])?;
    step(&["keygen", "--out", &vendor_key])?;
    step(&[
        "root",
        "init",
        "--out",
        &repo,
        "--root-key",
        &root_key,
        "--targets-key",
        &vendor_key,
        "--snapshot-key",
        &vendor_key,
        "--timestamp-key",
        &vendor_key,
    ])?;
    // One minute to spread the content, then waves of 10%, 40% and everyone; the bad release
    // starts its own timeline after the good one has finished.
    let mut rng = ChaCha8Rng::seed_from_u64(a.seed);
    let mut ids = Vec::new();
    for (version, size, start_in) in [("7.11.0", 8usize << 20, 60), ("7.11.1", 8 << 20, 660)] {
        let start = now.plus_secs(start_in).to_rfc3339();
        let artifact = dir.join(format!("acme-sensor-{version}.bin"));
        let mut bytes = vec![0u8; size];
        rng.fill_bytes(&mut bytes);
        std::fs::write(&artifact, &bytes)
            .with_context(|| format!("cannot write {}", artifact.display()))?;
        let artifact = artifact.to_string_lossy().into_owned();
        let outcome = step(&[
            "publish",
            &artifact,
            "--repo",
            &repo,
            "--product",
            "acme-sensor",
            "--version",
            version,
            "--key",
            &vendor_key,
            "--waves",
            "canary:10%:2m,early:40%:3m,all:100%:1m",
            "--start",
            &start,
            "--max-failure",
            "20%",
            "--min-reports",
            "1",
            "--silence",
            "1m",
            "--heartbeat",
            "15s",
            "--chunk-avg",
            "256KiB",
        ])?;
        if let Outcome::Publish(r) = outcome {
            ids.push(r.release);
        }
    }
    step(&["verify", &repo])?;
    let [good_id, bad_id] = ids[..] else {
        anyhow::bail!("publish did not report two releases");
    };

    let repo = crate::repo::Repo::new(&repo);
    let loaded = crate::trusted::load(&repo, None, now)?;
    let root = repo.read_metadata(crate::repo::MetadataFile::Root(1))?;
    let config = MeshConfig {
        seed: a.seed,
        endpoints: a.endpoints as usize,
        degree: Some(8),
        ..MeshConfig::default()
    };
    let mut mesh = Mesh::new(config, &root, now).map_err(anyhow::Error::msg)?;
    let bundle = loaded.state.bundle();
    let load = |id: ReleaseId| -> anyhow::Result<(Vec<u8>, Vec<Vec<u8>>)> {
        let release = loaded
            .state
            .release(&id)
            .context("published release is not trusted")?;
        let list_bytes = repo.read_chunk_list(&release)?;
        let list = waveguard_protocol::chunk::ChunkList::decode_for(&release, &list_bytes)?;
        let chunks = list
            .chunks
            .iter()
            .map(|e| repo.read_chunk(e))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((list_bytes, chunks))
    };
    let (list, chunks) = load(good_id)?;
    mesh.publish(bundle.clone(), good_id, list, chunks);
    let policy = loaded
        .state
        .release(&good_id)
        .context("good release")?
        .info
        .rollout
        .clone();
    let settle = policy.end().plus_secs(120);
    mesh.run_until(settle)?;
    let good = summarise(&mesh, &loaded.state, good_id, None);

    // The bad release goes out next, on its own timeline.
    let (list, chunks) = load(bad_id)?;
    mesh.mark_bad(bad_id, BadMode::Probe);
    mesh.publish(bundle, bad_id, list, chunks);
    mesh.run_until(settle.plus_secs(600))?;
    let bad = summarise(
        &mesh,
        &loaded.state,
        bad_id,
        Some("its health probe fails on every machine"),
    );
    Ok((steps, good, bad, mesh.events()))
}

fn summarise(
    mesh: &Mesh,
    trust: &waveguard_protocol::metadata::trust::TrustedState,
    id: ReleaseId,
    fault: Option<&'static str>,
) -> ReleaseRun {
    let Some(release) = trust.release(&id) else {
        return ReleaseRun {
            name: id.to_hex(),
            fault,
            waves: Vec::new(),
            healthy: 0,
            rolled_back: 0,
            know_halt: 0,
            halt: None,
        };
    };
    let policy = release.policy();
    let start = policy.start;
    let mut waves: Vec<WaveRun> = policy
        .waves
        .iter()
        .map(|w| WaveRun {
            name: w.name.clone(),
            cumulative_ppm: w.cumulative_ppm,
            nodes: 0,
            installed: 0,
            span: None,
        })
        .collect();
    let (mut healthy, mut rolled_back, mut halt) = (0, 0, None);
    for i in 1..mesh.len() {
        let w = wave_of(policy, &id, &mesh.node(i).id(), WavePin::None);
        if let Some(slot) = waves.get_mut(w) {
            slot.nodes += 1;
        }
        match mesh.node(i).release_state(&id) {
            Some(RolloutState::Healthy) => healthy += 1,
            Some(RolloutState::RolledBack { .. }) => rolled_back += 1,
            _ => {}
        }
        if halt.is_none() {
            halt = mesh.halt_reason(i, &id);
        }
    }
    for rec in mesh.installs().iter().filter(|r| r.release == id) {
        if let Some(slot) = waves.get_mut(rec.wave) {
            slot.installed += 1;
            let t = rec.at.millis_since(start) / 1000;
            slot.span = Some(slot.span.map_or((t, t), |(a, b)| (a.min(t), b.max(t))));
        }
    }
    ReleaseRun {
        name: format!("{} {}", release.info.product, release.info.version),
        fault,
        waves,
        healthy,
        rolled_back,
        know_halt: (0..mesh.len()).filter(|&i| mesh.knows_halt(i, &id)).count(),
        halt,
    }
}

fn temp_dir(now: Timestamp) -> PathBuf {
    std::env::temp_dir().join(format!(
        "waveguard-demo-{}-{}",
        std::process::id(),
        now.as_millis()
    ))
}

impl fmt::Display for ReleaseRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.fault {
            Some(fault) => writeln!(f, "release {} (bad: {fault})", self.name)?,
            None => writeln!(f, "release {} (good)", self.name)?,
        }
        writeln!(
            f,
            "  {:<8} {:>6} {:>6} {:>10}  installs at (s after start)",
            "wave", "share", "nodes", "installed"
        )?;
        for w in &self.waves {
            let span = w.span.map_or("-".to_string(), |(a, b)| format!("{a}..{b}"));
            writeln!(
                f,
                "  {:<8} {:>6} {:>6} {:>10}  {span}",
                w.name,
                super::publish::percent(w.cumulative_ppm),
                w.nodes,
                w.installed
            )?;
        }
        match &self.halt {
            None => write!(f, "  outcome: {} endpoints healthy, no halt", self.healthy),
            Some(reason) => {
                let why = match reason {
                    HaltReason::GateFailed {
                        wave,
                        failures,
                        reporting,
                    } => {
                        let name = self
                            .waves
                            .get(*wave as usize)
                            .map_or("?", |w| w.name.as_str());
                        format!("the {name} wave's health gate failed ({failures} of {reporting} reporting nodes failed)")
                    }
                    HaltReason::Directive { reason, seq } => {
                        format!("a signed halt directive #{seq}: {reason}")
                    }
                    HaltReason::LocalFailure { detail } => detail.clone(),
                };
                write!(
                    f,
                    "  outcome: halted, {why}; {} nodes know the halt; {} endpoints rolled back; installs outside the first wave: {}",
                    self.know_halt,
                    self.rolled_back,
                    self.waves.iter().skip(1).map(|w| w.installed).sum::<usize>()
                )
            }
        }
    }
}

impl fmt::Display for DemoReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "== a vendor publishes two releases and verifies them offline"
        )?;
        for s in &self.steps {
            writeln!(f, "{}", s.trim_end())?;
            writeln!(f)?;
        }
        writeln!(
            f,
            "== {} endpoints and one seeder roll them out (in-memory protocol engines, simulated clock and network)",
            self.endpoints
        )?;
        writeln!(f, "{}", self.good)?;
        writeln!(f)?;
        writeln!(f, "{}", self.bad)?;
        writeln!(f)?;
        write!(
            f,
            "({} simulated events; release directory {} {})",
            self.events,
            self.dir.display(),
            if self.kept { "kept" } else { "removed" }
        )
    }
}
