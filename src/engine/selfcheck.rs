//! Is the load generator itself the bottleneck? Event-loop lag and CPU.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::stats::LatencyHist;

const TICK: Duration = Duration::from_millis(20);
/// Event-loop lag p99 above which the generator is called saturated.
pub const LAG_LIMIT_MS: f64 = 10.0;
/// Late ticks needed before the lag p99 counts: in a short run the p99 is
/// the largest of a few dozen ticks, and one stall is not saturation.
pub const LAG_MIN_LATE_TICKS: u64 = 2;
/// Share of all cores busy above which the generator is called saturated.
pub const CPU_LIMIT: f64 = 0.9;

/// The generator's own health during the run.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SelfCheck {
    /// Lateness of a 20 ms timer, p50, ms.
    pub loop_lag_p50_ms: Option<f64>,
    /// Lateness of a 20 ms timer, p99, ms.
    pub loop_lag_p99_ms: Option<f64>,
    /// Largest lateness, ms.
    pub loop_lag_max_ms: Option<f64>,
    /// CPU time of this process during the run, seconds (Linux only).
    pub cpu_time_s: Option<f64>,
    /// `cpu_time_s` / (wall time × cores).
    pub cpu_utilization: Option<f64>,
    /// Peak resident memory of this process, MiB (Linux only).
    pub peak_rss_mib: Option<f64>,
    /// Cores available.
    pub cores: usize,
    /// True when lag or CPU passed its limit: the numbers may measure the
    /// generator, not the target.
    pub saturated: bool,
    /// Why it is saturated, or notes (for example a mock in the same process).
    pub notes: Vec<String>,
    /// Share of the whole machine's CPU busy during the run (Linux only).
    #[serde(default)]
    pub host_cpu_utilization: Option<f64>,
    /// Who is to blame when `saturated`: `generator` (its own CPU was high)
    /// or `machine` (the host was busy with other work while the generator's
    /// own CPU was low: it was starved, not overloaded).
    #[serde(default)]
    pub cause: Option<String>,
}

impl SelfCheck {
    /// Saturated because other work on the machine starved the generator,
    /// not because the generator itself was the limit.
    pub fn starved(&self) -> bool {
        self.saturated && self.cause.as_deref() == Some("machine")
    }

    /// One phrase for reports: `ok`, or saturated and by what.
    pub fn verdict(&self) -> &'static str {
        if !self.saturated {
            "ok"
        } else if self.starved() {
            "BUSY MACHINE: other processes starved the generator; numbers may measure that"
        } else {
            "SATURATED: the generator itself was the limit; numbers may measure it"
        }
    }
}

/// Busy and total CPU ticks of the whole machine, from `/proc/stat`.
pub fn host_cpu_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal …
    let idle = v.get(3)? + v.get(4).copied().unwrap_or(0);
    let total: u64 = v.iter().take(8).sum();
    Some((total.saturating_sub(idle), total))
}

/// Samples event-loop lag until cancelled, from `after` on (the warm-up,
/// when every user connects at once, is not judged).
pub async fn watch_lag(stop: CancellationToken, after: Duration) -> LatencyHist {
    let mut h = LatencyHist::new();
    tokio::select! {
        () = tokio::time::sleep(after) => {}
        () = stop.cancelled() => return h,
    }
    let mut next = tokio::time::Instant::now() + TICK;
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(next) => {}
            () = stop.cancelled() => break,
        }
        let late = tokio::time::Instant::now().saturating_duration_since(next);
        h.record(late.max(Duration::from_micros(1)));
        next += TICK;
        let now = tokio::time::Instant::now();
        if next < now {
            next = now + TICK;
        }
    }
    h
}

