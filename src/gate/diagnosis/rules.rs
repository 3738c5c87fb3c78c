//! The rules, one function each: a finding when its pattern holds in the
//! evidence, with the numbers it rests on.

use super::{Evidence, Finding, Level, PromptStep};
use crate::result::server::Signals;

fn rise(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if a > 0.0 && b.is_finite() => Some(b / a - 1.0),
        _ => None,
    }
}

use crate::stats::format::ms_unit as ms;

fn num(v: Option<f64>) -> String {
    v.map_or("-".into(), |x| format!("{x:.1}"))
}

fn server(l: &Level) -> Signals {
    l.server.clone().unwrap_or_default()
}

/// A share of streams far slower per token than the median: mid-stream stalls.
pub(super) fn stalls(l: &Level) -> bool {
    matches!((l.tpot_p50, l.tpot_p90), (Some(a), Some(b)) if a > 0.0 && b >= 2.0 * a)
}

/// Levels from the first the generator could not deliver (when no rate
/// limit explains it): their figures measure the generator.
pub(super) fn invalid_from(ev: &Evidence) -> Option<usize> {
    if rate_limited(ev).is_some() {
        return None;
    }
    ev.levels.iter().position(|l| l.under_delivered)
}

fn rate_limited(ev: &Evidence) -> Option<(u64, u64)> {
    let requests: u64 = ev.levels.iter().map(|l| l.requests).sum();
    let limited: u64 = ev.levels.iter().map(|l| l.rate_limited).sum();
    (requests > 0 && limited as f64 / requests as f64 > 0.01).then_some((limited, requests))
}

pub(super) fn client(ev: &Evidence) -> Option<Finding> {
    let cut = invalid_from(ev);
    if !ev.generator_saturated && cut.is_none() {
        return None;
    }
    let mut evidence = match cut.map(|i| ev.levels[i].load) {
        Some(n) => format!(
            "the intended load was not delivered from {n} on: results at {n} and above are invalid (they measure the generator) and the other rules leave them out"
        ),
        None => "the generator's self-check found it saturated (event-loop lag or CPU): every figure of this run may measure the generator".into(),
    };
    if let Some(g) = ev
        .generator_figures
        .as_deref()
        .filter(|_| ev.generator_saturated)
    {
        evidence += &format!("; {g}");
    }
    // A starved machine also under-delivers: the levels it cut short are
    // its doing, not the generator's.
    if ev.machine_starved {
        return Some(Finding {
            kind: "machine".into(),
            title: "other work on this machine starved the generator".into(),
            evidence,
            rule: "event-loop lag over its bound while the generator's own CPU was low and the machine's was busy".into(),
            refuted_by: "the same figures on a machine with nothing else running".into(),
            next: "the run on a quiet machine (or a dedicated runner) shows the server's latencies without this lag".into(),
        });
    }
    Some(Finding {
        kind: "client".into(),
        title: "the load generator, not the server, was the limit".into(),
        evidence,
        rule: "generator saturated, or achieved load under 97% of intended without a rate limit to explain it".into(),
        refuted_by: "the same figures from a generator with more cores, or spread over shards".into(),
        next: "the server's latencies at this load are unchanged when the load comes from two shards (`plan --shards 2`)".into(),
    })
}

pub(super) fn rate_limiting(ev: &Evidence) -> Option<Finding> {
    let (limited, requests) = rate_limited(ev)?;
    Some(Finding {
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
    })
}

/// The knee: the first level from which every higher level (20% more
/// load or more) gained under a third of its rise in load: throughput
/// scaled up to it and not after. Every level is a candidate, so a knee
/// anywhere in a ramp is found. `(flat, load rise from the knee to the
/// top, knee index)`.
fn flat_throughput(levels: &[Level]) -> (bool, f64, usize) {
    let last = &levels[levels.len() - 1];
    for (k, from) in levels[..levels.len() - 1].iter().enumerate() {
        if from.tokens_per_s <= 0.0 || last.load / from.load.max(1e-9) <= 1.2 {
            continue;
        }
        let flat_after = levels[k + 1..]
            .iter()
            .filter(|to| to.load / from.load.max(1e-9) > 1.2)
            .all(|to| {
                let load = to.load / from.load.max(1e-9);
                to.tokens_per_s / from.tokens_per_s < 1.0 + (load - 1.0) * 0.3
            });
        if flat_after {
            return (true, last.load / from.load.max(1e-9), k);
        }
    }
    let mid = levels.len() / 2;
    (false, last.load / levels[mid].load.max(1e-9), mid)
}

