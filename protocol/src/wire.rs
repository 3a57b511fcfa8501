//! Peer messages, their versioning and codec.
