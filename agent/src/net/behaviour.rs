//! The libp2p protocols a waveguard node runs, composed into one behaviour,
//! and how each is configured: gossipsub with manual validation and peer
//! scoring, request-response with the frame codec, Kademlia and mDNS for
//! discovery, identify, ping, connection limits and the block list for bans.

use super::bounds::{
    GOSSIP_RPC_OVERHEAD_BYTES, MAX_STREAMS_PER_CONNECTION, TRANSPORT_REQUEST_TIMEOUT,
};
use super::codec::{FrameCodec, REQUEST_PROTOCOL};
use super::config::NetConfig;
use super::error::NetError;
use super::throttle::Throttle;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::NetworkBehaviour;
use libp2p::{
    allow_block_list, connection_limits, gossipsub, identify, identity, kad, mdns, ping,
    request_response, StreamProtocol,
};
use std::time::Duration;
use waveguard_protocol::wire::{TOPIC_DIRECTIVES, TOPIC_HEALTH, TOPIC_METADATA};

/// The three waveguard gossip topics, each node subscribes to all of them.
pub const TOPICS: [&str; 3] = [TOPIC_METADATA, TOPIC_HEALTH, TOPIC_DIRECTIVES];

/// The Kademlia protocol name: a private DHT of waveguard nodes, so nodes
/// never join (or answer for) the public IPFS DHT.
pub const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/waveguard/kad/1");

/// The identify protocol version waveguard nodes announce.
pub const IDENTIFY_PROTOCOL: &str = "/waveguard/1";

/// Score penalty for one invalid (rejected) gossip message, squared per
/// message as gossipsub's P4 does. One invalid message takes a peer past the
/// graylist threshold (-80) however long it has been a good mesh member,
/// because the positive terms are kept small (see [`score_params`]): honest
/// relays validate before forwarding, so they never deliver one.
const INVALID_MESSAGE_WEIGHT: f64 = -100.0;

/// How long a rejection weighs on a peer's score before decaying to zero.
const INVALID_MESSAGE_MEMORY: Duration = Duration::from_secs(60 * 60);
/// How often mDNS asks the LAN who is there once its start-up probing got an
/// answer. libp2p's default is 5 minutes, and a node learns of a LAN peer
/// that started after its probing only from its own next query (a peer does
/// not announce itself): meanwhile the two disagree on the site, and so on
/// its WAN fetchers (docs/protocol.md 15.7). Each query draws one answer per
/// LAN peer.
const MDNS_QUERY_INTERVAL: Duration = Duration::from_secs(30);

/// How long gossipsub keeps the score of a disconnected peer (its default
/// is an hour, and a kept score does not decay). Shorter than
/// [`super::bans::SCORE_BAN`]: a peer banned for its score is disconnected
/// at once, so its score is forgotten before its ban ends, and it comes back
/// with a clean one instead of being banned again at once for its past. Only
/// a rejected message makes a score negative (P3, P3b, P6 and P7 weigh 0),
/// and one of those bans the peer, so nothing else is lost.
pub(crate) const SCORE_RETENTION: Duration = Duration::from_secs(5 * 60);

/// The protocols of one node.
#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    /// Banned peers; first, so their connections are refused before anything else runs.
    pub(crate) blocked: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
    /// Connection limits.
    pub(crate) limits: connection_limits::Behaviour,
    /// Gossip.
    pub(crate) gossipsub: gossipsub::Behaviour,
    /// Requests and responses.
    pub(crate) request_response: request_response::Behaviour<FrameCodec>,
    /// Peer discovery beyond the local link.
    pub(crate) kad: kad::Behaviour<kad::store::MemoryStore>,
    /// Exchanges listen addresses (which feed Kademlia).
    pub(crate) identify: identify::Behaviour,
    /// Liveness.
    pub(crate) ping: ping::Behaviour,
    /// Local-link discovery, when enabled.
    pub(crate) mdns: Toggle<mdns::tokio::Behaviour>,
}

