//! Traces of real usage to replay (`run --replay`): one JSON line a
//! request, in time order. Two formats are read:
//!
//! - flora-gate's own: `{"t_ms": 1200, "session": "w7", "book": "b1",
//!   "step": "draft", "prompt_tokens": 800, "output_tokens": 400,
//!   "prefix": "bible-w7", "prefix_tokens": 300}` (`prompt_chars` and
//!   `prefix_chars` in characters instead; every key but `t_ms` and
//!   `session` optional; unknown keys refused);
//! - Mooncake's, as aiperf reads it: `{"timestamp": 27482,
//!   "input_length": 6955, "output_length": 52, "hash_ids": [46, 47]}`
//!   (each hash id a shared block of 512 tokens; `session_id` optional).
//!
//! A trace is read twice, a line at a time, never whole: once to check
//! every line (its number named in any error) and plan the run, then
//! again while the run sends it.

use std::collections::HashSet;
use std::io::{BufRead, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::lengths::{Unit, MAX_LENGTH};
use super::Scenario;
use crate::error::UserError;

/// The longest line read.
pub const MAX_LINE: usize = 64 * 1024;
/// Most sessions a replayed window may hold.
pub const MAX_SESSIONS: usize = 100_000;
/// The longest trace: a week.
pub const MAX_SPAN_MS: f64 = 7.0 * 24.0 * 3600.0 * 1000.0;
/// Tokens a Mooncake hash id stands for.
pub const MOONCAKE_BLOCK: u32 = 512;
/// Most hash ids a Mooncake line may list.
const MAX_HASH_IDS: usize = 4096;
/// Longest session or book name.
const MAX_NAME: usize = 200;

/// The trace formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// flora-gate's own JSONL.
    Flora,
    /// Mooncake JSONL (aiperf's `mooncake_trace`).
    Mooncake,
}

/// A length with its unit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Len {
    /// How many.
    pub n: u32,
    /// Of what.
    pub unit: Unit,
}

/// The prefix a traced prompt opens with.
#[derive(Debug, Clone, PartialEq)]
pub enum TracePrefix {
    /// A named group (flora-gate's format), this long.
    Group {
        /// The group's key (its name hashed).
        key: u64,
        /// Its length.
        len: Len,
    },
    /// Mooncake's blocks of [`MOONCAKE_BLOCK`] tokens, by hash id.
    Blocks(Vec<u64>),
}

/// One traced request.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceRequest {
    /// Its line in the file, from 1.
    pub line: u64,
    /// When it was sent, ms on the trace's clock.
    pub t_ms: f64,
    /// The writer (session) it belongs to.
    pub session: String,
    /// The writer's book, if named.
    pub book: Option<String>,
    /// The scenario step it is.
    pub step: usize,
    /// The prompt's length (its prefix included).
    pub prompt: Option<Len>,
    /// The output's length, tokens (`max_tokens`).
    pub output: Option<u32>,
    /// Its shared prefix.
    pub prefix: Option<TracePrefix>,
}

/// A name: text or a number.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Name {
    Text(String),
    Int(i64),
}

