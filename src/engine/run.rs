//! One run from its plan to its raw output, phase by phase: the checks
//! before any request, the shared state, the tasks beside the users (server
//! scrapes, the load monitor, the live endpoint, the breakers), the stop,
//! the drain, and what is gathered at the end.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{
    breaker, live, load_client, monitor, runaway, schedule, scrape, selfcheck, spill, vu,
    wait_for_start, watch_recording, ArrivalStats, LoadTrace, Plan, Recorder, RunOutput, RunStatus,
    Shared, StageLoad, WindowLoad,
};
use crate::error::UserError;
use crate::scenario::Scenario;

/// [`super::run`] without the up-front checks, for a caller that made them
/// once (a duet slot whose target went down mid-run is measured as errors,
/// not refused).
pub async fn run_checked(
    plan: Plan,
    signals: CancellationToken,
    kill: CancellationToken,
) -> Result<RunOutput, UserError> {
    let sc = plan.scenario.clone();
    check_resources(&plan)?;
    let client = match &plan.client {
        Some(c) => c.clone(),
        None => load_client(&sc, plan.load.concurrency, plan.ca_cert.as_deref())?,
    };
    let late = match plan.start_at {
        Some(at) => wait_for_start(at, plan.load.duration, &signals).await?,
        None => Duration::ZERO,
    };
    if !late.is_zero() {
        eprintln!(
            "started {} after the agreed start: joining the plan at its place",
            humantime::format_duration(Duration::from_millis(late.as_millis() as u64))
        );
    }
    // The run's clock starts at the agreed start, even when that is past.
    let started_at = plan
        .start_at
        .map_or_else(chrono::Utc::now, chrono::DateTime::<chrono::Utc>::from);
    let t0 = Instant::now()
        .checked_sub(late)
        .unwrap_or_else(Instant::now);
    let cpu_start = CpuStart::now();
    let shared = shared(&plan, client, t0, late, &signals)?;

    let lag_stop = CancellationToken::new();
    let lag_task = tokio::spawn(selfcheck::watch_lag(lag_stop.clone(), plan.load.warmup));
    let (mut users, arrivals, open) = start_users(&plan, &shared);
    let beside = Beside::start(&plan, &shared).await?;

    // The stop: deadline, request budget (users cancel `stop` themselves),
    // or a signal. A request-count run still ends within the longest run
    // allowed.
    let deadline = t0
        + plan
            .load
            .duration
            .unwrap_or(crate::scenario::caps::MAX_DURATION);
    let mut interrupted = None;
    tokio::select! {
        () = tokio::time::sleep_until(deadline) => {}
        () = shared.stop.cancelled() => {}
        () = signals.cancelled() => interrupted = Some("interrupted by a signal".to_string()),
    }
    shared.stop.cancel();

    let mut ended = drain(&mut users, &shared, plan.drain, &kill, sc.steps.len()).await;
    if let Some(why) = ended.interrupted.take() {
        interrupted = Some(why);
    }
    let elapsed = t0.elapsed();
    lag_stop.cancel();
    let arrivals = open.then(|| arrivals.lock().map(|a| a.clone()).unwrap_or_default());
    if let Some(c) = arrivals.as_ref().and_then(|a| a.crashed.clone()) {
        ended
            .crashed
            .get_or_insert(format!("{c}; the run is not trustworthy"));
    }
    let gathered = beside.stop().await;
    let lag = lag_task.await.unwrap_or_default();
    let (cpu, host) = cpu_start.since();
    let recorder = recorded(&shared, ended.recorder, &mut interrupted);
    let mut notes = plan.notes.clone();
    notes.extend(ended.drained);
    let self_check = selfcheck::assess(&lag, cpu, host, elapsed, notes);
    Ok(RunOutput {
        recorder,
        started_at,
        elapsed,
        status: match (gathered.tripped.or(ended.crashed), interrupted) {
            (Some(reason), _) => RunStatus::Aborted(reason),
            (None, Some(reason)) => RunStatus::Partial(reason),
            (None, None) => RunStatus::Complete,
        },
        self_check,
        active: None,
        trace: LoadTrace {
            window: plan.load.window,
            windows: gathered.windows,
            stages: gathered.stages,
            writer_streams_max: shared
                .writer_streams_max
                .load(std::sync::atomic::Ordering::Relaxed),
            replay: arrivals.as_ref().and_then(|a| a.replay.clone()),
            arrivals,
        },
        late,
        clock_offset_ms: None,
        server: gathered.server,
        endpoint: gathered.endpoint,
        trace_salt: Some(shared.trace_salt),
    })
}

