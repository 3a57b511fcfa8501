//! Moving bytes: connections coming up and going down, requests and answers
//! (bulk ones as flows sharing bandwidth, small ones after the path's latency
//! only), losses, and gossip along the gossipsub mesh model.

use super::stats::Kind;
use super::{Control, Event, InvariantViolation, Mesh, Payload, Transfer};
use crate::network::flows::{FlowId, ResourceId};
use crate::network::gossip::Send as GossipSend;
use crate::network::topology::Topology;
use rand_core::RngCore;
use std::num::NonZeroU64;
use waveguard_protocol::fetch::Bandwidth;
use waveguard_protocol::limits::REQUEST_TIMEOUT_MS;
use waveguard_protocol::node::{Input, Verdict};
use waveguard_protocol::wire::{Gossip, Request};

/// Messages at least this large travel as flows that share bandwidth; smaller
/// ones (gossip, requests, availability) only pay the path's latency, since at
/// these capacities their transmission time is far below the latency.
pub const FLOW_MIN_BYTES: usize = 16 * 1024;

/// The bandwidth limits the engine is told about: its access link's capacity,
/// so its own pacing keeps its requests and promises within what the link carries.
pub fn engine_bandwidth(t: &Topology, i: usize) -> Bandwidth {
    let limit = |bps: f64| {
        (bps.is_finite() && bps >= 1.0)
            .then(|| NonZeroU64::new(bps as u64))
            .flatten()
    };
    Bandwidth {
        upload: limit(t.upload(i)),
        download: limit(t.download(i)),
    }
}

impl Mesh {
    /// Whether a message from `a` can reach `b` now.
    pub(super) fn reachable(&self, a: usize, b: usize) -> bool {
        let (na, nb) = (&self.nodes[a], &self.nodes[b]);
        if na.dead || nb.dead || na.offline || nb.offline {
            return false;
        }
        let (sa, sb) = (self.topology.site_of(a), self.topology.site_of(b));
        sa == sb || !(self.cut[sa] || self.cut[sb])
    }

    /// Tells both ends of a configured connection that it is up, if it can be.
    pub(super) fn link_up(&mut self, a: usize, b: usize) {
        if !self.reachable(a, b) {
            return;
        }
        let (ida, idb) = (self.nodes[a].engine.id(), self.nodes[b].engine.id());
        self.queue.push(
            self.now,
            Event::Deliver {
                to: a,
                input: Input::PeerConnected(idb),
            },
        );
        self.queue.push(
            self.now,
            Event::Deliver {
                to: b,
                input: Input::PeerConnected(ida),
            },
        );
        let (from_a, from_b) = self.router.connect(a as u32, b as u32);
        self.dispatch(a, from_a);
        self.dispatch(b, from_b);
    }

    /// Tells both ends that a connection dropped (each only if it is alive to hear it).
    pub(super) fn link_down(&mut self, a: usize, b: usize) {
        let (ida, idb) = (self.nodes[a].engine.id(), self.nodes[b].engine.id());
        self.queue.push(
            self.now,
            Event::Deliver {
                to: a,
                input: Input::PeerDisconnected(idb),
            },
        );
        self.queue.push(
            self.now,
            Event::Deliver {
                to: b,
                input: Input::PeerDisconnected(ida),
            },
        );
        self.router.disconnect(a as u32, b as u32);
    }

    fn lost(&mut self, a: usize, b: usize) -> bool {
        let p = self.topology.loss(a, b);
        if p <= 0.0 {
            return false;
        }
        let draw = self.rng.next_u64() as f64 / u64::MAX as f64;
        let lost = draw < p;
        if lost {
            self.stats.count("messages_lost");
        }
        lost
    }

    /// Sends `input` from `a` to `b`: as a flow when bulky, else after the path's latency.
    /// A message that cannot arrive makes `on_loss` hear `RequestFailed` after the
    /// request timeout, as a real transport would report it.
    pub(super) fn send(
        &mut self,
        a: usize,
        b: usize,
        bytes: usize,
        kind: Kind,
        input: Input,
        on_loss: Option<(usize, u64)>,
    ) {
        self.send_payload(a, b, bytes, kind, Payload::Input(input), on_loss);
    }

