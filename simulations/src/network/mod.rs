//! The simulated network: topology (sites, links, latency, loss), flow-level
//! bandwidth sharing for bulk transfers, and the gossipsub mesh model.

pub mod flows;
pub mod gossip;
pub mod topology;
