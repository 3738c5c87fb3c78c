//! One virtual user: loops the workflow until told to stop.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::SeedableRng;
use reqwest::header::HeaderValue;
use tokio::time::Instant;

use super::recorder::Recorder;
use super::request::{execute, Outcome, Prepared};
use super::sample::{ErrorClass, IterationSample, Sample};
use super::schedule::UserStart;
use super::Shared;
use crate::scenario::shape::draw_workflow;
use crate::scenario::{AuthKind, Finish, Scenario, TemplateContext};
use crate::tokens::UserToken;

/// A closed-loop user: loops workflows while its spans last; a writer
/// whose books are written at once runs one lane per stream.
pub(super) async fn run_user(shared: Arc<Shared>, start: UserStart) -> Recorder {
    let users = lanes(&shared, start.vu, start.token.as_ref());
    // A writer counts as one user while its spans last: its first lane counts it.
    let runs = users
        .into_iter()
        .enumerate()
        .map(|(l, u)| run_lane(shared.clone(), &start, u, l == 0));
    let mut rec = Recorder::new(shared.scenario.steps.len());
    for r in futures_util::future::join_all(runs).await {
        rec.absorb(r);
    }
    rec
}

/// The users a writer is: one, or one per lane of `books_parallel`
/// (lane `l` writes books `l`, `l + lanes`, …), sharing its token.
fn lanes(shared: &Arc<Shared>, vu: u32, token: Option<&UserToken>) -> Vec<User> {
    let sc = &shared.scenario;
    let (books, lanes) = (
        sc.books_per_user.max(1),
        sc.books_parallel.clamp(1, sc.books_per_user.max(1)),
    );
    let writer = (lanes > 1).then(|| Arc::new(AtomicU32::new(0)));
    (0..lanes)
        .map(|l| {
            let mut u = User::new(shared.clone(), vu, token.cloned());
            u.books = (l..books).step_by(lanes as usize).collect();
            if lanes > 1 {
                u.reseed(l);
            }
            u.writer.clone_from(&writer);
            u
        })
        .collect()
}

async fn run_lane(
    shared: Arc<Shared>,
    start: &UserStart,
    mut user: User,
    counts: bool,
) -> Recorder {
    'spans: for span in &start.spans {
        if !span.start.is_zero() && !user.pause_until(shared.t0 + span.start, None).await {
            break;
        }
        let end = span.end.map(|e| shared.t0 + e);
        let _active = counts.then(|| Active::new(&shared.live.users));
        while !shared.stop.is_cancelled() && end.is_none_or(|e| Instant::now() < e) {
            if user.iterate(end).await == Flow::Abandoned {
                break 'spans;
            }
            if !user.rest(end).await {
                break;
            }
        }
    }
    user.finish()
}

/// An open-loop arrival: one workflow iteration by a fresh user (its
/// books at once in lanes, as a closed-loop writer's).
pub(super) async fn run_arrival(shared: Arc<Shared>, n: u64, token: Option<UserToken>) -> Recorder {
    // Arrival numbers past u32 wrap: they only seed draws and name requests.
    let users = lanes(&shared, n as u32, token.as_ref());
    let _active = Active::new(&shared.live.users);
    let runs = users.into_iter().map(|mut u| async move {
        u.open = true;
        u.iterate(None).await;
        u.finish()
    });
    let mut rec = Recorder::new(shared.scenario.steps.len());
    for r in futures_util::future::join_all(runs).await {
        rec.absorb(r);
    }
    rec
}

/// The open loop's back-off: an arrival is a fresh user with no failures
/// of its own, so the failures and `Retry-After` of all arrivals are
/// pooled here, and the dispatcher starts none until the wait is over.
#[derive(Debug, Default)]
pub(super) struct OpenHold {
    failures: AtomicU32,
    /// Microseconds after the run's start before which nothing is sent.
    until_us: AtomicU64,
}

impl OpenHold {
    /// Hold arrivals for `wait` from `now` (since the run's start).
    fn fail(&self, now: Duration, wait: Duration) -> u32 {
        let until = (now + wait).as_micros().min(u128::from(u64::MAX)) as u64;
        self.until_us.fetch_max(until, Ordering::Relaxed);
        self.failures
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1)
    }

    fn succeed(&self) {
        self.failures.store(0, Ordering::Relaxed);
    }

    /// Whether an arrival due at `now` (since the run's start) is held back.
    pub(super) fn holding(&self, now: Duration) -> bool {
        (now.as_micros() as u64) < self.until_us.load(Ordering::Relaxed)
    }
}

