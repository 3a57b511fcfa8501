//! Networking tests: real libp2p nodes on 127.0.0.1 (mDNS off), each driven
//! by its own task, checking what the driver relies on: peers reported once,
//! gossip forwarded only after Accept, request/response with large answers,
//! frame limits enforced on both sides, and bans that stick.

use futures::StreamExt as _;
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::SwarmEvent;
use libp2p::{noise, tcp, yamux, PeerId};
use std::future::Future;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::timeout;
use waveguard_agent::net::{
    FrameCodec, Keypair, Multiaddr, NetConfig, NetEvent, Network, Published, RequestFailure,
    RespondError, Verdict, REQUEST_PROTOCOL,
};
use waveguard_protocol::limits::{MAX_BANS, MAX_FRAME_BYTES, MAX_REQUEST_BYTES};
use waveguard_protocol::wire::{TOPIC_DIRECTIVES, TOPIC_HEALTH, TOPIC_METADATA};
use waveguard_protocol::NodeId;

/// Longest wait for any one expected event.
const WAIT: Duration = Duration::from_secs(10);
/// How long "nothing happens" is watched for.
const QUIET: Duration = Duration::from_millis(800);

type Command = Box<dyn FnOnce(&mut Network) + Send>;

/// Builds a test node: loopback only, mDNS off.
struct PeerBuilder {
    config: NetConfig,
    key: Option<Keypair>,
}

impl PeerBuilder {
    fn new() -> Self {
        Self {
            config: NetConfig::loopback(),
            key: None,
        }
    }

    /// Use this key (a node restarting with its key) instead of a new one.
    fn key(mut self, key: &Keypair) -> Self {
        self.key = Some(key.clone());
        self
    }

    /// Listen on TCP at this address only (a node restarting on its port).
    fn listen_tcp(mut self, addr: Multiaddr) -> Self {
        self.config.listen = vec![addr];
        self
    }

    /// Never dial discovered peers, so topologies stay as the test wires them.
    fn no_autodial(mut self) -> Self {
        self.config.target_peers = 0;
        self
    }

    /// Dial this peer at start, and seed Kademlia with it.
    fn bootstrap(mut self, peer: &Peer) -> Self {
        let addr = peer
            .tcp()
            .with(libp2p::multiaddr::Protocol::P2p(peer_id(peer.node)));
        self.config.bootstrap.push(addr);
        self
    }

    async fn start(self) -> Peer {
        let tcp_only = self.config.listen.len() == 1;
        let key = self.key.unwrap_or_else(Keypair::generate_ed25519);
        let mut net = Network::new(key, self.config).expect("network builds");
        let node = net.local_node_id();
        let (cmd_tx, mut cmd_rx) = mpsc::unbounded_channel::<Command>();
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    ev = net.next_event() => if ev_tx.send(ev).is_err() { break },
                    cmd = cmd_rx.recv() => match cmd {
                        Some(f) => f(&mut net),
                        None => break,
                    },
                }
            }
        });
        let mut peer = Peer {
            node,
            tcp: None,
            quic: None,
            commands: cmd_tx,
            events: ev_rx,
            backlog: Vec::new(),
            task,
        };
        while peer.tcp.is_none() || (peer.quic.is_none() && !tcp_only) {
            let addr = peer
                .expect("a listen address", |e| match e {
                    NetEvent::Listening(a) => Some(a.clone()),
                    _ => None,
                })
                .await;
            if addr.to_string().contains("/quic-v1") {
                peer.quic = Some(addr);
            } else {
                peer.tcp = Some(addr);
            }
        }
        peer
    }
}

