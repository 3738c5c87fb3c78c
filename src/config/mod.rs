//! From arguments to validated settings: every bad flag or file becomes a
//! [`UserError`] here, before anything runs. With `cli.rs` this is the
//! command-line layer: the only code that knows clap's structs or names a
//! flag in a validation error.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use crate::cli::{
    BaselineCommand, Cli, Command, CommentArgs, CompareArgs, DemoArgs, FormatArg, GateArgs,
    MockArgs, MockBehaviour, ProposeArgs, RefreshArgs, ReportArgs, RunArgs,
};
use crate::commands::{
    CommentMode, CommentSettings, CompareSettings, DemoSettings, GateSettings, GateSource,
    JudgeSettings, MockSettings, ProposeSettings, RefreshSettings, RefreshSource, ReportSettings,
    RunSettings, Settings, Sticky,
};
use crate::error::UserError;
use crate::mock::{FaultRates, MockConfig};
use crate::result::Current;
use crate::scenario::parse_duration;
use crate::tokens;

mod plan;
mod shard;

pub use crate::scenario::caps::{MAX_DURATION, MAX_REQUESTS, MAX_USERS as MAX_CONCURRENCY};
pub use plan::{parse_vars, run_args, run_plan};

fn duration_flag(flag: &'static str, s: &str) -> Result<Duration, UserError> {
    parse_duration(s).map_err(|m| UserError::flag(flag, m))
}

/// Validate mock settings.
pub fn mock_config(
    b: &MockBehaviour,
    tokens_file: Option<&std::path::Path>,
) -> Result<MockConfig, UserError> {
    let non_negative = |flag: &'static str, v: f64| {
        if v.is_finite() && v >= 0.0 {
            Ok(Duration::from_secs_f64(v / 1000.0))
        } else {
            Err(UserError::flag(
                flag,
                format!("`{v}` must be a number of milliseconds, 0 or more"),
            ))
        }
    };
    if !(b.slowdown.is_finite() && b.slowdown > 0.0) {
        return Err(UserError::flag(
            "--slowdown",
            "must be a positive factor, like 1.3",
        ));
    }
    let faults: FaultRates = b
        .error_rate
        .parse()
        .map_err(|m: String| UserError::flag("--error-rate", m))?;
    let tokens = match tokens_file {
        Some(p) => Some(
            tokens::load(p)?
                .into_iter()
                .map(|t| t.token.expose().to_string())
                .collect::<HashSet<_>>(),
        ),
        None => None,
    };
    Ok(MockConfig {
        ttft: non_negative("--ttft-ms", b.ttft_ms)?,
        itl: non_negative("--itl-ms", b.itl_ms)?,
        output_tokens: b.output_tokens,
        jitter: non_negative("--jitter-ms", b.jitter_ms)?,
        slowdown: b.slowdown,
        max_concurrency: (b.max_concurrency > 0).then_some(b.max_concurrency),
        faults,
        retry_after_s: b.retry_after,
        hang: Duration::from_secs(120),
        tokens,
        seed: b.seed,
        no_done: b.no_done,
        itl_per_stream: non_negative("--itl-per-stream-ms", b.itl_per_stream_ms)?,
        ttft_per_stream: non_negative("--ttft-per-stream-ms", b.ttft_per_stream_ms)?,
        rate_limit: match b.rate_limit {
            None => None,
            Some(r) if r.is_finite() && r > 0.0 => Some(r),
            Some(r) => {
                return Err(UserError::flag(
                    "--rate-limit",
                    format!("`{r}` must be a positive number of requests per second"),
                ))
            }
        },
        db_pool: match b.db_pool {
            Some(0) => {
                return Err(UserError::flag(
                    "--db-pool",
                    "a pool needs at least 1 connection",
                ))
            }
            other => other,
        },
        db_time: non_negative("--db-ms", b.db_ms)?,
        prefill_per_char: if b.prefill_us_per_char.is_finite() && b.prefill_us_per_char >= 0.0 {
            Duration::from_secs_f64(b.prefill_us_per_char / 1e6)
        } else {
            return Err(UserError::flag(
                "--prefill-us-per-char",
                format!(
                    "`{}` must be a number of microseconds, 0 or more",
                    b.prefill_us_per_char
                ),
            ));
        },
        kv_slots: match b.kv_slots {
            Some(0) => {
                return Err(UserError::flag(
                    "--kv-slots",
                    "the cache needs room for at least 1 stream",
                ))
            }
            other => other,
        },
        preempt: non_negative("--preempt-ms", b.preempt_ms)?,
        ignore_disconnect: b.ignore_disconnect,
        event_ids: b.event_ids,
        resume_replays: b.resume_replays,
        drift_per_min: match &b.drift {
            None => 0.0,
            Some(d) => crate::mock::parse_drift(d).map_err(|m| UserError::flag("--drift", m))?,
        },
        burst: b
            .burst
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(|m: String| UserError::flag("--burst", m))?,
    })
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
        Command::Compare(a) if crate::gate::capacity::CapacityResult::is_one(&a.current) => {
            Settings::CompareCapacity(Box::new(compare_capacity(&a)?))
        }
        Command::Compare(a) => Settings::Compare(compare(&a)?),
        Command::Report(a) if crate::gate::capacity::CapacityResult::is_one(&a.current) => {
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
    })
}

