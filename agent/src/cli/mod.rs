//! The command-line interface: argument definitions (clap derive) and the
//! dispatch from a parsed command to the module that runs it.
//!
//! Every command returns a structured [`Outcome`] instead of printing, so tests
//! and the workspace's end-to-end tests can call [`run`] in-process and look at
//! the result; `main` prints the outcome's `Display` form and its warnings.
//! The current time is an argument ([`run_at`]), read from the system clock
//! only by [`run`].

pub mod agent;
pub mod args;
pub mod bench;
pub mod bench_delta;
pub mod bundle;
pub mod cert;
pub mod demo;
pub mod directive;
pub mod keygen;
pub mod keys;
pub mod publish;
pub mod root_init;
pub mod root_rotate;
pub mod status;
pub mod unpublish;
pub mod verify;
pub mod wave;

use clap::{Parser, Subcommand};
use std::ffi::OsString;
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};
use waveguard_protocol::Timestamp;

/// waveguard: peer-to-peer update distribution with canary waves and health gates.
#[derive(Parser, Debug, Clone)]
#[command(name = "waveguard", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Subcommand, Debug, Clone)]
#[non_exhaustive]
pub enum Command {
    /// Create a new ed25519 key file and print its key ID, node ID and PeerId.
    Keygen(keygen::KeygenArgs),
    /// Create or rotate the root metadata of a release directory.
    #[command(subcommand)]
    Root(RootCommand),
    /// Add a release (artifact, chunks, signed metadata) to a release directory.
    Publish(publish::PublishArgs),
    /// Remove a release from a release directory's signed metadata; agents then drop its data.
    Unpublish(unpublish::UnpublishArgs),
    /// Verify a release directory offline: metadata, chunk lists, chunks and artifacts.
    Verify(verify::VerifyArgs),
    /// Print which wave a node is in for a release.
    Wave(wave::WaveArgs),
    /// Issue fleet certificates for endpoints (signed by the operator role).
    #[command(subcommand)]
    Cert(CertCommand),
    /// Sign a halt directive for a release and send it to a running agent (or write it to a file).
    Halt(directive::HaltArgs),
    /// Sign a resume directive (a higher seq than the halt) and send it to a running agent.
    Resume(directive::ResumeArgs),
    /// Start a seeder and a dozen real agents on 127.0.0.1 and roll out a good release, then a bad
    /// one, live: the good one reaches everyone, the bad one halts at its canaries, which roll back.
    Demo(demo::DemoArgs),
    /// Run the endpoint daemon until interrupted.
    Agent(agent::AgentArgs),
    /// Serve a release directory to the mesh (a vendor's or a site's seeder) until interrupted.
    Seed(agent::SeedArgs),
    /// Print a running agent's status from its local HTTP API.
    Status(status::StatusArgs),
    /// Measure real agents on loopback: pair goodput, swarm time against the P2P lower bound, idle cost.
    Bench(bench::BenchArgs),
    /// Carry releases to air-gapped sites and their health reports back, on removable media.
    #[command(subcommand)]
    Bundle(bundle::BundleCommand),
}

/// `waveguard root ...`.
#[derive(Subcommand, Debug, Clone)]
#[non_exhaustive]
pub enum RootCommand {
    /// Create a release directory with its first root metadata.
    Init(root_init::RootInitArgs),
    /// Write the next root version, signed by the old and the new root keys.
    Rotate(root_rotate::RootRotateArgs),
}

/// `waveguard cert ...`.
#[derive(Subcommand, Debug, Clone)]
#[non_exhaustive]
pub enum CertCommand {
    /// Sign a fleet certificate for one endpoint with the operator key(s).
    Issue(cert::CertIssueArgs),
}

/// What a command did, for printing or for a test to inspect.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Outcome {
    /// `keygen`.
    Keygen(keygen::KeygenReport),
    /// `root init` or `root rotate`.
    Root(root_init::RootReport),
    /// `publish`.
    Publish(publish::PublishReport),
    /// `unpublish`.
    Unpublish(unpublish::UnpublishReport),
    /// `verify`.
    Verify(verify::VerifyReport),
    /// `wave`.
    Wave(wave::WaveReport),
    /// `cert issue`.
    Cert(cert::CertReport),
    /// `halt` or `resume`.
    Directive(Box<directive::DirectiveReport>),
    /// `demo`.
    Demo(Box<demo::DemoReport>),
    /// `agent` or `seed` stopped.
    Stopped(agent::StopReport),
    /// `status`.
    Status(Box<status::StatusReport>),
    /// `bench`.
    Bench(bench::BenchReport),
    /// `bundle ...`.
    Bundle(Box<bundle::BundleReport>),
}

