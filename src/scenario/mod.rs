//! Scenario files: everything specific to one API, so a change of API needs
//! no recompile.
//!
//! A scenario is TOML. It is read in two stages: serde structs mirror the file
//! (unknown keys refused, spans kept for line numbers), then [`Scenario::load`]
//! checks the meaning (templates compile and render with sample values, bodies
//! are JSON, pointers are pointers) and builds the typed form the engine uses.

pub mod caps;
pub mod data;
mod file;
pub mod hypothesis;
mod load;
pub mod shape;
mod template;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::error::UserError;
use crate::stream::chunk::StreamSpec;
pub use data::DataSet;
pub use file::{
    check_scrape_interval, parse_duration, AuthKind, ResponseKind, Safety, ServerMetricsSpec, Slo,
    MAX_RETRY_AFTER,
};
use file::{FileScenario, FileStep, FileStream};
pub use shape::{Arrival, Finish, Model, Shape, Stage, Think, Workflow};
use template::template_message;
pub use template::{
    encode_path_segment, hex_sha256, short_hash, template_env, TemplateContext, TEMPLATE_FUEL,
};

/// Bundled scenarios, selectable by name instead of a path.
pub const BUNDLED: &[(&str, &str)] = &[
    ("novel", include_str!("../../scenarios/novel.toml")),
    (
        "openai-chat",
        include_str!("../../scenarios/openai-chat.toml"),
    ),
    (
        "anthropic-messages",
        include_str!("../../scenarios/anthropic-messages.toml"),
    ),
    ("ramp", include_str!("../../scenarios/ramp.toml")),
    ("spike", include_str!("../../scenarios/spike.toml")),
    ("soak", include_str!("../../scenarios/soak.toml")),
    ("mix", include_str!("../../scenarios/mix.toml")),
    (
        "interrupt-resume",
        include_str!("../../scenarios/interrupt-resume.toml"),
    ),
    (
        "long-context",
        include_str!("../../scenarios/long-context.toml"),
    ),
    (
        "multi-book",
        include_str!("../../scenarios/multi-book.toml"),
    ),
    (
        "hypotheses",
        include_str!("../../scenarios/hypotheses.toml"),
    ),
];

const BUILTIN_VARS: &[&str] = &["vars", "data", "vu", "user_id", "iteration", "book"];
/// Most books one user writes at once.
pub const MAX_BOOKS_PER_USER: u32 = 32;

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
    pub think_time: Think,
    /// Seed for sampling the data set, the mix and the arrivals.
    pub seed: u64,
    /// Number of time blocks the measured window is cut into (at least 6).
    pub blocks: u32,
    /// Stages under a load model; `None` is a fixed number of users.
    /// With a shape, `duration` is the stages' length and `concurrency`
    /// the most users at once.
    pub shape: Option<Shape>,
    /// Length of the result's time-series windows.
    pub window: Duration,
    /// What a user stopped by a ramp-down or the end finishes first.
    pub finish: Finish,
    /// Start every fixed user in the same instant instead of spread over
    /// [`START_SPREAD`] (or the warm-up, when shorter).
    pub start_together: bool,
    /// End the run early when its queue runs away (requests in flight and
    /// TTFT both rising throughout): a capacity probe that cannot hold.
    pub stop_runaway: bool,
    /// One shard of a distributed run: this process takes every
    /// `count`-th user or arrival of the one global plan.
    pub shard: Option<Shard>,
}

/// Shard `index` of `count` (0-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// This shard, from 0.
    pub index: u32,
    /// How many shards there are.
    pub count: u32,
}

impl Shard {
    /// Whether user (or arrival) `n` of the global plan is this shard's.
    pub fn takes(&self, n: u64) -> bool {
        n % u64::from(self.count.max(1)) == u64::from(self.index)
    }

    /// How many of the users `0..users` are this shard's.
    pub fn users_of(&self, users: u64) -> u64 {
        let (i, n) = (u64::from(self.index), u64::from(self.count.max(1)));
        if users > i {
            (users - i).div_ceil(n)
        } else {
            0
        }
    }
}

/// The longest fixed users take to start: spread evenly, so the first
/// requests do not all arrive in one instant (a burst no steady load has).
pub const START_SPREAD: Duration = Duration::from_secs(1);