/// Counts a user as active while it lives.
struct Active<'a>(&'a std::sync::atomic::AtomicU64);

impl<'a> Active<'a> {
    fn new(n: &'a std::sync::atomic::AtomicU64) -> Self {
        n.fetch_add(1, Ordering::Relaxed);
        Active(n)
    }
}

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One request to send: its step, its book (of `books`), the user's
/// iteration, its drawn lengths, and when it is cut.
pub(super) struct OneRequest {
    pub(super) step: usize,
    pub(super) book: usize,
    pub(super) books: u32,
    pub(super) iteration: u64,
    pub(super) drawn: Option<crate::scenario::lengths::Drawn>,
    pub(super) cut_at: Option<Instant>,
}

/// How an iteration ended.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Flow {
    /// Go on.
    Next,
    /// A request was cut at the end: the user is done.
    Abandoned,
}

/// One virtual user's state across its iterations.
pub(super) struct User {
    shared: Arc<Shared>,
    vu: u32,
    user: Option<UserToken>,
    user_id: String,
    auth_value: Option<HeaderValue>,
    /// Data draws.
    rng: SmallRng,
    /// Workflow and think-time draws: their own generator, so adding a mix
    /// or a think time does not change which data a user sends.
    mix: SmallRng,
    /// Back-off jitter: its own generator, so the data a user draws does
    /// not depend on how often the target failed.
    jitter: SmallRng,
    /// Prompt and output lengths: their own generator too.
    lengths: SmallRng,
    pub(super) iteration: u64,
    consecutive_failures: u32,
    /// An open-loop arrival: its back-off is the dispatcher's ([`OpenHold`]).
    pub(super) open: bool,
    server_wait: Option<Duration>,
    /// Gaps between content chunks, per step, flushed to the shared
    /// histograms in batches so users hold no histogram of their own.
    gaps: Vec<Vec<u32>>,
    discard: Vec<u32>,
    rec: Recorder,
    /// Per book: the `append_text` variables carried across iterations.
    stories: Vec<BTreeMap<String, String>>,
    /// The books (from 0) this user writes, in turn each iteration.
    books: Vec<u32>,
    /// The writer's streams in flight, shared by its lanes.
    writer: Option<Arc<AtomicU32>>,
}

impl User {
    pub(super) fn new(shared: Arc<Shared>, vu: u32, user: Option<UserToken>) -> Self {
        let sc = &shared.scenario;
        let auth_value = match (&sc.auth.kind, &user) {
            (AuthKind::Bearer, Some(u)) => {
                // An empty scheme sends the token alone (`x-api-key: …`).
                let value = if sc.auth.scheme.trim().is_empty() {
                    u.token.expose().to_string()
                } else {
                    format!("{} {}", sc.auth.scheme, u.token.expose())
                };
                let mut v = HeaderValue::from_str(&value).ok();
                if let Some(v) = v.as_mut() {
                    v.set_sensitive(true);
                }
                v
            }
            _ => None,
        };
        let user_id = user
            .as_ref()
            .map_or_else(|| format!("user-{vu}"), |u| u.user_id.clone());
        let seed = sc_seed(shared.seed, vu);
        User {
            vu,
            user,
            user_id,
            auth_value,
            rng: SmallRng::seed_from_u64(seed),
            mix: SmallRng::seed_from_u64(seed ^ 0x3A7C_41D0),
            jitter: SmallRng::seed_from_u64(seed ^ 0xB0FF),
            lengths: SmallRng::seed_from_u64(seed ^ 0x1E46_7A55),
            iteration: 0,
            consecutive_failures: 0,
            open: false,
            server_wait: None,
            gaps: vec![Vec::new(); sc.steps.len()],
            discard: Vec::new(),
            rec: Recorder::new(sc.steps.len()),
            stories: Vec::new(),
            books: (0..sc.books_per_user.max(1)).collect(),
            writer: None,
            shared,
        }
    }

    /// Lane `lane`'s own draws: its books get data and lengths of their own.
    fn reseed(&mut self, lane: u32) {
        let seed =
            sc_seed(self.shared.seed, self.vu) ^ crate::scenario::lengths::mix(u64::from(lane) + 1);
        self.rng = SmallRng::seed_from_u64(seed);
        self.mix = SmallRng::seed_from_u64(seed ^ 0x3A7C_41D0);
        self.jitter = SmallRng::seed_from_u64(seed ^ 0xB0FF);
        self.lengths = SmallRng::seed_from_u64(seed ^ 0x1E46_7A55);
    }

