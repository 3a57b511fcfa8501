//! A mesh of real agents on 127.0.0.1 inside this process: a throw-away
//! vendor publishes a release, a seeder serves it, and any number of agents
//! fetch it over libp2p exactly as deployed agents do (same daemon, driver,
//! store and network code). Used by `waveguard bench` and the end-to-end
//! tests, so that both measure and check the real thing.
//!
//! Everything lives in one temporary directory and must run inside a tokio
//! runtime; agents stop when the [`Testbed`] is shut down or dropped.

use crate::cli::{run_at, Outcome};
use crate::config::{Config, Role};
use crate::daemon;
use crate::driver::{now, Counters, DirectiveReceipt, Shared};
use anyhow::{bail, Context};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use waveguard_protocol::health::cert::issue_cert;
use waveguard_protocol::release::Release;
use waveguard_protocol::wave::{wave_of, WavePin};
use waveguard_protocol::{NodeId, ReleaseId, SigningKey};

/// The release a [`Testbed`] publishes.
#[derive(Clone, Debug)]
pub struct ReleaseSpec {
    /// Artifact size in bytes.
    pub size: u64,
    /// Average chunk size, as `waveguard publish --chunk-avg` takes it ("1MiB").
    pub chunk_avg: String,
    /// Seconds from now until wave 0 opens. The default (an hour) keeps the
    /// release prefetch-only for the testbed's lifetime: nobody installs.
    pub start_in_secs: u64,
    /// The rollout policy, as `waveguard publish` takes it.
    pub rollout: RolloutSpec,
    /// Give the fleet an operator role (its key in the testbed directory), so
    /// only certified nodes' health reports count; see [`AgentSpec::certified`].
    pub operator: bool,
}

/// A release's rollout policy in `waveguard publish`'s terms (shortened for tests).
#[derive(Clone, Debug)]
pub struct RolloutSpec {
    /// `--waves`, e.g. `canary:20%:4s,all:100%:0s`.
    pub waves: String,
    /// `--max-failure`, e.g. `5%`.
    pub max_failure: String,
    /// `--min-reports`.
    pub min_reports: u32,
    /// `--silence`, e.g. `3s`.
    pub silence: String,
    /// `--heartbeat`, e.g. `1s`.
    pub heartbeat: String,
}

impl Default for RolloutSpec {
    fn default() -> Self {
        RolloutSpec {
            waves: crate::cli::args::DEFAULT_WAVES.into(),
            max_failure: "5%".into(),
            min_reports: 3,
            silence: "10m".into(),
            heartbeat: "1m".into(),
        }
    }
}

impl Default for ReleaseSpec {
    fn default() -> Self {
        ReleaseSpec {
            size: 8 << 20,
            chunk_avg: "1MiB".into(),
            start_in_secs: 3600,
            rollout: RolloutSpec::default(),
            operator: false,
        }
    }
}

/// A published release.
#[derive(Clone, Debug)]
pub struct Published {
    /// Its ID.
    pub release: ReleaseId,
    /// The artifact's blake3 hash.
    pub blake3: [u8; 32],
    /// The artifact's size in bytes.
    pub size: u64,
    /// The release as the signed metadata describes it (policy, schedule).
    pub info: Release,
}

/// How one agent of the testbed runs.
#[derive(Clone, Debug, Default)]
pub struct AgentSpec {
    /// Serve the testbed's release directory (a seeder) rather than fetch.
    pub seed: bool,
    /// Upload limit in bytes per second (0: none).
    pub upload: u64,
    /// Download limit in bytes per second (0: none).
    pub download: u64,
    /// Fault injection: corrupt every chunk this agent serves.
    pub corrupt_uploads: bool,
    /// Dial these agents (indices into the testbed) at start; empty dials the first seeder.
    pub bootstrap: Vec<usize>,
    /// Give the agent a node key that puts it in this wave of the published release.
    pub wave: Option<u32>,
    /// The agent's installer hooks (probe, install, rollback, timeout).
    pub hooks: crate::config::HooksConfig,
    /// Issue the agent a fleet certificate signed by the testbed's operator key.
    pub certified: bool,
    /// The operator's wave pin in the agent's config (`[rollout] pin`).
    pub pin: WavePin,
    /// Install nothing (`[rollout] paused`).
    pub paused: bool,
}

