//! Prometheus metrics of a running agent, in the text exposition format.
//!
//! The driver loop already keeps everything worth exporting (the engine's
//! [`NodeStatus`] and the [`Counters`]); this module only turns one snapshot
//! of them into text. A fresh registry per scrape keeps the loop free of any
//! metrics bookkeeping and costs microseconds at scrape rates.
//!
//! Traffic is split by [`PeerClass`]: a peer that mDNS found on the local link
//! is `lan`, every other peer (bootstrap, Kademlia, inbound) is `wan`.

use crate::driver::Counters;
use crate::net::Traffic;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use waveguard_protocol::node::NodeStatus;

/// Most peers remembered as mDNS-discovered: a LAN flood of announcements
/// cannot grow memory past this; later ones are counted as `wan`. Far above a
/// real link's population, and a few hundred KiB at most.
pub const MAX_LAN_PEERS: usize = 4096;

/// Where a peer was found, for splitting traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PeerClass {
    /// Found by mDNS on the local link.
    Lan,
    /// Found any other way.
    Wan,
}

impl PeerClass {
    /// Every class, in the order metrics list them.
    pub const ALL: [PeerClass; 2] = [PeerClass::Lan, PeerClass::Wan];

    /// The class's label value.
    pub fn label(self) -> &'static str {
        match self {
            PeerClass::Lan => "lan",
            PeerClass::Wan => "wan",
        }
    }
}

/// Payload bytes exchanged, per peer class.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClassTraffic {
    /// Peers found by mDNS.
    pub lan: Traffic,
    /// All other peers.
    pub wan: Traffic,
}

impl ClassTraffic {
    /// The traffic of one class.
    pub fn of(&self, class: PeerClass) -> Traffic {
        match class {
            PeerClass::Lan => self.lan,
            PeerClass::Wan => self.wan,
        }
    }

    /// Adds `t` to `class` (saturating: a counter never wraps).
    pub fn add(&mut self, class: PeerClass, t: Traffic) {
        let slot = match class {
            PeerClass::Lan => &mut self.lan,
            PeerClass::Wan => &mut self.wan,
        };
        slot.sent = slot.sent.saturating_add(t.sent);
        slot.received = slot.received.saturating_add(t.received);
    }

    /// Adds every class of `other`.
    pub fn merge(&mut self, other: &ClassTraffic) {
        for class in PeerClass::ALL {
            self.add(class, other.of(class));
        }
    }
}