    /// Whether a new request may start: the run goes on and, unless the
    /// scenario finishes whole workflows, the user's span has not ended.
    fn may_send(&self, end: Option<Instant>, first: bool) -> bool {
        let finishing_workflow = !first && self.shared.finish == Finish::Workflow;
        let stopped = self.shared.stop.is_cancelled() && !self.shared.signalled.is_cancelled();
        if self.shared.signalled.is_cancelled() || (stopped && !finishing_workflow) {
            return false;
        }
        finishing_workflow || end.is_none_or(|e| Instant::now() < e)
    }

    /// One context per book the user writes: ids and captured text are
    /// kept per book and never crossed.
    fn book_contexts(&mut self, sc: &Scenario, iteration: u64) -> Vec<TemplateContext> {
        self.books
            .clone()
            .into_iter()
            .map(|b| {
                let mut ctx = TemplateContext::new(
                    sc,
                    self.vu,
                    &self.user_id,
                    iteration,
                    sc.data.sample(&mut self.rng),
                );
                ctx.set("book", serde_json::json!(b + 1));
                if let Some(stories) = self.stories.get(b as usize) {
                    for (var, text) in stories {
                        ctx.set(var, serde_json::Value::String(text.clone()));
                    }
                }
                ctx
            })
            .collect()
    }

    /// A fresh context of this user's, with data drawn from `rng`.
    pub(super) fn context(
        &self,
        sc: &Scenario,
        iteration: u64,
        rng: &mut impl rand::Rng,
    ) -> TemplateContext {
        TemplateContext::new(sc, self.vu, &self.user_id, iteration, sc.data.sample(rng))
    }

    /// Append a step's text to book `b`'s story (`append_text`), within the
    /// cap, and show the story to the book's next steps.
    fn grow_story(
        &mut self,
        b: usize,
        var: &str,
        text: &str,
        cap: usize,
        ctx: &mut TemplateContext,
    ) {
        if self.stories.len() <= b {
            self.stories.resize_with(b + 1, BTreeMap::new);
        }
        let story = self.stories[b].entry(var.to_string()).or_default();
        append_capped(story, text, cap);
        ctx.set(var, serde_json::Value::String(story.clone()));
    }

    /// A step's think time, cut at the user's end unless it finishes its
    /// workflow.
    async fn think(&mut self, think: &crate::scenario::Think, end: Option<Instant>) {
        if think.is_none() {
            return;
        }
        let wait = think.draw(&mut self.mix);
        let limit = if self.shared.finish == Finish::Workflow {
            None
        } else {
            end
        };
        self.pause_until(Instant::now() + wait, limit).await;
    }

    /// One workflow iteration, drawn from the mix.
    async fn iterate(&mut self, end: Option<Instant>) -> Flow {
        let shared = self.shared.clone();
        let sc = &shared.scenario;
        self.iteration += 1;
        let iteration = self.iteration;
        let wf = draw_workflow(&sc.workflows, &mut self.mix);
        let workflow = &sc.workflows[wf];
        // One context per book the user writes: ids and captured text
        // are kept per book and never crossed.
        let books = sc.books_per_user.max(1);
        let mine = self.books.clone();
        let mut ctxs = self.book_contexts(sc, iteration);
        // A request still open this long after its user was retired is cut.
        let cut_at = end.map(|e| e + shared.drain);
        let iter_start = shared.t0.elapsed();
        let mut iter_ok = true;
        let mut completed_steps = 0;
        let mut cut_short = false;
        let mut flow = Flow::Next;
        // Each step of the workflow for every book in turn.
        let turns = workflow
            .steps
            .iter()
            .flat_map(|&i| (0..mine.len()).map(move |c| (i, c)));
        for (k, (i, c)) in turns.enumerate() {
            let b = mine[c] as usize;
            let step = &sc.steps[i];
            if !self.may_send(end, k == 0) || !shared.claim_request() {
                cut_short = true;
                break;
            }
            let drawn = self.draw_lengths(i, b, iteration);
            let req = OneRequest {
                step: i,
                book: b,
                books,
                iteration,
                drawn,
                cut_at,
            };
            let (sent, failed) = self.one_request(req, &mut ctxs[c]).await;
            flow = sent;
            completed_steps += 1;
            if flow == Flow::Abandoned || failed {
                // A failed request (an abandoned one too) fails the workflow.
                iter_ok = false;
                break;
            }
            self.consecutive_failures = 0;
            if self.open {
                shared.open_hold.succeed();
            }
            self.think(&step.think_time, end).await;
        }
        // An iteration the stop cut in half is neither a success nor a failure.
        if completed_steps > 0 && (!cut_short || !iter_ok) {
            let end = shared.t0.elapsed();
            shared.spill.iteration(&IterationSample {
                vu: self.vu,
                workflow: u16::try_from(wf).unwrap_or(u16::MAX),
                iteration,
                start: iter_start,
                duration: end.saturating_sub(iter_start),
                ok: iter_ok && completed_steps == workflow.steps.len() * mine.len(),
                warmup: iter_start < shared.warmup,
            });
        }
        flow
    }

