//! What an operator chooses about the network: where to listen, whom to
//! bootstrap from, whether to use mDNS, and the connection limits; with
//! defaults for a daemon and a loopback-only variant for tests and demos.

use super::bounds::{
    DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_CONNECTIONS_PER_PEER,
    DEFAULT_MAX_PENDING_CONNECTIONS, DEFAULT_PORT, DEFAULT_TARGET_PEERS, MAX_BOOTSTRAP_ADDRS,
    MAX_LISTEN_ADDRS,
};
use super::error::NetError;
use libp2p::multiaddr::Protocol;
use libp2p::Multiaddr;
use std::net::Ipv4Addr;
use std::num::NonZeroU64;
use std::time::Duration;
use waveguard_protocol::limits::MAX_GOSSIP_BYTES;

/// The network settings of one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetConfig {
    /// Addresses to listen on (TCP `/ip4/…/tcp/…` and QUIC `/ip4/…/udp/…/quic-v1`).
    pub listen: Vec<Multiaddr>,
    /// Well-known peers dialed at start. An address ending in `/p2p/<PeerId>`
    /// also seeds the Kademlia routing table.
    pub bootstrap: Vec<Multiaddr>,
    /// Whether to discover peers on the local link with mDNS (multicast).
    pub mdns: bool,
    /// Most established connections in total.
    pub max_connections: u32,
    /// Most established connections to one peer.
    pub max_connections_per_peer: u32,
    /// Most connections in their handshake, inbound and outbound each.
    pub max_pending_connections: u32,
    /// Discovered peers are dialed only while fewer than this many are connected.
    pub target_peers: usize,
    /// Largest gossip message data published or accepted, at most
    /// [`MAX_GOSSIP_BYTES`].
    pub max_gossip_bytes: usize,
    /// How long a connection no protocol uses stays open.
    pub idle_timeout: Duration,
    /// Most bytes per second sent in responses (`None`: unlimited).
    pub upload_limit: Option<NonZeroU64>,
    /// Most bytes per second received in responses (`None`: unlimited).
    pub download_limit: Option<NonZeroU64>,
}

impl Default for NetConfig {
    /// Listens on every IPv4 interface on [`DEFAULT_PORT`] over TCP and QUIC,
    /// discovers local peers with mDNS, and has no bootstrap peers.
    fn default() -> Self {
        Self::listening_on(Ipv4Addr::UNSPECIFIED, DEFAULT_PORT, true)
    }
}

impl NetConfig {
    /// Listens on 127.0.0.1 only, on ports the system picks, with mDNS off:
    /// for tests and local demos, where nothing may leave the machine.
    pub fn loopback() -> Self {
        Self::listening_on(Ipv4Addr::LOCALHOST, 0, false)
    }

    /// TCP and QUIC listeners on `ip:port`, default limits, no bootstrap.
    fn listening_on(ip: Ipv4Addr, port: u16, mdns: bool) -> Self {
        let tcp = Multiaddr::empty()
            .with(Protocol::Ip4(ip))
            .with(Protocol::Tcp(port));
        let quic = Multiaddr::empty()
            .with(Protocol::Ip4(ip))
            .with(Protocol::Udp(port))
            .with(Protocol::QuicV1);
        Self {
            listen: vec![tcp, quic],
            bootstrap: Vec::new(),
            mdns,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_peer: DEFAULT_MAX_CONNECTIONS_PER_PEER,
            max_pending_connections: DEFAULT_MAX_PENDING_CONNECTIONS,
            target_peers: DEFAULT_TARGET_PEERS,
            max_gossip_bytes: MAX_GOSSIP_BYTES,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            upload_limit: None,
            download_limit: None,
        }
    }

    /// Checks that the settings can work together.
    pub fn validate(&self) -> Result<(), NetError> {
        let invalid = |reason: String| Err(NetError::InvalidConfig(reason));
        if self.listen.len() > MAX_LISTEN_ADDRS {
            return invalid(format!(
                "{} listen addresses are configured; at most {MAX_LISTEN_ADDRS} are allowed",
                self.listen.len()
            ));
        }
        if self.bootstrap.len() > MAX_BOOTSTRAP_ADDRS {
            return invalid(format!(
                "{} bootstrap addresses are configured; at most {MAX_BOOTSTRAP_ADDRS} are allowed",
                self.bootstrap.len()
            ));
        }
        if self.max_connections == 0 || self.max_connections_per_peer == 0 {
            return invalid("connection limits must allow at least one connection".into());
        }
        if self.max_connections_per_peer > self.max_connections {
            return invalid(format!(
                "max_connections_per_peer ({}) exceeds max_connections ({})",
                self.max_connections_per_peer, self.max_connections
            ));
        }
        if self.max_pending_connections == 0 {
            return invalid("max_pending_connections must be at least 1".into());
        }
        if self.max_gossip_bytes == 0 || self.max_gossip_bytes > MAX_GOSSIP_BYTES {
            return invalid(format!(
                "max_gossip_bytes is {}; it must be between 1 and the protocol's {MAX_GOSSIP_BYTES}",
                self.max_gossip_bytes
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid() {
        NetConfig::default().validate().unwrap();
        NetConfig::loopback().validate().unwrap();
    }

    #[test]
    fn the_default_listens_everywhere_on_the_default_port_with_mdns() {
        let c = NetConfig::default();
        assert!(c.mdns);
        let text: Vec<String> = c.listen.iter().map(|a| a.to_string()).collect();
        assert_eq!(
            text,
            ["/ip4/0.0.0.0/tcp/4610", "/ip4/0.0.0.0/udp/4610/quic-v1"]
        );
    }

    #[test]
    fn loopback_stays_on_the_machine() {
        let c = NetConfig::loopback();
        assert!(!c.mdns);
        assert!(c.bootstrap.is_empty());
        for addr in &c.listen {
            assert!(addr.to_string().starts_with("/ip4/127.0.0.1/"), "{addr}");
        }
    }

    #[test]
    fn bad_limits_are_refused_with_a_reason() {
        type Change = fn(&mut NetConfig);
        let cases: [(Change, &str); 5] = [
            (|c| c.max_connections = 0, "at least one connection"),
            (
                |c| c.max_connections_per_peer = 0,
                "at least one connection",
            ),
            (
                |c| c.max_connections_per_peer = c.max_connections + 1,
                "exceeds",
            ),
            (|c| c.max_pending_connections = 0, "max_pending_connections"),
            (
                |c| c.max_gossip_bytes = MAX_GOSSIP_BYTES + 1,
                "max_gossip_bytes",
            ),
        ];
        for (change, needle) in cases {
            let mut c = NetConfig::loopback();
            change(&mut c);
            let err = c.validate().unwrap_err().to_string();
            assert!(err.contains(needle), "{err}");
        }
    }

    #[test]
    fn too_many_addresses_are_refused() {
        let mut c = NetConfig::loopback();
        c.bootstrap = vec![c.listen[0].clone(); MAX_BOOTSTRAP_ADDRS + 1];
        assert!(c.validate().is_err());
        let mut c = NetConfig::loopback();
        c.listen = vec![c.listen[0].clone(); MAX_LISTEN_ADDRS + 1];
        assert!(c.validate().is_err());
    }
}
