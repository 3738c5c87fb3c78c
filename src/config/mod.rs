//! From arguments to validated settings: every bad flag or file becomes a
//! [`UserError`] here, before anything runs. With `cli.rs` this is the
//! command-line layer: the only code that knows clap's structs or names a
//! flag in a validation error.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use crate::cli::{
    BaselineCommand, Cli, Command, CommentArgs, CompareArgs, DemoArgs, FormatArg, GateArgs,
    MockArgs, MockBehaviour, ProposeArgs, RefreshArgs, ReportArgs, RunArgs, TraceCommand,
};
use crate::commands::{
    CommentMode, CommentSettings, CompareSettings, DemoSettings, GateSettings, GateSource,
    JudgeSettings, MockSettings, ProposeSettings, RefreshSettings, RefreshSource, ReportSettings,
    RunSettings, Settings, Sticky, TraceCheckSettings, TraceConvertSettings,
};
use crate::error::UserError;
use crate::mock::{FaultRates, MockConfig};
use crate::result::Current;
use crate::scenario::parse_duration;
use crate::tokens;

mod capacity;
mod compare;
mod gate;
mod history;
mod mock;
mod refresh;
mod run;
mod shard;

use capacity::{capacity, capacity_gate, compare_capacity, report_capacity};
use compare::{compare, html_beside, report};
use gate::{comment, gate, measuring_flags, refuse_any};
pub use mock::mock_config;
use mock::{demo, mock};
use refresh::{propose, refresh};

pub use crate::scenario::caps::{MAX_DURATION, MAX_REQUESTS, MAX_USERS as MAX_CONCURRENCY};
pub use run::{parse_vars, run_args, run_plan};

fn duration_flag(flag: &'static str, s: &str) -> Result<Duration, UserError> {
    parse_duration(s).map_err(|m| UserError::flag(flag, m))
}

/// One `--slo METRIC=NUMBER`.
fn slo_pair(s: &str) -> Result<(String, f64), UserError> {
    s.split_once('=')
        .and_then(|(k, v)| {
            v.trim()
                .parse::<f64>()
                .ok()
                .map(|v| (k.trim().to_string(), v))
        })
        .ok_or_else(|| slo_error(s))
}

fn slo_error(s: &str) -> UserError {
    UserError::flag(
        "--slo",
        format!("`{s}` is not METRIC=NUMBER (for example `ttft_p90=800`)"),
    )
}

/// Command-line policy flags as a policy layer.
pub fn policy_overrides(
    a: &crate::cli::PolicyArgs,
) -> Result<crate::policy::PolicyFile, UserError> {
    let mut slo = std::collections::BTreeMap::new();
    for s in &a.slo {
        let (k, v) = slo_pair(s)?;
        slo.insert(k, v);
    }
    Ok(crate::policy::PolicyFile {
        metrics: (!a.metrics.is_empty()).then(|| a.metrics.clone()),
        margin: a.margin,
        warn_margin: a.warn_margin,
        duet_margin: a.duet_margin,
        alpha: a.alpha,
        max_error_rate: a.max_error_rate,
        margins: None,
        slo: (!slo.is_empty()).then_some(slo),
        stage: a.gate_stage.clone(),
    })
}

/// Every command line into the settings of its command.
pub fn settings(cli: Cli) -> Result<Settings, UserError> {
    Ok(match cli.command {
        Command::Demo(a) => Settings::Demo(demo(&a)?),
        Command::Mock(a) => Settings::Mock(mock(&a)?),
        Command::Run(a) => Settings::Run(Box::new(run(&a)?)),
        Command::Compare(a) if crate::result::capacity::CapacityResult::is_one(&a.current) => {
            Settings::CompareCapacity(Box::new(compare_capacity(&a)?))
        }
        Command::Compare(a) => Settings::Compare(compare(&a)?),
        Command::Report(a) if crate::result::capacity::CapacityResult::is_one(&a.current) => {
            Settings::ReportCapacity(Box::new(report_capacity(&a)?))
        }
        Command::Report(a) => Settings::Report(report(&a)?),
        Command::Baseline(BaselineCommand::Refresh(a)) => Settings::Refresh(refresh(&a)?),
        Command::Baseline(BaselineCommand::Propose(a)) => Settings::Propose(propose(a)),
        Command::Gate(a) => Settings::Gate(Box::new(gate(&a)?)),
        Command::Comment(a) => Settings::Comment(comment(a)?),
        Command::Capacity(a) => Settings::Capacity(Box::new(capacity(&a)?)),
        Command::Plan(a) => Settings::Plan(shard::plan(&a)?),
        Command::Merge(a) => Settings::Merge(Box::new(shard::merge(&a)?)),
        Command::History(a) => Settings::History(Box::new(history::history(&a)?)),
        Command::Trace(TraceCommand::Check(a)) => Settings::TraceCheck(Box::new(trace_check(&a)?)),
        Command::Trace(TraceCommand::Convert(a)) => {
            crate::error::check_outputs(&[("--out", a.out.as_path())])?;
            Settings::TraceConvert(TraceConvertSettings {
                requests: a.requests,
                out: a.out,
            })
        }
    })
}

/// `trace check`: the trace read against the scenario.
fn trace_check(a: &crate::cli::TraceCheckArgs) -> Result<TraceCheckSettings, UserError> {
    let scenario = crate::scenario::Scenario::load(&a.scenario, &[])?;
    let window = a
        .replay_window
        .as_deref()
        .map(crate::scenario::trace::Window::parse)
        .transpose()
        .map_err(|m| UserError::flag("--replay-window", m))?;
    let (speed, step) = run::replay_options(&scenario, a.speed, a.replay_step.as_deref())?;
    let replay = crate::scenario::trace::Replay::open(&a.trace, &scenario, speed, window, step)?;
    Ok(TraceCheckSettings {
        scenario: scenario.label(),
        replay,
    })
}

/// `run`: a plan and where its files go.
pub fn run(a: &RunArgs) -> Result<RunSettings, UserError> {
    shard::run(a)
}

fn judge(
    baseline: Option<&std::path::Path>,
    policy: &crate::cli::PolicyArgs,
    force: bool,
) -> Result<JudgeSettings, UserError> {
    let overrides = policy_overrides(policy)?;
    // Checked against the defaults now, so a bad value is a flag error
    // before any file is read.
    crate::policy::Policy::default()
        .apply(&overrides)
        .map_err(|m| UserError::flag("--metric/--margin/--alpha", m))?;
    // The baseline is read and checked before any load: a missing or bad
    // file must not cost a whole run first.
    if let Some(p) = baseline {
        if crate::result::capacity::CapacityResult::is_one(p) {
            crate::result::capacity::CapacityResult::read(p)?;
        } else {
            crate::result::baseline::Baseline::read(p)?;
        }
    }
    Ok(JudgeSettings {
        baseline: baseline.map(std::path::Path::to_path_buf),
        overrides,
        force,
    })
}

/// Longest id of a sticky comment's marker.
pub const MAX_COMMENT_ID: usize = 64;