    /// [`Mesh::send`] of a payload.
    pub(super) fn send_payload(
        &mut self,
        a: usize,
        b: usize,
        bytes: usize,
        kind: Kind,
        input: Payload,
        on_loss: Option<(usize, u64)>,
    ) {
        self.stats.sent(a, kind, bytes);
        let (sa, sb) = (self.topology.site_of(a), self.topology.site_of(b));
        if sa != sb {
            self.stats.wan_entered(sb, kind, bytes);
        }
        if !self.reachable(a, b) || self.lost(a, b) {
            self.fail_later(on_loss);
            return;
        }
        // Chunks always share bandwidth (under a byte scale they may be small);
        // other messages only when bulky.
        if kind != Kind::Chunk && bytes < FLOW_MIN_BYTES {
            let at = self.later(self.topology.latency_ms(a, b));
            let input = input.into_input();
            self.queue.push(at, Event::Deliver { to: b, input });
            return;
        }
        let n = self.nodes.len() as u32;
        let mut resources = vec![ResourceId(2 * a as u32), ResourceId(2 * b as u32 + 1)];
        if sa != sb {
            resources.push(ResourceId(2 * n + 2 * sa as u32));
            resources.push(ResourceId(2 * n + 2 * sb as u32 + 1));
        }
        let transfer = Transfer {
            from: a,
            to: b,
            input,
            on_loss,
        };
        // Links run at 1/scale of their capacity; only chunk bytes were scaled down
        // to match, so anything else is charged 1/scale of its size to keep its timing.
        let charged = if kind == Kind::Chunk {
            bytes as u64
        } else {
            (bytes as u64).div_ceil(u64::from(self.config.byte_scale.max(1)))
        };
        self.flows.start(self.now.0, &resources, charged, transfer);
        self.schedule_flows();
    }

    pub(super) fn schedule_flows(&mut self) {
        let due: Vec<(u64, FlowId, u32)> = self.flows.drain_scheduled().collect();
        for (at, flow, version) in due {
            self.queue.push(
                waveguard_protocol::Timestamp(at),
                Event::FlowDone { flow, version },
            );
        }
    }

    /// Tells `on_loss`'s node `RequestFailed` after the request timeout, as a transport would.
    pub(super) fn fail_later(&mut self, on_loss: Option<(usize, u64)>) {
        if let Some((node, request_id)) = on_loss {
            let at = self.later(REQUEST_TIMEOUT_MS);
            self.queue.push(
                at,
                Event::Deliver {
                    to: node,
                    input: Input::RequestFailed { request_id },
                },
            );
        }
    }

    pub(super) fn flow_done(
        &mut self,
        flow: FlowId,
        version: u32,
    ) -> Result<(), InvariantViolation> {
        let Some(t) = self.flows.finish(self.now.0, flow, version) else {
            return Ok(());
        };
        self.schedule_flows();
        // A link that went down while the transfer ran loses it.
        if self.reachable(t.from, t.to) {
            let at = self.later(self.topology.latency_ms(t.from, t.to));
            self.queue.push(
                at,
                Event::Deliver {
                    to: t.to,
                    input: t.input.into_input(),
                },
            );
        } else {
            self.stats.count("transfers_cut");
            self.fail_later(t.on_loss);
        }
        Ok(())
    }

    /// The kind of a request (and of its answer), for accounting.
    pub(super) fn request_kind(data: &[u8]) -> Kind {
        match Request::decode(data) {
            Ok(Request::Chunk { .. }) => Kind::Chunk,
            Ok(Request::Have { .. }) => Kind::Have,
            Ok(Request::ChunkList { .. }) => Kind::ChunkList,
            Ok(Request::Metadata) => Kind::MetadataRequest,
            Ok(Request::Health { .. }) => Kind::HealthSync,
            Ok(Request::Halt { .. }) => Kind::HaltSync,
            _ => Kind::Chunk,
        }
    }

    /// The router's id for a gossip payload (the same bytes, the same id).
    pub(super) fn intern(&mut self, data: &[u8]) -> u32 {
        let key = *blake3::hash(data).as_bytes();
        if let Some(&id) = self.message_ids.get(&key) {
            return id;
        }
        let kind = match Gossip::decode(data) {
            Ok(Gossip::Metadata(_)) => Kind::Metadata,
            Ok(Gossip::Health(_)) => Kind::Health,
            Ok(Gossip::Halt(_)) => Kind::Halt,
            Ok(Gossip::Directive(_)) => Kind::Directive,
            _ => Kind::GossipControl,
        };
        let id = self.messages.len() as u32;
        self.messages.push((std::sync::Arc::from(data), kind));
        self.message_ids.insert(key, id);
        id
    }

