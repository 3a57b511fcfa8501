//! The sampled fleet: how a scenario with more endpoints than `[scale] engines`
//! runs. Only `engines` endpoints are full protocol engines; every other
//! endpoint (a **member**) has its own node ID, hence its own wave and report
//! sample bucket computed by the protocol, and follows a **twin**: an engine of
//! its site and wave whose download, install and halt times it takes as its
//! own. Members are drawn outside the report sample, so every health report,
//! and with it every gate decision, comes from an engine; members only add
//! what they would not send anyway (docs/simulator.md, "Sampled fleets").
//!
//! This module makes the engines' scenario (each site cut to its share of the
//! engines, the seeder's upload cut by the same ratio so each engine gets the
//! share of it a fleet endpoint would, but not below the rate at which its own
//! term of the lower bound would exceed the fleet's bound, the report share raised by the inverse
//! ratio so the engines hold as many reporters as the whole fleet would), draws
//! the members, and turns the engines' results into the fleet's. It decides
//! nothing about the rollout.

use crate::report::nodes::NodeRecord;
use crate::report::series::TimeSeries;
use crate::report::summary::{Percentiles, Summary};
use crate::scenario::{BadMode, Scenario};
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use waveguard_protocol::release::{RolloutPolicy, PPM};
use waveguard_protocol::wave::{reports_health, wave_of, WavePin};
use waveguard_protocol::{NodeId, ReleaseId};

/// Domain separation of the member ID stream from every other seeded stream.
const MEMBER_STREAM: u64 = 0x6d65_6d62_6572_7321;

/// How a sampled fleet splits: per site, its endpoints and its engines.
#[derive(Clone, Debug, PartialEq)]
pub struct FleetShape {
    /// Per site, in scenario order: (endpoints of the fleet, engines among them).
    pub sites: Vec<(usize, usize)>,
    /// The fleet's seeder upload over the engines' (the fleet/engine ratio
    /// unless the cut stopped at its floor; 1 for an unlimited seeder).
    pub seeder_factor: f64,
}

impl FleetShape {
    /// Endpoints of the whole fleet.
    pub fn endpoints(&self) -> usize {
        self.sites.iter().map(|s| s.0).sum()
    }

    /// Endpoints run as engines.
    pub fn engines(&self) -> usize {
        self.sites.iter().map(|s| s.1).sum()
    }

    /// Endpoints each engine stands for on average (fleet / engines).
    pub fn ratio(&self) -> f64 {
        self.endpoints() as f64 / self.engines().max(1) as f64
    }
}

/// The scenario the engines run, and the fleet's shape, when `[scale] engines`
/// is below the fleet's endpoints; `None` when every endpoint is an engine.
pub fn engine_scenario(scenario: &Scenario) -> Option<(Scenario, FleetShape)> {
    let wanted = scenario.scale.as_ref()?.engines;
    let fleet = scenario.endpoints();
    if wanted >= fleet {
        return None;
    }
    let share = wanted as f64 / fleet as f64;
    let mut engines = scenario.clone();
    engines.scale = None;
    let mut sites = Vec::with_capacity(scenario.sites.len());
    for site in &mut engines.sites {
        let all = site.endpoints;
        site.endpoints = ((all as f64 * share).round() as usize).clamp(1.min(all), all);
        sites.push((all, site.endpoints));
    }
    let mut shape = FleetShape {
        sites,
        seeder_factor: 1.0,
    };
    let ratio = shape.ratio();
    // Never so slow that the seeder's own term, F / u_s, would exceed the
    // fleet's bound: the engines' bound then equals the fleet's.
    let bound = scenario.lower_bound().seconds();
    let floor_mbit = match bound.is_finite() && bound > 0.0 {
        true => scenario.nominal_release_bytes() as f64 * 8.0 / 1e6 / bound,
        false => 0.0,
    };
    engines.seeder.upload_mbit = scenario
        .seeder
        .upload_mbit
        .map(|m| (m / ratio).max(floor_mbit));
    if let (Some(fleet), Some(cut)) = (scenario.seeder.upload_mbit, engines.seeder.upload_mbit) {
        shape.seeder_factor = fleet / cut;
    }
    engines.rollout.report_percent = (scenario.rollout.report_percent * ratio).min(100.0);
    Some((engines, shape))
}

