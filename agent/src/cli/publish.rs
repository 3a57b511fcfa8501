//! `waveguard publish`: adds a release to a release directory.
//!
//! The artifact is cut with the protocol's streaming chunker, so it is never
//! held in memory whole; each chunk is stored under its blake3 (chunks an
//! earlier release already stored are shared, not written again). Then the
//! chunk list is written, the release (artifact hash, chunk list reference,
//! chunker parameters and rollout policy) is added to the targets, and new
//! targets, snapshot and timestamp are signed by the protocol's
//! [`Repository`](waveguard_protocol::metadata::build::Repository) and
//! committed together. Which `--key` signs which role is read from the root.
//!
//! Everything that can be checked before reading the artifact is checked
//! first (names, policy, chunker sizes, keys against the root), so a mistake
//! costs no chunking.

use super::args::{self, StartTime, WaveList};
use super::keys;
use crate::repo::{Repo, Stored};
use crate::vendor;
use anyhow::{bail, Context as _};
use clap::Args;
use std::fmt;
use std::fs::File;
use std::path::PathBuf;
use waveguard_protocol::chunker::{self, ChunkReadError};
use waveguard_protocol::limits::{MAX_CHUNK_BYTES, MIN_CHUNK_MIN};
use waveguard_protocol::metadata::build::Repository;
use waveguard_protocol::metadata::{release_target, Expiries, RoleName, RoleSigners};
use waveguard_protocol::release::{
    ChunkListRef, ChunkerParams, HealthPolicy, ReleaseInfo, RolloutPolicy, CHUNKER_FASTCDC_V2020,
};
use waveguard_protocol::{ReleaseId, SigningKey, Timestamp};

/// Arguments of `waveguard publish`.
#[derive(Args, Debug, Clone)]
pub struct PublishArgs {
    /// The artifact file to publish.
    #[arg(value_name = "ARTIFACT")]
    pub artifact: PathBuf,
    /// The release directory (created by `waveguard root init`).
    #[arg(long, value_name = "DIR")]
    pub repo: PathBuf,
    /// Product name, e.g. acme-sensor.
    #[arg(long)]
    pub product: String,
    /// Version, e.g. 7.11.0.
    #[arg(long)]
    pub version: String,
    /// Key files for the targets, snapshot and timestamp roles; the root says which signs what.
    #[arg(long = "key", value_name = "FILE", num_args = 1.., required = true)]
    pub keys: Vec<PathBuf>,
    /// Waves as name:cumulative-share:bake-time, in order.
    #[arg(long, value_name = "LIST", default_value = args::DEFAULT_WAVES, value_parser = args::waves)]
    pub waves: WaveList,
    /// When wave 0 opens: `now` or YYYY-MM-DDTHH:MM:SSZ.
    #[arg(long, value_name = "TIME", default_value = "now", value_parser = args::start_time)]
    pub start: StartTime,
    /// A wave fails when this share of its reporting nodes failed.
    #[arg(long, value_name = "PERCENT", default_value = "5%", value_parser = args::percent_ppm)]
    pub max_failure: u32,
    /// Reports needed before a wave can fail or pass.
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub min_reports: u32,
    /// An installed node silent this long counts as failed.
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = args::duration_secs)]
    pub silence: u64,
    /// How often installed nodes send a heartbeat.
    #[arg(long, value_name = "DURATION", default_value = "1m", value_parser = args::duration_secs)]
    pub heartbeat: u64,
    /// The share of each wave that reports health (the report sample); the
    /// gate counts only these. Below 100% for fleets of many thousands, so
    /// that a wave has a few hundred reporters rather than every node.
    #[arg(long, value_name = "PERCENT", default_value = "100%", value_parser = args::percent_ppm)]
    pub report_share: u32,
    /// Average chunk size; minimum and maximum default to a quarter and four times it.
    #[arg(long, value_name = "SIZE", default_value = "1MiB", value_parser = args::size_bytes)]
    pub chunk_avg: u64,
    /// Smallest chunk (default: a quarter of --chunk-avg, at least 16 KiB).
    #[arg(long, value_name = "SIZE", value_parser = args::size_bytes)]
    pub chunk_min: Option<u64>,
    /// Largest chunk (default: four times --chunk-avg, at most 8 MiB).
    #[arg(long, value_name = "SIZE", value_parser = args::size_bytes)]
    pub chunk_max: Option<u64>,
    /// Lifetimes of the documents signed.
    #[command(flatten)]
    pub expiries: ExpiryArgs,
}

