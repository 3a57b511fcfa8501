//! Watching one release roll out across the demo's mesh. Every poll reads
//! each agent's own status (what its engine decided: fetching, installing,
//! baking, halted, rolled back) and the seeder's health ledger (the gates as
//! the mesh's reports decide them), notes when things were first seen,
//! updates the live display, and at the end condenses it all into a
//! [`ReleaseRun`]. It decides nothing: the only thing it chooses is when to
//! stop watching.

use super::live::{Live, WaveLine};
use super::summary::{ReleaseRun, WaveRun};
use crate::driver::{now, TRAFFIC_SAMPLE};
use crate::testbed::{counters, Member, Testbed};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use waveguard_protocol::health::gate::GateState;
use waveguard_protocol::node::ReleaseStatus;
use waveguard_protocol::release::Release;
use waveguard_protocol::rollout::{HaltReason, RolloutState};
use waveguard_protocol::Timestamp;

/// How often every agent's status is read.
const POLL: Duration = Duration::from_millis(200);
/// How long past its schedule's end a release may take to settle before the demo moves on.
const GRACE_SECS: u64 = 90;

/// Every member's view of the release (`None`: it does not follow it yet), by testbed index.
type Sample = Vec<Option<ReleaseStatus>>;

/// What has been seen of one release so far.
pub(super) struct Watch<'a> {
    bed: &'a Testbed,
    seeder: usize,
    info: Release,
    fault: Option<&'static str>,
    published: Timestamp,
    /// When each endpoint was first seen installing or installed.
    installed: BTreeMap<usize, Timestamp>,
    rolled_back: BTreeSet<usize>,
    /// Per wave: the first install seen.
    first_install: Vec<Option<Timestamp>>,
    /// Per wave: the seeder's gate at the last poll.
    gates: Vec<GateState>,
    fetched: bool,
    first_halt: Option<Timestamp>,
    all_knew: Option<Timestamp>,
}

