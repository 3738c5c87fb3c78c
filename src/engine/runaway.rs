//! A run whose queue runs away: more requests in flight and a longer wait
//! for the first token at almost every look. Such a level cannot hold
//! however long it is measured, so a capacity probe stops it early instead
//! of spending its time and the target's.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::Shared;

/// How often the run is looked at.
pub const TICK: Duration = Duration::from_millis(500);
/// Looks the verdict rests on (the last four seconds).
pub const LOOKS: usize = 8;
/// The fewest looks before a verdict.
pub const MIN_LOOKS: usize = 6;

/// One look: requests in flight, and the mean TTFT of the requests whose
/// first token came since the previous look (`None`: none came).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Look {
    /// Requests in flight.
    pub in_flight: u64,
    /// Mean TTFT since the previous look, ms.
    pub ttft_ms: Option<f64>,
}

/// Whether the looks (oldest first) show a runaway queue: requests in
/// flight up by half (and by at least four) and TTFT up by half from the
/// first look to the last, each rising at three looks in four at least.
/// Returns why, for the report.
pub fn runaway(looks: &[Look]) -> Option<String> {
    if looks.len() < MIN_LOOKS {
        return None;
    }
    let flights: Vec<f64> = looks.iter().map(|l| l.in_flight as f64).collect();
    let ttfts: Vec<f64> = looks.iter().filter_map(|l| l.ttft_ms).collect();
    if ttfts.len() < MIN_LOOKS {
        return None;
    }
    let rising = |xs: &[f64]| {
        let ups = xs.windows(2).filter(|w| w[1] > w[0]).count();
        ups * 4 >= (xs.len() - 1) * 3
    };
    let (f0, f1) = (flights[0], flights[flights.len() - 1]);
    let (t0, t1) = (ttfts[0], ttfts[ttfts.len() - 1]);
    let grew = f1 >= f0 * 1.5 && f1 >= f0 + 4.0 && t1 >= t0 * 1.5;
    (grew && rising(&flights) && rising(&ttfts)).then(|| {
        format!(
            "the queue ran away: requests in flight rose from {f0:.0} to {f1:.0} and TTFT from {t0:.0} to {t1:.0} ms within {:.1} s; the level cannot hold",
            (looks.len() - 1) as f64 * TICK.as_secs_f64()
        )
    })
}

/// Look at the run every [`TICK`] after its warm-up; on a runaway, say why
/// in `tripped` and stop the run (in-flight requests are cut: waiting for
/// a runaway queue to drain is the cost this avoids).
pub(super) async fn watch(shared: Arc<Shared>, tripped: Arc<Mutex<Option<String>>>) {
    tokio::time::sleep_until(shared.t0 + shared.warmup).await;
    let ttft = |s: &Shared| {
        s.live.steps.iter().fold((0u64, 0u64), |(n, us), st| {
            (n + st.ttft.count(), us + st.ttft.sum_us())
        })
    };
    let mut before = ttft(&shared);
    let mut looks: VecDeque<Look> = VecDeque::with_capacity(LOOKS + 1);
    let mut tick = tokio::time::interval(TICK);
    tick.tick().await;
    loop {
        tick.tick().await;
        let now = ttft(&shared);
        let (n, us) = (now.0 - before.0, now.1 - before.1);
        before = now;
        looks.push_back(Look {
            in_flight: shared.live.in_flight.load(Ordering::Relaxed),
            ttft_ms: (n > 0).then(|| us as f64 / n as f64 / 1000.0),
        });
        if looks.len() > LOOKS {
            looks.pop_front();
        }
        if let Some(why) = runaway(looks.make_contiguous()) {
            eprintln!("{why}; stopping the run");
            if let Ok(mut t) = tripped.lock() {
                *t = Some(why);
            }
            shared.stop.cancel();
            shared.hard_stop.cancel();
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn looks(flights: &[u64], ttfts: &[f64]) -> Vec<Look> {
        flights
            .iter()
            .zip(ttfts)
            .map(|(&f, &t)| Look {
                in_flight: f,
                ttft_ms: Some(t),
            })
            .collect()
    }

    #[test]
    fn a_growing_queue_is_a_runaway_and_a_steady_or_noisy_one_is_not() {
        let growing = looks(
            &[20, 26, 31, 38, 44, 50, 57, 63],
            &[300.0, 380.0, 450.0, 540.0, 600.0, 690.0, 760.0, 850.0],
        );
        let why = runaway(&growing).expect("a runaway");
        assert!(why.contains("from 20 to 63"), "{why}");
        // Too few looks yet.
        assert_eq!(runaway(&growing[..5]), None);
        // A full but steady queue (a closed loop at its level) holds still.
        let steady = looks(
            &[64, 64, 63, 64, 64, 64, 63, 64],
            &[700.0, 720.0, 690.0, 710.0, 705.0, 715.0, 700.0, 712.0],
        );
        assert_eq!(runaway(&steady), None);
        // Noise that ends higher but does not keep rising.
        let noisy = looks(
            &[10, 18, 9, 20, 11, 22, 12, 25],
            &[100.0, 200.0, 90.0, 210.0, 95.0, 220.0, 100.0, 260.0],
        );
        assert_eq!(runaway(&noisy), None);
        // More in flight but no slower first token: the target keeps up.
        let keeping_up = looks(
            &[10, 14, 18, 22, 26, 30, 34, 38],
            &[100.0, 101.0, 100.0, 102.0, 101.0, 100.0, 102.0, 101.0],
        );
        assert_eq!(runaway(&keeping_up), None);
        // Looks without a first token are skipped, not read as zero.
        let mut gaps = growing.clone();
        gaps[3].ttft_ms = None;
        assert!(runaway(&gaps).is_some());
    }
}
