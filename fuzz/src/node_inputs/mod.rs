//! The `node_inputs` target: one [`Node`](waveguard_protocol::node::Node) driven by a script of inputs, as a
//! driver would feed it, with a driver's bookkeeping to check its outputs.
//!
//! Input: a configuration byte (bit 0: fleet with an operator; bit 1: start
//! trusting release A rather than the root alone; bits 2-3: wave pin none,
//! canary, last, none; bit 4: seeder; bit 5: prefetch; bit 6: paused; bit 7:
//! withhold the node's fleet certificate), then up to [`MAX_STEPS`] [`Step`]s.
//! Peers are [`crate::fixtures::PEERS`] fixed keys; time starts at
//! [`crate::fixtures::NOW`] and only moves forward.
//!
//! The harness remembers what the node asked for (requests, chunk stores and
//! loads) so a step can answer the n-th open one, with an honest answer, a
//! canned message ([`canned`]), a damaged one, or raw bytes.
//!
//! After every input it drains `Node::poll_output` until `Output::Timeout`
//! and checks: at most [`MAX_DRAIN`] outputs (more is a bug), the timeout is
//! not before now, exactly one verdict per gossip message, every request,
//! response and broadcast the node emits decodes (a broadcast on its
//! message's topic), every response answers an open inbound request once and
//! goes to the peer that asked, stored chunks match their hash, requests
//! never go to the node itself, and only trusted releases are assembled or
//! installed.

pub mod canned;
mod harness;
mod seeds;
mod steps;

pub use canned::{fixture, Fixture};
pub use seeds::seeds;
pub use steps::{Script, Setup, Step};

use harness::Harness;
use std::collections::BTreeMap;

/// Most steps one input runs: long enough for a whole fetch, install and halt,
/// short enough to keep an execution to a few milliseconds.
pub const MAX_STEPS: usize = 256;

/// Most outputs one input may produce before the node is deemed stuck in a
/// loop. The node's own optional-output bound (`MAX_OUTPUT_QUEUE`) is 65 536.
pub const MAX_DRAIN: usize = 100_000;

/// Most open actions (requests, stores, loads) the harness remembers; older
/// ones are forgotten, as a driver would time them out.
pub const MAX_REMEMBERED: usize = 1024;

/// What one run produced, for tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Outputs of each kind, by name.
    pub outputs: BTreeMap<&'static str, usize>,
    /// Events of each kind, by name.
    pub events: BTreeMap<&'static str, usize>,
}

impl Summary {
    /// How many outputs of `kind` were seen.
    pub fn count(&self, kind: &str) -> usize {
        self.outputs.get(kind).copied().unwrap_or(0)
    }
}

/// Runs one input and checks every invariant; panics on a violation.
pub fn run(data: &[u8]) -> Summary {
    run_with(data, false)
}

/// Like [`run`], printing every step and output to stderr: for reading what
/// a crashing input does (`cargo run --example trace_node -- <file>`).
pub fn trace(data: &[u8]) -> Summary {
    run_with(data, true)
}

fn run_with(data: &[u8], trace: bool) -> Summary {
    let script = Script::decode(data);
    let mut h = Harness::new(script.setup, trace);
    for s in &script.steps {
        h.step(s);
    }
    h.summary
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_and_garbage_inputs_run() {
        run(&[]);
        run(&[0xff; 64]);
        run(&(0..=255u8).collect::<Vec<_>>());
    }
}
