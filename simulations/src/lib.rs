//! waveguard's simulator: the real protocol engines under a seeded,
//! discrete-event model of a network.
//!
//! Every node is a [`waveguard_protocol::node::Node`] fed through
//! `handle_input(now, …)` and drained through `poll_output()`; the simulator
//! only moves bytes, keeps simulated time and plays the role of disks and
//! installers. It makes no rollout decision of its own. The same seed gives the
//! same event trace, whose hash [`mesh::Mesh::trace_hash`] exposes so tests can
//! check determinism.

pub mod bound;
pub mod clock;
pub mod fleet;
pub mod mesh;
pub mod network;
pub mod report;
pub mod run;
pub mod sample;
pub mod scenario;
pub mod sweep;
