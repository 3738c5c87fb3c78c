//! The Prometheus text exposition format (0.0.4, and what OpenMetrics adds
//! to it: `# UNIT`, `# EOF`, `_created`, float timestamps), read as servers
//! really write it: metric names with colons (`vllm:num_requests_waiting`),
//! quoted label values with escapes, commas and braces, `+Inf`, `-Inf` and
//! `NaN`, optional timestamps, and `HELP`/`TYPE` lines in any order.
//! Anything else is an error naming the line; nothing panics.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// What a `# TYPE` line says a family is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (resets to zero on a restart).
    Counter,
    /// Goes up and down.
    Gauge,
    /// Cumulative `_bucket{le=…}`, `_sum`, `_count`.
    Histogram,
    /// Quantiles, `_sum`, `_count`.
    Summary,
    /// No `# TYPE`, or `untyped`/`unknown`/another OpenMetrics type.
    Untyped,
}

impl Kind {
    fn parse(s: &str) -> Kind {
        match s {
            "counter" => Kind::Counter,
            "gauge" => Kind::Gauge,
            "histogram" | "gaugehistogram" => Kind::Histogram,
            "summary" => Kind::Summary,
            _ => Kind::Untyped,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
            Kind::Summary => "summary",
            Kind::Untyped => "untyped",
        }
    }
}

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The metric name as written (`vllm:num_requests_waiting`,
    /// `http_request_duration_seconds_bucket`).
    pub name: String,
    /// Labels in the order written.
    pub labels: Vec<(String, String)>,
    /// The value.
    pub value: f64,
    /// The timestamp, ms since the epoch, if the line has one.
    pub timestamp_ms: Option<i64>,
}

impl Sample {
    /// The value of a label.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One scrape: its samples, and the families' types and help.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Exposition {
    /// Every sample, in order.
    pub samples: Vec<Sample>,
    /// `# TYPE` of each family.
    pub types: BTreeMap<String, Kind>,
    /// `# HELP` of each family.
    pub help: BTreeMap<String, String>,
}

impl Exposition {
    /// The family a sample belongs to: its name, or the name without a
    /// `_bucket`, `_sum`, `_count`, `_total`, `_created` suffix when that
    /// is a typed family.
    pub fn family_of<'a>(&self, name: &'a str) -> &'a str {
        if self.types.contains_key(name) {
            return name;
        }
        for suffix in [
            "_bucket", "_sum", "_count", "_total", "_created", "_gcount", "_gsum",
        ] {
            if let Some(base) = name.strip_suffix(suffix) {
                if self.types.contains_key(base) {
                    return base;
                }
            }
        }
        name
    }

    /// The type of a sample's family.
    pub fn kind_of(&self, name: &str) -> Kind {
        self.types
            .get(self.family_of(name))
            .copied()
            .unwrap_or(Kind::Untyped)
    }
}

/// What is wrong with an exposition, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for ParseError {}

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// A metric name at the start of `s`, and the rest.
fn name(s: &str) -> Option<(&str, &str)> {
    let mut chars = s.char_indices();
    match chars.next() {
        Some((_, c)) if is_name_start(c) => {}
        _ => return None,
    }
    let end = chars
        .find(|(_, c)| !is_name_char(*c))
        .map_or(s.len(), |(i, _)| i);
    Some((&s[..end], &s[end..]))
}

/// A sample value: a float, `+Inf`, `-Inf`, `NaN` (any case).
pub fn parse_value(s: &str) -> Option<f64> {
    match s.to_ascii_lowercase().as_str() {
        "+inf" | "inf" => Some(f64::INFINITY),
        "-inf" => Some(f64::NEG_INFINITY),
        "nan" => Some(f64::NAN),
        _ => {
            // Rust accepts "infinity" and "nan" spellings the format does not;
            // what is left must look like a number.
            if s.chars()
                .all(|c| c.is_ascii_digit() || "+-.eE_".contains(c))
                && !s.contains('_')
            {
                s.parse().ok()
            } else {
                None
            }
        }
    }
}

