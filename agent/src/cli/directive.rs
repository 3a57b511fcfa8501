//! `waveguard halt` and `waveguard resume`: sign a directive about one
//! release and hand it to a running agent (`POST /directive` on its local
//! HTTP API), which verifies it, applies it and gossips it to the mesh; or
//! write it to a file (`--out`) to carry to an agent some other way.
//!
//! Either the vendor (the root's targets role) or the fleet operator (its
//! operator role) may sign, each to its own threshold and never a mix. Both
//! share one `seq` space per release and the highest accepted `seq` wins, so
//! the default `seq` is the current time in milliseconds: a later command
//! always outranks an earlier one without anyone keeping a counter. A halt
//! never lapses by itself; only a resume with a higher `seq` lifts it.
//! `--expires` only bounds until when the directive may be *accepted* (so an
//! old one cannot be replayed to nodes that never saw it).

use super::cert::{expiry, load_root, write_out};
use super::keys;
use super::status::{http_request, DEFAULT_API};
use crate::api::{DirectiveView, ErrorView};
use anyhow::{bail, Context as _};
use clap::Args;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use waveguard_protocol::health::directive::{
    sign_directive, verify_directive, Directive, DirectiveAction,
};
use waveguard_protocol::{KeyId, ReleaseId, SigningKey, Timestamp};

/// The reason `resume` signs when none is given.
pub const DEFAULT_RESUME_REASON: &str = "resumed by operator";

/// What `halt` and `resume` share.
#[derive(Args, Debug, Clone)]
pub struct DirectiveArgs {
    /// Key files signing the directive: the vendor's targets keys or the operator's keys, enough
    /// for that role's threshold (the two roles' signatures never add up).
    #[arg(long = "key", value_name = "FILE", num_args = 1.., required = true)]
    pub keys: Vec<PathBuf>,
    /// The release: 64 hex digits of its ID.
    #[arg(long, value_name = "ID")]
    pub release: String,
    /// Sequence number; the highest accepted one wins, and an agent accepts only a higher one
    /// than it has seen for the release. Default: the current time in milliseconds, so a later
    /// command always outranks an earlier one.
    #[arg(long, value_name = "N")]
    pub seq: Option<u64>,
    /// How long agents may still accept the directive (once accepted, it stays in force).
    #[arg(long, value_name = "DURATION", default_value = "7d", value_parser = super::args::duration_secs)]
    pub expires: u64,
    /// Write the signed directive to FILE (then it is sent only if --api is also given).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Replace --out if it exists.
    #[arg(long, requires = "out")]
    pub force: bool,
    /// The agent's HTTP API to POST the directive to (default 127.0.0.1:7070 without --out).
    #[arg(long, value_name = "ADDR")]
    pub api: Option<SocketAddr>,
    /// Check the signers against this release directory's newest root before signing.
    #[arg(long, value_name = "DIR")]
    pub repo: Option<PathBuf>,
    /// Check the signers against this root metadata (with --repo: the trusted root to walk from).
    #[arg(long, value_name = "FILE")]
    pub root: Option<PathBuf>,
}

/// Arguments of `waveguard halt`.
#[derive(Args, Debug, Clone)]
pub struct HaltArgs {
    /// Why: shown in every agent's status and logs (at most 1024 bytes).
    #[arg(long, value_name = "TEXT")]
    pub reason: String,
    /// Keys, release, seq, expiry and where the directive goes.
    #[command(flatten)]
    pub common: DirectiveArgs,
}

/// Arguments of `waveguard resume`.
#[derive(Args, Debug, Clone)]
pub struct ResumeArgs {
    /// Why (at most 1024 bytes).
    #[arg(long, value_name = "TEXT", default_value = DEFAULT_RESUME_REASON)]
    pub reason: String,
    /// Keys, release, seq, expiry and where the directive goes.
    #[command(flatten)]
    pub common: DirectiveArgs,
}

/// What an agent answered to a directive it verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The agent's API address.
    pub api: SocketAddr,
    /// The HTTP status (202: it changed something, 200: nothing changed).
    pub code: u16,
    /// The agent's summary.
    pub answer: DirectiveView,
}

/// What `halt` or `resume` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectiveReport {
    /// The directive signed.
    pub directive: Directive,
    /// The keys that signed it.
    pub signers: Vec<KeyId>,
    /// The signed JSON.
    pub signed: Vec<u8>,
    /// The root the signers were checked against: version and file.
    pub checked: Option<(u64, PathBuf)>,
    /// The file written, with `--out`.
    pub written: Option<PathBuf>,
    /// The agent's answer, when sent.
    pub delivered: Option<Delivery>,
}

fn action_name(a: DirectiveAction) -> &'static str {
    match a {
        DirectiveAction::Halt => "halt",
        DirectiveAction::Resume => "resume",
    }
}

