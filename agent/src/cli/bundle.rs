//! `waveguard bundle ...`: sneakernet transfer for air-gapped sites.
//!
//! `export` and `import` move a release (metadata, chunk list, chunks) in one
//! file (see [`crate::bundle`]); `import` writes a stopped agent's data
//! directory, or with `--api` has the running agent import the file. `export-health` and `import-health` move health reports the
//! other way through a running agent's local HTTP API: the isolated site's
//! agent hands out what its ledger holds, the connected site's agent feeds
//! the file to its engine, which verifies every report as if gossiped and
//! passes on what it takes.

use super::status::{http_exchange, HttpResponse, DEFAULT_API, IO_TIMEOUT, MAX_RESPONSE_BYTES};
use crate::api::{BundleImportView, BundleRequest, ErrorView, HealthImportView, StatusView};
use crate::bundle::{self, ExportReport, ImportReport, Source};
use crate::config::Config;
use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use std::fmt;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use waveguard_protocol::bundle::health::{self, MAX_HEALTH_BUNDLE_BYTES};
use waveguard_protocol::{ReleaseId, Timestamp};

/// `waveguard bundle ...`.
#[derive(Subcommand, Debug, Clone)]
#[non_exhaustive]
pub enum BundleCommand {
    /// Write a release (metadata, chunk list, chunks) into one file for removable media.
    Export(ExportArgs),
    /// Verify a bundle completely, then store it in a stopped agent's data directory.
    Import(ImportArgs),
    /// Write the health reports a running agent holds for a release into a file.
    ExportHealth(ExportHealthArgs),
    /// Hand a health file from another site to a running agent, which verifies and gossips it.
    ImportHealth(ImportHealthArgs),
}

/// Arguments of `waveguard bundle export`.
#[derive(Args, Debug, Clone)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["repo", "data_dir"])))]
pub struct ExportArgs {
    /// Read the release from this release directory (written by `waveguard publish`).
    #[arg(long, value_name = "DIR")]
    pub repo: Option<PathBuf>,
    /// Read the release from this (stopped) agent's data directory instead.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// With --repo: trusted root to verify the directory from (default: its first root).
    #[arg(long, value_name = "FILE", requires = "repo")]
    pub root: Option<PathBuf>,
    /// The release: its ID (64 hex digits) or product/version.
    #[arg(long, value_name = "ID")]
    pub release: String,
    /// Make a delta bundle for a site running this release (ID or product/version):
    /// chunks of the base release are left out.
    #[arg(long, value_name = "ID")]
    pub base: Option<String>,
    /// The bundle file to write.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

/// Arguments of `waveguard bundle import`.
#[derive(Args, Debug, Clone)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["config", "data_dir", "api"])))]
pub struct ImportArgs {
    /// The bundle file.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// The agent's configuration (its data_dir and trusted_root are used).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The agent's data directory (instead of --config).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// The vendor's root, for a data directory that holds no trusted metadata yet.
    #[arg(long, value_name = "FILE", conflicts_with = "api")]
    pub trusted_root: Option<PathBuf>,
    /// Hand the file to the running agent at this HTTP API address instead
    /// (it verifies and stores it, and serves the release at once).
    #[arg(long, value_name = "ADDR")]
    pub api: Option<SocketAddr>,
}

/// Arguments of `waveguard bundle export-health`.
#[derive(Args, Debug, Clone)]
pub struct ExportHealthArgs {
    /// The running agent's HTTP API address.
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_API)]
    pub api: SocketAddr,
    /// The release: its ID (64 hex digits) or product/version.
    #[arg(long, value_name = "ID")]
    pub release: String,
    /// The health file to write.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

/// Arguments of `waveguard bundle import-health`.
#[derive(Args, Debug, Clone)]
pub struct ImportHealthArgs {
    /// The health file (from `bundle export-health`).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// The running agent's HTTP API address.
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_API)]
    pub api: SocketAddr,
}

/// What a `bundle` command did.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum BundleReport {
    /// `bundle export`.
    Exported(ExportReport),
    /// `bundle import`.
    Imported(ImportReport),
    /// `bundle import --api`.
    ImportedByAgent(BundleImportView),
    /// `bundle export-health`.
    HealthExported {
        /// The file written.
        path: PathBuf,
        /// The release.
        release: ReleaseId,
        /// Reports written.
        reports: usize,
    },
    /// `bundle import-health`.
    HealthImported(HealthImportView),
}

impl fmt::Display for BundleReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BundleReport::Exported(r) => r.fmt(f),
            BundleReport::Imported(r) => r.fmt(f),
            BundleReport::ImportedByAgent(v) => write!(
                f,
                "the agent imported {} {} ({}): bundle verified, {} chunks carried, {} new chunks stored; it serves the release now",
                v.product, v.version, v.release, v.carried, v.stored
            ),
            BundleReport::HealthExported {
                path,
                release,
                reports,
            } => write!(
                f,
                "wrote {reports} health reports of release {release} to {}",
                path.display()
            ),
            BundleReport::HealthImported(v) => write!(
                f,
                "release {}: {} health reports, {} accepted and passed on to the mesh, {} already known, {} refused",
                v.release, v.reports, v.accepted, v.known, v.refused
            ),
        }
    }
}

