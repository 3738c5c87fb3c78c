//! From arguments to validated settings: every bad flag or file becomes a
//! [`UserError`] here, before anything runs. With `cli.rs` this is the
//! command-line layer: the only code that knows clap's structs or names a
//! flag in a validation error.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::cli::{
    BaselineCommand, Cli, Command, CommentArgs, CompareArgs, DemoArgs, FormatArg, GateArgs,
    MockArgs, MockBehaviour, ProposeArgs, RefreshArgs, ReportArgs, RunArgs,
};
use crate::commands::{
    CommentMode, CommentSettings, CompareSettings, DemoSettings, GateSettings, JudgeSettings,
    MockSettings, ProposeSettings, RefreshSettings, RefreshSource, ReportSettings, RunSettings,
    Settings, Sticky,
};
use crate::engine::Plan;
use crate::error::UserError;
use crate::mock::{FaultRates, MockConfig};
use crate::scenario::{parse_duration, AuthKind, Scenario};
use crate::tokens;

pub use crate::scenario::caps::{MAX_DURATION, MAX_REQUESTS, MAX_USERS as MAX_CONCURRENCY};

fn duration_flag(flag: &'static str, s: &str) -> Result<Duration, UserError> {
    parse_duration(s).map_err(|m| UserError::flag(flag, m))
}

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
    let scenario = Scenario::load(&args.scenario, &vars).map_err(|e| match e {
        // Only the scenario itself is "not a scenario"; a data file it names
        // that cannot be read stays a read error naming that file.
        UserError::Read { path, source } if path == std::path::Path::new(&args.scenario) => {
            UserError::Read { path, source }.into_scenario_hint()
        }
        other => other,
    })?;
    let (target, reference) = destinations(args, &scenario)?;
    let load = load_spec(args, &scenario, reference.is_some())?;
    let drain = duration_flag("--drain", &args.drain)?;
    let tokens = match (&args.tokens, scenario.auth.kind) {
        (Some(p), _) => tokens::load(p)?,
        (None, AuthKind::None) => Vec::new(),
        (None, AuthKind::Bearer) => {
            return Err(UserError::flag("--tokens", "the scenario uses bearer tokens, and none were given")
                .with_hint("pass `--tokens access_tokens.csv` (header `user_id,access_token`), or set `[auth] kind = \"none\"` in the scenario"))
        }
    };
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
    })
}

/// The target and the duet reference, parsed and checked against
/// `allow_hosts` before anything is sent.
fn destinations(
    args: &RunArgs,
    scenario: &Scenario,
) -> Result<(String, Option<String>), UserError> {
    let target = match (&args.target, &scenario.base_url) {
        (Some(t), _) => crate::target::parse_base(t, crate::target::Source { name: "--target" })?,
        (None, Some(b)) => {
            crate::target::parse_base(b, crate::target::Source { name: "base_url" })?
        }
        (None, None) => {
            return Err(
                UserError::flag("--target", "no target: the scenario has no `base_url`")
                    .with_hint("pass `--target http://host:port`"),
            )
        }
    };
    // Every destination is checked before the first request.
    crate::target::check_allowed(
        &scenario.safety.allow_hosts,
        &target,
        "the target",
        &scenario.origin,
    )?;
    let reference = match &args.baseline_target {
        Some(r) => {
            let url = crate::target::parse_base(
                r,
                crate::target::Source {
                    name: "--baseline-target",
                },
            )?;
            crate::target::check_allowed(
                &scenario.safety.allow_hosts,
                &url,
                "the reference (`--baseline-target`)",
                &scenario.origin,
            )?;
            Some(crate::target::base_text(&url))
        }
        None => None,
    };
    let target = crate::target::base_text(&target);
    Ok((target, reference))
}

/// The scenario's load with the flags over it, within the one set of caps.
fn load_spec(
    args: &RunArgs,
    scenario: &Scenario,
    duet: bool,
) -> Result<crate::scenario::LoadSpec, UserError> {
    let mut load = scenario.load.clone();
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
    if let Some(d) = load.duration {
        if d.is_zero() || d > MAX_DURATION {
            return Err(UserError::flag(
                "--duration",
                "must be more than 0 and at most 24h",
            ));
        }
    } else if load.requests.is_none() {
        return Err(UserError::flag(
            "--duration",
            "give a duration or `--requests`",
        ));
    }
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
    if let Some(d) = load.duration {
        if load.warmup >= d {
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
        }
    }
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
            _ => e.key,
        };
        UserError::flag(flag, e.message).with_hint(format!(
            "the value may come from `[{}]` in the scenario",
            e.key.replace('.', "] ")
        ))
    })?;
    Ok(load)
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

