//! Helpers for tests that run the real `waveguard` binary as separate
//! processes (the crash campaign and the full-disk test): a vendor made with
//! the CLI, agent and seeder configs on 127.0.0.1, starting and SIGKILLing
//! daemons, polling their HTTP API, and checking what they left on disk
//! (chunk files against their names, the installed artifact against the
//! published one).

#![allow(dead_code)]

use std::fs;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use waveguard_agent::api::StatusView;
use waveguard_protocol::chunk::ChunkList;

/// The binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_waveguard")
}

/// A path as an argument.
pub fn arg(p: &Path) -> &str {
    p.to_str().expect("temp paths are UTF-8")
}

/// Runs `waveguard ARGS`, panics with its output unless it succeeds, returns stdout.
pub fn cli(args: &[&str]) -> String {
    let out = Command::new(bin())
        .args(args)
        .output()
        .expect("run waveguard");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "waveguard {args:?} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a free port")
        .port()
}

/// Small deterministic generator (xorshift64*), so a failing run can be repeated from its seed.
pub struct Rng(u64);

impl Rng {
    /// Seeded from `var` if set (printed either way), else from the clock.
    pub fn from_env(var: &str) -> Rng {
        let seed = std::env::var(var)
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
            });
        println!("seed: {var}={seed}");
        Rng(seed | 1)
    }

    /// Seeded from `seed`.
    pub fn seeded(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    /// Next value.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A duration uniformly between `lo` and `hi` milliseconds.
    pub fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.next() % (hi - lo + 1))
    }

    /// `len` pseudo-random bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            out.extend_from_slice(&self.next().to_le_bytes());
        }
        out.truncate(len);
        out
    }
}

