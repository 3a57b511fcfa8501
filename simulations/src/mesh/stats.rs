//! What the mesh counts while it runs: bytes sent by message kind, probe
//! outcomes, halts and when they became known, downloads finished, fault
//! counters, and bytes entering each site across its WAN link. The report builds `summary.json` and the time series from these.

use std::collections::BTreeMap;
use waveguard_protocol::Timestamp;

/// What a message on the wire is, for byte accounting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// Gossiped trust metadata.
    Metadata,
    /// A gossiped health report or heartbeat.
    Health,
    /// Gossiped halt evidence.
    Halt,
    /// A gossiped halt or resume directive.
    Directive,
    /// Gossipsub control traffic (IHAVE, IWANT, GRAFT, PRUNE).
    GossipControl,
    /// A chunk sent in answer to a request (bulk: scaled by the byte scale).
    Chunk,
    /// A request for a chunk.
    ChunkRequest,
    /// Availability exchange (`Have`).
    Have,
    /// Chunk lists.
    ChunkList,
    /// Metadata fetched by request.
    MetadataRequest,
    /// Health sync requests and answers.
    HealthSync,
    /// Halt sync requests and answers.
    HaltSync,
}

impl Kind {
    /// Every kind, in report order.
    pub const ALL: [Kind; 12] = [
        Kind::Metadata,
        Kind::Health,
        Kind::Halt,
        Kind::Directive,
        Kind::GossipControl,
        Kind::Chunk,
        Kind::ChunkRequest,
        Kind::Have,
        Kind::ChunkList,
        Kind::MetadataRequest,
        Kind::HealthSync,
        Kind::HaltSync,
    ];

    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Metadata => "metadata",
            Kind::Health => "health",
            Kind::Halt => "halt",
            Kind::Directive => "directive",
            Kind::GossipControl => "gossip-control",
            Kind::Chunk => "chunk",
            Kind::ChunkRequest => "chunk-request",
            Kind::Have => "have",
            Kind::ChunkList => "chunk-list",
            Kind::MetadataRequest => "metadata-request",
            Kind::HealthSync => "health-sync",
            Kind::HaltSync => "halt-sync",
        }
    }
}

// `Kind as usize` indexes the byte counters: `ALL` must list the kinds in declaration order.
const _: () = {
    let mut i = 0;
    while i < Kind::ALL.len() {
        assert!(Kind::ALL[i] as usize == i);
        i += 1;
    }
};

/// Counters kept during a run.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// Bytes sent by endpoints (not the seeder), by kind.
    pub endpoint_bytes: [u64; Kind::ALL.len()],
    /// Bytes the seeder sent, by kind.
    pub seeder_bytes: [u64; Kind::ALL.len()],
    /// Probes that passed (first per node and release).
    pub healthy: u64,
    /// Probes that failed plus machines that died after installing.
    pub failed: u64,
    /// When the first failure happened.
    pub first_failure: Option<Timestamp>,
    /// When the first node learned of a halt.
    pub first_halt: Option<Timestamp>,
    /// Nodes that know of a halt now.
    pub knowing_halt: u64,
    /// Each time the count of nodes knowing of a halt grew: (time, count).
    pub halt_knowledge: Vec<(Timestamp, u64)>,
    /// Fault counters (corrupt chunks served, forged and withheld reports, bans, losses).
    pub faults: BTreeMap<&'static str, u64>,
    /// Invariant checks made.
    pub invariant_checks: u64,
    /// Per site, bytes that crossed its WAN link inbound (from another site), by kind.
    pub wan_in: Vec<[u64; Kind::ALL.len()]>,
}

impl Stats {
    /// Adds one to a fault counter.
    pub fn count(&mut self, what: &'static str) {
        *self.faults.entry(what).or_default() += 1;
    }

    /// Records `bytes` of `kind` entering site `site` across its WAN link.
    pub fn wan_entered(&mut self, site: usize, kind: Kind, bytes: usize) {
        if self.wan_in.len() <= site {
            self.wan_in.resize(site + 1, [0; Kind::ALL.len()]);
        }
        self.wan_in[site][kind as usize] += bytes as u64;
    }

    /// Records `bytes` sent by `node` as `kind`.
    pub fn sent(&mut self, node: usize, kind: Kind, bytes: usize) {
        let k = kind as usize;
        if node == 0 {
            self.seeder_bytes[k] += bytes as u64;
        } else {
            self.endpoint_bytes[k] += bytes as u64;
        }
    }
}
