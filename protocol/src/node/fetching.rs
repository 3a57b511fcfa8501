//! Getting a release's bytes: metadata from peers, availability, the chunk
//! list, chunk requests through the scheduler, verification and storing.

use super::{Node, NodeEvent, NodeRole, Output, Pending, Probe, Tracked};
use crate::chunk::{verify_chunk, ChunkHash, ChunkList};
use crate::fetch::{Bitfield, Download};
use crate::health::directive::DirectiveLog;
use crate::health::ledger::Ledger;
use crate::id::{NodeId, ReleaseId};
use crate::limits::MAX_RELEASES;
use crate::release::Release;
use crate::rollout::{RolloutEvent, RolloutState};
use crate::wave::wave_of;
use crate::wire::{Gossip, MetadataBundle, Request, Response};
use serde_bytes::ByteBuf;
use std::collections::{BTreeSet, HashMap};

impl Node {
    pub(super) fn on_peer_connected(&mut self, peer: NodeId) {
        if self.book.is_banned(&peer) || peer == self.id {
            return;
        }
        if !self.peers.insert(peer) {
            return;
        }
        // A newcomer may have missed gossip: ask for metadata, tell what we hold.
        self.new_request(peer, Pending::Metadata, Request::Metadata);
        let ids: Vec<ReleaseId> = self.releases.keys().copied().collect();
        for id in ids {
            self.send_have(peer, id);
            self.ask_halt(peer, id);
        }
    }

