//! `waveguard cert issue`: signs a fleet certificate for one endpoint with
//! the operator key(s).
//!
//! In a fleet whose root has an operator role, an endpoint's health reports
//! count only with a certificate signed by that role to its threshold; the
//! endpoint names the file in its config (`[rollout] cert`). The certificate
//! also carries the node's wave pin, so peers can check an operator's
//! override. Signing is the protocol's [`issue_cert`]; with `--repo` or
//! `--root` the keys are checked against the root's operator role first, and
//! the certificate is verified as an endpoint would before it is written.

use super::keys;
use super::wave::PinArg;
use crate::fsio;
use crate::repo::{MetadataFile, Repo};
use anyhow::{bail, Context as _};
use clap::Args;
use std::fmt;
use std::path::{Path, PathBuf};
use waveguard_protocol::health::cert::{issue_cert, verify_cert};
use waveguard_protocol::health::FleetKeys;
use waveguard_protocol::limits::MAX_ROOT_BYTES;
use waveguard_protocol::metadata::{RoleName, TrustedState};
use waveguard_protocol::wave::WavePin;
use waveguard_protocol::{KeyId, NodeId, SigningKey, Timestamp};

/// Unix permission bits of written certificates and directives: they are
/// signed statements, not secrets.
pub const PUBLIC_FILE_MODE: u32 = 0o644;

/// Arguments of `waveguard cert issue`.
#[derive(Args, Debug, Clone)]
pub struct CertIssueArgs {
    /// Operator key files (as written by `waveguard keygen`), enough to meet the operator threshold.
    #[arg(long = "operator-key", value_name = "FILE", num_args = 1.., required = true)]
    pub operator_keys: Vec<PathBuf>,
    /// The endpoint: 64 hex digits of its node ID, or its libp2p PeerId (12D3KooW...).
    #[arg(long, value_name = "ID")]
    pub node: String,
    /// How long the certificate stays valid (s, m, h, d, w).
    #[arg(long, value_name = "DURATION", default_value = "365d", value_parser = super::args::duration_secs)]
    pub expires: u64,
    /// The node's wave pin, signed into the certificate.
    #[arg(long, value_enum, default_value_t = PinArg::None)]
    pub pin: PinArg,
    /// Where to write the certificate.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Replace --out if it exists.
    #[arg(long)]
    pub force: bool,
    /// Check the keys against this release directory's newest root (walked from --root, or from its 1.root.json).
    #[arg(long, value_name = "DIR")]
    pub repo: Option<PathBuf>,
    /// Check the keys against this root metadata (with --repo: the trusted root to walk from).
    #[arg(long, value_name = "FILE")]
    pub root: Option<PathBuf>,
}

/// The root the keys were checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedRoot {
    /// The root's version.
    pub version: u64,
    /// The file it was read from.
    pub path: PathBuf,
    /// The operator threshold the signatures met.
    pub threshold: u32,
}

/// What `cert issue` wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertReport {
    /// The certificate file.
    pub path: PathBuf,
    /// The certified node.
    pub node: NodeId,
    /// Its libp2p PeerId.
    pub peer_id: String,
    /// Valid strictly before this time.
    pub expires: Timestamp,
    /// The signed wave pin.
    pub pin: WavePin,
    /// The operator keys that signed.
    pub signers: Vec<KeyId>,
    /// The root checked against, if `--repo` or `--root` was given.
    pub checked: Option<CheckedRoot>,
    /// Things the user should know.
    pub warnings: Vec<String>,
}

/// The `--pin` spelling of a pin.
pub fn pin_name(pin: WavePin) -> &'static str {
    match pin {
        WavePin::None => "none",
        WavePin::Canary => "canary",
        WavePin::Last => "last",
    }
}

impl fmt::Display for CertReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "wrote fleet certificate {}", self.path.display())?;
        writeln!(f, "node:      {}", self.node)?;
        writeln!(f, "peer id:   {}", self.peer_id)?;
        writeln!(f, "expires:   {}", self.expires)?;
        writeln!(f, "pin:       {}", pin_name(self.pin))?;
        let signers: Vec<String> = self.signers.iter().map(keys::short_id).collect();
        write!(f, "signed by: {}", signers.join(", "))?;
        if let Some(c) = &self.checked {
            write!(
                f,
                "\nchecked:   operator threshold {} of root v{} ({}) met",
                c.threshold,
                c.version,
                c.path.display()
            )?;
        }
        Ok(())
    }
}

/// A root read for checking signers: who may sign what, and where it came from.
#[derive(Debug, Clone)]
pub struct RootKeys {
    /// What the root says about who may sign health documents.
    pub fleet: FleetKeys,
    /// The root's version.
    pub version: u64,
    /// The file of that version.
    pub path: PathBuf,
}

