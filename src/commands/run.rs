//! `flora-gate run`: one measurement, its files and its summary.

use super::{describe_stop, signal_tokens, Outcome, RunSettings};
use crate::error::UserError;
use crate::result::shard::{self, ShardInfo};
use crate::result::{self, Current};
use crate::{gate, output, render};

pub(super) async fn run(args: &RunSettings) -> anyhow::Result<Outcome> {
    let plan = &args.plan;
    let (signals, kill) = signal_tokens();
    match &plan.load.replay {
        Some(r) => eprintln!(
            "replaying {} ({} requests of {} sessions) with {} against {} at speed {}: {}",
            r.path.display(),
            r.requests,
            r.sessions,
            plan.scenario.label(),
            plan.target,
            r.speed,
            describe_stop(&plan.load)
        ),
        None => eprintln!(
            "running {} against {} with {} users for {}",
            plan.scenario.label(),
            plan.target,
            plan.load.concurrency,
            describe_stop(&plan.load)
        ),
    }
    let mut measured = result::measure(plan, signals.clone(), kill).await?;
    if let (Some((sp, index)), Current::Single(r)) = (&args.shard, &mut measured.current) {
        r.shard = Some(ShardInfo {
            plan: sp.clone(),
            index: *index,
            late_ms: measured.late.as_secs_f64() * 1000.0,
            clock_offset_ms: measured.clock_offset_ms,
            records: shard::records_path(&args.out)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        });
    }
    // Files first: a later failure must not lose them.
    measured.write(&args.out, args.requests_out.as_deref(), plan)?;
    eprintln!("result written to {}", args.out.display());
    if args.shard.is_some() {
        if let Some((_, records)) = measured.requests.first() {
            shard::write_records(&args.out, records)?;
            eprintln!(
                "shard records written to {}",
                shard::records_path(&args.out).display()
            );
        }
    }
    if let Some(p) = &args.requests_out {
        eprintln!("requests written to {}", p.display());
    }
    output::out(&render::text::summary(measured.current.shown()));
    if let Some(e) = measured.endpoint.take() {
        eprintln!(
            "live metrics stay up for {} with the final figures (--metrics-linger; Ctrl-C ends it)",
            humantime::format_duration(e.duration())
        );
        e.linger(&signals).await;
    }
    let res = measured.current.shown();
    for h in gate::hypothesis::evaluate(res) {
        output::out(&format!(
            "hypothesis {}: {} ({})\n",
            match h.finding {
                gate::hypothesis::Finding::Supported => "SUPPORTED",
                gate::hypothesis::Finding::Refuted => "REFUTED",
                gate::hypothesis::Finding::Inconclusive => "INCONCLUSIVE",
            },
            h.statement,
            h.detail
        ));
    }
    if let Current::Duet(d) = &measured.current {
        let verdict = gate::duet::compare_duet(d, &d.candidate.gate);
        output::out(&format!(
            "duet verdict: {} — {}\n",
            verdict.verdict, verdict.headline
        ));
    }
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
    if res.state() != result::RunState::Complete {
        return Err(UserError::Environment {
            message: format!("the run did not finish: {}", res.reason()),
            hint: Some(format!("the partial result is in `{}`", args.out.display())),
        }
        .into());
    }
    Ok(Outcome::Success)
}
