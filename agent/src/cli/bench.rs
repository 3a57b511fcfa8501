//! `waveguard bench`: measurements of the real agent on loopback, for
//! `docs/benchmarks.md`.
//!
//! - `pair`: one seeder and one agent, no limits: goodput with every chunk
//!   verified (blake3) and stored, and the artifact assembled and verified.
//! - `swarm`: one seeder and N agents, every node's upload limited to the
//!   same rate, against the P2P lower bound for those rates,
//!   max(F/u_s, F/d_min, N·F/(u_s + Σu_i)); also the seeder's upload as a
//!   multiple of the release.
//! - `delta`: bytes a node holding an old version fetches for a new one
//!   under content-defined chunking (no network; see [`super::bench_delta`]).
//! - `idle`: a `waveguard agent` process (this executable) connected to a
//!   seeder after fetching a small release: its memory and CPU use while idle.
//!
//! All runs use the agent's testbed: the same daemon, network and store code
//! as a deployed agent.

use crate::cli::args;
use crate::testbed::{counters, AgentSpec, ReleaseSpec, Testbed};
use anyhow::{bail, Context};
use std::fmt;
use std::path::Path;
use std::time::{Duration, Instant};

/// Arguments of `waveguard bench`.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// What to measure.
    #[command(subcommand)]
    pub what: BenchCommand,
}