impl<'a> Watch<'a> {
    pub(super) fn new(
        bed: &'a Testbed,
        seeder: usize,
        info: Release,
        fault: Option<&'static str>,
        published: Timestamp,
    ) -> Watch<'a> {
        let waves = info.policy().waves.len();
        Watch {
            bed,
            seeder,
            info,
            fault,
            published,
            installed: BTreeMap::new(),
            rolled_back: BTreeSet::new(),
            first_install: vec![None; waves],
            gates: vec![GateState::Pending; waves],
            fetched: false,
            first_halt: None,
            all_knew: None,
        }
    }

    /// Watches until the release has settled (healthy everywhere, or halted
    /// everywhere with nothing left installing) or is far past its schedule.
    pub(super) async fn run(mut self, live: &Live) -> ReleaseRun {
        let policy = self.info.policy().clone();
        let names: Vec<String> = policy.waves.iter().map(|w| w.name.clone()).collect();
        let bars = live.release(&self.title(), &names);
        let before = traffic(self.bed, self.seeder);
        let deadline = policy.end().plus_secs(GRACE_SECS);
        let (sample, finished) = loop {
            let at = now();
            let sample = self.sample();
            self.note(&sample, at, live);
            bars.update(self.header(&sample, at), &self.lines(&sample));
            if self.settled(&sample, at) {
                break (sample, true);
            }
            if at > deadline {
                live.say(format!(
                    "{}: not settled {GRACE_SECS} s after its schedule's end; moving on",
                    self.title()
                ));
                break (sample, false);
            }
            tokio::time::sleep(POLL).await;
        };
        let ended = now();
        bars.finish();
        if self.first_halt.is_none() && finished {
            live.say(format!(
                "{}: healthy on all {} agents, {:.1} s after it was published",
                self.title(),
                self.endpoints().count(),
                secs(ended, self.published)
            ));
        }
        // Let every agent's traffic counters take one more sample.
        tokio::time::sleep(TRAFFIC_SAMPLE + Duration::from_millis(500)).await;
        let after = traffic(self.bed, self.seeder);
        self.summarise(
            &sample,
            finished,
            ended,
            (
                after.0.saturating_sub(before.0),
                after.1.saturating_sub(before.1),
            ),
        )
    }

    fn title(&self) -> String {
        format!("{} {}", self.info.info.product, self.info.info.version)
    }

    fn endpoints(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.bed.members.len()).filter(move |&i| i != self.seeder)
    }

    fn who(&self, i: usize) -> String {
        match i == self.seeder {
            true => "the seeder".into(),
            false => format!("agent {i}"),
        }
    }

    fn wave_name(&self, wave: u32) -> String {
        usize::try_from(wave)
            .ok()
            .and_then(|w| self.info.policy().waves.get(w))
            .map_or_else(|| format!("#{wave}"), |w| w.name.clone())
    }

    fn sample(&self) -> Sample {
        self.bed
            .members
            .iter()
            .map(|m| {
                let status = m.shared.status.lock().ok()?;
                let releases = &status.as_ref()?.releases;
                releases.iter().find(|r| r.id == self.info.id).cloned()
            })
            .collect()
    }

    /// Records what is new since the last poll and tells it.
    fn note(&mut self, sample: &Sample, at: Timestamp, live: &Live) {
        let title = self.title();
        let policy = self.info.policy().clone();
        if !self.fetched
            && self.endpoints().all(|i| {
                sample[i]
                    .as_ref()
                    .is_some_and(|r| r.chunks_total > 0 && r.chunks_stored == r.chunks_total)
            })
        {
            self.fetched = true;
            let chunks = self
                .endpoints()
                .find_map(|i| sample[i].as_ref())
                .map_or(0, |r| r.chunks_total);
            live.say(format!(
                "{title}: every agent holds all {chunks} chunks (from the seeder and from each other, each verified)"
            ));
        }
        let endpoints: Vec<usize> = self.endpoints().collect();
        for i in endpoints {
            let Some(r) = &sample[i] else {
                continue;
            };
            if installed(&r.state) && !self.installed.contains_key(&i) {
                self.installed.insert(i, at);
                let w = r.wave as usize;
                if self.first_install.get(w).is_some_and(Option::is_none) {
                    self.first_install[w] = Some(at);
                    live.say(format!(
                        "{title}: wave {} opens: agent {i} installs ({:+.1} s from its scheduled time)",
                        self.wave_name(r.wave),
                        signed_secs(at, policy.scheduled_open(w))
                    ));
                }
            }
            if matches!(r.state, RolloutState::RolledBack { .. }) && self.rolled_back.insert(i) {
                let back = running(&self.bed.members[i], &self.info.info.product)
                    .unwrap_or_else(|| "nothing".into());
                live.say(format!(
                    "{title}: agent {i} (wave {}) rolled back; it runs {back} again",
                    self.wave_name(r.wave)
                ));
            }
        }
        if let Some(Some(r)) = sample.get(self.seeder) {
            for h in &r.waves {
                let Some(seen) = self.gates.get_mut(h.wave as usize) else {
                    continue;
                };
                if *seen == h.gate {
                    continue;
                }
                *seen = h.gate;
                let name = self.wave_name(h.wave);
                match h.gate {
                    GateState::Passed => live.say(format!(
                        "{title}: wave {name}'s gate passes ({} healthy, {} failed, {} silent)",
                        h.healthy, h.failed, h.silent
                    )),
                    GateState::Failed => live.say(format!(
                        "{title}: wave {name}'s gate FAILS ({} failed and {} silent of {} reporting)",
                        h.failed, h.silent, h.reporting
                    )),
                    GateState::Pending => {}
                }
            }
        }
        let knowing: Vec<usize> = (0..sample.len())
            .filter(|&i| sample[i].as_ref().and_then(halt_of).is_some())
            .collect();
        if self.first_halt.is_none() {
            if let Some(&i) = knowing.first() {
                self.first_halt = Some(at);
                let why = sample[i]
                    .as_ref()
                    .and_then(halt_of)
                    .map(|h| self.describe(&h))
                    .unwrap_or_default();
                live.say(format!(
                    "{title}: HALTED ({why}), first seen on {}, {:.1} s after its first wave opened",
                    self.who(i),
                    secs(at, policy.start)
                ));
            }
        }
        if self.first_halt.is_some() && self.all_knew.is_none() && knowing.len() == sample.len() {
            self.all_knew = Some(at);
            live.say(format!(
                "{title}: all {} nodes know of the halt, {:.1} s after its first wave opened",
                sample.len(),
                secs(at, policy.start)
            ));
        }
    }

    /// Done: healthy on every agent; or halted on every node, nothing
    /// installing, baking or rolling back, and past the time the wave after
    /// the last one that installed would have opened.
    fn settled(&self, sample: &Sample, at: Timestamp) -> bool {
        let states = || {
            self.endpoints()
                .map(|i| sample[i].as_ref().map(|r| &r.state))
        };
        if self.first_halt.is_none() {
            return states().all(|s| s == Some(&RolloutState::Healthy));
        }
        let busy = states().any(|s| {
            matches!(
                s,
                Some(
                    RolloutState::Installing { .. }
                        | RolloutState::Baking { .. }
                        | RolloutState::RollingBack { .. }
                )
            )
        });
        let policy = self.info.policy();
        let last = self
            .installed
            .keys()
            .filter_map(|&i| sample[i].as_ref().map(|r| r.wave as usize))
            .max()
            .unwrap_or(0);
        let next_passed =
            last + 1 >= policy.waves.len() || at >= policy.scheduled_open(last + 1).plus_secs(1);
        self.all_knew.is_some() && !busy && next_passed
    }

    /// The header line: where the release stands.
    fn header(&self, sample: &Sample, at: Timestamp) -> String {
        let n = self.endpoints().count();
        let count = |f: &dyn Fn(&RolloutState) -> bool| {
            self.endpoints()
                .filter(|&i| sample[i].as_ref().is_some_and(|r| f(&r.state)))
                .count()
        };
        if self.first_halt.is_some() {
            let know = sample
                .iter()
                .filter(|r| r.as_ref().and_then(halt_of).is_some())
                .count();
            return format!(
                "HALTED · {know}/{} nodes know · {} rolled back",
                sample.len(),
                self.rolled_back.len()
            );
        }
        let start = self.info.policy().start;
        if at < start {
            let fetched = self
                .endpoints()
                .filter(|&i| {
                    sample[i]
                        .as_ref()
                        .is_some_and(|r| r.chunks_total > 0 && r.chunks_stored == r.chunks_total)
                })
                .count();
            return format!(
                "{fetched}/{n} agents hold every chunk · first wave opens in {:.0} s",
                secs(start, at)
            );
        }
        format!(
            "{}/{n} installed · {} baking · {} healthy",
            self.installed.len(),
            count(&|s| matches!(s, RolloutState::Baking { .. })),
            count(&|s| *s == RolloutState::Healthy)
        )
    }

    /// One line per wave: its agents and installs (the agents' own states),
    /// and its counts and gate as the seeder's ledger has them.
    fn lines(&self, sample: &Sample) -> Vec<WaveLine> {
        let ledger = sample.get(self.seeder).and_then(Option::as_ref);
        (0..self.info.policy().waves.len())
            .map(|w| {
                let (agents, installed, rolled_back) = self.wave_counts(sample, w);
                let text = match ledger.and_then(|r| r.waves.get(w)) {
                    Some(h) => format!(
                        "healthy {} · failed {} · silent {} · gate {}{}",
                        h.healthy,
                        h.failed,
                        h.silent,
                        gate_name(h.gate),
                        match rolled_back {
                            0 => String::new(),
                            r => format!(" · rolled back {r}"),
                        }
                    ),
                    None => "the seeder does not follow it yet".into(),
                };
                WaveLine {
                    agents: agents as u64,
                    installed: installed as u64,
                    text,
                }
            })
            .collect()
    }

    /// Agents in wave `w`, how many of them installed, how many rolled back.
    fn wave_counts(&self, sample: &Sample, w: usize) -> (usize, usize, usize) {
        let members: Vec<usize> = self
            .endpoints()
            .filter(|&i| sample[i].as_ref().is_some_and(|r| r.wave as usize == w))
            .collect();
        let installed = members
            .iter()
            .filter(|i| self.installed.contains_key(i))
            .count();
        let rolled_back = members
            .iter()
            .filter(|i| self.rolled_back.contains(i))
            .count();
        (members.len(), installed, rolled_back)
    }

    fn describe(&self, reason: &HaltReason) -> String {
        match reason {
            HaltReason::GateFailed {
                wave,
                failures,
                reporting,
            } => format!(
                "wave {}'s health gate failed: {failures} of {reporting} reporting agents failed or went silent",
                self.wave_name(*wave)
            ),
            HaltReason::Directive { reason, seq } => {
                format!("signed halt directive #{seq}: {reason}")
            }
            HaltReason::LocalFailure { detail } => format!("an agent's own check failed: {detail}"),
        }
    }

    fn summarise(
        &self,
        sample: &Sample,
        finished: bool,
        ended: Timestamp,
        (seeder_sent, peers_sent): (u64, u64),
    ) -> ReleaseRun {
        let policy = self.info.policy();
        let ledger = sample.get(self.seeder).and_then(Option::as_ref);
        let waves = policy
            .waves
            .iter()
            .enumerate()
            .map(|(w, spec)| {
                let (agents, installed, rolled_back) = self.wave_counts(sample, w);
                let h = ledger.and_then(|r| r.waves.get(w));
                WaveRun {
                    name: spec.name.clone(),
                    cumulative_ppm: spec.cumulative_ppm,
                    agents,
                    installed,
                    healthy: h.map_or(0, |h| h.healthy),
                    failed: h.map_or(0, |h| h.failed),
                    silent: h.map_or(0, |h| h.silent),
                    rolled_back,
                    gate: h.map_or(GateState::Pending, |h| h.gate),
                    first_install: self.first_install[w]
                        .map(|t| Duration::from_millis(t.millis_since(policy.scheduled_open(w)))),
                }
            })
            .collect();
        let state_count = |f: &dyn Fn(&RolloutState) -> bool| {
            self.endpoints()
                .filter(|&i| sample[i].as_ref().is_some_and(|r| f(&r.state)))
                .count()
        };
        // The seeder's reason is the mesh's (a gate); an installer's own may be its local failure.
        let halt = ledger
            .and_then(halt_of)
            .or_else(|| sample.iter().flatten().find_map(halt_of));
        let mut running_now = BTreeMap::new();
        for i in self.endpoints() {
            let v = running(&self.bed.members[i], &self.info.info.product)
                .unwrap_or_else(|| "nothing".into());
            *running_now.entry(v).or_insert(0usize) += 1;
        }
        let since_start = |t: Timestamp| Duration::from_millis(t.millis_since(policy.start));
        ReleaseRun {
            name: self.title(),
            version: self.info.info.version.clone(),
            release: self.info.id,
            fault: self.fault,
            size: self.info.length,
            chunks: sample
                .iter()
                .flatten()
                .map(|r| r.chunks_total)
                .max()
                .unwrap_or(0),
            waves,
            finished,
            healthy: state_count(&|s| *s == RolloutState::Healthy),
            rolled_back: state_count(&|s| matches!(s, RolloutState::RolledBack { .. })),
            know_halt: sample
                .iter()
                .filter(|r| r.as_ref().and_then(halt_of).is_some())
                .count(),
            nodes: sample.len(),
            halt_text: halt.as_ref().map(|h| self.describe(h)),
            halt,
            halt_after: self.first_halt.map(since_start),
            all_knew_after: self.all_knew.map(since_start),
            took: Duration::from_millis(ended.millis_since(self.published)),
            seeder_sent,
            peers_sent,
            running: running_now,
        }
    }
}

