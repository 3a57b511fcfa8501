//! The rollout on this node: gossip of metadata, health, halts and
//! directives; the gate; opening this node's wave; install, probe,
//! heartbeat and rollback.

use super::{Node, NodeEvent, NodeRole, Output, Probe, Tracked, Verdict, GATE_CHECK_DELAY_MS};
use crate::health::directive::{verify_directive, DirectiveAction};
use crate::health::evidence::{build_evidence, check_evidence};
use crate::health::gate::{evaluate, fails, GateState, WaveHealth};
use crate::health::report::{
    sign_report, verify_report_with, HealthReport, HealthStatus, ReportError,
};
use crate::health::FleetKeys;
use crate::id::{NodeId, ReleaseId};
use crate::limits::SILENCE_CONFIRM_MS;
use crate::metadata::root::RoleName;
use crate::metadata::trust::TrustedState;
use crate::rollout::{HaltReason, RolloutEvent, RolloutState};
use crate::time::Timestamp;
use crate::wave::reports_health;
use crate::wire::{Gossip, SignedHealth, TOPIC_HEALTH};
use serde_bytes::ByteBuf;

/// Who may sign what, as the trusted root says.
pub(super) fn fleet_keys(trust: &TrustedState) -> FleetKeys {
    // Every key the root lists: the vendor's and the operator's roles both draw on them.
    let keys = trust.root().keys.clone();
    let vendor = trust
        .role_keys(RoleName::Targets)
        .map(|(role, _)| role)
        .unwrap_or_default();
    FleetKeys {
        keys,
        vendor,
        operator: trust.operator_role().map(|(role, _)| role),
    }
}

/// Offers the next schedule boundary of a release that lies ahead of `schedule_now`
/// (a wave opening or the rollout end), on our clock: `lag_ms` later than the schedule
/// says when our clock is known to run ahead (11.10).
pub(super) fn consider_schedule(
    t: &Tracked,
    schedule_now: Timestamp,
    lag_ms: u64,
    consider: &mut impl FnMut(Timestamp),
) {
    if t.state.is_stopped() {
        return;
    }
    let policy = t.release.policy();
    for i in 0..=policy.waves.len() {
        let at = policy.scheduled_open(i);
        if at > schedule_now {
            consider(at.plus_millis(lag_ms));
            break;
        }
    }
}

impl Node {
    pub(super) fn on_gossip(&mut self, from: NodeId, data: &[u8]) -> Verdict {
        if self.book.is_banned(&from) {
            return Verdict::Reject;
        }
        let msg = match Gossip::decode(data) {
            Ok(m) => m,
            Err(e) => {
                self.event(NodeEvent::Refused {
                    from: Some(from),
                    reason: e.to_string(),
                });
                return Verdict::Reject;
            }
        };
        match msg {
            Gossip::Metadata(bundle) => match self.apply_metadata(&bundle, false) {
                Ok(true) => Verdict::Accept,
                // Valid but nothing new: no need to spread it further.
                Ok(false) => Verdict::Ignore,
                Err(e) if e.is_stale() => Verdict::Ignore,
                Err(e) => {
                    self.event(NodeEvent::Refused {
                        from: Some(from),
                        reason: e.to_string(),
                    });
                    Verdict::Reject
                }
            },
            Gossip::Health(sh) => self.on_health(Some(from), &sh, true),
            Gossip::Halt(ev) => self.on_halt_evidence(from, &ev),
            Gossip::Directive(bytes) => match self.on_directive(&bytes, false) {
                Ok(true) => Verdict::Accept,
                Ok(false) => Verdict::Ignore,
                Err(()) => Verdict::Reject,
            },
        }
    }

