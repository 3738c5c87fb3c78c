//! Scenario files: everything specific to one API, so a change of API needs
//! no recompile.
//!
//! A scenario is TOML. It is read in two stages: serde structs mirror the file
//! (unknown keys refused, spans kept for line numbers), then [`Scenario::load`]
//! checks the meaning (templates compile and render with sample values, bodies
//! are JSON, pointers are pointers) and builds the typed form the engine uses.

pub mod data;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use sha2::{Digest, Sha256};
use toml::Spanned;

use crate::error::UserError;
use crate::stream::chunk::StreamSpec;
pub use data::DataSet;

/// Bundled scenarios, selectable by name instead of a path.
pub const BUNDLED: &[(&str, &str)] = &[
    ("novel", include_str!("../../scenarios/novel.toml")),
    (
        "openai-chat",
        include_str!("../../scenarios/openai-chat.toml"),
    ),
];

const BUILTIN_VARS: &[&str] = &["vars", "data", "vu", "user_id", "iteration"];

// ---------------------------------------------------------------- file form

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileScenario {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    base_url: Option<Spanned<String>>,
    #[serde(default)]
    auth: FileAuth,
    #[serde(default)]
    load: FileLoad,
    #[serde(default)]
    timeouts: FileTimeouts,
    #[serde(default)]
    data: FileData,
    #[serde(default)]
    slo: Slo,
    #[serde(default)]
    vars: BTreeMap<String, toml::Value>,
    /// Gate policy.
    #[serde(default)]
    gate: Option<crate::policy::PolicyFile>,
    #[serde(default)]
    safety: FileSafety,
    steps: Vec<FileStep>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileAuth {
    #[serde(default = "default_auth_kind")]
    kind: AuthKind,
    #[serde(default = "default_auth_header")]
    header: String,
    #[serde(default = "default_auth_scheme")]
    scheme: String,
}

impl Default for FileAuth {
    fn default() -> Self {
        Self {
            kind: default_auth_kind(),
            header: default_auth_header(),
            scheme: default_auth_scheme(),
        }
    }
}

fn default_auth_kind() -> AuthKind {
    AuthKind::Bearer
}
fn default_auth_header() -> String {
    "Authorization".into()
}
fn default_auth_scheme() -> String {
    "Bearer".into()
}

/// How requests are authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthKind {
    /// A token from the tokens CSV, one per virtual user, round-robin.
    Bearer,
    /// No credentials.
    None,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLoad {
    concurrency: Option<u32>,
    duration: Option<Dur>,
    requests: Option<u64>,
    warmup: Option<Dur>,
    think_time: Option<Dur>,
    seed: Option<u64>,
    blocks: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTimeouts {
    connect: Option<Dur>,
    first_token: Option<Dur>,
    idle: Option<Dur>,
    total: Option<Dur>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSafety {
    allow_hosts: Option<Vec<String>>,
    abort_error_rate: Option<f64>,
    abort_window: Option<Dur>,
    abort_min_requests: Option<u64>,
    honor_retry_after: Option<bool>,
    max_response_bytes: Option<usize>,
    circuit_breaker: Option<bool>,
    backoff: Option<Dur>,
    backoff_max: Option<Dur>,
}

/// Protections for the target and for the run itself.
#[derive(Debug, Clone, PartialEq)]
pub struct Safety {
    /// Hosts a run may target; empty allows any.
    pub allow_hosts: Vec<String>,
    /// Circuit breaker: stop when the error share over `abort_window` passes this.
    pub abort_error_rate: Option<f64>,
    /// The breaker's sliding window.
    pub abort_window: Duration,
    /// Fewest requests in the window before the breaker may trip.
    pub abort_min_requests: u64,
    /// After an error answer carrying `Retry-After` (seconds or an HTTP
    /// date), the user waits that long (at most [`MAX_RETRY_AFTER`]).
    pub honor_retry_after: bool,
    /// Largest response body read before it counts as a protocol error.
    pub max_response_bytes: usize,
    /// First pause after a failed request; doubled with each consecutive
    /// failure of the same user, half of it random. Zero turns it off.
    pub backoff: Duration,
    /// Longest back-off pause.
    pub backoff_max: Duration,
}

/// Longest `Retry-After` honoured.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

impl Default for Safety {
    fn default() -> Self {
        Self {
            allow_hosts: Vec::new(),
            abort_error_rate: Some(0.5),
            abort_window: Duration::from_secs(10),
            abort_min_requests: 10,
            honor_retry_after: true,
            max_response_bytes: crate::stream::MAX_BODY,
            backoff: Duration::from_millis(100),
            backoff_max: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileData {
    file: Option<PathBuf>,
}

/// Service-level objectives; a request meeting all of them counts to goodput.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Slo {
    /// Time to first token, milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttft_ms: Option<f64>,
    /// Time per output token, milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tpot_ms: Option<f64>,
    /// End-to-end latency, milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub e2e_ms: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileStep {
    name: String,
    #[serde(default = "default_method")]
    method: String,
    path: Spanned<String>,
    #[serde(default)]
    body: Option<Spanned<String>>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default = "default_response")]
    response: ResponseKind,
    #[serde(default)]
    expect_status: Option<Vec<u16>>,
    #[serde(default)]
    extract: BTreeMap<String, Pointer>,
    #[serde(default)]
    capture_text: Option<String>,
    #[serde(default)]
    stream: Option<FileStream>,
    #[serde(default)]
    think_time: Option<Dur>,
}

fn default_method() -> String {
    "POST".into()
}
fn default_response() -> ResponseKind {
    ResponseKind::Sse
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileStream {
    #[serde(default)]
    content: Option<Vec<Pointer>>,
    #[serde(default)]
    usage_completion_tokens: Option<Pointer>,
    #[serde(default)]
    usage_prompt_tokens: Option<Pointer>,
    #[serde(default)]
    done: Option<String>,
    #[serde(default)]
    require_done: Option<bool>,
}

/// The kind of response a step expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ResponseKind {
    /// A Server-Sent Events stream of chat-completion chunks.
    Sse,
    /// One JSON document.
    Json,
}

/// A duration written as `"15s"`, `"500ms"`, `"2m"`.
#[derive(Debug, Clone, Copy)]
struct Dur(Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s)
            .map(Dur)
            .map_err(serde::de::Error::custom)
    }
}

/// Parse a human duration (`15s`, `500ms`, `2m`, `1h30m`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s.trim()).map_err(|e| {
        format!("`{s}` is not a duration ({e}); write it like \"15s\", \"500ms\" or \"2m\"")
    })?;
    // Every duration is added to clock readings; a bound here means no
    // deadline anywhere can overflow.
    if d > caps::MAX_ANY_DURATION {
        return Err(format!(
            "`{s}` is longer than the 7 days any duration may be"
        ));
    }
    Ok(d)
}

