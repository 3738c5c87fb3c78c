//! `baseline propose`: put a refreshed baseline on a branch and open (or
//! reuse) a pull request for it, through the REST API.

use base64::Engine as _;
use serde_json::json;

use super::api::Api;
use crate::error::UserError;

/// What to propose.
#[derive(Debug, Clone)]
pub struct Proposal<'a> {
    /// owner/name.
    pub repo: &'a str,
    /// Branch the PR targets.
    pub base: &'a str,
    /// Branch to create or reset.
    pub branch: &'a str,
    /// Path of the file in the repository.
    pub path: &'a str,
    /// New content.
    pub content: &'a [u8],
    /// PR title and commit message.
    pub title: &'a str,
    /// PR body.
    pub body: &'a str,
}

/// The commit a branch points at.
pub async fn branch_sha(api: &Api, repo: &str, branch: &str) -> Result<String, UserError> {
    let reply = api
        .get(&format!("/repos/{repo}/git/ref/heads/{branch}"))
        .await?;
    reply
        .json
        .pointer("/object/sha")
        .and_then(|s| s.as_str())
        .map(str::to_owned)
        .ok_or_else(|| UserError::Environment {
            message: format!("the branch `{branch}` has no commit sha in the API reply"),
            hint: None,
        })
}

/// Push the file to the branch and return the PR's URL.
pub async fn propose(api: &Api, p: &Proposal<'_>) -> Result<String, UserError> {
    let sha = branch_sha(api, p.repo, p.base).await?;
    // Create the branch, or reset an earlier proposal's branch to the base.
    let created = api
        .post(
            &format!("/repos/{}/git/refs", p.repo),
            &json!({"ref": format!("refs/heads/{}", p.branch), "sha": sha}),
        )
        .await;
    if created.is_err() {
        api.patch(
            &format!("/repos/{}/git/refs/heads/{}", p.repo, p.branch),
            &json!({"sha": sha, "force": true}),
        )
        .await?;
    }
    let existing = api
        .get(&format!(
            "/repos/{}/contents/{}?ref={}",
            p.repo, p.path, p.branch
        ))
        .await
        .ok()
        .and_then(|r| {
            r.json
                .get("sha")
                .and_then(|s| s.as_str())
                .map(str::to_owned)
        });
    let mut put = json!({
        "message": p.title,
        "content": base64::engine::general_purpose::STANDARD.encode(p.content),
        "branch": p.branch,
    });
    if let Some(s) = existing {
        put["sha"] = json!(s);
    }
    api.put(&format!("/repos/{}/contents/{}", p.repo, p.path), &put)
        .await?;
    let owner = p.repo.split('/').next().unwrap_or_default();
    let open = api
        .get(&format!(
            "/repos/{}/pulls?state=open&head={owner}:{}&base={}",
            p.repo, p.branch, p.base
        ))
        .await?;
    if let Some(url) = open
        .json
        .as_array()
        .and_then(|a| a.first())
        .and_then(|pr| pr.get("html_url"))
        .and_then(|u| u.as_str())
    {
        return Ok(url.to_string());
    }
    let pr = api
        .post(
            &format!("/repos/{}/pulls", p.repo),
            &json!({"title": p.title, "head": p.branch, "base": p.base, "body": p.body}),
        )
        .await?;
    Ok(pr
        .json
        .get("html_url")
        .and_then(|u| u.as_str())
        .unwrap_or_default()
        .to_string())
}
