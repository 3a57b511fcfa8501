//! `waveguard wave`: which canary wave a node is in for a release.
//!
//! The bucket needs only the two IDs. The wave needs the release's signed
//! rollout policy, so with `--repo` the release directory's metadata is
//! verified first (as `verify` does, without checking chunks) and the release
//! may then also be named as `product/version`. The decision itself is the
//! protocol's [`wave::wave_of`]; this command only explains it.

use crate::repo::Repo;
use crate::trusted;
use anyhow::Context as _;
use clap::{Args, ValueEnum};
use std::fmt;
use std::path::PathBuf;
use waveguard_protocol::wave::{self, WavePin};
use waveguard_protocol::{NodeId, ReleaseId, Timestamp};

/// Arguments of `waveguard wave`.
#[derive(Args, Debug, Clone)]
pub struct WaveArgs {
    /// The node: 64 hex digits of its public key, or its libp2p PeerId (12D3KooW...).
    #[arg(long, value_name = "ID")]
    pub node: String,
    /// The release: 64 hex digits of its ID, or `product/version` together with --repo.
    #[arg(long, value_name = "ID")]
    pub release: String,
    /// A release directory whose signed rollout policy gives the wave index and name.
    #[arg(long, value_name = "DIR")]
    pub repo: Option<PathBuf>,
    /// Trusted root metadata for --repo (default: DIR/metadata/1.root.json, trusted on first use).
    #[arg(long, value_name = "FILE", requires = "repo")]
    pub root: Option<PathBuf>,
    /// Check --repo's metadata as of this time instead of now (YYYY-MM-DDTHH:MM:SSZ).
    #[arg(long, value_name = "TIME", value_parser = super::args::time, requires = "repo")]
    pub at: Option<Timestamp>,
    /// An operator's pin overriding the computed wave.
    #[arg(long, value_enum, default_value_t = PinArg::None)]
    pub pin: PinArg,
}

/// The `--pin` values.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinArg {
    /// No pin: the computed wave.
    None,
    /// Always the first (canary) wave.
    Canary,
    /// Always the last wave.
    Last,
}

impl From<PinArg> for WavePin {
    fn from(p: PinArg) -> Self {
        match p {
            PinArg::None => WavePin::None,
            PinArg::Canary => WavePin::Canary,
            PinArg::Last => WavePin::Last,
        }
    }
}

/// The wave a node is in, when the policy is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaveChoice {
    /// Index into the policy's waves (0 = canary).
    pub index: usize,
    /// The wave's name.
    pub name: String,
    /// How many waves the policy has.
    pub of: usize,
}

/// What `wave` found.
#[derive(Debug, Clone, PartialEq)]
pub struct WaveReport {
    /// The node.
    pub node: NodeId,
    /// The release.
    pub release: ReleaseId,
    /// The node's bucket for the release.
    pub bucket: u64,
    /// The bucket as a fraction of 2^64 (display only).
    pub fraction: f64,
    /// The pin applied.
    pub pin: WavePin,
    /// The wave, when a policy was available.
    pub wave: Option<WaveChoice>,
    /// Things the user should know (trust on first use).
    pub warnings: Vec<String>,
}

impl fmt::Display for WaveReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "node:     {}", self.node)?;
        writeln!(f, "release:  {}", self.release)?;
        write!(
            f,
            "bucket:   {} ({:.6} of the fleet)",
            self.bucket, self.fraction
        )?;
        if let Some(w) = &self.wave {
            let pinned = match self.pin {
                WavePin::None => "",
                WavePin::Canary => " (pinned to canary)",
                WavePin::Last => " (pinned to last)",
            };
            write!(f, "\nwave:     {} {} of {}{pinned}", w.index, w.name, w.of)?;
        }
        Ok(())
    }
}

/// Runs `wave`; `now` is the time at which `--repo`'s metadata must be valid.
pub fn run(args: &WaveArgs, now: Timestamp) -> anyhow::Result<WaveReport> {
    let node: NodeId = args
        .node
        .parse()
        .map_err(|e| anyhow::anyhow!("wave: --node: {e}"))?;
    let pin = WavePin::from(args.pin);
    let Some(dir) = &args.repo else {
        let release: ReleaseId = args
            .release
            .parse()
            .map_err(|e| anyhow::anyhow!("wave: --release: {e} (product/version needs --repo)"))?;
        let bucket = wave::bucket(&release, &node);
        return Ok(WaveReport {
            node,
            release,
            bucket,
            fraction: wave::bucket_fraction(bucket),
            pin,
            wave: None,
            warnings: Vec::new(),
        });
    };
    let at = args.at.unwrap_or(now);
    let loaded = trusted::load(&Repo::new(dir), args.root.as_deref(), at).context("wave")?;
    let release = trusted::find_release(&loaded.state, &args.release).context("wave")?;
    let policy = release.policy();
    let bucket = wave::bucket(&release.id, &node);
    let index = wave::wave_of(policy, &release.id, &node, pin);
    let name = policy
        .waves
        .get(index)
        .map(|w| w.name.clone())
        .unwrap_or_default();
    Ok(WaveReport {
        node,
        release: release.id,
        bucket,
        fraction: wave::bucket_fraction(bucket),
        pin,
        wave: Some(WaveChoice {
            index,
            name,
            of: policy.waves.len(),
        }),
        warnings: loaded.anchor.warning().into_iter().collect(),
    })
}