    /// Carries one of the router's sends from node `i`.
    pub(super) fn send_gossip(&mut self, i: usize, send: GossipSend) {
        let bytes = self.router.control_bytes(&send);
        let (to, control) = match send {
            GossipSend::Message { to, msg } => {
                let to = to as usize;
                let (len, kind) = {
                    let (bytes, kind) = &self.messages[msg as usize];
                    (bytes.len(), *kind)
                };
                self.stats.sent(i, kind, len);
                if self.reachable(i, to) && !self.lost(i, to) {
                    let at = self.later(self.topology.latency_ms(i, to));
                    self.queue.push(at, Event::Gossip { to, from: i, msg });
                }
                return;
            }
            GossipSend::IHave { to, ids } => (to, Control::IHave(ids)),
            GossipSend::IWant { to, ids } => (to, Control::IWant(ids)),
            GossipSend::Graft { to } => (to, Control::Graft),
            GossipSend::Prune { to } => (to, Control::Prune),
        };
        let to = to as usize;
        self.stats.sent(i, Kind::GossipControl, bytes as usize);
        if self.reachable(i, to) && !self.lost(i, to) {
            let at = self.later(self.topology.latency_ms(i, to));
            self.queue.push(
                at,
                Event::Control {
                    to,
                    from: i,
                    control,
                },
            );
        }
    }

    pub(super) fn gossip_arrived(
        &mut self,
        to: usize,
        from: usize,
        msg: u32,
    ) -> Result<(), InvariantViolation> {
        // A message already sent still arrives if its receiver is up and no cut lies between.
        let (sf, st) = (self.topology.site_of(from), self.topology.site_of(to));
        let cut = sf != st && (self.cut[sf] || self.cut[st]);
        if self.nodes[to].dead || self.nodes[to].offline || cut {
            return Ok(());
        }
        if !self.router.receive(to as u32, from as u32, msg) {
            return Ok(());
        }
        let (data, kind) = {
            let (bytes, kind) = &self.messages[msg as usize];
            (bytes.to_vec(), *kind)
        };
        if matches!(kind, Kind::Health | Kind::Halt) {
            let r = &mut self.nodes[to].health_received;
            r.0 += 1;
            r.1 += data.len() as u64;
        }
        let message_id = self.next_message;
        self.next_message += 1;
        self.gossip_pending.insert(message_id, (to, from, msg));
        let sender = self.nodes[from].engine.id();
        self.feed(
            to,
            Input::Gossip {
                from: sender,
                message_id,
                data,
            },
        )
    }

    pub(super) fn verdict(&mut self, message_id: u64, verdict: Verdict) {
        let Some((receiver, sender, msg)) = self.gossip_pending.remove(&message_id) else {
            return;
        };
        let (r, s) = (receiver as u32, sender as u32);
        let withholds = self.nodes[receiver].lie == Some(super::HealthLie::Withhold)
            && matches!(self.messages[msg as usize].1, Kind::Health | Kind::Halt);
        let sends = match verdict {
            Verdict::Accept if withholds => {
                self.stats.count("reports_not_relayed");
                self.router.ignore(r, msg);
                Vec::new()
            }
            Verdict::Accept => self.router.accept(r, s, msg),
            Verdict::Reject => self.router.reject(r, s, msg),
            Verdict::Ignore => {
                self.router.ignore(r, msg);
                Vec::new()
            }
        };
        self.dispatch(receiver, sends);
    }

    pub(super) fn control_arrived(
        &mut self,
        to: usize,
        from: usize,
        control: Control,
    ) -> Result<(), InvariantViolation> {
        if self.nodes[to].dead || self.nodes[to].offline {
            return Ok(());
        }
        let (t, f) = (to as u32, from as u32);
        let sends = match control {
            Control::IHave(ids) => self.router.ihave(t, f, &ids),
            Control::IWant(ids) => self.router.iwant(t, f, &ids),
            Control::Graft => self.router.graft(t, f),
            Control::Prune => {
                self.router.prune(t, f);
                Vec::new()
            }
        };
        self.dispatch(to, sends);
        Ok(())
    }

    /// Publishes a payload node `i` broadcast.
    pub(super) fn broadcast(&mut self, i: usize, data: &[u8]) {
        let msg = self.intern(data);
        let sends = self.router.publish(i as u32, msg);
        self.dispatch(i, sends);
    }
}
