//! `history`.

use super::*;
use crate::cli::HistoryArgs;
use crate::commands::{HistoryAdd, HistorySettings, HistoryStore};
use crate::render::report::Format;

pub(super) fn history(a: &HistoryArgs) -> Result<HistorySettings, UserError> {
    check_numbers(a)?;
    let store = store(a)?;
    let outputs: Vec<(&'static str, &std::path::Path)> = [
        ("--out", a.out.as_deref()),
        ("--markdown-out", a.markdown_out.as_deref()),
        ("--json-out", a.json_out.as_deref()),
        ("--html-out", a.html_out.as_deref()),
    ]
    .into_iter()
    .filter_map(|(f, p)| p.map(|p| (f, p)))
    .collect();
    crate::error::check_outputs(&outputs)?;
    let mut inputs: Vec<std::path::PathBuf> =
        a.add.iter().chain(&a.add_baseline).cloned().collect();
    if let HistoryStore::File(f) = &store {
        inputs.push(f.clone());
    }
    crate::error::check_not_inputs(&outputs, &inputs)?;
    Ok(HistorySettings {
        store,
        add: match (&a.add, &a.add_baseline) {
            (Some(r), _) => Some(HistoryAdd::Result(r.clone())),
            (None, Some(b)) => Some(HistoryAdd::Baseline(b.clone(), a.runs)),
            (None, None) => None,
        },
        commit: a.commit.clone(),
        source: a.source.clone(),
        trend: crate::gate::trend::Settings {
            change: crate::gate::change::Settings {
                alpha: a.alpha,
                min_segment: a.min_nights,
                ..Default::default()
            },
            setup: a.setup.clone(),
            last: a.last,
            min_step: a.min_step,
        },
        format: match a.format {
            FormatArg::Markdown => Format::Markdown,
            FormatArg::Text => Format::Text,
            FormatArg::Json => Format::Json,
            FormatArg::Html => Format::Html,
        },
        out: a.out.clone(),
        markdown_out: a.markdown_out.clone(),
        json_out: a.json_out.clone(),
        html_out: a.html_out.clone(),
        fail_recent: a.fail_recent,
    })
}

/// The numbers and words of the flags.
fn check_numbers(a: &HistoryArgs) -> Result<(), UserError> {
    if !(a.alpha > 0.0 && a.alpha < 0.5) {
        return Err(UserError::flag(
            "--alpha",
            "must be between 0 and 0.5 (0.01 is the default)",
        ));
    }
    if !(0.0..1.0).contains(&a.min_step) {
        return Err(UserError::flag(
            "--min-step",
            "a fraction between 0 and 1 (0.02 = 2%)",
        ));
    }
    if a.min_nights == 0 || a.min_nights > 30 {
        return Err(UserError::flag("--min-nights", "must be between 1 and 30"));
    }
    if a.last.is_some_and(|n| n < 2) {
        return Err(UserError::flag(
            "--last",
            "a series needs at least 2 nights",
        ));
    }
    if a.source.is_empty()
        || a.source.len() > 40
        || !a
            .source
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(UserError::flag(
            "--source",
            "one word of letters, digits, `-`, `_` or `.` (at most 40)",
        ));
    }
    if a.runs == 0 || a.runs > 100 {
        return Err(UserError::flag("--runs", "between 1 and 100"));
    }
    if let Some(c) = &a.commit {
        if c.is_empty() || c.len() > 64 || !c.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(UserError::flag(
                "--commit",
                "a commit id: letters and digits, at most 64",
            ));
        }
    }
    Ok(())
}

/// Where the history is: a local file, or a file on a branch.
fn store(a: &HistoryArgs) -> Result<HistoryStore, UserError> {
    Ok(match &a.branch {
        Some(branch) => {
            let path = a.path.to_string_lossy().replace('\\', "/");
            let path = path.trim_start_matches("./").to_string();
            let bad = |s: &str| {
                s.is_empty()
                    || s.split('/').any(|p| p.is_empty() || p == "." || p == "..")
                    || !s
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
            };
            if bad(branch) {
                return Err(UserError::flag(
                    "--branch",
                    "a branch name of letters, digits, `-`, `_`, `.` and `/`",
                ));
            }
            if bad(&path) || !path.ends_with(".jsonl") {
                return Err(UserError::flag(
                    "DIR|FILE",
                    "with `--branch`, the path of a `.jsonl` file on the branch (e.g. `history/novel.jsonl`)",
                ));
            }
            HistoryStore::Branch {
                repo: a.repo.clone(),
                branch: branch.clone(),
                path,
            }
        }
        None => {
            let file = crate::result::history::file_of(&a.path);
            if a.add.is_none() && a.add_baseline.is_none() && !file.exists() {
                return Err(UserError::flag(
                    "DIR|FILE",
                    format!(
                        "`{}` does not exist; add a result first (`--add result.json`)",
                        file.display()
                    ),
                ));
            }
            HistoryStore::File(file)
        }
    })
}