    /// Verifies a health report and adds it to its release's ledger. `fresh`: it came by
    /// gossip, so it was signed moments ago and its time is a sample of its sender's clock.
    pub(super) fn on_health(
        &mut self,
        from: Option<NodeId>,
        sh: &SignedHealth,
        fresh: bool,
    ) -> Verdict {
        let release_id = match crate::health::report::peek_release(sh) {
            Ok(id) => id,
            Err(e) => {
                self.event(NodeEvent::Refused {
                    from,
                    reason: e.to_string(),
                });
                return Verdict::Reject;
            }
        };
        let now = self.now;
        let Some(t) = self.releases.get_mut(&release_id) else {
            return Verdict::Ignore; // a release we do not (yet) trust
        };
        let checked = self.config.checked_signatures.as_ref();
        let verified = match verify_report_with(sh, &self.fleet, &t.release, now, checked) {
            Ok(v) => v,
            Err(e @ ReportError::FromTheFuture { node, time, .. }) => {
                // Valid in every other respect: when many nodes send these, our clock is
                // behind (11.10). Ignored, not rejected: the peer that relayed it
                // is not at fault for our clock.
                if fresh {
                    self.clock.sample(node, time, now);
                }
                self.event(NodeEvent::Refused {
                    from,
                    reason: e.to_string(),
                });
                return Verdict::Ignore;
            }
            Err(e) => {
                self.event(NodeEvent::Refused {
                    from,
                    reason: e.to_string(),
                });
                return Verdict::Reject;
            }
        };
        let (node, time) = (verified.report().node, verified.report().time);
        match t.ledger.insert(verified) {
            Ok(_) => {
                // Only a report new to the ledger: a replayed copy says nothing about now.
                if fresh {
                    self.clock.sample(node, time, now);
                }
                // A new report is checked soon, even if the periodic check is further away.
                let soon = now.plus_millis(GATE_CHECK_DELAY_MS);
                t.gate_check_at = Some(t.gate_check_at.map_or(soon, |at| at.min(soon)));
                Verdict::Accept
            }
            Err(_) => Verdict::Ignore, // replay or duplicate
        }
    }

    pub(super) fn on_halt_evidence(
        &mut self,
        from: NodeId,
        ev: &crate::wire::HaltEvidence,
    ) -> Verdict {
        // Judged at the fleet's time when ours is known to be behind: evidence is what
        // halts a fleet, and our clock must not keep us from seeing it (11.10).
        let now = self.expiry_now();
        let Some(t) = self.releases.get_mut(&ev.release) else {
            return Verdict::Ignore;
        };
        if t.halt.is_some() {
            return Verdict::Ignore; // already halted: nothing new to spread
        }
        match check_evidence(ev, &mut t.ledger, &self.fleet, &t.release.clone(), now) {
            Ok(health) => {
                let reason = HaltReason::GateFailed {
                    wave: ev.wave,
                    failures: health.failed + health.silent,
                    reporting: health.reporting,
                };
                // We did not decide this halt ourselves; the sender's message is forwarded by gossip.
                if let Some(t) = self.releases.get_mut(&ev.release) {
                    t.halt_announced = true;
                }
                self.latch_halt(ev.release, reason);
                Verdict::Accept
            }
            Err(e) => {
                self.event(NodeEvent::Refused {
                    from: Some(from),
                    reason: format!("halt evidence for {}: {e}", ev.release),
                });
                if e.is_forgery() {
                    Verdict::Reject
                } else {
                    Verdict::Ignore
                }
            }
        }
    }

    /// Verifies and applies a directive. `Ok(true)` if it changed something.
    pub(super) fn on_directive(&mut self, bytes: &[u8], local: bool) -> Result<bool, ()> {
        let directive = match verify_directive(bytes, &self.fleet, self.now) {
            Ok(d) => d,
            Err(e) => {
                self.event(NodeEvent::Refused {
                    from: None,
                    reason: e.to_string(),
                });
                return Err(());
            }
        };
        let Some(t) = self.releases.get_mut(&directive.release) else {
            // Signed and in force, for a release we do not follow yet (our metadata may lag):
            // keep it for when we do, and let it spread.
            if self.early_directives.len() < crate::limits::MAX_RELEASES {
                self.early_directives
                    .insert(directive.release, bytes.to_vec());
            }
            if local {
                self.broadcast_directive(bytes);
            }
            return Ok(true);
        };
        if t.directives.accept(&directive).is_err() {
            return Ok(false); // replay of an older directive
        }
        t.directive_bytes = Some(bytes.to_vec());
        match directive.action {
            DirectiveAction::Halt => {
                let reason = HaltReason::Directive {
                    reason: directive.reason.clone(),
                    seq: directive.seq,
                };
                self.latch_halt(directive.release, reason);
            }
            DirectiveAction::Resume => {
                if matches!(t.halt, Some(HaltReason::Directive { .. })) {
                    t.halt = None;
                    let id = directive.release;
                    self.event(NodeEvent::Resumed { release: id });
                    if self.transition(&id, RolloutEvent::Resume) {
                        // Chunks already held need no fetching: go straight back to staging.
                        self.check_complete(id);
                    }
                }
            }
        }
        // Every accepted directive is kept, so a restart neither brings a lifted halt back
        // nor lets an older directive in again.
        self.record_rollout(&directive.release);
        if local {
            self.broadcast_directive(bytes);
        }
        Ok(true)
    }

