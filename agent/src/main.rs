//! `waveguard`: the endpoint agent and the vendor's and operator's command-line tool.
//!
//! Parses the arguments, runs the command, prints its report to standard
//! output and its warnings to standard error. An error ends the process with
//! status 1 and one line naming what failed.
#![forbid(unsafe_code)]

use clap::Parser;
use waveguard_agent::cli::{self, Cli};

fn main() -> anyhow::Result<()> {
    let parsed = Cli::parse();
    match cli::system_now().and_then(|now| cli::execute(parsed, now)) {
        Ok(outcome) => {
            for w in outcome.warnings() {
                eprintln!("warning: {w}");
            }
            println!("{outcome}");
            Ok(())
        }
        Err(e) => {
            // One clear line, not anyhow's multi-line report with a backtrace.
            eprintln!("error: {}", cli::error_message(&e));
            std::process::exit(1)
        }
    }
}
