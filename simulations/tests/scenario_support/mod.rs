//! Small builders for the scenario tests: a [`ScenarioBuilder`] that writes
//! scenario TOML (so every test also exercises the parser and its checks), and
//! a few helpers to run it and read the results.
#![allow(dead_code)]

use std::fmt::Write as _;
use waveguard_sim::report::{Sample, Summary};
use waveguard_sim::run::{run, RunOutput};
use waveguard_sim::scenario::Scenario;

/// Bytes per second in one Mbit/s.
pub const MBIT: f64 = 125_000.0;

/// One `[[sites]]` table.
#[derive(Clone, Debug)]
pub struct SiteBuilder {
    pub name: String,
    pub endpoints: usize,
    pub upload_mbit: Option<f64>,
    pub download_mbit: Option<f64>,
    pub lan_latency_ms: u64,
    pub wan_latency_ms: u64,
    pub wan_upload_mbit: Option<f64>,
    pub wan_download_mbit: Option<f64>,
    pub lan_loss: f64,
    pub wan_loss: f64,
}

impl SiteBuilder {
    /// A site of `endpoints` with unlimited links, 1 ms LAN and 25 ms WAN latency.
    pub fn new(name: &str, endpoints: usize) -> SiteBuilder {
        SiteBuilder {
            name: name.into(),
            endpoints,
            upload_mbit: None,
            download_mbit: None,
            lan_latency_ms: 1,
            wan_latency_ms: 25,
            wan_upload_mbit: None,
            wan_download_mbit: None,
            lan_loss: 0.0,
            wan_loss: 0.0,
        }
    }

    /// Each endpoint's upload and download, Mbit/s (`None`: unlimited).
    pub fn access(mut self, upload_mbit: Option<f64>, download_mbit: Option<f64>) -> Self {
        self.upload_mbit = upload_mbit;
        self.download_mbit = download_mbit;
        self
    }

    /// LAN and WAN one-way latencies, ms.
    pub fn latency(mut self, lan_ms: u64, wan_ms: u64) -> Self {
        self.lan_latency_ms = lan_ms;
        self.wan_latency_ms = wan_ms;
        self
    }

    /// Loss probabilities inside the site and on its WAN link.
    pub fn loss(mut self, lan: f64, wan: f64) -> Self {
        self.lan_loss = lan;
        self.wan_loss = wan;
        self
    }

    /// The site's WAN uplink and downlink, Mbit/s.
    pub fn wan(mut self, upload_mbit: Option<f64>, download_mbit: Option<f64>) -> Self {
        self.wan_upload_mbit = upload_mbit;
        self.wan_download_mbit = download_mbit;
        self
    }
}