/// How long the targets, snapshot and timestamp a command signs stay valid.
#[derive(Args, Debug, Clone)]
pub struct ExpiryArgs {
    /// How long the signed targets stay valid.
    #[arg(long, value_name = "DURATION", default_value = "90d", value_parser = args::duration_secs)]
    pub targets_expires: u64,
    /// How long the signed snapshot stays valid.
    #[arg(long, value_name = "DURATION", default_value = "30d", value_parser = args::duration_secs)]
    pub snapshot_expires: u64,
    /// How long the signed timestamp stays valid.
    #[arg(long, value_name = "DURATION", default_value = "7d", value_parser = args::duration_secs)]
    pub timestamp_expires: u64,
}

impl ExpiryArgs {
    fn expiries(&self) -> Expiries {
        Expiries {
            timestamp_secs: self.timestamp_expires,
            snapshot_secs: self.snapshot_expires,
            targets_secs: self.targets_expires,
        }
    }
}

/// What `publish` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishReport {
    /// The new release's ID.
    pub release: ReleaseId,
    /// Its TUF target path.
    pub target_path: String,
    /// Product.
    pub product: String,
    /// Version.
    pub version: String,
    /// Artifact length.
    pub bytes: u64,
    /// Artifact blake3.
    pub blake3: [u8; 32],
    /// Number of chunks.
    pub chunks: u32,
    /// Chunks written now (the rest were already stored by another release).
    pub chunks_written: u32,
    /// The signed rollout policy.
    pub policy: RolloutPolicy,
    /// Versions of the new targets, snapshot and timestamp.
    pub versions: (u64, u64, u64),
    /// Things the user should know.
    pub notes: Vec<String>,
}

impl fmt::Display for PublishReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "published {} {} as {}",
            self.product, self.version, self.target_path
        )?;
        writeln!(f, "release id: {}", self.release)?;
        writeln!(
            f,
            "artifact:   {} bytes, blake3 {}",
            self.bytes,
            hex::encode(self.blake3)
        )?;
        writeln!(
            f,
            "chunks:     {} ({} new, {} shared with earlier releases)",
            self.chunks,
            self.chunks_written,
            self.chunks - self.chunks_written
        )?;
        write!(f, "waves:      starting {}", self.policy.start)?;
        for (i, w) in self.policy.waves.iter().enumerate() {
            write!(
                f,
                "\n  {i} {:<12} up to {:>8} of the fleet, bakes {}s",
                w.name,
                percent(w.cumulative_ppm),
                w.bake_seconds
            )?;
        }
        let h = &self.policy.health;
        write!(
            f,
            "\nhealth:     halt at {} failed (min {} reports), silence {}s, heartbeat {}s, {} of each wave report",
            percent(h.max_failure_ppm),
            h.min_reports,
            h.silence_seconds,
            h.heartbeat_seconds,
            percent(h.report_ppm)
        )?;
        let (t, s, ts) = self.versions;
        write!(
            f,
            "\nmetadata:   targets v{t}, snapshot v{s}, timestamp v{ts}"
        )?;
        for n in &self.notes {
            write!(f, "\nnote: {n}")?;
        }
        Ok(())
    }
}

/// Parts per million as a percentage without trailing zeros (`12500` → `1.25%`).
pub fn percent(ppm: u32) -> String {
    let whole = ppm / 10_000;
    let frac = ppm % 10_000;
    if frac == 0 {
        return format!("{whole}%");
    }
    let digits = format!("{frac:04}");
    format!("{whole}.{}%", digits.trim_end_matches('0'))
}