impl Name {
    fn text(self) -> String {
        match self {
            Name::Text(t) => t,
            Name::Int(i) => i.to_string(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FloraLine {
    t_ms: f64,
    session: Name,
    #[serde(default)]
    book: Option<Name>,
    #[serde(default)]
    step: Option<String>,
    #[serde(default)]
    prompt_tokens: Option<f64>,
    #[serde(default)]
    prompt_chars: Option<f64>,
    #[serde(default)]
    output_tokens: Option<f64>,
    #[serde(default)]
    prefix: Option<Name>,
    #[serde(default)]
    prefix_tokens: Option<f64>,
    #[serde(default)]
    prefix_chars: Option<f64>,
}

#[derive(Debug, Deserialize)]
struct MooncakeLine {
    timestamp: f64,
    input_length: f64,
    output_length: f64,
    #[serde(default)]
    hash_ids: Vec<u64>,
    #[serde(default)]
    session_id: Option<Name>,
}

/// How lines become requests: the format and the scenario's steps.
#[derive(Debug, Clone, PartialEq)]
struct Grammar {
    format: Format,
    steps: Vec<String>,
    /// The step of lines that name none.
    default_step: Option<usize>,
}

impl Grammar {
    /// Parse line `n`'s text; `None` for a blank line.
    fn parse(&self, n: u64, text: &str) -> Result<Option<TraceRequest>, String> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(None);
        }
        let r = match self.format {
            Format::Flora => self.flora(n, text)?,
            Format::Mooncake => self.mooncake(n, text)?,
        };
        if !(r.t_ms.is_finite() && (0.0..=MAX_SPAN_MS).contains(&r.t_ms)) {
            return Err(format!(
                "the time {} ms is not from 0 to a week ({MAX_SPAN_MS:.0} ms)",
                r.t_ms
            ));
        }
        if r.session.chars().count() > MAX_NAME
            || r.book
                .as_ref()
                .is_some_and(|b| b.chars().count() > MAX_NAME)
        {
            return Err(format!(
                "a session or book name is longer than {MAX_NAME} characters"
            ));
        }
        Ok(Some(r))
    }

    fn step(&self, name: Option<String>) -> Result<usize, String> {
        match name {
            Some(s) => self.steps.iter().position(|x| *x == s).ok_or_else(|| {
                format!(
                    "`{}` is not a step of the scenario (it has {})",
                    s.chars().take(60).collect::<String>(),
                    self.steps.iter().map(|x| format!("`{x}`")).collect::<Vec<_>>().join(", ")
                )
            }),
            None => self
                .default_step
                .ok_or_else(|| "the line names no `step`, and the scenario has several: name one per line or give `--replay-step`".to_string()),
        }
    }

    fn flora(&self, n: u64, text: &str) -> Result<TraceRequest, String> {
        let l: FloraLine = serde_json::from_str(text).map_err(|e| json_error(&e))?;
        let prompt = one_length(l.prompt_tokens, l.prompt_chars, "prompt")?;
        let prefix_len = one_length(l.prefix_tokens, l.prefix_chars, "prefix")?;
        let prefix = match (l.prefix, prefix_len) {
            (None, None) => None,
            (None, Some(_)) => {
                return Err("`prefix_tokens`/`prefix_chars` need a `prefix` group".into())
            }
            (Some(_), None) => {
                return Err("a `prefix` needs its length: `prefix_tokens` or `prefix_chars`".into())
            }
            (Some(g), Some(len)) => {
                if let Some(p) = prompt {
                    if p.unit == len.unit && len.n > p.n {
                        return Err(format!(
                            "the prefix ({}) is longer than the prompt ({})",
                            len.n, p.n
                        ));
                    }
                }
                Some(TracePrefix::Group {
                    key: name_key(&g.text()),
                    len,
                })
            }
        };
        if prefix.is_some() && prompt.is_none() {
            return Err("a `prefix` opens a prompt: give `prompt_tokens` or `prompt_chars`".into());
        }
        Ok(TraceRequest {
            line: n,
            t_ms: l.t_ms,
            session: l.session.text(),
            book: l.book.map(Name::text),
            step: self.step(l.step)?,
            prompt,
            output: l
                .output_tokens
                .map(|o| length(o, "output_tokens"))
                .transpose()?,
            prefix,
        })
    }

    fn mooncake(&self, n: u64, text: &str) -> Result<TraceRequest, String> {
        let l: MooncakeLine = serde_json::from_str(text).map_err(|e| json_error(&e))?;
        if l.hash_ids.len() > MAX_HASH_IDS {
            return Err(format!("more than {MAX_HASH_IDS} `hash_ids`"));
        }
        let input = length(l.input_length, "input_length")?;
        Ok(TraceRequest {
            line: n,
            t_ms: l.timestamp,
            // Without a session, each request is its own.
            session: l.session_id.map_or_else(|| format!("line-{n}"), Name::text),
            book: None,
            step: self.step(None)?,
            prompt: Some(Len {
                n: input,
                unit: Unit::Tokens,
            }),
            output: Some(length(l.output_length, "output_length")?),
            prefix: (!l.hash_ids.is_empty()).then_some(TracePrefix::Blocks(l.hash_ids)),
        })
    }
}

fn json_error(e: &serde_json::Error) -> String {
    let m = e.to_string();
    // serde_json adds "at line 1 column N": the line is the file's, said apart.
    match m.rfind(" at line ") {
        Some(i) => m[..i].to_string(),
        None => m,
    }
}

fn length(x: f64, key: &str) -> Result<u32, String> {
    if x.is_finite() && (1.0..=MAX_LENGTH).contains(&x) && x.fract() == 0.0 {
        Ok(x as u32)
    } else {
        Err(format!(
            "`{key}` is {x}: a length is a whole number from 1 to {MAX_LENGTH:.0}"
        ))
    }
}

fn one_length(tokens: Option<f64>, chars: Option<f64>, what: &str) -> Result<Option<Len>, String> {
    match (tokens, chars) {
        (Some(_), Some(_)) => Err(format!("give `{what}_tokens` or `{what}_chars`, not both")),
        (Some(t), None) => Ok(Some(Len {
            n: length(t, &format!("{what}_tokens"))?,
            unit: Unit::Tokens,
        })),
        (None, Some(c)) => Ok(Some(Len {
            n: length(c, &format!("{what}_chars"))?,
            unit: Unit::Chars,
        })),
        (None, None) => Ok(None),
    }
}

/// A stable key for a name (the first 8 bytes of its sha256).
pub fn name_key(s: &str) -> u64 {
    let d = Sha256::digest(s.as_bytes());
    u64::from_le_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
}

/// The format of a trace, from its first line's keys.
fn detect(first: &str) -> Result<Format, String> {
    let v: serde_json::Value =
        serde_json::from_str(first.trim()).map_err(|e| format!("not JSON: {}", json_error(&e)))?;
    let has = |k: &str| v.get(k).is_some();
    if has("t_ms") {
        Ok(Format::Flora)
    } else if has("timestamp") && has("input_length") {
        Ok(Format::Mooncake)
    } else if has("request_id") && has("start_ms") {
        Err("this is a request log (`--requests-out`), in the order requests ended; convert it first: `flora-gate trace convert REQUESTS.jsonl -o trace.jsonl`".into())
    } else {
        Err("not a trace line: flora-gate's lines have `t_ms` and `session`, Mooncake's `timestamp` and `input_length`".into())
    }
}

/// Read one line of at most [`MAX_LINE`] bytes into `buf` (its newline
/// dropped); `Ok(false)` at the end. A longer line is an error, found
/// without reading the rest of it.
pub fn read_line(r: &mut impl BufRead, buf: &mut Vec<u8>) -> std::io::Result<bool> {
    buf.clear();
    let n = r
        .by_ref()
        .take(MAX_LINE as u64 + 1)
        .read_until(b'\n', buf)?;
    if n == 0 {
        return Ok(false);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
    } else if buf.len() > MAX_LINE {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("a line is longer than {} kB", MAX_LINE / 1024),
        ));
    }
    Ok(true)
}

