//! Scenario files: the TOML a researcher writes to describe one experiment —
//! the fleet's sites and links, the release and its rollout policy, the gossip
//! mesh, and the faults to inject — and its checks and conversion into the
//! simulator's own types. Unknown keys are refused so a typo never silently
//! falls back to a default. `docs/simulator.md` documents every key.

use crate::network::gossip::GossipConfig;
use crate::network::topology::{Site, Topology};
use serde::Deserialize;
use thiserror::Error;
use waveguard_protocol::release::ChunkerParams;
use waveguard_protocol::release::{HealthPolicy, RolloutPolicy, WaveSpec};
use waveguard_protocol::Timestamp;

/// Megabits per second to bytes per second.
const MBIT: f64 = 125_000.0;

/// A scenario could not be read or makes no sense.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ScenarioError {
    /// The TOML did not parse or did not match the schema (the message names the key).
    #[error("scenario {path}: {message}")]
    Parse {
        /// The file (or `<inline>`).
        path: String,
        /// The parser's message, naming line and key.
        message: String,
    },
    /// A value is out of range.
    #[error("scenario {path}: {field}: {message}")]
    Invalid {
        /// The file (or `<inline>`).
        path: String,
        /// The key at fault.
        field: String,
        /// What is wrong with it.
        message: String,
    },
}

/// One experiment.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Its name, copied into the summary.
    #[serde(default = "default_name")]
    pub name: String,
    /// Seed for keys, content, topology, faults and every engine.
    #[serde(default = "one")]
    pub seed: u64,
    /// Simulated seconds to run at most.
    #[serde(default = "default_duration")]
    pub duration_s: u64,
    /// Seconds of simulated time between two rows of the time series.
    #[serde(default = "default_sample")]
    pub sample_s: u64,
    /// Stop early once every reachable endpoint has installed the release or knows it halted.
    #[serde(default = "yes")]
    pub stop_when_settled: bool,
    /// Stop as soon as every endpoint holds the whole release (distribution studies).
    #[serde(default)]
    pub stop_when_downloaded: bool,
    /// The release.
    #[serde(default)]
    pub release: ReleaseSpec,
    /// Its rollout policy.
    #[serde(default)]
    pub rollout: RolloutSpec,
    /// The seeder (the vendor's node).
    #[serde(default)]
    pub seeder: SeederSpec,
    /// How nodes connect.
    #[serde(default)]
    pub topology: TopologySpec,
    /// The sites; at least one.
    pub sites: Vec<SiteSpec>,
    /// The gossipsub mesh model.
    #[serde(default)]
    pub gossip: GossipSpec,
    /// A bad release, if this one is.
    #[serde(default)]
    pub bad_release: Option<BadReleaseSpec>,
    /// Hostile peers, partitions, bundles.
    #[serde(default)]
    pub faults: FaultSpec,
    /// Nodes leaving and coming back.
    #[serde(default)]
    pub churn: Option<ChurnSpec>,
    /// Run only some endpoints as engines (a sampled fleet, `crate::fleet`).
    #[serde(default)]
    pub scale: Option<ScaleSpec>,
}

/// `[scale]`: how many endpoints run as full protocol engines; the others
/// follow a twin engine of their site and wave (docs/simulator.md, "Sampled
/// fleets").
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScaleSpec {
    /// Endpoints run as engines (at least one per site).
    pub engines: usize,
}

/// The release being rolled out.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseSpec {
    /// Size in MiB (fractions allowed).
    pub size_mib: f64,
    /// Average chunk size in KiB (the chunker cuts between a quarter and four times this).
    pub chunk_kib: u32,
    /// Move `1/byte_scale` of every bulk byte over links `1/byte_scale` as fast: transfer
    /// times are unchanged (a flow's duration is bytes over rate) while the engines hash and
    /// copy far less. Reports give nominal (unscaled) bytes and rates.
    #[serde(default = "one_u32")]
    pub byte_scale: u32,
}

impl Default for ReleaseSpec {
    fn default() -> Self {
        ReleaseSpec {
            size_mib: 4.0,
            chunk_kib: 256,
            byte_scale: 1,
        }
    }
}

