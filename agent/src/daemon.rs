//! Starting an agent: configuration, node key, trusted metadata, store,
//! network and engine, wired into a [`Driver`]. A seeder additionally imports
//! a release directory written by `waveguard publish`, verifying everything
//! before anything is stored.

use crate::config::{Config, Role};
use crate::driver::{now, Driver};
use crate::install::Installer;
use crate::net::{NetConfig, Network};
use crate::repo::Repo;
use crate::store::Store;
use anyhow::{bail, Context};
use std::path::Path;
use std::sync::Arc;
use waveguard_protocol::chunk::ChunkList;
use waveguard_protocol::metadata::trust::TrustedState;
use waveguard_protocol::node::{Input, Node, NodeConfig, NodeRole};
use waveguard_protocol::SigningKey;

/// Reads the node key, or creates one (mode 0600) on first start.
pub fn node_key(config: &Config) -> anyhow::Result<SigningKey> {
    let path = config.key_path();
    if path.exists() {
        return crate::keyfile::read_secret(&path)
            .with_context(|| format!("node key {}", path.display()));
    }
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed)
        .map_err(|e| anyhow::anyhow!("no randomness for a new node key: {e}"))?;
    let key = SigningKey::from_seed(seed);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    crate::keyfile::write_secret(&path, &key)
        .with_context(|| format!("node key {}", path.display()))?;
    Ok(key)
}

/// The trust to start from: what the store kept (rollback protection survives restarts),
/// else the configured root.
fn trust(config: &Config, store: &Store) -> anyhow::Result<TrustedState> {
    if let Some(stored) = store
        .trust()
        .context("reading trusted metadata from the store")?
    {
        return TrustedState::from_stored(&stored)
            .context("the stored trusted metadata does not verify");
    }
    let Some(root) = &config.trusted_root else {
        bail!(
            "no trusted root: set trusted_root in the config to the root metadata from your vendor"
        );
    };
    let bytes = std::fs::read(root)
        .with_context(|| format!("cannot read trusted root {}", root.display()))?;
    TrustedState::new(&bytes).with_context(|| format!("trusted root {}", root.display()))
}

/// Builds a driver for `config`; with `seed_dir`, imports that release directory first.
/// Must run inside a tokio runtime (the network starts listening).
pub fn start(config: &Config, seed_dir: Option<&Path>) -> anyhow::Result<Driver> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data directory {}", config.data_dir.display()))?;
    let key = node_key(config)?;
    let store = Arc::new(Store::open(&config.data_dir)?);
    let dropped = store.check_chunks(crate::store::CheckDepth::Lengths)?;
    if !dropped.dropped.is_empty() {
        tracing::warn!(
            ?dropped,
            "damaged or unfinished chunks dropped from the store"
        );
    }
    let mut trust = trust(config, &store)?;

    // A seeder serves a release directory: verify it as any client would, then store it.
    let mut imported = Vec::new();
    if let Some(dir) = seed_dir {
        let repo = Repo::new(dir);
        let loaded = crate::trusted::load(&repo, config.trusted_root.as_deref(), now())
            .with_context(|| format!("release directory {}", dir.display()))?;
        let held: std::collections::HashSet<_> = store.held()?.into_iter().collect();
        for release in loaded.state.releases() {
            let list_bytes = repo.read_chunk_list(&release)?;
            let list = ChunkList::decode_for(&release, &list_bytes).with_context(|| {
                format!(
                    "chunk list of {} {}",
                    release.info.product, release.info.version
                )
            })?;
            for entry in &list.chunks {
                if !held.contains(&entry.hash) {
                    let bytes = repo.read_chunk(entry)?;
                    waveguard_protocol::chunk::verify_chunk(entry, &bytes)?;
                    store.put_chunk(&entry.hash, &bytes)?;
                }
            }
            store.put_chunk_list(&release.id, &list_bytes)?;
            imported.push(release.id);
        }
        trust
            .apply_bundle(&loaded.state.bundle(), now())
            .context("the release directory's metadata")?;
        store.put_trust(&trust.stored())?;
    }

    let cert = match &config.rollout.cert {
        Some(p) => {
            Some(std::fs::read(p).with_context(|| format!("fleet certificate {}", p.display()))?)
        }
        None => None,
    };
    let node_config = NodeConfig {
        seed: u64::from_le_bytes(key.to_seed()[..8].try_into().unwrap_or_default())
            ^ now().as_millis(),
        role: match (config.role, seed_dir.is_some()) {
            (Role::Seeder, _) | (_, true) => NodeRole::Seeder,
            (Role::Endpoint, false) => NodeRole::Endpoint,
        },
        pin: config.rollout.pin,
        prefetch: config.rollout.prefetch,
        paused: config.rollout.paused,
        cert,
        bandwidth: waveguard_protocol::fetch::Bandwidth {
            upload: std::num::NonZeroU64::new(config.network.upload_bytes_per_sec),
            download: std::num::NonZeroU64::new(config.network.download_bytes_per_sec),
        },
        wan_fetchers: config.site.wan_fetchers,
        // One engine per process: nothing to share.
        checked_signatures: None,
    };
    let node = Node::new(key.clone(), trust, node_config, now());

    let keypair = libp2p::identity::Keypair::ed25519_from_bytes(key.to_seed())
        .map_err(|e| anyhow::anyhow!("node key is not usable by libp2p: {e}"))?;
    let net = Network::new(keypair, net_config(config)?)?;
    let installer = Installer::new(config.data_dir.join("installs"), config.hooks.hooks());
    let mut driver = Driver::new(node, net, store.clone(), installer);
    let site = config.site.check().context("[site]")?;
    driver.set_site(
        crate::site::SiteState::load(site, &config.data_dir, now().as_millis())
            .context("the WAN upload counter")?,
    );
    driver.input(Input::ChunksHeld(store.held()?));
    for (release, data) in store.chunk_lists()? {
        driver.input(Input::ChunkList { release, data });
    }
    // Releases this node had started installing resume where they were (baking, rolled back…).
    for (release, data) in store.rollouts()? {
        driver.input(Input::RolloutRestored { release, data });
    }
    tracing::info!(node = %driver.node_id().to_peer_id_string(), imported = imported.len(), "agent started");
    Ok(driver)
}

fn net_config(config: &Config) -> anyhow::Result<NetConfig> {
    let listen = config
        .network
        .listen
        .iter()
        .map(|a| a.parse().with_context(|| format!("listen address {a:?}")))
        .collect::<anyhow::Result<_>>()?;
    // Bootstrap peers are dialed at start and, with a `/p2p/` suffix, seed Kademlia.
    let bootstrap = config
        .network
        .bootstrap
        .iter()
        .map(|a| {
            a.parse()
                .with_context(|| format!("bootstrap address {a:?}"))
        })
        .collect::<anyhow::Result<_>>()?;
    Ok(NetConfig {
        listen,
        bootstrap,
        mdns: config.network.mdns,
        max_connections: config.network.max_connections,
        upload_limit: std::num::NonZeroU64::new(config.network.upload_bytes_per_sec),
        download_limit: std::num::NonZeroU64::new(config.network.download_bytes_per_sec),
        ..NetConfig::default()
    })
}