/// Every state name a release can be in, so `releases{state=...}` always has
/// the same series (a missing series reads as "unknown", a zero as "none").
pub const RELEASE_STATES: [&str; 10] = [
    "discovered",
    "fetching",
    "staging",
    "staged",
    "installing",
    "baking",
    "healthy",
    "halted",
    "rolling-back",
    "rolled-back",
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TrafficLabels {
    class: String,
    direction: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: String,
}

fn counter(registry: &mut Registry, name: &str, help: &str, value: u64) {
    let c: Counter = Counter::default();
    c.inc_by(value);
    registry.register(name, help, c);
}

fn gauge(registry: &mut Registry, name: &str, help: &str, value: usize) {
    let g: Gauge = Gauge::default();
    g.set(i64::try_from(value).unwrap_or(i64::MAX));
    registry.register(name, help, g);
}

/// Renders one snapshot as Prometheus text (every name prefixed `waveguard_`).
/// `status` is `None` before the engine's first event; its gauges read 0 then.
pub fn render(status: Option<&NodeStatus>, counters: &Counters) -> String {
    let mut registry = Registry::with_prefix("waveguard");
    counter(
        &mut registry,
        "chunks_stored",
        "Chunks received from peers that verified and were stored.",
        counters.chunks_stored,
    );
    counter(
        &mut registry,
        "chunks_rejected",
        "Chunks received from peers that failed their blake3 check.",
        counters.chunks_rejected,
    );
    counter(
        &mut registry,
        "chunk_store_failures",
        "Verified chunks whose write to the local store failed.",
        counters.store_failures,
    );
    counter(
        &mut registry,
        "releases_forgotten",
        "Releases whose stored data was removed after the vendor pruned them from the metadata.",
        counters.releases_forgotten,
    );
    counter(
        &mut registry,
        "forgotten_bytes",
        "Chunk bytes freed by removing the data of pruned releases.",
        counters.bytes_forgotten,
    );
    gauge(
        &mut registry,
        "disk_full",
        "1 when the last write to the data directory found the disk full, else 0.",
        usize::from(counters.disk_full),
    );
    counter(
        &mut registry,
        "peers_banned",
        "Peers this agent banned.",
        counters.peers_banned,
    );
    counter(
        &mut registry,
        "inputs_refused",
        "Messages or local results the engine refused.",
        counters.inputs_refused,
    );
    counter(
        &mut registry,
        "peers_scored_out",
        "Peers banned because their gossip score fell below the graylist threshold.",
        counters.peers_scored_out,
    );
    counter(
        &mut registry,
        "requests_malformed",
        "Requests from peers that did not decode.",
        counters.requests_malformed,
    );
    counter(
        &mut registry,
        "bans_lifted",
        "Timed bans that ended (the peer may connect again).",
        counters.bans_lifted,
    );

    let bytes = Family::<TrafficLabels, Counter>::default();
    for class in PeerClass::ALL {
        let t = counters.traffic.of(class);
        for (direction, value) in [("up", t.sent), ("down", t.received)] {
            bytes
                .get_or_create(&TrafficLabels {
                    class: class.label().to_string(),
                    direction: direction.to_string(),
                })
                .inc_by(value);
        }
    }
    registry.register(
        "peer_bytes",
        "Payload bytes exchanged with peers, by peer class (lan: found by mDNS) and direction.",
        bytes,
    );

    let states = Family::<StateLabels, Gauge>::default();
    for state in RELEASE_STATES {
        states
            .get_or_create(&StateLabels {
                state: state.to_string(),
            })
            .set(0);
    }
    for r in status.map(|s| s.releases.as_slice()).unwrap_or_default() {
        states
            .get_or_create(&StateLabels {
                state: r.state.name().to_string(),
            })
            .inc();
    }
    registry.register("releases", "Releases followed, by state.", states);

    gauge(
        &mut registry,
        "connected_peers",
        "Peers with an open connection.",
        status.map_or(0, |s| s.peers),
    );
    gauge(
        &mut registry,
        "banned_peers",
        "Peers currently banned.",
        status.map_or(0, |s| s.banned),
    );
    gauge(
        &mut registry,
        "root_version",
        "Version of the trusted root metadata.",
        status.map_or(0, |s| usize::try_from(s.root_version).unwrap_or(usize::MAX)),
    );

    let mut out = String::new();
    // Writing into a String cannot fail; an error would only mean a broken registry.
    if prometheus_client::encoding::text::encode(&mut out, &registry).is_err() {
        out.clear();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traffic_adds_per_class_and_saturates() {
        let mut t = ClassTraffic::default();
        t.add(
            PeerClass::Lan,
            Traffic {
                sent: 5,
                received: 7,
            },
        );
        t.add(
            PeerClass::Wan,
            Traffic {
                sent: u64::MAX,
                received: 1,
            },
        );
        let mut total = ClassTraffic::default();
        total.merge(&t);
        total.merge(&t);
        assert_eq!(
            total.lan,
            Traffic {
                sent: 10,
                received: 14
            }
        );
        assert_eq!(total.wan.sent, u64::MAX);
        assert_eq!(total.wan.received, 2);
    }

    #[test]
    fn empty_snapshot_has_every_series_at_zero() {
        let text = render(None, &Counters::default());
        for state in RELEASE_STATES {
            assert!(
                text.contains(&format!("waveguard_releases{{state=\"{state}\"}} 0")),
                "{text}"
            );
        }
        assert!(text.contains("waveguard_chunks_stored_total 0"), "{text}");
        assert!(text.contains("waveguard_connected_peers 0"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
