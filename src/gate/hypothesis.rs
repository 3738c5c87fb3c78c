//! A scenario's hypotheses judged against a result: **supported** when the
//! 99% interval of the evidence is on the stated side, **refuted** when it
//! is wholly on the other, **inconclusive** otherwise or when the run has
//! no such part. Latency quantiles use order statistics of the pooled
//! histogram, error rates Wilson, rates the spread of the time blocks, and
//! drift the interval of its slope.

use serde::{Deserialize, Serialize};

use super::slo;
use crate::policy::slo::Decision;
use crate::result::{time::StageResult, Block, RunResult, StepResult, Totals};
use crate::scenario::hypothesis::{self, Op, Place, Rhs, Statement};

/// What the evidence says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Finding {
    /// The interval is on the stated side.
    Supported,
    /// The interval is wholly on the other side.
    Refuted,
    /// Neither, or nothing to judge.
    Inconclusive,
}

/// One hypothesis judged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// The statement.
    pub statement: String,
    /// The finding.
    pub finding: Finding,
    /// The estimate (ms, a fraction, per second, %/h, or the difference
    /// `lhs − k·rhs` of a comparison of parts).
    pub estimate: Option<f64>,
    /// The 99% interval that decided it.
    pub low: Option<f64>,
    /// Its upper end.
    pub high: Option<f64>,
    /// In words: what was compared, and why it decided so.
    pub detail: String,
    /// A refuted one fails the gate.
    pub fail: bool,
}

const Z: f64 = 2.576;

/// One part of a run: its steps, totals and blocks.
struct Part<'a> {
    name: String,
    steps: &'a [StepResult],
    totals: &'a Totals,
    blocks: &'a [Block],
}

fn part<'a>(r: &'a RunResult, place: &Place) -> Result<Part<'a>, String> {
    let stage = |s: &'a StageResult| Part {
        name: format!("stage `{}`", s.name),
        steps: &s.steps,
        totals: &s.totals,
        blocks: &s.blocks,
    };
    match place {
        Place::All => Ok(Part {
            name: "the run".into(),
            steps: &r.steps,
            totals: &r.totals,
            blocks: &r.blocks,
        }),
        Place::Stage(n) => r
            .stages
            .iter()
            .find(|s| &s.name == n)
            .map(stage)
            .ok_or_else(|| format!("the run has no stage `{n}`")),
        Place::Level(n) => {
            // The stage that holds the level: its target at start and end.
            let plans = r.load.as_ref().map_or(&[][..], |l| &l.stages[..]);
            let held = plans
                .iter()
                .enumerate()
                .rev()
                .find(|(_, p)| (p.from - n).abs() < 1e-9 && (p.to - n).abs() < 1e-9)
                .map(|(i, _)| i);
            held.and_then(|i| r.stages.iter().find(|s| s.index as usize == i))
                .map(stage)
                .ok_or_else(|| format!("no stage of the run holds {n}"))
        }
    }
}

/// A rate per block: output tokens or requests per second.
fn block_rates(blocks: &[Block], metric: &str) -> Vec<f64> {
    blocks
        .iter()
        .filter_map(|b| {
            let secs = (b.end_ms - b.start_ms) / 1000.0;
            if secs <= 0.0 {
                return None;
            }
            Some(match metric {
                "output_tokens_per_s" => b.steps.values().map(|s| s.output_tokens_per_s).sum(),
                _ => b.steps.values().map(|s| s.requests as f64).sum::<f64>() / secs,
            })
        })
        .collect()
}

fn mean_and_se(xs: &[f64]) -> Option<(f64, f64)> {
    let n = xs.len() as f64;
    if xs.len() < 3 {
        return None;
    }
    let m = xs.iter().sum::<f64>() / n;
    let var = xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0);
    Some((m, (var / n).sqrt()))
}

/// Where an interval lies against a limit, for the stated direction.
fn decide(op: Op, low: f64, high: f64, limit: f64) -> Finding {
    match op {
        Op::AtMost if high <= limit => Finding::Supported,
        Op::AtMost if low > limit => Finding::Refuted,
        Op::AtLeast if low >= limit => Finding::Supported,
        Op::AtLeast if high < limit => Finding::Refuted,
        _ => Finding::Inconclusive,
    }
}

fn outcome(
    statement: &str,
    fail: bool,
    f: Finding,
    est: Option<f64>,
    ci: Option<(f64, f64)>,
    detail: String,
) -> Outcome {
    Outcome {
        statement: statement.to_string(),
        finding: f,
        estimate: est,
        low: ci.map(|c| c.0),
        high: ci.map(|c| c.1),
        detail,
        fail,
    }
}

fn unknown(statement: &str, fail: bool, why: String) -> Outcome {
    outcome(statement, fail, Finding::Inconclusive, None, None, why)
}

/// A statement about a part the run did not have (a stage name that is
/// none of its stages, a level no stage held) cannot hold: refuted, so a
/// `fail = true` hypothesis with a mistyped place fails the gate instead
/// of passing unjudged for ever.
fn nowhere(statement: &str, fail: bool, why: String) -> Outcome {
    outcome(
        statement,
        fail,
        Finding::Refuted,
        None,
        None,
        format!("{why}: the statement is about a part of the run that did not exist"),
    )
}

/// Judge every hypothesis the result carries.
pub fn evaluate(r: &RunResult) -> Vec<Outcome> {
    r.hypotheses
        .iter()
        .map(|h| match hypothesis::parse(&h.statement) {
            Ok(s) => judge(r, &h.statement, h.fail, &s),
            Err(m) => unknown(&h.statement, h.fail, format!("not a statement: {m}")),
        })
        .collect()
}

