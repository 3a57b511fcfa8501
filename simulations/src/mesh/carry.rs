//! Carrying out what an engine asks for: sending, storing, assembling,
//! installing, probing and rolling back, with the invariants checked as each
//! action happens.

use super::stats::Kind;
use super::{BadMode, Event, HaveLie, HealthLie, InstallRecord, InvariantViolation, Mesh, Payload};
use serde_bytes::ByteBuf;
use std::sync::Arc;
use waveguard_protocol::chunk::{hash, ChunkHash};
use waveguard_protocol::fetch::Bitfield;
use waveguard_protocol::health::report::{peek_release, sign_report, HealthReport, HealthStatus};
use waveguard_protocol::node::{Input, NodeEvent, Output};
use waveguard_protocol::wave::{wave_of, WavePin};
use waveguard_protocol::wire::{Gossip, Request, Response};
use waveguard_protocol::ReleaseId;

impl Mesh {
    pub(super) fn carry_out(&mut self, i: usize, out: Output) -> Result<(), InvariantViolation> {
        match out {
            Output::Broadcast { data, .. } => self.node_broadcast(i, data),
            Output::GossipVerdict {
                message_id,
                verdict,
            } => self.verdict(message_id, verdict),
            Output::SendRequest {
                to,
                request_id,
                data,
            } => {
                let Some(&j) = self.index.get(&to) else {
                    return Ok(());
                };
                let route = self.next_route;
                self.next_route += 1;
                let kind = Mesh::request_kind(&data);
                self.routes.insert(route, (i, request_id, kind));
                let data = self.have_lies(i, j, route, data);
                let from = self.nodes[i].engine.id();
                let input = Input::Request {
                    from,
                    request_id: route,
                    data: data.clone(),
                };
                let request_kind = if kind == Kind::Chunk {
                    Kind::ChunkRequest
                } else {
                    kind
                };
                self.send(i, j, data.len(), request_kind, input, Some((i, request_id)));
            }
            Output::Respond {
                request_id, data, ..
            } => {
                if let Some((requester, their_id, kind)) = self.routes.remove(&request_id) {
                    let health = matches!(kind, Kind::HealthSync | Kind::HaltSync);
                    if health && self.nodes[i].lie == Some(HealthLie::Withhold) {
                        // A withholder shares no health, by sync either: the asker times out.
                        self.stats.count("health_syncs_withheld");
                        self.fail_later(Some((requester, their_id)));
                        return Ok(());
                    }
                    let claimed = self.have_routes.remove(&request_id);
                    let data = if self.nodes[i].serves_corrupt && kind == Kind::Chunk {
                        self.stats.count("corrupt_chunks_served");
                        corrupt_chunk(data)
                    } else if let Some(lie) = self.nodes[i].have_lie {
                        match self.lie_in_answer(lie, kind, claimed, data) {
                            Some(data) => data,
                            None => return Ok(()),
                        }
                    } else {
                        data
                    };
                    let from = self.nodes[i].engine.id();
                    let len = data.len();
                    let input = match self.shared_chunk(kind, &data) {
                        Some(data) => Payload::Chunk {
                            from,
                            request_id: their_id,
                            data,
                        },
                        None => Payload::Input(Input::Response {
                            from,
                            request_id: their_id,
                            data,
                        }),
                    };
                    let on_loss = Some((requester, their_id));
                    self.send_payload(i, requester, len, kind, input, on_loss);
                }
            }
            Output::LoadChunk { token, hash: h, .. } => {
                self.nodes[i].loading.insert(token, h);
                let data = self.nodes[i]
                    .store
                    .contains(&h)
                    .then(|| self.content.get(&h).map(|b| b.to_vec()))
                    .flatten();
                self.queue.push(
                    self.now,
                    Event::Deliver {
                        to: i,
                        input: Input::ChunkLoaded { token, data },
                    },
                );
            }
            Output::StoreChunk { hash: h, data } => {
                self.stats.invariant_checks += 1;
                // Bytes equal to content already verified against `h` verify too; a
                // comparison is far cheaper than hashing again.
                let verifies = match self.content.get(&h) {
                    Some(known) => known[..] == data[..],
                    None => hash(&data) == h,
                };
                if !verifies {
                    return Err(self.violation(format!(
                        "node {i} was asked to store a chunk that does not match its hash"
                    )));
                }
                self.content
                    .entry(h)
                    .or_insert_with(|| std::sync::Arc::from(data));
                self.hold(i, h);
                *self.nodes[i].writes.entry(h).or_default() += 1;
                self.queue.push(
                    self.now,
                    Event::Deliver {
                        to: i,
                        input: Input::ChunkStored { hash: h },
                    },
                );
            }
            Output::Assemble {
                release,
                length,
                blake3: want,
                chunks,
                ..
            } => {
                let result = self.assemble(i, &chunks, length, want);
                if result.is_ok() {
                    self.nodes[i].staged.insert(release, want);
                }
                self.queue.push(
                    self.now,
                    Event::Deliver {
                        to: i,
                        input: Input::ArtifactStaged { release, result },
                    },
                );
            }
            Output::Install { release, .. } => {
                self.check_install(i, release)?;
                let at = self.later(self.config.install_ms);
                self.queue.push(
                    at,
                    Event::Deliver {
                        to: i,
                        input: Input::InstallFinished {
                            release,
                            result: Ok(()),
                        },
                    },
                );
                if self.hurt(i, &release) == Some(BadMode::Crash) {
                    // The install "succeeds", then the machine is gone: it reports once at most.
                    let die = self.later(self.config.install_ms + 1);
                    self.queue.push(die, Event::Crash { node: i });
                }
            }
            Output::RunProbe { release } => {
                let truly_healthy = self.hurt(i, &release).is_none();
                if self.nodes[i].probed.insert(release) {
                    if truly_healthy {
                        self.stats.healthy += 1;
                    } else {
                        self.count_failure();
                    }
                }
                let healthy = truly_healthy || self.nodes[i].lie == Some(HealthLie::Forge);
                let at = self.later(self.config.probe_ms);
                self.queue.push(
                    at,
                    Event::Deliver {
                        to: i,
                        input: Input::ProbeFinished { release, healthy },
                    },
                );
            }
            Output::Rollback { release } => {
                let at = self.later(self.config.install_ms);
                self.queue.push(
                    at,
                    Event::Deliver {
                        to: i,
                        input: Input::RollbackFinished {
                            release,
                            result: Ok(()),
                        },
                    },
                );
            }
            Output::Ban { peer, .. } => {
                if let Some(&j) = self.index.get(&peer) {
                    self.bans.push((i, j));
                    self.stats.count("bans");
                    if self.nodes[i].neighbours.remove(&j) {
                        self.nodes[j].neighbours.remove(&i);
                        self.link_down(i, j);
                    }
                }
            }
            Output::StoreTrust(stored) => self.nodes[i].saved_trust = Some(stored),
            Output::StoreRollout { release, data } => {
                self.nodes[i].saved_rollouts.insert(release, data);
            }
            Output::StoreChunkList { release, data } => {
                self.nodes[i].saved_lists.insert(release, data);
            }
            Output::Event(NodeEvent::Halted { release, .. }) => self.learned_halt(i, release),
            Output::Event(NodeEvent::ChunkRejected { peer, .. }) => {
                self.stats.count("corrupt_chunks_rejected");
                if let Some(&j) = self.index.get(&peer) {
                    let n = self.rejected.entry((i, j)).or_default();
                    *n += 1;
                    if *n > 1 {
                        // The protocol bans at the first bad chunk: a second one means it did not.
                        self.stats.count("corrupt_chunks_rejected_again");
                    }
                }
            }
            Output::Event(NodeEvent::Resumed { release }) => self.forgot_halt(i, release),
            _ => {}
        }
        Ok(())
    }