/// What a member needs to know about the engines: per engine (mesh node
/// `i + 1`) its site, its wave, and whether it may be a twin (it carries no
/// injected fault and the bad release, if any, does not hurt it, so its times
/// are those of an ordinary endpoint).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EngineInfo {
    /// Index of its site.
    pub site: usize,
    /// Its wave for the release.
    pub wave: usize,
    /// It may be a twin.
    pub ordinary: bool,
}

/// The members of a sampled fleet.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Members {
    /// Per member: the engine (index into the engine list) it follows.
    pub twin: Vec<u32>,
    /// Per member: its wave.
    pub wave: Vec<u8>,
    /// Per member: the bad release hurts it.
    pub hurt: Vec<bool>,
    /// Member IDs drawn again because they fell in the report sample.
    pub redrawn: u64,
}

/// Why members could not be drawn.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum MembersError {
    /// A site and wave hold members but no engine to follow.
    #[error(
        "site {site} has members in wave {wave} but none of its engines is in that wave; \
         raise [scale] engines"
    )]
    NoTwin {
        /// The site's index.
        site: usize,
        /// The wave.
        wave: usize,
    },
    /// The signed report share puts every node in the report sample.
    #[error("the report sample holds every node, so no member can be drawn outside it; lower report_percent or raise [scale] engines")]
    EveryNodeReports,
}

/// Draws the members of `shape` from `seed`: each gets a node ID outside the
/// report sample of `policy` (drawn again while inside), its wave from the
/// protocol, a twin among the ordinary engines of its site and wave (any
/// engine there when none is ordinary), and whether `bad_fraction` of the
/// fleet hurts it.
pub fn draw_members(
    seed: u64,
    shape: &FleetShape,
    policy: &RolloutPolicy,
    release: &ReleaseId,
    engines: &[EngineInfo],
    bad_fraction: f64,
) -> Result<Members, MembersError> {
    if policy.health.report_ppm >= PPM {
        return Err(MembersError::EveryNodeReports);
    }
    let waves = policy.waves.len();
    // Twin candidates per (site, wave): ordinary engines first choice.
    let mut ordinary = vec![Vec::new(); shape.sites.len() * waves];
    let mut any = vec![Vec::new(); shape.sites.len() * waves];
    for (e, info) in engines.iter().enumerate() {
        let slot = info.site * waves + info.wave.min(waves - 1);
        any[slot].push(e as u32);
        if info.ordinary {
            ordinary[slot].push(e as u32);
        }
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ MEMBER_STREAM);
    let mut members = Members::default();
    let total = shape.endpoints() - shape.engines();
    members.twin.reserve(total);
    members.wave.reserve(total);
    members.hurt.reserve(total);
    for (site, &(all, engine_count)) in shape.sites.iter().enumerate() {
        for _ in engine_count..all {
            let id = loop {
                let mut bytes = [0u8; 32];
                rng.fill_bytes(&mut bytes);
                let id = NodeId(bytes);
                if !reports_health(policy, release, &id, WavePin::None) {
                    break id;
                }
                members.redrawn += 1;
            };
            let wave = wave_of(policy, release, &id, WavePin::None);
            let slot = site * waves + wave.min(waves - 1);
            let from = if ordinary[slot].is_empty() {
                &any[slot]
            } else {
                &ordinary[slot]
            };
            if from.is_empty() {
                return Err(MembersError::NoTwin { site, wave });
            }
            let twin = from[(rng.next_u64() % from.len() as u64) as usize];
            let draw = rng.next_u64() as f64 / u64::MAX as f64;
            members.twin.push(twin);
            members.wave.push(wave as u8);
            members
                .hurt
                .push(bad_fraction >= 1.0 || draw < bad_fraction);
        }
    }
    Ok(members)
}

