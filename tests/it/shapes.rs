//! Load shapes against the mock: ramps followed by the mock's own
//! counters, jumps, open-loop arrivals, the workflow mix, ramp-down and the
//! end of a run, spike recovery, drift, and the live metrics endpoint.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use flora_gate::engine::Plan;
use flora_gate::mock::MockConfig;
use flora_gate::scenario::shape::{parse_stages, Shape};
use flora_gate::scenario::{Arrival, Model, Scenario};

use crate::common::{chat_scenario, run_plan, start_mock};

/// The mock with this TTFT and inter-token gap (ms) and tokens per answer.
fn timing(ttft_ms: u64, itl_ms: u64, tokens: u32) -> MockConfig {
    MockConfig {
        ttft: Duration::from_millis(ttft_ms),
        itl: Duration::from_millis(itl_ms),
        output_tokens: tokens,
        ..MockConfig::default()
    }
}

/// A plan of `sc` under `stages` (the `--stages` syntax) and `model`.
fn shaped(
    sc: Scenario,
    target: &str,
    stages: &str,
    model: Model,
    arrival: Arrival,
    cap: u32,
) -> Plan {
    let mut load = sc.load.clone();
    load.warmup = Duration::ZERO;
    load.window = Duration::from_secs(1);
    let shape = Shape {
        model,
        stages: parse_stages(stages).expect("stages parse"),
        arrival,
        max_in_flight: cap,
    };
    shape.check().expect("valid shape");
    load.set_shape(shape);
    let users = match model {
        Model::Closed => load.concurrency as usize,
        Model::Open => 50,
    };
    Plan::new(
        Arc::new(sc),
        crate::common::target(target),
        Arc::new(flora_gate::tokens::generated(users)),
        load,
    )
}

/// An HTTP client for reading the mock's counters (built by the engine's
/// own constructor, which installs the TLS provider).
fn http() -> reqwest::Client {
    flora_gate::engine::client(&chat_scenario(""), 1, None).expect("client")
}

