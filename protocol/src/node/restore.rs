//! Surviving restarts: once a node has started installing a release, every
//! change of its install state or halt is handed to the driver as a
//! [`RolloutRecord`] to keep; fed back at start-up, it puts the release where
//! it was, so a node that reboots after an install keeps baking instead of
//! installing again, and one that rolled back or halted stays stopped.

use super::{Node, NodeEvent, Output, Probe};
use crate::health::directive::Directive;
use crate::id::ReleaseId;
use crate::rollout::{RolloutEvent, RolloutRecord, RolloutState};
use crate::time::Timestamp;

impl Node {
    /// Emits the durable record of a release whose install has started or which is halted.
    pub(super) fn record_rollout(&mut self, id: &ReleaseId) {
        let Some(t) = self.releases.get(id) else {
            return;
        };
        // Before an install starts, everything is derived again from stored chunks and gossip;
        // but once a directive was taken, a later record must also replace a halted one (a
        // resume must survive a restart too).
        let relevant = t.state.is_installed()
            || t.state.is_stopped()
            || t.halt.is_some()
            || t.directives.latest().is_some();
        if !relevant {
            return;
        }
        let record = RolloutRecord {
            state: t.state.clone(),
            halt: t.halt.clone(),
            seq: t.seq,
            directive: t.directives.latest().map(|d| (d.action, d.seq)),
        };
        self.outputs.push_back(Output::StoreRollout {
            release: *id,
            data: record.encode(),
        });
    }

    pub(super) fn on_rollout_restored(&mut self, id: ReleaseId, data: &[u8]) {
        let record = match RolloutRecord::decode(data) {
            Ok(r) => r,
            Err(e) => {
                self.event(NodeEvent::Refused {
                    from: None,
                    reason: format!("stored rollout record of {id}: {e}"),
                });
                return;
            }
        };
        let now = self.now;
        if !self.releases.contains_key(&id) && self.is_leftover(&id) {
            self.forget_leftover(id); // no longer trusted: nothing to resume
            return;
        }
        let Some(t) = self.releases.get_mut(&id) else {
            return; // trusted but not followed (too many releases)
        };
        t.seq = t.seq.max(record.seq);
        if let Some((action, seq)) = record.directive {
            // Only its seq matters from now on: it ranks the directives that may follow.
            let _ = t.directives.accept(&Directive {
                action,
                release: id,
                seq,
                expires: Timestamp(0),
                reason: String::new(),
            });
        }
        if t.halt.is_none() {
            if let Some(reason) = record.halt.clone() {
                t.halt = Some(reason);
                // Whoever decided this halt spread it then; do not announce it again.
                t.halt_announced = true;
            }
        }
        let state = match record.state {
            // Stopped mid-install: whether `current` switched is unknown. Halted, treat it as
            // installed so it is rolled back; otherwise install again (installs are idempotent).
            RolloutState::Installing { since } if t.halt.is_some() => RolloutState::Baking {
                installed_at: since,
            },
            RolloutState::Installing { .. } => return,
            other => other,
        };
        let rolling_back = matches!(state, RolloutState::RollingBack { .. });
        let baking = matches!(state, RolloutState::Baking { .. });
        if !self.transition(&id, RolloutEvent::Restore(state)) {
            return;
        }
        if let Some(t) = self.releases.get_mut(&id) {
            if baking {
                // Probe at once: the first report after a restart says how the node came back.
                t.probe = Probe::DueAt(now);
            }
            // A stopped or installed node fetches nothing more for this release.
            t.download = None;
        }
        if rolling_back {
            self.outputs.push_back(Output::Rollback { release: id });
        }
    }
}
