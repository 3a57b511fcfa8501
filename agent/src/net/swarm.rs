//! [`Network`]: the libp2p swarm behind a small driver-facing API that speaks
//! node IDs and `u64` handles, never libp2p types (addresses aside).
//!
//! It builds the transports (TCP with noise and yamux, and QUIC), turns
//! swarm events into [`NetEvent`]s, keeps the bounded maps from handles to
//! pending gossip verdicts and inbound response channels, dials discovered
//! peers, redials lost bootstrap peers, and enforces bans through the block
//! list. It also bans, on its own and for [`SCORE_BAN`] (longer for a repeat offender), a peer whose gossip
//! score falls below gossipsub's graylist threshold: gossipsub ignores such
//! a peer anyway, and only a peer that delivered messages that failed
//! validation gets there (see [`Network::ban_scored_out`]). Timed bans end
//! on their own ([`Network::expire_bans`]).

use super::bans::{BanList, Inserted, SCORE_BAN};
use super::behaviour::{
    score_thresholds, topic_name, Behaviour, BehaviourEvent, KAD_PROTOCOL, TOPICS,
};
use super::bounds::{
    MAX_IDENTIFY_ADDRS, MAX_PENDING_REQUESTS, MAX_PENDING_RESPONSES, MAX_PENDING_VERDICTS,
};
use super::error::{
    BanError, DialError, NetError, PublishError, RequestFailure, RespondError, VerdictError,
};
use super::event::{Discovery, NetEvent, Traffic};
use super::handles::HandleMap;
use super::redial::{Redial, REDIAL_TICK};
use futures::StreamExt as _;
use libp2p::gossipsub::{self, MessageAcceptance, MessageId};
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, InboundRequestId, OutboundRequestId, ResponseChannel};
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::SwarmEvent;
use libp2p::{identify, identity, kad, mdns, noise, tcp, yamux, Multiaddr, PeerId, Swarm};
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};
use waveguard_protocol::limits::{MAX_BANS, MAX_FRAME_BYTES, MAX_REQUEST_BYTES};
use waveguard_protocol::node::Verdict;
use waveguard_protocol::NodeId;

/// What a publish did (none of these is an error worth stopping for).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Published {
    /// Sent to at least one peer.
    Sent,
    /// No connected peer subscribes to the topic yet; nothing was sent.
    NoPeers,
    /// The same bytes were published or relayed recently; not sent again.
    Duplicate,
}

/// A gossip message awaiting its verdict.
struct PendingVerdict {
    id: MessageId,
    source: PeerId,
}

/// An inbound request awaiting its response.
struct PendingResponse {
    peer: PeerId,
    id: InboundRequestId,
    channel: ResponseChannel<Vec<u8>>,
}

/// One of our requests in flight.
struct PendingRequest {
    request_id: u64,
    peer: PeerId,
}

/// A running libp2p node: gossip, requests and discovery for one waveguard node.
///
/// Drive it by awaiting [`Network::next_event`] in a loop (it is cancel-safe,
/// so it may sit in a `tokio::select!`) and call the other methods between
/// events. Every [`Network::send_request`] ends in exactly one
/// [`NetEvent::Response`] or [`NetEvent::RequestFailed`].
pub struct Network {
    swarm: Swarm<Behaviour>,
    local: NodeId,
    max_gossip_bytes: usize,
    target_peers: usize,
    /// Events ready for the driver, drained before the swarm is polled again.
    /// Holds only what the driver's own calls caused plus the few events of
    /// one swarm event, so it stays short.
    ready: VecDeque<NetEvent>,
    verdicts: HandleMap<PendingVerdict>,
    responses: HandleMap<PendingResponse>,
    requests: HashMap<OutboundRequestId, PendingRequest>,
    /// Connected peers and their payload traffic (bounded by the connection limits).
    traffic: HashMap<PeerId, Traffic>,
    /// Banned peers and when their bans end, oldest first, at most `MAX_BANS`.
    bans: BanList<PeerId>,
    /// When to dial lost bootstrap peers again, looked at every `redial_tick`.
    redial: Redial,
    redial_tick: tokio::time::Interval,
}

