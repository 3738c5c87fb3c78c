//! Hypotheses a scenario states, judged on its run: supported, refuted and
//! inconclusive on the mock, a refuted `fail = true` one failing the gate,
//! and bad statements refused naming their line.

use crate::common::{flora, refused, spawn_mock, text};

fn tokens(dir: &std::path::Path) -> String {
    crate::common::tokens_csv(dir, 16)
}

#[test]
fn the_shipped_scenario_gets_each_finding_and_a_refuted_one_can_fail_the_gate() {
    let mock = spawn_mock(&["--ttft-ms", "80", "--itl-ms", "4", "--output-tokens", "16"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let tok = tokens(d);
    let out = d.join("r.json");
    let o = flora(&[
        "run",
        "-s",
        "hypotheses",
        "-t",
        &mock.url,
        "--tokens",
        &tok,
        "--stages",
        "0s:4,5s:4,0s:16,5s:16",
        "--no-progress",
        "-o",
        out.to_str().expect("utf-8"),
    ]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(
        t.contains("hypothesis SUPPORTED: ttft_p90 <= 500ms at users = 16"),
        "{t}"
    );
    assert!(
        t.contains("hypothesis REFUTED: ttft_p50 <= 50ms at users = 4"),
        "{t}"
    );
    assert!(
        t.contains(
            "hypothesis INCONCLUSIVE: output_tokens_per_s at users = 16 >= 4 x at users = 4"
        ),
        "{t}"
    );
    let o = flora(&["report", "-r", out.to_str().expect("utf-8")]);
    let md = text(&o);
    let first_section = md.find("### ").expect("a section");
    assert_eq!(
        &md[first_section..first_section + 14],
        "### Hypotheses",
        "{md}"
    );

    // The same run, with the refuted hypothesis marked `fail = true`: the
    // gate fails and says which.
    let text_of = std::fs::read_to_string(&out).expect("result");
    let mut r: serde_json::Value = serde_json::from_str(&text_of).expect("JSON");
    r["hypotheses"][1]["fail"] = serde_json::json!(true);
    let strict = d.join("strict.json");
    std::fs::write(&strict, r.to_string()).expect("written");
    let base = d.join("base.json");
    let o = flora(&[
        "baseline",
        "refresh",
        out.to_str().expect("utf-8"),
        "-o",
        base.to_str().expect("utf-8"),
        "--accept-bad-runs",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let verdict = d.join("v.json");
    let gate = || {
        flora(&[
            "gate",
            "--result",
            strict.to_str().expect("utf-8"),
            "-b",
            base.to_str().expect("utf-8"),
            "--verdict-out",
            verdict.to_str().expect("utf-8"),
            "--report-out",
            d.join("report.md").to_str().expect("utf-8"),
            "--comment",
            "never",
        ])
    };
    let o = gate();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&verdict).expect("verdict")).expect("JSON");
    assert_eq!(v["verdict"], "fail");
    assert!(
        v["headline"]
            .as_str()
            .expect("headline")
            .starts_with("hypothesis refuted: ttft_p50 <= 50ms at users = 4"),
        "{v}"
    );
    assert_eq!(v["hypotheses"].as_array().map(Vec::len), Some(3));

    // A `fail = true` hypothesis about a stage the run did not have fails
    // too: a mistyped place must not pass unjudged.
    let mut r: serde_json::Value = serde_json::from_str(&text_of).expect("JSON");
    r["hypotheses"] =
        serde_json::json!([{"statement": "ttft_p90 <= 10s at stage nosuch", "fail": true}]);
    std::fs::write(&strict, r.to_string()).expect("written");
    let o = gate();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("no stage `nosuch`"), "{}", text(&o));
}

#[test]
fn a_statement_that_does_not_parse_is_refused_naming_its_line() {
    let t = refused(
        "name = \"h\"\n[auth]\nkind = \"none\"\n[[steps]]\nname = \"a\"\npath = \"/v1/models\"\nmethod = \"GET\"\nresponse = \"json\"\n\n[[hypotheses]]\nstatement = \"ttft_p90 is fast\"\n",
        &["-d", "1s"],
    );
    assert!(t.contains("line 10") && t.contains("no comparison"), "{t}");
}
