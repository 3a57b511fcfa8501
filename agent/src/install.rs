//! Installing without root or kernel hooks: versioned directories and an
//! atomic switch of a `current` symlink, keeping the previous version for
//! rollback, plus optional install, probe and rollback commands with timeouts.
//!
//! Layout under the installs directory, per product:
//! `<product>/<version>-<release id prefix>/<artifact>`, `<product>/current` →
//! the active version's directory, `<product>/previous` → the one before.
//! The switch is a rename of a fresh symlink over `current`, so a crash leaves
//! either the old or the new version active, never a mix.
//! Hooks get `WAVEGUARD_RELEASE`, `WAVEGUARD_PRODUCT`, `WAVEGUARD_VERSION`,
//! `WAVEGUARD_ARTIFACT`, `WAVEGUARD_INSTALL_DIR` and `WAVEGUARD_PREVIOUS_DIR`
//! (the version directory active before this step, empty if none) in their environment; a
//! hook that runs past its timeout is killed and counts as a failure.

use std::path::{Path, PathBuf};
use std::time::Duration;
use thiserror::Error;
use tokio::process::Command;
use waveguard_protocol::ReleaseId;

/// Commands run around installs; each is a program and its arguments.
#[derive(Clone, Debug, Default)]
pub struct Hooks {
    /// Run after the artifact is in its directory, before the switch; failure aborts the install.
    pub install: Option<Vec<String>>,
    /// Run right after `current` switches to the new version (restart the service here);
    /// failure switches back and fails the install.
    pub activate: Option<Vec<String>>,
    /// Run to check health; exit status 0 is healthy. None: always healthy.
    pub probe: Option<Vec<String>>,
    /// Run after switching back to the previous version.
    pub rollback: Option<Vec<String>>,
    /// Longest any hook may run.
    pub timeout: Duration,
}

/// An install or rollback failed; the active version is unchanged unless said otherwise.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum InstallError {
    /// A file system step failed.
    #[error("{step} {path}: {source}")]
    Io {
        /// What was being done.
        step: &'static str,
        /// On which path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A hook exited unsuccessfully, could not start, or timed out.
    #[error("{hook} hook {outcome}")]
    Hook {
        /// Which hook.
        hook: &'static str,
        /// What happened.
        outcome: String,
    },
    /// Rollback asked with no previous version to return to.
    #[error("no previous version of {0} to roll back to")]
    NoPrevious(String),
}

impl InstallError {
    /// Whether a file-system step failed because the disk (or quota) is full:
    /// then nothing of this install is active, and trying again once there is
    /// space can succeed (the driver waits rather than fail the release).
    pub fn is_no_space(&self) -> bool {
        matches!(self, InstallError::Io { source, .. }
            if matches!(source.kind(), std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded))
    }
}

/// What to install.
#[derive(Clone, Debug)]
pub struct InstallRequest<'a> {
    /// The release.
    pub release: &'a ReleaseId,
    /// Product (from signed metadata; sanitised for paths here).
    pub product: &'a str,
    /// Version.
    pub version: &'a str,
    /// The staged, verified artifact.
    pub staged: &'a Path,
}

/// The installer for one agent.
#[derive(Clone, Debug)]
pub struct Installer {
    root: PathBuf,
    hooks: Hooks,
}

/// Keeps letters, digits, `.`, `-` and `_`; anything else (a `/`, a `..` run) becomes `_`.
fn safe(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() || s.chars().all(|c| c == '.') {
        "_".into()
    } else {
        s
    }
}

