//! The agent's configuration: a TOML file with a default for every setting.
//!
//! `agent/agent.example.toml` documents every key. A missing file section or
//! key takes its default; an unknown key is an error (a typo must not silently
//! fall back to a default), and so is a value out of range, each named in the
//! message.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use thiserror::Error;
use waveguard_protocol::wave::WavePin;

/// Largest configuration file read, in bytes: a config is a few KiB.
pub const MAX_CONFIG_BYTES: u64 = 256 * 1024;
/// Smallest non-zero bandwidth limit accepted, in bytes per second.
pub const MIN_RATE_BYTES_PER_SEC: u64 = 1024;
/// How long an installer hook may run by default, in seconds.
pub const DEFAULT_HOOK_TIMEOUT_SECS: u64 = 300;
/// Longest hook timeout accepted, in seconds: a day is already far past any bake.
pub const MAX_HOOK_TIMEOUT_SECS: u64 = 86_400;

/// Endpoint or seeder.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Fetches, installs in its wave, reports health.
    #[default]
    Endpoint,
    /// Fetches and serves, never installs (a vendor's node, a site cache).
    Seeder,
}

/// The whole configuration.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the agent keeps its key, metadata, chunks and installs.
    pub data_dir: PathBuf,
    /// The trusted root metadata (the anchor of all trust), obtained out of band.
    pub trusted_root: Option<PathBuf>,
    /// The node key file; generated in `data_dir/node.key` on first start if absent.
    pub key_file: Option<PathBuf>,
    /// Endpoint or seeder.
    pub role: Role,
    /// Network settings.
    pub network: Network,
    /// Rollout settings for this node.
    pub rollout: Rollout,
    /// The local HTTP API.
    pub api: Api,
    /// Commands run around installs.
    pub hooks: HooksConfig,
    /// Site-aware fetching, WAN windows and the monthly WAN upload cap.
    pub site: crate::site::SiteConfig,
}

/// `[network]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Network {
    /// Multiaddrs to listen on.
    pub listen: Vec<String>,
    /// Multiaddrs (with `/p2p/<PeerId>`) of Kademlia bootstrap peers.
    pub bootstrap: Vec<String>,
    /// Discover peers on the local network with mDNS.
    pub mdns: bool,
    /// Most connections in total.
    pub max_connections: u32,
    /// Upload limit in bytes per second (0: none).
    pub upload_bytes_per_sec: u64,
    /// Download limit in bytes per second (0: none).
    pub download_bytes_per_sec: u64,
}

/// `[rollout]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Rollout {
    /// Fetch a release as soon as it is trusted, before this node's wave opens.
    pub prefetch: bool,
    /// Operator override of this node's wave: "none", "canary" or "last".
    pub pin: WavePin,
    /// Install nothing until unpaused.
    pub paused: bool,
    /// This node's fleet certificate (JSON), required in fleets with an operator key.
    pub cert: Option<PathBuf>,
}

/// `[hooks]`: commands the installer runs, each a program and its arguments
/// (no shell: write `["sh", "-c", "..."]` for one). See [`crate::install`] for
/// the environment they get.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HooksConfig {
    /// Run after the artifact is in its version directory, before the switch; failure aborts the install.
    pub install: Option<Vec<String>>,
    /// Run right after `current` switches to the new version (restart the service here);
    /// failure switches back and fails the install.
    pub activate: Option<Vec<String>>,
    /// Run after install and every heartbeat during the bake; exit status 0 is healthy. None: always healthy.
    pub probe: Option<Vec<String>>,
    /// Run after `current` is switched back to the previous version.
    pub rollback: Option<Vec<String>>,
    /// Longest any hook may run, in seconds; a hook past it is killed and counts as a failure.
    pub timeout_secs: u64,
}

