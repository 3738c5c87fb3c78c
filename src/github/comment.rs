//! The sticky pull-request comment: found by a hidden marker, updated in
//! place, left alone when unchanged, created when missing.

use serde_json::json;

use super::api::{has_next, Api};
use crate::error::UserError;

pub use crate::render::report::MAX_COMMENT_CHARS;
const PER_PAGE: usize = 100;
const MAX_PAGES: usize = 100;

/// The hidden marker of one gate's comment.
pub fn marker(id: &str) -> String {
    format!("<!-- flora-gate:{id} -->")
}

/// What happened to the comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommentOutcome {
    /// A new comment.
    Created(String),
    /// The existing comment was edited.
    Updated(String),
    /// The existing comment already said this.
    Unchanged(String),
}

impl CommentOutcome {
    /// The comment's URL.
    pub fn url(&self) -> &str {
        match self {
            CommentOutcome::Created(u)
            | CommentOutcome::Updated(u)
            | CommentOutcome::Unchanged(u) => u,
        }
    }
}

/// The pull request an event is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullRequest {
    /// Its number.
    pub number: u64,
    /// Opened from a fork: the token cannot write, so no comment is tried.
    pub from_fork: bool,
}

/// Read the PR from an event payload (`pull_request` or `pull_request_target`).
pub fn pull_request_from_event(payload: &serde_json::Value) -> Option<PullRequest> {
    let pr = payload.get("pull_request")?;
    let number = pr.get("number").and_then(serde_json::Value::as_u64)?;
    let name = |side: &str| {
        pr.pointer(&format!("/{side}/repo/full_name"))
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    };
    let from_fork = match (name("head"), name("base")) {
        (Some(h), Some(b)) => h != b,
        // A deleted fork has no head repository.
        _ => true,
    };
    Some(PullRequest { number, from_fork })
}

/// The pull request a `workflow_run` event belongs to: the run's own
/// commit (`head_sha`) must be the PR's head. Taken from the event's
/// `pull_requests` (filled for branches of this repository), else looked up
/// among the open PRs of the run's head branch (a fork's PRs are not listed
/// in the event). Nothing an artifact says is consulted.
pub async fn workflow_run_pull_request(
    api: &Api,
    repo: &str,
    payload: &serde_json::Value,
) -> Result<Option<u64>, UserError> {
    let run = payload
        .get("workflow_run")
        .ok_or_else(|| UserError::Environment {
            message: "the event payload is not a `workflow_run` event".into(),
            hint: Some(
                "use `--workflow-run` only in a workflow triggered by `on: workflow_run`".into(),
            ),
        })?;
    if run.get("event").and_then(|e| e.as_str()) != Some("pull_request") {
        return Ok(None);
    }
    let Some(sha) = run
        .get("head_sha")
        .and_then(|s| s.as_str())
        .filter(|s| s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit()))
    else {
        return Ok(None);
    };
    let head_is =
        |pr: &serde_json::Value| pr.pointer("/head/sha").and_then(|s| s.as_str()) == Some(sha);
    let from_event: Vec<u64> = run
        .get("pull_requests")
        .and_then(|p| p.as_array())
        .into_iter()
        .flatten()
        .filter(|pr| head_is(pr))
        .filter_map(|pr| pr.get("number").and_then(serde_json::Value::as_u64))
        .collect();
    if let [n] = from_event[..] {
        return Ok(Some(n));
    }
    let owner = run
        .pointer("/head_repository/owner/login")
        .and_then(|s| s.as_str());
    let branch = run.get("head_branch").and_then(|s| s.as_str());
    let (Some(owner), Some(branch)) = (owner, branch) else {
        return Ok(None);
    };
    let safe = |s: &str| {
        !s.is_empty()
            && s.len() <= 255
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
    };
    if !safe(owner) || !safe(branch) {
        return Ok(None);
    }
    let reply = api
        .get(&format!(
            "/repos/{repo}/pulls?state=open&per_page={PER_PAGE}&head={owner}:{branch}"
        ))
        .await?;
    let found: Vec<u64> = reply
        .json
        .as_array()
        .into_iter()
        .flatten()
        .filter(|pr| head_is(pr))
        .filter_map(|pr| pr.get("number").and_then(serde_json::Value::as_u64))
        .collect();
    Ok(match found[..] {
        [n] => Some(n),
        _ => None,
    })
}