/// Validate mock settings.
pub fn mock_config(
    b: &MockBehaviour,
    tokens_file: Option<&std::path::Path>,
) -> Result<MockConfig, UserError> {
    let non_negative = |flag: &'static str, v: f64| {
        if v.is_finite() && v >= 0.0 {
            Ok(Duration::from_secs_f64(v / 1000.0))
        } else {
            Err(UserError::flag(
                flag,
                format!("`{v}` must be a number of milliseconds, 0 or more"),
            ))
        }
    };
    if !(b.slowdown.is_finite() && b.slowdown > 0.0) {
        return Err(UserError::flag(
            "--slowdown",
            "must be a positive factor, like 1.3",
        ));
    }
    let faults: FaultRates = b
        .error_rate
        .parse()
        .map_err(|m: String| UserError::flag("--error-rate", m))?;
    let tokens = match tokens_file {
        Some(p) => Some(
            tokens::load(p)?
                .into_iter()
                .map(|t| t.token.expose().to_string())
                .collect::<HashSet<_>>(),
        ),
        None => None,
    };
    Ok(MockConfig {
        ttft: non_negative("--ttft-ms", b.ttft_ms)?,
        itl: non_negative("--itl-ms", b.itl_ms)?,
        output_tokens: b.output_tokens,
        jitter: non_negative("--jitter-ms", b.jitter_ms)?,
        slowdown: b.slowdown,
        max_concurrency: (b.max_concurrency > 0).then_some(b.max_concurrency),
        faults,
        retry_after_s: b.retry_after,
        hang: Duration::from_secs(120),
        tokens,
        seed: b.seed,
        no_done: b.no_done,
        burst: b
            .burst
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(|m: String| UserError::flag("--burst", m))?,
    })
}

/// Command-line policy flags as a policy layer.
pub fn policy_overrides(
    a: &crate::cli::PolicyArgs,
) -> Result<crate::policy::PolicyFile, UserError> {
    let mut slo = std::collections::BTreeMap::new();
    for s in &a.slo {
        let (k, v) = s
            .split_once('=')
            .and_then(|(k, v)| {
                v.trim()
                    .parse::<f64>()
                    .ok()
                    .map(|v| (k.trim().to_string(), v))
            })
            .ok_or_else(|| {
                UserError::flag(
                    "--slo",
                    format!("`{s}` is not METRIC=NUMBER (for example `ttft_p90=800`)"),
                )
            })?;
        slo.insert(k, v);
    }
    Ok(crate::policy::PolicyFile {
        metrics: (!a.metrics.is_empty()).then(|| a.metrics.clone()),
        margin: a.margin,
        warn_margin: a.warn_margin,
        duet_margin: a.duet_margin,
        alpha: a.alpha,
        max_error_rate: a.max_error_rate,
        margins: None,
        slo: (!slo.is_empty()).then_some(slo),
    })
}

/// Every command line into the settings of its command.
pub fn settings(cli: Cli) -> Result<Settings, UserError> {
    Ok(match cli.command {
        Command::Demo(a) => Settings::Demo(demo(&a)?),
        Command::Mock(a) => Settings::Mock(mock(&a)?),
        Command::Run(a) => Settings::Run(run(&a)?),
        Command::Compare(a) => Settings::Compare(compare(&a)?),
        Command::Report(a) => Settings::Report(report(&a)?),
        Command::Baseline(BaselineCommand::Refresh(a)) => Settings::Refresh(refresh(&a)?),
        Command::Baseline(BaselineCommand::Propose(a)) => Settings::Propose(propose(a)),
        Command::Gate(a) => Settings::Gate(Box::new(gate(&a)?)),
        Command::Comment(a) => Settings::Comment(comment(a)),
    })
}

/// `run`: a plan and where its files go.
pub fn run(a: &RunArgs) -> Result<RunSettings, UserError> {
    Ok(RunSettings {
        plan: run_plan(a)?,
        out: a.out.clone(),
        requests_out: a.requests_out.clone(),
    })
}

fn judge(
    baseline: Option<&std::path::Path>,
    policy: &crate::cli::PolicyArgs,
    force: bool,
) -> Result<JudgeSettings, UserError> {
    let overrides = policy_overrides(policy)?;
    // Checked against the defaults now, so a bad value is a flag error
    // before any file is read.
    crate::policy::Policy::default()
        .apply(&overrides)
        .map_err(|m| UserError::flag("--metric/--margin/--alpha", m))?;
    Ok(JudgeSettings {
        baseline: baseline.map(std::path::Path::to_path_buf),
        overrides,
        force,
    })
}

fn compare(a: &CompareArgs) -> Result<CompareSettings, UserError> {
    if let Some(p) = &a.out {
        crate::error::check_outputs(&[("--out", p.as_path())])?;
    }
    Ok(CompareSettings {
        current: a.current.clone(),
        judge: judge(a.baseline.as_deref(), &a.policy, a.force)?,
        out: a.out.clone(),
    })
}

fn report(a: &ReportArgs) -> Result<ReportSettings, UserError> {
    if let Some(p) = &a.out {
        crate::error::check_outputs(&[("--out", p.as_path())])?;
    }
    Ok(ReportSettings {
        current: a.current.clone(),
        verdict: a.verdict.clone(),
        judge: JudgeSettings {
            baseline: a.baseline.clone(),
            overrides: crate::policy::PolicyFile::default(),
            force: a.force,
        },
        format: match a.format {
            FormatArg::Markdown => crate::render::report::Format::Markdown,
            FormatArg::Text => crate::render::report::Format::Text,
            FormatArg::Json => crate::render::report::Format::Json,
        },
        templates: a.templates.clone(),
        out: a.out.clone(),
    })
}

