//! `mock` and `demo`: the mock server's behaviour from its flags.

use super::*;

/// Validate mock settings.
// Long by design: one field per flag, each checked where it is set, in the
// struct's order.
pub fn mock_config(
    b: &MockBehaviour,
    tokens_file: Option<&std::path::Path>,
) -> Result<MockConfig, UserError> {
    let non_negative = |flag: &'static str, v: f64| {
        if v.is_finite() && v >= 0.0 {
            Ok(Duration::from_secs_f64(v / 1000.0))
        } else {
            Err(UserError::flag(
                flag,
                format!("`{v}` must be a number of milliseconds, 0 or more"),
            ))
        }
    };
    if !(b.slowdown.is_finite() && b.slowdown > 0.0) {
        return Err(UserError::flag(
            "--slowdown",
            "must be a positive factor, like 1.3",
        ));
    }
    let faults: FaultRates = b
        .error_rate
        .parse()
        .map_err(|m: String| UserError::flag("--error-rate", m))?;
    let tokens = match tokens_file {
        Some(p) => Some(
            tokens::load(p)?
                .into_iter()
                .map(|t| t.token.expose().to_string())
                .collect::<HashSet<_>>(),
        ),
        None => None,
    };
    Ok(MockConfig {
        ttft: non_negative("--ttft-ms", b.ttft_ms)?,
        itl: non_negative("--itl-ms", b.itl_ms)?,
        output_tokens: b.output_tokens,
        jitter: non_negative("--jitter-ms", b.jitter_ms)?,
        slowdown: b.slowdown,
        max_concurrency: (b.max_concurrency > 0).then_some(b.max_concurrency),
        faults,
        retry_after_s: b.retry_after,
        hang: Duration::from_secs(120),
        tokens,
        seed: b.seed,
        no_done: b.no_done,
        no_usage: b.no_usage,
        itl_per_stream: non_negative("--itl-per-stream-ms", b.itl_per_stream_ms)?,
        ttft_per_stream: non_negative("--ttft-per-stream-ms", b.ttft_per_stream_ms)?,
        rate_limit: match b.rate_limit {
            None => None,
            Some(r) if r.is_finite() && r > 0.0 => Some(r),
            Some(r) => {
                return Err(UserError::flag(
                    "--rate-limit",
                    format!("`{r}` must be a positive number of requests per second"),
                ))
            }
        },
        db_pool: match b.db_pool {
            Some(0) => {
                return Err(UserError::flag(
                    "--db-pool",
                    "a pool needs at least 1 connection",
                ))
            }
            other => other,
        },
        db_time: non_negative("--db-ms", b.db_ms)?,
        prefix_cache: b.prefix_cache,
        prefill_per_char: if b.prefix_cache && b.prefill_us_per_char == 0.0 {
            Duration::from_micros(50)
        } else if b.prefill_us_per_char.is_finite() && b.prefill_us_per_char >= 0.0 {
            Duration::from_secs_f64(b.prefill_us_per_char / 1e6)
        } else {
            return Err(UserError::flag(
                "--prefill-us-per-char",
                format!(
                    "`{}` must be a number of microseconds, 0 or more",
                    b.prefill_us_per_char
                ),
            ));
        },
        kv_slots: match b.kv_slots {
            Some(0) => {
                return Err(UserError::flag(
                    "--kv-slots",
                    "the cache needs room for at least 1 stream",
                ))
            }
            other => other,
        },
        preempt: non_negative("--preempt-ms", b.preempt_ms)?,
        ignore_disconnect: b.ignore_disconnect,
        event_ids: b.event_ids,
        resume_replays: b.resume_replays,
        drift_per_min: match &b.drift {
            None => 0.0,
            Some(d) => crate::mock::parse_drift(d).map_err(|m| UserError::flag("--drift", m))?,
        },
        burst: b
            .burst
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(|m: String| UserError::flag("--burst", m))?,
    })
}

pub(super) fn mock(a: &MockArgs) -> Result<MockSettings, UserError> {
    let ip: std::net::IpAddr = a
        .host
        .parse()
        .map_err(|_| UserError::flag("--host", format!("`{}` is not an IP address", a.host)))?;
    Ok(MockSettings {
        config: mock_config(&a.behaviour, a.tokens.as_deref())?,
        addr: SocketAddr::new(ip, a.port),
    })
}

pub(super) fn demo(a: &DemoArgs) -> Result<DemoSettings, UserError> {
    let duration = duration_flag("--duration", &a.duration)?;
    if duration < Duration::from_secs(2) {
        return Err(UserError::flag("--duration", "the demo needs at least 2s"));
    }
    if a.concurrency == 0 || a.concurrency > 256 {
        return Err(UserError::flag(
            "--concurrency",
            "the demo takes 1 to 256 users",
        ));
    }
    if !(a.slowdown.is_finite() && a.slowdown > 0.0) {
        return Err(UserError::flag(
            "--slowdown",
            "must be a positive factor, like 1.3",
        ));
    }
    let mut outputs = Vec::new();
    if let Some(p) = &a.out {
        outputs.push(("--out", p.as_path()));
    }
    if let Some(p) = &a.html {
        outputs.push(("--html", p.as_path()));
    }
    crate::error::check_outputs(&outputs)?;
    Ok(DemoSettings {
        duration,
        concurrency: a.concurrency,
        slowdown: a.slowdown,
        out: a.out.clone(),
        html: a.html.clone(),
    })
}
