//! flora-gate: a performance regression gate for streaming LLM APIs.
//!
//! The binary is a thin shell around [`run`]; everything lives here so tests
//! drive it in process. The layers, each importing only those below it (an
//! architecture test keeps it so):
//! - foundation: [`error`], [`output`], [`policy`] (the gate policy and the
//!   metric catalogue), [`stream`] (SSE and chunk reading), [`stats`],
//!   [`target`], [`jsonfile`], [`tokens`];
//! - [`scenario`]: the inputs;
//! - [`engine`]: virtual users, requests, timing (where a number is measured);
//!   [`mock`] beside it;
//! - [`result`]: result files, baselines, duets, and [`result::measure`], the
//!   one measurement pipeline;
//! - [`gate`]: where a number is judged;
//! - [`render`]: where it is printed; [`github`]: where it is posted;
//! - [`commands`]: one file per command, taking typed settings;
//! - the command line: [`cli`] (clap) and [`config`] (flags into settings).

pub mod cli;
pub mod commands;
pub mod config;
pub mod engine;
pub mod error;
pub mod gate;
pub mod github;
pub mod jsonfile;
pub mod mock;
pub mod output;
pub mod policy;
pub mod render;
pub mod result;
pub mod scenario;
pub mod stats;
pub mod stream;
pub mod target;
pub mod tokens;

pub use crate::commands::Outcome;
pub use crate::error::UserError;

/// Run a parsed command line: flags into settings, then the command.
pub async fn run(cli: cli::Cli) -> anyhow::Result<Outcome> {
    let settings = config::settings(cli)?;
    commands::execute(settings).await
}