/// `waveguard bench ...`.
#[derive(clap::Subcommand, Debug, Clone)]
#[non_exhaustive]
pub enum BenchCommand {
    /// Goodput of one seeder and one agent on loopback, unlimited.
    Pair {
        /// Release size.
        #[arg(long, default_value = "256MiB", value_parser = args::size_bytes)]
        size: u64,
        /// Runs (the median is reported).
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// Time for N agents to fetch a release from one seeder, every upload rate-limited.
    Swarm {
        /// Agent counts to run, comma-separated.
        #[arg(long, default_value = "1,4,12", value_delimiter = ',')]
        agents: Vec<usize>,
        /// Release size.
        #[arg(long, default_value = "256MiB", value_parser = args::size_bytes)]
        size: u64,
        /// Upload limit of every node, per second.
        #[arg(long, default_value = "8MiB", value_parser = args::size_bytes)]
        rate: u64,
        /// Runs per agent count (the median is reported).
        #[arg(long, default_value_t = 1)]
        runs: usize,
    },
    /// Bytes fetched for a 5 % change of a many-file archive, against its full size.
    Delta {
        /// Files in the archive.
        #[arg(long, default_value_t = 3000)]
        files: usize,
        /// Percent of the files changed.
        #[arg(long, default_value_t = 5.0)]
        percent: f64,
        /// Seed of the archive and the change.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Average chunk size in KiB (min a quarter, max four times); default: the release default.
        #[arg(long)]
        avg_kib: Option<u32>,
    },
    /// Memory and CPU of an idle `waveguard agent` process connected to a seeder.
    Idle {
        /// How long to watch it.
        #[arg(long, default_value = "60s", value_parser = args::duration_secs)]
        duration: u64,
    },
}

/// One measured configuration.
#[derive(Debug, Clone)]
pub struct BenchRow {
    /// What was run.
    pub name: String,
    /// Measured values, as (label, value) in display order.
    pub values: Vec<(String, String)>,
}

/// What `waveguard bench` measured.
#[derive(Debug, Clone)]
pub struct BenchReport {
    /// One row per configuration.
    pub rows: Vec<BenchRow>,
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for row in &self.rows {
            write!(f, "{}:", row.name)?;
            for (label, value) in &row.values {
                write!(f, " {label}={value}")?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

/// Runs the benchmark.
pub fn run(args: &BenchArgs) -> anyhow::Result<BenchReport> {
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let rows = runtime.block_on(async {
        match &args.what {
            BenchCommand::Pair { size, runs } => pair(*size, *runs).await,
            BenchCommand::Swarm {
                agents,
                size,
                rate,
                runs,
            } => swarm(agents, *size, *rate, *runs).await,
            BenchCommand::Idle { duration } => idle(*duration).await,
            BenchCommand::Delta {
                files,
                percent,
                seed,
                avg_kib,
            } => delta(*files, *percent, *seed, *avg_kib),
        }
    })?;
    Ok(BenchReport { rows })
}

fn delta(
    files: usize,
    percent: f64,
    seed: u64,
    avg_kib: Option<u32>,
) -> anyhow::Result<Vec<BenchRow>> {
    if !(0.0..=100.0).contains(&percent) {
        bail!("--percent must be between 0 and 100");
    }
    let params = super::bench_delta::params(avg_kib.map(|k| k.saturating_mul(1024)));
    let r = super::bench_delta::measure(files, percent, seed, &params)
        .context("chunking the archive (--avg-kib out of the chunker's range?)")?;
    Ok(vec![BenchRow {
        name: format!(
            "delta {files} files, {percent}% changed, {} KiB average chunks",
            params.avg_size / 1024
        ),
        values: vec![
            ("old_MiB".into(), format!("{:.1}", mib(r.old_bytes as f64))),
            ("new_MiB".into(), format!("{:.1}", mib(r.new_bytes as f64))),
            ("changed_files".into(), r.changed_files.to_string()),
            (
                "changed_content_MiB".into(),
                format!("{:.2}", mib(r.changed_content_bytes as f64)),
            ),
            (
                "chunks_missing".into(),
                format!("{}/{}", r.missing_chunks, r.new_chunks),
            ),
            (
                "fetch_MiB".into(),
                format!("{:.1}", mib(r.fetch_bytes as f64)),
            ),
            (
                "fetch_percent".into(),
                format!(
                    "{:.1}",
                    100.0 * r.fetch_bytes as f64 / r.new_bytes.max(1) as f64
                ),
            ),
        ],
    }])
}

fn mib(bytes: f64) -> f64 {
    bytes / f64::from(1u32 << 20)
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs.get(xs.len() / 2).copied().unwrap_or(0.0)
}

/// One run: a seeder limited to `upload`, `agents` agents limited to `upload`;
/// returns (seconds until the last agent staged, seeder bytes sent).
async fn one_run(size: u64, agents: usize, upload: u64) -> anyhow::Result<(f64, u64)> {
    let tmp = tempfile::tempdir().context("temporary directory")?;
    let spec = ReleaseSpec {
        size,
        ..ReleaseSpec::default()
    };
    let (mut bed, published) = Testbed::publish(tmp.path(), &spec)?;
    let seed = bed
        .start(&AgentSpec {
            seed: true,
            upload,
            ..AgentSpec::default()
        })
        .await?;
    let started = Instant::now();
    let mut which = Vec::new();
    for _ in 0..agents {
        which.push(
            bed.start(&AgentSpec {
                upload,
                ..AgentSpec::default()
            })
            .await?,
        );
    }
    let limit = Duration::from_secs(600);
    bed.wait_staged(&which, &published.release, limit).await?;
    let secs = started.elapsed().as_secs_f64();
    // Let the traffic counters take their last sample.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let t = counters(&bed.members[seed].shared).traffic;
    bed.shutdown().await;
    Ok((secs, t.lan.sent + t.wan.sent))
}

async fn pair(size: u64, runs: usize) -> anyhow::Result<Vec<BenchRow>> {
    let mut times = Vec::new();
    for _ in 0..runs.max(1) {
        times.push(one_run(size, 1, 0).await?.0);
    }
    let t = median(times.clone());
    Ok(vec![BenchRow {
        name: format!("pair {:.0} MiB", mib(size as f64)),
        values: vec![
            ("median_s".into(), format!("{t:.2}")),
            (
                "goodput_MiB_s".into(),
                format!("{:.1}", mib(size as f64) / t),
            ),
            ("runs_s".into(), format!("{times:.2?}")),
        ],
    }])
}

/// The P2P lower bound in seconds for `n` downloaders of `size` bytes when the
/// seeder and every peer upload at `rate` and downloads are unlimited.
pub fn lower_bound_secs(size: u64, n: usize, seed_rate: u64, peer_rate: u64) -> f64 {
    let f = size as f64;
    let from_seeder = f / seed_rate as f64;
    let total = n as f64 * f / (seed_rate as f64 + n as f64 * peer_rate as f64);
    from_seeder.max(total)
}

async fn swarm(
    agents: &[usize],
    size: u64,
    rate: u64,
    runs: usize,
) -> anyhow::Result<Vec<BenchRow>> {
    if rate == 0 {
        bail!("--rate must be above zero: the lower bound needs finite rates");
    }
    let mut rows = Vec::new();
    for &n in agents {
        let mut times = Vec::new();
        let mut uploads = Vec::new();
        for _ in 0..runs.max(1) {
            let (t, up) = one_run(size, n, rate).await?;
            times.push(t);
            uploads.push(up as f64 / size as f64);
        }
        let t = median(times.clone());
        let bound = lower_bound_secs(size, n, rate, rate);
        rows.push(BenchRow {
            name: format!(
                "swarm {n} agents, {:.0} MiB, {:.1} MiB/s each",
                mib(size as f64),
                mib(rate as f64)
            ),
            values: vec![
                ("median_s".into(), format!("{t:.1}")),
                ("lower_bound_s".into(), format!("{bound:.1}")),
                ("ratio".into(), format!("{:.2}", t / bound)),
                ("seeder_upload_x".into(), format!("{:.2}", median(uploads))),
                ("runs_s".into(), format!("{times:.1?}")),
            ],
        });
    }
    Ok(rows)
}

/// Resident memory (kB, now and peak) and CPU ticks (user + system) of process `pid`.
fn proc_usage(pid: u32) -> anyhow::Result<(u64, u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("/proc/{pid}/status (this benchmark needs Linux)"))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of stat; `rest` starts at field 3.
    Ok((field("VmRSS:"), field("VmHWM:"), tick(11) + tick(12)))
}

async fn idle(duration: u64) -> anyhow::Result<Vec<BenchRow>> {
    let tmp = tempfile::tempdir().context("temporary directory")?;
    let spec = ReleaseSpec {
        size: 4 << 20,
        ..ReleaseSpec::default()
    };
    let (mut bed, published) = Testbed::publish(tmp.path(), &spec)?;
    let seed = bed
        .start(&AgentSpec {
            seed: true,
            ..AgentSpec::default()
        })
        .await?;
    let data = tmp.path().join("idle-agent");
    let config = idle_config(tmp.path(), &data, &bed.members[seed].addr)?;
    let exe = std::env::current_exe().context("cannot find this executable")?;
    let mut child = tokio::process::Command::new(exe)
        .arg("agent")
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .context("cannot start `waveguard agent`")?;
    let pid = child.id().context("the agent exited at once")?;
    let staged = data.join("staging").join(published.release.to_hex());
    crate::testbed::wait_for(
        "the agent to fetch the release",
        Duration::from_secs(60),
        || std::fs::read_dir(&staged).is_ok_and(|mut d| d.next().is_some()),
    )
    .await?;
    // Settle, then watch.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, _, ticks_before) = proc_usage(pid)?;
    tokio::time::sleep(Duration::from_secs(duration)).await;
    let (rss, peak, ticks_after) = proc_usage(pid)?;
    if let Ok(Some(status)) = child.try_wait() {
        bail!("the agent exited during the measurement: {status}");
    }
    let _ = child.kill().await;
    bed.shutdown().await;
    // Linux reports CPU time in clock ticks of 10 ms (USER_HZ = 100).
    let cpu_s = (ticks_after - ticks_before) as f64 / 100.0;
    Ok(vec![BenchRow {
        name: "idle agent".into(),
        values: vec![
            ("rss_MiB".into(), format!("{:.1}", rss as f64 / 1024.0)),
            (
                "peak_rss_MiB".into(),
                format!("{:.1}", peak as f64 / 1024.0),
            ),
            (
                "cpu_percent".into(),
                format!("{:.3}", 100.0 * cpu_s / duration.max(1) as f64),
            ),
            (
                "what".into(),
                format!("{duration}s idle after fetching 4 MiB, 1 peer"),
            ),
        ],
    }])
}

/// Writes the idle agent's configuration: loopback, the seeder as bootstrap, API on a free port.
fn idle_config(dir: &Path, data: &Path, seeder: &str) -> anyhow::Result<std::path::PathBuf> {
    let root = dir.join("repo/metadata/1.root.json");
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let text = format!(
        "data_dir = {data:?}\ntrusted_root = {root:?}\n\n[network]\nlisten = [\"/ip4/127.0.0.1/tcp/0\"]\nbootstrap = [{seeder:?}]\nmdns = false\n\n[api]\nlisten = \"127.0.0.1:{port}\"\n",
        data = data.to_string_lossy(),
        root = root.to_string_lossy(),
    );
    let path = dir.join("idle-agent.toml");
    std::fs::write(&path, text)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lower_bound_is_the_slowest_of_its_three_terms() {
        // One downloader: the seeder's upload is the limit.
        assert_eq!(lower_bound_secs(100, 1, 10, 10), 10.0);
        // Many fast peers: still at least F/u_s.
        assert_eq!(lower_bound_secs(100, 12, 10, 100), 10.0);
        // Slow peers: the fleet's total upload is the limit: 12*100/(10+12*1).
        let b = lower_bound_secs(100, 12, 10, 1);
        assert!((b - 1200.0 / 22.0).abs() < 1e-9, "{b}");
    }

    #[test]
    fn the_median_of_an_odd_count_is_the_middle() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![]), 0.0);
    }
}
