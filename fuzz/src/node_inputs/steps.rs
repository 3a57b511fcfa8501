//! The `node_inputs` script: a configuration byte ([`Setup`]) and a list of
//! [`Step`]s, each an opcode byte (modulo the number of kinds) and its fields.

use super::MAX_STEPS;
use crate::script::{Payload, Reader, Writer};

/// One input to the node, before payloads and selectors are resolved.
///
/// Selectors: a peer byte picks one of the fixed peers (for connections,
/// its last value picks the node itself); a release byte picks A, B or an unknown ID; an
/// "open" byte picks the n-th (modulo) open action of its kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Time passes (see [`crate::script::advance_ms`]), then a tick.
    Advance(u8),
    /// A peer connects.
    Connect(u8),
    /// A peer disconnects.
    Disconnect(u8),
    /// A gossip message; honest: the sender's healthy report.
    Gossip {
        /// Peer selector.
        from: u8,
        /// The message.
        data: Payload,
    },
    /// A request from a peer; honest: release A's chunk 0.
    Request {
        /// Peer selector.
        from: u8,
        /// The request.
        data: Payload,
    },
    /// The answer to an open request, from the peer it went to; honest: the right answer.
    Respond {
        /// Open request selector, newest first.
        open: u8,
        /// The response.
        data: Payload,
    },
    /// An answer to a request id the node may never have used.
    RespondStray {
        /// Peer selector.
        from: u8,
        /// The request id.
        request_id: u8,
        /// The response; honest: not found.
        data: Payload,
    },
    /// An open request fails at the transport.
    Fail {
        /// Open request selector, newest first.
        open: u8,
    },
    /// A chunk is durable: bit 7 clear answers an open store, else bit 6
    /// names a chunk of release A, else the hash is arbitrary.
    Stored(u8),
    /// A chunk could not be stored (selected as for [`Step::Stored`]).
    StoreFailed(u8),
    /// The answer to an open load (bit 7 clear) or to an arbitrary token.
    Loaded {
        /// Open load selector, or the token.
        which: u8,
        /// The bytes read (`None`: the store lost them); honest: the chunk.
        data: Option<Payload>,
    },
    /// The store holds these chunks of release A (bit i: chunk i; bit 7: one arbitrary hash).
    Held(u8),
    /// Local metadata: bundle A, bundle AB or an empty bundle.
    Metadata(u8),
    /// A local chunk list; honest: release A's.
    ChunkList {
        /// Release selector.
        release: u8,
        /// The list.
        data: Payload,
    },
    /// The staged artifact checked out (or not).
    Staged {
        /// Release selector.
        release: u8,
        /// Success.
        ok: bool,
    },
    /// The installer finished.
    Installed {
        /// Release selector.
        release: u8,
        /// Success.
        ok: bool,
    },
    /// A probe finished.
    Probed {
        /// Release selector.
        release: u8,
        /// Its result.
        healthy: bool,
    },
    /// A rollback finished.
    RolledBack {
        /// Release selector.
        release: u8,
        /// Success.
        ok: bool,
    },
    /// A local directive; honest: the vendor's halt.
    Directive(Payload),
}

/// Number of step kinds (the opcode is read modulo this).
const STEP_KINDS: u8 = 19;

impl Step {
    fn decode(r: &mut Reader<'_>) -> Step {
        match r.u8() % STEP_KINDS {
            0 => Step::Advance(r.u8()),
            1 => Step::Connect(r.u8()),
            2 => Step::Disconnect(r.u8()),
            3 => Step::Gossip {
                from: r.u8(),
                data: r.payload(),
            },
            4 => Step::Request {
                from: r.u8(),
                data: r.payload(),
            },
            5 => Step::Respond {
                open: r.u8(),
                data: r.payload(),
            },
            6 => Step::RespondStray {
                from: r.u8(),
                request_id: r.u8(),
                data: r.payload(),
            },
            7 => Step::Fail { open: r.u8() },
            8 => Step::Stored(r.u8()),
            9 => Step::StoreFailed(r.u8()),
            10 => {
                let which = r.u8();
                let data = (r.u8() & 1 == 1).then(|| r.payload());
                Step::Loaded { which, data }
            }
            11 => Step::Held(r.u8()),
            12 => Step::Metadata(r.u8()),
            13 => Step::ChunkList {
                release: r.u8(),
                data: r.payload(),
            },
            14 => Step::Staged {
                release: r.u8(),
                ok: r.u8() & 1 == 0,
            },
            15 => Step::Installed {
                release: r.u8(),
                ok: r.u8() & 1 == 0,
            },
            16 => Step::Probed {
                release: r.u8(),
                healthy: r.u8() & 1 == 0,
            },
            17 => Step::RolledBack {
                release: r.u8(),
                ok: r.u8() & 1 == 0,
            },
            _ => Step::Directive(r.payload()),
        }
    }

