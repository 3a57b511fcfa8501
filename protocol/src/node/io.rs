//! What goes into a [`super::Node`] and what comes out of it.

use crate::chunk::ChunkHash;
use crate::fetch::TransferPolicy;
use crate::id::{NodeId, ReleaseId};
use crate::metadata::trust::StoredTrust;
use crate::rollout::HaltReason;
use crate::time::Timestamp;
use crate::wire::{MetadataBundle, SignedHealth};

/// An event from the outside world, handed to [`super::Node::handle_input`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Input {
    /// Nothing happened but time passed (the driver's timer for [`Output::Timeout`] fired).
    Tick,
    /// A connection to a peer is up.
    PeerConnected(NodeId),
    /// A connection to a peer is gone.
    PeerDisconnected(NodeId),
    /// A gossip message arrived. The driver must not forward it until the node
    /// answers with [`Output::GossipVerdict`] for the same `message_id`.
    Gossip {
        /// The peer that relayed it.
        from: NodeId,
        /// The driver's handle for the message (echoed in the verdict).
        message_id: u64,
        /// The payload.
        data: Vec<u8>,
    },
    /// A peer asked something; answer with [`Output::Respond`] carrying the same `request_id`.
    Request {
        /// Who asked.
        from: NodeId,
        /// The driver's handle for the inbound request.
        request_id: u64,
        /// The encoded [`crate::wire::Request`].
        data: Vec<u8>,
    },
    /// A peer answered one of our [`Output::SendRequest`]s.
    Response {
        /// Who answered.
        from: NodeId,
        /// The node's `request_id` from [`Output::SendRequest`].
        request_id: u64,
        /// The encoded [`crate::wire::Response`].
        data: Vec<u8>,
    },
    /// One of our requests failed at the transport (timeout, disconnect, refused).
    RequestFailed {
        /// The node's `request_id` from [`Output::SendRequest`].
        request_id: u64,
    },
    /// The bytes of [`Output::StoreChunk`] are durable.
    ChunkStored {
        /// The chunk stored.
        hash: ChunkHash,
    },
    /// A chunk could not be stored (for example the disk is full).
    ChunkStoreFailed {
        /// The chunk.
        hash: ChunkHash,
        /// What went wrong, for status.
        reason: String,
    },
    /// Answer to [`Output::LoadChunk`]: the bytes, or `None` if the store no longer has them.
    ChunkLoaded {
        /// The token from [`Output::LoadChunk`].
        token: u64,
        /// The bytes read, unverified.
        data: Option<Vec<u8>>,
    },
    /// The store no longer holds this chunk (found missing or damaged, for example while
    /// assembling): the node forgets it and fetches it again.
    ChunkLost {
        /// The chunk.
        hash: ChunkHash,
    },
    /// The verified chunks the driver's store already holds (at start-up, after seeding, after an import).
    ChunksHeld(Vec<ChunkHash>),
    /// Trust metadata from a local source (a vendor publishing, a bundle import, the store at start-up).
    Metadata(MetadataBundle),
    /// A chunk list from a local source (the vendor's release directory, the store at start-up).
    ChunkList {
        /// The release it belongs to (must already be trusted).
        release: ReleaseId,
        /// The encoded chunk list.
        data: Vec<u8>,
    },
    /// Answer to [`Output::Assemble`].
    ArtifactStaged {
        /// The release.
        release: ReleaseId,
        /// `Err` with a reason when the assembled artifact did not match its signed length and hash.
        result: Result<(), String>,
    },
    /// Answer to [`Output::Install`].
    InstallFinished {
        /// The release.
        release: ReleaseId,
        /// `Err` with a reason when the installer failed or timed out.
        result: Result<(), String>,
    },
    /// Answer to [`Output::RunProbe`].
    ProbeFinished {
        /// The release.
        release: ReleaseId,
        /// Whether the probe passed; a probe that hung and was killed is `false`.
        healthy: bool,
    },
    /// Answer to [`Output::Rollback`].
    RollbackFinished {
        /// The release.
        release: ReleaseId,
        /// `Err` with a reason when the rollback itself failed.
        result: Result<(), String>,
    },
    /// The peers that share this node's site (its LAN), replacing the previous
    /// list; every other peer is across the WAN (section 15.7). At most
    /// `MAX_SITE_PEERS` are kept; they need not be connected.
    SitePeers(Vec<NodeId>),
    /// What transfers are allowed now (WAN windows, the monthly upload cap),
    /// replacing the previous policy; everything is allowed until the first.
    TransferPolicy(TransferPolicy),
    /// A signed halt or resume directive from the local operator: verified, applied and broadcast.
    Directive(Vec<u8>),
    /// Signed health reports from a local source (an imported health bundle from an
    /// isolated site): each is verified exactly like a report from gossip and, when the
    /// ledger takes it as new, broadcast on the health topic so the mesh sees it too.
    Health(Vec<SignedHealth>),
    /// At start-up, a record kept from [`Output::StoreRollout`] before the node stopped: the
    /// release resumes where it was (baking, healthy, rolled back, halted) instead of being
    /// installed again. Feed it after [`Input::ChunksHeld`] and [`Input::ChunkList`].
    RolloutRestored {
        /// The release.
        release: ReleaseId,
        /// The record's bytes, as stored.
        data: Vec<u8>,
    },
}

