//! The download scheduler: which chunk to ask which peer for, and when to give up on a peer.
