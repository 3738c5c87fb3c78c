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
pub mod ci;
pub mod cli;
pub mod config;
pub mod demo;
pub mod engine;
pub mod error;
pub mod gate;
pub mod github;
pub mod jsonfile;
pub mod mock;
pub mod output;
pub mod render;
pub mod result;
pub mod scenario;
pub mod stats;
pub mod target;
pub mod tokens;

use std::net::SocketAddr;

use tokio_util::sync::CancellationToken;

use crate::cli::{
    BaselineCommand, Cli, Command, CompareArgs, MockArgs, RefreshArgs, ReportArgs, RunArgs,
};
pub use crate::error::UserError;
use crate::gate::duet::DuetResult;
use crate::result::RunResult;

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
        Command::Compare(args) => compare(&args),
        Command::Report(args) => report(&args),
        Command::Baseline(BaselineCommand::Refresh(args)) => refresh(&args).await,
        Command::Baseline(BaselineCommand::Propose(args)) => ci::propose(&args).await,
        Command::Gate(args) => ci::gate(&args).await,
        Command::Comment(args) => ci::comment(&args).await,
    }
}

/// A result file of either kind.
#[derive(Debug)]
pub enum Current {
    /// One run.
    Single(Box<RunResult>),
    /// Reference and candidate in one job.
    Duet(Box<DuetResult>),
}

impl Current {
    /// Read a result or duet result, telling them apart by `kind`.
    pub fn read(path: &std::path::Path) -> Result<Self, UserError> {
        let text = error::read_to_string(path)?;
        let kind = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.get("kind").and_then(|k| k.as_str()).map(str::to_owned));
        if kind.as_deref() == Some(gate::duet::KIND) {
            return Ok(Current::Duet(Box::new(DuetResult::parse(&text, path)?)));
        }
        Ok(Current::Single(Box::new(RunResult::parse(&text, path)?)))
    }

    /// The result the report shows: the run, or a duet's candidate.
    pub fn shown(&self) -> &RunResult {
        match self {
            Current::Single(r) => r,
            Current::Duet(d) => &d.candidate,
        }
    }
}

/// Compute a verdict for `current`, with the policy of the result (or
/// baseline) overlaid by command-line flags.
pub fn judge(
    current: &Current,
    baseline: Option<&std::path::Path>,
    overrides: &gate::policy::PolicyFile,
    force: bool,
) -> Result<gate::Verdict, UserError> {
    let mut policy = current.shown().gate.clone();
    policy
        .apply(overrides)
        .map_err(|m| UserError::flag("--metric/--margin/--alpha", m))?;
    match current {
        Current::Duet(d) => Ok(gate::duet::compare_duet(d, &policy)),
        Current::Single(r) => {
            let path = baseline.ok_or_else(|| {
                UserError::flag("--baseline", "a single run needs a baseline to compare with")
                    .with_hint("pass `--baseline baselines/NAME.json`, or run in duet mode with `run --baseline-target`")
            })?;
            let b = baseline::Baseline::read(path)?;
            let notes = gate::check_comparable(&b, r, force)?;
            Ok(gate::compare_baseline(&b, r, &policy, notes))
        }
    }
}

fn compare(args: &CompareArgs) -> anyhow::Result<Outcome> {
    let current = Current::read(&args.current)?;
    let overrides = config::policy_overrides(&args.policy)?;
    let verdict = judge(&current, args.baseline.as_deref(), &overrides, args.force)?;
    if let Some(p) = &args.out {
        verdict.write(p)?;
        eprintln!("verdict written to {}", p.display());
    }
    let templates = render::report::Templates::load(None)?;
    let reference = match &current {
        Current::Duet(d) => Some(d.reference.provenance.target.clone()),
        Current::Single(_) => None,
    };
    let ctx = render::report::context(current.shown(), Some(&verdict), reference.as_deref());
    output::out(&render::report::render(
        render::report::Format::Text,
        &templates,
        &ctx,
    )?);
    Ok(if verdict.verdict == gate::Status::Fail {
        Outcome::Regression
    } else {
        Outcome::Success
    })
}

