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
    let text = match args.format {
        render::report::Format::Html => {
            html_page(current, args.judge.baseline.as_deref(), &templates, &ctx)?
        }
        f => render::report::render(f, &templates, &ctx)?,
    };
    match &args.out {
        Some(p) => {
            error::write_atomic(p, text.as_bytes())?;
            eprintln!("report written to {}", p.display());
        }
        None => output::out(&text),
    }
    Ok(Outcome::Success)
}

/// The HTML page of a run or a duet, with the baseline (or the duet's
/// reference) drawn against it.
pub(super) fn html_page(
    current: &Current,
    baseline: Option<&std::path::Path>,
    templates: &render::report::Templates,
    ctx: &render::report::ReportContext,
) -> anyhow::Result<String> {
    let baseline = match (baseline, current) {
        (Some(p), Current::Single(_)) => Some(crate::result::baseline::Baseline::read(p)?),
        _ => None,
    };
    let (against, duet) = match current {
        Current::Duet(d) => (
            render::html::charts::Against {
                baseline: None,
                reference: Some(&d.reference),
            },
            true,
        ),
        Current::Single(_) => (
            render::html::charts::Against {
                baseline: baseline.as_ref(),
                reference: None,
            },
            false,
        ),
    };
    let page = render::html::run_page(current.shown(), ctx, &against, duet);
    Ok(render::report::html(templates, &page)?)
}
