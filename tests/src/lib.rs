//! Shared helpers for waveguard's end-to-end tests.

pub mod netns;
