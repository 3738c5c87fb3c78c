//! The sticky pull-request comment: found by a hidden marker, updated in
//! place, left alone when unchanged, created when missing.

use serde_json::json;

use super::api::{has_next, Api};
use crate::error::UserError;

/// GitHub's limit for a comment body.
pub const MAX_COMMENT_CHARS: usize = 65_536;
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

/// The body with its marker, cut under GitHub's limit.
pub fn body_with_marker(id: &str, report: &str) -> String {
    let mark = marker(id);
    let room = MAX_COMMENT_CHARS - mark.chars().count() - 80;
    let mut body = if report.chars().count() > room {
        let mut b: String = report.chars().take(room).collect();
        b.push_str("\n\n_… cut to fit GitHub's comment limit._");
        b
    } else {
        report.to_string()
    };
    body.push_str("\n\n");
    body.push_str(&mark);
    body.push('\n');
    body
}

/// Create or update the sticky comment of gate `id` on PR `number`.
pub async fn upsert(
    api: &Api,
    repo: &str,
    number: u64,
    id: &str,
    report: &str,
) -> Result<CommentOutcome, UserError> {
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
        let items = reply.json.as_array().cloned().unwrap_or_default();
        for c in &items {
            let text = c.get("body").and_then(|b| b.as_str()).unwrap_or("");
            if text.contains(&mark) {
                let cid = c.get("id").and_then(serde_json::Value::as_u64).unwrap_or(0);
                let url = c
                    .get("html_url")
                    .and_then(|u| u.as_str())
                    .unwrap_or("")
                    .to_string();
                found = Some((cid, text.to_string(), url));
                break;
            }
        }
        let more =
            has_next(reply.link.as_deref()) || (reply.link.is_none() && items.len() == PER_PAGE);
        if found.is_some() || !more {
            break;
        }
        page += 1;
    }
    match found {
        Some((_, existing, url)) if existing.trim_end() == body.trim_end() => {
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
        assert!(b.trim_end().ends_with("<!-- flora-gate:nightly -->"));
    }
}
