//! `flora-gate capacity`: probe levels of users (double, then bisect), each
//! measured through the one pipeline and extended while its evidence is
//! unclear, and write what was found with every probe's figures.

use std::time::Instant;

use super::{signal_tokens, CapacitySettings, CompareCapacitySettings, Outcome};
use crate::error::UserError;
use crate::gate::capacity::{self, CapacityResult, Probe, Search};
use crate::gate::slo::{self, Decision, SloCheck};
use crate::result::{self, RunState};
use crate::scenario::LoadSpec;

pub(super) async fn capacity(s: &CapacitySettings) -> anyhow::Result<Outcome> {
    let mut outputs = vec![("--out", s.out.as_path())];
    if let Some(p) = &s.report_out {
        outputs.push(("--report-out", p.as_path()));
    }
    crate::error::check_outputs(&outputs)?;
    let started = Instant::now();
    let (signals, kill) = signal_tokens();
    let mut search = Search::new(s.start, s.max_users, s.tolerance);
    let mut probes: Vec<Probe> = Vec::new();
    let mut requests = 0u64;
    let mut stopped = None;
    eprintln!(
        "capacity of {} at {}: {}",
        s.plan.scenario.label(),
        s.plan.target,
        s.objectives
            .iter()
            .map(|o| format!("{} ≤ {}", o.metric, o.limit))
            .collect::<Vec<_>>()
            .join(", ")
    );
    'levels: while let Some(users) = search.next() {
        let mut measure_for = s.probe;
        for extension in 0..=s.max_extensions {
            if signals.is_cancelled() {
                stopped = Some("interrupted by a signal".to_string());
                break 'levels;
            }
            let mut plan = s.plan.clone();
            plan.load = LoadSpec {
                warmup: s.warmup,
                seed: s.plan.load.seed,
                ..LoadSpec::fixed(users, s.warmup + measure_for)
            };
            let measured = result::measure(&plan, signals.clone(), kill.clone()).await?;
            let r = measured.current.shown();
            requests += r.totals.requests;
            if r.saturated() {
                stopped = Some(format!(
                    "the load generator was saturated at {users} users: the client, not the server, was the limit; the probe does not count"
                ));
                break 'levels;
            }
            let mut checks = capacity::judge(r, &s.objectives);
            match r.state() {
                RunState::Partial => {
                    stopped = Some(format!("the probe at {users} users was interrupted"));
                    break 'levels;
                }
                // The circuit breaker stopped it: the level clearly does not hold.
                RunState::Aborted => checks.push(SloCheck {
                    metric: "completed".into(),
                    limit: 1.0,
                    estimate: Some(0.0),
                    low: None,
                    high: None,
                    decision: Decision::Fail,
                }),
                RunState::Complete => {}
            }
            let decision = slo::combine(&checks);
            eprintln!(
                "  {users} users, {}: {}",
                humantime::format_duration(measure_for),
                describe(&checks, decision)
            );
            if decision == Decision::Inconclusive && extension < s.max_extensions {
                measure_for *= 2;
                eprintln!(
                    "  {users} users inconclusive → extended to {}",
                    humantime::format_duration(measure_for)
                );
                continue;
            }
            probes.push(capacity::probe(users, extension, r, checks));
            search.record(users, decision);
            break;
        }
    }
    let found = search.outcome(&probes);
    let out = CapacityResult {
        schema_version: capacity::SCHEMA_VERSION,
        kind: capacity::KIND.into(),
        scenario: result::ScenarioRef {
            name: s.plan.scenario.name.clone(),
            origin: s.plan.scenario.origin.clone(),
            sha256: s.plan.scenario.sha256.clone(),
        },
        target: crate::target::redact_userinfo(&s.plan.target),
        objectives: s.objectives.clone(),
        capacity: found.clone(),
        probes,
        elapsed_s: started.elapsed().as_secs_f64(),
        requests,
        stopped: stopped.clone(),
    };
    crate::jsonfile::write(&s.out, &out, "capacity result")?;
    eprintln!("capacity written to {}", s.out.display());
    if let Some(p) = &s.report_out {
        crate::error::write_atomic(p, crate::render::capacity::markdown(&out).as_bytes())?;
        eprintln!("report written to {}", p.display());
    }
    crate::output::out(&crate::render::capacity::text(&out));
    if let Some(why) = stopped {
        return Err(UserError::Environment {
            message: format!("the search stopped early: {why}"),
            hint: Some(format!("what was measured is in `{}`", s.out.display())),
        }
        .into());
    }
    Ok(if found.c_star.is_none() {
        Outcome::Regression
    } else {
        Outcome::Success
    })
}

fn describe(checks: &[SloCheck], decision: Decision) -> String {
    let num = |v: Option<f64>| {
        v.map_or("-".to_string(), |x| {
            if x.is_infinite() {
                "∞".into()
            } else {
                format!("{x:.3}")
            }
        })
    };
    let parts: Vec<String> = checks
        .iter()
        .map(|c| {
            format!(
                "{} {} [{}, {}] vs {}",
                c.metric,
                num(c.estimate),
                num(c.low),
                num(c.high),
                c.limit
            )
        })
        .collect();
    format!(
        "{} ({})",
        crate::render::capacity::decision_word(decision),
        parts.join("; ")
    )
}

/// `compare` of two capacity results: one line, the verdict, exit 1 on a regression.
pub(super) fn compare(s: &CompareCapacitySettings) -> anyhow::Result<Outcome> {
    let v = capacity::compare(&s.baseline, &s.current, s.margin).map_err(|m| {
        UserError::Environment {
            message: m,
            hint: None,
        }
    })?;
    if let Some(p) = &s.out {
        crate::jsonfile::write(p, &v, "capacity verdict")?;
        eprintln!("verdict written to {}", p.display());
    }
    crate::output::out(&format!(
        "flora-gate: {} — {} (margin {:.0}%)\n",
        v.verdict.to_string().to_uppercase(),
        v.headline,
        v.margin * 100.0
    ));
    Ok(if v.verdict == crate::gate::Status::Fail {
        Outcome::Regression
    } else {
        Outcome::Success
    })
}