    pub(super) fn on_peer_disconnected(&mut self, peer: NodeId) {
        self.peers.remove(&peer);
        for t in self.releases.values_mut() {
            if let Some(d) = t.download.as_mut() {
                d.remove_peer(&peer);
            }
            t.sources.remove(&peer);
        }
        let failed: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, (p, _, _))| *p == peer)
            .map(|(id, _)| *id)
            .collect();
        for id in failed {
            self.on_request_failed(id);
        }
        self.serving.forget_peer(&peer);
    }

    /// Applies a metadata bundle; returns whether it changed anything. `announce` broadcasts a
    /// changed bundle: for local sources and for bundles a peer answered with (a node that learned
    /// something by asking tells the mesh; gossip deduplicates by content, so many nodes announcing
    /// the same bundle cost one message each). Bundles that came by gossip are forwarded by the
    /// driver after an Accept verdict instead.
    pub(super) fn apply_metadata(
        &mut self,
        bundle: &MetadataBundle,
        announce: bool,
    ) -> Result<bool, crate::metadata::trust::BundleError> {
        let outcome = self.trust.apply_bundle(bundle, self.now)?;
        if !outcome.changed {
            return Ok(false);
        }
        self.fleet = super::lifecycle::fleet_keys(&self.trust);
        self.note_targets_changed();
        self.outputs
            .push_back(Output::StoreTrust(self.trust.stored()));
        for release in outcome.new_releases {
            self.track(release);
        }
        if announce {
            self.outputs.push_back(Output::Broadcast {
                topic: crate::wire::TOPIC_METADATA,
                data: Gossip::Metadata(self.trust.bundle()).encode(),
            });
        }
        Ok(true)
    }

    pub(super) fn track(&mut self, release: Release) {
        if self.releases.contains_key(&release.id) {
            return;
        }
        if self.releases.len() >= MAX_RELEASES {
            self.event(NodeEvent::Refused {
                from: None,
                reason: format!(
                    "release {} not followed: already following {MAX_RELEASES} releases",
                    release.id
                ),
            });
            return;
        }
        let wave = wave_of(release.policy(), &release.id, &self.id, self.config.pin);
        let id = release.id;
        let ledger = Ledger::new(release.id);
        self.releases.insert(
            id,
            Tracked {
                release,
                state: RolloutState::Discovered,
                wave: u32::try_from(wave).unwrap_or(u32::MAX),
                list: None,
                list_bytes: None,
                positions: HashMap::new(),
                stored: None,
                download: None,
                list_request: None,
                sources: BTreeSet::new(),
                ledger,
                directives: DirectiveLog::new(id),
                directive_bytes: None,
                halt: None,
                probe: Probe::Off,
                seq: 0,
                have_dirty: false,
                gate_check_at: None,
                halt_announced: false,
                last_wave_open_at: None,
                own_wave_passed: false,
                silence_check: None,
                probed_healthy: false,
                sync_next: crate::time::Timestamp(0),
                election: crate::fetch::WanElection::default(),
                rank: super::site::RankCache::default(),
            },
        );
        self.event(NodeEvent::ReleaseDiscovered {
            release: id,
            wave: u32::try_from(wave).unwrap_or(u32::MAX),
        });
        if let Some(bytes) = self.early_directives.remove(&id) {
            // Verified again: it may have expired while we waited.
            let _ = self.on_directive(&bytes, false);
        }
        let peers: Vec<NodeId> = self.peers.iter().copied().collect();
        for p in peers {
            self.send_have(p, id);
            self.ask_halt(p, id);
        }
    }

    /// Tells `peer` what we hold of `release` (an empty bitfield if we have no list yet);
    /// its answer tells us what it holds.
    pub(super) fn send_have(&mut self, peer: NodeId, release: ReleaseId) {
        let Some(t) = self.releases.get(&release) else {
            return;
        };
        let bitfield = t.stored.as_ref().map(|b| b.to_bytes()).unwrap_or_default();
        self.new_request(
            peer,
            Pending::Have(release),
            Request::Have {
                release,
                bitfield: ByteBuf::from(bitfield),
            },
        );
    }

    /// Records a peer's availability for a release. Returns false if the bitfield is malformed.
    pub(super) fn peer_availability(
        &mut self,
        peer: NodeId,
        release: ReleaseId,
        bits: &[u8],
    ) -> bool {
        let Some(t) = self.releases.get_mut(&release) else {
            return true;
        };
        if bits.is_empty() {
            return true;
        }
        let Some(list) = t.list.as_ref() else {
            // Without our list we cannot check the length; the peer is at least a list source.
            t.sources.insert(peer);
            return true;
        };
        let n = u32::try_from(list.chunks.len()).unwrap_or(u32::MAX);
        match Bitfield::from_bytes(bits, n) {
            Ok(b) => {
                let count = b.count();
                if count > 0 {
                    t.sources.insert(peer);
                }
                let mut grew = false;
                if let Some(d) = t.download.as_mut() {
                    let before = d.peer_have(&peer).map_or(0, |h| h.count());
                    grew = count > before;
                    d.set_peer_have(peer, b);
                }
                if grew {
                    self.lan_progress(&release, &peer, true);
                }
                true
            }
            Err(_) => false,
        }
    }

    pub(super) fn on_response(&mut self, from: NodeId, request_id: u64, data: &[u8]) {
        let Some((to, pending, _)) = self.pending.remove(&request_id) else {
            return; // late or unsolicited: ignore
        };
        if to != from {
            return;
        }
        let response = match Response::decode(data) {
            Ok(r) => r,
            Err(e) => {
                self.event(NodeEvent::Refused {
                    from: Some(from),
                    reason: e.to_string(),
                });
                self.fail_pending(from, pending);
                return;
            }
        };
        match (pending, response) {
            (Pending::Metadata, Response::Metadata(bundle)) => {
                if let Err(e) = self.apply_metadata(&bundle, true) {
                    if !e.is_stale() {
                        self.event(NodeEvent::Refused {
                            from: Some(from),
                            reason: e.to_string(),
                        });
                    }
                }
            }
            (Pending::Have(release), Response::Have { bitfield }) => {
                if !self.peer_availability(from, release, &bitfield) {
                    self.event(NodeEvent::Refused {
                        from: Some(from),
                        reason: format!("availability bitfield for {release} has the wrong length"),
                    });
                }
            }
            (Pending::ChunkList(release), Response::ChunkList(bytes)) => {
                self.on_chunk_list(release, Some(from), bytes.into_vec());
            }
            (Pending::Chunk { release, index }, Response::Chunk(bytes)) => {
                self.on_chunk(from, release, index, bytes.into_vec());
            }
            (Pending::Health(release), Response::Health(reports)) => {
                self.on_health_sync(from, release, reports);
            }
            (Pending::Halt(release), Response::Halt(ev)) => self.on_halt_answer(from, release, ev),
            (Pending::Halt(release), Response::Directive(bytes)) => {
                self.on_directive_answer(release, &bytes);
            }
            (Pending::Chunk { release, index }, Response::Busy) => {
                let now = self.now;
                if let Some(d) = self
                    .releases
                    .get_mut(&release)
                    .and_then(|t| t.download.as_mut())
                {
                    d.on_busy(&from, index, now);
                }
            }
            (pending, _) => self.fail_pending(from, pending),
        }
    }

    pub(super) fn on_request_failed(&mut self, request_id: u64) {
        if let Some((peer, pending, _)) = self.pending.remove(&request_id) {
            self.fail_pending(peer, pending);
        }
    }

    fn fail_pending(&mut self, peer: NodeId, pending: Pending) {
        match pending {
            Pending::Metadata | Pending::Have(_) | Pending::Halt(_) => {}
            // A gate waiting on this answer is decided now, without it.
            Pending::Health(release) => self.check_gates_now(&release),
            Pending::ChunkList(release) => {
                if let Some(t) = self.releases.get_mut(&release) {
                    t.list_request = None;
                    t.sources.remove(&peer);
                }
            }
            Pending::Chunk { release, index } => {
                if let Some(d) = self
                    .releases
                    .get_mut(&release)
                    .and_then(|t| t.download.as_mut())
                {
                    d.on_request_failed(&peer, index);
                }
            }
        }
    }

    pub(super) fn expire_requests(&mut self) {
        let now = self.now;
        let expired: Vec<(u64, bool)> = self
            .pending
            .iter()
            .filter(|(_, (_, _, deadline))| *deadline <= now)
            .map(|(id, (_, p, _))| (*id, matches!(p, Pending::Chunk { .. })))
            .collect();
        for (id, is_chunk) in expired {
            if is_chunk {
                // The scheduler times chunk requests out itself (with strikes); only forget the handle.
                self.pending.remove(&id);
            } else {
                self.on_request_failed(id);
            }
        }
        for t in self.releases.values_mut() {
            if let Some(d) = t.download.as_mut() {
                // Expired requests become requestable again inside the scheduler.
                d.poll_timeouts(now);
            }
        }
    }

    pub(super) fn wants_content(&self, t: &Tracked) -> bool {
        if t.state.is_stopped() {
            return false;
        }
        match self.config.role {
            NodeRole::Seeder => true,
            NodeRole::Endpoint => {
                self.config.prefetch
                    || self.now >= t.release.policy().scheduled_open(t.wave as usize)
            }
        }
    }

    pub(super) fn drive_downloads(&mut self) {
        let ids: Vec<ReleaseId> = self.releases.keys().copied().collect();
        for id in ids {
            let Some(t) = self.releases.get(&id) else {
                continue;
            };
            if !self.wants_content(t) {
                continue;
            }
            if matches!(t.state, RolloutState::Discovered) {
                self.transition(&id, RolloutEvent::FetchStarted);
            }
            self.request_list_if_needed(id);
            self.request_chunks(id);
        }
    }

    fn request_list_if_needed(&mut self, id: ReleaseId) {
        let now = self.now;
        let Some(t) = self.releases.get_mut(&id) else {
            return;
        };
        if t.list.is_some() || t.list_request.is_some() || t.sources.is_empty() {
            return;
        }
        // Ask a random source so that one slow peer does not serve every list;
        // a LAN source if there is one, so that lists too cross the WAN rarely.
        let all: Vec<NodeId> = t.sources.iter().copied().collect();
        let lan: Vec<NodeId> = all.iter().filter(|p| self.is_lan(p)).copied().collect();
        let sources: Vec<NodeId> = if lan.is_empty() { all } else { lan };
        let sources: Vec<NodeId> = sources
            .into_iter()
            .filter(|p| self.may_fetch_from(p))
            .collect();
        if sources.is_empty() {
            return;
        }
        let pick = sources[(self.rng_index(sources.len())) % sources.len()];
        let rid = self.new_request(
            pick,
            Pending::ChunkList(id),
            Request::ChunkList { release: id },
        );
        if let Some(t) = self.releases.get_mut(&id) {
            t.list_request = Some((rid, now.plus_millis(crate::limits::REQUEST_TIMEOUT_MS)));
        }
    }

    fn rng_index(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.random_u64() % n as u64) as usize
        }
    }

    fn request_chunks(&mut self, id: ReleaseId) {
        let has_download = self
            .releases
            .get(&id)
            .is_some_and(|t| t.download.as_ref().is_some_and(|d| !d.is_complete()));
        if !has_download {
            return;
        }
        let filter = self.site_filter(id);
        if let Some(d) = self.releases.get_mut(&id).and_then(|t| t.download.as_mut()) {
            d.set_site_filter(filter);
        }
        let now = self.now;
        let book = &self.book;
        let Some(d) = self.releases.get_mut(&id).and_then(|t| t.download.as_mut()) else {
            return;
        };
        let wanted = d.next_requests(now, &|p: &NodeId| book.is_banned(p));
        for (peer, index) in wanted {
            self.new_request(
                peer,
                Pending::Chunk { release: id, index },
                Request::Chunk { release: id, index },
            );
        }
    }

    /// A chunk list from a peer (`from`) or a local source (`None`).
    pub(super) fn on_chunk_list(&mut self, id: ReleaseId, from: Option<NodeId>, bytes: Vec<u8>) {
        let Some(t) = self.releases.get_mut(&id) else {
            return;
        };
        t.list_request = None;
        if t.list.is_some() {
            return;
        }
        let list = match ChunkList::decode_for(&t.release, &bytes) {
            Ok(l) => l,
            Err(e) => {
                let reason = format!("chunk list for {id}: {e}");
                if let Some(peer) = from {
                    // The list is covered by the signed release: a wrong one is a lie, not an accident.
                    self.ban(peer, reason);
                } else {
                    self.event(NodeEvent::Refused { from: None, reason });
                }
                return;
            }
        };
        let n = u32::try_from(list.chunks.len()).unwrap_or(u32::MAX);
        let mut stored = Bitfield::new(n);
        for (i, c) in list.chunks.iter().enumerate() {
            if self.held.contains(&c.hash) {
                stored.set(i as u32);
            }
        }
        let seed = self.random_u64();
        let mut download = Download::new(&list, stored.clone(), seed);
        download.set_byte_window(self.config.bandwidth.download_window());
        let Some(t) = self.releases.get_mut(&id) else {
            return;
        };
        let mut positions: HashMap<ChunkHash, Vec<u32>> = HashMap::new();
        for (i, c) in list.chunks.iter().enumerate() {
            positions.entry(c.hash).or_default().push(i as u32);
        }
        t.positions = positions;
        t.list = Some(list);
        t.list_bytes = Some(bytes.clone());
        t.stored = Some(stored);
        t.download = Some(download);
        t.have_dirty = true;
        self.outputs.push_back(Output::StoreChunkList {
            release: id,
            data: bytes,
        });
        // Learn everyone's availability now that bitfield lengths can be checked.
        let peers: Vec<NodeId> = self.peers.iter().copied().collect();
        for p in peers {
            self.send_have(p, id);
        }
        self.check_complete(id);
    }

    pub(super) fn on_local_chunk_list(&mut self, id: ReleaseId, data: Vec<u8>) {
        if !self.releases.contains_key(&id) {
            if self.is_leftover(&id) {
                // Stored before the vendor pruned the release, or a removal a crash cut short.
                // Its chunks leave the held set as the driver removes them (a chunk another
                // list names and the driver keeps is at worst fetched again, never missed).
                let list = crate::chunk::ChunkList::decode(&data).ok();
                self.unhold_unshared(list.as_ref());
                self.forget_leftover(id);
                return;
            }
            self.event(NodeEvent::Refused {
                from: None,
                reason: format!("chunk list for {id}: the release is not in trusted metadata"),
            });
            return;
        }
        self.on_chunk_list(id, None, data);
    }

    fn on_chunk(&mut self, from: NodeId, id: ReleaseId, index: u32, bytes: Vec<u8>) {
        let Some(t) = self.releases.get_mut(&id) else {
            return;
        };
        let (Some(list), Some(d)) = (t.list.as_ref(), t.download.as_mut()) else {
            return;
        };
        let Some(entry) = list.chunks.get(index as usize).copied() else {
            return;
        };
        match verify_chunk(&entry, &bytes) {
            Ok(()) => {
                let duplicates = d.on_chunk_verified(&from, index);
                self.forget_requests(id, &duplicates);
                self.lan_progress(&id, &from, false);
                if !self.held.contains(&entry.hash) {
                    self.outputs.push_back(Output::StoreChunk {
                        hash: entry.hash,
                        data: bytes,
                    });
                }
            }
            Err(e) => {
                let dropped = d.on_chunk_corrupt(&from, index);
                self.forget_requests(id, &dropped);
                self.event(NodeEvent::ChunkRejected {
                    peer: from,
                    release: id,
                    index,
                });
                self.ban(from, format!("sent a corrupt chunk {index} of {id}: {e}"));
            }
        }
    }

    pub(super) fn on_chunk_stored(&mut self, hash: ChunkHash) {
        self.held.insert(hash);
        let ids: Vec<ReleaseId> = self.releases.keys().copied().collect();
        for id in ids {
            let Some(t) = self.releases.get_mut(&id) else {
                continue;
            };
            let indices = t.indices_of(&hash);
            let Some(stored) = t.stored.as_mut() else {
                continue;
            };
            let mut changed = false;
            let mut pointless = Vec::new();
            for i in indices {
                if stored.set(i) {
                    if let Some(d) = t.download.as_mut() {
                        pointless.extend(d.mark_held(i));
                    }
                    changed = true;
                }
            }
            if changed {
                t.have_dirty = true;
                self.forget_requests(id, &pointless);
                self.check_complete(id);
            }
        }
    }

    /// Forgets our handles for chunk requests the scheduler no longer wants answered;
    /// a late answer to one is then ignored.
    fn forget_requests(&mut self, release: ReleaseId, requests: &[(NodeId, u32)]) {
        if requests.is_empty() {
            return;
        }
        self.pending.retain(|_, (peer, pending, _)| {
            !matches!(pending, Pending::Chunk { release: r, index }
                if *r == release && requests.contains(&(*peer, *index)))
        });
    }

    pub(super) fn on_chunk_store_failed(&mut self, hash: ChunkHash, reason: String) {
        // The chunk was verified but not kept: make it requestable again.
        for t in self.releases.values_mut() {
            let indices = t.indices_of(&hash);
            if let Some(d) = t.download.as_mut() {
                for i in indices {
                    d.mark_missing(i);
                }
            }
        }
        self.event(NodeEvent::Refused {
            from: None,
            reason: format!("could not store chunk {}: {reason}", hex::encode(hash)),
        });
    }

    pub(super) fn on_chunk_lost(&mut self, hash: ChunkHash) {
        self.forget_chunk(hash);
        self.event(NodeEvent::StoreCorrupt { hash });
        // A release that was being assembled goes back to fetching what it lost.
        let staging: Vec<ReleaseId> = self
            .releases
            .iter()
            .filter(|(_, t)| {
                matches!(t.state, RolloutState::Staging)
                    && t.stored.as_ref().is_some_and(|s| !s.is_full())
            })
            .map(|(id, _)| *id)
            .collect();
        for id in staging {
            self.transition(&id, RolloutEvent::ArtifactRejected);
        }
    }

    pub(super) fn on_chunks_held(&mut self, hashes: Vec<ChunkHash>) {
        for h in hashes {
            self.on_chunk_stored(h);
        }
    }

    pub(super) fn check_complete(&mut self, id: ReleaseId) {
        let Some(t) = self.releases.get(&id) else {
            return;
        };
        let complete = t.stored.as_ref().is_some_and(|s| s.is_full());
        if !complete || !matches!(t.state, RolloutState::Discovered | RolloutState::Fetching) {
            return;
        }
        if self.config.role == NodeRole::Seeder {
            // Seeders hold content to serve; they have nothing to stage or install.
            return;
        }
        let Some(list) = t.list.as_ref() else { return };
        let assemble = Output::Assemble {
            release: id,
            target_path: t.release.target_path.clone(),
            length: t.release.length,
            blake3: t.release.blake3,
            chunks: list.chunks.iter().map(|c| c.hash).collect(),
        };
        if self.transition(&id, RolloutEvent::ChunksComplete) {
            self.outputs.push_back(assemble);
        }
    }

    pub(super) fn on_artifact_staged(&mut self, id: ReleaseId, result: Result<(), String>) {
        match result {
            Ok(()) => {
                self.transition(&id, RolloutEvent::ArtifactStaged);
            }
            Err(detail) => {
                // Every chunk verified against the signed list, yet the whole does not match the
                // signed hash: the release itself is inconsistent (or our store is damaged). Stop.
                self.latch_halt(
                    id,
                    crate::rollout::HaltReason::LocalFailure {
                        detail: format!("assembled artifact rejected: {detail}"),
                    },
                );
            }
        }
    }

    /// Sends our availability to every peer for releases whose stored set changed, at most once per interval.
    pub(super) fn flush_have(&mut self) {
        if self.now < self.next_have_flush {
            return;
        }
        let dirty: Vec<ReleaseId> = self
            .releases
            .iter()
            .filter(|(_, t)| t.have_dirty)
            .map(|(id, _)| *id)
            .collect();
        if dirty.is_empty() {
            return;
        }
        self.next_have_flush = self.now.plus_millis(super::HAVE_FLUSH_MS);
        let peers: Vec<NodeId> = self.peers.iter().copied().collect();
        for id in dirty {
            if let Some(t) = self.releases.get_mut(&id) {
                t.have_dirty = false;
            }
            for p in &peers {
                self.send_have(*p, id);
            }
        }
    }
}