pub(super) fn queueing(levels: &[Level]) -> Option<Finding> {
    let last = levels.last()?;
    let waiting = server(last).waiting;
    let refuted_by = "throughput that keeps rising with load, or a waiting-queue gauge (`vllm:num_requests_waiting`) that stays at zero".to_string();
    if levels.len() < 2 {
        // One level: only the server's own queue can say it, and only a
        // queue that is large beside what is being served (a few waiting
        // among a thousand running is the scheduler's churn, not a limit).
        let running = server(last).running.unwrap_or(0.0);
        let w = waiting.filter(|w| *w >= 1.0 && *w >= 0.05 * running)?;
        return Some(Finding {
            kind: "queueing".into(),
            title: "requests queue before they are served: an admission or concurrency limit".into(),
            evidence: format!(
                "the server's waiting queue held {w:.1} requests on average at {} users (running {}), TTFT p50 {}",
                last.load, num(server(last).running), ms(last.ttft_p50)
            ),
            rule: "a waiting-queue gauge averaging 1 or more, and at least 5% of the requests running".into(),
            refuted_by,
            next: format!("with a higher concurrency limit on the server (vLLM `max_num_seqs`), the waiting queue at {} users stays under 1", last.load),
        });
    }
    let first = &levels[0];
    let ttft = rise(first.ttft_p50, last.ttft_p50);
    let tpot = rise(first.tpot_p50, last.tpot_p50);
    let (flat, top_load, knee) = flat_throughput(levels);
    let fires = ttft.is_some_and(|r| r > 0.5) && tpot.is_none_or(|r| r < 0.2) && flat;
    // The server's own queue, when scraped, must agree.
    if !fires || waiting.is_some_and(|w| w < 0.5) {
        return None;
    }
    let mid = &levels[knee];
    let corroboration = match waiting {
        Some(w) => format!(
            "; the server's waiting queue {} → {w:.1} (corroborated)",
            num(server(first).waiting)
        ),
        None => String::new(),
    };
    Some(Finding {
        kind: "queueing".into(),
        title: "requests queue before they are served: an admission or concurrency limit".into(),
        evidence: format!(
            "TTFT p50 {} → {} from {} to {} users, TPOT p50 {} → {} (flat); the knee at {} users: output tok/s {:.0} → {:.0} from there while load rose {top_load:.1}×{corroboration}",
            ms(first.ttft_p50), ms(last.ttft_p50), first.load, last.load, ms(first.tpot_p50), ms(last.tpot_p50),
            mid.load, mid.tokens_per_s, last.tokens_per_s
        ),
        rule: "TTFT up > 50% with TPOT flat (< 20%) and throughput flat (under a third of the load's rise); a scraped waiting queue must average 0.5 or more".into(),
        refuted_by,
        next: format!("with a higher concurrency limit on the server (vLLM `max_num_seqs`), TTFT p50 at {} users stays within 50% of its figure at {}", last.load, first.load),
    })
}

pub(super) fn memory(levels: &[Level]) -> Option<Finding> {
    let last = levels.last()?;
    let first = &levels[0];
    let s = server(last);
    let kv_full = s.kv_usage.is_some_and(|k| k >= 0.95);
    let preempting = s.preemptions_per_s.is_some_and(|p| p > 0.0);
    let kv_low = s.kv_usage.is_some_and(|k| k < 0.8);
    let grew = levels.len() >= 2 && stalls(last) && !stalls(first);
    let by_server = kv_full && (preempting || stalls(last));
    if !(by_server || (grew && !kv_low)) {
        return None;
    }
    let mut evidence = format!(
        "TPOT p50 {} → {} from {} to {} users, p90 {} at the top",
        ms(first.tpot_p50),
        ms(last.tpot_p50),
        first.load,
        last.load,
        ms(last.tpot_p90)
    );
    if stalls(last) {
        evidence += " (p90 ≥ 2× p50: a share of streams stall mid-stream)";
    }
    if let Some(k) = s.kv_usage {
        evidence += &format!("; KV-cache usage peaked at {:.0}%", k * 100.0);
    }
    if let Some(p) = s.preemptions_per_s {
        evidence += &format!(", {p:.1} preemptions/s");
    }
    Some(Finding {
        kind: "memory".into(),
        title: "memory / KV-cache pressure: streams are evicted and stall mid-stream".into(),
        evidence,
        rule: "KV usage ≥ 95% with preemptions or stalls, or TPOT p90 ≥ 2× p50 at the top level and not at the lowest (KV usage, if scraped, ≥ 80%)".into(),
        refuted_by: "a KV-cache gauge well below full, no preemptions, and TPOT p90 close to p50 at the same load".into(),
        next: format!("with more KV-cache room (vLLM `gpu_memory_utilization`, a smaller `max_model_len`, or fewer concurrent sequences), TPOT p90 at {} users falls within 2× its p50", last.load),
    })
}