    /// Send one request and record it: its outputs go to `ctx` (and the
    /// book's story), a failure to the back-off. Returns how the send
    /// ended and whether the request failed.
    pub(super) async fn one_request(
        &mut self,
        req: OneRequest,
        ctx: &mut TemplateContext,
    ) -> (Flow, bool) {
        let shared = self.shared.clone();
        let sc = &shared.scenario;
        let OneRequest {
            step: i,
            book: b,
            books,
            iteration,
            drawn,
            cut_at,
        } = req;
        let step = &sc.steps[i];
        let start = shared.t0.elapsed();
        let warmup = start < shared.warmup;
        let step_no = u16::try_from(i).unwrap_or(u16::MAX);
        let mut request_id = super::sample::request_id(self.vu, iteration, step_no);
        if books > 1 {
            request_id = format!("{request_id}-b{}", b + 1);
        }
        // First or repeated as sent, not as answered.
        let asked = self.asked(drawn.as_ref(), b, books);
        ctx.set_drawn(drawn);
        let gaps_before = self.gaps[i].len();
        let (outcome, flow) = self.send(i, ctx, start, warmup, &request_id, cut_at).await;
        shared
            .live
            .gaps(i, self.gaps[i].get(gaps_before..).unwrap_or_default());
        self.discard.clear();
        if self.gaps[i].len() >= 4096 {
            shared.flush_gaps(i, &mut self.gaps[i]);
        }
        let mut sample = outcome.sample(step_no, self.vu, iteration, start, warmup);
        sample.asked = asked;
        let mut failed = sample.error;
        if failed.is_none() {
            failed = apply_outputs(step, &outcome, ctx);
        }
        if let (None, Some(var), Some(text)) = (failed, &step.append_text, &outcome.text) {
            self.grow_story(b, var, text, sc.story_cap, ctx);
        }
        shared.live.record(&sample, failed, warmup);
        shared.spill.sample(&Sample {
            error: failed,
            ..sample
        });
        if flow == Flow::Abandoned {
            return (flow, true);
        }
        if let Some(class) = failed {
            self.failed(step_no, class, &outcome, request_id, warmup);
            return (flow, true);
        }
        (flow, false)
    }

    /// Step `i`'s drawn lengths for book `b` (none when it draws none);
    /// a calibration run sends its known lengths instead.
    fn draw_lengths(
        &mut self,
        i: usize,
        b: usize,
        iteration: u64,
    ) -> Option<crate::scenario::lengths::Drawn> {
        let sc = &self.shared.scenario;
        let step = &sc.steps[i];
        let lengths = step.lengths.as_ref()?;
        let probe = sc
            .calibrating
            .then(|| crate::scenario::lengths::PROBE_CHARS[(iteration % 2) as usize]);
        let book = crate::scenario::lengths::mix(u64::from(self.vu) << 8 | b as u64);
        Some(lengths.draw(step.calibration, &sc.data, &mut self.lengths, book, probe))
    }

    /// What a request asked, for its record.
    fn asked(
        &self,
        drawn: Option<&crate::scenario::lengths::Drawn>,
        b: usize,
        books: u32,
    ) -> super::sample::Asked {
        use super::sample::PrefixUse;
        let mut asked = super::sample::Asked {
            book: if books > 1 {
                u8::try_from(b + 1).unwrap_or(u8::MAX)
            } else {
                0
            },
            ..Default::default()
        };
        if let Some(d) = drawn {
            asked.prompt_chars = d.prompt_chars;
            asked.max_tokens = d.max_tokens.unwrap_or(0);
            asked.prefix_key = d.prefix.unwrap_or(0);
            asked.prefix_chars = d.prefix_chars;
            asked.prefix = match d.prefix {
                None => PrefixUse::None,
                Some(k) if self.shared.first_use_of_prefix(k) => PrefixUse::First,
                Some(_) => PrefixUse::Repeated,
            };
        }
        asked
    }