/// Runs a `bundle` subcommand as of `now`.
pub fn run(command: &BundleCommand, now: Timestamp) -> anyhow::Result<BundleReport> {
    let progress = std::io::stderr().is_terminal();
    match command {
        BundleCommand::Export(a) => {
            let source = match (&a.repo, &a.data_dir) {
                (Some(dir), _) => Source::Repo {
                    dir: dir.clone(),
                    root: a.root.clone(),
                },
                (None, Some(data_dir)) => Source::Store {
                    data_dir: data_dir.clone(),
                },
                (None, None) => bail!("give --repo or --data-dir"),
            };
            bundle::export(
                &source,
                &a.release,
                a.base.as_deref(),
                &a.out,
                now,
                progress,
            )
            .map(BundleReport::Exported)
            .context("bundle export")
        }
        BundleCommand::Import(a) => {
            if let Some(api) = a.api {
                return import_by_agent(api, &a.file);
            }
            let (data_dir, root) = match (&a.config, &a.data_dir) {
                (Some(path), _) => {
                    let c = Config::load(path)?;
                    (c.data_dir, a.trusted_root.clone().or(c.trusted_root))
                }
                (None, Some(d)) => (d.clone(), a.trusted_root.clone()),
                (None, None) => bail!("give --config or --data-dir"),
            };
            bundle::import(&a.file, &data_dir, root.as_deref(), now, progress)
                .map(BundleReport::Imported)
                .context("bundle import")
        }
        BundleCommand::ExportHealth(a) => export_health(a),
        BundleCommand::ImportHealth(a) => import_health(a),
    }
}

/// The API's error text, or the raw body.
fn error_text(r: &HttpResponse) -> String {
    serde_json::from_slice::<ErrorView>(&r.body)
        .map(|e| e.error)
        .unwrap_or_else(|_| String::from_utf8_lossy(&r.body).chars().take(200).collect())
}

/// A release ID from 64 hex digits, or product/version looked up in the agent's status.
fn resolve_release(api: SocketAddr, spec: &str) -> anyhow::Result<ReleaseId> {
    if let Ok(id) = spec.parse::<ReleaseId>() {
        return Ok(id);
    }
    let Some((product, version)) = spec.split_once('/') else {
        bail!("{spec:?} is neither a release ID (64 hex digits) nor product/version");
    };
    let status: StatusView = serde_json::from_slice(&super::status::http_get(api, "/status")?)
        .with_context(|| format!("the agent at {api} answered /status with something else"))?;
    let found = status
        .releases
        .iter()
        .find(|r| r.product == product && r.version == version)
        .with_context(|| format!("the agent at {api} does not follow {spec}"))?;
    found
        .id
        .parse()
        .with_context(|| format!("the agent at {api} gave a malformed release ID"))
}

fn export_health(a: &ExportHealthArgs) -> anyhow::Result<BundleReport> {
    let release = resolve_release(a.api, &a.release)?;
    let path = format!("/health/{}", release.to_hex());
    let r = http_exchange(
        a.api,
        "GET",
        &path,
        None,
        MAX_HEALTH_BUNDLE_BYTES + 4096,
        IO_TIMEOUT,
    )?;
    if r.code != 200 {
        bail!(
            "the agent at {} answered HTTP status {}: {}",
            a.api,
            r.code,
            error_text(&r)
        );
    }
    // Check what the agent sent before writing it for another site.
    let (_, reports) = health::decode(&r.body)
        .with_context(|| format!("the agent at {} sent a malformed health bundle", a.api))?;
    crate::fsio::write_atomic(&a.out, &r.body)?;
    Ok(BundleReport::HealthExported {
        path: a.out.clone(),
        release,
        reports: reports.len(),
    })
}

fn import_health(a: &ImportHealthArgs) -> anyhow::Result<BundleReport> {
    let bytes = crate::fsio::read_bounded(&a.file, MAX_HEALTH_BUNDLE_BYTES)?;
    // Refuse a damaged file here with its own error; the agent checks again.
    health::decode(&bytes).with_context(|| format!("health bundle {}", a.file.display()))?;
    let r = http_exchange(
        a.api,
        "POST",
        "/health",
        Some(("application/octet-stream", &bytes)),
        MAX_RESPONSE_BYTES,
        IO_TIMEOUT,
    )?;
    if r.code != 200 {
        bail!(
            "the agent at {} refused the health bundle (HTTP {}): {}",
            a.api,
            r.code,
            error_text(&r)
        );
    }
    let view: HealthImportView = serde_json::from_slice(&r.body)
        .with_context(|| format!("the agent at {} answered with something else", a.api))?;
    Ok(BundleReport::HealthImported(view))
}

/// Has the running agent at `api` import the bundle file (by absolute path:
/// the agent reads it itself, so nothing large crosses the API).
fn import_by_agent(api: SocketAddr, file: &std::path::Path) -> anyhow::Result<BundleReport> {
    let path = std::fs::canonicalize(file)
        .with_context(|| format!("cannot find bundle {}", file.display()))?;
    let body = serde_json::to_vec(&BundleRequest {
        path: path.to_string_lossy().into_owned(),
    })?;
    let r = http_exchange(
        api,
        "POST",
        "/bundle",
        Some(("application/json", &body)),
        MAX_RESPONSE_BYTES,
        crate::driver::BUNDLE_TIMEOUT,
    )?;
    if r.code != 200 {
        bail!(
            "the agent at {api} did not import {} (HTTP {}): {}",
            path.display(),
            r.code,
            error_text(&r)
        );
    }
    let view: BundleImportView = serde_json::from_slice(&r.body)
        .with_context(|| format!("the agent at {api} answered with something else"))?;
    Ok(BundleReport::ImportedByAgent(view))
}
