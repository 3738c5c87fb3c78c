//! The gate's false-alarm and detection rates on real runs against the mock
//! with jitter: an A/A comparison fails at most 1 time in 50, a planted 15%
//! slowdown fails at least 9 times in 10, a 3% slowdown passes.
//! One test, so the runs happen one after another and do not compete for CPU.

use std::time::Duration;

use crate::common::{chat_scenario, run, start_mock, Load};
use flora_gate::gate::{self, Status};
use flora_gate::mock::MockConfig;
use flora_gate::result::baseline::Baseline;
use flora_gate::result::RunResult;

fn cfg(slowdown: f64) -> MockConfig {
    MockConfig {
        ttft: Duration::from_millis(60),
        itl: Duration::from_millis(2),
        output_tokens: 16,
        jitter: Duration::from_millis(3),
        slowdown,
        seed: (slowdown * 1000.0) as u64,
        ..MockConfig::default()
    }
}

async fn runs(slowdown: f64, n: usize) -> Vec<RunResult> {
    let mock = start_mock(cfg(slowdown)).await;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let (r, _) = run(
            chat_scenario(""),
            &mock.url(),
            Load {
                concurrency: 12,
                duration: None,
                requests: Some(120),
                warmup: Duration::ZERO,
            },
        )
        .await;
        out.push(r);
    }
    mock.stop().await;
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aa_passes_slowdown_fails_small_change_passes() {
    let base_runs = runs(1.0, 5).await;
    let baseline = Baseline::from_results(
        &base_runs
            .into_iter()
            .enumerate()
            .map(|(i, r)| (format!("b{i}"), r))
            .collect::<Vec<_>>(),
        // The subject is the statistics: a busy machine that flags a run's
        // generator (refused by `baseline refresh`, tested elsewhere) must
        // not stop it.
        true,
    )
    .expect("baseline");
    let verdicts = |rs: Vec<RunResult>| -> Vec<Status> {
        rs.iter()
            .map(|r| gate::compare_baseline(&baseline, r, &r.gate, vec![]).verdict)
            .collect()
    };

    let aa = verdicts(runs(1.0, 50).await);
    let false_alarms = aa.iter().filter(|s| **s == Status::Fail).count();
    assert!(false_alarms <= 1, "A/A failed {false_alarms} of 50: {aa:?}");

    let slow = verdicts(runs(1.15, 10).await);
    let caught = slow.iter().filter(|s| **s == Status::Fail).count();
    assert!(caught >= 9, "15% slowdown caught {caught} of 10: {slow:?}");

    let small = verdicts(runs(1.03, 10).await);
    let failed = small.iter().filter(|s| **s == Status::Fail).count();
    eprintln!("A/A failed {false_alarms}/50; 15% slowdown failed {caught}/10; 3% slowdown failed {failed}/10");
    assert_eq!(failed, 0, "3% change failed {failed} of 10: {small:?}");
}
