//! Health sync: how a node that missed a wave's gossip (it joined late, was
//! offline, or restarted) still judges that wave's gate. Nodes stop
//! heartbeating once their wave has passed (their final report is `baked`),
//! so nothing more about a passed wave travels by gossip; a node whose
//! ledger cannot decide a wave that has already baked by the schedule asks
//! one peer at a time for that peer's latest reports of the wave
//! (`Request::Health`) and verifies each one as if it had arrived by gossip.

use super::{Node, NodeRole, Pending, Tracked};
use crate::health::gate::{evaluate, GateState};
use crate::id::{NodeId, ReleaseId};
use crate::limits::{MAX_EVIDENCE_BYTES, MAX_EVIDENCE_REPORTS};
use crate::wire::{Request, Response, SignedHealth};

/// Framing allowance per report in a health response, as for halt evidence.
const PER_REPORT_OVERHEAD: usize = 8;
/// Shortest wait between two sync requests for one release, in milliseconds.
const MIN_SYNC_INTERVAL_MS: u64 = 1_000;

impl Node {
    /// The first wave before this node's own whose gate its ledger cannot decide although
    /// the wave has baked by the schedule: the wave to ask a peer about.
    fn wave_to_sync(&self, t: &Tracked) -> Option<u32> {
        if self.config.role != NodeRole::Endpoint || t.halt.is_some() || t.state.is_stopped() {
            return None;
        }
        let policy = t.release.policy();
        (0..t.wave).find(|&w| {
            self.now >= policy.scheduled_open(w as usize + 1)
                && evaluate(&t.ledger, &t.release, w, self.now).gate == GateState::Pending
        })
    }

    /// Sends at most one health sync request per release, to a peer chosen at random.
    pub(super) fn drive_health_sync(&mut self) {
        if self.peers.is_empty() {
            return;
        }
        let ids: Vec<ReleaseId> = self.releases.keys().copied().collect();
        for id in ids {
            let Some(t) = self.releases.get(&id) else {
                continue;
            };
            if t.sync_next > self.now || self.sync_outstanding(&id) {
                continue;
            }
            // Looked at once per interval, not on every input: deciding walks the ledger.
            let every = t
                .release
                .policy()
                .health
                .heartbeat_seconds
                .saturating_mul(1000)
                .max(MIN_SYNC_INTERVAL_MS);
            let next = self.now.plus_millis(every);
            let wave = self.wave_to_sync(t);
            if let Some(t) = self.releases.get_mut(&id) {
                t.sync_next = next;
            }
            if let Some(wave) = wave {
                self.request_health_sync(id, wave);
            }
        }
    }

    /// Asks a peer chosen at random for its reports of `wave` of release `id`.
    pub(super) fn request_health_sync(&mut self, id: ReleaseId, wave: u32) {
        if self.peers.is_empty() {
            return;
        }
        let pick = (self.random_u64() % self.peers.len() as u64) as usize;
        let Some(peer) = self.peers.iter().nth(pick).copied() else {
            return;
        };
        self.new_request(
            peer,
            Pending::Health(id),
            Request::Health { release: id, wave },
        );
    }

    /// Whether a health sync request for release `id` awaits its answer.
    pub(super) fn sync_outstanding(&self, id: &ReleaseId) -> bool {
        self.pending
            .values()
            .any(|(_, p, _)| matches!(p, Pending::Health(r) if r == id))
    }

    /// The answer to `Request::Health`: the latest report of each node of the wave, in node
    /// order, as many as fit the evidence bounds.
    pub(super) fn health_answer(&self, release: &ReleaseId, wave: u32) -> Response {
        let Some(t) = self.releases.get(release) else {
            return Response::NotFound;
        };
        let mut reports: Vec<SignedHealth> = Vec::new();
        let mut bytes = 0;
        for (_, record) in t.ledger.wave(wave) {
            let s = &record.signed;
            let size =
                s.report.len() + s.cert.as_ref().map_or(0, |c| c.len()) + PER_REPORT_OVERHEAD;
            if reports.len() == MAX_EVIDENCE_REPORTS || bytes + size > MAX_EVIDENCE_BYTES {
                break;
            }
            bytes += size;
            reports.push(s.clone());
        }
        if reports.is_empty() {
            return Response::NotFound;
        }
        Response::Health(reports)
    }

    /// Takes the reports of a health response, each verified on its own (a peer
    /// cannot make us accept what we would refuse from gossip).
    pub(super) fn on_health_sync(
        &mut self,
        from: NodeId,
        release: ReleaseId,
        reports: Vec<SignedHealth>,
    ) {
        for sh in &reports {
            // Refusals are reported as events by `on_health`; the rest still count. Not
            // fresh: these may be hours old, so their times say nothing about our clock.
            let _ = self.on_health(Some(from), sh, false);
        }
        // A gate waiting on this answer (see `check_gates`) is decided now, changed or not.
        self.check_gates_now(&release);
    }

    /// Has the gates of `release` evaluated on the next step.
    pub(super) fn check_gates_now(&mut self, release: &ReleaseId) {
        let now = self.now;
        if let Some(t) = self.releases.get_mut(release) {
            t.gate_check_at = Some(t.gate_check_at.map_or(now, |at| at.min(now)));
        }
    }
}