/// A trace's lines as text, read one at a time, hashed as they go.
struct Lines<'a, R> {
    reader: R,
    buf: Vec<u8>,
    hash: Sha256,
    /// Lines read so far.
    n: u64,
    path: &'a Path,
}

impl<R: BufRead> Lines<'_, R> {
    /// The next line, `None` at the end.
    fn next(&mut self) -> Result<Option<String>, UserError> {
        let more = read_line(&mut self.reader, &mut self.buf)
            .map_err(|e| self.invalid(Some(self.n + 1), e.to_string()))?;
        if !more {
            return Ok(None);
        }
        self.n += 1;
        self.hash.update(&self.buf);
        self.hash.update(b"\n");
        Ok(Some(String::from_utf8_lossy(&self.buf).into_owned()))
    }

    fn invalid(&self, line: Option<u64>, m: String) -> UserError {
        UserError::invalid("trace", self.path, line.map(|l| format!("line {l}")), m)
    }
}

/// A slice of the trace's time: `[from, to)` ms.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    /// From, ms of trace time.
    pub from_ms: f64,
    /// To (not included), ms.
    pub to_ms: f64,
}

impl Window {
    /// Parse `60s..180s` (either end may be left out: `..5m`, `2m..`).
    pub fn parse(s: &str) -> Result<Window, String> {
        let (a, b) = s
            .split_once("..")
            .ok_or_else(|| format!("`{s}` is not a window; write FROM..TO, e.g. `60s..180s`"))?;
        let ms = |t: &str, default: f64| -> Result<f64, String> {
            let t = t.trim();
            if t.is_empty() {
                return Ok(default);
            }
            super::parse_duration(t).map(|d| d.as_secs_f64() * 1000.0)
        };
        let w = Window {
            from_ms: ms(a, 0.0)?,
            to_ms: ms(b, f64::INFINITY)?,
        };
        if w.to_ms <= w.from_ms {
            return Err(format!("`{s}`: the window ends before it starts"));
        }
        Ok(w)
    }