/// A running node, its events, and a way to call it.
struct Peer {
    node: NodeId,
    tcp: Option<Multiaddr>,
    quic: Option<Multiaddr>,
    commands: mpsc::UnboundedSender<Command>,
    events: mpsc::UnboundedReceiver<NetEvent>,
    /// Events seen while waiting for others, still to be matched.
    backlog: Vec<NetEvent>,
    task: JoinHandle<()>,
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Peer {
    /// Stops the node the way a killed process stops: its task, its
    /// network and every connection and listener go, now.
    async fn stop(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }

    fn tcp(&self) -> Multiaddr {
        self.tcp.clone().expect("started peers listen on TCP")
    }

    /// Runs `f` on the node's task and returns its result.
    async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Network) -> R + Send + 'static,
    ) -> R {
        let (tx, rx) = oneshot::channel();
        let command: Command = Box::new(move |net| {
            let _ = tx.send(f(net));
        });
        assert!(self.commands.send(command).is_ok(), "node task ended");
        rx.await.expect("node task answered")
    }

    /// Waits for the first event `pick` accepts, keeping the others.
    async fn expect<T>(&mut self, what: &str, mut pick: impl FnMut(&NetEvent) -> Option<T>) -> T {
        if let Some(i) = self.backlog.iter().position(|e| pick(e).is_some()) {
            let event = self.backlog.remove(i);
            return pick(&event).expect("matched above");
        }
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let next = tokio::time::timeout_at(deadline, self.events.recv()).await;
            let event = match next {
                Ok(Some(event)) => event,
                Ok(None) => panic!("node task ended while waiting for {what}"),
                Err(_) => panic!(
                    "timed out waiting for {what}; unmatched: {}",
                    self.summary()
                ),
            };
            if let Some(found) = pick(&event) {
                return found;
            }
            self.backlog.push(event);
        }
    }

    /// Asserts that no event `pick` accepts arrives within `QUIET`.
    async fn expect_none(&mut self, what: &str, mut pick: impl FnMut(&NetEvent) -> bool) {
        assert!(!self.backlog.iter().any(&mut pick), "unexpected {what}");
        let deadline = tokio::time::Instant::now() + QUIET;
        while let Ok(Some(event)) = tokio::time::timeout_at(deadline, self.events.recv()).await {
            assert!(!pick(&event), "unexpected {what}: {}", short(&event));
            self.backlog.push(event);
        }
    }

    fn summary(&self) -> String {
        self.backlog
            .iter()
            .map(short)
            .collect::<Vec<_>>()
            .join(", ")
    }

    async fn connected_to(&mut self, other: NodeId) {
        self.expect("a connection", |e| {
            (*e == NetEvent::PeerConnected(other)).then_some(())
        })
        .await;
    }

    /// Waits until `other` subscribes to every waveguard topic.
    async fn subscribed(&mut self, other: NodeId) {
        for topic in [TOPIC_METADATA, TOPIC_HEALTH, TOPIC_DIRECTIVES] {
            self.expect("a subscription", |e| {
                (*e == NetEvent::Subscribed { peer: other, topic }).then_some(())
            })
            .await;
        }
    }

    /// Waits for a gossip message and returns (relayer, handle, data).
    async fn gossip(&mut self) -> (NodeId, u64, Vec<u8>) {
        self.expect("gossip", |e| match e {
            NetEvent::Gossip {
                from,
                message_id,
                data,
                ..
            } => Some((*from, *message_id, data.clone())),
            _ => None,
        })
        .await
    }
}

/// The libp2p peer ID of a node.
fn peer_id(node: NodeId) -> PeerId {
    PeerId::from_bytes(&node.to_peer_id_bytes()).expect("node IDs are peer IDs")
}

/// An event's variant, without payloads (they may be megabytes).
fn short(e: &NetEvent) -> String {
    let text = format!("{e:?}");
    text.split([' ', '(', '{']).next().unwrap_or("").to_owned()
}

/// `b` dials `a`; both see the connection and each other's subscriptions.
async fn link(a: &mut Peer, b: &mut Peer) {
    let addr = a.tcp();
    b.call(move |net| net.dial(addr))
        .await
        .expect("dial starts");
    a.connected_to(b.node).await;
    b.connected_to(a.node).await;
    a.subscribed(b.node).await;
    b.subscribed(a.node).await;
}

/// Runs a test body with an overall time limit.
async fn bounded(body: impl Future<Output = ()>) {
    timeout(Duration::from_secs(30), body)
        .await
        .expect("the test finished in time");
}

