//! `gate`, `comment` and `baseline propose`: the commands the GitHub Action
//! and workflows call. Result, verdict and report files are written before
//! anything that can fail afterwards (summary, outputs, comment), and no
//! comment failure changes the exit code: that is the gate's verdict.

use std::io::Write;

use crate::cli::{CommentArgs, CommentMode, GateArgs, ProposeArgs};
use crate::error::UserError;
use crate::gate::{self, Status, Verdict};
use crate::github::actions::{self, ActionsEnv, MAX_ANNOTATIONS};
use crate::github::api::{Api, RetryPolicy};
use crate::github::comment::{self, CommentOutcome};
use crate::render::report;
use crate::{config, engine, result, signal_tokens, Current, Outcome};

fn github_token(env: &ActionsEnv) -> Result<String, UserError> {
    env.token
        .as_ref()
        .map(|t| t.expose().to_string())
        .ok_or_else(|| {
            UserError::flag("GITHUB_TOKEN", "no token to call the GitHub API with")
                .with_hint("pass `github-token` to the action, or set `GITHUB_TOKEN`")
        })
}

fn repository(env: &ActionsEnv, flag: Option<&str>) -> Result<String, UserError> {
    flag.map(str::to_owned)
        .or_else(|| env.repository.clone())
        .filter(|r| r.split('/').count() == 2 && !r.starts_with('/') && !r.ends_with('/'))
        .ok_or_else(|| {
            UserError::flag(
                "--repo",
                "no repository: pass `--repo owner/name` or set `GITHUB_REPOSITORY`",
            )
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
async fn bounded<T>(
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
async fn maybe_comment(
    env: &ActionsEnv,
    mode: CommentMode,
    id: &str,
    author: &str,
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
        actions::annotate(
            &mut std::io::stdout(),
            "notice",
            "flora-gate",
            &format!("PR #{} comes from a fork, whose token cannot comment; the report is in the job summary (see the workflow_run pattern in the README to comment anyway)", pr.number),
        );
        return Ok(None);
    }
    let api = Api::new(&env.api_url, &github_token(env)?, RetryPolicy::default())?;
    let repo = repository(env, None)?;
    let to = comment::Sticky {
        repo: &repo,
        number: pr.number,
        id,
        author,
    };
    comment::upsert(&api, to, markdown).await.map(Some)
}

/// `flora-gate gate`.
pub async fn gate(args: &GateArgs) -> anyhow::Result<Outcome> {
    let env = ActionsEnv::from_env();
    let mut out = std::io::stdout();
    let plan = config::run_plan(&args.run)?;
    let mut outputs = vec![
        ("--out", args.run.out.as_path()),
        ("--verdict-out", args.verdict_out.as_path()),
        ("--report-out", args.report_out.as_path()),
    ];
    if let Some(p) = &args.run.requests_out {
        outputs.push(("--requests-out", p.as_path()));
    }
    crate::error::check_outputs(&outputs)?;
    if env.active {
        for t in plan.tokens.iter() {
            actions::mask(&mut out, t.token.expose());
        }
        if let Some(t) = &env.token {
            actions::mask(&mut out, t.expose());
        }
    }
    let overrides = config::policy_overrides(&args.policy)?;
    if args.baseline.is_none() && args.run.baseline_target.is_none() {
        return Err(UserError::flag(
            "--baseline",
            "the gate needs a baseline file or `--baseline-target`",
        )
        .into());
    }

    if env.active {
        actions::group(
            &mut out,
            &format!("flora-gate: load test of {}", plan.scenario.name),
        );
    }
    let _ = out.flush();
    let (signals, kill) = signal_tokens();
    let interrupted = signals.clone();
    let (signals2, kill2) = (signals.clone(), kill.clone());
    let current = match plan.reference.clone() {
        Some(reference) => {
            let d =
                engine::duet::run_duet(plan.clone(), reference, plan.load.blocks, signals, kill)
                    .await?;
            d.result.write(&args.run.out)?;
            if let Some(p) = &args.run.requests_out {
                result::requests::write_sides(
                    p,
                    &plan.scenario,
                    &[
                        (Some("reference"), &d.reference),
                        (Some("candidate"), &d.candidate),
                    ],
                )?;
            }
            Current::Duet(Box::new(d.result))
        }
        None => {
            let o = engine::run(plan.clone(), signals, kill).await?;
            if let Some(p) = &args.run.requests_out {
                result::requests::write(p, &plan.scenario, &o.recorder.samples)?;
            }
            let meta = result::RunMeta {
                scenario: &plan.scenario,
                target: &plan.target,
                load: &plan.load,
            };
            let r = result::build(&meta, &o);
            r.write(&args.run.out)?;
            Current::Single(Box::new(r))
        }
    };
    eprintln!("result written to {}", args.run.out.display());
    if env.active {
        actions::endgroup(&mut out);
    }
    if let Some(diagnosis) = current.shown().failure_diagnosis() {
        crate::output::err_line(&format!("warning: {diagnosis}"));
    }

    let mut verdict = crate::judge(&current, args.baseline.as_deref(), &overrides, args.force)?;
    let mut current = current;
    let confirmable = matches!(&current, Current::Single(r) if r.status == "complete");
    if args.confirm && verdict.verdict == Status::Fail && confirmable && !interrupted.is_cancelled()
    {
        // One failing run may be a noisy minute: run once more and fail only
        // when both agree. The first run's result is kept beside the second.
        let first = sibling(&args.run.out, "unconfirmed");
        current.shown().write(&first)?;
        crate::output::err_line(&format!(
            "the gate failed ({}); running once more to confirm (--confirm); the first result is in {}",
            verdict.headline,
            first.display()
        ));
        let o = engine::run(plan.clone(), signals2, kill2).await?;
        let meta = result::RunMeta {
            scenario: &plan.scenario,
            target: &plan.target,
            load: &plan.load,
        };
        let r = result::build(&meta, &o);
        r.write(&args.run.out)?;
        let second = crate::Current::Single(Box::new(r));
        let mut v2 = crate::judge(&second, args.baseline.as_deref(), &overrides, args.force)?;
        if v2.verdict == Status::Fail {
            v2.notes.push(format!(
                "confirmed: the first run failed too ({})",
                verdict.headline
            ));
        } else {
            v2.notes.push(format!(
                "not confirmed: the first run failed ({}) but the confirmation run did not; reported as a warning (first result: {})",
                verdict.headline,
                first.display()
            ));
            v2.verdict = v2.verdict.max(Status::Warn);
            v2.headline = format!("not confirmed by a second run: {}", verdict.headline);
        }
        verdict = v2;
        current = second;
    }
    verdict.write(&args.verdict_out)?;
    let reference = match &current {
        Current::Duet(d) => Some(d.reference.provenance.target.clone()),
        Current::Single(_) => None,
    };
    let templates = report::Templates::load(None)?;
    let ctx = report::context(current.shown(), Some(&verdict), reference.as_deref());
    let markdown = report::render(report::Format::Markdown, &templates, &ctx)?;
    crate::error::write_atomic(&args.report_out, markdown.as_bytes())?;
    eprintln!(
        "verdict in {}, report in {}",
        args.verdict_out.display(),
        args.report_out.display()
    );
    crate::output::out(&report::render(report::Format::Text, &templates, &ctx)?);

    // From here on nothing changes the exit code.
    let mut comment_url = String::new();
    if env.active {
        if let Some(p) = &env.step_summary {
            if let Err(e) = actions::append_summary(p, &markdown) {
                actions::annotate(
                    &mut out,
                    "warning",
                    "flora-gate",
                    &format!("job summary not written: {e}"),
                );
            }
        }
        annotate(&mut out, &verdict);
    }
    let posting = maybe_comment(
        &env,
        args.comment,
        &args.comment_id,
        &args.comment_author,
        &markdown,
    );
    match bounded(&interrupted, "the PR comment", posting).await {
        Ok(Some(c)) => {
            crate::output::err_line(&format!("PR comment {}: {}", describe(&c), c.url()));
            comment_url = c.url().to_string();
        }
        Ok(None) => {}
        Err(e) => {
            let hint = e
                .hint()
                .map(|h| format!(" (hint: {h})"))
                .unwrap_or_default();
            let msg = format!("the PR comment failed: {e}{hint}; the verdict stands");
            if env.active {
                actions::annotate(&mut out, "warning", "flora-gate comment", &msg);
            }
            crate::output::err_line(&format!("warning: {msg}"));
        }
    }
    if let Some(p) = env.output.as_ref().filter(|_| env.active) {
        let outputs = [
            ("verdict", verdict.verdict.to_string()),
            ("result", args.run.out.display().to_string()),
            ("verdict-file", args.verdict_out.display().to_string()),
            ("report", args.report_out.display().to_string()),
            ("comment-url", comment_url),
        ];
        if let Err(e) = actions::set_outputs(p, &outputs) {
            eprintln!("warning: step outputs not written: {e}");
        }
    }
    let _ = out.flush();
    Ok(
        if verdict.verdict == Status::Fail && args.fail_on_regression {
            Outcome::Regression
        } else {
            Outcome::Success
        },
    )
}

/// `dir/result.json` → `dir/result.TAG.json`.
fn sibling(path: &std::path::Path, tag: &str) -> std::path::PathBuf {
    let stem = path
        .file_stem()
        .map_or_else(|| "result".into(), |s| s.to_string_lossy().into_owned());
    let ext = path
        .extension()
        .map_or_else(String::new, |e| format!(".{}", e.to_string_lossy()));
    path.with_file_name(format!("{stem}.{tag}{ext}"))
}

fn describe(c: &CommentOutcome) -> &'static str {
    match c {
        CommentOutcome::Created(_) => "created",
        CommentOutcome::Updated(_) => "updated",
        CommentOutcome::Unchanged(_) => "unchanged",
    }
}

/// At most [`MAX_ANNOTATIONS`] `::error`/`::warning` lines for gated findings.
pub fn annotate(out: &mut impl Write, v: &Verdict) {
    let findings: Vec<&gate::Check> = v
        .checks
        .iter()
        .filter(|c| c.gated && matches!(c.status, Status::Fail | Status::Warn))
        .collect();
    for c in findings.iter().take(MAX_ANNOTATIONS) {
        let level = if c.status == Status::Fail {
            "error"
        } else {
            "warning"
        };
        let change = c
            .change
            .map(|x| format!(" {:+.1}%", x * 100.0))
            .unwrap_or_default();
        actions::annotate(
            out,
            level,
            &format!("flora-gate: {}", c.label),
            &format!("{}{change}: {}", c.label, c.note),
        );
    }
}

/// `flora-gate comment`.
pub async fn comment(args: &CommentArgs) -> anyhow::Result<Outcome> {
    let env = ActionsEnv::from_env();
    let body = crate::error::read_to_string(&args.body)?;
    let number = match args.pr {
        Some(n) => n,
        None => {
            let pr = event_pull_request(&env)?;
            if pr.from_fork && env.event_name.as_deref() == Some("pull_request") {
                actions::annotate(
                    &mut std::io::stdout(),
                    "notice",
                    "flora-gate",
                    &format!(
                        "PR #{} comes from a fork: no comment (use the workflow_run pattern)",
                        pr.number
                    ),
                );
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
        id: &args.id,
        author: &args.author,
    };
    let (signals, _) = signal_tokens();
    let c = bounded(&signals, "the PR comment", comment::upsert(&api, to, &body)).await?;
    crate::output::err_line(&format!("PR comment {}: {}", describe(&c), c.url()));
    if let Some(p) = env.output.as_ref().filter(|_| env.active) {
        actions::set_outputs(p, &[("comment-url", c.url().to_string())])?;
    }
    Ok(Outcome::Success)
}

/// `flora-gate baseline propose`.
pub async fn propose(args: &ProposeArgs) -> anyhow::Result<Outcome> {
    let env = ActionsEnv::from_env();
    let content = std::fs::read(&args.baseline).map_err(|source| UserError::Read {
        path: args.baseline.clone(),
        source,
    })?;
    let b = crate::baseline::Baseline::parse(&String::from_utf8_lossy(&content), &args.baseline)?;
    let repo = repository(&env, args.repo.as_deref())?;
    let api = Api::new(&env.api_url, &github_token(&env)?, RetryPolicy::default())?;
    let path = args
        .baseline
        .to_string_lossy()
        .replace('\\', "/")
        .trim_start_matches("./")
        .to_string();
    let body = format!(
        "Nightly refresh of `{path}`: {} run(s) of scenario `{}` ({}) against `{}` at {} users, made {} by flora-gate {}{}.\n\nReview the numbers before merging: the next pull requests are gated against them.",
        b.runs.len(),
        b.provenance.scenario.name,
        crate::scenario::short_hash(&b.provenance.scenario.sha256),
        b.provenance.target,
        b.provenance.concurrency,
        b.provenance.created_at,
        b.provenance.tool_version,
        b.provenance.git_commit.as_deref().map(|c| format!(" at commit {c}")).unwrap_or_default(),
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
