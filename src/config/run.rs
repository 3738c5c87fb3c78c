//! `run` flags and a scenario into a validated plan: destinations checked,
//! load within the caps, credentials read.

use crate::scenario::trace::{Replay, Window};
use std::sync::Arc;
use std::time::Duration;

use super::{duration_flag, MAX_CONCURRENCY, MAX_DURATION, MAX_REQUESTS};
use crate::cli::RunArgs;
use crate::engine::Plan;
use crate::error::UserError;
use crate::scenario::{AuthKind, Scenario};
use crate::target::{Source, Target};
use crate::tokens;

/// Parse `KEY=VALUE` pairs.
pub fn parse_vars(vars: &[String]) -> Result<Vec<(String, String)>, UserError> {
    vars.iter()
        .map(|v| {
            v.split_once('=')
                .filter(|(k, _)| !k.trim().is_empty())
                .map(|(k, v)| (k.trim().to_string(), v.to_string()))
                // The value may be a secret: name the flag, never echo it.
                .ok_or_else(|| {
                    UserError::flag("--var", "a value is not KEY=VALUE")
                        .with_hint("write each variable as `--var KEY=VALUE`")
                })
        })
        .collect()
}

/// `run` flags for `scenario` with every other flag at its default: the
/// start of a plan another command builds (a capacity probe, a baseline
/// refresh, a distributed plan).
pub fn run_args(
    scenario: String,
    target: Option<String>,
    tokens: Option<std::path::PathBuf>,
) -> RunArgs {
    RunArgs {
        scenario: Some(scenario),
        target,
        tokens,
        concurrency: None,
        duration: None,
        requests: None,
        warmup: None,
        seed: None,
        vars: Vec::new(),
        sweep: None,
        time_scale: None,
        chars_per_token: None,
        replay: None,
        speed: 1.0,
        replay_window: None,
        replay_step: None,
        out: std::path::PathBuf::from("result.json"),
        requests_out: None,
        drain: crate::cli::DEFAULT_DRAIN.into(),
        no_progress: true,
        start_together: false,
        ca_cert: None,
        baseline_target: None,
        stages: None,
        model: None,
        window: None,
        metrics_listen: None,
        metrics_linger: "30s".into(),
        metrics_push: None,
        metrics_push_interval: "5s".into(),
        server_metrics: Vec::new(),
        server_metrics_interval: None,
        server_metric: Vec::new(),
        plan: None,
        shard: None,
    }
}

/// `--sweep KEY=V1,V2,...`: two values at least, at most 1,000; numbers
/// and booleans stay what they are, like `--var`.
fn parse_sweep(s: &str) -> Result<crate::scenario::Sweep, UserError> {
    let bad = |m: &str| {
        UserError::flag("--sweep", m.to_string())
            .with_hint("write it as `--sweep prompt_chars=1000,2000,4000`")
    };
    let (name, list) = s.split_once('=').ok_or_else(|| bad("not KEY=V1,V2,..."))?;
    let name = name.trim();
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(bad(
            "the key must be a variable name (letters, digits, `_`)",
        ));
    }
    let values: Vec<serde_json::Value> = list
        .split(',')
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(|v| {
            serde_json::from_str::<serde_json::Value>(v)
                .ok()
                .filter(|j| !j.is_string() && !j.is_object() && !j.is_array())
                .unwrap_or_else(|| serde_json::Value::String(v.to_string()))
        })
        .collect();
    if values.len() < 2 || values.len() > 1000 {
        return Err(bad("give 2 to 1,000 values, separated by commas"));
    }
    Ok(crate::scenario::Sweep {
        name: name.to_string(),
        values,
    })
}

