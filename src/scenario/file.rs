//! The scenario file as written: serde structs that mirror the TOML
//! (unknown keys refused, spans kept for line numbers), and the small value
//! types both forms share.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::caps;
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileScenario {
    pub(super) name: String,
    #[serde(default)]
    pub(super) description: Option<String>,
    #[serde(default)]
    pub(super) base_url: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) auth: FileAuth,
    #[serde(default)]
    pub(super) load: FileLoad,
    #[serde(default)]
    pub(super) timeouts: FileTimeouts,
    #[serde(default)]
    pub(super) data: FileData,
    #[serde(default)]
    pub(super) slo: Slo,
    #[serde(default)]
    pub(super) vars: BTreeMap<String, toml::Value>,
    /// Gate policy.
    #[serde(default)]
    pub(super) gate: Option<crate::policy::PolicyFile>,
    #[serde(default)]
    pub(super) safety: FileSafety,
    pub(super) steps: Vec<FileStep>,
    /// A weighted mix of workflows over the steps; none means all steps in order.
    #[serde(default)]
    pub(super) workflows: Vec<Spanned<FileWorkflow>>,
    /// What the test expects of its results, checked after every run.
    #[serde(default)]
    pub(super) hypotheses: Vec<Spanned<super::hypothesis::Hypothesis>>,
    /// The server's Prometheus endpoints to scrape during every run.
    #[serde(default)]
    pub(super) server_metrics: FileServerMetrics,
    /// Books each virtual user writes at once: every iteration runs the
    /// workflow for each, their steps interleaved.
    #[serde(default)]
    pub(super) books_per_user: Option<u32>,
    /// Write a user's books as concurrent streams: `true` (all at once)
    /// or how many at once.
    #[serde(default)]
    pub(super) books_parallel: Option<BooksParallel>,
    /// Most characters an `append_text` variable keeps (the latest ones).
    #[serde(default)]
    pub(super) story_cap: Option<usize>,
}

/// `[server_metrics]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileServerMetrics {
    #[serde(default)]
    pub(super) urls: Vec<String>,
    #[serde(default)]
    pub(super) interval: Option<Dur>,
    #[serde(default)]
    pub(super) metrics: Vec<String>,
}

impl FileServerMetrics {
    /// The section with its interval checked: `Err((key, why))`.
    pub(super) fn resolve(&self) -> Result<ServerMetricsSpec, (&'static str, String)> {
        for u in &self.urls {
            if u.trim().is_empty() {
                return Err(("server_metrics.urls", "an empty URL".into()));
            }
        }
        let interval = self.interval.as_ref().map(|d| d.0);
        if let Some(i) = interval {
            check_scrape_interval(i).map_err(|m| ("server_metrics.interval", m))?;
        }
        Ok(ServerMetricsSpec {
            urls: self.urls.clone(),
            interval,
            metrics: self.metrics.clone(),
        })
    }
}

/// Scraping more often than this would load the server.
pub const MIN_SCRAPE_INTERVAL: Duration = Duration::from_millis(100);

/// `Err(why)` for a scrape interval under [`MIN_SCRAPE_INTERVAL`] or over a minute.
pub fn check_scrape_interval(i: Duration) -> Result<(), String> {
    if i < MIN_SCRAPE_INTERVAL {
        return Err("scraping more often than every 100ms would load the server".into());
    }
    if i > Duration::from_secs(60) {
        return Err("scraping less often than every 60s says nothing per window".into());
    }
    Ok(())
}

/// The server's metrics endpoints a scenario names (`[server_metrics]`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServerMetricsSpec {
    /// Endpoints: full URLs, or paths (`/metrics`) on the target's origin.
    pub urls: Vec<String>,
    /// How often to scrape (default 1 s).
    pub interval: Option<Duration>,
    /// Families kept besides the presets'.
    pub metrics: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileWorkflow {
    pub(super) name: String,
    #[serde(default = "default_weight")]
    pub(super) weight: f64,
    pub(super) steps: Vec<String>,
}