/// A line a – b – c where a and c refuse each other, so everything from a
/// to c must pass through b.
async fn line() -> (Peer, Peer, Peer) {
    let mut a = PeerBuilder::new().no_autodial().start().await;
    let mut b = PeerBuilder::new().no_autodial().start().await;
    let mut c = PeerBuilder::new().no_autodial().start().await;
    let (an, cn) = (a.node, c.node);
    a.call(move |net| net.ban(cn)).await.unwrap();
    c.call(move |net| net.ban(an)).await.unwrap();
    link(&mut b, &mut a).await;
    link(&mut b, &mut c).await;
    (a, b, c)
}

#[tokio::test]
async fn two_nodes_connect_and_are_reported_once() {
    bounded(async {
        let mut a = PeerBuilder::new().start().await;
        let mut b = PeerBuilder::new().start().await;
        link(&mut a, &mut b).await;
        // A second connection (over QUIC this time) is not a new peer.
        let quic = a.quic.clone().unwrap();
        b.call(move |net| net.dial(quic)).await.unwrap();
        let (an, bn) = (a.node, b.node);
        a.expect_none("a second PeerConnected", |e| {
            *e == NetEvent::PeerConnected(bn)
        })
        .await;
        b.expect_none("a second PeerConnected", |e| {
            *e == NetEvent::PeerConnected(an)
        })
        .await;
        assert_eq!(a.call(|net| net.connected_peers()).await, vec![bn]);
        assert_eq!(b.call(|net| net.connected_peers()).await, vec![an]);
        assert!(a.call(|net| net.listen_addrs()).await.contains(&a.tcp()));
    })
    .await;
}

#[tokio::test]
async fn bootstrap_peers_are_dialed_at_start() {
    bounded(async {
        let mut b = PeerBuilder::new().start().await;
        let mut a = PeerBuilder::new().bootstrap(&b).start().await;
        a.connected_to(b.node).await;
        b.connected_to(a.node).await;
    })
    .await;
}

#[tokio::test]
async fn a_bootstrap_peer_that_is_not_there_is_reported_not_fatal() {
    bounded(async {
        // A port that was just free: nothing listens there any more.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dead: Multiaddr = format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap();
        let mut config = NetConfig::loopback();
        config.bootstrap.push(dead);
        let mut net = Network::new(Keypair::generate_ed25519(), config).unwrap();
        loop {
            if let NetEvent::DialFailed { .. } = net.next_event().await {
                break;
            }
        }
    })
    .await;
}

#[tokio::test]
async fn the_node_id_is_the_ed25519_public_key() {
    let key = Keypair::generate_ed25519();
    let public = key.public().try_into_ed25519().unwrap().to_bytes();
    let peer_id = key.public().to_peer_id();
    let net = Network::new(key, NetConfig::loopback()).unwrap();
    assert_eq!(net.local_node_id(), NodeId(public));
    assert_eq!(net.local_node_id().to_peer_id_string(), peer_id.to_string());
}

#[tokio::test]
async fn gossip_is_forwarded_only_after_accept() {
    bounded(async {
        let (a, mut b, mut c) = line().await;
        let sent = b"a metadata bundle".to_vec();
        let data = sent.clone();
        let published = a.call(move |net| net.publish(TOPIC_METADATA, data)).await;
        assert_eq!(published, Ok(Published::Sent));

        let (from, handle, got) = b.gossip().await;
        assert_eq!((from, got.as_slice()), (a.node, sent.as_slice()));
        // While b holds its verdict, nothing reaches c.
        c.expect_none("gossip before b's verdict", |e| {
            matches!(e, NetEvent::Gossip { .. })
        })
        .await;

        b.call(move |net| net.report_verdict(handle, Verdict::Accept))
            .await
            .unwrap();
        let (from, _, got) = c.gossip().await;
        assert_eq!((from, got), (b.node, sent));
        // A verdict is given once.
        let again = b
            .call(move |net| net.report_verdict(handle, Verdict::Accept))
            .await;
        assert!(again.is_err());
        // Ignoring is not penalised.
        let an = a.node;
        assert!(b.call(move |net| net.peer_score(&an)).await.unwrap() >= 0.0);
    })
    .await;
}