/// The checked trace of `--replay`, its steps made ready: a step given
/// prompt lengths in tokens is calibrated, and one given lengths must
/// use them (`{{ prompt }}`, `{{ max_tokens }}`).
fn replay(args: &RunArgs, scenario: &mut Scenario) -> Result<Option<Arc<Replay>>, UserError> {
    let Some(path) = &args.replay else {
        return Ok(None);
    };
    let window = args
        .replay_window
        .as_deref()
        .map(Window::parse)
        .transpose()
        .map_err(|m| UserError::flag("--replay-window", m))?;
    let (speed, step) = replay_options(scenario, args.speed, args.replay_step.as_deref())?;
    let r = Replay::open(path, scenario, speed, window, step)?;
    if r.begun_before > 0 {
        crate::output::err_line(&format!(
            "warning: {} of the window's {} sessions began before it: their steps that need ids made earlier (a book's id) will fail as `template` errors",
            r.begun_before, r.sessions
        ));
    }
    for &i in &r.sized_steps {
        let step = &scenario.steps[i];
        if !scenario.step_names(step, "prompt") && !scenario.step_names(step, "max_tokens") {
            return Err(UserError::flag(
                "--replay",
                format!(
                    "the trace gives step `{}` its lengths, and its body uses neither `{{{{ prompt }}}}` nor `{{{{ max_tokens }}}}`: they would be ignored",
                    step.name
                ),
            )
            .with_hint("use the bundled `replay-example` scenario, or put `{{ prompt | tojson }}` and `{{ max_tokens }}` in the step's body"));
        }
    }
    for &i in &r.token_steps {
        let step = &mut scenario.steps[i];
        if step.lengths.is_none() {
            step.lengths = Some(crate::scenario::lengths::Lengths {
                prompt: Some(crate::scenario::lengths::Dist::Constant(64.0)),
                unit: crate::scenario::lengths::Unit::Tokens,
                output: None,
                prefix: None,
            });
        }
    }
    Ok(Some(Arc::new(r)))
}

/// `--speed` and `--replay-step` checked: the speed, and the step's index.
pub(super) fn replay_options(
    scenario: &Scenario,
    speed: f64,
    step: Option<&str>,
) -> Result<(f64, Option<usize>), UserError> {
    if !(speed.is_finite() && (0.001..=1000.0).contains(&speed)) {
        return Err(UserError::flag(
            "--speed",
            format!("{speed} is not a speed from 0.001 to 1000"),
        ));
    }
    let step = step
        .map(|n| {
            scenario
                .steps
                .iter()
                .position(|s| s.name == n)
                .ok_or_else(|| {
                    UserError::flag(
                        "--replay-step",
                        format!("`{n}` is not a step of the scenario"),
                    )
                })
        })
        .transpose()?;
    Ok((speed, step))
}

/// The load of a replay: the trace's span at its speed (cut by
/// `--duration`), no warm-up unless given.
fn replay_load(
    args: &RunArgs,
    load: &mut crate::scenario::LoadSpec,
    r: Arc<Replay>,
) -> Result<(), UserError> {
    load.shape = None;
    load.requests = None;
    load.concurrency = u32::try_from(r.sessions.min(10_000)).unwrap_or(1).max(1);
    let span = r.duration();
    load.duration = Some(match &args.duration {
        Some(d) => duration_flag("--duration", d)?.min(span),
        None => span,
    });
    load.warmup = match &args.warmup {
        Some(w) => duration_flag("--warmup", w)?,
        None => std::time::Duration::ZERO,
    };
    if let Some(s) = args.seed {
        load.seed = s;
    }
    load.replay = Some(r);
    crate::scenario::caps::check(load).map_err(|e| UserError::flag("--replay", e.message))
}