/// The signed rollout policy.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutSpec {
    /// Seconds from publishing until the first wave opens.
    pub start_after_s: u64,
    /// Endpoints fetch as soon as the release is trusted, before their wave opens.
    pub prefetch: bool,
    /// The waves in order.
    pub waves: Vec<WaveSpecToml>,
    /// A wave fails when more than this percentage of its reporting nodes failed or went silent.
    pub max_failure_percent: f64,
    /// Reports needed before a wave can pass.
    pub min_reports: u32,
    /// Seconds without a report after which an installed node counts as failed.
    pub silence_s: u64,
    /// Seconds between an installed node's heartbeats.
    pub heartbeat_s: u64,
    /// The percentage of each wave that reports health (the signed
    /// `report_ppm`; default 100, every node).
    #[serde(default = "every_node_percent")]
    pub report_percent: f64,
}

fn every_node_percent() -> f64 {
    100.0
}

impl Default for RolloutSpec {
    fn default() -> Self {
        let wave = |name: &str, cumulative_percent, bake_s| WaveSpecToml {
            name: name.into(),
            cumulative_percent,
            bake_s,
        };
        RolloutSpec {
            start_after_s: 60,
            prefetch: true,
            waves: vec![
                wave("canary", 2.0, 300),
                wave("early", 20.0, 600),
                wave("broad", 60.0, 600),
                wave("all", 100.0, 300),
            ],
            max_failure_percent: 20.0,
            min_reports: 1,
            silence_s: 120,
            heartbeat_s: 30,
            report_percent: 100.0,
        }
    }
}

/// One wave.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaveSpecToml {
    /// Its name.
    pub name: String,
    /// Share of the fleet in this wave and every earlier one, percent.
    pub cumulative_percent: f64,
    /// Seconds it bakes before the next may open.
    pub bake_s: u64,
}

/// The vendor's seeding node. Absent capacities are unlimited, as for sites.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeederSpec {
    /// The site it sits in (by name; default: the first).
    pub site: Option<String>,
    /// Upload capacity, Mbit/s (absent: unlimited).
    pub upload_mbit: Option<f64>,
    /// Download capacity, Mbit/s (absent: unlimited).
    pub download_mbit: Option<f64>,
    /// Connections it opens.
    pub degree: Option<usize>,
    /// Every endpoint dials it (as agents configured with the vendor's
    /// bootstrap address do), besides the connections it opens.
    #[serde(default)]
    pub dialled_by_all: bool,
}

/// The connection graph.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopologySpec {
    /// Connections each node opens.
    pub degree: usize,
    /// Share of them inside the node's own site.
    pub local_fraction: f64,
    /// Site-aware fetching: when set, every engine is told which nodes share
    /// its site and elects this many WAN fetchers per site (0: LAN first but
    /// no election); unset, engines know nothing of sites.
    #[serde(default)]
    pub wan_fetchers: Option<u32>,
}

impl Default for TopologySpec {
    fn default() -> Self {
        TopologySpec {
            degree: 8,
            local_fraction: 0.8,
            wan_fetchers: None,
        }
    }
}

/// One site.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteSpec {
    /// Its name.
    pub name: String,
    /// Endpoints in it.
    pub endpoints: usize,
    /// Each endpoint's upload, Mbit/s (absent: unlimited).
    pub upload_mbit: Option<f64>,
    /// Each endpoint's download, Mbit/s (absent: unlimited).
    pub download_mbit: Option<f64>,
    /// One-way latency inside the site, ms.
    #[serde(default = "default_lan_latency")]
    pub lan_latency_ms: u64,
    /// One-way latency from the site to the core, ms.
    #[serde(default = "default_wan_latency")]
    pub wan_latency_ms: u64,
    /// The site's WAN uplink, Mbit/s (absent: unlimited).
    pub wan_upload_mbit: Option<f64>,
    /// The site's WAN downlink, Mbit/s (absent: unlimited).
    pub wan_download_mbit: Option<f64>,
    /// Loss probability inside the site.
    #[serde(default)]
    pub lan_loss: f64,
    /// Loss probability on the site's WAN link.
    #[serde(default)]
    pub wan_loss: f64,
}

