//! One module per family of subcommands.

pub mod admin;
pub mod bench;
pub mod config;
pub mod dead;
pub mod fleet;
pub mod human;
pub mod inspect;
pub mod refresh;
pub mod status;
pub mod up;
