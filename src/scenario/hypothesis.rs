//! Hypotheses a test states about its own results, in a small language:
//!
//! - `ttft_p90 <= 800ms at users = 200` — a metric against a number, over
//!   the whole run or one part of it (`at users = N`: the stage that holds N
//!   users or starts per second; `at stage NAME`);
//! - `output_tokens_per_s at users = 64 >= 3 x at users = 16` — one part
//!   against a multiple of another;
//! - `no drift in tpot_p50` — over a soak, `ttft_p50` or `tpot_p50`.
//!
//! These are values only; the gate evaluates them against a result.

use serde::{Deserialize, Serialize};

/// Which part of the run a term is about.
#[derive(Debug, Clone, PartialEq)]
pub enum Place {
    /// The whole measured run.
    All,
    /// The stage whose target is this many users (or starts per second).
    Level(f64),
    /// The stage of this name.
    Stage(String),
}

/// A comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `<=` or `<`.
    AtMost,
    /// `>=` or `>`.
    AtLeast,
}

/// What is compared with.
#[derive(Debug, Clone, PartialEq)]
pub enum Rhs {
    /// A number in the metric's unit (ms for latencies, a fraction for
    /// `error_rate`, per second for rates).
    Value(f64),
    /// A multiple of the same metric at another place.
    Times(f64, Place),
}

/// A parsed statement.
#[derive(Debug, Clone, PartialEq)]
pub enum Statement {
    /// `METRIC [at PLACE] OP RHS`.
    Compare {
        /// The metric.
        metric: String,
        /// Where.
        place: Place,
        /// How.
        op: Op,
        /// Against what.
        rhs: Rhs,
    },
    /// `no drift in METRIC`.
    NoDrift(String),
}

/// A hypothesis as the scenario (and the result) holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hypothesis {
    /// The statement, as written.
    pub statement: String,
    /// A refuted hypothesis fails the gate.
    #[serde(default)]
    pub fail: bool,
}

/// A metric's canonical name: any the gate knows (`ttft_p95`, `itl_p50`,
/// `output_tokens_per_s`, …).
fn metric(word: &str) -> Result<String, String> {
    crate::policy::metrics::Metric::parse(word).map(|m| m.name())
}

/// A number with an optional unit: `800ms`, `0.8s`, `1%`, `1200`.
fn number(s: &str, metric: &str) -> Result<f64, String> {
    let s = s.trim();
    let (num, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('s').filter(|_| !metric.ends_with("_per_s")) {
        (n, 1000.0)
    } else if let Some(n) = s.strip_suffix('%') {
        (n, 0.01)
    } else {
        (s, 1.0)
    };
    let latency = !(metric == "error_rate" || metric.ends_with("_per_s"));
    if latency != (scale >= 1.0) && s != num {
        return Err(format!("`{s}` is not in the unit of {metric}"));
    }
    num.trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0)
        .map(|v| v * scale)
        .ok_or_else(|| format!("`{s}` is not a number (like 800ms, 1.5s, 1%, 1200)"))
}

/// `users = 200`, `stage peak`, `peak`.
fn place(s: &str) -> Result<Place, String> {
    let s = s.trim();
    if let Some(rest) = s.strip_prefix("users").or_else(|| s.strip_prefix("rate")) {
        let n = rest
            .trim()
            .strip_prefix('=')
            .ok_or("write `at users = N`")?;
        return n
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v > 0.0)
            .map(Place::Level)
            .ok_or_else(|| format!("`{}` is not a number of users", n.trim()));
    }
    let name = s
        .strip_prefix("stage")
        .map_or(s, str::trim)
        .trim_matches('"');
    if name.is_empty() {
        return Err("`at` needs a place: `at users = N` or `at stage NAME`".into());
    }
    Ok(Place::Stage(name.to_string()))
}

/// `METRIC [at PLACE]`.
fn term(s: &str) -> Result<(String, Place), String> {
    match s.split_once(" at ") {
        Some((m, p)) => Ok((metric(m)?, place(p)?)),
        None => Ok((metric(s)?, Place::All)),
    }
}

