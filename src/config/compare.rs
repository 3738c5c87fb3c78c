//! `compare` and `report`: what is judged and how it is shown.

use super::*;

pub(super) fn compare(a: &CompareArgs) -> Result<CompareSettings, UserError> {
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

pub(super) fn report(a: &ReportArgs) -> Result<ReportSettings, UserError> {
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

/// `report.md` → `report.html`, beside it; nothing for a report written
/// to a device or a pipe (`/dev/stdout`), whose neighbours are not ours.
pub(super) fn html_beside(report: &std::path::Path) -> Option<std::path::PathBuf> {
    let regular = std::fs::metadata(report).map_or(true, |m| m.is_file());
    (regular && report.file_name().is_some()).then(|| report.with_extension("html"))
}