/// Label pairs in the order written.
type Labels = Vec<(String, String)>;

/// `{a="x",b="y"}` at the start of `s` (after the name), and the rest.
fn labels(s: &str) -> Result<(Labels, &str), String> {
    let Some(mut rest) = s.strip_prefix('{') else {
        return Ok((Vec::new(), s));
    };
    let mut out = Vec::new();
    loop {
        rest = rest.trim_start();
        if let Some(r) = rest.strip_prefix('}') {
            return Ok((out, r));
        }
        let (key, r) = name(rest).ok_or("a label name was expected")?;
        if key.contains(':') {
            return Err(format!(
                "`{key}` is not a label name (no colons in label names)"
            ));
        }
        let r = r.trim_start();
        let r = r
            .strip_prefix('=')
            .ok_or_else(|| format!("`=` was expected after the label `{key}`"))?;
        let r = r.trim_start();
        let mut chars = r.char_indices();
        if chars.next().map(|(_, c)| c) != Some('"') {
            return Err(format!("the value of the label `{key}` must be quoted"));
        }
        let mut value = String::new();
        let mut end = None;
        let mut escaped = false;
        for (i, c) in chars {
            if escaped {
                match c {
                    'n' => value.push('\n'),
                    '\\' | '"' => value.push(c),
                    // Unknown escapes are kept as written.
                    other => {
                        value.push('\\');
                        value.push(other);
                    }
                }
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                end = Some(i);
                break;
            } else {
                value.push(c);
            }
        }
        let end = end.ok_or_else(|| format!("the value of the label `{key}` is not closed"))?;
        out.push((key.to_string(), value));
        rest = r[end + 1..].trim_start();
        if let Some(r) = rest.strip_prefix(',') {
            rest = r;
        } else if !rest.starts_with('}') {
            return Err("`,` or `}` was expected after a label".into());
        }
    }
}

/// Parse a whole exposition.
pub fn parse(text: &str) -> Result<Exposition, ParseError> {
    let mut out = Exposition::default();
    for (i, raw) in text.lines().enumerate() {
        let err = |message: String| ParseError {
            line: i + 1,
            message,
        };
        let line = raw.trim_matches(|c| c == ' ' || c == '\t' || c == '\r');
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let mut words = comment.trim_start().splitn(3, ' ');
            match (words.next(), words.next(), words.next()) {
                (Some("TYPE"), Some(n), Some(t)) => {
                    out.types.insert(n.to_string(), Kind::parse(t.trim()));
                }
                (Some("HELP"), Some(n), help) => {
                    out.help
                        .insert(n.to_string(), help.unwrap_or("").to_string());
                }
                // `# UNIT`, `# EOF` and plain comments say nothing we keep.
                _ => {}
            }
            continue;
        }
        let (metric, rest) = name(line).ok_or_else(|| {
            err(format!(
                "`{}` does not start with a metric name",
                excerpt(line)
            ))
        })?;
        let (labels, rest) = labels(rest).map_err(err)?;
        let mut fields = rest.split_whitespace();
        let value = fields
            .next()
            .ok_or_else(|| err(format!("`{metric}` has no value")))?;
        let value = parse_value(value)
            .ok_or_else(|| err(format!("`{}` is not a sample value", excerpt(value))))?;
        let timestamp_ms = match fields.next() {
            None => None,
            Some(t) => Some(
                parse_timestamp(t)
                    .ok_or_else(|| err(format!("`{}` is not a timestamp", excerpt(t))))?,
            ),
        };
        if let Some(extra) = fields.next() {
            // OpenMetrics exemplars start with `#`; anything else is garbage.
            if !extra.starts_with('#') {
                return Err(err(format!(
                    "unexpected `{}` after the value",
                    excerpt(extra)
                )));
            }
        }
        out.samples.push(Sample {
            name: metric.to_string(),
            labels,
            value,
            timestamp_ms,
        });
    }
    Ok(out)
}

