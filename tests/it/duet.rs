//! Duet mode end to end: two mocks, interleaved slots, paired verdict.

use std::sync::Arc;
use std::time::Duration;

use crate::common::{chat_scenario, start_mock};
use flora_gate::engine::Plan;
use flora_gate::gate::{duet::compare_duet, Status};
use flora_gate::mock::MockConfig;
use flora_gate::result::{measure, Current};
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

/// A duet through the one pipeline, as every command runs it.
async fn duet_of(
    mut plan: Plan,
    reference: &str,
    pairs: u32,
) -> Result<flora_gate::result::duet::DuetResult, flora_gate::UserError> {
    plan.reference = Some(crate::common::target(reference));
    plan.load.blocks = pairs;
    match measure(&plan, CancellationToken::new(), CancellationToken::new())
        .await?
        .current
    {
        Current::Duet(d) => Ok(*d),
        Current::Single(_) => panic!("a plan with a reference measures a duet"),
    }
}

fn plan(target: &str, concurrency: u32, secs: u64) -> Plan {
    let sc = chat_scenario("");
    let mut load = sc.load.clone();
    load.concurrency = concurrency;
    load.duration = Some(Duration::from_secs(secs));
    load.requests = None;
    load.warmup = Duration::from_millis(200);
    Plan {
        drain: Duration::from_secs(5),
        ..Plan::new(
            Arc::new(sc),
            crate::common::target(target),
            Arc::new(flora_gate::tokens::generated(concurrency as usize)),
            load,
        )
    }
}

async fn duet(candidate_slowdown: f64) -> flora_gate::result::duet::DuetResult {
    let reference = start_mock(cfg(1.0)).await;
    let candidate = start_mock(cfg(candidate_slowdown)).await;
    let plan = plan(&candidate.url(), 6, 12);
    let d = duet_of(plan, &reference.url(), 6).await.expect("duet runs");
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
    // The figures shown are the ones the change is the ratio of.
    for c in v.checks.iter().filter(|c| c.change.is_some()) {
        let (b, cur) = (
            c.baseline.expect("reference"),
            c.current.expect("candidate"),
        );
        let shown = cur / b - 1.0;
        assert!(
            (shown - c.change.expect("change")).abs() < 1e-9,
            "{}: {b} → {cur} is {shown}, the change says {:?}",
            c.metric,
            c.change
        );
    }
    // The interval is a change, in the unit of `change`.
    let [lo, hi] = ttft.ci.expect("the interval judged");
    assert!(lo <= change && change <= hi, "{lo} {hi}");
    assert!(lo > 0.0 && hi < 1.0, "{lo} {hi}");
    // Its HTML report draws the reference against the candidate.
    let ctx = flora_gate::render::report::context(
        &slow.candidate,
        Some(&v),
        Some("http://127.0.0.1:9/ref"),
    );
    // The reproduce line is a duet's.
    let md = flora_gate::render::report::render(
        flora_gate::render::report::Format::Markdown,
        &flora_gate::render::report::Templates::load(None).expect("templates"),
        &ctx,
    )
    .expect("markdown");
    assert!(
        md.contains("--baseline-target http://127.0.0.1:9/ref"),
        "{md}"
    );
    let against = flora_gate::render::html::charts::Against {
        baseline: None,
        reference: Some(&slow.reference),
    };
    let page = flora_gate::render::html::run_page(&slow.candidate, &ctx, &against, true);
    let html = flora_gate::render::report::html(
        &flora_gate::render::report::Templates::load(None).expect("templates"),
        &page,
    )
    .expect("html");
    assert!(html.contains("<p class=\"muted\">duet ·"), "kind shown");
    assert!(
        html.contains("<title>reference</title>"),
        "the reference's CDF"
    );
    assert!(
        html.contains("interleaved block pairs against"),
        "the duet's line"
    );

    let same = duet(1.0).await;
    let v = compare_duet(&same, &same.candidate.gate);
    assert_ne!(v.verdict, Status::Fail, "{v:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_side_rate_is_over_its_own_slots() {
    let server = start_mock(cfg(1.0)).await;
    let (single, _) = crate::common::run_plan(plan(&server.url(), 4, 6)).await;
    let d = duet_of(plan(&server.url(), 4, 12), &server.url(), 6)
        .await
        .expect("duet runs");
    server.stop().await;
    let one = single.totals.output_tokens_per_s;
    for side in [&d.reference, &d.candidate] {
        let r = side.totals.output_tokens_per_s / one;
        // Divided by the whole duet, each side showed about half (or less).
        assert!(
            (0.75..1.3).contains(&r),
            "side {} vs single {one}",
            side.totals.output_tokens_per_s
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reference_that_dies_mid_run_still_gives_a_result() {
    let reference = start_mock(cfg(1.0)).await;
    let candidate = start_mock(cfg(1.0)).await;
    let url = reference.url();
    let killer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(4)).await;
        reference.stop().await;
    });
    let d = duet_of(plan(&candidate.url(), 4, 12), &url, 6)
        .await
        .expect("the duet goes on");
    killer.await.expect("stopped");
    candidate.stop().await;
    assert_eq!(d.slots.len(), 12, "every slot ran");
    assert!(d.reference.totals.failed > 0, "{:?}", d.reference.totals);
    assert!(d.candidate.totals.ok > 0);
    let v = compare_duet(&d, &d.candidate.gate);
    assert!(v.verdict >= Status::Warn, "{v:#?}");
    assert!(
        v.notes.iter().any(|n| n.contains("reference")),
        "{:?}",
        v.notes
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slots_too_short_for_requests_are_lengthened() {
    // ~1 s requests (40 tokens 25 ms apart) in 2 s slots: under 3 per user.
    let slow = MockConfig {
        ttft: Duration::from_millis(30),
        itl: Duration::from_millis(25),
        output_tokens: 40,
        ..MockConfig::default()
    };
    let reference = start_mock(slow.clone()).await;
    let candidate = start_mock(slow).await;
    let d = duet_of(plan(&candidate.url(), 2, 48), &reference.url(), 12)
        .await
        .expect("duet runs");
    reference.stop().await;
    candidate.stop().await;
    let pairs = d.slots.iter().map(|s| s.pair).max().map_or(0, |p| p + 1);
    assert!((6..12).contains(&pairs), "{pairs} pairs");
    assert!(
        d.notes.iter().any(|n| n.contains("lengthened")),
        "{:?}",
        d.notes
    );
}

#[test]
fn duet_requests_are_logged_with_their_side() {
    let reference =
        crate::common::spawn_mock(&["--ttft-ms", "10", "--itl-ms", "1", "--output-tokens", "8"]);
    let candidate =
        crate::common::spawn_mock(&["--ttft-ms", "10", "--itl-ms", "1", "--output-tokens", "8"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let tokens = dir.path().join("t.csv");
    std::fs::write(&tokens, "tok\n").expect("write");
    let log = dir.path().join("requests.jsonl");
    let out = std::process::Command::new(crate::common::BIN)
        .args(["run", "-s", "openai-chat", "-t", &candidate.url])
        .args(["--baseline-target", &reference.url, "-c", "2", "-d", "12s"])
        .args(["--tokens", tokens.to_str().expect("utf8")])
        .args(["-o", dir.path().join("d.json").to_str().expect("utf8")])
        .args(["--requests-out", log.to_str().expect("utf8")])
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&log).expect("request log written");
    assert!(text.lines().any(|l| l.contains("\"side\":\"reference\"")));
    assert!(text.lines().any(|l| l.contains("\"side\":\"candidate\"")));
}
