//! `flora-gate capacity`: probe levels of users (double, then bisect), each
//! measured through the one pipeline and extended while its evidence is
//! unclear, and write what was found with every probe's figures.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::{
    signal_tokens, CapacityGate, CapacitySettings, CompareCapacitySettings, GateSettings, Outcome,
    ReportCapacitySettings,
};
use crate::error::UserError;
use crate::gate::capacity::{self, Search};
use crate::gate::slo;
use crate::gate::Status;
use crate::github::actions::{self, ActionsEnv};
use crate::policy::slo::{Decision, Objective, SloCheck};
use crate::result::capacity::{By, CapacityResult, Probe};
use crate::result::{self, RunResult, RunState};
use crate::scenario::{Arrival, LoadSpec, Model, Shape, Stage};

pub(super) async fn capacity(s: &CapacitySettings) -> anyhow::Result<Outcome> {
    let mut outputs = vec![("--out", s.out.as_path())];
    if let Some(p) = &s.report_out {
        outputs.push(("--report-out", p.as_path()));
    }
    crate::error::check_outputs(&outputs)?;
    let (signals, kill) = signal_tokens();
    let found = search(s, &signals, &mut Live::new(&signals, &kill)).await?;
    crate::jsonfile::write(&s.out, &found, "capacity result")?;
    eprintln!("capacity written to {}", s.out.display());
    if let Some(p) = &s.report_out {
        crate::error::write_atomic(
            p,
            crate::render::capacity::markdown(&found, None).as_bytes(),
        )?;
        eprintln!("report written to {}", p.display());
    }
    crate::output::out(&crate::render::capacity::text(&found));
    if let Some(why) = &found.stopped {
        return Err(stopped_early(why, &s.out).into());
    }
    Ok(if found.capacity.c_star.is_none() {
        Outcome::Regression
    } else {
        Outcome::Success
    })
}

/// The error of a search that stopped before its end.
pub(super) fn stopped_early(why: &str, out: &std::path::Path) -> UserError {
    UserError::Environment {
        message: format!("the search stopped early: {why}"),
        hint: Some(format!("what was measured is in `{}`", out.display())),
    }
}

/// Probe levels until the search ends (or a signal, a saturated generator
/// or an interrupted probe stops it: `stopped` says which), and gather
/// what was found with every probe's figures.
/// What measures one probe: its plan (the load set to the level) to a
/// result. The command's is the one pipeline ([`Live`]); tests give a
/// model of a server, so the search is tested without a clock.
pub(super) trait Prober {
    /// Measure `plan`.
    fn probe(
        &mut self,
        plan: &crate::engine::Plan,
    ) -> impl std::future::Future<Output = Result<RunResult, UserError>>;
}

/// Probes measured for real, through [`result::measure`].
pub(super) struct Live<'a> {
    signals: &'a CancellationToken,
    kill: &'a CancellationToken,
    /// The scenario with its prompt lengths in tokens calibrated, once.
    calibrated: Option<std::sync::Arc<crate::scenario::Scenario>>,
}

impl<'a> Live<'a> {
    pub(super) fn new(signals: &'a CancellationToken, kill: &'a CancellationToken) -> Self {
        Live {
            signals,
            kill,
            calibrated: None,
        }
    }
}

impl Prober for Live<'_> {
    async fn probe(&mut self, plan: &crate::engine::Plan) -> Result<RunResult, UserError> {
        let mut plan = plan.clone();
        match &self.calibrated {
            Some(sc) => plan.scenario = sc.clone(),
            None => {
                plan = result::calibrate::calibrate(&plan, self.signals, self.kill).await?;
                self.calibrated = Some(plan.scenario.clone());
            }
        }
        let m = result::measure(&plan, self.signals.clone(), self.kill.clone()).await?;
        Ok(match m.current {
            result::Current::Single(r) => *r,
            result::Current::Duet(d) => d.candidate,
        })
    }
}