    /// Render step `i` and send it; a request still open at `cut_at` (or
    /// at the hard stop) is cut and counted as abandoned.
    async fn send(
        &mut self,
        i: usize,
        ctx: &TemplateContext,
        start: Duration,
        warmup: bool,
        request_id: &str,
        cut_at: Option<Instant>,
    ) -> (Outcome, Flow) {
        let shared = self.shared.clone();
        let sc = &shared.scenario;
        let step = &sc.steps[i];
        let rendered = sc.render(&step.path_template, ctx).and_then(|p| {
            step.body_template
                .as_ref()
                .map(|b| sc.render(b, ctx))
                .transpose()
                .map(|b| (p, b))
        });
        let rendered = rendered.ok().and_then(|(path, body)| {
            // A path that would leave the target's origin is never sent.
            shared.target.join(&path).ok().map(|url| (url, body))
        });
        let Some((url, body)) = rendered else {
            let o = Outcome {
                error: Some(ErrorClass::Template),
                ..Outcome::default()
            };
            return (o, Flow::Next);
        };
        let req = Prepared {
            step,
            url,
            body,
            auth: self
                .auth_value
                .clone()
                .map(|v| (sc.auth.header.as_str(), v)),
            request_id: request_id.to_string(),
            traceparent: super::sample::traceparent(&super::sample::trace_id(
                shared.trace_salt,
                self.vu,
                self.iteration,
                u16::try_from(i).unwrap_or(u16::MAX),
                start,
            )),
        };
        let sink = if warmup {
            &mut self.discard
        } else {
            &mut self.gaps[i]
        };
        let cut = async {
            match cut_at {
                Some(c) => tokio::time::sleep_until(c).await,
                None => std::future::pending().await,
            }
        };
        // The gaps of a request that is cut are not kept.
        let kept = sink.len();
        shared.live.in_flight.fetch_add(1, Ordering::Relaxed);
        if let Some(w) = &self.writer {
            let now = w.fetch_add(1, Ordering::Relaxed) + 1;
            shared
                .writer_streams_max
                .fetch_max(u64::from(now), Ordering::Relaxed);
        }
        let sent = tokio::select! {
            biased;
            o = execute(&shared.client, req, &sc.timeouts, sc.safety.max_response_bytes, &mut *sink) => (o, Flow::Next),
            () = shared.hard_stop.cancelled() => (abandoned(&shared, start), Flow::Abandoned),
            () = cut => (abandoned(&shared, start), Flow::Abandoned),
        };
        shared.live.in_flight.fetch_sub(1, Ordering::Relaxed);
        if let Some(w) = &self.writer {
            w.fetch_sub(1, Ordering::Relaxed);
        }
        if sent.1 == Flow::Abandoned {
            sink.truncate(kept);
        }
        sent
    }

    /// After a failed request: keep an example of its class (credentials
    /// redacted), count the failure for the back-off, note `Retry-After`.
    fn failed(
        &mut self,
        step_no: u16,
        class: ErrorClass,
        outcome: &Outcome,
        request_id: String,
        warmup: bool,
    ) {
        if !warmup && self.rec.wants_example(step_no, class) {
            let body = outcome.error_body.as_deref().map(|b| match &self.user {
                Some(u) => u.token.redact_from(b),
                None => crate::target::redact_userinfo(b),
            });
            self.rec.examples.push(super::sample::ErrorExample {
                step: step_no,
                class,
                status: outcome.status,
                body,
                request_id,
            });
        }
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        let sc = &self.shared.scenario;
        self.server_wait = outcome
            .retry_after
            .filter(|_| sc.safety.honor_retry_after)
            .map(|w| w.min(crate::scenario::MAX_RETRY_AFTER));
        if self.open {
            let hold = &self.shared.open_hold;
            let n = hold.failures.load(Ordering::Relaxed).saturating_add(1);
            let wait =
                backoff(&sc.safety, n, &mut self.jitter).max(self.server_wait.unwrap_or_default());
            hold.fail(self.shared.t0.elapsed(), wait);
        }
    }