fn report(args: &ReportArgs) -> anyhow::Result<Outcome> {
    let current = Current::read(&args.current)?;
    let verdict = match (&args.verdict, &args.baseline, &current) {
        (Some(v), _, _) => Some(gate::Verdict::read(v)?),
        (None, Some(b), _) => Some(judge(
            &current,
            Some(b),
            &gate::policy::PolicyFile::default(),
            args.force,
        )?),
        (None, None, Current::Duet(_)) => Some(judge(
            &current,
            None,
            &gate::policy::PolicyFile::default(),
            false,
        )?),
        (None, None, Current::Single(_)) => None,
    };
    let templates = render::report::Templates::load(args.templates.as_deref())?;
    let reference = match &current {
        Current::Duet(d) => Some(d.reference.provenance.target.clone()),
        Current::Single(_) => None,
    };
    let ctx = render::report::context(current.shown(), verdict.as_ref(), reference.as_deref());
    let text = render::report::render(args.format, &templates, &ctx)?;
    match &args.out {
        Some(p) => {
            error::write_atomic(p, text.as_bytes())?;
            eprintln!("report written to {}", p.display());
        }
        None => output::out(&text),
    }
    Ok(Outcome::Success)
}

async fn refresh(args: &RefreshArgs) -> anyhow::Result<Outcome> {
    if args.runs == 0 || args.runs > 100 {
        return Err(UserError::flag("--runs", "must be between 1 and 100").into());
    }
    error::check_outputs(&[("--out", args.out.as_path())])?;
    // With `--append`, the baseline to extend is read (and checked) first.
    let existing = match (args.append, args.out.exists()) {
        (true, true) => Some(baseline::Baseline::read(&args.out)?),
        _ => None,
    };
    // A run that is not fit to be a baseline stops the refresh at once,
    // naming it: a baseline of failed runs would pass everything.
    let admit = |name: &str, r: &RunResult| -> Result<(), UserError> {
        match baseline::unfit(r) {
            Some(why) if !args.accept_bad_runs => Err(UserError::invalid(
                "result",
                name,
                None,
                format!("not fit for a baseline: {why}"),
            )
            .with_hint(
                "fix the target and refresh again; `--accept-bad-runs` takes such runs anyway",
            )),
            Some(why) => {
                eprintln!("warning: {name} is taken although {why} (--accept-bad-runs)");
                Ok(())
            }
            None => Ok(()),
        }
    };
    let mut results: Vec<(String, RunResult)> = Vec::new();
    if !args.from.is_empty() {
        for p in &args.from {
            let name = p.display().to_string();
            let r = RunResult::read(p)?;
            admit(&name, &r)?;
            results.push((name, r));
        }
    } else if args.mock {
        let duration = match &args.duration {
            Some(d) => scenario::parse_duration(d).map_err(|m| UserError::flag("--duration", m))?,
            None => demo::DURATION,
        };
        let warmup = match &args.warmup {
            Some(w) => {
                Some(scenario::parse_duration(w).map_err(|m| UserError::flag("--warmup", m))?)
            }
            None => None,
        };
        for i in 0..args.runs {
            eprintln!("baseline run {}/{}", i + 1, args.runs);
            let r = demo::run_against_mock(
                duration,
                args.concurrency.unwrap_or(demo::CONCURRENCY),
                1.0,
                warmup,
            )
            .await?;
            let name = format!("run {}", i + 1);
            admit(&name, &r)?;
            results.push((name, r));
        }
    } else {
        let scenario = args.scenario.clone().ok_or_else(|| {
            UserError::flag(
                "--scenario",
                "give a scenario to run, result files to combine, or `--mock`",
            )
        })?;
        let run_args = RunArgs {
            scenario,
            target: args.target.clone(),
            tokens: args.tokens.clone(),
            concurrency: args.concurrency,
            duration: args.duration.clone(),
            requests: None,
            warmup: args.warmup.clone(),
            seed: None,
            vars: args.vars.clone(),
            out: args.out.clone(),
            requests_out: None,
            drain: "60s".into(),
            no_progress: false,
            baseline_target: None,
            ca_cert: None,
        };
        let plan = config::run_plan(&run_args)?;
        for i in 0..args.runs {
            eprintln!(
                "baseline run {}/{} against {}",
                i + 1,
                args.runs,
                plan.target
            );
            let (signals, kill) = signal_tokens();
            let out = engine::run(plan.clone(), signals, kill).await?;
            if let engine::RunStatus::Partial(reason) = &out.status {
                return Err(UserError::Environment {
                    message: format!("baseline run {} did not finish: {reason}", i + 1),
                    hint: Some("nothing was written; run the refresh again".into()),
                }
                .into());
            }
            let meta = result::RunMeta {
                scenario: &plan.scenario,
                target: &plan.target,
                load: &plan.load,
            };
            let r = result::build(&meta, &out);
            let name = format!("run {}", i + 1);
            admit(&name, &r)?;
            results.push((name, r));
        }
    }
    let mut b = baseline::Baseline::from_results(&results, args.accept_bad_runs)?;
    if let Some(old) = existing {
        let before = old.runs.len();
        b = old.append(b, args.keep as usize, &args.out)?;
        eprintln!(
            "appended {} run(s) to the {before} in {}; keeping the newest {}",
            results.len(),
            args.out.display(),
            b.runs.len()
        );
    }
    b.write(&args.out)?;
    eprintln!(
        "baseline of {} run(s) of `{}` written to {}",
        b.runs.len(),
        b.provenance.scenario.name,
        args.out.display()
    );
    if b.runs.len() < 5 {
        eprintln!("note: fewer than 5 runs give a wide prediction interval; the gate will rarely call a change significant");
    }
    Ok(Outcome::Success)
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
    // A closed terminal or session (SIGHUP) stops a run like SIGTERM does,
    // so the partial result is still written.
    let mut hangup = signal(SignalKind::hangup())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r,
        _ = term.recv() => Ok(()),
        _ = hangup.recv() => Ok(()),
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
    if let Some(reference) = plan.reference.clone() {
        let pairs = plan.load.blocks;
        let duet = engine::duet::run_duet(plan.clone(), reference, pairs, signals, kill).await?;
        duet.result.write(&args.out)?;
        if let Some(p) = &args.requests_out {
            result::requests::write_sides(
                p,
                &plan.scenario,
                &[
                    (Some("reference"), &duet.reference),
                    (Some("candidate"), &duet.candidate),
                ],
            )?;
            eprintln!("requests written to {}", p.display());
        }
        let duet = duet.result;
        eprintln!("duet result written to {}", args.out.display());
        output::out(&render::text::summary(&duet.candidate));
        let verdict = gate::duet::compare_duet(&duet, &duet.candidate.gate);
        output::out(&format!(
            "duet verdict: {} — {}\n",
            verdict.verdict, verdict.headline
        ));
        return Ok(Outcome::Success);
    }
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
    output::out(&render::text::summary(&res));
    if let Some(diagnosis) = res.failure_diagnosis() {
        return Err(UserError::Environment {
            message: diagnosis,
            hint: Some(format!(
                "the result (with a few examples per error class) is in `{}`; check `--target`, the tokens and the scenario's `--var`s",
                args.out.display()
            )),
        }
        .into());
    }
    if let engine::RunStatus::Partial(reason) | engine::RunStatus::Aborted(reason) = &out.status {
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
    output::out(&format!("{}\n", handle.url()));
    let (signals, _) = signal_tokens();
    signals.cancelled().await;
    handle.stop().await;
    Ok(Outcome::Success)
}