/// The process's CPU seconds and the host's busy and total ticks when the
/// run began, for the self-check.
struct CpuStart {
    process: Option<f64>,
    host: Option<(u64, u64)>,
}

impl CpuStart {
    fn now() -> CpuStart {
        CpuStart {
            process: selfcheck::process_cpu_seconds(),
            host: selfcheck::host_cpu_ticks(),
        }
    }

    /// CPU seconds this process used since, and the host's busy share.
    fn since(&self) -> (Option<f64>, Option<f64>) {
        let cpu = match (self.process, selfcheck::process_cpu_seconds()) {
            (Some(a), Some(b)) => Some(b - a),
            _ => None,
        };
        let host = match (self.host, selfcheck::host_cpu_ticks()) {
            (Some((b0, t0)), Some((b1, t1))) if t1 > t0 => {
                Some(b1.saturating_sub(b0) as f64 / (t1 - t0) as f64)
            }
            _ => None,
        };
        (cpu, host)
    }
}

/// What the users recorded, with the pooled gaps. The records stay on disk;
/// summaries read them pass by pass. A failed write stopped the run: what
/// reached the disk is kept, and `interrupted` says what was lost.
fn recorded(
    shared: &Shared,
    mut recorder: super::Recorder,
    interrupted: &mut Option<String>,
) -> super::Recorder {
    recorder.itl = shared
        .itl
        .iter()
        .map(|m| m.lock().map(|h| h.clone()).unwrap_or_default())
        .collect();
    if let Some(e) = shared.spill.failure() {
        let (requests, iterations) = shared.spill.lost();
        *interrupted = Some(format!(
            "recording failed ({e}) in {}: sending stopped; {requests} requests and {iterations} workflow iterations finished after that are not in the result",
            std::env::temp_dir().display()
        ));
    }
    recorder.records = spill::Samples::new(shared.spill.clone());
    recorder
}

/// The labels of the live endpoint's series.
fn live_labels(plan: &Plan) -> live::LiveLabels {
    let stages = plan.load.shape.as_ref().map_or_else(Vec::new, |s| {
        s.stages
            .iter()
            .enumerate()
            .map(|(i, st)| st.label(i))
            .collect()
    });
    live::LiveLabels::new(&plan.scenario.name, &plan.target, stages)
}

/// Enough file descriptors for the users and everything beside them, and a
/// warning when the record files may not fit in the temporary directory.
fn check_resources(plan: &Plan) -> Result<(), UserError> {
    let others = plan.server_metrics.len() as u64
        + plan
            .metrics_listen
            .map_or(0, |_| live::MAX_CONNECTIONS as u64);
    super::limits::check(
        u64::from(plan.load.concurrency),
        others,
        super::limits::raise_fd_limit(),
    )?;
    if let Some(d) = plan.load.duration {
        // About one request a second per user in flight: a streamed answer
        // lasts seconds, a JSON step less.
        let expected = u64::from(plan.load.concurrency).saturating_mul(d.as_secs().max(1));
        let tmp = std::env::temp_dir();
        if let Some(w) =
            super::limits::space_warning(&tmp, expected, super::limits::free_bytes(&tmp))
        {
            crate::output::err_line(&w);
        }
    }
    Ok(())
}

/// The state every user and task of the run shares.
fn shared(
    plan: &Plan,
    client: super::wire::Client,
    t0: Instant,
    late: Duration,
    signals: &CancellationToken,
) -> Result<Arc<Shared>, UserError> {
    let sc: &Arc<Scenario> = &plan.scenario;
    Ok(Arc::new(Shared {
        scenario: sc.clone(),
        client,
        target: plan.target.clone(),
        trace_salt: super::sample::trace_salt(),
        t0,
        warmup: plan.load.warmup,
        think_time: plan.load.think_time,
        seed: plan.load.seed,
        shard: plan.load.shard,
        late,
        finish: plan.load.finish,
        drain: plan.drain,
        stop: CancellationToken::new(),
        hard_stop: CancellationToken::new(),
        signalled: signals.clone(),
        requests_left: plan.load.requests.map(AtomicU64::new),
        live: live::Live::new(&sc.steps, &live_labels(plan))
            .exposed(plan.metrics_listen.is_some() || plan.metrics_push.is_some()),
        open_hold: vu::OpenHold::default(),
        spill: spill::Spill::create()
            .map(Arc::new)
            .map_err(|e| UserError::Environment {
                message: format!(
                    "cannot create the run's record file in {}: {e}",
                    std::env::temp_dir().display()
                ),
                hint: Some("set TMPDIR to a writable directory".into()),
            })?,
        itl: sc
            .steps
            .iter()
            .map(|_| Mutex::new(crate::stats::LatencyHist::new()))
            .collect(),
        prefixes: Mutex::default(),
        writer_streams_max: AtomicU64::new(0),
    }))
}