pub(super) fn batching(levels: &[Level]) -> Option<Finding> {
    if levels.len() < 2 {
        return None;
    }
    let (first, last) = (&levels[0], &levels[levels.len() - 1]);
    let ttft = rise(first.ttft_p50, last.ttft_p50);
    let tpot = rise(first.tpot_p50, last.tpot_p50);
    // Preemption stalls also raise TPOT, unevenly: that is the memory
    // finding's. Batching slows every stream alike.
    let preempting = server(last).preemptions_per_s.is_some_and(|p| p > 0.0);
    let uneven = stalls(last) && !server(last).kv_usage.is_some_and(|k| k < 0.8);
    if !(tpot.is_some_and(|r| r > 0.3) && ttft.is_none_or(|r| r < 0.5)) || preempting || uneven {
        return None;
    }
    let per_stream = |l: &Level| l.tokens_per_s / l.load.max(1e-9);
    let load = last.load / first.load.max(1e-9);
    let running = match (server(first).running, server(last).running) {
        (Some(a), Some(b)) => format!("; the server's batch (requests running) {a:.1} → {b:.1}"),
        _ => String::new(),
    };
    Some(Finding {
        kind: "batching".into(),
        title: "decode batching saturates: each stream slows as more share the batch".into(),
        evidence: format!(
            "TPOT p50 {} → {} from {} to {} users with TTFT p50 {} → {}; per-stream tok/s {:.1} → {:.1}, total {:.0} → {:.0} ({load:.1}× the load){running}",
            ms(first.tpot_p50), ms(last.tpot_p50), first.load, last.load, ms(first.ttft_p50), ms(last.ttft_p50),
            per_stream(first), per_stream(last), first.tokens_per_s, last.tokens_per_s
        ),
        rule: "TPOT up > 30% while TTFT stays within 50%, evenly (TPOT p90 < 2× p50) and without preemptions".into(),
        refuted_by: "TPOT flat at the same loads on a larger batch budget, or TTFT rising as much as TPOT".into(),
        next: format!("TPOT p50 at {} users stays under its objective with a larger max batch (or a second replica)", last.load),
    })
}

pub(super) fn prefill(prompts: &[PromptStep]) -> Option<Finding> {
    let mut p: Vec<&PromptStep> = prompts
        .iter()
        .filter(|p| p.requests >= 10 && p.chars > 0.0)
        .collect();
    if p.len() < 2 {
        return None;
    }
    p.sort_by(|a, b| a.chars.total_cmp(&b.chars));
    let (short, long) = (p[0], p[p.len() - 1]);
    // TTFT follows the prompt: longer prompts never answer sooner (5% slack).
    let ordered = p.windows(2).all(|w| w[1].ttft_p50 >= w[0].ttft_p50 * 0.95);
    if long.chars < 2.0 * short.chars || long.ttft_p50 < 1.5 * short.ttft_p50 || !ordered {
        return None;
    }
    let per_k = (long.ttft_p50 - short.ttft_p50) / ((long.chars - short.chars) / 1000.0);
    Some(Finding {
        kind: "prefill".into(),
        title: "prefill-bound: the time to first token grows with the prompt".into(),
        evidence: format!(
            "TTFT p50 {} for `{}` (prompts of {:.0} characters) against {} for `{}` ({:.0}): about {per_k:.1} ms more per 1,000 characters of prompt",
            ms(Some(long.ttft_p50)), long.step, long.chars, ms(Some(short.ttft_p50)), short.step, short.chars
        ),
        rule: "across streamed steps, TTFT p50 rises with the prompt's size (≥ 2× the characters, ≥ 1.5× the TTFT, in order)".into(),
        refuted_by: "the same TTFT for a step when its prompt is cut to the shortest step's size".into(),
        next: format!("with prefix caching (or chunked prefill), TTFT p50 of `{}` falls within 1.5× that of `{}`", long.step, short.step),
    })
}

