//! Where the time went: rules over the levels of a run (the held stages of
//! a ramp, or the probes of a capacity search), the server's metrics
//! scraped during it, its streamed steps' prompt sizes and its generator's
//! health. Each finding names its evidence, the rule, what would refute it,
//! and the next hypothesis to test. A light run gives no finding.

mod levels;
mod rules;

use serde::{Deserialize, Serialize};

use crate::result::capacity::CapacityResult;
use crate::result::server::Signals;
use crate::result::RunResult;

pub use levels::levels_of_run;

/// One load level and what was measured at it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Level {
    /// Users (or starts per second).
    pub load: f64,
    /// Streamed steps' TTFT p50, ms.
    pub ttft_p50: Option<f64>,
    /// Streamed steps' TPOT p50, ms.
    pub tpot_p50: Option<f64>,
    /// Streamed steps' TPOT p90, ms.
    pub tpot_p90: Option<f64>,
    /// Output tokens per second.
    pub tokens_per_s: f64,
    /// JSON (non-streamed) steps' E2E p50, ms.
    pub json_e2e_p50: Option<f64>,
    /// Requests.
    pub requests: u64,
    /// Rate-limited requests.
    pub rate_limited: u64,
    /// The generator could not deliver this level.
    pub under_delivered: bool,
    /// The server's metrics at this level, when scraped.
    pub server: Option<Signals>,
}

/// A streamed step's prompt size against its TTFT.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PromptStep {
    /// The step.
    pub step: String,
    /// Mean request body, characters.
    pub chars: f64,
    /// TTFT p50, ms.
    pub ttft_p50: f64,
    /// Successful requests.
    pub requests: u64,
}

/// Everything the rules read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Evidence {
    /// Load levels, lowest first.
    pub levels: Vec<Level>,
    /// The generator's self-check called it saturated.
    pub generator_saturated: bool,
    /// ... because other work on the machine starved it (its own CPU was
    /// low): the machine, not the generator, was the limit.
    pub machine_starved: bool,
    /// The self-check's figures, for the finding.
    pub generator_figures: Option<String>,
    /// Streamed steps' prompt sizes (whole run).
    pub prompts: Vec<PromptStep>,
    /// The server's metrics were scraped.
    pub server_scraped: bool,
    /// Streams stopped by design mid-stream (the client disconnected).
    pub cancelled: u64,
    /// Output tokens the client received per second, over the run.
    pub client_tokens_per_s: f64,
    /// The server's figures over the whole run.
    pub server_overall: Option<Signals>,
    /// Streams resumed with `Last-Event-ID`, and the events they repeated
    /// and skipped.
    pub resumed: (u64, u64, u64),
}

/// A bottleneck found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// `queueing`, `batching`, `memory`, `prefill`, `rate_limiting`,
    /// `client`, `non_llm_tier`, `host_cpu`, `abandoned_generation`.
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

impl Evidence {
    /// Enough to say something: levels to compare, or the server's metrics.
    pub fn comparable(&self) -> bool {
        self.levels.len() >= 2 || self.server_scraped
    }
}

/// The findings of the evidence. Levels the generator could not deliver
/// are invalid: only the client rule reads them.
pub fn diagnose(ev: &Evidence) -> Vec<Finding> {
    // A run other work starved measured the machine: no latency of it
    // says anything about the server (only what the server itself sent:
    // 429s, generation after a disconnect, a broken resume).
    let valid = match rules::invalid_from(ev) {
        _ if ev.machine_starved => &ev.levels[..0],
        Some(i) => &ev.levels[..i],
        None => &ev.levels[..],
    };
    let mut out = Vec::new();
    out.extend(rules::client(ev));
    out.extend(rules::rate_limiting(ev));
    out.extend(rules::queueing(valid));
    out.extend(rules::memory(valid));
    out.extend(rules::batching(valid));
    if !ev.machine_starved {
        out.extend(rules::prefill(&ev.prompts));
    }
    out.extend(rules::non_llm_tier(valid));
    out.extend(rules::host_cpu(valid));
    let saturated = rules::saturation(valid, &out);
    out.extend(saturated);
    out.extend(rules::abandoned_generation(ev));
    out.extend(rules::broken_resume(ev));
    out
}

