//! The engine against the project's own mock server on 127.0.0.1.

use std::time::Duration;

use crate::common::{chat_scenario, run, start_mock, Load};
use flora_gate::mock::MockConfig;
use flora_gate::scenario::Scenario;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn measured_latencies_match_the_mock_configuration() {
    let mock = start_mock(MockConfig {
        ttft: Duration::from_millis(60),
        itl: Duration::from_millis(6),
        output_tokens: 20,
        ..MockConfig::default()
    })
    .await;
    let (res, out) = run(
        chat_scenario(""),
        &mock.url(),
        Load {
            concurrency: 4,
            duration: Some(Duration::from_secs(3)),
            requests: None,
            warmup: Duration::from_millis(300),
        },
    )
    .await;
    mock.stop().await;
    let chat = &res.steps[0];
    assert!(chat.requests >= 12, "only {} requests", chat.requests);
    assert_eq!(chat.failed, 0, "{:?}", chat.errors);
    // Loose bounds: the configuration is 60 ms TTFT and 6 ms per token.
    let ttft = chat.ttft_ms.p50.expect("ttft measured");
    assert!((58.0..90.0).contains(&ttft), "ttft p50 {ttft}");
    let tpot = chat.tpot_ms.p50.expect("tpot measured");
    assert!((5.5..10.0).contains(&tpot), "tpot p50 {tpot}");
    let itl = chat.itl_ms.p50.expect("itl measured");
    assert!((3.0..12.0).contains(&itl), "itl p50 {itl}");
    // The mock reports usage; it agrees with the chunks it sent.
    assert_eq!(chat.output_tokens.mean_per_request, Some(20.0));
    assert_eq!(chat.output_tokens.usage_reported, chat.ok);
    assert_eq!(chat.output_tokens.usage_minus_chunks, 0);
    // Warm-up requests are recorded but not measured.
    assert!(out.recorder.records.to_vec().iter().any(|s| s.warmup));
    assert_eq!(
        chat.requests as usize,
        out.recorder
            .records
            .to_vec()
            .iter()
            .filter(|s| !s.warmup)
            .count()
    );
    assert!(res.blocks.len() >= 6);
    let in_blocks: u64 = res.blocks.iter().map(|b| b.steps["chat"].requests).sum();
    assert_eq!(in_blocks, chat.requests);
    assert!(res.totals.output_tokens_per_s > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn novel_workflow_carries_ids_between_steps() {
    let mock = start_mock(MockConfig {
        ttft: Duration::from_millis(10),
        itl: Duration::from_millis(1),
        output_tokens: 8,
        ..MockConfig::default()
    })
    .await;
    let sc = Scenario::load("novel", &[]).expect("bundled");
    let (res, _) = run(
        sc,
        &mock.url(),
        Load {
            concurrency: 3,
            duration: None,
            requests: Some(60),
            warmup: Duration::ZERO,
        },
    )
    .await;
    mock.stop().await;
    assert_eq!(res.totals.requests, 60);
    assert_eq!(res.totals.failed, 0, "{:?}", res.totals.errors);
    let names: Vec<_> = res.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "create_book",
            "outline",
            "draft",
            "continue",
            "expand",
            "summarize"
        ]
    );
    // Users start iterations in parallel, so the request budget ends mid-way.
    let books = res.steps[0].statuses.get("201").copied().unwrap_or(0);
    assert!((10..=12).contains(&books), "{books} books");
    assert!(res.workflow.ok >= 9, "{:?}", res.workflow);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_faults_are_classified_and_counted() {
    let mock = start_mock(MockConfig {
        ttft: Duration::from_millis(5),
        itl: Duration::from_millis(1),
        output_tokens: 10,
        faults: "500=0.15,503=0.1,429=0.1,disconnect=0.1,malformed=0.1,hang=0.05"
            .parse()
            .expect("valid faults"),
        hang: Duration::from_secs(5),
        ..MockConfig::default()
    })
    .await;
    // 60% failures on purpose: the circuit breaker would stop the run.
    let sc = chat_scenario(
        "[timeouts]\nfirst_token = \"300ms\"\nidle = \"300ms\"\n[safety]\ncircuit_breaker = false\n",
    );
    let (res, _) = run(
        sc,
        &mock.url(),
        Load {
            concurrency: 8,
            duration: None,
            requests: Some(400),
            warmup: Duration::ZERO,
        },
    )
    .await;
    mock.stop().await;
    let chat = &res.steps[0];
    assert_eq!(chat.requests, 400);
    for class in [
        "http_500",
        "http_503",
        "rate_limited",
        "stream_broken",
        "protocol",
        "timeout_first_token",
    ] {
        assert!(
            chat.errors.get(class).copied().unwrap_or(0) > 0,
            "no {class} in {:?}",
            chat.errors
        );
    }
    // 60% injected in all; loose bounds.
    let rate = res.totals.error_rate;
    assert!((0.45..0.75).contains(&rate), "error rate {rate}");
    let counted: u64 = chat.errors.values().sum();
    assert_eq!(counted, chat.failed);
    // Failures are +∞: with 60% failed, the median TTFT is infinite.
    assert_eq!(chat.ttft_ms.p50, None);
    assert_eq!(chat.ttft_ms.get("p50"), Some(f64::INFINITY));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_tokens_are_rejected_by_the_mock() {
    let mock = start_mock(MockConfig {
        tokens: Some(["someone-else".to_string()].into_iter().collect()),
        ..MockConfig::default()
    })
    .await;
    let (res, _) = run(
        chat_scenario(""),
        &mock.url(),
        Load {
            concurrency: 2,
            duration: None,
            requests: Some(6),
            warmup: Duration::ZERO,
        },
    )
    .await;
    mock.stop().await;
    assert_eq!(res.steps[0].errors.get("http_401"), Some(&6));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queueing_beyond_the_mock_limit_raises_ttft() {
    let cfg = MockConfig {
        ttft: Duration::from_millis(20),
        itl: Duration::from_millis(2),
        output_tokens: 10,
        max_concurrency: Some(2),
        ..MockConfig::default()
    };
    let mock = start_mock(cfg).await;
    let load = |c| Load {
        concurrency: c,
        duration: None,
        requests: Some(24),
        warmup: Duration::ZERO,
    };
    let (under, _) = run(chat_scenario(""), &mock.url(), load(2)).await;
    let (over, _) = run(chat_scenario(""), &mock.url(), load(8)).await;
    mock.stop().await;
    let u = under.steps[0].ttft_ms.p50.expect("measured");
    let o = over.steps[0].ttft_ms.p50.expect("measured");
    assert!(o > u * 2.0, "queued ttft {o} vs unqueued {u}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_target_is_a_clear_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    let err = flora_gate::engine::preflight(
        &crate::common::target(&format!("http://127.0.0.1:{port}")),
        Duration::from_secs(2),
    )
    .await
    .expect_err("nothing listens");
    assert!(err.to_string().contains("cannot connect"), "{err}");
    assert!(err.hint().expect("hint").contains("--target"));
}
