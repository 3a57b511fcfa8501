//! Retiring releases: what keeps a node's store from growing for as long as it
//! runs. A release the vendor prunes from the targets metadata can no longer be
//! verified or installed by anyone, so the node stops following it and has the
//! driver remove its chunks, chunk list, rollout record and staged artifact
//! ([`Output::Forget`]). A release whose install or rollback is under way is
//! retired once that action has finished, so the driver never removes files an
//! action is using. A removal cut short by a crash is redone at the next start:
//! the chunk list it left behind names a release trusted metadata no longer has.

use super::{Node, NodeEvent, Output};
use crate::id::ReleaseId;
use crate::rollout::RolloutState;

/// Longest wait between retiring a release and forgetting it, for the chunk lists of
/// releases being fetched to arrive (see [`Node::retire_unlisted`]): ten minutes.
pub const RETIRE_WAIT_MS: u64 = 10 * 60 * 1000;

impl Node {
    /// Marks the tracked releases for a check against trusted metadata on the next step.
    pub(super) fn note_targets_changed(&mut self) {
        self.retire_pending = true;
    }

    /// Retires every tracked release trusted metadata no longer lists, except those
    /// with an install or rollback in flight (looked at again on a later step), and
    /// forgets retired releases whose chunks can be told apart from the ones still needed.
    pub(super) fn retire_unlisted(&mut self) {
        if self.retire_pending {
            self.retire_pending = false;
            let unlisted: Vec<ReleaseId> = self
                .releases
                .keys()
                .filter(|id| self.trust.release(id).is_none())
                .copied()
                .collect();
            for id in unlisted {
                let busy = self.releases.get(&id).is_some_and(|t| {
                    matches!(
                        t.state,
                        RolloutState::Installing { .. } | RolloutState::RollingBack { .. }
                    )
                });
                if busy {
                    self.retire_pending = true;
                    continue;
                }
                if let Some(t) = self.releases.remove(&id) {
                    let until = self.now.plus_millis(RETIRE_WAIT_MS);
                    self.retiring.insert(id, (t.list, until));
                }
                self.early_directives.remove(&id);
                self.event(NodeEvent::Retired { release: id });
            }
        }
        self.forget_retired();
    }

    /// Emits [`Output::Forget`] for retired releases once no followed release is still
    /// waiting for its chunk list while it fetches (that list may share chunks with
    /// the retired one: an upgrade's unchanged part), or [`RETIRE_WAIT_MS`] after
    /// retirement at the latest.
    fn forget_retired(&mut self) {
        if self.retiring.is_empty() {
            return;
        }
        let waiting = self
            .releases
            .values()
            .any(|t| t.list.is_none() && self.wants_content(t));
        let now = self.now;
        let due: Vec<ReleaseId> = self
            .retiring
            .iter()
            .filter(|(_, (_, until))| !waiting || now >= *until)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            if let Some((list, _)) = self.retiring.remove(&id) {
                self.unhold_unshared(list.as_ref());
            }
            self.outputs.push_back(Output::Forget { release: id });
        }
    }

    /// When the next retired release is forgotten at the latest.
    pub(super) fn next_forget(&self) -> Option<crate::time::Timestamp> {
        self.retiring.values().map(|(_, until)| *until).min()
    }

    /// Drops from the held set the chunks of a retired release's `list` that no followed
    /// release's list names: the driver removes them from its store ([`Output::Forget`]).
    pub(super) fn unhold_unshared(&mut self, list: Option<&crate::chunk::ChunkList>) {
        let Some(list) = list else {
            return;
        };
        let needed: std::collections::HashSet<&crate::chunk::ChunkHash> = self
            .releases
            .values()
            .filter_map(|t| t.list.as_ref())
            .flat_map(|l| l.chunks.iter().map(|c| &c.hash))
            .collect();
        for c in &list.chunks {
            if !needed.contains(&c.hash) {
                self.held.remove(&c.hash);
            }
        }
    }

    /// Whether stored state of release `id` found at start-up (a chunk list, a rollout
    /// record) is a leftover to forget: trusted metadata has a targets document and
    /// does not list the release. Without targets nothing is known, so nothing is forgotten.
    pub(super) fn is_leftover(&self, id: &ReleaseId) -> bool {
        self.trust.versions().targets.is_some() && self.trust.release(id).is_none()
    }

    /// Forgets a leftover found at start-up (see [`Node::is_leftover`]).
    pub(super) fn forget_leftover(&mut self, id: ReleaseId) {
        self.outputs.push_back(Output::Forget { release: id });
        self.event(NodeEvent::Retired { release: id });
    }
}