/// Text that flora-gate did not write (a report from another workflow's
/// artifact), made inert for a comment: a note of where it came from, then
/// the text verbatim inside a code block whose fence is longer than any
/// run of backticks in it, so no link, image, mention or HTML in it is live.
pub fn untrusted_body(origin: &str, text: &str) -> String {
    let mut longest = 0;
    let mut run = 0;
    for c in text.chars() {
        run = if c == '`' { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    let fence = "`".repeat((longest + 1).max(3));
    let clean: String = text
        .chars()
        .filter(|c| !c.is_control() || *c == '\n' || *c == '\t')
        .collect();
    format!(
        "**flora-gate** · {origin}. The report below was written by the pull request's own workflow run and is shown as plain text.\n\n{fence}text\n{}\n{fence}\n",
        clean.trim_end()
    )
}

/// The identity the Actions token posts as.
pub const DEFAULT_AUTHOR: &str = "github-actions[bot]";

/// The body: the marker first (hidden), then the report cut under GitHub's limit.
pub fn body_with_marker(id: &str, report: &str) -> String {
    let mark = marker(id);
    let room = MAX_COMMENT_CHARS.saturating_sub(mark.chars().count() + 80);
    let mut body = mark;
    body.push('\n');
    if report.chars().count() > room {
        body.extend(report.chars().take(room));
        body.push_str("\n\n_… cut to fit GitHub's comment limit._\n");
    } else {
        body.push_str(report);
    }
    body
}

/// Whether an existing comment is this gate's own: written by `author`
/// (the identity flora-gate posts as) and starting with the marker. A
/// comment by anyone else, or one that only quotes or ends with the marker,
/// is never edited, whatever it contains.
pub fn is_own(comment: &serde_json::Value, mark: &str, author: &str) -> bool {
    let login = comment
        .pointer("/user/login")
        .and_then(|l| l.as_str())
        .unwrap_or("");
    let text = comment.get("body").and_then(|b| b.as_str()).unwrap_or("");
    login.eq_ignore_ascii_case(author) && text.trim_start().starts_with(mark)
}

/// Where the sticky comment goes and whose it is.
#[derive(Debug, Clone, Copy)]
pub struct Sticky<'a> {
    /// owner/name.
    pub repo: &'a str,
    /// Pull request number.
    pub number: u64,
    /// Id in the hidden marker.
    pub id: &'a str,
    /// Login of the identity flora-gate posts as; only its comments are edited.
    pub author: &'a str,
}

/// Create or update the sticky comment.
pub async fn upsert(api: &Api, to: Sticky<'_>, report: &str) -> Result<CommentOutcome, UserError> {
    let Sticky {
        repo,
        number,
        id,
        author,
    } = to;
    let body = body_with_marker(id, report);
    let mark = marker(id);
    let mut page = 1;
    let mut found: Option<(u64, String, String)> = None;
    while page <= MAX_PAGES {
        let reply = api
            .get(&format!(
                "/repos/{repo}/issues/{number}/comments?per_page={PER_PAGE}&page={page}"
            ))
            .await?;
        // An HTML error page or a proxy's answer is not "no comments":
        // creating a second sticky comment on that basis would be wrong.
        let Some(items) = reply.json.as_array().cloned() else {
            return Err(UserError::Environment {
                message: format!(
                    "GitHub answered the comment list of PR #{number} with something that is not a JSON list"
                ),
                hint: Some("check `GITHUB_API_URL`: it must be the REST API (https://api.github.com, or https://HOST/api/v3)".into()),
            });
        };
        if let Some(c) = items.iter().find(|c| is_own(c, &mark, author)) {
            let cid = c.get("id").and_then(serde_json::Value::as_u64).unwrap_or(0);
            let text = c.get("body").and_then(|b| b.as_str()).unwrap_or("");
            let url = c
                .get("html_url")
                .and_then(|u| u.as_str())
                .unwrap_or("")
                .to_string();
            found = Some((cid, text.to_string(), url));
        }
        let more =
            has_next(reply.link.as_deref()) || (reply.link.is_none() && items.len() == PER_PAGE);
        if found.is_some() || !more {
            break;
        }
        page += 1;
    }
    match found {
        Some((_, existing, url)) if existing.trim() == body.trim() => {
            Ok(CommentOutcome::Unchanged(url))
        }
        Some((cid, _, _)) => {
            let reply = api
                .patch(
                    &format!("/repos/{repo}/issues/comments/{cid}"),
                    &json!({ "body": body }),
                )
                .await?;
            Ok(CommentOutcome::Updated(html_url(&reply.json)))
        }
        None => {
            let reply = api
                .post(
                    &format!("/repos/{repo}/issues/{number}/comments"),
                    &json!({ "body": body }),
                )
                .await?;
            Ok(CommentOutcome::Created(html_url(&reply.json)))
        }
    }
}

fn html_url(v: &serde_json::Value) -> String {
    v.get("html_url")
        .and_then(|u| u.as_str())
        .unwrap_or("")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fork_detection() {
        let same = json!({"pull_request": {"number": 7, "head": {"repo": {"full_name": "o/r"}}, "base": {"repo": {"full_name": "o/r"}}}});
        assert_eq!(
            pull_request_from_event(&same),
            Some(PullRequest {
                number: 7,
                from_fork: false
            })
        );
        let fork = json!({"pull_request": {"number": 8, "head": {"repo": {"full_name": "x/r"}}, "base": {"repo": {"full_name": "o/r"}}}});
        assert!(pull_request_from_event(&fork).expect("pr").from_fork);
        let gone = json!({"pull_request": {"number": 9, "head": {"repo": null}, "base": {"repo": {"full_name": "o/r"}}}});
        assert!(pull_request_from_event(&gone).expect("pr").from_fork);
        assert_eq!(pull_request_from_event(&json!({"push": {}})), None);
    }

    #[test]
    fn bodies_carry_the_marker_and_fit() {
        let b = body_with_marker("nightly", &"x".repeat(100_000));
        assert!(b.chars().count() <= MAX_COMMENT_CHARS);
        assert!(b.starts_with("<!-- flora-gate:nightly -->\n"));
    }

    #[test]
    fn only_own_comments_are_taken() {
        let mark = marker("default");
        let bot = DEFAULT_AUTHOR;
        let own = json!({"user": {"login": bot}, "body": format!("{mark}\nreport")});
        assert!(is_own(&own, &mark, bot));
        let ends_with = json!({"user": {"login": bot}, "body": format!("report\n\n{mark}\n")});
        assert!(!is_own(&ends_with, &mark, bot));
        let other = json!({"user": {"login": "mallory"}, "body": format!("{mark}\nmine now")});
        assert!(!is_own(&other, &mark, bot));
        let quoting = json!({"user": {"login": bot}, "body": format!("> {mark}\nquoted")});
        assert!(!is_own(&quoting, &mark, bot));
        let anonymous = json!({"body": format!("{mark}\nx")});
        assert!(!is_own(&anonymous, &mark, bot));
    }
}