/// Validate `run` arguments into a plan.
pub fn run_plan(args: &RunArgs) -> Result<Plan, UserError> {
    let vars = parse_vars(&args.vars)?;
    // Outputs are checked before any request: a long run must not end in an
    // unwritable file.
    let mut outputs = vec![("--out", args.out.as_path())];
    if let Some(p) = &args.requests_out {
        outputs.push(("--requests-out", p.as_path()));
    }
    crate::error::check_outputs(&outputs)?;
    let spec = args.scenario.as_deref().ok_or_else(|| {
        UserError::flag(
            "--scenario",
            "is required: a scenario file or a bundled name",
        )
        .with_hint("for example `--scenario novel`, or `--scenario scenarios/novel.toml`")
    })?;
    let mut scenario = Scenario::load(spec, &vars).map_err(|e| match e {
        // Only the scenario itself is "not a scenario"; a data file it names
        // that cannot be read stays a read error naming that file.
        UserError::Read { path, source } if path == std::path::Path::new(spec) => {
            UserError::Read { path, source }.into_scenario_hint()
        }
        other => other,
    })?;
    if let Some(s) = &args.sweep {
        scenario.sweep = Some(parse_sweep(s)?);
    }
    if let Some(f) = args.time_scale {
        scenario
            .scale_time(f)
            .map_err(|m| UserError::flag("--time-scale", m))?;
    }
    if let Some(c) = args.chars_per_token {
        if !(c.is_finite() && (0.05..=100.0).contains(&c)) {
            return Err(UserError::flag(
                "--chars-per-token",
                format!("{c} is not a number of characters a token from 0.05 to 100"),
            ));
        }
        scenario.set_chars_per_token(c);
    }
    let replay = replay(args, &mut scenario)?;
    let (target, reference) = destinations(args, &scenario)?;
    let mut load = load_spec(args, &scenario, reference.is_some())?;
    if let Some(r) = replay {
        replay_load(args, &mut load, r)?;
    }
    let drain = duration_flag("--drain", &args.drain)?;
    let metrics_listen = metrics_listen(args)?;
    let tokens = match (&args.tokens, scenario.auth.kind) {
        (Some(p), _) => tokens::load(p)?,
        (None, AuthKind::None) => Vec::new(),
        (None, AuthKind::Bearer) => {
            return Err(UserError::flag("--tokens", "the scenario uses bearer tokens, and none were given")
                .with_hint("pass `--tokens access_tokens.csv` (header `user_id,access_token`), or set `[auth] kind = \"none\"` in the scenario"))
        }
    };
    let server_metrics = server_metrics(args, &scenario, &target)?;
    let metrics_push = metrics_push(args, &scenario)?;
    // A `--var` that carries an access token is used, never recorded.
    scenario.secret_vars = scenario
        .var_overrides
        .iter()
        .filter(|(_, v)| {
            tokens
                .iter()
                .any(|t| !t.token.expose().is_empty() && v.contains(t.token.expose()))
        })
        .map(|(k, _)| k.clone())
        .collect();
    Ok(Plan {
        scenario: Arc::new(scenario),
        target,
        reference,
        tokens: Arc::new(tokens),
        load,
        progress: !args.no_progress && crate::engine::progress_wanted(),
        drain,
        notes: Vec::new(),
        ca_cert: ca_cert(args)?,
        metrics_listen,
        metrics_linger: if args.metrics_listen.is_some() {
            duration_flag("--metrics-linger", &args.metrics_linger)?
        } else {
            Duration::ZERO
        },
        metrics_push,
        client: None,
        start_at: None,
        server_metrics,
    })
}

/// `--metrics-push`: a URL checked like the target (http(s), no credentials,
/// inside `allow_hosts`), and its interval (1 s at least).
fn metrics_push(
    args: &RunArgs,
    scenario: &Scenario,
) -> Result<Option<crate::engine::push::PushTarget>, UserError> {
    let Some(raw) = &args.metrics_push else {
        return Ok(None);
    };
    let url = Target::parse(
        raw,
        Source {
            name: "--metrics-push",
        },
    )?;
    url.check_allowed(
        &scenario.safety.allow_hosts,
        "the metrics push URL",
        &scenario.origin,
    )?;
    let interval = duration_flag("--metrics-push-interval", &args.metrics_push_interval)?;
    if interval < Duration::from_secs(1) {
        return Err(UserError::flag("--metrics-push-interval", "at least 1s"));
    }
    Ok(Some(crate::engine::push::PushTarget {
        url: url.url().clone(),
        interval,
    }))
}