fn refresh(a: &RefreshArgs) -> Result<RefreshSettings, UserError> {
    if a.runs == 0 || a.runs > 100 {
        return Err(UserError::flag("--runs", "must be between 1 and 100"));
    }
    let source = if !a.from.is_empty() {
        RefreshSource::Files(a.from.clone())
    } else if a.mock {
        RefreshSource::Mock {
            duration: match &a.duration {
                Some(d) => duration_flag("--duration", d)?,
                None => crate::commands::DURATION,
            },
            warmup: a
                .warmup
                .as_deref()
                .map(|w| duration_flag("--warmup", w))
                .transpose()?,
            concurrency: a.concurrency.unwrap_or(crate::commands::CONCURRENCY),
        }
    } else {
        let scenario = a.scenario.clone().ok_or_else(|| {
            UserError::flag(
                "--scenario",
                "give a scenario to run, result files to combine, or `--mock`",
            )
        })?;
        RefreshSource::Plan(Box::new(run_plan(&RunArgs {
            scenario,
            target: a.target.clone(),
            tokens: a.tokens.clone(),
            concurrency: a.concurrency,
            duration: a.duration.clone(),
            requests: None,
            warmup: a.warmup.clone(),
            seed: None,
            vars: a.vars.clone(),
            out: a.out.clone(),
            requests_out: None,
            drain: crate::cli::DEFAULT_DRAIN.into(),
            no_progress: false,
            baseline_target: None,
            ca_cert: None,
        })?))
    };
    Ok(RefreshSettings {
        source,
        runs: a.runs,
        out: a.out.clone(),
        append: a.append,
        keep: a.keep as usize,
        accept_bad_runs: a.accept_bad_runs,
    })
}

fn propose(a: ProposeArgs) -> ProposeSettings {
    ProposeSettings {
        baseline: a.baseline,
        branch: a.branch,
        base: a.base,
        repo: a.repo,
        title: a.title,
    }
}

fn gate(a: &GateArgs) -> Result<GateSettings, UserError> {
    if a.baseline.is_none() && a.run.baseline_target.is_none() {
        return Err(UserError::flag(
            "--baseline",
            "the gate needs a baseline file or `--baseline-target`",
        ));
    }
    let run = run(&a.run)?;
    let mut outputs = vec![
        ("--out", a.run.out.as_path()),
        ("--verdict-out", a.verdict_out.as_path()),
        ("--report-out", a.report_out.as_path()),
    ];
    if let Some(p) = &a.run.requests_out {
        outputs.push(("--requests-out", p.as_path()));
    }
    crate::error::check_outputs(&outputs)?;
    Ok(GateSettings {
        run,
        judge: judge(a.baseline.as_deref(), &a.policy, a.force)?,
        verdict_out: a.verdict_out.clone(),
        report_out: a.report_out.clone(),
        comment: match a.comment {
            crate::cli::CommentMode::Auto => CommentMode::Auto,
            crate::cli::CommentMode::Always => CommentMode::Always,
            crate::cli::CommentMode::Never => CommentMode::Never,
        },
        sticky: Sticky {
            id: a.comment_id.clone(),
            author: a.comment_author.clone(),
        },
        fail_on_regression: a.fail_on_regression,
        confirm: a.confirm,
    })
}

fn comment(a: CommentArgs) -> CommentSettings {
    CommentSettings {
        body: a.body,
        sticky: Sticky {
            id: a.id,
            author: a.author,
        },
        pr: a.pr,
        repo: a.repo,
    }
}

fn mock(a: &MockArgs) -> Result<MockSettings, UserError> {
    let ip: std::net::IpAddr = a
        .host
        .parse()
        .map_err(|_| UserError::flag("--host", format!("`{}` is not an IP address", a.host)))?;
    Ok(MockSettings {
        config: mock_config(&a.behaviour, a.tokens.as_deref())?,
        addr: SocketAddr::new(ip, a.port),
    })
}

fn demo(a: &DemoArgs) -> Result<DemoSettings, UserError> {
    let duration = duration_flag("--duration", &a.duration)?;
    if duration < Duration::from_secs(2) {
        return Err(UserError::flag("--duration", "the demo needs at least 2s"));
    }
    if a.concurrency == 0 || a.concurrency > 256 {
        return Err(UserError::flag(
            "--concurrency",
            "the demo takes 1 to 256 users",
        ));
    }
    if !(a.slowdown.is_finite() && a.slowdown > 0.0) {
        return Err(UserError::flag(
            "--slowdown",
            "must be a positive factor, like 1.3",
        ));
    }
    if let Some(p) = &a.out {
        crate::error::check_outputs(&[("--out", p.as_path())])?;
    }
    Ok(DemoSettings {
        duration,
        concurrency: a.concurrency,
        slowdown: a.slowdown,
        out: a.out.clone(),
    })
}