#[tokio::test]
async fn a_rejected_message_stops_and_penalises_its_relayer() {
    bounded(async {
        let (a, mut b, mut c) = line().await;
        a.call(|net| net.publish(TOPIC_HEALTH, b"forged evidence".to_vec()))
            .await
            .unwrap();
        let (_, handle, _) = b.gossip().await;
        b.call(move |net| net.report_verdict(handle, Verdict::Reject))
            .await
            .unwrap();
        c.expect_none("a rejected message", |e| {
            matches!(e, NetEvent::Gossip { .. })
        })
        .await;
        let an = a.node;
        let score = b.call(move |net| net.peer_score(&an)).await.unwrap();
        assert!(score < 0.0, "score {score}");
    })
    .await;
}

#[tokio::test]
async fn an_ignored_message_stops_without_penalty() {
    bounded(async {
        let (a, mut b, mut c) = line().await;
        a.call(|net| net.publish(TOPIC_DIRECTIVES, b"stale".to_vec()))
            .await
            .unwrap();
        let (_, handle, _) = b.gossip().await;
        b.call(move |net| net.report_verdict(handle, Verdict::Ignore))
            .await
            .unwrap();
        c.expect_none("an ignored message", |e| {
            matches!(e, NetEvent::Gossip { .. })
        })
        .await;
        let an = a.node;
        assert!(b.call(move |net| net.peer_score(&an)).await.unwrap() >= 0.0);
    })
    .await;
}

#[tokio::test]
async fn publishing_checks_topic_and_size_and_tolerates_no_peers() {
    bounded(async {
        let a = PeerBuilder::new().start().await;
        let lonely = a.call(|net| net.publish(TOPIC_HEALTH, vec![1])).await;
        assert_eq!(lonely, Ok(Published::NoPeers));
        let unknown = a.call(|net| net.publish("other/topic", vec![1])).await;
        assert!(unknown.unwrap_err().to_string().contains("other/topic"));
        let big = vec![0; waveguard_protocol::limits::MAX_GOSSIP_BYTES + 1];
        let too_big = a.call(move |net| net.publish(TOPIC_HEALTH, big)).await;
        assert!(too_big.unwrap_err().to_string().contains("exceeds"));
    })
    .await;
}

#[tokio::test]
async fn a_gossip_message_of_the_largest_size_gets_through() {
    bounded(async {
        let mut a = PeerBuilder::new().start().await;
        let mut b = PeerBuilder::new().start().await;
        link(&mut a, &mut b).await;
        let data = vec![9u8; waveguard_protocol::limits::MAX_GOSSIP_BYTES];
        let sent = data.clone();
        let published = a.call(move |net| net.publish(TOPIC_METADATA, data)).await;
        assert_eq!(published, Ok(Published::Sent));
        let (_, _, got) = b.gossip().await;
        assert!(got == sent, "the largest gossip message arrived intact");
    })
    .await;
}

