//! Where the time went: rules over the levels of a run (the held stages of
//! a ramp, or the probes of a capacity search) and its generator's health.
//! Each finding names its evidence, the rule, what would refute it, and
//! the next hypothesis to test. A light run gives no finding.

use serde::{Deserialize, Serialize};

use crate::gate::capacity::CapacityResult;
use crate::result::{RunResult, StepResult};
use crate::scenario::ResponseKind;

/// One load level and what was measured at it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Level {
    /// Users (or starts per second).
    pub load: f64,
    /// Streamed steps' TTFT p50, ms.
    pub ttft_p50: Option<f64>,
    /// Streamed steps' TPOT p50, ms.
    pub tpot_p50: Option<f64>,
    /// Output tokens per second.
    pub tokens_per_s: f64,
    /// JSON (non-streamed) steps' E2E p50, ms.
    pub json_e2e_p50: Option<f64>,
    /// Requests, and those refused with 429.
    pub requests: u64,
    /// Rate-limited requests.
    pub rate_limited: u64,
    /// The generator could not deliver this level.
    pub under_delivered: bool,
}

/// A bottleneck found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// `queueing`, `batching`, `rate_limiting`, `client`, `non_llm_tier`.
    pub kind: String,
    /// One line for people.
    pub title: String,
    /// The numbers it rests on.
    pub evidence: String,
    /// The rule that fired.
    pub rule: String,
    /// What would show it wrong.
    pub refuted_by: String,
    /// The next hypothesis to test.
    pub next: String,
}

fn rise(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if a > 0.0 && b.is_finite() => Some(b / a - 1.0),
        _ => None,
    }
}

fn ms(v: Option<f64>) -> String {
    v.map_or("-".into(), |x| format!("{x:.0} ms"))
}

