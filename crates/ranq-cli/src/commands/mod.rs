//! One module per family of subcommands.

pub mod admin;
pub mod config;
pub mod dead;
pub mod human;
pub mod inspect;
pub mod refresh;
pub mod roles;
pub mod status;
pub mod up;
