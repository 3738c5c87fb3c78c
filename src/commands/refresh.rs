//! `flora-gate baseline refresh`: runs (or result files) into a baseline,
//! refusing runs unfit to judge against, optionally appended to a rolling
//! window.

use super::{run_against_mock, signal_tokens, Outcome, RefreshSettings, RefreshSource};
use crate::error::UserError;
use crate::result::baseline::{unfit, Baseline};
use crate::result::capacity::CapacityResult;
use crate::result::{self, RunResult};

pub(super) async fn refresh(args: &RefreshSettings) -> anyhow::Result<Outcome> {
    if let RefreshSource::CapacityFile(_) | RefreshSource::CapacitySearch(_) = &args.source {
        return refresh_capacity(args).await;
    }
    if let RefreshSource::History { file, setup } = &args.source {
        return from_history(file, setup.clone(), &args.out);
    }
    // With `--append`, the baseline to extend is read (and checked) first.
    let existing = match (args.append, args.out.exists()) {
        (true, true) => Some(Baseline::read(&args.out)?),
        _ => None,
    };
    let mut results = gather(args).await?;
    if let Some(stage) = &args.gate_stage {
        // The baseline holds this stage; its policy says so to the gate.
        for (_, r) in &mut results {
            r.gate.stage = Some(stage.clone());
        }
    }
    let mut b = Baseline::from_results(&results, args.accept_bad_runs)?;
    if let Some(old) = existing {
        let before = old.runs.len();
        b = old.append(b, args.keep, &args.out)?;
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

/// A baseline of the history's nights since its newest change point.
fn from_history(
    file: &std::path::Path,
    setup: Option<String>,
    out: &std::path::Path,
) -> anyhow::Result<Outcome> {
    let read = crate::result::history::read(file)?;
    let settings = crate::gate::trend::Settings {
        setup,
        ..Default::default()
    };
    let (records, why) = crate::gate::trend::since_last_change(&read, &settings).map_err(|m| {
        UserError::invalid("history", file, None, m)
            .with_hint("`flora-gate history FILE` shows its change points")
    })?;
    let b = crate::result::history::baseline_of(&records)?;
    b.write(out)?;
    eprintln!(
        "baseline of {} run(s) of `{}` written to {}: {why}",
        b.runs.len(),
        b.provenance.scenario.name,
        out.display()
    );
    Ok(Outcome::Success)
}

/// The runs of a baseline, by name, each admitted as it comes.
async fn gather(args: &RefreshSettings) -> anyhow::Result<Vec<(String, RunResult)>> {
    let mut results: Vec<(String, RunResult)> = Vec::new();
    match &args.source {
        RefreshSource::Files(files) => {
            for p in files {
                let name = p.display().to_string();
                let r = RunResult::read(p)?;
                admit(args, &name, &r)?;
                results.push((name, r));
            }
        }
        RefreshSource::Mock {
            duration,
            warmup,
            concurrency,
        } => {
            for i in 0..args.runs {
                eprintln!("baseline run {}/{}", i + 1, args.runs);
                let r = run_against_mock(*duration, *concurrency, 1.0, *warmup).await?;
                let name = format!("run {}", i + 1);
                admit(args, &name, &r)?;
                results.push((name, r));
            }
        }
        RefreshSource::CapacityFile(_)
        | RefreshSource::CapacitySearch(_)
        | RefreshSource::History { .. } => {
            unreachable!("a capacity or history refresh does not gather runs")
        }
        RefreshSource::Plan(plan) => {
            // Prompt lengths in tokens: one calibration for every run.
            let (signals, kill) = signal_tokens();
            let plan = &result::calibrate::calibrate(plan, &signals, &kill).await?;
            for i in 0..args.runs {
                eprintln!(
                    "baseline run {}/{} against {}",
                    i + 1,
                    args.runs,
                    plan.target
                );
                let r = live_run(plan, i + 1).await?;
                let name = format!("run {}", i + 1);
                admit(args, &name, &r)?;
                results.push((name, r));
            }
        }
    }
    Ok(results)
}

/// Baseline run `n` against the target. A run the machine starved (not the
/// generator, not the target) is measured again, twice at most, as capacity
/// does; an interrupted run stops the refresh with nothing written.
async fn live_run(plan: &crate::engine::Plan, n: u32) -> Result<RunResult, UserError> {
    let (signals, kill) = signal_tokens();
    let mut retries = 0;
    let r = loop {
        let measured = result::measure(plan, signals.clone(), kill.clone()).await?;
        let r = measured.current.shown().clone();
        if !(r.self_check.starved() && retries < super::capacity::BUSY_RETRIES)
            || signals.is_cancelled()
        {
            break r;
        }
        retries += 1;
        eprintln!(
            "  other work on this machine starved the generator in run {n}; running it again ({retries} of {})",
            super::capacity::BUSY_RETRIES
        );
    };
    if r.state() == result::RunState::Partial {
        return Err(UserError::Environment {
            message: format!(
                "baseline run {n} did not finish: {}",
                r.status_reason.as_deref().unwrap_or("stopped")
            ),
            hint: Some("nothing was written; run the refresh again".into()),
        });
    }
    Ok(r)
}

/// A run that is not fit to be a baseline stops the refresh at once,
/// naming it: a baseline of failed runs would pass everything.
fn admit(args: &RefreshSettings, name: &str, r: &RunResult) -> Result<(), UserError> {
    match unfit(r) {
        Some(why) if !args.accept_bad_runs => Err(UserError::invalid(
            "result",
            name,
            None,
            format!("not fit for a baseline: {why}"),
        )
        .with_hint(if r.self_check.starved() {
            "other work on this machine starved the generator: refresh on a quieter machine (a dedicated runner), or `--accept-bad-runs` takes such runs anyway"
        } else {
            "fix the target and refresh again; `--accept-bad-runs` takes such runs anyway"
        })),
        Some(why) => {
            eprintln!("warning: {name} is taken although {why} (--accept-bad-runs)");
            Ok(())
        }
        None => Ok(()),
    }
}

/// A capacity baseline: one capacity result, given or found again with the
/// settings of the baseline it replaces; refused when the search stopped
/// early or found nothing (unless `--accept-bad-runs`).
async fn refresh_capacity(args: &RefreshSettings) -> anyhow::Result<Outcome> {
    let (name, found) = match &args.source {
        RefreshSource::CapacityFile(p) => (p.display().to_string(), CapacityResult::read(p)?),
        RefreshSource::CapacitySearch(s) => {
            let (signals, kill) = signal_tokens();
            let found = super::capacity::search(
                s,
                &signals,
                &mut super::capacity::Live::new(&signals, &kill),
            )
            .await?;
            ("the search".to_string(), found)
        }
        _ => unreachable!("only capacity sources come here"),
    };
    let unfit = match (&found.stopped, found.capacity.c_star) {
        (Some(why), _) => Some(format!("it stopped early: {why}")),
        (None, None) => Some("no level held its objectives".to_string()),
        (None, Some(_)) => None,
    };
    match unfit {
        Some(why) if !args.accept_bad_runs => {
            return Err(UserError::invalid(
                "capacity result",
                &name,
                None,
                format!("not fit for a baseline: {why}"),
            )
            .with_hint(format!(
                "`{}` is unchanged; fix the target and refresh again, or `--accept-bad-runs`",
                args.out.display()
            ))
            .into())
        }
        Some(why) => eprintln!("warning: {name} is taken although {why} (--accept-bad-runs)"),
        None => {}
    }
    crate::jsonfile::write(&args.out, &found, "capacity baseline")?;
    eprintln!(
        "capacity baseline written to {}: {}",
        args.out.display(),
        crate::render::capacity::headline(&found)
    );
    Ok(Outcome::Success)
}