pub(super) async fn search(
    s: &CapacitySettings,
    signals: &CancellationToken,
    prober: &mut impl Prober,
) -> Result<CapacityResult, UserError> {
    let started = Instant::now();
    let how = &s.search;
    let by = how.by;
    let mut search = Search::new(by, how.start, how.max, how.tolerance);
    let mut probes: Vec<Probe> = Vec::new();
    let mut requests = 0u64;
    let mut stopped = None;
    eprintln!(
        "capacity of {} at {} by {}: {}",
        s.plan.scenario.label(),
        s.plan.target,
        by.heading(),
        Objective::labels(&s.objectives)
    );
    let mut plan = warm_plan(s)?;
    // Probes are sized by requests: enough for every objective's bound to
    // pass where the level truly holds, from the request rate measured so
    // far (requests a second per unit of level).
    let needed = s
        .objectives
        .iter()
        .map(|o| slo::requests_needed(o, capacity::Z))
        .max()
        .unwrap_or(0);
    let mut rate_per_unit: Option<f64> = None;
    'levels: while let Some(level) = search.next() {
        let mut measure_for = Duration::from_secs_f64(how.probe_s);
        if let Some(rate) = rate_per_unit.filter(|r| *r > 0.0) {
            measure_for = measure_for.max(probe_for(needed, rate * level));
        }
        for extension in 0..=how.max_extensions {
            if signals.is_cancelled() {
                stopped = Some("interrupted by a signal".to_string());
                break 'levels;
            }
            plan.load = probe_load(&s.plan.load, by, level, how.warmup_s, measure_for);
            let r = probe_once(prober, &plan, by, level, signals, &mut requests).await?;
            let observed = r.totals.requests as f64 / r.window.duration_s.max(1e-3);
            if observed > 0.0 {
                rate_per_unit = Some(observed / level.max(1e-9));
            }
            let (checks, note) = match checks_of(&r, s, level) {
                Ok(judged) => judged,
                Err(why) => {
                    stopped = Some(why);
                    break 'levels;
                }
            };
            let decision = slo::combine(&checks);
            eprintln!(
                "  {}, {}: {}",
                by.show(level),
                humantime::format_duration(measure_for),
                describe(&checks, decision)
            );
            if decision == Decision::Inconclusive && extension < how.max_extensions {
                // Longer at the same level: twice, or as long as the
                // objectives' bounds need at the rate this level ran.
                measure_for = (measure_for * 2).max(probe_for(needed, observed));
                eprintln!(
                    "  {} inconclusive → extended to {}",
                    by.show(level),
                    humantime::format_duration(measure_for)
                );
                continue;
            }
            probes.push(capacity::probe(level, extension, &r, checks, note));
            search.record(level, decision);
            break;
        }
    }
    Ok(CapacityResult {
        schema_version: crate::result::capacity::SCHEMA_VERSION,
        kind: crate::result::capacity::KIND.into(),
        scenario: result::ScenarioRef {
            name: s.plan.scenario.name.clone(),
            origin: s.plan.scenario.origin.clone(),
            sha256: s.plan.scenario.sha256.clone(),
        },
        target: s.plan.target.to_string(),
        objectives: s.objectives.clone(),
        search: how.clone(),
        capacity: search.outcome(&probes),
        probes,
        elapsed_s: started.elapsed().as_secs_f64(),
        requests,
        stopped,
    })
}

/// The plan every probe runs with one client: its connections stay warm
/// between probes.
fn warm_plan(s: &CapacitySettings) -> Result<crate::engine::Plan, UserError> {
    let mut plan = s.plan.clone();
    let most = match s.search.by {
        By::Users => s.search.max.ceil() as u32,
        By::Rate => open_cap(&s.plan.load),
    };
    plan.client = Some(crate::engine::load_client(
        &plan.scenario,
        most,
        plan.ca_cert.as_deref(),
    )?);
    Ok(plan)
}

