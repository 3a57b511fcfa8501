//! `waveguard-sim quick`: a seeded fleet in memory receives one release from a
//! seeder and rolls it out; prints installs per wave, health traffic, the halt
//! (for a bad release) and the event-trace hash. No scenario file needed.

use anyhow::{bail, Context};
use clap::ValueEnum;
use waveguard_protocol::release::{HealthPolicy, RolloutPolicy, WaveSpec};
use waveguard_protocol::wave::{reports_health, wave_of, WavePin};
use waveguard_protocol::Timestamp;
use waveguard_sim::mesh::{BadMode, Mesh, MeshConfig};
use waveguard_sim::sample::SampleVendor;

#[derive(clap::Args, Debug)]
pub struct QuickArgs {
    /// Endpoints besides the seeder.
    #[arg(long, default_value_t = 100)]
    endpoints: usize,
    /// Seed for keys, content, topology and every engine.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Connections per node (default: 8).
    #[arg(long, default_value_t = 8)]
    degree: usize,
    /// Release size in KiB.
    #[arg(long, default_value_t = 4096)]
    size_kib: usize,
    /// Make the release bad.
    #[arg(long, value_enum)]
    bad: Option<Bad>,
    /// The percentage of each wave that reports health (the report sample).
    #[arg(long, default_value_t = 100.0)]
    report_percent: f64,
    /// Run twice and require the same event-trace hash.
    #[arg(long)]
    check_determinism: bool,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Bad {
    /// Installers' health probes fail.
    Probe,
    /// Installers crash silently right after installing.
    Crash,
}

const T0: Timestamp = Timestamp::from_secs(1_900_000_000);

fn policy(report_percent: f64) -> RolloutPolicy {
    let wave = |name: &str, ppm, bake| WaveSpec {
        name: name.into(),
        cumulative_ppm: ppm,
        bake_seconds: bake,
    };
    RolloutPolicy {
        start: T0.plus_secs(60),
        waves: vec![
            wave("canary", 20_000, 300),
            wave("early", 200_000, 600),
            wave("broad", 600_000, 600),
            wave("all", 1_000_000, 300),
        ],
        health: HealthPolicy {
            max_failure_ppm: 200_000,
            min_reports: 1,
            silence_seconds: 120,
            heartbeat_seconds: 30,
            report_ppm: (report_percent * 10_000.0).round() as u32,
        },
    }
}

/// Health traffic: per wave window, the reports sent (they come from the waves in progress),
/// and over the whole rollout, what each node received, against what the previous rule
/// (heartbeats from install until one silence period past the end) would have sent.
fn health_traffic(
    mesh: &Mesh,
    p: &RolloutPolicy,
    release: &waveguard_protocol::ReleaseId,
) -> Vec<String> {
    let mut lines = vec![format!(
        "health: {:<8} {:>6} {:>9} {:>14}  (reports sent while the wave bakes, by everyone)",
        "window", "nodes", "reporters", "reports sent"
    )];
    for (w, spec) in p.waves.iter().enumerate() {
        let members: Vec<_> = (1..mesh.len())
            .map(|i| mesh.node(i).id())
            .filter(|id| wave_of(p, release, id, WavePin::None) == w)
            .collect();
        let reporters = members
            .iter()
            .filter(|id| reports_health(p, release, id, WavePin::None))
            .count();
        let (from, to) = (p.scheduled_open(w), p.scheduled_open(w + 1));
        let to = if w + 1 == p.waves.len() {
            to.plus_secs(p.health.silence_seconds)
        } else {
            to
        };
        lines.push(format!(
            "health: {:<8} {:>6} {:>9} {:>14}",
            spec.name,
            members.len(),
            reporters,
            mesh.health_sent_between(from, to)
        ));
    }
    let endpoints = mesh.len().saturating_sub(1).max(1) as u64;
    let sent: u64 = (1..mesh.len()).map(|i| mesh.health_sent(i)).sum();
    let (msgs, bytes): (u64, u64) = (1..mesh.len())
        .map(|i| mesh.health_received(i))
        .fold((0, 0), |(m, b), (m2, b2)| (m + m2, b + b2));
    let hb = p.health.heartbeat_seconds.max(1);
    let until = p.end().plus_secs(p.health.silence_seconds);
    let previous: u64 = mesh
        .installs()
        .iter()
        .map(|r| 2 + until.millis_since(r.at) / 1000 / hb)
        .sum();
    lines.push(format!(
        "health: {sent} reports sent in all ({:.1} per endpoint); each endpoint received {} messages, {} KiB on average",
        sent as f64 / endpoints as f64,
        msgs / endpoints,
        bytes / endpoints / 1024
    ));
    lines.push(format!(
        "health: every node heartbeating until one silence period past the end (the first rule, no sample) would send about {previous} reports ({:.1}x)",
        previous as f64 / sent.max(1) as f64
    ));
    lines
}

struct Summary {
    lines: Vec<String>,
    trace: [u8; 32],
}

fn quick(a: &QuickArgs) -> anyhow::Result<Summary> {
    let mut vendor = SampleVendor::new(a.seed, T0, false).map_err(anyhow::Error::msg)?;
    let config = MeshConfig {
        seed: a.seed,
        endpoints: a.endpoints,
        degree: Some(a.degree),
        ..MeshConfig::default()
    };
    let mut mesh = Mesh::new(config, vendor.root_json(), T0).map_err(anyhow::Error::msg)?;
    let release = vendor
        .release(
            "sample",
            "1.0.0",
            a.size_kib * 1024,
            policy(a.report_percent),
            T0,
        )
        .map_err(anyhow::Error::msg)?;
    mesh.publish(
        release.bundle.clone(),
        release.id,
        release.chunk_list.clone(),
        release.chunks.clone(),
    );
    match a.bad {
        Some(Bad::Probe) => mesh.mark_bad(release.id, BadMode::Probe),
        Some(Bad::Crash) => mesh.mark_bad(release.id, BadMode::Crash),
        None => {}
    }
    let started = std::time::Instant::now();
    mesh.run_until(policy(a.report_percent).end().plus_secs(1800))
        .with_context(|| format!("seed {}", a.seed))?;
    let wall = started.elapsed();

    let p = policy(a.report_percent);
    let mut lines = vec![format!(
        "{} endpoints, seed {}, {} KiB release {}",
        a.endpoints,
        a.seed,
        a.size_kib,
        if a.bad.is_some() { "(bad)" } else { "(good)" }
    )];
    lines.push(format!(
        "{:<8} {:>6} {:>10}  first..last install (s after start)",
        "wave", "nodes", "installed"
    ));
    for (w, spec) in p.waves.iter().enumerate() {
        let nodes = (1..mesh.len())
            .filter(|&i| wave_of(&p, &release.id, &mesh.node(i).id(), WavePin::None) == w)
            .count();
        let times: Vec<u64> = mesh
            .installs()
            .iter()
            .filter(|r| r.wave == w)
            .map(|r| r.at.millis_since(p.start) / 1000)
            .collect();
        let span = match (times.iter().min(), times.iter().max()) {
            (Some(a), Some(b)) => format!("{a}..{b}"),
            _ => "-".into(),
        };
        lines.push(format!(
            "{:<8} {:>6} {:>10}  {span}",
            spec.name,
            nodes,
            times.len()
        ));
    }
    lines.extend(health_traffic(&mesh, &p, &release.id));
    let know_halt = (0..mesh.len())
        .filter(|&i| mesh.knows_halt(i, &release.id))
        .count();
    lines.push(format!(
        "nodes that know of a halt: {know_halt} of {}",
        mesh.len()
    ));
    lines.push(format!(
        "{} events in {:.2} s wall ({:.0} events/s)",
        mesh.events(),
        wall.as_secs_f64(),
        mesh.events() as f64 / wall.as_secs_f64().max(1e-9)
    ));
    let trace = mesh.trace_hash();
    lines.push(format!("trace hash {}", hex::encode(trace)));
    Ok(Summary { lines, trace })
}

/// Runs `quick` (twice with `--check-determinism`) and prints what happened.
pub fn main(a: &QuickArgs) -> anyhow::Result<()> {
    let first = quick(a)?;
    for l in &first.lines {
        println!("{l}");
    }
    if a.check_determinism {
        let second = quick(a)?;
        if second.trace != first.trace {
            bail!(
                "seed {}: the second run's trace hash {} differs from the first's {}",
                a.seed,
                hex::encode(second.trace),
                hex::encode(first.trace)
            );
        }
        println!("determinism: a second run gave the same trace hash");
    }
    Ok(())
}