/// Parse a statement.
pub fn parse(text: &str) -> Result<Statement, String> {
    let s = text.trim();
    if let Some(m) = s.strip_prefix("no drift in ") {
        let m = metric(m)?;
        if !matches!(m.as_str(), "ttft_p50" | "tpot_p50") {
            return Err("drift is measured for ttft_p50 and tpot_p50".into());
        }
        return Ok(Statement::NoDrift(m));
    }
    let (lhs, op, rhs) = [
        ("<=", Op::AtMost),
        (">=", Op::AtLeast),
        ("≤", Op::AtMost),
        ("≥", Op::AtLeast),
        ("<", Op::AtMost),
        (">", Op::AtLeast),
    ]
    .iter()
    .find_map(|(sym, op)| s.split_once(sym).map(|(l, r)| (l, *op, r)))
    .ok_or_else(|| {
        format!(
            "`{s}` has no comparison (<=, >=); write it like `ttft_p90 <= 800ms at users = 200`"
        )
    })?;
    let (metric, place) = term(lhs)?;
    // `800ms at users = 200`: the place may follow the number too.
    let (rhs, place) = match rhs.split_once(['x', '×']) {
        Some((k, other)) if !other.trim().is_empty() && k.trim().parse::<f64>().is_ok() => {
            let k = k
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|k| k.is_finite() && *k > 0.0)
                .ok_or_else(|| format!("`{}` is not a factor above 0", k.trim()))?;
            let other = other.trim();
            let other_place = match other.strip_prefix("at ") {
                Some(p) => place_of(p)?,
                None => {
                    let (m2, p2) = term(other)?;
                    if m2 != metric {
                        return Err(format!("compare {metric} with {metric}, not with {m2}"));
                    }
                    p2
                }
            };
            (Rhs::Times(k, other_place), place)
        }
        _ => match rhs.split_once(" at ") {
            Some((v, p)) if place == Place::All => (Rhs::Value(number(v, &metric)?), place_of(p)?),
            _ => (Rhs::Value(number(rhs, &metric)?), place),
        },
    };
    Ok(Statement::Compare {
        metric,
        place,
        op,
        rhs,
    })
}

fn place_of(p: &str) -> Result<Place, String> {
    place(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_kinds_of_statement_parse() {
        assert_eq!(
            parse("ttft_p90 <= 800ms at users = 200"),
            Ok(Statement::Compare {
                metric: "ttft_p90".into(),
                place: Place::Level(200.0),
                op: Op::AtMost,
                rhs: Rhs::Value(800.0)
            })
        );
        assert_eq!(
            parse("output_tokens_per_s at users = 64 >= 3 x at users = 16"),
            Ok(Statement::Compare {
                metric: "output_tokens_per_s".into(),
                place: Place::Level(64.0),
                op: Op::AtLeast,
                rhs: Rhs::Times(3.0, Place::Level(16.0))
            })
        );
        assert_eq!(
            parse("no drift in tpot_p50"),
            Ok(Statement::NoDrift("tpot_p50".into()))
        );
        assert_eq!(
            parse("error_rate <= 1% at stage peak"),
            Ok(Statement::Compare {
                metric: "error_rate".into(),
                place: Place::Stage("peak".into()),
                op: Op::AtMost,
                rhs: Rhs::Value(0.01)
            })
        );
        assert!(
            matches!(parse("ttft_p90 <= 800ms at stage max"), Ok(Statement::Compare { place: Place::Stage(ref n), .. }) if n == "max")
        );
        assert!(
            matches!(parse("e2e_p99 < 2.5s"), Ok(Statement::Compare { rhs: Rhs::Value(v), .. }) if v == 2500.0)
        );
        for bad in [
            "ttft_p90 800ms",
            "speed <= 3",
            "ttft_p90 <= fast",
            "ttft_p90 <= 1%",
            "no drift in e2e_p90",
            "ttft_p90 <= 5 at users = many",
            "ttft_p90 at users = 4 >= 2 x tpot_p50 at users = 2",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