/// What one member did, taken from its twin's record.
#[derive(Clone, Copy, Debug, PartialEq)]
struct MemberOutcome {
    downloaded_s: Option<f64>,
    installed_s: Option<f64>,
    knew_halt_s: Option<f64>,
    failed: bool,
    dead: bool,
}

fn outcome(twin: &NodeRecord, hurt: bool, bad: Option<BadMode>) -> MemberOutcome {
    let installed = twin.installed_s.is_some();
    let failed = installed && hurt && bad.is_some();
    let dead = twin.dead || (failed && bad == Some(BadMode::Crash));
    MemberOutcome {
        downloaded_s: twin.downloaded_s,
        installed_s: twin.installed_s,
        // A crashed machine learns nothing more.
        knew_halt_s: if dead { None } else { twin.knew_halt_s },
        failed,
        dead,
    }
}

/// Turns the engines' run into the fleet's: wave, download and bad-release
/// figures and the time series count every endpoint (members through their
/// twins); rates in the series are scaled up by the fleet/engine ratio;
/// `nodes` stays one record per engine with the number of endpoints it stands
/// for. `start_after_s` is the rollout's start after publishing.
pub fn expand(
    summary: &mut Summary,
    series: &mut TimeSeries,
    nodes: &mut [NodeRecord],
    members: &Members,
    shape: &FleetShape,
    start_after_s: f64,
    bad: Option<BadMode>,
) {
    let outcomes: Vec<(usize, MemberOutcome)> = members
        .twin
        .iter()
        .zip(&members.hurt)
        .zip(&members.wave)
        .filter_map(|((&twin, &hurt), &wave)| {
            let record = nodes.get(twin as usize)?;
            debug_assert_eq!(record.wave, u32::from(wave));
            Some((usize::from(wave), outcome(record, hurt, bad)))
        })
        .collect();
    for &twin in &members.twin {
        if let Some(r) = nodes.get_mut(twin as usize) {
            r.stands_for += 1;
        }
    }
    summary.endpoints = shape.endpoints() as u64;
    summary.engines = Some(shape.engines() as u64);

    for (w, wave) in summary.waves.iter_mut().enumerate() {
        let mut times: Vec<f64> = nodes
            .iter()
            .filter(|r| r.wave as usize == w)
            .filter_map(|r| r.installed_s)
            .chain(
                outcomes
                    .iter()
                    .filter(|(mw, _)| *mw == w)
                    .filter_map(|(_, o)| o.installed_s),
            )
            .map(|t| t - start_after_s)
            .collect();
        wave.eligible += outcomes.iter().filter(|(mw, _)| *mw == w).count() as u64;
        wave.installed = times.len() as u64;
        wave.completion = Percentiles::from_samples(&mut times);
    }
    let mut done: Vec<f64> = nodes
        .iter()
        .filter_map(|r| r.downloaded_s)
        .chain(outcomes.iter().filter_map(|(_, o)| o.downloaded_s))
        .collect();
    summary.download = Percentiles::from_samples(&mut done);

    if let Some(b) = summary.bad_release.as_mut() {
        let member_installs = outcomes
            .iter()
            .filter(|(_, o)| o.installed_s.is_some())
            .count() as u64;
        b.installed_bad += member_installs;
        b.blast_radius = b.installed_bad as f64 / shape.endpoints().max(1) as f64;
        b.failed += outcomes.iter().filter(|(_, o)| o.failed).count() as u64;
        b.knowing_halt += outcomes
            .iter()
            .filter(|(_, o)| o.knew_halt_s.is_some())
            .count() as u64;
        // 99.9 % of the live fleet (the seeder included), counted again over everyone.
        let alive = 1
            + nodes.iter().filter(|r| !r.dead).count()
            + outcomes.iter().filter(|(_, o)| !o.dead).count();
        let mut knew: Vec<f64> = nodes
            .iter()
            .filter_map(|r| r.knew_halt_s)
            .chain(outcomes.iter().filter_map(|(_, o)| o.knew_halt_s))
            .collect();
        knew.sort_by(f64::total_cmp);
        // The seeder knows from the first halt on.
        let target = ((alive as f64) * 0.999).ceil() as usize;
        let at = target.checked_sub(2).and_then(|i| knew.get(i)).copied();
        b.failure_to_999_knowing_s = match (b.first_failure_s, at) {
            (Some(first), Some(at)) => Some((at - first).max(0.0)),
            _ => None,
        };
    }

    add_to_series(series, &outcomes, shape.ratio(), shape.seeder_factor);
}