/// What the driver should do with a gossip message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Valid: deliver and forward.
    Accept,
    /// Not useful but not malicious (a duplicate, a stale version, an unknown release): drop quietly.
    Ignore,
    /// Invalid (bad signature, malformed, forged evidence): drop and penalise the sender.
    Reject,
}

/// An action for the driver, from [`super::Node::poll_output`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Output {
    /// Publish on a gossip topic.
    Broadcast {
        /// The topic (see [`crate::wire`]).
        topic: &'static str,
        /// The encoded [`crate::wire::Gossip`].
        data: Vec<u8>,
    },
    /// The verdict on a gossip message from [`Input::Gossip`].
    GossipVerdict {
        /// The driver's handle.
        message_id: u64,
        /// What to do with it.
        verdict: Verdict,
    },
    /// Send a request to a peer; its answer comes back as [`Input::Response`] or [`Input::RequestFailed`].
    SendRequest {
        /// The peer.
        to: NodeId,
        /// The node's handle, echoed back.
        request_id: u64,
        /// The encoded [`crate::wire::Request`].
        data: Vec<u8>,
    },
    /// Answer a peer's [`Input::Request`].
    Respond {
        /// The peer.
        to: NodeId,
        /// The driver's handle from the request.
        request_id: u64,
        /// The encoded [`crate::wire::Response`].
        data: Vec<u8>,
    },
    /// Read a chunk from the store and answer with [`Input::ChunkLoaded`].
    LoadChunk {
        /// Echoed in the answer.
        token: u64,
        /// The chunk's hash (the store is content-addressed).
        hash: ChunkHash,
        /// Its length, so the driver never reads more.
        length: u32,
    },
    /// Write a verified chunk durably, then answer with [`Input::ChunkStored`].
    StoreChunk {
        /// The chunk's hash.
        hash: ChunkHash,
        /// Its verified bytes.
        data: Vec<u8>,
    },
    /// Keep a verified chunk list (for restarts and for serving).
    StoreChunkList {
        /// The release.
        release: ReleaseId,
        /// The encoded list.
        data: Vec<u8>,
    },
    /// Keep the trusted metadata durably (rollback protection across restarts depends on it).
    StoreTrust(StoredTrust),
    /// Keep this record of a release's rollout durably, replacing the previous one; feed it
    /// back after a restart as [`Input::RolloutRestored`]. Emitted whenever the release's
    /// install state or halt changes once an install has started.
    StoreRollout {
        /// The release.
        release: ReleaseId,
        /// The encoded [`crate::rollout::RolloutRecord`].
        data: Vec<u8>,
    },
    /// Assemble the artifact from stored chunks into the staging area, check its
    /// length and blake3, and answer with [`Input::ArtifactStaged`].
    Assemble {
        /// The release.
        release: ReleaseId,
        /// The TUF target path (a file name for the staged artifact).
        target_path: String,
        /// Expected length.
        length: u64,
        /// Expected blake3.
        blake3: [u8; 32],
        /// Chunk hashes in artifact order.
        chunks: Vec<ChunkHash>,
    },
    /// Install the staged artifact; answer with [`Input::InstallFinished`].
    Install {
        /// The release.
        release: ReleaseId,
        /// Product name.
        product: String,
        /// Version.
        version: String,
    },
    /// Run the health probe; answer with [`Input::ProbeFinished`].
    RunProbe {
        /// The release.
        release: ReleaseId,
    },
    /// Roll back to the previous version; answer with [`Input::RollbackFinished`].
    Rollback {
        /// The release.
        release: ReleaseId,
    },
    /// The release left the trusted targets metadata (the vendor pruned it): remove
    /// what is stored for it, with no answer expected. Remove each of its chunks that
    /// no other stored chunk list names, its rollout record and its staged artifact,
    /// and its chunk list **last**, so that a removal cut short by a crash is found
    /// (as a stored chunk list of a release not in trusted metadata, which the node
    /// answers with this output again) and finished at the next start. What was
    /// installed stays installed: that is the installer's, not the store's.
    Forget {
        /// The release.
        release: ReleaseId,
    },
    /// Disconnect from a peer and refuse it until `until` ([`crate::limits::BAN_MS`]
    /// from now); the engine itself takes it back as a peer from then on.
    Ban {
        /// The peer.
        peer: NodeId,
        /// Why.
        reason: String,
        /// When the ban ends (on the engine's clock).
        until: Timestamp,
    },
    /// Something worth logging or showing.
    Event(NodeEvent),
    /// Nothing more to do until this time: call `handle_input(t, Input::Tick)` then, or earlier on any input.
    Timeout(Timestamp),
}