/// A run's evidence and findings.
pub fn of_run(r: &RunResult) -> (Evidence, Vec<Finding>) {
    let ev = levels::of_run(r);
    let f = diagnose(&ev);
    (ev, f)
}

/// A capacity search's findings, over its conclusive probes.
pub fn of_capacity(c: &CapacityResult) -> Vec<Finding> {
    diagnose(&levels::of_capacity(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn level(load: f64, ttft: f64, tpot: f64, tps: f64) -> Level {
        Level {
            load,
            ttft_p50: Some(ttft),
            tpot_p50: Some(tpot),
            tpot_p90: Some(tpot * 1.2),
            tokens_per_s: tps,
            requests: 1000,
            ..Level::default()
        }
    }

    fn kinds(levels: &[Level], saturated: bool) -> Vec<String> {
        let ev = Evidence {
            levels: levels.to_vec(),
            generator_saturated: saturated,
            ..Evidence::default()
        };
        diagnose(&ev).into_iter().map(|x| x.kind).collect()
    }

    fn with_server(mut l: Level, s: Signals) -> Level {
        l.server = Some(s);
        l
    }

    #[test]
    fn a_busy_host_cpu_is_a_finding_only_with_latency_rising_beside_it() {
        let cpu = |pct: f64| Signals {
            host_cpu_busy_pct: Some(pct),
            ..Signals::default()
        };
        // TPOT climbs with the host's CPU at 97%: host_cpu, with its numbers.
        let busy = [
            with_server(level(8.0, 50.0, 5.0, 1200.0), cpu(35.0)),
            with_server(level(32.0, 52.0, 9.0, 3000.0), cpu(97.0)),
        ];
        let f = diagnose(&Evidence {
            levels: busy.to_vec(),
            ..Evidence::default()
        });
        let host = f.iter().find(|x| x.kind == "host_cpu").expect("host_cpu");
        assert!(
            host.evidence.contains("97% busy at 32 users")
                && host.evidence.contains("35% at 8 users"),
            "{}",
            host.evidence
        );
        // As busy, latency flat: the CPU is not what limits.
        let flat = [
            with_server(level(8.0, 50.0, 5.0, 1200.0), cpu(35.0)),
            with_server(level(32.0, 51.0, 5.1, 4700.0), cpu(97.0)),
        ];
        assert!(!kinds(&flat, false).contains(&"host_cpu".to_string()));
        // Latency up, the host at 60%: not the host's CPU.
        let idle = [
            with_server(level(8.0, 50.0, 5.0, 1200.0), cpu(20.0)),
            with_server(level(32.0, 52.0, 9.0, 3000.0), cpu(60.0)),
        ];
        assert!(!kinds(&idle, false).contains(&"host_cpu".to_string()));
    }

    #[test]
    // Long by design: one case per rule, side by side so a rule's pattern is
    // read next to the others.
    fn each_rule_fires_on_its_own_pattern_and_a_light_run_gives_nothing() {
        // A queue: TTFT climbs, TPOT and throughput flat.
        let queue = [
            level(8.0, 50.0, 5.0, 1200.0),
            level(16.0, 51.0, 5.0, 2300.0),
            level(32.0, 257.0, 5.0, 2250.0),
            level(64.0, 670.0, 5.0, 2000.0),
        ];
        assert_eq!(kinds(&queue, false), ["queueing"]);
        // A knee above the middle of a 10 → 2,000 ramp: throughput scales
        // to 1,000 users and not after, TTFT departs there.
        let ramp: Vec<Level> = [
            (10.0, 80.0, 200.0),
            (50.0, 80.0, 1000.0),
            (100.0, 81.0, 2000.0),
            (250.0, 81.0, 5000.0),
            (500.0, 81.0, 9800.0),
            (1000.0, 423.0, 15700.0),
            (2000.0, 2281.0, 15800.0),
        ]
        .iter()
        .map(|&(users, ttft, tps)| level(users, ttft, 5.0, tps))
        .collect();
        assert_eq!(kinds(&ramp, false), ["queueing"]);
        let f = diagnose(&Evidence {
            levels: ramp,
            ..Evidence::default()
        });
        assert!(
            f[0].evidence.contains("the knee at 1000 users"),
            "{}",
            f[0].evidence
        );
        // Batching: TPOT climbs, TTFT low, total flattens.
        let batch = [
            level(8.0, 20.0, 8.5, 900.0),
            level(16.0, 21.0, 12.5, 1200.0),
            level(32.0, 22.0, 20.5, 1450.0),
        ];
        assert_eq!(kinds(&batch, false), ["batching"]);
        // Light: everything flat, throughput proportional.
        let light = [level(4.0, 80.0, 8.0, 400.0), level(16.0, 81.0, 8.0, 1600.0)];
        assert!(kinds(&light, false).is_empty());
        // Rate limits and a starved client.
        let mut limited = light.clone();
        limited[1].rate_limited = 300;
        assert_eq!(kinds(&limited, false), ["rate_limiting"]);
        limited[1].under_delivered = true;
        assert_eq!(kinds(&limited, false), ["rate_limiting"]);
        let mut short = light.clone();
        short[1].under_delivered = true;
        assert_eq!(kinds(&short, false), ["client"]);
        assert_eq!(kinds(&light, true), ["client"]);
        // TTFT and TPOT rising together, throughput 4.7× for 16× the
        // users: saturation, never "held".
        let both = [
            level(1.0, 30.0, 9.0, 100.0),
            level(4.0, 60.0, 14.0, 300.0),
            level(8.0, 120.0, 22.0, 420.0),
            level(16.0, 209.0, 33.0, 470.0),
        ];
        assert_eq!(kinds(&both, false), ["saturation"]);
        // The same lag with the generator's own CPU low: the machine.
        let starved = Evidence {
            levels: light.to_vec(),
            generator_saturated: true,
            machine_starved: true,
            ..Evidence::default()
        };
        let f = diagnose(&starved);
        assert_eq!(
            f.iter().map(|x| x.kind.as_str()).collect::<Vec<_>>(),
            ["machine"]
        );
        assert_eq!(
            f[0].title,
            "other work on this machine starved the generator"
        );
        // Levels it cut short are the machine's doing too.
        let starved_short = Evidence {
            levels: short.to_vec(),
            generator_saturated: true,
            machine_starved: true,
            ..Evidence::default()
        };
        let found: Vec<String> = diagnose(&starved_short)
            .into_iter()
            .map(|x| x.kind)
            .collect();
        assert_eq!(found, ["machine"]);
        // A queue measured while the machine starved the generator is the
        // machine's doing: no server finding from its latencies.
        let starved_queue = Evidence {
            levels: queue.to_vec(),
            generator_saturated: true,
            machine_starved: true,
            ..Evidence::default()
        };
        let found: Vec<String> = diagnose(&starved_queue)
            .into_iter()
            .map(|x| x.kind)
            .collect();
        assert_eq!(found, ["machine"]);
        // A database tier: JSON steps slow, streams do not.
        let mut db = light.clone();
        db[0].json_e2e_p50 = Some(30.0);
        db[1].json_e2e_p50 = Some(240.0);
        assert_eq!(kinds(&db, false), ["non_llm_tier"]);
        let ev = Evidence {
            levels: queue.to_vec(),
            ..Evidence::default()
        };
        let f = &diagnose(&ev)[0];
        assert!(f.evidence.contains("50.0 ms → 670 ms"), "{}", f.evidence);
    }

    #[test]
    fn levels_past_the_generators_limit_are_left_out_of_the_other_rules() {
        // TTFT explodes only at the level the generator could not deliver.
        let mut q = [
            level(8.0, 50.0, 5.0, 1200.0),
            level(16.0, 51.0, 5.0, 2300.0),
            level(32.0, 900.0, 5.0, 2300.0),
        ];
        q[2].under_delivered = true;
        assert_eq!(kinds(&q, false), ["client"]);
        let ev = Evidence {
            levels: q.to_vec(),
            ..Evidence::default()
        };
        assert!(diagnose(&ev)[0]
            .evidence
            .contains("32 and above are invalid"));
    }

    #[test]
    fn the_servers_metrics_corroborate_refute_or_find_on_their_own() {
        let queue = [
            level(8.0, 50.0, 5.0, 1200.0),
            level(16.0, 51.0, 5.0, 2300.0),
            level(32.0, 257.0, 5.0, 2250.0),
        ];
        // A waiting queue that grows corroborates; one at zero refutes.
        let mut seen = queue.clone();
        seen[0].server = Some(Signals {
            waiting: Some(0.0),
            ..Signals::default()
        });
        seen[2].server = Some(Signals {
            waiting: Some(14.0),
            ..Signals::default()
        });
        let ev = Evidence {
            levels: seen.to_vec(),
            ..Evidence::default()
        };
        let f = diagnose(&ev);
        assert!(
            f[0].evidence.contains("0.0 → 14.0 (corroborated)"),
            "{}",
            f[0].evidence
        );
        seen[2].server = Some(Signals {
            waiting: Some(0.0),
            ..Signals::default()
        });
        // The empty queue refutes queueing; throughput that stopped
        // scaling while TTFT rose is still named, as saturation.
        assert_eq!(kinds(&seen, false), ["saturation"]);
        // One run: the server's own queue, KV cache and pool speak alone.
        let one = |s: Signals| [with_server(level(16.0, 60.0, 5.0, 1000.0), s)];
        assert_eq!(
            kinds(
                &one(Signals {
                    waiting: Some(6.0),
                    ..Signals::default()
                }),
                false
            ),
            ["queueing"]
        );
        // A soak on an unlimited server: a few waiting among a thousand
        // running is churn, not an admission limit.
        assert!(kinds(
            &one(Signals {
                waiting: Some(3.6),
                running: Some(1185.0),
                ..Signals::default()
            }),
            false
        )
        .is_empty());
        assert_eq!(
            kinds(
                &one(Signals {
                    kv_usage: Some(1.0),
                    preemptions_per_s: Some(3.0),
                    ..Signals::default()
                }),
                false
            ),
            ["memory"]
        );
        assert_eq!(
            kinds(
                &one(Signals {
                    pool_waiting: Some(4.0),
                    pool_in_use: Some(2.0),
                    pool_size: Some(2.0),
                    ..Signals::default()
                }),
                false
            ),
            ["non_llm_tier"]
        );
        assert!(kinds(
            &one(Signals {
                waiting: Some(0.0),
                kv_usage: Some(0.3),
                ..Signals::default()
            }),
            false
        )
        .is_empty());
    }

    #[test]
    fn memory_pressure_shows_as_stalls_and_is_not_read_as_batching() {
        // All streams evicted once at the top: TPOT up, and stalls.
        let mut kv = [
            level(8.0, 30.0, 5.0, 1000.0),
            level(32.0, 31.0, 9.0, 2000.0),
        ];
        kv[1].tpot_p90 = Some(25.0);
        assert_eq!(kinds(&kv, false), ["memory"]);
        kv[1].server = Some(Signals {
            kv_usage: Some(1.0),
            preemptions_per_s: Some(20.0),
            ..Signals::default()
        });
        assert_eq!(kinds(&kv, false), ["memory"]);
        // A cache scraped half empty refutes the stalls' reading.
        kv[1].server = Some(Signals {
            kv_usage: Some(0.4),
            ..Signals::default()
        });
        assert_eq!(kinds(&kv, false), ["batching"]);
    }

    #[test]
    fn prefill_needs_ttft_to_follow_the_prompt_across_steps() {
        let step = |name: &str, chars: f64, ttft: f64| PromptStep {
            step: name.into(),
            chars,
            ttft_p50: ttft,
            requests: 100,
        };
        let mut ev = Evidence {
            prompts: vec![
                step("outline", 400.0, 40.0),
                step("continue", 6000.0, 160.0),
                step("draft", 1500.0, 70.0),
            ],
            ..Evidence::default()
        };
        let f = diagnose(&ev);
        assert_eq!(f.len(), 1);
        assert!(
            f[0].evidence.contains("`continue`") && f[0].evidence.contains("per 1,000 characters"),
            "{}",
            f[0].evidence
        );
        // Flat TTFT, or TTFT that does not follow the size: nothing.
        ev.prompts[1].ttft_p50 = 45.0;
        assert!(diagnose(&ev).is_empty());
        ev.prompts[1].ttft_p50 = 160.0;
        ev.prompts[2].ttft_p50 = 300.0;
        assert!(diagnose(&ev).is_empty());
    }
}
