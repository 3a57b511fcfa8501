//! The `Node` engine: one sans-IO state machine per endpoint.