/// One running agent.
pub struct Member {
    /// Its configuration (data directory and so on).
    pub config: Config,
    /// Its status and counters.
    pub shared: Shared,
    /// Its node ID.
    pub node: NodeId,
    /// A dialable address with `/p2p/` suffix.
    pub addr: String,
    task: Option<JoinHandle<()>>,
}

impl Member {
    /// Hands a signed halt or resume directive to this agent as its HTTP API
    /// would (`POST /directive`) and returns the engine's verdict; a refusal
    /// is a [`crate::driver::SubmitError`] (downcast to tell which).
    pub async fn directive(&self, bytes: Vec<u8>) -> anyhow::Result<DirectiveReceipt> {
        Ok(self.shared.submit_directive(bytes).await?)
    }
}

/// Agents on loopback sharing one vendor and one release directory.
pub struct Testbed {
    dir: PathBuf,
    root: PathBuf,
    release: Release,
    operator: Option<SigningKey>,
    stop: watch::Sender<bool>,
    /// The agents, in start order.
    pub members: Vec<Member>,
}

/// Polls `done` every 50 ms until it holds, failing after `limit`.
pub async fn wait_for(
    what: &str,
    limit: Duration,
    mut done: impl FnMut() -> bool,
) -> anyhow::Result<()> {
    let started = Instant::now();
    while !done() {
        if started.elapsed() > limit {
            bail!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// `(chunks stored, chunks in the release)` as the agent's status says.
pub fn chunks_stored(shared: &Shared, release: &ReleaseId) -> (u32, u32) {
    let Ok(status) = shared.status.lock() else {
        return (0, 0);
    };
    status
        .as_ref()
        .and_then(|s| s.releases.iter().find(|r| &r.id == release))
        .map_or((0, 0), |r| (r.chunks_stored, r.chunks_total))
}

/// Whether the agent has assembled and verified `release` in its staging area.
pub fn is_staged(shared: &Shared, release: &ReleaseId) -> bool {
    shared.status.lock().is_ok_and(|s| {
        s.as_ref().is_some_and(|s| {
            s.releases
                .iter()
                .any(|r| &r.id == release && r.state.name() == "staged")
        })
    })
}

/// A copy of the agent's counters.
pub fn counters(shared: &Shared) -> Counters {
    shared
        .counters
        .lock()
        .map(|c| c.clone())
        .unwrap_or_default()
}

impl Testbed {
    /// Creates a vendor (throw-away keys, one key for every role) in `dir`
    /// and publishes one release of pseudo-random bytes with no repeated
    /// chunk, so chunk counts equal fetch counts.
    pub fn publish(dir: &Path, spec: &ReleaseSpec) -> anyhow::Result<(Testbed, Published)> {
        let at = now();
        let p = |n: &str| dir.join(n).to_string_lossy().into_owned();
        let cli = |args: &[&str]| {
            let mut argv = vec!["waveguard"];
            argv.extend_from_slice(args);
            run_at(argv, at).with_context(|| format!("waveguard {}", args.join(" ")))
        };
        cli(&["keygen", "--out", &p("vendor.key")])?;
        let key = p("vendor.key");
        let mut init = vec![
            "root",
            "init",
            "--out",
            &p("repo"),
            "--root-key",
            &key,
            "--targets-key",
            &key,
            "--snapshot-key",
            &key,
            "--timestamp-key",
            &key,
        ]
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>();
        if spec.operator {
            cli(&["keygen", "--out", &p("operator.key")])?;
            init.extend(["--operator-key".into(), p("operator.key")]);
        }
        cli(&init.iter().map(String::as_str).collect::<Vec<_>>())?;
        let blake3 = write_artifact(&dir.join("app.bin"), spec.size)?;
        let start = at.plus_secs(spec.start_in_secs).to_rfc3339();
        let min_reports = spec.rollout.min_reports.to_string();
        let Outcome::Publish(r) = cli(&[
            "publish",
            &p("app.bin"),
            "--repo",
            &p("repo"),
            "--product",
            "acme",
            "--version",
            "1.0",
            "--key",
            &key,
            "--start",
            &start,
            "--chunk-avg",
            &spec.chunk_avg,
            "--waves",
            &spec.rollout.waves,
            "--max-failure",
            &spec.rollout.max_failure,
            "--min-reports",
            &min_reports,
            "--silence",
            &spec.rollout.silence,
            "--heartbeat",
            &spec.rollout.heartbeat,
        ])?
        else {
            bail!("publish reported something else");
        };
        let root = dir.join("repo/metadata/1.root.json");
        let loaded =
            crate::trusted::load(&crate::repo::Repo::new(dir.join("repo")), Some(&root), at)
                .context("the testbed's release directory")?;
        let Some(info) = loaded
            .state
            .releases()
            .into_iter()
            .find(|x| x.id == r.release)
        else {
            bail!("the published release is not in the release directory's metadata");
        };
        let operator = match spec.operator {
            true => Some(
                crate::keyfile::read_secret(&dir.join("operator.key"))
                    .context("the testbed's operator key")?,
            ),
            false => None,
        };
        let (stop, _) = watch::channel(false);
        let bed = Testbed {
            dir: dir.to_path_buf(),
            root,
            release: info.clone(),
            operator,
            stop,
            members: Vec::new(),
        };
        Ok((
            bed,
            Published {
                release: r.release,
                blake3,
                size: spec.size,
                info,
            },
        ))
    }

    /// The release directory agents seed from.
    pub fn repo(&self) -> PathBuf {
        self.dir.join("repo")
    }

    /// The vendor's key file (every role of the testbed's root), to sign directives with.
    pub fn vendor_key(&self) -> PathBuf {
        self.dir.join("vendor.key")
    }

    /// Starts one more agent and waits until it listens; returns its index.
    pub async fn start(&mut self, spec: &AgentSpec) -> anyhow::Result<usize> {
        let index = self.members.len();
        let bootstrap = if spec.bootstrap.is_empty() {
            self.members
                .iter()
                .position(|m| m.config.role == Role::Seeder)
                .map(|i| vec![i])
                .unwrap_or_default()
        } else {
            spec.bootstrap.clone()
        };
        let mut addrs = Vec::new();
        for i in bootstrap {
            let Some(m) = self.members.get(i) else {
                bail!("agent {index} would bootstrap from agent {i}, which does not exist");
            };
            addrs.push(m.addr.clone());
        }
        let defaults = Config::default();
        let data_dir = self.dir.join(format!("agent{index}"));
        let cert = self.prepare_identity(&data_dir, spec)?;
        let config = Config {
            data_dir,
            trusted_root: Some(self.root.clone()),
            role: if spec.seed {
                Role::Seeder
            } else {
                Role::Endpoint
            },
            network: crate::config::Network {
                listen: vec!["/ip4/127.0.0.1/tcp/0".into()],
                mdns: false,
                bootstrap: addrs,
                upload_bytes_per_sec: spec.upload,
                download_bytes_per_sec: spec.download,
                ..defaults.network.clone()
            },
            rollout: crate::config::Rollout {
                cert,
                pin: spec.pin,
                paused: spec.paused,
                ..defaults.rollout.clone()
            },
            hooks: spec.hooks.clone(),
            ..defaults
        };
        let repo = self.repo();
        let mut driver = daemon::start(&config, spec.seed.then_some(repo.as_path()))
            .with_context(|| format!("agent {index}"))?;
        if spec.corrupt_uploads {
            driver.inject_fault(crate::driver::Fault::CorruptUploads);
        }
        let (shared, node, addr, task) = self.run(driver, index).await?;
        self.members.push(Member {
            config,
            shared,
            node,
            addr,
            task: Some(task),
        });
        Ok(index)
    }

    /// Runs a started driver until the testbed stops; waits until it listens.
    async fn run(
        &self,
        driver: crate::driver::Driver,
        index: usize,
    ) -> anyhow::Result<(Shared, NodeId, String, JoinHandle<()>)> {
        let shared = driver.shared();
        let node = driver.node_id();
        let mut stop = self.stop.subscribe();
        let task = tokio::spawn(driver.run(async move {
            let _ = stop.changed().await;
        }));
        wait_for("the agent to listen", Duration::from_secs(10), || {
            shared.listen.lock().is_ok_and(|l| !l.is_empty())
        })
        .await?;
        let addr = match shared.listen.lock() {
            Ok(l) => format!("{}/p2p/{}", l[0], node.to_peer_id_string()),
            Err(_) => bail!("agent {index}: status lock poisoned"),
        };
        Ok((shared, node, addr, task))
    }

    /// Writes the node key (one in `spec.wave` if asked) and, if asked, a fleet
    /// certificate into a new agent's data directory; returns the certificate's path.
    fn prepare_identity(
        &self,
        data_dir: &Path,
        spec: &AgentSpec,
    ) -> anyhow::Result<Option<PathBuf>> {
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("cannot create {}", data_dir.display()))?;
        let key = match spec.wave {
            Some(wave) => {
                let waves = self.release.policy().waves.len();
                if wave as usize >= waves {
                    bail!("the release has {waves} waves; there is no wave {wave}");
                }
                // Each try lands in the wave with the wave's share; a few hundred tries suffice
                // for any share a test would use.
                let mut found = None;
                for _ in 0..100_000 {
                    let mut seed = [0u8; 32];
                    getrandom::fill(&mut seed)
                        .map_err(|e| anyhow::anyhow!("no randomness for a node key: {e}"))?;
                    let key = SigningKey::from_seed(seed);
                    let w = wave_of(
                        self.release.policy(),
                        &self.release.id,
                        &key.node_id(),
                        WavePin::None,
                    );
                    if w == wave as usize {
                        found = Some(key);
                        break;
                    }
                }
                let Some(key) = found else {
                    bail!("found no node key in wave {wave}; is its share 0%?");
                };
                crate::keyfile::write_secret(&data_dir.join("node.key"), &key)?;
                Some(key)
            }
            None => None,
        };
        if !spec.certified {
            return Ok(None);
        }
        let Some(operator) = &self.operator else {
            bail!("a certified agent needs a release published with an operator (ReleaseSpec::operator)");
        };
        let key = match key {
            Some(k) => k,
            None => {
                let mut seed = [0u8; 32];
                getrandom::fill(&mut seed)
                    .map_err(|e| anyhow::anyhow!("no randomness for a node key: {e}"))?;
                let k = SigningKey::from_seed(seed);
                crate::keyfile::write_secret(&data_dir.join("node.key"), &k)?;
                k
            }
        };
        let cert = issue_cert(
            &[operator],
            key.node_id(),
            now().plus_secs(86_400),
            WavePin::None,
        );
        let path = data_dir.join("node.cert.json");
        std::fs::write(&path, cert).with_context(|| format!("cannot write {}", path.display()))?;
        Ok(Some(path))
    }

    /// The published release as its signed metadata describes it.
    pub fn release(&self) -> &Release {
        &self.release
    }

    /// The testbed's operator key, if the release was published with one.
    pub fn operator_key(&self) -> Option<&SigningKey> {
        self.operator.as_ref()
    }

    /// Hands a signed directive to agent `index` (see [`Member::directive`]).
    pub async fn directive(
        &self,
        index: usize,
        bytes: Vec<u8>,
    ) -> anyhow::Result<DirectiveReceipt> {
        let Some(m) = self.members.get(index) else {
            bail!("no agent {index}");
        };
        m.directive(bytes)
            .await
            .with_context(|| format!("agent {index}"))
    }

    /// Kills agent `index` as SIGKILL would: its task is dropped wherever it is.
    pub async fn kill(&mut self, index: usize) {
        if let Some(task) = self.members.get_mut(index).and_then(|m| m.task.take()) {
            task.abort();
            let _ = task.await;
        }
    }

    /// Kills agent `index` (see [`Testbed::kill`]) and starts it again on the same
    /// configuration and data directory, as a machine that crashed and rebooted.
    pub async fn restart(&mut self, index: usize) -> anyhow::Result<()> {
        self.kill(index).await;
        let Some(config) = self.members.get(index).map(|m| m.config.clone()) else {
            bail!("no agent {index}");
        };
        // Blocking store work of the killed task may hold the database for a moment.
        let opened = Instant::now();
        let driver = loop {
            match daemon::start(&config, None) {
                Ok(d) => break d,
                Err(_) if opened.elapsed() < Duration::from_secs(20) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(e.context(format!("restarting agent {index}"))),
            }
        };
        let (shared, _, addr, task) = self.run(driver, index).await?;
        if let Some(m) = self.members.get_mut(index) {
            m.shared = shared;
            m.addr = addr;
            m.task = Some(task);
        }
        Ok(())
    }

    /// Waits until every agent in `which` has staged `release`; returns how
    /// long each took from the call.
    pub async fn wait_staged(
        &self,
        which: &[usize],
        release: &ReleaseId,
        limit: Duration,
    ) -> anyhow::Result<Vec<Duration>> {
        let started = Instant::now();
        let mut done: Vec<Option<Duration>> = vec![None; which.len()];
        wait_for("every agent to stage the release", limit, || {
            for (k, &i) in which.iter().enumerate() {
                if done[k].is_none()
                    && self
                        .members
                        .get(i)
                        .is_some_and(|m| is_staged(&m.shared, release))
                {
                    done[k] = Some(started.elapsed());
                }
            }
            done.iter().all(Option::is_some)
        })
        .await?;
        Ok(done.into_iter().map(Option::unwrap_or_default).collect())
    }

    /// The bytes of `release` staged by agent `index`.
    pub fn staged_bytes(&self, index: usize, release: &ReleaseId) -> anyhow::Result<Vec<u8>> {
        let Some(m) = self.members.get(index) else {
            bail!("no agent {index}");
        };
        let dir = m.config.data_dir.join("staging").join(release.to_hex());
        let file = std::fs::read_dir(&dir)
            .with_context(|| format!("staging directory {}", dir.display()))?
            .next()
            .context("nothing staged")??
            .path();
        std::fs::read(&file).with_context(|| format!("staged artifact {}", file.display()))
    }

    /// Stops every agent and waits (briefly) for them to finish.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        for m in &mut self.members {
            if let Some(t) = m.task.take() {
                let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
            }
        }
    }
}

/// Writes `size` pseudo-random bytes (blake3's output stream) to `path`; returns their hash.
fn write_artifact(path: &Path, size: u64) -> anyhow::Result<[u8; 32]> {
    let mut xof = blake3::Hasher::new()
        .update(b"waveguard testbed artifact")
        .finalize_xof();
    let mut file = std::io::BufWriter::new(
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
    );
    let mut hash = blake3::Hasher::new();
    let mut block = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = usize::try_from(left.min(block.len() as u64)).unwrap_or(block.len());
        xof.fill(&mut block[..n]);
        hash.update(&block[..n]);
        file.write_all(&block[..n])?;
        left -= n as u64;
    }
    file.flush()?;
    Ok(*hash.finalize().as_bytes())
}