pub(super) fn non_llm_tier(levels: &[Level]) -> Option<Finding> {
    let last = levels.last()?;
    let first = &levels[0];
    let s = server(last);
    let pool = match (s.pool_in_use, s.pool_size, s.pool_waiting) {
        (Some(u), Some(n), w) => format!(
            "; the pool: {u:.0} of {n:.0} connections in use at peak, {} callers waiting on average",
            num(w)
        ),
        (_, _, Some(w)) => format!("; {w:.1} callers waiting for a pool connection on average"),
        _ => String::new(),
    };
    let queued = s.pool_waiting.is_some_and(|w| w >= 1.0);
    let fires = match (first.json_e2e_p50, last.json_e2e_p50) {
        (Some(a), Some(b)) if levels.len() >= 2 => {
            b > a * 1.5 && rise(first.ttft_p50, last.ttft_p50).is_none_or(|r| r < 0.2)
        }
        _ => queued,
    };
    // A scraped pool with nobody waiting refutes it.
    if !fires || s.pool_waiting.is_some_and(|w| w < 0.1) {
        return None;
    }
    Some(Finding {
        kind: "non_llm_tier".into(),
        title: "a tier other than the model slows down: the JSON steps (a database pool?)".into(),
        evidence: format!(
            "JSON steps' E2E p50 {} → {} from {} to {} users while streamed TTFT p50 {} → {}{pool}",
            ms(first.json_e2e_p50), ms(last.json_e2e_p50), first.load, last.load, ms(first.ttft_p50), ms(last.ttft_p50)
        ),
        rule: "non-streamed steps' E2E up > 50% while streamed TTFT stays within 20% (or, in one run, a pool queue averaging 1 or more); a scraped pool queue must not be empty".into(),
        refuted_by: "the JSON steps as slow at low load, or a pool gauge well below its size".into(),
        next: "a larger database pool brings the JSON steps' E2E back to its low-load figure".into(),
    })
}

pub(super) fn abandoned_generation(ev: &Evidence) -> Option<Finding> {
    let generated = ev.server_overall.as_ref()?.generated_per_s?;
    let received = ev.client_tokens_per_s;
    if ev.cancelled == 0 || generated <= received * 1.3 + 5.0 {
        return None;
    }
    Some(Finding {
        kind: "abandoned_generation".into(),
        title: "server kept generating after the client disconnected".into(),
        evidence: format!(
            "{} streams were stopped mid-stream by the client; the server generated {generated:.0} tok/s while the clients received {received:.0} tok/s ({:.1}×)",
            ev.cancelled,
            generated / received.max(1e-9)
        ),
        rule: "with streams cancelled by the client, the server's generated-token counter runs over 1.3× (and 5 tok/s above) what the clients received".into(),
        refuted_by: "the server's generated tokens matching what the clients received when the same streams are cancelled".into(),
        next: "with generation aborted on client disconnect, the server's generated tok/s falls to within 1.3× of what the clients receive".into(),
    })
}

pub(super) fn broken_resume(ev: &Evidence) -> Option<Finding> {
    let (resumed, duplicates, lost) = ev.resumed;
    if resumed == 0 || (duplicates == 0 && lost == 0) {
        return None;
    }
    Some(Finding {
        kind: "broken_resume".into(),
        title: "resumed streams do not go on where they broke".into(),
        evidence: format!(
            "{resumed} streams resumed with `Last-Event-ID`: {duplicates} events delivered again, {lost} ids skipped"
        ),
        rule: "a stream resumed with `Last-Event-ID: n` must go on at id n + 1, none repeated, none skipped".into(),
        refuted_by: "resumed streams whose ids follow the break exactly".into(),
        next: "with the server honouring `Last-Event-ID`, resumed streams repeat and skip no event".into(),
    })
}