/// CPU seconds used by this process so far, from `/proc/self/stat`.
pub fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields overall, in clock ticks of USER_HZ (100 on Linux).
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// Peak resident set size in MiB, from `/proc/self/status`.
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Judge the figures.
pub fn assess(
    lag: &LatencyHist,
    cpu_s: Option<f64>,
    host: Option<f64>,
    wall: Duration,
    notes: Vec<String>,
) -> SelfCheck {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let d = lag.dist();
    let util = cpu_s.map(|c| c / (wall.as_secs_f64().max(1e-9) * cores as f64));
    let mut notes = notes;
    let mut saturated = false;
    if let Some(p99) = d.p99.filter(|p| *p > LAG_LIMIT_MS) {
        let late = lag.count_above_ms(LAG_LIMIT_MS);
        if late >= LAG_MIN_LATE_TICKS {
            saturated = true;
            notes.push(format!(
                "event-loop lag p99 {p99:.1} ms is over {LAG_LIMIT_MS} ms ({late} of {} ticks late)",
                d.count
            ));
        } else {
            notes.push(format!(
                "one stall of {p99:.1} ms among {} ticks: not counted as saturation",
                d.count
            ));
        }
    }
    if let Some(u) = util.filter(|u| *u > CPU_LIMIT) {
        saturated = true;
        notes.push(format!(
            "CPU use {:.0}% of {cores} cores is over {:.0}%",
            u * 100.0,
            CPU_LIMIT * 100.0
        ));
    }
    // Lag with little CPU of our own, on a machine busy with other work:
    // the generator was starved, not overloaded.
    let cause = saturated.then(|| {
        let own_low = util.is_none_or(|u| u < 0.5);
        // Busy: the machine nearly full, or other processes holding most
        // of a core beside ours (busy loops on the generator's core of a
        // two-core machine leave the machine only ~60% busy).
        // The host's share is of every core of the machine; ours of the
        // cores this process may run on (fewer when pinned).
        let others = host.map(|h| {
            h * machine_cores().unwrap_or(cores) as f64 - util.unwrap_or(0.0) * cores as f64
        });
        let host_busy = host.is_some_and(|h| h > 0.8) || others.is_some_and(|o| o >= 0.9);
        // Lag while using under half a core in all is never the
        // generator's own work: it was not given the CPU when it asked
        // (other work, often in bursts the averages above smooth away).
        let idle = util.is_some_and(|u| u * (cores as f64) < 0.5);
        if idle || (own_low && host_busy) {
            "machine".to_string()
        } else {
            "generator".to_string()
        }
    });
    if cause.as_deref() == Some("machine") {
        notes.push(format!(
            "the machine was {:.0}% busy while this process used {:.0}%: other work starved the generator",
            host.unwrap_or(0.0) * 100.0,
            util.unwrap_or(0.0) * 100.0
        ));
    }
    SelfCheck {
        host_cpu_utilization: host,
        cause,
        loop_lag_p50_ms: d.p50,
        loop_lag_p99_ms: d.p99,
        loop_lag_max_ms: d.max,
        cpu_time_s: cpu_s,
        cpu_utilization: util,
        peak_rss_mib: peak_rss_mib(),
        cores,
        saturated,
        notes,
    }
}

/// Cores of the whole machine (not only those this process may use).
fn machine_cores() -> Option<usize> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let n = stat
        .lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .count();
    (n > 0).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ticks(stalls: &[u64], n: usize) -> LatencyHist {
        let mut h = LatencyHist::new();
        for _ in stalls.len()..n {
            h.record(Duration::from_micros(300));
        }
        for ms in stalls {
            h.record(Duration::from_millis(*ms));
        }
        h
    }

    fn judge(h: &LatencyHist) -> SelfCheck {
        assess(h, Some(0.1), None, Duration::from_secs(1), Vec::new())
    }

    #[test]
    fn one_stall_in_a_short_run_is_noted_not_counted() {
        let c = judge(&ticks(&[40], 50));
        assert!(!c.saturated, "{c:?}");
        assert_eq!(c.loop_lag_p99_ms.map(f64::round), Some(40.0));
        assert!(c.notes[0].contains("one stall"), "{:?}", c.notes);
    }

    #[test]
    fn two_late_ticks_past_the_p99_are_saturation() {
        let c = judge(&ticks(&[40, 12], 50));
        assert!(c.saturated, "{c:?}");
        assert!(c.notes[0].contains("2 of 50 ticks late"), "{:?}", c.notes);
    }

    #[test]
    fn late_ticks_under_the_p99_are_not_saturation() {
        // 2 late of 1,000: the p99 is on time.
        let c = judge(&ticks(&[40, 40], 1000));
        assert!(!c.saturated, "{c:?}");
        assert!(c.notes.is_empty(), "{:?}", c.notes);
    }

    #[test]
    fn lag_beside_a_core_of_other_work_is_the_machine() {
        let lagging = ticks(&[40, 40, 40], 50);
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        // Others hold a whole core while we use 5% of the machine.
        let host = 0.05 + 1.0 / cores;
        let c = assess(
            &lagging,
            Some(0.05 * cores),
            Some(host),
            Duration::from_secs(1),
            Vec::new(),
        );
        assert!(c.starved(), "{c:?}");
        // Our own CPU high: the generator itself.
        let c = assess(
            &lagging,
            Some(0.9 * cores),
            Some(0.95),
            Duration::from_secs(1),
            Vec::new(),
        );
        assert!(c.saturated && !c.starved(), "{c:?}");
        // Lagging while using a few percent of one core, on a machine
        // whose average looks quiet: starved in bursts, not overloaded.
        let c = assess(
            &lagging,
            Some(0.03),
            Some(0.3),
            Duration::from_secs(1),
            Vec::new(),
        );
        assert!(c.starved(), "{c:?}");
    }
}