    fn label(&self) -> String {
        let f = |ms: f64| humantime::format_duration(Duration::from_millis(ms as u64)).to_string();
        if self.to_ms.is_finite() {
            format!("{}..{}", f(self.from_ms), f(self.to_ms))
        } else {
            format!("{}..", f(self.from_ms))
        }
    }
}

/// A checked trace, ready to replay.
#[derive(Debug, Clone)]
pub struct Replay {
    /// The file.
    pub path: PathBuf,
    /// Its format.
    pub format: Format,
    grammar: Grammar,
    /// How many times faster than recorded.
    pub speed: f64,
    /// The slice replayed.
    pub window: Option<Window>,
    /// Lines read (to the window's end).
    pub lines: u64,
    /// sha256 of the bytes read.
    pub sha256: String,
    /// Requests in the window.
    pub requests: u64,
    /// Sessions in the window.
    pub sessions: u64,
    /// The trace time the run's start stands for, ms.
    pub origin_ms: f64,
    /// The last request's trace time, ms.
    pub last_ms: f64,
    /// Requests per step.
    pub per_step: Vec<u64>,
    /// Requests due in each second of the run.
    pub per_second: Vec<u32>,
    /// Steps whose prompt lengths the trace gives in tokens.
    pub token_steps: Vec<usize>,
    /// Steps whose prompt (or output) lengths the trace gives.
    pub sized_steps: Vec<usize>,
}

impl PartialEq for Replay {
    fn eq(&self, o: &Self) -> bool {
        self.path == o.path
            && self.sha256 == o.sha256
            && self.speed == o.speed
            && self.window == o.window
    }
}

/// What the run records of its replay.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ReplayInfo {
    /// The trace's file name.
    pub file: String,
    /// Its format.
    pub format: Option<Format>,
    /// sha256 of the bytes read.
    pub sha256: String,
    /// Lines read.
    pub lines: u64,
    /// Requests in the window.
    pub requests: u64,
    /// Sessions in the window.
    pub sessions: u64,
    /// How many times faster than recorded.
    pub speed: f64,
    /// The slice replayed, if one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
    /// The trace's span replayed, seconds of trace time.
    pub span_s: f64,
    /// Requests per step in the trace.
    pub per_step: std::collections::BTreeMap<String, u64>,
    /// Requests that waited for their session's previous one (order kept).
    pub waited_for_session: u64,
    /// How long those waited, p99, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_wait_p99_ms: Option<f64>,
    /// Requests the generator started more than 200 ms late (sent anyway:
    /// a session's order matters more than its time).
    pub late_over_200ms: u64,
}

/// What the replay measured as it ran.
#[derive(Debug, Clone, Default)]
pub struct ReplayStats {
    /// Requests that waited for their session's previous one.
    pub waited: u64,
    /// How long, ms (p99).
    pub wait_p99_ms: Option<f64>,
    /// Started more than 200 ms late by the generator.
    pub late_over_200ms: u64,
}