    pub(super) fn broadcast_directive(&mut self, bytes: &[u8]) {
        self.outputs.push_back(Output::Broadcast {
            topic: crate::wire::TOPIC_DIRECTIVES,
            data: Gossip::Directive(ByteBuf::from(bytes.to_vec())).encode(),
        });
    }

    /// Sets the halt latch; the state follows in [`Node::drive_rollouts`].
    pub(super) fn latch_halt(&mut self, id: ReleaseId, reason: HaltReason) {
        let Some(t) = self.releases.get_mut(&id) else {
            return;
        };
        if t.halt.is_some() {
            return;
        }
        t.halt = Some(reason.clone());
        self.event(NodeEvent::Halted {
            release: id,
            reason,
        });
        self.record_rollout(&id);
        self.apply_halt(id);
    }

    fn apply_halt(&mut self, id: ReleaseId) {
        let Some(t) = self.releases.get(&id) else {
            return;
        };
        let Some(reason) = t.halt.clone() else { return };
        let was_installed = matches!(t.state, RolloutState::Baking { .. } | RolloutState::Healthy);
        if matches!(t.state, RolloutState::Installing { .. }) || t.state.is_stopped() {
            return; // an install in progress is rolled back when it returns
        }
        if self.transition(&id, RolloutEvent::Halt(reason)) && was_installed {
            if let Some(t) = self.releases.get_mut(&id) {
                t.probe = Probe::Off;
            }
            self.outputs.push_back(Output::Rollback { release: id });
        }
    }

    pub(super) fn drive_rollouts(&mut self) {
        let ids: Vec<ReleaseId> = self.releases.keys().copied().collect();
        for id in ids {
            self.check_gates(id);
            self.apply_halt(id);
            self.maybe_install(id);
            self.maybe_probe(id);
            self.maybe_complete(id);
        }
    }

    /// Re-evaluates the gates of every opened wave when due; a failed gate halts and is announced with evidence.
    fn check_gates(&mut self, id: ReleaseId) {
        let now = self.now;
        let far_off = self.clock_far_off();
        let Some(t) = self.releases.get_mut(&id) else {
            return;
        };
        let due = t.gate_check_at.is_some_and(|at| at <= now);
        if !due {
            return;
        }
        t.gate_check_at = None;
        let policy = t.release.policy().clone();
        if t.halt.is_some() || t.rollout_over(now) {
            return;
        }
        // Silence turns into failure with time alone, so keep checking while anyone installed.
        let heartbeat = policy.health.heartbeat_seconds.saturating_mul(1000);
        t.gate_check_at = Some(now.plus_millis(heartbeat));
        for wave in 0..policy.waves.len() {
            if policy.scheduled_open(wave) > now {
                break;
            }
            let health = evaluate(&t.ledger, &t.release, wave as u32, now);
            if wave as u32 == t.wave && health.gate == GateState::Passed {
                t.own_wave_passed = true;
            }
            // A confirmed-away silence is forgotten, so a later one is confirmed afresh.
            if health.gate != GateState::Failed
                && t.silence_check.is_some_and(|(w, _)| w == wave as u32)
            {
                t.silence_check = None;
            }
            if health.gate == GateState::Failed {
                let wave = wave as u32;
                let announced = t.halt_announced;
                // A failure that rests on silence may only mean we missed a node's final
                // `baked` report (it is sent once): ask a peer for the wave's reports first.
                let by_silence = !fails(health.reporting, health.failed, &policy.health);
                // Silence is measured with our clock; when peers say it is far off, a halt
                // on silence would be our clock's doing, not the fleet's (11.10).
                if by_silence && far_off {
                    continue;
                }
                if by_silence && !self.peers.is_empty() {
                    match t.silence_check {
                        Some((w, asked)) if w == wave => {
                            let deadline = asked.plus_millis(SILENCE_CONFIRM_MS);
                            if now < deadline && self.sync_outstanding(&id) {
                                if let Some(t) = self.releases.get_mut(&id) {
                                    t.gate_check_at = Some(deadline);
                                }
                                return;
                            }
                            // Asked, and answered or out of time: the failure stands.
                        }
                        _ => {
                            t.silence_check = Some((wave, now));
                            t.gate_check_at = Some(now.plus_millis(SILENCE_CONFIRM_MS));
                            self.request_health_sync(id, wave);
                            return;
                        }
                    }
                }
                self.halt_on_gate(id, wave, &health, announced);
                return;
            }
        }
        self.note_last_wave(id);
    }