    /// Between iterations: back off after failures (at least as long as the
    /// server asked), then think. False when the span or the run ended.
    async fn rest(&mut self, end: Option<Instant>) -> bool {
        let sc = &self.shared.scenario;
        let mut wait = Duration::ZERO;
        if self.consecutive_failures > 0 {
            // A failing target must not turn into a hot loop.
            wait = backoff(&sc.safety, self.consecutive_failures, &mut self.jitter)
                .max(self.server_wait.take().unwrap_or_default());
        }
        wait += self.shared.think_time.draw(&mut self.mix);
        if wait.is_zero() {
            return true;
        }
        self.pause_until(Instant::now() + wait, end).await
    }

    /// Sleep until `until`, or less when the span ends or the run stops;
    /// true when the whole pause was slept.
    async fn pause_until(&self, until: Instant, end: Option<Instant>) -> bool {
        let cut = end.is_some_and(|e| e < until);
        let wake = end.map_or(until, |e| e.min(until));
        tokio::select! {
            () = tokio::time::sleep_until(wake) => !cut,
            () = self.shared.stop.cancelled() => false,
        }
    }

    pub(super) fn finish(mut self) -> Recorder {
        for (i, g) in self.gaps.iter_mut().enumerate() {
            self.shared.flush_gaps(i, g);
        }
        self.rec
    }
}

/// A request still open when its user was stopped: counted, never dropped.
fn abandoned(shared: &Shared, start: Duration) -> Outcome {
    Outcome {
        error: Some(ErrorClass::Abandoned),
        stream_end: shared.t0.elapsed().saturating_sub(start),
        ..Outcome::default()
    }
}

/// Store extracted variables and captured text; a missing variable fails the request.
fn apply_outputs(
    step: &crate::scenario::Step,
    outcome: &Outcome,
    ctx: &mut TemplateContext,
) -> Option<ErrorClass> {
    for (var, ptr) in &step.extract {
        match outcome.json.as_ref().and_then(|j| j.pointer(ptr)) {
            Some(v) if !v.is_null() => ctx.set(var, v.clone()),
            _ => return Some(ErrorClass::Extract),
        }
    }
    if let (Some(var), Some(text)) = (&step.capture_text, &outcome.text) {
        ctx.set(var, serde_json::Value::String(text.clone()));
    }
    None
}

/// Exponential back-off with "equal jitter": after the n-th consecutive
/// failure, between half and all of `base · 2^(n-1)`, capped at `max`.
fn backoff(safety: &crate::scenario::Safety, failures: u32, rng: &mut SmallRng) -> Duration {
    use rand::Rng;
    if safety.backoff.is_zero() {
        return Duration::ZERO;
    }
    let full = safety
        .backoff
        .saturating_mul(1u32 << failures.saturating_sub(1).min(20))
        .min(safety.backoff_max);
    let half = full / 2;
    half + half.mul_f64(rng.random::<f64>())
}

/// `story` + `more`, keeping its latest `cap` characters.
fn append_capped(story: &mut String, more: &str, cap: usize) {
    story.push_str(more);
    let n = story.chars().count();
    if n > cap {
        let cut = story
            .char_indices()
            .nth(n - cap)
            .map_or(story.len(), |(i, _)| i);
        story.drain(..cut);
    }
}

fn sc_seed(seed: u64, vu: u32) -> u64 {
    seed ^ u64::from(vu)
        .wrapping_add(1)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_story_keeps_its_latest_characters() {
        let mut s = String::new();
        append_capped(&mut s, "第一章。", 6);
        append_capped(&mut s, "第二章。", 6);
        assert_eq!(s, "章。第二章。");
        let mut t = "abc".to_string();
        append_capped(&mut t, "defgh", 4);
        assert_eq!(t, "efgh");
    }

    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap() {
        let safety = crate::scenario::Safety::default();
        let mut rng = SmallRng::seed_from_u64(7);
        for n in 1..40 {
            let full = (safety.backoff * (1u32 << (n - 1).min(20))).min(safety.backoff_max);
            let d = backoff(&safety, n, &mut rng);
            assert!(d >= full / 2 && d <= full, "{n}: {d:?} vs {full:?}");
        }
        let off = crate::scenario::Safety {
            backoff: Duration::ZERO,
            ..safety
        };
        assert_eq!(backoff(&off, 5, &mut rng), Duration::ZERO);
    }
}
