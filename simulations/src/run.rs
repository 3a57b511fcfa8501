//! One simulation run from a [`Scenario`]: builds the vendor, the release and
//! the mesh, injects the scenario's faults, advances simulated time sample by
//! sample, and turns what the mesh counted into a [`Summary`] and a
//! [`TimeSeries`]. Every decision stays in the engines; this only schedules
//! and measures.

use crate::bound::LowerBound;
use crate::fleet::{self, EngineInfo};
use crate::mesh::stats::Kind;
use crate::mesh::{InvariantViolation, Mesh, MeshConfig};
use crate::report::nodes::NodeRecord;
use crate::report::series::{Sample, TimeSeries};
use crate::report::summary::{BadReleaseSummary, Percentiles, Summary, WanSummary, WaveSummary};
use crate::sample::SampleVendor;
use crate::scenario::{HaveLie, HealthLie, Scenario};
use indicatif::ProgressBar;
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use std::collections::{BTreeMap, HashSet};
use std::time::Instant;
use thiserror::Error;
use waveguard_protocol::health::gate::GateState;
use waveguard_protocol::wave::{reports_health, wave_of, WavePin};
use waveguard_protocol::{ReleaseId, Timestamp};

/// When every simulated run publishes its release.
pub const PUBLISH_AT: Timestamp = Timestamp::from_secs(1_900_000_000);

/// A run could not be set up or broke an invariant.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum RunError {
    /// The vendor, release or mesh could not be built.
    #[error("setting up the run (seed {seed}): {message}")]
    Setup {
        /// The run's seed.
        seed: u64,
        /// What failed.
        message: String,
    },
    /// An invariant broke (the error carries the time and the seed).
    #[error(transparent)]
    Invariant(#[from] InvariantViolation),
}

/// What one run produced.
#[derive(Clone, Debug)]
pub struct RunOutput {
    /// For `summary.json`.
    pub summary: Summary,
    /// For the CSV and the plots.
    pub series: TimeSeries,
    /// For `nodes.csv`: one record per endpoint.
    pub nodes: Vec<NodeRecord>,
}

