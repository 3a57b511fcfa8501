//! The download scheduler: which chunk to ask which peer for, and when to give up on a peer.
//!
//! [`Bitfield`] is the availability of one release's chunks, in its wire layout.
//! [`Download`] is one release's fetch state: it picks rarest-first requests
//! within the per-peer and total limits, tracks their deadlines, and recovers
//! from failures, timeouts and corrupt chunks, within the byte window a
//! download rate allows ([`Bandwidth`]). [`WaitingRequests`] is the server's
//! side: chunk requests held until its upload has room, stragglers first.
//! [`PeerBook`] remembers which peers are banned across all releases; [`site`]
//! decides which peers a node on a site may ask for which chunk (LAN first,
//! few WAN fetchers per site). Everything here is pure: time comes in
//! as a [`crate::Timestamp`] argument and randomness from a caller's seed.

pub mod bitfield;
pub mod pacing;
pub mod peers;
pub mod scheduler;
pub mod site;
pub mod waiting;

pub use bitfield::{Bitfield, BitfieldError};
pub use pacing::{Bandwidth, UploadBacklog};
pub use peers::{Ban, PeerBook, MAX_BANS, MAX_BAN_REASON_BYTES};
pub use scheduler::{Download, Standing, BENCH_MS, MAX_COPIES, STRIKES_TO_BENCH};
pub use site::{SiteFilter, TransferPolicy, WanAccess, WanElection};
pub use waiting::{Waiting, WaitingRequests};