impl Network {
    /// Builds the swarm for `keypair` (the node key) and starts listening.
    /// Must be called inside a Tokio runtime.
    pub fn new(keypair: identity::Keypair, config: super::NetConfig) -> Result<Self, NetError> {
        config.validate()?;
        let local = node_id_of_key(&keypair)?;
        let behaviour = Behaviour::new(&keypair, &config)?;
        let idle = config.idle_timeout;
        let swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
            .with_tokio()
            .with_tcp(
                tcp::Config::default().nodelay(true),
                noise::Config::new,
                yamux::Config::default,
            )
            .map_err(|e| NetError::Transport(e.to_string()))?
            .with_quic()
            .with_behaviour(|_| behaviour)
            .map_err(|e| NetError::Transport(e.to_string()))?
            .with_swarm_config(|c| c.with_idle_connection_timeout(idle))
            .build();
        let mut net = Self {
            swarm,
            local,
            max_gossip_bytes: config.max_gossip_bytes,
            target_peers: config.target_peers,
            ready: VecDeque::new(),
            verdicts: HandleMap::new(MAX_PENDING_VERDICTS),
            responses: HandleMap::new(MAX_PENDING_RESPONSES),
            requests: HashMap::new(),
            traffic: HashMap::new(),
            bans: BanList::new(MAX_BANS),
            redial: Redial::new(&config.bootstrap, Instant::now()),
            redial_tick: tokio::time::interval(REDIAL_TICK),
        };
        net.redial_tick
            .set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        for addr in &config.listen {
            net.swarm
                .listen_on(addr.clone())
                .map_err(|e| NetError::Listen {
                    addr: addr.clone(),
                    reason: e.to_string(),
                })?;
        }
        net.bootstrap(&config.bootstrap);
        Ok(net)
    }

    /// Dials the bootstrap peers and seeds Kademlia with those whose address
    /// names their peer ID. A peer that cannot be dialed is reported as
    /// [`NetEvent::DialFailed`], not as an error: others may still answer.
    fn bootstrap(&mut self, addrs: &[Multiaddr]) {
        let mut seeded = false;
        for addr in addrs {
            if let Some(Protocol::P2p(peer)) = addr.iter().last() {
                let mut bare = addr.clone();
                bare.pop();
                self.swarm.behaviour_mut().kad.add_address(&peer, bare);
                seeded = true;
            }
            if let Err(e) = self.dial(addr.clone()) {
                tracing::warn!("bootstrap: {e}");
                self.ready.push_back(NetEvent::DialFailed {
                    peer: None,
                    reason: e.to_string(),
                });
            }
        }
        if seeded {
            // Fails only without known peers, which `seeded` rules out.
            let _ = self.swarm.behaviour_mut().kad.bootstrap();
        }
    }

    /// This node's ID (its ed25519 public key).
    pub fn local_node_id(&self) -> NodeId {
        self.local
    }

    /// The addresses the node currently listens on.
    pub fn listen_addrs(&self) -> Vec<Multiaddr> {
        self.swarm.listeners().cloned().collect()
    }

    /// The peers with at least one open connection.
    pub fn connected_peers(&self) -> Vec<NodeId> {
        self.traffic.keys().filter_map(node_id_of_peer).collect()
    }

    /// Payload bytes exchanged with a connected peer (see [`Traffic`]).
    pub fn traffic(&self, node: &NodeId) -> Option<Traffic> {
        self.traffic.get(&peer_id_of(node)?).copied()
    }

    /// Gossipsub's score of a peer, if scoring knows it; negative after it
    /// relayed messages the engine rejected.
    pub fn peer_score(&self, node: &NodeId) -> Option<f64> {
        self.swarm
            .behaviour()
            .gossipsub
            .peer_score(&peer_id_of(node)?)
    }

    /// Whether a peer is banned.
    pub fn is_banned(&self, node: &NodeId) -> bool {
        peer_id_of(node).is_some_and(|p| self.banned(&p))
    }

    /// When a peer's ban ends: `None` if it is not banned, `Some(None)` if
    /// the ban lasts until lifted.
    pub fn ban_ends(&self, node: &NodeId) -> Option<Option<Instant>> {
        let peer = peer_id_of(node)?;
        if !self.banned(&peer) {
            return None;
        }
        self.bans.ends(&peer)
    }

    fn banned(&self, peer: &PeerId) -> bool {
        self.bans.contains(peer, Instant::now())
    }

    /// Starts dialing an address (progress shows as [`NetEvent::PeerConnected`]
    /// or [`NetEvent::DialFailed`]).
    pub fn dial(&mut self, addr: Multiaddr) -> Result<(), DialError> {
        self.swarm
            .dial(addr.clone())
            .map_err(|e| DialError::Refused {
                addr,
                reason: e.to_string(),
            })
    }

