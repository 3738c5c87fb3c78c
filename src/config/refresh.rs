//! `baseline refresh` and `baseline propose`.

use super::*;

pub(super) fn refresh(a: &RefreshArgs) -> Result<RefreshSettings, UserError> {
    if a.runs == 0 || a.runs > 100 {
        return Err(UserError::flag("--runs", "must be between 1 and 100"));
    }
    crate::error::check_outputs(&[("--out", a.out.as_path())])?;
    if let Some(h) = &a.since_change_point {
        return since_change_point(a, h);
    }
    use crate::result::capacity::CapacityResult;
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

/// `--since-change-point HISTORY`: the baseline is the history's nights
/// since its newest change point; nothing runs.
fn since_change_point(a: &RefreshArgs, h: &std::path::Path) -> Result<RefreshSettings, UserError> {
    let file = crate::result::history::file_of(h);
    if !file.exists() {
        return Err(UserError::flag(
            "--since-change-point",
            format!("`{}` does not exist", file.display()),
        ));
    }
    crate::error::check_not_inputs(&[("--out", a.out.as_path())], std::slice::from_ref(&file))?;
    Ok(RefreshSettings {
        source: RefreshSource::History {
            file,
            setup: a.setup.clone(),
        },
        gate_stage: None,
        runs: 0,
        out: a.out.clone(),
        append: false,
        keep: 0,
        accept_bad_runs: false,
    })
}

pub(super) fn propose(a: ProposeArgs) -> ProposeSettings {
    ProposeSettings {
        baseline: a.baseline,
        branch: a.branch,
        base: a.base,
        repo: a.repo,
        title: a.title,
    }
}
