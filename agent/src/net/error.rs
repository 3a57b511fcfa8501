//! The errors of the networking layer, one enum per operation, plus the
//! reasons an outbound request can fail (reported as an event, not returned).

use libp2p::Multiaddr;
use thiserror::Error;
use waveguard_protocol::NodeId;

/// Why [`super::Network::new`] could not build the network.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum NetError {
    /// The configuration is inconsistent.
    #[error("invalid network configuration: {0}")]
    InvalidConfig(String),
    /// The identity key is not ed25519, so it cannot be a waveguard node ID.
    #[error("the network identity must be an ed25519 key (the node key), not {0}")]
    NotEd25519(String),
    /// The transports (TCP with noise and yamux, QUIC) could not be set up.
    #[error("could not set up the transports: {0}")]
    Transport(String),
    /// Gossipsub refused its configuration or scoring parameters.
    #[error("could not set up gossipsub: {0}")]
    Gossip(String),
    /// mDNS could not start (it needs a network interface watcher).
    #[error("could not start mDNS discovery: {0}")]
    Mdns(std::io::Error),
    /// A listen address could not be used.
    #[error("cannot listen on {addr}: {reason}")]
    Listen {
        /// The address.
        addr: Multiaddr,
        /// What the transport said.
        reason: String,
    },
}

/// Why [`super::Network::publish`] did not publish.
#[derive(Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum PublishError {
    /// The topic is not one of the waveguard gossip topics.
    #[error("{0:?} is not a waveguard gossip topic")]
    UnknownTopic(String),
    /// The message is larger than the gossip limit.
    #[error("a gossip message of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// The message's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Gossipsub could not queue the message (signing failed or every peer's queue is full).
    #[error("gossipsub could not publish the message: {0}")]
    Gossipsub(String),
}

/// Why [`super::Network::report_verdict`] had nothing to report on.
#[derive(Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum VerdictError {
    /// The handle is unknown: already judged, or evicted as the oldest of too
    /// many messages awaiting a verdict (it was then ignored).
    #[error("no gossip message with handle {0} awaits a verdict (already judged or expired)")]
    UnknownMessage(u64),
}

/// Why [`super::Network::respond`] sent nothing.
#[derive(Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum RespondError {
    /// The handle is unknown: already answered, failed (timeout, disconnect)
    /// or evicted as the oldest of too many unanswered requests.
    #[error("no inbound request with handle {0} awaits a response (answered, failed or expired)")]
    UnknownRequest(u64),
    /// The response is larger than a response frame may be; nothing was sent
    /// and the asker will see its request fail.
    #[error("a response of {len} bytes exceeds the frame limit of {max} bytes")]
    TooLarge {
        /// The response's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The request's stream closed (timeout or disconnect) before the response was given.
    #[error("the request with handle {0} was abandoned by the transport before the response")]
    Closed(u64),
}

/// Why [`super::Network::dial`] could not start dialing.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum DialError {
    /// The swarm refused the dial (a banned peer, a limit, an unsupported address).
    #[error("cannot dial {addr}: {reason}")]
    Refused {
        /// The address.
        addr: Multiaddr,
        /// What the swarm said.
        reason: String,
    },
}

/// Why [`super::Network::ban`] could not ban a peer.
#[derive(Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum BanError {
    /// The node ID does not form a libp2p peer ID.
    #[error("node {0} has no libp2p peer ID")]
    NotAPeer(NodeId),
}

/// Why an outbound request ended without a response
/// ([`super::NetEvent::RequestFailed`]).
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequestFailure {
    /// The request was larger than a request frame may be; nothing was sent.
    #[error("the request of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// The request's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Too many requests were already in flight; nothing was sent.
    #[error("too many requests are in flight ({0}); nothing was sent")]
    TooManyInFlight(usize),
    /// The node ID does not form a libp2p peer ID.
    #[error("the node ID has no libp2p peer ID")]
    NotAPeer,
    /// The peer is banned.
    #[error("the peer is banned")]
    Banned,
    /// The peer could not be reached.
    #[error("the peer could not be dialed")]
    Unreachable,
    /// No response came within the transport's timeout.
    #[error("the peer did not respond in time")]
    Timeout,
    /// The connection closed before the response came.
    #[error("the connection closed before the response")]
    ConnectionClosed,
    /// The peer does not speak the waveguard request protocol.
    #[error("the peer does not speak the waveguard request protocol")]
    UnsupportedProtocol,
    /// The stream failed, for example a response over the frame limit.
    #[error("the request stream failed: {0}")]
    Io(String),
}
