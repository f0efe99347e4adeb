//! ranq's integration suite, one binary (see `ranq-tests` for the harness). Each module reads like
//! the part of the contract it holds ranq to.

#![allow(clippy::unwrap_used)]

/// Runs the scenario `async fn $scenario(dialect: Dialect)` of the enclosing module once per
/// dialect listed, as tests `$scenario::<dialect>`: one scenario, held on every database, never
/// copied per dialect.
macro_rules! on_each_dialect {
    ($scenario:ident, [$($test:ident => $dialect:ident),+ $(,)?]) => {
        on_each_dialect!($scenario, tokio::test, [$($test => $dialect),+]);
    };
    ($scenario:ident, multi_thread, [$($test:ident => $dialect:ident),+ $(,)?]) => {
        on_each_dialect!($scenario, tokio::test(flavor = "multi_thread", worker_threads = 2), [$($test => $dialect),+]);
    };
    ($scenario:ident, $runtime:meta, [$($test:ident => $dialect:ident),+]) => {
        mod $scenario {
            $(
                #[$runtime]
                async fn $test() {
                    super::$scenario(ranq_tests::Dialect::$dialect).await;
                }
            )+
        }
    };
}

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
mod docs;
mod failover;
mod fence;
mod fleet;
mod http;
mod http_fuzz;
mod operator;
mod phases;
mod producer;
mod public;
mod queue;
mod reference;
mod refresh;
mod sentinel;
mod source;
mod tls;
mod worker;
