//! Time-resolved load figures: per window of the run, the load intended and
//! achieved, open-loop arrivals due, started and missed, and the
//! generator's own lag, CPU and memory. And the open-loop dispatcher that
//! starts arrivals on time or counts them as missed.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::schedule::{intended_at, token, Arrivals};
use super::{Recorder, Shared};
use crate::scenario::{LoadSpec, Shape};
use crate::stats::LatencyHist;
use crate::tokens::UserToken;

/// An arrival that cannot start within this of its due time is missed, not
/// sent late in a burst.
pub const LATE_LIMIT: Duration = Duration::from_millis(200);

/// How often the monitor samples.
const TICK: Duration = Duration::from_millis(100);

/// One window's load figures.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct WindowLoad {
    /// Mean intended load: users (closed) or starts per second (open).
    pub intended: f64,
    /// Mean users (or open-loop workflows) active.
    pub users: f64,
    /// Mean requests in flight.
    pub in_flight: f64,
    /// Open loop: arrivals due in the window.
    #[serde(default)]
    pub arrivals_due: u64,
    /// Open loop: arrivals started.
    #[serde(default)]
    pub arrivals_started: u64,
    /// Open loop: arrivals missed (cap reached or late).
    #[serde(default)]
    pub arrivals_missed: u64,
    /// Worst lag of the generator's event loop, ms.
    pub lag_max_ms: f64,
    /// The generator's CPU use, in cores.
    pub cpu_cores: Option<f64>,
    /// The generator's resident memory at the window's end, MiB.
    pub rss_mib: Option<f64>,
}

/// What the open-loop dispatcher did.
#[derive(Debug, Clone, Default)]
pub struct ArrivalStats {
    /// Arrivals due before the stop.
    pub due: u64,
    /// Started within [`LATE_LIMIT`] of their time.
    pub started: u64,
    /// Not started: the in-flight cap was reached.
    pub missed_cap: u64,
    /// Not started: the dispatcher was too late.
    pub missed_late: u64,
    /// Not started: held back while the target asked to wait
    /// (`Retry-After`) or kept failing.
    pub missed_held: u64,
    /// How late started arrivals were.
    pub lateness: LatencyHist,
    /// A workflow task that panicked.
    pub crashed: Option<String>,
    /// A replay's own figures.
    pub replay: Option<crate::scenario::trace::ReplayStats>,
}

/// One stage's load, intended and achieved.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StageLoad {
    /// Mean intended load: users (closed) or starts per second (open).
    pub intended: f64,
    /// Mean users (or open-loop workflows) active.
    pub users: f64,
    /// Open loop: arrivals due, started and missed in the stage.
    pub arrivals: (u64, u64, u64),
    ticks: u64,
}

impl StageLoad {
    /// Add another generator's figures for the same stage (a merge of shards).
    pub fn add(&mut self, intended: f64, users: f64, arrivals: (u64, u64, u64)) {
        self.intended += intended;
        self.users += users;
        self.arrivals.0 += arrivals.0;
        self.arrivals.1 += arrivals.1;
        self.arrivals.2 += arrivals.2;
    }
}

/// The load over time.
#[derive(Debug, Clone, Default)]
pub struct LoadTrace {
    /// Window length.
    pub window: Duration,
    /// One entry per window from the run's start.
    pub windows: Vec<WindowLoad>,
    /// One entry per stage of the shape.
    pub stages: Vec<StageLoad>,
    /// Open loop only.
    pub arrivals: Option<ArrivalStats>,
    /// The most streams one writer had at once (`books_parallel`; 0 otherwise).
    pub writer_streams_max: u64,
    /// A replay's own figures.
    pub replay: Option<crate::scenario::trace::ReplayStats>,
}

#[derive(Default)]
struct Acc {
    ticks: u32,
    intended: f64,
    users: f64,
    in_flight: f64,
    lag_max: Duration,
}

