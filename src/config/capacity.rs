//! `capacity`, and capacity results given to `compare`, `report` and `gate`: the search settings and objectives.

use super::*;

pub(super) fn capacity(
    a: &crate::cli::CapacityArgs,
) -> Result<crate::commands::CapacitySettings, UserError> {
    let (by, max, start) = levels(a)?;
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
    let objectives = objectives(a, &plan.scenario)?;
    Ok(crate::commands::CapacitySettings {
        plan,
        objectives,
        search: crate::result::capacity::SearchSettings {
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

/// What a level counts, the most tried and the first: users or a rate,
/// each within its caps.
fn levels(
    a: &crate::cli::CapacityArgs,
) -> Result<(crate::result::capacity::By, f64, f64), UserError> {
    use crate::result::capacity::By;
    Ok(match a.by {
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
    })
}

/// The objectives: every `--slo`, else the scenario's `[gate] slo`; at
/// least one, each a metric a probe can judge.
fn objectives(
    a: &crate::cli::CapacityArgs,
    scenario: &crate::scenario::Scenario,
) -> Result<Vec<crate::policy::slo::Objective>, UserError> {
    let mut objectives = Vec::new();
    for s in &a.slo {
        let (k, v) = slo_pair(s)
            .ok()
            .filter(|(_, v)| v.is_finite() && *v >= 0.0)
            .ok_or_else(|| slo_error(s))?;
        crate::policy::slo::check_metric(&k).map_err(|m| UserError::flag("--slo", m))?;
        objectives.push(crate::policy::slo::Objective {
            metric: k,
            limit: v,
        });
    }
    if objectives.is_empty() {
        for (k, v) in &scenario.gate.slo {
            crate::policy::slo::check_metric(k).map_err(|m| {
                UserError::flag("--slo", format!("the scenario's `[gate] slo`: {m}"))
            })?;
            objectives.push(crate::policy::slo::Objective {
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
    Ok(objectives)
}

/// The margin a capacity must fall by to fail: `--margin`, or the policy's default.
pub(super) fn capacity_margin(policy: &crate::cli::PolicyArgs) -> Result<f64, UserError> {
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

pub(super) fn compare_capacity(
    a: &CompareArgs,
) -> Result<crate::commands::CompareCapacitySettings, UserError> {
    use crate::result::capacity::CapacityResult;
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

pub(super) fn report_capacity(
    a: &ReportArgs,
) -> Result<crate::commands::ReportCapacitySettings, UserError> {
    use crate::result::capacity::CapacityResult;
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

/// `gate` against a baseline capacity: the baseline's search (objectives,
/// levels, probe lengths) repeated on the target of this run.
pub(super) fn capacity_gate(
    a: &GateArgs,
    path: &std::path::Path,
) -> Result<crate::commands::CapacityGate, UserError> {
    let baseline = crate::result::capacity::CapacityResult::read(path)?;
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
            objectives.push(crate::policy::slo::Objective { metric, limit });
        }
        if objectives != baseline.objectives {
            return Err(refuse(
                "--slo",
                &format!(
                    "differs from the baseline's objectives ({})",
                    crate::policy::slo::Objective::labels(&baseline.objectives)
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
