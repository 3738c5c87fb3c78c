//! `flora-gate history`: add a result to the history (a local JSON Lines
//! file or one on a branch), then analyse it and write the reports.

use std::io::Write as _;

use super::github::{bounded, github_token, repository};
use super::{signal_tokens, HistoryAdd, HistorySettings, HistoryStore, Outcome};
use crate::error::UserError;
use crate::gate::trend::{self, Trend};
use crate::github::actions::ActionsEnv;
use crate::github::api::{Api, RetryPolicy};
use crate::github::history::{self as branch, Branch};
use crate::render::report::Format;
use crate::result::history::{self as store, Read, Record};
use crate::result::RunResult;

pub(super) async fn history(s: &HistorySettings) -> anyhow::Result<Outcome> {
    let record = s.add.as_ref().map(|a| new_record(s, a)).transpose()?;
    let read = match &s.store {
        HistoryStore::File(path) => in_file(path, record.as_ref())?,
        HistoryStore::Branch { repo, branch, path } => {
            on_branch(repo.as_deref(), branch, path, record.as_ref()).await?
        }
    };
    let t = trend::analyse(&read, &s.trend).map_err(|m| UserError::Environment {
        message: m,
        hint: Some("`flora-gate history --add RESULT` adds a run".into()),
    })?;
    write_reports(s, &t)?;
    let recent = recent_findings(&t, s.fail_recent);
    if recent > 0 {
        crate::output::err_line(&format!(
            "{recent} finding(s) in the gated metrics within the newest {} nights",
            s.fail_recent
        ));
        return Ok(Outcome::Regression);
    }
    Ok(Outcome::Success)
}

fn new_record(s: &HistorySettings, add: &HistoryAdd) -> Result<Record, UserError> {
    let record = match add {
        HistoryAdd::Result(path) => {
            let r = RunResult::read(path)?;
            Record::from_result(&r, s.commit.clone(), &s.source)
                .map_err(|m| UserError::invalid("result", path, None, m))?
        }
        HistoryAdd::Baseline(path, n) => {
            let b = crate::result::baseline::Baseline::read(path)?;
            Record::from_baseline(&b, *n, s.commit.clone(), &s.source)
                .map_err(|m| UserError::invalid("baseline", path, None, m))?
        }
    };
    if let Some(why) = &record.unfit {
        crate::output::err_line(&format!(
            "note: the run is kept in the history but left out of its series: {why}"
        ));
    }
    Ok(record)
}

/// The same run already in the history (the same start and setup, under
/// whatever commit it was added).
fn already_in(read: &Read, r: &Record) -> bool {
    read.records
        .iter()
        .any(|x| x.date == r.date && x.setup() == r.setup())
}

/// The history in `path`, with `record` appended to the file (and to
/// what was read) unless the run is in it already.
fn in_file(path: &std::path::Path, record: Option<&Record>) -> Result<Read, UserError> {
    let Some(r) = record else {
        return store::read(path);
    };
    let mut read = if path.exists() {
        store::read(path)?
    } else {
        Read::default()
    };
    if already_in(&read, r) {
        crate::output::err_line("this run is already in the history; not added again");
        return Ok(read);
    }
    store::append(path, r)?;
    read.records.push(r.clone());
    crate::output::err_line(&format!(
        "added the run of {} to {} ({} records)",
        trend::day(&r.date),
        path.display(),
        read.records.len()
    ));
    Ok(read)
}

async fn on_branch(
    repo: Option<&str>,
    branch_name: &str,
    path: &str,
    record: Option<&Record>,
) -> Result<Read, UserError> {
    let env = ActionsEnv::from_env();
    let repo = repository(&env, repo)?;
    let api = Api::new(&env.api_url, &github_token(&env)?, RetryPolicy::default())?;
    let b = Branch {
        repo: &repo,
        branch: branch_name,
        path,
    };
    let (signals, _) = signal_tokens();
    let found = bounded(&signals, "reading the history", branch::fetch(&api, &b)).await?;
    let (mut bytes, sha) = found.map_or((Vec::new(), None), |(b, s)| (b, Some(s)));
    let name = std::path::PathBuf::from(format!("{branch_name}:{path}"));
    let mut read = store::read_from(bytes.as_slice(), &name)?;
    let Some(r) = record else {
        if sha.is_none() {
            return Err(UserError::Environment {
                message: format!("no history at `{path}` on branch `{branch_name}` of {repo}"),
                hint: Some("add a result first (`--add result.json`)".into()),
            });
        }
        return Ok(read);
    };
    if already_in(&read, r) {
        crate::output::err_line("this run is already in the history; not added again");
        return Ok(read);
    }
    if !bytes.is_empty() && !bytes.ends_with(b"\n") {
        bytes.push(b'\n');
    }
    bytes.extend(serde_json::to_vec(r).map_err(|e| UserError::Environment {
        message: format!("could not encode the history record: {e}"),
        hint: None,
    })?);
    bytes.push(b'\n');
    let message = format!(
        "flora-gate history: {} of {}",
        r.scenario.name,
        trend::day(&r.date)
    );
    let write = branch::store(&api, &b, &bytes, sha.as_deref(), &message);
    bounded(&signals, "writing the history", write).await?;
    read.records.push(r.clone());
    crate::output::err_line(&format!(
        "added the run of {} to `{path}` on branch `{branch_name}` ({} records)",
        trend::day(&r.date),
        read.records.len()
    ));
    Ok(read)
}

fn render(t: &Trend, format: Format) -> Result<String, UserError> {
    Ok(match format {
        Format::Markdown => crate::render::history::markdown(t),
        Format::Text => crate::render::history::text(t),
        Format::Json => {
            let mut j = serde_json::to_string_pretty(t).map_err(|e| UserError::Environment {
                message: format!("could not encode the analysis: {e}"),
                hint: None,
            })?;
            j.push('\n');
            j
        }
        Format::Html => {
            let templates = crate::render::report::Templates::load(None)?;
            crate::render::report::html(&templates, &crate::render::html::trend_page(t))?
        }
    })
}

fn write_reports(s: &HistorySettings, t: &Trend) -> Result<(), UserError> {
    for (path, format) in [
        (&s.markdown_out, Format::Markdown),
        (&s.json_out, Format::Json),
        (&s.html_out, Format::Html),
    ] {
        if let Some(p) = path {
            crate::error::write_atomic(p, render(t, format)?.as_bytes())?;
            crate::output::err_line(&format!("wrote {}", p.display()));
        }
    }
    let main = render(t, s.format)?;
    match &s.out {
        Some(p) => {
            crate::error::write_atomic(p, main.as_bytes())?;
            crate::output::err_line(&format!("wrote {}", p.display()));
        }
        None => {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(main.as_bytes());
        }
    }
    Ok(())
}

/// Gated regressions whose first night is among the newest `nights`, and
/// drifts: what `--fail-recent` fails on.
fn recent_findings(t: &Trend, nights: usize) -> usize {
    if nights == 0 {
        return 0;
    }
    let from = t.nights.len().saturating_sub(nights);
    t.series
        .iter()
        .filter(|s| s.gated)
        .map(|s| {
            s.changes
                .iter()
                .filter(|c| c.regression && c.change.earliest >= from)
                .count()
                + usize::from(s.drift.is_some())
        })
        .sum()
}