#[tokio::test]
async fn a_request_gets_a_four_mebibyte_response_over_quic() {
    bounded(async {
        let mut a = PeerBuilder::new().start().await;
        let mut b = PeerBuilder::new().start().await;
        let quic = b.quic.clone().unwrap();
        a.call(move |net| net.dial(quic)).await.unwrap();
        a.connected_to(b.node).await;
        b.connected_to(a.node).await;

        let bn = b.node;
        a.call(move |net| net.send_request(bn, 42, b"give me chunk 7".to_vec()))
            .await;
        let (from, handle, asked) = b
            .expect("a request", |e| match e {
                NetEvent::Request {
                    from,
                    request_id,
                    data,
                } => Some((*from, *request_id, data.clone())),
                _ => None,
            })
            .await;
        assert_eq!((from, asked.as_slice()), (a.node, &b"give me chunk 7"[..]));

        let answer: Vec<u8> = (0..4 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
        let sent = answer.clone();
        b.call(move |net| net.respond(handle, answer))
            .await
            .unwrap();
        let (from, id, got) = a
            .expect("the response", |e| match e {
                NetEvent::Response {
                    from,
                    request_id,
                    data,
                } => Some((*from, *request_id, data.clone())),
                _ => None,
            })
            .await;
        assert_eq!((from, id), (b.node, 42));
        assert!(got == sent, "the 4 MiB response arrived intact");
        // A handle answers once.
        let twice = b.call(move |net| net.respond(handle, vec![])).await;
        assert_eq!(twice, Err(RespondError::UnknownRequest(handle)));
        let traffic = a.call(move |net| net.traffic(&bn)).await.unwrap();
        assert!(traffic.received >= sent.len() as u64, "{traffic:?}");
        assert_eq!(traffic.sent, b"give me chunk 7".len() as u64);
    })
    .await;
}

#[tokio::test]
async fn requests_over_the_cap_are_refused_before_sending() {
    bounded(async {
        let mut a = PeerBuilder::new().start().await;
        let mut b = PeerBuilder::new().start().await;
        link(&mut a, &mut b).await;
        let bn = b.node;
        a.call(move |net| net.send_request(bn, 7, vec![0; MAX_REQUEST_BYTES + 1]))
            .await;
        let reason = a
            .expect("the refusal", |e| match e {
                NetEvent::RequestFailed {
                    request_id: 7,
                    reason,
                } => Some(reason.clone()),
                _ => None,
            })
            .await;
        assert!(
            matches!(reason, RequestFailure::TooLarge { .. }),
            "{reason}"
        );
        // Exactly at the cap is fine.
        a.call(move |net| net.send_request(bn, 8, vec![1; MAX_REQUEST_BYTES]))
            .await;
        let len = b
            .expect("the largest request", |e| match e {
                NetEvent::Request { data, .. } => Some(data.len()),
                _ => None,
            })
            .await;
        assert_eq!(len, MAX_REQUEST_BYTES);
    })
    .await;
}

#[tokio::test]
async fn responses_over_the_frame_limit_are_refused_and_the_asker_told() {
    bounded(async {
        let mut a = PeerBuilder::new().start().await;
        let mut b = PeerBuilder::new().start().await;
        link(&mut a, &mut b).await;
        let bn = b.node;
        a.call(move |net| net.send_request(bn, 9, b"big please".to_vec()))
            .await;
        let handle = b
            .expect("a request", |e| match e {
                NetEvent::Request { request_id, .. } => Some(*request_id),
                _ => None,
            })
            .await;
        let huge = vec![0; MAX_FRAME_BYTES + 1];
        let refused = b.call(move |net| net.respond(handle, huge)).await;
        assert!(matches!(refused, Err(RespondError::TooLarge { .. })));
        a.expect("the failure", |e| {
            matches!(e, NetEvent::RequestFailed { request_id: 9, .. }).then_some(())
        })
        .await;
    })
    .await;
}

/// A peer whose codec would send requests up to 1 MiB is cut off by a
/// waveguard node at 128 KiB, and the node never sees the request.
#[tokio::test]
async fn an_oversized_request_from_a_rogue_peer_never_reaches_the_driver() {
    bounded(async {
        let mut b = PeerBuilder::new().start().await;
        let codec = FrameCodec::with_limits(1024 * 1024, MAX_FRAME_BYTES);
        let mut rogue = libp2p::SwarmBuilder::with_new_identity()
            .with_tokio()
            .with_tcp(
                tcp::Config::default(),
                noise::Config::new,
                yamux::Config::default,
            )
            .unwrap()
            .with_behaviour(|_| {
                request_response::Behaviour::with_codec(
                    codec,
                    [(REQUEST_PROTOCOL, ProtocolSupport::Full)],
                    request_response::Config::default(),
                )
            })
            .unwrap()
            .build();
        let b_peer = peer_id(b.node);
        rogue.add_peer_address(b_peer, b.tcp());
        rogue
            .behaviour_mut()
            .send_request(&b_peer, vec![0; MAX_REQUEST_BYTES + 1]);
        loop {
            match rogue.select_next_some().await {
                SwarmEvent::Behaviour(request_response::Event::OutboundFailure { .. }) => break,
                SwarmEvent::Behaviour(request_response::Event::Message { .. }) => {
                    panic!("the node answered an oversized request")
                }
                _ => {}
            }
        }
        b.expect_none("the oversized request", |e| {
            matches!(e, NetEvent::Request { .. })
        })
        .await;
    })
    .await;
}

#[tokio::test]
async fn a_banned_peer_is_disconnected_and_cannot_come_back() {
    bounded(async {
        let mut a = PeerBuilder::new().start().await;
        let mut b = PeerBuilder::new().start().await;
        link(&mut a, &mut b).await;
        let (an, bn) = (a.node, b.node);
        a.call(move |net| net.ban(bn)).await.unwrap();
        a.expect("the disconnection", |e| {
            (*e == NetEvent::PeerDisconnected(bn)).then_some(())
        })
        .await;
        b.expect("the disconnection", |e| {
            (*e == NetEvent::PeerDisconnected(an)).then_some(())
        })
        .await;
        assert!(a.call(move |net| net.is_banned(&bn)).await);

        // b tries to come back over both transports; a never lets it in.
        let (tcp, quic) = (a.tcp(), a.quic.clone().unwrap());
        b.call(move |net| {
            let _ = net.dial(tcp);
            let _ = net.dial(quic);
        })
        .await;
        a.expect_none("the banned peer", |e| *e == NetEvent::PeerConnected(bn))
            .await;
        assert!(a.call(|net| net.connected_peers()).await.is_empty());
        // Nor can a talk to it.
        a.call(move |net| net.send_request(bn, 1, vec![1])).await;
        let reason = a
            .expect("the refusal", |e| match e {
                NetEvent::RequestFailed {
                    request_id: 1,
                    reason,
                } => Some(reason.clone()),
                _ => None,
            })
            .await;
        assert_eq!(reason, RequestFailure::Banned);
    })
    .await;
}

#[tokio::test]
async fn the_ban_list_is_bounded_and_forgets_the_oldest() {
    let mut net = Network::new(Keypair::generate_ed25519(), NetConfig::loopback()).unwrap();
    let id = |i: usize| {
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&(i as u64).to_be_bytes());
        NodeId(key)
    };
    let nodes: Vec<NodeId> = (0..=MAX_BANS).map(id).collect();
    for n in &nodes {
        net.ban(*n).unwrap();
    }
    assert!(!net.is_banned(&nodes[0]), "the oldest ban was lifted");
    assert!(net.is_banned(&nodes[1]));
    assert!(net.is_banned(&nodes[MAX_BANS]));
}

