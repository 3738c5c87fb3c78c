//! The commands, one file each, all measuring through
//! [`crate::result::measure`] and judging through [`judge`], so a check made
//! in one command is made in all. They take typed [`Settings`]; the CLI layer
//! builds those.

mod capacity;
mod compare;
mod demo;
mod gate;
mod github;
mod history;
mod mock;
mod refresh;
mod run;
pub mod settings;
mod shard;
mod trace;

use tokio_util::sync::CancellationToken;

pub use demo::{run_against_mock, BASELINE, CONCURRENCY, DURATION};
pub use settings::*;

use crate::error::UserError;
use crate::gate::{self as judgement, Verdict};
use crate::result::baseline::Baseline;
use crate::result::Current;

/// How a command ended, when it did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Exit 0.
    Success,
    /// Exit 1: the gate found a regression.
    Regression,
}

impl Outcome {
    /// Success unless the verdict failed.
    pub fn of(verdict: &Verdict) -> Self {
        if verdict.verdict == judgement::Status::Fail {
            Outcome::Regression
        } else {
            Outcome::Success
        }
    }
}

/// Carry out a command.
pub async fn execute(settings: Settings) -> anyhow::Result<Outcome> {
    match settings {
        Settings::Demo(s) => demo::demo(&s).await,
        Settings::Mock(s) => mock::serve(&s).await,
        Settings::Run(s) => run::run(&s).await,
        Settings::Compare(s) => compare::compare(&s),
        Settings::Report(s) => compare::report(&s),
        Settings::Refresh(s) => refresh::refresh(&s).await,
        Settings::Propose(s) => github::propose(&s).await,
        Settings::Gate(s) => gate::gate(&s).await,
        Settings::Comment(s) => github::comment(&s).await,
        Settings::Capacity(s) => capacity::capacity(&s).await,
        Settings::CompareCapacity(s) => capacity::compare(&s),
        Settings::ReportCapacity(s) => capacity::report(&s),
        Settings::Plan(s) => shard::plan(&s),
        Settings::Merge(s) => shard::merge(&s),
        Settings::History(s) => history::history(&s).await,
        Settings::TraceCheck(s) => trace::check(&s),
        Settings::TraceConvert(s) => trace::convert(&s),
    }
}

/// Compute a verdict for `current`, with the policy of the result (or
/// baseline) overlaid by the settings' policy.
pub fn judge(current: &Current, how: &JudgeSettings) -> Result<Verdict, UserError> {
    let mut verdict = judge_metrics(current, how)?;
    verdict.with_hypotheses(judgement::hypothesis::evaluate(current.shown()));
    Ok(verdict)
}

fn judge_metrics(current: &Current, how: &JudgeSettings) -> Result<Verdict, UserError> {
    let mut policy = current.shown().gate.clone();
    // The settings were checked against the default policy; a result's own
    // policy takes them the same way.
    policy
        .apply(&how.overrides)
        .map_err(|m| UserError::Environment {
            message: format!("the policy settings do not apply to this result: {m}"),
            hint: None,
        })?;
    match current {
        Current::Duet(d) => Ok(judgement::duet::compare_duet(d, &policy)),
        Current::Single(r) => {
            // The command line requires a baseline for a single run.
            let path = how
                .baseline
                .as_deref()
                .ok_or_else(|| UserError::Environment {
                    message: "a single run needs a baseline to compare with".into(),
                    hint: None,
                })?;
            let b = Baseline::read(path)?;
            let notes = judgement::check_comparable(&b, r, how.force)?;
            // The baseline holds the part of its runs its policy named.
            if b.gate.stage != policy.stage {
                let part = |s: &Option<String>| {
                    s.as_ref()
                        .map_or("the whole run".to_string(), |n| format!("the stage `{n}`"))
                };
                return Err(UserError::Environment {
                    message: format!(
                        "the baseline holds {} and the gate judges {}",
                        part(&b.gate.stage),
                        part(&policy.stage)
                    ),
                    hint: Some(
                        "set the same `[gate] stage` in the scenario the baseline is refreshed from, or judge what the baseline holds".into(),
                    ),
                });
            }
            // A policy that names a stage judges that stage only.
            let part =
                r.gated_part(policy.stage.as_deref())
                    .map_err(|m| UserError::Environment {
                        message: m,
                        hint: Some(
                            "name a stage of this run in `[gate] stage` or `--gate-stage`".into(),
                        ),
                    })?;
            Ok(judgement::compare_baseline(&b, &part, &policy, notes))
        }
    }
}

/// Cancelled on the first SIGINT/SIGTERM/SIGHUP, and the second token on the next.
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

/// "30s" or "500 requests".
pub fn describe_stop(load: &crate::scenario::LoadSpec) -> String {
    match (load.duration, load.requests) {
        (Some(d), Some(n)) => format!("{} or {n} requests", humantime::format_duration(d)),
        (Some(d), None) => humantime::format_duration(d).to_string(),
        (None, Some(n)) => format!("{n} requests"),
        (None, None) => "ever".into(),
    }
}
