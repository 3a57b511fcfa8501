//! Every bound the networking layer adds on top of the protocol's own
//! (`waveguard_protocol::limits`), each with the reason for its value.
//!
//! These bound what peers can make this process hold: connections, streams,
//! handles awaiting the engine, bans. The defaults of [`super::NetConfig`]
//! that an operator may change are here too.

use std::time::Duration;
use waveguard_protocol::limits::{MAX_RELEASES, MAX_REQUESTS_TOTAL, REQUEST_TIMEOUT_MS};

/// The TCP and UDP (QUIC) port the default configuration listens on: a fixed
/// port lets bootstrap lists and firewall rules name it. Arbitrary; operators
/// change it with the listen addresses.
pub const DEFAULT_PORT: u16 = 4610;

/// Default most established connections in total. Gossipsub keeps at most
/// 12 mesh peers per topic (its `mesh_n_high`), three topics at most 36
/// peers; 128 leaves room for download sources and inbound peers while each
/// connection's buffers (a few hundred KiB) stay in the tens of MiB.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 128;

/// Default most established connections to one peer: one over TCP and one
/// over QUIC, or the two of a simultaneous dial. More only waste sockets.
pub const DEFAULT_MAX_CONNECTIONS_PER_PEER: u32 = 2;

/// Default most connections in their handshake, each way: enough to dial a
/// burst of discovered peers at once, few enough that a flood of half-open
/// connections cannot use up file descriptors.
pub const DEFAULT_MAX_PENDING_CONNECTIONS: u32 = 32;

/// Default number of connected peers below which peers discovered by mDNS or
/// Kademlia are dialed: enough for a full gossip mesh (gossipsub's `mesh_n` is
/// 6) and many download sources, without dialing a whole fleet.
pub const DEFAULT_TARGET_PEERS: usize = 32;

/// Default time a connection no protocol is using stays open: gossip mesh
/// peers keep theirs open anyway; five minutes spares redialing a download
/// source between two chunks of a slow rollout.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// Most request-response streams open at once on one connection, inbound
/// and outbound together. A node asks a peer for at most
/// `MAX_REQUESTS_PER_PEER` (4) chunks and serves at most
/// `MAX_SERVING_PER_PEER` (4), plus a few metadata, chunk list and `Have`
/// questions; 16 doubles that for slack. Streams past it are refused.
pub const MAX_STREAMS_PER_CONNECTION: usize = 16;

/// How long the transport waits for a response before reporting the
/// request failed: the engine gives up after `REQUEST_TIMEOUT_MS` itself, so
/// the transport waits five seconds more and never pre-empts it.
pub const TRANSPORT_REQUEST_TIMEOUT: Duration = Duration::from_millis(REQUEST_TIMEOUT_MS + 5_000);

/// Most gossip messages awaiting the engine's verdict. The engine answers
/// each one as soon as it is fed, so only a stalled driver fills this; the
/// oldest is then ignored (no penalty), which gossipsub would do anyway once
/// the message leaves its short cache.
pub const MAX_PENDING_VERDICTS: usize = 1024;

/// Most inbound requests awaiting the engine's response: the stream limit of
/// [`MAX_STREAMS_PER_CONNECTION`] on a few dozen busy connections. Past it the
/// oldest is dropped unanswered (the asker sees a failed request).
pub const MAX_PENDING_RESPONSES: usize = 1024;

/// Most outbound requests in flight: the engine's own budget,
/// `MAX_REQUESTS_TOTAL` per release download times `MAX_RELEASES`. Past it a
/// request fails at once instead of queueing.
pub const MAX_PENDING_REQUESTS: usize = MAX_REQUESTS_TOTAL * MAX_RELEASES;

/// Bytes a gossipsub RPC adds around a message's data (author, sequence
/// number, topic, signature and protobuf framing come to a few hundred
/// bytes). Gossipsub's max transmit size bounds the whole RPC, so it is the
/// data limit plus this, while the data itself stays capped at the limit.
pub const GOSSIP_RPC_OVERHEAD_BYTES: usize = 16 * 1024;

/// Most listen addresses a peer's identify message may add to our routing
/// table: a host has a handful of interfaces times two transports.
pub const MAX_IDENTIFY_ADDRS: usize = 16;

/// Most listen addresses in a configuration: a handful of interfaces times
/// two transports, with room to spare.
pub const MAX_LISTEN_ADDRS: usize = 32;

/// Most bootstrap addresses in a configuration: a fleet needs a few
/// well-known nodes, not a list of the fleet.
pub const MAX_BOOTSTRAP_ADDRS: usize = 64;