fn capacity(a: &crate::cli::CapacityArgs) -> Result<crate::commands::CapacitySettings, UserError> {
    use crate::gate::capacity::By;
    let (by, max, start) = match a.by {
        crate::cli::CapacityBy::Users => {
            if a.max_users == 0 || a.max_users > MAX_CONCURRENCY {
                return Err(UserError::flag(
                    "--max-users",
                    format!("must be between 1 and {MAX_CONCURRENCY}"),
                ));
            }
            let start = a.start.unwrap_or(8.0);
            if start.fract() != 0.0 || start < 1.0 || start > f64::from(a.max_users) {
                return Err(UserError::flag(
                    "--start",
                    format!(
                        "must be a whole number of users from 1 to --max-users ({})",
                        a.max_users
                    ),
                ));
            }
            (By::Users, f64::from(a.max_users), start)
        }
        crate::cli::CapacityBy::Rate => {
            let cap = crate::scenario::caps::MAX_RATE;
            if !(a.max_rate.is_finite() && (0.1..=cap).contains(&a.max_rate)) {
                return Err(UserError::flag(
                    "--max-rate",
                    format!("must be from 0.1 to {cap} per second"),
                ));
            }
            let start = a.start.unwrap_or(1.0_f64.min(a.max_rate));
            if !(start.is_finite() && start >= 0.1 && start <= a.max_rate) {
                return Err(UserError::flag(
                    "--start",
                    format!(
                        "must be a rate from 0.1 to --max-rate ({}) per second",
                        a.max_rate
                    ),
                ));
            }
            (By::Rate, a.max_rate, start)
        }
    };
    if !(a.tolerance.is_finite() && a.tolerance > 0.0 && a.tolerance < 1.0) {
        return Err(UserError::flag(
            "--tolerance",
            "must be a fraction above 0 and below 1, like 0.1",
        ));
    }
    let probe = duration_flag("--probe", &a.probe)?;
    if probe < Duration::from_secs(1) {
        return Err(UserError::flag("--probe", "a probe needs at least 1s"));
    }
    let warmup = duration_flag("--warmup", &a.warmup)?;
    if a.max_extensions > 6 {
        return Err(UserError::flag(
            "--max-extensions",
            "at most 6 (each doubles the probe)",
        ));
    }
    let run = RunArgs {
        concurrency: Some(1),
        duration: Some(a.probe.clone()),
        warmup: Some(a.warmup.clone()),
        seed: a.seed,
        vars: a.vars.clone(),
        out: a.out.clone(),
        ..run_args(a.scenario.clone(), a.target.clone(), a.tokens.clone())
    };
    let plan = run_plan(&run)?;
    let mut objectives = Vec::new();
    for s in &a.slo {
        let (k, v) = slo_pair(s)
            .ok()
            .filter(|(_, v)| v.is_finite() && *v >= 0.0)
            .ok_or_else(|| slo_error(s))?;
        crate::gate::slo::check_metric(&k).map_err(|m| UserError::flag("--slo", m))?;
        objectives.push(crate::gate::slo::Objective {
            metric: k,
            limit: v,
        });
    }
    if objectives.is_empty() {
        for (k, v) in &plan.scenario.gate.slo {
            crate::gate::slo::check_metric(k).map_err(|m| {
                UserError::flag("--slo", format!("the scenario's `[gate] slo`: {m}"))
            })?;
            objectives.push(crate::gate::slo::Objective {
                metric: k.clone(),
                limit: *v,
            });
        }
    }
    if objectives.is_empty() {
        return Err(UserError::flag(
            "--slo",
            "no objective: give `--slo ttft_p90=800` (and more), or `[gate] slo` in the scenario",
        ));
    }
    Ok(crate::commands::CapacitySettings {
        plan,
        objectives,
        search: crate::gate::capacity::SearchSettings {
            by,
            start,
            max,
            tolerance: a.tolerance,
            probe_s: probe.as_secs_f64(),
            warmup_s: warmup.as_secs_f64(),
            max_extensions: a.max_extensions,
        },
        out: a.out.clone(),
        report_out: a.report_out.clone(),
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
        if crate::gate::capacity::CapacityResult::is_one(p) {
            crate::gate::capacity::CapacityResult::read(p)?;
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

/// The margin a capacity must fall by to fail: `--margin`, or the policy's default.
fn capacity_margin(policy: &crate::cli::PolicyArgs) -> Result<f64, UserError> {
    let margin = policy
        .margin
        .unwrap_or(crate::policy::Policy::default().margin);
    if !(margin.is_finite() && (0.0..1.0).contains(&margin)) {
        return Err(UserError::flag(
            "--margin",
            "must be a fraction from 0 to below 1",
        ));
    }
    Ok(margin)
}

fn compare_capacity(
    a: &CompareArgs,
) -> Result<crate::commands::CompareCapacitySettings, UserError> {
    use crate::gate::capacity::CapacityResult;
    if let Some(p) = &a.out {
        crate::error::check_outputs(&[("--out", p.as_path())])?;
    }
    let path = a.baseline.as_deref().ok_or_else(|| {
        UserError::flag(
            "--baseline",
            "a capacity result is compared with a baseline capacity result",
        )
    })?;
    let margin = capacity_margin(&a.policy)?;
    Ok(crate::commands::CompareCapacitySettings {
        baseline: CapacityResult::read(path)?,
        current: CapacityResult::read(&a.current)?,
        margin,
        out: a.out.clone(),
    })
}

fn compare(a: &CompareArgs) -> Result<CompareSettings, UserError> {
    if let Some(p) = &a.out {
        crate::error::check_outputs(&[("--out", p.as_path())])?;
    }
    let current = Current::read(&a.current)?;
    if matches!(current, Current::Single(_)) && a.baseline.is_none() {
        return Err(
            UserError::flag("--baseline", "a single run needs a baseline to compare with")
                .with_hint("pass `--baseline baselines/NAME.json`, or run in duet mode with `run --baseline-target`"),
        );
    }
    Ok(CompareSettings {
        current,
        judge: judge(a.baseline.as_deref(), &a.policy, a.force)?,
        out: a.out.clone(),
    })
}

fn report_capacity(a: &ReportArgs) -> Result<crate::commands::ReportCapacitySettings, UserError> {
    use crate::gate::capacity::CapacityResult;
    if let Some(p) = &a.out {
        crate::error::check_outputs(&[("--out", p.as_path())])?;
    }
    if a.verdict.is_some() || a.templates.is_some() {
        return Err(UserError::flag(
            if a.verdict.is_some() {
                "--verdict"
            } else {
                "--templates"
            },
            "does not apply to a capacity result (its report is judged from `--baseline`)",
        ));
    }
    let margin = crate::policy::Policy::default().margin;
    Ok(crate::commands::ReportCapacitySettings {
        current: CapacityResult::read(&a.current)?,
        baseline: a
            .baseline
            .as_deref()
            .map(|p| CapacityResult::read(p).map(|b| (b, margin)))
            .transpose()?,
        format: match a.format {
            FormatArg::Markdown => crate::render::report::Format::Markdown,
            FormatArg::Text => crate::render::report::Format::Text,
            FormatArg::Json => crate::render::report::Format::Json,
            FormatArg::Html => crate::render::report::Format::Html,
        },
        out: a.out.clone(),
    })
}

fn report(a: &ReportArgs) -> Result<ReportSettings, UserError> {
    if let Some(p) = &a.out {
        crate::error::check_outputs(&[("--out", p.as_path())])?;
    }
    Ok(ReportSettings {
        current: Current::read(&a.current)?,
        verdict: a.verdict.clone(),
        judge: JudgeSettings {
            baseline: a.baseline.clone(),
            overrides: crate::policy::PolicyFile::default(),
            force: a.force,
        },
        format: match a.format {
            FormatArg::Markdown => crate::render::report::Format::Markdown,
            FormatArg::Text => crate::render::report::Format::Text,
            FormatArg::Json => crate::render::report::Format::Json,
            FormatArg::Html => crate::render::report::Format::Html,
        },
        templates: a.templates.clone(),
        out: a.out.clone(),
    })
}

fn refresh(a: &RefreshArgs) -> Result<RefreshSettings, UserError> {
    if a.runs == 0 || a.runs > 100 {
        return Err(UserError::flag("--runs", "must be between 1 and 100"));
    }
    crate::error::check_outputs(&[("--out", a.out.as_path())])?;
    use crate::gate::capacity::CapacityResult;
    let capacities = a.from.iter().filter(|p| CapacityResult::is_one(p)).count();
    let refreshes_capacity =
        capacities > 0 || (a.from.is_empty() && CapacityResult::is_one(&a.out));
    if refreshes_capacity {
        for (flag, given) in [
            ("--append", a.append),
            ("--mock", a.mock),
            ("--concurrency", a.concurrency.is_some()),
            ("--duration", a.duration.is_some()),
            ("--stages", a.stages.is_some()),
            ("--gate-stage", a.gate_stage.is_some()),
        ] {
            if given {
                return Err(UserError::flag(
                    flag,
                    "does not apply to a capacity baseline (one search, repeated with its own settings)",
                ));
            }
        }
    }
    let source = if capacities > 0 {
        if a.from.len() > 1 {
            return Err(UserError::flag(
                "RESULT",
                "a capacity baseline is one capacity result; give exactly one (run results and capacities do not mix)",
            ));
        }
        RefreshSource::CapacityFile(a.from[0].clone())
    } else if !a.from.is_empty() {
        RefreshSource::Files(a.from.clone())
    } else if a.mock {
        RefreshSource::Mock {
            duration: match &a.duration {
                Some(d) => duration_flag("--duration", d)?,
                None => crate::commands::DURATION,
            },
            warmup: a
                .warmup
                .as_deref()
                .map(|w| duration_flag("--warmup", w))
                .transpose()?,
            concurrency: a.concurrency.unwrap_or(crate::commands::CONCURRENCY),
        }
    } else {
        let scenario = a.scenario.clone().ok_or_else(|| {
            UserError::flag(
                "--scenario",
                "give a scenario to run, result files to combine, or `--mock`",
            )
        })?;
        let args = RunArgs {
            concurrency: a.concurrency,
            duration: a.duration.clone(),
            warmup: a.warmup.clone(),
            vars: a.vars.clone(),
            out: a.out.clone(),
            no_progress: false,
            stages: a.stages.clone(),
            model: a.model.clone(),
            ..run_args(scenario, a.target.clone(), a.tokens.clone())
        };
        if refreshes_capacity {
            let old = CapacityResult::read(&a.out)?;
            RefreshSource::CapacitySearch(Box::new(crate::commands::CapacitySettings {
                plan: run_plan(&RunArgs {
                    concurrency: Some(1),
                    no_progress: true,
                    ..args
                })?,
                objectives: old.objectives,
                search: old.search,
                out: a.out.clone(),
                report_out: None,
            }))
        } else {
            RefreshSource::Plan(Box::new(run_plan(&args)?))
        }
    };
    Ok(RefreshSettings {
        source,
        gate_stage: a.gate_stage.clone(),
        runs: a.runs,
        out: a.out.clone(),
        append: a.append,
        keep: a.keep as usize,
        accept_bad_runs: a.accept_bad_runs,
    })
}

fn propose(a: ProposeArgs) -> ProposeSettings {
    ProposeSettings {
        baseline: a.baseline,
        branch: a.branch,
        base: a.base,
        repo: a.repo,
        title: a.title,
    }
}

fn gate(a: &GateArgs) -> Result<GateSettings, UserError> {
    if a.baseline.is_none() && a.run.baseline_target.is_none() {
        return Err(UserError::flag(
            "--baseline",
            "the gate needs a baseline file or `--baseline-target`",
        ));
    }
    if a.run.plan.is_some() {
        return Err(UserError::flag(
            "--plan",
            "a gate measures in one process; run shards with `run --plan --shard`, `merge` them, then `gate --result` the merged result",
        ));
    }
    let capacity = match a.baseline.as_deref() {
        Some(p) if a.result.is_none() && crate::gate::capacity::CapacityResult::is_one(p) => {
            Some(Box::new(capacity_gate(a, p)?))
        }
        _ => None,
    };
    let mut outputs = vec![
        ("--verdict-out", a.verdict_out.as_path()),
        ("--report-out", a.report_out.as_path()),
    ];
    let html_out = a.html_out.clone().or_else(|| html_beside(&a.report_out));
    if let Some(p) = &html_out {
        outputs.push(("--html-out", p.as_path()));
    }
    let (source, result) = match &a.result {
        Some(path) => {
            let r = &a.run;
            let mut flags = measuring_flags(r);
            flags.extend([
                ("--scenario", r.scenario.is_some()),
                ("--target", r.target.is_some()),
                ("--confirm", a.confirm),
            ]);
            refuse_any(&flags, |flag| {
                UserError::flag(
                    flag,
                    "does not apply with `--result`: the result is judged as it is",
                )
            })?;
            (
                GateSource::File(Box::new(Current::read(path)?)),
                path.clone(),
            )
        }
        None => {
            outputs.push(("--out", a.run.out.as_path()));
            if let Some(p) = &a.run.requests_out {
                outputs.push(("--requests-out", p.as_path()));
            }
            let run = match &capacity {
                // The capacity search builds its own plans from this one.
                Some(c) => RunSettings {
                    plan: c.search.plan.clone(),
                    out: a.run.out.clone(),
                    requests_out: None,
                    shard: None,
                },
                None => run(&a.run)?,
            };
            (GateSource::Measure(Box::new(run)), a.run.out.clone())
        }
    };
    crate::error::check_outputs(&outputs)?;
    Ok(GateSettings {
        source,
        result,
        judge: judge(a.baseline.as_deref(), &a.policy, a.force)?,
        verdict_out: a.verdict_out.clone(),
        report_out: a.report_out.clone(),
        html_out,
        comment: match a.comment {
            crate::cli::CommentMode::Auto => CommentMode::Auto,
            crate::cli::CommentMode::Always => CommentMode::Always,
            crate::cli::CommentMode::Never => CommentMode::Never,
        },
        sticky: Sticky {
            id: comment_id("--comment-id", a.comment_id.clone())?,
            author: a.comment_author.clone(),
        },
        fail_on_regression: a.fail_on_regression,
        confirm: a.confirm,
        capacity,
    })
}

/// The flags of one measurement, and whether `r` gives each.
fn measuring_flags(r: &RunArgs) -> Vec<(&'static str, bool)> {
    vec![
        ("--baseline-target", r.baseline_target.is_some()),
        ("--concurrency", r.concurrency.is_some()),
        ("--duration", r.duration.is_some()),
        ("--requests", r.requests.is_some()),
        ("--stages", r.stages.is_some()),
        ("--requests-out", r.requests_out.is_some()),
    ]
}

/// The first flag given of `flags`, as the error `refuse` makes of it.
fn refuse_any(
    flags: &[(&'static str, bool)],
    refuse: impl Fn(&'static str) -> UserError,
) -> Result<(), UserError> {
    match flags.iter().find(|(_, given)| *given) {
        Some((flag, _)) => Err(refuse(flag)),
        None => Ok(()),
    }
}

/// `gate` against a baseline capacity: the baseline's search (objectives,
/// levels, probe lengths) repeated on the target of this run.
fn capacity_gate(
    a: &GateArgs,
    path: &std::path::Path,
) -> Result<crate::commands::CapacityGate, UserError> {
    let baseline = crate::gate::capacity::CapacityResult::read(path)?;
    let refuse = |flag: &'static str, why: &str| {
        UserError::flag(flag, format!("{why} (the baseline `{}` is a capacity)", path.display()))
            .with_hint("a capacity gate repeats the baseline's own search; change it with `flora-gate capacity` and `baseline refresh`")
    };
    let r = &a.run;
    let mut flags = measuring_flags(r);
    flags.push(("--confirm", a.confirm));
    refuse_any(&flags, |flag| {
        refuse(flag, "does not apply to a capacity gate")
    })?;
    if !a.policy.slo.is_empty() {
        let mut objectives = Vec::new();
        for s in &a.policy.slo {
            let (metric, limit) = slo_pair(s).map_err(|_| slo_error(s))?;
            objectives.push(crate::gate::slo::Objective { metric, limit });
        }
        if objectives != baseline.objectives {
            return Err(refuse(
                "--slo",
                &format!(
                    "differs from the baseline's objectives ({})",
                    crate::gate::slo::Objective::labels(&baseline.objectives)
                ),
            ));
        }
    }
    let margin = capacity_margin(&a.policy)?;
    let run = RunArgs {
        concurrency: Some(1),
        no_progress: true,
        ..r.clone()
    };
    Ok(crate::commands::CapacityGate {
        search: crate::commands::CapacitySettings {
            plan: run_plan(&run)?,
            objectives: baseline.objectives.clone(),
            search: baseline.search.clone(),
            out: r.out.clone(),
            report_out: Some(a.report_out.clone()),
        },
        baseline,
        margin,
    })
}

fn comment(a: CommentArgs) -> Result<CommentSettings, UserError> {
    Ok(CommentSettings {
        body: a.body,
        sticky: Sticky {
            id: comment_id("--id", a.id)?,
            author: a.author,
        },
        pr: a.pr,
        repo: a.repo,
        workflow_run: a.workflow_run,
    })
}

/// Longest id of a sticky comment's marker.
pub const MAX_COMMENT_ID: usize = 64;

/// A comment id: letters, digits, `.`, `_`, `-`, at most [`MAX_COMMENT_ID`]
/// characters, so the marker is one short HTML comment and inert in Markdown.
fn comment_id(flag: &'static str, id: String) -> Result<String, UserError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_COMMENT_ID
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(id)
    } else {
        Err(UserError::flag(
            flag,
            format!("a comment id is 1 to {MAX_COMMENT_ID} letters, digits, `.`, `_` or `-`"),
        ))
    }
}

fn mock(a: &MockArgs) -> Result<MockSettings, UserError> {
    let ip: std::net::IpAddr = a
        .host
        .parse()
        .map_err(|_| UserError::flag("--host", format!("`{}` is not an IP address", a.host)))?;
    Ok(MockSettings {
        config: mock_config(&a.behaviour, a.tokens.as_deref())?,
        addr: SocketAddr::new(ip, a.port),
    })
}

/// `report.md` → `report.html`, beside it; nothing for a report written
/// to a device or a pipe (`/dev/stdout`), whose neighbours are not ours.
fn html_beside(report: &std::path::Path) -> Option<std::path::PathBuf> {
    let regular = std::fs::metadata(report).map_or(true, |m| m.is_file());
    (regular && report.file_name().is_some()).then(|| report.with_extension("html"))
}

fn demo(a: &DemoArgs) -> Result<DemoSettings, UserError> {
    let duration = duration_flag("--duration", &a.duration)?;
    if duration < Duration::from_secs(2) {
        return Err(UserError::flag("--duration", "the demo needs at least 2s"));
    }
    if a.concurrency == 0 || a.concurrency > 256 {
        return Err(UserError::flag(
            "--concurrency",
            "the demo takes 1 to 256 users",
        ));
    }
    if !(a.slowdown.is_finite() && a.slowdown > 0.0) {
        return Err(UserError::flag(
            "--slowdown",
            "must be a positive factor, like 1.3",
        ));
    }
    let mut outputs = Vec::new();
    if let Some(p) = &a.out {
        outputs.push(("--out", p.as_path()));
    }
    if let Some(p) = &a.html {
        outputs.push(("--html", p.as_path()));
    }
    crate::error::check_outputs(&outputs)?;
    Ok(DemoSettings {
        duration,
        concurrency: a.concurrency,
        slowdown: a.slowdown,
        out: a.out.clone(),
        html: a.html.clone(),
    })
}
