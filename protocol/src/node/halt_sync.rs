//! Halt sync: how a node that missed a halt still learns of it. Halts travel
//! by gossip once (section 11.6) and directives once per issuer's broadcast
//! (11.7); a node that was cut off, offline or not yet following the release
//! at that moment would never hear of them, and a site whose own canaries
//! passed would go on installing a release the rest of the fleet halted. So
//! on every new connection, and for every release it starts to follow, a node
//! that has not halted a release asks the peer what halted it there
//! (`Request::Halt`). The answer is halt evidence or the directive, checked
//! exactly as if it had come by gossip: a node never halts on a peer's word.

use super::{Node, Pending, Verdict};
use crate::health::evidence::build_evidence;
use crate::id::{NodeId, ReleaseId};
use crate::rollout::HaltReason;
use crate::wire::{Gossip, HaltEvidence, Request, Response, TOPIC_HEALTH};
use serde_bytes::ByteBuf;

impl Node {
    /// Asks `peer` whether it halted release `id`, unless this node already has.
    pub(super) fn ask_halt(&mut self, peer: NodeId, id: ReleaseId) {
        let Some(t) = self.releases.get(&id) else {
            return;
        };
        if t.halt.is_some() || t.state.is_stopped() {
            return;
        }
        self.new_request(peer, Pending::Halt(id), Request::Halt { release: id });
    }

    /// The answer to `Request::Halt`: what halted the release here, if anything.
    pub(super) fn halt_answer(&self, id: &ReleaseId) -> Response {
        let Some(t) = self.releases.get(id) else {
            return Response::NotFound;
        };
        match &t.halt {
            Some(HaltReason::GateFailed { wave, .. }) => {
                let ev = build_evidence(&t.ledger, &t.release, *wave, self.now);
                if ev.reports.is_empty() {
                    Response::NotFound
                } else {
                    Response::Halt(ev)
                }
            }
            Some(HaltReason::Directive { .. }) => match &t.directive_bytes {
                Some(bytes) => Response::Directive(ByteBuf::from(bytes.clone())),
                None => Response::NotFound, // taken before a restart: the bytes are gone
            },
            // A local failure is this node's own report, which travels as health.
            Some(HaltReason::LocalFailure { .. }) | None => Response::NotFound,
        }
    }

    /// Takes evidence a peer answered with: checked as gossiped evidence is and, if it
    /// halts this node, announced, because the mesh around us missed it too.
    pub(super) fn on_halt_answer(&mut self, from: NodeId, release: ReleaseId, ev: HaltEvidence) {
        if ev.release != release {
            self.event(super::NodeEvent::Refused {
                from: Some(from),
                reason: format!(
                    "halt answer for {release} carries evidence for {}",
                    ev.release
                ),
            });
            return;
        }
        if self.on_halt_evidence(from, &ev) == Verdict::Accept {
            self.outputs.push_back(super::Output::Broadcast {
                topic: TOPIC_HEALTH,
                data: Gossip::Halt(ev).encode(),
            });
        }
    }

    /// Takes a directive a peer answered with: verified and applied as a gossiped one
    /// is and, if it changed anything, broadcast for the mesh around us.
    pub(super) fn on_directive_answer(&mut self, release: ReleaseId, bytes: &[u8]) {
        match crate::health::directive::verify_directive(bytes, &self.fleet, self.now) {
            Ok(d) if d.release != release => {
                self.event(super::NodeEvent::Refused {
                    from: None,
                    reason: format!(
                        "halt answer for {release} carries a directive for {}",
                        d.release
                    ),
                });
            }
            // Refusals are reported as events by `on_directive`.
            _ => {
                if self.on_directive(bytes, false) == Ok(true) {
                    self.broadcast_directive(bytes);
                }
            }
        }
    }
}
