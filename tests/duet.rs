//! Duet mode end to end: two mocks, interleaved slots, paired verdict.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{chat_scenario, start_mock};
use flora_gate::engine::{duet::run_duet, Plan};
use flora_gate::gate::{duet::compare_duet, Status};
use flora_gate::mock::MockConfig;
use tokio_util::sync::CancellationToken;

fn cfg(slowdown: f64) -> MockConfig {
    MockConfig {
        ttft: Duration::from_millis(40),
        itl: Duration::from_millis(2),
        output_tokens: 12,
        jitter: Duration::from_millis(2),
        slowdown,
        ..MockConfig::default()
    }
}

async fn duet(candidate_slowdown: f64) -> flora_gate::gate::duet::DuetResult {
    let reference = start_mock(cfg(1.0)).await;
    let candidate = start_mock(cfg(candidate_slowdown)).await;
    let sc = chat_scenario("");
    let mut load = sc.load.clone();
    load.concurrency = 6;
    load.duration = Some(Duration::from_secs(12));
    load.requests = None;
    load.warmup = Duration::from_millis(200);
    let plan = Plan {
        scenario: Arc::new(sc),
        target: candidate.url(),
        reference: None,
        tokens: Arc::new(flora_gate::tokens::generated(6)),
        load,
        progress: false,
        drain: Duration::from_secs(5),
        notes: vec![],
        ca_cert: None,
    };
    let d = run_duet(
        plan,
        reference.url(),
        6,
        CancellationToken::new(),
        CancellationToken::new(),
    )
    .await
    .expect("duet runs");
    reference.stop().await;
    candidate.stop().await;
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duet_catches_a_slower_candidate_and_passes_an_equal_one() {
    let slow = duet(1.25).await;
    assert_eq!(slow.slots.len(), 12);
    for pair in 0..6 {
        let sides: Vec<_> = slow
            .slots
            .iter()
            .filter(|s| s.pair == pair)
            .map(|s| s.side)
            .collect();
        assert_eq!(sides.len(), 2, "each pair has one slot per side");
        assert_ne!(sides[0], sides[1]);
    }
    let v = compare_duet(&slow, &slow.candidate.gate);
    assert_eq!(v.verdict, Status::Fail, "{v:#?}");
    let ttft = v
        .checks
        .iter()
        .find(|c| c.metric == "ttft_p50")
        .expect("ttft check");
    let change = ttft.change.expect("change");
    assert!((0.15..0.35).contains(&change), "ratio {change}");
    let [lo, hi] = ttft.ci.expect("bootstrap interval");
    assert!(lo <= 1.0 + change && 1.0 + change <= hi, "{lo} {hi}");

    let same = duet(1.0).await;
    let v = compare_duet(&same, &same.candidate.gate);
    assert_ne!(v.verdict, Status::Fail, "{v:#?}");
}