/// Users (or arrivals) started as the load plan says: the tasks, the
/// arrival figures of an open loop, and whether it is one.
fn start_users(
    plan: &Plan,
    shared: &Arc<Shared>,
) -> (JoinSet<Recorder>, Arc<Mutex<ArrivalStats>>, bool) {
    let mut users = JoinSet::new();
    let arrivals = Arc::new(Mutex::new(ArrivalStats::default()));
    let open = match schedule::Schedule::of(&plan.load, &plan.tokens) {
        schedule::Schedule::Closed(starts) => {
            for start in starts {
                users.spawn(vu::run_user(shared.clone(), start));
            }
            false
        }
        schedule::Schedule::Open(shape) => {
            users.spawn(monitor::dispatch(
                shared.clone(),
                shape,
                plan.tokens.clone(),
                arrivals.clone(),
            ));
            true
        }
        schedule::Schedule::Replay(replay) => {
            users.spawn(super::replay::dispatch(
                shared.clone(),
                replay,
                plan.tokens.clone(),
                arrivals.clone(),
            ));
            true
        }
    };
    (users, arrivals, open)
}

/// How the users ended.
struct Ended {
    recorder: Recorder,
    /// A user task that vanished: the run is not trustworthy.
    crashed: Option<String>,
    /// Requests the drain gave up on (errors of class `abandoned`).
    drained: Option<String>,
    /// A second signal stopped the drain.
    interrupted: Option<String>,
}

/// Let in-flight requests finish within the grace period, gathering what
/// every user recorded; past it (or on a second signal) the rest are cut.
async fn drain(
    users: &mut JoinSet<Recorder>,
    shared: &Shared,
    grace: Duration,
    kill: &CancellationToken,
    steps: usize,
) -> Ended {
    let mut ended = Ended {
        recorder: Recorder::new(steps),
        crashed: None,
        drained: None,
        interrupted: None,
    };
    let hard_stop = &shared.hard_stop;
    let deadline = Instant::now() + grace;
    loop {
        tokio::select! {
            joined = users.join_next() => match joined {
                Some(Ok(r)) => ended.recorder.absorb(r),
                Some(Err(e)) => {
                    // A user task must never vanish silently: the run fails
                    // loudly, with what the others measured kept.
                    ended.crashed.get_or_insert_with(|| format!("a virtual user crashed ({e}); the run is not trustworthy"));
                    shared.stop.cancel();
                }
                None => break,
            },
            () = tokio::time::sleep_until(deadline), if !hard_stop.is_cancelled() => {
                hard_stop.cancel();
                // The schedule ran to its end: requests the server left
                // hanging are its errors (class `abandoned`), not a run
                // the tool failed to make.
                ended.drained = Some(format!(
                    "requests still in flight {} after the end were abandoned (class `abandoned`, counted as errors)",
                    humantime::format_duration(grace)
                ));
            }
            () = kill.cancelled(), if !hard_stop.is_cancelled() => {
                hard_stop.cancel();
                ended.interrupted = Some("stopped at once by a second signal".to_string());
            }
        }
    }
    ended
}

/// The tasks that run beside the users: server scrapes, the load monitor,
/// the live endpoint, the progress line, and the watchers that may stop the
/// run (breaker, runaway queue, a failed record write).
struct Beside {
    scrape_stop: CancellationToken,
    scrapes: Vec<(JoinHandle<()>, Arc<Mutex<scrape::Scraped>>)>,
    monitor_stop: CancellationToken,
    monitor: JoinHandle<(Vec<WindowLoad>, Vec<StageLoad>)>,
    metrics: Option<JoinHandle<()>>,
    progress: Option<JoinHandle<()>>,
    watchers: Vec<JoinHandle<()>>,
    tripped: Arc<Mutex<Option<String>>>,
    /// How long the live endpoint stays after the run.
    linger: Duration,
    /// The remote-write pusher and its stop.
    push: Option<(CancellationToken, JoinHandle<super::push::Pushed>)>,
}

