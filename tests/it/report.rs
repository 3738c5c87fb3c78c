//! Rendered reports: snapshots of fixed fixtures (so no number varies), a
//! filtered snapshot of a live run, the size cap and template overrides.

use std::path::Path;

use flora_gate::gate;
use flora_gate::render::report::{self, Format, Templates, MAX_MARKDOWN_CHARS};
use flora_gate::result::baseline::Baseline;
use flora_gate::result::RunResult;

fn fixtures() -> (Baseline, RunResult) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    (
        Baseline::read(&dir.join("baseline.json")).expect("fixture baseline"),
        RunResult::read(&dir.join("current.json")).expect("fixture result"),
    )
}

fn render(format: Format, r: &RunResult, v: Option<&gate::Verdict>) -> String {
    let t = Templates::load(None).expect("embedded templates");
    report::render(format, &t, &report::context(r, v, None)).expect("renders")
}

#[test]
fn markdown_report_of_a_regression() {
    let (b, r) = fixtures();
    let v = gate::compare_baseline(&b, &r, &r.gate, vec![]);
    assert_eq!(v.verdict, gate::Status::Fail);
    insta::assert_snapshot!("markdown_fail", render(Format::Markdown, &r, Some(&v)));
}

#[test]
fn text_report_of_a_regression() {
    let (b, r) = fixtures();
    let v = gate::compare_baseline(&b, &r, &r.gate, vec![]);
    insta::assert_snapshot!("text_fail", render(Format::Text, &r, Some(&v)));
}

#[test]
fn markdown_report_without_a_verdict() {
    let (_, r) = fixtures();
    insta::assert_snapshot!("markdown_plain", render(Format::Markdown, &r, None));
}

#[test]
fn json_report_is_json_with_the_verdict() {
    let (b, r) = fixtures();
    let v = gate::compare_baseline(&b, &r, &r.gate, vec![]);
    let j: serde_json::Value =
        serde_json::from_str(&render(Format::Json, &r, Some(&v))).expect("json");
    assert_eq!(j["verdict"], "fail");
    assert!(j["gated"].as_array().expect("rows").len() >= 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_markdown_report_with_numbers_filtered() {
    use std::time::Duration;
    let mock = crate::common::start_mock(flora_gate::mock::MockConfig {
        ttft: Duration::from_millis(10),
        itl: Duration::from_millis(1),
        output_tokens: 8,
        ..Default::default()
    })
    .await;
    let load = || crate::common::Load {
        concurrency: 2,
        duration: None,
        requests: Some(30),
        warmup: Duration::ZERO,
    };
    let sc = || flora_gate::scenario::Scenario::load("novel", &[]).expect("bundled");
    let (a, _) = crate::common::run(sc(), &mock.url(), load()).await;
    let (b, _) = crate::common::run(sc(), &mock.url(), load()).await;
    let (c, _) = crate::common::run(sc(), &mock.url(), load()).await;
    mock.stop().await;
    let base =
        Baseline::from_results(&[("a".into(), a), ("b".into(), b)], false).expect("baseline");
    let v = gate::compare_baseline(&base, &c, &c.gate, vec![]);
    let md = render(Format::Markdown, &c, Some(&v));
    insta::with_settings!({filters => vec![
        (r"## .* flora-gate: \*\*\w+\*\* — .*", "## [verdict line]"),
        (r"> \*\*Note:\*\* .*\n\n?", ""),
        (r"\d{4}-\d\d-\d\dT[\d:.+]+", "[time]"),
        (r"127\.0\.0\.1:\d+", "127.0.0.1:[port]"),
        (r"`[0-9a-f]{64}`", "`[sha]`"),
        // The slowest requests and their trace ids differ every run.
        (r"(?m)^\| [a-z_]+ \| [^|\n]*fg[^|\n]* \|[^\n]*\n", "| [a slow request] |\n"),
        (r"[+-]?\d+(\.\d+)?", "[n]"),
        (r" (✅|⚠️|🚀|❌)", " [mark]"),
        (r"\n- \[mark\] .*", ""),
        // Notes and warnings vary with the live run; so do the blank lines
        // around them.
        (r"\n{3,}", "\n\n"),
    ]}, {
        insta::assert_snapshot!("markdown_live", md);
    });
}

#[test]
fn huge_reports_stay_under_the_comment_limit_keeping_the_verdict() {
    let (b, mut r) = fixtures();
    let template = r.steps[1].clone();
    for i in 0..3000 {
        let mut s = template.clone();
        s.name = format!("generated_step_{i:04}_with_a_long_name_to_take_space");
        r.steps.push(s);
    }
    let v = gate::compare_baseline(&b, &r, &r.gate, vec![]);
    let md = render(Format::Markdown, &r, Some(&v));
    assert!(
        md.chars().count() <= MAX_MARKDOWN_CHARS,
        "{} chars",
        md.chars().count()
    );
    assert!(md.contains("flora-gate: **FAIL**"));
    assert!(md.contains("| gated metric"));
    assert!(md.contains("steps shown"), "the cut is said");
    assert!(!md.contains("<details>"), "details go first");
}

#[test]
fn templates_can_be_overridden_and_bad_ones_are_named() {
    let (_, r) = fixtures();
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("report.md.j2"),
        "custom {{ run.scenario }} {{ run.requests }}\n",
    )
    .expect("write");
    let t = Templates::load(Some(dir.path())).expect("override loads");
    let out =
        report::render(Format::Markdown, &t, &report::context(&r, None, None)).expect("renders");
    assert_eq!(out, "custom novel 60\n");
    // The text template was not overridden and still renders.
    assert!(
        report::render(Format::Text, &t, &report::context(&r, None, None))
            .expect("text")
            .contains("per step")
    );

    std::fs::write(dir.path().join("report.md.j2"), "{% for x in %}\n").expect("write");
    let err = Templates::load(Some(dir.path()))
        .expect_err("syntax error")
        .to_string();
    assert!(
        err.contains("report.md.j2") && err.contains("line 1"),
        "{err}"
    );
}
