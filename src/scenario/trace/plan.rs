//! A trace checked whole and planned for its replay: its window, speed,
//! requests per step and per second, sessions and hash; and what the run
//! records of it.

use std::collections::HashSet;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{detect, read_line, Format, Grammar, TraceRequest, MAX_SESSIONS};
use crate::error::UserError;
use crate::scenario::lengths::Unit;
use crate::scenario::Scenario;

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
            crate::scenario::parse_duration(t).map(|d| d.as_secs_f64() * 1000.0)
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
    /// Sessions of the window that began before it (their steps that need
    /// ids made earlier fail as `template` errors).
    pub begun_before: u64,
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
                        .position(|s| s.response == crate::scenario::ResponseKind::Sse)
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
            begun_before: 0,
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
        // Sessions seen before the window (as many as the window may hold).
        let mut before: HashSet<String> = HashSet::new();
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
                if self.window.is_some_and(|w| r.t_ms < w.from_ms) {
                    if before.len() < MAX_SESSIONS {
                        before.insert(r.session.clone());
                    }
                } else {
                    self.count(&r);
                    if !sessions.contains(&r.session) {
                        self.begun_before += u64::from(before.contains(&r.session));
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
        // Whole milliseconds, past the last request's time.
        Duration::from_millis(self.due(self.last_ms).as_millis() as u64 + 1)
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