/// Polls `f` every 100 ms until it gives `Some`, panicking after `limit` with `what`.
pub fn wait_for<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(t) = f() {
            return t;
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A published release as the test needs it.
#[derive(Clone, Debug)]
pub struct Published {
    /// Version string.
    pub version: String,
    /// Release ID (hex).
    pub release: String,
    /// The artifact's blake3 (hex).
    pub blake3: String,
    /// The chunk hashes in list order.
    pub chunks: Vec<[u8; 32]>,
}

/// A vendor: one key for every role and a release directory, made with the CLI.
pub struct Vendor {
    /// Holds the key, artifacts and the release directory.
    pub dir: PathBuf,
    /// The key file.
    pub key: PathBuf,
    /// The release directory.
    pub repo: PathBuf,
}

impl Vendor {
    /// `keygen` and `root init` in `dir`.
    pub fn new(dir: &Path) -> Vendor {
        fs::create_dir_all(dir).expect("vendor dir");
        let key = dir.join("vendor.key");
        let repo = dir.join("repo");
        cli(&["keygen", "--out", arg(&key)]);
        cli(&[
            "root",
            "init",
            "--out",
            arg(&repo),
            "--root-key",
            arg(&key),
            "--targets-key",
            arg(&key),
            "--snapshot-key",
            arg(&key),
            "--timestamp-key",
            arg(&key),
        ]);
        Vendor {
            dir: dir.to_path_buf(),
            key,
            repo,
        }
    }

    /// The trusted root agents start from.
    pub fn root(&self) -> PathBuf {
        self.repo.join("metadata/1.root.json")
    }

    /// Publishes `bytes` as `product version` in one wave that opens now (64 KiB chunks).
    pub fn publish(&self, product: &str, version: &str, bytes: &[u8]) -> Published {
        let art = self.dir.join(format!("{product}-{version}.bin"));
        fs::write(&art, bytes).expect("write artifact");
        let out = cli(&[
            "publish",
            arg(&art),
            "--repo",
            arg(&self.repo),
            "--product",
            product,
            "--version",
            version,
            "--key",
            arg(&self.key),
            "--chunk-avg",
            "64KiB",
            "--waves",
            "all:100%:0s",
            "--start",
            "now",
        ]);
        let release = out
            .lines()
            .find_map(|l| l.strip_prefix("release id: "))
            .unwrap_or_else(|| panic!("no release id in:\n{out}"))
            .trim()
            .to_string();
        let list = fs::read(self.repo.join("chunklists").join(format!("{release}.wgcl")))
            .expect("chunk list");
        let list = ChunkList::decode(&list).expect("chunk list decodes");
        Published {
            version: version.into(),
            release,
            blake3: blake3::hash(bytes).to_hex().to_string(),
            chunks: list.chunks.iter().map(|c| c.hash).collect(),
        }
    }

    /// Withdraws `product version` from the targets metadata (`unpublish`).
    pub fn unpublish(&self, product: &str, version: &str) {
        let out = cli(&[
            "unpublish",
            "--repo",
            arg(&self.repo),
            "--product",
            product,
            "--version",
            version,
            "--key",
            arg(&self.key),
        ]);
        assert!(
            out.contains(&format!("unpublished {product}/{version}")),
            "{out}"
        );
    }
}

/// Where the store keeps a chunk's file.
pub fn chunk_file(data: &Path, hash: &[u8; 32]) -> PathBuf {
    let hex = hex::encode(hash);
    data.join("chunks").join(&hex[..2]).join(hex)
}

/// Writes a key with `keygen` and returns its PeerId.
pub fn keygen(path: &Path) -> String {
    let out = cli(&["keygen", "--out", arg(path)]);
    out.lines()
        .find_map(|l| l.strip_prefix("peer id: "))
        .unwrap_or_else(|| panic!("no peer id in:\n{out}"))
        .trim()
        .to_string()
}

/// One daemon's identity and addresses.
#[derive(Clone, Debug)]
pub struct Node {
    /// Its directory (config, key, log files); `data` may live elsewhere.
    pub dir: PathBuf,
    /// Its data directory.
    pub data: PathBuf,
    /// Its PeerId.
    pub peer: String,
    /// Its libp2p TCP port.
    pub p2p: u16,
    /// Its HTTP API.
    pub api: SocketAddr,
}

impl Node {
    /// A node in `dir` with its data directory at `data`, a fresh key and ports.
    pub fn new(dir: &Path, data: &Path) -> Node {
        fs::create_dir_all(dir).expect("node dir");
        let peer = keygen(&dir.join("node.key"));
        Node {
            dir: dir.to_path_buf(),
            data: data.to_path_buf(),
            peer,
            p2p: free_port(),
            api: SocketAddr::from(([127, 0, 0, 1], free_port())),
        }
    }

    /// Its multiaddr, for others' bootstrap lists.
    pub fn addr(&self) -> String {
        format!("/ip4/127.0.0.1/tcp/{}/p2p/{}", self.p2p, self.peer)
    }

    /// Writes `agent.toml`: loopback only, no mDNS, `bootstrap` peers, a
    /// download limit (0: none) and `extra` TOML appended (hooks).
    pub fn write_config(
        &self,
        role: &str,
        root: &Path,
        bootstrap: &[&Node],
        download_limit: u64,
        extra: &str,
    ) -> PathBuf {
        let boot: Vec<String> = bootstrap
            .iter()
            .map(|n| format!("{:?}", n.addr()))
            .collect();
        let text = format!(
            "data_dir = {:?}\ntrusted_root = {:?}\nkey_file = {:?}\nrole = {role:?}\n\n\
             [network]\nlisten = [\"/ip4/127.0.0.1/tcp/{}\"]\nbootstrap = [{}]\nmdns = false\n\
             download_bytes_per_sec = {download_limit}\n\n[api]\nlisten = \"{}\"\n\n{extra}\n",
            arg(&self.data),
            arg(root),
            arg(&self.dir.join("node.key")),
            self.p2p,
            boot.join(", "),
            self.api,
        );
        let path = self.dir.join("agent.toml");
        fs::write(&path, text).expect("write config");
        path
    }

    /// The agent's status, if it answers.
    pub fn status(&self) -> Option<StatusView> {
        waveguard_agent::cli::status::fetch(self.api).ok()
    }
}

/// A running daemon in its own process group (with its hooks), logging to a file.
pub struct Daemon {
    child: Child,
    /// Its log (stdout and stderr).
    pub log: PathBuf,
}

impl Daemon {
    /// Starts `waveguard ARGS` with `RUST_LOG=rust_log` (or `$WG_DAEMON_LOG`
    /// if set, to see more of a failing run), logging to `log`.
    pub fn start(args: &[&str], log: &Path, rust_log: &str) -> Daemon {
        let rust_log = std::env::var("WG_DAEMON_LOG").unwrap_or_else(|_| rust_log.to_string());
        use std::os::unix::process::CommandExt;
        let out = fs::File::create(log).expect("log file");
        let err = out.try_clone().expect("log file");
        let child = Command::new(bin())
            .args(args)
            .env("RUST_LOG", &rust_log)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            // Its own group, so a kill takes its hooks too, as systemd's default
            // KillMode=control-group does when an agent service dies.
            .process_group(0)
            .spawn()
            .expect("start waveguard");
        Daemon {
            child,
            log: log.to_path_buf(),
        }
    }

    /// Its process ID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it has exited (and how).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// SIGKILL to the daemon, then to whatever is left of its group (hooks), and reap it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.wait();
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `node` answers its API; panics with the log if the daemon exits first.
    pub fn wait_ready(&mut self, node: &Node, limit: Duration) -> StatusView {
        let start = Instant::now();
        loop {
            if let Some(s) = node.status() {
                return s;
            }
            if let Some(code) = self.exited() {
                panic!(
                    "waveguard exited ({code}) before answering its API; log {}:\n{}",
                    self.log.display(),
                    self.log_text()
                );
            }
            assert!(
                start.elapsed() < limit,
                "no API answer within {limit:?}; log {}:\n{}",
                self.log.display(),
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Starts `waveguard seed` for `vendor`'s repository as `seeder` (config at
/// `config`), logging to `seed-<n>.log`, and waits until it answers.
pub fn run_seeder(
    seeder: &Node,
    vendor: &Vendor,
    config: &Path,
    n: usize,
    limit: Duration,
) -> Daemon {
    let mut d = Daemon::start(
        &["seed", arg(&vendor.repo), "--config", arg(config)],
        &seeder.dir.join(format!("seed-{n}.log")),
        "info",
    );
    d.wait_ready(seeder, limit);
    d
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Shows the daemons' logs if the test fails: when dropped during a panic
/// it prints the last [`LogsOnFailure::TAIL`] lines of every log file
/// under its directories (on stderr, which the test harness shows for a
/// failed test) and copies the whole files to a directory that outlives the
/// test's temporary one (under `$WG_KEEP_LOGS`, else the system temp
/// directory), naming it. With `WG_KEEP_LOGS` set it keeps them after a
/// pass too. Declare it after the `TempDir` so it is dropped first.
pub struct LogsOnFailure {
    name: String,
    dirs: Vec<PathBuf>,
}

impl LogsOnFailure {
    /// Lines of each log printed on failure.
    pub const TAIL: usize = 150;

    /// Watches the `*.log` files under `dirs` (searched recursively when the test fails).
    pub fn new(name: &str, dirs: &[&Path]) -> LogsOnFailure {
        LogsOnFailure {
            name: name.to_string(),
            dirs: dirs.iter().map(|d| d.to_path_buf()).collect(),
        }
    }

    fn logs(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                Self::logs(&p, out);
            } else if p.extension().is_some_and(|x| x == "log") {
                out.push(p);
            }
        }
    }
}

impl Drop for LogsOnFailure {
    fn drop(&mut self) {
        let failed = std::thread::panicking();
        let asked = std::env::var_os("WG_KEEP_LOGS");
        if !failed && asked.is_none() {
            return;
        }
        let keep = asked
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir)
            .join(format!("wg-{}-{}", self.name, std::process::id()));
        let _ = fs::create_dir_all(&keep);
        let mut logs = Vec::new();
        for d in &self.dirs {
            Self::logs(d, &mut logs);
        }
        logs.sort();
        for log in logs {
            let text = fs::read_to_string(&log).unwrap_or_default();
            if failed {
                let lines: Vec<&str> = text.lines().collect();
                let from = lines.len().saturating_sub(Self::TAIL);
                eprintln!(
                    "===== {} (last {} of {} lines)",
                    log.display(),
                    lines.len() - from,
                    lines.len()
                );
                for l in &lines[from..] {
                    eprintln!("{l}");
                }
            }
            let flat = log
                .components()
                .rev()
                .take(2)
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>();
            let flat: Vec<String> = flat.into_iter().rev().collect();
            let _ = fs::write(keep.join(flat.join("-")), &text);
        }
        eprintln!("===== full logs kept in {}", keep.display());
    }
}

/// Checks every finished chunk file under `data/chunks` hashes to its name;
/// returns how many there are. Temporary files of interrupted writes are
/// allowed (the start-up scan removes them) and not counted.
pub fn check_chunk_files(data: &Path) -> usize {
    let mut n = 0;
    let Ok(dirs) = fs::read_dir(data.join("chunks")) else {
        return 0;
    };
    for d in dirs {
        let d = d.expect("chunk dir entry").path();
        if !d.is_dir() {
            continue;
        }
        for f in fs::read_dir(&d).expect("chunk dir") {
            let f = f.expect("chunk entry").path();
            let name = f
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_string();
            if name.starts_with('.') {
                continue;
            }
            let bytes = fs::read(&f).expect("read chunk file");
            assert_eq!(
                blake3::hash(&bytes).to_hex().as_str(),
                name,
                "chunk file {} does not hash to its name",
                f.display()
            );
            n += 1;
        }
    }
    n
}

/// The blake3 (hex) of the artifact `current` points to for `product`, with
/// the version directory's name; `None` if there is no `current`. Panics if
/// the directory holds anything but one artifact file.
pub fn installed(data: &Path, product: &str) -> Option<(String, String)> {
    let product_dir = data.join("installs").join(product);
    let target = fs::read_link(product_dir.join("current")).ok()?;
    let dir = product_dir.join(&target);
    let files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("current -> {} is not a directory: {e}", dir.display()))
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(files.len(), 1, "{} holds {files:?}", dir.display());
    let bytes = fs::read(&files[0]).expect("read installed artifact");
    Some((
        target.display().to_string(),
        blake3::hash(&bytes).to_hex().to_string(),
    ))
}

/// The state of `release` (hex) in a status, if the agent follows it.
pub fn state_of(status: &StatusView, release: &str) -> Option<String> {
    status
        .releases
        .iter()
        .find(|r| r.id == release)
        .map(|r| r.state.clone())
}
