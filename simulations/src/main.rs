//! `waveguard-sim`: runs waveguard's protocol engines under a simulated network.
//!
//! `run scenario.toml --out DIR` runs a scenario file (or a sweep of them) and
//! writes `summary.json`, a time-series CSV and SVG plots; `quick` rolls one
//! release out across an in-memory fleet with no file at all. This file only
//! parses the command line and dispatches.

mod cli;

use clap::{Parser, Subcommand};

/// waveguard's simulator.
#[derive(Parser, Debug)]
#[command(name = "waveguard-sim", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a scenario file (a single run, or a sweep when it has a [sweep] table).
    Run(cli::run::RunArgs),
    /// Roll one release out across an in-memory fleet and print what happened.
    Quick(cli::quick::QuickArgs),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Run(a) => cli::run::main(&a),
        Command::Quick(a) => cli::quick::main(&a),
    }
}