    /// What an availability liar changes in a request it sends (node `i` to `j`
    /// as route `route`): its own `Have` claims every chunk. A `Have` sent to a
    /// liar is remembered with its release, so that the liar's answer can claim
    /// every chunk of it too.
    /// The shared bytes for a response the engine being fed sends for the chunk it
    /// has just loaded, if `data` is exactly that chunk's response (anything else,
    /// say a corrupted copy, travels as it is).
    fn shared_chunk(&mut self, kind: Kind, data: &[u8]) -> Option<Arc<[u8]>> {
        let h = self.serving.filter(|_| kind == Kind::Chunk)?;
        let content = self.content.get(&h)?;
        let encoded = self.encoded_chunks.entry(h).or_insert_with(|| {
            Arc::from(Response::Chunk(ByteBuf::from(content.to_vec())).encode())
        });
        (encoded[..] == *data).then(|| encoded.clone())
    }

    fn have_lies(&mut self, i: usize, j: usize, route: u64, data: Vec<u8>) -> Vec<u8> {
        let liar_sends = self.nodes[i].have_lie.is_some();
        let liar_answers = self.nodes[j].have_lie.is_some();
        if !liar_sends && !liar_answers {
            return data;
        }
        let Ok(Request::Have { release, .. }) = Request::decode(&data) else {
            return data;
        };
        if liar_answers {
            self.have_routes.insert(route, release);
        }
        if !liar_sends {
            return data;
        }
        match self.claim_all(&release) {
            Some(bitfield) => {
                self.stats.count("false_have_claims");
                Request::Have {
                    release,
                    bitfield: ByteBuf::from(bitfield),
                }
                .encode()
            }
            None => data,
        }
    }