#[tokio::test]
async fn kademlia_introduces_peers_who_then_connect() {
    bounded(async {
        let mut a = PeerBuilder::new().start().await;
        let mut b = PeerBuilder::new().start().await;
        let mut c = PeerBuilder::new().start().await;
        link(&mut b, &mut a).await;
        link(&mut b, &mut c).await;
        // a and c were never told about each other; b's routing table was.
        a.connected_to(c.node).await;
        c.connected_to(a.node).await;
        let cn = c.node;
        a.expect_none("a second PeerConnected", |e| {
            *e == NetEvent::PeerConnected(cn)
        })
        .await;
    })
    .await;
}

#[tokio::test]
async fn a_peer_scored_below_the_graylist_is_banned_and_disconnected() {
    bounded(async {
        let mut a = PeerBuilder::new().no_autodial().start().await;
        let mut b = PeerBuilder::new().no_autodial().start().await;
        link(&mut a, &mut b).await;
        a.call(|net| net.publish(TOPIC_HEALTH, b"junk".to_vec()))
            .await
            .unwrap();
        let (_, handle, _) = b.gossip().await;
        b.call(move |net| net.report_verdict(handle, Verdict::Reject))
            .await
            .unwrap();
        let (an, bn) = (a.node, b.node);
        let score = b
            .expect("the ban", |e| match e {
                NetEvent::PeerScoredOut { peer, score, .. } if *peer == an => Some(*score),
                _ => None,
            })
            .await;
        assert!(score < -80, "score {score}");
        assert!(b.call(move |net| net.is_banned(&an)).await);
        b.expect("the disconnection", |e| {
            (*e == NetEvent::PeerDisconnected(an)).then_some(())
        })
        .await;
        a.expect("the disconnection", |e| {
            (*e == NetEvent::PeerDisconnected(bn)).then_some(())
        })
        .await;
        let tcp = b.tcp();
        a.call(move |net| net.dial(tcp)).await.unwrap();
        b.expect_none("the banned peer back", |e| {
            *e == NetEvent::PeerConnected(an)
        })
        .await;
    })
    .await;
}