/// One probe's run, measured again (at most [`BUSY_RETRIES`] times) while
/// other work on the machine starved the generator. Every request sent
/// counts in `requests`.
async fn probe_once(
    prober: &mut impl Prober,
    plan: &crate::engine::Plan,
    by: By,
    level: f64,
    signals: &CancellationToken,
    requests: &mut u64,
) -> Result<RunResult, UserError> {
    let mut retries = 0;
    loop {
        let r = prober.probe(plan).await?;
        *requests += r.totals.requests;
        if !(r.self_check.starved() && retries < BUSY_RETRIES) || signals.is_cancelled() {
            return Ok(r);
        }
        retries += 1;
        eprintln!(
            "  {}: other work on the machine starved the generator; probing again ({retries} of {BUSY_RETRIES})",
            by.show(level)
        );
    }
}

/// A probe's checks and note: the objectives, a level that was aborted
/// (the breaker, a runaway queue) or whose offered rate was not taken
/// failing first. `Err(why)` when the search must stop here: a saturated
/// or starved generator, an interrupted probe.
fn checks_of(
    r: &RunResult,
    s: &CapacitySettings,
    level: f64,
) -> Result<(Vec<SloCheck>, Option<String>), String> {
    let by = s.search.by;
    if r.saturated() {
        return Err(if r.self_check.starved() {
            format!(
                "other work on this machine starved the generator at {} (after {BUSY_RETRIES} probes again): the probe does not count; search on a quieter machine",
                by.show(level)
            )
        } else {
            format!(
                "the load generator was saturated at {}: the client, not the server, was the limit; the probe does not count",
                by.show(level)
            )
        });
    }
    let mut checks = capacity::judge(r, &s.objectives);
    let mut note = None;
    match r.state() {
        RunState::Partial => {
            return Err(format!("the probe at {} was interrupted", by.show(level)))
        }
        // Stopped by the circuit breaker or a runaway queue: the level
        // clearly does not hold. First: the binding objective is the first
        // failing one after it, when there is one.
        RunState::Aborted => {
            note.clone_from(&r.status_reason);
            checks.insert(0, failed_check("held"));
        }
        RunState::Complete => {}
    }
    if by == By::Rate {
        if let Some(why) = r.under_delivery_note(None) {
            note.get_or_insert(format!("the offered rate was not taken: {why}"));
            checks.insert(0, failed_check("delivered"));
        }
    }
    Ok((checks, note))
}

/// Longest probe the request sizing asks for.
const MAX_PROBE: Duration = Duration::from_secs(300);

/// How long to measure for `needed` requests at `rate` a second (a tenth
/// more for luck), within [`MAX_PROBE`].
fn probe_for(needed: u64, rate: f64) -> Duration {
    if !(rate.is_finite() && rate > 0.0) {
        return Duration::ZERO;
    }
    // Whole tenths of a second: a length people can read.
    let secs = (needed as f64 * 1.1 / rate).min(MAX_PROBE.as_secs_f64());
    Duration::from_millis(((secs * 10.0).ceil() * 100.0) as u64)
}

/// Probes measured again when other work on the machine, not the generator
/// itself, starved it (a shared CI runner, a neighbour's build): a busy
/// moment passes, an overloaded generator does not.
pub(super) const BUSY_RETRIES: u32 = 2;

/// A check that failed outside the objectives (the run did not hold).
fn failed_check(what: &str) -> SloCheck {
    SloCheck {
        metric: what.into(),
        limit: 1.0,
        estimate: Some(0.0),
        low: None,
        high: None,
        decision: Decision::Fail,
    }
}

/// The most workflows in flight of an open-loop probe: the scenario's own
/// cap, or the most users.
fn open_cap(base: &LoadSpec) -> u32 {
    base.shape
        .as_ref()
        .filter(|sh| sh.model == Model::Open)
        .map_or(crate::scenario::caps::MAX_USERS, |sh| sh.max_in_flight)
}

