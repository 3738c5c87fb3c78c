//! A small GitHub REST client over octocrab's raw requests: it sees status
//! codes and headers, so it can retry 5xx, 429 and secondary rate limits
//! honouring `Retry-After`, and turn permission errors into hints.

use std::time::Duration;

use octocrab::Octocrab;
use serde::Serialize;

use crate::error::UserError;

/// Longest wait for a connection to the GitHub API.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest silence while reading or writing one request.
pub const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest one call (request and body) may take, whatever the server does.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Retries and their waits.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub attempts: u32,
    /// Wait before the second attempt when the server gives no `Retry-After`; doubled each time.
    pub base: Duration,
    /// Longest wait honoured from `Retry-After`.
    pub max_wait: Duration,
    /// Longest one call (request and body) may take.
    pub call_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 4,
            base: Duration::from_secs(1),
            max_wait: Duration::from_secs(60),
            call_timeout: CALL_TIMEOUT,
        }
    }
}

/// What an API call returned.
#[derive(Debug)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Parsed JSON body (`Null` when empty or not JSON).
    pub json: serde_json::Value,
    /// `Link` header, for pagination.
    pub link: Option<String>,
}

/// The client.
#[derive(Debug, Clone)]
pub struct Api {
    octo: Octocrab,
    retry: RetryPolicy,
    /// The token, only to redact it from error texts a server echoes.
    token: crate::tokens::Secret,
}

#[derive(Debug, Clone, Copy)]
enum Method {
    Get,
    Post,
    Patch,
    Put,
}

impl Api {
    /// A client for `api_url` (GitHub Enterprise's `/api/v3` included).
    pub fn new(api_url: &str, token: &str, retry: RetryPolicy) -> Result<Self, UserError> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let url = crate::target::Target::parse(
            api_url,
            crate::target::Source {
                name: "GITHUB_API_URL",
            },
        )?;
        let api_url = url.to_string();
        let env_err = |e: String| UserError::Environment {
            message: format!("cannot set up the GitHub client for `{api_url}`: {e}"),
            hint: Some("check `GITHUB_API_URL`".into()),
        };
        let octo = Octocrab::builder()
            .base_uri(api_url.as_str())
            .map_err(|e| env_err(e.to_string()))?
            .personal_token(token.to_string())
            .set_connect_timeout(Some(CONNECT_TIMEOUT))
            .set_read_timeout(Some(IO_TIMEOUT))
            .set_write_timeout(Some(IO_TIMEOUT))
            .build()
            .map_err(|e| env_err(e.to_string()))?;
        Ok(Self {
            octo,
            retry,
            token: crate::tokens::Secret::new(token.to_string()),
        })
    }

    /// GET a path (relative to the API URL).
    pub async fn get(&self, path: &str) -> Result<Reply, UserError> {
        self.send(Method::Get, path, None::<&()>).await
    }

    /// GET a path that may not exist: `None` on 404.
    pub async fn get_if_any(&self, path: &str) -> Result<Option<Reply>, UserError> {
        match self.send(Method::Get, path, None::<&()>).await {
            Ok(r) => Ok(Some(r)),
            Err(UserError::Environment { message, .. })
                if message.contains("answered HTTP 404") =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// POST JSON.
    pub async fn post<B: Serialize>(&self, path: &str, body: &B) -> Result<Reply, UserError> {
        self.send(Method::Post, path, Some(body)).await
    }

    /// PATCH JSON.
    pub async fn patch<B: Serialize>(&self, path: &str, body: &B) -> Result<Reply, UserError> {
        self.send(Method::Patch, path, Some(body)).await
    }

    /// PUT JSON.
    pub async fn put<B: Serialize>(&self, path: &str, body: &B) -> Result<Reply, UserError> {
        self.send(Method::Put, path, Some(body)).await
    }

    async fn send<B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<Reply, UserError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let call = async {
                let resp = match method {
                    Method::Get => self.octo._get(path).await,
                    Method::Post => self.octo._post(path, body).await,
                    Method::Patch => self.octo._patch(path, body).await,
                    Method::Put => self.octo._put(path, body).await,
                }
                .map_err(|e| self.token.redact_from(&e.to_string()))?;
                let status = resp.status().as_u16();
                let header = |name: &str| {
                    resp.headers()
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned)
                };
                let retry_after = header("retry-after").and_then(|v| {
                    crate::engine::request::parse_retry_after(&v, std::time::SystemTime::now())
                });
                let link = header("link");
                let text = self.octo.body_to_string(resp).await.unwrap_or_default();
                Ok::<_, String>((status, retry_after, link, text))
            };
            // A server that accepts the connection and never answers must
            // not hold the job: every call has a bound of its own.
            let limit = self.retry.call_timeout;
            let result = match tokio::time::timeout(limit, call).await {
                Ok(r) => r,
                Err(_) => Err(format!("no answer within {limit:?}")),
            };
            let (status, retry_after, link, text) = match result {
                Ok(parts) => parts,
                Err(e) if attempt < self.retry.attempts => {
                    crate::output::err_line(&format!("GitHub API {path}: {e}; retrying"));
                    tokio::time::sleep(self.backoff(attempt, None)).await;
                    continue;
                }
                Err(e) => {
                    return Err(UserError::Environment {
                        message: format!("GitHub API request to {path} failed: {e}"),
                        hint: Some("check `GITHUB_API_URL` and the network".into()),
                    })
                }
            };
            let secondary = status == 403
                && (retry_after.is_some() || text.to_lowercase().contains("rate limit"));
            let retryable = status >= 500 || status == 429 || secondary;
            if retryable && attempt < self.retry.attempts {
                let wait = self.backoff(attempt, retry_after);
                eprintln!("GitHub API {path}: HTTP {status}; retrying in {wait:?}");
                tokio::time::sleep(wait).await;
                continue;
            }
            let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
            if status >= 400 {
                let e = api_error(status, path, &json);
                return Err(match e {
                    UserError::Environment { message, hint } => UserError::Environment {
                        message: self.token.redact_from(&message),
                        hint,
                    },
                    other => other,
                });
            }
            return Ok(Reply { status, json, link });
        }
    }

    fn backoff(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        match retry_after {
            Some(d) => d.min(self.retry.max_wait),
            None => self.retry.base * 2u32.saturating_pow(attempt - 1),
        }
    }
}

/// Turn an error status into an error with a hint.
fn api_error(status: u16, path: &str, json: &serde_json::Value) -> UserError {
    let message = json
        .get("message")
        .and_then(|m| m.as_str())
        .unwrap_or("")
        .to_string();
    let hint = match status {
        401 => Some("the token was refused: pass `github-token` (or set `GITHUB_TOKEN`)".to_string()),
        403 if message.contains("Resource not accessible by integration") => Some(
            "the workflow's token may not write here: add\n  permissions:\n    pull-requests: write\n    contents: read\nto the job (fork pull requests never get write access: use the workflow_run pattern)"
                .to_string(),
        ),
        403 | 404 => Some("check that the token can see the repository and has the permissions the job declares".to_string()),
        _ => None,
    };
    UserError::Environment {
        message: format!("GitHub API {path} answered HTTP {status}: {message}"),
        hint,
    }
}

/// True when a `Link` header has a `rel="next"`.
pub fn has_next(link: Option<&str>) -> bool {
    link.is_some_and(|l| l.split(',').any(|part| part.contains("rel=\"next\"")))
}