#[tokio::test]
async fn ignored_and_accepted_gossip_bans_nobody() {
    bounded(async {
        let mut a = PeerBuilder::new().no_autodial().start().await;
        let mut b = PeerBuilder::new().no_autodial().start().await;
        link(&mut a, &mut b).await;
        for (i, verdict) in [Verdict::Accept, Verdict::Ignore].into_iter().enumerate() {
            a.call(move |net| net.publish(TOPIC_HEALTH, vec![i as u8; 8]))
                .await
                .unwrap();
            let (_, handle, _) = b.gossip().await;
            b.call(move |net| net.report_verdict(handle, verdict))
                .await
                .unwrap();
        }
        b.call(|net| net.ban_scored_out()).await;
        let an = a.node;
        b.expect_none("a ban", |e| matches!(e, NetEvent::PeerScoredOut { .. }))
            .await;
        assert!(!b.call(move |net| net.is_banned(&an)).await);
        assert_eq!(b.call(|net| net.connected_peers()).await, vec![an]);
    })
    .await;
}

/// Unsigned gossip fails gossipsub's own validation and never reaches the
/// engine; the periodic sweep bans its sender all the same.
#[tokio::test]
async fn a_peer_sending_unsigned_gossip_is_banned_by_the_sweep() {
    use libp2p::gossipsub;
    bounded(async {
        let mut b = PeerBuilder::new().no_autodial().start().await;
        let config = gossipsub::ConfigBuilder::default()
            .validation_mode(gossipsub::ValidationMode::None)
            .build()
            .unwrap();
        let mut rogue = libp2p::SwarmBuilder::with_new_identity()
            .with_tokio()
            .with_tcp(
                tcp::Config::default(),
                noise::Config::new,
                yamux::Config::default,
            )
            .unwrap()
            .with_behaviour(|_| {
                let behaviour: gossipsub::Behaviour =
                    gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Anonymous, config)
                        .unwrap();
                behaviour
            })
            .unwrap()
            .build();
        let topic = gossipsub::IdentTopic::new(TOPIC_HEALTH);
        rogue.behaviour_mut().subscribe(&topic).unwrap();
        let rogue_node = NodeId::from_peer_id_bytes(&rogue.local_peer_id().to_bytes()).unwrap();
        rogue.dial(b.tcp()).unwrap();
        let b_peer = peer_id(b.node);
        let mut n = 0u32;
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        let mut swept = tokio::time::interval(Duration::from_millis(200));
        let score = loop {
            tokio::select! {
                ev = rogue.select_next_some() => {
                    if let SwarmEvent::ConnectionClosed { peer_id, num_established: 0, .. } = ev {
                        assert_eq!(peer_id, b_peer);
                    }
                }
                _ = tick.tick() => {
                    if rogue.is_connected(&b_peer) {
                        n += 1;
                        let _ = rogue.behaviour_mut().publish(topic.clone(), n.to_be_bytes().to_vec());
                    }
                }
                _ = swept.tick() => {
                    b.call(|net| net.ban_scored_out()).await;
                    while let Ok(e) = b.events.try_recv() {
                        b.backlog.push(e);
                    }
                    let found = b.backlog.iter().find_map(|e| match e {
                        NetEvent::PeerScoredOut { peer, score, .. } if *peer == rogue_node => Some(*score),
                        _ => None,
                    });
                    if let Some(s) = found {
                        break s;
                    }
                }
            }
        };
        assert!(score < -80, "score {score}");
        // Nothing the rogue sent reached the engine.
        assert!(!b.backlog.iter().any(|e| matches!(e, NetEvent::Gossip { .. })));
        assert!(b.call(move |net| net.is_banned(&rogue_node)).await);
    })
    .await;
}