/// A JSON pointer (`/choices/0/delta/content`).
#[derive(Debug, Clone)]
struct Pointer(String);

impl<'de> Deserialize<'de> for Pointer {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if !(s.is_empty() || s.starts_with('/')) {
            return Err(serde::de::Error::custom(format!(
                "`{s}` is not a JSON pointer; it must start with `/`, like \"/id\" or \"/choices/0/delta/content\""
            )));
        }
        Ok(Pointer(s))
    }
}

// ---------------------------------------------------------------- typed form

/// Load settings of a scenario (command-line flags override them).
#[derive(Debug, Clone, PartialEq)]
pub struct LoadSpec {
    /// Virtual users.
    pub concurrency: u32,
    /// How long to send new requests; `None` with `requests` set means until the count.
    pub duration: Option<Duration>,
    /// Stop after this many requests.
    pub requests: Option<u64>,
    /// Requests started before this offset are not measured.
    pub warmup: Duration,
    /// Pause between workflow iterations of one user.
    pub think_time: Duration,
    /// Seed for sampling the data set.
    pub seed: u64,
    /// Number of time blocks the measured window is cut into (at least 6).
    pub blocks: u32,
}

/// The one set of limits that protects the target and this machine, for
/// scenario values and command-line flags alike.
pub mod caps {
    use std::time::Duration;

    use super::LoadSpec;