    /// Publishes `data` on a waveguard topic. Having no subscribed peer yet
    /// or publishing the same bytes again is not an error (see [`Published`]).
    pub fn publish(&mut self, topic: &str, data: Vec<u8>) -> Result<Published, PublishError> {
        let Some(name) = TOPICS.into_iter().find(|t| *t == topic) else {
            return Err(PublishError::UnknownTopic(topic.to_owned()));
        };
        if data.len() > self.max_gossip_bytes {
            return Err(PublishError::TooLarge {
                len: data.len(),
                max: self.max_gossip_bytes,
            });
        }
        let topic = gossipsub::IdentTopic::new(name);
        match self.swarm.behaviour_mut().gossipsub.publish(topic, data) {
            Ok(_) => Ok(Published::Sent),
            Err(gossipsub::PublishError::NoPeersSubscribedToTopic) => {
                tracing::info!(topic = name, "publish: no peer subscribes to the topic yet");
                Ok(Published::NoPeers)
            }
            Err(gossipsub::PublishError::Duplicate) => {
                tracing::debug!(topic = name, "publish: the same message was sent recently");
                Ok(Published::Duplicate)
            }
            Err(e) => Err(PublishError::Gossipsub(e.to_string())),
        }
    }

    /// Passes the engine's verdict on a gossip message to gossipsub: Accept
    /// forwards it, Ignore drops it, Reject drops it and penalises the peer
    /// that relayed it.
    pub fn report_verdict(
        &mut self,
        message_id: u64,
        verdict: Verdict,
    ) -> Result<(), VerdictError> {
        let pending = self
            .verdicts
            .remove(message_id)
            .ok_or(VerdictError::UnknownMessage(message_id))?;
        let acceptance = match verdict {
            Verdict::Accept => MessageAcceptance::Accept,
            Verdict::Ignore => MessageAcceptance::Ignore,
            Verdict::Reject => MessageAcceptance::Reject,
        };
        // `false` means gossipsub's own cache already let the message go;
        // there is nothing left to forward or penalise.
        let _ = self
            .swarm
            .behaviour_mut()
            .gossipsub
            .report_message_validation_result(&pending.id, &pending.source, acceptance);
        if matches!(verdict, Verdict::Reject) {
            self.ban_if_scored_out(pending.source);
        }
        Ok(())
    }

    /// Bans every connected peer whose gossip score is below gossipsub's
    /// graylist threshold, each reported as [`NetEvent::PeerScoredOut`].
    ///
    /// A rejected verdict checks its relayer at once; this sweep catches the
    /// penalties gossipsub gives by itself (unsigned or badly signed
    /// messages, which never reach the engine). Call it now and then (the
    /// driver does, once a second). Gossipsub drops everything a graylisted
    /// peer sends but keeps its connection, and its requests would still be
    /// served; the ban closes the connection and refuses new ones.
    pub fn ban_scored_out(&mut self) {
        let peers: Vec<PeerId> = self.traffic.keys().copied().collect();
        for peer in peers {
            self.ban_if_scored_out(peer);
        }
    }

    /// Bans `peer` if its gossip score is below the graylist threshold.
    fn ban_if_scored_out(&mut self, peer: PeerId) {
        if self.banned(&peer) {
            return;
        }
        let Some(score) = self.swarm.behaviour().gossipsub.peer_score(&peer) else {
            return;
        };
        if score >= score_thresholds().graylist_threshold {
            return;
        }
        let Some(node) = node_id_of_peer(&peer) else {
            return;
        };
        if let Ok(length) = self.ban_repeat(node, SCORE_BAN) {
            tracing::debug!(%peer, score, ?length, "gossip score below the graylist threshold: banned");
            self.ready.push_back(NetEvent::PeerScoredOut {
                peer: node,
                // Saturating float-to-integer cast; scores here are at most a few thousand.
                score: score.floor() as i64,
                length,
            });
        }
    }