impl Replay {
    /// Check `path` line by line against `scenario`'s steps and plan its
    /// replay at `speed` (checked by the caller) over `window`. `step` is
    /// the step of lines that name none (default: the scenario's only
    /// step, or its first streamed one for a Mooncake trace).
    pub fn open(
        path: &Path,
        scenario: &Scenario,
        speed: f64,
        window: Option<Window>,
        step: Option<usize>,
    ) -> Result<Replay, UserError> {
        let file = std::fs::File::open(path).map_err(|e| UserError::Read {
            path: path.to_path_buf(),
            source: e,
        })?;
        let mut lines = Lines {
            reader: std::io::BufReader::with_capacity(1 << 16, file),
            buf: Vec::new(),
            hash: Sha256::new(),
            n: 0,
            path,
        };
        // The first line that is not blank says the format.
        let first = loop {
            match lines.next()? {
                None => return Err(lines.invalid(None, "the trace holds no requests".into())),
                Some(t) if t.trim().is_empty() => {}
                Some(t) => break t,
            }
        };
        let format = detect(&first).map_err(|m| lines.invalid(Some(lines.n), m))?;
        let default_step = step.or_else(|| {
            if scenario.steps.len() == 1 {
                return Some(0);
            }
            (format == Format::Mooncake)
                .then(|| {
                    scenario
                        .steps
                        .iter()
                        .position(|s| s.response == super::ResponseKind::Sse)
                })
                .flatten()
        });
        let grammar = Grammar {
            format,
            steps: scenario.steps.iter().map(|s| s.name.clone()).collect(),
            default_step,
        };
        let mut plan = Replay {
            path: path.to_path_buf(),
            format,
            grammar,
            speed,
            window,
            lines: 0,
            sha256: String::new(),
            requests: 0,
            sessions: 0,
            origin_ms: window.map_or(f64::NAN, |w| w.from_ms),
            last_ms: 0.0,
            per_step: vec![0; scenario.steps.len()],
            per_second: Vec::new(),
            token_steps: Vec::new(),
            sized_steps: Vec::new(),
        };
        plan.scan(&mut lines, first)?;
        if plan.requests == 0 {
            return Err(lines.invalid(
                None,
                match window {
                    Some(w) => format!("no request in the window {}", w.label()),
                    None => "the trace holds no requests".into(),
                },
            ));
        }
        plan.lines = lines.n;
        plan.sha256 = format!("{:x}", lines.hash.finalize());
        Ok(plan)
    }

    /// Read every line from `first` on (to the window's end), checking
    /// each and counting the window's requests and sessions.
    fn scan<R: BufRead>(
        &mut self,
        lines: &mut Lines<'_, R>,
        first: String,
    ) -> Result<(), UserError> {
        let mut sessions: HashSet<String> = HashSet::new();
        let mut prev = f64::NEG_INFINITY;
        let mut text = Some(first);
        while let Some(t) = text {
            let n = lines.n;
            if let Some(r) = self
                .grammar
                .parse(n, &t)
                .map_err(|m| lines.invalid(Some(n), m))?
            {
                if r.t_ms < prev {
                    return Err(lines.invalid(Some(n), format!(
                        "its time {} ms is before the line above's {prev} ms: a trace is in time order (sort it by time)",
                        r.t_ms
                    )));
                }
                prev = r.t_ms;
                if self.window.is_some_and(|w| r.t_ms >= w.to_ms) {
                    break;
                }
                if self.window.is_none_or(|w| r.t_ms >= w.from_ms) {
                    self.count(&r);
                    if !sessions.contains(&r.session) {
                        if sessions.len() >= MAX_SESSIONS {
                            return Err(lines.invalid(Some(n), format!(
                                "more than {MAX_SESSIONS} sessions: replay a slice with `--replay-window`"
                            )));
                        }
                        sessions.insert(r.session.clone());
                    }
                }
            }
            text = lines.next()?;
        }
        self.sessions = sessions.len() as u64;
        Ok(())
    }

