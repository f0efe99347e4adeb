//! `ranq-runtime` is the process plumbing every ranq binary shares: typed settings layered from
//! defaults, a TOML file, `RANQ_SECTION__KEY` environment variables and flags; telemetry (text or
//! JSON logs); the shutdown signal that every long-running loop is handed; the process edge
//! (global flags, exit codes, one-line errors); and progress bars.
//!
//! Architecture Invariant: nothing here knows about Postgres, Redis or the queue; it depends only
//! on `ranq-core`.

pub mod edge;
pub mod progress;
pub mod settings;
pub mod shutdown;
pub mod telemetry;

pub use edge::{GlobalArgs, UsageError};
pub use settings::{ConfigError, Explained, LogFormat, Origin, Overrides, ProducerMode, Settings};
pub use shutdown::Shutdown;