    /// Sends a request frame to a peer (dialing it if needed). The outcome
    /// comes back as [`NetEvent::Response`] or [`NetEvent::RequestFailed`]
    /// carrying `request_id`.
    pub fn send_request(&mut self, to: NodeId, request_id: u64, data: Vec<u8>) {
        let peer = match self.sendable(&to, data.len()) {
            Ok(peer) => peer,
            Err(reason) => {
                tracing::debug!(request_id, %reason, "request refused before sending");
                self.ready
                    .push_back(NetEvent::RequestFailed { request_id, reason });
                return;
            }
        };
        self.count(&peer, data.len(), 0);
        let id = self
            .swarm
            .behaviour_mut()
            .request_response
            .send_request(&peer, data);
        self.requests
            .insert(id, PendingRequest { request_id, peer });
    }

    /// The peer to send a request of `len` bytes to, or why it cannot be sent.
    fn sendable(&self, to: &NodeId, len: usize) -> Result<PeerId, RequestFailure> {
        if len > MAX_REQUEST_BYTES {
            return Err(RequestFailure::TooLarge {
                len,
                max: MAX_REQUEST_BYTES,
            });
        }
        if self.requests.len() >= MAX_PENDING_REQUESTS {
            return Err(RequestFailure::TooManyInFlight(self.requests.len()));
        }
        let peer = peer_id_of(to).ok_or(RequestFailure::NotAPeer)?;
        if self.banned(&peer) {
            return Err(RequestFailure::Banned);
        }
        Ok(peer)
    }

    /// Answers an inbound request.
    pub fn respond(&mut self, request_id: u64, data: Vec<u8>) -> Result<(), RespondError> {
        let pending = self
            .responses
            .remove(request_id)
            .ok_or(RespondError::UnknownRequest(request_id))?;
        if data.len() > MAX_FRAME_BYTES {
            // Dropping the channel tells the asker its request failed.
            return Err(RespondError::TooLarge {
                len: data.len(),
                max: MAX_FRAME_BYTES,
            });
        }
        let len = data.len();
        self.swarm
            .behaviour_mut()
            .request_response
            .send_response(pending.channel, data)
            .map_err(|_| RespondError::Closed(request_id))?;
        self.count(&pending.peer, len, 0);
        Ok(())
    }

    /// Disconnects a peer and refuses its connections until the ban is
    /// lifted (the engine's bans, which it keeps as long). See [`Network::ban_for`].
    pub fn ban(&mut self, node: NodeId) -> Result<(), BanError> {
        self.ban_for(node, None)
    }

    /// Disconnects a peer and refuses its connections for `length` (`None`:
    /// until lifted); [`Network::expire_bans`] lifts the ban when it ends. A
    /// peer already banned keeps the longer ban. At most `MAX_BANS` bans are
    /// kept; the oldest is lifted to make room.
    pub fn ban_for(&mut self, node: NodeId, length: Option<Duration>) -> Result<(), BanError> {
        let peer = peer_id_of(&node).ok_or(BanError::NotAPeer(node))?;
        // An ended ban not swept out yet is over: this one starts afresh.
        self.expire_bans();
        let inserted = self.bans.insert(peer, Instant::now(), length);
        self.enforce(peer, inserted);
        Ok(())
    }

    /// Bans a peer for an offence the network layer or the driver found
    /// (a gossip score out, undecodable requests): `base` the first time,
    /// twice as long for each earlier offence of the same identity, at most
    /// [`super::bans::MAX_REPEAT_BAN`]. Returns the ban's length.
    pub fn ban_repeat(&mut self, node: NodeId, base: Duration) -> Result<Duration, BanError> {
        let peer = peer_id_of(&node).ok_or(BanError::NotAPeer(node))?;
        self.expire_bans();
        let (inserted, length) = self.bans.insert_repeat(peer, Instant::now(), base);
        self.enforce(peer, inserted);
        Ok(length)
    }

    /// Applies a ban-list change to the swarm: unblocks the peer whose ban was
    /// lifted to make room, blocks a newly banned one and forgets its address.
    fn enforce(&mut self, peer: PeerId, inserted: Inserted<PeerId>) {
        if let Some(old) = inserted.evicted {
            self.swarm.behaviour_mut().blocked.unblock_peer(old);
        }
        if inserted.new {
            let behaviour = self.swarm.behaviour_mut();
            behaviour.blocked.block_peer(peer);
            behaviour.kad.remove_peer(&peer);
        }
    }

    /// Lifts every timed ban that has ended, each reported as
    /// [`NetEvent::BanLifted`]: the peer may connect again and is dialed
    /// again when discovered. Call it now and then (the driver does, once a
    /// second).
    pub fn expire_bans(&mut self) {
        for peer in self.bans.expire(Instant::now()) {
            self.swarm.behaviour_mut().blocked.unblock_peer(peer);
            if let Some(node) = node_id_of_peer(&peer) {
                tracing::debug!(%peer, "ban ended");
                self.ready.push_back(NetEvent::BanLifted(node));
            }
        }
    }