fn io(step: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> InstallError {
    let path = path.to_path_buf();
    move |source| InstallError::Io { step, path, source }
}

impl Installer {
    /// An installer keeping versions under `root`.
    pub fn new(root: impl Into<PathBuf>, hooks: Hooks) -> Installer {
        Installer {
            root: root.into(),
            hooks,
        }
    }

    fn product_dir(&self, product: &str) -> PathBuf {
        self.root.join(safe(product))
    }

    /// The directory `current` points to, if any.
    pub fn current(&self, product: &str) -> Option<PathBuf> {
        self.link(product, "current")
    }

    /// Where `<product>/<name>` points, as a path from the installs root (links hold only the
    /// version directory's name, so they resolve wherever the data directory is seen from).
    fn link(&self, product: &str, name: &str) -> Option<PathBuf> {
        let dir = self.product_dir(product);
        std::fs::read_link(dir.join(name)).ok().map(|t| dir.join(t))
    }

    /// Installs: copies the artifact into a new version directory, runs the install hook, switches `current`.
    pub async fn install(&self, req: InstallRequest<'_>) -> Result<PathBuf, InstallError> {
        let product_dir = self.product_dir(req.product);
        let short = &req.release.to_hex()[..12];
        let dir = product_dir.join(format!("{}-{short}", safe(req.version)));
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(io("create", &dir))?;
        let name = req
            .staged
            .file_name()
            .map_or_else(|| "artifact".into(), |n| n.to_os_string());
        let artifact = dir.join(&name);
        // The artifact appears under its name whole, by rename: an install run again after a
        // crash that came after the switch replaces it while `current` already points here.
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(&name);
        tmp_name.push(".tmp");
        let tmp = dir.join(tmp_name);
        let _ = tokio::fs::remove_file(&tmp).await;
        // A hard link costs nothing; fall back to a copy across file systems.
        if tokio::fs::hard_link(req.staged, &tmp).await.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
            tokio::fs::copy(req.staged, &tmp)
                .await
                .map_err(io("copy to", &tmp))?;
        }
        tokio::fs::rename(&tmp, &artifact)
            .await
            .map_err(io("rename to", &artifact))?;
        // Renaming a link over another link to the same file leaves both names (POSIX).
        let _ = tokio::fs::remove_file(&tmp).await;
        let previous = self.current(req.product);
        let env = self.env(
            req.release,
            req.product,
            req.version,
            (&artifact, &dir),
            previous.as_deref(),
        );
        if let Some(cmd) = &self.hooks.install {
            if let Err(e) = self.run_hook("install", cmd, &env).await {
                let _ = tokio::fs::remove_dir_all(&dir).await;
                return Err(e);
            }
        }
        let before = self.link(req.product, "previous");
        let previous = previous.filter(|p| p != &dir);
        if let Some(prev) = &previous {
            switch(&product_dir, "previous", prev).await?;
        }
        switch(&product_dir, "current", &dir).await?;
        if let Some(cmd) = &self.hooks.activate {
            if let Err(e) = self.run_hook("activate", cmd, &env).await {
                // Put back what was active, as if this install had never happened.
                match &previous {
                    Some(prev) => switch(&product_dir, "current", prev).await?,
                    None => {
                        let _ = tokio::fs::remove_file(product_dir.join("current")).await;
                    }
                }
                match before {
                    Some(b) => switch(&product_dir, "previous", &b).await?,
                    None if previous.is_some() => {
                        let _ = tokio::fs::remove_file(product_dir.join("previous")).await;
                    }
                    None => {}
                }
                let _ = tokio::fs::remove_dir_all(&dir).await;
                return Err(e);
            }
        }
        Ok(dir)
    }

    /// Runs the probe hook; no hook means healthy. A hook that fails, cannot start or times out is unhealthy.
    pub async fn probe(&self, release: &ReleaseId, product: &str, version: &str) -> bool {
        let Some(cmd) = &self.hooks.probe else {
            return true;
        };
        let dir = self.current(product).unwrap_or_default();
        let previous = self.link(product, "previous");
        let env = self.env(release, product, version, (&dir, &dir), previous.as_deref());
        self.run_hook("probe", cmd, &env).await.is_ok()
    }

    /// Switches `current` back to `previous` and runs the rollback hook.
    pub async fn rollback(
        &self,
        release: &ReleaseId,
        product: &str,
        version: &str,
    ) -> Result<(), InstallError> {
        let product_dir = self.product_dir(product);
        let from = self.current(product);
        let back = self.link(product, "previous");
        let env = match &back {
            Some(prev) => {
                switch(&product_dir, "current", prev).await?;
                self.env(release, product, version, (prev, prev), from.as_deref())
            }
            // Nothing was active before this release: leave no current version behind, and
            // still tell the hook (with an empty install dir), which should stop the service.
            None => {
                let _ = tokio::fs::remove_file(product_dir.join("current")).await;
                let none = Path::new("");
                self.env(release, product, version, (none, none), from.as_deref())
            }
        };
        if let Some(cmd) = &self.hooks.rollback {
            self.run_hook("rollback", cmd, &env).await?;
        }
        Ok(())
    }

    fn env(
        &self,
        release: &ReleaseId,
        product: &str,
        version: &str,
        (artifact, dir): (&Path, &Path),
        previous: Option<&Path>,
    ) -> Vec<(String, String)> {
        let previous = previous
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        vec![
            ("WAVEGUARD_RELEASE".into(), release.to_hex()),
            ("WAVEGUARD_PRODUCT".into(), product.into()),
            ("WAVEGUARD_VERSION".into(), version.into()),
            ("WAVEGUARD_ARTIFACT".into(), artifact.display().to_string()),
            ("WAVEGUARD_INSTALL_DIR".into(), dir.display().to_string()),
            ("WAVEGUARD_PREVIOUS_DIR".into(), previous),
        ]
    }

    async fn run_hook(
        &self,
        hook: &'static str,
        cmd: &[String],
        env: &[(String, String)],
    ) -> Result<(), InstallError> {
        let Some((program, args)) = cmd.split_first() else {
            return Ok(());
        };
        let mut child = Command::new(program)
            .args(args)
            .envs(env.iter().cloned())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| InstallError::Hook {
                hook,
                outcome: format!("{program:?} could not start: {e}"),
            })?;
        match tokio::time::timeout(self.hooks.timeout, child.wait()).await {
            Ok(Ok(status)) if status.success() => Ok(()),
            Ok(Ok(status)) => Err(InstallError::Hook {
                hook,
                outcome: format!("{program:?} exited with {status}"),
            }),
            Ok(Err(e)) => Err(InstallError::Hook {
                hook,
                outcome: format!("{program:?} failed: {e}"),
            }),
            Err(_) => {
                let _ = child.kill().await;
                Err(InstallError::Hook {
                    hook,
                    outcome: format!(
                        "{program:?} ran past its {:?} timeout and was killed",
                        self.hooks.timeout
                    ),
                })
            }
        }
    }
}

