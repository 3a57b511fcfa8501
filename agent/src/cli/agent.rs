//! `waveguard agent` and `waveguard seed`: run the daemon until interrupted.

use crate::config::Config;
use anyhow::Context;
use std::fmt;
use std::path::PathBuf;

/// Arguments of `waveguard agent`.
#[derive(clap::Args, Debug, Clone)]
pub struct AgentArgs {
    /// The agent's TOML configuration (see agent/agent.example.toml); defaults apply without one.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// Arguments of `waveguard seed`.
#[derive(clap::Args, Debug, Clone)]
pub struct SeedArgs {
    /// The release directory to serve (written by `waveguard publish`).
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// The agent's TOML configuration; defaults apply without one.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Trusted root (default: the directory's metadata/1.root.json).
    #[arg(long, value_name = "FILE")]
    pub root: Option<PathBuf>,
}

/// What a daemon run did.
#[derive(Debug, Clone)]
pub struct StopReport {
    /// The node's PeerId.
    pub node: String,
}

impl fmt::Display for StopReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "agent {} stopped", self.node)
    }
}

fn load(path: Option<&PathBuf>) -> anyhow::Result<Config> {
    match path {
        Some(p) => Ok(Config::load(p)?),
        None => Ok(Config::default()),
    }
}

fn serve(config: Config, seed: Option<PathBuf>) -> anyhow::Result<StopReport> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let driver = crate::daemon::start(&config, seed.as_deref())?;
        let node = driver.node_id().to_peer_id_string();
        let state = crate::api::ApiState {
            shared: driver.shared(),
            node: driver.node_id(),
        };
        let listener = crate::api::bind(config.api.listen).await?;
        tracing::info!(addr = %config.api.listen, "HTTP API listening");
        // The API stops with the driver, so a stopped agent never answers with stale status.
        let (stop_api, api_stopped) = tokio::sync::oneshot::channel::<()>();
        let api = tokio::spawn(crate::api::serve(listener, state, async {
            let _ = api_stopped.await;
        }));
        driver
            .run(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await;
        let _ = stop_api.send(());
        match api.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(%e, "HTTP API"),
            Err(e) => tracing::warn!(%e, "HTTP API task"),
        }
        Ok(StopReport { node })
    })
}

/// Runs `waveguard agent`.
pub fn run(a: &AgentArgs) -> anyhow::Result<StopReport> {
    serve(load(a.config.as_ref())?, None)
}

/// Runs `waveguard seed`.
pub fn run_seed(a: &SeedArgs) -> anyhow::Result<StopReport> {
    let mut config = load(a.config.as_ref())?;
    if config.trusted_root.is_none() {
        config.trusted_root = Some(
            a.root
                .clone()
                .unwrap_or_else(|| a.dir.join("metadata/1.root.json")),
        );
    }
    serve(config, Some(a.dir.clone()))
}