    /// The next event. Cancel-safe: an event is only taken from the swarm
    /// and processed within one poll, so dropping the future loses nothing.
    pub async fn next_event(&mut self) -> NetEvent {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return event;
            }
            // Both branches are cancel-safe, so this loop stays cancel-safe.
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                _ = self.redial_tick.tick() => self.redial(),
            }
        }
    }

    /// Dials again the bootstrap peers whose connections were lost, while
    /// fewer than the target peers are connected (see [`super::redial`]).
    fn redial(&mut self) {
        let now = Instant::now();
        let wanted = self.traffic.len() < self.target_peers;
        let (traffic, bans) = (&self.traffic, &self.bans);
        let due = self.redial.due(
            now,
            wanted,
            |p| match p {
                Some(p) => traffic.contains_key(p) || bans.contains(p, now),
                None => !traffic.is_empty(),
            },
            || getrandom::u32().unwrap_or(u32::MAX / 2),
        );
        for (peer, addr) in due {
            let opts = match peer {
                Some(peer) => DialOpts::peer_id(peer)
                    .condition(PeerCondition::DisconnectedAndNotDialing)
                    .addresses(vec![addr.clone()])
                    .build(),
                None => DialOpts::unknown_peer_id().address(addr.clone()).build(),
            };
            match self.swarm.dial(opts) {
                Ok(()) => tracing::debug!(%addr, "redialing a lost bootstrap peer"),
                Err(e) => tracing::debug!(%addr, %e, "bootstrap redial not started"),
            }
        }
    }

    /// Adds payload bytes to a connected peer's counters.
    fn count(&mut self, peer: &PeerId, sent: usize, received: usize) {
        if let Some(t) = self.traffic.get_mut(peer) {
            t.sent = t.sent.saturating_add(sent as u64);
            t.received = t.received.saturating_add(received as u64);
        }
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::Behaviour(event) => self.on_behaviour_event(event),
            SwarmEvent::ConnectionEstablished {
                peer_id,
                num_established,
                ..
            } => {
                let Some(node) = node_id_of_peer(&peer_id) else {
                    // Only ed25519 keys are compiled in, so this cannot
                    // happen; refuse the peer rather than trust it.
                    let _ = self.swarm.disconnect_peer_id(peer_id);
                    return;
                };
                if num_established.get() == 1 {
                    self.redial.connected(&peer_id);
                    self.traffic.insert(peer_id, Traffic::default());
                    self.ready.push_back(NetEvent::PeerConnected(node));
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => self.peer_gone(peer_id),
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!(%address, "listening");
                self.ready.push_back(NetEvent::Listening(address));
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                self.ready.push_back(NetEvent::ListenAddrExpired(address));
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                tracing::debug!(?peer_id, %error, "dial failed");
                self.ready.push_back(NetEvent::DialFailed {
                    peer: peer_id.as_ref().and_then(node_id_of_peer),
                    reason: error.to_string(),
                });
            }
            SwarmEvent::IncomingConnectionError {
                error,
                send_back_addr,
                ..
            } => {
                tracing::debug!(%send_back_addr, %error, "incoming connection failed");
            }
            _ => {}
        }
    }

    /// The last connection to a peer closed: report it if it was reported as connected.
    fn peer_gone(&mut self, peer: PeerId) {
        let was_reported = self.traffic.remove(&peer).is_some();
        self.redial.disconnected(&peer, Instant::now());
        match node_id_of_peer(&peer) {
            Some(node) if was_reported => self.ready.push_back(NetEvent::PeerDisconnected(node)),
            _ => {}
        }
    }

    fn on_behaviour_event(&mut self, event: BehaviourEvent) {
        match event {
            BehaviourEvent::Gossipsub(e) => self.on_gossip(e),
            BehaviourEvent::RequestResponse(e) => self.on_request_response(e),
            BehaviourEvent::Kad(e) => self.on_kad(e),
            BehaviourEvent::Identify(e) => self.on_identify(e),
            BehaviourEvent::Mdns(e) => self.on_mdns(e),
            BehaviourEvent::Ping(_) => {}
            // The block list and connection limits emit no events.
            BehaviourEvent::Blocked(never) | BehaviourEvent::Limits(never) => match never {},
        }
    }

    fn on_gossip(&mut self, event: gossipsub::Event) {
        match event {
            gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            } => {
                let from = node_id_of_peer(&propagation_source);
                let topic = topic_name(&message.topic);
                let (Some(from), Some(topic)) = (from, topic) else {
                    // Not from a waveguard node or not on a waveguard topic:
                    // nothing the engine could judge.
                    let _ = self
                        .swarm
                        .behaviour_mut()
                        .gossipsub
                        .report_message_validation_result(
                            &message_id,
                            &propagation_source,
                            MessageAcceptance::Ignore,
                        );
                    return;
                };
                self.count(&propagation_source, 0, message.data.len());
                let pending = PendingVerdict {
                    id: message_id,
                    source: propagation_source,
                };
                let (handle, evicted) = self.verdicts.insert(pending);
                if let Some((old, stale)) = evicted {
                    tracing::warn!(
                        handle = old,
                        "gossip verdict never came; ignoring the message"
                    );
                    let _ = self
                        .swarm
                        .behaviour_mut()
                        .gossipsub
                        .report_message_validation_result(
                            &stale.id,
                            &stale.source,
                            MessageAcceptance::Ignore,
                        );
                }
                self.ready.push_back(NetEvent::Gossip {
                    from,
                    message_id: handle,
                    topic,
                    data: message.data,
                });
            }
            gossipsub::Event::Subscribed { peer_id, topic } => {
                if let (Some(peer), Some(topic)) = (node_id_of_peer(&peer_id), topic_name(&topic)) {
                    self.ready.push_back(NetEvent::Subscribed { peer, topic });
                }
            }
            gossipsub::Event::SlowPeer { peer_id, .. } => {
                tracing::debug!(%peer_id, "gossip peer is slow to take messages");
            }
            _ => {}
        }
    }

    fn on_request_response(&mut self, event: request_response::Event<Vec<u8>, Vec<u8>>) {
        use request_response::{Event, Message, OutboundFailure};
        match event {
            Event::Message {
                peer,
                message:
                    Message::Request {
                        request_id,
                        request,
                        channel,
                    },
                ..
            } => {
                let Some(from) = node_id_of_peer(&peer) else {
                    return; // dropping the channel fails the request
                };
                self.count(&peer, 0, request.len());
                let pending = PendingResponse {
                    peer,
                    id: request_id,
                    channel,
                };
                let (handle, evicted) = self.responses.insert(pending);
                if let Some((old, _dropped)) = evicted {
                    tracing::warn!(handle = old, "response never came; the request is dropped");
                }
                self.ready.push_back(NetEvent::Request {
                    from,
                    request_id: handle,
                    data: request,
                });
            }
            Event::Message {
                peer,
                message:
                    Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                let Some(pending) = self.requests.remove(&request_id) else {
                    return;
                };
                self.count(&peer, 0, response.len());
                match node_id_of_peer(&peer) {
                    Some(from) => self.ready.push_back(NetEvent::Response {
                        from,
                        request_id: pending.request_id,
                        data: response,
                    }),
                    None => self.ready.push_back(NetEvent::RequestFailed {
                        request_id: pending.request_id,
                        reason: RequestFailure::NotAPeer,
                    }),
                }
            }
            Event::OutboundFailure {
                request_id, error, ..
            } => {
                let Some(pending) = self.requests.remove(&request_id) else {
                    return;
                };
                let reason = match error {
                    OutboundFailure::DialFailure if self.banned(&pending.peer) => {
                        RequestFailure::Banned
                    }
                    OutboundFailure::DialFailure => RequestFailure::Unreachable,
                    OutboundFailure::Timeout => RequestFailure::Timeout,
                    OutboundFailure::ConnectionClosed => RequestFailure::ConnectionClosed,
                    OutboundFailure::UnsupportedProtocols => RequestFailure::UnsupportedProtocol,
                    OutboundFailure::Io(e) => RequestFailure::Io(e.to_string()),
                };
                tracing::debug!(request_id = pending.request_id, %reason, "request failed");
                self.ready.push_back(NetEvent::RequestFailed {
                    request_id: pending.request_id,
                    reason,
                });
            }
            Event::InboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                tracing::debug!(%peer, %error, "inbound request failed");
                // Its channel is dead; forget the handle so respond() says so.
                self.responses
                    .remove_where(|p| p.peer == peer && p.id == request_id);
            }
            Event::ResponseSent { .. } => {}
        }
    }

    fn on_identify(&mut self, event: identify::Event) {
        if let identify::Event::Received { peer_id, info, .. } = event {
            // Only peers speaking our DHT go into its routing table.
            if !info.protocols.contains(&KAD_PROTOCOL) {
                return;
            }
            for addr in info.listen_addrs.into_iter().take(MAX_IDENTIFY_ADDRS) {
                self.swarm.behaviour_mut().kad.add_address(&peer_id, addr);
            }
        }
    }

    fn on_kad(&mut self, event: kad::Event) {
        if let kad::Event::RoutingUpdated {
            peer, addresses, ..
        } = event
        {
            self.discovered(peer, addresses.into_vec(), Discovery::Kademlia);
        }
    }

    fn on_mdns(&mut self, event: mdns::Event) {
        if let mdns::Event::Discovered(found) = event {
            let mut by_peer: HashMap<PeerId, Vec<Multiaddr>> = HashMap::new();
            for (peer, addr) in found {
                self.swarm
                    .behaviour_mut()
                    .kad
                    .add_address(&peer, addr.clone());
                by_peer.entry(peer).or_default().push(addr);
            }
            for (peer, addrs) in by_peer {
                self.discovered(peer, addrs, Discovery::Mdns);
            }
        }
    }

    /// Dials a discovered peer unless it is connected or we already have the
    /// peers we want, and reports it (see [`report_discovery`]). Us and
    /// banned peers are ignored.
    fn discovered(&mut self, peer: PeerId, addrs: Vec<Multiaddr>, via: Discovery) {
        if peer == *self.swarm.local_peer_id() || self.banned(&peer) {
            return;
        }
        let Some(node) = node_id_of_peer(&peer) else {
            return;
        };
        let wanted = !self.traffic.contains_key(&peer) && self.traffic.len() < self.target_peers;
        let dialing = wanted && {
            let opts = DialOpts::peer_id(peer)
                .condition(PeerCondition::DisconnectedAndNotDialing)
                .addresses(addrs)
                .build();
            self.swarm.dial(opts).is_ok()
        };
        if report_discovery(via, dialing) {
            self.ready
                .push_back(NetEvent::Discovered { peer: node, via });
        }
    }
}

