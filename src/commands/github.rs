//! `comment` and `baseline propose`, and what `gate` shares with them: the
//! GitHub environment, the sticky comment within a time bound that signals
//! can cut short, annotations.

use std::io::Write;

use super::{
    signal_tokens, CommentMode, CommentSettings, GateSettings, Outcome, ProposeSettings, Sticky,
};
use crate::error::UserError;
use crate::gate::{Status, Verdict};
use crate::github::actions::{self, ActionsEnv, MAX_ANNOTATIONS};
use crate::github::api::{Api, RetryPolicy};
use crate::github::comment::{self, CommentOutcome};
use tokio_util::sync::CancellationToken;

pub(super) fn github_token(env: &ActionsEnv) -> Result<String, UserError> {
    env.token
        .as_ref()
        .map(|t| t.expose().to_string())
        .ok_or_else(|| {
            UserError::flag("GITHUB_TOKEN", "no token to call the GitHub API with")
                .with_hint("pass `github-token` to the action, or set `GITHUB_TOKEN`")
        })
}

pub(super) fn repository(env: &ActionsEnv, flag: Option<&str>) -> Result<String, UserError> {
    flag.map(str::to_owned)
        .or_else(|| env.repository.clone())
        .filter(|r| r.split('/').count() == 2 && !r.starts_with('/') && !r.ends_with('/'))
        .ok_or_else(|| UserError::Environment {
            message: "no repository to post to".into(),
            hint: Some("pass `--repo owner/name`, or set `GITHUB_REPOSITORY`".into()),
        })
}

/// The event payload, or an error naming `GITHUB_EVENT_PATH` and what is
/// wrong with it.
fn event_payload(env: &ActionsEnv) -> Result<serde_json::Value, UserError> {
    let path = env.event_path.as_ref().ok_or_else(|| {
        UserError::flag(
            "GITHUB_EVENT_PATH",
            "is not set: no event payload to read the pull request from",
        )
        .with_hint("pass `--pr N`, or run inside a GitHub Actions pull_request job")
    })?;
    let text = crate::error::read_to_string(path)?;
    serde_json::from_str(&text).map_err(|e| {
        UserError::invalid(
            "event payload (GITHUB_EVENT_PATH)",
            path,
            Some(format!("line {}, column {}", e.line(), e.column())),
            e.to_string(),
        )
    })
}

/// The pull request of the event, or an error saying why there is none.
fn event_pull_request(env: &ActionsEnv) -> Result<comment::PullRequest, UserError> {
    let payload = event_payload(env)?;
    comment::pull_request_from_event(&payload).ok_or_else(|| {
        UserError::invalid(
            "event payload (GITHUB_EVENT_PATH)",
            env.event_path.clone().unwrap_or_default(),
            Some("`pull_request.number`".into()),
            "the event is not about a pull request",
        )
        .with_hint("pass `--pr N`, or run on a pull_request event")
    })
}

/// The longest the whole comment phase may take (listing pages, retries,
/// the write): a silent GitHub never holds the job longer than this.
pub const COMMENT_BUDGET: std::time::Duration = std::time::Duration::from_secs(180);

/// Run a GitHub phase within [`COMMENT_BUDGET`], giving up on a signal.
pub(super) async fn bounded<T>(
    signals: &tokio_util::sync::CancellationToken,
    what: &str,
    phase: impl std::future::Future<Output = Result<T, UserError>>,
) -> Result<T, UserError> {
    if signals.is_cancelled() {
        return Err(UserError::Environment {
            message: format!("{what} skipped: the job was interrupted by a signal"),
            hint: None,
        });
    }
    tokio::select! {
        r = tokio::time::timeout(COMMENT_BUDGET, phase) => r.unwrap_or_else(|_| Err(UserError::Environment {
            message: format!("{what} gave up after {}s without finishing", COMMENT_BUDGET.as_secs()),
            hint: Some("GitHub did not answer in time; check `GITHUB_API_URL` and the network".into()),
        })),
        () = signals.cancelled() => Err(UserError::Environment {
            message: format!("{what} stopped by a signal"),
            hint: None,
        }),
    }
}