/// A notable change, for logs, status and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum NodeEvent {
    /// Trusted metadata named a new release.
    ReleaseDiscovered {
        /// The release.
        release: ReleaseId,
        /// This node's wave for it.
        wave: u32,
    },
    /// A release changed state on this node.
    StateChanged {
        /// The release.
        release: ReleaseId,
        /// The previous state's name.
        from: &'static str,
        /// The new state's name.
        to: &'static str,
    },
    /// A release was halted on this node.
    Halted {
        /// The release.
        release: ReleaseId,
        /// Why.
        reason: HaltReason,
    },
    /// A chunk from a peer failed verification (its sender is banned as well).
    ChunkRejected {
        /// The sender.
        peer: NodeId,
        /// The release.
        release: ReleaseId,
        /// The chunk's index in the release's list.
        index: u32,
    },
    /// The release left the trusted targets metadata: the node no longer follows it and
    /// asked the driver to remove what is stored for it ([`Output::Forget`]).
    Retired {
        /// The release.
        release: ReleaseId,
    },
    /// A signed resume directive lifted a halt on this node.
    Resumed {
        /// The release.
        release: ReleaseId,
    },
    /// A peer was banned.
    PeerBanned {
        /// The peer.
        peer: NodeId,
        /// Why.
        reason: String,
    },
    /// A peer's ban ended ([`crate::limits::BAN_MS`] after it was imposed).
    PeerUnbanned {
        /// The peer.
        peer: NodeId,
    },
    /// A chunk in our own store no longer matches its hash; it was dropped and will be fetched again.
    StoreCorrupt {
        /// The chunk.
        hash: ChunkHash,
    },
    /// Peers' reports say this node's clock is more than
    /// [`crate::limits::CLOCK_FAR_OFF_MS`] from the fleet's: it installs nothing and does
    /// not halt on silence until it agrees again.
    ClockFarOff {
        /// The fleet's clock minus ours, in milliseconds (positive: we are behind).
        offset_ms: i64,
    },
    /// Peers' reports say this node's clock, after being far off, agrees with the
    /// fleet's again.
    ClockAgrees {
        /// The fleet's clock minus ours, in milliseconds.
        offset_ms: i64,
    },
    /// Something from a peer or the driver was refused.
    Refused {
        /// The peer, if the input came from one.
        from: Option<NodeId>,
        /// What and why.
        reason: String,
    },
}