/// Throughput that stops scaling while TTFT or TPOT rise is saturation,
/// whatever moved: named even when no more specific rule (queueing,
/// batching, memory) fits, so a report never calls such a run "held".
pub(super) fn saturation(levels: &[Level], found: &[Finding]) -> Option<Finding> {
    // A saturated generator (or machine) makes every figure suspect.
    if levels.len() < 2
        || found
            .iter()
            .any(|f| matches!(f.kind.as_str(), "client" | "machine"))
        || found
            .iter()
            .any(|f| matches!(f.kind.as_str(), "queueing" | "batching" | "memory"))
    {
        return None;
    }
    let (first, last) = (&levels[0], &levels[levels.len() - 1]);
    let (flat, top_load, knee) = flat_throughput(levels);
    let ttft = rise(first.ttft_p50, last.ttft_p50).unwrap_or(0.0);
    let tpot = rise(first.tpot_p50, last.tpot_p50).unwrap_or(0.0);
    if !flat || (ttft <= 0.5 && tpot <= 0.2) {
        return None;
    }
    let k = &levels[knee];
    let (title, why) = if ttft > 0.5 && tpot > 0.2 {
        (
            "the server is saturated: throughput stopped scaling while both TTFT and TPOT rose",
            "both rising together fits a compute-bound server (continuous batching at its limit: every request shares the same compute, so each token and each first token wait longer)",
        )
    } else {
        (
            "the server is saturated: throughput stopped scaling, cause unclear",
            "the rise fits neither the queueing nor the batching pattern alone",
        )
    };
    Some(Finding {
        kind: "saturation".into(),
        title: title.into(),
        evidence: format!(
            "output tok/s {:.0} → {:.0} from the knee at {} users to {} users ({top_load:.1}× the load); TTFT p50 {} → {} ({:+.0}%), TPOT p50 {} → {} ({:+.0}%) from {} users; {why}",
            k.tokens_per_s, last.tokens_per_s, k.load, last.load,
            ms(first.ttft_p50), ms(last.ttft_p50), ttft * 100.0,
            ms(first.tpot_p50), ms(last.tpot_p50), tpot * 100.0, first.load
        ),
        rule: "throughput gained under a third of the load's rise from some level on, with TTFT up > 50% or TPOT up > 20%".into(),
        refuted_by: "throughput that keeps rising with more users at the same latencies".into(),
        next: format!(
            "the server's capacity is near {} users: `flora-gate capacity` with your latency objectives finds it, and the server's CPU/GPU utilisation there (scraped with `--server-metrics`) says which resource is full",
            k.load
        ),
    })
}

/// The server's host CPU is saturated: at the highest valid level the
/// busiest scraped host is at least 90% busy, and latency rose from the
/// lowest level (or, with one level, the host is that busy at all).
pub(super) fn host_cpu(levels: &[Level]) -> Option<Finding> {
    let last = levels.last()?;
    let busy = server(last).host_cpu_busy_pct?;
    if busy < 90.0 {
        return None;
    }
    let first = &levels[0];
    let rose = |a: Option<f64>, b: Option<f64>| rise(a, b).is_some_and(|r| r > 0.2);
    let slower = rose(first.ttft_p50, last.ttft_p50)
        || rose(first.tpot_p50, last.tpot_p50)
        || rose(first.json_e2e_p50, last.json_e2e_p50);
    if levels.len() >= 2 && !slower {
        return None;
    }
    let before = server(first)
        .host_cpu_busy_pct
        .filter(|_| levels.len() >= 2)
        .map(|b| format!(" ({b:.0}% at {} users)", first.load))
        .unwrap_or_default();
    Some(Finding {
        kind: "host_cpu".into(),
        title: "the server's host CPU is saturated".into(),
        evidence: format!(
            "the busiest scraped host was {busy:.0}% busy at {} users{before}; TTFT p50 {} → {}, TPOT p50 {} → {}",
            last.load,
            ms(first.ttft_p50),
            ms(last.ttft_p50),
            ms(first.tpot_p50),
            ms(last.tpot_p50)
        ),
        rule: "host CPU busy (node_exporter: not idle, not iowait) ≥ 90% at the highest level while TTFT, TPOT or the JSON steps' E2E rose > 20% from the lowest".into(),
        refuted_by: "the same latency rise on a host with idle CPU (more cores, or the server alone on it)".into(),
        next: "with more cores or fewer processes on the host, latency at this load returns to its low-load figure".into(),
    })
}