/// One wave: (name, cumulative percent, bake seconds).
pub type Wave = (&'static str, f64, u64);

/// Writes a scenario file key by key; every field maps to one TOML key.
#[derive(Clone, Debug)]
pub struct ScenarioBuilder {
    pub name: String,
    pub seed: u64,
    pub duration_s: u64,
    pub sample_s: u64,
    pub stop_when_settled: bool,
    pub size_mib: f64,
    pub chunk_kib: u32,
    pub byte_scale: u32,
    pub seeder_upload_mbit: Option<f64>,
    pub seeder_degree: Option<usize>,
    /// `[seeder] dialled_by_all`.
    pub seeder_dialled_by_all: bool,
    pub seeder_site: Option<String>,
    pub degree: usize,
    pub local_fraction: f64,
    /// `[topology] wan_fetchers` (`None`: engines know nothing of sites).
    pub wan_fetchers: Option<u32>,
    pub sites: Vec<SiteBuilder>,
    pub start_after_s: u64,
    pub prefetch: bool,
    pub waves: Vec<Wave>,
    pub max_failure_percent: f64,
    pub min_reports: u32,
    pub silence_s: u64,
    pub heartbeat_s: u64,
    /// The share of each wave that reports health, in percent.
    pub report_percent: f64,
    /// `(fraction, "probe" | "crash")`.
    pub bad_release: Option<(f64, &'static str)>,
    pub corrupt_peers: f64,
    /// `(fraction, "forge" | "withhold")`.
    pub lying_peers: Option<(f64, &'static str)>,
    /// `(fraction, "not-found" | "stall")`: availability liars.
    pub have_liars: Option<(f64, &'static str)>,
    /// `(site, from_s, until_s)`.
    pub partitions: Vec<(String, u64, Option<u64>)>,
    /// `(site, at_s)`.
    pub bundles: Vec<(String, u64)>,
    /// Raw TOML appended at the end, for keys the builder does not know (it
    /// lands in the last table written unless it opens a table of its own).
    pub extra: String,
    /// `[scale] engines`: a sampled fleet when below the endpoints.
    pub engines: Option<usize>,
}

impl ScenarioBuilder {
    /// One site of `endpoints` unlimited endpoints (1 ms LAN), a 100 Mbit/s
    /// seeder, topology degree 4, a 1 MiB release in 64 KiB chunks and one
    /// wave of everyone opening 10 s after publishing and baking a minute.
    pub fn new(name: &str, endpoints: usize) -> ScenarioBuilder {
        ScenarioBuilder {
            name: name.into(),
            seed: 1,
            duration_s: 3600,
            sample_s: 5,
            stop_when_settled: true,
            size_mib: 1.0,
            chunk_kib: 64,
            byte_scale: 1,
            seeder_upload_mbit: Some(100.0),
            seeder_degree: None,
            seeder_dialled_by_all: false,
            seeder_site: None,
            degree: 4,
            local_fraction: 1.0,
            wan_fetchers: None,
            sites: vec![SiteBuilder::new("lan", endpoints)],
            start_after_s: 10,
            prefetch: true,
            waves: vec![("all", 100.0, 60)],
            max_failure_percent: 20.0,
            min_reports: 1,
            silence_s: 60,
            heartbeat_s: 10,
            report_percent: 100.0,
            bad_release: None,
            corrupt_peers: 0.0,
            lying_peers: None,
            have_liars: None,
            partitions: Vec::new(),
            bundles: Vec::new(),
            extra: String::new(),
            engines: None,
        }
    }

    /// Runs only `engines` endpoints as engines (a sampled fleet).
    pub fn engines(mut self, engines: usize) -> Self {
        self.engines = Some(engines);
        self
    }

    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    pub fn release(mut self, size_mib: f64, chunk_kib: u32) -> Self {
        self.size_mib = size_mib;
        self.chunk_kib = chunk_kib;
        self
    }

    pub fn seeder(mut self, upload_mbit: Option<f64>, degree: Option<usize>) -> Self {
        self.seeder_upload_mbit = upload_mbit;
        self.seeder_degree = degree;
        self
    }

    pub fn topology(mut self, degree: usize, local_fraction: f64) -> Self {
        self.degree = degree;
        self.local_fraction = local_fraction;
        self
    }

    /// Site-aware fetching with `k` WAN fetchers per site, or off.
    pub fn wan_fetchers(mut self, k: Option<u32>) -> Self {
        self.wan_fetchers = k;
        self
    }

    pub fn sites(mut self, sites: Vec<SiteBuilder>) -> Self {
        self.sites = sites;
        self
    }

    pub fn waves(mut self, start_after_s: u64, waves: &[Wave]) -> Self {
        self.start_after_s = start_after_s;
        self.waves = waves.to_vec();
        self
    }

    pub fn health(mut self, max_failure_percent: f64, silence_s: u64, heartbeat_s: u64) -> Self {
        self.max_failure_percent = max_failure_percent;
        self.silence_s = silence_s;
        self.heartbeat_s = heartbeat_s;
        self
    }

    pub fn report_percent(mut self, percent: f64) -> Self {
        self.report_percent = percent;
        self
    }

    pub fn bad(mut self, fraction: f64, mode: &'static str) -> Self {
        self.bad_release = Some((fraction, mode));
        self
    }

    pub fn corrupt(mut self, fraction: f64) -> Self {
        self.corrupt_peers = fraction;
        self
    }

    pub fn lying(mut self, fraction: f64, lie: &'static str) -> Self {
        self.lying_peers = Some((fraction, lie));
        self
    }

    /// A `fraction` of the endpoints (none of them corrupt) claim every chunk
    /// and answer for the ones they lack as `lie` says.
    pub fn have_liars(mut self, fraction: f64, lie: &'static str) -> Self {
        self.have_liars = Some((fraction, lie));
        self
    }

    pub fn duration(mut self, duration_s: u64) -> Self {
        self.duration_s = duration_s;
        self
    }

    pub fn partition(mut self, site: &str, from_s: u64, until_s: Option<u64>) -> Self {
        self.partitions.push((site.into(), from_s, until_s));
        self
    }

    pub fn bundle(mut self, site: &str, at_s: u64) -> Self {
        self.bundles.push((site.into(), at_s));
        self
    }

    /// The scenario file.
    pub fn toml(&self) -> String {
        let mut t = String::new();
        let opt = |t: &mut String, key: &str, v: Option<f64>| {
            if let Some(v) = v {
                writeln!(t, "{key} = {v:?}").unwrap();
            }
        };
        writeln!(t, "name = {:?}", self.name).unwrap();
        writeln!(t, "seed = {}", self.seed).unwrap();
        writeln!(t, "duration_s = {}", self.duration_s).unwrap();
        writeln!(t, "sample_s = {}", self.sample_s).unwrap();
        writeln!(t, "stop_when_settled = {}", self.stop_when_settled).unwrap();
        writeln!(t, "\n[release]").unwrap();
        writeln!(t, "size_mib = {:?}", self.size_mib).unwrap();
        writeln!(t, "chunk_kib = {}", self.chunk_kib).unwrap();
        writeln!(t, "byte_scale = {}", self.byte_scale).unwrap();
        writeln!(t, "\n[seeder]").unwrap();
        opt(&mut t, "upload_mbit", self.seeder_upload_mbit);
        if let Some(d) = self.seeder_degree {
            writeln!(t, "degree = {d}").unwrap();
        }
        if let Some(s) = &self.seeder_site {
            writeln!(t, "site = {s:?}").unwrap();
        }
        if self.seeder_dialled_by_all {
            writeln!(t, "dialled_by_all = true").unwrap();
        }
        writeln!(t, "\n[topology]").unwrap();
        writeln!(t, "degree = {}", self.degree).unwrap();
        writeln!(t, "local_fraction = {:?}", self.local_fraction).unwrap();
        if let Some(k) = self.wan_fetchers {
            writeln!(t, "wan_fetchers = {k}").unwrap();
        }
        writeln!(t, "\n[rollout]").unwrap();
        writeln!(t, "start_after_s = {}", self.start_after_s).unwrap();
        writeln!(t, "prefetch = {}", self.prefetch).unwrap();
        writeln!(t, "max_failure_percent = {:?}", self.max_failure_percent).unwrap();
        writeln!(t, "min_reports = {}", self.min_reports).unwrap();
        writeln!(t, "silence_s = {}", self.silence_s).unwrap();
        writeln!(t, "heartbeat_s = {}", self.heartbeat_s).unwrap();
        writeln!(t, "report_percent = {:?}", self.report_percent).unwrap();
        writeln!(t, "waves = [").unwrap();
        for (name, pct, bake) in &self.waves {
            writeln!(
                t,
                "  {{ name = {name:?}, cumulative_percent = {pct:?}, bake_s = {bake} }},"
            )
            .unwrap();
        }
        writeln!(t, "]").unwrap();
        for s in &self.sites {
            writeln!(t, "\n[[sites]]").unwrap();
            writeln!(t, "name = {:?}", s.name).unwrap();
            writeln!(t, "endpoints = {}", s.endpoints).unwrap();
            opt(&mut t, "upload_mbit", s.upload_mbit);
            opt(&mut t, "download_mbit", s.download_mbit);
            writeln!(t, "lan_latency_ms = {}", s.lan_latency_ms).unwrap();
            writeln!(t, "wan_latency_ms = {}", s.wan_latency_ms).unwrap();
            opt(&mut t, "wan_upload_mbit", s.wan_upload_mbit);
            opt(&mut t, "wan_download_mbit", s.wan_download_mbit);
            writeln!(t, "lan_loss = {:?}", s.lan_loss).unwrap();
            writeln!(t, "wan_loss = {:?}", s.wan_loss).unwrap();
        }
        if let Some((fraction, mode)) = self.bad_release {
            writeln!(t, "\n[bad_release]").unwrap();
            writeln!(t, "fraction = {fraction:?}").unwrap();
            writeln!(t, "mode = {mode:?}").unwrap();
        }
        writeln!(t, "\n[faults]").unwrap();
        writeln!(t, "corrupt_peers = {:?}", self.corrupt_peers).unwrap();
        if let Some((fraction, lie)) = self.lying_peers {
            writeln!(t, "lying_peers = {fraction:?}").unwrap();
            writeln!(t, "lie = {lie:?}").unwrap();
        }
        if let Some((fraction, lie)) = self.have_liars {
            writeln!(t, "have_liars = {fraction:?}").unwrap();
            writeln!(t, "have_lie = {lie:?}").unwrap();
        }
        for (site, from_s, until_s) in &self.partitions {
            writeln!(t, "\n[[faults.partitions]]").unwrap();
            writeln!(t, "site = {site:?}").unwrap();
            writeln!(t, "from_s = {from_s}").unwrap();
            if let Some(u) = until_s {
                writeln!(t, "until_s = {u}").unwrap();
            }
        }
        for (site, at_s) in &self.bundles {
            writeln!(t, "\n[[faults.bundles]]").unwrap();
            writeln!(t, "site = {site:?}").unwrap();
            writeln!(t, "at_s = {at_s}").unwrap();
        }
        if let Some(n) = self.engines {
            writeln!(t, "\n[scale]\nengines = {n}").unwrap();
        }
        t.push_str(&self.extra);
        t
    }

    /// The parsed and checked scenario.
    pub fn build(&self) -> Scenario {
        let text = self.toml();
        Scenario::from_toml(&text, &self.name)
            .unwrap_or_else(|e| panic!("the builder wrote an invalid scenario: {e}\n{text}"))
    }

    /// Builds and runs the scenario; a failure names the seed.
    pub fn run(&self) -> RunOutput {
        run_scenario(&self.build())
    }
}

/// Runs a scenario, panicking with its seed on error.
pub fn run_scenario(scenario: &Scenario) -> RunOutput {
    run(scenario, None).unwrap_or_else(|e| {
        panic!(
            "scenario {} (seed {}) failed: {e}",
            scenario.name, scenario.seed
        )
    })
}

/// `a` and `b` within `tol` of each other.
pub fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol
}

/// The summary without what depends on the machine rather than the run
/// (wall-clock time, event rate, peak memory), for comparing two runs.
pub fn without_machine(mut s: Summary) -> Summary {
    s.wall_seconds = 0.0;
    s.events_per_second = 0.0;
    s.peak_memory_bytes = None;
    s
}

/// The time-series sample taken at `t_s` seconds after publishing.
pub fn sample_at(out: &RunOutput, t_s: f64) -> &Sample {
    out.series
        .samples
        .iter()
        .find(|s| close(s.t_s, t_s, 1e-9))
        .unwrap_or_else(|| panic!("no sample at t = {t_s} s"))
}

/// `summary.faults[key]`, 0 when absent.
pub fn fault(s: &Summary, key: &str) -> u64 {
    s.faults.get(key).copied().unwrap_or(0)
}