/// Runs `publish` as of `now`.
pub fn run(a: &PublishArgs, now: Timestamp) -> anyhow::Result<PublishReport> {
    for (what, name) in [("product", &a.product), ("version", &a.version)] {
        if name.contains('/') {
            bail!("publish: --{what} {name:?} may not contain '/', which separates product and version in target paths");
        }
    }
    let policy = RolloutPolicy {
        start: a.start.resolve(now),
        waves: a.waves.0.clone(),
        health: HealthPolicy {
            max_failure_ppm: a.max_failure,
            min_reports: a.min_reports,
            silence_seconds: a.silence,
            heartbeat_seconds: a.heartbeat,
            report_ppm: a.report_share,
        },
    };
    policy.validate().context("publish")?;
    let params = chunker_params(a)?;
    chunker::check_params(&params).context("publish")?;
    let secrets = keys::read_secrets(&a.keys, "publish: --key")?;

    let repo = Repo::new(&a.repo);
    let opened = vendor::open(&repo).context("publish")?;
    let mut repository = opened.repository;
    let mut notes = opened.notes;
    let signing = Signing::new("publish", &repository, &secrets)?;
    notes.extend(unused_keys(&repository, &secrets));

    let target_path = format!("{}/{}", a.product, a.version);
    if let Some(existing) = repository.targets().get(&target_path) {
        let hash = existing.hashes.get("blake3").cloned().unwrap_or_default();
        bail!(
            "publish: {} {} is already published (artifact blake3 {hash}); a published version never changes, publish a new version",
            a.product,
            a.version
        );
    }

    let chunked = chunk_artifact(&repo, a, &params)?;
    let list_bytes = chunked.list.encode();
    let chunk_count =
        u32::try_from(chunked.list.chunks.len()).context("publish: too many chunks")?;
    let info = ReleaseInfo {
        product: a.product.clone(),
        version: a.version.clone(),
        chunk_list: ChunkListRef {
            length: list_bytes.len() as u64,
            blake3: hex::encode(waveguard_protocol::chunk::hash(&list_bytes)),
            chunks: chunk_count,
        },
        chunker: params,
        rollout: policy.clone(),
    };
    let target =
        release_target(&target_path, chunked.length, &chunked.blake3, &info).context("publish")?;
    let release = repository
        .add_target(&target_path, target)
        .context("publish")?;
    repo.write_chunk_list(&release.id, &list_bytes)
        .context("publish: cannot write the chunk list")?;

    let versions = signing.commit(&repo, &mut repository, now, &a.expiries)?;
    Ok(PublishReport {
        release: release.id,
        target_path,
        product: a.product.clone(),
        version: a.version.clone(),
        bytes: chunked.length,
        blake3: chunked.blake3,
        chunks: chunk_count,
        chunks_written: chunked.written,
        policy,
        versions,
        notes,
    })
}

/// Chunker sizes from the arguments: min and max default to a quarter and
/// four times the average, kept inside the protocol's bounds (min even, as
/// FastCDC 2020 needs).
fn chunker_params(a: &PublishArgs) -> anyhow::Result<ChunkerParams> {
    let fit = |v: u64, flag: &str| {
        u32::try_from(v)
            .map_err(|_| anyhow::anyhow!("publish: --{flag} {v} is larger than the chunker allows"))
    };
    let avg = fit(a.chunk_avg, "chunk-avg")?;
    let min = match a.chunk_min {
        Some(m) => fit(m, "chunk-min")?,
        None => (avg / 4).max(MIN_CHUNK_MIN) & !1,
    };
    let max = match a.chunk_max {
        Some(m) => fit(m, "chunk-max")?,
        None => avg.saturating_mul(4).min(MAX_CHUNK_BYTES),
    };
    Ok(ChunkerParams {
        algorithm: CHUNKER_FASTCDC_V2020.into(),
        min_size: min,
        avg_size: avg,
        max_size: max,
    })
}

/// The keys that sign the targets, snapshot and timestamp roles, for a command
/// that re-signs the metadata of a release directory.
pub(super) struct Signing<'k> {
    command: &'static str,
    targets: Vec<&'k SigningKey>,
    snapshot: Vec<&'k SigningKey>,
    timestamp: Vec<&'k SigningKey>,
}

impl<'k> Signing<'k> {
    /// Picks from `secrets` the keys of each role the root names, enough for its threshold.
    pub(super) fn new(
        command: &'static str,
        repository: &Repository,
        secrets: &'k [SigningKey],
    ) -> anyhow::Result<Self> {
        Ok(Signing {
            command,
            targets: signers(command, repository, RoleName::Targets, secrets)?,
            snapshot: signers(command, repository, RoleName::Snapshot, secrets)?,
            timestamp: signers(command, repository, RoleName::Timestamp, secrets)?,
        })
    }

