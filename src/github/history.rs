//! The history kept on a branch of the repository, through the contents
//! API: read the JSON Lines file, write it back with one more line. The
//! branch is made from the default branch when it does not exist; nothing
//! else in the repository is touched.

use base64::Engine as _;
use serde_json::json;

use super::api::Api;
use crate::error::UserError;

/// Largest file the contents API returns inline.
pub const MAX_FILE: usize = 1024 * 1024;

/// Where the history lives.
#[derive(Debug, Clone)]
pub struct Branch<'a> {
    /// owner/name.
    pub repo: &'a str,
    /// The branch (made when missing).
    pub branch: &'a str,
    /// Path of the file on it.
    pub path: &'a str,
}

/// The file and its blob sha, or `None` when the branch or file does not exist yet.
pub async fn fetch(api: &Api, b: &Branch<'_>) -> Result<Option<(Vec<u8>, String)>, UserError> {
    let Some(reply) = api
        .get_if_any(&format!(
            "/repos/{}/contents/{}?ref={}",
            b.repo, b.path, b.branch
        ))
        .await?
    else {
        return Ok(None);
    };
    let field = |k: &str| reply.json.get(k).and_then(|v| v.as_str()).unwrap_or("");
    let sha = field("sha").to_string();
    if field("encoding") != "base64" {
        return Err(UserError::Environment {
            message: format!(
                "`{}` on branch `{}` is not returned inline (over {} MB, or not a file)",
                b.path,
                b.branch,
                MAX_FILE / (1024 * 1024)
            ),
            hint: Some(
                "give the history a new file on the branch (e.g. `history/novel-2027.jsonl`)"
                    .into(),
            ),
        });
    }
    let text: String = field("content").split_whitespace().collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| UserError::Environment {
            message: format!(
                "`{}` on branch `{}`: the API's content is not base64 ({e})",
                b.path, b.branch
            ),
            hint: None,
        })?;
    Ok(Some((bytes, sha)))
}

/// Write `content` to the file on the branch (`sha`: the blob it replaces).
pub async fn store(
    api: &Api,
    b: &Branch<'_>,
    content: &[u8],
    sha: Option<&str>,
    message: &str,
) -> Result<(), UserError> {
    if content.len() > MAX_FILE {
        return Err(UserError::Environment {
            message: format!(
                "the history would be {} kB, over the {} MB the contents API reads back",
                content.len() / 1024,
                MAX_FILE / (1024 * 1024)
            ),
            hint: Some(
                "give the history a new file on the branch (e.g. `history/novel-2027.jsonl`)"
                    .into(),
            ),
        });
    }
    ensure_branch(api, b).await?;
    let mut put = json!({
        "message": message,
        "content": base64::engine::general_purpose::STANDARD.encode(content),
        "branch": b.branch,
    });
    if let Some(s) = sha {
        put["sha"] = json!(s);
    }
    api.put(&format!("/repos/{}/contents/{}", b.repo, b.path), &put)
        .await?;
    Ok(())
}

async fn ensure_branch(api: &Api, b: &Branch<'_>) -> Result<(), UserError> {
    let refs = format!("/repos/{}/git/ref/heads/{}", b.repo, b.branch);
    if api.get_if_any(&refs).await?.is_some() {
        return Ok(());
    }
    let repo = api.get(&format!("/repos/{}", b.repo)).await?;
    let default = repo
        .json
        .get("default_branch")
        .and_then(|d| d.as_str())
        .unwrap_or("main")
        .to_string();
    let sha = super::propose::branch_sha(api, b.repo, &default).await?;
    api.post(
        &format!("/repos/{}/git/refs", b.repo),
        &json!({"ref": format!("refs/heads/{}", b.branch), "sha": sha}),
    )
    .await?;
    Ok(())
}