/// Whether an agent in `state` has started installing the release (and may since have rolled back).
fn installed(state: &RolloutState) -> bool {
    matches!(
        state,
        RolloutState::Installing { .. }
            | RolloutState::Baking { .. }
            | RolloutState::Healthy
            | RolloutState::RollingBack { .. }
            | RolloutState::RolledBack { .. }
    )
}

/// Why the release stopped on this node, if it did.
fn halt_of(r: &ReleaseStatus) -> Option<HaltReason> {
    r.halt.clone().or_else(|| match &r.state {
        RolloutState::Halted { reason }
        | RolloutState::RollingBack { reason }
        | RolloutState::RolledBack { reason } => Some(reason.clone()),
        _ => None,
    })
}

fn gate_name(g: GateState) -> &'static str {
    match g {
        GateState::Pending => "pending",
        GateState::Passed => "passed",
        GateState::Failed => "FAILED",
    }
}

/// The version `current` points at in an agent's installs directory.
fn running(m: &Member, product: &str) -> Option<String> {
    let link = m
        .config
        .data_dir
        .join("installs")
        .join(product)
        .join("current");
    let target = std::fs::read_link(link).ok()?;
    let name = target.file_name()?.to_string_lossy().into_owned();
    // Version directories are `<version>-<release id prefix>`.
    Some(
        name.rsplit_once('-')
            .map_or(name.clone(), |(v, _)| v.to_string()),
    )
}

/// Bytes sent to peers so far: by the seeder, and by every other agent together.
fn traffic(bed: &Testbed, seeder: usize) -> (u64, u64) {
    let mut out = (0u64, 0u64);
    for (i, m) in bed.members.iter().enumerate() {
        let t = counters(&m.shared).traffic;
        let sent = t.lan.sent.saturating_add(t.wan.sent);
        let slot = if i == seeder { &mut out.0 } else { &mut out.1 };
        *slot = slot.saturating_add(sent);
    }
    out
}

/// `later - earlier` in seconds, 0 if negative.
fn secs(later: Timestamp, earlier: Timestamp) -> f64 {
    later.millis_since(earlier) as f64 / 1000.0
}

/// `at - reference` in seconds, with its sign.
fn signed_secs(at: Timestamp, reference: Timestamp) -> f64 {
    (at.as_millis() as f64 - reference.as_millis() as f64) / 1000.0
}