fn judge(r: &RunResult, text: &str, fail: bool, s: &Statement) -> Outcome {
    match s {
        Statement::NoDrift(metric) => {
            let slope = r
                .dynamics
                .as_ref()
                .and_then(|d| d.drift.as_ref())
                .and_then(|d| {
                    if metric == "ttft_p50" {
                        d.ttft_p50.clone()
                    } else {
                        d.tpot_p50.clone()
                    }
                });
            let Some(sl) = slope else {
                return unknown(text, fail, "too few windows to measure drift".into());
            };
            let bound = crate::result::dynamics::DRIFT_FLAG_PCT_PER_H;
            let f = if sl.flagged {
                Finding::Refuted
            } else if sl.low > -bound && sl.high < bound {
                Finding::Supported
            } else {
                Finding::Inconclusive
            };
            outcome(text, fail, f, Some(sl.pct_per_h), Some((sl.low, sl.high)),
                format!("{metric} moved {:+.1}%/h [{:+.1}, {:+.1}]; drift is a slope beyond ±{bound}%/h", sl.pct_per_h, sl.low, sl.high))
        }
        Statement::Compare {
            metric,
            place,
            op,
            rhs,
        } => {
            let lhs = match part(r, place) {
                Ok(p) => p,
                Err(m) => return nowhere(text, fail, m),
            };
            match rhs {
                Rhs::Value(limit) => against_value(text, fail, metric, &lhs, *op, *limit),
                Rhs::Times(k, other) => {
                    let rhs = match part(r, other) {
                        Ok(p) => p,
                        Err(m) => return nowhere(text, fail, m),
                    };
                    against_part(text, fail, metric, &lhs, *op, *k, &rhs)
                }
            }
        }
    }
}

fn against_value(
    text: &str,
    fail: bool,
    metric: &str,
    p: &Part<'_>,
    op: Op,
    limit: f64,
) -> Outcome {
    if let Some((prefix, q)) = slo::latency_quantile(metric) {
        let c = slo::quantile_check(
            metric,
            &crate::result::values::pooled(p.steps, prefix),
            q,
            limit,
            Z,
        );
        let (Some(lo), Some(hi)) = (c.low, c.high) else {
            return unknown(
                text,
                fail,
                format!("{metric} was not measured in {}", p.name),
            );
        };
        return outcome(
            text,
            fail,
            decide(op, lo, hi, limit),
            c.estimate,
            Some((lo, hi)),
            format!(
                "{metric} of {} is {} ms, 99% interval [{}, {}]",
                p.name,
                show(c.estimate),
                show(Some(lo)),
                show(Some(hi))
            ),
        );
    }
    if metric == "error_rate" {
        let c = slo::proportion_check(metric, p.totals.failed, p.totals.requests, limit, Z);
        let (Some(lo), Some(hi)) = (c.low, c.high) else {
            return unknown(text, fail, format!("no requests in {}", p.name));
        };
        let f = match (op, c.decision) {
            (Op::AtMost, Decision::Pass) => Finding::Supported,
            (Op::AtMost, Decision::Fail) => Finding::Refuted,
            _ => decide(op, lo, hi, limit),
        };
        return outcome(
            text,
            fail,
            f,
            c.estimate,
            Some((lo, hi)),
            format!(
                "{} of {} requests of {} failed",
                p.totals.failed, p.totals.requests, p.name
            ),
        );
    }
    let Some((m, se)) = mean_and_se(&block_rates(p.blocks, metric)) else {
        return unknown(
            text,
            fail,
            format!("too few time blocks in {} for an interval", p.name),
        );
    };
    let ci = (m - Z * se, m + Z * se);
    outcome(
        text,
        fail,
        decide(op, ci.0, ci.1, limit),
        Some(m),
        Some(ci),
        format!(
            "{metric} of {} is {m:.1}/s over its time blocks, 99% interval [{:.1}, {:.1}]",
            p.name, ci.0, ci.1
        ),
    )
}

fn against_part(
    text: &str,
    fail: bool,
    metric: &str,
    a: &Part<'_>,
    op: Op,
    k: f64,
    b: &Part<'_>,
) -> Outcome {
    if !metric.ends_with("_per_s") {
        return unknown(
            text,
            fail,
            "parts are compared on rates (output_tokens_per_s, requests_per_s)".into(),
        );
    }
    let (Some((ma, sa)), Some((mb, sb))) = (
        mean_and_se(&block_rates(a.blocks, metric)),
        mean_and_se(&block_rates(b.blocks, metric)),
    ) else {
        return unknown(
            text,
            fail,
            "too few time blocks in a part for an interval".into(),
        );
    };
    let d = ma - k * mb;
    let se = (sa * sa + k * k * sb * sb).sqrt();
    let ci = (d - Z * se, d + Z * se);
    outcome(text, fail, decide(op, ci.0, ci.1, 0.0), Some(d), Some(ci),
        format!("{metric}: {ma:.1}/s in {} against {k} × {mb:.1}/s in {}; the difference {d:+.1}, 99% interval [{:+.1}, {:+.1}]", a.name, b.name, ci.0, ci.1))
}

fn show(v: Option<f64>) -> String {
    v.map_or("-".into(), |x| {
        if x.is_infinite() {
            "∞".into()
        } else {
            format!("{x:.1}")
        }
    })
}
