//! The sans-IO core of waveguard.
//!
//! Everything that decides something about a release lives here: trust metadata
//! and its verification (following The Update Framework), content-defined
//! chunking, wave selection, health aggregation and the gate rule, the per-release
//! rollout state machine, the download scheduler and the wire codec.
//!
//! The crate is pure: it never reads a clock, never draws global randomness and
//! never touches a disk or a network. Time comes in as a [`Timestamp`] argument,
//! randomness from a seed given at construction, and every effect leaves as an
//! [`node::Output`] for a driver (the `waveguard` agent or the simulator) to carry
//! out. That is what lets the real agent and the deterministic simulator run the
//! very same code.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod bundle;
pub mod chunk;
pub mod chunker;
pub mod clock;
pub mod fetch;
pub mod health;
pub mod id;
pub mod keys;
pub mod limits;
pub mod metadata;
pub mod node;
pub mod release;
pub mod rollout;
pub mod time;
pub mod wave;
pub mod wire;

pub use id::{NodeId, ReleaseId};
pub use keys::{KeyId, PublicKey, SigningKey};
pub use time::Timestamp;
