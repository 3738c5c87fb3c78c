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

use std::io::{BufRead, Read};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::lengths::{Unit, MAX_LENGTH};

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

mod plan;
pub use plan::{Replay, ReplayInfo, ReplayStats, Window};

pub mod convert;

#[cfg(test)]
mod tests;
