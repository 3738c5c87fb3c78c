//! GitHub Actions workflow commands and files: masks, groups, annotations,
//! step outputs and the job summary.

use std::io::Write;
use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};

use crate::error::UserError;

/// GitHub's limit for one step's summary.
pub const MAX_SUMMARY_BYTES: usize = 1024 * 1024;
/// At most this many annotations per run.
pub const MAX_ANNOTATIONS: usize = 10;

/// The standard Actions environment.
#[derive(Debug, Clone, Default)]
pub struct ActionsEnv {
    /// `GITHUB_ACTIONS=true`.
    pub active: bool,
    /// `GITHUB_EVENT_NAME`.
    pub event_name: Option<String>,
    /// `GITHUB_EVENT_PATH`.
    pub event_path: Option<PathBuf>,
    /// `GITHUB_REPOSITORY` (owner/name).
    pub repository: Option<String>,
    /// `GITHUB_API_URL`, default `https://api.github.com`.
    pub api_url: String,
    /// `GITHUB_TOKEN`.
    pub token: Option<crate::tokens::Secret>,
    /// `GITHUB_STEP_SUMMARY`.
    pub step_summary: Option<PathBuf>,
    /// `GITHUB_OUTPUT`.
    pub output: Option<PathBuf>,
    /// The workflow run's page (`GITHUB_SERVER_URL`/repo/actions/runs/id).
    pub run_url: Option<String>,
}

impl ActionsEnv {
    /// Read the environment of this process.
    pub fn from_env() -> Self {
        Self::from_lookup(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    }

    /// Read from any lookup (tests pass a map).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Self {
        Self {
            active: get("GITHUB_ACTIONS").as_deref() == Some("true"),
            event_name: get("GITHUB_EVENT_NAME"),
            event_path: get("GITHUB_EVENT_PATH").map(PathBuf::from),
            repository: get("GITHUB_REPOSITORY"),
            api_url: get("GITHUB_API_URL").unwrap_or_else(|| "https://api.github.com".into()),
            token: get("GITHUB_TOKEN").map(crate::tokens::Secret::new),
            step_summary: get("GITHUB_STEP_SUMMARY").map(PathBuf::from),
            output: get("GITHUB_OUTPUT").map(PathBuf::from),
            run_url: run_url(
                get("GITHUB_SERVER_URL").as_deref(),
                get("GITHUB_REPOSITORY").as_deref(),
                get("GITHUB_RUN_ID").as_deref(),
            ),
        }
    }
}

/// The workflow run's page (where its artifacts are listed), when the
/// runner's variables are well-formed: an https server without
/// credentials, an `owner/name` repository, a numeric run id.
fn run_url(server: Option<&str>, repo: Option<&str>, run: Option<&str>) -> Option<String> {
    let server = reqwest::Url::parse(server?).ok()?;
    let safe_server = server.scheme() == "https"
        && server.username().is_empty()
        && server.password().is_none()
        && server.query().is_none()
        && server.host_str().is_some();
    let repo = repo?;
    let safe_repo = repo.split('/').count() == 2
        && repo
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
        && !repo.contains("..");
    let run = run?;
    let safe_run = !run.is_empty() && run.chars().all(|c| c.is_ascii_digit());
    (safe_server && safe_repo && safe_run).then(|| {
        format!(
            "{}/{repo}/actions/runs/{run}",
            server.as_str().trim_end_matches('/')
        )
    })
}

/// Escape a workflow-command message.
pub fn escape_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// Escape a workflow-command property value.
pub fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

/// `::add-mask::` so the runner hides the value in every later log line.
pub fn mask(out: &mut impl Write, value: &str) {
    if !value.is_empty() {
        let _ = writeln!(out, "::add-mask::{}", escape_data(value));
    }
}

/// Start a collapsible log group.
pub fn group(out: &mut impl Write, title: &str) {
    let _ = writeln!(out, "::group::{}", escape_data(title));
}

/// End the current log group.
pub fn endgroup(out: &mut impl Write) {
    let _ = writeln!(out, "::endgroup::");
}

