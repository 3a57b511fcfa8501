//! The waveguard agent as a library: the command-line tool's commands, key
//! files and the on-disk release directory.
//!
//! `main.rs` only parses arguments and dispatches to [`cli`], so the
//! workspace's end-to-end tests run the very same commands in-process. The
//! libp2p daemon will live beside these modules.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod api;
pub mod bundle;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod dashboard;
pub mod driver;
pub mod fsio;
pub mod install;
pub mod keyfile;
pub mod metrics;
pub mod net;
pub mod repo;
pub mod site;
pub mod store;
pub mod testbed;
pub mod trusted;
pub mod vendor;