/// What the tasks beside the users gathered.
struct Gathered {
    windows: Vec<WindowLoad>,
    stages: Vec<StageLoad>,
    server: Vec<scrape::Scraped>,
    /// Why a watcher stopped the run, if one did.
    tripped: Option<String>,
    /// The live endpoint, lingering.
    endpoint: Option<live::Lingering>,
}

impl Beside {
    async fn start(plan: &Plan, shared: &Arc<Shared>) -> Result<Self, UserError> {
        let sc = &plan.scenario;
        // Each endpoint on its own task and client, stopped with the run.
        let scrape_stop = CancellationToken::new();
        let mut scrapes = Vec::new();
        for target in &plan.server_metrics {
            let into = Arc::new(Mutex::new(scrape::Scraped {
                url: target.url.clone(),
                ..scrape::Scraped::default()
            }));
            let scraper = super::client(sc, 2, plan.ca_cert.as_deref())?;
            let task = tokio::spawn(scrape::run(
                scraper,
                target.clone(),
                shared.t0,
                scrape_stop.clone(),
                into.clone(),
            ));
            scrapes.push((task, into));
        }
        let monitor_stop = CancellationToken::new();
        let monitor = tokio::spawn(monitor::watch(
            shared.clone(),
            plan.load.clone(),
            monitor_stop.clone(),
        ));
        let metrics = match plan.metrics_listen {
            Some(addr) => Some(live::serve(shared.clone(), addr).await?),
            None => None,
        };
        let progress = plan
            .progress
            .then(|| tokio::spawn(super::progress_line(shared.clone(), plan.load.clone())));
        let tripped = Arc::new(Mutex::new(None));
        let mut watchers = vec![tokio::spawn(watch_recording(shared.clone()))];
        if plan.load.stop_runaway {
            watchers.push(tokio::spawn(runaway::watch(
                shared.clone(),
                tripped.clone(),
            )));
        }
        if let Some(limit) = sc.safety.abort_error_rate {
            watchers.push(tokio::spawn(breaker(
                shared.clone(),
                limit,
                sc.safety.abort_window,
                sc.safety.abort_min_requests,
                tripped.clone(),
            )));
        }
        let push = match &plan.metrics_push {
            Some(target) => {
                let stop = CancellationToken::new();
                let client = super::client(sc, 2, plan.ca_cert.as_deref())?;
                let live = shared.clone();
                let exposition = move || {
                    let lag = live.live.lag_us.load(std::sync::atomic::Ordering::Relaxed);
                    live.live
                        .prometheus(if lag > 100_000 { "lagging" } else { "ok" })
                };
                let task = tokio::spawn(super::push::run(
                    client,
                    target.clone(),
                    exposition,
                    stop.clone(),
                ));
                Some((stop, task))
            }
            None => None,
        };
        Ok(Beside {
            push,
            linger: plan.metrics_linger,
            scrape_stop,
            scrapes,
            monitor_stop,
            monitor,
            metrics,
            progress,
            watchers,
            tripped,
        })
    }

    /// Stop every task and gather what they hold.
    async fn stop(self) -> Gathered {
        self.monitor_stop.cancel();
        let (windows, stages) = self.monitor.await.unwrap_or_default();
        // The final figures go out once more before anything stops.
        if let Some((stop, task)) = self.push {
            stop.cancel();
            if let Ok(p) = task.await {
                if p.failures > 0 {
                    eprintln!(
                        "warning: {} of {} metrics pushes failed (last: {})",
                        p.failures,
                        p.pushes,
                        p.last_error.as_deref().unwrap_or("unknown")
                    );
                }
            }
        }
        // The live endpoint stays with the final figures when asked to.
        let endpoint = match self.metrics {
            Some(m) if !self.linger.is_zero() => Some(live::Lingering::new(m, self.linger)),
            Some(m) => {
                m.abort();
                None
            }
            None => None,
        };
        for task in self.watchers {
            task.abort();
        }
        self.scrape_stop.cancel();
        let mut server = Vec::with_capacity(self.scrapes.len());
        for (task, into) in self.scrapes {
            let _ = task.await;
            server.push(into.lock().map(|s| s.clone()).unwrap_or_default());
        }
        if let Some(p) = self.progress {
            p.abort();
            eprint!("\r\x1b[2K");
        }
        Gathered {
            windows,
            stages,
            server,
            tripped: self.tripped.lock().ok().and_then(|t| t.clone()),
            endpoint,
        }
    }
}