/// The findings of a run's levels (lowest load first) and its generator.
pub fn diagnose(levels: &[Level], generator_saturated: bool) -> Vec<Finding> {
    let mut out = Vec::new();
    let requests: u64 = levels.iter().map(|l| l.requests).sum();
    let limited: u64 = levels.iter().map(|l| l.rate_limited).sum();
    let rate_limited = requests > 0 && limited as f64 / requests as f64 > 0.01;
    // Users that wait out a 429's Retry-After deliver less than intended:
    // that is the server's limit at work, not the generator's.
    let short = !rate_limited && levels.iter().any(|l| l.under_delivered);
    if generator_saturated || short {
        let at = levels
            .iter()
            .find(|l| short && l.under_delivered)
            .map(|l| l.load);
        out.push(Finding {
            kind: "client".into(),
            title: "the load generator, not the server, was the limit".into(),
            evidence: match at {
                Some(n) => format!("the intended load was not delivered from {n} on"),
                None => "the generator's self-check found it saturated (event-loop lag or CPU)".into(),
            },
            rule: "generator saturated, or achieved load under 97% of intended".into(),
            refuted_by: "the same figures from a generator with more cores, or spread over shards".into(),
            next: "the server's latencies at this load are unchanged when the load comes from two shards (`plan --shards 2`)".into(),
        });
    }
    if rate_limited {
        out.push(Finding {
            kind: "rate_limiting".into(),
            title: "requests were rate-limited".into(),
            evidence: format!(
                "{limited} of {requests} requests answered 429 ({:.1}%)",
                limited as f64 * 100.0 / requests as f64
            ),
            rule: "more than 1% of requests refused with 429 / Retry-After".into(),
            refuted_by: "no 429 with more tokens (users per token) at the same load".into(),
            next: "with one token per user (a larger tokens file) the 429s disappear at this load"
                .into(),
        });
    }
    if levels.len() < 2 {
        return out;
    }
    let (first, last) = (&levels[0], &levels[levels.len() - 1]);
    let ttft = rise(first.ttft_p50, last.ttft_p50);
    let tpot = rise(first.tpot_p50, last.tpot_p50);
    let load = last.load / first.load.max(1e-9);
    // Throughput of the top half of the levels, against the rise in load there.
    let mid = &levels[levels.len() / 2];
    let top_gain = if mid.tokens_per_s > 0.0 {
        last.tokens_per_s / mid.tokens_per_s
    } else {
        0.0
    };
    let top_load = last.load / mid.load.max(1e-9);
    let flat_throughput = top_load > 1.2 && top_gain < 1.0 + (top_load - 1.0) * 0.3;
    if ttft.is_some_and(|r| r > 0.5) && tpot.is_none_or(|r| r < 0.2) && flat_throughput {
        out.push(Finding {
            kind: "queueing".into(),
            title: "requests queue before they are served: an admission or concurrency limit".into(),
            evidence: format!(
                "TTFT p50 {} → {} from {} to {} users, TPOT p50 {} → {} (flat), output tok/s {:.0} → {:.0} while load rose {:.1}×",
                ms(first.ttft_p50), ms(last.ttft_p50), first.load, last.load, ms(first.tpot_p50), ms(last.tpot_p50),
                mid.tokens_per_s, last.tokens_per_s, top_load
            ),
            rule: "TTFT up > 50% with TPOT flat (< 20%) and throughput flat (under a third of the load's rise)".into(),
            refuted_by: "throughput that keeps rising with load, or a waiting-queue gauge (`vllm:num_requests_waiting`) that stays at zero".into(),
            next: format!("with a higher concurrency limit on the server (vLLM `max_num_seqs`), TTFT p50 at {} users stays within 50% of its figure at {}", last.load, first.load),
        });
    }
    if tpot.is_some_and(|r| r > 0.3) && ttft.is_none_or(|r| r < 0.5) {
        let per_stream = |l: &Level| l.tokens_per_s / l.load.max(1e-9);
        out.push(Finding {
            kind: "batching".into(),
            title: "decode batching saturates: each stream slows as more share the batch".into(),
            evidence: format!(
                "TPOT p50 {} → {} from {} to {} users with TTFT p50 {} → {}; per-stream tok/s {:.1} → {:.1}, total {:.0} → {:.0} ({load:.1}× the load)",
                ms(first.tpot_p50), ms(last.tpot_p50), first.load, last.load, ms(first.ttft_p50), ms(last.ttft_p50),
                per_stream(first), per_stream(last), first.tokens_per_s, last.tokens_per_s
            ),
            rule: "TPOT up > 30% while TTFT stays within 50%".into(),
            refuted_by: "TPOT flat at the same loads on a larger batch budget, or TTFT rising as much as TPOT".into(),
            next: format!("TPOT p50 at {} users stays under its objective with a larger max batch (or a second replica)", last.load),
        });
    }
    if let (Some(a), Some(b)) = (first.json_e2e_p50, last.json_e2e_p50) {
        if b > a * 1.5 && ttft.is_none_or(|r| r < 0.2) {
            out.push(Finding {
                kind: "non_llm_tier".into(),
                title: "a tier other than the model slows down: the JSON steps (a database pool?)".into(),
                evidence: format!(
                    "JSON steps' E2E p50 {} → {} from {} to {} users while streamed TTFT p50 {} → {}",
                    ms(Some(a)), ms(Some(b)), first.load, last.load, ms(first.ttft_p50), ms(last.ttft_p50)
                ),
                rule: "non-streamed steps' E2E up > 50% while streamed TTFT stays within 20%".into(),
                refuted_by: "the JSON steps as slow at low load, or a pool gauge well below its size".into(),
                next: "a larger database pool brings the JSON steps' E2E back to its low-load figure".into(),
            });
        }
    }
    out
}

/// Streamed steps' TTFT p50, TPOT p50 (the first streamed step's), JSON steps' E2E p50.
fn step_figures(steps: &[StepResult]) -> (Option<f64>, Option<f64>, Option<f64>) {
    let streamed = steps.iter().find(|s| s.response == ResponseKind::Sse);
    let json = steps.iter().find(|s| s.response != ResponseKind::Sse);
    (
        streamed.and_then(|s| s.ttft_ms.p50),
        streamed.and_then(|s| s.tpot_ms.p50),
        json.and_then(|s| s.e2e_ms.p50),
    )
}