/// Sample the live counters until `stop`; one [`WindowLoad`] per window.
pub(super) async fn watch(
    shared: Arc<Shared>,
    load: LoadSpec,
    stop: tokio_util::sync::CancellationToken,
) -> (Vec<WindowLoad>, Vec<StageLoad>) {
    let window = load.window.max(Duration::from_secs(1));
    let bounds = load.shape.as_ref().map(Shape::bounds).unwrap_or_default();
    let mut stages = vec![StageLoad::default(); bounds.len()];
    let mut seen = (0u64, 0u64, 0u64);
    let live = &shared.live;
    let mut out = Vec::new();
    let mut acc = Acc::default();
    let mut index = 0u64;
    let mut cpu0 = super::selfcheck::process_cpu_seconds();
    let mut arrivals0 = (0, 0, 0);
    let mut lag_second = Duration::ZERO;
    let mut second = 0u64;
    let mut next = shared.t0 + TICK;
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(next) => {}
            () = stop.cancelled() => break,
        }
        let now = Instant::now();
        let lag = now.saturating_duration_since(next);
        next += TICK;
        if next < now {
            next = now + TICK;
        }
        let t = now.duration_since(shared.t0);
        let intended = intended_at(&load, t);
        let running = load.duration.is_none_or(|d| t < d);
        live.intended_milli
            .store((intended * 1000.0) as u64, Ordering::Relaxed);
        let stage = bounds
            .iter()
            .position(|(_, e)| t < *e)
            .map_or(bounds.len(), |i| i + 1);
        live.stage.store(stage as u64, Ordering::Relaxed);
        let now_arrivals = (
            live.arrivals_due.load(Ordering::Relaxed),
            live.arrivals_started.load(Ordering::Relaxed),
            live.arrivals_missed.load(Ordering::Relaxed),
        );
        if let Some(st) = stages.get_mut(stage.wrapping_sub(1)).filter(|_| running) {
            st.ticks += 1;
            st.intended += intended;
            st.users += live.users.load(Ordering::Relaxed) as f64;
            st.arrivals.0 += now_arrivals.0 - seen.0;
            st.arrivals.1 += now_arrivals.1 - seen.1;
            st.arrivals.2 += now_arrivals.2 - seen.2;
        }
        seen = now_arrivals;
        if t.as_secs() != second {
            second = t.as_secs();
            live.lag_us.store(
                u64::try_from(lag_second.as_micros()).unwrap_or(u64::MAX),
                Ordering::Relaxed,
            );
            lag_second = Duration::ZERO;
        }
        lag_second = lag_second.max(lag);
        let w = (t.as_nanos() / window.as_nanos()) as u64;
        if w != index {
            out.push(close(&mut acc, &mut cpu0, &mut arrivals0, live, window));
            // Windows nobody ticked in (a stalled loop) still exist, empty.
            while (out.len() as u64) < w {
                out.push(WindowLoad::default());
            }
            index = w;
        }
        acc.ticks += 1;
        acc.intended += intended;
        acc.users += live.users.load(Ordering::Relaxed) as f64;
        acc.in_flight += live.in_flight.load(Ordering::Relaxed) as f64;
        acc.lag_max = acc.lag_max.max(lag);
    }
    if acc.ticks > 0 {
        out.push(close(&mut acc, &mut cpu0, &mut arrivals0, live, window));
    }
    for st in &mut stages {
        let n = st.ticks.max(1) as f64;
        st.intended /= n;
        st.users /= n;
    }
    (out, stages)
}

fn close(
    acc: &mut Acc,
    cpu0: &mut Option<f64>,
    arrivals0: &mut (u64, u64, u64),
    live: &super::live::Live,
    window: Duration,
) -> WindowLoad {
    let n = f64::from(acc.ticks.max(1));
    let cpu1 = super::selfcheck::process_cpu_seconds();
    let cpu = match (*cpu0, cpu1) {
        (Some(a), Some(b)) => Some((b - a) / window.as_secs_f64()),
        _ => None,
    };
    *cpu0 = cpu1;
    let a1 = (
        live.arrivals_due.load(Ordering::Relaxed),
        live.arrivals_started.load(Ordering::Relaxed),
        live.arrivals_missed.load(Ordering::Relaxed),
    );
    let w = WindowLoad {
        intended: acc.intended / n,
        users: acc.users / n,
        in_flight: acc.in_flight / n,
        arrivals_due: a1.0 - arrivals0.0,
        arrivals_started: a1.1 - arrivals0.1,
        arrivals_missed: a1.2 - arrivals0.2,
        lag_max_ms: acc.lag_max.as_secs_f64() * 1000.0,
        cpu_cores: cpu,
        rss_mib: rss_mib(),
    };
    *arrivals0 = a1;
    *acc = Acc::default();
    w
}