/// The gossipsub parameters the mesh model uses.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GossipSpec {
    /// Target mesh degree D.
    pub mesh_degree: usize,
    /// D_lo.
    pub mesh_low: usize,
    /// D_hi.
    pub mesh_high: usize,
    /// Peers receiving IHAVE gossip per heartbeat (D_lazy).
    pub lazy_degree: usize,
    /// Heartbeat interval, ms.
    pub heartbeat_ms: u64,
}

impl Default for GossipSpec {
    fn default() -> Self {
        let d = GossipConfig::default();
        GossipSpec {
            mesh_degree: d.mesh_degree,
            mesh_low: d.mesh_low,
            mesh_high: d.mesh_high,
            lazy_degree: d.lazy_degree,
            heartbeat_ms: d.heartbeat_ms,
        }
    }
}

/// How a bad release hurts.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum BadMode {
    /// The health probe fails (the node reports it and rolls back).
    Probe,
    /// The machine dies right after installing and says nothing more.
    Crash,
}

/// A bad release.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BadReleaseSpec {
    /// Share of installers it hurts (0..=1), chosen by hashing the node's index with the seed.
    pub fraction: f64,
    /// How.
    pub mode: BadMode,
}

/// How lying peers lie about health.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum HealthLie {
    /// Report healthy whatever the probe says, and broadcast reports in other nodes' names.
    Forge,
    /// Send no health reports and relay none.
    Withhold,
}

/// How availability liars lie about the chunks they hold.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum HaveLie {
    /// Claim every chunk and answer `NotFound` for the ones not held.
    #[default]
    NotFound,
    /// Claim every chunk and never answer a request for one not held: the asker times out.
    Stall,
}

/// Injected faults.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    /// Share of endpoints that serve corrupted chunks.
    #[serde(default)]
    pub corrupt_peers: f64,
    /// Share of endpoints that lie about health.
    #[serde(default)]
    pub lying_peers: f64,
    /// How they lie.
    #[serde(default)]
    pub lie: Option<HealthLie>,
    /// Share of endpoints that claim every chunk of every release (drawn from the endpoints
    /// that do not serve corrupted chunks).
    #[serde(default)]
    pub have_liars: f64,
    /// How they answer requests for chunks they do not hold.
    #[serde(default)]
    pub have_lie: HaveLie,
    /// Sites cut off from every other site for a while.
    #[serde(default)]
    pub partitions: Vec<PartitionSpec>,
    /// Releases carried into a site on removable media.
    #[serde(default)]
    pub bundles: Vec<BundleSpec>,
}

/// A site cut off.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartitionSpec {
    /// The site.
    pub site: String,
    /// When the cut starts, seconds after publishing.
    #[serde(default)]
    pub from_s: u64,
    /// When it heals (absent: never).
    pub until_s: Option<u64>,
}

/// A bundle import.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleSpec {
    /// The site whose first endpoint imports it.
    pub site: String,
    /// When, seconds after publishing.
    pub at_s: u64,
}

/// Churn: endpoints that go away and come back (restarting from their store).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChurnSpec {
    /// Share of endpoints that leave once.
    pub fraction: f64,
    /// Leaves happen uniformly in `[from_s, until_s)` after publishing.
    pub from_s: u64,
    /// End of that window.
    pub until_s: u64,
    /// How long a node stays away, seconds.
    pub offline_s: u64,
}

fn default_name() -> String {
    "scenario".into()
}
fn one() -> u64 {
    1
}
fn one_u32() -> u32 {
    1
}
fn yes() -> bool {
    true
}
fn default_duration() -> u64 {
    6 * 3600
}
fn default_sample() -> u64 {
    10
}
fn default_lan_latency() -> u64 {
    1
}
fn default_wan_latency() -> u64 {
    25
}

fn rate(mbit: Option<f64>) -> f64 {
    mbit.map_or(f64::INFINITY, |m| m * MBIT)
}

impl Scenario {
    /// Parses and checks a scenario; `path` only names it in errors.
    pub fn from_toml(text: &str, path: &str) -> Result<Scenario, ScenarioError> {
        let scenario: Scenario = toml::from_str(text).map_err(|e| ScenarioError::Parse {
            path: path.into(),
            message: e.to_string(),
        })?;
        scenario.check(path)?;
        Ok(scenario)
    }

