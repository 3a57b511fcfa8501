//! `waveguard keygen`: creates an ed25519 key from operating-system randomness
//! and writes it as a key file (mode 0600, never over an existing file).
//!
//! The same key serves as a TUF signing key (vendor, operator) and as a node's
//! identity, so the report shows all three names of it: the TUF key ID, the
//! node ID (the public key in hex) and the libp2p PeerId.

use crate::keyfile;
use anyhow::Context as _;
use clap::Args;
use std::fmt;
use std::path::PathBuf;
use waveguard_protocol::{KeyId, NodeId, SigningKey};

/// Arguments of `waveguard keygen`.
#[derive(Args, Debug, Clone)]
pub struct KeygenArgs {
    /// Where to write the new key file; it must not exist yet.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

/// What `keygen` created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeygenReport {
    /// The key file written.
    pub path: PathBuf,
    /// The TUF key ID (what root metadata lists).
    pub key_id: KeyId,
    /// The node ID (the public key).
    pub node_id: NodeId,
    /// The libp2p PeerId of the same key.
    pub peer_id: String,
}

impl fmt::Display for KeygenReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "wrote key file {}", self.path.display())?;
        writeln!(f, "key id:  {}", self.key_id)?;
        writeln!(f, "node id: {}", self.node_id)?;
        write!(f, "peer id: {}", self.peer_id)
    }
}

/// Runs `keygen`.
pub fn run(args: &KeygenArgs) -> anyhow::Result<KeygenReport> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed)
        .map_err(|e| anyhow::anyhow!("keygen: the operating system gave no random bytes: {e}"))?;
    let key = SigningKey::from_seed(seed);
    keyfile::write_secret(&args.out, &key).context("keygen")?;
    Ok(report(&args.out, &key))
}

/// The report for a key; split out so tests can check it for a known seed.
pub fn report(path: &std::path::Path, key: &SigningKey) -> KeygenReport {
    let node_id = key.node_id();
    KeygenReport {
        path: path.to_owned(),
        key_id: key.key_id(),
        node_id,
        peer_id: node_id.to_peer_id_string(),
    }
}