/// Current resident memory in MiB, from `/proc/self/statm`.
pub fn rss_mib() -> Option<f64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: f64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096.0 / (1024.0 * 1024.0))
}

/// Start open-loop arrivals on time until the stop; returns what their
/// workflows recorded. Its figures go to `stats`.
pub(super) async fn dispatch(
    shared: Arc<Shared>,
    shape: Shape,
    tokens: Arc<Vec<UserToken>>,
    stats: Arc<Mutex<ArrivalStats>>,
) -> Recorder {
    let live = &shared.live;
    let shard = shared.shard;
    // A shard's share of the in-flight cap.
    let cap =
        u64::from(shape.max_in_flight).div_ceil(u64::from(shard.map_or(1, |s| s.count.max(1))));
    let mut st = ArrivalStats::default();
    let mut rec = Recorder::new(shared.scenario.steps.len());
    let mut set: JoinSet<Recorder> = JoinSet::new();
    let mine = Arrivals::new(&shape, shared.seed)
        .filter(|a| shard.is_none_or(|s| s.takes(a.n)))
        // A shard that started late joins at its place: what was due
        // before it ran is not its to send (its windows say so).
        .filter(|a| a.at >= shared.late);
    for a in mine {
        let due = shared.t0 + a.at;
        if !arrive(&shared, due, &mut st).await {
            break;
        }
        reap(&mut set, &mut rec, &mut st);
        let late = Instant::now().saturating_duration_since(due);
        if late > LATE_LIMIT {
            st.missed_late += 1;
            live.arrivals_missed.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        if held(&shared, a.at, &mut st) {
            continue;
        }
        if set.len() as u64 >= cap {
            st.missed_cap += 1;
            live.arrivals_missed.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        st.started += 1;
        live.arrivals_started.fetch_add(1, Ordering::Relaxed);
        st.lateness.record(late.max(Duration::from_micros(1)));
        set.spawn(super::vu::run_arrival(
            shared.clone(),
            a.n,
            token(&tokens, a.n),
        ));
    }
    // In-flight workflows finish (or are cut by the hard stop) on their own.
    while let Some(r) = set.join_next().await {
        absorb(r, &mut rec, &mut st);
    }
    if let Ok(mut s) = stats.lock() {
        *s = st;
    }
    rec
}

/// Wait until an arrival is `due` and count it; false when the run
/// stopped first.
pub(super) async fn arrive(shared: &Shared, due: Instant, st: &mut ArrivalStats) -> bool {
    tokio::select! {
        () = tokio::time::sleep_until(due) => {}
        () = shared.stop.cancelled() => return false,
    }
    st.due += 1;
    shared.live.arrivals_due.fetch_add(1, Ordering::Relaxed);
    true
}

/// Whether the open loop's hold (the target asked to wait, or kept
/// failing) keeps back an arrival due at `at`: then it is counted missed.
pub(super) fn held(shared: &Shared, at: Duration, st: &mut ArrivalStats) -> bool {
    let now = Instant::now().saturating_duration_since(shared.t0);
    if !shared.open_hold.holding(at.max(now)) {
        return false;
    }
    st.missed_held += 1;
    shared.live.arrivals_missed.fetch_add(1, Ordering::Relaxed);
    true
}

/// Gather the workflows (or sessions) that ended.
pub(super) fn reap(set: &mut JoinSet<Recorder>, rec: &mut Recorder, st: &mut ArrivalStats) {
    while let Some(r) = set.try_join_next() {
        absorb(r, rec, st);
    }
}

/// One ended task's records; a task that crashed is named.
pub(super) fn absorb(
    r: Result<Recorder, tokio::task::JoinError>,
    rec: &mut Recorder,
    st: &mut ArrivalStats,
) {
    match r {
        Ok(r) => rec.absorb(r),
        Err(e) => {
            st.crashed
                .get_or_insert_with(|| format!("a task of the run crashed ({e})"));
        }
    }
}
