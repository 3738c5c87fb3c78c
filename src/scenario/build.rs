//! Scenario text into a checked [`Scenario`]: the file's tables read key by
//! key, each error naming its line and key.

use super::*;
use file::LengthSpec;
use lengths::{Dist, Lengths, Prefix, Scope, Unit, MAX_LENGTH};

impl Scenario {
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
        let books_parallel = books_parallel(&file, books_per_user, &invalid)?;
        let server_metrics = file
            .server_metrics
            .resolve()
            .map_err(|(key, msg)| invalid(Some(format!("`{key}`")), msg))?;

        let mut env = crate::scenario::template_env(data.clone());
        let mut steps = Vec::with_capacity(file.steps.len());
        let mut names = BTreeSet::new();
        for (i, s) in file.steps.iter().enumerate() {
            steps.push(build_step(i, s, &mut env, &mut names, text, dir, &invalid)?);
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
            books_parallel,
            story_cap: file.story_cap.unwrap_or(16_000).clamp(1, 4 << 20),
            sweep: None,
            time_scale: None,
            calibrating: false,
            templates: Arc::new(env),
        };
        scenario.dry_run(&file.steps, text, origin)?;
        Ok(scenario)
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

/// How many of a user's books are written at once (1: one after another).
fn books_parallel(file: &FileScenario, books: u32, invalid: Invalid) -> Result<u32, UserError> {
    use file::BooksParallel;
    match file.books_parallel {
        None | Some(BooksParallel::All(false)) => Ok(1),
        Some(BooksParallel::All(true)) => Ok(books),
        Some(BooksParallel::Count(k)) if (1..=books).contains(&k) => Ok(k),
        Some(BooksParallel::Count(k)) => Err(invalid(
            Some("`books_parallel`".into()),
            format!("{k} is not between 1 and `books_per_user` ({books})"),
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
    dir: Option<&Path>,
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
    let lengths = step_lengths(s, text, dir, &key, invalid)?;
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
        lengths,
        calibration: None,
    })
}

/// A step's drawn lengths and prefix (`prompt_length`, `prompt_unit`,
/// `output_length`, `prefix`), or `None` when it draws none.
fn step_lengths(
    s: &FileStep,
    text: &str,
    dir: Option<&Path>,
    key: &dyn Fn(&str) -> String,
    invalid: &dyn Fn(Option<String>, String) -> UserError,
) -> Result<Option<Lengths>, UserError> {
    let dist = |l: &Option<toml::Spanned<LengthSpec>>, k: &str| {
        l.as_ref()
            .map(|l| {
                Dist::parse(&l.get_ref().text(), dir)
                    .map_err(|m| invalid(at(text, l.span(), &key(k)), m))
            })
            .transpose()
    };
    let prompt = dist(&s.prompt_length, "prompt_length")?;
    let output = dist(&s.output_length, "output_length")?;
    let prefix = match &s.prefix {
        Some(p) => {
            if p.count == 0 || p.count > 10_000 || p.length == 0 || f64::from(p.length) > MAX_LENGTH
            {
                return Err(invalid(
                    Some(format!("`{}`", key("prefix"))),
                    format!("a prefix needs a count from 1 to 10000 and a length from 1 to {MAX_LENGTH:.0}"),
                ));
            }
            Some(Prefix {
                count: p.count,
                length: p.length,
                scope: p.scope.unwrap_or(Scope::Shared),
            })
        }
        None => None,
    };
    if prefix.is_some() && prompt.is_none() {
        return Err(invalid(
            Some(format!("`{}`", key("prefix"))),
            "a prefix opens the drawn prompt: set `prompt_length` too".into(),
        ));
    }
    if s.prompt_unit.is_some() && prompt.is_none() {
        return Err(invalid(
            Some(format!("`{}`", key("prompt_unit"))),
            "`prompt_unit` needs `prompt_length`".into(),
        ));
    }
    if prompt.is_none() && output.is_none() {
        return Ok(None);
    }
    Ok(Some(Lengths {
        prompt,
        unit: s.prompt_unit.unwrap_or(Unit::Tokens),
        output,
        prefix,
    }))
}