    fn encode(&self, w: &mut Writer) {
        let flag = |b: bool| u8::from(!b);
        match self {
            Step::Advance(t) => w.u8(0).u8(*t),
            Step::Connect(p) => w.u8(1).u8(*p),
            Step::Disconnect(p) => w.u8(2).u8(*p),
            Step::Gossip { from, data } => w.u8(3).u8(*from).payload(data),
            Step::Request { from, data } => w.u8(4).u8(*from).payload(data),
            Step::Respond { open, data } => w.u8(5).u8(*open).payload(data),
            Step::RespondStray {
                from,
                request_id,
                data,
            } => w.u8(6).u8(*from).u8(*request_id).payload(data),
            Step::Fail { open } => w.u8(7).u8(*open),
            Step::Stored(s) => w.u8(8).u8(*s),
            Step::StoreFailed(s) => w.u8(9).u8(*s),
            Step::Loaded { which, data } => {
                w.u8(10).u8(*which).u8(u8::from(data.is_some()));
                if let Some(d) = data {
                    w.payload(d);
                }
                w
            }
            Step::Held(m) => w.u8(11).u8(*m),
            Step::Metadata(b) => w.u8(12).u8(*b),
            Step::ChunkList { release, data } => w.u8(13).u8(*release).payload(data),
            Step::Staged { release, ok } => w.u8(14).u8(*release).u8(flag(*ok)),
            Step::Installed { release, ok } => w.u8(15).u8(*release).u8(flag(*ok)),
            Step::Probed { release, healthy } => w.u8(16).u8(*release).u8(flag(*healthy)),
            Step::RolledBack { release, ok } => w.u8(17).u8(*release).u8(flag(*ok)),
            Step::Directive(d) => w.u8(18).payload(d),
        };
    }
}

/// The node's configuration, from the first input byte.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Setup {
    /// Fleet with an operator.
    pub operator: bool,
    /// Start trusting release A (else the root alone).
    pub with_release: bool,
    /// 0 none, 1 canary, 2 last (3 reads as none).
    pub pin: u8,
    /// A seeder rather than an endpoint.
    pub seeder: bool,
    /// Fetch before the wave opens.
    pub prefetch: bool,
    /// Install nothing.
    pub paused: bool,
    /// Run without the fleet certificate.
    pub no_cert: bool,
}

impl Setup {
    fn from_byte(b: u8) -> Setup {
        let bit = |i: u8| b & (1 << i) != 0;
        Setup {
            operator: bit(0),
            with_release: bit(1),
            pin: (b >> 2) & 3,
            seeder: bit(4),
            prefetch: bit(5),
            paused: bit(6),
            no_cert: bit(7),
        }
    }

    fn to_byte(self) -> u8 {
        u8::from(self.operator)
            | u8::from(self.with_release) << 1
            | (self.pin & 3) << 2
            | u8::from(self.seeder) << 4
            | u8::from(self.prefetch) << 5
            | u8::from(self.paused) << 6
            | u8::from(self.no_cert) << 7
    }
}

/// A decoded input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Script {
    /// The node's configuration.
    pub setup: Setup,
    /// The inputs, in order.
    pub steps: Vec<Step>,
}

impl Script {
    /// Reads a script; never fails.
    pub fn decode(data: &[u8]) -> Script {
        let mut r = Reader::new(data);
        let setup = Setup::from_byte(r.u8());
        let mut steps = Vec::new();
        while !r.is_empty() && steps.len() < MAX_STEPS {
            steps.push(Step::decode(&mut r));
        }
        Script { setup, steps }
    }

    /// Writes a script that [`Script::decode`] reads back unchanged.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u8(self.setup.to_byte());
        for s in &self.steps {
            s.encode(&mut w);
        }
        w.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setups_and_seed_scripts_round_trip() {
        for (name, bytes) in super::super::seeds() {
            assert_eq!(Script::decode(&bytes).encode(), bytes, "{name}");
        }
        for b in 0..=255u8 {
            assert_eq!(Setup::from_byte(b).to_byte(), b);
        }
    }
}
