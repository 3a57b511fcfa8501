//! The gossipsub mesh model (being written).
