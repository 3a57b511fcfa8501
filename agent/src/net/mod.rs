//! The agent's peer-to-peer networking: a libp2p node that carries the
//! engine's gossip and requests between waveguard nodes.
//!
//! [`Network`] hides libp2p behind node IDs and `u64` handles so the driver
//! can shuttle between it and `waveguard_protocol::node::Node`: engine
//! outputs become [`Network::publish`], [`Network::report_verdict`],
//! [`Network::send_request`], [`Network::respond`] and [`Network::ban`];
//! [`NetEvent`]s become engine inputs. Payloads pass through unchanged: the
//! protocol crate decodes and judges them; this layer only enforces the frame
//! limits and the bounds of [`bounds`].

pub mod bans;
mod behaviour;
pub mod bounds;
pub mod codec;
mod config;
mod error;
mod event;
mod handles;
pub mod redial;
mod swarm;
pub mod throttle;

pub use bans::{MALFORMED_BAN, SCORE_BAN};
pub use behaviour::{IDENTIFY_PROTOCOL, KAD_PROTOCOL, TOPICS};
pub use codec::{FrameCodec, REQUEST_PROTOCOL};
pub use config::NetConfig;
pub use error::{
    BanError, DialError, NetError, PublishError, RequestFailure, RespondError, VerdictError,
};
pub use event::{Discovery, NetEvent, Traffic};
pub use libp2p::identity::Keypair;
pub use libp2p::Multiaddr;
pub use swarm::{Network, Published};
pub use throttle::{RateLimit, Throttle};
pub use waveguard_protocol::node::Verdict;
