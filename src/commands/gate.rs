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
    // Prompt lengths in tokens: one calibration for the run and its confirmation.
    let plan = &result::calibrate::calibrate(&run.plan, signals, kill).await?;
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
    confirmed(&verdict, &mut v2, &first);
    Ok((second, v2))
}

/// The second run's verdict, told what the first said: a failure both
/// runs show is confirmed; one only the first showed is a warning whose
/// headline says so (the job summary and the comment lead with it).
fn confirmed(first: &Verdict, second: &mut Verdict, first_result: &Path) {
    if second.verdict == Status::Fail {
        second.notes.push(format!(
            "confirmed: the first run failed too ({})",
            first.headline
        ));
    } else {
        second.notes.push(format!(
            "not confirmed: the first run failed ({}) but the confirmation run did not; reported as a warning (first result: {})",
            first.headline,
            first_result.display()
        ));
        second.verdict = second.verdict.max(Status::Warn);
        second.headline = format!("not confirmed by a second run: {}", first.headline);
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(status: Status, headline: &str) -> Verdict {
        Verdict {
            schema_version: crate::gate::SCHEMA_VERSION,
            kind: crate::gate::KIND.into(),
            mode: crate::gate::Mode::Baseline,
            verdict: status,
            headline: headline.into(),
            policy: crate::policy::Policy::default(),
            evidence: 5,
            checks: Vec::new(),
            notes: Vec::new(),
            hypotheses: Vec::new(),
        }
    }

    #[test]
    fn a_failure_only_the_first_run_showed_is_a_warning_that_says_so() {
        let first = verdict(Status::Fail, "TTFT p90 +14%");
        let mut second = verdict(Status::Pass, "no regression");
        confirmed(&first, &mut second, Path::new("r.unconfirmed.json"));
        assert_eq!(second.verdict, Status::Warn);
        assert_eq!(
            second.headline,
            "not confirmed by a second run: TTFT p90 +14%"
        );
        assert!(second.notes[0].contains("r.unconfirmed.json"));
        let mut both = verdict(Status::Fail, "TTFT p90 +15%");
        confirmed(&first, &mut both, Path::new("r.unconfirmed.json"));
        assert_eq!(both.verdict, Status::Fail);
        assert!(both.notes[0].starts_with("confirmed: the first run failed too"));
    }
}