/// Milliseconds (0.0.4) or, with a fraction, seconds (OpenMetrics).
fn parse_timestamp(t: &str) -> Option<i64> {
    if let Ok(ms) = t.parse::<i64>() {
        return Some(ms);
    }
    let secs: f64 = parse_value(t).filter(|v| v.is_finite())?;
    let ms = secs * 1000.0;
    (ms.abs() < 9.0e15).then_some(ms.round() as i64)
}

/// At most 40 characters of foreign text, for an error message.
fn excerpt(s: &str) -> String {
    let cut: String = s.chars().take(40).collect();
    if cut.len() < s.len() {
        format!("{cut}…")
    } else {
        cut
    }
}

/// Write an exposition in the 0.0.4 text format (the inverse of [`parse`]
/// for what it keeps).
pub fn render(e: &Exposition) -> String {
    let mut o = String::new();
    for (n, h) in &e.help {
        let _ = writeln!(o, "# HELP {n} {h}");
    }
    for (n, k) in &e.types {
        let _ = writeln!(o, "# TYPE {n} {}", k.as_str());
    }
    for s in &e.samples {
        o.push_str(&s.name);
        if !s.labels.is_empty() {
            o.push('{');
            for (i, (k, v)) in s.labels.iter().enumerate() {
                if i > 0 {
                    o.push(',');
                }
                let v = v
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                let _ = write!(o, "{k}=\"{v}\"");
            }
            o.push('}');
        }
        let v = if s.value.is_nan() {
            "NaN".to_string()
        } else if s.value == f64::INFINITY {
            "+Inf".to_string()
        } else if s.value == f64::NEG_INFINITY {
            "-Inf".to_string()
        } else {
            format!("{:?}", s.value)
        };
        let _ = write!(o, " {v}");
        if let Some(t) = s.timestamp_ms {
            let _ = write!(o, " {t}");
        }
        o.push('\n');
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_real_format_is_read_as_written() {
        let text = r#"# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{model_name="meta-llama/Llama-3.1-8B"} 7.0
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{le="0.1",model_name="m"} 3
vllm:time_to_first_token_seconds_bucket{le="+Inf",model_name="m"} 10
vllm:time_to_first_token_seconds_sum{model_name="m"} 2.5
vllm:time_to_first_token_seconds_count{model_name="m"} 10
weird{path="/a,b}c",quote="say \"hi\"",nl="x\ny",back="a\\b"} NaN 1700000000000
neg -Inf
# EOF
"#;
        let e = parse(text).expect("parses");
        assert_eq!(e.samples.len(), 7);
        assert_eq!(e.samples[0].name, "vllm:num_requests_waiting");
        assert_eq!(e.samples[0].value, 7.0);
        assert_eq!(
            e.kind_of("vllm:time_to_first_token_seconds_bucket"),
            Kind::Histogram
        );
        assert_eq!(e.samples[2].label("le"), Some("+Inf"));
        let w = &e.samples[5];
        assert_eq!(w.label("path"), Some("/a,b}c"));
        assert_eq!(w.label("quote"), Some("say \"hi\""));
        assert_eq!(w.label("nl"), Some("x\ny"));
        assert_eq!(w.label("back"), Some("a\\b"));
        assert!(w.value.is_nan());
        assert_eq!(w.timestamp_ms, Some(1_700_000_000_000));
        assert_eq!(e.samples[6].value, f64::NEG_INFINITY);
    }

    #[test]
    fn garbage_is_an_error_naming_its_line() {
        for (text, line) in [
            ("ok 1\n{nope} 2\n", 2),
            ("a{b=\"unclosed} 1\n", 1),
            ("a{b=unquoted} 1\n", 1),
            ("a 1 2 3\n", 1),
            ("a twelve\n", 1),
            ("a\n", 1),
            ("a{x:y=\"1\"} 1\n", 1),
            ("a infinity\n", 1),
        ] {
            let e = parse(text).expect_err(text);
            assert_eq!(e.line, line, "{text}: {e}");
        }
    }
}