/// Runs `scenario` to its end (or until the rollout settles), updating `progress`
/// with simulated seconds.
pub fn run(scenario: &Scenario, progress: Option<&ProgressBar>) -> Result<RunOutput, RunError> {
    let started = Instant::now();
    let seed = scenario.seed;
    let setup = |message: String| RunError::Setup { seed, message };
    // A sampled fleet runs the engines' scenario and counts the members at the end.
    let whole = scenario;
    let (engines, shape) = match fleet::engine_scenario(whole) {
        Some((engines, shape)) => (Some(engines), Some(shape)),
        None => (None, None),
    };
    let scenario = engines.as_ref().unwrap_or(whole);
    let mut vendor = SampleVendor::new(seed, PUBLISH_AT, false).map_err(setup)?;
    let policy = scenario.policy(PUBLISH_AT);
    let release = vendor
        .release_with(
            "acme-sensor",
            "8.0.0",
            scenario.release_bytes(),
            policy.clone(),
            PUBLISH_AT,
            scenario.chunker(),
        )
        .map_err(setup)?;
    let config = MeshConfig {
        seed,
        prefetch: scenario.rollout.prefetch,
        topology: Some(scenario.topology()),
        gossip: scenario.gossip_config(),
        byte_scale: scenario.release.byte_scale.max(1),
        wan_fetchers: scenario.topology.wan_fetchers,
        ..MeshConfig::default()
    };
    let mut mesh = Mesh::new(config, vendor.root_json(), PUBLISH_AT).map_err(setup)?;
    let start_degree: Vec<usize> = (0..mesh.len()).map(|i| mesh.degree(i)).collect();
    mesh.publish(
        release.bundle.clone(),
        release.id,
        release.chunk_list.clone(),
        release.chunks,
    );
    mesh.track_release(release.id);
    inject_faults(scenario, &mut mesh, release.id);

    let endpoints = scenario.endpoints();
    let fleet_label = match &shape {
        Some(shape) => format!(
            "{endpoints} engines of this {}-endpoint sampled fleet",
            shape.endpoints()
        ),
        None => format!("this {endpoints}-endpoint fleet"),
    };
    let waves = policy.waves.len();
    let wave_of_node: Vec<usize> = (0..mesh.len())
        .map(|i| wave_of(&policy, &release.id, &mesh.node(i).id(), WavePin::None))
        .collect();
    for (w, spec) in policy.waves.iter().enumerate() {
        if !(1..mesh.len()).any(|i| wave_of_node[i] == w) {
            // Its gate needs `min_reports` healthy reports, so the rollout would stall there.
            return Err(setup(format!(
                "wave {w} ({}) gets no endpoint of {fleet_label}, so its gate \
                 could never pass; raise its cumulative_percent or the fleet size",
                spec.name
            )));
        }
        let reporters = (1..mesh.len())
            .filter(|&i| wave_of_node[i] == w)
            .filter(|&i| reports_health(&policy, &release.id, &mesh.node(i).id(), WavePin::None))
            .count();
        let min = policy.health.min_reports as usize;
        if w + 1 < waves && reporters < min {
            return Err(setup(format!(
                "wave {w} ({}) has {reporters} endpoints in the report sample of \
                 {fleet_label}, fewer than min_reports {min}, so its gate could never \
                 pass; raise report_percent or the wave's share",
                spec.name
            )));
        }
    }
    let members = match &shape {
        Some(shape) => {
            let topo = mesh.topology();
            let info: Vec<EngineInfo> = (1..mesh.len())
                .map(|i| EngineInfo {
                    site: topo.site_of(i),
                    wave: wave_of_node[i],
                    ordinary: mesh.faults_of(i) == (false, None)
                        && mesh.have_lie_of(i).is_none()
                        && !mesh.hurts(i, &release.id),
                })
                .collect();
            let bad = scenario.bad_release.as_ref().map_or(0.0, |b| b.fraction);
            let members = fleet::draw_members(seed, shape, &policy, &release.id, &info, bad)
                .map_err(|e| setup(e.to_string()))?;
            Some(members)
        }
        None => None,
    };
    let mut series = TimeSeries::new(policy.waves.iter().map(|w| w.name.clone()).collect());
    let mut installed = vec![0u64; waves];
    let mut installed_nodes = HashSet::new();
    let mut seen_installs = 0usize;
    let end = PUBLISH_AT.plus_secs(scenario.duration_s);
    let mut t = PUBLISH_AT;
    loop {
        t = t.plus_secs(scenario.sample_s).min(end);
        mesh.run_until(t)?;
        for rec in &mesh.installs()[seen_installs..] {
            if rec.release == release.id {
                installed[rec.wave.min(waves - 1)] += 1;
                installed_nodes.insert(rec.node);
            }
        }
        seen_installs = mesh.installs().len();
        let (bandwidth, wan, seeder) = mesh.rates();
        let k = scenario.byte_scale();
        let stats = mesh.stats();
        let observed_open = installed.iter().rposition(|&n| n > 0).map_or(0, |w| w + 1);
        let passed = seeder_passed(&mesh, &release.id);
        let started_waves = if t >= policy.start {
            (passed + 1).min(waves)
        } else {
            0
        };
        series.push(Sample {
            t_s: secs(t),
            installed: installed.clone(),
            downloaded: (1..mesh.len())
                .filter(|&i| mesh.completed_at(i).is_some())
                .count() as u64,
            healthy: stats.healthy,
            failed: stats.failed,
            knowing_halt: stats.knowing_halt,
            waves_open: observed_open.max(started_waves) as u64,
            halted: stats.first_halt.is_some(),
            // Nominal rates: `+ 0.0` turns a -0 sum into 0.
            bandwidth_bps: bandwidth * k + 0.0,
            wan_bps: wan * k + 0.0,
            seeder_upload_bps: seeder * k + 0.0,
            delivered_bytes: mesh.carried_bytes() as f64 * k,
        });
        if let Some(p) = progress {
            p.set_position(t.0.saturating_sub(PUBLISH_AT.0) / 1000);
        }
        let settled = (1..mesh.len()).all(|i| {
            mesh.is_dead(i) || installed_nodes.contains(&i) || mesh.knows_halt(i, &release.id)
        });
        let downloaded = series
            .samples
            .last()
            .is_some_and(|s| s.downloaded == endpoints as u64);
        if t >= end
            || (scenario.stop_when_settled && settled)
            || (scenario.stop_when_downloaded && downloaded)
        {
            break;
        }
    }

    let stats = mesh.stats().clone();
    let mut summary = Summary {
        scenario: scenario.name.clone(),
        seed,
        trace_hash: hex::encode(mesh.trace_hash()),
        endpoints: endpoints as u64,
        release_bytes: scenario.nominal_release_bytes(),
        byte_scale: u64::from(scenario.release.byte_scale),
        events: mesh.events(),
        wall_seconds: started.elapsed().as_secs_f64(),
        simulated_seconds: secs(mesh.now()),
        ..Summary::default()
    };
    summary.events_per_second = summary.events as f64 / summary.wall_seconds.max(1e-9);
    summary.peak_memory_bytes = peak_memory();
    summary.waves = (0..waves)
        .map(|w| {
            let mut times: Vec<f64> = mesh
                .installs()
                .iter()
                .filter(|r| r.release == release.id && r.wave == w)
                .map(|r| r.at.0.saturating_sub(policy.start.0) as f64 / 1000.0)
                .collect();
            let first = mesh
                .installs()
                .iter()
                .filter(|r| r.release == release.id && r.wave == w)
                .map(|r| r.at)
                .min();
            WaveSummary {
                name: policy.waves[w].name.clone(),
                eligible: (1..mesh.len()).filter(|&i| wave_of_node[i] == w).count() as u64,
                installed: times.len() as u64,
                completion: Percentiles::from_samples(&mut times),
                opened_at_s: first.map(secs),
            }
        })
        .collect();
    let mut done: Vec<f64> = (1..mesh.len())
        .filter_map(|i| mesh.completed_at(i).map(secs))
        .collect();
    summary.download = Percentiles::from_samples(&mut done);
    let mut honest_done: Vec<f64> = (1..mesh.len())
        .filter(|&i| mesh.faults_of(i) == (false, None) && mesh.have_lie_of(i).is_none())
        .filter_map(|i| mesh.completed_at(i).map(secs))
        .collect();
    summary.download_honest = Percentiles::from_samples(&mut honest_done);
    let topo = mesh.topology();
    // In nominal bytes and rates; the bound is the same under any byte scale.
    let k = scenario.byte_scale();
    let mut bound = LowerBound::new(summary.release_bytes, topo.upload(0) * k);
    for i in 1..mesh.len() {
        bound.add_peer(topo.upload(i) * k, topo.download(i) * k);
    }
    let all_done = summary.download.count == endpoints as u64;
    summary.lower_bound = bound.summary(summary.download.max.filter(|_| all_done));
    // Chunk bytes were scaled down; everything else is its true size.
    let nominal = |bytes: &[u64; Kind::ALL.len()]| -> Vec<f64> {
        Kind::ALL
            .iter()
            .zip(bytes)
            .map(|(kind, &b)| {
                if *kind == Kind::Chunk {
                    b as f64 * k
                } else {
                    b as f64
                }
            })
            .collect()
    };
    summary.seeder_upload_bytes = nominal(&stats.seeder_bytes).iter().sum::<f64>() as u64;
    summary.wan_in = stats
        .wan_in
        .iter()
        .enumerate()
        .filter_map(|(s, bytes)| {
            let site = topo.sites.get(s)?;
            let all = nominal(bytes);
            let chunk = all[Kind::Chunk as usize] as u64;
            let summary = WanSummary {
                chunk_bytes: chunk,
                total_bytes: all.iter().sum::<f64>() as u64,
                releases: chunk as f64 / summary.release_bytes.max(1) as f64,
            };
            Some((site.name.clone(), summary))
        })
        .collect();
    let endpoint_bytes = nominal(&stats.endpoint_bytes);
    summary.bytes_per_node = Kind::ALL
        .iter()
        .zip(endpoint_bytes)
        .map(|(kind, b)| (kind.name().to_string(), b / endpoints.max(1) as f64))
        .collect();
    if scenario.bad_release.is_some() {
        let installed_bad = mesh
            .installs()
            .iter()
            .filter(|r| r.release == release.id)
            .count() as u64;
        let alive = (0..mesh.len()).filter(|&i| !mesh.is_dead(i)).count() as f64;
        let target = (alive * 0.999).ceil() as u64;
        let knowing_999 = stats
            .halt_knowledge
            .iter()
            .find(|(_, n)| *n >= target)
            .map(|(at, _)| *at);
        let since = |a: Option<Timestamp>, b: Option<Timestamp>| match (a, b) {
            (Some(a), Some(b)) => Some(b.0.saturating_sub(a.0) as f64 / 1000.0),
            _ => None,
        };
        summary.bad_release = Some(BadReleaseSummary {
            installed_bad,
            blast_radius: installed_bad as f64 / endpoints.max(1) as f64,
            failed: stats.failed,
            first_failure_s: stats.first_failure.map(secs),
            first_halt_s: stats.first_halt.map(secs),
            failure_to_halt_s: since(stats.first_failure, stats.first_halt),
            failure_to_999_knowing_s: since(stats.first_failure, knowing_999),
            knowing_halt: stats.knowing_halt,
        });
    }
    summary.faults = stats
        .faults
        .iter()
        .map(|(k, v)| (k.to_string(), *v))
        .collect::<BTreeMap<_, _>>();
    if !mesh.rejections().is_empty() {
        // Every node that rejected a corrupt chunk must have banned its sender.
        let banned: std::collections::HashSet<(usize, usize)> =
            mesh.bans().iter().copied().collect();
        let unbanned = mesh
            .rejections()
            .keys()
            .filter(|pair| !banned.contains(pair))
            .count();
        summary
            .faults
            .insert("corrupt_senders_not_banned".into(), unbanned as u64);
    }
    summary.invariant_checks = stats.invariant_checks;
    let mut install_at = vec![None; mesh.len()];
    for r in mesh.installs().iter().filter(|r| r.release == release.id) {
        install_at[r.node].get_or_insert(r.at);
    }
    let mut nodes: Vec<NodeRecord> = (1..mesh.len())
        .map(|i| {
            let (corrupt, lie) = mesh.faults_of(i);
            NodeRecord {
                node: i as u64,
                site: topo.sites[topo.site_of(i)].name.clone(),
                wave: wave_of_node[i] as u32,
                degree: start_degree[i] as u32,
                corrupt,
                lie: lie.map(|l| match l {
                    HealthLie::Forge => "forge",
                    HealthLie::Withhold => "withhold",
                }),
                have_lie: mesh.have_lie_of(i).map(|l| match l {
                    HaveLie::NotFound => "not-found",
                    HaveLie::Stall => "stall",
                }),
                first_chunk_s: mesh.first_chunk_at(i).map(secs),
                downloaded_s: mesh.completed_at(i).map(secs),
                installed_s: install_at[i].map(secs),
                knew_halt_s: mesh.knew_halt_at(i).map(secs),
                dead: mesh.is_dead(i),
                stands_for: 1,
            }
        })
        .collect();
    if let (Some(shape), Some(members)) = (&shape, &members) {
        let bad = scenario.bad_release.as_ref().map(|b| b.mode);
        fleet::expand(
            &mut summary,
            &mut series,
            &mut nodes,
            members,
            shape,
            scenario.rollout.start_after_s as f64,
            bad,
        );
        let all_done = summary.download.count == summary.endpoints;
        summary.lower_bound = whole
            .lower_bound()
            .summary(summary.download.max.filter(|_| all_done));
        summary.seeder_upload_bytes =
            (summary.seeder_upload_bytes as f64 * shape.seeder_factor) as u64;
    }
    Ok(RunOutput {
        summary,
        series,
        nodes,
    })
}

