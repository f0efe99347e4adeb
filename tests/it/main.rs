//! ranq's integration suite, one binary (see `ranq-tests` for the harness). Each module reads like
//! the part of the contract it holds ranq to.

#![allow(clippy::unwrap_used)]

mod acl;
mod architecture;
mod bench;
mod browser;
mod chaos;
mod cli;
mod cluster;
mod config;
mod conformance;
mod deploy;
mod failover;
mod fence;
mod fleet;
mod http;
mod http_fuzz;
mod operator;
mod producer;
mod public;
mod queue;
mod reference;
mod refresh;
mod sentinel;
mod tls;
mod worker;
