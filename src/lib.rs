//! flora-gate: a performance regression gate for streaming LLM APIs.
//!
//! The binary is a thin shell around [`run`]; everything lives here so tests
//! drive it in process. Where things happen:
//! - [`engine`]: virtual users, requests, SSE parsing, timing (where a number is measured);
//! - [`stats`] and [`result`]: distributions, summaries, result files;
//! - [`render`]: what people read;
//! - [`mock`]: the mock Dreaminkflora/OpenAI server;
//! - [`scenario`] and [`tokens`]: the inputs.

pub mod baseline;
pub mod cli;
pub mod config;
pub mod demo;
pub mod engine;
pub mod error;
pub mod gate;
pub mod mock;
pub mod render;
pub mod result;
pub mod scenario;
pub mod stats;
pub mod tokens;

use std::net::SocketAddr;

use tokio_util::sync::CancellationToken;

use crate::cli::{Cli, Command, MockArgs, RunArgs};
pub use crate::error::UserError;

/// How a command ended, when it did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Exit 0.
    Success,
    /// Exit 1: the gate found a regression.
    Regression,
}

/// Run a parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<Outcome> {
    match cli.command {
        Command::Demo(args) => demo::demo(&args).await,
        Command::Mock(args) => serve_mock(&args).await,
        Command::Run(args) => run_load(&args).await,
    }
}

/// Cancelled on the first SIGINT/SIGTERM, and the second token on the next.
pub fn signal_tokens() -> (CancellationToken, CancellationToken) {
    let first = CancellationToken::new();
    let second = CancellationToken::new();
    let (f, s) = (first.clone(), second.clone());
    tokio::spawn(async move {
        if wait_signal().await.is_err() {
            return;
        }
        eprintln!(
            "\nstopping: no new requests; waiting for in-flight ones (signal again to stop now)"
        );
        f.cancel();
        if wait_signal().await.is_ok() {
            eprintln!("stopping now");
            s.cancel();
        }
    });
    (first, second)
}

#[cfg(unix)]
async fn wait_signal() -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r,
        _ = term.recv() => Ok(()),
    }
}

#[cfg(not(unix))]
async fn wait_signal() -> std::io::Result<()> {
    tokio::signal::ctrl_c().await
}

async fn run_load(args: &RunArgs) -> anyhow::Result<Outcome> {
    let plan = config::run_plan(args)?;
    let (signals, kill) = signal_tokens();
    eprintln!(
        "running {} against {} with {} users for {}",
        plan.scenario.label(),
        plan.target,
        plan.load.concurrency,
        describe_stop(&plan.load)
    );
    let out = engine::run(plan.clone(), signals, kill).await?;
    let meta = result::RunMeta {
        scenario: &plan.scenario,
        target: &plan.target,
        load: &plan.load,
    };
    let res = result::build(&meta, &out);
    // Files first: a later failure must not lose them.
    res.write(&args.out)?;
    eprintln!("result written to {}", args.out.display());
    if let Some(p) = &args.requests_out {
        result::requests::write(p, &plan.scenario, &out.recorder.samples)?;
        eprintln!("requests written to {}", p.display());
    }
    print!("{}", render::text::summary(&res));
    if let engine::RunStatus::Partial(reason) = &out.status {
        return Err(UserError::Environment {
            message: format!("the run did not finish: {reason}"),
            hint: Some(format!("the partial result is in `{}`", args.out.display())),
        }
        .into());
    }
    Ok(Outcome::Success)
}

/// "30s" or "500 requests".
pub fn describe_stop(load: &scenario::LoadSpec) -> String {
    match (load.duration, load.requests) {
        (Some(d), Some(n)) => format!("{} or {n} requests", humantime::format_duration(d)),
        (Some(d), None) => humantime::format_duration(d).to_string(),
        (None, Some(n)) => format!("{n} requests"),
        (None, None) => "ever".into(),
    }
}

async fn serve_mock(args: &MockArgs) -> anyhow::Result<Outcome> {
    let cfg = config::mock_config(&args.behaviour, args.tokens.as_deref())?;
    let ip: std::net::IpAddr = args
        .host
        .parse()
        .map_err(|_| UserError::flag("--host", format!("`{}` is not an IP address", args.host)))?;
    let handle = mock::start(cfg, SocketAddr::new(ip, args.port))
        .await
        .map_err(|e| UserError::Environment {
            message: format!("cannot listen on {}:{}: {e}", args.host, args.port),
            hint: Some("choose another `--port`, or 0 for a free one".into()),
        })?;
    eprintln!(
        "mock Dreaminkflora/OpenAI server listening on {} (Ctrl-C to stop)",
        handle.url()
    );
    // The address on stdout, for scripts that start the mock on port 0.
    println!("{}", handle.url());
    let (signals, _) = signal_tokens();
    signals.cancelled().await;
    handle.stop().await;
    Ok(Outcome::Success)
}
