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
//!
//! # As a library
//!
//! The documented surface is what a program that drives a gate needs: a
//! scenario, a checked target, a plan, the one measurement pipeline, the
//! result and its verdict, and the command line itself. The modules behind
//! them are public for this crate's own tests and hidden from the docs: they
//! change with the code.
//!
//! ```no_run
//! # async fn example() -> Result<(), flora_gate::UserError> {
//! use std::sync::Arc;
//! use flora_gate::{Baseline, Plan, Scenario, Source, Target};
//!
//! let scenario = Scenario::load("openai-chat", &[])?;
//! let target = Target::parse("http://127.0.0.1:8080", Source { name: "--target" })?;
//! let tokens = Arc::new(flora_gate::tokens::generated(4));
//! let load = scenario.load.clone();
//! let plan = Plan::new(Arc::new(scenario), target, tokens, load);
//! let (stop, kill) = Default::default();
//! let measured = flora_gate::measure(&plan, stop, kill).await?;
//! if let flora_gate::Current::Single(result) = &measured.current {
//!     let baseline = Baseline::read("baseline.json".as_ref())?;
//!     let verdict = flora_gate::compare_baseline(&baseline, result, &result.gate, vec![]);
//!     println!("{}", verdict.headline);
//! }
//! # Ok(())
//! # }
//! ```

pub mod cli;
#[doc(hidden)]
pub mod commands;
#[doc(hidden)]
pub mod config;
#[doc(hidden)]
pub mod engine;
#[doc(hidden)]
pub mod error;
#[doc(hidden)]
pub mod gate;
#[doc(hidden)]
pub mod github;
#[doc(hidden)]
pub mod jsonfile;
#[doc(hidden)]
pub mod mock;
#[doc(hidden)]
pub mod output;
#[doc(hidden)]
pub mod policy;
#[doc(hidden)]
pub mod render;
#[doc(hidden)]
pub mod result;
#[doc(hidden)]
pub mod scenario;
#[doc(hidden)]
pub mod stats;
#[doc(hidden)]
pub mod stream;
#[doc(hidden)]
pub mod target;
pub mod tokens;

pub use crate::commands::Outcome;
pub use crate::engine::Plan;
pub use crate::error::UserError;
pub use crate::gate::{compare_baseline, Status, Verdict};
pub use crate::mock::{start as start_mock, MockConfig, MockHandle};
pub use crate::result::baseline::Baseline;
pub use crate::result::measure::{measure, Current, Measured};
pub use crate::result::RunResult;
pub use crate::scenario::Scenario;
pub use crate::target::{Source, Target};

/// Run a parsed command line: flags into settings, then the command.
pub async fn run(cli: cli::Cli) -> anyhow::Result<Outcome> {
    let settings = config::settings(cli)?;
    commands::execute(settings).await
}
