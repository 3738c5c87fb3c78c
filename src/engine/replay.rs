//! `run --replay`: a trace sent open-loop at its own times. The dispatcher
//! reads the trace a line at a time and hands each request, when due, to
//! its session's task; a session sends its requests in their order, one
//! at a time, so a request whose session is still busy waits (and is
//! counted as waiting for its session, not as the generator's lateness).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::SeedableRng;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::monitor::{absorb, arrive, held, reap, ArrivalStats, LATE_LIMIT};
use super::schedule::token;
use super::vu::{OneRequest, User};
use super::{Recorder, Shared};
use crate::scenario::lengths::{mix, prefix_text, to_chars, Drawn, Unit};
use crate::scenario::trace::{Replay, ReplayStats, TracePrefix, TraceRequest, MOONCAKE_BLOCK};
use crate::scenario::{Scenario, TemplateContext};
use crate::stats::LatencyHist;
use crate::tokens::UserToken;

/// Most requests in flight at once; past it a due request is missed.
pub const MAX_IN_FLIGHT: u64 = 10_000;

/// One request handed to its session.
struct Job {
    req: TraceRequest,
    due: Instant,
}

/// What the sessions measured.
#[derive(Default)]
struct Timing {
    lateness: LatencyHist,
    session_wait: LatencyHist,
    waited: u64,
    late_over: u64,
    started: u64,
}

/// Send `replay`'s requests as due until the stop; their records, and the
/// arrival figures in `stats`.
pub(super) async fn dispatch(
    shared: Arc<Shared>,
    replay: Arc<Replay>,
    tokens: Arc<Vec<UserToken>>,
    stats: Arc<Mutex<ArrivalStats>>,
) -> Recorder {
    let live = &shared.live;
    let timing = Arc::new(Mutex::new(Timing::default()));
    let mut st = ArrivalStats::default();
    let mut rec = Recorder::new(shared.scenario.steps.len());
    let mut set: JoinSet<Recorder> = JoinSet::new();
    let mut sessions: HashMap<String, mpsc::UnboundedSender<Job>> = HashMap::new();
    let requests = match replay.requests() {
        Ok(r) => r,
        Err(e) => {
            st.crashed = Some(format!("cannot read the trace again: {e}"));
            shared.stop.cancel();
            return finish(set, rec, st, &timing, &stats).await;
        }
    };
    for item in requests {
        let req = match item {
            Ok(r) => r,
            Err(m) => {
                st.crashed = Some(format!("the trace changed during the run ({m})"));
                shared.stop.cancel();
                break;
            }
        };
        let at = replay.due(req.t_ms);
        let due = shared.t0 + at;
        if !arrive(&shared, due, &mut st).await {
            break;
        }
        reap(&mut set, &mut rec, &mut st);
        if held(&shared, at, &mut st) {
            continue;
        }
        if live.in_flight.load(Ordering::Relaxed) >= MAX_IN_FLIGHT {
            st.missed_cap += 1;
            live.arrivals_missed.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let n = sessions.len() as u64;
        let tx = sessions.entry(req.session.clone()).or_insert_with(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            set.spawn(session(
                shared.clone(),
                n,
                token(&tokens, n),
                rx,
                timing.clone(),
            ));
            tx
        });
        // A session whose task ended (the stop) takes no more.
        let _ = tx.send(Job { req, due });
    }
    drop(sessions);
    finish(set, rec, st, &timing, &stats).await
}

/// Wait for the sessions, then put the figures together.
async fn finish(
    mut set: JoinSet<Recorder>,
    mut rec: Recorder,
    mut st: ArrivalStats,
    timing: &Mutex<Timing>,
    stats: &Mutex<ArrivalStats>,
) -> Recorder {
    while let Some(r) = set.join_next().await {
        absorb(r, &mut rec, &mut st);
    }
    if let Ok(t) = timing.lock() {
        st.started = t.started;
        // Due but never sent: still waiting for their session at the stop.
        st.missed_late = st
            .due
            .saturating_sub(st.started + st.missed_cap + st.missed_held);
        st.lateness = t.lateness.clone();
        st.replay = Some(ReplayStats {
            waited: t.waited,
            wait_p99_ms: t.session_wait.quantile_ms(0.99).filter(|v| v.is_finite()),
            late_over_200ms: t.late_over,
        });
    }
    if let Ok(mut s) = stats.lock() {
        *s = st;
    }
    rec
}