    /// What an availability liar answers instead of `data`, its engine's honest
    /// answer to a request of `kind` (`claimed`: the release of a `Have`):
    /// `None` sends nothing.
    fn lie_in_answer(
        &mut self,
        lie: HaveLie,
        kind: Kind,
        claimed: Option<ReleaseId>,
        data: Vec<u8>,
    ) -> Option<Vec<u8>> {
        match (kind, Response::decode(&data)) {
            (Kind::Have, Ok(Response::Have { .. })) => {
                let Some(bitfield) = claimed.and_then(|r| self.claim_all(&r)) else {
                    return Some(data);
                };
                self.stats.count("false_have_claims");
                Some(
                    Response::Have {
                        bitfield: ByteBuf::from(bitfield),
                    }
                    .encode(),
                )
            }
            (Kind::Chunk, Ok(Response::NotFound)) => match lie {
                HaveLie::NotFound => {
                    self.stats.count("claimed_chunks_not_found");
                    Some(data)
                }
                HaveLie::Stall => {
                    self.stats.count("claimed_chunks_stalled");
                    None
                }
            },
            _ => Some(data),
        }
    }

    /// A bitfield claiming every chunk of `release`, if it was published here.
    fn claim_all(&self, release: &ReleaseId) -> Option<Vec<u8>> {
        let (_, _, _, hashes) = self.published.iter().find(|(_, r, _, _)| r == release)?;
        let n = u32::try_from(hashes.len()).ok()?;
        Some(Bitfield::full(n).to_bytes())
    }

    fn learned_halt(&mut self, i: usize, release: ReleaseId) {
        if self.nodes[i].halted.insert(release) {
            self.nodes[i].knew_halt_at.get_or_insert(self.now);
            self.stats.knowing_halt += 1;
            self.stats.first_halt.get_or_insert(self.now);
            let k = self.stats.knowing_halt;
            self.stats.halt_knowledge.push((self.now, k));
        }
    }

    fn forgot_halt(&mut self, i: usize, release: ReleaseId) {
        if self.nodes[i].halted.remove(&release) {
            self.stats.knowing_halt -= 1;
        }
    }

    pub(super) fn count_failure(&mut self) {
        self.stats.failed += 1;
        self.stats.first_failure.get_or_insert(self.now);
    }

    /// How a bad `release` hurts node `i`, if it does (a seeded share of the nodes).
    pub(super) fn hurt(&self, i: usize, release: &ReleaseId) -> Option<BadMode> {
        let &(mode, fraction) = self.bad.get(release)?;
        let mut h = blake3::Hasher::new();
        h.update(&self.config.seed.to_le_bytes());
        h.update(&(i as u64).to_le_bytes());
        let mut b = [0u8; 8];
        b.copy_from_slice(&h.finalize().as_bytes()[..8]);
        let draw = u64::from_le_bytes(b) as f64 / u64::MAX as f64;
        (fraction >= 1.0 || draw < fraction).then_some(mode)
    }

