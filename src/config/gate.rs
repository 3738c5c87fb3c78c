//! `gate` and `comment`: the measuring flags, the sticky comment.

use super::*;

pub(super) fn gate(a: &GateArgs) -> Result<GateSettings, UserError> {
    if a.baseline.is_none() && a.run.baseline_target.is_none() {
        return Err(UserError::flag(
            "--baseline",
            "the gate needs a baseline file or `--baseline-target`",
        ));
    }
    if a.run.plan.is_some() {
        return Err(UserError::flag(
            "--plan",
            "a gate measures in one process; run shards with `run --plan --shard`, `merge` them, then `gate --result` the merged result",
        ));
    }
    let capacity = match a.baseline.as_deref() {
        Some(p) if a.result.is_none() && crate::result::capacity::CapacityResult::is_one(p) => {
            Some(Box::new(capacity_gate(a, p)?))
        }
        _ => None,
    };
    let mut outputs = vec![
        ("--verdict-out", a.verdict_out.as_path()),
        ("--report-out", a.report_out.as_path()),
    ];
    let html_out = a.html_out.clone().or_else(|| html_beside(&a.report_out));
    if let Some(p) = &html_out {
        outputs.push(("--html-out", p.as_path()));
    }
    let (source, result) = match &a.result {
        Some(path) => {
            let r = &a.run;
            let mut flags = measuring_flags(r);
            flags.extend([
                ("--scenario", r.scenario.is_some()),
                ("--target", r.target.is_some()),
                ("--confirm", a.confirm),
            ]);
            refuse_any(&flags, |flag| {
                UserError::flag(
                    flag,
                    "does not apply with `--result`: the result is judged as it is",
                )
            })?;
            (
                GateSource::File(Box::new(Current::read(path)?)),
                path.clone(),
            )
        }
        None => {
            outputs.push(("--out", a.run.out.as_path()));
            if let Some(p) = &a.run.requests_out {
                outputs.push(("--requests-out", p.as_path()));
            }
            let run = match &capacity {
                // The capacity search builds its own plans from this one.
                Some(c) => RunSettings {
                    plan: c.search.plan.clone(),
                    out: a.run.out.clone(),
                    requests_out: None,
                    shard: None,
                },
                None => run(&a.run)?,
            };
            (GateSource::Measure(Box::new(run)), a.run.out.clone())
        }
    };
    crate::error::check_outputs(&outputs)?;
    Ok(GateSettings {
        source,
        result,
        judge: judge(a.baseline.as_deref(), &a.policy, a.force)?,
        verdict_out: a.verdict_out.clone(),
        report_out: a.report_out.clone(),
        html_out,
        comment: match a.comment {
            crate::cli::CommentMode::Auto => CommentMode::Auto,
            crate::cli::CommentMode::Always => CommentMode::Always,
            crate::cli::CommentMode::Never => CommentMode::Never,
        },
        sticky: Sticky {
            id: comment_id("--comment-id", a.comment_id.clone())?,
            author: a.comment_author.clone(),
        },
        fail_on_regression: a.fail_on_regression,
        confirm: a.confirm,
        history: match &a.history {
            Some(h) => {
                let file = crate::result::history::file_of(h);
                crate::result::history::read(&file)?;
                Some(file)
            }
            None => None,
        },
        capacity,
    })
}

/// The flags of one measurement, and whether `r` gives each.
pub(super) fn measuring_flags(r: &RunArgs) -> Vec<(&'static str, bool)> {
    vec![
        ("--baseline-target", r.baseline_target.is_some()),
        ("--concurrency", r.concurrency.is_some()),
        ("--duration", r.duration.is_some()),
        ("--requests", r.requests.is_some()),
        ("--stages", r.stages.is_some()),
        ("--requests-out", r.requests_out.is_some()),
    ]
}

/// The first flag given of `flags`, as the error `refuse` makes of it.
pub(super) fn refuse_any(
    flags: &[(&'static str, bool)],
    refuse: impl Fn(&'static str) -> UserError,
) -> Result<(), UserError> {
    match flags.iter().find(|(_, given)| *given) {
        Some((flag, _)) => Err(refuse(flag)),
        None => Ok(()),
    }
}

pub(super) fn comment(a: CommentArgs) -> Result<CommentSettings, UserError> {
    Ok(CommentSettings {
        body: a.body,
        sticky: Sticky {
            id: comment_id("--id", a.id)?,
            author: a.author,
        },
        pr: a.pr,
        repo: a.repo,
        workflow_run: a.workflow_run,
    })
}

/// A comment id: letters, digits, `.`, `_`, `-`, at most [`MAX_COMMENT_ID`]
/// characters, so the marker is one short HTML comment and inert in Markdown.
pub(super) fn comment_id(flag: &'static str, id: String) -> Result<String, UserError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_COMMENT_ID
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(id)
    } else {
        Err(UserError::flag(
            flag,
            format!("a comment id is 1 to {MAX_COMMENT_ID} letters, digits, `.`, `_` or `-`"),
        ))
    }
}