/// Post the comment for `gate`: `Ok(None)` when it was not attempted.
pub(super) async fn maybe_comment(
    env: &ActionsEnv,
    mode: CommentMode,
    sticky: &Sticky,
    markdown: &str,
) -> Result<Option<CommentOutcome>, UserError> {
    if mode == CommentMode::Never {
        return Ok(None);
    }
    let is_pr_event = matches!(
        env.event_name.as_deref(),
        Some("pull_request" | "pull_request_target")
    );
    if mode == CommentMode::Auto && !(env.active && is_pr_event) {
        return Ok(None);
    }
    let pr = match event_pull_request(env) {
        Ok(pr) => pr,
        Err(e) => {
            crate::output::err_line(&format!("no comment: {e}"));
            return Ok(None);
        }
    };
    if pr.from_fork && env.event_name.as_deref() == Some("pull_request") {
        fork_notice(pr.number);
        return Ok(None);
    }
    let api = Api::new(&env.api_url, &github_token(env)?, RetryPolicy::default())?;
    let repo = repository(env, None)?;
    let to = comment::Sticky {
        repo: &repo,
        number: pr.number,
        id: &sticky.id,
        author: &sticky.author,
    };
    comment::upsert(&api, to, markdown).await.map(Some)
}

pub(super) fn describe(c: &CommentOutcome) -> &'static str {
    match c {
        CommentOutcome::Created(_) => "created",
        CommentOutcome::Updated(_) => "updated",
        CommentOutcome::Unchanged(_) => "unchanged",
    }
}

