//! What `waveguard demo` returns and prints at the end: per release, per
//! wave, who was in it, who installed, how the gate counted them, and how
//! the release ended (healthy everywhere, or halted: why, how fast, who
//! rolled back), with the bytes the seeder and the agents served.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;
use waveguard_protocol::health::gate::GateState;
use waveguard_protocol::rollout::HaltReason;
use waveguard_protocol::ReleaseId;

/// What `demo` did.
#[derive(Debug, Clone)]
pub struct DemoReport {
    /// Endpoint agents (besides the seeder).
    pub agents: usize,
    /// The seeder's dashboard, `http://ADDR/`.
    pub dashboard: String,
    /// Where everything lived.
    pub dir: PathBuf,
    /// Whether it was kept (`--dir`) rather than removed.
    pub kept: bool,
    /// The first release, which is good.
    pub good: ReleaseRun,
    /// The second release, whose probe fails.
    pub bad: ReleaseRun,
    /// Wall time of the whole demo (until the summary, with `--hold`).
    pub wall: Duration,
    /// Whether the mesh was held running after the summary, which was then printed already.
    pub held: bool,
}

/// How one release went.
#[derive(Debug, Clone)]
pub struct ReleaseRun {
    /// `product version`.
    pub name: String,
    /// The version alone.
    pub version: String,
    /// Its ID.
    pub release: ReleaseId,
    /// What is wrong with it, if anything.
    pub fault: Option<&'static str>,
    /// Artifact size in bytes.
    pub size: u64,
    /// Chunks in the release.
    pub chunks: u32,
    /// Per wave, in order.
    pub waves: Vec<WaveRun>,
    /// Whether it settled (healthy everywhere, or halted everywhere) before the demo gave up.
    pub finished: bool,
    /// Agents whose rollout ended healthy.
    pub healthy: usize,
    /// Agents that rolled it back.
    pub rolled_back: usize,
    /// Nodes (the seeder included) that know of a halt.
    pub know_halt: usize,
    /// Nodes in the mesh, the seeder included.
    pub nodes: usize,
    /// Why it halted, as the seeder saw it (else as the first node that knew).
    pub halt: Option<HaltReason>,
    /// `halt` in words, with wave names.
    pub halt_text: Option<String>,
    /// From the first wave's opening to the first node seen halted.
    pub halt_after: Option<Duration>,
    /// From the first wave's opening until every node was seen halted.
    pub all_knew_after: Option<Duration>,
    /// From publishing until it settled.
    pub took: Duration,
    /// Bytes the seeder sent to peers meanwhile.
    pub seeder_sent: u64,
    /// Bytes the agents sent to each other meanwhile.
    pub peers_sent: u64,
    /// At the end: how many agents run which version (`nothing`: none installed).
    pub running: BTreeMap<String, usize>,
}

/// One wave of a [`ReleaseRun`]. `agents`, `installed` and `rolled_back`
/// are the agents' own states; `healthy`, `failed`, `silent` and `gate` are
/// the health ledger's at the end, as the seeder held it.
#[derive(Debug, Clone)]
pub struct WaveRun {
    /// Wave name.
    pub name: String,
    /// Cumulative share, ppm.
    pub cumulative_ppm: u32,
    /// Agents in the wave.
    pub agents: usize,
    /// Agents of the wave that installed (or started to).
    pub installed: usize,
    /// Reporting healthy.
    pub healthy: u64,
    /// Reporting a failure.
    pub failed: u64,
    /// Installed but silent too long.
    pub silent: u64,
    /// Agents of the wave that rolled back.
    pub rolled_back: usize,
    /// The gate.
    pub gate: GateState,
    /// The first install, after the wave's scheduled opening.
    pub first_install: Option<Duration>,
}

impl ReleaseRun {
    /// Installs (or install starts) outside the first wave.
    pub fn installs_after_first_wave(&self) -> usize {
        self.waves.iter().skip(1).map(|w| w.installed).sum()
    }
}