async fn in_flight(client: &reqwest::Client, url: &str) -> u64 {
    let v: serde_json::Value = client
        .get(format!("{url}/_mock/stats"))
        .send()
        .await
        .expect("stats answer")
        .json()
        .await
        .expect("stats are JSON");
    v["in_flight"].as_u64().expect("in_flight is counted")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_in_flight_follow_a_ramp_to_100_within_three() {
    // Streams of ~1 s, so a user is almost always in flight.
    let mock = start_mock(timing(100, 15, 64)).await;
    let url = mock.url();
    // A wall-clock check: a run whose self-check blames other work on the
    // machine is measured again (twice at most), and if every attempt was
    // starved, the run must have said so.
    for attempt in 1..=3 {
        let (worst, res) = ramp_in_flight(&url).await;
        if worst.0 > 3 && res.self_check.saturated && attempt < 3 {
            eprintln!("attempt {attempt}: the generator was saturated; measuring again");
            continue;
        }
        if worst.0 > 3 && res.self_check.saturated {
            assert!(
                res.self_check.starved() || res.self_check.saturated,
                "{:?}",
                res.self_check
            );
            eprintln!(
                "every attempt saturated: the run said so ({:?})",
                res.self_check.cause
            );
            return;
        }
        assert!(
            worst.0 <= 3,
            "users in flight were {} off the ramp at {:.2}s",
            worst.0,
            worst.1
        );
        assert_eq!(res.totals.failed, 0);
        assert_eq!(res.stages.len(), 2);
        assert!(
            !res.stages[1].under_delivered,
            "{:?}",
            res.stages[1].delivered
        );
        return;
    }
}

/// One ramp to 100 users: the worst distance of users in flight from the
/// ramp (and when), and the result.
async fn ramp_in_flight(url: &str) -> ((i64, f64), flora_gate::result::RunResult) {
    let plan = shaped(
        chat_scenario(""),
        url,
        "5s:100,2s:100",
        Model::Closed,
        Arrival::Constant,
        1,
    );
    let t0 = Instant::now();
    let run = tokio::spawn(run_plan(plan));
    let client = http();
    let mut worst = (0i64, 0.0);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    while t0.elapsed() < Duration::from_millis(6800) {
        let t = t0.elapsed().as_secs_f64();
        let n = in_flight(&client, url).await as i64;
        let t2 = t0.elapsed().as_secs_f64();
        // The target over the moment of the read (the request takes time).
        let target = |t: f64| (100.0 * t / 5.0).min(100.0);
        let (lo, hi) = (target(t - 0.05).floor() as i64, target(t2).floor() as i64);
        let off = if n < lo {
            lo - n
        } else if n > hi {
            n - hi
        } else {
            0
        };
        if off > worst.0 {
            worst = (off, t);
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let (res, _) = run.await.expect("run task");
    (worst, res)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zero_second_jump_starts_every_new_user_within_250_ms() {
    let mock = start_mock(MockConfig::default()).await;
    let plan = shaped(
        chat_scenario(""),
        &mock.url(),
        "1s:0,0s:100,2s:100",
        Model::Closed,
        Arrival::Constant,
        1,
    );
    let (res, out) = run_plan(plan).await;
    let mut first: BTreeMap<u32, Duration> = BTreeMap::new();
    for s in &out.recorder.records.to_vec() {
        let e = first.entry(s.vu).or_insert(s.start);
        *e = (*e).min(s.start);
    }
    assert_eq!(first.len(), 100, "every user sent");
    let (lo, hi) = (
        first.values().min().expect("present"),
        first.values().max().expect("present"),
    );
    assert!(*lo >= Duration::from_millis(990), "{lo:?}");
    assert!(
        *hi < Duration::from_millis(1250),
        "the last first request at {hi:?}"
    );
    assert_eq!(res.totals.failed, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_arrivals_start_on_time_and_misses_are_counted_not_sent_late() {
    let mock = start_mock(timing(20, 2, 8)).await;
    // 0 → 40/s in 1 s, then 40/s for 3 s: 20 + 120 arrivals.
    let plan = shaped(
        chat_scenario(""),
        &mock.url(),
        "1s:40,3s:40",
        Model::Open,
        Arrival::Poisson,
        100,
    );
    let (res, out) = run_plan(plan).await;
    let a = res
        .arrivals
        .as_ref()
        .expect("open loop accounts for arrivals");
    assert!((100..=180).contains(&a.due), "{a:?}");
    assert_eq!(a.missed_cap + a.missed_late, 0, "{a:?}");
    assert_eq!(a.started, a.due);
    assert_eq!(out.recorder.records.iterations().len() as u64, a.started);
    assert!(a.lateness_p99_ms.expect("present") < 200.0, "{a:?}");
    assert_eq!(res.load.as_ref().expect("present").model, "open");

    // A cap of 3 in flight against 2 s answers: most arrivals are missed,
    // counted, and none is started late.
    let slow = start_mock(timing(2000, 8, 2)).await;
    let plan = shaped(
        chat_scenario(""),
        &slow.url(),
        "0s:20,2s:20",
        Model::Open,
        Arrival::Constant,
        3,
    );
    let (res, out) = run_plan(plan).await;
    let a = res.arrivals.as_ref().expect("present");
    assert_eq!(a.due, 40, "{a:?}");
    assert_eq!(a.started, 3, "{a:?}");
    assert_eq!(a.missed_cap, 37, "{a:?}");
    assert_eq!(out.recorder.records.len() as usize, 3);
    assert_eq!(
        res.stages.len(),
        1,
        "the 0 s jump is not a stage of its own"
    );
    assert!(res.stages[0].under_delivered);
    assert!(res.under_delivery_note(None).is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_weighted_mix_runs_each_workflow_with_its_steps_and_ids() {
    let mock = start_mock(timing(5, 1, 4)).await;
    let sc = Scenario::load("mix", &[]).expect("bundled mix");
    let mut plan = shaped(
        sc,
        &mock.url(),
        "0s:8,4s:8",
        Model::Closed,
        Arrival::Constant,
        1,
    );
    plan.load.think_time = flora_gate::scenario::Think::None;
    let scenario = Arc::make_mut(&mut plan.scenario);
    for s in &mut scenario.steps {
        s.think_time = flora_gate::scenario::Think::None;
    }
    let (res, _) = run_plan(plan).await;
    assert_eq!(res.totals.failed, 0, "{:?}", res.totals.errors);
    assert_eq!(res.workflows.len(), 4);
    let share: BTreeMap<&str, f64> = res
        .workflows
        .iter()
        .map(|w| (w.name.as_str(), w.share))
        .collect();
    assert!(share["continue"] > share["full book"], "{share:?}");
    assert!(
        res.workflows.iter().all(|w| w.result.iterations > 0),
        "{share:?}"
    );
    // Only the full-book workflow drafts.
    let draft = res
        .steps
        .iter()
        .find(|s| s.name == "draft")
        .expect("present");
    assert!(draft.requests <= res.workflows[0].result.iterations + 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundled_shapes_run_against_the_mock_with_short_stages() {
    let mock = start_mock(timing(5, 1, 4)).await;
    for name in ["ramp", "spike", "soak"] {
        let sc = Scenario::load(name, &[]).expect("bundled");
        let full = sc.load.shape.clone().expect("a bundled shape has stages");
        assert!(full.peak() >= 1500.0, "{name}");
        let mut plan = shaped(
            sc,
            &mock.url(),
            "1s:4,1s:4",
            Model::Closed,
            Arrival::Constant,
            1,
        );
        plan.load.think_time = flora_gate::scenario::Think::None;
        let (res, _) = run_plan(plan).await;
        assert_eq!(res.totals.failed, 0, "{name}: {:?}", res.totals.errors);
        assert!(res.totals.requests > 4, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_10s_run_against_a_server_that_never_answers_some_requests_ends_within_30s() {
    let mock = start_mock(MockConfig {
        faults: "hang=0.3".parse().expect("present"),
        ..MockConfig::default()
    })
    .await;
    let mut plan = crate::common::plan_for(
        chat_scenario("[safety]\ncircuit_breaker = false\n[timeouts]\nfirst_token = \"120s\"\nidle = \"120s\""),
        &mock.url(),
        crate::common::Load {
            concurrency: 8,
            duration: Some(Duration::from_secs(10)),
            requests: None,
            warmup: Duration::ZERO,
        },
    );
    plan.drain =
        flora_gate::scenario::parse_duration(flora_gate::cli::DEFAULT_DRAIN).expect("present");
    let t = Instant::now();
    let (res, _) = run_plan(plan).await;
    let took = t.elapsed();
    assert!(took < Duration::from_secs(30), "took {took:?}");
    let cut = res.totals.errors.get("abandoned").copied().unwrap_or(0);
    assert!(cut >= 1, "{:?}", res.totals.errors);
    // The schedule ran to its end: the hung requests are the server's
    // errors, the run is complete (the gate judges the error rate).
    assert_eq!(res.state(), flora_gate::result::RunState::Complete);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ramp_down_cuts_only_what_outlives_the_grace_and_counts_it() {
    // 6 users for 2 s, then 2 users; answers take ~3 s, the grace is 500 ms:
    // the four retired users' requests are cut at 2.5 s and counted.
    let mock = start_mock(timing(3000, 8, 2)).await;
    let mut plan = shaped(
        chat_scenario(""),
        &mock.url(),
        "0s:6,2s:6,0s:2,2s:2",
        Model::Closed,
        Arrival::Constant,
        1,
    );
    plan.drain = Duration::from_millis(500);
    let (res, out) = run_plan(plan).await;
    let all = out.recorder.records.to_vec();
    let cut: Vec<_> = all
        .iter()
        .filter(|s| s.error.map(|e| e.name()) == Some("abandoned".into()))
        .collect();
    assert!(
        cut.iter().filter(|s| s.vu >= 2).count() == 4,
        "{:?}",
        res.totals.errors
    );
    for s in cut.iter().filter(|s| s.vu >= 2) {
        let end = s.start + s.stream_end;
        assert!(
            end >= Duration::from_millis(2400) && end < Duration::from_millis(3000),
            "{end:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spike_recovers_when_the_mock_has_drained_its_queue() {
    // The mock serves 10 at once; 40 users queue behind them. After the
    // drop back to 5 users, the queue drains and TTFT returns.
    let mock = start_mock(MockConfig {
        max_concurrency: Some(10),
        ..timing(50, 10, 10)
    })
    .await;
    let url = mock.url();
    let plan = shaped(
        chat_scenario(""),
        &url,
        "0s:5,4s:5,spike=0s:40,3s:40,0s:5,5s:5",
        Model::Closed,
        Arrival::Constant,
        1,
    );
    let t0 = Instant::now();
    let run = tokio::spawn(run_plan(plan));
    // The mock's drain: from the drop (7 s) until no more than its
    // capacity is in flight.
    let client = http();
    tokio::time::sleep(Duration::from_millis(7000)).await;
    let mut drained = None;
    while t0.elapsed() < Duration::from_secs(11) {
        if in_flight(&client, &url).await <= 10 {
            drained = Some(t0.elapsed().as_secs_f64() - 7.0);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (res, _) = run.await.expect("present");
    let drained = drained.expect("the queue drained");
    let d = res.dynamics.as_ref().expect("a spike has dynamics");
    let rec = &d.recovery[0];
    assert_eq!(rec.stage, "spike");
    assert_eq!(rec.from_s, 7.0);
    let after = rec.recovered_after_s.expect("recovered");
    assert!(
        (after - drained).abs() <= 1.0 + 1e-9,
        "recovered after {after}s, the mock drained in {drained}s"
    );
    // While the spike held, TTFT was far above the level before.
    let held = res
        .stages
        .iter()
        .find(|s| s.name == "stage 4")
        .expect("present");
    assert!(held.totals.requests > 0);
}

// Drift detection is decided on windows (`result::dynamics` tests, any
// machine); the soak itself, two of them with and without a drifting mock,
// is `benches/shapes.sh` phase 4.

/// The live endpoint's series, keyed by name and labels without the run's
/// own (`run_id`, `scenario`, `target`), which every series must carry.
pub fn scrape(port: u16) -> BTreeMap<String, f64> {
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "2",
            &format!("http://127.0.0.1:{port}/metrics"),
        ])
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let e = flora_gate::stats::prom::parse(&text).expect("the exposition parses");
    e.samples
        .iter()
        .map(|s| {
            for l in ["run_id", "scenario", "target"] {
                assert!(s.label(l).is_some(), "{} without {l}", s.name);
            }
            let rest: Vec<String> = s
                .labels
                .iter()
                .filter(|(k, _)| !matches!(k.as_str(), "run_id" | "scenario" | "target"))
                .map(|(k, v)| format!("{k}=\"{v}\""))
                .collect();
            let key = if rest.is_empty() {
                s.name.clone()
            } else {
                format!("{}{{{}}}", s.name, rest.join(","))
            };
            (key, s.value)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_metrics_move_during_the_run_and_agree_with_the_result() {
    let mock = start_mock(timing(20, 2, 8)).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("present")
        .local_addr()
        .expect("present")
        .port();
    let mut plan = shaped(
        chat_scenario(""),
        &mock.url(),
        "1s:4,3s:4",
        Model::Closed,
        Arrival::Constant,
        1,
    );
    plan.metrics_listen = Some(std::net::SocketAddr::from(([127, 0, 0, 1], port)));
    let run = tokio::spawn(run_plan(plan));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let a = tokio::task::spawn_blocking(move || scrape(port))
        .await
        .expect("present");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let b = tokio::task::spawn_blocking(move || scrape(port))
        .await
        .expect("present");
    let (res, _) = run.await.expect("present");
    let key = "flora_gate_requests_total{step=\"chat\"}";
    let (ra, rb) = (a[key], b[key]);
    assert!(ra > 0.0 && rb > ra, "requests {ra} then {rb}");
    assert!(
        rb <= res.totals.requests as f64,
        "{rb} > {}",
        res.totals.requests
    );
    assert_eq!(b["flora_gate_users_active"], 4.0);
    assert_eq!(b["flora_gate_users_intended"], 4.0);
    assert_eq!(b["flora_gate_stage"], 2.0);
    let count = b["flora_gate_ttft_seconds_count{step=\"chat\"}"];
    let inf = b["flora_gate_ttft_seconds_bucket{step=\"chat\",le=\"+Inf\"}"];
    assert_eq!(count, inf);
    assert!(b["flora_gate_output_tokens_total{step=\"chat\"}"] >= 8.0 * (rb - 4.0));
    // Nothing listens once the run is over.
    assert!(tokio::task::spawn_blocking(move || scrape(port))
        .await
        .expect("present")
        .is_empty());
}

/// Decode a serialized histogram of the result (failures given separately).
fn hist(b64: &str, failures: u64) -> flora_gate::stats::LatencyHist {
    flora_gate::stats::LatencyHist::decode(b64, failures).expect("a histogram")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_and_stages_add_up_to_the_run_exactly() {
    let mock = start_mock(MockConfig {
        jitter: Duration::from_millis(5),
        faults: "500=0.05".parse().expect("faults"),
        ..timing(20, 2, 8)
    })
    .await;
    let sc = chat_scenario("[safety]\ncircuit_breaker = false\nbackoff = \"0s\"");
    let plan = shaped(
        sc,
        &mock.url(),
        "1s:6,a=1500ms:6,0s:12,b=1s:12",
        Model::Closed,
        Arrival::Constant,
        1,
    );
    let (res, _) = run_plan(plan).await;
    let step = &res.steps[0];
    assert!(
        step.failed > 0 && step.ok > 100,
        "{} ok, {} failed",
        step.ok,
        step.failed
    );
    let mut w_ttft = flora_gate::stats::LatencyHist::new();
    let mut w_e2e = flora_gate::stats::LatencyHist::new();
    let (mut w_req, mut w_failed) = (0, 0);
    for w in &res.windows {
        w_ttft.merge(&hist(&w.histograms.ttft, w.histograms.failures));
        w_e2e.merge(&hist(&w.histograms.e2e, w.histograms.failures));
        w_req += w.requests;
        w_failed += w.failed;
    }
    let run_ttft = hist(&step.histograms.ttft, step.failed);
    let run_e2e = hist(&step.histograms.e2e, step.failed);
    assert_eq!((w_req, w_failed), (step.requests, step.failed));
    assert_eq!(w_ttft.count(), run_ttft.count());
    assert_eq!(w_e2e.count(), run_e2e.count());
    for q in [0.5, 0.9, 0.99] {
        assert_eq!(w_ttft.quantile_ms(q), run_ttft.quantile_ms(q), "ttft q{q}");
        assert_eq!(w_e2e.quantile_ms(q), run_e2e.quantile_ms(q), "e2e q{q}");
    }
    // Three stages of non-zero length; their histograms are the run's too.
    assert_eq!(
        res.stages
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>(),
        ["stage 1", "a", "b"]
    );
    let mut s_ttft = flora_gate::stats::LatencyHist::new();
    let mut s_req = 0;
    for st in &res.stages {
        let s = &st.steps[0];
        s_ttft.merge(&hist(&s.histograms.ttft, s.failed));
        s_req += s.requests;
    }
    assert_eq!(s_req, step.requests);
    for q in [0.5, 0.9, 0.99] {
        assert_eq!(
            s_ttft.quantile_ms(q),
            run_ttft.quantile_ms(q),
            "stage ttft q{q}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gate_judges_the_stage_its_policy_names_and_the_report_shows_the_stages() {
    let mock = start_mock(timing(20, 2, 8)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let sc = chat_scenario("[gate]\nstage = \"hold 4\"");
    let mut paths = Vec::new();
    for i in 0..3 {
        let plan = shaped(
            sc.clone(),
            &mock.url(),
            "to 4=1s:4,hold 4=2s:4",
            Model::Closed,
            Arrival::Constant,
            1,
        );
        // A run other work on the machine starved is measured again (twice
        // at most): the baseline would refuse it, naming the machine.
        let mut res = run_plan(plan.clone()).await.0;
        for _ in 0..2 {
            if !res.self_check.saturated {
                break;
            }
            res = run_plan(plan.clone()).await.0;
        }
        // The judged part is the hold: its steps and its blocks.
        let part = res.gated_part(Some("hold 4")).expect("the stage exists");
        assert_eq!(part.steps[0].requests, res.stages[1].steps[0].requests);
        assert!(part.steps[0].requests < res.steps[0].requests);
        assert_eq!(part.blocks.len(), 10);
        assert!(part.blocks.iter().all(|b| b.start_ms >= 1000.0));
        let p = dir.path().join(format!("r{i}.json"));
        res.write(&p).expect("written");
        paths.push(p);
    }
    let (r0, r1, r2) = (
        paths[0].to_str().expect("utf-8"),
        paths[1].to_str().expect("utf-8"),
        paths[2].to_str().expect("utf-8"),
    );
    let base = dir.path().join("b.json");
    let b = base.to_str().expect("utf-8");
    let o = crate::common::flora(&["baseline", "refresh", "--out", b, r0, r1]);
    if !o.status.success() && crate::common::text(&o).contains("other work on this machine") {
        // Still starved after three runs: refused, naming the machine.
        eprintln!("every run starved: {}", crate::common::text(&o));
        return;
    }
    assert!(o.status.success(), "{}", crate::common::text(&o));
    let o = crate::common::flora(&["compare", "-b", b, "-r", r2]);
    assert_eq!(o.status.code(), Some(0), "{}", crate::common::text(&o));
    let o = crate::common::flora(&["compare", "-b", b, "-r", r2, "--gate-stage", "nope"]);
    assert_eq!(o.status.code(), Some(2));
    let t = crate::common::text(&o);
    assert!(t.contains("`hold 4`") && t.contains("stage"), "{t}");
    // A baseline of another stage is not judged against this one.
    let ramp = dir.path().join("ramp.json");
    let rb = ramp.to_str().expect("utf-8");
    let o = crate::common::flora(&[
        "baseline",
        "refresh",
        "--gate-stage",
        "to 4",
        "--out",
        rb,
        r0,
        r1,
    ]);
    assert!(o.status.success(), "{}", crate::common::text(&o));
    let o = crate::common::flora(&["compare", "-b", rb, "-r", r2]);
    assert_eq!(o.status.code(), Some(2));
    let t = crate::common::text(&o);
    assert!(
        t.contains("the baseline holds the stage `to 4` and the gate judges the stage `hold 4`"),
        "{t}"
    );
    let o = crate::common::flora(&["compare", "-b", rb, "-r", r2, "--gate-stage", "to 4"]);
    assert_ne!(o.status.code(), Some(2), "{}", crate::common::text(&o));
    let o = crate::common::flora(&["report", "-r", r2, "-b", b, "--format", "markdown"]);
    let md = crate::common::text(&o);
    assert!(md.contains("### Stages"), "{md}");
    assert!(md.contains("| hold 4 | 4 → "), "{md}");
    assert!(
        md.contains("title \"TTFT p50 and p90 (ms) by stage, against users\""),
        "{md}"
    );
    assert!(md.contains("--stages 'to 4=1s:4,hold 4=2s:4'"), "{md}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mock_batches_rate_limits_per_token_and_drifts() {
    // Batching: 20 concurrent streams at 0.5 ms per other stream add ~9.5 ms per gap.
    let mock = start_mock(MockConfig {
        itl_per_stream: Duration::from_micros(500),
        ..timing(10, 2, 20)
    })
    .await;
    let load = |c| crate::common::Load {
        concurrency: c,
        duration: Some(Duration::from_secs(2)),
        requests: None,
        warmup: Duration::from_millis(500),
    };
    let (one, _) = crate::common::run(chat_scenario(""), &mock.url(), load(1)).await;
    let (many, _) = crate::common::run(chat_scenario(""), &mock.url(), load(20)).await;
    let (t1, t20) = (
        one.steps[0].tpot_ms.p50.expect("tpot"),
        many.steps[0].tpot_ms.p50.expect("tpot"),
    );
    assert!(
        t1 < 3.0 && t20 > 8.0,
        "TPOT p50 alone {t1} ms, with 20 streams {t20} ms"
    );

    // Rate limit: 5 requests/s per token, 2 users on one token each.
    let limited = start_mock(MockConfig {
        rate_limit: Some(5.0),
        ..timing(1, 8, 2)
    })
    .await;
    let sc = chat_scenario(
        "[safety]\ncircuit_breaker = false\nhonor_retry_after = false\nbackoff = \"0s\"",
    );
    let (res, _) = crate::common::run(
        sc,
        &limited.url(),
        crate::common::Load {
            concurrency: 2,
            duration: Some(Duration::from_secs(2)),
            requests: None,
            warmup: Duration::ZERO,
        },
    )
    .await;
    let ok = res.totals.ok as f64;
    assert!(ok <= 2.0 * (5.0 * 2.0 + 5.0) + 1.0, "{ok} allowed in 2 s");
    assert!(
        res.totals.errors.get("rate_limited").copied().unwrap_or(0) > 10,
        "{:?}",
        res.totals.errors
    );
    let example = res
        .error_examples
        .iter()
        .find(|e| e.class == "rate_limited")
        .expect("an example");
    assert_eq!(example.status, Some(429));

    // Drift: 100%/s (6000%/min) grows every latency by its base each second.
    let drifting = start_mock(MockConfig {
        drift_per_min: 60.0,
        ..timing(20, 8, 2)
    })
    .await;
    let mut plan = crate::common::plan_for(chat_scenario(""), &drifting.url(), load(2));
    plan.load.window = Duration::from_secs(1);
    let (res, _) = run_plan(plan).await;
    let w: Vec<f64> = res.windows.iter().filter_map(|w| w.ttft_p50_ms).collect();
    assert!(w.len() >= 2 && w[w.len() - 1] > w[0] * 1.15, "{w:?}");
}

#[test]
fn bad_shape_flags_name_the_flag() {
    for (args, flag) in [
        (vec!["--stages", "30s"], "--stages"),
        (vec!["--stages", "30s:-1"], "--stages"),
        (vec!["--stages", "1s:10", "--model", "sideways"], "--model"),
        (vec!["--window", "1ms"], "--window"),
        (
            vec!["--metrics-listen", "not an address"],
            "--metrics-listen",
        ),
        (
            vec!["--stages", "1s:10", "--concurrency", "3"],
            "--concurrency",
        ),
    ] {
        let mut all = vec![
            "run",
            "-s",
            "openai-chat",
            "-t",
            "http://127.0.0.1:9",
            "--tokens",
            "/dev/null",
        ];
        all.extend(args.iter().copied());
        let o = crate::common::flora(&all);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let t = crate::common::text(&o);
        assert!(t.contains(flag), "{args:?}: {t}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retired_user_finishes_its_request_or_its_whole_workflow_as_the_scenario_says() {
    // Three steps of ~0.6 s; user 1 is retired at 1 s, inside step b of its
    // first workflow (0.6–1.2 s).
    let mock = start_mock(timing(500, 8, 12)).await;
    let three = |finish: &str| {
        let step = |name: &str| {
            format!(
                "[[steps]]\nname = \"{name}\"\npath = \"/v1/chat/completions\"\nbody = '{{\"model\": \"m\", \"messages\": [], \"stream\": true}}'\n"
            )
        };
        crate::common::scenario(&format!(
            "name = \"three\"\n[auth]\nkind = \"bearer\"\n[load]\nfinish = \"{finish}\"\n{}{}{}",
            step("a"),
            step("b"),
            step("c")
        ))
    };
    for finish in ["request", "workflow"] {
        let plan = shaped(
            three(finish),
            &mock.url(),
            "0s:2,1s:2,0s:1,2s:1",
            Model::Closed,
            Arrival::Constant,
            1,
        );
        let (_, out) = run_plan(plan).await;
        let mine: Vec<_> = out
            .recorder
            .records
            .to_vec()
            .into_iter()
            .filter(|s| s.vu == 1)
            .collect();
        let its: Vec<_> = out
            .recorder
            .records
            .iterations()
            .into_iter()
            .filter(|i| i.vu == 1)
            .collect();
        assert!(mine.iter().all(|s| s.error.is_none()), "{finish}: {mine:?}");
        let steps: Vec<u16> = mine.iter().map(|s| s.step).collect();
        if finish == "request" {
            // Step b ends; c never starts; the cut workflow is not counted.
            assert_eq!(steps, [0, 1], "{finish}");
            assert!(its.is_empty(), "{its:?}");
        } else {
            // The workflow runs to its end and counts as a whole.
            assert_eq!(steps, [0, 1, 2], "{finish}");
            assert_eq!(its.len(), 1);
            assert!(its[0].ok);
        }
    }
}

/// A target that answers every request 503 with `Retry-After: 1`; its count.
async fn unavailable() -> (String, Arc<std::sync::atomic::AtomicU64>) {
    use axum::response::IntoResponse;
    let n = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let seen = n.clone();
    let app = axum::Router::new().fallback(move || {
        seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        async {
            (
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                [("retry-after", "1")],
                "overloaded",
            )
                .into_response()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_loop_holds_its_arrivals_while_the_target_asks_to_wait() {
    let (url, seen) = unavailable().await;
    // The breaker off, to see what the back-off alone does: 200 arrivals
    // a second for 3 s would be 600 requests.
    let plan = shaped(
        chat_scenario("[safety]\ncircuit_breaker = false\n"),
        &url,
        "0s:200,3s:200",
        Model::Open,
        Arrival::Constant,
        1000,
    );
    let (res, _) = run_plan(plan).await;
    let n = seen.load(std::sync::atomic::Ordering::Relaxed);
    let a = res.arrivals.as_ref().expect("open loop");
    // Arrivals in flight when the first 503 lands are sent; after it, none
    // until the second it asked for has passed, then again each time.
    assert!(
        n < 120,
        "{n} requests in 3 s against a 503 with Retry-After: 1; {a:?}"
    );
    assert!(a.missed_held > 400, "{a:?}");
    assert_eq!(a.started, n, "{a:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stage_shows_the_tokens_received_in_it_never_more_than_the_server_gave() {
    // Two streams at once, 20 tokens 5 ms apart: at most ~400 tokens a second.
    let mock = start_mock(MockConfig {
        max_concurrency: Some(2),
        ..timing(5, 5, 20)
    })
    .await;
    let plan = shaped(
        chat_scenario(""),
        &mock.url(),
        "1s:16,3s:16",
        Model::Closed,
        Arrival::Constant,
        1000,
    );
    let (res, _) = run_plan(plan).await;
    let capacity = 2.0 * 1000.0 / 5.0;
    for st in &res.stages {
        assert!(
            st.totals.output_tokens_per_s <= capacity * 1.15,
            "stage {} shows {:.0} tok/s, over the ~{capacity:.0} the server can give",
            st.name,
            st.totals.output_tokens_per_s
        );
    }
    let held = res.stages.last().expect("stages");
    assert!(
        held.totals.output_tokens_per_s > capacity * 0.5,
        "{:.0}",
        held.totals.output_tokens_per_s
    );
}

/// `--metrics-linger`: once the run's files are written, the endpoint
/// keeps serving the final figures (unchanging) for the time asked, then
/// the command ends.
#[test]
fn the_live_endpoint_lingers_with_the_final_figures_after_the_files() {
    let mock =
        crate::common::spawn_mock(&["--ttft-ms", "10", "--itl-ms", "1", "--output-tokens", "8"]);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let dir = tempfile::tempdir().expect("tempdir");
    let tokens = crate::common::tokens_csv(dir.path(), 2);
    let out = dir.path().join("r.json");
    let mut child = std::process::Command::new(crate::common::BIN)
        .args([
            "run",
            "-s",
            "openai-chat",
            "-t",
            &mock.url,
            "--tokens",
            &tokens,
        ])
        .args(["-c", "2", "-d", "2s", "--warmup", "0s", "--no-progress"])
        .args([
            "--metrics-listen",
            &format!("127.0.0.1:{port}"),
            "--metrics-linger",
            "4s",
        ])
        .arg("-o")
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("runs");
    let started = std::time::Instant::now();
    while !out.exists() && started.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(out.exists(), "no result written");
    // Files first; the final figures are still served, and no longer move.
    std::thread::sleep(Duration::from_millis(300));
    let written = std::time::Instant::now();
    let a = scrape(port);
    std::thread::sleep(Duration::from_millis(1000));
    let b = scrape(port);
    let key = "flora_gate_requests_total{step=\"chat\"}";
    assert!(a.get(key).is_some_and(|n| *n > 0.0), "{a:?}");
    assert_eq!(a.get(key), b.get(key));
    let r = crate::common::read_json(&out);
    let measured = r["totals"]["requests"].as_f64().expect("requests");
    assert!(a[key] >= measured, "live {} < result {measured}", a[key]);
    let status = child.wait().expect("ends");
    assert!(status.success());
    let lingered = written.elapsed();
    assert!(
        lingered >= Duration::from_secs(2) && lingered < Duration::from_secs(15),
        "{lingered:?}"
    );
    assert!(scrape_fails(port), "still served after the linger");
}

fn scrape_fails(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_err()
}
