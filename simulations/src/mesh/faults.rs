//! Things going wrong on purpose: machines dying, nodes leaving and coming
//! back (restarting from what they stored), sites cut off and healed, and a
//! release carried into an isolated site on removable media.

use super::{Event, InvariantViolation, Mesh};
use waveguard_protocol::chunk::ChunkHash;
use waveguard_protocol::metadata::trust::TrustedState;
use waveguard_protocol::node::{Input, Node};
use waveguard_protocol::{ReleaseId, Timestamp};

impl Mesh {
    /// Node `i` goes away at `at` and comes back (restarting from its store) at `back`.
    pub fn schedule_leave(&mut self, i: usize, at: Timestamp, back: Timestamp) {
        self.queue.push(at, Event::Leave { node: i });
        self.queue.push(back.max(at), Event::Join { node: i });
    }

    /// Site `site` is cut off from every other site from `from` until `until` (`None`: for good).
    pub fn schedule_cut(&mut self, site: usize, from: Timestamp, until: Option<Timestamp>) {
        self.queue.push(from, Event::Cut { site });
        if let Some(u) = until {
            self.queue.push(u.max(from), Event::Heal { site });
        }
    }

    /// Node `i` imports everything the seeder published, as from a bundle, at `at`.
    pub fn schedule_import(&mut self, i: usize, at: Timestamp) {
        self.queue.push(at, Event::Import { node: i });
    }

    /// Drops every live connection of node `i` (it died or left).
    pub(super) fn take_down(&mut self, i: usize) {
        let neighbours: Vec<usize> = self.nodes[i].neighbours.iter().copied().collect();
        for j in neighbours {
            self.link_down(i, j);
        }
    }

    pub(super) fn leave(&mut self, i: usize) -> Result<(), InvariantViolation> {
        if self.nodes[i].dead || self.nodes[i].offline {
            return Ok(());
        }
        self.trace_event(i, "leave");
        self.stats.count("churn_leaves");
        self.take_down(i);
        self.nodes[i].offline = true;
        Ok(())
    }

    pub(super) fn join(&mut self, i: usize) -> Result<(), InvariantViolation> {
        if self.nodes[i].dead || !self.nodes[i].offline {
            return Ok(());
        }
        self.trace_event(i, "join");
        self.nodes[i].offline = false;
        if std::mem::take(&mut self.nodes[i].import_pending) {
            self.queue.push(self.now, Event::Import { node: i });
        }
        if self.nodes[i].saved_trust.is_some() {
            if let Err(what) = self.restart(i) {
                return Err(self.violation(what));
            }
        } else {
            let neighbours: Vec<usize> = self.nodes[i].neighbours.iter().copied().collect();
            for j in neighbours {
                self.link_up(i, j);
            }
        }
        Ok(())
    }

    pub(super) fn set_cut(&mut self, site: usize, cut: bool) -> Result<(), InvariantViolation> {
        // Nothing to do for an unknown site or one already in that state.
        if self.cut.get(site) != Some(&!cut) {
            return Ok(());
        }
        self.trace.update(if cut { b"cut" } else { b"heal" });
        self.trace.update(&(site as u64).to_le_bytes());
        self.stats.count(if cut { "partitions" } else { "heals" });
        let mut members: Vec<usize> = self.topology.endpoints_of(site).collect();
        if self.topology.seeder_site == site {
            members.push(0);
        }
        let mut crossing = Vec::new();
        for a in members {
            for &b in &self.nodes[a].neighbours {
                if self.topology.site_of(b) != site {
                    crossing.push((a, b));
                }
            }
        }
        if cut {
            for &(a, b) in &crossing {
                if self.reachable(a, b) {
                    self.link_down(a, b);
                }
            }
            self.cut[site] = true;
        } else {
            self.cut[site] = false;
            for (a, b) in crossing {
                self.link_up(a, b);
            }
        }
        Ok(())
    }

    /// What a bundle import does: the chunks land in the node's store, then the
    /// engine hears of the metadata, the held chunks and the chunk list.
    pub(super) fn import(&mut self, i: usize) -> Result<(), InvariantViolation> {
        if self.nodes[i].dead {
            return Ok(());
        }
        if self.nodes[i].offline {
            // The media waits for the machine: it is imported when the node is back.
            self.nodes[i].import_pending = true;
            return Ok(());
        }
        self.trace_event(i, "import");
        self.stats.count("bundle_imports");
        let published = self.published.clone();
        for (bundle, release, list, hashes) in published {
            for h in &hashes {
                self.hold(i, *h);
                *self.nodes[i].writes.entry(*h).or_default() += 1;
            }
            self.feed(i, Input::Metadata(bundle))?;
            self.feed(i, Input::ChunksHeld(hashes))?;
            self.feed(
                i,
                Input::ChunkList {
                    release,
                    data: list,
                },
            )?;
        }
        Ok(())
    }

    /// Kills node `i` (as `kill -9` would) and starts it again from what it had made durable:
    /// its trusted metadata, chunk lists and chunk store. Its connections drop and come back.
    pub fn restart(&mut self, i: usize) -> Result<(), String> {
        let now = self.local_time(i, self.now);
        let n = &mut self.nodes[i];
        let trust = match &n.saved_trust {
            Some(stored) => TrustedState::from_stored(stored).map_err(|e| e.to_string())?,
            None => return Err(format!("node {i} never stored any trust")),
        };
        n.engine = Node::new(n.key.clone(), trust, n.node_config.clone(), now);
        n.next_wake = None;
        // Loads the old process asked for are answered to nobody.
        n.loading.clear();
        let mut held: Vec<ChunkHash> = n.store.iter().copied().collect();
        held.sort();
        let lists: Vec<(ReleaseId, Vec<u8>)> =
            n.saved_lists.iter().map(|(k, v)| (*k, v.clone())).collect();
        let rollouts: Vec<(ReleaseId, Vec<u8>)> = n
            .saved_rollouts
            .iter()
            .map(|(k, v)| (*k, v.clone()))
            .collect();
        let neighbours: Vec<usize> = n.neighbours.iter().copied().collect();
        // Replies still in flight to the old process are lost with it.
        self.routes.retain(|_, (requester, _, _)| *requester != i);
        if let Some(input) = self.site_peers_input(i) {
            self.queue.push(now, Event::Deliver { to: i, input });
        }
        self.queue.push(
            now,
            Event::Deliver {
                to: i,
                input: Input::ChunksHeld(held),
            },
        );
        for (release, data) in lists {
            self.queue.push(
                now,
                Event::Deliver {
                    to: i,
                    input: Input::ChunkList { release, data },
                },
            );
        }
        for (release, data) in rollouts {
            self.queue.push(
                now,
                Event::Deliver {
                    to: i,
                    input: Input::RolloutRestored { release, data },
                },
            );
        }
        for j in neighbours {
            if self.reachable(i, j) {
                self.link_down(i, j);
                self.link_up(i, j);
            }
        }
        Ok(())
    }
}