impl Outcome {
    /// Warnings to show the user (on standard error) besides the report.
    pub fn warnings(&self) -> &[String] {
        match self {
            Outcome::Verify(r) => &r.warnings,
            Outcome::Wave(r) => &r.warnings,
            Outcome::Cert(r) => &r.warnings,
            Outcome::Keygen(_)
            | Outcome::Directive(_)
            | Outcome::Root(_)
            | Outcome::Publish(_)
            | Outcome::Unpublish(_)
            | Outcome::Demo(_)
            | Outcome::Stopped(_)
            | Outcome::Status(_)
            | Outcome::Bench(_)
            | Outcome::Bundle(_) => &[],
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Keygen(r) => r.fmt(f),
            Outcome::Root(r) => r.fmt(f),
            Outcome::Publish(r) => r.fmt(f),
            Outcome::Unpublish(r) => r.fmt(f),
            Outcome::Verify(r) => r.fmt(f),
            Outcome::Wave(r) => r.fmt(f),
            Outcome::Cert(r) => r.fmt(f),
            Outcome::Directive(r) => r.fmt(f),
            Outcome::Demo(r) => r.fmt(f),
            Outcome::Stopped(r) => r.fmt(f),
            Outcome::Status(r) => r.fmt(f),
            Outcome::Bench(r) => r.fmt(f),
            Outcome::Bundle(r) => r.fmt(f),
        }
    }
}

/// Parses `args` (the first item is the program name, as in `std::env::args`)
/// and runs the command at the current system time.
pub fn run<I, T>(args: I) -> anyhow::Result<Outcome>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    run_at(args, system_now()?)
}

/// Like [`run`], but as of `now`.
pub fn run_at<I, T>(args: I, now: Timestamp) -> anyhow::Result<Outcome>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = Cli::try_parse_from(args)?;
    execute(cli, now)
}

/// Runs an already parsed command as of `now`.
pub fn execute(cli: Cli, now: Timestamp) -> anyhow::Result<Outcome> {
    match cli.command {
        Command::Keygen(a) => keygen::run(&a).map(Outcome::Keygen),
        Command::Root(RootCommand::Init(a)) => root_init::run(&a, now).map(Outcome::Root),
        Command::Root(RootCommand::Rotate(a)) => root_rotate::run(&a, now).map(Outcome::Root),
        Command::Publish(a) => publish::run(&a, now).map(Outcome::Publish),
        Command::Unpublish(a) => unpublish::run(&a, now).map(Outcome::Unpublish),
        Command::Verify(a) => verify::run(&a, now).map(Outcome::Verify),
        Command::Wave(a) => wave::run(&a, now).map(Outcome::Wave),
        Command::Cert(CertCommand::Issue(a)) => cert::run(&a, now).map(Outcome::Cert),
        Command::Halt(a) => directive::run_halt(&a, now).map(|r| Outcome::Directive(Box::new(r))),
        Command::Resume(a) => {
            directive::run_resume(&a, now).map(|r| Outcome::Directive(Box::new(r)))
        }
        Command::Demo(a) => demo::run(&a).map(|r| Outcome::Demo(Box::new(r))),
        Command::Agent(a) => agent::run(&a).map(Outcome::Stopped),
        Command::Seed(a) => agent::run_seed(&a).map(Outcome::Stopped),
        Command::Status(a) => status::run(&a).map(|r| Outcome::Status(Box::new(r))),
        Command::Bench(a) => bench::run(&a).map(Outcome::Bench),
        Command::Bundle(c) => bundle::run(&c, now).map(|r| Outcome::Bundle(Box::new(r))),
    }
}

/// An error as one line for the user: every cause, joined by `: `, leaving
/// out a cause whose text the message above it already contains (many errors
/// both quote and chain their source).
pub fn error_message(err: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

/// The system clock as a protocol timestamp.
pub fn system_now() -> anyhow::Result<Timestamp> {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|_| anyhow::anyhow!("the system clock is set before 1970"))?;
    Ok(Timestamp(
        u64::try_from(since.as_millis()).unwrap_or(u64::MAX),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot read f: disk on fire")]
    struct Quoting {
        #[source]
        source: std::io::Error,
    }

    #[test]
    fn error_messages_are_one_line_without_repeats() {
        let inner = Quoting {
            source: std::io::Error::other("disk on fire"),
        };
        let err = anyhow::Error::new(inner).context("verify");
        assert_eq!(error_message(&err), "verify: cannot read f: disk on fire");
    }

    #[test]
    fn usage_errors_are_errors_not_exits() {
        let err = run_at(["waveguard", "publish"], Timestamp(0)).unwrap_err();
        assert!(error_message(&err).contains("--repo"), "{err}");
    }
}