    /// Most virtual users.
    pub const MAX_USERS: u32 = 10_000;
    /// Longest run, whether it stops by duration or by request count.
    pub const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);
    /// Most requests one run may send.
    pub const MAX_REQUESTS: u64 = 100_000_000;
    /// Most time blocks (and duet slot pairs).
    pub const MAX_BLOCKS: u32 = 1_000;
    /// Longest think time.
    pub const MAX_THINK: Duration = Duration::from_secs(3600);
    /// Longest duration of any kind (timeouts, drain, back-off, …) accepted
    /// when parsed: clock arithmetic with it can never overflow.
    pub const MAX_ANY_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);

    /// A value over a limit, named by its scenario key (the command line
    /// maps the key to its flag).
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Exceeded {
        /// The scenario key.
        pub key: &'static str,
        /// What the limit is.
        pub message: String,
    }

    /// Check load settings against the limits.
    pub fn check(load: &LoadSpec) -> Result<(), Exceeded> {
        let over = |key, message: String| Err(Exceeded { key, message });
        if load.concurrency == 0 || load.concurrency > MAX_USERS {
            return over(
                "load.concurrency",
                format!("must be between 1 and {MAX_USERS}"),
            );
        }
        if let Some(n) = load.requests {
            if n == 0 || n > MAX_REQUESTS {
                return over(
                    "load.requests",
                    format!("must be between 1 and {MAX_REQUESTS}"),
                );
            }
        }
        if let Some(d) = load.duration {
            if d.is_zero() || d > MAX_DURATION {
                return over(
                    "load.duration",
                    "must be more than 0 and at most 24h".into(),
                );
            }
        }
        if load.warmup > MAX_DURATION {
            return over("load.warmup", "must be at most 24h".into());
        }
        if load.blocks < 6 || load.blocks > MAX_BLOCKS {
            return over(
                "load.blocks",
                format!(
                    "must be between 6 (the gate needs at least six time blocks) and {MAX_BLOCKS}"
                ),
            );
        }
        if load.think_time > MAX_THINK {
            return over("load.think_time", "must be at most 1h".into());
        }
        Ok(())
    }
}

/// Per-phase request timeouts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timeouts {
    /// TCP (and TLS) connect.
    pub connect: Duration,
    /// Request start to the first content event (or the full body of a JSON step).
    pub first_token: Duration,
    /// Longest gap between two reads of a stream.
    pub idle: Duration,
    /// Whole request.
    pub total: Duration,
}

/// Authentication settings.
#[derive(Debug, Clone)]
pub struct Auth {
    /// Bearer or none.
    pub kind: AuthKind,
    /// Header name.
    pub header: String,
    /// Scheme word before the token.
    pub scheme: String,
}

/// One request of the workflow.
#[derive(Debug, Clone)]
pub struct Step {
    /// Name used in results and reports.
    pub name: String,
    /// HTTP method.
    pub method: reqwest::Method,
    /// Template name of the path.
    pub path_template: String,
    /// Template name of the body, if any.
    pub body_template: Option<String>,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// SSE or JSON.
    pub response: ResponseKind,
    /// Accepted statuses; empty means any 2xx.
    pub expect_status: Vec<u16>,
    /// Variable name → JSON pointer into the response.
    pub extract: Vec<(String, String)>,
    /// Variable that receives the streamed text.
    pub capture_text: Option<String>,
    /// How to read stream events.
    pub stream: StreamSpec,
    /// Pause after this step.
    pub think_time: Duration,
}

/// A validated scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Scenario name.
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// Where it came from (a path, or `bundled:NAME`).
    pub origin: String,
    /// sha256 of the scenario text, hex.
    pub sha256: String,
    /// Default target.
    pub base_url: Option<String>,
    /// Authentication.
    pub auth: Auth,
    /// Load settings.
    pub load: LoadSpec,
    /// Timeouts.
    pub timeouts: Timeouts,
    /// Objectives for goodput.
    pub slo: Slo,
    /// Template variables: the file's `[vars]` with `--var` overrides.
    pub vars: serde_json::Map<String, serde_json::Value>,
    /// The `--var` overrides as given (recorded for the reproduce command).
    pub var_overrides: BTreeMap<String, String>,
    /// The gate policy (defaults overlaid with the `[gate]` table).
    pub gate: crate::policy::Policy,
    /// Protections (`[safety]`).
    pub safety: Safety,
    /// The data set.
    pub data: Arc<DataSet>,
    /// Workflow steps in order.
    pub steps: Vec<Step>,
    /// Compiled templates.
    pub templates: Arc<minijinja::Environment<'static>>,
}

fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let before = &src[..offset.min(src.len())];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rfind('\n')
        .map_or(before.len(), |i| before.len() - i - 1)
        + 1;
    (line, col)
}