    /// Halts on a failed gate of `wave` and, unless already done, announces it with evidence.
    fn halt_on_gate(&mut self, id: ReleaseId, wave: u32, health: &WaveHealth, announced: bool) {
        let now = self.now;
        let Some(t) = self.releases.get_mut(&id) else {
            return;
        };
        t.halt_announced = true;
        let evidence = build_evidence(&t.ledger, &t.release, wave, now);
        self.latch_halt(
            id,
            HaltReason::GateFailed {
                wave,
                failures: health.failed + health.silent,
                reporting: health.reporting,
            },
        );
        if !announced {
            self.outputs.push_back(Output::Broadcast {
                topic: TOPIC_HEALTH,
                data: Gossip::Halt(evidence).encode(),
            });
        }
    }

    /// Records when the last wave opened on this node's evidence (see [`Tracked::rollout_over`]).
    fn note_last_wave(&mut self, id: ReleaseId) {
        let now = self.now;
        let Some(t) = self.releases.get(&id) else {
            return;
        };
        if t.last_wave_open_at.is_some() {
            return;
        }
        let last = t.release.policy().waves.len().saturating_sub(1);
        let open = now >= t.release.policy().scheduled_open(last)
            && (0..last)
                .all(|j| evaluate(&t.ledger, &t.release, j as u32, now).gate == GateState::Passed);
        if open {
            if let Some(t) = self.releases.get_mut(&id) {
                t.last_wave_open_at = Some(now);
            }
        }
    }

    /// Whether this node's wave is open: its scheduled time has come (by the earlier of our
    /// clock and the fleet's, see [`Node::schedule_now`]) and every earlier wave's gate passed.
    pub(super) fn wave_open(&self, t: &Tracked) -> bool {
        let policy = t.release.policy();
        let w = t.wave as usize;
        if self.schedule_now() < policy.scheduled_open(w) {
            return false;
        }
        (0..w)
            .all(|j| evaluate(&t.ledger, &t.release, j as u32, self.now).gate == GateState::Passed)
    }

    fn maybe_install(&mut self, id: ReleaseId) {
        if self.config.role != NodeRole::Endpoint || self.config.paused {
            return;
        }
        let Some(t) = self.releases.get(&id) else {
            return;
        };
        if !matches!(t.state, RolloutState::Staged) || t.halt.is_some() {
            return;
        }
        // Freeze protection: never start an install on expired metadata, by our clock or,
        // when ours is known to be behind, by the fleet's.
        if self.trust.expired(self.now).is_some() || self.trust.expired(self.expiry_now()).is_some()
        {
            return;
        }
        // A clock known to be far off would misjudge the schedule, silence and expiry,
        // and our reports would be refused or look silent to peers: wait until it agrees.
        if self.clock_far_off() {
            return;
        }
        if !self.wave_open(t) {
            return;
        }
        let (product, version) = (
            t.release.info.product.clone(),
            t.release.info.version.clone(),
        );
        if self.transition(&id, RolloutEvent::InstallStarted(self.now)) {
            self.outputs.push_back(Output::Install {
                release: id,
                product,
                version,
            });
        }
    }

