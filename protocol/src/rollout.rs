//! The per-release rollout state machine on one node.