/// The load of one probe: the level held from the start (a warm-up, then
/// `measure`), with the scenario's think time, finish and seed, stopped
/// early if its queue runs away.
fn probe_load(base: &LoadSpec, by: By, level: f64, warmup_s: f64, measure: Duration) -> LoadSpec {
    let warmup = Duration::from_secs_f64(warmup_s);
    let total = warmup + measure;
    let mut load = LoadSpec {
        warmup,
        seed: base.seed,
        think_time: base.think_time,
        finish: base.finish,
        stop_runaway: true,
        ..LoadSpec::fixed(level.round() as u32, total)
    };
    if by == By::Rate {
        let hold = |duration| Stage {
            name: None,
            duration,
            target: level,
        };
        load.set_shape(Shape {
            model: Model::Open,
            stages: vec![hold(Duration::ZERO), hold(total)],
            arrival: base
                .shape
                .as_ref()
                .filter(|sh| sh.model == Model::Open)
                .map_or(Arrival::Poisson, |sh| sh.arrival),
            max_in_flight: open_cap(base),
        });
    }
    load
}

fn describe(checks: &[SloCheck], decision: Decision) -> String {
    let num = |v: Option<f64>| {
        v.map_or("-".to_string(), |x| {
            if x.is_infinite() {
                "∞".into()
            } else {
                format!("{x:.3}")
            }
        })
    };
    let parts: Vec<String> = checks
        .iter()
        .map(|c| {
            format!(
                "{} {} [{}, {}] vs {}",
                c.metric,
                num(c.estimate),
                num(c.low),
                num(c.high),
                c.limit
            )
        })
        .collect();
    format!(
        "{} ({})",
        crate::render::capacity::decision_word(decision),
        parts.join("; ")
    )
}

/// `compare` of two capacity results: one line, the verdict, exit 1 on a regression.
pub(super) fn compare(s: &CompareCapacitySettings) -> anyhow::Result<Outcome> {
    let v = capacity::compare(&s.baseline, &s.current, s.margin).map_err(|m| {
        UserError::Environment {
            message: m,
            hint: None,
        }
    })?;
    if let Some(p) = &s.out {
        crate::jsonfile::write(p, &v, "capacity verdict")?;
        eprintln!("verdict written to {}", p.display());
    }
    crate::output::out(&verdict_line(&v));
    Ok(if v.verdict == Status::Fail {
        Outcome::Regression
    } else {
        Outcome::Success
    })
}

/// `gate` against a baseline capacity: repeat its search, write the
/// capacity, the verdict and the report, then the job summary, the
/// annotation and the sticky comment (which never change the exit code).
pub(super) async fn gate(
    args: &GateSettings,
    c: &CapacityGate,
    env: &ActionsEnv,
    out: &mut impl std::io::Write,
) -> anyhow::Result<Outcome> {
    let (signals, kill) = signal_tokens();
    let found = search(&c.search, &signals, &mut Live::new(&signals, &kill)).await?;
    crate::jsonfile::write(&args.result, &found, "capacity result")?;
    eprintln!("capacity written to {}", args.result.display());
    if env.active {
        actions::endgroup(out);
    }
    if let Some(why) = &found.stopped {
        return Err(stopped_early(why, &args.result).into());
    }
    let v =
        capacity::compare(&c.baseline, &found, c.margin).map_err(|m| UserError::Environment {
            message: m,
            hint: None,
        })?;
    crate::jsonfile::write(&args.verdict_out, &v, "capacity verdict")?;
    let mut markdown = crate::render::capacity::markdown(&found, Some(&v));
    if let Some(p) = &args.html_out {
        let html = crate::render::report::html(
            &crate::render::report::Templates::load(None)?,
            &crate::render::html::capacity_page(&found, Some(&v)),
        )?;
        crate::error::write_atomic(p, html.as_bytes())?;
        eprintln!("HTML report in {}", p.display());
        if let Some(link) = super::github::html_link(env, p) {
            markdown.push_str(&format!("\n📊 {link}\n"));
        }
    }
    crate::error::write_atomic(&args.report_out, markdown.as_bytes())?;
    eprintln!(
        "verdict in {}, report in {}",
        args.verdict_out.display(),
        args.report_out.display()
    );
    crate::output::out(&crate::render::capacity::text(&found));
    crate::output::out(&verdict_line(&v));
    let findings: Vec<super::github::Finding> = match v.verdict {
        Status::Fail => vec![("error", "flora-gate: capacity".into(), v.headline.clone())],
        Status::Warn => vec![("warning", "flora-gate: capacity".into(), v.headline.clone())],
        _ => Vec::new(),
    };
    let url = super::github::publish(args, env, &signals, &findings, &markdown, out).await;
    Ok(super::github::finish(args, env, v.verdict, url, out))
}