/// A bootstrap peer that goes away and comes back (a seeder killed and
/// restarted with its key and port) is dialed again by the network's own
/// redial timer, also after redials that found it still down. Kademlia
/// alone dials it only during a lookup (its periodic bootstrap runs every
/// five minutes), so without the redials this waits out `WAIT`.
#[tokio::test]
async fn a_bootstrap_peer_that_restarts_is_dialed_again() {
    bounded(async {
        let key = Keypair::generate_ed25519();
        let seeder = PeerBuilder::new()
            .key(&key)
            .listen_tcp("/ip4/127.0.0.1/tcp/0".parse().unwrap())
            .start()
            .await;
        let (sn, addr) = (seeder.node, seeder.tcp());
        let mut a = PeerBuilder::new().bootstrap(&seeder).start().await;
        a.connected_to(sn).await;
        seeder.stop().await;
        a.expect("the seeder gone", |e| {
            (*e == NetEvent::PeerDisconnected(sn)).then_some(())
        })
        .await;
        // Dials while it is down fail (Kademlia's lookups, the redials);
        // that must not make `a` give it up. Down for long enough that
        // Kademlia's lookups after the disconnection are over.
        a.expect("a failed dial", |e| match e {
            NetEvent::DialFailed { peer, .. } if *peer == Some(sn) => Some(()),
            _ => None,
        })
        .await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let mut seeder = PeerBuilder::new().key(&key).listen_tcp(addr).start().await;
        // Nobody dials anyone by hand: `a` redials its bootstrap peer itself.
        a.connected_to(sn).await;
        seeder.connected_to(a.node).await;
    })
    .await;
}

/// A timed ban ends: the peer is refused until then and let in afterwards.
#[tokio::test]
async fn a_timed_ban_ends_and_the_peer_may_connect_again() {
    bounded(async {
        let mut a = PeerBuilder::new().no_autodial().start().await;
        let mut b = PeerBuilder::new().no_autodial().start().await;
        link(&mut a, &mut b).await;
        let bn = b.node;
        let length = Duration::from_secs(3);
        a.call(move |net| net.ban_for(bn, Some(length)))
            .await
            .unwrap();
        a.expect("the disconnection", |e| {
            (*e == NetEvent::PeerDisconnected(bn)).then_some(())
        })
        .await;
        let ends = a.call(move |net| net.ban_ends(&bn)).await;
        assert!(matches!(ends, Some(Some(_))), "{ends:?}");
        let tcp = a.tcp();
        b.call(move |net| net.dial(tcp)).await.unwrap();
        a.expect_none("the banned peer", |e| *e == NetEvent::PeerConnected(bn))
            .await;
        a.call(|net| net.expire_bans()).await;
        a.expect_none("an early end", |e| *e == NetEvent::BanLifted(bn))
            .await;
        tokio::time::sleep(length).await;
        assert!(!a.call(move |net| net.is_banned(&bn)).await);
        a.call(|net| net.expire_bans()).await;
        a.expect("the end of the ban", |e| {
            (*e == NetEvent::BanLifted(bn)).then_some(())
        })
        .await;
        assert_eq!(a.call(move |net| net.ban_ends(&bn)).await, None);
        let tcp = a.tcp();
        b.call(move |net| net.dial(tcp)).await.unwrap();
        a.connected_to(bn).await;
        // A ban until lifted does not end.
        a.call(move |net| net.ban(bn)).await.unwrap();
        assert_eq!(a.call(move |net| net.ban_ends(&bn)).await, Some(None));
    })
    .await;
}