impl Scenario {
    /// Load a scenario from a path, or a bundled one by name (`novel`,
    /// `openai-chat`). `vars` override the file's `[vars]`.
    pub fn load(spec: &str, var_overrides: &[(String, String)]) -> Result<Self, UserError> {
        let path = Path::new(spec);
        if path.exists() {
            let text = crate::error::read_to_string(path)?;
            return Self::parse(&text, path, path.parent(), var_overrides);
        }
        if let Some((name, text)) = BUNDLED.iter().find(|(n, _)| *n == spec) {
            let origin = PathBuf::from(format!("bundled:{name}"));
            return Self::parse(text, &origin, None, var_overrides);
        }
        Err(UserError::Read {
            path: path.to_path_buf(),
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no such file, and not a bundled scenario name",
            ),
        })
    }

    /// Parse scenario text. `origin` names it in errors; relative data paths
    /// resolve against `dir`.
    pub fn parse(
        text: &str,
        origin: &Path,
        dir: Option<&Path>,
        var_overrides: &[(String, String)],
    ) -> Result<Self, UserError> {
        let invalid =
            |place: Option<String>, msg: String| UserError::invalid("scenario", origin, place, msg);
        let file: FileScenario = toml::from_str(text).map_err(|e| {
            let place = e.span().map(|s| {
                let (l, c) = line_col(text, s.start);
                format!("line {l}, column {c}")
            });
            invalid(place, e.message().trim().to_string())
        })?;
        let at = |span: std::ops::Range<usize>, key: &str| {
            let (l, _) = line_col(text, span.start);
            Some(format!("line {l}, key `{key}`"))
        };

        if file.name.chars().any(char::is_control) {
            return Err(invalid(
                Some("key `name`".into()),
                "the name may not hold control characters (newlines, tabs, escapes)".into(),
            ));
        }
        if file.name.trim().is_empty() {
            return Err(invalid(
                Some("key `name`".into()),
                "the scenario needs a name".into(),
            ));
        }
        if file.steps.is_empty() {
            return Err(invalid(None, "the workflow has no `[[steps]]`".into()));
        }

        let base_url = match &file.base_url {
            Some(u) => {
                let url = crate::target::parse_base(
                    u.get_ref(),
                    crate::target::Source { name: "base_url" },
                )
                .map_err(|e| {
                    let hint = e.hint();
                    let err = invalid(at(u.span(), "base_url"), e.to_string());
                    match hint {
                        Some(h) => err.with_hint(h),
                        None => err,
                    }
                })?;
                Some(crate::target::base_text(&url))
            }
            None => None,
        };

        let l = &file.load;
        let load = LoadSpec {
            concurrency: l.concurrency.unwrap_or(4),
            duration: l.duration.map(|d| d.0).or(if l.requests.is_some() {
                None
            } else {
                Some(Duration::from_secs(30))
            }),
            requests: l.requests,
            warmup: l.warmup.map_or(Duration::ZERO, |d| d.0),
            think_time: l.think_time.map_or(Duration::ZERO, |d| d.0),
            seed: l.seed.unwrap_or(1),
            blocks: l.blocks.unwrap_or(10),
        };
        caps::check(&load).map_err(|e| invalid(Some(format!("`{}`", e.key)), e.message))?;
        let t = &file.timeouts;
        let timeouts = Timeouts {
            connect: t.connect.map_or(Duration::from_secs(10), |d| d.0),
            first_token: t.first_token.map_or(Duration::from_secs(60), |d| d.0),
            idle: t.idle.map_or(Duration::from_secs(30), |d| d.0),
            total: t.total.map_or(Duration::from_secs(300), |d| d.0),
        };

        let data = match &file.data.file {
            Some(p) => {
                let full = match dir {
                    Some(d) if p.is_relative() => d.join(p),
                    _ => p.clone(),
                };
                let txt = crate::error::read_to_string(&full)?;
                DataSet::parse(&txt, &full)?
            }
            None => DataSet::bundled(),
        };
        let data = Arc::new(data);

        let mut vars = serde_json::Map::new();
        for (k, v) in &file.vars {
            let j = serde_json::to_value(v)
                .map_err(|e| invalid(Some(format!("`vars.{k}`")), e.to_string()))?;
            vars.insert(k.clone(), j);
        }
        for (k, v) in var_overrides {
            // A number or boolean on the command line stays one.
            let j = serde_json::from_str::<serde_json::Value>(v)
                .ok()
                .filter(|j| !j.is_string() && !j.is_object() && !j.is_array())
                .unwrap_or_else(|| serde_json::Value::String(v.clone()));
            vars.insert(k.clone(), j);
        }

        let gate = crate::policy::Policy::from_file(&file.gate.clone().unwrap_or_default())
            .map_err(|m| invalid(Some("table `[gate]`".into()), m))?;

        let fs = &file.safety;
        let d = Safety::default();
        let safety = Safety {
            allow_hosts: fs.allow_hosts.clone().unwrap_or_default(),
            abort_error_rate: match fs.circuit_breaker {
                Some(false) => None,
                _ => fs.abort_error_rate.or(d.abort_error_rate),
            },
            abort_window: fs.abort_window.map_or(d.abort_window, |w| w.0),
            abort_min_requests: fs.abort_min_requests.unwrap_or(d.abort_min_requests),
            honor_retry_after: fs.honor_retry_after.unwrap_or(d.honor_retry_after),
            max_response_bytes: fs.max_response_bytes.unwrap_or(d.max_response_bytes),
            backoff: fs.backoff.map_or(d.backoff, |b| b.0),
            backoff_max: fs.backoff_max.map_or(d.backoff_max, |b| b.0),
        };
        if safety.backoff > safety.backoff_max {
            return Err(invalid(
                Some("`safety.backoff`".into()),
                "must not be longer than `safety.backoff_max`".into(),
            ));
        }
        if safety.backoff_max > Duration::from_secs(600)
            || safety.abort_window > Duration::from_secs(3600)
        {
            return Err(invalid(
                Some("`safety.backoff_max` / `safety.abort_window`".into()),
                "at most 10m and 1h".into(),
            ));
        }
        if let Some(r) = safety.abort_error_rate {
            if !(r > 0.0 && r <= 1.0) {
                return Err(invalid(
                    Some("`safety.abort_error_rate`".into()),
                    format!("{r} must be in (0, 1]"),
                ));
            }
        }
        if safety.max_response_bytes == 0 {
            return Err(invalid(
                Some("`safety.max_response_bytes`".into()),
                "must be at least 1".into(),
            ));
        }

        let mut env = crate::scenario::template_env(data.clone());
        let mut steps = Vec::with_capacity(file.steps.len());
        let mut names = BTreeSet::new();
        for (i, s) in file.steps.iter().enumerate() {
            let key = |k: &str| format!("steps[{i}].{k}");
            if s.name.chars().any(char::is_control) {
                return Err(invalid(
                    Some(format!("`{}`", key("name"))),
                    "step names may not hold control characters (newlines, tabs, escapes)".into(),
                ));
            }
            if s.name.trim().is_empty() || !names.insert(s.name.clone()) {
                return Err(invalid(
                    Some(format!("`{}`", key("name"))),
                    format!("step names must be non-empty and unique (`{}`)", s.name),
                ));
            }
            if s.name == "workflow" {
                return Err(invalid(
                    Some(format!("`{}`", key("name"))),
                    "`workflow` is reserved for whole workflow iterations".into(),
                ));
            }
            let method = reqwest::Method::from_bytes(s.method.as_bytes()).map_err(|_| {
                invalid(
                    Some(format!("`{}`", key("method"))),
                    format!("`{}` is not an HTTP method", s.method),
                )
            })?;
            if !s.path.get_ref().starts_with('/') || s.path.get_ref().starts_with("//") {
                return Err(invalid(
                    at(s.path.span(), &key("path")),
                    format!(
                        "`{}` must start with a single `/`: request paths are joined to the target and cannot name another host",
                        s.path.get_ref()
                    ),
                ));
            }
            let path_name = format!("{}.path", s.name);
            env.add_template_owned(path_name.clone(), s.path.get_ref().clone())
                .map_err(|e| invalid(at(s.path.span(), &key("path")), template_message(&e)))?;
            let body_name = match &s.body {
                Some(b) => {
                    let n = format!("{}.body", s.name);
                    env.add_template_owned(n.clone(), b.get_ref().clone())
                        .map_err(|e| invalid(at(b.span(), &key("body")), template_message(&e)))?;
                    Some(n)
                }
                None => None,
            };
            for var in s.extract.keys().chain(s.capture_text.iter()) {
                if BUILTIN_VARS.contains(&var.as_str()) {
                    return Err(invalid(
                        Some(format!("`{}`", key("extract"))),
                        format!("`{var}` is a built-in variable; choose another name"),
                    ));
                }
            }
            let mut stream = StreamSpec::default();
            if let Some(fs) = &s.stream {
                if let Some(c) = &fs.content {
                    stream.content = c.iter().map(|p| p.0.clone()).collect();
                }
                if let Some(p) = &fs.usage_completion_tokens {
                    stream.usage_completion_tokens = Some(p.0.clone()).filter(|s| !s.is_empty());
                }
                if let Some(p) = &fs.usage_prompt_tokens {
                    stream.usage_prompt_tokens = Some(p.0.clone()).filter(|s| !s.is_empty());
                }
                if let Some(d) = &fs.done {
                    stream.done = d.clone();
                }
                if let Some(r) = fs.require_done {
                    stream.require_done = r;
                }
            }
            let stream = stream.finish();
            steps.push(Step {
                name: s.name.clone(),
                method,
                path_template: path_name,
                body_template: body_name,
                headers: s
                    .headers
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                response: s.response,
                expect_status: s.expect_status.clone().unwrap_or_default(),
                extract: s
                    .extract
                    .iter()
                    .map(|(k, p)| (k.clone(), p.0.clone()))
                    .collect(),
                capture_text: s.capture_text.clone(),
                stream,
                think_time: s.think_time.map_or(Duration::ZERO, |d| d.0),
            });
        }

        let scenario = Scenario {
            name: file.name,
            description: file.description,
            origin: origin.display().to_string(),
            sha256: hex_sha256(text.as_bytes()),
            base_url,
            auth: Auth {
                kind: file.auth.kind,
                header: file.auth.header,
                scheme: file.auth.scheme,
            },
            load,
            timeouts,
            slo: file.slo,
            vars,
            var_overrides: var_overrides.iter().cloned().collect(),
            gate,
            safety,
            data,
            steps,
            templates: Arc::new(env),
        };
        scenario.dry_run(&file.steps, text, origin)?;
        Ok(scenario)
    }

    /// Render every template once with sample values, in workflow order, so a
    /// misspelt variable or a body that is not JSON fails at load, not mid-run.
    fn dry_run(&self, file_steps: &[FileStep], text: &str, origin: &Path) -> Result<(), UserError> {
        let mut ctx = TemplateContext::new(self, 0, "user-0", 0, self.data.first());
        for (i, (step, fs)) in self.steps.iter().zip(file_steps).enumerate() {
            let place = |span: std::ops::Range<usize>, k: &str| {
                let (l, _) = line_col(text, span.start);
                Some(format!("line {l}, key `steps[{i}].{k}`"))
            };
            self.render(&step.path_template, &ctx).map_err(|e| {
                UserError::invalid(
                    "scenario",
                    origin,
                    place(fs.path.span(), "path"),
                    template_message(&e),
                )
            })?;
            if let (Some(b), Some(fb)) = (&step.body_template, &fs.body) {
                let body = self.render(b, &ctx).map_err(|e| {
                    UserError::invalid(
                        "scenario",
                        origin,
                        place(fb.span(), "body"),
                        template_message(&e),
                    )
                })?;
                serde_json::from_str::<serde_json::Value>(&body).map_err(|e| {
                    UserError::invalid(
                        "scenario",
                        origin,
                        place(fb.span(), "body"),
                        format!("the rendered body is not JSON ({e}); use `| tojson` for inserted strings"),
                    )
                })?;
            }
            for (var, _) in &step.extract {
                ctx.set(var, serde_json::Value::String(format!("sample-{var}")));
            }
            if let Some(var) = &step.capture_text {
                ctx.set(var, serde_json::Value::String(self.data.filler(40, 0)));
            }
        }
        Ok(())
    }

    /// Render a named template.
    pub fn render(&self, name: &str, ctx: &TemplateContext) -> Result<String, minijinja::Error> {
        self.templates.get_template(name)?.render(&ctx.values)
    }

    /// The scenario's short display form: name and hash prefix.
    pub fn label(&self) -> String {
        format!("{} ({})", self.name, short_hash(&self.sha256))
    }
}