fn default_weight() -> f64 {
    1.0
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileStage {
    #[serde(default)]
    pub(super) name: Option<String>,
    pub(super) duration: Dur,
    pub(super) target: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileAuth {
    #[serde(default = "default_auth_kind")]
    pub(super) kind: AuthKind,
    #[serde(default = "default_auth_header")]
    pub(super) header: String,
    #[serde(default = "default_auth_scheme")]
    pub(super) scheme: String,
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

pub(super) fn default_auth_kind() -> AuthKind {
    AuthKind::Bearer
}
pub(super) fn default_auth_header() -> String {
    "Authorization".into()
}
pub(super) fn default_auth_scheme() -> String {
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
pub(super) struct FileLoad {
    pub(super) concurrency: Option<u32>,
    pub(super) duration: Option<Dur>,
    pub(super) requests: Option<u64>,
    pub(super) warmup: Option<Dur>,
    pub(super) think_time: Option<Spanned<String>>,
    pub(super) seed: Option<u64>,
    pub(super) blocks: Option<u32>,
    pub(super) model: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) stages: Option<Vec<Spanned<FileStage>>>,
    pub(super) arrival: Option<Spanned<String>>,
    pub(super) max_in_flight: Option<u32>,
    pub(super) window: Option<Dur>,
    pub(super) finish: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileTimeouts {
    pub(super) connect: Option<Dur>,
    pub(super) first_token: Option<Dur>,
    pub(super) idle: Option<Dur>,
    pub(super) total: Option<Dur>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileSafety {
    pub(super) allow_hosts: Option<Vec<String>>,
    pub(super) abort_error_rate: Option<f64>,
    pub(super) abort_window: Option<Dur>,
    pub(super) abort_min_requests: Option<u64>,
    pub(super) honor_retry_after: Option<bool>,
    pub(super) max_response_bytes: Option<usize>,
    pub(super) circuit_breaker: Option<bool>,
    pub(super) backoff: Option<Dur>,
    pub(super) backoff_max: Option<Dur>,
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
pub(super) struct FileData {
    pub(super) file: Option<PathBuf>,
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
pub(super) struct FileStep {
    pub(super) name: String,
    #[serde(default = "default_method")]
    pub(super) method: String,
    pub(super) path: Spanned<String>,
    #[serde(default)]
    pub(super) body: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) headers: BTreeMap<String, String>,
    #[serde(default = "default_response")]
    pub(super) response: ResponseKind,
    #[serde(default)]
    pub(super) expect_status: Option<Vec<u16>>,
    #[serde(default)]
    pub(super) extract: BTreeMap<String, Pointer>,
    #[serde(default)]
    pub(super) capture_text: Option<String>,
    #[serde(default)]
    pub(super) stream: Option<FileStream>,
    #[serde(default)]
    pub(super) think_time: Option<Spanned<String>>,
    /// Stop reading (disconnect) after this many content events.
    #[serde(default)]
    pub(super) cancel_after_tokens: Option<u32>,
    /// Append the streamed text to this variable, kept across the user's
    /// iterations (per book): the story so far.
    #[serde(default)]
    pub(super) append_text: Option<String>,
    /// After a cancel, reconnect at once with `Last-Event-ID` and read the rest.
    #[serde(default)]
    pub(super) resume: Option<String>,
    /// Stop reading (disconnect) this long after the request started.
    #[serde(default)]
    pub(super) cancel_after: Option<Dur>,
    /// The drawn prompt's length (`prompt`): a number or a distribution.
    #[serde(default)]
    pub(super) prompt_length: Option<Spanned<LengthSpec>>,
    /// `tokens` (the default, calibrated) or `chars`.
    #[serde(default)]
    pub(super) prompt_unit: Option<super::lengths::Unit>,
    /// The drawn output length in tokens (`max_tokens`).
    #[serde(default)]
    pub(super) output_length: Option<Spanned<LengthSpec>>,
    /// The shared prefix the prompt opens with.
    #[serde(default)]
    pub(super) prefix: Option<FilePrefix>,
}

/// `books_parallel = true` or a count.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum BooksParallel {
    All(bool),
    Count(u32),
}

/// A length as written: a number or a distribution's text.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum LengthSpec {
    Number(f64),
    Text(String),
}

impl LengthSpec {
    pub(super) fn text(&self) -> String {
        match self {
            LengthSpec::Number(n) => n.to_string(),
            LengthSpec::Text(t) => t.clone(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FilePrefix {
    pub(super) count: u32,
    pub(super) length: u32,
    #[serde(default)]
    pub(super) scope: Option<super::lengths::Scope>,
}

pub(super) fn default_method() -> String {
    "POST".into()
}
pub(super) fn default_response() -> ResponseKind {
    ResponseKind::Sse
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileStream {
    #[serde(default)]
    pub(super) content: Option<Vec<Pointer>>,
    #[serde(default)]
    pub(super) usage_completion_tokens: Option<Pointer>,
    #[serde(default)]
    pub(super) usage_prompt_tokens: Option<Pointer>,
    #[serde(default)]
    pub(super) done: Option<String>,
    #[serde(default)]
    pub(super) require_done: Option<bool>,
    #[serde(default)]
    pub(super) done_event: Option<String>,
    #[serde(default)]
    pub(super) error_events: Option<Vec<String>>,
    #[serde(default)]
    pub(super) error: Option<Pointer>,
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
pub(super) struct Dur(pub(super) Duration);

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
pub(super) struct Pointer(pub(super) String);

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

impl FileSafety {
    /// The `[safety]` table with defaults, checked: `Err((key, why))`.
    pub(super) fn resolve(&self) -> Result<Safety, (&'static str, String)> {
        let fs = self;
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
            return Err((
                "safety.backoff",
                "must not be longer than `safety.backoff_max`".into(),
            ));
        }
        if safety.backoff_max > Duration::from_secs(600)
            || safety.abort_window > Duration::from_secs(3600)
        {
            return Err((
                "safety.backoff_max` / `safety.abort_window",
                "at most 10m and 1h".into(),
            ));
        }
        if let Some(r) = safety.abort_error_rate {
            if !(r > 0.0 && r <= 1.0) {
                return Err(("safety.abort_error_rate", format!("{r} must be in (0, 1]")));
            }
        }
        if safety.max_response_bytes == 0 {
            return Err(("safety.max_response_bytes", "must be at least 1".into()));
        }
        Ok(safety)
    }
}