    /// Signs new targets, snapshot and timestamp as of `now` and writes them to `repo`;
    /// returns their versions.
    pub(super) fn commit(
        &self,
        repo: &Repo,
        repository: &mut Repository,
        now: Timestamp,
        expiries: &ExpiryArgs,
    ) -> anyhow::Result<(u64, u64, u64)> {
        let signers = RoleSigners {
            targets: &self.targets,
            snapshot: &self.snapshot,
            timestamp: &self.timestamp,
        };
        let bundle = repository
            .sign(now, &expiries.expiries(), &signers)
            .context(self.command)?;
        vendor::commit(repo, &bundle)
            .with_context(|| format!("{}: cannot write the signed metadata", self.command))?;
        let v = repository.trust().versions();
        Ok((
            v.targets.unwrap_or(0),
            v.snapshot.unwrap_or(0),
            v.timestamp.unwrap_or(0),
        ))
    }
}

/// The keys among `secrets` that `role` accepts, enough for its threshold
/// (`command` names the command in the error).
fn signers<'k>(
    command: &str,
    repository: &Repository,
    role: RoleName,
    secrets: &'k [SigningKey],
) -> anyhow::Result<Vec<&'k SigningKey>> {
    let root = repository.root();
    let ids = root.role_key_ids(role);
    let threshold = root.role(role).map_or(1, |r| r.threshold);
    let chosen: Vec<&SigningKey> = secrets
        .iter()
        .filter(|k| ids.contains(&k.key_id()))
        .collect();
    if (chosen.len() as u64) < u64::from(threshold) {
        let wanted: Vec<String> = ids.iter().map(|id| keys::short_id(id)).collect();
        bail!(
            "{command}: the {role} role of root v{} needs {threshold} signature(s) but {} of the --key files hold one of its keys ({})",
            root.version,
            chosen.len(),
            wanted.join(", ")
        );
    }
    Ok(chosen)
}

/// Notes for keys that sign none of the roles `publish` signs.
pub(super) fn unused_keys(repository: &Repository, secrets: &[SigningKey]) -> Vec<String> {
    let root = repository.root();
    let roles = [RoleName::Targets, RoleName::Snapshot, RoleName::Timestamp];
    secrets
        .iter()
        .filter(|k| {
            let id = k.key_id();
            roles.iter().all(|r| !root.role_key_ids(*r).contains(&id))
        })
        .map(|k| {
            format!(
                "key {} is not a targets, snapshot or timestamp key of root v{}; it was not used",
                keys::short_id(&k.key_id()),
                root.version
            )
        })
        .collect()
}

/// An artifact cut into chunks and stored.
struct Chunked {
    list: waveguard_protocol::chunk::ChunkList,
    length: u64,
    blake3: [u8; 32],
    written: u32,
}

/// Streams the artifact through the chunker, storing each chunk and hashing the whole.
fn chunk_artifact(repo: &Repo, a: &PublishArgs, params: &ChunkerParams) -> anyhow::Result<Chunked> {
    let file = File::open(&a.artifact)
        .with_context(|| format!("publish: cannot open the artifact {}", a.artifact.display()))?;
    repo.create_layout()
        .context("publish: cannot create the release directory layout")?;
    let mut whole = blake3::Hasher::new();
    let mut written = 0u32;
    let list = chunker::chunk_reader(file, params, |entry, bytes| {
        whole.update(bytes);
        if repo.store_chunk(entry, bytes)? == Stored::Written {
            written += 1;
        }
        Ok::<(), crate::fsio::WriteError>(())
    })
    .map_err(|e| match e {
        ChunkReadError::Handler { index, source, .. } => {
            anyhow::Error::new(source).context(format!("publish: cannot store chunk {index}"))
        }
        other => {
            anyhow::Error::new(other).context(format!("publish: chunking {}", a.artifact.display()))
        }
    })?;
    Ok(Chunked {
        length: list.total_len(),
        list,
        blake3: *whole.finalize().as_bytes(),
        written,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use waveguard_protocol::release::PPM;

    proptest! {
        #[test]
        fn printed_percentages_parse_back_exactly(ppm in 0..=PPM) {
            prop_assert_eq!(args::percent_ppm(&percent(ppm)), Ok(ppm));
        }
    }

    #[test]
    fn percentages_print_without_trailing_zeros() {
        assert_eq!(percent(10_000), "1%");
        assert_eq!(percent(5_000), "0.5%");
        assert_eq!(percent(12_500), "1.25%");
        assert_eq!(percent(1), "0.0001%");
        assert_eq!(percent(PPM), "100%");
    }
}
