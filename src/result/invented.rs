//! Results made from requests a test invents, with no server and no clock:
//! the statistics, fits and searches that judge results are tested on
//! these, so their tests hold on any machine. The requests go through the
//! same summary as a measured run's.

use std::sync::Arc;
use std::time::Duration;

use super::{build, RunResult};
use crate::engine::spill::{Samples, Spill};
use crate::engine::{
    ErrorClass, IterationSample, LoadTrace, Plan, Recorder, RunOutput, RunStatus, Sample, SelfCheck,
};
use crate::scenario::Scenario;
use crate::stats::LatencyHist;
use crate::target::{Source, Target};

/// One invented request: its TTFT and time per output token (ms), tokens,
/// and whether it failed.
#[derive(Debug, Clone)]
pub struct Invented {
    /// Time to first token, ms.
    pub ttft_ms: f64,
    /// Time per output token after the first, ms.
    pub tpot_ms: f64,
    /// Output tokens.
    pub tokens: u32,
    /// A failed request (HTTP 500, no content).
    pub failed: bool,
}

/// A result of `n` requests of `users` users spread evenly over `secs`,
/// each drawn by `draw(i)`, for the first step of `sc`.
pub fn invented_result(
    sc: &Scenario,
    users: u32,
    secs: f64,
    n: usize,
    mut draw: impl FnMut(usize) -> Invented,
) -> RunResult {
    let spill = Arc::new(Spill::create().expect("a temporary file for the invented records"));
    let mut itl = LatencyHist::new();
    for i in 0..n {
        let d = draw(i);
        let start = Duration::from_secs_f64(secs * i as f64 / n.max(1) as f64);
        let ttft = Duration::from_secs_f64(d.ttft_ms.max(0.0) / 1000.0);
        let gap = Duration::from_secs_f64(d.tpot_ms.max(0.0) / 1000.0);
        let gen = gap * d.tokens.saturating_sub(1);
        let vu = u32::try_from(i).unwrap_or(u32::MAX) % users.max(1);
        if !d.failed {
            for _ in 1..d.tokens {
                itl.record(gap);
            }
        }
        let ok = !d.failed;
        spill.sample(&Sample {
            step: 0,
            vu,
            iteration: i as u64,
            start,
            ttfb: Some(ttft / 2),
            first_event: ok.then_some(ttft),
            ttft: ok.then_some(ttft),
            e2e: ok.then_some(ttft + gen),
            stream_end: ttft + gen,
            usage_tokens: ok.then_some(u64::from(d.tokens)),
            chunks: if ok { d.tokens } else { 0 },
            sent_chars: 400,
            cancelled: false,
            prompt_tokens: None,
            resume: None,
            status: Some(if ok { 200 } else { 500 }),
            error: (!ok).then_some(ErrorClass::Status(500)),
            warmup: false,
            asked: crate::engine::sample::Asked::default(),
        });
        spill.iteration(&IterationSample {
            vu,
            workflow: 0,
            iteration: i as u64,
            start,
            duration: ttft + gen,
            ok,
            warmup: false,
        });
    }
    let mut recorder = Recorder::new(1);
    recorder.records = Samples::new(spill);
    recorder.itl = vec![itl];
    let mut load = sc.load.clone();
    load.concurrency = users;
    load.duration = Some(Duration::from_secs_f64(secs));
    load.requests = None;
    load.warmup = Duration::ZERO;
    let out = RunOutput {
        recorder,
        started_at: chrono::Utc::now(),
        elapsed: Duration::from_secs_f64(secs),
        status: RunStatus::Complete,
        self_check: SelfCheck::default(),
        active: None,
        trace: LoadTrace::default(),
        late: Duration::ZERO,
        clock_offset_ms: None,
        server: Vec::new(),
        endpoint: None,
        trace_salt: None,
    };
    let target =
        Target::parse("http://127.0.0.1:9", Source { name: "--target" }).expect("a loopback URL");
    let plan = Plan::new(Arc::new(sc.clone()), target, Arc::default(), load);
    build(&plan, &out).expect("invented records summarise")
}