/// `[api]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Api {
    /// Address of the HTTP API; loopback unless you mean otherwise.
    pub listen: SocketAddr,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("waveguard-data"),
            trusted_root: None,
            key_file: None,
            role: Role::Endpoint,
            network: Network::default(),
            rollout: Rollout::default(),
            api: Api::default(),
            hooks: HooksConfig::default(),
            site: crate::site::SiteConfig::default(),
        }
    }
}

impl Default for HooksConfig {
    fn default() -> Self {
        HooksConfig {
            install: None,
            activate: None,
            probe: None,
            rollback: None,
            timeout_secs: DEFAULT_HOOK_TIMEOUT_SECS,
        }
    }
}

impl HooksConfig {
    /// The installer's hooks.
    pub fn hooks(&self) -> crate::install::Hooks {
        crate::install::Hooks {
            install: self.install.clone(),
            activate: self.activate.clone(),
            probe: self.probe.clone(),
            rollback: self.rollback.clone(),
            timeout: std::time::Duration::from_secs(self.timeout_secs),
        }
    }
}

impl Default for Network {
    fn default() -> Self {
        Network {
            listen: vec![
                "/ip4/0.0.0.0/tcp/4610".into(),
                "/ip4/0.0.0.0/udp/4610/quic-v1".into(),
            ],
            bootstrap: Vec::new(),
            mdns: true,
            max_connections: 128,
            upload_bytes_per_sec: 0,
            download_bytes_per_sec: 0,
        }
    }
}

impl Default for Rollout {
    fn default() -> Self {
        Rollout {
            prefetch: true,
            pin: WavePin::None,
            paused: false,
            cert: None,
        }
    }
}

impl Default for Api {
    fn default() -> Self {
        Api {
            listen: SocketAddr::from(([127, 0, 0, 1], 7070)),
        }
    }
}

/// The configuration could not be used.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is larger than any config should be.
    #[error("config {path} is {len} bytes, over the limit of {MAX_CONFIG_BYTES}")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        len: u64,
    },
    /// Not valid TOML, an unknown key, or a value of the wrong type.
    #[error("config {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A value out of range.
    #[error("config {path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