impl LoadSpec {
    /// A fixed number of users for a duration: today's shape, and the
    /// defaults every other field takes.
    pub fn fixed(concurrency: u32, duration: Duration) -> Self {
        LoadSpec {
            concurrency,
            duration: Some(duration),
            requests: None,
            warmup: Duration::ZERO,
            think_time: Think::None,
            seed: 1,
            blocks: 10,
            shape: None,
            window: Duration::from_secs(10),
            finish: Finish::Request,
            stop_runaway: false,
            start_together: false,
            shard: None,
        }
    }

    /// Put `shape` in force: the run lasts its stages, and `concurrency`
    /// is the most users (closed) or workflows (open) in flight at once.
    pub fn set_shape(&mut self, shape: Shape) {
        self.duration = Some(shape.duration());
        self.requests = None;
        self.concurrency = match shape.model {
            Model::Closed => shape.peak() as u32,
            Model::Open => shape.max_in_flight,
        }
        .max(1);
        self.shape = Some(shape);
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
    pub think_time: Think,
    /// The writer presses stop: the client disconnects once this many
    /// content events or this much time have passed, keeping what arrived.
    pub cancel: Option<Cancel>,
    /// Variable the streamed text is appended to, kept across the user's
    /// iterations (per book) and cut to the latest `story_cap` characters.
    pub append_text: Option<String>,
    /// After its cancel, the step reconnects at once with `Last-Event-ID`
    /// (`resume = "last-event-id"`) and reads the rest; the ids must go on
    /// from the break with none repeated or skipped.
    pub resume: bool,
}

/// A template variable whose value changes with each iteration of a user:
/// iteration `i` (from 1) takes `values[(i - 1) % len]` as `vars.NAME`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sweep {
    /// The variable.
    pub name: String,
    /// Its values, in turn.
    pub values: Vec<serde_json::Value>,
}

impl Sweep {
    /// As given on the command line: `NAME=V1,V2,...`.
    pub fn describe(&self) -> String {
        let vals: Vec<String> = self
            .values
            .iter()
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
            .collect();
        format!("{}={}", self.name, vals.join(","))
    }
}

