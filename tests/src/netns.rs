//! Helpers for the tests that run real `waveguard` processes in Linux network
//! namespaces built by `scripts/testbed/netns.sh` (as `netns_rollout.rs`
//! does): running commands, the skip check, the binary, and a testbed that
//! tears itself down when dropped.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace directory.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives in the workspace")
        .to_path_buf()
}

/// Runs a command, failing with its output if it does not succeed.
pub fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{program} {} failed: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `scripts/testbed/netns.sh` with `args`.
pub fn netns(args: &[&str]) -> Result<String, String> {
    let script = workspace().join("scripts/testbed/netns.sh");
    let mut all = vec![script.to_str().expect("a UTF-8 workspace path")];
    all.extend_from_slice(args);
    run("bash", &all)
}

/// Whether this process may create network namespaces and shape links; the
/// reason if not.
pub fn can_use_netns() -> Result<(), String> {
    let probe = format!("wgprobe{}", std::process::id());
    run("ip", &["netns", "add", &probe])?;
    let _ = run("ip", &["netns", "del", &probe]);
    run("tc", &["-V"]).map(|_| ())
}

/// The `waveguard` binary. A test crate cannot name another crate's binary
/// (`CARGO_BIN_EXE_*` exists only inside the agent crate), so this builds it
/// into the workspace's target directory, a no-op when it is fresh. `test` is
/// the calling test target: naming it keeps cargo's feature unification as
/// under `cargo test`, so this does not rebuild libp2p.
pub fn waveguard_bin(test: &str) -> PathBuf {
    let workspace = workspace();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "-q",
            "-p",
            "waveguard-agent",
            "-p",
            "waveguard-tests",
            "--bin",
            "waveguard",
            "--test",
            test,
        ])
        .current_dir(&workspace)
        .env("CARGO_TARGET_DIR", &target)
        .status()
        .expect("cannot run cargo to build the waveguard binary");
    assert!(status.success(), "building the waveguard binary failed");
    let bin = target.join("debug").join("waveguard");
    assert!(bin.exists(), "no waveguard binary at {}", bin.display());
    bin
}

/// A testbed made by `netns.sh up`; dropping it runs `netns.sh down`, which
/// kills every process in its namespaces and deletes them, also when an
/// assertion fails half-way.
pub struct Testbed {
    /// The testbed's name (its namespaces are `wg-NAME-*`).
    pub name: String,
}

impl Testbed {
    /// `netns.sh up NAME ARGS...`; panics with the script's output if it fails
    /// (the script then leaves nothing behind).
    pub fn up(name: &str, args: &[&str]) -> Self {
        let mut all = vec!["up", name];
        all.extend_from_slice(args);
        netns(&all).unwrap_or_else(|e| panic!("the testbed did not come up: {e}"));
        Testbed {
            name: name.to_string(),
        }
    }

    /// Host `host`'s namespace.
    pub fn host_ns(&self, host: usize) -> String {
        format!("wg-{}-{host}", self.name)
    }

    /// Site `site`'s router namespace.
    pub fn router_ns(&self, site: usize) -> String {
        format!("wg-{}-site{site}", self.name)
    }

    /// Runs `args` inside namespace `ns`.
    pub fn in_ns(ns: &str, args: &[&str]) -> Result<String, String> {
        let mut all = vec!["netns", "exec", ns];
        all.extend_from_slice(args);
        run("ip", &all)
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        if let Err(e) = netns(&["down", &self.name]) {
            eprintln!("tearing down testbed {}: {e}", self.name);
        }
    }
}
