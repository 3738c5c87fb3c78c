//! What a report shows, computed once: every number formatted, every row
//! built, so templates only place text.

use std::collections::BTreeMap;

use serde::Serialize;

use super::md_cell;
use crate::gate::{Check, Status, Verdict};
use crate::policy::metrics::{self, metric_def, ALL};
use crate::result::values;
use crate::result::RunResult;

/// One gated row.
#[derive(Debug, Clone, Serialize)]
pub struct GatedRow {
    scope: String,
    label: String,
    baseline: String,
    current: String,
    change: String,
    bound: String,
    mark: String,
    status: String,
    note: String,
}

/// One step row.
#[derive(Debug, Clone, Serialize)]
pub struct StepRow {
    name: String,
    cells: Vec<String>,
    errors: String,
}

/// A row of the all-metrics table.
#[derive(Debug, Clone, Serialize)]
pub struct AllRow {
    name: String,
    values: Vec<String>,
}

/// A row of the error table.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorRow {
    step: String,
    class: String,
    count: u64,
    /// What the server said, safe inside a Markdown table cell.
    example: String,
}

/// A slow request and its trace id, for the tracing backend.
#[derive(Debug, Clone, Serialize)]
pub struct SlowRow {
    step: String,
    request_id: String,
    trace_id: String,
    ttft: String,
    e2e: String,
}

/// The bottleneck analysis: its findings, or why there is none.
#[derive(Debug, Clone, Serialize)]
pub struct DiagnosisCtx {
    findings: Vec<crate::gate::diagnosis::Finding>,
    /// When there are levels to compare but nothing fired.
    none: Option<String>,
}

fn diagnosis(r: &RunResult) -> Option<DiagnosisCtx> {
    let (evidence, findings) = crate::gate::diagnosis::of_run(r);
    let findings: Vec<_> = findings
        .into_iter()
        .map(|mut f| {
            f.evidence = super::md_cell(&f.evidence);
            f
        })
        .collect();
    if findings.is_empty() && !evidence.comparable() {
        return None;
    }
    let none = findings.is_empty().then(|| no_bottleneck(r, &evidence));
    Some(DiagnosisCtx { findings, none })
}

/// "No bottleneck", saying only what the evidence covers: the server's
/// queue, cache and pools are named only when a series of theirs was read.
fn no_bottleneck(r: &RunResult, evidence: &crate::gate::diagnosis::Evidence) -> String {
    let signals = r
        .server_metrics
        .as_ref()
        .filter(|_| evidence.server_scraped)
        .map(crate::result::server::ServerMetrics::overall)
        .unwrap_or_default();
    let mut covered = Vec::new();
    if signals.waiting.is_some() {
        covered.push("waiting queue");
    }
    if signals.kv_usage.is_some() {
        covered.push("KV cache");
    }
    if signals.pool_waiting.is_some() || signals.pool_in_use.is_some() {
        covered.push("connection pools");
    }
    let server = if covered.is_empty() {
        "the server's queue, cache and pools were not read (no `--server-metrics`, or no series of theirs), so they are evidence of nothing".to_string()
    } else {
        format!("the server's {} stayed clear", covered.join(", "))
    };
    match evidence.levels.len() {
        1 => format!("No bottleneck found at this load; {server}."),
        n => format!(
            "No bottleneck found: throughput scaled and latency held across the {n} levels measured; {server}."
        ),
    }
}

/// A hypothesis judged.
#[derive(Debug, Clone, Serialize)]
pub struct HypothesisCtx {
    statement: String,
    finding: String,
    mark: String,
    detail: String,
}

/// The hypotheses: the verdict's, or judged here when there is no verdict.
fn hypotheses(r: &RunResult, verdict: Option<&Verdict>) -> Vec<HypothesisCtx> {
    use crate::gate::hypothesis::{self, Finding};
    let outcomes = match verdict {
        Some(v) => v.hypotheses.clone(),
        None => hypothesis::evaluate(r),
    };
    outcomes
        .into_iter()
        .map(|o| HypothesisCtx {
            statement: super::md_cell(&o.statement),
            finding: match o.finding {
                Finding::Supported => "supported",
                Finding::Refuted => "refuted",
                Finding::Inconclusive => "inconclusive",
            }
            .into(),
            mark: match o.finding {
                Finding::Supported => "✅",
                Finding::Refuted if o.fail => "❌",
                Finding::Refuted => "⚠️",
                Finding::Inconclusive => "❔",
            }
            .into(),
            detail: super::md_cell(&o.detail),
        })
        .collect()
}