/// When a streamed step stops reading and disconnects (`cancel_after_tokens`,
/// `cancel_after`): whichever comes first.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cancel {
    /// After this many content events.
    pub tokens: Option<u32>,
    /// This long after the request started.
    pub after: Option<std::time::Duration>,
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
    pub base_url: Option<crate::target::Target>,
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
    /// Variables whose value holds an access token: used in requests,
    /// recorded as `<redacted>`.
    pub secret_vars: std::collections::BTreeSet<String>,
    /// The gate policy (defaults overlaid with the `[gate]` table).
    pub gate: crate::policy::Policy,
    /// Protections (`[safety]`).
    pub safety: Safety,
    /// The data set.
    pub data: Arc<DataSet>,
    /// Every step the scenario defines, in file order.
    pub steps: Vec<Step>,
    /// The workflows over those steps (one holding them all when the file
    /// names none), drawn by weight each iteration.
    pub workflows: Vec<Workflow>,
    /// Statements its results confirm or refute (`[[hypotheses]]`).
    pub hypotheses: Vec<hypothesis::Hypothesis>,
    /// The server's metrics endpoints (`[server_metrics]`).
    pub server_metrics: file::ServerMetricsSpec,
    /// Books each user writes at once (`books_per_user`, 1 to 32): each
    /// iteration runs the workflow once per book, step by step in turn,
    /// every book with its own variables (`book` is its number).
    pub books_per_user: u32,
    /// Most characters an `append_text` variable keeps (its latest ones).
    pub story_cap: usize,
    /// A variable swept over the iterations (`--sweep`).
    pub sweep: Option<Sweep>,
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

        check_names(&file, &invalid)?;

        let base_url = base_url(&file, text, &invalid)?;

        let load = load::build(&file.load, text, &invalid)?;
        let t = &file.timeouts;
        let timeouts = Timeouts {
            connect: t.connect.map_or(Duration::from_secs(10), |d| d.0),
            first_token: t.first_token.map_or(Duration::from_secs(60), |d| d.0),
            idle: t.idle.map_or(Duration::from_secs(30), |d| d.0),
            total: t.total.map_or(Duration::from_secs(300), |d| d.0),
        };

        let data = Arc::new(data_set(&file, dir)?);
        let vars = vars(&file, var_overrides, &invalid)?;

        let gate = crate::policy::Policy::from_file(&file.gate.clone().unwrap_or_default())
            .map_err(|m| invalid(Some("table `[gate]`".into()), m))?;

        let safety = file
            .safety
            .resolve()
            .map_err(|(key, msg)| invalid(Some(format!("`{key}`")), msg))?;

        let books_per_user = books_per_user(&file, &invalid)?;
        let server_metrics = file
            .server_metrics
            .resolve()
            .map_err(|(key, msg)| invalid(Some(format!("`{key}`")), msg))?;

        let mut env = crate::scenario::template_env(data.clone());
        let mut steps = Vec::with_capacity(file.steps.len());
        let mut names = BTreeSet::new();
        for (i, s) in file.steps.iter().enumerate() {
            steps.push(build_step(i, s, &mut env, &mut names, text, &invalid)?);
        }
        let workflows = load::workflows(&file.workflows, &steps, text, &invalid)?;
        let hypotheses = hypotheses(&file, text, &invalid)?;

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
            secret_vars: std::collections::BTreeSet::new(),
            gate,
            safety,
            data,
            steps,
            workflows,
            hypotheses,
            server_metrics,
            books_per_user,
            story_cap: file.story_cap.unwrap_or(16_000).clamp(1, 4 << 20),
            sweep: None,
            templates: Arc::new(env),
        };
        scenario.dry_run(&file.steps, text, origin)?;
        Ok(scenario)
    }

    /// Render every template once with sample values, in the order of each
    /// workflow, so a misspelt variable or a body that is not JSON fails at
    /// load, not mid-run.
    fn dry_run(&self, file_steps: &[FileStep], text: &str, origin: &Path) -> Result<(), UserError> {
        for w in &self.workflows {
            self.dry_run_workflow(w, file_steps, text, origin)?;
        }
        Ok(())
    }

    fn dry_run_workflow(
        &self,
        workflow: &Workflow,
        file_steps: &[FileStep],
        text: &str,
        origin: &Path,
    ) -> Result<(), UserError> {
        let mut ctx = TemplateContext::new(self, 0, "user-0", 0, self.data.first());
        for &i in &workflow.steps {
            let (step, fs) = (&self.steps[i], &file_steps[i]);
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
            if let Some(var) = &step.append_text {
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

type Invalid<'a> = &'a dyn Fn(Option<String>, String) -> UserError;

/// Where a byte offset of the scenario text is, as an error place.
fn at(text: &str, span: std::ops::Range<usize>, key: &str) -> Option<String> {
    let (l, _) = line_col(text, span.start);
    Some(format!("line {l}, key `{key}`"))
}

/// A name to show, and steps to run.
fn check_names(file: &FileScenario, invalid: Invalid) -> Result<(), UserError> {
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

    Ok(())
}

/// The scenario's default target, checked as `--target` is.
fn base_url(
    file: &FileScenario,
    text: &str,
    invalid: Invalid,
) -> Result<Option<crate::target::Target>, UserError> {
    let Some(u) = &file.base_url else {
        return Ok(None);
    };
    crate::target::Target::parse(u.get_ref(), crate::target::Source { name: "base_url" })
        .map(Some)
        .map_err(|e| {
            let hint = e.hint();
            let err = invalid(at(text, u.span(), "base_url"), e.to_string());
            match hint {
                Some(h) => err.with_hint(h),
                None => err,
            }
        })
}

/// The data set the templates draw from: the scenario's file (relative to
/// the scenario's directory) or the bundled one.
fn data_set(file: &FileScenario, dir: Option<&Path>) -> Result<DataSet, UserError> {
    match &file.data.file {
        Some(p) => {
            let full = match dir {
                Some(d) if p.is_relative() => d.join(p),
                _ => p.clone(),
            };
            let txt = crate::error::read_to_string(&full)?;
            DataSet::parse(&txt, &full)
        }
        None => Ok(DataSet::bundled()),
    }
}

/// `[vars]` with every `--var` over it.
fn vars(
    file: &FileScenario,
    var_overrides: &[(String, String)],
    invalid: Invalid,
) -> Result<serde_json::Map<String, serde_json::Value>, UserError> {
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
    Ok(vars)
}

/// How many books each writer works.
fn books_per_user(file: &FileScenario, invalid: Invalid) -> Result<u32, UserError> {
    match file.books_per_user {
        None => Ok(1),
        Some(k) if (1..=MAX_BOOKS_PER_USER).contains(&k) => Ok(k),
        Some(k) => Err(invalid(
            Some("`books_per_user`".into()),
            format!("{k} is not between 1 and {MAX_BOOKS_PER_USER}"),
        )),
    }
}

/// `[[hypotheses]]`, each statement parsed now so a typo fails at load.
fn hypotheses(
    file: &FileScenario,
    text: &str,
    invalid: Invalid,
) -> Result<Vec<hypothesis::Hypothesis>, UserError> {
    let mut out = Vec::with_capacity(file.hypotheses.len());
    for h in &file.hypotheses {
        hypothesis::parse(&h.get_ref().statement).map_err(|m| {
            let (l, _) = line_col(text, h.span().start);
            invalid(Some(format!("line {l}, `[[hypotheses]]`")), m)
        })?;
        out.push(h.get_ref().clone());
    }
    Ok(out)
}

/// A step's `[steps.stream]` over the defaults.
fn stream_spec(fs: Option<&FileStream>) -> StreamSpec {
    let mut stream = StreamSpec::default();
    let Some(fs) = fs else {
        return stream;
    };
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
    if let Some(e) = &fs.done_event {
        stream.done_event = Some(e.trim().to_string()).filter(|e| !e.is_empty());
    }
    if let Some(e) = &fs.error_events {
        stream.error_events = e.iter().map(|e| e.trim().to_string()).collect();
    }
    if let Some(p) = &fs.error {
        stream.error = Some(p.0.clone()).filter(|s| !s.is_empty());
    }
    stream
}

/// A step name: shown as text, unique, not `workflow`.
fn step_name(
    s: &FileStep,
    names: &mut BTreeSet<String>,
    key: &dyn Fn(&str) -> String,
    invalid: Invalid,
) -> Result<(), UserError> {
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
    Ok(())
}

/// When a writer presses stop mid-stream, and whether the step then resumes
/// from the last event id.
fn cancel_and_resume(
    s: &FileStep,
    key: &dyn Fn(&str) -> String,
    invalid: Invalid,
) -> Result<(Option<Cancel>, bool), UserError> {
    let cancel = match (s.cancel_after_tokens, s.cancel_after.as_ref().map(|d| d.0)) {
        (None, None) => None,
        _ if s.response != ResponseKind::Sse => {
            return Err(invalid(
                Some(format!("`{}`", key("cancel_after_tokens"))),
                "only a streamed step (`response = \"sse\"`) can be cancelled mid-stream".into(),
            ))
        }
        (Some(0), _) => {
            return Err(invalid(
                Some(format!("`{}`", key("cancel_after_tokens"))),
                "must be at least 1: the stream is cut after that many content events".into(),
            ))
        }
        (_, Some(d)) if d.is_zero() => {
            return Err(invalid(
                Some(format!("`{}`", key("cancel_after"))),
                "must be longer than 0s".into(),
            ))
        }
        (tokens, after) => Some(Cancel { tokens, after }),
    };
    let resume = match s.resume.as_deref() {
        None => false,
        Some("last-event-id") if cancel.is_some() => true,
        Some("last-event-id") => return Err(invalid(
            Some(format!("`{}`", key("resume"))),
            "a step resumes after its own cancel: set `cancel_after_tokens` or `cancel_after` too"
                .into(),
        )),
        Some(other) => {
            return Err(invalid(
                Some(format!("`{}`", key("resume"))),
                format!("`{other}` is not a way to resume; the one known is `last-event-id`"),
            ))
        }
    };
    Ok((cancel, resume))
}

/// One `[[steps]]` entry checked and compiled: its templates join `env`.
fn build_step(
    i: usize,
    s: &FileStep,
    env: &mut minijinja::Environment<'static>,
    names: &mut BTreeSet<String>,
    text: &str,
    invalid: &dyn Fn(Option<String>, String) -> UserError,
) -> Result<Step, UserError> {
    let at = |span: std::ops::Range<usize>, k: &str| at(text, span, k);
    let key = |k: &str| format!("steps[{i}].{k}");
    step_name(s, names, &key, invalid)?;
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
    for var in s
        .extract
        .keys()
        .chain(s.capture_text.iter())
        .chain(s.append_text.iter())
    {
        if BUILTIN_VARS.contains(&var.as_str()) {
            return Err(invalid(
                Some(format!("`{}`", key("extract"))),
                format!("`{var}` is a built-in variable; choose another name"),
            ));
        }
    }
    let stream = stream_spec(s.stream.as_ref()).finish();
    let (cancel, resume) = cancel_and_resume(s, &key, invalid)?;
    Ok(Step {
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
        append_text: s.append_text.clone(),
        resume,
        stream,
        think_time: match &s.think_time {
            Some(t) => Think::parse(t.get_ref())
                .map_err(|m| invalid(at(t.span(), &key("think_time")), m))?,
            None => Think::None,
        },
        cancel,
    })
}

#[cfg(test)]
mod tests;
