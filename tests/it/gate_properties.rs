//! The gate's false-alarm and detection rates, on invented runs (no
//! server, no clock, so they hold on any machine): an A/A comparison fails
//! at most 1 time in 50, a planted 15% slowdown fails at least 9 times in
//! 10, a 3% slowdown passes. Each run has its own run-to-run shift (as a
//! real runner has) on top of request-level noise. The same statistics
//! against real runs of the mock are `benches/gate_power.sh`.

use crate::common::chat_scenario;
use flora_gate::gate::{self, Status};
use flora_gate::result::baseline::Baseline;
use flora_gate::result::invented::{invented_result, Invented};
use flora_gate::result::RunResult;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// A normal draw (Box–Muller).
fn normal(rng: &mut SmallRng) -> f64 {
    let (u, v): (f64, f64) = (rng.random::<f64>().max(1e-12), rng.random());
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

/// One run of 120 requests: TTFT around 60 ms × `slowdown`, TPOT around
/// 2 ms × `slowdown`, each run shifted by ~1% and each request by ~5%.
fn run(rng: &mut SmallRng, slowdown: f64) -> RunResult {
    let sc = chat_scenario("");
    let shift = 1.0 + 0.01 * normal(rng);
    let draws: Vec<Invented> = (0..120)
        .map(|_| Invented {
            ttft_ms: 60.0 * slowdown * shift * (1.0 + 0.05 * normal(rng)).max(0.5),
            tpot_ms: 2.0 * slowdown * shift * (1.0 + 0.05 * normal(rng)).max(0.5),
            tokens: 16,
            failed: false,
        })
        .collect();
    invented_result(&sc, 12, 2.4 * slowdown, 120, |i| draws[i].clone())
}

#[test]
fn aa_passes_slowdown_fails_small_change_passes() {
    let mut rng = SmallRng::seed_from_u64(2026);
    let base_runs: Vec<(String, RunResult)> = (0..5)
        .map(|i| (format!("b{i}"), run(&mut rng, 1.0)))
        .collect();
    let baseline = Baseline::from_results(&base_runs, false).expect("baseline");
    let mut verdicts = |slowdown: f64, n: usize| -> Vec<Status> {
        (0..n)
            .map(|_| {
                let r = run(&mut rng, slowdown);
                gate::compare_baseline(&baseline, &r, &r.gate, vec![]).verdict
            })
            .collect()
    };
    let aa = verdicts(1.0, 50);
    let false_alarms = aa.iter().filter(|s| **s == Status::Fail).count();
    assert!(false_alarms <= 1, "A/A failed {false_alarms} of 50: {aa:?}");

    let slow = verdicts(1.15, 10);
    let caught = slow.iter().filter(|s| **s == Status::Fail).count();
    assert!(caught >= 9, "15% slowdown caught {caught} of 10: {slow:?}");

    let small = verdicts(1.03, 10);
    let failed = small.iter().filter(|s| **s == Status::Fail).count();
    assert_eq!(failed, 0, "3% change failed {failed} of 10: {small:?}");
}