/// Whether a discovery becomes a [`NetEvent::Discovered`]. mDNS finding a
/// peer says it shares our LAN whether or not we dial it: when the peer found
/// us first and is already connected, dropping the event would leave it a WAN
/// peer here while we are a LAN peer there, and the two would disagree on the
/// site's WAN fetchers (docs/protocol.md 15.7). Kademlia finds are reported
/// only when dialed.
fn report_discovery(via: Discovery, dialing: bool) -> bool {
    via == Discovery::Mdns || dialing
}

/// The node ID of an ed25519 keypair.
fn node_id_of_key(key: &identity::Keypair) -> Result<NodeId, NetError> {
    let public = key.public();
    let ed = public
        .clone()
        .try_into_ed25519()
        .map_err(|_| NetError::NotEd25519(format!("{:?}", public.key_type())))?;
    Ok(NodeId(ed.to_bytes()))
}

/// The node ID behind a peer ID, for ed25519 peers.
fn node_id_of_peer(peer: &PeerId) -> Option<NodeId> {
    NodeId::from_peer_id_bytes(&peer.to_bytes())
}

/// The peer ID of a node ID.
fn peer_id_of(node: &NodeId) -> Option<PeerId> {
    PeerId::from_bytes(&node.to_peer_id_bytes()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_and_peer_ids_convert_both_ways() {
        let key = identity::Keypair::generate_ed25519();
        let node = node_id_of_key(&key).unwrap();
        let peer = key.public().to_peer_id();
        assert_eq!(peer_id_of(&node), Some(peer));
        assert_eq!(node_id_of_peer(&peer), Some(node));
    }

    #[test]
    fn an_mdns_find_is_reported_also_when_the_peer_is_already_connected() {
        // Connected (or at the peer target): not dialed, still a LAN peer.
        assert!(report_discovery(Discovery::Mdns, false));
        assert!(report_discovery(Discovery::Mdns, true));
        assert!(report_discovery(Discovery::Kademlia, true));
        assert!(!report_discovery(Discovery::Kademlia, false));
    }
}
