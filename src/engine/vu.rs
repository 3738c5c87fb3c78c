//! One virtual user: loops the workflow until told to stop.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::SeedableRng;
use reqwest::header::HeaderValue;
use tokio::time::Instant;

use super::request::{execute, Outcome, Prepared};
use super::sample::{ErrorClass, IterationSample, Recorder, Sample};
use super::schedule::UserStart;
use super::Shared;
use crate::scenario::{AuthKind, TemplateContext};

/// Run one user until `stop`; returns what it recorded.
pub(super) async fn run_user(shared: Arc<Shared>, start: UserStart) -> Recorder {
    let UserStart {
        vu,
        at,
        token: user,
    } = start;
    let sc = &shared.scenario;
    let mut rec = Recorder::new(sc.steps.len());
    // Gaps between content chunks, per step, flushed to the shared
    // histograms in batches so users hold no histogram of their own.
    let mut gaps: Vec<Vec<u32>> = vec![Vec::new(); sc.steps.len()];
    let mut discard: Vec<u32> = Vec::new();
    if !at.is_zero() {
        pause(&shared, at).await;
    }
    let mut rng = SmallRng::seed_from_u64(sc_seed(shared.seed, vu));
    let auth_value = match (&sc.auth.kind, &user) {
        (AuthKind::Bearer, Some(u)) => {
            let mut v =
                HeaderValue::from_str(&format!("{} {}", sc.auth.scheme, u.token.expose())).ok();
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
    let mut iteration: u64 = 0;
    // Back-off after failures: its own generator, so the data a user draws
    // does not depend on how often the target failed.
    let mut jitter = SmallRng::seed_from_u64(sc_seed(shared.seed, vu) ^ 0xB0FF);
    let mut consecutive_failures: u32 = 0;
    let mut server_wait: Option<Duration> = None;

    let mut abandoned = false;
    'iterations: while !shared.stop.is_cancelled() {
        iteration += 1;
        let mut ctx = TemplateContext::new(sc, vu, &user_id, iteration, sc.data.sample(&mut rng));
        let iter_start = shared.t0.elapsed();
        let mut iter_ok = true;
        let mut completed_steps = 0;
        let mut cut_short = false;
        for (i, step) in sc.steps.iter().enumerate() {
            if shared.stop.is_cancelled() || !shared.claim_request() {
                cut_short = true;
                break;
            }
            let start = shared.t0.elapsed();
            let warmup = start < shared.warmup;
            let rendered = sc.render(&step.path_template, &ctx).and_then(|p| {
                step.body_template
                    .as_ref()
                    .map(|b| sc.render(b, &ctx))
                    .transpose()
                    .map(|b| (p, b))
            });
            let rendered = rendered.ok().and_then(|(path, body)| {
                // A path that would leave the target's origin is never sent.
                crate::target::join(&shared.target, &shared.base_url, &path)
                    .ok()
                    .map(|url| (url, body))
            });
            let outcome = match rendered {
                None => Outcome {
                    error: Some(ErrorClass::Template),
                    ..Outcome::default()
                },
                Some((url, body)) => {
                    let req = Prepared {
                        step,
                        url,
                        body,
                        auth: auth_value.clone().map(|v| (sc.auth.header.as_str(), v)),
                        request_id: super::sample::request_id(
                            vu,
                            iteration,
                            u16::try_from(i).unwrap_or(u16::MAX),
                        ),
                    };
                    let sink = if warmup { &mut discard } else { &mut gaps[i] };
                    tokio::select! {
                        o = execute(&shared.client, req, &sc.timeouts, sc.safety.max_response_bytes, sink) => o,
                        () = shared.hard_stop.cancelled() => {
                            // Still open when the run ended: counted, never dropped.
                            abandoned = true;
                            Outcome {
                                error: Some(ErrorClass::Abandoned),
                                stream_end: shared.t0.elapsed().saturating_sub(start),
                                ..Outcome::default()
                            }
                        }
                    }
                }
            };
            completed_steps += 1;
            discard.clear();
            if gaps[i].len() >= 4096 {
                shared.flush_gaps(i, &mut gaps[i]);
            }
            let sample = Sample {
                step: u16::try_from(i).unwrap_or(u16::MAX),
                vu,
                iteration,
                start,
                ttfb: outcome.ttfb,
                first_event: outcome.first_event,
                ttft: outcome.ttft,
                e2e: outcome.e2e,
                stream_end: outcome.stream_end,
                usage_tokens: outcome.usage_tokens,
                chunks: outcome.chunks,
                status: outcome.status,
                error: outcome.error,
                warmup,
            };
            shared.live.requests.fetch_add(1, Ordering::Relaxed);
            shared
                .live
                .tokens
                .fetch_add(sample.output_tokens(), Ordering::Relaxed);
            let mut failed = sample.error;
            if failed.is_none() {
                if let Some(err) = apply_outputs(step, &outcome, &mut ctx) {
                    failed = Some(err);
                }
            }
            rec.samples.push(Sample {
                error: failed,
                ..sample
            });
            if abandoned {
                shared.live.errors.fetch_add(1, Ordering::Relaxed);
                break 'iterations;
            }
            if let Some(class) = failed {
                let step_no = u16::try_from(i).unwrap_or(u16::MAX);
                if !warmup && rec.wants_example(step_no, class) {
                    rec.examples.push(super::sample::ErrorExample {
                        step: step_no,
                        class,
                        status: outcome.status,
                        body: outcome.error_body.as_deref().map(|b| match &user {
                            Some(u) => u.token.redact_from(b),
                            None => crate::target::redact_userinfo(b),
                        }),
                        request_id: super::sample::request_id(
                            vu,
                            iteration,
                            u16::try_from(i).unwrap_or(u16::MAX),
                        ),
                    });
                }
                shared.live.errors.fetch_add(1, Ordering::Relaxed);
                iter_ok = false;
                consecutive_failures = consecutive_failures.saturating_add(1);
                server_wait = outcome
                    .retry_after
                    .filter(|_| sc.safety.honor_retry_after)
                    .map(|w| w.min(crate::scenario::MAX_RETRY_AFTER));
                break;
            }
            consecutive_failures = 0;
            if !step.think_time.is_zero() {
                pause(&shared, step.think_time).await;
            }
        }
        // An iteration the stop cut in half is neither a success nor a failure.
        if completed_steps > 0 && (!cut_short || !iter_ok) {
            let end = shared.t0.elapsed();
            rec.iterations.push(IterationSample {
                vu,
                iteration,
                start: iter_start,
                duration: end.saturating_sub(iter_start),
                ok: iter_ok && completed_steps == sc.steps.len(),
                warmup: iter_start < shared.warmup,
            });
        }
        if consecutive_failures > 0 {
            // A failing target must not turn into a hot loop: back off, and
            // wait at least as long as the server asked.
            let wait = backoff(&sc.safety, consecutive_failures, &mut jitter)
                .max(server_wait.take().unwrap_or_default());
            if !wait.is_zero() {
                pause(&shared, wait).await;
            }
        }
        if !shared.think_time.is_zero() {
            pause(&shared, shared.think_time).await;
        }
    }
    for (i, g) in gaps.iter_mut().enumerate() {
        shared.flush_gaps(i, g);
    }
    rec
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

async fn pause(shared: &Shared, d: Duration) {
    tokio::select! {
        () = tokio::time::sleep_until(Instant::now() + d) => {}
        () = shared.stop.cancelled() => {}
    }
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

fn sc_seed(seed: u64, vu: u32) -> u64 {
    seed ^ u64::from(vu)
        .wrapping_add(1)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

#[cfg(test)]
mod tests {
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
