//! Shared code of waveguard's fuzz targets: the fixed trust material they
//! verify against, the byte format of structured inputs, and the checks of
//! the structured targets, so that the seed generator and the unit tests use
//! exactly what the targets use.
//!
//! The targets in `fuzz_targets/` are thin: each passes its input to a
//! `run` function here, which panics when an invariant breaks.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod envelope;
pub mod fixtures;
pub mod health_report;
pub mod node_inputs;
pub mod script;
pub mod seeds;
pub mod trust_bundle;
