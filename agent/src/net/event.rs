//! What the network tells the driver: peers coming and going, gossip,
//! requests and responses (mirroring the engine's `Input`s), and
//! informational events for logs and status.

use super::error::RequestFailure;
use libp2p::Multiaddr;
use waveguard_protocol::NodeId;

/// An event from [`super::Network::next_event`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum NetEvent {
    /// The first connection to a peer opened.
    PeerConnected(NodeId),
    /// The last connection to a peer closed.
    PeerDisconnected(NodeId),
    /// A gossip message arrived. It is not forwarded until
    /// [`super::Network::report_verdict`] accepts it.
    Gossip {
        /// The peer that relayed it (not necessarily its author).
        from: NodeId,
        /// The handle for the verdict.
        message_id: u64,
        /// The waveguard topic it came on.
        topic: &'static str,
        /// The payload, unchanged.
        data: Vec<u8>,
    },
    /// A peer asked something; answer with [`super::Network::respond`].
    Request {
        /// Who asked.
        from: NodeId,
        /// The handle for the response.
        request_id: u64,
        /// The request frame, unchanged.
        data: Vec<u8>,
    },
    /// A peer answered one of our requests.
    Response {
        /// Who answered.
        from: NodeId,
        /// The `request_id` given to [`super::Network::send_request`].
        request_id: u64,
        /// The response frame, unchanged.
        data: Vec<u8>,
    },
    /// One of our requests ended without a response.
    RequestFailed {
        /// The `request_id` given to [`super::Network::send_request`].
        request_id: u64,
        /// Why.
        reason: RequestFailure,
    },
    /// A listener is up on this address.
    Listening(Multiaddr),
    /// A listen address went away.
    ListenAddrExpired(Multiaddr),
    /// A connected peer subscribed to a waveguard topic (gossip published on
    /// it from now on reaches that peer).
    Subscribed {
        /// The peer.
        peer: NodeId,
        /// The topic.
        topic: &'static str,
    },
    /// A peer was discovered: by mDNS always (it shares our LAN, also when
    /// already connected), by Kademlia when it is being dialed.
    Discovered {
        /// The peer.
        peer: NodeId,
        /// How it was found.
        via: Discovery,
    },
    /// The network banned a peer on its own: its gossip score fell below
    /// gossipsub's graylist threshold (it delivered messages that failed
    /// validation). It is disconnected and refused for `length`:
    /// [`super::bans::SCORE_BAN`], doubled for each earlier offence.
    PeerScoredOut {
        /// The peer.
        peer: NodeId,
        /// Its gossip score then, rounded down.
        score: i64,
        /// How long it is banned (longer for a repeat offender).
        length: std::time::Duration,
    },
    /// A timed ban ended (see [`super::Network::expire_bans`]): the peer may
    /// connect again.
    BanLifted(NodeId),
    /// A dial failed.
    DialFailed {
        /// The peer, if known.
        peer: Option<NodeId>,
        /// What went wrong.
        reason: String,
    },
}

/// How a peer was discovered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Discovery {
    /// mDNS on the local link.
    Mdns,
    /// The Kademlia routing table.
    Kademlia,
}

/// Payload bytes exchanged with one connected peer: request and response
/// frames both ways, and gossip data received from it. Transport framing,
/// encryption and gossip control traffic are not counted, nor gossip we
/// publish (gossipsub does not say which peers it went to).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Bytes sent to the peer.
    pub sent: u64,
    /// Bytes received from the peer.
    pub received: u64,
}
