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
pub mod lengths;
mod load;
pub mod scale;
pub mod shape;
mod template;
pub mod trace;

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
    (
        "replay-example",
        include_str!("../../scenarios/replay-example.toml"),
    ),
];

const BUILTIN_VARS: &[&str] = &[
    "vars",
    "data",
    "vu",
    "user_id",
    "iteration",
    "book",
    "prompt",
    "max_tokens",
];
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
    /// A trace replayed open-loop instead of users or a shape (`--replay`).
    pub replay: Option<Arc<trace::Replay>>,
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
            replay: None,
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
    /// Drawn prompt and output lengths and the prefix (`prompt`, `max_tokens`).
    pub lengths: Option<lengths::Lengths>,
    /// Characters per token for a prompt length in tokens, once calibrated.
    pub calibration: Option<lengths::Calibration>,
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
    /// How many of those books are written at once (`books_parallel`):
    /// each such lane is a stream of its own, with the user's token.
    pub books_parallel: u32,
    /// Most characters an `append_text` variable keeps (its latest ones).
    pub story_cap: usize,
    /// A variable swept over the iterations (`--sweep`).
    pub sweep: Option<Sweep>,
    /// The factor its own times were scaled by (`--time-scale`).
    pub time_scale: Option<f64>,
    /// A calibration run: steps with prompt lengths in tokens send the
    /// known lengths [`lengths::PROBE_CHARS`] in turn.
    pub calibrating: bool,
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
            let drawn = step.lengths.as_ref().map(|l| {
                let mut rng = <rand::rngs::SmallRng as rand::SeedableRng>::seed_from_u64(0);
                l.draw(step.calibration, &self.data, &mut rng, 0, Some(16))
            });
            ctx.set_drawn(drawn);
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
                        format!("{}{}", template_message(&e), self.drawn_hint(step, b)),
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

    /// Whether one of the step's templates (path or body) names `var`.
    pub fn step_names(&self, step: &Step, var: &str) -> bool {
        [Some(&step.path_template), step.body_template.as_ref()]
            .into_iter()
            .flatten()
            .any(|t| self.template_names(t).contains(var))
    }

    /// The variables a named template reads.
    fn template_names(&self, template: &str) -> std::collections::HashSet<String> {
        self.templates
            .get_template(template)
            .map(|t| t.undeclared_variables(false))
            .unwrap_or_default()
    }

    /// Why a template naming `prompt` or `max_tokens` may fail: they exist
    /// only in steps that draw them.
    fn drawn_hint(&self, step: &Step, template: &str) -> String {
        let names = self.template_names(template);
        let l = step.lengths.as_ref();
        let mut missing = Vec::new();
        if names.contains("prompt") && l.is_none_or(|l| l.prompt.is_none()) {
            missing.push("`prompt` needs the step's `prompt_length`");
        }
        if names.contains("max_tokens") && l.is_none_or(|l| l.output.is_none()) {
            missing.push("`max_tokens` needs the step's `output_length`");
        }
        if missing.is_empty() {
            String::new()
        } else {
            format!("; {}", missing.join(", "))
        }
    }

    /// Render a named template.
    pub fn render(&self, name: &str, ctx: &TemplateContext) -> Result<String, minijinja::Error> {
        self.templates.get_template(name)?.render(&ctx.values)
    }

    /// Steps whose prompt length is in tokens and not yet calibrated.
    pub fn uncalibrated(&self) -> Vec<usize> {
        self.steps
            .iter()
            .enumerate()
            .filter(|(_, s)| {
                s.calibration.is_none()
                    && s.lengths
                        .as_ref()
                        .is_some_and(|l| l.prompt.is_some() && l.unit == lengths::Unit::Tokens)
            })
            .map(|(i, _)| i)
            .collect()
    }

    /// Give every step with a prompt length in tokens this many characters a token.
    pub fn set_chars_per_token(&mut self, c: f64) {
        for i in self.uncalibrated() {
            self.steps[i].calibration = Some(lengths::Calibration {
                chars_per_token: c,
                overhead_tokens: 0.0,
                requests: 0,
            });
        }
    }

    /// The scenario's short display form: name and hash prefix.
    pub fn label(&self) -> String {
        format!("{} ({})", self.name, short_hash(&self.sha256))
    }
}

mod build;

#[cfg(test)]
mod tests;
