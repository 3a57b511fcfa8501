//! Key-file arguments shared by the commands: reading several key files,
//! taking their public parts for a role, and picking the secrets that can sign.

use crate::keyfile::{self, KeyMaterial};
use anyhow::Context as _;
use std::collections::BTreeSet;
use std::path::PathBuf;
use waveguard_protocol::metadata::RoleSpec;
use waveguard_protocol::{KeyId, SigningKey};

/// A key file and what it holds.
#[derive(Clone, Debug)]
pub struct LoadedKey {
    /// The file.
    pub path: PathBuf,
    /// Its key.
    pub material: KeyMaterial,
}

/// Reads every key file; `flag` names the option in errors (`--root-key`).
pub fn read_all(paths: &[PathBuf], flag: &str) -> anyhow::Result<Vec<LoadedKey>> {
    paths
        .iter()
        .map(|p| {
            keyfile::read(p)
                .map(|material| LoadedKey {
                    path: p.clone(),
                    material,
                })
                .with_context(|| flag.to_string())
        })
        .collect()
}

/// Reads secret key files, without repeating a key given twice.
pub fn read_secrets(paths: &[PathBuf], flag: &str) -> anyhow::Result<Vec<SigningKey>> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for p in paths {
        let key = keyfile::read_secret(p).with_context(|| flag.to_string())?;
        if seen.insert(key.key_id()) {
            out.push(key);
        }
    }
    Ok(out)
}

/// The role made of these keys' public parts and `threshold`.
pub fn role_spec(keys: &[LoadedKey], threshold: u32) -> RoleSpec {
    RoleSpec::new(
        keys.iter().map(|k| k.material.public()).collect(),
        threshold,
    )
}

/// The secret keys among `keys`, without duplicates.
pub fn secrets(keys: &[LoadedKey]) -> Vec<SigningKey> {
    let mut seen = BTreeSet::new();
    keys.iter()
        .filter_map(|k| match &k.material {
            KeyMaterial::Secret(s) if seen.insert(s.key_id()) => Some(s.clone()),
            _ => None,
        })
        .collect()
}

/// Abbreviated key ID for messages.
pub fn short_id(id: &KeyId) -> String {
    id.0.chars().take(12).collect()
}
