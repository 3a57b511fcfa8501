//! The simulator's subcommands, one file each.

pub mod quick;
pub mod run;
