//! `flora-gate compare` and `flora-gate report`: judging and showing files.

use super::{judge, CompareSettings, Outcome, ReportSettings};
use crate::result::Current;
use crate::{error, gate, output, render};

pub(super) fn compare(args: &CompareSettings) -> anyhow::Result<Outcome> {
    let current = &args.current;
    let verdict = judge(current, &args.judge)?;
    if let Some(p) = &args.out {
        verdict.write(p)?;
        eprintln!("verdict written to {}", p.display());
    }
    let templates = render::report::Templates::load(None)?;
    let ctx = render::report::context(current.shown(), Some(&verdict), current.reference());
    output::out(&render::report::render(
        render::report::Format::Text,
        &templates,
        &ctx,
    )?);
    Ok(Outcome::of(&verdict))
}

pub(super) fn report(args: &ReportSettings) -> anyhow::Result<Outcome> {
    let current = &args.current;
    let verdict = match (&args.verdict, &args.judge.baseline, current) {
        (Some(v), _, _) => Some(gate::Verdict::read(v)?),
        (None, Some(_), _) | (None, None, Current::Duet(_)) => Some(judge(current, &args.judge)?),
        (None, None, Current::Single(_)) => None,
    };
    let templates = render::report::Templates::load(args.templates.as_deref())?;
    let ctx = render::report::context(current.shown(), verdict.as_ref(), current.reference());
    let text = render::report::render(args.format, &templates, &ctx)?;
    match &args.out {
        Some(p) => {
            error::write_atomic(p, text.as_bytes())?;
            eprintln!("report written to {}", p.display());
        }
        None => output::out(&text),
    }
    Ok(Outcome::Success)
}