/// The levels of a run: its held stages (the target the same at start and end).
pub fn levels_of_run(r: &RunResult) -> Vec<Level> {
    let plans = r.load.as_ref().map_or(&[][..], |l| &l.stages[..]);
    let mut out: Vec<Level> = r
        .stages
        .iter()
        .filter_map(|s| {
            let p = plans.get(s.index as usize)?;
            // A held level that measured nothing (all warm-up) says nothing.
            let held = (p.from - p.to).abs() < 1e-9 && p.to > 0.0 && s.totals.requests > 0;
            held.then(|| {
                let (ttft, tpot, json) = step_figures(&s.steps);
                Level {
                    load: p.to,
                    ttft_p50: ttft,
                    tpot_p50: tpot,
                    tokens_per_s: s.totals.output_tokens_per_s,
                    json_e2e_p50: json,
                    requests: s.totals.requests,
                    rate_limited: s.totals.errors.get("rate_limited").copied().unwrap_or(0),
                    under_delivered: s.under_delivered,
                }
            })
        })
        .collect();
    out.sort_by(|a, b| a.load.total_cmp(&b.load));
    if out.is_empty() {
        let (ttft, tpot, json) = step_figures(&r.steps);
        out.push(Level {
            load: f64::from(r.provenance.concurrency),
            ttft_p50: ttft,
            tpot_p50: tpot,
            tokens_per_s: r.totals.output_tokens_per_s,
            json_e2e_p50: json,
            requests: r.totals.requests,
            rate_limited: r.totals.errors.get("rate_limited").copied().unwrap_or(0),
            under_delivered: false,
        });
    }
    out
}

/// A run's findings.
pub fn of_run(r: &RunResult) -> Vec<Finding> {
    diagnose(&levels_of_run(r), r.self_check.saturated)
}

/// A capacity search's findings, over its conclusive probes (one per level).
pub fn of_capacity(c: &CapacityResult) -> Vec<Finding> {
    let mut probes: Vec<_> = c.probes.iter().filter(|p| p.note.is_none()).collect();
    probes.sort_by(|a, b| a.level.total_cmp(&b.level));
    probes.dedup_by(|a, b| a.level == b.level);
    let levels: Vec<Level> = probes
        .iter()
        .map(|p| Level {
            load: p.level,
            ttft_p50: p.ttft_p50_ms,
            tpot_p50: p.tpot_p50_ms,
            tokens_per_s: p.output_tokens_per_s,
            requests: p.requests,
            ..Level::default()
        })
        .collect();
    diagnose(&levels, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn level(load: f64, ttft: f64, tpot: f64, tps: f64) -> Level {
        Level {
            load,
            ttft_p50: Some(ttft),
            tpot_p50: Some(tpot),
            tokens_per_s: tps,
            requests: 1000,
            ..Level::default()
        }
    }

    fn kinds(f: &[Finding]) -> Vec<&str> {
        f.iter().map(|x| x.kind.as_str()).collect()
    }

    #[test]
    fn each_rule_fires_on_its_own_pattern_and_a_light_run_gives_nothing() {
        // A queue: TTFT climbs, TPOT and throughput flat.
        let queue = [
            level(8.0, 50.0, 5.0, 1200.0),
            level(16.0, 51.0, 5.0, 2300.0),
            level(32.0, 257.0, 5.0, 2250.0),
            level(64.0, 670.0, 5.0, 2000.0),
        ];
        assert_eq!(kinds(&diagnose(&queue, false)), ["queueing"]);
        // Batching: TPOT climbs, TTFT low, total flattens.
        let batch = [
            level(8.0, 20.0, 8.5, 900.0),
            level(16.0, 21.0, 12.5, 1200.0),
            level(32.0, 22.0, 20.5, 1450.0),
        ];
        assert_eq!(kinds(&diagnose(&batch, false)), ["batching"]);
        // Light: everything flat, throughput proportional.
        let light = [level(4.0, 80.0, 8.0, 400.0), level(16.0, 81.0, 8.0, 1600.0)];
        assert!(diagnose(&light, false).is_empty());
        // Rate limits and a starved client.
        let mut limited = light.clone();
        limited[1].rate_limited = 300;
        assert_eq!(kinds(&diagnose(&limited, false)), ["rate_limiting"]);
        limited[1].under_delivered = true;
        assert_eq!(kinds(&diagnose(&limited, false)), ["rate_limiting"]);
        let mut short = light.clone();
        short[1].under_delivered = true;
        assert_eq!(kinds(&diagnose(&short, false)), ["client"]);
        assert_eq!(kinds(&diagnose(&light, true)), ["client"]);
        // A database tier: JSON steps slow, streams do not.
        let mut db = light.clone();
        db[0].json_e2e_p50 = Some(30.0);
        db[1].json_e2e_p50 = Some(240.0);
        assert_eq!(kinds(&diagnose(&db, false)), ["non_llm_tier"]);
        let f = &diagnose(&queue, false)[0];
        assert!(f.evidence.contains("50 ms → 670 ms"), "{}", f.evidence);
    }
}