impl fmt::Display for DirectiveReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = &self.directive;
        writeln!(
            f,
            "signed {} of release {}",
            action_name(d.action),
            d.release
        )?;
        writeln!(f, "seq:       {}", d.seq)?;
        writeln!(f, "reason:    {}", d.reason)?;
        writeln!(
            f,
            "expires:   {} (agents may accept it until then)",
            d.expires
        )?;
        let signers: Vec<String> = self.signers.iter().map(keys::short_id).collect();
        write!(f, "signed by: {}", signers.join(", "))?;
        if let Some((version, path)) = &self.checked {
            write!(
                f,
                "\nchecked:   against root v{version} ({})",
                path.display()
            )?;
        }
        if let Some(p) = &self.written {
            write!(f, "\nwrote {}", p.display())?;
        }
        if let Some(s) = &self.delivered {
            let a = &s.answer;
            write!(f, "\nagent {} answered {}: ", s.api, s.code)?;
            if !a.followed {
                write!(
                    f,
                    "it does not follow this release yet; it keeps the directive until it does and passed it on"
                )?;
            } else if !a.changed {
                write!(
                    f,
                    "nothing changed, seq {} is not above the latest accepted seq {}",
                    a.seq,
                    a.latest_seq
                        .map_or_else(|| "?".to_string(), |s| s.to_string())
                )?;
            } else {
                write!(f, "accepted and passed on")?;
            }
            if let Some(state) = &a.state {
                write!(f, "\nrelease:   {state}")?;
                if let Some(h) = &a.halt {
                    write!(f, " ({h})")?;
                }
            }
        }
        Ok(())
    }
}

/// Runs `halt` as of `now`.
pub fn run_halt(a: &HaltArgs, now: Timestamp) -> anyhow::Result<DirectiveReport> {
    run(DirectiveAction::Halt, &a.reason, &a.common, now).context("halt")
}

/// Runs `resume` as of `now`.
pub fn run_resume(a: &ResumeArgs, now: Timestamp) -> anyhow::Result<DirectiveReport> {
    run(DirectiveAction::Resume, &a.reason, &a.common, now).context("resume")
}

fn run(
    action: DirectiveAction,
    reason: &str,
    a: &DirectiveArgs,
    now: Timestamp,
) -> anyhow::Result<DirectiveReport> {
    let release: ReleaseId = a
        .release
        .parse()
        .map_err(|e| anyhow::anyhow!("--release: {e} (the release ID, as publish printed it)"))?;
    let directive = Directive {
        action,
        release,
        seq: a.seq.unwrap_or(now.as_millis()),
        expires: expiry(now, a.expires, "--expires")?,
        reason: reason.to_string(),
    };
    directive.check().context("--reason")?;
    let signers = keys::read_secrets(&a.keys, "--key")?;
    let refs: Vec<&SigningKey> = signers.iter().collect();
    let signed = sign_directive(&refs, &directive);
    let checked = match load_root(a.repo.as_deref(), a.root.as_deref())? {
        Some(root) => {
            verify_directive(&signed, &root.fleet, now).with_context(|| {
                format!(
                    "the keys given do not make a directive root v{} ({}) accepts",
                    root.version,
                    root.path.display()
                )
            })?;
            Some((root.version, root.path))
        }
        None => None,
    };
    if let Some(out) = &a.out {
        write_out(out, &signed, a.force)?;
    }
    let api = match (a.api, &a.out) {
        (Some(api), _) => Some(api),
        (None, None) => Some(
            DEFAULT_API
                .parse()
                .context("the default API address is not an address")?,
        ),
        (None, Some(_)) => None,
    };
    let delivered = match api {
        Some(api) => Some(deliver(api, &signed).map_err(|e| match &a.out {
            Some(out) => anyhow::anyhow!(
                "{}; the signed directive was written to {}",
                super::error_message(&e),
                out.display()
            ),
            None => e,
        })?),
        None => None,
    };
    Ok(DirectiveReport {
        directive,
        signers: signers.iter().map(SigningKey::key_id).collect(),
        signed,
        checked,
        written: a.out.clone(),
        delivered,
    })
}

/// POSTs a signed directive to the agent at `api` and reads its answer.
fn deliver(api: SocketAddr, signed: &[u8]) -> anyhow::Result<Delivery> {
    let response = http_request(api, "POST", "/directive", Some(signed))?;
    let error = || {
        serde_json::from_slice::<ErrorView>(&response.body)
            .map(|e| e.error)
            .unwrap_or_else(|_| String::from_utf8_lossy(&response.body).into_owned())
    };
    match response.code {
        200 | 202 => {
            let answer = serde_json::from_slice(&response.body).with_context(|| {
                format!("the answer from {api} is not a waveguard directive summary")
            })?;
            Ok(Delivery {
                api,
                code: response.code,
                answer,
            })
        }
        400 => bail!("the agent at {api} refused the directive: {}", error()),
        code => bail!(
            "the agent at {api} answered HTTP status {code}: {}",
            error()
        ),
    }
}