/// An `::error` or `::warning` annotation.
pub fn annotate(out: &mut impl Write, level: &str, title: &str, message: &str) {
    let _ = writeln!(
        out,
        "::{level} title={}::{}",
        escape_property(title),
        escape_data(message)
    );
}

fn append(path: &Path, text: &str) -> Result<(), UserError> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|source| UserError::Write {
            path: path.to_path_buf(),
            source,
        })?;
    f.write_all(text.as_bytes())
        .map_err(|source| UserError::Write {
            path: path.to_path_buf(),
            source,
        })
}

/// Append step outputs, every value in a heredoc block with a random
/// delimiter that the value does not contain.
pub fn set_outputs(path: &Path, outputs: &[(&str, String)]) -> Result<(), UserError> {
    let mut text = String::new();
    // The delimiter only has to be absent from the value (checked below);
    // a clock-seeded generator keeps it unpredictable enough.
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
        ^ u64::from(std::process::id());
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
    for (key, value) in outputs {
        let delimiter = loop {
            let d = format!("ghadelimiter_{:016x}", rng.random::<u64>());
            if !value.contains(&d) {
                break d;
            }
        };
        text.push_str(&format!("{key}<<{delimiter}\n{value}\n{delimiter}\n"));
    }
    append(path, &text)
}

/// Append Markdown to the job summary, cut to stay under 1 MiB.
pub fn append_summary(path: &Path, markdown: &str) -> Result<(), UserError> {
    let used = std::fs::metadata(path)
        .map(|m| m.len() as usize)
        .unwrap_or(0);
    let room = MAX_SUMMARY_BYTES.saturating_sub(used).saturating_sub(200);
    let mut text = markdown.to_string();
    if text.len() > room {
        let mut cut = room;
        while cut > 0 && !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str("\n\n_… cut to fit the job summary's 1 MiB limit; the report artifact has everything._\n");
    }
    text.push('\n');
    append(path, &text)
}

#[cfg(test)]
mod tests {

    #[test]
    fn the_run_page_is_linked_only_when_the_runner_vars_are_well_formed() {
        let u = |a, b, c| super::run_url(Some(a), Some(b), Some(c));
        assert_eq!(
            u("https://github.com", "o/r", "42").as_deref(),
            Some("https://github.com/o/r/actions/runs/42")
        );
        assert_eq!(u("http://github.com", "o/r", "42"), None);
        assert_eq!(u("https://x:y@github.com", "o/r", "42"), None);
        assert_eq!(u("https://github.com", "o/r)](javascript:x", "42"), None);
        assert_eq!(u("https://github.com", "o/../r", "42"), None);
        assert_eq!(u("https://github.com", "o/r", "42a"), None);
    }

    use super::*;

    #[test]
    fn escaping_follows_the_runner_rules() {
        assert_eq!(escape_data("50%\r\nnext"), "50%25%0D%0Anext");
        assert_eq!(escape_property("a:b,c"), "a%3Ab%2Cc");
        let mut out = Vec::new();
        annotate(&mut out, "error", "TTFT p50: step", "line1\nline2");
        assert_eq!(
            String::from_utf8(out).expect("utf8"),
            "::error title=TTFT p50%3A step::line1%0Aline2\n"
        );
    }

    #[test]
    fn outputs_use_heredoc_blocks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("out");
        set_outputs(&p, &[("verdict", "fail".into()), ("report", "a\nb".into())]).expect("written");
        let text = std::fs::read_to_string(&p).expect("read");
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("verdict<<ghadelimiter_"));
        assert_eq!(lines[1], "fail");
        assert_eq!(lines[2], lines[0].trim_start_matches("verdict<<"));
        assert_eq!(&lines[4..6], ["a", "b"]);
    }

    #[test]
    fn summary_is_cut_under_one_mebibyte() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("summary");
        append_summary(&p, &"字".repeat(600_000)).expect("written");
        let len = std::fs::metadata(&p).expect("meta").len() as usize;
        assert!(len <= MAX_SUMMARY_BYTES, "{len}");
        assert!(std::fs::read_to_string(&p).expect("utf8").contains("1 MiB"));
    }
}