/// A shard of a merged result.
#[derive(Debug, Clone, Serialize)]
pub struct ShardCtx {
    index: u32,
    requests: u64,
    ttft_p50: String,
    late: String,
    offset: String,
    flag: String,
}

/// The shards of a merged result, and what a partial merge misses.
fn shards(r: &RunResult) -> (Vec<ShardCtx>, Option<String>) {
    let Some(m) = &r.merged else {
        return (Vec::new(), None);
    };
    let rows = m
        .shards
        .iter()
        .map(|s| ShardCtx {
            index: s.index,
            requests: s.requests,
            ttft_p50: s.ttft_p50_ms.map_or("-".into(), super::ms_number),
            late: format!("{:.1} s", s.late_ms / 1000.0),
            offset: s
                .clock_offset_ms
                .map_or("-".into(), |c| format!("{:+.1} s", c / 1000.0)),
            flag: super::md_cell(s.flag.as_deref().unwrap_or("")),
        })
        .collect();
    let mut notes: Vec<String> = m.partial_note().into_iter().collect();
    if m.all_running_from_ms > 0.0 {
        notes.push(format!(
            "windows before {:.1} s are partial: not every shard was running yet",
            m.all_running_from_ms / 1000.0
        ));
    }
    (rows, (!notes.is_empty()).then(|| notes.join("; ")))
}

/// Facts about the run.
#[derive(Debug, Clone, Serialize)]
pub struct RunFacts {
    scenario: String,
    origin: String,
    sha256: String,
    target: String,
    concurrency: u32,
    /// The load in words: users, or (open loop) the rate and its cap.
    load: String,
    window: String,
    requests: u64,
    started_at: String,
    tool_version: String,
    host: String,
    self_check: String,
}

/// Everything a template sees. Numbers are formatted here, so templates
/// only place text.
#[derive(Debug, Clone, Serialize)]
pub struct ReportContext {
    pub(super) verdict: Option<String>,
    pub(super) mark: String,
    pub(super) headline: String,
    pub(super) mode: String,
    pub(super) evidence: usize,
    pub(super) reference: String,
    pub(super) notes: Vec<String>,
    pub(super) gated: Vec<GatedRow>,
    pub(super) step_checks: Vec<GatedRow>,
    pub(super) overall: Vec<GatedRow>,
    pub(super) failing: Vec<GatedRow>,
    pub(super) step_headers: Vec<String>,
    pub(super) steps: Vec<StepRow>,
    pub(super) truncated: Option<String>,
    pub(super) error_rows: Vec<ErrorRow>,
    /// The slowest requests with their trace ids.
    pub(super) slowest: Vec<SlowRow>,
    pub(super) chart: Option<String>,
    pub(super) chart_caption: String,
    pub(super) details: bool,
    pub(super) all_headers: Vec<String>,
    pub(super) all_rows: Vec<AllRow>,
    pub(super) run: RunFacts,
    pub(super) policy: String,
    pub(super) reproduce: String,
    pub(super) shape: Option<super::shape::ShapeContext>,
    pub(super) shards: Vec<ShardCtx>,
    pub(super) hypotheses: Vec<HypothesisCtx>,
    pub(super) diagnosis: Option<DiagnosisCtx>,
    pub(super) server: Option<super::server::ServerCtx>,
    /// Where the HTML report is (a line for the summary and the comment).
    pub html_link: Option<String>,
    pub(super) prefill: Vec<super::prompt::PrefillRow>,
    pub(super) resumes: Vec<String>,
    pub(super) traffic: Option<super::traffic::TrafficCtx>,
    pub(super) shards_note: Option<String>,
}

/// Format a value in its unit.
pub fn fmt_value(v: Option<f64>, infinite: bool, unit: &str) -> String {
    if infinite {
        return "∞".into();
    }
    let Some(v) = v else { return "–".into() };
    match unit {
        "ms" => format!("{} ms", super::ms_number(v)),
        "tok/s" => format!("{v:.0} tok/s"),
        "req/s" => format!("{v:.2} req/s"),
        "%" | "" => format!("{:.2}%", v * 100.0),
        _ => format!("{v:.3} {unit}"),
    }
}