    /// Parses an already-loaded TOML table (as a sweep point) and checks it.
    pub fn from_table(table: toml::Table, path: &str) -> Result<Scenario, ScenarioError> {
        let scenario: Scenario =
            toml::Value::Table(table)
                .try_into()
                .map_err(|e: toml::de::Error| ScenarioError::Parse {
                    path: path.into(),
                    message: e.to_string(),
                })?;
        scenario.check(path)?;
        Ok(scenario)
    }

    fn check(&self, path: &str) -> Result<(), ScenarioError> {
        let bad = |field: &str, message: String| ScenarioError::Invalid {
            path: path.into(),
            field: field.into(),
            message,
        };
        if self.sites.is_empty() {
            return Err(bad("sites", "at least one site is needed".into()));
        }
        if self.endpoints() == 0 {
            return Err(bad("sites", "the sites hold no endpoints".into()));
        }
        for (i, s) in self.sites.iter().enumerate() {
            for (name, v) in [
                ("upload_mbit", s.upload_mbit),
                ("download_mbit", s.download_mbit),
                ("wan_upload_mbit", s.wan_upload_mbit),
                ("wan_download_mbit", s.wan_download_mbit),
            ] {
                if let Some(v) = v {
                    if !(v > 0.0 && v.is_finite()) {
                        return Err(bad(
                            &format!("sites.{i}.{name}"),
                            format!("{v} must be a positive number"),
                        ));
                    }
                }
            }
            for (name, v) in [("lan_loss", s.lan_loss), ("wan_loss", s.wan_loss)] {
                if !(0.0..1.0).contains(&v) {
                    return Err(bad(
                        &format!("sites.{i}.{name}"),
                        format!("{v} must be in [0, 1)"),
                    ));
                }
            }
        }
        if let Some(site) = &self.seeder.site {
            if self.site_index(site).is_none() {
                return Err(bad("seeder.site", format!("no site is named {site:?}")));
            }
        }
        for (name, v) in [
            ("seeder.upload_mbit", self.seeder.upload_mbit),
            ("seeder.download_mbit", self.seeder.download_mbit),
        ] {
            if let Some(v) = v {
                if !(v > 0.0 && v.is_finite()) {
                    return Err(bad(name, format!("{v} must be a positive number")));
                }
            }
        }
        if self.seeder.degree == Some(0) {
            return Err(bad(
                "seeder.degree",
                "the seeder needs at least one connection".into(),
            ));
        }
        if !(self.release.size_mib > 0.0 && self.release.size_mib <= 4096.0) {
            return Err(bad(
                "release.size_mib",
                format!("{} must be in (0, 4096]", self.release.size_mib),
            ));
        }
        if self.release.byte_scale == 0 {
            return Err(bad("release.byte_scale", "must be at least 1".into()));
        }
        self.chunker().validate().map_err(|e| {
            bad(
                "release.chunk_kib",
                format!(
                    "{e} (chunk_kib {} KiB / byte_scale {})",
                    self.release.chunk_kib, self.release.byte_scale
                ),
            )
        })?;
        self.policy(Timestamp::from_secs(0))
            .validate()
            .map_err(|e| bad("rollout", e.to_string()))?;
        for (name, v) in [
            ("faults.corrupt_peers", self.faults.corrupt_peers),
            ("faults.lying_peers", self.faults.lying_peers),
            ("faults.have_liars", self.faults.have_liars),
            (
                "faults.corrupt_peers + faults.have_liars",
                self.faults.corrupt_peers + self.faults.have_liars,
            ),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(bad(name, format!("{v} must be in [0, 1]")));
            }
        }
        if self.faults.lying_peers > 0.0 && self.faults.lie.is_none() {
            return Err(bad(
                "faults.lie",
                "lying_peers needs lie = \"forge\" or \"withhold\"".into(),
            ));
        }
        if let Some(b) = &self.bad_release {
            if !(0.0..=1.0).contains(&b.fraction) {
                return Err(bad(
                    "bad_release.fraction",
                    format!("{} must be in [0, 1]", b.fraction),
                ));
            }
        }
        for (i, p) in self.faults.partitions.iter().enumerate() {
            if self.site_index(&p.site).is_none() {
                return Err(bad(
                    &format!("faults.partitions.{i}.site"),
                    format!("no site is named {:?}", p.site),
                ));
            }
            if p.until_s.is_some_and(|u| u <= p.from_s) {
                return Err(bad(
                    &format!("faults.partitions.{i}.until_s"),
                    "must be after from_s".into(),
                ));
            }
        }
        for (i, b) in self.faults.bundles.iter().enumerate() {
            match self.site_index(&b.site) {
                None => {
                    return Err(bad(
                        &format!("faults.bundles.{i}.site"),
                        format!("no site is named {:?}", b.site),
                    ))
                }
                Some(s) if self.sites[s].endpoints == 0 => {
                    return Err(bad(
                        &format!("faults.bundles.{i}.site"),
                        "the site has no endpoint to import it".into(),
                    ))
                }
                Some(_) => {}
            }
        }
        if let Some(c) = &self.churn {
            if !(0.0..=1.0).contains(&c.fraction) || c.until_s <= c.from_s {
                return Err(bad(
                    "churn",
                    "fraction must be in [0, 1] and until_s after from_s".into(),
                ));
            }
        }
        let g = &self.gossip;
        if !(g.mesh_low <= g.mesh_degree && g.mesh_degree <= g.mesh_high && g.heartbeat_ms > 0) {
            return Err(bad(
                "gossip",
                "need mesh_low <= mesh_degree <= mesh_high and heartbeat_ms > 0".into(),
            ));
        }
        if let Some(scale) = &self.scale {
            let fleet = self.endpoints();
            if scale.engines == 0 {
                return Err(bad("scale.engines", "must be at least 1".into()));
            }
            let reporters = self.rollout.report_percent / 100.0 * fleet as f64;
            if scale.engines < fleet && reporters >= scale.engines as f64 {
                return Err(bad(
                    "scale.engines",
                    format!(
                        "{} engines cannot hold the report sample of {fleet} endpoints at \
                         report_percent {} (about {reporters:.0} reporters, and every reporter \
                         must be an engine); lower report_percent or raise engines",
                        scale.engines, self.rollout.report_percent
                    ),
                ));
            }
        }
        if self.sample_s == 0 || self.duration_s == 0 {
            return Err(bad(
                "sample_s",
                "sample_s and duration_s must be positive".into(),
            ));
        }
        Ok(())
    }

    /// Endpoints across all sites.
    pub fn endpoints(&self) -> usize {
        self.sites.iter().map(|s| s.endpoints).sum()
    }

    /// The site named `name`.
    pub fn site_index(&self, name: &str) -> Option<usize> {
        self.sites.iter().position(|s| s.name == name)
    }

    /// The release's nominal size in bytes.
    pub fn nominal_release_bytes(&self) -> u64 {
        (self.release.size_mib * 1024.0 * 1024.0).round() as u64
    }

    /// The bytes the simulator actually moves for the release (nominal / byte_scale).
    pub fn release_bytes(&self) -> usize {
        (self.nominal_release_bytes() / u64::from(self.release.byte_scale.max(1))) as usize
    }

    /// The byte scale (at least 1).
    pub fn byte_scale(&self) -> f64 {
        f64::from(self.release.byte_scale.max(1))
    }

    /// The chunker the vendor cuts the release with.
    pub fn chunker(&self) -> ChunkerParams {
        let avg = self.release.chunk_kib.saturating_mul(1024) / self.release.byte_scale.max(1);
        ChunkerParams {
            min_size: avg / 4,
            avg_size: avg,
            max_size: avg.saturating_mul(4),
            ..ChunkerParams::default()
        }
    }

    /// The rollout policy for a release published at `publish`.
    pub fn policy(&self, publish: Timestamp) -> RolloutPolicy {
        let r = &self.rollout;
        RolloutPolicy {
            start: publish.plus_secs(r.start_after_s),
            waves: r
                .waves
                .iter()
                .map(|w| WaveSpec {
                    name: w.name.clone(),
                    cumulative_ppm: (w.cumulative_percent * 10_000.0).round() as u32,
                    bake_seconds: w.bake_s,
                })
                .collect(),
            health: HealthPolicy {
                max_failure_ppm: (r.max_failure_percent * 10_000.0).round() as u32,
                min_reports: r.min_reports,
                silence_seconds: r.silence_s,
                heartbeat_seconds: r.heartbeat_s,
                report_ppm: (r.report_percent * 10_000.0).round() as u32,
            },
        }
    }

    /// The network layout, capacities divided by the byte scale.
    pub fn topology(&self) -> Topology {
        let k = self.byte_scale();
        let scaled = |mbit: Option<f64>| rate(mbit) / k;
        let sites = self
            .sites
            .iter()
            .map(|s| Site {
                name: s.name.clone(),
                endpoints: s.endpoints,
                upload: scaled(s.upload_mbit),
                download: scaled(s.download_mbit),
                lan_latency_ms: s.lan_latency_ms,
                wan_latency_ms: s.wan_latency_ms,
                wan_upload: scaled(s.wan_upload_mbit),
                wan_download: scaled(s.wan_download_mbit),
                lan_loss: s.lan_loss,
                wan_loss: s.wan_loss,
            })
            .collect();
        let seeder_site = self
            .seeder
            .site
            .as_deref()
            .and_then(|s| self.site_index(s))
            .unwrap_or(0);
        let mut t = Topology::new(
            sites,
            seeder_site,
            scaled(self.seeder.upload_mbit),
            scaled(self.seeder.download_mbit),
            self.topology.degree,
            self.topology.local_fraction,
        );
        if let Some(d) = self.seeder.degree {
            t.seeder_degree = d;
        }
        t.seeder_dialled_by_all = self.seeder.dialled_by_all;
        t
    }

    /// The P2P lower bound of the scenario's whole fleet, in nominal bytes
    /// and rates (the same as the one over its topology, without building it).
    pub fn lower_bound(&self) -> crate::bound::LowerBound {
        let mut bound = crate::bound::LowerBound::new(
            self.nominal_release_bytes(),
            rate(self.seeder.upload_mbit),
        );
        for site in &self.sites {
            let (up, down) = (rate(site.upload_mbit), rate(site.download_mbit));
            for _ in 0..site.endpoints {
                bound.add_peer(up, down);
            }
        }
        bound
    }

    /// The gossip mesh parameters.
    pub fn gossip_config(&self) -> GossipConfig {
        let g = &self.gossip;
        GossipConfig {
            mesh_degree: g.mesh_degree,
            mesh_low: g.mesh_low,
            mesh_high: g.mesh_high,
            lazy_degree: g.lazy_degree,
            heartbeat_ms: g.heartbeat_ms,
            ..GossipConfig::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: &str = r#"
name = "t"
[[sites]]
name = "hq"
endpoints = 10
upload_mbit = 8
"#;

    #[test]
    fn defaults_fill_in() {
        let s = Scenario::from_toml(SMALL, "t.toml").expect("parses");
        assert_eq!(s.endpoints(), 10);
        assert_eq!(s.rollout.waves.len(), 4);
        let t = s.topology();
        assert_eq!(t.upload(1), 1_000_000.0);
        assert_eq!(t.download(1), f64::INFINITY);
        assert_eq!(s.release_bytes(), 4 << 20);
    }

    #[test]
    fn a_typo_is_refused_by_name() {
        let err = Scenario::from_toml(&format!("{SMALL}uplod_mbit = 3\n"), "t.toml")
            .expect_err("unknown key");
        assert!(err.to_string().contains("uplod_mbit"), "{err}");
    }

    #[test]
    fn bad_values_name_their_field() {
        let text = SMALL.replace("upload_mbit = 8", "upload_mbit = -1");
        let err = Scenario::from_toml(&text, "t.toml").expect_err("negative");
        assert!(err.to_string().contains("sites.0.upload_mbit"), "{err}");
        let text = format!("{SMALL}[faults]\nlying_peers = 0.1\n");
        let err = Scenario::from_toml(&text, "t.toml").expect_err("no lie");
        assert!(err.to_string().contains("faults.lie"), "{err}");
        let text = format!("{SMALL}[[faults.bundles]]\nsite = \"plant\"\nat_s = 5\n");
        let err = Scenario::from_toml(&text, "t.toml").expect_err("no site");
        assert!(err.to_string().contains("faults.bundles.0.site"), "{err}");
    }
}