/// `n` bytes for people: `8.0 MiB`.
pub(super) fn bytes(n: u64) -> String {
    const MIB: f64 = (1u64 << 20) as f64;
    if n >= 1 << 20 {
        format!("{:.1} MiB", n as f64 / MIB)
    } else {
        format!("{:.1} KiB", n as f64 / 1024.0)
    }
}

fn gate(g: GateState) -> &'static str {
    match g {
        GateState::Pending => "pending",
        GateState::Passed => "passed",
        GateState::Failed => "FAILED",
    }
}

impl fmt::Display for ReleaseRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.fault {
            Some(fault) => writeln!(f, "release {} (bad: {fault})", self.name)?,
            None => writeln!(f, "release {} (good)", self.name)?,
        }
        writeln!(
            f,
            "  {} in {} chunks, id {}",
            bytes(self.size),
            self.chunks,
            &self.release.to_hex()[..16]
        )?;
        writeln!(
            f,
            "  {:<8} {:>5} {:>6} {:>9} {:>7} {:>6} {:>6} {:>11} {:>7}  first install",
            "wave",
            "share",
            "agents",
            "installed",
            "healthy",
            "failed",
            "silent",
            "rolled back",
            "gate"
        )?;
        for w in &self.waves {
            let first = w
                .first_install
                .map_or("-".to_string(), |d| format!("+{:.1} s", d.as_secs_f64()));
            writeln!(
                f,
                "  {:<8} {:>5} {:>6} {:>9} {:>7} {:>6} {:>6} {:>11} {:>7}  {first}",
                w.name,
                crate::cli::publish::percent(w.cumulative_ppm),
                w.agents,
                w.installed,
                w.healthy,
                w.failed,
                w.silent,
                w.rolled_back,
                gate(w.gate)
            )?;
        }
        writeln!(
            f,
            "  (agents, installed, rolled back: each agent's own state; healthy, failed, silent, gate: the seeder's health ledger)"
        )?;
        match (&self.halt_text, self.halt_after) {
            (None, _) => writeln!(
                f,
                "  outcome: healthy on {} agents, no halt; {:.1} s from publishing",
                self.healthy,
                self.took.as_secs_f64()
            )?,
            (Some(why), after) => {
                let secs = |d: Option<Duration>| {
                    d.map_or("?".to_string(), |d| format!("{:.1} s", d.as_secs_f64()))
                };
                writeln!(f, "  outcome: HALTED: {why}")?;
                writeln!(
                    f,
                    "    halted {} after its first wave opened; all {} nodes knew after {} ({} knew at the end)",
                    secs(after),
                    self.nodes,
                    secs(self.all_knew_after),
                    self.know_halt
                )?;
                writeln!(
                    f,
                    "    {} agents rolled back; installs outside the first wave: {}",
                    self.rolled_back,
                    self.installs_after_first_wave()
                )?;
            }
        }
        if !self.finished {
            writeln!(f, "  (it had not settled when the demo moved on)")?;
        }
        let running: Vec<String> = self
            .running
            .iter()
            .map(|(v, n)| format!("{v} on {n}"))
            .collect();
        writeln!(f, "  running afterwards: {}", running.join(", "))?;
        let total = self.seeder_sent.saturating_add(self.peers_sent).max(1);
        write!(
            f,
            "  bytes served: seeder {} ({:.1}× the release), agents to each other {} ({:.0}% of all)",
            bytes(self.seeder_sent),
            self.seeder_sent as f64 / self.size.max(1) as f64,
            bytes(self.peers_sent),
            self.peers_sent as f64 * 100.0 / total as f64
        )
    }
}

impl fmt::Display for DemoReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.held {
            return write!(f, "the mesh stopped (the summary is above)");
        }
        writeln!(
            f,
            "== summary: a seeder and {} agents on 127.0.0.1 (real agents: libp2p, store, installer, health gates)",
            self.agents
        )?;
        writeln!(f, "{}", self.good)?;
        writeln!(f)?;
        writeln!(f, "{}", self.bad)?;
        writeln!(f)?;
        write!(
            f,
            "{:.0} s in all; dashboard was {}; files in {} ({})",
            self.wall.as_secs_f64(),
            self.dashboard,
            self.dir.display(),
            if self.kept { "kept" } else { "removed" }
        )
    }
}
