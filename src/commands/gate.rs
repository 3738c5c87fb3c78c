//! `flora-gate gate`: run + compare + report, and inside GitHub Actions the
//! job summary, step outputs, annotations and the sticky PR comment. Result,
//! verdict and report files are written before anything that can fail
//! afterwards, and nothing after them changes the exit code: that is the
//! verdict's.

use std::io::Write;
use std::path::{Path, PathBuf};

use tokio_util::sync::CancellationToken;

use super::github::{findings, finish, publish};
use super::{judge, signal_tokens, GateSettings, GateSource, Outcome, RunSettings};
use crate::error::UserError;
use crate::gate::{Status, Verdict};
use crate::github::actions::{self, ActionsEnv};
use crate::render::report;
use crate::result::{self, Current};

pub(super) async fn gate(args: &GateSettings) -> anyhow::Result<Outcome> {
    let env = ActionsEnv::from_env();
    let mut out = std::io::stdout();
    let (signals, kill) = signal_tokens();
    let run = match &args.source {
        GateSource::Measure(run) => run,
        GateSource::File(current) => {
            if env.active {
                if let Some(t) = &env.token {
                    actions::mask(&mut out, t.expose());
                }
            }
            let mut verdict = judge(current, &args.judge)?;
            long_term(args, current, &mut verdict)?;
            return conclude(args, &env, &signals, current, &verdict, &mut out).await;
        }
    };
    let plan = &run.plan;
    if env.active {
        for t in plan.tokens.iter() {
            actions::mask(&mut out, t.token.expose());
        }
        if let Some(t) = &env.token {
            actions::mask(&mut out, t.expose());
        }
        actions::group(
            &mut out,
            &format!("flora-gate: load test of {}", plan.scenario.name),
        );
    }
    let _ = out.flush();
    if let Some(c) = &args.capacity {
        return super::capacity::gate(args, c, &env, &mut out).await;
    }
    let (current, verdict) = measure_and_judge(args, run, &signals, &kill, &env, &mut out).await?;
    conclude(args, &env, &signals, &current, &verdict, &mut out).await
}

/// Reports, then the job summary, annotations, comment and step outputs.
async fn conclude(
    args: &GateSettings,
    env: &ActionsEnv,
    signals: &CancellationToken,
    current: &Current,
    verdict: &Verdict,
    out: &mut impl Write,
) -> anyhow::Result<Outcome> {
    let markdown = write_reports(args, env, current, verdict)?;
    // From here on nothing changes the exit code.
    let found = findings(verdict);
    let comment_url = publish(args, env, signals, &found, &markdown, out).await;
    Ok(finish(args, env, verdict.verdict, comment_url, out))
}

/// Measure, write the result, judge; with `confirm`, a failing run is
/// measured once more and fails only when both agree.
async fn measure_and_judge(
    args: &GateSettings,
    run: &RunSettings,
    signals: &CancellationToken,
    kill: &CancellationToken,
    env: &ActionsEnv,
    out: &mut impl Write,
) -> Result<(Current, Verdict), UserError> {
    let plan = &run.plan;
    let measured = result::measure(plan, signals.clone(), kill.clone()).await?;
    measured.write(&run.out, run.requests_out.as_deref(), plan)?;
    eprintln!("result written to {}", run.out.display());
    if env.active {
        actions::endgroup(out);
    }
    let current = measured.current;
    if let Some(diagnosis) = current.shown().failure_diagnosis() {
        crate::output::err_line(&format!("warning: {diagnosis}"));
    }
    let mut verdict = judge(&current, &args.judge)?;
    long_term(args, &current, &mut verdict)?;
    let confirmable =
        matches!(&current, Current::Single(r) if r.state() == result::RunState::Complete);
    if !(args.confirm && verdict.verdict == Status::Fail && confirmable) || signals.is_cancelled() {
        return Ok((current, verdict));
    }
    // One failing run may be a noisy minute. The first run's result is kept
    // beside the second.
    let first = sibling(&run.out, "unconfirmed");
    current.shown().write(&first)?;
    crate::output::err_line(&format!(
        "the gate failed ({}); running once more to confirm (--confirm); the first result is in {}",
        verdict.headline,
        first.display()
    ));
    let again = result::measure(plan, signals.clone(), kill.clone()).await?;
    again.write(&run.out, run.requests_out.as_deref(), plan)?;
    let second = again.current;
    let mut v2 = judge(&second, &args.judge)?;
    long_term(args, &second, &mut v2)?;
    if v2.verdict == Status::Fail {
        v2.notes.push(format!(
            "confirmed: the first run failed too ({})",
            verdict.headline
        ));
    } else {
        v2.notes.push(format!(
            "not confirmed: the first run failed ({}) but the confirmation run did not; reported as a warning (first result: {})",
            verdict.headline,
            first.display()
        ));
        v2.verdict = v2.verdict.max(Status::Warn);
        v2.headline = format!("not confirmed by a second run: {}", verdict.headline);
    }
    Ok((second, v2))
}

/// With `--history`, the run against the history's long-term reference:
/// each drift a note, a warning past the margin (a creep is not this
/// change's failure, but it is not to be missed either).
fn long_term(
    args: &GateSettings,
    current: &Current,
    verdict: &mut Verdict,
) -> Result<(), UserError> {
    let (Some(path), Current::Single(r)) = (&args.history, current) else {
        return Ok(());
    };
    let read = crate::result::history::read(path)?;
    let Ok(record) = crate::result::history::Record::from_result(r, None, "gate") else {
        return Ok(());
    };
    for (note, past_margin) in crate::gate::trend::against_reference(&read, record) {
        if past_margin {
            verdict.verdict = verdict.verdict.max(Status::Warn);
        }
        verdict.notes.push(note);
    }
    Ok(())
}

/// The verdict and the Markdown report to files, the text report to stdout;
/// returns the Markdown for the summary and the comment.
fn write_reports(
    args: &GateSettings,
    env: &ActionsEnv,
    current: &Current,
    verdict: &Verdict,
) -> anyhow::Result<String> {
    verdict.write(&args.verdict_out)?;
    let templates = report::Templates::load(None)?;
    let mut ctx = report::context(current.shown(), Some(verdict), current.reference());
    if let Some(p) = &args.html_out {
        let html =
            super::compare::html_page(current, args.judge.baseline.as_deref(), &templates, &ctx)?;
        crate::error::write_atomic(p, html.as_bytes())?;
        eprintln!("HTML report in {}", p.display());
        ctx.html_link = super::github::html_link(env, p);
    }
    let markdown = report::render(report::Format::Markdown, &templates, &ctx)?;
    crate::error::write_atomic(&args.report_out, markdown.as_bytes())?;
    eprintln!(
        "verdict in {}, report in {}",
        args.verdict_out.display(),
        args.report_out.display()
    );
    crate::output::out(&report::render(report::Format::Text, &templates, &ctx)?);
    Ok(markdown)
}

/// `dir/result.json` → `dir/result.TAG.json`.
fn sibling(path: &Path, tag: &str) -> PathBuf {
    let stem = path
        .file_stem()
        .map_or_else(|| "result".into(), |s| s.to_string_lossy().into_owned());
    let ext = path
        .extension()
        .map_or_else(String::new, |e| format!(".{}", e.to_string_lossy()));
    path.with_file_name(format!("{stem}.{tag}{ext}"))
}