impl Behaviour {
    /// Builds every protocol for the node with this key and configuration.
    pub(crate) fn new(key: &identity::Keypair, config: &NetConfig) -> Result<Self, NetError> {
        let peer_id = key.public().to_peer_id();
        let mdns = if config.mdns {
            let mdns_config = mdns::Config {
                query_interval: MDNS_QUERY_INTERVAL,
                ..mdns::Config::default()
            };
            let m = mdns::tokio::Behaviour::new(mdns_config, peer_id).map_err(NetError::Mdns)?;
            Some(m)
        } else {
            None
        };
        let limits = connection_limits::ConnectionLimits::default()
            .with_max_established(Some(config.max_connections))
            .with_max_established_per_peer(Some(config.max_connections_per_peer))
            .with_max_pending_incoming(Some(config.max_pending_connections))
            .with_max_pending_outgoing(Some(config.max_pending_connections));
        let rr_config = request_response::Config::default()
            .with_request_timeout(TRANSPORT_REQUEST_TIMEOUT)
            .with_max_concurrent_streams(MAX_STREAMS_PER_CONNECTION);
        Ok(Self {
            blocked: allow_block_list::Behaviour::default(),
            limits: connection_limits::Behaviour::new(limits),
            gossipsub: gossip(key, config)?,
            request_response: request_response::Behaviour::with_codec(
                FrameCodec::default()
                    .with_throttle(Throttle::new(config.upload_limit, config.download_limit)),
                [(REQUEST_PROTOCOL, request_response::ProtocolSupport::Full)],
                rr_config,
            ),
            kad: kademlia(peer_id),
            identify: identify::Behaviour::new(
                identify::Config::new(IDENTIFY_PROTOCOL.into(), key.public())
                    .with_agent_version(format!("waveguard/{}", env!("CARGO_PKG_VERSION"))),
            ),
            ping: ping::Behaviour::default(),
            mdns: mdns.into(),
        })
    }
}

/// The content-addressed message ID: blake3 of the data, so the same bytes
/// relayed by different authors or republished are one message.
pub(crate) fn message_id(message: &gossipsub::Message) -> gossipsub::MessageId {
    gossipsub::MessageId::from(blake3::hash(&message.data).as_bytes().to_vec())
}

/// Gossipsub: signed messages, strict validation, nothing forwarded before
/// the engine's verdict, peer scoring that punishes rejected messages.
fn gossip(key: &identity::Keypair, config: &NetConfig) -> Result<gossipsub::Behaviour, NetError> {
    let gs_config = gossipsub::ConfigBuilder::default()
        .validation_mode(gossipsub::ValidationMode::Strict)
        .validate_messages()
        .max_transmit_size(config.max_gossip_bytes + GOSSIP_RPC_OVERHEAD_BYTES)
        .message_id_fn(message_id)
        // A node that restarted with its key (a seeder after a crash, say) is
        // sent its own messages of before the restart by peers that still
        // hold them. Gossipsub would count each as an invalid message against
        // the peer that relayed it, which here means a ban of an honest peer;
        // let them through to the engine instead, which judges them like any
        // other (stale metadata and known reports are ignored).
        .allow_self_origin(true)
        .build()
        .map_err(|e| NetError::Gossip(e.to_string()))?;
    let mut gs = gossipsub::Behaviour::new(
        gossipsub::MessageAuthenticity::Signed(key.clone()),
        gs_config,
    )
    .map_err(|e| NetError::Gossip(e.to_string()))?;
    gs.with_peer_score(score_params(), score_thresholds())
        .map_err(NetError::Gossip)?;
    for topic in TOPICS {
        gs.subscribe(&gossipsub::IdentTopic::new(topic))
            .map_err(|e| NetError::Gossip(format!("cannot subscribe to {topic}: {e}")))?;
    }
    Ok(gs)
}

/// Gossipsub's score thresholds, unchanged from its defaults: below the
/// graylist threshold (-80) it ignores everything a peer sends, and the
/// network layer then bans the peer (see [`super::Network::ban_scored_out`]).
pub(crate) fn score_thresholds() -> gossipsub::PeerScoreThresholds {
    gossipsub::PeerScoreThresholds::default()
}