impl Config {
    /// Reads and checks a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let read = |source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        };
        let len = std::fs::metadata(path).map_err(read)?.len();
        if len > MAX_CONFIG_BYTES {
            return Err(ConfigError::TooLarge {
                path: path.to_path_buf(),
                len,
            });
        }
        let text = std::fs::read_to_string(path).map_err(read)?;
        Config::parse(&text, path)
    }

    /// Parses and checks config text; `path` only names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().replace('\n', " "),
        })?;
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        if config.network.max_connections == 0 {
            return Err(invalid("network.max_connections must be at least 1".into()));
        }
        if config.network.listen.is_empty() {
            return Err(invalid(
                "network.listen must name at least one address".into(),
            ));
        }
        // Below a kilobyte per second a single chunk would take hours: surely a unit mistake.
        for (key, value) in [
            ("upload_bytes_per_sec", config.network.upload_bytes_per_sec),
            (
                "download_bytes_per_sec",
                config.network.download_bytes_per_sec,
            ),
        ] {
            if value != 0 && value < MIN_RATE_BYTES_PER_SEC {
                return Err(invalid(format!(
                    "network.{key} is {value}; use 0 for no limit or at least {MIN_RATE_BYTES_PER_SEC} (bytes per second)"
                )));
            }
        }
        for (key, cmd) in [
            ("install", &config.hooks.install),
            ("activate", &config.hooks.activate),
            ("probe", &config.hooks.probe),
            ("rollback", &config.hooks.rollback),
        ] {
            if cmd
                .as_ref()
                .is_some_and(|c| c.first().is_none_or(|p| p.is_empty()))
            {
                return Err(invalid(format!(
                    "hooks.{key} must name a program, e.g. [\"/usr/local/bin/check\", \"--quick\"]"
                )));
            }
        }
        if !(1..=MAX_HOOK_TIMEOUT_SECS).contains(&config.hooks.timeout_secs) {
            return Err(invalid(format!(
                "hooks.timeout_secs is {}; it must be between 1 and {MAX_HOOK_TIMEOUT_SECS}",
                config.hooks.timeout_secs
            )));
        }
        config.site.check().map_err(|e| invalid(e.to_string()))?;
        if config.data_dir.as_os_str().is_empty() {
            return Err(invalid("data_dir must not be empty".into()));
        }
        Ok(config)
    }

    /// The node key file: configured, or `data_dir/node.key`.
    pub fn key_path(&self) -> PathBuf {
        self.key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("node.key"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_file_parses_to_the_defaults_it_documents() {
        let text = include_str!("../agent.example.toml");
        let c = Config::parse(text, Path::new("agent.example.toml")).unwrap();
        assert_eq!(c.role, Role::Endpoint);
        assert!(c.network.mdns);
        assert_eq!(c.api.listen, Api::default().listen);
    }

    #[test]
    fn an_empty_file_gives_defaults() {
        let c = Config::parse("", Path::new("x.toml")).unwrap();
        assert_eq!(c.network.max_connections, 128);
        assert!(c.rollout.prefetch);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let e = Config::parse("[network]\nmdsn = false\n", Path::new("a.toml")).unwrap_err();
        assert!(e.to_string().contains("mdsn"), "{e}");
        let e = Config::parse("[network]\nmax_connections = 0\n", Path::new("a.toml")).unwrap_err();
        assert!(e.to_string().contains("max_connections"), "{e}");
        let e = Config::parse(
            "[network]\nupload_bytes_per_sec = 1000\n",
            Path::new("a.toml"),
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("upload_bytes_per_sec is 1000"),
            "{e}"
        );
        let c = Config::parse(
            "[network]\nupload_bytes_per_sec = 1048576\ndownload_bytes_per_sec = 2048\n",
            Path::new("a.toml"),
        )
        .unwrap();
        assert_eq!(c.network.upload_bytes_per_sec, 1 << 20);
        assert_eq!(c.network.download_bytes_per_sec, 2048);
        let e = Config::parse("role = \"king\"\n", Path::new("a.toml")).unwrap_err();
        assert!(
            e.to_string().contains("king") || e.to_string().contains("role"),
            "{e}"
        );
        let e = Config::parse("[hooks]\nprobe = []\n", Path::new("a.toml")).unwrap_err();
        assert!(e.to_string().contains("hooks.probe"), "{e}");
        let e = Config::parse("[hooks]\ntimeout_secs = 0\n", Path::new("a.toml")).unwrap_err();
        assert!(e.to_string().contains("hooks.timeout_secs is 0"), "{e}");
        let c = Config::parse(
            "[hooks]\nprobe = [\"sh\", \"-c\", \"exit 0\"]\ntimeout_secs = 5\n",
            Path::new("a.toml"),
        )
        .unwrap();
        let hooks = c.hooks.hooks();
        assert_eq!(hooks.probe.as_deref().map(<[String]>::len), Some(3));
        assert_eq!(hooks.timeout, std::time::Duration::from_secs(5));
        assert!(hooks.install.is_none());
        let e =
            Config::parse("[site]\nwan_windows = [\"9-17\"]\n", Path::new("a.toml")).unwrap_err();
        assert!(e.to_string().contains("site.wan_windows[0]"), "{e}");
        let c = Config::parse(
            "[site]\nwan_fetchers = 3\nwan_windows = [\"22:00-06:00\"]\nmonthly_wan_upload_cap_bytes = 1000000\n",
            Path::new("a.toml"),
        )
        .unwrap();
        assert_eq!(c.site.wan_fetchers, 3);
        let e = Config::parse("[rollout]\npin = \"first\"\n", Path::new("a.toml")).unwrap_err();
        assert!(
            e.to_string().contains("pin") || e.to_string().contains("first"),
            "{e}"
        );
    }
}