/// The server's metrics endpoints: the scenario's `[server_metrics]` and
/// every `--server-metrics`, checked like the target (http(s), no
/// credentials in the URL, inside `allow_hosts`). A path (`/metrics`) is
/// taken on the target's origin.
fn server_metrics(
    args: &RunArgs,
    scenario: &Scenario,
    target: &Target,
) -> Result<Vec<crate::engine::scrape::ScrapeTarget>, UserError> {
    let spec = &scenario.server_metrics;
    let from_file = spec.urls.iter().map(|u| ("`[server_metrics] urls`", u));
    let from_flags = args.server_metrics.iter().map(|u| ("--server-metrics", u));
    let urls: Vec<(&str, &String)> = from_file.chain(from_flags).collect();
    if urls.is_empty() {
        return Ok(Vec::new());
    }
    let interval = match &args.server_metrics_interval {
        Some(v) => {
            let i = duration_flag("--server-metrics-interval", v)?;
            crate::scenario::check_scrape_interval(i)
                .map_err(|m| UserError::flag("--server-metrics-interval", m))?;
            i
        }
        None => spec.interval.unwrap_or(Duration::from_secs(1)),
    };
    let extra: Vec<String> = spec
        .metrics
        .iter()
        .chain(&args.server_metric)
        .cloned()
        .collect();
    let families = crate::engine::scrape::families(&extra);
    let mut out: Vec<crate::engine::scrape::ScrapeTarget> = Vec::new();
    for (whence, u) in urls {
        let parsed = if u.starts_with('/') {
            target.url().join(u)
        } else {
            reqwest::Url::parse(u)
        };
        let url =
            parsed.map_err(|e| UserError::flag(whence, format!("`{u}` is not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(UserError::flag(whence, format!("`{u}` is not http(s)")));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(UserError::flag(
                whence,
                "a URL with credentials (`user:password@`) is refused",
            ));
        }
        crate::target::check_allowed(
            &scenario.safety.allow_hosts,
            &url,
            "a server metrics endpoint",
            &scenario.origin,
        )?;
        if out.iter().any(|t| t.url == url.as_str()) {
            continue;
        }
        out.push(crate::engine::scrape::ScrapeTarget {
            url: url.to_string(),
            interval,
            families: families.clone(),
        });
    }
    Ok(out)
}

/// The target and the duet reference, parsed once (the engine checks them
/// against `allow_hosts` before it sends anything).
fn destinations(
    args: &RunArgs,
    scenario: &Scenario,
) -> Result<(Target, Option<Target>), UserError> {
    let target = match (&args.target, &scenario.base_url) {
        (Some(t), _) => Target::parse(t, Source { name: "--target" })?,
        (None, Some(b)) => b.clone(),
        (None, None) => {
            return Err(
                UserError::flag("--target", "no target: the scenario has no `base_url`")
                    .with_hint("pass `--target http://host:port`"),
            )
        }
    };
    let reference = args
        .baseline_target
        .as_deref()
        .map(|r| {
            Target::parse(
                r,
                Source {
                    name: "--baseline-target",
                },
            )
        })
        .transpose()?;
    Ok((target, reference))
}