fn fmt_change(c: Option<f64>) -> String {
    c.map_or("–".into(), |c| format!("{:+.1}%", c * 100.0))
}

fn gated_row(c: &Check) -> GatedRow {
    let unit = c.unit.as_str();
    let bound = match (c.ci, c.bound) {
        (Some([a, b]), _) => format!("{:+.1}% … {:+.1}%", a * 100.0, b * 100.0),
        (None, Some(b)) => {
            let hw = metric_def(&c.metric).is_none_or(|d| d.higher_is_worse);
            format!(
                "{} {}",
                if hw { "≤" } else { "≥" },
                fmt_value(Some(b), false, unit)
            )
        }
        _ => "–".into(),
    };
    GatedRow {
        scope: md_cell(&c.scope),
        label: super::md_inline(&c.label),
        baseline: fmt_value(c.baseline, false, unit),
        current: fmt_value(c.current, c.current_infinite, unit),
        change: fmt_change(c.change),
        bound,
        mark: c.status.mark().into(),
        status: c.status.to_string(),
        note: super::md_inline(&c.note),
    }
}

/// Quote a word for a POSIX shell when it needs it.
fn shell_quote(s: &str) -> String {
    let plain = s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_=.,/:@+%".contains(c));
    if plain && !s.is_empty() {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

fn reproduce(r: &RunResult, reference: Option<&str>) -> String {
    let p = &r.provenance;
    let scenario = p
        .scenario
        .origin
        .strip_prefix("bundled:")
        .unwrap_or(&p.scenario.origin);
    let mut cmd = format!(
        "flora-gate run --scenario {scenario} --target {} --tokens access_tokens.csv",
        crate::target::redact_userinfo(&p.target),
    );
    // A duet is reproduced as a duet.
    if let Some(reference) = reference.filter(|r| !r.is_empty()) {
        cmd.push_str(&format!(
            " --baseline-target {}",
            crate::target::redact_userinfo(reference)
        ));
    }
    let dur = |s: f64| {
        if s.fract() == 0.0 {
            format!("{s}s")
        } else {
            format!("{}ms", (s * 1000.0).round())
        }
    };
    let replay = r.traffic.as_ref().and_then(|t| t.replay.as_ref());
    // The scenario's think times at the same scale (the lengths below are
    // flags, taken as given).
    if let Some(f) = p.time_scale {
        cmd.push_str(&format!(" --time-scale {f}"));
    }
    match r.load.as_ref().filter(|l| !l.stages.is_empty()) {
        Some(l) => {
            // Stages set users and length; they are given as they ran.
            let stages: Vec<String> = l
                .stages
                .iter()
                .map(|s| format!("{}={}:{}", s.name, dur(s.end_s - s.start_s), s.to))
                .collect();
            cmd.push_str(&format!(
                " --model {} --stages {}",
                l.model,
                shell_quote(&stages.join(","))
            ));
        }
        None if replay.is_some() => {
            // A replay sends the trace's own requests at their times.
            if let Some(rp) = replay {
                cmd.push_str(&format!(
                    " --replay {} --speed {}",
                    shell_quote(&rp.file),
                    rp.speed
                ));
                if let Some(w) = &rp.window {
                    cmd.push_str(&format!(
                        " --replay-window {}",
                        shell_quote(&w.replace(' ', ""))
                    ));
                }
            }
        }
        None => {
            cmd.push_str(&format!(" --concurrency {}", p.concurrency));
            if let Some(d) = p.duration_s {
                cmd.push_str(&format!(" --duration {}", dur(d)));
            }
            if let Some(n) = p.requests_limit {
                cmd.push_str(&format!(" --requests {n}"));
            }
        }
    }
    for (k, v) in &p.var_overrides {
        cmd.push_str(&format!(" --var {}", shell_quote(&format!("{k}={v}"))));
    }
    // Prompt lengths in tokens at the same characters a token.
    let given: Vec<f64> = r
        .steps
        .iter()
        .filter_map(|s| s.lengths.as_ref()?.calibration)
        .map(|c| c.chars_per_token)
        .collect();
    if let Some(c) = given.first().filter(|c| given.iter().all(|x| x == *c)) {
        cmd.push_str(&format!(
            " --chars-per-token {}",
            (c * 1000.0).round() / 1000.0
        ));
    }
    if let Some(s) = &p.sweep {
        cmd.push_str(&format!(" --sweep {}", shell_quote(s)));
    }
    cmd.push_str(&format!(
        " --warmup {} --seed {} --out result.json",
        dur(p.warmup_s),
        p.seed
    ));
    // One line: a value with a line break cannot end the code block.
    cmd.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Build the context from a result and, when there is one, its verdict.
pub fn context(r: &RunResult, verdict: Option<&Verdict>, reference: Option<&str>) -> ReportContext {
    let current = values::extract(r);
    let (shard_rows, shards_note) = shards(r);
    let policy = verdict.map_or_else(|| r.gate.clone(), |v| v.policy.clone());
    let step_metrics: Vec<&str> = policy.metrics.iter().map(String::as_str).collect();
    let step_headers: Vec<String> = step_metrics
        .iter()
        .map(|m| metric_def(m).map_or((*m).to_string(), |d| d.label.to_string()))
        .collect();

    let steps = step_rows(r, verdict, &current, &step_metrics);
    let gated: Vec<GatedRow> = verdict
        .map(|v| v.gated().map(gated_row).collect())
        .unwrap_or_default();
    let step_checks: Vec<GatedRow> = verdict
        .map(|v| {
            v.checks
                .iter()
                .filter(|c| !c.gated)
                .map(gated_row)
                .collect()
        })
        .unwrap_or_default();
    let failing = findings(verdict);
    let overall = overall_rows(&current, &policy);
    let error_rows = error_rows(r);
    let (chart, chart_caption) = ttft_chart(r, verdict);
    let (all_headers, all_rows) = all_rows(r, &current);
    let mut notes = verdict.map(|v| v.notes.clone()).unwrap_or_default();
    if verdict.is_none() && r.state() != crate::result::RunState::Complete {
        notes.push(format!(
            "the run is partial: {}",
            r.status_reason.clone().unwrap_or_default()
        ));
    }
    ReportContext {
        verdict: verdict.map(|v| v.verdict.to_string()),
        mark: verdict.map_or("", |v| v.verdict.mark()).into(),
        headline: verdict.map_or_else(String::new, |v| super::md_inline(&v.headline)),
        mode: verdict.map_or("none", |v| v.mode.as_str()).into(),
        evidence: verdict.map_or(0, |v| v.evidence),
        reference: super::md_url(&crate::target::redact_userinfo(
            reference.unwrap_or_default(),
        )),
        notes: notes.iter().map(|n| super::md_inline(n)).collect(),
        gated,
        step_checks,
        overall,
        failing,
        step_headers,
        steps,
        truncated: None,
        error_rows,
        slowest: r
            .slowest
            .iter()
            .map(|s| SlowRow {
                step: md_cell(&s.step),
                request_id: super::md_code(&s.request_id),
                trace_id: super::md_code(&s.trace_id),
                ttft: crate::stats::format::ms(s.ttft_ms),
                e2e: crate::stats::format::ms(Some(s.e2e_ms)),
            })
            .collect(),
        chart,
        chart_caption,
        details: true,
        all_headers,
        all_rows,
        run: run_facts(r),
        policy: format!(
            "gated {} · margin {:.0}% · α {} (Holm) · max error rate {:.2}%",
            policy.metrics.join(", "),
            policy.margin * 100.0,
            policy.alpha,
            policy.max_error_rate * 100.0
        ),
        reproduce: reproduce(r, reference),
        shape: super::shape::context(r),
        shards: shard_rows,
        shards_note,
        hypotheses: hypotheses(r, verdict),
        diagnosis: diagnosis(r),
        server: super::server::context(r),
        html_link: None,
        prefill: super::prompt::rows(r),
        resumes: super::prompt::resume_lines(r),
        traffic: super::traffic::context(r),
    }
}

fn step_rows(
    r: &RunResult,
    verdict: Option<&Verdict>,
    current: &BTreeMap<String, metrics::Values>,
    step_metrics: &[&str],
) -> Vec<StepRow> {
    let steps: Vec<StepRow> = r
        .steps
        .iter()
        .map(|s| {
            let cur = current.get(&s.name);
            let cells = step_metrics
                .iter()
                .map(|m| {
                    let unit = metric_def(m).map_or("", |d| d.unit);
                    let check = verdict.and_then(|v| {
                        v.checks
                            .iter()
                            .find(|c| c.scope == s.name && c.metric == *m)
                    });
                    match (check, cur.and_then(|c| c.get(*m))) {
                        (Some(c), _) => {
                            let mut cell = fmt_value(c.current, c.current_infinite, unit);
                            if let Some(ch) = c.change {
                                cell.push_str(&format!(" ({:+.1}%)", ch * 100.0));
                            }
                            if c.status != Status::Pass {
                                cell.push(' ');
                                cell.push_str(c.status.mark());
                            }
                            cell
                        }
                        (None, Some(v)) => {
                            fmt_value(Some(*v).filter(|x| x.is_finite()), v.is_infinite(), unit)
                        }
                        (None, None) => "–".into(),
                    }
                })
                .collect();
            let errors = if s.failed == 0 {
                "–".to_string()
            } else {
                format!("{} ({:.1}%)", s.failed, (1.0 - s.success_rate) * 100.0)
            };
            StepRow {
                name: md_cell(&s.name),
                cells,
                errors,
            }
        })
        .collect();
    steps
}

/// Gated findings in full; per-step warnings only as many as stay readable.
fn findings(verdict: Option<&Verdict>) -> Vec<GatedRow> {
    const MAX_STEP_FINDINGS: usize = 6;
    let mut failing: Vec<GatedRow> = Vec::new();
    if let Some(v) = verdict {
        let bad = |c: &&Check| matches!(c.status, Status::Fail | Status::Warn);
        failing.extend(
            v.checks
                .iter()
                .filter(|c| c.gated)
                .filter(bad)
                .map(gated_row),
        );
        let steps: Vec<&Check> = v.checks.iter().filter(|c| !c.gated).filter(bad).collect();
        failing.extend(steps.iter().take(MAX_STEP_FINDINGS).map(|c| gated_row(c)));
        if steps.len() > MAX_STEP_FINDINGS {
            failing.push(GatedRow {
                scope: ALL.into(),
                label: format!("{} more per-step warnings", steps.len() - MAX_STEP_FINDINGS),
                baseline: String::new(),
                current: String::new(),
                change: String::new(),
                bound: String::new(),
                mark: Status::Warn.mark().into(),
                status: Status::Warn.to_string(),
                note: "see the table below".into(),
            });
        }
    }
    failing
}

/// The pooled figures when there is no verdict to show.
fn overall_rows(
    current: &BTreeMap<String, metrics::Values>,
    policy: &crate::policy::Policy,
) -> Vec<GatedRow> {
    let empty = metrics::Values::new();
    let all = current.get(ALL).unwrap_or(&empty);
    let overall: Vec<GatedRow> = policy
        .metrics
        .iter()
        .chain(std::iter::once(&"error_rate".to_string()))
        .filter_map(|m| {
            let d = metric_def(m)?;
            let v = all.get(m).copied();
            Some(GatedRow {
                scope: ALL.into(),
                label: d.label,
                baseline: "–".into(),
                current: fmt_value(
                    v.filter(|x| x.is_finite()),
                    v.is_some_and(f64::is_infinite),
                    d.unit,
                ),
                change: "–".into(),
                bound: "–".into(),
                mark: String::new(),
                status: String::new(),
                note: String::new(),
            })
        })
        .collect();
    overall
}

fn error_rows(r: &RunResult) -> Vec<ErrorRow> {
    let error_rows: Vec<ErrorRow> = r
        .steps
        .iter()
        .flat_map(|s| {
            s.errors.iter().map(|(k, v)| ErrorRow {
                step: md_cell(&s.name),
                class: super::md_code(k),
                count: *v,
                example: r
                    .error_examples
                    .iter()
                    .find(|e| e.step == s.name && &e.class == k)
                    .map(|e| md_cell(&e.describe()))
                    .unwrap_or_default(),
            })
        })
        .collect();
    error_rows
}

/// Mermaid xychart: bars are the current run, the line the baseline/reference.
fn ttft_chart(r: &RunResult, verdict: Option<&Verdict>) -> (Option<String>, String) {
    let streamed: Vec<_> = r.steps.iter().filter(|s| s.ttft_ms.count > 0).collect();
    let (chart, chart_caption) = if streamed.is_empty() {
        (None, String::new())
    } else {
        let names: Vec<String> = streamed
            .iter()
            .map(|s| {
                let name: String = s
                    .name
                    .chars()
                    .map(|c| match c {
                        '"' | '`' => '\'',
                        c if c.is_control() => ' ',
                        c => c,
                    })
                    .collect();
                format!("\"{name}\"")
            })
            .collect();
        let num = |v: Option<f64>| {
            v.filter(|x| x.is_finite())
                .map_or("0".to_string(), |x| format!("{x:.1}"))
        };
        let cur: Vec<String> = streamed.iter().map(|s| num(s.ttft_ms.p50)).collect();
        let base: Vec<String> = streamed
            .iter()
            .map(|s| {
                num(verdict
                    .and_then(|v| {
                        v.checks
                            .iter()
                            .find(|c| c.scope == s.name && c.metric == "ttft_p50")
                    })
                    .and_then(|c| c.baseline))
            })
            .collect();
        let has_base = base.iter().any(|b| b != "0");
        let mut c = format!(
            "xychart-beta\n    title \"TTFT p50 by step (ms)\"\n    x-axis [{}]\n    y-axis \"ms\"\n    bar [{}]",
            names.join(", "),
            cur.join(", ")
        );
        if has_base {
            c.push_str(&format!("\n    line [{}]", base.join(", ")));
        }
        let caption = if has_base {
            "Bars: this run; line: baseline."
        } else {
            "Bars: this run."
        };
        (Some(c), caption.to_string())
    };
    (chart, chart_caption)
}

/// Every metric of every scope, for the details.
fn all_rows(
    r: &RunResult,
    current: &BTreeMap<String, metrics::Values>,
) -> (Vec<String>, Vec<AllRow>) {
    let all_metric_names = metrics::SHOWN;
    let all_headers: Vec<String> = all_metric_names
        .iter()
        .map(|m| metric_def(m).map_or((*m).to_string(), |d| d.label.to_string()))
        .collect();
    let mut scopes: Vec<String> = r.steps.iter().map(|s| s.name.clone()).collect();
    scopes.push(metrics::WORKFLOW.into());
    scopes.push(ALL.into());
    let all_rows: Vec<AllRow> = scopes
        .iter()
        .map(|scope| {
            let vals = current.get(scope);
            AllRow {
                name: md_cell(scope),
                values: all_metric_names
                    .iter()
                    .map(|m| {
                        let v = vals.and_then(|x| x.get(*m)).copied();
                        fmt_value(
                            v.filter(|x| x.is_finite()),
                            v.is_some_and(f64::is_infinite),
                            metric_def(m).map_or("", |d| d.unit),
                        )
                    })
                    .collect(),
            }
        })
        .collect();
    (all_headers, all_rows)
}

fn run_facts(r: &RunResult) -> RunFacts {
    let p = &r.provenance;
    let sc = &r.self_check;
    RunFacts {
        scenario: md_cell(&p.scenario.name),
        origin: md_cell(&p.scenario.origin),
        sha256: p.scenario.sha256.clone(),
        // A result file from elsewhere may hold a URL with a password.
        target: super::md_url(&crate::target::redact_userinfo(&p.target)),
        concurrency: p.concurrency,
        load: match r.load.as_ref().filter(|l| l.model == "open") {
            Some(l) => format!(
                "up to {} workflow starts/s (at most {} in flight)",
                super::short_number(l.stages.iter().map(|s| s.to).fold(0.0, f64::max)),
                p.concurrency
            ),
            None => format!("{} users", p.concurrency),
        },
        window: format!("{:.1}s", r.window.duration_s),
        requests: r.totals.requests,
        started_at: p.started_at.clone(),
        tool_version: p.tool_version.clone(),
        host: format!("{} {} × {} cores", p.host.os, p.host.arch, p.host.cores),
        self_check: format!(
            "{}; loop lag p99 {}, CPU {}, peak RSS {}",
            sc.verdict(),
            sc.loop_lag_p99_ms
                .map_or("–".into(), |v| format!("{v:.1} ms")),
            sc.cpu_utilization
                .map_or("–".into(), |v| format!("{:.0}%", v * 100.0)),
            sc.peak_rss_mib
                .map_or("–".into(), |v| format!("{v:.0} MiB")),
        ),
    }
}