/// Reads the root to check signers against: `root` alone, or the newest root
/// of `repo` walked (every rotation verified) from `root` or from the
/// directory's `1.root.json`. `None` when neither is given.
pub fn load_root(repo: Option<&Path>, root: Option<&Path>) -> anyhow::Result<Option<RootKeys>> {
    let anchor = match (repo, root) {
        (_, Some(r)) => r.to_path_buf(),
        (Some(dir), None) => Repo::new(dir).metadata_path(MetadataFile::Root(1)),
        (None, None) => return Ok(None),
    };
    let bytes = fsio::read_bounded(&anchor, MAX_ROOT_BYTES as u64)
        .with_context(|| format!("root {}", anchor.display()))?;
    let mut state = TrustedState::new(&bytes)
        .with_context(|| format!("root {} does not verify", anchor.display()))?;
    let mut path = anchor;
    if let Some(dir) = repo {
        let repo = Repo::new(dir);
        let chain = repo
            .roots_after(state.root_version())
            .with_context(|| format!("the roots of release directory {}", dir.display()))?;
        for (version, bytes) in chain {
            let file = repo.metadata_path(MetadataFile::Root(version));
            state
                .update_root(&bytes)
                .with_context(|| format!("root rotation {}", file.display()))?;
            path = file;
        }
    }
    let fleet = FleetKeys {
        keys: state.root().keys.clone(),
        vendor: state
            .role_keys(RoleName::Targets)
            .map(|(role, _)| role)
            .unwrap_or_default(),
        operator: state.operator_role().map(|(role, _)| role),
    };
    Ok(Some(RootKeys {
        fleet,
        version: state.root_version(),
        path,
    }))
}

/// Writes a signed document to `path`: never over an existing file unless `force`.
pub fn write_out(path: &Path, bytes: &[u8], force: bool) -> anyhow::Result<()> {
    let written = match force {
        true => fsio::write_atomic(path, bytes),
        false => fsio::write_new(path, bytes, PUBLIC_FILE_MODE),
    };
    written.map_err(|e| match e {
        fsio::WriteError::Exists { .. } => {
            anyhow::anyhow!("--out: {e} (pass --force to replace it)")
        }
        other => anyhow::Error::new(other).context("--out"),
    })
}

/// `when` plus `secs`, in whole seconds as signed documents carry it.
pub fn expiry(now: Timestamp, secs: u64, flag: &str) -> anyhow::Result<Timestamp> {
    if secs == 0 {
        bail!("{flag} must be longer than 0s: the document would be expired when signed");
    }
    Ok(Timestamp::from_secs(now.as_secs().saturating_add(secs)))
}

/// Refuses keys that are not in the root's operator role, naming them.
fn check_operator_keys(root: &RootKeys, signers: &[SigningKey]) -> anyhow::Result<()> {
    let Some(operator) = &root.fleet.operator else {
        bail!(
            "root v{} ({}) has no operator role, so no endpoint would accept a fleet certificate; \
             add one with `waveguard root rotate --operator-key FILE` first",
            root.version,
            root.path.display()
        );
    };
    let foreign: Vec<String> = signers
        .iter()
        .map(SigningKey::key_id)
        .filter(|id| !operator.keyids.contains(id))
        .map(|id| keys::short_id(&id))
        .collect();
    if !foreign.is_empty() {
        let known: Vec<String> = operator.keyids.iter().map(keys::short_id).collect();
        bail!(
            "--operator-key: {} {} {} not in the operator role of root v{} ({}), whose keys are {}",
            match foreign.len() {
                1 => "key",
                _ => "keys",
            },
            foreign.join(", "),
            match foreign.len() {
                1 => "is",
                _ => "are",
            },
            root.version,
            root.path.display(),
            known.join(", ")
        );
    }
    Ok(())
}

/// Runs `cert issue` as of `now`.
pub fn run(args: &CertIssueArgs, now: Timestamp) -> anyhow::Result<CertReport> {
    let node: NodeId = args
        .node
        .parse()
        .map_err(|e| anyhow::anyhow!("cert issue: --node: {e}"))?;
    let expires = expiry(now, args.expires, "--expires").context("cert issue")?;
    let pin = WavePin::from(args.pin);
    let signers =
        keys::read_secrets(&args.operator_keys, "--operator-key").context("cert issue")?;
    let root = load_root(args.repo.as_deref(), args.root.as_deref()).context("cert issue")?;
    if let Some(root) = &root {
        check_operator_keys(root, &signers).context("cert issue")?;
    }
    let refs: Vec<&SigningKey> = signers.iter().collect();
    let bytes = issue_cert(&refs, node, expires, pin);
    let mut warnings = Vec::new();
    let checked = match &root {
        Some(root) => {
            // Verify as an endpoint will, so a certificate below the threshold is never written.
            verify_cert(&bytes, &root.fleet, now).with_context(|| {
                format!(
                    "cert issue: the keys given do not make a certificate root v{} ({}) accepts",
                    root.version,
                    root.path.display()
                )
            })?;
            Some(CheckedRoot {
                version: root.version,
                path: root.path.clone(),
                threshold: root.fleet.operator.as_ref().map_or(0, |o| o.threshold),
            })
        }
        None => {
            warnings.push(
                "the keys were not checked against a root: pass --repo or --root to be sure \
                 endpoints will accept this certificate"
                    .to_string(),
            );
            None
        }
    };
    write_out(&args.out, &bytes, args.force).context("cert issue")?;
    Ok(CertReport {
        path: args.out.clone(),
        node,
        peer_id: node.to_peer_id_string(),
        expires,
        pin,
        signers: signers.iter().map(SigningKey::key_id).collect(),
        checked,
        warnings,
    })
}