    /// Count request `r` (in the window) into the plan.
    fn count(&mut self, r: &TraceRequest) {
        if self.origin_ms.is_nan() {
            self.origin_ms = r.t_ms;
        }
        self.requests += 1;
        self.last_ms = r.t_ms;
        self.per_step[r.step] += 1;
        let sec = self.due(r.t_ms).as_secs() as usize;
        if self.per_second.len() <= sec {
            self.per_second.resize(sec + 1, 0);
        }
        self.per_second[sec] = self.per_second[sec].saturating_add(1);
        if let Some(p) = r.prompt {
            if !self.sized_steps.contains(&r.step) {
                self.sized_steps.push(r.step);
            }
            if p.unit == Unit::Tokens && !self.token_steps.contains(&r.step) {
                self.token_steps.push(r.step);
            }
        }
        if r.output.is_some() && !self.sized_steps.contains(&r.step) {
            self.sized_steps.push(r.step);
        }
    }

    /// When a request of trace time `t_ms` is due, from the run's start.
    pub fn due(&self, t_ms: f64) -> Duration {
        Duration::from_secs_f64(((t_ms - self.origin_ms) / self.speed / 1000.0).max(0.0))
    }

    /// How long the replay sends: up to its last request.
    pub fn duration(&self) -> Duration {
        self.due(self.last_ms) + Duration::from_millis(1)
    }

    /// Requests due per second at `t` from the run's start.
    pub fn rate_at(&self, t: Duration) -> f64 {
        f64::from(
            self.per_second
                .get(t.as_secs() as usize)
                .copied()
                .unwrap_or(0),
        )
    }

    /// The requests of the window, read again a line at a time.
    pub fn requests(
        &self,
    ) -> Result<impl Iterator<Item = Result<TraceRequest, String>> + use<>, UserError> {
        let file = std::fs::File::open(&self.path).map_err(|e| UserError::Read {
            path: self.path.clone(),
            source: e,
        })?;
        let mut reader = std::io::BufReader::with_capacity(1 << 16, file);
        let grammar = self.grammar.clone();
        let window = self.window;
        let mut n = 0u64;
        let mut buf = Vec::new();
        let mut done = false;
        Ok(std::iter::from_fn(move || loop {
            if done {
                return None;
            }
            match read_line(&mut reader, &mut buf) {
                Ok(true) => {}
                Ok(false) => return None,
                Err(e) => {
                    done = true;
                    return Some(Err(format!("line {}: {e}", n + 1)));
                }
            }
            n += 1;
            let text = String::from_utf8_lossy(&buf);
            match grammar.parse(n, &text) {
                Ok(None) => {}
                Ok(Some(r)) if window.is_some_and(|w| r.t_ms < w.from_ms) => {}
                Ok(Some(r)) if window.is_some_and(|w| r.t_ms >= w.to_ms) => return None,
                Ok(Some(r)) => return Some(Ok(r)),
                Err(m) => {
                    done = true;
                    return Some(Err(format!("line {n}: {m}")));
                }
            }
        }))
    }

    /// The run's record of this replay.
    pub fn info(&self, stats: Option<&ReplayStats>) -> ReplayInfo {
        let stats = stats.cloned().unwrap_or_default();
        ReplayInfo {
            file: self
                .path
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default(),
            format: Some(self.format),
            sha256: self.sha256.clone(),
            lines: self.lines,
            requests: self.requests,
            sessions: self.sessions,
            speed: self.speed,
            window: self.window.map(|w| w.label()),
            span_s: (self.last_ms - self.origin_ms).max(0.0) / 1000.0,
            per_step: self
                .grammar
                .steps
                .iter()
                .zip(&self.per_step)
                .filter(|(_, n)| **n > 0)
                .map(|(s, n)| (s.clone(), *n))
                .collect(),
            waited_for_session: stats.waited,
            session_wait_p99_ms: stats.wait_p99_ms,
            late_over_200ms: stats.late_over_200ms,
        }
    }
}

pub mod convert;

#[cfg(test)]
mod tests;