/// One session: its requests in order, each as soon as it is due and the
/// one before it has ended.
async fn session(
    shared: Arc<Shared>,
    n: u64,
    token: Option<UserToken>,
    mut rx: mpsc::UnboundedReceiver<Job>,
    timing: Arc<Mutex<Timing>>,
) -> Recorder {
    // Session numbers past u32 wrap: they only seed draws and name requests.
    let mut user = User::new(shared.clone(), n as u32, token);
    user.open = true;
    let mut books: HashMap<Option<String>, (usize, TemplateContext)> = HashMap::new();
    let mut rng = rand::rngs::SmallRng::seed_from_u64(mix(shared.seed ^ n));
    let mut previous_end: Option<Instant> = None;
    // Requests handed over were due before the end: the session sends
    // them in the drain too, unless a signal or the hard stop came.
    while let Some(job) = tokio::select! {
        j = rx.recv() => j,
        () = shared.signalled.cancelled() => None,
        () = shared.hard_stop.cancelled() => None,
    } {
        if shared.signalled.is_cancelled() || shared.hard_stop.is_cancelled() {
            break;
        }
        let now = Instant::now();
        let late = now.saturating_duration_since(job.due);
        if let Ok(mut t) = timing.lock() {
            t.started += 1;
            if previous_end.is_some_and(|e| e > job.due) {
                t.waited += 1;
                t.session_wait.record(late.max(Duration::from_micros(1)));
            } else {
                t.lateness.record(late.max(Duration::from_micros(1)));
                t.late_over += u64::from(late > LATE_LIMIT);
            }
        }
        shared.live.arrivals_started.fetch_add(1, Ordering::Relaxed);
        let sc = shared.scenario.clone();
        let count = books.len();
        let (b, ctx) = books.entry(job.req.book.clone()).or_insert_with(|| {
            let mut ctx = user.context(&sc, 1, &mut rng);
            ctx.set("book", serde_json::json!(count + 1));
            (count, ctx)
        });
        user.iteration += 1;
        let req = OneRequest {
            step: job.req.step,
            book: *b,
            books: 1,
            iteration: user.iteration,
            drawn: drawn(&sc, &job.req, &mut rng),
            cut_at: None,
        };
        user.one_request(req, ctx).await;
        previous_end = Some(Instant::now());
    }
    user.finish()
}

/// A traced request's prompt and `max_tokens`: its prefix (a named group,
/// or Mooncake's blocks) then fresh prose, as long as the trace says.
fn drawn(sc: &Scenario, r: &TraceRequest, rng: &mut impl rand::Rng) -> Option<Drawn> {
    if r.prompt.is_none() && r.output.is_none() {
        return None;
    }
    let Some(p) = r.prompt else {
        return Some(Drawn {
            max_tokens: r.output,
            ..Drawn::default()
        });
    };
    let chars = |n: u32, unit: Unit| to_chars(n, unit, sc.steps[r.step].calibration) as usize;
    let total = chars(p.n, p.unit);
    let prefix = match &r.prefix {
        Some(TracePrefix::Group { key, len }) => {
            Some((*key, prefix_text(*key, chars(len.n, len.unit), &sc.data)))
        }
        // As many whole blocks as the prompt holds, one text per hash id.
        Some(TracePrefix::Blocks(ids)) => {
            let block = chars(MOONCAKE_BLOCK, Unit::Tokens);
            let n = (total / block.max(1)).min(ids.len());
            let text: String = ids[..n]
                .iter()
                .map(|id| prefix_text(mix(*id ^ 0x3007), block, &sc.data))
                .collect();
            ids.first().map(|id| (mix(*id ^ 0x3007), text))
        }
        None => None,
    };
    let have = prefix.as_ref().map_or(0, |(_, t)| t.chars().count());
    Some(Drawn::prompt(
        prefix,
        total.saturating_sub(have),
        r.output,
        &sc.data,
        rng,
    ))
}
