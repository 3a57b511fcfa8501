//! Flow-level bandwidth sharing (being written).