    fn node_broadcast(&mut self, i: usize, data: Vec<u8>) {
        let health = match Gossip::decode(&data) {
            Ok(Gossip::Health(signed)) => Some(signed),
            _ => None,
        };
        if let Some(signed) = health {
            match self.nodes[i].lie {
                Some(HealthLie::Withhold) => {
                    self.stats.count("reports_withheld");
                    return;
                }
                Some(HealthLie::Forge) => {
                    if let Ok(release) = peek_release(&signed) {
                        self.forge_report(i, release);
                    }
                }
                None => {}
            }
            self.nodes[i].health_sent += 1;
            *self
                .health_by_minute
                .entry(self.now.as_millis() / 60_000)
                .or_default() += 1;
        }
        self.broadcast(i, &data);
    }

    /// A liar's healthy report in another endpoint's name, signed with the liar's own key
    /// (it has no other): honest engines must refuse it.
    fn forge_report(&mut self, i: usize, release: ReleaseId) {
        let endpoints = self.nodes.len() - 1;
        if endpoints < 2 {
            return;
        }
        let victim = 1 + (rand_core::RngCore::next_u64(&mut self.rng) as usize) % endpoints;
        let Some(r) = self.nodes[i].engine.trust().release(&release) else {
            return;
        };
        let victim_id = self.nodes[victim].engine.id();
        let wave = wave_of(r.policy(), &release, &victim_id, WavePin::None) as u32;
        let report = HealthReport::new(
            victim_id,
            release,
            wave,
            HealthStatus::Healthy,
            self.now.as_millis(),
            self.now,
        );
        let signed = sign_report(&self.nodes[i].key, report, None);
        self.stats.count("forged_reports");
        self.broadcast(i, &Gossip::Health(signed).encode());
    }

    fn assemble(
        &mut self,
        i: usize,
        chunks: &[ChunkHash],
        length: u64,
        want: [u8; 32],
    ) -> Result<(), String> {
        if chunks.iter().any(|c| !self.nodes[i].store.contains(c)) {
            return Err("a chunk is missing from the store".to_string());
        }
        // The same chunk sequence always assembles to the same bytes: hash it once per run.
        let mut key = blake3::Hasher::new();
        for c in chunks {
            key.update(c);
        }
        let key = *key.finalize().as_bytes();
        let (len, got) = match self.assembled.get(&key) {
            Some(&v) => v,
            None => {
                let mut hasher = blake3::Hasher::new();
                let mut len = 0u64;
                for c in chunks {
                    if let Some(bytes) = self.content.get(c) {
                        hasher.update(bytes);
                        len += bytes.len() as u64;
                    }
                }
                let v = (len, *hasher.finalize().as_bytes());
                self.assembled.insert(key, v);
                v
            }
        };
        if len != length || got != want {
            return Err(format!(
                "assembled {len} bytes hashing to {}",
                hex::encode(got)
            ));
        }
        Ok(())
    }

    fn check_install(&mut self, i: usize, release: ReleaseId) -> Result<(), InvariantViolation> {
        self.stats.invariant_checks += 1;
        let engine = &self.nodes[i].engine;
        let Some(r) = engine.trust().release(&release) else {
            return Err(self.violation(format!(
                "node {i} installs {release}, which it does not trust"
            )));
        };
        let wave = wave_of(r.policy(), &release, &engine.id(), WavePin::None);
        if self.now < r.policy().scheduled_open(wave) {
            return Err(self.violation(format!(
                "node {i} installs {release} before wave {wave} is scheduled"
            )));
        }
        if self.nodes[i].halted.contains(&release) {
            return Err(self.violation(format!(
                "node {i} installs {release} after learning it is halted"
            )));
        }
        self.installs.push(InstallRecord {
            node: i,
            release,
            wave,
            at: self.now,
        });
        Ok(())
    }
}

fn corrupt_chunk(data: Vec<u8>) -> Vec<u8> {
    match Response::decode(&data) {
        Ok(Response::Chunk(bytes)) => {
            let mut bytes = bytes.into_vec();
            if let Some(b) = bytes.first_mut() {
                *b ^= 0xff;
            }
            Response::Chunk(ByteBuf::from(bytes)).encode()
        }
        _ => data,
    }
}