fn template_message(e: &minijinja::Error) -> String {
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(&format!(": {s}"));
        src = s.source();
    }
    msg
}

/// The first 12 characters of a hash, for display; never slices by byte,
/// so a short or non-ASCII value from a file cannot panic.
pub fn short_hash(s: &str) -> String {
    s.chars().take(12).collect()
}

/// Hex sha256 of some bytes.
pub fn hex_sha256(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Most template instructions one render may run (a loop that never ends
/// fails at load, in the dry run).
pub const TEMPLATE_FUEL: u64 = 5_000_000;

/// Percent-encode everything but RFC 3986's unreserved characters.
pub fn encode_path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Values visible to the templates of one virtual user's iteration.
#[derive(Debug, Clone)]
pub struct TemplateContext {
    values: BTreeMap<String, minijinja::Value>,
}

impl TemplateContext {
    /// The context at the start of an iteration.
    pub fn new(
        scenario: &Scenario,
        vu: u32,
        user_id: &str,
        iteration: u64,
        data: BTreeMap<String, String>,
    ) -> Self {
        let mut values = BTreeMap::new();
        values.insert(
            "vars".into(),
            minijinja::Value::from_serialize(&scenario.vars),
        );
        values.insert("data".into(), minijinja::Value::from_serialize(&data));
        values.insert("vu".into(), minijinja::Value::from(vu));
        values.insert("user_id".into(), minijinja::Value::from(user_id));
        values.insert("iteration".into(), minijinja::Value::from(iteration));
        Self { values }
    }

    /// Set a variable extracted from a response.
    pub fn set(&mut self, name: &str, value: serde_json::Value) {
        self.values
            .insert(name.to_string(), minijinja::Value::from_serialize(&value));
    }
}

/// The template environment: strict about undefined variables, with a
/// `clip(n)` filter (first n characters) and a `filler(n)` function (n
/// characters of prose from the data set, for prompts of a set length).
pub fn template_env(data: Arc<DataSet>) -> minijinja::Environment<'static> {
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    // A template is data from a file: a loop may not run for ever.
    env.set_fuel(Some(TEMPLATE_FUEL));
    // Values put into a path are percent-encoded, so an extracted id like
    // `../../x?` stays one path segment and cannot traverse or add a query.
    env.set_formatter(|out, state, value| {
        if state.name().ends_with(".path") {
            let text = match value.as_str() {
                Some(s) => s.to_string(),
                None => value.to_string(),
            };
            if text == "." || text == ".." || text.is_empty() {
                return Err(minijinja::Error::new(
                    minijinja::ErrorKind::InvalidOperation,
                    format!("`{text}` cannot be a path segment"),
                ));
            }
            out.write_str(&encode_path_segment(&text)).map_err(|e| {
                minijinja::Error::new(minijinja::ErrorKind::WriteFailure, e.to_string())
            })
        } else {
            minijinja::escape_formatter(out, state, value)
        }
    });
    env.add_filter("clip", |s: String, n: usize| -> String {
        s.chars().take(n).collect()
    });
    // Like the built-in, but an undefined value is an error, not `null`, so
    // a misspelt variable in a body fails at load time.
    env.add_filter(
        "tojson",
        |v: minijinja::Value| -> Result<String, minijinja::Error> {
            if v.is_undefined() {
                return Err(minijinja::Error::new(
                    minijinja::ErrorKind::UndefinedError,
                    "`tojson` of an undefined value",
                ));
            }
            serde_json::to_string(&v).map_err(|e| {
                minijinja::Error::new(minijinja::ErrorKind::BadSerialization, e.to_string())
            })
        },
    );
    env.add_function(
        "filler",
        move |state: &minijinja::State, n: usize| -> String {
            let vu = state
                .lookup("vu")
                .and_then(|v| usize::try_from(v).ok())
                .unwrap_or(0);
            let it = state
                .lookup("iteration")
                .and_then(|v| usize::try_from(v).ok())
                .unwrap_or(0);
            data.filler(
                n.min(1 << 20),
                vu.wrapping_mul(131).wrapping_add(it.wrapping_mul(17)),
            )
        },
    );
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Scenario, UserError> {
        Scenario::parse(text, Path::new("s.toml"), None, &[])
    }

    const MINIMAL: &str = r#"
name = "t"
[[steps]]
name = "chat"
path = "/v1/chat/completions"
body = '{"model": {{ vars.model | tojson }}, "stream": true}'
[vars]
model = "m"
"#;

    #[test]
    fn bundled_scenarios_load() {
        for (name, _) in BUNDLED {
            let s = Scenario::load(name, &[]).expect("bundled scenario loads");
            assert!(!s.steps.is_empty());
        }
    }

    #[test]
    fn minimal_scenario_has_defaults() {
        let s = parse(MINIMAL).expect("valid");
        assert_eq!(s.load.concurrency, 4);
        assert_eq!(s.steps[0].method, reqwest::Method::POST);
        assert_eq!(s.steps[0].response, ResponseKind::Sse);
    }

    #[test]
    fn unknown_key_names_line() {
        let text = MINIMAL.replace("[vars]", "[load]\nconcurency = 3\n[vars]");
        let err = parse(&text).expect_err("unknown key").to_string();
        assert!(err.contains("s.toml"), "{err}");
        assert!(err.contains("line 8"), "{err}");
        assert!(err.contains("concurency"), "{err}");
    }

    #[test]
    fn wrong_type_names_line() {
        let text = MINIMAL.replace("[vars]", "[load]\nconcurrency = \"many\"\n[vars]");
        let err = parse(&text).expect_err("wrong type").to_string();
        assert!(err.contains("line 8"), "{err}");
    }

    #[test]
    fn bad_duration_is_explained() {
        let text = MINIMAL.replace("[vars]", "[load]\nduration = \"fast\"\n[vars]");
        let err = parse(&text).expect_err("bad duration").to_string();
        assert!(err.contains("not a duration"), "{err}");
    }

    #[test]
    fn undefined_variable_names_step_and_line() {
        let text = MINIMAL.replace("vars.model", "vars.modle");
        let err = parse(&text).expect_err("undefined").to_string();
        assert!(err.contains("steps[0].body"), "{err}");
        assert!(err.contains("line 6"), "{err}");
    }

    #[test]
    fn variable_used_before_extraction_is_refused() {
        let text = r#"
name = "t"
[[steps]]
name = "a"
path = "/books/{{ book_id }}"
response = "json"
[[steps]]
name = "b"
path = "/books"
response = "json"
extract = { book_id = "/id" }
"#;
        let err = parse(text).expect_err("used before set").to_string();
        assert!(err.contains("steps[0].path"), "{err}");
    }

    #[test]
    fn body_that_is_not_json_is_refused() {
        let text = MINIMAL.replace("{{ vars.model | tojson }}", "{{ vars.model }}");
        let err = parse(&text).expect_err("not json").to_string();
        assert!(err.contains("not JSON"), "{err}");
    }

    #[test]
    fn bad_pointer_is_refused() {
        let text = MINIMAL.replace("[vars]", "extract = { id = \"id\" }\n[vars]");
        let err = parse(&text).expect_err("bad pointer").to_string();
        assert!(err.contains("JSON pointer"), "{err}");
    }

    #[test]
    fn gate_table_is_read_and_checked() {
        let s = parse(&format!("{MINIMAL}\n[gate]\nmargin = 0.2\n")).expect("valid");
        assert_eq!(s.gate.margin, 0.2);
        let err = parse(&format!("{MINIMAL}\n[gate]\nmetrics = [\"ttft_p42\"]\n"))
            .expect_err("bad metric")
            .to_string();
        assert!(err.contains("[gate]") && err.contains("ttft_p42"), "{err}");
        let err = parse(&format!("{MINIMAL}\n[gate]\nmargn = 0.2\n"))
            .expect_err("bad key")
            .to_string();
        assert!(err.contains("margn") && err.contains("line"), "{err}");
    }

    #[test]
    fn paths_must_start_with_a_slash() {
        for bad in ["@other-host:8080/x", "v1/chat", "//other/x"] {
            let text = MINIMAL.replace("/v1/chat/completions", bad);
            let err = parse(&text).expect_err("refused").to_string();
            assert!(
                err.contains("single `/`") && err.contains("line 5"),
                "{err}"
            );
        }
    }

    #[test]
    fn values_in_paths_are_one_encoded_segment() {
        let text = r#"
name = "t"
[[steps]]
name = "a"
path = "/books/{{ vars.id }}/outline"
response = "json"
[vars]
id = "x"
"#;
        let s = parse(text).expect("valid");
        let mut ctx = TemplateContext::new(&s, 0, "u", 1, BTreeMap::new());
        ctx.set("vars", serde_json::json!({"id": "../../admin?x=1#f"}));
        assert_eq!(
            s.render(&s.steps[0].path_template, &ctx).expect("rendered"),
            "/books/..%2F..%2Fadmin%3Fx%3D1%23f/outline"
        );
        ctx.set("vars", serde_json::json!({"id": ".."}));
        assert!(s.render(&s.steps[0].path_template, &ctx).is_err());
        ctx.set("vars", serde_json::json!({"id": 42}));
        assert_eq!(
            s.render(&s.steps[0].path_template, &ctx).expect("rendered"),
            "/books/42/outline"
        );
    }

    #[test]
    fn endless_templates_run_out_of_fuel() {
        let text = MINIMAL.replace(
            "{\"model\"",
            "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}{\"model\"",
        );
        let err = parse(&text).expect_err("out of fuel").to_string();
        assert!(err.contains("fuel"), "{err}");
    }

    #[test]
    fn var_override_wins_and_keeps_numbers() {
        let s = Scenario::parse(
            MINIMAL,
            Path::new("s.toml"),
            None,
            &[("n".into(), "12".into())],
        )
        .expect("valid");
        assert_eq!(s.vars["n"], serde_json::json!(12));
    }
}