/// Seconds after publishing.
fn secs(t: Timestamp) -> f64 {
    t.0.saturating_sub(PUBLISH_AT.0) as f64 / 1000.0
}

/// Waves whose gate passed, as the seeder sees them.
fn seeder_passed(mesh: &Mesh, release: &ReleaseId) -> usize {
    mesh.node(0)
        .status()
        .releases
        .iter()
        .find(|r| r.id == *release)
        .map_or(0, |r| {
            r.waves
                .iter()
                .take_while(|w| w.gate == GateState::Passed)
                .count()
        })
}

fn inject_faults(scenario: &Scenario, mesh: &mut Mesh, release: ReleaseId) {
    let endpoints = scenario.endpoints();
    let mut rng = ChaCha8Rng::seed_from_u64(scenario.seed ^ 0x6661_756c_7473);
    let pick = |fraction: f64, rng: &mut ChaCha8Rng| -> Vec<usize> {
        let count = (fraction * endpoints as f64).round() as usize;
        let mut all: Vec<usize> = (1..=endpoints).collect();
        // A partial Fisher-Yates shuffle: the first `count` are a seeded sample.
        for k in 0..count.min(all.len()) {
            let j = k + (rng.next_u64() as usize) % (all.len() - k);
            all.swap(k, j);
        }
        all.truncate(count);
        all
    };
    if let Some(bad) = &scenario.bad_release {
        mesh.mark_bad_fraction(release, bad.mode, bad.fraction);
    }
    for i in pick(scenario.faults.corrupt_peers, &mut rng) {
        mesh.make_liar(i);
    }
    if let Some(lie) = scenario.faults.lie {
        for i in pick(scenario.faults.lying_peers, &mut rng) {
            mesh.make_health_liar(i, lie);
        }
    }
    if scenario.faults.have_liars > 0.0 {
        // Availability liars come from the endpoints that do not serve corrupted chunks,
        // drawn from a stream of their own so that other faults fall where they did.
        let mut rng = ChaCha8Rng::seed_from_u64(scenario.seed ^ 0x6861_7665);
        let honest: Vec<usize> = (1..=endpoints).filter(|&i| !mesh.faults_of(i).0).collect();
        let count = (scenario.faults.have_liars * endpoints as f64).round() as usize;
        let mut order = honest;
        for k in 0..count.min(order.len()) {
            let j = k + (rng.next_u64() as usize) % (order.len() - k);
            order.swap(k, j);
        }
        order.truncate(count);
        for i in order {
            mesh.make_have_liar(i, scenario.faults.have_lie);
        }
    }
    for p in &scenario.faults.partitions {
        if let Some(site) = scenario.site_index(&p.site) {
            mesh.schedule_cut(
                site,
                PUBLISH_AT.plus_secs(p.from_s),
                p.until_s.map(|u| PUBLISH_AT.plus_secs(u)),
            );
        }
    }
    for b in &scenario.faults.bundles {
        if let Some(site) = scenario.site_index(&b.site) {
            let first = mesh.topology().endpoints_of(site).start;
            mesh.schedule_import(first, PUBLISH_AT.plus_secs(b.at_s));
        }
    }
    if let Some(c) = &scenario.churn {
        for i in pick(c.fraction, &mut rng) {
            let at = c.from_s + rng.next_u64() % (c.until_s - c.from_s).max(1);
            mesh.schedule_leave(
                i,
                PUBLISH_AT.plus_secs(at),
                PUBLISH_AT.plus_secs(at + c.offline_s),
            );
        }
    }
}

/// The process's peak resident memory (Linux `VmHWM`), if known.
pub fn peak_memory() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
