//! The one set of limits that protects the target and this machine, for
//! scenario values and command-line flags alike.

use std::time::Duration;

use super::LoadSpec;

/// Most virtual users.
pub const MAX_USERS: u32 = 10_000;
/// Longest run, whether it stops by duration or by request count.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);
/// Most requests one run may send.
pub const MAX_REQUESTS: u64 = 100_000_000;
/// Highest open-loop arrival rate, workflow starts per second.
pub const MAX_RATE: f64 = 10_000.0;
/// Most time blocks (and duet slot pairs).
pub const MAX_BLOCKS: u32 = 1_000;
/// Longest think time.
pub const MAX_THINK: Duration = Duration::from_secs(3600);
/// Longest duration of any kind (timeouts, drain, back-off, …) accepted
/// when parsed: clock arithmetic with it can never overflow.
pub const MAX_ANY_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);

/// A value over a limit, named by its scenario key (the command line
/// maps the key to its flag).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exceeded {
    /// The scenario key.
    pub key: &'static str,
    /// What the limit is.
    pub message: String,
}

/// Check load settings against the limits.
pub fn check(load: &LoadSpec) -> Result<(), Exceeded> {
    let over = |key, message: String| Err(Exceeded { key, message });
    if load.concurrency == 0 || load.concurrency > MAX_USERS {
        return over(
            "load.concurrency",
            format!("must be between 1 and {MAX_USERS}"),
        );
    }
    if let Some(n) = load.requests {
        if n == 0 || n > MAX_REQUESTS {
            return over(
                "load.requests",
                format!("must be between 1 and {MAX_REQUESTS}"),
            );
        }
    }
    if let Some(d) = load.duration {
        if d.is_zero() || d > MAX_DURATION {
            return over(
                "load.duration",
                "must be more than 0 and at most 24h".into(),
            );
        }
    }
    if load.warmup > MAX_DURATION {
        return over("load.warmup", "must be at most 24h".into());
    }
    if load.blocks < 6 || load.blocks > MAX_BLOCKS {
        return over(
            "load.blocks",
            format!("must be between 6 (the gate needs at least six time blocks) and {MAX_BLOCKS}"),
        );
    }
    if load.window < std::time::Duration::from_secs(1) || load.window > MAX_DURATION {
        return over("load.window", "must be between 1s and 24h".into());
    }
    Ok(())
}