/// Adds the members to each sample's counts (an event counts from the first
/// sample at or after it) and scales the rates by `ratio` (the seeder's by `seeder`).
fn add_to_series(
    series: &mut TimeSeries,
    outcomes: &[(usize, MemberOutcome)],
    ratio: f64,
    seeder: f64,
) {
    let n = series.samples.len();
    let waves = series.wave_names.len();
    let times: Vec<f64> = series.samples.iter().map(|s| s.t_s).collect();
    let slot = |v: Option<f64>| {
        v.map(|v| times.partition_point(|&t| t < v))
            .filter(|&i| i < n)
    };
    // Per sample, members whose event falls in it: installs per wave, then
    // downloads, halt knowledge, failures and healthy installs.
    let mut installs = vec![vec![0u64; waves]; n];
    let (mut downloads, mut knowing, mut failed, mut healthy) =
        (vec![0u64; n], vec![0u64; n], vec![0u64; n], vec![0u64; n]);
    for (wave, o) in outcomes {
        if let Some(i) = slot(o.installed_s) {
            if let Some(c) = installs[i].get_mut(*wave) {
                *c += 1;
            }
            if o.failed {
                failed[i] += 1;
            } else {
                healthy[i] += 1;
            }
        }
        if let Some(i) = slot(o.downloaded_s) {
            downloads[i] += 1;
        }
        if let Some(i) = slot(o.knew_halt_s) {
            knowing[i] += 1;
        }
    }
    let mut sums = (vec![0u64; waves], 0u64, 0u64, 0u64, 0u64);
    for (i, sample) in series.samples.iter_mut().enumerate() {
        for (w, c) in installs[i].iter().enumerate() {
            sums.0[w] += c;
            if let Some(s) = sample.installed.get_mut(w) {
                *s += sums.0[w];
            }
        }
        sums.1 += downloads[i];
        sums.2 += knowing[i];
        sums.3 += failed[i];
        sums.4 += healthy[i];
        sample.downloaded += sums.1;
        sample.knowing_halt += sums.2;
        sample.failed += sums.3;
        sample.healthy += sums.4;
        sample.bandwidth_bps *= ratio;
        sample.wan_bps *= ratio;
        sample.seeder_upload_bps *= seeder;
        sample.delivered_bytes *= ratio;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::PUBLISH_AT;

    fn scenario(engines: usize, report_percent: f64) -> Scenario {
        scenario_with(
            engines,
            report_percent,
            "upload_mbit = 20\ndownload_mbit = 100\n",
        )
    }

    fn scenario_with(engines: usize, report_percent: f64, access: &str) -> Scenario {
        let text = format!(
            "seed = 3\n\
             [rollout]\nstart_after_s = 10\nprefetch = true\nmax_failure_percent = 20\n\
             min_reports = 1\nsilence_s = 60\nheartbeat_s = 10\nreport_percent = {report_percent}\n\
             waves = [{{ name = \"canary\", cumulative_percent = 10, bake_s = 60 }},\n\
                      {{ name = \"all\", cumulative_percent = 100, bake_s = 60 }}]\n\
             [seeder]\nupload_mbit = 1000\n\
             [scale]\nengines = {engines}\n\
             [[sites]]\nname = \"a\"\nendpoints = 9000\n{access}\
             [[sites]]\nname = \"b\"\nendpoints = 1000\n{access}"
        );
        Scenario::from_toml(&text, "fleet-test").expect("a valid scenario")
    }

    #[test]
    fn the_engines_get_each_site_s_share_the_seeder_s_share_and_every_reporter() {
        let (engines, shape) = engine_scenario(&scenario(500, 1.0)).expect("a sampled fleet");
        assert_eq!(shape.sites, vec![(9000, 450), (1000, 50)]);
        assert_eq!(engines.endpoints(), 500);
        assert!(engines.scale.is_none());
        assert!((shape.ratio() - 20.0).abs() < 1e-12);
        assert_eq!(engines.seeder.upload_mbit, Some(50.0));
        assert!((shape.seeder_factor - 20.0).abs() < 1e-12);
        // 1 % of 10,000 = 100 reporters = 20 % of 500 engines.
        assert!((engines.rollout.report_percent - 20.0).abs() < 1e-9);
        assert!(engine_scenario(&scenario(10_000, 1.0)).is_none());
        // Unlimited endpoints: the seeder's own term is the fleet's bound, so
        // its cut share would make the engines slower than the fleet.
        let (unlimited, shape) = engine_scenario(&scenario_with(500, 1.0, "")).expect("sampled");
        assert!((shape.seeder_factor - 1.0).abs() < 1e-6);
        let up = unlimited.seeder.upload_mbit.expect("a seeder rate");
        assert!((up - 1000.0).abs() < 1e-6, "{up}");
        assert!(engine_scenario(&scenario(20_000, 1.0)).is_none());
    }

    #[test]
    fn engines_too_few_for_the_report_sample_are_refused_by_name() {
        let text = "[scale]\nengines = 50\n[[sites]]\nname = \"a\"\nendpoints = 1000\n";
        let err = Scenario::from_toml(text, "t").expect_err("every endpoint reports by default");
        assert!(err.to_string().contains("scale.engines"), "{err}");
    }

    fn info(shape: &FleetShape, policy: &RolloutPolicy, release: &ReleaseId) -> Vec<EngineInfo> {
        // Engines' waves from made-up IDs, as the mesh's keys would give them.
        let mut engines = Vec::new();
        let mut n = 0u32;
        for (site, &(_, count)) in shape.sites.iter().enumerate() {
            for _ in 0..count {
                n += 1;
                let id = NodeId(blake3::hash(&n.to_le_bytes()).into());
                engines.push(EngineInfo {
                    site,
                    wave: wave_of(policy, release, &id, WavePin::None),
                    ordinary: n % 7 != 0,
                });
            }
        }
        engines
    }

    #[test]
    fn members_stand_outside_the_report_sample_and_follow_an_ordinary_engine_of_their_site_and_wave(
    ) {
        let whole = scenario(500, 1.0);
        let (engines, shape) = engine_scenario(&whole).expect("a sampled fleet");
        let policy = engines.policy(PUBLISH_AT);
        let release = ReleaseId([7; 32]);
        let info = info(&shape, &policy, &release);
        let m = draw_members(3, &shape, &policy, &release, &info, 0.25).expect("members");
        assert_eq!(m.twin.len(), 9500);
        // 20 % of the IDs drawn fall in the engines' report sample and are drawn again.
        assert!((1800..3000).contains(&m.redrawn), "{}", m.redrawn);
        let mut site_of = Vec::new();
        for (site, &(all, count)) in shape.sites.iter().enumerate() {
            site_of.extend(std::iter::repeat_n(site, all - count));
        }
        for (k, &twin) in m.twin.iter().enumerate() {
            let e = info[twin as usize];
            assert_eq!(
                (e.site, e.wave),
                (site_of[k], usize::from(m.wave[k])),
                "member {k}"
            );
            let ordinary_there = info
                .iter()
                .any(|o| o.ordinary && (o.site, o.wave) == (e.site, e.wave));
            assert!(
                e.ordinary || !ordinary_there,
                "member {k} follows a faulty engine"
            );
        }
        let canary = m.wave.iter().filter(|&&w| w == 0).count();
        assert!(
            (800..1100).contains(&canary),
            "{canary} of 9,500 in the 10 % wave"
        );
        let hurt = m.hurt.iter().filter(|&&h| h).count();
        assert!((2200..2550).contains(&hurt), "{hurt} of 9,500 hurt at 25 %");
        let again = draw_members(3, &shape, &policy, &release, &info, 0.25).expect("members");
        assert_eq!(m, again, "the same seed draws the same members");
    }

    #[test]
    fn a_site_and_wave_without_an_engine_is_refused() {
        let (engines, shape) = engine_scenario(&scenario(500, 1.0)).expect("a sampled fleet");
        let policy = engines.policy(PUBLISH_AT);
        let release = ReleaseId([7; 32]);
        let only_last_wave: Vec<EngineInfo> = info(&shape, &policy, &release)
            .into_iter()
            .map(|e| EngineInfo { wave: 1, ..e })
            .collect();
        let err = draw_members(3, &shape, &policy, &release, &only_last_wave, 0.0)
            .expect_err("no canary engine");
        assert!(matches!(err, MembersError::NoTwin { wave: 0, .. }), "{err}");
    }

    #[test]
    fn members_count_in_the_waves_the_series_and_the_blast_radius() {
        let shape = FleetShape {
            sites: vec![(6, 2)],
            seeder_factor: 2.0,
        };
        let record = |wave, installed_s: Option<f64>| NodeRecord {
            wave,
            downloaded_s: Some(5.0),
            installed_s,
            knew_halt_s: Some(40.0),
            stands_for: 1,
            ..NodeRecord::default()
        };
        let mut nodes = vec![record(0, Some(30.0)), record(1, None)];
        let members = Members {
            twin: vec![0, 0, 1, 1],
            wave: vec![0, 0, 1, 1],
            hurt: vec![true, false, true, true],
            redrawn: 0,
        };
        let mut summary = Summary {
            waves: vec![Default::default(), Default::default()],
            bad_release: Some(crate::report::summary::BadReleaseSummary {
                installed_bad: 1,
                failed: 1,
                knowing_halt: 2,
                first_failure_s: Some(31.0),
                ..Default::default()
            }),
            ..Summary::default()
        };
        summary.waves[0].eligible = 1;
        summary.waves[1].eligible = 1;
        let mut series = TimeSeries::new(vec!["canary".into(), "all".into()]);
        for t in [10.0, 35.0, 45.0] {
            series.samples.push(crate::report::series::Sample {
                t_s: t,
                installed: vec![0, 0],
                bandwidth_bps: 1.0,
                ..Default::default()
            });
        }
        expand(
            &mut summary,
            &mut series,
            &mut nodes,
            &members,
            &shape,
            20.0,
            Some(BadMode::Probe),
        );
        assert_eq!((summary.endpoints, summary.engines), (6, Some(2)));
        assert_eq!(
            (summary.waves[0].eligible, summary.waves[0].installed),
            (3, 3)
        );
        assert_eq!(summary.waves[0].completion.p50, Some(10.0));
        assert_eq!(
            (summary.waves[1].eligible, summary.waves[1].installed),
            (3, 0)
        );
        assert_eq!(summary.download.count, 6);
        let bad = summary.bad_release.expect("bad");
        // Two members followed the installed canary; one of them is hurt.
        assert_eq!((bad.installed_bad, bad.failed, bad.knowing_halt), (3, 2, 6));
        assert!((bad.blast_radius - 0.5).abs() < 1e-12);
        assert_eq!(bad.failure_to_999_knowing_s, Some(9.0));
        assert_eq!(nodes[0].stands_for, 3);
        assert_eq!(nodes[1].stands_for, 3);
        let s: Vec<(Vec<u64>, u64, u64, u64)> = series
            .samples
            .iter()
            .map(|s| (s.installed.clone(), s.downloaded, s.failed, s.knowing_halt))
            .collect();
        // Members only (the engines' own counts were zero in these samples).
        assert_eq!(
            s,
            vec![
                (vec![0, 0], 4, 0, 0),
                (vec![2, 0], 4, 1, 0),
                (vec![2, 0], 4, 1, 4)
            ]
        );
        assert!((series.samples[0].bandwidth_bps - 3.0).abs() < 1e-12);
        assert!((series.samples[0].seeder_upload_bps - 0.0).abs() < 1e-12);
    }
}