/// The scenario's load with the flags over it, within the one set of caps.
pub(super) fn load_spec(
    args: &RunArgs,
    scenario: &Scenario,
    duet: bool,
) -> Result<crate::scenario::LoadSpec, UserError> {
    let mut load = scenario.load.clone();
    load.start_together = args.start_together;
    if let Some(w) = &args.window {
        load.window = duration_flag("--window", w)?;
    }
    if let Some(st) = &args.stages {
        load.set_shape(stages_flag(args, st, load.shape.as_ref())?);
    } else if load.shape.is_some()
        && (args.concurrency.is_some() || args.duration.is_some() || args.requests.is_some())
    {
        return Err(UserError::flag(
            "--concurrency",
            "the scenario has `[[load.stages]]`: they set users and length",
        )
        .with_hint("give `--stages` to change them, e.g. `--stages 30s:10,2m:10`"));
    }
    if load.shape.is_some() {
        if duet {
            return Err(UserError::flag(
                "--baseline-target",
                "a duet runs fixed users; it cannot run stages",
            ));
        }
        if let Some(w) = &args.warmup {
            load.warmup = duration_flag("--warmup", w)?;
        }
        if let Some(s) = args.seed {
            load.seed = s;
        }
        crate::scenario::caps::check(&load).map_err(|e| UserError::flag("--window", e.message))?;
        return Ok(load);
    }
    fixed_load(args, &mut load)?;
    warmup(args, &mut load)?;
    if let Some(s) = args.seed {
        load.seed = s;
    }
    if duet {
        let total = load.duration.ok_or_else(|| {
            UserError::flag(
                "--baseline-target",
                "a duet needs `--duration` (slots are cut from it)",
            )
        })?;
        crate::engine::duet::slots(total, load.blocks)
            .map_err(|m| UserError::flag("--duration", m))?;
    }
    // The same limits whether a value came from a flag or from the scenario.
    crate::scenario::caps::check(&load).map_err(|e| {
        let flag = match e.key {
            "load.concurrency" => "--concurrency",
            "load.requests" => "--requests",
            "load.duration" => "--duration",
            "load.warmup" => "--warmup",
            "load.window" => "--window",
            _ => e.key,
        };
        let (table, key) = e.key.split_once('.').unwrap_or(("load", e.key));
        UserError::flag(flag, e.message).with_hint(format!(
            "the value may come from `{key}` in the scenario's `[{table}]`"
        ))
    })?;
    Ok(load)
}

/// `--stages` (and `--model`) over the scenario's shape, keeping its
/// arrival process and in-flight cap.
fn stages_flag(
    args: &RunArgs,
    stages: &str,
    prior: Option<&crate::scenario::shape::Shape>,
) -> Result<crate::scenario::shape::Shape, UserError> {
    use crate::scenario::Model;
    let stages =
        crate::scenario::shape::parse_stages(stages).map_err(|m| UserError::flag("--stages", m))?;
    let model = match args.model.as_deref() {
        None => prior.map_or(Model::Closed, |s| s.model),
        Some("closed") => Model::Closed,
        Some("open") => Model::Open,
        Some(other) => {
            return Err(UserError::flag(
                "--model",
                format!("`{other}` is not `closed` or `open`"),
            ))
        }
    };
    let shape = crate::scenario::shape::Shape {
        model,
        stages,
        arrival: prior.map_or(crate::scenario::Arrival::Poisson, |s| s.arrival),
        max_in_flight: prior.map_or(1000, |s| s.max_in_flight),
    };
    shape
        .check()
        .map_err(|(_, m)| UserError::flag("--stages", m))?;
    Ok(shape)
}

/// Fixed users for a duration or a request count: the flags over the
/// scenario, each within its range.
fn fixed_load(args: &RunArgs, load: &mut crate::scenario::LoadSpec) -> Result<(), UserError> {
    if let Some(c) = args.concurrency {
        load.concurrency = c;
    }
    if load.concurrency == 0 || load.concurrency > MAX_CONCURRENCY {
        return Err(UserError::flag(
            "--concurrency",
            format!("must be between 1 and {MAX_CONCURRENCY}"),
        ));
    }
    if let Some(d) = &args.duration {
        load.duration = Some(duration_flag("--duration", d)?);
    }
    if let Some(n) = args.requests {
        if n == 0 || n > MAX_REQUESTS {
            return Err(UserError::flag(
                "--requests",
                format!("must be between 1 and {MAX_REQUESTS}"),
            ));
        }
        load.requests = Some(n);
        if args.duration.is_none() {
            load.duration = None;
        }
    }
    match load.duration {
        Some(d) if d.is_zero() || d > MAX_DURATION => Err(UserError::flag(
            "--duration",
            "must be more than 0 and at most 24h",
        )),
        None if load.requests.is_none() => Err(UserError::flag(
            "--duration",
            "give a duration or `--requests`",
        )),
        _ => Ok(()),
    }
}