/// Peer scoring tuned for waveguard's quiet topics.
fn score_params() -> gossipsub::PeerScoreParams {
    let topic = gossipsub::TopicScoreParams {
        topic_weight: 1.0,
        // Time in mesh counts in seconds, up to an hour, and first deliveries up to 2000,
        // but both weigh little: a long-standing peer earns at most a few points, never
        // enough to absorb the penalty of one invalid message.
        time_in_mesh_quantum: Duration::from_secs(1),
        time_in_mesh_weight: 0.001,
        first_message_deliveries_weight: 0.001,
        // Waveguard topics carry a message every few minutes at most, so
        // "too few deliveries" penalties (P3, P3b) would punish honest peers.
        mesh_message_deliveries_weight: 0.0,
        mesh_failure_penalty_weight: 0.0,
        invalid_message_deliveries_weight: INVALID_MESSAGE_WEIGHT,
        invalid_message_deliveries_decay: gossipsub::score_parameter_decay(INVALID_MESSAGE_MEMORY),
        ..Default::default()
    };
    let mut params = gossipsub::PeerScoreParams {
        // Fleets sit behind shared NAT addresses; many honest nodes per IP is normal.
        ip_colocation_factor_weight: 0.0,
        retain_score: SCORE_RETENTION,
        // No behaviour penalty (P7, squared broken IWANT promises): the network layer bans a
        // peer below the graylist threshold, and a slow or crashed honest peer (a loaded
        // machine, a killed seeder restarting with its key) breaks a few promises; at the
        // default weight of -10, three of them would ban it. Floods are scored by P4
        // (invalid messages) and by the request limits instead.
        behaviour_penalty_weight: 0.0,
        ..Default::default()
    };
    for name in TOPICS {
        params
            .topics
            .insert(gossipsub::IdentTopic::new(name).hash(), topic.clone());
    }
    params
}

/// Kademlia on the private protocol, as a server (fleet nodes are reachable
/// peers, not clients of a public DHT), storing no records for others.
fn kademlia(peer_id: libp2p::PeerId) -> kad::Behaviour<kad::store::MemoryStore> {
    let mut config = kad::Config::new(KAD_PROTOCOL);
    // Discovery only: never store records a peer pushes to us.
    config.set_record_filtering(kad::StoreInserts::FilterBoth);
    let mut kad =
        kad::Behaviour::with_config(peer_id, kad::store::MemoryStore::new(peer_id), config);
    kad.set_mode(Some(kad::Mode::Server));
    kad
}

/// The waveguard topic whose hash this is, if any.
pub(crate) fn topic_name(hash: &gossipsub::TopicHash) -> Option<&'static str> {
    TOPICS
        .into_iter()
        .find(|name| gossipsub::IdentTopic::new(*name).hash() == *hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn score_parameters_are_accepted_by_gossipsub() {
        score_params().validate().unwrap();
        gossipsub::PeerScoreThresholds::default()
            .validate()
            .unwrap();
    }

    #[test]
    fn one_rejected_message_graylists_even_the_best_scored_sender() {
        let params = score_params();
        let t = &params.topics[&gossipsub::IdentTopic::new(TOPIC_HEALTH).hash()];
        let penalty = t.topic_weight * t.invalid_message_deliveries_weight;
        // The most a peer can earn: full time in mesh and every first delivery, on every topic.
        let best: f64 = params
            .topics
            .values()
            .map(|t| {
                t.topic_weight
                    * (t.time_in_mesh_weight * t.time_in_mesh_cap
                        + t.first_message_deliveries_weight * t.first_message_deliveries_cap)
            })
            .sum();
        assert!(best > 0.0);
        assert!(
            best + penalty < gossipsub::PeerScoreThresholds::default().graylist_threshold,
            "a peer with score {best} survives one invalid message"
        );
    }

    #[test]
    fn a_banned_peers_score_is_forgotten_before_its_ban_ends() {
        assert_eq!(score_params().retain_score, SCORE_RETENTION);
        assert!(SCORE_RETENTION < super::super::bans::SCORE_BAN);
    }

    #[test]
    fn message_ids_are_the_blake3_of_the_data() {
        let msg = |source| gossipsub::Message {
            source,
            data: b"frame".to_vec(),
            sequence_number: Some(7),
            topic: gossipsub::IdentTopic::new(TOPIC_METADATA).hash(),
        };
        let a = message_id(&msg(None));
        let b = message_id(&msg(Some(libp2p::PeerId::random())));
        assert_eq!(a, b);
        assert_eq!(a.0, blake3::hash(b"frame").as_bytes().to_vec());
    }

    #[test]
    fn topic_names_round_trip_through_their_hashes() {
        for name in TOPICS {
            assert_eq!(
                topic_name(&gossipsub::IdentTopic::new(name).hash()),
                Some(name)
            );
        }
        assert_eq!(
            topic_name(&gossipsub::IdentTopic::new("other").hash()),
            None
        );
    }
}