/// One `::error`/`::warning` line: its level, title and message.
pub(super) type Finding = (&'static str, String, String);

/// The gated findings of a verdict, worst first as the verdict lists them.
pub(super) fn findings(v: &Verdict) -> Vec<Finding> {
    v.checks
        .iter()
        .filter(|c| c.gated && matches!(c.status, Status::Fail | Status::Warn))
        .map(|c| {
            let level = if c.status == Status::Fail {
                "error"
            } else {
                "warning"
            };
            let change = c
                .change
                .map(|x| format!(" {:+.1}%", x * 100.0))
                .unwrap_or_default();
            (
                level,
                format!("flora-gate: {}", c.label),
                format!("{}{change}: {}", c.label, c.note),
            )
        })
        .collect()
}

/// At most [`MAX_ANNOTATIONS`] annotations.
pub(super) fn annotate(out: &mut impl Write, findings: &[Finding]) {
    for (level, title, message) in findings.iter().take(MAX_ANNOTATIONS) {
        actions::annotate(out, level, title, message);
    }
}

/// The one notice for a pull request from a fork, whose token cannot comment.
fn fork_notice(number: u64) {
    actions::annotate(
        &mut std::io::stdout(),
        "notice",
        "flora-gate",
        &format!("PR #{number} comes from a fork, whose token cannot comment; the report is in the job summary (see the workflow_run pattern in the README to comment anyway)"),
    );
}

/// `flora-gate comment`.
pub(super) async fn comment(args: &CommentSettings) -> anyhow::Result<Outcome> {
    let env = ActionsEnv::from_env();
    let body = crate::error::read_to_string(&args.body)?;
    if args.workflow_run {
        return comment_for_workflow_run(args, &env, &body).await;
    }
    let number = match args.pr {
        Some(n) => n,
        None => {
            let pr = event_pull_request(&env)?;
            if pr.from_fork && env.event_name.as_deref() == Some("pull_request") {
                fork_notice(pr.number);
                return Ok(Outcome::Success);
            }
            pr.number
        }
    };
    let api = Api::new(&env.api_url, &github_token(&env)?, RetryPolicy::default())?;
    let repo = repository(&env, args.repo.as_deref())?;
    let to = comment::Sticky {
        repo: &repo,
        number,
        id: &args.sticky.id,
        author: &args.sticky.author,
    };
    let (signals, _) = signal_tokens();
    let c = bounded(&signals, "the PR comment", comment::upsert(&api, to, &body)).await?;
    crate::output::err_line(&format!("PR comment {}: {}", describe(&c), c.url()));
    if let Some(p) = env.output.as_ref().filter(|_| env.active) {
        actions::set_outputs(p, &[("comment-url", c.url().to_string())])?;
    }
    Ok(Outcome::Success)
}

/// `flora-gate comment --workflow-run`: the PR comes from the trusted
/// event (and the API), the body from an artifact, posted as text.
async fn comment_for_workflow_run(
    args: &CommentSettings,
    env: &ActionsEnv,
    body: &str,
) -> anyhow::Result<Outcome> {
    let payload = event_payload(env)?;
    let api = Api::new(&env.api_url, &github_token(env)?, RetryPolicy::default())?;
    let repo = repository(env, args.repo.as_deref())?;
    let (signals, _) = signal_tokens();
    let lookup = comment::workflow_run_pull_request(&api, &repo, &payload);
    let Some(number) = bounded(&signals, "finding the run's pull request", lookup).await? else {
        crate::output::err_line(
            "no comment: the workflow run belongs to no open pull request whose head is the run's commit",
        );
        return Ok(Outcome::Success);
    };
    let run_id = payload
        .pointer("/workflow_run/id")
        .and_then(serde_json::Value::as_u64)
        .map_or_else(String::new, |id| format!(" {id}"));
    let sha: String = payload
        .pointer("/workflow_run/head_sha")
        .and_then(|s| s.as_str())
        .unwrap_or("")
        .chars()
        .take(12)
        .collect();
    let text = comment::untrusted_body(&format!("workflow run{run_id} at `{sha}`"), body);
    let to = comment::Sticky {
        repo: &repo,
        number,
        id: &args.sticky.id,
        author: &args.sticky.author,
    };
    let c = bounded(&signals, "the PR comment", comment::upsert(&api, to, &text)).await?;
    crate::output::err_line(&format!(
        "PR #{number} comment {}: {}",
        describe(&c),
        c.url()
    ));
    if let Some(p) = env.output.as_ref().filter(|_| env.active) {
        actions::set_outputs(p, &[("comment-url", c.url().to_string())])?;
    }
    Ok(Outcome::Success)
}

/// `flora-gate baseline propose`.
pub(super) async fn propose(args: &ProposeSettings) -> anyhow::Result<Outcome> {
    let env = ActionsEnv::from_env();
    let content = std::fs::read(&args.baseline).map_err(|source| UserError::Read {
        path: args.baseline.clone(),
        source,
    })?;
    let what = if crate::result::capacity::CapacityResult::is_one(&args.baseline) {
        let c = crate::result::capacity::CapacityResult::read(&args.baseline)?;
        format!(
            "a capacity search of scenario `{}` ({}) against `{}`: {}; {} probes, {} requests, {:.0} s",
            c.scenario.name,
            crate::scenario::short_hash(&c.scenario.sha256),
            c.target,
            crate::render::capacity::headline(&c),
            c.probes.len(),
            c.requests,
            c.elapsed_s
        )
    } else {
        let b = crate::result::baseline::Baseline::parse(
            &String::from_utf8_lossy(&content),
            &args.baseline,
        )?;
        format!(
            "{} run(s) of scenario `{}` ({}) against `{}` at {} users, made {} by flora-gate {}{}",
            b.runs.len(),
            b.provenance.scenario.name,
            crate::scenario::short_hash(&b.provenance.scenario.sha256),
            b.provenance.target,
            b.provenance.concurrency,
            b.provenance.created_at,
            b.provenance.tool_version,
            b.provenance
                .git_commit
                .as_deref()
                .map(|c| format!(" at commit {c}"))
                .unwrap_or_default(),
        )
    };
    let repo = repository(&env, args.repo.as_deref())?;
    let api = Api::new(&env.api_url, &github_token(&env)?, RetryPolicy::default())?;
    let path = args
        .baseline
        .to_string_lossy()
        .replace('\\', "/")
        .trim_start_matches("./")
        .to_string();
    let body = format!(
        "Nightly refresh of `{path}`: {what}.\n\nReview the numbers before merging: the next pull requests are gated against them."
    );
    let (signals, _) = signal_tokens();
    let what = crate::github::propose::Proposal {
        repo: &repo,
        base: &args.base,
        branch: &args.branch,
        path: &path,
        content: &content,
        title: &args.title,
        body: &body,
    };
    let proposal = crate::github::propose::propose(&api, &what);
    let url = bounded(&signals, "the baseline proposal", proposal).await?;
    crate::output::out(&format!("{url}\n"));
    crate::output::err_line(&format!("baseline proposed: {url}"));
    Ok(Outcome::Success)
}

/// The line that points the summary and the comment at the HTML report:
/// in Actions, the run's page, where the Action uploads it as an artifact
/// (named by `FLORA_GATE_REPORT_ARTIFACT` when the Action sets it).
pub(super) fn html_link(env: &ActionsEnv, html: &std::path::Path) -> Option<String> {
    let url = env.run_url.as_deref().filter(|_| env.active)?;
    let file = html.file_name()?.to_string_lossy().into_owned();
    let artifact = std::env::var("FLORA_GATE_REPORT_ARTIFACT")
        .ok()
        .filter(|a| {
            !a.is_empty()
                && a.len() <= 100
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        });
    Some(match artifact {
        Some(a) => format!(
            "Charts and the whole story: `{}` in the `{a}` artifact of [this run]({url}).",
            crate::render::md_code(&file)
        ),
        None => format!(
            "Charts and the whole story: `{}` among [this run's artifacts]({url}).",
            crate::render::md_code(&file)
        ),
    })
}

/// The step outputs, and the exit as the verdict says.
pub(super) fn finish(
    args: &GateSettings,
    env: &ActionsEnv,
    verdict: Status,
    comment_url: String,
    out: &mut impl Write,
) -> Outcome {
    if let Some(p) = env.output.as_ref().filter(|_| env.active) {
        let outputs = [
            ("verdict", verdict.to_string()),
            ("result", args.result.display().to_string()),
            ("verdict-file", args.verdict_out.display().to_string()),
            ("report", args.report_out.display().to_string()),
            (
                "html",
                args.html_out
                    .as_ref()
                    .map_or_else(String::new, |p| p.display().to_string()),
            ),
            ("comment-url", comment_url),
        ];
        if let Err(e) = actions::set_outputs(p, &outputs) {
            eprintln!("warning: step outputs not written: {e}");
        }
    }
    let _ = out.flush();
    if verdict == Status::Fail && args.fail_on_regression {
        Outcome::Regression
    } else {
        Outcome::Success
    }
}

/// Job summary, annotations and the sticky comment; returns the comment's
/// URL (empty when none). Failures here are warnings only.
pub(super) async fn publish(
    args: &GateSettings,
    env: &ActionsEnv,
    signals: &CancellationToken,
    findings: &[Finding],
    markdown: &str,
    out: &mut impl Write,
) -> String {
    if env.active {
        if let Some(p) = &env.step_summary {
            if let Err(e) = actions::append_summary(p, markdown) {
                actions::annotate(
                    out,
                    "warning",
                    "flora-gate",
                    &format!("job summary not written: {e}"),
                );
            }
        }
        annotate(out, findings);
    }
    let posting = maybe_comment(env, args.comment, &args.sticky, markdown);
    match bounded(signals, "the PR comment", posting).await {
        Ok(Some(c)) => {
            crate::output::err_line(&format!("PR comment {}: {}", describe(&c), c.url()));
            c.url().to_string()
        }
        Ok(None) => String::new(),
        Err(e) => {
            let hint = e
                .hint()
                .map(|h| format!(" (hint: {h})"))
                .unwrap_or_default();
            let msg = format!("the PR comment failed: {e}{hint}; the verdict stands");
            if env.active {
                actions::annotate(out, "warning", "flora-gate comment", &msg);
            }
            crate::output::err_line(&format!("warning: {msg}"));
            String::new()
        }
    }
}