fn verdict_line(v: &capacity::CapacityVerdict) -> String {
    format!(
        "flora-gate: {} — {} (margin {:.0}%)\n",
        v.verdict.to_string().to_uppercase(),
        v.headline,
        v.margin * 100.0
    )
}

/// `report` of a capacity: Markdown (with the verdict against a baseline
/// capacity when one is given), text, or JSON (the verdict, or the file).
pub(super) fn report(s: &ReportCapacitySettings) -> anyhow::Result<Outcome> {
    use crate::render::report::Format;
    let verdict = s
        .baseline
        .as_ref()
        .map(|(b, margin)| capacity::compare(b, &s.current, *margin))
        .transpose()
        .map_err(|m| UserError::Environment {
            message: m,
            hint: None,
        })?;
    let text = match s.format {
        Format::Markdown => crate::render::capacity::markdown(&s.current, verdict.as_ref()),
        Format::Html => crate::render::report::html(
            &crate::render::report::Templates::load(None)?,
            &crate::render::html::capacity_page(&s.current, verdict.as_ref()),
        )?,
        Format::Text => {
            let mut t = crate::render::capacity::text(&s.current);
            if let Some(v) = &verdict {
                t.push_str(&verdict_line(v));
            }
            t
        }
        Format::Json => match &verdict {
            Some(v) => serde_json::to_string_pretty(v)?,
            None => serde_json::to_string_pretty(&s.current)?,
        },
    };
    match &s.out {
        Some(p) => {
            crate::error::write_atomic(p, text.as_bytes())?;
            eprintln!("report written to {}", p.display());
        }
        None => crate::output::out(&text),
    }
    Ok(Outcome::Success)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::engine::Plan;
    use crate::result::invented::{invented_result, Invented};
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};

    /// A server of 16 slots serving 1.5 s requests (100 ms to the first of
    /// 64 tokens 22.5 ms apart): beyond 16 users a request waits, on
    /// average (N − 16)/16 of a service time, uniformly between none and
    /// twice that. Each probe is invented from the plan's level and length.
    struct Queue {
        rng: SmallRng,
        /// Probes given so far, as (users, measured seconds, requests).
        seen: Vec<(u32, f64, u64)>,
        /// The first probe at this many users is starved by the machine.
        starve_at: Option<u32>,
    }

    const SERVICE_MS: f64 = 100.0 + 63.0 * 22.5;

    impl Prober for Queue {
        async fn probe(&mut self, plan: &Plan) -> Result<RunResult, UserError> {
            let users = plan.load.concurrency;
            let secs = plan
                .load
                .duration
                .expect("a probe has a length")
                .as_secs_f64();
            let mean_wait = (f64::from(users) - 16.0).max(0.0) / 16.0 * SERVICE_MS;
            let cycle_s = (SERVICE_MS + mean_wait) / 1000.0;
            let n = (f64::from(users) * secs / cycle_s).floor() as usize;
            let rng = &mut self.rng;
            let draws: Vec<Invented> = (0..n)
                .map(|_| Invented {
                    ttft_ms: 100.0 + 2.0 * mean_wait * rng.random::<f64>(),
                    tpot_ms: 22.5,
                    tokens: 64,
                    failed: false,
                })
                .collect();
            let mut r = invented_result(&plan.scenario, users, secs, n, |i| draws[i].clone());
            if self.starve_at == Some(users) {
                self.starve_at = None;
                r.self_check.saturated = true;
                r.self_check.cause = Some("machine".into());
            }
            self.seen.push((users, secs, r.totals.requests));
            Ok(r)
        }
    }

    fn settings() -> CapacitySettings {
        let sc = crate::scenario::Scenario::load("openai-chat", &[]).expect("bundled");
        let load = sc.load.clone();
        CapacitySettings {
            plan: Plan {
                drain: Duration::from_secs(1),
                ..Plan::new(
                    Arc::new(sc),
                    crate::target::Target::parse(
                        "http://127.0.0.1:9",
                        crate::target::Source { name: "--target" },
                    )
                    .expect("a URL"),
                    Arc::new(crate::tokens::generated(64)),
                    load,
                )
            },
            objectives: vec![Objective {
                metric: "ttft_p90".into(),
                limit: 1000.0,
            }],
            search: crate::result::capacity::SearchSettings {
                by: By::Users,
                start: 8.0,
                max: 64.0,
                tolerance: 0.1,
                probe_s: 4.0,
                warmup_s: 1.0,
                max_extensions: 2,
            },
            out: "capacity.json".into(),
            report_out: None,
        }
    }

    #[tokio::test]
    async fn default_probes_find_the_knee_of_slow_requests_sized_by_requests() {
        for seed in 1..=5 {
            let mut queue = Queue {
                rng: SmallRng::seed_from_u64(seed),
                seen: Vec::new(),
                starve_at: None,
            };
            let found = search(&settings(), &CancellationToken::new(), &mut queue)
                .await
                .expect("searched");
            // p90 of the wait is 1.8× its mean: TTFT p90 ≤ 1,000 ms while
            // (N − 16)/16 · 1,517.5 · 1.8 ≤ 900, up to N ≈ 21.3 users.
            let c = found.capacity.c_star.expect("a capacity");
            assert!(
                (19.0..=22.0).contains(&c),
                "seed {seed}: C* {c}: {:?}",
                queue.seen
            );
            let fail = found.capacity.first_fail.expect("a failing level");
            assert!(
                fail > c && fail <= (c * 1.1).ceil() + 1.0,
                "seed {seed}: {c} {fail}"
            );
            assert!(found.stopped.is_none(), "{:?}", found.stopped);
            // Probes after the first are sized by requests: a level that
            // holds is shown to hold at its first length (the p90 bound's
            // count of requests), never extended for want of them; only
            // the first probe, sized in seconds, may be.
            let needed = slo::requests_needed(&settings().objectives[0], capacity::Z);
            for p in found.probes.iter().skip(1) {
                assert_eq!(
                    p.extensions, 0,
                    "seed {seed}: {} extended: {:?}",
                    p.level, queue.seen
                );
            }
            for p in found.probes.iter().filter(|p| p.decision == Decision::Pass) {
                assert!(
                    p.requests >= needed,
                    "seed {seed}: {} passed on {} requests",
                    p.level,
                    p.requests
                );
            }
            // Never a lower level for want of evidence: every passing level
            // is at most C*, every failing one above it.
            for p in &found.probes {
                match p.decision {
                    Decision::Pass => assert!(p.level <= c, "{:?}", p.level),
                    Decision::Fail => assert!(p.level > c, "{:?}", p.level),
                    Decision::Inconclusive => panic!("undecided probe at {}", p.level),
                }
            }
        }
    }

    #[tokio::test]
    async fn a_probe_the_machine_starved_is_measured_again() {
        let mut queue = Queue {
            rng: SmallRng::seed_from_u64(9),
            seen: Vec::new(),
            starve_at: Some(16),
        };
        let found = search(&settings(), &CancellationToken::new(), &mut queue)
            .await
            .expect("searched");
        let at_16 = queue.seen.iter().filter(|(u, _, _)| *u == 16).count();
        assert_eq!(at_16, 2, "{:?}", queue.seen);
        assert!(found.stopped.is_none(), "{:?}", found.stopped);
        assert!(found.capacity.c_star.is_some());
    }
}