    pub(super) fn on_install_finished(&mut self, id: ReleaseId, result: Result<(), String>) {
        let now = self.now;
        match result {
            Ok(()) => {
                if !self.transition(&id, RolloutEvent::InstallSucceeded(now)) {
                    return;
                }
                if let Some(t) = self.releases.get_mut(&id) {
                    t.probe = Probe::DueAt(now);
                }
                self.report(id, HealthStatus::Installed);
                // A halt that arrived during the install applies now.
                self.apply_halt(id);
            }
            Err(detail) => {
                if self.transition(&id, RolloutEvent::InstallFailed(detail)) {
                    self.report(id, HealthStatus::InstallFailed);
                }
            }
        }
    }

    fn maybe_probe(&mut self, id: ReleaseId) {
        let now = self.now;
        let Some(t) = self.releases.get_mut(&id) else {
            return;
        };
        if let Probe::DueAt(at) = t.probe {
            if at <= now && matches!(t.state, RolloutState::Baking { .. }) {
                t.probe = Probe::Running;
                self.outputs.push_back(Output::RunProbe { release: id });
            }
        }
    }

    pub(super) fn on_probe_finished(&mut self, id: ReleaseId, healthy: bool) {
        let now = self.now;
        let Some(t) = self.releases.get_mut(&id) else {
            return;
        };
        if t.probe != Probe::Running || !matches!(t.state, RolloutState::Baking { .. }) {
            return;
        }
        let heartbeat = t.release.policy().health.heartbeat_seconds;
        t.probe = Probe::DueAt(now.plus_secs(heartbeat));
        if healthy {
            t.probed_healthy = true;
            self.report(id, HealthStatus::Healthy);
        } else {
            self.report(id, HealthStatus::Unhealthy);
            self.latch_halt(
                id,
                HaltReason::LocalFailure {
                    detail: "health probe failed".into(),
                },
            );
        }
    }

    pub(super) fn on_rollback_finished(&mut self, id: ReleaseId, result: Result<(), String>) {
        if let Err(detail) = result {
            self.event(NodeEvent::Refused {
                from: None,
                reason: format!("rollback of {id} failed: {detail}"),
            });
        }
        if self.transition(&id, RolloutEvent::RollbackFinished) {
            self.report(id, HealthStatus::RolledBack);
        }
    }

    fn maybe_complete(&mut self, id: ReleaseId) {
        let now = self.now;
        let Some(t) = self.releases.get(&id) else {
            return;
        };
        let RolloutState::Baking { installed_at } = t.state else {
            return;
        };
        let health = &t.release.policy().health;
        // Heartbeats end when our own wave's gate has passed on our evidence: from then on
        // nothing about this wave can open or hold back another, and the final `baked` report
        // tells every node that our quiet is not silence. The rollout's end is the fallback
        // for a last wave too small to ever pass its gate. Bake at least one heartbeat, and
        // only on a healthy latest probe, so that the final word is a healthy one.
        let done = (t.own_wave_passed || t.rollout_over(now))
            && t.probed_healthy
            && now >= installed_at.plus_secs(health.heartbeat_seconds);
        if done && t.probe != Probe::Running && self.transition(&id, RolloutEvent::RolloutComplete)
        {
            if let Some(t) = self.releases.get_mut(&id) {
                t.probe = Probe::Off;
            }
            self.report(id, HealthStatus::Baked);
        }
    }

    /// Signs, records and broadcasts this node's status for a release, if
    /// the node is in the release's report sample (spec 10 step 4); a node outside it
    /// installs, probes and rolls back all the same, but says nothing.
    fn report(&mut self, id: ReleaseId, status: HealthStatus) {
        let now = self.now;
        let Some(t) = self.releases.get_mut(&id) else {
            return;
        };
        if !reports_health(t.release.policy(), &id, &self.id, self.config.pin) {
            return;
        }
        // Never below the clock in milliseconds: a node that restarted (its counter back at 0)
        // must still outrank the reports it sent before, or peers would drop its new ones as
        // replays and soon count it silent.
        t.seq = (t.seq + 1).max(now.as_millis());
        let report = HealthReport::new(self.id, id, t.wave, status, t.seq, now);
        let sh = sign_report(&self.key, report, self.config.cert.clone());
        self.outputs.push_back(Output::Broadcast {
            topic: TOPIC_HEALTH,
            data: Gossip::Health(sh.clone()).encode(),
        });
        // Our own report counts in our own ledger like anyone else's.
        self.on_health(None, &sh, false);
    }
}