/// The warm-up of a fixed load: `--warmup`, or the scenario's when it fits
/// the run (none for a request count; a quarter of a run it would swallow).
fn warmup(args: &RunArgs, load: &mut crate::scenario::LoadSpec) -> Result<(), UserError> {
    if let Some(w) = &args.warmup {
        load.warmup = duration_flag("--warmup", w)?;
    } else if load.duration.is_none() && !load.warmup.is_zero() {
        // A request-count run has no length to fit a warm-up into: the
        // scenario's would swallow a short run. Only `--warmup` sets one.
        eprintln!(
            "note: a `--requests` run does not use the scenario's {} warm-up (set one with --warmup)",
            humantime::format_duration(load.warmup)
        );
        load.warmup = Duration::ZERO;
    }
    let Some(d) = load.duration else {
        return Ok(());
    };
    if load.warmup < d {
        return Ok(());
    }
    if args.warmup.is_some() {
        return Err(UserError::flag(
            "--warmup",
            format!(
                "the warm-up ({:?}) must be shorter than the duration ({d:?})",
                load.warmup
            ),
        ));
    }
    // The scenario's warm-up is longer than this short run: keep a quarter.
    load.warmup = d / 4;
    eprintln!(
        "note: the scenario's warm-up is not shorter than --duration; using {} (set it with --warmup)",
        humantime::format_duration(load.warmup)
    );
    Ok(())
}

/// `--metrics-listen`: an address and port; anything but loopback only
/// when said explicitly (the figures name steps and rates).
fn metrics_listen(args: &RunArgs) -> Result<Option<std::net::SocketAddr>, UserError> {
    let Some(a) = &args.metrics_listen else {
        return Ok(None);
    };
    let a = a.trim();
    let a = if a.starts_with(':') {
        format!("127.0.0.1{a}")
    } else {
        a.to_string()
    };
    a.parse::<std::net::SocketAddr>().map(Some).map_err(|_| {
        UserError::flag("--metrics-listen", format!("`{a}` is not ADDR:PORT")).with_hint(
            "for example `--metrics-listen 127.0.0.1:9464` (0.0.0.0 to serve other machines)",
        )
    })
}

/// The extra root certificate of `--ca-cert`, checked to hold PEM.
fn ca_cert(args: &RunArgs) -> Result<Option<Vec<u8>>, UserError> {
    Ok(match &args.ca_cert {
        Some(p) => {
            let pem = std::fs::read(p).map_err(|source| UserError::Read {
                path: p.clone(),
                source,
            })?;
            let certs = rustls::pki_types::pem::PemObject::pem_slice_iter(&pem)
                .collect::<Result<Vec<rustls::pki_types::CertificateDer<'static>>, _>>();
            if !matches!(&certs, Ok(c) if !c.is_empty()) {
                return Err(UserError::invalid(
                    "certificate",
                    p,
                    None,
                    "no PEM certificate in the file",
                )
                .with_hint("`--ca-cert` takes a PEM file (-----BEGIN CERTIFICATE-----)"));
            }
            Some(pem)
        }
        None => None,
    })
}

impl UserError {
    fn into_scenario_hint(self) -> Self {
        match self {
            UserError::Read { path, source } => UserError::Invalid {
                what: "scenario",
                place: None,
                message: source.to_string(),
                hint: Some(format!(
                    "`--scenario` takes a TOML file or a bundled name: {}",
                    crate::scenario::BUNDLED
                        .iter()
                        .map(|(n, _)| format!("`{n}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
                path,
            },
            other => other,
        }
    }
}