/// Points `dir/name` at `target` atomically: a fresh symlink renamed over the old one. A
/// target inside `dir` is linked by its name alone, so the link resolves from anywhere.
async fn switch(dir: &Path, name: &str, target: &Path) -> Result<(), InstallError> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let _ = tokio::fs::remove_file(&tmp).await;
    let relative = match (target.parent(), target.file_name()) {
        (Some(parent), Some(file)) if parent == dir => Path::new(file),
        _ => target,
    };
    tokio::fs::symlink(relative, &tmp)
        .await
        .map_err(io("link", &tmp))?;
    let link = dir.join(name);
    tokio::fs::rename(&tmp, &link)
        .await
        .map_err(io("switch", &link))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hooks(probe: Option<&[&str]>, timeout_ms: u64) -> Hooks {
        Hooks {
            probe: probe.map(|p| p.iter().map(|s| s.to_string()).collect()),
            timeout: Duration::from_millis(timeout_ms),
            ..Hooks::default()
        }
    }

    #[tokio::test]
    async fn install_switches_current_and_rollback_returns() {
        let tmp = tempfile::tempdir().unwrap();
        let staged = tmp.path().join("app.bin");
        std::fs::write(&staged, b"v1").unwrap();
        let inst = Installer::new(tmp.path().join("installs"), hooks(None, 1000));
        let (r1, r2) = (ReleaseId([1; 32]), ReleaseId([2; 32]));
        let req = |release, version| InstallRequest {
            release,
            product: "acme/../x",
            version,
            staged: &staged,
        };
        let d1 = inst.install(req(&r1, "1.0")).await.unwrap();
        assert_eq!(inst.current("acme/../x"), Some(d1.clone()));
        assert!(
            d1.starts_with(tmp.path().join("installs")),
            "{d1:?} escaped the installs dir"
        );
        let d2 = inst.install(req(&r2, "2.0")).await.unwrap();
        assert_eq!(inst.current("acme/../x"), Some(d2));
        inst.rollback(&r2, "acme/../x", "2.0").await.unwrap();
        assert_eq!(inst.current("acme/../x"), Some(d1));
    }

    #[tokio::test]
    async fn an_install_run_again_after_the_switch_keeps_one_whole_artifact() {
        // What a restart does after a crash between the switch and the end of the install.
        let tmp = tempfile::tempdir().unwrap();
        let staged = tmp.path().join("app.bin");
        std::fs::write(&staged, b"v1 bytes").unwrap();
        let inst = Installer::new(tmp.path().join("installs"), hooks(None, 1000));
        let r1 = ReleaseId([1; 32]);
        let req = InstallRequest {
            release: &r1,
            product: "acme",
            version: "1.0",
            staged: &staged,
        };
        let d1 = inst.install(req.clone()).await.unwrap();
        let again = inst.install(req).await.unwrap();
        assert_eq!(again, d1);
        assert_eq!(inst.current("acme"), Some(d1.clone()));
        let names: Vec<_> = std::fs::read_dir(&d1)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["app.bin"], "no temporary file left");
        assert_eq!(std::fs::read(d1.join("app.bin")).unwrap(), b"v1 bytes");
        // No `previous` pointing at itself.
        assert_eq!(inst.link("acme", "previous"), None);
    }

    #[tokio::test]
    async fn hooks_see_the_documented_environment_and_a_failing_install_hook_aborts() {
        let tmp = tempfile::tempdir().unwrap();
        let staged = tmp.path().join("app.bin");
        std::fs::write(&staged, b"v1").unwrap();
        let log = tmp.path().join("env.log");
        let record = format!(
            "echo \"$WAVEGUARD_PRODUCT $WAVEGUARD_VERSION $WAVEGUARD_RELEASE $WAVEGUARD_PREVIOUS_DIR\" >> {}; test -f \"$WAVEGUARD_ARTIFACT\"",
            log.display()
        );
        let hooks = Hooks {
            install: Some(vec!["sh".into(), "-c".into(), record]),
            timeout: Duration::from_secs(5),
            ..Hooks::default()
        };
        let inst = Installer::new(tmp.path().join("installs"), hooks);
        let r1 = ReleaseId([1; 32]);
        let req = |release, version| InstallRequest {
            release,
            product: "acme",
            version,
            staged: &staged,
        };
        let d1 = inst.install(req(&r1, "1.0")).await.unwrap();
        let r2 = ReleaseId([2; 32]);
        inst.install(req(&r2, "2.0")).await.unwrap();
        let lines = std::fs::read_to_string(&log).unwrap();
        let lines: Vec<&str> = lines.lines().collect();
        assert_eq!(lines[0], format!("acme 1.0 {} ", r1.to_hex()));
        assert_eq!(
            lines[1],
            format!("acme 2.0 {} {}", r2.to_hex(), d1.display())
        );

        let failing = Installer::new(
            tmp.path().join("installs"),
            Hooks {
                install: Some(vec!["false".into()]),
                timeout: Duration::from_secs(5),
                ..Hooks::default()
            },
        );
        let before = failing.current("acme");
        let e = failing
            .install(req(&ReleaseId([3; 32]), "3.0"))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("install hook"), "{e}");
        assert_eq!(
            failing.current("acme"),
            before,
            "a failed install must not switch"
        );
    }

    #[tokio::test]
    async fn a_failing_activate_hook_puts_the_old_version_back() {
        let tmp = tempfile::tempdir().unwrap();
        let staged = tmp.path().join("app.bin");
        std::fs::write(&staged, b"v").unwrap();
        let root = tmp.path().join("installs");
        let req = |release, version| InstallRequest {
            release,
            product: "acme",
            version,
            staged: &staged,
        };
        let plain = Installer::new(&root, hooks(None, 1000));
        let d1 = plain
            .install(req(&ReleaseId([1; 32]), "1.0"))
            .await
            .unwrap();
        let d2 = plain
            .install(req(&ReleaseId([2; 32]), "2.0"))
            .await
            .unwrap();
        let failing = Installer::new(
            &root,
            Hooks {
                activate: Some(vec!["false".into()]),
                timeout: Duration::from_secs(5),
                ..Hooks::default()
            },
        );
        let e = failing
            .install(req(&ReleaseId([3; 32]), "3.0"))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("activate hook"), "{e}");
        assert_eq!(failing.current("acme"), Some(d2), "current is put back");
        assert_eq!(failing.link("acme", "previous"), Some(d1), "so is previous");
        assert!(!root.join("acme").join("3.0-030303030303").exists());
    }

    #[tokio::test]
    async fn links_hold_the_version_name_so_they_resolve_from_anywhere() {
        let tmp = tempfile::tempdir().unwrap();
        let staged = tmp.path().join("app.bin");
        std::fs::write(&staged, b"v1").unwrap();
        let inst = Installer::new(tmp.path().join("installs"), hooks(None, 1000));
        let release = ReleaseId([1; 32]);
        let dir = inst
            .install(InstallRequest {
                release: &release,
                product: "acme",
                version: "1.0",
                staged: &staged,
            })
            .await
            .unwrap();
        let link = tmp.path().join("installs/acme/current");
        let target = std::fs::read_link(&link).unwrap();
        assert!(target.is_relative(), "{target:?}");
        assert_eq!(
            std::fs::canonicalize(&link).unwrap(),
            std::fs::canonicalize(dir).unwrap()
        );
    }

    #[tokio::test]
    async fn rolling_back_a_first_install_removes_current_and_still_runs_the_hook() {
        let tmp = tempfile::tempdir().unwrap();
        let staged = tmp.path().join("app.bin");
        std::fs::write(&staged, b"v1").unwrap();
        let log = tmp.path().join("rollback.log");
        let inst = Installer::new(
            tmp.path().join("installs"),
            Hooks {
                rollback: Some(vec![
                    "sh".into(),
                    "-c".into(),
                    format!(
                        "echo \"[$WAVEGUARD_INSTALL_DIR] $WAVEGUARD_PREVIOUS_DIR\" > {}",
                        log.display()
                    ),
                ]),
                timeout: Duration::from_secs(5),
                ..Hooks::default()
            },
        );
        let release = ReleaseId([1; 32]);
        let dir = inst
            .install(InstallRequest {
                release: &release,
                product: "acme",
                version: "1.0",
                staged: &staged,
            })
            .await
            .unwrap();
        inst.rollback(&release, "acme", "1.0").await.unwrap();
        assert_eq!(inst.current("acme"), None);
        let said = std::fs::read_to_string(&log).unwrap();
        assert_eq!(said.trim(), format!("[] {}", dir.display()));
    }

    #[tokio::test]
    async fn a_probe_that_hangs_is_killed_and_unhealthy() {
        let tmp = tempfile::tempdir().unwrap();
        let inst = Installer::new(tmp.path(), hooks(Some(&["sleep", "5"]), 100));
        let started = std::time::Instant::now();
        assert!(!inst.probe(&ReleaseId([1; 32]), "p", "1").await);
        assert!(started.elapsed() < Duration::from_secs(3));
        let ok = Installer::new(tmp.path(), hooks(Some(&["true"]), 1000));
        assert!(ok.probe(&ReleaseId([1; 32]), "p", "1").await);
        let bad = Installer::new(tmp.path(), hooks(Some(&["false"]), 1000));
        assert!(!bad.probe(&ReleaseId([1; 32]), "p", "1").await);
    }
}
